/*
 * ts_store's insides, shared by its three files only:
 *   - ts_store_state.c: the records and their indexes (the layout below);
 *   - ts_store.c: the public API: applying commands and the reads;
 *   - ts_store_snap.c: the whole state as a snapshot, restored from one,
 *     and its digest;
 *   - ts_store_import.c: the Import command (many comments per entry) and
 *     the table of imported comments' source names;
 *   - ts_store_audit.c: the audit trail (a queue of records, oldest dropped
 *     past a cost cap).
 *
 * Layout, chosen for memory (the store holds every comment ever posted):
 *   - a comment is one allocation: fixed fields, then author_name, e-mail
 *     and body back to back, each NUL-terminated so views point straight
 *     into it. Its thread is an index into the thread vector (threads are
 *     never removed). What only a changed comment has (edited_at, a version
 *     above 1, moderated_by) sits in an extension before the text, present
 *     only once the comment has been changed: most never are, and the 18
 *     bytes it takes are a tenth of a short comment's record;
 *   - a thread likewise holds key, title and url, plus a vector of its
 *     comments sorted by id (ids are Raft indexes and only grow, so a new
 *     comment is appended; a parent always precedes its replies);
 *   - all threads in a vector sorted by id, and hash maps (ts_map) by thread
 *     id, thread key, comment id and idempotency key digest;
 *   - idempotency entries are fixed-size records stored inline in a FIFO of
 *     blocks, in first-use order, from whose head they expire as command
 *     time advances. Each is a new comment's (seq = comment id = the Post's
 *     index), so the FIFO is also in comment id order: lookups by comment
 *     id are a binary search, with no index of their own;
 *   - tokens and bans (tens to hundreds) in vectors sorted by name.
 *
 * All state lives in struct state so that restore can build a complete new
 * state and swap it in, leaving the old one intact when the snapshot is bad.
 */
#ifndef TS_STORE_INT_H
#define TS_STORE_INT_H

#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "threadsync.pb-c.h"
#include "threadsync_state.pb-c.h"
#include "ts_map.h"
#include "ts_store.h"

struct comment {
    uint64_t id;
    uint64_t parent_id;
    int64_t created_at;
    uint32_t thread_ix; /* its thread is state.threads[thread_ix] */
    uint32_t body_len;
    uint16_t name_len, email_len;
    uint8_t status;
    uint8_t has_ext;
    uint8_t rk_len; /* 0 or TS_READER_KEY_LEN: a gateway post's reader key */
    char text[];    /* [extension] name NUL email NUL body NUL reader_key NUL */
};

/* A comment's fields that differ from their defaults (0, 1, 0) only once it
 * has changed. In the record as TS__COMMENT_EXT_LEN packed bytes (access
 * through ts__store_comment_ext / _set_ext only). */
struct comment_ext {
    int64_t edited_at;
    uint64_t version;
    uint16_t modby; /* index into state.names: who last moderated it; 0 none */
};
#define TS__COMMENT_EXT_LEN 18

struct thread {
    uint64_t id;
    uint32_t ix; /* its index in state.threads */
    int64_t created_at;
    uint64_t version;
    struct comment **comments; /* id order */
    uint32_t n_comments, cap_comments;
    uint32_t comment_count; /* VISIBLE ones */
    uint32_t pending_count; /* PENDING ones: the moderation queue skips threads without */
    uint16_t key_len, title_len, url_len;
    uint16_t modby; /* index into state.names, as for comments */
    uint8_t locked, premoderated;
    char text[]; /* key NUL title NUL url NUL */
};

/* The idempotency entry doubles as the comment's edit-key record: an edit
 * window never outlasts the entry's retention (--edit-window-ms is capped at
 * it), so a comment's key hash lives exactly as long as it can be used, and
 * costs nothing once the day is over.
 *
 * The key itself is not kept, only its digest (ts__store_idem_digest): 16
 * bytes instead of a string of up to 64 and its allocation. A distinct key
 * with the same digest would be taken for a retry (and its edit key would
 * then open the first post's comment), so the digest must resist
 * collisions, not just spread keys: SHA-256 truncated to 128 bits. By
 * accident, a collision among 10^9 retained keys has odds of about 10^-21;
 * on purpose, hitting another client's (unknown, random) key is a second
 * preimage, 2^128 work, and colliding two keys of one's own (2^64) gains
 * nothing a client could not do by reusing its key. */
