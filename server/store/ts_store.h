/*
 * ts_store: the authoritative state (threads and comments) in memory, and the
 * deterministic state machine that changes it.
 *
 * Every change comes through ts_store_apply() with the payload of a
 * replicated log entry (a threadsync.state.Command) and that entry's index:
 * the same sequence of (index, payload) gives the same state on every
 * replica. Ids are the index of the entry that created the thing; times come
 * from the command (the leader's clock), never from this machine's clock. A
 * semantic rejection (unknown parent, locked thread) is a result, not a
 * failure of the apply. Each successful change appends its event(s) to the
 * evlog given at creation, with seq = index.
 *
 * Idempotency: keys are scoped to the token that sent them (the leader puts
 * the digest of (token hash, key) into the command: two tokens never share
 * an entry). A Post whose scoped key was seen before returns the first
 * post's result (same comment id and seq) and changes nothing, when its
 * content is the same; with other content it is refused
 * (TS_E_IDEMPOTENCY_KEY_REUSED). Keys are retained for
 * TS_STORE_IDEMPOTENCY_RETENTION_MS of command time after their first use,
 * then forgotten (a retry days later makes a new comment). A key is kept as
 * a 128-bit digest (SHA-256, truncated), in snapshots too.
 *
 * Edit keys: the state holds a random 32-byte edit secret (replicated: the
 * first Post applied that carries one sets it); a post's edit key is
 * HMAC-SHA256(secret, scoped key digest, comment id), truncated, in hex.
 * Every replica computes the same key, a retry gets the key the first
 * answer had (both keep working), and only the token that used the key can
 * have its post answered. The entry keeps the key's SHA-256 for the edit
 * check, so authors' edits are possible for at most the retention. Entries
 * from commands of older releases (no scoped digest) keep their rules: the
 * leader's random key, replaced by a retry's.
 *
 * Besides threads and comments the state holds the replicated token table
 * (grants and revoked names, hashes only), the bans in force and the audit
 * trail of moderation actions (below); all go into snapshots and the
 * digest.
 *
 * Reads return views: protobuf-c structs whose strings point into the store.
 * A view is valid until the next ts_store_apply() or ts_store_restore(); the
 * caller must not free or modify it. Layout is chosen for memory: a comment
 * is one allocation holding its fixed fields and its strings.
 *
 * Single-threaded: all calls on the loop thread that applies.
 */
#ifndef TS_STORE_H
#define TS_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "threadsync.pb-c.h"
#include "threadsync_state.pb-c.h"
#include "ts_valid.h"

#define TS_STORE_IDEMPOTENCY_RETENTION_MS (24LL * 3600 * 1000)
/* An edit key's hash is kept in its post's idempotency entry, so no edit
 * window can be longer than that entry lives. */
#define TS_STORE_EDIT_WINDOW_MAX_MS TS_STORE_IDEMPOTENCY_RETENTION_MS
#define TS_STORE_BAN_MAX_MS (10LL * 365 * 24 * 3600 * 1000)
#define TS_STORE_HASH_LEN 32 /* SHA-256 */
#define TS_STORE_IDEM_DIGEST_LEN 16
#define TS_STORE_EDIT_KEY_LEN 32 /* hex characters of a derived edit key */
#define TS_STORE_NAME_MAX TS_TOKEN_NAME_MAX

struct ts_store;
struct ts_evlog;

struct ts_store_result {
    int status;        /* TS_OK or the rejection (NOT_FOUND, THREAD_LOCKED,
                          INVALID_ARGUMENT, BAD_FRAME for an undecodable payload) */
    const char *field; /* static field name for INVALID_ARGUMENT / NOT_FOUND */
    uint64_t seq;      /* seq of the event that carried the change (the
                          original one for a repeated idempotency key) */
    uint64_t thread_id;
    uint64_t comment_id;
    int comment_status;       /* Threadsync__Status of the new comment */
    int changed;              /* 0: the command asked for what was already there (a
                                 retry); nothing changed, no event, seq 0 for
                                 comment and thread changes */
    int64_t until_ms;         /* BanAuthor: the ban's end, 0 when lifted */
    const char *message;      /* static human text for a rejection, or NULL */
    uint32_t threads_created; /* Import: threads it created */
    /* Post that made a comment with a derived edit key: that key (what
     * ts_store_edit_key gives), so the answer need not derive it again;
     * "" otherwise. The leader's answer cleanses it; a follower's copy
     * lasts until the next apply (the edit secret every key derives from
     * is in memory anyway). */
    char edit_key[TS_STORE_EDIT_KEY_LEN + 1];
};

