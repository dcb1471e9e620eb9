/*
 * ts_web: routes, forms and the SSE relay of the web edge (see ts_web.h).
 *
 * Invariants:
 * - Everything runs on the mirror's loop thread; the edge's database handle
 *   is only read, between the mirror's callbacks, so it sees whole
 *   committed batches.
 * - A POST answered later (after the cluster's answer) holds its request
 *   through a ts_web_http_hold: if the browser left meanwhile, the answer is
 *   dropped, never written to a freed request.
 * - A watcher (one browser on /t/{key}/events) has at most one write in
 *   flight (an h2o_send, or a ts_web_stream write that did not go out at
 *   once, e.g. one a delivery thread makes); its frames stay referenced
 *   until h2o's proceed or stop callback, or the stream's written, gone or
 *   released (a stream closed while its delivery thread still wrote them),
 *   which are the only places they are released besides a write that went
 *   out whole. A watcher is in its
 *   thread's group from its request until it ends; one ending a stream of
 *   its own leaves the group first and is freed once the last chunk is out.
 * - Own comments awaiting moderation are remembered here (author, body and
 *   the edit key's hash, OWN_MAX of them, the oldest forgotten first) so
 *   that their author, proving it with the edit-key cookie, sees them;
 *   nobody else does, and an entry goes as soon as the comment leaves
 *   PENDING.
 */
#include "ts_web.h"

#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ts_err.h"
#include "ts_file.h"
#include "ts_hex.h"
#include "ts_mirror_render.h"
#include "ts_web_assets.h"
#include "ts_web_addr.h"
#include "ts_web_form.h"
#include "ts_web_http.h"
#include "ts_web_mod.h"
#include "ts_web_page.h"
#include "ts_web_resp.h"
#include "ts_web_relay.h"

#define OWN_MAX 4096
#define FORM_PAIRS_MAX 16
#define COUNTS_KEYS_MAX 100
#define SEND_BATCH 16
#define GROUP_BUCKETS 4096
#define OWN_COOKIES_MAX 32
#define EDIT_COOKIE_MAX_AGE 86400

struct own {
    uint64_t id;
    unsigned char ek_hash[SHA256_DIGEST_LENGTH];
    Threadsync__Comment c; /* author_name and body owned */
};

/* The watchers of one thread, and its chain of events (ts_web_relay.h).
 * Lives while it has watchers, or while it is on the edge's dirty list. */
struct group {
    uint64_t thread_id;
    struct ts_web_chain chain;
    struct watcher *watchers;
    size_t n;
    struct group *next;  /* in its hash bucket */
    struct group *dirty; /* next on the dirty list */
    int is_dirty;
};

struct watcher {
    h2o_generator_t gen; /* first: h2o's callbacks get its address */
    struct ts_web *w;
    h2o_req_t *req; /* HTTP/2 and 1.0: the h2o response streamed */
    struct group *g;
    struct watcher *prev, *next;
    uint64_t thread_id, cursor;
    struct ts_web_stream *st; /* HTTP/1.1: the stream (req is gone); else NULL */
    struct ts_web_event *inflight[SEND_BATCH];
    size_t n_inflight;
    int sending, ending;
    char beat[48];
};

struct ts_web {
    uv_loop_t *loop;
    struct ts_web_config cfg;
    char *base, *dir;
    struct ts_web_http *http;
    struct ts_client *client;
    struct ts_web_mod *mod;       /* the moderation console, /mod/ (ts_web_mod.h) */
    struct ts_web_http *mod_http; /* its own listener (mod_listen), or NULL */
    struct ts_mirror_db *db;
    struct ts_web_ring *ring;
    uint8_t secret[TS_WEB_SECRET_LEN];
    struct group *groups[GROUP_BUCKETS]; /* by thread id */
    struct group *dirty;                 /* groups with new events to pump */
    size_t n_watchers;
    uv_timer_t heartbeat;
    int timer_on, closing;
    struct own *own[OWN_MAX]; /* a ring: own_next is the oldest slot */
    size_t own_next;
    struct ts_web_proxies proxies; /* --trusted-proxy */
    int no_reader_keys;            /* the post token is no gateway */
};

/* The reader's address: the peer, or X-Forwarded-For from a trusted proxy
 * (ts_web_addr.h). */
static void reader_addr(struct ts_web *w, h2o_req_t *req, unsigned char out[16])
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t sl = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss);
    size_t xlen = 0;
    const char *xff = w->proxies.n ? ts_web_http_req_header(req, "x-forwarded-for", &xlen) : NULL;
    ts_web_reader_addr(&w->proxies, sl ? (struct sockaddr *)&ss : NULL, xff, xlen, out);
}

/* ---- own comments ---------------------------------------------------------- */

static void own_free(struct own *o)
{
    if (!o)
        return;
    free(o->c.author_name);
    free(o->c.body);
    free(o);
}

static struct own *own_find(struct ts_web *w, uint64_t id, size_t *slot)
{
    for (size_t i = 0; i < OWN_MAX; i++)
        if (w->own[i] && w->own[i]->id == id) {
            if (slot)
                *slot = i;
            return w->own[i];
        }
    return NULL;
}

static void own_add(struct ts_web *w, const Threadsync__PostResult *r, const char *name,
                    const char *body, uint64_t parent)
{
    struct own *o = calloc(1, sizeof(*o));
    if (!o)
        return;
    threadsync__comment__init(&o->c);
    o->id = r->comment_id;
    SHA256((const unsigned char *)r->edit_key, strlen(r->edit_key), o->ek_hash);
    o->c.id = r->comment_id;
    o->c.thread_id = r->thread_id;
    o->c.parent_id = parent;
    o->c.author_name = strdup(name);
    o->c.body = strdup(body);
    o->c.created_at_ms = (int64_t)time(NULL) * 1000;
    o->c.status = THREADSYNC__STATUS__PENDING;
    if (!o->c.author_name || !o->c.body) {
        own_free(o);
        return;
    }
    own_free(w->own[w->own_next]);
    w->own[w->own_next] = o;
    w->own_next = (w->own_next + 1) % OWN_MAX;
}

/* The reader's edit-key cookies: ts_ek_<id>=<key>. */
struct reader {
    struct ts_web *w;
    size_t n;
    struct {
        uint64_t id;
        char key[129];
    } ek[OWN_COOKIES_MAX];
};

