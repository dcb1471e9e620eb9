/*
 * ts_hub: fan-out of the event log to subscribers, without per-subscriber
 * queues.
 *
 * A subscriber is a cursor (the next evlog position it needs) plus a filter
 * and a sink (its connection). The hub writes to a sink only when the sink's
 * previous output has drained (queued() == 0); it then coalesces everything
 * the subscriber is behind on into Events frames (up to TS_HUB_BATCH_MAX
 * bytes of plaintext per turn), so a slow subscriber lags and gets bigger
 * batches, it does not grow memory. The hub is woken by ts_hub_notify()
 * after appends and by ts_hub_drained() from a sink; it does its work once
 * per loop iteration (a uv_check handle), never inside the caller's stack,
 * and serves a bounded number of subscribers per iteration (the rest first
 * in the next one), so a fan-out to thousands does not hold the loop.
 *
 * A subscriber whose cursor falls out of the retained window (or that asks
 * for since_seq older than the window) gets a snapshot of the matching
 * threads from the store: SnapshotBegin{S}, SnapshotChunk frames (streamed
 * under the same backpressure, resuming by thread and comment id), and
 * SnapshotEnd{S}, then the events after S. The snapshot is not a frozen
 * copy: comments added while it streams may appear in it and again as
 * events; receivers upsert by version, so the end state is exact.
 *
 * Readers get the public encoding of events and snapshot content, moderators
 * and admins the full one.
 *
 * Workload: thousands of subscribers, tens of thousands of events/s; the
 * per-turn cost is O(subscribers that are behind and writable).
 */
#ifndef TS_HUB_H
#define TS_HUB_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#define TS_HUB_BATCH_MAX (256u << 10)

struct ts_hub;
struct ts_hub_sub;
struct ts_evlog;
struct ts_store;

struct ts_hub_sink_ops {
    /* Queues len bytes of whole plaintext frames for the subscriber. A
     * non-zero return means the sink is gone; the hub stops writing to it. */
    int (*write)(void *sink, const void *data, size_t len);
    /* Bytes written to the sink and not yet flushed to the network. */
    size_t (*queued)(void *sink);
};

struct ts_hub_filter {
    int all;                  /* every thread; else only thread_keys */
    const char **thread_keys; /* copied by ts_hub_subscribe */
    size_t n_thread_keys;
};

/* evlog and store are borrowed and outlive the hub. */
int ts_hub_new(uv_loop_t *loop, struct ts_evlog *log, struct ts_store *store, struct ts_hub **out);

/* Serves at most n subscribers per loop turn (0, the default: every one
 * that is ready); the rest go first next turn, after the loop has polled.
 * For a node whose loop writes to the sockets itself (no I/O threads):
 * there a write is a TLS record and a write(2) to loopback, 5-10 us, so a
 * sweep of 1,000 subscribers held the loop 5-10 ms and a post arriving
 * meanwhile was not read, proposed or answered until the sweep ended.
 * With I/O threads the loop only hands the writes over; bounding the turn
 * there cost more than it saved (bench/README.md, "Where latency goes"). */
void ts_hub_set_turn_max(struct ts_hub *hub, unsigned n);

/* Stops the uv_check handle; cb (may be NULL) is called once it is closed,
 * after which the hub is freed. Every subscriber must be removed first. */
void ts_hub_close(struct ts_hub *hub, void (*cb)(void *arg), void *arg);

/* Adds a subscriber. full: moderator view. since_seq: events after it are
 * wanted (0 = everything). *from_seq and *snapshot describe what will
 * follow (for the SubscribeResult, which the caller sends before returning
 * to the loop: the hub writes nothing before the next loop iteration). */
int ts_hub_subscribe(struct ts_hub *hub, const struct ts_hub_filter *filter, int full,
                     uint64_t since_seq, const struct ts_hub_sink_ops *ops, void *sink,
                     struct ts_hub_sub **out, uint64_t *from_seq, int *snapshot);

/* Removes and frees a subscriber; nothing is written to its sink after. */
void ts_hub_unsubscribe(struct ts_hub_sub *sub);

/* New events were appended to the log: wake the hub. Cheap; call per append
 * or per batch of appends. */
void ts_hub_notify(struct ts_hub *hub);

/* The subscriber's sink drained: it may be written again. */
void ts_hub_drained(struct ts_hub_sub *sub);

/* The subscriber's cursor: seq of the last event (or snapshot) it was sent. */
uint64_t ts_hub_sub_seq(const struct ts_hub_sub *sub);

size_t ts_hub_subscriber_count(const struct ts_hub *hub);

/* Bytes held per subscriber struct (fixed part), for the benchmark. */
size_t ts_hub_sub_size(void);

#endif
