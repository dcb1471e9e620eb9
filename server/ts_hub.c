/*
 * ts_hub: fan-out of the event log to subscribers.
 *
 * Each subscriber is in exactly one state:
 *   READY      on hub->ready (or on the turn's work list): may have something
 *              to send and its sink was empty when last seen;
 *   PARKED     on hub->parked: caught up with the log, sink empty; woken (all
 *              at once, by splicing the list) by ts_hub_notify();
 *   WAIT_DRAIN on no list: its sink holds output; ts_hub_drained() makes it
 *              READY again;
 *   GONE       on no list: its sink failed; waits for ts_hub_unsubscribe.
 * A turn (the uv_check callback) serves each READY subscriber once, at most
 * turn_max of them when set (ts_hub_set_turn_max), so its cost is
 * O(subscribers behind and writable), never O(all subscribers); the rest
 * are first next turn.
 *
 * Waking the loop: a uv_check callback only runs when the loop iterates,
 * and an idle loop blocks in poll. ts_hub_notify() (and anything else that
 * makes a subscriber READY) starts a uv_idle handle, whose only effect is a
 * zero poll timeout, so the check runs in this very iteration; the turn
 * stops the idle handle once nobody is READY. uv_async would also work, but
 * costs an eventfd write per wake-up and notify is always called on the loop
 * thread. The check handle is unref'd: an idle hub does not keep the loop
 * alive, pending work (the idle handle) does.
 *
 * Freeing: ts_hub_unsubscribe() may be called from a sink's write callback,
 * for the subscriber being served or any other. The turn pops each
 * subscriber off its work list before serving it and holds no other
 * pointer, so unlinking another one is safe; the one being served is only
 * marked dead and freed by the turn once its write returns.
 */
#include "ts_hub.h"
#include "ts_view.h"

#include "ts_array.h"
#include "ts_assert.h"
#include "ts_err.h"
#include "ts_evlog.h"
#include "ts_frame.h"
#include "ts_lattrace.h"
#include "ts_log.h"
#include "ts_store.h"

#include <stdlib.h>
#include <string.h>

/* A snapshot chunk is closed once it reaches CHUNK_TARGET; one more record
 * (a comment: 16 KiB body, e-mail, name, fields) may push it past. */
#define CHUNK_TARGET (64u << 10)
#define CHUNK_MAX (CHUNK_TARGET + (20u << 10))
/* Entries a filtered subscriber may examine in one turn without a match,
 * so that skipping a long run of other threads' events cannot stall a turn. */
#define SCAN_MAX 65536

/* READY and PARKED subscribers are both LISTED: which list they are on is
 * all that differs, so waking every parked one is one splice. */
enum sub_state { LISTED, WAIT_DRAIN, GONE };

struct link {
    struct link *prev, *next;
};

struct filter {
    size_t n_keys;
    size_t n_ids;            /* resolved, sorted ascending in ids */
    size_t threads_seen;     /* store thread count at the last resolve */
    uint64_t *ids;           /* n_keys slots, n_ids used */
    unsigned char *resolved; /* per key */
    char **keys;
};

enum snap_stage { SNAP_BEGIN, SNAP_THREADS, SNAP_COMMENTS, SNAP_END };

struct snap {
    uint64_t seq; /* S: state as of this seq; records with id > S are left out */
    uint64_t thread_after;
    uint64_t comment_thread; /* thread whose comments are being sent, 0 = find next */
    uint64_t comment_after;
    int stage;
};

struct ts_hub_sub {
    struct link link; /* first: the struct is found from its link */
    struct ts_hub *hub;
    int (*write)(void *sink, const void *data, size_t len);
    size_t (*queued)(void *sink);
    void *sink;
    uint64_t pos;          /* next evlog position needed */
    uint64_t seq;          /* the receiver's cursor: last seq it was told */
    struct filter *filter; /* NULL: all threads */
    struct snap *snap;     /* non-NULL while a snapshot streams */
    uint8_t state;
    uint8_t full;
    uint8_t told_caught_up; /* the last frame sent said caught_up */
    uint8_t dead;           /* unsubscribed while being served */
};

