/*
 * ts_conn: real loopback TLS on a libuv loop. A server and a client ts_conn
 * (or a raw TCP peer) exchange frames: many small ones, a 1 MiB one, a
 * paused reader and on_drain, input errors (oversized, truncated), a
 * plaintext peer, resumption on reconnect, the hard output cap, connect and
 * close corner cases. Every case ends with all handles closed and
 * uv_loop_close() == 0.
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "ts_check_main.h"
#include "ts_conn.h"
#include "ts_err.h"
#include "ts_frame.h"
#include "ts_log.h"
#include "ts_testcert.h"
#include "ts_tls.h"

struct peer {
    struct ts_conn *c;
    int opened, closed, close_err, errors, last_error, drains, frames, resumed;
    uint64_t next_nonce;
};

static struct {
    char dir[256];
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_timer_t guard, aux;
    uint16_t port;
    SSL_CTX *srv_ctx, *cli_ctx;
    struct ts_conn_cbs srv_cbs, cli_cbs;
    uint32_t srv_max, cli_max;
    struct peer srv, cli;
    int accepted;
    int closes_wanted; /* the world ends after this many on_close calls */
    int closes;
    int ending;
    int n;           /* per-test count */
    size_t body_len; /* per-test frame body size */
} W;

/* ---- frames ---- */

static void send_ping(struct ts_conn *c, uint64_t nonce)
{
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Ping p = THREADSYNC__PING__INIT;
    p.nonce = nonce;
    f.msg_case = THREADSYNC__FRAME__MSG_PING;
    f.ping = &p;
    ck_assert_int_eq(ts_conn_send_frame(c, &f), TS_OK);
}

static void send_pong(struct ts_conn *c, uint64_t nonce)
{
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Pong p = THREADSYNC__PONG__INIT;
    p.nonce = nonce;
    f.msg_case = THREADSYNC__FRAME__MSG_PONG;
    f.pong = &p;
    ck_assert_int_eq(ts_conn_send_frame(c, &f), TS_OK);
}

static char *make_body(size_t len, unsigned seed)
{
    char *b = malloc(len + 1);
    for (size_t i = 0; i < len; i++)
        b[i] = (char)('a' + (i * 7 + seed) % 26);
    b[len] = '\0';
    return b;
}

static int send_post(struct ts_conn *c, uint64_t id, size_t body_len)
{
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Post p = THREADSYNC__POST__INIT;
    p.request_id = id;
    p.body = make_body(body_len, (unsigned)id);
    f.msg_case = THREADSYNC__FRAME__MSG_POST;
    f.post = &p;
    int rc = ts_conn_send_frame(c, &f);
    free(p.body);
    return rc;
}

static void check_post(const Threadsync__Frame *f, uint64_t id, size_t body_len)
{
    ck_assert_int_eq(f->msg_case, THREADSYNC__FRAME__MSG_POST);
    ck_assert_uint_eq(f->post->request_id, id);
    ck_assert_uint_eq(strlen(f->post->body), body_len);
    char *want = make_body(body_len, (unsigned)id);
    ck_assert_mem_eq(f->post->body, want, body_len);
    free(want);
}

/* ---- the world ---- */

static void handle_closed(uv_handle_t *h)
{
    (void)h;
}

static void end_world(void)
{
    if (W.ending)
        return;
    W.ending = 1;
    uv_close((uv_handle_t *)&W.listener, handle_closed);
    uv_close((uv_handle_t *)&W.guard, handle_closed);
    uv_close((uv_handle_t *)&W.aux, handle_closed);
}

static void guard_fired(uv_timer_t *t)
{
    ck_abort_msg("test did not finish: srv opened=%d closed=%d cli opened=%d closed=%d",
                 W.srv.opened, W.srv.closed, W.cli.opened, W.cli.closed);
}

static struct peer *peer_of(struct ts_conn *c)
{
    return ts_conn_data(c);
}

static void on_open(struct ts_conn *c)
{
    struct peer *p = peer_of(c);
    p->opened++;
    p->resumed = ts_conn_resumed(c);
}

