/*
 * Integration: read replicas (threadsyncd --join ... --read-replica, issue
 * 17 item 3) on real processes.
 *
 * serve_and_survive: three voters and two replicas. One libthreadsync
 * client posts to the voters with idempotency keys; two subscribers each
 * list a single replica (so they are served by that replica and nothing
 * else, across their reconnects). Then, while posting goes on:
 *
 *   1. kill -9 a replica and a voter that does not lead; restart both: the
 *      replica catches up and its subscriber resumes on it;
 *   2. kill -9 both replicas: the three voters keep committing (replicas
 *      do not count for quorum); restart both;
 *   3. kill -9 the leader: the replicas follow the new one, their
 *      subscribers see no gap.
 *
 * At the end every acknowledged post is on all five nodes exactly once
 * (Get, Digest and StateDigest agree), and each replica's subscriber saw
 * every acknowledged post's event exactly once, by seq, in increasing seq
 * order. `threadsync admin cluster` pointed at a replica alone shows three
 * voters and two standbys, and `threadsync mirror` and `verify` given only
 * the replicas sync and check everything. Timings are printed, never
 * asserted.
 *
 * cut_off_and_roles: one voter and one replica. The replica answers writes
 * NOT_LEADER naming the leader (a client listing only the replica still
 * posts, through the redirect); a Join asking to make it a voter is refused
 * (no join changes a role); once the voter is killed the replica refuses
 * reads and closes its subscriber (UNAVAILABLE, the staleness bound), and
 * serves again once the voter is back; removed with remove-node, it stops
 * serving.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <uv.h>

#include "threadsync.h"
#include "ts_check_main.h"
#include "ts_frame.h"
#include "ts_testcluster.h"
#include "ts_testnode.h"

#define VOTERS 3
#define REPLICAS 2
#define N (VOTERS + REPLICAS)
#define TOTAL 600
#define WINDOW 8
#define POST_EVERY_MS 10
#define PHASE_MS 90000
#define THREAD "rr/main"

static struct ts_testnode nodes[N];
static char certs[256];
static const char *const replica_flags[] = {"--read-replica", NULL};

static void teardown(void)
{
    ts_testcluster_stop(nodes, N, certs);
}

static int is_replica(int i)
{
    return i >= VOTERS;
}

static int restart(int i)
{
    return ts_testnode_restart(&nodes[i], is_replica(i) ? replica_flags : NULL);
}

/* Node i (index) as member id i + 1: a voter or, with replica, a standby. */
static void start_node(int i, int replica)
{
    char name[16];
    snprintf(name, sizeof(name), "n%d", i + 1);
    ck_assert_int_eq(ts_testnode_start_member(&nodes[i], i ? &nodes[0] : NULL, certs, name,
                                              (uint64_t)i + 1, replica ? replica_flags : NULL),
                     TS_OK);
}

/* A request over raw TLS to node i as token; the answer frame (Result or
 * Error for request id 7), or NULL when the node cannot be reached. */
static Threadsync__Frame *raw_request(int i, const char *token, Threadsync__Frame *req)
{
    struct ts_raw *r = NULL;
    if (ts_testnode_connect(&nodes[i], token, &r) != TS_OK)
        return NULL;
    Threadsync__Frame *in = NULL;
    if (ts_raw_send_frame(r, req) == TS_OK) {
        while (ts_raw_recv_nonping(r, 10000, &in) == TS_OK) {
            if ((in->msg_case == THREADSYNC__FRAME__MSG_RESULT && in->result->request_id == 7) ||
                (in->msg_case == THREADSYNC__FRAME__MSG_ERROR && in->error->request_id == 7))
                break;
            ts_frame_free(in);
            in = NULL;
        }
    }
    ts_raw_close(r);
    return in;
}

static Threadsync__Frame *raw_get(int i)
{
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Get g = THREADSYNC__GET__INIT;
    g.request_id = 7;
    g.thread_key = THREAD;
    f.msg_case = THREADSYNC__FRAME__MSG_GET;
    f.get = &g;
    return raw_request(i, nodes[0].reader_token, &f);
}

