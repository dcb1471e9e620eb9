/*
 * ts_mirror_fill: the rows a first sync stored, kept in memory for its
 * render (see ts_mirror_fill.h for the promises).
 *
 * The render of a first sync reads every comment back: one pass over the
 * comments table (ts_mirror_db_threads_scan), 0.4-0.7 s of CPU for 300,000
 * comments on the loop thread before any file could be written, by then
 * from the WAL the fill was never checkpointed out of. The writer had each
 * of those rows in memory a second earlier (its copy of each batch,
 * ts_mirror_writer.c); folded here as it applies them, they make the same
 * threads with no read. The rules are ts_mirror_db.c's, restated, and
 * each is where that file applies it:
 * - a comment row is inserted once and replaced only by a higher version
 *   (upsert_comment: UPDATE ... WHERE version < new), in event order;
 * - a thread row likewise across batches (defer_thread, S_THREAD_UPDATE),
 *   but within one batch the last of its highest versions wins
 *   (thread_winners);
 * - a comment that is not VISIBLE is stored with empty name and body
 *   (bind_comment_at), NULL text is stored empty (bind_str);
 * - what comes back is the columns only (thread_from_row, comment_fields:
 *   every other field at its default), comments of a thread in id order.
 * Versions and ids are compared as the unsigned numbers they are, which is
 * SQLite's (signed) order only below 2^63: anything at or above spends
 * the fill rather than guess.
 *
 * Memory: rows (struct and text) are carved from an arena (ts_arena:
 * huge-page mappings), in arrival order, as the scan's are
 * (ts_mirror_db.c): the writer's own copies, kept instead, were 160 MiB
 * of 4 KiB heap pages for 300,000 comments, 45,000 more page faults than
 * the base, which cost more system time than the read they replaced.
 */
#include "ts_mirror_fill.h"

#include <stdlib.h>
#include <string.h>

#include "ts_arena.h"
#include "ts_array.h"
#include "ts_digest.h"
#include "ts_err.h"

#define TOP_BIT (UINT64_C(1) << 63)

/* A thread's row so far, and the batch that set it (the tie rule). */
struct thr {
    Threadsync__Thread t; /* strings in the arena */
    size_t batch;
};

struct ts_mirror_fill {
    size_t max_bytes, bytes; /* bytes: tables (the arena counts its own) */
    int spent;
    size_t batches;        /* added so far */
    struct ts_arena arena; /* the rows and their text, limited to max_bytes */
    /* Comments by id (see add_comment), each its latest row. */
    Threadsync__Comment **order;
    size_t n_order, cap_order;
    /* Threads; tslot: open addressing on id, index in thr + 1 (0 empty),
     * at most half full. */
    struct thr *thr;
    size_t n_thr, cap_thr;
    size_t *tslot, n_tslot;
    /* The build. */
    size_t n;
    struct ts_mirror_thread *t; /* t[i]: ids[i], when has[i] */
    unsigned char *has;
    Threadsync__Comment **by_thread;
};

int ts_mirror_fill_new(size_t max_bytes, struct ts_mirror_fill **out)
{
    *out = calloc(1, sizeof(**out));
    if (!*out)
        return TS_E_NOMEM;
    (*out)->max_bytes = max_bytes;
    (*out)->arena.limit = max_bytes ? max_bytes : 1; /* 0 would be no limit */
    return TS_OK;
}

static void free_build(struct ts_mirror_fill *f)
{
    free(f->t);
    free(f->has);
    free(f->by_thread);
    f->t = NULL;
    f->has = NULL;
    f->by_thread = NULL;
    f->n = 0;
}

void ts_mirror_fill_spend(struct ts_mirror_fill *f)
{
    if (!f)
        return;
    ts_arena_free(&f->arena);
    free(f->order);
    free(f->thr);
    free(f->tslot);
    free_build(f);
    *f = (struct ts_mirror_fill){.max_bytes = f->max_bytes, .arena = f->arena, .spent = 1};
}

static size_t id_hash(uint64_t id, size_t mask)
{
    return (size_t)(id * 0x9E3779B97F4A7C15ull >> 20) & mask;
}

static size_t thread_slot(const struct ts_mirror_fill *f, uint64_t id)
{
    size_t mask = f->n_tslot - 1, h = id_hash(id, mask);
    while (f->tslot[h] && f->thr[f->tslot[h] - 1].t.id != id)
        h = (h + 1) & mask;
    return h;
}