static void on_close(struct ts_conn *c, int err)
{
    struct peer *p = peer_of(c);
    ck_assert_ptr_eq(p->c, c);
    ck_assert_int_eq(p->closed, 0);
    p->closed++;
    p->close_err = err;
    /* Closed connections refuse more output, even inside on_close. */
    ck_assert_int_eq(ts_conn_send(c, "x", 1), TS_E_CLOSED);
    p->c = NULL;
    if (++W.closes == W.closes_wanted)
        end_world();
}

static void on_error(struct ts_conn *c, int err)
{
    struct peer *p = peer_of(c);
    p->errors++;
    p->last_error = err;
}

static void on_drain(struct ts_conn *c)
{
    peer_of(c)->drains++;
    ck_assert_uint_eq(ts_conn_queued(c), 0);
}

static void on_connection(uv_stream_t *server, int status)
{
    ck_assert_int_eq(status, 0);
    W.accepted++;
    memset(&W.srv, 0, sizeof(W.srv));
    ck_assert_int_eq(
        ts_conn_accept(&W.loop, server, W.srv_ctx, &W.srv_cbs, &W.srv, W.srv_max, &W.srv.c), TS_OK);
    ck_assert_ptr_nonnull(W.srv.c);
    ck_assert(strncmp(ts_conn_peer(W.srv.c), "127.0.0.1:", 10) == 0);
}

static void setup(void)
{
    memset(&W, 0, sizeof(W));
    ts_log_level_current = getenv("TS_TEST_DEBUG") ? TS_LOG_DEBUG : TS_LOG_WARN;
    ck_assert_ptr_nonnull(ts_testcert_dir(W.dir, sizeof(W.dir)));
    char ca[300], cert[300], key[300];
    snprintf(ca, sizeof(ca), "%s/ca.pem", W.dir);
    snprintf(cert, sizeof(cert), "%s/server.pem", W.dir);
    snprintf(key, sizeof(key), "%s/server.key", W.dir);
    ck_assert_int_eq(ts_tls_server_ctx(cert, key, &W.srv_ctx), TS_OK);
    ck_assert_int_eq(ts_tls_client_ctx(ca, NULL, NULL, &W.cli_ctx), TS_OK);
    ck_assert_int_eq(uv_loop_init(&W.loop), 0);
    ck_assert_int_eq(uv_tcp_init(&W.loop, &W.listener), 0);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    ck_assert_int_eq(uv_tcp_bind(&W.listener, (struct sockaddr *)&a, 0), 0);
    ck_assert_int_eq(uv_listen((uv_stream_t *)&W.listener, 16, on_connection), 0);
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    ck_assert_int_eq(uv_tcp_getsockname(&W.listener, (struct sockaddr *)&ss, &len), 0);
    W.port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    uv_timer_init(&W.loop, &W.guard);
    uv_timer_init(&W.loop, &W.aux);
    uv_timer_start(&W.guard, guard_fired, 30000, 0);
    struct ts_conn_cbs base = {on_open, NULL, on_error, on_drain, on_close};
    W.srv_cbs = W.cli_cbs = base;
    W.srv_max = W.cli_max = TS_FRAME_MAX_DEFAULT;
    W.closes_wanted = 2;
}

static void teardown(void)
{
    SSL_CTX_free(W.srv_ctx);
    SSL_CTX_free(W.cli_ctx);
    ts_testcert_remove(W.dir);
}

static void client_connect(const char *host, SSL_CTX *ctx)
{
    memset(&W.cli, 0, sizeof(W.cli));
    ck_assert_int_eq(
        ts_conn_connect(&W.loop, host, W.port, ctx, &W.cli_cbs, &W.cli, W.cli_max, &W.cli.c),
        TS_OK);
    ck_assert_ptr_nonnull(W.cli.c);
    ck_assert_ptr_eq(ts_conn_data(W.cli.c), &W.cli);
}

