/*
 * Integration: three threadsyncd nodes on loopback, raft over mutual TLS.
 *
 * Each case builds its own cluster (certificates from deploy/gen-certs.sh,
 * node 1 bootstraps, nodes 2 and 3 join with --join) and then breaks it:
 * kill -9 of the leader while posts flow, a follower kept down until it
 * needs a snapshot, a minority and then a majority down, a node with a
 * certificate from another CA trying to join, plain TCP on the raft port.
 * The posting client is a raw TLS client that retries with the same
 * idempotency key on NOT_LEADER (following leader_address), UNAVAILABLE and
 * lost connections, against the other nodes, as libthreadsync does.
 * The `threadsync mirror` CLI follows one cluster across kills down its
 * --server list. Every wait is bounded.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ts_check_main.h"
#include "ts_err.h"
#include "ts_frame.h"
#include "ts_testcluster.h"
#include "ts_testnode.h"

#define N 3

static struct ts_testnode nodes[N + 1]; /* [N]: an intruder */
static char certs[256], evil[256];

static void teardown(void)
{
    ts_testcluster_stop(nodes, N + 1, certs);
    if (evil[0])
        ts_test_rmtree(evil);
}

/* ---- raw protocol helpers ---- */

/* Waits for the answer to rid: the Result frame (caller frees) or the
 * Error's code (and leader address). */
static int await(struct ts_raw *r, uint64_t rid, int timeout_ms, Threadsync__Frame **res,
                 char *leader, size_t leader_size)
{
    uint64_t deadline = ts_test_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        uint64_t now = ts_test_now_ms();
        if (now >= deadline)
            return TS_E_TIMEOUT;
        Threadsync__Frame *in;
        int rc = ts_raw_recv_nonping(r, (int)(deadline - now), &in);
        if (rc != TS_OK)
            return rc;
        if (in->msg_case == THREADSYNC__FRAME__MSG_RESULT && in->result->request_id == rid) {
            if (res)
                *res = in;
            else
                ts_frame_free(in);
            return TS_OK;
        }
        if (in->msg_case == THREADSYNC__FRAME__MSG_ERROR &&
            (in->error->request_id == rid || in->error->request_id == 0)) {
            /* An Error must not read as success: the caller would take *res. */
            rc = in->error->code ? (int)in->error->code : TS_E_INTERNAL;
            if (leader)
                snprintf(leader, leader_size, "%s", in->error->leader_address);
            ts_frame_free(in);
            return rc;
        }
        ts_frame_free(in);
    }
}

static int post_once(struct ts_raw *r, uint64_t rid, const char *key, const char *thread,
                     const char *body, int timeout_ms, uint64_t *id, char *leader, size_t lsize)
{
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Post p = THREADSYNC__POST__INIT;
    p.request_id = rid;
    p.idempotency_key = (char *)key;
    p.thread_key = (char *)thread;
    p.author_name = "Clu";
    p.body = (char *)body;
    f.msg_case = THREADSYNC__FRAME__MSG_POST;
    f.post = &p;
    int rc = ts_raw_send_frame(r, &f);
    if (rc != TS_OK)
        return rc;
    Threadsync__Frame *res = NULL;
    rc = await(r, rid, timeout_ms, &res, leader, lsize);
    if (rc == TS_OK) {
        *id = res->result->post->comment_id;
        ts_frame_free(res);
    }
    return rc;
}

/* A client over the whole cluster: follows NOT_LEADER, moves on after
 * UNAVAILABLE or a lost connection, always with the same key. */
struct cl {
    int cur;
    struct ts_raw *r;
    uint64_t rid;
    unsigned redirects, retries;
};

static int node_by_addr(const char *addr)
{
    for (int i = 0; i < N; i++)
        if (strcmp(nodes[i].addr, addr) == 0)
            return i;
    return -1;
}

static int cl_post(struct cl *c, const char *key, const char *thread, const char *body,
                   int budget_ms, uint64_t *id)
{
    uint64_t deadline = ts_test_now_ms() + (uint64_t)budget_ms;
    while (ts_test_now_ms() < deadline) {
        if (!c->r) {
            if (ts_testnode_connect(&nodes[c->cur], nodes[0].poster_token, &c->r) != TS_OK) {
                c->cur = (c->cur + 1) % N;
                ts_test_poll(deadline);
                continue;
            }
        }
        char leader[64] = "";
        int rc = post_once(c->r, ++c->rid, key, thread, body, 8000, id, leader, sizeof(leader));
        if (rc == TS_OK)
            return TS_OK;
        if (rc == TS_E_NOT_LEADER) {
            int to = node_by_addr(leader);
            ck_assert_msg(to >= 0, "NOT_LEADER names an unknown address '%s'", leader);
            ts_raw_close(c->r);
            c->r = NULL;
            c->cur = to;
            c->redirects++;
            continue;
        }
        c->retries++;
        if (rc == TS_E_UNAVAILABLE) {
            ts_test_poll(deadline);
            if (c->retries % 5 == 0) { /* this node may be cut off: try another */
                ts_raw_close(c->r);
                c->r = NULL;
                c->cur = (c->cur + 1) % N;
            }
            continue;
        }
        if (rc == TS_E_CLOSED || rc == TS_E_TIMEOUT || rc == TS_E_IO || rc == TS_E_BAD_FRAME) {
            ts_raw_close(c->r);
            c->r = NULL;
            c->cur = (c->cur + 1) % N;
            ts_test_poll(deadline);
            continue;
        }
        return rc; /* a real rejection */
    }
    return TS_E_TIMEOUT;
}

