/*
 * ts_mirror_db: SQLite storage of a mirror. See ts_mirror_db.h for the schema
 * and the invariants (cursor never ahead of the data, upsert by version,
 * public view only).
 *
 * Every statement is prepared once at open and reset after each use, so a
 * batch costs no SQL parsing. A comment is upserted as an INSERT, then, when
 * its id is taken, an "UPDATE ... WHERE version < new version": a stale or
 * repeated row is a no-op that sqlite3_changes() reports as 0, which is how
 * touched stays exact; a batch's comments go 32 to a multi-row INSERT
 * first (insert_comments), and only when that meets a taken id one by
 * one. A thread's stored version is read first (once per
 * transaction, see defer_thread), and only a newer one is written.
 * A snapshot during a bulk fill stages its comments in the TEMP table
 * ts_snap_stage and moves them in one sorted INSERT ... SELECT at its end
 * (see snapshot_apply_chunk); touched is then read from the stage by the
 * same version rule before the move.
 */
#include "ts_mirror_db.h"

#include "ts_arena.h"
#include "ts_array.h"
#include "ts_buf.h"
#include "ts_digest.h"
#include "ts_err.h"
#include "ts_log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int (*ts__mirror_db_fault_hook)(uint64_t seq);

enum {
    S_BEGIN,
    S_COMMIT,
    S_ROLLBACK,
    S_THREAD_INSERT,
    S_THREAD_UPDATE,
    S_THREAD_UPDATE_KEY,
    S_COMMENT_INSERT,
    S_COMMENT_INSERT_MANY,
    S_COMMENT_UPDATE,
    S_CURSOR_GET,
    S_CURSOR_SET,
    S_THREAD_BY_ID,
    S_THREAD_BY_KEY,
    S_COMMENTS_OF,
    S_COMMENTS_SCAN,
    S_THREADS_ALL,
    S_COUNT_ALL,
    S_COUNT_THREAD,
    S_THREAD_VERSION,
    S_STAGE_INSERT,
    S_STAGE_TOUCHED,
    S_STAGE_MOVE,
    S_STAGE_CLEAR,
    S__COUNT
};

#define THREAD_COLS "id, key, title, url, created_at_ms, locked, comment_count, version"
#define COMMENT_COLS                                                                               \
    "id, thread_id, parent_id, author_name, body, created_at_ms, edited_at_ms, status, version"
/* Spelled as comparisons, not IN (...): SQLite codes an IN list of more
 * than two constants in a CHECK as an ephemeral table built afresh for
 * every row written, which was over half of a catch-up's insert
 * instructions. Mirrors created before keep their IN form (the same rule);
 * only their inserts stay slower. */
#define STATUS_CHECK                                                                               \
    "CHECK (status = 'VISIBLE' OR status = 'PENDING' OR status = 'HIDDEN' OR "                     \
    "status = 'DELETED')"

/* Comments one S_COMMENT_INSERT_MANY statement inserts (see
 * insert_comments); row r's 9 parameters are 9 * r + 1 .. 9 * r + 9. */
#define INSERT_MANY 32
#define ROW9 "(?, ?, ?, ?, ?, ?, ?, ?, ?)"
#define ROWS4 ROW9 ", " ROW9 ", " ROW9 ", " ROW9
#define ROWS32 ROWS4 ", " ROWS4 ", " ROWS4 ", " ROWS4 ", " ROWS4 ", " ROWS4 ", " ROWS4 ", " ROWS4

static const char *const stmt_sql[S__COUNT] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_THREAD_INSERT] =
        "INSERT INTO threads(" THREAD_COLS ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    /* Without key: setting it, even to itself, rewrites its UNIQUE index
     * entry, and a thread's key never changes in practice (its id was
     * given to the key). Should one change, S_THREAD_UPDATE_KEY does. */
    [S_THREAD_UPDATE] = "UPDATE threads SET title = ?3, url = ?4, created_at_ms = ?5, "
                        "locked = ?6, comment_count = ?7, version = ?8 "
                        "WHERE id = ?1 AND version < ?8",
    [S_THREAD_UPDATE_KEY] =
        "UPDATE threads SET key = ?2, title = ?3, url = ?4, created_at_ms = ?5, "
        "locked = ?6, comment_count = ?7, version = ?8 "
        "WHERE id = ?1 AND version < ?8",
    [S_COMMENT_INSERT] =
        "INSERT INTO comments(id, thread_id, parent_id, author_name, body, created_at_ms, "
        "edited_at_ms, status, version) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [S_COMMENT_INSERT_MANY] = "INSERT INTO comments(" COMMENT_COLS ") VALUES " ROWS32,
    [S_COMMENT_UPDATE] = "UPDATE comments SET thread_id = ?2, parent_id = ?3, author_name = ?4, "
                         "body = ?5, created_at_ms = ?6, edited_at_ms = ?7, status = ?8, "
                         "version = ?9 WHERE id = ?1 AND version < ?9",
    [S_CURSOR_GET] = "SELECT value FROM meta WHERE key = 'last_seq'",
    [S_CURSOR_SET] = "INSERT INTO meta(key, value) VALUES('last_seq', ?1) "
                     "ON CONFLICT(key) DO UPDATE SET value = excluded.value "
                     "WHERE excluded.value > meta.value",
    [S_THREAD_BY_ID] = "SELECT " THREAD_COLS " FROM threads WHERE id = ?1",
    [S_THREAD_BY_KEY] = "SELECT " THREAD_COLS " FROM threads WHERE key = ?1",
    [S_COMMENTS_OF] = "SELECT id, thread_id, parent_id, author_name, body, created_at_ms, "
                      "edited_at_ms, status, version FROM comments WHERE thread_id = ?1 "
                      "ORDER BY id",
    /* A pass over the table in rowid order: '+' keeps comments_thread out
     * of it (see ts_mirror_db_threads_scan). */
    [S_COMMENTS_SCAN] = "SELECT " COMMENT_COLS " FROM comments "
                        "WHERE +thread_id BETWEEN ?1 AND ?2 ORDER BY id",
    [S_THREADS_ALL] = "SELECT " THREAD_COLS " FROM threads ORDER BY id",
    [S_COUNT_ALL] = "SELECT (SELECT count(*) FROM threads), (SELECT count(*) FROM comments), "
                    "(SELECT count(*) FROM comments WHERE status = 'VISIBLE')",
    [S_COUNT_THREAD] =
        "SELECT (SELECT count(*) FROM threads WHERE id = ?1), "
        "(SELECT count(*) FROM comments WHERE thread_id = ?1), "
        "(SELECT count(*) FROM comments WHERE thread_id = ?1 AND status = 'VISIBLE')",
    [S_THREAD_VERSION] = "SELECT version, key FROM threads WHERE id = ?1",
    [S_STAGE_INSERT] = "INSERT INTO temp.ts_snap_stage(" COMMENT_COLS
                       ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    /* The threads the move below changes a comment of, by the rule of
     * S_COMMENT_UPDATE: no row yet, or an older one. */
    [S_STAGE_TOUCHED] = "SELECT DISTINCT s.thread_id FROM temp.ts_snap_stage s "
                        "LEFT JOIN main.comments c ON c.id = s.id "
                        "WHERE c.id IS NULL OR c.version < s.version",
    /* An upsert here (one statement savepoint for all rows, unlike
     * upsert_comment's case); WHERE true: SQLite's parser needs it before
     * ON CONFLICT in an INSERT ... SELECT. */
    [S_STAGE_MOVE] = "INSERT INTO main.comments(" COMMENT_COLS ") SELECT " COMMENT_COLS
                     " FROM temp.ts_snap_stage WHERE true ORDER BY id "
                     "ON CONFLICT(id) DO UPDATE SET thread_id = excluded.thread_id, "
                     "parent_id = excluded.parent_id, author_name = excluded.author_name, "
                     "body = excluded.body, created_at_ms = excluded.created_at_ms, "
                     "edited_at_ms = excluded.edited_at_ms, status = excluded.status, "
                     "version = excluded.version WHERE excluded.version > comments.version",
    [S_STAGE_CLEAR] = "DELETE FROM temp.ts_snap_stage",
};

/* The CHECK on status is the last line of defence against a value this
 * version cannot name: such a batch is refused whole, never half-stored. */
