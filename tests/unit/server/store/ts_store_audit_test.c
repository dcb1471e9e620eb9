/*
 * ts_store's audit trail (ts_store_audit.c): which applied commands make a
 * record and with what (actor, command time, the text an edit replaced,
 * the reason), which make none (authors' changes, retries, refusals);
 * listing oldest and newest first, filters and paging; the trail through a
 * snapshot (format 4; a state without a trail still writes format 2; a
 * trail in an older format refused) and in the digest; the cost cap,
 * dropping the oldest records the same way on a replica restored midway.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "threadsync_state.pb-c.h"
#include "ts_check_main.h"
#include "ts_err.h"
#include "ts_evlog.h"
#include "ts_store.h"
#include "ts_storefx.h"

static struct ts_store_result apply(struct ts_storefx *f, uint64_t index, int64_t t,
                                    const char *actor, Threadsync__State__Command *cmd)
{
    cmd->time_ms = t;
    cmd->actor = (char *)actor;
    return ts_storefx_apply(f, index, cmd);
}

static struct ts_store_result post(struct ts_storefx *f, uint64_t index, const char *ikey,
                                   const char *thread)
{
    Threadsync__Post p = THREADSYNC__POST__INIT;
    p.idempotency_key = (char *)ikey;
    p.thread_key = (char *)thread;
    p.author_name = "Ann";
    p.body = "first words";
    Threadsync__State__Command cmd = THREADSYNC__STATE__COMMAND__INIT;
    cmd.op_case = THREADSYNC__STATE__COMMAND__OP_POST;
    cmd.post = &p;
    uint8_t h[32] = {1};
    cmd.edit_key_hash.data = h;
    cmd.edit_key_hash.len = 32;
    return apply(f, index, 1000, "poster", &cmd);
}

/* A moderator's change (author 0) or an author's (edit key hash {1}). */
static struct ts_store_result change(struct ts_storefx *f, uint64_t index, int64_t t, uint64_t id,
                                     Threadsync__State__ChangeKind kind, const char *body,
                                     const char *reason, int author)
{
    Threadsync__State__CommentChange cc = THREADSYNC__STATE__COMMENT_CHANGE__INIT;
    cc.comment_id = id;
    cc.kind = kind;
    cc.body = (char *)body;
    cc.reason = (char *)reason;
    uint8_t h[32] = {1};
    if (author) {
        cc.edit_key_hash.data = h;
        cc.edit_key_hash.len = 32;
        cc.edit_window_ms = 1000000;
    }
    Threadsync__State__Command cmd = THREADSYNC__STATE__COMMAND__INIT;
    cmd.op_case = THREADSYNC__STATE__COMMAND__OP_COMMENT_CHANGE;
    cmd.comment_change = &cc;
    return apply(f, index, t, author ? "poster" : "mod-alice", &cmd);
}

static void tokens(struct ts_storefx *f, uint64_t index)
{
    uint8_t h[32] = {7};
    Threadsync__State__TokenGrant g = THREADSYNC__STATE__TOKEN_GRANT__INIT;
    g.name = "mod-carol";
    g.role = THREADSYNC__ROLE__MODERATOR;
    g.token_hash.data = h;
    g.token_hash.len = 32;
    Threadsync__State__Command cmd = THREADSYNC__STATE__COMMAND__INIT;
    cmd.op_case = THREADSYNC__STATE__COMMAND__OP_TOKEN_GRANT;
    cmd.token_grant = &g;
    ck_assert(apply(f, index, 4000, "admin", &cmd).changed);
    Threadsync__TokenRevoke r = THREADSYNC__TOKEN_REVOKE__INIT;
    r.name = "mod-carol";
    Threadsync__State__Command rc = THREADSYNC__STATE__COMMAND__INIT;
    rc.op_case = THREADSYNC__STATE__COMMAND__OP_TOKEN_REVOKE;
    rc.token_revoke = &r;
    ck_assert(apply(f, index + 1, 4001, "admin", &rc).changed);
    ck_assert(!apply(f, index + 2, 4002, "admin", &rc).changed); /* again: nothing */
}

