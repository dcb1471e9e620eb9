/*
 * ts_mirror_sync: when a mirror's batches are committed and its files
 * rendered (see ts_mirror_sync.h for the calls).
 *
 * Invariants:
 * - Every batch is applied (rows and cursor in one transaction) inside the
 *   call that delivered it. A caught-up batch commits there and then. While
 *   catching up, batches (and snapshot chunks, which move no cursor) join a
 *   group (ts_mirror_db.h) that commits after GROUP_MAX_EVENTS events or
 *   GROUP_MAX_NS, whichever comes first (a timer commits a group the stream
 *   left waiting), and before any rendering, snapshot or exit: one WAL
 *   fsync and one write of each hot index page per group instead of per
 *   256 KiB batch. The subscription's resume cursor may thus run ahead of
 *   the committed one, but only over batches the open group holds, which
 *   this process commits or dies with; after a crash the subscription
 *   starts again from the committed cursor, and upserting by version makes
 *   the replay harmless. A batch or group that cannot be committed is an
 *   error the caller must stop on rather than let the stream resume past
 *   data the database does not hold.
 * - Rendering follows the database, never the wire: touched thread ids
 *   accumulate across batches and each is rendered once per flush, from its
 *   committed rows. A flush happens after a caught-up batch, at a snapshot's
 *   end, and before exit. While catching up, it also happens every
 *   RENDER_EVERY_NS, or RENDER_DUTY times the last flush's duration if that
 *   is longer, so re-rendering big threads again and again never takes more
 *   than about 1/RENDER_DUTY of a catch-up. A sync from cursor 0 (a new
 *   mirror, or a changed filter) has no fresh files to keep fresh: it
 *   renders only once it is caught up (or stops), each thread once. The
 *   setting 'rendered_seq' records the cursor of the last complete flush; a
 *   mirror that finds it behind the cursor (killed between a commit and its
 *   flush) re-renders every thread once at start (ts_mirror_sync_recover).
 *   A small flush (live batches) writes its files in durable
 *   ts_mirror_render batches (one directory fsync per RENDER_BATCH_THREADS
 *   threads, writeback of each file started as it is written). A big one
 *   (RENDER_PARALLEL_MIN threads or more: a first sync, a catch-up, a
 *   re-render) shares the threads with RENDER_HELPERS helper threads reading
 *   through their own connections, and fsyncs nothing file by file: it
 *   commits the setting 'files_unsynced' = 1 before its first file, renames
 *   each file into place as soon as it is written (readers still never see
 *   a partial file), then makes them all durable with one syncfs() and
 *   clears the setting. A mirror that starts with it set (killed, or a
 *   power loss, before that syncfs) re-renders every thread. A big flush of
 *   (nearly) every thread (the first after a sync from cursor 0 or a
 *   recovery) reads them differently: by passes over the whole comments
 *   table in id order, each loading a slice of the threads whose rows fit
 *   RENDER_SCAN_BYTES (render_scanned), rendered from memory: a seek
 *   through the index and another into the table per comment was most of
 *   such a render's CPU. After a sync from cursor 0 into an empty database
 *   it reads nothing: the writer kept each row it committed (a
 *   ts_mirror_fill, up to FILL_KEEP_BYTES), which is the database's
 *   content only while every batch goes through the writer, so a snapshot
 *   or a batch the loop applies drops it (fill_spend), as does anything
 *   the fill cannot follow; the render then reads the database. The loop
 *   waits for a flush, big or small.
 * - A sync from cursor 0 is a bulk fill (ts_mirror_db_bulk_begin): the
 *   index comments_thread is built once, when it is caught up: by a thread
 *   and a connection of its own while the loop reads the rows back and
 *   renders them with the helper, none of which needs the index, followed
 *   by a checkpoint of the WAL (the whole fill: it had none) that the
 *   last close would otherwise do on the wall clock (the fill is made durable
 *   first, ts_mirror_db_bulk_durable, so 'files_unsynced' is on disk
 *   before any file moves), or before a flush that reads by thread.
 *   Until then its batches go to a
 *   ts_mirror_writer, which stores them (in groups, as above) on its own
 *   thread while the loop receives and decodes the next ones; the loop
 *   takes the database back (every batch committed) after the caught-up
 *   batch (the writer's last), before a snapshot or a stop, and nothing
 *   else touches it meanwhile.
 *   A third thread creates each new thread's two files (empty temporaries,
 *   ts_mirror_render_prep) as the thread first appears, which the render
 *   then fills and renames: creating files is what a render of thousands
 *   of them waits on most on some file systems. The render joins it first.
 *
 * Load: one SQLite transaction (one WAL fsync) per live batch or catching-up
 * group; rendering costs two atomic file writes per touched thread per
 * flush. A first sync of 300,000 comments in 1,000 threads, in about 400
 * batches, commits about 10 groups (WRITER_GROUP_EVENTS, none of them
 * fsync'd or checkpointed: ts_mirror_db_bulk_begin), makes them durable
 * with the commit of 'files_unsynced', builds its threads from the rows
 * the writer kept (about 120 MiB; 25 ms instead of 0.4-0.7 s for a read of
 * every comment), builds the index once while the threads render, and
 * writes each of its 2,000 files once with one syncfs() for all.
 */
