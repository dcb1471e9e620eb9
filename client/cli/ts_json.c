/*
 * ts_json: JSON string escaping and key/value helpers (see ts_json.h).
 *
 * UTF-8 is checked inline rather than through ts_valid so that one bad byte
 * costs one U+FFFD and the rest of the string still comes through: output
 * meant for people and scripts should degrade, not vanish.
 */
#include "ts_json.h"

#include <inttypes.h>
#include <string.h>

/* Length of the well-formed UTF-8 sequence at s (n bytes left, n >= 1):
 * 1..4, or 0 when s[0] does not start one (overlong forms, surrogates and
 * code points above U+10FFFF are ill-formed). */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        return n >= 2 && (s[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        if (n < 3)
            return 0;
        unsigned char lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
        if (s[1] < lo || s[1] > hi || (s[2] & 0xc0) != 0x80)
            return 0;
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (n < 4)
            return 0;
        unsigned char lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
        if (s[1] < lo || s[1] > hi || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80)
            return 0;
        return 4;
    }
    return 0;
}

void ts_json_str(FILE *out, const char *str)
{
    ts_json_strn(out, str, str ? strlen(str) : 0);
}

/* Whether byte c may be written as it is: printable ASCII but the quote
 * and the backslash (bytes from 0x80 are checked as UTF-8 sequences). */
static int plain(unsigned char c)
{
    return c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
}

void ts_json_strn(FILE *out, const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)(str ? str : "");
    const unsigned char *end = s + len;
    /* Runs of bytes that need no escaping go out in one fwrite: an export
     * writes hundreds of megabytes of mostly plain text through here. */
    const unsigned char *run = s;
    putc_unlocked('"', out);
    while (s < end) {
        unsigned char c = *s;
        if (plain(c)) {
            s++;
            continue;
        }
        size_t n = c >= 0x80 ? utf8_seq_len(s, (size_t)(end - s)) : 0;
        if (n) {
            s += n;
            continue;
        }
        if (s > run)
            fwrite_unlocked(run, 1, (size_t)(s - run), out);
        switch (c) {
        case '"':
            fputs_unlocked("\\\"", out);
            break;
        case '\\':
            fputs_unlocked("\\\\", out);
            break;
        case '\n':
            fputs_unlocked("\\n", out);
            break;
        case '\r':
            fputs_unlocked("\\r", out);
            break;
        case '\t':
            fputs_unlocked("\\t", out);
            break;
        case '\b':
            fputs_unlocked("\\b", out);
            break;
        case '\f':
            fputs_unlocked("\\f", out);
            break;
        default:
            if (c < 0x80) /* NUL included: a length-bounded string may hold one. */
                fprintf(out, "\\u%04x", c);
            else
                fputs_unlocked("\xef\xbf\xbd", out);
        }
        run = ++s;
    }
    if (s > run)
        fwrite_unlocked(run, 1, (size_t)(s - run), out);
    putc_unlocked('"', out);
}

void ts_json_key(FILE *out, const char *key, int first)
{
    if (!first)
        fputc(',', out);
    ts_json_str(out, key);
    fputc(':', out);
}

void ts_json_kv_str(FILE *out, const char *key, const char *value, int first)
{
    ts_json_key(out, key, first);
    ts_json_str(out, value);
}

/* Decimal digits without printf's format parsing (a few per exported field). */
static void put_u64(FILE *out, uint64_t v)
{
    char buf[20];
    size_t i = sizeof(buf);
    do {
        buf[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    fwrite_unlocked(buf + i, 1, sizeof(buf) - i, out);
}

void ts_json_kv_u64(FILE *out, const char *key, uint64_t value, int first)
{
    ts_json_key(out, key, first);
    put_u64(out, value);
}

void ts_json_kv_i64(FILE *out, const char *key, int64_t value, int first)
{
    ts_json_key(out, key, first);
    if (value < 0) {
        putc_unlocked('-', out);
        put_u64(out, -(uint64_t)value);
    } else {
        put_u64(out, (uint64_t)value);
    }
}

void ts_json_kv_bool(FILE *out, const char *key, int value, int first)
{
    ts_json_key(out, key, first);
    fputs(value ? "true" : "false", out);
}
