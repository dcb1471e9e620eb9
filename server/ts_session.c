/*
 * ts_session: the server side of PROTOCOL.md section 3.
 *
 * Invariants:
 *   - every request frame gets exactly one answer (Result or Error with its
 *     request_id) unless the connection closes first;
 *   - nothing reaches the replicated log that failed ts_valid_post();
 *   - a write's answer is sent only from the replication callback, i.e. after
 *     commit and apply;
 *   - the session is freed only in on_close, the connection's last callback;
 *     in-flight writes and membership changes hold a pointer that on_close
 *     clears;
 *   - NOT_LEADER always carries the leader's client address; with no leader
 *     (or none whose client address is known) the answer is UNAVAILABLE;
 *   - a subscriber is never sent anything older than its cursor: a
 *     since_seq beyond this node's applied state (a lagging follower) is
 *     answered UNAVAILABLE, to be retried here or on another node.
 *   - permission is checked on every request: the token (kept as its
 *     SHA-256 only) is looked up again in the tokens file and the
 *     replicated table, and a revoked one closes the connection;
 *   - secrets given to a client (edit keys, new tokens) are made here, on
 *     the leader, before proposing; only their hashes enter the log.
 */
#include "ts_session.h"

#include "ts_addr.h"
#include "ts_auth.h"
#include "ts_backup.h"
#include "ts_conn.h"
#include "ts_digest.h"
#include "ts_err.h"
#include "ts_evlog.h"
#include "ts_frame.h"
#include "ts_hub.h"
#include "ts_limits.h"
#include "ts_log.h"
#include "ts_repl.h"
#include "ts_server_int.h"
#include "ts_stats.h"
#include "ts_store.h"
#include "ts_valid.h"
#include "ts_view.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Stop reading requests from a client whose answers pile up unread. */
#define READ_PAUSE_QUEUED (4u << 20)
/* Answers above this cannot be framed for the client (PROTOCOL.md §2). */
#define SEND_FRAME_MAX (TS_FRAME_MAX_DEFAULT + (64u << 10))

enum { AWAIT_HELLO, READY, CLOSING };

/* An edit key: 16 random bytes as 32 hex digits. */
#define EDIT_KEY_BYTES 16
#define EDIT_KEY_MAX 128 /* longest edit_key accepted in a request */
#define PENDING_DEFAULT 100
#define PENDING_MAX 1000
#define CONN_RETRY_MS 1000

/* What a write's answer is built from once applied. */
enum { W_POST, W_CHANGE, W_THREAD, W_BAN, W_TOKEN_ADD, W_TOKEN_REVOKE };

struct pending_write {
    struct ts_session *s; /* NULL once the session closed */
    struct pending_write *prev, *next;
    uint64_t request_id;
    struct ts_stats *stats; /* post-to-commit latency: proposed at t0 */
    uint64_t t0;
    int kind;
    int role;                              /* W_TOKEN_ADD */
    char name[TS_AUTH_NAME_MAX + 1];       /* W_TOKEN_ADD, W_TOKEN_REVOKE */
    char edit_key[2 * EDIT_KEY_BYTES + 1]; /* W_POST: handed back once */
    char token[TS_AUTH_TOKEN_LEN + 1];     /* W_TOKEN_ADD: handed back once */
};

/* A Join or RemoveNode waiting for the replication module. */
struct pending_change {
    struct ts_session *s; /* NULL once the session closed */
    struct pending_change *prev, *next;
    uint64_t request_id;
    int join;
    uint64_t node_id;
    char raft_address[256], client_address[256];
};

struct ts_session {
    struct ts_server *srv;
    struct ts_conn *conn;
    struct ts_session *prev, *next;
    struct ts_hub_sub *sub;
    struct pending_write *writes;
    struct ts_backup *backup; /* a backup being streamed (ts_backup.c) */
    struct pending_change *changes;
    uint64_t created_ms, last_rx_ms, last_tx_ms;
    uint64_t ping_nonce;
    int state;
    int role;
    int reading_paused;
    int full_sub;     /* subscribed with the moderators' view */
    int conn_refused; /* over the per-address limit: refuse the Hello */
    int addr_counted; /* counted in ts_limits under addr */
    uint8_t token_hash[TS_AUTH_HASH_LEN];
    char addr[64]; /* peer IP without port */
    int tls_done;
    char token_name[72];
};

static const char *role_name(int role)
{
    return role ? ts_auth_role_name(role) : "none";
}

static void note_tx(struct ts_session *s)
{
    s->last_tx_ms = uv_now(s->srv->loop);
}

static int send_frame(struct ts_session *s, const Threadsync__Frame *f)
{
    int rc = ts_conn_send_frame(s->conn, f);
    if (rc == TS_OK)
        note_tx(s);
    if (rc == TS_OK)
        ts_stats_frame_out(s->srv->stats, f);
    if (!s->reading_paused && ts_conn_queued(s->conn) > READ_PAUSE_QUEUED) {
        ts_conn_pause_reading(s->conn);
        s->reading_paused = 1;
    }
    return rc;
}

static void send_error_retry(struct ts_session *s, uint64_t request_id, int code, const char *field,
                             const char *message, uint32_t retry_after_ms)
{
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Error e = THREADSYNC__ERROR__INIT;
    if (code == TS_E_NOT_LEADER) {
        e.leader_address = (char *)ts_repl_leader_client_address(s->srv->repl);
        if (!*e.leader_address) {
            code = TS_E_UNAVAILABLE; /* nobody to send the client to: retry later */
            message = "no leader known";
        }
    }
    e.request_id = request_id;
    e.code = (Threadsync__ErrorCode)ts_err_wire(code);
    e.field = (char *)(field ? field : "");
    e.message = (char *)(message ? message : ts_err_message(code));
    e.retry_after_ms = code == TS_E_UNAVAILABLE && !retry_after_ms ? 100 : retry_after_ms;
    f.msg_case = THREADSYNC__FRAME__MSG_ERROR;
    f.error = &e;
    send_frame(s, &f);
    ts_stats_error(s->srv->stats, code);
    TS_DEBUG("conn=%llu peer=%s role=%s event=error request=%llu code=%s field=%s",
             (unsigned long long)ts_conn_id(s->conn), ts_conn_peer(s->conn), role_name(s->role),
             (unsigned long long)request_id, ts_err_name(e.code), e.field);
}

static void send_error(struct ts_session *s, uint64_t request_id, int code, const char *field,
                       const char *message)
{
    send_error_retry(s, request_id, code, field, message, code == TS_E_UNAVAILABLE ? 100 : 0);
}

static void fail_and_close(struct ts_session *s, int code, const char *message)
{
    if (s->state == CLOSING)
        return;
    send_error(s, 0, code, NULL, message);
    ts_session_close(s, code);
}

/* ---- tokens ---- */

/* The tokens file first (the bootstrap source), unless the replicated table
 * revoked that name; then the replicated tokens. */
static int resolve_token(struct ts_server *srv, const uint8_t hash[TS_AUTH_HASH_LEN], int *role,
                         const char **name)
{
    if (ts_auth_check_hash(srv->auth, hash, role, name) == TS_OK)
        return ts_store_token_state(srv->store, *name) == TS_STORE_TOKEN_REVOKED
                   ? TS_E_UNAUTHENTICATED
                   : TS_OK;
    return ts_store_token_check(srv->store, hash, role, name);
}

/* Looks the session's token up again; closes the session and returns 0
 * when it no longer grants anything (or no longer the view subscribed
 * with). */
static int reauth(struct ts_session *s)
{
    int role;
    const char *name;
    if (resolve_token(s->srv, s->token_hash, &role, &name) != TS_OK) {
        TS_INFO("conn=%llu peer=%s role=%s token_name=%s event=token_revoked",
                (unsigned long long)ts_conn_id(s->conn), ts_conn_peer(s->conn), role_name(s->role),
                s->token_name);
        fail_and_close(s, TS_E_UNAUTHENTICATED, "token revoked");
        return 0;
    }
    s->role = role;
    if (s->sub && s->full_sub && !ts_auth_role_allows(role, TS_AUTH_MODERATE)) {
        fail_and_close(s, TS_E_UNAUTHENTICATED, "role changed");
        return 0;
    }
    return 1;
}

void ts_session_recheck_auth(struct ts_session *s)
{
    if (s->state == READY)
        reauth(s);
}

/* ---- Hello ---- */

