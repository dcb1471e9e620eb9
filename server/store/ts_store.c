/*
 * ts_store: threads and comments in memory, changed only by ts_store_apply
 * (the commands of threadsync_state.proto), and the reads the sessions and
 * the hub make of them. The records and indexes are ts_store_state.c's;
 * snapshots and the digest ts_store_snap.c's.
 *
 * Determinism: apply reads no clock (a command carries the leader's time)
 * and no randomness, so every replica reaches the same state from the same
 * log.
 */
#include "ts_store.h"
#include "ts_store_int.h"
#include "ts_view.h"

#include "threadsync_state.pb-c.h"
#include "ts_err.h"
#include "ts_evlog.h"
#include "ts_log.h"
#include "ts_pbarena.h"
#include "ts_valid.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ts_store_new(struct ts_evlog *log, struct ts_store **out)
{
    struct ts_store *s = malloc(sizeof(*s));
    if (!s)
        return TS_E_NOMEM;
    s->log = log;
    s->import_out = NULL;
    s->n_import_out = s->cap_import_out = 0;
    s->batch_out = NULL;
    s->n_batch_out = s->cap_batch_out = 0;
    s->unpack_buf = NULL;
    s->unpack_cap = 0;
    ts__store_state_init(&s->st);
    *out = s;
    return TS_OK;
}

void ts_store_free(struct ts_store *s)
{
    if (!s)
        return;
    ts__store_state_free(&s->st);
    free(s->import_out);
    free(s->batch_out);
    free(s->unpack_buf);
    free(s);
}

int ts_store_encode(const Threadsync__State__Command *cmd, uint8_t **out, size_t *len)
{
    size_t n = threadsync__state__command__get_packed_size(cmd);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return TS_E_NOMEM;
    *len = threadsync__state__command__pack(cmd, buf);
    *out = buf;
    return TS_OK;
}

int ts_store_encode_post(const Threadsync__Post *post, int64_t time_ms, uint8_t **out, size_t *len)
{
    Threadsync__Post p = *post;
    p.request_id = 0;
    Threadsync__State__Command cmd = THREADSYNC__STATE__COMMAND__INIT;
    cmd.time_ms = time_ms;
    cmd.op_case = THREADSYNC__STATE__COMMAND__OP_POST;
    cmd.post = &p;
    return ts_store_encode(&cmd, out, len);
}

static void reject(struct ts_store_result *res, int status, const char *field)
{
    res->status = status;
    res->field = field;
}

static void reject_msg(struct ts_store_result *res, int status, const char *field,
                       const char *message)
{
    res->status = status;
    res->field = field;
    res->message = message;
}

void ts__store_set_status(struct thread *t, struct comment *c, uint8_t ns)
{
    if (c->status == THREADSYNC__STATUS__VISIBLE)
        t->comment_count--;
    else if (c->status == THREADSYNC__STATUS__PENDING)
        t->pending_count--;
    c->status = ns;
    if (ns == THREADSYNC__STATUS__VISIBLE)
        t->comment_count++;
    else if (ns == THREADSYNC__STATUS__PENDING)
        t->pending_count++;
}

static const char *actor_of(const Threadsync__State__Command *cmd)
{
    return ts__store_valid_token_name(cmd->actor) ? cmd->actor : "";
}

/* Fills v's who and when from the command at pos (v's other fields are the
 * caller's). */
static void audit_stamp(Threadsync__AuditEntry *v, uint64_t pos,
                        const Threadsync__State__Command *cmd)
{
    v->seq = pos;
    v->time_ms = cmd->time_ms;
    v->actor = (char *)actor_of(cmd);
}

/* Appends the audit record of the moderation command at pos. */
static int audit(struct ts_store *s, uint64_t pos, const Threadsync__State__Command *cmd,
                 Threadsync__AuditEntry *v)
{
    audit_stamp(v, pos, cmd);
    return ts__store_audit_add(&s->st, v);
}

int ts__store_append_event(struct ts_store *s, uint64_t seq, const struct thread *t,
                           const struct comment *c)
{
    Threadsync__Thread tv;
    Threadsync__Comment cv, pc;
    ts__store_thread_view(&s->st, t, &tv);
    Threadsync__Event full = THREADSYNC__EVENT__INIT;
    full.seq = seq;
    full.thread = &tv;
    Threadsync__Event pub = full;
    Threadsync__Thread ptv = tv;
    int hid = ts_view_public_thread(&ptv);
    pub.thread = &ptv;
    if (c) {
        ts__store_comment_view(&s->st, c, &cv);
        full.comment = &cv;
        pc = cv;
        hid |= ts_view_public_comment(&pc);
        pub.comment = &pc;
    }
    s->st.seq = seq;
    return ts_evlog_append(s->log, seq, t->id, &full, hid ? &pub : NULL);
}

static int apply_post(struct ts_store *s, uint64_t pos, const Threadsync__State__Command *cmd,
                      struct ts_store_result *res)
{
    struct state *st = &s->st;
    const Threadsync__Post *p = cmd->post;
    int64_t now = cmd->time_ms;
    int has_hash = cmd->edit_key_hash.len == TS_STORE_HASH_LEN;
    ts__store_idem_expire(st, now);