static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS threads("
    " id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, title TEXT NOT NULL,"
    " url TEXT NOT NULL, created_at_ms INTEGER NOT NULL, locked INTEGER NOT NULL,"
    " comment_count INTEGER NOT NULL, version INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS comments("
    " id INTEGER PRIMARY KEY, thread_id INTEGER NOT NULL, parent_id INTEGER NOT NULL,"
    " author_name TEXT NOT NULL, body TEXT NOT NULL, created_at_ms INTEGER NOT NULL,"
    " edited_at_ms INTEGER NOT NULL,"
    " status TEXT NOT NULL " STATUS_CHECK ","
    " version INTEGER NOT NULL);";

/* A bulk snapshot's comments, in arrival order (see snapshot_apply_chunk):
 * no key, so each row is an append. TEMP: this connection's only, gone
 * with it (a crash forgets a staged snapshot, as it forgets its cursor).
 * The CHECK refuses a bad status with its chunk, as comments would. */
static const char stage_sql[] =
    "CREATE TEMP TABLE ts_snap_stage("
    " id INTEGER NOT NULL, thread_id INTEGER NOT NULL, parent_id INTEGER NOT NULL,"
    " author_name TEXT NOT NULL, body TEXT NOT NULL, created_at_ms INTEGER NOT NULL,"
    " edited_at_ms INTEGER NOT NULL, status TEXT NOT NULL " STATUS_CHECK ","
    " version INTEGER NOT NULL)";

/* Also run on every open: a mirror killed during a bulk fill (which drops
 * it) gets it back before anything reads by thread. */
static const char index_sql[] =
    "CREATE INDEX IF NOT EXISTS comments_thread ON comments(thread_id, id)";

/* A thread row waiting for its group's end: the highest version this
 * group has seen, which is higher than the stored one. */
struct deferred {
    Threadsync__Thread t; /* key, title, url owned */
    int how;              /* enum thread_write */
};

struct ts_mirror_db {
    sqlite3 *sql;
    sqlite3_stmt *st[S__COUNT];
    int snap_open;
    int snap_stage; /* the open snapshot's comments go to ts_snap_stage */
    uint64_t snap_seq;
    int scrub_due;  /* a commit replaced stored text; old copies may linger */
    int group_open; /* a transaction spans several apply_events calls */
    int bulk;       /* comments_thread is dropped until bulk_end */
    int bulk_wal;   /* a fill with checkpoints off: see bulk_begin */
    int wal_fd;     /* the WAL, for writeback during a fill; -1 when not open */
    /* The threads of an open group, upserted once at its end (see
     * defer_thread). Open addressing on id; each entry owns its strings. */
    struct deferred *defer;
    size_t n_defer, cap_defer;
    size_t *defer_slot; /* entry index + 1, 0 = empty */
    size_t n_defer_slot;
    /* Scratch for thread_winners(), grown to the largest batch seen. */
    size_t *slot_best; /* open addressing: event index + 1, 0 = empty */
    size_t n_slot;
    unsigned char *win;
    size_t n_win;
};

#define BUSY_TIMEOUT_MS 5000

/* The page size of a new mirror.db (an existing one keeps its own: SQLite
 * cannot change it in WAL mode). 16 KiB rather than SQLite's 4 KiB: a
 * catch-up appends about 330 bytes of row per comment, so a page holds
 * about 48 of them instead of 12, and every per-page cost of a fill (a
 * WAL frame and its write, a checkpoint copy, a leaf split and the
 * interior cell it adds, cache bookkeeping) comes four times less often.
 * The render's pass over comments reads fewer, bigger pages too. A read
 * of one thread still costs about one page per comment (its rows are
 * spread over the file), now a 16 KiB one, from the mapping. */
#define PAGE_SIZE 16384
#define TS_STR_(x) #x
#define TS_STR(x) TS_STR_(x)
/* What the WAL may hold before a commit copies it into the database,
 * in bytes (the pragma counts pages, of whatever size the file has). */
#define WAL_CHECKPOINT_BYTES (32u << 20)

uint32_t ts__mirror_db_wal_checkpoint_bytes = WAL_CHECKPOINT_BYTES;

/* ---- touched set ---- */

static size_t touched_pos(const struct ts_mirror_touched *t, uint64_t id)
{
    return ts_array_lower_bound_u64(t->ids, t->n, id);
}

int ts_mirror_touched_add(struct ts_mirror_touched *t, uint64_t id)
{
    size_t i = touched_pos(t, id);
    if (i < t->n && t->ids[i] == id)
        return TS_OK;
    uint64_t *ids = ts_array_grow(t->ids, &t->cap, t->n, sizeof(*ids), 16);
    if (!ids)
        return TS_E_NOMEM;
    t->ids = ids;
    memmove(t->ids + i + 1, t->ids + i, (t->n - i) * sizeof(*t->ids));
    t->ids[i] = id;
    t->n++;
    return TS_OK;
}

int ts_mirror_touched_has(const struct ts_mirror_touched *t, uint64_t id)
{
    size_t i = touched_pos(t, id);
    return i < t->n && t->ids[i] == id;
}

void ts_mirror_touched_clear(struct ts_mirror_touched *t)
{
    t->n = 0;
}

void ts_mirror_touched_free(struct ts_mirror_touched *t)
{
    free(t->ids);
    t->ids = NULL;
    t->n = t->cap = 0;
}

/* Restores a set to the ids it held before a failed transaction: the ids
 * added since are exactly those not in the saved copy. */
static void touched_restore(struct ts_mirror_touched *t, const uint64_t *saved, size_t n_saved)
{
    if (!t)
        return;
    if (n_saved)
        memcpy(t->ids, saved, n_saved * sizeof(*saved));
    t->n = n_saved;
}

/* ---- errors and statements ---- */

static int db_fail(sqlite3 *sql, const char *op)
{
    char q[256];
    TS_ERROR("event=mirror_db_error op=%s code=%d msg=%s", op,
             sql ? sqlite3_extended_errcode(sql) : 0,
             ts_log_quote(sql ? sqlite3_errmsg(sql) : "out of memory", q, sizeof(q)));
    return TS_E_IO;
}

/* Runs a statement that returns no rows, then resets it. */
static int step_done(struct ts_mirror_db *db, int s, const char *op)
{
    int rc = sqlite3_step(db->st[s]);
    int err = rc == SQLITE_DONE ? TS_OK : db_fail(db->sql, op);
    sqlite3_reset(db->st[s]);
    return err;
}

static int tx_begin(struct ts_mirror_db *db)
{
    return step_done(db, S_BEGIN, "begin");
}

/* Commits when err is TS_OK, else rolls back; returns the final status. */
static int tx_end(struct ts_mirror_db *db, int err)
{
    if (err == TS_OK)
        err = step_done(db, S_COMMIT, "commit");
    /* SQLite may already have rolled back on its own (I/O error, full disk);
     * a ROLLBACK then would only log a second, misleading error. */
    if (err != TS_OK && !sqlite3_get_autocommit(db->sql))
        step_done(db, S_ROLLBACK, "rollback");
    return err;
}

static int bind_u64(sqlite3_stmt *st, int i, uint64_t v)
{
    return sqlite3_bind_int64(st, i, (sqlite3_int64)v);
}

static int bind_str(sqlite3_stmt *st, int i, const char *s)
{
    return sqlite3_bind_text(st, i, s ? s : "", -1, SQLITE_STATIC);
}

static const char *col_text(sqlite3_stmt *st, int i)
{
    const unsigned char *s = sqlite3_column_text(st, i);
    return s ? (const char *)s : "";
}

/* ---- writes ---- */

/* How a deferred thread is written: its row is newer than the stored one,
 * or there is none. */
enum thread_write { TW_INSERT, TW_UPDATE, TW_UPDATE_KEY };

/* See upsert_comment for why not an upsert. */
static int write_thread(struct ts_mirror_db *db, const Threadsync__Thread *t, enum thread_write how)
{
    int s = how == TW_INSERT   ? S_THREAD_INSERT
            : how == TW_UPDATE ? S_THREAD_UPDATE
                               : S_THREAD_UPDATE_KEY;
    sqlite3_stmt *st = db->st[s];
    bind_u64(st, 1, t->id);
    bind_str(st, 2, t->key);
    bind_str(st, 3, t->title);
    bind_str(st, 4, t->url);
    sqlite3_bind_int64(st, 5, t->created_at_ms);
    sqlite3_bind_int(st, 6, t->locked ? 1 : 0);
    bind_u64(st, 7, t->comment_count);
    bind_u64(st, 8, t->version);
    return step_done(db, s, "write_thread");
}

/* ---- threads deferred to the end of a group ---- */

static void defer_clear(struct ts_mirror_db *db)
{
    for (size_t i = 0; i < db->n_defer; i++) {
        free(db->defer[i].t.key);
        free(db->defer[i].t.title);
        free(db->defer[i].t.url);
    }
    db->n_defer = 0;
    if (db->defer_slot)
        memset(db->defer_slot, 0, db->n_defer_slot * sizeof(*db->defer_slot));
}

static size_t defer_hash(uint64_t id, size_t mask)
{
    return (size_t)(id * 0x9E3779B97F4A7C15ull >> 20) & mask;
}

/* The slot of id: its entry, or the empty slot where it would go. */
static size_t defer_find(const struct ts_mirror_db *db, uint64_t id)
{
    size_t mask = db->n_defer_slot - 1;
    size_t h = defer_hash(id, mask);
    while (db->defer_slot[h] && db->defer[db->defer_slot[h] - 1].t.id != id)
        h = (h + 1) & mask;
    return h;
}

/* Room for one more entry, the table at most half full. */
static int defer_reserve(struct ts_mirror_db *db)
{
    struct deferred *d = ts_array_grow(db->defer, &db->cap_defer, db->n_defer, sizeof(*d), 64);
    if (!d)
        return TS_E_NOMEM;
    db->defer = d;
    if (2 * (db->n_defer + 1) <= db->n_defer_slot)
        return TS_OK;
    size_t n = db->n_defer_slot ? db->n_defer_slot * 2 : 128;
    size_t *slot = calloc(n, sizeof(*slot));
    if (!slot)
        return TS_E_NOMEM;
    free(db->defer_slot);
    db->defer_slot = slot;
    db->n_defer_slot = n;
    for (size_t i = 0; i < db->n_defer; i++)
        db->defer_slot[defer_find(db, db->defer[i].t.id)] = i + 1;
    return TS_OK;
}

/* *dst becomes a copy of src (NULL read as ""), reusing *dst when equal. */
static int defer_str(char **dst, const char *src)
{
    src = src ? src : "";
    if (*dst && strcmp(*dst, src) == 0)
        return TS_OK;
    char *c = strdup(src);
    if (!c)
        return TS_E_NOMEM;
    free(*dst);
    *dst = c;
    return TS_OK;
}

/* A catching-up group carries each thread in almost every batch, each time
 * with a higher version (its count moved): upserting it per batch rewrote
 * its row and its key's index entry hundreds of times per group. Inside a
 * group only the highest version is kept here and upserted at the group's
 * end (or before a read), which stores exactly what the per-batch upserts
 * would have. Whether it will change the row is known now (its version
 * against the stored one, read once per thread per group), so touched
 * stays exact. */
static int defer_thread(struct ts_mirror_db *db, const Threadsync__Thread *t,
                        struct ts_mirror_touched *touched)
{
    int err = defer_reserve(db);
    if (err != TS_OK)
        return err;
    size_t h = defer_find(db, t->id);
    struct deferred *d;
    if (db->defer_slot[h]) {
        d = &db->defer[db->defer_slot[h] - 1];
        if (t->version <= d->t.version)
            return TS_OK;
    } else {
        sqlite3_stmt *st = db->st[S_THREAD_VERSION];
        bind_u64(st, 1, t->id);
        int rc = sqlite3_step(st);
        int stored = rc == SQLITE_ROW;
        int newer =
            rc == SQLITE_DONE || (stored && t->version > (uint64_t)sqlite3_column_int64(st, 0));
        int how = !stored                                              ? TW_INSERT
                  : strcmp(col_text(st, 1), t->key ? t->key : "") == 0 ? TW_UPDATE
                                                                       : TW_UPDATE_KEY;
        err = rc == SQLITE_DONE || rc == SQLITE_ROW ? TS_OK : db_fail(db->sql, "thread_version");
        sqlite3_reset(st);
        if (err != TS_OK || !newer)
            return err;
        d = &db->defer[db->n_defer];
        threadsync__thread__init(&d->t);
        d->t.key = d->t.title = d->t.url = NULL;
        d->how = how;
        db->n_defer++;
        db->defer_slot[h] = db->n_defer;
    }
    if (d->how == TW_UPDATE && d->t.key && strcmp(d->t.key, t->key ? t->key : "") != 0)
        d->how = TW_UPDATE_KEY;
    err = defer_str(&d->t.key, t->key);
    if (err == TS_OK)
        err = defer_str(&d->t.title, t->title);
    if (err == TS_OK)
        err = defer_str(&d->t.url, t->url);
    if (err != TS_OK)
        return err;
    d->t.id = t->id;
    d->t.created_at_ms = t->created_at_ms;
    d->t.locked = t->locked;
    d->t.comment_count = t->comment_count;
    d->t.version = t->version;
    return touched ? ts_mirror_touched_add(touched, t->id) : TS_OK;
}

/* Upserts the deferred threads, inside the current transaction. */
static int defer_flush(struct ts_mirror_db *db)
{
    int err = TS_OK;
    for (size_t i = 0; i < db->n_defer && err == TS_OK; i++)
        err = write_thread(db, &db->defer[i].t, (enum thread_write)db->defer[i].how);
    defer_clear(db);
    return err;
}

/* Binds c to parameters base + 1 .. base + 9 (COMMENT_COLS' order). */
static void bind_comment_at(sqlite3_stmt *st, int base, const Threadsync__Comment *c,
                            const char *status)
{
    int visible = c->status == THREADSYNC__STATUS__VISIBLE;
    bind_u64(st, base + 1, c->id);
    bind_u64(st, base + 2, c->thread_id);
    bind_u64(st, base + 3, c->parent_id);
    bind_str(st, base + 4, visible ? c->author_name : "");
    bind_str(st, base + 5, visible ? c->body : "");
    sqlite3_bind_int64(st, base + 6, c->created_at_ms);
    sqlite3_bind_int64(st, base + 7, c->edited_at_ms);
    bind_str(st, base + 8, status);
    bind_u64(st, base + 9, c->version);
}

static void bind_comment(sqlite3_stmt *st, const Threadsync__Comment *c, const char *status)
{
    bind_comment_at(st, 0, c, status);
}

/* An INSERT, and an UPDATE by version only when the id is taken, rather
 * than one INSERT ... ON CONFLICT DO UPDATE: SQLite gives an upsert a
 * statement savepoint (an allocation and a bitmap to clear per row, a
 * tenth of a catch-up's insert time), while a plain one-row INSERT that
 * fails on its key has changed nothing and needs none. */
/* The stored name of c's status; one no CHECK accepts (its number, in num)
 * when it has none. */
static const char *status_text(const Threadsync__Comment *c, char num[16])
{
    const char *status = ts_digest_status_name((int)c->status);
    if (status)
        return status;
    snprintf(num, 16, "%d", (int)c->status);
    return num;
}

static int upsert_comment(struct ts_mirror_db *db, const Threadsync__Comment *c,
                          struct ts_mirror_touched *touched)
{
    char num[16];
    const char *status = status_text(c, num);
    sqlite3_stmt *st = db->st[S_COMMENT_INSERT];
    bind_comment(st, c, status);
    int rc = sqlite3_step(st);
    int err = TS_OK;
    if (rc != SQLITE_DONE && sqlite3_extended_errcode(db->sql) == SQLITE_CONSTRAINT_PRIMARYKEY) {
        sqlite3_reset(st);
        bind_comment(db->st[S_COMMENT_UPDATE], c, status);
        err = step_done(db, S_COMMENT_UPDATE, "update_comment");
    } else {
        err = rc == SQLITE_DONE ? TS_OK : db_fail(db->sql, "insert_comment");
        sqlite3_reset(st);
    }
    if (err == TS_OK && sqlite3_changes(db->sql) > 0 && touched)
        err = ts_mirror_touched_add(touched, c->thread_id);
    return err;
}

/* Upserts cs[0..n) in order, as upsert_comment each would. INSERT_MANY of
 * them go as one multi-row INSERT: per statement, not per row, SQLite then
 * opens and closes its cursor on comments and halts the program, which
 * with the API calls around each step was over a third of a catch-up's
 * insert instructions. The statement journal such an INSERT needs (it may
 * fail after its first rows) holds the page or two it changes. The usual
 * case, every id new, is all it does; an id already stored or repeated in
 * cs fails it on the primary key, which leaves nothing of it, and the rows
 * go one by one instead. Fewer than INSERT_MANY go one by one too. */
static int insert_comments(struct ts_mirror_db *db, const Threadsync__Comment *const *cs, size_t n,
                           struct ts_mirror_touched *touched)
{
    if (n == INSERT_MANY) {
        char num[INSERT_MANY][16];
        sqlite3_stmt *st = db->st[S_COMMENT_INSERT_MANY];
        for (size_t r = 0; r < n; r++)
            bind_comment_at(st, 9 * (int)r, cs[r], status_text(cs[r], num[r]));
        int rc = sqlite3_step(st);
        int pk =
            rc != SQLITE_DONE && sqlite3_extended_errcode(db->sql) == SQLITE_CONSTRAINT_PRIMARYKEY;
        int err = rc == SQLITE_DONE || pk ? TS_OK : db_fail(db->sql, "insert_comments");
        sqlite3_reset(st);
        if (err != TS_OK)
            return err;
        if (!pk) {
            uint64_t last = 0;
            for (size_t r = 0; r < n && err == TS_OK && touched; r++)
                if (r == 0 || cs[r]->thread_id != last)
                    err = ts_mirror_touched_add(touched, last = cs[r]->thread_id);
            return err;
        }
    }
    int err = TS_OK;
    for (size_t r = 0; r < n && err == TS_OK; r++)
        err = upsert_comment(db, cs[r], touched);
    return err;
}

static int set_cursor(struct ts_mirror_db *db, uint64_t seq)
{
    bind_u64(db->st[S_CURSOR_SET], 1, seq);
    return step_done(db, S_CURSOR_SET, "set_cursor");
}

/* Saves touched before a transaction so a failure can put it back. */
static int touched_save(const struct ts_mirror_touched *t, uint64_t **saved)
{
    *saved = NULL;
    if (!t || t->n == 0)
        return TS_OK;
    *saved = malloc(t->n * sizeof(**saved));
    if (!*saved)
        return TS_E_NOMEM;
    memcpy(*saved, t->ids, t->n * sizeof(**saved));
    return TS_OK;
}

/* Called by the temporary trigger 'ts_scrub_watch' (see open) when an
 * update replaced a comment's name or body. */
static void scrub_note(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    (void)argv;
    struct ts_mirror_db *db = sqlite3_user_data(ctx);
    db->scrub_due = 1;
}

/* Text a comment no longer shows (hidden, deleted, edited) must not stay
 * readable in the files: secure_delete zeroes the space the old row
 * leaves in its page, but the WAL still holds the old page images until
 * it is checkpointed and truncated. A reader (the web stack) in the middle
 * of a read transaction blocks that; the mirror does not wait for it
 * (busy timeout 0) and tries again after its next commit. */
static void scrub(struct ts_mirror_db *db)
{
    sqlite3_busy_timeout(db->sql, 0);
    int rc = sqlite3_wal_checkpoint_v2(db->sql, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
    sqlite3_busy_timeout(db->sql, BUSY_TIMEOUT_MS);
    if (rc == SQLITE_OK)
        db->scrub_due = 0;
    else
        TS_DEBUG("event=mirror_db_scrub_deferred code=%d", rc);
}

int ts_mirror_db_scrub_due(const struct ts_mirror_db *db)
{
    return db->scrub_due;
}

void ts_mirror_db_scrub_retry(struct ts_mirror_db *db)
{
    if (db->scrub_due && !db->group_open)
        scrub(db);
}

/* Runs body in one transaction, or inside the open group's: a failure then
 * rolls the whole group back and ends it. touched is put back as it was
 * before this call when the body does not commit, so callers never
 * re-render on a phantom of this call (a failed group's earlier batches
 * leave their ids: rendering an unchanged thread is harmless). */
static int in_transaction(struct ts_mirror_db *db, struct ts_mirror_touched *touched,
                          int (*body)(struct ts_mirror_db *, const void *,
                                      struct ts_mirror_touched *),
                          const void *arg)
{
    uint64_t *saved;
    size_t n_saved = touched ? touched->n : 0;
    int err = touched_save(touched, &saved);
    if (err != TS_OK)
        return err;
    if (db->group_open) {
        err = body(db, arg, touched);
        if (err != TS_OK) {
            db->group_open = 0;
            tx_end(db, err);
        }
    } else {
        err = tx_begin(db);
        if (err == TS_OK)
            err = tx_end(db, body(db, arg, touched));
        if (err == TS_OK && db->scrub_due)
            scrub(db);
    }
    if (err != TS_OK) {
        defer_clear(db);
        touched_restore(touched, saved, n_saved);
    }
    free(saved);
    return err;
}

static int exec(sqlite3 *sql, const char *text, const char *op)
{
    return sqlite3_exec(sql, text, NULL, NULL, NULL) == SQLITE_OK ? TS_OK : db_fail(sql, op);
}

/* wal_autocheckpoint as ts__mirror_db_wal_checkpoint_bytes (normally
 * WAL_CHECKPOINT_BYTES) of this file's pages, at least one. */
static int set_autocheckpoint(struct ts_mirror_db *db)
{
    sqlite3_stmt *st = NULL;
    int err = TS_OK, page = 4096;
    if (sqlite3_prepare_v2(db->sql, "PRAGMA page_size", -1, &st, NULL) != SQLITE_OK)
        err = db_fail(db->sql, "page_size");
    else if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) > 0)
        page = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (err != TS_OK)
        return err;
    char sql[64];
    uint32_t pages = ts__mirror_db_wal_checkpoint_bytes / (uint32_t)page;
    snprintf(sql, sizeof(sql), "PRAGMA wal_autocheckpoint=%u", pages ? pages : 1);
    return exec(db->sql, sql, "wal_autocheckpoint");
}

