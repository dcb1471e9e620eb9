#include "ts_testfork.h"

#include <check.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

int ts_test_mapped_in_child(const void *p)
{
    long page = sysconf(_SC_PAGESIZE);
    void *start = (char *)p - (uintptr_t)p % (uintptr_t)page;
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        _exit(msync(start, (size_t)page, MS_ASYNC) == 0 ? 0 : 3);
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFEXITED(st));
    ck_assert(WEXITSTATUS(st) == 0 || WEXITSTATUS(st) == 3);
    return WEXITSTATUS(st) == 0;
}
