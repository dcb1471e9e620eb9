/*
 * ts_bench_hist: see ts_bench_hist.h. Bucket 0 holds 0..63 exactly; bucket
 * b >= 1 holds [2^(b+5), 2^(b+6)) in 64 sub-buckets of width 2^(b-1).
 */
#include "ts_bench_hist.h"

#include <string.h>

void tsb_hist_init(struct tsb_hist *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

static void index_of(uint64_t v, unsigned *b, unsigned *s)
{
    if (v < TSB_HIST_SUB) {
        *b = 0;
        *s = (unsigned)v;
        return;
    }
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    *b = msb - TSB_HIST_SUB_BITS + 1;
    *s = (unsigned)((v - (1ull << msb)) >> (*b - 1));
}

static uint64_t upper_edge(unsigned b, unsigned s)
{
    if (b == 0)
        return s;
    uint64_t base = 1ull << (b + TSB_HIST_SUB_BITS - 1);
    return base + ((uint64_t)(s + 1) << (b - 1)) - 1;
}

void tsb_hist_record(struct tsb_hist *h, uint64_t v)
{
    unsigned b, s;
    index_of(v, &b, &s);
    h->c[b][s]++;
    h->count++;
    h->sum += v;
    if (v > h->max)
        h->max = v;
    if (v < h->min)
        h->min = v;
}

void tsb_hist_merge(struct tsb_hist *to, const struct tsb_hist *from)
{
    for (unsigned b = 0; b < TSB_HIST_BUCKETS; b++)
        for (unsigned s = 0; s < TSB_HIST_SUB; s++)
            to->c[b][s] += from->c[b][s];
    to->count += from->count;
    to->sum += from->sum;
    if (from->max > to->max)
        to->max = from->max;
    if (from->min < to->min)
        to->min = from->min;
}

uint64_t tsb_hist_quantile(const struct tsb_hist *h, double q)
{
    if (!h->count)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)h->count);
    if (rank >= h->count)
        rank = h->count - 1;
    uint64_t seen = 0;
    for (unsigned b = 0; b < TSB_HIST_BUCKETS; b++) {
        for (unsigned s = 0; s < TSB_HIST_SUB; s++) {
            seen += h->c[b][s];
            if (seen > rank) {
                uint64_t e = upper_edge(b, s);
                return e < h->max ? e : h->max;
            }
        }
    }
    return h->max;
}
