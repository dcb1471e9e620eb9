/*
 * ts_mirror_fill: the threads built from the batches a first sync applied
 * are what the database holds after applying the same batches (every
 * field, and the rendered JSON and HTML byte for byte), through the rules'
 * corners: edits by version, a stale and a tied edit, moderation blanking
 * the text, a comment moving thread, a comment of a thread never stored,
 * thread rows tied within a batch and across batches, NULL text, a field
 * the database does not keep; and a fill that cannot follow the rules (a
 * new id below the last, a version of 2^63, too many bytes) refuses to
 * build, so the caller reads the database.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ts_check_main.h"
#include "ts_err.h"
#include "ts_mirror_db.h"
#include "ts_mirror_fill.h"
#include "ts_mirror_render.h"
#include "ts_testnode.h"

static char tmpdir[64];
static char mdir[128];

static void setup(void)
{
    strcpy(tmpdir, "/tmp/ts_mirror_fill_test.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    snprintf(mdir, sizeof(mdir), "%s/m", tmpdir);
}

static void teardown(void)
{
    ts_test_rmtree(tmpdir);
}

/* ---- a batch built event by event --------------------------------------- */

#define MAXEV 8
struct batch {
    Threadsync__Events ev;
    Threadsync__Event e[MAXEV], *pe[MAXEV];
    Threadsync__Thread t[MAXEV];
    Threadsync__Comment c[MAXEV];
};

static void batch_init(struct batch *b, uint64_t last_seq)
{
    memset(b, 0, sizeof(*b));
    threadsync__events__init(&b->ev);
    b->ev.events = b->pe;
    b->ev.last_seq = last_seq;
}

/* Adds an event with thread (id, version, title; NULL: none) and a comment
 * (id, 0: none) of thread cthread, with version, status and body. */
static void ev_add(struct batch *b, uint64_t tid, uint64_t tversion, const char *title,
                   uint64_t cid, uint64_t cthread, uint64_t cversion, Threadsync__Status status,
                   const char *body)
{
    size_t i = b->ev.n_events++;
    ck_assert_uint_lt(i, MAXEV);
    threadsync__event__init(&b->e[i]);
    b->e[i].seq = b->ev.last_seq - MAXEV + i;
    b->pe[i] = &b->e[i];
    if (tid) {
        static const char *const keys[] = {"", "site/one", "site/two", "site/three", "site/four"};
        Threadsync__Thread *t = &b->t[i];
        threadsync__thread__init(t);
        t->id = tid;
        t->key = (char *)keys[tid];
        t->title = (char *)title;
        t->url = tid == 2 ? NULL : "https://example.org/t";
        t->created_at_ms = 1700000000000 + (int64_t)tid;
        t->locked = tid == 3;
        t->premoderated = 1; /* not a column: must come back 0 */
        t->comment_count = (uint32_t)tversion;
        t->version = tversion;
        b->e[i].thread = t;
    }
    if (cid) {
        Threadsync__Comment *c = &b->c[i];
        threadsync__comment__init(c);
        c->id = cid;
        c->thread_id = cthread;
        c->parent_id = cid > 1 ? cid - 1 : 0;
        c->author_name = "Ann";
        c->body = (char *)body;
        c->author_email = "ann@example.org"; /* none of these three is stored */
        c->moderated_by = "mod";
        c->reader_key = "rk";
        c->created_at_ms = 1700000000000 + (int64_t)cid;
        c->edited_at_ms = cversion > 1 ? 1700000009000 + (int64_t)cversion : 0;
        c->status = status;
        c->version = cversion;
        b->e[i].comment = c;
    }
}

#define V THREADSYNC__STATUS__VISIBLE

/* The three batches of the test, applied to db (in one group when
 * grouped) and added to f. */
