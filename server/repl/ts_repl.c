/*
 * ts_repl: glue between canonical raft 0.15 (libuv backend) and a state
 * machine given as struct ts_repl_fsm.
 *
 * Invariants:
 *   - Every COMMAND entry's payload is [u32 LE length][payload][zeros up to a
 *     multiple of 8]. libraft 0.15 loses unpadded entries on restart, so the
 *     padding is not optional; apply unframes and rejects (fatally) an entry
 *     whose length does not fit.
 *   - A snapshot is [u64 LE magic][u64 LE last index][image]: raft's fsm
 *     restore() does not say which index the snapshot stands for, the state
 *     machine needs it (event seqs are raft indexes), so we carry it. The
 *     image is [u64 LE raw length][an LZ4 frame of the fsm bytes] under
 *     magic "tsrtSNP2" (ts_repl_snapimg.c packs it in the snapshot child,
 *     and raft's own compression is off); under "tsrtSNP1", what releases
 *     before issue 17 item 7 wrote (raft compressed the file then), it is
 *     the fsm bytes as they are. Restore reads both.
 *   - Each accepted proposal sits on r->head..tail (index order) from
 *     raft_apply until its callback runs, exactly once; r->inflight counts
 *     them. fsm_apply hands raft the proposer's result buffer through
 *     raft's `void **result`, or r->scratch for entries proposed elsewhere
 *     or replayed.
 *   - raft_close() runs only from r->defer (a timer), never from a raft
 *     callback: libraft 0.15 aborts when closed from inside one. It also
 *     waits until every entry raft appended is on disk (last_stored ==
 *     last index): libraft 0.15 crashes (appendLeaderCb -> removeSuffix on a
 *     cleared log) when raft_close cancels an in-flight leader append.
 *   - The data directory's LOCK is held from before raft touches the
 *     directory until after raft and its I/O are closed (after a failed
 *     start: until ts_repl_start returns, raft writes nothing then). One
 *     function opens and locks the directory, ts__repl_open, for both
 *     starting and seeding.
 *   - A successful AppendEntries answer claims (last_log_index) no more than
 *     the request checked, prev_log_index + n_entries (raft_uv's send is
 *     wrapped for that). libraft 0.15 claims its whole stored log, and the
 *     leader takes the claim as matched: a node that, as leader, appended a
 *     client write it could no longer commit (stopped or cut off, then
 *     back: it reads the write its clients sent meanwhile before it hears
 *     of the new term) claimed that entry in its first answer to the new
 *     leader, which then never sent the entry it has at that index. The
 *     node stayed behind for good, answering reads (it hears the leader, so
 *     it is not stale) without the writes committed since. Later libraft
 *     versions claim prev_log_index + n_entries themselves.
 *
 * Membership changes live in ts_repl_member.c, bootstrap and seeding from a
 * backup in ts_repl_seed.c; struct ts_repl is in internal/ts_repl_int.h.
 *
 * Load: one proposal per client write, up to max_inflight queued; raft's
 * libuv backend coalesces appends that queue up while a write is in flight.
 *
 * Snapshots off the loop (libraft fsm version 3): raft applies entries
 * while a snapshot is being taken, so the state is captured by fork(), as
 * Redis does: fsm_snapshot (on the loop) forks, and the child, a
 * copy-on-write image of the state at the snapshot's index, serialises it
 * with fsm->snapshot, packs the bytes (LZ4, ts__repl_snap_pack; both in
 * snap_image) and writes
 * [u64 LE length][packed bytes] to a pipe, then _exits. fsm_snapshot_async (libuv's thread pool,
 * through raft_uv's async_work) reads the image, reaps the child and builds raft's buffers;
 * fsm_snapshot_finalize (on the loop) is the only part that touches r's
 * pacing and counters. The loop's pause is the fork (it copies the page
 * tables: 8 bytes per 4 KiB page), not the serialisation. The child:
 *   - calls nothing but fsm->snapshot and the LZ4 packing (malloc, memcpy:
 *     glibc's malloc is consistent in the child of a threaded process),
 *     write and _exit; no
 *     logging, no libuv, no OpenSSL, no atexit handlers. Its signal
 *     handlers are reset first (libuv's would write to the parent's signal
 *     pipe) with every signal blocked across the fork;
 *   - inherits every file descriptor (listeners, connections, the data
 *     directory's LOCK, raft's segments) and closes all but the pipe and
 *     0-2 before serialising (close_range), so a connection the parent
 *     closes meanwhile is not held open and a LOCK outlives the parent by
 *     no more than the fork's first microseconds;
 *   - dies with the forking thread (PR_SET_PDEATHSIG: the loop thread),
 *     and is killed when raft closes (raft_close waits for the thread pool
 *     read, which ends when the child exits);
 *   - runs at nice SNAP_CHILD_NICE, so that on a busy machine the loop and
 *     the I/O threads go first (the snapshot then takes longer, and raft
 *     holds more log in memory meanwhile: it takes one at a time).
 * A child that fails, crashes or writes less than it declared is a failed
 * snapshot: raft takes none, the node goes on, and the next attempt waits
 * for another threshold's worth of entries. When fork() fails the
 * snapshot is serialised on the loop, as before, and logged. The parent
 * pays a page copy for each page it writes while the child lives; the
 * child holds the serialised image and its packed copy, and the parent's
 * thread pool reads the packed one (about a third of the image) into one
 * buffer that raft writes as it is.
 *
 * Snapshot cadence: a snapshot serialises the whole state (and packs it,
 * once in the child; raft writes it on the thread pool), so with a
 * fixed threshold its cost per entry grows with the state (at a million
 * comments, 8192 entries paid for a 300 MB serialisation on the loop:
 * ingest fell to a third). The configured threshold is a minimum: after
 * each snapshot the next one waits until the entries since then add up to
 * SNAP_LOG_SHARE of the snapshot's size, so a snapshot costs a bounded
 * multiple of the bytes logged (CPU and copy-on-write memory now, no longer
 * loop time; sizes are the raw image's, not the packed one's), and a restart replays at most that
 * share of the state's size from the log (which raft also keeps in memory).
 */
#include "ts_repl.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <raft.h>
#include <raft/uv.h>

#include "ts_assert.h"
#include "ts_endian.h"
#include "ts_err.h"
#include "ts_file.h"
#include "ts_log.h"
#include "ts_raft_tls.h"
#include "ts_repl_aio.h"
#include "ts_repl_heap.h"
#include "ts_repl_int.h"

#define REPL_DEFAULT_ELECTION_MS 1000
#define REPL_DEFAULT_HEARTBEAT_MS 100
#define REPL_DEFAULT_SNAPSHOT_THRESHOLD 8192
#define REPL_DEFAULT_SNAPSHOT_TRAILING 2048
/* The size of a one-post entry, about: the unit the configured snapshot
 * threshold and trailing count are in (nominal_entries). */
#define REPL_NOMINAL_ENTRY 1024
#define REPL_DEFAULT_MAX_INFLIGHT 4096
#define REPL_DEFAULT_TRANSFER_MS 3000
#define REPL_CONNECT_RETRY_MS 250
/* A node that knew no leader for this many election timeouts is stale. An
 * election takes one to two timeouts (randomised, pre-vote first), so a
 * healthy cluster never gets there. */
#define REPL_STALE_ELECTIONS 3

/* The snapshot child's nice value (the node's is usually 0). */
#define SNAP_CHILD_NICE 10

