/*
 * ts_web_mod: the moderation console (see ts_web_mod.h).
 *
 * Invariants:
 * - A session is in m->sessions from sign-in until its client's close
 *   callback, which is the only place it is freed; a dead session (signed
 *   out, expired, refused by the cluster) stays listed until then but is
 *   never found by a cookie. Every request callback of its client runs
 *   before that close callback, so callbacks may use their session.
 * - A request answered later holds its h2o request through a
 *   ts_web_http_hold; if the browser left, the answer is dropped.
 * - A watcher (one console's /mod/events) has at most one h2o_send in
 *   flight (its `out` buffer); frames meanwhile gather in `next`, bounded
 *   by WATCH_BUF_MAX (beyond it the stream ends and the console reloads).
 * - The token is cleansed from memory when its session is freed.
 *
 * Load: a handful of moderators; sessions and sign-in counters are scanned
 * linearly. The store is a sorted array (binary search, memmove on insert).
 */
#include "ts_web_mod.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "ts_buf.h"
#include "ts_err.h"
#include "ts_hex.h"
#include "ts_mirror_render.h"
#include "ts_web_http.h"
#include "ts_web_page.h"
#include "ts_web_resp.h"

#define STORE_MAX 20000
#define RECENT_SHOWN 200
#define RECENT_EVENTS 5000 /* history a new session reads into the store */
#define SESSIONS_MAX 256
#define SIGNIN_ADDRS 1024
#define TOKEN_MAX 256
#define FORM_PAIRS_MAX 1100 /* a bulk action on up to 1000 comments */
#define BULK_MAX 1000
#define WATCH_BUF_MAX ((size_t)256 * 1024)
#define SID_HEX 33
#define CSRF_HEX 33
#define SIGNIN_KEY "\x01mod-signin" /* the sign-in form's CSRF scope */

static const char *const status_names[] = {"?", "VISIBLE", "PENDING", "HIDDEN", "DELETED"};

static const char *status_name(int s)
{
    return s >= 1 && s <= 4 ? status_names[s] : status_names[0];
}

struct seen {
    Threadsync__Comment *c; /* a deep copy (protobuf-c unpacked) */
    char *key;              /* its thread's key */
};

struct sess;

struct watcher {
    h2o_generator_t gen; /* first: h2o's callbacks get its address */
    struct sess *s;
    h2o_req_t *req;
    struct watcher *next;
    struct ts_buf out, next_frames;
    int sending;
    const char *final; /* set: the stream ends with this (static) text */
};

enum sess_state { S_VERIFYING, S_ACTIVE, S_DEAD };

struct sess {
    struct ts_web_mod *m;
    struct sess *next;
    enum sess_state state;
    char id[SID_HEX], csrf[CSRF_HEX];
    char *token;
    int role;
    time_t expires;
    uint64_t live_from; /* events up to this seq are history: stored, not streamed */
    uint64_t snap_tid;  /* the last thread of a snapshot's chunks, and its key */
    char *snap_key;
    struct ts_client *client;
    struct ts_web_http_hold *signin; /* the sign-in request, while VERIFYING */
    int signin_secure;
    char addr[INET6_ADDRSTRLEN]; /* the sign-in's peer */
    struct watcher *watchers;
    char *flash; /* a message for the next page (no-script actions) */
};

struct signin_count {
    char addr[INET6_ADDRSTRLEN];
    uint64_t since; /* unix seconds the window opened */
    unsigned n;
};

struct ts_web_mod {
    uv_loop_t *loop;
    char *base;
    struct ts_client_config cluster;
    const char **servers;
    char *ca;
    const uint8_t *secret;
    struct ts_mirror_db *db;
    struct sess *sessions;
    size_t n_sessions;
    struct seen *store;
    size_t n_store;
    struct signin_count signins[SIGNIN_ADDRS];
    uv_timer_t timer;
    int timer_on, closing;
};

/* ---- the store of comment states ------------------------------------------ */

