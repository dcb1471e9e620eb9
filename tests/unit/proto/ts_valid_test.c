/*
 * ts_valid: UTF-8 well-formedness (the Unicode table's edges), code point
 * counting, and the Post field limits (docs/DESIGN.md, "Data model").
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "ts_check_main.h"
#include "ts_err.h"
#include "ts_valid.h"

#define U8(s) ts_valid_utf8((s), sizeof(s) - 1)

START_TEST(test_utf8_edges)
{
    ck_assert(U8("plain ascii"));
    ck_assert(U8("caf\xC3\xA9"));
    ck_assert(U8("\xE2\x80\x9C"
                 "curly"
                 "\xE2\x80\x9D"));
    ck_assert(U8("\xF0\x9F\x98\x80"));  /* emoji */
    ck_assert(U8("e\xCC\x81"));         /* combining acute */
    ck_assert(U8("\xF4\x8F\xBF\xBF"));  /* U+10FFFF */
    ck_assert(U8("\xEF\xBF\xBF"));      /* U+FFFF */
    ck_assert(!U8("\xC0\xAF"));         /* overlong '/' */
    ck_assert(!U8("\xC1\xBF"));         /* overlong */
    ck_assert(!U8("\xE0\x80\xAF"));     /* overlong 3-byte */
    ck_assert(!U8("\xF0\x80\x80\xAF")); /* overlong 4-byte */
    ck_assert(!U8("\xED\xA0\x80"));     /* U+D800 surrogate */
    ck_assert(!U8("\xED\xBF\xBF"));     /* U+DFFF */
    ck_assert(!U8("\xF4\x90\x80\x80")); /* U+110000 */
    ck_assert(!U8("\xF5\x80\x80\x80"));
    ck_assert(!U8("\xFF"));
    ck_assert(!U8("\x80"));     /* lone continuation */
    ck_assert(!U8("\xC3"));     /* truncated */
    ck_assert(!U8("\xE2\x80")); /* truncated */
    ck_assert(!U8("\xC3\x28")); /* bad continuation */
}
END_TEST

START_TEST(test_count)
{
    const char *s = "a\xC3\xA9\xE2\x80\x9C\xF0\x9F\x98\x80";
    ck_assert_uint_eq(ts_valid_utf8_count(s, strlen(s)), 4);
}
END_TEST

START_TEST(test_text_controls)
{
    ck_assert(ts_valid_text("a\nb\tc\r\n", 7, 1));
    ck_assert(!ts_valid_text("a\nb", 3, 0));
    ck_assert(!ts_valid_text("a\x01", 2, 1));
    ck_assert(!ts_valid_text("a\x7F", 2, 1));
    ck_assert(!ts_valid_text("a\0b", 3, 1));
}
END_TEST

/* The ASCII fast paths (eight bytes at a time, printable runs) see a bad
 * byte at every offset of a long string, and a good sequence right after a
 * run: no position is skipped. */
START_TEST(test_bad_byte_at_every_offset)
{
    char buf[40];
    for (size_t at = 0; at < 36; at++) {
        memset(buf, 'a', sizeof(buf));
        buf[at] = (char)0x80; /* a lone continuation */
        ck_assert_msg(!ts_valid_utf8(buf, sizeof(buf)), "0x80 at %zu", at);
        ck_assert(!ts_valid_text(buf, sizeof(buf), 1));
        buf[at] = 0x7F;
        ck_assert_msg(ts_valid_utf8(buf, sizeof(buf)), "0x7F at %zu", at);
        ck_assert_msg(!ts_valid_text(buf, sizeof(buf), 1), "0x7F at %zu", at);
        buf[at] = '\n';
        ck_assert(ts_valid_text(buf, sizeof(buf), 1));
        ck_assert_msg(!ts_valid_text(buf, sizeof(buf), 0), "LF at %zu", at);
        buf[at] = ' ';
        struct ts_valid_err e;
        ck_assert_int_eq(ts_valid_field(TS_VALID_IDEMPOTENCY_KEY, buf, sizeof(buf), &e),
                         TS_E_INVALID_ARGUMENT); /* a key takes no space */
        ck_assert(ts_valid_text(buf, sizeof(buf), 0));
        if (at + 2 <= sizeof(buf)) {
            memcpy(buf + at, "\xC3\xA9", 2);
            ck_assert(ts_valid_utf8(buf, sizeof(buf)));
            ck_assert(ts_valid_text(buf, sizeof(buf), 0));
            buf[at + 1] = 'x'; /* truncated sequence */
            ck_assert_msg(!ts_valid_utf8(buf, sizeof(buf)), "C3 x at %zu", at);
            ck_assert(!ts_valid_text(buf, sizeof(buf), 1));
        }
    }
}
END_TEST

