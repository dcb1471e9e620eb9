/*
 * ts_assert: the failure path of TS_ASSERT. The expression is quoted as a
 * logfmt value; the line is written at error level, which no configured
 * level filters out, before abort() raises SIGABRT.
 */
#include "ts_assert.h"

#include "ts_log.h"

#include <stdlib.h>

void ts__assert_fail(const char *file, int line, const char *expr)
{
    char q[512];
    ts_log_write(TS_LOG_ERROR, "event=assert_failed file=%s line=%d expr=%s", file, line,
                 ts_log_quote(expr, q, sizeof(q)));
    abort();
}

int ts_assert_enabled(void)
{
    return TS_ASSERT_ACTIVE;
}
