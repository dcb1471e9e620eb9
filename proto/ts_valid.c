/*
 * ts_valid: UTF-8 and field-limit checks. The UTF-8 decoder follows the
 * Unicode well-formed byte sequence table (Unicode 15, table 3-7) exactly;
 * it is the only gate between client bytes and every mirror's HTML.
 */
#include "ts_valid.h"

#include "ts_err.h"

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

int ts_valid_utf8(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
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

int ts_valid_text(const char *s, size_t len, int multiline)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != 0x7F)
            continue;
        if (multiline && (c == '\t' || c == '\n' || c == '\r'))
            continue;
        return 0;
    }
    return ts_valid_utf8(s, len);
}

static int check_str(const char *s, size_t min, size_t max, int multiline)
{
    size_t len = s ? strlen(s) : 0;
    return len >= min && len <= max && ts_valid_text(s ? s : "", len, multiline);
}

int ts_valid_thread_key(const char *key)
{
    return check_str(key, 1, TS_THREAD_KEY_MAX, 0) ? TS_OK : TS_E_INVALID_ARGUMENT;
}

int ts_valid_post(const Threadsync__Post *post, const char **field)
{
#define TS__BAD(name)                                                                              \
    do {                                                                                           \
        *field = (name);                                                                           \
        return TS_E_INVALID_ARGUMENT;                                                              \
    } while (0)
    if (!check_str(post->idempotency_key, 1, TS_IDEMPOTENCY_KEY_MAX, 0))
        TS__BAD("idempotency_key");
    if (ts_valid_thread_key(post->thread_key) != TS_OK)
        TS__BAD("thread_key");
    size_t name_len = post->author_name ? strlen(post->author_name) : 0;
    if (!check_str(post->author_name, 1, (size_t)TS_AUTHOR_NAME_MAX_CP * 4, 0) ||
        ts_valid_utf8_count(post->author_name, name_len) > TS_AUTHOR_NAME_MAX_CP)
        TS__BAD("author_name");
    if (!check_str(post->author_email, 0, TS_AUTHOR_EMAIL_MAX, 0))
        TS__BAD("author_email");
    if (!check_str(post->body, 1, TS_BODY_MAX, 1))
        TS__BAD("body");
    if (!check_str(post->title, 0, TS_TITLE_MAX, 0))
        TS__BAD("title");
    if (!check_str(post->url, 0, TS_URL_MAX, 0))
        TS__BAD("url");
#undef TS__BAD
    *field = NULL;
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