static void body_of(int i, char *out, size_t size)
{
    snprintf(out, size, "replica post %d: %.*s", i, i % 30 + 1, "abcdefghijklmnopqrstuvwxyz0123");
}

/* ---- serve_and_survive: a replica's subscriber ---- */

struct subscriber {
    struct ts_client *c;
    uint64_t node_id;   /* the replica it lists, alone */
    uint64_t node;      /* node id of the current READY connection, 0: none */
    uint64_t last_seq;  /* highest event seq received */
    unsigned dups;      /* events at or below last_seq */
    unsigned events;    /* all of them */
    unsigned readies;   /* READY states (1 + reconnects) */
    unsigned snapshots; /* must stay 0: every resume is inside the event log */
    unsigned char seen[TS_TESTCLUSTER_MAX_ID];
    uint64_t seq_of[TS_TESTCLUSTER_MAX_ID];
};

static void sub_state(void *arg, const struct ts_client_state_info *info)
{
    struct subscriber *s = arg;
    if (info->state == TS_CLIENT_READY) {
        ck_assert_uint_eq(info->welcome->node_id, s->node_id); /* only ever its replica */
        s->node = info->welcome->node_id;
        s->readies++;
    } else if (info->state == TS_CLIENT_DISCONNECTED) {
        s->node = 0;
    }
    ck_assert_int_ne(info->state, TS_CLIENT_FAILED);
}

static void sub_events(void *arg, const Threadsync__Events *ev)
{
    struct subscriber *s = arg;
    for (size_t i = 0; i < ev->n_events; i++) {
        const Threadsync__Event *e = ev->events[i];
        if (e->seq <= s->last_seq) {
            s->dups++;
            fprintf(stderr, "replica: node %llu's subscriber got seq %llu after %llu\n",
                    (unsigned long long)s->node_id, (unsigned long long)e->seq,
                    (unsigned long long)s->last_seq);
        }
        s->last_seq = e->seq;
        s->events++;
        ck_assert_ptr_nonnull(e->comment); /* every event of this test is a post */
        ck_assert_uint_lt(e->comment->id, TS_TESTCLUSTER_MAX_ID);
        if (s->seen[e->comment->id] < 255)
            s->seen[e->comment->id]++;
        s->seq_of[e->comment->id] = e->seq;
    }
}

static void sub_snap_end(void *arg, const Threadsync__SnapshotEnd *e)
{
    (void)e;
    ((struct subscriber *)arg)->snapshots++;
}

static void sub_error(void *arg, int err, const Threadsync__Error *detail)
{
    (void)arg;
    (void)detail;
    ck_assert_msg(err == TS_E_CLOSED, "subscription ended: %s", ts_err_name(err));
}

/* ---- serve_and_survive: the driver ---- */

struct run {
    uv_loop_t loop;
    uv_timer_t post_timer, driver;
    struct ts_testcluster_poster p;
    struct subscriber s[REPLICAS];
    int phase;
    uint64_t phase_start, phase_deadline;
    int killed_voter;
    int acked_at;
    unsigned readies_at;
    uint64_t t_catch_up;    /* replica restart -> its subscriber saw every ack */
    uint64_t t_no_replicas; /* 60 acks with both replicas down */
    uint64_t t_leader;      /* leader kill -> ack of the first post submitted after it */
    int done;
};

static int sub_saw_all_acked(const struct subscriber *s, const struct ts_testcluster_poster *p)
{
    for (int i = 0; i < TOTAL; i++)
        if (p->ids[i] && !s->seen[p->ids[i]])
            return 0;
    return 1;
}

static int at_least(int n)
{
    return n < TOTAL ? n : TOTAL;
}

static void next_phase(struct run *r)
{
    r->phase++;
    r->phase_start = ts_test_now_ms();
    r->phase_deadline = r->phase_start + PHASE_MS;
    r->acked_at = r->p.acked;
}

static void on_post_tick(uv_timer_t *t)
{
    ts_testcluster_poster_tick(&((struct run *)t->data)->p, WINDOW);
}

