/*
 * ts_raft_tls: the mTLS raft transport driven directly on a loop, without
 * raft: addresses; bytes both ways through a tunnel with the dialler's
 * identity delivered to the listener; a certificate from another CA refused
 * (connect fails, probe says TLS, nothing accepted); a plain TCP peer gets
 * no byte; a connect pending at close is cancelled. Every case ends by
 * asserting that the loop closes cleanly.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ts_check_main.h"
#include "ts_certgen.h"
#include "ts_err.h"
#include "ts_raft_tls.h"
#include "ts_testnode.h"

static char dir_a[128], dir_b[128];
static struct ts_certgen_paths ca_a, ca_b;

static void make_certs(char *dir, size_t size, struct ts_certgen_paths *p)
{
    const char *base = getenv("TMPDIR");
    snprintf(dir, size, "%s/tsrafttls.XXXXXX", base ? base : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    const char *hosts[] = {"127.0.0.1"};
    ck_assert_int_eq(ts_certgen_ensure(dir, hosts, 1, p), TS_OK);
}

static void setup(void)
{
    make_certs(dir_a, sizeof(dir_a), &ca_a);
    make_certs(dir_b, sizeof(dir_b), &ca_b);
}

static void teardown(void)
{
    ts_test_rmtree(dir_a);
    ts_test_rmtree(dir_b);
}

static uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* A node's transport: node's own certificate and key, trusting ca's CA. */
static void transport(struct raft_uv_transport *t, uv_loop_t *loop,
                      const struct ts_certgen_paths *own, const struct ts_certgen_paths *ca)
{
    struct ts_raft_tls_config cfg = {own->server_cert, own->server_key, ca->ca_cert, 2000};
    ck_assert_int_eq(ts_raft_tls_init(t, loop, &cfg), TS_OK);
}

/* ---- what the "raft" side of the test sees ---- */

struct seen {
    int accepted;
    raft_id id;
    char address[128];
    uv_stream_t *in_stream, *out_stream;
    int connect_status, connect_calls;
    char got[64];
    size_t got_len;
    int probe_status, probe_calls;
    int closed;
} seen;

static void on_accept(struct raft_uv_transport *t, raft_id id, const char *address,
                      uv_stream_t *stream)
{
    (void)t;
    seen.accepted++;
    seen.id = id;
    snprintf(seen.address, sizeof(seen.address), "%s", address);
    seen.in_stream = stream;
}

static void on_connect(struct raft_uv_connect *req, uv_stream_t *stream, int status)
{
    (void)req;
    seen.connect_calls++;
    seen.connect_status = status;
    seen.out_stream = stream;
}

static void on_probe(void *arg, int status)
{
    (void)arg;
    seen.probe_calls++;
    seen.probe_status = status;
}

static void on_transport_closed(struct raft_uv_transport *t)
{
    (void)t;
    seen.closed++;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    static char b[256];
    (void)h;
    (void)suggested;
    buf->base = b;
    buf->len = sizeof(b);
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    (void)s;
    if (n > 0 && seen.got_len + (size_t)n < sizeof(seen.got)) {
        memcpy(seen.got + seen.got_len, buf->base, (size_t)n);
        seen.got_len += (size_t)n;
    }
}

static void write_cb(uv_write_t *w, int status)
{
    (void)status;
    free(w);
}

static void send_str(uv_stream_t *s, const char *text)
{
    uv_write_t *w = malloc(sizeof(*w));
    uv_buf_t b = uv_buf_init((char *)text, (unsigned)strlen(text));
    ck_assert_int_eq(uv_write(w, s, &b, 1, write_cb), 0);
}

static void on_limit(uv_timer_t *t)
{
    *(int *)t->data = 1;
}

/* Runs the loop until cond holds or ms passed. Every change cond looks at
 * is made by a callback on this loop, so it blocks for the next event
 * (UV_RUN_ONCE) with a timer as the deadline, rather than polling; the
 * timer's close is run before its stack frame goes. */
#define RUN_UNTIL(loop, cond, ms)                                                                  \
    do {                                                                                           \
        uv_timer_t limit_;                                                                         \
        int expired_ = 0;                                                                          \
        uv_timer_init(loop, &limit_);                                                              \
        limit_.data = &expired_;                                                                   \
        uv_timer_start(&limit_, on_limit, (ms), 0);                                                \
        while (!(cond) && !expired_)                                                               \
            uv_run(loop, UV_RUN_ONCE);                                                             \
        uv_close((uv_handle_t *)&limit_, NULL);                                                    \
        uv_run(loop, UV_RUN_NOWAIT);                                                               \
    } while (0)

static void close_all(uv_loop_t *loop, struct raft_uv_transport **ts, int n)
{
    /* raft closes the streams it owns; the test stands in for it */
    if (seen.in_stream)
        uv_close((uv_handle_t *)seen.in_stream, (uv_close_cb)raft_free);
    if (seen.out_stream)
        uv_close((uv_handle_t *)seen.out_stream, (uv_close_cb)raft_free);
    for (int i = 0; i < n; i++)
        ts[i]->close(ts[i], on_transport_closed);
    RUN_UNTIL(loop, seen.closed == n, 5000);
    ck_assert_int_eq(seen.closed, n);
    for (int i = 0; i < n; i++)
        ts_raft_tls_close(ts[i]);
    uv_run(loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(loop), 0);
}

