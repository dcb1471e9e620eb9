/*
 * ts_json: the few JSON writing primitives the CLI needs, written to a FILE.
 *
 * Strings are escaped per RFC 8259: quote, backslash and every C0 control
 * character are escaped (the common ones by name, the rest as \u00XX),
 * DEL too (as \u007f, harmless and safer for terminals). Bytes of well-formed
 * UTF-8 pass through unchanged; a byte that does not start or continue a
 * well-formed sequence is replaced by U+FFFD, so the output is always valid
 * JSON even if a server ever sends bad text. No allocation.
 */
#ifndef TS_JSON_H
#define TS_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Writes s (NUL-terminated; NULL is written as "") as a quoted JSON
 * string. */
void ts_json_str(FILE *out, const char *s);

/* The same for s[0..len), which may hold NULs (written as \u0000). */
void ts_json_strn(FILE *out, const char *s, size_t len);

/* Writes "key": with the key escaped; prefixed by a comma unless first. */
void ts_json_key(FILE *out, const char *key, int first);

/* "key":"value" / "key":123 / "key":true, comma-prefixed unless first. */
void ts_json_kv_str(FILE *out, const char *key, const char *value, int first);
void ts_json_kv_u64(FILE *out, const char *key, uint64_t value, int first);
void ts_json_kv_i64(FILE *out, const char *key, int64_t value, int first);
void ts_json_kv_bool(FILE *out, const char *key, int value, int first);

#endif