static void handle_hello(struct ts_session *s, const Threadsync__Hello *h, int status)
{
    uint32_t max = h->max_version ? h->max_version : h->min_version;
    if (h->min_version > TS_PROTOCOL_VERSION || max < TS_PROTOCOL_VERSION) {
        fail_and_close(s, TS_E_UNSUPPORTED_VERSION, "this server speaks version 1");
        return;
    }
    if (s->conn_refused) {
        send_error_retry(s, 0, TS_E_RATE_LIMITED, NULL, "too many connections from this address",
                         CONN_RETRY_MS);
        ts_session_close(s, TS_E_RATE_LIMITED);
        return;
    }
    int role;
    const char *name;
    if (status != TS_OK || ts_auth_hash_token(h->token, s->token_hash) != TS_OK ||
        resolve_token(s->srv, s->token_hash, &role, &name) != TS_OK) {
        TS_WARN("conn=%llu peer=%s role=none event=auth_failed",
                (unsigned long long)ts_conn_id(s->conn), ts_conn_peer(s->conn));
        fail_and_close(s, TS_E_UNAUTHENTICATED, "unknown token");
        return;
    }
    s->role = role;
    ts_conn_set_role(s->conn, role_name(role));
    snprintf(s->token_name, sizeof(s->token_name), "%s", name);
    s->state = READY;
    ts_conn_set_max_frame(s->conn, s->srv->cfg.max_frame);

    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Welcome w = THREADSYNC__WELCOME__INIT;
    w.version = TS_PROTOCOL_VERSION;
    w.node_id = s->srv->cfg.node_id;
    w.role = (Threadsync__Role)role;
    w.leader_address = (char *)ts_repl_leader_client_address(s->srv->repl);
    w.last_seq = ts_store_last_index(s->srv->store);
    w.max_frame = s->srv->cfg.max_frame;
    w.heartbeat_ms = s->srv->cfg.heartbeat_ms;
    w.server_name = "threadsyncd/" TS_VERSION;
    f.msg_case = THREADSYNC__FRAME__MSG_WELCOME;
    f.welcome = &w;
    send_frame(s, &f);
    char qname[160];
    TS_INFO("conn=%llu peer=%s role=%s token_name=%s event=hello client=%s",
            (unsigned long long)ts_conn_id(s->conn), ts_conn_peer(s->conn), role_name(role),
            s->token_name, ts_log_quote(h->client_name, qname, sizeof(qname)));
}

/* ---- Post ---- */

static void post_applied(void *arg, int status, const void *result)
{
    struct pending_write *pw = arg;
    struct ts_session *s = pw->s;
    ts_stats_post_done(pw->stats, status, pw->t0);
    if (s) {
        if (pw->prev)
            pw->prev->next = pw->next;
        else
            s->writes = pw->next;
        if (pw->next)
            pw->next->prev = pw->prev;
    }
    if (s && s->state != CLOSING) {
        const struct ts_store_result *res = result;
        if (status != TS_OK) {
            send_error(s, pw->request_id, status, NULL, NULL);
        } else if (res->status != TS_OK) {
            send_error(s, pw->request_id, res->status, res->field, res->message);
        } else {
            Threadsync__Frame f = THREADSYNC__FRAME__INIT;
            Threadsync__Result r = THREADSYNC__RESULT__INIT;
            Threadsync__PostResult pr = THREADSYNC__POST_RESULT__INIT;
            pr.edit_key = pw->edit_key;
            pr.comment_id = res->comment_id;
            pr.seq = res->seq;
            pr.thread_id = res->thread_id;
            pr.status = (Threadsync__Status)res->comment_status;
            r.request_id = pw->request_id;
            r.body_case = THREADSYNC__RESULT__BODY_POST;
            r.post = &pr;
            f.msg_case = THREADSYNC__FRAME__MSG_RESULT;
            f.result = &r;
            send_frame(s, &f);
        }
    }
    OPENSSL_cleanse(pw, sizeof(*pw));
    free(pw);
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sha256(const void *data, size_t len, uint8_t out[32])
{
    unsigned n = 0;
    if (EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) != 1)
        memset(out, 0, 32); /* matches nothing a real key hashes to */
}

/* Bans and rate limits, checked before anything is proposed (a flood must
 * not fill the log). A retry of a post already applied passes: it changes
 * nothing and its answer may be what the client lost. Returns 1 to go on;
 * 0 when it answered the refusal. */
static int post_admitted(struct ts_session *s, const Threadsync__Post *p)
{
    struct ts_server *srv = s->srv;
    if (ts_store_idempotency_known(srv->store, p->idempotency_key))
        return 1;
    const char *field = NULL;
    if (ts_store_banned(srv->store, p->author_name, p->author_email, wall_ms(), NULL, &field)) {
        send_error(s, p->request_id, TS_E_FORBIDDEN, field, "author banned");
        return 0;
    }
    char author[2 + TS_AUTHOR_EMAIL_MAX + 4 * TS_AUTHOR_NAME_MAX_CP + 1];
    ts_limits_author_key(p->author_name, p->author_email, author, sizeof(author));
    uint32_t retry = 0;
    int rc = ts_limits_post(srv->limits, s->token_name, author, uv_now(srv->loop), &retry);
    if (rc == TS_E_RATE_LIMITED) {
        TS_INFO("conn=%llu peer=%s role=%s token_name=%s event=rate_limited retry_after_ms=%u",
                (unsigned long long)ts_conn_id(s->conn), ts_conn_peer(s->conn), role_name(s->role),
                s->token_name, retry);
        send_error_retry(s, p->request_id, TS_E_RATE_LIMITED, NULL, NULL, retry);
        return 0;
    }
    if (rc != TS_OK) {
        send_error(s, p->request_id, TS_E_UNAVAILABLE, NULL, "out of memory");
        return 0;
    }
    return 1;
}

/* The Post command: the leader's clock and pre-moderation default, and the
 * hash of a fresh edit key, whose text goes into key_out for the answer. */
static int encode_post(struct ts_session *s, const Threadsync__Post *p,
                       char key_out[2 * EDIT_KEY_BYTES + 1], uint8_t **payload, size_t *len)
{
    static const char hex[] = "0123456789abcdef";
    uint8_t raw[EDIT_KEY_BYTES], hash[32];
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return TS_E_INTERNAL;
    for (size_t i = 0; i < sizeof(raw); i++) {
        key_out[2 * i] = hex[raw[i] >> 4];
        key_out[2 * i + 1] = hex[raw[i] & 15];
    }
    key_out[2 * EDIT_KEY_BYTES] = '\0';
    OPENSSL_cleanse(raw, sizeof(raw));
    sha256(key_out, 2 * EDIT_KEY_BYTES, hash);
    Threadsync__Post copy = *p;
    copy.request_id = 0;
    Threadsync__State__Command cmd = THREADSYNC__STATE__COMMAND__INIT;
    cmd.time_ms = wall_ms();
    cmd.op_case = THREADSYNC__STATE__COMMAND__OP_POST;
    cmd.post = &copy;
    cmd.actor = s->token_name;
    cmd.edit_key_hash.data = hash;
    cmd.edit_key_hash.len = sizeof(hash);
    cmd.premoderate = s->srv->cfg.premoderate != 0;
    cmd.trusted = ts_auth_role_allows(s->role, TS_AUTH_MODERATE);
    return ts_store_encode(&cmd, payload, len);
}

static void handle_post(struct ts_session *s, Threadsync__Post *p)
{
    if (!ts_auth_role_allows(s->role, TS_AUTH_POST)) {
        send_error(s, p->request_id, TS_E_FORBIDDEN, NULL, NULL);
        return;
    }
    const char *field;
    if (ts_valid_post(p, &field) != TS_OK) {
        send_error(s, p->request_id, TS_E_INVALID_ARGUMENT, field, NULL);
        return;
    }
    if (!ts_repl_is_leader(s->srv->repl)) {
        send_error(s, p->request_id, TS_E_NOT_LEADER, NULL, NULL);
        return;
    }
    if (!post_admitted(s, p))
        return;
    struct pending_write *pw = calloc(1, sizeof(*pw));
    if (!pw) {
        send_error(s, p->request_id, TS_E_UNAVAILABLE, NULL, "out of memory");
        return;
    }
    uint8_t *payload;
    size_t len;
    if (encode_post(s, p, pw->edit_key, &payload, &len) != TS_OK) {
        free(pw);
        send_error(s, p->request_id, TS_E_INTERNAL, NULL, NULL);
        return;
    }
    pw->s = s;
    pw->request_id = p->request_id;
    pw->stats = s->srv->stats, pw->t0 = uv_hrtime();
    int rc = ts_repl_propose(s->srv->repl, payload, len, post_applied, pw);
    free(payload);
    if (rc != TS_OK) {
        free(pw);
        send_error(s, p->request_id, rc, NULL, NULL);
        return;
    }
    pw->next = s->writes;
    if (s->writes)
        s->writes->prev = pw;
    s->writes = pw;
}

/* ---- Get ---- */

struct get_acc {
    Threadsync__Comment *items;
    size_t n, cap;
    int full;
    int failed;
};

