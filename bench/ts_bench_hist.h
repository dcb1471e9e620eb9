/*
 * ts_bench_hist: a latency histogram in the manner of HdrHistogram.
 *
 * Values (nanoseconds) fall into log-linear buckets: 2^k ranges, each split
 * into 64 linear sub-buckets, so any recorded value is reported within
 * 1/64 (1.6 %) of itself, from 1 ns to about 10^19 ns, in a fixed 31 KiB
 * struct. Recording is a few instructions and never allocates; histograms
 * of several threads are merged by adding counts.
 */
#ifndef TS_BENCH_HIST_H
#define TS_BENCH_HIST_H

#include <stdint.h>

#define TSB_HIST_SUB_BITS 6
#define TSB_HIST_SUB (1u << TSB_HIST_SUB_BITS)
#define TSB_HIST_BUCKETS (64 - TSB_HIST_SUB_BITS + 1)

struct tsb_hist {
    uint64_t count, max, min, sum;
    uint64_t c[TSB_HIST_BUCKETS][TSB_HIST_SUB];
};

void tsb_hist_init(struct tsb_hist *h);
void tsb_hist_record(struct tsb_hist *h, uint64_t v);
void tsb_hist_merge(struct tsb_hist *to, const struct tsb_hist *from);
/* The value at quantile q (0..1): the upper edge of the bucket holding the
 * q-th value, never above max. 0 for an empty histogram. */
uint64_t tsb_hist_quantile(const struct tsb_hist *h, double q);

#endif
