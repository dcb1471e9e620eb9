/*
 * Integration: writes stay exactly-once, and clients keep moving, across
 * failover (issue 12, section 3), on real three-node clusters with short
 * election timeouts (--election-timeout-ms 400):
 *
 *   - a post in flight on a leader that is then SIGSTOPped is answered
 *     through the new leader within the library's request timeout (the
 *     client notices the silence and moves on), and stored once;
 *   - `threadsync post` with the stopped leader first in its server list
 *     completes through the new leader, and the comment exists once on
 *     every node; the time it took is printed, never asserted;
 *   - a leader that loses its quorum (both followers stopped) answers the
 *     post waiting on it instead of holding it, and then, being stale,
 *     refuses reads naming the last leader it knew;
 *   - a node removed from the cluster and started again on its old data
 *     directory refuses reads once stale, and the CLI listing it first
 *     reads and posts through the healthy member listed after it;
 *   - `threadsync post --idempotency-key K` run twice creates one comment.
 *
 * Stopped nodes are continued before teardown so that each one shuts down
 * cleanly (exit status 0, no leak).
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <uv.h>

#include "ts_check_main.h"
#include "threadsync.h"
#include "ts_frame.h"
#include "ts_testcluster.h"
#include "ts_testnode.h"

#define N 3
#define WAIT_MS 30000

static struct ts_testnode nodes[N];
static int stopped[N];
static char certs[256];
static const char *const fast[] = {"--election-timeout-ms", "400", NULL};

static void stop_node(int i)
{
    ck_assert_int_eq(kill(nodes[i].pid, SIGSTOP), 0);
    stopped[i] = 1;
}

static void cont_node(int i)
{
    if (stopped[i] && nodes[i].pid)
        kill(nodes[i].pid, SIGCONT);
    stopped[i] = 0;
}

static void teardown(void)
{
    for (int i = 0; i < N; i++)
        cont_node(i);
    ts_testcluster_stop(nodes, N, certs);
}

static void one_cfg(struct ts_client_config *cfg, const char *const *servers, size_t n)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->servers = servers;
    cfg->n_servers = n;
    cfg->ca_file = nodes[0].ca;
    cfg->token = nodes[0].admin_token;
    cfg->client_name = "exactly-once-test";
    cfg->connect_timeout_ms = 3000;
    cfg->request_timeout_ms = 5000;
}

static Threadsync__ClusterResult *cluster_of(int i)
{
    const char *server[] = {nodes[i].addr};
    struct ts_client_config cfg;
    one_cfg(&cfg, server, 1);
    Threadsync__ClusterResult *res = NULL;
    if (ts_sync_cluster(&cfg, &res, NULL) != TS_OK)
        res = NULL;
    return res;
}

/* The leader's index as node i sees it, waiting for one; -1 at the end. */
static int leader_seen_by(int i)
{
    uint64_t deadline = ts_test_now_ms() + WAIT_MS;
    int l;
    do {
        Threadsync__ClusterResult *cr = cluster_of(i);
        l = cr && cr->leader_id >= 1 && cr->leader_id <= N ? (int)cr->leader_id - 1 : -1;
        ts_msg_free(cr);
    } while (l < 0 && ts_test_poll(deadline));
    return l;
}

static void start_cluster(void)
{
    ts_testcluster_certs(certs, sizeof(certs), "eo", N);
    ts_testcluster_start(nodes, N, certs, fast);
}

/* Runs the CLI with --server for nodes order[0..n), then args; stdout in
 * *out (may be NULL). The exit code. */
static int cli(const int *order, int n, const char *const *args, char **out)
{
    const char *servers[N];
    for (int i = 0; i < n; i++)
        servers[i] = nodes[order[i]].addr;
    return ts_test_cli(servers, (size_t)n, nodes[0].ca, nodes[0].token_file, args, NULL, out);
}

/* Comments of thread whose body is body, on node i alone; -1 while it
 * does not answer (stale, catching up) or lacks the thread. */