static int collect_comment(void *arg, const Threadsync__Comment *c)
{
    struct get_acc *acc = arg;
    if (acc->n == acc->cap) {
        size_t cap = acc->cap ? acc->cap * 2 : 64;
        Threadsync__Comment *items = realloc(acc->items, cap * sizeof(*items));
        if (!items) {
            acc->failed = 1;
            return 1;
        }
        acc->items = items;
        acc->cap = cap;
    }
    acc->items[acc->n] = *c;
    if (!acc->full)
        ts_view_public_comment(&acc->items[acc->n]);
    acc->n++;
    return 0;
}

static void handle_get(struct ts_session *s, const Threadsync__Get *g)
{
    if (!ts_auth_role_allows(s->role, TS_AUTH_GET)) {
        send_error(s, g->request_id, TS_E_FORBIDDEN, NULL, NULL);
        return;
    }
    if (ts_valid_thread_key(g->thread_key) != TS_OK) {
        send_error(s, g->request_id, TS_E_INVALID_ARGUMENT, "thread_key", NULL);
        return;
    }
    Threadsync__Thread thread;
    if (ts_store_thread_by_key(s->srv->store, g->thread_key, &thread) != TS_OK) {
        send_error(s, g->request_id, TS_E_NOT_FOUND, "thread_key", NULL);
        return;
    }
    struct get_acc acc = {.full = ts_auth_role_allows(s->role, TS_AUTH_MODERATE)};
    if (!acc.full)
        ts_view_public_thread(&thread);
    ts_store_foreach_comment(s->srv->store, thread.id, 0, collect_comment, &acc);
    Threadsync__Comment **ptrs = acc.failed ? NULL : malloc((acc.n + 1) * sizeof(*ptrs));
    if (!ptrs) {
        free(acc.items);
        send_error(s, g->request_id, TS_E_UNAVAILABLE, NULL, "out of memory");
        return;
    }
    for (size_t i = 0; i < acc.n; i++)
        ptrs[i] = &acc.items[i];
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Result r = THREADSYNC__RESULT__INIT;
    Threadsync__GetResult gr = THREADSYNC__GET_RESULT__INIT;
    gr.thread = &thread;
    gr.comments = ptrs;
    gr.n_comments = acc.n;
    gr.seq = ts_store_last_index(s->srv->store);
    r.request_id = g->request_id;
    r.body_case = THREADSYNC__RESULT__BODY_GET;
    r.get = &gr;
    f.msg_case = THREADSYNC__FRAME__MSG_RESULT;
    f.result = &r;
    if (ts_frame_size(&f) - TS_FRAME_HEADER > SEND_FRAME_MAX)
        send_error(s, g->request_id, TS_E_TOO_LARGE, "thread_key",
                   "thread too large for Get; use Subscribe");
    else
        send_frame(s, &f);
    free(ptrs);
    free(acc.items);
}

/* ---- Subscribe ---- */

static int sink_write(void *sink, const void *data, size_t len)
{
    struct ts_session *s = sink;
    if (s->state == CLOSING)
        return TS_E_CLOSED;
    int rc = ts_conn_send(s->conn, data, len);
    if (rc == TS_OK)
        note_tx(s);
    if (rc == TS_OK)
        ts_stats_frames_out(s->srv->stats, data, len);
    return rc;
}

static size_t sink_queued(void *sink)
{
    struct ts_session *s = sink;
    return ts_conn_queued(s->conn);
}

static const struct ts_hub_sink_ops hub_sink = {sink_write, sink_queued};

static void handle_subscribe(struct ts_session *s, const Threadsync__Subscribe *sub)
{
    if (!ts_auth_role_allows(s->role, TS_AUTH_SUBSCRIBE)) {
        send_error(s, sub->request_id, TS_E_FORBIDDEN, NULL, NULL);
        return;
    }
    if (s->sub) {
        send_error(s, sub->request_id, TS_E_INVALID_ARGUMENT, "subscribe", "already subscribed");
        return;
    }
    if (!sub->all && (sub->n_thread_keys == 0 || sub->n_thread_keys > TS_SUBSCRIBE_KEYS_MAX)) {
        send_error(s, sub->request_id, TS_E_INVALID_ARGUMENT, "thread_keys", NULL);
        return;
    }
    for (size_t i = 0; !sub->all && i < sub->n_thread_keys; i++) {
        if (ts_valid_thread_key(sub->thread_keys[i]) != TS_OK) {
            send_error(s, sub->request_id, TS_E_INVALID_ARGUMENT, "thread_keys", NULL);
            return;
        }
    }
    uint64_t applied = ts_store_last_index(s->srv->store);
    if (sub->since_seq > applied) {
        /* A cursor from a node further ahead: this one has not applied that
         * far yet. Serving it would either claim a head we do not have or,
         * after a snapshot, send state older than the cursor. */
        char msg[96];
        snprintf(msg, sizeof(msg), "since_seq is ahead of this node (applied %llu); retry",
                 (unsigned long long)applied);
        send_error(s, sub->request_id, TS_E_UNAVAILABLE, "since_seq", msg);
        return;
    }
    struct ts_hub_filter filter = {
        .all = sub->all,
        .thread_keys = (const char **)sub->thread_keys,
        .n_thread_keys = sub->all ? 0 : sub->n_thread_keys,
    };
    uint64_t from_seq;
    int snapshot;
    int full = ts_auth_role_allows(s->role, TS_AUTH_MODERATE);
    s->full_sub = full;
    int rc = ts_hub_subscribe(s->srv->hub, &filter, full, sub->since_seq, &hub_sink, s, &s->sub,
                              &from_seq, &snapshot);
    if (rc != TS_OK) {
        send_error(s, sub->request_id, rc, NULL, NULL);
        return;
    }
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Result r = THREADSYNC__RESULT__INIT;
    Threadsync__SubscribeResult sr = THREADSYNC__SUBSCRIBE_RESULT__INIT;
    sr.from_seq = from_seq;
    sr.snapshot = snapshot;
    r.request_id = sub->request_id;
    r.body_case = THREADSYNC__RESULT__BODY_SUBSCRIBE;
    r.subscribe = &sr;
    f.msg_case = THREADSYNC__FRAME__MSG_RESULT;
    f.result = &r;
    send_frame(s, &f);
    TS_INFO("conn=%llu peer=%s role=%s event=subscribe all=%d keys=%zu since=%llu snapshot=%d",
            (unsigned long long)ts_conn_id(s->conn), ts_conn_peer(s->conn), role_name(s->role),
            sub->all, filter.n_thread_keys, (unsigned long long)sub->since_seq, snapshot);
}

/* ---- Digest ---- */

/* A page of a Digest answer stops at either bound, well inside one frame:
 * a ThreadDigest is at most ~360 bytes (a 256-byte key and 64 hex). */
#define DIGEST_PAGE_THREADS 1000
#define DIGEST_PAGE_BYTES (768u << 10)

struct digest_acc {
    struct ts_session *s;
    Threadsync__ThreadDigest *items;
    char (*hex)[TS_DIGEST_HEX_LEN + 1];
    size_t n, cap, bytes;
    uint64_t next_after_id; /* set when the page is cut */
    int failed;
};

static int digest_add_comment(void *arg, const Threadsync__Comment *c)
{
    void **ctx = arg;
    uint64_t *count = ctx[1];
    (*count)++;
    return ts_digest_add_comment(ctx[0], c) != TS_OK;
}

/* Digests one thread into the next slot (the store's views stay valid: this
 * runs within one loop turn, no apply in between). */
static int digest_thread(void *arg, const Threadsync__Thread *t)
{
    struct digest_acc *acc = arg;
    if (acc->n == DIGEST_PAGE_THREADS || acc->bytes >= DIGEST_PAGE_BYTES) {
        acc->next_after_id = acc->items[acc->n - 1].id;
        return 1;
    }
    if (acc->n == acc->cap) {
        size_t cap = acc->cap ? acc->cap * 2 : 16;
        Threadsync__ThreadDigest *items = realloc(acc->items, cap * sizeof(*items));
        char(*hex)[TS_DIGEST_HEX_LEN + 1] = items ? realloc(acc->hex, cap * sizeof(*hex)) : NULL;
        if (items)
            acc->items = items;
        if (!items || !hex) {
            acc->failed = TS_E_UNAVAILABLE;
            return 1;
        }
        acc->hex = hex;
        acc->cap = cap;
    }
    struct ts_digest *d;
    uint64_t comments = 0;
    if (ts_digest_begin(&d, t) != TS_OK) {
        acc->failed = TS_E_INTERNAL;
        return 1;
    }
    void *ctx[2] = {d, &comments};
    ts_store_foreach_comment(acc->s->srv->store, t->id, 0, digest_add_comment, ctx);
    if (ts_digest_end(d, acc->hex[acc->n]) != TS_OK) {
        acc->failed = TS_E_INTERNAL;
        return 1;
    }
    Threadsync__ThreadDigest *td = &acc->items[acc->n];
    threadsync__thread_digest__init(td);
    td->key = t->key;
    td->id = t->id;
    td->comment_count = t->comment_count;
    td->comments = comments;
    td->version = t->version;
    acc->n++;
    acc->bytes += strlen(t->key) + TS_DIGEST_HEX_LEN + 48;
    return 0;
}