/* During a fill (bulk_begin) the WAL only grows and nothing fsyncs it
 * until the fill is made durable: without this, all of it would still be
 * dirty in the page cache then (the kernel starts writing back after 30 s
 * or gigabytes), and that one fsync would write the whole fill while the
 * mirror waits. Started here after each group, the writeback runs beside
 * the fill on a disk that is otherwise idle. An error only means a longer
 * fsync later: ignored. */
static void wal_writeback(struct ts_mirror_db *db)
{
    if (db->wal_fd < 0) {
        const char *wal = sqlite3_filename_wal(sqlite3_db_filename(db->sql, "main"));
        db->wal_fd = wal ? open(wal, O_RDONLY | O_CLOEXEC) : -1;
    }
    if (db->wal_fd >= 0)
        (void)sync_file_range(db->wal_fd, 0, 0, SYNC_FILE_RANGE_WRITE);
}

/* The end of a fill's checkpoint-free WAL: checkpoints as usual again. */
static int wal_fill_end(struct ts_mirror_db *db)
{
    if (db->wal_fd >= 0)
        close(db->wal_fd);
    db->wal_fd = -1;
    if (!db->bulk_wal)
        return TS_OK;
    db->bulk_wal = 0;
    return set_autocheckpoint(db);
}

int ts_mirror_db_group_begin(struct ts_mirror_db *db)
{
    if (db->group_open)
        return TS_OK;
    int err = tx_begin(db);
    if (err == TS_OK)
        db->group_open = 1;
    return err;
}