static int count_on(int i, const char *thread, const char *body)
{
    const char *server[] = {nodes[i].addr};
    struct ts_client_config cfg;
    one_cfg(&cfg, server, 1);
    Threadsync__GetResult *g = NULL;
    if (ts_sync_get(&cfg, thread, &g, NULL) != TS_OK)
        return -1;
    int n = 0;
    for (size_t k = 0; k < g->n_comments; k++)
        n += strcmp(g->comments[k]->body, body) == 0;
    ts_msg_free(g);
    return n;
}

/* Every node ends with exactly one comment of that body. */
static void assert_once_everywhere(const char *thread, const char *body)
{
    for (int i = 0; i < N; i++) {
        uint64_t deadline = ts_test_now_ms() + WAIT_MS;
        int n;
        while ((n = count_on(i, thread, body)) < 1 && ts_test_poll(deadline))
            ;
        ck_assert_msg(n == 1, "node %d holds %d copies of \"%s\"", i + 1, n, body);
    }
}

/* ---- the library: a post in flight on a leader that stops ---- */

struct lib_post {
    int done, err;
    uint64_t id;
};

static void on_post(void *arg, int err, const Threadsync__Error *detail,
                    const Threadsync__PostResult *res)
{
    struct lib_post *p = arg;
    (void)detail;
    p->done = 1;
    p->err = err;
    p->id = res ? res->comment_id : 0;
}

static void lib_post(uv_loop_t *loop, struct ts_client *c, const char *key, const char *body,
                     struct lib_post *p)
{
    Threadsync__Post m = THREADSYNC__POST__INIT;
    m.idempotency_key = (char *)key;
    m.thread_key = "eo/lib";
    m.author_name = "Ann";
    m.body = (char *)body;
    memset(p, 0, sizeof(*p));
    ck_assert_int_eq(ts_client_post(c, &m, on_post, p), TS_OK);
    while (!p->done)
        uv_run(loop, UV_RUN_ONCE);
}

START_TEST(test_library_post_in_flight_on_stopped_leader)
{
    start_cluster();
    int l = leader_seen_by(0);
    ck_assert_int_ge(l, 0);
    const char *servers[N];
    for (int i = 0, k = 0; i < N; i++)
        servers[k++] = nodes[(l + i) % N].addr;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct ts_client_config cfg;
    one_cfg(&cfg, servers, N);
    cfg.reconnect = 1;
    /* Well under the client's heartbeat timeout (3 x 10 s): only noticing
     * the silence gets the post through in time. */
    cfg.request_timeout_ms = 15000;
    struct ts_client *c;
    ck_assert_int_eq(ts_client_new(&loop, &cfg, &c), TS_OK);
    struct lib_post p;
    lib_post(&loop, c, "eo-lib-1", "before the stop", &p);
    ck_assert_int_eq(p.err, TS_OK);

    /* The connection to the leader is READY; the next post goes out on it
     * and meets a stopped process. */
    stop_node(l);
    uint64_t t0 = ts_test_now_ms();
    lib_post(&loop, c, "eo-lib-2", "sent to a stopped leader", &p);
    uint64_t took = ts_test_now_ms() - t0;
    ck_assert_msg(p.err == TS_OK, "post failed: %s", ts_err_name(p.err));
    fprintf(stderr, "library: post in flight on a stopped leader answered after %llu ms\n",
            (unsigned long long)took);
    ts_client_close(c, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&loop), 0);

    cont_node(l);
    assert_once_everywhere("eo/lib", "sent to a stopped leader");
}
END_TEST

/* ---- the CLI: the stopped leader first in the list ---- */

START_TEST(test_cli_post_with_stopped_leader)
{
    start_cluster();
    int l = leader_seen_by(0);
    ck_assert_int_ge(l, 0);
    int order[N];
    for (int i = 0; i < N; i++)
        order[i] = (l + i) % N;
    stop_node(l);
    uint64_t t0 = ts_test_now_ms();
    char *out = NULL;
    const char *args[] = {
        "post",      "--thread", "eo/cli", "--name", "Ann", "--body", "through the new leader",
        "--timeout", "25",       NULL};
    int rc = cli(order, N, args, &out);
    uint64_t took = ts_test_now_ms() - t0;
    ck_assert_msg(rc == 0, "exit %d: %s", rc, out ? out : "");
    ck_assert_ptr_nonnull(strstr(out, "id="));
    free(out);
    fprintf(stderr,
            "cli: threadsync post --server <stopped leader>,<f1>,<f2> completed %llu ms after "
            "SIGSTOP (election timeout 400 ms)\n",
            (unsigned long long)took);
    cont_node(l);
    assert_once_everywhere("eo/cli", "through the new leader");
}
END_TEST

