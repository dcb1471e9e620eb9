/*
 * Integration: client connections carried by I/O threads (server/ts_link.c)
 * on a real node with --io-threads 3, so that connections land on every
 * loop: many subscribers each receive every event in order; a subscriber
 * that stops reading neither stalls the others nor loses events; pipelined
 * requests whose answers pile up unread (reading paused and resumed across
 * threads) are each answered once, in order, and so are large requests
 * sent faster than the main loop takes them; connections closed while
 * events are in flight, and a SIGTERM with connections open on every loop
 * and in every state, end in a clean exit (status 0 under LeakSanitizer).
 * A node whose one I/O thread has a backlog of pushes and closes to get
 * through when SIGTERM comes still stops. Posts pipelined on several
 * connections, whose answers a batch makes by the hundred in one loop turn
 * and the link packs into shared TLS records, are each answered once, in
 * sending order, with distinct seqs. The ordering cases also run with
 * --io-threads 0 (everything on the main loop), the other mode of the same
 * code.
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
#include "ts_testnode.h"

static struct ts_testnode node;

static void start_threaded(void)
{
    const char *extra[] = {"--io-threads", "3", NULL};
    ck_assert_int_eq(ts_testnode_start(&node, extra), TS_OK);
}

/* One I/O thread carrying more subscribers than it serves pushes per
 * turn, so its pushes queue up past one slice. */
static void start_one_thread(void)
{
    const char *extra[] = {"--io-threads", "1", "--max-conns-per-addr", "off", NULL};
    ck_assert_int_eq(ts_testnode_start(&node, extra), TS_OK);
}

static void start_inline(void)
{
    const char *extra[] = {"--io-threads", "0", NULL};
    ck_assert_int_eq(ts_testnode_start(&node, extra), TS_OK);
}

static void stop_node(void)
{
    ts_testnode_stop(&node);
}

/* Reads w's events until the comment ids ids[0..n) have all arrived, in
 * that order, with seq strictly increasing and nothing else in between
 * (the node has no other writes). */
static void expect_events(struct ts_raw *w, const uint64_t *ids, size_t n)
{
    size_t got = 0;
    uint64_t last_seq = 0;
    while (got < n) {
        Threadsync__Frame *in;
        ck_assert_int_eq(ts_raw_recv_nonping(w, 20000, &in), TS_OK);
        ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_EVENTS);
        for (size_t e = 0; e < in->events->n_events; e++) {
            Threadsync__Event *ev = in->events->events[e];
            ck_assert_uint_gt(ev->seq, last_seq);
            last_seq = ev->seq;
            ck_assert_ptr_nonnull(ev->comment);
            ck_assert_uint_lt(got, n);
            ck_assert_uint_eq(ev->comment->id, ids[got]);
            got++;
        }
        ts_frame_free(in);
    }
}

static void post_body(struct ts_raw *p, uint64_t rid, const char *body, uint64_t *id)
{
    uint64_t seq;
    ck_assert_int_eq(ts_raw_post(p, rid, "site/links", 0, "Ann", body, id, &seq), TS_OK);
}

#define N_SUBS 30
#define N_POSTS 40

START_TEST(test_many_subscribers_in_order)
{
    struct ts_raw *w[N_SUBS];
    for (int i = 0; i < N_SUBS; i++)
        w[i] = ts_testnode_subscriber(&node, node.reader_token, 0, NULL);
    struct ts_raw *p = ts_testnode_connect_ok(&node, node.poster_token);
    uint64_t ids[N_POSTS];
    for (int i = 0; i < N_POSTS; i++) {
        char body[32];
        snprintf(body, sizeof(body), "event %d", i);
        post_body(p, (uint64_t)i + 1, body, &ids[i]);
    }
    for (int i = 0; i < N_SUBS; i++) {
        expect_events(w[i], ids, N_POSTS);
        ts_raw_close(w[i]);
    }
    ts_raw_close(p);
}
END_TEST

#define BIG_POSTS 600
#define BIG_BODY 16000

