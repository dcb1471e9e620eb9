/*
 * ts_arena: pieces are 16-byte aligned, distinct and in order within a
 * chunk, a piece bigger than a chunk gets a mapping of its own, the limit
 * refuses a mapping that would pass it (and only that), and free leaves
 * the arena empty and usable again.
 */
#include <check.h>
#include <stdint.h>
#include <string.h>

#include "ts_arena.h"
#include "ts_check_main.h"

START_TEST(test_alloc_and_free)
{
    struct ts_arena a = {0};
    char *p = ts_arena_alloc(&a, 1), *q = ts_arena_alloc(&a, 17), *r = ts_arena_alloc(&a, 16);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq((uintptr_t)p % 16, 0);
    ck_assert_ptr_eq(q, p + 16);
    ck_assert_ptr_eq(r, q + 32);
    ck_assert_uint_eq(a.mapped, TS_ARENA_CHUNK);
    memset(q, 0xab, 17);
    ck_assert_uint_eq((unsigned char)r[0], 0); /* fresh mappings read as zero */
    char *big = ts_arena_alloc(&a, TS_ARENA_CHUNK + 1);
    ck_assert_ptr_nonnull(big);
    ck_assert_uint_gt(a.mapped, 2 * (size_t)TS_ARENA_CHUNK);
    big[TS_ARENA_CHUNK] = 1;
    ts_arena_free(&a);
    ck_assert_uint_eq(a.mapped, 0);
    ck_assert_ptr_null(a.chunks);
    ck_assert_ptr_nonnull(ts_arena_alloc(&a, 8)); /* usable again */
    ts_arena_free(&a);
}
END_TEST

START_TEST(test_limit)
{
    struct ts_arena a = {.limit = TS_ARENA_CHUNK + TS_ARENA_CHUNK / 2};
    ck_assert_ptr_nonnull(ts_arena_alloc(&a, TS_ARENA_CHUNK / 2));
    /* a second chunk would pass the limit */
    ck_assert_ptr_null(ts_arena_alloc(&a, TS_ARENA_CHUNK / 2 + 64));
    ck_assert_uint_eq(a.mapped, TS_ARENA_CHUNK);
    /* what the first chunk still holds is given */
    ck_assert_ptr_nonnull(ts_arena_alloc(&a, 64));
    ts_arena_free(&a);
    ck_assert_uint_eq(a.limit, TS_ARENA_CHUNK + TS_ARENA_CHUNK / 2);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ts_arena");
    TCase *tc = tcase_create("arena");
    tcase_add_test(tc, test_alloc_and_free);
    tcase_add_test(tc, test_limit);
    suite_add_tcase(s, tc);
    return ts_check_run(s);
}
