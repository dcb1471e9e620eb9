/*
 * ts_web_http: h2o on the caller's loop, with connection caps and a shutdown
 * h2o 2.2 does not offer (see ts_web_http.h for the library choice).
 *
 * Connections: each accepted socket is a struct conn whose first member is
 * the uv_tcp_t h2o reads and writes. h2o closes the handle when it is done
 * with the connection (or a stream, once the connection is its own: see
 * ts_web_stream_start) and calls on_conn_closed, which is the one place a
 * conn is unlinked, uncounted and freed.
 */
#include "ts_web_http.h"

#include <h2o/http1.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "ts_addr.h"
#include "ts_err.h"
#include "ts_web_fan.h"

#define ADDR_BUCKETS 1024
#define SOCK_BUCKETS 8192
#define H2O_HANDLES_MAX 32
/* Bytes a streaming response's client may send before it counts as gone
 * (nothing is expected: a browser sends its next request on another
 * connection while an event stream is open). */
#define STREAM_INPUT_MAX 4096
#define STREAM_IOV_MAX 32

struct addr_count {
    struct addr_count *next;
    unsigned char addr[16];
    unsigned n;
};

struct conn {
    uv_tcp_t tcp; /* first: h2o's close callback gets its address */
    struct ts_web_http *s;
    struct addr_count *ac;
    struct conn *prev, *next;
    h2o_socket_t *sock;                  /* h2o's, over tcp */
    struct conn *s_next;                 /* in by_sock */
    const struct ts_web_stream_cbs *cbs; /* a stream (ts_web_stream_start) */
    void *cb_arg;
    int owned; /* the stream has the socket: h2o's request is gone */
    int gone_told;
    unsigned shard; /* the stream's delivery thread (ts_web_fan) */
    int in_fan;     /* a write queued there: the socket stays open until it is reported */
    const struct ts_web_stream_cbs *closed_cbs; /* closed with in_fan: released follows */
};

struct ts_web_http {
    uv_loop_t *loop;
    h2o_globalconf_t conf;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    uv_tcp_t listener;
    uint16_t port;
    struct ts_web_http_limits lim;
    ts_web_http_handler handler;
    void *arg;
    struct conn *conns;
    unsigned n_conns;
    struct addr_count *by_addr[ADDR_BUCKETS];
    struct conn *by_sock[SOCK_BUCKETS];
    uv_handle_t *h2o_handles[H2O_HANDLES_MAX]; /* made by h2o_context_init */
    size_t n_h2o_handles;
    int ctx_ready, listening, closing, released;
    SSL_CTX *ssl_ctx;       /* NULL: plain HTTP */
    struct ts_web_fan *fan; /* delivery threads for streams; NULL: the loop writes */
    unsigned next_shard;
};

struct handler {
    h2o_handler_t super;
    struct ts_web_http *s;
};

static void on_fan_done(void *arg, const struct iovec *iov, size_t n, size_t written);

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    struct ts_web_http *s = ((struct handler *)self)->s;
    if (s->closing) {
        ts_web_http_send(req, 503, "text/plain; charset=utf-8", "shutting down\n", 14);
        return 0;
    }
    return s->handler(s->arg, req);
}

/* The address a connection is counted under: IPv4 (mapped or not) and IPv6
 * addresses as 16 bytes; anything else (unix sockets) counts as one. */
static void addr_key(const struct sockaddr_storage *ss, unsigned char out[16])
{
    memset(out, 0, 16);
    if (ss->ss_family == AF_INET) {
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &((const struct sockaddr_in *)ss)->sin_addr, 4);
    } else if (ss->ss_family == AF_INET6) {
        memcpy(out, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
    }
}

static size_t addr_hash(const unsigned char a[16])
{
    size_t h = 2166136261u;
    for (int i = 0; i < 16; i++)
        h = (h ^ a[i]) * 16777619u;
    return h % ADDR_BUCKETS;
}

