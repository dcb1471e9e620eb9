/*
 * ts_store: posts and replies, the rejections (unknown parent, parent in
 * another thread, locked thread via a restored snapshot), idempotent
 * retries, idempotency expiry, the public and full events, snapshot and
 * restore, determinism across replicas, and payloads that do not decode;
 * moderation (each transition and refusal, pre-moderation, the queue),
 * authors' edit keys and their window, bans, the token table, and the same
 * moderation log applied twice / to two replicas / through a snapshot.
 * Also prints the memory a comment costs, and bounds the heap a restore
 * takes.
 */
#include <check.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ts_check_main.h"
#include "threadsync_state.pb-c.h"
#include "ts_err.h"
#include "ts_evlog.h"
#include "ts_file.h"
#include "ts_store.h"
#include "ts_storefx.h"
#include "ts_testheap.h"
#include "ts_view.h"

/* Whether an older release's (unscoped) key is in the table: its digest
 * is SHA-256(key), truncated. */
static int key_known(const struct ts_store *s, const char *key)
{
    uint8_t h[32];
    unsigned n;
    ck_assert_int_eq(EVP_Digest(key, strlen(key), h, &n, EVP_sha256(), NULL), 1);
    return ts_store_idempotency_known(s, h);
}

/* Applies a Post as entry index with command time t. */
static struct ts_store_result post(struct ts_storefx *f, uint64_t index, int64_t t,
                                   const char *ikey, const char *thread, uint64_t parent,
                                   const char *body)
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

static Threadsync__Event *event_at(struct ts_storefx *f, uint64_t pos, int full)
{
    struct ts_evlog_entry e;
    ck_assert_int_eq(ts_evlog_get(f->log, pos, &e), TS_OK);
    return full ? ts_storefx_event(e.full, e.full_len) : ts_storefx_event(e.pub, e.pub_len);
}

START_TEST(test_post_and_reply)
{
    struct ts_storefx f;
    ts_storefx_init(&f);
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
    ts_storefx_free(&f);
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
    struct ts_storefx f;
    ts_storefx_init(&f);
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
    ts_storefx_free(&f);
}
END_TEST

START_TEST(test_parent_rejections)
{
    struct ts_storefx f;
    ts_storefx_init(&f);
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
    ts_storefx_free(&f);
}
END_TEST

START_TEST(test_idempotent_repeat)
{
    struct ts_storefx f;
    ts_storefx_init(&f);
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
    ts_storefx_free(&f);
}
END_TEST

START_TEST(test_public_vs_full_event)
{
    struct ts_storefx f;
    ts_storefx_init(&f);
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
    ts_storefx_free(&f);
}
END_TEST

/* Builds a store snapshot by hand: a locked thread, a hidden comment. */
static void restore_crafted(struct ts_storefx *f)
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

/* Restoring holds the snapshot, the state being built and one record at a
 * time, never a decoded copy of the whole snapshot: that copy, about the
 * size of the store again, once freed stayed resident as holes under the
 * new records (a node restarted at a million comments held 2.5 times its
 * store until the heap happened to be trimmed). */
START_TEST(test_restore_peak_heap)
{
    enum { N = 20000 };
    struct ts_storefx a, b;
    ts_storefx_init(&a);
    char body[240], thread[32], key[32];
    memset(body, 'x', sizeof(body) - 1);
    body[sizeof(body) - 1] = '\0';
    for (int i = 0; i < N; i++) {
        snprintf(thread, sizeof(thread), "t/%d", i % 50);
        snprintf(key, sizeof(key), "k%d", i);
        ck_assert_int_eq(post(&a, (uint64_t)i + 1, i, key, thread, 0, body).status, TS_OK);
    }
    uint8_t *buf;
    size_t len;
    ck_assert_int_eq(ts_store_snapshot(a.s, &buf, &len), TS_OK);
    char da[65], db[65];
    ts_store_digest(a.s, da);
    ts_storefx_free(&a);
    ts_storefx_init(&b);
    ts_testheap_start();
    ck_assert_int_eq(ts_store_restore(b.s, buf, len), TS_OK);
    ts_testheap_stop();
    size_t mem = ts_store_memory(b.s);
    ck_assert_uint_eq(ts_store_comment_count(b.s), N);
    ts_store_digest(b.s, db);
    ck_assert_str_eq(da, db);
    /* the state's own growth (arrays and maps doubling) and the record
     * scratch allowed for */
    ck_assert_msg(ts_testheap_peak() <= (long long)(mem + mem / 4 + (256u << 10)),
                  "restore peaked at %lld bytes over a store of %zu", ts_testheap_peak(), mem);
    free(buf);
    ts_storefx_free(&b);
}
END_TEST

START_TEST(test_locked_thread)
{
    struct ts_storefx f;
    ts_storefx_init(&f);
    restore_crafted(&f);
    ck_assert_uint_eq(ts_store_last_index(f.s), 20);
    struct ts_store_result r = post(&f, 21, 1, "a", "t/locked", 0, "x");
    ck_assert_int_eq(r.status, TS_E_THREAD_LOCKED);
    ck_assert_uint_eq(ts_evlog_end_pos(f.log), 0);
    ck_assert_uint_eq(ts_store_comment_count(f.s), 1);
    /* An index not above the last one is a caller bug. */
    ck_assert_int_eq(ts_store_apply(f.s, 21, (const uint8_t *)"", 0, &r), TS_E_INVALID_ARGUMENT);
    ts_storefx_free(&f);
}
END_TEST

/* Posts n comments at entries 1..n over `threads` threads, each a body of
 * body_len bytes that starts with its key. */
static void fill(struct ts_storefx *f, uint64_t n, size_t body_len, unsigned threads)
{
    char key[32], thread[32], *body = malloc(body_len + 1);
    ck_assert_ptr_nonnull(body);
    memset(body, 'b', body_len);
    body[body_len] = '\0';
    for (uint64_t i = 1; i <= n; i++) {
        snprintf(key, sizeof(key), "k%llu", (unsigned long long)i);
        snprintf(thread, sizeof(thread), "t/%llu", (unsigned long long)(i % threads));
        memcpy(body, key, strlen(key));
        ck_assert_int_eq(post(f, i, (int64_t)i, key, thread, 0, body).status, TS_OK);
    }
    free(body);
}

/* A state of many records, each packed on its own into the snapshot,
 * gives the bytes a whole-message pack would (ts_storefx_snapshot) and
 * restores. */
START_TEST(test_snapshot_large)
{
    struct ts_storefx f, g;
    ts_storefx_init(&f);
    ts_storefx_init(&g);
    fill(&f, 3000, 255, 5);
    uint8_t *snap;
    size_t len;
    ts_storefx_snapshot(&f, &snap, &len);
    ck_assert_uint_gt(len, (size_t)3000 * 255);
    ck_assert_int_eq(ts_store_restore(g.s, snap, len), TS_OK);
    char d1[65], d2[65];
    ts_store_digest(f.s, d1);
    ts_store_digest(g.s, d2);
    ck_assert_str_eq(d1, d2);
    free(snap);
    ts_storefx_free(&f);
    ts_storefx_free(&g);
}
END_TEST

START_TEST(test_snapshot_restore_digest)
{
    struct ts_storefx f, g;
    ts_storefx_init(&f);
    ts_storefx_init(&g);
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
    ts_storefx_snapshot(&f, &snap, &len);
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
    ts_storefx_free(&f);
    ts_storefx_free(&g);
}
END_TEST

/* The Raft snapshot is serialised in a forked child, which has no
 * fork-private maps (comment_by_id, idem_by_key: ts_map.h): the child's
 * image is the parent's, byte for byte, replies and idempotency entries
 * included. A serialiser that looked into such a map would crash the
 * child. */
START_TEST(test_snapshot_in_forked_child)
{
    struct ts_storefx f;
    ts_storefx_init(&f);
    char key[32], thread[32];
    for (uint64_t i = 1; i <= 200; i++) {
        snprintf(key, sizeof(key), "k%llu", (unsigned long long)i);
        snprintf(thread, sizeof(thread), "t/%llu", (unsigned long long)(i % 5));
        uint64_t parent = i > 10 && i % 2 == 0 ? i - 5 : 0;
        ck_assert_int_eq(post(&f, i, (int64_t)i, key, thread, parent, "body").status, TS_OK);
    }
    uint8_t *snap;
    size_t len;
    ck_assert_int_eq(ts_store_snapshot(f.s, &snap, &len), TS_OK);
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(fds[0]);
        uint8_t *img;
        size_t n;
        _exit(ts_store_snapshot(f.s, &img, &n) == TS_OK && ts_file_write_full(fds[1], img, n) == 0
                  ? 0
                  : 1);
    }
    close(fds[1]);
    uint8_t *got = malloc(len + 1);
    ck_assert_ptr_nonnull(got);
    size_t n = 0;
    ssize_t k;
    while ((k = read(fds[0], got + n, len + 1 - n)) > 0)
        n += (size_t)k;
    close(fds[0]);
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFEXITED(st));
    ck_assert_int_eq(WEXITSTATUS(st), 0);
    ck_assert_uint_eq(n, len);
    ck_assert_mem_eq(got, snap, len);
    free(got);
    free(snap);
    ts_storefx_free(&f);
}
END_TEST

/* A restore that may discard its buffer builds the same state as one
 * that may not, and gives the buffer's pages back as it goes: pages
 * inside the records read as zeros afterwards (a private anonymous
 * mapping refills released pages with zeros), so the image and the state
 * are not both resident at a restart. */
START_TEST(test_restore_discard_releases_image)
{
    struct ts_storefx f, g, h;
    ts_storefx_init(&f);
    ts_storefx_init(&g);
    ts_storefx_init(&h);
    fill(&f, 20000, 399, 13); /* about 9 MB of snapshot */
    uint8_t *snap;
    size_t len;
    ck_assert_int_eq(ts_store_snapshot(f.s, &snap, &len), TS_OK);
    ck_assert_uint_gt(len, 8u << 20);
    uint8_t *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(m, MAP_FAILED);
    memcpy(m, snap, len);
    ck_assert_int_eq(ts_store_restore(g.s, snap, len), TS_OK);
    ck_assert_int_eq(ts_store_restore_discard(h.s, m, len), TS_OK);
    char d1[65], d2[65], d3[65];
    ts_store_digest(f.s, d1);
    ts_store_digest(g.s, d2);
    ts_store_digest(h.s, d3);
    ck_assert_str_eq(d1, d2);
    ck_assert_str_eq(d1, d3);
    ck_assert_uint_eq(ts_store_comment_count(h.s), 20000);
    /* The middle of the image (comments) was released. */
    size_t pg = 4096, mid = (len / 2) & ~(pg - 1); /* within a page, whatever its size */
    for (size_t i = 0; i < pg; i++)
        ck_assert_msg(m[mid + i] == 0, "byte %zu of the middle page kept", i);
    /* The plain restore leaves its buffer alone. */
    ck_assert_int_ne(memcmp(snap + mid, m + mid, pg), 0);
    munmap(m, len);
    free(snap);
    ts_storefx_free(&f);
    ts_storefx_free(&g);
    ts_storefx_free(&h);
}
END_TEST

START_TEST(test_same_log_same_digest)
{
    struct ts_storefx a, b;
    ts_storefx_init(&a);
    ts_storefx_init(&b);
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
    ts_storefx_free(&a);
    ts_storefx_free(&b);
}
END_TEST

START_TEST(test_undecodable_payload)
{
    struct ts_storefx f;
    ts_storefx_init(&f);
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
    ts_storefx_free(&f);
}
END_TEST

/* An entry of a later release (Command.level above TS_STORE_LEVEL, or an
 * op this release does not know) is refused as a whole: the apply fails,
 * nothing changes, the index is not consumed, so the same entry applies
 * once the node is upgraded; entries at this level apply as before. */