static size_t store_find(const struct ts_web_mod *m, uint64_t id)
{
    size_t lo = 0, hi = m->n_store;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (m->store[mid].c->id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static const struct seen *store_get(const struct ts_web_mod *m, uint64_t id)
{
    size_t i = store_find(m, id);
    return i < m->n_store && m->store[i].c->id == id ? &m->store[i] : NULL;
}

static Threadsync__Comment *comment_copy(const Threadsync__Comment *c)
{
    size_t len = threadsync__comment__get_packed_size(c);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return NULL;
    threadsync__comment__pack(c, buf);
    Threadsync__Comment *r = threadsync__comment__unpack(NULL, len, buf);
    free(buf);
    return r;
}

/* Keeps c (of the thread key) unless a newer version is known. */
static void store_put(struct ts_web_mod *m, const Threadsync__Comment *c, const char *key)
{
    if (!c || !key)
        return;
    size_t i = store_find(m, c->id);
    if (i < m->n_store && m->store[i].c->id == c->id) {
        if (m->store[i].c->version >= c->version)
            return;
        Threadsync__Comment *copy = comment_copy(c);
        if (!copy)
            return;
        threadsync__comment__free_unpacked(m->store[i].c, NULL);
        m->store[i].c = copy;
        return;
    }
    if (m->n_store == STORE_MAX) {
        if (i == 0)
            return; /* older than everything kept */
        threadsync__comment__free_unpacked(m->store[0].c, NULL);
        free(m->store[0].key);
        memmove(m->store, m->store + 1, (i - 1) * sizeof(*m->store));
        i--;
        m->n_store--;
    } else if (!m->store) {
        m->store = calloc(STORE_MAX, sizeof(*m->store));
        if (!m->store)
            return;
    }
    Threadsync__Comment *copy = comment_copy(c);
    char *k = strdup(key);
    if (!copy || !k) {
        if (copy)
            threadsync__comment__free_unpacked(copy, NULL);
        free(k);
        return;
    }
    memmove(m->store + i + 1, m->store + i, (m->n_store - i) * sizeof(*m->store));
    m->store[i].c = copy;
    m->store[i].key = k;
    m->n_store++;
}

/* ---- responses ------------------------------------------------------------- */

/* Every /mod/ answer: nothing of it may be kept by a browser or a proxy. */
#define PRIVATE "private, no-store"

static void send_text(h2o_req_t *req, int status, const char *msg)
{
    ts_web_resp_text(req, status, PRIVATE, msg);
}

static void send_buf(h2o_req_t *req, int status, const char *ctype, struct ts_buf *b)
{
    ts_web_http_header(req, "cache-control", PRIVATE);
    ts_web_resp_buf(req, status, ctype, b);
}

static void redirect(h2o_req_t *req, const char *location)
{
    ts_web_http_header(req, "location", location);
    send_text(req, 303, "see other\n");
}

/* "YYYY-MM-DD HH:MM UTC" of unix ms, in out (32 bytes); returns out. */
static const char *utc(int64_t ms, char out[32])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (!gmtime_r(&t, &tm) || !strftime(out, 32, "%Y-%m-%d %H:%M UTC", &tm))
        snprintf(out, 32, "?");
    return out;
}

/* {base}/mod/t/{key} */
static void thread_url(struct ts_buf *b, const struct ts_web_mod *m, const char *key)
{
    ts_buf_printf(b, "%s/mod/t/", m->base);
    ts_web_page_key(b, key);
}

static void page_head(struct ts_buf *b, const struct ts_web_mod *m, const struct sess *s,
                      const char *title, const char *view, const char *key)
{
    ts_buf_puts(b, "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                   "<meta name=\"viewport\" content=\"width=device-width\"><title>");
    ts_web_page_text(b, title);
    ts_buf_printf(b,
                  " · threadsync moderation</title><link rel=\"stylesheet\" "
                  "href=\"%s/static/mod.css\"><script src=\"%s/static/mod.js\" defer></script>"
                  "</head>\n<body class=\"mod\" data-base=\"%s\" data-view=\"%s\"",
                  m->base, m->base, m->base, view);
    if (key) {
        ts_buf_puts(b, " data-key=\"");
        ts_web_page_text(b, key);
        ts_buf_puts(b, "\"");
    }
    if (!s) {
        ts_buf_puts(b, ">\n");
        return;
    }
    ts_buf_printf(b,
                  " data-csrf=\"%s\">\n<header class=\"mod-bar\"><strong>threadsync "
                  "moderation</strong> <nav><a href=\"%s/mod/\">Queue</a> <a "
                  "href=\"%s/mod/recent\">Recent</a> <a href=\"%s/mod/audit\">Audit</a></nav> "
                  "<span id=\"mod-live\" "
                  "data-live=\"off\">offline</span> <form method=\"post\" "
                  "action=\"%s/mod/signout\" class=\"mod-signout\"><input type=\"hidden\" "
                  "name=\"csrf\" value=\"%s\"><button type=\"submit\">Sign out</button></form>"
                  "</header>\n<p id=\"mod-msg\" role=\"status\">",
                  s->csrf, m->base, m->base, m->base, m->base, s->csrf);
    ts_web_page_text(b, s->flash);
    ts_buf_puts(b, "</p>\n<main>\n");
}

static void page_tail(struct ts_buf *b)
{
    ts_buf_puts(b, "</main>\n</body></html>\n");
}

/* The hidden fields every action form carries. */
static void form_hidden(struct ts_buf *b, const struct sess *s, const char *back)
{
    ts_buf_printf(b, "<input type=\"hidden\" name=\"csrf\" value=\"%s\">", s->csrf);
    ts_buf_puts(b, "<input type=\"hidden\" name=\"back\" value=\"");
    ts_web_page_text(b, back);
    ts_buf_puts(b, "\">");
}

/* One comment as the console shows it: data- attributes carry what mod.js
 * updates in place; CSS shows the buttons that fit its status. c NULL: the
 * template rows are cloned from (fields empty). */
static void row(struct ts_buf *b, const struct ts_web_mod *m, const struct sess *s,
                const Threadsync__Comment *c, const char *key, const char *back,
                const Threadsync__Comment *parent, int edit)
{
    uint64_t id = c ? c->id : 0, v = c ? c->version : 0;
    ts_buf_printf(b,
                  "<article class=\"mod-row\" id=\"m%" PRIu64 "\" data-id=\"%" PRIu64
                  "\" data-version=\"%" PRIu64 "\" data-status=\"%s\" data-key=\"",
                  id, id, v, c ? status_name(c->status) : "");
    ts_web_page_text(b, key);
    ts_buf_printf(b,
                  "\">\n<input type=\"checkbox\" class=\"mod-pick\" form=\"mod-bulk\" name=\"c\" "
                  "value=\"%" PRIu64 ".%" PRIu64 "\" aria-label=\"select\">\n<div "
                  "class=\"mod-meta\"><a class=\"mod-thread\" href=\"",
                  id, v);
    if (key)
        thread_url(b, m, key);
    ts_buf_puts(b, "\">");
    ts_web_page_text(b, key);
    ts_buf_puts(b, "</a> · <a class=\"mod-author\" href=\"");
    ts_buf_printf(b, "%s/mod/recent?author=", m->base);
    if (c)
        ts_web_page_key(b,
                        c->author_email && c->author_email[0] ? c->author_email : c->author_name);
    ts_buf_puts(b, "\">");
    ts_web_page_text(b, c ? c->author_name : "");
    ts_buf_puts(b, "</a> <span class=\"mod-email\">");
    ts_web_page_text(b, c ? c->author_email : "");
    char t[32];
    ts_buf_printf(b, "</span> · <span class=\"mod-time\">%s</span>",
                  c ? utc(c->created_at_ms, t) : "");
    ts_buf_printf(b,
                  " · <span class=\"mod-id\">#%" PRIu64
                  "</span> · <span class=\"mod-status\">%s</span> "
                  "<span class=\"mod-by\">",
                  id, c ? status_name(c->status) : "");
    if (c && c->moderated_by && c->moderated_by[0]) {
        ts_buf_puts(b, "by ");
        ts_web_page_text(b, c->moderated_by);
    }
    ts_buf_puts(b, "</span></div>\n");
    if (parent) {
        ts_buf_puts(b, "<blockquote class=\"mod-parent\"><span>in reply to ");
        ts_web_page_text(b, parent->author_name);
        ts_buf_puts(b, ":</span> ");
        ts_web_page_text(b, parent->body);
        ts_buf_puts(b, "</blockquote>\n");
    }
    ts_buf_puts(b, "<div class=\"mod-body\">");
    ts_web_page_text(b, c ? c->body : "");
    ts_buf_printf(b, "</div>\n<form method=\"post\" action=\"%s/mod/act\" class=\"mod-act\">",
                  m->base);
    form_hidden(b, s, back);
    ts_buf_printf(b,
                  "<input type=\"hidden\" name=\"c\" value=\"%" PRIu64 ".%" PRIu64 "\">"
                  "<button name=\"op\" value=\"approve\" class=\"act-approve\">Approve</button> "
                  "<button name=\"op\" value=\"hide\" class=\"act-hide\">Hide</button> "
                  "<button name=\"op\" value=\"unhide\" class=\"act-unhide\">Unhide</button> "
                  "<button name=\"op\" value=\"delete\" class=\"act-delete\">Delete</button>"
                  "</form>\n",
                  id, v);
    if (edit) {
        ts_buf_printf(b,
                      "<details class=\"mod-edit\"><summary>Edit</summary><form method=\"post\" "
                      "action=\"%s/mod/act\" class=\"mod-act\">",
                      m->base);
        form_hidden(b, s, back);
        ts_buf_printf(b,
                      "<input type=\"hidden\" name=\"c\" value=\"%" PRIu64 ".%" PRIu64
                      "\"><textarea name=\"body\" rows=\"4\">",
                      id, v);
        ts_web_page_text(b, c ? c->body : "");
        ts_buf_puts(
            b,
            "</textarea><input name=\"reason\" maxlength=\"512\" placeholder=\"Reason\"> <button "
            "name=\"op\" value=\"edit\">Save edit</button></form></details>\n");
    }
    ts_buf_puts(b, "</article>\n");
}

static void bulk_form(struct ts_buf *b, const struct ts_web_mod *m, const struct sess *s,
                      const char *back)
{
    ts_buf_printf(b,
                  "<form method=\"post\" action=\"%s/mod/act\" id=\"mod-bulk\" "
                  "class=\"mod-act mod-bulk\">",
                  m->base);
    form_hidden(b, s, back);
    ts_buf_puts(b, "Selected: <button name=\"op\" value=\"approve\">Approve</button> <button "
                   "name=\"op\" value=\"hide\">Hide</button> <button name=\"op\" "
                   "value=\"delete\">Delete</button> <span class=\"mod-keys\">keys: j/k move, "
                   "x select, a approve, h hide, d delete</span></form>\n");
}

static void row_template(struct ts_buf *b, const struct ts_web_mod *m, const struct sess *s,
                         const char *back, int edit)
{
    ts_buf_puts(b, "<template id=\"mod-row\">");
    row(b, m, s, NULL, NULL, back, NULL, edit);
    ts_buf_puts(b, "</template>\n");
}

/* The URL of this request, for an action's "back". */
static void self_url(struct ts_buf *b, h2o_req_t *req)
{
    ts_buf_add(b, req->path.base, req->path.len);
    ts_buf_add(b, "", 1);
}

/* ---- sessions -------------------------------------------------------------- */

static void watcher_end(struct watcher *x, const char *final);

static void sess_free(struct sess *s)
{
    if (s->token) {
        OPENSSL_cleanse(s->token, strlen(s->token));
        free(s->token);
    }
    ts_web_http_release(s->signin);
    free(s->flash);
    free(s->snap_key);
    free(s);
}

static void on_client_closed(void *arg)
{
    struct sess *s = arg;
    struct ts_web_mod *m = s->m;
    for (struct sess **p = &m->sessions; *p; p = &(*p)->next)
        if (*p == s) {
            *p = s->next;
            m->n_sessions--;
            break;
        }
    sess_free(s);
}

/* Ends s: its streams end with "event: signedout", its connection closes
 * (s is freed when it has). */
static void sess_kill(struct sess *s)
{
    if (s->state == S_DEAD)
        return;
    s->state = S_DEAD;
    /* Each watcher is taken off the list here, before watcher_end may free
     * it, so the loop visibly never reads a freed head. */
    while (s->watchers) {
        struct watcher *x = s->watchers;
        s->watchers = x->next;
        x->s = NULL;
        watcher_end(x, "event: signedout\ndata: {}\n\n");
    }
    if (s->client)
        ts_client_close(s->client, on_client_closed, s);
}

/* The live session of the request's cookie, or NULL. */
static struct sess *sess_of(struct ts_web_mod *m, h2o_req_t *req)
{
    size_t len = 0;
    const char *h = ts_web_http_req_header(req, "cookie", &len);
    char id[SID_HEX];
    if (!h || ts_web_cookie_get(h, len, "ts_mod", id, sizeof(id)) != TS_OK ||
        strlen(id) != SID_HEX - 1)
        return NULL;
    time_t now = time(NULL);
    for (struct sess *s = m->sessions; s; s = s->next) {
        if (s->state != S_ACTIVE || CRYPTO_memcmp(s->id, id, SID_HEX) != 0)
            continue;
        if (s->expires <= now) {
            sess_kill(s);
            return NULL;
        }
        return s;
    }
    return NULL;
}

static void set_cookie(struct ts_web_mod *m, h2o_req_t *req, const char *id, int max_age,
                       int secure)
{
    char v[512];
    snprintf(v, sizeof(v), "ts_mod=%s; Path=%s/mod/; Max-Age=%d; HttpOnly; SameSite=Strict%s", id,
             m->base, max_age, secure ? "; Secure" : "");
    ts_web_http_header(req, "set-cookie", v);
}

/* ---- the live stream ------------------------------------------------------- */

static void watcher_unlink(struct watcher *x)
{
    if (!x->s)
        return;
    for (struct watcher **p = &x->s->watchers; *p; p = &(*p)->next)
        if (*p == x) {
            *p = x->next;
            break;
        }
    x->s = NULL;
}

static void watcher_free(struct watcher *x)
{
    watcher_unlink(x);
    ts_buf_free(&x->out);
    ts_buf_free(&x->next_frames);
    free(x);
}

/* Sends what gathered, or the final frame once x was ended, if nothing is
 * in flight. */
static void watcher_pump(struct watcher *x)
{
    if (x->sending)
        return;
    ts_buf_free(&x->out);
    if (x->final) {
        h2o_req_t *req = x->req;
        h2o_iovec_t v = h2o_iovec_init(x->final, strlen(x->final));
        watcher_free(x); /* after a final send h2o calls neither proceed nor stop */
        h2o_send(req, &v, 1, H2O_SEND_STATE_FINAL);
        return;
    }
    if (!x->next_frames.len)
        return;
    x->out = x->next_frames;
    memset(&x->next_frames, 0, sizeof(x->next_frames));
    h2o_iovec_t v = h2o_iovec_init(x->out.p, x->out.len);
    x->sending = 1;
    h2o_send(x->req, &v, 1, H2O_SEND_STATE_IN_PROGRESS);
}

/* Ends the stream with final (static text): now, or when the send in
 * flight is done. x leaves its session at once. */
static void watcher_end(struct watcher *x, const char *final)
{
    watcher_unlink(x);
    ts_buf_free(&x->next_frames);
    x->final = final;
    watcher_pump(x);
}

static void watcher_proceed(h2o_generator_t *g, h2o_req_t *req)
{
    (void)req;
    struct watcher *x = (struct watcher *)g;
    x->sending = 0;
    watcher_pump(x);
}

static void watcher_stop(h2o_generator_t *g, h2o_req_t *req)
{
    (void)req;
    watcher_free((struct watcher *)g);
}

static void sess_broadcast(struct sess *s, const char *frame, size_t len)
{
    for (struct watcher *x = s->watchers, *next; x; x = next) {
        next = x->next;
        if (x->next_frames.len + len > WATCH_BUF_MAX) {
            watcher_end(x, "event: reload\ndata: {}\n\n");
            continue;
        }
        ts_buf_add(&x->next_frames, frame, len);
        watcher_pump(x);
    }
}

static void comment_json(struct ts_buf *b, const Threadsync__Comment *c, const char *key)
{
    ts_buf_printf(b,
                  "{\"id\":%" PRIu64 ",\"version\":%" PRIu64 ",\"parent\":%" PRIu64
                  ",\"status\":\"%s\",\"key\":",
                  c->id, c->version, c->parent_id, status_name(c->status));
    ts_web_page_jstr(b, key);
    ts_buf_puts(b, ",\"by\":");
    ts_web_page_jstr(b, c->moderated_by);
    ts_buf_puts(b, ",\"author\":");
    ts_web_page_jstr(b, c->author_name);
    ts_buf_puts(b, ",\"email\":");
    ts_web_page_jstr(b, c->author_email);
    ts_buf_puts(b, ",\"body\":");
    ts_web_page_jstr(b, c->body);
    char t[32];
    ts_buf_printf(b, ",\"time\":\"%s\"}", utc(c->created_at_ms, t));
}

static void sub_events(void *arg, const Threadsync__Events *ev)
{
    struct sess *s = arg;
    if (s->state != S_ACTIVE)
        return;
    struct ts_buf b = TS_BUF_INIT;
    for (size_t i = 0; i < ev->n_events; i++) {
        const Threadsync__Event *e = ev->events[i];
        if (!e->thread)
            continue;
        if (e->seq <= s->live_from) {
            store_put(s->m, e->comment, e->thread->key);
            continue;
        }
        if (e->comment) {
            store_put(s->m, e->comment, e->thread->key);
            ts_buf_printf(&b, "id: %" PRIu64 "\nevent: comment\ndata: ", e->seq);
            comment_json(&b, e->comment, e->thread->key);
        } else {
            ts_buf_printf(&b, "id: %" PRIu64 "\nevent: thread\ndata: {\"key\":", e->seq);
            ts_web_page_jstr(&b, e->thread->key);
            ts_buf_printf(&b, ",\"locked\":%s,\"premoderated\":%s,\"by\":",
                          e->thread->locked ? "true" : "false",
                          e->thread->premoderated ? "true" : "false");
            ts_web_page_jstr(&b, e->thread->moderated_by);
            ts_buf_puts(&b, "}");
        }
        ts_buf_puts(&b, "\n\n");
    }
    if (!b.failed && b.len)
        sess_broadcast(s, b.p, b.len);
    ts_buf_free(&b);
}

static void sub_chunk(void *arg, const Threadsync__SnapshotChunk *ch)
{
    struct sess *s = arg;
    for (size_t i = 0; i < ch->n_comments; i++) {
        const Threadsync__Comment *c = ch->comments[i];
        const char *key = c->thread_id == s->snap_tid ? s->snap_key : NULL;
        for (size_t k = 0; !key && k < ch->n_threads; k++)
            if (ch->threads[k]->id == c->thread_id)
                key = ch->threads[k]->key;
        store_put(s->m, c, key);
    }
    /* A thread's comments may go on in the next chunk. */
    if (ch->n_threads) {
        const Threadsync__Thread *t = ch->threads[ch->n_threads - 1];
        char *k = t->key ? strdup(t->key) : NULL;
        if (k) {
            free(s->snap_key);
            s->snap_key = k;
            s->snap_tid = t->id;
        }
    }
}

static void sub_error(void *arg, int err, const Threadsync__Error *detail)
{
    (void)detail;
    struct sess *s = arg;
    if (err != TS_E_CLOSED && s->state == S_ACTIVE)
        fprintf(stderr, "threadsync web: moderator subscription ended: %s\n", ts_err_name(err));
}

static int get_events(struct sess *s, h2o_req_t *req)
{
    struct watcher *x = calloc(1, sizeof(*x));
    if (!x) {
        send_text(req, 503, "out of memory\n");
        return 0;
    }
    x->gen.proceed = watcher_proceed;
    x->gen.stop = watcher_stop;
    x->s = s;
    x->req = req;
    x->next = s->watchers;
    s->watchers = x;
    req->res.status = 200;
    req->res.reason = "OK";
    req->compress_hint = H2O_COMPRESS_HINT_DISABLE;
    ts_web_resp_security(req);
    ts_web_http_header(req, "cache-control", PRIVATE);
    ts_web_http_header(req, "content-type", "text/event-stream; charset=utf-8");
    ts_web_http_header(req, "x-accel-buffering", "no");
    h2o_start_response(req, &x->gen);
    ts_buf_puts(&x->next_frames, "retry: 2000\nevent: hello\ndata: {}\n\n");
    watcher_pump(x);
    return 0;
}

static void on_timer(uv_timer_t *t)
{
    struct ts_web_mod *m = t->data;
    time_t now = time(NULL);
    for (struct sess *s = m->sessions; s; s = s->next) {
        if (s->state == S_ACTIVE && s->expires <= now) {
            sess_kill(s);
            continue;
        }
        if (s->state == S_ACTIVE)
            sess_broadcast(s, ": hb\n\n", 6);
    }
}

/* ---- sign-in --------------------------------------------------------------- */

static void peer_addr(h2o_req_t *req, char addr[INET6_ADDRSTRLEN])
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    snprintf(addr, INET6_ADDRSTRLEN, "?");
    if (!req->conn->callbacks->get_peername ||
        !req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss))
        return;
    if (ss.ss_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, addr, INET6_ADDRSTRLEN);
    else if (ss.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, addr, INET6_ADDRSTRLEN);
}

