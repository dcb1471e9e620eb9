/*
 * ts_file: atomic replacement, exact modes despite the umask, no temporary
 * left behind, read_all's size limit, and the directory fsync helpers (a
 * directory, the parent of a path, a bare name, a missing directory).
 */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ts_check_main.h"
#include "ts_err.h"
#include "ts_file.h"
#include "ts_testnode.h"

static char dir[64];

static void setup(void)
{
    strcpy(dir, "/tmp/ts_file_test.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
    ts_test_rmtree(dir);
}

static int count_entries(void)
{
    int n = 0;
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

START_TEST(test_write_replaces)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/f", dir);
    ck_assert_int_eq(ts_file_write_atomic(path, "first version\n", 14, 0644), TS_OK);
    ck_assert_int_eq(ts_file_write_atomic(path, "v2", 2, 0644), TS_OK);
    uint8_t *buf;
    size_t len;
    ck_assert_int_eq(ts_file_read_all(path, 1024, &buf, &len), TS_OK);
    ck_assert_uint_eq(len, 2);
    ck_assert_str_eq((char *)buf, "v2"); /* NUL-terminated, shorter content fully replaced */
    free(buf);
    ck_assert_int_eq(count_entries(), 1); /* no temporary left beside it */
}
END_TEST

START_TEST(test_mode_exact)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/secret", dir);
    umask(0077);
    ck_assert_int_eq(ts_file_write_atomic(path, "x", 1, 0640), TS_OK);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_uint_eq(st.st_mode & 07777, 0640);
    umask(0);
    ck_assert_int_eq(ts_file_write_atomic(path, "y", 1, 0600), TS_OK);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_uint_eq(st.st_mode & 07777, 0600);
}
END_TEST

START_TEST(test_write_empty_and_bad_dir)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/empty", dir);
    ck_assert_int_eq(ts_file_write_atomic(path, "", 0, 0600), TS_OK);
    uint8_t *buf;
    size_t len = 99;
    ck_assert_int_eq(ts_file_read_all(path, 0, &buf, &len), TS_OK);
    ck_assert_uint_eq(len, 0);
    free(buf);
    snprintf(path, sizeof(path), "%s/missing/f", dir);
    ck_assert_int_eq(ts_file_write_atomic(path, "x", 1, 0600), TS_E_IO);
}
END_TEST

START_TEST(test_read_max)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/big", dir);
    char data[1000];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (char)('a' + i % 26);
    ck_assert_int_eq(ts_file_write_atomic(path, data, sizeof(data), 0600), TS_OK);
    uint8_t *buf = (uint8_t *)1;
    size_t len;
    ck_assert_int_eq(ts_file_read_all(path, 999, &buf, &len), TS_E_TOO_LARGE);
    ck_assert_ptr_null(buf);
    ck_assert_int_eq(ts_file_read_all(path, 1000, &buf, &len), TS_OK);
    ck_assert_uint_eq(len, 1000);
    ck_assert_mem_eq(buf, data, sizeof(data));
    free(buf);
    snprintf(path, sizeof(path), "%s/nope", dir);
    ck_assert_int_eq(ts_file_read_all(path, 10, &buf, &len), TS_E_NOT_FOUND);
}
END_TEST

START_TEST(test_fsync_dir)
{
    char p[128];
    ck_assert_int_eq(ts_file_fsync_dir(dir), TS_OK);
    snprintf(p, sizeof(p), "%s/some-file", dir);
    ck_assert_int_eq(ts_file_fsync_parent(p), TS_OK);
    ck_assert_int_eq(ts_file_fsync_parent("bare-name"), TS_OK);
    ck_assert_int_eq(ts_file_fsync_parent("/top-level-name"), TS_OK);
    snprintf(p, sizeof(p), "%s/missing/file", dir);
    ck_assert_int_eq(ts_file_fsync_parent(p), TS_E_IO);
    snprintf(p, sizeof(p), "%s/missing", dir);
    ck_assert_int_eq(ts_file_fsync_dir(p), TS_E_IO);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ts_file");
    TCase *tc = tcase_create("file");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, test_write_replaces);
    tcase_add_test(tc, test_mode_exact);
    tcase_add_test(tc, test_write_empty_and_bad_dir);
    tcase_add_test(tc, test_read_max);
    tcase_add_test(tc, test_fsync_dir);
    suite_add_tcase(s, tc);
    return ts_check_run(s);
}
