/*
 * ts_lattrace: where a post's delivery time goes, stage by stage, for the
 * benchmark's latency scenario (bench/README.md, "Where latency goes").
 *
 * Off unless the environment variable THREADSYNC_LATENCY_TRACE names a file
 * when ts_lattrace_open() runs; then every post whose body starts with the
 * load generator's stamp ("tsb " and 20 digits: CLOCK_MONOTONIC ns when the
 * generator built it, the clock uv_hrtime() reads here too) gets one record
 * of the times it reached each stage, written as a table to that file by
 * ts_lattrace_close(). Posts without the stamp are not traced. Off, each
 * hook costs one load and a branch (ts_lattrace_on).
 *
 * Stages, each a CLOCK_MONOTONIC time in ns:
 *   decoded   the frame decoded on the I/O thread carrying the connection
 *             (unset when the connection lives on the main loop: then it is
 *             the queued time);
 *   queued    the post handler on the main loop put it in the loop turn's
 *             batch;
 *   proposed  the batch handed to raft (log append and fsync submitted);
 *   applied   committed (on disk) and applied to the store: its seq known;
 *   pushed    the hub wrote the event to the first and to the last
 *             subscriber's link (for a threaded link: queued to its I/O
 *             thread; the write to the socket and the subscriber's reading
 *             are the generator's first/last delivery figures).
 *
 * Threads: ts_lattrace_decoded() may be called from any thread; the others
 * from the main loop only. Records live in one table allocated at open
 * (TS_LATTRACE_MAX posts; later posts are not traced).
 */
#ifndef TS_LATTRACE_H
#define TS_LATTRACE_H

#include <stddef.h>
#include <stdint.h>

/* Posts traced at most in one run (about 64 bytes each). */
#define TS_LATTRACE_MAX (1u << 20)

/* Nonzero while tracing; read without a lock (set once at open). */
extern int ts_lattrace_on;

/* Opens the trace if THREADSYNC_LATENCY_TRACE is set (TS_OK, also when it
 * is not; TS_E_NOMEM). Call once, before any other thread runs. */
int ts_lattrace_open(void);

/* Writes the table (one line per traced post) and frees everything. After
 * every other thread has stopped. A no-op when not open. */
void ts_lattrace_close(void);

/* The generator's stamp in a post body, 0 when the body has none. */
uint64_t ts_lattrace_stamp(const char *body);

/* Stage times of the post stamped `stamp` (from ts_lattrace_stamp; 0 is
 * ignored), now. */
void ts_lattrace_decoded(uint64_t stamp);
void ts_lattrace_queued(uint64_t stamp);
void ts_lattrace_proposed(uint64_t stamp);
/* Also maps seq to the post for ts_lattrace_pushed(). */
void ts_lattrace_applied(uint64_t stamp, uint64_t seq);

/* The hub wrote the events after seq `after` up to seq `upto` to one
 * subscriber, now. */
void ts_lattrace_pushed(uint64_t after, uint64_t upto);

#endif
