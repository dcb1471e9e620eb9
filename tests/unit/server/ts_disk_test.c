/*
 * Unit tests for ts_disk: the reserve is margin + one segment + the
 * snapshot estimate, bytes in flight count as used, the state flips back
 * as soon as a check sees the space, and a path that cannot be asked
 * refuses writes.
 */
#include <check.h>
#include <string.h>
#include <sys/statvfs.h>

#include "ts_check_main.h"
#include "ts_disk.h"

/* Bytes free to us on the file system of /tmp now. */
static uint64_t avail_now(void)
{
    struct statvfs sv;
    ck_assert_int_eq(statvfs("/tmp", &sv), 0);
    return (uint64_t)sv.f_bavail * sv.f_frsize;
}

START_TEST(test_reserve_and_recovery)
{
    struct ts_disk d;
    ts_disk_init(&d, "/tmp", 0);
    ck_assert_uint_eq(d.margin, TS_DISK_RESERVE_DEFAULT);
    ck_assert_int_eq(ts_disk_check(&d, 1000), 1);
    ck_assert_uint_eq(d.reserve, TS_DISK_RESERVE_DEFAULT + TS_DISK_SEGMENT_BYTES + 1000);
    ck_assert_uint_gt(d.avail, 0);
    ck_assert_int_eq(d.low, 0);

    /* a snapshot estimate larger than the disk: refused, and said why */
    ck_assert_int_eq(ts_disk_check(&d, avail_now() * 2), 0);
    ck_assert_int_eq(d.low, 1);
    char why[160];
    ts_disk_describe(&d, why, sizeof(why));
    ck_assert_ptr_nonnull(strstr(why, "disk space low"));
    /* the space is "back": the next check accepts */
    ck_assert_int_eq(ts_disk_check(&d, 0), 1);

    /* bytes in flight count as used until settled */
    ts_disk_proposed(&d, avail_now());
    ck_assert_int_eq(ts_disk_check(&d, 0), 0);
    ts_disk_settled(&d, d.pending);
    ck_assert_uint_eq(d.pending, 0);
    ck_assert_int_eq(ts_disk_check(&d, 0), 1);
    ts_disk_settled(&d, 5); /* never below zero */
    ck_assert_uint_eq(d.pending, 0);
}
END_TEST

START_TEST(test_unreadable_path_refuses)
{
    struct ts_disk d;
    ts_disk_init(&d, "/nonexistent/threadsync/raft", 4096);
    ck_assert_uint_eq(d.margin, 4096);
    ck_assert_int_eq(ts_disk_check(&d, 0), 0);
    ck_assert_int_ne(d.stat_error, 0);
    char why[160];
    ts_disk_describe(&d, why, sizeof(why));
    ck_assert_ptr_nonnull(strstr(why, "disk space unknown"));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("disk");
    TCase *tc = tcase_create("reserve");
    tcase_add_test(tc, test_reserve_and_recovery);
    tcase_add_test(tc, test_unreadable_path_refuses);
    suite_add_tcase(s, tc);
    return ts_check_run(s);
}
