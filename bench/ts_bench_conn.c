/*
 * ts_bench_conn: see ts_bench_conn.h.
 *
 * Input: socket bytes go into the TLS engine; plaintext is decrypted into
 * the connection's input buffer, which is consumed by index (frames are
 * delivered in place) and compacted once per read. Output: every engine
 * call is followed by flush(), which moves all pending ciphertext into one
 * malloc'd write request.
 */
#include "ts_bench_conn.h"

#include "ts_endian.h"
#include "ts_err.h"
#include "ts_frame.h"
#include "ts_tls.h"

#include <stdlib.h>
#include <string.h>

#define READ_BUF (256u << 10)
#define PLAIN_BUF (64u << 10)

struct wreq {
    uv_write_t req;
    uint8_t data[];
};

struct tsb_conn {
    uv_tcp_t tcp;
    uv_connect_t connect;
    struct ts_tls *tls;
    struct tsb_conn_cbs cbs;
    void *data;
    uint8_t *in; /* decrypted plaintext: [pos, len) not yet delivered */
    size_t in_pos, in_len, in_cap;
    int close_err;
    unsigned open : 1, closing : 1;
};

static _Thread_local uint8_t read_buf[READ_BUF];

static int split_ts(const uint8_t *p, size_t avail, size_t *hdr, size_t *body)
{
    if (avail < TS_FRAME_HEADER)
        return TS_E_AGAIN;
    size_t n = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
    if (n == 0 || n > TS_FRAME_MAX_LIMIT)
        return TS_E_BAD_FRAME;
    if (avail < TS_FRAME_HEADER + n)
        return TS_E_AGAIN;
    *hdr = TS_FRAME_HEADER;
    *body = n;
    return TS_OK;
}

static void on_closed(uv_handle_t *h)
{
    struct tsb_conn *c = h->data;
    if (c->cbs.on_close)
        c->cbs.on_close(c, c->close_err);
    ts_tls_free(c->tls);
    free(c->in);
    free(c);
}

static void fail(struct tsb_conn *c, int err)
{
    if (c->closing)
        return;
    c->closing = 1;
    c->close_err = err;
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void write_done(uv_write_t *req, int status)
{
    (void)status; /* a failed write shows up as a read error too */
    free(req);
}

static void flush(struct tsb_conn *c)
{
    size_t n = ts_tls_pending(c->tls);
    if (n == 0 || c->closing)
        return;
    struct wreq *w = malloc(sizeof(*w) + n);
    if (!w) {
        fail(c, TS_E_NOMEM);
        return;
    }
    size_t got = ts_tls_take(c->tls, w->data, n);
    uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)got);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, write_done) != 0) {
        free(w);
        fail(c, TS_E_IO);
    }
}

static int in_reserve(struct tsb_conn *c, size_t n)
{
    if (c->in_len + n <= c->in_cap)
        return TS_OK;
    size_t cap = c->in_cap ? c->in_cap : PLAIN_BUF;
    while (cap < c->in_len + n)
        cap *= 2;
    uint8_t *p = realloc(c->in, cap);
    if (!p)
        return TS_E_NOMEM;
    c->in = p;
    c->in_cap = cap;
    return TS_OK;
}