struct obuf {
    uint8_t *p;
    size_t len, cap;
};

struct ts_hub {
    uv_loop_t *loop;
    struct ts_evlog *log;
    struct ts_store *store;
    uv_check_t check;
    uv_idle_t idle;
    struct link ready, parked, work;
    size_t n_subs;
    struct ts_hub_sub *current; /* being served */
    int closing;
    int handles_open;
    unsigned turn_max; /* subscribers served per turn; 0: all that are ready */
    void (*close_cb)(void *arg);
    void *close_arg;
    struct obuf buf; /* snapshot parts and filtered batches */
    /* The last unfiltered Events batch built this turn, per encoding
     * (public, full): subscribers at the same cursor (in the steady state,
     * all caught-up ones) get the same bytes, built once per turn. */
    struct shared {
        struct obuf buf;
        int valid;
        uint64_t pos, seq;         /* the cursor it was built for */
        uint64_t new_pos, new_seq; /* and the cursor after it */
        uint8_t caught_up;
        const uint8_t *out;
        size_t out_len;
    } shared[2];
    const uint8_t *out; /* the batch to write this serve */
    size_t out_len;
    /* One snapshot chunk's records (views into the store, redacted copies
     * for readers) and the pointer arrays protobuf-c wants. */
    Threadsync__Thread *tv, **tp;
    Threadsync__Comment *cv, **cp;
    size_t n_tv, n_cv, cap_tv, cap_cv;
};

/* ---- lists --------------------------------------------------------------- */

static void list_init(struct link *l)
{
    l->prev = l->next = l;
}

static int list_empty(const struct link *l)
{
    return l->next == l;
}

static void list_unlink(struct link *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}

/* Unlinks and returns the first node of a non-empty list. Rewriting the head
 * through head, not n->prev, lets clang's analyzer see the list move past a
 * node the caller then frees (it cannot know n->prev == head). */
static struct link *list_pop(struct link *head)
{
    struct link *n = head->next;
    head->next = n->next;
    n->next->prev = head;
    n->prev = n->next = n;
    return n;
}

static void list_push(struct link *head, struct link *n)
{
    n->prev = head->prev;
    n->next = head;
    head->prev->next = n;
    head->prev = n;
}

/* Moves every node of from to the end of to. */
static void list_splice(struct link *to, struct link *from)
{
    if (list_empty(from))
        return;
    from->next->prev = to->prev;
    to->prev->next = from->next;
    from->prev->next = to;
    to->prev = from->prev;
    list_init(from);
}

static void on_idle(uv_idle_t *h)
{
    (void)h; /* its being active is the point: poll does not block */
}

static void kick(struct ts_hub *hub)
{
    if (!hub->closing && !uv_is_active((uv_handle_t *)&hub->idle))
        uv_idle_start(&hub->idle, on_idle);
}

static void make_ready(struct ts_hub_sub *sub)
{
    TS_ASSERT(sub->state != GONE && list_empty(&sub->link)); /* new or WAIT_DRAIN: on no list */
    sub->state = LISTED;
    list_push(&sub->hub->ready, &sub->link);
    kick(sub->hub);
}

/* ---- output buffer --------------------------------------------------------- */

/* Room for n more bytes after b->len. */
static int buf_reserve(struct obuf *b, size_t n)
{
    if (b->len + n <= b->cap)
        return TS_OK;
    size_t cap = b->cap ? b->cap : (64u << 10);
    while (cap < b->len + n)
        cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p)
        return TS_E_NOMEM;
    b->p = p;
    b->cap = cap;
    return TS_OK;
}

static int buf_frame(struct ts_hub *hub, const Threadsync__Frame *f)
{
    size_t n = ts_frame_size(f);
    if (buf_reserve(&hub->buf, n) != TS_OK)
        return TS_E_NOMEM;
    hub->buf.len += ts_frame_pack(f, hub->buf.p + hub->buf.len);
    return TS_OK;
}

