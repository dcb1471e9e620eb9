/*
 * ts_buf: appends of every kind land in order and stay NUL-terminated
 * through growth; printf output longer than the space at hand is formatted
 * whole; space/commit reads in place; an empty buffer finishes as ""; an
 * allocation failure sticks and is reported once, at the end.
 */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ts_check_main.h"
#include "ts_buf.h"
#include "ts_err.h"

START_TEST(test_appends_in_order)
{
    struct ts_buf b = TS_BUF_INIT;
    ts_buf_puts(&b, "ab");
    ts_buf_add(&b, "cdef", 2);
    ts_buf_printf(&b, "[%d:%s]", 42, "x");
    ck_assert_str_eq(b.p, "abcd[42:x]");
    ck_assert_uint_eq(b.len, 10);
    /* many small appends: growth keeps earlier bytes and the NUL */
    for (int i = 0; i < 5000; i++)
        ts_buf_add(&b, "z", 1);
    ck_assert_uint_eq(b.len, 5010);
    ck_assert_uint_eq(strlen(b.p), 5010);
    ck_assert_int_eq(memcmp(b.p, "abcd[42:x]zzz", 13), 0);
    char *out;
    size_t len;
    ck_assert_int_eq(ts_buf_finish(&b, &out, &len), TS_OK);
    ck_assert_uint_eq(len, 5010);
    ck_assert_ptr_null(b.p); /* handed over */
    free(out);
}
END_TEST

START_TEST(test_long_printf)
{
    struct ts_buf b = TS_BUF_INIT;
    ts_buf_puts(&b, "<");
    char big[3000];
    memset(big, 'q', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    ts_buf_printf(&b, "%s|%s", big, big);
    ts_buf_puts(&b, ">");
    ck_assert_uint_eq(b.len, 1 + 2 * 2999 + 1 + 1);
    ck_assert_int_eq(b.p[0], '<');
    ck_assert_int_eq(b.p[3000], '|');
    ck_assert_int_eq(b.p[b.len - 1], '>');
    ck_assert_int_eq(b.p[b.len], '\0');
    ts_buf_free(&b);
    ck_assert_ptr_null(b.p);
}
END_TEST

START_TEST(test_space_commit)
{
    struct ts_buf b = TS_BUF_INIT;
    char *p = ts_buf_space(&b, 10000);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_ge(b.cap, 10001);
    ck_assert_uint_lt(b.cap, 10001 + 64); /* the first size is what was asked */
    memcpy(p, "hello", 5);
    ts_buf_commit(&b, 5);
    ck_assert_str_eq(b.p, "hello");
    ts_buf_commit(&b, 0);
    ck_assert_str_eq(b.p, "hello");
    ts_buf_free(&b);
}
END_TEST

START_TEST(test_empty_finishes_as_string)
{
    struct ts_buf b = TS_BUF_INIT;
    char *out = NULL;
    size_t len = 99;
    ck_assert_int_eq(ts_buf_finish(&b, &out, &len), TS_OK);
    ck_assert_ptr_nonnull(out);
    ck_assert_str_eq(out, "");
    ck_assert_uint_eq(len, 0);
    free(out);
}
END_TEST

START_TEST(test_failure_sticks)
{
    struct ts_buf b = TS_BUF_INIT;
    ts_buf_puts(&b, "kept");
    ck_assert_ptr_null(ts_buf_space(&b, SIZE_MAX - 8)); /* cannot be had */
    ck_assert_int_eq(b.failed, 1);
    ts_buf_puts(&b, "more");
    ck_assert_str_eq(b.p, "kept"); /* nothing added after the failure */
    char *out = (char *)1;
    size_t len = 7;
    ck_assert_int_eq(ts_buf_finish(&b, &out, &len), TS_E_NOMEM);
    ck_assert_ptr_null(out);
    ck_assert_uint_eq(len, 0);
    ck_assert_ptr_null(b.p);
    ck_assert_int_eq(b.failed, 0); /* empty and usable again */
}
END_TEST

static Suite *buf_suite(void)
{
    Suite *s = suite_create("ts_buf");
    TCase *tc = tcase_create("buf");
    tcase_add_test(tc, test_appends_in_order);
    tcase_add_test(tc, test_long_printf);
    tcase_add_test(tc, test_space_commit);
    tcase_add_test(tc, test_empty_finishes_as_string);
    tcase_add_test(tc, test_failure_sticks);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ts_check_run(buf_suite());
}
