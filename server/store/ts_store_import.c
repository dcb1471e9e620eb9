/*
 * ts_store_import: the Import command, an admin's bulk write of comments
 * from another system (WordPress, Disqus, a threadsync export), and the
 * table of source names that makes it idempotent.
 *
 * One log entry carries up to TS_STORE_IMPORT_COMMENTS_MAX comments. Each
 * new one takes its own position: the entry's first position, then the
 * next ones (ts_store_apply computes the first), so every comment is an
 * ordinary event with its own seq and, unless the command is exact, an id
 * equal to that seq, as a Post's. The state's position then stays ahead of
 * the Raft index by the extra positions taken, on every replica alike.
 *
 * A comment is named for good by (source, source_id): its digest goes into
 * import_by_digest with the comment made, so importing it again (a second
 * run, a run interrupted half-way) reports it existing and changes nothing.
 * Parents are named the same way and resolved here, at apply: a parent of
 * the same command (earlier in its list) or of an earlier one. A comment
 * whose parent or thread is unknown is refused, and so are its replies;
 * the rest of the command goes on (per-comment outcomes, ts_store.h).
 *
 * Deterministic like every apply: times, statuses and ids come from the
 * command. Load: one SHA-256 (two for a reply) and a few hash lookups per
 * comment.
 */
#include "ts_store.h"
#include "ts_store_int.h"

#include "threadsync_state.pb-c.h"
#include "ts_err.h"
#include "ts_valid.h"

#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

void ts__store_import_digest(const char *source, const char *source_id,
                             uint8_t out[TS__STORE_DIGEST_LEN])
{
    static const char label[] = "threadsync-import-v1"; /* with its NUL */
    uint8_t buf[sizeof(label) + TS_STORE_IMPORT_SOURCE_MAX + 1 + TS_STORE_IMPORT_SOURCE_ID_MAX];
    uint8_t h[SHA256_DIGEST_LENGTH];
    /* Over-long names are refused before; clipped here only to stay defined. */
    size_t ns = strnlen(source, TS_STORE_IMPORT_SOURCE_MAX);
    size_t ni = strnlen(source_id, TS_STORE_IMPORT_SOURCE_ID_MAX);
    memcpy(buf, label, sizeof(label));
    memcpy(buf + sizeof(label), source, ns);
    buf[sizeof(label) + ns] = 0;
    memcpy(buf + sizeof(label) + ns + 1, source_id, ni);
    ts__store_sha256(buf, sizeof(label) + ns + 1 + ni, NULL, 0, h);
    memcpy(out, h, TS__STORE_DIGEST_LEN);
}

static int import_eq(const void *e, const void *key)
{
    return memcmp(((const struct import_ref *)e)->digest, key, TS__STORE_DIGEST_LEN) == 0;
}

struct import_ref *ts__store_find_import(const struct state *st,
                                         const uint8_t digest[TS__STORE_DIGEST_LEN])
{
    return ts_map_find(&st->import_by_digest,
                       ts_map_hash_str((const char *)digest, TS__STORE_DIGEST_LEN), digest,
                       import_eq);
}

int ts__store_import_add(struct state *st, const uint8_t digest[TS__STORE_DIGEST_LEN],
                         uint64_t comment_id)
{
    struct import_ref *r = malloc(sizeof(*r));
    if (!r)
        return TS_E_NOMEM;
    memcpy(r->digest, digest, TS__STORE_DIGEST_LEN);
    r->comment_id = comment_id;
    if (ts_map_insert(&st->import_by_digest, r) != TS_OK) {
        free(r);
        return TS_E_NOMEM;
    }
    st->n_imports++;
    st->record_bytes += ts__store_alloc_cost(sizeof(*r));
    return TS_OK;
}

void ts__store_import_free(struct state *st)
{
    for (size_t i = 0; i < st->import_by_digest.cap; i++)
        free(ts_map_slot(&st->import_by_digest, i));
    ts_map_free(&st->import_by_digest);
    st->n_imports = 0;
}

void ts_store_import_outcome(const struct ts_store *s, const struct ts_store_import_item **items,
                             size_t *n)
{
    *items = s->import_out;
    *n = s->n_import_out;
}

static void refuse(struct ts_store_import_item *it, int error, const char *message)
{
    it->outcome = THREADSYNC__IMPORT_OUTCOME__IMPORT_REFUSED;
    it->error = error;
    it->message = message;
}

/* The command's thread with this key, searched from *hint on (an importer
 * sends threads in the order their comments come, so this is one step). */
static const Threadsync__ImportThread *batch_thread(const Threadsync__Import *im, const char *key,
                                                    size_t *hint)
{
    for (size_t k = 0; k < im->n_threads; k++) {
        size_t i = (*hint + k) % im->n_threads;
        if (im->threads[i]->key && strcmp(im->threads[i]->key, key) == 0) {
            *hint = i;
            return im->threads[i];
        }
    }
    return NULL;
}

/* The checks apply_post makes, so that a malformed entry cannot break the
 * record layout (the leader validated the fields fully). NULL when fine. */
