/*
 * Integration: libthreadsync against a real three-node cluster.
 *
 * ts_cluster_test breaks the cluster under a raw protocol client; this suite
 * puts the client library itself in front of it. One ts_client (all three
 * servers in its list, reconnecting) posts at a steady rate with its own
 * idempotency keys, re-posting with the same key whatever the library
 * reports as failed; another subscribes to everything on a follower. Then:
 *
 *   1. kill -9 the leader: the poster must follow the new leader (NOT_LEADER
 *      redirects, reconnects) and posting resume, with no request failed by
 *      the library inside its timeout;
 *   2. kill -9 the subscriber's node: the subscription moves to another node
 *      and resumes from its cursor, never receiving an event at or below
 *      it, never missing an acknowledged comment.
 *
 * At the end every comment acknowledged to the library is on every node
 * exactly once, with the id the library was told. One libuv loop runs both
 * clients and a driver timer that kills and restarts nodes (the harness
 * blocks the loop while a node starts; the clients ride that out). Every
 * phase has a deadline.
 */
#include <check.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "ts_check_main.h"
#include "threadsync.h"
#include "ts_testcluster.h"
#include "ts_testnode.h"

#define N 3
#define TOTAL 800
#define WINDOW 8         /* posts in flight at most */
#define POST_EVERY_MS 10 /* one new post per tick while under WINDOW */
#define PHASE_MS 60000   /* each phase's deadline */
#define THREAD "fo/main"

static struct ts_testnode nodes[N];
static char certs[256];

static void teardown(void)
{
    ts_testcluster_stop(nodes, N, certs);
}

static void start_cluster(void)
{
    ts_testcluster_certs(certs, sizeof(certs), "fo", N);
    ts_testcluster_start(nodes, N, certs, NULL);
}

static void body_of(int i, char *out, size_t size)
{
    snprintf(out, size, "failover post %d: %.*s", i, i % 30 + 1, "abcdefghijklmnopqrstuvwxyz0123");
}

/* ---- the subscriber ---- */

struct subscriber {
    struct ts_client *c;
    uint64_t cursor;       /* ours: the highest resume point delivered */
    uint64_t node;         /* node id of the current READY connection, 0: none */
    uint64_t last_node;    /* node id of the last READY connection */
    unsigned moves;        /* READY on another node than before */
    unsigned stale;        /* events at or below the cursor (must stay 0) */
    unsigned resubscribed; /* on_result calls */
    unsigned snapshots;
    unsigned char seen[TS_TESTCLUSTER_MAX_ID]; /* by comment id */
    int ended;
};

static void sub_state(void *arg, const struct ts_client_state_info *info)
{
    struct subscriber *s = arg;
    if (info->state == TS_CLIENT_READY) {
        if (s->last_node && info->welcome->node_id != s->last_node)
            s->moves++;
        s->last_node = info->welcome->node_id;
        s->node = info->welcome->node_id;
    } else if (info->state == TS_CLIENT_DISCONNECTED) {
        s->node = 0;
    }
    ck_assert_int_ne(info->state, TS_CLIENT_FAILED);
}

static void sub_result(void *arg, uint64_t from_seq, int snapshot)
{
    struct subscriber *s = arg;
    s->resubscribed++;
    /* resumed exactly where we left off (a snapshot restarts lower) */
    if (!snapshot)
        ck_assert_uint_eq(from_seq, s->cursor);
}

static void sub_events(void *arg, const Threadsync__Events *ev)
{
    struct subscriber *s = arg;
    for (size_t i = 0; i < ev->n_events; i++) {
        const Threadsync__Event *e = ev->events[i];
        if (e->seq <= s->cursor) {
            s->stale++;
            fprintf(stderr, "failover: event seq %llu at or below the cursor %llu\n",
                    (unsigned long long)e->seq, (unsigned long long)s->cursor);
        }
        if (e->comment && e->comment->id < TS_TESTCLUSTER_MAX_ID)
            s->seen[e->comment->id] = 1;
    }
    if (ev->last_seq > s->cursor)
        s->cursor = ev->last_seq;
    ck_assert_uint_eq(ts_client_cursor(s->c), s->cursor);
}

static void sub_chunk(void *arg, const Threadsync__SnapshotChunk *chunk)
{
    struct subscriber *s = arg;
    for (size_t i = 0; i < chunk->n_comments; i++)
        if (chunk->comments[i]->id < TS_TESTCLUSTER_MAX_ID)
            s->seen[chunk->comments[i]->id] = 1;
}

