/*
 * libthreadsync: the client library of threadsync (the one public header).
 *
 * A ts_client runs on the caller's libuv loop and keeps one TLS connection
 * to one server of a list (proto/PROTOCOL.md). It connects at once, sends
 * requests as soon as a connection is READY (queued until then, pipelined
 * after), answers and sends heartbeats, and, when the connection fails or
 * drops, reconnects with exponential backoff and jitter, rotating through the
 * server list. What it guarantees across reconnects:
 *
 *   - every request gets exactly one callback: its answer, an error, a
 *     timeout (request_timeout_ms after it was submitted) or TS_E_CLOSED; a
 *     request whose deadline passes while it is being retried after a
 *     NOT_LEADER or UNAVAILABLE gets that refusal (code and detail), not a
 *     bare TS_E_TIMEOUT;
 *   - a Post is re-sent after a reconnect with the SAME idempotency key, so
 *     it is applied at most once by the servers and answered at least once;
 *     NOT_LEADER moves the connection to the leader and re-sends;
 *     UNAVAILABLE moves to the next server of the list and re-sends there
 *     (with one server: re-sends after the server's retry_after_ms), and so
 *     does a server that stays silent while requests wait (silence_ms);
 *   - a subscription resumes from its cursor (the last Events.last_seq or
 *     SnapshotEnd.seq seen) on the next connection.
 *
 * Callbacks are never called from inside the ts_client_* call that takes
 * them; a function that returns an error never calls its callback. Protocol
 * messages handed to callbacks are borrowed: valid until the callback
 * returns. Callbacks may call any ts_client_* function, ts_client_close()
 * included.
 *
 * Not thread-safe: use a client from its loop's thread only.
 *
 * ABI. The API hands out and takes the protobuf-c structs generated from
 * proto/threadsync.proto (threadsync.pb-c.h) rather than wrapping them: they
 * are the protocol's own vocabulary (PROTOCOL.md names them), a wrapper
 * would restate every message and field, copy every answer once more and
 * still have to grow with the schema. The price is that a .proto change can
 * change their layout, so the rule is: ANY change to threadsync.proto bumps
 * the soname. client/lib/libthreadsync.abi records the schema's hash per
 * SOVERSION and the build takes the soname from it; the ts_abi_check test
 * fails when the schema changes without a new line there.
 *
 * Growing the public structs (struct ts_client_config, struct
 * ts_client_sub_cbs) does NOT bump the soname, under three rules:
 *   - they open with struct_size, which the caller sets by starting from
 *     TS_CLIENT_CONFIG_INIT / TS_CLIENT_SUB_CBS_INIT (or to sizeof the
 *     struct); 0 is read as the first layout (the fields up to state_arg,
 *     resp. on_error), so code that zeroes the struct keeps working;
 *   - fields are only ever appended, never removed, reordered or retyped;
 *   - a zero field means its default, so the library reads the fields a
 *     caller's struct_size covers and takes the default for the others (a
 *     newer caller's fields it does not know are ignored).
 */
#ifndef THREADSYNC_H
#define THREADSYNC_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "threadsync.pb-c.h"
#include "ts_err.h"
#include "ts_version.h"

#define TS_DEFAULT_PORT 7420

struct ts_client;

enum ts_client_state {
    TS_CLIENT_CONNECTING = 1, /* dialling info->server */
    TS_CLIENT_READY,          /* Welcome received; requests flow */
    TS_CLIENT_DISCONNECTED,   /* a connection failed or dropped; will retry */
    TS_CLIENT_FAILED,         /* gave up: pending requests failed, new ones refused */
};

struct ts_client_state_info {
    enum ts_client_state state;
    /* DISCONNECTED, FAILED: why (TS_E_IO, TS_E_TLS, TS_E_TIMEOUT, TS_E_CLOSED,
     * or a protocol code such as TS_E_UNAUTHENTICATED or TS_E_NOT_LEADER). */
    int err;
    const char *server;                 /* "host:port" concerned */
    const Threadsync__Welcome *welcome; /* READY: the server's Welcome */
    const Threadsync__Error *error;     /* the Error frame that ended it, or NULL */
    unsigned failures;                  /* consecutive failed attempts so far */
};

typedef void (*ts_client_state_cb)(void *arg, const struct ts_client_state_info *info);

/* Everything is copied by ts_client_new(); the config may be freed after.
 * Start from TS_CLIENT_CONFIG_INIT (see "ABI" above: fields are appended
 * only, 0 means the default). */