/* One comment of an Import, as its apply decided (threadsync.ImportItem):
 * outcome a Threadsync__ImportOutcome, error a TS_E_* for a refusal,
 * message static. */
struct ts_store_import_item {
    int outcome;
    uint64_t comment_id;
    uint64_t seq;
    int error;
    const char *message;
};

/* The outcome of the latest Import applied, one item per comment in the
 * command's order: *items valid until the next apply. *n is 0 when no
 * Import was applied. libraft answers a proposal right after applying its
 * entry, so the proposer reads its own command's outcome. */
void ts_store_import_outcome(const struct ts_store *s, const struct ts_store_import_item **items,
                             size_t *n);

/* The per-post results of the latest PostBatch applied, one per post in
 * the command's order: *results valid until the next apply; *n is 0 when
 * the latest entry was no PostBatch. Read by the proposer from its
 * callback, as ts_store_import_outcome. */
void ts_store_batch_outcome(const struct ts_store *s, const struct ts_store_result **results,
                            size_t *n);

/* Most posts in one PostBatch entry. */
#define TS_STORE_POST_BATCH_MAX 1024

/* The state-machine level this release applies (Command.level,
 * docs/DESIGN.md "Upgrades"): raised by a release whose leader can write
 * entries that a node of this level would apply differently. */
#define TS_STORE_LEVEL 1

/* Import limits (PROTOCOL.md, "Import"). */
#define TS_STORE_IMPORT_COMMENTS_MAX 1000
#define TS_STORE_IMPORT_THREADS_MAX 1000
#define TS_STORE_IMPORT_SOURCE_MAX 64
#define TS_STORE_IMPORT_SOURCE_ID_MAX 128

/* log is borrowed: events are appended to it on every change. */
int ts_store_new(struct ts_evlog *log, struct ts_store **out);
void ts_store_free(struct ts_store *s);

/* Packs a command the caller built (request_ids of wire messages in it
 * cleared, secrets only as hashes). *out is malloc'd; the caller frees it. */
int ts_store_encode(const Threadsync__State__Command *cmd, uint8_t **out, size_t *len);

/* Builds the payload for a Post command (request_id cleared). *out is
 * malloc'd; the caller frees it. */
int ts_store_encode_post(const Threadsync__Post *post, int64_t time_ms, uint8_t **out, size_t *len);

/* Applies one log entry. index must exceed every index applied before.
 * Commands (threadsync_state.proto; PROTOCOL.md section 4 and
 * docs/DESIGN.md, "Replicated state"):
 *   - Post: a new comment, VISIBLE, or PENDING when the command says
 *     premoderate or the thread is pre-moderated (unless trusted); refused
 *     FORBIDDEN (field author_email / author_name) while its author is
 *     banned; the edit key's hash is kept with the idempotency entry;
 *   - CommentChange: a moderator's approve / hide / unhide / delete / edit,
 *     or its author's edit / delete with the edit key's hash within the
 *     edit window (FORBIDDEN, field edit_key, otherwise). A transition that
 *     makes no sense is INVALID_ARGUMENT, field status; one to the state
 *     already there changes nothing (changed 0). Each change bumps the
 *     comment's and the thread's version and appends one event with both;
 *     DELETE erases name, e-mail and body (a tombstone);
 *   - ModerateThread: lock / unlock / pre-moderation, one event;
 *   - BanAuthor, TokenGrant, TokenRevoke: tables, no event;
 *   - PostBatch: up to TS_STORE_POST_BATCH_MAX posts, each applied as a
 *     Post (its own result, ts_store_batch_outcome), each comment made at
 *     its own position: the entry's first, then the next ones; res says
 *     whether any changed the state and the last seq;
 *   - Import: many comments, each with its own position (id and seq: the
 *     entry's first position, then the next ones), its original time and
 *     status, its parent named by source id; one already imported (same
 *     source and source id) is reported existing and left alone. Admin's:
 *     bans, locks and pre-moderation do not apply.
 * Moderators' changes record the command's actor as moderated_by, and
 * every moderation command that changed something one audit record.
 * Returns TS_OK (with *res filled, res->status saying what happened);
 * TS_E_UNSUPPORTED_VERSION, the state untouched (index not consumed), for
 * an entry of a later release: its level is above TS_STORE_LEVEL, or its op
 * is one this release does not know (a field the Command does not name);
 * the node must stop applying, an upgraded one applies it; or TS_E_NOMEM,
 * after which the store must not be used. */
