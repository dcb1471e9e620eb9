/*
 * ts_cli_export: see ts_cli_export.h.
 *
 * Gets are answered in the order sent on one connection, but answers are
 * kept in a ring of WINDOW slots and written in order anyway, so the file
 * is in thread id order whatever the transport does: an exact import needs
 * thread ids ascending.
 *
 * A thread too large for one Get answer (TOO_LARGE) is read the way
 * PROTOCOL.md says: a Subscribe to its key from seq 0 on a second
 * connection, which streams it (events, or a snapshot in chunks) until
 * the node says caught_up; every version seen is kept and the newest of
 * each comment written, in id order, when the ring reaches its slot. One
 * such thread at a time; its memory is that thread's.
 */
#include "ts_cli_export.h"

#include "threadsync.h"
#include "ts_cli.h"
#include "ts_cli_audit.h"
#include "ts_err.h"
#include "ts_frame.h"
#include "ts_json.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#define WINDOW 8

void ts_cli_export_thread(FILE *out, const Threadsync__GetResult *g, int with_emails)
{
    const Threadsync__Thread *t = g->thread;
    fputs("{\"type\":\"thread\"", out);
    ts_cli_json_thread_fields(out, t, 0, 1);
    fputs("}\n", out);
    for (size_t i = 0; i < g->n_comments; i++) {
        fputs("{\"type\":\"comment\"", out);
        ts_json_kv_str(out, "thread_key", t->key, 0);
        ts_cli_json_comment_fields(out, g->comments[i], 0, 1, with_emails);
        fputs("}\n", out);
    }
}

struct slot {
    struct exp *e;
    char *key;
    Threadsync__GetResult *res; /* owned copy, when answered out of turn */
    int done, err, written;     /* written: answered in turn, already out */
};

/* The thread being read through a subscription (see the top). */
struct big {
    struct exp *e;
    struct ts_client *c;
    Threadsync__Thread *thread; /* the newest version seen, owned */
    Threadsync__Comment **v;    /* every comment version seen, owned */
    size_t n, cap;
    int caught_up, closed, err;
};

struct exp {
    uv_loop_t loop;
    struct ts_client_config cfg; /* for the second connection of a big thread */
    struct big *big;
    struct ts_client *c;
    FILE *out;
    int with_emails, all, header, failed, missing;
    const char *const *keys; /* --thread */
    size_t n_keys;
    /* the current page's keys, in id order */
    char **page;
    size_t n_page, next_send;
    uint64_t next_after_id;
    int page_more;
    struct slot ring[WINDOW];
    size_t ring_head, in_flight; /* the oldest unwritten slot; slots in use */
    uint64_t threads, comments;
    int pending_digest;
    /* the audit trail, after the threads (--all) */
    uint64_t audit, audit_after;
    int audit_busy, audit_more;
};

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void fail(struct exp *e, int err, const Threadsync__Error *detail, const char *what)
{
    if (!e->failed)
        ts_cli_print_error(stderr, err, detail, what);
    e->failed = err;
}

static int big_start(struct exp *e, const char *key);
static int big_write(struct exp *e, const char *key);

/* Writes answered slots in order; a big thread's slot waits until its
 * subscription has caught up and closed. */
static void drain(struct exp *e)
{
    while (e->in_flight && e->ring[e->ring_head].done) {
        struct slot *s = &e->ring[e->ring_head];
        if (s->err == TS_E_TOO_LARGE && !e->failed) {
            if (!e->big) {
                int rc = big_start(e, s->key);
                if (rc != TS_OK)
                    fail(e, rc, NULL, "export");
                return;
            }
            if (!e->big->closed)
                return;
            int rc = big_write(e, s->key);
            if (rc != TS_OK) {
                fail(e, rc, NULL, "export");
                return;
            }
        } else if (s->written) {
            /* written by on_get */
        } else if (s->res) {
            ts_cli_export_thread(e->out, s->res, e->with_emails);
            e->threads++;
            e->comments += s->res->n_comments;
            ts_msg_free(s->res);
        } else if (s->err == TS_E_NOT_FOUND) {
            fprintf(stderr, "export: thread %s is gone: not exported\n", s->key);
            e->missing = 1;
        }
        free(s->key);
        memset(s, 0, sizeof(*s));
        e->ring_head = (e->ring_head + 1) % WINDOW;
        e->in_flight--;
    }
}

/* Answers come in the order sent, so the answer is nearly always the
 * oldest slot's: written straight from the decoded frame, no copy. */
