/*
 * ts_buf: a growable byte buffer, always NUL-terminated, for building
 * output (HTML and JSON pages, Prometheus text, settings) and reading
 * input whose size is not known up front.
 *
 * An allocation failure sticks: later appends do nothing and
 * ts_buf_finish reports it, so a builder checks once, at the end.
 *
 * Growth: the first allocation is what is asked for (a file read into a
 * buffer sized from its length costs no slack); later ones at least double.
 */
#ifndef TS_BUF_H
#define TS_BUF_H

#include <stddef.h>

struct ts_buf {
    char *p;    /* len bytes and a NUL; NULL until something is added */
    size_t len; /* bytes added */
    size_t cap; /* bytes allocated */
    int failed; /* an allocation failed: the contents are incomplete */
};

#define TS_BUF_INIT                                                                                \
    {                                                                                              \
        0                                                                                          \
    }

/* Appends n bytes of s. */
void ts_buf_add(struct ts_buf *b, const void *s, size_t n);

/* Appends the string s. */
void ts_buf_puts(struct ts_buf *b, const char *s);

/* Appends printf output. */
void ts_buf_printf(struct ts_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Room for n more bytes at the end: the caller writes up to n bytes there
 * and counts them with ts_buf_commit. NULL when out of memory (b failed). */
char *ts_buf_space(struct ts_buf *b, size_t n);

/* Counts n bytes written into the space ts_buf_space returned. */
void ts_buf_commit(struct ts_buf *b, size_t n);

/* Hands the contents over: TS_OK with *out malloc'd (the caller frees it;
 * "" when nothing was added) and *len (may be NULL) its length; else
 * TS_E_NOMEM, *out NULL. Either way b is empty again. */
int ts_buf_finish(struct ts_buf *b, char **out, size_t *len);

/* Frees the contents; b is empty again. */
void ts_buf_free(struct ts_buf *b);

#endif
