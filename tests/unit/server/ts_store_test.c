/*
 * ts_store: posts and replies, the rejections (unknown parent, parent in
 * another thread, locked thread via a restored snapshot), idempotent
 * retries, idempotency expiry, the public and full events, snapshot and
 * restore, determinism across replicas, and payloads that do not decode.
 * Also prints the memory a comment costs.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "threadsync_state.pb-c.h"
#include "ts_err.h"
#include "ts_evlog.h"
#include "ts_store.h"

struct fx {
    struct ts_evlog *log;
    struct ts_store *s;
};

static void fx_init(struct fx *f)
{
    ck_assert_int_eq(ts_evlog_new(NULL, &f->log), TS_OK);
    ck_assert_int_eq(ts_store_new(f->log, &f->s), TS_OK);
}

static void fx_free(struct fx *f)
{
    ts_store_free(f->s);
    ts_evlog_free(f->log);
}

/* Applies a Post as entry index with command time t. */
static struct ts_store_result post(struct fx *f, uint64_t index, int64_t t, const char *ikey,
                                   const char *thread, uint64_t parent, const char *body)
{
    Threadsync__Post p = THREADSYNC__POST__INIT;
    p.request_id = 99;
    p.idempotency_key = (char *)ikey;
    p.thread_key = (char *)thread;
    p.parent_id = parent;
    p.author_name = "Ann";
    p.author_email = "ann@example.org";
    p.body = (char *)body;
    p.title = "A title";
    p.url = "https://example.org/a";
    uint8_t *buf;
    size_t len;
    ck_assert_int_eq(ts_store_encode_post(&p, t, &buf, &len), TS_OK);
    struct ts_store_result res;
    ck_assert_int_eq(ts_store_apply(f->s, index, buf, len, &res), TS_OK);
    free(buf);
    return res;
}

static Threadsync__Event *event_at(struct fx *f, uint64_t pos, int full)
{
    struct ts_evlog_entry e;
    ck_assert_int_eq(ts_evlog_get(f->log, pos, &e), TS_OK);
    const uint8_t *p = full ? e.full : e.pub;
    size_t len = full ? e.full_len : e.pub_len;
    size_t i = 1;
    uint64_t n = 0;
    for (int shift = 0;; shift += 7) {
        n |= (uint64_t)(p[i] & 0x7F) << shift;
        if (!(p[i++] & 0x80))
            break;
    }
    ck_assert_uint_eq(i + n, len);
    Threadsync__Event *ev = threadsync__event__unpack(NULL, n, p + i);
    ck_assert_ptr_nonnull(ev);
    return ev;
}

START_TEST(test_post_and_reply)
{
    struct fx f;
    fx_init(&f);
    struct ts_store_result r = post(&f, 5, 1000, "k1", "site/a", 0, "first");
    ck_assert_int_eq(r.status, TS_OK);
    ck_assert_uint_eq(r.seq, 5);
    ck_assert_uint_eq(r.thread_id, 5);
    ck_assert_uint_eq(r.comment_id, 5);
    ck_assert_int_eq(r.comment_status, THREADSYNC__STATUS__VISIBLE);

    struct ts_store_result r2 = post(&f, 7, 2000, "k2", "site/a", 5, "reply");
    ck_assert_int_eq(r2.status, TS_OK);
    ck_assert_uint_eq(r2.thread_id, 5);
    ck_assert_uint_eq(r2.comment_id, 7);
    ck_assert_uint_eq(ts_store_last_index(f.s), 7);
    ck_assert_uint_eq(ts_store_thread_count(f.s), 1);
    ck_assert_uint_eq(ts_store_comment_count(f.s), 2);

    Threadsync__Thread t;
    ck_assert_int_eq(ts_store_thread_by_key(f.s, "site/a", &t), TS_OK);
    ck_assert_uint_eq(t.id, 5);
    ck_assert_str_eq(t.title, "A title");
    ck_assert_str_eq(t.url, "https://example.org/a");
    ck_assert_int_eq(t.created_at_ms, 1000);
    ck_assert_uint_eq(t.comment_count, 2);
    ck_assert_uint_eq(t.version, 2);
    ck_assert_int_eq(ts_store_thread_by_key(f.s, "site/b", &t), TS_E_NOT_FOUND);
    ck_assert_int_eq(ts_store_thread_by_id(f.s, 5, &t), TS_OK);
    ck_assert_str_eq(t.key, "site/a");

    Threadsync__Comment c;
    ck_assert_int_eq(ts_store_comment(f.s, 7, &c), TS_OK);
    ck_assert_uint_eq(c.parent_id, 5);
    ck_assert_uint_eq(c.thread_id, 5);
    ck_assert_str_eq(c.body, "reply");
    ck_assert_str_eq(c.author_name, "Ann");
    ck_assert_str_eq(c.author_email, "ann@example.org");
    ck_assert_int_eq(c.created_at_ms, 2000);
    ck_assert_uint_eq(c.version, 1);
    ck_assert_int_eq(c.status, THREADSYNC__STATUS__VISIBLE);
    ck_assert_int_eq(ts_store_comment(f.s, 6, &c), TS_E_NOT_FOUND);
    ck_assert_uint_eq(ts_evlog_end_pos(f.log), 2);
    fx_free(&f);
}
END_TEST