START_TEST(test_slow_subscriber_does_not_stall_others)
{
    /* ~10 MB of events: more than the loopback socket buffers of the
     * subscriber that does not read, so its output backs up in the node */
    struct ts_raw *stalled = ts_testnode_subscriber(&node, node.reader_token, 0, NULL);
    struct ts_raw *live = ts_testnode_subscriber(&node, node.reader_token, 0, NULL);
    struct ts_raw *p = ts_testnode_connect_ok(&node, node.poster_token);
    char *body = malloc(BIG_BODY + 1);
    ck_assert_ptr_nonnull(body);
    uint64_t *ids = calloc(BIG_POSTS, sizeof(*ids));
    ck_assert_ptr_nonnull(ids);
    for (int i = 0; i < BIG_POSTS; i++) {
        memset(body, 'a' + i % 26, BIG_BODY);
        snprintf(body, 16, "%d:", i);
        body[strlen(body)] = 'x';
        body[BIG_BODY] = '\0';
        post_body(p, (uint64_t)i + 1, body, &ids[i]);
        /* the live subscriber has each event before the next post */
        expect_events(live, &ids[i], 1);
    }
    /* the stalled one lagged, coalesced, and still gets every event */
    expect_events(stalled, ids, BIG_POSTS);
    free(ids);
    free(body);
    ts_raw_close(p);
    ts_raw_close(live);
    ts_raw_close(stalled);
}
END_TEST

#define FLOOD 3000

START_TEST(test_pipelined_requests_answered_once_in_order)
{
    struct ts_raw *p = ts_testnode_connect_ok(&node, node.poster_token);
    char body[200];
    memset(body, 'b', sizeof(body) - 1);
    body[sizeof(body) - 1] = '\0';
    for (int i = 0; i < 20; i++)
        post_body(p, (uint64_t)i + 1, body, NULL);
    /* every answer carries the whole thread (~5 KB): their total is well
     * past the node's read-pause threshold while this client reads none */
    struct ts_raw *r = ts_testnode_connect_ok(&node, node.reader_token);
    for (uint64_t rid = 1; rid <= FLOOD; rid++)
        ck_assert_int_eq(ts_raw_send_get(r, rid, "site/links"), TS_OK);
    for (uint64_t rid = 1; rid <= FLOOD; rid++) {
        Threadsync__Frame *in;
        ck_assert_int_eq(ts_raw_recv_nonping(r, 20000, &in), TS_OK);
        ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_RESULT);
        ck_assert_uint_eq(in->result->request_id, rid);
        ck_assert_uint_eq(in->result->get->n_comments, 20);
        ts_frame_free(in);
    }
    ts_raw_close(r);
    ts_raw_close(p);
}
END_TEST

#define BIG_PIPELINED 150

START_TEST(test_pipelined_large_posts_all_answered)
{
    /* ~2.4 MB of requests at once: more than an I/O thread holds decoded
     * for the main loop, so it stops reading that socket until the main
     * loop has caught up, then reads on */
    struct ts_raw *p = ts_testnode_connect_ok(&node, node.poster_token);
    char *body = malloc(BIG_BODY + 1);
    ck_assert_ptr_nonnull(body);
    memset(body, 'c', BIG_BODY);
    body[BIG_BODY] = '\0';
    char key[BIG_PIPELINED][40];
    for (int i = 0; i < BIG_PIPELINED; i++) {
        Threadsync__Frame f = THREADSYNC__FRAME__INIT;
        Threadsync__Post post = THREADSYNC__POST__INIT;
        snprintf(key[i], sizeof(key[i]), "big-%d-%d", (int)getpid(), i);
        post.request_id = (uint64_t)i + 1;
        post.idempotency_key = key[i];
        post.thread_key = "site/big";
        post.author_name = "Ann";
        post.body = body;
        f.msg_case = THREADSYNC__FRAME__MSG_POST;
        f.post = &post;
        ck_assert_int_eq(ts_raw_send_frame(p, &f), TS_OK);
    }
    int seen[BIG_PIPELINED] = {0};
    for (int i = 0; i < BIG_PIPELINED; i++) {
        Threadsync__Frame *in;
        ck_assert_int_eq(ts_raw_recv_nonping(p, 20000, &in), TS_OK);
        ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_RESULT);
        uint64_t rid = in->result->request_id;
        ck_assert(rid >= 1 && rid <= BIG_PIPELINED && !seen[rid - 1]);
        seen[rid - 1] = 1;
        ts_frame_free(in);
    }
    free(body);
    ts_raw_close(p);
}
END_TEST

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

#define PIPE_CONNS 4
#define PIPE_POSTS 1000

