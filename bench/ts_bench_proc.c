/*
 * ts_bench_proc: see ts_bench_proc.h. Reads /proc afresh on every call: a
 * few per measured phase, never on a hot path.
 */
#include "ts_bench_proc.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <uv.h>

double tsb_self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* utime + stime, fields 14 and 15 of /proc/PID/stat (after the
 * parenthesised command name, which may hold spaces). */
double tsb_proc_cpu_s(int pid)
{
    if (!pid)
        return 0;
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (!p)
        return 0;
    unsigned long long ut = 0, st = 0;
    /* after ")": state(3) ppid pgrp session tty tpgid flags minflt cminflt
     * majflt cmajflt utime(14) stime(15) */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

uint64_t tsb_proc_rss_kib(int pid)
{
    if (!pid)
        return 0;
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    uint64_t kib = 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %lu kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

struct tsb_cpu_mark tsb_mark(int server_pid)
{
    struct tsb_cpu_mark m = {uv_hrtime(), tsb_self_cpu_s(), tsb_proc_cpu_s(server_pid)};
    return m;
}

struct tsb_cpu_use tsb_cpu_between(struct tsb_cpu_mark a, struct tsb_cpu_mark b)
{
    struct tsb_cpu_use u;
    u.wall_s = (double)(b.wall_ns - a.wall_ns) / 1e9;
    u.gen_cores = u.wall_s > 0 ? (b.gen_s - a.gen_s) / u.wall_s : 0;
    u.srv_cores = u.wall_s > 0 ? (b.srv_s - a.srv_s) / u.wall_s : 0;
    return u;
}

void tsb_json_add(char *buf, size_t cap, const char *fmt, ...)
{
    size_t n = strlen(buf);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + n, cap - n, fmt, ap);
    va_end(ap);
}
