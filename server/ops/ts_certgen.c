/*
 * ts_certgen: key and certificate creation with OpenSSL 3's EVP and X509
 * APIs only (no EC_KEY, no deprecated calls).
 *
 * First-start logic, per pair (key, certificate):
 *   - certificate without key: refuse (TS_E_CONFIG); we never produce it,
 *     so someone else put it there and guessing would hide their mistake;
 *   - key without certificate: the remnant of a crash between the two
 *     writes; keep the key, issue the certificate;
 *   - neither: create both; both: load them and check they belong together.
 * A CA certificate created now carries a fresh random name, so a server
 * certificate issued under an earlier one could not chain to it; the server
 * certificate is therefore reissued whenever the CA certificate is created.
 */
#include "ts_certgen.h"

#include "ts_err.h"
#include "ts_file.h"
#include "ts_log.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define PEM_MAX ((size_t)64 * 1024)
#define DNS_MAX 253
/* Peers whose clocks run a little behind must not see "not yet valid". */
#define BACKDATE_SECONDS 3600

struct san {
    int is_ip;
    size_t ip_len; /* 4 or 16 */
    unsigned char ip[16];
    char dns[DNS_MAX + 1]; /* lowercased */
};

static int tls_fail(const char *what)
{
    char buf[256];
    unsigned long e = ERR_get_error();
    ERR_error_string_n(e, buf, sizeof(buf));
    TS_ERROR("event=certgen_failed step=%s openssl=\"%s\"", what, e ? buf : "none");
    ERR_clear_error();
    return TS_E_TLS;
}

static int valid_dns(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > DNS_MAX)
        return 0;
    size_t label = 0;
    for (size_t i = 0; i <= len; i++) {
        char c = s[i];
        if (c == '.' || c == '\0') {
            if (label == 0 || label > 63 || s[i - 1] == '-')
                return 0;
            label = 0;
            continue;
        }
        if (!(isalnum((unsigned char)c) || (c == '-' && label > 0)))
            return 0;
        label++;
    }
    return 1;
}

/* Parses one host into *out: an IPv4/IPv6 literal (brackets allowed around
 * IPv6) or a DNS name. Returns 0 when it is neither. */
static int san_parse(const char *host, struct san *out)
{
    memset(out, 0, sizeof(*out));
    char buf[DNS_MAX + 1];
    size_t len = strlen(host);
    if (len > DNS_MAX)
        return 0;
    if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
        memcpy(buf, host + 1, len - 2);
        buf[len - 2] = '\0';
    } else {
        memcpy(buf, host, len + 1);
    }
    if (inet_pton(AF_INET, buf, out->ip) == 1) {
        out->is_ip = 1;
        out->ip_len = 4;
        return 1;
    }
    if (inet_pton(AF_INET6, buf, out->ip) == 1) {
        out->is_ip = 1;
        out->ip_len = 16;
        return 1;
    }
    if (host[0] == '[') /* brackets are for IPv6 literals only */
        return 0;
    if (!valid_dns(buf))
        return 0;
    for (size_t i = 0; buf[i]; i++)
        out->dns[i] = (char)tolower((unsigned char)buf[i]);
    return 1;
}

static int san_same(const struct san *a, const struct san *b)
{
    if (a->is_ip != b->is_ip)
        return 0;
    if (a->is_ip)
        return a->ip_len == b->ip_len && memcmp(a->ip, b->ip, a->ip_len) == 0;
    return strcmp(a->dns, b->dns) == 0;
}

/* Appends host to list[0..*n) unless already there; list has room. */
static int san_add(struct san *list, size_t *n, const char *host)
{
    struct san s;
    if (!san_parse(host, &s))
        return 0;
    for (size_t i = 0; i < *n; i++)
        if (san_same(&list[i], &s))
            return 1;
    list[(*n)++] = s;
    return 1;
}

