/*
 * ts_testpoll: how a test waits. Every wait on a condition is a loop over
 * an absolute deadline in ts_test_now_ms() time that ends when the
 * condition holds or the deadline passes, and then asserts the condition:
 *
 *   uint64_t deadline = ts_test_now_ms() + 10000;
 *   while (!condition() && ts_test_poll(deadline))
 *       ;
 *   ck_assert(condition());
 *
 * The poll interval is named here once (TS_TEST_POLL_MS); the deadline is
 * the only timing a test chooses, and it is generous, so that a loaded
 * machine makes a test slower, never failed. A test that must act within
 * a narrow window after a condition turns true (kill a child mid-write)
 * polls with ts_test_spin() instead.
 *
 * No Check here (the soak client links this alone); the functions only
 * read the clock, sleep and reap.
 */
#ifndef TS_TESTPOLL_H
#define TS_TESTPOLL_H

#include <stdint.h>
#include <sys/types.h>

/* Milliseconds of CLOCK_MONOTONIC, for test deadlines. */
uint64_t ts_test_now_ms(void);

/* The one poll step of a wait for a condition: before deadline_ms
 * (ts_test_now_ms() time), waits one poll interval (TS_TEST_POLL_MS) and
 * returns 1; at or past it returns 0 at once. */
#define TS_TEST_POLL_MS 50
int ts_test_poll(uint64_t deadline_ms);

/* ts_test_poll() with a step of TS_TEST_SPIN_US, for a wait that must see
 * its condition within a fraction of a millisecond (a test that kills a
 * process between two of its writes). Costs CPU: only for short waits. */
#define TS_TEST_SPIN_US 100
int ts_test_spin(uint64_t deadline_ms);

/* Waits until child pid exits or deadline_ms: 1 when it exited (reaped,
 * its wait status in *status, which may be NULL), 0 when it still runs at
 * the deadline (not signalled: the caller decides), -1 when pid is not a
 * child of ours. */
int ts_test_await_exit(pid_t pid, uint64_t deadline_ms, int *status);

/* Waits for the first line of path (a daemon's --addr-file, written once
 * it listens) while child pid runs: TS_OK with the line, without its
 * newline, in out; TS_E_IO when pid exited first (reaped, *status set;
 * status may be NULL); TS_E_TIMEOUT at deadline_ms (pid left running). */
int ts_test_await_line(pid_t pid, const char *path, char *out, size_t size, uint64_t deadline_ms,
                       int *status);

/* Lines in the file at path (0 when it cannot be read). */
int ts_test_count_lines(const char *path);

#endif
