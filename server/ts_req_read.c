/*
 * ts_req_read: see ts_req_read.h.
 *
 * Invariants:
 *   - answers are built from store views (pointers into the store), sent
 *     within the same loop turn: no apply runs in between;
 *   - a reader never sees more than ts_view's public form; moderators and
 *     admins see everything;
 *   - a subscriber is never sent anything older than its cursor: a
 *     since_seq beyond this node's applied state (a lagging follower) is
 *     answered UNAVAILABLE, to be retried here or on another node;
 *   - no answer exceeds the frame a client accepts: Get refuses a thread
 *     too large for one frame, PendingQueue returns fewer comments.
 */
#include "ts_req_read.h"

#include "ts_digest.h"
#include "ts_err.h"
#include "ts_hub.h"
#include "ts_log.h"
#include "ts_msglist.h"
#include "ts_server_int.h"
#include "ts_session_int.h"
#include "ts_store.h"
#include "ts_valid.h"
#include "ts_view.h"

#include <stdio.h>
#include <string.h>

#define PENDING_DEFAULT 100
#define PENDING_MAX 1000

/* A page of a Digest answer stops at either bound, well inside one frame:
 * a ThreadDigest is at most ~360 bytes (a 256-byte key and 64 hex). */
#define DIGEST_PAGE_THREADS 1000
#define DIGEST_PAGE_BYTES (768u << 10)

/* Answers NOT_FOUND for a thread key that names no thread. The key passed
 * ts_valid_thread_key(): no control characters to escape. */
static void no_thread(struct ts_session *s, uint64_t rid, const char *key)
{
    char msg[TS_THREAD_KEY_MAX + 16];
    snprintf(msg, sizeof(msg), "no thread '%s'", key);
    ts__session_error(s, rid, TS_E_NOT_FOUND, "thread_key", msg);
}

/* Checks 1..max thread keys (max 0: none is fine) of a Subscribe or
 * Digest; answers INVALID_ARGUMENT, field thread_keys, and returns 0 when
 * one is bad. */
static int thread_keys_ok(struct ts_session *s, uint64_t rid, char **keys, size_t n, int need)
{
    char msg[sizeof(((struct ts_valid_err *)0)->message) + 32];
    if ((need && n == 0) || n > TS_SUBSCRIBE_KEYS_MAX) {
        snprintf(msg, sizeof(msg), "thread_keys must hold %d to %d keys, got %zu", need ? 1 : 0,
                 TS_SUBSCRIBE_KEYS_MAX, n);
        ts__session_error(s, rid, TS_E_INVALID_ARGUMENT, "thread_keys", msg);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        struct ts_valid_err err;
        if (ts_valid_thread_key(keys[i], &err) != TS_OK) {
            snprintf(msg, sizeof(msg), "thread_keys[%zu]: %s", i, err.message);
            ts__session_error(s, rid, TS_E_INVALID_ARGUMENT, "thread_keys", msg);
            return 0;
        }
    }
    return 1;
}

/* ---- Get ---- */

struct get_acc {
    struct ts_msglist comments;
    int full;
};

static int collect_comment(void *arg, const Threadsync__Comment *c)
{
    struct get_acc *acc = arg;
    Threadsync__Comment *copy = ts_msglist_add(&acc->comments);
    if (!copy)
        return 1;
    *copy = *c;
    if (!acc->full)
        ts_view_public_comment(copy);
    return 0;
}

void ts_req_read_get(struct ts_session *s, const Threadsync__Frame *f)
{
    const Threadsync__Get *g = f->get;
    struct ts_valid_err err;
    if (ts_valid_thread_key(g->thread_key, &err) != TS_OK) {
        ts__session_error(s, g->request_id, TS_E_INVALID_ARGUMENT, err.field, err.message);
        return;
    }
    Threadsync__Thread thread;
    if (ts_store_thread_by_key(s->srv->store, g->thread_key, &thread) != TS_OK) {
        no_thread(s, g->request_id, g->thread_key);
        return;
    }
    struct get_acc acc = {
        .comments = TS_MSGLIST_INIT(Threadsync__Comment),
        .full = ts_auth_role_allows(s->role, TS_AUTH_MODERATE),
    };
    if (!acc.full)
        ts_view_public_thread(&thread);
    ts_store_foreach_comment(s->srv->store, thread.id, 0, collect_comment, &acc);
    void **ptrs = ts_msglist_ptrs(&acc.comments);
    if (!ptrs) {
        ts_msglist_free(&acc.comments);
        ts__session_error(s, g->request_id, TS_E_UNAVAILABLE, NULL, "out of memory");
        return;
    }
    Threadsync__Result r = THREADSYNC__RESULT__INIT;
    Threadsync__GetResult gr = THREADSYNC__GET_RESULT__INIT;
    gr.thread = &thread;
    gr.comments = (Threadsync__Comment **)ptrs;
    gr.n_comments = acc.comments.n;
    gr.seq = ts_store_seq(s->srv->store);
    r.request_id = g->request_id;
    r.body_case = THREADSYNC__RESULT__BODY_GET;
    r.get = &gr;
    if (!ts__session_result_fits(&r))
        ts__session_error(s, g->request_id, TS_E_TOO_LARGE, "thread_key",
                          "thread too large for one Get answer (1 MiB + 64 KiB); read it with "
                          "a Subscribe to its key");
    else
        ts__session_result(s, &r);
    ts_msglist_free(&acc.comments);
}