    /* The caller validated the fields before proposing; these cheap checks
     * keep a malformed entry from breaking the record layout. */
    size_t ikey_len = ts__store_slen(p->idempotency_key), key_len = ts__store_slen(p->thread_key);
    size_t name_len = ts__store_slen(p->author_name), email_len = ts__store_slen(p->author_email);
    size_t body_len = ts__store_slen(p->body), title_len = ts__store_slen(p->title),
           url_len = ts__store_slen(p->url);
    if (!ikey_len || ikey_len > TS_IDEMPOTENCY_KEY_MAX)
        return reject(res, TS_E_INVALID_ARGUMENT, "idempotency_key"), TS_OK;
    if (!key_len || key_len > TS_THREAD_KEY_MAX)
        return reject(res, TS_E_INVALID_ARGUMENT, "thread_key"), TS_OK;
    if (!name_len || name_len > (size_t)TS_AUTHOR_NAME_MAX_CP * 4)
        return reject(res, TS_E_INVALID_ARGUMENT, "author_name"), TS_OK;
    if (email_len > TS_AUTHOR_EMAIL_MAX)
        return reject(res, TS_E_INVALID_ARGUMENT, "author_email"), TS_OK;
    if (!body_len || body_len > TS_BODY_MAX)
        return reject(res, TS_E_INVALID_ARGUMENT, "body"), TS_OK;
    if (!ts_valid_reader_key(p->reader_key))
        return reject(res, TS_E_INVALID_ARGUMENT, "reader_key"), TS_OK;
    if (title_len > TS_TITLE_MAX)
        return reject(res, TS_E_INVALID_ARGUMENT, "title"), TS_OK;
    if (url_len > TS_URL_MAX)
        return reject(res, TS_E_INVALID_ARGUMENT, "url"), TS_OK;

    /* scoped: a command of this release (see ts_store.h, Idempotency) */
    int scoped = cmd->idempotency_digest.len == TS__STORE_DIGEST_LEN;
    if (cmd->edit_secret.len == TS_STORE_HASH_LEN && !st->has_edit_secret) {
        memcpy(st->edit_secret, cmd->edit_secret.data, TS_STORE_HASH_LEN);
        st->has_edit_secret = 1;
    }
    struct idem ie = {.comment_id = 0};
    if (scoped)
        memcpy(ie.key_digest, cmd->idempotency_digest.data, TS__STORE_DIGEST_LEN);
    else
        ts__store_idem_digest(p->idempotency_key, ikey_len, ie.key_digest);
    ts__store_content_digest(p, ie.content_digest);
    struct idem *seen = ts__store_find_idem(st, ie.key_digest);
    if (seen && scoped && seen->has_content &&
        memcmp(seen->content_digest, ie.content_digest, TS__STORE_DIGEST_LEN) != 0)
        return reject_msg(res, TS_E_IDEMPOTENCY_KEY_REUSED, "idempotency_key",
                          "this idempotency key was already used by this token for a different "
                          "post; use a new key for a new post"),
               TS_OK;
    if (seen) {
        /* An older release's entry: its first answer's edit key is lost
         * with it (only its hash was kept), so an older command's retry
         * replaces it. A scoped retry changes nothing: a derived entry's
         * key is recomputed for its answer, and an older entry's stays. */
        if (has_hash && !scoped) {
            memcpy(seen->edit_hash, cmd->edit_key_hash.data, TS_STORE_HASH_LEN);
            seen->has_hash = 1;
        }
        const struct comment *first = ts__store_find_comment(st, seen->comment_id);
        res->seq = seen->comment_id;
        res->thread_id = ts__store_comment_thread(st, first)->id;
        res->comment_id = seen->comment_id;
        res->comment_status = seen->comment_status;
        return TS_OK;
    }

    const char *ban_field = NULL;
    if (ts__store_post_ban(st, p->author_name, p->author_email, p->reader_key, now, &ban_field))
        return reject_msg(res, TS_E_FORBIDDEN, ban_field, "author banned"), TS_OK;
    struct thread *t = ts__store_find_thread_key(st, p->thread_key, key_len);
    if (t && t->locked)
        return reject_msg(res, TS_E_THREAD_LOCKED, NULL,
                          "the thread is locked: it takes no new comments"),
               TS_OK;
    if (p->parent_id) {
        struct comment *parent = ts__store_find_comment(st, p->parent_id);
        if (!t || !parent || parent->thread_ix != t->ix)
            return reject_msg(res, TS_E_NOT_FOUND, "parent_id",
                              "parent_id names no comment of this thread (0 for top level)"),
                   TS_OK;
    }

    struct comment *c = ts__store_comment_alloc(p->author_name, name_len, p->author_email,
                                                email_len, p->body, body_len, p->reader_key, NULL);
    if (!c)
        return TS_E_NOMEM;
    if (!t) {
        t = ts__store_thread_alloc(p->thread_key, key_len, p->title, title_len, p->url, url_len);
        if (!t || (t->id = pos, t->created_at = now, ts__store_thread_insert(st, t) != TS_OK)) {
            free(t);
            free(c);
            return TS_E_NOMEM;
        }
    }
    c->id = pos;
    c->thread_ix = t->ix;
    c->parent_id = p->parent_id;
    c->created_at = now;
    c->status = !cmd->trusted && (cmd->premoderate || t->premoderated)
                    ? THREADSYNC__STATUS__PENDING
                    : THREADSYNC__STATUS__VISIBLE;
    if (ts__store_comment_insert(st, t, c) != TS_OK) {
        free(c);
        return TS_E_NOMEM;
    }
    if (c->status == THREADSYNC__STATUS__VISIBLE)
        t->comment_count++;
    else
        t->pending_count++;
    t->version++;

