/*
 * ts_mirror_render: JSON and HTML of one thread, written atomically into the
 * mirror directory. See ts_mirror_render.h for the file names and formats.
 *
 * The tree walk uses parent links instead of recursion: descending follows
 * first_child, a leaf moves to its next sibling or climbs until an ancestor
 * has one. Memory is a few arrays of n entries; no C stack per level, so a
 * reply chain 1,000 (or 100,000) deep renders as easily as a flat thread.
 *
 * Text is copied byte for byte except for the escapes the format needs; UTF-8
 * is never normalised (combining marks and emoji pass through untouched), and
 * only bytes that are not well-formed UTF-8 are replaced, so a stray byte in
 * the database cannot make the whole page invalid.
 */
#include "ts_mirror_render.h"

#include "ts_array.h"
#include "ts_buf.h"

#include "ts_file.h"

#include "ts_digest.h"
#include "ts_err.h"
#include "ts_log.h"
#include "ts_valid.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* ---- text escaping ---- */

enum esc { ESC_JSON, ESC_HTML };

static void add_ascii(struct ts_buf *b, unsigned char ch, enum esc mode)
{
    char tmp[8];
    if (mode == ESC_HTML) {
        switch (ch) {
        case '&':
            ts_buf_puts(b, "&amp;");
            return;
        case '<':
            ts_buf_puts(b, "&lt;");
            return;
        case '>':
            ts_buf_puts(b, "&gt;");
            return;
        case '"':
            ts_buf_puts(b, "&quot;");
            return;
        case '\'':
            ts_buf_puts(b, "&#39;");
            return;
        case '\t':
        case '\n':
        case '\r':
            break;
        default:
            if (ch < 0x20) { /* not allowed in an HTML document */
                ts_buf_puts(b, "\xEF\xBF\xBD");
                return;
            }
        }
        tmp[0] = (char)ch;
        ts_buf_add(b, tmp, 1);
        return;
    }
    switch (ch) {
    case '"':
        ts_buf_puts(b, "\\\"");
        return;
    case '\\':
        ts_buf_puts(b, "\\\\");
        return;
    case '\n':
        ts_buf_puts(b, "\\n");
        return;
    case '\r':
        ts_buf_puts(b, "\\r");
        return;
    case '\t':
        ts_buf_puts(b, "\\t");
        return;
    case '<':
    case '>':
    case '&':
        break;
    default:
        if (ch >= 0x20) {
            tmp[0] = (char)ch;
            ts_buf_add(b, tmp, 1);
            return;
        }
    }
    snprintf(tmp, sizeof(tmp), "\\u%04x", ch);
    ts_buf_puts(b, tmp);
}

static size_t utf8_seq_len(unsigned char lead)
{
    if (lead >= 0xC2 && lead <= 0xDF)
        return 2;
    if (lead >= 0xE0 && lead <= 0xEF)
        return 3;
    if (lead >= 0xF0 && lead <= 0xF4)
        return 4;
    return 0;
}

/* 1 for a byte copied as it is, per mode: printable ASCII except what the
 * format escapes (JSON: " \\ and, for inlining in <script>, < > &; HTML:
 * < > & " '). Control bytes and bytes >= 0x80 are 0: add_text looks at
 * those itself. One lookup per byte instead of a chain of comparisons:
 * a first sync escapes every byte of every body twice. */
#define ROW_PLAIN 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1
static const unsigned char plain_byte[2][256] = {
    [ESC_JSON] =
        {
            [0x20] = 1, 1,         0, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x20: " & */
            1,          1,         1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1, /* 0x30: < > */
            ROW_PLAIN,                                                       /* 0x40 */
            1,          1,         1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, /* 0x50: backslash */
            ROW_PLAIN,  ROW_PLAIN,                                           /* 0x60, 0x70 */
        },
    [ESC_HTML] =
        {
            [0x20] = 1, 1,         0,         1,         1, 1, 0, 0,
            1,          1,         1,         1,         1, 1, 1, 1, /* 0x20: " & ' */
            1,          1,         1,         1,         1, 1, 1, 1,
            1,          1,         1,         1,         0, 1, 0, 1, /* 0x30: < > */
            ROW_PLAIN,  ROW_PLAIN, ROW_PLAIN, ROW_PLAIN,             /* 0x40 - 0x70 */
        },
};
#undef ROW_PLAIN

/* How many of p's first n bytes, whole 16-byte blocks at a time, are
 * plain printable ASCII for mode (the table's 1s below 0x80): up to the
 * first other byte, or the last whole block. Bodies are mostly that, and
 * a first sync escapes each twice: byte by byte through the table was a
 * third of a render's instructions. add_text looks at the rest. */
static size_t plain_run(const char *p, size_t n, enum esc mode)
{
    size_t j = 0;
#ifdef __SSE2__
    const __m128i ctl = _mm_set1_epi8(0x20); /* below, as signed: controls and >= 0x80 */
    const __m128i quote = _mm_set1_epi8('"'), amp = _mm_set1_epi8('&');
    const __m128i lt = _mm_set1_epi8('<'), gt = _mm_set1_epi8('>');
    const __m128i own = _mm_set1_epi8(mode == ESC_JSON ? '\\' : '\'');
    for (; j + 16 <= n; j += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + j));
        __m128i odd = _mm_or_si128(_mm_cmplt_epi8(v, ctl), _mm_cmpeq_epi8(v, own));
        odd = _mm_or_si128(odd, _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, amp)));
        odd = _mm_or_si128(odd, _mm_or_si128(_mm_cmpeq_epi8(v, lt), _mm_cmpeq_epi8(v, gt)));
        unsigned mask = (unsigned)_mm_movemask_epi8(odd);
        if (mask)
            return j + (size_t)__builtin_ctz(mask);
    }