#define TS__STORE_DIGEST_LEN TS_STORE_IDEM_DIGEST_LEN

/* The first answer's seq, thread and time are its comment's id, thread and
 * created_at (a comment is never removed, and restore checks they agree),
 * so the entry holds only what the comment cannot tell.
 *
 * Since the scoped keys (Command.idempotency_digest), key_digest covers the
 * token too, so two tokens never share an entry; content_digest (when
 * has_content) tells a retry from a reuse of the key for another post; a
 * derived entry's edit key is recomputed from the state's edit secret
 * (ts_store_edit_key) rather than chosen at random, so every answer for the
 * entry carries the same, working key. */
struct idem {
    uint64_t comment_id;
    /* Its comment's thread_ix: the snapshot child finds the comment through
     * it, since comment_by_id is not mapped there (ts__store_state_init).
     * It fills what was padding. */
    uint32_t thread_ix;
    uint8_t key_digest[TS__STORE_DIGEST_LEN];
    uint8_t content_digest[TS__STORE_DIGEST_LEN];
    uint8_t edit_hash[TS_STORE_HASH_LEN];
    uint8_t comment_status;
    uint8_t has_hash;
    uint8_t has_content;
    uint8_t derived;
};

/* thread_ix must stay in the padding: an entry per post kept for a day. */
_Static_assert(sizeof(struct idem) == 80, "struct idem grew past 80 bytes");

/* Written once the audit trail holds a record: 3's fields plus
 * StoreSnapshot.audit. */
#define TS__STORE_SNAPSHOT_FORMAT_AUDIT 4

/* StoreSnapshot.format written (threadsync_state.proto): 2, scoped key
 * digests, content digests and the edit secret. Restore also reads format
 * 1 (key digests only) and 0 (keys as strings). */
#define TS__STORE_SNAPSHOT_FORMAT 2
/* Written instead once an Import ran (positions ahead of indexes, the
 * imported-comment table): 2 plus StoreSnapshot.position and .imported. */
#define TS__STORE_SNAPSHOT_FORMAT_IMPORT 3

/* Entries per FIFO block: 40 KiB blocks, a small share of a day's posts
 * each, below the mmap threshold (server/main.c). */
#define TS__STORE_IDEM_BLOCK 512

/* Replicated tokens, and revoked names (a revoked tokens-file name has no
 * hash). Few (tens to hundreds): a sorted vector, lookups by scan. */
struct token {
    char name[TS_STORE_NAME_MAX + 1];
    char created_by[TS_STORE_NAME_MAX + 1];
    uint8_t hash[TS_STORE_HASH_LEN];
    int64_t created_at, revoked_at;
    uint8_t role, has_hash, revoked;
    uint8_t gateway; /* may send Post.reader_key */
};

/* One audit record (ts_store_audit.c): one allocation with its strings. */
struct audit {
    uint64_t seq, thread_id, comment_id;
    int64_t time, until;
    uint32_t text_len; /* text_before's */
    uint16_t actor_len, reason_len, target_len;
    uint8_t action, role;
    char text[]; /* actor NUL text_before NUL reason NUL target NUL */
};

/* A ban in force; bans sorted by author. */
struct ban {
    char *author; /* one allocation: author NUL banned_by NUL */
    char *by;
    int64_t until;
};