#include "ts_mirror_sync.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ts_err.h"
#include "ts_mirror_fill.h"
#include "ts_mirror_render.h"
#include "ts_mirror_writer.h"

#define RENDER_EVERY_NS (1000ull * 1000 * 1000)
#define RENDER_DUTY 4
#define RENDER_HELPERS 1         /* threads besides the loop's rendering a big flush */
#define RENDER_PARALLEL_MIN 16   /* pending threads that make a flush big */
#define RENDER_BATCH_THREADS 128 /* threads whose files share a directory fsync */
/* Rows (as file bytes) one pass of a scanned render loads at once: about
 * 1.5 times that in memory. A first sync of 300,000 comments is one pass.
 * (ts__mirror_sync_scan_bytes, for tests.) */
#define RENDER_SCAN_BYTES (128ull << 20)
#define GROUP_MAX_NS (250ull * 1000 * 1000)
#define GROUP_MAX_EVENTS 4096
/* The writer's groups (a sync from cursor 0): its commits do not fsync
 * (ts_mirror_db_bulk_begin), so what a commit costs is rewriting the
 * threads' rows and the hot pages of comments once more: fewer, bigger. */
#define WRITER_GROUP_EVENTS 32768
#define WRITER_QUEUE_BYTES (32u << 20) /* copied batches waiting for the writer */
/* The rows a first sync keeps for its render (ts_mirror_fill): about 400
 * bytes per comment of 250-byte bodies, so 300,000 comments are about
 * 120 MiB (what the scan it replaces would load too); a bigger first sync
 * reads the database back instead. */
#define FILL_KEEP_BYTES (256ull << 20)

uint64_t ts__mirror_sync_scan_bytes = RENDER_SCAN_BYTES;
uint64_t ts__mirror_sync_fill_bytes = FILL_KEEP_BYTES;

struct ts_mirror_sync {
    char *dir;
    struct ts_mirror_sync_cbs cbs;
    uv_loop_t *loop; /* NULL until attached */
    struct ts_mirror_db *db;
    struct ts_mirror_db *helper_db[RENDER_HELPERS]; /* read connections of render helpers */
    uv_timer_t group_timer;                         /* commits a group the stream left waiting */
    uv_timer_t scrub_timer;                         /* retries a scrub a reader blocked */
    int stopping;

    struct ts_mirror_touched pending; /* threads to render at the next flush */
    uint64_t start_ns;
    uint64_t last_flush_ns;
    uint64_t flush_gap_ns; /* least time from one catching-up flush to the next */
    int from_scratch;      /* syncing from cursor 0: no flush before caught up */
    int scan_next;         /* the next flush renders (nearly) every thread: render_scanned */
    int caught_up;         /* a caught-up batch was stored */
    uint64_t group_start_ns, group_events; /* the open group, see ts_mirror_sync_apply */
    struct ts_mirror_writer *writer;       /* stores a first sync's batches */
    struct ts_mirror_fill *fill;           /* and keeps them for its render, see writer_end */
    uint64_t pushed_seq;                   /* last_seq of the last batch given to it */
    struct ts_mirror_render_prep *prep;    /* files of the writer's threads, created early */
    struct ts_mirror_touched prepped;      /* thread ids prep has been given */
    struct {                               /* the thread that creates them, see prep_threads */
        uv_thread_t tid;
        uv_mutex_t mu;
        uv_cond_t cv;
        char **keys; /* queued, each owned */
        size_t n, cap;
        int done, started;
    } pq;
    uint64_t rendered_seq; /* the setting, as last written */
    struct ts_mirror_sync_stats st;
};

static void on_closed(uv_handle_t *h)
{
    (void)h;
}

static uint64_t now_ns(void)
{
    return uv_hrtime();
}

/* CPU time of the calling thread. */
static uint64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void prep_join(struct ts_mirror_sync *m);

/* The fill no longer holds what the database does: something was applied
 * outside the writer (a snapshot, a batch after it ended), or it failed. */
static void fill_spend(struct ts_mirror_sync *m)
{
    ts_mirror_fill_free(m->fill);
    m->fill = NULL;
}

/* Ends the writer, if any: every batch it was given is committed (or its
 * first failure is returned), the threads they changed are pending, and
 * the database is the loop's again. */
