/*
 * ts_valid: UTF-8 and field-limit checks. The UTF-8 decoder follows the
 * Unicode well-formed byte sequence table (Unicode 15, table 3-7) exactly;
 * it is the only gate between client bytes and every mirror's HTML. The
 * rules table below is the one place that says what each client text field
 * allows (PROTOCOL.md section 2, "Text fields", is the same table), and a
 * refusal's message is built from it, so the words and the check agree.
 */
#include "ts_valid.h"

#include "ts_err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Length of the sequence starting at s[0..len), 0 when ill-formed. */
static size_t utf8_seq(const unsigned char *s, size_t len)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    if (c < 0xC2)
        return 0;
    if (c < 0xE0) {
        if (len < 2 || (s[1] & 0xC0) != 0x80)
            return 0;
        return 2;
    }
    if (c < 0xF0) {
        if (len < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80)
            return 0;
        if (c == 0xE0 && s[1] < 0xA0) /* overlong */
            return 0;
        if (c == 0xED && s[1] >= 0xA0) /* surrogates */
            return 0;
        return 3;
    }
    if (c < 0xF5) {
        if (len < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && s[1] < 0x90) /* overlong */
            return 0;
        if (c == 0xF4 && s[1] >= 0x90) /* above U+10FFFF */
            return 0;
        return 4;
    }
    return 0;
}

/* Length of the run of ASCII bytes at s[0..len), eight at a time: text
 * is mostly ASCII, and every string of every frame comes through here. */
static size_t ascii_run(const unsigned char *s, size_t len)
{
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        if (w & 0x8080808080808080ull)
            break;
    }
    while (i < len && s[i] < 0x80)
        i++;
    return i;
}

int ts_valid_utf8(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        i += ascii_run(p + i, len - i);
        if (i == len)
            break;
        size_t n = utf8_seq(p + i, len - i);
        if (n == 0)
            return 0;
        i += n;
    }
    return 1;
}

size_t ts_valid_utf8_count(const char *s, size_t len)
{
    size_t count = 0;
    for (size_t i = 0; i < len; i++)
        count += (((unsigned char)s[i] & 0xC0) != 0x80);
    return count;
}

/* Offset of the first byte of s[0..len) a field of this kind refuses, len
 * when none; *cp gets the refused code point (or the byte, for an
 * ill-formed sequence, with *ill set). */
static size_t first_bad(const char *s, size_t len, enum ts_valid_kind kind, uint32_t *cp, int *ill)
{
    const unsigned char *p = (const unsigned char *)s;
    unsigned char lo = kind == TS_VALID_KEY ? 0x21 : 0x20;
    *ill = 0;
    for (size_t i = 0; i < len;) {
        if (p[i] >= lo && p[i] < 0x7F) { /* printable ASCII: every kind takes it */
            i++;
            continue;
        }
        size_t n = utf8_seq(p + i, len - i);
        if (n == 0) {
            *cp = p[i];
            *ill = 1;
            return i;
        }
        uint32_t c = n == 1 ? p[i] : p[i] & (0x7F >> n);
        for (size_t k = 1; k < n; k++)
            c = (c << 6) | (p[i + k] & 0x3F);
        int ok;
        if (kind == TS_VALID_KEY)
            ok = c >= 0x21 && c <= 0x7E;
        else if (c < 0x20)
            ok = kind == TS_VALID_MULTILINE && (c == '\t' || c == '\n' || c == '\r');
        else
            ok = c != 0x7F && !(c >= 0x80 && c <= 0x9F);
        if (!ok) {
            *cp = c;
            return i;
        }
        i += n;
    }
    return len;
}

int ts_valid_text(const char *s, size_t len, int multiline)
{
    uint32_t cp;
    int ill;
    return first_bad(s, len, multiline ? TS_VALID_MULTILINE : TS_VALID_LINE, &cp, &ill) == len;
}

/* The client-supplied text fields. Lengths in bytes, author_name in code
 * points; PROTOCOL.md section 2 ("Text fields") is the same table. */
struct ts_valid_rule {
    const char *field; /* the wire name, Error.field */
    const char *label; /* the name in a sentence */
    size_t min, max;   /* in bytes, or code points when code_points */
    int code_points;
    enum ts_valid_kind kind;
};

static const struct ts_valid_rule rules[] = {
    [TS_VALID_IDEMPOTENCY_KEY] = {"idempotency_key", "idempotency key", 1, TS_IDEMPOTENCY_KEY_MAX,
                                  0, TS_VALID_KEY},
    [TS_VALID_THREAD_KEY] = {"thread_key", "thread key", 1, TS_THREAD_KEY_MAX, 0, TS_VALID_LINE},
    [TS_VALID_AUTHOR_NAME] = {"author_name", "author name", 1, TS_AUTHOR_NAME_MAX_CP, 1,
                              TS_VALID_LINE},
    [TS_VALID_AUTHOR_EMAIL] = {"author_email", "author e-mail", 0, TS_AUTHOR_EMAIL_MAX, 0,
                               TS_VALID_LINE},
    [TS_VALID_BODY] = {"body", "body", 1, TS_BODY_MAX, 0, TS_VALID_MULTILINE},
    [TS_VALID_TITLE] = {"title", "title", 0, TS_TITLE_MAX, 0, TS_VALID_LINE},
    [TS_VALID_URL] = {"url", "url", 0, TS_URL_MAX, 0, TS_VALID_LINE},
    [TS_VALID_BAN_AUTHOR] = {"author", "author", 1, TS_AUTHOR_EMAIL_MAX, 0, TS_VALID_LINE},
    [TS_VALID_CLIENT_NAME] = {"client_name", "client name", 0, TS_CLIENT_NAME_MAX, 0,
                              TS_VALID_LINE},
    [TS_VALID_TOKEN] = {"token", "token", 0, TS_TOKEN_MAX, 0, TS_VALID_LINE},
};

