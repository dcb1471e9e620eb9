/*
 * ts_version: the library's own version string, compiled in from
 * ts_version.h, so a program can tell which libthreadsync it runs with (the
 * macros say which one it was compiled against).
 */
#include "ts_version.h"

const char *ts_version(void)
{
    return THREADSYNC_VERSION_STRING;
}