static int writer_end(struct ts_mirror_sync *m)
{
    if (!m->writer)
        return TS_OK;
    uint64_t cpu = 0;
    int rc = ts_mirror_writer_stop(m->writer, &m->pending, &cpu);
    m->writer = NULL;
    m->st.cpu_apply += cpu;
    if (rc != TS_OK)
        fill_spend(m);
    return rc;
}

/* Renders thread id: t when the flush read it already (a scan's: not
 * freed here), else read from db now. */
static int render_one(struct ts_mirror_db *db, struct ts_mirror_render_batch *batch, uint64_t id,
                      const struct ts_mirror_thread *t, uint64_t *rendered, uint64_t *read_ns)
{
    struct ts_mirror_thread *own = NULL;
    if (db) {
        uint64_t t0 = cpu_ns();
        int rc = ts_mirror_db_thread_by_id(db, id, &own);
        *read_ns += cpu_ns() - t0;
        if (rc != TS_OK)
            return rc == TS_E_NOT_FOUND ? TS_OK : rc;
        t = own;
    }
    if (!t)
        return TS_OK; /* not stored */
    int rc = ts_mirror_render_batch_add(
        batch, &t->thread, (const Threadsync__Comment *const *)t->comments, t->n_comments);
    ts_mirror_thread_free(own);
    if (rc == TS_OK)
        (*rendered)++;
    return rc;
}

/* One renderer of a flush: takes the next pending thread until none is
 * left or one of them failed, committing its files every
 * RENDER_BATCH_THREADS threads and at the end. */
struct render_share {
    const struct ts_mirror_sync *m;
    struct ts_mirror_db *db; /* this renderer's own connection; NULL: scan or fill */
    int durable;             /* see ts_mirror_render_batch_new */
    struct ts_mirror_render_prep *prep;
    /* pending.ids[lo..hi) are this flush's (or pass's); when db is NULL,
     * the scan or the fill holds them (thread i - lo). */
    size_t lo, hi;
    const struct ts_mirror_scan *scan;
    const struct ts_mirror_fill *fill;
    atomic_size_t *next;
    atomic_int *failed;
    uint64_t rendered;
    uint64_t read_ns; /* CPU time reading threads from the database */
    struct ts_mirror_render_stats stats;
    int err;
};

static void render_share_run(void *arg)
{
    struct render_share *r = arg;
    struct ts_mirror_render_batch *batch;
    r->err = ts_mirror_render_batch_new(r->m->dir, r->durable, &batch);
    if (r->err == TS_OK && r->prep)
        ts_mirror_render_batch_set_prep(batch, r->prep);
    for (size_t k = 1; r->err == TS_OK && !atomic_load(r->failed); k++) {
        size_t i = atomic_fetch_add(r->next, 1);
        if (i >= r->hi)
            break;
        const struct ts_mirror_thread *t = r->db     ? NULL
                                           : r->scan ? ts_mirror_scan_thread(r->scan, i - r->lo)
                                                     : ts_mirror_fill_thread(r->fill, i - r->lo);
        r->err = render_one(r->db, batch, r->m->pending.ids[i], t, &r->rendered, &r->read_ns);
        if (r->err == TS_OK && k % RENDER_BATCH_THREADS == 0)
            r->err = ts_mirror_render_batch_commit(batch);
    }
    if (r->err == TS_OK)
        r->err = ts_mirror_render_batch_commit(batch);
    if (r->err != TS_OK)
        atomic_store(r->failed, 1);
    if (batch)
        ts_mirror_render_batch_stats(batch, &r->stats);
    ts_mirror_render_batch_free(batch);
}

/* The index a bulk fill dropped, built on a thread of its own through a
 * connection of its own, while the loop reads the rows back and the
 * helpers render (none of which needs it), then the WAL checkpointed into
 * mirror.db: after a fill that was never checkpointed, that copy is the
 * whole database and ends in an fsync of it. The connection's open builds
 * the index (index_sql runs at every open: a killed fill's repair) and
 * commits it durably (synchronous=FULL); the checkpoint copies what every
 * reader's snapshot allows, the fill at least (the loop's read began after
 * its last commit). The loop's handle ends its fill afterwards
 * (ts_mirror_db_bulk_end: the index is there, so only its settings). */
struct index_job {
    const char *dir;
    int err;
    uint64_t cpu_ns;
};

static void index_job_run(void *arg)
{
    struct index_job *j = arg;
    struct ts_mirror_db *db;
    j->err = ts_mirror_db_open(j->dir, &db);
    if (j->err == TS_OK) {
        j->err = ts_mirror_db_checkpoint(db);
        ts_mirror_db_close(db);
    }
    j->cpu_ns = cpu_ns();
}