START_TEST(test_split_address)
{
    char raft[64], client[64];
    ck_assert_int_eq(ts_raft_tls_split_address("127.0.0.1:7421,127.0.0.1:7420", raft, sizeof(raft),
                                               client, sizeof(client)),
                     TS_OK);
    ck_assert_str_eq(raft, "127.0.0.1:7421");
    ck_assert_str_eq(client, "127.0.0.1:7420");
    ck_assert_int_eq(
        ts_raft_tls_split_address("10.0.0.1:1", raft, sizeof(raft), client, sizeof(client)), TS_OK);
    ck_assert_str_eq(raft, "10.0.0.1:1");
    ck_assert_str_eq(client, "");
    ck_assert_int_eq(
        ts_raft_tls_split_address("[::1]:5,[::1]:6", raft, sizeof(raft), client, sizeof(client)),
        TS_OK);
    ck_assert_str_eq(raft, "[::1]:5");
    ck_assert_str_eq(client, "[::1]:6");
    const char *bad[] = {"", ",", "host", ",1.2.3.4:1", "1.2.3.4:1,nope", "1.2.3.4:99999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(ts_raft_tls_split_address(bad[i], raft, sizeof(raft), NULL, 0) ==
                          TS_E_INVALID_ARGUMENT,
                      "accepted '%s'", bad[i]);
    /* too small an output is refused, not truncated */
    ck_assert_int_eq(ts_raft_tls_split_address("127.0.0.1:7421", raft, 8, NULL, 0),
                     TS_E_INVALID_ARGUMENT);
}
END_TEST

START_TEST(test_tunnel_carries_bytes_and_identity)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    memset(&seen, 0, sizeof(seen));
    struct raft_uv_transport a, b;
    transport(&a, &loop, &ca_a, &ca_a);
    transport(&b, &loop, &ca_a, &ca_a);
    char addr_a[64], addr_b[64];
    snprintf(addr_a, sizeof(addr_a), "127.0.0.1:%u,127.0.0.1:1", free_port());
    snprintf(addr_b, sizeof(addr_b), "127.0.0.1:%u,127.0.0.1:2", free_port());
    ck_assert_int_eq(a.init(&a, 1, addr_a), 0);
    ck_assert_int_eq(b.init(&b, 2, addr_b), 0);
    ck_assert_int_eq(a.listen(&a, on_accept), 0);

    struct raft_uv_connect req;
    ck_assert_int_eq(b.connect(&b, &req, 1, addr_a, on_connect), 0);
    ck_assert_int_eq(seen.connect_calls, 0); /* never synchronously */
    RUN_UNTIL(&loop, seen.connect_calls && seen.accepted, 5000);
    ck_assert_int_eq(seen.connect_status, 0);
    ck_assert_int_eq(seen.accepted, 1);
    ck_assert_uint_eq(seen.id, 2);
    ck_assert_str_eq(seen.address, addr_b);

    uv_read_start(seen.in_stream, alloc_cb, read_cb);
    send_str(seen.out_stream, "append entries");
    RUN_UNTIL(&loop, seen.got_len == 14, 5000);
    ck_assert_int_eq(seen.got_len, 14);
    ck_assert(memcmp(seen.got, "append entries", 14) == 0);

    /* a probe between members succeeds, and raft is not told about it */
    ck_assert_int_eq(ts_raft_tls_probe(&b, addr_a, on_probe, NULL), TS_OK);
    RUN_UNTIL(&loop, seen.probe_calls, 5000);
    ck_assert_int_eq(seen.probe_status, TS_OK);
    ck_assert_int_eq(seen.accepted, 1);

    struct raft_uv_transport *ts[] = {&a, &b};
    close_all(&loop, ts, 2);
}
END_TEST

START_TEST(test_other_ca_refused)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    memset(&seen, 0, sizeof(seen));
    struct raft_uv_transport a, evil;
    transport(&a, &loop, &ca_a, &ca_a);
    /* it even trusts the cluster's CA; its own certificate is not the cluster's */
    transport(&evil, &loop, &ca_b, &ca_a);
    char addr_a[64], addr_e[64];
    snprintf(addr_a, sizeof(addr_a), "127.0.0.1:%u", free_port());
    snprintf(addr_e, sizeof(addr_e), "127.0.0.1:%u", free_port());
    ck_assert_int_eq(a.init(&a, 1, addr_a), 0);
    ck_assert_int_eq(evil.init(&evil, 9, addr_e), 0);
    ck_assert_int_eq(a.listen(&a, on_accept), 0);
    ck_assert_int_eq(evil.listen(&evil, on_accept), 0);

    struct raft_uv_connect req;
    ck_assert_int_eq(evil.connect(&evil, &req, 1, addr_a, on_connect), 0);
    RUN_UNTIL(&loop, seen.connect_calls, 8000);
    ck_assert_int_eq(seen.connect_calls, 1);
    ck_assert_int_eq(seen.connect_status, RAFT_NOCONNECTION);
    ck_assert_ptr_null(seen.out_stream);

    /* the member dialling the outsider: the outsider's certificate fails */
    ck_assert_int_eq(ts_raft_tls_probe(&a, addr_e, on_probe, NULL), TS_OK);
    RUN_UNTIL(&loop, seen.probe_calls, 8000);
    ck_assert_int_eq(seen.probe_status, TS_E_TLS);
    ck_assert_int_eq(seen.accepted, 0);

    struct raft_uv_transport *ts[] = {&a, &evil};
    close_all(&loop, ts, 2);
}
END_TEST