struct seen {
    uint64_t ids[64];
    size_t n;
};

static int see_comment(void *arg, const Threadsync__Comment *c)
{
    struct seen *s = arg;
    s->ids[s->n++] = c->id;
    return 0;
}

static int see_thread(void *arg, const Threadsync__Thread *t)
{
    struct seen *s = arg;
    s->ids[s->n++] = t->id;
    return s->n == 2; /* stop after two */
}

START_TEST(test_tree_order)
{
    struct fx f;
    fx_init(&f);
    /* Two threads interleaved, replies at several depths. */
    ck_assert_int_eq(post(&f, 1, 1, "a", "t/1", 0, "x").status, TS_OK);
    ck_assert_int_eq(post(&f, 2, 1, "b", "t/2", 0, "x").status, TS_OK);
    ck_assert_int_eq(post(&f, 3, 1, "c", "t/1", 1, "x").status, TS_OK);
    ck_assert_int_eq(post(&f, 4, 1, "d", "t/1", 3, "x").status, TS_OK);
    ck_assert_int_eq(post(&f, 6, 1, "e", "t/2", 2, "x").status, TS_OK);
    ck_assert_int_eq(post(&f, 8, 1, "f", "t/1", 1, "x").status, TS_OK);
    ck_assert_int_eq(post(&f, 9, 1, "g", "t/3", 0, "x").status, TS_OK);

    struct seen s = {{0}, 0};
    ck_assert_int_eq(ts_store_foreach_comment(f.s, 1, 0, see_comment, &s), 0);
    ck_assert_uint_eq(s.n, 4);
    uint64_t want[] = {1, 3, 4, 8};
    for (size_t i = 0; i < 4; i++)
        ck_assert_uint_eq(s.ids[i], want[i]);
    s.n = 0;
    ts_store_foreach_comment(f.s, 1, 3, see_comment, &s);
    ck_assert_uint_eq(s.n, 2);
    ck_assert_uint_eq(s.ids[0], 4);
    s.n = 0;
    ck_assert_int_eq(ts_store_foreach_thread(f.s, 0, see_thread, &s), 1);
    ck_assert_uint_eq(s.n, 2);
    ck_assert_uint_eq(s.ids[0], 1);
    ck_assert_uint_eq(s.ids[1], 2);
    s.n = 0;
    ck_assert_int_eq(ts_store_foreach_thread(f.s, 2, see_thread, &s), 0);
    ck_assert_uint_eq(s.n, 1);
    ck_assert_uint_eq(s.ids[0], 9);
    fx_free(&f);
}
END_TEST

