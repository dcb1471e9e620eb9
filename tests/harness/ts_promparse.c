/*
 * ts_promparse: see ts_promparse.h. One pass over the lines, then the
 * histogram checks over the collected samples. Sizes are small (a test's
 * scrape), so lookups are linear.
 */
#include "ts_promparse.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_MAX_LEN 200
#define LABELS_MAX_LEN 1024
#define MAX_LABELS 16

struct sample {
    char name[NAME_MAX_LEN];
    char family[NAME_MAX_LEN];
    char labels[LABELS_MAX_LEN]; /* canonical: sorted, unescaped, quoted */
    char le[64];                 /* a _bucket's le, "" otherwise */
    char rest[LABELS_MAX_LEN];   /* labels without le */
    double value;
};

struct family {
    char name[NAME_MAX_LEN];
    char type[16];
    int has_help, has_type, has_samples, closed;
};

struct ts_prom {
    struct sample *s;
    size_t n, cap;
    struct family *f;
    size_t nf, capf;
};

static int failf(char *err, size_t n, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int failf(char *err, size_t n, unsigned line, const char *fmt, ...)
{
    int k = snprintf(err, n, "line %u: ", line);
    va_list ap;
    va_start(ap, fmt);
    if (k >= 0 && (size_t)k < n)
        vsnprintf(err + k, n - (size_t)k, fmt, ap);
    va_end(ap);
    return -1;
}

void ts_prom_free(struct ts_prom *p)
{
    if (!p)
        return;
    free(p->s);
    free(p->f);
    free(p);
}

size_t ts_prom_count(const struct ts_prom *p)
{
    return p->n;
}

static int name_char(char c, int first, int colon)
{
    if (isalpha((unsigned char)c) || c == '_' || (colon && c == ':'))
        return 1;
    return !first && isdigit((unsigned char)c);
}

/* Reads a name at *p; 0 on success (*p past it). */
static int read_name(const char **p, const char *end, char *out, int colon)
{
    const char *s = *p;
    size_t n = 0;
    while (s + n < end && name_char(s[n], n == 0, colon))
        n++;
    if (n == 0 || n >= NAME_MAX_LEN)
        return -1;
    memcpy(out, s, n);
    out[n] = '\0';
    *p = s + n;
    return 0;
}

static int parse_value(const char *s, double *v)
{
    if (!strcmp(s, "NaN")) {
        *v = NAN;
        return 0;
    }
    if (!strcmp(s, "+Inf") || !strcmp(s, "Inf")) {
        *v = INFINITY;
        return 0;
    }
    if (!strcmp(s, "-Inf")) {
        *v = -INFINITY;
        return 0;
    }
    /* [+-]digits[.digits][e[+-]digits] or [+-].digits...: no hex, no inf/nan words */
    const char *p = s;
    if (*p == '+' || *p == '-')
        p++;
    int digits = 0;
    while (isdigit((unsigned char)*p))
        p++, digits++;
    if (*p == '.') {
        p++;
        while (isdigit((unsigned char)*p))
            p++, digits++;
    }
    if (!digits)
        return -1;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!isdigit((unsigned char)*p))
            return -1;
        while (isdigit((unsigned char)*p))
            p++;
    }
    if (*p)
        return -1;
    *v = strtod(s, NULL);
    return 0;
}

static struct family *family_get(struct ts_prom *pr, const char *name, int create)
{
    for (size_t i = 0; i < pr->nf; i++)
        if (!strcmp(pr->f[i].name, name))
            return &pr->f[i];
    if (!create)
        return NULL;
    if (pr->nf == pr->capf) {
        size_t cap = pr->capf ? pr->capf * 2 : 32;
        struct family *v = realloc(pr->f, cap * sizeof(*v));
        if (!v)
            return NULL;
        pr->f = v;
        pr->capf = cap;
    }
    struct family *f = &pr->f[pr->nf++];
    memset(f, 0, sizeof(*f));
    snprintf(f->name, sizeof(f->name), "%s", name);
    return f;
}

/* The family a sample name belongs to: a histogram's or summary's suffixes
 * map to the declared family. */
