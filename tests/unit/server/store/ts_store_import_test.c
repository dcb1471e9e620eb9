/*
 * ts_store's Import command (ts_store_import.c): one position per imported
 * comment (ids and seqs), original times and statuses, parents named by
 * source id within the command and across commands, refusals that leave
 * the rest of the command applied, re-import finding what is there, the
 * positions and source names carried through a snapshot, and exact ids.
 */
#include <check.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ts_check_main.h"
#include "threadsync_state.pb-c.h"
#include "ts_err.h"
#include "ts_evlog.h"
#include "ts_store.h"
#include "ts_storefx.h"

static struct ts_store_result post(struct ts_storefx *f, uint64_t index, const char *ikey,
                                   const char *thread)
{
    Threadsync__Post p = THREADSYNC__POST__INIT;
    p.idempotency_key = (char *)ikey;
    p.thread_key = (char *)thread;
    p.author_name = "Ann";
    p.body = "a post";
    Threadsync__State__Command cmd = THREADSYNC__STATE__COMMAND__INIT;
    cmd.time_ms = 5000;
    cmd.op_case = THREADSYNC__STATE__COMMAND__OP_POST;
    cmd.post = &p;
    return ts_storefx_apply(f, index, &cmd);
}

#define MAXC 8

/* An Import of n comments: comment i has source id ids[i], parent
 * parents[i] ("" top level), status st[i]; all in thread "t1". */
struct imp {
    Threadsync__ImportThread th;
    Threadsync__ImportThread *thp[1];
    Threadsync__ImportComment c[MAXC];
    Threadsync__ImportComment *cp[MAXC];
    Threadsync__Import im;
    Threadsync__State__Command cmd;
};

static void imp_init(struct imp *m, size_t n, const char *const *ids, const char *const *parents,
                     const int *st)
{
    threadsync__import_thread__init(&m->th);
    m->th.key = "t1";
    m->th.title = "Hello world";
    m->th.url = "https://blog.example/hello/";
    m->thp[0] = &m->th;
    for (size_t i = 0; i < n; i++) {
        threadsync__import_comment__init(&m->c[i]);
        m->c[i].source_id = (char *)ids[i];
        m->c[i].parent_source_id = (char *)parents[i];
        m->c[i].thread_key = "t1";
        m->c[i].author_name = "Zoë";
        m->c[i].author_email = "zoe@example.org";
        m->c[i].body = "imported “body” 🎉";
        m->c[i].created_at_ms = 1000000 + (int64_t)i;
        m->c[i].status = (Threadsync__Status)st[i];
        m->cp[i] = &m->c[i];
    }
    threadsync__import__init(&m->im);
    m->im.source = "wordpress";
    m->im.n_threads = 1;
    m->im.threads = m->thp;
    m->im.n_comments = n;
    m->im.comments = m->cp;
    threadsync__state__command__init(&m->cmd);
    m->cmd.time_ms = 9000;
    m->cmd.op_case = THREADSYNC__STATE__COMMAND__OP_IMPORT;
    m->cmd.import = &m->im;
}

static const struct ts_store_import_item *outcome(struct ts_storefx *f, size_t n)
{
    const struct ts_store_import_item *items;
    size_t got;
    ts_store_import_outcome(f->s, &items, &got);
    ck_assert_uint_eq(got, n);
    return items;
}

static const char *const ids4[] = {"1", "2", "3", "4"};
static const char *const parents4[] = {"", "1", "99", "2"};
static const int st4[] = {THREADSYNC__STATUS__VISIBLE, THREADSYNC__STATUS__DELETED,
                          THREADSYNC__STATUS__VISIBLE, THREADSYNC__STATUS__PENDING};

