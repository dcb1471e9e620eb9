/*
 * ts_conn: a framed TLS connection on libuv (see ts_conn.h for the contract).
 *
 * Input: the socket is read into one per-thread buffer (a thread runs one
 * loop, and libuv pairs each alloc_cb with its read_cb), copied into the TLS
 * engine, decrypted into a stack buffer and fed to the frame decoder. The
 * pump delivers every complete frame before it decrypts more, and stops at
 * once when a callback pauses, closes or poisons the input, so a paused
 * connection buffers at most one socket read plus one frame.
 *
 * Requests (connect, write, shutdown) are allocated when made and freed
 * by their callbacks, which libuv runs (canceled, if need be) before the
 * handle's close callback: an idle connection holds none (192 bytes of
 * uv_write_t in each of thousands of idle subscribers before).
 *
 * Output: every engine call is followed by flush(). When nothing is queued
 * or in flight, flush() writes the engine's ciphertext straight to the
 * socket (uv_try_write from a per-thread scratch buffer): the common case of
 * a small frame to a reader keeping up costs no allocation and no write
 * callback. Whatever the socket does not take at once, and all output while
 * something is queued, goes into a list of chunks (small outputs share a
 * chunk). Exactly one uv_write is in flight, covering the first chunks of
 * the list; `queued` counts every byte in the list. The list is empty, and
 * so holds no memory, whenever the connection is idle. Plaintext is handed
 * to the engine in slices of SEND_SLICE and flushed after each, so neither
 * the engine's buffer nor a chunk grows past about one slice of ciphertext
 * (never an mmap-sized allocation faulted in and unmapped per batch).
 *
 * on_drain follows the send whose output left nothing queued: from the
 * write callback, or, when the output went straight out, from a zero timer
 * (never from inside ts_conn_send).
 *
 * The timer (a zero timer for deferred pumps and drains, then the close
 * wait) is allocated the first time it is armed and kept until the
 * connection closes: a connection that never deferred holds none. Closing
 * it after each firing saved its 152 bytes on idle subscribers too, but
 * cost a malloc and a close callback per deferred turn of every
 * connection: fan-out to 5,000 subscribers took about a fifth more server
 * CPU per delivery (0.71 against 0.58-0.60 us, bench/run.sh --quick).
 *
 * Close: ts_conn_close() queues close_notify, keeps reading only to discard
 * and to see the peer's end, and arms a timer. When the list has drained it
 * sends FIN (uv_shutdown); the handles are closed when the peer's EOF arrives,
 * when an I/O error ends the stream, or when the timer fires, whichever is
 * first. Reading on while closing matters: closing a socket with unread input
 * makes the kernel send RST, which can destroy our last frames (an Error) in
 * the peer's receive queue before it reads them.
 *
 * Lifetime: `refs` counts the tcp handle, each timer not yet closed (an
 * old one may still be closing when a new one is armed) and a pending
 * getaddrinfo; the
 * struct is freed, after on_close, when the last of them has called back.
 * Nothing here calls a user callback from inside a ts_conn_* function: user
 * callbacks run only from libuv callbacks (read, write, timer, close).
 */
#include "ts_conn.h"

#include "ts_err.h"
#include "ts_frame.h"
#include "ts_log.h"
#include "ts_tls.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* How long a closing connection may wait for its output and the peer's end
 * of stream before the socket is closed anyway. */
#define CLOSE_WAIT_MS 2000
/* A new output chunk holds at least one full TLS record, so a burst of small
 * frames becomes a few writes, not one per frame. */
#define CHUNK_MIN (16u << 10)
/* Chunks handed to one uv_write (writev). */
#define WRITE_BUFS 64
/* Plaintext given to the engine at once (four TLS records). */
#define SEND_SLICE (64u << 10)
/* A send larger than this is queued whole rather than written directly. */
#define DIRECT_MAX (512u << 10)
/* The direct path's staging buffer: one slice of ciphertext and change. */
#define SCRATCH (SEND_SLICE + (8u << 10))
#define READ_BUF (64u << 10)
/* SSL_read returns at most one record of plaintext. */
#define PLAIN_BUF (16u << 10)

struct out_chunk {
    struct out_chunk *next;
    size_t len, cap;
    int inflight;
    uint8_t data[];
};

/* A connect to a name: resolving, then trying its addresses in turn. Held
 * apart from the struct: no server-side connection ever has one. */