/* Log bytes between snapshots, as a fraction of the last snapshot: 1/8. */
#define SNAP_LOG_SHARE_DIV 8

#define REPL_FRAME_HDR 4

int ts__repl_err(int rv)
{
    switch (rv) {
    case 0:
        return TS_OK;
    case RAFT_NOTLEADER:
        return TS_E_NOT_LEADER;
    case RAFT_NOMEM:
        return TS_E_NOMEM;
    case RAFT_TOOBIG:
        return TS_E_TOO_LARGE;
    case RAFT_IOERR:
    case RAFT_NOSPACE:
    case RAFT_CORRUPT:
    case RAFT_MALFORMED:
        return TS_E_IO;
    case RAFT_LEADERSHIPLOST:
    case RAFT_SHUTDOWN:
    case RAFT_CANCELED:
    case RAFT_NOCONNECTION:
        return TS_E_UNAVAILABLE;
    default:
        return TS_E_INTERNAL;
    }
}

/* The ends are found by identity, which for a listed p is the same as by
 * NULL links, but lets clang's analyzer see r->head move on in fail_pending. */
static void pending_remove(struct ts_repl *r, struct repl_prop *p)
{
    TS_ASSERT(r->inflight > 0 && (p == r->head || p->prev)); /* listed */
    if (p == r->head)
        r->head = p->next;
    else
        p->prev->next = p->next;
    if (p == r->tail)
        r->tail = p->prev;
    else
        p->next->prev = p->prev;
    p->prev = p->next = NULL;
    r->inflight--;
    TS_ASSERT((r->head == NULL) == (r->inflight == 0) && (r->head == NULL) == (r->tail == NULL));
}

static void on_defer(uv_timer_t *h);

static void schedule_defer(struct ts_repl *r)
{
    uv_timer_start(&r->defer, on_defer, 0, 0);
}

/* Stops the node after an error raft cannot recover from by itself; the
 * state machine is no longer fed, proposals are refused. */
static void repl_fail(struct ts_repl *r)
{
    if (r->failed)
        return;
    r->failed = 1;
    schedule_defer(r);
}

/* ---- state machine glue (called by raft) ---------------------------- */

/* n entries of the configured minimum threshold or trailing count, in
 * entries of the mean size: an entry of more than REPL_NOMINAL_ENTRY bytes
 * (a PostBatch or an Import carries hundreds of comments) counts for as
 * many nominal ones, so those settings bound the bytes of log raft holds
 * in memory, not only its entries; at least 1. */
static uint64_t nominal_entries(uint64_t n, uint64_t mean)
{
    if (mean <= REPL_NOMINAL_ENTRY)
        return n;
    uint64_t k = n * REPL_NOMINAL_ENTRY / mean;
    return k ? k : 1;
}

/* The next snapshot after SNAP_LOG_SHARE of r->snap_base (the last
 * snapshot's bytes) in entries of the mean size applied since then (see the
 * file comment), and no sooner than the configured minimum in nominal
 * entries, plus the entries a failed attempt was behind by (snap_backoff);
 * the trailing entries kept after it likewise. */
static void set_threshold(struct ts_repl *r)
{
    uint64_t mean = r->entry_count ? r->entry_bytes / r->entry_count : 0;
    uint64_t next = mean ? r->snap_base / SNAP_LOG_SHARE_DIV / mean : 0;
    uint64_t floor = nominal_entries(r->min_threshold, mean);
    if (next < floor)
        next = floor;
    next += r->snap_backoff;
    if (next > UINT32_MAX / 2)
        next = UINT32_MAX / 2;
    raft_set_snapshot_threshold(&r->raft, (unsigned)next);
    raft_set_snapshot_trailing(&r->raft, (unsigned)nominal_entries(r->trailing, mean));
}

static int fsm_apply(struct raft_fsm *rfsm, const struct raft_buffer *buf, void **result)
{
    struct ts_repl *r = rfsm->data;
    /* libraft 0.15 advances last_applied after each entry of its apply loop
     * (commands, barriers and configuration changes alike), so the entry being
     * applied is the next one. */
    uint64_t index = (uint64_t)r->raft.last_applied + 1;
    TS_ASSERT(r->lock_fd >= 0); /* raft runs: the data directory is ours */
    if (r->failed)
        return RAFT_IOERR;
    const uint8_t *b = buf->base;
    uint32_t len = buf->len >= REPL_FRAME_HDR ? ts_load_le32(b) : 0;
    if (buf->len < REPL_FRAME_HDR || len > buf->len - REPL_FRAME_HDR) {
        TS_ERROR("event=repl_bad_entry dir=%s index=%llu entry_len=%zu", r->dir,
                 (unsigned long long)index, buf->len);
        repl_fail(r);
        return RAFT_CORRUPT;
    }
    void *res = r->scratch;
    for (struct repl_prop *p = r->head; p && p->req.index <= index; p = p->next) {
        TS_ASSERT(!p->next || p->req.index < p->next->req.index); /* index order */
        if (p->req.index == index) {
            res = p->result;
            break;
        }
    }
    if (res == r->scratch)
        memset(r->scratch, 0, r->fsm.result_size ? r->fsm.result_size : 1);
    int rc = r->fsm.apply(r->fsm.arg, index, b + REPL_FRAME_HDR, len, res);
    if (rc != 0) {
        TS_ERROR("event=repl_apply_failed dir=%s index=%llu err=%d", r->dir,
                 (unsigned long long)index, rc);
        repl_fail(r);
        return RAFT_IOERR;
    }
    r->applied = index;
    r->entry_bytes += buf->len;
    r->entry_count++;
    if (r->threshold_open)
        set_threshold(r);
    *result = res;
    if (r->hooks.on_applied)
        r->hooks.on_applied(r->hooks.arg, index);
    return 0;
}

/* ---- snapshots: a forked child serialises (see the file comment) ----- */

/* The one snapshot in progress (libraft takes one at a time), from
 * fsm_snapshot to fsm_snapshot_finalize. The loop creates it and hands it
 * to the thread pool through raft's async_work (which orders the two);
 * the thread writes data, len, status and why, and reaps the child; the
 * loop reads them once finalize runs. lock orders the one thing both may
 * do meanwhile: the thread reaping the child and the loop killing it (a
 * reaped pid may be reused). */
struct repl_snap {
    uint64_t index;       /* raft's last_applied at the snapshot */
    uint64_t t0;          /* uv_hrtime() when fsm_snapshot began */
    uint64_t loop_ns;     /* the loop's pause: the fork, or the serialisation */
    uint64_t entry_bytes; /* r->entry_bytes and r->entry_count at the */
    uint64_t entry_count; /* snapshot: what is applied after it stays */
    pid_t pid;            /* the child; 0 when serialised on the loop */
    int fd;               /* the read end of its pipe, -1 once closed */
    uv_mutex_t lock;
    int reaped;      /* the child was waited for (under lock) */
    int wstatus;     /* its wait status, once reaped; -1 unknown */
    int err;         /* errno of a failed read, 0 none */
    const char *why; /* why the image is unusable, NULL when it is */
    uint8_t *data;   /* the image (malloc'd, packed): raft's second buffer */
    size_t len;
    size_t raw_len; /* the fsm bytes before packing: what paces snapshots */
};

int ts__repl_snap_fault;
int ts__repl_snap_legacy;