static struct addr_count *addr_find(struct ts_web_http *s, const unsigned char a[16], int create)
{
    size_t b = addr_hash(a);
    for (struct addr_count *e = s->by_addr[b]; e; e = e->next)
        if (memcmp(e->addr, a, 16) == 0)
            return e;
    if (!create)
        return NULL;
    struct addr_count *e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    memcpy(e->addr, a, 16);
    e->next = s->by_addr[b];
    s->by_addr[b] = e;
    return e;
}

static void addr_drop(struct ts_web_http *s, struct addr_count *ac)
{
    if (--ac->n)
        return;
    struct addr_count **pp = &s->by_addr[addr_hash(ac->addr)];
    while (*pp != ac)
        pp = &(*pp)->next;
    *pp = ac->next;
    free(ac);
}

static size_t sock_hash(const h2o_socket_t *sock)
{
    return (size_t)(((uintptr_t)sock >> 4) * 0x9E3779B97F4A7C15ull >> 40) % SOCK_BUCKETS;
}

static struct conn *conn_by_sock(struct ts_web_http *s, const h2o_socket_t *sock)
{
    for (struct conn *c = s->by_sock[sock_hash(sock)]; c; c = c->s_next)
        if (c->sock == sock)
            return c;
    return NULL;
}

static void release_loop(struct ts_web_http *s)
{
    if (s->released || !s->closing || s->listening || s->n_conns)
        return;
    s->released = 1;
    for (size_t i = 0; i < s->n_h2o_handles; i++)
        uv_unref(s->h2o_handles[i]);
}

static void on_conn_closed(uv_handle_t *h)
{
    struct conn *c = (struct conn *)h;
    struct ts_web_http *s = c->s;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->n_conns--;
    if (c->ac)
        addr_drop(s, c->ac);
    struct conn **pp = &s->by_sock[sock_hash(c->sock)];
    while (*pp && *pp != c)
        pp = &(*pp)->s_next;
    if (*pp)
        *pp = c->s_next;
    free(c);
    release_loop(s);
}

static void on_refused_closed(uv_handle_t *h)
{
    free(h);
}

static void on_accept(uv_stream_t *listener, int status)
{
    struct ts_web_http *s = listener->data;
    if (status != 0 || s->closing)
        return;
    struct conn *c = calloc(1, sizeof(*c));
    if (!c)
        return;
    uv_tcp_init(s->loop, &c->tcp);
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, on_refused_closed);
        return;
    }
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    memset(&ss, 0, sizeof(ss));
    uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len);
    unsigned char key[16];
    addr_key(&ss, key);
    struct addr_count *ac = addr_find(s, key, 0);
    /* Over a cap: close without a word. A 503 would cost a write to the
     * very peer that is flooding us. */
    if (s->n_conns >= s->lim.max_conns || (ac && ac->n >= s->lim.max_conns_per_addr) ||
        (!ac && !(ac = addr_find(s, key, 1)))) {
        uv_close((uv_handle_t *)&c->tcp, on_refused_closed);
        return;
    }
    ac->n++;
    c->ac = ac;
    c->s = s;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->n_conns++;
    /* Small writes at once: an event stream is a series of them, and Nagle
     * would hold each behind the client's delayed ACK of the one before. */
    uv_tcp_nodelay(&c->tcp, 1);
    c->sock = h2o_uv_socket_create((uv_stream_t *)&c->tcp, on_conn_closed);
    size_t b = sock_hash(c->sock);
    c->s_next = s->by_sock[b];
    s->by_sock[b] = c;
    h2o_accept(&s->accept_ctx, c->sock);
}

struct walk {
    uv_handle_t **v;
    size_t n, max;
    uv_handle_t *const *before;
    size_t n_before;
};

static void collect(uv_handle_t *h, void *arg)
{
    struct walk *w = arg;
    for (size_t i = 0; i < w->n_before; i++)
        if (w->before[i] == h)
            return;
    if (w->n < w->max)
        w->v[w->n++] = h;
}