static void cl_close(struct cl *c)
{
    ts_raw_close(c->r);
    c->r = NULL;
}

/* Cluster{} on node i as admin; NULL when it cannot be asked. */
static Threadsync__Frame *cluster_of(int i)
{
    struct ts_raw *r;
    if (ts_testnode_connect(&nodes[i], nodes[0].admin_token, &r) != TS_OK)
        return NULL;
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Cluster c = THREADSYNC__CLUSTER__INIT;
    c.request_id = 7;
    f.msg_case = THREADSYNC__FRAME__MSG_CLUSTER;
    f.cluster = &c;
    Threadsync__Frame *res = NULL;
    if (ts_raw_send_frame(r, &f) != TS_OK || await(r, 7, 10000, &res, NULL, 0) != TS_OK)
        res = NULL;
    ts_raw_close(r);
    return res;
}

/* Index of the leader as node i sees it, -1 when none (or no answer). */
static int leader_seen_by(int i)
{
    Threadsync__Frame *f = cluster_of(i);
    int leader = -1;
    for (size_t k = 0; f && k < f->result->cluster->n_nodes; k++)
        if (f->result->cluster->nodes[k]->id == f->result->cluster->leader_id)
            leader = node_by_addr(f->result->cluster->nodes[k]->client_address);
    if (f)
        ts_frame_free(f);
    return leader;
}

/* Waits until every running node agrees on one leader; returns it. */
static int await_leader(int timeout_ms)
{
    uint64_t deadline = ts_test_now_ms() + (uint64_t)timeout_ms;
    int agreed;
    do {
        agreed = -2;
        for (int i = 0; i < N && agreed != -1; i++) {
            if (!nodes[i].pid)
                continue;
            int l = leader_seen_by(i);
            if (l >= 0 && !nodes[l].pid)
                l = -1; /* a leader we killed, not yet noticed */
            if (l < 0 || (agreed >= 0 && l != agreed))
                agreed = -1;
            else
                agreed = l;
        }
    } while (agreed < 0 && ts_test_poll(deadline));
    return agreed < 0 ? -1 : agreed;
}

/* Number of voters the leader lists, waiting up to timeout for want. */
static size_t await_voters(size_t want, int timeout_ms)
{
    uint64_t deadline = ts_test_now_ms() + (uint64_t)timeout_ms;
    size_t voters = 0;
    do {
        int l = await_leader(5000);
        Threadsync__Frame *f = l >= 0 ? cluster_of(l) : NULL;
        voters = 0;
        for (size_t k = 0; f && k < f->result->cluster->n_nodes; k++)
            voters += f->result->cluster->nodes[k]->role == THREADSYNC__NODE_ROLE__NODE_VOTER;
        if (f)
            ts_frame_free(f);
    } while (voters != want && ts_test_poll(deadline));
    return voters;
}

/* Get{thread} on node i, as admin: the frame (caller frees), or NULL. */
static Threadsync__Frame *get_on(int i, const char *thread)
{
    struct ts_raw *r;
    if (ts_testnode_connect(&nodes[i], nodes[0].admin_token, &r) != TS_OK)
        return NULL;
    Threadsync__Frame *res = NULL;
    if (ts_raw_send_get(r, 3, thread) != TS_OK || await(r, 3, 10000, &res, NULL, 0) != TS_OK)
        res = NULL;
    ts_raw_close(r);
    return res;
}

/* Waits until every running node returns the same thread with `want`
 * comments; returns 1 when they converged. */
static int await_same(const char *thread, size_t want, int timeout_ms)
{
    uint64_t deadline = ts_test_now_ms() + (uint64_t)timeout_ms;
    int same;
    do {
        uint8_t *ref = NULL;
        size_t ref_len = 0;
        same = 1;
        for (int i = 0; i < N && same; i++) {
            if (!nodes[i].pid)
                continue;
            Threadsync__Frame *f = get_on(i, thread);
            if (!f || f->result->get->n_comments != want) {
                same = 0;
            } else {
                size_t len;
                uint8_t *b = ts_test_get_bytes(f->result->get, &len);
                if (!ref) {
                    ref = b;
                    ref_len = len;
                } else {
                    same = len == ref_len && memcmp(b, ref, len) == 0;
                    free(b);
                }
            }
            if (f)
                ts_frame_free(f);
        }
        free(ref);
    } while (!same && ts_test_poll(deadline));
    return same;
}

