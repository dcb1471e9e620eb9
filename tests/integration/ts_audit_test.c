/*
 * Integration: the audit trail (issue 16 item 5) on a real three-node
 * cluster. Moderators hide, edit (with a reason), lock and ban, an admin
 * adds a token; the leader is killed with SIGKILL; more actions go through
 * the new leader; the killed node comes back. Then every node, asked alone,
 * answers AuditList with the same entries (who, when, what, the text the
 * edit replaced), in the order the actions were taken, and every node has
 * the same state digest; `threadsync admin audit` prints that trail. A
 * poster's and a reader's AuditList are refused FORBIDDEN; an unknown thread
 * filter is NOT_FOUND; a reason that is too long, not single-line or on an
 * author's edit is INVALID_ARGUMENT.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ts_check_main.h"
#include "ts_err.h"
#include "threadsync.h"
#include "ts_testcluster.h"
#include "ts_testnode.h"

#define N 3

static struct ts_testnode nodes[N];
static char certs[256];

static void teardown(void)
{
    ts_testcluster_stop(nodes, N, certs);
}

/* A client configuration for the running nodes of which[] (-1 ends it), or
 * every running node when which is NULL. */
static struct ts_client_config config(const char *token, const int *which, const char **servers)
{
    size_t n = 0;
    for (int i = 0; i < N; i++) {
        int pick = !which;
        for (const int *w = which; w && *w >= 0; w++)
            pick |= *w == i;
        if (pick && nodes[i].pid)
            servers[n++] = nodes[i].addr;
    }
    struct ts_client_config cfg = {
        .servers = servers, .n_servers = n, .ca_file = nodes[0].ca, .token = token};
    cfg.reconnect = 1; /* across the election after the kill */
    cfg.request_timeout_ms = 30000;
    return cfg;
}

static void start_cluster(void)
{
    ts_testcluster_certs(certs, sizeof(certs), "audit", N);
    ts_testcluster_start(nodes, N, certs, NULL);
}

static uint64_t post(const char *body)
{
    const char *servers[N];
    struct ts_client_config cfg = config(nodes[0].poster_token, NULL, servers);
    Threadsync__Post p = THREADSYNC__POST__INIT;
    char key[32];
    snprintf(key, sizeof(key), "audit-%s", body);
    p.idempotency_key = key;
    p.thread_key = "audit/t";
    p.author_name = "Ann";
    p.author_email = "ann@example.org";
    p.body = (char *)body;
    Threadsync__PostResult *r = NULL;
    ck_assert_int_eq(ts_sync_post(&cfg, &p, &r, NULL), TS_OK);
    uint64_t id = r->comment_id;
    ts_msg_free(r);
    return id;
}

static void moderate(const char *token, uint64_t id, Threadsync__ModerationAction action)
{
    const char *servers[N];
    struct ts_client_config cfg = config(token, NULL, servers);
    Threadsync__Moderate m = THREADSYNC__MODERATE__INIT;
    m.comment_id = id;
    m.action = action;
    Threadsync__ChangeResult *r = NULL;
    ck_assert_int_eq(ts_sync_moderate(&cfg, &m, &r, NULL), TS_OK);
    ck_assert(r->changed);
    ts_msg_free(r);
}

static void thread_act(Threadsync__ThreadAction action)
{
    const char *servers[N];
    struct ts_client_config cfg = config(nodes[0].moderator_token, NULL, servers);
    Threadsync__ModerateThread m = THREADSYNC__MODERATE_THREAD__INIT;
    m.thread_key = "audit/t";
    m.action = action;
    Threadsync__ChangeResult *r = NULL;
    ck_assert_int_eq(ts_sync_moderate_thread(&cfg, &m, &r, NULL), TS_OK);
    ts_msg_free(r);
}

static void ban(uint64_t duration_ms)
{
    const char *servers[N];
    struct ts_client_config cfg = config(nodes[0].moderator_token, NULL, servers);
    Threadsync__BanAuthor b = THREADSYNC__BAN_AUTHOR__INIT;
    b.author = "spammer@example.org";
    b.duration_ms = duration_ms;
    Threadsync__BanResult *r = NULL;
    ck_assert_int_eq(ts_sync_ban(&cfg, &b, &r, NULL), TS_OK);
    ts_msg_free(r);
}