/* Renders pending.ids[lo..hi) from committed rows, on this thread and,
 * for a big flush, on RENDER_HELPERS more: a first sync's flush is all of
 * a mirror's files, and building them (and creating the files) is CPU the
 * second core can take. Without scan or fill each renderer reads its
 * threads through its own connection; with one (a scanned pass, or a
 * first sync's kept batches: render_scanned) none touches the database.
 * The loop waits for all of them, as it does for a one-thread flush. */
static int render_range(struct ts_mirror_sync *m, int durable, size_t lo, size_t hi,
                        const struct ts_mirror_scan *scan, const struct ts_mirror_fill *fill)
{
    int loaded = scan || fill;
    atomic_size_t next = lo;
    atomic_int failed = 0;
    struct render_share share[1 + RENDER_HELPERS];
    uv_thread_t tid[RENDER_HELPERS];
    int started[RENDER_HELPERS] = {0};
    int parallel = hi - lo >= RENDER_PARALLEL_MIN;
    if (parallel && !loaded) {
        /* Opened once and kept: a helper that cannot open is no helper. */
        for (size_t h = 0; h < RENDER_HELPERS; h++)
            if (!m->helper_db[h] && ts_mirror_db_open(m->dir, &m->helper_db[h]) != TS_OK)
                m->helper_db[h] = NULL;
    }
    for (size_t i = 0; i < 1 + RENDER_HELPERS; i++) {
        struct ts_mirror_db *db = loaded ? NULL : i == 0 ? m->db : m->helper_db[i - 1];
        share[i] = (struct render_share){.m = m,
                                         .db = db,
                                         .durable = durable,
                                         .prep = m->prep,
                                         .lo = lo,
                                         .hi = hi,
                                         .scan = scan,
                                         .fill = fill,
                                         .next = &next,
                                         .failed = &failed};
    }
    if (parallel)
        for (size_t h = 0; h < RENDER_HELPERS; h++)
            if ((loaded || share[1 + h].db) &&
                uv_thread_create(&tid[h], render_share_run, &share[1 + h]) == 0)
                started[h] = 1;
    int rc = TS_OK;
    render_share_run(&share[0]);
    for (size_t i = 0; i < 1 + RENDER_HELPERS; i++) {
        if (i > 0 && !started[i - 1])
            continue;
        if (i > 0)
            uv_thread_join(&tid[i - 1]);
        m->st.rendered += share[i].rendered;
        m->st.cpu_read += share[i].read_ns;
        m->st.cpu_build += share[i].stats.build_ns;
        m->st.cpu_write += share[i].stats.write_ns;
        if (rc == TS_OK)
            rc = share[i].err;
    }
    return rc;
}

static int render_pending(struct ts_mirror_sync *m, int durable)
{
    return render_range(m, durable, 0, m->pending.n, NULL, NULL);
}

/* A big flush of (nearly) every thread, unsynced (see the file's opening
 * paragraph): after a first sync whose writer kept every batch (m->fill),
 * the threads are built from those in memory (ts_mirror_fill_build: what
 * the database holds, without reading it); otherwise they are read by
 * passes over the whole comments table (ts_mirror_db_threads_scan) instead
 * of thread by thread, each pass a slice of the pending threads small
 * enough that its rows fit RENDER_SCAN_BYTES, and rendered from memory.
 * After a bulk fill the index is built meanwhile (index_job_run). */
static int render_scanned(struct ts_mirror_sync *m, int build_index)
{
    uint64_t bytes = 0;
    size_t n = m->pending.n;
    int rc = TS_OK, built = 0;
    if (m->fill) {
        uint64_t c0 = cpu_ns();
        built = ts_mirror_fill_build(m->fill, m->pending.ids, n) == TS_OK;
        m->st.cpu_read += cpu_ns() - c0;
        m->st.fill_built = built;
    }
    if (!built)
        rc = ts_mirror_db_size(m->db, &bytes);
    size_t passes = built ? 0 : (size_t)(bytes / ts__mirror_sync_scan_bytes) + 1;
    if (passes > n)
        passes = n ? n : 1;
    struct index_job job = {.dir = m->dir};
    uv_thread_t index_tid;
    int index_started = 0;
    if (rc == TS_OK && build_index) {
        /* A thread that cannot start: built here, before reading. */
        index_started = uv_thread_create(&index_tid, index_job_run, &job) == 0;
        if (!index_started) {
            uint64_t c0 = cpu_ns();
            rc = ts_mirror_db_bulk_end(m->db);
            if (rc == TS_OK)
                rc = ts_mirror_db_checkpoint(m->db);
            m->st.cpu_index += cpu_ns() - c0;
        }
    }
    for (size_t p = 0; p < passes && rc == TS_OK; p++) {
        size_t lo = p * n / passes, hi = (p + 1) * n / passes;
        struct ts_mirror_scan *scan;
        uint64_t c0 = cpu_ns();
        rc = ts_mirror_db_threads_scan(m->db, m->pending.ids + lo, hi - lo, &scan);
        m->st.cpu_read += cpu_ns() - c0;
        if (rc == TS_OK)
            rc = render_range(m, 0, lo, hi, scan, NULL);
        ts_mirror_scan_free(scan);
    }
    if (built && rc == TS_OK)
        rc = render_range(m, 0, 0, n, NULL, m->fill);
    fill_spend(m); /* once: later flushes read the database */
    if (index_started) {
        uv_thread_join(&index_tid);
        m->st.cpu_index += job.cpu_ns;
        if (rc == TS_OK)
            rc = job.err;
        /* The index is there: this ends the handle's fill (FULL again). */
        if (rc == TS_OK)
            rc = ts_mirror_db_bulk_end(m->db);
    }
    return rc;
}

