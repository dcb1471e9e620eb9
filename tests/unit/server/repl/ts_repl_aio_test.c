/*
 * ts_repl_aio: the executable's syscall() answers io_destroy at once and
 * has a thread destroy the context, once installed; everything else (and
 * io_destroy before install) is glibc's, result and errno alike. Each case
 * runs in a process of its own (Check's fork mode), so "before install"
 * is a fresh process.
 */
#include <check.h>
#include <errno.h>
#include <linux/aio_abi.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ts_check_main.h"
#include "ts_err.h"
#include "ts_repl_aio.h"
#include "ts_testpoll.h"

static struct ts_repl_aio_stats stats(void)
{
    struct ts_repl_aio_stats s;
    ts_repl_aio_stats(&s);
    return s;
}

static aio_context_t new_context(void)
{
    aio_context_t ctx = 0;
    ck_assert_int_eq(syscall(SYS_io_setup, 1, &ctx), 0);
    return ctx;
}

/* Whether the kernel still knows ctx: io_getevents on a destroyed (or
 * unknown) context fails with EINVAL; on a live one with nothing in
 * flight and min_nr 0 it returns 0 events. */
static int context_alive(aio_context_t ctx)
{
    struct io_event ev;
    struct timespec zero = {0, 0};
    long rc = syscall(SYS_io_getevents, ctx, 0, 1, &ev, &zero);
    if (rc < 0)
        ck_assert_int_eq(errno, EINVAL);
    return rc == 0;
}

START_TEST(test_passthrough_before_install)
{
    ck_assert_int_eq(syscall(SYS_getpid), getpid());
    errno = 0;
    ck_assert_int_eq(syscall(SYS_close, -1), -1);
    ck_assert_int_eq(errno, EBADF);
    aio_context_t ctx = new_context();
    ck_assert(context_alive(ctx));
    ck_assert_int_eq(syscall(SYS_io_destroy, ctx), 0);
    ck_assert(!context_alive(ctx)); /* destroyed before the call returned */
    ck_assert_uint_eq(stats().deferred, 0);
}
END_TEST

START_TEST(test_destroy_deferred_after_install)
{
    ck_assert_int_eq(ts_repl_aio_install(), TS_OK);
    ck_assert_int_eq(ts_repl_aio_install(), TS_OK); /* once per process */
    aio_context_t ctx[3];
    for (int i = 0; i < 3; i++)
        ctx[i] = new_context();
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(syscall(SYS_io_destroy, ctx[i]), 0);
    ck_assert_uint_eq(stats().deferred, 3);
    uint64_t deadline = ts_test_now_ms() + 10000;
    while (stats().destroyed < 3 && ts_test_poll(deadline))
        ;
    ck_assert_uint_eq(stats().destroyed, 3);
    ck_assert_uint_eq(stats().failed, 0);
    for (int i = 0; i < 3; i++)
        ck_assert(!context_alive(ctx[i]));

    /* An unknown context: answered 0 all the same (libraft never passes
     * one), and the thread's failure is counted. */
    ck_assert_int_eq(syscall(SYS_io_destroy, ctx[0]), 0);
    while (stats().failed < 1 && ts_test_poll(deadline))
        ;
    ck_assert_uint_eq(stats().failed, 1);

    /* Everything else is still glibc's. */
    ck_assert_int_eq(syscall(SYS_getpid), getpid());
    errno = 0;
    ck_assert_int_eq(syscall(SYS_close, -1), -1);
    ck_assert_int_eq(errno, EBADF);
}
END_TEST

static Suite *aio_suite(void)
{
    Suite *s = suite_create("ts_repl_aio");
    TCase *tc = tcase_create("aio");
    tcase_add_test(tc, test_passthrough_before_install);
    tcase_add_test(tc, test_destroy_deferred_after_install);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ts_check_run(aio_suite());
}
