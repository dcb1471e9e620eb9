/*
 * ts_certgen: first start creates a CA and a server certificate that chain,
 * carry the right names, usages, lifetimes and modes; a second start changes
 * nothing; crash remnants are completed; client/node certificates chain and
 * serve both ends of mTLS; a certificate from another CA does not verify.
 */
#define _XOPEN_SOURCE 700
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "ts_check_main.h"
#include "ts_certgen.h"
#include "ts_err.h"
#include "ts_file.h"
#include "ts_testnode.h"

static char root[64];
static char data[128];

static void setup(void)
{
    strcpy(root, "/tmp/ts_certgen_test.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(root));
    snprintf(data, sizeof(data), "%s/data", root);
}

static void teardown(void)
{
    ts_test_rmtree(root);
}

static X509 *load_cert(const char *path)
{
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    ck_assert_ptr_nonnull(x);
    return x;
}

static EVP_PKEY *load_key(const char *path)
{
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    ck_assert_ptr_nonnull(k);
    return k;
}

/* 1 when leaf chains to ca for the given X509_PURPOSE_*. */
static int verifies(X509 *ca, X509 *leaf, int purpose)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    ck_assert_int_eq(X509_STORE_add_cert(store, ca), 1);
    ck_assert_int_eq(X509_STORE_CTX_init(ctx, store, leaf, NULL), 1);
    ck_assert_int_eq(X509_STORE_CTX_set_purpose(ctx, purpose), 1);
    int ok = X509_verify_cert(ctx);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    return ok == 1;
}

static void assert_mode(const char *path, unsigned mode)
{
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_uint_eq(st.st_mode & 0777, mode);
}

static void assert_p256(const char *path)
{
    EVP_PKEY *k = load_key(path);
    char group[64];
    size_t len;
    ck_assert(EVP_PKEY_is_a(k, "EC"));
    ck_assert_int_eq(EVP_PKEY_get_group_name(k, group, sizeof(group), &len), 1);
    ck_assert_str_eq(group, "prime256v1");
    EVP_PKEY_free(k);
}

static void assert_lifetime(X509 *x, int days)
{
    int d, s;
    ck_assert_int_eq(ASN1_TIME_diff(&d, &s, X509_get0_notBefore(x), X509_get0_notAfter(x)), 1);
    /* days plus the one-hour backdating of notBefore */
    ck_assert_int_eq(d, days);
    ck_assert_int_eq(s, 3600);
    ck_assert_int_eq(X509_cmp_current_time(X509_get0_notBefore(x)), -1);
}

static int serial_bits(X509 *x)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    ck_assert_ptr_nonnull(bn);
    int bits = BN_num_bits(bn);
    BN_free(bn);
    return bits;
}

static char *slurp(const char *path, size_t *len)
{
    uint8_t *buf;
    ck_assert_int_eq(ts_file_read_all(path, 1 << 20, &buf, len), TS_OK);
    return (char *)buf;
}

static const char *const hosts[] = {"Example.TEST", "10.1.2.3", "[fe80::1]", "localhost",
                                    "127.0.0.1"};