static Threadsync__Post good_post(void)
{
    Threadsync__Post p = THREADSYNC__POST__INIT;
    p.idempotency_key = "k1";
    p.thread_key = "site/2021/slug";
    p.author_name = "Ann";
    p.body = "Hello\nworld";
    return p;
}

START_TEST(test_post_ok)
{
    Threadsync__Post p = good_post();
    struct ts_valid_err err = {.field = "x"};
    ck_assert_int_eq(ts_valid_post(&p, &err), TS_OK);
    ck_assert_ptr_null(err.field);
}
END_TEST

START_TEST(test_post_limits)
{
    struct ts_valid_err err;
    Threadsync__Post p = good_post();
    p.body = "";
    ck_assert_int_eq(ts_valid_post(&p, &err), TS_E_INVALID_ARGUMENT);
    ck_assert_str_eq(err.field, "body");

    char *big = malloc(TS_BODY_MAX + 2);
    memset(big, 'x', TS_BODY_MAX + 1);
    big[TS_BODY_MAX + 1] = '\0';
    p = good_post();
    p.body = big;
    ck_assert_int_eq(ts_valid_post(&p, &err), TS_E_INVALID_ARGUMENT);
    big[TS_BODY_MAX] = '\0';
    ck_assert_int_eq(ts_valid_post(&p, &err), TS_OK);
    free(big);

    /* 64 code points of 4 bytes each pass; 65 do not */
    char name[65 * 4 + 1];
    for (int i = 0; i < 65; i++)
        memcpy(name + (size_t)4 * i, "\xF0\x9F\x98\x80", 4);
    name[(size_t)64 * 4] = '\0';
    p = good_post();
    p.author_name = name;
    ck_assert_int_eq(ts_valid_post(&p, &err), TS_OK);
    name[(size_t)64 * 4] = 'x';
    name[64 * 4 + 1] = '\0';
    ck_assert_int_eq(ts_valid_post(&p, &err), TS_E_INVALID_ARGUMENT);
    ck_assert_str_eq(err.field, "author_name");

    p = good_post();
    p.author_name = "";
    ck_assert_int_eq(ts_valid_post(&p, &err), TS_E_INVALID_ARGUMENT);
    ck_assert_str_eq(err.field, "author_name");

    p = good_post();
    p.thread_key = "";
    ck_assert_int_eq(ts_valid_post(&p, &err), TS_E_INVALID_ARGUMENT);
    ck_assert_str_eq(err.field, "thread_key");

    p = good_post();
    p.idempotency_key = "";
    ck_assert_int_eq(ts_valid_post(&p, &err), TS_E_INVALID_ARGUMENT);
    ck_assert_str_eq(err.field, "idempotency_key");

    p = good_post();
    p.body = "bad \xC3";
    ck_assert_int_eq(ts_valid_post(&p, &err), TS_E_INVALID_ARGUMENT);
    ck_assert_str_eq(err.field, "body");

    p = good_post();
    p.author_name = "Ann\nEve";
    ck_assert_int_eq(ts_valid_post(&p, &err), TS_E_INVALID_ARGUMENT);
    ck_assert_str_eq(err.field, "author_name");
}
END_TEST

/* PROTOCOL.md section 2: control characters are C0, DEL and C1; only a
 * body takes tab, LF and CR. */
START_TEST(test_control_characters)
{
    ck_assert(!ts_valid_text("a\xC2\x85", 3, 1)); /* U+0085 NEL */
    ck_assert(!ts_valid_text("a\xC2\x9B", 3, 0)); /* U+009B CSI */
    ck_assert(!ts_valid_text("a\xC2\x80", 3, 1)); /* U+0080 */
    ck_assert(ts_valid_text("a\xC2\xA0", 3, 0));  /* U+00A0, no control */
    ck_assert(!ts_valid_text("a\x7F", 2, 0));
    ck_assert(ts_valid_text("\xE2\x80\x8B", 3, 0)); /* 3-byte forms are never controls */

    struct ts_valid_err err;
    Threadsync__Post p = good_post();
    p.author_name = "Ann\xC2\x85";
    ck_assert_int_eq(ts_valid_post(&p, &err), TS_E_INVALID_ARGUMENT);
    ck_assert_str_eq(err.field, "author_name");
    ck_assert_str_eq(err.message, "author name may not contain control characters, got U+0085 "
                                  "at offset 3");
    p = good_post();
    p.body = "x\xC2\x9B";
    ck_assert_int_eq(ts_valid_post(&p, &err), TS_E_INVALID_ARGUMENT);
    ck_assert_str_eq(err.message, "body may not contain control characters other than tab, "
                                  "newline and carriage return, got U+009B at offset 1");
    p = good_post();
    p.body = "a\tb\r\nc";
    ck_assert_int_eq(ts_valid_post(&p, &err), TS_OK);
    const char *line_fields[] = {"author_email", "title", "url"};
    for (int i = 0; i < 3; i++) {
        p = good_post();
        char **slot = i == 0 ? &p.author_email : i == 1 ? &p.title : &p.url;
        *slot = "x\ty";
        ck_assert_int_eq(ts_valid_post(&p, &err), TS_E_INVALID_ARGUMENT);
        ck_assert_str_eq(err.field, line_fields[i]);
        *slot = "x\xC2\x85y";
        ck_assert_int_eq(ts_valid_post(&p, &err), TS_E_INVALID_ARGUMENT);
        *slot = "caf\xC3\xA9 ok";
        ck_assert_int_eq(ts_valid_post(&p, &err), TS_OK);
    }
}
END_TEST

