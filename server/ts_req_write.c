/*
 * ts_req_write: see ts_req_write.h.
 *
 * Invariants:
 *   - nothing reaches the replicated log that failed validation here
 *     (ts_valid_post() for a Post, run by the link's I/O thread when it
 *     flagged the frame valid, ts_link_frame_valid, else here);
 *   - bans and rate limits are checked before a Post is proposed: a flood
 *     must not fill the log;
 *   - secrets given to a client are made on the leader: new tokens here or
 *     by the caller before proposing (only their hashes enter the log);
 *     edit keys from the replicated edit secret after the apply
 *     (ts_store_edit_key). Records holding them are cleansed when freed.
 */
#include "ts_req_write.h"

#include "ts_err.h"
#include "ts_hex.h"
#include "ts_lattrace.h"
#include "ts_limits.h"
#include "ts_log.h"
#include "ts_repl.h"
#include "ts_server_int.h"
#include "ts_stats.h"
#include "ts_store.h"
#include "ts_valid.h"
#include "ts_varint.h"
#include "ts_view.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EDIT_KEY_MAX 128 /* longest edit_key accepted in a request */

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

/* Only token is a secret (TokenAdd's new token, handed back once): a
 * post's write, one per acknowledged post, carries none, and cleansing
 * the whole struct (about 400 bytes, mostly the unused name) was a loop of
 * stores per post on the main loop. */
static void free_write(struct ts_req_write *w)
{
    if (!w)
        return;
    OPENSSL_cleanse(w->token, sizeof(w->token));
    free(w);
}

/* ---- proposing ---- */

/* Answers w's request from its entry's outcome and frees w. */
static void applied(void *arg, int status, const void *result)
{
    struct ts_req_write *w = arg;
    if (w->stats)
        ts_stats_post_done(w->stats, status, w->t0);
    ts_disk_settled(w->disk, w->disk_bytes);
    struct ts_session *s = ts__session_wait_done(&w->wait);
    const struct ts_store_result *res = result;
    if (w->lat_stamp && status == TS_OK)
        ts_lattrace_applied(w->lat_stamp, res->seq);
    if (!s) {
        /* nobody to answer: the client retries or gives up */
    } else if (status != TS_OK) {
        ts__session_error(s, w->wait.request_id, status, NULL, NULL);
    } else if (res->status != TS_OK) {
        ts__session_error(s, w->wait.request_id, res->status, res->field, res->message);
    } else {
        w->answer(s, w, res);
    }
    /* The result is the proposal's (or the batch outcome's) until we
     * return; a post's edit key in it is scrubbed like the records'. */
    if (res)
        OPENSSL_cleanse(((struct ts_store_result *)result)->edit_key, sizeof(res->edit_key));
    free_write(w);
}

/* Refuses every write of the list from head (answering each one still
 * waiting) and frees them. */
static void refuse_all(struct ts_req_write *head, int code, const char *field, const char *why,
                       uint32_t retry_after_ms)
{
    while (head) {
        struct ts_req_write *w = head;
        head = w->next;
        if (w->stats)
            ts_stats_post_done(w->stats, code, w->t0);
        struct ts_session *s = ts__session_wait_done(&w->wait);
        if (s && retry_after_ms)
            ts__session_error_retry(s, w->wait.request_id, code, field, why, retry_after_ms);
        else if (s)
            ts__session_error(s, w->wait.request_id, code, field, why);
        free_write(w);
    }
}

/* Never hand raft a write the disk may not hold (ts_disk.h): libraft 0.15
 * does not survive running out of space. 1 when len bytes may go. */
static int disk_admits(struct ts_server *srv, char *why, size_t n)
{
    if (ts_disk_admit(&srv->disk, ts_store_memory(srv->store)))
        return 1;
    ts_disk_describe(&srv->disk, why, n);
    return 0;
}

static void flush_posts(struct ts_server *srv);

