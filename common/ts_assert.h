/*
 * ts_assert: TS_ASSERT(cond), for the invariants a module states in its
 * opening comment (a subscriber's state, a proposal list, a connection's
 * state machine), not for checking input: bad input is an error code.
 *
 * Active when NDEBUG is not defined (Debug builds, so the test build) or
 * when the build defines TS_ASSERTS (CMake option -DTS_ASSERTS=ON, to keep
 * them in a Release build). A failing assert logs one error line with the
 * file, the line and the expression through ts_log, then aborts: the
 * process is in a state its code was not written for, and a core dump
 * says more than carrying on would. When inactive, TS_ASSERT compiles to
 * nothing but its argument is still type-checked (inside sizeof, never
 * evaluated), so an assert cannot rot in Release builds. Hence, as with
 * assert(3), cond must have no side effect the program depends on.
 */
#ifndef TS_ASSERT_H
#define TS_ASSERT_H

#if !defined(NDEBUG) || defined(TS_ASSERTS)
#define TS_ASSERT_ACTIVE 1
#define TS_ASSERT(cond) ((cond) ? (void)0 : ts__assert_fail(__FILE__, __LINE__, #cond))
#else
#define TS_ASSERT_ACTIVE 0
#define TS_ASSERT(cond) ((void)sizeof(!(cond)))
#endif

/* Logs "event=assert_failed file=F line=L expr=E" and aborts. */
_Noreturn void ts__assert_fail(const char *file, int line, const char *expr);

/* 1 when TS_ASSERT was active where common/ was compiled, which is the
 * whole build (every target takes the same flags): lets a test prove that
 * the suite runs with the asserts on. */
int ts_assert_enabled(void);

#endif
