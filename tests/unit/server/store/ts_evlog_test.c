/*
 * ts_evlog: append and read back both encodings, eviction by count and by
 * bytes, horizon, pos_after over seq gaps, reset, and memory that follows
 * what is retained.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ts_check_main.h"
#include "ts_err.h"
#include "ts_evlog.h"
#include "ts_storefx.h"

/* Appends an event for comment seq in thread tid with a body of body_len
 * bytes by an author with this e-mail ("": none, and then both forms are
 * the same bytes; NULL: none, and no public form is passed); the public
 * form has no e-mail. */
static int append_by(struct ts_evlog *log, uint64_t seq, uint64_t tid, size_t body_len,
                     const char *email)
{
    char *body = malloc(body_len + 1);
    memset(body, 'b', body_len);
    body[body_len] = '\0';
    Threadsync__Thread t = THREADSYNC__THREAD__INIT;
    t.id = tid;
    t.key = "site/t";
    Threadsync__Comment c = THREADSYNC__COMMENT__INIT;
    c.id = seq;
    c.thread_id = tid;
    c.author_name = "Ann";
    c.author_email = (char *)email;
    c.body = body;
    c.status = THREADSYNC__STATUS__VISIBLE;
    Threadsync__Comment pc = c;
    pc.author_email = "";
    Threadsync__Event full = THREADSYNC__EVENT__INIT, pub;
    full.seq = seq;
    full.thread = &t;
    full.comment = &c;
    pub = full;
    pub.comment = &pc;
    /* NULL e-mail: as the store passes an event whose public view hid
     * nothing, without a public form */
    int rc = ts_evlog_append(log, seq, tid, &full, email ? &pub : NULL);
    free(body);
    return rc;
}

static int append(struct ts_evlog *log, uint64_t seq, uint64_t tid, size_t body_len)
{
    return append_by(log, seq, tid, body_len, "ann@example.org");
}

START_TEST(test_append_get)
{
    struct ts_evlog *log;
    ck_assert_int_eq(ts_evlog_new(NULL, &log), TS_OK);
    ck_assert_uint_eq(ts_evlog_last_seq(log), 0);
    ck_assert_uint_eq(ts_evlog_end_pos(log), 0);
    for (uint64_t i = 0; i < 10; i++)
        ck_assert_int_eq(append(log, 3 * i + 5, 100 + i % 3, 20 + i), TS_OK);
    ck_assert_uint_eq(ts_evlog_first_pos(log), 0);
    ck_assert_uint_eq(ts_evlog_end_pos(log), 10);
    ck_assert_uint_eq(ts_evlog_last_seq(log), 32);
    ck_assert_uint_eq(ts_evlog_horizon(log), 0);
    for (uint64_t i = 0; i < 10; i++) {
        struct ts_evlog_entry e;
        ck_assert_int_eq(ts_evlog_get(log, i, &e), TS_OK);
        ck_assert_uint_eq(e.seq, 3 * i + 5);
        ck_assert_uint_eq(e.thread_id, 100 + i % 3);
        Threadsync__Event *full = ts_storefx_event(e.full, e.full_len);
        Threadsync__Event *pub = ts_storefx_event(e.pub, e.pub_len);
        ck_assert_uint_eq(full->seq, e.seq);
        ck_assert_uint_eq(pub->seq, e.seq);
        ck_assert_str_eq(full->comment->author_email, "ann@example.org");
        ck_assert_str_eq(pub->comment->author_email, "");
        ck_assert_uint_eq(strlen(full->comment->body), 20 + i);
        ck_assert_uint_eq(full->thread->id, 100 + i % 3);
        threadsync__event__free_unpacked(full, NULL);
        threadsync__event__free_unpacked(pub, NULL);
    }
    struct ts_evlog_entry e;
    ck_assert_int_eq(ts_evlog_get(log, 10, &e), TS_E_NOT_FOUND);
    /* seq must grow, and the events must carry it. */
    ck_assert_int_eq(append(log, 32, 1, 5), TS_E_INVALID_ARGUMENT);
    ck_assert_int_eq(append(log, 31, 1, 5), TS_E_INVALID_ARGUMENT);
    ck_assert_uint_eq(ts_evlog_end_pos(log), 10);
    ts_evlog_free(log);
}
END_TEST

