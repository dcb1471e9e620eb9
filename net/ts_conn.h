/*
 * ts_conn: one framed TLS connection on a libuv loop, for either side.
 *
 * A connection owns a uv_tcp_t, a memory-BIO TLS engine (ts_tls) and a frame
 * decoder (ts_frame). Bytes read from the socket go through TLS into the
 * decoder; each complete frame is handed to on_frame. Output is plaintext
 * frames, encrypted at once into a per-connection queue that has at most one
 * uv_write in flight. Nothing is allocated for output while the queue is
 * empty, and OpenSSL's buffers are released while idle, so an idle
 * connection costs its structs and the SSL object only.
 *
 * Callbacks are never called synchronously from a ts_conn_* call: a close
 * requested inside a callback is carried out later, and on_close is the last
 * callback, after which the struct is freed (on uv_close's callback). So a
 * callee may call ts_conn_close() on the connection it is handed and keep
 * using the pointer until it returns.
 *
 * Backpressure: the sender watches ts_conn_queued() and waits for on_drain
 * before sending more; ts_conn_send() itself never refuses for size below
 * the hard cap (TS_CONN_QUEUE_HARD_MAX), past which it closes the connection
 * with TS_E_TOO_LARGE (a peer that never reads cannot make us grow).
 */
#ifndef TS_CONN_H
#define TS_CONN_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <uv.h>

#include "threadsync.pb-c.h"

#define TS_CONN_QUEUE_HARD_MAX (64u << 20)

struct ts_conn;

struct ts_conn_cbs {
    /* TLS handshake done and ALPN agreed on "threadsync/1". May be NULL. */
    void (*on_open)(struct ts_conn *c);
    /* One frame arrived. status is TS_OK, or TS_E_INVALID_ARGUMENT with
     * bad_field naming a string field that is not valid UTF-8 (the frame is
     * still given, so the request can be answered). The callee owns frame and
     * frees it with ts_frame_free(). Unrecoverable input (bad length, frame
     * that does not decode) never reaches on_frame: the connection sends
     * nothing itself and calls on_error, see below. */
    void (*on_frame)(struct ts_conn *c, Threadsync__Frame *frame, int status,
                     const char *bad_field);
    /* The input stream is unusable: err is TS_E_TOO_LARGE (length above the
     * limit), TS_E_BAD_FRAME (zero length, undecodable, or a truncated frame
     * at end of stream). Reading has stopped; the callee typically sends an
     * Error frame and calls ts_conn_close(). May be NULL: then the
     * connection closes with err. */
    void (*on_error)(struct ts_conn *c, int err);
    /* All queued output reached the socket, after a ts_conn_send*() (TLS's
     * own handshake traffic is not reported). May be NULL. */
    void (*on_drain)(struct ts_conn *c);
    /* The last callback. err is TS_OK for an orderly close (either side),
     * else why (TS_E_TLS, TS_E_IO, TS_E_CLOSED, TS_E_TIMEOUT...). */
    void (*on_close)(struct ts_conn *c, int err);
};

/* Accepts one pending connection on a listening uv_tcp_t as a TLS server.
 * ctx is borrowed and must outlive the connection. max_frame is the initial
 * input limit (use TS_FRAME_MAX_PREAUTH until the peer authenticates).
 * On success *out is the new connection and the handshake has started. */
int ts_conn_accept(uv_loop_t *loop, uv_stream_t *listener, SSL_CTX *ctx,
                   const struct ts_conn_cbs *cbs, void *data, uint32_t max_frame,
                   struct ts_conn **out);

/* The same for a socket already accepted (e.g. on another loop's listener
 * and handed to this loop's thread). fd is the connection's from the
 * call on, also on failure (then closed). id is the
 * connection's id for logs: one from ts_conn_reserve_id() (when the caller
 * logged about the connection before it existed), or 0 for a new one.
 * peer is the "ip:port" ts_conn_peer() returns, borrowed (it must stay
 * unchanged until on_close has returned; the caller usually holds it
 * anyway), or NULL to look it up from the socket. */
int ts_conn_adopt(uv_loop_t *loop, uv_os_sock_t fd, uint64_t id, const char *peer, SSL_CTX *ctx,
                  const struct ts_conn_cbs *cbs, void *data, uint32_t max_frame,
                  struct ts_conn **out);

/* Takes the next process-unique connection id (any thread). */
uint64_t ts_conn_reserve_id(void);

/* Connects to host:port (numeric address or name, resolved asynchronously)
 * as a TLS client verifying the server against ctx's CA and host name (or IP
 * address) sni. On success *out exists and on_open or on_close follows. */
int ts_conn_connect(uv_loop_t *loop, const char *host, uint16_t port, SSL_CTX *ctx,
                    const struct ts_conn_cbs *cbs, void *data, uint32_t max_frame,
                    struct ts_conn **out);

void *ts_conn_data(const struct ts_conn *c);
void ts_conn_set_data(struct ts_conn *c, void *data);

/* Encodes f and queues it. TS_E_CLOSED once closing. */
int ts_conn_send_frame(struct ts_conn *c, const Threadsync__Frame *f);

/* Queues len bytes of already-framed plaintext (one or more whole frames;
 * data is copied). TS_E_CLOSED once closing. */
int ts_conn_send(struct ts_conn *c, const void *data, size_t len);

/* Whether ts_conn_send*() would refuse as closing (TS_E_CLOSED). */
int ts_conn_closing(const struct ts_conn *c);

/* Inside on_frame: the wire size (header included) of the frame handed,
 * as the decoder read it (no walk of the message). */
size_t ts_conn_frame_bytes(const struct ts_conn *c);

/* Ciphertext bytes queued or in flight. */
size_t ts_conn_queued(const struct ts_conn *c);

/* Changes the input frame limit (e.g. after authentication). */
void ts_conn_set_max_frame(struct ts_conn *c, uint32_t max_frame);

/* Stops reading from the socket and delivering frames (at most one read of
 * input stays buffered), e.g. while this peer's output queue is large.
 * Pausing before on_open stalls the handshake. Resuming delivers what is
 * buffered from the loop, never from inside ts_conn_resume_reading().
 * Both are no-ops once closing. */
void ts_conn_pause_reading(struct ts_conn *c);
void ts_conn_resume_reading(struct ts_conn *c);

/* Flushes what is queued, sends close_notify, waits a bounded time for the
 * socket to drain, closes. err is passed to on_close. Idempotent. */
void ts_conn_close(struct ts_conn *c, int err);

/* Closes at once: no close_notify, no wait for queued output (a peer that
 * stopped answering would only hold the close for the full wait). err is
 * passed to on_close, which still comes from the loop. Idempotent, and
 * also ends a graceful close already under way. */
void ts_conn_abort(struct ts_conn *c, int err);

/* "ip:port" of the peer; "?" when unknown. */
const char *ts_conn_peer(const struct ts_conn *c);

/* The peer's role as logged on every line about the connection ("role=");
 * role must be a static string (e.g. ts_auth_role_name()); "none" until
 * set. */
void ts_conn_set_role(struct ts_conn *c, const char *role);

/* A process-unique id for logs. */
uint64_t ts_conn_id(const struct ts_conn *c);

/* Whether the TLS session was resumed (a reconnecting client). */
int ts_conn_resumed(const struct ts_conn *c);

/* Bytes of struct ts_conn (fixed part; the SSL object, the decoder and a
 * peer string are separate), for the per-connection size test. */
size_t ts_conn_size(void);

#endif