START_TEST(test_parent_rejections)
{
    struct fx f;
    fx_init(&f);
    ck_assert_int_eq(post(&f, 1, 1, "a", "t/1", 0, "x").status, TS_OK);
    ck_assert_int_eq(post(&f, 2, 1, "b", "t/2", 0, "x").status, TS_OK);
    char before[65], after[65];
    ts_store_digest(f.s, before);
    uint64_t end = ts_evlog_end_pos(f.log);

    struct ts_store_result r = post(&f, 3, 1, "c", "t/1", 42, "x");
    ck_assert_int_eq(r.status, TS_E_NOT_FOUND);
    ck_assert_str_eq(r.field, "parent_id");
    /* Parent 2 exists, but in t/2. */
    r = post(&f, 4, 1, "d", "t/1", 2, "x");
    ck_assert_int_eq(r.status, TS_E_NOT_FOUND);
    ck_assert_str_eq(r.field, "parent_id");
    /* A reply cannot create its thread. */
    r = post(&f, 5, 1, "e", "t/new", 1, "x");
    ck_assert_int_eq(r.status, TS_E_NOT_FOUND);
    ck_assert_int_eq(ts_store_thread_by_key(f.s, "t/new", &(Threadsync__Thread){0}),
                     TS_E_NOT_FOUND);
    /* A missing required string. */
    r = post(&f, 6, 1, "f", "t/1", 0, "");
    ck_assert_int_eq(r.status, TS_E_INVALID_ARGUMENT);
    ck_assert_str_eq(r.field, "body");

    ts_store_digest(f.s, after);
    ck_assert_str_eq(before, after);
    ck_assert_uint_eq(ts_evlog_end_pos(f.log), end);
    ck_assert_uint_eq(ts_store_comment_count(f.s), 2);
    /* A rejected key is not remembered: the corrected retry goes through. */
    r = post(&f, 7, 1, "c", "t/1", 1, "x");
    ck_assert_int_eq(r.status, TS_OK);
    ck_assert_uint_eq(r.comment_id, 7);
    fx_free(&f);
}
END_TEST

START_TEST(test_idempotent_repeat)
{
    struct fx f;
    fx_init(&f);
    struct ts_store_result r1 = post(&f, 10, 1000, "same", "t/1", 0, "hello");
    ck_assert_int_eq(r1.status, TS_OK);
    uint64_t end = ts_evlog_end_pos(f.log);
    char before[65], after[65];
    ts_store_digest(f.s, before);
    /* The retry may even differ in content: the first answer stands. */
    struct ts_store_result r2 = post(&f, 11, 5000, "same", "t/1", 0, "hello again");
    ck_assert_int_eq(r2.status, TS_OK);
    ck_assert_uint_eq(r2.seq, 10);
    ck_assert_uint_eq(r2.comment_id, r1.comment_id);
    ck_assert_uint_eq(r2.thread_id, r1.thread_id);
    ck_assert_int_eq(r2.comment_status, r1.comment_status);
    ck_assert_uint_eq(ts_evlog_end_pos(f.log), end);
    ck_assert_uint_eq(ts_store_comment_count(f.s), 1);
    ts_store_digest(f.s, after);
    ck_assert_str_eq(before, after);
    ck_assert_uint_eq(ts_store_last_index(f.s), 11);

    /* Past the retention window (command time), the key is forgotten. */
    int64_t later = 1000 + TS_STORE_IDEMPOTENCY_RETENTION_MS;
    ck_assert_int_eq(post(&f, 12, later - 1, "other", "t/1", 0, "x").status, TS_OK);
    ck_assert_uint_eq(post(&f, 13, later - 1, "same", "t/1", 0, "x").seq, 10);
    struct ts_store_result r3 = post(&f, 14, later, "same", "t/1", 0, "hello");
    ck_assert_int_eq(r3.status, TS_OK);
    ck_assert_uint_eq(r3.seq, 14);
    ck_assert_uint_eq(r3.comment_id, 14);
    ck_assert_uint_eq(ts_store_comment_count(f.s), 3);
    fx_free(&f);
}
END_TEST

