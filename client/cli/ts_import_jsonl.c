/*
 * ts_import_jsonl: see ts_import_jsonl.h. A small parser for flat objects:
 * strings are unescaped in place (an escape is never shorter than what it
 * stands for), so a line costs one buffer.
 */
#include "ts_import_jsonl.h"

#include "threadsync.pb-c.h"
#include "ts_err.h"
#include "ts_import_text.h"
#include "ts_valid.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FIELDS 32

struct field {
    const char *key;
    const char *str; /* string value (unescaped), or NULL */
    int64_t num;
    int is_num, is_bool;
};

struct obj {
    struct field f[MAX_FIELDS];
    size_t n;
};

static const struct field *get(const struct obj *o, const char *key)
{
    for (size_t i = 0; i < o->n; i++)
        if (!strcmp(o->f[i].key, key))
            return &o->f[i];
    return NULL;
}

static const char *str(const struct obj *o, const char *key)
{
    const struct field *f = get(o, key);
    return f && f->str ? f->str : "";
}

static int64_t num(const struct obj *o, const char *key)
{
    const struct field *f = get(o, key);
    return f && (f->is_num || f->is_bool) ? f->num : 0;
}

static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return 0;
    }
    *out = v;
    return 1;
}

/* A string starting at *p ('"'), unescaped in place; *p moves past it. */
static const char *parse_string(char **p, const char **why)
{
    char *r = *p + 1, *w = r, *start = r;
    for (;;) {
        char c = *r;
        if (!c) {
            *why = "unterminated string";
            return NULL;
        }
        if (c == '"')
            break;
        if ((unsigned char)c < 0x20) {
            *why = "control character in a string";
            return NULL;
        }
        if (c != '\\') {
            *w++ = *r++;
            continue;
        }
        r++;
        switch (*r) {
        case '"':
        case '\\':
        case '/':
            *w++ = *r++;
            break;
        case 'b':
            *w++ = '\b';
            r++;
            break;
        case 'f':
            *w++ = '\f';
            r++;
            break;
        case 'n':
            *w++ = '\n';
            r++;
            break;
        case 'r':
            *w++ = '\r';
            r++;
            break;
        case 't':
            *w++ = '\t';
            r++;
            break;
        case 'u': {
            unsigned cp, lo;
            if (!hex4(r + 1, &cp)) {
                *why = "bad \\u escape";
                return NULL;
            }
            r += 5;
            if (cp >= 0xD800 && cp < 0xDC00 && r[0] == '\\' && r[1] == 'u' && hex4(r + 2, &lo) &&
                lo >= 0xDC00 && lo < 0xE000) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                r += 6;
            } else if (cp >= 0xD800 && cp < 0xE000) {
                cp = 0xFFFD;
            }
            if (cp == 0) {
                *why = "NUL (\\u0000) in a string";
                return NULL;
            }
            w += ts_import_put_utf8(w, cp);
            break;
        }
        default:
            *why = "bad escape";
            return NULL;
        }
    }
    *w = '\0';
    *p = r + 1;
    return start;
}

static void skip_ws(char **p)
{
    while (**p == ' ' || **p == '\t' || **p == '\r')
        (*p)++;
}

/* Parses the object on line s into o. NULL, or what is wrong with *at the
 * offset. */
static const char *parse_object(char *s, struct obj *o, size_t *at)
{
    char *p = s;
    const char *why = NULL;
    o->n = 0;
    skip_ws(&p);
    if (*p != '{') {
        why = "expected '{'";
        goto bad;
    }
    p++;
    skip_ws(&p);
    if (*p == '}') {
        p++;
        goto end;
    }
    for (;;) {
        skip_ws(&p);
        if (*p != '"') {
            why = "expected a key";
            goto bad;
        }
        const char *key = parse_string(&p, &why);
        if (!key)
            goto bad;
        skip_ws(&p);
        if (*p != ':') {
            why = "expected ':'";
            goto bad;
        }
        p++;
        skip_ws(&p);
        struct field f = {.key = key};
        if (*p == '"') {
            if (!(f.str = parse_string(&p, &why)))
                goto bad;
        } else if (!strncmp(p, "true", 4) || !strncmp(p, "false", 5)) {
            f.is_bool = 1;
            f.num = *p == 't';
            p += f.num ? 4 : 5;
        } else if (!strncmp(p, "null", 4)) {
            p += 4;
        } else if (*p == '-' || (*p >= '0' && *p <= '9')) {
            char *end;
            f.num = strtoll(p, &end, 10);
            if (*end == '.' || *end == 'e' || *end == 'E') {
                why = "only integers are expected";
                goto bad;
            }
            f.is_num = 1;
            p = end;
        } else {
            why = "expected a string, integer, boolean or null (no nested values)";
            goto bad;
        }
        if (o->n < MAX_FIELDS)
            o->f[o->n++] = f;
        skip_ws(&p);
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p == '}') {
            p++;
            break;
        }
        why = "expected ',' or '}'";
        goto bad;
    }
