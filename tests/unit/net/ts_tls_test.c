/*
 * ts_tls: the memory-BIO engine driven in memory, two engines (or an engine
 * and a bare OpenSSL peer) pumped by the test: handshake, data both ways in
 * every chunking, verification failures (wrong CA, wrong host or IP), ALPN
 * refusal, close_notify and half-close, session resumption, context errors,
 * the TLS 1.2 suites, and what an engine keeps on the heap.
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "ts_check_main.h"
#include "ts_err.h"
#include "ts_log.h"
#include "ts_testcert.h"
#include "ts_testheap.h"
#include "ts_tls.h"

static char dir[256];
static char ca_path[300], cert_path[300], key_path[300], other_path[300];
static SSL_CTX *srv_ctx, *cli_ctx;

static void setup(void)
{
    ts_log_level_current = TS_LOG_ERROR;
    ck_assert_ptr_nonnull(ts_testcert_dir(dir, sizeof(dir)));
    snprintf(ca_path, sizeof(ca_path), "%s/ca.pem", dir);
    snprintf(cert_path, sizeof(cert_path), "%s/server.pem", dir);
    snprintf(key_path, sizeof(key_path), "%s/server.key", dir);
    snprintf(other_path, sizeof(other_path), "%s/other-ca.pem", dir);
    ck_assert_int_eq(ts_tls_server_ctx(cert_path, key_path, &srv_ctx), TS_OK);
    ck_assert_int_eq(ts_tls_client_ctx(ca_path, NULL, NULL, &cli_ctx), TS_OK);
}

static void teardown(void)
{
    SSL_CTX_free(srv_ctx);
    SSL_CTX_free(cli_ctx);
    srv_ctx = cli_ctx = NULL;
    ts_testcert_remove(dir);
}

/* One side of a pair: its engine, the plaintext it has read so far, and the
 * last status of its read loop. */
struct side {
    struct ts_tls *t;
    uint8_t *got;
    size_t got_len;
    int rc;
    size_t read_cap; /* plaintext read size, to vary chunking */
};

static void side_read(struct side *s)
{
    uint8_t buf[20000];
    size_t cap = s->read_cap ? s->read_cap : sizeof(buf);
    size_t n;
    while ((s->rc = ts_tls_read(s->t, buf, cap, &n)) == TS_OK) {
        ck_assert_uint_gt(n, 0);
        ck_assert_uint_le(n, cap);
        s->got = realloc(s->got, s->got_len + n);
        memcpy(s->got + s->got_len, buf, n);
        s->got_len += n;
    }
}

/* Moves from's output to `to` in pieces of `chunk` bytes, reading after each
 * piece so records split anywhere are exercised. Returns bytes moved. */
static size_t move(struct side *from, struct side *to, size_t chunk)
{
    uint8_t buf[65536];
    size_t moved = 0, n;
    if (chunk > sizeof(buf))
        chunk = sizeof(buf);
    while ((n = ts_tls_take(from->t, buf, chunk)) > 0) {
        ck_assert_int_eq(ts_tls_feed(to->t, buf, n), TS_OK);
        side_read(to);
        moved += n;
    }
    return moved;
}

static void run(struct side *a, struct side *b, size_t chunk)
{
    side_read(a);
    side_read(b);
    for (int i = 0; i < 100000; i++)
        if (move(a, b, chunk) + move(b, a, chunk) == 0)
            return;
    ck_abort_msg("pump did not settle");
}

static void side_free(struct side *s)
{
    ts_tls_free(s->t);
    free(s->got);
    memset(s, 0, sizeof(*s));
}

static void pair(struct side *c, struct side *s, SSL_CTX *cctx, const char *host, const char *key)
{
    memset(c, 0, sizeof(*c));
    memset(s, 0, sizeof(*s));
    ck_assert_int_eq(ts_tls_new_client(cctx, host, key, &c->t), TS_OK);
    ck_assert_int_eq(ts_tls_new_server(srv_ctx, &s->t), TS_OK);
    ck_assert_int_eq(ts_tls_handshake(c->t), TS_E_AGAIN);
    ck_assert_uint_gt(ts_tls_pending(c->t), 0); /* the ClientHello */
}

