/*
 * ts_map_bench: the store's hash index alone, at the store's sizes
 * (bench/README.md, "The hash index"). The elements are laid out as the
 * idempotency FIFO lays its entries (in insertion
 * order, 80 bytes each, keyed by a 16-byte digest hashed with ts_map_hash_str), so a
 * lookup of a random key lands on a random cache line as it does in a node
 * holding millions of posts. Prints nanoseconds per operation:
 *   insert     N inserts into an empty map, growth included;
 *   find_hit   lookups of present keys in random order;
 *   find_miss  lookups of absent keys (what a new post's idempotency
 *              check does, on the leader and again at apply);
 *   post       a miss then an insert, from N elements on, as many as fit
 *              before the map grows, at most N/10 (the per-post pattern);
 * the element reads each did (eq calls per lookup), the slot array's
 * bytes per element, and the one insert that grew the map last (the
 * largest: it moves every element), which stalls the node's loop. Medians of --rounds rounds; a
 * fresh map each round.
 *
 * usage: ts_map_bench [--n N] [--rounds R]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ts_map.h"

#define KEY_LEN 16

/* Shaped like the store's struct idem: the key sits past the first 12
 * bytes, and the whole is 80 bytes. */
struct elem {
    uint64_t id;
    uint32_t aux;
    uint8_t key[KEY_LEN];
    uint8_t rest[52];
};

static uint64_t eq_calls;

static uint64_t elem_hash(const void *e)
{
    return ts_map_hash_str((const char *)((const struct elem *)e)->key, KEY_LEN);
}

static int elem_eq(const void *e, const void *key)
{
    eq_calls++;
    return memcmp(((const struct elem *)e)->key, key, KEY_LEN) == 0;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rng(void)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return ts_map_hash_u64(rng_state);
}

static void fill_key(uint8_t *k)
{
    uint64_t a = rng(), b = rng();
    memcpy(k, &a, 8);
    memcpy(k + 8, &b, 8);
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

enum { MEASURES = 4 };

struct round {
    double ns[MEASURES];
    double eq_hit, eq_miss;
    double slot_bytes;
    double stall_ms;  /* the longest insert that grew the map */
    size_t stall_cap; /* ... and the slots it grew to */
    size_t post_n;    /* misses and inserts in the per-post pattern */
};

/* One round: v[0..n) inserted, then lookups; v[n..n+extra) for the
 * per-post pattern; misses[] are keys in no element. */
static int run_round(struct elem *v, size_t n, size_t extra, uint8_t (*misses)[KEY_LEN],
                     const size_t *order, size_t lookups, struct round *out)
{
    struct ts_map m = TS_MAP_INIT(elem_hash);
    volatile uintptr_t sink = 0;
    double t0 = now_ns(), stall = 0;
    for (size_t i = 0; i < n; i++) {
        /* Only the inserts that grow the map are timed alone (ts_map.c
         * grows past 3/4 full): a clock read per insert would weigh on
         * the insert figure. */
        int grows = (m.n + 1) * 4 > m.cap * 3;
        double a = grows ? now_ns() : 0;
        if (ts_map_insert(&m, &v[i]) != 0) {
            ts_map_free(&m);
            return -1;
        }
        if (grows && now_ns() - a > stall) {
            stall = now_ns() - a;
            out->stall_cap = m.cap;
        }
    }
    double t1 = now_ns();
    out->stall_ms = stall / 1e6;
    eq_calls = 0;
    for (size_t i = 0; i < lookups; i++) {
        const struct elem *e = &v[order[i]];
        sink += (uintptr_t)ts_map_find(&m, elem_hash(e), e->key, elem_eq);
    }
    double t2 = now_ns();
    out->eq_hit = (double)eq_calls / (double)lookups;
    eq_calls = 0;
    for (size_t i = 0; i < lookups; i++)
        sink += (uintptr_t)ts_map_find(&m, ts_map_hash_str((const char *)misses[i], KEY_LEN),
                                       misses[i], elem_eq);
    double t3 = now_ns();
    out->eq_miss = (double)eq_calls / (double)lookups;
    out->slot_bytes = (double)(m.cap * sizeof(void *)) / (double)n;
    /* Up to the load that grows the map, not past it: the growth has its
     * own figure. */
    if (extra > m.cap / 4 * 3 - n)
        extra = m.cap / 4 * 3 - n;
    out->post_n = extra;
    for (size_t i = n; i < n + extra; i++) {
        struct elem *e = &v[i];
        sink += (uintptr_t)ts_map_find(&m, elem_hash(e), e->key, elem_eq);
        if (ts_map_insert(&m, e) != 0) {
            ts_map_free(&m);
            return -1;
        }
    }
    double t4 = now_ns();
    (void)sink;
    out->ns[0] = (t1 - t0) / (double)n;
    out->ns[1] = (t2 - t1) / (double)lookups;
    out->ns[2] = (t3 - t2) / (double)lookups;
    out->ns[3] = extra ? (t4 - t3) / (double)extra : 0; /* N at exactly 3/4 */
    ts_map_free(&m);
    return 0;
}

int main(int argc, char **argv)
{
    size_t n = 1000000;
    int rounds = 5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--n") && i + 1 < argc)
            n = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: ts_map_bench [--n N] [--rounds R]\n");
            return 2;
        }
    }
    if (n < 16 || rounds < 1 || rounds > 99) {
        fprintf(stderr, "ts_map_bench: --n at least 16, --rounds 1-99\n");
        return 2;
    }
    size_t extra = n / 10, lookups = n < 1000000 ? n : 1000000;
    struct elem *v = calloc(n + extra, sizeof(*v));
    uint8_t(*misses)[KEY_LEN] = calloc(lookups, KEY_LEN);
    size_t *order = calloc(lookups, sizeof(*order));
    int rc = 0;
    if (!v || !misses || !order) {
        fprintf(stderr, "ts_map_bench: out of memory\n");
        rc = 1;
        goto done;
    }
    for (size_t i = 0; i < n + extra; i++) {
        v[i].id = i + 1;
        fill_key(v[i].key);
    }
    for (size_t i = 0; i < lookups; i++) {
        fill_key(misses[i]);
        order[i] = rng() % n;
    }
    double ns[MEASURES][99], stall[99], eq_hit = 0, eq_miss = 0, slot_bytes = 0;
    size_t stall_cap = 0, post_n = 0;
    for (int r = 0; r < rounds; r++) {
        struct round out = {0};
        if (run_round(v, n, extra, misses, order, lookups, &out) != 0) {
            fprintf(stderr, "ts_map_bench: insert failed (out of memory)\n");
            rc = 1;
            goto done;
        }
        for (int k = 0; k < MEASURES; k++)
            ns[k][r] = out.ns[k];
        stall[r] = out.stall_ms;
        stall_cap = out.stall_cap;
        post_n = out.post_n;
        eq_hit = out.eq_hit, eq_miss = out.eq_miss, slot_bytes = out.slot_bytes;
    }
    printf("ts_map N=%zu rounds=%d: insert %.1f ns, find_hit %.1f ns, find_miss %.1f ns, "
           "post (miss + insert, %zu) %.1f ns; element reads per lookup: hit %.2f, miss %.2f; "
           "slot array %.1f B per element; growing to %zu slots %.1f ms\n",
           n, rounds, median(ns[0], rounds), median(ns[1], rounds), median(ns[2], rounds), post_n,
           median(ns[3], rounds), eq_hit, eq_miss, slot_bytes, stall_cap, median(stall, rounds));
done:
    free(v);
    free(misses);
    free(order);
    return rc;
}
