/*
 * ts_hex: known bytes give known digits (lowercase, NUL-terminated, every
 * nibble value), zero bytes give "", and random keys have the asked length,
 * only hex digits, and differ from call to call (also past the internal
 * 64-byte chunk).
 */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ts_check_main.h"
#include "ts_err.h"
#include "ts_hex.h"

START_TEST(test_encode_known)
{
    const uint8_t in[] = {0x00, 0x01, 0x7f, 0x80, 0xab, 0xcd, 0xef, 0xff};
    char out[2 * sizeof(in) + 1];
    memset(out, 'x', sizeof(out));
    ts_hex_encode(in, sizeof(in), out);
    ck_assert_str_eq(out, "00017f80abcdefff");
    char empty[1] = {'x'};
    ts_hex_encode(in, 0, empty);
    ck_assert_str_eq(empty, "");
}
END_TEST

START_TEST(test_random)
{
    char a[2 * 100 + 1], b[2 * 100 + 1];
    ck_assert_int_eq(ts_hex_random(100, a), TS_OK);
    ck_assert_int_eq(ts_hex_random(100, b), TS_OK);
    ck_assert_uint_eq(strlen(a), 200);
    ck_assert_uint_eq(strspn(a, "0123456789abcdef"), 200);
    ck_assert_str_ne(a, b);
    /* the second chunk is random too, not a copy of the first */
    ck_assert_int_ne(memcmp(a, a + 128, 72), 0);
}
END_TEST

static Suite *hex_suite(void)
{
    Suite *s = suite_create("ts_hex");
    TCase *tc = tcase_create("hex");
    tcase_add_test(tc, test_encode_known);
    tcase_add_test(tc, test_random);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ts_check_run(hex_suite());
}
