/*
 * ts_testcluster: see ts_testcluster.h. Waits poll with ts_test_poll (the
 * harness's one interval) until their deadline.
 */
#include "ts_testcluster.h"

#include <check.h>
#include <string.h>
#include <unistd.h>

#include "threadsync.h"

/* nodes[i] alone, as nodes[0]'s admin token; *server must outlive cfg. */
static struct ts_client_config one_node(const struct ts_testnode *nodes, int i, const char **server)
{
    *server = nodes[i].addr;
    struct ts_client_config cfg = {
        .servers = server,
        .n_servers = 1,
        .ca_file = nodes[0].ca,
        .token = nodes[0].admin_token,
        .client_name = "ts-testcluster",
        .request_timeout_ms = 10000,
        .connect_timeout_ms = 3000,
    };
    return cfg;
}

Threadsync__ClusterResult *ts_testcluster_view(const struct ts_testnode *nodes, int i)
{
    if (!nodes[i].pid)
        return NULL;
    const char *server;
    struct ts_client_config cfg = one_node(nodes, i, &server);
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
    while ((got = ts_testcluster_count_role(nodes, i, role)) != want && ts_test_poll(deadline))
        ;
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
    int l;
    while ((l = ts_testcluster_agreed_leader(nodes, n)) < 0 && ts_test_poll(deadline))
        ;
    return l;
}

void ts_testcluster_assert_posts(const struct ts_testnode *nodes, int i, const char *thread,
                                 int total, const uint64_t *ids,
                                 void (*body_of)(int p, char *out, size_t size))
{
    const char *server;
    struct ts_client_config cfg = one_node(nodes, i, &server);
    Threadsync__GetResult *g = NULL;
    uint64_t deadline = ts_test_now_ms() + 60000;
    for (;;) {
        Threadsync__Error *err = NULL;
        if (ts_sync_get(&cfg, thread, &g, &err) != TS_OK)
            g = NULL;
        ts_msg_free(err);
        if ((g && g->n_comments >= (size_t)total) || !ts_test_poll(deadline))
            break;
        ts_msg_free(g);
        g = NULL;
    }
    ck_assert_msg(g != NULL, "node %d never reached %d comments", i + 1, total);
    ck_assert_uint_eq(g->n_comments, (size_t)total);
    for (int p = 0; p < total; p++) {
        char body[256];
        body_of(p, body, sizeof(body));
        int found = 0;
        for (size_t c = 0; c < g->n_comments; c++) {
            if (strcmp(g->comments[c]->body, body) == 0) {
                found++;
                ck_assert_uint_eq(g->comments[c]->id, ids[p]);
            }
        }
        ck_assert_msg(found == 1, "node %d: post %d found %d times", i + 1, p, found);
    }
    ts_msg_free(g);
}
