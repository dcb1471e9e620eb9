/*
 * ts_web_http: the web edge's HTTP server, over libh2o on the caller's uv
 * loop (the one libthreadsync's client runs on).
 *
 * HTTP library: libh2o 2.2.5 (Debian libh2o-dev, the libuv flavour). It was
 * evaluated first, as asked, and does everything the edge needs, so
 * libhttp-parser (a parser only: keep-alive, chunked output, limits and
 * timeouts would all have been ours to write) was not needed:
 *   - HTTP/1.1 (and HTTP/2 over TLS) on a uv loop we own: accepted uv_tcp_t
 *     handles are given to h2o_uv_socket_create()/h2o_accept();
 *   - streaming responses: a generator's proceed callback is h2o's
 *     backpressure (one h2o_send in flight per response), which is exactly
 *     what a server-sent-events relay needs; H2O_COMPRESS_HINT_DISABLE keeps
 *     gzip off an event stream;
 *   - limits: max_request_entity_size (413 before the body is buffered when
 *     Content-Length says so, and while a chunked body grows), a request head
 *     bounded by H2O_MAX_REQLEN and H2O_MAX_HEADERS (100; more is a 400), and
 *     http1.req_timeout, a deadline for reading a request's head and body
 *     that closes slow clients;
 *   - the compress filter (gzip) for text responses.
 * TLS, when configured, is h2o's own (an OpenSSL SSL_CTX on the accept
 * context, ALPN h2 and http/1.1), capped at TLS 1.2: h2o 2.2.5 predates
 * TLS 1.3, and under it a connection closed by its client right after the
 * handshake was never closed by h2o. The handshake counts against the same
 * request deadline.
 * What h2o 2.2 lacks we add here, at accept time: a cap on open connections
 * per peer address and in total (a connection over either is closed at
 * once). h2o 2.2's library has no way to close idle keep-alive connections
 * on shutdown, so close() shuts every tracked socket down (shutdown(2)): h2o
 * then sees EOF or a write error on its own paths and frees the connection.
 *
 * Invariants: every accepted connection is in the tracking list (and the
 * table by h2o socket) from accept to its uv close callback; per-address
 * counts are exact. A stream's connection (ts_web_stream) is h2o's until its
 * head is written, then the stream's alone, which closes it. h2o's own loop
 * handles (timers, an async) are recorded at init and unref'd once close
 * is done, so the loop can end; ts_web_http_free() then disposes them and
 * must run after uv_run() returned (h2o runs the loop once in dispose).
 *
 * Load: a few hundred bytes per connection here (plus h2o's buffers, which
 * a stream gives back); one hash lookup per accept and per stream.
 */
#ifndef TS_WEB_HTTP_H
#define TS_WEB_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <h2o.h>
#include <uv.h>

struct ts_web_http;

struct ts_web_http_limits {
    size_t max_body; /* request body bytes; 0: 64 KiB */
    unsigned
        req_timeout_ms; /* deadline for a request's head and body, and idle keep-alive; 0: 10000 */
    unsigned max_conns; /* open connections; 0: 10000 */
    unsigned max_conns_per_addr; /* open connections from one address; 0: 64 */
    int gzip;                    /* compress text responses */
    /* Delivery threads that write plain-HTTP streams (ts_web_fan.h): 0, the
     * loop writes them; < 0, ts_web_fan_default_threads(). */
    int fanout_threads;
    /* 1: they write with sendmsg even where io_uring works. */
    int fanout_sendmsg;
    /* TLS on this listener (HTTPS, TLS 1.2, h2 or http/1.1) when both are set: PEM
     * certificate chain and private key files, read once at start. NULL:
     * plain HTTP (the normal deployment, behind the site's proxy). */
    const char *cert_file, *key_file;
};

/* Called for every request on the loop thread. Return 0 when it answered
 * (or will answer: keep req until then, see ts_web_http_hold), -1 for 404. */
typedef int (*ts_web_http_handler)(void *arg, h2o_req_t *req);

/* Listens on listen ("host:port", numeric host). *out (OUT) is freed by
 * ts_web_http_free() after ts_web_http_close(). TS_OK, TS_E_CONFIG (a bad
 * address; a certificate or key that does not load, or only one of the two:
 * a line on stderr says which), TS_E_IO (bind/listen failed: a line on
 * stderr says why). */
int ts_web_http_new(uv_loop_t *loop, const char *listen, const struct ts_web_http_limits *lim,
                    ts_web_http_handler handler, void *arg, struct ts_web_http **out);