START_TEST(test_public_vs_full_event)
{
    struct fx f;
    fx_init(&f);
    ck_assert_int_eq(post(&f, 3, 77, "a", "t/1", 0, "the body").status, TS_OK);
    Threadsync__Event *full = event_at(&f, 0, 1);
    Threadsync__Event *pub = event_at(&f, 0, 0);
    ck_assert_uint_eq(full->seq, 3);
    ck_assert_uint_eq(pub->seq, 3);
    ck_assert_ptr_nonnull(full->thread);
    ck_assert_ptr_nonnull(pub->thread);
    ck_assert_str_eq(full->thread->key, "t/1");
    ck_assert_uint_eq(pub->thread->comment_count, 1);
    ck_assert_str_eq(full->comment->author_email, "ann@example.org");
    ck_assert_str_eq(pub->comment->author_email, "");
    ck_assert_str_eq(full->comment->body, "the body");
    ck_assert_str_eq(pub->comment->body, "the body");
    ck_assert_str_eq(pub->comment->author_name, "Ann");
    ck_assert_int_eq(pub->comment->created_at_ms, 77);
    ck_assert_uint_eq(pub->comment->version, 1);
    threadsync__event__free_unpacked(full, NULL);
    threadsync__event__free_unpacked(pub, NULL);
    fx_free(&f);
}
END_TEST

/* Builds a store snapshot by hand: a locked thread, a hidden comment. */
static void restore_crafted(struct fx *f)
{
    Threadsync__Thread t = THREADSYNC__THREAD__INIT, *tp = &t;
    t.id = 10;
    t.key = "t/locked";
    t.locked = 1;
    t.version = 3;
    Threadsync__Comment c = THREADSYNC__COMMENT__INIT, *cp = &c;
    c.id = 11;
    c.thread_id = 10;
    c.author_name = "Bob";
    c.author_email = "bob@example.org";
    c.body = "hidden text";
    c.status = THREADSYNC__STATUS__HIDDEN;
    c.version = 2;
    Threadsync__State__StoreSnapshot snap = THREADSYNC__STATE__STORE_SNAPSHOT__INIT;
    snap.last_index = 20;
    snap.n_threads = 1;
    snap.threads = &tp;
    snap.n_comments = 1;
    snap.comments = &cp;
    uint8_t buf[512];
    size_t len = threadsync__state__store_snapshot__pack(&snap, buf);
    ck_assert_int_eq(ts_store_restore(f->s, buf, len), TS_OK);
}

START_TEST(test_locked_thread)
{
    struct fx f;
    fx_init(&f);
    restore_crafted(&f);
    ck_assert_uint_eq(ts_store_last_index(f.s), 20);
    struct ts_store_result r = post(&f, 21, 1, "a", "t/locked", 0, "x");
    ck_assert_int_eq(r.status, TS_E_THREAD_LOCKED);
    ck_assert_uint_eq(ts_evlog_end_pos(f.log), 0);
    ck_assert_uint_eq(ts_store_comment_count(f.s), 1);
    /* An index not above the last one is a caller bug. */
    ck_assert_int_eq(ts_store_apply(f.s, 21, (const uint8_t *)"", 0, &r), TS_E_INVALID_ARGUMENT);
    fx_free(&f);
}
END_TEST

