/*
 * ts_map: finds what was inserted, through growth; removal in any order
 * keeps every other element findable even when all share a few home slots
 * (the backward shift); the load factor stays at most 3/4; a remove then an
 * insert does not grow; string hashes are stable within a process and
 * differ for different keys. A fork-private map works the same and its
 * slot array is absent from a forked child, a plain map's present. A
 * lookup reads only the elements whose hash's tag matches the key's, and a
 * walk of the slots gives the elements themselves.
 */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ts_check_main.h"
#include "ts_err.h"
#include "ts_map.h"
#include "ts_testfork.h"

struct elem {
    uint64_t id;
};

static uint64_t hash_good(const void *e)
{
    return ts_map_hash_u64(((const struct elem *)e)->id);
}

/* Every element in one of four home slots: long probe runs. */
static uint64_t hash_bad(const void *e)
{
    return ((const struct elem *)e)->id % 4;
}

/* One home slot (3), and a distinct top 16 bits (the tag) per id < 2^16. */
static uint64_t hash_tagged(const void *e)
{
    return ((const struct elem *)e)->id << 48 | 3;
}

static unsigned eq_calls;

static int eq_id(const void *e, const void *key)
{
    eq_calls++;
    return ((const struct elem *)e)->id == *(const uint64_t *)key;
}

static struct elem *find(const struct ts_map *m, uint64_t id)
{
    struct elem probe = {id};
    return ts_map_find(m, m->hash(&probe), &id, eq_id);
}

/* _i 0: a plain map; 1: a fork-private one. */
START_TEST(test_insert_find_grow)
{
    enum { N = 5000 };
    struct elem *v = calloc(N, sizeof(*v));
    struct ts_map m = TS_MAP_INIT(hash_good);
    m.fork_private = _i;
    ck_assert_ptr_null(find(&m, 1)); /* empty: no slots at all */
    for (uint64_t i = 0; i < N; i++) {
        v[i].id = i * 7 + 1;
        ck_assert_int_eq(ts_map_insert(&m, &v[i]), TS_OK);
        ck_assert_uint_le(m.n * 4, m.cap * 3);
    }
    ck_assert_uint_eq(m.n, N);
    ck_assert_uint_eq(m.cap & (m.cap - 1), 0); /* a power of two */
    for (uint64_t i = 0; i < N; i++)
        ck_assert_ptr_eq(find(&m, i * 7 + 1), &v[i]);
    ck_assert_ptr_null(find(&m, 2));
    ts_map_free(&m);
    ck_assert_uint_eq(m.n, 0);
    ck_assert_ptr_null(find(&m, 1));
    free(v);
}
END_TEST

START_TEST(test_remove_with_collisions)
{
    enum { N = 200 };
    struct elem v[N];
    struct ts_map m = TS_MAP_INIT(hash_bad);
    m.fork_private = _i;
    for (uint64_t i = 0; i < N; i++) {
        v[i].id = i;
        ck_assert_int_eq(ts_map_insert(&m, &v[i]), TS_OK);
    }
    /* Remove every third, from the middle of the runs, then check all. */
    for (uint64_t i = 0; i < N; i += 3)
        ts_map_remove(&m, &v[i]);
    for (uint64_t i = 0; i < N; i++) {
        if (i % 3 == 0)
            ck_assert_ptr_null(find(&m, i));
        else
            ck_assert_ptr_eq(find(&m, i), &v[i]);
    }
    ck_assert_uint_eq(m.n, N - (N + 2) / 3);
    /* Then the rest, in reverse. */
    for (uint64_t i = N; i-- > 0;)
        if (i % 3)
            ts_map_remove(&m, &v[i]);
    ck_assert_uint_eq(m.n, 0);
    for (size_t i = 0; i < m.cap; i++)
        ck_assert_ptr_null(ts_map_slot(&m, i));
    ts_map_free(&m);
}
END_TEST

START_TEST(test_replace_does_not_grow)
{
    struct elem v[12], w = {100};
    struct ts_map m = TS_MAP_INIT(hash_good);
    for (uint64_t i = 0; i < 12; i++) { /* 12 of 16: exactly full */
        v[i].id = i;
        ck_assert_int_eq(ts_map_insert(&m, &v[i]), TS_OK);
    }
    size_t cap = m.cap;
    void **slots = m.slots;
    ts_map_remove(&m, &v[5]);
    ck_assert_int_eq(ts_map_insert(&m, &w), TS_OK);
    ck_assert_uint_eq(m.cap, cap);
    ck_assert_ptr_eq(m.slots, slots);
    ck_assert_ptr_eq(find(&m, 100), &w);
    ck_assert_ptr_null(find(&m, 5));
    ts_map_free(&m);
}
END_TEST