/* ---- a leader that loses its quorum ---- */

START_TEST(test_leader_without_quorum_answers_and_goes_stale)
{
    start_cluster();
    int l = leader_seen_by(0);
    ck_assert_int_ge(l, 0);
    struct ts_raw *r;
    ck_assert_int_eq(ts_raw_connect(nodes[l].addr, nodes[l].ca, TS_ALPN, &r), TS_OK);
    ck_assert_int_eq(ts_raw_hello(r, nodes[0].admin_token, NULL), TS_OK);
    for (int i = 0; i < N; i++)
        if (i != l)
            stop_node(i);
    uint64_t id, seq;
    /* libraft's leader steps down once it misses a quorum for an election
     * timeout; the post waiting on it must be answered then. */
    int rc = ts_raw_post(r, 7, "eo/quorum", 0, "Ann", "no quorum", &id, &seq);
    ck_assert_msg(rc == TS_E_UNAVAILABLE || rc == TS_E_NOT_LEADER, "post got %s", ts_err_name(rc));

    /* Stale: a Get is refused (not served from the frozen state), naming
     * the last leader this node knew (itself). */
    char why[256] = "";
    uint64_t deadline = ts_test_now_ms() + WAIT_MS;
    int code = 0;
    for (uint64_t rid = 100;; rid++) {
        Threadsync__Frame *a = ts_raw_get(r, rid, "eo/quorum", 5000);
        code = a->msg_case == THREADSYNC__FRAME__MSG_ERROR ? (int)a->error->code : 0;
        if (code == TS_E_UNAVAILABLE)
            snprintf(why, sizeof(why), "%s", a->error->message);
        ts_frame_free(a);
        if (code == TS_E_UNAVAILABLE || !ts_test_poll(deadline))
            break;
    }
    ck_assert_int_eq(code, TS_E_UNAVAILABLE);
    ck_assert_msg(strstr(why, nodes[l].addr), "message does not name the last leader: %s", why);
    ts_raw_close(r);
}
END_TEST

/* ---- a removed node started again on its old data ---- */

/* The whole HTTP/1.0 answer to GET path (malloc'd, never NULL). */
static char *http_get(const char *addr, const char *path)
{
    int fd = ts_plain_connect(addr);
    ck_assert_int_ge(fd, 0);
    char req[256];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: x\r\n\r\n", path);
    ck_assert_int_eq(write(fd, req, (size_t)n), n);
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    ck_assert_ptr_nonnull(buf);
    ssize_t r;
    while (len < cap - 1 && (r = read(fd, buf + len, cap - len - 1)) > 0)
        len += (size_t)r;
    buf[len] = '\0';
    close(fd);
    return buf;
}

