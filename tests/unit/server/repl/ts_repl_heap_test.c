/*
 * ts_repl_heap: entry buffers carved from fork-private chunks, freed through
 * libraft's heap. What must hold: buffers are usable and disjoint, a
 * forked child does not have them, emptied chunks are reused (so a log
 * that is made and freed in order holds a bounded number of chunks), and
 * every pointer raft_free and raft_realloc see, pool or malloc, is handled.
 */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <raft.h>

#include "ts_check_main.h"
#include "ts_err.h"
#include "ts_repl_heap.h"
#include "ts_testfork.h"

static struct ts_repl_heap_stats stats(void)
{
    struct ts_repl_heap_stats s;
    ts_repl_heap_stats(&s);
    return s;
}

START_TEST(test_buffers_usable_and_disjoint)
{
    ck_assert_int_eq(ts_repl_heap_install(), TS_OK);
    ck_assert_int_eq(ts_repl_heap_install(), TS_OK); /* once per process */
    enum { N = 3000 };                               /* several chunks' worth */
    static uint8_t *b[N];
    size_t live0 = stats().live;
    for (unsigned i = 0; i < N; i++) {
        size_t len = 1 + i % 997;
        b[i] = ts_repl_heap_alloc(len);
        ck_assert_ptr_nonnull(b[i]);
        ck_assert(ts_repl_heap_owns(b[i]));
        ck_assert_uint_eq((uintptr_t)b[i] % 16, 0);
        memset(b[i], (int)(i & 0xff), len);
    }
    ck_assert_uint_eq(stats().live, live0 + N);
    ck_assert_uint_ge(stats().chunks, 2);
    for (unsigned i = 0; i < N; i++) {
        size_t len = 1 + i % 997;
        for (size_t k = 0; k < len; k++)
            ck_assert_uint_eq(b[i][k], i & 0xff);
        raft_free(b[i]);
    }
    ck_assert_uint_eq(stats().live, live0);
}
END_TEST

START_TEST(test_not_in_forked_child)
{
    ck_assert_int_eq(ts_repl_heap_install(), TS_OK);
    void *pooled = ts_repl_heap_alloc(4096);
    void *plain = raft_malloc(4096);
    ck_assert(ts_repl_heap_owns(pooled));
    ck_assert(!ts_repl_heap_owns(plain));
    ck_assert(!ts_test_mapped_in_child(pooled));
    ck_assert(ts_test_mapped_in_child(plain));
    raft_free(pooled);
    raft_free(plain);
}
END_TEST

/* Entries made and freed in order, a few hundred alive at a time as in a
 * log between snapshots: the chunks stay those the live bytes need. */
START_TEST(test_chunks_reused_in_order)
{
    ck_assert_int_eq(ts_repl_heap_install(), TS_OK);
    enum { LIVE = 400, ROUNDS = 200000 };
    static void *ring[LIVE];
    size_t chunks0 = stats().chunks;
    unsigned seed = 1;
    for (unsigned i = 0; i < ROUNDS; i++) {
        if (ring[i % LIVE])
            raft_free(ring[i % LIVE]);
        seed = seed * 1103515245u + 12345u;
        ring[i % LIVE] = ts_repl_heap_alloc(64 + (seed >> 16) % 8192);
        ck_assert(ts_repl_heap_owns(ring[i % LIVE]));
    }
    /* At most 400 x 8 KiB live = 3.2 MiB: 4 chunks, one current, one
     * emptying; far fewer than the 800 MiB allocated in all. */
    ck_assert_uint_le(stats().chunks - chunks0, 6);
    for (unsigned i = 0; i < LIVE; i++)
        raft_free(ring[i]);
    struct ts_repl_heap_stats s = stats();
    ck_assert_uint_eq(s.chunks_free + 1, s.chunks); /* all but the current one */
}
END_TEST

START_TEST(test_large_and_realloc)
{
    ck_assert_int_eq(ts_repl_heap_install(), TS_OK);
    unsigned long fb0 = stats().fallback;
    uint8_t *big = ts_repl_heap_alloc(TS_REPL_HEAP_CHUNK);
    ck_assert_ptr_nonnull(big);
    ck_assert(!ts_repl_heap_owns(big));
    ck_assert_uint_eq(stats().fallback, fb0 + 1);
    memset(big, 7, TS_REPL_HEAP_CHUNK);
    raft_free(big);

    /* A pool buffer resized by libraft keeps its bytes and leaves the pool. */
    size_t live0 = stats().live;
    uint8_t *p = ts_repl_heap_alloc(100);
    for (unsigned i = 0; i < 100; i++)
        p[i] = (uint8_t)i;
    uint8_t *q = raft_realloc(p, 5000);
    ck_assert_ptr_nonnull(q);
    ck_assert(!ts_repl_heap_owns(q));
    for (unsigned i = 0; i < 100; i++)
        ck_assert_uint_eq(q[i], i);
    ck_assert_uint_eq(stats().live, live0);
    raft_free(q);

    /* libraft's other allocations are the C library's. */
    void *a = raft_aligned_alloc(4096, 8192);
    ck_assert_ptr_nonnull(a);
    ck_assert_uint_eq((uintptr_t)a % 4096, 0);
    ck_assert(!ts_repl_heap_owns(a));
    raft_aligned_free(4096, a);
    void *c = raft_calloc(10, 10);
    ck_assert_uint_eq(((uint8_t *)c)[99], 0);
    raft_free(c);
}
END_TEST

static Suite *heap_suite(void)
{
    Suite *s = suite_create("ts_repl_heap");
    TCase *tc = tcase_create("heap");
    tcase_add_test(tc, test_buffers_usable_and_disjoint);
    tcase_add_test(tc, test_not_in_forked_child);
    tcase_add_test(tc, test_chunks_reused_in_order);
    tcase_add_test(tc, test_large_and_realloc);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ts_check_run(heap_suite());
}