static int refuse(struct ts_valid_err *err, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int refuse(struct ts_valid_err *err, const char *field, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->field = field;
        vsnprintf(err->message, sizeof(err->message), fmt, ap);
        va_end(ap);
    }
    return TS_E_INVALID_ARGUMENT;
}

static int check_length(const struct ts_valid_rule *r, size_t n, struct ts_valid_err *err)
{
    if (n >= r->min && n <= r->max)
        return TS_OK;
    const char *unit = r->code_points ? "characters" : "bytes";
    if (r->min == 0)
        return refuse(err, r->field, "%s must be at most %zu %s, got %zu", r->label, r->max, unit,
                      n);
    return refuse(err, r->field, "%s must be %zu to %zu %s, got %zu", r->label, r->min, r->max,
                  unit, n);
}

int ts_valid_field(enum ts_valid_field which, const char *s, size_t len, struct ts_valid_err *err)
{
    const struct ts_valid_rule *r = &rules[which];
    if (!s)
        s = "";
    /* A byte limit is checked before the content; code points can only be
     * counted once the bytes are known to be well-formed. */
    if (!r->code_points && check_length(r, len, err) != TS_OK)
        return TS_E_INVALID_ARGUMENT;
    uint32_t cp;
    int ill;
    size_t at = first_bad(s, len, r->kind, &cp, &ill);
    if (at < len && ill)
        return refuse(err, r->field, "%s is not well-formed UTF-8 (byte 0x%02X at offset %zu)",
                      r->label, (unsigned)cp, at);
    if (at < len && r->kind == TS_VALID_KEY)
        return refuse(err, r->field,
                      "%s must be %zu to %zu characters from ASCII 0x21 to 0x7E (no space, no "
                      "control, no non-ASCII), got U+%04X at offset %zu",
                      r->label, r->min, r->max, (unsigned)cp, at);
    if (at < len && r->kind == TS_VALID_MULTILINE)
        return refuse(err, r->field,
                      "%s may not contain control characters other than tab, newline and "
                      "carriage return, got U+%04X at offset %zu",
                      r->label, (unsigned)cp, at);
    if (at < len)
        return refuse(err, r->field,
                      "%s may not contain control characters, got U+%04X at offset %zu", r->label,
                      (unsigned)cp, at);
    if (r->code_points)
        return check_length(r, ts_valid_utf8_count(s, len), err);
    return TS_OK;
}

static int check_str(enum ts_valid_field which, const char *s, struct ts_valid_err *err)
{
    return ts_valid_field(which, s, s ? strlen(s) : 0, err);
}

int ts_valid_thread_key(const char *key, struct ts_valid_err *err)
{
    return check_str(TS_VALID_THREAD_KEY, key, err);
}

int ts_valid_post(const Threadsync__Post *post, struct ts_valid_err *err)
{
    const struct {
        enum ts_valid_field which;
        const char *value;
    } fields[] = {
        {TS_VALID_IDEMPOTENCY_KEY, post->idempotency_key},
        {TS_VALID_THREAD_KEY, post->thread_key},
        {TS_VALID_AUTHOR_NAME, post->author_name},
        {TS_VALID_AUTHOR_EMAIL, post->author_email},
        {TS_VALID_BODY, post->body},
        {TS_VALID_TITLE, post->title},
        {TS_VALID_URL, post->url},
    };
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        if (check_str(fields[i].which, fields[i].value, err) != TS_OK)
            return TS_E_INVALID_ARGUMENT;
    if (!ts_valid_reader_key(post->reader_key))
        return refuse(err, "reader_key", "reader key must be empty or %d lowercase hex digits",
                      TS_READER_KEY_LEN);
    if (err)
        err->field = NULL;
    return TS_OK;
}

int ts_valid_reader_key(const char *s)
{
    if (!s || !*s)
        return 1;
    size_t n = 0;
    for (; s[n]; n++)
        if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')) ||
            n >= TS_READER_KEY_LEN)
            return 0;
    return n == TS_READER_KEY_LEN;
}

int ts_valid_hello(const Threadsync__Hello *hello, struct ts_valid_err *err)
{
    if (check_str(TS_VALID_CLIENT_NAME, hello->client_name, err) != TS_OK ||
        check_str(TS_VALID_TOKEN, hello->token, err) != TS_OK)
        return TS_E_INVALID_ARGUMENT;
    return TS_OK;
}

int ts_valid_token_name(const char *s, size_t len)
{
    if (len == 0 || len > TS_TOKEN_NAME_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}