static void deliver(struct tsb_conn *c)
{
    while (!c->closing && c->in_len > c->in_pos) {
        const uint8_t *p = c->in + c->in_pos;
        size_t hdr, n;
        int rc = c->cbs.split(p, c->in_len - c->in_pos, &hdr, &n);
        if (rc == TS_E_AGAIN)
            break;
        if (rc != TS_OK) {
            fail(c, rc);
            return;
        }
        c->in_pos += hdr + n;
        c->cbs.on_frame(c, p + hdr, n);
    }
    if (c->closing)
        return;
    /* Compact: keep only the partial frame. */
    size_t left = c->in_len - c->in_pos;
    if (left && c->in_pos)
        memmove(c->in, c->in + c->in_pos, left);
    c->in_len = left;
    c->in_pos = 0;
    if (!left && c->in_cap > (size_t)4 * PLAIN_BUF) {
        free(c->in);
        c->in = NULL;
        c->in_cap = 0;
    }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)h;
    (void)hint;
    buf->base = (char *)read_buf;
    buf->len = sizeof(read_buf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct tsb_conn *c = s->data;
    if (nread == 0 || c->closing)
        return;
    if (nread < 0) {
        fail(c, nread == UV_EOF ? TS_E_CLOSED : TS_E_IO);
        return;
    }
    if (ts_tls_feed(c->tls, buf->base, (size_t)nread) != TS_OK) {
        fail(c, TS_E_NOMEM);
        return;
    }
    for (;;) {
        if (in_reserve(c, PLAIN_BUF) != TS_OK) {
            fail(c, TS_E_NOMEM);
            return;
        }
        size_t n;
        int rc = ts_tls_read(c->tls, c->in + c->in_len, c->in_cap - c->in_len, &n);
        flush(c);
        if (c->closing)
            return;
        if (!c->open && ts_tls_established(c->tls)) {
            c->open = 1;
            if (c->cbs.on_open)
                c->cbs.on_open(c);
            if (c->closing)
                return;
        }
        if (rc == TS_OK) {
            c->in_len += n;
            continue;
        }
        if (rc == TS_E_AGAIN)
            break;
        fail(c, rc == TS_E_CLOSED ? TS_E_CLOSED : TS_E_TLS);
        return;
    }
    deliver(c);
    if (!c->closing && c->cbs.on_batch_end)
        c->cbs.on_batch_end(c);
}

static void connected(uv_connect_t *req, int status)
{
    struct tsb_conn *c = req->handle->data;
    if (c->closing)
        return;
    if (status < 0) {
        fail(c, TS_E_IO);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
        fail(c, TS_E_IO);
        return;
    }
    int rc = ts_tls_handshake(c->tls); /* the ClientHello */
    flush(c);
    if (rc == TS_E_TLS)
        fail(c, TS_E_TLS);
}

int tsb_conn_connect(uv_loop_t *loop, const struct sockaddr_in *addr, SSL_CTX *ctx,
                     const char *host, const char *session_key, const struct tsb_conn_cbs *cbs,
                     void *data, struct tsb_conn **out)
{
    *out = NULL;
    struct tsb_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return TS_E_NOMEM;
    int rc = ts_tls_new_client(ctx, host, session_key, &c->tls);
    if (rc != TS_OK) {
        free(c);
        return rc;
    }
    c->cbs = *cbs;
    if (!c->cbs.split)
        c->cbs.split = split_ts;
    c->data = data;
    uv_tcp_init(loop, &c->tcp);
    c->tcp.data = c;
    if (uv_tcp_connect(&c->connect, &c->tcp, (const struct sockaddr *)addr, connected) != 0) {
        c->cbs.on_close = NULL; /* never handed out: no callbacks */
        fail(c, TS_E_IO);
        return TS_E_IO;
    }
    *out = c;
    return TS_OK;
}

void *tsb_conn_data(const struct tsb_conn *c)
{
    return c->data;
}

int tsb_conn_send(struct tsb_conn *c, const void *data, size_t len)
{
    if (c->closing)
        return TS_E_CLOSED;
    int rc = ts_tls_write(c->tls, data, len);
    flush(c);
    if (rc != TS_OK)
        fail(c, rc);
    return c->closing ? TS_E_CLOSED : TS_OK;
}

int tsb_conn_send_frame(struct tsb_conn *c, const Threadsync__Frame *f)
{
    uint8_t small[2048];
    size_t size = ts_frame_size(f);
    uint8_t *buf = size <= sizeof(small) ? small : malloc(size);
    if (!buf)
        return TS_E_NOMEM;
    size_t n = ts_frame_pack(f, buf);
    int rc = tsb_conn_send(c, buf, n);
    if (buf != small)
        free(buf);
    return rc;
}

void tsb_conn_close(struct tsb_conn *c)
{
    if (c->closing)
        return;
    ts_tls_shutdown(c->tls);
    flush(c);
    fail(c, TS_OK);
}

int tsb_conn_resumed(const struct tsb_conn *c)
{
    return ts_tls_resumed(c->tls);
}
