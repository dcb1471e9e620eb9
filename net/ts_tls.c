/*
 * ts_tls: OpenSSL contexts and the memory-BIO engine.
 *
 * Engine invariants: every SSL_* call is preceded by ERR_clear_error(), so
 * an error read after it is that call's (OpenSSL's queue is per thread and
 * other connections leave errors in it). Once failed, an engine makes no
 * more SSL calls except SSL_free.
 *
 * I/O buffers: the engine's one BIO (both directions) is our own pair of
 * byte FIFOs ("ts_fifo"), not two BIO_s_mem. A memory BIO keeps its largest
 * allocation forever, and giving it back (freeing the BIO) wipes the whole
 * buffer with OPENSSL_cleanse, a byte loop, as does every growth; under
 * fan-out that wiping of ciphertext (which is not secret) was a large share
 * of the server's CPU. A FIFO gives its storage up when it is found empty
 * after the handshake, so an idle connection holds no I/O buffer, whatever
 * frame it last carried; the storage goes to a one-buffer cache per thread,
 * where the next connection the loop serves picks it up instead of
 * allocating (and faulting in) a fresh one.
 *
 * Session table: the client context carries TS_TLS_SESSION_SLOTS entries
 * "host:port" -> SSL_SESSION under a mutex (a context may be shared by
 * loops on several threads). OpenSSL's new-session callback fills it; in
 * TLS 1.3 that happens when a ticket arrives after the handshake, inside
 * SSL_read, which is why a connection must read once before it is worth
 * resuming.
 */
#include "ts_tls.h"

#include "ts_err.h"
#include "ts_frame.h"
#include "ts_log.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#define ALPN_LEN (sizeof(TS_ALPN) - 1)
/* The ALPN list as it goes on the wire: one length-prefixed name. */
static const unsigned char alpn_wire[] = "\x0c" TS_ALPN;
_Static_assert(sizeof(alpn_wire) - 1 == ALPN_LEN + 1, "ALPN length prefix");

/* The TLS 1.2 cipher suites both sides allow. */
#define TLS12_SUITES "ECDHE+AESGCM:ECDHE+CHACHA20"
/* TLS 1.3's, in the server's order of preference (ts_tls_server_ctx). */
#define TLS13_SUITES "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

/* SSL_write is given at most this much at once (its length is an int). */
#define WRITE_SLICE (1u << 20)

/* ---- session table (client contexts) ---- */

struct sess_slot {
    char *key;
    SSL_SESSION *sess;
    uint64_t used;
};

struct sess_table {
    pthread_mutex_t mu;
    uint64_t tick;
    struct sess_slot slot[TS_TLS_SESSION_SLOTS];
    int foreign; /* ts_tls_client_ctx_foreign: no ALPN offered or required */
};

static int table_idx = -1;
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void table_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    struct sess_table *tb = ptr;
    if (!tb)
        return;
    for (int i = 0; i < TS_TLS_SESSION_SLOTS; i++) {
        free(tb->slot[i].key);
        SSL_SESSION_free(tb->slot[i].sess);
    }
    pthread_mutex_destroy(&tb->mu);
    free(tb);
}

static void table_idx_init(void)
{
    table_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, table_free);
}

static struct sess_table *table_of(SSL_CTX *ctx)
{
    return table_idx < 0 ? NULL : SSL_CTX_get_ex_data(ctx, table_idx);
}

/* Takes ownership of sess when it returns 1. */
static int table_put(struct sess_table *tb, const char *key, SSL_SESSION *sess)
{
    int rc = 0;
    pthread_mutex_lock(&tb->mu);
    struct sess_slot *victim = &tb->slot[0];
    for (int i = 0; i < TS_TLS_SESSION_SLOTS; i++) {
        struct sess_slot *s = &tb->slot[i];
        if (s->key && strcmp(s->key, key) == 0) {
            victim = s;
            break;
        }
        if (!s->key || s->used < victim->used)
            victim = s;
        if (!s->key)
            break;
    }
    if (!victim->key || strcmp(victim->key, key) != 0) {
        char *k = strdup(key);
        if (!k)
            goto out;
        free(victim->key);
        victim->key = k;
    }
    SSL_SESSION_free(victim->sess);
    victim->sess = sess;
    victim->used = ++tb->tick;
    rc = 1;
out:
    pthread_mutex_unlock(&tb->mu);
    return rc;
}