/* Every kind of audited action once, and the ones that must not count. */
static void moderate_everything(struct ts_storefx *f)
{
    ck_assert(post(f, 1, "k1", "t/a").changed);
    ck_assert(post(f, 2, "k2", "t/b").changed);
    ck_assert(change(f, 3, 1100, 1, K_HIDE, NULL, NULL, 0).changed);
    ck_assert(!change(f, 4, 1101, 1, K_HIDE, NULL, NULL, 0).changed); /* a retry */
    ck_assert(change(f, 5, 1102, 1, K_UNHIDE, NULL, NULL, 0).changed);
    ck_assert(change(f, 6, 1103, 1, K_EDIT, "new words", "spelling", 0).changed);
    ck_assert(change(f, 7, 1104, 2, K_EDIT, "author's words", NULL, 1).changed); /* author */
    ck_assert_int_eq(change(f, 8, 1105, 9, K_HIDE, NULL, NULL, 0).status, TS_E_NOT_FOUND);
    ck_assert(change(f, 9, 1106, 2, K_DELETE, NULL, NULL, 0).changed);
    ck_assert(
        ts_storefx_thread_act(f, 10, 2000, "t/a", THREADSYNC__THREAD_ACTION__THREAD_LOCK).changed);
    ck_assert(
        ts_storefx_thread_act(f, 11, 2000, "t/a", THREADSYNC__THREAD_ACTION__THREAD_PREMODERATE)
            .changed);
    ck_assert(ts_storefx_ban(f, 12, 3000, "mod-alice", "Spam@X.org", 60000).changed);
    ck_assert(ts_storefx_ban(f, 13, 3000, "mod-alice", "spam@x.org", 0).changed);
    ck_assert(
        !ts_storefx_ban(f, 14, 3000, "mod-alice", "nobody@x.org", 0).changed); /* nothing to lift */
    tokens(f, 15);
}

static Threadsync__AuditEntry *list(struct ts_storefx *f, const struct ts_store_audit_query *q,
                                    size_t limit, size_t *n, int *more)
{
    static Threadsync__AuditEntry out[64];
    ck_assert_uint_le(limit, 64);
    ck_assert_int_eq(ts_store_audit_list(f->s, q, out, limit, n, more), TS_OK);
    return out;
}

START_TEST(test_audit_records)
{
    struct ts_storefx f;
    ts_storefx_init(&f);
    moderate_everything(&f);
    struct ts_store_audit_query q = {0};
    size_t n;
    int more;
    Threadsync__AuditEntry *e = list(&f, &q, 64, &n, &more);
    static const struct {
        uint64_t seq;
        int action;
        const char *actor;
    } want[] = {
        {3, THREADSYNC__AUDIT_ACTION__AUDIT_HIDE, "mod-alice"},
        {5, THREADSYNC__AUDIT_ACTION__AUDIT_UNHIDE, "mod-alice"},
        {6, THREADSYNC__AUDIT_ACTION__AUDIT_EDIT, "mod-alice"},
        {9, THREADSYNC__AUDIT_ACTION__AUDIT_DELETE, "mod-alice"},
        {10, THREADSYNC__AUDIT_ACTION__AUDIT_LOCK, "mod-bob"},
        {11, THREADSYNC__AUDIT_ACTION__AUDIT_PREMODERATE, "mod-bob"},
        {12, THREADSYNC__AUDIT_ACTION__AUDIT_BAN, "mod-alice"},
        {13, THREADSYNC__AUDIT_ACTION__AUDIT_UNBAN, "mod-alice"},
        {15, THREADSYNC__AUDIT_ACTION__AUDIT_TOKEN_ADD, "admin"},
        {16, THREADSYNC__AUDIT_ACTION__AUDIT_TOKEN_REVOKE, "admin"},
    };
    ck_assert_uint_eq(n, sizeof(want) / sizeof(want[0]));
    ck_assert(!more);
    for (size_t i = 0; i < n; i++) {
        ck_assert_uint_eq(e[i].seq, want[i].seq);
        ck_assert_int_eq(e[i].action, want[i].action);
        ck_assert_str_eq(e[i].actor, want[i].actor);
    }
    /* the edit: who, when, the words it replaced and why */
    ck_assert_int_eq(e[2].time_ms, 1103);
    ck_assert_uint_eq(e[2].comment_id, 1);
    ck_assert_uint_eq(e[2].thread_id, 1);
    ck_assert_str_eq(e[2].thread_key, "t/a");
    ck_assert_str_eq(e[2].text_before, "first words");
    ck_assert_str_eq(e[2].reason, "spelling");
    /* a delete keeps no text: the tombstone erased it */
    ck_assert_str_eq(e[3].text_before, "");
    ck_assert_str_eq(e[6].target, "spam@x.org");
    ck_assert_int_eq(e[6].until_ms, 3000 + 60000);
    ck_assert_str_eq(e[8].target, "mod-carol");
    ck_assert_int_eq(e[8].role, THREADSYNC__ROLE__MODERATOR);
    ck_assert_uint_eq(ts_store_audit_count(f.s), n);
    ck_assert_uint_eq(ts_store_audit_oldest(f.s), 3);

    /* newest first, paged by before_seq */
    struct ts_store_audit_query nq = {.newest_first = 1};
    e = list(&f, &nq, 3, &n, &more);
    ck_assert_uint_eq(n, 3);
    ck_assert(more);
    ck_assert_uint_eq(e[0].seq, 16);
    ck_assert_uint_eq(e[2].seq, 13);
    nq.before_seq = 13;
    e = list(&f, &nq, 64, &n, &more);
    ck_assert_uint_eq(n, 7);
    ck_assert(!more);
    ck_assert_uint_eq(e[0].seq, 12);
    /* oldest first from after_seq; by comment; by thread */
    struct ts_store_audit_query aq = {.after_seq = 9};
    e = list(&f, &aq, 2, &n, &more);
    ck_assert_uint_eq(n, 2);
    ck_assert(more);
    ck_assert_uint_eq(e[0].seq, 10);
    struct ts_store_audit_query cq = {.comment_id = 1};
    list(&f, &cq, 64, &n, &more);
    ck_assert_uint_eq(n, 3);
    struct ts_store_audit_query tq = {.thread_id = 2};
    e = list(&f, &tq, 64, &n, &more);
    ck_assert_uint_eq(n, 1);
    ck_assert_uint_eq(e[0].seq, 9);
    ts_storefx_free(&f);
}
END_TEST