struct dial {
    uv_getaddrinfo_t req;
    struct addrinfo *ai, *next; /* the resolved list; the next to try */
    int resolving;
};

struct ts_conn {
    uv_tcp_t tcp;
    uv_timer_t *timer; /* from its first use until close: deferred pump or drain; the close wait */
    struct ts_tls *tls;
    struct ts_frame_decoder *dec;
    struct ts_conn_cbs cbs;
    void *data;
    struct out_chunk *out_head, *out_tail;
    size_t queued;
    uint64_t id;
    struct dial *dial; /* from a connect to a name until connected */
    int close_err;
    unsigned refs;
    /* "ip:port" for logs: unknown_peer, borrowed (ts_conn_adopt), or a
     * string of its length that we own (peer_owned): a link carried by an
     * I/O thread already holds one on the main side. */
    const char *peer;
    const char *role; /* for logs: static, "none" until ts_conn_set_role */
    unsigned connected : 1, reading : 1, open : 1, paused : 1, input_dead : 1, closing : 1,
        finishing : 1, eof : 1, write_busy : 1, shut_busy : 1, shut_done : 1, silent : 1,
        in_pump : 1, pump_again : 1, want_drain : 1, pump_due : 1, drain_due : 1, peer_owned : 1;
};

static const char unknown_peer[] = "?";

static _Atomic uint64_t next_id = 1;
static _Thread_local char read_buf[READ_BUF];
static _Thread_local uint8_t out_scratch[SCRATCH];

static void pump(struct ts_conn *c);
static void maybe_finish(struct ts_conn *c);
static void start_write(struct ts_conn *c);

/* ---- lifetime ---- */

static void dial_free(struct ts_conn *c)
{
    if (c->dial) {
        if (c->dial->ai)
            uv_freeaddrinfo(c->dial->ai);
        free(c->dial);
        c->dial = NULL;
    }
}

static void final_free(struct ts_conn *c)
{
    if (!c->silent) {
        TS_DEBUG("event=conn_closed conn=%llu peer=%s role=%s err=%s", (unsigned long long)c->id,
                 c->peer, c->role, ts_err_name(c->close_err));
        if (c->cbs.on_close)
            c->cbs.on_close(c, c->close_err);
    }
    struct out_chunk *ch = c->out_head;
    while (ch) {
        struct out_chunk *next = ch->next;
        free(ch);
        ch = next;
    }
    dial_free(c);
    if (c->peer_owned)
        free((char *)c->peer);
    ts_tls_free(c->tls);
    ts_frame_decoder_free(c->dec);
    free(c);
}

static void release(struct ts_conn *c)
{
    if (--c->refs == 0)
        final_free(c);
}

static void handle_closed(uv_handle_t *h)
{
    release(h->data);
}

static void timer_closed(uv_handle_t *h)
{
    struct ts_conn *c = h->data;
    free(h);
    release(c);
}

/* The connection's timer, allocated if need be (counted in refs); NULL
 * without memory. */
static uv_timer_t *timer_get(struct ts_conn *c)
{
    if (!c->timer) {
        uv_timer_t *t = malloc(sizeof(*t));
        if (!t)
            return NULL;
        uv_timer_init(c->tcp.loop, t);
        t->data = c;
        c->timer = t;
        c->refs++;
    }
    return c->timer;
}

/* Closes the timer (it is freed, and its reference dropped, from the
 * close callback); the next timer_get makes a new one. */
static void timer_drop(struct ts_conn *c)
{
    if (c->timer) {
        uv_close((uv_handle_t *)c->timer, timer_closed);
        c->timer = NULL;
    }
}

/* Closes both handles; the struct goes when the last callback is in. */
static void finish(struct ts_conn *c)
{
    if (c->finishing)
        return;
    c->finishing = 1;
    c->closing = 1;
    if (c->dial && c->dial->resolving)
        uv_cancel((uv_req_t *)&c->dial->req); /* its callback still comes, canceled */
    /* During a connect retry the tcp handle is already closing; its
     * callback (retry_closed) then releases the reference. */
    if (!uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, handle_closed);
    timer_drop(c);
}

/* Ends the connection without waiting for output (hard cap, write error). */
static void fail_now(struct ts_conn *c, int err)
{
    if (!c->closing || c->close_err == TS_OK)
        c->close_err = err;
    c->closing = 1;
    finish(c);
}

