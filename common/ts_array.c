/*
 * ts_array: see ts_array.h.
 */
#include "ts_array.h"

#include <stdlib.h>

void *ts_array_grow(void *v, size_t *cap, size_t n, size_t size, size_t first)
{
    if (n < *cap)
        return v;
    size_t c = *cap ? *cap * 2 : first;
    if (c <= n)
        c = n + 1;
    if (size && c > SIZE_MAX / size)
        return NULL;
    void *nv = realloc(v, size ? c * size : 1); /* never 0 bytes: that may free v */
    if (nv)
        *cap = c;
    return nv;
}

size_t ts_array_lower_bound_u64(const uint64_t *a, size_t n, uint64_t v)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (a[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}