/* Node i's whole trail (asked of node i alone), or NULL with *err. */
static Threadsync__AuditListResult *trail_of(int i, const char *token, int *err,
                                             Threadsync__Error **detail)
{
    const int only[] = {i, -1};
    const char *servers[N];
    struct ts_client_config cfg = config(token, only, servers);
    cfg.reconnect = 0;
    Threadsync__AuditList q = THREADSYNC__AUDIT_LIST__INIT;
    q.limit = 1000;
    Threadsync__AuditListResult *r = NULL;
    *err = ts_sync_audit_list(&cfg, &q, &r, detail);
    return r;
}

/* Every field of two entries, printed for a readable failure. */
static void entry_text(const Threadsync__AuditEntry *e, char *out, size_t size)
{
    snprintf(out, size, "%llu/%lld/%s/%d/%llu/%s/%llu/%s/%s/%s/%lld/%d", (unsigned long long)e->seq,
             (long long)e->time_ms, e->actor, e->action, (unsigned long long)e->thread_id,
             e->thread_key, (unsigned long long)e->comment_id, e->text_before, e->reason, e->target,
             (long long)e->until_ms, e->role);
}

/* Waits until every node's trail has want entries and they are the same;
 * returns node 0's (the caller frees). */
static Threadsync__AuditListResult *same_trail_everywhere(size_t want)
{
    uint64_t deadline = ts_test_now_ms() + 60000;
    for (;;) {
        Threadsync__AuditListResult *r[N] = {NULL};
        int ok = 1;
        for (int i = 0; i < N; i++) {
            int err;
            r[i] = trail_of(i, nodes[0].moderator_token, &err, NULL);
            ok &= err == TS_OK && r[i]->n_entries == want && !r[i]->more;
        }
        for (int i = 1; ok && i < N; i++)
            for (size_t k = 0; k < want; k++) {
                char a[512], b[512];
                entry_text(r[0]->entries[k], a, sizeof(a));
                entry_text(r[i]->entries[k], b, sizeof(b));
                ck_assert_msg(!strcmp(a, b), "node %d's entry %zu differs:\n%s\n%s", i + 1, k, a,
                              b);
            }
        if (ok || ts_test_now_ms() > deadline) {
            ck_assert_msg(ok, "the nodes' trails never reached %zu entries", want);
            for (int i = 1; i < N; i++)
                ts_msg_free(r[i]);
            return r[0];
        }
        for (int i = 0; i < N; i++)
            ts_msg_free(r[i]);
        ts_test_poll(deadline);
    }
}

/* Node i's `admin digest` line's digest into out[65]. */
static void digest_of(int i, char out[65])
{
    const char *argv[] = {
        TS_THREADSYNC_PATH, "--server",          nodes[i].addr, "--ca",   nodes[0].ca,
        "--token-file",     nodes[0].token_file, "admin",       "digest", NULL};
    char *text = NULL;
    ck_assert_int_eq(ts_test_run(argv, NULL, NULL, &text), 0);
    const char *p = strstr(text, "digest=");
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(sscanf(p + 7, "%64[0-9a-f]", out), 1);
    free(text);
}