int ts_store_apply(struct ts_store *s, uint64_t index, const uint8_t *payload, size_t len,
                   struct ts_store_result *res);

/* Index of the last entry applied (or restored): counts every Raft entry,
 * events or not. For the replication machinery, never sent to clients. */
uint64_t ts_store_last_index(const struct ts_store *s);

/* The seq clients see (PROTOCOL.md "seq"): the seq of the newest event
 * applied, 0 before the first. Entries that make no event (tokens, bans,
 * membership) do not move it, so a subscriber's cursor reaches it. The
 * same on every node that applied the same log, whether by replay or from
 * a snapshot (which carries it). */
uint64_t ts_store_seq(const struct ts_store *s);

size_t ts_store_thread_count(const struct ts_store *s);
size_t ts_store_comment_count(const struct ts_store *s);

/* Bytes held for threads, comments and indexes, for the benchmark. */
size_t ts_store_memory(const struct ts_store *s);

/* View of the thread with this key / id. TS_E_NOT_FOUND when none. */
int ts_store_thread_by_key(const struct ts_store *s, const char *key, Threadsync__Thread *out);
int ts_store_thread_by_id(const struct ts_store *s, uint64_t id, Threadsync__Thread *out);

/* Visits threads with id > after_id in id order; stops early when cb
 * returns non-zero and returns that value (0 when all were visited). */
int ts_store_foreach_thread(const struct ts_store *s, uint64_t after_id,
                            int (*cb)(void *arg, const Threadsync__Thread *t), void *arg);

/* Visits the comments of a thread with id > after_id in id order (so a
 * parent always comes before its replies); same stopping rule. */
int ts_store_foreach_comment(const struct ts_store *s, uint64_t thread_id, uint64_t after_id,
                             int (*cb)(void *arg, const Threadsync__Comment *c), void *arg);

/* View of one comment. TS_E_NOT_FOUND when none. */
int ts_store_comment(const struct ts_store *s, uint64_t id, Threadsync__Comment *out);

/* Serialises the whole state (threads, comments, idempotency table, last
 * index) into one malloc'd buffer the caller frees. Raft snapshots run it
 * in a forked child of the node (ts_repl.h): it must keep to reading s and
 * malloc (no logging, no locks, no file descriptors). */
int ts_store_snapshot(const struct ts_store *s, uint8_t **out, size_t *len);

/* Replaces the whole state with a snapshot's. The evlog is not touched:
 * events before a restore are the caller's business. */
int ts_store_restore(struct ts_store *s, const uint8_t *buf, size_t len);

/* The same, for a buffer the caller gives up: the decode releases its whole
 * pages behind it (madvise MADV_DONTNEED), so the image and the state it
 * becomes are not both resident (a 1,000,000-comment image is 384 MB).
 * buf's content is undefined afterwards; the caller still frees or unmaps
 * it. buf must be memory the caller owns outright: a private anonymous
 * mapping, or a malloc'd block (only pages wholly inside it are touched). */
int ts_store_restore_discard(struct ts_store *s, uint8_t *buf, size_t len);

/* A SHA-256 over the canonical content (every thread and comment field in
 * id order, idempotency table excluded), hex, into out[65]. Replicas and
 * restarts compare it. */
void ts_store_digest(const struct ts_store *s, char out[65]);

/* ---- moderation, bans and tokens ---- */

/* The digest a Post's key is kept under when token_hash (SHA-256 of the
 * token) sent it: Command.idempotency_digest. */
void ts_store_idempotency_digest(const uint8_t token_hash[TS_STORE_HASH_LEN], const char *key,
                                 uint8_t out[TS_STORE_IDEM_DIGEST_LEN]);

/* 1 when a Post with this scoped key digest would be answered from the
 * table (a retry, which limits should not count twice). */
int ts_store_idempotency_known(const struct ts_store *s,
                               const uint8_t digest[TS_STORE_IDEM_DIGEST_LEN]);

/* 1 once the state has its edit secret (a leader sends one with its posts
 * until then). */
int ts_store_has_edit_secret(const struct ts_store *s);

/* The edit key of comment_id's post into out (NUL-terminated), when its
 * idempotency entry is a derived one: TS_OK; TS_E_NOT_FOUND when there is
 * none (expired, or made by an older release with a random key). */
