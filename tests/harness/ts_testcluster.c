/*
 * ts_testcluster: see ts_testcluster.h. Polls every 100 ms: a cluster
 * settles in one or two election timeouts (1 s each by default), so finer
 * polling would only load the two shared cores.
 */
#include "ts_testcluster.h"

#include <check.h>
#include <string.h>
#include <unistd.h>

#include "threadsync.h"

#define POLL_US 100000

Threadsync__ClusterResult *ts_testcluster_view(const struct ts_testnode *nodes, int i)
{
    if (!nodes[i].pid)
        return NULL;
    const char *server[] = {nodes[i].addr};
    struct ts_client_config cfg = {
        .servers = server,
        .n_servers = 1,
        .ca_file = nodes[0].ca,
        .token = nodes[0].admin_token,
        .client_name = "ts-testcluster",
        .request_timeout_ms = 10000,
        .connect_timeout_ms = 3000,
    };
    Threadsync__ClusterResult *res = NULL;
    Threadsync__Error *err = NULL;
    if (ts_sync_cluster(&cfg, &res, &err) != TS_OK)
        res = NULL;
    ts_msg_free(err);
    return res;
}

size_t ts_testcluster_count_role(const struct ts_testnode *nodes, int i, Threadsync__NodeRole role)
{
    Threadsync__ClusterResult *cr = ts_testcluster_view(nodes, i);
    size_t v = 0;
    for (size_t k = 0; cr && k < cr->n_nodes; k++)
        v += cr->nodes[k]->role == role;
    ts_msg_free(cr);
    return v;
}

void ts_testcluster_await_role_count(const struct ts_testnode *nodes, int i,
                                     Threadsync__NodeRole role, size_t want, int timeout_ms)
{
    uint64_t deadline = ts_test_now_ms() + (uint64_t)timeout_ms;
    size_t got;
    while ((got = ts_testcluster_count_role(nodes, i, role)) != want && ts_test_now_ms() < deadline)
        usleep(POLL_US);
    ck_assert_msg(got == want, "node %d sees %zu members with role %d, not %zu", i + 1, got,
                  (int)role, want);
}

int ts_testcluster_agreed_leader(const struct ts_testnode *nodes, int n)
{
    int agreed = -2;
    for (int i = 0; i < n; i++) {
        if (!nodes[i].pid)
            continue;
        Threadsync__ClusterResult *cr = ts_testcluster_view(nodes, i);
        int l =
            cr && cr->leader_id >= 1 && cr->leader_id <= (uint64_t)n ? (int)cr->leader_id - 1 : -1;
        ts_msg_free(cr);
        if (l < 0 || !nodes[l].pid || (agreed >= 0 && l != agreed))
            return -1;
        agreed = l;
    }
    return agreed;
}

int ts_testcluster_await_leader(const struct ts_testnode *nodes, int n, int timeout_ms)
{
    uint64_t deadline = ts_test_now_ms() + (uint64_t)timeout_ms;
    while (ts_test_now_ms() < deadline) {
        int l = ts_testcluster_agreed_leader(nodes, n);
        if (l >= 0)
            return l;
        usleep(POLL_US);
    }
    return -1;
}