static void table_apply(struct sess_table *tb, const char *key, SSL *ssl)
{
    pthread_mutex_lock(&tb->mu);
    for (int i = 0; i < TS_TLS_SESSION_SLOTS; i++) {
        struct sess_slot *s = &tb->slot[i];
        if (s->key && strcmp(s->key, key) == 0) {
            if (s->sess && SSL_SESSION_is_resumable(s->sess))
                SSL_set_session(ssl, s->sess); /* takes its own reference */
            s->used = ++tb->tick;
            break;
        }
    }
    pthread_mutex_unlock(&tb->mu);
}

static void table_drop(struct sess_table *tb, const char *key)
{
    pthread_mutex_lock(&tb->mu);
    for (int i = 0; i < TS_TLS_SESSION_SLOTS; i++) {
        struct sess_slot *s = &tb->slot[i];
        if (s->key && strcmp(s->key, key) == 0) {
            SSL_SESSION_free(s->sess);
            s->sess = NULL;
        }
    }
    pthread_mutex_unlock(&tb->mu);
}

/* ---- ts_fifo: the engine's byte queues, and its one BIO ---- */

#define FIFO_MIN (4u << 10)
/* Storage above this is freed rather than cached (one cached per thread). */
#define FIFO_CACHE_MAX (512u << 10)

struct fifo {
    uint8_t *p;
    size_t r, w, cap; /* bytes [r, w) are queued */
};

struct fifo_cache {
    uint8_t *p;
    size_t cap;
};

static _Thread_local struct fifo_cache tl_cache;
static _Thread_local int tl_cache_registered;
static pthread_key_t cache_key;
static BIO_METHOD *fifo_method;
static pthread_once_t fifo_once = PTHREAD_ONCE_INIT;

/* A thread's cached buffer is freed when the thread exits. */
static void cache_destroy(void *arg)
{
    struct fifo_cache *c = arg;
    free(c->p);
    c->p = NULL;
    c->cap = 0;
}

static int fifo_bwrite(BIO *b, const char *in, int n);
static int fifo_bread(BIO *b, char *out, int n);
static long fifo_ctrl(BIO *b, int cmd, long num, void *ptr);
static int fifo_bio_create(BIO *b);

static void fifo_init_once(void)
{
    if (pthread_key_create(&cache_key, cache_destroy) != 0)
        return;
    int idx = BIO_get_new_index();
    BIO_METHOD *m = idx > 0 ? BIO_meth_new(idx | BIO_TYPE_SOURCE_SINK, "ts_fifo") : NULL;
    if (!m || !BIO_meth_set_write(m, fifo_bwrite) || !BIO_meth_set_read(m, fifo_bread) ||
        !BIO_meth_set_ctrl(m, fifo_ctrl) || !BIO_meth_set_create(m, fifo_bio_create)) {
        BIO_meth_free(m);
        return;
    }
    fifo_method = m; /* process lifetime */
}

static size_t fifo_len(const struct fifo *f)
{
    return f->w - f->r;
}