#else
    (void)p;
    (void)n;
    (void)mode;
#endif
    return j;
}

static void add_text(struct ts_buf *b, const char *s, enum esc mode)
{
    if (!s)
        return;
    const unsigned char *plain = plain_byte[mode];
    size_t len = strlen(s);
    size_t i = 0;
    while (i < len) {
        /* The longest run that needs no escape (well-formed UTF-8
         * included) goes out in one copy. */
        size_t j = i;
        for (;;) {
            j += plain_run(s + j, len - j, mode);
            unsigned char c = (unsigned char)s[j];
            if (plain[c]) {
                j++;
                continue;
            }
            size_t k = c >= 0x80 ? utf8_seq_len(c) : 0;
            if (k && j + k <= len && ts_valid_utf8(s + j, k)) {
                j += k;
                continue;
            }
            break; /* includes the NUL at len */
        }
        if (j > i) {
            ts_buf_add(b, s + i, j - i);
            i = j;
            continue;
        }
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x80)
            add_ascii(b, ch, mode);
        else
            ts_buf_puts(b, "\xEF\xBF\xBD");
        i++;
    }
}

/* Decimal digits of v, without printf (a first sync writes millions). */
static void add_u64(struct ts_buf *b, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[sizeof(tmp) - ++n] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    ts_buf_add(b, tmp + sizeof(tmp) - n, n);
}

static void add_i64(struct ts_buf *b, int64_t v)
{
    if (v < 0) {
        ts_buf_add(b, "-", 1);
        add_u64(b, 0 - (uint64_t)v);
    } else {
        add_u64(b, (uint64_t)v);
    }
}

static void json_str(struct ts_buf *b, const char *s)
{
    ts_buf_puts(b, "\"");
    add_text(b, s, ESC_JSON);
    ts_buf_puts(b, "\"");
}

/* ---- shared helpers ---- */

static const char *status_name(int status)
{
    const char *n = ts_digest_status_name(status);
    return n ? n : "UNSPECIFIED";
}

