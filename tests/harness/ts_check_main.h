/*
 * ts_check_main: the end of every Check suite's main(). Runs the suite
 * with Check's defaults (each case in its own process, CK_FORK, unless
 * CK_FORK=no is set for debugging), prints the normal report, and returns
 * main's exit status: failure when any case failed. The runner takes
 * ownership of s.
 */
#ifndef TS_CHECK_MAIN_H
#define TS_CHECK_MAIN_H

#include <check.h>
#include <stdlib.h>

static inline int ts_check_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