/* Room for n more bytes after f->w. */
static int fifo_reserve(struct fifo *f, size_t n)
{
    if (f->cap - f->w >= n)
        return 0;
    size_t len = fifo_len(f);
    if (f->r && len + n <= f->cap) {
        memmove(f->p, f->p + f->r, len);
        f->r = 0;
        f->w = len;
        return 0;
    }
    size_t cap = f->cap ? f->cap * 2 : FIFO_MIN;
    while (cap < len + n)
        cap *= 2;
    if (!f->p && tl_cache.p && tl_cache.cap >= cap) {
        f->p = tl_cache.p;
        f->cap = tl_cache.cap;
        tl_cache.p = NULL;
        tl_cache.cap = 0;
        f->r = f->w = 0;
        return 0;
    }
    if (f->r) {
        /* NOLINTNEXTLINE(clang-analyzer-core.NonNullParamChecker): r > 0 only with storage. */
        memmove(f->p, f->p + f->r, len);
        f->r = 0;
        f->w = len;
    }
    uint8_t *p = realloc(f->p, cap);
    if (!p)
        return -1;
    f->p = p;
    f->cap = cap;
    return 0;
}

static int fifo_append(struct fifo *f, const void *data, size_t n)
{
    if (!n)
        return 0;
    if (fifo_reserve(f, n) != 0)
        return -1;
    memcpy(f->p + f->w, data, n);
    f->w += n;
    return 0;
}

static size_t fifo_take(struct fifo *f, void *out, size_t n)
{
    size_t len = fifo_len(f);
    if (n > len)
        n = len;
    if (!n)
        return 0;
    memcpy(out, f->p + f->r, n);
    f->r += n;
    if (f->r == f->w)
        f->r = f->w = 0;
    return n;
}

static void fifo_free(struct fifo *f)
{
    free(f->p);
    f->p = NULL;
    f->cap = f->r = f->w = 0;
}

/* Gives up the storage of an empty FIFO, to the thread's cache when it is
 * empty or smaller. */
static void fifo_release(struct fifo *f)
{
    if (!f->p || fifo_len(f))
        return;
    if (f->cap <= FIFO_CACHE_MAX && f->cap > tl_cache.cap) {
        if (!tl_cache_registered)
            tl_cache_registered = pthread_setspecific(cache_key, &tl_cache) == 0;
        if (tl_cache_registered) {
            free(tl_cache.p);
            tl_cache.p = f->p;
            tl_cache.cap = f->cap;
            f->p = NULL;
        }
    }
    fifo_free(f);
}

/* ---- engine ---- */

/* One BIO serves both directions (reads take from `in`, writes append to
 * `out`) and carries the engine as its data, so OpenSSL's callbacks find
 * the engine through it: a second BIO, two queue headers and an ex_data
 * slot (SSL_set_app_data allocates its stack) would cost an idle
 * connection about 450 bytes more. */
struct ts_tls {
    SSL *ssl;
    BIO *bio; /* owned by ssl */
    struct fifo in, out;
    char *sess_key;
    uint8_t *plain; /* written before the handshake completed */
    size_t plain_len;
    unsigned long err; /* first OpenSSL error of the failure */
    long verify;       /* verification result at failure */
    const char *why;   /* a failure of ours, not OpenSSL's */
    unsigned established : 1, failed : 1, peer_closed : 1, sent_close : 1;
};

static struct ts_tls *tls_of_bio(BIO *b)
{
    return BIO_get_data(b);
}

/* The engine behind ssl, for OpenSSL's callbacks; NULL before the BIO is
 * attached. */
static struct ts_tls *tls_of(const SSL *ssl)
{
    BIO *b = SSL_get_rbio(ssl);
    return b ? tls_of_bio(b) : NULL;
}

static int fifo_bwrite(BIO *b, const char *in, int n)
{
    BIO_clear_retry_flags(b);
    if (n <= 0)
        return 0;
    return fifo_append(&tls_of_bio(b)->out, in, (size_t)n) == 0 ? n : -1;
}

static int fifo_bread(BIO *b, char *out, int n)
{
    struct fifo *f = &tls_of_bio(b)->in;
    BIO_clear_retry_flags(b);
    if (n <= 0)
        return 0;
    if (!fifo_len(f)) {
        BIO_set_retry_read(b); /* like a memory BIO: more may come */
        return -1;
    }
    return (int)fifo_take(f, out, (size_t)n);
}