    /* pos exceeds every entry's comment id and the digest is new, so only
     * memory can fail the append. */
    ie.comment_id = c->id;
    ie.thread_ix = c->thread_ix;
    ie.comment_status = c->status;
    ie.has_content = 1;
    if (scoped && st->has_edit_secret) {
        char key[TS_STORE_EDIT_KEY_LEN + 1];
        ie.derived = 1;
        ts__store_derive_edit_key(st, &ie, key);
        ts__store_sha256(key, TS_STORE_EDIT_KEY_LEN, NULL, 0, ie.edit_hash);
        memcpy(res->edit_key, key, sizeof(key));
        OPENSSL_cleanse(key, sizeof(key));
        ie.has_hash = 1;
    } else if (has_hash && !scoped) {
        memcpy(ie.edit_hash, cmd->edit_key_hash.data, TS_STORE_HASH_LEN);
        ie.has_hash = 1;
    }
    if (ts__store_idem_append(st, &ie) != TS_OK)
        return TS_E_NOMEM;

    int rc = ts__store_append_event(s, pos, t, c);
    if (rc != TS_OK)
        return rc;
    res->seq = pos;
    res->thread_id = t->id;
    res->comment_id = c->id;
    res->comment_status = c->status;
    res->changed = 1;
    return TS_OK;
}

/* Posts of one loop iteration (PostBatch): each one as its own Post entry
 * would be, at consecutive positions from the entry's. A post that makes
 * no comment (a retry, a refusal) takes no position, as in an Import. */
static int apply_post_batch(struct ts_store *s, uint64_t pos, const Threadsync__State__Command *cmd,
                            struct ts_store_result *res)
{
    const Threadsync__State__PostBatch *pb = cmd->post_batch;
    s->n_batch_out = 0;
    if (!pb->n_posts || pb->n_posts > TS_STORE_POST_BATCH_MAX)
        return reject(res, TS_E_INVALID_ARGUMENT, "posts"), TS_OK;
    if (pb->n_posts > s->cap_batch_out) {
        struct ts_store_result *v = realloc(s->batch_out, pb->n_posts * sizeof(*v));
        if (!v)
            return TS_E_NOMEM;
        s->batch_out = v;
        s->cap_batch_out = pb->n_posts;
    }
    s->n_batch_out = pb->n_posts;
    uint64_t next = pos;
    for (size_t i = 0; i < pb->n_posts; i++) {
        const Threadsync__State__Command *one = pb->posts[i];
        struct ts_store_result *r = &s->batch_out[i];
        memset(r, 0, sizeof(*r));
        if (one->op_case != THREADSYNC__STATE__COMMAND__OP_POST) {
            reject(r, TS_E_BAD_FRAME, NULL);
            continue;
        }
        int rc = apply_post(s, next, one, r);
        if (rc != TS_OK)
            return rc;
        if (r->changed) {
            res->seq = next;
            res->changed = 1;
            next++;
        }
    }
    if (next > pos)
        s->st.pos = next - 1;
    return TS_OK;
}

void ts_store_batch_outcome(const struct ts_store *s, const struct ts_store_result **results,
                            size_t *n)
{
    *results = s->batch_out;
    *n = s->n_batch_out;
}

/* Blanks a comment in an earlier public event: its body always; its name
 * too, with the comment's new status, when it is no longer VISIBLE. */
static void blank_public(void *arg, Threadsync__Event *ev)
{
    uint8_t status = *(const uint8_t *)arg;
    Threadsync__Comment *c = ev->comment;
    c->body = (char *)protobuf_c_empty_string;
    if (status != THREADSYNC__STATUS__VISIBLE) {
        c->author_name = (char *)protobuf_c_empty_string;
        c->status = (Threadsync__Status)status;
    }
}