/* ---- cluster setup ---- */

static void start_cluster(const char *const *extra)
{
    ts_testcluster_certs(certs, sizeof(certs), "ca", N + 1);
    ck_assert_int_eq(ts_testnode_start_member(&nodes[0], NULL, certs, "n1", 1, extra), TS_OK);
    ck_assert_int_eq(await_leader(20000), 0);
    for (int i = 1; i < N; i++) {
        char name[8];
        snprintf(name, sizeof(name), "n%d", i + 1);
        ck_assert_int_eq(
            ts_testnode_start_member(&nodes[i], &nodes[0], certs, name, (uint64_t)i + 1, extra),
            TS_OK);
        ck_assert_uint_eq(await_voters((size_t)i + 1, 60000), (size_t)i + 1);
    }
}

static int other_than(int a, int b)
{
    for (int i = 0; i < N; i++)
        if (i != a && i != b)
            return i;
    return -1;
}

static void body_of(int i, char *out, size_t size)
{
    snprintf(out, size, "post %d: %.*s", i, i % 40 + 1,
             "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOP");
}

/* ---- cases ---- */

START_TEST(test_membership_and_reads)
{
    start_cluster(NULL);
    int l = await_leader(10000);
    ck_assert_int_ge(l, 0);
    int f1 = (l + 1) % N, f2 = (l + 2) % N;

    /* every node lists the three voters with their client addresses */
    for (int i = 0; i < N; i++) {
        Threadsync__Frame *f = cluster_of(i);
        ck_assert_ptr_nonnull(f);
        Threadsync__ClusterResult *cr = f->result->cluster;
        ck_assert_uint_eq(cr->n_nodes, N);
        ck_assert_uint_eq(cr->node_id, nodes[i].node_id);
        int leaders = 0;
        for (size_t k = 0; k < cr->n_nodes; k++) {
            ck_assert_uint_eq(cr->nodes[k]->id, k + 1);
            ck_assert_str_eq(cr->nodes[k]->client_address, nodes[k].addr);
            char raft[32];
            snprintf(raft, sizeof(raft), "127.0.0.1:%u", nodes[k].raft_port);
            ck_assert_str_eq(cr->nodes[k]->raft_address, raft);
            ck_assert_int_eq(cr->nodes[k]->role, THREADSYNC__NODE_ROLE__NODE_VOTER);
            leaders += cr->nodes[k]->is_leader;
        }
        ck_assert_int_eq(leaders, 1);
        ts_frame_free(f);
    }

    /* a write to a follower: NOT_LEADER with the leader's client address */
    struct ts_raw *r = ts_testnode_connect_ok(&nodes[f1], nodes[0].poster_token);
    char leader[64] = "";
    uint64_t id;
    ck_assert_int_eq(post_once(r, 1, "m-1", "clu/m", "hello", 10000, &id, leader, sizeof(leader)),
                     TS_E_NOT_LEADER);
    ck_assert_str_eq(leader, nodes[l].addr);
    /* readers may not ask for the cluster */
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Cluster c = THREADSYNC__CLUSTER__INIT;
    c.request_id = 2;
    f.msg_case = THREADSYNC__FRAME__MSG_CLUSTER;
    f.cluster = &c;
    ck_assert_int_eq(ts_raw_send_frame(r, &f), TS_OK);
    ck_assert_int_eq(await(r, 2, 10000, NULL, NULL, 0), TS_E_FORBIDDEN);
    /* a cursor ahead of what a node applied: retry, never older state */
    Threadsync__Subscribe sub = THREADSYNC__SUBSCRIBE__INIT;
    sub.request_id = 3;
    sub.all = 1;
    sub.since_seq = 1000000;
    f.msg_case = THREADSYNC__FRAME__MSG_SUBSCRIBE;
    f.subscribe = &sub;
    ck_assert_int_eq(ts_raw_send_frame(r, &f), TS_OK);
    ck_assert_int_eq(await(r, 3, 10000, NULL, NULL, 0), TS_E_UNAVAILABLE);
    ts_raw_close(r);

    /* posts through the leader; Get on every follower returns them */
    struct cl cl = {.cur = f2};
    for (int i = 0; i < 20; i++) {
        char key[16], body[80];
        snprintf(key, sizeof(key), "m-%d", i);
        body_of(i, body, sizeof(body));
        ck_assert_int_eq(cl_post(&cl, key, "clu/m", body, 30000, &id), TS_OK);
    }
    cl_close(&cl);
    ck_assert_uint_ge(cl.redirects, 1);
    ck_assert(await_same("clu/m", 20, 30000));

    /* SIGTERM on the leader hands leadership over, then it exits cleanly */
    uint64_t t0 = ts_test_now_ms();
    ck_assert_int_eq(ts_testnode_kill(&nodes[l], SIGTERM), 0);
    int nl = await_leader(20000);
    ck_assert_int_ge(nl, 0);
    ck_assert_int_ne(nl, l);
    fprintf(stderr, "cluster: leader handed over to node %d, %llu ms after SIGTERM\n", nl + 1,
            (unsigned long long)(ts_test_now_ms() - t0));
    ck_assert_int_eq(cl_post(&cl, "m-after", "clu/m", "after the handover", 30000, &id), TS_OK);
    cl_close(&cl);

    /* remove the stopped node; the configuration shrinks to two voters */
    r = ts_testnode_connect_ok(&nodes[nl], nodes[0].admin_token);
    Threadsync__RemoveNode rm = THREADSYNC__REMOVE_NODE__INIT;
    rm.request_id = 4;
    rm.node_id = nodes[nl].node_id;
    f.msg_case = THREADSYNC__FRAME__MSG_REMOVE_NODE;
    f.remove_node = &rm;
    ck_assert_int_eq(ts_raw_send_frame(r, &f), TS_OK);
    ck_assert_int_eq(await(r, 4, 10000, NULL, NULL, 0), TS_E_INVALID_ARGUMENT); /* itself */
    rm.request_id = 5;
    rm.node_id = 99;
    ck_assert_int_eq(ts_raw_send_frame(r, &f), TS_OK);
    ck_assert_int_eq(await(r, 5, 10000, NULL, NULL, 0), TS_E_NOT_FOUND);
    rm.request_id = 6;
    rm.node_id = nodes[l].node_id;
    ck_assert_int_eq(ts_raw_send_frame(r, &f), TS_OK);
    ck_assert_int_eq(await(r, 6, 30000, NULL, NULL, 0), TS_OK);
    ts_raw_close(r);
    ck_assert_uint_eq(await_voters(2, 20000), 2);
    ck_assert_int_eq(cl_post(&cl, "m-two", "clu/m", "two voters", 30000, &id), TS_OK);
    cl_close(&cl);
    ck_assert(await_same("clu/m", 22, 30000));
}
END_TEST

