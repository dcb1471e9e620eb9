/*
 * ts_limits: post buckets (burst, steady rate, retry-after that is exact,
 * both-or-neither), author keys, per-address connection counting with its
 * refuse and drop thresholds, and pruning of refilled buckets.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#include "ts_check_main.h"
#include "ts_err.h"
#include "ts_limits.h"

START_TEST(test_burst_then_rate)
{
    struct ts_limits_config cfg = {.author_burst = 10, .author_window_ms = 10000};
    struct ts_limits *l = ts_limits_new(&cfg);
    ck_assert_ptr_nonnull(l);
    uint32_t retry = 0;
    uint64_t now = 5000;
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(ts_limits_post(l, "tok", "n:Ann", now, &retry), TS_OK);
    ck_assert_int_eq(ts_limits_post(l, "tok", "n:Ann", now, &retry), TS_E_RATE_LIMITED);
    /* one post per second after the burst */
    ck_assert_uint_eq(retry, 1000);
    ck_assert_int_eq(ts_limits_post(l, "tok", "n:Ann", now + retry - 1, &retry), TS_E_RATE_LIMITED);
    ck_assert_uint_eq(retry, 1);
    ck_assert_int_eq(ts_limits_post(l, "tok", "n:Ann", now + 1000, &retry), TS_OK);
    ck_assert_int_eq(ts_limits_post(l, "tok", "n:Ann", now + 1000, &retry), TS_E_RATE_LIMITED);
    /* other authors have their own bucket */
    ck_assert_int_eq(ts_limits_post(l, "tok", "n:Bob", now, &retry), TS_OK);
    /* a full window later the whole burst is back */
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(ts_limits_post(l, "tok", "n:Ann", now + 12000, &retry), TS_OK);
    ck_assert_int_eq(ts_limits_post(l, "tok", "n:Ann", now + 12000, &retry), TS_E_RATE_LIMITED);
    ts_limits_free(l);
}
END_TEST

START_TEST(test_both_or_neither)
{
    struct ts_limits_config cfg = {
        .author_burst = 2, .author_window_ms = 1000, .token_burst = 3, .token_window_ms = 3000};
    struct ts_limits *l = ts_limits_new(&cfg);
    uint32_t retry;
    ck_assert_int_eq(ts_limits_post(l, "t", "a1", 0, &retry), TS_OK);
    ck_assert_int_eq(ts_limits_post(l, "t", "a1", 0, &retry), TS_OK);
    /* a1 is out; the token still has one: a refusal must not take it */
    ck_assert_int_eq(ts_limits_post(l, "t", "a1", 0, &retry), TS_E_RATE_LIMITED);
    ck_assert_uint_eq(retry, 500);
    ck_assert_int_eq(ts_limits_post(l, "t", "a2", 0, &retry), TS_OK);
    /* now the token is out: the wait is the longer of the two */
    ck_assert_int_eq(ts_limits_post(l, "t", "a3", 0, &retry), TS_E_RATE_LIMITED);
    ck_assert_uint_eq(retry, 1000);
    ck_assert_int_eq(ts_limits_post(l, "t2", "a3", 0, &retry), TS_OK);
    ts_limits_free(l);
}
END_TEST

START_TEST(test_unlimited)
{
    struct ts_limits_config cfg = {0};
    struct ts_limits *l = ts_limits_new(&cfg);
    uint32_t retry;
    for (int i = 0; i < 10000; i++)
        ck_assert_int_eq(ts_limits_post(l, "t", "a", 0, &retry), TS_OK);
    for (int i = 0; i < 1000; i++)
        ck_assert_int_eq(ts_limits_conn_open(l, "127.0.0.1"), TS_OK);
    ck_assert_uint_eq(ts_limits_entries(l), 0);
    ts_limits_free(l);
}
END_TEST

