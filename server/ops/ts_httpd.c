/*
 * ts_httpd: see ts_httpd.h.
 *
 * A connection's life: accept -> read into a fixed TS_HTTPD_HEAD_MAX buffer
 * until the head parses (or fails) -> stop reading -> one uv_write of head
 * and body -> uv_shutdown -> close. Its timer closes it at the deadline
 * (the head's, then the answer's) wherever it is; closing cancels a pending write or shutdown,
 * whose callbacks then only see the closing flag. The struct is freed when both of its handles
 * (tcp, timer) have closed.
 *
 * The server's close closes the listener and every connection and calls
 * back once the last handle is gone (a counter of open handles).
 */
#include "ts_httpd.h"

#include "ts_addr.h"
#include "ts_err.h"
#include "ts_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct hconn {
    struct ts_httpd *h;
    struct hconn *prev, *next;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wr;
    uv_shutdown_t sd;
    int open_handles;
    int closing;
    int answering; /* the head is in: no longer idle */
    char peer[64];
    char *out;
    size_t len;
    char buf[TS_HTTPD_HEAD_MAX];
};

struct ts_httpd {
    uv_loop_t *loop;
    uv_tcp_t listener;
    ts_httpd_handler handler;
    void *arg;
    char bound[64];
    struct hconn *conns;
    size_t n_conns;
    int open_handles; /* the listener's plus every connection's */
    int closing;
    void (*close_cb)(void *arg);
    void *close_arg;
};

/* ---- parsing ---- */

static int is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* [p, *line_end) is the next line without its CR LF / LF; NULL when no
 * line end is in [p, end). A CR elsewhere than before the LF is malformed:
 * *bad is set. */
static const char *next_line(const char *p, const char *end, const char **line_end, int *bad)
{
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl)
        return NULL;
    const char *e = nl > p && nl[-1] == '\r' ? nl - 1 : nl;
    if (memchr(p, '\r', (size_t)(e - p)))
        *bad = 1;
    *line_end = e;
    return nl + 1;
}

static int parse_request_line(const char *p, const char *e, struct ts_http_request *req)
{
    const char *sp = p;
    while (sp < e && is_tchar((unsigned char)*sp))
        sp++;
    size_t mlen = (size_t)(sp - p);
    if (mlen == 0 || mlen >= sizeof(req->method) || sp == e || *sp != ' ')
        return TS_E_BAD_FRAME;
    memcpy(req->method, p, mlen);
    req->method[mlen] = '\0';
    const char *t = sp + 1, *te = t;
    while (te < e && (unsigned char)*te > 0x20 && (unsigned char)*te < 0x7f)
        te++;
    if (te == t || te == e || *te != ' ' || *t != '/')
        return TS_E_BAD_FRAME;
    size_t tlen = (size_t)(te - t);
    if (tlen >= sizeof(req->path))
        return TS_E_BAD_FRAME;
    const char *q = memchr(t, '?', tlen);
    size_t plen = q ? (size_t)(q - t) : tlen;
    memcpy(req->path, t, plen);
    req->path[plen] = '\0';
    const char *v = te + 1;
    if ((size_t)(e - v) != 8 || memcmp(v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9' ||
        v[6] != '.' || v[7] < '0' || v[7] > '9')
        return TS_E_BAD_FRAME;
    if (v[5] != '1')
        return TS_E_UNSUPPORTED_VERSION;
    req->minor = v[7] - '0';
    return TS_OK;
}

static int parse_header(const char *p, const char *e)
{
    const char *n = p;
    while (n < e && is_tchar((unsigned char)*n))
        n++;
    if (n == p || n == e || *n != ':')
        return TS_E_BAD_FRAME; /* also a folded line: it starts with SP or HT */
    for (const char *v = n + 1; v < e; v++) {
        unsigned char c = (unsigned char)*v;
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return TS_E_BAD_FRAME;
    }
    return TS_OK;
}

int ts_httpd_parse(const char *buf, size_t len, struct ts_http_request *req, size_t *head_len)
{
    memset(req, 0, sizeof(*req));
    *head_len = 0;
    const char *p = buf, *end = buf + len, *e;
    int bad = 0;
    int first = 1;
    for (;;) {
        const char *next = next_line(p, end, &e, &bad);
        if (!next)
            return len >= TS_HTTPD_HEAD_MAX ? TS_E_TOO_LARGE : TS_E_AGAIN;
        if ((size_t)(next - buf) > TS_HTTPD_HEAD_MAX)
            return TS_E_TOO_LARGE;
        if (bad || memchr(p, '\0', (size_t)(e - p)))
            return TS_E_BAD_FRAME;
        if (first) {
            int rc = parse_request_line(p, e, req);
            if (rc != TS_OK)
                return rc;
            first = 0;
        } else if (e == p) {
            *head_len = (size_t)(next - buf);
            return TS_OK;
        } else {
            if (++req->n_headers > TS_HTTPD_MAX_HEADERS)
                return TS_E_TOO_LARGE;
            int rc = parse_header(p, e);
            if (rc != TS_OK)
                return rc;
        }
        p = next;
    }
}

const char *ts_httpd_reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

/* ---- closing ---- */

static void maybe_done(struct ts_httpd *h)
{
    if (h->closing && h->open_handles == 0) {
        void (*cb)(void *) = h->close_cb;
        void *arg = h->close_arg;
        free(h);
        if (cb)
            cb(arg);
    }
}

static void conn_handle_closed(uv_handle_t *hd)
{
    struct hconn *c = hd->data;
    struct ts_httpd *h = c->h;
    h->open_handles--;
    if (--c->open_handles == 0) {
        free(c->out);
        free(c);
        maybe_done(h);
    }
}

static void conn_close(struct hconn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    struct ts_httpd *h = c->h;
    if (c->prev)
        c->prev->next = c->next;
    else
        h->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    h->n_conns--;
    uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
    uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
}

/* ---- answering ---- */

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    conn_close(req->data);
}

