/*
 * Integration: durability through the Raft log. Every acknowledged post
 * survives kill -9 with its id; retries with the same idempotency key never
 * duplicate; snapshot + restart gives back the same state; a second node on
 * the same data directory refuses to start.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ts_check_main.h"
#include "ts_err.h"
#include "ts_frame.h"
#include "ts_testnode.h"

static struct ts_testnode node;

static void stop_node(void)
{
    ts_testnode_stop(&node);
}

/* Posts with an explicit idempotency key; TS_OK and *id, or the error. */
static int post_keyed(struct ts_raw *r, uint64_t rid, const char *key, const char *thread,
                      uint64_t parent, const char *body, uint64_t *id)
{
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Post p = THREADSYNC__POST__INIT;
    p.request_id = rid;
    p.idempotency_key = (char *)key;
    p.thread_key = (char *)thread;
    p.parent_id = parent;
    p.author_name = "Dur";
    p.body = (char *)body;
    f.msg_case = THREADSYNC__FRAME__MSG_POST;
    f.post = &p;
    int rc = ts_raw_send_frame(r, &f);
    if (rc != TS_OK)
        return rc;
    for (;;) {
        Threadsync__Frame *in;
        rc = ts_raw_recv_nonping(r, 10000, &in);
        if (rc != TS_OK)
            return rc;
        if (in->msg_case == THREADSYNC__FRAME__MSG_RESULT && in->result->request_id == rid) {
            *id = in->result->post->comment_id;
            ts_frame_free(in);
            return TS_OK;
        }
        if (in->msg_case == THREADSYNC__FRAME__MSG_ERROR) {
            rc = in->error->code;
            ts_frame_free(in);
            return rc;
        }
        ts_frame_free(in);
    }
}

/* Body i: lengths 1..97 so entries of every size modulo 8 occur. */
static void make_body(int i, char *out, size_t size)
{
    size_t len = (size_t)(i * 7 % 97) + 1;
    int n = snprintf(out, size, "b%d:", i);
    for (size_t k = (size_t)n; k < len + (size_t)n && k + 1 < size; k++)
        out[k] = (char)('a' + (k + (size_t)i) % 26);
    out[len + (size_t)n < size - 1 ? len + (size_t)n : size - 1] = '\0';
}

static Threadsync__GetResult *get_thread(const char *key, Threadsync__Frame **keep)
{
    struct ts_raw *r = ts_testnode_connect_ok(&node, node.admin_token);
    Threadsync__Frame *in = ts_raw_get(r, 1, key, 10000);
    ts_raw_close(r);
    if (in->msg_case != THREADSYNC__FRAME__MSG_RESULT) {
        ts_frame_free(in);
        return NULL;
    }
    *keep = in;
    return in->result->get;
}

START_TEST(test_kill9_keeps_acknowledged_posts)
{
    ck_assert_int_eq(ts_testnode_start(&node, NULL), TS_OK);
    char acked_path[512];
    snprintf(acked_path, sizeof(acked_path), "%s/acked", node.dir);
    /* A child posts 1,000 comments (replies among them) and appends each
     * acknowledged one to a file; the parent kills the node mid-way. */
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        FILE *out = fopen(acked_path, "w");
        struct ts_raw *r;
        if (ts_testnode_connect(&node, node.poster_token, &r) != TS_OK || !out)
            _exit(2);
        uint64_t last = 0;
        for (int i = 0; i < 1000; i++) {
            char body[160], key[32];
            make_body(i, body, sizeof(body));
            snprintf(key, sizeof(key), "dur-%d", i);
            uint64_t id = 0;
            if (post_keyed(r, (uint64_t)i + 1, key, "dur/t", i % 3 == 2 ? last : 0, body, &id) !=
                TS_OK)
                break;
            last = id;
            fprintf(out, "%d %llu\n", i, (unsigned long long)id);
            fflush(out);
        }
        ts_raw_close(r);
        fclose(out);
        _exit(0);
    }
    /* wait for some acknowledgements, then kill -9 */
    uint64_t deadline = ts_test_now_ms() + 60000;
    int lines;
    while ((lines = ts_test_count_lines(acked_path)) < 200 && ts_test_poll(deadline))
        ;
    ck_assert_msg(lines >= 200, "%d posts acknowledged before the kill, want 200", lines);
    int status = ts_testnode_kill(&node, SIGKILL);
    ck_assert(WIFSIGNALED(status));
    waitpid(child, &status, 0);

    ck_assert_int_eq(ts_testnode_restart(&node, NULL), TS_OK);
    /* the client retries everything from the first unacknowledged post on,
     * with the same keys, as libthreadsync does */
    FILE *f = fopen(acked_path, "r");
    ck_assert_ptr_nonnull(f);
    static uint64_t ids[1000];
    int n_acked = 0, i;
    unsigned long long id;
    while (fscanf(f, "%d %llu", &i, &id) == 2) {
        ck_assert_int_eq(i, n_acked);
        ids[n_acked++] = id;
    }
    fclose(f);
    ck_assert_int_ge(n_acked, 200);
    struct ts_raw *r = ts_testnode_connect_ok(&node, node.poster_token);
    /* finish the job as libthreadsync would: re-send every post from the
     * last acknowledged one on, with the same keys; acknowledged ones must
     * come back with their first id, the rest are created once */
    int from = n_acked - 1;
    for (i = from; i < 1000; i++) {
        char body[160], key[32];
        make_body(i, body, sizeof(body));
        snprintf(key, sizeof(key), "dur-%d", i);
        uint64_t got;
        /* the same post as the first time, parent included: a key reused
         * with other content is refused (IDEMPOTENCY_KEY_REUSED) */
        ck_assert_int_eq(post_keyed(r, 5000 + (uint64_t)i, key, "dur/t",
                                    i % 3 == 2 ? ids[i - 1] : 0, body, &got),
                         TS_OK);
        if (i < n_acked)
            ck_assert_uint_eq(got, ids[i]);
        ids[i] = got;
    }
    ts_raw_close(r);

    Threadsync__Frame *keep;
    Threadsync__GetResult *g = get_thread("dur/t", &keep);
    ck_assert_ptr_nonnull(g);
    /* every acknowledged post exactly once, with its id and body */
    for (i = 0; i < n_acked; i++) {
        char body[160];
        make_body(i, body, sizeof(body));
        int found = 0;
        for (size_t c = 0; c < g->n_comments; c++) {
            if (strcmp(g->comments[c]->body, body) == 0) {
                found++;
                ck_assert_uint_eq(g->comments[c]->id, ids[i]);
            }
        }
        ck_assert_msg(found == 1, "post %d found %d times", i, found);
    }
    /* exactly the 1,000 posts, none duplicated by the retries */
    ck_assert_uint_eq(g->n_comments, 1000);
    for (size_t a = 0; a < g->n_comments; a++)
        for (size_t b = a + 1; b < g->n_comments; b++)
            ck_assert_str_ne(g->comments[a]->body, g->comments[b]->body);
    ts_frame_free(keep);
}
END_TEST