START_TEST(test_import_positions_and_outcomes)
{
    struct ts_storefx f;
    ts_storefx_init(&f);
    struct imp m;
    imp_init(&m, 4, ids4, parents4, st4);
    struct ts_store_result res = ts_storefx_apply(&f, 10, &m.cmd);
    ck_assert_int_eq(res.status, TS_OK);
    ck_assert_int_eq(res.changed, 1);
    ck_assert_uint_eq(res.threads_created, 1);
    const struct ts_store_import_item *it = outcome(&f, 4);
    /* positions 10, 11, then 12 for "4": "3" (unknown parent) takes none */
    ck_assert_int_eq(it[0].outcome, THREADSYNC__IMPORT_OUTCOME__IMPORT_CREATED);
    ck_assert_uint_eq(it[0].comment_id, 10);
    ck_assert_uint_eq(it[1].comment_id, 11);
    ck_assert_int_eq(it[2].outcome, THREADSYNC__IMPORT_OUTCOME__IMPORT_REFUSED);
    ck_assert_int_eq(it[2].error, TS_E_NOT_FOUND);
    ck_assert_uint_eq(it[3].comment_id, 12);
    ck_assert_uint_eq(it[3].seq, 12);
    ck_assert_uint_eq(res.seq, 12);
    ck_assert_uint_eq(ts_store_seq(f.s), 12);
    ck_assert_uint_eq(ts_evlog_end_pos(f.log) - ts_evlog_first_pos(f.log), 3);

    Threadsync__Comment c;
    ck_assert_int_eq(ts_store_comment(f.s, 12, &c), TS_OK);
    ck_assert_uint_eq(c.parent_id, 11); /* a reply to a deleted comment keeps its place */
    ck_assert_int_eq(c.created_at_ms, 1000003);
    ck_assert_int_eq(c.status, THREADSYNC__STATUS__PENDING);
    ck_assert_str_eq(c.author_name, "Zoë");
    Threadsync__Thread t;
    ck_assert_int_eq(ts_store_thread_by_key(f.s, "t1", &t), TS_OK);
    ck_assert_uint_eq(t.id, 10);
    ck_assert_uint_eq(t.comment_count, 1); /* VISIBLE ones only */
    ck_assert_int_eq(t.created_at_ms, 1000000);
    ck_assert_str_eq(t.url, "https://blog.example/hello/");

    /* The next entry's position is past the import's: a post at index 11
     * gets id 13, above every imported id. */
    res = post(&f, 11, "k1", "t1");
    ck_assert_int_eq(res.status, TS_OK);
    ck_assert_uint_eq(res.comment_id, 13);
    ck_assert_uint_eq(res.seq, 13);
    ts_storefx_free(&f);
}
END_TEST

START_TEST(test_reimport_adds_nothing)
{
    struct ts_storefx f;
    ts_storefx_init(&f);
    struct imp m;
    imp_init(&m, 4, ids4, parents4, st4);
    ts_storefx_apply(&f, 10, &m.cmd);
    char d1[65], d2[65];
    ts_store_digest(f.s, d1);
    uint64_t end = ts_evlog_end_pos(f.log);
    struct ts_store_result res = ts_storefx_apply(&f, 11, &m.cmd);
    ck_assert_int_eq(res.status, TS_OK);
    ck_assert_int_eq(res.changed, 0);
    ck_assert_uint_eq(res.seq, 0);
    const struct ts_store_import_item *it = outcome(&f, 4);
    ck_assert_int_eq(it[0].outcome, THREADSYNC__IMPORT_OUTCOME__IMPORT_EXISTING);
    ck_assert_uint_eq(it[0].comment_id, 10);
    ck_assert_int_eq(it[2].outcome, THREADSYNC__IMPORT_OUTCOME__IMPORT_REFUSED);
    ck_assert_uint_eq(it[3].comment_id, 12);
    ts_store_digest(f.s, d2);
    ck_assert_str_eq(d1, d2);
    ck_assert_uint_eq(ts_evlog_end_pos(f.log), end);
    ck_assert_uint_eq(ts_store_comment_count(f.s), 3);
    ts_storefx_free(&f);
}
END_TEST