end:
    skip_ws(&p);
    if (*p && *p != '\n') {
        why = "text after the object";
        goto bad;
    }
    return NULL;
bad:
    *at = (size_t)(p - s);
    return why;
}

static int status_of(const char *s)
{
    static const char *const names[] = {"", "VISIBLE", "PENDING", "HIDDEN", "DELETED"};
    for (int i = 1; i < 5; i++)
        if (!strcmp(s, names[i]))
            return i;
    return 0;
}

int ts_import_jsonl_parse(FILE *in, const struct ts_import_sink *sink, char *err, size_t errlen)
{
    char *line = NULL;
    size_t cap = 0;
    unsigned long lineno = 0;
    int rc = TS_OK, header = 0;
    ssize_t n;
    struct obj o;
    char idbuf[32], parentbuf[32];
    while ((n = getline(&line, &cap, in)) > 0) {
        lineno++;
        if (n > TS_IMPORT_JSONL_LINE_MAX) {
            snprintf(err, errlen, "line %lu, column 1: line longer than %ld bytes", lineno,
                     TS_IMPORT_JSONL_LINE_MAX);
            rc = TS_E_INVALID_ARGUMENT;
            break;
        }
        if (!ts_valid_utf8(line, (size_t)n) || memchr(line, 0, (size_t)n)) {
            snprintf(err, errlen, "line %lu, column 1: not valid UTF-8 text", lineno);
            rc = TS_E_INVALID_ARGUMENT;
            break;
        }
        if (line[0] == '\n')
            continue;
        size_t at = 0;
        const char *why = parse_object(line, &o, &at);
        if (why) {
            snprintf(err, errlen, "line %lu, column %zu: %s", lineno, at + 1, why);
            rc = TS_E_INVALID_ARGUMENT;
            break;
        }
        const char *type = str(&o, "type");
        if (!strcmp(type, "export")) {
            if (num(&o, "format") != 1) {
                snprintf(err, errlen, "line %lu, column 1: export format %lld is not known here",
                         lineno, (long long)num(&o, "format"));
                rc = TS_E_INVALID_ARGUMENT;
                break;
            }
            header = 1;
        } else if (!strcmp(type, "thread")) {
            struct ts_import_thread_rec t = {
                .key = str(&o, "key"),
                .title = str(&o, "title"),
                .url = str(&o, "url"),
                .created_at_ms = num(&o, "created_at_ms"),
                .id = (uint64_t)num(&o, "id"),
                .version = (uint64_t)num(&o, "version"),
                .locked = (int)num(&o, "locked"),
                .premoderated = (int)num(&o, "premoderated"),
                .moderated_by = str(&o, "moderated_by"),
            };
            if ((rc = sink->thread(sink->arg, &t)) != 0)
                break;
        } else if (!strcmp(type, "comment")) {
            uint64_t parent = (uint64_t)num(&o, "parent_id");
            snprintf(idbuf, sizeof(idbuf), "%lld", (long long)num(&o, "id"));
            snprintf(parentbuf, sizeof(parentbuf), "%llu", (unsigned long long)parent);
            int st = status_of(str(&o, "status"));
            if (!st) {
                snprintf(err, errlen,
                         "line %lu, column 1: status \"%.32s\" is none of VISIBLE, "
                         "PENDING, HIDDEN, DELETED",
                         lineno, str(&o, "status"));
                rc = TS_E_INVALID_ARGUMENT;
                break;
            }
            struct ts_import_comment_rec c = {
                .source_id = idbuf,
                .parent_source_id = parent ? parentbuf : "",
                .thread_key = str(&o, "thread_key"),
                .author_name = str(&o, "author_name"),
                .author_email = str(&o, "author_email"),
                .author_url = "",
                .body = str(&o, "body"),
                .created_at_ms = num(&o, "created_at_ms"),
                .status = st,
                .id = (uint64_t)num(&o, "id"),
                .version = (uint64_t)num(&o, "version"),
                .edited_at_ms = num(&o, "edited_at_ms"),
                .moderated_by = str(&o, "moderated_by"),
                .line = lineno,
                .column = 1,
            };
            if ((rc = sink->comment(sink->arg, &c)) != 0)
                break;
        } else if (!strcmp(type, "audit")) {
            /* Only the apply of a real action writes the trail: an import
             * that wrote it would let an admin forge history
             * (docs/DESIGN.md, "The audit trail"). */
            sink->skip(sink->arg, "audit record (the trail is not imported)");
        } else {
            sink->skip(sink->arg, "JSON line of an unknown type");
        }
    }
    if (rc == TS_OK && ferror(in)) {
        snprintf(err, errlen, "read error");
        rc = TS_E_IO;
    }
    if (rc == TS_OK && !header && lineno) {
        snprintf(err, errlen, "line 1, column 1: not a threadsync export (no \"export\" line)");
        rc = TS_E_INVALID_ARGUMENT;
    }
    free(line);
    return rc;
}
