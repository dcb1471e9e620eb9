/*
 * ts_err: names and messages for the error codes, from the one X-macro list
 * in ts_err.h, so a new code cannot be added without its name and message.
 */
#include "ts_err.h"

#include <string.h>

const char *ts_err_name(int err)
{
    switch (err) {
    case TS_OK:
        return "OK";
#define TS__ERR_NAME(name, value, msg)                                                             \
    case value:                                                                                    \
        return #name;
        TS_ERR_MAP(TS__ERR_NAME)
#undef TS__ERR_NAME
    default:
        return "UNKNOWN";
    }
}

const char *ts_err_message(int err)
{
    switch (err) {
    case TS_OK:
        return "ok";
#define TS__ERR_MSG(name, value, msg)                                                              \
    case value:                                                                                    \
        return msg;
        TS_ERR_MAP(TS__ERR_MSG)
#undef TS__ERR_MSG
    default:
        return "unknown error";
    }
}

int ts_err_wire(int err)
{
    if (err == TS_OK)
        return 0;
    if (err >= TS_E_BAD_FRAME && err <= TS_E_WIRE_MAX)
        return err;
    switch (err) {
    case TS_E_AGAIN:
    case TS_E_BUSY:
    case TS_E_TIMEOUT:
        return TS_E_UNAVAILABLE;
    default:
        return TS_E_INTERNAL;
    }
}

int ts_err_from_name(const char *name)
{
#define TS__ERR_PARSE(ename, value, msg)                                                           \
    if (strcmp(name, #ename) == 0)                                                                 \
        return value;
    TS_ERR_MAP(TS__ERR_PARSE)
#undef TS__ERR_PARSE
    return 0;
}
