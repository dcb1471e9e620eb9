/*
 * ts_map: an open-addressing hash set of pointers (linear probing,
 * backward-shift deletion, so no tombstones), keyed by whatever the
 * caller's hash and equality functions read from the element.
 *
 * The store keeps its indexes in these (thread by id and by key, comment by
 * id, idempotency key): millions of elements, one pointer a slot, load
 * factor at most 3/4, capacity a power of two that only grows.
 *
 * The map owns its slot array, never the elements. Lookups take the key's
 * hash precomputed, which must equal hash(elem) for the element sought.
 */
#ifndef TS_MAP_H
#define TS_MAP_H

#include <stddef.h>
#include <stdint.h>

typedef uint64_t ts_map_hash_fn(const void *elem);
typedef int ts_map_eq_fn(const void *elem, const void *key);

struct ts_map {
    void **slots; /* tagged (ts_map.c): read them through ts_map_slot */
    size_t cap;   /* power of two, or 0 */
    size_t n;
    ts_map_hash_fn *hash;
    int fork_private; /* see TS_MAP_INIT_FORK_PRIVATE */
};

/* An empty map whose elements hash with hash_fn. */
#define TS_MAP_INIT(hash_fn)                                                                       \
    {                                                                                              \
        .hash = (hash_fn)                                                                          \
    }

/* Likewise, but its slot array is left out of forked children
 * (MADV_DONTFORK): in a child it is unmapped, and any lookup there
 * crashes. For the maps a forked snapshot never reads: after the fork the
 * parent's writes to them, which land on random pages of the array, then
 * take no copy-on-write fault each (issue 17, the snapshot p99). The
 * array is mmap'd, so it costs at least a page. */
#define TS_MAP_INIT_FORK_PRIVATE(hash_fn)                                                          \
    {                                                                                              \
        .hash = (hash_fn), .fork_private = 1                                                       \
    }

/* The element with hash h for which eq(elem, key) holds; NULL if none. */
void *ts_map_find(const struct ts_map *m, uint64_t h, const void *key, ts_map_eq_fn *eq);

/* Adds elem (not already in m). TS_E_NOMEM leaves m unchanged. An insert
 * right after a remove never needs to grow, so it cannot fail. */
int ts_map_insert(struct ts_map *m, void *elem);

/* Removes elem, which must be in m. */
void ts_map_remove(struct ts_map *m, const void *elem);

/* The element in slot i (i < m->cap), or NULL: to walk every element,
 * for i from 0 to m->cap. */
void *ts_map_slot(const struct ts_map *m, size_t i);

/* Frees the slot array; m is empty again (its hash function is kept). */
void ts_map_free(struct ts_map *m);

/* A well-mixed 64-bit hash of x (for integer keys such as ids). */
uint64_t ts_map_hash_u64(uint64_t x);

/* A hash of len bytes at s, seeded per process: keys that come from
 * clients cannot be chosen to collide. */
uint64_t ts_map_hash_str(const char *s, size_t len);

#endif
