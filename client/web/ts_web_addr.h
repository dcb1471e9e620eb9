/*
 * ts_web_addr: who a request comes from, and the reader key the web edge
 * sends with a reader's post (PROTOCOL.md, Post: reader_key).
 *
 * The reader's address is the socket peer's, unless the peer is one of the
 * configured trusted proxies (--trusted-proxy): then it is the right-most
 * X-Forwarded-For entry that is not itself a trusted proxy (each proxy
 * appends the address it saw, so entries left of the last untrusted one
 * are whatever the client claimed). A header from any other peer is
 * ignored: a reader cannot pick their own key. A malformed entry falls
 * back to the peer.
 *
 * The key is HMAC-SHA256(edge secret, label || address) in lowercase hex:
 * stable for one address across restarts (the secret is DIR/web.secret),
 * useless to anyone without the secret, so the cluster and its moderators
 * see a per-reader key and never the address.
 *
 * Addresses are kept as 16 bytes (IPv4 as IPv4-mapped IPv6), so 1.2.3.4 and
 * ::ffff:1.2.3.4 are one reader. Pure functions, no allocation.
 */
#ifndef TS_WEB_ADDR_H
#define TS_WEB_ADDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "ts_web_form.h"

#define TS_WEB_PROXIES_MAX 16
#define TS_WEB_READER_KEY_HEX 64

struct ts_web_proxies {
    size_t n;
    unsigned char addr[TS_WEB_PROXIES_MAX][16];
};

/* Parses list (comma-separated numeric IPv4/IPv6 addresses, spaces
 * allowed; NULL or "" is none) into *out. TS_OK, or TS_E_CONFIG for a bad
 * entry or more than TS_WEB_PROXIES_MAX. */
int ts_web_proxies_parse(const char *list, struct ts_web_proxies *out);

/* s[0..len) as a numeric address (surrounding spaces ignored) into out.
 * TS_OK or TS_E_INVALID_ARGUMENT. */
int ts_web_addr_parse(const char *s, size_t len, unsigned char out[16]);

/* The reader's address (see the file comment). peer: the socket's (NULL or
 * not IP: all zeros); xff: the X-Forwarded-For value(s) or NULL. */
void ts_web_reader_addr(const struct ts_web_proxies *p, const struct sockaddr *peer,
                        const char *xff, size_t xff_len, unsigned char out[16]);

/* The reader key of addr into out (64 hex digits and a NUL). */
void ts_web_reader_key(const uint8_t secret[TS_WEB_SECRET_LEN], const unsigned char addr[16],
                       char out[TS_WEB_READER_KEY_HEX + 1]);

#endif
