/*
 * ts_cli_import: see ts_cli_import.h.
 *
 * The sink (struct imp) between the parsers and the server keeps:
 *   - threads: key -> struct thr, what an Import needs to create a thread;
 *   - sent: source ids already queued (a reply may go once its parent has);
 *   - held: spam and trash comments not queued yet (struct pend), waiting
 *     for a reply to make them worth keeping;
 *   - waiting: parent source id -> the replies (struct pend list) that came
 *     before their parent;
 *   - the batch being filled, and up to WINDOW Import requests in flight on
 *     one connection, each remembering its comments' source ids so that
 *     refusals can be told by id.
 * Requests on one connection are applied in the order sent (the leader
 * proposes them in that order), so a reply may be in a later batch than
 * its parent while both are in flight.
 */
#include "ts_cli_import.h"

#include "threadsync.h"
#include "ts_cli.h"
#include "ts_err.h"
#include "ts_import_disqus.h"
#include "ts_import_jsonl.h"
#include "ts_import_text.h"
#include "ts_import_wxr.h"
#include "ts_json.h"
#include "ts_strmap.h"
#include "ts_valid.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

/* Import requests in flight: enough that the node always has the next
 * batch while it appends, syncs and applies one (a batch's round trip is
 * dominated by the log's fsync), few enough that the node buffers little. */
#define WINDOW 8
/* Comments queued between two turns of the loop while the file is parsed:
 * the turns push a large frame's remaining bytes out and take answers in,
 * so parsing, the wire and the node overlap instead of taking turns. */
#define TURN_EVERY 64
#define BATCH_BYTES ((size_t)900 * 1024) /* below the 1 MiB frame limit, with room */
#define N_SKIP_REASONS 16
#define SOURCE_ID_MAX 128 /* PROTOCOL.md, Import */

struct thr {
    Threadsync__ImportThread t; /* strings owned */
    int in_batch;               /* the batch being filled names it */
    int counted;                /* a comment of it was queued */
};

/* A comment not queued yet: its record's strings, owned. */
struct pend {
    struct ts_import_comment_rec r;
    char *strs[8];
    struct pend *next;
};

struct flight {
    char **ids; /* source ids, in the request's order */
    size_t n;
    struct imp *imp;
};