/* Runs the loop until every handle is closed, then checks it closes. */
static void run_world(void)
{
    ck_assert_int_eq(uv_run(&W.loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(uv_loop_close(&W.loop), 0);
}

/* ---- many small frames, both ways ---- */

#define PINGS 2000

static void exch_srv_frame(struct ts_conn *c, Threadsync__Frame *f, int status, const char *bad)
{
    ck_assert_int_eq(status, TS_OK);
    ck_assert_int_eq(f->msg_case, THREADSYNC__FRAME__MSG_PING);
    ck_assert_uint_eq(f->ping->nonce, W.srv.next_nonce);
    W.srv.next_nonce++;
    W.srv.frames++;
    send_pong(c, f->ping->nonce);
    ts_frame_free(f);
}

static void exch_cli_frame(struct ts_conn *c, Threadsync__Frame *f, int status, const char *bad)
{
    ck_assert_int_eq(f->msg_case, THREADSYNC__FRAME__MSG_PONG);
    ck_assert_uint_eq(f->pong->nonce, W.cli.next_nonce);
    W.cli.next_nonce++;
    ts_frame_free(f);
    if (++W.cli.frames == PINGS) {
        ts_conn_close(c, TS_OK);
        ts_conn_close(c, TS_E_INTERNAL);   /* idempotent: the first err stays */
        ck_assert_int_eq(W.cli.closed, 0); /* on_close never runs inside a call */
        ck_assert_int_eq(ts_conn_send(c, "x", 1), TS_E_CLOSED);
    }
}

static void exch_cli_open(struct ts_conn *c)
{
    on_open(c);
    for (int i = 10; i < PINGS; i++)
        send_ping(c, (uint64_t)i);
}

START_TEST(test_exchange)
{
    W.srv_cbs.on_frame = exch_srv_frame;
    W.cli_cbs.on_frame = exch_cli_frame;
    W.cli_cbs.on_open = exch_cli_open;
    client_connect("127.0.0.1", W.cli_ctx);
    /* Sent before the handshake: kept, then delivered first and in order. */
    for (int i = 0; i < 10; i++)
        send_ping(W.cli.c, (uint64_t)i);
    ck_assert_uint_gt(ts_conn_queued(W.cli.c), 0);
    ck_assert_int_eq(W.cli.opened, 0);
    char want[32];
    snprintf(want, sizeof(want), "127.0.0.1:%u", W.port);
    ck_assert_str_eq(ts_conn_peer(W.cli.c), want);
    ck_assert_uint_ne(ts_conn_id(W.cli.c), 0);
    run_world();
    ck_assert_int_eq(W.srv.opened, 1);
    ck_assert_int_eq(W.cli.opened, 1);
    ck_assert_int_eq(W.srv.frames, PINGS);
    ck_assert_int_eq(W.cli.frames, PINGS);
    ck_assert_int_eq(W.cli.resumed, 0);
    ck_assert_int_eq(W.srv.close_err, TS_OK);
    ck_assert_int_eq(W.cli.close_err, TS_OK);
    ck_assert_int_eq(W.srv.errors + W.cli.errors, 0);
    ck_assert_int_gt(W.cli.drains, 0);
}
END_TEST

/* ---- a 1 MiB frame each way ---- */

#define BIG (1u << 20)

static void big_srv_frame(struct ts_conn *c, Threadsync__Frame *f, int status, const char *bad)
{
    ck_assert_int_eq(status, TS_OK);
    check_post(f, 7, BIG);
    W.srv.frames++;
    ck_assert_int_eq(ts_conn_send_frame(c, f), TS_OK); /* echo */
    ck_assert_uint_gt(ts_conn_queued(c), BIG);
    ts_frame_free(f);
}

static void big_cli_frame(struct ts_conn *c, Threadsync__Frame *f, int status, const char *bad)
{
    check_post(f, 7, BIG);
    W.cli.frames++;
    ts_frame_free(f);
    ts_conn_close(c, TS_OK);
}

static void big_cli_open(struct ts_conn *c)
{
    on_open(c);
    ck_assert_int_eq(send_post(c, 7, BIG), TS_OK);
}

START_TEST(test_big_frame)
{
    W.srv_max = W.cli_max = 2 * BIG;
    W.srv_cbs.on_frame = big_srv_frame;
    W.cli_cbs.on_frame = big_cli_frame;
    W.cli_cbs.on_open = big_cli_open;
    client_connect("127.0.0.1", W.cli_ctx);
    run_world();
    ck_assert_int_eq(W.srv.frames, 1);
    ck_assert_int_eq(W.cli.frames, 1);
    ck_assert_int_eq(W.cli.close_err, TS_OK);
    ck_assert_int_eq(W.srv.close_err, TS_OK);
}
END_TEST

/* ---- backpressure: a paused reader, on_drain, pause inside on_frame ---- */

#define BP_FRAMES 256
#define BP_BODY (64u << 10)

static void bp_resume(uv_timer_t *t)
{
    if (W.srv.c)
        ts_conn_resume_reading(W.srv.c);
}

static void bp_check_paused(uv_timer_t *t)
{
    /* The server has read nothing while paused, so output piles up here. */
    ck_assert_int_eq(W.srv.frames, 0);
    ck_assert_uint_gt(ts_conn_queued(W.cli.c), 0);
    ck_assert_int_eq(W.cli.drains, 0);
    ts_conn_resume_reading(W.srv.c);
    ts_conn_resume_reading(W.srv.c);   /* harmless twice */
    ck_assert_int_eq(W.srv.frames, 0); /* delivery is never synchronous */
}

static void bp_srv_open(struct ts_conn *c)
{
    on_open(c);
    ts_conn_pause_reading(c);
    uv_timer_start(&W.aux, bp_check_paused, 300, 0);
}

static void bp_srv_frame(struct ts_conn *c, Threadsync__Frame *f, int status, const char *bad)
{
    check_post(f, (uint64_t)W.srv.frames, BP_BODY);
    ts_frame_free(f);
    if (++W.srv.frames == BP_FRAMES) {
        send_ping(c, 1);
        return;
    }
    /* Pausing inside on_frame stops delivery at once, with frames still
     * buffered; the resume delivers them from the loop. */
    if (W.srv.frames % 50 == 0) {
        ts_conn_pause_reading(c);
        uv_timer_start(&W.aux, bp_resume, 5, 0);
    }
}

static void bp_cli_open(struct ts_conn *c)
{
    on_open(c);
    for (int i = 0; i < BP_FRAMES; i++)
        ck_assert_int_eq(send_post(c, (uint64_t)i, BP_BODY), TS_OK);
    ck_assert_uint_gt(ts_conn_queued(c), 0);
}

static void bp_cli_frame(struct ts_conn *c, Threadsync__Frame *f, int status, const char *bad)
{
    ck_assert_int_eq(f->msg_case, THREADSYNC__FRAME__MSG_PING);
    ts_frame_free(f);
    ck_assert_int_ge(W.cli.drains, 1);
    ck_assert_uint_eq(ts_conn_queued(c), 0);
    ts_conn_close(c, TS_OK);
}

START_TEST(test_backpressure)
{
    W.srv_cbs.on_open = bp_srv_open;
    W.srv_cbs.on_frame = bp_srv_frame;
    W.cli_cbs.on_open = bp_cli_open;
    W.cli_cbs.on_frame = bp_cli_frame;
    client_connect("127.0.0.1", W.cli_ctx);
    run_world();
    ck_assert_int_eq(W.srv.frames, BP_FRAMES);
    ck_assert_int_eq(W.cli.close_err, TS_OK);
    ck_assert_int_eq(W.srv.close_err, TS_OK);
}
END_TEST

/* ---- a direct write the socket takes only in part, nothing sent after ---- */

#define PW_BODY (32u << 10)

static void pw_srv_frame(struct ts_conn *c, Threadsync__Frame *f, int status, const char *bad)
{
    check_post(f, (uint64_t)W.srv.frames, PW_BODY);
    ts_frame_free(f);
    if (++W.srv.frames == W.n)
        ts_conn_close(c, TS_OK);
}

static void pw_cli_open(struct ts_conn *c)
{
    on_open(c);
    /* The server reads nothing before this returns: send until the socket
     * refuses part of a send, and send nothing more. The rest of that last
     * frame must still go out on its own. */
    while (ts_conn_queued(c) == 0 && W.n < 100000) {
        ck_assert_int_eq(send_post(c, (uint64_t)W.n, PW_BODY), TS_OK);
        W.n++;
    }
    ck_assert_uint_gt(ts_conn_queued(c), 0);
}

START_TEST(test_partial_write_then_idle)
{
    W.srv_cbs.on_frame = pw_srv_frame;
    W.cli_cbs.on_open = pw_cli_open;
    client_connect("127.0.0.1", W.cli_ctx);
    run_world();
    ck_assert_int_gt(W.n, 1);
    ck_assert_int_eq(W.srv.frames, W.n);
    ck_assert_int_ge(W.cli.drains, 1);
    ck_assert_int_eq(W.cli.close_err, TS_OK);
    ck_assert_int_eq(W.srv.close_err, TS_OK);
}
END_TEST

/* ---- a frame above the receiver's limit ---- */

static void tl_srv_error(struct ts_conn *c, int err)
{
    on_error(c, err);
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Error e = THREADSYNC__ERROR__INIT;
    e.code = THREADSYNC__ERROR_CODE__TOO_LARGE;
    e.message = "frame too large";
    f.msg_case = THREADSYNC__FRAME__MSG_ERROR;
    f.error = &e;
    ck_assert_int_eq(ts_conn_send_frame(c, &f), TS_OK);
    ts_conn_close(c, err);
}

static void tl_srv_frame(struct ts_conn *c, Threadsync__Frame *f, int status, const char *bad)
{
    ts_frame_free(f);
    ck_abort_msg("an oversized frame reached on_frame");
}

static void tl_cli_open(struct ts_conn *c)
{
    on_open(c);
    ck_assert_int_eq(send_post(c, 1, 100u << 10), TS_OK);
}

static void tl_cli_frame(struct ts_conn *c, Threadsync__Frame *f, int status, const char *bad)
{
    ck_assert_int_eq(f->msg_case, THREADSYNC__FRAME__MSG_ERROR);
    ck_assert_int_eq(f->error->code, THREADSYNC__ERROR_CODE__TOO_LARGE);
    W.cli.frames++;
    ts_frame_free(f);
}

START_TEST(test_too_large)
{
    W.srv_max = TS_FRAME_MAX_PREAUTH;
    W.srv_cbs.on_error = tl_srv_error;
    W.srv_cbs.on_frame = tl_srv_frame;
    W.cli_cbs.on_open = tl_cli_open;
    W.cli_cbs.on_frame = tl_cli_frame;
    client_connect("127.0.0.1", W.cli_ctx);
    run_world();
    ck_assert_int_eq(W.srv.errors, 1);
    ck_assert_int_eq(W.srv.last_error, TS_E_TOO_LARGE);
    ck_assert_int_eq(W.srv.close_err, TS_E_TOO_LARGE);
    /* The Error frame got through before the close. */
    ck_assert_int_eq(W.cli.frames, 1);
    ck_assert_int_eq(W.cli.close_err, TS_OK);
}
END_TEST

/* ---- a truncated frame, then close_notify ---- */

static void tr_cli_open(struct ts_conn *c)
{
    on_open(c);
    send_ping(c, 1);
    static const uint8_t partial[] = {0, 0, 0, 50, 0x22, 0x02, 0x08};
    ck_assert_int_eq(ts_conn_send(c, partial, sizeof(partial)), TS_OK);
    ts_conn_close(c, TS_OK);
}

static void tr_srv_frame(struct ts_conn *c, Threadsync__Frame *f, int status, const char *bad)
{
    ck_assert_int_eq(f->msg_case, THREADSYNC__FRAME__MSG_PING);
    W.srv.frames++;
    ts_frame_free(f);
}

START_TEST(test_truncated)
{
    W.srv_cbs.on_error = NULL; /* then the connection closes with the error */
    W.srv_cbs.on_frame = tr_srv_frame;
    W.cli_cbs.on_open = tr_cli_open;
    client_connect("127.0.0.1", W.cli_ctx);
    run_world();
    ck_assert_int_eq(W.srv.frames, 1); /* the whole frame before it arrived */
    ck_assert_int_eq(W.srv.close_err, TS_E_BAD_FRAME);
    ck_assert_int_eq(W.cli.close_err, TS_OK);
}
END_TEST

/* ---- a plaintext client ---- */

static struct {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    size_t got;
    unsigned char first;
    int eof;
} R;

static void raw_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    static char b[4096];
    *buf = uv_buf_init(b, sizeof(b));
}

static void raw_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    if (n > 0) {
        if (!R.got)
            R.first = (unsigned char)buf->base[0];
        R.got += (size_t)n;
    } else if (n < 0) {
        R.eof = 1;
        uv_close((uv_handle_t *)s, handle_closed);
        if (++W.closes == W.closes_wanted)
            end_world();
    }
}