static void on_get(void *arg, int err, const Threadsync__Error *detail,
                   const Threadsync__GetResult *r)
{
    struct slot *s = arg;
    struct exp *e = s->e;
    (void)detail;
    s->done = 1;
    s->err = err;
    if (err != TS_OK || !r)
        return;
    if (s == &e->ring[e->ring_head]) {
        ts_cli_export_thread(e->out, r, e->with_emails);
        e->threads++;
        e->comments += r->n_comments;
        s->written = 1;
        drain(e);
    } else {
        s->res = (Threadsync__GetResult *)ts_frame_msg_copy(&r->base);
        if (!s->res)
            s->err = TS_E_NOMEM;
    }
}

/* ---- a thread too large for one Get ---- */

static void big_free(struct big *b)
{
    if (!b)
        return;
    ts_msg_free(b->thread);
    for (size_t i = 0; i < b->n; i++)
        ts_msg_free(b->v[i]);
    free(b->v);
    free(b);
}

static int big_keep_thread(struct big *b, const Threadsync__Thread *t)
{
    if (!t || (b->thread && b->thread->version > t->version))
        return TS_OK;
    Threadsync__Thread *copy = (Threadsync__Thread *)ts_frame_msg_copy(&t->base);
    if (!copy)
        return TS_E_NOMEM;
    ts_msg_free(b->thread);
    b->thread = copy;
    return TS_OK;
}

static int big_keep_comment(struct big *b, const Threadsync__Comment *c)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        Threadsync__Comment **v = realloc(b->v, cap * sizeof(*v));
        if (!v)
            return TS_E_NOMEM;
        b->v = v;
        b->cap = cap;
    }
    if (!(b->v[b->n] = (Threadsync__Comment *)ts_frame_msg_copy(&c->base)))
        return TS_E_NOMEM;
    b->n++;
    return TS_OK;
}

/* Stops the subscription (once): the slot is written when it has closed. */
static void big_on_closed(void *arg)
{
    struct big *b = arg;
    b->closed = 1;
    b->c = NULL;
    drain(b->e);
}

static void big_stop(struct big *b, int err)
{
    if (!b->err)
        b->err = err;
    if (b->c && !b->caught_up) {
        b->caught_up = 1;
        ts_client_close(b->c, big_on_closed, b);
    }
}

static void big_on_events(void *arg, const Threadsync__Events *ev)
{
    struct big *b = arg;
    int rc = TS_OK;
    for (size_t i = 0; i < ev->n_events && rc == TS_OK; i++) {
        rc = big_keep_thread(b, ev->events[i]->thread);
        if (rc == TS_OK && ev->events[i]->comment)
            rc = big_keep_comment(b, ev->events[i]->comment);
    }
    if (rc != TS_OK || ev->caught_up)
        big_stop(b, rc);
}

/* A snapshot (re)starts the thread's content; events after it upsert. */
static void big_on_snapshot_begin(void *arg, const Threadsync__SnapshotBegin *sb)
{
    struct big *b = arg;
    (void)sb;
    for (size_t i = 0; i < b->n; i++)
        ts_msg_free(b->v[i]);
    b->n = 0;
}

static void big_on_snapshot_chunk(void *arg, const Threadsync__SnapshotChunk *ch)
{
    struct big *b = arg;
    int rc = TS_OK;
    for (size_t i = 0; i < ch->n_threads && rc == TS_OK; i++)
        rc = big_keep_thread(b, ch->threads[i]);
    for (size_t i = 0; i < ch->n_comments && rc == TS_OK; i++)
        rc = big_keep_comment(b, ch->comments[i]);
    if (rc != TS_OK)
        big_stop(b, rc);
}

static void big_on_error(void *arg, int err, const Threadsync__Error *detail)
{
    struct big *b = arg;
    if (err == TS_E_CLOSED && b->caught_up)
        return; /* our own close */
    fail(b->e, err, detail, "export");
    big_stop(b, err);
}

static int big_start(struct exp *e, const char *key)
{
    struct big *b = calloc(1, sizeof(*b));
    if (!b)
        return TS_E_NOMEM;
    b->e = e;
    static const struct ts_client_sub_cbs cbs = {
        .on_events = big_on_events,
        .on_snapshot_begin = big_on_snapshot_begin,
        .on_snapshot_chunk = big_on_snapshot_chunk,
        .on_error = big_on_error,
    };
    int rc = ts_client_new(&e->loop, &e->cfg, &b->c);
    if (rc == TS_OK && (rc = ts_client_subscribe(b->c, 0, &key, 1, 0, &cbs, b)) != TS_OK) {
        b->caught_up = 1; /* no callback comes: freed once closed */
        b->err = rc;
        ts_client_close(b->c, big_on_closed, b);
        e->big = b;
        return rc;
    }
    if (rc != TS_OK) {
        free(b);
        return rc;
    }
    e->big = b;
    return TS_OK;
}

