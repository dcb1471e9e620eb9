/*
 * ts_hex: bytes as lowercase hex digits, the form every hash, key and
 * token of threadsync takes in text (digests, edit keys, idempotency keys,
 * backup checksums, the tokens file).
 */
#ifndef TS_HEX_H
#define TS_HEX_H

#include <stddef.h>

/* Writes the n bytes at in as 2n lowercase hex digits and a NUL into out,
 * which holds 2n + 1 bytes. */
void ts_hex_encode(const void *in, size_t n, char *out);

/* Writes n random bytes (OpenSSL's CSPRNG) as ts_hex_encode does: a
 * secret or a unique key. TS_E_INTERNAL when the generator fails (out is
 * then an empty string). The raw bytes are cleansed. */
int ts_hex_random(size_t n, char *out);

#endif