static void handle_digest(struct ts_session *s, const Threadsync__Digest *dg)
{
    if (!ts_auth_role_allows(s->role, TS_AUTH_GET)) {
        send_error(s, dg->request_id, TS_E_FORBIDDEN, NULL, NULL);
        return;
    }
    if (dg->n_thread_keys > TS_SUBSCRIBE_KEYS_MAX) {
        send_error(s, dg->request_id, TS_E_INVALID_ARGUMENT, "thread_keys", NULL);
        return;
    }
    for (size_t i = 0; i < dg->n_thread_keys; i++) {
        if (ts_valid_thread_key(dg->thread_keys[i]) != TS_OK) {
            send_error(s, dg->request_id, TS_E_INVALID_ARGUMENT, "thread_keys", NULL);
            return;
        }
    }
    struct digest_acc acc = {.s = s};
    if (dg->n_thread_keys == 0) {
        ts_store_foreach_thread(s->srv->store, dg->after_id, digest_thread, &acc);
    } else {
        for (size_t i = 0; i < dg->n_thread_keys && !acc.failed; i++) {
            Threadsync__Thread t;
            /* Keys name at most 1024 threads: one page always holds them. */
            if (ts_store_thread_by_key(s->srv->store, dg->thread_keys[i], &t) == TS_OK)
                digest_thread(&acc, &t);
        }
    }
    Threadsync__ThreadDigest **ptrs = acc.failed ? NULL : malloc((acc.n + 1) * sizeof(*ptrs));
    if (!ptrs) {
        send_error(s, dg->request_id, acc.failed ? acc.failed : TS_E_UNAVAILABLE, NULL, NULL);
    } else {
        /* hex moves while it grows: point into it only now. */
        for (size_t i = 0; i < acc.n; i++) {
            acc.items[i].digest = acc.hex[i];
            ptrs[i] = &acc.items[i];
        }
        Threadsync__Frame f = THREADSYNC__FRAME__INIT;
        Threadsync__Result r = THREADSYNC__RESULT__INIT;
        Threadsync__DigestResult dr = THREADSYNC__DIGEST_RESULT__INIT;
        dr.threads = ptrs;
        dr.n_threads = acc.n;
        /* The last event's seq, not the last log index: a subscriber's
         * cursor only ever reaches seqs that carried events (or a snapshot's
         * seq, which is at least this), and the state changes only with
         * events, so this is the earliest seq the state is "as of". */
        dr.seq = ts_evlog_last_seq(s->srv->evlog);
        dr.next_after_id = acc.next_after_id;
        r.request_id = dg->request_id;
        r.body_case = THREADSYNC__RESULT__BODY_DIGEST;
        r.digest = &dr;
        f.msg_case = THREADSYNC__FRAME__MSG_RESULT;
        f.result = &r;
        send_frame(s, &f);
    }
    free(ptrs);
    free(acc.items);
    free(acc.hex);
}

/* ---- cluster membership (ADMIN) ---- */

static void fill_node(Threadsync__ClusterNode *cn, const struct ts_repl_node *n)
{
    cn->id = n->id;
    cn->raft_address = (char *)n->raft_address;
    cn->client_address = (char *)n->client_address;
    cn->role = (Threadsync__NodeRole)n->role;
    cn->is_leader = n->is_leader;
}

static void change_done(void *arg, int status)
{
    struct pending_change *pc = arg;
    struct ts_session *s = pc->s;
    if (s) {
        if (pc->prev)
            pc->prev->next = pc->next;
        else
            s->changes = pc->next;
        if (pc->next)
            pc->next->prev = pc->prev;
    }
    if (s && s->state != CLOSING) {
        if (status != TS_OK) {
            send_error(s, pc->request_id, status,
                       status == TS_E_INVALID_ARGUMENT ? "node_id" : NULL,
                       status == TS_E_FORBIDDEN ? "the node's raft endpoint failed mutual TLS "
                                                  "with this cluster's CA"
                                                : NULL);
        } else {
            Threadsync__Frame f = THREADSYNC__FRAME__INIT;
            Threadsync__Result r = THREADSYNC__RESULT__INIT;
            Threadsync__JoinResult jr = THREADSYNC__JOIN_RESULT__INIT;
            Threadsync__RemoveNodeResult rr = THREADSYNC__REMOVE_NODE_RESULT__INIT;
            Threadsync__ClusterNode cn = THREADSYNC__CLUSTER_NODE__INIT;
            struct ts_repl_node n = {.id = pc->node_id, .role = TS_REPL_VOTER};
            r.request_id = pc->request_id;
            if (pc->join) {
                memcpy(n.raft_address, pc->raft_address, sizeof(n.raft_address));
                memcpy(n.client_address, pc->client_address, sizeof(n.client_address));
                fill_node(&cn, &n);
                jr.node = &cn;
                r.body_case = THREADSYNC__RESULT__BODY_JOIN;
                r.join = &jr;
            } else {
                rr.node_id = pc->node_id;
                r.body_case = THREADSYNC__RESULT__BODY_REMOVE_NODE;
                r.remove_node = &rr;
            }
            f.msg_case = THREADSYNC__FRAME__MSG_RESULT;
            f.result = &r;
            send_frame(s, &f);
        }
    }
    free(pc);
}

static void handle_change(struct ts_session *s, uint64_t rid, int join, uint64_t node_id,
                          const char *raft_address, const char *client_address)
{
    if (!ts_auth_role_allows(s->role, TS_AUTH_ADMIN)) {
        send_error(s, rid, TS_E_FORBIDDEN, NULL, NULL);
        return;
    }
    if (node_id == 0) {
        send_error(s, rid, TS_E_INVALID_ARGUMENT, "node_id", NULL);
        return;
    }
    struct pending_change *pc = calloc(1, sizeof(*pc));
    if (!pc) {
        send_error(s, rid, TS_E_UNAVAILABLE, NULL, "out of memory");
        return;
    }
    if (join) {
        char host[256];
        uint16_t port;
        const char *bad = NULL;
        if (ts_addr_parse(raft_address, host, sizeof(host), &port) != TS_OK || port == 0 ||
            strlen(raft_address) >= sizeof(pc->raft_address))
            bad = "raft_address";
        else if (ts_addr_parse(client_address, host, sizeof(host), &port) != TS_OK || port == 0 ||
                 strlen(client_address) >= sizeof(pc->client_address))
            bad = "client_address";
        if (bad) {
            free(pc);
            send_error(s, rid, TS_E_INVALID_ARGUMENT, bad, NULL);
            return;
        }
        snprintf(pc->raft_address, sizeof(pc->raft_address), "%s", raft_address);
        snprintf(pc->client_address, sizeof(pc->client_address), "%s", client_address);
    }
    pc->s = s;
    pc->request_id = rid;
    pc->join = join;
    pc->node_id = node_id;
    int rc =
        join ? ts_repl_join(s->srv->repl, node_id, raft_address, client_address, change_done, pc)
             : ts_repl_remove(s->srv->repl, node_id, change_done, pc);
    if (rc != TS_OK) {
        free(pc);
        send_error(
            s, rid, rc, rc == TS_E_INVALID_ARGUMENT || rc == TS_E_NOT_FOUND ? "node_id" : NULL,
            rc == TS_E_UNAVAILABLE ? "another membership change is in progress, or closing" : NULL);
        return;
    }
    TS_INFO("conn=%llu peer=%s role=%s token_name=%s event=%s node=%llu",
            (unsigned long long)ts_conn_id(s->conn), ts_conn_peer(s->conn), role_name(s->role),
            s->token_name, join ? "join" : "remove_node", (unsigned long long)node_id);
    pc->next = s->changes;
    if (s->changes)
        s->changes->prev = pc;
    s->changes = pc;
}

