/*
 * Integration: idempotency keys on a real node (issue 12, section 2).
 *   - a key is the token's own: another token sending the same key gets a
 *     comment and an edit key of its own, and cannot edit the first
 *     token's comment with it;
 *   - a retry (same token, key and content) gets the same comment and the
 *     same edit key, so the key handed out first keeps working, also after
 *     a restart (the key is derived from the replicated edit secret);
 *   - the same token reusing its key for other content is refused with
 *     IDEMPOTENCY_KEY_REUSED, field idempotency_key, and nothing changes.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ts_check_main.h"
#include "ts_err.h"
#include "ts_frame.h"
#include "ts_testnode.h"

static struct ts_testnode node;

static void stop_node(void)
{
    ts_testnode_stop(&node);
}

/* The answer to request rid: a Result or an Error (caller frees). */
static Threadsync__Frame *answer(struct ts_raw *r, uint64_t rid)
{
    for (;;) {
        Threadsync__Frame *in;
        ck_assert_int_eq(ts_raw_recv_nonping(r, 10000, &in), TS_OK);
        if ((in->msg_case == THREADSYNC__FRAME__MSG_RESULT && in->result->request_id == rid) ||
            (in->msg_case == THREADSYNC__FRAME__MSG_ERROR && in->error->request_id == rid))
            return in;
        ts_frame_free(in);
    }
}

struct posted {
    int code; /* 0, or the Error's code */
    uint64_t id;
    char edit_key[80];
    char field[64];
};

static struct posted post(struct ts_raw *r, uint64_t rid, const char *key, const char *thread,
                          const char *body)
{
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Post p = THREADSYNC__POST__INIT;
    p.request_id = rid;
    p.idempotency_key = (char *)key;
    p.thread_key = (char *)thread;
    p.author_name = "Idem";
    p.body = (char *)body;
    f.msg_case = THREADSYNC__FRAME__MSG_POST;
    f.post = &p;
    ck_assert_int_eq(ts_raw_send_frame(r, &f), TS_OK);
    Threadsync__Frame *in = answer(r, rid);
    struct posted out = {0};
    if (in->msg_case == THREADSYNC__FRAME__MSG_ERROR) {
        out.code = in->error->code;
        snprintf(out.field, sizeof(out.field), "%s", in->error->field);
    } else {
        ck_assert_int_eq(in->result->body_case, THREADSYNC__RESULT__BODY_POST);
        out.id = in->result->post->comment_id;
        snprintf(out.edit_key, sizeof(out.edit_key), "%s", in->result->post->edit_key);
    }
    ts_frame_free(in);
    return out;
}

/* An author's edit: 0 or the Error's code. */
static int edit(struct ts_raw *r, uint64_t rid, uint64_t id, const char *key, const char *body)
{
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Edit e = THREADSYNC__EDIT__INIT;
    e.request_id = rid;
    e.comment_id = id;
    e.edit_key = (char *)key;
    e.body = (char *)body;
    f.msg_case = THREADSYNC__FRAME__MSG_EDIT;
    f.edit = &e;
    ck_assert_int_eq(ts_raw_send_frame(r, &f), TS_OK);
    Threadsync__Frame *in = answer(r, rid);
    int code = in->msg_case == THREADSYNC__FRAME__MSG_ERROR ? (int)in->error->code : 0;
    ts_frame_free(in);
    return code;
}

/* A thread's comment count as a moderator sees it. */
static size_t comments_in(struct ts_raw *r, uint64_t rid, const char *thread)
{
    ck_assert_int_eq(ts_raw_send_get(r, rid, thread), TS_OK);
    Threadsync__Frame *in = answer(r, rid);
    size_t n = 0;
    if (in->msg_case == THREADSYNC__FRAME__MSG_RESULT)
        n = in->result->get->n_comments;
    ts_frame_free(in);
    return n;
}

