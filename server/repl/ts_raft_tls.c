/*
 * ts_raft_tls: see ts_raft_tls.h for the design and the wire.
 *
 * A tunnel is one TCP connection and its TLS engine; once the preamble
 * exchange is done it also owns one end of a socketpair whose other end
 * raft holds. States:
 *
 *   HANDSHAKE -> PREAMBLE -> OPEN -> CLOSING
 *   (TLS)        (dialer waits for the ack, listener for the preamble)
 *
 * Invariants:
 *   - raft's connect callback runs exactly once per connect() that returned
 *     0, never synchronously: with the stream when the tunnel opens, or from
 *     the tunnel's last handle close callback with RAFT_NOCONNECTION, or
 *     RAFT_CANCELED when the transport is closing (raft asserts on that
 *     pairing);
 *   - raft's accept callback runs only for a peer whose certificate
 *     verified and whose preamble parsed, never while closing;
 *   - a tunnel is freed when its last handle (tcp, timer, inner pipe) has
 *     closed; the transport's close callback runs once the listener and
 *     every tunnel are gone;
 *   - at most TS_RAFT_TLS_QUEUE_HIGH bytes wait for the socket (or for the
 *     pipe to raft) before the other side's reading is paused.
 */
#include "ts_raft_tls.h"

#include "ts_addr.h"
#include "ts_endian.h"
#include "ts_err.h"
#include "ts_log.h"
#include "ts_tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAGIC_HELLO 0x3130746661727374ULL /* bytes "tsraft01" */
#define MAGIC_ACK 0x6b6f746661727374ULL   /* bytes "tsraftok" */
#define KIND_RAFT 1
#define KIND_PROBE 2
#define HDR_LEN 32
#define ACK_LEN 8
#define DEFAULT_HANDSHAKE_MS 5000
#define CLOSE_GRACE_MS 1000
#define QUEUE_LOW (1u << 20)
#define READ_CHUNK 16384

enum { T_HANDSHAKE, T_PREAMBLE, T_OPEN, T_CLOSING };

struct rtls;

struct tunnel {
    struct rtls *tr;
    struct tunnel *prev, *next;
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_timer_t timer;
    uv_pipe_t inner; /* our end of the socketpair, once open */
    struct ts_tls *tls;
    int state;
    int outgoing;
    int kind;
    int handles; /* open libuv handles of ours */
    int inner_open;
    int tcp_paused, inner_paused;
    size_t tcp_queued, inner_queued;
    size_t tcp_sent; /* bytes ever queued toward the peer */
    int status;      /* why it closed, for the connect/probe callback */
    /* dialer side */
    struct raft_uv_connect *req;
    raft_uv_connect_cb connect_cb;
    ts_raft_tls_probe_cb probe_cb;
    void *probe_arg;
    raft_id dial_id;
    /* preamble being read (listener: hdr + addr; dialer: the ack) */
    uint8_t hdr[HDR_LEN];
    size_t hdr_got;
    raft_id peer_id;
    char *peer_addr;
    size_t addr_len, addr_got;
    char peer[64]; /* ip:port, for logs */
};

struct rtls {
    struct raft_uv_transport *t;
    uv_loop_t *loop;
    SSL_CTX *server_ctx, *client_ctx;
    unsigned handshake_ms;
    raft_id id;
    char *address; /* this node's (composite) raft address */
    uv_tcp_t listener;
    uv_timer_t closer; /* closed by t_close, so its callback is never synchronous */
    int listening, listener_open, closer_open;
    raft_uv_accept_cb accept_cb;
    struct tunnel *tunnels;
    int closing;
    raft_uv_transport_close_cb close_cb;
    int released; /* ts_raft_tls_close() called: free when the last handle closes */
};

struct wreq {
    uv_write_t w;
    struct tunnel *tn;
    size_t len;
    int to_tcp;
    char data[];
};