static void reader_init(struct ts_web *w, h2o_req_t *req, struct reader *r)
{
    memset(r, 0, sizeof(*r));
    r->w = w;
    size_t len = 0;
    const char *h = ts_web_http_req_header(req, "cookie", &len);
    size_t i = 0;
    while (h && i < len && r->n < OWN_COOKIES_MAX) {
        while (i < len && (h[i] == ' ' || h[i] == ';'))
            i++;
        size_t j = i;
        while (j < len && h[j] != ';')
            j++;
        if (j - i > 5 && memcmp(h + i, "ts_ek_", 6) == 0) {
            char *end = NULL;
            char tmp[160];
            size_t tl = j - i < sizeof(tmp) - 1 ? j - i : sizeof(tmp) - 1;
            memcpy(tmp, h + i, tl);
            tmp[tl] = '\0';
            unsigned long long id = strtoull(tmp + 6, &end, 10);
            size_t kl = end && *end == '=' ? strlen(end + 1) : sizeof(r->ek[0].key);
            if (kl < sizeof(r->ek[0].key)) {
                r->ek[r->n].id = id;
                memcpy(r->ek[r->n].key, end + 1, kl + 1);
                r->n++;
            }
        }
        i = j;
    }
}

static const char *reader_key(const struct reader *r, uint64_t id)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->ek[i].id == id)
            return r->ek[i].key;
    return NULL;
}

static int reader_mine(void *arg, const Threadsync__Comment *c)
{
    return reader_key(arg, c->id) != NULL && c->status == THREADSYNC__STATUS__VISIBLE;
}

static const Threadsync__Comment *reader_own(void *arg, const Threadsync__Comment *c)
{
    struct reader *r = arg;
    const char *key = reader_key(r, c->id);
    if (!key || c->status != THREADSYNC__STATUS__PENDING)
        return NULL;
    struct own *o = own_find(r->w, c->id, NULL);
    if (!o)
        return NULL;
    unsigned char h[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)key, strlen(key), h);
    return CRYPTO_memcmp(h, o->ek_hash, sizeof(h)) == 0 ? &o->c : NULL;
}

/* ---- responses ------------------------------------------------------------- */

static void send_text(h2o_req_t *req, int status, const char *msg)
{
    ts_web_resp_text(req, status, "no-store", msg);
}

/* An ETag over what a reader can see of the thread. */
static void thread_etag(const struct ts_mirror_thread *t, const char *kind, char out[64])
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < t->n_comments; i++) {
        h = (h ^ t->comments[i]->id) * 1099511628211ull;
        h = (h ^ t->comments[i]->version) * 1099511628211ull;
    }
    snprintf(out, 64, "\"%s-%" PRIu64 "-%" PRIu64 "-%016" PRIx64 "\"", kind, t->thread.id,
             t->thread.version, h);
}

/* 1 when the request's If-None-Match is etag (then a 304 went out). */
static int not_modified(h2o_req_t *req, const char *etag, const char *cache)
{
    ts_web_http_header(req, "etag", etag);
    ts_web_http_header(req, "cache-control", cache);
    size_t len = 0;
    const char *inm = ts_web_http_req_header(req, "if-none-match", &len);
    if (inm && len == strlen(etag) && memcmp(inm, etag, len) == 0) {
        ts_web_http_send(req, 304, NULL, NULL, 0);
        return 1;
    }
    return 0;
}

/* ---- pages ----------------------------------------------------------------- */

struct form_state {
    uint64_t parent, edit;
    const char *name, *email, *body, *error;
};

static int render_page(struct ts_web *w, h2o_req_t *req, const struct ts_mirror_thread *t,
                       int embed, const struct form_state *fs, int status)
{
    char nonce[TS_WEB_NONCE_LEN], csrf[TS_WEB_MAC_HEX];
    if (ts_web_nonce_new((uint64_t)time(NULL), nonce) != TS_OK) {
        send_text(req, 503, "no randomness\n");
        return 0;
    }
    ts_web_csrf(w->secret, t->thread.key, nonce, csrf);
    struct reader r;
    reader_init(w, req, &r);
    uint64_t seq = 0;
    ts_mirror_db_cursor(w->db, &seq);
    const char *edit_body = NULL;
    if (fs->edit) {
        for (size_t i = 0; i < t->n_comments; i++)
            if (t->comments[i]->id == fs->edit)
                edit_body = t->comments[i]->body;
    }
    struct ts_web_page p = {
        .thread = &t->thread,
        .comments = (const Threadsync__Comment *const *)t->comments,
        .n = t->n_comments,
        .base = w->base,
        .nonce = nonce,
        .csrf = csrf,
        .seq = seq < ts_web_ring_last(w->ring) ? seq : ts_web_ring_last(w->ring),
        .embed = embed,
        .parent = fs->parent,
        .edit = fs->edit,
        .name = fs->name,
        .email = fs->email,
        .body = fs->body ? fs->body : edit_body,
        .error = fs->error,
        .own = reader_own,
        .mine = reader_mine,
        .own_arg = &r,
    };
    struct ts_buf b = TS_BUF_INIT;
    ts_web_page_html(&b, &p);
    ts_web_http_header(req, "cache-control", "no-store");
    ts_web_resp_buf(req, status, "text/html; charset=utf-8", &b);
    return 0;
}

static uint64_t query_u64(h2o_req_t *req, const char *name)
{
    if (req->query_at == SIZE_MAX)
        return 0;
    struct ts_web_kv *kv;
    size_t n;
    const char *q = req->path.base + req->query_at + 1;
    size_t ql = req->path.len - req->query_at - 1;
    if (ts_web_form_parse(q, ql, FORM_PAIRS_MAX, &kv, &n) != TS_OK)
        return 0;
    const char *v = ts_web_kv_get(kv, n, name);
    uint64_t r = v ? strtoull(v, NULL, 10) : 0;
    ts_web_kv_free(kv, n);
    return r;
}

static int get_json(struct ts_web *w, h2o_req_t *req, struct ts_mirror_thread *t)
{
    char etag[64];
    thread_etag(t, "j", etag);
    if (not_modified(req, etag, "public, max-age=5, must-revalidate"))
        return 0;
    char *out = NULL;
    size_t len = 0;
    if (ts_mirror_render_json(&t->thread, (const Threadsync__Comment *const *)t->comments,
                              t->n_comments, &out, &len) != TS_OK) {
        send_text(req, 503, "out of memory\n");
        return 0;
    }
    ts_web_resp_security(req);
    ts_web_http_header(req, "access-control-allow-origin", "*");
    ts_web_http_send(req, 200, "application/json; charset=utf-8", out, len);
    free(out);
    return 0;
}

static int get_atom(struct ts_web *w, h2o_req_t *req, struct ts_mirror_thread *t)
{
    char etag[64];
    thread_etag(t, "a", etag);
    if (not_modified(req, etag, "public, max-age=60, must-revalidate"))
        return 0;
    struct ts_buf b = TS_BUF_INIT;
    ts_web_page_atom(&b, &t->thread, (const Threadsync__Comment *const *)t->comments, t->n_comments,
                     w->cfg.atom_entries, "");
    ts_web_resp_buf(req, 200, "application/atom+xml; charset=utf-8", &b);
    return 0;
}