static void kill9(int i)
{
    ck_assert(WIFSIGNALED(ts_testnode_kill(&nodes[i], SIGKILL)));
}

static void close_all(struct run *r)
{
    r->done = 1;
    uv_close((uv_handle_t *)&r->post_timer, NULL);
    uv_close((uv_handle_t *)&r->driver, NULL);
    ts_client_close(r->p.c, NULL, NULL);
    for (int k = 0; k < REPLICAS; k++)
        ts_client_close(r->s[k].c, NULL, NULL);
}

static void on_driver(uv_timer_t *t)
{
    struct run *r = t->data;
    uint64_t now = ts_test_now_ms();
    ck_assert_msg(now < r->phase_deadline,
                  "phase %d timed out: acked %d/%d, in flight %d, replica subscribers at seq "
                  "%llu and %llu",
                  r->phase, r->p.acked, TOTAL, r->p.in_flight, (unsigned long long)r->s[0].last_seq,
                  (unsigned long long)r->s[1].last_seq);
    switch (r->phase) {
    case 0: /* steady state: both replicas serve their subscriber */
        if (r->p.acked < 60 || !r->s[0].last_seq || !r->s[1].last_seq)
            return;
        r->killed_voter = ts_testcluster_agreed_leader(nodes, VOTERS) == 1 ? 2 : 1;
        kill9(VOTERS);
        kill9(r->killed_voter);
        fprintf(stderr, "replica: killed replica node %d and voter node %d after %d acks\n",
                VOTERS + 1, r->killed_voter + 1, r->p.acked);
        next_phase(r);
        return;
    case 1: /* two voters of three commit */
        if (r->p.acked < at_least(r->acked_at + 60))
            return;
        ck_assert_int_eq(restart(VOTERS), TS_OK);
        ck_assert_int_eq(restart(r->killed_voter), TS_OK);
        r->readies_at = r->s[0].readies;
        next_phase(r);
        return;
    case 2: /* the restarted replica caught up; its subscriber resumed on it */
        if (r->s[0].readies <= r->readies_at || !sub_saw_all_acked(&r->s[0], &r->p) ||
            r->p.acked < at_least(r->acked_at + 30))
            return;
        r->t_catch_up = now - r->phase_start;
        kill9(VOTERS);
        kill9(VOTERS + 1);
        fprintf(stderr, "replica: killed both replicas after %d acks\n", r->p.acked);
        next_phase(r);
        return;
    case 3: /* no replica up: the voters commit on their own */
        if (r->p.acked < at_least(r->acked_at + 60))
            return;
        r->t_no_replicas = now - r->phase_start;
        ck_assert_int_eq(restart(VOTERS), TS_OK);
        ck_assert_int_eq(restart(VOTERS + 1), TS_OK);
        next_phase(r);
        return;
    case 4: /* both subscribers back; then the leader goes */
        if (!r->s[0].node || !r->s[1].node || !sub_saw_all_acked(&r->s[0], &r->p) ||
            !sub_saw_all_acked(&r->s[1], &r->p) || r->p.acked < at_least(r->acked_at + 30))
            return;
        r->killed_voter = ts_testcluster_agreed_leader(nodes, VOTERS);
        ck_assert_int_ge(r->killed_voter, 0);
        kill9(r->killed_voter);
        r->p.mark_idx = r->p.next;
        r->p.mark_ack_ms = 0;
        fprintf(stderr, "replica: killed the leader, node %d, after %d acks\n", r->killed_voter + 1,
                r->p.acked);
        next_phase(r);
        return;
    case 5:
        if (!r->t_leader && r->p.mark_ack_ms)
            r->t_leader = r->p.mark_ack_ms - r->phase_start;
        if (r->p.acked < at_least(r->acked_at + 60))
            return;
        ck_assert_int_eq(restart(r->killed_voter), TS_OK);
        next_phase(r);
        r->phase_deadline = r->phase_start + (uint64_t)3 * PHASE_MS;
        return;
    case 6: /* the rest, and every acknowledged post at both replicas' subscribers */
        if (r->p.acked < TOTAL || r->p.in_flight || !sub_saw_all_acked(&r->s[0], &r->p) ||
            !sub_saw_all_acked(&r->s[1], &r->p))
            return;
        close_all(r);
        return;
    }
}