static int cmp_by_id(const void *a, const void *b)
{
    const Threadsync__Comment *x = *(const Threadsync__Comment *const *)a;
    const Threadsync__Comment *y = *(const Threadsync__Comment *const *)b;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* A copy of the pointer array sorted by id (NULL entries dropped). */
static const Threadsync__Comment **sorted_copy(const Threadsync__Comment *const *comments, size_t n,
                                               size_t *out_n)
{
    const Threadsync__Comment **v = malloc((n ? n : 1) * sizeof(*v));
    if (!v)
        return NULL;
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (comments[i])
            v[m++] = comments[i];
    /* Threads read from the database come in id order already. */
    size_t k = 1;
    while (k < m && v[k - 1]->id <= v[k]->id)
        k++;
    if (k < m)
        qsort(v, m, sizeof(*v), cmp_by_id);
    *out_n = m;
    return v;
}

/* ---- JSON ---- */

/* The JSON of t appended to b. TS_OK or TS_E_NOMEM (b failed, or no
 * memory for the sort). */
static int build_json(struct ts_buf *b, const Threadsync__Thread *t,
                      const Threadsync__Comment *const *comments, size_t n)
{
    size_t m;
    const Threadsync__Comment **v = sorted_copy(comments, n, &m);
    if (!v)
        return TS_E_NOMEM;
    ts_buf_printf(b, "{\"thread\":{\"id\":%" PRIu64 ",\"key\":", t->id);
    json_str(b, t->key);
    ts_buf_puts(b, ",\"title\":");
    json_str(b, t->title);
    ts_buf_puts(b, ",\"url\":");
    json_str(b, t->url);
    ts_buf_printf(b,
                  ",\"created_at_ms\":%" PRId64 ",\"locked\":%s,\"comment_count\":%" PRIu32
                  ",\"version\":%" PRIu64 "},\n\"comments\":[",
                  t->created_at_ms, t->locked ? "true" : "false", t->comment_count, t->version);
    uint64_t visible = 0;
    for (size_t i = 0; i < m; i++) {
        const Threadsync__Comment *c = v[i];
        int vis = c->status == THREADSYNC__STATUS__VISIBLE;
        visible += (uint64_t)vis;
        ts_buf_puts(b, i ? ",\n{\"id\":" : "\n{\"id\":");
        add_u64(b, c->id);
        ts_buf_puts(b, ",\"parent_id\":");
        add_u64(b, c->parent_id);
        ts_buf_puts(b, ",\"author_name\":");
        json_str(b, vis ? c->author_name : "");
        ts_buf_puts(b, ",\"body\":");
        json_str(b, vis ? c->body : "");
        ts_buf_puts(b, ",\"created_at_ms\":");
        add_i64(b, c->created_at_ms);
        ts_buf_puts(b, ",\"edited_at_ms\":");
        add_i64(b, c->edited_at_ms);
        ts_buf_puts(b, ",\"status\":\"");
        ts_buf_puts(b, status_name((int)c->status));
        ts_buf_puts(b, "\",\"version\":");
        add_u64(b, c->version);
        ts_buf_puts(b, "}");
    }
    ts_buf_printf(b, "],\n\"count\":%" PRIu64 "}\n", visible);
    free(v);
    return b->failed ? TS_E_NOMEM : TS_OK;
}

typedef int (*build_fn)(struct ts_buf *b, const Threadsync__Thread *t,
                        const Threadsync__Comment *const *comments, size_t n);

/* build's text as a new buffer (the public calls' contract). */
static int build_alone(build_fn build, const Threadsync__Thread *t,
                       const Threadsync__Comment *const *comments, size_t n, char **out,
                       size_t *len)
{
    struct ts_buf b = TS_BUF_INIT;
    int err = build(&b, t, comments, n);
    int fin = ts_buf_finish(&b, out, len);
    if (err != TS_OK) {
        free(*out);
        *out = NULL;
    }
    return err != TS_OK ? err : fin;
}

int ts_mirror_render_json(const Threadsync__Thread *t, const Threadsync__Comment *const *comments,
                          size_t n, char **out, size_t *len)
{
    return build_alone(build_json, t, comments, n, out, len);
}

/* ---- HTML ---- */

static const char page_css[] =
    "body{font-family:system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif;line-height:1.45;"
    "max-width:48rem;margin:1rem auto;padding:0 1rem;color:#1a1a1a;background:#fff}"
    "h1{font-size:1.4rem;margin:.5rem 0}"
    "h1 a{color:inherit}"
    ".ts-count{color:#555;margin:.25rem 0 1rem}"
    "ol{list-style:none;margin:0;padding:0}"
    ".ts-replies{padding-left:1.1rem;margin-left:.3rem;border-left:2px solid #e4e4e4}"
    ".ts-deep{padding-left:.3rem}"
    ".ts-comment{margin:.7rem 0 0}"
    ".ts-comment header{font-size:.9rem}"
    ".ts-author{font-weight:600}"
    "time{color:#666}"
    ".ts-body{white-space:pre-wrap;overflow-wrap:anywhere;margin:.15rem 0 0}"
    ".ts-placeholder{color:#888;font-style:italic;margin:.15rem 0 0}";

/* From this depth on, replies are indented only a little: the structure is
 * kept, the page just does not drift off the right edge. */
#define DEEP_LEVEL 8

/* Writes v as exactly w digits (v < 10^w). */
static void put_digits(char *p, unsigned v, int w)
{
    while (w-- > 0) {
        p[w] = (char)('0' + v % 10);
        v /= 10;
    }
}

/* <time datetime="YYYY-MM-DDTHH:MM:SS.mmmZ">YYYY-MM-DD HH:MM UTC</time>.
 * Years 1970 to 9999 (every real comment) are computed here, digit by
 * digit; other values go through gmtime_r and printf, as all did once
 * (gmtime_r takes glibc's time zone lock, which two render threads would
 * fight over). */
static void add_time(struct ts_buf *b, int64_t ms)
{
    int64_t s = ms / 1000, r = ms % 1000;
    if (r < 0) {
        r += 1000;
        s--;
    }
    if (ms < 0 || ms >= INT64_C(253402300800000)) {
        time_t tt = (time_t)s;
        struct tm tm;
        if (!gmtime_r(&tt, &tm)) {
            tt = 0;
            r = 0;
            gmtime_r(&tt, &tm);
        }
        ts_buf_printf(b, "<time datetime=\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\">",
                      tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                      tm.tm_sec, (int)r);
        ts_buf_printf(b, "%04d-%02d-%02d %02d:%02d UTC</time>", tm.tm_year + 1900, tm.tm_mon + 1,
                      tm.tm_mday, tm.tm_hour, tm.tm_min);
        return;
    }
    /* Civil date from days since 1970-01-01 (H. Hinnant's algorithm, for
     * non-negative days). */
    unsigned secs = (unsigned)(s % 86400);
    uint64_t z = (uint64_t)(s / 86400) + 719468;
    unsigned era = (unsigned)(z / 146097);
    unsigned doe = (unsigned)(z - (uint64_t)era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    unsigned day = doy - (153 * mp + 2) / 5 + 1;
    unsigned mon = mp < 10 ? mp + 3 : mp - 9;
    unsigned year = yoe + era * 400 + (mon <= 2);
    static const char tmpl[] = "<time datetime=\"YYYY-MM-DDTHH:MM:SS.mmmZ\">"
                               "YYYY-MM-DD HH:MM UTC</time>";
    char *p = ts_buf_space(b, sizeof(tmpl) - 1);
    if (!p)
        return;
    memcpy(p, tmpl, sizeof(tmpl) - 1);
    for (int k = 0; k < 2; k++) {
        char *d = p + (k ? 42 : 16); /* offsets of the two YYYY in tmpl */
        put_digits(d, year, 4);
        put_digits(d + 5, mon, 2);
        put_digits(d + 8, day, 2);
        put_digits(d + 11, secs / 3600, 2);
        put_digits(d + 14, secs / 60 % 60, 2);
    }
    put_digits(p + 33, secs % 60, 2); /* SS, then mmm */
    put_digits(p + 36, (unsigned)r, 3);
    ts_buf_commit(b, sizeof(tmpl) - 1);
}

static int is_http_url(const char *u)
{
    return u && (strncasecmp(u, "http://", 7) == 0 || strncasecmp(u, "https://", 8) == 0);
}

/* Opens <li> for c and writes its content; the caller closes it. */
static void add_comment(struct ts_buf *b, const Threadsync__Comment *c,
                        const struct ts_mirror_render_hooks *h)
{
    const Threadsync__Comment *own = NULL;
    if (c->status != THREADSYNC__STATUS__VISIBLE && h && h->own)
        own = h->own(h->arg, c);
    if (own)
        c = own;
    if (c->status == THREADSYNC__STATUS__VISIBLE || own) {
        ts_buf_puts(b, "<li class=\"ts-comment\" id=\"c");
        add_u64(b, c->id);
        ts_buf_puts(b, "\"><article><header><span class=\"ts-author\">");
        add_text(b, c->author_name, ESC_HTML);
        ts_buf_puts(b, "</span> ");
        add_time(b, c->created_at_ms);
        if (c->edited_at_ms) {
            ts_buf_puts(b, " <span class=\"ts-edited\">(edited ");
            add_time(b, c->edited_at_ms);
            ts_buf_puts(b, ")</span>");
        }
        if (own)
            ts_buf_puts(b, " <span class=\"ts-pending\">awaiting moderation</span>");
        ts_buf_puts(b, "</header><div class=\"ts-body\">");
        add_text(b, c->body, ESC_HTML);
        ts_buf_puts(b, "</div></article>");
        if (h && h->after)
            h->after(h->arg, b, c);
    } else if (c->status == THREADSYNC__STATUS__DELETED) {
        ts_buf_printf(b,
                      "<li class=\"ts-comment ts-deleted\" id=\"c%" PRIu64
                      "\"><p class=\"ts-placeholder\">[deleted]</p>",
                      c->id);
    } else {
        ts_buf_printf(b,
                      "<li class=\"ts-comment ts-removed\" id=\"c%" PRIu64
                      "\"><p class=\"ts-placeholder\">[removed]</p>",
                      c->id);
    }
}

struct tree {
    size_t n;
    ssize_t *parent, *first_child, *next_sib;
    ssize_t first_root;
    unsigned char *shown;
    uint64_t visible;
    const struct ts_mirror_render_hooks *hooks; /* may be NULL */
};

static void tree_free(struct tree *tr)
{
    free(tr->parent);
    free(tr->first_child);
    free(tr->next_sib);
    free(tr->shown);
}

/* v is sorted by id. Links every shown comment under its parent. */
static int tree_build(struct tree *tr, const Threadsync__Comment **v, size_t n,
                      const struct ts_mirror_render_hooks *hooks)
{
    memset(tr, 0, sizeof(*tr));
    tr->hooks = hooks;
    tr->n = n;
    size_t sz = (n ? n : 1) * sizeof(ssize_t);
    tr->parent = malloc(sz);
    tr->first_child = malloc(sz);
    tr->next_sib = malloc(sz);
    tr->shown = calloc(n ? n : 1, 1);
    ssize_t *last_child = malloc(sz);
    if (!tr->parent || !tr->first_child || !tr->next_sib || !tr->shown || !last_child) {
        free(last_child);
        tree_free(tr);
        return TS_E_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        tr->parent[i] = -1;
        tr->first_child[i] = tr->next_sib[i] = last_child[i] = -1;
        uint64_t pid = v[i]->parent_id;
        if (pid == 0)
            continue;
        /* Parents have smaller ids (ids are log positions); searching only
         * below i also rules out cycles in a corrupt input. */
        size_t lo = 0, hi = i;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (v[mid]->id < pid)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo < i && v[lo]->id == pid)
            tr->parent[i] = (ssize_t)lo;
    }
    /* Children come after parents, so one backward pass settles "something
     * beneath is shown" before each node is looked at. */
    unsigned char *below = calloc(n ? n : 1, 1);
    if (!below) {
        free(last_child);
        tree_free(tr);
        return TS_E_NOMEM;
    }
    for (size_t k = n; k-- > 0;) {
        int st = v[k]->status;
        tr->visible += st == THREADSYNC__STATUS__VISIBLE;
        /* A removed comment (deleted, hidden, pending) keeps a placeholder
         * only to hold its shown replies' place; a removed leaf is gone. */
        tr->shown[k] = st == THREADSYNC__STATUS__VISIBLE || below[k] ||
                       (tr->hooks && tr->hooks->own && tr->hooks->own(tr->hooks->arg, v[k]));
        if (tr->shown[k] && tr->parent[k] >= 0)
            below[tr->parent[k]] = 1;
    }
    free(below);
    ssize_t last_root = -1;
    tr->first_root = -1;
    for (size_t i = 0; i < n; i++) {
        if (!tr->shown[i])
            continue;
        ssize_t p = tr->parent[i];
        ssize_t *first = p >= 0 ? &tr->first_child[p] : &tr->first_root;
        ssize_t *last = p >= 0 ? &last_child[p] : &last_root;
        if (*last >= 0)
            tr->next_sib[*last] = (ssize_t)i;
        else
            *first = (ssize_t)i;
        *last = (ssize_t)i;
    }
    free(last_child);
    return TS_OK;
}

static void add_tree(struct ts_buf *b, const struct tree *tr, const Threadsync__Comment **v)
{
    ssize_t cur = tr->first_root;
    size_t depth = 0;
    ts_buf_puts(b, "<ol class=\"ts-comments\">\n");
    while (cur >= 0 && !b->failed) {
        add_comment(b, v[cur], tr->hooks);
        if (tr->first_child[cur] >= 0) {
            depth++;
            ts_buf_puts(b, depth >= DEEP_LEVEL ? "\n<ol class=\"ts-replies ts-deep\">\n"
                                               : "\n<ol class=\"ts-replies\">\n");
            cur = tr->first_child[cur];
            continue;
        }
        ts_buf_puts(b, "</li>\n");
        while (cur >= 0 && tr->next_sib[cur] < 0) {
            cur = tr->parent[cur];
            if (cur >= 0) {
                depth--;
                ts_buf_puts(b, "</ol></li>\n");
            }
        }
        if (cur >= 0)
            cur = tr->next_sib[cur];
    }
    ts_buf_puts(b, "</ol>\n");
}

/* The HTML page of t appended to b, as build_json. */
static int build_html(struct ts_buf *b, const Threadsync__Thread *t,
                      const Threadsync__Comment *const *comments, size_t n)
{
    size_t m;
    const Threadsync__Comment **v = sorted_copy(comments, n, &m);
    if (!v)
        return TS_E_NOMEM;
    struct tree tr;
    if (tree_build(&tr, v, m, NULL) != TS_OK) {
        free(v);
        return TS_E_NOMEM;
    }
    const char *title = t->title && t->title[0] ? t->title : t->key;
    ts_buf_puts(b, "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n"
                   "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
                   "<title>");
    add_text(b, title, ESC_HTML);
    ts_buf_puts(b, "</title>\n<style>");
    ts_buf_puts(b, page_css);
    ts_buf_printf(b,
                  "</style>\n</head>\n<body>\n<main class=\"ts-thread\" id=\"t%" PRIu64 "\">\n<h1>",
                  t->id);
    if (is_http_url(t->url)) {
        ts_buf_puts(b, "<a href=\"");
        add_text(b, t->url, ESC_HTML);
        ts_buf_puts(b, "\">");
        add_text(b, title, ESC_HTML);
        ts_buf_puts(b, "</a>");
    } else {
        add_text(b, title, ESC_HTML);
    }
    ts_buf_printf(b, "</h1>\n<p class=\"ts-count\">%" PRIu64 " comment%s</p>\n", tr.visible,
                  tr.visible == 1 ? "" : "s");
    if (tr.first_root >= 0)
        add_tree(b, &tr, v);
    ts_buf_puts(b, "</main>\n</body>\n</html>\n");
    tree_free(&tr);
    free(v);
    return b->failed ? TS_E_NOMEM : TS_OK;
}

int ts_mirror_render_html(const Threadsync__Thread *t, const Threadsync__Comment *const *comments,
                          size_t n, char **out, size_t *len)
{
    return build_alone(build_html, t, comments, n, out, len);
}

int ts_mirror_render_tree(struct ts_buf *b, const Threadsync__Comment *const *comments, size_t n,
                          const struct ts_mirror_render_hooks *hooks, uint64_t *visible)
{
    size_t m;
    const Threadsync__Comment **v = sorted_copy(comments, n, &m);
    if (!v)
        return TS_E_NOMEM;
    struct tree tr;
    if (tree_build(&tr, v, m, hooks) != TS_OK) {
        free(v);
        return TS_E_NOMEM;
    }
    if (tr.first_root >= 0)
        add_tree(b, &tr, v);
    else
        ts_buf_puts(b, "<ol class=\"ts-comments\">\n</ol>\n");
    *visible = tr.visible;
    tree_free(&tr);
    free(v);
    return b->failed ? TS_E_NOMEM : TS_OK;
}

void ts_mirror_render_text(struct ts_buf *b, const char *s, int html)
{
    add_text(b, s, html ? ESC_HTML : ESC_JSON);
}

void ts_mirror_render_time(struct ts_buf *b, int64_t ms)
{
    add_time(b, ms);
}

/* ---- file names ---- */

static int keep_byte(unsigned char c, size_t pos)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || (c == '.' && pos > 0);
}