/* Replaced text must leave the files even when no change follows: while
 * a scrub is due (a reader, often our own render thread, blocked it), retry
 * every SCRUB_RETRY_MS. */
#define SCRUB_RETRY_MS 100

static void on_scrub_timer(uv_timer_t *t)
{
    struct ts_mirror_sync *m = t->data;
    ts_mirror_db_scrub_retry(m->db);
    if (!ts_mirror_db_scrub_due(m->db))
        uv_timer_stop(t);
}

static void scrub_watch(struct ts_mirror_sync *m)
{
    if (m->loop && !m->stopping && ts_mirror_db_scrub_due(m->db) &&
        !uv_is_active((uv_handle_t *)&m->scrub_timer))
        uv_timer_start(&m->scrub_timer, on_scrub_timer, SCRUB_RETRY_MS, SCRUB_RETRY_MS);
}

/* Removes the prepared files no render took (see ts_mirror_sync_apply). */
static void prep_end(struct ts_mirror_sync *m)
{
    prep_join(m);
    ts_mirror_render_prep_free(m->prep);
    m->prep = NULL;
    ts_mirror_touched_free(&m->prepped);
}

/* Renders every pending thread, then records the cursor they cover (see
 * the file's opening paragraph for big flushes and 'files_unsynced'). */
static int render_flush(struct ts_mirror_sync *m)
{
    uint64_t cursor = 0, t0 = now_ns(), c0 = cpu_ns();
    int rc = ts_mirror_db_group_end(m->db);
    uint64_t c1 = cpu_ns();
    m->st.cpu_commit += c1 - c0;
    int big = m->pending.n >= RENDER_PARALLEL_MIN;
    /* Scanned: the index (if a fill dropped it) is built during the
     * render, but the fill is made durable before files_unsynced's commit,
     * which must be on disk before the first file is renamed. */
    int scan = big && m->scan_next;
    if (rc == TS_OK)
        rc = scan ? ts_mirror_db_bulk_durable(m->db) : ts_mirror_db_bulk_end(m->db);
    m->st.cpu_index += cpu_ns() - c1;
    if (rc == TS_OK)
        rc = ts_mirror_db_cursor(m->db, &cursor);
    if (rc == TS_OK && big)
        rc = ts_mirror_db_setting_set(m->db, "files_unsynced", "1");
    prep_join(m); /* m->prep is the render's now */
    if (rc == TS_OK)
        rc = scan ? render_scanned(m, 1) : render_pending(m, !big);
    m->scan_next = 0;
    if (!m->writer)
        fill_spend(m); /* a render of fewer threads: the next one reads the database */
    uint64_t s0 = now_ns();
    if (rc == TS_OK && big)
        rc = ts_mirror_render_sync(m->dir);
    if (rc == TS_OK && big)
        rc = ts_mirror_db_setting_set(m->db, "files_unsynced", "0");
    m->st.wall_sync += now_ns() - s0;
    m->st.loop_busy += cpu_ns() - c0;
    if (rc != TS_OK)
        return rc;
    if (m->cbs.flushed)
        m->cbs.flushed(m->cbs.arg, &m->pending);
    ts_mirror_touched_clear(&m->pending);
    prep_end(m);
    m->last_flush_ns = now_ns();
    m->st.wall_render += m->last_flush_ns - t0;
    m->flush_gap_ns = RENDER_DUTY * (m->last_flush_ns - t0);
    if (m->flush_gap_ns < RENDER_EVERY_NS)
        m->flush_gap_ns = RENDER_EVERY_NS;
    if (cursor != m->rendered_seq) {
        char v[32];
        snprintf(v, sizeof(v), "%" PRIu64, cursor);
        rc = ts_mirror_db_setting_set(m->db, "rendered_seq", v);
        if (rc == TS_OK)
            m->rendered_seq = cursor;
    }
    scrub_watch(m);
    return rc;
}

static int collect_id(void *arg, const Threadsync__Thread *t)
{
    return ts_mirror_touched_add(arg, t->id) != TS_OK;
}