START_TEST(test_snapshot_restore_digest)
{
    struct fx f, g;
    fx_init(&f);
    fx_init(&g);
    char key[32], thread[32], body[64];
    for (uint64_t i = 1; i <= 300; i++) {
        snprintf(key, sizeof(key), "k%llu", (unsigned long long)i);
        snprintf(thread, sizeof(thread), "t/%llu", (unsigned long long)(i % 7));
        snprintf(body, sizeof(body), "comment number %llu", (unsigned long long)i);
        uint64_t parent = i > 14 && i % 3 == 0 ? (i - 7) * 2 : 0;
        ck_assert_int_eq(post(&f, i * 2, (int64_t)i, key, thread, parent, body).status, TS_OK);
    }
    uint8_t *snap;
    size_t len;
    ck_assert_int_eq(ts_store_snapshot(f.s, &snap, &len), TS_OK);
    ck_assert_int_eq(ts_store_restore(g.s, snap, len), TS_OK);
    char d1[65], d2[65];
    ts_store_digest(f.s, d1);
    ts_store_digest(g.s, d2);
    ck_assert_str_eq(d1, d2);
    ck_assert_uint_eq(strlen(d1), 64);
    ck_assert_uint_eq(ts_store_last_index(g.s), 600);
    ck_assert_uint_eq(ts_store_comment_count(g.s), 300);
    ck_assert_uint_eq(ts_store_thread_count(g.s), 7);
    /* The idempotency table came along: a retry on the restored replica
     * gets the original answer. */
    struct ts_store_result r = post(&g, 601, 400, "k5", "t/5", 0, "again");
    ck_assert_uint_eq(r.seq, 10);
    ck_assert_uint_eq(ts_store_comment_count(g.s), 300);
    /* And both continue identically. */
    ck_assert_int_eq(post(&f, 602, 401, "new", "t/1", 0, "more").status, TS_OK);
    ck_assert_int_eq(post(&g, 602, 401, "new", "t/1", 0, "more").status, TS_OK);
    ts_store_digest(f.s, d1);
    ts_store_digest(g.s, d2);
    ck_assert_str_eq(d1, d2);

    /* A corrupt snapshot is refused and leaves the state alone. */
    ck_assert_int_ne(ts_store_restore(g.s, snap, len / 2), TS_OK);
    ts_store_digest(g.s, d2);
    ck_assert_str_eq(d1, d2);
    /* Restore replaces everything. */
    ck_assert_int_eq(ts_store_restore(g.s, snap, len), TS_OK);
    ts_store_digest(g.s, d2);
    ck_assert_str_ne(d1, d2);
    ck_assert_uint_eq(ts_store_comment_count(g.s), 300);
    free(snap);
    fx_free(&f);
    fx_free(&g);
}
END_TEST

START_TEST(test_same_log_same_digest)
{
    struct fx a, b;
    fx_init(&a);
    fx_init(&b);
    /* One command log, with rejections and retries in it, applied to two
     * replicas. */
    uint8_t *payloads[200];
    size_t lens[200];
    srand(7);
    for (int i = 0; i < 200; i++) {
        char key[16], thread[16], body[32];
        snprintf(key, sizeof(key), "k%d", rand() % 150);
        snprintf(thread, sizeof(thread), "t/%d", rand() % 5);
        snprintf(body, sizeof(body), "b%d", i);
        Threadsync__Post p = THREADSYNC__POST__INIT;
        p.idempotency_key = key;
        p.thread_key = thread;
        p.parent_id = i > 10 ? (uint64_t)(rand() % i) : 0;
        p.author_name = "N";
        p.body = body;
        ck_assert_int_eq(ts_store_encode_post(&p, 1000 + i, &payloads[i], &lens[i]), TS_OK);
    }
    for (int i = 0; i < 200; i++) {
        struct ts_store_result ra, rb;
        ck_assert_int_eq(ts_store_apply(a.s, (uint64_t)i + 1, payloads[i], lens[i], &ra), TS_OK);
        ck_assert_int_eq(ts_store_apply(b.s, (uint64_t)i + 1, payloads[i], lens[i], &rb), TS_OK);
        ck_assert_int_eq(ra.status, rb.status);
        ck_assert_uint_eq(ra.comment_id, rb.comment_id);
        free(payloads[i]);
    }
    char da[65], db[65];
    ts_store_digest(a.s, da);
    ts_store_digest(b.s, db);
    ck_assert_str_eq(da, db);
    ck_assert_uint_gt(ts_store_comment_count(a.s), 10);
    ck_assert_uint_eq(ts_evlog_end_pos(a.log), ts_evlog_end_pos(b.log));
    fx_free(&a);
    fx_free(&b);
}
END_TEST