struct ts_client_config {
    size_t struct_size; /* sizeof(struct ts_client_config); 0: the first layout */
    /* "host:port" (or "[v6]:port"; the port defaults to 7420), tried in
     * order; the next one after each failure. At least one. */
    const char *const *servers;
    size_t n_servers;
    const char *ca_file;     /* PEM CA the servers' certificates must chain to */
    const char *token;       /* bearer token (Hello.token) */
    const char *client_name; /* for the server's logs; NULL: "libthreadsync" */
    /* 0 means the default shown. */
    /* TCP + TLS + Welcome; 2000. Short on purpose: a stopped process still
     * completes TCP (the kernel accepts for it) and then says nothing. */
    unsigned connect_timeout_ms;
    unsigned request_timeout_ms; /* Post and Get, from submission to answer; 30000 */
    unsigned backoff_min_ms;     /* first retry delay; 100 */
    unsigned backoff_max_ms;     /* delay cap; 10000 */
    /* A connection with requests sent and unanswered from which nothing
     * arrived for silence_ms gets a Ping; after twice that it is dropped
     * (a stopped or cut-off server) and the requests go to the next server
     * (with two or more servers listed; with one, the heartbeat timeout
     * alone ends it). 1000 */
    unsigned silence_ms;
    /* Non-zero: after any failure keep retrying until ts_client_close().
     * Zero (fail fast): connect tries each server once, in order (following
     * a NOT_LEADER redirect still); if none answers, or once a READY
     * connection drops, the client goes FAILED: pending requests and the
     * subscription fail with the reason. */
    int reconnect;
    ts_client_state_cb on_state; /* may be NULL */
    void *state_arg;
    /* New fields go here, after all others (0 must mean their default). */
};

#define TS_CLIENT_CONFIG_INIT                                                                      \
    {                                                                                              \
        .struct_size = sizeof(struct ts_client_config)                                             \
    }

/* Creates a client and starts connecting. *out is valid until the close
 * callback of ts_client_close() has run (there is no separate _free).
 * TS_E_CONFIG: no servers, a malformed address; TS_E_TLS: the CA file
 * cannot be loaded; TS_E_NOMEM. On error nothing is left to free. */
int ts_client_new(uv_loop_t *loop, const struct ts_client_config *cfg, struct ts_client **out);

typedef void (*ts_client_close_cb)(void *arg);

/* Closes the connection and frees the client. Every pending request's
 * callback runs with TS_E_CLOSED and the subscription's on_error with
 * TS_E_CLOSED, then cb (may be NULL); after cb the client pointer is
 * invalid. Further ts_client_* calls before cb return TS_E_CLOSED. Calling
 * it twice is a no-op (the second cb is not called). */
void ts_client_close(struct ts_client *c, ts_client_close_cb cb, void *arg);

/* err: TS_OK and result set; or a protocol code (1..12) with detail, the
 * server's Error; or a local code (TS_E_TIMEOUT, TS_E_CLOSED, TS_E_IO,
 * TS_E_TLS...) with detail NULL unless a server Error ended the connection. */
typedef void (*ts_client_post_cb)(void *arg, int err, const Threadsync__Error *detail,
                                  const Threadsync__PostResult *result);

/* Posts a comment. post is copied (borrowed only during the call); its
 * request_id is ignored, and an empty idempotency_key is replaced by 32 hex
 * digits of RAND_bytes. Returns TS_OK (cb will run once), TS_E_CLOSED
 * (closing or FAILED) or TS_E_NOMEM/TS_E_INTERNAL (no callback). A post
 * that timed out may still have been applied: re-post with the same
 * idempotency key to learn its result. */
int ts_client_post(struct ts_client *c, const Threadsync__Post *post, ts_client_post_cb cb,
                   void *arg);

typedef void (*ts_client_get_cb)(void *arg, int err, const Threadsync__Error *detail,
                                 const Threadsync__GetResult *result);

/* Fetches a thread and all its comments. thread_key is copied. */
int ts_client_get(struct ts_client *c, const char *thread_key, ts_client_get_cb cb, void *arg);

typedef void (*ts_client_digest_cb)(void *arg, int err, const Threadsync__Error *detail,
                                    const Threadsync__DigestResult *result);

/* Asks for the canonical digests of threads (PROTOCOL.md, "Digest"):
 * keys[0..n_keys) (copied, at most 1024), or every thread with id >
 * after_id when n_keys is 0 (a page; result->next_after_id says where the
 * next one starts). Returns and calls back as ts_client_get(). */