static void family_of(struct ts_prom *pr, const char *name, char *out)
{
    static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(name), k = strlen(suffixes[i]);
        if (n > k && !strcmp(name + n - k, suffixes[i])) {
            char base[NAME_MAX_LEN];
            snprintf(base, sizeof(base), "%.*s", (int)(n - k), name);
            struct family *f = family_get(pr, base, 0);
            if (f && (!strcmp(f->type, "histogram") || !strcmp(f->type, "summary")) &&
                (i != 0 || !strcmp(f->type, "histogram"))) {
                strcpy(out, base);
                return;
            }
        }
    }
    strcpy(out, name);
}

struct label {
    char name[NAME_MAX_LEN];
    char value[LABELS_MAX_LEN];
};

static int label_cmp(const void *a, const void *b)
{
    return strcmp(((const struct label *)a)->name, ((const struct label *)b)->name);
}

static int parse_sample(struct ts_prom *pr, const char *p, const char *end, unsigned line,
                        char *err, size_t errlen)
{
    struct sample sm;
    memset(&sm, 0, sizeof(sm));
    if (read_name(&p, end, sm.name, 1) != 0)
        return failf(err, errlen, line, "bad metric name");
    struct label labels[MAX_LABELS];
    size_t nl = 0;
    if (p < end && *p == '{') {
        p++;
        while (p < end && *p != '}') {
            if (nl == MAX_LABELS)
                return failf(err, errlen, line, "too many labels");
            struct label *l = &labels[nl];
            if (read_name(&p, end, l->name, 0) != 0 || !strncmp(l->name, "__", 2))
                return failf(err, errlen, line, "bad label name");
            for (size_t i = 0; i < nl; i++)
                if (!strcmp(labels[i].name, l->name))
                    return failf(err, errlen, line, "label %s given twice", l->name);
            if (p + 1 >= end || p[0] != '=' || p[1] != '"')
                return failf(err, errlen, line, "want =\" after label %s", l->name);
            p += 2;
            size_t n = 0;
            for (;;) {
                if (p >= end)
                    return failf(err, errlen, line, "unterminated label value");
                char c = *p++;
                if (c == '"')
                    break;
                if (c == '\\') {
                    if (p >= end)
                        return failf(err, errlen, line, "dangling escape");
                    char e = *p++;
                    c = e == 'n' ? '\n' : e == '\\' ? '\\' : e == '"' ? '"' : 0;
                    if (!c)
                        return failf(err, errlen, line, "bad escape \\%c in label value", e);
                }
                if (n + 1 >= sizeof(l->value))
                    return failf(err, errlen, line, "label value too long");
                l->value[n++] = c;
            }
            l->value[n] = '\0';
            nl++;
            if (p < end && *p == ',')
                p++;
            else if (p < end && *p != '}')
                return failf(err, errlen, line, "want , or } after a label");
        }
        if (p >= end)
            return failf(err, errlen, line, "unterminated label set");
        p++;
    }
    if (p >= end || *p != ' ')
        return failf(err, errlen, line, "want one space before the value");
    p++;
    char tok[64];
    size_t n = 0;
    while (p < end && *p != ' ' && n + 1 < sizeof(tok))
        tok[n++] = *p++;
    tok[n] = '\0';
    if (parse_value(tok, &sm.value) != 0)
        return failf(err, errlen, line, "bad value '%s'", tok);
    if (p < end) {
        p++;
        if (p == end)
            return failf(err, errlen, line, "trailing space");
        if (*p == '-')
            p++;
        while (p < end && isdigit((unsigned char)*p))
            p++;
        if (p != end)
            return failf(err, errlen, line, "bad timestamp");
    }
    qsort(labels, nl, sizeof(labels[0]), label_cmp);
    for (size_t i = 0; i < nl; i++) {
        char one[LABELS_MAX_LEN + NAME_MAX_LEN + 8];
        snprintf(one, sizeof(one), "%s%.199s=\"%.1000s\"", i ? "," : "", labels[i].name,
                 labels[i].value);
        strncat(sm.labels, one, sizeof(sm.labels) - strlen(sm.labels) - 1);
        if (!strcmp(labels[i].name, "le")) {
            size_t vlen = strlen(labels[i].value);
            if (vlen >= sizeof(sm.le)) /* no bucket bound is that long */
                return failf(err, errlen, line, "bad le label");
            memcpy(sm.le, labels[i].value, vlen + 1);
        } else {
            snprintf(one, sizeof(one), "%s%.199s=\"%.1000s\"", sm.rest[0] ? "," : "",
                     labels[i].name, labels[i].value);
            strncat(sm.rest, one, sizeof(sm.rest) - strlen(sm.rest) - 1);
        }
    }
    family_of(pr, sm.name, sm.family);
    struct family *f = family_get(pr, sm.family, 1);
    if (!f)
        return failf(err, errlen, line, "out of memory");
    if (f->closed)
        return failf(err, errlen, line, "samples of %s are not in one group", sm.family);
    for (size_t i = 0; i < pr->nf; i++) /* the previous group ends here */
        if (&pr->f[i] != f && pr->f[i].has_samples)
            pr->f[i].closed = 1;
    f->has_samples = 1;
    if (!strcmp(f->type, "counter") && !(sm.value >= 0))
        return failf(err, errlen, line, "counter %s is negative or NaN", sm.name);
    int is_hist = !strcmp(f->type, "histogram");
    size_t nlen = strlen(sm.name);
    if (is_hist && nlen > 7 && !strcmp(sm.name + nlen - 7, "_bucket") && !sm.le[0])
        return failf(err, errlen, line, "histogram bucket without le");
    if (is_hist && !strcmp(sm.name, f->name))
        return failf(err, errlen, line, "histogram sample without _bucket/_sum/_count");
    for (size_t i = 0; i < pr->n; i++)
        if (!strcmp(pr->s[i].name, sm.name) && !strcmp(pr->s[i].labels, sm.labels))
            return failf(err, errlen, line, "sample %s{%s} repeated", sm.name, sm.labels);
    if (pr->n == pr->cap) {
        size_t cap = pr->cap ? pr->cap * 2 : 64;
        struct sample *v = realloc(pr->s, cap * sizeof(*v));
        if (!v)
            return failf(err, errlen, line, "out of memory");
        pr->s = v;
        pr->cap = cap;
    }
    pr->s[pr->n++] = sm;
    return 0;
}