START_TEST(test_snapshot_restart_same_state)
{
    const char *extra[] = {"--snapshot-threshold", "16", "--snapshot-trailing", "4", NULL};
    ck_assert_int_eq(ts_testnode_start(&node, extra), TS_OK);
    struct ts_raw *r = ts_testnode_connect_ok(&node, node.poster_token);
    uint64_t last = 0;
    for (int i = 0; i < 150; i++) {
        char body[160], key[32];
        make_body(i, body, sizeof(body));
        snprintf(key, sizeof(key), "snap-%d", i);
        uint64_t id = 0;
        ck_assert_int_eq(post_keyed(r, (uint64_t)i + 1, key, i % 2 ? "snap/a" : "snap/b",
                                    i % 4 == 3 ? last : 0, body, &id),
                         TS_OK);
        if (i % 2)
            last = id;
    }
    ts_raw_close(r);
    Threadsync__Frame *ka = NULL, *kb = NULL;
    Threadsync__GetResult *a = get_thread("snap/a", &ka), *b = get_thread("snap/b", &kb);
    size_t la, lb;
    uint8_t *sa = ts_test_get_bytes(a, &la), *sb = ts_test_get_bytes(b, &lb);
    ck_assert_uint_eq(a->n_comments, 75);

    ck_assert_int_eq(ts_testnode_restart(&node, extra), TS_OK);
    Threadsync__Frame *ka2 = NULL, *kb2 = NULL;
    Threadsync__GetResult *a2 = get_thread("snap/a", &ka2), *b2 = get_thread("snap/b", &kb2);
    size_t la2, lb2;
    uint8_t *sa2 = ts_test_get_bytes(a2, &la2), *sb2 = ts_test_get_bytes(b2, &lb2);
    ck_assert_uint_eq(la, la2);
    ck_assert_uint_eq(lb, lb2);
    ck_assert(memcmp(sa, sa2, la) == 0);
    ck_assert(memcmp(sb, sb2, lb) == 0);
    /* the idempotency table came back too: a retry returns the first id */
    r = ts_testnode_connect_ok(&node, node.poster_token);
    char body[160];
    make_body(1, body, sizeof(body));
    uint64_t id;
    ck_assert_int_eq(post_keyed(r, 1, "snap-1", "snap/a", 0, body, &id), TS_OK);
    ck_assert_uint_eq(id, a2->comments[0]->id);
    ts_raw_close(r);
    free(sa);
    free(sb);
    free(sa2);
    free(sb2);
    ts_frame_free(ka);
    ts_frame_free(kb);
    ts_frame_free(ka2);
    ts_frame_free(kb2);
}
END_TEST

START_TEST(test_second_node_same_dir_refused)
{
    ck_assert_int_eq(ts_testnode_start(&node, NULL), TS_OK);
    char out_path[512];
    snprintf(out_path, sizeof(out_path), "%s/second.log", node.dir);
    /* same data dir, other ports */
    const char *argv[] = {TS_THREADSYNCD_PATH, "--data-dir", node.data_dir, "--tokens",
                          node.tokens,         "--listen",   "127.0.0.1:0", "--raft-listen",
                          "127.0.0.1:0",       NULL};
    char *out = NULL;
    int code = ts_test_run(argv, node.dir, NULL, &out);
    ck_assert_int_ne(code, 0);
    free(out);
    /* the first node still serves */
    struct ts_raw *r = ts_testnode_connect_ok(&node, node.admin_token);
    ts_raw_close(r);
}
END_TEST

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    Suite *s = suite_create("durability");
    TCase *tc = tcase_create("raft");
    tcase_add_checked_fixture(tc, NULL, stop_node);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_kill9_keeps_acknowledged_posts);
    tcase_add_test(tc, test_snapshot_restart_same_state);
    tcase_add_test(tc, test_second_node_same_dir_refused);
    suite_add_tcase(s, tc);
    return ts_check_run(s);
}