static long fifo_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    struct ts_tls *t = tls_of_bio(b);
    switch (cmd) {
    case BIO_CTRL_PENDING: /* input not yet read */
        return (long)fifo_len(&t->in);
    case BIO_CTRL_RESET:
        t->in.r = t->in.w = 0;
        t->out.r = t->out.w = 0;
        return 1;
    case BIO_CTRL_FLUSH:
    case BIO_CTRL_DUP:
        return 1;
    case BIO_CTRL_GET_CLOSE:
        return BIO_get_shutdown(b);
    case BIO_CTRL_SET_CLOSE:
        BIO_set_shutdown(b, (int)num);
        return 1;
    default: /* WPENDING, EOF and the rest: nothing to say */
        return 0;
    }
}

/* The engine is attached right after BIO_new; the queues are the engine's
 * and outlive the BIO (ts_tls_free frees them after SSL_free). */
static int fifo_bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static int new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    struct ts_tls *t = tls_of(ssl);
    struct sess_table *tb = table_of(SSL_get_SSL_CTX(ssl));
    if (!t || !t->sess_key || !tb)
        return 0;
    return table_put(tb, t->sess_key, sess);
}

/* ---- contexts ---- */

static void log_ctx_error(const char *what, const char *file)
{
    char reason[256] = "", qf[256], qr[300];
    size_t o = 0;
    unsigned long e;
    const char *data = NULL;
    int flags = 0;
    /* The queue reads outermost-last; keep the first few reasons, which say
     * what went wrong at the bottom (e.g. "No such file or directory"). */
    while ((e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) != 0) {
        if (o >= sizeof(reason) - 1)
            continue;
        const char *r = ERR_reason_error_string(e);
        char sys[64];
        if (!r && ERR_GET_LIB(e) == ERR_LIB_SYS) {
            snprintf(sys, sizeof(sys), "%s", strerror(ERR_GET_REASON(e)));
            r = sys;
        }
        if (!r || strstr(reason, r))
            continue; /* "system lib" repeats what errno said */
        int n = snprintf(reason + o, sizeof(reason) - o, "%s%s", o ? ": " : "", r);
        if (n > 0)
            o += (size_t)n;
    }
    if (!o)
        snprintf(reason, sizeof(reason), "unknown");
    TS_ERROR("event=tls_config what=%s file=%s reason=%s", what,
             ts_log_quote(file ? file : "-", qf, sizeof(qf)), ts_log_quote(reason, qr, sizeof(qr)));
}

static int ctx_fail(SSL_CTX *ctx, int err, const char *what, const char *file)
{
    log_ctx_error(what, file);
    SSL_CTX_free(ctx);
    return err;
}

static SSL_CTX *ctx_common(const SSL_METHOD *method)
{
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(method);
    if (!ctx)
        return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* RELEASE_BUFFERS: an idle connection gives back OpenSSL's 17 KiB read
     * and write buffers. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    /* TLS 1.2 suites: forward-secret AEAD only, as all of TLS 1.3's are.
     * It is also memory: a server keeps the client's offered list (a stack
     * and the raw bytes) for the whole connection, about 400 bytes for
     * OpenSSL's default offer of 31 suites, 100 for these 9. */
    if (SSL_CTX_set_cipher_list(ctx, TLS12_SUITES) != 1) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

static int load_cert_key(SSL_CTX *ctx, const char *cert_file, const char *key_file)
{
    ERR_clear_error();
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1)
        return ctx_fail(ctx, TS_E_CONFIG, "certificate", cert_file);
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1)
        return ctx_fail(ctx, TS_E_CONFIG, "private_key", key_file);
    if (SSL_CTX_check_private_key(ctx) != 1)
        return ctx_fail(ctx, TS_E_CONFIG, "key_mismatch", key_file);
    return TS_OK;
}

/* A client that offers no ALPN never reaches the select callback, so the
 * refusal has to happen here, before the handshake commits to anything. */
