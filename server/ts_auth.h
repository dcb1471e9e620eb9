/*
 * ts_auth: bearer tokens and the roles they grant (docs/DESIGN.md, "Auth").
 *
 * The tokens file holds one token per line, `ROLE NAME SHA256HEX`:
 *
 *     # comment lines and blank lines are allowed
 *     admin   admin     9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
 *     poster  blog-web  ...
 *
 * ROLE is reader|poster|moderator|admin, NAME is [A-Za-z0-9._-]{1,64} and
 * unique in the file, SHA256HEX the 64 hex digits of SHA-256 over the token's
 * bytes. An optional fourth field, the word `gateway`, marks a token that
 * posts for many readers (a web edge) and may send Post.reader_key; files
 * without it load as before. Only hashes are stored: a leaked tokens file grants nothing.
 * Comments are whole lines only (a '#' after the fields is an error).
 *
 * Tokens made here are "ts_" followed by 32 random bytes in base64url
 * without padding (43 characters): 46 characters, no character that needs
 * quoting in a shell, an INI file or a URL.
 *
 * Invariant: a struct ts_auth always holds a complete, valid table; a load
 * that fails leaves the previous one in use. Load: a check hashes the token
 * once and compares against every entry (a few hundred entries expected);
 * the Hello hashes it, and sessions re-check the kept hash on every request
 * (ts_auth_check_hash: a comparison per entry, no hashing).
 *
 * Not thread-safe: one loop owns a struct ts_auth. The file-editing calls
 * (ensure_admin, add) are not safe against another process editing the same
 * file at the same time (the last rename wins); they are operator actions.
 */
#ifndef TS_AUTH_H
#define TS_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "threadsync.pb-c.h"
#include "ts_valid.h"

/* "ts_" + 43 base64url characters. */
#define TS_AUTH_TOKEN_LEN 46
#define TS_AUTH_NAME_MAX TS_TOKEN_NAME_MAX
/* A tokens file larger than this is refused, not truncated. */
#define TS_AUTH_FILE_MAX ((size_t)4 * 1024 * 1024)

enum ts_auth_action {
    TS_AUTH_SUBSCRIBE,
    TS_AUTH_GET,
    TS_AUTH_POST,
    TS_AUTH_MODERATE,
    TS_AUTH_ADMIN,
};

struct ts_auth;

/* A new, empty table (every check fails until a load). Free with
 * ts_auth_free(). NULL when out of memory. */
struct ts_auth *ts_auth_new(void);
void ts_auth_free(struct ts_auth *auth);

/* Parses the tokens file at path and, only when every line is valid,
 * replaces auth's table with it. Returns TS_OK; TS_E_CONFIG for a bad line
 * (logged with file:line and the reason, never the line itself), a missing or
 * oversized file; TS_E_IO or TS_E_NOMEM. On error the old table stays. */
int ts_auth_load(struct ts_auth *auth, const char *path);

/* 1 when the table's token called name is marked `gateway`, else 0. */
int ts_auth_gateway(const struct ts_auth *auth, const char *name);

/* Number of tokens in the current table. */
size_t ts_auth_count(const struct ts_auth *auth);

/* Looks token (NUL-terminated) up. Returns TS_OK with *role a
 * Threadsync__Role value and *name the token's name (OUT, points into auth's
 * table: valid until the next ts_auth_load or ts_auth_free); or
 * TS_E_UNAUTHENTICATED. Hash comparisons are constant-time and the loop
 * visits every entry, so timing reveals only the table's size. role and name
 * may be NULL. */
int ts_auth_check(const struct ts_auth *auth, const char *token, int *role, const char **name);

#define TS_AUTH_HASH_LEN 32

/* SHA-256 of a token (NUL-terminated, at most TS_TOKEN_MAX bytes) into
 * out: what the tables hold, and what a session keeps instead of the
 * token. TS_OK, or TS_E_UNAUTHENTICATED for an empty or oversized token. */
int ts_auth_hash_token(const char *token, uint8_t out[TS_AUTH_HASH_LEN]);

/* ts_auth_check() for a token already hashed (ts_auth_hash_token): a
 * session re-checks its token on every request without keeping it. */
int ts_auth_check_hash(const struct ts_auth *auth, const uint8_t hash[TS_AUTH_HASH_LEN], int *role,
                       const char **name);

/* Entry i (0 .. ts_auth_count()-1) of the table, in file order: TS_OK with
 * *role and *name (into auth's table, as for ts_auth_check), or
 * TS_E_NOT_FOUND. */
int ts_auth_entry(const struct ts_auth *auth, size_t i, int *role, const char **name);

/* Writes a fresh random token and its NUL into out. TS_OK or TS_E_INTERNAL
 * when the random generator fails. */
int ts_auth_generate_token(char out[TS_AUTH_TOKEN_LEN + 1]);

/* First start: when tokens_path does not exist, generates an admin token,
 * writes it in plain text (one line) to admin_token_path, then writes
 * tokens_path with the line `admin admin <hash>`; both mode 0600, atomically.
 * The plain token is written first so that a crash in between is repaired by
 * the next start (which overwrites it) instead of leaving a table whose admin
 * token nobody knows. *created (OUT, may be NULL) is 1 when files were
 * written. When tokens_path exists nothing is touched. Returns TS_OK,
 * TS_E_IO or TS_E_INTERNAL. */
int ts_auth_ensure_admin(const char *tokens_path, const char *admin_token_path, int *created);

/* Adds a token for (role, name) to the tokens file at tokens_path (created
 * when missing), rewriting it atomically with mode 0600, and writes the
 * plain token into token_out. Returns TS_OK; TS_E_EXISTS when name is
 * already in the file; TS_E_INVALID_ARGUMENT for a bad role or name;
 * TS_E_CONFIG when the existing file does not parse (it is left alone);
 * TS_E_IO, TS_E_NOMEM, TS_E_INTERNAL. A running server sees the token after
 * its next ts_auth_load. */
int ts_auth_add(const char *tokens_path, int role, const char *name,
                char token_out[TS_AUTH_TOKEN_LEN + 1]);

/* "reader", "poster", "moderator", "admin"; "unspecified" otherwise. Static. */
const char *ts_auth_role_name(int role);

/* The Threadsync__Role for a name as written in the tokens file (exact,
 * lowercase); THREADSYNC__ROLE__ROLE_UNSPECIFIED (0) when unknown. */
int ts_auth_role_parse(const char *s);

/* 1 when role may perform action: reader subscribes and gets, poster also
 * posts, moderator also moderates, admin does everything. 0 otherwise,
 * including for an unspecified or unknown role. */
int ts_auth_role_allows(int role, enum ts_auth_action action);

#endif