/* Whether a forked child has m's slot array mapped. */
static int mapped_in_child(const struct ts_map *m)
{
    return ts_test_mapped_in_child(m->slots);
}

START_TEST(test_fork_private)
{
    struct elem v[100];
    struct ts_map plain = TS_MAP_INIT(hash_good);
    struct ts_map priv = TS_MAP_INIT_FORK_PRIVATE(hash_good);
    for (uint64_t i = 0; i < 100; i++) {
        v[i].id = i;
        ck_assert_int_eq(ts_map_insert(&plain, &v[i]), TS_OK);
        ck_assert_int_eq(ts_map_insert(&priv, &v[i]), TS_OK);
    }
    ck_assert_ptr_eq(find(&priv, 42), &v[42]);
    ck_assert(mapped_in_child(&plain));
    ck_assert(!mapped_in_child(&priv));
    ts_map_free(&plain);
    ts_map_free(&priv);
    ck_assert_int_eq(priv.fork_private, 1); /* kept for reuse, like hash */
    ck_assert_int_eq(ts_map_insert(&priv, &v[0]), TS_OK);
    ck_assert(!mapped_in_child(&priv));
    ts_map_free(&priv);
}
END_TEST

/* Tagged slots (x86-64, see ts_map.c): a lookup reads only the elements
 * whose tag matches, even down one long probe run; removal's backward
 * shift keeps the tags with their elements, and growth re-tags. Elsewhere
 * every probe reads, and only the results are checked. */
START_TEST(test_tags_spare_reads)
{
    enum { N = 300 };
    struct elem v[N];
    struct ts_map m = TS_MAP_INIT(hash_tagged);
    for (uint64_t i = 0; i < N; i++) {
        v[i].id = i + 1;
        ck_assert_int_eq(ts_map_insert(&m, &v[i]), TS_OK);
    }
    for (uint64_t i = 0; i < N; i += 2)
        ts_map_remove(&m, &v[i]);
    for (uint64_t i = 0; i < N; i++) {
        eq_calls = 0;
        ck_assert_ptr_eq(find(&m, i + 1), i % 2 ? &v[i] : NULL);
#if defined(__x86_64__)
        ck_assert_uint_eq(eq_calls, i % 2); /* the one element sought, if there */
#else
        ck_assert_uint_ge(eq_calls, i % 2);
#endif
    }
    eq_calls = 0;
    ck_assert_ptr_null(find(&m, N + 1)); /* a tag nobody has, at the run's start */
#if defined(__x86_64__)
    ck_assert_uint_eq(eq_calls, 0);
#endif
    /* Same tag (id + 2^16), same home: found only by the element read. */
    struct elem twin = {v[1].id + (1ull << 16)};
    ck_assert_int_eq(ts_map_insert(&m, &twin), TS_OK);
    ck_assert_ptr_eq(find(&m, v[1].id), &v[1]);
    ck_assert_ptr_eq(find(&m, twin.id), &twin);
    /* A walk of the slots gives each element once, untagged. */
    size_t seen = 0;
    for (size_t i = 0; i < m.cap; i++) {
        struct elem *e = ts_map_slot(&m, i);
        if (!e)
            continue;
        seen++;
        ck_assert(e == &twin || (e >= v && e < v + N && (e - v) % 2 == 1));
    }
    ck_assert_uint_eq(seen, m.n);
    ts_map_free(&m);
}
END_TEST

START_TEST(test_string_hash)
{
    uint64_t a = ts_map_hash_str("site/a", 6);
    ck_assert_uint_eq(a, ts_map_hash_str("site/a", 6));
    ck_assert_uint_ne(a, ts_map_hash_str("site/b", 6));
    ck_assert_uint_ne(a, ts_map_hash_str("site/a", 5));
    ck_assert_uint_ne(ts_map_hash_u64(1), ts_map_hash_u64(2));
}
END_TEST

static Suite *map_suite(void)
{
    Suite *s = suite_create("ts_map");
    TCase *tc = tcase_create("map");
    tcase_add_loop_test(tc, test_insert_find_grow, 0, 2);
    tcase_add_loop_test(tc, test_remove_with_collisions, 0, 2);
    tcase_add_test(tc, test_fork_private);
    tcase_add_test(tc, test_replace_does_not_grow);
    tcase_add_test(tc, test_tags_spare_reads);
    tcase_add_test(tc, test_string_hash);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ts_check_run(map_suite());
}