/* ---- Subscribe ---- */

void ts_req_read_subscribe(struct ts_session *s, const Threadsync__Frame *f)
{
    const Threadsync__Subscribe *sub = f->subscribe;
    if (s->sub) {
        ts__session_error(s, sub->request_id, TS_E_INVALID_ARGUMENT, "subscribe",
                          "already subscribed");
        return;
    }
    if (sub->all && sub->n_thread_keys) {
        ts__session_error(s, sub->request_id, TS_E_INVALID_ARGUMENT, "thread_keys",
                          "set either all or thread_keys, not both");
        return;
    }
    if (!sub->all && !thread_keys_ok(s, sub->request_id, sub->thread_keys, sub->n_thread_keys, 1))
        return;
    uint64_t applied = ts_store_seq(s->srv->store);
    if (sub->since_seq > applied) {
        /* A cursor from a node further ahead: this one has not applied that
         * far yet. Serving it would either claim a head we do not have or,
         * after a snapshot, send state older than the cursor. */
        char msg[96];
        snprintf(msg, sizeof(msg), "since_seq is ahead of this node (applied %llu); retry",
                 (unsigned long long)applied);
        ts__session_error(s, sub->request_id, TS_E_UNAVAILABLE, "since_seq", msg);
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
    int rc = ts_hub_subscribe(s->srv->hub, &filter, full, sub->since_seq, &ts__session_hub_sink, s,
                              &s->sub, &from_seq, &snapshot);
    if (rc != TS_OK) {
        ts__session_error(s, sub->request_id, rc, NULL, NULL);
        return;
    }
    Threadsync__Result r = THREADSYNC__RESULT__INIT;
    Threadsync__SubscribeResult sr = THREADSYNC__SUBSCRIBE_RESULT__INIT;
    sr.from_seq = from_seq;
    sr.snapshot = snapshot;
    r.request_id = sub->request_id;
    r.body_case = THREADSYNC__RESULT__BODY_SUBSCRIBE;
    r.subscribe = &sr;
    ts__session_result(s, &r);
    TS_INFO(TS__SESSION_LOG_FMT "event=subscribe all=%d keys=%zu since=%llu snapshot=%d",
            TS__SESSION_LOG_ARGS(s), sub->all, filter.n_thread_keys,
            (unsigned long long)sub->since_seq, snapshot);
}

/* ---- Digest ---- */

/* One thread's digest and the text its digest field points at. */
struct digest_item {
    Threadsync__ThreadDigest td; /* first: the list's pointers are to it */
    char hex[TS_DIGEST_HEX_LEN + 1];
};

struct digest_acc {
    struct ts_store *store;
    struct ts_msglist items;
    size_t bytes;
    uint64_t next_after_id; /* set when the page is cut */
    int failed;             /* TS_E_INTERNAL: a digest failed */
};

static int digest_add_comment(void *arg, const Threadsync__Comment *c)
{
    void **ctx = arg;
    uint64_t *count = ctx[1];
    (*count)++;
    return ts_digest_add_comment(ctx[0], c) != TS_OK;
}

/* Digests one thread into the next item. */
static int digest_thread(void *arg, const Threadsync__Thread *t)
{
    struct digest_acc *acc = arg;
    if (acc->items.n == DIGEST_PAGE_THREADS || acc->bytes >= DIGEST_PAGE_BYTES) {
        acc->next_after_id = ((struct digest_item *)acc->items.items)[acc->items.n - 1].td.id;
        return 1;
    }
    struct digest_item *item = ts_msglist_add(&acc->items);
    if (!item)
        return 1;
    struct ts_digest *d;
    uint64_t comments = 0;
    if (ts_digest_begin(&d, t) != TS_OK) {
        acc->failed = TS_E_INTERNAL;
        return 1;
    }
    void *ctx[2] = {d, &comments};
    ts_store_foreach_comment(acc->store, t->id, 0, digest_add_comment, ctx);
    if (ts_digest_end(d, item->hex) != TS_OK) {
        acc->failed = TS_E_INTERNAL;
        return 1;
    }
    threadsync__thread_digest__init(&item->td);
    item->td.key = t->key;
    item->td.id = t->id;
    item->td.comment_count = t->comment_count;
    item->td.comments = comments;
    item->td.version = t->version;
    acc->bytes += strlen(t->key) + TS_DIGEST_HEX_LEN + 48;
    return 0;
}

void ts_req_read_digest(struct ts_session *s, const Threadsync__Frame *f)
{
    const Threadsync__Digest *dg = f->digest;
    if (!thread_keys_ok(s, dg->request_id, dg->thread_keys, dg->n_thread_keys, 0))
        return;
    struct digest_acc acc = {
        .store = s->srv->store,
        .items = TS_MSGLIST_INIT(struct digest_item),
    };
    if (dg->n_thread_keys == 0) {
        ts_store_foreach_thread(s->srv->store, dg->after_id, digest_thread, &acc);
    } else {
        for (size_t i = 0; i < dg->n_thread_keys && !acc.failed && !acc.items.failed; i++) {
            Threadsync__Thread t;
            /* Keys name at most 1024 threads: one page always holds them. */
            if (ts_store_thread_by_key(s->srv->store, dg->thread_keys[i], &t) == TS_OK)
                digest_thread(&acc, &t);
        }
    }
    void **ptrs = acc.failed ? NULL : ts_msglist_ptrs(&acc.items);
    if (!ptrs) {
        ts__session_error(s, dg->request_id, acc.failed ? acc.failed : TS_E_UNAVAILABLE, NULL,
                          NULL);
        ts_msglist_free(&acc.items);
        return;
    }
    /* The items moved while they grew: point into them only now. */
    struct digest_item *items = acc.items.items;
    for (size_t i = 0; i < acc.items.n; i++)
        items[i].td.digest = items[i].hex;
    Threadsync__Result r = THREADSYNC__RESULT__INIT;
    Threadsync__DigestResult dr = THREADSYNC__DIGEST_RESULT__INIT;
    dr.threads = (Threadsync__ThreadDigest **)ptrs;
    dr.n_threads = acc.items.n;
    /* The last event's seq, not the last log index: a subscriber's cursor
     * only ever reaches seqs that carried events (or a snapshot's seq,
     * which is at least this), and the state changes only with events, so
     * this is the earliest seq the state is "as of". */
    dr.seq = ts_store_seq(s->srv->store);
    dr.next_after_id = acc.next_after_id;
    r.request_id = dg->request_id;
    r.body_case = THREADSYNC__RESULT__BODY_DIGEST;
    r.digest = &dr;
    ts__session_result(s, &r);
    ts_msglist_free(&acc.items);
}

/* ---- PendingQueue ---- */

/* Adds the thread of id to threads unless it is there already. */
static void pending_add_thread(struct ts_store *store, struct ts_msglist *threads, uint64_t id)
{
    const Threadsync__Thread *have = threads->items;
    for (size_t j = 0; j < threads->n; j++)
        if (have[j].id == id)
            return;
    Threadsync__Thread t, *slot;
    if (ts_store_thread_by_id(store, id, &t) == TS_OK && (slot = ts_msglist_add(threads)))
        *slot = t;
}

/* A request's optional thread filter: *id the thread's (0 for key NULL or
 * ""). Returns 0 after answering INVALID_ARGUMENT or NOT_FOUND. */
static int thread_filter(struct ts_session *s, uint64_t rid, const char *key, uint64_t *id)
{
    *id = 0;
    if (!key || !*key)
        return 1;
    struct ts_valid_err err;
    Threadsync__Thread only;
    if (ts_valid_thread_key(key, &err) != TS_OK) {
        ts__session_error(s, rid, TS_E_INVALID_ARGUMENT, err.field, err.message);
        return 0;
    }
    if (ts_store_thread_by_key(s->srv->store, key, &only) != TS_OK) {
        no_thread(s, rid, key);
        return 0;
    }
    *id = only.id;
    return 1;
}

/* A page size asked for: 0 the default, at most the maximum. */
static size_t page_limit(uint32_t asked)
{
    return !asked ? PENDING_DEFAULT : asked > PENDING_MAX ? PENDING_MAX : asked;
}

void ts_req_read_pending_queue(struct ts_session *s, const Threadsync__Frame *f)
{
    const Threadsync__PendingQueue *q = f->pending_queue;
    struct ts_store *store = s->srv->store;
    uint64_t thread_id;
    if (!thread_filter(s, q->request_id, q->thread_key, &thread_id))
        return;
    size_t limit = page_limit(q->limit);
    struct ts_msglist comments = TS_MSGLIST_INIT(Threadsync__Comment);
    struct ts_msglist threads = TS_MSGLIST_INIT(Threadsync__Thread);
    Threadsync__Comment *cv = ts_msglist_add_n(&comments, limit);
    size_t n = 0;
    int more = 0;
    if (cv && ts_store_pending(store, thread_id, q->after_id, limit, cv, &n, &more) == TS_OK) {
        comments.n = n;
        for (size_t i = 0; i < n; i++)
            pending_add_thread(store, &threads, cv[i].thread_id);
    } else {
        comments.failed = 1;
    }
    void **cp = ts_msglist_ptrs(&comments);
    void **tp = ts_msglist_ptrs(&threads);
    if (!cp || !tp) {
        ts__session_error(s, q->request_id, TS_E_UNAVAILABLE, NULL, "out of memory");
        goto out;
    }
    Threadsync__Result r = THREADSYNC__RESULT__INIT;
    Threadsync__PendingQueueResult pr = THREADSYNC__PENDING_QUEUE_RESULT__INIT;
    pr.comments = (Threadsync__Comment **)cp;
    pr.threads = (Threadsync__Thread **)tp;
    pr.n_threads = threads.n;
    pr.seq = ts_store_seq(store);
    r.request_id = q->request_id;
    r.body_case = THREADSYNC__RESULT__BODY_PENDING_QUEUE;
    r.pending_queue = &pr;
    /* Long bodies: fewer comments per answer (the rest are "more"); the
     * threads listed may then include one no longer needed, which is
     * harmless. */
    pr.n_comments = n;
    pr.more = more;
    while (pr.n_comments > 1 && !ts__session_result_fits(&r)) {
        pr.n_comments /= 2;
        pr.more = 1;
    }
    ts__session_result(s, &r);
out:
    ts_msglist_free(&comments);
    ts_msglist_free(&threads);
}

/* ---- AuditList ---- */

void ts_req_read_audit_list(struct ts_session *s, const Threadsync__Frame *f)
{
    const Threadsync__AuditList *q = f->audit_list;
    struct ts_store *store = s->srv->store;
    struct ts_store_audit_query sq = {
        .after_seq = q->after_seq,
        .before_seq = q->before_seq,
        .newest_first = q->newest_first,
        .comment_id = q->comment_id,
    };
    if (!thread_filter(s, q->request_id, q->thread_key, &sq.thread_id))
        return;
    size_t limit = page_limit(q->limit);
    struct ts_msglist entries = TS_MSGLIST_INIT(Threadsync__AuditEntry);
    Threadsync__AuditEntry *ev = ts_msglist_add_n(&entries, limit);
    size_t n = 0;
    int more = 0;
    if (ev && ts_store_audit_list(store, &sq, ev, limit, &n, &more) == TS_OK)
        entries.n = n;
    else
        entries.failed = 1;
    void **ep = ts_msglist_ptrs(&entries);
    if (!ep) {
        ts__session_error(s, q->request_id, TS_E_UNAVAILABLE, NULL, "out of memory");
        goto out;
    }
    Threadsync__Result r = THREADSYNC__RESULT__INIT;
    Threadsync__AuditListResult ar = THREADSYNC__AUDIT_LIST_RESULT__INIT;
    ar.entries = (Threadsync__AuditEntry **)ep;
    ar.n_entries = n;
    ar.more = more;
    ar.seq = ts_store_seq(store);
    ar.oldest_seq = ts_store_audit_oldest(store);
    r.request_id = q->request_id;
    r.body_case = THREADSYNC__RESULT__BODY_AUDIT_LIST;
    r.audit_list = &ar;
    /* Edits carry up to 16 KiB of old text: fewer per answer then. */
    while (ar.n_entries > 1 && !ts__session_result_fits(&r)) {
        ar.n_entries /= 2;
        ar.more = 1;
    }
    ts__session_result(s, &r);
out:
    ts_msglist_free(&entries);
}