START_TEST(test_audit_survives_leader_kill)
{
    start_cluster();
    uint64_t c1 = post("first"), c2 = post("second"), c3 = post("third");

    /* before the kill: hide, an edit with its reason, a lock, a ban, a token */
    moderate(nodes[0].moderator_token, c1, THREADSYNC__MODERATION_ACTION__HIDE);
    {
        const char *servers[N];
        struct ts_client_config cfg = config(nodes[0].moderator_token, NULL, servers);
        Threadsync__Edit e = THREADSYNC__EDIT__INIT;
        e.comment_id = c2;
        e.body = "second, tidied";
        e.reason = "rude word";
        Threadsync__ChangeResult *r = NULL;
        ck_assert_int_eq(ts_sync_edit(&cfg, &e, &r, NULL), TS_OK);
        ts_msg_free(r);
    }
    thread_act(THREADSYNC__THREAD_ACTION__THREAD_LOCK);
    ban(3600000);
    {
        const char *servers[N];
        struct ts_client_config cfg = config(nodes[0].admin_token, NULL, servers);
        Threadsync__TokenAdd t = THREADSYNC__TOKEN_ADD__INIT;
        t.name = "mod-two";
        t.role = THREADSYNC__ROLE__MODERATOR;
        Threadsync__TokenAddResult *r = NULL;
        ck_assert_int_eq(ts_sync_token_add(&cfg, &t, &r, NULL), TS_OK);
        ts_msg_free(r);
    }
    ts_msg_free(same_trail_everywhere(5));

    int l = ts_testcluster_await_leader(nodes, N, 30000);
    ck_assert_int_ge(l, 0);
    ck_assert(WIFSIGNALED(ts_testnode_kill(&nodes[l], SIGKILL)));
    int l2 = ts_testcluster_await_leader(nodes, N, 30000);
    ck_assert_int_ge(l2, 0);
    ck_assert_int_ne(l2, l);

    /* after: through the new leader, by the admin too */
    moderate(nodes[0].moderator_token, c1, THREADSYNC__MODERATION_ACTION__UNHIDE);
    moderate(nodes[0].admin_token, c3, THREADSYNC__MODERATION_ACTION__DELETE);
    thread_act(THREADSYNC__THREAD_ACTION__THREAD_UNLOCK);
    ban(0);
    ck_assert_int_eq(ts_testnode_restart(&nodes[l], NULL), TS_OK);

    Threadsync__AuditListResult *r = same_trail_everywhere(9);
    static const struct {
        int action;
        const char *actor;
    } want[] = {
        {THREADSYNC__AUDIT_ACTION__AUDIT_HIDE, "test-moderator"},
        {THREADSYNC__AUDIT_ACTION__AUDIT_EDIT, "test-moderator"},
        {THREADSYNC__AUDIT_ACTION__AUDIT_LOCK, "test-moderator"},
        {THREADSYNC__AUDIT_ACTION__AUDIT_BAN, "test-moderator"},
        {THREADSYNC__AUDIT_ACTION__AUDIT_TOKEN_ADD, "test-admin"},
        {THREADSYNC__AUDIT_ACTION__AUDIT_UNHIDE, "test-moderator"},
        {THREADSYNC__AUDIT_ACTION__AUDIT_DELETE, "test-admin"},
        {THREADSYNC__AUDIT_ACTION__AUDIT_UNLOCK, "test-moderator"},
        {THREADSYNC__AUDIT_ACTION__AUDIT_UNBAN, "test-moderator"},
    };
    for (size_t k = 0; k < 9; k++) {
        const Threadsync__AuditEntry *e = r->entries[k];
        ck_assert_msg((int)e->action == want[k].action, "entry %zu: action %d, want %d", k,
                      e->action, want[k].action);
        ck_assert_str_eq(e->actor, want[k].actor);
        ck_assert_int_gt(e->time_ms, 0);
        if (k)
            ck_assert_uint_gt(e->seq, r->entries[k - 1]->seq);
    }
    ck_assert_uint_eq(r->entries[0]->comment_id, c1);
    ck_assert_str_eq(r->entries[0]->thread_key, "audit/t");
    ck_assert_uint_eq(r->entries[1]->comment_id, c2);
    ck_assert_str_eq(r->entries[1]->text_before, "second");
    ck_assert_str_eq(r->entries[1]->reason, "rude word");
    ck_assert_str_eq(r->entries[3]->target, "spammer@example.org");
    ck_assert_str_eq(r->entries[4]->target, "mod-two");
    ck_assert_uint_eq(r->entries[6]->comment_id, c3);
    ts_msg_free(r);

    /* the CLI prints the same trail, text and JSON Lines */
    {
        const char *argv[] = {
            TS_THREADSYNC_PATH,  "--server", nodes[l].addr, "--ca", nodes[0].ca, "--token-file",
            nodes[0].token_file, "admin",    "audit",       NULL,   NULL};
        char *text = NULL;
        ck_assert_int_eq(ts_test_run(argv, NULL, NULL, &text), 0);
        ck_assert_msg(strstr(text, "actor=test-moderator action=edit thread=\"audit/t\"") &&
                          strstr(text, "reason=\"rude word\" text_before=\"second\"\n"),
                      "admin audit printed:\n%s", text);
        free(text);
        argv[9] = "--json";
        ck_assert_int_eq(ts_test_run(argv, NULL, NULL, &text), 0);
        size_t lines = 0;
        for (const char *p = text; (p = strstr(p, "{\"type\":\"audit\"")); p++)
            lines++;
        ck_assert_uint_eq(lines, 9);
        ck_assert_ptr_nonnull(strstr(text, "\"action\":\"unban\",\"thread_id\":0"));
        free(text);
    }

    char d[N][65];
    uint64_t deadline = ts_test_now_ms() + 30000;
    int same = 0;
    do {
        for (int i = 0; i < N; i++)
            digest_of(i, d[i]);
        same = !strcmp(d[0], d[1]) && !strcmp(d[0], d[2]);
    } while (!same && ts_test_poll(deadline));
    ck_assert_msg(same, "digests differ: %s %s %s", d[0], d[1], d[2]);

    /* a poster and a reader may not read the trail; a bad filter */
    const char *refused[] = {nodes[0].poster_token, nodes[0].reader_token};
    for (size_t k = 0; k < 2; k++) {
        int err;
        Threadsync__Error *detail = NULL;
        Threadsync__AuditListResult *x = trail_of(l2, refused[k], &err, &detail);
        ck_assert_ptr_null(x);
        ck_assert_int_eq(err, TS_E_FORBIDDEN);
        ck_assert_ptr_nonnull(detail);
        ck_assert_int_eq(detail->code, THREADSYNC__ERROR_CODE__FORBIDDEN);
        ts_msg_free(detail);
    }
    {
        const int only[] = {l2, -1};
        const char *servers[N];
        struct ts_client_config cfg = config(nodes[0].moderator_token, only, servers);
        Threadsync__AuditList q = THREADSYNC__AUDIT_LIST__INIT;
        q.thread_key = "no/such/thread";
        Threadsync__AuditListResult *x = NULL;
        Threadsync__Error *detail = NULL;
        ck_assert_int_eq(ts_sync_audit_list(&cfg, &q, &x, &detail), TS_E_NOT_FOUND);
        ck_assert_str_eq(detail->field, "thread_key");
        ts_msg_free(detail);
    }
    /* Edit.reason: a moderator's, single-line, at most 512 bytes */
    {
        const char *servers[N];
        struct ts_client_config cfg = config(nodes[0].moderator_token, NULL, servers);
        Threadsync__PostResult *pr = NULL;
        Threadsync__Post p = THREADSYNC__POST__INIT;
        p.idempotency_key = "audit-own";
        p.thread_key = "audit/t";
        p.author_name = "Mo";
        p.body = "my own words";
        ck_assert_int_eq(ts_sync_post(&cfg, &p, &pr, NULL), TS_OK);
        char long_reason[514];
        memset(long_reason, 'r', 513);
        long_reason[513] = '\0';
        const char *bad[] = {long_reason, "two\nlines", "mine"};
        for (size_t k = 0; k < 3; k++) {
            Threadsync__Edit e = THREADSYNC__EDIT__INIT;
            e.comment_id = pr->comment_id;
            e.body = "other words";
            e.reason = (char *)bad[k];
            if (k == 2)
                e.edit_key = pr->edit_key; /* an author's edit takes no reason */
            Threadsync__ChangeResult *r2 = NULL;
            Threadsync__Error *detail = NULL;
            ck_assert_int_eq(ts_sync_edit(&cfg, &e, &r2, &detail), TS_E_INVALID_ARGUMENT);
            ck_assert_str_eq(detail->field, "reason");
            ts_msg_free(detail);
        }
        ts_msg_free(pr);
    }
}
END_TEST

static Suite *audit_suite(void)
{
    Suite *s = suite_create("ts_audit");
    TCase *tc = tcase_create("cluster");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_audit_survives_leader_kill);
    tcase_set_timeout(tc, 600);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ts_check_run(audit_suite());
}
