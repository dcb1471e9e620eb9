/*
 * ts_lattrace: off without THREADSYNC_LATENCY_TRACE; with it, a post's
 * stamp is read from its body, each stage is recorded once, pushes are
 * found by seq, and the table names every traced post once.
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ts_check_main.h"
#include "ts_err.h"
#include "ts_lattrace.h"

START_TEST(test_stamp)
{
    ck_assert_uint_eq(ts_lattrace_stamp("tsb 00000000000000001234 body"), 1234);
    ck_assert_uint_eq(ts_lattrace_stamp("tsb 0000000000000000123x body"), 0);
    ck_assert_uint_eq(ts_lattrace_stamp("a comment"), 0);
    ck_assert_uint_eq(ts_lattrace_stamp("tsb 12"), 0);
    ck_assert_uint_eq(ts_lattrace_stamp(NULL), 0);
}
END_TEST

START_TEST(test_off_without_env)
{
    unsetenv("THREADSYNC_LATENCY_TRACE");
    ck_assert_int_eq(ts_lattrace_open(), TS_OK);
    ck_assert_int_eq(ts_lattrace_on, 0);
    ts_lattrace_close(); /* a no-op */
}
END_TEST

START_TEST(test_records_stages)
{
    char path[] = "/tmp/ts_lattrace_test_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    setenv("THREADSYNC_LATENCY_TRACE", path, 1);
    ck_assert_int_eq(ts_lattrace_open(), TS_OK);
    ck_assert_int_eq(ts_lattrace_on, 1);
    /* stamps in the past, so every stage is after them */
    uint64_t a = 1000, b = 2000;
    ts_lattrace_decoded(a);
    ts_lattrace_queued(a);
    ts_lattrace_queued(b);
    ts_lattrace_proposed(a);
    ts_lattrace_proposed(b);
    ts_lattrace_applied(a, 7);
    ts_lattrace_applied(b, 8);
    ts_lattrace_pushed(6, 8); /* both, to one subscriber */
    ts_lattrace_pushed(7, 8); /* b only, to another */
    ts_lattrace_queued(0);    /* no stamp: ignored */
    ts_lattrace_close();
    ck_assert_int_eq(ts_lattrace_on, 0);

    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    char line[512];
    ck_assert_ptr_nonnull(fgets(line, sizeof(line), f));
    ck_assert_int_eq(line[0], '#');
    unsigned long long v[2][9];
    for (int i = 0; i < 2; i++) {
        ck_assert_ptr_nonnull(fgets(line, sizeof(line), f));
        ck_assert_int_eq(sscanf(line, "%llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[i][0],
                                &v[i][1], &v[i][2], &v[i][3], &v[i][4], &v[i][5], &v[i][6],
                                &v[i][7], &v[i][8]),
                         9);
    }
    ck_assert_ptr_null(fgets(line, sizeof(line), f)); /* two posts, nothing else */
    fclose(f);
    unlink(path);
    /* a: seq 7, every stage, one push */
    ck_assert_uint_eq(v[0][0], a);
    ck_assert_uint_eq(v[0][1], 7);
    for (int c = 2; c <= 7; c++)
        ck_assert_uint_gt(v[0][c], 0);
    ck_assert_uint_le(v[0][3], v[0][5]); /* queued before applied */
    ck_assert_uint_eq(v[0][8], 1);
    /* b: never decoded on an I/O thread, pushed twice */
    ck_assert_uint_eq(v[1][0], b);
    ck_assert_uint_eq(v[1][1], 8);
    ck_assert_uint_eq(v[1][2], 0);
    ck_assert_uint_le(v[1][6], v[1][7]); /* first push before the last */
    ck_assert_uint_eq(v[1][8], 2);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("ts_lattrace");
    TCase *tc = tcase_create("trace");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_stamp);
    tcase_add_test(tc, test_off_without_env);
    tcase_add_test(tc, test_records_stages);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ts_check_run(suite());
}