void ts_req_write_propose(struct ts_session *s, uint64_t rid, Threadsync__State__Command *cmd,
                          struct ts_req_write *w, ts_req_write_answer_fn *answer)
{
    /* the log keeps the order the node admitted writes in */
    flush_posts(s->srv);
    if (!ts_repl_is_leader(s->srv->repl)) {
        free_write(w);
        ts__session_error(s, rid, TS_E_NOT_LEADER, NULL, NULL);
        return;
    }
    if (!w && !(w = calloc(1, sizeof(*w)))) {
        ts__session_error(s, rid, TS_E_UNAVAILABLE, NULL, "out of memory");
        return;
    }
    char why[160];
    if (!disk_admits(s->srv, why, sizeof(why))) {
        free_write(w);
        ts__session_error_retry(s, rid, TS_E_UNAVAILABLE, "disk", why, TS_DISK_RETRY_AFTER_MS);
        return;
    }
    cmd->time_ms = wall_ms();
    cmd->actor = s->token_name;
    uint8_t *payload;
    size_t len;
    if (ts_store_encode(cmd, &payload, &len) != TS_OK) {
        free_write(w);
        ts__session_error(s, rid, TS_E_UNAVAILABLE, NULL, "out of memory");
        return;
    }
    struct ts_disk *disk = &s->srv->disk;
    w->answer = answer;
    w->disk = disk;
    w->disk_bytes = len;
    ts_disk_proposed(disk, len);
    int rc = ts_repl_propose(s->srv->repl, payload, len, applied, w);
    free(payload);
    if (rc != TS_OK) {
        ts_disk_settled(disk, len);
        free_write(w);
        ts__session_error(s, rid, rc, NULL, NULL);
        return;
    }
    ts__session_wait_add(s, &w->wait, rid);
    TS_INFO(TS__SESSION_LOG_FMT "token_name=%s event=write op=%s", TS__SESSION_LOG_ARGS(s),
            s->token_name,
            protobuf_c_message_descriptor_get_field(&threadsync__state__command__descriptor,
                                                    cmd->op_case)
                ->name);
}

/* ---- post batches ---- */

/* Room kept before the first post for the PostBatch's own tag and length,
 * written right-aligned at the flush so the entry needs no second copy. */
#define BATCH_HEAD 16
/* A batch is proposed once it holds this many bytes, whatever else came. */
#define BATCH_BYTES_MAX ((size_t)1 << 20)
/* Command.post_batch (36) and PostBatch.posts (1), length-delimited. */
#define TAG_POST_BATCH ((36u << 3) | 2u)
#define TAG_POSTS ((1u << 3) | 2u)

struct ts__post_batch {
    struct ts_server *srv;
    uv_check_t check; /* proposes after the I/O phase of the iteration */
    uv_idle_t idle;   /* while posts wait: the loop must not block in poll */
    uint8_t *buf;     /* BATCH_HEAD, then each post as PostBatch.posts */
    size_t len, cap;
    size_t first_off, first_len; /* the first post's Command in buf */
    struct ts_req_write *head, *tail;
    size_t n;
    int closing, closes_due;
    void (*closed_cb)(void *arg);
    void *closed_arg;
};

/* Answers each post of a batch from the store's per-post outcome. */
static void batch_applied(void *arg, int status, const void *result)
{
    struct ts_req_write *w = arg;
    const struct ts_store_result *out = NULL;
    size_t n = 0;
    if (status == TS_OK)
        ts_store_batch_outcome(w->srv->store, &out, &n);
    /* n short of the batch only when the entry as a whole was refused:
     * every post then gets the entry's result */
    for (size_t i = 0; w; i++) {
        struct ts_req_write *next = w->next;
        applied(w, status, i < n ? (const void *)&out[i] : result);
        w = next;
    }
}

/* Proposes the posts gathered so far as one entry: a plain post entry when
 * alone, else a PostBatch. Every path answers or hands on each of them. */