/* The StateDigest of node i once it applied at least seq (polled). */
static Threadsync__Frame *state_digest_at(int i, uint64_t seq)
{
    uint64_t deadline = ts_test_now_ms() + 60000;
    while (ts_test_now_ms() < deadline) {
        Threadsync__Frame f = THREADSYNC__FRAME__INIT;
        Threadsync__StateDigest d = THREADSYNC__STATE_DIGEST__INIT;
        d.request_id = 7;
        f.msg_case = THREADSYNC__FRAME__MSG_STATE_DIGEST;
        f.state_digest = &d;
        Threadsync__Frame *in = raw_request(i, nodes[0].admin_token, &f);
        if (in && in->msg_case == THREADSYNC__FRAME__MSG_RESULT &&
            in->result->body_case == THREADSYNC__RESULT__BODY_STATE_DIGEST &&
            in->result->state_digest->seq >= seq)
            return in;
        ts_frame_free(in);
        ts_test_poll(deadline);
    }
    return NULL;
}

static Threadsync__Frame *thread_digest(int i)
{
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Digest d = THREADSYNC__DIGEST__INIT;
    char *keys[] = {THREAD};
    d.request_id = 7;
    d.thread_keys = keys;
    d.n_thread_keys = 1;
    f.msg_case = THREADSYNC__FRAME__MSG_DIGEST;
    f.digest = &d;
    Threadsync__Frame *in = raw_request(i, nodes[0].reader_token, &f);
    ck_assert_msg(in && in->msg_case == THREADSYNC__FRAME__MSG_RESULT &&
                      in->result->body_case == THREADSYNC__RESULT__BODY_DIGEST &&
                      in->result->digest->n_threads == 1,
                  "node %d: no Digest answer", i + 1);
    return in;
}

/* `threadsync admin cluster` with only node i in its server list. */
static char *cli_cluster(int i, int json)
{
    const char *argv[] = {TS_THREADSYNC_PATH,
                          "--server",
                          nodes[i].addr,
                          "--ca",
                          nodes[0].ca,
                          "--token-file",
                          nodes[0].token_file,
                          "admin",
                          "cluster",
                          json ? "--json" : NULL,
                          NULL};
    char *out = NULL;
    ck_assert_int_eq(ts_test_run(argv, NULL, NULL, &out), 0);
    ck_assert_ptr_nonnull(out);
    return out;
}