int ts_mirror_db_group_end(struct ts_mirror_db *db)
{
    if (!db->group_open)
        return TS_OK;
    db->group_open = 0;
    int err = tx_end(db, defer_flush(db));
    if (err == TS_OK && db->scrub_due)
        scrub(db);
    if (err == TS_OK && db->bulk_wal)
        wal_writeback(db);
    return err;
}

int ts_mirror_db_group_is_open(const struct ts_mirror_db *db)
{
    return db->group_open;
}

/* A bulk fill commits with synchronous=NORMAL: in WAL mode a commit is
 * then still atomic (rows and cursor together; a crash or a power loss
 * leaves some prefix of the commits, never a torn one), only not yet on
 * disk, which the WAL's fsync before each checkpoint, or bulk_end's commit
 * under FULL, makes it. Nothing was promised about those commits yet (the
 * mirror reports a sync once caught up and rendered, after bulk_end), and
 * a power loss that takes some back only moves the cursor a resume starts
 * from. Each FULL commit was a WAL fsync the writer thread waited for. */
int ts_mirror_db_bulk_begin(struct ts_mirror_db *db)
{
    int err = ts_mirror_db_group_end(db);
    if (err == TS_OK && !db->bulk)
        err = exec(db->sql, "DROP INDEX IF EXISTS comments_thread", "bulk_begin");
    if (err == TS_OK && !db->bulk)
        err = exec(db->sql, "PRAGMA synchronous=NORMAL", "bulk_begin");
    /* No checkpoint until the fill is durable: each one made the writer
     * wait for an fsync of the WAL, a copy of its pages into the file and
     * an fsync of that (most of a fill's wall time on a slow disk), while
     * the copy the fill ends with (ts_mirror_db_checkpoint, or the next
     * commit past the limit) has to be made anyway. The WAL grows to about
     * the database's size meanwhile. */
    if (err == TS_OK && !db->bulk) {
        err = exec(db->sql, "PRAGMA wal_autocheckpoint=0", "bulk_begin");
        db->bulk_wal = err == TS_OK;
    }
    if (err == TS_OK)
        db->bulk = 1;
    return err;
}

int ts_mirror_db_bulk_durable(struct ts_mirror_db *db)
{
    int err = ts_mirror_db_group_end(db);
    if (err == TS_OK && db->bulk)
        err = exec(db->sql, "PRAGMA synchronous=FULL", "bulk_durable");
    if (err == TS_OK)
        err = wal_fill_end(db);
    return err;
}

