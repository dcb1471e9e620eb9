/*
 * ts_web_relay: the ring keeps the newest events in seq order, serves a
 * cursor exactly what its thread missed, says "reload" once what it missed
 * is gone, and frees a frame only when the ring and every reader dropped it.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ts_check_main.h"
#include "ts_err.h"
#include "ts_web_relay.h"

static struct ts_web_event *ev(uint64_t seq, uint64_t thread)
{
    char d[32];
    int n = snprintf(d, sizeof(d), "id: %llu\n\n", (unsigned long long)seq);
    return ts_web_event_new(seq, thread, d, (size_t)n);
}

START_TEST(test_resume_exact)
{
    struct ts_web_ring *r;
    ck_assert_int_eq(ts_web_ring_new(8, 10, &r), TS_OK);
    /* Threads 1 and 2 interleaved: 11(1) 12(2) 13(1) 14(2) 15(1). */
    for (uint64_t s = 11; s <= 15; s++)
        ck_assert_int_eq(ts_web_ring_push(r, ev(s, s % 2 ? 1 : 2)), TS_OK);
    uint64_t cur = 11; /* a browser on thread 1 that saw 11 */
    struct ts_web_event *e;
    ck_assert_int_eq(ts_web_ring_next(r, 1, &cur, &e), TS_OK);
    ck_assert_uint_eq(e->seq, 13);
    cur = e->seq;
    ck_assert_int_eq(ts_web_ring_next(r, 1, &cur, &e), TS_OK);
    ck_assert_uint_eq(e->seq, 15);
    cur = e->seq;
    ck_assert_int_eq(ts_web_ring_next(r, 1, &cur, &e), TS_E_AGAIN);
    ck_assert_uint_eq(cur, 15);
    /* From the floor itself: everything of thread 2. */
    cur = 10;
    ck_assert_int_eq(ts_web_ring_next(r, 2, &cur, &e), TS_OK);
    ck_assert_uint_eq(e->seq, 12);
    /* Nothing for thread 3: the cursor moves to the newest seq. */
    cur = 10;
    ck_assert_int_eq(ts_web_ring_next(r, 3, &cur, &e), TS_E_AGAIN);
    ck_assert_uint_eq(cur, 15);
    /* Below the floor: what it missed is unknown. */
    cur = 9;
    ck_assert_int_eq(ts_web_ring_next(r, 1, &cur, &e), TS_E_NOT_FOUND);
    /* Out of order pushes are refused. */
    struct ts_web_event *old = ev(15, 1);
    ck_assert_int_eq(ts_web_ring_push(r, old), TS_E_INVALID_ARGUMENT);
    ts_web_event_unref(old);
    ts_web_ring_free(r);
}
END_TEST

START_TEST(test_too_far_behind)
{
    struct ts_web_ring *r;
    ck_assert_int_eq(ts_web_ring_new(4, 0, &r), TS_OK);
    for (uint64_t s = 1; s <= 10; s++)
        ck_assert_int_eq(ts_web_ring_push(r, ev(s, 1)), TS_OK);
    ck_assert_uint_eq(ts_web_ring_floor(r), 6); /* 7..10 kept */
    ck_assert_uint_eq(ts_web_ring_last(r), 10);
    struct ts_web_event *e;
    uint64_t cur = 5;
    ck_assert_int_eq(ts_web_ring_next(r, 1, &cur, &e), TS_E_NOT_FOUND);
    cur = 6;
    ck_assert_int_eq(ts_web_ring_next(r, 1, &cur, &e), TS_OK);
    ck_assert_uint_eq(e->seq, 7);
    /* A snapshot resets the history. */
    ts_web_ring_reset(r, 50);
    cur = 10;
    ck_assert_int_eq(ts_web_ring_next(r, 1, &cur, &e), TS_E_NOT_FOUND);
    cur = 50;
    ck_assert_int_eq(ts_web_ring_next(r, 1, &cur, &e), TS_E_AGAIN);
    struct ts_web_event *dup = ev(50, 1);
    ck_assert_int_eq(ts_web_ring_push(r, dup), TS_E_INVALID_ARGUMENT);
    ts_web_event_unref(dup);
    ts_web_ring_free(r);
}
END_TEST

/* A chain serves its thread's watchers without scanning other threads'
 * events, tells a quiet thread's watcher it missed nothing however far the
 * floor moved, and still says "reload" when the thread's own events are
 * gone (out of the ring, or reset). */