START_TEST(test_author_key)
{
    char k[64];
    ts_limits_author_key("Ann", "Ann@Example.ORG", k, sizeof(k));
    ck_assert_str_eq(k, "e:ann@example.org");
    ts_limits_author_key("Ann Lee", "", k, sizeof(k));
    ck_assert_str_eq(k, "n:Ann Lee");
    ts_limits_author_key("Ann", NULL, k, sizeof(k));
    ck_assert_str_eq(k, "n:Ann");
    ts_limits_author_key("a-very-long-name", NULL, k, 6);
    ck_assert_str_eq(k, "n:a-v");
}
END_TEST

START_TEST(test_connections)
{
    struct ts_limits_config cfg = {.conns_per_addr = 3};
    struct ts_limits *l = ts_limits_new(&cfg);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(ts_limits_conn_open(l, "10.0.0.1"), TS_OK);
    ck_assert_int_eq(ts_limits_conn_open(l, "10.0.0.1"), TS_E_RATE_LIMITED);
    ck_assert_int_eq(ts_limits_conn_open(l, "10.0.0.2"), TS_OK);
    ck_assert_int_eq(ts_limits_conn_open(l, "10.0.0.1"), TS_E_RATE_LIMITED);
    ck_assert_int_eq(ts_limits_conn_open(l, "10.0.0.1"), TS_E_RATE_LIMITED);
    /* beyond twice the limit: dropped without a handshake */
    ck_assert_int_eq(ts_limits_conn_open(l, "10.0.0.1"), TS_E_BUSY);
    ck_assert_uint_eq(ts_limits_conn_count(l, "10.0.0.1"), 7);
    for (int i = 0; i < 5; i++)
        ts_limits_conn_close(l, "10.0.0.1");
    ck_assert_int_eq(ts_limits_conn_open(l, "10.0.0.1"), TS_OK);
    for (int i = 0; i < 3; i++)
        ts_limits_conn_close(l, "10.0.0.1");
    ts_limits_conn_close(l, "10.0.0.2");
    /* closed addresses leave nothing behind */
    ck_assert_uint_eq(ts_limits_entries(l), 0);
    ts_limits_free(l);
}
END_TEST

START_TEST(test_refilled_buckets_are_pruned)
{
    struct ts_limits_config cfg = {.author_burst = 5, .author_window_ms = 1000};
    struct ts_limits *l = ts_limits_new(&cfg);
    uint32_t retry;
    char key[32];
    /* 100k one-off authors, a new one every 10 us of clock: memory must
     * follow the authors active within a window, not all of them */
    size_t peak = 0;
    for (int i = 0; i < 100000; i++) {
        snprintf(key, sizeof(key), "n:author-%d", i);
        ck_assert_int_eq(ts_limits_post(l, "t", key, (uint64_t)i / 100, &retry), TS_OK);
        if (ts_limits_entries(l) > peak)
            peak = ts_limits_entries(l);
    }
    /* a window (1000 ms) holds 100k authors here; twice that at most, and
     * well under the total once time moves on */
    ck_assert_uint_le(peak, 2 * 1000 * 100 + 1024);
    /* then a quieter stream, one author per ms (1000 per window): the table
     * shrinks back to about that */
    size_t peak2 = 0;
    for (int i = 0; i < 300000; i++) {
        snprintf(key, sizeof(key), "n:late-%d", i);
        ck_assert_int_eq(ts_limits_post(l, "t", key, 2000 + (uint64_t)i, &retry), TS_OK);
        if (ts_limits_entries(l) > peak2)
            peak2 = ts_limits_entries(l);
    }
    ck_assert_uint_le(peak2, peak + 1);
    ck_assert_uint_lt(ts_limits_entries(l), 5000);
    ts_limits_free(l);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ts_limits");
    TCase *tc = tcase_create("limits");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_burst_then_rate);
    tcase_add_test(tc, test_both_or_neither);
    tcase_add_test(tc, test_unlimited);
    tcase_add_test(tc, test_author_key);
    tcase_add_test(tc, test_connections);
    tcase_add_test(tc, test_refilled_buckets_are_pruned);
    suite_add_tcase(s, tc);
    return ts_check_run(s);
}