START_TEST(test_serve_and_survive)
{
    ts_testcluster_certs(certs, sizeof(certs), "rr", N);
    uint64_t t0 = ts_test_now_ms();
    start_node(0, 0);
    ck_assert_int_eq(ts_testcluster_await_leader(nodes, 1, 20000), 0);
    for (int i = 1; i < VOTERS; i++) {
        start_node(i, 0);
        ts_testcluster_await_role_count(nodes, 0, THREADSYNC__NODE_ROLE__NODE_VOTER, (size_t)i + 1,
                                        60000);
    }
    uint64_t t1 = ts_test_now_ms();
    for (int i = VOTERS; i < N; i++)
        start_node(i, 1);
    ts_testcluster_await_role_count(nodes, 0, THREADSYNC__NODE_ROLE__NODE_STANDBY, REPLICAS, 60000);
    ts_testcluster_await_role_count(nodes, 0, THREADSYNC__NODE_ROLE__NODE_VOTER, VOTERS, 60000);
    /* the leader committed them; each replica learns it when the log
     * reaches it, a moment later */
    for (int i = VOTERS; i < N; i++)
        ts_testcluster_await_role_count(nodes, i, THREADSYNC__NODE_ROLE__NODE_STANDBY, REPLICAS,
                                        60000);
    fprintf(stderr, "replica: 3 voters in %llu ms, then 2 replicas joined in %llu ms\n",
            (unsigned long long)(t1 - t0), (unsigned long long)(ts_test_now_ms() - t1));

    /* the CLI, pointed at a replica alone, shows every node's role */
    char *text = cli_cluster(VOTERS, 0);
    ck_assert_msg(ts_test_count(text, "role=standby") == REPLICAS &&
                      ts_test_count(text, "role=voter") == 3,
                  "admin cluster: %s", text);
    ck_assert_ptr_nonnull(strstr(text, "node=4 role=standby"));
    free(text);
    text = cli_cluster(VOTERS + 1, 1);
    ck_assert_msg(ts_test_count(text, "\"role\":\"standby\"") == REPLICAS &&
                      ts_test_count(text, "\"role\":\"voter\"") == VOTERS,
                  "admin cluster --json: %s", text);
    free(text);

    static struct run r;
    memset(&r, 0, sizeof(r));
    ck_assert_int_eq(uv_loop_init(&r.loop), 0);
    const char *voters[VOTERS] = {nodes[0].addr, nodes[1].addr, nodes[2].addr};
    struct ts_client_config pc = ts_testcluster_client_config(
        nodes, voters, VOTERS, nodes[0].poster_token, "replica-poster");
    ts_testcluster_poster_start(&r.p, &r.loop, &pc, "replica", THREAD, TOTAL, body_of);
    static const struct ts_client_sub_cbs cbs = {
        .on_events = sub_events,
        .on_snapshot_end = sub_snap_end,
        .on_error = sub_error,
    };
    const char *replica_addr[REPLICAS];
    for (int k = 0; k < REPLICAS; k++) {
        replica_addr[k] = nodes[VOTERS + k].addr;
        struct ts_client_config sc = ts_testcluster_client_config(
            nodes, &replica_addr[k], 1, nodes[0].reader_token, "replica-subscriber");
        sc.on_state = sub_state;
        sc.state_arg = &r.s[k];
        r.s[k].node_id = (uint64_t)VOTERS + (uint64_t)k + 1;
        ck_assert_int_eq(ts_client_new(&r.loop, &sc, &r.s[k].c), TS_OK);
        ck_assert_int_eq(ts_client_subscribe(r.s[k].c, 1, NULL, 0, 0, &cbs, &r.s[k]), TS_OK);
    }
    uv_timer_init(&r.loop, &r.post_timer);
    uv_timer_init(&r.loop, &r.driver);
    r.post_timer.data = r.driver.data = &r;
    uint64_t t2 = ts_test_now_ms();
    r.phase_start = t2;
    r.phase_deadline = t2 + PHASE_MS;
    uv_timer_start(&r.post_timer, on_post_tick, POST_EVERY_MS, POST_EVERY_MS);
    uv_timer_start(&r.driver, on_driver, 20, 20);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    ck_assert(r.done);
    ck_assert_int_eq(uv_loop_close(&r.loop), 0);
    fprintf(
        stderr,
        "replica: %d posts in %llu ms; killed replica restarted -> its subscriber had every "
        "ack %llu ms; 60 acks with both replicas down in %llu ms; leader kill -> next ack "
        "%llu ms (first post submitted after it); subscriber READYs %u and %u; library errors %u\n",
        TOTAL, (unsigned long long)(ts_test_now_ms() - t2), (unsigned long long)r.t_catch_up,
        (unsigned long long)r.t_no_replicas, (unsigned long long)r.t_leader, r.s[0].readies,
        r.s[1].readies, r.p.lib_errors);

    /* each replica's subscriber: every acknowledged post once, at its seq,
     * in increasing seq order, across its reconnects */
    for (int k = 0; k < REPLICAS; k++) {
        const struct subscriber *s = &r.s[k];
        ck_assert_uint_eq(s->dups, 0);
        ck_assert_uint_eq(s->events, TOTAL); /* nothing but the posts, each once */
        ck_assert_uint_eq(s->snapshots, 0);
        ck_assert_uint_ge(s->readies, 2); /* its replica was killed at least once */
        for (int i = 0; i < TOTAL; i++) {
            ck_assert_uint_ne(r.p.ids[i], 0);
            ck_assert_msg(s->seen[r.p.ids[i]] == 1, "replica %llu: post %d seen %u times",
                          (unsigned long long)s->node_id, i, s->seen[r.p.ids[i]]);
            ck_assert_uint_eq(s->seq_of[r.p.ids[i]], r.p.seqs[i]);
        }
    }

    /* every node, replicas included, holds the same state with every post once */
    uint64_t top = 0;
    for (int i = 0; i < TOTAL; i++)
        top = r.p.seqs[i] > top ? r.p.seqs[i] : top;
    Threadsync__Frame *first = NULL, *first_digest = NULL;
    for (int i = 0; i < N; i++) {
        Threadsync__Frame *sd = state_digest_at(i, top);
        ck_assert_msg(sd != NULL, "node %d never applied seq %llu", i + 1, (unsigned long long)top);
        ts_testcluster_assert_posts(nodes, i, THREAD, TOTAL, r.p.ids, body_of);
        Threadsync__Frame *d = thread_digest(i);
        if (!first) {
            first = sd;
            first_digest = d;
            continue;
        }
        ck_assert_uint_eq(sd->result->state_digest->seq, first->result->state_digest->seq);
        ck_assert_str_eq(sd->result->state_digest->digest, first->result->state_digest->digest);
        ck_assert_str_eq(d->result->digest->threads[0]->digest,
                         first_digest->result->digest->threads[0]->digest);
        ts_frame_free(sd);
        ts_frame_free(d);
    }
    ts_frame_free(first);
    ts_frame_free(first_digest);

    /* a mirror given only the replicas syncs everything and verifies */
    char tok[400], mdir[400];
    snprintf(tok, sizeof(tok), "%s/reader.token", certs);
    snprintf(mdir, sizeof(mdir), "%s/mirror", certs);
    FILE *f = fopen(tok, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "%s\n", nodes[0].reader_token);
    fclose(f);
    for (int pass = 0; pass < 2; pass++) {
        const char *cmd = pass ? "verify" : "mirror";
        const char *argv[] = {TS_THREADSYNC_PATH,
                              cmd,
                              "--server",
                              nodes[VOTERS].addr,
                              "--server",
                              nodes[N - 1].addr,
                              "--ca",
                              nodes[0].ca,
                              "--token-file",
                              tok,
                              "--dir",
                              mdir,
                              pass ? NULL : "--once",
                              NULL};
        char *out = NULL;
        int code = ts_test_run(argv, NULL, NULL, &out);
        ck_assert_msg(code == 0, "%s exit %d: %s", cmd, code, out ? out : "");
        if (pass) {
            char want[64];
            snprintf(want, sizeof(want), "comments=%d", TOTAL);
            ck_assert_msg(strncmp(out, "verify: ok", 10) == 0 && strstr(out, want), "%s", out);
        }
        free(out);
    }
}
END_TEST

