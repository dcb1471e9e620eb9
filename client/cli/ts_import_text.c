/*
 * ts_import_text: see ts_import_text.h. Everything works in place: the
 * output of each step is never longer than its input (a character
 * reference is longer than the UTF-8 it stands for; &nbsp; is 6 bytes for
 * 2), so the importer's buffers need no second allocation.
 */
#include "ts_import_text.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

size_t ts_import_put_utf8(char *out, unsigned long cp)
{
    if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        cp = 0xFFFD;
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* A character reference at s ('&'): its length in *used and the text
 * into out; 0 when it is none we know (the '&' is then kept). */
static size_t reference(const char *s, size_t *used, char *out)
{
    static const struct {
        const char *name;
        const char *text;
    } named[] = {{"amp;", "&"},   {"lt;", "<"},   {"gt;", ">"},
                 {"quot;", "\""}, {"apos;", "'"}, {"nbsp;", "\xC2\xA0"}};
    for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++) {
        size_t n = strlen(named[i].name);
        if (strncmp(s + 1, named[i].name, n) == 0) {
            *used = n + 1;
            size_t m = strlen(named[i].text);
            memcpy(out, named[i].text, m);
            return m;
        }
    }
    if (s[1] != '#')
        return 0;
    const char *p = s + 2;
    int hex = *p == 'x' || *p == 'X';
    if (hex)
        p++;
    char *end;
    unsigned long cp = strtoul(p, &end, hex ? 16 : 10);
    if (end == p || *end != ';' || end - p > 8)
        return 0;
    *used = (size_t)(end + 1 - s);
    return ts_import_put_utf8(out, cp);
}

/* The value of attribute name in the tag text [p, end), into out. */
static int tag_attr(const char *p, const char *end, const char *name, char *out, size_t size)
{
    size_t n = strlen(name);
    for (; p + n < end; p++) {
        if (strncasecmp(p, name, n) != 0 || p[n] != '=')
            continue;
        const char *v = p + n + 1;
        char q = (*v == '"' || *v == '\'') ? *v++ : ' ';
        size_t k = 0;
        while (v < end && *v != q && *v != '>' && k + 1 < size)
            out[k++] = *v++;
        out[k] = '\0';
        return 1;
    }
    return 0;
}

char *ts_import_html_to_text(char *s)
{
    char *w = s, href[2048] = "";
    char *link_start = NULL;
    for (char *r = s; *r;) {
        /* text up to the next tag, reference or control byte, as one run
         * (most of a comment) */
        size_t run = 0;
        while ((unsigned char)r[run] >= 0x20 && r[run] != '<' && r[run] != '&')
            run++;
        if (run) {
            if (w != r)
                memmove(w, r, run);
            w += run;
            r += run;
            continue;
        }
        if (*r == '<') {
            char *end = strchr(r, '>');
            if (!end) { /* a lone '<' is text */
                *w++ = *r++;
                continue;
            }
            const char *name = r + 1;
            int closing = *name == '/';
            if (closing)
                name++;
            size_t nl = strcspn(name, " \t\r\n/>");
            if ((nl == 2 && strncasecmp(name, "br", 2) == 0) ||
                (closing && nl == 1 && strncasecmp(name, "p", 1) == 0))
                *w++ = '\n';
            if (closing && nl == 1 && strncasecmp(name, "p", 1) == 0)
                *w++ = '\n';
            if (!closing && nl == 1 && strncasecmp(name, "a", 1) == 0) {
                if (!tag_attr(r, end, "href", href, sizeof(href)))
                    href[0] = '\0';
                link_start = w;
            }
            r = end + 1;
            if (closing && nl == 1 && strncasecmp(name, "a", 1) == 0 && link_start && href[0]) {
                /* "text (href)" unless the text is the address itself; the
                 * tag text it replaces is longer, so it fits in place */
                size_t tl = (size_t)(w - link_start), hl = strlen(href);
                if ((tl != hl || memcmp(link_start, href, hl) != 0) && (size_t)(r - w) >= hl + 3) {
                    *w++ = ' ';
                    *w++ = '(';
                    memcpy(w, href, hl);
                    w += hl;
                    *w++ = ')';
                }
                link_start = NULL;
            }
            continue;
        }
        if (*r == '&') {
            char tmp[8];
            size_t used = 0, n = reference(r, &used, tmp);
            if (n && n <= used) {
                memcpy(w, tmp, n);
                w += n;
                r += used;
                continue;
            }
        }
        unsigned char c = (unsigned char)*r;
        if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') {
            r++;
            continue;
        }
        *w++ = *r++;
    }
    *w = '\0';
    /* trim; then at most two line breaks in a row (paragraphs) */
    char *a = s;
    while (*a && isspace((unsigned char)*a))
        a++;
    size_t n = strlen(a);
    while (n && isspace((unsigned char)a[n - 1]))
        n--;
    memmove(s, a, n);
    s[n] = '\0';
    char *o = s;
    int breaks = 0;
    for (char *r = s; *r; r++) {
        if (*r == '\n') {
            if (++breaks > 2)
                continue;
        } else if (*r != '\r' && *r != ' ' && *r != '\t') {
            breaks = 0;
        }
        *o++ = *r;
    }
    *o = '\0';
    return s;
}

