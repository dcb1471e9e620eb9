/*
 * ts_web_relay: the memory of the web edge's live feed, without any network:
 * a bounded ring of the most recent events, each encoded ONCE as its
 * server-sent-events frame and shared by reference count among every
 * browser it is being written to.
 *
 * The edge keeps one upstream subscription (the mirror's). Each of its
 * events that changed a comment becomes one ts_web_event, pushed here in
 * seq order. A browser watching a thread holds only a cursor (the seq of
 * the last event it was sent); ts_web_ring_next() finds what it has not
 * been sent yet. Memory per browser is therefore its cursor and the
 * references of the frames in flight to it, never a copy of the data.
 *
 * Invariants: seqs in the ring strictly increase. floor is the highest seq
 * whose events may be missing here (older than the ring, dropped to make
 * room, or before the edge started or a snapshot reset it): a cursor below
 * floor cannot be served exactly, and the browser must reload. A frame
 * leaving the ring stays alive while references to it do.
 *
 * Load: push is O(1); next is a binary search plus a scan over other
 * threads' events, and a scan that finds nothing moves the cursor to the
 * newest seq, so each event is scanned at most once per watcher.
 */
#ifndef TS_WEB_RELAY_H
#define TS_WEB_RELAY_H

#include <stddef.h>
#include <stdint.h>

struct ts_web_event {
    unsigned refs;
    uint64_t seq, thread_id;
    size_t len;
    char data[]; /* the SSE frame, len bytes */
};

/* A new frame with one reference (the caller's). NULL on out of memory. */
struct ts_web_event *ts_web_event_new(uint64_t seq, uint64_t thread_id, const char *data,
                                      size_t len);
void ts_web_event_ref(struct ts_web_event *e);
/* Drops a reference; the last one frees e. NULL is fine. */
void ts_web_event_unref(struct ts_web_event *e);

struct ts_web_ring;

/* A ring of up to cap events (cap >= 1) whose floor starts at floor. *out
 * (OUT) is freed by ts_web_ring_free(). TS_OK or TS_E_NOMEM. */
int ts_web_ring_new(size_t cap, uint64_t floor, struct ts_web_ring **out);
void ts_web_ring_free(struct ts_web_ring *r);

/* Appends e, taking over the caller's reference; when full, the oldest
 * event leaves and floor becomes its seq. e->seq must exceed every seq
 * pushed before and the floor: TS_E_INVALID_ARGUMENT otherwise (the
 * reference is still the caller's then). */
int ts_web_ring_push(struct ts_web_ring *r, struct ts_web_event *e);

/* Forgets every event (a snapshot replaced the history): floor = seq. */
void ts_web_ring_reset(struct ts_web_ring *r, uint64_t seq);

uint64_t ts_web_ring_floor(const struct ts_web_ring *r);
/* The newest seq known: the last pushed, or the floor. */
uint64_t ts_web_ring_last(const struct ts_web_ring *r);

/* The next event of thread_id after *cursor. TS_OK: *out is it (borrowed:
 * ref it to keep it past the next push); the caller moves *cursor to its
 * seq once sent. TS_E_AGAIN: nothing new, *cursor moved up to the newest
 * seq. TS_E_NOT_FOUND: *cursor is below the floor; what it missed is gone
 * (tell the browser to reload). */
int ts_web_ring_next(const struct ts_web_ring *r, uint64_t thread_id, uint64_t *cursor,
                     struct ts_web_event **out);

#endif