static void handle_cluster(struct ts_session *s, const Threadsync__Cluster *c)
{
    if (!ts_auth_role_allows(s->role, TS_AUTH_ADMIN)) {
        send_error(s, c->request_id, TS_E_FORBIDDEN, NULL, NULL);
        return;
    }
    struct ts_repl_node *nodes;
    size_t n;
    if (ts_repl_nodes(s->srv->repl, &nodes, &n) != TS_OK) {
        send_error(s, c->request_id, TS_E_UNAVAILABLE, NULL, "out of memory");
        return;
    }
    Threadsync__ClusterNode *cn = calloc(n ? n : 1, sizeof(*cn));
    Threadsync__ClusterNode **ptrs = calloc(n ? n : 1, sizeof(*ptrs));
    if (!cn || !ptrs) {
        free(cn);
        free(ptrs);
        free(nodes);
        send_error(s, c->request_id, TS_E_UNAVAILABLE, NULL, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        threadsync__cluster_node__init(&cn[i]);
        fill_node(&cn[i], &nodes[i]);
        ptrs[i] = &cn[i];
    }
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Result r = THREADSYNC__RESULT__INIT;
    Threadsync__ClusterResult cr = THREADSYNC__CLUSTER_RESULT__INIT;
    cr.nodes = ptrs;
    cr.n_nodes = n;
    cr.leader_id = ts_repl_leader_id(s->srv->repl);
    cr.node_id = s->srv->cfg.node_id;
    cr.applied_seq = ts_store_last_index(s->srv->store);
    r.request_id = c->request_id;
    r.body_case = THREADSYNC__RESULT__BODY_CLUSTER;
    r.cluster = &cr;
    f.msg_case = THREADSYNC__FRAME__MSG_RESULT;
    f.result = &r;
    send_frame(s, &f);
    free(ptrs);
    free(cn);
    free(nodes);
}

/* ---- moderation, authors' edits, bans, tokens (PROTOCOL.md section 4) ---- */

static void pw_unlink(struct pending_write *pw)
{
    struct ts_session *s = pw->s;
    if (!s)
        return;
    if (pw->prev)
        pw->prev->next = pw->next;
    else
        s->writes = pw->next;
    if (pw->next)
        pw->next->prev = pw->prev;
}

static void send_result(struct ts_session *s, Threadsync__Result *r)
{
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    f.msg_case = THREADSYNC__FRAME__MSG_RESULT;
    f.result = r;
    send_frame(s, &f);
}

/* ChangeResult for a comment or thread change, in the view the session's
 * role may see. */
static void send_change(struct ts_session *s, uint64_t rid, const struct ts_store_result *res,
                        int with_comment)
{
    Threadsync__Result r = THREADSYNC__RESULT__INIT;
    Threadsync__ChangeResult cr = THREADSYNC__CHANGE_RESULT__INIT;
    Threadsync__Thread t;
    Threadsync__Comment c;
    int full = ts_auth_role_allows(s->role, TS_AUTH_MODERATE);
    cr.seq = res->changed ? res->seq : 0;
    cr.changed = res->changed != 0;
    if (ts_store_thread_by_id(s->srv->store, res->thread_id, &t) == TS_OK) {
        if (!full)
            ts_view_public_thread(&t);
        cr.thread = &t;
    }
    if (with_comment && ts_store_comment(s->srv->store, res->comment_id, &c) == TS_OK) {
        if (!full)
            ts_view_public_comment(&c);
        cr.comment = &c;
    }
    r.request_id = rid;
    r.body_case = THREADSYNC__RESULT__BODY_CHANGE;
    r.change = &cr;
    send_result(s, &r);
}

/* The answer to every write but Post, once its entry is applied. */
static void write_applied(void *arg, int status, const void *result)
{
    struct pending_write *pw = arg;
    struct ts_session *s = pw->s;
    pw_unlink(pw);
    const struct ts_store_result *res = result;
    if (!s || s->state == CLOSING) {
        /* nobody to answer: the client retries or gives up */
    } else if (status != TS_OK) {
        send_error(s, pw->request_id, status, NULL, NULL);
    } else if (res->status != TS_OK) {
        send_error(s, pw->request_id, res->status, res->field, res->message);
    } else {
        Threadsync__Result r = THREADSYNC__RESULT__INIT;
        r.request_id = pw->request_id;
        Threadsync__BanResult br = THREADSYNC__BAN_RESULT__INIT;
        Threadsync__TokenAddResult ta = THREADSYNC__TOKEN_ADD_RESULT__INIT;
        Threadsync__TokenRevokeResult tr = THREADSYNC__TOKEN_REVOKE_RESULT__INIT;
        switch (pw->kind) {
        case W_CHANGE:
        case W_THREAD:
            send_change(s, pw->request_id, res, pw->kind == W_CHANGE);
            break;
        case W_BAN:
            br.author = pw->name;
            br.until_ms = res->until_ms;
            br.seq = res->seq;
            r.body_case = THREADSYNC__RESULT__BODY_BAN;
            r.ban = &br;
            send_result(s, &r);
            break;
        case W_TOKEN_ADD:
            ta.name = pw->name;
            ta.role = (Threadsync__Role)pw->role;
            ta.token = pw->token;
            ta.seq = res->seq;
            r.body_case = THREADSYNC__RESULT__BODY_TOKEN_ADD;
            r.token_add = &ta;
            send_result(s, &r);
            break;
        case W_TOKEN_REVOKE:
            tr.name = pw->name;
            tr.seq = res->seq;
            tr.changed = res->changed != 0;
            r.body_case = THREADSYNC__RESULT__BODY_TOKEN_REVOKE;
            r.token_revoke = &tr;
            send_result(s, &r);
            break;
        default:
            break;
        }
    }
    OPENSSL_cleanse(pw, sizeof(*pw)); /* a new token's text may be in it */
    free(pw);
}

/* Proposes cmd (stamped here with the leader's clock and the session's
 * token name) for a write of kind; pw (may be NULL: allocated here) carries
 * what the answer needs. Every path answers the request or leaves that to
 * write_applied. */
static void propose_write(struct ts_session *s, uint64_t rid, int kind,
                          Threadsync__State__Command *cmd, struct pending_write *pw)
{
    if (!ts_repl_is_leader(s->srv->repl)) {
        free(pw);
        send_error(s, rid, TS_E_NOT_LEADER, NULL, NULL);
        return;
    }
    if (!pw && !(pw = calloc(1, sizeof(*pw)))) {
        send_error(s, rid, TS_E_UNAVAILABLE, NULL, "out of memory");
        return;
    }
    cmd->time_ms = wall_ms();
    cmd->actor = s->token_name;
    uint8_t *payload;
    size_t len;
    if (ts_store_encode(cmd, &payload, &len) != TS_OK) {
        free(pw);
        send_error(s, rid, TS_E_UNAVAILABLE, NULL, "out of memory");
        return;
    }
    pw->s = s;
    pw->request_id = rid;
    pw->kind = kind;
    int rc = ts_repl_propose(s->srv->repl, payload, len, write_applied, pw);
    free(payload);
    if (rc != TS_OK) {
        OPENSSL_cleanse(pw, sizeof(*pw));
        free(pw);
        send_error(s, rid, rc, NULL, NULL);
        return;
    }
    pw->next = s->writes;
    if (s->writes)
        s->writes->prev = pw;
    s->writes = pw;
    TS_INFO("conn=%llu peer=%s role=%s token_name=%s event=write kind=%d",
            (unsigned long long)ts_conn_id(s->conn), ts_conn_peer(s->conn), role_name(s->role),
            s->token_name, kind);
}

static int allowed(struct ts_session *s, uint64_t rid, enum ts_auth_action action)
{
    if (ts_auth_role_allows(s->role, action))
        return 1;
    send_error(s, rid, TS_E_FORBIDDEN, NULL, NULL);
    return 0;
}

/* A comment change: by a moderator (key NULL or "") or by its author with
 * the edit key. body only for CHANGE_EDIT. */
static void comment_change(struct ts_session *s, uint64_t rid, uint64_t comment_id,
                           Threadsync__State__ChangeKind kind, const char *key, char *body)
{
    int author = key && *key;
    if (!allowed(s, rid, author ? TS_AUTH_POST : TS_AUTH_MODERATE))
        return;
    if (!comment_id) {
        send_error(s, rid, TS_E_INVALID_ARGUMENT, "comment_id", NULL);
        return;
    }
    size_t key_len = author ? strlen(key) : 0;
    if (key_len > EDIT_KEY_MAX) {
        send_error(s, rid, TS_E_INVALID_ARGUMENT, "edit_key", NULL);
        return;
    }
    size_t body_len = body ? strlen(body) : 0;
    if (kind == THREADSYNC__STATE__CHANGE_KIND__CHANGE_EDIT &&
        (!body_len || body_len > TS_BODY_MAX || !ts_valid_text(body, body_len, 1))) {
        send_error(s, rid, TS_E_INVALID_ARGUMENT, "body", NULL);
        return;
    }
    uint8_t hash[32];
    Threadsync__State__CommentChange cc = THREADSYNC__STATE__COMMENT_CHANGE__INIT;
    cc.comment_id = comment_id;
    cc.kind = kind;
    if (kind == THREADSYNC__STATE__CHANGE_KIND__CHANGE_EDIT)
        cc.body = body;
    if (author) {
        sha256(key, key_len, hash);
        cc.edit_key_hash.data = hash;
        cc.edit_key_hash.len = sizeof(hash);
        cc.edit_window_ms = (int64_t)s->srv->cfg.edit_window_ms;
    }
    Threadsync__State__Command cmd = THREADSYNC__STATE__COMMAND__INIT;
    cmd.op_case = THREADSYNC__STATE__COMMAND__OP_COMMENT_CHANGE;
    cmd.comment_change = &cc;
    cmd.premoderate = s->srv->cfg.premoderate != 0;
    cmd.trusted = ts_auth_role_allows(s->role, TS_AUTH_MODERATE);
    propose_write(s, rid, W_CHANGE, &cmd, NULL);
}

static void handle_moderate(struct ts_session *s, const Threadsync__Moderate *m)
{
    if (!allowed(s, m->request_id, TS_AUTH_MODERATE))
        return;
    if (m->action < THREADSYNC__MODERATION_ACTION__APPROVE ||
        m->action > THREADSYNC__MODERATION_ACTION__DELETE) {
        send_error(s, m->request_id, TS_E_INVALID_ARGUMENT, "action", NULL);
        return;
    }
    /* ModerationAction and ChangeKind share their values 1..4. */
    comment_change(s, m->request_id, m->comment_id, (Threadsync__State__ChangeKind)m->action, NULL,
                   NULL);
}

static void handle_edit(struct ts_session *s, const Threadsync__Edit *e)
{
    comment_change(s, e->request_id, e->comment_id, THREADSYNC__STATE__CHANGE_KIND__CHANGE_EDIT,
                   e->edit_key, e->body);
}

static void handle_delete(struct ts_session *s, const Threadsync__Delete *d)
{
    comment_change(s, d->request_id, d->comment_id, THREADSYNC__STATE__CHANGE_KIND__CHANGE_DELETE,
                   d->edit_key, NULL);
}

static void handle_moderate_thread(struct ts_session *s, const Threadsync__ModerateThread *m)
{
    if (!allowed(s, m->request_id, TS_AUTH_MODERATE))
        return;
    if (ts_valid_thread_key(m->thread_key) != TS_OK) {
        send_error(s, m->request_id, TS_E_INVALID_ARGUMENT, "thread_key", NULL);
        return;
    }
    if (m->action < THREADSYNC__THREAD_ACTION__THREAD_LOCK ||
        m->action > THREADSYNC__THREAD_ACTION__THREAD_POSTMODERATE) {
        send_error(s, m->request_id, TS_E_INVALID_ARGUMENT, "action", NULL);
        return;
    }
    Threadsync__ModerateThread copy = *m;
    copy.request_id = 0;
    Threadsync__State__Command cmd = THREADSYNC__STATE__COMMAND__INIT;
    cmd.op_case = THREADSYNC__STATE__COMMAND__OP_MODERATE_THREAD;
    cmd.moderate_thread = &copy;
    propose_write(s, m->request_id, W_THREAD, &cmd, NULL);
}

static void handle_ban(struct ts_session *s, const Threadsync__BanAuthor *b)
{
    if (!allowed(s, b->request_id, TS_AUTH_MODERATE))
        return;
    size_t len = b->author ? strlen(b->author) : 0;
    if (!len || len > TS_AUTHOR_EMAIL_MAX || !ts_valid_text(b->author, len, 0)) {
        send_error(s, b->request_id, TS_E_INVALID_ARGUMENT, "author", NULL);
        return;
    }
    if (b->duration_ms > (uint64_t)TS_STORE_BAN_MAX_MS) {
        send_error(s, b->request_id, TS_E_INVALID_ARGUMENT, "duration_ms", NULL);
        return;
    }
    struct pending_write *pw = calloc(1, sizeof(*pw));
    if (!pw) {
        send_error(s, b->request_id, TS_E_UNAVAILABLE, NULL, "out of memory");
        return;
    }
    /* The answer names the author as stored: e-mails lowercased. */
    snprintf(pw->name, sizeof(pw->name), "%.64s", b->author);
    if (strchr(pw->name, '@'))
        for (char *c = pw->name; *c; c++)
            if (*c >= 'A' && *c <= 'Z')
                *c = (char)(*c - 'A' + 'a');
    Threadsync__BanAuthor copy = *b;
    copy.request_id = 0;
    Threadsync__State__Command cmd = THREADSYNC__STATE__COMMAND__INIT;
    cmd.op_case = THREADSYNC__STATE__COMMAND__OP_BAN_AUTHOR;
    cmd.ban_author = &copy;
    propose_write(s, b->request_id, W_BAN, &cmd, pw);
}

static int valid_token_name(const char *s)
{
    size_t len = s ? strlen(s) : 0;
    if (!len || len > TS_AUTH_NAME_MAX)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", s[i]))
            return 0;
    return 1;
}

/* Whether name is in this node's tokens file. */
static int file_has_name(const struct ts_auth *auth, const char *name)
{
    const char *n;
    for (size_t i = 0; ts_auth_entry(auth, i, NULL, &n) == TS_OK; i++)
        if (strcmp(n, name) == 0)
            return 1;
    return 0;
}

static void handle_token_add(struct ts_session *s, const Threadsync__TokenAdd *a)
{
    if (!allowed(s, a->request_id, TS_AUTH_ADMIN))
        return;
    if (!valid_token_name(a->name)) {
        send_error(s, a->request_id, TS_E_INVALID_ARGUMENT, "name", NULL);
        return;
    }
    if (a->role < THREADSYNC__ROLE__READER || a->role > THREADSYNC__ROLE__ADMIN) {
        send_error(s, a->request_id, TS_E_INVALID_ARGUMENT, "role", NULL);
        return;
    }
    if (file_has_name(s->srv->auth, a->name) ||
        ts_store_token_state(s->srv->store, a->name) != TS_STORE_TOKEN_NONE) {
        send_error(s, a->request_id, TS_E_INVALID_ARGUMENT, "name", "a token had this name");
        return;
    }
    if (!ts_repl_is_leader(s->srv->repl)) {
        send_error(s, a->request_id, TS_E_NOT_LEADER, NULL, NULL);
        return;
    }
    struct pending_write *pw = calloc(1, sizeof(*pw));
    uint8_t hash[TS_AUTH_HASH_LEN];
    if (!pw || ts_auth_generate_token(pw->token) != TS_OK ||
        ts_auth_hash_token(pw->token, hash) != TS_OK) {
        free(pw);
        send_error(s, a->request_id, TS_E_UNAVAILABLE, NULL, "cannot make a token");
        return;
    }
    snprintf(pw->name, sizeof(pw->name), "%s", a->name);
    pw->role = a->role;
    Threadsync__State__TokenGrant g = THREADSYNC__STATE__TOKEN_GRANT__INIT;
    g.name = a->name;
    g.role = a->role;
    g.token_hash.data = hash;
    g.token_hash.len = sizeof(hash);
    Threadsync__State__Command cmd = THREADSYNC__STATE__COMMAND__INIT;
    cmd.op_case = THREADSYNC__STATE__COMMAND__OP_TOKEN_GRANT;
    cmd.token_grant = &g;
    propose_write(s, a->request_id, W_TOKEN_ADD, &cmd, pw);
}

static void handle_token_revoke(struct ts_session *s, const Threadsync__TokenRevoke *rv)
{
    if (!allowed(s, rv->request_id, TS_AUTH_ADMIN))
        return;
    if (!valid_token_name(rv->name)) {
        send_error(s, rv->request_id, TS_E_INVALID_ARGUMENT, "name", NULL);
        return;
    }
    if (!file_has_name(s->srv->auth, rv->name) &&
        ts_store_token_state(s->srv->store, rv->name) == TS_STORE_TOKEN_NONE) {
        send_error(s, rv->request_id, TS_E_NOT_FOUND, "name", NULL);
        return;
    }
    struct pending_write *pw = calloc(1, sizeof(*pw));
    if (!pw) {
        send_error(s, rv->request_id, TS_E_UNAVAILABLE, NULL, "out of memory");
        return;
    }
    snprintf(pw->name, sizeof(pw->name), "%s", rv->name);
    Threadsync__TokenRevoke copy = *rv;
    copy.request_id = 0;
    Threadsync__State__Command cmd = THREADSYNC__STATE__COMMAND__INIT;
    cmd.op_case = THREADSYNC__STATE__COMMAND__OP_TOKEN_REVOKE;
    cmd.token_revoke = &copy;
    propose_write(s, rv->request_id, W_TOKEN_REVOKE, &cmd, pw);
}

struct token_list {
    Threadsync__TokenInfo *items;
    size_t n, cap;
    int failed;
};

static Threadsync__TokenInfo *token_list_add(struct token_list *l)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        Threadsync__TokenInfo *v = realloc(l->items, cap * sizeof(*v));
        if (!v) {
            l->failed = 1;
            return NULL;
        }
        l->items = v;
        l->cap = cap;
    }
    Threadsync__TokenInfo *t = &l->items[l->n++];
    threadsync__token_info__init(t);
    return t;
}