/* Doubles tslot when one more thread would fill it past half. TS_OK or
 * TS_E_NOMEM. */
static int thread_reserve(struct ts_mirror_fill *f)
{
    if (2 * (f->n_thr + 1) <= f->n_tslot)
        return TS_OK;
    size_t n = f->n_tslot ? 2 * f->n_tslot : 1024;
    size_t *s = calloc(n, sizeof(*s));
    if (!s)
        return TS_E_NOMEM;
    f->bytes += (n - f->n_tslot) * sizeof(*s);
    free(f->tslot);
    f->tslot = s;
    f->n_tslot = n;
    for (size_t i = 0; i < f->n_thr; i++)
        s[thread_slot(f, f->thr[i].t.id)] = i + 1;
    return TS_OK;
}

static size_t text_size(const char *s)
{
    return s ? strlen(s) + 1 : 1;
}

static char *text_copy(char **p, const char *s)
{
    size_t n = text_size(s);
    char *d = memcpy(*p, s ? s : "", n);
    *p += n;
    return d;
}

/* The row comment c makes (comment_fields plus its text), in the arena. */
static Threadsync__Comment *comment_row(struct ts_mirror_fill *f, const Threadsync__Comment *c)
{
    int visible = c->status == THREADSYNC__STATUS__VISIBLE;
    const char *name = visible ? c->author_name : NULL, *body = visible ? c->body : NULL;
    Threadsync__Comment *r =
        ts_arena_alloc(&f->arena, sizeof(*r) + text_size(name) + text_size(body));
    if (!r)
        return NULL;
    threadsync__comment__init(r);
    char *p = (char *)(r + 1);
    r->id = c->id;
    r->thread_id = c->thread_id;
    r->parent_id = c->parent_id;
    r->author_name = text_copy(&p, name);
    r->body = text_copy(&p, body);
    r->created_at_ms = c->created_at_ms;
    r->edited_at_ms = c->edited_at_ms;
    r->status = c->status;
    r->version = c->version;
    return r;
}

/* Comments come in id order (the server numbers them as it commits
 * them, and events come in that order), so order stays sorted by id: a
 * new id is appended, an edit, a moderation or a repeat is found by binary
 * search. A new id below the last (not seen from any server) spends the
 * fill: the database, which takes it anywhere, is read instead. */
static int add_comment(struct ts_mirror_fill *f, const Threadsync__Comment *c)
{
    if ((c->id | c->version | c->thread_id) & TOP_BIT || !ts_digest_status_name((int)c->status))
        return TS_E_INVALID_ARGUMENT;
    size_t n = f->n_order, at = n;
    if (n && c->id <= f->order[n - 1]->id) {
        size_t lo = 0, hi = n;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (f->order[mid]->id < c->id)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (f->order[lo]->id != c->id)
            return TS_E_INVALID_ARGUMENT;
        if (c->version <= f->order[lo]->version)
            return TS_OK;
        at = lo;
    }
    Threadsync__Comment *r = comment_row(f, c);
    if (!r)
        return TS_E_NOMEM;
    if (at < n) {
        f->order[at] = r; /* the old row stays in the arena, unused */
        return TS_OK;
    }
    Threadsync__Comment **o = ts_array_grow(f->order, &f->cap_order, n, sizeof(*o), 4096);
    if (!o)
        return TS_E_NOMEM;
    f->order = o;
    f->order[f->n_order++] = r;
    return TS_OK;
}

/* *dst becomes src (NULL read as ""), copied into the arena unless equal. */
static int thread_text(struct ts_mirror_fill *f, char **dst, const char *src)
{
    src = src ? src : "";
    if (*dst && strcmp(*dst, src) == 0)
        return TS_OK;
    char *p = ts_arena_alloc(&f->arena, strlen(src) + 1);
    if (!p)
        return TS_E_NOMEM;
    *dst = text_copy(&p, src);
    return TS_OK;
}