static void flush_posts(struct ts_server *srv)
{
    struct ts__post_batch *b = srv->post_batch;
    if (!b || !b->n)
        return;
    struct ts_req_write *head = b->head;
    size_t n = b->n;
    const uint8_t *payload;
    size_t len;
    if (n == 1) {
        payload = b->buf + b->first_off;
        len = b->first_len;
    } else {
        size_t body = b->len - BATCH_HEAD;
        size_t hl = ts_varint_len(TAG_POST_BATCH) + ts_varint_len(body);
        uint8_t *p = b->buf + BATCH_HEAD - hl;
        ts_varint_put(p + ts_varint_put(p, TAG_POST_BATCH), body);
        payload = p;
        len = hl + body;
    }
    b->head = b->tail = NULL;
    b->n = 0;
    b->len = BATCH_HEAD;
    uv_check_stop(&b->check);
    uv_idle_stop(&b->idle);

    char why[160];
    if (!ts_repl_is_leader(srv->repl)) {
        refuse_all(head, TS_E_NOT_LEADER, NULL, NULL, 0);
        return;
    }
    if (!disk_admits(srv, why, sizeof(why))) {
        refuse_all(head, TS_E_UNAVAILABLE, "disk", why, TS_DISK_RETRY_AFTER_MS);
        return;
    }
    head->disk_bytes = len; /* the entry's bytes, settled with its first post */
    ts_disk_proposed(&srv->disk, len);
    for (const struct ts_req_write *w = head; ts_lattrace_on && w; w = w->next)
        ts_lattrace_proposed(w->lat_stamp);
    int rc = ts_repl_propose(srv->repl, payload, len, n == 1 ? applied : batch_applied, head);
    if (rc != TS_OK) {
        ts_disk_settled(&srv->disk, len);
        refuse_all(head, rc, NULL, NULL, 0);
    }
}

static void on_batch_check(uv_check_t *h)
{
    struct ts__post_batch *b = h->data;
    flush_posts(b->srv);
}

static void on_batch_idle(uv_idle_t *h)
{
    (void)h; /* only keeps poll from blocking while posts wait */
}

/* Packs cmd as the next post of the batch; w waits for its outcome. */
static int batch_add(struct ts_session *s, const Threadsync__State__Command *cmd,
                     struct ts_req_write *w)
{
    struct ts__post_batch *b = s->srv->post_batch;
    if (!b) /* the server is stopping */
        return TS_E_UNAVAILABLE;
    size_t size = threadsync__state__command__get_packed_size(cmd);
    size_t need = 1 + ts_varint_len(size) + size;
    if (b->n && (b->n >= TS_STORE_POST_BATCH_MAX || b->len + need > BATCH_BYTES_MAX))
        flush_posts(s->srv);
    if (b->len + need > b->cap) {
        size_t cap = b->cap * 2 > b->len + need ? b->cap * 2 : b->len + need;
        uint8_t *nb = realloc(b->buf, cap);
        if (!nb)
            return TS_E_NOMEM;
        b->buf = nb;
        b->cap = cap;
    }
    uint8_t *p = b->buf + b->len;
    p += ts_varint_put(p, TAG_POSTS);
    p += ts_varint_put(p, size);
    if (!b->n) {
        b->first_off = (size_t)(p - b->buf);
        b->first_len = size;
    }
    b->len = (size_t)(p - b->buf) + threadsync__state__command__pack(cmd, p);
    w->disk = &s->srv->disk;
    w->srv = s->srv;
    if (b->tail)
        b->tail->next = w;
    else
        b->head = w;
    b->tail = w;
    if (!b->n++) {
        uv_check_start(&b->check, on_batch_check);
        uv_idle_start(&b->idle, on_batch_idle);
    }
    return TS_OK;
}

int ts__req_write_batch_new(struct ts_server *srv)
{
    struct ts__post_batch *b = calloc(1, sizeof(*b));
    if (!b || !(b->buf = malloc(4096))) {
        free(b);
        return TS_E_NOMEM;
    }
    b->srv = srv;
    b->cap = 4096;
    b->len = BATCH_HEAD;
    uv_check_init(srv->loop, &b->check);
    uv_idle_init(srv->loop, &b->idle);
    b->check.data = b->idle.data = b;
    srv->post_batch = b;
    return TS_OK;
}