/* An author's or a moderator's change to one comment (CommentChange). */
static int apply_comment_change(struct ts_store *s, uint64_t pos,
                                const Threadsync__State__Command *cmd, struct ts_store_result *res)
{
    struct state *st = &s->st;
    const Threadsync__State__CommentChange *cc = cmd->comment_change;
    int64_t now = cmd->time_ms;
    ts__store_idem_expire(st, now);
    struct comment *c = ts__store_find_comment(st, cc->comment_id);
    if (!c)
        return reject_msg(res, TS_E_NOT_FOUND, "comment_id", "no comment has this comment_id"),
               TS_OK;
    struct thread *t = ts__store_comment_thread(st, c);
    res->thread_id = t->id;
    res->comment_id = c->id;
    res->comment_status = c->status;
    int author = cc->edit_key_hash.len != 0;
    if (author) {
        if (cc->kind != THREADSYNC__STATE__CHANGE_KIND__CHANGE_EDIT &&
            cc->kind != THREADSYNC__STATE__CHANGE_KIND__CHANGE_DELETE)
            return reject(res, TS_E_INVALID_ARGUMENT, "kind"), TS_OK;
        const struct idem *e = ts__store_find_idem_comment(st, c->id);
        if (cc->edit_key_hash.len != TS_STORE_HASH_LEN || !e || !e->has_hash ||
            CRYPTO_memcmp(e->edit_hash, cc->edit_key_hash.data, TS_STORE_HASH_LEN) != 0)
            return reject_msg(res, TS_E_FORBIDDEN, "edit_key",
                              "the edit key does not open this comment"),
                   TS_OK;
        if (cc->edit_window_ms < 0 || now - c->created_at > cc->edit_window_ms)
            return reject_msg(res, TS_E_FORBIDDEN, "edit_key", "the edit window has closed"), TS_OK;
    }
    uint8_t from = c->status, to = from;
    const char *bad = NULL; /* why the transition makes no sense */
    switch (cc->kind) {
    case THREADSYNC__STATE__CHANGE_KIND__CHANGE_APPROVE:
        if (from == THREADSYNC__STATUS__PENDING || from == THREADSYNC__STATUS__VISIBLE)
            to = THREADSYNC__STATUS__VISIBLE;
        else
            bad = "approve takes a PENDING comment (unhide a HIDDEN one)";
        break;
    case THREADSYNC__STATE__CHANGE_KIND__CHANGE_HIDE:
        if (from == THREADSYNC__STATUS__DELETED)
            bad = "a deleted comment cannot be hidden";
        else
            to = THREADSYNC__STATUS__HIDDEN;
        break;
    case THREADSYNC__STATE__CHANGE_KIND__CHANGE_UNHIDE:
        if (from == THREADSYNC__STATUS__HIDDEN || from == THREADSYNC__STATUS__VISIBLE)
            to = THREADSYNC__STATUS__VISIBLE;
        else
            bad = "unhide takes a HIDDEN comment (approve a PENDING one)";
        break;
    case THREADSYNC__STATE__CHANGE_KIND__CHANGE_DELETE:
        to = THREADSYNC__STATUS__DELETED;
        break;
    case THREADSYNC__STATE__CHANGE_KIND__CHANGE_EDIT:
        if (from == THREADSYNC__STATUS__DELETED)
            bad = "a deleted comment cannot be edited";
        break;
    default:
        return reject(res, TS_E_INVALID_ARGUMENT, "kind"), TS_OK;
    }
    if (bad)
        return reject_msg(res, TS_E_INVALID_ARGUMENT, "status", bad), TS_OK;
    if (ts__store_slen(cc->reason) > TS_STORE_AUDIT_REASON_MAX)
        return reject(res, TS_E_INVALID_ARGUMENT, "reason"), TS_OK;

    /* A moderator's change is audited; an edit's record is made before the
     * rewrite frees the text it keeps. */
    Threadsync__AuditEntry av = THREADSYNC__AUDIT_ENTRY__INIT;
    av.action = (Threadsync__AuditAction)cc->kind; /* ChangeKind's values */
    av.thread_id = t->id;
    av.comment_id = c->id;
    struct audit *edit_record = NULL;
    struct comment_ext x;
    ts__store_comment_ext(c, &x);
    uint16_t modby = x.modby;
    if (!author && ts__store_intern(st, actor_of(cmd), &modby) != TS_OK)
        return TS_E_NOMEM;
    if (cc->kind == THREADSYNC__STATE__CHANGE_KIND__CHANGE_EDIT) {
        size_t body_len = ts__store_slen(cc->body);
        if (!body_len || body_len > TS_BODY_MAX)
            return reject(res, TS_E_INVALID_ARGUMENT, "body"), TS_OK;
        if (author && t->locked)
            return reject_msg(res, TS_E_THREAD_LOCKED, NULL,
                              "the thread is locked: its comments take no author edits"),
                   TS_OK;
        const char *name = ts__store_comment_text(c), *email = name + c->name_len + 1;
        const char *old_body = email + c->email_len + 1;
        if (body_len == c->body_len && memcmp(old_body, cc->body, body_len) == 0)
            return TS_OK; /* the same text again: a retry */
        if (!author) {
            av.text_before = (char *)old_body;
            av.reason = cc->reason;
            audit_stamp(&av, pos, cmd);
            if (!(edit_record = ts__store_audit_alloc(&av)))
                return TS_E_NOMEM;
        }
        x.edited_at = now;
        x.modby = modby;
        x.version++;
        struct comment *n =
            ts__store_comment_rewrite(st, c, name, c->name_len, email, c->email_len, cc->body,
                                      body_len, ts__store_comment_reader_key(c), &x);
        if (!n) {
            free(edit_record);
            return TS_E_NOMEM;
        }
        c = n;
        /* An approved comment edited by its author on a pre-moderated
         * thread goes back to the queue: approval was of other words. */
        if (author && !cmd->trusted && (cmd->premoderate || t->premoderated) &&
            c->status == THREADSYNC__STATUS__VISIBLE)
            ts__store_set_status(t, c, THREADSYNC__STATUS__PENDING);
    } else {
        if (to == from)
            return TS_OK; /* already there: a retry changes nothing */
        x.modby = modby;
        x.version++;
        /* The tombstone keeps id, thread, parent and times only. */
        struct comment *n = to == THREADSYNC__STATUS__DELETED
                                ? ts__store_comment_rewrite(st, c, "", 0, "", 0, "", 0, "", &x)
                                : ts__store_comment_set_ext(st, c, &x);
        if (!n)
            return TS_E_NOMEM;
        c = n;
        ts__store_set_status(t, c, to);
    }
    t->version++;
    /* History replays (a subscriber from an old cursor, or after a restart)
     * must not bring back what the public may no longer read. */
    if (c->status != THREADSYNC__STATUS__VISIBLE ||
        (!author && cc->kind == THREADSYNC__STATE__CHANGE_KIND__CHANGE_EDIT)) {
        uint8_t now_status = c->status;
        ts_evlog_rewrite_public(s->log, t->id, c->id, c->id, blank_public, &now_status);
    }
    int rc = TS_OK;
    if (edit_record && (rc = ts__store_audit_push(st, edit_record)) != TS_OK)
        free(edit_record);
    else if (!author && !edit_record)
        rc = audit(s, pos, cmd, &av);
    if (rc == TS_OK)
        rc = ts__store_append_event(s, pos, t, c);
    if (rc != TS_OK)
        return rc;
    res->seq = pos;
    res->comment_status = c->status;
    res->changed = 1;
    return TS_OK;
}

