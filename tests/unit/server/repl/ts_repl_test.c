/*
 * ts_repl: one-node raft on a real data directory. The state machine is a
 * small one defined here: an append-only list of (index, payload) with a
 * running SHA-256 over it, snapshotted as the serialised list. Restarts must
 * rebuild exactly the same list (same indexes, same bytes) from the log
 * alone, and from snapshot + log.
 *
 * Snapshots are serialised in a forked child (ts_repl.c), so t_snapshot's
 * side effects do not reach the test's process: what the tests need to
 * know from it goes through a MAP_SHARED page (struct tshared), and the
 * snapshots taken are read from ts_repl_get_status.
 */
#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <linux/magic.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/lsan_interface.h>
#endif
#include <uv.h>

#include "ts_check_main.h"
#include "ts_endian.h"
#include "ts_err.h"
#include "ts_repl.h"
#include "ts_repl_aio.h"
#include "ts_repl_heap.h"
#include "ts_repl_int.h"
#include "ts_testnode.h"

#ifndef TS_TEST_TMPDIR
#define TS_TEST_TMPDIR "."
#endif

/* ---- the test state machine ----------------------------------------- */

struct rec {
    uint64_t index;
    size_t len;
    uint8_t *data;
};

/* Written by t_snapshot wherever it runs (a snapshot child, or the test
 * process itself), read by the test. */
struct tshared {
    unsigned calls; /* t_snapshot calls */
};

/* What t_snapshot does besides serialising (set before the fork). */
enum { SNAP_OK, SNAP_FAIL, SNAP_CRASH };

struct tfsm {
    struct rec *recs;
    size_t n, cap;
    uint8_t digest[32];
    uint64_t last_index;
    int out_of_order;
    unsigned applies;  /* apply calls since start (replay counter) */
    unsigned restores; /* restore calls */
    uint64_t restore_index;
    unsigned hook_applied, hook_restore;
    unsigned fail_at;       /* >0: that apply call (1-based) fails */
    struct tshared *shared; /* NULL: not counted */
    int snap_mode;          /* SNAP_* */
    const char *snap_gate;  /* a FIFO t_snapshot opens and reads a byte from first */
};

static void tfsm_hash(struct tfsm *f, uint64_t index, const uint8_t *p, size_t len)
{
    uint8_t hdr[16];
    for (int i = 0; i < 8; i++) {
        hdr[i] = (uint8_t)(index >> (8 * i));
        hdr[8 + i] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    ck_assert_ptr_nonnull(c);
    EVP_DigestInit_ex(c, EVP_sha256(), NULL);
    EVP_DigestUpdate(c, f->digest, 32);
    EVP_DigestUpdate(c, hdr, sizeof(hdr));
    EVP_DigestUpdate(c, p, len);
    unsigned n = 0;
    EVP_DigestFinal_ex(c, f->digest, &n);
    EVP_MD_CTX_free(c);
}

static void tfsm_clear(struct tfsm *f)
{
    for (size_t i = 0; i < f->n; i++)
        free(f->recs[i].data);
    free(f->recs);
    f->recs = NULL;
    f->n = f->cap = 0;
}

static void tfsm_push(struct tfsm *f, uint64_t index, const uint8_t *p, size_t len)
{
    if (f->n == f->cap) {
        f->cap = f->cap ? 2 * f->cap : 64;
        f->recs = realloc(f->recs, f->cap * sizeof(*f->recs));
        ck_assert_ptr_nonnull(f->recs);
    }
    struct rec *r = &f->recs[f->n++];
    r->index = index;
    r->len = len;
    r->data = malloc(len ? len : 1);
    memcpy(r->data, p, len);
}

static int t_apply(void *arg, uint64_t index, const uint8_t *p, size_t len, void *result)
{
    struct tfsm *f = arg;
    if (f->fail_at && f->applies + 1 == f->fail_at)
        return -1;
    if (index <= f->last_index)
        f->out_of_order = 1;
    f->last_index = index;
    f->applies++;
    tfsm_push(f, index, p, len);
    tfsm_hash(f, index, p, len);
    memcpy(result, &index, sizeof(index));
    return 0;
}

static int t_snapshot(void *arg, uint8_t **out, size_t *len)
{
    struct tfsm *f = arg;
    if (f->shared)
        __atomic_add_fetch(&f->shared->calls, 1, __ATOMIC_SEQ_CST);
    if (f->snap_gate) {
        /* Blocks until the test opens the FIFO for writing. */
        int fd = open(f->snap_gate, O_RDONLY);
        char c;
        if (fd < 0 || read(fd, &c, 1) != 1)
            return -1;
        close(fd);
    }
    if (f->snap_mode == SNAP_FAIL)
        return -1;
    if (f->snap_mode == SNAP_CRASH)
        raise(SIGKILL);
    size_t size = 32 + 8 + 8;
    for (size_t i = 0; i < f->n; i++)
        size += 16 + f->recs[i].len;
    uint8_t *b = malloc(size), *w = b;
    memcpy(w, f->digest, 32);
    w += 32;
    memcpy(w, &f->last_index, 8);
    w += 8;
    uint64_t n = f->n;
    memcpy(w, &n, 8);
    w += 8;
    for (size_t i = 0; i < f->n; i++) {
        uint64_t l = f->recs[i].len;
        memcpy(w, &f->recs[i].index, 8);
        memcpy(w + 8, &l, 8);
        memcpy(w + 16, f->recs[i].data, l);
        w += 16 + l;
    }
    *out = b;
    *len = size;
    return 0;
}

static int t_restore(void *arg, uint64_t index, uint8_t *b, size_t len)
{
    struct tfsm *f = arg;
    if (len < 48)
        return -1;
    tfsm_clear(f);
    memcpy(f->digest, b, 32);
    memcpy(&f->last_index, b + 32, 8);
    uint64_t n;
    memcpy(&n, b + 40, 8);
    const uint8_t *p = b + 48, *end = b + len;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t idx, l;
        if (end - p < 16)
            return -1;
        memcpy(&idx, p, 8);
        memcpy(&l, p + 8, 8);
        if ((uint64_t)(end - p - 16) < l)
            return -1;
        tfsm_push(f, idx, p + 16, l);
        p += 16 + l;
    }
    if (f->last_index != index)
        return -1; /* ts_repl must hand over the snapshot's own index */
    f->restores++;
    f->restore_index = index;
    return 0;
}

static void h_applied(void *arg, uint64_t index)
{
    struct tfsm *f = arg;
    f->hook_applied++;
    ck_assert_uint_eq(index, f->last_index);
}

static void h_restore(void *arg, uint64_t index)
{
    struct tfsm *f = arg;
    f->hook_restore++;
    ck_assert_uint_eq(index, f->restore_index);
}

/* ---- harness -------------------------------------------------------- */

struct node {
    uv_loop_t loop;
    struct tfsm fsm;
    struct ts_repl *r;
    int closed;
};

static char g_dir[512];

/* TS_REPL_TEST_DIR overrides where data directories go (e.g. to try a
 * tmpfs). */
static void make_dir(void)
{
    const char *base = getenv("TS_REPL_TEST_DIR");
    snprintf(g_dir, sizeof(g_dir), "%s/ts_repl_XXXXXX", base ? base : TS_TEST_TMPDIR);
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
    strcat(g_dir, "/data"); /* ts_repl creates the data dir itself */
}