/* "printable" in the idempotency-key rule is ASCII 0x21..0x7E. */
START_TEST(test_idempotency_key_printable)
{
    struct ts_valid_err err;
    Threadsync__Post p = good_post();
    p.idempotency_key = "!~azAZ09-_";
    ck_assert_int_eq(ts_valid_post(&p, &err), TS_OK);
    const char *bad[] = {"a b", "a\tb", "caf\xC3\xA9", "a\x7F"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        p.idempotency_key = (char *)bad[i];
        ck_assert_int_eq(ts_valid_post(&p, &err), TS_E_INVALID_ARGUMENT);
        ck_assert_str_eq(err.field, "idempotency_key");
    }
    p.idempotency_key = "a b";
    ts_valid_post(&p, &err);
    ck_assert_str_eq(err.message, "idempotency key must be 1 to 64 characters from ASCII 0x21 to "
                                  "0x7E (no space, no control, no non-ASCII), got U+0020 at "
                                  "offset 1");
    p.idempotency_key = "caf\xC3\xA9";
    ts_valid_post(&p, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "got U+00E9 at offset 3"));
}
END_TEST

/* The examples of issue 12: each refusal says what was wrong and what is
 * allowed. */
START_TEST(test_messages)
{
    struct ts_valid_err err;
    Threadsync__Post p = good_post();
    p.author_name = "";
    ts_valid_post(&p, &err);
    ck_assert_str_eq(err.message, "author name must be 1 to 64 characters, got 0");
    p = good_post();
    p.body = "";
    ts_valid_post(&p, &err);
    ck_assert_str_eq(err.message, "body must be 1 to 16384 bytes, got 0");
    char title[TS_TITLE_MAX + 2];
    memset(title, 't', sizeof(title) - 1);
    title[sizeof(title) - 1] = '\0';
    p = good_post();
    p.title = title;
    ts_valid_post(&p, &err);
    ck_assert_str_eq(err.message, "title must be at most 512 bytes, got 513");
    char name[66 * 4 + 1];
    for (int i = 0; i < 66; i++)
        memcpy(name + (size_t)4 * i, "\xF0\x9F\x98\x80", 4);
    name[sizeof(name) - 1] = '\0';
    p = good_post();
    p.author_name = name;
    ts_valid_post(&p, &err);
    ck_assert_str_eq(err.message, "author name must be 1 to 64 characters, got 66");
    /* counted only once well-formed: one letter and 300 stray continuation
     * bytes are not "1 character" */
    char stray[302];
    stray[0] = 'a';
    memset(stray + 1, 0x80, 300);
    stray[301] = '\0';
    p.author_name = stray;
    ck_assert_int_eq(ts_valid_post(&p, &err), TS_E_INVALID_ARGUMENT);
    ck_assert_str_eq(err.message, "author name is not well-formed UTF-8 (byte 0x80 at offset 1)");
    p = good_post();
    p.thread_key = "bad \xC3";
    ts_valid_post(&p, &err);
    ck_assert_str_eq(err.message, "thread key is not well-formed UTF-8 (byte 0xC3 at offset 4)");
    ck_assert_int_eq(ts_valid_thread_key("", &err), TS_E_INVALID_ARGUMENT);
    ck_assert_str_eq(err.message, "thread key must be 1 to 256 bytes, got 0");
}
END_TEST

/* PROTOCOL.md section 3: client_name 0..128 bytes, token 0..256, both
 * single-line text. */