static void raw_connected(uv_connect_t *req, int status)
{
    ck_assert_int_eq(status, 0);
    static char get[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    uv_buf_t b = uv_buf_init(get, sizeof(get) - 1);
    ck_assert_int_eq(uv_write(&R.wreq, (uv_stream_t *)&R.tcp, &b, 1, NULL), 0);
    ck_assert_int_eq(uv_read_start((uv_stream_t *)&R.tcp, raw_alloc, raw_read), 0);
}

static void raw_connect(void)
{
    memset(&R, 0, sizeof(R));
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", W.port, &a);
    ck_assert_int_eq(uv_tcp_init(&W.loop, &R.tcp), 0);
    ck_assert_int_eq(uv_tcp_connect(&R.creq, &R.tcp, (struct sockaddr *)&a, raw_connected), 0);
}

START_TEST(test_plaintext_refused)
{
    raw_connect();
    run_world();
    ck_assert_int_eq(W.accepted, 1);
    ck_assert_int_eq(W.srv.opened, 0);
    ck_assert_int_eq(W.srv.close_err, TS_E_TLS);
    ck_assert(R.eof);
    if (R.got) /* anything we were sent is a TLS alert record */
        ck_assert_uint_eq(R.first, 0x15);
}
END_TEST

/* ---- a truncated frame, then a bare FIN (no close_notify) ----
 * The peer is a ts_tls engine on a raw socket, since a ts_conn always sends
 * close_notify. */

static struct {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_shutdown_t sreq;
    struct ts_tls *t;
    int sent, eof;
} E;

static void e_written(uv_write_t *req, int status)
{
    free(req->data);
    free(req);
}

static void e_flush(void)
{
    size_t n = ts_tls_pending(E.t);
    if (!n)
        return;
    uv_write_t *req = malloc(sizeof(*req));
    char *buf = malloc(n);
    ck_assert_uint_eq(ts_tls_take(E.t, buf, n), n);
    req->data = buf;
    uv_buf_t b = uv_buf_init(buf, (unsigned)n);
    ck_assert_int_eq(uv_write(req, (uv_stream_t *)&E.tcp, &b, 1, e_written), 0);
}

static void e_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    if (n < 0) {
        E.eof = 1;
        uv_close((uv_handle_t *)s, handle_closed);
        if (++W.closes == W.closes_wanted)
            end_world();
        return;
    }
    ck_assert_int_eq(ts_tls_feed(E.t, buf->base, (size_t)n), TS_OK);
    char plain[4096];
    size_t got;
    while (ts_tls_read(E.t, plain, sizeof(plain), &got) == TS_OK)
        ;
    e_flush();
    if (ts_tls_established(E.t) && !E.sent) {
        static const uint8_t partial[] = {0, 0, 0, 50, 0x22, 0x02};
        E.sent = 1;
        ck_assert_int_eq(ts_tls_write(E.t, partial, sizeof(partial)), TS_OK);
        e_flush();
        ck_assert_int_eq(uv_shutdown(&E.sreq, (uv_stream_t *)&E.tcp, NULL), 0);
    }
}

