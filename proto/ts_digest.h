/*
 * ts_digest: the canonical digest of a thread's public content, computed the
 * same way by the server (for `threadsync verify`) and by a mirror over its
 * own copy. Two parties that hold the same public state of a thread get the
 * same 64 hex digits; any difference in a field below changes them.
 *
 * "Public" means what a READER is sent (PROTOCOL.md, "What readers see"):
 * author_email never counts, and a comment that is not VISIBLE counts with
 * empty author_name and body. So a moderator's mirror and a reader's mirror
 * of the same thread agree with each other and with the server.
 *
 * Canonical serialisation, version 1 (SHA-256 over these bytes):
 *
 *   u64(x)  = x as 8 bytes, big-endian; a signed int64 is taken as its
 *             two's-complement bit pattern, a bool as 0 or 1
 *   str(s)  = u64(byte length of s) then the bytes of s, as stored (no
 *             normalisation of any kind)
 *
 *   "TSDIGEST1"                                   9 ASCII bytes
 *   'T' u64(id) str(key) str(title) str(url) u64(created_at_ms)
 *       u64(locked) u64(comment_count) u64(version)
 *   then for each comment in strictly increasing id:
 *   'C' u64(id) u64(thread_id) u64(parent_id) str(status name)
 *       str(author_name or "") str(body or "") u64(created_at_ms)
 *       u64(edited_at_ms) u64(version)
 *   'E' u64(number of comments)
 *
 * status name: "UNSPECIFIED", "VISIBLE", "PENDING", "HIDDEN", "DELETED", or
 * the decimal number for a value this version does not know. author_name and
 * body are "" unless the status is VISIBLE. Every comment the party holds for
 * the thread is included, whatever its status (tombstones are public).
 *
 * Load: one pass over a thread's comments, a few hundred bytes hashed per
 * comment; no allocation beyond the OpenSSL context.
 */
#ifndef TS_DIGEST_H
#define TS_DIGEST_H

#include <stddef.h>

#include "threadsync.pb-c.h"

#define TS_DIGEST_HEX_LEN 64

struct ts_digest;

/* Starts a digest over thread t. *out (OUT) receives a context the caller
 * must pass to ts_digest_end() or ts_digest_abort() exactly once. t is read
 * during the call only. Returns TS_OK, TS_E_NOMEM or TS_E_INTERNAL. */
int ts_digest_begin(struct ts_digest **out, const Threadsync__Thread *t);

/* Adds one comment. Comments must come in strictly increasing id:
 * otherwise TS_E_INVALID_ARGUMENT and the context is spoiled (end then
 * fails too). c is read during the call only. */
int ts_digest_add_comment(struct ts_digest *d, const Threadsync__Comment *c);

/* Finishes: writes 64 lowercase hex digits and a NUL to out, frees d.
 * Returns TS_OK, or the first error of the context (out is then "").
 * d is freed in every case. */
int ts_digest_end(struct ts_digest *d, char out[TS_DIGEST_HEX_LEN + 1]);

/* Frees d without a result; d may be NULL. */
void ts_digest_abort(struct ts_digest *d);

/* One call for a thread and its n comments (in strictly increasing id, as
 * GetResult carries them). Returns as ts_digest_end(). */
int ts_digest_thread(const Threadsync__Thread *t, const Threadsync__Comment *const *comments,
                     size_t n, char out[TS_DIGEST_HEX_LEN + 1]);

/* The status name used above, e.g. "DELETED"; NULL for an unknown value. */
const char *ts_digest_status_name(int status);

#endif