int ts_mirror_render_file_name(const char *key, char out[TS_MIRROR_NAME_SIZE])
{
    static const char hex[] = "0123456789ABCDEF";
    static const char lower[] = "0123456789abcdef";
    out[0] = '\0';
    size_t klen = key ? strlen(key) : 0;
    if (klen == 0)
        return TS_E_INVALID_ARGUMENT;
    size_t enc = 0;
    for (size_t i = 0; i < klen; i++)
        enc += keep_byte((unsigned char)key[i], i) ? 1 : 3;
    size_t o = 0;
    for (size_t i = 0; i < klen; i++) {
        unsigned char c = (unsigned char)key[i];
        size_t w = keep_byte(c, i) ? 1 : 3;
        if (o + w > TS_MIRROR_NAME_PLAIN_MAX)
            break;
        if (w == 1) {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 0x0f];
        }
    }
    if (enc > TS_MIRROR_NAME_PLAIN_MAX) {
        unsigned char md[32];
        unsigned int mdlen = 0;
        if (EVP_Digest(key, klen, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
            return TS_E_INTERNAL;
        out[o++] = '~';
        for (size_t i = 0; i < 32; i++) {
            out[o++] = lower[md[i] >> 4];
            out[o++] = lower[md[i] & 0x0f];
        }
    }
    out[o] = '\0';
    return TS_OK;
}

int ts_mirror_render_thread(const char *dir, const Threadsync__Thread *t,
                            const Threadsync__Comment *const *comments, size_t n)
{
    char name[TS_MIRROR_NAME_SIZE];
    int err = ts_mirror_render_file_name(t->key, name);
    if (err != TS_OK)
        return err;
    size_t dlen = strlen(dir) + sizeof("/threads");
    size_t plen = dlen + 1 + TS_MIRROR_NAME_SIZE + sizeof(".html");
    char *tdir = malloc(dlen);
    char *path = malloc(plen);
    char *json = NULL, *html = NULL;
    size_t json_len, html_len;
    if (!tdir || !path) {
        err = TS_E_NOMEM;
        goto out;
    }
    snprintf(tdir, dlen, "%s/threads", dir);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        TS_ERROR("event=mirror_render_error op=mkdir errno=%d msg=\"%s\"", errno, strerror(errno));
        err = TS_E_IO;
        goto out;
    }
    if (mkdir(tdir, 0755) != 0 && errno != EEXIST) {
        TS_ERROR("event=mirror_render_error op=mkdir errno=%d msg=\"%s\"", errno, strerror(errno));
        err = TS_E_IO;
        goto out;
    }
    err = ts_mirror_render_json(t, comments, n, &json, &json_len);
    if (err == TS_OK)
        err = ts_mirror_render_html(t, comments, n, &html, &html_len);
    if (err != TS_OK)
        goto out;
    snprintf(path, plen, "%s/%s.json", tdir, name);
    err = ts_file_write_atomic(path, json, json_len, 0644);
    if (err != TS_OK)
        goto out;
    snprintf(path, plen, "%s/%s.html", tdir, name);
    err = ts_file_write_atomic(path, html, html_len, 0644);
out:
    free(json);
    free(html);
    free(path);
    free(tdir);
    return err;
}

