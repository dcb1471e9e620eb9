/*
 * ts_metrics: see ts_metrics.h.
 *
 * Layout: a registry is a growable array of families; a family a growable
 * array of series, the unlabelled family's single series at index 0. A
 * histogram series keeps one non-cumulative count per bucket plus the +Inf
 * overflow; rendering accumulates them, so an observation costs a binary
 * search and one increment.
 *
 * Rendering builds the whole page in one buffer that doubles as needed: a
 * page is a few KiB (tens of families, a handful of series each).
 */
#include "ts_metrics.h"

#include "ts_array.h"
#include "ts_buf.h"

#include "ts_err.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct series {
    char *label_value; /* NULL for the unlabelled family's series */
    double value;      /* counter, gauge; histogram: sum */
    uint64_t count;    /* histogram: observations */
    uint64_t *buckets; /* histogram: n_buckets + 1 counts, not cumulative */
};

struct ts_metric {
    enum ts_metric_type type;
    char *name, *help, *label;
    double *bounds;
    size_t n_bounds;
    struct series *series;
    size_t n_series, cap_series;
};

struct ts_metrics {
    struct ts_metric **families;
    size_t n, cap;
};

/* ---- names ---- */

static int name_ok(const char *s, int colon)
{
    if (!s || !*s)
        return 0;
    for (const char *p = s; *p; p++) {
        char c = *p;
        int alpha =
            (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':');
        if (!alpha && !(p > s && c >= '0' && c <= '9'))
            return 0;
    }
    return 1;
}

/* ---- registry ---- */

struct ts_metrics *ts_metrics_new(void)
{
    return calloc(1, sizeof(struct ts_metrics));
}

static void series_free(struct series *s)
{
    free(s->label_value);
    free(s->buckets);
}

static void family_free(struct ts_metric *f)
{
    for (size_t i = 0; i < f->n_series; i++)
        series_free(&f->series[i]);
    free(f->series);
    free(f->name);
    free(f->help);
    free(f->label);
    free(f->bounds);
    free(f);
}

void ts_metrics_free(struct ts_metrics *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++)
        family_free(m->families[i]);
    free(m->families);
    free(m);
}

static int series_init(struct ts_metric *f, struct series *s, const char *label_value)
{
    memset(s, 0, sizeof(*s));
    if (label_value && !(s->label_value = strdup(label_value)))
        return TS_E_NOMEM;
    if (f->type == TS_METRIC_HISTOGRAM &&
        !(s->buckets = calloc(f->n_bounds + 1, sizeof(*s->buckets)))) {
        free(s->label_value);
        return TS_E_NOMEM;
    }
    return TS_OK;
}

struct ts_metric *ts_metrics_add(struct ts_metrics *m, enum ts_metric_type type, const char *name,
                                 const char *help, const char *label, const double *buckets,
                                 size_t n_buckets)
{
    if (!m || !name_ok(name, 1) || !help)
        return NULL;
    if (type != TS_METRIC_COUNTER && type != TS_METRIC_GAUGE && type != TS_METRIC_HISTOGRAM)
        return NULL;
    if (label && (!name_ok(label, 0) || !strncmp(label, "__", 2) ||
                  (type == TS_METRIC_HISTOGRAM && !strcmp(label, "le"))))
        return NULL;
    if (type == TS_METRIC_HISTOGRAM) {
        if (!buckets || n_buckets == 0 || n_buckets > TS_METRICS_MAX_BUCKETS)
            return NULL;
        for (size_t i = 0; i < n_buckets; i++)
            if (!isfinite(buckets[i]) || (i && buckets[i] <= buckets[i - 1]))
                return NULL;
    } else if (n_buckets) {
        return NULL;
    }
    for (size_t i = 0; i < m->n; i++)
        if (!strcmp(m->families[i]->name, name))
            return NULL;
    struct ts_metric **v = ts_array_grow(m->families, &m->cap, m->n, sizeof(*v), 32);
    if (!v)
        return NULL;
    m->families = v;
    struct ts_metric *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    f->type = type;
    f->name = strdup(name);
    f->help = strdup(help);
    f->label = label ? strdup(label) : NULL;
    f->n_bounds = n_buckets;
    f->bounds = n_buckets ? malloc(n_buckets * sizeof(double)) : NULL;
    if (!f->name || !f->help || (label && !f->label) || (n_buckets && !f->bounds)) {
        family_free(f);
        return NULL;
    }
    if (n_buckets)
        memcpy(f->bounds, buckets, n_buckets * sizeof(double));
    if (!label) { /* the one series exists from the start: it renders as 0 */
        f->series = malloc(sizeof(*f->series));
        if (!f->series || series_init(f, &f->series[0], NULL) != TS_OK) {
            family_free(f);
            return NULL;
        }
        f->n_series = f->cap_series = 1;
    }
    m->families[m->n++] = f;
    return f;
}