static int add_san_ext(X509 *x, const struct san *list, size_t n)
{
    GENERAL_NAMES *names = sk_GENERAL_NAME_new_null();
    if (names == NULL)
        return tls_fail("san_alloc");
    for (size_t i = 0; i < n; i++) {
        GENERAL_NAME *gn = GENERAL_NAME_new();
        ASN1_STRING *v = list[i].is_ip ? ASN1_OCTET_STRING_new() : ASN1_IA5STRING_new();
        int ok = gn != NULL && v != NULL;
        if (ok && list[i].is_ip)
            ok = ASN1_OCTET_STRING_set(v, list[i].ip, (int)list[i].ip_len);
        else if (ok)
            ok = ASN1_STRING_set(v, list[i].dns, -1);
        if (!ok) {
            GENERAL_NAME_free(gn);
            ASN1_STRING_free(v);
            GENERAL_NAMES_free(names);
            return tls_fail("san_entry");
        }
        GENERAL_NAME_set0_value(gn, list[i].is_ip ? GEN_IPADD : GEN_DNS, v);
        if (!sk_GENERAL_NAME_push(names, gn)) {
            GENERAL_NAME_free(gn);
            GENERAL_NAMES_free(names);
            return tls_fail("san_push");
        }
    }
    int ok = X509_add1_ext_i2d(x, NID_subject_alt_name, names, 0, X509V3_ADD_DEFAULT) == 1;
    GENERAL_NAMES_free(names);
    return ok ? TS_OK : tls_fail("san_add");
}

static int add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ext == NULL)
        return tls_fail(OBJ_nid2sn(nid));
    int ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? TS_OK : tls_fail(OBJ_nid2sn(nid));
}

static int set_serial(X509 *x)
{
    unsigned char raw[16];
    /* RFC 5280 forbids a zero serial; 2^-128 odds, but cheap to exclude. */
    do {
        if (RAND_bytes(raw, sizeof(raw)) != 1)
            return tls_fail("serial_rand");
    } while (memcmp(raw, (const unsigned char[16]){0}, sizeof(raw)) == 0);
    BIGNUM *bn = BN_bin2bn(raw, sizeof(raw), NULL);
    int ok = bn != NULL && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
    BN_free(bn);
    return ok ? TS_OK : tls_fail("serial");
}

static X509_NAME *make_name(const char *cn)
{
    X509_NAME *name = X509_NAME_new();
    if (name == NULL ||
        !X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"threadsync",
                                    -1, -1, 0) ||
        !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1,
                                    0)) {
        X509_NAME_free(name);
        return NULL;
    }
    return name;
}

/* A certificate for key named cn, valid for days, with serial and validity
 * set; issuer NULL means self-signed. Extensions are the caller's. */
static int cert_skeleton(EVP_PKEY *key, const char *cn, X509 *issuer, int days, X509 **out)
{
    *out = NULL;
    X509 *x = X509_new();
    X509_NAME *name = make_name(cn);
    if (x == NULL || name == NULL || !X509_set_version(x, X509_VERSION_3) ||
        !X509_set_subject_name(x, name) ||
        !X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name) ||
        !X509_set_pubkey(x, key) ||
        X509_gmtime_adj(X509_getm_notBefore(x), -BACKDATE_SECONDS) == NULL ||
        X509_time_adj_ex(X509_getm_notAfter(x), days, 0, NULL) == NULL) {
        X509_free(x);
        X509_NAME_free(name);
        return tls_fail("cert_fields");
    }
    X509_NAME_free(name);
    int rc = set_serial(x);
    if (rc != TS_OK) {
        X509_free(x);
        return rc;
    }
    *out = x;
    return TS_OK;
}

static int write_pem(const char *path, EVP_PKEY *key, X509 *cert)
{
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL)
        return tls_fail("bio");
    int ok = key ? PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL)
                 : PEM_write_bio_X509(bio, cert);
    if (!ok) {
        BIO_free(bio);
        return tls_fail("pem_write");
    }
    char *data;
    long len = BIO_get_mem_data(bio, &data);
    int rc = ts_file_write_atomic(path, data, (size_t)len, 0600);
    if (rc != TS_OK)
        TS_ERROR("event=certgen_write_failed path=%s errno=%d", path, errno);
    else
        TS_INFO("event=certgen_created path=%s", path);
    /* Scrub the private key's PEM copy before the memory BIO frees it. */
    OPENSSL_cleanse(data, (size_t)len);
    BIO_free(bio);
    return rc;
}