static int get_counts(struct ts_web *w, h2o_req_t *req)
{
    struct ts_web_kv *kv = NULL;
    size_t n = 0;
    if (req->query_at != SIZE_MAX &&
        ts_web_form_parse(req->path.base + req->query_at + 1, req->path.len - req->query_at - 1,
                          COUNTS_KEYS_MAX, &kv, &n) != TS_OK) {
        send_text(req, 400, "bad query (at most 100 keys)\n");
        return 0;
    }
    struct ts_buf b = TS_BUF_INIT;
    ts_buf_puts(&b, "{");
    int first = 1;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(kv[i].name, "t") != 0)
            continue;
        struct ts_mirror_thread *t = NULL;
        if (ts_mirror_db_thread_by_key(w->db, kv[i].value, &t) != TS_OK)
            continue;
        uint64_t visible = 0;
        for (size_t k = 0; k < t->n_comments; k++)
            visible += t->comments[k]->status == THREADSYNC__STATUS__VISIBLE;
        h = (h ^ t->thread.version) * 1099511628211ull;
        h = (h ^ visible) * 1099511628211ull;
        ts_buf_puts(&b, first ? "\"" : ",\"");
        ts_mirror_render_text(&b, kv[i].value, 0);
        ts_buf_printf(&b, "\":%" PRIu64, visible);
        first = 0;
        ts_mirror_thread_free(t);
    }
    ts_buf_puts(&b, "}\n");
    ts_web_kv_free(kv, n);
    char etag[64];
    snprintf(etag, sizeof(etag), "\"c-%016" PRIx64 "\"", h);
    if (not_modified(req, etag, "public, max-age=5, must-revalidate")) {
        ts_buf_free(&b);
        return 0;
    }
    ts_web_http_header(req, "access-control-allow-origin", "*");
    ts_web_resp_buf(req, 200, "application/json; charset=utf-8", &b);
    return 0;
}

static int get_static(h2o_req_t *req, const struct ts_web_asset *a)
{
    if (not_modified(req, a->etag, "public, max-age=3600"))
        return 0;
    ts_web_resp_security(req);
    ts_web_http_send(req, 200, a->type, a->data, a->len);
    return 0;
}

/* ---- the live feed --------------------------------------------------------- */

static size_t group_bucket(uint64_t thread_id)
{
    return (size_t)((thread_id * 0x9E3779B97F4A7C15ull) >> 52) % GROUP_BUCKETS;
}

static struct group *group_find(struct ts_web *w, uint64_t thread_id)
{
    for (struct group *g = w->groups[group_bucket(thread_id)]; g; g = g->next)
        if (g->thread_id == thread_id)
            return g;
    return NULL;
}

static struct group *group_get(struct ts_web *w, uint64_t thread_id)
{
    struct group *g = group_find(w, thread_id);
    if (g || !(g = calloc(1, sizeof(*g))))
        return g;
    g->thread_id = thread_id;
    ts_web_chain_init(&g->chain, w->ring);
    size_t b = group_bucket(thread_id);
    g->next = w->groups[b];
    w->groups[b] = g;
    return g;
}

/* Frees g once nobody watches it and no pump loop holds it. */
static void group_maybe_free(struct ts_web *w, struct group *g)
{
    if (g->n || g->is_dirty)
        return;
    struct group **pp = &w->groups[group_bucket(g->thread_id)];
    while (*pp != g)
        pp = &(*pp)->next;
    *pp = g->next;
    free(g);
}

static void watcher_unlink(struct watcher *x)
{
    struct ts_web *w = x->w;
    struct group *g = x->g;
    if (!g)
        return;
    if (x->prev)
        x->prev->next = x->next;
    else
        g->watchers = x->next;
    if (x->next)
        x->next->prev = x->prev;
    x->prev = x->next = NULL;
    x->g = NULL;
    g->n--;
    w->n_watchers--;
    group_maybe_free(w, g);
}

static void watcher_release(struct watcher *x)
{
    for (size_t i = 0; i < x->n_inflight; i++)
        ts_web_event_unref(x->inflight[i]);
    x->n_inflight = 0;
}

/* Frees x and closes its stream (an HTTP/1.1 one: ts_web_stream); while a
 * delivery thread still writes x's frames (or its heartbeat, in x), only
 * once the stream says they are released (stream_released). */
static void watcher_free(struct watcher *x)
{
    watcher_unlink(x);
    if (!ts_web_stream_close(x->st))
        return;
    watcher_release(x);
    free(x);
}

/* Ends x's stream, with "reload" first when asked. Over h2o, x goes now
 * (after a final send h2o calls neither proceed nor stop); a stream of its
 * own goes once its last chunk is written. Callers iterating a list take
 * the next watcher first. */
static void watcher_end(struct watcher *x, int reload)
{
    static h2o_iovec_t reload_sse = {H2O_STRLIT("event: reload\ndata: {}\n\n")};
    static h2o_iovec_t reload_chunked = {
        H2O_STRLIT("18\r\nevent: reload\ndata: {}\n\n\r\n0\r\n\r\n")};
    static h2o_iovec_t last_chunk = {H2O_STRLIT("0\r\n\r\n")};
    watcher_release(x);
    watcher_unlink(x);
    if (x->st) {
        x->ending = 1;
        x->sending = 1;
        if (ts_web_stream_write(x->st, reload ? &reload_chunked : &last_chunk, 1))
            watcher_free(x);
        return;
    }
    h2o_req_t *req = x->req;
    free(x);
    h2o_send(req, reload ? &reload_sse : NULL, reload ? 1 : 0, H2O_SEND_STATE_FINAL);
}

/* Sends what x has not been sent yet, if nothing is in flight. */
static void watcher_pump(struct watcher *x)
{
    if (x->sending)
        return;
    if (x->w->closing) {
        watcher_end(x, 0);
        return;
    }
    /* Batches until nothing is left or one waits for the socket (a stream's
     * write mostly goes out at once; h2o's send always completes later). */
    for (;;) {
        h2o_iovec_t v[SEND_BATCH];
        uint64_t cur = x->cursor;
        while (x->n_inflight < SEND_BATCH) {
            struct ts_web_event *e;
            int rc = ts_web_chain_next(&x->g->chain, x->w->ring, x->thread_id, &cur, &e);
            if (rc == TS_E_NOT_FOUND) {
                watcher_end(x, 1);
                return;
            }
            if (rc != TS_OK)
                break;
            ts_web_event_ref(e);
            v[x->n_inflight] =
                x->st ? h2o_iovec_init(e->chunk, e->chunk_len) : h2o_iovec_init(e->data, e->len);
            x->inflight[x->n_inflight++] = e;
            cur = e->seq;
        }
        x->cursor = cur;
        if (!x->n_inflight)
            return;
        x->sending = 1;
        if (!x->st) {
            h2o_send(x->req, v, x->n_inflight, H2O_SEND_STATE_IN_PROGRESS);
            return;
        }
        if (!ts_web_stream_write(x->st, v, x->n_inflight))
            return;
        watcher_release(x);
        x->sending = 0;
    }
}

