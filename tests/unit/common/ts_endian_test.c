/*
 * ts_endian: each width and order stores known bytes at an odd (unaligned)
 * offset, touches nothing outside its width, and loads back what it stored,
 * including the top bit of each width.
 */
#include <check.h>
#include <stdint.h>
#include <string.h>

#include "ts_check_main.h"
#include "ts_endian.h"

START_TEST(test_known_bytes)
{
    uint8_t b[11];
    memset(b, 0xee, sizeof(b));
    ts_store_be64(b + 1, 0x0102030405060708ull);
    const uint8_t be64[] = {0xee, 1, 2, 3, 4, 5, 6, 7, 8, 0xee};
    ck_assert_mem_eq(b, be64, sizeof(be64));
    ck_assert_uint_eq(ts_load_be64(b + 1), 0x0102030405060708ull);

    ts_store_le64(b + 1, 0x0102030405060708ull);
    const uint8_t le64[] = {0xee, 8, 7, 6, 5, 4, 3, 2, 1, 0xee};
    ck_assert_mem_eq(b, le64, sizeof(le64));
    ck_assert_uint_eq(ts_load_le64(b + 1), 0x0102030405060708ull);

    memset(b, 0xee, sizeof(b));
    ts_store_be32(b + 1, 0x0a0b0c0du);
    const uint8_t be32[] = {0xee, 0x0a, 0x0b, 0x0c, 0x0d, 0xee};
    ck_assert_mem_eq(b, be32, sizeof(be32));
    ck_assert_uint_eq(ts_load_be32(b + 1), 0x0a0b0c0du);
    ts_store_le32(b + 1, 0x0a0b0c0du);
    const uint8_t le32[] = {0xee, 0x0d, 0x0c, 0x0b, 0x0a, 0xee};
    ck_assert_mem_eq(b, le32, sizeof(le32));
    ck_assert_uint_eq(ts_load_le32(b + 1), 0x0a0b0c0du);

    memset(b, 0xee, sizeof(b));
    ts_store_be16(b + 1, 0x1234);
    const uint8_t be16[] = {0xee, 0x12, 0x34, 0xee};
    ck_assert_mem_eq(b, be16, sizeof(be16));
    ck_assert_uint_eq(ts_load_be16(b + 1), 0x1234);
    ts_store_le16(b + 1, 0x1234);
    const uint8_t le16[] = {0xee, 0x34, 0x12, 0xee};
    ck_assert_mem_eq(b, le16, sizeof(le16));
    ck_assert_uint_eq(ts_load_le16(b + 1), 0x1234);
}
END_TEST

START_TEST(test_top_bits)
{
    uint8_t b[8];
    ts_store_be64(b, UINT64_MAX - 1);
    ck_assert_uint_eq(ts_load_be64(b), UINT64_MAX - 1);
    ts_store_le64(b, 0x8000000000000001ull);
    ck_assert_uint_eq(ts_load_le64(b), 0x8000000000000001ull);
    ts_store_be32(b, 0x80000001u);
    ck_assert_uint_eq(ts_load_be32(b), 0x80000001u);
    ts_store_le32(b, 0xfffffffeu);
    ck_assert_uint_eq(ts_load_le32(b), 0xfffffffeu);
    ts_store_be16(b, 0x8001);
    ck_assert_uint_eq(ts_load_be16(b), 0x8001);
    ts_store_le16(b, 0xfffe);
    ck_assert_uint_eq(ts_load_le16(b), 0xfffe);
}
END_TEST

static Suite *endian_suite(void)
{
    Suite *s = suite_create("ts_endian");
    TCase *tc = tcase_create("endian");
    tcase_add_test(tc, test_known_bytes);
    tcase_add_test(tc, test_top_bits);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ts_check_run(endian_suite());
}
