/*
 * ts_testnode: integration-test harness. Starts real threadsyncd processes
 * on loopback in scratch directories, and speaks raw TLS to them.
 *
 * Each node gets its own mkdtemp directory and free client and raft ports
 * below the ephemeral range (ts_test_free_port), kept across restarts.
 * Children die with the test process (PR_SET_PDEATHSIG), so a crashed or
 * timed-out test leaves no process behind; ts_testnode_cleanup() stops the
 * node and removes the directory.
 *
 * Tokens: the harness writes a tokens file with one token per role
 * (admin/moderator/poster/reader, values in the struct) and passes --tokens,
 * unless the node is started with embedded defaults (ts_testnode_start_default).
 *
 * Clusters: ts_test_gen_certs() makes a CA and node certificates with
 * deploy/gen-certs.sh; ts_testnode_start_member() starts a node with one of
 * them (--cert/--key/--ca, --node-id), either as the first node (it
 * bootstraps) or joining through another member (--join), sharing that
 * member's tokens so every token works on every node.
 * Post-rate limits are off (--rate-author off --rate-token off) because
 * tests post in bursts; a test's extra flags come after and override that.
 *
 * Logs: a node's log goes to the test's stderr, or on request to
 * dir/node.log, where a test waits for a line instead of sleeping
 * (ts_testnode_restart_logged, ts_testnode_wait_log).
 */
#ifndef TS_TESTNODE_H
#define TS_TESTNODE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/ssl.h>

#include "threadsync.pb-c.h"
#include "ts_testpoll.h" /* every user of the harness waits */

struct ts_testnode {
    char dir[256];        /* scratch directory, removed by cleanup */
    char data_dir[320];   /* dir/data */
    char addr[64];        /* bound client address, host:port */
    char ca[384];         /* CA file clients verify with */
    char tokens[384];     /* tokens file (harness-written) */
    char token_file[384]; /* a file holding the admin token (for the CLI) */
    char admin_token[80], moderator_token[80], poster_token[80], reader_token[80];
    uint16_t raft_port;
    pid_t pid;
    int embedded; /* started with embedded defaults only */
    int logged;   /* its stderr goes to dir/node.log (ts_testnode_restart_logged) */
    /* cluster members only (ts_testnode_start_member) */
    uint64_t node_id;
    char cert[384], key[384];
    char join[64]; /* client address joined through, "" for the first node */
};

/* Starts a node in a new scratch dir. extra: NULL-terminated extra flags
 * for threadsyncd, or NULL. TS_OK once the node listens. */
int ts_testnode_start(struct ts_testnode *n, const char *const *extra);

/* Starts threadsyncd with no token or certificate flags, cwd = scratch dir,
 * so it creates the embedded defaults in dir/threadsync-data. */
int ts_testnode_start_default(struct ts_testnode *n);

/* Runs deploy/gen-certs.sh: DIR/ca.pem, and DIR/NAME.pem + NAME.key for
 * each name (node certificates for 127.0.0.1), names NULL-terminated.
 * TS_OK or TS_E_IO. */
int ts_test_gen_certs(const char *dir, const char *const *names);

/* Starts a cluster member with the node certificate NAME from cert_dir
 * (cert_dir/ca.pem is its cluster CA and the CA clients verify it with).
 * first NULL: a new cluster (bootstrap); else the node joins through
 * first's client address, with first's tokens (admin token for the join).
 * extra as for ts_testnode_start. TS_OK once the node listens (joining
 * goes on in the background). */
int ts_testnode_start_member(struct ts_testnode *n, const struct ts_testnode *first,
                             const char *cert_dir, const char *name, uint64_t node_id,
                             const char *const *extra);

/* Starts the node again on the same directory and ports. */
int ts_testnode_restart(struct ts_testnode *n, const char *const *extra);

/* Sends sig and reaps the process; returns its wait status. */
int ts_testnode_kill(struct ts_testnode *n, int sig);