/* The listener's TLS context from PEM files, or NULL (stderr says why). */
static SSL_CTX *tls_context(const char *cert, const char *key)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    ERR_clear_error();
    /* TLS 1.2 only: h2o 2.2.5 predates TLS 1.3, and with OpenSSL 3's 1.3 a
     * connection its client closed right after the handshake was never
     * closed by h2o (an fd held for good, and a loop that never ends). */
    if (!ctx || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        char why[256];
        ERR_error_string_n(ERR_get_error(), why, sizeof(why));
        fprintf(stderr, "error: web: cannot use --cert %s --key %s: %s\n", cert, key, why);
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    h2o_ssl_register_alpn_protocols(ctx, h2o_http2_alpn_protocols);
    return ctx;
}

int ts_web_http_new(uv_loop_t *loop, const char *listen, const struct ts_web_http_limits *lim,
                    ts_web_http_handler handler, void *arg, struct ts_web_http **out)
{
    *out = NULL;
    char host[256];
    uint16_t port = 0;
    struct sockaddr_storage ss;
    if (ts_addr_parse(listen, host, sizeof(host), &port) != TS_OK ||
        ts_addr_numeric(host, port, &ss) != TS_OK)
        return TS_E_CONFIG;
    if (!lim->cert_file != !lim->key_file) {
        fprintf(stderr, "error: web: --cert and --key go together\n");
        return TS_E_CONFIG;
    }
    SSL_CTX *ssl_ctx = NULL;
    if (lim->cert_file && !(ssl_ctx = tls_context(lim->cert_file, lim->key_file)))
        return TS_E_CONFIG;
    struct ts_web_http *s = calloc(1, sizeof(*s));
    if (!s) {
        SSL_CTX_free(ssl_ctx);
        return TS_E_NOMEM;
    }
    s->ssl_ctx = ssl_ctx;
    s->loop = loop;
    s->handler = handler;
    s->arg = arg;
    s->lim = *lim;
    if (!s->lim.max_body)
        s->lim.max_body = (size_t)64 * 1024;
    if (!s->lim.req_timeout_ms)
        s->lim.req_timeout_ms = 10000;
    if (!s->lim.max_conns)
        s->lim.max_conns = 10000;
    if (!s->lim.max_conns_per_addr)
        s->lim.max_conns_per_addr = 64;

    h2o_config_init(&s->conf);
    s->conf.max_request_entity_size = s->lim.max_body;
    s->conf.http1.req_timeout = s->lim.req_timeout_ms;
    s->conf.handshake_timeout = s->lim.req_timeout_ms;
    h2o_hostconf_t *host_conf =
        h2o_config_register_host(&s->conf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host_conf, "/", 0);
    struct handler *h = (struct handler *)h2o_create_handler(path, sizeof(*h));
    h->super.on_req = on_req;
    h->s = s;
    if (s->lim.gzip) {
        h2o_compress_args_t ca = {
            .min_size = 256, .gzip = {.quality = 1}, .brotli = {.quality = -1}};
        h2o_compress_register(path, &ca);
    }

    /* Which loop handles are h2o's: those h2o_context_init adds. */
    uv_handle_t *before[H2O_HANDLES_MAX * 4];
    struct walk w0 = {.v = before, .max = (size_t)H2O_HANDLES_MAX * 4};
    uv_walk(loop, collect, &w0);
    h2o_context_init(&s->ctx, loop, &s->conf);
    s->ctx_ready = 1;
    struct walk w1 = {
        .v = s->h2o_handles, .max = H2O_HANDLES_MAX, .before = before, .n_before = w0.n};
    uv_walk(loop, collect, &w1);
    s->n_h2o_handles = w1.n;
    s->accept_ctx.ctx = &s->ctx;
    s->accept_ctx.hosts = s->conf.hosts;
    s->accept_ctx.ssl_ctx = s->ssl_ctx;

    unsigned threads =
        s->lim.fanout_threads < 0 ? ts_web_fan_default_threads() : (unsigned)s->lim.fanout_threads;
    /* TLS streams are written by h2o on the loop: no delivery threads. */
    if (threads && !s->ssl_ctx &&
        ts_web_fan_new(loop, threads, !s->lim.fanout_sendmsg, on_fan_done, &s->fan) != TS_OK)
        fprintf(stderr, "warning: web: no delivery threads (%u asked): the loop writes\n", threads);

    uv_tcp_init(loop, &s->listener);
    s->listener.data = s;
    s->listening = 1;
    int r = uv_tcp_bind(&s->listener, (const struct sockaddr *)&ss, 0);
    if (r == 0)
        r = uv_listen((uv_stream_t *)&s->listener, 511, on_accept);
    if (r != 0) {
        fprintf(stderr, "error: web: cannot listen on %s: %s\n", listen, uv_strerror(r));
        ts_web_http_close(s);
        *out = s; /* the caller closes the loop, then frees */
        return TS_E_IO;
    }
    struct sockaddr_storage bound;
    int blen = sizeof(bound);
    if (uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &blen) == 0)
        s->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                    : ((struct sockaddr_in *)&bound)->sin_port);
    *out = s;
    return TS_OK;
}