static int parse_comment(struct ts_prom *pr, const char *p, const char *end, unsigned line,
                         char *err, size_t errlen)
{
    int help = end - p >= 7 && !memcmp(p, "# HELP ", 7);
    int type = end - p >= 7 && !memcmp(p, "# TYPE ", 7);
    if (!help && !type)
        return 0; /* a plain comment */
    p += 7;
    char name[NAME_MAX_LEN];
    if (read_name(&p, end, name, 1) != 0)
        return failf(err, errlen, line, "bad name after # %s", help ? "HELP" : "TYPE");
    struct family *f = family_get(pr, name, 1);
    if (!f)
        return failf(err, errlen, line, "out of memory");
    if (f->has_samples)
        return failf(err, errlen, line, "# %s for %s after its samples", help ? "HELP" : "TYPE",
                     name);
    if (help) {
        if (f->has_help)
            return failf(err, errlen, line, "second HELP for %s", name);
        f->has_help = 1;
        if (p < end && *p != ' ')
            return failf(err, errlen, line, "want a space after the name");
        for (const char *q = p; q < end; q++) {
            if (*q != '\\')
                continue;
            if (q + 1 >= end || (q[1] != '\\' && q[1] != 'n'))
                return failf(err, errlen, line, "bad escape in HELP");
            q++;
        }
        return 0;
    }
    if (f->has_type)
        return failf(err, errlen, line, "second TYPE for %s", name);
    f->has_type = 1;
    if (p >= end || *p != ' ')
        return failf(err, errlen, line, "want a type after the name");
    p++;
    size_t n = (size_t)(end - p);
    static const char *const types[] = {"counter", "gauge", "histogram", "summary", "untyped"};
    for (size_t i = 0; i < 5; i++) {
        if (n == strlen(types[i]) && !memcmp(p, types[i], n)) {
            strcpy(f->type, types[i]);
            return 0;
        }
    }
    return failf(err, errlen, line, "unknown type '%.*s'", (int)n, p);
}

struct bucket {
    double le, count;
};