START_TEST(test_evict_by_count)
{
    struct ts_evlog_config cfg = {.max_events = 5};
    struct ts_evlog *log;
    ck_assert_int_eq(ts_evlog_new(&cfg, &log), TS_OK);
    for (uint64_t i = 0; i < 12; i++)
        ck_assert_int_eq(append(log, 10 * (i + 1), 1, 30), TS_OK);
    ck_assert_uint_eq(ts_evlog_end_pos(log), 12);
    ck_assert_uint_eq(ts_evlog_first_pos(log), 7);
    /* Positions 0..6 (seq 10..70) were evicted. */
    ck_assert_uint_eq(ts_evlog_horizon(log), 70);
    struct ts_evlog_entry e;
    ck_assert_int_eq(ts_evlog_get(log, 6, &e), TS_E_NOT_FOUND);
    ck_assert_int_eq(ts_evlog_get(log, 7, &e), TS_OK);
    ck_assert_uint_eq(e.seq, 80);
    ck_assert_int_eq(ts_evlog_get(log, 11, &e), TS_OK);
    ck_assert_uint_eq(e.seq, 120);
    ts_evlog_free(log);
}
END_TEST

START_TEST(test_evict_by_bytes)
{
    struct ts_evlog *probe;
    ck_assert_int_eq(ts_evlog_new(NULL, &probe), TS_OK);
    ck_assert_int_eq(append(probe, 1, 1, 1000), TS_OK);
    struct ts_evlog_entry e;
    ck_assert_int_eq(ts_evlog_get(probe, 0, &e), TS_OK);
    size_t one = e.pub_len + e.full_len;
    ts_evlog_free(probe);

    /* Room for three and a half events of this size. */
    struct ts_evlog_config cfg = {.max_bytes = one * 7 / 2};
    struct ts_evlog *log;
    ck_assert_int_eq(ts_evlog_new(&cfg, &log), TS_OK);
    for (uint64_t i = 1; i <= 10; i++)
        ck_assert_int_eq(append(log, i, 1, 1000), TS_OK);
    ck_assert_uint_eq(ts_evlog_end_pos(log) - ts_evlog_first_pos(log), 3);
    ck_assert_uint_eq(ts_evlog_horizon(log), 7);

    /* An event bigger than the whole budget is still kept, alone. */
    ck_assert_int_eq(append(log, 11, 1, 8000), TS_OK);
    ck_assert_uint_eq(ts_evlog_first_pos(log), 10);
    ck_assert_uint_eq(ts_evlog_end_pos(log), 11);
    ck_assert_uint_eq(ts_evlog_horizon(log), 10);
    ck_assert_int_eq(ts_evlog_get(log, 10, &e), TS_OK);
    ck_assert_uint_eq(e.seq, 11);
    /* The next small one evicts it. */
    ck_assert_int_eq(append(log, 12, 1, 1000), TS_OK);
    ck_assert_uint_eq(ts_evlog_first_pos(log), 11);
    ck_assert_uint_eq(ts_evlog_horizon(log), 11);
    ts_evlog_free(log);
}
END_TEST

START_TEST(test_pos_after_gaps)
{
    struct ts_evlog_config cfg = {.max_events = 50};
    struct ts_evlog *log;
    ck_assert_int_eq(ts_evlog_new(&cfg, &log), TS_OK);
    ck_assert_uint_eq(ts_evlog_pos_after(log, 0), 0);
    /* seq 10, 20, ..., 1000 at positions 0..99; 0..49 get evicted. */
    for (uint64_t i = 0; i < 100; i++)
        ck_assert_int_eq(append(log, 10 * (i + 1), 1, 10), TS_OK);
    ck_assert_uint_eq(ts_evlog_first_pos(log), 50);
    ck_assert_uint_eq(ts_evlog_horizon(log), 500);
    ck_assert_uint_eq(ts_evlog_pos_after(log, 500), 50);
    ck_assert_uint_eq(ts_evlog_pos_after(log, 505), 50);
    ck_assert_uint_eq(ts_evlog_pos_after(log, 510), 51);
    ck_assert_uint_eq(ts_evlog_pos_after(log, 511), 51);
    ck_assert_uint_eq(ts_evlog_pos_after(log, 999), 99);
    ck_assert_uint_eq(ts_evlog_pos_after(log, 1000), 100);
    ck_assert_uint_eq(ts_evlog_pos_after(log, 5000), 100);
    for (uint64_t s = 500; s < 1000; s++) {
        uint64_t p = ts_evlog_pos_after(log, s);
        struct ts_evlog_entry e;
        ck_assert_int_eq(ts_evlog_get(log, p, &e), TS_OK);
        ck_assert_uint_gt(e.seq, s);
        if (p > 50) {
            ck_assert_int_eq(ts_evlog_get(log, p - 1, &e), TS_OK);
            ck_assert_uint_le(e.seq, s);
        }
    }
    ts_evlog_free(log);
}
END_TEST