/* Pumps every watcher of g (which may end some, and free g if none is
 * left once it is off the dirty list). */
static void group_pump(struct ts_web *w, struct group *g)
{
    g->is_dirty = 1; /* holds g while its watchers may leave */
    for (struct watcher *x = g->watchers, *next; x; x = next) {
        next = x->next;
        watcher_pump(x);
    }
    g->is_dirty = 0;
    group_maybe_free(w, g);
}

/* Pumps every watcher of every thread (a reset, or closing). */
static void pump_all(struct ts_web *w)
{
    for (size_t b = 0; b < GROUP_BUCKETS; b++)
        for (struct group *g = w->groups[b], *next; g; g = next) {
            next = g->next;
            group_pump(w, g);
        }
}

/* What was in flight went out (h2o's proceed, or a stream's written). */
static void watcher_sent(struct watcher *x)
{
    if (x->ending) {
        watcher_free(x);
        return;
    }
    watcher_release(x);
    x->sending = 0;
    watcher_pump(x);
}

static void watcher_proceed(h2o_generator_t *g, h2o_req_t *req)
{
    watcher_sent((struct watcher *)g);
}

/* h2o is done with the request (the browser left, or the stream ended). */
static void watcher_stop(h2o_generator_t *g, h2o_req_t *req)
{
    watcher_free((struct watcher *)g);
}

static void stream_written(void *arg)
{
    watcher_sent(arg);
}

/* The browser closed its connection, or a write to it failed. */
static void stream_gone(void *arg)
{
    watcher_free(arg);
}

/* A stream closed while its delivery thread wrote x's bytes is done with them. */
static void stream_released(void *arg)
{
    struct watcher *x = arg;
    watcher_release(x);
    free(x);
}

static const struct ts_web_stream_cbs stream_cbs = {stream_written, stream_gone, stream_released};

static void on_heartbeat(uv_timer_t *t)
{
    struct ts_web *w = t->data;
    for (size_t b = 0; b < GROUP_BUCKETS; b++)
        for (struct group *g = w->groups[b]; g; g = g->next)
            for (struct watcher *x = g->watchers; x; x = x->next) {
                if (x->sending)
                    continue;
                /* The id moves the browser's Last-Event-ID up to what it
                 * has been sent (nothing of its thread since), so a
                 * reconnect after quiet hours is not mistaken for one too
                 * far behind. */
                uint64_t cur = x->cursor;
                struct ts_web_event *e;
                if (ts_web_chain_next(&g->chain, w->ring, x->thread_id, &cur, &e) == TS_E_AGAIN)
                    x->cursor = cur;
                char beat[32];
                int n = snprintf(beat, sizeof(beat), ": hb\nid: %" PRIu64 "\n\n", x->cursor);
                n = x->st ? snprintf(x->beat, sizeof(x->beat), "%x\r\n%s\r\n", (unsigned)n, beat)
                          : snprintf(x->beat, sizeof(x->beat), "%s", beat);
                h2o_iovec_t v = h2o_iovec_init(x->beat, (size_t)n);
                x->sending = 1;
                if (!x->st)
                    h2o_send(x->req, &v, 1, H2O_SEND_STATE_IN_PROGRESS);
                else if (ts_web_stream_write(x->st, &v, 1))
                    x->sending = 0;
            }
}

static int get_events(struct ts_web *w, h2o_req_t *req, const struct ts_mirror_thread *t)
{
    struct watcher *x = calloc(1, sizeof(*x));
    struct group *g = x ? group_get(w, t->thread.id) : NULL;
    if (!g) {
        free(x);
        send_text(req, 503, "out of memory\n");
        return 0;
    }
    x->gen.proceed = watcher_proceed;
    x->gen.stop = watcher_stop;
    x->w = w;
    x->g = g;
    x->thread_id = t->thread.id;
    size_t len = 0;
    const char *last = ts_web_http_req_header(req, "last-event-id", &len);
    char tmp[32];
    if (last && len < sizeof(tmp)) {
        memcpy(tmp, last, len);
        tmp[len] = '\0';
        x->cursor = strtoull(tmp, NULL, 10);
    } else if (req->query_at != SIZE_MAX && query_u64(req, "since")) {
        x->cursor = query_u64(req, "since");
    } else {
        x->cursor = ts_web_ring_last(w->ring);
    }
    req->res.status = 200;
    req->res.reason = "OK";
    req->compress_hint = H2O_COMPRESS_HINT_DISABLE;
    ts_web_http_header(req, "content-type", "text/event-stream; charset=utf-8");
    ts_web_http_header(req, "cache-control", "no-cache");
    ts_web_http_header(req, "x-accel-buffering", "no");
    x->next = g->watchers;
    if (g->watchers)
        g->watchers->prev = x;
    g->watchers = x;
    g->n++;
    w->n_watchers++;
    /* The headers and the browser's retry delay go out now: EventSource
     * reports "open" only once it has them. An HTTP/1.1 browser's stream
     * is then taken from h2o (its request freed: a watching browser costs
     * about 1 KiB); HTTP/2 and 1.0 ones stay h2o responses. */
    static h2o_iovec_t hello = {H2O_STRLIT("retry: 2000\n\n")};
    static h2o_iovec_t hello_chunk = {H2O_STRLIT("d\r\nretry: 2000\n\n\r\n")};
    x->sending = 1;
    if (ts_web_stream_start(req, &hello_chunk, 1, &stream_cbs, x, &x->st) == TS_OK)
        return 0;
    x->req = req;
    h2o_start_response(req, &x->gen);
    h2o_send(req, &hello, 1, H2O_SEND_STATE_IN_PROGRESS);
    return 0;
}

/* The ring forgot everything up to seq: every chain learns it. */
static void reset_feed(struct ts_web *w, uint64_t seq)
{
    ts_web_ring_reset(w->ring, seq);
    for (size_t b = 0; b < GROUP_BUCKETS; b++)
        for (struct group *g = w->groups[b]; g; g = g->next)
            ts_web_chain_reset(&g->chain, seq);
}