static void on_batch_handle_closed(uv_handle_t *h)
{
    struct ts__post_batch *b = h->data;
    if (--b->closes_due)
        return;
    if (b->closed_cb)
        b->closed_cb(b->closed_arg);
    free(b->buf);
    free(b);
}

void ts__req_write_batch_close(struct ts_server *srv, void (*cb)(void *arg), void *arg)
{
    struct ts__post_batch *b = srv->post_batch;
    if (!b)
        return;
    flush_posts(srv);
    srv->post_batch = NULL;
    b->closed_cb = cb;
    b->closed_arg = arg;
    b->closes_due = 2;
    uv_close((uv_handle_t *)&b->check, on_batch_handle_closed);
    uv_close((uv_handle_t *)&b->idle, on_batch_handle_closed);
}

/* ---- Post ---- */

static void answer_post(struct ts_session *s, const struct ts_req_write *w,
                        const struct ts_store_result *res)
{
    Threadsync__Result r = THREADSYNC__RESULT__INIT;
    Threadsync__PostResult pr = THREADSYNC__POST_RESULT__INIT;
    char key[TS_STORE_EDIT_KEY_LEN + 1] = "";
    /* Derived from the replicated edit secret: the first answer and every
     * retry's carry the same key. An entry of an older release has none to
     * give again (its key was random): the answer's is then empty. */
    if (res->edit_key[0])
        memcpy(key, res->edit_key, sizeof(key)); /* the apply just derived it */
    else if (ts_store_edit_key(s->srv->store, res->comment_id, key) != TS_OK)
        key[0] = '\0';
    pr.edit_key = key;
    pr.comment_id = res->comment_id;
    pr.seq = res->seq;
    pr.thread_id = res->thread_id;
    pr.status = (Threadsync__Status)res->comment_status;
    r.request_id = w->wait.request_id;
    r.body_case = THREADSYNC__RESULT__BODY_POST;
    r.post = &pr;
    ts__session_result(s, &r);
    OPENSSL_cleanse(key, sizeof(key));
}

/* Bans and rate limits. A retry of a post already applied passes: it
 * changes nothing and its answer may be what the client lost. Returns 1 to
 * go on; 0 when it answered the refusal. */
/* Names are unique across the tokens file and the replicated table (TokenAdd
 * refuses a file's name), so the name says where the flag lives. */
static int token_is_gateway(const struct ts_server *srv, const char *name)
{
    return ts_auth_gateway(srv->auth, name) || ts_store_token_gateway(srv->store, name);
}

/* A gateway's post with a reader key is limited and banned by that key (the
 * reader), not by the author fields a reader types freely; any other post
 * by its author. */
static int post_admitted(struct ts_session *s, const Threadsync__Post *p,
                         const uint8_t digest[TS_STORE_IDEM_DIGEST_LEN])
{
    struct ts_server *srv = s->srv;
    if (ts_store_idempotency_known(srv->store, digest))
        return 1;
    const char *field = NULL;
    if (ts_store_banned(srv->store, p->author_name, p->author_email, p->reader_key, wall_ms(), NULL,
                        &field)) {
        ts__session_error(s, p->request_id, TS_E_FORBIDDEN, field, "author banned");
        return 0;
    }
    char author[2 + TS_AUTHOR_EMAIL_MAX + 4 * TS_AUTHOR_NAME_MAX_CP + 1];
    if (p->reader_key && *p->reader_key)
        snprintf(author, sizeof(author), "r:%s", p->reader_key);
    else
        ts_limits_author_key(p->author_name, p->author_email, author, sizeof(author));
    uint32_t retry = 0;
    int rc = ts_limits_post(srv->limits, s->token_name, author, uv_now(srv->loop), &retry);
    if (rc == TS_E_RATE_LIMITED) {
        TS_INFO(TS__SESSION_LOG_FMT "token_name=%s event=rate_limited retry_after_ms=%u",
                TS__SESSION_LOG_ARGS(s), s->token_name, retry);
        ts__session_error_retry(s, p->request_id, TS_E_RATE_LIMITED, NULL,
                                "too many posts from this token or author; retry after "
                                "retry_after_ms",
                                retry);
        return 0;
    }
    if (rc != TS_OK) {
        ts__session_error(s, p->request_id, TS_E_UNAVAILABLE, NULL, "out of memory");
        return 0;
    }
    return 1;
}