/* The series for label_value, created when new; NULL when out of memory. */
static struct series *series_get(struct ts_metric *f, const char *label_value)
{
    if (!f->label)
        return &f->series[0];
    if (!label_value)
        label_value = "";
    for (size_t i = 0; i < f->n_series; i++)
        if (!strcmp(f->series[i].label_value, label_value))
            return &f->series[i];
    if (f->n_series >= TS_METRICS_MAX_SERIES - 1 && strcmp(label_value, "other") != 0)
        return series_get(f, "other");
    struct series *v = ts_array_grow(f->series, &f->cap_series, f->n_series, sizeof(*v), 4);
    if (!v)
        return NULL;
    f->series = v;
    if (series_init(f, &f->series[f->n_series], label_value) != TS_OK)
        return NULL;
    return &f->series[f->n_series++];
}

void ts_metric_add(struct ts_metric *f, const char *label_value, double v)
{
    if (!f || f->type == TS_METRIC_HISTOGRAM || (f->type == TS_METRIC_COUNTER && !(v >= 0)))
        return;
    struct series *s = series_get(f, label_value);
    if (s)
        s->value += v;
}

void ts_metric_set(struct ts_metric *f, const char *label_value, double v)
{
    if (!f || f->type != TS_METRIC_GAUGE)
        return;
    struct series *s = series_get(f, label_value);
    if (s)
        s->value = v;
}

void ts_metric_observe(struct ts_metric *f, const char *label_value, double v)
{
    if (!f || f->type != TS_METRIC_HISTOGRAM || isnan(v))
        return;
    struct series *s = series_get(f, label_value);
    if (!s)
        return;
    size_t lo = 0, hi = f->n_bounds; /* first bound >= v; n_bounds = +Inf */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (f->bounds[mid] >= v)
            hi = mid;
        else
            lo = mid + 1;
    }
    s->buckets[lo]++;
    s->count++;
    s->value += v;
}

void ts_metric_clear(struct ts_metric *f)
{
    if (!f)
        return;
    if (!f->label) {
        struct series *s = &f->series[0];
        s->value = 0;
        s->count = 0;
        if (s->buckets)
            memset(s->buckets, 0, (f->n_bounds + 1) * sizeof(*s->buckets));
        return;
    }
    for (size_t i = 0; i < f->n_series; i++)
        series_free(&f->series[i]);
    f->n_series = 0;
}

double ts_metric_value(const struct ts_metric *f, const char *label_value)
{
    if (!f)
        return 0;
    for (size_t i = 0; i < f->n_series; i++) {
        const struct series *s = &f->series[i];
        if (f->label && strcmp(s->label_value, label_value ? label_value : "") != 0)
            continue;
        return f->type == TS_METRIC_HISTOGRAM ? (double)s->count : s->value;
    }
    return 0;
}

/* ---- rendering ---- */

