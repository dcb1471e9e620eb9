/*
 * ts_hub: fan-out on a real libuv loop to in-memory sinks that decode what
 * they receive (ts_frame_decoder) and keep a mirror of the state.
 *
 * Covers: every event exactly once and in order, nothing written before the
 * loop runs; a busy sink gets nothing until drained and then one coalesced
 * batch; key filters, including a thread created after subscribing;
 * since_seq ahead of the log; snapshots (since_seq below the horizon, a
 * cursor overtaken by eviction, and after a store restore) that end in the
 * store's exact state; readers never see an e-mail, nor the body of a
 * hidden comment; unsubscribing from inside a write callback; the loop
 * closing cleanly. A last case prints a fan-out timing.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ts_check_main.h"
#include "threadsync_state.pb-c.h"
#include "ts_err.h"
#include "ts_evlog.h"
#include "ts_frame.h"
#include "ts_hub.h"
#include "ts_store.h"

#define MAX_IDS 8192

struct mirror_comment {
    uint64_t version, thread_id;
    char body[64]; /* a prefix */
    size_t body_len;
    int present;
};

struct sink {
    struct ts_frame_decoder *dec;
    int busy_after_write; /* queued() > 0 after each write, until drained */
    size_t queued;
    int writes;
    int frames;
    /* events */
    uint64_t seqs[MAX_IDS];
    size_t n_seqs;
    uint64_t last_seq;
    int caught_up;
    uint64_t thread_of_event[MAX_IDS];
    /* snapshots */
    int begins, chunks, ends;
    uint64_t begin_seq, end_seq, begin_threads, begin_comments;
    uint64_t snap_threads, snap_comments;
    int order_violations; /* a comment before its thread, or events mid-snapshot */
    int in_snapshot;
    /* mirror, by id */
    struct mirror_comment comments[MAX_IDS];
    uint64_t thread_version[MAX_IDS];
    int saw_email, saw_hidden_body;
    /* unsubscribe from inside write */
    struct ts_hub_sub *self;
    struct ts_hub_sub *victim;
    int unsub_self;
};

static void mirror_comment(struct sink *s, const Threadsync__Comment *c)
{
    ck_assert_uint_lt(c->id, MAX_IDS);
    if (c->author_email && c->author_email[0])
        s->saw_email = 1;
    if (c->status != THREADSYNC__STATUS__VISIBLE && c->body && c->body[0])
        s->saw_hidden_body = 1;
    if (!s->thread_version[c->thread_id])
        s->order_violations++;
    struct mirror_comment *m = &s->comments[c->id];
    if (m->present && m->version > c->version)
        return;
    m->present = 1;
    m->version = c->version;
    m->thread_id = c->thread_id;
    snprintf(m->body, sizeof(m->body), "%s", c->body ? c->body : "");
    m->body_len = c->body ? strlen(c->body) : 0;
}

static void mirror_thread(struct sink *s, const Threadsync__Thread *t)
{
    ck_assert_uint_lt(t->id, MAX_IDS);
    if (t->version >= s->thread_version[t->id])
        s->thread_version[t->id] = t->version ? t->version : 1;
}