/* ---- cut_off_and_roles ---- */

/* A Join asking to make node 2 (the replica) a voter, sent to node i. */
static Threadsync__Frame *join_as_voter(int i)
{
    char raft[32];
    snprintf(raft, sizeof(raft), "127.0.0.1:%u", nodes[1].raft_port);
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Join j = THREADSYNC__JOIN__INIT;
    j.request_id = 7;
    j.node_id = 2;
    j.raft_address = raft;
    j.client_address = nodes[1].addr;
    j.role = THREADSYNC__NODE_ROLE__NODE_VOTER;
    f.msg_case = THREADSYNC__FRAME__MSG_JOIN;
    f.join = &j;
    return raw_request(i, nodes[0].admin_token, &f);
}

static int get_code(int i)
{
    Threadsync__Frame *g = raw_get(i);
    int code = !g                                            ? TS_E_CLOSED
               : g->msg_case == THREADSYNC__FRAME__MSG_ERROR ? (int)g->error->code
                                                             : TS_OK;
    ts_frame_free(g);
    return code;
}

static int await_get_code(int i, int want, int timeout_ms)
{
    uint64_t deadline = ts_test_now_ms() + (uint64_t)timeout_ms;
    int code;
    while ((code = get_code(i)) != want && ts_test_poll(deadline))
        ;
    return code;
}

