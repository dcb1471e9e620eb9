/*
 * ts_link: a client connection as the main loop sees it, whichever loop
 * carries its socket.
 *
 * The server's state machine (raft, the store, the hub, sessions) runs on
 * one loop, the main loop. A pool of I/O threads, each running its own uv
 * loop, may carry the connections themselves: socket, TLS and frame
 * decoding (a ts_conn). With no I/O threads every link is a ts_conn on the
 * main loop and every call goes straight to it: the node behaves exactly as
 * a single-loop one.
 *
 * The contract is ts_conn's (ts_conn.h), with struct ts_link for struct
 * ts_conn: callbacks run on the main loop, never synchronously from a
 * ts_link_* call; on_close is the last one, after which the link is freed;
 * ts_link_queued() counts what is queued and not yet on the socket (for a
 * threaded link: what is still on its way to the I/O thread plus that
 * thread's queue, as last published, which may overstate it); on_drain
 * means that count reached 0; the hard cap TS_CONN_QUEUE_HARD_MAX holds;
 * a paused link delivers no frame until resumed, whatever its thread had
 * decoded already (those wait on the main side, at most about one input
 * window of ts_link.c's INBOUND_MAX).
 * Every ts_link_* function is for the main loop's thread only.
 */
#ifndef TS_LINK_H
#define TS_LINK_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <uv.h>

#include "threadsync.pb-c.h"

struct ts_link;
struct ts_link_pool;

struct ts_link_cbs {
    void (*on_open)(struct ts_link *l);
    /* The callee owns frame (ts_frame_free). */
    void (*on_frame)(struct ts_link *l, Threadsync__Frame *frame, int status,
                     const char *bad_field);
    /* May be NULL: the link then closes with err. */
    void (*on_error)(struct ts_link *l, int err);
    void (*on_drain)(struct ts_link *l);
    void (*on_close)(struct ts_link *l, int err);
};

/* The most I/O threads a pool runs. */
#define TS_LINK_THREADS_MAX 64

/* Creates the pool of the main loop `loop` with n_threads I/O threads
 * (0: links live on loop itself). The threads are running on return. */
int ts_link_pool_new(uv_loop_t *loop, unsigned n_threads, struct ts_link_pool **out);

/* Stops accepting; once the last link has called on_close (close them
 * first), stops and joins the threads and frees the pool from the loop.
 * NULL is a no-op. After the call the pool may already be gone. */
void ts_link_pool_close(struct ts_link_pool *p);

/* The number of I/O threads (0 when links run on the main loop). */
unsigned ts_link_pool_threads(const struct ts_link_pool *p);

/* Accepts one pending connection on listener (a handle of the main loop)
 * as a TLS server connection, on the I/O thread carrying the fewest links.
 * ctx is borrowed, shared read-only by every thread, and must outlive the
 * pool. On success *out exists and on_close will come. */
int ts_link_accept(struct ts_link_pool *p, uv_stream_t *listener, SSL_CTX *ctx,
                   const struct ts_link_cbs *cbs, void *data, uint32_t max_frame,
                   struct ts_link **out);

void *ts_link_data(const struct ts_link *l);

/* Encodes f (once, here) and queues it as an answer; *bytes (may be NULL)
 * is its wire size on TS_OK, else 0. TS_E_CLOSED once closing;
 * TS_E_TOO_LARGE past the hard cap (the link is then closing).
 *
 * The answers of one loop turn go out together: packed into one buffer
 * per link (up to 64 KiB) that is handed on as TLS records of up to 16 KiB
 * and one write when the loop turn ends (before the loop next polls), when
 * it is full, or before a push or close of the link. They count in
 * ts_link_queued() from this call on. */
int ts_link_send_frame(struct ts_link *l, const Threadsync__Frame *f, size_t *bytes);

/* Queues len bytes of whole frames (copied) as a push (a subscription's
 * output). TS_E_CLOSED once closing; TS_E_TOO_LARGE past the
 * hard cap (the link is then closing).
 *
 * Order: answers keep their order, pushes theirs, and a push never
 * overtakes an answer queued before it; an answer may overtake pushes
 * queued before it (PROTOCOL.md lets answers and pushes interleave, the
 * stream only has to follow its Subscribe answer), because an I/O thread
 * writes answers first: a post's answer does not wait for the fan-out of
 * the events before it. ts_link_close() follows every push. */
int ts_link_send(struct ts_link *l, const void *data, size_t len);

size_t ts_link_queued(const struct ts_link *l);
void ts_link_set_max_frame(struct ts_link *l, uint32_t max_frame);
void ts_link_pause_reading(struct ts_link *l);
void ts_link_resume_reading(struct ts_link *l);
void ts_link_close(struct ts_link *l, int err);
const char *ts_link_peer(const struct ts_link *l);
void ts_link_set_role(struct ts_link *l, const char *role);
/* Inside on_frame: the wire size (header included) of the frame handed. */
size_t ts_link_frame_bytes(const struct ts_link *l);
/* Inside on_frame: 1 when the frame handed is a Post that its I/O thread
 * found valid (ts_valid_post() returned TS_OK there), so the caller need
 * not check it again; 0 otherwise (no I/O threads, another message, a
 * decode error, or a Post that failed): the caller checks it itself. */
int ts_link_frame_valid(const struct ts_link *l);
uint64_t ts_link_id(const struct ts_link *l);
int ts_link_resumed(const struct ts_link *l);

/* Bytes of struct ts_link (fixed part; its ts_conn and peer string are
 * separate), for the per-connection size test. */
size_t ts_link_size(void);

#endif