START_TEST(test_first_start)
{
    struct ts_certgen_paths p;
    ck_assert_int_eq(ts_certgen_ensure(data, hosts, 5, &p), TS_OK);
    ck_assert_int_eq(p.created, 1);
    assert_mode(data, 0700);
    const char *files[] = {p.ca_cert, p.ca_key, p.server_cert, p.server_key};
    for (int i = 0; i < 4; i++) {
        ck_assert_ptr_nonnull(strstr(files[i], data));
        assert_mode(files[i], 0600);
    }
    assert_p256(p.ca_key);
    assert_p256(p.server_key);

    X509 *ca = load_cert(p.ca_cert), *srv = load_cert(p.server_cert);
    ck_assert_int_ge(X509_check_ca(ca), 1);
    ck_assert(X509_get_key_usage(ca) & KU_KEY_CERT_SIGN);
    ck_assert_int_eq(X509_check_ca(srv), 0);
    ck_assert(X509_get_extended_key_usage(srv) & XKU_SSL_SERVER);
    /* the node presents it on both ends of the raft port's mutual TLS */
    ck_assert(X509_get_extended_key_usage(srv) & XKU_SSL_CLIENT);
    assert_lifetime(ca, 3650);
    assert_lifetime(srv, 730);
    /* 128 random bits: below 2^128, and above 2^64 except with odds 2^-64. */
    ck_assert_int_le(serial_bits(ca), 128);
    ck_assert_int_gt(serial_bits(ca), 64);
    ck_assert_int_gt(serial_bits(srv), 64);
    ck_assert_int_ne(ASN1_INTEGER_cmp(X509_get0_serialNumber(ca), X509_get0_serialNumber(srv)), 0);

    ck_assert(verifies(ca, srv, X509_PURPOSE_SSL_SERVER));
    EVP_PKEY *k = load_key(p.server_key);
    ck_assert_int_eq(X509_check_private_key(srv, k), 1);
    EVP_PKEY_free(k);

    ck_assert_int_eq(X509_check_ip_asc(srv, "127.0.0.1", 0), 1);
    ck_assert_int_eq(X509_check_ip_asc(srv, "::1", 0), 1);
    ck_assert_int_eq(X509_check_ip_asc(srv, "10.1.2.3", 0), 1);
    ck_assert_int_eq(X509_check_ip_asc(srv, "fe80::1", 0), 1);
    ck_assert_int_eq(X509_check_ip_asc(srv, "10.1.2.4", 0), 0);
    ck_assert_int_eq(X509_check_host(srv, "localhost", 0, 0, NULL), 1);
    ck_assert_int_eq(X509_check_host(srv, "example.test", 0, 0, NULL), 1);
    ck_assert_int_eq(X509_check_host(srv, "evil.test", 0, 0, NULL), 0);
    /* Duplicates were dropped: 127.0.0.1, ::1, localhost + 3 new names. */
    GENERAL_NAMES *names = X509_get_ext_d2i(srv, NID_subject_alt_name, NULL, NULL);
    ck_assert_ptr_nonnull(names);
    ck_assert_int_eq(sk_GENERAL_NAME_num(names), 6);
    GENERAL_NAMES_free(names);
    X509_free(ca);
    X509_free(srv);
}
END_TEST

START_TEST(test_second_start_changes_nothing)
{
    struct ts_certgen_paths p, q;
    ck_assert_int_eq(ts_certgen_ensure(data, NULL, 0, &p), TS_OK);
    ck_assert_int_eq(p.created, 1);
    const char *files[] = {p.ca_cert, p.ca_key, p.server_cert, p.server_key};
    char *before[4];
    size_t blen[4];
    for (int i = 0; i < 4; i++)
        before[i] = slurp(files[i], &blen[i]);
    ck_assert_int_eq(ts_certgen_ensure(data, hosts, 5, &q), TS_OK);
    ck_assert_int_eq(q.created, 0);
    ck_assert_str_eq(q.server_cert, p.server_cert);
    for (int i = 0; i < 4; i++) {
        size_t len;
        char *after = slurp(files[i], &len);
        ck_assert_uint_eq(len, blen[i]);
        ck_assert_mem_eq(after, before[i], len);
        free(after);
        free(before[i]);
    }
}
END_TEST

START_TEST(test_crash_remnants)
{
    struct ts_certgen_paths p;
    ck_assert_int_eq(ts_certgen_ensure(data, NULL, 0, &p), TS_OK);
    size_t klen, len;
    char *key = slurp(p.server_key, &klen);
    char *ca_before = slurp(p.ca_cert, &len);

    /* Key without certificate: the key is kept, a certificate issued. */
    ck_assert_int_eq(unlink(p.server_cert), 0);
    ck_assert_int_eq(ts_certgen_ensure(data, NULL, 0, &p), TS_OK);
    ck_assert_int_eq(p.created, 1);
    char *key2 = slurp(p.server_key, &len);
    ck_assert_uint_eq(len, klen);
    ck_assert_mem_eq(key2, key, len);
    char *ca_after = slurp(p.ca_cert, &len);
    ck_assert_str_eq(ca_after, ca_before);
    X509 *ca = load_cert(p.ca_cert), *srv = load_cert(p.server_cert);
    ck_assert(verifies(ca, srv, X509_PURPOSE_SSL_SERVER));
    X509_free(srv);
    X509_free(ca);

    /* CA key without CA certificate: new CA certificate, server reissued. */
    ck_assert_int_eq(unlink(p.ca_cert), 0);
    ck_assert_int_eq(ts_certgen_ensure(data, NULL, 0, &p), TS_OK);
    ca = load_cert(p.ca_cert);
    srv = load_cert(p.server_cert);
    ck_assert(verifies(ca, srv, X509_PURPOSE_SSL_SERVER));
    X509_free(srv);
    X509_free(ca);

    /* Certificate without key: refused, nothing guessed. */
    ck_assert_int_eq(unlink(p.server_key), 0);
    ck_assert_int_eq(ts_certgen_ensure(data, NULL, 0, &p), TS_E_CONFIG);
    ck_assert_int_eq(access(p.server_key, F_OK), -1);
    free(key);
    free(key2);
    free(ca_before);
    free(ca_after);
}
END_TEST

