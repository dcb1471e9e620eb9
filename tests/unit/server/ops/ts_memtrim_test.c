/*
 * ts_memtrim: no trim for a trickle of connections, one trim on the first
 * quiet tick after a burst, one every TS_MEMTRIM_MAX_TICKS ticks under
 * steady churn, none while idle; one at once when asked (a restore); and
 * the real malloc_trim on a heap with free holes.
 */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ts_check_main.h"
#include "ts_memtrim.h"

static int trims;

static int fake_trim(void)
{
    trims++;
    return 1;
}

START_TEST(test_trickle_is_not_trimmed)
{
    trims = 0;
    struct ts_memtrim *m = ts_memtrim_new(fake_trim);
    ck_assert_ptr_nonnull(m);
    uint64_t churn = 0;
    for (int i = 0; i < TS_MEMTRIM_CHURN - 1; i++) {
        churn += 1;
        ck_assert_int_eq(ts_memtrim_tick(m, churn), 0);
        ck_assert_int_eq(ts_memtrim_tick(m, churn), 0); /* quiet, but too little */
    }
    ck_assert_int_eq(trims, 0);
    ck_assert_uint_eq(ts_memtrim_count(m), 0);
    ts_memtrim_free(m);
}
END_TEST

START_TEST(test_burst_trimmed_when_over)
{
    trims = 0;
    struct ts_memtrim *m = ts_memtrim_new(fake_trim);
    uint64_t churn = 1000; /* only differences count */
    ck_assert_int_eq(ts_memtrim_tick(m, churn), 0);
    trims = 0;
    /* A burst over three ticks: handshakes may still be running. */
    for (int i = 0; i < 3; i++) {
        churn += 1000;
        ck_assert_int_eq(ts_memtrim_tick(m, churn), 0);
    }
    ck_assert_int_eq(trims, 0);
    /* First quiet tick: trimmed, once. */
    ck_assert_int_eq(ts_memtrim_tick(m, churn), 1);
    ck_assert_int_eq(trims, 1);
    for (int i = 0; i < 20; i++)
        ck_assert_int_eq(ts_memtrim_tick(m, churn), 0);
    ck_assert_int_eq(trims, 1);
    /* A disconnect burst counts the same. */
    churn += TS_MEMTRIM_CHURN;
    ck_assert_int_eq(ts_memtrim_tick(m, churn), 0);
    ck_assert_int_eq(ts_memtrim_tick(m, churn), 1);
    ck_assert_uint_eq(ts_memtrim_count(m), 2);
    ts_memtrim_free(m);
}
END_TEST

START_TEST(test_steady_churn_bounded)
{
    trims = 0;
    struct ts_memtrim *m = ts_memtrim_new(fake_trim);
    uint64_t churn = 0;
    ts_memtrim_tick(m, churn);
    int ticks = 10 * TS_MEMTRIM_MAX_TICKS;
    for (int i = 0; i < ticks; i++) {
        churn += 100;
        ts_memtrim_tick(m, churn);
    }
    ck_assert_int_eq(trims, ticks / TS_MEMTRIM_MAX_TICKS);
    ts_memtrim_free(m);
}
END_TEST

/* A one-off trim (a restore freed a snapshot's worth at once) happens
 * whatever the churn, counts, and takes the pending churn with it: the
 * next quiet tick does not trim the same heap again. */
START_TEST(test_now_trims_and_resets)
{
    trims = 0;
    struct ts_memtrim *m = ts_memtrim_new(fake_trim);
    ck_assert_int_eq(ts_memtrim_now(m, "restore"), 1);
    ck_assert_int_eq(trims, 1);
    ck_assert_uint_eq(ts_memtrim_count(m), 1);
    uint64_t churn = TS_MEMTRIM_CHURN;
    ck_assert_int_eq(ts_memtrim_tick(m, churn), 0); /* a burst in progress */
    ck_assert_int_eq(ts_memtrim_now(m, "restore"), 1);
    ck_assert_int_eq(ts_memtrim_tick(m, churn), 0); /* quiet, but trimmed already */
    ck_assert_int_eq(trims, 2);
    ck_assert_uint_eq(ts_memtrim_count(m), 2);
    ts_memtrim_free(m);
}
END_TEST

/* The default trim is the C library's, and runs on a heap with free holes
 * between live blocks (as handshakes leave it) without disturbing them:
 * every byte of every live block is the same after the trim (under ASan,
 * which owns the heap, it finds nothing to do). */
START_TEST(test_real_trim)
{
    enum { N = 4096, LIVE = 64 };
    unsigned char **p = calloc(N, sizeof(*p));
    ck_assert_ptr_nonnull(p);
    for (int i = 0; i < N; i++) {
        p[i] = malloc(i % 2 ? LIVE : 8192);
        ck_assert_ptr_nonnull(p[i]);
        memset(p[i], i & 0xff, i % 2 ? LIVE : 1);
    }
    for (int i = 0; i < N; i += 2) {
        free(p[i]);
        p[i] = NULL;
    }
    struct ts_memtrim *m = ts_memtrim_new(NULL);
    ck_assert_int_eq(ts_memtrim_tick(m, 0), 0);
    ck_assert_int_eq(ts_memtrim_tick(m, TS_MEMTRIM_CHURN), 0);
    ck_assert_int_eq(ts_memtrim_tick(m, TS_MEMTRIM_CHURN), 1);
    ck_assert_uint_eq(ts_memtrim_count(m), 1);
    ts_memtrim_free(m);
    for (int i = 1; i < N; i += 2)
        for (int b = 0; b < LIVE; b++)
            ck_assert_msg(p[i][b] == (i & 0xff), "live block %d changed at byte %d", i, b);
    for (int i = 0; i < N; i++)
        free(p[i]);
    free(p);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("ts_memtrim");
    TCase *tc = tcase_create("policy");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_trickle_is_not_trimmed);
    tcase_add_test(tc, test_burst_trimmed_when_over);
    tcase_add_test(tc, test_steady_churn_bounded);
    tcase_add_test(tc, test_now_trims_and_resets);
    tcase_add_test(tc, test_real_trim);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ts_check_run(suite());
}
