/*
 * ts_evlog: the retained, in-memory event log that subscribers read.
 *
 * Each event is encoded once, at append, in two forms: "full" (what a
 * moderator may see) and "public" (what a reader may see: no e-mail, and no
 * body of a comment that is not VISIBLE). Both are stored as ready
 * Events.events elements (ts_frame_event_element), so a batch for any number
 * of subscribers is a concatenation of stored bytes with a small head and
 * tail (ts_frame_events_wrap), never a re-encoding. When the two forms are
 * the same bytes (no e-mail, no moderator) they are kept once, and an entry's
 * pub and full point at the same bytes.
 *
 * Entries are addressed by position: a 64-bit counter that numbers every
 * appended event from 0 and never wraps or is reused, so a subscriber's
 * cursor (the next position it needs) stays meaningful while old entries are
 * evicted. The log retains the newest events within max_events and
 * max_bytes; ts_evlog_first_pos() moves forward as it evicts. A cursor below
 * it has fallen out of the window (the subscriber needs a snapshot).
 *
 * seq is the Raft index of the entry that carried the event: strictly
 * increasing along positions, with gaps.
 */
#ifndef TS_EVLOG_H
#define TS_EVLOG_H

#include <stddef.h>
#include <stdint.h>

#include "threadsync.pb-c.h"

struct ts_evlog;

struct ts_evlog_config {
    size_t max_events; /* 0 = default 1,000,000 */
    size_t max_bytes;  /* element bytes held (both encodings; one copy when they
                          are the same bytes); 0 = default 512 MiB */
};

struct ts_evlog_entry {
    uint64_t seq;
    uint64_t thread_id;
    const uint8_t *pub; /* public element bytes; valid until evicted */
    size_t pub_len;
    const uint8_t *full; /* full element bytes */
    size_t full_len;
};

int ts_evlog_new(const struct ts_evlog_config *cfg, struct ts_evlog **out);
void ts_evlog_free(struct ts_evlog *log);

/* Encodes and appends one event. full->seq and pub->seq must equal seq and
 * seq must exceed ts_evlog_last_seq(). pub NULL: the public view is the
 * full one (ts_view said it hid nothing), encoded once and kept once. Evicts the oldest entries to
 * stay within the limits (never the one just appended). TS_E_NOMEM on failure. */
int ts_evlog_append(struct ts_evlog *log, uint64_t seq, uint64_t thread_id,
                    const Threadsync__Event *full, const Threadsync__Event *pub);

/* Drops every retained entry and declares every seq <= seq unavailable
 * (horizon and last_seq become at least seq). Call it after the store was
 * replaced by ts_store_restore(), with ts_store_seq(), then
 * ts_hub_notify(): the log's old events no longer describe the store. One
 * position is skipped, so every existing cursor falls below first_pos and
 * its subscriber gets a snapshot. */
void ts_evlog_reset(struct ts_evlog *log, uint64_t seq);

/* Position of the oldest retained entry, and one past the newest: the
 * retained entries are [first_pos, end_pos). */
uint64_t ts_evlog_first_pos(const struct ts_evlog *log);
uint64_t ts_evlog_end_pos(const struct ts_evlog *log);

/* seq of the newest event ever appended (0 when none). */
uint64_t ts_evlog_last_seq(const struct ts_evlog *log);

/* The largest seq that was evicted (0 when nothing was): a subscriber
 * asking for events after since_seq can be served from the log iff
 * since_seq >= ts_evlog_horizon(). */
uint64_t ts_evlog_horizon(const struct ts_evlog *log);

/* Position of the first retained entry with seq > since_seq (end_pos when
 * none). Only meaningful when since_seq >= horizon. O(log n). */
uint64_t ts_evlog_pos_after(const struct ts_evlog *log, uint64_t since_seq);

/* Fills *e for a retained position. TS_E_NOT_FOUND when evicted or not yet
 * appended. */
int ts_evlog_get(const struct ts_evlog *log, uint64_t pos, struct ts_evlog_entry *e);

/* Rewrites history for moderation: in each retained event of thread_id
 * with seq >= from_seq whose public element carries comment comment_id, fn
 * edits the decoded public Event (shallow copies of it and of its thread
 * and comment: re-point fields, never free them) and the new encoding
 * replaces the old one
 * in place. fn may only remove content (empty strings, change an enum of
 * the same size), so the new element is never longer; one that would be is
 * left alone. The full element is not touched. Subscribers replaying
 * history then never receive what a moderator took away. Cost: a scan of
 * the thread's retained entries from from_seq, decoding those entries; meant
 * for rare moderation events. Returns the number of entries rewritten. */
size_t ts_evlog_rewrite_public(struct ts_evlog *log, uint64_t thread_id, uint64_t comment_id,
                               uint64_t from_seq, void (*fn)(void *arg, Threadsync__Event *ev),
                               void *arg);

/* Bytes held (encodings plus index), for metrics and the benchmark. */
size_t ts_evlog_memory(const struct ts_evlog *log);

#endif