int ts_raft_tls_split_address(const char *address, char *raft, size_t raft_size, char *client,
                              size_t client_size)
{
    char host[256];
    uint16_t port;
    const char *comma = strchr(address, ',');
    size_t rlen = comma ? (size_t)(comma - address) : strlen(address);
    char part[TS_RAFT_TLS_ADDR_MAX + 1];
    if (rlen == 0 || rlen > TS_RAFT_TLS_ADDR_MAX)
        return TS_E_INVALID_ARGUMENT;
    memcpy(part, address, rlen);
    part[rlen] = '\0';
    if (ts_addr_parse(part, host, sizeof(host), &port) != TS_OK)
        return TS_E_INVALID_ARGUMENT;
    if (raft) {
        if (rlen >= raft_size)
            return TS_E_INVALID_ARGUMENT;
        memcpy(raft, part, rlen + 1);
    }
    const char *c = comma ? comma + 1 : "";
    if (*c && ts_addr_parse(c, host, sizeof(host), &port) != TS_OK)
        return TS_E_INVALID_ARGUMENT;
    if (client) {
        size_t clen = strlen(c);
        if (clen >= client_size)
            return TS_E_INVALID_ARGUMENT;
        memcpy(client, c, clen + 1);
    }
    return TS_OK;
}

/* ---- teardown ---------------------------------------------------------- */

static void rtls_free(struct rtls *tr)
{
    if (tr->server_ctx)
        SSL_CTX_free(tr->server_ctx);
    if (tr->client_ctx)
        SSL_CTX_free(tr->client_ctx);
    free(tr->address);
    free(tr);
}

static int rtls_idle(const struct rtls *tr)
{
    return !tr->tunnels && !tr->listener_open && !tr->closer_open;
}

/* The transport's close callback once nothing of ours is left; the memory
 * itself goes when ts_raft_tls_close() was called too. */
static void rtls_maybe_done(struct rtls *tr)
{
    if (!rtls_idle(tr))
        return;
    if (tr->closing && tr->close_cb) {
        raft_uv_transport_close_cb cb = tr->close_cb;
        tr->close_cb = NULL;
        cb(tr->t);
    }
    if (tr->released)
        rtls_free(tr);
}

static void tunnel_handle_closed(uv_handle_t *h)
{
    struct tunnel *tn = h->data;
    if (--tn->handles > 0)
        return;
    struct rtls *tr = tn->tr;
    if (tn->prev)
        tn->prev->next = tn->next;
    else
        tr->tunnels = tn->next;
    if (tn->next)
        tn->next->prev = tn->prev;
    if (tn->connect_cb) {
        /* raft expects CANCELED exactly when its side is closing too. */
        int st = tr->closing ? RAFT_CANCELED : RAFT_NOCONNECTION;
        tn->connect_cb(tn->req, NULL, st);
    }
    if (tn->probe_cb)
        tn->probe_cb(tn->probe_arg, tn->status);
    ts_tls_free(tn->tls);
    free(tn->peer_addr);
    free(tn);
    rtls_maybe_done(tr);
}

static void tunnel_close_handles(struct tunnel *tn)
{
    if (!uv_is_closing((uv_handle_t *)&tn->tcp))
        uv_close((uv_handle_t *)&tn->tcp, tunnel_handle_closed);
    if (!uv_is_closing((uv_handle_t *)&tn->timer))
        uv_close((uv_handle_t *)&tn->timer, tunnel_handle_closed);
    if (tn->inner_open && !uv_is_closing((uv_handle_t *)&tn->inner))
        uv_close((uv_handle_t *)&tn->inner, tunnel_handle_closed);
}

static void on_grace_timeout(uv_timer_t *t)
{
    tunnel_close_handles(t->data);
}

static void flush_tls(struct tunnel *tn);

/* Starts closing: raft's end of the pipe sees EOF at once; the TLS side
 * gets close_notify and up to CLOSE_GRACE_MS to drain. status (TS_OK for
 * an orderly end) is what a dialer's probe callback learns. */
