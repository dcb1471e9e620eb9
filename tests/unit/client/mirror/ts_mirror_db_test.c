/*
 * ts_mirror_db: upsert by version, idempotent batches, the cursor moving in
 * the same transaction as the data (forced failure and a real crash in a
 * child process mid-transaction), groups of batches in one transaction
 * (a crash inside or between them, a failure, other writes ending them),
 * a thread's versions within one batch and across a group's batches, a bulk
 * fill without the thread index (and a crash inside one), snapshots, reads,
 * the digest agreeing
 * across different batchings of the same content, and replaced text gone
 * from the file's bytes; a new file's page size and an old file's kept,
 * and a fill's WAL not checkpointed until the fill is durable.
 */
#include <check.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ts_check_main.h"
#include "ts_digest.h"
#include "ts_err.h"
#include "ts_mirror_db.h"
#include "ts_testnode.h"

/* ---- fixtures ---- */

static char tmpdir[64];
static char mdir[128];

static void setup(void)
{
    strcpy(tmpdir, "/tmp/ts_mirror_db_test.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    /* The mirror dir does not exist yet: open must create it. */
    snprintf(mdir, sizeof(mdir), "%s/m", tmpdir);
}

static void teardown(void)
{
    ts_test_rmtree(tmpdir);
}

static Threadsync__Thread mk_thread(uint64_t id, const char *key, uint64_t version, uint32_t count)
{
    Threadsync__Thread t = THREADSYNC__THREAD__INIT;
    t.id = id;
    t.key = (char *)key;
    t.title = "A title";
    t.url = "https://example.org/a";
    t.created_at_ms = 1609459200000 + (int64_t)id;
    t.comment_count = count;
    t.version = version;
    return t;
}

static Threadsync__Comment mk_comment(uint64_t id, uint64_t thread, uint64_t parent,
                                      Threadsync__Status st, const char *body, uint64_t version)
{
    Threadsync__Comment c = THREADSYNC__COMMENT__INIT;
    c.id = id;
    c.thread_id = thread;
    c.parent_id = parent;
    c.author_name = "Zo\xC3\xAB";
    c.author_email = "zoe@example.org";
    c.body = (char *)body;
    c.created_at_ms = 1609459200000 + (int64_t)id * 1000;
    c.status = st;
    c.version = version;
    return c;
}

/* A batch over caller-owned events: evs[i] gets thread ts[i] and comment cs[i]
 * (cs[i] may be NULL). */
#define MAXEV 16
struct batch {
    Threadsync__Events ev;
    Threadsync__Event e[MAXEV];
    Threadsync__Event *pe[MAXEV];
};

static void batch_init(struct batch *b, uint64_t last_seq)
{
    Threadsync__Events ev = THREADSYNC__EVENTS__INIT;
    b->ev = ev;
    b->ev.events = b->pe;
    b->ev.last_seq = last_seq;
}

static void batch_add(struct batch *b, uint64_t seq, Threadsync__Thread *t, Threadsync__Comment *c)
{
    ck_assert_uint_lt(b->ev.n_events, MAXEV);
    Threadsync__Event e = THREADSYNC__EVENT__INIT;
    e.seq = seq;
    e.thread = t;
    e.comment = c;
    b->e[b->ev.n_events] = e;
    b->pe[b->ev.n_events] = &b->e[b->ev.n_events];
    b->ev.n_events++;
}

static struct ts_mirror_db *open_db(void)
{
    struct ts_mirror_db *db;
    ck_assert_int_eq(ts_mirror_db_open(mdir, &db), TS_OK);
    return db;
}

static uint64_t cursor_of(struct ts_mirror_db *db)
{
    uint64_t seq = 12345;
    ck_assert_int_eq(ts_mirror_db_cursor(db, &seq), TS_OK);
    return seq;
}

static struct ts_mirror_counts counts_of(struct ts_mirror_db *db, uint64_t thread)
{
    struct ts_mirror_counts c;
    ck_assert_int_eq(ts_mirror_db_counts(db, thread, &c), TS_OK);
    return c;
}

static char *body_of(struct ts_mirror_db *db, uint64_t thread, uint64_t comment)
{
    struct ts_mirror_thread *mt;
    ck_assert_int_eq(ts_mirror_db_thread_by_id(db, thread, &mt), TS_OK);
    char *r = NULL;
    for (size_t i = 0; i < mt->n_comments; i++)
        if (mt->comments[i]->id == comment) {
            free(r);
            r = strdup(mt->comments[i]->body);
        }
    ts_mirror_thread_free(mt);
    ck_assert_ptr_nonnull(r);
    return r;
}

/* A standard first batch: thread 1 with two comments, cursor 10. */
static Threadsync__Thread g_t1;
static Threadsync__Comment g_c2, g_c3;
static void first_batch(struct batch *b)
{
    g_t1 = mk_thread(1, "site/2021/one", 3, 2);
    g_c2 = mk_comment(2, 1, 0, THREADSYNC__STATUS__VISIBLE, "first", 1);
    g_c3 = mk_comment(3, 1, 2, THREADSYNC__STATUS__VISIBLE, "reply", 1);
    batch_init(b, 10);
    batch_add(b, 2, &g_t1, &g_c2);
    batch_add(b, 3, &g_t1, &g_c3);
}

/* ---- tests ---- */

START_TEST(test_open_schema)
{
    struct ts_mirror_db *db = open_db();
    ck_assert_uint_eq(cursor_of(db), 0);
    struct ts_mirror_counts c = counts_of(db, 0);
    ck_assert_uint_eq(c.threads, 0);
    ck_assert_uint_eq(c.comments, 0);
    ts_mirror_db_close(db);

    char path[256];
    snprintf(path, sizeof(path), "%s/mirror.db", mdir);
    sqlite3 *s;
    ck_assert_int_eq(sqlite3_open(path, &s), SQLITE_OK);
    sqlite3_stmt *st;
    ck_assert_int_eq(sqlite3_prepare_v2(s, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    ck_assert_str_eq((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    ck_assert_int_eq(
        sqlite3_prepare_v2(s, "SELECT value FROM meta WHERE key='schema_version'", -1, &st, NULL),
        SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    ck_assert_int_eq(sqlite3_column_int(st, 0), TS_MIRROR_DB_SCHEMA_VERSION);
    sqlite3_finalize(st);
    /* A file from a future schema is refused, not "upgraded" by accident. */
    ck_assert_int_eq(
        sqlite3_exec(s, "UPDATE meta SET value=99 WHERE key='schema_version'", NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(s);
    struct ts_mirror_db *db2 = (void *)1;
    ck_assert_int_eq(ts_mirror_db_open(mdir, &db2), TS_E_CONFIG);
    ck_assert_ptr_null(db2);
}
END_TEST

START_TEST(test_apply_and_read)
{
    struct ts_mirror_db *db = open_db();
    struct batch b;
    first_batch(&b);
    struct ts_mirror_touched touched = TS_MIRROR_TOUCHED_INIT;
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &b.ev, &touched), TS_OK);
    ck_assert_uint_eq(touched.n, 1);
    ck_assert(ts_mirror_touched_has(&touched, 1));
    ck_assert_uint_eq(cursor_of(db), 10);

    struct ts_mirror_counts c = counts_of(db, 0);
    ck_assert_uint_eq(c.threads, 1);
    ck_assert_uint_eq(c.comments, 2);
    ck_assert_uint_eq(c.visible, 2);

    struct ts_mirror_thread *mt;
    ck_assert_int_eq(ts_mirror_db_thread_by_key(db, "site/2021/one", &mt), TS_OK);
    ck_assert_uint_eq(mt->thread.id, 1);
    ck_assert_str_eq(mt->thread.title, "A title");
    ck_assert_str_eq(mt->thread.url, "https://example.org/a");
    ck_assert_int_eq(mt->thread.created_at_ms, g_t1.created_at_ms);
    ck_assert_uint_eq(mt->thread.version, 3);
    ck_assert_uint_eq(mt->thread.comment_count, 2);
    ck_assert_uint_eq(mt->n_comments, 2);
    ck_assert_uint_eq(mt->comments[0]->id, 2);
    ck_assert_uint_eq(mt->comments[1]->id, 3);
    ck_assert_uint_eq(mt->comments[1]->parent_id, 2);
    ck_assert_str_eq(mt->comments[1]->body, "reply");
    ck_assert_str_eq(mt->comments[1]->author_name, "Zo\xC3\xAB");
    ck_assert_str_eq(mt->comments[1]->author_email, ""); /* never stored */
    ck_assert_int_eq(mt->comments[1]->status, THREADSYNC__STATUS__VISIBLE);
    ck_assert_int_eq(mt->comments[1]->created_at_ms, g_c3.created_at_ms);
    ts_mirror_thread_free(mt);

    ck_assert_int_eq(ts_mirror_db_thread_by_key(db, "nope", &mt), TS_E_NOT_FOUND);
    ck_assert_ptr_null(mt);
    ck_assert_int_eq(ts_mirror_db_thread_by_id(db, 999, &mt), TS_E_NOT_FOUND);

    /* Survives a close and reopen. */
    ts_mirror_db_close(db);
    db = open_db();
    ck_assert_uint_eq(cursor_of(db), 10);
    ck_assert_uint_eq(counts_of(db, 1).comments, 2);
    ts_mirror_touched_free(&touched);
    ts_mirror_db_close(db);
}
END_TEST

START_TEST(test_duplicate_batch_changes_nothing)
{
    struct ts_mirror_db *db = open_db();
    struct batch b;
    first_batch(&b);
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &b.ev, NULL), TS_OK);
    char before[65], after[65];
    ck_assert_int_eq(ts_mirror_db_digest(db, 1, before), TS_OK);

    struct ts_mirror_touched touched = TS_MIRROR_TOUCHED_INIT;
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &b.ev, &touched), TS_OK);
    ck_assert_uint_eq(touched.n, 0); /* nothing to re-render */
    ck_assert_int_eq(ts_mirror_db_digest(db, 1, after), TS_OK);
    ck_assert_str_eq(before, after);
    ck_assert_uint_eq(cursor_of(db), 10);
    ck_assert_uint_eq(counts_of(db, 0).comments, 2);

    /* Even a batch with a changed body is a no-op when its version is not
     * higher: the stored row wins. */
    Threadsync__Comment same_version = g_c2;
    same_version.body = "tampered";
    struct batch b2;
    batch_init(&b2, 10);
    batch_add(&b2, 2, &g_t1, &same_version);
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &b2.ev, &touched), TS_OK);
    ck_assert_uint_eq(touched.n, 0);
    char *body = body_of(db, 1, 2);
    ck_assert_str_eq(body, "first");
    free(body);
    ts_mirror_touched_free(&touched);
    ts_mirror_db_close(db);
}
END_TEST