struct imp {
    /* options */
    const char *source;
    int exact, strict, quiet, json, progress;
    size_t batch_size;
    /* tables */
    struct ts_strmap *threads, *sent, *held, *waiting;
    /* the batch being filled */
    Threadsync__ImportComment **batch;
    size_t n_batch, batch_bytes;
    const struct thr *last_thread; /* the previous comment's, for batch_bytes */
    /* the connection */
    uv_loop_t loop;
    struct ts_client *c;
    int in_flight, failed, fatal_err;
    /* counts */
    uint64_t threads_seen, threads_created, created, existing, refused, queued;
    uint64_t top_level, truncated, dropped_fields, held_dropped;
    struct {
        const char *why;
        uint64_t n;
    } skips[N_SKIP_REASONS];
    /* progress */
    FILE *in;
    long size;
    uint64_t last_progress_ms;
    char err[512];
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void skip(void *arg, const char *why)
{
    struct imp *m = arg;
    for (size_t i = 0; i < N_SKIP_REASONS; i++) {
        if (!m->skips[i].why)
            m->skips[i].why = why;
        if (m->skips[i].why == why || !strcmp(m->skips[i].why, why)) {
            m->skips[i].n++;
            return;
        }
    }
}

static void progress(struct imp *m, int force)
{
    if (!m->progress)
        return;
    uint64_t t = now_ms();
    if (!force && t - m->last_progress_ms < 200)
        return;
    m->last_progress_ms = t;
    long pos = m->in ? ftell(m->in) : -1;
    if (m->size > 0 && pos >= 0)
        fprintf(stderr,
                "\rimport: %3d%%  %" PRIu64 " comments sent, %" PRIu64 " new, %" PRIu64
                " existing, %" PRIu64 " refused ",
                (int)(100.0 * (double)pos / (double)m->size), m->queued, m->created, m->existing,
                m->refused);
    else
        fprintf(stderr, "\rimport: %" PRIu64 " comments sent, %" PRIu64 " new ", m->queued,
                m->created);
}

/* ---- sending ---- */

/* A batch's comment and its strings in one block (one malloc and one free
 * per comment of a million-comment import, not nine). */
static Threadsync__ImportComment *comment_new(const struct ts_import_comment_rec *r,
                                              const char *name, int tomb)
{
    const char *src[8] = {r->source_id,
                          r->parent_source_id,
                          r->thread_key,
                          name,
                          tomb ? "" : r->author_email,
                          tomb ? "" : r->author_url,
                          tomb ? "" : r->body,
                          r->moderated_by};
    size_t len[8], total = sizeof(Threadsync__ImportComment);
    for (size_t i = 0; i < 8; i++) {
        len[i] = src[i] ? strlen(src[i]) : 0;
        total += len[i] + 1;
    }
    Threadsync__ImportComment *c = malloc(total);
    if (!c)
        return NULL;
    threadsync__import_comment__init(c);
    char *p = (char *)(c + 1);
    char **dst[8] = {&c->source_id,    &c->parent_source_id, &c->thread_key, &c->author_name,
                     &c->author_email, &c->author_url,       &c->body,       &c->moderated_by};
    for (size_t i = 0; i < 8; i++) {
        if (len[i])
            memcpy(p, src[i], len[i]);
        p[len[i]] = '\0';
        *dst[i] = p;
        p += len[i] + 1;
    }
    return c;
}

static void free_msg_comment(Threadsync__ImportComment *c)
{
    free(c);
}

static void flight_free(struct flight *f)
{
    for (size_t i = 0; i < f->n; i++)
        free(f->ids[i]);
    free(f->ids);
    free(f);
}

static void on_import(void *arg, int err, const Threadsync__Error *detail,
                      const Threadsync__ImportResult *r)
{
    struct flight *f = arg;
    struct imp *m = f->imp;
    m->in_flight--;
    if (err != TS_OK) {
        if (!m->failed) {
            m->failed = 1;
            m->fatal_err = err;
            if (m->progress)
                fputc('\n', stderr);
            ts_cli_print_error(stderr, err, detail, "import");
        }
    } else {
        m->created += r->created;
        m->existing += r->existing;
        m->threads_created += r->threads_created;
        for (size_t i = 0; i < r->n_comments && i < f->n; i++) {
            const Threadsync__ImportItem *it = r->comments[i];
            if (it->outcome != THREADSYNC__IMPORT_OUTCOME__IMPORT_REFUSED)
                continue;
            m->refused++;
            if (!m->quiet)
                fprintf(stderr, "%simport: comment %s refused: %s (%s)\n", m->progress ? "\n" : "",
                        f->ids[i], it->message, ts_err_name((int)it->error));
        }
    }
    flight_free(f);
    progress(m, 0);
}

/* Runs the loop until fewer than max requests are in flight. */
static void wait_flights(struct imp *m, int max)
{
    while (m->in_flight >= max && m->in_flight > 0)
        uv_run(&m->loop, UV_RUN_ONCE);
}

static int flush(struct imp *m)
{
    if (!m->n_batch)
        return m->failed ? m->fatal_err : TS_OK;
    wait_flights(m, WINDOW);
    if (m->failed)
        return m->fatal_err;
    /* the threads this batch names */
    size_t n_threads = 0;
    Threadsync__ImportThread **tv = calloc(m->n_batch, sizeof(*tv));
    struct flight *f = calloc(1, sizeof(*f));
    char **ids = calloc(m->n_batch, sizeof(*ids));
    if (!tv || !f || !ids) {
        free(tv);
        free(f);
        free(ids);
        return TS_E_NOMEM;
    }
    for (size_t i = 0; i < m->n_batch; i++) {
        void *v = NULL;
        ts_strmap_get(m->threads, m->batch[i]->thread_key, &v);
        struct thr *t = v;
        if (t && !t->in_batch) {
            t->in_batch = 1;
            tv[n_threads++] = &t->t;
        }
        if (!(ids[i] = strdup(m->batch[i]->source_id)))
            ids[i] = strdup("?");
    }
    for (size_t i = 0; i < n_threads; i++)
        ((struct thr *)((char *)tv[i] - offsetof(struct thr, t)))->in_batch = 0;
    Threadsync__Import im = THREADSYNC__IMPORT__INIT;
    im.source = (char *)m->source;
    im.exact = m->exact;
    im.threads = tv;
    im.n_threads = n_threads;
    im.comments = m->batch;
    im.n_comments = m->n_batch;
    f->ids = ids;
    f->n = m->n_batch;
    f->imp = m;
    /* parsing ran without the loop: the request's deadline counts from now */
    uv_update_time(&m->loop);
    int rc = ts_client_import(m->c, &im, on_import, f);
    free(tv);
    for (size_t i = 0; i < m->n_batch; i++)
        free_msg_comment(m->batch[i]);
    m->n_batch = 0;
    m->batch_bytes = 0;
    if (rc != TS_OK) {
        flight_free(f);
        return rc;
    }
    m->in_flight++;
    uv_run(&m->loop, UV_RUN_NOWAIT);
    return m->failed ? m->fatal_err : TS_OK;
}

/* ---- the sink ---- */

static char *dup0(const char *s)
{
    return strdup(s ? s : "");
}

static int thread_cb(void *arg, const struct ts_import_thread_rec *r)
{
    struct imp *m = arg;
    void *old = NULL;
    if (ts_strmap_get(m->threads, r->key, &old) && old)
        return 0; /* the first description of a key wins */
    struct thr *t = calloc(1, sizeof(*t));
    if (!t)
        return TS_E_NOMEM;
    threadsync__import_thread__init(&t->t);
    t->t.key = dup0(r->key);
    t->t.title = dup0(r->title);
    t->t.url = dup0(r->url);
    t->t.moderated_by = dup0(r->moderated_by);
    if (!t->t.key || !t->t.title || !t->t.url || !t->t.moderated_by)
        return TS_E_NOMEM;
    if (ts_import_clip(t->t.title, TS_TITLE_MAX, 0))
        m->truncated++;
    if (strlen(t->t.url) > TS_URL_MAX) {
        t->t.url[0] = '\0';
        m->dropped_fields++;
    }
    t->t.created_at_ms = r->created_at_ms;
    t->t.id = r->id;
    t->t.version = r->version;
    t->t.locked = r->locked;
    t->t.premoderated = r->premoderated;
    return ts_strmap_put(m->threads, r->key, t);
}

static void warn(struct imp *m, const struct ts_import_comment_rec *r, const char *what)
{
    if (!m->quiet)
        fprintf(stderr, "%simport: comment %s (line %lu, column %lu): %s\n",
                m->progress ? "\n" : "", r->source_id, r->line, r->column, what);
}

/* Puts r into the batch (cut to the limits). *ok 0 when it was refused
 * here (--strict, or a field that cannot be cut). */
static int queue(struct imp *m, const struct ts_import_comment_rec *r, int *ok)
{
    *ok = 0;
    void *tv = NULL;
    if (!ts_strmap_get(m->threads, r->thread_key, &tv) || !tv) {
        warn(m, r, "its thread is not in the file: not imported");
        skip(m, "comment of a thread not in the file");
        return 0;
    }
    size_t key_len = strlen(r->thread_key);
    if (!key_len || key_len > TS_THREAD_KEY_MAX || strlen(r->source_id) > SOURCE_ID_MAX) {
        warn(m, r, "thread key or source id too long: not imported");
        skip(m, "thread key or source id too long");
        return 0;
    }
    int tomb = r->status == THREADSYNC__STATUS__DELETED;
    const char *name = tomb                                  ? ""
                       : r->author_name && r->author_name[0] ? r->author_name
                                                             : "Anonymous";
    Threadsync__ImportComment *c = comment_new(r, name, tomb);
    if (!c)
        return TS_E_NOMEM;
    const char *why = NULL;
    if (!tomb && !c->body[0])
        why = "empty body";
    else if (r->created_at_ms <= 0)
        why = "no valid date";
    int cut = 0;
    if (!why) {
        cut |= ts_import_clip(c->author_name, (size_t)TS_AUTHOR_NAME_MAX_CP * 4,
                              TS_AUTHOR_NAME_MAX_CP);
        cut |= ts_import_clip(c->body, TS_BODY_MAX, 0);
        if (strlen(c->author_email) > TS_AUTHOR_EMAIL_MAX) {
            c->author_email[0] = '\0';
            m->dropped_fields++;
            warn(m, r, "author e-mail over 254 bytes: dropped");
        }
        if (strlen(c->author_url) > TS_URL_MAX) {
            c->author_url[0] = '\0';
            m->dropped_fields++;
        }
        if (cut && m->strict)
            why = "a field over threadsync's limits (--strict)";
        else if (cut) {
            m->truncated++;
            warn(m, r, "author name or body over threadsync's limits: truncated");
        }
    }
    if (why) {
        warn(m, r, why);
        skip(m, why);
        free_msg_comment(c);
        return 0;
    }
    c->created_at_ms = r->created_at_ms;
    c->status = (Threadsync__Status)r->status;
    c->id = r->id;
    c->version = r->version;
    c->edited_at_ms = r->edited_at_ms;
    struct thr *t = tv;
    size_t bytes = strlen(c->body) + strlen(c->author_name) + strlen(c->author_email) +
                   strlen(c->author_url) + strlen(c->source_id) + strlen(c->thread_key) + 64;
    /* the thread's record travels with the batch too: counted at each
     * change of thread (an over-count when threads interleave: safe) */
    if (t != m->last_thread)
        bytes += strlen(t->t.key) + strlen(t->t.title) + strlen(t->t.url) +
                 strlen(t->t.moderated_by) + 64;
    if (m->n_batch && (m->n_batch >= m->batch_size || m->batch_bytes + bytes > BATCH_BYTES)) {
        int rc = flush(m);
        if (rc != TS_OK) {
            free_msg_comment(c);
            return rc;
        }
    }
    if (!m->n_batch)
        bytes += t != m->last_thread ? 0
                                     : strlen(t->t.key) + strlen(t->t.title) + strlen(t->t.url) +
                                           strlen(t->t.moderated_by) + 64;
    m->batch[m->n_batch++] = c;
    m->batch_bytes += bytes;
    m->last_thread = t;
    m->queued++;
    if (m->in_flight && m->queued % TURN_EVERY == 0)
        uv_run(&m->loop, UV_RUN_NOWAIT);
    if (!t->counted) {
        t->counted = 1;
        m->threads_seen++;
    }
    *ok = 1;
    progress(m, 0);
    return 0;
}

static struct pend *pend_new(const struct ts_import_comment_rec *r)
{
    struct pend *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->r = *r;
    const char *src[8] = {r->source_id,    r->parent_source_id, r->thread_key, r->author_name,
                          r->author_email, r->author_url,       r->body,       r->moderated_by};
    const char **dst[8] = {&p->r.source_id,   &p->r.parent_source_id, &p->r.thread_key,
                           &p->r.author_name, &p->r.author_email,     &p->r.author_url,
                           &p->r.body,        &p->r.moderated_by};
    for (int i = 0; i < 8; i++) {
        p->strs[i] = dup0(src[i]);
        if (!p->strs[i]) {
            for (int j = 0; j < i; j++)
                free(p->strs[j]);
            free(p);
            return NULL;
        }
        *dst[i] = p->strs[i];
    }
    return p;
}

static void pend_free(struct pend *p)
{
    for (int i = 0; i < 8; i++)
        free(p->strs[i]);
    free(p);
}

static int emit(struct imp *m, const struct ts_import_comment_rec *r);

/* Queues r and then, recursively, the replies that waited for it. A
 * comment refused here takes its waiting replies with it (their parent
 * will never exist). */
static int emit(struct imp *m, const struct ts_import_comment_rec *r)
{
    int ok, rc = queue(m, r, &ok);
    if (rc)
        return rc;
    if ((rc = ts_strmap_put(m->sent, r->source_id, ok ? (void *)1 : (void *)2)) != TS_OK)
        return rc;
    void *v = NULL;
    if (!ts_strmap_get(m->waiting, r->source_id, &v) || !v)
        return 0;
    ts_strmap_put(m->waiting, r->source_id, NULL);
    for (struct pend *p = v, *next; p; p = next) {
        next = p->next;
        if (!ok) {
            warn(m, &p->r, "its parent was not imported: not imported");
            skip(m, "reply to a comment that was not imported");
            ts_strmap_put(m->sent, p->r.source_id, (void *)2);
        } else if (!rc) {
            rc = emit(m, &p->r);
        }
        pend_free(p);
    }
    return rc;
}

static int comment_cb(void *arg, const struct ts_import_comment_rec *r)
{
    struct imp *m = arg;
    if (!r->source_id[0]) {
        skip(m, "comment without an id");
        return 0;
    }
    if (ts_strmap_get(m->sent, r->source_id, NULL) || ts_strmap_get(m->held, r->source_id, NULL)) {
        warn(m, r, "a second comment with this id: ignored");
        skip(m, "repeated comment id");
        return 0;
    }
    const char *parent = r->parent_source_id;
    void *pv = NULL;
    if (parent[0] && ts_strmap_get(m->sent, parent, &pv) && pv == (void *)2) {
        warn(m, r, "its parent was not imported: not imported");
        skip(m, "reply to a comment that was not imported");
        return ts_strmap_put(m->sent, r->source_id, (void *)2);
    }
    if (parent[0]) {
        void *hv = NULL;
        if (ts_strmap_get(m->held, parent, &hv) && hv) {
            /* a removed comment with a reply: it is kept after all */
            ts_strmap_put(m->held, parent, NULL);
            struct pend *h = hv;
            int rc = emit(m, &h->r);
            pend_free(h);
            if (rc)
                return rc;
        }
        if (!ts_strmap_get(m->sent, parent, NULL)) {
            struct pend *p = pend_new(r);
            if (!p)
                return TS_E_NOMEM;
            void *head = NULL;
            ts_strmap_get(m->waiting, parent, &head);
            p->next = head;
            return ts_strmap_put(m->waiting, parent, p);
        }
    }
    if (r->keep_if_replies) {
        void *w = NULL;
        if (!ts_strmap_get(m->waiting, r->source_id, &w) || !w) {
            struct pend *p = pend_new(r);
            if (!p)
                return TS_E_NOMEM;
            return ts_strmap_put(m->held, r->source_id, p);
        }
    }
    return emit(m, r);
}

/* ---- the end of the file ---- */

struct orphan_list {
    const char *parent; /* a key of the waiting map */
    struct pend *list;
};

struct orphans {
    struct imp *m;
    struct orphan_list *v;
    size_t n, cap;
    int rc;
};

/* The waiting lists whose parent was never queued (absent, or refused). */
static void collect_orphans(void *arg, const char *key, void *value)
{
    struct orphans *o = arg;
    void *sv = NULL;
    if (!value || (ts_strmap_get(o->m->sent, key, &sv) && sv == (void *)1))
        return;
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 16;
        struct orphan_list *v = realloc(o->v, cap * sizeof(*v));
        if (!v) {
            o->rc = TS_E_NOMEM;
            return;
        }
        o->v = v;
        o->cap = cap;
    }
    o->v[o->n].parent = key;
    o->v[o->n].list = value;
    o->n++;
}

