/*
 * ts_bench_proc: another process's CPU time and resident memory, read from
 * /proc, for the load generators' server and web-edge figures.
 */
#ifndef TS_BENCH_PROC_H
#define TS_BENCH_PROC_H

#include <stdint.h>

/* utime + stime of pid in seconds; 0 when pid is 0 or unreadable. */
double tsb_proc_cpu_s(int pid);

/* VmRSS of pid in KiB; 0 when pid is 0 or unreadable. */
uint64_t tsb_proc_rss_kib(int pid);

#endif