static void e_connected(uv_connect_t *req, int status)
{
    ck_assert_int_eq(status, 0);
    ck_assert_int_eq(ts_tls_handshake(E.t), TS_E_AGAIN);
    e_flush();
    ck_assert_int_eq(uv_read_start((uv_stream_t *)&E.tcp, raw_alloc, e_read), 0);
}

static void tf_srv_error(struct ts_conn *c, int err)
{
    on_error(c, err);
    ts_conn_close(c, err);
}

START_TEST(test_truncated_at_fin)
{
    memset(&E, 0, sizeof(E));
    W.srv_cbs.on_error = tf_srv_error;
    ck_assert_int_eq(ts_tls_new_client(W.cli_ctx, "127.0.0.1", NULL, &E.t), TS_OK);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", W.port, &a);
    ck_assert_int_eq(uv_tcp_init(&W.loop, &E.tcp), 0);
    ck_assert_int_eq(uv_tcp_connect(&E.creq, &E.tcp, (struct sockaddr *)&a, e_connected), 0);
    run_world();
    ts_tls_free(E.t);
    ck_assert(E.sent);
    ck_assert(E.eof);
    ck_assert_int_eq(W.srv.opened, 1);
    ck_assert_int_eq(W.srv.errors, 1);
    ck_assert_int_eq(W.srv.last_error, TS_E_BAD_FRAME);
    ck_assert_int_eq(W.srv.close_err, TS_E_BAD_FRAME);
}
END_TEST