static void remove_dir(void)
{
    char *slash = strrchr(g_dir, '/');
    *slash = '\0';
    ts_test_rmtree(g_dir);
}

static struct ts_repl_config base_cfg(void)
{
    struct ts_repl_config c = {0};
    c.data_dir = g_dir;
    c.node_id = 1;
    /* Port 0: nobody dials a one-node cluster, and the kernel picks a free
     * port, so parallel tests never collide. */
    c.raft_address = "127.0.0.1:0";
    c.election_timeout_ms = 200;
    c.heartbeat_ms = 20;
    return c;
}

static int node_start(struct node *n, const struct ts_repl_config *cfg)
{
    struct ts_repl_fsm f = {t_apply, t_snapshot, t_restore, sizeof(uint64_t), &n->fsm};
    struct ts_repl_hooks h = {h_applied, h_restore, &n->fsm};
    return ts_repl_start(&n->loop, cfg, &f, &h, &n->r);
}

static void on_tick(uv_timer_t *t)
{
    uv_stop(t->loop);
}

/* Runs the loop until pred(arg) holds; fails the test after timeout_ms. */
static void run_until(uv_loop_t *loop, int (*pred)(void *), void *arg, unsigned timeout_ms)
{
    uv_timer_t t;
    uv_timer_init(loop, &t);
    uv_timer_start(&t, on_tick, 2, 2);
    uint64_t deadline = uv_now(loop) + timeout_ms;
    while (!pred(arg)) {
        ck_assert_msg(uv_now(loop) < deadline, "timed out");
        uv_run(loop, UV_RUN_DEFAULT);
        uv_update_time(loop);
    }
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
}

/* A snapshot is taken asynchronously: the FSM has produced it before raft
 * has written it. Closing in between loses it (nothing is wrong with that,
 * but the test wants a restart from a snapshot). arg NULL: any snapshot;
 * else the one of index *(uint64_t *)arg (snapshot-TERM-INDEX-TIME.meta). */