int ts_client_digest(struct ts_client *c, const char *const *keys, size_t n_keys, uint64_t after_id,
                     ts_client_digest_cb cb, void *arg);
/* ---- moderation, authors' edits, bans, tokens (PROTOCOL.md section 4) ----
 *
 * Each takes its request as the wire message, copied during the call (its
 * request_id is ignored), and calls cb once as ts_client_post does. Writes
 * (all but ts_client_pending and ts_client_token_list) follow NOT_LEADER to
 * the leader and, like every request, are re-sent after a reconnect: they
 * are idempotent (a repeated transition answers changed = false) except
 * TokenAdd, whose re-sent copy after a lost answer is refused with
 * INVALID_ARGUMENT field "name" (the token was made; revoke it and add
 * another). */

/* Answer of Moderate, Edit, Delete and ModerateThread. */
typedef void (*ts_client_change_cb)(void *arg, int err, const Threadsync__Error *detail,
                                    const Threadsync__ChangeResult *result);
typedef void (*ts_client_pending_cb)(void *arg, int err, const Threadsync__Error *detail,
                                     const Threadsync__PendingQueueResult *result);
typedef void (*ts_client_audit_list_cb)(void *arg, int err, const Threadsync__Error *detail,
                                        const Threadsync__AuditListResult *res);
typedef void (*ts_client_ban_cb)(void *arg, int err, const Threadsync__Error *detail,
                                 const Threadsync__BanResult *result);
typedef void (*ts_client_token_add_cb)(void *arg, int err, const Threadsync__Error *detail,
                                       const Threadsync__TokenAddResult *result);
typedef void (*ts_client_token_list_cb)(void *arg, int err, const Threadsync__Error *detail,
                                        const Threadsync__TokenListResult *result);
typedef void (*ts_client_token_revoke_cb)(void *arg, int err, const Threadsync__Error *detail,
                                          const Threadsync__TokenRevokeResult *result);

/* Approve, hide, unhide or delete a comment (MODERATOR). */
int ts_client_moderate(struct ts_client *c, const Threadsync__Moderate *m, ts_client_change_cb cb,
                       void *arg);
/* Edit a comment's body: with m->edit_key as its author (POSTER, within the
 * edit window), without as a moderator. */
int ts_client_edit(struct ts_client *c, const Threadsync__Edit *m, ts_client_change_cb cb,
                   void *arg);
/* Delete a comment: with m->edit_key as its author, without as a moderator. */
int ts_client_delete(struct ts_client *c, const Threadsync__Delete *m, ts_client_change_cb cb,
                     void *arg);
/* Lock, unlock, pre-moderate or post-moderate a thread (MODERATOR). */
int ts_client_moderate_thread(struct ts_client *c, const Threadsync__ModerateThread *m,
                              ts_client_change_cb cb, void *arg);
/* The pending queue (MODERATOR). */
int ts_client_pending(struct ts_client *c, const Threadsync__PendingQueue *m,
                      ts_client_pending_cb cb, void *arg);
/* Ban an author for a duration, or lift the ban with 0 (MODERATOR). */
/* A page of the audit trail (MODERATOR and up; PROTOCOL.md "AuditList"),
 * answered by the node asked. */
int ts_client_audit_list(struct ts_client *c, const Threadsync__AuditList *m,
                         ts_client_audit_list_cb cb, void *arg);
int ts_client_ban(struct ts_client *c, const Threadsync__BanAuthor *m, ts_client_ban_cb cb,
                  void *arg);
/* Create a token (ADMIN): the answer holds it, once. */
int ts_client_token_add(struct ts_client *c, const Threadsync__TokenAdd *m,
                        ts_client_token_add_cb cb, void *arg);
/* List the tokens' names and roles (ADMIN). */
int ts_client_token_list(struct ts_client *c, ts_client_token_list_cb cb, void *arg);
/* Revoke a token by name (ADMIN): its connections close on every node. */
int ts_client_token_revoke(struct ts_client *c, const Threadsync__TokenRevoke *m,
                           ts_client_token_revoke_cb cb, void *arg);

/* ---- import (PROTOCOL.md, "Import"; ADMIN only) ----------------------- */

typedef void (*ts_client_import_cb)(void *arg, int err, const Threadsync__Error *detail,
                                    const Threadsync__ImportResult *result);
/* Import a batch of another system's comments. Idempotent by (source,
 * source_id), so a re-sent copy after a lost answer reports the comments
 * existing with the same ids. m is copied; the result is borrowed for the
 * callback's duration. */