/* A child posts `total` comments at a steady pace and records each
 * acknowledged one ("index id") in path. */
static pid_t start_poster(const char *path, int total, const char *thread)
{
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child)
        return child;
    FILE *out = fopen(path, "w");
    if (!out)
        _exit(2);
    struct cl cl = {0};
    for (int i = 0; i < total; i++) {
        char key[32], body[80];
        snprintf(key, sizeof(key), "%s-%d", thread, i);
        body_of(i, body, sizeof(body));
        uint64_t id;
        if (cl_post(&cl, key, thread, body, 60000, &id) != TS_OK)
            _exit(3);
        fprintf(out, "%d %llu\n", i, (unsigned long long)id);
        fflush(out);
        /* paced, not waiting for anything: so that the posts span the
         * kills and restarts the test makes meanwhile */
        usleep(5000);
    }
    cl_close(&cl);
    fclose(out);
    _exit(0);
}

static void await_lines(const char *path, int want, int timeout_ms)
{
    uint64_t deadline = ts_test_now_ms() + (uint64_t)timeout_ms;
    while (ts_test_count_lines(path) < want && ts_test_poll(deadline))
        ;
    ck_assert_int_ge(ts_test_count_lines(path), want);
}

static void await_child(pid_t child, int timeout_ms)
{
    int status = 0;
    if (!ts_test_await_exit(child, ts_test_now_ms() + (uint64_t)timeout_ms, &status)) {
        kill(child, SIGKILL);
        waitpid(child, &status, 0);
        ck_abort_msg("a client child did not finish in time");
    }
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
}

/* Every acknowledged post exactly once, with its id, on every node. */
static void check_acked(const char *path, const char *thread, int total)
{
    static uint64_t ids[2000];
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    int n = 0, i;
    unsigned long long id;
    while (fscanf(f, "%d %llu", &i, &id) == 2) {
        ck_assert_int_eq(i, n);
        ids[n++] = id;
    }
    fclose(f);
    ck_assert_int_eq(n, total);
    ck_assert(await_same(thread, (size_t)total, 60000));
    for (int k = 0; k < N; k++) {
        Threadsync__Frame *fr = get_on(k, thread);
        ck_assert_ptr_nonnull(fr);
        Threadsync__GetResult *g = fr->result->get;
        for (i = 0; i < n; i++) {
            char body[80];
            body_of(i, body, sizeof(body));
            int found = 0;
            for (size_t c = 0; c < g->n_comments; c++) {
                if (strcmp(g->comments[c]->body, body) == 0) {
                    found++;
                    ck_assert_uint_eq(g->comments[c]->id, ids[i]);
                }
            }
            ck_assert_msg(found == 1, "node %d: post %d found %d times", k + 1, i, found);
        }
        ts_frame_free(fr);
    }
}