START_TEST(test_older_version_ignored)
{
    struct ts_mirror_db *db = open_db();
    Threadsync__Thread t = mk_thread(1, "k", 5, 1);
    Threadsync__Comment v2 = mk_comment(2, 1, 0, THREADSYNC__STATUS__VISIBLE, "edited", 2);
    v2.edited_at_ms = 1700000000000;
    struct batch b;
    batch_init(&b, 20);
    batch_add(&b, 20, &t, &v2);
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &b.ev, NULL), TS_OK);

    /* The original version and an older thread arrive late (replayed from
     * an older cursor after failover): ignored, but the cursor moves. */
    Threadsync__Thread t_old = mk_thread(1, "k", 4, 1);
    t_old.title = "old title";
    Threadsync__Comment v1 = mk_comment(2, 1, 0, THREADSYNC__STATUS__VISIBLE, "original", 1);
    struct batch b2;
    batch_init(&b2, 30);
    batch_add(&b2, 2, &t_old, &v1);
    struct ts_mirror_touched touched = TS_MIRROR_TOUCHED_INIT;
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &b2.ev, &touched), TS_OK);
    ck_assert_uint_eq(touched.n, 0);
    ck_assert_uint_eq(cursor_of(db), 30);
    struct ts_mirror_thread *mt;
    ck_assert_int_eq(ts_mirror_db_thread_by_id(db, 1, &mt), TS_OK);
    ck_assert_str_eq(mt->thread.title, "A title");
    ck_assert_uint_eq(mt->thread.version, 5);
    ck_assert_str_eq(mt->comments[0]->body, "edited");
    ck_assert_uint_eq(mt->comments[0]->version, 2);
    ck_assert_int_eq(mt->comments[0]->edited_at_ms, 1700000000000);
    ts_mirror_thread_free(mt);

    /* A newer version does apply, and a delete keeps the tombstone. */
    Threadsync__Comment v3 = mk_comment(2, 1, 0, THREADSYNC__STATUS__DELETED, "", 3);
    Threadsync__Thread t6 = mk_thread(1, "k", 6, 0);
    struct batch b3;
    batch_init(&b3, 31);
    batch_add(&b3, 31, &t6, &v3);
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &b3.ev, &touched), TS_OK);
    ck_assert(ts_mirror_touched_has(&touched, 1));
    struct ts_mirror_counts c = counts_of(db, 1);
    ck_assert_uint_eq(c.comments, 1);
    ck_assert_uint_eq(c.visible, 0);

    /* The cursor never goes down. */
    struct batch b4;
    batch_init(&b4, 25);
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &b4.ev, NULL), TS_OK);
    ck_assert_uint_eq(cursor_of(db), 31);
    ts_mirror_touched_free(&touched);
    ts_mirror_db_close(db);
}
END_TEST

START_TEST(test_public_view_stored)
{
    /* A moderator's connection sends bodies of hidden comments; the mirror
     * keeps only what a reader may see. */
    struct ts_mirror_db *db = open_db();
    Threadsync__Thread t = mk_thread(1, "k", 1, 0);
    Threadsync__Comment h = mk_comment(2, 1, 0, THREADSYNC__STATUS__HIDDEN, "spam spam", 2);
    struct batch b;
    batch_init(&b, 2);
    batch_add(&b, 2, &t, &h);
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &b.ev, NULL), TS_OK);
    struct ts_mirror_thread *mt;
    ck_assert_int_eq(ts_mirror_db_thread_by_id(db, 1, &mt), TS_OK);
    ck_assert_str_eq(mt->comments[0]->body, "");
    ck_assert_str_eq(mt->comments[0]->author_name, "");
    ck_assert_int_eq(mt->comments[0]->status, THREADSYNC__STATUS__HIDDEN);
    ts_mirror_thread_free(mt);
    ts_mirror_db_close(db);
}
END_TEST

/* 1 when a file's bytes hold text (0 for a missing file). */
static int file_has(const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", mdir, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    return memmem(buf, n, text, strlen(text)) != NULL;
}

static int db_has(const char *text)
{
    return file_has("mirror.db", text) || file_has("mirror.db-wal", text);
}

/* Applies one event: comment 2 of thread 1 with body and status. */
static void apply_c2(struct ts_mirror_db *db, uint64_t version, Threadsync__Status st,
                     const char *body)
{
    Threadsync__Thread t = mk_thread(1, "k", version, st == THREADSYNC__STATUS__VISIBLE);
    Threadsync__Comment c = mk_comment(2, 1, 0, st, body, version);
    struct batch b;
    batch_init(&b, version + 1);
    batch_add(&b, version + 1, &t, &c);
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &b.ev, NULL), TS_OK);
}

START_TEST(test_replaced_text_scrubbed)
{
    /* Text a moderator hid or an author replaced is gone from the bytes of
     * the database and its WAL as soon as the batch commits, while the
     * mirror keeps running (closing would hide the question: the last
     * connection's close checkpoints and removes the WAL anyway). */
    struct ts_mirror_db *db = open_db();
    apply_c2(db, 1, THREADSYNC__STATUS__VISIBLE, "first words of a comment");
    ck_assert(db_has("first words of a comment"));
    apply_c2(db, 2, THREADSYNC__STATUS__VISIBLE, "edited words of a comment");
    ck_assert(!db_has("first words of a comment"));
    ck_assert(db_has("edited words of a comment"));
    apply_c2(db, 3, THREADSYNC__STATUS__HIDDEN, "edited words of a comment");
    ck_assert(!db_has("edited words of a comment"));
    ck_assert(!db_has("Zo\xC3\xAB"));

    /* A reader in the middle of a read transaction delays the scrub: the
     * batch commits all the same, and the next commit after the reader is
     * done finishes the job. */
    apply_c2(db, 4, THREADSYNC__STATUS__VISIBLE, "visible again for a while");
    char path[256];
    snprintf(path, sizeof(path), "%s/mirror.db", mdir);
    sqlite3 *reader;
    ck_assert_int_eq(sqlite3_open_v2(path, &reader, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    ck_assert_int_eq(
        sqlite3_exec(reader, "BEGIN; SELECT count(*) FROM comments;", NULL, NULL, NULL), SQLITE_OK);
    apply_c2(db, 5, THREADSYNC__STATUS__DELETED, "");
    ck_assert_uint_eq(cursor_of(db), 6);
    ck_assert(db_has("visible again for a while"));
    ck_assert_int_eq(sqlite3_exec(reader, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    Threadsync__Thread t = mk_thread(7, "other", 1, 0);
    struct batch b;
    batch_init(&b, 7);
    batch_add(&b, 7, &t, NULL);
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &b.ev, NULL), TS_OK);
    ck_assert(!db_has("visible again for a while"));
    sqlite3_close(reader);
    ts_mirror_db_close(db);
}
END_TEST

/* State before a failing batch, to compare with after. */
struct state {
    uint64_t cursor;
    struct ts_mirror_counts counts;
    char digest[65];
};

static struct state state_of(struct ts_mirror_db *db)
{
    struct state s;
    s.cursor = cursor_of(db);
    s.counts = counts_of(db, 0);
    ck_assert_int_eq(ts_mirror_db_digest(db, 1, s.digest), TS_OK);
    return s;
}

static void assert_same_state(struct ts_mirror_db *db, const struct state *a)
{
    struct state b = state_of(db);
    ck_assert_uint_eq(a->cursor, b.cursor);
    ck_assert_uint_eq(a->counts.threads, b.counts.threads);
    ck_assert_uint_eq(a->counts.comments, b.counts.comments);
    ck_assert_uint_eq(a->counts.visible, b.counts.visible);
    ck_assert_str_eq(a->digest, b.digest);
}

/* Second batch: edits thread 1, adds comments 4 and 5, and a new thread 6,
 * cursor 40. */
static Threadsync__Thread g_t1b, g_t6;
static Threadsync__Comment g_c4, g_c5, g_c2b;
static void second_batch(struct batch *b, Threadsync__Status c5_status)
{
    g_t1b = mk_thread(1, "site/2021/one", 7, 3);
    g_t6 = mk_thread(6, "site/other", 1, 0);
    g_c4 = mk_comment(4, 1, 3, THREADSYNC__STATUS__VISIBLE, "deeper", 1);
    g_c2b = mk_comment(2, 1, 0, THREADSYNC__STATUS__VISIBLE, "first, edited", 2);
    g_c5 = mk_comment(5, 1, 0, c5_status, "fifth", 1);
    batch_init(b, 40);
    batch_add(b, 4, &g_t1b, &g_c4);
    batch_add(b, 5, &g_t1b, &g_c2b);
    batch_add(b, 6, &g_t6, NULL);
    batch_add(b, 7, &g_t1b, &g_c5);
}

static int fail_at_6(uint64_t seq)
{
    return seq == 6;
}

START_TEST(test_failed_batch_moves_nothing)
{
    struct ts_mirror_db *db = open_db();
    struct batch b;
    first_batch(&b);
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &b.ev, NULL), TS_OK);
    struct state before = state_of(db);

    /* The last event carries a status no name exists for: the CHECK refuses
     * it after three events were already written in the transaction. */
    struct batch bad;
    second_batch(&bad, (Threadsync__Status)7);
    struct ts_mirror_touched touched = TS_MIRROR_TOUCHED_INIT;
    ck_assert_int_eq(ts_mirror_touched_add(&touched, 77), TS_OK);
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &bad.ev, &touched), TS_E_IO);
    assert_same_state(db, &before);
    struct ts_mirror_thread *mt;
    ck_assert_int_eq(ts_mirror_db_thread_by_id(db, 6, &mt), TS_E_NOT_FOUND);
    ck_assert_uint_eq(touched.n, 1); /* put back as it was */
    ck_assert(ts_mirror_touched_has(&touched, 77));
    struct ts_mirror_touched empty = TS_MIRROR_TOUCHED_INIT;
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &bad.ev, &empty), TS_E_IO);
    ck_assert_uint_eq(empty.n, 0);
    ts_mirror_touched_free(&empty);

    /* Same with an injected storage failure before the third event. */
    struct batch good;
    second_batch(&good, THREADSYNC__STATUS__VISIBLE);
    ts__mirror_db_fault_hook = fail_at_6;
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &good.ev, &touched), TS_E_IO);
    assert_same_state(db, &before);
    ck_assert_uint_eq(touched.n, 1);

    /* The mirror is still usable: the same batch goes through afterwards. */
    ts__mirror_db_fault_hook = NULL;
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &good.ev, &touched), TS_OK);
    ck_assert_uint_eq(cursor_of(db), 40);
    ck_assert_uint_eq(counts_of(db, 0).comments, 4);
    ck_assert(ts_mirror_touched_has(&touched, 1));
    ck_assert(ts_mirror_touched_has(&touched, 6));
    ck_assert(ts_mirror_touched_has(&touched, 77));
    ck_assert_uint_eq(touched.n, 3);
    ts_mirror_touched_free(&touched);
    ts_mirror_db_close(db);
}
END_TEST

