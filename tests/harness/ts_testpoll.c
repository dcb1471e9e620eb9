/*
 * ts_testpoll: see ts_testpoll.h.
 */
#include "ts_testpoll.h"

#include "ts_err.h"

#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

uint64_t ts_test_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int ts_test_poll(uint64_t deadline_ms)
{
    if (ts_test_now_ms() >= deadline_ms)
        return 0;
    usleep(TS_TEST_POLL_MS * 1000);
    return 1;
}

int ts_test_spin(uint64_t deadline_ms)
{
    if (ts_test_now_ms() >= deadline_ms)
        return 0;
    usleep(TS_TEST_SPIN_US);
    return 1;
}

int ts_test_await_exit(pid_t pid, uint64_t deadline_ms, int *status)
{
    int st = 0;
    pid_t w;
    while ((w = waitpid(pid, &st, WNOHANG)) == 0 && ts_test_poll(deadline_ms))
        ;
    if (w == 0)
        return 0;
    if (w != pid)
        return -1;
    if (status)
        *status = st;
    return 1;
}

/* The first line of path, if it is complete (ends in a newline or at EOF
 * with text): 1 and the line in out, else 0. */
static int first_line(const char *path, char *out, size_t size)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    int got = fgets(out, (int)size, f) != NULL;
    fclose(f);
    if (!got)
        return 0;
    out[strcspn(out, "\n")] = '\0';
    return out[0] != '\0';
}

int ts_test_await_line(pid_t pid, const char *path, char *out, size_t size, uint64_t deadline_ms,
                       int *status)
{
    for (;;) {
        if (first_line(path, out, size))
            return TS_OK;
        int st = 0;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            if (status)
                *status = st;
            return TS_E_IO;
        }
        if (!ts_test_poll(deadline_ms))
            return TS_E_TIMEOUT;
    }
}

int ts_test_count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    int lines = 0, c;
    while ((c = fgetc(f)) != EOF)
        lines += c == '\n';
    fclose(f);
    return lines;
}
