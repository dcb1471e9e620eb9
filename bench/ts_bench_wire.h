/*
 * ts_bench_wire: reading the server's push frames without unpacking them.
 *
 * The generator checks every delivered event (seq order, count, a checksum,
 * the post time in the body) at rates where protobuf-c's unpack (one
 * allocation per message) would make the generator the bottleneck. These
 * functions walk the protobuf wire format of a Frame body in place and
 * report only what the checks need; anything else (Welcome, Result, Error)
 * is rare and goes through ts_frame_unpack().
 *
 * Field numbers are threadsync.proto's; unknown fields are skipped as
 * proto3 requires. A malformed body returns TS_E_BAD_FRAME.
 */
#ifndef TS_BENCH_WIRE_H
#define TS_BENCH_WIRE_H

#include <stddef.h>
#include <stdint.h>

/* Which Frame field is set (Frame.msg field number: 21 Events, 23 chunk...)
 * and where its message bytes are. */
int tsb_wire_frame(const uint8_t *body, size_t len, unsigned *field, const uint8_t **msg,
                   size_t *msg_len);

struct tsb_wire_event {
    uint64_t seq;
    uint64_t comment_id; /* 0 when the event carries no comment */
    const uint8_t *body; /* the comment's body, NULL when none */
    size_t body_len;
};

/* Walks an Events message: calls cb for each event in order, then fills
 * *last_seq and *caught_up. cb returning non-zero stops the walk. */
int tsb_wire_events(const uint8_t *msg, size_t len,
                    int (*cb)(void *arg, const struct tsb_wire_event *ev), void *arg,
                    uint64_t *last_seq, int *caught_up);

/* Counts a SnapshotChunk's threads and comments; calls cb (may be NULL)
 * with each comment's id. */
int tsb_wire_chunk(const uint8_t *msg, size_t len, uint64_t *threads, uint64_t *comments,
                   void (*cb)(void *arg, uint64_t comment_id), void *arg);

/* The varint field `field` of a small message (SnapshotBegin/End seq...);
 * 0 when absent. */
uint64_t tsb_wire_u64(const uint8_t *msg, size_t len, unsigned field);

#endif