static int crash_at_7(uint64_t seq)
{
    if (seq == 7)
        _exit(42); /* like kill -9: no rollback, no close */
    return 0;
}

START_TEST(test_crash_mid_batch)
{
    struct ts_mirror_db *db = open_db();
    struct batch b;
    first_batch(&b);
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &b.ev, NULL), TS_OK);
    struct state before = state_of(db);
    ts_mirror_db_close(db);

    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct ts_mirror_db *cdb;
        if (ts_mirror_db_open(mdir, &cdb) != TS_OK)
            _exit(1);
        ts__mirror_db_fault_hook = crash_at_7;
        struct batch good;
        second_batch(&good, THREADSYNC__STATUS__VISIBLE);
        ts_mirror_db_apply_events(cdb, &good.ev, NULL);
        _exit(2); /* the hook should have ended us first */
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 42);

    db = open_db();
    assert_same_state(db, &before);
    struct batch good;
    second_batch(&good, THREADSYNC__STATUS__VISIBLE);
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &good.ev, NULL), TS_OK);
    ck_assert_uint_eq(cursor_of(db), 40);
    ts_mirror_db_close(db);
}
END_TEST

/* Third batch, after the second: comment 8 under thread 6, comment 4 hidden,
 * cursor 60. */
static Threadsync__Thread g_t6c, g_t1c;
static Threadsync__Comment g_c8, g_c4c;
static void third_batch(struct batch *b)
{
    g_t6c = mk_thread(6, "site/other", 2, 1);
    g_t1c = mk_thread(1, "site/2021/one", 9, 2);
    g_c8 = mk_comment(8, 6, 0, THREADSYNC__STATUS__VISIBLE, "eight", 1);
    g_c4c = mk_comment(4, 1, 3, THREADSYNC__STATUS__HIDDEN, "", 2);
    batch_init(b, 60);
    batch_add(b, 51, &g_t6c, &g_c8);
    batch_add(b, 52, &g_t1c, &g_c4c);
}

/* The cursor as another connection (a web stack) sees it: committed only. */
static uint64_t committed_cursor(void)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/mirror.db", mdir);
    sqlite3 *s;
    ck_assert_int_eq(sqlite3_open_v2(path, &s, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st;
    ck_assert_int_eq(
        sqlite3_prepare_v2(s, "SELECT value FROM meta WHERE key='last_seq'", -1, &st, NULL),
        SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    uint64_t v = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(s);
    return v;
}

/* The digest of every thread of a mirror applied batch by batch, without
 * groups, in a directory of its own. */
static void reference_digests(char d1[65], char d6[65])
{
    char saved[128];
    snprintf(saved, sizeof(saved), "%s", mdir);
    snprintf(mdir, sizeof(mdir), "%s/ref", tmpdir);
    struct ts_mirror_db *db = open_db();
    struct batch b1, b2, b3;
    first_batch(&b1);
    second_batch(&b2, THREADSYNC__STATUS__VISIBLE);
    third_batch(&b3);
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &b1.ev, NULL), TS_OK);
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &b2.ev, NULL), TS_OK);
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &b3.ev, NULL), TS_OK);
    ck_assert_uint_eq(cursor_of(db), 60);
    ck_assert_int_eq(ts_mirror_db_digest(db, 1, d1), TS_OK);
    ck_assert_int_eq(ts_mirror_db_digest(db, 6, d6), TS_OK);
    ts_mirror_db_close(db);
    snprintf(mdir, sizeof(mdir), "%s", saved);
}

START_TEST(test_group_commits_whole_batches)
{
    struct ts_mirror_db *db = open_db();
    struct batch b1, b2, b3;
    first_batch(&b1);
    second_batch(&b2, THREADSYNC__STATUS__VISIBLE);
    third_batch(&b3);
    ck_assert_int_eq(ts_mirror_db_group_end(db), TS_OK); /* none open: nothing */
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &b1.ev, NULL), TS_OK);
    ck_assert_uint_eq(committed_cursor(), 10);

    struct ts_mirror_touched touched = TS_MIRROR_TOUCHED_INIT;
    ck_assert_int_eq(ts_mirror_db_group_begin(db), TS_OK);
    ck_assert_int_eq(ts_mirror_db_group_begin(db), TS_OK); /* already open */
    ck_assert(ts_mirror_db_group_is_open(db));
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &b2.ev, &touched), TS_OK);
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &b3.ev, &touched), TS_OK);
    /* This connection reads the group's rows; nobody else does yet. */
    ck_assert_uint_eq(cursor_of(db), 60);
    ck_assert_uint_eq(counts_of(db, 0).comments, 5);
    ck_assert_uint_eq(committed_cursor(), 10);
    ck_assert_uint_eq(touched.n, 2);
    ck_assert_int_eq(ts_mirror_db_group_end(db), TS_OK);
    ck_assert(!ts_mirror_db_group_is_open(db));
    ck_assert_uint_eq(committed_cursor(), 60);

    char d1[65], d6[65], r1[65], r6[65];
    reference_digests(r1, r6);
    ck_assert_int_eq(ts_mirror_db_digest(db, 1, d1), TS_OK);
    ck_assert_int_eq(ts_mirror_db_digest(db, 6, d6), TS_OK);
    ck_assert_str_eq(d1, r1);
    ck_assert_str_eq(d6, r6);
    ts_mirror_touched_free(&touched);
    ts_mirror_db_close(db);
}
END_TEST

static int crash_at_52(uint64_t seq)
{
    if (seq == 52)
        _exit(42);
    return 0;
}

/* A child applies batch 1 alone, then batches 2 and 3 in one group, and
 * dies: mid_batch 1 inside batch 3, 0 between batches 2 and 3. */
static void crash_in_group(int mid_batch, int bulk)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct ts_mirror_db *cdb;
        if (ts_mirror_db_open(mdir, &cdb) != TS_OK)
            _exit(1);
        if (bulk && ts_mirror_db_bulk_begin(cdb) != TS_OK)
            _exit(1);
        struct batch b1, b2, b3;
        first_batch(&b1);
        second_batch(&b2, THREADSYNC__STATUS__VISIBLE);
        third_batch(&b3);
        if (ts_mirror_db_apply_events(cdb, &b1.ev, NULL) != TS_OK ||
            ts_mirror_db_group_begin(cdb) != TS_OK ||
            ts_mirror_db_apply_events(cdb, &b2.ev, NULL) != TS_OK)
            _exit(1);
        if (!mid_batch)
            _exit(42); /* like kill -9 between two batches of the group */
        ts__mirror_db_fault_hook = crash_at_52;
        ts_mirror_db_apply_events(cdb, &b3.ev, NULL);
        _exit(2);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 42);
}

START_TEST(test_crash_in_group_resumes)
{
    char r1[65], r6[65];
    reference_digests(r1, r6);
    /* Also in a bulk fill (a first sync), whose commits are not fsync'd:
     * a killed process still loses no commit and keeps no part of the
     * open group. */
    for (int run = 0; run < 4; run++) {
        int mid = run & 1, bulk = run >> 1;
        crash_in_group(mid, bulk);
        /* The whole group is gone, batch 1 is all there: the mirror
         * resumes from cursor 10 and asks for batches 2 and 3 again. */
        struct ts_mirror_db *db = open_db();
        ck_assert_uint_eq(cursor_of(db), 10);
        struct ts_mirror_counts c = counts_of(db, 0);
        ck_assert_uint_eq(c.threads, 1);
        ck_assert_uint_eq(c.comments, 2);
        struct ts_mirror_thread *mt;
        ck_assert_int_eq(ts_mirror_db_thread_by_id(db, 1, &mt), TS_OK);
        ck_assert_uint_eq(mt->thread.version, 3);
        ts_mirror_thread_free(mt);

        struct batch b2, b3;
        second_batch(&b2, THREADSYNC__STATUS__VISIBLE);
        third_batch(&b3);
        ck_assert_int_eq(ts_mirror_db_group_begin(db), TS_OK);
        ck_assert_int_eq(ts_mirror_db_apply_events(db, &b2.ev, NULL), TS_OK);
        ck_assert_int_eq(ts_mirror_db_apply_events(db, &b3.ev, NULL), TS_OK);
        ck_assert_int_eq(ts_mirror_db_group_end(db), TS_OK);
        ck_assert_uint_eq(cursor_of(db), 60);
        char d1[65], d6[65];
        ck_assert_int_eq(ts_mirror_db_digest(db, 1, d1), TS_OK);
        ck_assert_int_eq(ts_mirror_db_digest(db, 6, d6), TS_OK);
        ck_assert_str_eq(d1, r1);
        ck_assert_str_eq(d6, r6);
        ts_mirror_db_close(db);
        teardown();
        setup();
    }
}
END_TEST

START_TEST(test_group_failure_rolls_back_group)
{
    struct ts_mirror_db *db = open_db();
    struct batch b1, b2, bad;
    first_batch(&b1);
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &b1.ev, NULL), TS_OK);
    struct state before = state_of(db);

    struct ts_mirror_touched touched = TS_MIRROR_TOUCHED_INIT;
    ck_assert_int_eq(ts_mirror_db_group_begin(db), TS_OK);
    third_batch(&b2); /* touches threads 1 and 6 */
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &b2.ev, &touched), TS_OK);
    ck_assert_uint_eq(touched.n, 2);
    /* The CHECK refuses comment 5: the whole group goes, not only this
     * batch, and the group is over. */
    second_batch(&bad, (Threadsync__Status)7);
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &bad.ev, &touched), TS_E_IO);
    ck_assert(!ts_mirror_db_group_is_open(db));
    assert_same_state(db, &before);
    ck_assert_uint_eq(committed_cursor(), 10);
    struct ts_mirror_thread *mt;
    ck_assert_int_eq(ts_mirror_db_thread_by_id(db, 6, &mt), TS_E_NOT_FOUND);
    ck_assert_uint_eq(touched.n, 2); /* the earlier batch's ids stay: a superset */

    /* Without a group, the next batch commits on its own. */
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &b2.ev, NULL), TS_OK);
    ck_assert_uint_eq(committed_cursor(), 60);
    ts_mirror_touched_free(&touched);
    ts_mirror_db_close(db);
}
END_TEST