static void tunnel_close(struct tunnel *tn, int status)
{
    if (tn->state == T_CLOSING)
        return;
    tn->state = T_CLOSING;
    tn->status = status;
    if (tn->inner_open && !uv_is_closing((uv_handle_t *)&tn->inner))
        uv_close((uv_handle_t *)&tn->inner, tunnel_handle_closed);
    uv_read_stop((uv_stream_t *)&tn->tcp);
    if (tn->tls && status == TS_OK) {
        ts_tls_shutdown(tn->tls);
        flush_tls(tn);
    }
    if (tn->tcp_queued == 0 || status != TS_OK) {
        tunnel_close_handles(tn);
        return;
    }
    uv_timer_start(&tn->timer, on_grace_timeout, CLOSE_GRACE_MS, 0);
}

/* ---- writes ---------------------------------------------------------- */

static void on_inner_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void on_tcp_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    buf->base = malloc(READ_CHUNK);
    buf->len = buf->base ? READ_CHUNK : 0;
}

static void on_write(uv_write_t *w, int status)
{
    struct wreq *r = (struct wreq *)w;
    struct tunnel *tn = r->tn;
    if (r->to_tcp)
        tn->tcp_queued -= r->len;
    else
        tn->inner_queued -= r->len;
    int to_tcp = r->to_tcp;
    free(r);
    if (status < 0) {
        if (status != UV_ECANCELED)
            tunnel_close(tn, TS_E_IO);
        return;
    }
    if (tn->state == T_CLOSING) {
        if (to_tcp && tn->tcp_queued == 0 && !uv_is_closing((uv_handle_t *)&tn->tcp))
            tunnel_close_handles(tn);
        return;
    }
    if (to_tcp && tn->inner_paused && tn->tcp_queued < QUEUE_LOW) {
        tn->inner_paused = 0;
        uv_read_start((uv_stream_t *)&tn->inner, alloc_cb, on_inner_read);
    }
    if (!to_tcp && tn->tcp_paused && tn->inner_queued < QUEUE_LOW) {
        tn->tcp_paused = 0;
        uv_read_start((uv_stream_t *)&tn->tcp, alloc_cb, on_tcp_read);
    }
}

static int queue_write(struct tunnel *tn, int to_tcp, const void *data, size_t len)
{
    struct wreq *r = malloc(sizeof(*r) + len);
    if (!r)
        return TS_E_NOMEM;
    r->tn = tn;
    r->len = len;
    r->to_tcp = to_tcp;
    memcpy(r->data, data, len);
    uv_buf_t b = uv_buf_init(r->data, (unsigned)len);
    uv_stream_t *s = to_tcp ? (uv_stream_t *)&tn->tcp : (uv_stream_t *)&tn->inner;
    int rc = uv_write(&r->w, s, &b, 1, on_write);
    if (rc < 0) {
        free(r);
        return TS_E_IO;
    }
    if (to_tcp) {
        tn->tcp_queued += len;
        tn->tcp_sent += len;
        if (tn->inner_open && !tn->inner_paused && tn->tcp_queued > TS_RAFT_TLS_QUEUE_HIGH) {
            tn->inner_paused = 1;
            uv_read_stop((uv_stream_t *)&tn->inner);
        }
    } else {
        tn->inner_queued += len;
        if (!tn->tcp_paused && tn->inner_queued > TS_RAFT_TLS_QUEUE_HIGH) {
            tn->tcp_paused = 1;
            uv_read_stop((uv_stream_t *)&tn->tcp);
        }
    }
    return TS_OK;
}

/* Every TLS call may produce ciphertext: this goes after each one. */
static void flush_tls(struct tunnel *tn)
{
    char buf[READ_CHUNK];
    while (ts_tls_pending(tn->tls) > 0) {
        size_t n = ts_tls_take(tn->tls, buf, sizeof(buf));
        if (n == 0)
            break;
        if (uv_is_closing((uv_handle_t *)&tn->tcp) || queue_write(tn, 1, buf, n) != TS_OK) {
            tunnel_close(tn, TS_E_IO);
            return;
        }
    }
}

static int tls_send(struct tunnel *tn, const void *data, size_t len)
{
    int rc = ts_tls_write(tn->tls, data, len);
    flush_tls(tn);
    return rc;
}

/* ---- the pipe to raft -------------------------------------------------- */

