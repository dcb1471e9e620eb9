/*
 * ts_map: see ts_map.h.
 *
 * Invariant: every element sits in the probe run that starts at its home
 * slot (hash & (cap - 1)) with no empty slot between; removal shifts later
 * members of the run back to keep it so.
 */
#include "ts_map.h"

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

void *ts_map_find(const struct ts_map *m, uint64_t h, const void *key, ts_map_eq_fn *eq)
{
    if (!m->cap)
        return NULL;
    size_t mask = m->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        void *e = m->slots[i];
        if (!e)
            return NULL;
        if (eq(e, key))
            return e;
    }
}

static void place(void **slots, size_t cap, void *elem, uint64_t h)
{
    size_t mask = cap - 1;
    size_t i = h & mask;
    while (slots[i])
        i = (i + 1) & mask;
    slots[i] = elem;
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
        for (size_t i = 0; i < m->cap; i++)
            if (m->slots[i])
                place(slots, cap, m->slots[i], m->hash(m->slots[i]));
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
    while (m->slots[i] != elem)
        i = (i + 1) & mask;
    /* Backward shift: pull later members of the probe run into the hole
     * when their home slot is not strictly after it, so lookups never need
     * tombstones. */
    for (size_t j = (i + 1) & mask; m->slots[j]; j = (j + 1) & mask) {
        size_t home = m->hash(m->slots[j]) & mask;
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
