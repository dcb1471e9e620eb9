/*
 * ts_array: growing keeps the array while it has room, doubles from the
 * first capacity when full (keeping the items), and refuses a size that
 * would overflow without touching the array; the lower bound finds a
 * present value, the slot of an absent one (front, middle, end) and 0 in
 * an empty array.
 */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>

#include "ts_array.h"
#include "ts_check_main.h"

START_TEST(test_grow)
{
    size_t cap = 0;
    uint64_t *v = ts_array_grow(NULL, &cap, 0, sizeof(*v), 4);
    ck_assert_ptr_nonnull(v);
    ck_assert_uint_eq(cap, 4);
    for (size_t i = 0; i < 4; i++)
        v[i] = i * 10;
    ck_assert_ptr_eq(ts_array_grow(v, &cap, 3, sizeof(*v), 4), v); /* room: v itself */
    ck_assert_uint_eq(cap, 4);
    v = ts_array_grow(v, &cap, 4, sizeof(*v), 4);
    ck_assert_ptr_nonnull(v);
    ck_assert_uint_eq(cap, 8);
    for (size_t i = 0; i < 4; i++)
        ck_assert_uint_eq(v[i], i * 10);
    size_t big = SIZE_MAX / 4;
    ck_assert_ptr_null(ts_array_grow(v, &big, big, 16, 4));
    ck_assert_uint_eq(big, SIZE_MAX / 4);
    free(v);
}
END_TEST

START_TEST(test_lower_bound)
{
    const uint64_t a[] = {3, 7, 7, 12, 40};
    ck_assert_uint_eq(ts_array_lower_bound_u64(a, 5, 7), 1);
    ck_assert_uint_eq(ts_array_lower_bound_u64(a, 5, 12), 3);
    ck_assert_uint_eq(ts_array_lower_bound_u64(a, 5, 1), 0);
    ck_assert_uint_eq(ts_array_lower_bound_u64(a, 5, 8), 3);
    ck_assert_uint_eq(ts_array_lower_bound_u64(a, 5, 41), 5);
    ck_assert_uint_eq(ts_array_lower_bound_u64(NULL, 0, 5), 0);
}
END_TEST

static Suite *array_suite(void)
{
    Suite *s = suite_create("ts_array");
    TCase *tc = tcase_create("array");
    tcase_add_test(tc, test_grow);
    tcase_add_test(tc, test_lower_bound);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ts_check_run(array_suite());
}
