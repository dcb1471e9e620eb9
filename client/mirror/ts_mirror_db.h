/*
 * ts_mirror_db: the SQLite copy a mirror keeps in DIR/mirror.db.
 *
 * Schema (version 1), readable by any web stack:
 *
 *   threads(id INTEGER PRIMARY KEY, key TEXT UNIQUE, title, url,
 *           created_at_ms, locked 0/1, comment_count, version)
 *   comments(id INTEGER PRIMARY KEY, thread_id, parent_id, author_name, body,
 *            created_at_ms, edited_at_ms,
 *            status TEXT CHECK IN ('VISIBLE','PENDING','HIDDEN','DELETED'),
 *            version)                 index comments_thread(thread_id, id)
 *                                     (absent during a bulk fill, below)
 *   meta(key TEXT PRIMARY KEY, value)  'schema_version' = 1, 'last_seq' = cursor
 *
 * Invariants:
 * - The cursor never runs ahead of the data: each Events batch (rows and
 *   cursor) and each snapshot chunk commit in one transaction (a group of
 *   whole batches, with the cursor of the last, at most), and the cursor
 *   moves only in the transaction that holds the data it covers. WAL with
 *   synchronous=FULL: a committed batch survives power loss. (NORMAL would
 *   keep that atomicity, only forget the newest commits on power loss; with
 *   groups the fsync it saves is one per group, not worth the weaker
 *   promise, except during a bulk fill: below.)
 * - Rows are upserted by version: a row changes only when the incoming
 *   version is higher than the stored one, so replays, duplicated batches and
 *   snapshot content newer than its seq all converge on the server's state.
 * - The cursor never goes down.
 * - The database holds the public view only: author_email is never stored,
 *   and author_name and body are stored empty for a comment that is not
 *   VISIBLE, even when a moderator's connection sent them. A mirror is
 *   meant to be served; what it may not show it does not keep.
 * - Nor does it keep it in the file's free space: text an update replaced
 *   (hidden, deleted, edited) is zeroed (secure_delete), and the WAL that
 *   still holds the old pages is checkpointed and truncated after that
 *   commit, or after a later one when a reader held it open then.
 *
 * A new mirror.db has 16 KiB pages (a fill writes a quarter as many of
 * them as with SQLite's 4 KiB); an existing one keeps the size it has.
 *
 * Ids and versions are u64 on the wire and INTEGER (signed 64-bit) in SQLite;
 * they are stored bit for bit, so values above 2^63 (never produced: they are
 * Raft indices and counters) would read back right but sort wrong in SQL.
 *
 * Errors: every SQLite failure returns TS_E_IO after one TS_ERROR line naming
 * the operation and sqlite's message; the transaction is rolled back.
 *
 * Threading: one handle belongs to one thread at a time. Other processes
 * (a web server) may read the file concurrently; WAL never blocks them.
 * Load: a transaction (a batch, or a group of them) costs one fsync of the
 * WAL plus an upsert per comment (new ones 32 to a statement) and one per
 * distinct thread of the
 * transaction (a thread's versions within one batch or group only count
 * once); reads use cached prepared statements.
 */
#ifndef TS_MIRROR_DB_H
#define TS_MIRROR_DB_H

#include <stddef.h>
#include <stdint.h>

#include "threadsync.pb-c.h"

#define TS_MIRROR_DB_SCHEMA_VERSION 1

struct ts_mirror_db;

/* The set of thread ids whose stored content changed, so the caller
 * re-renders only those. Caller-owned: zero it (or TS_MIRROR_TOUCHED_INIT),
 * pass it to any number of apply calls (ids accumulate, each once), read
 * ids[0..n) (ascending), then ts_mirror_touched_clear() or _free(). */
struct ts_mirror_touched {
    uint64_t *ids; /* ascending, no duplicates */
    size_t n;
    size_t cap;
};
#define TS_MIRROR_TOUCHED_INIT                                                                     \
    {                                                                                              \
        NULL, 0, 0                                                                                 \
    }