static void on_inner_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct tunnel *tn = s->data;
    if (nread > 0 && tn->state == T_OPEN) {
        if (tls_send(tn, buf->base, (size_t)nread) != TS_OK)
            tunnel_close(tn, TS_E_TLS);
    } else if (nread < 0) {
        /* raft closed its stream (or the pipe broke): end the connection. */
        tunnel_close(tn, TS_OK);
    }
    free(buf->base);
}

/* Makes the socketpair; *stream is raft's end, raft_malloc'd. */
static int open_pipe(struct tunnel *tn, uv_stream_t **stream)
{
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0)
        return TS_E_IO;
    uv_pipe_t *theirs = raft_malloc(sizeof(*theirs));
    if (!theirs) {
        close(fds[0]);
        close(fds[1]);
        return TS_E_NOMEM;
    }
    uv_loop_t *loop = tn->tr->loop;
    uv_pipe_init(loop, &tn->inner, 0);
    tn->inner.data = tn;
    tn->inner_open = 1;
    tn->handles++;
    uv_pipe_init(loop, theirs, 0);
    /* uv_pipe_open fails only on a bad descriptor; tunnel_close closes ours. */
    int bad_ours = uv_pipe_open(&tn->inner, fds[0]) != 0;
    if (bad_ours || uv_pipe_open(theirs, fds[1]) != 0) {
        if (bad_ours)
            close(fds[0]);
        close(fds[1]);
        uv_close((uv_handle_t *)theirs, (uv_close_cb)raft_free);
        return TS_E_IO;
    }
    uv_read_start((uv_stream_t *)&tn->inner, alloc_cb, on_inner_read);
    *stream = (uv_stream_t *)theirs;
    return TS_OK;
}

/* ---- the TLS side ------------------------------------------------------ */

static int send_preamble(struct tunnel *tn)
{
    struct rtls *tr = tn->tr;
    size_t alen = strlen(tr->address);
    uint8_t hdr[HDR_LEN];
    ts_store_le64(hdr, MAGIC_HELLO);
    ts_store_le64(hdr + 8, (uint64_t)tn->kind);
    ts_store_le64(hdr + 16, tr->id);
    ts_store_le64(hdr + 24, alen);
    int rc = ts_tls_write(tn->tls, hdr, sizeof(hdr));
    if (rc == TS_OK)
        rc = ts_tls_write(tn->tls, tr->address, alen);
    flush_tls(tn);
    return rc;
}

/* The dialer got the ack: the listener accepted our certificate and
 * preamble. */
static void dialer_open(struct tunnel *tn)
{
    uv_timer_stop(&tn->timer);
    if (tn->kind == KIND_PROBE) {
        tunnel_close(tn, TS_OK); /* probe_cb gets TS_OK when the tunnel is freed */
        return;
    }
    uv_stream_t *stream;
    if (open_pipe(tn, &stream) != TS_OK) {
        tunnel_close(tn, TS_E_IO);
        return;
    }
    tn->state = T_OPEN;
    raft_uv_connect_cb cb = tn->connect_cb;
    tn->connect_cb = NULL;
    cb(tn->req, stream, 0);
}

static void listener_open(struct tunnel *tn)
{
    struct rtls *tr = tn->tr;
    uint8_t ack[ACK_LEN];
    ts_store_le64(ack, MAGIC_ACK);
    if (tls_send(tn, ack, sizeof(ack)) != TS_OK) {
        tunnel_close(tn, TS_E_TLS);
        return;
    }
    if (tn->kind == KIND_PROBE) {
        /* the dialer hangs up once it has the ack; the timer bounds that */
        TS_DEBUG("event=raft_probe_in peer=%s id=%llu", tn->peer, (unsigned long long)tn->peer_id);
        tn->state = T_OPEN;
        uv_timer_start(&tn->timer, on_grace_timeout, CLOSE_GRACE_MS, 0);
        return;
    }
    uv_timer_stop(&tn->timer);
    uv_stream_t *stream;
    if (open_pipe(tn, &stream) != TS_OK) {
        tunnel_close(tn, TS_E_IO);
        return;
    }
    tn->state = T_OPEN;
    TS_DEBUG("event=raft_conn_in peer=%s id=%llu addr=%s", tn->peer,
             (unsigned long long)tn->peer_id, tn->peer_addr);
    tr->accept_cb(tr->t, tn->peer_id, tn->peer_addr, stream);
}