static void on_written(uv_write_t *req, int status)
{
    struct hconn *c = req->data;
    if (c->closing)
        return;
    c->sd.data = c;
    if (status < 0 || uv_shutdown(&c->sd, (uv_stream_t *)&c->tcp, on_shutdown) != 0)
        conn_close(c);
}

static void on_deadline(uv_timer_t *t);

static void respond(struct hconn *c, const char *method, const char *path, int status,
                    const char *ctype, char *body, size_t blen)
{
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->answering = 1;
    uv_timer_start(&c->timer, on_deadline, TS_HTTPD_TIMEOUT_MS, 0);
    int head_only = method && !strcmp(method, "HEAD");
    char head[512];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Cache-Control: no-store\r\n%sConnection: close\r\n\r\n",
                     status, ts_httpd_reason(status), ctype ? ctype : "text/plain; charset=utf-8",
                     blen, status == 405 ? "Allow: GET, HEAD\r\n" : "");
    size_t total = (size_t)n + (head_only ? 0 : blen);
    c->out = malloc(total);
    if (!c->out) {
        free(body);
        conn_close(c);
        return;
    }
    memcpy(c->out, head, (size_t)n);
    if (!head_only && blen)
        memcpy(c->out + n, body, blen);
    free(body);
    c->len = total;
    TS_DEBUG("event=http_request peer=%s method=%s path=%s status=%d bytes=%zu", c->peer,
             method ? method : "-", path ? path : "-", status, blen);
    uv_buf_t b = uv_buf_init(c->out, (unsigned)c->len);
    c->wr.data = c;
    if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0)
        conn_close(c);
}

static void respond_text(struct hconn *c, const char *method, const char *path, int status)
{
    char *body = NULL;
    size_t blen = 0;
    const char *reason = ts_httpd_reason(status);
    size_t rlen = strlen(reason);
    if ((body = malloc(rlen + 1))) {
        memcpy(body, reason, rlen);
        body[rlen] = '\n';
        blen = rlen + 1;
    }
    respond(c, method, path, status, NULL, body, blen);
}

static void dispatch(struct hconn *c, const struct ts_http_request *req)
{
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
        respond_text(c, req->method, req->path, 405);
        return;
    }
    struct ts_http_response res = {.status = 200};
    c->h->handler(c->h->arg, req, &res);
    respond(c, req->method, req->path, res.status, res.content_type, res.body, res.len);
}

/* ---- reading ---- */

static void on_alloc(uv_handle_t *hd, size_t hint, uv_buf_t *buf)
{
    (void)hint;
    struct hconn *c = hd->data;
    buf->base = c->buf + c->len;
    buf->len = sizeof(c->buf) - c->len;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    struct hconn *c = s->data;
    if (c->closing || nread == 0)
        return;
    if (nread < 0) { /* EOF or error before a whole head: nobody to answer */
        conn_close(c);
        return;
    }
    c->len += (size_t)nread;
    struct ts_http_request req;
    size_t head_len;
    int rc = ts_httpd_parse(c->buf, c->len, &req, &head_len);
    switch (rc) {
    case TS_E_AGAIN:
        return;
    case TS_OK:
        dispatch(c, &req);
        return;
    case TS_E_TOO_LARGE:
        respond_text(c, NULL, NULL, 431);
        return;
    case TS_E_UNSUPPORTED_VERSION:
        respond_text(c, NULL, NULL, 505);
        return;
    default:
        respond_text(c, NULL, NULL, 400);
        return;
    }
}