/* Loads a PEM key (want_key) or certificate. TS_E_NOT_FOUND when absent,
 * TS_E_CONFIG when it does not parse. */
static int read_pem(const char *path, int want_key, EVP_PKEY **key, X509 **cert)
{
    uint8_t *buf;
    size_t len;
    int rc = ts_file_read_all(path, PEM_MAX, &buf, &len);
    if (rc == TS_E_NOT_FOUND)
        return rc;
    if (rc != TS_OK) {
        TS_ERROR("event=certgen_read_failed path=%s err=%s", path, ts_err_name(rc));
        return rc == TS_E_TOO_LARGE ? TS_E_CONFIG : rc;
    }
    BIO *bio = BIO_new_mem_buf(buf, (int)len);
    int ok = 0;
    if (bio != NULL && want_key)
        ok = (*key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL)) != NULL;
    else if (bio != NULL)
        ok = (*cert = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL;
    BIO_free(bio);
    OPENSSL_cleanse(buf, len);
    free(buf);
    if (!ok) {
        tls_fail("pem_read");
        TS_ERROR("event=certgen_bad_pem path=%s", path);
        return TS_E_CONFIG;
    }
    return TS_OK;
}

static int file_exists(const char *path, int *exists)
{
    struct stat st;
    if (stat(path, &st) == 0) {
        *exists = 1;
        return TS_OK;
    }
    if (errno == ENOENT) {
        *exists = 0;
        return TS_OK;
    }
    TS_ERROR("event=certgen_stat_failed path=%s errno=%d", path, errno);
    return TS_E_IO;
}

static int new_key(EVP_PKEY **key)
{
    *key = EVP_EC_gen("P-256");
    return *key ? TS_OK : tls_fail("keygen");
}

/* Loads or creates the key at path. */
static int ensure_key(const char *path, int exists, EVP_PKEY **key, int *created)
{
    if (exists)
        return read_pem(path, 1, key, NULL);
    int rc = new_key(key);
    if (rc == TS_OK)
        rc = write_pem(path, *key, NULL);
    if (rc == TS_OK)
        *created = 1;
    return rc;
}

static int make_ca(EVP_PKEY *key, X509 **out)
{
    unsigned char r[4];
    char cn[64];
    if (RAND_bytes(r, sizeof(r)) != 1)
        return tls_fail("ca_name_rand");
    /* A random suffix keeps CAs of different installs apart in a trust store
     * that holds several: same names would make chain building guess. */
    snprintf(cn, sizeof(cn), "threadsync local CA %02x%02x%02x%02x", r[0], r[1], r[2], r[3]);
    X509 *x;
    int rc = cert_skeleton(key, cn, NULL, TS_CERTGEN_CA_DAYS, &x);
    if (rc == TS_OK)
        rc = add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE");
    if (rc == TS_OK)
        rc = add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign");
    if (rc == TS_OK)
        rc = add_ext(x, x, NID_subject_key_identifier, "hash");
    if (rc == TS_OK)
        rc = add_ext(x, x, NID_authority_key_identifier, "keyid:always");
    if (rc == TS_OK && X509_sign(x, key, EVP_sha256()) <= 0)
        rc = tls_fail("ca_sign");
    if (rc != TS_OK) {
        X509_free(x);
        return rc;
    }
    *out = x;
    return TS_OK;
}