START_TEST(test_parent_from_earlier_import)
{
    struct ts_storefx f;
    ts_storefx_init(&f);
    static const char *const a_ids[] = {"1"}, *const a_par[] = {""};
    static const int a_st[] = {THREADSYNC__STATUS__VISIBLE};
    struct imp a, b;
    imp_init(&a, 1, a_ids, a_par, a_st);
    ts_storefx_apply(&f, 5, &a.cmd);
    static const char *const b_ids[] = {"2"}, *const b_par[] = {"1"};
    imp_init(&b, 1, b_ids, b_par, a_st);
    ts_storefx_apply(&f, 6, &b.cmd);
    const struct ts_store_import_item *it = outcome(&f, 1);
    ck_assert_int_eq(it[0].outcome, THREADSYNC__IMPORT_OUTCOME__IMPORT_CREATED);
    Threadsync__Comment c;
    ck_assert_int_eq(ts_store_comment(f.s, it[0].comment_id, &c), TS_OK);
    ck_assert_uint_eq(c.parent_id, 5);
    /* another source's "1" is another comment */
    b.im.source = "disqus";
    ts_storefx_apply(&f, 7, &b.cmd);
    it = outcome(&f, 1);
    ck_assert_int_eq(it[0].outcome, THREADSYNC__IMPORT_OUTCOME__IMPORT_REFUSED);
    ts_storefx_free(&f);
}
END_TEST

START_TEST(test_snapshot_keeps_positions_and_sources)
{
    struct ts_storefx f, g;
    ts_storefx_init(&f);
    ts_storefx_init(&g);
    struct imp m;
    imp_init(&m, 4, ids4, parents4, st4);
    ts_storefx_apply(&f, 10, &m.cmd);
    uint8_t *snap;
    size_t len;
    ts_storefx_snapshot(&f, &snap, &len);
    ck_assert_int_eq(ts_store_restore(g.s, snap, len), TS_OK);
    free(snap);
    char d1[65], d2[65];
    ts_store_digest(f.s, d1);
    ts_store_digest(g.s, d2);
    ck_assert_str_eq(d1, d2);
    ck_assert_uint_eq(ts_store_seq(g.s), 12);
    /* both replicas take the same next position */
    ck_assert_uint_eq(post(&f, 11, "k", "t1").comment_id, 13);
    ck_assert_uint_eq(post(&g, 11, "k", "t1").comment_id, 13);
    ts_storefx_apply(&g, 12, &m.cmd);
    const struct ts_store_import_item *it = outcome(&g, 4);
    ck_assert_int_eq(it[1].outcome, THREADSYNC__IMPORT_OUTCOME__IMPORT_EXISTING);
    ck_assert_uint_eq(it[1].comment_id, 11);
    ts_storefx_free(&f);
    ts_storefx_free(&g);
}
END_TEST

START_TEST(test_exact_ids)
{
    struct ts_storefx f;
    ts_storefx_init(&f);
    static const char *const ids[] = {"100", "150"}, *const par[] = {"", "100"};
    static const int st[] = {THREADSYNC__STATUS__HIDDEN, THREADSYNC__STATUS__VISIBLE};
    struct imp m;
    imp_init(&m, 2, ids, par, st);
    m.im.exact = 1;
    m.im.source = "threadsync";
    m.th.id = 100;
    m.th.version = 7;
    m.th.moderated_by = "admin";
    m.c[0].id = 100;
    m.c[0].version = 3;
    m.c[0].moderated_by = "mod";
    m.c[0].edited_at_ms = 2000000;
    m.c[1].id = 150;
    struct ts_store_result res = ts_storefx_apply(&f, 2, &m.cmd);
    ck_assert_int_eq(res.status, TS_OK);
    const struct ts_store_import_item *it = outcome(&f, 2);
    ck_assert_uint_eq(it[0].comment_id, 100);
    ck_assert_uint_eq(it[0].seq, 2);
    ck_assert_uint_eq(it[1].comment_id, 150);
    ck_assert_uint_eq(it[1].seq, 3);
    Threadsync__Comment c;
    ck_assert_int_eq(ts_store_comment(f.s, 100, &c), TS_OK);
    ck_assert_uint_eq(c.version, 3);
    ck_assert_str_eq(c.moderated_by, "mod");
    ck_assert_int_eq(c.edited_at_ms, 2000000);
    Threadsync__Thread t;
    ck_assert_int_eq(ts_store_thread_by_key(f.s, "t1", &t), TS_OK);
    ck_assert_uint_eq(t.id, 100);
    ck_assert_uint_eq(t.version, 7);
    ck_assert_str_eq(t.moderated_by, "admin");
    /* later positions are above every id */
    ck_assert_uint_eq(post(&f, 3, "k", "t2").comment_id, 151);
    /* an exact id below the thread's newest is refused */
    m.c[0].source_id = "120";
    m.c[0].id = 120;
    m.c[0].parent_source_id = "";
    m.im.n_comments = 1;
    ts_storefx_apply(&f, 4, &m.cmd);
    it = outcome(&f, 1);
    ck_assert_int_eq(it[0].outcome, THREADSYNC__IMPORT_OUTCOME__IMPORT_REFUSED);
    ts_storefx_free(&f);
}
END_TEST