static int conn_new(uv_loop_t *loop, const struct ts_conn_cbs *cbs, void *data, uint32_t max_frame,
                    struct ts_conn **out)
{
    *out = NULL;
    struct ts_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return TS_E_NOMEM;
    c->dec = ts_frame_decoder_new(max_frame);
    if (!c->dec) {
        free(c);
        return TS_E_NOMEM;
    }
    /* uv_tcp_init without a family creates no socket and cannot fail. */
    uv_tcp_init(loop, &c->tcp);
    c->tcp.data = c;
    c->refs = 1;
    if (cbs)
        c->cbs = *cbs;
    c->data = data;
    c->id = atomic_fetch_add(&next_id, 1);
    c->peer = unknown_peer;
    c->role = "none";
    *out = c;
    return TS_OK;
}

/* Drops a connection that was never handed to the caller: no callbacks. */
static void discard(struct ts_conn *c)
{
    c->silent = 1;
    c->closing = 1;
    finish(c);
}

/* Without memory for the string the peer stays as it was: it only names
 * the connection in logs. */
static void set_peer(struct ts_conn *c, const struct sockaddr *sa)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    char buf[INET6_ADDRSTRLEN + 9];
    int n;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        uv_ip4_name(in, ip, sizeof(ip));
        n = snprintf(buf, sizeof(buf), "%s:%u", ip, ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        uv_ip6_name(in6, ip, sizeof(ip));
        n = snprintf(buf, sizeof(buf), "[%s]:%u", ip, ntohs(in6->sin6_port));
    } else {
        return;
    }
    size_t len = n < 0 ? 0 : (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1;
    char *p = malloc(len + 1);
    if (!p)
        return;
    memcpy(p, buf, len);
    p[len] = '\0';
    if (c->peer_owned)
        free((char *)c->peer);
    c->peer = p;
    c->peer_owned = 1;
}

/* ---- output ---- */

/* The tail chunk, with room for n bytes; NULL after failing the
 * connection. */
static struct out_chunk *tail_room(struct ts_conn *c, size_t n)
{
    struct out_chunk *t = c->out_tail;
    if (!t || t->inflight || t->cap - t->len < n) {
        size_t cap = n < CHUNK_MIN ? CHUNK_MIN : n;
        t = malloc(sizeof(*t) + cap);
        if (!t) {
            TS_ERROR("event=conn_nomem conn=%llu peer=%s role=%s bytes=%zu",
                     (unsigned long long)c->id, c->peer, c->role, n);
            fail_now(c, TS_E_NOMEM);
            return NULL;
        }
        t->next = NULL;
        t->len = 0;
        t->cap = cap;
        t->inflight = 0;
        if (c->out_tail)
            c->out_tail->next = t;
        else
            c->out_head = t;
        c->out_tail = t;
    }
    return t;
}

/* Moves the engine's output into the chunk list and starts a write. */
static void flush_output(struct ts_conn *c)
{
    size_t n = ts_tls_pending(c->tls);
    if (n == 0)
        return;
    struct out_chunk *t = tail_room(c, n);
    if (!t)
        return;
    size_t got = ts_tls_take(c->tls, t->data + t->len, n);
    t->len += got;
    c->queued += got;
    start_write(c);
}

/* The engine's output straight to the socket while nothing is queued; the
 * rest (what the socket refused, and all of it otherwise) into chunks. */
static void flush(struct ts_conn *c)
{
    while (ts_tls_pending(c->tls) && !c->out_head && !c->write_busy && c->connected &&
           !c->finishing) {
        size_t k = ts_tls_take(c->tls, out_scratch, sizeof(out_scratch));
        uv_buf_t b = uv_buf_init((char *)out_scratch, (unsigned)k);
        int w = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (w == UV_EAGAIN)
            w = 0;
        if (w < 0) {
            TS_DEBUG("event=conn_write_error conn=%llu peer=%s error=%s", (unsigned long long)c->id,
                     c->peer, uv_err_name(w));
            fail_now(c, TS_E_IO);
            return;
        }
        if ((size_t)w < k) {
            struct out_chunk *t = tail_room(c, k - (size_t)w);
            if (!t)
                return;
            memcpy(t->data + t->len, out_scratch + w, k - (size_t)w);
            t->len += k - (size_t)w;
            c->queued += k - (size_t)w;
            /* Started here: flush_output() below may find nothing more. */
            start_write(c);
            break;
        }
    }
    flush_output(c);
}

