/*
 * ts_repl_seed: how a data directory gets its first raft state. On a first
 * start, a one-voter configuration (ts__repl_bootstrap, called by
 * ts_repl_start unless the node joins). For --restore, a snapshot written
 * before raft runs (ts_repl_seed_snapshot): metadata at term 1 and the
 * backup as raft's first snapshot, with this node the only voter, so the
 * node starts as a one-node cluster holding the backup's state.
 *
 * Seeding refuses a directory that holds raft state (TS_E_EXISTS) and
 * holds the directory's LOCK throughout (ts__repl_open), so it never races
 * a running node. It runs its own loop, and returns with nothing open.
 */
#include "ts_repl.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include <raft.h>
#include <raft/uv.h>

#include "ts_endian.h"
#include "ts_err.h"
#include "ts_log.h"
#include "ts_repl_int.h"

int ts__repl_bootstrap(struct ts_repl *r, uint64_t node_id)
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
        return ts__repl_err(rv);
    }
    TS_INFO("event=repl_bootstrap dir=%s node_id=%llu addr=%s", r->dir, (unsigned long long)node_id,
            r->address);
    return TS_OK;
}

/* ---- seeding a new node from a backup -------------------------------- */

struct seed_wait {
    int done;
    int status;
};

static void seed_put_done(struct raft_io_snapshot_put *req, int status)
{
    struct seed_wait *w = req->data;
    w->done = 1;
    w->status = status;
}

static void seed_io_closed(struct raft_io *io)
{
    struct seed_wait *w = io->data;
    w->done = 1;
}

/* Any file but our LOCK means raft state (metadata, segments, snapshots). */
static int seed_dir_empty(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int empty = 1;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 &&
            strcmp(e->d_name, "LOCK") != 0)
            empty = 0;
    closedir(d);
    return empty;
}

static void seed_free_loaded(struct raft_snapshot *snap, struct raft_entry *entries, size_t n)
{
    if (snap) {
        raft_configuration_close(&snap->configuration);
        for (unsigned i = 0; i < snap->n_bufs; i++)
            raft_free(snap->bufs[i].base);
        raft_free(snap->bufs);
        raft_free(snap);
    }
    void *batch = NULL;
    for (size_t i = 0; i < n; i++) {
        if (entries[i].batch != batch) {
            batch = entries[i].batch;
            raft_free(batch);
        }
    }
    raft_free(entries);
}

/* Writes metadata (term 1) and the snapshot through an initialised io. */
static int seed_write(struct ts_repl *r, uv_loop_t *loop, uint64_t node_id, uint64_t last_index,
                      const uint8_t *fsm_bytes, size_t len)
{
    raft_term term = 0;
    raft_id voted_for = 0;
    struct raft_snapshot *loaded = NULL;
    raft_index start_index = 0;
    struct raft_entry *entries = NULL;
    size_t n_entries = 0;
    int rv = r->io.load(&r->io, &term, &voted_for, &loaded, &start_index, &entries, &n_entries);
    if (rv != 0) {
        TS_ERROR("event=seed_load_failed dir=%s err=%s msg=\"%s\"", r->dir, raft_strerror(rv),
                 r->io.errmsg);
        return ts__repl_err(rv);
    }
    int had_state = term != 0 || loaded || n_entries;
    seed_free_loaded(loaded, entries, n_entries);
    if (had_state) {
        TS_ERROR("event=seed_refused dir=%s reason=\"raft state already present\"", r->dir);
        return TS_E_EXISTS;
    }
    rv = r->io.set_term(&r->io, 1);
    if (rv != 0) {
        TS_ERROR("event=seed_term_failed dir=%s err=%s", r->dir, raft_strerror(rv));
        return ts__repl_err(rv);
    }

    struct raft_snapshot snap;
    memset(&snap, 0, sizeof(snap));
    raft_configuration_init(&snap.configuration);
    rv = raft_configuration_add(&snap.configuration, node_id, r->address, RAFT_VOTER);
    /* The image as ts_repl.c's snapshots have it: packed (format 2), or,
     * for tests of older data directories, as it is (format 1). */
    const uint8_t *img = fsm_bytes;
    size_t img_len = len;
    uint8_t *packed = NULL;
    if (rv == 0 && !ts__repl_snap_legacy) {
        if (ts__repl_snap_pack(fsm_bytes, len, &packed, &img_len) != 0)
            rv = RAFT_NOMEM;
        img = packed;
    }
    struct raft_buffer buf = {.base = NULL, .len = REPL_SNAP_HDR + img_len};
    if (rv == 0 && !(buf.base = raft_malloc(buf.len)))
        rv = RAFT_NOMEM;
    if (rv != 0) {
        free(packed);
        raft_configuration_close(&snap.configuration);
        return ts__repl_err(rv);
    }
    ts_store_le64(buf.base, ts__repl_snap_legacy ? REPL_SNAP_MAGIC : REPL_SNAP_MAGIC_LZ4);
    ts_store_le64((uint8_t *)buf.base + 8, last_index);
    if (img_len)
        memcpy((uint8_t *)buf.base + REPL_SNAP_HDR, img, img_len);
    free(packed);
    snap.index = last_index;
    snap.term = 1;
    snap.configuration_index = last_index;
    snap.bufs = &buf;
    snap.n_bufs = 1;

    struct seed_wait w = {0, 0};
    struct raft_io_snapshot_put req;
    req.data = &w;
    /* trailing 1: a plain put (0 would be an install into a running log) */
    rv = r->io.snapshot_put(&r->io, 1, &req, &snap, seed_put_done);
    if (rv == 0) {
        while (!w.done)
            uv_run(loop, UV_RUN_ONCE);
        rv = w.status;
    }
    raft_free(buf.base);
    raft_configuration_close(&snap.configuration);
    if (rv != 0) {
        TS_ERROR("event=seed_snapshot_failed dir=%s err=%s msg=\"%s\"", r->dir, raft_strerror(rv),
                 r->io.errmsg);
        return ts__repl_err(rv);
    }
    return TS_OK;
}