void ts_req_write_post(struct ts_session *s, const Threadsync__Frame *f)
{
    const Threadsync__Post *p = f->post;
    struct ts_valid_err err;
    /* post_checked: its I/O thread ran the same checks (ts_link.h) */
    if (!s->post_checked && ts_valid_post(p, &err) != TS_OK) {
        ts__session_error(s, p->request_id, TS_E_INVALID_ARGUMENT, err.field, err.message);
        return;
    }
    if (p->reader_key && *p->reader_key && !token_is_gateway(s->srv, s->token_name)) {
        /* INVALID_ARGUMENT, not FORBIDDEN: a gateway's edge tells this
         * apart from a ban on the reader key (FORBIDDEN, same field). */
        ts__session_error(s, p->request_id, TS_E_INVALID_ARGUMENT, "reader_key",
                          "only a gateway token may send a reader key");
        return;
    }
    if (!ts_repl_is_leader(s->srv->repl)) {
        ts__session_error(s, p->request_id, TS_E_NOT_LEADER, NULL, NULL);
        return;
    }
    /* The key is the token's own: the same key from another token is
     * another entry (ts_store.h, Idempotency). */
    uint8_t digest[TS_STORE_IDEM_DIGEST_LEN];
    ts_store_idempotency_digest(s->token_hash, p->idempotency_key, digest);
    if (!post_admitted(s, p, digest))
        return;
    /* Until the state has an edit secret, each post offers one; the first
     * applied is kept (the others are ignored by the apply). */
    uint8_t secret[TS_STORE_HASH_LEN];
    int offer_secret = !ts_store_has_edit_secret(s->srv->store);
    if (offer_secret && RAND_bytes(secret, sizeof(secret)) != 1) {
        ts__session_error(s, p->request_id, TS_E_INTERNAL, NULL, "no randomness");
        return;
    }
    struct ts_req_write *w = calloc(1, sizeof(*w));
    if (!w) {
        ts__session_error(s, p->request_id, TS_E_UNAVAILABLE, NULL, "out of memory");
        return;
    }
    w->stats = s->srv->stats;
    w->t0 = uv_hrtime();
    Threadsync__Post copy = *p;
    copy.request_id = 0;
    Threadsync__State__Command cmd = THREADSYNC__STATE__COMMAND__INIT;
    cmd.op_case = THREADSYNC__STATE__COMMAND__OP_POST;
    cmd.post = &copy;
    cmd.idempotency_digest.data = digest;
    cmd.idempotency_digest.len = sizeof(digest);
    if (offer_secret) {
        cmd.edit_secret.data = secret;
        cmd.edit_secret.len = sizeof(secret);
    }
    cmd.premoderate = s->srv->cfg.premoderate != 0;
    cmd.trusted = ts_auth_role_allows(s->role, TS_AUTH_MODERATE);
    cmd.time_ms = wall_ms();
    cmd.actor = s->token_name;
    w->answer = answer_post;
    if (ts_lattrace_on)
        w->lat_stamp = ts_lattrace_stamp(p->body);
    int rc = batch_add(s, &cmd, w);
    if (rc != TS_OK) {
        free_write(w);
        ts__session_error(s, p->request_id, TS_E_UNAVAILABLE, NULL,
                          rc == TS_E_NOMEM ? "out of memory" : "the node is stopping");
    } else {
        ts__session_wait_add(s, &w->wait, p->request_id);
        if (w->lat_stamp)
            ts_lattrace_queued(w->lat_stamp);
    }
    OPENSSL_cleanse(secret, sizeof(secret));
}