START_TEST(test_group_ended_by_other_writes)
{
    struct ts_mirror_db *db = open_db();
    struct batch b1, b2;
    first_batch(&b1);
    second_batch(&b2, THREADSYNC__STATUS__VISIBLE);
    ck_assert_int_eq(ts_mirror_db_group_begin(db), TS_OK);
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &b1.ev, NULL), TS_OK);
    ck_assert_int_eq(ts_mirror_db_setting_set(db, "rendered_seq", "10"), TS_OK);
    ck_assert(!ts_mirror_db_group_is_open(db));
    ck_assert_uint_eq(committed_cursor(), 10);

    ck_assert_int_eq(ts_mirror_db_group_begin(db), TS_OK);
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &b2.ev, NULL), TS_OK);
    ck_assert_int_eq(ts_mirror_db_snapshot_begin(db, 100), TS_OK);
    ck_assert(!ts_mirror_db_group_is_open(db));
    ck_assert_uint_eq(committed_cursor(), 40);

    /* Closing with a group open forgets it, as a crash would. */
    struct batch b3;
    third_batch(&b3);
    ck_assert_int_eq(ts_mirror_db_group_begin(db), TS_OK);
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &b3.ev, NULL), TS_OK);
    ts_mirror_db_close(db);
    db = open_db();
    ck_assert_uint_eq(cursor_of(db), 40);
    ck_assert_uint_eq(counts_of(db, 6).comments, 0);
    ts_mirror_db_close(db);
}
END_TEST

START_TEST(test_replaced_text_scrubbed_after_group)
{
    struct ts_mirror_db *db = open_db();
    apply_c2(db, 1, THREADSYNC__STATUS__VISIBLE, "words to be hidden later");
    ck_assert_int_eq(ts_mirror_db_group_begin(db), TS_OK);
    apply_c2(db, 2, THREADSYNC__STATUS__HIDDEN, "");
    ck_assert_int_eq(ts_mirror_db_group_end(db), TS_OK);
    ck_assert(!db_has("words to be hidden later"));
    ts_mirror_db_close(db);
}
END_TEST

START_TEST(test_thread_versions_within_batch)
{
    /* A batch carries a thread once per event; only the highest version
     * may win, wherever it sits in the batch, and the thread counts as
     * touched exactly when that version is newer than the stored one. */
    struct ts_mirror_db *db = open_db();
    struct batch b1;
    first_batch(&b1); /* thread 1 v3 */
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &b1.ev, NULL), TS_OK);

    Threadsync__Thread t5 = mk_thread(1, "site/2021/one", 5, 5);
    Threadsync__Thread t9 = mk_thread(1, "site/2021/one", 9, 9);
    Threadsync__Thread t7 = mk_thread(1, "site/2021/one", 7, 7);
    Threadsync__Thread u1 = mk_thread(20, "site/twenty", 1, 1);
    Threadsync__Thread u2 = mk_thread(20, "site/twenty", 2, 2);
    t9.title = "the newest title";
    struct batch b;
    batch_init(&b, 30);
    batch_add(&b, 21, &t5, NULL);
    batch_add(&b, 22, &u2, NULL);
    batch_add(&b, 23, &t9, NULL);
    batch_add(&b, 24, &u1, NULL);
    batch_add(&b, 25, &t7, NULL);
    struct ts_mirror_touched touched = TS_MIRROR_TOUCHED_INIT;
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &b.ev, &touched), TS_OK);
    ck_assert_uint_eq(touched.n, 2);
    struct ts_mirror_thread *mt;
    ck_assert_int_eq(ts_mirror_db_thread_by_id(db, 1, &mt), TS_OK);
    ck_assert_uint_eq(mt->thread.version, 9);
    ck_assert_uint_eq(mt->thread.comment_count, 9);
    ck_assert_str_eq(mt->thread.title, "the newest title");
    ts_mirror_thread_free(mt);
    ck_assert_int_eq(ts_mirror_db_thread_by_id(db, 20, &mt), TS_OK);
    ck_assert_uint_eq(mt->thread.version, 2);
    ts_mirror_thread_free(mt);

    /* All older than or equal to what is stored: nothing changes. */
    ts_mirror_touched_clear(&touched);
    Threadsync__Thread t8 = mk_thread(1, "site/2021/one", 8, 1);
    Threadsync__Thread t9b = mk_thread(1, "site/2021/one", 9, 1);
    struct batch old;
    batch_init(&old, 31);
    batch_add(&old, 26, &t8, NULL);
    batch_add(&old, 27, &t9b, NULL);
    batch_add(&old, 28, &t5, NULL);
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &old.ev, &touched), TS_OK);
    ck_assert_uint_eq(touched.n, 0);
    ck_assert_int_eq(ts_mirror_db_thread_by_id(db, 1, &mt), TS_OK);
    ck_assert_uint_eq(mt->thread.comment_count, 9);
    ts_mirror_thread_free(mt);
    ck_assert_uint_eq(cursor_of(db), 31);
    ts_mirror_touched_free(&touched);
    ts_mirror_db_close(db);
}
END_TEST

/* A column of a row as another connection (the web stack) sees it:
 * committed data only. -1 when there is no such row. */
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

static const char has_index_sql[] =
    "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'comments_thread'";

START_TEST(test_thread_versions_across_group)
{
    /* Inside a group a thread row is written once, at the end, with the
     * highest version of all its batches; touched is as exact as with
     * one upsert per batch, reads through the handle see the newest row,
     * and other connections the old one until the group commits. */
    struct ts_mirror_db *db = open_db();
    struct batch b1;
    first_batch(&b1); /* thread 1 v3 */
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &b1.ev, NULL), TS_OK);

    Threadsync__Thread t5 = mk_thread(1, "site/2021/one", 5, 5);
    Threadsync__Thread t9 = mk_thread(1, "site/2021/one", 9, 9);
    Threadsync__Thread t7 = mk_thread(1, "site/2021/one", 7, 7);
    Threadsync__Thread u1 = mk_thread(20, "site/twenty", 1, 1);
    t9.title = "the newest title";
    struct batch a, b, c;
    batch_init(&a, 21);
    batch_add(&a, 21, &t5, NULL);
    batch_init(&b, 22);
    batch_add(&b, 22, &t9, NULL);
    batch_init(&c, 24);
    batch_add(&c, 23, &t7, NULL);
    batch_add(&c, 24, &u1, NULL);
    struct ts_mirror_touched touched = TS_MIRROR_TOUCHED_INIT;
    ck_assert_int_eq(ts_mirror_db_group_begin(db), TS_OK);
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &a.ev, &touched), TS_OK);
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &b.ev, &touched), TS_OK);
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &c.ev, &touched), TS_OK);
    ck_assert_uint_eq(touched.n, 2);
    ck_assert_int_eq(committed_int("SELECT version FROM threads WHERE id = 1"), 3);
    struct ts_mirror_thread *mt;
    ck_assert_int_eq(ts_mirror_db_thread_by_id(db, 1, &mt), TS_OK);
    ck_assert_uint_eq(mt->thread.version, 9);
    ck_assert_str_eq(mt->thread.title, "the newest title");
    ts_mirror_thread_free(mt);
    ck_assert(ts_mirror_db_group_is_open(db)); /* a read does not end it */
    /* A thread first met after a read is still written at the end. */
    Threadsync__Thread u2 = mk_thread(20, "site/twenty", 2, 2);
    Threadsync__Thread v1 = mk_thread(30, "site/thirty", 1, 1);
    struct batch d;
    batch_init(&d, 26);
    batch_add(&d, 25, &u2, NULL);
    batch_add(&d, 26, &v1, NULL);
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &d.ev, &touched), TS_OK);
    ck_assert_uint_eq(touched.n, 3);
    ck_assert_int_eq(ts_mirror_db_group_end(db), TS_OK);
    ck_assert_int_eq(committed_int("SELECT version FROM threads WHERE id = 1"), 9);
    ck_assert_int_eq(committed_int("SELECT comment_count FROM threads WHERE id = 1"), 9);
    ck_assert_int_eq(committed_int("SELECT version FROM threads WHERE id = 20"), 2);
    ck_assert_int_eq(committed_int("SELECT version FROM threads WHERE id = 30"), 1);
    ck_assert_uint_eq(committed_cursor(), 26);

    /* A group of nothing newer than what is stored touches nothing. */
    ts_mirror_touched_clear(&touched);
    ck_assert_int_eq(ts_mirror_db_group_begin(db), TS_OK);
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &a.ev, &touched), TS_OK);
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &c.ev, &touched), TS_OK);
    ck_assert_int_eq(ts_mirror_db_group_end(db), TS_OK);
    ck_assert_uint_eq(touched.n, 0);
    ck_assert_int_eq(committed_int("SELECT version FROM threads WHERE id = 1"), 9);

    /* A group that fails keeps none of its thread rows. */
    Threadsync__Thread t12 = mk_thread(1, "site/2021/one", 12, 12);
    t12.title = "never stored";
    struct batch e, bad;
    batch_init(&e, 40);
    batch_add(&e, 40, &t12, NULL);
    ck_assert_int_eq(ts_mirror_db_group_begin(db), TS_OK);
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &e.ev, &touched), TS_OK);
    second_batch(&bad, (Threadsync__Status)7);
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &bad.ev, &touched), TS_E_IO);
    ck_assert(!ts_mirror_db_group_is_open(db));
    ck_assert_int_eq(ts_mirror_db_group_end(db), TS_OK);
    ck_assert_int_eq(ts_mirror_db_thread_by_id(db, 1, &mt), TS_OK);
    ck_assert_uint_eq(mt->thread.version, 9);
    ck_assert_str_eq(mt->thread.title, "the newest title");
    ts_mirror_thread_free(mt);

    /* A key that changes (never seen in practice) is written too: between
     * groups, and from one batch of a group to the next. */
    Threadsync__Thread k13 = mk_thread(30, "site/renamed", 13, 1);
    Threadsync__Thread k14 = mk_thread(30, "site/thirty", 14, 1);
    Threadsync__Thread k15 = mk_thread(30, "site/final", 15, 1);
    struct batch r1, r2, r3;
    batch_init(&r1, 41);
    batch_add(&r1, 41, &k13, NULL);
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &r1.ev, NULL), TS_OK);
    ck_assert_int_eq(ts_mirror_db_thread_by_key(db, "site/renamed", &mt), TS_OK);
    ck_assert_uint_eq(mt->thread.id, 30);
    ts_mirror_thread_free(mt);
    batch_init(&r2, 42);
    batch_add(&r2, 42, &k14, NULL);
    batch_init(&r3, 43);
    batch_add(&r3, 43, &k15, NULL);
    ck_assert_int_eq(ts_mirror_db_group_begin(db), TS_OK);
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &r2.ev, NULL), TS_OK);
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &r3.ev, NULL), TS_OK);
    ck_assert_int_eq(ts_mirror_db_group_end(db), TS_OK);
    ck_assert_int_eq(ts_mirror_db_thread_by_key(db, "site/final", &mt), TS_OK);
    ck_assert_uint_eq(mt->thread.version, 15);
    ts_mirror_thread_free(mt);
    ck_assert_int_eq(ts_mirror_db_thread_by_key(db, "site/renamed", &mt), TS_E_NOT_FOUND);
    ts_mirror_touched_free(&touched);
    ts_mirror_db_close(db);
}
END_TEST