/* Adds id (no-op when present). TS_OK or TS_E_NOMEM. */
int ts_mirror_touched_add(struct ts_mirror_touched *t, uint64_t id);
/* 1 when id is in the set. */
int ts_mirror_touched_has(const struct ts_mirror_touched *t, uint64_t id);
/* Empties the set, keeping its memory for reuse. */
void ts_mirror_touched_clear(struct ts_mirror_touched *t);
/* Frees the memory; the set is then empty and reusable. */
void ts_mirror_touched_free(struct ts_mirror_touched *t);

/* Opens DIR/mirror.db, creating DIR (0755) and the schema when missing.
 * *out (OUT) is the handle, freed by ts_mirror_db_close(). Returns TS_OK,
 * TS_E_IO, TS_E_NOMEM, or TS_E_CONFIG when the file has another schema
 * version (nothing is changed then). */
int ts_mirror_db_open(const char *dir, struct ts_mirror_db **out);

/* Closes and frees db (NULL is fine). An open group is rolled back, as a
 * crash would leave it. An unfinished snapshot is forgotten;
 * its committed chunks stay (they are valid upserts; staged comments, see
 * the snapshot protocol, go) and the cursor is where the last completed
 * batch left it. */
void ts_mirror_db_close(struct ts_mirror_db *db);

/* *seq (OUT): the stored cursor, 0 on a new mirror. TS_OK or TS_E_IO. */
int ts_mirror_db_cursor(struct ts_mirror_db *db, uint64_t *seq);

/* Applies one Events batch in ONE transaction (its own, or an open group's,
 * below): for each event, upserts its thread and then its comment (when
 * present) by version, then sets the cursor to max(cursor, ev->last_seq).
 * Either all of it commits or nothing does. touched (may be NULL) gains the ids of threads whose
 * thread row or any comment row changed; on failure it is left as it was before the call. ev is
 * read during the call only. Returns TS_OK or TS_E_IO (e.g. a comment whose status is none of the
 * four names violates the CHECK: the whole batch is refused). */
int ts_mirror_db_apply_events(struct ts_mirror_db *db, const Threadsync__Events *ev,
                              struct ts_mirror_touched *touched);

/* Groups, for catching up: between group_begin and group_end, apply_events
 * calls share one transaction instead of committing one each. Each batch
 * still moves the cursor with its own rows, so whatever commits (the group,
 * or nothing after a crash or close) holds whole batches with the cursor
 * that covers them; a crash loses the group's batches, and the mirror
 * resumes from the cursor before them. Reads on db see the group's rows
 * (a group's thread rows are written once, at its end or before a read).
 * A failed apply_events rolls the whole group back and ends it (touched
 * keeps the ids of the group's earlier batches then: a superset, harmless
 * to re-render). Snapshot chunks may join a group too (they move no
 * cursor); snapshot_begin, snapshot_end and setting_set end (commit) an
 * open group first. begin on an open group and end without one do
 * nothing. TS_OK or TS_E_IO. */
int ts_mirror_db_group_begin(struct ts_mirror_db *db);
int ts_mirror_db_group_end(struct ts_mirror_db *db);
/* 1 while a group is open (it ends on group_end or a failed batch). */
int ts_mirror_db_group_is_open(const struct ts_mirror_db *db);

/* Bulk fill, for a sync from cursor 0: bulk_begin drops the index
 * comments_thread, so that the fill appends rows instead of inserting into
 * every thread's range of the index, and bulk_end builds it again in one
 * sorted pass. A read by thread on this handle (thread_by_*, digest,
 * counts of one thread) ends the fill first; other connections (a web
 * stack) that read by thread meanwhile scan the table. A mirror killed in
 * between gets the index back at its next open. During the fill commits
 * are not fsync'd (synchronous=NORMAL): each is still atomic, rows with
 * their cursor, and a crash of the process loses none, but a power loss
 * may take back the latest ones (the cursor with them: the mirror resumes
 * from an earlier one). Nor is the WAL checkpointed during the fill: it
 * grows to about the database's size (disk space for both, until the
 * first checkpoint after the fill), and each group's commit only starts
 * its writeback, so that the fsync that makes the fill durable finds
 * most of it written. bulk_end makes every commit of the fill durable
 * (FULL again, and its own commit fsyncs the WAL) before it returns, so
 * whatever the mirror reports after it is on disk; checkpoints resume
 * with it (the next commit past the limit, or ts_mirror_db_checkpoint).
 * Both end an open group first; bulk_end without bulk_begin does nothing.
 * TS_OK or TS_E_IO. */