int ts_client_import(struct ts_client *c, const Threadsync__Import *m, ts_client_import_cb cb,
                     void *arg);

/* ---- cluster (PROTOCOL.md, "Cluster"; ADMIN only) ---------------------- */

typedef void (*ts_client_cluster_cb)(void *arg, int err, const Threadsync__Error *detail,
                                     const Threadsync__ClusterResult *result);
typedef void (*ts_client_remove_node_cb)(void *arg, int err, const Threadsync__Error *detail,
                                         const Threadsync__RemoveNodeResult *result);

/* The cluster's configuration as the connected node knows it (any node
 * answers; no redirect): nodes, roles, the leader, that node's applied seq. */
int ts_client_cluster(struct ts_client *c, ts_client_cluster_cb cb, void *arg);
/* Removes node m->node_id from the cluster: a write, so it follows
 * NOT_LEADER to the leader. Re-sent after a lost answer it gets NOT_FOUND
 * (the first one removed the node). The leader cannot remove itself
 * (INVALID_ARGUMENT): stop it (SIGTERM hands leadership over) first. */
int ts_client_remove_node(struct ts_client *c, const Threadsync__RemoveNode *m,
                          ts_client_remove_node_cb cb, void *arg);

/* ---- backup and state digest (PROTOCOL.md, "Backup"; ADMIN only) ------- */

/* One piece of the backup file, in order (chunk->offset is where it goes).
 * A chunk with offset 0 after others means the stream started over (the
 * request was re-sent to another server): drop what came before. */
typedef void (*ts_client_backup_chunk_cb)(void *arg, const Threadsync__BackupChunk *chunk);
typedef void (*ts_client_backup_cb)(void *arg, int err, const Threadsync__Error *detail,
                                    const Threadsync__BackupResult *result);
typedef void (*ts_client_state_digest_cb)(void *arg, int err, const Threadsync__Error *detail,
                                          const Threadsync__StateDigestResult *result);

/* Asks the connected node for a backup of its whole store (any node
 * answers; no redirect): on_chunk for each BackupChunk, then cb once with
 * the BackupResult (size, sha256 of the bytes the chunks carried, seq,
 * counts) or an error. Both get arg. While chunks arrive the request does
 * not time out: request_timeout_ms counts from the last one (the longest
 * silence). Checking the bytes against the result, and where they go, is
 * the caller's (the file format: proto/ts_backup_file.h in the source). */
int ts_client_backup(struct ts_client *c, ts_client_backup_chunk_cb on_chunk,
                     ts_client_backup_cb cb, void *arg);
/* The connected node's canonical state digest (compare nodes, or a
 * restored node with its backup). */
int ts_client_state_digest(struct ts_client *c, ts_client_state_digest_cb cb, void *arg);

/* A subscription's callbacks; arg is the one given to ts_client_subscribe().
 * Any may be NULL. Start from TS_CLIENT_SUB_CBS_INIT (see "ABI" above). */
struct ts_client_sub_cbs {
    size_t struct_size; /* sizeof(struct ts_client_sub_cbs); 0: the first layout */
    /* The server accepted the Subscribe (again after every reconnect):
     * events follow with seq > from_seq, or a snapshot first. */
    void (*on_result)(void *arg, uint64_t from_seq, int snapshot);
    /* A batch. ts_client_cursor() already returns ev->last_seq. */
    void (*on_events)(void *arg, const Threadsync__Events *ev);
    /* A snapshot as of seq. One interrupted by a reconnect never ends: the
     * next on_snapshot_begin restarts it; upsert by version throughout. */
    void (*on_snapshot_begin)(void *arg, const Threadsync__SnapshotBegin *b);
    void (*on_snapshot_chunk)(void *arg, const Threadsync__SnapshotChunk *chunk);
    /* The cursor is now e->seq. */
    void (*on_snapshot_end)(void *arg, const Threadsync__SnapshotEnd *e);
    /* The subscription ended; the last callback of it. err TS_E_CLOSED after
     * ts_client_close(); a protocol code (detail set) when the server
     * refused it; the connection's error when the client went FAILED. */
    void (*on_error)(void *arg, int err, const Threadsync__Error *detail);
    /* New callbacks go here, after all others. */
};

#define TS_CLIENT_SUB_CBS_INIT                                                                     \
    {                                                                                              \
        .struct_size = sizeof(struct ts_client_sub_cbs)                                            \
    }

