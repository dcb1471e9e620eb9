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
 *
 * A chain (ts_web_chain) is what the edge keeps per watched thread so that
 * an event costs O(its thread's watchers), not O(every watcher): each event
 * pushed while the chain exists records the seq of its thread's previous
 * one (prev), so a watcher's next event is found by walking back from the
 * thread's newest, without scanning other threads' events, and a watcher
 * of a quiet thread needs no cursor moves while other threads are busy:
 * a cursor at or above the chain's start that is at or above the thread's
 * newest seq has missed nothing, however far the floor moved.
 */
#ifndef TS_WEB_RELAY_H
#define TS_WEB_RELAY_H

#include <stddef.h>
#include <stdint.h>

struct ts_web_event {
    unsigned refs;
    uint64_t seq, thread_id;
    uint64_t prev;    /* the thread's previous seq, set by ts_web_chain_push */
    const char *data; /* the SSE frame, len bytes */
    size_t len;
    const char *chunk; /* the same framed as one HTTP/1.1 chunk, chunk_len bytes */
    size_t chunk_len;
    char buf[];
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

/* The event with this seq, or NULL when it is not in the ring (borrowed). */
struct ts_web_event *ts_web_ring_find(const struct ts_web_ring *r, uint64_t seq);

/* One thread's events in a ring since `since` (the ring's newest seq when
 * the chain began): last is the thread's newest seq (since, when none), or
 * the seq of a reset, which no event in the ring carries. */
struct ts_web_chain {
    uint64_t since, last;
};

/* A chain of a thread nobody watched until now: since = last = r's newest. */
void ts_web_chain_init(struct ts_web_chain *c, const struct ts_web_ring *r);

/* Pushes e (of this chain's thread) into r, as ts_web_ring_push, after
 * linking it to the thread's previous event. */
int ts_web_chain_push(struct ts_web_chain *c, struct ts_web_ring *r, struct ts_web_event *e);

/* The ring was reset at seq (ts_web_ring_reset): a cursor below it missed
 * events of this thread that are gone. */
void ts_web_chain_reset(struct ts_web_chain *c, uint64_t seq);

/* As ts_web_ring_next for c's thread: TS_OK (*out the next event after
 * *cursor, borrowed), TS_E_AGAIN (nothing new; *cursor moved up to the
 * ring's newest seq), TS_E_NOT_FOUND (what *cursor missed is gone). A cursor
 * below since is served by ts_web_ring_next; above it, by walking back from
 * the thread's newest event: O(events of the thread after *cursor) binary
 * searches, never a scan of other threads' events. */
int ts_web_chain_next(const struct ts_web_chain *c, const struct ts_web_ring *r, uint64_t thread_id,
                      uint64_t *cursor, struct ts_web_event **out);

#endif
