/*
 * ts_arena: memory carved in allocation order from big mappings asked for
 * huge pages, never moved or freed piece by piece: all of it goes at once.
 *
 * For many small pieces that live and die together (a render's comments
 * and their text): a 32 MiB mapping faults in as 16 huge pages instead of
 * 8,192 small ones, and is returned with one munmap instead of a free per
 * piece. Under a VM whose page faults and TLB shootdowns are dear (this
 * project's machines), loading 300,000 comments into heap buffers grown
 * by realloc and freed thread by thread spent most of its CPU there.
 *
 * Invariants: every piece is 16-byte aligned; a piece larger than a chunk
 * gets a mapping of its own; mapped never passes limit (0: no limit).
 * Not thread-safe: one thread at a time.
 */
#ifndef TS_ARENA_H
#define TS_ARENA_H

#include <stddef.h>

struct ts_arena_chunk;

struct ts_arena {
    struct ts_arena_chunk *chunks; /* newest first */
    size_t mapped;                 /* bytes of all chunks */
    size_t limit;                  /* most bytes mapped at once; 0 for no limit */
};

#define TS_ARENA_CHUNK (32u << 20)

/* size bytes (uninitialised; fresh mappings read as zero), valid until
 * ts_arena_free. NULL when a mapping fails or would pass the limit. */
void *ts_arena_alloc(struct ts_arena *a, size_t size);

/* Unmaps every chunk: a is empty again (its limit kept). */
void ts_arena_free(struct ts_arena *a);

#endif