/* ---- session resumption on reconnect ---- */

static int rs_round;
static int rs_resumed[2], rs_srv_resumed[2];

static void rs_srv_frame(struct ts_conn *c, Threadsync__Frame *f, int status, const char *bad)
{
    send_pong(c, f->ping->nonce);
    ts_frame_free(f);
}

static void rs_srv_open(struct ts_conn *c)
{
    on_open(c);
    rs_srv_resumed[rs_round] = ts_conn_resumed(c);
}

static void rs_cli_open(struct ts_conn *c)
{
    on_open(c);
    rs_resumed[rs_round] = ts_conn_resumed(c);
    send_ping(c, 5);
}

static void rs_cli_frame(struct ts_conn *c, Threadsync__Frame *f, int status, const char *bad)
{
    ts_frame_free(f);
    ts_conn_close(c, TS_OK);
}

static void rs_cli_close(struct ts_conn *c, int err)
{
    ck_assert_int_eq(err, TS_OK);
    on_close(c, err);
    if (rs_round == 0) {
        rs_round = 1;
        client_connect("127.0.0.1", W.cli_ctx);
    }
}

START_TEST(test_resumption)
{
    W.closes_wanted = 4;
    W.srv_cbs.on_open = rs_srv_open;
    W.srv_cbs.on_frame = rs_srv_frame;
    W.cli_cbs.on_open = rs_cli_open;
    W.cli_cbs.on_frame = rs_cli_frame;
    W.cli_cbs.on_close = rs_cli_close;
    client_connect("127.0.0.1", W.cli_ctx);
    run_world();
    ck_assert_int_eq(W.accepted, 2);
    ck_assert_int_eq(rs_resumed[0], 0);
    ck_assert_int_eq(rs_srv_resumed[0], 0);
    ck_assert_int_eq(rs_resumed[1], 1);
    ck_assert_int_eq(rs_srv_resumed[1], 1);
}
END_TEST

