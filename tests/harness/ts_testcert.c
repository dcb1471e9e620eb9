/*
 * ts_testcert: a CA, a leaf and an unrelated CA, generated per test run.
 * Keys are EC P-256 (fast to make, even under sanitizers).
 */
#include "ts_testcert.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    if (!ext)
        return -1;
    int ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

/* A certificate for key, signed by issuer_key (self-signed when issuer is
 * NULL). serial keeps CA and leaf apart in the verifier's eyes. */
static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key,
                       long serial, int is_ca)
{
    X509 *c = X509_new();
    if (!c)
        return NULL;
    X509_set_version(c, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(c), serial);
    X509_gmtime_adj(X509_getm_notBefore(c), -3600);
    X509_gmtime_adj(X509_getm_notAfter(c), 86400);
    X509_set_pubkey(c, key);
    X509_NAME *name = X509_get_subject_name(c);
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"threadsync tests",
                               -1, -1, 0);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(c, issuer ? X509_get_subject_name(issuer) : name);
    X509 *iss = issuer ? issuer : c;
    int rc = 0;
    rc |= add_ext(c, iss, NID_subject_key_identifier, "hash");
    rc |= add_ext(c, iss, NID_authority_key_identifier, "keyid:always");
    if (is_ca) {
        rc |= add_ext(c, iss, NID_basic_constraints, "critical,CA:TRUE");
        rc |= add_ext(c, iss, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
        rc |= add_ext(c, iss, NID_basic_constraints, "critical,CA:FALSE");
        rc |= add_ext(c, iss, NID_key_usage, "critical,digitalSignature");
        rc |= add_ext(c, iss, NID_ext_key_usage, "serverAuth,clientAuth");
        rc |= add_ext(c, iss, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1");
    }
    if (rc != 0 || !X509_sign(c, issuer_key, EVP_sha256())) {
        X509_free(c);
        return NULL;
    }
    return c;
}

static int write_cert(const char *dir, const char *file, X509 *c)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    int ok = PEM_write_X509(f, c);
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

static int write_key(const char *dir, const char *file, EVP_PKEY *k)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    int ok = PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

int ts_testcert_make(const char *dir)
{
    int rc = -1;
    EVP_PKEY *ca_key = EVP_EC_gen("P-256");
    EVP_PKEY *leaf_key = EVP_EC_gen("P-256");
    EVP_PKEY *other_key = EVP_EC_gen("P-256");
    X509 *ca = NULL, *leaf = NULL, *other = NULL;
    if (!ca_key || !leaf_key || !other_key)
        goto out;
    ca = make_cert(ca_key, "threadsync test CA", NULL, ca_key, 1, 1);
    if (!ca)
        goto out;
    leaf = make_cert(leaf_key, "localhost", ca, ca_key, 2, 0);
    other = make_cert(other_key, "threadsync other CA", NULL, other_key, 3, 1);
    if (!leaf || !other)
        goto out;
    if (write_cert(dir, "ca.pem", ca) || write_cert(dir, "server.pem", leaf) ||
        write_key(dir, "server.key", leaf_key) || write_cert(dir, "other-ca.pem", other))
        goto out;
    rc = 0;
out:
    X509_free(ca);
    X509_free(leaf);
    X509_free(other);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(leaf_key);
    EVP_PKEY_free(other_key);
    return rc;
}

char *ts_testcert_dir(char *buf, size_t size)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(buf, size, "%s/ts_testcert.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(buf))
        return NULL;
    if (ts_testcert_make(buf) != 0) {
        ts_testcert_remove(buf);
        return NULL;
    }
    return buf;
}

void ts_testcert_remove(const char *dir)
{
    static const char *const files[] = {"ca.pem", "server.pem", "server.key", "other-ca.pem"};
    char path[PATH_MAX];
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}