static int le_cmp(const void *a, const void *b)
{
    double x = ((const struct bucket *)a)->le, y = ((const struct bucket *)b)->le;
    return x < y ? -1 : x > y;
}

/* Every histogram series: an +Inf bucket equal to _count, buckets
 * cumulative. */
static int check_histograms(struct ts_prom *pr, char *err, size_t errlen)
{
    for (size_t i = 0; i < pr->nf; i++) {
        const struct family *f = &pr->f[i];
        if (strcmp(f->type, "histogram") != 0)
            continue;
        char bucket[NAME_MAX_LEN + 8], count[NAME_MAX_LEN + 8];
        snprintf(bucket, sizeof(bucket), "%s_bucket", f->name);
        snprintf(count, sizeof(count), "%s_count", f->name);
        for (size_t j = 0; j < pr->n; j++) {
            const struct sample *c = &pr->s[j];
            if (strcmp(c->name, count) != 0)
                continue;
            struct bucket b[128];
            size_t nb = 0;
            int inf = 0;
            for (size_t k = 0; k < pr->n && nb < 128; k++) {
                const struct sample *s = &pr->s[k];
                if (strcmp(s->name, bucket) != 0 || strcmp(s->rest, c->rest) != 0)
                    continue;
                if (parse_value(s->le, &b[nb].le) != 0 || isnan(b[nb].le))
                    return failf(err, errlen, 0, "%s: bad le '%s'", bucket, s->le);
                b[nb].count = s->value;
                if (isinf(b[nb].le) && b[nb].le > 0) {
                    inf = 1;
                    if (s->value != c->value)
                        return failf(err, errlen, 0, "%s{%s}: +Inf bucket %g != count %g", f->name,
                                     c->rest, s->value, c->value);
                }
                nb++;
            }
            if (!inf)
                return failf(err, errlen, 0, "%s{%s}: no le=\"+Inf\" bucket", f->name, c->rest);
            qsort(b, nb, sizeof(b[0]), le_cmp);
            for (size_t k = 1; k < nb; k++) {
                if (b[k].le == b[k - 1].le)
                    return failf(err, errlen, 0, "%s{%s}: le %g twice", f->name, c->rest, b[k].le);
                if (b[k].count < b[k - 1].count)
                    return failf(err, errlen, 0, "%s{%s}: bucket le=%g decreases", f->name, c->rest,
                                 b[k].le);
            }
        }
    }
    return 0;
}

int ts_prom_parse(const char *text, size_t len, struct ts_prom **out, char *err, size_t errlen)
{
    *out = NULL;
    struct ts_prom *pr = calloc(1, sizeof(*pr));
    if (!pr)
        return failf(err, errlen, 0, "out of memory");
    if (len && text[len - 1] != '\n') {
        ts_prom_free(pr);
        return failf(err, errlen, 0, "the text does not end with a line feed");
    }
    unsigned line = 0;
    for (const char *p = text, *end = text + len; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        line++;
        int rc = 0;
        if (memchr(p, '\r', (size_t)(nl - p)) || memchr(p, '\0', (size_t)(nl - p)))
            rc = failf(err, errlen, line, "CR or NUL in a line");
        else if (nl == p)
            rc = 0;
        else if (*p == '#')
            rc = parse_comment(pr, p, nl, line, err, errlen);
        else
            rc = parse_sample(pr, p, nl, line, err, errlen);
        if (rc != 0) {
            ts_prom_free(pr);
            return -1;
        }
        p = nl + 1;
    }
    if (check_histograms(pr, err, errlen) != 0) {
        ts_prom_free(pr);
        return -1;
    }
    *out = pr;
    return 0;
}

int ts_prom_get(const struct ts_prom *p, const char *name, const char *labels, double *value)
{
    for (size_t i = 0; i < p->n; i++) {
        if (!strcmp(p->s[i].name, name) && !strcmp(p->s[i].labels, labels ? labels : "")) {
            *value = p->s[i].value;
            return 1;
        }
    }
    return 0;
}

const char *ts_prom_type(const struct ts_prom *p, const char *family)
{
    for (size_t i = 0; i < p->nf; i++)
        if (!strcmp(p->f[i].name, family))
            return p->f[i].has_type ? p->f[i].type : NULL;
    return NULL;
}