START_TEST(test_bad_host)
{
    const char *bad[] = {"", "bad_host", "-x.test", "a..b", "[example.test]", "x y"};
    struct ts_certgen_paths p;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(ts_certgen_ensure(data, &bad[i], 1, &p) == TS_E_INVALID_ARGUMENT,
                      "accepted %s", bad[i]);
    ck_assert_int_eq(access(data, F_OK), -1); /* nothing touched */
}
END_TEST

START_TEST(test_client_certs)
{
    struct ts_certgen_paths p;
    ck_assert_int_eq(ts_certgen_ensure(data, NULL, 0, &p), TS_OK);
    char cert[256], key[256];
    snprintf(cert, sizeof(cert), "%s/node1.pem", root);
    snprintf(key, sizeof(key), "%s/node1.key", root);
    ck_assert_int_eq(ts_certgen_client(p.ca_cert, p.ca_key, "node1", cert, key), TS_OK);
    assert_mode(cert, 0600);
    assert_mode(key, 0600);
    assert_p256(key);
    X509 *ca = load_cert(p.ca_cert), *x = load_cert(cert);
    ck_assert(verifies(ca, x, X509_PURPOSE_SSL_CLIENT));
    ck_assert(verifies(ca, x, X509_PURPOSE_SSL_SERVER));
    uint32_t xku = X509_get_extended_key_usage(x);
    ck_assert((xku & XKU_SSL_CLIENT) && (xku & XKU_SSL_SERVER));
    ck_assert_int_eq(X509_check_host(x, "node1", 0, 0, NULL), 1);
    ck_assert_int_eq(X509_check_host(x, "node2", 0, 0, NULL), 0);
    assert_lifetime(x, 730);
    EVP_PKEY *k = load_key(key);
    ck_assert_int_eq(X509_check_private_key(x, k), 1);
    EVP_PKEY_free(k);
    X509_free(x);

    /* Existing certificate: refused. */
    ck_assert_int_eq(ts_certgen_client(p.ca_cert, p.ca_key, "node1", cert, key), TS_E_EXISTS);

    /* A CN that is not a DNS name: no SAN, still a valid client certificate. */
    snprintf(cert, sizeof(cert), "%s/alice.pem", root);
    snprintf(key, sizeof(key), "%s/alice.key", root);
    ck_assert_int_eq(ts_certgen_client(p.ca_cert, p.ca_key, "Alice Smith", cert, key), TS_OK);
    x = load_cert(cert);
    ck_assert(verifies(ca, x, X509_PURPOSE_SSL_CLIENT));
    ck_assert_ptr_null(X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL));
    X509_free(x);

    /* Bad inputs: an empty CN, a leaf posing as CA, a missing CA. */
    snprintf(cert, sizeof(cert), "%s/c.pem", root);
    snprintf(key, sizeof(key), "%s/c.key", root);
    ck_assert_int_eq(ts_certgen_client(p.ca_cert, p.ca_key, "", cert, key), TS_E_INVALID_ARGUMENT);
    ck_assert_int_eq(ts_certgen_client(p.server_cert, p.server_key, "c", cert, key), TS_E_CONFIG);
    ck_assert_int_eq(ts_certgen_client(p.ca_cert, p.server_key, "c", cert, key), TS_E_CONFIG);
    ck_assert_int_eq(ts_certgen_client("/nonexistent/ca.pem", p.ca_key, "c", cert, key),
                     TS_E_CONFIG);
    ck_assert_int_eq(access(cert, F_OK), -1);
    X509_free(ca);
}
END_TEST

START_TEST(test_other_ca_refused)
{
    char other[160];
    snprintf(other, sizeof(other), "%s/other", root);
    struct ts_certgen_paths a, b;
    ck_assert_int_eq(ts_certgen_ensure(data, NULL, 0, &a), TS_OK);
    ck_assert_int_eq(ts_certgen_ensure(other, NULL, 0, &b), TS_OK);
    X509 *ca_a = load_cert(a.ca_cert), *srv_b = load_cert(b.server_cert);
    ck_assert(!verifies(ca_a, srv_b, X509_PURPOSE_SSL_SERVER));
    X509_free(ca_a);
    X509_free(srv_b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ts_certgen");
    TCase *tc = tcase_create("certgen");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_first_start);
    tcase_add_test(tc, test_second_start_changes_nothing);
    tcase_add_test(tc, test_crash_remnants);
    tcase_add_test(tc, test_bad_host);
    tcase_add_test(tc, test_client_certs);
    tcase_add_test(tc, test_other_ca_refused);
    suite_add_tcase(s, tc);
    return ts_check_run(s);
}