static void drop_held(void *arg, const char *key, void *value)
{
    (void)key;
    struct imp *m = arg;
    if (!value)
        return;
    m->held_dropped++;
    skip(m, "spam or trash without replies"); /* freed with the map */
}

/* Settles one waiting comment whose parent will never be queued. */
static int settle_orphan(struct imp *m, struct pend *p, int parent_refused)
{
    if (parent_refused) {
        warn(m, &p->r, "its parent was not imported: not imported");
        skip(m, "reply to a comment that was not imported");
        return ts_strmap_put(m->sent, p->r.source_id, (void *)2);
    }
    if (m->strict) {
        warn(m, &p->r, "its parent is not in the file: refused (--strict)");
        skip(m, "parent not in the file (--strict)");
        return ts_strmap_put(m->sent, p->r.source_id, (void *)2);
    }
    warn(m, &p->r, "its parent is not in the file: imported at top level");
    m->top_level++;
    p->r.parent_source_id = "";
    return emit(m, &p->r);
}

/* Replies whose parent never came: top level with a warning, or refused
 * (--strict); then what waited for them, round by round from the roots
 * (a reply whose parent is itself waiting goes in a later round, after its
 * parent was settled). */
static int finish_orphans(struct imp *m)
{
    int rc = 0;
    struct ts_strmap *waiting_ids = NULL;
    while (!rc) {
        struct orphans o = {.m = m};
        ts_strmap_each(m->waiting, collect_orphans, &o);
        if (o.rc || !o.n) {
            rc = o.rc;
            free(o.v);
            break;
        }
        ts_strmap_free(waiting_ids);
        if (!(waiting_ids = ts_strmap_new()))
            rc = TS_E_NOMEM;
        for (size_t i = 0; i < o.n && !rc; i++)
            for (struct pend *p = o.v[i].list; p && !rc; p = p->next)
                rc = ts_strmap_put(waiting_ids, p->r.source_id, NULL);
        size_t roots = 0;
        for (size_t i = 0; i < o.n; i++)
            roots += !ts_strmap_get(waiting_ids, o.v[i].parent, NULL);
        for (size_t i = 0; i < o.n && !rc; i++) {
            /* no root at all: a cycle of parents; break it anywhere */
            if (roots && ts_strmap_get(waiting_ids, o.v[i].parent, NULL))
                continue;
            void *sv = NULL;
            int refused = ts_strmap_get(m->sent, o.v[i].parent, &sv) && sv == (void *)2;
            ts_strmap_put(m->waiting, o.v[i].parent, NULL);
            for (struct pend *p = o.v[i].list, *next; p; p = next) {
                next = p->next;
                if (!rc)
                    rc = settle_orphan(m, p, refused);
                pend_free(p);
            }
            if (!roots)
                break;
        }
        free(o.v);
    }
    ts_strmap_free(waiting_ids);
    ts_strmap_each(m->held, drop_held, m);
    return rc;
}