static int sink_write(void *arg, const void *data, size_t len)
{
    struct sink *s = arg;
    s->writes++;
    ck_assert_int_eq(s->queued, 0); /* the hub writes only to a drained sink */
    ck_assert_int_eq(ts_frame_decoder_feed(s->dec, data, len), TS_OK);
    Threadsync__Frame *f;
    const char *field;
    int rc;
    while ((rc = ts_frame_decoder_next(s->dec, &f, &field)) == TS_OK) {
        s->frames++;
        switch (f->msg_case) {
        case THREADSYNC__FRAME__MSG_EVENTS:
            if (s->in_snapshot)
                s->order_violations++;
            for (size_t i = 0; i < f->events->n_events; i++) {
                Threadsync__Event *ev = f->events->events[i];
                ck_assert_uint_lt(s->n_seqs, MAX_IDS);
                s->thread_of_event[s->n_seqs] = ev->thread->id;
                s->seqs[s->n_seqs++] = ev->seq;
                mirror_thread(s, ev->thread);
                if (ev->comment)
                    mirror_comment(s, ev->comment);
                ck_assert_uint_le(ev->seq, f->events->last_seq);
            }
            ck_assert_uint_ge(f->events->last_seq, s->last_seq);
            s->last_seq = f->events->last_seq;
            s->caught_up = f->events->caught_up;
            break;
        case THREADSYNC__FRAME__MSG_SNAPSHOT_BEGIN:
            s->begins++;
            s->in_snapshot = 1;
            s->begin_seq = f->snapshot_begin->seq;
            s->begin_threads = f->snapshot_begin->threads;
            s->begin_comments = f->snapshot_begin->comments;
            s->snap_threads = s->snap_comments = 0;
            break;
        case THREADSYNC__FRAME__MSG_SNAPSHOT_CHUNK:
            s->chunks++;
            ck_assert_uint_le(len, TS_HUB_BATCH_MAX);
            for (size_t i = 0; i < f->snapshot_chunk->n_threads; i++) {
                mirror_thread(s, f->snapshot_chunk->threads[i]);
                s->snap_threads++;
            }
            for (size_t i = 0; i < f->snapshot_chunk->n_comments; i++) {
                mirror_comment(s, f->snapshot_chunk->comments[i]);
                s->snap_comments++;
            }
            break;
        case THREADSYNC__FRAME__MSG_SNAPSHOT_END:
            s->ends++;
            s->in_snapshot = 0;
            s->end_seq = f->snapshot_end->seq;
            ck_assert_uint_eq(s->end_seq, s->begin_seq);
            s->last_seq = s->end_seq;
            break;
        default:
            ck_abort_msg("unexpected frame %d", f->msg_case);
        }
        ts_frame_free(f);
    }
    ck_assert_int_eq(rc, TS_E_AGAIN);
    ck_assert_uint_eq(ts_frame_decoder_pending(s->dec), 0); /* whole frames only */
    if (s->busy_after_write)
        s->queued = len;
    if (s->victim) {
        ts_hub_unsubscribe(s->victim);
        s->victim = NULL;
    }
    if (s->unsub_self && s->self) {
        ts_hub_unsubscribe(s->self);
        s->self = NULL;
    }
    return 0;
}

static size_t sink_queued(void *arg)
{
    return ((struct sink *)arg)->queued;
}

static const struct ts_hub_sink_ops sink_ops = {sink_write, sink_queued};

static struct sink *sink_new(void)
{
    struct sink *s = calloc(1, sizeof(*s));
    s->dec = ts_frame_decoder_new(TS_FRAME_MAX_LIMIT);
    return s;
}

static void sink_free(struct sink *s)
{
    ts_frame_decoder_free(s->dec);
    free(s);
}

struct fx {
    uv_loop_t loop;
    struct ts_evlog *log;
    struct ts_store *store;
    struct ts_hub *hub;
    int closed;
};

static void fx_init(struct fx *f, size_t max_events)
{
    memset(f, 0, sizeof(*f));
    ck_assert_int_eq(uv_loop_init(&f->loop), 0);
    struct ts_evlog_config cfg = {.max_events = max_events};
    ck_assert_int_eq(ts_evlog_new(&cfg, &f->log), TS_OK);
    ck_assert_int_eq(ts_store_new(f->log, &f->store), TS_OK);
    ck_assert_int_eq(ts_hub_new(&f->loop, f->log, f->store, &f->hub), TS_OK);
}

static void on_closed(void *arg)
{
    ((struct fx *)arg)->closed++;
}

/* Every subscriber must be gone; the loop must then close with nothing
 * left on it. */