START_TEST(test_cut_off_and_roles)
{
    ts_testcluster_certs(certs, sizeof(certs), "rr", N);
    start_node(0, 0);
    ck_assert_int_eq(ts_testcluster_await_leader(nodes, 1, 20000), 0);
    start_node(1, 1);
    ts_testcluster_await_role_count(nodes, 0, THREADSYNC__NODE_ROLE__NODE_STANDBY, 1, 60000);
    ts_testcluster_await_role_count(nodes, 1, THREADSYNC__NODE_ROLE__NODE_STANDBY, 1,
                                    60000); /* its own view too */

    /* a write at the replica: NOT_LEADER, naming the leader, saying why */
    struct ts_raw *w = ts_testnode_connect_ok(&nodes[1], nodes[0].poster_token);
    Threadsync__Frame pf = THREADSYNC__FRAME__INIT;
    Threadsync__Post post = THREADSYNC__POST__INIT;
    post.request_id = 1;
    post.idempotency_key = "rr-raw-1";
    post.thread_key = THREAD;
    post.author_name = "Rea";
    post.body = "to the replica";
    pf.msg_case = THREADSYNC__FRAME__MSG_POST;
    pf.post = &post;
    ck_assert_int_eq(ts_raw_send_frame(w, &pf), TS_OK);
    Threadsync__Frame *in = NULL;
    ck_assert_int_eq(ts_raw_recv_nonping(w, 10000, &in), TS_OK);
    ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_ERROR);
    ck_assert_int_eq(in->error->code, TS_E_NOT_LEADER);
    ck_assert_str_eq(in->error->leader_address, nodes[0].addr);
    ck_assert_ptr_nonnull(strstr(in->error->message, "read replica"));
    ts_frame_free(in);
    ts_raw_close(w);

    /* a client that lists the replica alone still posts (the redirect),
     * and reads its post back from the replica */
    const char *only_replica[] = {nodes[1].addr};
    struct ts_client_config cfg = {
        .servers = only_replica,
        .n_servers = 1,
        .ca_file = nodes[0].ca,
        .token = nodes[0].poster_token,
        .client_name = "replica-test",
        .request_timeout_ms = 10000,
        .connect_timeout_ms = 3000,
    };
    Threadsync__PostResult *pr = NULL;
    Threadsync__Error *err = NULL;
    Threadsync__Post p2 = THREADSYNC__POST__INIT;
    p2.thread_key = THREAD;
    p2.author_name = "Rea";
    p2.body = "through a replica-only server list";
    ck_assert_int_eq(ts_sync_post(&cfg, &p2, &pr, &err), TS_OK);
    ts_msg_free(pr);
    ts_msg_free(err);
    uint64_t deadline = ts_test_now_ms() + 20000;
    Threadsync__GetResult *gr = NULL;
    while (ts_test_now_ms() < deadline) {
        err = NULL;
        if (ts_sync_get(&cfg, THREAD, &gr, &err) == TS_OK && gr->n_comments == 1)
            break;
        ts_msg_free(gr);
        ts_msg_free(err);
        gr = NULL;
        ts_test_poll(deadline);
    }
    ck_assert_ptr_nonnull(gr);
    ts_msg_free(gr);

    /* no join makes a replica a voter: asked to, the leader refuses */
    in = join_as_voter(0);
    ck_assert_ptr_nonnull(in);
    ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_ERROR);
    ck_assert_int_eq(in->error->code, TS_E_INVALID_ARGUMENT);
    ck_assert_str_eq(in->error->field, "role");
    ts_frame_free(in);
    ck_assert_uint_eq(ts_testcluster_count_role(nodes, 0, THREADSYNC__NODE_ROLE__NODE_STANDBY), 1);
    ck_assert_uint_eq(ts_testcluster_count_role(nodes, 0, THREADSYNC__NODE_ROLE__NODE_VOTER), 1);

    /* nor does a restart without --read-replica: the member keeps its role,
     * and says so */
    ck_assert_int_eq(ts_testnode_kill(&nodes[1], SIGTERM), 0);
    const char *const info[] = {"--log-level", "info", NULL};
    size_t mark = ts_testnode_log_mark(&nodes[1]);
    ck_assert_int_eq(ts_testnode_restart_logged(&nodes[1], info), TS_OK);
    ck_assert(ts_testnode_wait_log(&nodes[1], mark, "event=role_mismatch", 30000));
    ck_assert_uint_eq(ts_testcluster_count_role(nodes, 0, THREADSYNC__NODE_ROLE__NODE_STANDBY), 1);
    ck_assert_uint_eq(ts_testcluster_count_role(nodes, 0, THREADSYNC__NODE_ROLE__NODE_VOTER), 1);
    ck_assert_int_eq(await_get_code(1, TS_OK, 30000), TS_OK);

    /* cut off (its only voter killed), the replica stops serving: reads
     * and its subscriber get UNAVAILABLE, writes find no leader */
    struct ts_raw *sub = ts_testnode_subscriber(&nodes[1], nodes[0].reader_token, 0, NULL);
    uint64_t t_kill = ts_test_now_ms();
    ck_assert(WIFSIGNALED(ts_testnode_kill(&nodes[0], SIGKILL)));
    ck_assert_int_eq(await_get_code(1, TS_E_UNAVAILABLE, 30000), TS_E_UNAVAILABLE);
    uint64_t t_stale = ts_test_now_ms() - t_kill;
    int closed = 0;
    for (int k = 0; k < 200 && !closed; k++) {
        in = NULL;
        int rc = ts_raw_recv_nonping(sub, 10000, &in);
        if (rc != TS_OK)
            closed = 1;
        else if (in->msg_case == THREADSYNC__FRAME__MSG_ERROR)
            closed = (int)in->error->code == TS_E_UNAVAILABLE ? 1 : -1;
        ts_frame_free(in);
    }
    ck_assert_int_eq(closed, 1);
    ts_raw_close(sub);
    w = ts_testnode_connect_ok(&nodes[1], nodes[0].poster_token);
    post.request_id = 2;
    ck_assert_int_eq(ts_raw_send_frame(w, &pf), TS_OK);
    ck_assert_int_eq(ts_raw_recv_nonping(w, 10000, &in), TS_OK);
    ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_ERROR);
    ck_assert_int_eq(in->error->code, TS_E_UNAVAILABLE);
    ts_frame_free(in);
    ts_raw_close(w);

    /* the voter back: the replica serves again */
    uint64_t t_back = ts_test_now_ms();
    ck_assert_int_eq(restart(0), TS_OK);
    ck_assert_int_eq(await_get_code(1, TS_OK, 30000), TS_OK);
    fprintf(stderr,
            "replica: cut off -> reads refused after %llu ms; voter restarted -> reads served "
            "after %llu ms\n",
            (unsigned long long)t_stale, (unsigned long long)(ts_test_now_ms() - t_back));

    /* removed with remove-node, it stops serving */
    const char *argv[] = {
        TS_THREADSYNC_PATH,  "--server", nodes[0].addr, "--ca", nodes[0].ca, "--token-file",
        nodes[0].token_file, "admin",    "remove-node", "2",    NULL};
    ck_assert_int_eq(ts_test_run(argv, NULL, NULL, NULL), 0);
    ck_assert_uint_eq(ts_testcluster_count_role(nodes, 0, THREADSYNC__NODE_ROLE__NODE_STANDBY), 0);
    ck_assert_int_eq(await_get_code(1, TS_E_UNAVAILABLE, 30000), TS_E_UNAVAILABLE);
}
END_TEST

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    Suite *s = suite_create("replica");
    TCase *tc = tcase_create("cluster");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_cut_off_and_roles);
    tcase_add_test(tc, test_serve_and_survive);
    suite_add_tcase(s, tc);
    return ts_check_run(s);
}