/* The image raft stores: the state machine's bytes (fsm->snapshot), packed
 * (LZ4, ts__repl_snap_pack) unless ts__repl_snap_legacy. *out is malloc'd,
 * *len its bytes. Only malloc, free and liblz4 besides fsm->snapshot: the
 * snapshot child's work, and the loop's when fork fails. Compressing in
 * pieces as the records come, so that the child would never hold the raw
 * image, was tried and not kept: it made the node itself slower while a
 * child ran (bench/README.md, "The snapshot child's memory and CPU"). */
static int snap_image(struct ts_repl *r, uint8_t **out, size_t *len)
{
    int rc = r->fsm.snapshot(r->fsm.arg, out, len);
    if (rc != 0 || ts__repl_snap_legacy)
        return rc;
    uint8_t *packed = NULL;
    rc = ts__repl_snap_pack(*out, *len, &packed, len) != 0 ? TS_E_NOMEM : TS_OK;
    free(*out);
    *out = packed;
    return rc;
}

/* The child. Async-signal-safe calls only, plus snap_image (malloc is
 * usable: glibc's fork holds its arena locks across the fork). */
static _Noreturn void snap_child(struct ts_repl *r, int wfd, pid_t parent, const sigset_t *mask)
{
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            sigaction(sig, &dfl, NULL);
    /* SIGPIPE stays fatal: the reader gone, the snapshot is void anyway. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(1); /* the parent died before prctl */
    sigprocmask(SIG_SETMASK, mask, NULL);
    if (wfd > 3)
        close_range(3, (unsigned)wfd - 1, 0);
    close_range((unsigned)wfd + 1, ~0U, 0);
    /* The loop and the I/O threads first: a snapshot may take longer. */
    setpriority(PRIO_PROCESS, 0, SNAP_CHILD_NICE);
    uint8_t *data = NULL;
    size_t len = 0;
    if (snap_image(r, &data, &len) != 0)
        _exit(1);
    uint8_t hdr[8];
    ts_store_le64(hdr, len);
    if (ts__repl_snap_fault == TS__REPL_SNAP_FAULT_SHORT)
        len /= 2;
    if (ts_file_write_full(wfd, hdr, sizeof(hdr)) != 0 || ts_file_write_full(wfd, data, len) != 0)
        _exit(1);
    _exit(0);
}

/* Reads up to n bytes; fewer only at end of file. -1 with errno. */
static ssize_t read_full(int fd, uint8_t *p, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t k = read(fd, p + got, n - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -1;
        if (k == 0)
            break;
        got += (size_t)k;
    }
    return (ssize_t)got;
}

/* Kills the child unless it was reaped already (then its pid may be
 * another process's). Loop or thread. */
static void snap_kill(struct repl_snap *s)
{
    uv_mutex_lock(&s->lock);
    if (s->pid > 0 && !s->reaped)
        kill(s->pid, SIGKILL);
    uv_mutex_unlock(&s->lock);
}

/* Waits for the child to end (without reaping, so snap_kill stays safe
 * meanwhile), then reaps it. */
static void snap_reap(struct repl_snap *s)
{
    siginfo_t info;
    while (waitid(P_PID, (id_t)s->pid, &info, WEXITED | WNOWAIT) != 0 && errno == EINTR)
        ;
    uv_mutex_lock(&s->lock);
    int st = 0;
    pid_t w;
    while ((w = waitpid(s->pid, &st, 0)) < 0 && errno == EINTR)
        ;
    s->wstatus = w == s->pid ? st : -1; /* -1: someone else reaped it */
    s->reaped = 1;
    uv_mutex_unlock(&s->lock);
}

/* The thread pool's part of a forked snapshot: the image from the pipe,
 * all of it and no more than declared, from a child that exited 0. */
static void snap_collect(struct repl_snap *s)
{
    int early = 0; /* stopped reading before the child's end of file */
    uint8_t hdr[8];
    ssize_t k = read_full(s->fd, hdr, sizeof(hdr));
    if (k == (ssize_t)sizeof(hdr)) {
        uint64_t len = ts_load_le64(hdr);
        s->data = len < SIZE_MAX / 2 ? malloc(len ? (size_t)len : 1) : NULL;
        if (!s->data) {
            s->why = "no memory for the image";
            early = 1;
        } else {
            s->len = (size_t)len;
            uint8_t extra;
            if ((k = read_full(s->fd, s->data, s->len)) >= 0 && (size_t)k < s->len) {
                s->why = "image shorter than declared";
            } else if (k >= 0 && (k = read_full(s->fd, &extra, 1)) > 0) {
                s->why = "image longer than declared";
                early = 1;
            }
        }
    } else if (k >= 0) {
        s->why = "no image";
    }
    if (k < 0) {
        s->err = errno;
        s->why = "pipe read failed";
        early = 1;
    }
    close(s->fd);
    s->fd = -1;
    if (early)
        snap_kill(s); /* it may still be writing: it must not keep us waiting */
    snap_reap(s);
    /* A child that ended by itself says more than what its pipe missed. */
    if (s->wstatus == -1)
        s->why = "child not waited for";
    else if (!early && WIFSIGNALED(s->wstatus))
        s->why = "child killed";
    else if (!early && WEXITSTATUS(s->wstatus) != 0)
        s->why = "child failed";
    if (s->why) {
        free(s->data);
        s->data = NULL;
        s->len = 0;
    }
}

/* Starts a snapshot at raft's last_applied (raft takes it there, right
 * after this returns): forks the child, or serialises on the loop when the
 * fork fails. No buffers yet: fsm_snapshot_async fills them. */
static int fsm_snapshot(struct raft_fsm *rfsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    struct ts_repl *r = rfsm->data;
    *bufs = NULL;
    *n_bufs = 0;
    if (r->failed)
        return RAFT_IOERR;
    TS_ASSERT(!r->snap); /* raft takes one snapshot at a time */
    struct repl_snap *s = calloc(1, sizeof(*s));
    if (!s || uv_mutex_init(&s->lock) != 0) {
        free(s);
        repl_fail(r);
        return RAFT_NOMEM;
    }
    s->index = (uint64_t)r->raft.last_applied;
    s->t0 = uv_hrtime();
    s->entry_bytes = r->entry_bytes;
    s->entry_count = r->entry_count;
    s->fd = -1;
    int p[2];
    int err = 0;
    if (pipe2(p, O_CLOEXEC) != 0) {
        err = errno;
    } else {
        /* Bigger chunks per wake-up of the reader; best effort. */
        (void)fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        pid_t parent = getpid();
        pid_t pid = fork();
        if (pid == 0) {
            close(p[0]);
            snap_child(r, p[1], parent, &old);
        }
        err = errno;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        close(p[1]);
        if (pid > 0) {
            s->pid = pid;
            s->fd = p[0];
        } else {
            close(p[0]);
        }
    }
    if (!s->pid) {
        TS_WARN("event=repl_snapshot_fork_failed dir=%s index=%llu err=%s msg=\"serialising "
                "on the loop\"",
                r->dir, (unsigned long long)s->index, strerror(err));
        int rc = snap_image(r, &s->data, &s->len);
        if (rc != 0) {
            TS_ERROR("event=repl_snapshot_failed dir=%s index=%llu err=%d", r->dir,
                     (unsigned long long)s->index, rc);
            uv_mutex_destroy(&s->lock);
            free(s);
            repl_fail(r);
            return RAFT_NOMEM;
        }
    }
    s->loop_ns = uv_hrtime() - s->t0;
    r->snap = s;
    return 0;
}

/* On libuv's thread pool: touches r->snap only (fsm_snapshot set it
 * before raft queued this; the loop leaves it alone until finalize). */
