/*
 * ts_web_fan: the web edge's delivery threads, which write the live feed's
 * bytes to plain-HTTP event streams off the HTTP loop.
 *
 * Why: an event reaches every browser watching its thread as one sendmsg
 * per browser. On loopback each costs the sender about 6 us of kernel time
 * (it also runs the receiver's TCP processing), so 10,000 browsers cost one
 * thread about 60 ms per event, and with the writes on the HTTP loop every
 * request, and the next event, waited behind them (p99 145-243 ms at 10
 * posts/s, bench/README.md "The web edge"). Here the loop queues each
 * write (fd and bytes) on the shard its stream was given, K threads each
 * write their shard's share of every event, and the loop learns each
 * write's outcome afterwards, on its own thread.
 *
 * Ownership: everything but the sendmsg stays the loop's. A queued write's
 * bytes and its fd must stay valid until its done callback: the caller
 * keeps its references and does not close the fd until then. The threads
 * never allocate, free or count references of the caller's objects; the
 * iovec array itself is copied.
 *
 * Invariants: writes of one shard are made in the order they were queued
 * (one FIFO per thread), and their done callbacks come in that order, on
 * the loop, never from inside ts_web_fan_write. The caller keeps at most
 * one write per fd queued (ts_web.c: one write in flight per watcher).
 * While writes are queued or unreported the fan holds the loop (its async
 * handle is referenced), so the loop cannot end with a done callback owed.
 *
 * Load: an entry of 24 B plus 16 B per buffer per write, in a batch per
 * shard; a batch goes to its thread every BATCH_ENTRIES writes, and the
 * rest when the loop next turns (an idle handle), so the threads start
 * writing while the loop still queues the rest of an event. A thread makes
 * a batch's writes one sendmsg each, or, batched (io_uring, when built with
 * liburing and the kernel allows it), all in one system call.
 */
#ifndef TS_WEB_FAN_H
#define TS_WEB_FAN_H

#include <stddef.h>
#include <sys/uio.h>
#include <uv.h>

struct ts_web_fan;

/* A queued write was made (on the loop): written bytes of iov[0..n) went
 * out, from the start; fewer than all of them (the socket's buffer is full,
 * or an error, which the caller's next write on the fd finds again). iov is
 * the fan's copy, valid during the call. */
typedef void (*ts_web_fan_done)(void *arg, const struct iovec *iov, size_t n, size_t written);

/* Starts threads (>= 1) delivery threads for loop; batched: each tries
 * to write through an io_uring of its own (see ts_web_fan_batched), else
 * with sendmsg. *out (OUT): close it with ts_web_fan_close() on the loop,
 * free it with ts_web_fan_free() after the loop ended. threads above 64
 * are 64. TS_OK, TS_E_NOMEM (memory, or a thread that would not start:
 * nothing is left running then). */
int ts_web_fan_new(uv_loop_t *loop, unsigned threads, int batched, ts_web_fan_done done,
                   struct ts_web_fan **out);

/* Threads of f; 0 for NULL. */
unsigned ts_web_fan_threads(const struct ts_web_fan *f);

/* Threads of f writing through io_uring now (0 without liburing, when the
 * kernel refuses rings, e.g. sysctl kernel.io_uring_disabled or seccomp, or
 * after a ring failed and its thread went back to sendmsg); 0 for NULL. */
unsigned ts_web_fan_batched(const struct ts_web_fan *f);

/* The default number of threads: one per core the process may use
 * (uv_available_parallelism), at most 8. */
unsigned ts_web_fan_default_threads(void);

/* Queues a write of iov[0..n) (n >= 1, at most IOV_MAX) to fd on thread
 * shard % threads; done(arg, ...) follows on the loop. TS_OK, TS_E_CLOSED
 * (after ts_web_fan_close: write on the loop instead), TS_E_NOMEM. */
int ts_web_fan_write(struct ts_web_fan *f, unsigned shard, int fd, const struct iovec *iov,
                     size_t n, void *arg);

/* Takes no more writes, hands every queued one to its thread and waits
 * until each is made (so a shutdown(2) after it comes behind their bytes);
 * their done callbacks still come, on the loop, after which the fan's
 * handles close. Idempotent. NULL is fine. */
void ts_web_fan_close(struct ts_web_fan *f);

/* Joins the threads and frees f, after ts_web_fan_close() and after the
 * loop ended. NULL is fine. */
void ts_web_fan_free(struct ts_web_fan *f);

#endif