static void sub_snap_end(void *arg, const Threadsync__SnapshotEnd *e)
{
    struct subscriber *s = arg;
    s->snapshots++;
    s->cursor = e->seq;
}

static void sub_error(void *arg, int err, const Threadsync__Error *detail)
{
    (void)detail;
    struct subscriber *s = arg;
    s->ended = 1;
    ck_assert_msg(err == TS_E_CLOSED, "subscription ended: %s", ts_err_name(err));
}

/* ---- the driver ---- */

struct run {
    uv_loop_t loop;
    uv_timer_t post_timer, driver;
    struct ts_testcluster_poster p;
    struct subscriber s;
    int phase;
    uint64_t phase_start, phase_deadline;
    int killed; /* node index killed in this phase */
    int acked_at_kill;
    uint64_t cursor_at_kill;
    uint64_t leader_gap_ms; /* kill of the leader -> next acknowledgement */
    uint64_t sub_gap_ms;    /* kill of the subscriber's node -> READY elsewhere */
    unsigned sub_moves_at_kill;
    int done;
};

static void on_post_tick(uv_timer_t *t)
{
    ts_testcluster_poster_tick(&((struct run *)t->data)->p, WINDOW);
}

static int seen_all_acked(const struct run *r)
{
    for (int i = 0; i < TOTAL; i++)
        if (r->p.ids[i] && !r->s.seen[r->p.ids[i]])
            return 0;
    return 1;
}

static void next_phase(struct run *r)
{
    r->phase++;
    r->phase_start = ts_test_now_ms();
    r->phase_deadline = r->phase_start + PHASE_MS;
}

static void close_all(struct run *r)
{
    r->done = 1;
    uv_timer_stop(&r->post_timer);
    uv_timer_stop(&r->driver);
    uv_close((uv_handle_t *)&r->post_timer, NULL);
    uv_close((uv_handle_t *)&r->driver, NULL);
    ts_client_close(r->p.c, NULL, NULL);
    ts_client_close(r->s.c, NULL, NULL);
}

/* n acknowledgements, or all of them when fewer are left */
static int at_least(int n)
{
    return n < TOTAL ? n : TOTAL;
}

static void on_driver(uv_timer_t *t)
{
    struct run *r = t->data;
    uint64_t now = ts_test_now_ms();
    ck_assert_msg(now < r->phase_deadline,
                  "phase %d timed out: acked %d/%d, in flight %d, sub cursor %llu on node %llu",
                  r->phase, r->p.acked, TOTAL, r->p.in_flight, (unsigned long long)r->s.cursor,
                  (unsigned long long)r->s.node);
    switch (r->phase) {
    case 0: /* steady state before any failure */
        if (r->p.acked < 80 || r->s.cursor == 0)
            return;
        r->killed = ts_testcluster_agreed_leader(nodes, N);
        ck_assert_int_ge(r->killed, 0);
        ck_assert_uint_ne(r->s.node, (uint64_t)r->killed + 1); /* it subscribed to a follower */
        r->acked_at_kill = r->p.acked;
        ck_assert(WIFSIGNALED(ts_testnode_kill(&nodes[r->killed], SIGKILL)));
        fprintf(stderr, "failover: killed the leader, node %d, after %d acks\n", r->killed + 1,
                r->acked_at_kill);
        next_phase(r);
        return;
    case 1: /* posting resumes through the new leader */
        if (!r->leader_gap_ms && r->p.acked > r->acked_at_kill && r->p.last_ack_ms > r->phase_start)
            r->leader_gap_ms = r->p.last_ack_ms - r->phase_start;
        if (r->p.acked < at_least(r->acked_at_kill + 60))
            return;
        ck_assert_int_eq(ts_testnode_restart(&nodes[r->killed], NULL), TS_OK);
        next_phase(r);
        return;
    case 2: /* the subscriber's node goes, once the subscriber is on one */
        if (!r->s.node || r->p.acked < at_least(r->acked_at_kill + 120))
            return;
        r->killed = (int)r->s.node - 1;
        r->acked_at_kill = r->p.acked;
        r->cursor_at_kill = r->s.cursor;
        r->sub_moves_at_kill = r->s.moves;
        ck_assert(WIFSIGNALED(ts_testnode_kill(&nodes[r->killed], SIGKILL)));
        fprintf(stderr, "failover: killed the subscriber's node %d at cursor %llu\n", r->killed + 1,
                (unsigned long long)r->cursor_at_kill);
        next_phase(r);
        return;
    case 3: /* it resumes elsewhere and gets what was posted meanwhile */
        if (!r->sub_gap_ms && r->s.moves > r->sub_moves_at_kill && r->s.node)
            r->sub_gap_ms = now - r->phase_start;
        if (!r->sub_gap_ms || r->s.cursor <= r->cursor_at_kill ||
            r->p.acked < at_least(r->acked_at_kill + 60))
            return;
        ck_assert_uint_ne(r->s.node, (uint64_t)r->killed + 1);
        ck_assert_int_eq(ts_testnode_restart(&nodes[r->killed], NULL), TS_OK);
        next_phase(r);
        r->phase_deadline = r->phase_start + (uint64_t)3 * PHASE_MS;
        return;
    case 4: /* the rest, then every acknowledged post in the subscription */
        if (r->p.acked < TOTAL || r->p.in_flight || !seen_all_acked(r))
            return;
        close_all(r);
        return;
    }
}