void ts_web_on_events(struct ts_web *w, const Threadsync__Events *ev)
{
    if (!w || w->closing)
        return;
    int reset = 0;
    for (size_t i = 0; i < ev->n_events; i++) {
        const Threadsync__Event *e = ev->events[i];
        if (!e->thread || e->seq <= ts_web_ring_last(w->ring))
            continue;
        if (e->comment && e->comment->status != THREADSYNC__STATUS__PENDING) {
            size_t slot;
            if (own_find(w, e->comment->id, &slot)) {
                own_free(w->own[slot]);
                w->own[slot] = NULL;
            }
        }
        struct ts_buf b = TS_BUF_INIT;
        if (e->comment) {
            ts_web_page_event(&b, e->seq, e->thread, e->comment);
        } else {
            ts_buf_printf(&b,
                          "id: %" PRIu64 "\nevent: thread\ndata: {\"count\":%" PRIu32
                          ",\"locked\":%s}\n\n",
                          e->seq, e->thread->comment_count, e->thread->locked ? "true" : "false");
        }
        struct ts_web_event *x =
            b.failed ? NULL : ts_web_event_new(e->seq, e->thread->id, b.p, b.len);
        ts_buf_free(&b);
        /* Only a watched thread's events are chained, and pumped. */
        struct group *g = group_find(w, e->thread->id);
        if (!x || (g ? ts_web_chain_push(&g->chain, w->ring, x) : ts_web_ring_push(w->ring, x)) !=
                      TS_OK) {
            /* Cannot keep it: browsers that needed it must reload. */
            ts_web_event_unref(x);
            reset_feed(w, e->seq);
            reset = 1;
        } else if (g && !g->is_dirty) {
            g->is_dirty = 1;
            g->dirty = w->dirty;
            w->dirty = g;
        }
    }
    while (w->dirty) {
        struct group *g = w->dirty;
        w->dirty = g->dirty;
        g->dirty = NULL;
        g->is_dirty = 0;
        if (!reset)
            group_pump(w, g);
        else
            group_maybe_free(w, g);
    }
    if (reset)
        pump_all(w);
}

void ts_web_on_reset(struct ts_web *w, uint64_t seq)
{
    if (!w || w->closing)
        return;
    reset_feed(w, seq);
    pump_all(w);
}

void ts_web_on_flushed(struct ts_web *w, const struct ts_mirror_touched *ids)
{
    if (!w)
        return;
    for (size_t i = 0; i < ids->n; i++) {
        struct ts_mirror_thread *t = NULL;
        if (ts_mirror_db_thread_by_id(w->db, ids->ids[i], &t) != TS_OK)
            continue;
        char name[TS_MIRROR_NAME_SIZE];
        struct ts_buf b = TS_BUF_INIT;
        if (ts_mirror_render_file_name(t->thread.key, name) == TS_OK &&
            ts_web_page_atom(&b, &t->thread, (const Threadsync__Comment *const *)t->comments,
                             t->n_comments, w->cfg.atom_entries, "") == TS_OK) {
            char path[4096];
            snprintf(path, sizeof(path), "%s/threads/%s.atom", w->dir, name);
            ts_file_write_atomic(path, b.p, b.len, 0644);
        }
        ts_buf_free(&b);
        ts_mirror_thread_free(t);
    }
}

/* ---- posting --------------------------------------------------------------- */

struct pending_post {
    struct ts_web *w;
    struct ts_web_http_hold *hold;
    char *key, *name, *email, *body;
    uint64_t parent, comment;
    int json, kind; /* 0 post, 1 edit, 2 delete */
    char idem[TS_WEB_IDEM_HEX];
    char reader_key[TS_WEB_READER_KEY_HEX + 1]; /* "" when not sent */
};

static void pending_free(struct pending_post *p)
{
    ts_web_http_release(p->hold);
    free(p->key);
    free(p->name);
    free(p->email);
    free(p->body);
    free(p);
}

static int status_for(int err)
{
    switch (err) {
    case TS_E_RATE_LIMITED:
        return 429;
    case TS_E_TOO_LARGE:
        return 413;
    case TS_E_FORBIDDEN:
    case TS_E_THREAD_LOCKED:
        return 403;
    case TS_E_INVALID_ARGUMENT:
        return 422;
    case TS_E_NOT_FOUND:
        return 404;
    default:
        return 503;
    }
}

/* Ends a JSON answer with a fresh form nonce and its token, for the
 * script's next submit (a used nonce would replay the last post). */
static void add_tokens(struct ts_web *w, const char *key, struct ts_buf *b)
{
    char nonce[TS_WEB_NONCE_LEN], csrf[TS_WEB_MAC_HEX];
    if (ts_web_nonce_new((uint64_t)time(NULL), nonce) != TS_OK) {
        ts_buf_puts(b, "}\n");
        return;
    }
    ts_web_csrf(w->secret, key, nonce, csrf);
    ts_buf_printf(b, ",\"nonce\":\"%s\",\"csrf\":\"%s\"}\n", nonce, csrf);
}

/* Answers a refusal: the form again, the reader's text in it, the message
 * above it (or, for the script, the same as JSON). */
static void refuse(struct ts_web *w, h2o_req_t *req, const char *key, int json, int status,
                   const char *code, const char *msg, const struct form_state *fs)
{
    if (json) {
        struct ts_buf b = TS_BUF_INIT;
        ts_buf_printf(&b, "{\"ok\":false,\"code\":\"%s\",\"error\":\"", code);
        ts_mirror_render_text(&b, msg, 0);
        ts_buf_puts(&b, "\"");
        add_tokens(w, key, &b);
        ts_web_http_header(req, "cache-control", "no-store");
        ts_web_resp_buf(req, status, "application/json; charset=utf-8", &b);
        return;
    }
    struct ts_mirror_thread *t = NULL;
    if (ts_mirror_db_thread_by_key(w->db, key, &t) != TS_OK) {
        send_text(req, status, msg);
        return;
    }
    render_page(w, req, t, 0, fs, status);
    ts_mirror_thread_free(t);
}

static void redirect(struct ts_web *w, h2o_req_t *req, const char *key, uint64_t id)
{
    struct ts_buf b = TS_BUF_INIT;
    ts_buf_puts(&b, w->base);
    ts_buf_puts(&b, "/t/");
    ts_web_page_key(&b, key);
    if (id)
        ts_buf_printf(&b, "#c%" PRIu64, id);
    ts_buf_add(&b, "", 1);
    if (!b.failed)
        ts_web_http_header(req, "location", b.p);
    ts_buf_free(&b);
    ts_web_http_header(req, "cache-control", "no-store");
    ts_web_http_send(req, 303, "text/plain; charset=utf-8", "see other\n", 10);
}

static void set_edit_cookie(struct ts_web *w, h2o_req_t *req, const char *key, uint64_t id,
                            const char *edit_key)
{
    struct ts_buf b = TS_BUF_INIT;
    ts_buf_printf(&b, "ts_ek_%" PRIu64 "=%s; Path=%s/t/", id, edit_key, w->base);
    ts_web_page_key(&b, key);
    ts_buf_printf(&b, "; Max-Age=%d; HttpOnly; SameSite=Strict", EDIT_COOKIE_MAX_AGE);
    ts_buf_add(&b, "", 1);
    if (!b.failed)
        ts_web_http_header(req, "set-cookie", b.p);
    ts_buf_free(&b);
}