int ts_mirror_db_checkpoint(struct ts_mirror_db *db)
{
    int rc = sqlite3_wal_checkpoint_v2(db->sql, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    return rc == SQLITE_OK || rc == SQLITE_BUSY ? TS_OK : db_fail(db->sql, "checkpoint");
}

int ts_mirror_db_bulk_end(struct ts_mirror_db *db)
{
    if (!db->bulk)
        return TS_OK;
    int err = ts_mirror_db_group_end(db);
    /* FULL first: the index's commit then fsyncs the WAL, which makes
     * every commit of the fill durable with it. */
    if (err == TS_OK)
        err = exec(db->sql, "PRAGMA synchronous=FULL", "bulk_end");
    if (err == TS_OK)
        err = wal_fill_end(db);
    if (err == TS_OK)
        err = exec(db->sql, index_sql, "bulk_end");
    if (err == TS_OK)
        db->bulk = 0;
    return err;
}

/* A catching-up batch carries its thread once per event, each time with a
 * higher version (the count moved). Upserting by version, only the highest
 * of them can change the row, and it does exactly when any of them would
 * have: win[i] marks, per thread id, the one event whose thread is upserted.
 * Ties keep the later event. TS_OK or TS_E_NOMEM. */
static int thread_winners(struct ts_mirror_db *db, const Threadsync__Events *ev)
{
    size_t n = ev->n_events;
    if (n == 0)
        return TS_OK;
    size_t want = 16;
    while (want < 2 * n)
        want *= 2;
    if (want > db->n_slot) {
        size_t *p = realloc(db->slot_best, want * sizeof(*p));
        if (!p)
            return TS_E_NOMEM;
        db->slot_best = p;
        db->n_slot = want;
    }
    if (n > db->n_win) {
        unsigned char *w = realloc(db->win, n);
        if (!w)
            return TS_E_NOMEM;
        db->win = w;
        db->n_win = n;
    }
    memset(db->slot_best, 0, want * sizeof(*db->slot_best));
    memset(db->win, 0, n);
    size_t mask = want - 1;
    for (size_t i = 0; i < n; i++) {
        const Threadsync__Thread *t = ev->events[i]->thread;
        if (!t)
            continue;
        size_t h = (size_t)(t->id * 0x9E3779B97F4A7C15ull >> 20) & mask;
        for (;; h = (h + 1) & mask) {
            size_t b = db->slot_best[h];
            if (b == 0) {
                db->slot_best[h] = i + 1;
                break;
            }
            const Threadsync__Thread *o = ev->events[b - 1]->thread;
            if (o->id == t->id) {
                if (t->version >= o->version)
                    db->slot_best[h] = i + 1;
                break;
            }
        }
    }
    for (size_t h = 0; h < want; h++)
        if (db->slot_best[h])
            db->win[db->slot_best[h] - 1] = 1;
    return TS_OK;
}

static int events_body(struct ts_mirror_db *db, const void *arg, struct ts_mirror_touched *touched)
{
    const Threadsync__Events *ev = arg;
    /* Comments wait here for a full insert_comments; they touch only
     * their own rows, so their order against the threads' (deferred
     * anyway) does not matter, and among themselves it is kept. */
    const Threadsync__Comment *pend[INSERT_MANY];
    size_t n_pend = 0;
    int err = thread_winners(db, ev);
    for (size_t i = 0; i < ev->n_events && err == TS_OK; i++) {
        const Threadsync__Event *e = ev->events[i];
        if (ts__mirror_db_fault_hook && ts__mirror_db_fault_hook(e->seq)) {
            TS_ERROR("event=mirror_db_error op=apply_events msg=\"injected fault\" seq=%llu",
                     (unsigned long long)e->seq);
            return TS_E_IO;
        }
        if (e->thread && db->win[i])
            err = defer_thread(db, e->thread, touched);
        if (err == TS_OK && e->comment) {
            pend[n_pend++] = e->comment;
            if (n_pend == INSERT_MANY) {
                err = insert_comments(db, pend, n_pend, touched);
                n_pend = 0;
            }
        }
    }
    if (err == TS_OK)
        err = insert_comments(db, pend, n_pend, touched);
    if (err == TS_OK && !db->group_open)
        err = defer_flush(db);
    return err == TS_OK ? set_cursor(db, ev->last_seq) : err;
}

int ts_mirror_db_apply_events(struct ts_mirror_db *db, const Threadsync__Events *ev,
                              struct ts_mirror_touched *touched)
{
    return in_transaction(db, touched, events_body, ev);
}

int ts_mirror_db_snapshot_begin(struct ts_mirror_db *db, uint64_t seq)
{
    int err = ts_mirror_db_group_end(db);
    /* A restarted snapshot drops what the interrupted one staged: the new
     * one carries all of it, as of a later seq. */
    if (err == TS_OK && db->snap_open && db->snap_stage)
        err = step_done(db, S_STAGE_CLEAR, "snapshot_begin");
    if (err != TS_OK)
        return err;
    db->snap_open = 1;
    db->snap_stage = db->bulk;
    db->snap_seq = seq;
    return TS_OK;
}

static int stage_comment(struct ts_mirror_db *db, const Threadsync__Comment *c)
{
    char num[16];
    bind_comment(db->st[S_STAGE_INSERT], c, status_text(c, num));
    return step_done(db, S_STAGE_INSERT, "stage_comment");
}

static int chunk_body(struct ts_mirror_db *db, const void *arg, struct ts_mirror_touched *touched)
{
    const Threadsync__SnapshotChunk *c = arg;
    int err = TS_OK;
    for (size_t i = 0; i < c->n_threads && err == TS_OK; i++)
        err = defer_thread(db, c->threads[i], touched);
    if (err == TS_OK)
        err = defer_flush(db);
    for (size_t i = 0; i < c->n_comments && err == TS_OK; i++)
        err = db->snap_stage ? stage_comment(db, c->comments[i])
                             : upsert_comment(db, c->comments[i], touched);
    return err;
}

/* A snapshot sends its comments thread by thread, so their ids arrive out
 * of order; inserted as they came, each group commit rewrote pages all
 * over comments (4.6 s of commit CPU for a million). During a bulk fill
 * they are staged instead, and snapshot_end moves them in id order. */
int ts_mirror_db_snapshot_apply_chunk(struct ts_mirror_db *db, const Threadsync__SnapshotChunk *c,
                                      struct ts_mirror_touched *touched)
{
    if (!db->snap_open)
        return TS_E_INVALID_ARGUMENT;
    return in_transaction(db, touched, chunk_body, c);
}

/* Moves the staged comments into comments, in id order, upserting by
 * version: touched gains first the threads that will change (read before
 * the rows move, while the old versions are still there). */
static int stage_move(struct ts_mirror_db *db, struct ts_mirror_touched *touched)
{
    sqlite3_stmt *st = db->st[S_STAGE_TOUCHED];
    int rc = SQLITE_DONE, err = TS_OK;
    while (touched && err == TS_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
        err = ts_mirror_touched_add(touched, (uint64_t)sqlite3_column_int64(st, 0));
    if (err == TS_OK && rc != SQLITE_DONE)
        err = db_fail(db->sql, "stage_touched");
    sqlite3_reset(st);
    if (err == TS_OK)
        err = step_done(db, S_STAGE_MOVE, "stage_move");
    if (err == TS_OK)
        err = step_done(db, S_STAGE_CLEAR, "stage_clear");
    return err;
}

static int end_body(struct ts_mirror_db *db, const void *arg, struct ts_mirror_touched *touched)
{
    int err = db->snap_stage ? stage_move(db, touched) : TS_OK;
    return err == TS_OK ? set_cursor(db, *(const uint64_t *)arg) : err;
}

int ts_mirror_db_snapshot_end(struct ts_mirror_db *db, uint64_t seq,
                              struct ts_mirror_touched *touched)
{
    if (!db->snap_open || seq != db->snap_seq)
        return TS_E_INVALID_ARGUMENT;
    int err = ts_mirror_db_group_end(db);
    if (err == TS_OK)
        err = in_transaction(db, touched, end_body, &seq);
    if (err != TS_OK)
        return err;
    db->snap_open = 0;
    /* The move was one transaction as big as the table: let the WAL it
     * left go now rather than keep it at that size (scrub truncates it). */
    if (db->snap_stage)
        scrub(db);
    db->snap_stage = 0;
    return TS_OK;
}

/* ---- reads ---- */

static int setting_name_ok(const char *name)
{
    return name && *name && strcmp(name, "last_seq") != 0 && strcmp(name, "schema_version") != 0;
}

int ts_mirror_db_setting_get(struct ts_mirror_db *db, const char *name, char **out)
{
    *out = NULL;
    if (!setting_name_ok(name))
        return TS_E_INVALID_ARGUMENT;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db->sql, "SELECT value FROM meta WHERE key = ?1", -1, &st, NULL) !=
        SQLITE_OK)
        return db_fail(db->sql, "setting_get");
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st), err = TS_OK;
    if (rc == SQLITE_ROW) {
        const unsigned char *v = sqlite3_column_text(st, 0);
        if (!(*out = strdup(v ? (const char *)v : "")))
            err = TS_E_NOMEM;
    } else if (rc != SQLITE_DONE) {
        err = db_fail(db->sql, "setting_get");
    }
    sqlite3_finalize(st);
    return err;
}