static int make_leaf(EVP_PKEY *key, const char *cn, X509 *ca, EVP_PKEY *ca_key, const char *eku,
                     const struct san *sans, size_t n_sans, X509 **out)
{
    X509 *x;
    int rc = cert_skeleton(key, cn, ca, TS_CERTGEN_LEAF_DAYS, &x);
    if (rc != TS_OK)
        return rc;
    rc = add_ext(x, ca, NID_basic_constraints, "critical,CA:FALSE");
    if (rc == TS_OK)
        rc = add_ext(x, ca, NID_key_usage, "critical,digitalSignature");
    if (rc == TS_OK)
        rc = add_ext(x, ca, NID_ext_key_usage, eku);
    if (rc == TS_OK)
        rc = add_ext(x, ca, NID_subject_key_identifier, "hash");
    if (rc == TS_OK)
        rc = add_ext(x, ca, NID_authority_key_identifier, "keyid:always");
    if (rc == TS_OK && n_sans > 0)
        rc = add_san_ext(x, sans, n_sans);
    if (rc == TS_OK && X509_sign(x, ca_key, EVP_sha256()) <= 0)
        rc = tls_fail("leaf_sign");
    if (rc != TS_OK) {
        X509_free(x);
        return rc;
    }
    *out = x;
    return TS_OK;
}

static int join(char *dst, const char *dir, const char *name)
{
    int n = snprintf(dst, TS_CERTGEN_PATH_MAX, "%s/%s", dir, name);
    return n > 0 && n < TS_CERTGEN_PATH_MAX ? TS_OK : TS_E_INVALID_ARGUMENT;
}

static int ensure_dir(const char *dir)
{
    if (mkdir(dir, 0700) == 0) {
        TS_INFO("event=certgen_mkdir path=%s", dir);
        return TS_OK;
    }
    struct stat st;
    if (errno != EEXIST || stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        TS_ERROR("event=certgen_mkdir_failed path=%s errno=%d", dir, errno);
        return TS_E_IO;
    }
    if (st.st_mode & 077)
        TS_WARN("event=certgen_dir_open path=%s mode=%03o hint=\"keys live here; chmod 700\"", dir,
                (unsigned)(st.st_mode & 0777));
    return TS_OK;
}

/* Which of a key/certificate pair exist; a certificate alone is refused. */
static int pair_check(const char *key_path, const char *cert_path, int *key_exists,
                      int *cert_exists)
{
    int rc = file_exists(key_path, key_exists);
    if (rc == TS_OK)
        rc = file_exists(cert_path, cert_exists);
    if (rc == TS_OK && *cert_exists && !*key_exists) {
        TS_ERROR("event=certgen_key_missing cert=%s key=%s", cert_path, key_path);
        return TS_E_CONFIG;
    }
    return rc;
}

static int cert_matches_key(const char *path, X509 *cert, EVP_PKEY *key)
{
    if (X509_check_private_key(cert, key) == 1)
        return TS_OK;
    ERR_clear_error();
    TS_ERROR("event=certgen_key_mismatch cert=%s", path);
    return TS_E_CONFIG;
}

int ts_certgen_ensure(const char *dir, const char *const *hosts, size_t n_hosts,
                      struct ts_certgen_paths *out)
{
    memset(out, 0, sizeof(*out));
    if (join(out->ca_cert, dir, "ca.pem") || join(out->ca_key, dir, "ca.key") ||
        join(out->server_cert, dir, "server.pem") || join(out->server_key, dir, "server.key"))
        return TS_E_INVALID_ARGUMENT;

    struct san *sans = calloc(n_hosts + 3, sizeof(*sans));
    if (sans == NULL)
        return TS_E_NOMEM;
    size_t n_sans = 0;
    san_add(sans, &n_sans, "127.0.0.1");
    san_add(sans, &n_sans, "::1");
    san_add(sans, &n_sans, "localhost");
    for (size_t i = 0; i < n_hosts; i++) {
        if (!san_add(sans, &n_sans, hosts[i])) {
            char q[300];
            TS_ERROR("event=certgen_bad_host host=%s", ts_log_quote(hosts[i], q, sizeof(q)));
            free(sans);
            return TS_E_INVALID_ARGUMENT;
        }
    }

