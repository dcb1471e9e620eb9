/*
 * ts_web_form: form and query decoding, cookies, the nonce's CSRF token
 * (bound to thread and nonce, expiring, compared whole) and the idempotency
 * key derived from the nonce (same form, same key; any other form, another).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>
#include <unistd.h>

#include "ts_check_main.h"
#include "ts_err.h"
#include "ts_web_form.h"

START_TEST(test_parse)
{
    const char *s = "name=Ann+Lee&body=caf%C3%A9+%26+%22q%22%0D%0Aline&empty=&flag&&parent=12";
    struct ts_web_kv *kv;
    size_t n;
    ck_assert_int_eq(ts_web_form_parse(s, strlen(s), 16, &kv, &n), TS_OK);
    ck_assert_uint_eq(n, 5);
    ck_assert_str_eq(ts_web_kv_get(kv, n, "name"), "Ann Lee");
    ck_assert_str_eq(ts_web_kv_get(kv, n, "body"), "caf\xC3\xA9 & \"q\"\r\nline");
    ck_assert_str_eq(ts_web_kv_get(kv, n, "empty"), "");
    ck_assert_str_eq(ts_web_kv_get(kv, n, "flag"), "");
    ck_assert_str_eq(ts_web_kv_get(kv, n, "parent"), "12");
    ck_assert_ptr_null(ts_web_kv_get(kv, n, "nope"));
    ts_web_kv_free(kv, n);

    /* Repeated names: the first wins for _get. */
    s = "t=a&t=b";
    ck_assert_int_eq(ts_web_form_parse(s, strlen(s), 16, &kv, &n), TS_OK);
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(ts_web_kv_get(kv, n, "t"), "a");
    ck_assert_str_eq(kv[1].value, "b");
    ts_web_kv_free(kv, n);
}
END_TEST

START_TEST(test_parse_refuses)
{
    struct ts_web_kv *kv = (void *)1;
    size_t n = 9;
    ck_assert_int_eq(ts_web_form_parse("a=%zz", 5, 16, &kv, &n), TS_E_INVALID_ARGUMENT);
    ck_assert_ptr_null(kv);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(ts_web_form_parse("a=%4", 4, 16, &kv, &n), TS_E_INVALID_ARGUMENT);
    ck_assert_int_eq(ts_web_form_parse("a=%00", 5, 16, &kv, &n), TS_E_INVALID_ARGUMENT);
    ck_assert_int_eq(ts_web_form_parse("a=1&b=2&c=3", 11, 2, &kv, &n), TS_E_TOO_LARGE);
    /* Not NUL-terminated input: only len bytes are read. */
    char buf[4] = {'a', '=', 'b', 'X'};
    ck_assert_int_eq(ts_web_form_parse(buf, 3, 2, &kv, &n), TS_OK);
    ck_assert_str_eq(kv[0].value, "b");
    ts_web_kv_free(kv, n);
}
END_TEST

START_TEST(test_cookie)
{
    const char *h = "a=1; ts_ek_12=abc; ts_ek_1=zz;x=";
    char out[8];
    ck_assert_int_eq(ts_web_cookie_get(h, strlen(h), "ts_ek_1", out, sizeof(out)), TS_OK);
    ck_assert_str_eq(out, "zz");
    ck_assert_int_eq(ts_web_cookie_get(h, strlen(h), "ts_ek_12", out, sizeof(out)), TS_OK);
    ck_assert_str_eq(out, "abc");
    ck_assert_int_eq(ts_web_cookie_get(h, strlen(h), "x", out, sizeof(out)), TS_OK);
    ck_assert_str_eq(out, "");
    ck_assert_int_eq(ts_web_cookie_get(h, strlen(h), "ts_ek", out, sizeof(out)), TS_E_NOT_FOUND);
    ck_assert_int_eq(ts_web_cookie_get(h, strlen(h), "ts_ek_12", out, 3), TS_E_TOO_LARGE);
}
END_TEST

static const uint8_t secret[TS_WEB_SECRET_LEN] = {1, 2, 3};