static void clear_edit_cookie(struct ts_web *w, h2o_req_t *req, const char *key, uint64_t id)
{
    struct ts_buf b = TS_BUF_INIT;
    ts_buf_printf(&b, "ts_ek_%" PRIu64 "=; Path=%s/t/", id, w->base);
    ts_web_page_key(&b, key);
    ts_buf_puts(&b, "; Max-Age=0; HttpOnly; SameSite=Strict");
    ts_buf_add(&b, "", 1);
    if (!b.failed)
        ts_web_http_header(req, "set-cookie", b.p);
    ts_buf_free(&b);
}

static void answer_error(struct pending_post *p, int err, const Threadsync__Error *detail)
{
    h2o_req_t *req = p->hold->req;
    const char *msg =
        detail && detail->message && detail->message[0] ? detail->message : ts_err_message(err);
    struct form_state fs = {.parent = p->parent,
                            .edit = p->kind == 1 ? p->comment : 0,
                            .name = p->name,
                            .email = p->email,
                            .body = p->body,
                            .error = msg};
    refuse(p->w, req, p->key, p->json, status_for(err), ts_err_name(err), msg, &fs);
}

/* The request to answer a success on, or NULL when the browser left, the
 * edge is stopping or the cluster refused: then that is answered and p is
 * freed here. */
static h2o_req_t *answer_begin(struct pending_post *p, int err, const Threadsync__Error *detail)
{
    h2o_req_t *req = p->hold->req;
    if (req && p->w->closing)
        send_text(req, 503, "shutting down\n");
    else if (req && err != TS_OK)
        answer_error(p, err, detail);
    else if (req)
        return req;
    pending_free(p);
    return NULL;
}

static void on_post_done(void *arg, int err, const Threadsync__Error *detail,
                         const Threadsync__PostResult *r);

static int send_post(struct pending_post *p)
{
    Threadsync__Post m;
    threadsync__post__init(&m);
    m.idempotency_key = p->idem;
    m.thread_key = p->key;
    m.parent_id = p->parent;
    m.author_name = p->name;
    m.author_email = p->email;
    m.body = p->body;
    m.reader_key = p->reader_key;
    return ts_client_post(p->w->client, &m, on_post_done, p);
}

/* A token not marked as a gateway gets its reader keys refused before
 * anything is proposed: the edge then posts without them from now on
 * (limits and bans fall back to the author fields) and says so once. */
static int retry_without_reader_key(struct pending_post *p, int err,
                                    const Threadsync__Error *detail)
{
    if (err != TS_E_INVALID_ARGUMENT || !detail || !detail->field ||
        strcmp(detail->field, "reader_key") != 0 || !p->reader_key[0] || p->w->closing)
        return 0;
    if (!p->w->no_reader_keys)
        fprintf(stderr, "warning: web: the post token is not a gateway token: posting without "
                        "reader keys (rate limits and bans apply per author, not per reader); "
                        "see `threadsync admin token add --gateway`\n");
    p->w->no_reader_keys = 1;
    p->reader_key[0] = '\0';
    return send_post(p) == TS_OK;
}

static void on_post_done(void *arg, int err, const Threadsync__Error *detail,
                         const Threadsync__PostResult *r)
{
    struct pending_post *p = arg;
    if (retry_without_reader_key(p, err, detail))
        return;
    h2o_req_t *req = answer_begin(p, err, detail);
    if (!req)
        return;
    if (r->status == THREADSYNC__STATUS__PENDING)
        own_add(p->w, r, p->name, p->body, p->parent);
    if (r->edit_key && r->edit_key[0])
        set_edit_cookie(p->w, req, p->key, r->comment_id, r->edit_key);
    if (p->json) {
        Threadsync__Comment c;
        threadsync__comment__init(&c);
        c.id = r->comment_id;
        c.thread_id = r->thread_id;
        c.parent_id = p->parent;
        c.author_name = p->name;
        c.body = p->body;
        c.created_at_ms = (int64_t)time(NULL) * 1000;
        c.status = THREADSYNC__STATUS__VISIBLE; /* the poster sees their text either way */
        c.version = 1;
        struct ts_buf b = TS_BUF_INIT;
        ts_buf_printf(&b, "{\"ok\":true,\"pending\":%s,\"seq\":%" PRIu64 ",\"comment\":",
                      r->status == THREADSYNC__STATUS__PENDING ? "true" : "false", r->seq);
        ts_web_page_comment_json(&b, &c);
        add_tokens(p->w, p->key, &b);
        ts_web_http_header(req, "cache-control", "no-store");
        ts_web_resp_buf(req, 200, "application/json; charset=utf-8", &b);
    } else {
        redirect(p->w, req, p->key, r->comment_id);
    }
    pending_free(p);
}

static void on_change_done(void *arg, int err, const Threadsync__Error *detail,
                           const Threadsync__ChangeResult *r)
{
    struct pending_post *p = arg;
    h2o_req_t *req = answer_begin(p, err, detail);
    if (!req)
        return;
    if (p->kind == 2)
        clear_edit_cookie(p->w, req, p->key, p->comment);
    if (p->json) {
        struct ts_buf b = TS_BUF_INIT;
        ts_buf_puts(&b, "{\"ok\":true");
        add_tokens(p->w, p->key, &b);
        ts_web_resp_buf(req, 200, "application/json; charset=utf-8", &b);
    } else {
        redirect(p->w, req, p->key, p->kind == 2 ? 0 : p->comment);
    }
    pending_free(p);
}

