/*
 * ts_testcluster: what the cluster suites driven through libthreadsync
 * share (ts_failover_test, ts_replica_test): a node's view of the
 * configuration, counting roles in it, and the leader the running nodes
 * agree on. Nodes are an array whose index i is member id i + 1
 * (ts_testnode_start_member); each call is one blocking ts_sync_cluster()
 * per node asked, with the admin token and CA of nodes[0].
 */
#ifndef TS_TESTCLUSTER_H
#define TS_TESTCLUSTER_H

#include <stddef.h>

#include "threadsync.pb-c.h"
#include "ts_testnode.h"

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

#endif