/* A mirror stopped between a commit and its render flush has files behind
 * its rows, and one stopped during a big flush (or before its syncfs) may
 * have files a power loss took back: which ones is unknown, so all are
 * rendered again. */
int ts_mirror_sync_recover(struct ts_mirror_sync *m, uint64_t cursor,
                           enum ts_mirror_sync_stale *why, uint64_t *rendered_seq, size_t *threads)
{
    *why = TS_MIRROR_SYNC_FRESH;
    char *v = NULL, *unsynced = NULL;
    int rc = ts_mirror_db_setting_get(m->db, "rendered_seq", &v);
    if (rc == TS_OK)
        rc = ts_mirror_db_setting_get(m->db, "files_unsynced", &unsynced);
    m->rendered_seq = v ? strtoull(v, NULL, 10) : 0;
    *rendered_seq = m->rendered_seq;
    int dirty = unsynced && strcmp(unsynced, "1") == 0;
    free(v);
    free(unsynced);
    if (rc != TS_OK || cursor == 0 || (m->rendered_seq >= cursor && !dirty))
        return rc;
    rc = ts_mirror_db_foreach_thread(m->db, collect_id, &m->pending);
    if (rc != TS_OK)
        return rc == 1 ? TS_E_NOMEM : rc;
    m->scan_next = 1;
    *why = dirty ? TS_MIRROR_SYNC_UNSYNCED : TS_MIRROR_SYNC_BEHIND;
    *threads = m->pending.n;
    return TS_OK;
}

static void on_group_timer(uv_timer_t *t)
{
    struct ts_mirror_sync *m = t->data;
    uint64_t c0 = cpu_ns();
    int rc = ts_mirror_db_group_end(m->db);
    m->st.cpu_commit += cpu_ns() - c0;
    m->st.loop_busy += cpu_ns() - c0;
    if (rc != TS_OK && m->cbs.failed)
        m->cbs.failed(m->cbs.arg, rc);
}

/* Creates the queued threads' files until told it is done. It alone uses
 * m->prep until prep_join returns. */
static void prep_main(void *arg)
{
    struct ts_mirror_sync *m = arg;
    uint64_t c0 = cpu_ns();
    uv_mutex_lock(&m->pq.mu);
    for (;;) {
        while (!m->pq.n && !m->pq.done)
            uv_cond_wait(&m->pq.cv, &m->pq.mu);
        if (!m->pq.n)
            break;
        char *key = m->pq.keys[--m->pq.n];
        uv_mutex_unlock(&m->pq.mu);
        (void)ts_mirror_render_prep_add(m->prep, key); /* a failure: the render creates it */
        free(key);
        uv_mutex_lock(&m->pq.mu);
    }
    m->st.cpu_prep += cpu_ns() - c0;
    uv_mutex_unlock(&m->pq.mu);
}

/* Waits for every queued key's files and ends the thread. */
static void prep_join(struct ts_mirror_sync *m)
{
    if (!m->pq.started)
        return;
    uv_mutex_lock(&m->pq.mu);
    m->pq.done = 1;
    uv_cond_signal(&m->pq.cv);
    uv_mutex_unlock(&m->pq.mu);
    uv_thread_join(&m->pq.tid);
    uv_cond_destroy(&m->pq.cv);
    uv_mutex_destroy(&m->pq.mu);
    free(m->pq.keys);
    m->pq.keys = NULL;
    m->pq.started = 0;
}

/* A first sync creates each thread's two files as the thread first
 * appears (ts_mirror_render_prep), on a thread of their own: on this
 * machine's ext4 a create can take a millisecond under the directory's
 * lock, which would hold up the loop, and the render after the sync then
 * only fills and renames them. */
static void prep_threads(struct ts_mirror_sync *m, const Threadsync__Events *ev)
{
    if (!m->pq.started)
        return;
    uint64_t c0 = cpu_ns();
    uv_mutex_lock(&m->pq.mu);
    for (size_t i = 0; i < ev->n_events; i++) {
        const Threadsync__Thread *t = ev->events[i]->thread;
        if (!t || !t->key || ts_mirror_touched_has(&m->prepped, t->id))
            continue;
        if (m->pq.n == m->pq.cap) {
            size_t cap = m->pq.cap ? 2 * m->pq.cap : 64;
            char **k = realloc(m->pq.keys, cap * sizeof(*k));
            if (!k)
                break;
            m->pq.keys = k;
            m->pq.cap = cap;
        }
        char *key = strdup(t->key);
        if (!key || ts_mirror_touched_add(&m->prepped, t->id) != TS_OK) {
            free(key);
            break;
        }
        m->pq.keys[m->pq.n++] = key;
    }
    uv_cond_signal(&m->pq.cv);
    uv_mutex_unlock(&m->pq.mu);
    m->st.loop_busy += cpu_ns() - c0;
}

