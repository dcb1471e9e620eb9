/*
 * ts_endian: loads and stores of 16, 32 and 64-bit integers at any alignment,
 * little-endian (le) or big-endian (be), whatever the host's order.
 *
 * The one place byte orders are spelled out: frame length prefixes (be32,
 * PROTOCOL.md §1), the backup file header (be64), raft's tunnel and snapshot
 * headers and the replication frames (le32/le64), the store's digests (be64).
 * Byte by byte, so no alignment or aliasing rule applies to p; compilers turn
 * each into one load or store plus a byte swap where needed. Header only.
 */
#ifndef TS_ENDIAN_H
#define TS_ENDIAN_H

#include <stdint.h>

static inline void ts_store_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static inline uint16_t ts_load_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static inline void ts_store_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline uint16_t ts_load_be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static inline void ts_store_le32(uint8_t *p, uint32_t v)
{
    ts_store_le16(p, (uint16_t)v);
    ts_store_le16(p + 2, (uint16_t)(v >> 16));
}

static inline uint32_t ts_load_le32(const uint8_t *p)
{
    return (uint32_t)ts_load_le16(p) | (uint32_t)ts_load_le16(p + 2) << 16;
}

static inline void ts_store_be32(uint8_t *p, uint32_t v)
{
    ts_store_be16(p, (uint16_t)(v >> 16));
    ts_store_be16(p + 2, (uint16_t)v);
}

static inline uint32_t ts_load_be32(const uint8_t *p)
{
    return (uint32_t)ts_load_be16(p) << 16 | (uint32_t)ts_load_be16(p + 2);
}

static inline void ts_store_le64(uint8_t *p, uint64_t v)
{
    ts_store_le32(p, (uint32_t)v);
    ts_store_le32(p + 4, (uint32_t)(v >> 32));
}

static inline uint64_t ts_load_le64(const uint8_t *p)
{
    return (uint64_t)ts_load_le32(p) | (uint64_t)ts_load_le32(p + 4) << 32;
}

static inline void ts_store_be64(uint8_t *p, uint64_t v)
{
    ts_store_be32(p, (uint32_t)(v >> 32));
    ts_store_be32(p + 4, (uint32_t)v);
}

static inline uint64_t ts_load_be64(const uint8_t *p)
{
    return (uint64_t)ts_load_be32(p) << 32 | (uint64_t)ts_load_be32(p + 4);
}

#endif