uint16_t ts_web_http_port(const struct ts_web_http *s)
{
    return s->port;
}

unsigned ts_web_http_fanout_threads(const struct ts_web_http *s)
{
    return ts_web_fan_threads(s->fan);
}

unsigned ts_web_http_fanout_batched(const struct ts_web_http *s)
{
    return ts_web_fan_batched(s->fan);
}

unsigned ts_web_http_conns(const struct ts_web_http *s)
{
    return s->n_conns;
}

static void on_listener_closed(uv_handle_t *h)
{
    struct ts_web_http *s = h->data;
    s->listening = 0;
    release_loop(s);
}

void ts_web_http_close(struct ts_web_http *s)
{
    if (!s || s->closing)
        return;
    s->closing = 1;
    /* Not h2o_context_request_shutdown(): in 2.2 its HTTP/2 part links a
     * timer entry nothing unlinks before h2o_context_dispose() asserts
     * there is none. The shutdown(2) below ends keep-alive anyway. */
    uv_close((uv_handle_t *)&s->listener, on_listener_closed);
    /* The streams' last chunks, queued by the caller's close, go out before
     * the shutdowns below. */
    ts_web_fan_close(s->fan);
    for (struct conn *c = s->conns; c; c = c->next) {
        uv_os_fd_t fd;
        if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
            shutdown(fd, SHUT_RDWR);
    }
    release_loop(s);
}

void ts_web_http_free(struct ts_web_http *s)
{
    if (!s)
        return;
    ts_web_fan_free(s->fan);
    if (s->ctx_ready)
        h2o_context_dispose(&s->ctx);
    h2o_config_dispose(&s->conf);
    SSL_CTX_free(s->ssl_ctx);
    for (size_t b = 0; b < ADDR_BUCKETS; b++)
        while (s->by_addr[b]) {
            struct addr_count *e = s->by_addr[b];
            s->by_addr[b] = e->next;
            free(e);
        }
    free(s);
}

/* ---- streams: HTTP/1.1 responses taken over from h2o ---- */

static void stream_gone(struct conn *c)
{
    const struct ts_web_stream_cbs *cbs = c->cbs;
    if (cbs && !c->gone_told) {
        c->gone_told = 1;
        cbs->gone(c->cb_arg);
    }
}

static void on_stream_read(h2o_socket_t *sock, const char *err)
{
    struct conn *c = sock->data;
    if (!err && sock->input->size <= STREAM_INPUT_MAX)
        return; /* unexpected bytes, kept for nothing: the connection ends with the stream */
    h2o_socket_read_stop(sock);
    stream_gone(c);
}

static void on_stream_written(h2o_socket_t *sock, const char *err)
{
    struct conn *c = sock->data;
    if (err)
        stream_gone(c);
    else if (c->cbs)
        c->cbs->written(c->cb_arg);
}