/* ---- filters ---------------------------------------------------------------- */

static void filter_free(struct filter *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->n_keys; i++)
        free(f->keys[i]);
    free(f->keys);
    free(f->ids);
    free(f->resolved);
    free(f);
}

static struct filter *filter_new(const struct ts_hub_filter *hf)
{
    struct filter *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    size_t n = hf->n_thread_keys;
    f->keys = calloc(n ? n : 1, sizeof(*f->keys));
    f->ids = calloc(n ? n : 1, sizeof(*f->ids));
    f->resolved = calloc(n ? n : 1, 1);
    if (!f->keys || !f->ids || !f->resolved) {
        filter_free(f);
        return NULL;
    }
    f->threads_seen = SIZE_MAX;
    for (size_t i = 0; i < n; i++, f->n_keys++) {
        f->keys[i] = strdup(hf->thread_keys[i] ? hf->thread_keys[i] : "");
        if (!f->keys[i]) {
            filter_free(f);
            return NULL;
        }
    }
    return f;
}

/* Maps keys to thread ids. Threads are never removed and ids never change,
 * so a resolved key stays resolved; the others are retried only when the
 * store gained threads since the last try. */
static void filter_resolve(struct filter *f, const struct ts_store *store)
{
    size_t count = ts_store_thread_count(store);
    if (f->n_ids == f->n_keys || count == f->threads_seen)
        return;
    f->threads_seen = count;
    for (size_t i = 0; i < f->n_keys; i++) {
        Threadsync__Thread t;
        if (f->resolved[i] || ts_store_thread_by_key(store, f->keys[i], &t) != TS_OK)
            continue;
        f->resolved[i] = 1;
        size_t j = f->n_ids++;
        while (j > 0 && f->ids[j - 1] > t.id) {
            f->ids[j] = f->ids[j - 1];
            j--;
        }
        f->ids[j] = t.id;
    }
}

static int filter_match(const struct filter *f, uint64_t thread_id)
{
    if (!f)
        return 1;
    size_t lo = ts_array_lower_bound_u64(f->ids, f->n_ids, thread_id);
    return lo < f->n_ids && f->ids[lo] == thread_id;
}

/* Smallest matching thread id > after, 0 when none. */
static int first_thread_cb(void *arg, const Threadsync__Thread *t)
{
    *(uint64_t *)arg = t->id;
    return 1;
}

static uint64_t next_thread(const struct ts_hub *hub, const struct filter *f, uint64_t after)
{
    uint64_t id = 0;
    if (!f) {
        ts_store_foreach_thread(hub->store, after, first_thread_cb, &id);
        return id;
    }
    for (size_t i = 0; i < f->n_ids; i++)
        if (f->ids[i] > after)
            return f->ids[i];
    return 0;
}

/* ---- events ------------------------------------------------------------------ */

/* Builds one Events frame of everything the subscriber is behind on, up to
 * the batch limit, into b. Entries at or below the receiver's cursor (a
 * since_seq ahead of this node's log) are passed over. */