static int fsm_snapshot_async(struct raft_fsm *rfsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    struct repl_snap *s = ((struct ts_repl *)rfsm->data)->snap;
    if (s->pid)
        snap_collect(s);
    if (s->why)
        return RAFT_IOERR;
    s->raw_len = ts__repl_snap_legacy ? s->len : (size_t)ts__repl_snap_raw_len(s->data, s->len);
    struct raft_buffer *v = raft_calloc(2, sizeof(*v));
    uint8_t *hdr = raft_malloc(REPL_SNAP_HDR);
    if (!v || !hdr) {
        raft_free(v);
        raft_free(hdr);
        s->why = "no memory";
        return RAFT_NOMEM;
    }
    ts_store_le64(hdr, ts__repl_snap_legacy ? REPL_SNAP_MAGIC : REPL_SNAP_MAGIC_LZ4);
    ts_store_le64(hdr + 8, s->index);
    v[0].base = hdr;
    v[0].len = REPL_SNAP_HDR;
    v[1].base = s->data; /* still s's: finalize frees it */
    v[1].len = s->len;
    *bufs = v;
    *n_bufs = 2;
    return 0;
}

/* After a forked child failed, the next attempt waits for another
 * threshold's worth of entries instead of forking on the next apply. */
static void snap_backoff(struct ts_repl *r)
{
    uint64_t behind = (uint64_t)r->raft.last_applied - r->raft.log.snapshot.last_index;
    r->snap_backoff = behind;
    set_threshold(r);
}

/* On the loop, once raft wrote the snapshot, failed to, or the async part
 * failed (bufs NULL then). The only place a snapshot changes r. */
static int fsm_snapshot_finalize(struct raft_fsm *rfsm, struct raft_buffer *bufs[],
                                 unsigned *n_bufs)
{
    struct ts_repl *r = rfsm->data;
    struct repl_snap *s = r->snap;
    struct raft_buffer *v = *bufs;
    TS_ASSERT(s);
    r->snap = NULL;
    if (s->pid && !s->reaped) {
        /* The async part never ran (raft could not queue it). */
        snap_kill(s);
        if (s->fd >= 0)
            close(s->fd);
        snap_reap(s);
        s->why = "not started";
    }
    /* raft moved its log's snapshot here only when the files are written. */
    int written = v && r->raft.log.snapshot.last_index == s->index;
    if (v) {
        raft_free(v[0].base);
        raft_free(v);
    }
    *bufs = NULL;
    *n_bufs = 0;
    double ms = (double)(uv_hrtime() - s->t0) / 1e6;
    if (written) {
        r->snap_base = s->raw_len;
        r->entry_bytes -= s->entry_bytes;
        r->entry_count -= s->entry_count;
        r->threshold_open = 0;
        r->snap_backoff = 0;
        set_threshold(r);
        r->snapshots++, r->snapshot_bytes = s->raw_len;
        r->snapshot_index = s->index;
        TS_INFO("event=repl_snapshot dir=%s index=%llu bytes=%zu stored=%zu forked=%d "
                "loop_ms=%.1f ms=%.1f",
                r->dir, (unsigned long long)s->index, s->raw_len, s->len, s->pid > 0,
                (double)s->loop_ns / 1e6, ms);
    } else if (r->raft_stopping) {
        TS_INFO("event=repl_snapshot_canceled dir=%s index=%llu", r->dir,
                (unsigned long long)s->index);
    } else {
        const char *why = s->why ? s->why : "not written";
        if (s->err)
            TS_WARN("event=repl_snapshot_failed dir=%s index=%llu why=\"%s\" err=%s ms=%.1f",
                    r->dir, (unsigned long long)s->index, why, strerror(s->err), ms);
        else if (s->reaped && s->wstatus != -1 && WIFSIGNALED(s->wstatus))
            TS_WARN("event=repl_snapshot_failed dir=%s index=%llu why=\"%s\" signal=%d ms=%.1f",
                    r->dir, (unsigned long long)s->index, why, WTERMSIG(s->wstatus), ms);
        else if (s->reaped && s->wstatus != -1 && WEXITSTATUS(s->wstatus) != 0)
            TS_WARN("event=repl_snapshot_failed dir=%s index=%llu why=\"%s\" exit=%d ms=%.1f",
                    r->dir, (unsigned long long)s->index, why, WEXITSTATUS(s->wstatus), ms);
        else
            TS_WARN("event=repl_snapshot_failed dir=%s index=%llu why=\"%s\" ms=%.1f", r->dir,
                    (unsigned long long)s->index, why, ms);
        snap_backoff(r);
    }
    free(s->data);
    uv_mutex_destroy(&s->lock);
    free(s);
    return 0;
}

static int fsm_restore(struct raft_fsm *rfsm, struct raft_buffer *buf)
{
    struct ts_repl *r = rfsm->data;
    uint8_t *b = buf->base;
    uint64_t magic = buf->len >= REPL_SNAP_HDR ? ts_load_le64(b) : 0;
    if (magic != REPL_SNAP_MAGIC && magic != REPL_SNAP_MAGIC_LZ4) {
        TS_ERROR("event=repl_bad_snapshot dir=%s bytes=%zu", r->dir, buf->len);
        repl_fail(r);
        return RAFT_CORRUPT;
    }
    uint64_t index = ts_load_le64(b + 8);
    uint8_t *img = b + REPL_SNAP_HDR;
    size_t img_len = buf->len - REPL_SNAP_HDR;
    uint8_t *raw = NULL; /* format 2: the unpacked image, a mapping of ours */
    size_t raw_len = 0;
    if (magic == REPL_SNAP_MAGIC_LZ4) {
        int rc = ts__repl_snap_unpack(img, img_len, &raw, &raw_len);
        if (rc != TS_OK) {
            TS_ERROR("event=repl_bad_snapshot dir=%s index=%llu bytes=%zu err=%s", r->dir,
                     (unsigned long long)index, buf->len, ts_err_name(rc));
            repl_fail(r);
            return rc == TS_E_NOMEM ? RAFT_NOMEM : RAFT_CORRUPT;
        }
        /* The packed copy goes before the decode builds the state: raft
         * frees buf->base only on failure, and free(NULL) is nothing. */
        raft_free(buf->base);
        buf->base = NULL;
        buf->len = 0;
        img = raw;
        img_len = raw_len;
    }
    int rc = r->fsm.restore(r->fsm.arg, index, img, img_len);
    ts__repl_snap_unmap(raw, raw_len);
    if (rc != 0) {
        TS_ERROR("event=repl_restore_failed dir=%s index=%llu err=%d", r->dir,
                 (unsigned long long)index, rc);
        repl_fail(r);
        return RAFT_CORRUPT;
    }
    /* On success the buffer is ours (raft frees it only on failure). */
    raft_free(buf->base);
    buf->base = NULL;
    r->applied = index;
    /* Snapshots are paced by the restored one's size from here on, as by
     * a taken one's, once the entries applied since give their mean size;
     * at the configured minimum, a restart of a large state would
     * serialise all of it again a few thousand entries into the replay. */
    r->snap_base = img_len;
    r->entry_bytes = r->entry_count = 0;
    r->threshold_open = 1;
    r->snap_backoff = 0;
    TS_INFO("event=repl_restore dir=%s index=%llu", r->dir, (unsigned long long)index);
    if (r->hooks.on_restore)
        r->hooks.on_restore(r->hooks.arg, index);
    return 0;
}

/* ---- transport ------------------------------------------------------ */

/* The one place that picks raft's transport: mutual TLS when the node has
 * a certificate, else libraft's stock TCP (one-node tests only). */