/* The bound port (useful with port 0). */
uint16_t ts_web_http_port(const struct ts_web_http *s);

/* Delivery threads writing streams; 0 when the loop writes them. */
unsigned ts_web_http_fanout_threads(const struct ts_web_http *s);

/* Of those, the ones batching their writes through io_uring. */
unsigned ts_web_http_fanout_batched(const struct ts_web_http *s);

/* Open connections, in total. */
unsigned ts_web_http_conns(const struct ts_web_http *s);

/* Stops accepting and shuts every connection down; when the last one is
 * freed, h2o's handles stop holding the loop. Idempotent. */
void ts_web_http_close(struct ts_web_http *s);

/* Frees s after the loop has run out (h2o's dispose runs the loop once).
 * NULL is fine. */
void ts_web_http_free(struct ts_web_http *s);

/* A request answered later (after a ts_client callback): its client may
 * go away meanwhile, and h2o then frees req. hold->req turns NULL when that
 * happens. _hold: malloc'd, NULL on out of memory; _release frees it (and
 * unhooks it from req's pool); call it once, after the last use of req. */
struct ts_web_http_hold {
    h2o_req_t *req;
    void *link; /* private: the object in req's pool that points back here */
};
struct ts_web_http_hold *ts_web_http_hold(h2o_req_t *req);
void ts_web_http_release(struct ts_web_http_hold *h);

/* An HTTP/1.1 response streamed outside h2o (server-sent events). While a
 * response streams, h2o 2.2 keeps its whole request (a 4 KiB memory pool,
 * the read buffer holding the request's head) and reads nothing from the
 * connection, so a browser that left is noticed only when a write to it
 * fails (the second after it left: minutes on a quiet thread), its
 * descriptor and memory held until then. A stream instead sends the
 * response's head (status and headers as set on req->res, plus
 * Transfer-Encoding: chunked and Connection: upgrade) and first through
 * h2o's HTTP/1 upgrade, which then frees the request and hands the socket
 * over: an open stream costs this file's connection record and h2o's
 * socket (about 1 KiB with the caller's state), and its connection is read
 * again, so that a client's close is seen at once.
 *
 * _start: TS_OK and *out, or TS_E_INVALID_ARGUMENT when req is not HTTP/1.1
 * (HTTP/2 or 1.0: stream with h2o_send then). Nothing of req may be used
 * after it (h2o frees it once the head is out). The caller frames every
 * chunk itself (first included) and sends the last one ("0\r\n\r\n")
 * before closing. Callbacks (on the loop): written(arg) when the head, or
 * a _write that returned 0, went out; gone(arg) once, when the client
 * closed, sent more than a few KiB (no browser does on an event stream) or
 * a write failed: then _close the stream. _write (at most 32 bufs): one at
 * a time, after the head's written; returns 1 when all of bufs went out at
 * once (no callback follows: write again at will), 0 when written or gone
 * follows, and bufs' bytes must stay valid until then (or _close); the
 * array itself is copied. With delivery threads (fanout_threads) a plain
 * stream's write is made by its thread, each stream always by the same
 * one, and _write always returns 0. _close: no written or gone after it;
 * the connection closes (now, once the head is out, or once a delivery
 * thread's write is done). It returns 1 when bufs of the last _write are
 * no longer used, 0 when a delivery thread may still read them: then
 * released(arg) follows, once, and the bytes must stay valid until it
 * (whatever the caller frees at close, it frees there). NULL is fine (1). */
struct ts_web_stream;
struct ts_web_stream_cbs {
    void (*written)(void *arg);
    void (*gone)(void *arg);
    void (*released)(void *arg);
};
int ts_web_stream_start(h2o_req_t *req, h2o_iovec_t *first, size_t n,
                        const struct ts_web_stream_cbs *cbs, void *arg, struct ts_web_stream **out);
int ts_web_stream_write(struct ts_web_stream *st, const h2o_iovec_t *bufs, size_t n);
int ts_web_stream_close(struct ts_web_stream *st);

/* Sends a complete response: body copied into req's pool. ctype may be
 * NULL (no Content-Type). */
void ts_web_http_send(h2o_req_t *req, int status, const char *ctype, const char *body, size_t len);

/* Adds a response header (name and value copied). */
void ts_web_http_header(h2o_req_t *req, const char *name, const char *value);

/* The value of request header name (lower case), or NULL; *len set. */
const char *ts_web_http_req_header(h2o_req_t *req, const char *name, size_t *len);

#endif