/* The failed sign-ins of addr in its current window: a window opens at an
 * address's first failure and lasts a minute; successful sign-ins do not
 * count (a brute force is all failures). */
static struct signin_count *signin_slot(struct ts_web_mod *m, const char *addr)
{
    uint64_t now = (uint64_t)time(NULL);
    struct signin_count *slot = NULL;
    for (size_t i = 0; i < SIGNIN_ADDRS; i++) {
        struct signin_count *c = &m->signins[i];
        if (strcmp(c->addr, addr) == 0) {
            slot = c;
            break;
        }
        if (!slot || c->since < slot->since)
            slot = c; /* the stalest, reused when addr is new */
    }
    if (strcmp(slot->addr, addr) != 0 || slot->since + 60 <= now) {
        snprintf(slot->addr, sizeof(slot->addr), "%s", addr);
        slot->since = now;
        slot->n = 0;
    }
    return slot;
}

static void signin_page(struct ts_web_mod *m, h2o_req_t *req, int status, const char *error)
{
    char nonce[TS_WEB_NONCE_LEN], csrf[TS_WEB_MAC_HEX];
    if (ts_web_nonce_new((uint64_t)time(NULL), nonce) != TS_OK) {
        send_text(req, 503, "no randomness\n");
        return;
    }
    ts_web_csrf(m->secret, SIGNIN_KEY, nonce, csrf);
    struct ts_buf b = TS_BUF_INIT;
    page_head(&b, m, NULL, "Sign in", "signin", NULL);
    ts_buf_puts(&b, "<main class=\"mod-signin\"><h1>Moderation: sign in</h1>\n");
    if (error) {
        ts_buf_puts(&b, "<p class=\"mod-error\" role=\"alert\">");
        ts_web_page_text(&b, error);
        ts_buf_puts(&b, "</p>\n");
    }
    ts_buf_printf(&b,
                  "<form method=\"post\" action=\"%s/mod/signin\"><input type=\"hidden\" "
                  "name=\"nonce\" value=\"%s\"><input type=\"hidden\" name=\"csrf\" "
                  "value=\"%s\"><label>Moderator token <input type=\"password\" name=\"token\" "
                  "autocomplete=\"off\" required></label> <button type=\"submit\">Sign "
                  "in</button></form>\n<p>The token is checked with the cluster and kept by "
                  "this server for the session (12 hours at most); the browser gets a session "
                  "cookie only.</p>\n",
                  m->base, nonce, csrf);
    page_tail(&b);
    send_buf(req, status, "text/html; charset=utf-8", &b);
}