START_TEST(test_bulk_fill)
{
    /* Without comments_thread during the fill, with it after, the same
     * rows either way; a read by thread brings it back first. */
    char r1[65], r6[65];
    reference_digests(r1, r6);
    struct ts_mirror_db *db = open_db();
    ck_assert_int_eq(committed_int(has_index_sql), 1);
    ck_assert_int_eq(ts_mirror_db_bulk_end(db), TS_OK); /* none: nothing */
    ck_assert_int_eq(ts_mirror_db_bulk_begin(db), TS_OK);
    ck_assert_int_eq(committed_int(has_index_sql), 0);
    struct batch b1, b2, b3;
    first_batch(&b1);
    second_batch(&b2, THREADSYNC__STATUS__VISIBLE);
    third_batch(&b3);
    ck_assert_int_eq(ts_mirror_db_group_begin(db), TS_OK);
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &b1.ev, NULL), TS_OK);
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &b2.ev, NULL), TS_OK);
    ck_assert_uint_eq(counts_of(db, 0).comments, 4); /* whole-mirror reads keep the fill */
    ck_assert_int_eq(committed_int(has_index_sql), 0);
    ck_assert_int_eq(ts_mirror_db_bulk_end(db), TS_OK); /* commits the group */
    ck_assert(!ts_mirror_db_group_is_open(db));
    ck_assert_uint_eq(committed_cursor(), 40);
    ck_assert_int_eq(committed_int(has_index_sql), 1);

    ck_assert_int_eq(ts_mirror_db_bulk_begin(db), TS_OK);
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &b3.ev, NULL), TS_OK);
    char d1[65], d6[65];
    ck_assert_int_eq(ts_mirror_db_digest(db, 1, d1), TS_OK); /* ends the fill */
    ck_assert_int_eq(committed_int(has_index_sql), 1);
    ck_assert_int_eq(ts_mirror_db_digest(db, 6, d6), TS_OK);
    ck_assert_str_eq(d1, r1);
    ck_assert_str_eq(d6, r6);

    /* Killed during a fill: the next open builds the index again. */
    ck_assert_int_eq(ts_mirror_db_bulk_begin(db), TS_OK);
    ts_mirror_db_close(db);
    ck_assert_int_eq(committed_int(has_index_sql), 0);
    db = open_db();
    ck_assert_int_eq(committed_int(has_index_sql), 1);
    ck_assert_uint_eq(counts_of(db, 6).comments, 1);
    ts_mirror_db_close(db);
}
END_TEST

START_TEST(test_page_size)
{
    /* A new mirror gets 16 KiB pages ... */
    struct ts_mirror_db *db = open_db();
    ck_assert_int_eq(committed_int("PRAGMA page_size"), 16384);
    ts_mirror_db_close(db);
    teardown();
    setup();

    /* ... an existing one keeps its own (SQLite cannot change it in WAL
     * mode) and works as before. */
    ck_assert_int_eq(mkdir(mdir, 0755), 0);
    char path[256];
    snprintf(path, sizeof(path), "%s/mirror.db", mdir);
    sqlite3 *s;
    ck_assert_int_eq(sqlite3_open(path, &s), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(s,
                                  "PRAGMA page_size=4096; PRAGMA journal_mode=WAL;"
                                  "CREATE TABLE old_style(a)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(s);
    db = open_db();
    struct batch b1;
    first_batch(&b1);
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &b1.ev, NULL), TS_OK);
    ck_assert_uint_eq(cursor_of(db), 10);
    ts_mirror_db_close(db);
    ck_assert_int_eq(committed_int("PRAGMA page_size"), 4096);
    ck_assert_uint_eq(committed_cursor(), 10);
}
END_TEST

static off_t file_size(const char *name)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", mdir, name);
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

/* Batch k: 16 comments of 8 KiB in thread 1, cursor 1000 * (k + 1). */
static void big_batch(struct batch *b, Threadsync__Thread *t, Threadsync__Comment *cs, unsigned k,
                      const char *body)
{
    batch_init(b, 1000 * (uint64_t)(k + 1));
    *t = mk_thread(1, "site/big", 1000 * (uint64_t)(k + 1), 16 * (k + 1));
    for (unsigned i = 0; i < MAXEV; i++) {
        uint64_t id = 1000 * (uint64_t)k + i + 1;
        cs[i] = mk_comment(id, 1, 0, THREADSYNC__STATUS__VISIBLE, body, 1);
        batch_add(b, id, t, &cs[i]);
    }
}

START_TEST(test_bulk_fill_wal_not_checkpointed)
{
    /* With a 64 KiB checkpoint limit, a 128 KiB group outside a fill is
     * copied into mirror.db by its commit; inside one, four such groups
     * stay in the WAL (committed, readable by other connections) and
     * mirror.db does not change until the fill is durable, after which the
     * next commit checkpoints again. */
    static char body[8193];
    memset(body, 'b', sizeof(body) - 1);
    ts__mirror_db_wal_checkpoint_bytes = 64 << 10;
    struct ts_mirror_db *db = open_db();
    struct batch b;
    Threadsync__Thread t;
    Threadsync__Comment cs[MAXEV];
    big_batch(&b, &t, cs, 0, body);
    off_t before = file_size("mirror.db");
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &b.ev, NULL), TS_OK);
    off_t filled = file_size("mirror.db");
    ck_assert_int_gt(filled, before + (100 << 10));

    ck_assert_int_eq(ts_mirror_db_bulk_begin(db), TS_OK);
    for (unsigned k = 1; k <= 4; k++) {
        big_batch(&b, &t, cs, k, body);
        ck_assert_int_eq(ts_mirror_db_group_begin(db), TS_OK);
        ck_assert_int_eq(ts_mirror_db_apply_events(db, &b.ev, NULL), TS_OK);
        ck_assert_int_eq(ts_mirror_db_group_end(db), TS_OK);
        ck_assert_uint_eq(committed_cursor(), (uintmax_t)1000 * (k + 1));
    }
    ck_assert_int_eq(file_size("mirror.db"), filled);
    ck_assert_int_gt(file_size("mirror.db-wal"), 4L * (128 << 10));
    ck_assert_int_eq(committed_int("SELECT count(*) FROM comments"), 5L * MAXEV);

    ck_assert_int_eq(ts_mirror_db_bulk_durable(db), TS_OK);
    ck_assert_int_eq(ts_mirror_db_setting_set(db, "filter", "all"), TS_OK);
    ck_assert_int_gt(file_size("mirror.db"), filled + 4L * (100 << 10));
    ck_assert_int_eq(ts_mirror_db_bulk_end(db), TS_OK);
    ck_assert_uint_eq(counts_of(db, 1).comments, (uintmax_t)5 * MAXEV);
    ts_mirror_db_close(db);
    ts__mirror_db_wal_checkpoint_bytes = 32u << 20;
}
END_TEST

START_TEST(test_snapshot_then_events)
{
    struct ts_mirror_db *db = open_db();
    struct batch b;
    first_batch(&b); /* cursor 10, thread 1 v3, comments 2,3 v1 */
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &b.ev, NULL), TS_OK);

    Threadsync__SnapshotChunk ch = THREADSYNC__SNAPSHOT_CHUNK__INIT;
    ck_assert_int_eq(ts_mirror_db_snapshot_apply_chunk(db, &ch, NULL), TS_E_INVALID_ARGUMENT);
    ck_assert_int_eq(ts_mirror_db_snapshot_end(db, 100, NULL), TS_E_INVALID_ARGUMENT);

    ck_assert_int_eq(ts_mirror_db_snapshot_begin(db, 100), TS_OK);
    /* Chunk 1: thread 1 newer, thread 9 new, comment 2 edited (v2) and a
     * comment 11 that is newer than S (v3, its v2 arrives later as an
     * event and must not win). */
    Threadsync__Thread t1 = mk_thread(1, "site/2021/one", 8, 3);
    Threadsync__Thread t9 = mk_thread(9, "site/nine", 2, 1);
    Threadsync__Comment c2 = mk_comment(2, 1, 0, THREADSYNC__STATUS__VISIBLE, "snap edit", 2);
    Threadsync__Comment c11 = mk_comment(11, 1, 3, THREADSYNC__STATUS__VISIBLE, "v3 text", 3);
    Threadsync__Thread *ths[] = {&t1, &t9};
    Threadsync__Comment *cms[] = {&c2, &c11};
    ch.threads = ths;
    ch.n_threads = 2;
    ch.comments = cms;
    ch.n_comments = 2;
    struct ts_mirror_touched touched = TS_MIRROR_TOUCHED_INIT;
    ck_assert_int_eq(ts_mirror_db_snapshot_apply_chunk(db, &ch, &touched), TS_OK);
    ck_assert_uint_eq(cursor_of(db), 10); /* not before end */

    /* Chunk 2: comments of thread 9, and an old copy of comment 3. */
    Threadsync__Comment c12 = mk_comment(12, 9, 0, THREADSYNC__STATUS__VISIBLE, "nine", 1);
    Threadsync__Comment c3 = mk_comment(3, 1, 2, THREADSYNC__STATUS__VISIBLE, "reply", 1);
    Threadsync__Comment *cms2[] = {&c3, &c12};
    Threadsync__SnapshotChunk ch2 = THREADSYNC__SNAPSHOT_CHUNK__INIT;
    ch2.comments = cms2;
    ch2.n_comments = 2;
    ck_assert_int_eq(ts_mirror_db_snapshot_apply_chunk(db, &ch2, &touched), TS_OK);
    ck_assert_int_eq(ts_mirror_db_snapshot_end(db, 99, NULL), TS_E_INVALID_ARGUMENT);
    ck_assert_uint_eq(cursor_of(db), 10);
    ck_assert_int_eq(ts_mirror_db_snapshot_end(db, 100, NULL), TS_OK);
    ck_assert_uint_eq(cursor_of(db), 100);
    ck_assert_uint_eq(touched.n, 2);
    ck_assert(ts_mirror_touched_has(&touched, 1));
    ck_assert(ts_mirror_touched_has(&touched, 9));
    ts_mirror_touched_clear(&touched);

    /* Events after S: the v2 of comment 11 (older than what the snapshot
     * carried) and a new comment 13. */
    Threadsync__Comment c11v2 = mk_comment(11, 1, 3, THREADSYNC__STATUS__VISIBLE, "v2 text", 2);
    Threadsync__Comment c13 = mk_comment(13, 9, 12, THREADSYNC__STATUS__VISIBLE, "new", 1);
    Threadsync__Thread t9b = mk_thread(9, "site/nine", 3, 2);
    struct batch e;
    batch_init(&e, 120);
    batch_add(&e, 101, &t1, &c11v2);
    batch_add(&e, 110, &t9b, &c13);
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &e.ev, &touched), TS_OK);
    ck_assert_uint_eq(touched.n, 1);
    ck_assert(ts_mirror_touched_has(&touched, 9));
    char *body = body_of(db, 1, 11);
    ck_assert_str_eq(body, "v3 text");
    free(body);
    body = body_of(db, 1, 2);
    ck_assert_str_eq(body, "snap edit");
    free(body);
    ck_assert_uint_eq(cursor_of(db), 120);
    struct ts_mirror_counts c = counts_of(db, 0);
    ck_assert_uint_eq(c.threads, 2);
    ck_assert_uint_eq(c.comments, 5);
    ck_assert_uint_eq(counts_of(db, 9).comments, 2);
    ck_assert_uint_eq(counts_of(db, 9).threads, 1);
    ts_mirror_touched_free(&touched);
    ts_mirror_db_close(db);
}
END_TEST