static int snapshot_on_disk(void *arg)
{
    char mid[32] = "";
    if (arg)
        snprintf(mid, sizeof(mid), "-%llu-", (unsigned long long)*(const uint64_t *)arg);
    DIR *d = opendir(g_dir);
    int found = 0;
    struct dirent *e;
    while (d && !found && (e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        found = strncmp(e->d_name, "snapshot-", 9) == 0 && strstr(e->d_name + 9, mid) && len > 5 &&
                strcmp(e->d_name + len - 5, ".meta") == 0;
    }
    if (d)
        closedir(d);
    return found;
}

/* The first 8 bytes (LE) of the snapshot file of the given index, as raft
 * stored it; 0 when there is none. */
static uint64_t snapshot_magic(uint64_t index)
{
    char mid[32];
    snprintf(mid, sizeof(mid), "-%llu-", (unsigned long long)index);
    DIR *d = opendir(g_dir);
    uint64_t magic = 0;
    struct dirent *e;
    while (d && !magic && (e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (strncmp(e->d_name, "snapshot-", 9) != 0 || !strstr(e->d_name + 9, mid) ||
            (len > 5 && strcmp(e->d_name + len - 5, ".meta") == 0))
            continue;
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", g_dir, e->d_name);
        FILE *fp = fopen(path, "rb");
        uint8_t b[8];
        if (fp && fread(b, 1, 8, fp) == 8)
            magic = ts_load_le64(b);
        if (fp)
            fclose(fp);
    }
    if (d)
        closedir(d);
    return magic;
}

/* An LZ4 frame's magic number: a file raft compressed itself. */
#define LZ4_FRAME_MAGIC 0x184D2204U

static int is_leader(void *arg)
{
    return ts_repl_is_leader(((struct node *)arg)->r);
}

static int is_closed(void *arg)
{
    return ((struct node *)arg)->closed;
}

static void on_closed(void *arg)
{
    ((struct node *)arg)->closed++;
}

static void node_close(struct node *n)
{
    ts_repl_close(n->r, on_closed, n);
    ck_assert_int_eq(n->closed, 0); /* never synchronous */
    run_until(&n->loop, is_closed, n, 10000);
    ck_assert_int_eq(n->closed, 1);
    /* Every handle of raft, its I/O and transport is closed. */
    uv_run(&n->loop, UV_RUN_NOWAIT);
    ck_assert_int_eq(uv_loop_close(&n->loop), 0);
}

/* ---- a proposer with a window ---------------------------------------- */

struct prop {
    struct node *n;
    unsigned total, window;
    unsigned sent, done, inflight;
    int in_propose;
    int sync_cb;
    int bad_status;
    unsigned *calls;      /* per proposal: callbacks received */
    uint64_t *index;      /* per proposal: index from the result */
    int statuses[3];      /* OK, UNAVAILABLE, other */
    unsigned close_after; /* >0: ts_repl_close from inside that callback */
};

struct pctx {
    struct prop *p;
    unsigned i;
};

static size_t payload_len(unsigned i)
{
    return i % 100 + 1; /* 1..100: mostly not multiples of 8 */
}

static void make_payload(unsigned i, uint8_t *buf)
{
    for (size_t j = 0; j < payload_len(i); j++)
        buf[j] = (uint8_t)((size_t)i * 31 + j * 7 + 1);
}

static void pump(struct prop *p);

static void on_result(void *arg, int status, const void *result)
{
    struct pctx *c = arg;
    struct prop *p = c->p;
    if (p->in_propose)
        p->sync_cb = 1;
    p->calls[c->i]++;
    if (status == TS_OK) {
        p->statuses[0]++;
        memcpy(&p->index[c->i], result, sizeof(uint64_t));
    } else if (status == TS_E_UNAVAILABLE) {
        p->statuses[1]++;
    } else {
        p->statuses[2]++;
    }
    p->done++;
    p->inflight--;
    free(c);
    if (p->close_after && p->done == p->close_after)
        ts_repl_close(p->n->r, on_closed, p->n);
    else if (!p->n->closed && p->close_after == 0)
        pump(p);
}

static void pump(struct prop *p)
{
    uint8_t buf[128];
    while (p->sent < p->total && p->inflight < p->window) {
        struct pctx *c = malloc(sizeof(*c));
        c->p = p;
        c->i = p->sent;
        make_payload(p->sent, buf);
        p->in_propose = 1;
        int rc = ts_repl_propose(p->n->r, buf, payload_len(p->sent), on_result, c);
        p->in_propose = 0;
        ck_assert_int_eq(rc, TS_OK);
        p->sent++;
        p->inflight++;
    }
}

static int prop_done(void *arg)
{
    struct prop *p = arg;
    return p->done == p->total;
}

static void prop_init(struct prop *p, struct node *n, unsigned total, unsigned window)
{
    memset(p, 0, sizeof(*p));
    p->n = n;
    p->total = total;
    p->window = window;
    p->calls = calloc(total, sizeof(*p->calls));
    p->index = calloc(total, sizeof(*p->index));
}

static void prop_free(struct prop *p)
{
    free(p->calls);
    free(p->index);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Proposes total commands with the given window on a started node; checks
 * every callback came once, asynchronously, with an increasing index. */
static void propose_all(struct node *n, unsigned total, unsigned window)
{
    struct prop p;
    prop_init(&p, n, total, window);
    pump(&p);
    run_until(&n->loop, prop_done, &p, 60000);
    ck_assert_int_eq(p.sync_cb, 0);
    ck_assert_int_eq(p.statuses[0], (int)total);
    for (unsigned i = 0; i < total; i++) {
        ck_assert_uint_eq(p.calls[i], 1);
        if (i > 0)
            ck_assert_uint_gt(p.index[i], p.index[i - 1]);
    }
    prop_free(&p);
}

/* A restarted node must hold exactly what the first one held. */
static void assert_same(const struct tfsm *a, const struct tfsm *b)
{
    ck_assert_uint_eq(a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        ck_assert_uint_eq(a->recs[i].index, b->recs[i].index);
        ck_assert_uint_eq(a->recs[i].len, b->recs[i].len);
        ck_assert_mem_eq(a->recs[i].data, b->recs[i].data, a->recs[i].len);
    }
    ck_assert_mem_eq(a->digest, b->digest, 32);
    ck_assert_uint_eq(a->last_index, b->last_index);
}

struct wait_index {
    struct node *n;
    uint64_t index;
};

static int reached(void *arg)
{
    struct wait_index *w = arg;
    return ts_repl_last_applied(w->n->r) >= w->index;
}

static int snap_idle(void *arg)
{
    struct ts_repl_status st;
    ts_repl_get_status(((struct node *)arg)->r, &st);
    return !st.snapshot_running;
}

/* The node's status once no snapshot is being taken. */
static struct ts_repl_status settled(struct node *n)
{
    run_until(&n->loop, snap_idle, n, 30000);
    struct ts_repl_status st;
    ts_repl_get_status(n->r, &st);
    return st;
}

/* Every snapshot child was reaped: this process has no children left, not
 * even zombies (waitpid would reap one and return its pid). */
static void assert_no_children(void)
{
    errno = 0;
    ck_assert_int_eq(waitpid(-1, NULL, WNOHANG), -1);
    ck_assert_int_eq(errno, ECHILD);
}

/* ---- tests ------------------------------------------------------------ */

/* Odd-length payloads survive a restart from the log alone: libraft 0.15
 * drops entries whose length is not a multiple of 8 unless ts_repl pads. */
START_TEST(test_restart_replays_log)
{
    make_dir();
    struct ts_repl_config cfg = base_cfg();
    struct node a = {0}, b = {0};
    uv_loop_init(&a.loop);
    ck_assert_int_eq(node_start(&a, &cfg), TS_OK);
    run_until(&a.loop, is_leader, &a, 5000);
    propose_all(&a, 300, 16);
    ck_assert_int_eq(a.fsm.out_of_order, 0);
    ck_assert_uint_eq(a.fsm.n, 300);
    ck_assert_uint_eq(a.fsm.hook_applied, 300);
    for (unsigned i = 0; i < 300; i++) {
        uint8_t buf[128];
        make_payload(i, buf);
        ck_assert_uint_eq(a.fsm.recs[i].len, payload_len(i));
        ck_assert_mem_eq(a.fsm.recs[i].data, buf, payload_len(i));
    }
    ck_assert_uint_eq(ts_repl_last_applied(a.r), a.fsm.last_index);
    ck_assert_uint_eq(settled(&a).snapshots, 0);
    node_close(&a);

    uv_loop_init(&b.loop);
    ck_assert_int_eq(node_start(&b, &cfg), TS_OK);
    struct wait_index w = {&b, a.fsm.last_index};
    run_until(&b.loop, reached, &w, 10000);
    ck_assert_uint_eq(b.fsm.restores, 0);
    ck_assert_uint_eq(b.fsm.applies, 300);
    ck_assert_int_eq(b.fsm.out_of_order, 0);
    assert_same(&a.fsm, &b.fsm);
    node_close(&b);
    tfsm_clear(&a.fsm);
    tfsm_clear(&b.fsm);
    remove_dir();
}
END_TEST

/* A leader on a fresh data directory that snapshots at least every 16
 * entries, keeping 4; returns its configuration. */
static struct ts_repl_config start_snapshotting(struct node *a)
{
    make_dir();
    struct ts_repl_config cfg = base_cfg();
    cfg.snapshot_threshold = 16;
    cfg.snapshot_trailing = 4;
    uv_loop_init(&a->loop);
    ck_assert_int_eq(node_start(a, &cfg), TS_OK);
    run_until(&a->loop, is_leader, a, 5000);
    return cfg;
}

/* 200 entries on a snapshotting leader, and a few more after its last
 * snapshot (fewer than the threshold, so no new snapshot covers them);
 * returns its status once that snapshot is on disk. */
static struct ts_repl_status snapshot_with_tail(struct node *a)
{
    propose_all(a, 200, 8);
    struct ts_repl_status st = settled(a);
    ck_assert_uint_gt(st.snapshots, 0);
    if (st.snapshot_index == a->fsm.last_index)
        propose_all(a, 3, 1);
    st = settled(a);
    ck_assert_uint_lt(st.snapshot_index, a->fsm.last_index);
    /* Counted only once raft has written it. */
    ck_assert_int_eq(snapshot_on_disk(&st.snapshot_index), 1);
    return st;
}

/* With a small snapshot threshold a restart is restore + replay of the
 * entries after the snapshot, and ends in the same state. */
START_TEST(test_restart_snapshot_and_replay)
{
    struct node a = {0}, b = {0};
    struct ts_repl_config cfg = start_snapshotting(&a);
    struct ts_repl_status st = snapshot_with_tail(&a);
    /* Packed by ts_repl (format 2), stored by raft as it is. */
    ck_assert_uint_eq(snapshot_magic(st.snapshot_index), REPL_SNAP_MAGIC_LZ4);
    node_close(&a);

    uv_loop_init(&b.loop);
    ck_assert_int_eq(node_start(&b, &cfg), TS_OK);
    /* The snapshot is restored inside ts_repl_start. */
    ck_assert_uint_eq(b.fsm.restores, 1);
    ck_assert_uint_eq(b.fsm.hook_restore, 1);
    ck_assert_uint_ge(ts_repl_last_applied(b.r), b.fsm.restore_index);
    ck_assert_uint_eq(b.fsm.restore_index, st.snapshot_index);
    struct wait_index w = {&b, a.fsm.last_index};
    run_until(&b.loop, reached, &w, 10000);
    ck_assert_uint_gt(b.fsm.applies, 0);
    /* Entries up to the snapshot come from it, the rest from the log. */
    uint64_t replayed = 0;
    for (size_t i = 0; i < a.fsm.n; i++)
        replayed += a.fsm.recs[i].index > b.fsm.restore_index;
    ck_assert_uint_eq(b.fsm.applies, replayed);
    assert_same(&a.fsm, &b.fsm);
    node_close(&b);
    tfsm_clear(&a.fsm);
    tfsm_clear(&b.fsm);
    remove_dir();
}
END_TEST

/* Proposed entries live in the fork-private heap (ts_repl_heap.h) while
 * raft's log holds them, and all come back to it through raft_free once
 * the node closes. */
START_TEST(test_entry_buffers_fork_private)
{
    struct ts_repl_heap_stats h0, h1, h2;
    ts_repl_heap_stats(&h0);
    struct node a = {0};
    start_snapshotting(&a);
    snapshot_with_tail(&a);
    ts_repl_heap_stats(&h1);
    ck_assert_uint_ge(h1.chunks, 1);
    /* At most the 203 proposed (the trailing entries a snapshot keeps
     * scale with the entries' size, so how many are left varies). */
    ck_assert_uint_gt(h1.live, h0.live);
    ck_assert_uint_le(h1.live - h0.live, 203);
    ck_assert_uint_eq(h1.fallback, h0.fallback);
    node_close(&a);
    ts_repl_heap_stats(&h2);
    ck_assert_uint_eq(h2.live, h0.live);
    tfsm_clear(&a.fsm);
    remove_dir();
}
END_TEST

/* Every snapshot closes the open log segment, and libraft destroys that
 * segment writer's AIO context: through ts_repl_aio, which answers at once
 * and has its thread do it (the test binary, like threadsyncd, links
 * libraft as a shared library, so libraft's syscall() is ts_repl_aio's). */
START_TEST(test_segment_aio_destroyed_off_loop)
{
    struct node a = {0};
    start_snapshotting(&a);
    snapshot_with_tail(&a);
    node_close(&a);
    struct ts_repl_aio_stats st;
    ts_repl_aio_stats(&st);
    ck_assert_uint_gt(st.deferred, 0);
    uint64_t deadline = ts_test_now_ms() + 10000;
    while (st.destroyed < st.deferred && ts_test_poll(deadline))
        ts_repl_aio_stats(&st);
    ck_assert_uint_eq(st.destroyed, st.deferred);
    ck_assert_uint_eq(st.failed, 0);
    tfsm_clear(&a.fsm);
    remove_dir();
}
END_TEST

/* A data directory an older release wrote (format 1: the image as it is,
 * in a file raft compressed) is restored by this one, which then goes on
 * in format 2. */
START_TEST(test_restart_from_format1_snapshot)
{
    struct node a = {0}, b = {0};
    ts__repl_snap_legacy = 1;
    struct ts_repl_config cfg = start_snapshotting(&a);
    struct ts_repl_status st = snapshot_with_tail(&a);
    ck_assert_uint_eq(snapshot_magic(st.snapshot_index) & 0xffffffffU, LZ4_FRAME_MAGIC);
    node_close(&a);

    ts__repl_snap_legacy = 0;
    uv_loop_init(&b.loop);
    ck_assert_int_eq(node_start(&b, &cfg), TS_OK);
    ck_assert_uint_eq(b.fsm.restores, 1);
    ck_assert_uint_eq(b.fsm.restore_index, st.snapshot_index);
    struct wait_index w = {&b, a.fsm.last_index};
    run_until(&b.loop, reached, &w, 10000);
    assert_same(&a.fsm, &b.fsm);
    /* Its own snapshots are format 2. */
    run_until(&b.loop, is_leader, &b, 5000);
    uint64_t before = settled(&b).snapshots;
    for (int i = 0; i < 100 && settled(&b).snapshots == before; i++)
        propose_all(&b, 16, 8);
    st = settled(&b);
    ck_assert_uint_gt(st.snapshots, before);
    ck_assert_int_eq(snapshot_on_disk(&st.snapshot_index), 1);
    ck_assert_uint_eq(snapshot_magic(st.snapshot_index), REPL_SNAP_MAGIC_LZ4);
    node_close(&b);
    tfsm_clear(&a.fsm);
    tfsm_clear(&b.fsm);
    remove_dir();
}
END_TEST

/* The packing round-trips, empty included, and refuses an image that is
 * cut short, damaged (the frame's content checksum) or declares another
 * length, instead of handing the state machine wrong bytes. */
START_TEST(test_snapimg_pack_unpack)
{
    enum { N = 3 << 20 };
    uint8_t *raw = malloc(N);
    ck_assert_ptr_nonnull(raw);
    uint32_t x = 1;
    for (size_t i = 0; i < N; i++) { /* compressible, not constant */
        x = x * 1103515245u + 12345u;
        raw[i] = (uint8_t)((i / 64) % 2 ? 'a' + (i % 7) : (x >> 24));
    }
    uint8_t *img;
    size_t len;
    ck_assert_int_eq(ts__repl_snap_pack(raw, N, &img, &len), 0);
    ck_assert_uint_lt(len, N);
    ck_assert_uint_eq(ts__repl_snap_raw_len(img, len), N);
    uint8_t *out;
    size_t out_len;
    ck_assert_int_eq(ts__repl_snap_unpack(img, len, &out, &out_len), TS_OK);
    ck_assert_uint_eq(out_len, N);
    ck_assert_mem_eq(out, raw, N);
    ts__repl_snap_unmap(out, out_len);
    /* cut short, by one byte and by half */
    ck_assert_int_eq(ts__repl_snap_unpack(img, len - 1, &out, &out_len), TS_E_BAD_FRAME);
    ck_assert_ptr_null(out);
    ck_assert_int_eq(ts__repl_snap_unpack(img, len / 2, &out, &out_len), TS_E_BAD_FRAME);
    /* one byte of the content changed */
    img[len / 2] ^= 0x40;
    ck_assert_int_eq(ts__repl_snap_unpack(img, len, &out, &out_len), TS_E_BAD_FRAME);
    img[len / 2] ^= 0x40;
    /* a declared length other than the frame's */
    ts_store_le64(img, N - 1);
    ck_assert_int_eq(ts__repl_snap_unpack(img, len, &out, &out_len), TS_E_BAD_FRAME);
    ts_store_le64(img, (uint64_t)N * 1000);
    ck_assert_int_eq(ts__repl_snap_unpack(img, len, &out, &out_len), TS_E_BAD_FRAME);
    ck_assert_int_eq(ts__repl_snap_unpack(img, 7, &out, &out_len), TS_E_BAD_FRAME);
    free(img);
    /* an empty image */
    ck_assert_int_eq(ts__repl_snap_pack(raw, 0, &img, &len), 0);
    ck_assert_int_eq(ts__repl_snap_unpack(img, len, &out, &out_len), TS_OK);
    ck_assert_uint_eq(out_len, 0);
    ts__repl_snap_unmap(out, out_len);
    free(img);
    free(raw);
}
END_TEST

/* After a restart, snapshots are paced by the restored snapshot's size as
 * they were before it (an eighth of it in entries), not by the configured
 * minimum: at a million comments the minimum made a restarted node
 * serialise its whole state again a few thousand entries into the replay,
 * doubling its memory for seconds. */
START_TEST(test_restart_keeps_snapshot_pace)
{
    struct node a = {0}, b = {0};
    struct ts_repl_config cfg = start_snapshotting(&a);
    propose_all(&a, 1200, 16);
    ck_assert_uint_gt(settled(&a).snapshots, 1);
    /* A snapshot holds 16 bytes more per record than its entry carries, so
     * the paced threshold is at least an eighth of the records: leave room
     * for AGAIN more entries after those replayed, well inside it. */
    enum { AGAIN = 17 };
    uint64_t last_snap = settled(&a).snapshot_index;
    for (int i = 0; i < 1000 && a.fsm.last_index - last_snap + AGAIN >= last_snap / 8 / 2; i++) {
        propose_all(&a, 1, 1);
        last_snap = settled(&a).snapshot_index;
    }
    ck_assert_uint_lt(a.fsm.last_index - last_snap + AGAIN, last_snap / 8 / 2);
    ck_assert_uint_gt(last_snap / 8 / 2, cfg.snapshot_threshold);
    ck_assert_int_eq(snapshot_on_disk(&last_snap), 1);
    node_close(&a);

    uv_loop_init(&b.loop);
    ck_assert_int_eq(node_start(&b, &cfg), TS_OK);
    ck_assert_uint_eq(b.fsm.restore_index, last_snap);
    run_until(&b.loop, is_leader, &b, 5000);
    propose_all(&b, AGAIN, 4);
    /* replayed and new entries: more than the minimum, fewer than the pace */
    ck_assert_uint_gt(b.fsm.last_index - last_snap, cfg.snapshot_threshold);
    ck_assert_uint_eq(settled(&b).snapshots, 0);
    node_close(&b);
    tfsm_clear(&a.fsm);
    tfsm_clear(&b.fsm);
    remove_dir();
}
END_TEST

static void on_big_result(void *arg, int status, const void *result)
{
    (void)result;
    ck_assert_int_eq(status, TS_OK);
    (*(int *)arg)++;
}

static int big_done(void *arg)
{
    return *(int *)arg > 0;
}

/* The configured threshold and trailing count entries of about 1 KiB: with
 * 8 KiB entries (a PostBatch of many posts is larger still) a threshold of
 * 16 is reached in 2 entries, not 16, so raft does not keep sixteen times
 * the log in memory before its first snapshot. */
START_TEST(test_big_entries_snapshot_sooner)
{
    struct node a = {0};
    struct ts_repl_config cfg = start_snapshotting(&a);
    static uint8_t big[8192];
    memset(big, 0x5a, sizeof(big));
    enum { N_BIG = 12 };
    ck_assert_uint_lt(N_BIG, cfg.snapshot_threshold);
    for (int i = 0; i < N_BIG; i++) {
        int done = 0;
        big[0] = (uint8_t)i;
        ck_assert_int_eq(ts_repl_propose(a.r, big, sizeof(big), on_big_result, &done), TS_OK);
        run_until(&a.loop, big_done, &done, 10000);
    }
    ck_assert_uint_gt(settled(&a).snapshots, 0);
    node_close(&a);
    tfsm_clear(&a.fsm);
    remove_dir();
}
END_TEST

/* ---- snapshots in a child ---------------------------------------------- */

static struct tshared *shared_new(void)
{
    void *m = mmap(NULL, sizeof(struct tshared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                   -1, 0);
    ck_assert_ptr_ne(m, MAP_FAILED);
    memset(m, 0, sizeof(struct tshared));
    return m;
}

static unsigned snap_calls(const struct tshared *sh)
{
    return __atomic_load_n(&sh->calls, __ATOMIC_SEQ_CST);
}

static int snap_running(void *arg)
{
    return !snap_idle(arg);
}

/* Opens the FIFO a gated t_snapshot waits on (blocks until the child
 * opened it: it is on its way there) and lets it go. */
static void gate_release(const char *path)
{
    int fd = open(path, O_WRONLY);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "g", 1), 1);
    close(fd);
}

/* Proposes one entry at a time until a snapshot is running (its child
 * held on a gate, so it stays running). */
static void propose_until_snapshot(struct node *a)
{
    for (int i = 0; i < 1000 && !snap_running(a); i++)
        propose_all(a, 1, 1);
    ck_assert_int_eq(snap_running(a), 1);
}

/* A snapshotting leader (start_snapshotting) whose snapshot children wait
 * on the FIFO gate (its path written into gate, n bytes), proposed to
 * until one of them runs. */
static struct ts_repl_config start_gated(struct node *a, char *gate, size_t n)
{
    struct ts_repl_config cfg = start_snapshotting(a);
    snprintf(gate, n, "%s.gate", g_dir);
    ck_assert_int_eq(mkfifo(gate, 0600), 0);
    a->fsm.shared = shared_new();
    a->fsm.snap_gate = gate;
    propose_until_snapshot(a);
    return cfg;
}

/* Starts b on a's data directory (a closed) and runs it until it applied
 * everything a had: it must then hold exactly a's state. */
static void restart_same(struct node *b, const struct ts_repl_config *cfg, const struct node *a)
{
    uv_loop_init(&b->loop);
    ck_assert_int_eq(node_start(b, cfg), TS_OK);
    struct wait_index w = {b, a->fsm.last_index};
    run_until(&b->loop, reached, &w, 10000);
    assert_same(&a->fsm, &b->fsm);
}

/* Closes b and frees what a test of snapshots in a child made. */
static void snap_test_end(struct node *a, struct node *b, const char *gate)
{
    node_close(b);
    munmap(a->fsm.shared, sizeof(struct tshared));
    if (gate)
        unlink(gate);
    tfsm_clear(&a->fsm);
    tfsm_clear(&b->fsm);
    remove_dir();
}

/* The snapshot's serialisation (held on a gate in the child) does not stop
 * the node: entries proposed meanwhile are applied and acknowledged while
 * it is still running, the snapshot stands for the state at its own index
 * (a restart restores it and replays exactly the entries after it), and
 * its child is reaped. */
START_TEST(test_snapshot_does_not_block_apply)
{
    struct node a = {0}, b = {0};
    char gate[600];
    struct ts_repl_config cfg = start_gated(&a, gate, sizeof(gate));
    uint64_t at_start = a.fsm.last_index;
    size_t n_start = a.fsm.n;

    /* Far more than the threshold: raft holds the next snapshot back while
     * one runs, so these are applied with the child still gated. */
    propose_all(&a, 100, 8);
    ck_assert_uint_eq(a.fsm.n, n_start + 100);
    ck_assert_int_eq(snap_running(&a), 1);
    struct ts_repl_status gated;
    ts_repl_get_status(a.r, &gated);
    ck_assert_uint_eq(gated.snapshots, 0);
    a.fsm.snap_gate = NULL; /* for the children after this one */
    gate_release(gate);
    struct ts_repl_status st = settled(&a);
    ck_assert_uint_eq(st.snapshots, 1);
    ck_assert_uint_le(st.snapshot_index, at_start);
    ck_assert_uint_eq(snap_calls(a.fsm.shared), 1);
    assert_no_children();
    node_close(&a);
    assert_no_children();

    restart_same(&b, &cfg, &a);
    ck_assert_uint_eq(b.fsm.restore_index, st.snapshot_index);
    uint64_t replayed = 0;
    for (size_t i = 0; i < a.fsm.n; i++)
        replayed += a.fsm.recs[i].index > st.snapshot_index;
    ck_assert_uint_ge(replayed, 100);
    ck_assert_uint_eq(b.fsm.applies, replayed);
    snap_test_end(&a, &b, gate);
}
END_TEST

/* A child that fails (exits 1), crashes (SIGKILL) or writes half of what
 * it declared (and exits 0) takes no snapshot: nothing is written, the
 * node keeps applying, the next attempt waits for another threshold's
 * worth of entries rather than forking on every apply, and once the
 * children behave a snapshot is taken that a restart restores. */
START_TEST(test_snapshot_child_failures)
{
    for (int mode = 0; mode < 3; mode++) {
        struct node a = {0}, b = {0};
        struct ts_repl_config cfg = start_snapshotting(&a);
        a.fsm.shared = shared_new();
        if (mode == 0)
            a.fsm.snap_mode = SNAP_FAIL;
        else if (mode == 1)
            a.fsm.snap_mode = SNAP_CRASH;
        else
            ts__repl_snap_fault = TS__REPL_SNAP_FAULT_SHORT;
        enum { N = 96 }; /* six thresholds of 16 */
        for (int i = 0; i < N; i++) {
            propose_all(&a, 1, 1);
            settled(&a); /* each attempt ends before the next entry */
        }
        unsigned failed = snap_calls(a.fsm.shared);
        struct ts_repl_status st = settled(&a);
        ck_assert_uint_eq(st.snapshots, 0);
        ck_assert_int_eq(snapshot_on_disk(NULL), 0);
        ck_assert_int_eq(ts_repl_is_leader(a.r), 1);
        ck_assert_uint_ge(a.fsm.n, N);
        /* An attempt about every 16th entry, not one per entry past the
         * 16th (80). */
        ck_assert_uint_ge(failed, 2);
        ck_assert_uint_le(failed, N / 16 + 1);
        assert_no_children();

        a.fsm.snap_mode = SNAP_OK;
        ts__repl_snap_fault = 0;
        for (int i = 0; i < 1000 && settled(&a).snapshots == 0; i++)
            propose_all(&a, 1, 1);
        st = settled(&a);
        ck_assert_uint_eq(st.snapshots, 1);
        ck_assert_uint_eq(snap_calls(a.fsm.shared), failed + 1);
        propose_all(&a, 3, 1);
        ck_assert_uint_eq(settled(&a).snapshots, 1);
        node_close(&a);
        assert_no_children();

        restart_same(&b, &cfg, &a);
        ck_assert_uint_eq(b.fsm.restores, 1);
        ck_assert_uint_eq(b.fsm.restore_index, st.snapshot_index);
        snap_test_end(&a, &b, NULL);
    }
}
END_TEST

/* Closing while a child serialises (here: held on its gate for ever) does
 * not wait for it: the child is killed, reaped, no snapshot is written,
 * and a restart replays the log into the same state. */
START_TEST(test_close_during_snapshot)
{
    struct node a = {0}, b = {0};
    char gate[600];
    struct ts_repl_config cfg = start_gated(&a, gate, sizeof(gate));
    propose_all(&a, 5, 5);
    ck_assert_int_eq(snap_running(&a), 1);
    node_close(&a);
    assert_no_children();
    ck_assert_int_eq(snapshot_on_disk(NULL), 0);

    restart_same(&b, &cfg, &a);
    ck_assert_uint_eq(b.fsm.restores, 0);
    snap_test_end(&a, &b, gate);
}
END_TEST

START_TEST(test_second_start_busy)
{
    make_dir();
    struct ts_repl_config cfg = base_cfg();
    struct node a = {0}, b = {0};
    uv_loop_init(&a.loop);
    uv_loop_init(&b.loop);
    ck_assert_int_eq(node_start(&a, &cfg), TS_OK);

    char logpath[600];
    snprintf(logpath, sizeof(logpath), "%s.log", g_dir);
    int saved = dup(STDERR_FILENO);
    int fd = open(logpath, O_RDWR | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    dup2(fd, STDERR_FILENO);
    b.r = (struct ts_repl *)&b; /* must be reset to NULL */
    int rc = node_start(&b, &cfg);
    dup2(saved, STDERR_FILENO);
    close(saved);
    ck_assert_int_eq(rc, TS_E_BUSY);
    ck_assert_ptr_null(b.r);
    char line[4096] = {0};
    ck_assert_int_gt(pread(fd, line, sizeof(line) - 1, 0), 0);
    close(fd);
    ck_assert_ptr_nonnull(strstr(line, "level=error"));
    ck_assert_ptr_nonnull(strstr(line, g_dir));
    ck_assert_int_eq(uv_loop_close(&b.loop), 0);

    /* The first instance is unaffected. */
    run_until(&a.loop, is_leader, &a, 5000);
    propose_all(&a, 5, 5);
    node_close(&a);

    /* Once closed, the directory can be opened again. */
    struct node c = {0};
    uv_loop_init(&c.loop);
    ck_assert_int_eq(node_start(&c, &cfg), TS_OK);
    node_close(&c);
    tfsm_clear(&a.fsm);
    tfsm_clear(&c.fsm);
    remove_dir();
}
END_TEST

/* Seeding and starting share one open-and-lock of the data directory: a
 * seed refuses a directory a running node holds (BUSY, before it looks at
 * the raft files there), a finished seed lets go of it, and the node started
 * on it restores the seeded snapshot at its index. */
START_TEST(test_seed_shares_lock)
{
    struct tfsm src = {0};
    uint8_t result[8];
    ck_assert_int_eq(t_apply(&src, 7, (const uint8_t *)"seeded", 6, result), 0);
    uint8_t *snap;
    size_t snap_len;
    ck_assert_int_eq(t_snapshot(&src, &snap, &snap_len), 0);

    make_dir();
    struct ts_repl_config cfg = base_cfg();
    struct node a = {0};
    uv_loop_init(&a.loop);
    ck_assert_int_eq(node_start(&a, &cfg), TS_OK);
    ck_assert_int_eq(ts_repl_seed_snapshot(&cfg, 7, snap, snap_len), TS_E_BUSY);
    node_close(&a);
    tfsm_clear(&a.fsm);
    remove_dir();

    make_dir();
    cfg = base_cfg();
    ck_assert_int_eq(ts_repl_seed_snapshot(&cfg, 7, snap, snap_len), TS_OK);
    ck_assert_int_eq(ts_repl_seed_snapshot(&cfg, 7, snap, snap_len), TS_E_EXISTS);
    struct node b = {0};
    uv_loop_init(&b.loop);
    ck_assert_int_eq(node_start(&b, &cfg), TS_OK);
    run_until(&b.loop, is_leader, &b, 5000);
    ck_assert_uint_eq(b.fsm.restores, 1);
    ck_assert_uint_eq(b.fsm.restore_index, 7);
    assert_same(&src, &b.fsm);
    propose_all(&b, 3, 3);
    ck_assert_uint_gt(b.fsm.last_index, 7);
    node_close(&b);
    tfsm_clear(&b.fsm);
    tfsm_clear(&src);
    free(snap);
    remove_dir();
}
END_TEST

START_TEST(test_inflight_cap)
{
    make_dir();
    struct ts_repl_config cfg = base_cfg();
    cfg.max_inflight = 4;
    struct node a = {0};
    uv_loop_init(&a.loop);
    ck_assert_int_eq(node_start(&a, &cfg), TS_OK);
    run_until(&a.loop, is_leader, &a, 5000);
    uint64_t before = ts_repl_last_applied(a.r);

    struct prop p;
    prop_init(&p, &a, 4, 4);
    p.close_after = 0;
    pump(&p); /* 4 accepted, none applied yet */
    ck_assert_uint_eq(p.sent, 4);
    uint8_t x = 'x';
    struct pctx *extra = malloc(sizeof(*extra));
    extra->p = &p;
    extra->i = 0;
    ck_assert_int_eq(ts_repl_propose(a.r, &x, 1, on_result, extra), TS_E_UNAVAILABLE);
    free(extra); /* cb will not be called */
    run_until(&a.loop, prop_done, &p, 10000);
    ck_assert_int_eq(p.statuses[0], 4);
    for (unsigned i = 0; i < 4; i++)
        ck_assert_uint_eq(p.calls[i], 1);
    prop_free(&p);
    /* The refused one never reached the log: 4 entries applied, and room
     * again now that they completed. */
    ck_assert_uint_eq(a.fsm.n, 4);
    ck_assert_uint_gt(a.fsm.recs[0].index, before);
    ck_assert_uint_eq(a.fsm.recs[3].index, a.fsm.recs[0].index + 3);
    ck_assert_uint_eq(ts_repl_last_applied(a.r), a.fsm.recs[3].index);
    propose_all(&a, 1, 1);
    ck_assert_uint_eq(a.fsm.n, 5);
    node_close(&a);
    tfsm_clear(&a.fsm);
    remove_dir();
}
END_TEST

/* ---- roles: a standby never counts, a join never changes a role ---- */

struct change {
    int calls, status;
};

static void on_change_done(void *arg, int status)
{
    struct change *c = arg;
    c->calls++;
    c->status = status;
}

static int change_done(void *arg)
{
    return ((struct change *)arg)->calls > 0;
}

/* Joins node 2 with role, waiting for the change to end; its status. */
static int join_node2(struct node *a, int role)
{
    struct change c = {0};
    int rc = ts_repl_join(a->r, 2, "127.0.0.1:1", "127.0.0.1:2", role, on_change_done, &c);
    if (rc != TS_OK)
        return rc;
    ck_assert_int_eq(c.calls, 0); /* never synchronous */
    run_until(&a->loop, change_done, &c, 10000);
    ck_assert_int_eq(c.calls, 1);
    return c.status;
}

static int role_of(struct ts_repl *r, uint64_t id)
{
    struct ts_repl_node *v;
    size_t n;
    ck_assert_int_eq(ts_repl_nodes(r, &v, &n), TS_OK);
    int role = 0;
    for (size_t i = 0; i < n; i++)
        if (v[i].id == id)
            role = v[i].role;
    free(v);
    return role;
}

/* A standby (read replica) joins at once, even unreachable, and a cluster
 * of one voter and that standby, down, still commits: standbys are not
 * counted. A join asking a member for the other role is refused, and so is
 * a role that is neither voter nor standby. */
START_TEST(test_standby_roles)
{
    make_dir();
    struct ts_repl_config cfg = base_cfg();
    struct node a = {0};
    uv_loop_init(&a.loop);
    ck_assert_int_eq(node_start(&a, &cfg), TS_OK);
    run_until(&a.loop, is_leader, &a, 5000);
    ck_assert_int_eq(ts_repl_role(a.r), TS_REPL_VOTER);
    ck_assert_int_eq(join_node2(&a, TS_REPL_SPARE), TS_E_INVALID_ARGUMENT);
    ck_assert_int_eq(join_node2(&a, 0), TS_E_INVALID_ARGUMENT);

    ck_assert_int_eq(join_node2(&a, TS_REPL_STANDBY), TS_OK);
    ck_assert_int_eq(role_of(a.r, 2), TS_REPL_STANDBY);
    propose_all(&a, 20, 4); /* node 2 never answers: no quorum needs it */
    ck_assert_int_eq(join_node2(&a, TS_REPL_STANDBY), TS_OK); /* already one */
    ck_assert_int_eq(join_node2(&a, TS_REPL_VOTER), TS_E_EXISTS);
    ck_assert_int_eq(role_of(a.r, 2), TS_REPL_STANDBY);
    ck_assert_int_eq(ts_repl_is_leader(a.r), 1);
    node_close(&a);
    tfsm_clear(&a.fsm);
    remove_dir();
}
END_TEST

/* Close with proposals still in flight: each callback exactly once (OK if
 * the entry made it, UNAVAILABLE otherwise), nothing after the close cb. */
START_TEST(test_close_with_pending)
{
    make_dir();
    struct ts_repl_config cfg = base_cfg();
    struct node a = {0};
    uv_loop_init(&a.loop);
    ck_assert_int_eq(node_start(&a, &cfg), TS_OK);
    run_until(&a.loop, is_leader, &a, 5000);

    struct prop p;
    prop_init(&p, &a, 64, 64);
    p.close_after = 1000; /* no refill */
    pump(&p);
    ck_assert_uint_eq(p.sent, 64);
    ts_repl_close(a.r, on_closed, &a);
    uint8_t x = 'x';
    ck_assert_int_eq(ts_repl_propose(a.r, &x, 1, on_result, NULL), TS_E_UNAVAILABLE);
    ck_assert_int_eq(p.done, 0);
    run_until(&a.loop, is_closed, &a, 10000);
    ck_assert_int_eq(p.done, 64);
    for (unsigned i = 0; i < 64; i++)
        ck_assert_uint_eq(p.calls[i], 1);
    ck_assert_int_eq(p.statuses[2], 0);
    ck_assert_int_eq(p.statuses[0] + p.statuses[1], 64);
    fprintf(stderr, "close_with_pending: ok=%d unavailable=%d\n", p.statuses[0], p.statuses[1]);
    ck_assert_int_eq(p.sync_cb, 0);
    uv_run(&a.loop, UV_RUN_NOWAIT);
    ck_assert_int_eq(uv_loop_close(&a.loop), 0);
    prop_free(&p);
    tfsm_clear(&a.fsm);
    remove_dir();
}
END_TEST

/* ts_repl_close from inside a proposal's callback (that is, from inside a
 * raft callback): libraft 0.15 aborts if raft_close runs there. */
START_TEST(test_close_from_callback)
{
    make_dir();
    struct ts_repl_config cfg = base_cfg();
    struct node a = {0};
    uv_loop_init(&a.loop);
    ck_assert_int_eq(node_start(&a, &cfg), TS_OK);
    run_until(&a.loop, is_leader, &a, 5000);
    struct prop p;
    prop_init(&p, &a, 8, 8);
    p.close_after = 1;
    pump(&p);
    run_until(&a.loop, is_closed, &a, 10000);
    ck_assert_int_eq(a.closed, 1);
    ck_assert_int_eq(p.done, 8);
    for (unsigned i = 0; i < 8; i++)
        ck_assert_uint_eq(p.calls[i], 1);
    uv_run(&a.loop, UV_RUN_NOWAIT);
    ck_assert_int_eq(uv_loop_close(&a.loop), 0);
    prop_free(&p);
    tfsm_clear(&a.fsm);
    remove_dir();
}
END_TEST

/* A damaged log stops the node at start with an error instead of being
 * renamed aside (auto-recovery off); the files are left as they were. */
START_TEST(test_corrupt_segment_refuses_start)
{
    make_dir();
    struct ts_repl_config cfg = base_cfg();
    struct node a = {0}, b = {0};
    uv_loop_init(&a.loop);
    ck_assert_int_eq(node_start(&a, &cfg), TS_OK);
    run_until(&a.loop, is_leader, &a, 5000);
    propose_all(&a, 50, 1);
    node_close(&a);

    /* Flip bytes inside the first segment's entry data. */
    DIR *d = opendir(g_dir);
    ck_assert_ptr_nonnull(d);
    char seg[256] = "";
    unsigned nfiles = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        nfiles++;
        if (!seg[0] && (strncmp(e->d_name, "open-", 5) == 0 ||
                        (e->d_name[0] >= '0' && e->d_name[0] <= '9' && strchr(e->d_name, '-'))))
            snprintf(seg, sizeof(seg), "%s", e->d_name);
    }
    closedir(d);
    ck_assert_msg(seg[0], "no segment file");
    char path[800];
    snprintf(path, sizeof(path), "%s/%s", g_dir, seg);
    int fd = open(path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    uint8_t junk[64];
    memset(junk, 0xA5, sizeof(junk));
    ck_assert_int_eq(pwrite(fd, junk, sizeof(junk), 200), (ssize_t)sizeof(junk));
    close(fd);

    uv_loop_init(&b.loop);
#ifdef __SANITIZE_ADDRESS__
    /* libraft 0.15 leaks its entries array (extendEntries) when loading a
     * damaged segment fails; only this call's allocations are ignored. */
    __lsan_disable();
#endif
    int rc = node_start(&b, &cfg);
#ifdef __SANITIZE_ADDRESS__
    __lsan_enable();
#endif
    ck_assert_int_ne(rc, TS_OK);
    ck_assert_ptr_null(b.r);
    uv_run(&b.loop, UV_RUN_DEFAULT); /* finishes the failed start's close */
    ck_assert_int_eq(uv_loop_close(&b.loop), 0);
    ck_assert_uint_eq(b.fsm.applies, 0);
    /* Nothing renamed aside or removed. */
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    d = opendir(g_dir);
    unsigned nafter = 0;
    while ((e = readdir(d)) != NULL)
        nafter += e->d_name[0] != '.';
    closedir(d);
    ck_assert_uint_eq(nafter, nfiles);
    tfsm_clear(&a.fsm);
    remove_dir();
}
END_TEST

/* An apply error stops the node: later entries never reach the state
 * machine, their proposers hear UNAVAILABLE (once), proposing is refused,
 * its state is no longer served (ts_repl_stale 2), and the node still
 * closes cleanly. */
START_TEST(test_apply_error_stops_node)
{
    make_dir();
    struct ts_repl_config cfg = base_cfg();
    struct node a = {0};
    uv_loop_init(&a.loop);
    a.fsm.fail_at = 10;
    ck_assert_int_eq(node_start(&a, &cfg), TS_OK);
    run_until(&a.loop, is_leader, &a, 5000);
    struct prop p;
    prop_init(&p, &a, 20, 20);
    p.close_after = 1000; /* no refill */
    pump(&p);
    run_until(&a.loop, prop_done, &p, 10000);
    ck_assert_int_eq(p.statuses[0], 9);
    ck_assert_int_eq(p.statuses[1], 11);
    for (unsigned i = 0; i < 20; i++)
        ck_assert_uint_eq(p.calls[i], 1);
    ck_assert_uint_eq(a.fsm.n, 9);
    ck_assert_int_eq(ts_repl_is_leader(a.r), 0);
    uint8_t x = 'x';
    ck_assert_int_eq(ts_repl_propose(a.r, &x, 1, on_result, NULL), TS_E_UNAVAILABLE);
    ck_assert_uint_eq(ts_repl_last_applied(a.r), a.fsm.last_index);
    /* Its state is left behind for good: no reads, /healthz fails. */
    char why[192];
    ck_assert_int_eq(ts_repl_stale(a.r, why, sizeof(why)), 2);
    ck_assert_ptr_nonnull(strstr(why, "stopped applying"));
    node_close(&a);
    ck_assert_uint_eq(a.fsm.n, 9);
    prop_free(&p);
    tfsm_clear(&a.fsm);
    remove_dir();
}
END_TEST

/* Start, write, close, ten times. On a tmpfs (no O_DIRECT, no kernel AIO)
 * libraft 0.15 almost always calls its close callback twice (its segment
 * writer finishes closing late); ts_repl must absorb that. Elsewhere the
 * same cycles run on the build tree's file system. */
START_TEST(test_close_cycles_on_tmpfs)
{
    struct statfs sf;
    const char *saved = getenv("TS_REPL_TEST_DIR");
    char *keep = saved ? strdup(saved) : NULL;
    if (statfs("/dev/shm", &sf) == 0 && sf.f_type == TMPFS_MAGIC && access("/dev/shm", W_OK) == 0)
        setenv("TS_REPL_TEST_DIR", "/dev/shm", 1);
    make_dir();
    struct ts_repl_config cfg = base_cfg();
    uint64_t last = 0;
    for (int cycle = 0; cycle < 10; cycle++) {
        struct node a = {0};
        uv_loop_init(&a.loop);
        ck_assert_int_eq(node_start(&a, &cfg), TS_OK);
        struct wait_index w = {&a, last};
        run_until(&a.loop, reached, &w, 10000);
        run_until(&a.loop, is_leader, &a, 5000);
        propose_all(&a, 20, 4);
        ck_assert_uint_gt(a.fsm.last_index, last);
        last = a.fsm.last_index;
        node_close(&a);
        tfsm_clear(&a.fsm);
    }
    remove_dir();
    if (keep)
        setenv("TS_REPL_TEST_DIR", keep, 1);
    else
        unsetenv("TS_REPL_TEST_DIR");
    free(keep);
}
END_TEST

/* Not asserted: a rough figure of committed proposals per second. */
START_TEST(test_throughput)
{
    make_dir();
    struct ts_repl_config cfg = base_cfg();
    struct node a = {0};
    uv_loop_init(&a.loop);
    ck_assert_int_eq(node_start(&a, &cfg), TS_OK);
    run_until(&a.loop, is_leader, &a, 5000);
    double t0 = now_s();
    propose_all(&a, 300, 1);
    double t1 = now_s();
    propose_all(&a, 5000, 256);
    double t2 = now_s();
    fprintf(stderr, "ts_repl throughput: window=1 %.0f/s, window=256 %.0f/s\n", 300 / (t1 - t0),
            5000 / (t2 - t1));
    ck_assert_uint_eq(a.fsm.n, 5300);
    node_close(&a);
    tfsm_clear(&a.fsm);
    remove_dir();
}
END_TEST

static Suite *repl_suite(void)
{
    Suite *s = suite_create("ts_repl");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_restart_replays_log);
    tcase_add_test(tc, test_restart_snapshot_and_replay);
    tcase_add_test(tc, test_entry_buffers_fork_private);
    tcase_add_test(tc, test_segment_aio_destroyed_off_loop);
    tcase_add_test(tc, test_restart_from_format1_snapshot);
    tcase_add_test(tc, test_snapimg_pack_unpack);
    tcase_add_test(tc, test_restart_keeps_snapshot_pace);
    tcase_add_test(tc, test_big_entries_snapshot_sooner);
    tcase_add_test(tc, test_snapshot_does_not_block_apply);
    tcase_add_test(tc, test_snapshot_child_failures);
    tcase_add_test(tc, test_close_during_snapshot);
    tcase_add_test(tc, test_second_start_busy);
    tcase_add_test(tc, test_seed_shares_lock);
    tcase_add_test(tc, test_inflight_cap);
    tcase_add_test(tc, test_standby_roles);
    tcase_add_test(tc, test_close_with_pending);
    tcase_add_test(tc, test_close_from_callback);
    tcase_add_test(tc, test_corrupt_segment_refuses_start);
    tcase_add_test(tc, test_apply_error_stops_node);
    tcase_add_test(tc, test_close_cycles_on_tmpfs);
    suite_add_tcase(s, tc);
    /* Its own case so it can be run (and traced) alone: CK_RUN_CASE=perf. */
    TCase *perf = tcase_create("perf");
    tcase_set_timeout(perf, 60);
    tcase_add_test(perf, test_throughput);
    suite_add_tcase(s, perf);
    return s;
}

int main(void)
{
    return ts_check_run(repl_suite());
}
