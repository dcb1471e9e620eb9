/*
 * ts_mirror_fill: the rows a first sync stores, kept in memory as the
 * writer applies them, so that its render (every thread, once caught up)
 * builds the threads from them instead of reading the whole fill back out
 * of SQLite.
 *
 * Invariants:
 * - What ts_mirror_fill_build makes is exactly what ts_mirror_db would
 *   read back for the same threads (ts_mirror_db_threads_scan), provided
 *   the database was empty when the first batch was added and every batch
 *   applied since was added, in order, and committed: the same rules
 *   (upsert by version, text of a comment that is not visible stored
 *   empty, the thread row's columns only, comments in id order) are
 *   applied to the same events. Keeping that proviso is the caller's
 *   (ts_mirror_sync: a fill exists only for a writer's sync from cursor 0
 *   into an empty database, and is dropped as soon as anything else is
 *   applied).
 * - Events the rules cannot be followed for in memory (an id or a version
 *   of 2^63 or more, which SQLite orders as negative; a status without a
 *   name, which the database refuses), more than max_bytes of rows, or no
 *   memory spend the fill: build then says TS_E_NOT_FOUND and the caller
 *   reads the database instead.
 *
 * Load: an add copies each new comment row (struct and text, about 370
 * bytes for a 250-byte body) and looks up its id and its thread's in two
 * hash tables, on the writer's thread; build is one pass over the rows,
 * and the threads it makes point into the fill: valid until it is freed.
 * Not thread-safe: one thread at a time (the writer's, then the loop's).
 */
#ifndef TS_MIRROR_FILL_H
#define TS_MIRROR_FILL_H

#include <stddef.h>
#include <stdint.h>

#include "threadsync.pb-c.h"
#include "ts_mirror_db.h"

struct ts_mirror_fill;

/* An empty fill that keeps at most max_bytes of rows. *out (OUT): free
 * with ts_mirror_fill_free. TS_OK or TS_E_NOMEM. */
int ts_mirror_fill_new(size_t max_bytes, struct ts_mirror_fill **out);

/* Adds ev, a batch just applied (committed, or in the group that will be):
 * its rows replace older ones by the database's rules. Reads ev during the
 * call only. */
void ts_mirror_fill_add(struct ts_mirror_fill *f, const Threadsync__Events *ev);

/* Frees what was kept and spends the fill: something was applied that it
 * did not see. NULL is fine. */
void ts_mirror_fill_spend(struct ts_mirror_fill *f);

/* Builds threads ids[0..n) (ascending, no duplicates) as the database holds
 * them after the kept batches. TS_OK; TS_E_NOT_FOUND (spent, or built
 * already) or TS_E_NOMEM: read the database instead. Once. */
int ts_mirror_fill_build(struct ts_mirror_fill *f, const uint64_t *ids, size_t n);

/* Thread ids[i] of the build, NULL when not stored. Valid until free; its
 * text field is NULL (not for ts_mirror_thread_free). */
const struct ts_mirror_thread *ts_mirror_fill_thread(const struct ts_mirror_fill *f, size_t i);

/* NULL is fine. */
void ts_mirror_fill_free(struct ts_mirror_fill *f);

#endif