/* The final state of one thread, as the server would hold it. */
#define NC 6
static Threadsync__Thread fin_t;
static Threadsync__Comment fin_c[NC];
static const Threadsync__Comment *fin_p[NC];

static void final_state(void)
{
    fin_t = mk_thread(1, "site/2021/\xE2\x80\x9Cquoted\xE2\x80\x9D", 9, 4);
    fin_c[0] = mk_comment(2, 1, 0, THREADSYNC__STATUS__DELETED, "", 3);
    fin_c[1] = mk_comment(3, 1, 2, THREADSYNC__STATUS__VISIBLE, "reply \xF0\x9F\x98\x80", 1);
    fin_c[2] = mk_comment(4, 1, 3, THREADSYNC__STATUS__VISIBLE, "e\xCC\x81t\xC3\xA9", 2);
    fin_c[2].edited_at_ms = 1700000000123;
    fin_c[3] = mk_comment(5, 1, 0, THREADSYNC__STATUS__HIDDEN, "hidden", 2);
    fin_c[4] = mk_comment(6, 1, 5, THREADSYNC__STATUS__VISIBLE, "under hidden", 1);
    fin_c[5] = mk_comment(7, 1, 0, THREADSYNC__STATUS__VISIBLE, "<b>last</b>", 1);
    for (int i = 0; i < NC; i++)
        fin_p[i] = &fin_c[i];
}

START_TEST(test_snapshot_chunks_in_group)
{
    /* Chunks may share a group: nothing is visible to others until it
     * commits, closing forgets the group's chunks (the cursor had not moved
     * for them), and end commits the group before it moves the cursor. */
    struct ts_mirror_db *db = open_db();
    Threadsync__Thread t9 = mk_thread(9, "site/nine", 2, 2);
    Threadsync__Comment c12 = mk_comment(12, 9, 0, THREADSYNC__STATUS__VISIBLE, "nine", 1);
    Threadsync__Comment c14 = mk_comment(14, 9, 12, THREADSYNC__STATUS__VISIBLE, "reply", 1);
    Threadsync__Thread *ths[] = {&t9};
    Threadsync__Comment *c1[] = {&c12}, *c2[] = {&c14};
    Threadsync__SnapshotChunk a = THREADSYNC__SNAPSHOT_CHUNK__INIT;
    Threadsync__SnapshotChunk b = THREADSYNC__SNAPSHOT_CHUNK__INIT;
    a.threads = ths;
    a.n_threads = 1;
    a.comments = c1;
    a.n_comments = 1;
    b.comments = c2;
    b.n_comments = 1;
    for (int round = 0; round < 2; round++) {
        ck_assert_int_eq(ts_mirror_db_snapshot_begin(db, 50), TS_OK);
        ck_assert_int_eq(ts_mirror_db_group_begin(db), TS_OK);
        ck_assert_int_eq(ts_mirror_db_snapshot_apply_chunk(db, &a, NULL), TS_OK);
        ck_assert_int_eq(ts_mirror_db_snapshot_apply_chunk(db, &b, NULL), TS_OK);
        ck_assert(ts_mirror_db_group_is_open(db));
        ck_assert_int_eq(committed_int("SELECT count(*) FROM comments"), 0);
        if (round == 0) { /* killed here */
            ts_mirror_db_close(db);
            db = open_db();
            ck_assert_int_eq(committed_int("SELECT count(*) FROM threads"), 0);
            ck_assert_uint_eq(cursor_of(db), 0);
        }
    }
    ck_assert_int_eq(ts_mirror_db_snapshot_end(db, 50, NULL), TS_OK);
    ck_assert(!ts_mirror_db_group_is_open(db));
    ck_assert_int_eq(committed_int("SELECT count(*) FROM comments"), 2);
    ck_assert_int_eq(committed_int("SELECT version FROM threads WHERE id = 9"), 2);
    ck_assert_uint_eq(committed_cursor(), 50);
    ts_mirror_db_close(db);
}
END_TEST

START_TEST(test_digest_same_across_batchings)
{
    final_state();
    char want[65];
    ck_assert_int_eq(ts_digest_thread(&fin_t, fin_p, NC, want), TS_OK);

    /* Mirror A: one batch carrying the final state. */
    struct ts_mirror_db *a = open_db();
    struct batch b;
    batch_init(&b, 50);
    for (int i = 0; i < NC; i++)
        batch_add(&b, (uint64_t)i + 2, &fin_t, &fin_c[i]);
    ck_assert_int_eq(ts_mirror_db_apply_events(a, &b.ev, NULL), TS_OK);
    char da[65];
    ck_assert_int_eq(ts_mirror_db_digest(a, 1, da), TS_OK);
    ck_assert_str_eq(da, want);
    ts_mirror_db_close(a);

    /* Mirror B: history in many small batches, newest first for some, with
     * duplicates, older versions arriving late, a snapshot in the middle,
     * and bodies of non-visible comments present (a moderator's view). */
    snprintf(mdir, sizeof(mdir), "%s/b", tmpdir);
    struct ts_mirror_db *db = open_db();
    Threadsync__Thread t_old = mk_thread(1, fin_t.key, 2, 1);
    Threadsync__Comment c2v1 = mk_comment(2, 1, 0, THREADSYNC__STATUS__VISIBLE, "was here", 1);
    Threadsync__Comment c2v2 = mk_comment(2, 1, 0, THREADSYNC__STATUS__VISIBLE, "edited", 2);
    Threadsync__Comment c4v1 = mk_comment(4, 1, 3, THREADSYNC__STATUS__VISIBLE, "et\xC3\xA9", 1);
    Threadsync__Comment c5v1 = mk_comment(5, 1, 0, THREADSYNC__STATUS__PENDING, "hidden", 1);
    Threadsync__Comment c5mod = fin_c[3]; /* HIDDEN with its body, as a moderator sees it */

    struct batch x;
    batch_init(&x, 5);
    batch_add(&x, 5, &fin_t, &fin_c[5]); /* newest thread state first */
    batch_add(&x, 6, &t_old, &c2v2);
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &x.ev, NULL), TS_OK);
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &x.ev, NULL), TS_OK); /* duplicate */
    batch_init(&x, 7);
    batch_add(&x, 2, &t_old, &c2v1); /* late, older */
    batch_add(&x, 3, &t_old, &c4v1);
    batch_add(&x, 4, &t_old, &c5v1);
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &x.ev, NULL), TS_OK);
    char mid[65];
    ck_assert_int_eq(ts_mirror_db_digest(db, 1, mid), TS_OK);
    ck_assert_str_ne(mid, want);

    ck_assert_int_eq(ts_mirror_db_snapshot_begin(db, 30), TS_OK);
    Threadsync__Thread *ths[] = {&fin_t};
    Threadsync__Comment *cms[] = {&fin_c[0], &fin_c[1], &c5mod};
    Threadsync__SnapshotChunk ch = THREADSYNC__SNAPSHOT_CHUNK__INIT;
    ch.threads = ths;
    ch.n_threads = 1;
    ch.comments = cms;
    ch.n_comments = 3;
    ck_assert_int_eq(ts_mirror_db_snapshot_apply_chunk(db, &ch, NULL), TS_OK);
    ck_assert_int_eq(ts_mirror_db_snapshot_end(db, 30, NULL), TS_OK);
    batch_init(&x, 60);
    batch_add(&x, 31, &t_old, &fin_c[2]);
    batch_add(&x, 32, &t_old, &fin_c[4]);
    batch_add(&x, 33, &t_old, &c2v1);
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &x.ev, NULL), TS_OK);

    char db_[65];
    ck_assert_int_eq(ts_mirror_db_digest(db, 1, db_), TS_OK);
    ck_assert_str_eq(db_, want);
    ck_assert_int_eq(ts_mirror_db_digest(db, 404, db_), TS_E_NOT_FOUND);

    /* One more change anywhere makes the digests differ. */
    Threadsync__Comment c7v2 = fin_c[5];
    c7v2.version = 2;
    c7v2.body = "<b>last</b>!";
    batch_init(&x, 61);
    batch_add(&x, 61, &fin_t, &c7v2);
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &x.ev, NULL), TS_OK);
    ck_assert_int_eq(ts_mirror_db_digest(db, 1, db_), TS_OK);
    ck_assert_str_ne(db_, want);
    ts_mirror_db_close(db);
}
END_TEST

struct walk {
    uint64_t ids[8];
    int n;
    int stop_after;
};

static int walk_cb(void *arg, const Threadsync__Thread *t)
{
    struct walk *w = arg;
    w->ids[w->n++] = t->id;
    ck_assert_ptr_nonnull(t->key);
    return w->n == w->stop_after ? 7 : 0;
}

static int walk_load_cb(void *arg, const Threadsync__Thread *t)
{
    struct ts_mirror_db *db = arg;
    struct ts_mirror_thread *mt;
    ck_assert_int_eq(ts_mirror_db_thread_by_id(db, t->id, &mt), TS_OK);
    ck_assert_str_eq(mt->thread.key, t->key);
    ts_mirror_thread_free(mt);
    return 0;
}