/* Opens a group unless one is open (see the file's opening paragraph). */
static int group_open(struct ts_mirror_sync *m)
{
    if (ts_mirror_db_group_is_open(m->db))
        return TS_OK;
    int rc = ts_mirror_db_group_begin(m->db);
    m->group_start_ns = now_ns();
    m->group_events = 0;
    if (rc == TS_OK)
        uv_timer_start(&m->group_timer, on_group_timer, GROUP_MAX_NS / 1000000, 0);
    return rc;
}

/* Counts n more rows in the open group and commits it when it is full,
 * old, or must end now. */
static int group_account(struct ts_mirror_sync *m, size_t n, int now)
{
    m->group_events += n;
    if (!ts_mirror_db_group_is_open(m->db) || !(now || m->group_events >= GROUP_MAX_EVENTS ||
                                                now_ns() - m->group_start_ns >= GROUP_MAX_NS))
        return TS_OK;
    uv_timer_stop(&m->group_timer);
    uint64_t c0 = cpu_ns();
    int rc = ts_mirror_db_group_end(m->db);
    m->st.cpu_commit += cpu_ns() - c0;
    return rc;
}

/* Commits every batch in the database before the call that delivered it
 * returns, or, while catching up, within GROUP_MAX_NS of the group's first
 * batch (see the file's opening paragraph). */
int ts_mirror_sync_apply(struct ts_mirror_sync *m, const Threadsync__Events *ev)
{
    int rc = TS_OK;
    if (m->writer) {
        /* The caught-up batch too, then the writer ends: the fill it
         * keeps must hold every batch of the sync. */
        uint64_t c0 = cpu_ns();
        rc = ts_mirror_writer_push(m->writer, ev);
        m->st.loop_busy += cpu_ns() - c0;
        if (rc != TS_OK)
            return rc;
        m->st.events += ev->n_events;
        m->pushed_seq = ev->last_seq;
        prep_threads(m, ev);
        return ev->caught_up ? writer_end(m) : TS_OK;
    }
    fill_spend(m); /* applied outside the writer */
    uint64_t c0 = cpu_ns();
    if (!ev->caught_up)
        rc = group_open(m);
    if (rc == TS_OK)
        rc = ts_mirror_db_apply_events(m->db, ev, &m->pending);
    m->st.cpu_apply += cpu_ns() - c0;
    if (rc == TS_OK)
        rc = group_account(m, ev->n_events, ev->caught_up);
    m->st.loop_busy += cpu_ns() - c0;
    if (rc != TS_OK)
        return rc;
    m->st.events += ev->n_events;
    return TS_OK;
}

/* See the file's opening paragraph for when files are rewritten. */
static int flush_due(const struct ts_mirror_sync *m, const Threadsync__Events *ev)
{
    if (ev->caught_up)
        return 1;
    if (m->from_scratch && !m->caught_up)
        return 0;
    return now_ns() - m->last_flush_ns >= m->flush_gap_ns;
}

int ts_mirror_sync_applied(struct ts_mirror_sync *m, const Threadsync__Events *ev)
{
    if (ev->caught_up && !m->caught_up)
        m->st.wall_caught_up = now_ns() - m->start_ns; /* stored; not yet rendered */
    int rc = flush_due(m, ev) ? render_flush(m) : TS_OK;
    if (ev->caught_up)
        m->caught_up = 1;
    return rc;
}

int ts_mirror_sync_snapshot_begin(struct ts_mirror_sync *m, uint64_t seq)
{
    int rc = writer_end(m);
    fill_spend(m); /* the snapshot's rows are applied outside the writer */
    if (rc == TS_OK)
        rc = ts_mirror_db_snapshot_begin(m->db, seq);
    if (rc == TS_OK)
        m->st.snapshots++;
    return rc;
}

int ts_mirror_sync_snapshot_chunk(struct ts_mirror_sync *m, const Threadsync__SnapshotChunk *chunk)
{
    /* Chunks share groups as batches do: a snapshot's comments come thread
     * by thread, out of id order, so a commit per chunk rewrote pages all
     * over the table for every chunk. */
    uint64_t c0 = cpu_ns();
    int rc = group_open(m);
    if (rc == TS_OK)
        rc = ts_mirror_db_snapshot_apply_chunk(m->db, chunk, &m->pending);
    m->st.cpu_apply += cpu_ns() - c0;
    if (rc == TS_OK)
        rc = group_account(m, chunk->n_threads + chunk->n_comments, 0);
    m->st.loop_busy += cpu_ns() - c0;
    if (rc != TS_OK)
        return rc;
    m->st.snap_threads += chunk->n_threads;
    m->st.snap_comments += chunk->n_comments;
    return TS_OK;
}

