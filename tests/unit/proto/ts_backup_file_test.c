/*
 * ts_backup_file: a header written for a snapshot parses back to its seq
 * and snapshot; the header alone gives seq and length; a wrong magic, a
 * truncated or longer file and a flipped snapshot byte are each refused with
 * their own code.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "ts_backup_file.h"
#include "ts_check_main.h"
#include "ts_err.h"

static uint8_t file[TS_BACKUP_FILE_HEADER + 100];

static void make(void)
{
    uint8_t *snap = file + TS_BACKUP_FILE_HEADER;
    for (size_t i = 0; i < 99; i++)
        snap[i] = (uint8_t)(i * 7);
    ts_backup_file_header(file, 0x0102030405060708ull, snap, 99);
}

START_TEST(test_round_trip)
{
    make();
    uint64_t seq = 0, len = 0;
    ck_assert_int_eq(ts_backup_file_check_header(file, &seq, &len), TS_OK);
    ck_assert_uint_eq(seq, 0x0102030405060708ull);
    ck_assert_uint_eq(len, 99);
    ck_assert_mem_eq(file, "TSBKUP01", 8);
    const uint8_t *snap = NULL;
    size_t snap_len = 0;
    seq = 0;
    ck_assert_int_eq(ts_backup_file_parse(file, TS_BACKUP_FILE_HEADER + 99, &seq, &snap, &snap_len),
                     TS_OK);
    ck_assert_uint_eq(seq, 0x0102030405060708ull);
    ck_assert_ptr_eq(snap, file + TS_BACKUP_FILE_HEADER);
    ck_assert_uint_eq(snap_len, 99);
}
END_TEST

START_TEST(test_refusals)
{
    const uint8_t *snap;
    size_t snap_len;
    uint64_t seq, len;
    make();
    ck_assert_int_eq(ts_backup_file_parse(file, TS_BACKUP_FILE_HEADER + 98, &seq, &snap, &snap_len),
                     TS_E_BAD_FRAME);
    ck_assert_int_eq(
        ts_backup_file_parse(file, TS_BACKUP_FILE_HEADER + 100, &seq, &snap, &snap_len),
        TS_E_BAD_FRAME);
    ck_assert_int_eq(ts_backup_file_parse(file, 10, &seq, &snap, &snap_len), TS_E_BAD_FRAME);
    file[TS_BACKUP_FILE_HEADER + 50] ^= 1;
    ck_assert_int_eq(ts_backup_file_parse(file, TS_BACKUP_FILE_HEADER + 99, &seq, &snap, &snap_len),
                     TS_E_INVALID_ARGUMENT);
    make();
    file[7] = '2';
    ck_assert_int_eq(ts_backup_file_check_header(file, &seq, &len), TS_E_BAD_FRAME);
    ck_assert_int_eq(ts_backup_file_parse(file, TS_BACKUP_FILE_HEADER + 99, &seq, &snap, &snap_len),
                     TS_E_BAD_FRAME);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ts_backup_file");
    TCase *tc = tcase_create("file");
    tcase_add_test(tc, test_round_trip);
    tcase_add_test(tc, test_refusals);
    suite_add_tcase(s, tc);
    return ts_check_run(s);
}