static void fx_close(struct fx *f)
{
    ck_assert_uint_eq(ts_hub_subscriber_count(f->hub), 0);
    ts_hub_close(f->hub, on_closed, f);
    ck_assert_int_eq(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(f->closed, 1);
    ck_assert_int_eq(uv_loop_close(&f->loop), 0);
    ts_store_free(f->store);
    ts_evlog_free(f->log);
}

static uint64_t next_index = 1;

static struct ts_store_result post(struct fx *f, const char *thread, uint64_t parent,
                                   const char *body)
{
    char ikey[32];
    uint64_t index = next_index++;
    snprintf(ikey, sizeof(ikey), "k%llu", (unsigned long long)index);
    Threadsync__Post p = THREADSYNC__POST__INIT;
    p.idempotency_key = ikey;
    p.thread_key = (char *)thread;
    p.parent_id = parent;
    p.author_name = "Ann";
    p.author_email = "ann@example.org";
    p.body = (char *)body;
    uint8_t *buf;
    size_t len;
    ck_assert_int_eq(ts_store_encode_post(&p, 1000 + (int64_t)index, &buf, &len), TS_OK);
    struct ts_store_result res;
    ck_assert_int_eq(ts_store_apply(f->store, index, buf, len, &res), TS_OK);
    free(buf);
    ck_assert_int_eq(res.status, TS_OK);
    return res;
}

static struct ts_hub_sub *subscribe(struct fx *f, struct sink *s, int full, uint64_t since,
                                    const char **keys, size_t n_keys, uint64_t *from, int *snapshot)
{
    struct ts_hub_filter flt = {keys == NULL, keys, n_keys};
    struct ts_hub_sub *sub;
    uint64_t from_seq;
    int snap;
    ck_assert_int_eq(
        ts_hub_subscribe(f->hub, &flt, full, since, &sink_ops, s, &sub, &from_seq, &snap), TS_OK);
    if (from)
        *from = from_seq;
    if (snapshot)
        *snapshot = snap;
    s->self = sub;
    return sub;
}

/* The sink's mirror holds exactly the store's comments and versions. */
struct cmp {
    struct sink *s;
    struct ts_store *store;
    size_t n;
};

static int cmp_comment(void *arg, const Threadsync__Comment *c)
{
    struct cmp *x = arg;
    struct mirror_comment *m = &x->s->comments[c->id];
    ck_assert_msg(m->present, "comment %llu missing", (unsigned long long)c->id);
    ck_assert_uint_eq(m->version, c->version);
    ck_assert_uint_eq(m->thread_id, c->thread_id);
    const char *want = c->status == THREADSYNC__STATUS__VISIBLE ? c->body : "";
    ck_assert_uint_eq(m->body_len, strlen(want));
    ck_assert_int_eq(strncmp(m->body, want, sizeof(m->body) - 1), 0);
    x->n++;
    return 0;
}

static int cmp_thread(void *arg, const Threadsync__Thread *t)
{
    struct cmp *x = arg;
    ck_assert_uint_eq(x->s->thread_version[t->id], t->version ? t->version : 1);
    return ts_store_foreach_comment(x->store, t->id, 0, cmp_comment, x);
}

static void assert_mirror_equals_store(struct fx *f, struct sink *s)
{
    struct cmp x = {s, f->store, 0};
    ts_store_foreach_thread(f->store, 0, cmp_thread, &x);
    ck_assert_uint_eq(x.n, ts_store_comment_count(f->store));
    size_t present = 0;
    for (size_t i = 0; i < MAX_IDS; i++)
        present += s->comments[i].present;
    ck_assert_uint_eq(present, ts_store_comment_count(f->store));
}

START_TEST(test_every_event_once_in_order)
{
    struct fx f;
    fx_init(&f, 0);
    struct sink *s[3];
    struct ts_hub_sub *sub[3];
    for (int i = 0; i < 3; i++) {
        s[i] = sink_new();
        uint64_t from;
        int snap;
        sub[i] = subscribe(&f, s[i], i == 0, 0, NULL, 0, &from, &snap);
        ck_assert_uint_eq(from, 0);
        ck_assert_int_eq(snap, 0);
    }
    ck_assert_uint_eq(ts_hub_subscriber_count(f.hub), 3);
    for (int round = 0; round < 20; round++) {
        int before = s[0]->writes;
        for (int i = 0; i < 1 + round * 7; i++)
            post(&f, round % 2 ? "t/odd" : "t/even", 0, "hello world");
        ts_hub_notify(f.hub);
        /* Nothing is written from inside notify: only when the loop runs. */
        ck_assert_int_eq(s[0]->writes, before);
        ck_assert_int_eq(uv_run(&f.loop, UV_RUN_DEFAULT), 0);
        ck_assert_int_gt(s[0]->writes, before);
    }
    uint64_t last = ts_store_last_index(f.store);
    for (int i = 0; i < 3; i++) {
        ck_assert_uint_eq(s[i]->n_seqs, last);
        for (size_t j = 0; j < s[i]->n_seqs; j++)
            ck_assert_uint_eq(s[i]->seqs[j], j + 1);
        ck_assert_uint_eq(s[i]->last_seq, last);
        ck_assert_int_eq(s[i]->caught_up, 1);
        ck_assert_uint_eq(ts_hub_sub_seq(sub[i]), last);
        ck_assert_int_eq(s[i]->begins, 0);
        assert_mirror_equals_store(&f, s[i]);
        ts_hub_unsubscribe(sub[i]);
    }
    ck_assert_int_eq(s[0]->saw_email, 1); /* the full view */
    ck_assert_int_eq(s[1]->saw_email, 0);
    ck_assert_int_eq(s[2]->saw_email, 0);
    fx_close(&f);
    for (int i = 0; i < 3; i++)
        sink_free(s[i]);
}
END_TEST

START_TEST(test_busy_sink_gets_one_batch)
{
    struct fx f;
    fx_init(&f, 0);
    struct sink *s = sink_new();
    s->queued = 100; /* busy from the start */
    struct ts_hub_sub *sub = subscribe(&f, s, 0, 0, NULL, 0, NULL, NULL);
    for (int i = 0; i < 50; i++) {
        post(&f, "t/a", 0, "x");
        ts_hub_notify(f.hub);
        uv_run(&f.loop, UV_RUN_NOWAIT);
    }
    ck_assert_int_eq(uv_run(&f.loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(s->writes, 0);

    s->queued = 0;
    s->busy_after_write = 1;
    ts_hub_drained(sub);
    ck_assert_int_eq(uv_run(&f.loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(s->writes, 1);
    ck_assert_int_eq(s->frames, 1);
    ck_assert_uint_eq(s->n_seqs, 50);
    ck_assert_int_eq(s->caught_up, 1);

    /* Still busy from that write: more events wait, coalesce, and come in
     * one batch after the drain. */
    for (int i = 0; i < 30; i++) {
        post(&f, "t/a", 0, "x");
        ts_hub_notify(f.hub);
        uv_run(&f.loop, UV_RUN_NOWAIT);
    }
    ck_assert_int_eq(s->writes, 1);
    s->queued = 0;
    ts_hub_drained(sub);
    ts_hub_drained(sub); /* harmless twice */
    ck_assert_int_eq(uv_run(&f.loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(s->writes, 2);
    ck_assert_uint_eq(s->n_seqs, 80);
    for (size_t j = 0; j < s->n_seqs; j++)
        ck_assert_uint_eq(s->seqs[j], next_index - 80 + j);
    ts_hub_unsubscribe(sub);
    fx_close(&f);
    sink_free(s);
}
END_TEST

START_TEST(test_filter_by_key)
{
    struct fx f;
    fx_init(&f, 0);
    post(&f, "t/a", 0, "a1");
    uint64_t b_id = post(&f, "t/b", 0, "b1").thread_id;
    const char *keys[] = {"t/b", "t/later", "t/never"};
    struct sink *s = sink_new();
    struct ts_hub_sub *sub = subscribe(&f, s, 0, 0, keys, 3, NULL, NULL);
    post(&f, "t/a", 0, "a2");
    uint64_t later_id = post(&f, "t/later", 0, "l1").thread_id;
    post(&f, "t/b", 0, "b2");
    ts_hub_notify(f.hub);
    ck_assert_int_eq(uv_run(&f.loop, UV_RUN_DEFAULT), 0);
    post(&f, "t/later", 0, "l2");
    post(&f, "t/a", 0, "a3");
    ts_hub_notify(f.hub);
    ck_assert_int_eq(uv_run(&f.loop, UV_RUN_DEFAULT), 0);

    ck_assert_uint_eq(s->n_seqs, 4); /* b1, l1, b2, l2 */
    for (size_t i = 0; i < s->n_seqs; i++)
        ck_assert(s->thread_of_event[i] == b_id || s->thread_of_event[i] == later_id);
    ck_assert_uint_eq(s->thread_of_event[1], later_id);
    /* The skipped tail (a3) still moves the cursor to the head. */
    ck_assert_uint_eq(s->last_seq, ts_store_last_index(f.store));
    ck_assert_uint_eq(ts_hub_sub_seq(sub), ts_store_last_index(f.store));
    ck_assert_int_eq(s->caught_up, 1);
    ts_hub_unsubscribe(sub);
    fx_close(&f);
    sink_free(s);
}
END_TEST

START_TEST(test_since_beyond_head)
{
    struct fx f;
    fx_init(&f, 0);
    for (int i = 0; i < 5; i++)
        post(&f, "t/a", 0, "x");
    struct sink *s = sink_new();
    uint64_t from;
    int snap;
    uint64_t head = ts_store_last_index(f.store);
    struct ts_hub_sub *sub = subscribe(&f, s, 0, head + 3, NULL, 0, &from, &snap);
    ck_assert_uint_eq(from, head + 3);
    ck_assert_int_eq(snap, 0);
    ck_assert_int_eq(uv_run(&f.loop, UV_RUN_DEFAULT), 0);
    /* Told it is caught up, and nothing else. */
    ck_assert_int_eq(s->caught_up, 1);
    ck_assert_uint_eq(s->n_seqs, 0);
    for (int i = 0; i < 5; i++)
        post(&f, "t/a", 0, "x");
    ts_hub_notify(f.hub);
    ck_assert_int_eq(uv_run(&f.loop, UV_RUN_DEFAULT), 0);
    ck_assert_uint_eq(s->n_seqs, 2); /* head+4 and head+5 */
    ck_assert_uint_eq(s->seqs[0], head + 4);
    ck_assert_uint_eq(s->last_seq, head + 5);
    ts_hub_unsubscribe(sub);
    fx_close(&f);
    sink_free(s);
}
END_TEST

static char big_body[1200];

START_TEST(test_snapshot_then_events)
{
    struct fx f;
    fx_init(&f, 20);
    memset(big_body, 'y', sizeof(big_body) - 1);
    /* ~1000 comments of 1.2 KiB: several chunks and several turns. */
    char thread[16];
    for (int i = 0; i < 1000; i++) {
        snprintf(thread, sizeof(thread), "t/%d", i % 9);
        post(&f, thread, 0, big_body);
    }
    ck_assert_uint_gt(ts_evlog_horizon(f.log), 1);
    struct sink *s = sink_new();
    s->busy_after_write = 1;
    uint64_t from;
    int snap;
    struct ts_hub_sub *sub = subscribe(&f, s, 0, 1, NULL, 0, &from, &snap);
    ck_assert_int_eq(snap, 1);
    ck_assert_uint_eq(from, ts_store_last_index(f.store));
    uint64_t S = ts_store_last_index(f.store);
    /* Stream it one drained write at a time, posting as it goes. */
    int turns = 0;
    while (s->ends == 0) {
        ck_assert_int_eq(uv_run(&f.loop, UV_RUN_DEFAULT), 0);
        ck_assert_int_gt(s->writes, turns);
        turns++;
        snprintf(thread, sizeof(thread), "t/%d", turns % 11);
        post(&f, thread, 0, "during");
        ts_hub_notify(f.hub);
        s->queued = 0;
        ts_hub_drained(sub);
    }
    ck_assert_int_gt(turns, 3);
    ck_assert_int_eq(s->begins, 1);
    ck_assert_uint_eq(s->begin_seq, S);
    ck_assert_uint_eq(s->begin_threads, 9);
    ck_assert_uint_eq(s->begin_comments, 1000);
    ck_assert_uint_eq(s->snap_threads, 9);
    ck_assert_uint_eq(s->snap_comments, 1000);
    ck_assert_int_gt(s->chunks, 10);
    /* Then the events after S, until caught up. */
    s->busy_after_write = 0;
    s->queued = 0;
    ts_hub_drained(sub);
    ck_assert_int_eq(uv_run(&f.loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(s->caught_up, 1);
    ck_assert_uint_eq(s->last_seq, ts_store_last_index(f.store));
    ck_assert_int_eq(s->order_violations, 0);
    ck_assert_int_eq(s->saw_email, 0);
    assert_mirror_equals_store(&f, s);
    ts_hub_unsubscribe(sub);
    fx_close(&f);
    sink_free(s);
}
END_TEST

/* A sink that takes every write at once (a connection whose socket keeps
 * up), and nothing posted after S: the snapshot must still end with an
 * Events frame that says caught up. */
START_TEST(test_snapshot_to_idle_fast_sink)
{
    struct fx f;
    fx_init(&f, 20);
    memset(big_body, 'z', sizeof(big_body) - 1);
    char thread[16];
    for (int i = 0; i < 400; i++) {
        snprintf(thread, sizeof(thread), "t/%d", i % 5);
        post(&f, thread, 0, big_body);
    }
    struct sink *s = sink_new();
    uint64_t from;
    int snap;
    struct ts_hub_sub *sub = subscribe(&f, s, 0, 1, NULL, 0, &from, &snap);
    ck_assert_int_eq(snap, 1);
    ck_assert_int_eq(uv_run(&f.loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(s->ends, 1);
    ck_assert_uint_eq(s->snap_comments, 400);
    ck_assert_int_eq(s->caught_up, 1);
    ck_assert_uint_eq(s->last_seq, ts_store_last_index(f.store));
    ts_hub_unsubscribe(sub);
    fx_close(&f);
    sink_free(s);
}
END_TEST

START_TEST(test_overtaken_cursor_gets_snapshot)
{
    struct fx f;
    fx_init(&f, 10);
    post(&f, "t/a", 0, "x");
    struct sink *s = sink_new();
    struct ts_hub_sub *sub = subscribe(&f, s, 1, 0, NULL, 0, NULL, NULL);
    ck_assert_int_eq(uv_run(&f.loop, UV_RUN_DEFAULT), 0);
    ck_assert_uint_eq(s->n_seqs, 1);
    s->queued = 1; /* stalls while 50 events push its cursor out */
    for (int i = 0; i < 50; i++)
        post(&f, i % 2 ? "t/a" : "t/b", 0, "x");
    ts_hub_notify(f.hub);
    ck_assert_int_eq(uv_run(&f.loop, UV_RUN_DEFAULT), 0);
    s->queued = 0;
    ts_hub_drained(sub);
    ck_assert_int_eq(uv_run(&f.loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(s->begins, 1);
    ck_assert_int_eq(s->ends, 1);
    ck_assert_uint_eq(s->end_seq, ts_store_last_index(f.store));
    ck_assert_int_eq(s->caught_up, 1);
    ck_assert_int_eq(s->saw_email, 1); /* a moderator's snapshot is full */
    assert_mirror_equals_store(&f, s);
    ts_hub_unsubscribe(sub);
    fx_close(&f);
    sink_free(s);
}
END_TEST

/* A restored store with a hidden comment: readers get its place in the tree
 * only, moderators all of it. */
START_TEST(test_restore_and_redaction)
{
    struct fx f;
    fx_init(&f, 0);
    post(&f, "t/old", 0, "before the restore");
    struct sink *early = sink_new();
    struct ts_hub_sub *early_sub = subscribe(&f, early, 0, 0, NULL, 0, NULL, NULL);
    ck_assert_int_eq(uv_run(&f.loop, UV_RUN_DEFAULT), 0);
    ck_assert_uint_eq(early->n_seqs, 1);

    Threadsync__Thread t = THREADSYNC__THREAD__INIT, *tp = &t;
    t.id = 100;
    t.key = "t/restored";
    t.version = 2;
    Threadsync__Comment c[2] = {THREADSYNC__COMMENT__INIT, THREADSYNC__COMMENT__INIT};
    Threadsync__Comment *cp[2] = {&c[0], &c[1]};
    for (int i = 0; i < 2; i++) {
        c[i].id = 101 + (uint64_t)i;
        c[i].thread_id = 100;
        c[i].author_name = "Bob";
        c[i].author_email = "bob@example.org";
        c[i].body = i ? "hidden words" : "shown words";
        c[i].status = i ? THREADSYNC__STATUS__HIDDEN : THREADSYNC__STATUS__VISIBLE;
        c[i].version = 1;
    }
    Threadsync__State__StoreSnapshot snap = THREADSYNC__STATE__STORE_SNAPSHOT__INIT;
    snap.last_index = 200;
    snap.n_threads = 1;
    snap.threads = &tp;
    snap.n_comments = 2;
    snap.comments = cp;
    uint8_t buf[1024];
    size_t len = threadsync__state__store_snapshot__pack(&snap, buf);
    ck_assert_int_eq(ts_store_restore(f.store, buf, len), TS_OK);
    ts_evlog_reset(f.log, ts_store_last_index(f.store));
    ts_hub_notify(f.hub);
    next_index = 201;

    struct sink *reader = sink_new(), *mod = sink_new();
    uint64_t from;
    int is_snap;
    struct ts_hub_sub *rs = subscribe(&f, reader, 0, 0, NULL, 0, &from, &is_snap);
    ck_assert_int_eq(is_snap, 1);
    struct ts_hub_sub *ms = subscribe(&f, mod, 1, 0, NULL, 0, NULL, NULL);
    ck_assert_int_eq(uv_run(&f.loop, UV_RUN_DEFAULT), 0);
    post(&f, "t/restored", 101, "a reply");
    ts_hub_notify(f.hub);
    ck_assert_int_eq(uv_run(&f.loop, UV_RUN_DEFAULT), 0);

    /* The subscriber from before the restore was moved onto the new state. */
    ck_assert_int_eq(early->begins, 1);
    ck_assert_uint_eq(early->end_seq, 200);
    ck_assert_int_eq(reader->begins, 1);
    ck_assert_uint_eq(reader->begin_seq, 200);
    ck_assert_int_eq(reader->saw_email, 0);
    ck_assert_int_eq(reader->saw_hidden_body, 0);
    ck_assert(reader->comments[102].present);
    ck_assert_str_eq(reader->comments[102].body, "");
    ck_assert_str_eq(reader->comments[101].body, "shown words");
    ck_assert_int_eq(mod->saw_email, 1);
    ck_assert_str_eq(mod->comments[102].body, "hidden words");
    ck_assert_uint_eq(reader->n_seqs, 1);
    ck_assert_uint_eq(reader->seqs[0], 201);
    ck_assert_uint_eq(early->n_seqs, 2);
    assert_mirror_equals_store(&f, reader);
    ts_hub_unsubscribe(rs);
    ts_hub_unsubscribe(ms);
    ts_hub_unsubscribe(early_sub);
    fx_close(&f);
    sink_free(reader);
    sink_free(mod);
    sink_free(early);
}
END_TEST

START_TEST(test_unsubscribe_in_write)
{
    struct fx f;
    fx_init(&f, 0);
    struct sink *a = sink_new(), *b = sink_new(), *c = sink_new();
    subscribe(&f, a, 0, 0, NULL, 0, NULL, NULL);
    a->unsub_self = 1;
    struct ts_hub_sub *sb = subscribe(&f, b, 0, 0, NULL, 0, NULL, NULL);
    struct ts_hub_sub *sc = subscribe(&f, c, 0, 0, NULL, 0, NULL, NULL);
    /* a is served first and removes itself; b removes c, which is later in
     * the same turn, and then itself next turn. */
    b->victim = sc;
    post(&f, "t/a", 0, "x");
    ts_hub_notify(f.hub);
    ck_assert_int_eq(uv_run(&f.loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(a->writes, 1);
    ck_assert_int_eq(b->writes, 1);
    ck_assert_int_eq(c->writes, 0);
    ck_assert_uint_eq(ts_hub_subscriber_count(f.hub), 1);
    b->unsub_self = 1;
    post(&f, "t/a", 0, "y");
    ts_hub_notify(f.hub);
    ck_assert_int_eq(uv_run(&f.loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(b->writes, 2);
    ck_assert_uint_eq(ts_hub_subscriber_count(f.hub), 0);
    post(&f, "t/a", 0, "z");
    ts_hub_notify(f.hub);
    ck_assert_int_eq(uv_run(&f.loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(a->writes, 1);
    ck_assert_int_eq(b->writes, 2);
    (void)sb;
    fx_close(&f);
    sink_free(a);
    sink_free(b);
    sink_free(c);
}
END_TEST

/* A turn serves a bounded number of subscribers: the loop polls between
 * slices of a big fan-out. Those left over are served first next turn, and
 * an event appended between two slices reaches them in the same batch. */
static int count_writes(void *arg, const void *data, size_t len)
{
    (void)data;
    (void)len;
    ++*(int *)arg;
    return 0;
}

static size_t never_queued(void *arg)
{
    (void)arg;
    return 0;
}

START_TEST(test_turn_is_bounded)
{
    struct fx f;
    fx_init(&f, 0);
    enum { SUBS = 1000 };
    static const struct ts_hub_sink_ops ops = {count_writes, never_queued};
    struct ts_hub_sub **subs = calloc(SUBS, sizeof(*subs));
    int *writes = calloc(SUBS, sizeof(*writes));
    struct ts_hub_filter all = {1, NULL, 0};
    for (int i = 0; i < SUBS; i++) {
        uint64_t from;
        int snap;
        ck_assert_int_eq(
            ts_hub_subscribe(f.hub, &all, 0, 0, &ops, &writes[i], &subs[i], &from, &snap), TS_OK);
    }
    ck_assert_int_eq(uv_run(&f.loop, UV_RUN_DEFAULT), 0); /* each told it is caught up */
    /* Unbounded (the default, a node with I/O threads): one turn serves all. */
    memset(writes, 0, SUBS * sizeof(*writes));
    post(&f, "t/a", 0, "zeroth");
    ts_hub_notify(f.hub);
    (void)uv_run(&f.loop, UV_RUN_ONCE);
    int served = 0;
    for (int i = 0; i < SUBS; i++)
        served += writes[i];
    ck_assert_int_eq(served, SUBS);
    ck_assert_int_eq(uv_run(&f.loop, UV_RUN_DEFAULT), 0);
    ts_hub_set_turn_max(f.hub, 128);
    memset(writes, 0, SUBS * sizeof(*writes));
    post(&f, "t/a", 0, "first");
    ts_hub_notify(f.hub);
    (void)uv_run(&f.loop, UV_RUN_ONCE);
    served = 0;
    for (int i = 0; i < SUBS; i++)
        served += writes[i];
    ck_assert_int_eq(served, 128);
    post(&f, "t/a", 0, "second");
    ts_hub_notify(f.hub);
    ck_assert_int_eq(uv_run(&f.loop, UV_RUN_DEFAULT), 0);
    int twice = 0;
    for (int i = 0; i < SUBS; i++) {
        ck_assert_uint_eq(ts_hub_sub_seq(subs[i]), ts_store_last_index(f.store));
        ck_assert_int_ge(writes[i], 1);
        ck_assert_int_le(writes[i], 2);
        twice += writes[i] == 2;
        ts_hub_unsubscribe(subs[i]);
    }
    /* served in the first slice: both events apart; the rest: one batch */
    ck_assert_int_eq(twice, served);
    free(writes);
    free(subs);
    fx_close(&f);
}
END_TEST

/* Fan-out timing: not asserted, printed. Sinks only count bytes. */
static size_t bench_bytes;

static int count_write(void *arg, const void *data, size_t len)
{
    (void)arg;
    (void)data;
    bench_bytes += len;
    return 0;
}

static size_t zero_queued(void *arg)
{
    (void)arg;
    return 0;
}

START_TEST(test_fanout_timing)
{
    struct fx f;
    fx_init(&f, 0);
    enum { SUBS = 1000, EVENTS = 100000, PER_TURN = 1000 };
    static const struct ts_hub_sink_ops ops = {count_write, zero_queued};
    struct ts_hub_sub **subs = calloc(SUBS, sizeof(*subs));
    struct ts_hub_filter all = {1, NULL, 0};
    for (int i = 0; i < SUBS; i++) {
        uint64_t from;
        int snap;
        ck_assert_int_eq(
            ts_hub_subscribe(f.hub, &all, i % 10 == 0, 0, &ops, NULL, &subs[i], &from, &snap),
            TS_OK);
    }
    char body[251];
    memset(body, 'z', 250);
    body[250] = '\0';
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < EVENTS; i += PER_TURN) {
        for (int j = 0; j < PER_TURN; j++)
            post(&f, j % 2 ? "site/one" : "site/two", 0, body);
        ts_hub_notify(f.hub);
        ck_assert_int_eq(uv_run(&f.loop, UV_RUN_DEFAULT), 0);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    for (int i = 0; i < SUBS; i++) {
        ck_assert_uint_eq(ts_hub_sub_seq(subs[i]), ts_store_last_index(f.store));
        ts_hub_unsubscribe(subs[i]);
    }
    fprintf(stderr,
            "hub: %d events (250-byte bodies) to %d subscribers in %.2f s "
            "(apply + fan-out, %d events per turn), %.1f MB written, %zu bytes per "
            "subscriber struct\n",
            EVENTS, SUBS, secs, PER_TURN, bench_bytes / 1e6, ts_hub_sub_size());
    ck_assert_uint_gt(bench_bytes, (size_t)EVENTS * SUBS * 250);
    free(subs);
    fx_close(&f);
}
END_TEST

static Suite *hub_suite(void)
{
    Suite *s = suite_create("ts_hub");
    TCase *tc = tcase_create("hub");
    tcase_add_test(tc, test_every_event_once_in_order);
    tcase_add_test(tc, test_busy_sink_gets_one_batch);
    tcase_add_test(tc, test_filter_by_key);
    tcase_add_test(tc, test_since_beyond_head);
    tcase_add_test(tc, test_snapshot_then_events);
    tcase_add_test(tc, test_snapshot_to_idle_fast_sink);
    tcase_add_test(tc, test_overtaken_cursor_gets_snapshot);
    tcase_add_test(tc, test_restore_and_redaction);
    tcase_add_test(tc, test_unsubscribe_in_write);
    tcase_add_test(tc, test_turn_is_bounded);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    TCase *bench = tcase_create("bench");
    tcase_add_test(bench, test_fanout_timing);
    tcase_set_timeout(bench, 110);
    suite_add_tcase(s, bench);
    return s;
}

int main(void)
{
    return ts_check_run(hub_suite());
}