static void feed(struct ts_mirror_db *db, struct ts_mirror_fill *f, int grouped)
{
    struct batch b[3];
    batch_init(&b[0], 100);
    ev_add(&b[0], 1, 1, "One", 1, 1, 1, V, "first");
    ev_add(&b[0], 1, 2, "One", 2, 1, 1, V, "second");
    ev_add(&b[0], 2, 1, NULL, 3, 2, 1, V, "third");
    ev_add(&b[0], 0, 0, NULL, 4, 9, 1, V, "thread 9 is never stored");
    ev_add(&b[0], 3, 1, "Three", 5, 3, 1, V, "fifth");
    /* a tie within a batch: the later event's row */
    ev_add(&b[0], 3, 2, "Three, early", 0, 0, 0, V, NULL);
    ev_add(&b[0], 3, 2, "Three, late", 0, 0, 0, V, NULL);
    batch_init(&b[1], 200);
    ev_add(&b[1], 1, 3, "One, renamed", 2, 1, 3, V, "second, edited");
    ev_add(&b[1], 0, 0, NULL, 2, 1, 2, V, "a stale edit");
    ev_add(&b[1], 0, 0, NULL, 1, 1, 1, V, "a tie: the first row stays");
    ev_add(&b[1], 0, 0, NULL, 3, 2, 2, THREADSYNC__STATUS__HIDDEN, "hidden");
    /* a tie across batches: the row stays */
    ev_add(&b[1], 3, 2, "Three, again", 6, 3, 1, THREADSYNC__STATUS__PENDING, "pending");
    ev_add(&b[1], 4, 1, "Four", 7, 4, 1, V, "seventh");
    batch_init(&b[2], 300);
    ev_add(&b[2], 0, 0, NULL, 5, 4, 2, V, "fifth, moved to four");
    ev_add(&b[2], 0, 0, NULL, 7, 4, 2, THREADSYNC__STATUS__DELETED, "deleted");
    ev_add(&b[2], 2, 2, "Two", 8, 2, 1, V, "eighth");
    if (grouped)
        ck_assert_int_eq(ts_mirror_db_group_begin(db), TS_OK);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(ts_mirror_db_apply_events(db, &b[i].ev, NULL), TS_OK);
        ts_mirror_fill_add(f, &b[i].ev);
    }
    if (grouped)
        ck_assert_int_eq(ts_mirror_db_group_end(db), TS_OK);
}

/* The JSON and the HTML of a and b, byte for byte. */
static void assert_same_render(const struct ts_mirror_thread *a, const struct ts_mirror_thread *b)
{
    int (*const render[])(const Threadsync__Thread *, const Threadsync__Comment *const *, size_t,
                          char **, size_t *) = {ts_mirror_render_json, ts_mirror_render_html};
    const Threadsync__Comment *const *ca = (const Threadsync__Comment *const *)a->comments;
    const Threadsync__Comment *const *cb = (const Threadsync__Comment *const *)b->comments;
    for (size_t r = 0; r < 2; r++) {
        char *x, *y;
        size_t nx, ny;
        ck_assert_int_eq(render[r](&a->thread, ca, a->n_comments, &x, &nx), TS_OK);
        ck_assert_int_eq(render[r](&b->thread, cb, b->n_comments, &y, &ny), TS_OK);
        ck_assert_uint_eq(nx, ny);
        ck_assert(memcmp(x, y, nx) == 0);
        free(x);
        free(y);
    }
}

static void assert_same(const struct ts_mirror_thread *a, const struct ts_mirror_thread *b)
{
    const Threadsync__Thread *s = &a->thread, *t = &b->thread;
    ck_assert_uint_eq(s->id, t->id);
    ck_assert_str_eq(s->key, t->key);
    ck_assert_str_eq(s->title, t->title);
    ck_assert_str_eq(s->url, t->url);
    ck_assert_int_eq(s->created_at_ms, t->created_at_ms);
    ck_assert_int_eq(s->locked, t->locked);
    ck_assert_int_eq(s->premoderated, t->premoderated);
    ck_assert_uint_eq(s->comment_count, t->comment_count);
    ck_assert_uint_eq(s->version, t->version);
    ck_assert_uint_eq(a->n_comments, b->n_comments);
    for (size_t k = 0; k < a->n_comments; k++) {
        const Threadsync__Comment *c = a->comments[k], *d = b->comments[k];
        ck_assert_uint_eq(c->id, d->id);
        ck_assert_uint_eq(c->thread_id, d->thread_id);
        ck_assert_uint_eq(c->parent_id, d->parent_id);
        ck_assert_str_eq(c->author_name, d->author_name);
        ck_assert_str_eq(c->body, d->body);
        ck_assert_str_eq(c->author_email, d->author_email);
        ck_assert_str_eq(c->moderated_by, d->moderated_by);
        ck_assert_str_eq(c->reader_key, d->reader_key);
        ck_assert_int_eq(c->created_at_ms, d->created_at_ms);
        ck_assert_int_eq(c->edited_at_ms, d->edited_at_ms);
        ck_assert_int_eq(c->status, d->status);
        ck_assert_uint_eq(c->version, d->version);
    }
    assert_same_render(a, b);
}