START_TEST(test_csrf)
{
    char nonce[TS_WEB_NONCE_LEN], csrf[TS_WEB_MAC_HEX];
    ck_assert_int_eq(ts_web_nonce_new(1000000, nonce), TS_OK);
    ts_web_csrf(secret, "site/a", nonce, csrf);
    ck_assert_uint_eq(strlen(csrf), 64);
    ck_assert_int_eq(ts_web_csrf_check(secret, "site/a", nonce, csrf, 1000000), TS_OK);
    ck_assert_int_eq(ts_web_csrf_check(secret, "site/a", nonce, csrf, 1000000 + 3600), TS_OK);
    /* Another thread, another secret, a changed nonce or token: refused. */
    ck_assert_int_eq(ts_web_csrf_check(secret, "site/b", nonce, csrf, 1000000), TS_E_FORBIDDEN);
    uint8_t other[TS_WEB_SECRET_LEN] = {9};
    ck_assert_int_eq(ts_web_csrf_check(other, "site/a", nonce, csrf, 1000000), TS_E_FORBIDDEN);
    char n2[TS_WEB_NONCE_LEN];
    strcpy(n2, nonce);
    n2[strlen(n2) - 1] = n2[strlen(n2) - 1] == '0' ? '1' : '0';
    ck_assert_int_eq(ts_web_csrf_check(secret, "site/a", n2, csrf, 1000000), TS_E_FORBIDDEN);
    char c2[TS_WEB_MAC_HEX];
    strcpy(c2, csrf);
    c2[0] = c2[0] == 'a' ? 'b' : 'a';
    ck_assert_int_eq(ts_web_csrf_check(secret, "site/a", nonce, c2, 1000000), TS_E_FORBIDDEN);
    ck_assert_int_eq(ts_web_csrf_check(secret, "site/a", nonce, "", 1000000), TS_E_FORBIDDEN);
    ck_assert_int_eq(ts_web_csrf_check(secret, "site/a", NULL, csrf, 1000000), TS_E_FORBIDDEN);
    /* Expired, and from the future. */
    ck_assert_int_eq(
        ts_web_csrf_check(secret, "site/a", nonce, csrf, 1000000 + TS_WEB_NONCE_TTL_S + 1),
        TS_E_FORBIDDEN);
    ck_assert_int_eq(ts_web_csrf_check(secret, "site/a", nonce, csrf, 1000000 - 120),
                     TS_E_FORBIDDEN);
    /* A nonce someone made up, with its MAC computed without the secret. */
    ck_assert_int_eq(ts_web_csrf_check(secret, "site/a", "junk", csrf, 1000000), TS_E_FORBIDDEN);
}
END_TEST

START_TEST(test_idempotency_key)
{
    char n1[TS_WEB_NONCE_LEN], n2[TS_WEB_NONCE_LEN];
    ck_assert_int_eq(ts_web_nonce_new(5, n1), TS_OK);
    ck_assert_int_eq(ts_web_nonce_new(5, n2), TS_OK);
    ck_assert_str_ne(n1, n2); /* fresh each time */
    char a[TS_WEB_IDEM_HEX], b[TS_WEB_IDEM_HEX], c[TS_WEB_IDEM_HEX], d[TS_WEB_IDEM_HEX];
    ts_web_idem_key(secret, "k", n1, a);
    ts_web_idem_key(secret, "k", n1, b);
    ts_web_idem_key(secret, "k", n2, c);
    ts_web_idem_key(secret, "k2", n1, d);
    ck_assert_uint_eq(strlen(a), 48); /* within Post.idempotency_key's 64 */
    ck_assert_str_eq(a, b);           /* a double submit is a retry */
    ck_assert_str_ne(a, c);
    ck_assert_str_ne(a, d);
    /* Not the CSRF token either (which the page shows). */
    char csrf[TS_WEB_MAC_HEX];
    ts_web_csrf(secret, "k", n1, csrf);
    ck_assert_int_ne(strncmp(csrf, a, 48), 0);
}
END_TEST

START_TEST(test_secret_file)
{
    char dir[] = "/tmp/ts_web_form_testXXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    uint8_t s1[TS_WEB_SECRET_LEN], s2[TS_WEB_SECRET_LEN];
    ck_assert_int_eq(ts_web_secret_load(dir, s1), TS_OK);
    ck_assert_int_eq(ts_web_secret_load(dir, s2), TS_OK);
    ck_assert_int_eq(memcmp(s1, s2, sizeof(s1)), 0); /* kept across restarts */
    char path[256];
    snprintf(path, sizeof(path), "%s/web.secret", dir);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    FILE *f = fopen(path, "w");
    fputs("short", f);
    fclose(f);
    ck_assert_int_eq(ts_web_secret_load(dir, s2), TS_E_CONFIG);
    unlink(path);
    rmdir(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ts_web_form");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_parse);
    tcase_add_test(tc, test_parse_refuses);
    tcase_add_test(tc, test_cookie);
    tcase_add_test(tc, test_csrf);
    tcase_add_test(tc, test_idempotency_key);
    tcase_add_test(tc, test_secret_file);
    suite_add_tcase(s, tc);
    return ts_check_run(s);
}
