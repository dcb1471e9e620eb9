/*
 * ts_repl_aio: libraft's kernel AIO contexts are destroyed off the loop.
 *
 * libraft 0.15 writes each log segment through a writer of its own with a
 * kernel AIO context (io_setup), and when the segment is closed (every
 * segment's worth of log, and at every snapshot, which closes the open
 * segment) it destroys that context with io_destroy on the loop thread.
 * io_destroy returns only after an RCU grace period: about 30 ms on the
 * 2-core virtual machine the benchmarks run on (bench/README.md, "The
 * 30 ms segment switch"), during which the loop serves nobody. At 10
 * posting connections that wait was the ingest ack p99.
 *
 * The context has nothing in flight by then (libraft closes a writer only
 * after its last write completed) and libraft does not touch it again, so
 * nothing needs the destruction to be finished when the call returns. This
 * module defines syscall(2) for the executable: libraft's io_destroy(2)
 * calls glibc's syscall() (it has no io_destroy symbol of its own to
 * override), and once ts_repl_aio_install() ran, syscall(SYS_io_destroy,
 * ctx) queues ctx for a thread of this module and returns 0. Every other
 * call, and io_destroy before install or with the queue full, goes to
 * glibc's syscall() unchanged (same result, same errno). A context queued
 * stays mapped until that thread has destroyed it, so at most
 * TS_REPL_AIO_QUEUE of them, each a few pages, outlive their writer.
 *
 * The definition only takes effect in an executable that links this object
 * (ts_repl pulls it in) against libraft as a shared library; the dynamic
 * linker then binds libraft's syscall to it.
 */
#ifndef TS_REPL_AIO_H
#define TS_REPL_AIO_H

#define TS_REPL_AIO_QUEUE 64

/* Starts the thread that destroys queued contexts and turns the deferral
 * on. Once per process; later calls return the first one's result. TS_OK,
 * or TS_E_NOMEM when the thread cannot be started (io_destroy then stays
 * synchronous). */
int ts_repl_aio_install(void);

struct ts_repl_aio_stats {
    unsigned long deferred;  /* io_destroy calls answered at once and queued */
    unsigned long destroyed; /* of those, destroyed by the thread */
    unsigned long failed;    /* of those, refused by the kernel (an unknown context) */
};

void ts_repl_aio_stats(struct ts_repl_aio_stats *out);

#endif