static int collect_token(void *arg, const struct ts_store_token *t)
{
    struct token_list *l = arg;
    if (!t->has_secret)
        return 0; /* a revoked tokens-file name: listed with the file's */
    Threadsync__TokenInfo *i = token_list_add(l);
    if (!i)
        return 1;
    i->name = (char *)t->name;
    i->role = (Threadsync__Role)t->role;
    i->created_at_ms = t->created_at_ms;
    i->created_by = (char *)t->created_by;
    i->revoked = t->revoked != 0;
    return 0;
}

static void handle_token_list(struct ts_session *s, const Threadsync__TokenList *tl)
{
    if (!allowed(s, tl->request_id, TS_AUTH_ADMIN))
        return;
    struct token_list l = {0};
    int role;
    const char *name;
    for (size_t i = 0; ts_auth_entry(s->srv->auth, i, &role, &name) == TS_OK; i++) {
        Threadsync__TokenInfo *t = token_list_add(&l);
        if (!t)
            break;
        t->name = (char *)name;
        t->role = (Threadsync__Role)role;
        t->from_file = 1;
        t->revoked = ts_store_token_state(s->srv->store, name) == TS_STORE_TOKEN_REVOKED;
    }
    if (!l.failed)
        ts_store_foreach_token(s->srv->store, collect_token, &l);
    Threadsync__TokenInfo **ptrs = l.failed ? NULL : malloc((l.n + 1) * sizeof(*ptrs));
    if (!ptrs) {
        free(l.items);
        send_error(s, tl->request_id, TS_E_UNAVAILABLE, NULL, "out of memory");
        return;
    }
    for (size_t i = 0; i < l.n; i++)
        ptrs[i] = &l.items[i];
    Threadsync__Result r = THREADSYNC__RESULT__INIT;
    Threadsync__TokenListResult lr = THREADSYNC__TOKEN_LIST_RESULT__INIT;
    lr.tokens = ptrs;
    lr.n_tokens = l.n;
    r.request_id = tl->request_id;
    r.body_case = THREADSYNC__RESULT__BODY_TOKEN_LIST;
    r.token_list = &lr;
    send_result(s, &r);
    free(ptrs);
    free(l.items);
}