static int add_thread(struct ts_mirror_fill *f, const Threadsync__Thread *t)
{
    if ((t->id | t->version) & TOP_BIT)
        return TS_E_INVALID_ARGUMENT;
    int err = thread_reserve(f);
    if (err != TS_OK)
        return err;
    size_t h = thread_slot(f, t->id);
    struct thr *o = f->tslot[h] ? &f->thr[f->tslot[h] - 1] : NULL;
    /* Within a batch a tie goes to the later event; across batches the
     * row stays. */
    if (o && !(t->version > o->t.version || (o->batch == f->batches && t->version == o->t.version)))
        return TS_OK;
    if (!o) {
        struct thr *a = ts_array_grow(f->thr, &f->cap_thr, f->n_thr, sizeof(*a), 64);
        if (!a)
            return TS_E_NOMEM;
        f->thr = a;
        o = &f->thr[f->n_thr++];
        memset(o, 0, sizeof(*o));
        threadsync__thread__init(&o->t);
        o->t.key = o->t.title = o->t.url = NULL;
        f->tslot[h] = f->n_thr;
    }
    o->batch = f->batches;
    o->t.id = t->id;
    o->t.created_at_ms = t->created_at_ms;
    o->t.locked = t->locked ? 1 : 0;
    o->t.comment_count = t->comment_count;
    o->t.version = t->version;
    err = thread_text(f, &o->t.key, t->key);
    if (err == TS_OK)
        err = thread_text(f, &o->t.title, t->title);
    if (err == TS_OK)
        err = thread_text(f, &o->t.url, t->url);
    return err;
}

void ts_mirror_fill_add(struct ts_mirror_fill *f, const Threadsync__Events *ev)
{
    if (f->spent)
        return;
    int err = TS_OK;
    for (size_t i = 0; i < ev->n_events && err == TS_OK; i++) {
        const Threadsync__Event *e = ev->events[i];
        if (e->thread)
            err = add_thread(f, e->thread);
        if (err == TS_OK && e->comment)
            err = add_comment(f, e->comment);
    }
    f->batches++;
    if (err == TS_OK &&
        f->arena.mapped + f->bytes + f->cap_order * sizeof(*f->order) > f->max_bytes)
        err = TS_E_TOO_LARGE;
    if (err != TS_OK)
        ts_mirror_fill_spend(f);
}

int ts_mirror_fill_build(struct ts_mirror_fill *f, const uint64_t *ids, size_t n)
{
    if (f->spent || f->t)
        return TS_E_NOT_FOUND;
    size_t *count = calloc(n + 1, sizeof(*count));
    uint32_t *where = malloc((f->n_order ? f->n_order : 1) * sizeof(*where));
    f->n = n;
    f->t = calloc(n ? n : 1, sizeof(*f->t));
    f->has = calloc(n ? n : 1, 1);
    f->by_thread = malloc((f->n_order ? f->n_order : 1) * sizeof(*f->by_thread));
    if (!count || !where || !f->t || !f->has || !f->by_thread) {
        free(count);
        free(where);
        free_build(f);
        return TS_E_NOMEM;
    }
    for (size_t k = 0; k < f->n_thr; k++) {
        size_t i = ts_array_lower_bound_u64(ids, n, f->thr[k].t.id);
        if (i < n && ids[i] == f->thr[k].t.id) {
            f->t[i].thread = f->thr[k].t;
            f->has[i] = 1;
        }
    }
    /* Comments of stored threads only, as the scan skips the others. */
    for (size_t k = 0; k < f->n_order; k++) {
        size_t i = ts_array_lower_bound_u64(ids, n, f->order[k]->thread_id);
        where[k] = UINT32_MAX;
        if (i == n || ids[i] != f->order[k]->thread_id || !f->has[i])
            continue;
        where[k] = (uint32_t)i;
        count[i + 1]++;
    }
    for (size_t i = 0; i < n; i++) /* count[i]: where thread i's comments start */
        count[i + 1] += count[i];
    for (size_t i = 0; i < n; i++) {
        f->t[i].comments = f->by_thread + count[i];
        f->t[i].n_comments = count[i + 1] - count[i];
    }
    for (size_t k = 0; k < f->n_order; k++)
        if (where[k] != UINT32_MAX)
            f->by_thread[count[where[k]]++] = f->order[k];
    /* order is in id order, and the sort by thread stable: each thread's
     * comments are in id order, as the database's ORDER BY id. */
    free(count);
    free(where);
    return TS_OK;
}

const struct ts_mirror_thread *ts_mirror_fill_thread(const struct ts_mirror_fill *f, size_t i)
{
    return i < f->n && f->has[i] ? &f->t[i] : NULL;
}

void ts_mirror_fill_free(struct ts_mirror_fill *f)
{
    if (!f)
        return;
    ts_mirror_fill_spend(f);
    free(f);
}