/* A child mirrors the cluster (Subscribe{all} as a reader), starting on
 * `node`; when its node goes away (or is behind its cursor) it moves to
 * the next one and resumes from its cursor, as libthreadsync does. Once it
 * has seen `total` comments of thread it writes their ids to path. */
static struct ts_raw *mirror_subscribe(int node, uint64_t since)
{
    struct ts_raw *r;
    if (ts_testnode_connect(&nodes[node], nodes[0].reader_token, &r) != TS_OK)
        return NULL;
    if (ts_raw_subscribe_all(r, 1, since) != TS_OK) {
        ts_raw_close(r);
        return NULL;
    }
    return r;
}

static pid_t start_mirror(int node, const char *path, int total, const char *thread)
{
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child)
        return child;
    static unsigned char seen[1 << 16];
    int distinct = 0, moves = 0;
    uint64_t thread_id = 0, cursor = 0, deadline = ts_test_now_ms() + 240000;
    struct ts_raw *r = NULL;
    while (distinct < total && ts_test_now_ms() < deadline) {
        if (!r) {
            r = mirror_subscribe(node, cursor);
            if (!r) {
                node = (node + 1) % N;
                moves++;
                ts_test_poll(deadline);
                continue;
            }
        }
        Threadsync__Frame *in;
        int rc = ts_raw_recv_nonping(r, 1000, &in);
        if (rc == TS_E_TIMEOUT)
            continue;
        if (rc != TS_OK || in->msg_case == THREADSYNC__FRAME__MSG_ERROR) {
            /* node gone, or not as far as our cursor yet: another node */
            if (rc == TS_OK)
                ts_frame_free(in);
            ts_raw_close(r);
            r = NULL;
            node = (node + 1) % N;
            moves++;
            ts_test_poll(deadline);
            continue;
        }
        Threadsync__Comment **cs = NULL;
        size_t n = 0;
        if (in->msg_case == THREADSYNC__FRAME__MSG_EVENTS) {
            for (size_t i = 0; i < in->events->n_events; i++) {
                Threadsync__Event *e = in->events->events[i];
                if (e->seq <= cursor && cursor) {
                    ts_frame_free(in);
                    _exit(5); /* sent something older than the cursor */
                }
                if (e->thread && strcmp(e->thread->key, thread) == 0)
                    thread_id = e->thread->id;
                Threadsync__Comment *c = e->comment;
                if (c && c->thread_id == thread_id && c->id < sizeof(seen) && !seen[c->id]++)
                    distinct++;
            }
            cursor = in->events->last_seq > cursor ? in->events->last_seq : cursor;
        } else if (in->msg_case == THREADSYNC__FRAME__MSG_SNAPSHOT_CHUNK) {
            for (size_t i = 0; i < in->snapshot_chunk->n_threads; i++)
                if (strcmp(in->snapshot_chunk->threads[i]->key, thread) == 0)
                    thread_id = in->snapshot_chunk->threads[i]->id;
            cs = in->snapshot_chunk->comments;
            n = in->snapshot_chunk->n_comments;
        } else if (in->msg_case == THREADSYNC__FRAME__MSG_SNAPSHOT_END) {
            cursor = in->snapshot_end->seq > cursor ? in->snapshot_end->seq : cursor;
        }
        for (size_t i = 0; i < n; i++)
            if (cs[i]->thread_id == thread_id && cs[i]->id < sizeof(seen) && !seen[cs[i]->id]++)
                distinct++;
        ts_frame_free(in);
    }
    ts_raw_close(r);
    FILE *out = fopen(path, "w");
    for (size_t id = 0; out && id < sizeof(seen); id++)
        if (seen[id])
            fprintf(out, "%zu\n", id);
    if (out)
        fclose(out);
    fprintf(stderr, "cluster: mirror saw %d comments, moved %d times, cursor %llu\n", distinct,
            moves, (unsigned long long)cursor);
    _exit(distinct == total ? 0 : 4);
}

/* The mirror's ids against the acknowledged ones. */
static void check_mirror(pid_t mirror, const char *acked, const char *mirrored, int total)
{
    await_child(mirror, 240000);
    FILE *f = fopen(acked, "r"), *m = fopen(mirrored, "r");
    ck_assert(f && m);
    static unsigned char in_mirror[1 << 16];
    memset(in_mirror, 0, sizeof(in_mirror));
    unsigned long long id;
    int i, n = 0;
    while (fscanf(m, "%llu", &id) == 1)
        in_mirror[id < sizeof(in_mirror) ? id : 0] = 1, n++;
    ck_assert_int_eq(n, total);
    while (fscanf(f, "%d %llu", &i, &id) == 2)
        ck_assert_msg(id < sizeof(in_mirror) && in_mirror[id], "post %d missing in the mirror", i);
    fclose(f);
    fclose(m);
}