static int is_blank(const char *s)
{
    for (; s && *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\r' && *s != '\n')
            return 0;
    return 1;
}

/* POST /t/{key}/post|edit|delete. kind as in pending_post. */
static int post_form(struct ts_web *w, h2o_req_t *req, const char *key, int kind)
{
    int json = ts_web_resp_wants_json(req);
    struct ts_web_kv *kv = NULL;
    size_t n = 0;
    if (ts_web_form_parse(req->entity.base, req->entity.len, FORM_PAIRS_MAX, &kv, &n) != TS_OK) {
        send_text(req, 400, "malformed form\n");
        return 0;
    }
    const char *name = ts_web_kv_get(kv, n, "name");
    const char *email = ts_web_kv_get(kv, n, "email");
    const char *body = ts_web_kv_get(kv, n, "body");
    const char *hp = ts_web_kv_get(kv, n, "website");
    const char *parent_s = ts_web_kv_get(kv, n, "parent");
    const char *comment_s = ts_web_kv_get(kv, n, "comment");
    uint64_t parent = parent_s ? strtoull(parent_s, NULL, 10) : 0;
    uint64_t comment = comment_s ? strtoull(comment_s, NULL, 10) : 0;
    struct form_state fs = {.parent = parent,
                            .edit = kind == 1 ? comment : 0,
                            .name = name,
                            .email = email,
                            .body = body};
    const char *nonce = ts_web_kv_get(kv, n, "nonce");
    int rc = ts_web_csrf_check(w->secret, key, nonce, ts_web_kv_get(kv, n, "csrf"),
                               (uint64_t)time(NULL));
    if (rc != TS_OK) {
        /* A forged or foreign token gets nothing; an expired form (an old
         * tab) gets the form back, text kept, with a fresh token. */
        if (!nonce || !ts_web_kv_get(kv, n, "csrf"))
            send_text(req, 403, "missing form token\n");
        else {
            fs.error = "This form has expired or is not valid. Please send it again.";
            refuse(w, req, key, json, 403, "FORBIDDEN", fs.error, &fs);
        }
        ts_web_kv_free(kv, n);
        return 0;
    }
    if (hp && hp[0]) {
        /* A bot filled the field people cannot see: act as if it worked. */
        redirect(w, req, key, 0);
        ts_web_kv_free(kv, n);
        return 0;
    }
    if (kind == 0 && (is_blank(name) || is_blank(body))) {
        fs.error = is_blank(name) ? "Please give a name." : "Please write a comment.";
        refuse(w, req, key, json, 422, "INVALID_ARGUMENT", fs.error, &fs);
        ts_web_kv_free(kv, n);
        return 0;
    }
    struct reader r;
    reader_init(w, req, &r);
    const char *edit_key = kind ? reader_key(&r, comment) : NULL;
    if (kind && !edit_key) {
        fs.error = "Only the author can change this comment, from the browser that posted it.";
        refuse(w, req, key, json, 403, "FORBIDDEN", fs.error, &fs);
        ts_web_kv_free(kv, n);
        return 0;
    }
    if (kind == 1 && is_blank(body)) {
        fs.error = "Please write a comment.";
        refuse(w, req, key, json, 422, "INVALID_ARGUMENT", fs.error, &fs);
        ts_web_kv_free(kv, n);
        return 0;
    }
    struct pending_post *p = calloc(1, sizeof(*p));
    if (p) {
        p->w = w;
        p->json = json;
        p->kind = kind;
        p->parent = parent;
        p->comment = comment;
        p->hold = ts_web_http_hold(req);
        p->key = strdup(key);
        p->name = strdup(name ? name : "");
        p->email = strdup(email ? email : "");
        p->body = strdup(body ? body : "");
    }
    if (!p || !p->hold || !p->key || !p->name || !p->email || !p->body) {
        if (p)
            pending_free(p);
        ts_web_kv_free(kv, n);
        send_text(req, 503, "out of memory\n");
        return 0;
    }
    if (kind == 0) {
        ts_web_idem_key(w->secret, key, nonce, p->idem);
        if (!w->no_reader_keys) {
            unsigned char addr[16];
            reader_addr(w, req, addr);
            ts_web_reader_key(w->secret, addr, p->reader_key);
        }
        rc = send_post(p);
    } else if (kind == 1) {
        Threadsync__Edit m;
        threadsync__edit__init(&m);
        m.comment_id = comment;
        m.edit_key = (char *)edit_key;
        m.body = p->body;
        rc = ts_client_edit(w->client, &m, on_change_done, p);
    } else {
        Threadsync__Delete m;
        threadsync__delete__init(&m);
        m.comment_id = comment;
        m.edit_key = (char *)edit_key;
        rc = ts_client_delete(w->client, &m, on_change_done, p);
    }
    ts_web_kv_free(kv, n);
    if (rc != TS_OK) {
        answer_error(p, rc, NULL);
        pending_free(p);
    }
    return 0;
}

/* ---- routing --------------------------------------------------------------- */

static int ends_with(const char *s, size_t len, const char *suffix, size_t *rest)
{
    size_t sl = strlen(suffix);
    if (len <= sl || memcmp(s + len - sl, suffix, sl) != 0)
        return 0;
    *rest = len - sl;
    return 1;
}

static int is_mod_path(const char *path, size_t plen)
{
    return plen >= 4 && memcmp(path, "/mod", 4) == 0 && (plen == 4 || path[4] == '/');
}

/* The request's path after base and before the query: 0 when it is not
 * under base. */
static int path_in_base(const struct ts_web *w, h2o_req_t *req, const char **path, size_t *plen)
{
    size_t len = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
    size_t bl = strlen(w->base);
    if (len < bl || memcmp(req->path.base, w->base, bl) != 0)
        return 0;
    *path = req->path.base + bl;
    *plen = len - bl;
    return 1;
}

/* The console's own listener (mod_listen): /mod/ and its static files. */
static int handle_mod(void *arg, h2o_req_t *req)
{
    struct ts_web *w = arg;
    const char *path;
    size_t plen;
    if (!path_in_base(w, req, &path, &plen))
        return -1;
    if (is_mod_path(path, plen))
        return ts_web_mod_handle(w->mod, req, path, plen);
    for (size_t i = 0; i < ts_web_assets_n; i++)
        if (strncmp(ts_web_assets[i].path, "/static/mod.", 12) == 0 &&
            plen == strlen(ts_web_assets[i].path) && memcmp(path, ts_web_assets[i].path, plen) == 0)
            return get_static(req, &ts_web_assets[i]);
    return -1;
}

enum route { R_PAGE, R_EMBED, R_JSON, R_ATOM, R_EVENTS, R_POST, R_EDIT, R_DELETE };

static int handle(void *arg, h2o_req_t *req)
{
    struct ts_web *w = arg;
    const char *path;
    size_t plen;
    if (!path_in_base(w, req, &path, &plen))
        return -1;
    int get = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) ||
              h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
    int post = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"));
    if (is_mod_path(path, plen))
        return w->mod_http ? -1 : ts_web_mod_handle(w->mod, req, path, plen);
    if (plen == 7 && memcmp(path, "/counts", 7) == 0 && get)
        return get_counts(w, req);
    for (size_t i = 0; i < ts_web_assets_n; i++)
        if (get && plen == strlen(ts_web_assets[i].path) &&
            memcmp(path, ts_web_assets[i].path, plen) == 0)
            return get_static(req, &ts_web_assets[i]);
    if (plen <= 3 || memcmp(path, "/t/", 3) != 0)
        return -1;
    path += 3;
    plen -= 3;
    static const struct {
        const char *suffix;
        enum route r;
        int post;
    } suffixes[] = {{"/embed", R_EMBED, 0},   {".json", R_JSON, 0}, {".atom", R_ATOM, 0},
                    {"/events", R_EVENTS, 0}, {"/post", R_POST, 1}, {"/edit", R_EDIT, 1},
                    {"/delete", R_DELETE, 1}};
    enum route r = R_PAGE;
    int wants_post = 0;
    size_t klen = plen;
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++)
        if (ends_with(path, plen, suffixes[i].suffix, &klen)) {
            r = suffixes[i].r;
            wants_post = suffixes[i].post;
            break;
        }
    if (wants_post ? !post : !get) {
        ts_web_http_header(req, "allow", wants_post ? "POST" : "GET, HEAD");
        send_text(req, 405, "method not allowed\n");
        return 0;
    }
    struct ts_web_kv *kv = NULL;
    size_t n = 0;
    if (ts_web_resp_key(path, klen, &kv, &n) != TS_OK) {
        ts_web_kv_free(kv, n);
        send_text(req, 400, "bad thread key\n");
        return 0;
    }
    const char *key = kv[0].value;
    if (r == R_POST || r == R_EDIT || r == R_DELETE) {
        int ret = post_form(w, req, key, r == R_POST ? 0 : r == R_EDIT ? 1 : 2);
        ts_web_kv_free(kv, n);
        return ret;
    }
    struct ts_mirror_thread *t = NULL;
    int rc = ts_mirror_db_thread_by_key(w->db, key, &t);
    ts_web_kv_free(kv, n);
    if (rc != TS_OK) {
        send_text(req, rc == TS_E_NOT_FOUND ? 404 : 503,
                  rc == TS_E_NOT_FOUND ? "no such thread\n" : "cannot read the mirror\n");
        return 0;
    }
    struct form_state fs = {.parent = query_u64(req, "parent"), .edit = query_u64(req, "edit")};
    switch (r) {
    case R_PAGE:
    case R_EMBED:
        rc = render_page(w, req, t, r == R_EMBED, &fs, 200);
        break;
    case R_JSON:
        rc = get_json(w, req, t);
        break;
    case R_ATOM:
        rc = get_atom(w, req, t);
        break;
    default:
        rc = get_events(w, req, t);
        break;
    }
    ts_mirror_thread_free(t);
    return rc;
}