/* SIGTERM (or SIGKILL after 10 s), then removes the scratch directory.
 * Returns the node's wait status (0 when it was not running): a node that
 * shut down cleanly, with no leak reported by LeakSanitizer, exits 0. */
int ts_testnode_cleanup(struct ts_testnode *n);

/* ts_testnode_cleanup() that must find a clean exit (status 0): a Check
 * assertion fails otherwise. The usual teardown of a test's node. */
void ts_testnode_stop(struct ts_testnode *n);

/* Restarts n like ts_testnode_restart() with its log (stderr) appended to
 * dir/node.log from now on, for ts_testnode_wait_log(); pass
 * "--log-level", "info" (or "debug") in extra for the lines you wait for.
 * cleanup copies that log to the test's stderr when the node exits unclean. */
int ts_testnode_restart_logged(struct ts_testnode *n, const char *const *extra);

/* For a test that spawns threadsyncd itself: in_child 1, in the child
 * about to exec it, sends its stderr to dir/node.log and marks n logged;
 * in_child 0, in the parent, only marks n (the child's mark is lost). */
void ts_testnode_log_to_file(struct ts_testnode *n, int in_child);

/* The size of dir/node.log now: a mark that ts_testnode_wait_log() looks past. */
size_t ts_testnode_log_mark(const struct ts_testnode *n);

/* Waits up to timeout_ms for a line containing needle written after mark
 * to dir/node.log. 1 when it came, 0 on timeout. */
int ts_testnode_wait_log(const struct ts_testnode *n, size_t mark, const char *needle,
                         int timeout_ms);

/* How many times needle occurs in text, not overlapping. */
size_t ts_test_count(const char *text, const char *needle);

/* Removes dir and everything below it (no links followed). */
void ts_test_rmtree(const char *dir);

/* A free loopback TCP port below the kernel's ephemeral range (so it stays
 * free for a node's restart), or 0. */
uint16_t ts_test_free_port(void);

/* Runs a program (argv[0] a path) with cwd (may be NULL), stdin from
 * input (may be NULL), capturing stdout into out (malloc'd, NUL-terminated;
 * may be NULL to discard). Returns the exit code, -1 on failure to run. */
int ts_test_run(const char *const *argv, const char *cwd, const char *input, char **out);

/* Runs the threadsync CLI with --server for each of servers[0..n) in
 * order, --ca ca and --token-file token_file, then args (NULL-terminated),
 * as ts_test_run() does (cwd, out: the same). The exit code. */
int ts_test_cli(const char *const *servers, size_t n, const char *ca, const char *token_file,
                const char *const *args, const char *cwd, char **out);

/* A blocking TLS client for protocol tests. */
struct ts_raw;

/* alpn NULL: offer no ALPN. TS_E_TLS when the handshake fails. */
int ts_raw_connect(const char *addr, const char *ca_file, const char *alpn, struct ts_raw **out);
/* ts_raw_connect offering sess (NULL: none; the caller keeps its reference)
 * for resumption. */
int ts_raw_connect_session(const char *addr, const char *ca_file, const char *alpn,
                           SSL_SESSION *sess, struct ts_raw **out);
/* ts_raw_connect that lets tls_delay_ms pass between the TCP connect and
 * the TLS handshake (a client whose handshake waits, e.g. in a busy
 * server's queue). */
int ts_raw_connect_delayed(const char *addr, const char *ca_file, const char *alpn,
                           unsigned tls_delay_ms, struct ts_raw **out);
/* The session to resume r's with (a TLS 1.3 ticket arrives after the
 * handshake: read a frame first), a reference the caller frees with
 * SSL_SESSION_free; NULL when there is none. */
SSL_SESSION *ts_raw_session(struct ts_raw *r);
/* 1 when r's handshake resumed a session. */
int ts_raw_resumed(const struct ts_raw *r);
/* Sends Hello with token; returns TS_OK with the Welcome's role, or the
 * Error's code. */