static void write_done(uv_write_t *req, int status)
{
    struct ts_conn *c = req->handle->data;
    free(req);
    c->write_busy = 0;
    while (c->out_head && c->out_head->inflight) {
        struct out_chunk *ch = c->out_head;
        c->out_head = ch->next;
        c->queued -= ch->len;
        free(ch);
    }
    if (!c->out_head)
        c->out_tail = NULL;
    if (c->finishing)
        return;
    if (status < 0) {
        TS_DEBUG("event=conn_write_error conn=%llu peer=%s role=%s error=%s",
                 (unsigned long long)c->id, c->peer, c->role, uv_err_name(status));
        fail_now(c, TS_E_IO);
        return;
    }
    if (c->out_head) {
        start_write(c);
        return;
    }
    if (c->closing) {
        maybe_finish(c);
        return;
    }
    /* Only output the user queued is reported: handshake flights and
     * tickets drain too, and nobody waits for them. */
    if (c->want_drain && ts_tls_pending_plain(c->tls) == 0) {
        c->want_drain = 0;
        if (c->cbs.on_drain)
            c->cbs.on_drain(c);
    }
}

static void start_write(struct ts_conn *c)
{
    if (c->write_busy || !c->connected || !c->out_head || c->finishing)
        return;
    uv_buf_t bufs[WRITE_BUFS];
    unsigned nb = 0;
    for (struct out_chunk *ch = c->out_head; ch && nb < WRITE_BUFS; ch = ch->next) {
        bufs[nb++] = uv_buf_init((char *)ch->data, (unsigned)ch->len);
        ch->inflight = 1;
    }
    uv_write_t *req = malloc(sizeof(*req));
    int r = req ? uv_write(req, (uv_stream_t *)&c->tcp, bufs, nb, write_done) : UV_ENOMEM;
    if (r < 0) {
        free(req);
        for (struct out_chunk *ch = c->out_head; ch; ch = ch->next)
            ch->inflight = 0;
        TS_DEBUG("event=conn_write_error conn=%llu peer=%s role=%s error=%s",
                 (unsigned long long)c->id, c->peer, c->role, uv_err_name(r));
        fail_now(c, TS_E_IO);
        return;
    }
    c->write_busy = 1;
}