static int client_hello_cb(SSL *ssl, int *al, void *arg)
{
    const unsigned char *ext;
    size_t len;
    if (!SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_application_layer_protocol_negotiation, &ext,
                                   &len)) {
        struct ts_tls *t = tls_of(ssl);
        if (t)
            t->why = "peer offered no application protocol (ALPN)";
        *al = SSL_AD_NO_APPLICATION_PROTOCOL;
        return SSL_CLIENT_HELLO_ERROR;
    }
    return SSL_CLIENT_HELLO_SUCCESS;
}

static int alpn_select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                          const unsigned char *in, unsigned int inlen, void *arg)
{
    unsigned int i = 0;
    while (i < inlen) {
        unsigned int n = in[i];
        if (n > inlen - i - 1)
            break;
        if (n == ALPN_LEN && memcmp(in + i + 1, TS_ALPN, ALPN_LEN) == 0) {
            *out = in + i + 1;
            *outlen = (unsigned char)n;
            return SSL_TLSEXT_ERR_OK;
        }
        i += n + 1;
    }
    struct ts_tls *t = tls_of(ssl);
    if (t)
        t->why = "peer did not offer application protocol " TS_ALPN;
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

int ts_tls_server_ctx(const char *cert_file, const char *key_file, SSL_CTX **out)
{
    *out = NULL;
    SSL_CTX *ctx = ctx_common(TLS_server_method());
    if (!ctx)
        return ctx_fail(NULL, TS_E_TLS, "server_ctx", cert_file);
    int rc = load_cert_key(ctx, cert_file, key_file);
    if (rc != TS_OK)
        return rc;
    SSL_CTX_set_client_hello_cb(ctx, client_hello_cb, NULL);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select_cb, NULL);
    /* TLS 1.3: AES-128-GCM first (the server's preference rules, see
     * ctx_common), where OpenSSL's default order puts AES-256-GCM with
     * SHA-384. Memory: a SHA-384 transcript context is 216 bytes, a
     * SHA-256 one 112, and a connection keeps three of them for good
     * (about 300 bytes of every idle subscriber); CPU: 10 AES rounds, not
     * 14, on every byte of fan-out. Both are TLS 1.3's own suites; the
     * others stay allowed for clients that offer nothing else. */
    if (SSL_CTX_set_ciphersuites(ctx, TLS13_SUITES) != 1)
        return ctx_fail(ctx, TS_E_TLS, "ciphersuites", cert_file);
    /* TLS 1.3 tickets are stateless (self-contained, encrypted with the
     * context's ticket key) as long as SSL_OP_NO_TICKET stays off; the
     * server cache only serves TLS 1.2 session ids, bounded. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(ctx, 4096);
    /* One ticket per handshake, not OpenSSL's two: our clients keep one
     * session per destination (the second ticket only ever replaced the
     * first), and each costs the server a session copy, its encoding and
     * encryption on every handshake, resumed ones included, where it was
     * about a tenth of the server's work (bench/README.md, "reconnect"). */
    SSL_CTX_set_num_tickets(ctx, 1);
    static const unsigned char sid_ctx[] = "threadsync";
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
    *out = ctx;
    return TS_OK;
}

/* Chain verification already checked clientAuth (OpenSSL's default purpose
 * for a server verifying its client); a node certificate must also be fit
 * to serve, which tells it from a client certificate of the same CA. */
static int node_verify_cb(int ok, X509_STORE_CTX *xs)
{
    if (!ok || X509_STORE_CTX_get_error_depth(xs) != 0)
        return ok;
    X509 *leaf = X509_STORE_CTX_get_current_cert(xs);
    if (!leaf || X509_check_purpose(leaf, X509_PURPOSE_SSL_SERVER, 0) != 1) {
        X509_STORE_CTX_set_error(xs, X509_V_ERR_INVALID_PURPOSE);
        return 0;
    }
    return 1;
}