START_TEST(test_library_follows_failover)
{
    start_cluster();
    int leader = ts_testcluster_await_leader(nodes, N, 20000);
    ck_assert_int_ge(leader, 0);
    int follower = (leader + 1) % N;

    static struct run r;
    memset(&r, 0, sizeof(r));
    ck_assert_int_eq(uv_loop_init(&r.loop), 0);

    /* the poster lists all three, starting with a follower: its first post
     * is already a NOT_LEADER redirect */
    const char *all[N];
    for (int i = 0; i < N; i++)
        all[i] = nodes[(follower + i) % N].addr;
    struct ts_client_config pc =
        ts_testcluster_client_config(nodes, all, N, nodes[0].poster_token, "failover-poster");
    ts_testcluster_poster_start(&r.p, &r.loop, &pc, "failover", THREAD, TOTAL, body_of);

    /* the subscriber starts on the follower too */
    struct ts_client_config sc =
        ts_testcluster_client_config(nodes, all, N, nodes[0].reader_token, "failover-subscriber");
    sc.on_state = sub_state;
    sc.state_arg = &r.s;
    ck_assert_int_eq(ts_client_new(&r.loop, &sc, &r.s.c), TS_OK);
    static const struct ts_client_sub_cbs cbs = {
        .on_result = sub_result,
        .on_events = sub_events,
        .on_snapshot_chunk = sub_chunk,
        .on_snapshot_end = sub_snap_end,
        .on_error = sub_error,
    };
    ck_assert_int_eq(ts_client_subscribe(r.s.c, 1, NULL, 0, 0, &cbs, &r.s), TS_OK);

    uv_timer_init(&r.loop, &r.post_timer);
    uv_timer_init(&r.loop, &r.driver);
    r.post_timer.data = r.driver.data = &r;
    uint64_t t0 = ts_test_now_ms();
    r.phase_start = t0;
    r.phase_deadline = t0 + PHASE_MS;
    uv_timer_start(&r.post_timer, on_post_tick, POST_EVERY_MS, POST_EVERY_MS);
    uv_timer_start(&r.driver, on_driver, 20, 20);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    ck_assert(r.done);
    ck_assert_int_eq(uv_loop_close(&r.loop), 0);
    uint64_t elapsed = ts_test_now_ms() - t0;

    fprintf(stderr,
            "failover: %d posts in %llu ms; leader kill -> next ack %llu ms; subscriber's node "
            "kill -> READY elsewhere %llu ms; poster disconnects %u (NOT_LEADER %u), library "
            "errors %u; subscriber moves %u, subscribes %u, snapshots %u\n",
            TOTAL, (unsigned long long)elapsed, (unsigned long long)r.leader_gap_ms,
            (unsigned long long)r.sub_gap_ms, r.p.disconnects, r.p.not_leader, r.p.lib_errors,
            r.s.moves, r.s.resubscribed, r.s.snapshots);

    /* the library followed the leader and never gave up on a post */
    ck_assert_uint_ge(r.p.not_leader, 1);
    ck_assert_msg(r.p.lib_errors == 0, "%u posts failed in the library (last %s)", r.p.lib_errors,
                  ts_err_name(r.p.last_err));
    ck_assert_uint_ge(r.s.moves, 1);
    ck_assert_uint_eq(r.s.stale, 0);
    ck_assert_uint_ge(r.s.resubscribed, 2);

    /* every acknowledged post exactly once, with its id, on every node */
    for (int k = 0; k < N; k++)
        ts_testcluster_assert_posts(nodes, k, THREAD, TOTAL, r.p.ids, body_of);
}
END_TEST

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    Suite *s = suite_create("failover");
    TCase *tc = tcase_create("library");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 400);
    tcase_add_test(tc, test_library_follows_failover);
    suite_add_tcase(s, tc);
    return ts_check_run(s);
}
