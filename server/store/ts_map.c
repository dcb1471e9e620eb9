/*
 * ts_map: see ts_map.h.
 *
 * Invariant: every element sits in the probe run that starts at its home
 * slot (hash & (cap - 1)) with no empty slot between; removal shifts later
 * members of the run back to keep it so.
 *
 * Tagged slots (x86-64): a slot holds the element's pointer with the top
 * 16 bits of its hash in the pointer's top 16 bits, which are zero in every
 * user-space address there (47 bits; 56 with 5-level paging only for a
 * mapping asked for above 2^47, which malloc never does). A lookup compares
 * the tags first and reads an element only when they match, so a probe
 * past another key's slot costs no read of that element: in a map of
 * millions each such read is a cache miss (bench/README.md, "The hash
 * index"). The home slot takes the hash's low bits and the tag its high
 * ones, so the members of one probe run still differ in their tags.
 * Elsewhere a slot is the plain pointer (tag 0) and every probe reads.
 */
#include "ts_map.h"

#include "ts_assert.h"
#include "ts_err.h"

#include <stdlib.h>
#include <sys/mman.h>
#include <sys/random.h>

uint64_t ts_map_hash_u64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static uint64_t hash_seed;

uint64_t ts_map_hash_str(const char *s, size_t len)
{
    if (!hash_seed) {
        uint64_t seed = 0;
        if (getrandom(&seed, sizeof(seed), 0) != (ssize_t)sizeof(seed))
            seed = (uint64_t)(uintptr_t)&hash_seed;
        hash_seed = seed | 1;
    }
    uint64_t h = 0xcbf29ce484222325ULL ^ hash_seed;
    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)s[i];
        h *= 0x100000001b3ULL;
    }
    return ts_map_hash_u64(h);
}

#if defined(__x86_64__) && UINTPTR_MAX == UINT64_MAX
#define TAG_SHIFT 48
#define TAG_OF(h) ((uintptr_t)((h) >> TAG_SHIFT) << TAG_SHIFT)
#define ELEM_BITS (((uintptr_t)1 << TAG_SHIFT) - 1)
#else
#define TAG_OF(h) ((uintptr_t)0)
#define ELEM_BITS (~(uintptr_t)0)
#endif

#define PREFETCH_AHEAD 16

/* The two casts between a tagged slot and its element; the tag bits are
 * the only ones changed, so each is the pointer as malloc gave it. */
static void *slot_elem(const void *slot)
{
    /* NOLINTNEXTLINE(performance-no-int-to-ptr): a tagged slot, see the file comment */
    return (void *)((uintptr_t)slot & ELEM_BITS);
}

static void *slot_make(void *elem, uint64_t h)
{
    /* NOLINTNEXTLINE(performance-no-int-to-ptr): a tagged slot, see the file comment */
    return (void *)((uintptr_t)elem | TAG_OF(h));
}

void *ts_map_slot(const struct ts_map *m, size_t i)
{
    return slot_elem(m->slots[i]);
}

void *ts_map_find(const struct ts_map *m, uint64_t h, const void *key, ts_map_eq_fn *eq)
{
    if (!m->cap)
        return NULL;
    size_t mask = m->cap - 1;
    uintptr_t tag = TAG_OF(h);
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        void *s = m->slots[i];
        if (!s)
            return NULL;
        if (((uintptr_t)s & ~ELEM_BITS) == tag && eq(slot_elem(s), key))
            return slot_elem(s);
    }
}

/* Puts the element of hash h, tagged, into the first free slot of its run. */
static void place(void **slots, size_t cap, void *elem, uint64_t h)
{
    TS_ASSERT(((uintptr_t)elem & ~ELEM_BITS) == 0); /* the tag's bits are free */
    size_t mask = cap - 1;
    size_t i = h & mask;
    while (slots[i])
        i = (i + 1) & mask;
    slots[i] = slot_make(elem, h);
}

/* A zeroed array of cap slots: malloc's, or a fork-private mapping. */
static void **slots_alloc(const struct ts_map *m, size_t cap)
{
    if (!m->fork_private)
        return calloc(cap, sizeof(void *));
    void *p = mmap(NULL, cap * sizeof(void *), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    if (madvise(p, cap * sizeof(void *), MADV_DONTFORK) != 0) {
        munmap(p, cap * sizeof(void *));
        return NULL;
    }
    return p;
}

static void slots_free(const struct ts_map *m, void **slots, size_t cap)
{
    if (!m->fork_private)
        free(slots);
    else if (slots)
        munmap(slots, cap * sizeof(void *));
}

/* Load factor at most 3/4: linear probing degrades fast beyond it. */
int ts_map_insert(struct ts_map *m, void *elem)
{
    if ((m->n + 1) * 4 > m->cap * 3) {
        size_t cap = m->cap ? m->cap * 2 : 16;
        void **slots = slots_alloc(m, cap);
        if (!slots)
            return TS_E_NOMEM;
        /* Every element is read for its hash: in a map of millions each
         * read is a cache miss, so the reads PREFETCH_AHEAD slots on are
         * started early and overlap (the loop is the growth's stall). */
        for (size_t i = 0; i < m->cap; i++) {
            if (i + PREFETCH_AHEAD < m->cap)
                __builtin_prefetch(slot_elem(m->slots[i + PREFETCH_AHEAD]));
            void *e = slot_elem(m->slots[i]);
            if (e)
                place(slots, cap, e, m->hash(e));
        }
        slots_free(m, m->slots, m->cap);
        m->slots = slots;
        m->cap = cap;
    }
    place(m->slots, m->cap, elem, m->hash(elem));
    m->n++;
    return TS_OK;
}

void ts_map_remove(struct ts_map *m, const void *elem)
{
    size_t mask = m->cap - 1;
    size_t i = m->hash(elem) & mask;
    while (slot_elem(m->slots[i]) != elem)
        i = (i + 1) & mask;
    /* Backward shift: pull later members of the probe run into the hole
     * when their home slot is not strictly after it, so lookups never need
     * tombstones. */
    for (size_t j = (i + 1) & mask; m->slots[j]; j = (j + 1) & mask) {
        size_t home = m->hash(slot_elem(m->slots[j])) & mask;
        if (((j - home) & mask) >= ((j - i) & mask)) {
            m->slots[i] = m->slots[j];
            i = j;
        }
    }
    m->slots[i] = NULL;
    m->n--;
}

void ts_map_free(struct ts_map *m)
{
    slots_free(m, m->slots, m->cap);
    m->slots = NULL;
    m->cap = m->n = 0;
}