/* Subscribes to every thread (all non-zero) or to keys[0..n_keys) (copied,
 * 1..1024), from since_seq (0: the beginning). One subscription per client:
 * TS_E_EXISTS if one is active. TS_E_INVALID_ARGUMENT for a bad key list.
 * cbs is copied. */
int ts_client_subscribe(struct ts_client *c, int all, const char *const *keys, size_t n_keys,
                        uint64_t since_seq, const struct ts_client_sub_cbs *cbs, void *arg);

/* The subscription's cursor: resume point of the last complete batch or
 * snapshot (since_seq until then); 0 without a subscription. */
uint64_t ts_client_cursor(const struct ts_client *c);

/* The current connection state. */
enum ts_client_state ts_client_state(const struct ts_client *c);

/* ------------------------------------------------------------------------ */
/* Blocking helpers (ts_client_sync.c): each call runs a private uv loop with
 * a client on cfg (cfg->on_state is ignored), does one request and closes.
 * Returns TS_OK with *out set, or the error as for the async callbacks. When
 * the server refused (protocol code), *err_out (if err_out is non-NULL) is
 * a copy of its Error; else *err_out is NULL. Free *out and *err_out with
 * ts_msg_free(). With cfg->reconnect zero a dead server list fails fast;
 * otherwise the call lasts up to request_timeout_ms. */
int ts_sync_post(const struct ts_client_config *cfg, const Threadsync__Post *post,
                 Threadsync__PostResult **out, Threadsync__Error **err_out);
int ts_sync_get(const struct ts_client_config *cfg, const char *thread_key,
                Threadsync__GetResult **out, Threadsync__Error **err_out);
int ts_sync_moderate(const struct ts_client_config *cfg, const Threadsync__Moderate *m,
                     Threadsync__ChangeResult **out, Threadsync__Error **err_out);
int ts_sync_edit(const struct ts_client_config *cfg, const Threadsync__Edit *m,
                 Threadsync__ChangeResult **out, Threadsync__Error **err_out);
int ts_sync_delete(const struct ts_client_config *cfg, const Threadsync__Delete *m,
                   Threadsync__ChangeResult **out, Threadsync__Error **err_out);
int ts_sync_moderate_thread(const struct ts_client_config *cfg, const Threadsync__ModerateThread *m,
                            Threadsync__ChangeResult **out, Threadsync__Error **err_out);
int ts_sync_pending(const struct ts_client_config *cfg, const Threadsync__PendingQueue *m,
                    Threadsync__PendingQueueResult **out, Threadsync__Error **err_out);
int ts_sync_audit_list(const struct ts_client_config *cfg, const Threadsync__AuditList *m,
                       Threadsync__AuditListResult **out, Threadsync__Error **err_out);
int ts_sync_ban(const struct ts_client_config *cfg, const Threadsync__BanAuthor *m,
                Threadsync__BanResult **out, Threadsync__Error **err_out);
int ts_sync_token_add(const struct ts_client_config *cfg, const Threadsync__TokenAdd *m,
                      Threadsync__TokenAddResult **out, Threadsync__Error **err_out);
int ts_sync_token_list(const struct ts_client_config *cfg, Threadsync__TokenListResult **out,
                       Threadsync__Error **err_out);
int ts_sync_token_revoke(const struct ts_client_config *cfg, const Threadsync__TokenRevoke *m,
                         Threadsync__TokenRevokeResult **out, Threadsync__Error **err_out);

int ts_sync_cluster(const struct ts_client_config *cfg, Threadsync__ClusterResult **out,
                    Threadsync__Error **err_out);
int ts_sync_remove_node(const struct ts_client_config *cfg, const Threadsync__RemoveNode *m,
                        Threadsync__RemoveNodeResult **out, Threadsync__Error **err_out);

/* ts_client_backup(): on_chunk(chunk_arg, ...) runs for each chunk during
 * the call; *out is the BackupResult. */
int ts_sync_backup(const struct ts_client_config *cfg, ts_client_backup_chunk_cb on_chunk,
                   void *chunk_arg, Threadsync__BackupResult **out, Threadsync__Error **err_out);
int ts_sync_state_digest(const struct ts_client_config *cfg, Threadsync__StateDigestResult **out,
                         Threadsync__Error **err_out);

int ts_sync_import(const struct ts_client_config *cfg, const Threadsync__Import *m,
                   Threadsync__ImportResult **out, Threadsync__Error **err_out);
/* Frees any protobuf message a ts_sync_* call returned; NULL is a no-op. */
void ts_msg_free(void *msg);

#endif