/* Consumes preamble bytes from p; returns how many were used, or -1 after
 * closing the tunnel on a bad preamble. */
static long take_preamble(struct tunnel *tn, const uint8_t *p, size_t n)
{
    size_t used = 0;
    if (tn->outgoing) {
        size_t want = ACK_LEN - tn->hdr_got;
        size_t k = n < want ? n : want;
        memcpy(tn->hdr + tn->hdr_got, p, k);
        tn->hdr_got += k;
        if (tn->hdr_got == ACK_LEN) {
            if (ts_load_le64(tn->hdr) != MAGIC_ACK) {
                TS_WARN("event=raft_bad_ack peer=%s", tn->peer);
                tunnel_close(tn, TS_E_IO);
                return -1;
            }
            dialer_open(tn);
        }
        return (long)k;
    }
    if (tn->hdr_got < HDR_LEN) {
        size_t want = HDR_LEN - tn->hdr_got;
        size_t k = n < want ? n : want;
        memcpy(tn->hdr + tn->hdr_got, p, k);
        tn->hdr_got += k;
        used += k;
        if (tn->hdr_got < HDR_LEN)
            return (long)used;
        uint64_t kind = ts_load_le64(tn->hdr + 8);
        tn->peer_id = ts_load_le64(tn->hdr + 16);
        tn->addr_len = ts_load_le64(tn->hdr + 24);
        if (ts_load_le64(tn->hdr) != MAGIC_HELLO || (kind != KIND_RAFT && kind != KIND_PROBE) ||
            tn->peer_id == 0 || tn->addr_len == 0 || tn->addr_len > TS_RAFT_TLS_ADDR_MAX) {
            TS_WARN("event=raft_bad_preamble peer=%s", tn->peer);
            tunnel_close(tn, TS_E_IO);
            return -1;
        }
        tn->kind = (int)kind;
        tn->peer_addr = calloc(1, tn->addr_len + 1);
        if (!tn->peer_addr) {
            tunnel_close(tn, TS_E_NOMEM);
            return -1;
        }
    }
    size_t want = tn->addr_len - tn->addr_got;
    size_t k = n - used < want ? n - used : want;
    memcpy(tn->peer_addr + tn->addr_got, p + used, k);
    tn->addr_got += k;
    used += k;
    if (tn->addr_got == tn->addr_len) {
        if (memchr(tn->peer_addr, '\0', tn->addr_len) ||
            ts_raft_tls_split_address(tn->peer_addr, NULL, 0, NULL, 0) != TS_OK) {
            TS_WARN("event=raft_bad_preamble peer=%s", tn->peer);
            tunnel_close(tn, TS_E_IO);
            return -1;
        }
        listener_open(tn);
    }
    return (long)used;
}

static void take_plain(struct tunnel *tn, const uint8_t *p, size_t n)
{
    while (n > 0 && tn->state != T_CLOSING) {
        if (tn->state == T_OPEN) {
            if (tn->kind == KIND_PROBE)
                return; /* a probe carries nothing after the ack */
            if (queue_write(tn, 0, p, n) != TS_OK)
                tunnel_close(tn, TS_E_IO);
            return;
        }
        long used = take_preamble(tn, p, n);
        if (used < 0)
            return;
        p += used;
        n -= (size_t)used;
    }
}

static void log_tls_failure(struct tunnel *tn)
{
    char why[256], q[300];
    TS_WARN("event=raft_tls_failed peer=%s dir=%s reason=%s", tn->peer, tn->outgoing ? "out" : "in",
            ts_log_quote(ts_tls_strerror(tn->tls, why, sizeof(why)), q, sizeof(q)));
}