static int apply_moderate_thread(struct ts_store *s, uint64_t pos,
                                 const Threadsync__State__Command *cmd, struct ts_store_result *res)
{
    struct state *st = &s->st;
    const Threadsync__ModerateThread *m = cmd->moderate_thread;
    size_t key_len = ts__store_slen(m->thread_key);
    struct thread *t = key_len ? ts__store_find_thread_key(st, m->thread_key, key_len) : NULL;
    if (!t)
        return reject_msg(res, TS_E_NOT_FOUND, "thread_key", "no thread has this key"), TS_OK;
    res->thread_id = t->id;
    uint8_t locked = t->locked, premod = t->premoderated;
    switch (m->action) {
    case THREADSYNC__THREAD_ACTION__THREAD_LOCK:
        locked = 1;
        break;
    case THREADSYNC__THREAD_ACTION__THREAD_UNLOCK:
        locked = 0;
        break;
    case THREADSYNC__THREAD_ACTION__THREAD_PREMODERATE:
        premod = 1;
        break;
    case THREADSYNC__THREAD_ACTION__THREAD_POSTMODERATE:
        premod = 0;
        break;
    default:
        return reject(res, TS_E_INVALID_ARGUMENT, "action"), TS_OK;
    }
    if (locked == t->locked && premod == t->premoderated)
        return TS_OK;
    uint16_t modby;
    if (ts__store_intern(st, actor_of(cmd), &modby) != TS_OK)
        return TS_E_NOMEM;
    t->locked = locked;
    t->premoderated = premod;
    t->modby = modby;
    t->version++;
    Threadsync__AuditEntry av = THREADSYNC__AUDIT_ENTRY__INIT;
    /* ThreadAction's values, 10 up */
    av.action =
        (Threadsync__AuditAction)(THREADSYNC__AUDIT_ACTION__AUDIT_LOCK - 1 + (int)m->action);
    av.thread_id = t->id;
    int rc = audit(s, pos, cmd, &av);
    if (rc == TS_OK)
        rc = ts__store_append_event(s, pos, t, NULL);
    if (rc != TS_OK)
        return rc;
    res->seq = pos;
    res->changed = 1;
    return TS_OK;
}

static int apply_ban(struct ts_store *s, uint64_t pos, const Threadsync__State__Command *cmd,
                     struct ts_store_result *res)
{
    res->seq = pos;
    struct state *st = &s->st;
    const Threadsync__BanAuthor *b = cmd->ban_author;
    int64_t now = cmd->time_ms;
    size_t len = ts__store_slen(b->author);
    if (!len || len > TS_AUTHOR_EMAIL_MAX)
        return reject(res, TS_E_INVALID_ARGUMENT, "author"), TS_OK;
    if (b->duration_ms > TS_STORE_BAN_MAX_MS)
        return reject(res, TS_E_INVALID_ARGUMENT, "duration_ms"), TS_OK;
    /* Expired bans go as command time passes them: same moment everywhere. */
    for (size_t i = st->n_bans; i-- > 0;)
        if (st->bans[i].until <= now)
            ts__store_ban_remove_at(st, i);
    char key[TS_AUTHOR_EMAIL_MAX + 1];
    ts__store_ban_key(b->author, key, sizeof(key));
    int found;
    size_t i = ts__store_ban_slot(st, key, &found);
    Threadsync__AuditEntry av = THREADSYNC__AUDIT_ENTRY__INIT;
    av.target = key;
    if (b->duration_ms == 0) {
        res->changed = found;
        res->until_ms = 0;
        if (!found)
            return TS_OK;
        ts__store_ban_remove_at(st, i);
        av.action = THREADSYNC__AUDIT_ACTION__AUDIT_UNBAN;
        return audit(s, pos, cmd, &av);
    }
    int64_t until = now + (int64_t)b->duration_ms;
    if (ts__store_ban_put(st, key, until, actor_of(cmd)) != TS_OK)
        return TS_E_NOMEM;
    res->changed = 1;
    res->until_ms = until;
    av.action = THREADSYNC__AUDIT_ACTION__AUDIT_BAN;
    av.until_ms = until;
    return audit(s, pos, cmd, &av);
}

static int apply_token_grant(struct ts_store *s, uint64_t pos,
                             const Threadsync__State__Command *cmd, struct ts_store_result *res)
{
    res->seq = pos;
    struct state *st = &s->st;
    const Threadsync__State__TokenGrant *g = cmd->token_grant;
    if (!ts__store_valid_token_name(g->name))
        return reject(res, TS_E_INVALID_ARGUMENT, "name"), TS_OK;
    if (g->role < THREADSYNC__ROLE__READER || g->role > THREADSYNC__ROLE__ADMIN)
        return reject(res, TS_E_INVALID_ARGUMENT, "role"), TS_OK;
    if (g->token_hash.len != TS_STORE_HASH_LEN)
        return reject(res, TS_E_INVALID_ARGUMENT, "token"), TS_OK;
    int found;
    ts__store_token_slot(st, g->name, &found);
    if (found)
        return reject_msg(res, TS_E_INVALID_ARGUMENT, "name", "a token had this name"), TS_OK;
    struct token tk;
    ts__store_token_init(&tk, g->name, actor_of(cmd));
    memcpy(tk.hash, g->token_hash.data, TS_STORE_HASH_LEN);
    tk.has_hash = 1;
    tk.role = (uint8_t)g->role;
    tk.gateway = g->gateway;
    tk.created_at = cmd->time_ms;
    if (ts__store_token_insert(st, &tk) != TS_OK)
        return TS_E_NOMEM;
    st->auth_gen++;
    res->changed = 1;
    Threadsync__AuditEntry av = THREADSYNC__AUDIT_ENTRY__INIT;
    av.action = THREADSYNC__AUDIT_ACTION__AUDIT_TOKEN_ADD;
    av.target = g->name;
    av.role = g->role;
    return audit(s, pos, cmd, &av);
}