START_TEST(test_entry_of_later_release)
{
    struct ts_storefx f;
    ts_storefx_init(&f);
    ck_assert_int_eq(post(&f, 1, 1, "a", "t/1", 0, "x").status, TS_OK);
    char before[65], after[65];
    ts_store_digest(f.s, before);

    Threadsync__Post p = THREADSYNC__POST__INIT;
    p.idempotency_key = "b";
    p.thread_key = "t/1";
    p.author_name = "Ben";
    p.body = "a reply";
    uint8_t *enc;
    size_t enc_len;
    ck_assert_int_eq(ts_store_encode_post(&p, 2, &enc, &enc_len), TS_OK);
    uint8_t *buf = malloc(enc_len + 3);
    ck_assert_ptr_nonnull(buf);
    memcpy(buf, enc, enc_len);
    free(enc);
    /* Command.level (46, varint): a field appended to a message is one of
     * its fields, as protobuf concatenation defines. */
    buf[enc_len] = 0xf0;
    buf[enc_len + 1] = 0x02;
    buf[enc_len + 2] = TS_STORE_LEVEL + 1;
    struct ts_store_result r;
    ck_assert_int_eq(ts_store_apply(f.s, 2, buf, enc_len + 3, &r), TS_E_UNSUPPORTED_VERSION);
    /* time_ms 1, then field 99 (length-delimited "x"): an op of a later
     * release, which this one unpacks as no op and an unknown field. */
    const uint8_t unknown_op[] = {0x08, 0x01, 0x9a, 0x06, 0x01, 'x'};
    ck_assert_int_eq(ts_store_apply(f.s, 2, unknown_op, sizeof(unknown_op), &r),
                     TS_E_UNSUPPORTED_VERSION);
    ts_store_digest(f.s, after);
    ck_assert_str_eq(before, after);
    ck_assert_uint_eq(ts_store_last_index(f.s), 1);
    ck_assert_uint_eq(ts_evlog_end_pos(f.log), 1);

    /* This release's level, stated: applies, at the index refused above. */
    buf[enc_len + 2] = TS_STORE_LEVEL;
    ck_assert_int_eq(ts_store_apply(f.s, 2, buf, enc_len + 3, &r), TS_OK);
    ck_assert_int_eq(r.status, TS_OK);
    ck_assert_uint_eq(r.seq, 2);
    ck_assert_uint_eq(ts_store_last_index(f.s), 2);
    ck_assert_uint_eq(ts_store_comment_count(f.s), 2);
    free(buf);
    ts_storefx_free(&f);
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
        raw += (size_t)7 * 8 + strlen(p.author_name) + strlen(p.author_email) + 250;
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

/* ---- moderation, authors' edits, bans, tokens ------------------------------ */

static void sha(const char *s, uint8_t out[32])
{
    unsigned n;
    ck_assert_int_eq(EVP_Digest(s, strlen(s), out, &n, EVP_sha256(), NULL), 1);
}

/* A Post with an edit key (may be NULL), as the leader proposes it. */
static struct ts_store_result post_ex(struct ts_storefx *f, uint64_t index, int64_t t,
                                      const char *ikey, const char *thread, const char *edit_key,
                                      int premoderate, int trusted)
{
    Threadsync__Post p = THREADSYNC__POST__INIT;
    p.idempotency_key = (char *)ikey;
    p.thread_key = (char *)thread;
    p.author_name = "Ann";
    p.author_email = "Ann@Example.org";
    p.body = "original words";
    uint8_t h[32];
    Threadsync__State__Command cmd = THREADSYNC__STATE__COMMAND__INIT;
    cmd.time_ms = t;
    cmd.op_case = THREADSYNC__STATE__COMMAND__OP_POST;
    cmd.post = &p;
    cmd.actor = "poster";
    cmd.premoderate = premoderate;
    cmd.trusted = trusted;
    if (edit_key) {
        sha(edit_key, h);
        cmd.edit_key_hash.data = h;
        cmd.edit_key_hash.len = 32;
    }
    return ts_storefx_apply(f, index, &cmd);
}

/* A CommentChange: a moderator's (edit_key NULL) or an author's. */
static struct ts_store_result change(struct ts_storefx *f, uint64_t index, int64_t t, uint64_t id,
                                     Threadsync__State__ChangeKind kind, const char *body,
                                     const char *edit_key, int64_t window)
{
    Threadsync__State__CommentChange cc = THREADSYNC__STATE__COMMENT_CHANGE__INIT;
    cc.comment_id = id;
    cc.kind = kind;
    cc.body = (char *)body;
    uint8_t h[32];
    if (edit_key) {
        sha(edit_key, h);
        cc.edit_key_hash.data = h;
        cc.edit_key_hash.len = 32;
        cc.edit_window_ms = window;
    }
    Threadsync__State__Command cmd = THREADSYNC__STATE__COMMAND__INIT;
    cmd.time_ms = t;
    cmd.op_case = THREADSYNC__STATE__COMMAND__OP_COMMENT_CHANGE;
    cmd.comment_change = &cc;
    cmd.actor = edit_key ? "poster" : "mod-alice";
    return ts_storefx_apply(f, index, &cmd);
}

static struct ts_store_result grant(struct ts_storefx *f, uint64_t index, const char *name,
                                    int role, const char *token)
{
    uint8_t h[32];
    sha(token, h);
    Threadsync__State__TokenGrant g = THREADSYNC__STATE__TOKEN_GRANT__INIT;
    g.name = (char *)name;
    g.role = (Threadsync__Role)role;
    g.token_hash.data = h;
    g.token_hash.len = 32;
    Threadsync__State__Command cmd = THREADSYNC__STATE__COMMAND__INIT;
    cmd.time_ms = (int64_t)index * 10;
    cmd.op_case = THREADSYNC__STATE__COMMAND__OP_TOKEN_GRANT;
    cmd.token_grant = &g;
    cmd.actor = "admin";
    return ts_storefx_apply(f, index, &cmd);
}

static struct ts_store_result revoke_token(struct ts_storefx *f, uint64_t index, const char *name)
{
    Threadsync__TokenRevoke r = THREADSYNC__TOKEN_REVOKE__INIT;
    r.name = (char *)name;
    Threadsync__State__Command cmd = THREADSYNC__STATE__COMMAND__INIT;
    cmd.time_ms = (int64_t)index * 10;
    cmd.op_case = THREADSYNC__STATE__COMMAND__OP_TOKEN_REVOKE;
    cmd.token_revoke = &r;
    cmd.actor = "admin";
    return ts_storefx_apply(f, index, &cmd);
}

static Threadsync__Comment get_comment(struct ts_storefx *f, uint64_t id)
{
    Threadsync__Comment c;
    ck_assert_int_eq(ts_store_comment(f->s, id, &c), TS_OK);
    return c;
}

static Threadsync__Thread get_thread(struct ts_storefx *f, const char *key)
{
    Threadsync__Thread t;
    ck_assert_int_eq(ts_store_thread_by_key(f->s, key, &t), TS_OK);
    return t;
}

START_TEST(test_hide_unhide_delete)
{
    struct ts_storefx f;
    ts_storefx_init(&f);
    ck_assert_int_eq(post_ex(&f, 1, 100, "k1", "m/a", "key1", 0, 0).status, TS_OK);
    ck_assert_int_eq(post_ex(&f, 2, 110, "k2", "m/a", "key2", 0, 0).status, TS_OK);
    Threadsync__Thread t = get_thread(&f, "m/a");
    ck_assert_uint_eq(t.comment_count, 2);
    uint64_t tv = t.version;

    /* hide: one event with both new states; the public one has no body,
     * name, e-mail nor moderator */
    struct ts_store_result r = change(&f, 3, 120, 1, K_HIDE, NULL, NULL, 0);
    ck_assert_int_eq(r.status, TS_OK);
    ck_assert(r.changed);
    ck_assert_uint_eq(r.seq, 3);
    ck_assert_int_eq(r.comment_status, THREADSYNC__STATUS__HIDDEN);
    Threadsync__Comment c = get_comment(&f, 1);
    ck_assert_int_eq(c.status, THREADSYNC__STATUS__HIDDEN);
    ck_assert_uint_eq(c.version, 2);
    ck_assert_str_eq(c.moderated_by, "mod-alice");
    ck_assert_str_eq(c.body, "original words"); /* moderators still see it */
    t = get_thread(&f, "m/a");
    ck_assert_uint_eq(t.comment_count, 1);
    ck_assert_uint_eq(t.version, tv + 1);
    ck_assert_uint_eq(ts_evlog_end_pos(f.log), 3);
    Threadsync__Event *pub = event_at(&f, 2, 0), *full = event_at(&f, 2, 1);
    ck_assert_uint_eq(pub->seq, 3);
    ck_assert_int_eq(pub->comment->status, THREADSYNC__STATUS__HIDDEN);
    ck_assert_str_eq(pub->comment->body, "");
    ck_assert_str_eq(pub->comment->author_name, "");
    ck_assert_str_eq(pub->comment->author_email, "");
    ck_assert_str_eq(pub->comment->moderated_by, "");
    ck_assert_uint_eq(pub->thread->comment_count, 1);
    ck_assert_uint_eq(pub->thread->version, tv + 1);
    ck_assert_str_eq(full->comment->body, "original words");
    ck_assert_str_eq(full->comment->moderated_by, "mod-alice");
    threadsync__event__free_unpacked(pub, NULL);
    threadsync__event__free_unpacked(full, NULL);

    /* history: the post's own public event no longer carries the text (a
     * subscriber replaying from 0 never gets it); the full one still does */
    pub = event_at(&f, 0, 0);
    full = event_at(&f, 0, 1);
    ck_assert_uint_eq(pub->comment->id, 1);
    ck_assert_str_eq(pub->comment->body, "");
    ck_assert_str_eq(pub->comment->author_name, "");
    ck_assert_int_eq(pub->comment->status, THREADSYNC__STATUS__HIDDEN);
    ck_assert_uint_eq(pub->comment->version, 1);
    ck_assert_str_eq(full->comment->body, "original words");
    threadsync__event__free_unpacked(pub, NULL);
    threadsync__event__free_unpacked(full, NULL);
    /* the other comment's event is untouched */
    pub = event_at(&f, 1, 0);
    ck_assert_str_eq(pub->comment->body, "original words");
    threadsync__event__free_unpacked(pub, NULL);

    /* hide again: nothing changes, no event */
    r = change(&f, 4, 130, 1, K_HIDE, NULL, NULL, 0);
    ck_assert_int_eq(r.status, TS_OK);
    ck_assert(!r.changed);
    ck_assert_uint_eq(ts_evlog_end_pos(f.log), 3);
    ck_assert_uint_eq(get_comment(&f, 1).version, 2);

    /* unhide */
    r = change(&f, 5, 140, 1, K_UNHIDE, NULL, NULL, 0);
    ck_assert(r.changed);
    ck_assert_int_eq(get_comment(&f, 1).status, THREADSYNC__STATUS__VISIBLE);
    ck_assert_uint_eq(get_thread(&f, "m/a").comment_count, 2);

    /* delete: a tombstone keeping id, thread, parent and times */
    r = change(&f, 6, 150, 1, K_DELETE, NULL, NULL, 0);
    ck_assert(r.changed);
    c = get_comment(&f, 1);
    ck_assert_int_eq(c.status, THREADSYNC__STATUS__DELETED);
    ck_assert_str_eq(c.body, "");
    ck_assert_str_eq(c.author_name, "");
    ck_assert_str_eq(c.author_email, "");
    ck_assert_uint_eq(c.thread_id, 1);
    ck_assert_int_eq(c.created_at_ms, 100);
    ck_assert_uint_eq(c.version, 4);
    ck_assert_uint_eq(get_thread(&f, "m/a").comment_count, 1);
    ck_assert_uint_eq(ts_store_comment_count(f.s), 2);
    /* and the other comment is untouched */
    ck_assert_str_eq(get_comment(&f, 2).body, "original words");
    ts_storefx_free(&f);
}
END_TEST

START_TEST(test_refused_transitions)
{
    struct ts_storefx f;
    ts_storefx_init(&f);
    post_ex(&f, 1, 100, "k1", "m/r", NULL, 1, 0); /* PENDING */
    post_ex(&f, 2, 100, "k2", "m/r", NULL, 0, 0); /* VISIBLE */
    ck_assert_int_eq(get_comment(&f, 1).status, THREADSYNC__STATUS__PENDING);
    struct {
        uint64_t id;
        Threadsync__State__ChangeKind kind;
    } bad[] = {{1, K_UNHIDE}, {3, K_APPROVE}};
    struct ts_store_result r;
    for (size_t i = 0; i < 2; i++) {
        r = change(&f, 10 + i, 200, bad[i].id, bad[i].kind, NULL, NULL, 0);
        ck_assert_int_eq(r.status, bad[i].id == 3 ? TS_E_NOT_FOUND : TS_E_INVALID_ARGUMENT);
        ck_assert_str_eq(r.field, bad[i].id == 3 ? "comment_id" : "status");
    }
    /* HIDDEN cannot be approved (unhide it) */
    ck_assert(change(&f, 20, 200, 2, K_HIDE, NULL, NULL, 0).changed);
    r = change(&f, 21, 200, 2, K_APPROVE, NULL, NULL, 0);
    ck_assert_int_eq(r.status, TS_E_INVALID_ARGUMENT);
    ck_assert_str_eq(r.field, "status");
    ck_assert_ptr_nonnull(r.message);
    /* DELETED refuses everything but a repeated delete */
    ck_assert(change(&f, 22, 200, 2, K_DELETE, NULL, NULL, 0).changed);
    uint64_t end = ts_evlog_end_pos(f.log);
    Threadsync__State__ChangeKind kinds[] = {K_APPROVE, K_HIDE, K_UNHIDE, K_EDIT};
    for (size_t i = 0; i < 4; i++) {
        r = change(&f, 30 + i, 200, 2, kinds[i], "new", NULL, 0);
        ck_assert_int_eq(r.status, TS_E_INVALID_ARGUMENT);
        ck_assert_str_eq(r.field, "status");
    }
    r = change(&f, 40, 200, 2, K_DELETE, NULL, NULL, 0);
    ck_assert_int_eq(r.status, TS_OK);
    ck_assert(!r.changed);
    ck_assert_uint_eq(ts_evlog_end_pos(f.log), end);
    ck_assert_uint_eq(get_comment(&f, 2).version, 3);
    /* an empty body is refused */
    r = change(&f, 41, 200, 1, K_EDIT, "", NULL, 0);
    ck_assert_int_eq(r.status, TS_E_INVALID_ARGUMENT);
    ck_assert_str_eq(r.field, "body");
    ts_storefx_free(&f);
}
END_TEST

START_TEST(test_premoderation)
{
    struct ts_storefx f;
    ts_storefx_init(&f);
    post_ex(&f, 1, 100, "k1", "m/p", NULL, 0, 0);
    ck_assert(ts_storefx_thread_act(&f, 2, 2, "m/p", THREADSYNC__THREAD_ACTION__THREAD_PREMODERATE)
                  .changed);
    Threadsync__Thread t = get_thread(&f, "m/p");
    ck_assert(t.premoderated);
    ck_assert_str_eq(t.moderated_by, "mod-bob");
    /* the thread event's public form does not name the moderator */
    Threadsync__Event *pub = event_at(&f, 1, 0);
    ck_assert(pub->thread->premoderated);
    ck_assert_str_eq(pub->thread->moderated_by, "");
    ck_assert_ptr_null(pub->comment);
    threadsync__event__free_unpacked(pub, NULL);

    struct ts_store_result r = post_ex(&f, 3, 110, "k3", "m/p", NULL, 0, 0);
    ck_assert_int_eq(r.comment_status, THREADSYNC__STATUS__PENDING);
    ck_assert_uint_eq(get_thread(&f, "m/p").comment_count, 1);
    /* a moderator's own post is not queued */
    r = post_ex(&f, 4, 110, "k4", "m/p", NULL, 0, 1);
    ck_assert_int_eq(r.comment_status, THREADSYNC__STATUS__VISIBLE);
    /* the server-wide default, on another thread */
    r = post_ex(&f, 5, 110, "k5", "m/q", NULL, 1, 0);
    ck_assert_int_eq(r.comment_status, THREADSYNC__STATUS__PENDING);
    ck_assert_uint_eq(get_thread(&f, "m/q").comment_count, 0);

    /* the queue, oldest first, with paging and a thread filter */
    Threadsync__Comment out[4];
    size_t n;
    int more;
    ck_assert_int_eq(ts_store_pending(f.s, 0, 0, 4, out, &n, &more), TS_OK);
    ck_assert_uint_eq(n, 2);
    ck_assert(!more);
    ck_assert_uint_eq(out[0].id, 3);
    ck_assert_uint_eq(out[1].id, 5);
    ck_assert_str_eq(out[0].author_email, "Ann@Example.org");
    ck_assert_int_eq(ts_store_pending(f.s, 0, 0, 1, out, &n, &more), TS_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert(more);
    ck_assert_int_eq(ts_store_pending(f.s, 0, 3, 4, out, &n, &more), TS_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_uint_eq(out[0].id, 5);
    ck_assert_int_eq(ts_store_pending(f.s, get_thread(&f, "m/q").id, 0, 4, out, &n, &more), TS_OK);
    ck_assert_uint_eq(n, 1);

    /* approve */
    r = change(&f, 6, 120, 3, K_APPROVE, NULL, NULL, 0);
    ck_assert(r.changed);
    ck_assert_uint_eq(get_thread(&f, "m/p").comment_count, 3);
    ck_assert_int_eq(ts_store_pending(f.s, 0, 0, 4, out, &n, &more), TS_OK);
    ck_assert_uint_eq(n, 1);
    /* hiding a PENDING comment takes it out of the queue */
    ck_assert(change(&f, 7, 120, 5, K_HIDE, NULL, NULL, 0).changed);
    ck_assert_int_eq(ts_store_pending(f.s, 0, 0, 4, out, &n, &more), TS_OK);
    ck_assert_uint_eq(n, 0);
    ck_assert_uint_eq(get_thread(&f, "m/q").comment_count, 0);
    ts_storefx_free(&f);
}
END_TEST

START_TEST(test_author_edit_key)
{
    struct ts_storefx f;
    ts_storefx_init(&f);
    const int64_t W = 1000;
    post_ex(&f, 1, 100, "k1", "m/e", "secret-1", 0, 0);
    post_ex(&f, 2, 100, "k2", "m/e", "secret-2", 0, 0);
    /* the right key within the window */
    struct ts_store_result r = change(&f, 3, 600, 1, K_EDIT, "better words", "secret-1", W);
    ck_assert_int_eq(r.status, TS_OK);
    ck_assert(r.changed);
    Threadsync__Comment c = get_comment(&f, 1);
    ck_assert_str_eq(c.body, "better words");
    ck_assert_int_eq(c.edited_at_ms, 600);
    ck_assert_uint_eq(c.version, 2);
    ck_assert_str_eq(c.moderated_by, ""); /* an author is not a moderator */
    ck_assert_str_eq(c.author_email, "Ann@Example.org");
    /* another comment's key */
    r = change(&f, 4, 600, 1, K_EDIT, "hijack", "secret-2", W);
    ck_assert_int_eq(r.status, TS_E_FORBIDDEN);
    ck_assert_str_eq(r.field, "edit_key");
    r = change(&f, 5, 600, 2, K_DELETE, NULL, "secret-1", W);
    ck_assert_int_eq(r.status, TS_E_FORBIDDEN);
    /* after the window (created 100, window 1000: 1101 is too late) */
    r = change(&f, 6, 1101, 1, K_EDIT, "too late", "secret-1", W);
    ck_assert_int_eq(r.status, TS_E_FORBIDDEN);
    ck_assert_str_eq(r.field, "edit_key");
    ck_assert_str_eq(get_comment(&f, 1).body, "better words");
    /* authors may not moderate */
    r = change(&f, 7, 600, 2, K_HIDE, NULL, "secret-2", W);
    ck_assert_int_eq(r.status, TS_E_INVALID_ARGUMENT);
    /* a locked thread refuses authors' edits, not their deletes */
    ck_assert(
        ts_storefx_thread_act(&f, 8, 8, "m/e", THREADSYNC__THREAD_ACTION__THREAD_LOCK).changed);
    r = change(&f, 9, 700, 2, K_EDIT, "while locked", "secret-2", W);
    ck_assert_int_eq(r.status, TS_E_THREAD_LOCKED);
    r = post_ex(&f, 10, 700, "k10", "m/e", NULL, 0, 0);
    ck_assert_int_eq(r.status, TS_E_THREAD_LOCKED);
    r = change(&f, 11, 700, 2, K_DELETE, NULL, "secret-2", W);
    ck_assert(r.changed);
    ck_assert_int_eq(get_comment(&f, 2).status, THREADSYNC__STATUS__DELETED);
    /* a moderator edits at any time */
    r = change(&f, 12, 99999, 1, K_EDIT, "moderated words", NULL, 0);
    ck_assert(r.changed);
    ck_assert_str_eq(get_comment(&f, 1).moderated_by, "mod-alice");

    /* a retried post gets a new key, which replaces the first */
    ck_assert(
        ts_storefx_thread_act(&f, 13, 13, "m/e", THREADSYNC__THREAD_ACTION__THREAD_UNLOCK).changed);
    r = post_ex(&f, 14, 800, "k1", "m/e", "secret-1b", 0, 0);
    ck_assert_uint_eq(r.comment_id, 1);
    ck_assert_int_eq(change(&f, 15, 900, 1, K_EDIT, "x", "secret-1", W).status, TS_E_FORBIDDEN);
    ck_assert_int_eq(change(&f, 16, 900, 1, K_EDIT, "y", "secret-1b", W).status, TS_OK);
    ts_storefx_free(&f);
}
END_TEST

START_TEST(test_author_edit_repending)
{
    struct ts_storefx f;
    ts_storefx_init(&f);
    post_ex(&f, 1, 100, "k1", "m/rp", "s1", 1, 0);
    ck_assert(change(&f, 2, 110, 1, K_APPROVE, NULL, NULL, 0).changed);
    ck_assert_uint_eq(get_thread(&f, "m/rp").comment_count, 1);
    /* approval was of other words: back to the queue */
    Threadsync__State__CommentChange cc = THREADSYNC__STATE__COMMENT_CHANGE__INIT;
    uint8_t h[32];
    sha("s1", h);
    cc.comment_id = 1;
    cc.kind = K_EDIT;
    cc.body = "now with spam";
    cc.edit_key_hash.data = h;
    cc.edit_key_hash.len = 32;
    cc.edit_window_ms = 1000;
    Threadsync__State__Command cmd = THREADSYNC__STATE__COMMAND__INIT;
    cmd.time_ms = 120;
    cmd.op_case = THREADSYNC__STATE__COMMAND__OP_COMMENT_CHANGE;
    cmd.comment_change = &cc;
    cmd.premoderate = 1;
    struct ts_store_result r = ts_storefx_apply(&f, 3, &cmd);
    ck_assert(r.changed);
    ck_assert_int_eq(r.comment_status, THREADSYNC__STATUS__PENDING);
    ck_assert_uint_eq(get_thread(&f, "m/rp").comment_count, 0);
    ts_storefx_free(&f);
}
END_TEST

START_TEST(test_bans)
{
    struct ts_storefx f;
    ts_storefx_init(&f);
    /* e-mails match without regard to case */
    struct ts_store_result r = ts_storefx_ban(&f, 1, 1000, "mod-alice", "ANN@example.ORG", 500);
    ck_assert_int_eq(r.status, TS_OK);
    ck_assert_int_eq(r.until_ms, 1500);
    r = post_ex(&f, 2, 1200, "k2", "m/b", NULL, 0, 0);
    ck_assert_int_eq(r.status, TS_E_FORBIDDEN);
    ck_assert_str_eq(r.field, "author_email");
    ck_assert(ts_store_banned(f.s, "x", "ann@example.org", NULL, 1499, NULL, NULL));
    ck_assert(!ts_store_banned(f.s, "x", "ann@example.org", NULL, 1500, NULL, NULL));
    /* expired by command time */
    r = post_ex(&f, 3, 1500, "k3", "m/b", NULL, 0, 0);
    ck_assert_int_eq(r.status, TS_OK);
    /* a name ban, then lifted */
    ck_assert_int_eq(ts_storefx_ban(&f, 4, 2000, "mod-alice", "Bob", 10000).status, TS_OK);
    const char *field = NULL;
    int64_t until = 0;
    ck_assert(ts_store_banned(f.s, "Bob", "", NULL, 2001, &until, &field));
    ck_assert_str_eq(field, "author_name");
    ck_assert_int_eq(until, 12000);
    ck_assert(!ts_store_banned(f.s, "bob", "", NULL, 2001, NULL, NULL));
    r = ts_storefx_ban(&f, 5, 2100, "mod-alice", "Bob", 0);
    ck_assert(r.changed);
    ck_assert(!ts_store_banned(f.s, "Bob", "", NULL, 2101, NULL, NULL));
    /* a retry of a post made before the ban still gets its answer */
    ck_assert_int_eq(ts_storefx_ban(&f, 6, 2200, "mod-alice", "ann@example.org", 10000).status,
                     TS_OK);
    r = post_ex(&f, 7, 2300, "k3", "m/b", NULL, 0, 0);
    ck_assert_int_eq(r.status, TS_OK);
    ck_assert_uint_eq(r.comment_id, 3);
    ts_storefx_free(&f);
}
END_TEST

START_TEST(test_tokens)
{
    struct ts_storefx f;
    ts_storefx_init(&f);
    uint64_t gen = ts_store_auth_generation(f.s);
    ck_assert_int_eq(grant(&f, 1, "mod-1", THREADSYNC__ROLE__MODERATOR, "tok-1").status, TS_OK);
    ck_assert_uint_gt(ts_store_auth_generation(f.s), gen);
    uint8_t h[32];
    sha("tok-1", h);
    int role = 0;
    const char *name = NULL;
    ck_assert_int_eq(ts_store_token_check(f.s, h, &role, &name), TS_OK);
    ck_assert_int_eq(role, THREADSYNC__ROLE__MODERATOR);
    ck_assert_str_eq(name, "mod-1");
    sha("tok-2", h);
    ck_assert_int_eq(ts_store_token_check(f.s, h, &role, &name), TS_E_UNAUTHENTICATED);
    /* a name is used once */
    struct ts_store_result r = grant(&f, 2, "mod-1", THREADSYNC__ROLE__READER, "tok-2");
    ck_assert_int_eq(r.status, TS_E_INVALID_ARGUMENT);
    ck_assert_str_eq(r.field, "name");
    ck_assert_int_eq(grant(&f, 3, "bad name", THREADSYNC__ROLE__READER, "t").status,
                     TS_E_INVALID_ARGUMENT);
    ck_assert_int_eq(grant(&f, 4, "r", 9, "t").status, TS_E_INVALID_ARGUMENT);
    /* revoke: the hash no longer opens anything */
    gen = ts_store_auth_generation(f.s);
    r = revoke_token(&f, 5, "mod-1");
    ck_assert(r.changed);
    ck_assert_uint_gt(ts_store_auth_generation(f.s), gen);
    sha("tok-1", h);
    ck_assert_int_eq(ts_store_token_check(f.s, h, NULL, NULL), TS_E_UNAUTHENTICATED);
    ck_assert_int_eq(ts_store_token_state(f.s, "mod-1"), TS_STORE_TOKEN_REVOKED);
    ck_assert(!revoke_token(&f, 6, "mod-1").changed);
    /* a tokens-file name: a tombstone */
    ck_assert(revoke_token(&f, 7, "file-admin").changed);
    ck_assert_int_eq(ts_store_token_state(f.s, "file-admin"), TS_STORE_TOKEN_REVOKED);
    ck_assert_int_eq(ts_store_token_state(f.s, "nobody"), TS_STORE_TOKEN_NONE);
    ts_storefx_free(&f);
}
END_TEST

/* One log of every kind of command, with refusals and repeats in it. */
static size_t moderation_log(uint8_t **payloads, size_t *lens)
{
    size_t n = 0;
    srand(11);
    for (int i = 0; i < 300; i++) {
        Threadsync__State__Command cmd = THREADSYNC__STATE__COMMAND__INIT;
        Threadsync__Post p = THREADSYNC__POST__INIT;
        Threadsync__State__CommentChange cc = THREADSYNC__STATE__COMMENT_CHANGE__INIT;
        Threadsync__ModerateThread mt = THREADSYNC__MODERATE_THREAD__INIT;
        Threadsync__BanAuthor b = THREADSYNC__BAN_AUTHOR__INIT;
        Threadsync__State__TokenGrant g = THREADSYNC__STATE__TOKEN_GRANT__INIT;
        Threadsync__TokenRevoke tr = THREADSYNC__TOKEN_REVOKE__INIT;
        char key[16], thread[16], body[32], ek[16], name[16];
        uint8_t h[32];
        int op = rand() % 10;
        cmd.time_ms = 1000 + i * 10;
        cmd.actor = i % 2 ? "mod-a" : "mod-b";
        snprintf(thread, sizeof(thread), "t/%d", rand() % 4);
        snprintf(body, sizeof(body), "b%d", i);
        snprintf(ek, sizeof(ek), "e%d", rand() % 40);
        sha(ek, h);
        if (op < 4) {
            snprintf(key, sizeof(key), "k%d", rand() % 40);
            p.idempotency_key = key;
            p.thread_key = thread;
            p.author_name = rand() % 5 ? "Ann" : "Spammer";
            p.body = body;
            cmd.op_case = THREADSYNC__STATE__COMMAND__OP_POST;
            cmd.post = &p;
            cmd.premoderate = rand() % 3 == 0;
            cmd.edit_key_hash.data = h;
            cmd.edit_key_hash.len = 32;
        } else if (op < 8) {
            cc.comment_id = (uint64_t)(rand() % (i + 1)) + 1;
            cc.kind = (Threadsync__State__ChangeKind)(rand() % 5 + 1);
            cc.body = body;
            if (rand() % 3 == 0) {
                cc.edit_key_hash.data = h;
                cc.edit_key_hash.len = 32;
                cc.edit_window_ms = 500;
            }
            cmd.op_case = THREADSYNC__STATE__COMMAND__OP_COMMENT_CHANGE;
            cmd.comment_change = &cc;
        } else if (op == 8) {
            mt.thread_key = thread;
            mt.action = (Threadsync__ThreadAction)(rand() % 4 + 1);
            cmd.op_case = THREADSYNC__STATE__COMMAND__OP_MODERATE_THREAD;
            cmd.moderate_thread = &mt;
        } else {
            snprintf(name, sizeof(name), "n%d", rand() % 6);
            int t = rand() % 3;
            if (t == 0) {
                b.author = rand() % 2 ? "Spammer" : name;
                b.duration_ms = (uint64_t)(rand() % 2000);
                cmd.op_case = THREADSYNC__STATE__COMMAND__OP_BAN_AUTHOR;
                cmd.ban_author = &b;
            } else if (t == 1) {
                g.name = name;
                g.role = THREADSYNC__ROLE__READER;
                g.token_hash.data = h;
                g.token_hash.len = 32;
                cmd.op_case = THREADSYNC__STATE__COMMAND__OP_TOKEN_GRANT;
                cmd.token_grant = &g;
            } else {
                tr.name = name;
                cmd.op_case = THREADSYNC__STATE__COMMAND__OP_TOKEN_REVOKE;
                cmd.token_revoke = &tr;
            }
        }
        ck_assert_int_eq(ts_store_encode(&cmd, &payloads[n], &lens[n]), TS_OK);
        n++;
    }
    return n;
}

START_TEST(test_moderation_log_deterministic)
{
    static uint8_t *payloads[300];
    static size_t lens[300];
    size_t n = moderation_log(payloads, lens);
    struct ts_storefx a, b;
    ts_storefx_init(&a);
    ts_storefx_init(&b);
    int changes = 0, refusals = 0;
    for (size_t i = 0; i < n; i++) {
        struct ts_store_result ra, rb;
        ck_assert_int_eq(ts_store_apply(a.s, i + 1, payloads[i], lens[i], &ra), TS_OK);
        ck_assert_int_eq(ts_store_apply(b.s, i + 1, payloads[i], lens[i], &rb), TS_OK);
        ck_assert_int_eq(ra.status, rb.status);
        ck_assert_int_eq(ra.changed, rb.changed);
        changes += ra.changed;
        refusals += ra.status != TS_OK;
    }
    char da[65], db[65];
    ts_store_digest(a.s, da);
    ts_store_digest(b.s, db);
    ck_assert_str_eq(da, db);
    ck_assert_int_gt(changes, 50);
    ck_assert_int_gt(refusals, 10);
    ck_assert_uint_eq(ts_evlog_end_pos(a.log), ts_evlog_end_pos(b.log));

    /* Applied again (the same commands at later indexes, as repeated
     * commands would be): both replicas still agree. */
    for (size_t i = 0; i < n; i++) {
        struct ts_store_result ra, rb;
        ck_assert_int_eq(ts_store_apply(a.s, n + i + 1, payloads[i], lens[i], &ra), TS_OK);
        ck_assert_int_eq(ts_store_apply(b.s, n + i + 1, payloads[i], lens[i], &rb), TS_OK);
        ck_assert_int_eq(ra.status, rb.status);
    }
    ts_store_digest(a.s, da);
    ts_store_digest(b.s, db);
    ck_assert_str_eq(da, db);

    /* A snapshot carries it all: tokens, bans, flags, moderators, keys. */
    uint8_t *snap;
    size_t len;
    struct ts_storefx c;
    ts_storefx_init(&c);
    ck_assert_int_eq(ts_store_snapshot(a.s, &snap, &len), TS_OK);
    ck_assert_int_eq(ts_store_restore(c.s, snap, len), TS_OK);
    char dc[65];
    ts_store_digest(c.s, dc);
    ck_assert_str_eq(da, dc);
    free(snap);
    for (size_t i = 0; i < n; i++)
        free(payloads[i]);
    ts_storefx_free(&a);
    ts_storefx_free(&b);
    ts_storefx_free(&c);
}
END_TEST

/* The same hide applied twice (a repeated command) changes nothing the
 * second time, on every replica. */
START_TEST(test_same_moderation_twice)
{
    struct ts_storefx f;
    ts_storefx_init(&f);
    post_ex(&f, 1, 100, "k1", "m/t", NULL, 0, 0);
    Threadsync__State__CommentChange cc = THREADSYNC__STATE__COMMENT_CHANGE__INIT;
    cc.comment_id = 1;
    cc.kind = K_HIDE;
    Threadsync__State__Command cmd = THREADSYNC__STATE__COMMAND__INIT;
    cmd.time_ms = 200;
    cmd.op_case = THREADSYNC__STATE__COMMAND__OP_COMMENT_CHANGE;
    cmd.comment_change = &cc;
    cmd.actor = "m";
    ck_assert(ts_storefx_apply(&f, 2, &cmd).changed);
    char d1[65], d2[65];
    ts_store_digest(f.s, d1);
    uint64_t events = ts_evlog_end_pos(f.log);
    struct ts_store_result r = ts_storefx_apply(&f, 3, &cmd);
    ck_assert_int_eq(r.status, TS_OK);
    ck_assert(!r.changed);
    ts_store_digest(f.s, d2);
    ck_assert_str_eq(d1, d2);
    ck_assert_uint_eq(ts_evlog_end_pos(f.log), events);
    ts_storefx_free(&f);
}
END_TEST

START_TEST(test_snapshot_keeps_moderation)
{
    struct ts_storefx f, g;
    ts_storefx_init(&f);
    ts_storefx_init(&g);
    post_ex(&f, 1, 100, "k1", "m/s", "ek", 0, 0);
    post_ex(&f, 2, 100, "k2", "m/s", NULL, 1, 0);
    change(&f, 3, 110, 1, K_HIDE, NULL, NULL, 0);
    ts_storefx_thread_act(&f, 4, 4, "m/s", THREADSYNC__THREAD_ACTION__THREAD_LOCK);
    ts_storefx_ban(&f, 5, 120, "mod-alice", "spam@x.org", 100000);
    grant(&f, 6, "r1", THREADSYNC__ROLE__READER, "rtok");
    revoke_token(&f, 7, "file-name");
    uint8_t *snap;
    size_t len;
    ck_assert_int_eq(ts_store_snapshot(f.s, &snap, &len), TS_OK);
    ck_assert_int_eq(ts_store_restore(g.s, snap, len), TS_OK);
    free(snap);
    char d1[65], d2[65];
    ts_store_digest(f.s, d1);
    ts_store_digest(g.s, d2);
    ck_assert_str_eq(d1, d2);
    ck_assert_str_eq(get_comment(&g, 1).moderated_by, "mod-alice");
    ck_assert(get_thread(&g, "m/s").locked);
    ck_assert(ts_store_banned(g.s, "x", "SPAM@x.org", NULL, 130, NULL, NULL));
    uint8_t h[32];
    sha("rtok", h);
    ck_assert_int_eq(ts_store_token_check(g.s, h, NULL, NULL), TS_OK);
    ck_assert_int_eq(ts_store_token_state(g.s, "file-name"), TS_STORE_TOKEN_REVOKED);
    Threadsync__Comment out[2];
    size_t n;
    int more;
    ck_assert_int_eq(ts_store_pending(g.s, 0, 0, 2, out, &n, &more), TS_OK);
    ck_assert_uint_eq(n, 1);
    /* the edit key came along (the thread is locked, so delete) */
    ck_assert(change(&g, 8, 130, 1, K_DELETE, NULL, "ek", 1000).changed);
    ck_assert_int_eq(change(&g, 9, 130, 2, K_DELETE, NULL, "ek", 1000).status, TS_E_FORBIDDEN);
    ts_storefx_free(&f);
    ts_storefx_free(&g);
}
END_TEST

/* A gateway's post keeps its reader key on the comment (full view only),
 * through an edit and a snapshot (the digest covers it), not through a
 * delete; a ban on "reader:" + key refuses that reader's posts only; a
 * gateway grant survives a snapshot. */
START_TEST(test_reader_key)
{
    static const char rk[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    static const char rk2[] = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";
    struct ts_storefx f, g;
    ts_storefx_init(&f);
    ts_storefx_init(&g);
    Threadsync__Post p = THREADSYNC__POST__INIT;
    p.idempotency_key = "r1";
    p.thread_key = "m/rk";
    p.author_name = "Ann";
    p.body = "words";
    p.reader_key = (char *)rk;
    Threadsync__State__Command cmd = THREADSYNC__STATE__COMMAND__INIT;
    cmd.time_ms = 100;
    cmd.op_case = THREADSYNC__STATE__COMMAND__OP_POST;
    cmd.post = &p;
    ck_assert_int_eq(ts_storefx_apply(&f, 1, &cmd).status, TS_OK);
    Threadsync__Comment c = get_comment(&f, 1);
    ck_assert_str_eq(c.reader_key, rk);
    /* it hid something: the event log keeps a public form of its own */
    ck_assert_int_ne(ts_view_public_comment(&c), 0);
    ck_assert_str_eq(c.reader_key, "");
    /* once public, nothing is left to hide */
    ck_assert_int_eq(ts_view_public_comment(&c), 0);
    ck_assert(change(&f, 2, 110, 1, K_EDIT, "new words", NULL, 0).changed);
    ck_assert_str_eq(get_comment(&f, 1).reader_key, rk);
    /* A malformed key in an entry is refused, not stored. */
    p.idempotency_key = "r-bad";
    p.reader_key = "ABC";
    ck_assert_int_eq(ts_storefx_apply(&f, 3, &cmd).status, TS_E_INVALID_ARGUMENT);

    char ban_key[80];
    snprintf(ban_key, sizeof(ban_key), "reader:%s", rk);
    ck_assert_int_eq(ts_storefx_ban(&f, 4, 120, "mod-alice", ban_key, 1000).status, TS_OK);
    const char *field = NULL;
    ck_assert(ts_store_banned(f.s, "Other", "", rk, 130, NULL, &field));
    ck_assert_str_eq(field, "reader_key");
    ck_assert(!ts_store_banned(f.s, "Ann", "", rk2, 130, NULL, NULL));
    ck_assert(!ts_store_banned(f.s, "Ann", "", NULL, 130, NULL, NULL));
    p.idempotency_key = "r2";
    p.reader_key = (char *)rk;
    cmd.time_ms = 130;
    struct ts_store_result r = ts_storefx_apply(&f, 5, &cmd);
    ck_assert_int_eq(r.status, TS_E_FORBIDDEN);
    ck_assert_str_eq(r.field, "reader_key");
    p.reader_key = (char *)rk2;
    ck_assert_int_eq(ts_storefx_apply(&f, 6, &cmd).status, TS_OK);

    Threadsync__State__TokenGrant tg = THREADSYNC__STATE__TOKEN_GRANT__INIT;
    uint8_t h[32];
    sha("gw-token", h);
    tg.name = "edge";
    tg.role = THREADSYNC__ROLE__POSTER;
    tg.token_hash.data = h;
    tg.token_hash.len = 32;
    tg.gateway = 1;
    Threadsync__State__Command gc = THREADSYNC__STATE__COMMAND__INIT;
    gc.time_ms = 140;
    gc.op_case = THREADSYNC__STATE__COMMAND__OP_TOKEN_GRANT;
    gc.token_grant = &tg;
    ck_assert_int_eq(ts_storefx_apply(&f, 7, &gc).status, TS_OK);
    grant(&f, 8, "plain", THREADSYNC__ROLE__POSTER, "plain-token");
    ck_assert(ts_store_token_gateway(f.s, "edge"));
    ck_assert(!ts_store_token_gateway(f.s, "plain"));

    uint8_t *snap;
    size_t len;
    ck_assert_int_eq(ts_store_snapshot(f.s, &snap, &len), TS_OK);
    ck_assert_int_eq(ts_store_restore(g.s, snap, len), TS_OK);
    free(snap);
    char d1[65], d2[65];
    ts_store_digest(f.s, d1);
    ts_store_digest(g.s, d2);
    ck_assert_str_eq(d1, d2);
    ck_assert_str_eq(get_comment(&g, 1).reader_key, rk);
    ck_assert_str_eq(get_comment(&g, 6).reader_key, rk2);
    ck_assert(ts_store_token_gateway(g.s, "edge"));
    ck_assert(!ts_store_token_gateway(g.s, "plain"));

    /* The tombstone drops it with the author's text. */
    ck_assert(change(&f, 9, 150, 1, K_DELETE, NULL, NULL, 0).changed);
    ck_assert_str_eq(get_comment(&f, 1).reader_key, "");
    ts_storefx_free(&f);
    ts_storefx_free(&g);
}
END_TEST

/* A comment's changeable fields (edited_at, version, moderated_by) live in
 * its record only once they differ from a new comment's: whatever a
 * snapshot says, and whatever changes them, views and snapshots give them
 * back, and memory grows only for the comments that have them. */
START_TEST(test_comment_changed_fields)
{
    struct ts_storefx f, g;
    ts_storefx_init(&f);
    ts_storefx_init(&g);
    Threadsync__Thread t = THREADSYNC__THREAD__INIT, *tp = &t;
    t.id = 1;
    t.key = "t/x";
    Threadsync__Comment c[4], *cp[4];
    const uint64_t versions[] = {1, 0, 7, 1};
    const int64_t edited[] = {0, 0, 0, 55};
    for (int i = 0; i < 4; i++) {
        threadsync__comment__init(&c[i]);
        cp[i] = &c[i];
        c[i].id = (uint64_t)i + 2;
        c[i].thread_id = 1;
        c[i].author_name = "A";
        c[i].body = "b";
        c[i].version = versions[i];
        c[i].edited_at_ms = edited[i];
    }
    c[3].moderated_by = "mod-x";
    Threadsync__State__StoreSnapshot snap = THREADSYNC__STATE__STORE_SNAPSHOT__INIT;
    snap.last_index = 9;
    snap.n_threads = 1;
    snap.threads = &tp;
    snap.n_comments = 4;
    snap.comments = cp;
    uint8_t buf[1024];
    ck_assert_int_eq(
        ts_store_restore(f.s, buf, threadsync__state__store_snapshot__pack(&snap, buf)), TS_OK);
    for (int i = 0; i < 4; i++) {
        Threadsync__Comment v = get_comment(&f, (uint64_t)i + 2);
        ck_assert_uint_eq(v.version, versions[i]);
        ck_assert_int_eq(v.edited_at_ms, edited[i]);
        ck_assert_str_eq(v.moderated_by, i == 3 ? "mod-x" : "");
        ck_assert_str_eq(v.body, "b");
    }
    /* A moderator's hide gives an unchanged comment the fields: it costs
     * more from then on, and reads back; a delete keeps them. */
    size_t mem = ts_store_memory(f.s);
    ck_assert(change(&f, 10, 100, 2, K_HIDE, NULL, NULL, 0).changed);
    ck_assert_uint_gt(ts_store_memory(f.s), mem);
    Threadsync__Comment v = get_comment(&f, 2);
    ck_assert_uint_eq(v.version, 2);
    ck_assert_str_eq(v.moderated_by, "mod-alice");
    ck_assert_str_eq(v.body, "b");
    ck_assert_str_eq(v.author_name, "A");
    ck_assert(change(&f, 11, 100, 2, K_DELETE, NULL, NULL, 0).changed);
    v = get_comment(&f, 2);
    ck_assert_uint_eq(v.version, 3);
    ck_assert_str_eq(v.body, "");
    ck_assert(change(&f, 12, 200, 5, K_EDIT, "new", NULL, 0).changed);
    v = get_comment(&f, 5);
    ck_assert_uint_eq(v.version, 2);
    ck_assert_int_eq(v.edited_at_ms, 200);
    ck_assert_str_eq(v.moderated_by, "mod-alice");
    /* through a snapshot, the same state */
    uint8_t *out;
    size_t len;
    ck_assert_int_eq(ts_store_snapshot(f.s, &out, &len), TS_OK);
    ck_assert_int_eq(ts_store_restore(g.s, out, len), TS_OK);
    free(out);
    char d1[65], d2[65];
    ts_store_digest(f.s, d1);
    ts_store_digest(g.s, d2);
    ck_assert_str_eq(d1, d2);
    ck_assert_uint_eq(get_comment(&g, 3).version, 0);
    ck_assert_uint_eq(get_comment(&g, 4).version, 7);
    ts_storefx_free(&f);
    ts_storefx_free(&g);
}
END_TEST

/* The digest of a fixed moderation log (posts, edits, hides, deletes,
 * locks, bans, tokens), applied twice over and through a snapshot. Replicas
 * of different releases compare digests, so a change of the records' layout
 * must not change it: the value was what the release before the compact
 * comment records (ids and times in full, every text inline) computed,
 * until the audit trail (issue 16) joined the digest: this log's
 * moderation makes records, a content change no layout may cause. */
START_TEST(test_digest_stable)
{
    static uint8_t *payloads[300];
    static size_t lens[300];
    size_t n = moderation_log(payloads, lens);
    struct ts_storefx a, c;
    ts_storefx_init(&a);
    ts_storefx_init(&c);
    for (size_t round = 0; round < 2; round++)
        for (size_t i = 0; i < n; i++) {
            struct ts_store_result r;
            ck_assert_int_eq(ts_store_apply(a.s, round * n + i + 1, payloads[i], lens[i], &r),
                             TS_OK);
        }
    for (size_t i = 0; i < n; i++)
        free(payloads[i]);
    uint8_t *snap;
    size_t len;
    ck_assert_int_eq(ts_store_snapshot(a.s, &snap, &len), TS_OK);
    ck_assert_int_eq(ts_store_restore(c.s, snap, len), TS_OK);
    free(snap);
    char da[65], dc[65];
    ts_store_digest(a.s, da);
    ts_store_digest(c.s, dc);
    fprintf(stderr, "digest_stable: %s\n", da);
    ck_assert_str_eq(da, "1304f8f32988a48b27f955d767f67f203651f422b6d1ead7e7c6cf15d7b03c01");
    ck_assert_str_eq(dc, da);
    ts_storefx_free(&a);
    ts_storefx_free(&c);
}
END_TEST

/* The idempotency table over several FIFO blocks: entries expire from the
 * head (blocks freed as they empty), the survivors still answer retries and
 * open their comments to their edit keys (found by comment id), and an
 * emptied table starts again. */
START_TEST(test_idempotency_blocks)
{
    struct ts_storefx f;
    ts_storefx_init(&f);
    const int n = 1300; /* more than two blocks */
    const int64_t R = TS_STORE_IDEMPOTENCY_RETENTION_MS, W = R;
    char key[32], ek[32];
    for (int i = 1; i <= n; i++) {
        snprintf(key, sizeof(key), "key-%d", i);
        snprintf(ek, sizeof(ek), "edit-%d", i);
        ck_assert_int_eq(post_ex(&f, (uint64_t)i, i, key, "t/fifo", ek, 0, 0).status, TS_OK);
    }
    /* Retries of the first, a middle and the last post, and their keys. */
    const int probe[] = {1, 512, 513, 700, n};
    uint64_t idx = (uint64_t)n;
    for (size_t k = 0; k < sizeof(probe) / sizeof(probe[0]); k++) {
        snprintf(key, sizeof(key), "key-%d", probe[k]);
        snprintf(ek, sizeof(ek), "edit-%d", probe[k]);
        ck_assert(key_known(f.s, key));
        ck_assert_uint_eq(post_ex(&f, ++idx, n, key, "t/fifo", NULL, 0, 0).seq, (uint64_t)probe[k]);
        ck_assert_int_eq(change(&f, ++idx, n, (uint64_t)probe[k], K_EDIT, "e1", ek, W).status,
                         TS_OK);
    }
    ck_assert(!key_known(f.s, "key-0"));
    size_t mem_full = ts_store_memory(f.s);

    /* At R + 600 the first 600 keys (times 1..600) are gone: two blocks'
     * worth of entries are not, so one block is freed. */
    ck_assert_int_eq(post_ex(&f, ++idx, R + 600, "late-1", "t/fifo", NULL, 0, 0).status, TS_OK);
    ck_assert_uint_lt(ts_store_memory(f.s), mem_full);
    for (size_t k = 0; k < sizeof(probe) / sizeof(probe[0]); k++) {
        snprintf(key, sizeof(key), "key-%d", probe[k]);
        snprintf(ek, sizeof(ek), "edit-%d", probe[k]);
        int gone = probe[k] <= 600;
        ck_assert_int_eq(key_known(f.s, key), !gone);
        ck_assert_int_eq(change(&f, ++idx, R + 600, (uint64_t)probe[k], K_EDIT, "e2", ek, W).status,
                         gone ? TS_E_FORBIDDEN : TS_OK);
    }
    snprintf(key, sizeof(key), "key-%d", 1);
    struct ts_store_result r = post_ex(&f, ++idx, R + 600, key, "t/fifo", NULL, 0, 0);
    ck_assert_uint_eq(r.comment_id, idx); /* a new comment, the key long forgotten */

    /* A snapshot carries the survivors, in order. */
    struct ts_storefx g;
    ts_storefx_init(&g);
    uint8_t *snap;
    size_t len;
    ck_assert_int_eq(ts_store_snapshot(f.s, &snap, &len), TS_OK);
    ck_assert_int_eq(ts_store_restore(g.s, snap, len), TS_OK);
    free(snap);
    ck_assert(!key_known(g.s, "key-600"));
    ck_assert(key_known(g.s, "key-601"));
    ck_assert(key_known(g.s, "late-1"));
    ck_assert_int_eq(change(&g, ++idx, R + 600, 601, K_EDIT, "e3", "edit-601", W).status, TS_OK);

    /* Everything expires; the table then starts again mid-block. */
    ck_assert_int_eq(post_ex(&f, ++idx, 3 * R, "again", "t/fifo", "edit-again", 0, 0).status,
                     TS_OK);
    uint64_t again = idx;
    ck_assert(!key_known(f.s, "late-1"));
    ck_assert(!key_known(f.s, "key-1300"));
    ck_assert_uint_eq(post_ex(&f, ++idx, 3 * R, "again", "t/fifo", NULL, 0, 0).seq, again);
    ck_assert_int_eq(change(&f, ++idx, 3 * R, again, K_EDIT, "e4", "edit-again", W).status, TS_OK);
    ck_assert_int_eq(post_ex(&f, ++idx, 5 * R, "after", "t/fifo", NULL, 0, 0).status, TS_OK);
    ck_assert(!key_known(f.s, "again"));
    ck_assert(key_known(f.s, "after"));
    ts_storefx_free(&f);
    ts_storefx_free(&g);
}
END_TEST

/* ---- scoped idempotency keys and derived edit keys (this release's posts) ---- */

struct scoped_post {
    const char *token; /* its SHA-256 scopes the key */
    const char *key, *thread, *name, *email, *body;
    uint64_t parent;
    const uint8_t *secret; /* 32 bytes offered as the edit secret, or NULL */
};

/* A Post as this release's leader proposes it: the key's digest scoped to
 * the token, no edit key hash. */
static struct ts_store_result post_scoped(struct ts_storefx *f, uint64_t index, int64_t t,
                                          const struct scoped_post *sp)
{
    Threadsync__Post p = THREADSYNC__POST__INIT;
    p.idempotency_key = (char *)sp->key;
    p.thread_key = (char *)sp->thread;
    p.parent_id = sp->parent;
    p.author_name = (char *)(sp->name ? sp->name : "Ann");
    p.author_email = (char *)(sp->email ? sp->email : "ann@example.org");
    p.body = (char *)(sp->body ? sp->body : "words");
    uint8_t th[32], dg[TS_STORE_IDEM_DIGEST_LEN];
    sha(sp->token, th);
    ts_store_idempotency_digest(th, sp->key, dg);
    Threadsync__State__Command cmd = THREADSYNC__STATE__COMMAND__INIT;
    cmd.time_ms = t;
    cmd.op_case = THREADSYNC__STATE__COMMAND__OP_POST;
    cmd.post = &p;
    cmd.actor = "poster";
    cmd.idempotency_digest.data = dg;
    cmd.idempotency_digest.len = sizeof(dg);
    if (sp->secret) {
        cmd.edit_secret.data = (uint8_t *)sp->secret;
        cmd.edit_secret.len = 32;
    }
    return ts_storefx_apply(f, index, &cmd);
}

static const uint8_t secret_a[32] = {1, 2, 3}, secret_b[32] = {9, 9, 9};

/* The scoped key digest and the derived edit key are the bytes OpenSSL's
 * one-shot SHA256() and HMAC() give (what earlier releases computed, and
 * snapshots and answers already handed out carry), now that the store
 * hashes without them. */
START_TEST(test_digests_match_openssl)
{
    static const char label[] = "threadsync-idem-v2", edit_label[] = "threadsync-edit-v1";
    uint8_t th[32], dg[TS_STORE_IDEM_DIGEST_LEN], buf[128], h[32];
    sha("token-A", th);
    ts_store_idempotency_digest(th, "K-1", dg);
    memcpy(buf, label, sizeof(label));
    memcpy(buf + sizeof(label), th, 32);
    memcpy(buf + sizeof(label) + 32, "K-1", 3);
    unsigned n = 0;
    ck_assert_int_eq(EVP_Digest(buf, sizeof(label) + 35, h, &n, EVP_sha256(), NULL), 1);
    ck_assert_mem_eq(dg, h, sizeof(dg));

    struct ts_storefx f;
    ts_storefx_init(&f);
    struct scoped_post a = {.token = "token-A", .key = "K-1", .thread = "t/a", .secret = secret_a};
    struct ts_store_result r = post_scoped(&f, 5, 1000, &a);
    ck_assert_int_eq(r.status, TS_OK);
    char key[TS_STORE_EDIT_KEY_LEN + 1], want[TS_STORE_EDIT_KEY_LEN + 1];
    ck_assert_int_eq(ts_store_edit_key(f.s, 5, key), TS_OK);
    ck_assert_str_eq(r.edit_key, key); /* the apply hands the answer its key */
    ck_assert_str_eq(post_scoped(&f, 6, 1001, &a).edit_key, ""); /* a retry: none */
    uint8_t msg[sizeof(edit_label) + TS_STORE_IDEM_DIGEST_LEN + 8] = {0};
    memcpy(msg, edit_label, sizeof(edit_label));
    memcpy(msg + sizeof(edit_label), dg, sizeof(dg));
    msg[sizeof(msg) - 1] = 5; /* the comment id, big-endian */
    ck_assert_ptr_nonnull(HMAC(EVP_sha256(), secret_a, 32, msg, sizeof(msg), h, &n));
    for (size_t i = 0; i < TS_STORE_EDIT_KEY_LEN / 2; i++)
        snprintf(want + 2 * i, 3, "%02x", h[i]);
    ck_assert_str_eq(key, want);
    /* and the key opens the comment: the entry's hash is SHA-256 of it */
    ck_assert_int_eq(change(&f, 7, 1002, 5, K_EDIT, "edited", want, 60000).status, TS_OK);
    ts_storefx_free(&f);
}
END_TEST

/* f's state as a snapshot decodes (the caller frees it with
 * threadsync__state__store_snapshot__free_unpacked). */
static Threadsync__State__StoreSnapshot *decoded_snapshot(const struct ts_storefx *f)
{
    uint8_t *buf;
    size_t len;
    ck_assert_int_eq(ts_store_snapshot(f->s, &buf, &len), TS_OK);
    Threadsync__State__StoreSnapshot *ss =
        threadsync__state__store_snapshot__unpack(NULL, len, buf);
    free(buf);
    ck_assert_ptr_nonnull(ss);
    return ss;
}

/* Known answers, computed outside OpenSSL (Python's hashlib and hmac from
 * the definitions in ts_store.c and ts_store_state.c), so that a change of
 * how the store hashes cannot move the bytes every replica, snapshot and
 * answer already holds: the scoped key digest (a key past one SHA-256
 * block), the content digest (a body of three blocks) and the edit key
 * with its hash, read back from a snapshot. */
START_TEST(test_digests_known_answers)
{
    static const uint8_t want_key[16] = {0x71, 0xce, 0x67, 0xc9, 0x76, 0x65, 0xb9, 0x6e,
                                         0x64, 0x43, 0x5e, 0x74, 0xae, 0xba, 0xe4, 0x24},
                         want_content[16] = {0x9c, 0x84, 0x84, 0x96, 0x33, 0x41, 0xb0, 0x71,
                                             0xd3, 0x6c, 0x45, 0x23, 0xc7, 0x0a, 0xef, 0x85},
                         want_edit_hash[32] = {0xdc, 0xaf, 0x1a, 0x3f, 0xdf, 0xf0, 0x9c, 0xa9,
                                               0x30, 0xad, 0xbd, 0x9c, 0x0e, 0x3c, 0x35, 0x5d,
                                               0x9f, 0x26, 0x6d, 0x5d, 0xd1, 0x3c, 0x70, 0xed,
                                               0x9f, 0x85, 0x23, 0xdd, 0x0a, 0x54, 0x2b, 0x71};
    char key[4 + 60 + 1], body[150 + 1];
    memcpy(key, "kat-", 4);
    memset(key + 4, 'k', 60);
    key[64] = '\0';
    memset(body, 'x', 150);
    body[150] = '\0';
    uint8_t th[32], dg[TS_STORE_IDEM_DIGEST_LEN];
    sha("token-K", th);
    ts_store_idempotency_digest(th, key, dg);
    ck_assert_mem_eq(dg, want_key, sizeof(dg));

    struct ts_storefx f;
    ts_storefx_init(&f);
    struct scoped_post a = {
        .token = "token-K", .key = key, .thread = "t/kat", .body = body, .secret = secret_a};
    struct ts_store_result r = post_scoped(&f, 5, 1000, &a);
    ck_assert_int_eq(r.status, TS_OK);
    ck_assert_uint_eq(r.comment_id, 5);
    ck_assert_str_eq(r.edit_key, "8c6be54a7acdee6525ace164951e7a63");
    Threadsync__State__StoreSnapshot *ss = decoded_snapshot(&f);
    ck_assert_uint_eq(ss->n_idempotency, 1);
    const Threadsync__State__IdempotencyEntry *e = ss->idempotency[0];
    ck_assert_uint_eq(e->key_digest.len, sizeof(want_key));
    ck_assert_mem_eq(e->key_digest.data, want_key, sizeof(want_key));
    ck_assert_uint_eq(e->content_digest.len, sizeof(want_content));
    ck_assert_mem_eq(e->content_digest.data, want_content, sizeof(want_content));
    ck_assert_uint_eq(e->edit_key_hash.len, sizeof(want_edit_hash));
    ck_assert_mem_eq(e->edit_key_hash.data, want_edit_hash, sizeof(want_edit_hash));
    threadsync__state__store_snapshot__free_unpacked(ss, NULL);
    ts_storefx_free(&f);
}
END_TEST

/* ---- PostBatch: the posts of one loop iteration as one entry ---- */

/* Storage for up to BATCH_MAX scoped posts packed as one PostBatch. */
#define BATCH_MAX 8
struct batch {
    Threadsync__Post p[BATCH_MAX];
    uint8_t th[BATCH_MAX][32], dg[BATCH_MAX][TS_STORE_IDEM_DIGEST_LEN];
    Threadsync__State__Command one[BATCH_MAX], *ptr[BATCH_MAX];
    Threadsync__State__PostBatch pb;
    Threadsync__State__Command cmd;
};

static void batch_build(struct batch *b, const struct scoped_post *sp, size_t n, int64_t t)
{
    ck_assert_uint_le(n, BATCH_MAX);
    threadsync__state__post_batch__init(&b->pb);
    for (size_t i = 0; i < n; i++) {
        threadsync__post__init(&b->p[i]);
        b->p[i].idempotency_key = (char *)sp[i].key;
        b->p[i].thread_key = (char *)sp[i].thread;
        b->p[i].parent_id = sp[i].parent;
        b->p[i].author_name = (char *)(sp[i].name ? sp[i].name : "Ann");
        b->p[i].author_email = (char *)(sp[i].email ? sp[i].email : "ann@example.org");
        b->p[i].body = (char *)(sp[i].body ? sp[i].body : "words");
        sha(sp[i].token, b->th[i]);
        ts_store_idempotency_digest(b->th[i], sp[i].key, b->dg[i]);
        Threadsync__State__Command *c = &b->one[i];
        threadsync__state__command__init(c);
        c->time_ms = t;
        c->op_case = THREADSYNC__STATE__COMMAND__OP_POST;
        c->post = &b->p[i];
        c->actor = "poster";
        c->idempotency_digest.data = b->dg[i];
        c->idempotency_digest.len = TS_STORE_IDEM_DIGEST_LEN;
        if (sp[i].secret) {
            c->edit_secret.data = (uint8_t *)sp[i].secret;
            c->edit_secret.len = 32;
        }
        b->ptr[i] = c;
    }
    b->pb.n_posts = n;
    b->pb.posts = b->ptr;
    threadsync__state__command__init(&b->cmd);
    b->cmd.op_case = THREADSYNC__STATE__COMMAND__OP_POST_BATCH;
    b->cmd.post_batch = &b->pb;
}

static struct ts_store_result apply_batch(struct ts_storefx *f, uint64_t index,
                                          const struct scoped_post *sp, size_t n, int64_t t)
{
    struct batch b;
    batch_build(&b, sp, n, t);
    return ts_storefx_apply(f, index, &b.cmd);
}

/* Each post of a batch gets its own position (id and seq), its own result;
 * a retry or a refusal inside the batch takes none; the next entry's
 * position comes after the batch's last. */
START_TEST(test_post_batch_positions_and_results)
{
    struct ts_storefx f;
    ts_storefx_init(&f);
    struct scoped_post sp[] = {
        {.token = "A", .key = "k1", .thread = "t/a", .secret = secret_a},
        {.token = "B", .key = "k1", .thread = "t/b", .body = "b's"},
        {.token = "A", .key = "k1", .thread = "t/a"},                  /* a retry of the first */
        {.token = "A", .key = "k2", .thread = "t/a", .parent = 999},   /* unknown parent */
        {.token = "A", .key = "k1", .thread = "t/a", .body = "other"}, /* key reused */
        {.token = "A", .key = "k3", .thread = "t/a", .parent = 10},    /* a reply in the batch */
    };
    struct ts_store_result r = apply_batch(&f, 10, sp, 6, 1000);
    ck_assert_int_eq(r.status, TS_OK);
    ck_assert_int_eq(r.changed, 1);
    ck_assert_uint_eq(r.seq, 12);
    const struct ts_store_result *out;
    size_t n;
    ts_store_batch_outcome(f.s, &out, &n);
    ck_assert_uint_eq(n, 6);
    ck_assert_int_eq(out[0].status, TS_OK);
    ck_assert_uint_eq(out[0].comment_id, 10);
    ck_assert_uint_eq(out[0].seq, 10);
    ck_assert_uint_eq(out[0].thread_id, 10);
    ck_assert_int_eq(out[1].status, TS_OK);
    ck_assert_uint_eq(out[1].comment_id, 11);
    ck_assert_uint_eq(out[1].thread_id, 11);
    ck_assert_int_eq(out[2].status, TS_OK);
    ck_assert_int_eq(out[2].changed, 0);
    ck_assert_uint_eq(out[2].comment_id, 10);
    ck_assert_uint_eq(out[2].seq, 10);
    ck_assert_int_eq(out[3].status, TS_E_NOT_FOUND);
    ck_assert_int_eq(out[4].status, TS_E_IDEMPOTENCY_KEY_REUSED);
    ck_assert_int_eq(out[5].status, TS_OK);
    ck_assert_uint_eq(out[5].comment_id, 12);
    ck_assert_uint_eq(out[5].seq, 12);
    ck_assert_uint_eq(ts_store_comment_count(f.s), 3);
    ck_assert_uint_eq(ts_store_seq(f.s), 12);
    for (uint64_t seq = 10; seq <= 12; seq++) {
        Threadsync__Event *ev = event_at(&f, seq - 10, 1); /* evlog positions from 0 */
        ck_assert_uint_eq(ev->seq, seq);
        ck_assert_uint_eq(ev->comment->id, seq);
        threadsync__event__free_unpacked(ev, NULL);
    }
    /* each post's edit key is its own, derived as for a lone post */
    char k10[TS_STORE_EDIT_KEY_LEN + 1], k12[TS_STORE_EDIT_KEY_LEN + 1];
    ck_assert_int_eq(ts_store_edit_key(f.s, 10, k10), TS_OK);
    ck_assert_int_eq(ts_store_edit_key(f.s, 12, k12), TS_OK);
    ck_assert_str_ne(k10, k12);
    ck_assert_str_eq(out[0].edit_key, k10);
    ck_assert_str_eq(out[5].edit_key, k12);
    ck_assert_str_eq(out[2].edit_key, "");
    ck_assert_int_eq(change(&f, 11, 1001, 12, K_EDIT, "edited", k12, 60000).status, TS_OK);
    /* that entry (index 11) took the position after the batch's last */
    ck_assert_uint_eq(ts_store_seq(f.s), 13);
    /* a plain entry leaves no batch outcome behind */
    ts_store_batch_outcome(f.s, &out, &n);
    ck_assert_uint_eq(n, 0);
    ts_storefx_free(&f);
}
END_TEST

/* A batch of one post per entry and the same posts as one batch make the
 * same comments (positions aside); replicas applying the same batched log,
 * or restoring a snapshot taken after it, agree and go on alike. */
START_TEST(test_post_batch_replicas_agree)
{
    struct scoped_post sp[] = {
        {.token = "A", .key = "k1", .thread = "t/a", .secret = secret_a},
        {.token = "A", .key = "k2", .thread = "t/a", .parent = 5},
        {.token = "B", .key = "k1", .thread = "t/b"},
    };
    struct ts_storefx f, g, h;
    ts_storefx_init(&f);
    ts_storefx_init(&g);
    ts_storefx_init(&h);
    ck_assert_int_eq(apply_batch(&f, 5, sp, 3, 1000).status, TS_OK);
    ck_assert_int_eq(apply_batch(&g, 5, sp, 3, 1000).status, TS_OK);
    char df[65], dg[65], dh[65];
    ts_store_digest(f.s, df);
    ts_store_digest(g.s, dg);
    ck_assert_str_eq(df, dg);
    uint8_t *snap;
    size_t len;
    ck_assert_int_eq(ts_store_snapshot(f.s, &snap, &len), TS_OK);
    ck_assert_int_eq(ts_store_restore(h.s, snap, len), TS_OK);
    free(snap);
    ts_store_digest(h.s, dh);
    ck_assert_str_eq(df, dh);
    /* the next entry, index 6, takes position 8 everywhere */
    struct scoped_post next = {.token = "A", .key = "k9", .thread = "t/a"};
    struct ts_storefx *all[] = {&f, &g, &h};
    for (size_t i = 0; i < 3; i++) {
        struct ts_store_result r = post_scoped(all[i], 6, 2000, &next);
        ck_assert_int_eq(r.status, TS_OK);
        ck_assert_uint_eq(r.comment_id, 8);
    }
    ts_storefx_free(&f);
    ts_storefx_free(&g);
    ts_storefx_free(&h);
}
END_TEST

/* An empty batch is refused as a whole; an op other than post inside one
 * is refused alone. */
START_TEST(test_post_batch_malformed)
{
    struct ts_storefx f;
    ts_storefx_init(&f);
    struct batch b;
    batch_build(&b, NULL, 0, 1000);
    struct ts_store_result r = ts_storefx_apply(&f, 3, &b.cmd);
    ck_assert_int_eq(r.status, TS_E_INVALID_ARGUMENT);
    const struct ts_store_result *out;
    size_t n;
    ts_store_batch_outcome(f.s, &out, &n);
    ck_assert_uint_eq(n, 0);

    struct scoped_post sp[] = {{.token = "A", .key = "k1", .thread = "t/a"},
                               {.token = "A", .key = "k2", .thread = "t/a"}};
    batch_build(&b, sp, 2, 1000);
    b.one[0].op_case = THREADSYNC__STATE__COMMAND__OP_TOKEN_REVOKE;
    Threadsync__TokenRevoke tr = THREADSYNC__TOKEN_REVOKE__INIT;
    tr.name = "x";
    b.one[0].token_revoke = &tr;
    r = ts_storefx_apply(&f, 4, &b.cmd);
    ck_assert_int_eq(r.status, TS_OK);
    ts_store_batch_outcome(f.s, &out, &n);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(out[0].status, TS_E_BAD_FRAME);
    ck_assert_int_eq(out[1].status, TS_OK);
    ck_assert_uint_eq(out[1].comment_id, 4);
    ck_assert_uint_eq(ts_store_comment_count(f.s), 1);
    ts_storefx_free(&f);
}
END_TEST

/* Token B reusing token A's key gets a comment and an edit key of its own;
 * neither key opens the other's comment, and A's keeps working. */
START_TEST(test_scoped_keys_two_tokens)
{
    struct ts_storefx f;
    ts_storefx_init(&f);
    struct scoped_post a = {.token = "token-A", .key = "K", .thread = "t/a", .secret = secret_a};
    struct ts_store_result ra = post_scoped(&f, 5, 1000, &a);
    ck_assert_int_eq(ra.status, TS_OK);
    ck_assert(ts_store_has_edit_secret(f.s));
    char ka[TS_STORE_EDIT_KEY_LEN + 1], kb[TS_STORE_EDIT_KEY_LEN + 1];
    ck_assert_int_eq(ts_store_edit_key(f.s, 5, ka), TS_OK);
    ck_assert_uint_eq(strlen(ka), TS_STORE_EDIT_KEY_LEN);

    struct scoped_post b = {.token = "token-B", .key = "K", .thread = "t/b", .body = "other"};
    struct ts_store_result rb = post_scoped(&f, 6, 1001, &b);
    ck_assert_int_eq(rb.status, TS_OK);
    ck_assert_int_eq(rb.changed, 1);
    ck_assert_uint_eq(rb.comment_id, 6);
    ck_assert_uint_eq(ts_store_comment_count(f.s), 2);
    ck_assert_int_eq(ts_store_edit_key(f.s, 6, kb), TS_OK);
    ck_assert_str_ne(ka, kb);

    ck_assert_int_eq(change(&f, 7, 1002, 5, K_EDIT, "by B", kb, 60000).status, TS_E_FORBIDDEN);
    ck_assert_int_eq(change(&f, 8, 1003, 5, K_EDIT, "by A", ka, 60000).status, TS_OK);
    ck_assert_int_eq(change(&f, 9, 1004, 6, K_EDIT, "by B", kb, 60000).status, TS_OK);
    Threadsync__Comment c;
    ck_assert_int_eq(ts_store_comment(f.s, 5, &c), TS_OK);
    ck_assert_str_eq(c.body, "by A");
    /* an older release's (unscoped) key of the same text is another entry */
    ck_assert(!key_known(f.s, "K"));
    ts_storefx_free(&f);
}
END_TEST

/* A retry with the same token, key and content gets the first comment, and
 * the same edit key: the one handed out first keeps working. The secret a
 * later post offers does not replace the first. */
START_TEST(test_scoped_retry_same_edit_key)
{
    struct ts_storefx f;
    ts_storefx_init(&f);
    struct scoped_post a = {.token = "token-A", .key = "K", .thread = "t/a", .secret = secret_a};
    ck_assert_int_eq(post_scoped(&f, 5, 1000, &a).status, TS_OK);
    char first[TS_STORE_EDIT_KEY_LEN + 1], again[TS_STORE_EDIT_KEY_LEN + 1];
    ck_assert_int_eq(ts_store_edit_key(f.s, 5, first), TS_OK);
    a.secret = secret_b;
    struct ts_store_result r = post_scoped(&f, 6, 2000, &a);
    ck_assert_int_eq(r.status, TS_OK);
    ck_assert_int_eq(r.changed, 0);
    ck_assert_uint_eq(r.comment_id, 5);
    ck_assert_uint_eq(r.seq, 5);
    ck_assert_uint_eq(ts_store_comment_count(f.s), 1);
    ck_assert_int_eq(ts_store_edit_key(f.s, 5, again), TS_OK);
    ck_assert_str_eq(first, again);
    ck_assert_int_eq(change(&f, 7, 2001, 5, K_EDIT, "edited", first, 60000).status, TS_OK);

    /* every replica derives the same key, also from a snapshot */
    struct ts_storefx g;
    ts_storefx_init(&g);
    uint8_t *snap;
    size_t len;
    ck_assert_int_eq(ts_store_snapshot(f.s, &snap, &len), TS_OK);
    ck_assert_int_eq(ts_store_restore(g.s, snap, len), TS_OK);
    free(snap);
    ck_assert_int_eq(ts_store_edit_key(g.s, 5, again), TS_OK);
    ck_assert_str_eq(first, again);
    a.secret = NULL;
    ck_assert_uint_eq(post_scoped(&g, 8, 3000, &a).comment_id, 5);
    ck_assert_int_eq(change(&g, 9, 3001, 5, K_EDIT, "again", first, 60000).status, TS_OK);
    /* and the content check survives the snapshot */
    a.body = "changed";
    ck_assert_int_eq(post_scoped(&g, 10, 3002, &a).status, TS_E_IDEMPOTENCY_KEY_REUSED);
    ts_storefx_free(&g);
    ts_storefx_free(&f);
}
END_TEST

/* The same token reusing its key for a post with other content (thread,
 * parent, author name, e-mail, body) is refused with its own code; nothing
 * changes. */
START_TEST(test_scoped_reuse_refused)
{
    struct ts_storefx f;
    ts_storefx_init(&f);
    struct scoped_post a = {.token = "token-A", .key = "K", .thread = "t/a", .secret = secret_a};
    ck_assert_int_eq(post_scoped(&f, 5, 1000, &a).status, TS_OK);
    struct scoped_post other = {.token = "token-A", .key = "P", .thread = "t/a"};
    ck_assert_int_eq(post_scoped(&f, 6, 1000, &other).status, TS_OK);
    struct scoped_post v[5];
    for (int i = 0; i < 5; i++)
        v[i] = a;
    v[0].thread = "t/elsewhere";
    v[1].parent = 6;
    v[2].name = "Bob";
    v[3].email = "bob@example.org";
    v[4].body = "different words";
    char before[65], after[65];
    ts_store_digest(f.s, before);
    for (int i = 0; i < 5; i++) {
        struct ts_store_result r = post_scoped(&f, 10 + (uint64_t)i, 2000, &v[i]);
        ck_assert_int_eq(r.status, TS_E_IDEMPOTENCY_KEY_REUSED);
        ck_assert_str_eq(r.field, "idempotency_key");
        ck_assert_ptr_nonnull(r.message);
    }
    ts_store_digest(f.s, after);
    ck_assert_str_eq(before, after);
    ck_assert_uint_eq(ts_store_comment_count(f.s), 2);
    ck_assert_uint_eq(post_scoped(&f, 20, 2001, &a).comment_id, 5); /* the true retry */
    ts_storefx_free(&f);
}
END_TEST

/* A snapshot with one thread (id 10), comments 11 and 12 (created at 100
 * and 101) and idempotency entries as given, in the given format; packed
 * into buf. */
static size_t pack_idem_snapshot(uint32_t format, Threadsync__State__IdempotencyEntry **ie,
                                 size_t n_ie, uint8_t *buf)
{
    Threadsync__Thread t = THREADSYNC__THREAD__INIT, *tp = &t;
    t.id = 10;
    t.key = "t/old";
    t.comment_count = 2;
    t.version = 2;
    Threadsync__Comment c[2], *cp[2];
    for (int i = 0; i < 2; i++) {
        threadsync__comment__init(&c[i]);
        cp[i] = &c[i];
        c[i].id = 11 + (uint64_t)i;
        c[i].thread_id = 10;
        c[i].author_name = "Old";
        c[i].body = "from an older release";
        c[i].status = THREADSYNC__STATUS__VISIBLE;
        c[i].created_at_ms = 100 + i;
        c[i].version = 1;
    }
    Threadsync__State__StoreSnapshot snap = THREADSYNC__STATE__STORE_SNAPSHOT__INIT;
    snap.format = format;
    snap.last_index = 20;
    snap.n_threads = 1;
    snap.threads = &tp;
    snap.n_comments = 2;
    snap.comments = cp;
    snap.n_idempotency = n_ie;
    snap.idempotency = ie;
    return threadsync__state__store_snapshot__pack(&snap, buf);
}

/* Snapshots and backups written before key digests (format 0: keys as
 * strings) still load, and their keys still work: a retry is answered, the
 * edit key opens its comment. Written again, the state is format 2 and
 * loads the same. */
START_TEST(test_snapshot_format0_keys)
{
    struct ts_storefx f, g;
    ts_storefx_init(&f);
    ts_storefx_init(&g);
    uint8_t h[32], buf[1024];
    sha("old-edit", h);
    Threadsync__State__IdempotencyEntry e = THREADSYNC__STATE__IDEMPOTENCY_ENTRY__INIT, *ep = &e;
    e.key = "old-key";
    e.seq = 11;
    e.thread_id = 10;
    e.comment_id = 11;
    e.status = THREADSYNC__STATUS__VISIBLE;
    e.time_ms = 100;
    e.edit_key_hash.data = h;
    e.edit_key_hash.len = 32;
    size_t len = pack_idem_snapshot(0, &ep, 1, buf);
    ck_assert_int_eq(ts_store_restore(f.s, buf, len), TS_OK);
    ck_assert(key_known(f.s, "old-key"));
    struct ts_store_result r = post_ex(&f, 21, 200, "old-key", "t/old", NULL, 0, 0);
    ck_assert_uint_eq(r.seq, 11);
    ck_assert_uint_eq(r.comment_id, 11);
    ck_assert_uint_eq(ts_store_comment_count(f.s), 2);

    uint8_t *snap;
    size_t slen;
    ck_assert_int_eq(ts_store_snapshot(f.s, &snap, &slen), TS_OK);
    Threadsync__State__StoreSnapshot *d =
        threadsync__state__store_snapshot__unpack(NULL, slen, snap);
    ck_assert_ptr_nonnull(d);
    ck_assert_uint_eq(d->format, 2);
    ck_assert_uint_eq(d->n_idempotency, 1);
    ck_assert_str_eq(d->idempotency[0]->key, ""); /* the key itself is gone */
    ck_assert_uint_eq(d->idempotency[0]->key_digest.len, 16);
    threadsync__state__store_snapshot__free_unpacked(d, NULL);
    ck_assert_int_eq(ts_store_restore(g.s, snap, slen), TS_OK);
    free(snap);
    char d1[65], d2[65];
    ts_store_digest(f.s, d1);
    ts_store_digest(g.s, d2);
    ck_assert_str_eq(d1, d2);
    ck_assert_uint_eq(post_ex(&g, 22, 300, "old-key", "t/old", NULL, 0, 0).seq, 11);
    ck_assert_int_eq(change(&g, 23, 300, 11, K_EDIT, "new words", "old-edit", 1000).status, TS_OK);
    ts_storefx_free(&f);
    ts_storefx_free(&g);
}
END_TEST

/* What restore refuses in the idempotency table, leaving the state alone:
 * a format it does not know, a key in the wrong form for the format, a key
 * twice, entries out of comment id order, an answer (seq, thread, time)
 * that is not its comment's. */
START_TEST(test_snapshot_idem_refused)
{
    struct ts_storefx f;
    ts_storefx_init(&f);
    uint8_t dg[16], buf[1024];
    memset(dg, 7, sizeof(dg));
    Threadsync__State__IdempotencyEntry a = THREADSYNC__STATE__IDEMPOTENCY_ENTRY__INIT,
                                        b = THREADSYNC__STATE__IDEMPOTENCY_ENTRY__INIT;
    Threadsync__State__IdempotencyEntry *two[] = {&a, &b};
    a.comment_id = a.seq = 11;
    a.thread_id = 10;
    a.time_ms = 100;
    b.comment_id = b.seq = 12;
    b.thread_id = 10;
    b.time_ms = 101;
    a.key_digest.data = dg;
    a.key_digest.len = 16;
    /* a well-formed format 1 snapshot loads; a future format does not */
    size_t len = pack_idem_snapshot(1, two, 1, buf);
    ck_assert_int_eq(ts_store_restore(f.s, buf, len), TS_OK);
    ck_assert_int_eq(ts_store_restore(f.s, buf, pack_idem_snapshot(5, two, 1, buf)),
                     TS_E_BAD_FRAME);
    /* format 2's fields in a format 1 snapshot; a derived entry without
     * the edit secret */
    uint8_t cd[16] = {1};
    a.content_digest.data = cd;
    a.content_digest.len = 16;
    ck_assert_int_eq(ts_store_restore(f.s, buf, pack_idem_snapshot(1, two, 1, buf)),
                     TS_E_BAD_FRAME);
    ck_assert_int_eq(ts_store_restore(f.s, buf, pack_idem_snapshot(2, two, 1, buf)), TS_OK);
    a.content_digest.len = 0;
    a.derived = 1;
    ck_assert_int_eq(ts_store_restore(f.s, buf, pack_idem_snapshot(2, two, 1, buf)),
                     TS_E_BAD_FRAME);
    a.derived = 0;
    /* format 1 wants a 16-byte digest and no key; format 0 a key */
    a.key_digest.len = 15;
    ck_assert_int_eq(ts_store_restore(f.s, buf, pack_idem_snapshot(1, two, 1, buf)),
                     TS_E_BAD_FRAME);
    a.key_digest.len = 16;
    a.key = "plain";
    ck_assert_int_eq(ts_store_restore(f.s, buf, pack_idem_snapshot(1, two, 1, buf)),
                     TS_E_BAD_FRAME);
    a.key = (char *)protobuf_c_empty_string;
    ck_assert_int_eq(ts_store_restore(f.s, buf, pack_idem_snapshot(0, two, 1, buf)),
                     TS_E_BAD_FRAME);
    /* the same key twice */
    a.key = "k1";
    b.key = "k1";
    ck_assert_int_eq(ts_store_restore(f.s, buf, pack_idem_snapshot(0, two, 2, buf)),
                     TS_E_BAD_FRAME);
    b.key = "k2";
    ck_assert_int_eq(ts_store_restore(f.s, buf, pack_idem_snapshot(0, two, 2, buf)), TS_OK);
    ck_assert(key_known(f.s, "k2"));
    char before[65], after[65];
    ts_store_digest(f.s, before);
    /* b's answer not its comment's: seq, thread, time, a comment that is
     * not there; then a and b out of order */
    uint64_t *fields[] = {&b.seq, &b.thread_id, (uint64_t *)&b.time_ms, &b.comment_id};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        uint64_t keep = *fields[i];
        *fields[i] += 5;
        ck_assert_int_eq(ts_store_restore(f.s, buf, pack_idem_snapshot(0, two, 2, buf)),
                         TS_E_BAD_FRAME);
        *fields[i] = keep;
    }
    ck_assert_int_eq(ts_store_restore(f.s, buf, pack_idem_snapshot(0, two, 2, buf)), TS_OK);
    Threadsync__State__IdempotencyEntry *swapped[] = {&b, &a};
    ck_assert_int_eq(ts_store_restore(f.s, buf, pack_idem_snapshot(0, swapped, 2, buf)),
                     TS_E_BAD_FRAME);
    ts_store_digest(f.s, after);
    ck_assert_str_eq(before, after);
    ck_assert(key_known(f.s, "k2"));
    ts_storefx_free(&f);
}
END_TEST

/* PROTOCOL.md "seq": the newest event's, not the last entry's; kept
 * across a snapshot, and an earlier release's snapshot (no seq) reads as its
 * last index. */
START_TEST(test_seq_is_the_newest_event)
{
    struct ts_storefx f;
    ts_storefx_init(&f);
    ck_assert_uint_eq(ts_store_seq(f.s), 0);
    post(&f, 2, 10, "k1", "t/seq", 0, "first");
    grant(&f, 3, "seq-reader", THREADSYNC__ROLE__READER, "ts_seq_token");
    ck_assert_uint_eq(ts_store_last_index(f.s), 3);
    ck_assert_uint_eq(ts_store_seq(f.s), 2);
    uint8_t *snap;
    size_t len;
    ck_assert_int_eq(ts_store_snapshot(f.s, &snap, &len), TS_OK);
    struct ts_storefx g;
    ts_storefx_init(&g);
    ck_assert_int_eq(ts_store_restore(g.s, snap, len), TS_OK);
    ck_assert_uint_eq(ts_store_last_index(g.s), 3);
    ck_assert_uint_eq(ts_store_seq(g.s), 2);
    free(snap);
    ts_storefx_free(&g);
    restore_crafted(&f);
    ck_assert_uint_eq(ts_store_seq(f.s), 20);
    ts_storefx_free(&f);
}
END_TEST

static Suite *store_suite(void)
{
    Suite *s = suite_create("ts_store");
    TCase *tc = tcase_create("store");
    tcase_add_test(tc, test_post_and_reply);
    tcase_add_test(tc, test_digests_match_openssl);
    tcase_add_test(tc, test_digests_known_answers);
    tcase_add_test(tc, test_post_batch_positions_and_results);
    tcase_add_test(tc, test_post_batch_replicas_agree);
    tcase_add_test(tc, test_post_batch_malformed);
    tcase_add_test(tc, test_tree_order);
    tcase_add_test(tc, test_parent_rejections);
    tcase_add_test(tc, test_idempotent_repeat);
    tcase_add_test(tc, test_public_vs_full_event);
    tcase_add_test(tc, test_locked_thread);
    tcase_add_test(tc, test_snapshot_restore_digest);
    tcase_add_test(tc, test_snapshot_large);
    tcase_add_test(tc, test_snapshot_in_forked_child);
    tcase_add_test(tc, test_restore_discard_releases_image);
    tcase_add_test(tc, test_restore_peak_heap);
    tcase_add_test(tc, test_same_log_same_digest);
    tcase_add_test(tc, test_undecodable_payload);
    tcase_add_test(tc, test_entry_of_later_release);
    tcase_add_test(tc, test_memory_per_comment);
    tcase_add_test(tc, test_hide_unhide_delete);
    tcase_add_test(tc, test_refused_transitions);
    tcase_add_test(tc, test_premoderation);
    tcase_add_test(tc, test_author_edit_key);
    tcase_add_test(tc, test_author_edit_repending);
    tcase_add_test(tc, test_bans);
    tcase_add_test(tc, test_reader_key);
    tcase_add_test(tc, test_tokens);
    tcase_add_test(tc, test_moderation_log_deterministic);
    tcase_add_test(tc, test_same_moderation_twice);
    tcase_add_test(tc, test_snapshot_keeps_moderation);
    tcase_add_test(tc, test_idempotency_blocks);
    tcase_add_test(tc, test_digest_stable);
    tcase_add_test(tc, test_comment_changed_fields);
    tcase_add_test(tc, test_snapshot_format0_keys);
    tcase_add_test(tc, test_snapshot_idem_refused);
    tcase_add_test(tc, test_seq_is_the_newest_event);
    tcase_add_test(tc, test_scoped_keys_two_tokens);
    tcase_add_test(tc, test_scoped_retry_same_edit_key);
    tcase_add_test(tc, test_scoped_reuse_refused);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ts_check_run(store_suite());
}
