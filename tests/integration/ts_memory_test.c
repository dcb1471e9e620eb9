/*
 * Integration: the memory a client can make a node hold (PROTOCOL.md
 * section 5, "Output budgets"), on a real node: reader connections pipeline
 * thousands of Gets of a thread whose answer is about 1 MiB and never read
 * their socket. The node's peak RSS (VmHWM in /proc/PID/status) must stay
 * within the bound the configured budgets give over its peak before the
 * attack, and an honest client on another connection must still get its
 * answer (waited for with a generous timeout; no latency is asserted).
 *
 * Two cases, one per link mode: with I/O threads, where each connection's
 * own budget binds (its requests wait once it holds conn_output_budget);
 * and inline (--io-threads 0) with a node budget smaller than what the
 * connections' own budgets would allow together, so the node's binds.
 *
 * Without the budgets the same attack grew a node by about 64 MiB per
 * connection (every decoded Get answered into the output queue up to the
 * 64 MiB hard cap), far above either bound.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ts_check_main.h"
#include "ts_err.h"
#include "ts_frame.h"
#include "ts_promparse.h"
#include "ts_testnode.h"

#define MIB (1024L * 1024L)
#define N_HOSTILE 8
#define N_GETS 3000
#define N_COMMENTS 64
#define BODY_LEN 15000 /* 64 x 15,000: an answer of about 1 MiB */
#define THREAD "site/big"
/* The largest answer: a frame of 1 MiB + 64 KiB. */
#define ANSWER (MIB + 64L * 1024)
/* What a connection holds besides its output: its decoded requests
 * waiting (256 KiB and their structs in ts_link), a socket read in TLS,
 * its structs; generously, for ASan's redzones and shadow too. */
#define PER_CONN_SLACK (2 * MIB)
/* The allocator's own slack. */
#define SLACK (4 * MIB)

static struct ts_testnode node;
static char metrics_addr[64];

static void start_with(const char *io_threads, const char *conn_budget, const char *node_budget,
                       const char *heartbeat_ms)
{
    snprintf(metrics_addr, sizeof(metrics_addr), "127.0.0.1:%u", ts_test_free_port());
    const char *extra[] = {"--io-threads",
                           io_threads,
                           "--conn-output-budget",
                           conn_budget,
                           "--node-output-budget",
                           node_budget,
                           "--metrics-listen",
                           metrics_addr,
                           "--heartbeat-ms",
                           heartbeat_ms,
                           "--max-conns-per-addr",
                           "off",
                           NULL};
    ck_assert_int_eq(ts_testnode_start(&node, extra), TS_OK);
}

static void stop_node(void)
{
    ts_testnode_stop(&node);
}

static void fill_thread(void)
{
    struct ts_raw *p;
    int role;
    ck_assert_int_eq(ts_raw_connect(node.addr, node.ca, TS_ALPN, &p), TS_OK);
    ck_assert_int_eq(ts_raw_hello(p, node.poster_token, &role), TS_OK);
    char *body = malloc(BODY_LEN + 1);
    memset(body, 'x', BODY_LEN);
    body[BODY_LEN] = '\0';
    for (int i = 0; i < N_COMMENTS; i++) {
        uint64_t id, seq;
        ck_assert_int_eq(ts_raw_post(p, 1 + (uint64_t)i, THREAD, 0, "Ann", body, &id, &seq), TS_OK);
    }
    free(body);
    ts_raw_close(p);
}

static size_t pack_get(uint64_t rid, uint8_t *out)
{
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Get g = THREADSYNC__GET__INIT;
    g.request_id = rid;
    g.thread_key = THREAD;
    f.msg_case = THREADSYNC__FRAME__MSG_GET;
    f.get = &g;
    return ts_frame_pack(&f, out);
}

/* Every Get pipelined in one write; the connection is never read. */
static struct ts_raw *hostile(void)
{
    struct ts_raw *r = ts_testnode_connect_ok(&node, node.reader_token);
    uint8_t *buf = malloc((size_t)N_GETS * 64);
    size_t len = 0;
    for (int i = 0; i < N_GETS; i++)
        len += pack_get(1 + (uint64_t)i, buf + len);
    ck_assert_int_eq(ts_raw_send(r, buf, len), TS_OK);
    free(buf);
    return r;
}

