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
 * Invariants: every accepted connection is in the tracking list from accept
 * to its uv close callback; per-address counts are exact. h2o's own loop
 * handles (timers, an async) are recorded at init and unref'd once close
 * is done, so the loop can end; ts_web_http_free() then disposes them and
 * must run after uv_run() returned (h2o runs the loop once in dispose).
 *
 * Load: a few hundred bytes per connection here (plus h2o's buffers); one
 * hash lookup per accept.
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

/* A streaming response (server-sent events) on HTTP/1.1: h2o 2.2 reads
 * nothing from a connection while its response is in progress, so a
 * browser that left would be noticed only when a write to it fails (the
 * second after it left: minutes on a quiet thread), its descriptor and
 * memory held until then. _stream reads the connection again and calls
 * gone(arg) once when the client closes it (or sends more than a few KiB,
 * which no browser does on an event stream); the response should then end
 * (h2o_send with H2O_SEND_STATE_FINAL). It also releases the read buffer
 * holding the request's head, which an open stream does not need: so call
 * it after the response's first h2o_send, and read nothing of req's
 * request (headers, path) afterwards. The connection closes when the
 * response ends (no keep-alive after a stream). Returns the stream's handle
 * for _unstream, or NULL (HTTP/2, whose connection h2o keeps reading: its
 * closing is seen there). _unstream: no more gone calls; call it before
 * ending the response and in the generator's stop. NULL is fine. */
typedef void (*ts_web_http_gone_cb)(void *arg);
void *ts_web_http_stream(h2o_req_t *req, ts_web_http_gone_cb gone, void *arg);
void ts_web_http_unstream(void *stream);

/* Sends a complete response: body copied into req's pool. ctype may be
 * NULL (no Content-Type). */
void ts_web_http_send(h2o_req_t *req, int status, const char *ctype, const char *body, size_t len);

/* Adds a response header (name and value copied). */
void ts_web_http_header(h2o_req_t *req, const char *name, const char *value);

/* The value of request header name (lower case), or NULL; *len set. */
const char *ts_web_http_req_header(h2o_req_t *req, const char *name, size_t *len);

#endif