/* ---- the command ---- */

static void summary(const struct imp *m, FILE *out)
{
    if (m->json) {
        fprintf(out,
                "{\"threads\":%" PRIu64 ",\"threads_created\":%" PRIu64 ",\"comments\":%" PRIu64
                ",\"created\":%" PRIu64 ",\"existing\":%" PRIu64 ",\"refused\":%" PRIu64
                ",\"top_level\":%" PRIu64 ",\"truncated\":%" PRIu64 ",\"dropped_fields\":%" PRIu64
                ",\"skipped\":{",
                m->threads_seen, m->threads_created, m->queued, m->created, m->existing, m->refused,
                m->top_level, m->truncated, m->dropped_fields);
        for (size_t i = 0; i < N_SKIP_REASONS && m->skips[i].why; i++) {
            ts_json_key(out, m->skips[i].why, i == 0);
            fprintf(out, "%" PRIu64, m->skips[i].n);
        }
        fputs("}}\n", out);
        return;
    }
    fprintf(out,
            "threads: %" PRIu64 " (%" PRIu64 " new)\ncomments: %" PRIu64 " sent, %" PRIu64
            " new, %" PRIu64 " already there, %" PRIu64 " refused\n",
            m->threads_seen, m->threads_created, m->queued, m->created, m->existing, m->refused);
    if (m->top_level)
        fprintf(out, "replies made top level (parent not in the file): %" PRIu64 "\n",
                m->top_level);
    if (m->truncated || m->dropped_fields)
        fprintf(out, "fields truncated: %" PRIu64 ", dropped: %" PRIu64 "\n", m->truncated,
                m->dropped_fields);
    for (size_t i = 0; i < N_SKIP_REASONS && m->skips[i].why; i++)
        fprintf(out, "skipped: %" PRIu64 " %s\n", m->skips[i].n, m->skips[i].why);
}

