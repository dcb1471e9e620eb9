/*
 * ts_mirror_sync: the sync policy of `threadsync mirror`, network-free.
 * It takes decoded batches and snapshot pieces (from the subscription, or a
 * test) and decides when they are committed, grouped, handed to the writer
 * thread, and when which threads' files are rendered; it drives
 * ts_mirror_db, ts_mirror_writer and ts_mirror_render to do it. The
 * network side (ts_client, reconnects, verify, CLI output) is
 * client/cli/ts_cli_mirror.c's.
 *
 * Invariants (why each holds is in ts_mirror_sync.c's opening paragraph):
 * - Every batch is stored before the call that delivered it returns: a
 *   live (caught-up) batch committed with its cursor, a catching-up one in
 *   an open group (committed within GROUP_MAX_NS by a timer on the loop, at
 *   GROUP_MAX_EVENTS, and before any render, snapshot or stop), or, during
 *   a sync from cursor 0, queued to the writer thread.
 * - Files follow the database: each touched thread is rendered once per
 *   flush from committed rows; the setting 'rendered_seq' records the
 *   cursor of the last complete flush, 'files_unsynced' a big flush not yet
 *   made durable.
 *
 * Threading: every call on the loop thread given to ts_mirror_sync_attach
 * (or, before it, the one thread that opened it). During a sync from
 * cursor 0 begun with a writer, the writer thread owns the database until
 * the first caught-up batch (which it stores too) is committed, or a
 * snapshot or a drain: ts_mirror_sync_db's handle
 * is the caller's to use only outside that stretch (verify, which never
 * asks for a writer, uses it throughout).
 */
#ifndef TS_MIRROR_SYNC_H
#define TS_MIRROR_SYNC_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "threadsync.pb-c.h"
#include "ts_mirror_db.h"

struct ts_mirror_sync;

/* Called on the loop; any member may be NULL. failed: a commit the group
 * timer made (outside any call) failed: the mirror must stop, its database
 * may not hold what the stream moved past. flushed: after each render
 * flush, with the threads it rendered (valid during the call). */
struct ts_mirror_sync_cbs {
    void *arg;
    void (*failed)(void *arg, int err);
    void (*flushed)(void *arg, const struct ts_mirror_touched *ids);
};

/* What a sync did, for progress lines and THREADSYNC_MIRROR_TIMING. CPU
 * phases are ns summed over the threads that ran them; wall_* are wall ns
 * (of flushes, of their final syncfs, from ts_mirror_sync_open until the
 * first caught-up batch was stored). loop_busy: the loop thread's CPU in
 * this module. fill_built: a render of every thread after a first sync
 * built them from the writer's kept batches (ts_mirror_fill), not from a
 * read of the database; cpu_read then counts that build. */
struct ts_mirror_sync_stats {
    uint64_t events, snap_threads, snap_comments, rendered;
    unsigned snapshots, fill_built;
    uint64_t cpu_apply, cpu_commit, cpu_index, cpu_read, cpu_build, cpu_write, cpu_prep;
    uint64_t wall_render, wall_sync, wall_caught_up;
    uint64_t loop_busy;
};

/* Opens DIR/mirror.db (created if absent) into *out; free with
 * ts_mirror_sync_free. cbs is copied. */
int ts_mirror_sync_open(const char *dir, const struct ts_mirror_sync_cbs *cbs,
                        struct ts_mirror_sync **out);

/* The database, owned by s (see Threading above). */
struct ts_mirror_db *ts_mirror_sync_db(struct ts_mirror_sync *m);

/* Why files may be behind the database at start (ts_mirror_sync_recover). */
enum ts_mirror_sync_stale {
    TS_MIRROR_SYNC_FRESH = 0,
    TS_MIRROR_SYNC_BEHIND,   /* stopped between a commit and its flush */
    TS_MIRROR_SYNC_UNSYNCED, /* stopped during a big flush or before its syncfs */
};

/* At start, with the database's cursor: when the files may be behind it,
 * marks every thread for rendering and says why in *why; the caller then
 * renders them with ts_mirror_sync_flush. *rendered_seq: the setting. */
int ts_mirror_sync_recover(struct ts_mirror_sync *m, uint64_t cursor,
                           enum ts_mirror_sync_stale *why, uint64_t *rendered_seq, size_t *threads);

/* Begins syncing from since (the database's cursor, or 0 for a sync from
 * scratch: a bulk fill that renders nothing until caught up). writer
 * non-zero: a sync from scratch stores its batches on a writer thread and
 * creates new threads' files on another (a thread that cannot start only
 * makes the sync slower). */
int ts_mirror_sync_begin(struct ts_mirror_sync *m, uint64_t since, int writer);

/* Puts s's timers on loop; from now on every call is on that loop's thread.
 * Before the loop ends: ts_mirror_sync_stop. */
void ts_mirror_sync_attach(struct ts_mirror_sync *m, uv_loop_t *loop);

/* Stores a batch (see the invariants); renders nothing. Any error: the
 * mirror must stop (the stream may have moved past what is stored). */
int ts_mirror_sync_apply(struct ts_mirror_sync *m, const Threadsync__Events *ev);

/* After ev (the last batch applied) was stored: notes a first caught-up
 * batch, and flushes when due: after a caught-up batch, and while catching
 * up (unless syncing from scratch) at most every RENDER_EVERY_NS or
 * RENDER_DUTY times the last flush's duration. */
int ts_mirror_sync_applied(struct ts_mirror_sync *m, const Threadsync__Events *ev);

/* A snapshot (ts_mirror_db's snapshot protocol): begin ends the writer
 * first, if any; chunks join groups as catching-up batches do; end moves
 * the cursor and flushes, unless a sync from scratch is not yet caught up. */
int ts_mirror_sync_snapshot_begin(struct ts_mirror_sync *m, uint64_t seq);
int ts_mirror_sync_snapshot_chunk(struct ts_mirror_sync *m, const Threadsync__SnapshotChunk *chunk);
int ts_mirror_sync_snapshot_end(struct ts_mirror_sync *m, uint64_t seq);

/* Commits what the writer thread holds and ends it: the database is the
 * loop's again. Returns the writer's first failure. */
int ts_mirror_sync_drain(struct ts_mirror_sync *m);

/* Commits the open group, renders every pending thread and records the
 * cursor they cover ('rendered_seq'). */
int ts_mirror_sync_flush(struct ts_mirror_sync *m);

/* The cursor as far as batches were taken: the last one handed to the
 * writer while it runs, else the database's. */
uint64_t ts_mirror_sync_cursor(struct ts_mirror_sync *m);

/* Closes s's timers (uv_close): call once, before the loop ends, after a
 * last drain and flush. No other call but _stats, _db and _free after. */
void ts_mirror_sync_stop(struct ts_mirror_sync *m);

const struct ts_mirror_sync_stats *ts_mirror_sync_stats(const struct ts_mirror_sync *m);

/* Testing only: the database bytes one pass of a render of (nearly) every
 * thread loads at once (ts_mirror_sync.c, render_scanned); smaller makes
 * more passes, each over fewer threads. Not 0. */
extern uint64_t ts__mirror_sync_scan_bytes;

/* Testing only: the rows a first sync keeps for its render
 * (ts_mirror_fill); 0 keeps none, so the render reads the database. */
extern uint64_t ts__mirror_sync_fill_bytes;

/* Ends the writer and the file-creating thread if still running, closes
 * the databases and frees s. NULL is fine. Timers: stopped and their close
 * callbacks run (the loop ran after ts_mirror_sync_stop), or never
 * attached. */
void ts_mirror_sync_free(struct ts_mirror_sync *m);

#endif