static void signin_answer(struct sess *s, int ok, int status, const char *error)
{
    h2o_req_t *req = s->signin ? s->signin->req : NULL;
    /* The attempt was counted when it began: only a refusal keeps it. */
    struct signin_count *c = signin_slot(s->m, s->addr);
    if ((ok || status != 403) && c->n)
        c->n--;
    if (ok && req) {
        set_cookie(s->m, req, s->id, TS_WEB_MOD_SESSION_S, s->signin_secure);
        char loc[512];
        snprintf(loc, sizeof(loc), "%s/mod/", s->m->base);
        redirect(req, loc);
    } else if (!ok && req) {
        signin_page(s->m, req, status, error);
    }
    ts_web_http_release(s->signin);
    s->signin = NULL;
}

static void on_state(void *arg, const struct ts_client_state_info *info)
{
    struct sess *s = arg;
    if (s->state == S_DEAD)
        return;
    if (info->state == TS_CLIENT_READY && s->state == S_VERIFYING) {
        s->role = info->welcome ? (int)info->welcome->role : 0;
        if (s->role != THREADSYNC__ROLE__MODERATOR && s->role != THREADSYNC__ROLE__ADMIN) {
            signin_answer(s, 0, 403, "This token is not a moderator's.");
            sess_kill(s);
            return;
        }
        s->state = S_ACTIVE;
        s->expires = time(NULL) + (time_t)TS_WEB_MOD_SESSION_S;
        struct ts_client_sub_cbs cbs = {
            .on_events = sub_events, .on_snapshot_chunk = sub_chunk, .on_error = sub_error};
        /* The last RECENT_EVENTS events fill "recent" (the server replays
         * them, or sends a snapshot when its log is shorter). */
        s->live_from = info->welcome->last_seq;
        uint64_t since = s->live_from > RECENT_EVENTS ? s->live_from - RECENT_EVENTS : 0;
        ts_client_subscribe(s->client, 1, NULL, 0, since, &cbs, s);
        signin_answer(s, 1, 303, NULL);
        return;
    }
    if (info->state != TS_CLIENT_DISCONNECTED && info->state != TS_CLIENT_FAILED)
        return;
    int refused = info->err == TS_E_UNAUTHENTICATED || info->err == TS_E_FORBIDDEN;
    if (s->state == S_VERIFYING &&
        (refused || info->failures >= 3 || info->state == TS_CLIENT_FAILED)) {
        signin_answer(s, 0, refused ? 403 : 503,
                      refused ? "The cluster refused this token."
                              : "Cannot reach the cluster; try again.");
        sess_kill(s);
    } else if (s->state == S_ACTIVE && (refused || info->state == TS_CLIENT_FAILED)) {
        /* Revoked (or gone for good): the session ends with its token. */
        fprintf(stderr, "threadsync web: moderator session ended: %s\n", ts_err_name(info->err));
        sess_kill(s);
    }
}

static void post_signin(struct ts_web_mod *m, h2o_req_t *req)
{
    char addr[INET6_ADDRSTRLEN];
    peer_addr(req, addr);
    /* Counted now, not when the cluster answers, so that attempts sent at
     * once cannot all pass before the first refusal. */
    struct signin_count *count = signin_slot(m, addr);
    if (count->n >= TS_WEB_MOD_SIGNIN_PER_MIN) {
        ts_web_http_header(req, "retry-after", "60");
        signin_page(m, req, 429, "Too many sign-in attempts; wait a minute.");
        return;
    }
    count->n++;
    struct ts_web_kv *kv = NULL;
    size_t n = 0;
    if (ts_web_form_parse(req->entity.base, req->entity.len, 8, &kv, &n) != TS_OK) {
        send_text(req, 400, "malformed form\n");
        return;
    }
    const char *token = ts_web_kv_get(kv, n, "token");
    const char *nonce = ts_web_kv_get(kv, n, "nonce"), *csrf = ts_web_kv_get(kv, n, "csrf");
    if (!nonce || !csrf ||
        ts_web_csrf_check(m->secret, SIGNIN_KEY, nonce, csrf, (uint64_t)time(NULL)) != TS_OK) {
        ts_web_kv_free(kv, n);
        signin_page(m, req, 403, "This form has expired or is not valid. Please sign in again.");
        return;
    }
    if (!token || !token[0] || strlen(token) > TOKEN_MAX || m->n_sessions >= SESSIONS_MAX) {
        ts_web_kv_free(kv, n);
        signin_page(m, req, !token || !token[0] || strlen(token) > TOKEN_MAX ? 422 : 503,
                    "Paste a moderator token.");
        return;
    }
    struct sess *s = calloc(1, sizeof(*s));
    if (s) {
        s->m = m;
        s->token = strdup(token);
        s->signin = ts_web_http_hold(req);
        s->signin_secure = req->scheme == &H2O_URL_SCHEME_HTTPS;
        memcpy(s->addr, addr, sizeof(addr));
    }
    OPENSSL_cleanse((char *)token, strlen(token)); /* the form's copy */
    ts_web_kv_free(kv, n);
    if (!s || !s->token || !s->signin || ts_hex_random(16, s->id) != TS_OK ||
        ts_hex_random(16, s->csrf) != TS_OK) {
        if (s)
            sess_free(s);
        send_text(req, 503, "out of memory\n");
        return;
    }
    struct ts_client_config cc = m->cluster;
    cc.token = s->token;
    cc.client_name = "threadsync-web-mod";
    cc.reconnect = 1;
    cc.on_state = on_state;
    cc.state_arg = s;
    if (ts_client_new(m->loop, &cc, &s->client) != TS_OK) {
        sess_free(s);
        send_text(req, 503, "cannot connect to the cluster\n");
        return;
    }
    s->next = m->sessions;
    m->sessions = s;
    m->n_sessions++;
}

static int form_csrf_ok(const struct sess *s, const struct ts_web_kv *kv, size_t n)
{
    const char *c = ts_web_kv_get(kv, n, "csrf");
    return c && strlen(c) == CSRF_HEX - 1 && CRYPTO_memcmp(c, s->csrf, CSRF_HEX - 1) == 0;
}

static void post_signout(struct ts_web_mod *m, struct sess *s, h2o_req_t *req)
{
    struct ts_web_kv *kv = NULL;
    size_t n = 0;
    if (ts_web_form_parse(req->entity.base, req->entity.len, 8, &kv, &n) != TS_OK ||
        !form_csrf_ok(s, kv, n)) {
        ts_web_kv_free(kv, n);
        send_text(req, 403, "bad form token\n");
        return;
    }
    ts_web_kv_free(kv, n);
    sess_kill(s);
    set_cookie(m, req, "", 0, req->scheme == &H2O_URL_SCHEME_HTTPS);
    char loc[512];
    snprintf(loc, sizeof(loc), "%s/mod/signin", m->base);
    redirect(req, loc);
}