static void fill(uint8_t *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 31 + seed + (i >> 8));
}

START_TEST(test_handshake_and_chunking)
{
    static const size_t chunks[] = {1, 2, 3, 5, 7, 13, 100, 1000, 4096, 16384, 65536};
    static const size_t caps[] = {1, 3, 1000, 20000};
    const size_t c2s_len = 50000, s2c_len = 33333;
    uint8_t *c2s = malloc(c2s_len), *s2c = malloc(s2c_len);
    fill(c2s, c2s_len, 1);
    fill(s2c, s2c_len, 2);
    for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
        struct side c, s;
        pair(&c, &s, cli_ctx, i % 2 ? "localhost" : "127.0.0.1", NULL);
        c.read_cap = s.read_cap = caps[i % 4];
        /* Written before the handshake: kept and sent once it completes. */
        ck_assert_int_eq(ts_tls_write(c.t, c2s, 100), TS_OK);
        ck_assert_uint_eq(ts_tls_pending_plain(c.t), 100);
        run(&c, &s, chunks[i]);
        ck_assert(ts_tls_established(c.t));
        ck_assert(ts_tls_established(s.t));
        ck_assert_uint_eq(ts_tls_pending_plain(c.t), 0);
        ck_assert_int_eq(c.rc, TS_E_AGAIN);
        ck_assert_int_eq(s.rc, TS_E_AGAIN);
        ck_assert(!ts_tls_resumed(c.t));
        /* Writes of odd sizes both ways, interleaved. */
        size_t off = 100;
        for (size_t w = 1; off < c2s_len; w = w * 3 + 1) {
            size_t n = w < c2s_len - off ? w : c2s_len - off;
            ck_assert_int_eq(ts_tls_write(c.t, c2s + off, n), TS_OK);
            off += n;
        }
        ck_assert_int_eq(ts_tls_write(s.t, s2c, s2c_len), TS_OK);
        run(&c, &s, chunks[i]);
        ck_assert_uint_eq(s.got_len, c2s_len);
        ck_assert_mem_eq(s.got, c2s, c2s_len);
        ck_assert_uint_eq(c.got_len, s2c_len);
        ck_assert_mem_eq(c.got, s2c, s2c_len);
        ck_assert_uint_eq(ts_tls_pending(c.t), 0);
        ck_assert_uint_eq(ts_tls_pending(s.t), 0);
        side_free(&c);
        side_free(&s);
    }
    free(c2s);
    free(s2c);
}
END_TEST

static void expect_refused(SSL_CTX *cctx, const char *host, const char *why)
{
    struct side c, s;
    char buf[200];
    pair(&c, &s, cctx, host, "x:1");
    run(&c, &s, 65536);
    ck_assert_int_eq(c.rc, TS_E_TLS);
    ck_assert(ts_tls_failed(c.t));
    ck_assert(!ts_tls_established(c.t));
    ts_tls_strerror(c.t, buf, sizeof(buf));
    ck_assert_msg(strstr(buf, why) != NULL, "reason '%s' lacks '%s'", buf, why);
    /* The client's alert reached the server, which fails too. */
    ck_assert_int_eq(s.rc, TS_E_TLS);
    ck_assert_int_eq(ts_tls_write(c.t, "x", 1), TS_E_TLS);
    side_free(&c);
    side_free(&s);
}

START_TEST(test_wrong_ca)
{
    SSL_CTX *other;
    ck_assert_int_eq(ts_tls_client_ctx(other_path, NULL, NULL, &other), TS_OK);
    expect_refused(other, "127.0.0.1", "certificate");
    SSL_CTX_free(other);
}
END_TEST

START_TEST(test_wrong_host)
{
    expect_refused(cli_ctx, "example.com", "mismatch");
    expect_refused(cli_ctx, "127.0.0.2", "mismatch");
    expect_refused(cli_ctx, "::1", "mismatch");
    expect_refused(cli_ctx, "localhostx", "mismatch");
}
END_TEST

/* A bare OpenSSL peer on memory BIOs, for behaviour our contexts refuse to
 * produce (no ALPN). */
struct raw {
    SSL *ssl;
    BIO *r, *w;
};