START_TEST(test_foreach_and_counts)
{
    struct ts_mirror_db *db = open_db();
    Threadsync__Thread t30 = mk_thread(30, "c", 1, 0);
    Threadsync__Thread t10 = mk_thread(10, "a", 1, 1);
    Threadsync__Thread t20 = mk_thread(20, "b", 1, 0);
    Threadsync__Comment c11 = mk_comment(11, 10, 0, THREADSYNC__STATUS__VISIBLE, "x", 1);
    Threadsync__Comment c21 = mk_comment(21, 20, 0, THREADSYNC__STATUS__PENDING, "", 1);
    struct batch b;
    batch_init(&b, 31);
    batch_add(&b, 10, &t10, &c11);
    batch_add(&b, 20, &t20, &c21);
    batch_add(&b, 30, &t30, NULL);
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &b.ev, NULL), TS_OK);

    struct walk w = {.stop_after = 0};
    ck_assert_int_eq(ts_mirror_db_foreach_thread(db, walk_cb, &w), 0);
    ck_assert_int_eq(w.n, 3);
    ck_assert_uint_eq(w.ids[0], 10);
    ck_assert_uint_eq(w.ids[1], 20);
    ck_assert_uint_eq(w.ids[2], 30);
    struct walk w2 = {.stop_after = 2};
    ck_assert_int_eq(ts_mirror_db_foreach_thread(db, walk_cb, &w2), 7);
    ck_assert_int_eq(w2.n, 2);
    /* Loading threads from inside the walk works, and the walk restarts
     * cleanly after a stopped one. */
    ck_assert_int_eq(ts_mirror_db_foreach_thread(db, walk_load_cb, db), 0);

    struct ts_mirror_counts c = counts_of(db, 0);
    ck_assert_uint_eq(c.threads, 3);
    ck_assert_uint_eq(c.comments, 2);
    ck_assert_uint_eq(c.visible, 1);
    c = counts_of(db, 20);
    ck_assert_uint_eq(c.threads, 1);
    ck_assert_uint_eq(c.comments, 1);
    ck_assert_uint_eq(c.visible, 0);
    c = counts_of(db, 999);
    ck_assert_uint_eq(c.threads, 0);
    ts_mirror_db_close(db);
}
END_TEST

START_TEST(test_settings)
{
    struct ts_mirror_db *db = open_db();
    char *v = (char *)1;
    ck_assert_int_eq(ts_mirror_db_setting_get(db, "filter", &v), TS_OK);
    ck_assert_ptr_null(v);
    ck_assert_int_eq(ts_mirror_db_setting_set(db, "filter", "keys\na\n"), TS_OK);
    ck_assert_int_eq(ts_mirror_db_setting_set(db, "filter", "all"), TS_OK);
    /* The cursor and the schema version are not settings. */
    ck_assert_int_eq(ts_mirror_db_setting_set(db, "last_seq", "99"), TS_E_INVALID_ARGUMENT);
    ck_assert_int_eq(ts_mirror_db_setting_set(db, "schema_version", "2"), TS_E_INVALID_ARGUMENT);
    ck_assert_int_eq(ts_mirror_db_setting_get(db, "last_seq", &v), TS_E_INVALID_ARGUMENT);
    ts_mirror_db_close(db);
    db = open_db();
    ck_assert_uint_eq(cursor_of(db), 0);
    ck_assert_int_eq(ts_mirror_db_setting_get(db, "filter", &v), TS_OK);
    ck_assert_str_eq(v, "all");
    free(v);
    ts_mirror_db_close(db);
}
END_TEST

static Threadsync__SnapshotChunk mk_chunk(Threadsync__Thread **ths, size_t n_threads,
                                          Threadsync__Comment **cms, size_t n_comments)
{
    Threadsync__SnapshotChunk ch = THREADSYNC__SNAPSHOT_CHUNK__INIT;
    ch.threads = ths;
    ch.n_threads = n_threads;
    ch.comments = cms;
    ch.n_comments = n_comments;
    return ch;
}

START_TEST(test_threads_scan)
{
    /* One pass over comments gives each thread exactly what thread_by_id
     * gives (same digest: every field of every comment, in id order), a
     * missing id gives NULL, and during a fill it needs no index: the fill
     * goes on, while bulk_durable makes its commits durable. */
    char r1[65], r6[65];
    reference_digests(r1, r6);
    struct ts_mirror_db *db = open_db();
    ck_assert_int_eq(ts_mirror_db_bulk_begin(db), TS_OK);
    struct batch b1, b2, b3;
    first_batch(&b1);
    second_batch(&b2, THREADSYNC__STATUS__VISIBLE);
    third_batch(&b3);
    ck_assert_int_eq(ts_mirror_db_group_begin(db), TS_OK);
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &b1.ev, NULL), TS_OK);
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &b2.ev, NULL), TS_OK);
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &b3.ev, NULL), TS_OK);
    ck_assert_int_eq(ts_mirror_db_bulk_durable(db), TS_OK); /* commits the group */
    ck_assert(!ts_mirror_db_group_is_open(db));
    ck_assert_uint_eq(committed_cursor(), 60);
    ck_assert_int_eq(committed_int(has_index_sql), 0);

    const uint64_t ids[] = {1, 3, 6};
    struct ts_mirror_scan *scan;
    ck_assert_int_eq(ts_mirror_db_threads_scan(db, ids, 3, &scan), TS_OK);
    ck_assert_int_eq(committed_int(has_index_sql), 0); /* still a fill */
    ck_assert_ptr_null(ts_mirror_scan_thread(scan, 1));
    ck_assert_ptr_null(ts_mirror_scan_thread(scan, 3));
    const struct ts_mirror_thread *t1 = ts_mirror_scan_thread(scan, 0);
    const struct ts_mirror_thread *t6 = ts_mirror_scan_thread(scan, 2);
    ck_assert_ptr_nonnull(t1);
    ck_assert_ptr_nonnull(t6);
    char d[65];
    ck_assert_int_eq(ts_digest_thread(&t1->thread, (const Threadsync__Comment *const *)t1->comments,
                                      t1->n_comments, d),
                     TS_OK);
    ck_assert_str_eq(d, r1);
    ck_assert_int_eq(ts_digest_thread(&t6->thread, (const Threadsync__Comment *const *)t6->comments,
                                      t6->n_comments, d),
                     TS_OK);
    ck_assert_str_eq(d, r6);
    ck_assert_uint_eq(t1->n_comments, 4);
    for (size_t i = 1; i < t1->n_comments; i++)
        ck_assert_uint_lt(t1->comments[i - 1]->id, t1->comments[i]->id);
    ts_mirror_scan_free(scan);

    /* Ids beyond every thread: nothing, not an error. */
    const uint64_t none[] = {1000};
    ck_assert_int_eq(ts_mirror_db_threads_scan(db, none, 1, &scan), TS_OK);
    ck_assert_ptr_null(ts_mirror_scan_thread(scan, 0));
    ts_mirror_scan_free(scan);

    uint64_t bytes = 0;
    ck_assert_int_eq(ts_mirror_db_size(db, &bytes), TS_OK);
    ck_assert_uint_gt(bytes, 0);
    ck_assert_int_eq(ts_mirror_db_bulk_end(db), TS_OK);
    ck_assert_int_eq(committed_int(has_index_sql), 1);
    ts_mirror_db_close(db);
}
END_TEST

START_TEST(test_bulk_snapshot_staged)
{
    /* During a bulk fill a snapshot's comments, arriving thread by thread
     * (ids out of order), are staged and stored only at its end; a close
     * before the end forgets them with the cursor. */
    struct ts_mirror_db *db = open_db();
    ck_assert_int_eq(ts_mirror_db_bulk_begin(db), TS_OK);
    Threadsync__Thread t2 = mk_thread(2, "two", 3, 2);
    Threadsync__Thread t1 = mk_thread(1, "one", 4, 3);
    Threadsync__Comment c5 = mk_comment(5, 2, 0, THREADSYNC__STATUS__VISIBLE, "five", 1);
    Threadsync__Comment c8 = mk_comment(8, 2, 5, THREADSYNC__STATUS__HIDDEN, "eight", 2);
    Threadsync__Comment c3 = mk_comment(3, 1, 0, THREADSYNC__STATUS__VISIBLE, "three", 1);
    Threadsync__Comment c7 = mk_comment(7, 1, 3, THREADSYNC__STATUS__VISIBLE, "seven", 1);
    Threadsync__Comment c4 = mk_comment(4, 1, 3, THREADSYNC__STATUS__VISIBLE, "four", 2);
    Threadsync__Thread *tha[] = {&t2}, *thb[] = {&t1};
    Threadsync__Comment *cma[] = {&c5, &c8}, *cmb[] = {&c3, &c7}, *cmc[] = {&c4};
    Threadsync__SnapshotChunk a = mk_chunk(tha, 1, cma, 2);
    Threadsync__SnapshotChunk b = mk_chunk(thb, 1, cmb, 2);
    Threadsync__SnapshotChunk c = mk_chunk(NULL, 0, cmc, 1);
    struct ts_mirror_touched touched = TS_MIRROR_TOUCHED_INIT;

    ck_assert_int_eq(ts_mirror_db_snapshot_begin(db, 40), TS_OK);
    ck_assert_int_eq(ts_mirror_db_snapshot_apply_chunk(db, &a, &touched), TS_OK);
    ck_assert_int_eq(ts_mirror_db_snapshot_apply_chunk(db, &b, &touched), TS_OK);
    ck_assert_uint_eq(counts_of(db, 0).threads, 2);
    ck_assert_uint_eq(counts_of(db, 0).comments, 0);
    ts_mirror_db_close(db);
    ck_assert_int_eq(committed_int("SELECT count(*) FROM comments"), 0);
    ck_assert_int_eq(committed_int("SELECT value FROM meta WHERE key = 'last_seq'"), 0);

    /* Again, to the end, with a restart: what the first begin staged goes. */
    db = open_db();
    ck_assert_int_eq(ts_mirror_db_bulk_begin(db), TS_OK);
    ck_assert_int_eq(ts_mirror_db_snapshot_begin(db, 40), TS_OK);
    ck_assert_int_eq(ts_mirror_db_snapshot_apply_chunk(db, &c, NULL), TS_OK);
    ts_mirror_touched_clear(&touched);
    ck_assert_int_eq(ts_mirror_db_snapshot_begin(db, 50), TS_OK);
    ck_assert_int_eq(ts_mirror_db_group_begin(db), TS_OK);
    ck_assert_int_eq(ts_mirror_db_snapshot_apply_chunk(db, &a, &touched), TS_OK);
    ck_assert_int_eq(ts_mirror_db_group_end(db), TS_OK);
    ck_assert_int_eq(ts_mirror_db_snapshot_apply_chunk(db, &b, &touched), TS_OK);
    ck_assert_uint_eq(touched.n, 0); /* the thread rows stored before: unchanged */
    ck_assert_int_eq(ts_mirror_db_snapshot_end(db, 50, &touched), TS_OK);
    ck_assert_uint_eq(touched.n, 2);
    ck_assert(ts_mirror_touched_has(&touched, 1));
    ck_assert(ts_mirror_touched_has(&touched, 2));
    ck_assert_uint_eq(cursor_of(db), 50);
    ck_assert_int_eq(committed_int("SELECT count(*) FROM comments"), 4);
    ck_assert_int_eq(committed_int("SELECT count(*) FROM comments WHERE id = 4"), 0);
    ck_assert_int_eq(committed_int("SELECT thread_id * 100 + parent_id FROM comments "
                                   "WHERE id = 8 AND status = 'HIDDEN' AND version = 2 "
                                   "AND body = '' AND author_name = ''"),
                     205);
    char *body = body_of(db, 1, 7);
    ck_assert_str_eq(body, "seven");
    free(body);
    ck_assert_uint_eq(counts_of(db, 1).comments, 2);
    ck_assert_uint_eq(counts_of(db, 2).visible, 1);
    ts_mirror_touched_free(&touched);
    ts_mirror_db_close(db);
}
END_TEST