static int apply_token_revoke(struct ts_store *s, uint64_t pos,
                              const Threadsync__State__Command *cmd, struct ts_store_result *res)
{
    res->seq = pos;
    struct state *st = &s->st;
    const Threadsync__TokenRevoke *r = cmd->token_revoke;
    if (!ts__store_valid_token_name(r->name))
        return reject(res, TS_E_INVALID_ARGUMENT, "name"), TS_OK;
    int found;
    size_t i = ts__store_token_slot(st, r->name, &found);
    if (found && st->tokens[i].revoked)
        return TS_OK;
    if (found) {
        st->tokens[i].revoked = 1;
        st->tokens[i].revoked_at = cmd->time_ms;
    } else {
        /* A tokens-file name (the leader checked it exists there): the
         * tombstone is what makes every node refuse it. */
        struct token tk;
        ts__store_token_init(&tk, r->name, actor_of(cmd));
        tk.revoked = 1;
        tk.revoked_at = cmd->time_ms;
        if (ts__store_token_insert(st, &tk) != TS_OK)
            return TS_E_NOMEM;
    }
    st->auth_gen++;
    res->changed = 1;
    Threadsync__AuditEntry av = THREADSYNC__AUDIT_ENTRY__INIT;
    av.action = THREADSYNC__AUDIT_ACTION__AUDIT_TOKEN_REVOKE;
    av.target = r->name;
    return audit(s, pos, cmd, &av);
}

/* The entry's unpack takes its memory from s->unpack_buf (ts_pbarena), not
 * from malloc: each post of a PostBatch unpacks into about ten structs and
 * strings, a malloc and a free each (malloc and free together were 15 % of
 * the node's CPU samples during ingest, bench/README.md), and the buffer,
 * reused, is memory already touched. It grows (between applies, when
 * nothing points into it) to about twice the entry, up to
 * TS__STORE_UNPACK_MAX; without memory for that, blocks come from malloc. */
static void unpack_reserve(struct ts_store *s, size_t len)
{
    size_t want = len < TS__STORE_UNPACK_MAX / 2 ? 2 * len + 4096 : TS__STORE_UNPACK_MAX;
    if (want <= s->unpack_cap)
        return;
    uint8_t *nb = malloc(want);
    if (!nb)
        return;
    free(s->unpack_buf);
    s->unpack_buf = nb;
    s->unpack_cap = want;
}

/* An entry a later release wrote for nodes of its level: applying it here
 * would make another state than theirs, silently (an unknown op would
 * apply as a command with none: nothing made, no error). An op this
 * release does not know unpacks as no op plus an unknown field. */
static int entry_too_new(const Threadsync__State__Command *cmd)
{
    if (cmd->level > TS_STORE_LEVEL)
        return 1;
    return cmd->op_case == THREADSYNC__STATE__COMMAND__OP__NOT_SET && cmd->base.n_unknown_fields;
}

int ts_store_apply(struct ts_store *s, uint64_t index, const uint8_t *payload, size_t len,
                   struct ts_store_result *res)
{
    memset(res, 0, sizeof(*res));
    s->n_batch_out = 0;
    if (index <= s->st.last_index)
        return TS_E_INVALID_ARGUMENT;
    unpack_reserve(s, len);
    struct ts_pbarena arena;
    ts_pbarena_init(&arena, s->unpack_buf, s->unpack_cap);
    Threadsync__State__Command *cmd =
        threadsync__state__command__unpack(&arena.alloc, len, payload);
    int rc = TS_OK;
    if (cmd && entry_too_new(cmd)) {
        TS_ERROR("event=store_entry_too_new index=%llu level=%u supported=%u msg=\"this entry "
                 "was written by a later release: upgrade this node, which stops applying here\"",
                 (unsigned long long)index, cmd->level, TS_STORE_LEVEL);
        if (arena.spilled)
            threadsync__state__command__free_unpacked(cmd, &arena.alloc);
        return TS_E_UNSUPPORTED_VERSION;
    }
    /* The index is consumed whatever else the payload says: last_index
     * follows the Raft log, the content does not change. */
    s->st.last_index = index;
    /* The entry's position: its index, unless an Import took positions
     * beyond it. Every id and seq below is a position. */
    uint64_t pos = index > s->st.pos ? index : s->st.pos + 1;
    s->st.pos = pos;
    res->status = TS_E_BAD_FRAME;
    if (!cmd)
        return TS_OK;
    res->status = TS_OK;
    switch (cmd->op_case) {
    case THREADSYNC__STATE__COMMAND__OP_POST:
        rc = apply_post(s, pos, cmd, res);
        break;
    case THREADSYNC__STATE__COMMAND__OP_COMMENT_CHANGE:
        rc = apply_comment_change(s, pos, cmd, res);
        break;
    case THREADSYNC__STATE__COMMAND__OP_MODERATE_THREAD:
        rc = apply_moderate_thread(s, pos, cmd, res);
        break;
    case THREADSYNC__STATE__COMMAND__OP_BAN_AUTHOR:
        rc = apply_ban(s, pos, cmd, res);
        break;
    case THREADSYNC__STATE__COMMAND__OP_TOKEN_GRANT:
        rc = apply_token_grant(s, pos, cmd, res);
        break;
    case THREADSYNC__STATE__COMMAND__OP_TOKEN_REVOKE:
        rc = apply_token_revoke(s, pos, cmd, res);
        break;
    case THREADSYNC__STATE__COMMAND__OP_IMPORT:
        rc = ts__store_apply_import(s, pos, cmd, res);
        break;
    case THREADSYNC__STATE__COMMAND__OP_POST_BATCH:
        rc = apply_post_batch(s, pos, cmd, res);
        break;
    default:
        res->status = TS_E_BAD_FRAME;
        break;
    }
    if (arena.spilled)
        threadsync__state__command__free_unpacked(cmd, &arena.alloc);
    return rc;
}