static int build_events(struct ts_hub *hub, struct ts_hub_sub *sub, struct obuf *b)
{
    const size_t head_room = TS_FRAME_EVENTS_HEAD_MAX;
    size_t budget = TS_HUB_BATCH_MAX - TS_FRAME_EVENTS_HEAD_MAX - TS_FRAME_EVENTS_TAIL_MAX;
    uint64_t end = ts_evlog_end_pos(hub->log);
    if (sub->filter)
        filter_resolve(sub->filter, hub->store);
    b->len = 0;
    if (buf_reserve(b, head_room + budget + TS_FRAME_EVENTS_TAIL_MAX) != TS_OK)
        return TS_E_NOMEM;
    size_t elems = 0, scanned = 0;
    int included = 0;
    uint64_t last_seq = sub->seq;
    while (sub->pos < end && scanned < SCAN_MAX) {
        struct ts_evlog_entry e;
        if (ts_evlog_get(hub->log, sub->pos, &e) != TS_OK)
            break;
        if (e.seq > sub->seq && filter_match(sub->filter, e.thread_id)) {
            const uint8_t *p = sub->full ? e.full : e.pub;
            size_t len = sub->full ? e.full_len : e.pub_len;
            if (elems + len > budget) {
                if (included)
                    break;
                /* One element alone above the budget cannot happen with the
                 * protocol's limits; send it alone rather than stall. */
                if (buf_reserve(b, head_room + len + TS_FRAME_EVENTS_TAIL_MAX) != TS_OK)
                    return TS_E_NOMEM;
            }
            memcpy(b->p + head_room + elems, p, len);
            elems += len;
            included++;
        } else {
            scanned++;
        }
        if (e.seq > last_seq)
            last_seq = e.seq;
        sub->pos++;
    }
    int caught_up = sub->pos == end;
    if (!included && !(caught_up && (last_seq != sub->seq || !sub->told_caught_up)))
        return TS_OK;
    uint8_t head[TS_FRAME_EVENTS_HEAD_MAX], tail[TS_FRAME_EVENTS_TAIL_MAX];
    size_t head_len, tail_len;
    ts_frame_events_wrap(elems, last_seq, caught_up, head, &head_len, tail, &tail_len);
    /* The head goes right before the elements, so the frame is contiguous
     * from p + head_room - head_len. */
    memcpy(b->p + head_room - head_len, head, head_len);
    memcpy(b->p + head_room + elems, tail, tail_len);
    hub->out = b->p + head_room - head_len;
    hub->out_len = head_len + elems + tail_len;
    sub->seq = last_seq;
    sub->told_caught_up = (uint8_t)caught_up;
    return TS_OK;
}

/* Unfiltered subscribers share batches: the bytes depend only on the
 * cursor (pos, seq) and the encoding, and the log does not change during a
 * turn. */
static int serve_events(struct ts_hub *hub, struct ts_hub_sub *sub)
{
    if (sub->filter)
        return build_events(hub, sub, &hub->buf);
    struct shared *sh = &hub->shared[sub->full];
    if (sh->valid && sh->pos == sub->pos && sh->seq == sub->seq) {
        hub->out = sh->out;
        hub->out_len = sh->out_len;
        sub->pos = sh->new_pos;
        sub->seq = sh->new_seq;
        sub->told_caught_up = sh->caught_up;
        return TS_OK;
    }
    uint64_t pos = sub->pos, seq = sub->seq;
    sh->valid = 0;
    int rc = build_events(hub, sub, &sh->buf);
    /* Only a batch with content is shared: an empty "caught up" frame also
     * depends on what this subscriber was told before. */
    if (rc == TS_OK && hub->out_len && sub->pos != pos) {
        sh->valid = 1;
        sh->pos = pos;
        sh->seq = seq;
        sh->new_pos = sub->pos;
        sh->new_seq = sub->seq;
        sh->caught_up = sub->told_caught_up;
        sh->out = hub->out;
        sh->out_len = hub->out_len;
    }
    return rc;
}

/* ---- snapshots ----------------------------------------------------------------- */

struct collect {
    struct ts_hub *hub;
    struct ts_hub_sub *sub;
    size_t size;   /* packed bytes of the chunk so far */
    uint64_t last; /* id of the last record taken */
    int nomem;
};

static int grow(void **arr, size_t *cap, size_t elem)
{
    size_t n = *cap ? *cap * 2 : 256;
    void *a = realloc(*arr, n * elem);
    if (!a)
        return TS_E_NOMEM;
    *arr = a;
    *cap = n;
    return TS_OK;
}

/* Field tag and length prefix of a record inside the chunk. */
static size_t record_size(const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    size_t v = 1;
    for (size_t x = n; x >= 0x80; x >>= 7)
        v++;
    return 1 + v + n;
}