int ts_raw_hello(struct ts_raw *r, const char *token, int *role);
int ts_raw_send(struct ts_raw *r, const void *data, size_t len);
int ts_raw_send_frame(struct ts_raw *r, const Threadsync__Frame *f);
/* Next frame within timeout_ms: TS_OK, TS_E_TIMEOUT, TS_E_CLOSED (EOF),
 * TS_E_BAD_FRAME. Caller frees with ts_frame_free(). */
int ts_raw_recv(struct ts_raw *r, int timeout_ms, Threadsync__Frame **out);
/* Next frame that is not a Ping (Pings are answered). */
int ts_raw_recv_nonping(struct ts_raw *r, int timeout_ms, Threadsync__Frame **out);
/* Sends TLS close_notify but keeps reading possible (half-close). */
void ts_raw_shutdown_write(struct ts_raw *r);
void ts_raw_close(struct ts_raw *r);

/* Connects to n over TLS (ALPN TS_ALPN) and says Hello with token:
 * TS_OK and *out (close with ts_raw_close), else the error and no
 * connection; TS_E_UNAVAILABLE when n is not running. */
int ts_testnode_connect(const struct ts_testnode *n, const char *token, struct ts_raw **out);

/* ts_testnode_connect() that must succeed (a Check assertion otherwise). */
struct ts_raw *ts_testnode_connect_ok(const struct ts_testnode *n, const char *token);

/* Sends a Subscribe to every thread after since_seq as request_id; the
 * Result is the caller's to read. */
int ts_raw_subscribe_all(struct ts_raw *r, uint64_t request_id, uint64_t since_seq);

/* Connects as token, subscribes to every thread after since_seq (request
 * id 1) and reads its Result, asserting it is the Subscribe result;
 * *snapshot (may be NULL) says whether a snapshot follows. */
struct ts_raw *ts_testnode_subscriber(const struct ts_testnode *n, const char *token,
                                      uint64_t since_seq, int *snapshot);

/* GET path over plain HTTP from addr (host:port), the whole answer within
 * timeout_ms: the status, with *body (malloc'd, caller frees) the body;
 * -1 (and *body NULL) when there is no complete answer. */
int ts_test_http_get(const char *addr, const char *path, int timeout_ms, char **body);

/* A field of /proc/PID/status in kB (e.g. "VmRSS", "VmHWM"); -1 when the
 * process or the field is not there. */
long ts_test_proc_status_kb(pid_t pid, const char *field);

/* A plain TCP connection (no TLS) to addr; returns the fd or -1. */
int ts_plain_connect(const char *addr);

/* Sends a Post (request_id, idempotency key, thread, parent, author name,
 * body) without waiting for its answer. */
int ts_raw_send_post(struct ts_raw *r, uint64_t request_id, const char *key, const char *thread,
                     uint64_t parent, const char *name, const char *body);

/* Sends a Get of thread as request_id without waiting for its answer. */
int ts_raw_send_get(struct ts_raw *r, uint64_t request_id, const char *thread);

/* Sends a Get and returns the next frame that is not a Ping within
 * timeout_ms (a Check assertion fails otherwise): the answer, Result or
 * Error, which the caller frees with ts_frame_free(). */
Threadsync__Frame *ts_raw_get(struct ts_raw *r, uint64_t request_id, const char *thread,
                              int timeout_ms);

/* g packed with its seq left out (g is restored): what two nodes must
 * agree on for a thread, as bytes to compare (malloc'd, *len bytes; the
 * caller frees). */
uint8_t *ts_test_get_bytes(Threadsync__GetResult *g, size_t *len);

/* Convenience: post through raw TLS as the given token and wait for the
 * answer. Returns TS_OK with *id and *seq, or the error code. */
int ts_raw_post(struct ts_raw *r, uint64_t request_id, const char *thread, uint64_t parent,
                const char *name, const char *body, uint64_t *id, uint64_t *seq);

#endif
