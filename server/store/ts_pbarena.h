/*
 * ts_pbarena: a protobuf-c allocator that carves one decode's blocks from a
 * buffer, bump fashion, so a decode costs no malloc and touches memory that
 * was touched before. A block that does not fit comes from malloc and is
 * counted; free releases only those (it tells them apart by address), so
 * free_unpacked need not run at all when nothing spilled.
 *
 * The buffer is the caller's (borrowed, it outlives every block carved
 * from it); ts_pbarena_reset makes it whole again once nothing points into
 * it. Pass &arena->alloc to protobuf-c's unpack and free_unpacked.
 */
#ifndef TS_PBARENA_H
#define TS_PBARENA_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

struct ts_pbarena {
    ProtobufCAllocator alloc;
    uint8_t *buf; /* borrowed; NULL: every block from malloc */
    size_t cap, used;
    size_t spilled; /* blocks from malloc since the last reset */
};

/* Points the arena at buf (cap bytes) and empties it. */
void ts_pbarena_init(struct ts_pbarena *ar, uint8_t *buf, size_t cap);

/* Empties the arena: every block carved from buf is void. */
void ts_pbarena_reset(struct ts_pbarena *ar);

#endif
