/*
 * ts_testcluster: what the cluster suites driven through libthreadsync
 * share (ts_failover_test, ts_replica_test): a node's view of the
 * configuration, counting roles in it, and the leader the running nodes
 * agree on; and the poster both run on their libuv loop while they kill
 * and restart nodes. Nodes are an array whose index i is member id i + 1
 * (ts_testnode_start_member); each view is one blocking ts_sync_cluster()
 * per node asked, with the admin token and CA of nodes[0].
 */
#ifndef TS_TESTCLUSTER_H
#define TS_TESTCLUSTER_H

#include <stddef.h>

#include "threadsync.h"
#include "threadsync.pb-c.h"
#include "ts_testnode.h"

/* Makes a new certificate directory in cert_dir (size bytes: under
 * $TS_TEST_TMPDIR, else /var/tmp, tag in its name) holding a CA and node
 * certificates n1 .. n<n>. */
void ts_testcluster_certs(char *cert_dir, size_t size, const char *tag, int n);

/* Starts nodes[0..n) as a cluster of voters, the way the cluster suites
 * begin: nodes[0] bootstraps with certificate n1 of cert_dir, then node i
 * joins through it as member i + 1 (certificate n<i+1>) once the members
 * before it are voters; returns once nodes[0] counts n voters. extra:
 * flags for every node, or NULL. */
void ts_testcluster_start(struct ts_testnode *nodes, int n, const char *cert_dir,
                          const char *const *extra);

/* The cluster suites' teardown: stops nodes[0..n), each of which must
 * exit 0 (a clean shutdown, no leak reported), then removes cert_dir
 * unless it is empty (never made). */
void ts_testcluster_stop(struct ts_testnode *nodes, int n, const char *cert_dir);

/* nodes[i]'s answer to Cluster{} (free with ts_msg_free), or NULL when it
 * is not running or does not answer within a few seconds. */
Threadsync__ClusterResult *ts_testcluster_view(const struct ts_testnode *nodes, int i);

/* How many members have role in nodes[i]'s view (0 when it does not answer). */
size_t ts_testcluster_count_role(const struct ts_testnode *nodes, int i, Threadsync__NodeRole role);

/* Waits up to timeout_ms until nodes[i]'s view counts want members with
 * role; a Check assertion fails otherwise. */
void ts_testcluster_await_role_count(const struct ts_testnode *nodes, int i,
                                     Threadsync__NodeRole role, size_t want, int timeout_ms);

/* The index of the leader that every running node of nodes[0..n) names,
 * itself running; -1 when they do not agree (or one knows none). */
int ts_testcluster_agreed_leader(const struct ts_testnode *nodes, int n);

/* ts_testcluster_agreed_leader(), polled for up to timeout_ms; -1 then. */
int ts_testcluster_await_leader(const struct ts_testnode *nodes, int n, int timeout_ms);

/* Asserts (Check) that nodes[i] holds thread with exactly total comments,
 * post p's body (body_of(p, ...)) once each, with the id ids[p] the poster
 * was acknowledged; waits up to 60 s for the node to apply them all. */
void ts_testcluster_assert_posts(const struct ts_testnode *nodes, int i, const char *thread,
                                 int total, const uint64_t *ids,
                                 void (*body_of)(int p, char *out, size_t size));

/* The reconnecting client configuration the suites run their clients
 * with: servers[0..n) (borrowed until ts_client_new copies them), the CA
 * of nodes[0], token and name; requests time out after 30 s, connects
 * after 3 s, reconnects back off from 50 ms to 1 s. No state callback. */
struct ts_client_config ts_testcluster_client_config(const struct ts_testnode *nodes,
                                                     const char *const *servers, size_t n,
                                                     const char *token, const char *name);

/* ---- the poster ----
 * Posts total comments to one thread through one ts_client, at most
 * `window` in flight, each under its own idempotency key "<name>-<i>",
 * and re-posts with the same key whatever the library reports as failed
 * (counted in lib_errors, the suites assert on it). Everything runs on
 * the test's loop; the test ticks it from a timer. */

#define TS_TESTCLUSTER_MAX_POSTS 1024
/* Every acknowledged comment id is below this (asserted), so tests may
 * index arrays by id: a fresh cluster numbers from 1. */
#define TS_TESTCLUSTER_MAX_ID 4096

struct ts_testcluster_poster;

struct ts_testcluster_slot {
    struct ts_testcluster_poster *p;
    int idx;
};

struct ts_testcluster_poster {
    /* set by ts_testcluster_poster_start */
    struct ts_client *c;
    const char *name, *thread; /* borrowed: must outlive the poster */
    int total;
    void (*body_of)(int i, char *out, size_t size);
    /* kept by the poster */
    int next, in_flight, acked;
    uint64_t ids[TS_TESTCLUSTER_MAX_POSTS], seqs[TS_TESTCLUSTER_MAX_POSTS]; /* 0: not yet */
    struct ts_testcluster_slot slots[TS_TESTCLUSTER_MAX_POSTS];
    unsigned lib_errors;  /* requests the library gave up on (re-posted) */
    int last_err;         /* the last of them */
    unsigned disconnects; /* DISCONNECTED states */
    unsigned not_leader;  /* of which: redirects */
    uint64_t last_ack_ms; /* ts_test_now_ms() of the last first acknowledgement */
    /* the test sets mark_idx (and clears mark_ack_ms): the time of the
     * first acknowledgement of a post numbered mark_idx or later */
    int mark_idx;
    uint64_t mark_ack_ms;
};

/* Zeroes p and creates its client on loop from cfg (copied, with the
 * poster's own state callback: FAILED is a Check failure). name (keys and
 * log lines), thread and body_of(i) (post i's body) make the posts; total
 * at most TS_TESTCLUSTER_MAX_POSTS. Close p->c with ts_client_close(). */
void ts_testcluster_poster_start(struct ts_testcluster_poster *p, uv_loop_t *loop,
                                 const struct ts_client_config *cfg, const char *name,
                                 const char *thread, int total,
                                 void (*body_of)(int i, char *out, size_t size));

/* One step of the poster's timer: submits the next post when fewer than
 * window are in flight. */
void ts_testcluster_poster_tick(struct ts_testcluster_poster *p, int window);

#endif