int ts_mirror_db_setting_set(struct ts_mirror_db *db, const char *name, const char *value)
{
    if (!setting_name_ok(name) || !value)
        return TS_E_INVALID_ARGUMENT;
    int err = ts_mirror_db_group_end(db);
    if (err != TS_OK)
        return err;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db->sql,
                           "INSERT INTO meta(key, value) VALUES(?1, ?2) "
                           "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                           -1, &st, NULL) != SQLITE_OK)
        return db_fail(db->sql, "setting_set");
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
    err = sqlite3_step(st) == SQLITE_DONE ? TS_OK : db_fail(db->sql, "setting_set");
    sqlite3_finalize(st);
    return err;
}

int ts_mirror_db_cursor(struct ts_mirror_db *db, uint64_t *seq)
{
    sqlite3_stmt *st = db->st[S_CURSOR_GET];
    int rc = sqlite3_step(st);
    int err = TS_OK;
    *seq = 0;
    if (rc == SQLITE_ROW)
        *seq = (uint64_t)sqlite3_column_int64(st, 0);
    else if (rc != SQLITE_DONE)
        err = db_fail(db->sql, "cursor");
    sqlite3_reset(st);
    return err;
}

/* Fills t from a THREAD_COLS row; strings point into the statement's row. */
static void thread_from_row(sqlite3_stmt *st, Threadsync__Thread *t)
{
    threadsync__thread__init(t);
    t->id = (uint64_t)sqlite3_column_int64(st, 0);
    t->key = (char *)col_text(st, 1);
    t->title = (char *)col_text(st, 2);
    t->url = (char *)col_text(st, 3);
    t->created_at_ms = sqlite3_column_int64(st, 4);
    t->locked = sqlite3_column_int(st, 5) != 0;
    t->comment_count = (uint32_t)sqlite3_column_int64(st, 6);
    t->version = (uint64_t)sqlite3_column_int64(st, 7);
}

static Threadsync__Status status_from_name(const char *s)
{
    for (int i = THREADSYNC__STATUS__VISIBLE; i <= THREADSYNC__STATUS__DELETED; i++)
        if (strcmp(s, ts_digest_status_name(i)) == 0)
            return (Threadsync__Status)i;
    return THREADSYNC__STATUS__STATUS_UNSPECIFIED;
}

/* The comment structs live in one array whose base is comments[0], their
 * strings in one block (text); the pointer array beside them is what
 * callers see. A thread of n comments costs four allocations, not 2n. */
void ts_mirror_thread_free(struct ts_mirror_thread *t)
{
    if (!t)
        return;
    free(t->thread.key);
    free(t->thread.title);
    free(t->thread.url);
    if (t->n_comments)
        free(t->comments[0]);
    free(t->comments);
    free(t->text);
    free(t);
}

/* Appends column i and its NUL to text; returns the string's offset. */
static size_t add_col(struct ts_buf *text, sqlite3_stmt *st, int i)
{
    size_t at = text->len;
    const char *s = col_text(st, i);
    ts_buf_add(text, s, (size_t)sqlite3_column_bytes(st, i) + 1);
    return at;
}

/* One thread's comments as rows come (id order): the structs in one array,
 * their strings in one block whose offsets become pointers at the end (the
 * block may move while it grows). */
struct comment_acc {
    Threadsync__Comment *arr;
    size_t *off; /* author_name and body of comment i: off[2i], off[2i + 1] */
    struct ts_buf text;
    size_t n, cap;
};

/* c from the COMMENT_COLS row st holds, but for its strings. */
static void comment_fields(sqlite3_stmt *st, Threadsync__Comment *c)
{
    threadsync__comment__init(c);
    c->id = (uint64_t)sqlite3_column_int64(st, 0);
    c->thread_id = (uint64_t)sqlite3_column_int64(st, 1);
    c->parent_id = (uint64_t)sqlite3_column_int64(st, 2);
    c->created_at_ms = sqlite3_column_int64(st, 5);
    c->edited_at_ms = sqlite3_column_int64(st, 6);
    c->status = status_from_name(col_text(st, 7));
    c->version = (uint64_t)sqlite3_column_int64(st, 8);
}

/* Appends the COMMENT_COLS row st holds. TS_OK or TS_E_NOMEM. */
static int acc_add(struct comment_acc *a, sqlite3_stmt *st)
{
    if (a->n == a->cap) {
        size_t ncap = a->cap ? a->cap * 2 : 16;
        Threadsync__Comment *na = realloc(a->arr, ncap * sizeof(*na));
        if (na)
            a->arr = na;
        size_t *no = na ? realloc(a->off, 2 * ncap * sizeof(*no)) : NULL;
        if (!no)
            return TS_E_NOMEM;
        a->off = no;
        a->cap = ncap;
    }
    comment_fields(st, &a->arr[a->n]);
    a->off[2 * a->n] = add_col(&a->text, st, 3);
    a->off[2 * a->n + 1] = add_col(&a->text, st, 4);
    a->n++;
    return TS_OK;
}

/* Hands the comments to mt when err is TS_OK (what a failed buffer left
 * out is TS_E_NOMEM), and frees what mt did not take either way. */
static int acc_finish(struct comment_acc *a, struct ts_mirror_thread *mt, int err)
{
    size_t n = a->n;
    if (err == TS_OK && n > 0 && !(mt->comments = malloc(n * sizeof(*mt->comments))))
        err = TS_E_NOMEM;
    /* Even a failed buffer is emptied by finish. */
    if (ts_buf_finish(&a->text, &mt->text, NULL) != TS_OK && err == TS_OK)
        err = TS_E_NOMEM;
    if (err == TS_OK) {
        for (size_t i = 0; i < n; i++) {
            a->arr[i].author_name = mt->text + a->off[2 * i];
            a->arr[i].body = mt->text + a->off[2 * i + 1];
            mt->comments[i] = &a->arr[i];
        }
        mt->n_comments = n;
    }
    if (err != TS_OK || n == 0)
        free(a->arr);
    free(a->off);
    memset(a, 0, sizeof(*a));
    return err;
}

static int load_comments(struct ts_mirror_db *db, struct ts_mirror_thread *mt)
{
    sqlite3_stmt *st = db->st[S_COMMENTS_OF];
    struct comment_acc a = {0};
    int err = TS_OK, rc = SQLITE_DONE;
    /* NOLINTNEXTLINE(clang-analyzer-core.NullDereference): a head comes with load_head's TS_OK. */
    bind_u64(st, 1, mt->thread.id);
    while (err == TS_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
        err = acc_add(&a, st);
    if (err == TS_OK && rc != SQLITE_DONE)
        err = db_fail(db->sql, "load_comments");
    sqlite3_reset(st);
    return acc_finish(&a, mt, err);
}

/* The thread row statement s (bound by the caller) finds, without its
 * comments: *out (OUT) NULL unless TS_OK. TS_E_NOT_FOUND, TS_E_NOMEM or
 * TS_E_IO otherwise. */
static int load_head(struct ts_mirror_db *db, int s, struct ts_mirror_thread **out)
{
    sqlite3_stmt *st = db->st[s];
    *out = NULL;
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        int err = rc == SQLITE_DONE ? TS_E_NOT_FOUND : db_fail(db->sql, "load_thread");
        sqlite3_reset(st);
        return err;
    }
    struct ts_mirror_thread *mt = calloc(1, sizeof(*mt));
    if (!mt) {
        sqlite3_reset(st);
        return TS_E_NOMEM;
    }
    Threadsync__Thread row;
    thread_from_row(st, &row);
    mt->thread = row;
    mt->thread.key = strdup(row.key);
    mt->thread.title = strdup(row.title);
    mt->thread.url = strdup(row.url);
    sqlite3_reset(st);
    if (!mt->thread.key || !mt->thread.title || !mt->thread.url) {
        ts_mirror_thread_free(mt);
        return TS_E_NOMEM;
    }
    *out = mt;
    return TS_OK;
}

static int load_thread(struct ts_mirror_db *db, int s, struct ts_mirror_thread **out)
{
    int err = load_head(db, s, out);
    if (err == TS_OK && (err = load_comments(db, *out)) != TS_OK) {
        ts_mirror_thread_free(*out);
        *out = NULL;
    }
    return err;
}

/* Reads see an open group's rows, its deferred threads included, and a
 * read by thread gets comments_thread back first (without it, every such
 * read would scan the whole table). A failure ends the group, as a failed
 * batch does. */
static int settle(struct ts_mirror_db *db, int by_thread)
{
    int err = TS_OK;
    if (db->group_open && db->n_defer) {
        err = defer_flush(db);
        if (err != TS_OK) {
            db->group_open = 0;
            tx_end(db, err);
        }
    }
    if (err == TS_OK && by_thread)
        err = ts_mirror_db_bulk_end(db);
    return err;
}