static int collect_thread(void *arg, const Threadsync__Thread *t)
{
    struct collect *c = arg;
    struct ts_hub *hub = c->hub;
    if (t->id > c->sub->snap->seq || c->size >= CHUNK_TARGET)
        return 1;
    if (hub->n_tv == hub->cap_tv &&
        grow((void **)&hub->tv, &hub->cap_tv, sizeof(*hub->tv)) != TS_OK)
        return c->nomem = 1;
    hub->tv[hub->n_tv++] = *t;
    if (!c->sub->full)
        ts_view_public_thread(&hub->tv[hub->n_tv - 1]);
    c->size += record_size(&t->base);
    c->last = t->id;
    return 0;
}

static int collect_comment(void *arg, const Threadsync__Comment *cm)
{
    struct collect *c = arg;
    struct ts_hub *hub = c->hub;
    if (cm->id > c->sub->snap->seq || c->size >= CHUNK_TARGET)
        return 1;
    if (hub->n_cv == hub->cap_cv &&
        grow((void **)&hub->cv, &hub->cap_cv, sizeof(*hub->cv)) != TS_OK)
        return c->nomem = 1;
    Threadsync__Comment *v = &hub->cv[hub->n_cv++];
    *v = *cm;
    if (!c->sub->full)
        ts_view_public_comment(v);
    c->size += record_size(&v->base);
    c->last = cm->id;
    return 0;
}

/* Threads are all sent: walk them again, for their comments. */
static void comments_stage(struct snap *sn)
{
    sn->stage = SNAP_COMMENTS;
    sn->thread_after = 0;
    sn->comment_thread = 0;
}

/* Fills hub->tv / hub->cv with the next records of the snapshot, about
 * CHUNK_TARGET bytes, advancing the cursor. */
static int collect_chunk(struct ts_hub *hub, struct ts_hub_sub *sub)
{
    struct snap *sn = sub->snap;
    struct collect c = {hub, sub, 0, 0, 0};
    hub->n_tv = hub->n_cv = 0;
    while (sn->stage == SNAP_THREADS && c.size < CHUNK_TARGET) {
        if (!sub->filter) {
            c.last = sn->thread_after;
            int stopped = ts_store_foreach_thread(hub->store, sn->thread_after, collect_thread, &c);
            if (c.nomem)
                return TS_E_NOMEM;
            sn->thread_after = c.last;
            if (!stopped || c.size < CHUNK_TARGET)
                comments_stage(sn);
        } else {
            uint64_t id = next_thread(hub, sub->filter, sn->thread_after);
            Threadsync__Thread t;
            if (!id || id > sn->seq) {
                comments_stage(sn);
            } else {
                sn->thread_after = id;
                if (ts_store_thread_by_id(hub->store, id, &t) == TS_OK) {
                    collect_thread(&c, &t);
                    if (c.nomem)
                        return TS_E_NOMEM;
                }
            }
        }
    }
    while (sn->stage == SNAP_COMMENTS && c.size < CHUNK_TARGET) {
        if (!sn->comment_thread) {
            uint64_t id = next_thread(hub, sub->filter, sn->thread_after);
            if (!id || id > sn->seq) {
                sn->stage = SNAP_END;
                break;
            }
            sn->comment_thread = id;
            sn->comment_after = 0;
        }
        c.last = sn->comment_after;
        int stopped = ts_store_foreach_comment(hub->store, sn->comment_thread, sn->comment_after,
                                               collect_comment, &c);
        if (c.nomem)
            return TS_E_NOMEM;
        sn->comment_after = c.last;
        if (!stopped || c.size < CHUNK_TARGET) {
            /* This thread is done (the only other stop is an id past S, and
             * ids only grow). */
            sn->thread_after = sn->comment_thread;
            sn->comment_thread = 0;
        }
    }
    return TS_OK;
}

static int count_comment(void *arg, const Threadsync__Comment *c)
{
    (void)c;
    (*(uint64_t *)arg)++;
    return 0;
}

