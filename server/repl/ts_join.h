/*
 * ts_join: the joining side of cluster membership (threadsyncd --join).
 *
 * A new node, already running raft with an empty configuration and
 * listening on its raft port, asks an existing member over the client
 * protocol (TLS verified against the cluster CA, Hello with an admin token)
 * to add it: Join{node_id, raft_address, client_address}. A follower answers
 * NOT_LEADER with the leader's client address and the request follows it;
 * UNAVAILABLE (another change in progress, no quorum) and lost connections
 * are retried with backoff; the leader answers only once the node has been
 * added and given its role: voter, or standby for a read replica
 * (PROTOCOL.md "Cluster"). FORBIDDEN,
 * UNAUTHENTICATED and INVALID_ARGUMENT end the attempt: retrying cannot fix
 * a wrong certificate, token or id.
 *
 * Check mode (a node that is a member by its own data directory, started
 * again with --join): instead of Join it sends Cluster{} and reports whether
 * the cluster's configuration, as a member that knows a leader sees it,
 * still lists this node. A node removed while it was stopped learns it this
 * way: the cluster never sends it the entry that removed it. A role other
 * than the one asked for (--read-replica given or dropped on a restart) is
 * logged; roles never change by a join.
 *
 * Load: one connection at a time, for seconds, once per node lifetime.
 */
#ifndef TS_JOIN_H
#define TS_JOIN_H

#include <stdint.h>

#include <openssl/ssl.h>
#include <uv.h>

struct ts_join;

struct ts_join_config {
    const char *target;         /* host:port of a member's client listener */
    const char *token;          /* admin token */
    uint64_t node_id;           /* this node */
    const char *raft_address;   /* this node's raft listener, host:port */
    const char *client_address; /* this node's advertised client address */
    SSL_CTX *ctx;               /* client context with the cluster CA; borrowed, outlives j */
    unsigned deadline_ms;       /* give up after this long, 0 = 120000 */
    int check;                  /* check mode (above): cb gets TS_OK or TS_E_NOT_FOUND */
    int read_replica;           /* join as a standby (Join.role NODE_STANDBY), not a voter */
};

/* Called once: TS_OK when the node has its role, else the error that ended
 * it (the protocol's code, or TS_E_TIMEOUT). Never synchronously; not
 * after ts_join_cancel(). */
typedef void (*ts_join_cb)(void *arg, int status);

/* Starts joining; strings in cfg are copied. TS_E_INVALID_ARGUMENT for a
 * bad target, TS_E_NOMEM. *out stays valid until cb ran or it is
 * cancelled. */
int ts_join_start(uv_loop_t *loop, const struct ts_join_config *cfg, ts_join_cb cb, void *arg,
                  struct ts_join **out);

/* Stops (the connection closes asynchronously; memory goes with it). */
void ts_join_cancel(struct ts_join *j);

#endif