int ts_mirror_db_thread_by_id(struct ts_mirror_db *db, uint64_t id, struct ts_mirror_thread **out)
{
    int err = settle(db, 1);
    if (err != TS_OK) {
        *out = NULL;
        return err;
    }
    bind_u64(db->st[S_THREAD_BY_ID], 1, id);
    return load_thread(db, S_THREAD_BY_ID, out);
}

int ts_mirror_db_thread_by_key(struct ts_mirror_db *db, const char *key,
                               struct ts_mirror_thread **out)
{
    int err = settle(db, 1);
    if (err != TS_OK) {
        *out = NULL;
        return err;
    }
    /* TRANSIENT: key need not outlive this call once the row is read. */
    sqlite3_bind_text(db->st[S_THREAD_BY_KEY], 1, key, -1, SQLITE_TRANSIENT);
    return load_thread(db, S_THREAD_BY_KEY, out);
}

/* ---- scans: many threads read in one pass ---- */

/* A scan's comments and their strings are carved from an arena
 * (ts_arena: huge-page mappings), in the order rows come, never moved or
 * freed one by one: loaded thread by thread, each in buffers grown by
 * realloc and freed after its render, the same 300,000 comments cost a
 * page fault per 4 KiB of every growth and an munmap (with a TLB
 * shootdown to the other core) per freed thread, which was most of the
 * read's CPU on this machine's VM. */
struct ts_mirror_scan {
    size_t n;
    struct ts_mirror_thread **t;     /* t[i]: thread ids[i], NULL when not stored */
    Threadsync__Comment **by_thread; /* every comment, thread after thread */
    struct ts_arena arena;
};

void ts_mirror_scan_free(struct ts_mirror_scan *s)
{
    if (!s)
        return;
    for (size_t i = 0; s->t && i < s->n; i++) {
        if (!s->t[i])
            continue;
        free(s->t[i]->thread.key);
        free(s->t[i]->thread.title);
        free(s->t[i]->thread.url);
        free(s->t[i]);
    }
    free(s->t);
    free(s->by_thread);
    ts_arena_free(&s->arena);
    free(s);
}

const struct ts_mirror_thread *ts_mirror_scan_thread(const struct ts_mirror_scan *s, size_t i)
{
    return i < s->n ? s->t[i] : NULL;
}

/* The row's comment, its strings right after it, from the scan's chunks. */
static Threadsync__Comment *scan_row(struct ts_mirror_scan *s, sqlite3_stmt *st)
{
    const char *name = col_text(st, 3);
    size_t nlen = (size_t)sqlite3_column_bytes(st, 3);
    const char *body = col_text(st, 4);
    size_t blen = (size_t)sqlite3_column_bytes(st, 4);
    Threadsync__Comment *c = ts_arena_alloc(&s->arena, sizeof(*c) + nlen + 1 + blen + 1);
    if (!c)
        return NULL;
    comment_fields(st, c);
    char *text = (char *)(c + 1);
    memcpy(text, name, nlen + 1);
    memcpy(text + nlen + 1, body, blen + 1);
    c->author_name = text;
    c->body = text + nlen + 1;
    return c;
}

/* Rows come in id order; each goes to its thread by a binary search of ids
 * (ten comparisons for a thousand threads, against a seek down the index
 * and another down the table per row for thread_by_id), and a stable
 * counting sort by thread at the end keeps each thread's in id order. */
int ts_mirror_db_threads_scan(struct ts_mirror_db *db, const uint64_t *ids, size_t n,
                              struct ts_mirror_scan **out)
{
    *out = NULL;
    struct ts_mirror_scan *s = calloc(1, sizeof(*s));
    size_t *count = calloc(n + 1, sizeof(*count));
    Threadsync__Comment **rows = NULL;
    uint32_t *row_thread = NULL;
    size_t n_rows = 0, cap_rows = 0;
    int err = s && count && (s->t = calloc(n ? n : 1, sizeof(*s->t))) ? TS_OK : TS_E_NOMEM;
    if (s)
        s->n = n;
    if (err == TS_OK && n)
        err = settle(db, 0);
    for (size_t i = 0; i < n && err == TS_OK; i++) {
        bind_u64(db->st[S_THREAD_BY_ID], 1, ids[i]);
        err = load_head(db, S_THREAD_BY_ID, &s->t[i]);
        if (err == TS_E_NOT_FOUND)
            err = TS_OK;
    }
    sqlite3_stmt *st = db->st[S_COMMENTS_SCAN];
    if (err == TS_OK && n) {
        int rc = SQLITE_DONE;
        bind_u64(st, 1, ids[0]);
        bind_u64(st, 2, ids[n - 1]);
        while (err == TS_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            uint64_t tid = (uint64_t)sqlite3_column_int64(st, 1);
            size_t i = ts_array_lower_bound_u64(ids, n, tid);
            if (i == n || ids[i] != tid || !s->t[i])
                continue;
            if (n_rows == cap_rows) {
                size_t cap = cap_rows;
                Threadsync__Comment **r = ts_array_grow(rows, &cap, n_rows, sizeof(*r), 1024);
                if (r)
                    rows = r;
                uint32_t *rt = r ? realloc(row_thread, cap * sizeof(*rt)) : NULL;
                if (!rt) {
                    err = TS_E_NOMEM;
                    break;
                }
                row_thread = rt;
                cap_rows = cap;
            }
            if (!(rows[n_rows] = scan_row(s, st))) {
                err = TS_E_NOMEM;
                break;
            }
            row_thread[n_rows++] = (uint32_t)i;
            count[i + 1]++;
        }
        if (err == TS_OK && rc != SQLITE_DONE)
            err = db_fail(db->sql, "threads_scan");
        sqlite3_reset(st);
    }
    if (err == TS_OK && !(s->by_thread = malloc((n_rows ? n_rows : 1) * sizeof(*s->by_thread))))
        err = TS_E_NOMEM;
    if (err == TS_OK) {
        for (size_t i = 0; i < n; i++) /* count[i]: where thread i's comments start */
            count[i + 1] += count[i];
        for (size_t i = 0; i < n; i++) {
            if (s->t[i]) {
                s->t[i]->comments = s->by_thread + count[i];
                s->t[i]->n_comments = count[i + 1] - count[i];
            }
        }
        for (size_t r = 0; r < n_rows; r++)
            s->by_thread[count[row_thread[r]]++] = rows[r];
    }
    free(rows);
    free(row_thread);
    free(count);
    if (err != TS_OK) {
        ts_mirror_scan_free(s);
        return err;
    }
    *out = s;
    return TS_OK;
}

int ts_mirror_db_size(struct ts_mirror_db *db, uint64_t *bytes)
{
    *bytes = 0;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db->sql,
                           "SELECT p.page_count * s.page_size "
                           "FROM pragma_page_count() p, pragma_page_size() s",
                           -1, &st, NULL) != SQLITE_OK)
        return db_fail(db->sql, "size");
    int err = TS_OK;
    if (sqlite3_step(st) == SQLITE_ROW)
        *bytes = (uint64_t)sqlite3_column_int64(st, 0);
    else
        err = db_fail(db->sql, "size");
    sqlite3_finalize(st);
    return err;
}

int ts_mirror_db_foreach_thread(struct ts_mirror_db *db,
                                int (*cb)(void *arg, const Threadsync__Thread *t), void *arg)
{
    int ret = settle(db, 0);
    if (ret != TS_OK)
        return ret;
    sqlite3_stmt *st = db->st[S_THREADS_ALL];
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        Threadsync__Thread t;
        thread_from_row(st, &t);
        ret = cb(arg, &t);
        if (ret != 0)
            break;
    }
    if (ret == 0 && rc != SQLITE_DONE)
        ret = db_fail(db->sql, "foreach_thread");
    sqlite3_reset(st);
    return ret;
}

int ts_mirror_db_counts(struct ts_mirror_db *db, uint64_t thread_id, struct ts_mirror_counts *out)
{
    int s = thread_id ? S_COUNT_THREAD : S_COUNT_ALL;
    sqlite3_stmt *st = db->st[s];
    memset(out, 0, sizeof(*out));
    int err = settle(db, thread_id != 0);
    if (err != TS_OK)
        return err;
    if (thread_id)
        bind_u64(st, 1, thread_id);
    if (sqlite3_step(st) == SQLITE_ROW) {
        out->threads = (uint64_t)sqlite3_column_int64(st, 0);
        out->comments = (uint64_t)sqlite3_column_int64(st, 1);
        out->visible = (uint64_t)sqlite3_column_int64(st, 2);
    } else {
        err = db_fail(db->sql, "counts");
    }
    sqlite3_reset(st);
    return err;
}