static int repl_transport_init(struct ts_repl *r, const struct ts_repl_config *cfg)
{
    if (cfg->cert_file) {
        struct ts_raft_tls_config tcfg = {cfg->cert_file, cfg->key_file, cfg->ca_file, 0};
        int rc = ts_raft_tls_init(&r->transport, r->loop, &tcfg);
        if (rc != TS_OK) {
            TS_ERROR("event=repl_transport_failed err=%s", ts_err_name(rc));
            return rc;
        }
        r->tls = 1;
        return TS_OK;
    }
    int rv = raft_uv_tcp_init(&r->transport, r->loop);
    if (rv != 0) {
        TS_ERROR("event=repl_transport_failed err=%s", raft_strerror(rv));
        return ts__repl_err(rv);
    }
    TS_WARN("event=repl_plain_transport msg=\"raft traffic is not authenticated\"");
    return TS_OK;
}

void ts__repl_transport_close(struct ts_repl *r)
{
    if (r->tls)
        ts_raft_tls_close(&r->transport);
    else
        raft_uv_tcp_close(&r->transport);
}

/* ---- close ---------------------------------------------------------- */

void ts__repl_free(struct ts_repl *r)
{
    if (r->lock_fd >= 0)
        close(r->lock_fd); /* releases the flock */
    free(r->scratch);
    free(r->dir);
    free(r->address);
    free(r->client_address);
    free(r);
}

static void on_watch(uv_timer_t *h);

static void on_defer_closed(uv_handle_t *h)
{
    struct ts_repl *r = h->data;
    if (--r->handles_open > 0)
        return;
    void (*cb)(void *) = r->close_cb;
    void *arg = r->close_arg;
    ts__repl_free(r);
    if (cb)
        cb(arg);
}

static void fail_pending(struct ts_repl *r)
{
    while (r->head) {
        struct repl_prop *p = r->head;
        pending_remove(r, p);
        if (p->cb)
            p->cb(p->arg, TS_E_UNAVAILABLE, NULL);
        free(p);
    }
}

static void repl_finish(struct ts_repl *r)
{
    fail_pending(r);
    if (r->mop)
        ts__repl_mop_finish(r, TS_E_UNAVAILABLE);
    uv_close((uv_handle_t *)&r->defer, on_defer_closed);
    uv_close((uv_handle_t *)&r->kick, on_defer_closed);
    uv_close((uv_handle_t *)&r->watch, on_defer_closed);
}

/* libraft 0.15 can fire raft's close callback a second time (canonical/raft
 * #341): the open segment's writer finishes closing its poll and check
 * handles after uv's close callback already ran, and calls it again. So the
 * first call must leave raft's fields safe to free twice, and raft's I/O
 * memory must stay until those handles are gone. */
static void on_raft_closed(struct raft *raft)
{
    struct ts_repl *r = raft->data;
    TS_ASSERT(r->raft_stopping); /* raft closes only when we close it */
    if (r->raft_closed)
        return; /* the spurious second call */
    r->raft_closed = 1;
    /* ioCloseCb freed these; a second ioCloseCb frees them again. */
    raft->address = NULL;
    raft->log.entries = NULL;
    raft->log.refs = NULL;
    raft->log.size = raft->log.front = raft->log.back = 0;
    raft->configuration.servers = NULL;
    raft->configuration.n = 0;
    TS_INFO("event=repl_stopped dir=%s applied=%llu", r->dir, (unsigned long long)r->applied);
    /* raft fails its own requests while closing; whatever is left never
     * reached it or was dropped, and still gets its one callback. */
    fail_pending(r);
    if (r->mop)
        r->mop->raft_pending = 0; /* raft will not call it back now */
    schedule_defer(r);
}

static void find_closing_writer(uv_handle_t *h, void *arg)
{
    if ((h->type == UV_POLL || h->type == UV_CHECK) && uv_is_closing(h))
        *(int *)arg = 1;
}

/* The handles of raft's segment writer are a poll and a check handle; other
 * modules' closing handles of those types only make us wait a tick more. */
static int writer_closing(uv_loop_t *loop)
{
    int found = 0;
    uv_walk(loop, find_closing_writer, &found);
    return found;
}

/* Every step of stopping runs here, from the loop, never from a raft
 * callback: raft_close, releasing raft's I/O, finishing a close. */
static void on_defer(uv_timer_t *h)
{
    struct ts_repl *r = h->data;
    if (r->transferring) {
        /* the transfer's bound ran out (its callback stops the wait sooner) */
        r->transferring = 0;
        TS_WARN("event=repl_transfer_timeout dir=%s", r->dir);
    }
    if (!r->raft_stopping) {
        if (r->raft.last_stored < raft_last_index(&r->raft)) {
            /* A disk write is in flight; it ends in milliseconds (or never,
             * and then closing could not finish anyway; a failed write
             * truncates raft's log, which also ends the wait). */
            if (++r->store_waits == 5000)
                TS_WARN("event=repl_close_waiting dir=%s msg=\"log write still in flight\"",
                        r->dir);
            uv_timer_start(&r->defer, on_defer, 1, 0);
            return;
        }
        TS_ASSERT(r->lock_fd >= 0 && !r->raft_closed); /* raft closes once, with LOCK held */
        /* raft_close waits for the thread pool's read of a snapshot child,
         * which would serialise the whole state first. */
        if (r->snap)
            snap_kill(r->snap);
        r->raft_stopping = 1;
        raft_close(&r->raft, on_raft_closed);
        return;
    }
    if (!r->raft_closed)
        return; /* on_raft_closed schedules us again */
    if (!r->io_released) {
        if (writer_closing(r->loop)) {
            uv_timer_start(&r->defer, on_defer, 1, 0);
            return;
        }
        raft_uv_close(&r->io);
        ts__repl_transport_close(r);
        r->io_released = 1;
    }
    if (r->closing)
        repl_finish(r);
}

static void on_transfer(struct raft_transfer *req)
{
    struct ts_repl *r = req->data;
    if (!r->transferring)
        return; /* the bound ran out first */
    r->transferring = 0;
    raft_id id = 0;
    const char *addr = NULL;
    raft_leader(&r->raft, &id, &addr);
    TS_INFO("event=repl_transfer_done dir=%s leader=%llu", r->dir, (unsigned long long)id);
    schedule_defer(r);
}

static int has_other_voter(struct ts_repl *r)
{
    for (unsigned i = 0; i < r->raft.configuration.n; i++) {
        const struct raft_server *s = &r->raft.configuration.servers[i];
        if (s->id != r->raft.id && s->role == RAFT_VOTER)
            return 1;
    }
    return 0;
}

void ts_repl_close(struct ts_repl *r, void (*cb)(void *arg), void *arg)
{
    if (r->closing)
        return;
    r->closing = 1;
    r->close_cb = cb;
    r->close_arg = arg;
    /* A leader that just stops leaves the cluster without one for an
     * election timeout; handing over first keeps writes going. */
    if (!r->raft_stopping && !r->failed && raft_state(&r->raft) == RAFT_LEADER &&
        has_other_voter(r)) {
        r->transfer.data = r;
        int rv = raft_transfer(&r->raft, &r->transfer, 0, on_transfer);
        if (rv == 0) {
            r->transferring = 1;
            TS_INFO("event=repl_transfer dir=%s", r->dir);
            uv_timer_start(&r->defer, on_defer, r->transfer_ms, 0);
            return;
        }
        TS_WARN("event=repl_transfer_failed dir=%s err=%s", r->dir, raft_strerror(rv));
    }
    /* Even when raft is already closed, finish from the loop so cb is never
     * called from inside ts_repl_close. */
    schedule_defer(r);
}