static int snapshot_begin(struct ts_hub *hub, struct ts_hub_sub *sub)
{
    struct snap *sn = sub->snap;
    Threadsync__SnapshotBegin b = THREADSYNC__SNAPSHOT_BEGIN__INIT;
    memset(sn, 0, sizeof(*sn));
    sn->seq = ts_store_seq(hub->store);
    sn->stage = SNAP_THREADS;
    b.seq = sn->seq;
    if (!sub->filter) {
        b.threads = ts_store_thread_count(hub->store);
        b.comments = ts_store_comment_count(hub->store);
    } else {
        filter_resolve(sub->filter, hub->store);
        for (size_t i = 0; i < sub->filter->n_ids; i++) {
            b.threads++;
            ts_store_foreach_comment(hub->store, sub->filter->ids[i], 0, count_comment,
                                     &b.comments);
        }
    }
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    f.msg_case = THREADSYNC__FRAME__MSG_SNAPSHOT_BEGIN;
    f.snapshot_begin = &b;
    return buf_frame(hub, &f);
}

/* Streams the next part of the snapshot into hub->buf: the Begin frame on
 * the first turn, then chunks while they surely fit in the batch, and the
 * End frame. S (the Begin's seq) is the store's last index when the
 * snapshot starts, and records with a larger id are left for the events
 * that follow: the counts in Begin are then exact. */
static int build_snapshot(struct ts_hub *hub, struct ts_hub_sub *sub)
{
    struct snap *sn = sub->snap;
    if (sn->stage == SNAP_BEGIN && snapshot_begin(hub, sub) != TS_OK)
        return TS_E_NOMEM;
    while (sn->stage != SNAP_END && hub->buf.len + CHUNK_MAX <= TS_HUB_BATCH_MAX) {
        if (collect_chunk(hub, sub) != TS_OK)
            return TS_E_NOMEM;
        if (!hub->n_tv && !hub->n_cv)
            continue;
        Threadsync__SnapshotChunk ch = THREADSYNC__SNAPSHOT_CHUNK__INIT;
        Threadsync__Thread **tp = malloc((hub->n_tv + 1) * sizeof(*tp));
        Threadsync__Comment **cp = malloc((hub->n_cv + 1) * sizeof(*cp));
        if (!tp || !cp) {
            free(tp);
            free(cp);
            return TS_E_NOMEM;
        }
        for (size_t i = 0; i < hub->n_tv; i++)
            tp[i] = &hub->tv[i];
        for (size_t i = 0; i < hub->n_cv; i++)
            cp[i] = &hub->cv[i];
        ch.n_threads = hub->n_tv;
        ch.threads = tp;
        ch.n_comments = hub->n_cv;
        ch.comments = cp;
        Threadsync__Frame f = THREADSYNC__FRAME__INIT;
        f.msg_case = THREADSYNC__FRAME__MSG_SNAPSHOT_CHUNK;
        f.snapshot_chunk = &ch;
        int rc = buf_frame(hub, &f);
        free(tp);
        free(cp);
        if (rc != TS_OK)
            return rc;
    }
    if (sn->stage == SNAP_END && hub->buf.len + 32 <= TS_HUB_BATCH_MAX) {
        Threadsync__SnapshotEnd e = THREADSYNC__SNAPSHOT_END__INIT;
        e.seq = sn->seq;
        Threadsync__Frame f = THREADSYNC__FRAME__INIT;
        f.msg_case = THREADSYNC__FRAME__MSG_SNAPSHOT_END;
        f.snapshot_end = &e;
        if (buf_frame(hub, &f) != TS_OK)
            return TS_E_NOMEM;
        sub->seq = sn->seq;
        sub->told_caught_up = 0;
        free(sub->snap);
        sub->snap = NULL;
        /* Events after S are in the log unless eviction passed S while the
         * snapshot streamed: then the next turn starts another snapshot. */
        if (sub->seq >= ts_evlog_horizon(hub->log))
            sub->pos = ts_evlog_pos_after(hub->log, sub->seq);
        else
            sub->pos = 0;
    }
    hub->out = hub->buf.p;
    hub->out_len = hub->buf.len;
    return TS_OK;
}

