/*
 * ts_bench_conn: a lean client TLS connection for the load generator.
 *
 * ts_conn unpacks every frame into protobuf-c structs; a generator that
 * checks a million events a second cannot afford that, so this connection
 * hands out raw frame bodies (the bytes after the 4-byte length) and the
 * caller walks only the fields it needs (ts_bench_wire). TLS is ts_tls's
 * memory-BIO engine, so the policy (ALPN, verification, session tickets
 * kept per "host:port" in the client context) is exactly the product's.
 *
 * Framing is threadsync's (a 4-byte big-endian length) unless the caller
 * gives a split callback: ts_mqttgen speaks MQTT over the same connection.
 *
 * Output is not capped or paced: the generator only sends small requests.
 * Several uv_writes may be in flight; each owns its buffer.
 *
 * Lifetime: tsb_conn_close() is idempotent; on_close is the last callback
 * and the struct is freed right after it returns (from uv_close's callback,
 * never from inside a tsb_conn_* call). One loop per connection, any number
 * of loops per process (one per thread).
 */
#ifndef TS_BENCH_CONN_H
#define TS_BENCH_CONN_H

#include <stddef.h>
#include <stdint.h>

#include <netinet/in.h>
#include <openssl/ssl.h>
#include <uv.h>

#include "threadsync.pb-c.h"

struct tsb_conn;

struct tsb_conn_cbs {
    /* TLS is up (ALPN agreed, server verified). */
    void (*on_open)(struct tsb_conn *c);
    /* One frame body (without its length header); valid during the call. */
    void (*on_frame)(struct tsb_conn *c, const uint8_t *body, size_t len);
    /* Every frame of one socket read was delivered; may be NULL. A sender
     * that refills a window does it here, so a burst of answers becomes one
     * write. */
    void (*on_batch_end)(struct tsb_conn *c);
    /* The last callback. err is TS_OK after tsb_conn_close(), else why. */
    void (*on_close)(struct tsb_conn *c, int err);
    /* Where the first frame in p[0..avail) ends: TS_OK with *hdr (bytes of
     * header, not handed to on_frame) and *body, TS_E_AGAIN while incomplete,
     * another code to drop the connection. NULL: threadsync frames. */
    int (*split)(const uint8_t *p, size_t avail, size_t *hdr, size_t *body);
};

/* Connects to addr as a TLS client of ctx (borrowed), verifying the server
 * for host (an IP literal here). session_key names the slot of ctx's
 * session table to resume from and update; NULL: always a full handshake. */
int tsb_conn_connect(uv_loop_t *loop, const struct sockaddr_in *addr, SSL_CTX *ctx,
                     const char *host, const char *session_key, const struct tsb_conn_cbs *cbs,
                     void *data, struct tsb_conn **out);

void *tsb_conn_data(const struct tsb_conn *c);

/* Encrypts len bytes of already-framed plaintext and writes them.
 * TS_E_CLOSED once closing. */
int tsb_conn_send(struct tsb_conn *c, const void *data, size_t len);

/* Frames f and sends it. */
int tsb_conn_send_frame(struct tsb_conn *c, const Threadsync__Frame *f);

/* Sends close_notify (which keeps the TLS session resumable) and closes the
 * socket at once, without waiting for the peer: a "drop". */
void tsb_conn_close(struct tsb_conn *c);

int tsb_conn_resumed(const struct tsb_conn *c);

#endif