/* ---- views ----------------------------------------------------------------- */

struct view {
    struct sess *s;
    struct ts_web_http_hold *hold;
    char *back;
    char *flash; /* taken from the session when the view began */
};

static struct view *view_new(struct sess *s, h2o_req_t *req)
{
    struct view *v = calloc(1, sizeof(*v));
    struct ts_buf b = TS_BUF_INIT;
    self_url(&b, req);
    if (!v || b.failed || !(v->hold = ts_web_http_hold(req))) {
        free(v);
        ts_buf_free(&b);
        return NULL;
    }
    v->s = s;
    v->back = b.p;
    return v;
}

static void view_free(struct view *v)
{
    ts_web_http_release(v->hold);
    free(v->back);
    free(v);
}

/* The request to answer a view on, or NULL (then v is freed, and an error
 * answered when the browser is still there). */
static h2o_req_t *view_begin(struct view *v, int err, const Threadsync__Error *detail)
{
    h2o_req_t *req = v->hold->req;
    if (req && err != TS_OK) {
        char msg[512];
        snprintf(msg, sizeof(msg), "the cluster answered: %s\n",
                 detail && detail->message && detail->message[0] ? detail->message
                                                                 : ts_err_message(err));
        send_text(req, err == TS_E_NOT_FOUND ? 404 : err == TS_E_FORBIDDEN ? 403 : 503, msg);
    }
    if (!req || err != TS_OK) {
        view_free(v);
        return NULL;
    }
    return req;
}

static void flash_clear(struct sess *s)
{
    free(s->flash);
    s->flash = NULL;
}

static const Threadsync__Comment *parent_of(struct ts_web_mod *m, const Threadsync__Comment *c,
                                            struct ts_mirror_thread **hold)
{
    if (!c->parent_id)
        return NULL;
    const struct seen *p = store_get(m, c->parent_id);
    if (p)
        return p->c;
    if (!*hold || (*hold)->thread.id != c->thread_id) {
        ts_mirror_thread_free(*hold);
        *hold = NULL;
        if (!m->db || ts_mirror_db_thread_by_id(m->db, c->thread_id, hold) != TS_OK)
            return NULL;
    }
    for (size_t i = 0; i < (*hold)->n_comments; i++)
        if ((*hold)->comments[i]->id == c->parent_id)
            return (*hold)->comments[i];
    return NULL;
}

/* view_begin, then the page's head into b (the flash shown, then cleared). */
static h2o_req_t *view_page(struct view *v, int err, const Threadsync__Error *detail,
                            struct ts_buf *b, const char *title, const char *name)
{
    h2o_req_t *req = view_begin(v, err, detail);
    if (req) {
        page_head(b, v->s->m, v->s, title, name, NULL);
        flash_clear(v->s);
    }
    return req;
}

static void on_queue(void *arg, int err, const Threadsync__Error *detail,
                     const Threadsync__PendingQueueResult *r)
{
    struct view *v = arg;
    struct ts_buf b = TS_BUF_INIT;
    h2o_req_t *req = view_page(v, err, detail, &b, "Pending queue", "queue");
    if (!req)
        return;
    struct ts_web_mod *m = v->s->m;
    ts_buf_printf(&b, "<h1>Pending queue <span class=\"mod-n\">%zu</span>%s</h1>\n", r->n_comments,
                  r->more ? "+" : "");
    bulk_form(&b, m, v->s, v->back);
    ts_buf_puts(&b, "<div class=\"mod-list\" id=\"mod-list\">\n");
    if (!r->n_comments)
        ts_buf_puts(&b, "<p class=\"mod-empty\">Nothing awaits moderation.</p>\n");
    struct ts_mirror_thread *t = NULL;
    for (size_t i = 0; i < r->n_comments; i++) {
        const Threadsync__Comment *c = r->comments[i];
        const char *key = NULL;
        for (size_t k = 0; k < r->n_threads; k++)
            if (r->threads[k]->id == c->thread_id)
                key = r->threads[k]->key;
        store_put(m, c, key);
        row(&b, m, v->s, c, key, v->back, parent_of(m, c, &t), 0);
    }
    ts_mirror_thread_free(t);
    ts_buf_puts(&b, "</div>\n");
    row_template(&b, m, v->s, v->back, 0);
    page_tail(&b);
    send_buf(req, 200, "text/html; charset=utf-8", &b);
    view_free(v);
}

static void on_thread(void *arg, int err, const Threadsync__Error *detail,
                      const Threadsync__GetResult *r)
{
    struct view *v = arg;
    h2o_req_t *req = view_begin(v, err, detail);
    if (!req)
        return;
    struct ts_web_mod *m = v->s->m;
    const Threadsync__Thread *t = r->thread;
    struct ts_buf b = TS_BUF_INIT;
    page_head(&b, m, v->s, t->key, "thread", t->key);
    flash_clear(v->s);
    ts_buf_printf(&b, "<section class=\"mod-threadinfo\" data-locked=\"%d\" data-premod=\"%d\">",
                  t->locked ? 1 : 0, t->premoderated ? 1 : 0);
    ts_buf_puts(&b, "<h1>");
    ts_web_page_text(&b, t->title && t->title[0] ? t->title : t->key);
    ts_buf_printf(&b, "</h1>\n<p><code>");
    ts_web_page_text(&b, t->key);
    ts_buf_printf(&b, "</code> · %" PRIu32 " visible · <span class=\"mod-flags\">%s%s</span> ",
                  t->comment_count, t->locked ? "locked " : "",
                  t->premoderated ? "pre-moderated" : "");
    if (t->moderated_by && t->moderated_by[0]) {
        ts_buf_puts(&b, "<span class=\"mod-by\">by ");
        ts_web_page_text(&b, t->moderated_by);
        ts_buf_puts(&b, "</span>");
    }
    ts_buf_printf(&b, "</p>\n<form method=\"post\" action=\"%s/mod/act\" class=\"mod-act\">",
                  m->base);
    form_hidden(&b, v->s, v->back);
    ts_buf_puts(&b, "<input type=\"hidden\" name=\"t\" value=\"");
    ts_web_page_text(&b, t->key);
    ts_buf_puts(&b, "\"><button name=\"op\" value=\"lock\" class=\"act-lock\">Lock</button> "
                    "<button name=\"op\" value=\"unlock\" class=\"act-unlock\">Unlock</button> "
                    "<button name=\"op\" value=\"premod\" class=\"act-premod\">Pre-moderate"
                    "</button> <button name=\"op\" value=\"postmod\" class=\"act-postmod\">"
                    "Post-moderate</button></form></section>\n");
    bulk_form(&b, m, v->s, v->back);
    ts_buf_puts(&b, "<div class=\"mod-list\" id=\"mod-list\">\n");
    for (size_t i = 0; i < r->n_comments; i++) {
        store_put(m, r->comments[i], t->key);
        row(&b, m, v->s, r->comments[i], t->key, v->back, NULL, 1);
    }
    ts_buf_puts(&b, "</div>\n");
    row_template(&b, m, v->s, v->back, 1);
    page_tail(&b);
    send_buf(req, 200, "text/html; charset=utf-8", &b);
    view_free(v);
}

static int matches(const struct seen *e, const char *thread, const char *author, const char *status)
{
    const Threadsync__Comment *c = e->c;
    if (thread && thread[0] && strcmp(e->key, thread) != 0)
        return 0;
    if (author && author[0] && strcasecmp(c->author_name ? c->author_name : "", author) != 0 &&
        strcasecmp(c->author_email ? c->author_email : "", author) != 0)
        return 0;
    return !status || !status[0] || strcasecmp(status, status_name(c->status)) == 0;
}

static void filter_input(struct ts_buf *b, const char *label, const char *name, const char *v)
{
    ts_buf_printf(b, "<label>%s <input name=\"%s\" value=\"", label, name);
    ts_web_page_text(b, v);
    ts_buf_puts(b, "\"></label> ");
}

/* The request's query string into *kv (at most max pairs); 0 after
 * answering 400 when it does not parse. */
static int query_of(h2o_req_t *req, size_t max, struct ts_web_kv **kv, size_t *n)
{
    *kv = NULL;
    *n = 0;
    if (req->query_at != SIZE_MAX &&
        ts_web_form_parse(req->path.base + req->query_at + 1, req->path.len - req->query_at - 1,
                          max, kv, n) != TS_OK) {
        send_text(req, 400, "bad query\n");
        return 0;
    }
    return 1;
}