/* HELP text escapes backslash and line feed; label values also '"'. */
static void put_escaped(struct ts_buf *b, const char *s, int quote)
{
    const char *run = s;
    for (; *s; s++) {
        const char *rep = NULL;
        if (*s == '\\')
            rep = "\\\\";
        else if (*s == '\n')
            rep = "\\n";
        else if (quote && *s == '"')
            rep = "\\\"";
        if (!rep)
            continue;
        ts_buf_add(b, run, (size_t)(s - run));
        ts_buf_puts(b, rep);
        run = s + 1;
    }
    ts_buf_add(b, run, (size_t)(s - run));
}

void ts_metrics_format_value(double v, char buf[32])
{
    if (isnan(v)) {
        snprintf(buf, 32, "NaN");
    } else if (isinf(v)) {
        snprintf(buf, 32, "%s", v > 0 ? "+Inf" : "-Inf");
    } else {
        snprintf(buf, 32, "%.15g", v);
        if (strtod(buf, NULL) != v)
            snprintf(buf, 32, "%.17g", v);
    }
}

static void put_value(struct ts_buf *b, double v)
{
    char num[32];
    ts_metrics_format_value(v, num);
    ts_buf_puts(b, num);
}

/* name{label="value",le="bound"} — either part may be absent. */
static void put_series_name(struct ts_buf *b, const struct ts_metric *f, const char *suffix,
                            const struct series *s, const char *le)
{
    ts_buf_puts(b, f->name);
    ts_buf_puts(b, suffix);
    if (!f->label && !le)
        return;
    ts_buf_puts(b, "{");
    if (f->label) {
        ts_buf_puts(b, f->label);
        ts_buf_puts(b, "=\"");
        put_escaped(b, s->label_value, 1);
        ts_buf_puts(b, le ? "\"," : "\"");
    }
    if (le) {
        ts_buf_puts(b, "le=\"");
        ts_buf_puts(b, le);
        ts_buf_puts(b, "\"");
    }
    ts_buf_puts(b, "}");
}

static void render_family(struct ts_buf *b, const struct ts_metric *f)
{
    static const char *const types[] = {"", "counter", "gauge", "histogram"};
    ts_buf_puts(b, "# HELP ");
    ts_buf_puts(b, f->name);
    ts_buf_puts(b, " ");
    put_escaped(b, f->help, 0);
    ts_buf_puts(b, "\n# TYPE ");
    ts_buf_puts(b, f->name);
    ts_buf_puts(b, " ");
    ts_buf_puts(b, types[f->type]);
    ts_buf_puts(b, "\n");
    for (size_t i = 0; i < f->n_series; i++) {
        const struct series *s = &f->series[i];
        if (f->type != TS_METRIC_HISTOGRAM) {
            put_series_name(b, f, "", s, NULL);
            ts_buf_puts(b, " ");
            put_value(b, s->value);
            ts_buf_puts(b, "\n");
            continue;
        }
        uint64_t cum = 0;
        for (size_t k = 0; k <= f->n_bounds; k++) {
            char le[32];
            cum += s->buckets[k];
            if (k < f->n_bounds)
                ts_metrics_format_value(f->bounds[k], le);
            else
                strcpy(le, "+Inf");
            put_series_name(b, f, "_bucket", s, le);
            ts_buf_puts(b, " ");
            put_value(b, (double)cum);
            ts_buf_puts(b, "\n");
        }
        put_series_name(b, f, "_sum", s, NULL);
        ts_buf_puts(b, " ");
        put_value(b, s->value);
        ts_buf_puts(b, "\n");
        put_series_name(b, f, "_count", s, NULL);
        ts_buf_puts(b, " ");
        put_value(b, (double)s->count);
        ts_buf_puts(b, "\n");
    }
}

int ts_metrics_render(const struct ts_metrics *m, char **out, size_t *len)
{
    struct ts_buf b = TS_BUF_INIT;
    for (size_t i = 0; i < m->n; i++)
        render_family(&b, m->families[i]);
    return ts_buf_finish(&b, out, len); /* an empty registry yields "" */
}