/* ---- a name, resolved; a wrong CA ---- */

static void nm_cli_open(struct ts_conn *c)
{
    on_open(c);
    ts_conn_close(c, TS_OK);
}

START_TEST(test_localhost_by_name)
{
    W.cli_cbs.on_open = nm_cli_open;
    client_connect("localhost", W.cli_ctx);
    run_world();
    ck_assert_int_eq(W.cli.opened, 1);
    ck_assert_int_eq(W.srv.opened, 1);
    ck_assert_int_eq(W.cli.close_err, TS_OK);
    ck_assert_int_eq(W.srv.close_err, TS_OK);
}
END_TEST

START_TEST(test_wrong_ca)
{
    SSL_CTX *other;
    char path[300];
    snprintf(path, sizeof(path), "%s/other-ca.pem", W.dir);
    ck_assert_int_eq(ts_tls_client_ctx(path, NULL, NULL, &other), TS_OK);
    client_connect("127.0.0.1", other);
    run_world();
    SSL_CTX_free(other);
    ck_assert_int_eq(W.cli.opened, 0);
    ck_assert_int_eq(W.srv.opened, 0);
    ck_assert_int_eq(W.cli.close_err, TS_E_TLS);
    ck_assert_int_eq(W.srv.close_err, TS_E_TLS);
}
END_TEST

/* ---- the hard output cap against a reader that never reads ---- */

/* The server pauses on the client's first frame and answers it, so the
 * flood below meets a reader that is open, paused and never reads again. */
static void cap_srv_frame(struct ts_conn *c, Threadsync__Frame *f, int status, const char *bad)
{
    ts_frame_free(f);
    W.srv.frames++;
    ts_conn_pause_reading(c);
    send_pong(c, 1);
}

static void cap_cli_open(struct ts_conn *c)
{
    on_open(c);
    send_ping(c, 1);
}

static void cap_cli_frame(struct ts_conn *c, Threadsync__Frame *f, int status, const char *bad)
{
    ts_frame_free(f);
    int rc = TS_OK, sent = 0;
    while (rc == TS_OK && sent < 200) {
        rc = send_post(c, (uint64_t)sent, BIG);
        sent++;
    }
    ck_assert_int_eq(rc, TS_E_TOO_LARGE);
    ck_assert_int_le(sent, 70); /* 64 MiB, then refused */
    ck_assert_int_eq(W.cli.closed, 0);
    ck_assert_int_eq(send_post(c, 999, 10), TS_E_CLOSED);
}

