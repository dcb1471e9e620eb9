/*
 * ts_valid: the syntactic checks every write passes before it may reach the
 * log (docs/DESIGN.md, "Invariants": garbage never reaches the log). State
 * checks (parent exists, thread open) happen later, in the store's
 * deterministic apply.
 *
 * Limits are in bytes unless said otherwise. Strings from protobuf-c are
 * NUL-terminated but may hold embedded NULs; a NUL is rejected by the UTF-8
 * check here since len comes from strlen only where the caller says so.
 */
#ifndef TS_VALID_H
#define TS_VALID_H

#include <stddef.h>
#include <stdint.h>

#include "threadsync.pb-c.h"

#define TS_THREAD_KEY_MAX 256
#define TS_TITLE_MAX 512
#define TS_URL_MAX 2048
#define TS_AUTHOR_NAME_MAX_CP 64
#define TS_AUTHOR_EMAIL_MAX 254
#define TS_BODY_MAX 16384
#define TS_IDEMPOTENCY_KEY_MAX 64
#define TS_CLIENT_NAME_MAX 128
#define TS_TOKEN_MAX 256
#define TS_SUBSCRIBE_KEYS_MAX 1024
#define TS_TOKEN_NAME_MAX 64

/* Returns 1 when s[0..len) is well-formed UTF-8 (no overlong forms, no
 * surrogates, nothing above U+10FFFF), 0 otherwise. NUL bytes are valid
 * UTF-8 here; ts_valid_text() is what rejects them. */
int ts_valid_utf8(const char *s, size_t len);

/* Counts code points in well-formed UTF-8 s[0..len). */
size_t ts_valid_utf8_count(const char *s, size_t len);

/* Text for a field: well-formed UTF-8, no NUL, no C0 control characters
 * except (when multiline) tab, LF and CR. Returns 1 when acceptable. */
int ts_valid_text(const char *s, size_t len, int multiline);

/* Checks a Post request's fields. Returns TS_OK or TS_E_INVALID_ARGUMENT
 * with *field set to the static name of the first bad field. */
int ts_valid_post(const Threadsync__Post *post, const char **field);

/* Checks a thread key on its own (Get, Subscribe). */
int ts_valid_thread_key(const char *key);

/* Whether s[0..len) is a token's name: 1..TS_TOKEN_NAME_MAX bytes of
 * A-Z a-z 0-9 . _ - (the tokens file, the replicated table and the
 * requests that name a token all hold names to this). */
int ts_valid_token_name(const char *s, size_t len);

#endif