struct state {
    struct thread **threads; /* id order */
    size_t n_threads, cap_threads;
    size_t n_comments;
    struct ts_map thread_by_id, thread_by_key, comment_by_id, idem_by_key;
    /* The FIFO of first uses: entries idem_first .. idem_first + idem_n - 1
     * (counted since the state began), entry i in block i / BLOCK -
     * idem_first / BLOCK at i % BLOCK. Blocks are freed as their last entry
     * expires, so entries never move and the map can point at them. */
    struct idem **idem_blocks;
    size_t idem_nblocks, idem_cap_blocks;
    uint64_t idem_first;
    size_t idem_n;
    size_t record_bytes; /* alloc_cost of every thread, comment and idem block */
    uint64_t last_index;
    uint64_t seq; /* the newest event's (ts_store_seq) */
    /* The last position used. An entry's first position is max(index, pos
     * + 1): the index itself until an Import took one position per
     * comment; ids and seqs are positions (docs/DESIGN.md, "Replicated
     * state"). */
    uint64_t pos;
    /* Imported comments by source name (struct import_ref), kept for good
     * so a re-import finds them. */
    struct ts_map import_by_digest;
    size_t n_imports;
    /* Moderators' token names, interned: a record holds a 16-bit index
     * (names[0] is unused: "nobody"). Assignment order may differ between
     * replicas (replay vs restore); only the strings are ever compared. */
    char **names;
    size_t n_names, cap_names;
    struct token *tokens; /* name order */
    size_t n_tokens, cap_tokens;
    struct ban *bans; /* author order */
    size_t n_bans, cap_bans;
    uint64_t auth_gen; /* bumped by every token change and restore */
    /* Edit keys of derived entries are HMACs under it (ts_store_edit_key).
     * Set once, by the first Post that carries one; replicated like the
     * rest (log entry, snapshot), never sent to a client. */
    uint8_t edit_secret[TS_STORE_HASH_LEN];
    uint8_t has_edit_secret;
    /* The audit trail: audit[audit_head .. audit_head + audit_n), seq
     * order; audit_bytes the sum of their ts__store_audit_cost. */
    struct audit **audit;
    size_t audit_head, audit_n, audit_cap;
    size_t audit_bytes;
};

/* An imported comment's source name (ts__store_import_digest) and the
 * comment made from it: one allocation each. */
struct import_ref {
    uint8_t digest[TS__STORE_DIGEST_LEN];
    uint64_t comment_id;
};

struct ts_store {
    struct ts_evlog *log;
    struct state st;
    /* The per-comment outcome of the latest Import applied: what its
     * proposer answers with (not replicated state). */
    struct ts_store_import_item *import_out;
    size_t n_import_out, cap_import_out;
    /* The per-post results of the latest PostBatch applied, likewise. */
    struct ts_store_result *batch_out;
    size_t n_batch_out, cap_batch_out;
    /* Where ts_store_apply unpacks its entry (ts_store.c, a ts_pbarena):
     * kept from one apply to the next, at most TS__STORE_UNPACK_MAX bytes;
     * nothing points into it once an apply has returned. */
    uint8_t *unpack_buf;
    size_t unpack_cap;
};

/* The largest unpack buffer a store keeps (a PostBatch is at most 1 MiB
 * on the wire); what does not fit in it comes from malloc. */
#define TS__STORE_UNPACK_MAX ((size_t)2 << 20)

/* What glibc's malloc really takes for a request of n bytes (chunk header,
 * 16-byte alignment, 32-byte minimum), so ts_store_memory is honest. */
static inline size_t ts__store_alloc_cost(size_t n)
{
    size_t c = (n + 8 + 15) & ~(size_t)15;
    return c < 32 ? 32 : c;
}

static inline size_t ts__store_slen(const char *s)
{
    return s ? strlen(s) : 0;
}

void ts__store_state_init(struct state *st);
void ts__store_state_free(struct state *st);

/* ---- records and indexes: NULL when absent ---- */

struct thread *ts__store_find_thread_key(const struct state *st, const char *key, size_t len);
struct thread *ts__store_find_thread_id(const struct state *st, uint64_t id);
struct comment *ts__store_find_comment(const struct state *st, uint64_t id);
struct idem *ts__store_find_idem(const struct state *st,
                                 const uint8_t digest[TS__STORE_DIGEST_LEN]);
struct idem *ts__store_find_idem_comment(const struct state *st, uint64_t comment_id);

/* SHA-256 of a then b (blen 0: a alone) / HMAC-SHA256 under a 32-byte key:
 * the bytes OpenSSL's SHA256() and HMAC() compute, without their per-call
 * algorithm lookup or EVP's per-call context work (ts_store_state.c,
 * "hashing"). Thread-safe. */
