/*
 * ts_client_int: private bodies of libthreadsync and the pieces of its logic
 * that are pure enough to unit-test without a server (ts__ prefix: not part
 * of the public API, not exported).
 */
#ifndef TS_CLIENT_INT_H
#define TS_CLIENT_INT_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "threadsync.h"

#define TS__CONNECT_TIMEOUT_MS 2000u
/* A server left for silence (or a handshake that timed out) is not
 * followed as a NOT_LEADER redirect for this long: the followers keep
 * naming a stopped leader until they elect another. */
#define TS__SHUN_MS 5000u
/* Moving on after UNAVAILABLE backs off like a failure, at most this many
 * doublings (100 ms minimum: at most 400 ms between two nodes). */
#define TS__MOVE_BACKOFF_CAP 3u
#define TS__REQUEST_TIMEOUT_MS 30000u
#define TS__BACKOFF_MIN_MS 100u
#define TS__BACKOFF_MAX_MS 10000u
#define TS__HEARTBEAT_MS 10000u
#define TS__SILENCE_MS 1000u
/* A NOT_LEADER answer is followed at once this many times per request;
 * after that each redirect waits a backoff delay first (the request's
 * deadline bounds them all): two nodes naming each other as leader, or
 * followers naming a dead leader, must not bounce a post in a hot loop. */
#define TS__MAX_REDIRECTS 5u
/* The protocol promises frames of at most 1 MiB + 64 KiB. */
#define TS__CLIENT_MAX_FRAME ((1u << 20) + (64u << 10))
#define TS__IDEM_KEY_LEN 32

/* ---- servers: the dial list and where to go next ---------------------- */

struct ts__server {
    char *host;
    uint16_t port;
    char *text; /* "host:port" as given, for messages */
};

/* Parses "host:port", "[v6]:port", "host" (port 7420). *host is malloc'd.
 * TS_E_CONFIG when malformed. */
int ts__server_parse(const char *text, char **host, uint16_t *port);

/* Where to dial next. A redirect (NOT_LEADER's leader_address) is used once,
 * before the list; the list is walked round-robin from the last server used,
 * advancing only on failure, so a working server keeps being used. */
struct ts__dial {
    struct ts__server *v;
    size_t n;
    size_t cur;                      /* index of the last list entry dialled */
    struct ts__server redirect;      /* pending; host NULL: none */
    struct ts__server redirect_used; /* the one the current dial uses */
    int on_redirect;                 /* the current dial goes to redirect_used */
};

/* Fills d from texts[0..n). TS_E_CONFIG / TS_E_NOMEM; d is then empty. */
int ts__dial_init(struct ts__dial *d, const char *const *texts, size_t n);
void ts__dial_free(struct ts__dial *d);
/* The server to dial now: the pending redirect if any (consumed), else the
 * current list entry. */
const struct ts__server *ts__dial_pick(struct ts__dial *d);
/* The last dial failed or its connection dropped: move on. */
void ts__dial_failed(struct ts__dial *d);
/* Sets a redirect from "host:port"; TS_E_CONFIG when malformed. */
int ts__dial_redirect(struct ts__dial *d, const char *addr);

/* ---- backoff ------------------------------------------------------------ */

/* Delay before retry number attempt (1 = first retry after a failure):
 * b = min(max_ms, min_ms * 2^(attempt-1)), then uniformly random in
 * [b/2, b] from rnd ("equal jitter": never a thundering herd, never below
 * half the nominal delay). min_ms <= max_ms expected. */
uint64_t ts__backoff_delay(unsigned min_ms, unsigned max_ms, unsigned attempt, uint32_t rnd);

/* 32 lowercase hex digits of 16 RAND_bytes, NUL-terminated. TS_E_INTERNAL
 * when the RNG fails. */
int ts__idem_key(char out[TS__IDEM_KEY_LEN + 1]);

/* Copies a caller's public struct (one that opens with struct_size, see
 * threadsync.h "ABI") into dst, the library's own struct of dst_size bytes:
 * the bytes the caller's struct_size covers (first_size, the first layout's,
 * when it is 0), zeros (defaults) for the rest; dst's struct_size becomes
 * dst_size. Never reads past the caller's struct. */
void ts__struct_copy(void *dst, size_t dst_size, const void *src, size_t first_size);
#define TS__CONFIG_FIRST_SIZE (offsetof(struct ts_client_config, state_arg) + sizeof(void *))
#define TS__SUB_CBS_FIRST_SIZE                                                                     \
    (offsetof(struct ts_client_sub_cbs, on_error) + sizeof(void (*)(void)))

/* ---- requests ----------------------------------------------------------- */

/* Every request, Post and Get included, is carried the same way: its wire
 * message (an owned deep copy), the Frame field that carries it and the
 * Result body that answers it. One path submits, sends, retries, answers
 * and frees them all. */
