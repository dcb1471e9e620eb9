/*
 * Integration: posts batched into one Raft entry per loop turn
 * (ts_req_write.c, PostBatch; PROTOCOL.md "seq"), on a real three-node
 * cluster over TLS.
 *
 * CONNS posting connections each pipeline PER_CONN posts to the leader
 * before reading any answer, so the leader receives many posts within one
 * loop turn; a subscriber on a follower follows every event from seq 0.
 * Among the posts of the first connection: a retry of the previous post
 * (same key and content), a post with an unknown parent and a reuse of a
 * key with other content. Then:
 *
 *   - every request is answered exactly once: each good post with its own
 *     comment id = seq, distinct over all connections and increasing in
 *     each connection's sending order; the retry with its original's id
 *     and seq; the other two with their own error;
 *   - the leader applied fewer log entries than it made comments
 *     (threadsync_entries_applied_total against
 *     threadsync_events_applied_total): batches did form, so the case
 *     cannot pass vacuously;
 *   - the subscriber gets each comment once, in strictly increasing seq;
 *   - every node reaches the same StateDigest at the same seq, and again
 *     after all three restart and replay the batched entries from their
 *     logs; a post after the restart gets a seq above all earlier ones.
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
#include "ts_testcluster.h"
#include "ts_testnode.h"

#define N 3
#define CONNS 8
#define PER_CONN 40
#define WAIT_MS 60000

/* Request ids of the first connection's special posts. */
#define RID_RETRY 5   /* the same key and content as RID_RETRY - 1 */
#define RID_ORPHAN 8  /* parent_id names no comment */
#define RID_REUSED 11 /* the key of RID_REUSED - 1, other content */

static struct ts_testnode nodes[N];
static char certs[256], metrics[N][32];

static void teardown(void)
{
    ts_testcluster_stop(nodes, N, certs);
}

/* The answer to rid (Result or Error; caller frees), skipping anything
 * else; NULL on timeout. */
static Threadsync__Frame *answer_to(struct ts_raw *r, uint64_t rid)
{
    uint64_t deadline = ts_test_now_ms() + WAIT_MS;
    for (;;) {
        uint64_t now = ts_test_now_ms();
        Threadsync__Frame *in;
        if (now >= deadline || ts_raw_recv_nonping(r, (int)(deadline - now), &in) != TS_OK)
            return NULL;
        if ((in->msg_case == THREADSYNC__FRAME__MSG_RESULT && in->result->request_id == rid) ||
            (in->msg_case == THREADSYNC__FRAME__MSG_ERROR && in->error->request_id == rid))
            return in;
        ts_frame_free(in);
    }
}

/* Asks node i's StateDigest as admin: TS_OK with seq and digest[65]. */
static int state_digest(int i, uint64_t *seq, char digest[65])
{
    struct ts_raw *r;
    if (ts_testnode_connect(&nodes[i], nodes[0].admin_token, &r) != TS_OK)
        return TS_E_UNAVAILABLE;
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__StateDigest sd = THREADSYNC__STATE_DIGEST__INIT;
    sd.request_id = 4;
    f.msg_case = THREADSYNC__FRAME__MSG_STATE_DIGEST;
    f.state_digest = &sd;
    int rc = ts_raw_send_frame(r, &f);
    Threadsync__Frame *in = rc == TS_OK ? answer_to(r, 4) : NULL;
    rc = TS_E_UNAVAILABLE;
    if (in && in->msg_case == THREADSYNC__FRAME__MSG_RESULT) {
        *seq = in->result->state_digest->seq;
        snprintf(digest, 65, "%s", in->result->state_digest->digest);
        rc = TS_OK;
    }
    if (in)
        ts_frame_free(in);
    ts_raw_close(r);
    return rc;
}

/* Waits until every node's state is at seq; asserts their digests are
 * equal and copies it into out[65]. */
static void await_same_digest(uint64_t seq, char out[65])
{
    uint64_t deadline = ts_test_now_ms() + WAIT_MS;
    for (int i = 0; i < N; i++) {
        uint64_t at = 0;
        char d[65] = "";
        while (state_digest(i, &at, d) != TS_OK || at < seq) {
            ck_assert_msg(ts_test_poll(deadline), "node %d at seq %llu, want %llu", i + 1,
                          (unsigned long long)at, (unsigned long long)seq);
        }
        ck_assert_uint_eq(at, seq);
        if (i == 0)
            snprintf(out, 65, "%s", d);
        else
            ck_assert_msg(!strcmp(out, d), "node %d digest %s, node 1 %s", i + 1, d, out);
    }
}

/* threadsync_entries_applied_total and threadsync_events_applied_total of
 * node i. */