/* ---- input ---- */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    buf->base = read_buf;
    buf->len = sizeof(read_buf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void read_start(struct ts_conn *c)
{
    if (c->reading || !c->connected || c->eof || c->finishing)
        return;
    int r = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (r == 0)
        c->reading = 1;
    else if (c->closing)
        c->eof = 1; /* nothing more will come; maybe_finish need not wait */
    else
        fail_now(c, TS_E_IO);
}

static void read_stop(struct ts_conn *c)
{
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
}

static void input_error(struct ts_conn *c, int err)
{
    c->input_dead = 1;
    read_stop(c);
    TS_DEBUG("event=conn_input_error conn=%llu peer=%s role=%s err=%s", (unsigned long long)c->id,
             c->peer, c->role, ts_err_name(err));
    if (c->cbs.on_error)
        c->cbs.on_error(c, err);
    else
        ts_conn_close(c, err);
}

static void tls_failed(struct ts_conn *c)
{
    char why[160];
    TS_INFO("event=tls_error conn=%llu peer=%s role=%s reason=\"%s\"", (unsigned long long)c->id,
            c->peer, c->role, ts_tls_strerror(c->tls, why, sizeof(why)));
    ts_conn_close(c, TS_E_TLS);
}

static void pump_once(struct ts_conn *c)
{
    uint8_t plain[PLAIN_BUF];
    for (;;) {
        if (c->closing || c->input_dead || c->paused)
            return;
        if (c->open) {
            Threadsync__Frame *f;
            const char *bad;
            int rc = ts_frame_decoder_next(c->dec, &f, &bad);
            if (rc == TS_OK || rc == TS_E_INVALID_ARGUMENT) {
                if (c->cbs.on_frame)
                    c->cbs.on_frame(c, f, rc, bad);
                else
                    ts_frame_free(f);
                continue;
            }
            if (rc != TS_E_AGAIN) {
                input_error(c, rc);
                return;
            }
        }
        /* Every complete frame is out: only now decrypt more. */
        size_t n;
        int rc = ts_tls_read(c->tls, plain, sizeof(plain), &n);
        flush(c);
        if (c->finishing)
            return;
        if (!c->open && ts_tls_established(c->tls)) {
            c->open = 1;
            TS_DEBUG("event=conn_open conn=%llu peer=%s role=%s resumed=%d",
                     (unsigned long long)c->id, c->peer, c->role, ts_tls_resumed(c->tls));
            if (c->cbs.on_open)
                c->cbs.on_open(c);
            if (c->closing)
                return;
        }
        switch (rc) {
        case TS_OK:
            if (ts_frame_decoder_feed(c->dec, plain, n) != TS_OK) {
                ts_conn_close(c, TS_E_NOMEM);
                return;
            }
            continue;
        case TS_E_AGAIN:
            return;
        case TS_E_CLOSED:
            /* The peer's close_notify, after every frame before it was
             * delivered: leftover bytes are a truncated frame. Otherwise an
             * orderly close; what we queued is still flushed (half-close). */
            if (ts_frame_decoder_pending(c->dec) > 0)
                input_error(c, TS_E_BAD_FRAME);
            else
                ts_conn_close(c, TS_OK);
            return;
        default:
            tls_failed(c);
            return;
        }
    }
}

/* The recursion guard: a callback that leads back here (directly or through
 * a future change) only marks the pump to run again, so frames are never
 * delivered out of order or from inside another delivery. */
static void pump(struct ts_conn *c)
{
    if (c->in_pump) {
        c->pump_again = 1;
        return;
    }
    c->in_pump = 1;
    do {
        c->pump_again = 0;
        pump_once(c);
    } while (c->pump_again);
    c->in_pump = 0;
}

static void on_eof(struct ts_conn *c)
{
    /* A frame cut short after the handshake is a protocol error; otherwise
     * (no handshake, or no close_notify) it is a close, not an orderly one. */
    if (ts_tls_established(c->tls) && ts_frame_decoder_pending(c->dec) > 0)
        input_error(c, TS_E_BAD_FRAME);
    else
        ts_conn_close(c, TS_E_CLOSED);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct ts_conn *c = s->data;
    if (nread == 0)
        return;
    if (nread < 0) {
        c->eof = 1;
        read_stop(c);
        if (c->closing) {
            maybe_finish(c);
        } else if (nread == UV_EOF) {
            on_eof(c);
        } else {
            TS_DEBUG("event=conn_read_error conn=%llu peer=%s role=%s error=%s",
                     (unsigned long long)c->id, c->peer, c->role, uv_err_name((int)nread));
            ts_conn_close(c, TS_E_IO);
        }
        return;
    }
    if (c->closing || c->input_dead)
        return;
    if (ts_tls_feed(c->tls, buf->base, (size_t)nread) != TS_OK) {
        ts_conn_close(c, TS_E_NOMEM);
        return;
    }
    pump(c);
}

/* The zero timer: frames buffered before a resume, and on_drain after
 * output that went straight out. */
static void deferred_run(struct ts_conn *c)
{
    if (!c->connected || c->closing)
        return;
    if (c->drain_due) {
        c->drain_due = 0;
        if (c->want_drain && !c->out_head && !c->write_busy && ts_conn_queued(c) == 0) {
            c->want_drain = 0;
            if (c->cbs.on_drain)
                c->cbs.on_drain(c);
            if (c->closing)
                return;
        }
    }
    if (c->pump_due) {
        c->pump_due = 0;
        pump(c);
    }
}

static void deferred(uv_timer_t *t)
{
    deferred_run(t->data);
}

static void defer(struct ts_conn *c)
{
    uv_timer_t *t = timer_get(c);
    if (!t) {
        TS_ERROR("event=conn_nomem conn=%llu peer=%s role=%s what=timer", (unsigned long long)c->id,
                 c->peer, c->role);
        fail_now(c, TS_E_NOMEM);
        return;
    }
    if (!uv_is_active((uv_handle_t *)t))
        uv_timer_start(t, deferred, 0, 0);
}

/* ---- close ---- */

static void shutdown_done(uv_shutdown_t *req, int status)
{
    struct ts_conn *c = req->handle->data;
    free(req);
    c->shut_busy = 0;
    c->shut_done = 1;
    if (c->finishing)
        return;
    if (status < 0)
        finish(c);
    else
        maybe_finish(c);
}

static void maybe_finish(struct ts_conn *c)
{
    if (!c->closing || c->finishing)
        return;
    if (c->out_head || c->write_busy || c->shut_busy)
        return;
    if (c->eof) {
        finish(c);
        return;
    }
    if (!c->shut_done) {
        uv_shutdown_t *req = malloc(sizeof(*req));
        if (req && uv_shutdown(req, (uv_stream_t *)&c->tcp, shutdown_done) == 0) {
            c->shut_busy = 1;
        } else {
            free(req);
            finish(c);
        }
    }
    /* else: FIN sent; the peer's EOF or the timer ends it */
}

static void close_timeout(uv_timer_t *t)
{
    struct ts_conn *c = t->data;
    if (c->out_head && c->close_err == TS_OK)
        c->close_err = TS_E_TIMEOUT;
    finish(c);
}

void ts_conn_close(struct ts_conn *c, int err)
{
    if (c->closing)
        return;
    c->closing = 1;
    c->close_err = err;
    if (!c->connected) {
        finish(c);
        return;
    }
    ts_tls_shutdown(c->tls);
    flush(c);
    if (c->finishing)
        return;
    read_start(c);
    if (c->finishing)
        return;
    uv_timer_t *t = timer_get(c);
    if (!t) { /* no bounded wait without a timer: close now */
        finish(c);
        return;
    }
    uv_timer_start(t, close_timeout, CLOSE_WAIT_MS, 0);
    maybe_finish(c);
}

void ts_conn_abort(struct ts_conn *c, int err)
{
    if (c->finishing)
        return;
    fail_now(c, err);
}

/* ---- connect ---- */

static void connect_done(uv_connect_t *req, int status);

static void connect_next(struct ts_conn *c);

static void retry_closed(uv_handle_t *h)
{
    struct ts_conn *c = h->data;
    if (c->closing) {
        release(c); /* finish() counted on this callback for the tcp handle */
        return;
    }
    uv_tcp_init(c->tcp.loop, &c->tcp);
    c->tcp.data = c;
    connect_next(c);
}

/* This address failed: try the next on a fresh handle (a socket whose
 * connect failed cannot be reused, and the next may be another family). */
static void connect_failed(struct ts_conn *c, int uverr)
{
    TS_DEBUG("event=conn_connect_error conn=%llu peer=%s role=%s error=%s",
             (unsigned long long)c->id, c->peer, c->role, uv_err_name(uverr));
    if (c->dial && c->dial->next) {
        uv_close((uv_handle_t *)&c->tcp, retry_closed);
        return;
    }
    ts_conn_close(c, TS_E_IO);
}

static int start_connect(struct ts_conn *c, const struct sockaddr *sa)
{
    uv_connect_t *req = malloc(sizeof(*req));
    int r = req ? uv_tcp_connect(req, &c->tcp, sa, connect_done) : UV_ENOMEM;
    if (r < 0)
        free(req);
    return r;
}

static void connect_to(struct ts_conn *c, const struct sockaddr *sa)
{
    set_peer(c, sa);
    int r = start_connect(c, sa);
    if (r < 0)
        connect_failed(c, r);
}

static void connect_next(struct ts_conn *c)
{
    while (c->dial && c->dial->next) {
        struct addrinfo *a = c->dial->next;
        c->dial->next = a->ai_next;
        if (a->ai_family == AF_INET || a->ai_family == AF_INET6) {
            connect_to(c, a->ai_addr);
            return;
        }
    }
    ts_conn_close(c, TS_E_IO);
}

static void connect_done(uv_connect_t *req, int status)
{
    struct ts_conn *c = req->handle->data;
    free(req);
    if (c->finishing || status == UV_ECANCELED)
        return;
    if (status < 0) {
        connect_failed(c, status);
        return;
    }
    c->connected = 1;
    dial_free(c);
    uv_tcp_nodelay(&c->tcp, 1);
    if (!c->paused)
        read_start(c);
    if (c->finishing)
        return;
    int rc = ts_tls_handshake(c->tls); /* the ClientHello */
    flush(c);
    if (rc == TS_E_TLS)
        tls_failed(c);
}

static void resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct ts_conn *c = req->data;
    c->dial->resolving = 0; /* req stays with the dial, freed with it */
    if (c->closing) {
        if (res)
            uv_freeaddrinfo(res);
        release(c);
        return;
    }
    c->refs--; /* cannot reach 0: the handles are open while not closing */
    if (status < 0) {
        TS_INFO("event=conn_resolve_error conn=%llu peer=%s role=%s error=%s",
                (unsigned long long)c->id, c->peer, c->role, uv_err_name(status));
        ts_conn_close(c, TS_E_IO);
        return;
    }
    c->dial->ai = c->dial->next = res;
    connect_next(c);
}