START_TEST(test_kill9_leader_loses_nothing)
{
    start_cluster(NULL);
    int l = await_leader(10000);
    ck_assert_int_ge(l, 0);
    char acked[300];
    snprintf(acked, sizeof(acked), "%s/acked", nodes[0].dir);
    const int total = 300;
    char mirrored[300];
    snprintf(mirrored, sizeof(mirrored), "%s/mirrored", nodes[0].dir);
    int mirror_node = (l + 1) % N; /* a follower that stays up */
    pid_t mirror = start_mirror(mirror_node, mirrored, total, "clu/k");
    pid_t child = start_poster(acked, total, "clu/k");
    await_lines(acked, 80, 60000);

    int status = ts_testnode_kill(&nodes[l], SIGKILL);
    ck_assert(WIFSIGNALED(status));
    uint64_t t0 = ts_test_now_ms();
    int nl = await_leader(30000);
    ck_assert_int_ge(nl, 0);
    ck_assert_int_ne(nl, l);
    int before = ts_test_count_lines(acked);
    await_lines(acked, before + 20, 60000); /* posting resumed */
    fprintf(stderr, "cluster: new leader node %d after %llu ms\n", nl + 1,
            (unsigned long long)(ts_test_now_ms() - t0));

    await_child(child, 120000);
    /* the old leader comes back as a follower and catches up */
    ck_assert_int_eq(ts_testnode_restart(&nodes[l], NULL), TS_OK);
    check_acked(acked, "clu/k", total);

    /* the mirror on a follower got every acknowledged comment */
    check_mirror(mirror, acked, mirrored, total);
}

/* The acceptance scenario in small: every node in turn is killed -9 and
 * restarted while a client posts and a mirror follows, failing over. */
START_TEST(test_rolling_kills)
{
    start_cluster(NULL);
    ck_assert_int_ge(await_leader(10000), 0);
    char acked[300], mirrored[300];
    snprintf(acked, sizeof(acked), "%s/acked", nodes[0].dir);
    snprintf(mirrored, sizeof(mirrored), "%s/mirrored", nodes[0].dir);
    const int total = 1200, rounds = 4;
    pid_t mirror = start_mirror(1, mirrored, total, "clu/r");
    pid_t poster = start_poster(acked, total, "clu/r");
    for (int k = 0; k < rounds; k++) {
        await_lines(acked, (k + 1) * total / (rounds + 1), 120000);
        int victim = k % N;
        int st = ts_testnode_kill(&nodes[victim], SIGKILL);
        ck_assert(WIFSIGNALED(st));
        int before = ts_test_count_lines(acked);
        await_lines(acked, before + 30, 60000); /* writes go on without it */
        ck_assert_int_eq(ts_testnode_restart(&nodes[victim], NULL), TS_OK);
    }
    await_child(poster, 240000);
    check_acked(acked, "clu/r", total);
    check_mirror(mirror, acked, mirrored, total);
}
END_TEST
END_TEST

/* ---- threadsync mirror against the cluster ---- */

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fputc('\n', f);
    fclose(f);
}

/* `threadsync verify` of dir against every node; its exit code, stdout in
 * *out. */
static int cli_verify(const char *dir, const char *token_file, char **out)
{
    const char *argv[] = {
        TS_THREADSYNC_PATH, "verify",       "--dir",    dir,           "--ca",
        nodes[0].ca,        "--token-file", token_file, "--server",    nodes[0].addr,
        "--server",         nodes[1].addr,  "--server", nodes[2].addr, NULL};
    return ts_test_run(argv, NULL, NULL, out);
}

/* The `threadsync mirror` CLI, given every node, follows the cluster while
 * the node it reads from is killed -9 and then the leader: it moves on
 * down its --server list, keeps its cursor (no snapshot, nothing applied
 * twice) and ends equal to the cluster (verify). */