START_TEST(test_memory_follows_retention)
{
    struct ts_evlog_config cfg = {.max_events = 1000};
    struct ts_evlog *log;
    ck_assert_int_eq(ts_evlog_new(&cfg, &log), TS_OK);
    size_t empty = ts_evlog_memory(log);
    size_t retained = 0;
    for (uint64_t i = 1; i <= 1000; i++)
        ck_assert_int_eq(append(log, i, 1, 500), TS_OK);
    for (uint64_t p = 0; p < 1000; p++) {
        struct ts_evlog_entry e;
        ck_assert_int_eq(ts_evlog_get(log, p, &e), TS_OK);
        retained += e.pub_len + e.full_len;
    }
    size_t full = ts_evlog_memory(log);
    ck_assert_uint_gt(full, empty + retained);
    /* 50x more appended than retained: whole chunks must have been freed,
     * leaving the retained bytes, one partly used chunk at each end and the
     * index. */
    for (uint64_t i = 1001; i <= 50000; i++)
        ck_assert_int_eq(append(log, i, 1, 500), TS_OK);
    size_t after = ts_evlog_memory(log);
    ck_assert_uint_lt(after, retained + (size_t)2 * (256u << 10) + (size_t)1024 * 32 + 4096);
    ck_assert_uint_eq(ts_evlog_end_pos(log) - ts_evlog_first_pos(log), 1000);
    fprintf(stderr, "evlog: %zu bytes for 1000 events of ~%zu element bytes (%.1f per event)\n",
            after, retained / 1000, (double)after / 1000);
    ts_evlog_free(log);
}
END_TEST

START_TEST(test_reset)
{
    struct ts_evlog *log;
    ck_assert_int_eq(ts_evlog_new(NULL, &log), TS_OK);
    for (uint64_t i = 1; i <= 5; i++)
        ck_assert_int_eq(append(log, i, 1, 10), TS_OK);
    uint64_t old_end = ts_evlog_end_pos(log);
    ts_evlog_reset(log, 40);
    ck_assert_uint_gt(ts_evlog_first_pos(log), old_end);
    ck_assert_uint_eq(ts_evlog_first_pos(log), ts_evlog_end_pos(log));
    ck_assert_uint_eq(ts_evlog_horizon(log), 40);
    ck_assert_uint_eq(ts_evlog_last_seq(log), 40);
    ck_assert_int_eq(append(log, 40, 1, 10), TS_E_INVALID_ARGUMENT);
    ck_assert_int_eq(append(log, 41, 1, 10), TS_OK);
    ck_assert_uint_eq(ts_evlog_pos_after(log, 40), ts_evlog_first_pos(log));
    ts_evlog_free(log);
}
END_TEST

/* Blanks the body of the public form, as moderation does. */
static void blank_body(void *arg, Threadsync__Event *ev)
{
    (void)arg;
    ev->comment->body = "";
}

/* An event whose two forms are the same bytes is kept once; rewriting its
 * public form (moderation) separates the two without touching the full
 * one, again and again; eviction and free release what was separated. */
