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
    const char *field = "x";
    ck_assert_int_eq(ts_valid_post(&p, &field), TS_OK);
    ck_assert_ptr_null(field);
}
END_TEST

START_TEST(test_post_limits)
{
    const char *field;
    Threadsync__Post p = good_post();
    p.body = "";
    ck_assert_int_eq(ts_valid_post(&p, &field), TS_E_INVALID_ARGUMENT);
    ck_assert_str_eq(field, "body");

    char *big = malloc(TS_BODY_MAX + 2);
    memset(big, 'x', TS_BODY_MAX + 1);
    big[TS_BODY_MAX + 1] = '\0';
    p = good_post();
    p.body = big;
    ck_assert_int_eq(ts_valid_post(&p, &field), TS_E_INVALID_ARGUMENT);
    big[TS_BODY_MAX] = '\0';
    ck_assert_int_eq(ts_valid_post(&p, &field), TS_OK);
    free(big);

    /* 64 code points of 4 bytes each pass; 65 do not */
    char name[65 * 4 + 1];
    for (int i = 0; i < 65; i++)
        memcpy(name + (size_t)4 * i, "\xF0\x9F\x98\x80", 4);
    name[(size_t)64 * 4] = '\0';
    p = good_post();
    p.author_name = name;
    ck_assert_int_eq(ts_valid_post(&p, &field), TS_OK);
    name[(size_t)64 * 4] = 'x';
    name[64 * 4 + 1] = '\0';
    ck_assert_int_eq(ts_valid_post(&p, &field), TS_E_INVALID_ARGUMENT);
    ck_assert_str_eq(field, "author_name");

    p = good_post();
    p.author_name = "";
    ck_assert_int_eq(ts_valid_post(&p, &field), TS_E_INVALID_ARGUMENT);
    ck_assert_str_eq(field, "author_name");

    p = good_post();
    p.thread_key = "";
    ck_assert_int_eq(ts_valid_post(&p, &field), TS_E_INVALID_ARGUMENT);
    ck_assert_str_eq(field, "thread_key");

    p = good_post();
    p.idempotency_key = "";
    ck_assert_int_eq(ts_valid_post(&p, &field), TS_E_INVALID_ARGUMENT);
    ck_assert_str_eq(field, "idempotency_key");

    p = good_post();
    p.body = "bad \xC3";
    ck_assert_int_eq(ts_valid_post(&p, &field), TS_E_INVALID_ARGUMENT);
    ck_assert_str_eq(field, "body");

    p = good_post();
    p.author_name = "Ann\nEve";
    ck_assert_int_eq(ts_valid_post(&p, &field), TS_E_INVALID_ARGUMENT);
    ck_assert_str_eq(field, "author_name");
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
    tcase_add_test(tc, test_post_ok);
    tcase_add_test(tc, test_post_limits);
    tcase_add_test(tc, test_err_names);
    tcase_add_test(tc, test_token_name);
    suite_add_tcase(s, tc);
    return ts_check_run(s);
}
