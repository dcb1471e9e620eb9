/*
 * ts_repl: glue between canonical raft 0.15 (libuv backend) and a state
 * machine given as struct ts_repl_fsm.
 *
 * Invariants:
 *   - Every COMMAND entry's payload is [u32 LE length][payload][zeros up to a
 *     multiple of 8]. libraft 0.15 loses unpadded entries on restart, so the
 *     padding is not optional; apply unframes and rejects (fatally) an entry
 *     whose length does not fit.
 *   - A snapshot is [u64 LE magic][u64 LE last index][fsm bytes]: raft's fsm
 *     restore() does not say which index the snapshot stands for, the state
 *     machine needs it (event seqs are raft indexes), so we carry it.
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
 *     start: until ts_repl_start returns, raft writes nothing then).
 *
 * Load: one proposal per client write, up to max_inflight queued; raft's
 * libuv backend coalesces appends that queue up while a write is in flight.
 *
 * Snapshot cadence: a snapshot serialises the whole state on the loop, so
 * with a fixed threshold its cost per entry grows with the state (at a
 * million comments, 8192 entries paid for a 300 MB serialisation: ingest
 * fell to a third). The configured threshold is a minimum: after each
 * snapshot the next one waits until the entries since then add up to
 * SNAP_LOG_SHARE of the snapshot's size, so a snapshot costs a bounded
 * multiple of the bytes logged, and a restart replays at most that share of
 * the state's size from the log (which raft also keeps in memory).
 */
#include "ts_repl.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <raft.h>
#include <raft/uv.h>

#include "ts_err.h"
#include "ts_log.h"

#define REPL_DEFAULT_ELECTION_MS 1000
#define REPL_DEFAULT_HEARTBEAT_MS 100
#define REPL_DEFAULT_SNAPSHOT_THRESHOLD 8192
#define REPL_DEFAULT_SNAPSHOT_TRAILING 2048
#define REPL_DEFAULT_MAX_INFLIGHT 4096

/* Log bytes between snapshots, as a fraction of the last snapshot: 1/8. */
#define SNAP_LOG_SHARE_DIV 8

#define REPL_FRAME_HDR 4
#define REPL_SNAP_MAGIC 0x31504e5374727374ULL /* bytes "tsrtSNP1" */
#define REPL_SNAP_HDR 16

struct repl_prop {
    struct raft_apply req; /* req.index is set by raft_apply */
    struct ts_repl *r;
    ts_repl_cb cb;
    void *arg;
    struct repl_prop *prev, *next;
    unsigned char result[]; /* fsm->result_size bytes */
};

struct ts_repl {
    uv_loop_t *loop;
    struct raft raft;
    struct raft_io io;
    struct raft_uv_transport transport;
    struct raft_fsm rfsm;
    struct ts_repl_fsm fsm;
    struct ts_repl_hooks hooks;
    char *dir;
    char *address;
    int lock_fd;

    struct repl_prop *head, *tail; /* pending proposals, ascending index */
    unsigned inflight;
    unsigned max_inflight;
    unsigned char *scratch; /* result buffer for entries nobody here proposed */
    uint64_t applied;
    unsigned min_threshold; /* the configured snapshot threshold */
    uint64_t entry_bytes;   /* payload bytes applied, and entries, since */
    uint64_t entry_count;   /* the last snapshot: their mean sizes the next */

    uv_timer_t defer;
    unsigned store_waits; /* 1 ms polls of on_defer waiting for the disk */
    int failed;           /* fsm error or corrupt entry: raft is being stopped */
    int raft_stopping;    /* raft_close() called */
    int raft_closed;      /* raft's close callback ran */
    int io_released;      /* raft_uv_close and the transport's close done */
    int closing;          /* ts_repl_close() called */
    void (*close_cb)(void *arg);
    void *close_arg;
};

