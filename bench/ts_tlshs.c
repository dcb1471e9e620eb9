/*
 * ts_tlshs: the server's cost of one TLS handshake, full and resumed,
 * through the product's own engine (net/ts_tls) and server context, both
 * ends in memory in one process: no sockets, no scheduler, so the figure
 * does not depend on the machine's load when counted in instructions.
 *
 *   valgrind --tool=callgrind --toggle-collect='server_step*' \
 *       build-bench/bench/ts_tlshs --cert C --key K --ca CA --count 50
 *
 * counts only the server's work (its engine's creation, handshake steps
 * and freeing go through server_step*). The tool runs --count full
 * handshakes, then --count resumed ones (each offering the latest ticket;
 * one full handshake first gets one), and prints how many resumed. --only
 * full|resumed runs one phase: the resumed phase's total, less one full
 * handshake, divided by the count is a resumed handshake. The client's
 * side (what ts_loadgen and libthreadsync spend per reconnect: the engine,
 * the handshake, reading the ticket into the session table) goes through
 * client_step*: --toggle-collect='client_step*' counts it instead.
 *
 * --hold keeps every server engine of the phase open and idle (as an idle
 * subscriber's) and prints the heap they hold, per engine, from glibc's
 * mallinfo2 (in-use chunks: malloc's headers and rounding included, as RSS
 * sees them; under valgrind --tool=massif the same run shows who holds
 * what). Use build-bench's Release binary: under ASan, which owns the heap,
 * mallinfo2 reads 0. bench/README.md ("reconnect", "memory") has the figures.
 */
#include "ts_err.h"
#include "ts_log.h"
#include "ts_tls.h"

#include <getopt.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const char *what)
{
    fprintf(stderr, "ts_tlshs: %s\n", what);
    exit(1);
}

/* Moves a's output into b. Returns bytes moved. */
static size_t move(struct ts_tls *a, struct ts_tls *b)
{
    uint8_t buf[16384];
    size_t n, moved = 0;
    while ((n = ts_tls_take(a, buf, sizeof(buf))) > 0) {
        if (ts_tls_feed(b, buf, n) != TS_OK)
            die("out of memory");
        moved += n;
    }
    return moved;
}

/* Drives an engine: the handshake, then reads until it would block. */
static void step(struct ts_tls *t)
{
    uint8_t buf[4096];
    size_t n;
    if (!ts_tls_established(t)) {
        int rc = ts_tls_handshake(t);
        if (rc != TS_OK && rc != TS_E_AGAIN)
            die("handshake failed");
        if (rc != TS_OK)
            return;
    }
    while (ts_tls_read(t, buf, sizeof(buf), &n) == TS_OK)
        ;
}

/* The server's side, each through a function of its own for callgrind's
 * --toggle-collect (an engine's creation and freeing count too). */
__attribute__((noinline)) void server_step(struct ts_tls *t);
__attribute__((noinline)) void server_step(struct ts_tls *t)
{
    step(t);
}

__attribute__((noinline)) void server_step_new(SSL_CTX *ctx, struct ts_tls **t);
__attribute__((noinline)) void server_step_new(SSL_CTX *ctx, struct ts_tls **t)
{
    if (ts_tls_new_server(ctx, t) != TS_OK)
        die("server engine");
}

__attribute__((noinline)) void server_step_free(struct ts_tls *t);
__attribute__((noinline)) void server_step_free(struct ts_tls *t)
{
    ts_tls_free(t);
}

/* The client's side, likewise. */
__attribute__((noinline)) void client_step(struct ts_tls *t);
__attribute__((noinline)) void client_step(struct ts_tls *t)
{
    step(t);
}

__attribute__((noinline)) void client_step_new(SSL_CTX *ctx, const char *key, struct ts_tls **t);
__attribute__((noinline)) void client_step_new(SSL_CTX *ctx, const char *key, struct ts_tls **t)
{
    if (ts_tls_new_client(ctx, "127.0.0.1", key, t) != TS_OK)
        die("client engine");
}

__attribute__((noinline)) void client_step_free(struct ts_tls *t);
__attribute__((noinline)) void client_step_free(struct ts_tls *t)
{
    ts_tls_shutdown(t); /* a session freed without close_notify is not resumed */
    ts_tls_free(t);
}