void ts__store_sha256(const void *a, size_t alen, const void *b, size_t blen, uint8_t out[32]);
void ts__store_hmac_sha256(const uint8_t key[32], const void *msg, size_t len, uint8_t out[32]);
/* The digest an idempotency key is kept and found under (see struct idem). */
void ts__store_idem_digest(const char *key, size_t len, uint8_t out[TS__STORE_DIGEST_LEN]);
/* A post's content digest: every field of the Post but request_id and
 * idempotency_key, each length-prefixed, SHA-256 truncated. */
void ts__store_content_digest(const Threadsync__Post *p, uint8_t out[TS__STORE_DIGEST_LEN]);
/* The edit key text of the derived entry e under st's edit secret. */
void ts__store_derive_edit_key(const struct state *st, const struct idem *e,
                               char out[TS_STORE_EDIT_KEY_LEN + 1]);
/* The idem_n entries in first-use order: 0 the oldest. */
struct idem *ts__store_idem_at(const struct state *st, size_t i);

/* The index of the first thread (comment of t) whose id is at least id. */
size_t ts__store_thread_slot(const struct state *st, uint64_t id);
uint32_t ts__store_comment_slot(const struct thread *t, uint64_t id);

/* Interned moderator names: the name at index i ("" for 0 or out of
 * range); the index of name, added (0 for "" or when the table is full:
 * the record then says "nobody" rather than fail). */
const char *ts__store_name_at(const struct state *st, uint16_t i);
int ts__store_intern(struct state *st, const char *name, uint16_t *out);

/* New records with their text (zeroed otherwise; NULL when out of memory)
 * and their insertion into every index: a thread's id exceeds every
 * thread's, a comment's every comment's of its thread. On failure the
 * record is in no index and still the caller's. */
struct thread *ts__store_thread_alloc(const char *key, size_t key_len, const char *title,
                                      size_t title_len, const char *url, size_t url_len);
int ts__store_thread_insert(struct state *st, struct thread *t);
struct comment *ts__store_comment_alloc(const char *name, size_t name_len, const char *email,
                                        size_t email_len, const char *body, size_t body_len,
                                        const char *reader_key, const struct comment_ext *ext);
int ts__store_comment_insert(struct state *st, struct thread *t, struct comment *c);
/* Copies e to the end of the FIFO and indexes it. e's digest must be new
 * and its comment id above every entry's (TS_E_BAD_FRAME otherwise: only a
 * snapshot can say so); TS_E_NOMEM leaves the table unchanged. */
int ts__store_idem_append(struct state *st, const struct idem *e);

/* Replaces c's text and changeable fields (the record is one allocation,
 * so new text is a new record) in every index; c is freed. The text may
 * point into c. Returns the new record or NULL (out of memory; c is then
 * untouched). */
struct comment *ts__store_comment_rewrite(struct state *st, struct comment *c, const char *name,
                                          size_t name_len, const char *email, size_t email_len,
                                          const char *body, size_t body_len, const char *reader_key,
                                          const struct comment_ext *x);

/* c's thread, text (the name; e-mail and body follow, each after the
 * previous one's NUL) and changeable fields. */
static inline struct thread *ts__store_comment_thread(const struct state *st,
                                                      const struct comment *c)
{
    return st->threads[c->thread_ix];
}
static inline const char *ts__store_comment_text(const struct comment *c)
{
    return c->text + (c->has_ext ? TS__COMMENT_EXT_LEN : 0);
}
void ts__store_comment_ext(const struct comment *c, struct comment_ext *out);
/* The reader key of c ("" for none), after its body. */
static inline const char *ts__store_comment_reader_key(const struct comment *c)
{
    const char *name = ts__store_comment_text(c);
    return name + c->name_len + 1 + c->email_len + 1 + c->body_len + 1;
}
/* Sets c's changeable fields, moving c to a record with an extension when
 * it has none and x is not all defaults. Returns c's record (maybe new) or
 * NULL (out of memory; c is then untouched). */
struct comment *ts__store_comment_set_ext(struct state *st, struct comment *c,
                                          const struct comment_ext *x);