int ts_mirror_db_is_empty(struct ts_mirror_db *db, int *empty)
{
    *empty = 0;
    int err = settle(db, 0);
    sqlite3_stmt *st = NULL;
    if (err == TS_OK && sqlite3_prepare_v2(db->sql,
                                           "SELECT NOT EXISTS(SELECT 1 FROM threads) "
                                           "AND NOT EXISTS(SELECT 1 FROM comments)",
                                           -1, &st, NULL) != SQLITE_OK)
        err = db_fail(db->sql, "is_empty");
    if (err == TS_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            *empty = sqlite3_column_int(st, 0) != 0;
        else
            err = db_fail(db->sql, "is_empty");
    }
    sqlite3_finalize(st);
    return err;
}

int ts_mirror_db_digest(struct ts_mirror_db *db, uint64_t thread_id, char out[65])
{
    out[0] = '\0';
    struct ts_mirror_thread *mt;
    int err = ts_mirror_db_thread_by_id(db, thread_id, &mt);
    if (err != TS_OK)
        return err;
    /* NOLINTNEXTLINE(clang-analyzer-core.NullDereference): TS_OK always comes with mt. */
    err = ts_digest_thread(&mt->thread, (const Threadsync__Comment *const *)mt->comments,
                           mt->n_comments, out);
    ts_mirror_thread_free(mt);
    return err;
}

/* ---- open / close ---- */

static int journal_is_wal(void *arg, int ncol, char **vals, char **names)
{
    *(int *)arg = ncol > 0 && vals[0] && strcmp(vals[0], "wal") == 0;
    return 0;
}

/* Creates the schema, or checks the version of an existing one, in one
 * transaction so two processes opening a new mirror at once do not race. */
static int init_schema(struct ts_mirror_db *db)
{
    int err = exec(db->sql, "BEGIN IMMEDIATE", "schema_begin");
    if (err != TS_OK)
        return err;
    err = exec(db->sql, "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value)",
               "schema_meta");
    sqlite3_stmt *st = NULL;
    if (err == TS_OK &&
        sqlite3_prepare_v2(db->sql, "SELECT value FROM meta WHERE key = 'schema_version'", -1, &st,
                           NULL) != SQLITE_OK)
        err = db_fail(db->sql, "schema_version");
    if (err == TS_OK) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            sqlite3_int64 v = sqlite3_column_int64(st, 0);
            if (v != TS_MIRROR_DB_SCHEMA_VERSION) {
                TS_ERROR("event=mirror_db_error op=open msg=\"unsupported schema version\" "
                         "found=%lld want=%d",
                         (long long)v, TS_MIRROR_DB_SCHEMA_VERSION);
                err = TS_E_CONFIG;
            }
        } else if (rc == SQLITE_DONE) {
            err = exec(db->sql, schema_sql, "schema_create");
            if (err == TS_OK)
                err = exec(db->sql,
                           "INSERT INTO meta(key, value) VALUES('schema_version', 1),"
                           " ('last_seq', 0)",
                           "schema_version_set");
        } else {
            err = db_fail(db->sql, "schema_version");
        }
    }
    sqlite3_finalize(st);
    if (err == TS_OK)
        return exec(db->sql, "COMMIT", "schema_commit");
    sqlite3_exec(db->sql, "ROLLBACK", NULL, NULL, NULL);
    return err;
}

/* SQLite's memory statistics (sqlite3_memory_used, never read here) take
 * a process-wide mutex around every allocation and free: a tenth of the
 * writer thread's CPU in a catch-up. Off before SQLite initialises; once it
 * has (another module opened a database first) the call fails, harmlessly. */
static void sqlite_setup(void)
{
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

int ts_mirror_db_open(const char *dir, struct ts_mirror_db **out)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, sqlite_setup);
    *out = NULL;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        TS_ERROR("event=mirror_db_error op=mkdir errno=%d msg=\"%s\"", errno, strerror(errno));
        return TS_E_IO;
    }
    size_t len = strlen(dir) + sizeof("/mirror.db");
    char *path = malloc(len);
    struct ts_mirror_db *db = calloc(1, sizeof(*db));
    if (!path || !db) {
        free(path);
        free(db);
        return TS_E_NOMEM;
    }
    db->wal_fd = -1;
    snprintf(path, len, "%s/mirror.db", dir);
    int rc = sqlite3_open_v2(
        path, &db->sql, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    free(path);
    int err = rc == SQLITE_OK ? TS_OK : db_fail(db->sql, "open");
    if (err == TS_OK) {
        sqlite3_extended_result_codes(db->sql, 1);
        /* Readers (a web stack) may hold the file briefly; wait, do not fail. */
        sqlite3_busy_timeout(db->sql, BUSY_TIMEOUT_MS);
        /* A new file's page size, before anything creates its first page
         * (journal_mode=WAL does): a no-op on an existing mirror, which
         * keeps its own. See PAGE_SIZE. */
        err = exec(db->sql, "PRAGMA page_size=" TS_STR(PAGE_SIZE), "page_size");
    }
    if (err == TS_OK) {
        int wal = 0;
        if (sqlite3_exec(db->sql, "PRAGMA journal_mode=WAL", journal_is_wal, &wal, NULL) !=
            SQLITE_OK)
            err = db_fail(db->sql, "journal_mode");
        else if (!wal) {
            TS_ERROR("event=mirror_db_error op=journal_mode msg=\"WAL refused\"");
            err = TS_E_IO;
        }
    }
    /* FULL: in WAL mode NORMAL may lose the last commits on power loss; the
     * cursor they carried would then be lost too, which is safe, but a
     * mirror that said "synced to N" should still be there after a reboot. */
    if (err == TS_OK)
        err = exec(db->sql, "PRAGMA synchronous=FULL", "synchronous");
    if (err == TS_OK)
        err = exec(db->sql, "PRAGMA secure_delete=ON", "secure_delete");
    /* Except in TEMP (a staged snapshot, see snapshot_apply_chunk): its
     * file is unlinked, gone with the connection, and holds nothing but the
     * public rows comments gets; zeroing each page its clearing frees cost
     * a fifth of the move. */
    if (err == TS_OK)
        err = exec(db->sql, "PRAGMA temp.secure_delete=OFF", "secure_delete");
    /* A catch-up inserts into every thread's range of comments_thread:
     * 32 MiB of cache keeps the whole index of a million-comment mirror
     * hot, and a 32 MiB WAL lets a group's pages reach the database once
     * per checkpoint instead of once per 4 MiB. */
    if (err == TS_OK)
        err = exec(db->sql, "PRAGMA cache_size=-32768", "cache_size");
    if (err == TS_OK)
        err = set_autocheckpoint(db);
    /* Rendering reads a thread's comments by rowid, one page each, from all
     * over the file: mapped, a page is read in place instead of copied
     * into the cache (a quarter less CPU for a first sync's render). Writes
     * still go through the WAL; only address space is reserved. */
    if (err == TS_OK)
        err = exec(db->sql, "PRAGMA mmap_size=1073741824", "mmap_size");
    if (err == TS_OK)
        err = init_schema(db);
    if (err == TS_OK)
        err = exec(db->sql, index_sql, "schema_index");
    if (err == TS_OK)
        err = exec(db->sql, stage_sql, "stage_table");
    /* TEMP: the trigger belongs to this connection only; the schema other
     * programs read stays as documented. Only text that was there and is
     * replaced counts: an approval (empty to text) leaves nothing behind. */
    if (err == TS_OK && sqlite3_create_function_v2(db->sql, "ts_scrub_note", 0, SQLITE_UTF8, db,
                                                   scrub_note, NULL, NULL, NULL) != SQLITE_OK)
        err = db_fail(db->sql, "create_function");
    if (err == TS_OK)
        err = exec(db->sql,
                   "CREATE TEMP TRIGGER ts_scrub_watch AFTER UPDATE OF author_name, body "
                   "ON main.comments WHEN (old.body <> '' AND old.body <> new.body) OR "
                   "(old.author_name <> '' AND old.author_name <> new.author_name) "
                   "BEGIN SELECT ts_scrub_note(); END",
                   "scrub_trigger");
    for (int s = 0; s < S__COUNT && err == TS_OK; s++)
        if (sqlite3_prepare_v3(db->sql, stmt_sql[s], -1, SQLITE_PREPARE_PERSISTENT, &db->st[s],
                               NULL) != SQLITE_OK)
            err = db_fail(db->sql, "prepare");
    if (err != TS_OK) {
        ts_mirror_db_close(db);
        return err;
    }
    *out = db;
    return TS_OK;
}

void ts_mirror_db_close(struct ts_mirror_db *db)
{
    if (!db)
        return;
    for (int s = 0; s < S__COUNT; s++)
        sqlite3_finalize(db->st[s]);
    if (db->wal_fd >= 0)
        close(db->wal_fd);
    sqlite3_close(db->sql); /* rolls back an open group, as a crash would */
    defer_clear(db);
    free(db->defer);
    free(db->defer_slot);
    free(db->slot_best);
    free(db->win);
    free(db);
}