static void raw_new(struct raw *r, SSL_CTX *ctx, int server)
{
    r->ssl = SSL_new(ctx);
    r->r = BIO_new(BIO_s_mem());
    r->w = BIO_new(BIO_s_mem());
    SSL_set_bio(r->ssl, r->r, r->w);
    if (server)
        SSL_set_accept_state(r->ssl);
    else
        SSL_set_connect_state(r->ssl);
}

/* Pumps a raw peer against an engine until nothing moves; returns the raw
 * side's last SSL_do_handshake result. */
static int raw_run(struct raw *r, struct side *e)
{
    int hr = 0;
    uint8_t buf[65536];
    for (int i = 0; i < 1000; i++) {
        size_t moved = 0;
        ERR_clear_error();
        hr = SSL_do_handshake(r->ssl);
        int n;
        while ((n = BIO_read(r->w, buf, sizeof(buf))) > 0) {
            ts_tls_feed(e->t, buf, (size_t)n);
            moved += (size_t)n;
        }
        side_read(e);
        size_t m;
        while ((m = ts_tls_take(e->t, buf, sizeof(buf))) > 0) {
            BIO_write(r->r, buf, (int)m);
            moved += m;
        }
        if (!moved)
            break;
    }
    return hr;
}

START_TEST(test_client_without_alpn_refused)
{
    SSL_CTX *bare = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(bare, SSL_VERIFY_NONE, NULL);
    struct raw r;
    raw_new(&r, bare, 0);
    struct side s = {0};
    ck_assert_int_eq(ts_tls_new_server(srv_ctx, &s.t), TS_OK);
    int hr = raw_run(&r, &s);
    ck_assert_int_ne(hr, 1);
    ck_assert_int_eq(s.rc, TS_E_TLS);
    ck_assert(!ts_tls_established(s.t));
    char buf[200];
    ck_assert_ptr_nonnull(strstr(ts_tls_strerror(s.t, buf, sizeof(buf)), "application"));
    /* The peer was told why: its error is the alert we sent. */
    ck_assert_int_eq(SSL_get_error(r.ssl, hr), SSL_ERROR_SSL);
    SSL_free(r.ssl);
    SSL_CTX_free(bare);
    side_free(&s);

    /* A client offering other protocols only is refused the same way. */
    bare = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(bare, SSL_VERIFY_NONE, NULL);
    ck_assert_int_eq(SSL_CTX_set_alpn_protos(bare, (const unsigned char *)"\x02h2", 3), 0);
    raw_new(&r, bare, 0);
    ck_assert_int_eq(ts_tls_new_server(srv_ctx, &s.t), TS_OK);
    hr = raw_run(&r, &s);
    ck_assert_int_ne(hr, 1);
    ck_assert_int_eq(s.rc, TS_E_TLS);
    SSL_free(r.ssl);
    SSL_CTX_free(bare);
    side_free(&s);
}
END_TEST

START_TEST(test_server_without_alpn_refused)
{
    SSL_CTX *bare = SSL_CTX_new(TLS_server_method());
    ck_assert_int_eq(SSL_CTX_use_certificate_chain_file(bare, cert_path), 1);
    ck_assert_int_eq(SSL_CTX_use_PrivateKey_file(bare, key_path, SSL_FILETYPE_PEM), 1);
    struct raw r;
    raw_new(&r, bare, 1);
    struct side c = {0};
    ck_assert_int_eq(ts_tls_new_client(cli_ctx, "127.0.0.1", NULL, &c.t), TS_OK);
    ts_tls_handshake(c.t);
    raw_run(&r, &c);
    ck_assert_int_eq(c.rc, TS_E_TLS);
    ck_assert(!ts_tls_established(c.t));
    char buf[200];
    ck_assert_ptr_nonnull(strstr(ts_tls_strerror(c.t, buf, sizeof(buf)), "application"));
    SSL_free(r.ssl);
    SSL_CTX_free(bare);
    side_free(&c);
}
END_TEST

/* The benchmark's comparison broker (mosquitto) knows no ALPN: a foreign
 * client context completes a handshake with it, still verifying it, while
 * the ordinary one refuses (test_server_without_alpn_refused). */
