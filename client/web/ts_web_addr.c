/*
 * ts_web_addr: the reader's address and key. See ts_web_addr.h.
 */
#include "ts_web_addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

#include "ts_err.h"
#include "ts_hex.h"

static const char key_label[] = "threadsync-web-reader-v1";

int ts_web_addr_parse(const char *s, size_t len, unsigned char out[16])
{
    while (len && (*s == ' ' || *s == '\t'))
        s++, len--;
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    char buf[INET6_ADDRSTRLEN + 1];
    if (!len || len >= sizeof(buf))
        return TS_E_INVALID_ARGUMENT;
    memcpy(buf, s, len);
    buf[len] = '\0';
    struct in_addr a4;
    if (inet_pton(AF_INET, buf, &a4) == 1) {
        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &a4, 4);
        return TS_OK;
    }
    return inet_pton(AF_INET6, buf, out) == 1 ? TS_OK : TS_E_INVALID_ARGUMENT;
}

int ts_web_proxies_parse(const char *list, struct ts_web_proxies *out)
{
    memset(out, 0, sizeof(*out));
    for (const char *s = list; s && *s;) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        if (out->n == TS_WEB_PROXIES_MAX || ts_web_addr_parse(s, len, out->addr[out->n]) != TS_OK)
            return TS_E_CONFIG;
        out->n++;
        s = comma ? comma + 1 : s + len;
    }
    return TS_OK;
}

static int trusted(const struct ts_web_proxies *p, const unsigned char a[16])
{
    for (size_t i = 0; p && i < p->n; i++)
        if (memcmp(p->addr[i], a, 16) == 0)
            return 1;
    return 0;
}

void ts_web_reader_addr(const struct ts_web_proxies *p, const struct sockaddr *peer,
                        const char *xff, size_t xff_len, unsigned char out[16])
{
    memset(out, 0, 16);
    if (peer && peer->sa_family == AF_INET) {
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &((const struct sockaddr_in *)(const void *)peer)->sin_addr, 4);
    } else if (peer && peer->sa_family == AF_INET6) {
        memcpy(out, &((const struct sockaddr_in6 *)(const void *)peer)->sin6_addr, 16);
    }
    if (!xff || !trusted(p, out))
        return;
    /* Right to left: the first entry no trusted proxy wrote is the reader. */
    size_t end = xff_len;
    while (end > 0) {
        size_t start = end;
        while (start > 0 && xff[start - 1] != ',')
            start--;
        unsigned char a[16];
        if (ts_web_addr_parse(xff + start, end - start, a) != TS_OK)
            return; /* malformed: the proxy itself stands for the reader */
        memcpy(out, a, 16);
        if (!trusted(p, a))
            return;
        end = start ? start - 1 : 0;
    }
}

void ts_web_reader_key(const uint8_t secret[TS_WEB_SECRET_LEN], const unsigned char addr[16],
                       char out[TS_WEB_READER_KEY_HEX + 1])
{
    unsigned char msg[sizeof(key_label) + 16];
    memcpy(msg, key_label, sizeof(key_label)); /* with its NUL: label and address stay apart */
    memcpy(msg + sizeof(key_label), addr, 16);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    HMAC(EVP_sha256(), secret, TS_WEB_SECRET_LEN, msg, sizeof(msg), mac, &mac_len);
    ts_hex_encode(mac, 32, out);
}