static void handle_pending_queue(struct ts_session *s, const Threadsync__PendingQueue *q)
{
    if (!allowed(s, q->request_id, TS_AUTH_MODERATE))
        return;
    struct ts_store *store = s->srv->store;
    Threadsync__Thread only;
    uint64_t thread_id = 0;
    if (q->thread_key && *q->thread_key) {
        if (ts_valid_thread_key(q->thread_key) != TS_OK) {
            send_error(s, q->request_id, TS_E_INVALID_ARGUMENT, "thread_key", NULL);
            return;
        }
        if (ts_store_thread_by_key(store, q->thread_key, &only) != TS_OK) {
            send_error(s, q->request_id, TS_E_NOT_FOUND, "thread_key", NULL);
            return;
        }
        thread_id = only.id;
    }
    size_t limit = q->limit ? q->limit : PENDING_DEFAULT;
    if (limit > PENDING_MAX)
        limit = PENDING_MAX;
    Threadsync__Comment *cv = calloc(limit, sizeof(*cv));
    Threadsync__Comment **cp = calloc(limit, sizeof(*cp));
    Threadsync__Thread *tv = calloc(limit, sizeof(*tv));
    Threadsync__Thread **tp = calloc(limit, sizeof(*tp));
    size_t n = 0, nt = 0;
    int more = 0;
    if (!cv || !cp || !tv || !tp ||
        ts_store_pending(store, thread_id, q->after_id, limit, cv, &n, &more) != TS_OK) {
        send_error(s, q->request_id, TS_E_UNAVAILABLE, NULL, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        cp[i] = &cv[i];
        size_t j = 0;
        while (j < nt && tv[j].id != cv[i].thread_id)
            j++;
        if (j == nt && ts_store_thread_by_id(store, cv[i].thread_id, &tv[nt]) == TS_OK) {
            tp[nt] = &tv[nt];
            nt++;
        }
    }
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Result r = THREADSYNC__RESULT__INIT;
    Threadsync__PendingQueueResult pr = THREADSYNC__PENDING_QUEUE_RESULT__INIT;
    pr.comments = cp;
    pr.threads = tp;
    pr.n_threads = nt;
    pr.seq = ts_store_last_index(store);
    r.request_id = q->request_id;
    r.body_case = THREADSYNC__RESULT__BODY_PENDING_QUEUE;
    r.pending_queue = &pr;
    f.msg_case = THREADSYNC__FRAME__MSG_RESULT;
    f.result = &r;
    /* Long bodies: fewer comments per answer (the rest are "more"); the
     * threads listed may then include one no longer needed, which is
     * harmless. */
    pr.n_comments = n;
    pr.more = more;
    while (pr.n_comments > 1 && ts_frame_size(&f) - TS_FRAME_HEADER > SEND_FRAME_MAX) {
        pr.n_comments /= 2;
        pr.more = 1;
    }
    send_frame(s, &f);
out:
    free(cv);
    free(cp);
    free(tv);
    free(tp);
}

/* ---- connection callbacks ---- */

static uint64_t request_id_of(const Threadsync__Frame *f)
{
    switch (f->msg_case) {
    case THREADSYNC__FRAME__MSG_POST:
        return f->post->request_id;
    case THREADSYNC__FRAME__MSG_GET:
        return f->get->request_id;
    case THREADSYNC__FRAME__MSG_SUBSCRIBE:
        return f->subscribe->request_id;
    case THREADSYNC__FRAME__MSG_DIGEST:
        return f->digest->request_id;
    case THREADSYNC__FRAME__MSG_JOIN:
        return f->join->request_id;
    case THREADSYNC__FRAME__MSG_REMOVE_NODE:
        return f->remove_node->request_id;
    case THREADSYNC__FRAME__MSG_CLUSTER:
        return f->cluster->request_id;
    case THREADSYNC__FRAME__MSG_MODERATE:
        return f->moderate->request_id;
    case THREADSYNC__FRAME__MSG_EDIT:
        return f->edit->request_id;
    case THREADSYNC__FRAME__MSG_DELETE:
        return f->delete_->request_id;
    case THREADSYNC__FRAME__MSG_MODERATE_THREAD:
        return f->moderate_thread->request_id;
    case THREADSYNC__FRAME__MSG_PENDING_QUEUE:
        return f->pending_queue->request_id;
    case THREADSYNC__FRAME__MSG_BAN_AUTHOR:
        return f->ban_author->request_id;
    case THREADSYNC__FRAME__MSG_TOKEN_ADD:
        return f->token_add->request_id;
    case THREADSYNC__FRAME__MSG_TOKEN_LIST:
        return f->token_list->request_id;
    case THREADSYNC__FRAME__MSG_TOKEN_REVOKE:
        return f->token_revoke->request_id;
    default:
        return 0;
    }
}

/* One request that passed the common checks (request id, field text). */
static void dispatch_request(struct ts_session *s, Threadsync__Frame *f, uint64_t rid)
{
    switch (f->msg_case) {
    case THREADSYNC__FRAME__MSG_POST:
        handle_post(s, f->post);
        break;
    case THREADSYNC__FRAME__MSG_GET:
        handle_get(s, f->get);
        break;
    case THREADSYNC__FRAME__MSG_SUBSCRIBE:
        handle_subscribe(s, f->subscribe);
        break;
    case THREADSYNC__FRAME__MSG_DIGEST:
        handle_digest(s, f->digest);
        break;
    case THREADSYNC__FRAME__MSG_JOIN:
        handle_change(s, rid, 1, f->join->node_id, f->join->raft_address,
                      f->join->client_address);
        break;
    case THREADSYNC__FRAME__MSG_REMOVE_NODE:
        handle_change(s, rid, 0, f->remove_node->node_id, NULL, NULL);
        break;
    case THREADSYNC__FRAME__MSG_CLUSTER:
        handle_cluster(s, f->cluster);
        break;
    case THREADSYNC__FRAME__MSG_MODERATE:
        handle_moderate(s, f->moderate);
        break;
    case THREADSYNC__FRAME__MSG_EDIT:
        handle_edit(s, f->edit);
        break;
    case THREADSYNC__FRAME__MSG_DELETE:
        handle_delete(s, f->delete_);
        break;
    case THREADSYNC__FRAME__MSG_MODERATE_THREAD:
        handle_moderate_thread(s, f->moderate_thread);
        break;
    case THREADSYNC__FRAME__MSG_PENDING_QUEUE:
        handle_pending_queue(s, f->pending_queue);
        break;
    case THREADSYNC__FRAME__MSG_BAN_AUTHOR:
        handle_ban(s, f->ban_author);
        break;
    case THREADSYNC__FRAME__MSG_TOKEN_ADD:
        handle_token_add(s, f->token_add);
        break;
    case THREADSYNC__FRAME__MSG_TOKEN_LIST:
        handle_token_list(s, f->token_list);
        break;
    case THREADSYNC__FRAME__MSG_TOKEN_REVOKE:
        handle_token_revoke(s, f->token_revoke);
        break;
    default:
        break;
    }
}

static void on_frame(struct ts_conn *c, Threadsync__Frame *f, int status, const char *bad_field)
{
    struct ts_session *s = ts_conn_data(c);
    s->last_rx_ms = uv_now(s->srv->loop);
    ts_stats_frame_in(s->srv->stats, f);
    if (s->state == CLOSING)
        goto out;
    if (s->state == AWAIT_HELLO) {
        if (f->msg_case != THREADSYNC__FRAME__MSG_HELLO)
            fail_and_close(s, TS_E_BAD_FRAME, "expected Hello");
        else
            handle_hello(s, f->hello, status);
        goto out;
    }
    switch (f->msg_case) {
    case THREADSYNC__FRAME__MSG_POST:
    case THREADSYNC__FRAME__MSG_GET:
    case THREADSYNC__FRAME__MSG_SUBSCRIBE:
    case THREADSYNC__FRAME__MSG_DIGEST:
    case THREADSYNC__FRAME__MSG_JOIN:
    case THREADSYNC__FRAME__MSG_REMOVE_NODE:
    case THREADSYNC__FRAME__MSG_CLUSTER:
    case THREADSYNC__FRAME__MSG_MODERATE:
    case THREADSYNC__FRAME__MSG_EDIT:
    case THREADSYNC__FRAME__MSG_DELETE:
    case THREADSYNC__FRAME__MSG_MODERATE_THREAD:
    case THREADSYNC__FRAME__MSG_PENDING_QUEUE:
    case THREADSYNC__FRAME__MSG_BAN_AUTHOR:
    case THREADSYNC__FRAME__MSG_TOKEN_ADD:
    case THREADSYNC__FRAME__MSG_TOKEN_LIST:
    case THREADSYNC__FRAME__MSG_TOKEN_REVOKE: {
        uint64_t rid = request_id_of(f);
        if (rid == 0)
            send_error(s, 0, TS_E_INVALID_ARGUMENT, "request_id", NULL);
        else if (status != TS_OK)
            send_error(s, rid, status, bad_field, NULL);
        else if (reauth(s)) /* permission is checked on every request */
            dispatch_request(s, f, rid);
        break;
    }
    case THREADSYNC__FRAME__MSG_PING: {
        Threadsync__Frame r = THREADSYNC__FRAME__INIT;
        Threadsync__Pong pong = THREADSYNC__PONG__INIT;
        pong.nonce = f->ping->nonce;
        r.msg_case = THREADSYNC__FRAME__MSG_PONG;
        r.pong = &pong;
        send_frame(s, &r);
        break;
    }
    case THREADSYNC__FRAME__MSG_PONG:
        break;
    case THREADSYNC__FRAME__MSG_BACKUP:
    case THREADSYNC__FRAME__MSG_STATE_DIGEST:
        ts_backup_request(s->srv, s->conn, s->role, f, status, &s->backup);
        break;
    default:
        fail_and_close(s, TS_E_BAD_FRAME, "message not allowed from a client");
        break;
    }
out:
    ts_frame_free(f);
}

static void on_error(struct ts_conn *c, int err)
{
    struct ts_session *s = ts_conn_data(c);
    TS_INFO("conn=%llu peer=%s role=%s event=bad_input code=%s", (unsigned long long)ts_conn_id(c),
            ts_conn_peer(c), role_name(s->role), ts_err_name(err));
    fail_and_close(s, err, err == TS_E_TOO_LARGE ? "frame above the limit" : "bad frame");
}

static void on_drain(struct ts_conn *c)
{
    struct ts_session *s = ts_conn_data(c);
    if (s->reading_paused) {
        ts_conn_resume_reading(c);
        s->reading_paused = 0;
    }
    if (s->sub)
        ts_hub_drained(s->sub);
    if (s->backup)
        ts_backup_drained(&s->backup);
}

static void on_close(struct ts_conn *c, int err)
{
    struct ts_session *s = ts_conn_data(c);
    struct ts_server *srv = s->srv;
    if (s->sub)
        ts_hub_unsubscribe(s->sub);
    ts_backup_free(s->backup);
    if (!s->tls_done && err == TS_E_TLS)
        ts_stats_tls_failed(srv->stats);
    for (struct pending_write *pw = s->writes; pw; pw = pw->next)
        pw->s = NULL;
    for (struct pending_change *pc = s->changes; pc; pc = pc->next)
        pc->s = NULL;
    if (s->addr_counted)
        ts_limits_conn_close(srv->limits, s->addr);
    if (s->prev)
        s->prev->next = s->next;
    else
        srv->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    srv->n_sessions--;
    TS_INFO("conn=%llu peer=%s role=%s event=close reason=%s", (unsigned long long)ts_conn_id(c),
            ts_conn_peer(c), role_name(s->role), ts_err_name(err));
    free(s);
}

static void on_open(struct ts_conn *c)
{
    struct ts_session *s = ts_conn_data(c);
    s->tls_done = 1;
    ts_stats_tls(s->srv->stats, ts_conn_resumed(c));
}

static const struct ts_conn_cbs session_cbs = {
    .on_open = on_open,
    .on_frame = on_frame,
    .on_error = on_error,
    .on_drain = on_drain,
    .on_close = on_close,
};

/* The per-address connection limit: over it, the Hello is refused with
 * RATE_LIMITED; far over it, the connection is dropped before TLS. */
static void count_connection(struct ts_session *s)
{
    const char *peer = ts_conn_peer(s->conn);
    size_t len = strlen(peer);
    const char *colon = strrchr(peer, ':');
    if (colon)
        len = (size_t)(colon - peer);
    if (peer[0] == '[' && len >= 2) { /* "[v6]:port" */
        peer++;
        len -= 2;
    }
    snprintf(s->addr, sizeof(s->addr), "%.*s", (int)len, peer);
    int rc = ts_limits_conn_open(s->srv->limits, s->addr);
    s->addr_counted = rc != TS_E_NOMEM;
    if (rc == TS_E_RATE_LIMITED || rc == TS_E_BUSY)
        TS_WARN("conn=%llu peer=%s role=none event=conn_limit action=%s",
                (unsigned long long)ts_conn_id(s->conn), ts_conn_peer(s->conn),
                rc == TS_E_BUSY ? "drop" : "refuse");
    if (rc == TS_E_RATE_LIMITED)
        s->conn_refused = 1;
    else if (rc == TS_E_BUSY)
        ts_session_close(s, TS_E_RATE_LIMITED);
}

int ts_session_accept(struct ts_server *srv, uv_stream_t *listener, SSL_CTX *ctx)
{
    struct ts_session *s = calloc(1, sizeof(*s));
    if (!s)
        return TS_E_NOMEM;
    s->srv = srv;
    s->state = AWAIT_HELLO;
    int rc =
        ts_conn_accept(srv->loop, listener, ctx, &session_cbs, s, TS_FRAME_MAX_PREAUTH, &s->conn);
    if (rc != TS_OK) {
        free(s);
        return rc;
    }
    s->created_ms = s->last_rx_ms = s->last_tx_ms = uv_now(srv->loop);
    s->next = srv->sessions;
    if (srv->sessions)
        srv->sessions->prev = s;
    srv->sessions = s;
    srv->n_sessions++;
    count_connection(s);
    TS_DEBUG("conn=%llu peer=%s role=none event=accept", (unsigned long long)ts_conn_id(s->conn),
             ts_conn_peer(s->conn));
    return TS_OK;
}

void ts_session_tick(struct ts_session *s, uint64_t now_ms)
{
    const struct ts_server_config *cfg = &s->srv->cfg;
    if (s->state == AWAIT_HELLO) {
        if (now_ms - s->created_ms >= cfg->handshake_ms)
            fail_and_close(s, TS_E_BAD_FRAME, "handshake timeout");
        return;
    }
    if (s->state != READY)
        return;
    if (now_ms - s->last_rx_ms >= 3ull * cfg->heartbeat_ms) {
        fail_and_close(s, TS_E_UNAVAILABLE, "heartbeat timeout");
        return;
    }
    if (now_ms - s->last_tx_ms >= cfg->heartbeat_ms) {
        Threadsync__Frame f = THREADSYNC__FRAME__INIT;
        Threadsync__Ping ping = THREADSYNC__PING__INIT;
        ping.nonce = ++s->ping_nonce;
        f.msg_case = THREADSYNC__FRAME__MSG_PING;
        f.ping = &ping;
        send_frame(s, &f);
    }
}

void ts_session_close(struct ts_session *s, int err)
{
    if (s->state == CLOSING)
        return;
    s->state = CLOSING;
    if (s->sub) {
        ts_hub_unsubscribe(s->sub);
        s->sub = NULL;
    }
    ts_conn_close(s->conn, err);
}

struct ts_session *ts_session_next(const struct ts_session *s)
{
    return s->next;
}

int ts_session_role(const struct ts_session *s)
{
    return s->role;
}

int ts_session_sub_seq(const struct ts_session *s, uint64_t *seq)
{
    if (!s->sub)
        return 0;
    *seq = ts_hub_sub_seq(s->sub);
    return 1;
}