/* An over-long reason is refused by the apply, and changes nothing. */
START_TEST(test_audit_reason_limit)
{
    struct ts_storefx f;
    ts_storefx_init(&f);
    post(&f, 1, "k1", "t/a");
    char reason[TS_STORE_AUDIT_REASON_MAX + 2];
    memset(reason, 'r', sizeof(reason) - 1);
    reason[sizeof(reason) - 1] = '\0';
    struct ts_store_result r = change(&f, 2, 1100, 1, K_EDIT, "other", reason, 0);
    ck_assert_int_eq(r.status, TS_E_INVALID_ARGUMENT);
    ck_assert_str_eq(r.field, "reason");
    ck_assert_uint_eq(ts_store_audit_count(f.s), 0);
    reason[TS_STORE_AUDIT_REASON_MAX] = '\0';
    ck_assert(change(&f, 3, 1100, 1, K_EDIT, "other", reason, 0).changed);
    ck_assert_uint_eq(ts_store_audit_count(f.s), 1);
    ts_storefx_free(&f);
}
END_TEST

static uint32_t snapshot_format(const uint8_t *buf, size_t len)
{
    Threadsync__State__StoreSnapshot *s = threadsync__state__store_snapshot__unpack(NULL, len, buf);
    ck_assert_ptr_nonnull(s);
    uint32_t format = s->format;
    threadsync__state__store_snapshot__free_unpacked(s, NULL);
    return format;
}

START_TEST(test_audit_snapshot_round_trip)
{
    struct ts_storefx f, g;
    ts_storefx_init(&f);
    ts_storefx_init(&g);
    /* no trail yet: the format older releases read */
    post(&f, 1, "k0", "t/z");
    uint8_t *snap;
    size_t len;
    ck_assert_int_eq(ts_store_snapshot(f.s, &snap, &len), TS_OK);
    ck_assert_uint_eq(snapshot_format(snap, len), 2);
    free(snap);
    ts_storefx_free(&f);
    ts_storefx_init(&f);

    moderate_everything(&f);
    ts_storefx_snapshot(&f, &snap, &len);
    ck_assert_uint_eq(snapshot_format(snap, len), 4);
    ck_assert_int_eq(ts_store_restore(g.s, snap, len), TS_OK);
    char d1[65], d2[65];
    ts_store_digest(f.s, d1);
    ts_store_digest(g.s, d2);
    ck_assert_str_eq(d1, d2);
    struct ts_store_audit_query q = {0};
    size_t n1, n2;
    int more;
    Threadsync__AuditEntry a[64], b[64];
    ck_assert_int_eq(ts_store_audit_list(f.s, &q, a, 64, &n1, &more), TS_OK);
    ck_assert_int_eq(ts_store_audit_list(g.s, &q, b, 64, &n2, &more), TS_OK);
    ck_assert_uint_eq(n1, n2);
    for (size_t i = 0; i < n1; i++) {
        ck_assert_uint_eq(a[i].seq, b[i].seq);
        ck_assert_int_eq(a[i].time_ms, b[i].time_ms);
        ck_assert_str_eq(a[i].actor, b[i].actor);
        ck_assert_str_eq(a[i].text_before, b[i].text_before);
        ck_assert_str_eq(a[i].reason, b[i].reason);
        ck_assert_str_eq(a[i].thread_key, b[i].thread_key);
    }
    /* the trail goes on after a restore, above the restored records */
    ck_assert(change(&g, 20, 5000, 1, K_HIDE, NULL, NULL, 0).changed);
    ck_assert_uint_eq(ts_store_audit_count(g.s), n1 + 1);

    /* a trail in a snapshot that claims format 3 is refused */
    Threadsync__State__StoreSnapshot *s =
        threadsync__state__store_snapshot__unpack(NULL, len, snap);
    ck_assert_ptr_nonnull(s);
    s->format = 3;
    uint8_t *bad = malloc(threadsync__state__store_snapshot__get_packed_size(s));
    size_t bad_len = threadsync__state__store_snapshot__pack(s, bad);
    /* and records out of seq order */
    s->format = 4;
    Threadsync__AuditEntry *tmp = s->audit[0];
    s->audit[0] = s->audit[1];
    s->audit[1] = tmp;
    uint8_t *bad2 = malloc(threadsync__state__store_snapshot__get_packed_size(s));
    size_t bad2_len = threadsync__state__store_snapshot__pack(s, bad2);
    threadsync__state__store_snapshot__free_unpacked(s, NULL);
    struct ts_storefx h;
    ts_storefx_init(&h);
    ck_assert_int_eq(ts_store_restore(h.s, bad, bad_len), TS_E_BAD_FRAME);
    ck_assert_int_eq(ts_store_restore(h.s, bad2, bad2_len), TS_E_BAD_FRAME);
    free(bad);
    free(bad2);
    free(snap);
    ts_storefx_free(&f);
    ts_storefx_free(&g);
    ts_storefx_free(&h);
}
END_TEST

