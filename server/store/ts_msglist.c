/*
 * ts_msglist: see ts_msglist.h. The array doubles from 16 items, so
 * collecting n items costs O(n) copies; nothing is shrunk.
 */
#include "ts_msglist.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FIRST_CAP 16

void *ts_msglist_add_n(struct ts_msglist *l, size_t k)
{
    if (l->failed)
        return NULL;
    if (k > SIZE_MAX / l->size - l->n) {
        l->failed = 1;
        return NULL;
    }
    if (l->n + k > l->cap || !l->items) {
        size_t cap = l->cap ? l->cap : FIRST_CAP;
        while (cap < l->n + k)
            cap = cap > SIZE_MAX / 2 / l->size ? l->n + k : cap * 2;
        void *items = realloc(l->items, cap * l->size);
        if (!items) {
            l->failed = 1;
            return NULL;
        }
        l->items = items;
        l->cap = cap;
    }
    char *first = (char *)l->items + l->n * l->size;
    memset(first, 0, k * l->size);
    l->n += k;
    return first;
}

void *ts_msglist_add(struct ts_msglist *l)
{
    return ts_msglist_add_n(l, 1);
}

void **ts_msglist_ptrs(struct ts_msglist *l)
{
    if (l->failed)
        return NULL;
    void **ptrs = realloc(l->ptrs, (l->n + 1) * sizeof(*ptrs));
    if (!ptrs)
        return NULL;
    for (size_t i = 0; i < l->n; i++)
        ptrs[i] = (char *)l->items + i * l->size;
    ptrs[l->n] = NULL;
    l->ptrs = ptrs;
    return ptrs;
}

void ts_msglist_free(struct ts_msglist *l)
{
    free(l->items);
    free(l->ptrs);
    *l = (struct ts_msglist){.size = l->size};
}