/* ---- AppendEntries answers -------------------------------------------- */

void ts__repl_ae_note(struct repl_ae_seen *seen, const struct raft_message *m)
{
    if (m->type != RAFT_IO_APPEND_ENTRIES)
        return;
    seen->from = m->server_id;
    seen->term = m->append_entries.term;
    seen->checked = m->append_entries.prev_log_index + m->append_entries.n_entries;
}

raft_index ts__repl_ae_claim(const struct repl_ae_seen *seen, const struct raft_message *m)
{
    const struct raft_append_entries_result *res = &m->append_entries_result;
    if (m->type != RAFT_IO_APPEND_ENTRIES_RESULT || res->rejected || !seen->from ||
        m->server_id != seen->from || res->term != seen->term)
        return res->last_log_index;
    return res->last_log_index < seen->checked ? res->last_log_index : seen->checked;
}

static struct ts_repl *repl_of_io(struct raft_io *io)
{
    return (struct ts_repl *)(void *)((char *)io - offsetof(struct ts_repl, io));
}

static void repl_io_recv(struct raft_io *io, struct raft_message *m)
{
    struct ts_repl *r = repl_of_io(io);
    ts__repl_ae_note(&r->ae_seen, m);
    r->raft_recv(io, m);
}

static int repl_io_start(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick,
                         raft_io_recv_cb recv)
{
    struct ts_repl *r = repl_of_io(io);
    r->raft_recv = recv;
    return r->uv_start(io, msecs, tick, repl_io_recv);
}

/* raft_uv encodes the message during the call, so a changed copy on the
 * stack is enough. */
static int repl_io_send(struct raft_io *io, struct raft_io_send *req, const struct raft_message *m,
                        raft_io_send_cb cb)
{
    struct ts_repl *r = repl_of_io(io);
    raft_index claim = ts__repl_ae_claim(&r->ae_seen, m);
    if (m->type != RAFT_IO_APPEND_ENTRIES_RESULT ||
        claim == m->append_entries_result.last_log_index)
        return r->uv_send(io, req, m, cb);
    struct raft_message copy = *m;
    copy.append_entries_result.last_log_index = claim;
    return r->uv_send(io, req, &copy, cb);
}

/* ---- the leader, as far as this node knows --------------------------- */

/* This node's role in the configuration it knows, RAFT_* or -1 when it is
 * not in it (a node still joining). */
static int own_role(const struct ts_repl *r)
{
    for (unsigned i = 0; i < r->raft.configuration.n; i++)
        if (r->raft.configuration.servers[i].id == r->raft.id)
            return r->raft.configuration.servers[i].role;
    return -1;
}

/* raft_leader(), except that a non-voter forgets a leader it has not heard
 * from for an election timeout. libraft 0.15 clears the leader only when a
 * follower turns candidate, which a standby or spare never does: after the
 * leader dies, a read replica would name it forever, serve its state as
 * fresh (the staleness bound below never started) and send writers to it.
 * A standby hears from the leader every heartbeat (AppendEntries resets
 * election_timer_start, on raft's clock, which is the loop's uv_now). */
static void repl_leader(const struct ts_repl *r, raft_id *id, const char **addr)
{
    *id = 0;
    *addr = NULL;
    if (r->raft_stopping)
        return;
    /* raft's accessors take a non-const pointer but only read. */
    struct raft *raft = (struct raft *)&r->raft;
    raft_leader(raft, id, addr);
    if (*id && raft_state(raft) == RAFT_FOLLOWER && own_role(r) != RAFT_VOTER &&
        uv_now(r->loop) - raft->election_timer_start > raft->election_timeout) {
        *id = 0;
        *addr = NULL;
    }
}

int ts_repl_role(const struct ts_repl *r)
{
    switch (own_role(r)) {
    case RAFT_VOTER:
        return TS_REPL_VOTER;
    case RAFT_STANDBY:
        return TS_REPL_STANDBY;
    case RAFT_SPARE:
        return TS_REPL_SPARE;
    default:
        return 0;
    }
}

/* ---- staleness -------------------------------------------------------- */

/* Notes what raft knows now: a leader (remembered with the time), or that
 * this node left the configuration. */
static void watch_sample(struct ts_repl *r)
{
    if (r->raft_stopping)
        return;
    raft_id id;
    const char *addr;
    repl_leader(r, &id, &addr);
    int member = ts_repl_is_member(r);
    if (member)
        r->was_member = 1;
    if (r->was_member && !member && !r->removed)
        ts_repl_set_removed(r);
    if (id && !r->removed) {
        r->leader_seen_ms = uv_now(r->loop);
        if (id != r->last_leader_id) {
            r->last_leader_id = id;
            const char *client = ts_repl_leader_client_address(r);
            snprintf(r->last_leader, sizeof(r->last_leader), "%s", client);
        }
    }
    int stale = r->removed || uv_now(r->loop) - r->leader_seen_ms > r->stale_after_ms;
    if (stale != r->stale) {
        r->stale = stale;
        if (stale)
            TS_WARN("event=stale node=%llu no_leader_ms=%llu last_leader=%s msg=\"reads and "
                    "subscriptions refused until a leader is heard from\"",
                    (unsigned long long)r->raft.id,
                    (unsigned long long)(uv_now(r->loop) - r->leader_seen_ms),
                    r->last_leader[0] ? r->last_leader : "none");
        else
            TS_INFO("event=fresh node=%llu leader=%s", (unsigned long long)r->raft.id,
                    r->last_leader);
    }
}

void ts_repl_set_removed(struct ts_repl *r)
{
    if (r->removed)
        return;
    r->removed = 1;
    TS_ERROR("event=removed_from_cluster node=%llu msg=\"this node is no longer in the "
             "cluster's configuration; it refuses clients. Wipe its data directory to "
             "join it again\"",
             (unsigned long long)r->raft.id);
}

static void on_watch(uv_timer_t *h)
{
    watch_sample(h->data);
}

int ts_repl_stale(struct ts_repl *r, char *why, size_t n)
{
    if (r->failed) {
        /* Its state stays where the error stopped it: serving it would be
         * serving a state the cluster has left behind, with no end. */
        snprintf(why, n, "this node stopped applying the log after an error (see its log)");
        return 2;
    }
    watch_sample(r);
    if (!r->stale)
        return 0;
    if (r->removed)
        snprintf(why, n, "this node was removed from the cluster");
    else
        snprintf(why, n, "no leader heard from for %llu ms (bound %llu ms); last leader: %s",
                 (unsigned long long)(uv_now(r->loop) - r->leader_seen_ms),
                 (unsigned long long)r->stale_after_ms,
                 r->last_leader[0] ? r->last_leader : "none");
    return r->removed ? 2 : 1;
}

const char *ts_repl_last_leader(const struct ts_repl *r)
{
    return r->last_leader;
}

/* ---- start ---------------------------------------------------------- */