/* An entry the leader would never propose (a title past the limit, a
 * moderated_by that is no token name) cannot break the record layout. */
START_TEST(test_malformed_entry)
{
    struct ts_storefx f;
    ts_storefx_init(&f);
    static const char *const ids[] = {"1"}, *const par[] = {""};
    static const int st[] = {THREADSYNC__STATUS__VISIBLE};
    struct imp m;
    imp_init(&m, 1, ids, par, st);
    static char title[70001];
    memset(title, 'x', 70000);
    m.th.title = title;
    ts_storefx_apply(&f, 3, &m.cmd);
    const struct ts_store_import_item *it = outcome(&f, 1);
    ck_assert_int_eq(it[0].outcome, THREADSYNC__IMPORT_OUTCOME__IMPORT_REFUSED);
    ck_assert_uint_eq(ts_store_thread_count(f.s), 0);
    m.th.title = "ok";
    m.im.exact = 1;
    m.th.id = 10;
    m.c[0].id = 10;
    m.c[0].moderated_by = "not a\nname";
    ts_storefx_apply(&f, 4, &m.cmd);
    Threadsync__Comment c;
    ck_assert_int_eq(ts_store_comment(f.s, 10, &c), TS_OK);
    ck_assert_str_eq(c.moderated_by, "");
    ts_storefx_free(&f);
}
END_TEST

/* Every imported comment is kept under the first 16 bytes of
 * SHA-256("threadsync-import-v1" NUL source NUL source_id), as
 * threadsync_state.proto says: snapshots of other releases hold these, so
 * however the store computes them, the bytes must not change. */
START_TEST(test_import_digest_is_documented_sha256)
{
    struct ts_storefx f;
    ts_storefx_init(&f);
    struct imp m;
    imp_init(&m, 4, ids4, parents4, st4);
    ts_storefx_apply(&f, 10, &m.cmd);
    uint8_t *snap;
    size_t len;
    ts_storefx_snapshot(&f, &snap, &len);
    Threadsync__State__StoreSnapshot *sn =
        threadsync__state__store_snapshot__unpack(NULL, len, snap);
    free(snap);
    ck_assert_ptr_nonnull(sn);
    size_t found = 0;
    for (size_t i = 0; i < 4; i++) {
        uint8_t in[64], h[SHA256_DIGEST_LENGTH];
        size_t n = 0;
        memcpy(in, "threadsync-import-v1", 21); /* with its NUL */
        n = 21;
        memcpy(in + n, "wordpress", 10);
        n += 10;
        memcpy(in + n, ids4[i], strlen(ids4[i]));
        n += strlen(ids4[i]);
        SHA256(in, n, h);
        for (size_t k = 0; k < sn->n_imported; k++)
            found += sn->imported[k]->digest.len == 16 &&
                     memcmp(sn->imported[k]->digest.data, h, 16) == 0;
    }
    ck_assert_uint_eq(sn->n_imported, 3); /* "3" names a missing parent: refused */
    ck_assert_uint_eq(found, 3);
    threadsync__state__store_snapshot__free_unpacked(sn, NULL);
    ts_storefx_free(&f);
}
END_TEST

static Suite *import_suite(void)
{
    Suite *s = suite_create("ts_store_import");
    TCase *tc = tcase_create("import");
    tcase_add_test(tc, test_import_positions_and_outcomes);
    tcase_add_test(tc, test_reimport_adds_nothing);
    tcase_add_test(tc, test_parent_from_earlier_import);
    tcase_add_test(tc, test_snapshot_keeps_positions_and_sources);
    tcase_add_test(tc, test_exact_ids);
    tcase_add_test(tc, test_malformed_entry);
    tcase_add_test(tc, test_import_digest_is_documented_sha256);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ts_check_run(import_suite());
}