static void on_deadline(uv_timer_t *t)
{
    struct hconn *c = t->data;
    TS_DEBUG("event=http_timeout peer=%s", c->peer);
    conn_close(c);
}

/* The connection open longest that has not sent its head: the list is
 * newest first, and the newest (just accepted) is not a candidate. */
static struct hconn *oldest_idle(struct ts_httpd *h)
{
    struct hconn *found = NULL;
    for (struct hconn *c = h->conns ? h->conns->next : NULL; c; c = c->next)
        if (!c->answering)
            found = c;
    return found;
}

static void on_connection(uv_stream_t *listener, int status)
{
    struct ts_httpd *h = listener->data;
    if (status < 0 || h->closing)
        return;
    struct hconn *c = malloc(sizeof(*c));
    if (!c)
        return;
    memset(c, 0, offsetof(struct hconn, buf));
    c->h = h;
    uv_tcp_init(h->loop, &c->tcp);
    uv_timer_init(h->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->open_handles = 2;
    h->open_handles += 2;
    c->next = h->conns;
    if (h->conns)
        h->conns->prev = c;
    h->conns = c;
    h->n_conns++;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    struct sockaddr_storage ss;
    int slen = sizeof(ss);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &slen) == 0)
        ts_addr_format((struct sockaddr *)&ss, c->peer, sizeof(c->peer));
    else
        strcpy(c->peer, "?");
    if (h->n_conns > TS_HTTPD_MAX_CONNS) {
        struct hconn *idle = oldest_idle(h);
        TS_WARN("event=http_%s peer=%s reason=\"too many connections\" limit=%d",
                idle ? "evicted" : "refused", idle ? idle->peer : c->peer, TS_HTTPD_MAX_CONNS);
        conn_close(idle ? idle : c);
        if (!idle)
            return;
    }
    uv_timer_start(&c->timer, on_deadline, TS_HTTPD_HEAD_TIMEOUT_MS, 0);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
        conn_close(c);
}

/* ---- server ---- */

static void listener_closed(uv_handle_t *hd)
{
    struct ts_httpd *h = hd->data;
    h->open_handles--;
    maybe_done(h);
}

static void free_after_failed_start(uv_handle_t *hd)
{
    free(hd->data);
}

int ts_httpd_start(uv_loop_t *loop, const char *listen, ts_httpd_handler handler, void *arg,
                   struct ts_httpd **out)
{
    *out = NULL;
    char host[256];
    uint16_t port;
    struct sockaddr_storage ss;
    if (!listen || ts_addr_parse(listen, host, sizeof(host), &port) != TS_OK ||
        ts_addr_numeric(host, port, &ss) != TS_OK)
        return TS_E_CONFIG;
    struct ts_httpd *h = calloc(1, sizeof(*h));
    if (!h)
        return TS_E_NOMEM;
    h->loop = loop;
    h->handler = handler;
    h->arg = arg;
    uv_tcp_init(loop, &h->listener);
    h->listener.data = h;
    int r = uv_tcp_bind(&h->listener, (struct sockaddr *)&ss, 0);
    if (r == 0)
        r = uv_listen((uv_stream_t *)&h->listener, 64, on_connection);
    if (r < 0) {
        TS_ERROR("event=http_listen_failed addr=%s error=%s", listen, uv_strerror(r));
        /* the handle is on the loop: freed from its close callback */
        uv_close((uv_handle_t *)&h->listener, free_after_failed_start);
        return TS_E_IO;
    }
    h->open_handles = 1;
    struct sockaddr_storage bound;
    int blen = sizeof(bound);
    uv_tcp_getsockname(&h->listener, (struct sockaddr *)&bound, &blen);
    ts_addr_format((struct sockaddr *)&bound, h->bound, sizeof(h->bound));
    *out = h;
    return TS_OK;
}

const char *ts_httpd_address(const struct ts_httpd *h)
{
    return h->bound;
}

void ts_httpd_close(struct ts_httpd *h, void (*cb)(void *arg), void *arg)
{
    if (h->closing)
        return;
    h->closing = 1;
    h->close_cb = cb;
    h->close_arg = arg;
    while (h->conns)
        conn_close(h->conns);
    uv_close((uv_handle_t *)&h->listener, listener_closed);
}
