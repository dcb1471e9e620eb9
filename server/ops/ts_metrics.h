/*
 * ts_metrics: a registry of Prometheus metrics and its text exposition
 * (format version 0.0.4).
 *
 * A family is a counter, a gauge or a histogram with fixed buckets, with at
 * most one label (e.g. role, code). Each distinct label value is a series,
 * created on first use; a family holds at most TS_METRICS_MAX_SERIES of
 * them, further values are counted under the value "other", so a bug that
 * feeds unbounded values cannot grow memory without bound.
 *
 * Families are rendered in registration order, each with its # HELP and
 * # TYPE lines; help text and label values are escaped as the format
 * requires (backslash, double quote in label values, line feed). Values are
 * written so that strtod() gives back the same double.
 *
 * Every update function accepts a NULL family and does nothing: code that
 * counts need not know whether metrics are on. Updates are O(series) string
 * compares for labelled families and O(1) otherwise; meant for the loop
 * thread only (no locking).
 */
#ifndef TS_METRICS_H
#define TS_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define TS_METRICS_MAX_SERIES 64
#define TS_METRICS_MAX_BUCKETS 32

enum ts_metric_type {
    TS_METRIC_COUNTER = 1,
    TS_METRIC_GAUGE,
    TS_METRIC_HISTOGRAM,
};

struct ts_metrics;
struct ts_metric;

/* An empty registry; NULL when out of memory. */
struct ts_metrics *ts_metrics_new(void);
/* Frees the registry and every family it holds; NULL is a no-op. */
void ts_metrics_free(struct ts_metrics *m);

/* Registers a family. name must match [a-zA-Z_:][a-zA-Z0-9_:]* and be new in
 * m; label, when not NULL, must match [a-zA-Z_][a-zA-Z0-9_]*, must not begin
 * with "__" and must not be "le" for a histogram. Histograms take
 * n_buckets (1..TS_METRICS_MAX_BUCKETS) strictly increasing finite upper
 * bounds (copied; +Inf is implied); others take none. name, help and label
 * are copied. Returns the family, owned by m, or NULL (bad argument, out of
 * memory). */
struct ts_metric *ts_metrics_add(struct ts_metrics *m, enum ts_metric_type type, const char *name,
                                 const char *help, const char *label, const double *buckets,
                                 size_t n_buckets);

/* Counter: adds v (ignored unless v >= 0). Gauge: adds v. label_value is
 * the series' label value (copied on first use), NULL for an unlabelled
 * family (and ignored by one). */
void ts_metric_add(struct ts_metric *f, const char *label_value, double v);
/* Gauge: sets the series to v. */
void ts_metric_set(struct ts_metric *f, const char *label_value, double v);
/* Histogram: records one observation. */
void ts_metric_observe(struct ts_metric *f, const char *label_value, double v);
/* Drops every series of the family (a labelled gauge recomputed at each
 * scrape, so values that disappeared are not shown stale). An unlabelled
 * family is reset to zero instead. */
void ts_metric_clear(struct ts_metric *f);

/* The current value of a counter or gauge series (0 when it does not
 * exist); for a histogram, its observation count. For tests and /healthz. */
double ts_metric_value(const struct ts_metric *f, const char *label_value);

/* Renders the registry as text. *out (OUT) is malloc'd, NUL-terminated,
 * *len bytes without the NUL; the caller frees it. TS_OK or TS_E_NOMEM. */
int ts_metrics_render(const struct ts_metrics *m, char **out, size_t *len);

/* Formats v as the exposition format writes sample values: "+Inf",
 * "-Inf", "NaN", or the shortest of %.15g / %.17g that reads back as v.
 * buf holds at least 32 bytes. */
void ts_metrics_format_value(double v, char buf[32]);

#endif