char *ts_import_line(char *s)
{
    if (!*s)
        return s; /* may be a literal "" */
    for (unsigned char *p = (unsigned char *)s; *p; p++) {
        if (*p < 0x20 || *p == 0x7F)
            *p = ' ';
        else if (*p == 0xC2 && p[1] >= 0x80 && p[1] <= 0x9F) /* C1 controls */
            p[0] = p[1] = ' ';
    }
    char *a = s;
    while (*a == ' ')
        a++;
    size_t n = strlen(a);
    while (n && a[n - 1] == ' ')
        n--;
    memmove(s, a, n);
    s[n] = '\0';
    return s;
}

/* n decimal digits at *p into *out; *p moves past them. 0 when not digits. */
static int digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return 0;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return 1;
}

static int expect(const char **p, char c)
{
    if (**p != c)
        return 0;
    (*p)++;
    return 1;
}

int64_t ts_import_parse_date(const char *s)
{
    int Y, M, D, h = 0, m = 0, sec = 0, ms = 0, off = 0;
    const char *p = s;
    if (!p || !digits(&p, 4, &Y) || !expect(&p, '-') || !digits(&p, 2, &M) || !expect(&p, '-') ||
        !digits(&p, 2, &D) || Y < 1970 || M < 1 || M > 12 || D < 1 || D > 31)
        return 0;
    if (*p == ' ' || *p == 'T') {
        p++;
        if (!digits(&p, 2, &h) || !expect(&p, ':') || !digits(&p, 2, &m) || !expect(&p, ':') ||
            !digits(&p, 2, &sec))
            return 0;
        if (*p == '.') {
            int n = 0;
            for (p++; isdigit((unsigned char)*p); p++, n++)
                if (n < 3)
                    ms = ms * 10 + (*p - '0');
            for (; n < 3; n++)
                ms *= 10;
        }
        int oh = 0, om = 0;
        char sign = *p;
        if (sign == '+' || sign == '-') {
            p++;
            if (!digits(&p, 2, &oh))
                return 0;
            if (*p == ':')
                p++;
            if (!digits(&p, 2, &om))
                om = 0;
            off = (sign == '-' ? -1 : 1) * (oh * 60 + om);
        }
    }
    struct tm tm = {.tm_year = Y - 1900,
                    .tm_mon = M - 1,
                    .tm_mday = D,
                    .tm_hour = h,
                    .tm_min = m,
                    .tm_sec = sec};
    time_t t = timegm(&tm);
    if (t <= 0)
        return 0;
    return ((int64_t)t - (int64_t)off * 60) * 1000 + ms;
}

void ts_import_url_path(const char *url, char *out, size_t size)
{
    out[0] = '\0';
    if (!url || !size)
        return;
    const char *p = strstr(url, "://");
    p = p ? strchr(p + 3, '/') : (url[0] == '/' ? url : NULL);
    if (!p)
        p = "/";
    size_t n = strcspn(p, "#");
    if (n >= size)
        n = size - 1;
    memcpy(out, p, n);
    out[n] = '\0';
}

int ts_import_clip(char *s, size_t max_bytes, size_t max_cp)
{
    /* Nearly every field fits: its length alone says so (no more code
     * points than bytes), without walking it. */
    size_t bytes = strlen(s);
    if ((!max_bytes || bytes <= max_bytes) && (!max_cp || bytes <= max_cp))
        return 0;
    size_t i = 0, cp = 0;
    while (s[i]) {
        size_t len = 1;
        unsigned char c = (unsigned char)s[i];
        if (c >= 0xF0)
            len = 4;
        else if (c >= 0xE0)
            len = 3;
        else if (c >= 0xC0)
            len = 2;
        if ((max_bytes && i + len > max_bytes) || (max_cp && cp + 1 > max_cp)) {
            s[i] = '\0';
            return 1;
        }
        i += len;
        cp++;
    }
    return 0;
}