START_TEST(test_bulk_snapshot_keeps_newer_rows)
{
    /* A staged snapshot meets rows already stored (a fill after a filter
     * change): a stored version higher or equal wins, and touched holds
     * exactly the threads whose rows changed. */
    struct ts_mirror_db *db = open_db();
    struct batch b;
    first_batch(&b); /* cursor 10, thread 1 v3, comments 2,3 v1 */
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &b.ev, NULL), TS_OK);
    Threadsync__Comment c2v5 = mk_comment(2, 1, 0, THREADSYNC__STATUS__VISIBLE, "newest", 5);
    struct batch b2;
    batch_init(&b2, 11);
    batch_add(&b2, 11, NULL, &c2v5);
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &b2.ev, NULL), TS_OK);

    ck_assert_int_eq(ts_mirror_db_bulk_begin(db), TS_OK);
    ck_assert_int_eq(ts_mirror_db_snapshot_begin(db, 60), TS_OK);
    /* Thread 1 as stored (v3), comment 2 older than stored, comment 3 the
     * same version with other text; thread 6 new with comment 9. */
    Threadsync__Thread t1 = mk_thread(1, "site/2021/one", 3, 2);
    Threadsync__Thread t6 = mk_thread(6, "six", 1, 1);
    Threadsync__Comment c2 = mk_comment(2, 1, 0, THREADSYNC__STATUS__VISIBLE, "older", 4);
    Threadsync__Comment c3 = mk_comment(3, 1, 2, THREADSYNC__STATUS__VISIBLE, "same v", 1);
    Threadsync__Comment c9 = mk_comment(9, 6, 0, THREADSYNC__STATUS__VISIBLE, "nine", 1);
    Threadsync__Thread *ths[] = {&t6, &t1};
    Threadsync__Comment *cms[] = {&c9, &c3, &c2};
    Threadsync__SnapshotChunk ch = mk_chunk(ths, 2, cms, 3);
    struct ts_mirror_touched touched = TS_MIRROR_TOUCHED_INIT;
    ck_assert_int_eq(ts_mirror_db_snapshot_apply_chunk(db, &ch, &touched), TS_OK);
    ck_assert_uint_eq(touched.n, 1); /* thread 6's row */
    ts_mirror_touched_clear(&touched);
    ck_assert_int_eq(ts_mirror_db_snapshot_end(db, 60, &touched), TS_OK);
    ck_assert_uint_eq(touched.n, 1);
    ck_assert(ts_mirror_touched_has(&touched, 6));
    ck_assert_int_eq(committed_int("SELECT version FROM comments WHERE id = 2"), 5);
    ck_assert_int_eq(committed_int("SELECT count(*) FROM comments WHERE id = 3 AND body = 'reply'"),
                     1);
    ck_assert_int_eq(committed_int("SELECT count(*) FROM comments"), 3);
    char *body = body_of(db, 1, 2);
    ck_assert_str_eq(body, "newest");
    free(body);
    ck_assert_uint_eq(cursor_of(db), 60);
    ts_mirror_touched_free(&touched);
    ts_mirror_db_close(db);
}
END_TEST

/* 96 events over threads 1..3, three multi-row INSERTs' worth: comments
 * 1..95 new (20 with status_of_20), comment 5 again
 * (event 40, version 2, hidden: an id repeated inside one batch), comment
 * 70 with version 1 while the mirror holds version 9. */
#define NLONG 96
struct long_batch {
    Threadsync__Events ev;
    Threadsync__Event e[NLONG], *pe[NLONG];
    Threadsync__Thread t[NLONG];
    Threadsync__Comment c[NLONG];
};

static void long_batch_make(struct long_batch *b, Threadsync__Status status_of_20)
{
    static const char *const keys[] = {"site/l1", "site/l2", "site/l3"};
    threadsync__events__init(&b->ev);
    b->ev.events = b->pe;
    b->ev.n_events = NLONG;
    b->ev.last_seq = 1000;
    for (unsigned i = 0; i < NLONG; i++) {
        uint64_t th = 1 + i % 3, id = i == 40 ? 5 : i < 40 ? i + 1 : i;
        b->t[i] = mk_thread(th, keys[th - 1], 100 + i, i);
        b->c[i] = mk_comment(id, th, 0, THREADSYNC__STATUS__VISIBLE, "long", i == 40 ? 2 : 1);
        if (i == 40)
            b->c[i].status = THREADSYNC__STATUS__HIDDEN;
        if (id == 20)
            b->c[i].status = status_of_20;
        threadsync__event__init(&b->e[i]);
        b->e[i].seq = 900 + i;
        b->e[i].thread = &b->t[i];
        b->e[i].comment = &b->c[i];
        b->pe[i] = &b->e[i];
    }
}

START_TEST(test_long_batch_like_one_by_one)
{
    /* A batch of more comments than one multi-row INSERT takes stores,
     * touches and refuses exactly what the same events applied one batch
     * each do: an id repeated in it, or already stored, takes the row by
     * row path, and a bad status refuses all of it. */
    char ref[3][65];
    struct ts_mirror_touched t_ref = TS_MIRROR_TOUCHED_INIT, t = TS_MIRROR_TOUCHED_INIT;
    struct long_batch lb;
    long_batch_make(&lb, THREADSYNC__STATUS__VISIBLE);
    Threadsync__Comment newer = mk_comment(70, 2, 0, THREADSYNC__STATUS__VISIBLE, "kept", 9);
    Threadsync__Thread t2 = mk_thread(2, "site/l2", 1, 0);
    for (int run = 0; run < 2; run++) {
        struct ts_mirror_db *db = open_db();
        struct batch pre;
        batch_init(&pre, 1);
        batch_add(&pre, 1, &t2, &newer);
        ck_assert_int_eq(ts_mirror_db_apply_events(db, &pre.ev, NULL), TS_OK);
        if (run == 0) {
            for (unsigned i = 0; i < NLONG; i++) {
                Threadsync__Events one = lb.ev;
                one.events = &lb.pe[i];
                one.n_events = 1;
                ck_assert_int_eq(ts_mirror_db_apply_events(db, &one, &t_ref), TS_OK);
            }
        } else {
            ck_assert_int_eq(ts_mirror_db_apply_events(db, &lb.ev, &t), TS_OK);
        }
        ck_assert_uint_eq(cursor_of(db), 1000);
        ck_assert_uint_eq(counts_of(db, 0).comments, 95); /* 70 was there */
        char *body = body_of(db, 2, 70);
        ck_assert_str_eq(body, "kept");
        free(body);
        body = body_of(db, 2, 5);
        ck_assert_str_eq(body, ""); /* hidden by its second version */
        free(body);
        for (uint64_t th = 1; th <= 3; th++) {
            char d[65];
            ck_assert_int_eq(ts_mirror_db_digest(db, th, d), TS_OK);
            if (run == 0)
                strcpy(ref[th - 1], d);
            else
                ck_assert_str_eq(d, ref[th - 1]);
        }
        ts_mirror_db_close(db);
        teardown();
        setup();
    }
    ck_assert_uint_eq(t.n, t_ref.n);
    for (size_t i = 0; i < t.n; i++)
        ck_assert_uint_eq(t.ids[i], t_ref.ids[i]);

    /* Comment 20 (in the first INSERT, all new) with a status no CHECK
     * accepts. */
    struct ts_mirror_db *db = open_db();
    long_batch_make(&lb, (Threadsync__Status)9);
    ts_mirror_touched_clear(&t);
    ck_assert_int_eq(ts_mirror_db_apply_events(db, &lb.ev, &t), TS_E_IO);
    ck_assert_uint_eq(t.n, 0);
    ck_assert_uint_eq(cursor_of(db), 0);
    ck_assert_uint_eq(counts_of(db, 0).comments, 0);
    ts_mirror_db_close(db);
    ts_mirror_touched_free(&t);
    ts_mirror_touched_free(&t_ref);
}
END_TEST

START_TEST(test_touched_set)
{
    struct ts_mirror_touched t = TS_MIRROR_TOUCHED_INIT;
    for (uint64_t i = 0; i < 100; i++)
        ck_assert_int_eq(ts_mirror_touched_add(&t, (i * 37) % 50 + 1), TS_OK);
    ck_assert_uint_eq(t.n, 50);
    for (size_t i = 1; i < t.n; i++)
        ck_assert_uint_lt(t.ids[i - 1], t.ids[i]);
    ck_assert(ts_mirror_touched_has(&t, 50));
    ck_assert(!ts_mirror_touched_has(&t, 51));
    ts_mirror_touched_clear(&t);
    ck_assert_uint_eq(t.n, 0);
    ck_assert(!ts_mirror_touched_has(&t, 1));
    ts_mirror_touched_free(&t);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ts_mirror_db");
    TCase *tc = tcase_create("db");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_open_schema);
    tcase_add_test(tc, test_apply_and_read);
    tcase_add_test(tc, test_duplicate_batch_changes_nothing);
    tcase_add_test(tc, test_older_version_ignored);
    tcase_add_test(tc, test_public_view_stored);
    tcase_add_test(tc, test_replaced_text_scrubbed);
    tcase_add_test(tc, test_failed_batch_moves_nothing);
    tcase_add_test(tc, test_crash_mid_batch);
    tcase_add_test(tc, test_group_commits_whole_batches);
    tcase_add_test(tc, test_crash_in_group_resumes);
    tcase_add_test(tc, test_group_failure_rolls_back_group);
    tcase_add_test(tc, test_group_ended_by_other_writes);
    tcase_add_test(tc, test_replaced_text_scrubbed_after_group);
    tcase_add_test(tc, test_thread_versions_within_batch);
    tcase_add_test(tc, test_thread_versions_across_group);
    tcase_add_test(tc, test_bulk_fill);
    tcase_add_test(tc, test_page_size);
    tcase_add_test(tc, test_bulk_fill_wal_not_checkpointed);
    tcase_add_test(tc, test_long_batch_like_one_by_one);
    tcase_add_test(tc, test_snapshot_then_events);
    tcase_add_test(tc, test_snapshot_chunks_in_group);
    tcase_add_test(tc, test_threads_scan);
    tcase_add_test(tc, test_bulk_snapshot_staged);
    tcase_add_test(tc, test_bulk_snapshot_keeps_newer_rows);
    tcase_add_test(tc, test_digest_same_across_batchings);
    tcase_add_test(tc, test_foreach_and_counts);
    tcase_add_test(tc, test_touched_set);
    tcase_add_test(tc, test_settings);
    suite_add_tcase(s, tc);
    return ts_check_run(s);
}