int ts_tls_server_ctx_mtls(const char *cert_file, const char *key_file, const char *ca_file,
                           SSL_CTX **out)
{
    int rc = ts_tls_server_ctx(cert_file, key_file, out);
    if (rc != TS_OK)
        return rc;
    SSL_CTX *ctx = *out;
    *out = NULL;
    ERR_clear_error();
    if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1)
        return ctx_fail(ctx, TS_E_CONFIG, "ca", ca_file);
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca_file);
    if (names)
        SSL_CTX_set_client_CA_list(ctx, names); /* takes ownership */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, node_verify_cb);
    /* Its own session id context: a TLS 1.2 session from the client port
     * (no verified node certificate behind it) never resumes here. */
    static const unsigned char sid_ctx[] = "threadsync-raft";
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
    ERR_clear_error();
    *out = ctx;
    return TS_OK;
}

int ts_tls_client_ctx(const char *ca_file, const char *cert_file, const char *key_file,
                      SSL_CTX **out)
{
    *out = NULL;
    pthread_once(&table_once, table_idx_init);
    if (table_idx < 0)
        return ctx_fail(NULL, TS_E_TLS, "ex_index", ca_file);
    SSL_CTX *ctx = ctx_common(TLS_client_method());
    if (!ctx)
        return ctx_fail(NULL, TS_E_TLS, "client_ctx", ca_file);
    ERR_clear_error();
    if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1)
        return ctx_fail(ctx, TS_E_CONFIG, "ca", ca_file);
    if (cert_file) {
        int rc = load_cert_key(ctx, cert_file, key_file);
        if (rc != TS_OK)
            return rc;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_set_alpn_protos(ctx, alpn_wire, sizeof(alpn_wire) - 1) != 0) /* 0 is success */
        return ctx_fail(ctx, TS_E_TLS, "alpn", ca_file);
    struct sess_table *tb = calloc(1, sizeof(*tb));
    if (!tb) {
        SSL_CTX_free(ctx);
        return TS_E_NOMEM;
    }
    pthread_mutex_init(&tb->mu, NULL);
    if (!SSL_CTX_set_ex_data(ctx, table_idx, tb)) {
        table_free(NULL, tb, NULL, 0, 0, NULL);
        return ctx_fail(ctx, TS_E_TLS, "ex_data", ca_file);
    }
    /* Sessions are kept only in our table, keyed by destination, never in
     * OpenSSL's internal client cache (which has no notion of host:port). */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, new_session_cb);
    *out = ctx;
    return TS_OK;
}

static int engine_new(SSL_CTX *ctx, struct ts_tls **out)
{
    *out = NULL;
    struct ts_tls *t = calloc(1, sizeof(*t));
    if (!t)
        return TS_E_NOMEM;
    ERR_clear_error();
    pthread_once(&fifo_once, fifo_init_once);
    t->ssl = SSL_new(ctx);
    t->bio = fifo_method ? BIO_new(fifo_method) : NULL;
    if (!t->ssl || !t->bio) {
        BIO_free(t->bio);
        SSL_free(t->ssl);
        free(t);
        ERR_clear_error();
        return TS_E_NOMEM;
    }
    BIO_set_data(t->bio, t);
    SSL_set_bio(t->ssl, t->bio, t->bio); /* one reference, taken by ssl */
    *out = t;
    return TS_OK;
}

int ts_tls_new_server(SSL_CTX *ctx, struct ts_tls **out)
{
    int rc = engine_new(ctx, out);
    if (rc == TS_OK)
        SSL_set_accept_state((*out)->ssl);
    return rc;
}