START_TEST(test_pipelined_posts_answered_once_in_order)
{
    /* every connection's posts go out before any answer is read, so a
     * batch answers hundreds of one connection's posts in one loop turn */
    struct ts_raw *p[PIPE_CONNS];
    for (int c = 0; c < PIPE_CONNS; c++)
        p[c] = ts_testnode_connect_ok(&node, node.poster_token);
    char key[48], body[64];
    for (int i = 0; i < PIPE_POSTS; i++) {
        for (int c = 0; c < PIPE_CONNS; c++) {
            Threadsync__Frame f = THREADSYNC__FRAME__INIT;
            Threadsync__Post post = THREADSYNC__POST__INIT;
            snprintf(key, sizeof(key), "pipe-%d-%d-%d", (int)getpid(), c, i);
            snprintf(body, sizeof(body), "pipelined %d of connection %d", i, c);
            post.request_id = (uint64_t)i + 1;
            post.idempotency_key = key;
            post.thread_key = "site/pipe";
            post.author_name = "Ann";
            post.body = body;
            f.msg_case = THREADSYNC__FRAME__MSG_POST;
            f.post = &post;
            ck_assert_int_eq(ts_raw_send_frame(p[c], &f), TS_OK);
        }
    }
    static uint64_t seqs[PIPE_CONNS * PIPE_POSTS];
    size_t n = 0;
    for (int c = 0; c < PIPE_CONNS; c++) {
        uint64_t last = 0;
        for (int i = 0; i < PIPE_POSTS; i++) {
            Threadsync__Frame *in;
            ck_assert_int_eq(ts_raw_recv_nonping(p[c], 20000, &in), TS_OK);
            /* the next frame answers the next request: none lost, none
             * twice, none ahead of its turn */
            ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_RESULT);
            ck_assert_uint_eq(in->result->request_id, (uint64_t)i + 1);
            ck_assert_ptr_nonnull(in->result->post);
            ck_assert_uint_gt(in->result->post->seq, last);
            last = in->result->post->seq;
            seqs[n++] = last;
            ts_frame_free(in);
        }
    }
    qsort(seqs, n, sizeof(seqs[0]), cmp_u64);
    for (size_t i = 1; i < n; i++)
        ck_assert_msg(seqs[i] != seqs[i - 1], "seq %llu given twice", (unsigned long long)seqs[i]);
    /* and nothing after the last one */
    for (int c = 0; c < PIPE_CONNS; c++) {
        Threadsync__Frame *in;
        ck_assert_int_eq(ts_raw_recv_nonping(p[c], 200, &in), TS_E_TIMEOUT);
        ts_raw_close(p[c]);
    }
}
END_TEST

#define BURST 200

START_TEST(test_close_with_events_in_flight)
{
    struct ts_raw *w[N_SUBS];
    for (int i = 0; i < N_SUBS; i++)
        w[i] = ts_testnode_subscriber(&node, node.reader_token, 0, NULL);
    struct ts_raw *p = ts_testnode_connect_ok(&node, node.poster_token);
    char key[BURST][40];
    for (int i = 0; i < BURST; i++) {
        Threadsync__Frame f = THREADSYNC__FRAME__INIT;
        Threadsync__Post post = THREADSYNC__POST__INIT;
        snprintf(key[i], sizeof(key[i]), "burst-%d-%d", (int)getpid(), i);
        post.request_id = (uint64_t)i + 1;
        post.idempotency_key = key[i];
        post.thread_key = "site/links";
        post.author_name = "Ann";
        post.body = "in flight";
        f.msg_case = THREADSYNC__FRAME__MSG_POST;
        f.post = &post;
        ck_assert_int_eq(ts_raw_send_frame(p, &f), TS_OK);
        /* subscribers leave while the burst is being committed and fanned
         * out: some having read a little, some nothing */
        if (i % 10 == 5) {
            int k = i / 10;
            if (k % 2) {
                Threadsync__Frame *in;
                if (ts_raw_recv_nonping(w[k], 1000, &in) == TS_OK)
                    ts_frame_free(in);
            }
            ts_raw_close(w[k]);
            w[k] = NULL;
        }
    }
    uint64_t ids[BURST];
    for (int i = 0; i < BURST; i++) {
        Threadsync__Frame *in;
        ck_assert_int_eq(ts_raw_recv_nonping(p, 20000, &in), TS_OK);
        ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_RESULT);
        ck_assert_uint_eq(in->result->request_id, (uint64_t)i + 1);
        ids[i] = in->result->post->comment_id;
        ts_frame_free(in);
    }
    /* the ones that stayed get everything; a newcomer replays it all */
    for (int i = 0; i < N_SUBS; i++) {
        if (!w[i])
            continue;
        expect_events(w[i], ids, BURST);
        ts_raw_close(w[i]);
    }
    struct ts_raw *late = ts_testnode_subscriber(&node, node.reader_token, 0, NULL);
    expect_events(late, ids, BURST);
    ts_raw_close(late);
    ts_raw_close(p);
}
END_TEST