/* ---- life cycle ------------------------------------------------------------ */

int ts_web_new(uv_loop_t *loop, const struct ts_web_config *cfg,
               const struct ts_client_config *client_cfg, uint64_t cursor, struct ts_web **out)
{
    *out = NULL;
    struct ts_web *w = calloc(1, sizeof(*w));
    if (!w)
        return TS_E_NOMEM;
    w->loop = loop;
    w->cfg = *cfg;
    if (!w->cfg.heartbeat_ms)
        w->cfg.heartbeat_ms = 15000;
    if (!w->cfg.ring_events)
        w->cfg.ring_events = 4096;
    if (!w->cfg.atom_entries)
        w->cfg.atom_entries = 50;
    w->base = strdup(cfg->base ? cfg->base : "");
    w->dir = strdup(cfg->dir);
    if (!w->base || !w->dir) {
        free(w->base);
        free(w->dir);
        free(w);
        return TS_E_NOMEM;
    }
    *out = w;
    if (ts_web_proxies_parse(cfg->trusted_proxies, &w->proxies) != TS_OK) {
        fprintf(stderr, "error: web: --trusted-proxy %s: want numeric addresses\n",
                cfg->trusted_proxies);
        return TS_E_CONFIG;
    }
    int rc = ts_web_secret_load(cfg->dir, w->secret);
    if (rc != TS_OK) {
        fprintf(stderr, "error: web: cannot read or make %s/web.secret (%s)\n", cfg->dir,
                ts_err_name(rc));
        return rc;
    }
    if ((rc = ts_mirror_db_open(cfg->dir, &w->db)) != TS_OK)
        return rc;
    if ((rc = ts_web_ring_new(w->cfg.ring_events, cursor, &w->ring)) != TS_OK)
        return rc;
    struct ts_web_mod_config mc = {.base = w->base,
                                   .cluster = client_cfg,
                                   .secret = w->secret,
                                   .db = w->db,
                                   .heartbeat_ms = w->cfg.heartbeat_ms};
    if ((rc = ts_web_mod_new(loop, &mc, &w->mod)) != TS_OK)
        return rc;
    struct ts_client_config cc = *client_cfg;
    cc.on_state = NULL;
    cc.state_arg = NULL;
    cc.reconnect = 1;
    cc.client_name = "threadsync-web";
    if ((rc = ts_client_new(loop, &cc, &w->client)) != TS_OK)
        return rc;
    struct ts_web_http_limits lim = {.max_body = cfg->max_body,
                                     .req_timeout_ms = cfg->req_timeout_ms,
                                     .max_conns = cfg->max_conns,
                                     .max_conns_per_addr = cfg->max_conns_per_addr,
                                     .gzip = cfg->gzip,
                                     .cert_file = cfg->cert_file,
                                     .key_file = cfg->key_file,
                                     .fanout_threads = cfg->fanout_threads,
                                     .fanout_sendmsg = cfg->fanout_sendmsg};
    rc = ts_web_http_new(loop, cfg->listen, &lim, handle, w, &w->http);
    if (rc != TS_OK)
        return rc;
    lim.fanout_threads = 0; /* the console's streams are h2o responses */
    if (cfg->mod_listen &&
        (rc = ts_web_http_new(loop, cfg->mod_listen, &lim, handle_mod, w, &w->mod_http)) != TS_OK)
        return rc;
    uv_timer_init(loop, &w->heartbeat);
    w->heartbeat.data = w;
    w->timer_on = 1;
    uv_timer_start(&w->heartbeat, on_heartbeat, w->cfg.heartbeat_ms, w->cfg.heartbeat_ms);
    return TS_OK;
}

uint16_t ts_web_port(const struct ts_web *w)
{
    return w->http ? ts_web_http_port(w->http) : 0;
}

unsigned ts_web_fanout_threads(const struct ts_web *w)
{
    return w->http ? ts_web_http_fanout_threads(w->http) : 0;
}

unsigned ts_web_fanout_batched(const struct ts_web *w)
{
    return w->http ? ts_web_http_fanout_batched(w->http) : 0;
}

uint16_t ts_web_mod_port(const struct ts_web *w)
{
    return w->mod_http ? ts_web_http_port(w->mod_http) : ts_web_port(w);
}

void ts_web_close(struct ts_web *w)
{
    if (!w || w->closing)
        return;
    w->closing = 1;
    if (w->timer_on)
        uv_close((uv_handle_t *)&w->heartbeat, NULL);
    w->timer_on = 0;
    pump_all(w); /* ends each stream, now or at its proceed */
    ts_web_mod_close(w->mod);
    if (w->client)
        ts_client_close(w->client, NULL, NULL);
    ts_web_http_close(w->http);
    ts_web_http_close(w->mod_http);
}

void ts_web_free(struct ts_web *w)
{
    if (!w)
        return;
    ts_web_http_free(w->http);
    ts_web_http_free(w->mod_http);
    ts_web_mod_free(w->mod);
    ts_web_ring_free(w->ring);
    ts_mirror_db_close(w->db);
    for (size_t i = 0; i < OWN_MAX; i++)
        own_free(w->own[i]);
    OPENSSL_cleanse(w->secret, sizeof(w->secret));
    free(w->base);
    free(w->dir);
    free(w);
}