static void cap_cli_close(struct ts_conn *c, int err)
{
    on_close(c, err);
    /* The paused server sees nothing until asked to close; its close then
     * reads on to see the end of the stream. */
    ck_assert_int_eq(W.srv.closed, 0);
    ts_conn_close(W.srv.c, TS_OK);
}

START_TEST(test_hard_cap)
{
    W.srv_cbs.on_frame = cap_srv_frame;
    W.cli_cbs.on_open = cap_cli_open;
    W.cli_cbs.on_frame = cap_cli_frame;
    W.cli_cbs.on_close = cap_cli_close;
    client_connect("127.0.0.1", W.cli_ctx);
    run_world();
    ck_assert_int_eq(W.cli.close_err, TS_E_TOO_LARGE);
    ck_assert_int_eq(W.srv.opened, 1);
    ck_assert_int_eq(W.srv.frames, 1); /* paused: none of the flood */
    ck_assert_int_eq(W.srv.closed, 1);
}
END_TEST

/* ---- connect failures and an immediate close ---- */

START_TEST(test_connect_refused)
{
    /* A port nobody listens on: bound, then closed. */
    uv_tcp_t t;
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    uv_tcp_init(&W.loop, &t);
    ck_assert_int_eq(uv_tcp_bind(&t, (struct sockaddr *)&a, 0), 0);
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    uv_tcp_getsockname(&t, (struct sockaddr *)&ss, &len);
    uv_close((uv_handle_t *)&t, handle_closed);
    uint16_t listening = W.port;
    W.port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    W.closes_wanted = 1;
    client_connect("127.0.0.1", W.cli_ctx);
    ck_assert_int_eq(W.cli.closed, 0);
    W.port = listening;
    run_world();
    ck_assert_int_eq(W.cli.opened, 0);
    ck_assert_int_eq(W.cli.close_err, TS_E_IO);

    struct ts_conn *c = (struct ts_conn *)1;
    ck_assert_int_eq(ts_conn_connect(&W.loop, "", 1, W.cli_ctx, &W.cli_cbs, NULL, 100, &c),
                     TS_E_INVALID_ARGUMENT);
    ck_assert_ptr_null(c);
}
END_TEST

static void ic_after(uv_timer_t *t)
{
    /* The server may have accepted the aborted connection; wait for it. */
    if (W.accepted && !W.srv.closed)
        W.closes_wanted = 2;
    else
        end_world();
}

static void ic_cli_close(struct ts_conn *c, int err)
{
    on_close(c, err);
    uv_timer_start(&W.aux, ic_after, 100, 0);
}

START_TEST(test_close_at_once)
{
    W.closes_wanted = 100; /* decided in ic_after */
    W.cli_cbs.on_close = ic_cli_close;
    client_connect("127.0.0.1", W.cli_ctx);
    send_ping(W.cli.c, 1);
    ts_conn_close(W.cli.c, TS_OK);
    ck_assert_int_eq(W.cli.closed, 0);
    run_world();
    ck_assert_int_eq(W.cli.closed, 1);
    ck_assert_int_eq(W.cli.opened, 0);
    ck_assert_int_eq(W.cli.close_err, TS_OK);
    ck_assert_int_eq(W.srv.opened, 0);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("ts_conn");
    TCase *tc = tcase_create("loopback");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_exchange);
    tcase_add_test(tc, test_big_frame);
    tcase_add_test(tc, test_backpressure);
    tcase_add_test(tc, test_partial_write_then_idle);
    tcase_add_test(tc, test_too_large);
    tcase_add_test(tc, test_truncated);
    tcase_add_test(tc, test_truncated_at_fin);
    tcase_add_test(tc, test_plaintext_refused);
    tcase_add_test(tc, test_resumption);
    tcase_add_test(tc, test_localhost_by_name);
    tcase_add_test(tc, test_wrong_ca);
    tcase_add_test(tc, test_hard_cap);
    tcase_add_test(tc, test_connect_refused);
    tcase_add_test(tc, test_close_at_once);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ts_check_run(suite());
}