/* ---- events and imports ---- */

/* Moves c to status ns, keeping the thread's counts. */
void ts__store_set_status(struct thread *t, struct comment *c, uint8_t ns);
/* Appends the event at seq for a change of thread t (and comment c, may be
 * NULL); the state's seq becomes seq. */
int ts__store_append_event(struct ts_store *s, uint64_t seq, const struct thread *t,
                           const struct comment *c);
/* Applies an Import whose first position is pos (ts_store_import.c). */
int ts__store_apply_import(struct ts_store *s, uint64_t pos, const Threadsync__State__Command *cmd,
                           struct ts_store_result *res);
/* The digest an imported comment's source name is kept under. */
void ts__store_import_digest(const char *source, const char *source_id,
                             uint8_t out[TS__STORE_DIGEST_LEN]);
struct import_ref *ts__store_find_import(const struct state *st,
                                         const uint8_t digest[TS__STORE_DIGEST_LEN]);
/* Adds a source name (new to the table). TS_E_NOMEM leaves it unchanged. */
int ts__store_import_add(struct state *st, const uint8_t digest[TS__STORE_DIGEST_LEN],
                         uint64_t comment_id);
void ts__store_import_free(struct state *st);

/* Forgets idempotency keys first used the retention or more before now. */
void ts__store_idem_expire(struct state *st, int64_t now);

/* Views: pointers into the records, valid until the next change. */
void ts__store_thread_view(const struct state *st, const struct thread *t, Threadsync__Thread *v);
void ts__store_comment_view(const struct state *st, const struct comment *c,
                            Threadsync__Comment *v);

/* ---- the audit trail ---- */

/* A record holding v's fields (strings copied; thread_key ignored), NULL
 * when out of memory or a string is over its limit. The caller owns it. */
struct audit *ts__store_audit_alloc(const Threadsync__AuditEntry *v);
/* Appends a (taking it on TS_OK) and drops the oldest records past the
 * cap. TS_E_BAD_FRAME when a's seq is not above the newest record's or its
 * action unknown (only a snapshot or an import can say so); TS_E_NOMEM.
 * On error a is still the caller's. */
int ts__store_audit_push(struct state *st, struct audit *a);
/* alloc + push; TS_E_NOMEM also for an over-long string. */
int ts__store_audit_add(struct state *st, const Threadsync__AuditEntry *v);
void ts__store_audit_free(struct state *st);
/* Record i, 0 the oldest kept. */
const struct audit *ts__store_audit_at(const struct state *st, size_t i);
uint64_t ts__store_audit_last_seq(const struct state *st);
/* What a counts against TS_STORE_AUDIT_MAX_BYTES. */
size_t ts__store_audit_cost(const struct audit *a);
/* The view of a, thread_key filled from its thread. */
void ts__store_audit_view(const struct state *st, const struct audit *a, Threadsync__AuditEntry *v);

/* ---- bans ---- */

/* The form a ban is stored and matched under: e-mails lowercased, names as
 * given. */
void ts__store_ban_key(const char *author, char *out, size_t size);
/* The index of the ban on author (a ban key), *found = 1; else where it
 * would go. */
size_t ts__store_ban_slot(const struct state *st, const char *author, int *found);
/* The ban that refuses a post by (name, email) at now, if any; *field says
 * which of the two matched. */
const struct ban *ts__store_post_ban(const struct state *st, const char *name, const char *email,
                                     const char *reader_key, int64_t now, const char **field);
void ts__store_ban_remove_at(struct state *st, size_t i);
/* Inserts or replaces the ban on author (a ban key). */
int ts__store_ban_put(struct state *st, const char *author, int64_t until, const char *by);

/* ---- tokens ---- */

int ts__store_valid_token_name(const char *s);
size_t ts__store_token_slot(const struct state *st, const char *name, int *found);
/* Zeroes tk and sets its name and creator (NULL: ""). */
void ts__store_token_init(struct token *tk, const char *name, const char *created_by);
/* Inserts tk in name order; TS_E_EXISTS when its name is present. */
int ts__store_token_insert(struct state *st, const struct token *tk);

#endif