/* Writes what a sendmsg of done bytes left of iov through h2o (all of it
 * after an error: h2o's write reports it). 1 when nothing was left, 0 when
 * on_stream_written follows. Through h2o (uv_write), a socket that is also
 * read for its close costs an epoll_ctl per write (libuv re-arms it when a
 * write queue drains) and a loop turn before the next one, so the direct
 * sendmsg comes first: a stream's write almost always goes out whole. */
static int write_rest(struct conn *c, const struct iovec *iov, size_t n, size_t done)
{
    h2o_iovec_t rest[STREAM_IOV_MAX];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (done >= iov[i].iov_len) {
            done -= iov[i].iov_len;
            continue;
        }
        rest[k++] = h2o_iovec_init((char *)iov[i].iov_base + done, iov[i].iov_len - done);
        done = 0;
    }
    if (!k)
        return 1;
    h2o_socket_write(c->sock, rest, k, on_stream_written);
    return 0;
}

/* A delivery thread made a stream's write (ts_web_fan_done). */
static void on_fan_done(void *arg, const struct iovec *iov, size_t n, size_t written)
{
    struct conn *c = arg;
    c->in_fan = 0;
    const struct ts_web_stream_cbs *closed = c->closed_cbs;
    if (closed) { /* closed meanwhile: the socket and the bytes are free to go now */
        void *cb_arg = c->cb_arg;
        c->closed_cbs = NULL;
        if (c->owned) {
            c->owned = 0;
            h2o_socket_close(c->sock);
        }
        closed->released(cb_arg);
        return;
    }
    if (write_rest(c, iov, n, written))
        c->cbs->written(c->cb_arg);
}

/* h2o wrote the head and freed the request (and its HTTP/1 connection):
 * the socket is the stream's from now on. */
static void on_upgraded(void *arg, h2o_socket_t *sock, size_t reqsize)
{
    (void)reqsize; /* the whole read buffer goes: nothing after the head is expected */
    struct conn *c = arg;
    if (!sock) {
        stream_gone(c); /* h2o closes the socket; c goes at its close */
        return;
    }
    c->owned = 1;
    sock->data = c;
    if (!c->cbs) { /* closed while the head was on its way */
        c->owned = 0;
        h2o_socket_close(sock);
        return;
    }
    if (sock->input->size)
        h2o_buffer_consume(&sock->input, sock->input->size);
    h2o_socket_read_start(sock, on_stream_read);
    c->cbs->written(c->cb_arg);
}

int ts_web_stream_start(h2o_req_t *req, h2o_iovec_t *first, size_t n,
                        const struct ts_web_stream_cbs *cbs, void *arg, struct ts_web_stream **out)
{
    *out = NULL;
    if (req->version != 0x101 || !req->conn->callbacks->get_socket)
        return TS_E_INVALID_ARGUMENT;
    h2o_socket_t *sock = req->conn->callbacks->get_socket(req->conn);
    struct ts_web_http *s = H2O_STRUCT_FROM_MEMBER(struct ts_web_http, ctx, req->conn->ctx);
    struct conn *c = sock ? conn_by_sock(s, sock) : NULL;
    if (!c || c->cbs)
        return TS_E_INVALID_ARGUMENT;
    c->cbs = cbs;
    c->cb_arg = arg;
    c->shard = s->next_shard++;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_TRANSFER_ENCODING, NULL,
                   H2O_STRLIT("chunked"));
    h2o_http1_upgrade(req, first, n, on_upgraded, c);
    *out = (struct ts_web_stream *)c;
    return TS_OK;
}