static int is_ip_literal(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

int ts_tls_client_ctx_foreign(const char *ca_file, SSL_CTX **out)
{
    int rc = ts_tls_client_ctx(ca_file, NULL, NULL, out);
    if (rc != TS_OK)
        return rc;
    /* An empty list turns the extension off (0 is success). */
    if (SSL_CTX_set_alpn_protos(*out, NULL, 0) != 0) {
        SSL_CTX *ctx = *out;
        *out = NULL;
        return ctx_fail(ctx, TS_E_TLS, "alpn", ca_file);
    }
    table_of(*out)->foreign = 1;
    return TS_OK;
}

int ts_tls_new_client(SSL_CTX *ctx, const char *host, const char *session_key, struct ts_tls **out)
{
    struct ts_tls *t;
    int rc = engine_new(ctx, &t);
    if (rc != TS_OK)
        return rc;
    SSL_set_connect_state(t->ssl);
    ERR_clear_error();
    int ok;
    if (is_ip_literal(host)) {
        /* RFC 6066 forbids an IP address in SNI; match the IP SAN instead. */
        ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), host);
    } else {
        SSL_set_hostflags(t->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        ok = SSL_set_tlsext_host_name(t->ssl, host) == 1 && SSL_set1_host(t->ssl, host) == 1;
    }
    if (!ok) {
        ts_tls_free(t);
        ERR_clear_error();
        return TS_E_INVALID_ARGUMENT;
    }
    if (session_key) {
        t->sess_key = strdup(session_key);
        if (!t->sess_key) {
            ts_tls_free(t);
            return TS_E_NOMEM;
        }
        struct sess_table *tb = table_of(ctx);
        if (tb)
            table_apply(tb, t->sess_key, t->ssl);
    }
    *out = t;
    return TS_OK;
}

void ts_tls_free(struct ts_tls *t)
{
    if (!t)
        return;
    SSL_free(t->ssl);
    fifo_free(&t->in);
    fifo_free(&t->out);
    free(t->sess_key);
    free(t->plain);
    free(t);
}

static int fail(struct ts_tls *t)
{
    if (!t->failed) {
        t->failed = 1;
        t->err = ERR_peek_error();
        t->verify = SSL_get_verify_result(t->ssl);
        /* A session that ended in a fatal error is not resumed: it may be
         * the reason (a server that lost its ticket keys answers fine, but
         * one whose certificate changed must be verified afresh). */
        struct sess_table *tb = table_of(SSL_get_SSL_CTX(t->ssl));
        if (t->sess_key && tb)
            table_drop(tb, t->sess_key);
    }
    ERR_clear_error();
    return TS_E_TLS;
}

/* Gives up the storage of empty BIOs (see the file comment). Only after
 * the handshake: during it a buffering BIO sits on the write side and the
 * flights are small anyway. */
static void release_bios(struct ts_tls *t)
{
    if (!t->established)
        return;
    fifo_release(&t->out);
    fifo_release(&t->in);
}

int ts_tls_feed(struct ts_tls *t, const void *data, size_t len)
{
    return fifo_append(&t->in, data, len) == 0 ? TS_OK : TS_E_NOMEM;
}

static int write_all(struct ts_tls *t, const uint8_t *p, size_t len)
{
    while (len > 0) {
        int n = len > WRITE_SLICE ? (int)WRITE_SLICE : (int)len;
        ERR_clear_error();
        int r = SSL_write(t->ssl, p, n);
        if (r <= 0)
            return fail(t);
        p += r;
        len -= (size_t)r;
    }
    return TS_OK;
}

static int check_alpn(struct ts_tls *t)
{
    struct sess_table *tb = table_of(SSL_get_SSL_CTX(t->ssl));
    if (tb && tb->foreign)
        return 1;
    const unsigned char *p = NULL;
    unsigned int len = 0;
    SSL_get0_alpn_selected(t->ssl, &p, &len);
    return len == ALPN_LEN && memcmp(p, TS_ALPN, ALPN_LEN) == 0;
}

