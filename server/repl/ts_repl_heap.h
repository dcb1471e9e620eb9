/*
 * ts_repl_heap: fork-private memory for Raft entry buffers.
 *
 * The node forks a child for every snapshot (ts_repl.c): after the fork each
 * page the parent writes is copied on its first write, a fault and, on a
 * virtual machine, a dear TLB shootdown across the node's threads, until
 * the child exits. A proposal's entry buffer is written by ts_repl_propose
 * and freed by libraft when a snapshot truncates the log; from malloc both
 * writes land in heap pages the child shares and never reads (issue 17, the
 * snapshot p99: 8 % of the loop's faults in the copy, 16 % in free).
 *
 * This module carves those buffers from chunks of one mapping marked
 * MADV_DONTFORK, which a child does not inherit, and installs a libraft heap
 * (raft_heap_set) whose free, realloc and aligned_free give such a pointer
 * back to its chunk and pass every other pointer to the C library. So an
 * entry buffer from here is an ordinary raft buffer: whoever owns it frees
 * it with raft_free.
 *
 * Chunks (TS_REPL_HEAP_CHUNK bytes) are bump-allocated and go back to a
 * free list when the last buffer carved from them is freed after they
 * stopped being the current one. libraft frees log entries in about the
 * order they were made, so chunks empty in that order too: the memory held
 * is the in-memory log rounded up to whole chunks, and free chunks are kept
 * (faulted in, private) for reuse, so the peak of that is what stays. A
 * buffer larger than a quarter chunk, or one that finds the reserved region
 * full (TS_REPL_HEAP_REGION: the fork-private log's cap), comes from malloc
 * instead: still freed with raft_free, only not fork-private.
 *
 * Threads: every function may be called from any thread (one mutex guards
 * the chunks); telling a pool pointer from another takes no lock. In a
 * forked child the region is unmapped: the child must not free, or read,
 * an entry buffer (the snapshot child touches the store only).
 */
#ifndef TS_REPL_HEAP_H
#define TS_REPL_HEAP_H

#include <stddef.h>

#define TS_REPL_HEAP_CHUNK ((size_t)1 << 20)
#define TS_REPL_HEAP_REGION ((size_t)1 << 30)

/* Reserves the region (address space only) and makes the heap libraft's.
 * Once per process; later calls return the first one's result. TS_OK, or
 * TS_E_NOMEM when the region cannot be reserved (libraft's heap is then
 * left as it was and ts_repl_heap_alloc is plain raft_malloc). */
int ts_repl_heap_install(void);

/* len bytes for an entry buffer, 16-byte aligned, not zeroed; the caller
 * owns it and frees it with raft_free (or hands it to libraft, which does).
 * Fork-private when the heap is installed and len fits; NULL when out of
 * memory. */
void *ts_repl_heap_alloc(size_t len);

/* Nonzero when p was carved from the fork-private region. */
int ts_repl_heap_owns(const void *p);

struct ts_repl_heap_stats {
    size_t chunks;          /* chunks ever made writable (never returned) */
    size_t chunks_free;     /* of those, empty and on the free list */
    size_t live;            /* buffers carved and not yet freed */
    unsigned long fallback; /* allocations malloc served (too large, region full) */
};

/* A consistent copy of the counters (all zero before install). */
void ts_repl_heap_stats(struct ts_repl_heap_stats *out);

#endif