START_TEST(test_hello)
{
    struct ts_valid_err err;
    Threadsync__Hello h = THREADSYNC__HELLO__INIT;
    h.token = "ts_abc";
    char name[TS_CLIENT_NAME_MAX + 2];
    memset(name, 'n', sizeof(name) - 1);
    name[TS_CLIENT_NAME_MAX] = '\0';
    h.client_name = name;
    ck_assert_int_eq(ts_valid_hello(&h, &err), TS_OK);
    name[TS_CLIENT_NAME_MAX] = 'n';
    name[TS_CLIENT_NAME_MAX + 1] = '\0';
    ck_assert_int_eq(ts_valid_hello(&h, &err), TS_E_INVALID_ARGUMENT);
    ck_assert_str_eq(err.field, "client_name");
    ck_assert_str_eq(err.message, "client name must be at most 128 bytes, got 129");
    h.client_name = "cli\x01";
    ck_assert_int_eq(ts_valid_hello(&h, &err), TS_E_INVALID_ARGUMENT);
    h.client_name = "cli";
    char tok[TS_TOKEN_MAX + 2];
    memset(tok, 't', sizeof(tok) - 1);
    tok[sizeof(tok) - 1] = '\0';
    h.token = tok;
    ck_assert_int_eq(ts_valid_hello(&h, &err), TS_E_INVALID_ARGUMENT);
    ck_assert_str_eq(err.field, "token");
}
END_TEST

/* Post.reader_key: empty, or exactly 64 lowercase hex digits. */
START_TEST(test_reader_key)
{
    Threadsync__Post p = good_post();
    struct ts_valid_err err;
    char k[66];
    memset(k, 'a', 64);
    k[64] = '\0';
    p.reader_key = k;
    ck_assert_int_eq(ts_valid_post(&p, &err), TS_OK);
    const char *bad[] = {"abc", "A", "g"};
    for (size_t i = 0; i < 3; i++) {
        p.reader_key = (char *)bad[i];
        ck_assert_int_eq(ts_valid_post(&p, &err), TS_E_INVALID_ARGUMENT);
        ck_assert_str_eq(err.field, "reader_key");
    }
    k[10] = 'A';
    p.reader_key = k;
    ck_assert_int_eq(ts_valid_post(&p, &err), TS_E_INVALID_ARGUMENT);
    k[10] = 'a';
    k[64] = 'a';
    k[65] = '\0';
    ck_assert_int_eq(ts_valid_post(&p, &err), TS_E_INVALID_ARGUMENT);
    ck_assert(ts_valid_reader_key(""));
    ck_assert(ts_valid_reader_key(NULL));
}
END_TEST

START_TEST(test_token_name)
{
    ck_assert(ts_valid_token_name("ops-bot_1.a", 11));
    ck_assert(!ts_valid_token_name("", 0));
    ck_assert(!ts_valid_token_name("has space", 9));
    ck_assert(!ts_valid_token_name("slash/", 6));
    ck_assert(!ts_valid_token_name("caf\xc3\xa9", 5)); /* ASCII only */
    char name[TS_TOKEN_NAME_MAX + 2];
    memset(name, 'a', sizeof(name));
    ck_assert(ts_valid_token_name(name, TS_TOKEN_NAME_MAX));
    ck_assert(!ts_valid_token_name(name, TS_TOKEN_NAME_MAX + 1));
    /* len, not the NUL, bounds the name */
    ck_assert(ts_valid_token_name("ab\n", 2));
    ck_assert(!ts_valid_token_name("ab\n", 3));
}
END_TEST

START_TEST(test_err_names)
{
    ck_assert_str_eq(ts_err_name(TS_E_NOT_FOUND), "NOT_FOUND");
    ck_assert_int_eq(ts_err_from_name("THREAD_LOCKED"), TS_E_THREAD_LOCKED);
    ck_assert_int_eq(ts_err_wire(TS_E_NOMEM), TS_E_INTERNAL);
    ck_assert_int_eq(ts_err_wire(TS_E_RATE_LIMITED), TS_E_RATE_LIMITED);
    ck_assert_int_eq(ts_err_wire(TS_E_AGAIN), TS_E_UNAVAILABLE);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ts_valid");
    TCase *tc = tcase_create("valid");
    tcase_add_test(tc, test_utf8_edges);
    tcase_add_test(tc, test_count);
    tcase_add_test(tc, test_text_controls);
    tcase_add_test(tc, test_bad_byte_at_every_offset);
    tcase_add_test(tc, test_post_ok);
    tcase_add_test(tc, test_post_limits);
    tcase_add_test(tc, test_err_names);
    tcase_add_test(tc, test_token_name);
    tcase_add_test(tc, test_reader_key);
    tcase_add_test(tc, test_control_characters);
    tcase_add_test(tc, test_idempotency_key_printable);
    tcase_add_test(tc, test_messages);
    tcase_add_test(tc, test_hello);
    suite_add_tcase(s, tc);
    return ts_check_run(s);
}