START_TEST(test_sigterm_with_connections_on_every_loop)
{
    struct ts_raw *subs[9];
    for (int i = 0; i < 9; i++)
        subs[i] = ts_testnode_subscriber(&node, node.reader_token, 0, NULL);
    struct ts_raw *p = ts_testnode_connect_ok(&node, node.poster_token);
    for (int i = 0; i < 20; i++)
        post_body(p, (uint64_t)i + 1, "unread", NULL);
    /* mid-handshake: TCP without TLS, and TLS without Hello */
    int plain[3];
    for (int i = 0; i < 3; i++) {
        plain[i] = ts_plain_connect(node.addr);
        ck_assert_int_ge(plain[i], 0);
    }
    struct ts_raw *nohello;
    ck_assert_int_eq(ts_raw_connect(node.addr, node.ca, TS_ALPN, &nohello), TS_OK);
    ts_testnode_stop(&node);
    for (int i = 0; i < 3; i++)
        close(plain[i]);
    ts_raw_close(nohello);
    for (int i = 0; i < 9; i++)
        ts_raw_close(subs[i]);
    ts_raw_close(p);
}
END_TEST

#define MANY_SUBS 300

START_TEST(test_sigterm_with_a_backlog_of_pushes)
{
    /* every subscriber has pushes and then its close queued behind the
     * others': the thread must get through all of them, and its stop */
    struct ts_raw **w = calloc(MANY_SUBS, sizeof(*w));
    ck_assert_ptr_nonnull(w);
    for (int i = 0; i < MANY_SUBS; i++)
        w[i] = ts_testnode_subscriber(&node, node.reader_token, 0, NULL);
    struct ts_raw *p = ts_testnode_connect_ok(&node, node.poster_token);
    uint64_t ids[5];
    for (int i = 0; i < 5; i++)
        post_body(p, (uint64_t)i + 1, "to many", &ids[i]);
    expect_events(w[MANY_SUBS - 1], ids, 5);
    expect_events(w[0], ids, 5);
    ts_testnode_stop(&node);
    for (int i = 0; i < MANY_SUBS; i++)
        ts_raw_close(w[i]);
    free(w);
    ts_raw_close(p);
}
END_TEST

static Suite *link_suite(void)
{
    Suite *s = suite_create("threadsyncd io threads");
    TCase *tc = tcase_create("threaded");
    tcase_add_checked_fixture(tc, start_threaded, stop_node);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_many_subscribers_in_order);
    tcase_add_test(tc, test_slow_subscriber_does_not_stall_others);
    tcase_add_test(tc, test_pipelined_requests_answered_once_in_order);
    tcase_add_test(tc, test_pipelined_large_posts_all_answered);
    tcase_add_test(tc, test_pipelined_posts_answered_once_in_order);
    tcase_add_test(tc, test_close_with_events_in_flight);
    tcase_add_test(tc, test_sigterm_with_connections_on_every_loop);
    suite_add_tcase(s, tc);
    TCase *tc1 = tcase_create("one thread");
    tcase_add_checked_fixture(tc1, start_one_thread, stop_node);
    tcase_set_timeout(tc1, 120);
    tcase_add_test(tc1, test_sigterm_with_a_backlog_of_pushes);
    suite_add_tcase(s, tc1);
    TCase *tci = tcase_create("inline");
    tcase_add_checked_fixture(tci, start_inline, stop_node);
    tcase_set_timeout(tci, 120);
    tcase_add_test(tci, test_many_subscribers_in_order);
    tcase_add_test(tci, test_pipelined_posts_answered_once_in_order);
    suite_add_tcase(s, tci);
    return s;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    return ts_check_run(link_suite());
}
