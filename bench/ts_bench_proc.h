/*
 * ts_bench_proc: what both load generators (ts_loadgen, ts_mqttgen) read of
 * the server process and of themselves: CPU time (utime + stime from
 * /proc/PID/stat, getrusage for the generator) and resident memory (VmRSS
 * from /proc/PID/status), and the JSON line builder they print with.
 * A pid of 0 reads as 0 everywhere (no server process given).
 */
#ifndef TS_BENCH_PROC_H
#define TS_BENCH_PROC_H

#include <stddef.h>
#include <stdint.h>

struct tsb_cpu_mark {
    uint64_t wall_ns;
    double gen_s, srv_s;
};

/* CPU over a phase, in cores busy (1.0 = one core all the time). */
struct tsb_cpu_use {
    double wall_s, gen_cores, srv_cores;
};

double tsb_self_cpu_s(void);
double tsb_proc_cpu_s(int pid);
uint64_t tsb_proc_rss_kib(int pid);
struct tsb_cpu_mark tsb_mark(int server_pid);
struct tsb_cpu_use tsb_cpu_between(struct tsb_cpu_mark a, struct tsb_cpu_mark b);

/* Appends printf output to the NUL-terminated buf of cap bytes (truncates). */
void tsb_json_add(char *buf, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