/* ---- comment and thread changes ---- */

/* ChangeResult for a comment or thread change, in the view the session's
 * role may see. */
static void answer_change(struct ts_session *s, uint64_t rid, const struct ts_store_result *res,
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
    ts__session_result(s, &r);
}

static void answer_comment_change(struct ts_session *s, const struct ts_req_write *w,
                                  const struct ts_store_result *res)
{
    answer_change(s, w->wait.request_id, res, 1);
}

static void answer_thread_change(struct ts_session *s, const struct ts_req_write *w,
                                 const struct ts_store_result *res)
{
    answer_change(s, w->wait.request_id, res, 0);
}

/* A comment change: by a moderator (key NULL or "") or by its author with
 * the edit key. body only for CHANGE_EDIT. */
static void comment_change(struct ts_session *s, uint64_t rid, uint64_t comment_id,
                           Threadsync__State__ChangeKind kind, const char *key, char *body,
                           char *reason)
{
    int author = key && *key;
    if (!ts__session_allowed(s, rid, author ? TS_AUTH_POST : TS_AUTH_MODERATE))
        return;
    if (!comment_id) {
        ts__session_error(s, rid, TS_E_INVALID_ARGUMENT, "comment_id",
                          "comment_id must be the id of a comment, not 0");
        return;
    }
    size_t key_len = author ? strlen(key) : 0;
    if (key_len > EDIT_KEY_MAX) {
        ts__session_error(s, rid, TS_E_INVALID_ARGUMENT, "edit_key",
                          "edit_key must be at most 128 bytes (the key a post's answer gave)");
        return;
    }
    struct ts_valid_err err;
    if (kind == THREADSYNC__STATE__CHANGE_KIND__CHANGE_EDIT &&
        ts_valid_field(TS_VALID_BODY, body, body ? strlen(body) : 0, &err) != TS_OK) {
        ts__session_error(s, rid, TS_E_INVALID_ARGUMENT, err.field, err.message);
        return;
    }
    size_t reason_len = reason ? strlen(reason) : 0;
    if (reason_len && (author || reason_len > TS_STORE_AUDIT_REASON_MAX ||
                       !ts_valid_text(reason, reason_len, 0))) {
        ts__session_error(s, rid, TS_E_INVALID_ARGUMENT, "reason",
                          author ? "reason is for a moderator's edit (without edit_key)"
                                 : "reason must be at most 512 bytes of single-line text");
        return;
    }
    uint8_t hash[32];
    Threadsync__State__CommentChange cc = THREADSYNC__STATE__COMMENT_CHANGE__INIT;
    if (reason_len)
        cc.reason = reason;
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
    ts_req_write_propose(s, rid, &cmd, NULL, answer_comment_change);
}

void ts_req_write_moderate(struct ts_session *s, const Threadsync__Frame *f)
{
    const Threadsync__Moderate *m = f->moderate;
    if (m->action < THREADSYNC__MODERATION_ACTION__APPROVE ||
        m->action > THREADSYNC__MODERATION_ACTION__DELETE) {
        ts__session_error(s, m->request_id, TS_E_INVALID_ARGUMENT, "action",
                          "action must be APPROVE, HIDE, UNHIDE or DELETE");
        return;
    }
    /* ModerationAction and ChangeKind share their values 1..4. */
    comment_change(s, m->request_id, m->comment_id, (Threadsync__State__ChangeKind)m->action, NULL,
                   NULL, NULL);
}

void ts_req_write_edit(struct ts_session *s, const Threadsync__Frame *f)
{
    const Threadsync__Edit *e = f->edit;
    comment_change(s, e->request_id, e->comment_id, THREADSYNC__STATE__CHANGE_KIND__CHANGE_EDIT,
                   e->edit_key, e->body, e->reason);
}

