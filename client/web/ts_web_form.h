/*
 * ts_web_form: what the web edge reads from requests and the secrets it
 * derives, without any network: application/x-www-form-urlencoded bodies
 * and query strings, Cookie headers, and the one-time form nonce with its
 * CSRF token and idempotency key.
 *
 * The nonce. Every form the edge serves carries a fresh nonce,
 * "<issued unix seconds>.<32 hex random>", and csrf = HMAC-SHA256(secret,
 * "csrf" 0 thread_key 0 nonce) in hex. A POST is accepted only with a nonce
 * not older than TS_WEB_NONCE_TTL_S and the csrf that matches it for that
 * thread (compared in constant time): a page from another site cannot know
 * either. The post's idempotency key is derived from the same nonce
 * (HMAC(secret, "idem" 0 thread_key 0 nonce), 48 hex digits), so a double
 * submit, a reload of the POST or a replay of the captured form reaches the
 * cluster as a retry of the same post, which answers with the first
 * comment instead of making a second. The server keeps idempotency keys 24
 * hours, hence TS_WEB_NONCE_TTL_S: an older form is refused, never posted
 * twice. The secret is the mirror directory's (DIR/web.secret, 32 random
 * bytes, made on first start), so forms outlive a restart of the edge.
 */
#ifndef TS_WEB_FORM_H
#define TS_WEB_FORM_H

#include <stddef.h>
#include <stdint.h>

#define TS_WEB_SECRET_LEN 32
#define TS_WEB_NONCE_TTL_S ((uint64_t)23 * 3600)
#define TS_WEB_NONCE_LEN 48 /* with its NUL: up to 20 digits, '.', 32 hex */
#define TS_WEB_MAC_HEX 65   /* 64 hex digits and a NUL */
#define TS_WEB_IDEM_HEX 49  /* 48 hex digits and a NUL */

/* One decoded name=value pair; both NUL-terminated, owned by the list. */
struct ts_web_kv {
    char *name, *value;
};

/* Decodes a form body or query string (%XX and '+'), pairs split at '&'.
 * At most max_pairs pairs (more: TS_E_TOO_LARGE). A malformed %-escape or a
 * NUL byte: TS_E_INVALID_ARGUMENT. *out (OUT) is freed with
 * ts_web_kv_free(); *n its length. TS_OK, TS_E_NOMEM too. */
int ts_web_form_parse(const char *s, size_t len, size_t max_pairs, struct ts_web_kv **out,
                      size_t *n);
void ts_web_kv_free(struct ts_web_kv *kv, size_t n);
/* The first value of name, or NULL. */
const char *ts_web_kv_get(const struct ts_web_kv *kv, size_t n, const char *name);

/* The value of cookie name in a Cookie header (hdr[0..len), not
 * NUL-terminated), copied into out (NUL-terminated) when it fits. TS_OK,
 * TS_E_NOT_FOUND, TS_E_TOO_LARGE. */
int ts_web_cookie_get(const char *hdr, size_t len, const char *name, char *out, size_t outlen);

/* Reads DIR/web.secret, or makes it (0600, random) when missing. TS_OK,
 * TS_E_IO, TS_E_CONFIG (the file exists with the wrong length). */
int ts_web_secret_load(const char *dir, uint8_t secret[TS_WEB_SECRET_LEN]);

/* A fresh nonce issued at now_s. TS_OK or TS_E_INTERNAL (no randomness). */
int ts_web_nonce_new(uint64_t now_s, char out[TS_WEB_NONCE_LEN]);
/* csrf for (thread_key, nonce). */
void ts_web_csrf(const uint8_t secret[TS_WEB_SECRET_LEN], const char *thread_key, const char *nonce,
                 char out[TS_WEB_MAC_HEX]);
/* TS_OK when csrf matches and the nonce is well formed and not expired at
 * now_s (a nonce from the future by more than a minute is refused too);
 * TS_E_FORBIDDEN otherwise. */
int ts_web_csrf_check(const uint8_t secret[TS_WEB_SECRET_LEN], const char *thread_key,
                      const char *nonce, const char *csrf, uint64_t now_s);
/* The idempotency key of the post made with this form. */
void ts_web_idem_key(const uint8_t secret[TS_WEB_SECRET_LEN], const char *thread_key,
                     const char *nonce, char out[TS_WEB_IDEM_HEX]);

#endif