int ts_conn_connect(uv_loop_t *loop, const char *host, uint16_t port, SSL_CTX *ctx,
                    const struct ts_conn_cbs *cbs, void *data, uint32_t max_frame,
                    struct ts_conn **out)
{
    *out = NULL;
    if (!host || !*host || port == 0 || strlen(host) > 253)
        return TS_E_INVALID_ARGUMENT;
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } addr;
    int numeric = uv_ip4_addr(host, port, &addr.in) == 0 || uv_ip6_addr(host, port, &addr.in6) == 0;
    char key[280];
    snprintf(key, sizeof(key), strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, port);
    struct ts_conn *c;
    int rc = conn_new(loop, cbs, data, max_frame, &c);
    if (rc != TS_OK)
        return rc;
    rc = ts_tls_new_client(ctx, host, key, &c->tls);
    if (rc != TS_OK) {
        discard(c);
        return rc;
    }
    if (numeric) {
        set_peer(c, &addr.sa);
        rc = start_connect(c, &addr.sa);
        if (rc < 0) {
            TS_INFO("event=conn_connect_error conn=%llu peer=%s role=%s error=%s",
                    (unsigned long long)c->id, c->peer, c->role, uv_err_name(rc));
            discard(c);
            return TS_E_IO;
        }
    } else {
        c->dial = calloc(1, sizeof(*c->dial));
        if (!c->dial) {
            discard(c);
            return TS_E_NOMEM;
        }
        c->dial->req.data = c;
        char portstr[8];
        snprintf(portstr, sizeof(portstr), "%u", port);
        struct addrinfo hints = {0};
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        /* No AI_ADDRCONFIG: on a host with only loopback configured it hides
         * "localhost" itself. */
        rc = uv_getaddrinfo(loop, &c->dial->req, resolved, host, portstr, &hints);
        if (rc < 0) {
            dial_free(c);
            discard(c);
            return TS_E_IO;
        }
        c->dial->resolving = 1;
        c->refs++;
    }
    *out = c;
    return TS_OK;
}

