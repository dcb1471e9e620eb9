/*
 * ts_arena: a bump allocator over huge-page mappings (see ts_arena.h).
 */
#include "ts_arena.h"

#include <sys/mman.h>

struct ts_arena_chunk {
    struct ts_arena_chunk *next;
    size_t used, size; /* bytes, this header included */
};

#define ALIGN(n) (((n) + 15) & ~(size_t)15)

void *ts_arena_alloc(struct ts_arena *a, size_t size)
{
    size = ALIGN(size);
    size_t head = ALIGN(sizeof(struct ts_arena_chunk));
    struct ts_arena_chunk *c = a->chunks;
    if (!c || c->size - c->used < size) {
        size_t want = head + size > TS_ARENA_CHUNK ? head + size : TS_ARENA_CHUNK;
        if (a->limit && a->mapped + want > a->limit)
            return NULL;
        void *p = mmap(NULL, want, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return NULL;
        (void)madvise(p, want, MADV_HUGEPAGE); /* a hint: small pages otherwise */
        c = p;
        c->next = a->chunks;
        c->size = want;
        c->used = head;
        a->chunks = c;
        a->mapped += want;
    }
    void *r = (char *)c + c->used;
    c->used += size;
    return r;
}

void ts_arena_free(struct ts_arena *a)
{
    while (a->chunks) {
        struct ts_arena_chunk *c = a->chunks;
        a->chunks = c->next;
        munmap(c, c->size);
    }
    a->mapped = 0;
}