static void free_thr(void *arg, const char *key, void *value)
{
    (void)arg;
    (void)key;
    struct thr *t = value;
    if (!t)
        return;
    free(t->t.key);
    free(t->t.title);
    free(t->t.url);
    free(t->t.moderated_by);
    free(t);
}

static void free_waiting(void *arg, const char *key, void *value)
{
    (void)arg;
    (void)key;
    for (struct pend *p = value, *next; p; p = next) {
        next = p->next;
        pend_free(p);
    }
}

static void free_held(void *arg, const char *key, void *value)
{
    (void)arg;
    (void)key;
    if (value)
        pend_free(value);
}

static int run(struct imp *m, const struct ts_cli_opts *o, FILE *in)
{
    const struct ts_import_sink sink = {thread_cb, comment_cb, skip, m};
    enum ts_import_key_from kf = !o->key_from || !strcmp(o->key_from, "path") ? TS_IMPORT_KEY_PATH
                                 : !strcmp(o->key_from, "slug")               ? TS_IMPORT_KEY_SLUG
                                                                              : TS_IMPORT_KEY_ID;
    int rc;
    if (!strcmp(o->format, "wordpress")) {
        struct ts_import_wxr_opts wo = {kf, o->with_pingbacks};
        rc = ts_import_wxr_parse(in, &wo, &sink, m->err, sizeof(m->err));
    } else if (!strcmp(o->format, "disqus")) {
        struct ts_import_disqus_opts dopt = {kf};
        rc = ts_import_disqus_parse(in, &dopt, &sink, m->err, sizeof(m->err));
    } else {
        rc = ts_import_jsonl_parse(in, &sink, m->err, sizeof(m->err));
    }
    if (rc == TS_OK)
        rc = finish_orphans(m);
    if (rc == TS_OK)
        rc = flush(m);
    else /* nothing of a broken batch is sent */
        for (size_t i = 0; i < m->n_batch; i++)
            free_msg_comment(m->batch[i]);
    if (rc != TS_OK)
        m->n_batch = 0;
    wait_flights(m, 1);
    return rc;
}