/* The common end of accept and adopt: c's socket is connected. */
static int accepted(struct ts_conn *c, struct ts_conn **out)
{
    c->connected = 1;
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (c->peer == unknown_peer && uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0)
        set_peer(c, (struct sockaddr *)&ss);
    uv_tcp_nodelay(&c->tcp, 1);
    read_start(c);
    if (c->finishing) { /* read_start failed */
        c->silent = 1;
        return TS_E_IO;
    }
    *out = c;
    return TS_OK;
}

int ts_conn_accept(uv_loop_t *loop, uv_stream_t *listener, SSL_CTX *ctx,
                   const struct ts_conn_cbs *cbs, void *data, uint32_t max_frame,
                   struct ts_conn **out)
{
    *out = NULL;
    struct ts_conn *c;
    int rc = conn_new(loop, cbs, data, max_frame, &c);
    if (rc != TS_OK)
        return rc;
    rc = ts_tls_new_server(ctx, &c->tls);
    if (rc != TS_OK) {
        discard(c);
        return rc;
    }
    int r = uv_accept(listener, (uv_stream_t *)&c->tcp);
    if (r < 0) {
        TS_INFO("event=conn_accept_error conn=%llu peer=? role=%s error=%s",
                (unsigned long long)c->id, c->role, uv_err_name(r));
        discard(c);
        return TS_E_IO;
    }
    return accepted(c, out);
}

uint64_t ts_conn_reserve_id(void)
{
    return atomic_fetch_add(&next_id, 1);
}

int ts_conn_adopt(uv_loop_t *loop, uv_os_sock_t fd, uint64_t id, const char *peer, SSL_CTX *ctx,
                  const struct ts_conn_cbs *cbs, void *data, uint32_t max_frame,
                  struct ts_conn **out)
{
    *out = NULL;
    struct ts_conn *c;
    int rc = conn_new(loop, cbs, data, max_frame, &c);
    if (rc != TS_OK) {
        close(fd);
        return rc;
    }
    if (id)
        c->id = id;
    if (peer)
        c->peer = peer;
    rc = ts_tls_new_server(ctx, &c->tls);
    int r = rc == TS_OK ? uv_tcp_open(&c->tcp, fd) : 0;
    if (rc != TS_OK || r < 0)
        close(fd); /* not the handle's: uv_tcp_open did not take it */
    if (rc != TS_OK) {
        discard(c);
        return rc;
    }
    if (r < 0) {
        TS_INFO("event=conn_accept_error conn=%llu peer=? role=%s error=%s",
                (unsigned long long)c->id, c->role, uv_err_name(r));
        discard(c);
        return TS_E_IO;
    }
    return accepted(c, out);
}