/* ---- tests ------------------------------------------------------------------ */

START_TEST(test_build_is_what_the_database_holds)
{
    /* _i: batches in one group (the writer's way) or committed one by one */
    struct ts_mirror_db *db;
    struct ts_mirror_fill *f;
    ck_assert_int_eq(ts_mirror_db_open(mdir, &db), TS_OK);
    ck_assert_int_eq(ts_mirror_fill_new(1u << 30, &f), TS_OK);
    int empty = 0;
    ck_assert_int_eq(ts_mirror_db_is_empty(db, &empty), TS_OK);
    ck_assert_int_eq(empty, 1);
    feed(db, f, _i);
    ck_assert_int_eq(ts_mirror_db_is_empty(db, &empty), TS_OK);
    ck_assert_int_eq(empty, 0);
    static const uint64_t ids[] = {1, 2, 3, 4, 5, 9};
    size_t n = sizeof(ids) / sizeof(ids[0]);
    ck_assert_int_eq(ts_mirror_fill_build(f, ids, n), TS_OK);
    for (size_t i = 0; i < n; i++) {
        struct ts_mirror_thread *mt = NULL;
        int rc = ts_mirror_db_thread_by_id(db, ids[i], &mt);
        const struct ts_mirror_thread *ft = ts_mirror_fill_thread(f, i);
        if (rc == TS_E_NOT_FOUND) {
            ck_assert_ptr_null(ft);
            continue;
        }
        ck_assert_int_eq(rc, TS_OK);
        ck_assert_ptr_nonnull(ft);
        assert_same(mt, ft);
        ts_mirror_thread_free(mt);
    }
    /* the corners were there: thread 3's row is the later tie's, thread
     * 4 has comment 5 (moved) and a deleted 7, threads 5 and 9 none */
    ck_assert_str_eq(ts_mirror_fill_thread(f, 2)->thread.title, "Three, late");
    ck_assert_uint_eq(ts_mirror_fill_thread(f, 3)->n_comments, 2);
    ck_assert_str_eq(ts_mirror_fill_thread(f, 3)->comments[1]->body, "");
    ck_assert_ptr_null(ts_mirror_fill_thread(f, 4));
    ck_assert_ptr_null(ts_mirror_fill_thread(f, 5));
    /* once */
    ck_assert_int_eq(ts_mirror_fill_build(f, ids, n), TS_E_NOT_FOUND);
    ts_mirror_fill_free(f);
    ts_mirror_db_close(db);
}
END_TEST

START_TEST(test_refuses_what_it_cannot_follow)
{
    /* _i: 0, a new comment id below the last; 1, a version of 2^63; 2,
     * more rows than the bound; 3, spent by the caller */
    struct ts_mirror_fill *f;
    ck_assert_int_eq(ts_mirror_fill_new(_i == 2 ? 1024 : 1u << 30, &f), TS_OK);
    struct batch b;
    batch_init(&b, 100);
    ev_add(&b, 1, 1, "One", 5, 1, 1, V, "fifth");
    ev_add(&b, 1, 2, "One", 6, 1, _i == 1 ? UINT64_C(1) << 63 : 1, V, "sixth");
    if (_i == 0)
        ev_add(&b, 1, 3, "One", 4, 1, 1, V, "fourth, late");
    ts_mirror_fill_add(f, &b.ev);
    if (_i == 3)
        ts_mirror_fill_spend(f);
    static const uint64_t ids[] = {1};
    ck_assert_int_eq(ts_mirror_fill_build(f, ids, 1), TS_E_NOT_FOUND);
    ck_assert_ptr_null(ts_mirror_fill_thread(f, 0));
    ts_mirror_fill_free(f);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ts_mirror_fill");
    TCase *tc = tcase_create("fill");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_loop_test(tc, test_build_is_what_the_database_holds, 0, 2);
    tcase_add_loop_test(tc, test_refuses_what_it_cannot_follow, 0, 4);
    suite_add_tcase(s, tc);
    return ts_check_run(s);
}