int ts_mirror_db_bulk_begin(struct ts_mirror_db *db);
int ts_mirror_db_bulk_end(struct ts_mirror_db *db);
/* The fill's durability without its index, for a caller that builds the
 * index later (while it renders from ts_mirror_db_threads_scan): ends an
 * open group and turns synchronous back to FULL, so the next commit (the
 * caller's own, e.g. a setting) fsyncs the WAL and with it every commit of
 * the fill; checkpoints resume. comments_thread stays dropped until
 * bulk_end. No fill: only the group ends. TS_OK or TS_E_IO. */
int ts_mirror_db_bulk_durable(struct ts_mirror_db *db);

/* Copies the WAL's committed frames into the database file now (a
 * passive checkpoint: no reader or writer is waited for), instead of at a
 * later commit past wal_autocheckpoint or at the last close, which a first
 * sync's wall clock waits for: for a caller with time to spare (the loop
 * thread of a scanned render, once the index is built, while the helper
 * renders). TS_OK or TS_E_IO. */
int ts_mirror_db_checkpoint(struct ts_mirror_db *db);

/* Snapshot protocol: begin(S), apply_chunk() per SnapshotChunk, end(S).
 * Each chunk commits in its own transaction, or in an open group's
 * (threads, then comments, by version); the cursor does not move until end,
 * which commits an open group and then sets it to max(cursor, S) in its own
 * transaction. A crash in between leaves the cursor before
 * the snapshot, so the next subscribe re-fetches it; chunk rows already
 * committed are harmless upserts. begin while a snapshot is open restarts
 * it (a new snapshot replaces an interrupted one). apply_chunk or end
 * without begin, or end with another seq: TS_E_INVALID_ARGUMENT.
 * A snapshot begun during a bulk fill stages its comments instead (a
 * TEMP table of this connection, appended to as chunks come) and end
 * moves them into comments in id order, by version, in the transaction
 * that sets the cursor: until end, reads do not see them, a crash or close
 * forgets them, and touched gains their threads at end, not per chunk
 * (thread rows are stored, and touched, per chunk either way). Outside a
 * bulk fill comments are upserted per chunk. touched (may be NULL) as in
 * apply_events. */
int ts_mirror_db_snapshot_begin(struct ts_mirror_db *db, uint64_t seq);
int ts_mirror_db_snapshot_apply_chunk(struct ts_mirror_db *db, const Threadsync__SnapshotChunk *c,
                                      struct ts_mirror_touched *touched);
int ts_mirror_db_snapshot_end(struct ts_mirror_db *db, uint64_t seq,
                              struct ts_mirror_touched *touched);

/* A thread with its comments, read from the database and owned by the
 * caller (free with ts_mirror_thread_free()). Strings are NUL-terminated
 * copies; comments[0..n_comments) are in id order, laid out like a protobuf
 * repeated field so they can be passed where Threadsync__Comment ** goes. */
struct ts_mirror_thread {
    Threadsync__Thread thread;
    size_t n_comments;
    Threadsync__Comment **comments;
    char *text; /* internal: the block the comments' strings live in */
};
void ts_mirror_thread_free(struct ts_mirror_thread *t);

/* Loads a thread and all its comments. *out (OUT) is NULL on error.
 * TS_OK, TS_E_NOT_FOUND, TS_E_NOMEM or TS_E_IO. */
int ts_mirror_db_thread_by_id(struct ts_mirror_db *db, uint64_t id, struct ts_mirror_thread **out);
int ts_mirror_db_thread_by_key(struct ts_mirror_db *db, const char *key,
                               struct ts_mirror_thread **out);

/* Many threads read at once, for a render of most of a mirror (a first
 * sync's): threads ids[0..n) (ascending, as a struct ts_mirror_touched
 * holds them) with all their comments, by one pass over comments in id
 * order keeping those threads' rows, instead of a seek through
 * comments_thread and another into the table per comment. It needs no
 * index, so it does not end a bulk fill. *out (OUT) owns everything it
 * holds (free with ts_mirror_scan_free, never ts_mirror_thread_free);
 * ts_mirror_scan_thread(s, i) is thread ids[i] as
 * ts_mirror_db_thread_by_id would give it (comments in id order), or NULL
 * when it is not stored. s may be read by several threads at once.
 * Memory: every loaded comment at once, in 32 MiB mappings (about 1.3
 * times the rows' size in the file); a caller bounds it by asking for a
 * slice of the threads at a time (see ts_mirror_db_size). TS_OK,
 * TS_E_NOMEM or TS_E_IO (*out NULL). */
