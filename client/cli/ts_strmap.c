/*
 * ts_strmap: see ts_strmap.h. Keys are copied into 64 KiB arena blocks
 * (most ids are short), FNV-1a hashed: the keys come from the admin's own
 * export file, so no defence against chosen collisions is needed.
 */
#include "ts_strmap.h"

#include "ts_err.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_BLOCK 65536

struct slot {
    const char *key;
    void *value;
    uint64_t hash;
};

struct block {
    struct block *next;
    size_t used, size;
    char data[];
};

struct ts_strmap {
    struct slot *slots;
    size_t cap, n;
    struct block *arena;
};

static uint64_t fnv(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

struct ts_strmap *ts_strmap_new(void)
{
    return calloc(1, sizeof(struct ts_strmap));
}

void ts_strmap_free(struct ts_strmap *m)
{
    if (!m)
        return;
    for (struct block *b = m->arena, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    free(m->slots);
    free(m);
}

static char *arena_copy(struct ts_strmap *m, const char *s)
{
    size_t n = strlen(s) + 1;
    struct block *b = m->arena;
    if (!b || b->size - b->used < n) {
        size_t size = n > ARENA_BLOCK ? n : ARENA_BLOCK;
        b = malloc(sizeof(*b) + size);
        if (!b)
            return NULL;
        b->used = 0;
        b->size = size;
        b->next = m->arena;
        m->arena = b;
    }
    char *p = b->data + b->used;
    memcpy(p, s, n);
    b->used += n;
    return p;
}

static struct slot *find(const struct ts_strmap *m, const char *key, uint64_t h)
{
    if (!m->cap)
        return NULL;
    for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        struct slot *s = &m->slots[i];
        if (!s->key || (s->hash == h && strcmp(s->key, key) == 0))
            return s;
    }
}

static int grow(struct ts_strmap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 64;
    struct slot *v = calloc(cap, sizeof(*v));
    if (!v)
        return TS_E_NOMEM;
    for (size_t i = 0; i < m->cap; i++) {
        const struct slot *o = &m->slots[i];
        if (!o->key)
            continue;
        size_t j = o->hash & (cap - 1);
        while (v[j].key)
            j = (j + 1) & (cap - 1);
        v[j] = *o;
    }
    free(m->slots);
    m->slots = v;
    m->cap = cap;
    return TS_OK;
}

int ts_strmap_put(struct ts_strmap *m, const char *key, void *value)
{
    if ((m->n + 1) * 2 > m->cap && grow(m) != TS_OK)
        return TS_E_NOMEM;
    uint64_t h = fnv(key);
    struct slot *s = find(m, key, h); /* never NULL: cap > 0 now */
    if (s->key) {
        s->value = value;
        return TS_OK;
    }
    char *k = arena_copy(m, key);
    if (!k)
        return TS_E_NOMEM;
    s->key = k;
    s->value = value;
    s->hash = h;
    m->n++;
    return TS_OK;
}

int ts_strmap_get(const struct ts_strmap *m, const char *key, void **value)
{
    const struct slot *s = find(m, key, fnv(key));
    if (!s || !s->key)
        return 0;
    if (value)
        *value = s->value;
    return 1;
}

size_t ts_strmap_count(const struct ts_strmap *m)
{
    return m->n;
}

void ts_strmap_each(const struct ts_strmap *m, void (*fn)(void *arg, const char *key, void *value),
                    void *arg)
{
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key)
            fn(arg, m->slots[i].key, m->slots[i].value);
}