/* ---- the turn ---------------------------------------------------------------------- */

static int start_snapshot(struct ts_hub_sub *sub)
{
    sub->snap = calloc(1, sizeof(*sub->snap));
    return sub->snap ? TS_OK : TS_E_NOMEM;
}

/* Serves one READY subscriber and files it under its next state. */
static void serve(struct ts_hub *hub, struct ts_hub_sub *sub)
{
    TS_ASSERT(sub->state == LISTED && list_empty(&sub->link) && !sub->dead); /* popped READY */
    if (sub->queued(sub->sink) > 0) {
        sub->state = WAIT_DRAIN;
        return;
    }
    hub->buf.len = 0;
    hub->out_len = 0;
    uint64_t seq_before = sub->seq;
    int rc = TS_OK;
    if (!sub->snap && sub->pos < ts_evlog_first_pos(hub->log))
        rc = start_snapshot(sub);
    if (rc == TS_OK)
        rc = sub->snap ? build_snapshot(hub, sub) : serve_events(hub, sub);
    if (rc != TS_OK) {
        /* Retried at the next notify rather than spinning the loop. */
        TS_WARN("event=hub_nomem action=retry_on_notify");
        sub->state = LISTED;
        list_push(&hub->parked, &sub->link);
        return;
    }
    if (hub->out_len) {
        int wrc = sub->write(sub->sink, hub->out, hub->out_len);
        if (sub->dead)
            return;
        if (wrc) {
            sub->state = GONE;
            return;
        }
        if (ts_lattrace_on)
            ts_lattrace_pushed(seq_before, sub->seq);
        if (sub->queued(sub->sink) > 0) {
            sub->state = WAIT_DRAIN;
            return;
        }
    }
    /* Parked only when there is nothing to send and it was told so: right
     * after a snapshot's End it still needs the events after S, or at least
     * an Events frame saying it is caught up, and no notify may come. */
    if (sub->snap || sub->pos < ts_evlog_end_pos(hub->log) || !sub->told_caught_up) {
        sub->state = LISTED;
        list_push(&hub->ready, &sub->link);
    } else {
        sub->state = LISTED;
        list_push(&hub->parked, &sub->link);
    }
}

static void sub_free(struct ts_hub_sub *sub)
{
    filter_free(sub->filter);
    free(sub->snap);
    free(sub);
}

static void on_check(uv_check_t *h)
{
    struct ts_hub *hub = h->data;
    TS_ASSERT(!hub->current && list_empty(&hub->work));
    hub->shared[0].valid = hub->shared[1].valid = 0; /* the log moved on */
    list_splice(&hub->work, &hub->ready);
    for (unsigned n = 0; (!hub->turn_max || n < hub->turn_max) && !list_empty(&hub->work); n++) {
        struct ts_hub_sub *sub = (struct ts_hub_sub *)list_pop(&hub->work);
        hub->current = sub;
        serve(hub, sub);
        hub->current = NULL;
        TS_ASSERT(sub->dead || (sub->state == LISTED) == !list_empty(&sub->link));
        if (sub->dead)
            sub_free(sub);
    }
    /* Those left over go first next turn, then those made ready since. */
    list_splice(&hub->work, &hub->ready);
    list_splice(&hub->ready, &hub->work);
    if (list_empty(&hub->ready))
        uv_idle_stop(&hub->idle);
    /* The batch buffers are kept for the next turn: three of about
     * TS_HUB_BATCH_MAX each, whatever the number of subscribers. */
}

/* ---- public API ---------------------------------------------------------------------- */