static double metric(const char *name)
{
    char *body;
    ck_assert_int_eq(ts_test_http_get(metrics_addr, "/metrics", 20000, &body), 200);
    struct ts_prom *p;
    char err[256];
    ck_assert_msg(ts_prom_parse(body, strlen(body), &p, err, sizeof(err)) == 0, "%s", err);
    free(body);
    double v;
    ck_assert_msg(ts_prom_get(p, name, "", &v), "no %s", name);
    ts_prom_free(p);
    return v;
}

static long peak_kb(void)
{
    long kb = ts_test_proc_status_kb(node.pid, "VmHWM");
    ck_assert_int_gt(kb, 0);
    return kb;
}

/* Runs the attack; the node's peak RSS must stay within base + bound;
 * done_name/done_value: the metric that says the attack took hold. */
static void attack(long bound_kb, const char *done_name, double done_value)
{
    fill_thread();
    long base = peak_kb();
    struct ts_raw *h[N_HOSTILE];
    for (int i = 0; i < N_HOSTILE; i++)
        h[i] = hostile();
    /* Until the budgets hold every hostile connection (or the bound is
     * broken, which is what the node without budgets does first). */
    uint64_t deadline = ts_test_now_ms() + 120000;
    for (;;) {
        long peak = peak_kb();
        ck_assert_msg(peak - base <= bound_kb,
                      "node grew by %ld kB (peak %ld kB, %ld kB before), bound %ld kB", peak - base,
                      peak, base, bound_kb);
        if (metric(done_name) >= done_value)
            break;
        ck_assert_msg(ts_test_poll(deadline), "%s never reached %.0f", done_name, done_value);
    }
    /* An honest reader is still answered. */
    struct ts_raw *honest = ts_testnode_connect_ok(&node, node.reader_token);
    uint8_t get[64];
    size_t len = pack_get(7, get);
    ck_assert_int_eq(ts_raw_send(honest, get, len), TS_OK);
    Threadsync__Frame *in;
    ck_assert_int_eq(ts_raw_recv_nonping(honest, 120000, &in), TS_OK);
    ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_RESULT);
    ck_assert_uint_eq(in->result->request_id, 7);
    ck_assert_int_eq(in->result->body_case, THREADSYNC__RESULT__BODY_GET);
    ck_assert_uint_eq(in->result->get->n_comments, N_COMMENTS);
    ts_frame_free(in);
    long peak = peak_kb();
    fprintf(stderr,
            "memory: %d hostile connections: peak %ld kB, %ld kB before: +%ld kB "
            "(%ld kB per connection), bound +%ld kB\n",
            N_HOSTILE, peak, base, peak - base, (peak - base) / N_HOSTILE, bound_kb);
    ck_assert_msg(peak - base <= bound_kb, "node grew by %ld kB, bound %ld kB", peak - base,
                  bound_kb);
    ts_raw_close(honest);
    for (int i = 0; i < N_HOSTILE; i++)
        ts_raw_close(h[i]);
}

/* I/O threads; each connection's own budget binds: 8 x (2 MiB + an
 * answer) stays under the node budget. */
START_TEST(test_conn_budget_threads)
{
    /* A long heartbeat: the hostile connections stay until the end. */
    start_with("2", "2097152", "33554432", "600000");
    long bound = (N_HOSTILE * (2 * MIB + ANSWER + PER_CONN_SLACK) + SLACK) / 1024;
    attack(bound, "threadsync_client_connections_waiting", N_HOSTILE);
    stop_node();
}
END_TEST

/* Inline; the node's budget binds: 4 MiB, so at most 2 x 4 MiB plus one
 * answer queued in all, where the connections' own budgets (16 MiB each)
 * would allow 8 x 16 MiB. At twice the budget nobody is served until the
 * heartbeat timeout (3 x 5 s here) drops the connections that do not
 * read: the honest client may wait for that, and is answered. */
START_TEST(test_node_budget_inline)
{
    start_with("0", "16777216", "4194304", "5000");
    long bound = (2L * 4 * MIB + ANSWER + N_HOSTILE * PER_CONN_SLACK + SLACK) / 1024;
    attack(bound, "threadsync_client_output_queued_bytes", 4.0 * MIB);
    stop_node();
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("memory");
    TCase *tc = tcase_create("budgets");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_conn_budget_threads);
    tcase_add_test(tc, test_node_budget_inline);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    return ts_check_run(suite());
}