int ts_repl_seed_snapshot(const struct ts_repl_config *cfg, uint64_t last_index,
                          const uint8_t *fsm_bytes, size_t len)
{
    if (last_index == 0)
        return TS_E_CONFIG;
    struct ts_repl *r;
    int rc = ts__repl_open(cfg, &r);
    if (rc != TS_OK)
        return rc;
    const char *dir = cfg->data_dir;
    uint64_t node_id = cfg->node_id;
    if (!seed_dir_empty(dir)) {
        TS_ERROR("event=seed_refused dir=%s reason=\"directory holds raft data\"", dir);
        ts__repl_free(r);
        return TS_E_EXISTS;
    }
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0) {
        ts__repl_free(r);
        return TS_E_IO;
    }
    r->loop = &loop;
    /* The io needs a transport, but nothing is sent: the stock one will do. */
    rc = raft_uv_tcp_init(&r->transport, &loop) == 0 ? TS_OK : TS_E_NOMEM;
    int io_ready = 0;
    if (rc == TS_OK) {
        int rv = raft_uv_init(&r->io, &loop, r->dir, &r->transport);
        if (rv == 0) {
            io_ready = 1;
            raft_uv_set_auto_recovery(&r->io, false);
            /* The seed is packed like any snapshot (ts_repl_snapimg.c). */
            (void)raft_uv_set_snapshot_compression(&r->io, ts__repl_snap_legacy != 0);
            rv = r->io.init(&r->io, node_id, r->address);
        }
        if (rv != 0) {
            TS_ERROR("event=seed_io_init_failed dir=%s err=%s msg=\"%s\"", r->dir,
                     raft_strerror(rv), r->io.errmsg);
            rc = ts__repl_err(rv);
            if (io_ready) { /* init failed: nothing to close but the memory */
                raft_uv_close(&r->io);
            }
        } else {
            rc = seed_write(r, &loop, node_id, last_index, fsm_bytes, len);
            struct seed_wait w = {0, 0};
            r->io.data = &w;
            r->io.close(&r->io, seed_io_closed);
            while (!w.done)
                uv_run(&loop, UV_RUN_ONCE);
            raft_uv_close(&r->io);
        }
        ts__repl_transport_close(r);
    }
    uv_run(&loop, UV_RUN_DEFAULT); /* the transport's and io's last handles */
    if (uv_loop_close(&loop) != 0)
        TS_WARN("event=seed_loop_not_closed dir=%s", r->dir);
    if (rc == TS_OK)
        TS_INFO("event=repl_seeded dir=%s node_id=%llu addr=%s index=%llu bytes=%zu", r->dir,
                (unsigned long long)node_id, r->address, (unsigned long long)last_index, len);
    ts__repl_free(r);
    return rc;
}