START_TEST(test_same_forms_kept_once)
{
    struct ts_evlog_config cfg = {.max_events = 4};
    struct ts_evlog *log, *log2, *log3;
    ck_assert_int_eq(ts_evlog_new(&cfg, &log), TS_OK);
    ck_assert_int_eq(ts_evlog_new(&cfg, &log2), TS_OK);
    ck_assert_int_eq(ts_evlog_new(&cfg, &log3), TS_OK);
    for (uint64_t i = 1; i <= 4; i++) {
        ck_assert_int_eq(append_by(log, i, 1, 300, ""), TS_OK);
        ck_assert_int_eq(append_by(log2, i, 1, 300, "a@b.c"), TS_OK);
        ck_assert_int_eq(append_by(log3, i, 1, 300, NULL), TS_OK);
    }
    struct ts_evlog_entry e, e2, e3;
    ck_assert_int_eq(ts_evlog_get(log, 1, &e), TS_OK);
    ck_assert_int_eq(ts_evlog_get(log2, 1, &e2), TS_OK);
    ck_assert_int_eq(ts_evlog_get(log3, 1, &e3), TS_OK);
    ck_assert_ptr_eq(e.pub, e.full);
    ck_assert_uint_eq(e.pub_len, e.full_len);
    ck_assert_uint_eq(e.pub_len, e2.pub_len);
    ck_assert_uint_gt(e2.full_len, e2.pub_len);
    /* no public form given (the store's view hid nothing): encoded once,
     * the same bytes and memory as two forms that came out equal */
    ck_assert_ptr_eq(e3.pub, e3.full);
    ck_assert_uint_eq(e3.pub_len, e.full_len);
    ck_assert_uint_eq(e3.full_len, e.full_len);
    ck_assert_mem_eq(e3.full, e.full, e.full_len);
    ck_assert_uint_eq(ts_evlog_memory(log3), ts_evlog_memory(log));
    ts_evlog_free(log3);
    /* the byte limit counts the one copy: twice the events fit */
    struct ts_evlog_config by_bytes = {.max_bytes = 40 * (e2.pub_len + e2.full_len)};
    struct ts_evlog *once, *twice;
    ck_assert_int_eq(ts_evlog_new(&by_bytes, &once), TS_OK);
    ck_assert_int_eq(ts_evlog_new(&by_bytes, &twice), TS_OK);
    for (uint64_t i = 1; i <= 200; i++) {
        ck_assert_int_eq(append_by(once, i, 1, 300, ""), TS_OK);
        ck_assert_int_eq(append_by(twice, i, 1, 300, "a@b.c"), TS_OK);
    }
    /* (later seqs take a byte more to encode) */
    uint64_t n_twice = ts_evlog_end_pos(twice) - ts_evlog_first_pos(twice);
    ck_assert_uint_le(n_twice, 40);
    ck_assert_uint_ge(ts_evlog_end_pos(once) - ts_evlog_first_pos(once), 2 * n_twice - 1);
    ts_evlog_free(once);
    ts_evlog_free(twice);
    size_t m = ts_evlog_memory(log);

    /* moderation: the public form loses its body, the full one keeps it */
    ck_assert_uint_eq(ts_evlog_rewrite_public(log, 1, 2, 2, blank_body, NULL), 1);
    ck_assert_int_eq(ts_evlog_get(log, 1, &e), TS_OK);
    ck_assert_ptr_ne(e.pub, e.full);
    Threadsync__Event *pub = ts_storefx_event(e.pub, e.pub_len);
    Threadsync__Event *full = ts_storefx_event(e.full, e.full_len);
    ck_assert_str_eq(pub->comment->body, "");
    ck_assert_uint_eq(strlen(full->comment->body), 300);
    ck_assert_uint_eq(pub->seq, 2);
    threadsync__event__free_unpacked(pub, NULL);
    threadsync__event__free_unpacked(full, NULL);
    ck_assert_uint_eq(ts_evlog_memory(log), m + e.pub_len);
    /* again (nothing left to take: unchanged), and a second entry */
    ck_assert_uint_eq(ts_evlog_rewrite_public(log, 1, 2, 2, blank_body, NULL), 1);
    ck_assert_uint_eq(ts_evlog_rewrite_public(log, 1, 3, 3, blank_body, NULL), 1);
    ck_assert_int_eq(ts_evlog_get(log, 2, &e), TS_OK);
    pub = ts_storefx_event(e.pub, e.pub_len);
    ck_assert_str_eq(pub->comment->body, "");
    threadsync__event__free_unpacked(pub, NULL);
    /* the others still share one copy */
    ck_assert_int_eq(ts_evlog_get(log, 0, &e), TS_OK);
    ck_assert_ptr_eq(e.pub, e.full);
    /* evicting the first separated entry frees its public copy; the second
     * is still retained when the log is freed */
    ck_assert_int_eq(append_by(log, 5, 1, 300, ""), TS_OK);
    ck_assert_int_eq(append_by(log, 6, 1, 300, ""), TS_OK);
    ck_assert_uint_eq(ts_evlog_first_pos(log), 2);
    ck_assert_int_eq(ts_evlog_get(log, 2, &e), TS_OK);
    ck_assert_ptr_ne(e.pub, e.full);
    ts_evlog_free(log);
    ts_evlog_free(log2);
}
END_TEST

static Suite *evlog_suite(void)
{
    Suite *s = suite_create("ts_evlog");
    TCase *tc = tcase_create("evlog");
    tcase_add_test(tc, test_append_get);
    tcase_add_test(tc, test_evict_by_count);
    tcase_add_test(tc, test_evict_by_bytes);
    tcase_add_test(tc, test_pos_after_gaps);
    tcase_add_test(tc, test_memory_follows_retention);
    tcase_add_test(tc, test_reset);
    tcase_add_test(tc, test_same_forms_kept_once);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ts_check_run(evlog_suite());
}