START_TEST(test_foreign_ctx_without_alpn)
{
    SSL_CTX *bare = SSL_CTX_new(TLS_server_method());
    ck_assert_int_eq(SSL_CTX_use_certificate_chain_file(bare, cert_path), 1);
    ck_assert_int_eq(SSL_CTX_use_PrivateKey_file(bare, key_path, SSL_FILETYPE_PEM), 1);
    SSL_CTX *foreign;
    ck_assert_int_eq(ts_tls_client_ctx_foreign(ca_path, &foreign), TS_OK);
    struct raw r;
    raw_new(&r, bare, 1);
    struct side c = {0};
    ck_assert_int_eq(ts_tls_new_client(foreign, "127.0.0.1", NULL, &c.t), TS_OK);
    ts_tls_handshake(c.t);
    ck_assert_int_eq(raw_run(&r, &c), 1);
    ck_assert(ts_tls_established(c.t));
    SSL_free(r.ssl);
    side_free(&c);

    /* Verification is unchanged: a certificate for another address fails. */
    raw_new(&r, bare, 1);
    ck_assert_int_eq(ts_tls_new_client(foreign, "127.0.0.2", NULL, &c.t), TS_OK);
    ts_tls_handshake(c.t);
    raw_run(&r, &c);
    ck_assert(!ts_tls_established(c.t));
    ck_assert_int_eq(c.rc, TS_E_TLS);
    SSL_free(r.ssl);
    side_free(&c);
    SSL_CTX_free(foreign);
    SSL_CTX_free(bare);
}
END_TEST

START_TEST(test_close_notify_half_close)
{
    struct side c, s;
    pair(&c, &s, cli_ctx, "127.0.0.1", NULL);
    run(&c, &s, 4096);
    ck_assert_int_eq(ts_tls_write(c.t, "last", 4), TS_OK);
    ts_tls_shutdown(c.t);
    ts_tls_shutdown(c.t); /* idempotent */
    ck_assert_int_eq(ts_tls_write(c.t, "more", 4), TS_E_CLOSED);
    run(&c, &s, 4096);
    ck_assert_uint_eq(s.got_len, 4);
    ck_assert_mem_eq(s.got, "last", 4);
    ck_assert_int_eq(s.rc, TS_E_CLOSED);
    ck_assert(ts_tls_peer_closed(s.t));
    ck_assert(!ts_tls_failed(s.t));
    /* Half-close: the server may still answer after the client's
     * close_notify, and the client still reads it. */
    ck_assert_int_eq(ts_tls_write(s.t, "bye", 3), TS_OK);
    ts_tls_shutdown(s.t);
    run(&c, &s, 4096);
    ck_assert_uint_eq(c.got_len, 3);
    ck_assert_mem_eq(c.got, "bye", 3);
    ck_assert_int_eq(c.rc, TS_E_CLOSED);
    side_free(&c);
    side_free(&s);
}
END_TEST

static int connect_once(const char *key)
{
    struct side c, s;
    pair(&c, &s, cli_ctx, "127.0.0.1", key);
    run(&c, &s, 65536);
    ck_assert(ts_tls_established(c.t));
    /* The client must read once after the handshake for TLS 1.3 tickets to
     * reach the table. */
    ck_assert_int_eq(ts_tls_write(s.t, "hi", 2), TS_OK);
    run(&c, &s, 65536);
    ck_assert_uint_eq(c.got_len, 2);
    int resumed = ts_tls_resumed(c.t);
    ck_assert_int_eq(resumed, ts_tls_resumed(s.t));
    /* OpenSSL forgets the session of a connection freed without
     * close_notify: end cleanly. */
    ts_tls_shutdown(c.t);
    side_free(&c);
    side_free(&s);
    return resumed;
}

/* The server sends one TLS 1.3 ticket per handshake, not OpenSSL's two:
 * a client keeps one session per destination, and each ticket costs the
 * server a session copy, its encoding and its encryption. */
static int tickets_seen;

static int count_ticket_cb(SSL *ssl, SSL_SESSION *sess)
{
    (void)ssl;
    (void)sess;
    tickets_seen++;
    return 0; /* not kept */
}

