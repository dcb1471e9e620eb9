/*
 * ts_mirror_sync: the mirror's sync policy without a network. Batches and
 * snapshot pieces are fed as the subscription would; each test asserts
 * what the database (through a second connection where "committed" matters)
 * and the rendered files hold: a first sync renders nothing until caught
 * up and then every thread once, a live batch is committed and rendered
 * before the call returns, a catching-up group is committed by its timer, a
 * snapshot ends rendered at its seq, and a mirror stopped between a commit
 * and its render re-renders at its next start.
 */
#include <check.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <uv.h>

#include "ts_check_main.h"
#include "ts_err.h"
#include "ts_file.h"
#include "ts_mirror_db.h"
#include "ts_mirror_render.h"
#include "ts_mirror_sync.h"
#include "ts_testnode.h"

static char tmpdir[64];
static char mdir[128];

static void setup(void)
{
    strcpy(tmpdir, "/tmp/ts_mirror_sync_test.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    snprintf(mdir, sizeof(mdir), "%s/m", tmpdir);
}

static void teardown(void)
{
    ts_test_rmtree(tmpdir);
}

/* ---- batches ------------------------------------------------------------- */

#define PER 3 /* events per batch */
static const char *const keys[] = {"alpha", "beta", "gamma"};

/* Batch k (1-based) adds comments 10k+1 .. 10k+PER to thread t (0..2, id
 * t + 1, key keys[t]); seqs equal the comment ids, last_seq is 10k + PER. */
struct batch {
    Threadsync__Events ev;
    Threadsync__Event e[PER], *pe[PER];
    Threadsync__Thread t;
    Threadsync__Comment c[PER];
    char body[PER][32];
};

static void batch_make(struct batch *b, unsigned k, unsigned t, int caught_up)
{
    threadsync__events__init(&b->ev);
    b->ev.events = b->pe;
    b->ev.n_events = PER;
    b->ev.last_seq = 10u * k + PER;
    b->ev.caught_up = caught_up;
    threadsync__thread__init(&b->t);
    b->t.id = t + 1;
    b->t.key = (char *)keys[t];
    b->t.title = "title";
    b->t.url = "https://example.org/";
    b->t.comment_count = 10u * k + PER;
    b->t.version = 10u * k + PER;
    for (unsigned i = 0; i < PER; i++) {
        uint64_t id = 10u * k + i + 1;
        threadsync__comment__init(&b->c[i]);
        b->c[i].id = id;
        b->c[i].thread_id = t + 1;
        b->c[i].author_name = "Ann";
        snprintf(b->body[i], sizeof(b->body[i]), "body-%u", (unsigned)id);
        b->c[i].body = b->body[i];
        b->c[i].created_at_ms = 1700000000000 + (int64_t)id;
        b->c[i].status = THREADSYNC__STATUS__VISIBLE;
        b->c[i].version = 1;
        threadsync__event__init(&b->e[i]);
        b->e[i].seq = id;
        b->e[i].thread = &b->t;
        b->e[i].comment = &b->c[i];
        b->pe[i] = &b->e[i];
    }
}

/* ---- what the mirror holds ---------------------------------------------- */

/* An integer as another connection sees the committed file. */
static int64_t committed_int(const char *sql)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/mirror.db", mdir);
    sqlite3 *s;
    ck_assert_int_eq(sqlite3_open_v2(path, &s, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st;
    ck_assert_int_eq(sqlite3_prepare_v2(s, sql, -1, &st, NULL), SQLITE_OK);
    int64_t v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_finalize(st);
    sqlite3_close(s);
    return v;
}

static int64_t committed_cursor(void)
{
    return committed_int("SELECT value FROM meta WHERE key = 'last_seq'");
}

/* The thread's rendered JSON (malloc'd), or NULL when there is none. */
static char *thread_json(unsigned t)
{
    char name[TS_MIRROR_NAME_SIZE], path[512];
    ck_assert_int_eq(ts_mirror_render_file_name(keys[t], name), TS_OK);
    snprintf(path, sizeof(path), "%s/threads/%s.json", mdir, name);
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char *buf = calloc(1, 1 << 16);
    ck_assert_ptr_nonnull(buf);
    size_t n = fread(buf, 1, (1 << 16) - 1, f);
    fclose(f);
    ck_assert_uint_gt(n, 0);
    return buf;
}

static int has_json(unsigned t)
{
    char *j = thread_json(t);
    free(j);
    return j != NULL;
}

static int json_has(unsigned t, const char *text)
{
    char *j = thread_json(t);
    int found = j && strstr(j, text) != NULL;
    free(j);
    return found;
}

static char *setting(struct ts_mirror_sync *s, const char *name)
{
    char *v = NULL;
    ck_assert_int_eq(ts_mirror_db_setting_get(ts_mirror_sync_db(s), name, &v), TS_OK);
    return v;
}

/* ---- the sync under test ---------------------------------------------------- */

struct flushes {
    unsigned calls;
    size_t last_n;
};

static void on_flushed(void *arg, const struct ts_mirror_touched *ids)
{
    struct flushes *f = arg;
    f->calls++;
    f->last_n = ids->n;
}

static void on_failed(void *arg, int err)
{
    (void)arg;
    ck_abort_msg("a timed group commit failed: %s", ts_err_name(err));
}

struct fixture {
    uv_loop_t loop;
    struct flushes flushes;
    struct ts_mirror_sync *s;
};

/* Opens the mirror in mdir on a loop of its own and begins a sync from its
 * cursor (from scratch at 0); returns the cursor. */
static uint64_t fx_open(struct fixture *fx, int writer)
{
    memset(fx, 0, sizeof(*fx));
    ck_assert_int_eq(uv_loop_init(&fx->loop), 0);
    struct ts_mirror_sync_cbs cbs = {&fx->flushes, on_failed, on_flushed};
    ck_assert_int_eq(ts_mirror_sync_open(mdir, &cbs, &fx->s), TS_OK);
    uint64_t cursor = 0;
    ck_assert_int_eq(ts_mirror_db_cursor(ts_mirror_sync_db(fx->s), &cursor), TS_OK);
    ck_assert_int_eq(ts_mirror_sync_begin(fx->s, cursor, writer), TS_OK);
    ts_mirror_sync_attach(fx->s, &fx->loop);
    return cursor;
}

/* Stops without the drain and flush a CLI stop does: as if killed. */
static void fx_abandon(struct fixture *fx)
{
    ts_mirror_sync_stop(fx->s);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    ts_mirror_sync_free(fx->s);
    ck_assert_int_eq(uv_loop_close(&fx->loop), 0);
}

/* Stops as the CLI does: drain, flush, stop. */
static void fx_close(struct fixture *fx)
{
    ck_assert_int_eq(ts_mirror_sync_drain(fx->s), TS_OK);
    ck_assert_int_eq(ts_mirror_sync_flush(fx->s), TS_OK);
    fx_abandon(fx);
}

static void feed(struct fixture *fx, unsigned k, unsigned t, int caught_up)
{
    struct batch b;
    batch_make(&b, k, t, caught_up);
    ck_assert_int_eq(ts_mirror_sync_apply(fx->s, &b.ev), TS_OK);
    ck_assert_int_eq(ts_mirror_sync_applied(fx->s, &b.ev), TS_OK);
}

static void on_tick(uv_timer_t *t)
{
    (void)t;
}

/* Runs the loop until the committed cursor reaches want, for at most 20 s
 * (the group timer fires after 250 ms). */
static void run_until_committed(struct fixture *fx, int64_t want)
{
    uv_timer_t tick;
    uv_timer_init(&fx->loop, &tick);
    uv_timer_start(&tick, on_tick, 10, 10);
    uint64_t deadline = uv_hrtime() + 20ull * 1000 * 1000 * 1000;
    while (committed_cursor() < want && uv_hrtime() < deadline)
        uv_run(&fx->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(&fx->loop, UV_RUN_NOWAIT);
    ck_assert_int_eq(committed_cursor(), want);
}

/* A mirror at cursor 23 holding threads alpha (batch 1) and beta (batch 2),
 * rendered. */
static void make_synced_mirror(void)
{
    struct fixture fx;
    fx_open(&fx, 1);
    feed(&fx, 1, 0, 0);
    feed(&fx, 2, 1, 1);
    fx_close(&fx);
    ck_assert_int_eq(committed_cursor(), 23);
    ck_assert(has_json(0) && has_json(1));
}

/* ---- tests ------------------------------------------------------------------ */

START_TEST(test_first_sync_renders_once_caught_up)
{
    struct fixture fx;
    ck_assert_uint_eq(fx_open(&fx, 1), 0);
    feed(&fx, 1, 0, 0);
    feed(&fx, 2, 1, 0);
    feed(&fx, 3, 2, 0);
    /* From scratch: the writer holds the batches, nothing is rendered. */
    ck_assert_uint_eq(fx.flushes.calls, 0);
    ck_assert(!has_json(0) && !has_json(1) && !has_json(2));
    ck_assert_uint_eq(ts_mirror_sync_cursor(fx.s), 33);

    feed(&fx, 4, 0, 1); /* caught up: every batch committed, each thread rendered once */
    ck_assert_int_eq(committed_cursor(), 43);
    ck_assert_int_eq(committed_int("SELECT count(*) FROM comments"), INT64_C(4) * PER);
    ck_assert_uint_eq(fx.flushes.calls, 1);
    ck_assert_uint_eq(fx.flushes.last_n, 3);
    ck_assert(json_has(0, "body-41") && json_has(0, "body-11"));
    ck_assert(json_has(1, "body-21") && json_has(2, "body-31"));
    char *rs = setting(fx.s, "rendered_seq");
    ck_assert_str_eq(rs, "43");
    free(rs);
    const struct ts_mirror_sync_stats *st = ts_mirror_sync_stats(fx.s);
    ck_assert_uint_eq(st->events, UINT64_C(4) * PER);
    ck_assert_uint_eq(st->rendered, 3);
    fx_close(&fx);
}
END_TEST

START_TEST(test_live_batch_committed_and_rendered)
{
    make_synced_mirror();
    struct fixture fx;
    ck_assert_uint_eq(fx_open(&fx, 1), 23);
    struct batch a, b;
    batch_make(&a, 3, 2, 0); /* catching up: opens a group */
    ck_assert_int_eq(ts_mirror_sync_apply(fx.s, &a.ev), TS_OK);
    ck_assert_int_eq(committed_cursor(), 23);
    batch_make(&b, 4, 1, 1); /* the caught-up batch ends it */
    ck_assert_int_eq(ts_mirror_sync_apply(fx.s, &b.ev), TS_OK);
    ck_assert_int_eq(committed_cursor(), 43); /* before the call that delivered it returned */
    ck_assert(!json_has(1, "body-41"));
    ck_assert_int_eq(ts_mirror_sync_applied(fx.s, &b.ev), TS_OK);
    ck_assert_uint_eq(fx.flushes.calls, 1);
    ck_assert_uint_eq(fx.flushes.last_n, 2);
    ck_assert(json_has(1, "body-41") && json_has(1, "body-21") && json_has(2, "body-31"));
    char *rs = setting(fx.s, "rendered_seq");
    ck_assert_str_eq(rs, "43");
    free(rs);
    fx_close(&fx);
}
END_TEST

/* Feeds catching-up batches to thread gamma, running the loop between
 * them, until a flush happened or (when want_flush is 0) until 2.5 render
 * periods (RENDER_EVERY_NS, 1 s) went by; returns the flushes seen. There
 * is no event to wait for in the second case: the policy is about time
 * passing, so the test lets it pass, boundedly. */
static unsigned feed_catching_up(struct fixture *fx, int want_flush)
{
    uv_timer_t tick;
    uv_timer_init(&fx->loop, &tick);
    uv_timer_start(&tick, on_tick, 10, 10);
    uint64_t t0 = uv_hrtime();
    uint64_t bound = (want_flush ? 20000ull : 2500ull) * 1000 * 1000;
    for (unsigned k = 10; uv_hrtime() - t0 < bound && !(want_flush && fx->flushes.calls); k++) {
        feed(fx, k, 2, 0);
        uv_run(&fx->loop, UV_RUN_ONCE);
    }
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(&fx->loop, UV_RUN_NOWAIT);
    return fx->flushes.calls;
}

START_TEST(test_catching_up_renders_unless_from_scratch)
{
    make_synced_mirror();
    struct fixture fx;
    ck_assert_uint_eq(fx_open(&fx, 0), 23);
    ck_assert_uint_ge(feed_catching_up(&fx, 1), 1);
    ck_assert(json_has(2, "body-101"));
    fx_close(&fx);

    /* The same stream from cursor 0 (no writer, so the loop's own policy
     * decides) renders nothing until caught up. */
    teardown();
    setup();
    ck_assert_uint_eq(fx_open(&fx, 0), 0);
    ck_assert_uint_eq(feed_catching_up(&fx, 0), 0);
    ck_assert(!has_json(2));
    fx_close(&fx);
    ck_assert(json_has(2, "body-101"));
}
END_TEST

START_TEST(test_catching_up_group_committed_by_timer)
{
    make_synced_mirror();
    struct fixture fx;
    ck_assert_uint_eq(fx_open(&fx, 1), 23);
    struct batch b;
    batch_make(&b, 3, 2, 0);
    ck_assert_int_eq(ts_mirror_sync_apply(fx.s, &b.ev), TS_OK);
    /* In the open group: not committed yet, and no writer (not a first sync). */
    ck_assert_int_eq(committed_cursor(), 23);
    ck_assert_uint_eq(ts_mirror_sync_cursor(fx.s), 33);
    run_until_committed(&fx, 33);
    ck_assert_int_eq(committed_int("SELECT count(*) FROM comments WHERE thread_id = 3"), PER);
    fx_close(&fx);
    ck_assert(json_has(2, "body-31")); /* the stop's flush */
}
END_TEST

START_TEST(test_snapshot_rendered_at_its_seq)
{
    make_synced_mirror();
    struct fixture fx;
    ck_assert_uint_eq(fx_open(&fx, 1), 23);
    ck_assert_int_eq(ts_mirror_sync_snapshot_begin(fx.s, 100), TS_OK);
    Threadsync__Thread t = THREADSYNC__THREAD__INIT;
    t.id = 1;
    t.key = (char *)keys[0];
    t.title = "retitled";
    t.url = "https://example.org/";
    t.comment_count = 1;
    t.version = 90;
    Threadsync__Comment c = THREADSYNC__COMMENT__INIT;
    c.id = 95;
    c.thread_id = 1;
    c.author_name = "Bo";
    c.body = "from-the-snapshot";
    c.status = THREADSYNC__STATUS__VISIBLE;
    c.version = 1;
    Threadsync__Thread *ths[] = {&t};
    Threadsync__Comment *cms[] = {&c};
    Threadsync__SnapshotChunk ch = THREADSYNC__SNAPSHOT_CHUNK__INIT;
    ch.threads = ths;
    ch.n_threads = 1;
    ch.comments = cms;
    ch.n_comments = 1;
    ck_assert_int_eq(ts_mirror_sync_snapshot_chunk(fx.s, &ch), TS_OK);
    ck_assert_int_eq(committed_cursor(), 23); /* the cursor moves at end */
    ck_assert(!json_has(0, "retitled"));
    ck_assert_int_eq(ts_mirror_sync_snapshot_end(fx.s, 100), TS_OK);
    ck_assert_int_eq(committed_cursor(), 100);
    ck_assert_uint_eq(fx.flushes.calls, 1);
    ck_assert(json_has(0, "retitled") && json_has(0, "from-the-snapshot"));
    const struct ts_mirror_sync_stats *st = ts_mirror_sync_stats(fx.s);
    ck_assert_uint_eq(st->snapshots, 1);
    ck_assert_uint_eq(st->snap_threads, 1);
    ck_assert_uint_eq(st->snap_comments, 1);
    char *rs = setting(fx.s, "rendered_seq");
    ck_assert_str_eq(rs, "100");
    free(rs);
    fx_close(&fx);
}
END_TEST

START_TEST(test_restart_renders_what_was_behind)
{
    /* A first sync without a writer, stopped after its group committed and
     * before any render. */
    struct fixture fx;
    fx_open(&fx, 0);
    feed(&fx, 1, 0, 0);
    feed(&fx, 2, 1, 0);
    run_until_committed(&fx, 23);
    ck_assert_uint_eq(fx.flushes.calls, 0);
    fx_abandon(&fx);
    ck_assert(!has_json(0) && !has_json(1));

    ck_assert_int_eq(uv_loop_init(&fx.loop), 0);
    struct ts_mirror_sync_cbs cbs = {&fx.flushes, on_failed, on_flushed};
    ck_assert_int_eq(ts_mirror_sync_open(mdir, &cbs, &fx.s), TS_OK);
    enum ts_mirror_sync_stale why;
    uint64_t rendered_seq = 99;
    size_t n = 0;
    ck_assert_int_eq(ts_mirror_sync_recover(fx.s, 23, &why, &rendered_seq, &n), TS_OK);
    ck_assert_int_eq(why, TS_MIRROR_SYNC_BEHIND);
    ck_assert_uint_eq(rendered_seq, 0);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(ts_mirror_sync_flush(fx.s), TS_OK);
    ck_assert(json_has(0, "body-11") && json_has(1, "body-21"));
    char *rs = setting(fx.s, "rendered_seq");
    ck_assert_str_eq(rs, "23");
    free(rs);
    ts_mirror_sync_free(fx.s);
    ck_assert_int_eq(uv_loop_close(&fx.loop), 0);

    /* Once rendered, a start finds nothing to do. */
    ck_assert_int_eq(ts_mirror_sync_open(mdir, &cbs, &fx.s), TS_OK);
    ck_assert_int_eq(ts_mirror_sync_recover(fx.s, 23, &why, &rendered_seq, &n), TS_OK);
    ck_assert_int_eq(why, TS_MIRROR_SYNC_FRESH);
    ts_mirror_sync_free(fx.s);
}
END_TEST

START_TEST(test_restart_after_unsynced_flush)
{
    make_synced_mirror();
    struct ts_mirror_db *db;
    ck_assert_int_eq(ts_mirror_db_open(mdir, &db), TS_OK);
    ck_assert_int_eq(ts_mirror_db_setting_set(db, "files_unsynced", "1"), TS_OK);
    ts_mirror_db_close(db);

    struct ts_mirror_sync *s;
    struct flushes f = {0};
    struct ts_mirror_sync_cbs cbs = {&f, on_failed, on_flushed};
    ck_assert_int_eq(ts_mirror_sync_open(mdir, &cbs, &s), TS_OK);
    enum ts_mirror_sync_stale why;
    uint64_t rendered_seq = 0;
    size_t n = 0;
    ck_assert_int_eq(ts_mirror_sync_recover(s, 23, &why, &rendered_seq, &n), TS_OK);
    ck_assert_int_eq(why, TS_MIRROR_SYNC_UNSYNCED);
    ck_assert_uint_eq(rendered_seq, 23);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(ts_mirror_sync_flush(s), TS_OK);
    ck_assert_uint_eq(f.calls, 1);
    ck_assert_uint_eq(f.last_n, 2);
    ts_mirror_sync_free(s);
}
END_TEST

static void assert_file_is(const char *name, const char *ext, const char *want, size_t want_len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/threads/%s%s", mdir, name, ext);
    uint8_t *got;
    size_t len;
    ck_assert_int_eq(ts_file_read_all(path, 1u << 24, &got, &len), TS_OK);
    ck_assert_uint_eq(len, want_len);
    ck_assert(memcmp(got, want, len) == 0);
    free(got);
}

#define MANY 20 /* threads: more than a big flush needs (RENDER_PARALLEL_MIN) */

START_TEST(test_first_sync_big_flush_scanned)
{
    /* A first sync of MANY threads renders them all in one big flush that
     * reads them in one pass over comments (render_scanned) and builds
     * the index meanwhile: each file must be byte for byte what a render
     * from ts_mirror_db_thread_by_id makes, and the mirror must end with
     * its index, its cursor rendered and its files synced. */
    /* _i: 0, built from the rows the writer kept (ts_mirror_fill); with
     * none kept, read back in 1, one pass; 2, a pass per few kilobytes of
     * the file, i.e. one per thread or so; 3, a snapshot in the middle,
     * applied outside the writer: nothing kept is used, one pass. */
    uint64_t scan_bytes = ts__mirror_sync_scan_bytes, fill_bytes = ts__mirror_sync_fill_bytes;
    if (_i == 1 || _i == 2)
        ts__mirror_sync_fill_bytes = 0;
    if (_i == 2)
        ts__mirror_sync_scan_bytes = 4096;
    struct fixture fx;
    ck_assert_uint_eq(fx_open(&fx, 1), 0);
    char key[MANY][16];
    for (unsigned k = 1; k <= 2 * MANY; k++) {
        struct batch b;
        unsigned t = (k - 1) % MANY;
        batch_make(&b, k, 0, k == 2 * MANY);
        snprintf(key[t], sizeof(key[t]), "many/%02u", t);
        b.t.id = 100 + t;
        b.t.key = key[t];
        for (unsigned i = 0; i < PER; i++) {
            b.c[i].thread_id = b.t.id;
            b.c[i].parent_id = i ? b.c[i - 1].id : 0;
        }
        if (k == MANY + 1)
            b.c[1].status = THREADSYNC__STATUS__DELETED;
        if (k == MANY + 1 && _i == 3) {
            ck_assert_int_eq(ts_mirror_sync_snapshot_begin(fx.s, 10u * MANY + PER), TS_OK);
            Threadsync__Thread st = b.t, *sts[] = {&st};
            st.title = "from the snapshot";
            st.version = 10u * MANY + PER;
            Threadsync__SnapshotChunk ch = THREADSYNC__SNAPSHOT_CHUNK__INIT;
            ch.threads = sts;
            ch.n_threads = 1;
            ck_assert_int_eq(ts_mirror_sync_snapshot_chunk(fx.s, &ch), TS_OK);
            ck_assert_int_eq(ts_mirror_sync_snapshot_end(fx.s, 10u * MANY + PER), TS_OK);
        }
        ck_assert_int_eq(ts_mirror_sync_apply(fx.s, &b.ev), TS_OK);
        ck_assert_int_eq(ts_mirror_sync_applied(fx.s, &b.ev), TS_OK);
    }
    ck_assert_uint_eq(fx.flushes.calls, 1);
    ck_assert_uint_eq(fx.flushes.last_n, MANY);
    ck_assert_uint_eq(ts_mirror_sync_stats(fx.s)->rendered, MANY);
    ck_assert_uint_eq(ts_mirror_sync_stats(fx.s)->fill_built, _i == 0);
    ck_assert_uint_eq(ts_mirror_sync_stats(fx.s)->snapshots, _i == 3);
    ck_assert_int_eq(committed_int("SELECT count(*) FROM sqlite_master WHERE type = 'index' "
                                   "AND name = 'comments_thread'"),
                     1);
    /* The fill, never checkpointed while it ran, was copied into the
     * file by the index thread (before any close could: the last one
     * checkpoints too). */
    char path[256];
    snprintf(path, sizeof(path), "%s/mirror.db", mdir);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    int64_t pages = committed_int("SELECT page_count * page_size FROM pragma_page_count(), "
                                  "pragma_page_size()");
    ck_assert_int_gt(pages, 0);
    ck_assert_int_ge(2 * (int64_t)st.st_size, pages);
    char *v = setting(fx.s, "files_unsynced");
    ck_assert_str_eq(v, "0");
    free(v);
    v = setting(fx.s, "rendered_seq");
    ck_assert_str_eq(v, "403");
    free(v);
    fx_close(&fx);

    struct ts_mirror_db *db;
    ck_assert_int_eq(ts_mirror_db_open(mdir, &db), TS_OK);
    for (unsigned t = 0; t < MANY; t++) {
        struct ts_mirror_thread *mt;
        ck_assert_int_eq(ts_mirror_db_thread_by_id(db, 100 + t, &mt), TS_OK);
        ck_assert_uint_eq(mt->n_comments, UINT64_C(2) * PER);
        const Threadsync__Comment *const *c = (const Threadsync__Comment *const *)mt->comments;
        char name[TS_MIRROR_NAME_SIZE], *text;
        size_t len;
        ck_assert_int_eq(ts_mirror_render_file_name(key[t], name), TS_OK);
        ck_assert_int_eq(ts_mirror_render_json(&mt->thread, c, mt->n_comments, &text, &len), TS_OK);
        assert_file_is(name, ".json", text, len);
        free(text);
        ck_assert_int_eq(ts_mirror_render_html(&mt->thread, c, mt->n_comments, &text, &len), TS_OK);
        assert_file_is(name, ".html", text, len);
        free(text);
        ts_mirror_thread_free(mt);
    }
    ts_mirror_db_close(db);
    ts__mirror_sync_scan_bytes = scan_bytes;
    ts__mirror_sync_fill_bytes = fill_bytes;
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ts_mirror_sync");
    TCase *tc = tcase_create("sync");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_first_sync_renders_once_caught_up);
    tcase_add_loop_test(tc, test_first_sync_big_flush_scanned, 0, 4);
    tcase_add_test(tc, test_live_batch_committed_and_rendered);
    tcase_add_test(tc, test_catching_up_group_committed_by_timer);
    tcase_add_test(tc, test_catching_up_renders_unless_from_scratch);
    tcase_add_test(tc, test_snapshot_rendered_at_its_seq);
    tcase_add_test(tc, test_restart_renders_what_was_behind);
    tcase_add_test(tc, test_restart_after_unsynced_flush);
    suite_add_tcase(s, tc);
    return ts_check_run(s);
}