static const char *bad_comment(const Threadsync__ImportComment *c)
{
    size_t sid = ts__store_slen(c->source_id), name = ts__store_slen(c->author_name);
    size_t body = ts__store_slen(c->body), key = ts__store_slen(c->thread_key);
    if (!sid || sid > TS_STORE_IMPORT_SOURCE_ID_MAX ||
        ts__store_slen(c->parent_source_id) > TS_STORE_IMPORT_SOURCE_ID_MAX)
        return "source_id must be 1 to 128 bytes";
    if (!key || key > TS_THREAD_KEY_MAX)
        return "thread_key must be 1 to 256 bytes";
    /* a tombstone (DELETED) may have lost its name and body */
    int tomb = c->status == THREADSYNC__STATUS__DELETED;
    if ((!name && !tomb) || name > (size_t)TS_AUTHOR_NAME_MAX_CP * 4 ||
        ts__store_slen(c->author_email) > TS_AUTHOR_EMAIL_MAX)
        return "author_name or author_email out of range";
    if ((!body && !tomb) || body > TS_BODY_MAX)
        return "body must be 1 to 16384 bytes";
    if (c->status < THREADSYNC__STATUS__VISIBLE || c->status > THREADSYNC__STATUS__DELETED)
        return "status must be VISIBLE, PENDING, HIDDEN or DELETED";
    if (c->created_at_ms <= 0)
        return "created_at_ms must be positive";
    return NULL;
}

/* A moderator's name as a record keeps it: a token name, or "" (nobody). */
static const char *name_or_none(const char *s)
{
    return ts__store_valid_token_name(s) ? s : "";
}

/* Creates the thread for an imported comment from the command's entry it;
 * id is the thread's id (exact: the one given). */
static int new_thread(struct state *st, const Threadsync__ImportThread *it, uint64_t id,
                      int64_t created_at, int exact, struct thread **out)
{
    size_t key_len = ts__store_slen(it->key), title_len = ts__store_slen(it->title),
           url_len = ts__store_slen(it->url);
    struct thread *t =
        ts__store_thread_alloc(it->key, key_len, it->title, title_len, it->url, url_len);
    if (!t)
        return TS_E_NOMEM;
    t->id = id;
    t->created_at = it->created_at_ms > 0 ? it->created_at_ms : created_at;
    if (exact) {
        t->locked = it->locked;
        t->premoderated = it->premoderated;
        t->version = it->version;
        if (ts__store_intern(st, name_or_none(it->moderated_by), &t->modby) != TS_OK) {
            free(t);
            return TS_E_NOMEM;
        }
    }
    if (ts__store_thread_insert(st, t) != TS_OK) {
        free(t);
        return TS_E_NOMEM;
    }
    *out = t;
    return TS_OK;
}

/* Imports one comment (not imported before) at position pos: *made says
 * whether it was (else *it says why not). */