/* ---- the rest of the API ---- */

void *ts_conn_data(const struct ts_conn *c)
{
    return c->data;
}

void ts_conn_set_data(struct ts_conn *c, void *data)
{
    c->data = data;
}

int ts_conn_closing(const struct ts_conn *c)
{
    return c->closing;
}

size_t ts_conn_frame_bytes(const struct ts_conn *c)
{
    return ts_frame_decoder_last_size(c->dec);
}

size_t ts_conn_queued(const struct ts_conn *c)
{
    return c->queued + ts_tls_pending_plain(c->tls);
}

int ts_conn_send(struct ts_conn *c, const void *data, size_t len)
{
    if (c->closing)
        return TS_E_CLOSED;
    if (len == 0)
        return TS_OK;
    if (len > TS_CONN_QUEUE_HARD_MAX || ts_conn_queued(c) > TS_CONN_QUEUE_HARD_MAX - len) {
        TS_WARN("event=conn_queue_full conn=%llu peer=%s role=%s queued=%zu",
                (unsigned long long)c->id, c->peer, c->role, ts_conn_queued(c));
        fail_now(c, TS_E_TOO_LARGE);
        return TS_E_TOO_LARGE;
    }
    c->want_drain = 1;
    int direct = len <= DIRECT_MAX && !c->out_head && !c->write_busy;
    const uint8_t *p = data;
    int rc = TS_OK;
    while (len > 0 && rc == TS_OK && !c->finishing) {
        size_t n = len < SEND_SLICE ? len : SEND_SLICE;
        rc = ts_tls_write(c->tls, p, n);
        if (direct)
            flush(c);
        else
            flush_output(c);
        p += n;
        len -= n;
    }
    if (rc == TS_E_NOMEM) {
        fail_now(c, rc);
        return rc;
    }
    if (rc != TS_OK) {
        tls_failed(c);
        return rc;
    }
    if (c->finishing)
        return TS_E_CLOSED;
    if (!c->out_head && !c->write_busy && ts_conn_queued(c) == 0) {
        c->drain_due = 1;
        defer(c);
    }
    return TS_OK;
}

int ts_conn_send_frame(struct ts_conn *c, const Threadsync__Frame *f)
{
    if (c->closing)
        return TS_E_CLOSED;
    size_t size = ts_frame_size(f);
    if (size - TS_FRAME_HEADER > TS_FRAME_MAX_LIMIT)
        return TS_E_TOO_LARGE;
    uint8_t small[1024];
    uint8_t *buf = size <= sizeof(small) ? small : malloc(size);
    if (!buf)
        return TS_E_NOMEM;
    size_t n = ts_frame_pack(f, buf);
    int rc = ts_conn_send(c, buf, n);
    if (buf != small)
        free(buf);
    return rc;
}

void ts_conn_set_max_frame(struct ts_conn *c, uint32_t max_frame)
{
    ts_frame_decoder_set_max(c->dec, max_frame);
}

void ts_conn_pause_reading(struct ts_conn *c)
{
    if (c->closing)
        return;
    c->paused = 1;
    read_stop(c);
}

void ts_conn_resume_reading(struct ts_conn *c)
{
    if (c->closing || !c->paused)
        return;
    c->paused = 0;
    if (c->input_dead)
        return;
    read_start(c);
    /* Frames may already be buffered: deliver them from the loop, not from
     * inside this call. */
    c->pump_due = 1;
    defer(c);
}

const char *ts_conn_peer(const struct ts_conn *c)
{
    return c->peer;
}

void ts_conn_set_role(struct ts_conn *c, const char *role)
{
    c->role = role ? role : "none";
}

uint64_t ts_conn_id(const struct ts_conn *c)
{
    return c->id;
}

int ts_conn_resumed(const struct ts_conn *c)
{
    return ts_tls_resumed(c->tls);
}

size_t ts_conn_size(void)
{
    return sizeof(struct ts_conn);
}
