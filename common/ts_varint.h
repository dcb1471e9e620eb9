/*
 * ts_varint: protobuf's base-128 varint, written by hand where a message is
 * framed or assembled from parts protobuf-c packs separately (a frame's
 * field head, an Events element, a PostBatch, a snapshot's records). Header
 * only.
 */
#ifndef TS_VARINT_H
#define TS_VARINT_H

#include <stddef.h>
#include <stdint.h>

/* The most bytes a 64-bit varint takes. */
#define TS_VARINT_MAX ((size_t)10)

/* Bytes v takes as a varint. */
static inline size_t ts_varint_len(uint64_t v)
{
    size_t n = 1;
    for (; v >= 0x80; v >>= 7)
        n++;
    return n;
}

/* Writes v at p (room for TS_VARINT_MAX bytes, or ts_varint_len(v));
 * returns the bytes written. */
static inline size_t ts_varint_put(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    for (; v >= 0x80; v >>= 7)
        p[n++] = (uint8_t)(v | 0x80);
    p[n++] = (uint8_t)v;
    return n;
}

#endif