int ts_store_edit_key(const struct ts_store *s, uint64_t comment_id,
                      char out[TS_STORE_EDIT_KEY_LEN + 1]);

/* 1 when a post by (author_name, author_email, reader_key: a gateway's
 * Post.reader_key, or NULL / "") is refused at now_ms by a ban; *until_ms
 * (may be NULL) is its end, *field (may be NULL) the field that matched
 * ("reader_key", "author_email" or "author_name"). A reader key is banned
 * as the author "reader:" + key (TS_READER_BAN_PREFIX). */
int ts_store_banned(const struct ts_store *s, const char *author_name, const char *author_email,
                    const char *reader_key, int64_t now_ms, int64_t *until_ms, const char **field);

/* The PENDING comments (of thread_id, or all when 0) with id > after_id, in
 * id order: up to limit views into out[0..limit) (full view), *n of them;
 * *more when there are further ones. TS_E_NOMEM. */
int ts_store_pending(const struct ts_store *s, uint64_t thread_id, uint64_t after_id, size_t limit,
                     Threadsync__Comment *out, size_t *n, int *more);

enum { TS_STORE_TOKEN_NONE = 0, TS_STORE_TOKEN_ACTIVE, TS_STORE_TOKEN_REVOKED };

/* Whether name is a replicated token, a revoked name (tokens-file names
 * included), or unknown to the replicated table. */
int ts_store_token_state(const struct ts_store *s, const char *name);

/* 1 when name is an active replicated token marked as a gateway. */
int ts_store_token_gateway(const struct ts_store *s, const char *name);

/* Looks a token's SHA-256 up among the active replicated tokens: TS_OK with
 * *role and *name (pointing into the store: valid until the next apply or
 * restore; either may be NULL), or TS_E_UNAUTHENTICATED. Constant time per
 * entry. */
int ts_store_token_check(const struct ts_store *s, const uint8_t hash[TS_STORE_HASH_LEN], int *role,
                         const char **name);

struct ts_store_token {
    const char *name;
    int role; /* 0 for a revoked tokens-file name */
    int64_t created_at_ms;
    const char *created_by;
    int revoked;
    int has_secret; /* 0: a revoked tokens-file name */
    int gateway;    /* may send Post.reader_key (TokenAdd.gateway) */
};

/* Visits the replicated table in name order; stops when cb returns non-zero
 * and returns that. */
int ts_store_foreach_token(const struct ts_store *s,
                           int (*cb)(void *arg, const struct ts_store_token *t), void *arg);

/* Changes whenever the token table may have changed (grant, revoke,
 * restore): the server rechecks open sessions when it moves. */
uint64_t ts_store_auth_generation(const struct ts_store *s);

/* ---- the audit trail (docs/DESIGN.md, "The audit trail") ----
 *
 * Every moderation command that changed the state appends one record, seq
 * = its entry's position, time = the command's, actor = its token name:
 * a moderator's approve / hide / unhide / delete / edit (with the body it
 * replaced and Edit.reason), lock / unlock / pre- / post-moderation, a ban
 * or its lift, a token's grant or revocation. Authors' own edits and
 * deletes, imports and retries that change nothing make none. The trail
 * keeps the newest records whose costs (TS_STORE_AUDIT_RECORD_COST plus
 * their strings' bytes) sum to at most TS_STORE_AUDIT_MAX_BYTES, dropping
 * the oldest: the same on every node, since the cost is the content's. */
#define TS_STORE_AUDIT_MAX_BYTES (64u << 20)
#define TS_STORE_AUDIT_RECORD_COST 64u
#define TS_STORE_AUDIT_REASON_MAX 512

struct ts_store_audit_query {
    uint64_t after_seq;  /* oldest first: records with seq > after_seq */
    uint64_t before_seq; /* newest first: records with seq < before_seq (0: all) */
    int newest_first;
    uint64_t thread_id;  /* 0: any */
    uint64_t comment_id; /* 0: any */
};

/* Up to limit records matching q into out[0..limit) (views valid until the
 * next apply or restore), *n of them; *more when further ones match. */
int ts_store_audit_list(const struct ts_store *s, const struct ts_store_audit_query *q,
                        Threadsync__AuditEntry *out, size_t limit, size_t *n, int *more);
size_t ts_store_audit_count(const struct ts_store *s);
/* The seq of the oldest record kept, 0 when none. */
uint64_t ts_store_audit_oldest(const struct ts_store *s);

#endif