/* ---- batches: many threads' files, one directory fsync ---- */

/* A temporary written in full, with writeback started, waiting to be
 * fsync'd and renamed over path. */
struct batch_file {
    char *tmp;
    char *path;
};

struct ts_mirror_render_batch {
    char *tdir; /* DIR/threads */
    int durable;
    struct ts_mirror_render_prep *prep; /* may be NULL */
    struct ts_mirror_render_stats stats;
    struct batch_file *f;
    size_t n, cap;
    /* Each file's text, emptied and refilled: its pages stay mapped from
     * one file to the next instead of being faulted in afresh for each. */
    struct ts_buf text;
};

static int make_dirs(const char *dir, const char *tdir)
{
    if ((mkdir(dir, 0755) != 0 && errno != EEXIST) || (mkdir(tdir, 0755) != 0 && errno != EEXIST)) {
        TS_ERROR("event=mirror_render_error op=mkdir errno=%d msg=\"%s\"", errno, strerror(errno));
        return TS_E_IO;
    }
    return TS_OK;
}

int ts_mirror_render_batch_new(const char *dir, int durable, struct ts_mirror_render_batch **out)
{
    *out = NULL;
    struct ts_mirror_render_batch *b = calloc(1, sizeof(*b));
    size_t dlen = strlen(dir) + sizeof("/threads");
    if (!b || !(b->tdir = malloc(dlen))) {
        free(b);
        return TS_E_NOMEM;
    }
    snprintf(b->tdir, dlen, "%s/threads", dir);
    b->durable = durable;
    int err = make_dirs(dir, b->tdir);
    if (err != TS_OK) {
        ts_mirror_render_batch_free(b);
        return err;
    }
    *out = b;
    return TS_OK;
}