struct ts__req {
    struct ts__req *next, *prev;
    uint64_t id;        /* request_id on the current connection; 0: not sent */
    uint64_t deadline;  /* loop ms; 0: none */
    uint64_t retry_at;  /* loop ms; non-zero: wait before (re)sending */
    unsigned redirects; /* NOT_LEADER answers followed */
    void *arg;
    union {
        ts_client_post_cb post;
        ts_client_get_cb get;
        ts_client_digest_cb digest;
        ts_client_change_cb change;
        ts_client_pending_cb pending;
        ts_client_audit_list_cb audit_list;
        ts_client_ban_cb ban;
        ts_client_token_add_cb token_add;
        ts_client_token_list_cb token_list;
        ts_client_token_revoke_cb token_revoke;
        ts_client_import_cb import;
        ts_client_cluster_cb cluster;
        ts_client_remove_node_cb remove_node;
        ts_client_backup_cb backup;
        ts_client_state_digest_cb state_digest;
    } cb;
    ts_client_backup_chunk_cb on_chunk; /* Backup: each BackupChunk of the answer */
    uint8_t *packed; /* the message packed (owned); framed with its request_id at each send */
    size_t packed_len;
    int frame_case;  /* the Frame field that carries it */
    int result_case; /* the Result body that answers it; selects cb */
    int write;       /* follows NOT_LEADER to the leader (Post, moderation...) */
    /* Owned copy of the last refusal the request is being retried after
     * (NOT_LEADER, UNAVAILABLE): when its deadline passes during a retry,
     * that refusal is the answer, not a bare TIMEOUT. */
    Threadsync__Error *last_refusal;
};

/* The pending requests, in submission order (re-sent in that order). */
struct ts__reqs {
    struct ts__req *head, *tail;
    size_t n;
};

void ts__reqs_append(struct ts__reqs *t, struct ts__req *r);
void ts__reqs_unlink(struct ts__reqs *t, struct ts__req *r);
/* The request sent with request_id id, or NULL (id 0 never matches). */
struct ts__req *ts__reqs_find(const struct ts__reqs *t, uint64_t id);

/* Completes r, which is unlinked: calls its callback once with err, detail
 * and, for TS_OK, the matching body of res, then frees r. */
void ts__req_finish(struct ts__req *r, int err, const Threadsync__Error *detail,
                    const Threadsync__Result *res);

/* Unlinks and finishes every request with err/detail, one at a time from
 * the head, so callbacks may append new requests: those are finished too
 * unless the caller stops accepting them first. */
void ts__reqs_fail_all(struct ts__reqs *t, int err, const Threadsync__Error *detail);

/* ---- the client --------------------------------------------------------- */

struct ts__sub {
    struct ts_client_sub_cbs cbs;
    void *arg;
    int all;
    char **keys;
    size_t n_keys;
    uint64_t cursor;
    uint64_t id;       /* request_id of the Subscribe on this connection; 0: unsent */
    uint64_t retry_at; /* UNAVAILABLE: resend after */
    int in_snapshot;
};

struct ts_client {
    uv_loop_t *loop;
    struct ts__dial dial;
    char *token;
    char *client_name;
    unsigned connect_timeout_ms, request_timeout_ms, backoff_min_ms, backoff_max_ms;
    unsigned silence_ms;
    int reconnect;
    ts_client_state_cb on_state;
    void *state_arg;

    SSL_CTX *ssl;
    struct ts_conn *conn;            /* NULL between connections */
    const struct ts__server *server; /* what conn dials (points into dial) */
    enum ts_client_state state;
    int ready;                     /* conn got Welcome */
    int conn_closing;              /* ts_conn_close() called on conn */
    unsigned failures;             /* consecutive, reset by Welcome */
    unsigned pass_left;            /* fail-fast mode: dials left */
    unsigned pass_after;           /* fail-fast mode: list entries untried after the READY one */
    int moving_on;                 /* conn is being closed to try the next server */
    unsigned moves;                /* servers left since the last Result: paces the walk */
    char *shunned;                 /* "host:port" that timed out lately, or NULL */
    uint64_t shunned_until;        /* loop ms */
    uint64_t connect_deadline;     /* loop ms while dialling */
    uint64_t reconnect_at;         /* loop ms; 0: none scheduled */
    Threadsync__Frame *conn_error; /* request_id-0 Error that ends conn */
    int redirecting;               /* conn is being closed to follow NOT_LEADER */
    uint64_t redirect_delay;       /* ms to wait before dialling the leader */

    uint32_t heartbeat_ms;
    uint64_t last_rx, last_tx;
    uint64_t ping_nonce;
    /* loop ms since which sent requests wait with nothing received; 0:
     * none waits. A probe Ping goes out silence_ms after it. */
    uint64_t await_since;
    int probe_sent;
    /* A connect or silence deadline was found passed; it is acted on only
     * if it still holds after the loop polled once more (see passed()). */
    int confirming;

    uv_timer_t tick; /* one timer for every deadline; see ts_client.c */
    uint64_t tick_due;

    uint64_t next_id;
    struct ts__reqs reqs;
    struct ts__sub *sub;

    int closing;
    int tick_closed;
    ts_client_close_cb close_cb;
    void *close_arg;
};

#endif