START_TEST(test_undecodable_payload)
{
    struct fx f;
    fx_init(&f);
    ck_assert_int_eq(post(&f, 1, 1, "a", "t/1", 0, "x").status, TS_OK);
    char before[65], after[65];
    ts_store_digest(f.s, before);
    size_t mem = ts_store_memory(f.s);
    const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x12};
    struct ts_store_result r;
    ck_assert_int_eq(ts_store_apply(f.s, 2, garbage, sizeof(garbage), &r), TS_OK);
    ck_assert_int_eq(r.status, TS_E_BAD_FRAME);
    /* A Command without an op decodes but carries nothing to apply. */
    ck_assert_int_eq(ts_store_apply(f.s, 3, (const uint8_t *)"\x08\x01", 2, &r), TS_OK);
    ck_assert_int_eq(r.status, TS_E_BAD_FRAME);
    ts_store_digest(f.s, after);
    ck_assert_str_eq(before, after);
    ck_assert_uint_eq(ts_store_memory(f.s), mem);
    ck_assert_uint_eq(ts_evlog_end_pos(f.log), 1);
    ck_assert_uint_eq(ts_store_comment_count(f.s), 1);
    fx_free(&f);
}
END_TEST

/* Not an assertion of a figure: prints what 100k comments of 250-byte
 * bodies cost, and checks only the brief's bound (under 2x raw). */
START_TEST(test_memory_per_comment)
{
    struct ts_evlog_config cfg = {.max_events = 1000};
    struct ts_evlog *log;
    struct ts_store *s;
    ck_assert_int_eq(ts_evlog_new(&cfg, &log), TS_OK);
    ck_assert_int_eq(ts_store_new(log, &s), TS_OK);
    char body[251], key[32], thread[32];
    memset(body, 'x', 250);
    body[250] = '\0';
    size_t raw = 0;
    const int n = 100000;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 1; i <= n; i++) {
        snprintf(key, sizeof(key), "key-%d", i);
        snprintf(thread, sizeof(thread), "site/2024/article-%d", i % 1000);
        Threadsync__Post p = THREADSYNC__POST__INIT;
        p.idempotency_key = key;
        p.thread_key = thread;
        p.author_name = "Reader Name";
        p.author_email = "reader@example.org";
        p.body = body;
        uint8_t *buf;
        size_t len;
        ck_assert_int_eq(ts_store_encode_post(&p, i, &buf, &len), TS_OK);
        struct ts_store_result r;
        ck_assert_int_eq(ts_store_apply(s, (uint64_t)i, buf, len, &r), TS_OK);
        ck_assert_int_eq(r.status, TS_OK);
        free(buf);
        /* id, thread, parent, two times, status, version, and the text */
        raw += 7 * 8 + strlen(p.author_name) + strlen(p.author_email) + 250;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    size_t mem = ts_store_memory(s);
    double per = (double)mem / n, raw_per = (double)raw / n;
    fprintf(stderr,
            "store: %d comments, %zu bytes (%.1f per comment, raw %.1f, ratio %.2f; "
            "idempotency table included); apply %.0f ns/post; evlog %zu bytes for %llu "
            "events (%.1f per event)\n",
            n, mem, per, raw_per, per / raw_per,
            ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / n, ts_evlog_memory(log),
            (unsigned long long)(ts_evlog_end_pos(log) - ts_evlog_first_pos(log)),
            (double)ts_evlog_memory(log) /
                (double)(ts_evlog_end_pos(log) - ts_evlog_first_pos(log)));
    ck_assert_double_lt(per, 2 * raw_per);
    ts_store_free(s);
    ts_evlog_free(log);
}
END_TEST

static Suite *store_suite(void)
{
    Suite *s = suite_create("ts_store");
    TCase *tc = tcase_create("store");
    tcase_add_test(tc, test_post_and_reply);
    tcase_add_test(tc, test_tree_order);
    tcase_add_test(tc, test_parent_rejections);
    tcase_add_test(tc, test_idempotent_repeat);
    tcase_add_test(tc, test_public_vs_full_event);
    tcase_add_test(tc, test_locked_thread);
    tcase_add_test(tc, test_snapshot_restore_digest);
    tcase_add_test(tc, test_same_log_same_digest);
    tcase_add_test(tc, test_undecodable_payload);
    tcase_add_test(tc, test_memory_per_comment);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(store_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
