/*
 * ts_assert: a failing TS_ASSERT aborts (SIGABRT) after logging where and
 * what failed; a holding one evaluates its condition once and does
 * nothing; and the asserts are compiled in, here and in the libraries,
 * because the test build is a Debug build (no NDEBUG).
 */
#include "ts_assert.h"

#include "ts_check_main.h"

#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

START_TEST(test_failing_assert_aborts)
{
    volatile int state = 1;
    TS_ASSERT(state == 2);
}
END_TEST

START_TEST(test_failure_logs_file_line_and_expression)
{
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    int line = __LINE__ + 7;
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        volatile int one = 1;
        TS_ASSERT(one + one == 3);
        _exit(0);
    }
    close(fds[1]);
    char out[4096];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof(out) - 1 && (n = read(fds[0], out + len, sizeof(out) - 1 - len)) > 0)
        len += (size_t)n;
    out[len] = '\0';
    close(fds[0]);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "status %d", status);
    char want[256];
    snprintf(want, sizeof(want), "event=assert_failed file=%s line=%d expr=\"one + one == 3\"",
             __FILE__, line);
    ck_assert_msg(strstr(out, want), "log: %s", out);
}
END_TEST

START_TEST(test_holding_assert_evaluates_once)
{
    int evaluated = 0;
    TS_ASSERT(++evaluated == 1);
    ck_assert_int_eq(evaluated, 1);
}
END_TEST

START_TEST(test_active_in_the_test_build)
{
    ck_assert_msg(TS_ASSERT_ACTIVE, "TS_ASSERT is compiled out in this test");
    ck_assert_msg(ts_assert_enabled(), "TS_ASSERT is compiled out in the libraries: build the "
                                       "tests as Debug or with -DTS_ASSERTS=ON");
}
END_TEST

static Suite *assert_suite(void)
{
    Suite *s = suite_create("ts_assert");
    TCase *tc = tcase_create("assert");
    tcase_add_test_raise_signal(tc, test_failing_assert_aborts, SIGABRT);
    tcase_add_test(tc, test_failure_logs_file_line_and_expression);
    tcase_add_test(tc, test_holding_assert_evaluates_once);
    tcase_add_test(tc, test_active_in_the_test_build);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ts_check_run(assert_suite());
}
