/*
 * ts_buf: see ts_buf.h.
 *
 * Invariant: while p is not NULL, len < cap and p[len] == '\0'.
 */
#include "ts_buf.h"

#include "ts_err.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIN_CAP 64

char *ts_buf_space(struct ts_buf *b, size_t n)
{
    if (b->failed)
        return NULL;
    if (n >= SIZE_MAX / 2 - b->len) {
        b->failed = 1;
        return NULL;
    }
    size_t need = b->len + n + 1;
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : MIN_CAP;
        if (cap < need)
            cap = need;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = 1;
            return NULL;
        }
        if (!b->p)
            p[0] = '\0';
        b->p = p;
        b->cap = cap;
    }
    return b->p + b->len;
}

void ts_buf_commit(struct ts_buf *b, size_t n)
{
    b->len += n;
    b->p[b->len] = '\0';
}

void ts_buf_add(struct ts_buf *b, const void *s, size_t n)
{
    char *dst = ts_buf_space(b, n);
    if (!dst)
        return;
    if (n)
        memcpy(dst, s, n);
    ts_buf_commit(b, n);
}

void ts_buf_puts(struct ts_buf *b, const char *s)
{
    ts_buf_add(b, s, strlen(s));
}

void ts_buf_printf(struct ts_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *dst = ts_buf_space(b, 0);
    size_t room = dst ? b->cap - b->len : 0;
    int n = dst ? vsnprintf(dst, room, fmt, ap) : -1;
    va_end(ap);
    if (n >= 0 && (size_t)n < room) {
        ts_buf_commit(b, (size_t)n);
        return;
    }
    if (dst)
        *dst = '\0'; /* a partial write is not counted: keep the NUL */
    if (n < 0) {
        b->failed = 1;
        return;
    }
    /* It did not fit: grow, then format again. */
    if (!(dst = ts_buf_space(b, (size_t)n)))
        return;
    va_start(ap, fmt);
    vsnprintf(dst, (size_t)n + 1, fmt, ap);
    va_end(ap);
    ts_buf_commit(b, (size_t)n);
}

int ts_buf_finish(struct ts_buf *b, char **out, size_t *len)
{
    ts_buf_space(b, 0); /* "" rather than NULL for an empty buffer */
    if (b->failed) {
        ts_buf_free(b);
        *out = NULL;
        if (len)
            *len = 0;
        return TS_E_NOMEM;
    }
    *out = b->p;
    if (len)
        *len = b->len;
    *b = (struct ts_buf)TS_BUF_INIT;
    return TS_OK;
}

void ts_buf_free(struct ts_buf *b)
{
    free(b->p);
    *b = (struct ts_buf)TS_BUF_INIT;
}
