/*
 * ts_httpd: the smallest HTTP/1.1 server that Prometheus and a load
 * balancer's health check need, on a libuv loop: one request per
 * connection, answered with "Connection: close".
 *
 * It reads a request head of at most TS_HTTPD_HEAD_MAX bytes (a longer one
 * gets 431), parses it strictly (ts_httpd_parse), hands the method and path
 * to a handler that fills a response synchronously, writes the response,
 * and closes. A request body is never read. A connection has
 * TS_HTTPD_HEAD_TIMEOUT_MS from accept to send its request head, then
 * TS_HTTPD_TIMEOUT_MS for its answer to be written. At most
 * TS_HTTPD_MAX_CONNS are open at once: a new one past that closes the
 * oldest still waiting for its head (so idle sockets held open cannot keep
 * a health check out), or, when every one is being answered, is closed
 * at accept. Only GET and HEAD reach the handler; other methods get 405.
 *
 * Meant for operators' tooling on a trusted network (loopback by default):
 * no TLS, no authentication, no keep-alive. Load: a scrape every few
 * seconds.
 */
#ifndef TS_HTTPD_H
#define TS_HTTPD_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#define TS_HTTPD_HEAD_MAX 8192
#define TS_HTTPD_HEAD_TIMEOUT_MS 2000
#define TS_HTTPD_TIMEOUT_MS 10000
#define TS_HTTPD_MAX_CONNS 64
#define TS_HTTPD_PATH_MAX 1024
#define TS_HTTPD_MAX_HEADERS 64

struct ts_httpd;

struct ts_http_request {
    char method[16];
    char path[TS_HTTPD_PATH_MAX]; /* the target up to '?' (query dropped) */
    int minor;                    /* HTTP/1.minor */
    int n_headers;
};

struct ts_http_response {
    int status;               /* 200 unless set */
    const char *content_type; /* static; default "text/plain; charset=utf-8" */
    char *body;               /* malloc'd by the handler; ts_httpd frees it */
    size_t len;
};

/* Fills res for req. Called on the loop; must not block. */
typedef void (*ts_httpd_handler)(void *arg, const struct ts_http_request *req,
                                 struct ts_http_response *res);

/* Parses a request head in buf[0..len): the request line
 * "METHOD SP /path[?query] SP HTTP/1.x", header lines "name: value" (token
 * names, no obsolete line folding), and the empty line. Lines end in CRLF or
 * LF. Returns TS_OK with *req and *head_len (bytes through the empty line);
 * TS_E_AGAIN when the head is incomplete and len < TS_HTTPD_HEAD_MAX;
 * TS_E_TOO_LARGE when no complete head fits in TS_HTTPD_HEAD_MAX bytes or
 * it has more than TS_HTTPD_MAX_HEADERS headers; TS_E_BAD_FRAME when
 * malformed (including a target that is not origin-form or longer than
 * TS_HTTPD_PATH_MAX - 1); TS_E_UNSUPPORTED_VERSION for a version other than
 * HTTP/1.x. */
int ts_httpd_parse(const char *buf, size_t len, struct ts_http_request *req, size_t *head_len);

/* The reason phrase of a status code ("OK", "Not Found"...). */
const char *ts_httpd_reason(int status);

/* Binds listen (numeric host:port; port 0 lets the kernel pick) and serves
 * with handler. TS_E_CONFIG (bad address), TS_E_IO (bind or listen failed,
 * logged), TS_E_NOMEM; *out is NULL then (a listener handle that was opened
 * still closes on the loop, freeing what it holds). */
int ts_httpd_start(uv_loop_t *loop, const char *listen, ts_httpd_handler handler, void *arg,
                   struct ts_httpd **out);

/* The bound address, "127.0.0.1:7422". */
const char *ts_httpd_address(const struct ts_httpd *h);

/* Closes the listener and every connection; cb (may be NULL) runs once all
 * handles are closed, after which h is freed. Never calls cb synchronously. */
void ts_httpd_close(struct ts_httpd *h, void (*cb)(void *arg), void *arg);

#endif