static int get_recent(struct ts_web_mod *m, struct sess *s, h2o_req_t *req)
{
    struct ts_web_kv *kv;
    size_t n;
    if (!query_of(req, 8, &kv, &n))
        return 0;
    const char *thread = ts_web_kv_get(kv, n, "thread");
    const char *author = ts_web_kv_get(kv, n, "author");
    const char *status = ts_web_kv_get(kv, n, "status");
    struct ts_buf back = TS_BUF_INIT;
    self_url(&back, req);
    struct ts_buf b = TS_BUF_INIT;
    page_head(&b, m, s, author && author[0] ? author : "Recent comments", "recent", NULL);
    flash_clear(s);
    ts_buf_puts(&b, author && author[0] ? "<h1>Author: " : "<h1>Newest comments");
    if (author && author[0])
        ts_web_page_text(&b, author);
    ts_buf_printf(&b, "</h1>\n<form method=\"get\" action=\"%s/mod/recent\" class=\"mod-filter\">",
                  m->base);
    filter_input(&b, "Thread", "thread", thread);
    filter_input(&b, "Author", "author", author);
    filter_input(&b, "Status", "status", status);
    ts_buf_puts(&b, "<button type=\"submit\">Filter</button></form>\n");
    if (author && author[0]) {
        ts_buf_printf(&b, "<form method=\"post\" action=\"%s/mod/act\" class=\"mod-act mod-ban\">",
                      m->base);
        form_hidden(&b, s, back.p);
        ts_buf_puts(&b, "<input type=\"hidden\" name=\"author\" value=\"");
        ts_web_page_text(&b, author);
        ts_buf_puts(&b, "\"><label>Ban for <select name=\"hours\"><option value=\"24\">a day"
                        "</option><option value=\"168\">a week</option><option value=\"720\">"
                        "30 days</option><option value=\"87600\">10 years</option></select>"
                        "</label> <button name=\"op\" value=\"ban\" class=\"act-ban\">Ban</button> "
                        "<button name=\"op\" value=\"unban\" class=\"act-unban\">Lift ban</button>"
                        "</form>\n");
    }
    bulk_form(&b, m, s, back.p);
    ts_buf_puts(&b, "<div class=\"mod-list\" id=\"mod-list\">\n");
    size_t shown = 0;
    for (size_t i = m->n_store; i-- > 0 && shown < RECENT_SHOWN;)
        if (matches(&m->store[i], thread, author, status)) {
            row(&b, m, s, m->store[i].c, m->store[i].key, back.p, NULL, 0);
            shown++;
        }
    if (!shown)
        ts_buf_puts(&b, "<p class=\"mod-empty\">No comment seen by this console matches.</p>\n");
    ts_buf_puts(&b, "</div>\n");
    row_template(&b, m, s, back.p, 0);
    page_tail(&b);
    ts_web_kv_free(kv, n);
    ts_buf_free(&back);
    send_buf(req, 200, "text/html; charset=utf-8", &b);
    return 0;
}

/* ---- the audit trail ------------------------------------------------------- */

static const char *audit_action(int a)
{
    switch (a) {
    case THREADSYNC__AUDIT_ACTION__AUDIT_APPROVE:
        return "approved";
    case THREADSYNC__AUDIT_ACTION__AUDIT_HIDE:
        return "hid";
    case THREADSYNC__AUDIT_ACTION__AUDIT_UNHIDE:
        return "unhid";
    case THREADSYNC__AUDIT_ACTION__AUDIT_DELETE:
        return "deleted";
    case THREADSYNC__AUDIT_ACTION__AUDIT_EDIT:
        return "edited";
    case THREADSYNC__AUDIT_ACTION__AUDIT_LOCK:
        return "locked";
    case THREADSYNC__AUDIT_ACTION__AUDIT_UNLOCK:
        return "unlocked";
    case THREADSYNC__AUDIT_ACTION__AUDIT_PREMODERATE:
        return "pre-moderated";
    case THREADSYNC__AUDIT_ACTION__AUDIT_POSTMODERATE:
        return "post-moderated";
    case THREADSYNC__AUDIT_ACTION__AUDIT_BAN:
        return "banned";
    case THREADSYNC__AUDIT_ACTION__AUDIT_UNBAN:
        return "lifted the ban on";
    case THREADSYNC__AUDIT_ACTION__AUDIT_TOKEN_ADD:
        return "added the token";
    case THREADSYNC__AUDIT_ACTION__AUDIT_TOKEN_REVOKE:
        return "revoked the token";
    default:
        return "did something to";
    }
}

/* One entry: when, who, what, on what; an edit's reason and old text. */
static void audit_row(struct ts_buf *b, const struct ts_web_mod *m, const Threadsync__AuditEntry *e)
{
    char when[32];
    ts_buf_printf(b, "<li class=\"mod-audit\" data-seq=\"%" PRIu64 "\" data-action=\"%d\">", e->seq,
                  (int)e->action);
    ts_buf_printf(b, "<span class=\"mod-meta\">%s</span> <strong class=\"audit-actor\">",
                  utc(e->time_ms, when));
    ts_web_page_text(b, e->actor && e->actor[0] ? e->actor : "(unknown)");
    ts_buf_printf(b, "</strong> <span class=\"audit-what\">%s</span> ", audit_action(e->action));
    if (e->comment_id)
        ts_buf_printf(b, "comment #%" PRIu64 " ", e->comment_id);
    if (e->thread_key && e->thread_key[0]) {
        ts_buf_puts(b, e->comment_id ? "in <a href=\"" : "thread <a href=\"");
        thread_url(b, m, e->thread_key);
        ts_buf_puts(b, "\">");
        ts_web_page_text(b, e->thread_key);
        ts_buf_puts(b, "</a> ");
    }
    if (e->target && e->target[0]) {
        ts_buf_puts(b, "<span class=\"audit-target\">");
        ts_web_page_text(b, e->target);
        ts_buf_puts(b, "</span> ");
    }
    if (e->until_ms)
        ts_buf_printf(b, "until %s ", utc(e->until_ms, when));
    if (e->reason && e->reason[0]) {
        ts_buf_puts(b, "<span class=\"audit-reason\">(");
        ts_web_page_text(b, e->reason);
        ts_buf_puts(b, ")</span>");
    }
    if (e->text_before && e->text_before[0]) {
        ts_buf_puts(b, "<details><summary>Text before</summary><div class=\"mod-body\">");
        ts_web_page_text(b, e->text_before);
        ts_buf_puts(b, "</div></details>");
    }
    ts_buf_puts(b, "</li>\n");
}

static void on_audit(void *arg, int err, const Threadsync__Error *detail,
                     const Threadsync__AuditListResult *r)
{
    struct view *v = arg;
    struct ts_buf b = TS_BUF_INIT;
    h2o_req_t *req = view_page(v, err, detail, &b, "Audit trail", "audit");
    if (!req)
        return;
    struct ts_web_mod *m = v->s->m;
    ts_buf_puts(&b, "<h1>Audit trail</h1>\n<ol class=\"mod-list mod-audits\" id=\"mod-list\">\n");
    if (!r->n_entries)
        ts_buf_puts(&b, "<li class=\"mod-empty\">No moderation action yet.</li>\n");
    for (size_t i = 0; i < r->n_entries; i++)
        audit_row(&b, m, r->entries[i]);
    ts_buf_puts(&b, "</ol>\n");
    if (r->more && r->n_entries)
        ts_buf_printf(&b,
                      "<p><a href=\"%s/mod/audit?before=%" PRIu64 "\" id=\"mod-older\">Older"
                      "</a></p>\n",
                      m->base, r->entries[r->n_entries - 1]->seq);
    page_tail(&b);
    send_buf(req, 200, "text/html; charset=utf-8", &b);
    view_free(v);
}

/* The trail, newest first, RECENT_SHOWN a page (?before=SEQ for older). */
static int get_audit(struct sess *s, h2o_req_t *req)
{
    struct ts_web_kv *kv;
    size_t n;
    if (!query_of(req, 4, &kv, &n))
        return 0;
    Threadsync__AuditList q;
    threadsync__audit_list__init(&q);
    q.newest_first = 1;
    q.limit = RECENT_SHOWN;
    const char *before = ts_web_kv_get(kv, n, "before");
    q.before_seq = before ? strtoull(before, NULL, 10) : 0;
    ts_web_kv_free(kv, n);
    struct view *v = view_new(s, req);
    if (!v || ts_client_audit_list(s->client, &q, on_audit, v) != TS_OK) {
        if (v)
            view_free(v);
        send_text(req, 503, "cannot ask the cluster\n");
    }
    return 0;
}

/* ---- actions --------------------------------------------------------------- */

struct act {
    struct sess *s;
    struct ts_web_http_hold *hold;
    int json;
    unsigned outstanding, failed;
    char *back;
    struct ts_buf results; /* JSON objects, comma-separated */
    struct ts_buf msg;     /* for humans */
};