    EVP_PKEY *ca_key = NULL, *srv_key = NULL;
    X509 *ca = NULL, *srv = NULL;
    int ca_key_exists, ca_cert_exists, srv_key_exists, srv_cert_exists;
    int rc = ensure_dir(dir);
    if (rc == TS_OK)
        rc = pair_check(out->ca_key, out->ca_cert, &ca_key_exists, &ca_cert_exists);
    if (rc == TS_OK)
        rc = pair_check(out->server_key, out->server_cert, &srv_key_exists, &srv_cert_exists);
    if (rc == TS_OK)
        rc = ensure_key(out->ca_key, ca_key_exists, &ca_key, &out->created);
    if (rc == TS_OK && ca_cert_exists) {
        rc = read_pem(out->ca_cert, 0, NULL, &ca);
        if (rc == TS_OK)
            rc = cert_matches_key(out->ca_cert, ca, ca_key);
    } else if (rc == TS_OK) {
        rc = make_ca(ca_key, &ca);
        if (rc == TS_OK)
            rc = write_pem(out->ca_cert, NULL, ca);
        if (rc == TS_OK)
            out->created = 1;
    }
    if (rc == TS_OK)
        rc = ensure_key(out->server_key, srv_key_exists, &srv_key, &out->created);
    if (rc == TS_OK && srv_cert_exists && ca_cert_exists) {
        rc = read_pem(out->server_cert, 0, NULL, &srv);
        if (rc == TS_OK)
            rc = cert_matches_key(out->server_cert, srv, srv_key);
    } else if (rc == TS_OK) {
        rc = make_leaf(srv_key, "threadsyncd", ca, ca_key, "serverAuth,clientAuth", sans, n_sans,
                       &srv);
        if (rc == TS_OK)
            rc = write_pem(out->server_cert, NULL, srv);
        if (rc == TS_OK)
            out->created = 1;
    }
    X509_free(srv);
    X509_free(ca);
    EVP_PKEY_free(srv_key);
    EVP_PKEY_free(ca_key);
    free(sans);
    return rc;
}

static int valid_cn(const char *cn)
{
    size_t len = strlen(cn);
    if (len == 0 || len > 64)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (cn[i] < 0x20 || cn[i] > 0x7e)
            return 0;
    return 1;
}

int ts_certgen_client(const char *ca_cert, const char *ca_key, const char *cn, const char *cert_out,
                      const char *key_out)
{
    if (!valid_cn(cn))
        return TS_E_INVALID_ARGUMENT;
    int exists;
    int rc = file_exists(cert_out, &exists);
    if (rc != TS_OK)
        return rc;
    if (exists) {
        TS_ERROR("event=certgen_exists path=%s", cert_out);
        return TS_E_EXISTS;
    }
    struct san san = {0};
    size_t n_sans = valid_dns(cn) && san_parse(cn, &san) && !san.is_ip ? 1 : 0;

    EVP_PKEY *cakey = NULL, *key = NULL;
    X509 *ca = NULL, *x = NULL;
    rc = read_pem(ca_key, 1, &cakey, NULL);
    if (rc == TS_OK)
        rc = read_pem(ca_cert, 0, NULL, &ca);
    if (rc == TS_E_NOT_FOUND) {
        TS_ERROR("event=certgen_ca_missing cert=%s key=%s", ca_cert, ca_key);
        rc = TS_E_CONFIG;
    }
    if (rc == TS_OK)
        rc = cert_matches_key(ca_cert, ca, cakey);
    if (rc == TS_OK && X509_check_ca(ca) < 1) {
        TS_ERROR("event=certgen_not_ca cert=%s", ca_cert);
        rc = TS_E_CONFIG;
    }
    if (rc == TS_OK)
        rc = new_key(&key);
    if (rc == TS_OK)
        rc = make_leaf(key, cn, ca, cakey, "clientAuth,serverAuth", &san, n_sans, &x);
    if (rc == TS_OK)
        rc = write_pem(key_out, key, NULL);
    if (rc == TS_OK)
        rc = write_pem(cert_out, NULL, x);
    X509_free(x);
    X509_free(ca);
    EVP_PKEY_free(key);
    EVP_PKEY_free(cakey);
    return rc;
}