static int import_one(struct ts_store *s, const Threadsync__Import *im,
                      const Threadsync__ImportComment *ic,
                      const uint8_t digest[TS__STORE_DIGEST_LEN], uint64_t pos, size_t *hint,
                      struct ts_store_import_item *it, int *made)
{
    struct state *st = &s->st;
    *made = 0;
    const char *bad = bad_comment(ic);
    if (bad)
        return refuse(it, TS_E_INVALID_ARGUMENT, bad), TS_OK;
    struct thread *t = ts__store_find_thread_key(st, ic->thread_key, strlen(ic->thread_key));
    const Threadsync__ImportThread *bt = t ? NULL : batch_thread(im, ic->thread_key, hint);
    if (!t && !bt)
        return refuse(it, TS_E_NOT_FOUND, "thread_key names no thread of this import or the store"),
               TS_OK;
    if (!t && (ts__store_slen(bt->title) > TS_TITLE_MAX || ts__store_slen(bt->url) > TS_URL_MAX))
        return refuse(it, TS_E_INVALID_ARGUMENT, "the thread's title or url is too long"), TS_OK;
    uint64_t parent_id = 0;
    if (ic->parent_source_id && ic->parent_source_id[0]) {
        uint8_t pd[TS__STORE_DIGEST_LEN];
        ts__store_import_digest(im->source, ic->parent_source_id, pd);
        const struct import_ref *pr = ts__store_find_import(st, pd);
        const struct comment *parent = pr ? ts__store_find_comment(st, pr->comment_id) : NULL;
        if (!parent || !t || parent->thread_ix != t->ix)
            return refuse(it, TS_E_NOT_FOUND,
                          "parent_source_id names no imported comment of this thread"),
                   TS_OK;
        parent_id = parent->id;
    }
    uint64_t id = pos;
    if (im->exact) {
        /* Ids as given, where the layout can take them: a thread's ids
         * ascend, so each must exceed its thread's newest. */
        id = ic->id;
        uint64_t tid = t ? t->id : bt->id;
        if (!id || ts__store_find_comment(st, id) ||
            (t && t->n_comments && id <= t->comments[t->n_comments - 1]->id))
            return refuse(it, TS_E_INVALID_ARGUMENT,
                          "exact: id is taken or below its thread's newest comment"),
                   TS_OK;
        if (!t && (!tid || ts__store_find_thread_id(st, tid) ||
                   (st->n_threads && tid <= st->threads[st->n_threads - 1]->id)))
            return refuse(it, TS_E_INVALID_ARGUMENT,
                          "exact: the thread's id is taken or below the newest thread's"),
                   TS_OK;
        if (parent_id >= id)
            return refuse(it, TS_E_INVALID_ARGUMENT,
                          "exact: a reply's id must exceed its parent's"),
                   TS_OK;
    }
    struct comment_ext x = {.version = 1};
    if (im->exact) {
        x.edited_at = ic->edited_at_ms;
        x.version = ic->version ? ic->version : 1;
        if (ts__store_intern(st, name_or_none(ic->moderated_by), &x.modby) != TS_OK)
            return TS_E_NOMEM;
    }
    /* A DELETED comment is a tombstone, as a moderator's delete leaves it:
     * no name, e-mail or body is kept. */
    int tomb = ic->status == THREADSYNC__STATUS__DELETED;
    struct comment *c = ts__store_comment_alloc(
        ic->author_name, tomb ? 0 : ts__store_slen(ic->author_name), ic->author_email,
        tomb ? 0 : ts__store_slen(ic->author_email), ic->body, tomb ? 0 : ts__store_slen(ic->body),
        NULL /* imports carry no reader key */, &x);
    if (!c)
        return TS_E_NOMEM;
    if (!t &&
        new_thread(st, bt, im->exact ? bt->id : id, ic->created_at_ms, im->exact, &t) != TS_OK) {
        free(c);
        return TS_E_NOMEM;
    }
    c->id = id;
    c->thread_ix = t->ix;
    c->parent_id = parent_id;
    c->created_at = ic->created_at_ms;
    c->status = 0;
    if (ts__store_comment_insert(st, t, c) != TS_OK) {
        free(c);
        return TS_E_NOMEM;
    }
    ts__store_set_status(t, c, (uint8_t)ic->status);
    if (!im->exact)
        t->version++;
    if (ts__store_import_add(st, digest, id) != TS_OK)
        return TS_E_NOMEM;
    int rc = ts__store_append_event(s, pos, t, c);
    if (rc != TS_OK)
        return rc;
    it->outcome = THREADSYNC__IMPORT_OUTCOME__IMPORT_CREATED;
    it->comment_id = id;
    it->seq = pos;
    *made = 1;
    return TS_OK;
}

int ts__store_apply_import(struct ts_store *s, uint64_t pos, const Threadsync__State__Command *cmd,
                           struct ts_store_result *res)
{
    struct state *st = &s->st;
    const Threadsync__Import *im = cmd->import;
    s->n_import_out = 0;
    size_t src_len = ts__store_slen(im->source);
    if (!src_len || src_len > TS_STORE_IMPORT_SOURCE_MAX)
        return res->status = TS_E_INVALID_ARGUMENT, res->field = "source", TS_OK;
    if (!im->n_comments || im->n_comments > TS_STORE_IMPORT_COMMENTS_MAX ||
        im->n_threads > TS_STORE_IMPORT_THREADS_MAX)
        return res->status = TS_E_INVALID_ARGUMENT, res->field = "comments", TS_OK;
    if (im->n_comments > s->cap_import_out) {
        struct ts_store_import_item *v = realloc(s->import_out, im->n_comments * sizeof(*v));
        if (!v)
            return TS_E_NOMEM;
        s->import_out = v;
        s->cap_import_out = im->n_comments;
    }
    memset(s->import_out, 0, im->n_comments * sizeof(*s->import_out));
    s->n_import_out = im->n_comments;
    uint64_t next = pos, top = pos;
    size_t hint = 0, threads_before = st->n_threads;
    for (size_t i = 0; i < im->n_comments; i++) {
        const Threadsync__ImportComment *ic = im->comments[i];
        struct ts_store_import_item *it = &s->import_out[i];
        uint8_t digest[TS__STORE_DIGEST_LEN];
        ts__store_import_digest(im->source, ic->source_id ? ic->source_id : "", digest);
        const struct import_ref *seen = ts__store_find_import(st, digest);
        if (seen) {
            it->outcome = THREADSYNC__IMPORT_OUTCOME__IMPORT_EXISTING;
            it->comment_id = seen->comment_id;
            continue;
        }
        int made;
        int rc = import_one(s, im, ic, digest, next, &hint, it, &made);
        if (rc != TS_OK)
            return rc;
        if (made) {
            top = next;
            next++;
            if (it->comment_id > top) /* exact ids: later positions stay above them */
                top = it->comment_id;
            res->changed = 1;
        }
    }
    /* Later positions become ids of posts and threads: above every id. */
    if (st->n_threads && st->threads[st->n_threads - 1]->id > top)
        top = st->threads[st->n_threads - 1]->id;
    st->pos = top;
    res->threads_created = (uint32_t)(st->n_threads - threads_before);
    res->seq = next > pos ? next - 1 : 0;
    return TS_OK;
}