/* Drives the engine after input arrived (or, for a dialer, to start). */
static void pump(struct tunnel *tn)
{
    if (tn->state == T_HANDSHAKE) {
        int rc = ts_tls_handshake(tn->tls);
        if (rc != TS_OK && rc != TS_E_AGAIN && !tn->outgoing && tn->tcp_sent == 0) {
            /* Not even a ClientHello (a plain TCP peer): it gets no byte,
             * not even an alert. */
            log_tls_failure(tn);
            tunnel_close(tn, TS_E_TLS);
            return;
        }
        flush_tls(tn);
        if (tn->state == T_CLOSING)
            return;
        if (rc == TS_E_AGAIN)
            return;
        if (rc != TS_OK) {
            log_tls_failure(tn);
            tunnel_close(tn, TS_E_TLS);
            return;
        }
        tn->state = T_PREAMBLE;
        if (tn->outgoing && send_preamble(tn) != TS_OK) {
            tunnel_close(tn, TS_E_TLS);
            return;
        }
    }
    uint8_t buf[READ_CHUNK];
    while (tn->state != T_CLOSING) {
        size_t n;
        int rc = ts_tls_read(tn->tls, buf, sizeof(buf), &n);
        flush_tls(tn);
        if (rc == TS_OK) {
            take_plain(tn, buf, n);
            continue;
        }
        if (rc == TS_E_AGAIN)
            break;
        if (rc == TS_E_CLOSED) {
            tunnel_close(tn, tn->state == T_OPEN ? TS_OK : TS_E_IO);
        } else {
            /* TLS 1.3: a listener refusing our certificate says so after
             * our side considered the handshake done. */
            log_tls_failure(tn);
            tunnel_close(tn, TS_E_TLS);
        }
        break;
    }
}

static void on_tcp_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct tunnel *tn = s->data;
    if (nread > 0 && tn->state != T_CLOSING) {
        if (ts_tls_feed(tn->tls, buf->base, (size_t)nread) != TS_OK)
            tunnel_close(tn, TS_E_NOMEM);
        else
            pump(tn);
    } else if (nread < 0 && tn->state != T_CLOSING) {
        tunnel_close(tn, tn->state == T_OPEN && nread == UV_EOF ? TS_OK : TS_E_IO);
    }
    free(buf->base);
}

static void on_handshake_timeout(uv_timer_t *t)
{
    struct tunnel *tn = t->data;
    if (tn->state == T_CLOSING) {
        tunnel_close_handles(tn);
        return;
    }
    if (tn->state == T_OPEN) { /* a probe's listener side */
        tunnel_close(tn, TS_OK);
        return;
    }
    TS_WARN("event=raft_handshake_timeout peer=%s dir=%s", tn->peer, tn->outgoing ? "out" : "in");
    tunnel_close(tn, TS_E_TIMEOUT);
}

static struct tunnel *tunnel_new(struct rtls *tr, int outgoing)
{
    struct tunnel *tn = calloc(1, sizeof(*tn));
    if (!tn)
        return NULL;
    tn->tr = tr;
    tn->outgoing = outgoing;
    tn->state = T_HANDSHAKE;
    tn->status = TS_E_IO;
    snprintf(tn->peer, sizeof(tn->peer), "?");
    uv_tcp_init(tr->loop, &tn->tcp);
    uv_timer_init(tr->loop, &tn->timer);
    tn->tcp.data = tn->timer.data = tn;
    tn->handles = 2;
    tn->next = tr->tunnels;
    if (tr->tunnels)
        tr->tunnels->prev = tn;
    tr->tunnels = tn;
    uv_timer_start(&tn->timer, on_handshake_timeout, tr->handshake_ms, 0);
    return tn;
}

/* ---- listener ---------------------------------------------------------- */

static void on_incoming(uv_stream_t *listener, int status)
{
    struct rtls *tr = listener->data;
    if (status < 0 || tr->closing)
        return;
    struct tunnel *tn = tunnel_new(tr, 0);
    if (!tn)
        return;
    if (uv_accept(listener, (uv_stream_t *)&tn->tcp) != 0 ||
        ts_tls_new_server(tr->server_ctx, &tn->tls) != TS_OK) {
        tunnel_close(tn, TS_E_IO);
        return;
    }
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (uv_tcp_getpeername(&tn->tcp, (struct sockaddr *)&ss, &len) == 0)
        ts_addr_format((struct sockaddr *)&ss, tn->peer, sizeof(tn->peer));
    uv_tcp_nodelay(&tn->tcp, 1);
    uv_read_start((uv_stream_t *)&tn->tcp, alloc_cb, on_tcp_read);
}