START_TEST(test_one_ticket_per_handshake)
{
    SSL_CTX *cctx;
    ck_assert_int_eq(ts_tls_client_ctx(ca_path, NULL, NULL, &cctx), TS_OK);
    SSL_CTX_sess_set_new_cb(cctx, count_ticket_cb);
    tickets_seen = 0;
    struct side c, s;
    pair(&c, &s, cctx, "127.0.0.1", NULL);
    run(&c, &s, 65536);
    ck_assert(ts_tls_established(c.t));
    /* tickets follow the handshake: the client reads them with data */
    ck_assert_int_eq(ts_tls_write(s.t, "hi", 2), TS_OK);
    run(&c, &s, 65536);
    ck_assert_uint_eq(c.got_len, 2);
    ck_assert_int_eq(tickets_seen, 1);
    side_free(&c);
    side_free(&s);
    SSL_CTX_free(cctx);
}
END_TEST

START_TEST(test_resumption)
{
    ck_assert(!connect_once("127.0.0.1:7420"));
    ck_assert(connect_once("127.0.0.1:7420"));
    ck_assert(connect_once("127.0.0.1:7420"));
    ck_assert(!connect_once("127.0.0.1:7421")); /* another destination */
    ck_assert(!connect_once(NULL));             /* no key, no resumption */
    /* More destinations than slots: the oldest is evicted, recent ones stay. */
    char key[32];
    for (int i = 0; i < TS_TLS_SESSION_SLOTS; i++) {
        snprintf(key, sizeof(key), "h:%d", i);
        ck_assert(!connect_once(key));
    }
    ck_assert(!connect_once("127.0.0.1:7420"));
    snprintf(key, sizeof(key), "h:%d", TS_TLS_SESSION_SLOTS - 1);
    ck_assert(connect_once(key));
}
END_TEST

START_TEST(test_ctx_errors)
{
    SSL_CTX *ctx = (SSL_CTX *)1;
    char missing[320];
    snprintf(missing, sizeof(missing), "%s/missing.pem", dir);
    ck_assert_int_eq(ts_tls_server_ctx(missing, key_path, &ctx), TS_E_CONFIG);
    ck_assert_ptr_null(ctx);
    ck_assert_int_eq(ts_tls_server_ctx(cert_path, missing, &ctx), TS_E_CONFIG);
    /* A certificate is not a key. */
    ck_assert_int_eq(ts_tls_server_ctx(cert_path, cert_path, &ctx), TS_E_CONFIG);
    ck_assert_int_eq(ts_tls_client_ctx(missing, NULL, NULL, &ctx), TS_E_CONFIG);
    ck_assert_ptr_null(ctx);
    /* A client certificate is optional but must load when given. */
    ck_assert_int_eq(ts_tls_client_ctx(ca_path, cert_path, key_path, &ctx), TS_OK);
    SSL_CTX_free(ctx);
    ck_assert_int_eq(ts_tls_client_ctx(ca_path, cert_path, missing, &ctx), TS_E_CONFIG);
    ck_assert_uint_eq(ERR_peek_error(), 0); /* the queue is left clean */
}
END_TEST

START_TEST(test_garbage_input)
{
    struct side s = {0};
    ck_assert_int_eq(ts_tls_new_server(srv_ctx, &s.t), TS_OK);
    const char *get = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    ck_assert_int_eq(ts_tls_feed(s.t, get, strlen(get)), TS_OK);
    side_read(&s);
    ck_assert_int_eq(s.rc, TS_E_TLS);
    ck_assert(ts_tls_failed(s.t));
    /* Failure is sticky. */
    side_read(&s);
    ck_assert_int_eq(s.rc, TS_E_TLS);
    ck_assert_int_eq(ts_tls_handshake(s.t), TS_E_TLS);
    side_free(&s);
}
END_TEST

/* What an engine adds to its SSL object: the struct, one BIO, nothing
 * more (two BIOs and an ex_data slot cost about 300 bytes more); 328
 * bytes with ASan and in a plain Debug build. Counted exactly
 * (ts_testheap) in every build type: glibc's own in-use figure counts
 * the warm-up engine's freed chunks, parked in the thread cache, as still
 * in use, so without ASan the bare SSL_new that reused some of them read
 * 840 bytes low and the engine 688 bytes over it. */