/* One connection; returns 1 when it resumed. With hold, the server's
 * engine is left open in *hold instead of freed. */
static int connect_once(SSL_CTX *sctx, SSL_CTX *cctx, const char *key, struct ts_tls **hold)
{
    struct ts_tls *c, *s;
    client_step_new(cctx, key, &c);
    server_step_new(sctx, &s);
    for (int i = 0; i < 100; i++) {
        client_step(c);
        size_t moved = move(c, s);
        server_step(s);
        moved += move(s, c);
        if (!moved && ts_tls_established(c) && ts_tls_established(s))
            break;
    }
    /* One byte of data after the handshake: the client reads the tickets
     * the server sent (TLS 1.3), as a subscriber's first answer does. */
    if (ts_tls_write(s, "x", 1) != TS_OK) /* the server's data: not counted */
        die("write");
    move(s, c);
    client_step(c);
    if (!ts_tls_established(c) || !ts_tls_established(s))
        die("no handshake");
    int resumed = ts_tls_resumed(s);
    client_step_free(c);
    if (hold) {
        server_step(s); /* reads to "would block": gives its buffers up */
        *hold = s;
    } else {
        server_step_free(s);
    }
    return resumed;
}

/* Runs n connections (after a first one that gets a ticket, when key is
 * set); with hold, prints the heap the n idle server engines hold. */
static int phase(SSL_CTX *sctx, SSL_CTX *cctx, const char *key, int n, int hold)
{
    struct ts_tls **held = hold ? calloc((size_t)n, sizeof(*held)) : NULL;
    if (hold && !held)
        die("out of memory");
    int resumed = 0;
    if (key)
        connect_once(sctx, cctx, key, NULL); /* the first ticket */
    size_t before = mallinfo2().uordblks;
    for (int i = 0; i < n; i++)
        resumed += connect_once(sctx, cctx, key, held ? &held[i] : NULL);
    if (held) {
        size_t after = mallinfo2().uordblks;
        printf("%s: %d idle server engines hold %.0f B of heap each (in-use chunks, malloc "
               "headers included)\n",
               key ? "resumed" : "full", n, (double)(after - before) / n);
        for (int i = 0; i < n; i++)
            server_step_free(held[i]);
        free(held);
    }
    return resumed;
}

int main(int argc, char **argv)
{
    const char *cert = NULL, *key = NULL, *ca = NULL, *only = NULL;
    int count = 100, hold = 0;
    static const struct option lo[] = {
        {"cert", 1, 0, 'c'}, {"key", 1, 0, 'k'},  {"ca", 1, 0, 'a'}, {"count", 1, 0, 'n'},
        {"only", 1, 0, 'o'}, {"hold", 0, 0, 'h'}, {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 'c':
            cert = optarg;
            break;
        case 'k':
            key = optarg;
            break;
        case 'a':
            ca = optarg;
            break;
        case 'n':
            count = atoi(optarg);
            break;
        case 'o':
            only = optarg;
            break;
        case 'h':
            hold = 1;
            break;
        default:
            die("usage: ts_tlshs --cert FILE --key FILE --ca FILE [--count N] "
                "[--only full|resumed] [--hold]");
        }
    }
    if (!cert || !key || !ca || count <= 0)
        die("usage: ts_tlshs --cert FILE --key FILE --ca FILE [--count N] [--only full|resumed] "
            "[--hold]");
    ts_log_level_current = TS_LOG_ERROR;
    SSL_CTX *sctx = NULL, *cctx = NULL;
    if (ts_tls_server_ctx(cert, key, &sctx) != TS_OK ||
        ts_tls_client_ctx(ca, NULL, NULL, &cctx) != TS_OK)
        die("contexts");
    int full = !only || strcmp(only, "full") == 0;
    int res = !only || strcmp(only, "resumed") == 0;
    int resumed = 0;
    if (full)
        resumed += phase(sctx, cctx, NULL, count, hold);
    if (res)
        resumed += phase(sctx, cctx, "bench", count, hold);
    printf("full=%d resumed=%d of %d (server tickets per handshake: %zu)\n", full ? count : 0,
           resumed, res ? count : 0, SSL_CTX_get_num_tickets(sctx));
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
    return 0;
}