static void on_closed(void *arg)
{
    (void)arg;
}

int ts_cli_import_run(const struct ts_cli_opts *o, struct ts_client_config *cfg)
{
    FILE *in = strcmp(o->file, "-") ? fopen(o->file, "rb") : stdin;
    if (!in) {
        fprintf(stderr, "error: import: cannot open %s: %m\n", o->file);
        return TS_CLI_EXIT_CONN;
    }
    if (o->timeout_ms)
        cfg->request_timeout_ms = o->timeout_ms;
    int rc;
    struct imp *m = calloc(1, sizeof(*m));
    int jsonl = !strcmp(o->format, "jsonl");
    if (m) {
        m->source = o->source ? o->source : jsonl ? "threadsync" : o->format;
        m->exact = jsonl && !o->renumber;
        m->strict = o->strict;
        m->quiet = o->quiet || o->json;
        m->json = o->json;
        m->progress = !m->quiet && isatty(STDERR_FILENO);
        m->batch_size = o->batch_size;
        m->in = in;
        if (in != stdin && fseek(in, 0, SEEK_END) == 0) {
            m->size = ftell(in);
            rewind(in);
        }
        m->threads = ts_strmap_new();
        m->sent = ts_strmap_new();
        m->held = ts_strmap_new();
        m->waiting = ts_strmap_new();
        m->batch = calloc(o->batch_size, sizeof(*m->batch));
    }
    int code = TS_CLI_EXIT_OK;
    if (!m || !m->threads || !m->sent || !m->held || !m->waiting || !m->batch ||
        uv_loop_init(&m->loop) != 0) {
        fprintf(stderr, "error: import: out of memory\n");
        code = TS_CLI_EXIT_CONN;
    } else {
        rc = ts_client_new(&m->loop, cfg, &m->c);
        if (rc != TS_OK) {
            fprintf(stderr, "error: import: %s (%s)\n", ts_err_message(rc), ts_err_name(rc));
            code = TS_CLI_EXIT_CONN;
        } else {
            rc = run(m, o, in);
            progress(m, 1);
            if (m->progress)
                fputc('\n', stderr);
            if (m->failed) {
                code = ts_cli_exit_code(m->fatal_err);
                fprintf(stderr, "import stopped: run the same command again to complete it\n");
            } else if (rc != TS_OK) {
                fprintf(stderr, "error: import: %s: %s\n", o->file,
                        m->err[0] ? m->err : ts_err_message(rc));
                code = rc == TS_E_INVALID_ARGUMENT ? TS_CLI_EXIT_REFUSED : ts_cli_exit_code(rc);
            }
            summary(m, stdout);
            ts_client_close(m->c, on_closed, NULL);
            uv_run(&m->loop, UV_RUN_DEFAULT);
        }
        uv_loop_close(&m->loop);
    }
    if (m) {
        if (m->threads)
            ts_strmap_each(m->threads, free_thr, NULL);
        if (m->waiting)
            ts_strmap_each(m->waiting, free_waiting, NULL);
        if (m->held)
            ts_strmap_each(m->held, free_held, NULL);
        ts_strmap_free(m->threads);
        ts_strmap_free(m->sent);
        ts_strmap_free(m->held);
        ts_strmap_free(m->waiting);
        free(m->batch);
        free(m);
    }
    if (in != stdin)
        fclose(in);
    return code;
}
