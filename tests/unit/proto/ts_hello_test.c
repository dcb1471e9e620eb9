/*
 * ts_hello: the Hello frame survives a pack/unpack round trip with exactly
 * one version offered and the name and token given (a NULL token stays
 * absent); each kind of answer gets its verdict: a Welcome with the offered
 * version (and the Welcome handed back), another version, an Error with and
 * without a code, and a frame that is neither.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "ts_check_main.h"
#include "ts_err.h"
#include "ts_frame.h"
#include "ts_hello.h"

START_TEST(test_frame_round_trip)
{
    Threadsync__Frame f;
    Threadsync__Hello h;
    ts_hello_frame(&f, &h, "unit", "tok-1");
    uint8_t buf[256];
    size_t n = ts_frame_pack(&f, buf);
    Threadsync__Frame *in;
    const char *bad = NULL;
    ck_assert_int_eq(ts_frame_unpack(buf + TS_FRAME_HEADER, n - TS_FRAME_HEADER, &in, &bad), TS_OK);
    ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_HELLO);
    ck_assert_uint_eq(in->hello->min_version, TS_PROTOCOL_VERSION);
    ck_assert_uint_eq(in->hello->max_version, TS_PROTOCOL_VERSION);
    ck_assert_str_eq(in->hello->client_name, "unit");
    ck_assert_str_eq(in->hello->token, "tok-1");
    ts_frame_free(in);

    ts_hello_frame(&f, &h, "anon", NULL);
    n = ts_frame_pack(&f, buf);
    ck_assert_int_eq(ts_frame_unpack(buf + TS_FRAME_HEADER, n - TS_FRAME_HEADER, &in, &bad), TS_OK);
    ck_assert_str_eq(in->hello->token, "");
    ts_frame_free(in);
}
END_TEST

START_TEST(test_answers)
{
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Welcome w = THREADSYNC__WELCOME__INIT;
    const Threadsync__Welcome *got = (const Threadsync__Welcome *)&f; /* not NULL */
    f.msg_case = THREADSYNC__FRAME__MSG_WELCOME;
    f.welcome = &w;
    w.version = TS_PROTOCOL_VERSION;
    ck_assert_int_eq(ts_hello_answer(&f, &got), TS_OK);
    ck_assert_ptr_eq(got, &w);
    ck_assert_int_eq(ts_hello_answer(&f, NULL), TS_OK);

    w.version = TS_PROTOCOL_VERSION + 1;
    ck_assert_int_eq(ts_hello_answer(&f, &got), TS_E_UNSUPPORTED_VERSION);
    ck_assert_ptr_null(got);

    Threadsync__Error e = THREADSYNC__ERROR__INIT;
    f.msg_case = THREADSYNC__FRAME__MSG_ERROR;
    f.error = &e;
    e.code = THREADSYNC__ERROR_CODE__UNAUTHENTICATED;
    ck_assert_int_eq(ts_hello_answer(&f, &got), TS_E_UNAUTHENTICATED);
    ck_assert_ptr_null(got);
    e.code = (Threadsync__ErrorCode)0;
    ck_assert_int_eq(ts_hello_answer(&f, &got), TS_E_INTERNAL);

    Threadsync__Ping p = THREADSYNC__PING__INIT;
    f.msg_case = THREADSYNC__FRAME__MSG_PING;
    f.ping = &p;
    ck_assert_int_eq(ts_hello_answer(&f, &got), TS_E_BAD_FRAME);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ts_hello");
    TCase *tc = tcase_create("hello");
    tcase_add_test(tc, test_frame_round_trip);
    tcase_add_test(tc, test_answers);
    suite_add_tcase(s, tc);
    return ts_check_run(s);
}