int ts_hub_new(uv_loop_t *loop, struct ts_evlog *log, struct ts_store *store, struct ts_hub **out)
{
    struct ts_hub *hub = calloc(1, sizeof(*hub));
    if (!hub)
        return TS_E_NOMEM;
    hub->loop = loop;
    hub->log = log;
    hub->store = store;
    list_init(&hub->ready);
    list_init(&hub->parked);
    list_init(&hub->work);
    uv_check_init(loop, &hub->check);
    uv_idle_init(loop, &hub->idle);
    hub->check.data = hub;
    hub->idle.data = hub;
    hub->handles_open = 2;
    uv_check_start(&hub->check, on_check);
    uv_unref((uv_handle_t *)&hub->check);
    *out = hub;
    return TS_OK;
}

void ts_hub_set_turn_max(struct ts_hub *hub, unsigned n)
{
    hub->turn_max = n;
}

static void on_handle_closed(uv_handle_t *h)
{
    struct ts_hub *hub = h->data;
    if (--hub->handles_open)
        return;
    if (hub->close_cb)
        hub->close_cb(hub->close_arg);
    free(hub->buf.p);
    free(hub->shared[0].buf.p);
    free(hub->shared[1].buf.p);
    free(hub->tv);
    free(hub->cv);
    free(hub);
}

void ts_hub_close(struct ts_hub *hub, void (*cb)(void *arg), void *arg)
{
    hub->closing = 1;
    hub->close_cb = cb;
    hub->close_arg = arg;
    uv_check_stop(&hub->check);
    uv_idle_stop(&hub->idle);
    uv_close((uv_handle_t *)&hub->check, on_handle_closed);
    uv_close((uv_handle_t *)&hub->idle, on_handle_closed);
}

int ts_hub_subscribe(struct ts_hub *hub, const struct ts_hub_filter *filter, int full,
                     uint64_t since_seq, const struct ts_hub_sink_ops *ops, void *sink,
                     struct ts_hub_sub **out, uint64_t *from_seq, int *snapshot)
{
    struct ts_hub_sub *sub = calloc(1, sizeof(*sub));
    if (!sub)
        return TS_E_NOMEM;
    if (!filter->all) {
        sub->filter = filter_new(filter);
        if (!sub->filter) {
            free(sub);
            return TS_E_NOMEM;
        }
    }
    list_init(&sub->link);
    sub->hub = hub;
    sub->write = ops->write;
    sub->queued = ops->queued;
    sub->sink = sink;
    sub->full = full != 0;
    if (since_seq < ts_evlog_horizon(hub->log)) {
        if (start_snapshot(sub) != TS_OK) {
            sub_free(sub);
            return TS_E_NOMEM;
        }
        /* S is fixed when the snapshot starts (next turn), at or past this. */
        *from_seq = ts_store_seq(hub->store);
        *snapshot = 1;
    } else {
        sub->pos = ts_evlog_pos_after(hub->log, since_seq);
        sub->seq = since_seq;
        *from_seq = since_seq;
        *snapshot = 0;
    }
    hub->n_subs++;
    make_ready(sub);
    *out = sub;
    return TS_OK;
}

void ts_hub_unsubscribe(struct ts_hub_sub *sub)
{
    struct ts_hub *hub = sub->hub;
    TS_ASSERT(!sub->dead && hub->n_subs > 0);
    list_unlink(&sub->link);
    hub->n_subs--;
    if (hub->current == sub) {
        sub->dead = 1; /* the turn frees it once its write returns */
        return;
    }
    sub_free(sub);
}

void ts_hub_notify(struct ts_hub *hub)
{
    if (list_empty(&hub->parked))
        return;
    list_splice(&hub->ready, &hub->parked);
    kick(hub);
}

void ts_hub_drained(struct ts_hub_sub *sub)
{
    if (sub->state == WAIT_DRAIN && !sub->dead)
        make_ready(sub);
}

uint64_t ts_hub_sub_seq(const struct ts_hub_sub *sub)
{
    return sub->seq;
}

size_t ts_hub_subscriber_count(const struct ts_hub *hub)
{
    return hub->n_subs;
}

size_t ts_hub_sub_size(void)
{
    return sizeof(struct ts_hub_sub);
}