/* By id, the newest version first. */
static int by_id_version(const void *x, const void *y)
{
    const Threadsync__Comment *a = *(Threadsync__Comment *const *)x;
    const Threadsync__Comment *c = *(Threadsync__Comment *const *)y;
    if (a->id != c->id)
        return a->id < c->id ? -1 : 1;
    return a->version > c->version ? -1 : a->version < c->version;
}

/* Writes the big thread (the newest version of each comment) and ends it;
 * a thread that no longer exists is reported, as a Get's NOT_FOUND is. */
static int big_write(struct exp *e, const char *key)
{
    struct big *b = e->big;
    int rc = b->err;
    if (rc == TS_OK && !b->thread) {
        fprintf(stderr, "export: thread %s is gone: not exported\n", key);
        e->missing = 1;
    } else if (rc == TS_OK) {
        qsort(b->v, b->n, sizeof(*b->v), by_id_version);
        size_t n = 0;
        for (size_t i = 0; i < b->n; i++)
            if (!n || b->v[n - 1]->id != b->v[i]->id) {
                Threadsync__Comment *t = b->v[n];
                b->v[n++] = b->v[i];
                b->v[i] = t;
            }
        Threadsync__GetResult g = THREADSYNC__GET_RESULT__INIT;
        g.thread = b->thread;
        g.comments = b->v;
        g.n_comments = n;
        ts_cli_export_thread(e->out, &g, e->with_emails);
        e->threads++;
        e->comments += n;
    }
    big_free(b);
    e->big = NULL;
    return rc;
}

static void on_digest(void *arg, int err, const Threadsync__Error *detail,
                      const Threadsync__DigestResult *r)
{
    struct exp *e = arg;
    e->pending_digest = 0;
    if (err != TS_OK) {
        fail(e, err, detail, "export");
        return;
    }
    if (!e->header) {
        e->header = 1;
        fprintf(e->out, "{\"type\":\"export\",\"format\":1");
        ts_json_kv_u64(e->out, "seq", r->seq, 0);
        ts_json_kv_i64(e->out, "exported_at_ms", wall_ms(), 0);
        ts_json_kv_bool(e->out, "with_emails", e->with_emails, 0);
        fputs("}\n", e->out);
    }
    for (size_t i = 0; i < e->n_page; i++)
        free(e->page[i]);
    free(e->page);
    e->page = calloc(r->n_threads ? r->n_threads : 1, sizeof(*e->page));
    e->n_page = e->next_send = 0;
    if (!e->page) {
        fail(e, TS_E_NOMEM, NULL, "export");
        return;
    }
    for (size_t i = 0; i < r->n_threads; i++)
        if (!(e->page[e->n_page++] = strdup(r->threads[i]->key)))
            fail(e, TS_E_NOMEM, NULL, "export");
    if (!e->all && r->n_threads < e->n_keys) {
        fprintf(stderr, "export: %zu of the --thread keys name no thread\n",
                e->n_keys - r->n_threads);
        e->missing = 1;
    }
    e->next_after_id = r->next_after_id;
    e->page_more = e->all && r->next_after_id != 0;
}

/* Sends what can be sent: Gets of the page, the next page. */
static void pump(struct exp *e)
{
    while (!e->failed && e->next_send < e->n_page && e->in_flight < WINDOW) {
        struct slot *s = &e->ring[(e->ring_head + e->in_flight) % WINDOW];
        s->e = e;
        s->key = strdup(e->page[e->next_send]);
        if (!s->key || ts_client_get(e->c, s->key, on_get, s) != TS_OK) {
            fail(e, TS_E_NOMEM, NULL, "export");
            return;
        }
        e->next_send++;
        e->in_flight++;
    }
}