void ts_req_write_delete(struct ts_session *s, const Threadsync__Frame *f)
{
    const Threadsync__Delete *d = f->delete_;
    comment_change(s, d->request_id, d->comment_id, THREADSYNC__STATE__CHANGE_KIND__CHANGE_DELETE,
                   d->edit_key, NULL, NULL);
}

void ts_req_write_moderate_thread(struct ts_session *s, const Threadsync__Frame *f)
{
    const Threadsync__ModerateThread *m = f->moderate_thread;
    struct ts_valid_err err;
    if (ts_valid_thread_key(m->thread_key, &err) != TS_OK) {
        ts__session_error(s, m->request_id, TS_E_INVALID_ARGUMENT, err.field, err.message);
        return;
    }
    if (m->action < THREADSYNC__THREAD_ACTION__THREAD_LOCK ||
        m->action > THREADSYNC__THREAD_ACTION__THREAD_POSTMODERATE) {
        ts__session_error(s, m->request_id, TS_E_INVALID_ARGUMENT, "action",
                          "action must be THREAD_LOCK, THREAD_UNLOCK, THREAD_PREMODERATE or "
                          "THREAD_POSTMODERATE");
        return;
    }
    Threadsync__ModerateThread copy = *m;
    copy.request_id = 0;
    Threadsync__State__Command cmd = THREADSYNC__STATE__COMMAND__INIT;
    cmd.op_case = THREADSYNC__STATE__COMMAND__OP_MODERATE_THREAD;
    cmd.moderate_thread = &copy;
    ts_req_write_propose(s, m->request_id, &cmd, NULL, answer_thread_change);
}

/* ---- bans ---- */

static void answer_ban(struct ts_session *s, const struct ts_req_write *w,
                       const struct ts_store_result *res)
{
    Threadsync__Result r = THREADSYNC__RESULT__INIT;
    Threadsync__BanResult br = THREADSYNC__BAN_RESULT__INIT;
    br.author = (char *)w->name;
    br.until_ms = res->until_ms;
    br.seq = res->seq;
    r.request_id = w->wait.request_id;
    r.body_case = THREADSYNC__RESULT__BODY_BAN;
    r.ban = &br;
    ts__session_result(s, &r);
}

void ts_req_write_ban(struct ts_session *s, const Threadsync__Frame *f)
{
    const Threadsync__BanAuthor *b = f->ban_author;
    struct ts_valid_err err;
    if (ts_valid_field(TS_VALID_BAN_AUTHOR, b->author, b->author ? strlen(b->author) : 0, &err) !=
        TS_OK) {
        ts__session_error(s, b->request_id, TS_E_INVALID_ARGUMENT, err.field, err.message);
        return;
    }
    if (b->duration_ms > (uint64_t)TS_STORE_BAN_MAX_MS) {
        ts__session_error(s, b->request_id, TS_E_INVALID_ARGUMENT, "duration_ms",
                          "duration_ms must be at most 10 years (315360000000)");
        return;
    }
    struct ts_req_write *w = calloc(1, sizeof(*w));
    if (!w) {
        ts__session_error(s, b->request_id, TS_E_UNAVAILABLE, NULL, "out of memory");
        return;
    }
    /* The answer names the author as stored: e-mails lowercased. */
    snprintf(w->name, sizeof(w->name), "%s", b->author);
    if (strchr(w->name, '@'))
        for (char *c = w->name; *c; c++)
            if (*c >= 'A' && *c <= 'Z')
                *c = (char)(*c - 'A' + 'a');
    Threadsync__BanAuthor copy = *b;
    copy.request_id = 0;
    Threadsync__State__Command cmd = THREADSYNC__STATE__COMMAND__INIT;
    cmd.op_case = THREADSYNC__STATE__COMMAND__OP_BAN_AUTHOR;
    cmd.ban_author = &copy;
    ts_req_write_propose(s, b->request_id, &cmd, w, answer_ban);
}