static int repl_lock(struct ts_repl *r)
{
    if (mkdir(r->dir, 0700) != 0 && errno != EEXIST) {
        TS_ERROR("event=repl_mkdir_failed dir=%s err=%s", r->dir, strerror(errno));
        return TS_E_IO;
    }
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/LOCK", r->dir) >= (int)sizeof(path))
        return TS_E_CONFIG;
    r->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (r->lock_fd < 0) {
        TS_ERROR("event=repl_lock_failed dir=%s err=%s", r->dir, strerror(errno));
        return TS_E_IO;
    }
    if (flock(r->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(r->lock_fd);
        r->lock_fd = -1;
        if (e == EWOULDBLOCK) {
            TS_ERROR("event=repl_dir_busy dir=%s msg=\"data directory locked by another "
                     "process\"",
                     r->dir);
            return TS_E_BUSY;
        }
        TS_ERROR("event=repl_lock_failed dir=%s err=%s", r->dir, strerror(e));
        return TS_E_IO;
    }
    return TS_OK;
}

/* The address this node has in raft's configuration: "raft,client" on our
 * TLS transport (peers learn the client address from it), the raft address
 * alone on libraft's stock transport (which parses it itself). malloc'd;
 * NULL when out of memory. ts_repl_start and ts_repl_seed_snapshot must
 * agree on it (both take it from ts__repl_open): a node that does not find
 * itself in the configuration never votes. */
static char *repl_address(const struct ts_repl_config *cfg)
{
    const char *client = cfg->client_address ? cfg->client_address : "";
    size_t alen = strlen(cfg->raft_address) + strlen(client) + 2;
    char *a = malloc(alen);
    if (!a)
        return NULL;
    if (*client && cfg->cert_file)
        snprintf(a, alen, "%s,%s", cfg->raft_address, client);
    else
        snprintf(a, alen, "%s", cfg->raft_address);
    return a;
}

/* Non-zero (logged) when address is not one repl_address may produce. */
static int repl_address_bad(const struct ts_repl_config *cfg, const char *address)
{
    if (strchr(cfg->raft_address, ',') ||
        (cfg->cert_file && ts_raft_tls_split_address(address, NULL, 0, NULL, 0) != TS_OK) ||
        strlen(address) > TS_RAFT_TLS_ADDR_MAX) {
        TS_ERROR("event=repl_bad_config msg=\"bad raft or client address\" addr=%s", address);
        return 1;
    }
    return 0;
}

int ts__repl_open(const struct ts_repl_config *cfg, struct ts_repl **out)
{
    *out = NULL;
    if (!cfg->data_dir || !*cfg->data_dir || !cfg->raft_address || !*cfg->raft_address ||
        cfg->node_id == 0)
        return TS_E_CONFIG;
    struct ts_repl *r = calloc(1, sizeof(*r));
    if (!r)
        return TS_E_NOMEM;
    r->lock_fd = -1;
    r->dir = strdup(cfg->data_dir);
    r->address = repl_address(cfg);
    if (!r->dir || !r->address) {
        ts__repl_free(r);
        return TS_E_NOMEM;
    }
    if (repl_address_bad(cfg, r->address)) {
        ts__repl_free(r);
        return TS_E_CONFIG;
    }
    int rc = repl_lock(r);
    if (rc != TS_OK) {
        ts__repl_free(r);
        return rc;
    }
    *out = r;
    return TS_OK;
}

int ts_repl_start(uv_loop_t *loop, const struct ts_repl_config *cfg, const struct ts_repl_fsm *fsm,
                  const struct ts_repl_hooks *hooks, struct ts_repl **out)
{
    *out = NULL;
    if (!fsm->apply || !fsm->snapshot || !fsm->restore)
        return TS_E_CONFIG;
    if (ts_repl_aio_install() != TS_OK)
        TS_WARN("event=repl_aio_sync msg=\"io_destroy stays on the loop: each closed log "
                "segment pauses it\"");
    if (ts_repl_heap_install() != TS_OK)
        TS_WARN("event=repl_heap_unavailable msg=\"entry buffers come from malloc: a snapshot "
                "child shares them\"");
    unsigned election =
        cfg->election_timeout_ms ? cfg->election_timeout_ms : REPL_DEFAULT_ELECTION_MS;
    unsigned heartbeat = cfg->heartbeat_ms ? cfg->heartbeat_ms : REPL_DEFAULT_HEARTBEAT_MS;
    if (heartbeat >= election) {
        /* raft_start asserts on this; say it as a config error instead. */
        TS_ERROR("event=repl_bad_config msg=\"heartbeat must be below election timeout\" "
                 "heartbeat_ms=%u election_timeout_ms=%u",
                 heartbeat, election);
        return TS_E_CONFIG;
    }

    struct ts_repl *r;
    int rc = ts__repl_open(cfg, &r);
    if (rc != TS_OK)
        return rc;
    r->loop = loop;
    r->fsm = *fsm;
    if (hooks)
        r->hooks = *hooks;
    r->max_inflight = cfg->max_inflight ? cfg->max_inflight : REPL_DEFAULT_MAX_INFLIGHT;
    r->transfer_ms = cfg->transfer_ms ? cfg->transfer_ms : REPL_DEFAULT_TRANSFER_MS;
    r->client_address = strdup(cfg->client_address ? cfg->client_address : "");
    r->scratch = calloc(1, fsm->result_size ? fsm->result_size : 1);
    if (!r->scratch || !r->client_address) {
        ts__repl_free(r);
        return TS_E_NOMEM;
    }

    rc = repl_transport_init(r, cfg);
    if (rc != TS_OK) {
        ts__repl_free(r);
        return rc;
    }
    int rv = raft_uv_init(&r->io, loop, r->dir, &r->transport);
    if (rv != 0) {
        TS_ERROR("event=repl_io_init_failed dir=%s err=%s msg=\"%s\"", r->dir, raft_strerror(rv),
                 r->io.errmsg);
        ts__repl_transport_close(r);
        ts__repl_free(r);
        return ts__repl_err(rv);
    }
    /* raft_uv fills async_work (which fsm version 3 needs) but says
     * version 1, which raft_init then refuses; libraft 0.18 says 2. */
    if (r->io.version < 2)
        r->io.version = 2;
    r->uv_send = r->io.send;
    r->io.send = repl_io_send;
    r->uv_start = r->io.start;
    r->io.start = repl_io_start;
    /* Off: on a damaged segment libraft would rename it aside and carry on
     * without acknowledged entries. We would rather not start. */
    raft_uv_set_auto_recovery(&r->io, false);
    /* Off: the image is packed already (ts_repl_snapimg.c). */
    (void)raft_uv_set_snapshot_compression(&r->io, ts__repl_snap_legacy != 0);
    /* A restarted peer is found again within a quarter second (default 1 s). */
    raft_uv_set_connect_retry_delay(&r->io, REPL_CONNECT_RETRY_MS);

    r->rfsm.version = 3;
    r->rfsm.data = r;
    r->rfsm.apply = fsm_apply;
    r->rfsm.snapshot = fsm_snapshot;
    r->rfsm.restore = fsm_restore;
    r->rfsm.snapshot_finalize = fsm_snapshot_finalize;
    r->rfsm.snapshot_async = fsm_snapshot_async;

    rv = raft_init(&r->raft, &r->io, &r->rfsm, cfg->node_id, r->address);
    if (rv != 0) {
        TS_ERROR("event=repl_init_failed dir=%s err=%s msg=\"%s\"", r->dir, raft_strerror(rv),
                 raft_errmsg(&r->raft));
        raft_uv_close(&r->io);
        ts__repl_transport_close(r);
        ts__repl_free(r);
        return ts__repl_err(rv);
    }
    r->raft.data = r;
    raft_set_election_timeout(&r->raft, election);
    raft_set_heartbeat_timeout(&r->raft, heartbeat);
    r->min_threshold =
        cfg->snapshot_threshold ? cfg->snapshot_threshold : REPL_DEFAULT_SNAPSHOT_THRESHOLD;
    r->trailing = cfg->snapshot_trailing ? cfg->snapshot_trailing : REPL_DEFAULT_SNAPSHOT_TRAILING;
    raft_set_snapshot_threshold(&r->raft, r->min_threshold);
    raft_set_snapshot_trailing(&r->raft, r->trailing);
    /* Until the first snapshot, each apply sizes the threshold by the mean
     * entry (batched entries are large); a restored snapshot does the same. */
    r->threshold_open = 1;
    raft_set_pre_vote(&r->raft, true);

    uv_timer_init(loop, &r->defer);
    r->defer.data = r;
    uv_timer_init(loop, &r->kick);
    r->kick.data = r;
    uv_timer_init(loop, &r->watch);
    r->watch.data = r;
    r->handles_open = 3;
    r->stale_after_ms = (uint64_t)REPL_STALE_ELECTIONS * election;
    r->leader_seen_ms = uv_now(loop);
    uv_timer_start(&r->watch, on_watch, heartbeat, heartbeat);

    /* A joining node starts empty and waits for the leader's entries;
     * raft_bootstrap would make it a cluster of its own. */
    rc = cfg->join ? TS_OK : ts__repl_bootstrap(r, cfg->node_id);
    if (rc == TS_OK) {
        rv = raft_start(&r->raft);
        if (rv != 0) {
            TS_ERROR("event=repl_start_failed dir=%s err=%s msg=\"%s\"", r->dir, raft_strerror(rv),
                     raft_errmsg(&r->raft));
            rc = ts__repl_err(rv);
        }
    }
    if (rc != TS_OK) {
        /* raft must be closed through the loop; the lock goes now so a
         * corrected retry is not refused. */
        close(r->lock_fd);
        r->lock_fd = -1;
        r->closing = 1; /* no close_cb: nobody holds r */
        r->raft_stopping = 1;
        raft_close(&r->raft, on_raft_closed);
        return rc;
    }
    TS_INFO("event=repl_started dir=%s node_id=%llu addr=%s applied=%llu", r->dir,
            (unsigned long long)cfg->node_id, r->address, (unsigned long long)r->applied);
    *out = r;
    return TS_OK;
}

/* ---- propose -------------------------------------------------------- */

static void on_applied(struct raft_apply *req, int status, void *result)
{
    struct repl_prop *p = req->data;
    struct ts_repl *r = p->r;
    pending_remove(r, p);
    int st = status == 0 ? TS_OK : ts__repl_err(status);
    if (st != TS_OK && st != TS_E_NOT_LEADER)
        st = TS_E_UNAVAILABLE;
    p->cb(p->arg, st, st == TS_OK ? result : NULL);
    free(p);
}

int ts_repl_propose(struct ts_repl *r, const uint8_t *payload, size_t len, ts_repl_cb cb, void *arg)
{
    if (r->closing || r->failed || r->raft_stopping)
        return TS_E_UNAVAILABLE;
    if (raft_state(&r->raft) != RAFT_LEADER)
        return TS_E_NOT_LEADER;
    if (r->inflight >= r->max_inflight)
        return TS_E_UNAVAILABLE;
    if (len > UINT32_MAX - REPL_FRAME_HDR - 8)
        return TS_E_TOO_LARGE;

    size_t framed = (REPL_FRAME_HDR + len + 7) & ~(size_t)7;
    struct repl_prop *p = calloc(1, sizeof(*p) + (r->fsm.result_size ? r->fsm.result_size : 1));
    /* Fork-private: the snapshot child never reads the log (ts_repl_heap.h). */
    uint8_t *buf = ts_repl_heap_alloc(framed);
    if (!p || !buf) {
        free(p);
        raft_free(buf);
        return TS_E_NOMEM;
    }
    ts_store_le32(buf, (uint32_t)len);
    if (len)
        memcpy(buf + REPL_FRAME_HDR, payload, len);
    memset(buf + REPL_FRAME_HDR + len, 0, framed - REPL_FRAME_HDR - len);
    p->r = r;
    p->cb = cb;
    p->arg = arg;
    p->req.data = p;
    /* Linked before raft_apply numbers it (req.index stays 0 until then):
     * indexes only grow, so the list stays in index order. */
    p->prev = r->tail;
    if (r->tail)
        r->tail->next = p;
    else
        r->head = p;
    r->tail = p;
    r->inflight++;

    struct raft_buffer rb = {.base = buf, .len = framed};
    int rv = raft_apply(&r->raft, &p->req, &rb, 1, on_applied);
    if (rv != 0) {
        /* Who owns buf now depends on where libraft 0.15's raft_apply
         * failed, whatever raft.h says: NOTLEADER comes before the entry is
         * appended (buf is still ours); a failure to start the disk append
         * (replicationTrigger: IOERR, NOSPACE, ...) goes through
         * logDiscard, which has already freed buf, and freeing it here was
         * the double free of a full disk (issue 12, section 5). NOMEM can be
         * either: buf is left to leak rather than risk a second free. In
         * every case the callback is not called, so p is ours. */
        pending_remove(r, p);
        if (rv == RAFT_NOTLEADER)
            raft_free(buf);
        free(p);
        TS_WARN("event=propose_failed error=\"%s\" raft=\"%s\"", raft_strerror(rv),
                raft_errmsg(&r->raft));
        return ts__repl_err(rv);
    }
    return TS_OK;
}

/* ---- queries -------------------------------------------------------- */

int ts_repl_is_leader(const struct ts_repl *r)
{
    if (r->failed || r->raft_stopping)
        return 0;
    /* raft's accessors take a non-const pointer but only read. */
    return raft_state((struct raft *)&r->raft) == RAFT_LEADER;
}

const char *ts_repl_leader_address(const struct ts_repl *r)
{
    raft_id id;
    const char *addr;
    repl_leader(r, &id, &addr);
    return addr ? addr : "";
}

uint64_t ts_repl_last_applied(const struct ts_repl *r)
{
    return r->applied;
}

const char *ts_repl_leader_client_address(struct ts_repl *r)
{
    raft_id id;
    const char *addr;
    repl_leader(r, &id, &addr);
    if (!addr || !id)
        return "";
    if (id == r->raft.id)
        return r->client_address;
    if (ts_raft_tls_split_address(addr, NULL, 0, r->leader_client, sizeof(r->leader_client)) !=
        TS_OK)
        return "";
    return r->leader_client;
}

uint64_t ts_repl_leader_id(const struct ts_repl *r)
{
    raft_id id;
    const char *addr;
    repl_leader(r, &id, &addr);
    return id;
}

void ts_repl_get_status(const struct ts_repl *r, struct ts_repl_status *out)
{
    memset(out, 0, sizeof(*out));
    if (r->raft_stopping)
        return;
    /* raft's accessors take a non-const pointer but only read. */
    struct raft *raft = (struct raft *)&r->raft;
    raft_id id;
    const char *addr;
    repl_leader(r, &id, &addr);
    out->term = raft->current_term;
    out->commit_index = raft->commit_index;
    out->applied_index = raft->last_applied;
    out->last_index = raft_last_index(raft);
    out->leader_id = id;
    out->is_leader = ts_repl_is_leader(r);
    out->snapshots = r->snapshots;
    out->snapshot_bytes = r->snapshot_bytes;
    out->snapshot_index = r->snapshot_index;
    out->snapshot_running = r->snap != NULL;
}
