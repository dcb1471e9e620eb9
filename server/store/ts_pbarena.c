/* ts_pbarena: see ts_pbarena.h. */
#include "ts_pbarena.h"

#include <stdlib.h>

static void *pbarena_alloc(void *data, size_t size)
{
    struct ts_pbarena *ar = data;
    size_t need = (size + 15) & ~(size_t)15; /* malloc's alignment */
    if (need >= size && need <= ar->cap - ar->used) {
        void *p = ar->buf + ar->used;
        ar->used += need;
        return p;
    }
    void *p = malloc(size ? size : 1);
    if (p)
        ar->spilled++;
    return p;
}

static void pbarena_free(void *data, void *ptr)
{
    const struct ts_pbarena *ar = data;
    uintptr_t p = (uintptr_t)ptr, b = (uintptr_t)ar->buf;
    if (p - b >= ar->cap) /* not in the buffer (below it, p - b wraps) */
        free(ptr);
}

void ts_pbarena_init(struct ts_pbarena *ar, uint8_t *buf, size_t cap)
{
    ar->alloc.alloc = pbarena_alloc;
    ar->alloc.free = pbarena_free;
    ar->alloc.allocator_data = ar;
    ar->buf = buf;
    ar->cap = buf ? cap : 0;
    ts_pbarena_reset(ar);
}

void ts_pbarena_reset(struct ts_pbarena *ar)
{
    ar->used = 0;
    ar->spilled = 0;
}