START_TEST(test_engine_overhead)
{
    struct ts_tls *warm;
    ck_assert_int_eq(ts_tls_new_server(srv_ctx, &warm), TS_OK); /* one-time setup */
    ts_tls_free(warm);
    ts_testheap_start();
    SSL *bare = SSL_new(srv_ctx);
    ck_assert_ptr_nonnull(bare);
    long long b1 = ts_testheap_live();
    struct ts_tls *t;
    ck_assert_int_eq(ts_tls_new_server(srv_ctx, &t), TS_OK);
    long long b2 = ts_testheap_live();
    ts_testheap_stop();
    long long overhead = (b2 - b1) - b1;
    ck_assert_msg(overhead <= 400, "engine adds %lld bytes to its SSL object", overhead);
    ts_tls_free(t);
    SSL_free(bare);
}
END_TEST

/* Idle established engines hold no I/O buffer, whatever they carried: a
 * big transfer leaves at most the per-thread cached buffer behind, and the
 * next one works. */
START_TEST(test_idle_buffers_released)
{
    enum { PAIRS = 8, BIG = 64 << 10 };
    struct side c[PAIRS], s[PAIRS];
    uint8_t *big = malloc(BIG);
    fill(big, BIG, 3);
    for (int i = 0; i < PAIRS; i++) {
        pair(&c[i], &s[i], cli_ctx, "127.0.0.1", NULL);
        run(&c[i], &s[i], 65536);
        ck_assert(ts_tls_established(s[i].t));
    }
    ts_testheap_start(); /* from idle on */
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < PAIRS; i++) {
            ck_assert_int_eq(ts_tls_write(s[i].t, big, BIG), TS_OK);
            ck_assert_int_eq(ts_tls_write(c[i].t, big, BIG), TS_OK);
            run(&c[i], &s[i], 65536);
            ck_assert_uint_eq(c[i].got_len, (size_t)(round + 1) * BIG);
            ck_assert_uint_eq(s[i].got_len, (size_t)(round + 1) * BIG);
            ck_assert_mem_eq(c[i].got + (size_t)round * BIG, big, BIG);
            ck_assert_uint_eq(ts_tls_pending(s[i].t), 0);
        }
        /* Keeping them would be 4 FIFOs of 128 KiB per pair (4 MiB); what
         * the test itself holds (got) is subtracted. */
        long long held = ts_testheap_live() - 2LL * PAIRS * (round + 1) * BIG;
        ck_assert_msg(held < 512 << 10, "round %d: %lld bytes held by idle engines", round, held);
    }
    for (int i = 0; i < PAIRS; i++) {
        side_free(&c[i]);
        side_free(&s[i]);
    }
    free(big);
}
END_TEST

/* A bare OpenSSL client: OpenSSL's default offer, our ALPN, no
 * verification. */
static SSL_CTX *bare_client_ctx(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    ck_assert_ptr_nonnull(ctx);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    ck_assert_int_eq(SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)"\x0cthreadsync/1", 13),
                     0);
    return ctx;
}

/* TLS 1.3 with a client offering OpenSSL's default order (AES-256-GCM
 * first): the server's preference, AES-128-GCM with SHA-256, is agreed (a
 * SHA-384 transcript context costs an idle connection about 300 bytes
 * more, and AES-256 four rounds more per block of fan-out). */
START_TEST(test_tls13_suite_preference)
{
    SSL_CTX *dflt = bare_client_ctx();
    struct raw r;
    raw_new(&r, dflt, 0);
    struct side s = {0};
    ck_assert_int_eq(ts_tls_new_server(srv_ctx, &s.t), TS_OK);
    ck_assert_int_eq(raw_run(&r, &s), 1);
    ck_assert(ts_tls_established(s.t));
    ck_assert_int_eq(SSL_version(r.ssl), TLS1_3_VERSION);
    ck_assert_str_eq(SSL_CIPHER_get_name(SSL_get_current_cipher(r.ssl)), "TLS_AES_128_GCM_SHA256");
    SSL_free(r.ssl);
    SSL_CTX_free(dflt);
    side_free(&s);
}
END_TEST

static int count_suites_cb(SSL *ssl, int *al, void *arg)
{
    const unsigned char *p;
    *(size_t *)arg = SSL_client_hello_get0_ciphers(ssl, &p) / 2;
    return SSL_CLIENT_HELLO_SUCCESS;
}