struct ts_mirror_scan;
int ts_mirror_db_threads_scan(struct ts_mirror_db *db, const uint64_t *ids, size_t n,
                              struct ts_mirror_scan **out);
const struct ts_mirror_thread *ts_mirror_scan_thread(const struct ts_mirror_scan *s, size_t i);
void ts_mirror_scan_free(struct ts_mirror_scan *s);

/* *bytes (OUT): the database's size as this handle sees it (pages times
 * the page size), an upper bound on what its rows hold. TS_OK or TS_E_IO. */
int ts_mirror_db_size(struct ts_mirror_db *db, uint64_t *bytes);

/* Calls cb for every thread row in id order (comments are not loaded; call
 * ts_mirror_db_thread_by_id from cb for them). t and its strings live only
 * during the call. A non-zero return from cb stops the walk and is returned;
 * otherwise 0, or TS_E_IO when reading fails.
 * Not reentrant: cb must not call ts_mirror_db_foreach_thread, apply or
 * snapshot functions on the same db. */
int ts_mirror_db_foreach_thread(struct ts_mirror_db *db,
                                int (*cb)(void *arg, const Threadsync__Thread *t), void *arg);

/* Row counts: over the whole mirror when thread_id is 0, else over that
 * thread (threads is then 0 or 1). visible counts VISIBLE comments, which
 * equals the threads' comment_count when the mirror is consistent. */
struct ts_mirror_counts {
    uint64_t threads;
    uint64_t comments;
    uint64_t visible;
};
int ts_mirror_db_counts(struct ts_mirror_db *db, uint64_t thread_id, struct ts_mirror_counts *out);

/* *empty (OUT): 1 when the database holds no thread and no comment (a
 * lookup of each table's first row, not a count). TS_OK or TS_E_IO. */
int ts_mirror_db_is_empty(struct ts_mirror_db *db, int *empty);

/* The canonical digest (proto/ts_digest.h) of a stored thread, as 64 hex
 * digits and a NUL in out. TS_OK, TS_E_NOT_FOUND, TS_E_NOMEM or TS_E_IO. */
int ts_mirror_db_digest(struct ts_mirror_db *db, uint64_t thread_id, char out[65]);

/* A setting the mirror program keeps next to its data (e.g. 'filter', the
 * subscription it follows), in meta under name; 'last_seq' and
 * 'schema_version' are refused with TS_E_INVALID_ARGUMENT. get: *out (OUT)
 * is a malloc'd copy the caller frees, NULL when unset. set: its own
 * transaction. TS_OK, TS_E_NOMEM or TS_E_IO. */
int ts_mirror_db_setting_get(struct ts_mirror_db *db, const char *name, char **out);
int ts_mirror_db_setting_set(struct ts_mirror_db *db, const char *name, const char *value);

/* Testing only: when set, called before each event of a batch is applied,
 * inside the transaction; a non-zero return fails the batch with TS_E_IO
 * as a storage error would (a test may also _exit() here to simulate a
 * crash mid-transaction). */
extern int (*ts__mirror_db_fault_hook)(uint64_t seq);

/* Testing only: the WAL bytes past which a commit checkpoints (copies the
 * WAL into the file), read at open; 32 MiB unless set. */
extern uint32_t ts__mirror_db_wal_checkpoint_bytes;

/* 1 while text a commit replaced may still be in the WAL: a reader (the
 * web stack, or the mirror's own render thread) held it open when the
 * commit tried to scrub. ts_mirror_db_scrub_retry() tries again at once
 * (never inside an open group); an idle mirror calls it on a timer, so the
 * text does not wait for the next change to go. */
int ts_mirror_db_scrub_due(const struct ts_mirror_db *db);
void ts_mirror_db_scrub_retry(struct ts_mirror_db *db);

#endif