int ts_tls_handshake(struct ts_tls *t)
{
    if (t->failed)
        return TS_E_TLS;
    if (t->established)
        return TS_OK;
    ERR_clear_error();
    int r = SSL_do_handshake(t->ssl);
    if (r != 1) {
        int e = SSL_get_error(t->ssl, r);
        if (e == SSL_ERROR_WANT_READ)
            return TS_E_AGAIN;
        return fail(t);
    }
    if (!check_alpn(t)) {
        /* Only a server that ignores ALPN gets here (ours refuses in the
         * hello callback); its answer cannot be trusted to be ours. */
        fail(t);
        t->err = 0;
        t->why = "no application protocol " TS_ALPN " agreed";
        return TS_E_TLS;
    }
    t->established = 1;
    if (t->plain_len) {
        int rc = write_all(t, t->plain, t->plain_len);
        free(t->plain);
        t->plain = NULL;
        t->plain_len = 0;
        if (rc != TS_OK)
            return rc;
    }
    return TS_OK;
}

int ts_tls_read(struct ts_tls *t, void *buf, size_t cap, size_t *n)
{
    *n = 0;
    if (t->failed)
        return TS_E_TLS;
    if (t->peer_closed)
        return TS_E_CLOSED;
    int rc = ts_tls_handshake(t);
    if (rc != TS_OK)
        return rc;
    if (cap > INT32_MAX)
        cap = INT32_MAX;
    ERR_clear_error();
    int r = SSL_read(t->ssl, buf, (int)cap);
    if (r > 0) {
        *n = (size_t)r;
        return TS_OK;
    }
    switch (SSL_get_error(t->ssl, r)) {
    case SSL_ERROR_WANT_READ:
        release_bios(t);
        return TS_E_AGAIN;
    case SSL_ERROR_ZERO_RETURN:
        t->peer_closed = 1;
        return TS_E_CLOSED;
    default:
        return fail(t);
    }
}

int ts_tls_write(struct ts_tls *t, const void *data, size_t len)
{
    if (t->failed)
        return TS_E_TLS;
    if (t->sent_close)
        return TS_E_CLOSED;
    if (len == 0)
        return TS_OK;
    if (t->established)
        return write_all(t, data, len);
    uint8_t *p = realloc(t->plain, t->plain_len + len);
    if (!p)
        return TS_E_NOMEM;
    memcpy(p + t->plain_len, data, len);
    t->plain = p;
    t->plain_len += len;
    return TS_OK;
}

void ts_tls_shutdown(struct ts_tls *t)
{
    free(t->plain);
    t->plain = NULL;
    t->plain_len = 0;
    if (t->failed || t->sent_close || !t->established)
        return;
    t->sent_close = 1;
    ERR_clear_error();
    /* The first call queues close_notify and returns 0; we do not wait for
     * the peer's (nginx does not either): the socket closes after a bounded
     * wait in the owner. */
    if (SSL_shutdown(t->ssl) < 0)
        ERR_clear_error();
}

size_t ts_tls_pending(const struct ts_tls *t)
{
    return fifo_len(&t->out);
}

size_t ts_tls_pending_plain(const struct ts_tls *t)
{
    return t->plain_len;
}

size_t ts_tls_take(struct ts_tls *t, void *buf, size_t cap)
{
    size_t got = fifo_take(&t->out, buf, cap);
    release_bios(t);
    return got;
}

int ts_tls_established(const struct ts_tls *t)
{
    return t->established;
}

int ts_tls_failed(const struct ts_tls *t)
{
    return t->failed;
}

int ts_tls_peer_closed(const struct ts_tls *t)
{
    return t->peer_closed;
}

int ts_tls_resumed(const struct ts_tls *t)
{
    return t->established && SSL_session_reused(t->ssl);
}

const char *ts_tls_strerror(const struct ts_tls *t, char *buf, size_t size)
{
    if (!t->failed)
        snprintf(buf, size, "none");
    else if (t->verify != X509_V_OK)
        snprintf(buf, size, "certificate: %s", X509_verify_cert_error_string(t->verify));
    else if (t->why)
        snprintf(buf, size, "%s", t->why);
    else if (t->err) {
        const char *r = ERR_reason_error_string(t->err);
        snprintf(buf, size, "%s", r ? r : "unknown");
    } else
        snprintf(buf, size, "unknown");
    return buf;
}