uint64_t ts_store_last_index(const struct ts_store *s)
{
    return s->st.last_index;
}

uint64_t ts_store_seq(const struct ts_store *s)
{
    return s->st.seq;
}

size_t ts_store_thread_count(const struct ts_store *s)
{
    return s->st.n_threads;
}

size_t ts_store_comment_count(const struct ts_store *s)
{
    return s->st.n_comments;
}

size_t ts_store_memory(const struct ts_store *s)
{
    const struct state *st = &s->st;
    size_t n = ts__store_alloc_cost(sizeof(*s)) + st->record_bytes;
    if (st->cap_threads)
        n += ts__store_alloc_cost(st->cap_threads * sizeof(*st->threads));
    if (st->idem_cap_blocks)
        n += ts__store_alloc_cost(st->idem_cap_blocks * sizeof(*st->idem_blocks));
    const struct ts_map *maps[] = {&st->thread_by_id, &st->thread_by_key, &st->comment_by_id,
                                   &st->idem_by_key};
    for (size_t i = 0; i < sizeof(maps) / sizeof(maps[0]); i++)
        if (maps[i]->cap)
            n += ts__store_alloc_cost(maps[i]->cap * sizeof(void *));
    if (st->cap_names)
        n += ts__store_alloc_cost(st->cap_names * sizeof(*st->names));
    for (size_t i = 1; i < st->n_names; i++)
        n += ts__store_alloc_cost(strlen(st->names[i]) + 1);
    if (st->cap_tokens)
        n += ts__store_alloc_cost(st->cap_tokens * sizeof(*st->tokens));
    if (st->cap_bans)
        n += ts__store_alloc_cost(st->cap_bans * sizeof(*st->bans));
    if (st->audit_cap)
        n += ts__store_alloc_cost(st->audit_cap * sizeof(*st->audit));
    for (size_t i = 0; i < st->n_bans; i++)
        n += ts__store_alloc_cost(strlen(st->bans[i].author) + strlen(st->bans[i].by) + 2);
    return n;
}

int ts_store_thread_by_key(const struct ts_store *s, const char *key, Threadsync__Thread *out)
{
    struct thread *t = ts__store_find_thread_key(&s->st, key, strlen(key));
    if (!t)
        return TS_E_NOT_FOUND;
    ts__store_thread_view(&s->st, t, out);
    return TS_OK;
}

int ts_store_thread_by_id(const struct ts_store *s, uint64_t id, Threadsync__Thread *out)
{
    struct thread *t = ts__store_find_thread_id(&s->st, id);
    if (!t)
        return TS_E_NOT_FOUND;
    ts__store_thread_view(&s->st, t, out);
    return TS_OK;
}

int ts_store_foreach_thread(const struct ts_store *s, uint64_t after_id,
                            int (*cb)(void *arg, const Threadsync__Thread *t), void *arg)
{
    const struct state *st = &s->st;
    if (after_id == UINT64_MAX)
        return 0;
    for (size_t i = ts__store_thread_slot(st, after_id + 1); i < st->n_threads; i++) {
        Threadsync__Thread v;
        ts__store_thread_view(st, st->threads[i], &v);
        int rc = cb(arg, &v);
        if (rc)
            return rc;
    }
    return 0;
}

int ts_store_foreach_comment(const struct ts_store *s, uint64_t thread_id, uint64_t after_id,
                             int (*cb)(void *arg, const Threadsync__Comment *c), void *arg)
{
    const struct thread *t = ts__store_find_thread_id(&s->st, thread_id);
    if (!t || after_id == UINT64_MAX)
        return 0;
    for (uint32_t i = ts__store_comment_slot(t, after_id + 1); i < t->n_comments; i++) {
        Threadsync__Comment v;
        ts__store_comment_view(&s->st, t->comments[i], &v);
        int rc = cb(arg, &v);
        if (rc)
            return rc;
    }
    return 0;
}

int ts_store_comment(const struct ts_store *s, uint64_t id, Threadsync__Comment *out)
{
    struct comment *c = ts__store_find_comment(&s->st, id);
    if (!c)
        return TS_E_NOT_FOUND;
    ts__store_comment_view(&s->st, c, out);
    return TS_OK;
}

void ts_store_idempotency_digest(const uint8_t token_hash[TS_STORE_HASH_LEN], const char *key,
                                 uint8_t out[TS_STORE_IDEM_DIGEST_LEN])
{
    static const char label[] = "threadsync-idem-v2"; /* with its NUL */
    uint8_t buf[sizeof(label) + TS_STORE_HASH_LEN + TS_IDEMPOTENCY_KEY_MAX],
        h[SHA256_DIGEST_LENGTH];
    size_t n = ts__store_slen(key);
    if (n > TS_IDEMPOTENCY_KEY_MAX) /* refused by validation; still a defined digest */
        n = TS_IDEMPOTENCY_KEY_MAX;
    memcpy(buf, label, sizeof(label));
    memcpy(buf + sizeof(label), token_hash, TS_STORE_HASH_LEN);
    if (n)
        memcpy(buf + sizeof(label) + TS_STORE_HASH_LEN, key, n);
    ts__store_sha256(buf, sizeof(label) + TS_STORE_HASH_LEN + n, NULL, 0, h);
    memcpy(out, h, TS_STORE_IDEM_DIGEST_LEN);
}