static int repl_err(int rv)
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

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void pending_remove(struct ts_repl *r, struct repl_prop *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        r->head = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else
        r->tail = p->prev;
    p->prev = p->next = NULL;
    r->inflight--;
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

static int fsm_apply(struct raft_fsm *rfsm, const struct raft_buffer *buf, void **result)
{
    struct ts_repl *r = rfsm->data;
    /* libraft 0.15 advances last_applied after each entry of its apply loop
     * (commands, barriers and configuration changes alike), so the entry being
     * applied is the next one. */
    uint64_t index = (uint64_t)r->raft.last_applied + 1;
    if (r->failed)
        return RAFT_IOERR;
    const uint8_t *b = buf->base;
    uint32_t len = buf->len >= REPL_FRAME_HDR ? get_le32(b) : 0;
    if (buf->len < REPL_FRAME_HDR || len > buf->len - REPL_FRAME_HDR) {
        TS_ERROR("event=repl_bad_entry dir=%s index=%llu entry_len=%zu", r->dir,
                 (unsigned long long)index, buf->len);
        repl_fail(r);
        return RAFT_CORRUPT;
    }
    void *res = r->scratch;
    for (struct repl_prop *p = r->head; p && p->req.index <= index; p = p->next) {
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
    *result = res;
    if (r->hooks.on_applied)
        r->hooks.on_applied(r->hooks.arg, index);
    return 0;
}

static int fsm_snapshot(struct raft_fsm *rfsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    struct ts_repl *r = rfsm->data;
    /* raft takes the snapshot at last_applied, right after this returns. */
    uint64_t index = (uint64_t)r->raft.last_applied;
    uint8_t *data = NULL;
    size_t len = 0;
    if (r->failed)
        return RAFT_IOERR;
    int rc = r->fsm.snapshot(r->fsm.arg, &data, &len);
    if (rc != 0) {
        TS_ERROR("event=repl_snapshot_failed dir=%s index=%llu err=%d", r->dir,
                 (unsigned long long)index, rc);
        repl_fail(r);
        return RAFT_NOMEM;
    }
    struct raft_buffer *v = raft_calloc(2, sizeof(*v));
    uint8_t *hdr = raft_malloc(REPL_SNAP_HDR);
    if (!v || !hdr) {
        raft_free(v);
        raft_free(hdr);
        free(data);
        repl_fail(r);
        return RAFT_NOMEM;
    }
    put_le64(hdr, REPL_SNAP_MAGIC);
    put_le64(hdr + 8, index);
    /* The next snapshot after len / SNAP_LOG_SHARE_DIV bytes of entries of
     * the mean size seen since this one (see the file comment). */
    uint64_t mean = r->entry_count ? r->entry_bytes / r->entry_count : 0;
    uint64_t next = mean ? len / SNAP_LOG_SHARE_DIV / mean : 0;
    if (next < r->min_threshold)
        next = r->min_threshold;
    if (next > UINT32_MAX / 2)
        next = UINT32_MAX / 2;
    raft_set_snapshot_threshold(&r->raft, (unsigned)next);
    r->entry_bytes = r->entry_count = 0;
    v[0].base = hdr;
    v[0].len = REPL_SNAP_HDR;
    v[1].base = data;
    v[1].len = len;
    *bufs = v;
    *n_bufs = 2;
    TS_INFO("event=repl_snapshot dir=%s index=%llu bytes=%zu", r->dir, (unsigned long long)index,
            len);
    return 0;
}

/* fsm version 2: raft hands the buffers back once the snapshot is on disk
 * (or failed), so the fsm's malloc'd bytes are freed with free(), not
 * raft_free(). */
static int fsm_snapshot_finalize(struct raft_fsm *rfsm, struct raft_buffer *bufs[],
                                 unsigned *n_bufs)
{
    struct raft_buffer *v = *bufs;
    if (v) {
        raft_free(v[0].base);
        if (*n_bufs > 1)
            free(v[1].base);
        raft_free(v);
    }
    *bufs = NULL;
    *n_bufs = 0;
    return 0;
}

static int fsm_restore(struct raft_fsm *rfsm, struct raft_buffer *buf)
{
    struct ts_repl *r = rfsm->data;
    const uint8_t *b = buf->base;
    if (buf->len < REPL_SNAP_HDR || get_le64(b) != REPL_SNAP_MAGIC) {
        TS_ERROR("event=repl_bad_snapshot dir=%s bytes=%zu", r->dir, buf->len);
        repl_fail(r);
        return RAFT_CORRUPT;
    }
    uint64_t index = get_le64(b + 8);
    int rc = r->fsm.restore(r->fsm.arg, index, b + REPL_SNAP_HDR, buf->len - REPL_SNAP_HDR);
    if (rc != 0) {
        TS_ERROR("event=repl_restore_failed dir=%s index=%llu err=%d", r->dir,
                 (unsigned long long)index, rc);
        repl_fail(r);
        return RAFT_CORRUPT;
    }
    /* On success the buffer is ours (raft frees it only on failure). */
    raft_free(buf->base);
    r->applied = index;
    TS_INFO("event=repl_restore dir=%s index=%llu", r->dir, (unsigned long long)index);
    if (r->hooks.on_restore)
        r->hooks.on_restore(r->hooks.arg, index);
    return 0;
}

/* ---- transport ------------------------------------------------------ */

/* The one place that picks raft's transport (plain TCP for now; an mTLS
 * transport replaces it here). */
static int repl_transport_init(struct ts_repl *r)
{
    int rv = raft_uv_tcp_init(&r->transport, r->loop);
    if (rv != 0) {
        TS_ERROR("event=repl_transport_failed err=%s", raft_strerror(rv));
        return repl_err(rv);
    }
    return TS_OK;
}

static void repl_transport_close(struct ts_repl *r)
{
    raft_uv_tcp_close(&r->transport);
}

/* ---- close ---------------------------------------------------------- */

static void repl_free(struct ts_repl *r)
{
    if (r->lock_fd >= 0)
        close(r->lock_fd); /* releases the flock */
    free(r->scratch);
    free(r->dir);
    free(r->address);
    free(r);
}

static void on_defer_closed(uv_handle_t *h)
{
    struct ts_repl *r = h->data;
    void (*cb)(void *) = r->close_cb;
    void *arg = r->close_arg;
    repl_free(r);
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
    uv_close((uv_handle_t *)&r->defer, on_defer_closed);
}

/* libraft 0.15 can fire raft's close callback a second time (canonical/raft
 * #341): the open segment's writer finishes closing its poll and check
 * handles after uv's close callback already ran, and calls it again. So the
 * first call must leave raft's fields safe to free twice, and raft's I/O
 * memory must stay until those handles are gone. */
static void on_raft_closed(struct raft *raft)
{
    struct ts_repl *r = raft->data;
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
        repl_transport_close(r);
        r->io_released = 1;
    }
    if (r->closing)
        repl_finish(r);
}

void ts_repl_close(struct ts_repl *r, void (*cb)(void *arg), void *arg)
{
    if (r->closing)
        return;
    r->closing = 1;
    r->close_cb = cb;
    r->close_arg = arg;
    /* Even when raft is already closed, finish from the loop so cb is never
     * called from inside ts_repl_close. */
    schedule_defer(r);
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

static int repl_bootstrap(struct ts_repl *r, uint64_t node_id)
{
    struct raft_configuration conf;
    raft_configuration_init(&conf);
    int rv = raft_configuration_add(&conf, node_id, r->address, RAFT_VOTER);
    if (rv == 0)
        rv = raft_bootstrap(&r->raft, &conf);
    raft_configuration_close(&conf);
    if (rv == RAFT_CANTBOOTSTRAP)
        return TS_OK; /* not a first start: raft state already on disk */
    if (rv != 0) {
        TS_ERROR("event=repl_bootstrap_failed dir=%s err=%s msg=\"%s\"", r->dir, raft_strerror(rv),
                 raft_errmsg(&r->raft));
        return repl_err(rv);
    }
    TS_INFO("event=repl_bootstrap dir=%s node_id=%llu addr=%s", r->dir, (unsigned long long)node_id,
            r->address);
    return TS_OK;
}

int ts_repl_start(uv_loop_t *loop, const struct ts_repl_config *cfg, const struct ts_repl_fsm *fsm,
                  const struct ts_repl_hooks *hooks, struct ts_repl **out)
{
    *out = NULL;
    if (!cfg->data_dir || !*cfg->data_dir || !cfg->raft_address || !*cfg->raft_address ||
        cfg->node_id == 0 || !fsm->apply || !fsm->snapshot || !fsm->restore)
        return TS_E_CONFIG;
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

    struct ts_repl *r = calloc(1, sizeof(*r));
    if (!r)
        return TS_E_NOMEM;
    r->loop = loop;
    r->lock_fd = -1;
    r->fsm = *fsm;
    if (hooks)
        r->hooks = *hooks;
    r->max_inflight = cfg->max_inflight ? cfg->max_inflight : REPL_DEFAULT_MAX_INFLIGHT;
    r->dir = strdup(cfg->data_dir);
    r->address = strdup(cfg->raft_address);
    r->scratch = calloc(1, fsm->result_size ? fsm->result_size : 1);
    if (!r->dir || !r->address || !r->scratch) {
        repl_free(r);
        return TS_E_NOMEM;
    }

    int rc = repl_lock(r);
    if (rc != TS_OK) {
        repl_free(r);
        return rc;
    }

    rc = repl_transport_init(r);
    if (rc != TS_OK) {
        repl_free(r);
        return rc;
    }
    int rv = raft_uv_init(&r->io, loop, r->dir, &r->transport);
    if (rv != 0) {
        TS_ERROR("event=repl_io_init_failed dir=%s err=%s msg=\"%s\"", r->dir, raft_strerror(rv),
                 r->io.errmsg);
        repl_transport_close(r);
        repl_free(r);
        return repl_err(rv);
    }
    /* Off: on a damaged segment libraft would rename it aside and carry on
     * without acknowledged entries. We would rather not start. */
    raft_uv_set_auto_recovery(&r->io, false);

    r->rfsm.version = 2;
    r->rfsm.data = r;
    r->rfsm.apply = fsm_apply;
    r->rfsm.snapshot = fsm_snapshot;
    r->rfsm.restore = fsm_restore;
    r->rfsm.snapshot_finalize = fsm_snapshot_finalize;

    rv = raft_init(&r->raft, &r->io, &r->rfsm, cfg->node_id, r->address);
    if (rv != 0) {
        TS_ERROR("event=repl_init_failed dir=%s err=%s msg=\"%s\"", r->dir, raft_strerror(rv),
                 raft_errmsg(&r->raft));
        raft_uv_close(&r->io);
        repl_transport_close(r);
        repl_free(r);
        return repl_err(rv);
    }
    r->raft.data = r;
    raft_set_election_timeout(&r->raft, election);
    raft_set_heartbeat_timeout(&r->raft, heartbeat);
    r->min_threshold =
        cfg->snapshot_threshold ? cfg->snapshot_threshold : REPL_DEFAULT_SNAPSHOT_THRESHOLD;
    raft_set_snapshot_threshold(&r->raft, r->min_threshold);
    raft_set_snapshot_trailing(&r->raft, cfg->snapshot_trailing ? cfg->snapshot_trailing
                                                                : REPL_DEFAULT_SNAPSHOT_TRAILING);
    raft_set_pre_vote(&r->raft, true);

    uv_timer_init(loop, &r->defer);
    r->defer.data = r;

    rc = repl_bootstrap(r, cfg->node_id);
    if (rc == TS_OK) {
        rv = raft_start(&r->raft);
        if (rv != 0) {
            TS_ERROR("event=repl_start_failed dir=%s err=%s msg=\"%s\"", r->dir, raft_strerror(rv),
                     raft_errmsg(&r->raft));
            rc = repl_err(rv);
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
    int st = status == 0 ? TS_OK : repl_err(status);
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
    uint8_t *buf = raft_malloc(framed);
    if (!p || !buf) {
        free(p);
        raft_free(buf);
        return TS_E_NOMEM;
    }
    put_le32(buf, (uint32_t)len);
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
        pending_remove(r, p);
        raft_free(buf);
        free(p);
        return repl_err(rv);
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
    raft_id id = 0;
    const char *addr = NULL;
    if (r->raft_stopping)
        return "";
    raft_leader((struct raft *)&r->raft, &id, &addr);
    return addr ? addr : "";
}

uint64_t ts_repl_last_applied(const struct ts_repl *r)
{
    return r->applied;
}