struct act_one {
    struct act *a;
    uint64_t id;
};

static void act_finish(struct act *a)
{
    h2o_req_t *req = a->hold->req;
    if (req && a->json) {
        struct ts_buf b = TS_BUF_INIT;
        ts_buf_printf(&b, "{\"ok\":%s,\"results\":[", a->failed ? "false" : "true");
        ts_buf_add(&b, a->results.p, a->results.len);
        ts_buf_puts(&b, "],\"message\":");
        ts_buf_add(&a->msg, "", 1);
        ts_web_page_jstr(&b, a->msg.p);
        ts_buf_puts(&b, "}\n");
        send_buf(req, a->failed ? 409 : 200, "application/json; charset=utf-8", &b);
    } else if (req) {
        ts_buf_add(&a->msg, "", 1);
        if (a->s->state == S_ACTIVE && !a->msg.failed) {
            free(a->s->flash);
            a->s->flash = strdup(a->msg.p);
        }
        redirect(req, a->back);
    }
    ts_web_http_release(a->hold);
    ts_buf_free(&a->results);
    ts_buf_free(&a->msg);
    free(a->back);
    free(a);
}

static void act_note(struct act *a, const char *fmt, const char *s1, const char *s2)
{
    if (a->msg.len)
        ts_buf_puts(&a->msg, " ");
    ts_buf_printf(&a->msg, fmt, s1 ? s1 : "", s2 ? s2 : "");
}

static void act_result(struct act *a, uint64_t id, const Threadsync__Comment *c, const char *key,
                       const char *error)
{
    if (a->results.len)
        ts_buf_puts(&a->results, ",");
    ts_buf_printf(&a->results, "{\"id\":%" PRIu64 ",\"ok\":%s", id, error ? "false" : "true");
    if (c) {
        ts_buf_puts(&a->results, ",\"comment\":");
        comment_json(&a->results, c, key);
    }
    if (error) {
        ts_buf_puts(&a->results, ",\"error\":");
        ts_web_page_jstr(&a->results, error);
        a->failed++;
    }
    ts_buf_puts(&a->results, "}");
}

static const char *err_text(int err, const Threadsync__Error *detail)
{
    return detail && detail->message && detail->message[0] ? detail->message : ts_err_message(err);
}

static void on_change(void *arg, int err, const Threadsync__Error *detail,
                      const Threadsync__ChangeResult *r)
{
    struct act_one *o = arg;
    struct act *a = o->a;
    char idtxt[32];
    snprintf(idtxt, sizeof(idtxt), "#%" PRIu64, o->id);
    if (err != TS_OK) {
        act_result(a, o->id, NULL, NULL, err_text(err, detail));
        act_note(a, "%s: %s.", o->id ? idtxt : "thread", err_text(err, detail));
    } else if (r->comment) {
        store_put(a->s->m, r->comment, r->thread ? r->thread->key : NULL);
        act_result(a, o->id, r->comment, r->thread ? r->thread->key : "", NULL);
        act_note(a, "%s now %s.", idtxt, status_name(r->comment->status));
    } else {
        act_result(a, o->id, NULL, NULL, NULL);
        act_note(a, "Thread %s%s.", r->thread && r->thread->locked ? "locked" : "open",
                 r->thread && r->thread->premoderated ? ", pre-moderated" : "");
    }
    free(o);
    if (--a->outstanding == 0)
        act_finish(a);
}

static void on_ban(void *arg, int err, const Threadsync__Error *detail,
                   const Threadsync__BanResult *r)
{
    struct act_one *o = arg;
    struct act *a = o->a;
    if (err != TS_OK) {
        act_result(a, 0, NULL, NULL, err_text(err, detail));
        act_note(a, "Ban: %s.%s", err_text(err, detail), NULL);
    } else {
        act_result(a, 0, NULL, NULL, NULL);
        char t[32];
        if (r->until_ms)
            act_note(a, "%s banned until %s.", r->author, utc(r->until_ms, t));
        else
            act_note(a, "%s may post again.%s", r->author, NULL);
    }
    free(o);
    if (--a->outstanding == 0)
        act_finish(a);
}

/* A request of action a about comment id (0: none), or NULL (recorded as
 * failed). Its callback frees it. */
static struct act_one *act_one_new(struct act *a, uint64_t id)
{
    struct act_one *o = calloc(1, sizeof(*o));
    if (!o) {
        act_result(a, id, NULL, NULL, ts_err_message(TS_E_NOMEM));
        return NULL;
    }
    o->a = a;
    o->id = id;
    return o;
}

/* Counts o's request as sent, or (rc not TS_OK: no callback will run)
 * records its failure and frees it. */
static void act_sent(struct act *a, struct act_one *o, int rc)
{
    if (rc == TS_OK) {
        a->outstanding++;
        return;
    }
    char idtxt[32];
    snprintf(idtxt, sizeof(idtxt), "#%" PRIu64, o->id);
    act_result(a, o->id, NULL, NULL, ts_err_message(rc));
    act_note(a, "%s: %s.", o->id ? idtxt : "action", ts_err_message(rc));
    free(o);
}

/* Sends one comment action; an immediate failure is recorded as a result. */
static void act_comment(struct act *a, const char *op, uint64_t id, uint64_t seen_version,
                        const char *body, const char *reason)
{
    const struct seen *e = store_get(a->s->m, id);
    char idtxt[32];
    snprintf(idtxt, sizeof(idtxt), "#%" PRIu64, id);
    if (e && seen_version && e->c->version != seen_version) {
        char msg[256];
        snprintf(msg, sizeof(msg), "already moderated by %s: now %s",
                 e->c->moderated_by && e->c->moderated_by[0] ? e->c->moderated_by
                                                             : "its author or a moderator",
                 status_name(e->c->status));
        act_result(a, id, e->c, e->key, msg);
        act_note(a, "%s %s.", idtxt, msg);
        return;
    }
    struct act_one *o = act_one_new(a, id);
    if (!o)
        return;
    int rc;
    if (strcmp(op, "edit") == 0) {
        Threadsync__Edit q;
        threadsync__edit__init(&q);
        q.comment_id = id;
        q.body = (char *)body;
        q.reason = reason && reason[0] ? (char *)reason : NULL; /* kept in the audit trail */
        rc = ts_client_edit(a->s->client, &q, on_change, o);
    } else {
        Threadsync__Moderate q;
        threadsync__moderate__init(&q);
        q.comment_id = id;
        q.action = strcmp(op, "approve") == 0  ? THREADSYNC__MODERATION_ACTION__APPROVE
                   : strcmp(op, "hide") == 0   ? THREADSYNC__MODERATION_ACTION__HIDE
                   : strcmp(op, "unhide") == 0 ? THREADSYNC__MODERATION_ACTION__UNHIDE
                                               : THREADSYNC__MODERATION_ACTION__DELETE;
        rc = ts_client_moderate(a->s->client, &q, on_change, o);
    }
    act_sent(a, o, rc);
}

static int back_ok(const struct ts_web_mod *m, const char *back)
{
    size_t bl = strlen(m->base);
    return back && strncmp(back, m->base, bl) == 0 && strncmp(back + bl, "/mod/", 5) == 0 &&
           !strpbrk(back, "\r\n\\");
}