int ts_store_idempotency_known(const struct ts_store *s,
                               const uint8_t digest[TS_STORE_IDEM_DIGEST_LEN])
{
    return ts__store_find_idem(&s->st, digest) != NULL;
}

int ts_store_has_edit_secret(const struct ts_store *s)
{
    return s->st.has_edit_secret;
}

int ts_store_edit_key(const struct ts_store *s, uint64_t comment_id,
                      char out[TS_STORE_EDIT_KEY_LEN + 1])
{
    const struct idem *e = ts__store_find_idem_comment(&s->st, comment_id);
    if (!e || !e->derived || !s->st.has_edit_secret)
        return TS_E_NOT_FOUND;
    ts__store_derive_edit_key(&s->st, e, out);
    return TS_OK;
}

int ts_store_banned(const struct ts_store *s, const char *author_name, const char *author_email,
                    const char *reader_key, int64_t now_ms, int64_t *until_ms, const char **field)
{
    const char *f = NULL;
    const struct ban *b =
        ts__store_post_ban(&s->st, author_name, author_email, reader_key, now_ms, &f);
    if (!b)
        return 0;
    if (until_ms)
        *until_ms = b->until;
    if (field)
        *field = f;
    return 1;
}

static int cmp_comment_id(const void *a, const void *b)
{
    uint64_t x = (*(const struct comment *const *)a)->id;
    uint64_t y = (*(const struct comment *const *)b)->id;
    return x < y ? -1 : x > y;
}

int ts_store_pending(const struct ts_store *s, uint64_t thread_id, uint64_t after_id, size_t limit,
                     Threadsync__Comment *out, size_t *n, int *more)
{
    const struct state *st = &s->st;
    *n = 0;
    *more = 0;
    if (after_id == UINT64_MAX)
        return TS_OK;
    size_t total = 0;
    for (size_t i = 0; i < st->n_threads; i++)
        if (!thread_id || st->threads[i]->id == thread_id)
            total += st->threads[i]->pending_count;
    if (!total || !limit)
        return TS_OK;
    const struct comment **v = malloc(total * sizeof(*v));
    if (!v)
        return TS_E_NOMEM;
    size_t k = 0;
    for (size_t i = 0; i < st->n_threads; i++) {
        const struct thread *t = st->threads[i];
        if (!t->pending_count || (thread_id && t->id != thread_id))
            continue;
        for (uint32_t j = ts__store_comment_slot(t, after_id + 1); j < t->n_comments && k < total;
             j++)
            if (t->comments[j]->status == THREADSYNC__STATUS__PENDING)
                v[k++] = t->comments[j];
    }
    qsort(v, k, sizeof(*v), cmp_comment_id);
    for (size_t i = 0; i < k && i < limit; i++)
        ts__store_comment_view(st, v[i], &out[i]);
    *n = k < limit ? k : limit;
    *more = k > limit;
    free(v);
    return TS_OK;
}

int ts_store_token_state(const struct ts_store *s, const char *name)
{
    int found;
    size_t i = ts__store_token_slot(&s->st, name ? name : "", &found);
    if (!found)
        return TS_STORE_TOKEN_NONE;
    return s->st.tokens[i].revoked ? TS_STORE_TOKEN_REVOKED : TS_STORE_TOKEN_ACTIVE;
}

int ts_store_token_gateway(const struct ts_store *s, const char *name)
{
    int found;
    size_t i = ts__store_token_slot(&s->st, name ? name : "", &found);
    return found && !s->st.tokens[i].revoked && s->st.tokens[i].gateway;
}

int ts_store_token_check(const struct ts_store *s, const uint8_t hash[TS_STORE_HASH_LEN], int *role,
                         const char **name)
{
    const struct state *st = &s->st;
    /* Every entry compared, constant-time each, as ts_auth does. */
    size_t found = 0, any = 0;
    for (size_t i = 0; i < st->n_tokens; i++) {
        const struct token *k = &st->tokens[i];
        size_t hit = (size_t)(k->has_hash && !k->revoked &&
                              CRYPTO_memcmp(k->hash, hash, TS_STORE_HASH_LEN) == 0);
        size_t mask = (size_t)0 - hit;
        found = (found & ~mask) | (i & mask);
        any |= hit;
    }
    if (!any)
        return TS_E_UNAUTHENTICATED;
    if (role)
        *role = st->tokens[found].role;
    if (name)
        *name = st->tokens[found].name;
    return TS_OK;
}

int ts_store_foreach_token(const struct ts_store *s,
                           int (*cb)(void *arg, const struct ts_store_token *t), void *arg)
{
    for (size_t i = 0; i < s->st.n_tokens; i++) {
        const struct token *k = &s->st.tokens[i];
        struct ts_store_token t = {
            .name = k->name,
            .role = k->role,
            .created_at_ms = k->created_at,
            .created_by = k->created_by,
            .revoked = k->revoked,
            .has_secret = k->has_hash,
            .gateway = k->gateway,
        };
        int rc = cb(arg, &t);
        if (rc)
            return rc;
    }
    return 0;
}

uint64_t ts_store_auth_generation(const struct ts_store *s)
{
    return s->st.auth_gen;
}