static int file_fail(const char *op, const char *path)
{
    TS_ERROR("event=mirror_render_error op=%s path=\"%s\" errno=%d msg=\"%s\"", op, path, errno,
             strerror(errno));
    return TS_E_IO;
}

/* ---- files created ahead of a render ---- */

/* The temporaries of one key's two files ([0] .json, [1] .html); a slot
 * is NULL once a batch has taken it (or when creating it failed). */
struct prep_entry {
    char *name; /* <file>, the map's key */
    char *tmp[2];
};

struct ts_mirror_render_prep {
    char *tdir;
    struct prep_entry *e; /* open addressing on name; name NULL = empty */
    size_t n, cap;        /* cap: a power of two, at most half full */
};

static const char *const file_ext[2] = {".json", ".html"};

static size_t name_hash(const char *s)
{
    size_t h = 1469598103934665603u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h;
}

static struct prep_entry *prep_find(const struct ts_mirror_render_prep *p, const char *name)
{
    size_t mask = p->cap - 1;
    for (size_t h = name_hash(name) & mask;; h = (h + 1) & mask)
        if (!p->e[h].name || strcmp(p->e[h].name, name) == 0)
            return &p->e[h];
}

int ts_mirror_render_prep_new(const char *dir, struct ts_mirror_render_prep **out)
{
    *out = NULL;
    struct ts_mirror_render_prep *p = calloc(1, sizeof(*p));
    size_t dlen = strlen(dir) + sizeof("/threads");
    if (!p || !(p->tdir = malloc(dlen)) || !(p->e = calloc(64, sizeof(*p->e)))) {
        ts_mirror_render_prep_free(p);
        return TS_E_NOMEM;
    }
    p->cap = 64;
    snprintf(p->tdir, dlen, "%s/threads", dir);
    int err = make_dirs(dir, p->tdir);
    if (err != TS_OK) {
        ts_mirror_render_prep_free(p);
        return err;
    }
    *out = p;
    return TS_OK;
}