START_TEST(test_other_token_same_key)
{
    ck_assert_int_eq(ts_testnode_start(&node, NULL), TS_OK);
    struct ts_raw *a = ts_testnode_connect_ok(&node, node.poster_token);
    struct ts_raw *b = ts_testnode_connect_ok(&node, node.moderator_token);
    struct posted pa = post(a, 1, "shared-K", "idem/a", "A's words");
    ck_assert_int_eq(pa.code, 0);
    ck_assert_uint_ne(strlen(pa.edit_key), 0);
    struct posted pb = post(b, 2, "shared-K", "idem/b", "B's words");
    ck_assert_int_eq(pb.code, 0);
    ck_assert_uint_ne(pb.id, pa.id); /* B's own comment, not A's */
    ck_assert_str_ne(pb.edit_key, pa.edit_key);
    ck_assert_uint_eq(comments_in(b, 3, "idem/b"), 1);
    /* B's key does not open A's comment; A's still does */
    ck_assert_int_eq(edit(b, 4, pa.id, pb.edit_key, "taken over"),
                     THREADSYNC__ERROR_CODE__FORBIDDEN);
    ck_assert_int_eq(edit(a, 5, pa.id, pa.edit_key, "A edits"), 0);
    ck_assert_int_eq(edit(b, 6, pb.id, pb.edit_key, "B edits"), 0);
    ts_raw_close(a);
    ts_raw_close(b);
}
END_TEST

START_TEST(test_retry_keeps_edit_key)
{
    ck_assert_int_eq(ts_testnode_start(&node, NULL), TS_OK);
    struct ts_raw *a = ts_testnode_connect_ok(&node, node.poster_token);
    struct posted first = post(a, 1, "retry-K", "idem/r", "words");
    ck_assert_int_eq(first.code, 0);
    ts_raw_close(a);
    /* the retry after a lost answer, on a new connection */
    a = ts_testnode_connect_ok(&node, node.poster_token);
    struct posted again = post(a, 1, "retry-K", "idem/r", "words");
    ck_assert_int_eq(again.code, 0);
    ck_assert_uint_eq(again.id, first.id);
    ck_assert_str_eq(again.edit_key, first.edit_key);
    ck_assert_int_eq(edit(a, 2, first.id, first.edit_key, "edited once"), 0);
    ck_assert_uint_eq(comments_in(a, 3, "idem/r"), 1);
    ts_raw_close(a);
    /* and after a restart (log replay, or a snapshot) */
    ck_assert_int_eq(ts_testnode_kill(&node, SIGTERM), 0);
    ck_assert_int_eq(ts_testnode_restart(&node, NULL), TS_OK);
    a = ts_testnode_connect_ok(&node, node.poster_token);
    struct posted late = post(a, 4, "retry-K", "idem/r", "words");
    ck_assert_int_eq(late.code, 0);
    ck_assert_uint_eq(late.id, first.id);
    ck_assert_str_eq(late.edit_key, first.edit_key);
    ck_assert_int_eq(edit(a, 5, first.id, first.edit_key, "edited twice"), 0);
    ts_raw_close(a);
}
END_TEST

START_TEST(test_same_token_other_content_refused)
{
    ck_assert_int_eq(ts_testnode_start(&node, NULL), TS_OK);
    struct ts_raw *a = ts_testnode_connect_ok(&node, node.poster_token);
    struct posted first = post(a, 1, "reuse-K", "idem/x", "the first post");
    ck_assert_int_eq(first.code, 0);
    struct posted body = post(a, 2, "reuse-K", "idem/x", "another post");
    ck_assert_int_eq(body.code, THREADSYNC__ERROR_CODE__IDEMPOTENCY_KEY_REUSED);
    ck_assert_str_eq(body.field, "idempotency_key");
    struct posted thread = post(a, 3, "reuse-K", "idem/y", "the first post");
    ck_assert_int_eq(thread.code, THREADSYNC__ERROR_CODE__IDEMPOTENCY_KEY_REUSED);
    ck_assert_uint_eq(comments_in(a, 4, "idem/x"), 1);
    ck_assert_uint_eq(comments_in(a, 5, "idem/y"), 0);
    /* the true retry is still answered */
    ck_assert_uint_eq(post(a, 6, "reuse-K", "idem/x", "the first post").id, first.id);
    ts_raw_close(a);
}
END_TEST

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    Suite *s = suite_create("idempotency");
    TCase *tc = tcase_create("keys");
    tcase_add_checked_fixture(tc, NULL, stop_node);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_other_token_same_key);
    tcase_add_test(tc, test_retry_keeps_edit_key);
    tcase_add_test(tc, test_same_token_other_content_refused);
    suite_add_tcase(s, tc);
    return ts_check_run(s);
}