START_TEST(test_chain)
{
    struct ts_web_ring *r;
    ck_assert_int_eq(ts_web_ring_new(4, 100, &r), TS_OK);
    struct ts_web_chain a, b;
    ts_web_chain_init(&a, r); /* thread 1, watched from seq 100 */
    ts_web_chain_init(&b, r); /* thread 2 */
    ck_assert_int_eq(ts_web_chain_push(&a, r, ev(101, 1)), TS_OK);
    for (uint64_t s = 102; s <= 110; s++) /* thread 2 busy: 101 leaves the ring */
        ck_assert_int_eq(ts_web_chain_push(&b, r, ev(s, 2)), TS_OK);
    ck_assert_uint_eq(ts_web_ring_floor(r), 106);
    struct ts_web_event *e;
    /* Caught up on thread 1 (saw 101): nothing new, no reload, although
     * its cursor is below the floor; the cursor moves to the newest seq. */
    uint64_t cur = 101;
    ck_assert_int_eq(ts_web_chain_next(&a, r, 1, &cur, &e), TS_E_AGAIN);
    ck_assert_uint_eq(cur, 110);
    cur = 101;
    ck_assert_int_eq(ts_web_ring_next(r, 1, &cur, &e),
                     TS_E_NOT_FOUND); /* the scan could not tell */
    /* Missed 101, which left the ring: reload. */
    cur = 100;
    ck_assert_int_eq(ts_web_chain_next(&a, r, 1, &cur, &e), TS_E_NOT_FOUND);
    /* Thread 1 again after thread 2's burst: found by walking its own chain. */
    ck_assert_int_eq(ts_web_chain_push(&a, r, ev(111, 1)), TS_OK);
    ck_assert_int_eq(ts_web_chain_push(&a, r, ev(112, 1)), TS_OK);
    cur = 101;
    ck_assert_int_eq(ts_web_chain_next(&a, r, 1, &cur, &e), TS_OK);
    ck_assert_uint_eq(e->seq, 111);
    cur = e->seq;
    ck_assert_int_eq(ts_web_chain_next(&a, r, 1, &cur, &e), TS_OK);
    ck_assert_uint_eq(e->seq, 112);
    cur = e->seq;
    ck_assert_int_eq(ts_web_chain_next(&a, r, 1, &cur, &e), TS_E_AGAIN);
    /* Thread 2's watcher that saw 108: 109 and 110 are in the ring. */
    cur = 108;
    ck_assert_int_eq(ts_web_chain_next(&b, r, 2, &cur, &e), TS_OK);
    ck_assert_uint_eq(e->seq, 109);
    /* A cursor from before the chain began is served by the scan. */
    struct ts_web_chain c;
    ts_web_chain_init(&c, r);
    ck_assert_uint_eq(c.since, 112);
    cur = 109;
    ck_assert_int_eq(ts_web_chain_next(&c, r, 1, &cur, &e), TS_OK);
    ck_assert_uint_eq(e->seq, 111);
    /* A reset: a caught-up cursor below it must reload, one at it not. */
    ts_web_ring_reset(r, 120);
    ts_web_chain_reset(&a, 120);
    cur = 112;
    ck_assert_int_eq(ts_web_chain_next(&a, r, 1, &cur, &e), TS_E_NOT_FOUND);
    cur = 120;
    ck_assert_int_eq(ts_web_chain_next(&a, r, 1, &cur, &e), TS_E_AGAIN);
    ck_assert_int_eq(ts_web_chain_push(&a, r, ev(121, 1)), TS_OK);
    ck_assert_int_eq(ts_web_chain_next(&a, r, 1, &cur, &e), TS_OK);
    ck_assert_uint_eq(e->seq, 121);
    ts_web_ring_free(r);
}
END_TEST

START_TEST(test_shared_frames)
{
    /* A frame in flight to a browser outlives its place in the ring; it is
     * one copy however many browsers hold it. */
    struct ts_web_ring *r;
    ck_assert_int_eq(ts_web_ring_new(1, 0, &r), TS_OK);
    struct ts_web_event *a = ev(1, 1);
    ck_assert_int_eq(ts_web_ring_push(r, a), TS_OK);
    struct ts_web_event *e;
    uint64_t c1 = 0, c2 = 0;
    ck_assert_int_eq(ts_web_ring_next(r, 1, &c1, &e), TS_OK);
    ck_assert_ptr_eq(e, a);
    ts_web_event_ref(e); /* browser 1 */
    ck_assert_int_eq(ts_web_ring_next(r, 1, &c2, &e), TS_OK);
    ck_assert_ptr_eq(e, a);
    ts_web_event_ref(e); /* browser 2 */
    ck_assert_uint_eq(a->refs, 3);
    ck_assert_int_eq(ts_web_ring_push(r, ev(2, 1)), TS_OK); /* a leaves the ring */
    ck_assert_uint_eq(a->refs, 2);
    ck_assert_int_eq(memcmp(a->data, "id: 1\n\n", 7), 0);
    ts_web_event_unref(a);
    ts_web_event_unref(a); /* freed here: ASan would report a leak or a double free */
    ts_web_ring_free(r);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ts_web_relay");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_resume_exact);
    tcase_add_test(tc, test_too_far_behind);
    tcase_add_test(tc, test_shared_frames);
    tcase_add_test(tc, test_chain);
    suite_add_tcase(s, tc);
    return ts_check_run(s);
}