/* TLS 1.2 works with forward-secret AEAD suites and only with them; our
 * client offers those and TLS 1.3's, nothing else (the server keeps the
 * offer for the life of the connection). */
START_TEST(test_tls12_suites)
{
    /* A TLS 1.2-only peer with ALPN and OpenSSL's default list: agreed on
     * an ECDHE AEAD suite. */
    SSL_CTX *old = bare_client_ctx();
    SSL_CTX_set_max_proto_version(old, TLS1_2_VERSION);
    struct raw r;
    raw_new(&r, old, 0);
    struct side s = {0};
    ck_assert_int_eq(ts_tls_new_server(srv_ctx, &s.t), TS_OK);
    ck_assert_int_eq(raw_run(&r, &s), 1);
    ck_assert(ts_tls_established(s.t));
    ck_assert_int_eq(SSL_version(r.ssl), TLS1_2_VERSION);
    const SSL_CIPHER *ciph = SSL_get_current_cipher(r.ssl);
    ck_assert_int_eq(SSL_CIPHER_get_kx_nid(ciph), NID_kx_ecdhe);
    ck_assert(SSL_CIPHER_is_aead(ciph));
    SSL_free(r.ssl);
    side_free(&s);

    /* The same peer offering only ECDHE with CBC (for either kind of
     * server key) is refused. */
    ck_assert_int_eq(SSL_CTX_set_cipher_list(old, "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA"),
                     1);
    raw_new(&r, old, 0);
    ck_assert_int_eq(ts_tls_new_server(srv_ctx, &s.t), TS_OK);
    ck_assert_int_ne(raw_run(&r, &s), 1);
    ck_assert_int_eq(s.rc, TS_E_TLS);
    SSL_free(r.ssl);
    side_free(&s);
    SSL_CTX_free(old);

    /* Our client's offer: TLS 1.3's three and the six TLS 1.2 suites. */
    SSL_CTX *bare = SSL_CTX_new(TLS_server_method());
    size_t offered = 0;
    SSL_CTX_set_client_hello_cb(bare, count_suites_cb, &offered);
    ck_assert_int_eq(SSL_CTX_use_certificate_chain_file(bare, cert_path), 1);
    ck_assert_int_eq(SSL_CTX_use_PrivateKey_file(bare, key_path, SSL_FILETYPE_PEM), 1);
    raw_new(&r, bare, 1);
    struct side c = {0};
    ck_assert_int_eq(ts_tls_new_client(cli_ctx, "127.0.0.1", NULL, &c.t), TS_OK);
    ts_tls_handshake(c.t);
    raw_run(&r, &c);
    ck_assert_uint_gt(offered, 0);
    ck_assert_uint_le(offered, 10); /* 9, and the renegotiation SCSV */
    SSL_free(r.ssl);
    SSL_CTX_free(bare);
    side_free(&c);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("ts_tls");
    TCase *tc = tcase_create("engine");
    tcase_add_checked_fixture(tc, setup, teardown);
    /* A hang guard, not a speed bound: the whole suite takes about 15 s of
     * CPU under ASan, and test_handshake_and_chunking (every chunking, down
     * to a byte at a time) alone ran past 60 s of wall time on two cores
     * at load 16. */
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_handshake_and_chunking);
    tcase_add_test(tc, test_wrong_ca);
    tcase_add_test(tc, test_wrong_host);
    tcase_add_test(tc, test_client_without_alpn_refused);
    tcase_add_test(tc, test_server_without_alpn_refused);
    tcase_add_test(tc, test_foreign_ctx_without_alpn);
    tcase_add_test(tc, test_close_notify_half_close);
    tcase_add_test(tc, test_resumption);
    tcase_add_test(tc, test_one_ticket_per_handshake);
    tcase_add_test(tc, test_tls13_suite_preference);
    tcase_add_test(tc, test_ctx_errors);
    tcase_add_test(tc, test_garbage_input);
    tcase_add_test(tc, test_engine_overhead);
    tcase_add_test(tc, test_idle_buffers_released);
    tcase_add_test(tc, test_tls12_suites);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ts_check_run(suite());
}
