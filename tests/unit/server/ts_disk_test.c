/*
 * Unit tests for ts_disk: the reserve is margin + one segment + the
 * snapshot estimate, bytes in flight count as used, the state flips back
 * as soon as a check sees the space, a path that cannot be asked
 * refuses writes, and admission asks the file system only when the last
 * check's figure, less what was proposed since, no longer vouches for a
 * write (a removed directory tells whether statvfs was called).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

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

/* A fresh directory under /tmp into dir. */
static void make_dir(char *dir, size_t n)
{
    snprintf(dir, n, "/tmp/ts-disk-test.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

START_TEST(test_admit_without_statvfs)
{
    char dir[64];
    make_dir(dir, sizeof(dir));
    struct ts_disk d;
    ts_disk_init(&d, dir, 1 << 20);
    ck_assert_int_eq(ts_disk_check(&d, 0), 1);
    ck_assert_int_eq(rmdir(dir), 0); /* from now on a statvfs fails */
    ck_assert_int_eq(ts_disk_admit(&d, 0), 1);
    ts_disk_proposed(&d, (1 << 20) / TS_DISK_RECHECK_FRACTION - 1);
    ck_assert_int_eq(ts_disk_admit(&d, 0), 1);
    ck_assert_int_eq(d.stat_error, 0);
    /* a quarter of the margin proposed since: a real check, which fails */
    ts_disk_proposed(&d, 1);
    ck_assert_int_eq(ts_disk_admit(&d, 0), 0);
    ck_assert_int_ne(d.stat_error, 0);
    /* and stays refused until a check succeeds */
    ck_assert_int_eq(ts_disk_admit(&d, 0), 0);
}
END_TEST

START_TEST(test_admit_rechecks_near_the_reserve)
{
    char dir[64];
    make_dir(dir, sizeof(dir));
    struct ts_disk d;
    ts_disk_init(&d, dir, 1 << 20);
    ck_assert_int_eq(ts_disk_check(&d, 0), 1);
    /* a snapshot estimate that leaves 10 bytes above the reserve */
    uint64_t est = d.left - d.margin - TS_DISK_SEGMENT_BYTES - 10;
    ck_assert_int_eq(rmdir(dir), 0);
    ck_assert_int_eq(ts_disk_admit(&d, est), 1);
    ts_disk_proposed(&d, 10);
    ck_assert_int_eq(ts_disk_admit(&d, est), 1);
    ck_assert_int_eq(d.stat_error, 0);
    ts_disk_proposed(&d, 1); /* one byte into the reserve: ask the disk */
    ck_assert_int_eq(ts_disk_admit(&d, est), 0);
    ck_assert_int_ne(d.stat_error, 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("disk");
    TCase *tc = tcase_create("reserve");
    tcase_add_test(tc, test_reserve_and_recovery);
    tcase_add_test(tc, test_unreadable_path_refuses);
    tcase_add_test(tc, test_admit_without_statvfs);
    tcase_add_test(tc, test_admit_rechecks_near_the_reserve);
    suite_add_tcase(s, tc);
    return ts_check_run(s);
}