static int run(struct exp *e)
{
    e->pending_digest = 1;
    int rc =
        ts_client_digest(e->c, e->all ? NULL : e->keys, e->all ? 0 : e->n_keys, 0, on_digest, e);
    if (rc != TS_OK)
        return rc;
    for (;;) {
        uv_run(&e->loop, UV_RUN_ONCE);
        for (size_t i = 0; i < WINDOW; i++) /* slots answered since: a Get failed? */
            if (e->ring[i].done && e->ring[i].err != TS_OK && e->ring[i].err != TS_E_TOO_LARGE &&
                e->ring[i].err != TS_E_NOT_FOUND)
                fail(e, e->ring[i].err, NULL, "export");
        if (e->failed)
            return e->failed;
        drain(e);
        pump(e);
        if (!e->pending_digest && e->next_send == e->n_page && !e->in_flight) {
            if (!e->page_more)
                return TS_OK;
            e->pending_digest = 1;
            e->page_more = 0;
            if ((rc = ts_client_digest(e->c, NULL, 0, e->next_after_id, on_digest, e)) != TS_OK)
                return rc;
        }
    }
}

static void on_audit(void *arg, int err, const Threadsync__Error *detail,
                     const Threadsync__AuditListResult *r)
{
    struct exp *e = arg;
    e->audit_busy = 0;
    if (err != TS_OK) {
        fail(e, err, detail, "export (audit trail)");
        return;
    }
    for (size_t i = 0; i < r->n_entries; i++)
        ts_cli_audit_write(e->out, r->entries[i]);
    e->audit += r->n_entries;
    if (r->n_entries)
        e->audit_after = r->entries[r->n_entries - 1]->seq;
    e->audit_more = r->more && r->n_entries;
}

/* Writes the whole audit trail, oldest first, a page at a time. */
static int run_audit(struct exp *e)
{
    Threadsync__AuditList q = THREADSYNC__AUDIT_LIST__INIT;
    q.limit = 1000;
    do {
        q.after_seq = e->audit_after;
        e->audit_busy = 1;
        e->audit_more = 0;
        int rc = ts_client_audit_list(e->c, &q, on_audit, e);
        if (rc != TS_OK)
            return rc;
        while (e->audit_busy)
            uv_run(&e->loop, UV_RUN_ONCE);
        if (e->failed)
            return e->failed;
    } while (e->audit_more);
    return TS_OK;
}

static void on_closed(void *arg)
{
    (void)arg;
}

int ts_cli_export_run(const struct ts_cli_opts *o, struct ts_client_config *cfg)
{
    const char *outfile = o->out;
    struct exp *e = calloc(1, sizeof(*e));
    FILE *out = outfile ? fopen(outfile, "w") : stdout;
    int code = TS_CLI_EXIT_OK;
    if (!e || !out || uv_loop_init(&e->loop) != 0) {
        fprintf(stderr, "error: export: cannot open %s: %m\n", outfile ? outfile : "output");
        code = TS_CLI_EXIT_CONN;
    } else {
        /* a large buffer: the file is written in big blocks */
        setvbuf(out, NULL, _IOFBF, (size_t)1 << 20);
        e->out = out;
        e->cfg = *cfg;
        e->all = o->all;
        e->with_emails = o->with_emails;
        e->keys = o->threads;
        e->n_keys = o->n_threads;
        int rc = ts_client_new(&e->loop, cfg, &e->c);
        if (rc == TS_OK) {
            rc = run(e);
            if (rc == TS_OK && o->all)
                rc = run_audit(e);
            if (e->big) /* stopped half-way: its connection closes too */
                big_stop(e->big, TS_E_CLOSED);
            ts_client_close(e->c, on_closed, NULL);
            uv_run(&e->loop, UV_RUN_DEFAULT);
        }
        if (rc != TS_OK && !e->failed)
            fprintf(stderr, "error: export: %s (%s)\n", ts_err_message(rc), ts_err_name(rc));
        if (rc != TS_OK)
            code = ts_cli_exit_code(rc);
        else if (e->missing)
            code = TS_CLI_EXIT_REFUSED;
        if (fflush(out) != 0 || ferror(out)) {
            fprintf(stderr, "error: export: write failed: %m\n");
            code = TS_CLI_EXIT_CONN;
        }
        fprintf(stderr,
                "export: %" PRIu64 " threads, %" PRIu64 " comments, %" PRIu64 " audit entries\n",
                e->threads, e->comments, e->audit);
        for (size_t i = 0; i < WINDOW; i++) {
            free(e->ring[i].key);
            ts_msg_free(e->ring[i].res);
        }
        for (size_t i = 0; i < e->n_page; i++)
            free(e->page[i]);
        free(e->page);
        big_free(e->big);
        uv_loop_close(&e->loop);
    }
    if (out && out != stdout)
        fclose(out);
    free(e);
    return code;
}
