/*
 * ts_testcluster: see ts_testcluster.h. Waits poll with ts_test_poll (the
 * harness's one interval) until their deadline.
 */
#include "ts_testcluster.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

void ts_testcluster_certs(char *cert_dir, size_t size, const char *tag, int n)
{
    const char *base = getenv("TS_TEST_TMPDIR");
    snprintf(cert_dir, size, "%s/tscerts-%s.XXXXXX", base ? base : "/var/tmp", tag);
    ck_assert_ptr_nonnull(mkdtemp(cert_dir));
    char names[16][16];
    const char *list[17];
    ck_assert_int_le(n, 16);
    for (int i = 0; i < n; i++) {
        snprintf(names[i], sizeof(names[i]), "n%d", i + 1);
        list[i] = names[i];
    }
    list[n] = NULL;
    ck_assert_int_eq(ts_test_gen_certs(cert_dir, list), TS_OK);
}

void ts_testcluster_start(struct ts_testnode *nodes, int n, const char *cert_dir,
                          const char *const *extra)
{
    for (int i = 0; i < n; i++) {
        char name[16];
        snprintf(name, sizeof(name), "n%d", i + 1);
        /* one join at a time: raft refuses a configuration change while
         * another is in flight (RAFT_CANTCHANGE) */
        if (i)
            ts_testcluster_await_role_count(nodes, 0, THREADSYNC__NODE_ROLE__NODE_VOTER, (size_t)i,
                                            60000);
        ck_assert_int_eq(ts_testnode_start_member(&nodes[i], i ? &nodes[0] : NULL, cert_dir, name,
                                                  (uint64_t)i + 1, extra),
                         TS_OK);
    }
    ts_testcluster_await_role_count(nodes, 0, THREADSYNC__NODE_ROLE__NODE_VOTER, (size_t)n, 60000);
}

void ts_testcluster_stop(struct ts_testnode *nodes, int n, const char *cert_dir)
{
    for (int i = 0; i < n; i++) {
        int st = ts_testnode_cleanup(&nodes[i]);
        ck_assert_msg(st == 0, "node %d exit status %d: unclean shutdown or a leak", i + 1, st);
    }
    if (cert_dir[0])
        ts_test_rmtree(cert_dir);
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

struct ts_client_config ts_testcluster_client_config(const struct ts_testnode *nodes,
                                                     const char *const *servers, size_t n,
                                                     const char *token, const char *name)
{
    struct ts_client_config cfg = {
        .servers = servers,
        .n_servers = n,
        .ca_file = nodes[0].ca,
        .token = token,
        .client_name = name,
        .request_timeout_ms = 30000,
        .connect_timeout_ms = 3000,
        .backoff_min_ms = 50,
        .backoff_max_ms = 1000,
        .reconnect = 1,
    };
    return cfg;
}

static void poster_submit(struct ts_testcluster_poster *p, int idx);

static void poster_answer(void *arg, int err, const Threadsync__Error *detail,
                          const Threadsync__PostResult *res)
{
    (void)detail;
    struct ts_testcluster_slot *s = arg;
    struct ts_testcluster_poster *p = s->p;
    if (err == TS_E_CLOSED) { /* the test closed the client */
        p->in_flight--;
        return;
    }
    if (err != TS_OK) {
        /* The library is meant to ride out a failover inside its timeout:
         * counted for the test to assert on, then re-posted with the key. */
        p->lib_errors++;
        p->last_err = err;
        fprintf(stderr, "%s: post %d failed in the library: %s (re-posted)\n", p->name, s->idx,
                ts_err_name(err));
        poster_submit(p, s->idx);
        return;
    }
    p->in_flight--;
    ck_assert_uint_ne(res->comment_id, 0);
    ck_assert_uint_lt(res->comment_id, TS_TESTCLUSTER_MAX_ID);
    if (p->ids[s->idx]) {
        /* a re-post of an applied post answers the first result */
        ck_assert_uint_eq(res->comment_id, p->ids[s->idx]);
        return;
    }
    p->ids[s->idx] = res->comment_id;
    p->seqs[s->idx] = res->seq;
    p->acked++;
    p->last_ack_ms = ts_test_now_ms();
    if (s->idx >= p->mark_idx && !p->mark_ack_ms)
        p->mark_ack_ms = p->last_ack_ms;
}

static void poster_submit(struct ts_testcluster_poster *p, int idx)
{
    char key[64], body[96];
    snprintf(key, sizeof(key), "%s-%d", p->name, idx);
    p->body_of(idx, body, sizeof(body));
    Threadsync__Post m = THREADSYNC__POST__INIT;
    m.idempotency_key = key;
    m.thread_key = (char *)p->thread;
    m.author_name = (char *)p->name;
    m.body = body;
    p->slots[idx] = (struct ts_testcluster_slot){p, idx};
    ck_assert_int_eq(ts_client_post(p->c, &m, poster_answer, &p->slots[idx]), TS_OK);
}

static void poster_state(void *arg, const struct ts_client_state_info *info)
{
    struct ts_testcluster_poster *p = arg;
    if (info->state == TS_CLIENT_DISCONNECTED) {
        p->disconnects++;
        p->not_leader += info->err == TS_E_NOT_LEADER;
    }
    ck_assert_int_ne(info->state, TS_CLIENT_FAILED);
}

void ts_testcluster_poster_start(struct ts_testcluster_poster *p, uv_loop_t *loop,
                                 const struct ts_client_config *cfg, const char *name,
                                 const char *thread, int total,
                                 void (*body_of)(int i, char *out, size_t size))
{
    ck_assert_int_le(total, TS_TESTCLUSTER_MAX_POSTS);
    memset(p, 0, sizeof(*p));
    p->name = name;
    p->thread = thread;
    p->total = total;
    p->body_of = body_of;
    struct ts_client_config pc = *cfg;
    pc.on_state = poster_state;
    pc.state_arg = p;
    ck_assert_int_eq(ts_client_new(loop, &pc, &p->c), TS_OK);
}

void ts_testcluster_poster_tick(struct ts_testcluster_poster *p, int window)
{
    if (p->next < p->total && p->in_flight < window) {
        p->in_flight++;
        poster_submit(p, p->next++);
    }
}
