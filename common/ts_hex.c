/*
 * ts_hex: see ts_hex.h.
 */
#include "ts_hex.h"

#include "ts_err.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdint.h>

void ts_hex_encode(const void *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    const uint8_t *b = in;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

int ts_hex_random(size_t n, char *out)
{
    uint8_t raw[64];
    out[0] = '\0';
    while (n) {
        size_t k = n < sizeof(raw) ? n : sizeof(raw);
        if (RAND_bytes(raw, (int)k) != 1) {
            OPENSSL_cleanse(raw, sizeof(raw));
            return TS_E_INTERNAL;
        }
        ts_hex_encode(raw, k, out);
        out += 2 * k;
        n -= k;
    }
    OPENSSL_cleanse(raw, sizeof(raw));
    return TS_OK;
}