int ts_mirror_sync_snapshot_end(struct ts_mirror_sync *m, uint64_t seq)
{
    /* In a bulk fill, end moves the staged comments: commit time. */
    uint64_t c0 = cpu_ns();
    int rc = ts_mirror_db_snapshot_end(m->db, seq, &m->pending);
    m->st.cpu_commit += cpu_ns() - c0;
    m->st.loop_busy += cpu_ns() - c0;
    if (rc == TS_OK && !(m->from_scratch && !m->caught_up))
        rc = render_flush(m);
    return rc;
}

int ts_mirror_sync_drain(struct ts_mirror_sync *m)
{
    return writer_end(m);
}

int ts_mirror_sync_flush(struct ts_mirror_sync *m)
{
    return render_flush(m);
}

uint64_t ts_mirror_sync_cursor(struct ts_mirror_sync *m)
{
    uint64_t cursor = m->pushed_seq; /* the writer owns the database */
    if (!m->writer)
        ts_mirror_db_cursor(m->db, &cursor);
    return cursor;
}

int ts_mirror_sync_open(const char *dir, const struct ts_mirror_sync_cbs *cbs,
                        struct ts_mirror_sync **out)
{
    *out = NULL;
    struct ts_mirror_sync *m = calloc(1, sizeof(*m));
    if (!m || !(m->dir = strdup(dir))) {
        free(m);
        return TS_E_NOMEM;
    }
    if (cbs)
        m->cbs = *cbs;
    m->start_ns = m->last_flush_ns = now_ns();
    m->flush_gap_ns = RENDER_EVERY_NS;
    int rc = ts_mirror_db_open(dir, &m->db);
    if (rc != TS_OK) {
        free(m->dir);
        free(m);
        return rc;
    }
    *out = m;
    return TS_OK;
}

struct ts_mirror_db *ts_mirror_sync_db(struct ts_mirror_sync *m)
{
    return m->db;
}

int ts_mirror_sync_begin(struct ts_mirror_sync *m, uint64_t since, int writer)
{
    m->from_scratch = since == 0;
    m->scan_next = m->from_scratch;
    m->flush_gap_ns = RENDER_EVERY_NS;
    int rc;
    if (m->from_scratch && (rc = ts_mirror_db_bulk_begin(m->db)) != TS_OK)
        return rc;
    /* Kept batches are the database's rows only if it starts empty (a
     * changed filter or a killed snapshot leave rows at cursor 0). */
    int empty = 0;
    if (m->from_scratch && writer && (rc = ts_mirror_db_is_empty(m->db, &empty)) != TS_OK)
        return rc;
    /* A writer that cannot start is only a slower first sync. */
    if (m->from_scratch && writer &&
        ts_mirror_writer_start(m->db, WRITER_GROUP_EVENTS, WRITER_QUEUE_BYTES, &m->writer) != TS_OK)
        m->writer = NULL;
    if (m->writer && empty &&
        ts_mirror_fill_new((size_t)ts__mirror_sync_fill_bytes, &m->fill) == TS_OK)
        ts_mirror_writer_keep(m->writer, m->fill);
    if (m->writer && ts_mirror_render_prep_new(m->dir, &m->prep) != TS_OK)
        m->prep = NULL;
    if (m->prep && uv_mutex_init(&m->pq.mu) == 0) {
        uv_cond_init(&m->pq.cv);
        m->pq.started = uv_thread_create(&m->pq.tid, prep_main, m) == 0;
        if (!m->pq.started) {
            uv_cond_destroy(&m->pq.cv);
            uv_mutex_destroy(&m->pq.mu);
        }
    }
    return TS_OK;
}

void ts_mirror_sync_attach(struct ts_mirror_sync *m, uv_loop_t *loop)
{
    m->loop = loop;
    uv_timer_init(loop, &m->group_timer);
    m->group_timer.data = m;
    uv_timer_init(loop, &m->scrub_timer);
    m->scrub_timer.data = m;
}

void ts_mirror_sync_stop(struct ts_mirror_sync *m)
{
    if (m->stopping || !m->loop)
        return;
    m->stopping = 1;
    uv_close((uv_handle_t *)&m->group_timer, on_closed);
    uv_close((uv_handle_t *)&m->scrub_timer, on_closed);
}

const struct ts_mirror_sync_stats *ts_mirror_sync_stats(const struct ts_mirror_sync *m)
{
    return &m->st;
}

void ts_mirror_sync_free(struct ts_mirror_sync *m)
{
    if (!m)
        return;
    writer_end(m); /* only on early exits: a stop drained it otherwise */
    fill_spend(m);
    prep_end(m);
    ts_mirror_db_close(m->db);
    for (size_t h = 0; h < RENDER_HELPERS; h++)
        ts_mirror_db_close(m->helper_db[h]);
    ts_mirror_touched_free(&m->pending);
    free(m->dir);
    free(m);
}