START_TEST(test_cli_mirror_fails_over)
{
    start_cluster(NULL);
    int l = await_leader(10000);
    ck_assert_int_ge(l, 0);
    int first = (l + 1) % N; /* a follower, first in the mirror's list */
    char dir[300], token[300], acked[300], err_path[300];
    snprintf(dir, sizeof(dir), "%s/mirror", nodes[0].dir);
    snprintf(token, sizeof(token), "%s/reader.token", nodes[0].dir);
    snprintf(acked, sizeof(acked), "%s/acked", nodes[0].dir);
    snprintf(err_path, sizeof(err_path), "%s/mirror.err", nodes[0].dir);
    write_file(token, nodes[0].reader_token);
    const int total = 600;
    pid_t poster = start_poster(acked, total, "clu/m");
    pid_t mirror = fork();
    ck_assert_int_ge(mirror, 0);
    if (mirror == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0)
            _exit(127);
        dup2(fd, 2);
        execl(TS_THREADSYNC_PATH, TS_THREADSYNC_PATH, "mirror", "--dir", dir, "--ca", nodes[0].ca,
              "--token-file", token, "--server", nodes[first].addr, "--server",
              nodes[(first + 1) % N].addr, "--server", nodes[(first + 2) % N].addr, (char *)0);
        _exit(127);
    }
    await_lines(acked, total / 4, 120000);
    int st = ts_testnode_kill(&nodes[first], SIGKILL);
    ck_assert(WIFSIGNALED(st));
    await_lines(acked, total / 2, 120000);
    l = await_leader(20000);
    ck_assert_int_ge(l, 0);
    st = ts_testnode_kill(&nodes[l], SIGKILL);
    ck_assert(WIFSIGNALED(st));
    ck_assert_int_eq(ts_testnode_restart(&nodes[first], NULL), TS_OK);
    await_lines(acked, 3 * total / 4, 120000);
    ck_assert_int_eq(ts_testnode_restart(&nodes[l], NULL), TS_OK);
    await_child(poster, 240000);
    check_acked(acked, "clu/m", total);

    /* The mirror follows live: verify passes once it has caught up. */
    uint64_t deadline = ts_test_now_ms() + 60000;
    char *out = NULL;
    while (cli_verify(dir, token, &out) != 0) {
        ck_assert_msg(ts_test_poll(deadline), "mirror never equal to the cluster: %s", out);
        free(out);
    }
    char want[64];
    snprintf(want, sizeof(want), "comments=%d", total);
    ck_assert_msg(strstr(out, "verify: ok") && strstr(out, want), "%s", out);
    free(out);
    kill(mirror, SIGINT);
    int status;
    ck_assert_int_eq(waitpid(mirror, &status, 0), mirror);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "mirror status %d", status);
    FILE *f = fopen(err_path, "r");
    ck_assert_ptr_nonnull(f);
    static char err[1 << 16];
    err[fread(err, 1, sizeof(err) - 1, f)] = '\0';
    fclose(f);
    /* It read from more than one node, and resumed each time. */
    int nodes_read = 0;
    for (int i = 0; i < N; i++) {
        char line[96];
        snprintf(line, sizeof(line), "connected to %s", nodes[i].addr);
        nodes_read += strstr(err, line) != NULL;
    }
    ck_assert_msg(nodes_read >= 2, "never failed over: %s", err);
    ck_assert_msg(strstr(err, "snapshots=0"), "%s", err);
    fprintf(stderr, "cluster: the mirror CLI read from %d nodes\n", nodes_read);
}
END_TEST

static int has_snapshot(const struct ts_testnode *n)
{
    char dir[400];
    snprintf(dir, sizeof(dir), "%s/raft", n->data_dir);
    DIR *d = opendir(dir);
    int found = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        found |= strncmp(e->d_name, "snapshot-", 9) == 0;
    if (d)
        closedir(d);
    return found;
}

START_TEST(test_lagging_node_catches_up_by_snapshot)
{
    const char *extra[] = {"--snapshot-threshold", "32", "--snapshot-trailing", "8", NULL};
    start_cluster(extra);
    int l = await_leader(10000);
    ck_assert_int_ge(l, 0);
    int down = (l + 1) % N;
    ck_assert_int_eq(ts_testnode_kill(&nodes[down], SIGTERM), 0);
    ck_assert(!has_snapshot(&nodes[down]));

    /* a minority down never stops writes */
    struct cl cl = {.cur = l};
    uint64_t id;
    for (int i = 0; i < 200; i++) {
        char key[16], body[80];
        snprintf(key, sizeof(key), "s-%d", i);
        body_of(i, body, sizeof(body));
        ck_assert_int_eq(cl_post(&cl, key, "clu/s", body, 30000, &id), TS_OK);
    }
    cl_close(&cl);
    /* far past the leader's retained log (8 entries): it must send a snapshot */
    ck_assert_int_eq(ts_testnode_restart(&nodes[down], extra), TS_OK);
    ck_assert(await_same("clu/s", 200, 60000));
    ck_assert(has_snapshot(&nodes[down]));
}
END_TEST