int ts_web_stream_write(struct ts_web_stream *st, const h2o_iovec_t *bufs, size_t n)
{
    struct conn *c = (struct conn *)st;
    struct iovec iov[STREAM_IOV_MAX];
    if (n > STREAM_IOV_MAX)
        n = STREAM_IOV_MAX; /* callers send at most SEND_BATCH + 1 (ts_web.c) */
    for (size_t i = 0; i < n; i++) {
        iov[i].iov_base = bufs[i].base;
        iov[i].iov_len = bufs[i].len;
    }
    if (c->sock->ssl)
        return write_rest(c, iov, n, 0);
    int fd = h2o_socket_get_fd(c->sock);
    if (c->s->fan && ts_web_fan_write(c->s->fan, c->shard, fd, iov, n, c) == TS_OK) {
        c->in_fan = 1;
        return 0;
    }
    /* Plain TCP on the loop: straight to the socket, the rest (if any)
     * through h2o. */
    ssize_t r =
        sendmsg(fd, &(struct msghdr){.msg_iov = iov, .msg_iovlen = n}, MSG_NOSIGNAL | MSG_DONTWAIT);
    return write_rest(c, iov, n, r > 0 ? (size_t)r : 0);
}

int ts_web_stream_close(struct ts_web_stream *st)
{
    struct conn *c = (struct conn *)st;
    if (!c)
        return 1;
    if (c->in_fan) { /* the delivery thread still writes: on_fan_done closes */
        if (c->cbs)
            c->closed_cbs = c->cbs;
        c->cbs = NULL;
        return 0;
    }
    c->cbs = NULL;
    if (c->owned) {
        c->owned = 0;
        h2o_socket_close(c->sock); /* c goes at its close (on_conn_closed) */
    }
    return 1;
}

static void on_hold_dispose(void *p)
{
    struct ts_web_http_hold **link = p;
    if (*link)
        (*link)->req = NULL;
}

struct ts_web_http_hold *ts_web_http_hold(h2o_req_t *req)
{
    struct ts_web_http_hold *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    struct ts_web_http_hold **link =
        h2o_mem_alloc_shared(&req->pool, sizeof(*link), on_hold_dispose);
    *link = h;
    h->req = req;
    h->link = link;
    return h;
}

void ts_web_http_release(struct ts_web_http_hold *h)
{
    if (!h)
        return;
    if (h->req)
        *(struct ts_web_http_hold **)h->link = NULL;
    free(h);
}

void ts_web_http_send(h2o_req_t *req, int status, const char *ctype, const char *body, size_t len)
{
    static h2o_generator_t gen = {NULL, NULL};
    req->res.status = status;
    req->res.reason = status == 200   ? "OK"
                      : status == 303 ? "See Other"
                      : status == 304 ? "Not Modified"
                      : status == 400 ? "Bad Request"
                      : status == 403 ? "Forbidden"
                      : status == 404 ? "Not Found"
                      : status == 405 ? "Method Not Allowed"
                      : status == 413 ? "Payload Too Large"
                      : status == 422 ? "Unprocessable Entity"
                      : status == 429 ? "Too Many Requests"
                      : status == 503 ? "Service Unavailable"
                                      : "Error";
    if (ctype)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, ctype,
                       strlen(ctype));
    h2o_iovec_t b = h2o_strdup(&req->pool, body ? body : "", len);
    req->res.content_length = len;
    h2o_start_response(req, &gen);
    int head = h2o_memis(req->input.method.base, req->input.method.len, H2O_STRLIT("HEAD"));
    h2o_send(req, &b, head || status == 304 ? 0 : 1, H2O_SEND_STATE_FINAL);
}

void ts_web_http_header(h2o_req_t *req, const char *name, const char *value)
{
    h2o_iovec_t n = h2o_strdup(&req->pool, name, SIZE_MAX);
    h2o_iovec_t v = h2o_strdup(&req->pool, value, SIZE_MAX);
    h2o_add_header_by_str(&req->pool, &req->res.headers, n.base, n.len, 0, NULL, v.base, v.len);
}

const char *ts_web_http_req_header(h2o_req_t *req, const char *name, size_t *len)
{
    ssize_t i = h2o_find_header_by_str(&req->headers, name, strlen(name), -1);
    if (i < 0)
        return NULL;
    *len = req->headers.entries[i].value.len;
    return req->headers.entries[i].value.base;
}
