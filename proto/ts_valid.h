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
/* Post.reader_key: exactly this many lowercase hex digits (an HMAC-SHA256).
 * "reader:" + a key is longer than any author name, so a ban on it (stored
 * with the author bans) can never match a name, and it has no '@'. */
#define TS_READER_KEY_LEN 64
#define TS_READER_BAN_PREFIX "reader:"

/* Returns 1 when s[0..len) is well-formed UTF-8 (no overlong forms, no
 * surrogates, nothing above U+10FFFF), 0 otherwise. NUL bytes are valid
 * UTF-8 here; ts_valid_text() is what rejects them. */
int ts_valid_utf8(const char *s, size_t len);

/* Counts code points in well-formed UTF-8 s[0..len). */
size_t ts_valid_utf8_count(const char *s, size_t len);

/* "Control characters" everywhere in threadsync: C0 (U+0000..U+001F), DEL
 * (U+007F) and C1 (U+0080..U+009F). Single-line text refuses all of them;
 * multiline text (a body) allows tab, LF and CR among them. A key
 * (idempotency key) is ASCII 0x21..0x7E only. */
enum ts_valid_kind { TS_VALID_LINE, TS_VALID_MULTILINE, TS_VALID_KEY };

/* Text for a field: well-formed UTF-8, no NUL, no control character except
 * (when multiline) tab, LF and CR. Returns 1 when acceptable. */
int ts_valid_text(const char *s, size_t len, int multiline);

/* Every client-supplied text field with its own rule. */
enum ts_valid_field {
    TS_VALID_IDEMPOTENCY_KEY,
    TS_VALID_THREAD_KEY,
    TS_VALID_AUTHOR_NAME,
    TS_VALID_AUTHOR_EMAIL,
    TS_VALID_BODY,
    TS_VALID_TITLE,
    TS_VALID_URL,
    TS_VALID_BAN_AUTHOR,
    TS_VALID_CLIENT_NAME,
    TS_VALID_TOKEN,
};

/* A refusal: the field's wire name (static) and a sentence for people that
 * says what was wrong and what is allowed, e.g. "author name must be 1 to 64
 * characters, got 0". The web edge shows it to readers. */
struct ts_valid_err {
    const char *field;
    char message[192];
};

/* Checks s[0..len) against the rule of field which. Returns TS_OK, or
 * TS_E_INVALID_ARGUMENT with *err filled (err may be NULL). */
int ts_valid_field(enum ts_valid_field which, const char *s, size_t len, struct ts_valid_err *err);

/* Checks a Post request's fields in wire order; the first bad one is
 * reported. Returns TS_OK (err->field NULL) or TS_E_INVALID_ARGUMENT. */
int ts_valid_post(const Threadsync__Post *post, struct ts_valid_err *err);

/* Whether s is a reader key: empty, or TS_READER_KEY_LEN of [0-9a-f]. */
int ts_valid_reader_key(const char *s);

/* Checks a thread key on its own (Get, Subscribe). err may be NULL. */
int ts_valid_thread_key(const char *key, struct ts_valid_err *err);

/* Checks a Hello's strings (client_name, token). */
int ts_valid_hello(const Threadsync__Hello *hello, struct ts_valid_err *err);

/* Whether s[0..len) is a token's name: 1..TS_TOKEN_NAME_MAX bytes of
 * A-Z a-z 0-9 . _ - (the tokens file, the replicated table and the
 * requests that name a token all hold names to this). */
int ts_valid_token_name(const char *s, size_t len);

#endif