/* A new, empty, 0644 temporary beside DIR/threads/<name><ext>: *tmp (OUT)
 * is its malloc'd path. */
static int create_tmp(const char *tdir, const char *name, const char *ext, char **tmp)
{
    size_t tlen = strlen(tdir) + 1 + strlen(name) + strlen(ext) + sizeof(".tmp.XXXXXX");
    if (!(*tmp = malloc(tlen)))
        return TS_E_NOMEM;
    snprintf(*tmp, tlen, "%s/%s%s.tmp.XXXXXX", tdir, name, ext);
    int fd = mkostemp(*tmp, O_CLOEXEC);
    int err = fd < 0 ? file_fail("create", *tmp) : TS_OK;
    if (err == TS_OK && fchmod(fd, 0644) != 0)
        err = file_fail("chmod", *tmp);
    if (fd >= 0 && close(fd) != 0 && err == TS_OK)
        err = file_fail("close", *tmp);
    if (err != TS_OK) {
        if (fd >= 0)
            unlink(*tmp);
        free(*tmp);
        *tmp = NULL;
    }
    return err;
}

int ts_mirror_render_prep_add(struct ts_mirror_render_prep *p, const char *key)
{
    char name[TS_MIRROR_NAME_SIZE];
    int err = ts_mirror_render_file_name(key, name);
    if (err != TS_OK)
        return err;
    if (2 * (p->n + 1) > p->cap) {
        struct ts_mirror_render_prep grown = *p;
        grown.cap = 2 * p->cap;
        if (!(grown.e = calloc(grown.cap, sizeof(*grown.e))))
            return TS_E_NOMEM;
        for (size_t i = 0; i < p->cap; i++)
            if (p->e[i].name)
                *prep_find(&grown, p->e[i].name) = p->e[i];
        free(p->e);
        *p = grown;
    }
    struct prep_entry *e = prep_find(p, name);
    if (e->name)
        return TS_OK;
    if (!(e->name = strdup(name)))
        return TS_E_NOMEM;
    p->n++;
    for (int k = 0; k < 2 && err == TS_OK; k++)
        err = create_tmp(p->tdir, name, file_ext[k], &e->tmp[k]);
    return err;
}

void ts_mirror_render_prep_free(struct ts_mirror_render_prep *p)
{
    if (!p)
        return;
    for (size_t i = 0; p->e && i < p->cap; i++) {
        for (int k = 0; k < 2; k++) {
            if (p->e[i].tmp[k])
                unlink(p->e[i].tmp[k]);
            free(p->e[i].tmp[k]);
        }
        free(p->e[i].name);
    }
    free(p->e);
    free(p->tdir);
    free(p);
}

/* The prepared temporary for <name><ext>, handed over (the caller frees
 * it), or NULL. Each key's files are written by one batch only, so two
 * batches never reach for the same slot. */
static char *prep_take(struct ts_mirror_render_prep *p, const char *name, const char *ext)
{
    if (!p)
        return NULL;
    struct prep_entry *e = prep_find(p, name);
    char *tmp = NULL;
    if (e->name) {
        int k = strcmp(ext, file_ext[1]) == 0;
        tmp = e->tmp[k];
        e->tmp[k] = NULL;
    }
    return tmp;
}

/* Writes data to a new temporary beside DIR/threads/<name><ext>. Durable:
 * starts its writeback, so the disk works on it while the next one is
 * built, and leaves it to commit. Not durable: renames it over the file at
 * once (the kernel writes it back when it likes). */
