/*
 * ts_array: the two things every growable array of the tree does, written
 * once: growing its storage (doubling, so n appends cost O(n) copies) and
 * finding a value's place in a sorted array of ids.
 *
 * The arrays stay plain C (a pointer, a count and a capacity in the
 * owner's struct); these functions hold no state and never free.
 */
#ifndef TS_ARRAY_H
#define TS_ARRAY_H

#include <stddef.h>
#include <stdint.h>

/* v (items of size bytes, *cap of them allocated) grown to hold more than
 * n items: v itself while n < *cap, else realloc'd to twice *cap (first
 * when *cap is 0) with *cap updated. NULL when out of memory or the size
 * would overflow; v and *cap are then untouched (the caller still owns
 * v). */
void *ts_array_grow(void *v, size_t *cap, size_t n, size_t size, size_t first);

/* The first index i in a[0..n) (ascending) with a[i] >= v; n when none. */
size_t ts_array_lower_bound_u64(const uint64_t *a, size_t n, uint64_t v);

#endif