static void applied_counts(int i, double *entries, double *events)
{
    char *body = NULL;
    ck_assert_int_eq(ts_test_http_get(metrics[i], "/metrics", 10000, &body), 200);
    struct ts_prom *p;
    char err[256];
    ck_assert_msg(ts_prom_parse(body, strlen(body), &p, err, sizeof(err)) == 0, "%s", err);
    free(body);
    ck_assert(ts_prom_get(p, "threadsync_entries_applied_total", "", entries));
    ck_assert(ts_prom_get(p, "threadsync_events_applied_total", "", events));
    ts_prom_free(p);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Waits until node 1 (the leader) lists N voters. */
static void await_voters(void)
{
    uint64_t deadline = ts_test_now_ms() + WAIT_MS;
    for (;;) {
        size_t voters = 0;
        struct ts_raw *r;
        if (ts_testnode_connect(&nodes[0], nodes[0].admin_token, &r) == TS_OK) {
            Threadsync__Frame f = THREADSYNC__FRAME__INIT;
            Threadsync__Cluster c = THREADSYNC__CLUSTER__INIT;
            c.request_id = 7;
            f.msg_case = THREADSYNC__FRAME__MSG_CLUSTER;
            f.cluster = &c;
            Threadsync__Frame *in = ts_raw_send_frame(r, &f) == TS_OK ? answer_to(r, 7) : NULL;
            for (size_t k = 0; in && in->msg_case == THREADSYNC__FRAME__MSG_RESULT &&
                               k < in->result->cluster->n_nodes;
                 k++)
                voters += in->result->cluster->nodes[k]->role == THREADSYNC__NODE_ROLE__NODE_VOTER;
            if (in)
                ts_frame_free(in);
            ts_raw_close(r);
        }
        if (voters == N)
            return;
        ck_assert_msg(ts_test_poll(deadline), "%zu voters, want %d", voters, N);
    }
}

static void send_post(struct ts_raw *r, uint64_t rid, const char *key, const char *thread,
                      uint64_t parent, const char *body)
{
    ck_assert_int_eq(ts_raw_send_post(r, rid, key, thread, parent, "Batcher", body), TS_OK);
}

static void start_cluster(void)
{
    ts_testcluster_certs(certs, sizeof(certs), "batch", N);
    for (int i = 0; i < N; i++) {
        snprintf(metrics[i], sizeof(metrics[i]), "127.0.0.1:%u", ts_test_free_port());
        const char *extra[] = {"--metrics-listen", metrics[i], NULL};
        char name[8];
        snprintf(name, sizeof(name), "n%d", i + 1);
        ck_assert_int_eq(ts_testnode_start_member(&nodes[i], i ? &nodes[0] : NULL, certs, name,
                                                  (uint64_t)i + 1, extra),
                         TS_OK);
    }
}

/* Posts one comment to whichever node leads (NOT_LEADER: the next one),
 * within WAIT_MS: its seq. */
static uint64_t post_anywhere(const char *key, const char *body)
{
    uint64_t deadline = ts_test_now_ms() + WAIT_MS;
    for (int i = 0;; i = (i + 1) % N) {
        ck_assert_msg(ts_test_now_ms() < deadline, "no node took the post");
        struct ts_raw *r;
        if (ts_testnode_connect(&nodes[i], nodes[0].poster_token, &r) != TS_OK)
            continue;
        send_post(r, 1, key, "batch/after", 0, body);
        Threadsync__Frame *in = answer_to(r, 1);
        uint64_t seq = 0;
        if (in && in->msg_case == THREADSYNC__FRAME__MSG_RESULT)
            seq = in->result->post->seq;
        if (in)
            ts_frame_free(in);
        ts_raw_close(r);
        if (seq)
            return seq;
        ts_test_poll(deadline);
    }
}

START_TEST(test_batched_posts_exactly_once_everywhere)
{
    start_cluster();
    /* the members joined through node 1, which bootstrapped and leads */
    await_voters();
    struct ts_raw *sub = ts_testnode_subscriber(&nodes[1], nodes[0].reader_token, 0, NULL);
    struct ts_raw *conn[CONNS];
    for (int c = 0; c < CONNS; c++)
        conn[c] = ts_testnode_connect_ok(&nodes[0], nodes[0].poster_token);
    uint64_t warm = post_anywhere("warm-up", "first");
    double entries0, events0;
    applied_counts(0, &entries0, &events0);

    /* every connection's posts go out before any answer is read */
    char key[64], body[96], thread[32];
    for (int c = 0; c < CONNS; c++) {
        for (uint64_t rid = 1; rid <= PER_CONN; rid++) {
            int again = c == 0 && (rid == RID_RETRY || rid == RID_REUSED);
            uint64_t k = again ? rid - 1 : rid; /* the previous post's key */
            snprintf(key, sizeof(key), "c%d-k%llu", c, (unsigned long long)k);
            snprintf(thread, sizeof(thread), "batch/%d", (int)(k % 4));
            snprintf(body, sizeof(body), "post %d/%llu%s", c, (unsigned long long)k,
                     c == 0 && rid == RID_REUSED ? " changed" : "");
            send_post(conn[c], rid, key, thread, c == 0 && rid == RID_ORPHAN ? 999999999 : 0, body);
        }
    }

    static uint64_t ids[CONNS][PER_CONN + 1], all[CONNS * PER_CONN];
    uint64_t made = 0, max_seq = warm;
    for (int c = 0; c < CONNS; c++) {
        uint64_t last = 0;
        for (uint64_t rid = 1; rid <= PER_CONN; rid++) {
            Threadsync__Frame *in = answer_to(conn[c], rid);
            ck_assert_msg(in != NULL, "connection %d: no answer to %llu", c,
                          (unsigned long long)rid);
            if (c == 0 && rid == RID_ORPHAN) {
                ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_ERROR);
                ck_assert_int_eq(in->error->code, THREADSYNC__ERROR_CODE__NOT_FOUND);
            } else if (c == 0 && rid == RID_REUSED) {
                ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_ERROR);
                ck_assert_int_eq(in->error->code, THREADSYNC__ERROR_CODE__IDEMPOTENCY_KEY_REUSED);
            } else {
                ck_assert_msg(in->msg_case == THREADSYNC__FRAME__MSG_RESULT,
                              "connection %d post %llu refused: %s", c, (unsigned long long)rid,
                              in->msg_case == THREADSYNC__FRAME__MSG_ERROR ? in->error->message
                                                                           : "?");
                const Threadsync__PostResult *pr = in->result->post;
                ck_assert_uint_eq(pr->seq, pr->comment_id);
                ids[c][rid] = pr->comment_id;
                if (c == 0 && rid == RID_RETRY) {
                    ck_assert_uint_eq(pr->comment_id, ids[0][RID_RETRY - 1]);
                } else {
                    ck_assert_uint_gt(pr->seq, last); /* in sending order */
                    last = pr->seq;
                    all[made++] = pr->seq;
                    if (pr->seq > max_seq)
                        max_seq = pr->seq;
                }
            }
            ts_frame_free(in);
        }
    }
    /* no seq given twice across connections */
    qsort(all, made, sizeof(all[0]), cmp_u64);
    for (uint64_t i = 1; i < made; i++)
        ck_assert_msg(all[i] != all[i - 1], "seq %llu given twice", (unsigned long long)all[i]);
    ck_assert_uint_eq(made, (uint64_t)CONNS * PER_CONN - 3);

    double entries1, events1;
    applied_counts(0, &entries1, &events1);
    fprintf(stderr, "post batch test: %llu comments in %.0f log entries\n",
            (unsigned long long)made, entries1 - entries0);
    ck_assert_uint_eq((uint64_t)(events1 - events0), made);
    ck_assert_msg(entries1 - entries0 < (double)made,
                  "%.0f entries for %llu comments: no batch formed", entries1 - entries0,
                  (unsigned long long)made);

    /* the follower's subscriber: every comment once, in seq order */
    uint64_t seen = 0, last_seq = 0;
    while (last_seq < max_seq) {
        Threadsync__Frame *in;
        ck_assert_int_eq(ts_raw_recv_nonping(sub, WAIT_MS, &in), TS_OK);
        if (in->msg_case == THREADSYNC__FRAME__MSG_EVENTS) {
            for (size_t e = 0; e < in->events->n_events; e++) {
                const Threadsync__Event *ev = in->events->events[e];
                ck_assert_uint_gt(ev->seq, last_seq);
                last_seq = ev->seq;
                seen += ev->comment != NULL;
            }
        }
        ts_frame_free(in);
    }
    ck_assert_uint_eq(last_seq, max_seq);
    ck_assert_uint_eq(seen, made + 1); /* and the warm-up post */
    ts_raw_close(sub);
    for (int c = 0; c < CONNS; c++)
        ts_raw_close(conn[c]);

    char before[65], after[65];
    await_same_digest(max_seq, before);
    /* every node replays its log, batched entries included, to the same state */
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(ts_testnode_kill(&nodes[i], SIGTERM), 0);
    for (int i = 0; i < N; i++) {
        const char *extra[] = {"--metrics-listen", metrics[i], NULL};
        ck_assert_int_eq(ts_testnode_restart(&nodes[i], extra), TS_OK);
    }
    await_same_digest(max_seq, after);
    ck_assert_str_eq(before, after);
    ck_assert_uint_gt(post_anywhere("after-restart", "later"), max_seq);
}
END_TEST

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    Suite *s = suite_create("post_batch");
    TCase *tc = tcase_create("cluster");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_batched_posts_exactly_once_everywhere);
    suite_add_tcase(s, tc);
    return ts_check_run(s);
}