static int batch_write(struct ts_mirror_render_batch *b, const char *name, const char *ext,
                       const char *data, size_t len)
{
    struct batch_file *f = ts_array_grow(b->f, &b->cap, b->n, sizeof(*f), 64);
    if (!f)
        return TS_E_NOMEM;
    b->f = f;
    size_t plen = strlen(b->tdir) + 1 + strlen(name) + strlen(ext) + 1;
    size_t tlen = plen + sizeof(".tmp.XXXXXX");
    char *path = malloc(plen), *tmp = malloc(tlen);
    if (!path || !tmp) {
        free(path);
        free(tmp);
        return TS_E_NOMEM;
    }
    snprintf(path, plen, "%s/%s%s", b->tdir, name, ext);
    /* A prepared temporary is still empty and 0644: no inode to allocate. */
    char *ready = prep_take(b->prep, name, ext);
    int fd = ready ? open(ready, O_WRONLY | O_TRUNC | O_CLOEXEC) : -1;
    if (fd >= 0) {
        free(tmp);
        tmp = ready;
    } else {
        if (ready) {
            unlink(ready);
            free(ready);
            ready = NULL;
        }
        snprintf(tmp, tlen, "%s.tmp.XXXXXX", path);
        fd = mkostemp(tmp, O_CLOEXEC);
    }
    int err = fd < 0 ? file_fail("create", tmp) : TS_OK;
    if (err == TS_OK && !ready && fchmod(fd, 0644) != 0)
        err = file_fail("chmod", tmp);
    for (size_t off = 0; err == TS_OK && off < len;) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno != EINTR)
            err = file_fail("write", tmp);
        else if (w > 0)
            off += (size_t)w;
    }
    /* Only a hint (commit's fsync is the promise): errors do not matter. */
    if (err == TS_OK && b->durable)
        (void)sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
    if (fd >= 0 && close(fd) != 0 && err == TS_OK)
        err = file_fail("close", tmp);
    if (err == TS_OK && !b->durable && rename(tmp, path) != 0)
        err = file_fail("rename", tmp);
    if (err != TS_OK) {
        if (fd >= 0)
            unlink(tmp);
        free(path);
        free(tmp);
        return err;
    }
    if (!b->durable) {
        free(path);
        free(tmp);
        return TS_OK;
    }
    b->f[b->n].tmp = tmp;
    b->f[b->n].path = path;
    b->n++;
    return TS_OK;
}

/* CPU time of the calling thread, for the batch's stats. */
static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Empties b for the next file, keeping its memory (a failed one is
 * freed by batch_add, never reused). */
static void text_reset(struct ts_buf *b)
{
    b->len = 0;
    if (b->p)
        b->p[0] = '\0';
}

int ts_mirror_render_batch_add(struct ts_mirror_render_batch *b, const Threadsync__Thread *t,
                               const Threadsync__Comment *const *comments, size_t n)
{
    uint64_t t0 = thread_cpu_ns(), t1;
    char name[TS_MIRROR_NAME_SIZE];
    int err = ts_mirror_render_file_name(t->key, name);
    if (err != TS_OK)
        return err;
    struct ts_buf *text = &b->text;
    text_reset(text);
    err = build_json(text, t, comments, n);
    b->stats.build_ns += (t1 = thread_cpu_ns()) - t0;
    if (err == TS_OK)
        err = batch_write(b, name, ".json", text->p, text->len);
    b->stats.write_ns += (t0 = thread_cpu_ns()) - t1;
    text_reset(text);
    if (err == TS_OK)
        err = build_html(text, t, comments, n);
    b->stats.build_ns += (t1 = thread_cpu_ns()) - t0;
    if (err == TS_OK)
        err = batch_write(b, name, ".html", text->p, text->len);
    b->stats.write_ns += thread_cpu_ns() - t1;
    if (text->failed)
        ts_buf_free(text);
    return err;
}

static void batch_drop(struct ts_mirror_render_batch *b, size_t from)
{
    for (size_t i = from; i < b->n; i++)
        unlink(b->f[i].tmp);
    for (size_t i = 0; i < b->n; i++) {
        free(b->f[i].tmp);
        free(b->f[i].path);
    }
    b->n = 0;
}

int ts_mirror_render_batch_commit(struct ts_mirror_render_batch *b)
{
    if (b->n == 0)
        return TS_OK;
    uint64_t t0 = thread_cpu_ns();
    int err = TS_OK;
    /* Every temporary is on disk before any rename: a crash then leaves
     * each file old or new, whichever rename it reached. */
    for (size_t i = 0; i < b->n && err == TS_OK; i++) {
        int fd = open(b->f[i].tmp, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fsync(fd) != 0)
            err = file_fail("fsync", b->f[i].tmp);
        if (fd >= 0)
            close(fd);
    }
    size_t renamed = 0;
    while (err == TS_OK && renamed < b->n) {
        if (rename(b->f[renamed].tmp, b->f[renamed].path) != 0)
            err = file_fail("rename", b->f[renamed].tmp);
        else
            renamed++;
    }
    if (err == TS_OK) {
        if (ts_file_fsync_dir(b->tdir) != TS_OK)
            err = file_fail("fsync", b->tdir);
    }
    batch_drop(b, renamed);
    b->stats.write_ns += thread_cpu_ns() - t0;
    return err;
}

void ts_mirror_render_batch_stats(const struct ts_mirror_render_batch *b,
                                  struct ts_mirror_render_stats *out)
{
    *out = b->stats;
}

void ts_mirror_render_batch_set_prep(struct ts_mirror_render_batch *b,
                                     struct ts_mirror_render_prep *p)
{
    b->prep = p;
}

int ts_mirror_render_sync(const char *path)
{
    int err = TS_OK;
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || syncfs(fd) != 0)
        err = file_fail("syncfs", path);
    if (fd >= 0)
        close(fd);
    return err;
}

void ts_mirror_render_batch_free(struct ts_mirror_render_batch *b)
{
    if (!b)
        return;
    batch_drop(b, 0);
    ts_buf_free(&b->text);
    free(b->f);
    free(b->tdir);
    free(b);
}