static int parse_raft_addr(const char *address, struct sockaddr_storage *ss, char *host,
                           size_t host_size)
{
    char raft[TS_RAFT_TLS_ADDR_MAX + 1];
    uint16_t port;
    if (ts_raft_tls_split_address(address, raft, sizeof(raft), NULL, 0) != TS_OK ||
        ts_addr_parse(raft, host, host_size, &port) != TS_OK ||
        ts_addr_numeric(host, port, ss) != TS_OK)
        return TS_E_INVALID_ARGUMENT;
    return TS_OK;
}

static int t_init(struct raft_uv_transport *t, raft_id id, const char *address)
{
    struct rtls *tr = t->impl;
    char *a = strdup(address);
    if (!a)
        return RAFT_NOMEM;
    free(tr->address);
    tr->address = a;
    tr->id = id;
    return 0;
}

static int t_listen(struct raft_uv_transport *t, raft_uv_accept_cb cb)
{
    struct rtls *tr = t->impl;
    struct sockaddr_storage ss;
    char host[256];
    if (parse_raft_addr(tr->address, &ss, host, sizeof(host)) != TS_OK) {
        snprintf(t->errmsg, sizeof(t->errmsg), "bad raft address %s", tr->address);
        return RAFT_INVALID;
    }
    tr->accept_cb = cb;
    uv_tcp_init(tr->loop, &tr->listener);
    tr->listener.data = tr;
    tr->listener_open = 1;
    int rc = uv_tcp_bind(&tr->listener, (struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&tr->listener, 128, on_incoming);
    if (rc != 0) {
        snprintf(t->errmsg, sizeof(t->errmsg), "listen on %s: %s", tr->address, uv_strerror(rc));
        TS_ERROR("event=raft_listen_failed addr=%s error=%s", tr->address, uv_strerror(rc));
        return RAFT_IOERR;
    }
    tr->listening = 1;
    TS_INFO("event=raft_listen addr=%s tls=mutual", tr->address);
    return 0;
}

static void on_connected(uv_connect_t *c, int status)
{
    struct tunnel *tn = c->data;
    if (tn->state == T_CLOSING)
        return;
    if (status < 0) {
        TS_DEBUG("event=raft_connect_failed peer=%s error=%s", tn->peer, uv_strerror(status));
        tunnel_close(tn, TS_E_IO);
        return;
    }
    uv_tcp_nodelay(&tn->tcp, 1);
    uv_read_start((uv_stream_t *)&tn->tcp, alloc_cb, on_tcp_read);
    pump(tn); /* the ClientHello */
}

static int dial(struct rtls *tr, const char *address, int kind, struct tunnel **out)
{
    struct sockaddr_storage ss;
    char host[256];
    if (parse_raft_addr(address, &ss, host, sizeof(host)) != TS_OK)
        return TS_E_INVALID_ARGUMENT;
    struct tunnel *tn = tunnel_new(tr, 1);
    if (!tn)
        return TS_E_NOMEM;
    tn->kind = kind;
    char raft[TS_RAFT_TLS_ADDR_MAX + 1];
    ts_raft_tls_split_address(address, raft, sizeof(raft), NULL, 0);
    snprintf(tn->peer, sizeof(tn->peer), "%.63s", raft);
    tn->creq.data = tn;
    /* The session key is the raft address: a reconnect resumes. */
    if (ts_tls_new_client(tr->client_ctx, host, raft, &tn->tls) != TS_OK ||
        uv_tcp_connect(&tn->creq, &tn->tcp, (struct sockaddr *)&ss, on_connected) != 0) {
        tunnel_close(tn, TS_E_IO);
        *out = tn; /* its callback still runs, from the loop */
        return TS_OK;
    }
    *out = tn;
    return TS_OK;
}

static int t_connect(struct raft_uv_transport *t, struct raft_uv_connect *req, raft_id id,
                     const char *address, raft_uv_connect_cb cb)
{
    struct rtls *tr = t->impl;
    if (tr->closing)
        return RAFT_CANCELED;
    struct tunnel *tn;
    int rc = dial(tr, address, KIND_RAFT, &tn);
    if (rc == TS_E_NOMEM)
        return RAFT_NOMEM;
    if (rc != TS_OK) {
        snprintf(t->errmsg, sizeof(t->errmsg), "bad raft address %s", address);
        return RAFT_NOCONNECTION;
    }
    tn->req = req;
    tn->connect_cb = cb;
    tn->dial_id = id;
    return 0;
}

static void on_listener_closed(uv_handle_t *h)
{
    struct rtls *tr = h->data;
    tr->listener_open = 0;
    rtls_maybe_done(tr);
}

static void on_closer_closed(uv_handle_t *h)
{
    struct rtls *tr = h->data;
    tr->closer_open = 0;
    rtls_maybe_done(tr);
}

static void rtls_close(struct rtls *tr, raft_uv_transport_close_cb cb)
{
    tr->closing = 1;
    tr->close_cb = cb;
    if (tr->listener_open && !uv_is_closing((uv_handle_t *)&tr->listener))
        uv_close((uv_handle_t *)&tr->listener, on_listener_closed);
    for (struct tunnel *tn = tr->tunnels; tn; tn = tn->next) {
        tunnel_close(tn, TS_E_UNAVAILABLE);
        tunnel_close_handles(tn);
    }
    /* Even with nothing left to wait for, cb must not run from inside
     * close: a handle's close callback comes from the loop. */
    uv_timer_init(tr->loop, &tr->closer);
    tr->closer.data = tr;
    tr->closer_open = 1;
    uv_close((uv_handle_t *)&tr->closer, on_closer_closed);
}

static void t_close(struct raft_uv_transport *t, raft_uv_transport_close_cb cb)
{
    rtls_close(t->impl, cb);
}

/* ---- public ------------------------------------------------------------ */

int ts_raft_tls_init(struct raft_uv_transport *t, uv_loop_t *loop,
                     const struct ts_raft_tls_config *cfg)
{
    memset(t, 0, sizeof(*t));
    struct rtls *tr = calloc(1, sizeof(*tr));
    if (!tr)
        return TS_E_NOMEM;
    tr->t = t;
    tr->loop = loop;
    tr->handshake_ms = cfg->handshake_ms ? cfg->handshake_ms : DEFAULT_HANDSHAKE_MS;
    int rc = ts_tls_server_ctx_mtls(cfg->cert_file, cfg->key_file, cfg->ca_file, &tr->server_ctx);
    if (rc == TS_OK)
        rc = ts_tls_client_ctx(cfg->ca_file, cfg->cert_file, cfg->key_file, &tr->client_ctx);
    if (rc != TS_OK) {
        rtls_free(tr);
        return rc;
    }
    t->impl = tr;
    t->init = t_init;
    t->listen = t_listen;
    t->connect = t_connect;
    t->close = t_close;
    return TS_OK;
}

void ts_raft_tls_close(struct raft_uv_transport *t)
{
    struct rtls *tr = t->impl;
    if (!tr)
        return;
    t->impl = NULL;
    tr->released = 1;
    if (!tr->closing && !rtls_idle(tr))
        rtls_close(tr, NULL);
    else if (rtls_idle(tr))
        rtls_free(tr);
}

int ts_raft_tls_probe(struct raft_uv_transport *t, const char *address, ts_raft_tls_probe_cb cb,
                      void *arg)
{
    struct rtls *tr = t->impl;
    if (!tr || tr->closing)
        return TS_E_UNAVAILABLE;
    struct tunnel *tn;
    int rc = dial(tr, address, KIND_PROBE, &tn);
    if (rc != TS_OK)
        return rc;
    tn->probe_cb = cb;
    tn->probe_arg = arg;
    return TS_OK;
}
