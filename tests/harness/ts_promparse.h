/*
 * ts_promparse: a strict parser of the Prometheus text exposition format,
 * version 0.0.4, for tests: it accepts what the format allows and refuses,
 * with the line number, anything it does not:
 *
 *   - every line ends in '\n' (the last one too); empty lines are skipped;
 *   - "# HELP name text" (escapes \\ and \n only) and "# TYPE name type"
 *     (counter, gauge, histogram, summary, untyped), at most one of each per
 *     name, before that family's first sample; other '#' lines are comments;
 *   - samples: name[{label="value",...}] value [timestamp], names and label
 *     names by the format's character rules, no label given twice, label
 *     values with escapes \\ \" \n only, values as Go's ParseFloat reads
 *     them (decimal, exponent, NaN, +Inf, -Inf), timestamps as integers;
 *   - no sample repeated (same name and label set); a family's samples (a
 *     histogram's _bucket, _sum and _count included) form one group;
 *   - counters are not negative; histograms have an le label on every
 *     _bucket, an le="+Inf" bucket equal to _count, and cumulative counts
 *     that do not decrease as le grows.
 */
#ifndef TS_PROMPARSE_H
#define TS_PROMPARSE_H

#include <stddef.h>

struct ts_prom;

/* Parses text[0..len). Returns 0 and *out (free with ts_prom_free), or -1
 * with "line N: reason" in err. */
int ts_prom_parse(const char *text, size_t len, struct ts_prom **out, char *err, size_t errlen);
void ts_prom_free(struct ts_prom *p);

/* Number of samples. */
size_t ts_prom_count(const struct ts_prom *p);

/* The value of the sample name{labels}, labels written as the page has them
 * after unescaping and sorting by label name, e.g. "code=\"NOT_FOUND\"", or
 * "" for none. Returns 1 when found (*value set), else 0. */
int ts_prom_get(const struct ts_prom *p, const char *name, const char *labels, double *value);

/* The TYPE given for a family, or NULL. */
const char *ts_prom_type(const struct ts_prom *p, const char *family);

#endif