static void post_act(struct ts_web_mod *m, struct sess *s, h2o_req_t *req)
{
    struct ts_web_kv *kv = NULL;
    size_t n = 0;
    int rc = ts_web_form_parse(req->entity.base, req->entity.len, FORM_PAIRS_MAX, &kv, &n);
    if (rc != TS_OK) {
        send_text(req, rc == TS_E_TOO_LARGE ? 413 : 400, "malformed form\n");
        return;
    }
    if (!form_csrf_ok(s, kv, n)) {
        ts_web_kv_free(kv, n);
        send_text(req, 403, "bad form token\n");
        return;
    }
    const char *op = ts_web_kv_get(kv, n, "op");
    const char *back = ts_web_kv_get(kv, n, "back");
    char dflt[512];
    snprintf(dflt, sizeof(dflt), "%s/mod/", m->base);
    struct act *a = calloc(1, sizeof(*a));
    if (a) {
        a->s = s;
        a->json = ts_web_resp_wants_json(req);
        a->back = strdup(back_ok(m, back) ? back : dflt);
        a->hold = ts_web_http_hold(req);
    }
    if (!a || !a->back || !a->hold || !op) {
        if (a) {
            ts_web_http_release(a->hold);
            free(a->back);
            free(a);
        }
        ts_web_kv_free(kv, n);
        send_text(req, a ? 422 : 503, a ? "no action\n" : "out of memory\n");
        return;
    }
    a->outstanding = 1; /* this function's own, released at the end */
    int comment_op = strcmp(op, "approve") == 0 || strcmp(op, "hide") == 0 ||
                     strcmp(op, "unhide") == 0 || strcmp(op, "delete") == 0 ||
                     strcmp(op, "edit") == 0;
    if (comment_op) {
        const char *body = ts_web_kv_get(kv, n, "body");
        size_t count = 0;
        for (size_t i = 0; i < n && count < BULK_MAX; i++) {
            if (strcmp(kv[i].name, "c") != 0)
                continue;
            char *dot = NULL;
            uint64_t id = strtoull(kv[i].value, &dot, 10);
            uint64_t ver = dot && *dot == '.' ? strtoull(dot + 1, NULL, 10) : 0;
            if (!id)
                continue;
            if (strcmp(op, "edit") == 0 && (!body || !body[0])) {
                act_result(a, id, NULL, NULL, "an edit needs a text");
                act_note(a, "%s%s", "An edit needs a text.", NULL);
                continue;
            }
            act_comment(a, op, id, ver, body, ts_web_kv_get(kv, n, "reason"));
            count++;
        }
        if (!count && !a->failed)
            act_note(a, "%s%s", "Nothing selected.", NULL);
    } else if (strcmp(op, "ban") == 0 || strcmp(op, "unban") == 0) {
        const char *author = ts_web_kv_get(kv, n, "author");
        const char *hours = ts_web_kv_get(kv, n, "hours");
        struct act_one *o = act_one_new(a, 0);
        Threadsync__BanAuthor q;
        threadsync__ban_author__init(&q);
        q.author = (char *)(author ? author : "");
        q.duration_ms =
            strcmp(op, "ban") == 0 && hours ? strtoull(hours, NULL, 10) * 3600000ull : 0;
        if (o)
            act_sent(a, o, ts_client_ban(s->client, &q, on_ban, o));
    } else {
        const char *key = ts_web_kv_get(kv, n, "t");
        Threadsync__ModerateThread q;
        threadsync__moderate_thread__init(&q);
        q.thread_key = (char *)(key ? key : "");
        q.action = strcmp(op, "lock") == 0     ? THREADSYNC__THREAD_ACTION__THREAD_LOCK
                   : strcmp(op, "unlock") == 0 ? THREADSYNC__THREAD_ACTION__THREAD_UNLOCK
                   : strcmp(op, "premod") == 0 ? THREADSYNC__THREAD_ACTION__THREAD_PREMODERATE
                   : strcmp(op, "postmod") == 0
                       ? THREADSYNC__THREAD_ACTION__THREAD_POSTMODERATE
                       : THREADSYNC__THREAD_ACTION__THREAD_ACTION_UNSPECIFIED;
        struct act_one *o = NULL;
        if (!q.action) {
            act_result(a, 0, NULL, NULL, "unknown action");
            act_note(a, "%s%s", "Unknown action.", NULL);
        } else if ((o = act_one_new(a, 0))) {
            act_sent(a, o, ts_client_moderate_thread(s->client, &q, on_change, o));
        }
    }
    ts_web_kv_free(kv, n);
    if (--a->outstanding == 0)
        act_finish(a);
}

/* ---- routing --------------------------------------------------------------- */

static int forbidden(struct ts_web_mod *m, h2o_req_t *req)
{
    struct ts_buf b = TS_BUF_INIT;
    page_head(&b, m, NULL, "Forbidden", "forbidden", NULL);
    ts_buf_printf(&b,
                  "<main><h1>Moderators only</h1><p><a href=\"%s/mod/signin\">Sign in</a> "
                  "with a moderator token.</p></main></body></html>\n",
                  m->base);
    send_buf(req, 403, "text/html; charset=utf-8", &b);
    return 0;
}

static int is(const char *path, size_t plen, const char *s)
{
    return plen == strlen(s) && memcmp(path, s, plen) == 0;
}

int ts_web_mod_handle(struct ts_web_mod *m, h2o_req_t *req, const char *path, size_t plen)
{
    int get = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) ||
              h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
    int post = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"));
    if (m->closing) {
        send_text(req, 503, "shutting down\n");
        return 0;
    }
    if (is(path, plen, "/mod/signin")) {
        if (post)
            post_signin(m, req);
        else
            signin_page(m, req, 200, NULL);
        return 0;
    }
    struct sess *s = sess_of(m, req);
    if (!s)
        return forbidden(m, req);
    if (post && is(path, plen, "/mod/signout")) {
        post_signout(m, s, req);
        return 0;
    }
    if (post && is(path, plen, "/mod/act")) {
        post_act(m, s, req);
        return 0;
    }
    if (!get) {
        ts_web_http_header(req, "allow", "GET, HEAD");
        send_text(req, 405, "method not allowed\n");
        return 0;
    }
    if (is(path, plen, "/mod/events"))
        return get_events(s, req);
    if (is(path, plen, "/mod/recent"))
        return get_recent(m, s, req);
    if (is(path, plen, "/mod/audit"))
        return get_audit(s, req);
    if (is(path, plen, "/mod") || is(path, plen, "/mod/")) {
        struct view *v = view_new(s, req);
        Threadsync__PendingQueue q;
        threadsync__pending_queue__init(&q);
        q.limit = 1000;
        if (!v || ts_client_pending(s->client, &q, on_queue, v) != TS_OK) {
            if (v)
                view_free(v);
            send_text(req, 503, "cannot ask the cluster\n");
        }
        return 0;
    }
    if (plen > 7 && memcmp(path, "/mod/t/", 7) == 0) {
        struct ts_web_kv *kv = NULL;
        size_t n = 0;
        int ok = ts_web_resp_key(path + 7, plen - 7, &kv, &n) == TS_OK;
        struct view *v = ok ? view_new(s, req) : NULL;
        if (!ok)
            send_text(req, 400, "bad thread key\n");
        else if (!v || ts_client_get(s->client, kv[0].value, on_thread, v) != TS_OK) {
            if (v)
                view_free(v);
            send_text(req, 503, "cannot ask the cluster\n");
        }
        ts_web_kv_free(kv, n);
        return 0;
    }
    send_text(req, 404, "not found\n");
    return 0;
}

/* ---- life cycle ------------------------------------------------------------ */

int ts_web_mod_new(uv_loop_t *loop, const struct ts_web_mod_config *cfg, struct ts_web_mod **out)
{
    *out = NULL;
    struct ts_web_mod *m = calloc(1, sizeof(*m));
    if (!m)
        return TS_E_NOMEM;
    m->loop = loop;
    m->secret = cfg->secret;
    m->db = cfg->db;
    m->cluster = *cfg->cluster;
    m->base = strdup(cfg->base ? cfg->base : "");
    m->servers = calloc(m->cluster.n_servers ? m->cluster.n_servers : 1, sizeof(char *));
    m->ca = cfg->cluster->ca_file ? strdup(cfg->cluster->ca_file) : NULL;
    int ok = m->base && m->servers && (m->ca || !cfg->cluster->ca_file);
    for (size_t i = 0; ok && i < m->cluster.n_servers; i++)
        ok = (m->servers[i] = strdup(cfg->cluster->servers[i])) != NULL;
    m->cluster.servers = m->servers;
    m->cluster.ca_file = m->ca;
    m->cluster.token = NULL;
    *out = m;
    if (!ok)
        return TS_E_NOMEM;
    uv_timer_init(loop, &m->timer);
    m->timer.data = m;
    m->timer_on = 1;
    unsigned hb = cfg->heartbeat_ms ? cfg->heartbeat_ms : 15000;
    uv_timer_start(&m->timer, on_timer, hb, hb);
    return TS_OK;
}

void ts_web_mod_close(struct ts_web_mod *m)
{
    if (!m || m->closing)
        return;
    m->closing = 1;
    if (m->timer_on)
        uv_close((uv_handle_t *)&m->timer, NULL);
    m->timer_on = 0;
    for (struct sess *s = m->sessions, *next; s; s = next) {
        next = s->next;
        if (s->state == S_VERIFYING)
            signin_answer(s, 0, 503, "The server is stopping.");
        sess_kill(s);
    }
}

void ts_web_mod_free(struct ts_web_mod *m)
{
    if (!m)
        return;
    while (m->sessions) { /* only when the loop never ran their close */
        struct sess *s = m->sessions;
        m->sessions = s->next;
        sess_free(s);
    }
    for (size_t i = 0; i < m->n_store; i++) {
        threadsync__comment__free_unpacked(m->store[i].c, NULL);
        free(m->store[i].key);
    }
    free(m->store);
    for (size_t i = 0; m->servers && i < m->cluster.n_servers; i++)
        free((char *)m->servers[i]);
    free(m->servers);
    free(m->ca);
    free(m->base);
    free(m);
}
