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
    suite_add_tcase(s, tc);
    return ts_check_run(s);
}
