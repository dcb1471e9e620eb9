/*
 * ts_mirror_writer: applies Events batches to a mirror database on a thread
 * of its own, so that a first sync receives and decodes the next batches
 * (TLS, protobuf, on the event loop) while SQLite stores the earlier ones.
 *
 * Invariants:
 * - Batches are applied in the order they were pushed, each as
 *   ts_mirror_db_apply_events would, inside groups (ts_mirror_db.h): a group
 *   commits after group_max_events events, whenever the queue runs empty
 *   (nothing waits uncommitted while the stream is slow), and at drain. So
 *   whatever commits holds whole batches with the cursor that covers them;
 *   a crash loses the open group and the queue, and the mirror resumes from
 *   the committed cursor.
 * - Between start and stop the writer owns db: the caller touches it only
 *   after a drain and before the next push.
 * - The first failure stops the writer: later batches are dropped, and push,
 *   drain and stop return that error (the caller must then stop syncing:
 *   the library's resume cursor is past data the database does not hold).
 *
 * Load: a push copies the batch (one allocation, its strings included) and
 * blocks while queue_max_bytes of copies wait, which pushes back on the
 * connection. Memory: up to queue_max_bytes plus the batch being applied
 * (plus what a fill keeps, ts_mirror_writer_keep: up to its own bound).
 */
#ifndef TS_MIRROR_WRITER_H
#define TS_MIRROR_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "threadsync.pb-c.h"
#include "ts_mirror_db.h"

struct ts_mirror_writer;

/* Starts the thread. db stays the caller's to close, after stop. *out (OUT)
 * is freed by ts_mirror_writer_stop(). TS_OK, TS_E_NOMEM or TS_E_INTERNAL
 * (no thread). */
int ts_mirror_writer_start(struct ts_mirror_db *db, size_t group_max_events, size_t queue_max_bytes,
                           struct ts_mirror_writer **out);

/* Before the first push: every batch applied from now on is also given to
 * fill (ts_mirror_fill_add, on the writer's thread); the caller reads fill
 * only after stop. fill stays the caller's. */
struct ts_mirror_fill;
void ts_mirror_writer_keep(struct ts_mirror_writer *w, struct ts_mirror_fill *fill);

/* Queues a copy of ev (read during the call only). TS_OK, TS_E_NOMEM, or
 * the error that stopped the writer. */
int ts_mirror_writer_push(struct ts_mirror_writer *w, const Threadsync__Events *ev);

/* Waits until every queued batch is applied and committed, then adds the
 * ids of the threads they changed to touched (may be NULL). TS_OK or the
 * error that stopped the writer (touched then gets what was applied before
 * it: a superset of what committed, harmless to re-render). */
int ts_mirror_writer_drain(struct ts_mirror_writer *w, struct ts_mirror_touched *touched);

/* Drains (as above), ends the thread and frees w (NULL is fine: TS_OK).
 * *cpu_ns (may be NULL) gets the CPU time the thread used, for reports. */
int ts_mirror_writer_stop(struct ts_mirror_writer *w, struct ts_mirror_touched *touched,
                          uint64_t *cpu_ns);

#endif