START_TEST(test_removed_node_refuses_and_clients_move_on)
{
    start_cluster();
    int l = leader_seen_by(0);
    ck_assert_int_ge(l, 0);
    int f = (l + 1) % N;
    int to_leader[] = {l};
    const char *first[] = {"post", "--thread", "eo/rm",          "--name",
                           "Ann",  "--body",   "before removal", NULL};
    ck_assert_int_eq(cli(to_leader, 1, first, NULL), 0);
    assert_once_everywhere("eo/rm", "before removal");

    ck_assert_int_eq(ts_testnode_kill(&nodes[f], SIGTERM), 0);
    char id[8];
    snprintf(id, sizeof(id), "%d", f + 1);
    const char *rm[] = {"admin", "remove-node", id, NULL};
    ck_assert_int_eq(cli(to_leader, 1, rm, NULL), 0);
    const char *second[] = {"post", "--thread", "eo/rm",         "--name",
                            "Ann",  "--body",   "after removal", NULL};
    ck_assert_int_eq(cli(to_leader, 1, second, NULL), 0);
    char metrics[64];
    snprintf(metrics, sizeof(metrics), "127.0.0.1:%u", (unsigned)ts_test_free_port());
    const char *extra[] = {"--election-timeout-ms", "400", "--metrics-listen", metrics, NULL};
    ck_assert_int_eq(ts_testnode_restart(&nodes[f], extra), TS_OK);

    /* Started with --join on a data directory that says it is a member, it
     * asks the cluster, learns it was removed and refuses to serve its old
     * state, saying why. */
    uint64_t deadline = ts_test_now_ms() + WAIT_MS;
    int code = 0;
    char why[256] = "";
    do {
        const char *server[] = {nodes[f].addr};
        struct ts_client_config cfg;
        one_cfg(&cfg, server, 1);
        Threadsync__GetResult *g = NULL;
        Threadsync__Error *e = NULL;
        code = ts_sync_get(&cfg, "eo/rm", &g, &e);
        snprintf(why, sizeof(why), "%s", e && e->message ? e->message : "");
        ts_msg_free(g);
        ts_msg_free(e);
    } while (!strstr(why, "removed") && ts_test_poll(deadline));
    ck_assert_msg(code == TS_E_UNAVAILABLE && strstr(why, "removed"),
                  "the removed node still serves (%s: %s)", ts_err_name(code), why);
    char *health = http_get(metrics, "/healthz");
    ck_assert_msg(strstr(health, " 503 ") && strstr(health, "removed from the cluster"), "%s",
                  health);
    free(health);

    /* The CLI listing it first reads and writes through the member after. */
    int order[] = {f, l};
    char *out = NULL;
    const char *get[] = {"get", "--thread", "eo/rm", NULL};
    int rc = cli(order, 2, get, &out);
    ck_assert_msg(rc == 0 && strstr(out, "after removal"), "get exit %d: %s", rc, out);
    free(out);
    const char *third[] = {
        "post", "--thread", "eo/rm", "--name", "Ann", "--body", "past a removed node", NULL};
    ck_assert_int_eq(cli(order, 2, third, NULL), 0);
    ck_assert_int_eq(count_on(l, "eo/rm", "past a removed node"), 1);
}
END_TEST

/* ---- a whole CLI call retried with its key ---- */

START_TEST(test_cli_idempotency_key_retry)
{
    ck_assert_int_eq(ts_testnode_start(&nodes[0], NULL), TS_OK);
    int one[] = {0};
    const char *args[] = {"post",          "--thread", "eo/key",        "--name",
                          "Ann",           "--body",   "retried whole", "--idempotency-key",
                          "script-run-42", NULL};
    char *a = NULL, *b = NULL;
    ck_assert_int_eq(cli(one, 1, args, &a), 0);
    ck_assert_int_eq(cli(one, 1, args, &b), 0);
    /* Same comment both times ("id=N seq=N ..."). */
    ck_assert_msg(strncmp(a, b, strcspn(a, " ")) == 0, "%s vs %s", a, b);
    free(a);
    free(b);
    ck_assert_int_eq(count_on(0, "eo/key", "retried whole"), 1);
}
END_TEST

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    Suite *s = suite_create("exactly_once");
    const struct {
        const char *name;
        const TTest *t;
    } cases[] = {
        {"library_stopped_leader", test_library_post_in_flight_on_stopped_leader},
        {"cli_stopped_leader", test_cli_post_with_stopped_leader},
        {"no_quorum", test_leader_without_quorum_answers_and_goes_stale},
        {"removed_node", test_removed_node_refuses_and_clients_move_on},
        {"idempotency_key", test_cli_idempotency_key_retry},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_add_checked_fixture(tc, NULL, teardown);
        tcase_set_timeout(tc, 180);
        tcase_add_test(tc, cases[i].t);
        suite_add_tcase(s, tc);
    }
    return ts_check_run(s);
}