START_TEST(test_majority_down_never_acknowledges)
{
    start_cluster(NULL);
    int l = await_leader(10000);
    ck_assert_int_ge(l, 0);
    int f1 = (l + 1) % N, f2 = other_than(l, f1);
    struct cl cl = {.cur = l};
    uint64_t id;
    ck_assert_int_eq(cl_post(&cl, "q-0", "clu/q", "all up", 30000, &id), TS_OK);
    ts_testnode_kill(&nodes[f1], SIGKILL);
    ck_assert_int_eq(cl_post(&cl, "q-1", "clu/q", "one down", 30000, &id), TS_OK);
    cl_close(&cl);
    ts_testnode_kill(&nodes[f2], SIGKILL);

    /* Every answer is UNAVAILABLE now: the first once the leader steps
     * down (it cannot reach a majority), the next at once. */
    struct ts_raw *r = ts_testnode_connect_ok(&nodes[l], nodes[0].poster_token);
    for (int i = 0; i < 3; i++) {
        char leader[64];
        int rc = post_once(r, 10 + (uint64_t)i, "q-2", "clu/q", "majority down", 20000, &id, leader,
                           sizeof(leader));
        ck_assert_msg(rc == TS_E_UNAVAILABLE, "attempt %d: %s", i, ts_err_name(rc));
    }
    ts_raw_close(r);

    /* one back: a majority again; the retried post lands exactly once */
    ck_assert_int_eq(ts_testnode_restart(&nodes[f1], NULL), TS_OK);
    cl.cur = l;
    ck_assert_int_eq(cl_post(&cl, "q-2", "clu/q", "majority down", 60000, &id), TS_OK);
    uint64_t again;
    ck_assert_int_eq(cl_post(&cl, "q-2", "clu/q", "majority down", 60000, &again), TS_OK);
    ck_assert_uint_eq(again, id);
    cl_close(&cl);
    ck_assert_int_eq(ts_testnode_restart(&nodes[f2], NULL), TS_OK);
    ck_assert(await_same("clu/q", 3, 60000));
}
END_TEST

START_TEST(test_outsiders_are_refused)
{
    start_cluster(NULL);
    int l = await_leader(10000);
    ck_assert_int_ge(l, 0);
    char raft[32];
    snprintf(raft, sizeof(raft), "127.0.0.1:%u", nodes[l].raft_port);

    /* plain TCP, speaking libraft's own handshake: not a byte back */
    int fd = ts_plain_connect(raft);
    ck_assert_int_ge(fd, 0);
    uint8_t hello[24] = {1, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 16};
    ck_assert_int_eq(write(fd, hello, sizeof(hello)), (ssize_t)sizeof(hello));
    struct pollfd p = {.fd = fd, .events = POLLIN};
    uint64_t deadline = ts_test_now_ms() + 3000;
    ssize_t got = 0;
    while (ts_test_now_ms() < deadline && poll(&p, 1, 200) >= 0) {
        if (p.revents) {
            char buf[64];
            got = read(fd, buf, sizeof(buf));
            break;
        }
    }
    ck_assert_msg(got <= 0, "the raft port sent %zd bytes to a plain TCP peer", got);
    close(fd);

    /* TLS without a client certificate: refused */
    struct ts_raw *r = NULL;
    int rc = ts_raw_connect(raft, nodes[l].ca, TS_ALPN, &r);
    if (rc == TS_OK) {
        /* TLS 1.3: the refusal arrives after the client's Finished */
        Threadsync__Frame *in = NULL;
        rc = ts_raw_recv(r, 5000, &in);
        ck_assert_int_ne(rc, TS_OK);
        ts_raw_close(r);
    }

    /* a node with a certificate from another CA cannot join */
    ts_testcluster_certs(evil, sizeof(evil), "evil", N + 1);
    char cert[320], key[320];
    snprintf(cert, sizeof(cert), "%s/n4.pem", evil);
    snprintf(key, sizeof(key), "%s/n4.key", evil);
    /* it trusts the cluster's CA (so it reaches the leader's client port)
     * but its own certificate is not the cluster's */
    const char *extra[] = {"--cert", cert, "--key", key, NULL};
    rc = ts_testnode_start_member(&nodes[N], &nodes[0], certs, "n4", 4, extra);
    /* TS_E_IO: it was refused and exited before the harness saw it listen */
    ck_assert(rc == TS_OK || rc == TS_E_IO);
    if (nodes[N].pid) {
        int status = 0;
        ck_assert_msg(ts_test_await_exit(nodes[N].pid, ts_test_now_ms() + 60000, &status) == 1,
                      "the intruder is still running");
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) != 0);
    }
    nodes[N].pid = 0;
    Threadsync__Frame *f = cluster_of(l);
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(f->result->cluster->n_nodes, N);
    for (size_t k = 0; k < f->result->cluster->n_nodes; k++)
        ck_assert_uint_ne(f->result->cluster->nodes[k]->id, 4);
    ts_frame_free(f);
    /* the cluster still takes writes */
    struct cl cl = {.cur = l};
    uint64_t id;
    ck_assert_int_eq(cl_post(&cl, "o-1", "clu/o", "still fine", 30000, &id), TS_OK);
    cl_close(&cl);
}
END_TEST

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    Suite *s = suite_create("cluster");
    TCase *tc = tcase_create("three_nodes");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_membership_and_reads);
    tcase_add_test(tc, test_kill9_leader_loses_nothing);
    tcase_add_test(tc, test_rolling_kills);
    tcase_add_test(tc, test_cli_mirror_fails_over);
    tcase_add_test(tc, test_lagging_node_catches_up_by_snapshot);
    tcase_add_test(tc, test_majority_down_never_acknowledges);
    tcase_add_test(tc, test_outsiders_are_refused);
    suite_add_tcase(s, tc);
    return ts_check_run(s);
}