/* Two states equal but for their trails (a ban, then its lift, on one)
 * have different digests: divergence shows. */
START_TEST(test_audit_in_digest)
{
    struct ts_storefx f, g;
    ts_storefx_init(&f);
    ts_storefx_init(&g);
    post(&f, 1, "k1", "t/a");
    post(&g, 1, "k1", "t/a");
    char d1[65], d2[65];
    ts_store_digest(f.s, d1);
    ts_store_digest(g.s, d2);
    ck_assert_str_eq(d1, d2);
    ts_storefx_ban(&f, 2, 3000, "mod-alice", "x@y.org", 1000);
    ts_storefx_ban(&f, 3, 3000, "mod-alice", "x@y.org", 0);
    ts_store_digest(f.s, d1);
    ck_assert_str_ne(d1, d2);
    ts_storefx_free(&f);
    ts_storefx_free(&g);
}
END_TEST

/* The cap: records of a known cost (a ban and its lift with a 64-byte
 * actor and a 254-byte author) past TS_STORE_AUDIT_MAX_BYTES; the oldest
 * go, the newest stay, and a replica restored from a snapshot midway then
 * fed the rest drops the same ones. */
START_TEST(test_audit_cap)
{
    char actor[65], author[255];
    memset(actor, 'm', 64);
    actor[64] = '\0';
    memset(author, 'a', 254);
    author[254] = '\0';
    size_t cost = TS_STORE_AUDIT_RECORD_COST + 64 + 254 + 4;
    size_t keep = TS_STORE_AUDIT_MAX_BYTES / cost;
    size_t total = keep + 1000;
    struct ts_storefx f, g;
    ts_storefx_init(&f);
    ts_storefx_init(&g);
    uint64_t i;
    for (i = 1; i <= total; i++) {
        ts_storefx_ban(&f, i, 3000, actor, author, i % 2 ? 1000 : 0);
        if (i == total / 2) {
            uint8_t *snap;
            size_t len;
            ck_assert_int_eq(ts_store_snapshot(f.s, &snap, &len), TS_OK);
            ck_assert_int_eq(ts_store_restore(g.s, snap, len), TS_OK);
            free(snap);
        } else if (i > total / 2) {
            ts_storefx_ban(&g, i, 3000, actor, author, i % 2 ? 1000 : 0);
        }
    }
    ck_assert_uint_eq(ts_store_audit_count(f.s), keep);
    ck_assert_uint_eq(ts_store_audit_oldest(f.s), total - keep + 1);
    ck_assert_uint_eq(ts_store_audit_count(g.s), keep);
    ck_assert_uint_eq(ts_store_audit_oldest(g.s), total - keep + 1);
    char d1[65], d2[65];
    ts_store_digest(f.s, d1);
    ts_store_digest(g.s, d2);
    ck_assert_str_eq(d1, d2);
    fprintf(stderr, "audit cap: %zu records of %zu bytes kept (cap %u bytes)\n", keep, cost,
            TS_STORE_AUDIT_MAX_BYTES);
    ts_storefx_free(&f);
    ts_storefx_free(&g);
}
END_TEST

static Suite *audit_suite(void)
{
    Suite *s = suite_create("ts_store_audit");
    TCase *tc = tcase_create("audit");
    tcase_add_test(tc, test_audit_records);
    tcase_add_test(tc, test_audit_reason_limit);
    tcase_add_test(tc, test_audit_snapshot_round_trip);
    tcase_add_test(tc, test_audit_in_digest);
    tcase_add_test(tc, test_audit_cap);
    tcase_set_timeout(tc, 600);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ts_check_run(audit_suite());
}
