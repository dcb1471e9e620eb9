/*
 * ts_repl_aio: io_destroy off the loop (see the header).
 *
 * Invariant, under A.lock: A.q[0 .. A.n) are contexts io_destroy was asked
 * for and answered 0, not yet handed to the kernel; the thread takes them
 * in order and calls glibc's syscall() for each with the lock released.
 */
#include "ts_repl_aio.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ts_err.h"

typedef long syscall_fn(long number, ...);

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    unsigned long q[TS_REPL_AIO_QUEUE];
    unsigned head, n;
    struct ts_repl_aio_stats st;
} A = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

static _Atomic int deferring;
static _Atomic(syscall_fn *) glibc_syscall;

static syscall_fn *real_syscall(void)
{
    syscall_fn *fn = atomic_load_explicit(&glibc_syscall, memory_order_acquire);
    if (!fn) {
        /* dlsym returns the function as an object pointer; POSIX makes the
         * conversion valid. */
        void *sym = dlsym(RTLD_NEXT, "syscall");
        fn = (syscall_fn *)sym;
        atomic_store_explicit(&glibc_syscall, fn, memory_order_release);
    }
    return fn;
}

static void *reaper(void *arg)
{
    (void)arg;
    syscall_fn *sys = real_syscall();
    pthread_mutex_lock(&A.lock);
    for (;;) {
        while (A.n == 0)
            pthread_cond_wait(&A.wake, &A.lock);
        unsigned long ctx = A.q[A.head];
        A.head = (A.head + 1) % TS_REPL_AIO_QUEUE;
        A.n--;
        pthread_mutex_unlock(&A.lock);
        long rc = sys(SYS_io_destroy, ctx);
        pthread_mutex_lock(&A.lock);
        if (rc == 0)
            A.st.destroyed++;
        else
            A.st.failed++;
    }
    return NULL;
}

/* 1 when ctx was queued (the caller answers 0), 0 when the queue is full. */
static int defer_destroy(unsigned long ctx)
{
    pthread_mutex_lock(&A.lock);
    int queued = A.n < TS_REPL_AIO_QUEUE;
    if (queued) {
        A.q[(A.head + A.n) % TS_REPL_AIO_QUEUE] = ctx;
        A.n++;
        A.st.deferred++;
        pthread_cond_signal(&A.wake);
    }
    pthread_mutex_unlock(&A.lock);
    return queued;
}

/* glibc's syscall(), for the whole executable. Its callers pass up to six
 * arguments, all of them register-sized; reading six whatever the call
 * passed is what glibc's own (assembly) syscall does on every ABI it
 * supports. */
/* NOLINTNEXTLINE(readability-inconsistent-declaration-parameter-name): glibc names it __sysno */
long syscall(long number, ...)
{
    va_list ap;
    va_start(ap, number);
    long a1 = va_arg(ap, long), a2 = va_arg(ap, long), a3 = va_arg(ap, long);
    long a4 = va_arg(ap, long), a5 = va_arg(ap, long), a6 = va_arg(ap, long);
    va_end(ap);
    if (number == SYS_io_destroy && atomic_load_explicit(&deferring, memory_order_relaxed) &&
        defer_destroy((unsigned long)a1))
        return 0;
    syscall_fn *sys = real_syscall();
    if (!sys) {
        errno = ENOSYS;
        return -1;
    }
    return sys(number, a1, a2, a3, a4, a5, a6);
}

static pthread_once_t install_once = PTHREAD_ONCE_INIT;
static int install_rc = TS_E_NOMEM;

static void install(void)
{
    if (!real_syscall())
        return;
    pthread_attr_t attr;
    pthread_t t;
    if (pthread_attr_init(&attr) != 0)
        return;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    /* Signals stay with the threads that handle them. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&t, &attr, reaper, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0)
        return;
    atomic_store_explicit(&deferring, 1, memory_order_relaxed);
    install_rc = TS_OK;
}

int ts_repl_aio_install(void)
{
    pthread_once(&install_once, install);
    return install_rc;
}

void ts_repl_aio_stats(struct ts_repl_aio_stats *out)
{
    pthread_mutex_lock(&A.lock);
    *out = A.st;
    pthread_mutex_unlock(&A.lock);
}