struct plain {
    uv_tcp_t tcp;
    uv_connect_t c;
    uv_write_t w;
    ssize_t got;
    int eof, closed;
};

static void plain_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct plain *p = s->data;
    (void)buf;
    if (n > 0)
        p->got += n;
    else if (n < 0)
        p->eof = 1;
}

static void plain_written(uv_write_t *w, int status)
{
    (void)w;
    (void)status;
}

static void plain_connected(uv_connect_t *c, int status)
{
    struct plain *p = c->handle->data;
    ck_assert_int_eq(status, 0);
    static char junk[] = "\x01\0\0\0\0\0\0\0\x09\0\0\0\0\0\0\0GET / HTTP/1.0\r\n\r\n";
    uv_buf_t b = uv_buf_init(junk, sizeof(junk) - 1);
    uv_write(&p->w, (uv_stream_t *)&p->tcp, &b, 1, plain_written);
    uv_read_start((uv_stream_t *)&p->tcp, alloc_cb, plain_read);
}

static void plain_closed(uv_handle_t *h)
{
    ((struct plain *)h->data)->closed = 1;
}

START_TEST(test_plain_tcp_gets_nothing)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    memset(&seen, 0, sizeof(seen));
    struct raft_uv_transport a;
    transport(&a, &loop, &ca_a, &ca_a);
    uint16_t port = free_port();
    char addr_a[64];
    snprintf(addr_a, sizeof(addr_a), "127.0.0.1:%u", port);
    ck_assert_int_eq(a.init(&a, 1, addr_a), 0);
    ck_assert_int_eq(a.listen(&a, on_accept), 0);

    struct plain p = {0};
    uv_tcp_init(&loop, &p.tcp);
    p.tcp.data = &p;
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", port, &sa);
    uv_tcp_connect(&p.c, &p.tcp, (struct sockaddr *)&sa, plain_connected);
    RUN_UNTIL(&loop, p.eof, 5000);
    ck_assert_int_eq(p.eof, 1);
    ck_assert_int_eq(p.got, 0);
    ck_assert_int_eq(seen.accepted, 0);
    uv_close((uv_handle_t *)&p.tcp, plain_closed);
    RUN_UNTIL(&loop, p.closed, 1000);

    struct raft_uv_transport *ts[] = {&a};
    close_all(&loop, ts, 1);
}
END_TEST

START_TEST(test_close_cancels_pending_connect)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    memset(&seen, 0, sizeof(seen));
    struct raft_uv_transport a, b;
    transport(&a, &loop, &ca_a, &ca_a);
    transport(&b, &loop, &ca_a, &ca_a);
    char addr_a[64], addr_b[64];
    snprintf(addr_a, sizeof(addr_a), "127.0.0.1:%u", free_port());
    snprintf(addr_b, sizeof(addr_b), "127.0.0.1:%u", free_port());
    ck_assert_int_eq(a.init(&a, 1, addr_a), 0);
    ck_assert_int_eq(b.init(&b, 2, addr_b), 0);
    ck_assert_int_eq(a.listen(&a, on_accept), 0);
    struct raft_uv_connect req;
    ck_assert_int_eq(b.connect(&b, &req, 1, addr_a, on_connect), 0);
    b.close(&b, on_transport_closed); /* before the TLS handshake could finish */
    ck_assert_int_eq(seen.connect_calls, 0);
    ck_assert_int_eq(seen.closed, 0);
    RUN_UNTIL(&loop, seen.closed == 1, 5000);
    ck_assert_int_eq(seen.connect_calls, 1);
    ck_assert_int_eq(seen.connect_status, RAFT_CANCELED);
    ck_assert_int_eq(b.connect(&b, &req, 1, addr_a, on_connect), RAFT_CANCELED);
    ts_raft_tls_close(&b);
    seen.closed = 0;
    struct raft_uv_transport *ts[] = {&a};
    close_all(&loop, ts, 1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("raft_tls");
    TCase *tc = tcase_create("transport");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_split_address);
    tcase_add_test(tc, test_tunnel_carries_bytes_and_identity);
    tcase_add_test(tc, test_other_ca_refused);
    tcase_add_test(tc, test_plain_tcp_gets_nothing);
    tcase_add_test(tc, test_close_cancels_pending_connect);
    suite_add_tcase(s, tc);
    return ts_check_run(s);
}
