/*
 * ts_log: one line per event, logfmt (key=value), to stderr.
 *
 * The macros test the level before evaluating their arguments, so a debug
 * line on a hot path costs one comparison when debug is off. The caller
 * writes the key=value pairs; the logger prefixes time and level:
 *
 *     TS_INFO("event=listen addr=%s", addr);
 *     -> ts=2026-11-27T22:58:36.123Z level=info event=listen addr=127.0.0.1:7420
 *
 * Values that may contain spaces or quotes must go through ts_log_quote().
 * Never log a token, an edit key or an e-mail address.
 */
#ifndef TS_LOG_H
#define TS_LOG_H

#include <stddef.h>

enum ts_log_level { TS_LOG_ERROR = 0, TS_LOG_WARN, TS_LOG_INFO, TS_LOG_DEBUG };

extern int ts_log_level_current;

#define TS_LOG(lvl, ...)                                                                           \
    do {                                                                                           \
        if ((lvl) <= ts_log_level_current)                                                         \
            ts_log_write((lvl), __VA_ARGS__);                                                      \
    } while (0)
#define TS_ERROR(...) TS_LOG(TS_LOG_ERROR, __VA_ARGS__)
#define TS_WARN(...) TS_LOG(TS_LOG_WARN, __VA_ARGS__)
#define TS_INFO(...) TS_LOG(TS_LOG_INFO, __VA_ARGS__)
#define TS_DEBUG(...) TS_LOG(TS_LOG_DEBUG, __VA_ARGS__)

void ts_log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Sets the level from "error", "warn", "info" or "debug"; TS_E_CONFIG when
 * the name is unknown (the level is then unchanged). */
int ts_log_set_level(const char *name);

/* Writes s as a logfmt value into buf (quoted and escaped when needed,
 * truncated to fit, always NUL-terminated) and returns buf. */
const char *ts_log_quote(const char *s, char *buf, size_t size);

#endif
