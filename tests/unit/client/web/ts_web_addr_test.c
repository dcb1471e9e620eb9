/*
 * ts_web_addr: the reader's address (peer, or X-Forwarded-For only from a
 * trusted proxy, right-most untrusted entry) and the reader key (stable per
 * address and secret, hex, distinct across addresses and secrets).
 */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <string.h>

#include "ts_check_main.h"
#include "ts_err.h"
#include "ts_web_addr.h"

static struct sockaddr_in v4(const char *s)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    inet_pton(AF_INET, s, &a.sin_addr);
    return a;
}

static void expect(const unsigned char got[16], const char *want)
{
    unsigned char w[16];
    ck_assert_int_eq(ts_web_addr_parse(want, strlen(want), w), TS_OK);
    ck_assert_int_eq(memcmp(got, w, 16), 0);
}

START_TEST(test_parse)
{
    unsigned char a[16], b[16];
    ck_assert_int_eq(ts_web_addr_parse(" 1.2.3.4 ", 9, a), TS_OK);
    ck_assert_int_eq(ts_web_addr_parse("::ffff:1.2.3.4", 14, b), TS_OK);
    ck_assert_int_eq(memcmp(a, b, 16), 0); /* one reader, either spelling */
    ck_assert_int_eq(ts_web_addr_parse("2001:db8::1", 11, a), TS_OK);
    ck_assert_int_eq(ts_web_addr_parse("", 0, a), TS_E_INVALID_ARGUMENT);
    ck_assert_int_eq(ts_web_addr_parse("1.2.3.4:80", 10, a), TS_E_INVALID_ARGUMENT);
    ck_assert_int_eq(ts_web_addr_parse("unknown", 7, a), TS_E_INVALID_ARGUMENT);

    struct ts_web_proxies p;
    ck_assert_int_eq(ts_web_proxies_parse(NULL, &p), TS_OK);
    ck_assert_uint_eq(p.n, 0);
    ck_assert_int_eq(ts_web_proxies_parse("127.0.0.1, ::1", &p), TS_OK);
    ck_assert_uint_eq(p.n, 2);
    ck_assert_int_eq(ts_web_proxies_parse("127.0.0.1,nginx", &p), TS_E_CONFIG);
}
END_TEST

START_TEST(test_reader_addr)
{
    struct ts_web_proxies p;
    ck_assert_int_eq(ts_web_proxies_parse("127.0.0.1,10.0.0.2", &p), TS_OK);
    unsigned char out[16];
    const char *xff = "6.6.6.6, 203.0.113.9, 10.0.0.2";

    /* An untrusted peer's header is ignored. */
    struct sockaddr_in peer = v4("198.51.100.1");
    ts_web_reader_addr(&p, (struct sockaddr *)&peer, xff, strlen(xff), out);
    expect(out, "198.51.100.1");

    /* A trusted peer: the right-most entry no trusted proxy wrote, not what
     * the client claimed left of it. */
    peer = v4("127.0.0.1");
    ts_web_reader_addr(&p, (struct sockaddr *)&peer, xff, strlen(xff), out);
    expect(out, "203.0.113.9");
    ts_web_reader_addr(&p, (struct sockaddr *)&peer, NULL, 0, out);
    expect(out, "127.0.0.1");
    /* A malformed entry: the peer stands for the reader. */
    ts_web_reader_addr(&p, (struct sockaddr *)&peer, "garbage", 7, out);
    expect(out, "127.0.0.1");
    /* No trusted proxy configured: never believed. */
    struct ts_web_proxies none = {0};
    ts_web_reader_addr(&none, (struct sockaddr *)&peer, xff, strlen(xff), out);
    expect(out, "127.0.0.1");
}
END_TEST

START_TEST(test_reader_key)
{
    uint8_t s1[TS_WEB_SECRET_LEN], s2[TS_WEB_SECRET_LEN];
    memset(s1, 1, sizeof(s1));
    memset(s2, 2, sizeof(s2));
    unsigned char a[16], b[16];
    ts_web_addr_parse("203.0.113.1", 11, a);
    ts_web_addr_parse("203.0.113.2", 11, b);
    char k1[TS_WEB_READER_KEY_HEX + 1], k2[TS_WEB_READER_KEY_HEX + 1];
    ts_web_reader_key(s1, a, k1);
    ck_assert_uint_eq(strlen(k1), 64);
    ck_assert_uint_eq(strspn(k1, "0123456789abcdef"), 64);
    ts_web_reader_key(s1, a, k2);
    ck_assert_str_eq(k1, k2);
    ts_web_reader_key(s1, b, k2);
    ck_assert_str_ne(k1, k2);
    ts_web_reader_key(s2, a, k2);
    ck_assert_str_ne(k1, k2);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ts_web_addr");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_parse);
    tcase_add_test(tc, test_reader_addr);
    tcase_add_test(tc, test_reader_key);
    suite_add_tcase(s, tc);
    return ts_check_run(s);
}
