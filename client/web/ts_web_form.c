/*
 * ts_web_form: form and cookie parsing, and the nonce's MACs (see
 * ts_web_form.h). Parsing copies; nothing here keeps state.
 */
#include "ts_web_form.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ts_err.h"
#include "ts_file.h"
#include "ts_hex.h"

static int hexval(char c)
{
    static const char digits[] = "0123456789abcdef";
    const char *d = c ? strchr(digits, tolower((unsigned char)c)) : NULL;
    return d ? (int)(d - digits) : -1;
}

/* Decodes s[0..len) into a new string. */
static int decode(const char *s, size_t len, char **out)
{
    char *d = malloc(len + 1);
    if (!d)
        return TS_E_NOMEM;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            int hi = i + 2 < len ? hexval(s[i + 1]) : -1;
            int lo = i + 2 < len ? hexval(s[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                free(d);
                return TS_E_INVALID_ARGUMENT;
            }
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        if (c == '\0') {
            free(d);
            return TS_E_INVALID_ARGUMENT;
        }
        d[o++] = c;
    }
    d[o] = '\0';
    *out = d;
    return TS_OK;
}

void ts_web_kv_free(struct ts_web_kv *kv, size_t n)
{
    if (!kv)
        return;
    for (size_t i = 0; i < n; i++) {
        free(kv[i].name);
        free(kv[i].value);
    }
    free(kv);
}

int ts_web_form_parse(const char *s, size_t len, size_t max_pairs, struct ts_web_kv **out,
                      size_t *n)
{
    *out = NULL;
    *n = 0;
    struct ts_web_kv *kv = calloc(max_pairs ? max_pairs : 1, sizeof(*kv));
    if (!kv)
        return TS_E_NOMEM;
    size_t k = 0, i = 0;
    int rc = TS_OK;
    while (i < len && rc == TS_OK) {
        size_t j = i;
        while (j < len && s[j] != '&')
            j++;
        if (j > i) {
            if (k == max_pairs) {
                rc = TS_E_TOO_LARGE;
                break;
            }
            const char *eq = memchr(s + i, '=', j - i);
            size_t nl = eq ? (size_t)(eq - (s + i)) : j - i;
            rc = decode(s + i, nl, &kv[k].name);
            if (rc == TS_OK) {
                rc = eq ? decode(eq + 1, (size_t)(s + j - eq - 1), &kv[k].value)
                        : decode("", 0, &kv[k].value);
                k++;
            }
        }
        i = j + 1;
    }
    if (rc != TS_OK) {
        ts_web_kv_free(kv, k);
        return rc;
    }
    *out = kv;
    *n = k;
    return TS_OK;
}

const char *ts_web_kv_get(const struct ts_web_kv *kv, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (kv[i].name && kv[i].value && strcmp(kv[i].name, name) == 0)
            return kv[i].value;
    return NULL;
}

int ts_web_cookie_get(const char *hdr, size_t len, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name), i = 0;
    while (i < len) {
        while (i < len && (hdr[i] == ' ' || hdr[i] == ';'))
            i++;
        size_t j = i;
        while (j < len && hdr[j] != ';')
            j++;
        if (j - i > nl && memcmp(hdr + i, name, nl) == 0 && hdr[i + nl] == '=') {
            size_t vl = j - i - nl - 1;
            if (vl + 1 > outlen)
                return TS_E_TOO_LARGE;
            memcpy(out, hdr + i + nl + 1, vl);
            out[vl] = '\0';
            return TS_OK;
        }
        i = j;
    }
    return TS_E_NOT_FOUND;
}

int ts_web_secret_load(const char *dir, uint8_t secret[TS_WEB_SECRET_LEN])
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/web.secret", dir);
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = ts_file_read_all(path, 4096, &data, &len);
    if (rc == TS_OK) {
        rc = len == TS_WEB_SECRET_LEN ? TS_OK : TS_E_CONFIG;
        if (rc == TS_OK)
            memcpy(secret, data, TS_WEB_SECRET_LEN);
        free(data);
        return rc;
    }
    if (rc != TS_E_NOT_FOUND)
        return TS_E_IO;
    if (RAND_bytes(secret, TS_WEB_SECRET_LEN) != 1)
        return TS_E_INTERNAL;
    mkdir(dir, 0755);
    return ts_file_write_atomic(path, secret, TS_WEB_SECRET_LEN, 0600) == TS_OK ? TS_OK : TS_E_IO;
}

int ts_web_nonce_new(uint64_t now_s, char out[TS_WEB_NONCE_LEN])
{
    char hex[33];
    if (ts_hex_random(16, hex) != TS_OK)
        return TS_E_INTERNAL;
    snprintf(out, TS_WEB_NONCE_LEN, "%" PRIu64 ".%s", now_s, hex);
    return TS_OK;
}

static void mac(const uint8_t secret[TS_WEB_SECRET_LEN], const char *label, const char *key,
                const char *nonce, char *out, size_t hex_digits)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    size_t ll = strlen(label) + 1, kl = strlen(key) + 1, nl = strlen(nonce);
    unsigned char *msg = malloc(ll + kl + nl + 1);
    if (!msg) {
        memset(out, '0', hex_digits);
        out[hex_digits] = '\0';
        return;
    }
    memcpy(msg, label, ll);
    memcpy(msg + ll, key, kl);
    memcpy(msg + ll + kl, nonce, nl + 1); /* its NUL fills the spare byte; not MACed */
    HMAC(EVP_sha256(), secret, TS_WEB_SECRET_LEN, msg, ll + kl + nl, md, &mdlen);
    free(msg);
    char full[2 * EVP_MAX_MD_SIZE + 1];
    ts_hex_encode(md, mdlen, full);
    memcpy(out, full, hex_digits);
    out[hex_digits] = '\0';
}

void ts_web_csrf(const uint8_t secret[TS_WEB_SECRET_LEN], const char *thread_key, const char *nonce,
                 char out[TS_WEB_MAC_HEX])
{
    mac(secret, "csrf", thread_key, nonce, out, TS_WEB_MAC_HEX - 1);
}

void ts_web_idem_key(const uint8_t secret[TS_WEB_SECRET_LEN], const char *thread_key,
                     const char *nonce, char out[TS_WEB_IDEM_HEX])
{
    mac(secret, "idem", thread_key, nonce, out, TS_WEB_IDEM_HEX - 1);
}

int ts_web_csrf_check(const uint8_t secret[TS_WEB_SECRET_LEN], const char *thread_key,
                      const char *nonce, const char *csrf, uint64_t now_s)
{
    if (!nonce || !csrf || strlen(nonce) >= TS_WEB_NONCE_LEN || strlen(csrf) != TS_WEB_MAC_HEX - 1)
        return TS_E_FORBIDDEN;
    char *dot = NULL;
    errno = 0;
    unsigned long long issued = strtoull(nonce, &dot, 10);
    if (errno || dot == nonce || *dot != '.' || strlen(dot + 1) != 32)
        return TS_E_FORBIDDEN;
    if (issued > now_s + 60 || now_s - issued > TS_WEB_NONCE_TTL_S)
        return TS_E_FORBIDDEN;
    char want[TS_WEB_MAC_HEX];
    ts_web_csrf(secret, thread_key, nonce, want);
    return CRYPTO_memcmp(want, csrf, TS_WEB_MAC_HEX - 1) == 0 ? TS_OK : TS_E_FORBIDDEN;
}
