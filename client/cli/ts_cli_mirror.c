/*
 * ts_cli_mirror: `threadsync mirror` and `threadsync verify` (see
 * ts_cli_mirror.h for what they promise).
 *
 * Invariants:
 * - The mirror's cursor is the database's. The subscription starts from it,
 *   and every batch is applied (rows and cursor in one transaction) inside
 *   the callback that delivered it. A caught-up batch commits there and
 *   then. While catching up, batches (and snapshot chunks, which move no
 *   cursor) join a group (ts_mirror_db.h) that
 *   commits after GROUP_MAX_EVENTS events or GROUP_MAX_NS, whichever comes
 *   first (a timer commits a group the stream left waiting), and before any
 *   rendering, snapshot or exit: one WAL fsync and one write of each hot
 *   index page per group instead of per 256 KiB batch. The library's resume
 *   cursor may thus run ahead of the committed one, but only over batches
 *   the open group holds, which this process commits or dies with; after a
 *   crash the subscription starts again from the committed cursor, and
 *   upserting by version makes the replay harmless. A batch or group that
 *   cannot be committed ends the program (exit 3) rather than let the
 *   library resume past data the database does not hold.
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
 *   flush) re-renders every thread once at start. A small flush (live
 *   batches) writes its files in durable ts_mirror_render batches (one
 *   directory fsync per RENDER_BATCH_THREADS threads, writeback of each
 *   file started as it is written). A big one (RENDER_PARALLEL_MIN threads
 *   or more: a first sync, a catch-up, a re-render) shares the threads with
 *   RENDER_HELPERS helper threads reading through their own connections,
 *   and fsyncs nothing file by file: it commits the setting
 *   'files_unsynced' = 1 before its first file, renames each file into
 *   place as soon as it is written (readers still never see a partial
 *   file), then makes them all durable with one syncfs() and clears the
 *   setting. A mirror that starts with it set (killed, or a power loss,
 *   before that syncfs) re-renders every thread. The loop waits for a
 *   flush, big or small.
 * - A sync from cursor 0 is a bulk fill (ts_mirror_db_bulk_begin): the
 *   index comments_thread is built once, when it is caught up, before the
 *   first flush reads by thread. Until then its batches go to a
 *   ts_mirror_writer, which stores them (in groups, as above) on its own
 *   thread while the loop receives and decodes the next ones; the loop
 *   takes the database back (every batch committed) before the caught-up
 *   batch, a snapshot or a stop, and nothing else touches it meanwhile.
 *   A third thread creates each new thread's two files (empty temporaries,
 *   ts_mirror_render_prep) as the thread first appears, which the render
 *   then fills and renames: creating files is what a render of thousands
 *   of them waits on most on some file systems. The render joins it first.
 * - SIGINT/SIGTERM only set the stop in motion from the loop: the batch
 *   being applied (a synchronous callback) always finishes first.
 * - verify compares at one seq: it asks for the server's Digest (state as
 *   of seq S) only once caught up, applies events up to exactly S (a batch
 *   crossing S is split there) and compares then. Threads that differ are
 *   asked again (content moving while posts continue, or a snapshot's
 *   newer-than-S content, settles); only a difference seen VERIFY_ROUNDS
 *   times in a row is reported.
 *
 * Load: one SQLite transaction (one WAL fsync) per live batch or catching-up
 * group; rendering costs two atomic file writes per touched thread per
 * flush. A first sync of 10,000 comments arrives in a few dozen 256 KiB
 * batches; one of 300,000 comments in 1,000 threads, in about 400 batches,
 * commits about 75 groups, builds the index once, and writes each of its
 * 2,000 files once with one syncfs() for all. With THREADSYNC_MIRROR_TIMING
 * set in the environment, the program prints where the time went when it
 * stops (timing_report).
 */
#include "ts_cli_mirror.h"

#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ts_buf.h"
#include "ts_digest.h"
#include "ts_mirror_db.h"
#include "ts_mirror_render.h"
#include "ts_mirror_writer.h"

#define RENDER_EVERY_NS (1000ull * 1000 * 1000)
#define RENDER_DUTY 4
#define RENDER_HELPERS 1         /* threads besides the loop's rendering a big flush */
#define RENDER_PARALLEL_MIN 16   /* pending threads that make a flush big */
#define RENDER_BATCH_THREADS 128 /* threads whose files share a directory fsync */
#define GROUP_MAX_NS (250ull * 1000 * 1000)
#define GROUP_MAX_EVENTS 4096
#define WRITER_QUEUE_BYTES (32u << 20) /* copied batches waiting for the writer */
#define PROGRESS_EVERY_NS (200ull * 1000 * 1000)
#define VERIFY_ROUNDS 5
#define VERIFY_KEYS_MAX 1024

struct page_entry {
    char *key;
    uint64_t id, comments, version;
    uint32_t comment_count;
    char digest[TS_DIGEST_HEX_LEN + 1];
};

struct mirror {
    const struct ts_cli_opts *o;
    const struct ts_cli_mirror_hooks *hooks; /* never NULL */
    uv_loop_t *loop;
    struct ts_client *c;
    struct ts_mirror_db *db;
    struct ts_mirror_db *helper_db[RENDER_HELPERS]; /* read connections of render helpers */
    uv_signal_t sigint, sigterm;
    uv_timer_t group_timer; /* commits a group the stream left waiting */
    uv_timer_t scrub_timer; /* retries a scrub a reader blocked */
    int verify;

    /* the subscription's filter */
    int all;
    char **keys; /* owned, each owned */
    size_t n_keys;
    char *filter_text;  /* canonical form kept in the setting 'filter' */
    int filter_saved;   /* the setting holds filter_text */
    int filter_covered; /* the stored filter includes ours: the cursor holds */

    struct ts_mirror_touched pending; /* threads to render at the next flush */
    uint64_t last_flush_ns;
    uint64_t flush_gap_ns;                 /* least time from one catching-up flush to the next */
    int from_scratch;                      /* syncing from cursor 0: no flush before caught up */
    uint64_t group_start_ns, group_events; /* the open group, see apply_batch */
    struct ts_mirror_writer *writer;       /* stores a first sync's batches, see apply_batch */
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

    /* where the time goes (THREADSYNC_MIRROR_TIMING): CPU ns per phase,
     * summed over the threads that ran it, and wall ns of flushes */
    struct {
        uint64_t apply, commit, index, read, build, write, prep;
    } cpu;
    uint64_t wall_render, wall_sync, wall_caught_up;
    uint64_t loop_busy; /* the loop thread's CPU in apply_batch and render_flush */
    int timing;

    /* progress and summary */
    uint64_t events, snap_threads, snap_comments, rendered, start_cursor;
    unsigned snapshots;
    uint64_t start_ns, last_progress_ns;
    uint64_t head; /* the server's last seq when we connected: the target */
    int tty, first_sync, progress_line;
    int caught_up;
    int ever_ready;
    int stopping, exit_code;

    /* verify */
    int round;         /* 0: the full pass; 1..: re-checks of suspects */
    int round_all;     /* this round pages over every thread */
    char **round_keys; /* keys asked this round (keys mode), owned */
    size_t n_round_keys;
    struct page_entry *page; /* the answer waiting to be compared */
    size_t n_page;
    uint64_t want_seq, next_after_id;
    int waiting;                   /* page holds an answer not yet compared */
    struct ts_mirror_touched seen; /* round 0: server thread ids met */
    char **suspects;               /* keys that differed this round, owned */
    size_t n_suspects;
    char first_diff[1024];
    uint64_t v_threads, v_comments, v_seq;
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

static void free_strv(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static int push_str(char ***v, size_t *n, const char *s)
{
    char **nv = realloc(*v, (*n + 1) * sizeof(*nv));
    if (!nv)
        return TS_E_NOMEM;
    *v = nv;
    if (!(nv[*n] = strdup(s)))
        return TS_E_NOMEM;
    (*n)++;
    return TS_OK;
}

static void page_clear(struct mirror *m)
{
    for (size_t i = 0; i < m->n_page; i++)
        free(m->page[i].key);
    free(m->page);
    m->page = NULL;
    m->n_page = 0;
}

/* ---- progress ---------------------------------------------------------- */

static void progress(struct mirror *m, int force)
{
    if (!m->tty || !m->first_sync)
        return;
    uint64_t now = now_ns();
    if (!force && now - m->last_progress_ns < PROGRESS_EVERY_NS)
        return;
    m->last_progress_ns = now;
    double secs = (double)(now - m->start_ns) / 1e9;
    uint64_t cursor = m->pushed_seq; /* the writer owns the database */
    if (!m->writer)
        ts_mirror_db_cursor(m->db, &cursor);
    uint64_t items = m->events + m->snap_threads + m->snap_comments;
    fprintf(stderr, "\r\033[Ksync: %" PRIu64 " events", m->events);
    if (m->snapshots)
        fprintf(stderr, ", snapshot %" PRIu64 " threads %" PRIu64 " comments", m->snap_threads,
                m->snap_comments);
    fprintf(stderr, ", %" PRIu64 " threads rendered, seq %" PRIu64, m->rendered, cursor);
    /* The head moves on while we sync; it is only the target we were
     * given, so past it the share stays at 100%. */
    if (m->head)
        fprintf(stderr, " of %" PRIu64 " (%.0f%%)", m->head,
                cursor >= m->head ? 100.0 : 100.0 * (double)cursor / (double)m->head);
    fprintf(stderr, ", %.0f/s", secs > 0 ? (double)items / secs : 0.0);
    m->progress_line = 1;
}

static void progress_end(struct mirror *m)
{
    if (m->progress_line)
        fputc('\n', stderr);
    m->progress_line = 0;
}

/* ---- stopping ------------------------------------------------------------ */

static int render_flush(struct mirror *m);
static void prep_join(struct mirror *m);

/* Ends the writer, if any: every batch it was given is committed (or its
 * first failure is returned), the threads they changed are pending, and
 * the database is the loop's again. */
static int writer_end(struct mirror *m)
{
    if (!m->writer)
        return TS_OK;
    uint64_t cpu = 0;
    int rc = ts_mirror_writer_stop(m->writer, &m->pending, &cpu);
    m->writer = NULL;
    m->cpu.apply += cpu;
    return rc;
}

static void stop(struct mirror *m, int exit_code)
{
    if (m->stopping)
        return;
    m->stopping = 1;
    m->exit_code = exit_code;
    int rc = writer_end(m);
    if (rc != TS_OK) {
        progress_end(m);
        fprintf(stderr, "error: %s: cannot write the mirror in %s (%s)\n",
                m->verify ? "verify" : "mirror", m->o->dir, ts_err_name(rc));
        m->exit_code = TS_CLI_EXIT_CONN;
    }
    if (m->db && render_flush(m) != TS_OK && m->exit_code == TS_CLI_EXIT_OK)
        m->exit_code = TS_CLI_EXIT_CONN;
    ts_client_close(m->c, NULL, NULL);
    if (m->hooks->stop)
        m->hooks->stop(m->hooks->arg);
    uv_close((uv_handle_t *)&m->group_timer, on_closed);
    uv_close((uv_handle_t *)&m->scrub_timer, on_closed);
    uv_close((uv_handle_t *)&m->sigint, on_closed);
    uv_close((uv_handle_t *)&m->sigterm, on_closed);
}

static void local_failure(struct mirror *m, const char *what, int err)
{
    progress_end(m);
    fprintf(stderr, "error: %s: %s in %s (%s)\n", m->verify ? "verify" : "mirror", what, m->o->dir,
            ts_err_name(err));
    stop(m, TS_CLI_EXIT_CONN);
}

/* ---- rendering ----------------------------------------------------------- */

static int render_one(struct ts_mirror_db *db, struct ts_mirror_render_batch *batch, uint64_t id,
                      uint64_t *rendered, uint64_t *read_ns)
{
    struct ts_mirror_thread *t;
    uint64_t t0 = cpu_ns();
    int rc = ts_mirror_db_thread_by_id(db, id, &t);
    *read_ns += cpu_ns() - t0;
    if (rc == TS_E_NOT_FOUND)
        return TS_OK;
    if (rc != TS_OK)
        return rc;
    rc = ts_mirror_render_batch_add(batch, &t->thread,
                                    (const Threadsync__Comment *const *)t->comments, t->n_comments);
    ts_mirror_thread_free(t);
    if (rc == TS_OK)
        (*rendered)++;
    return rc;
}

/* One renderer of a flush: takes the next pending thread until none is
 * left or one of them failed, committing its files every
 * RENDER_BATCH_THREADS threads and at the end. */
struct render_share {
    const struct mirror *m;
    struct ts_mirror_db *db; /* this renderer's own connection */
    int durable;             /* see ts_mirror_render_batch_new */
    struct ts_mirror_render_prep *prep;
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
    r->err = ts_mirror_render_batch_new(r->m->o->dir, r->durable, &batch);
    if (r->err == TS_OK && r->prep)
        ts_mirror_render_batch_set_prep(batch, r->prep);
    for (size_t k = 1; r->err == TS_OK && !atomic_load(r->failed); k++) {
        size_t i = atomic_fetch_add(r->next, 1);
        if (i >= r->m->pending.n)
            break;
        r->err = render_one(r->db, batch, r->m->pending.ids[i], &r->rendered, &r->read_ns);
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

/* Renders every pending thread from committed rows, on this thread and,
 * for a big flush, on RENDER_HELPERS more, each with its own read
 * connection: a first sync's flush is all of a mirror's files, and
 * building them (and creating the files) is CPU the second core can take.
 * The loop waits for all of them, as it does for a one-thread flush. */
static int render_pending(struct mirror *m, int durable)
{
    atomic_size_t next = 0;
    atomic_int failed = 0;
    struct render_share share[1 + RENDER_HELPERS];
    uv_thread_t tid[RENDER_HELPERS];
    int started[RENDER_HELPERS] = {0};
    if (m->pending.n >= RENDER_PARALLEL_MIN) {
        /* Opened once and kept: a helper that cannot open is no helper. */
        for (size_t h = 0; h < RENDER_HELPERS; h++)
            if (!m->helper_db[h] && ts_mirror_db_open(m->o->dir, &m->helper_db[h]) != TS_OK)
                m->helper_db[h] = NULL;
    }
    for (size_t i = 0; i < 1 + RENDER_HELPERS; i++) {
        struct ts_mirror_db *db = i == 0 ? m->db : m->helper_db[i - 1];
        share[i] = (struct render_share){.m = m,
                                         .db = db,
                                         .durable = durable,
                                         .prep = m->prep,
                                         .next = &next,
                                         .failed = &failed};
    }
    if (m->pending.n >= RENDER_PARALLEL_MIN)
        for (size_t h = 0; h < RENDER_HELPERS; h++)
            if (share[1 + h].db && uv_thread_create(&tid[h], render_share_run, &share[1 + h]) == 0)
                started[h] = 1;
    render_share_run(&share[0]);
    int rc = TS_OK;
    for (size_t i = 0; i < 1 + RENDER_HELPERS; i++) {
        if (i > 0 && !started[i - 1])
            continue;
        if (i > 0)
            uv_thread_join(&tid[i - 1]);
        m->rendered += share[i].rendered;
        m->cpu.read += share[i].read_ns;
        m->cpu.build += share[i].stats.build_ns;
        m->cpu.write += share[i].stats.write_ns;
        if (rc == TS_OK)
            rc = share[i].err;
    }
    return rc;
}

/* Replaced text must leave the files even when no change follows: while
 * a scrub is due (a reader, often our own render thread, blocked it), retry
 * every SCRUB_RETRY_MS. */
#define SCRUB_RETRY_MS 100

static void on_scrub_timer(uv_timer_t *t)
{
    struct mirror *m = t->data;
    ts_mirror_db_scrub_retry(m->db);
    if (!ts_mirror_db_scrub_due(m->db))
        uv_timer_stop(t);
}

static void scrub_watch(struct mirror *m)
{
    if (!m->stopping && ts_mirror_db_scrub_due(m->db) &&
        !uv_is_active((uv_handle_t *)&m->scrub_timer))
        uv_timer_start(&m->scrub_timer, on_scrub_timer, SCRUB_RETRY_MS, SCRUB_RETRY_MS);
}

/* Removes the prepared files no render took (see apply_batch). */
static void prep_end(struct mirror *m)
{
    prep_join(m);
    ts_mirror_render_prep_free(m->prep);
    m->prep = NULL;
    ts_mirror_touched_free(&m->prepped);
}

/* Renders every pending thread, then records the cursor they cover (see
 * the file's opening paragraph for big flushes and 'files_unsynced'). */
static int render_flush(struct mirror *m)
{
    uint64_t cursor = 0, t0 = now_ns(), c0 = cpu_ns();
    int rc = ts_mirror_db_group_end(m->db);
    uint64_t c1 = cpu_ns();
    m->cpu.commit += c1 - c0;
    if (rc == TS_OK)
        rc = ts_mirror_db_bulk_end(m->db);
    m->cpu.index += cpu_ns() - c1;
    if (rc == TS_OK)
        rc = ts_mirror_db_cursor(m->db, &cursor);
    int big = m->pending.n >= RENDER_PARALLEL_MIN;
    if (rc == TS_OK && big)
        rc = ts_mirror_db_setting_set(m->db, "files_unsynced", "1");
    prep_join(m); /* m->prep is the render's now */
    if (rc == TS_OK)
        rc = render_pending(m, !big);
    uint64_t s0 = now_ns();
    if (rc == TS_OK && big)
        rc = ts_mirror_render_sync(m->o->dir);
    if (rc == TS_OK && big)
        rc = ts_mirror_db_setting_set(m->db, "files_unsynced", "0");
    m->wall_sync += now_ns() - s0;
    m->loop_busy += cpu_ns() - c0;
    if (rc != TS_OK)
        return rc;
    if (m->hooks->flushed)
        m->hooks->flushed(m->hooks->arg, &m->pending);
    ts_mirror_touched_clear(&m->pending);
    prep_end(m);
    m->last_flush_ns = now_ns();
    m->wall_render += m->last_flush_ns - t0;
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
static int render_catch_up(struct mirror *m, uint64_t cursor)
{
    char *v = NULL, *unsynced = NULL;
    int rc = ts_mirror_db_setting_get(m->db, "rendered_seq", &v);
    if (rc == TS_OK)
        rc = ts_mirror_db_setting_get(m->db, "files_unsynced", &unsynced);
    m->rendered_seq = v ? strtoull(v, NULL, 10) : 0;
    int dirty = unsynced && strcmp(unsynced, "1") == 0;
    free(v);
    free(unsynced);
    if (rc != TS_OK || cursor == 0 || (m->rendered_seq >= cursor && !dirty))
        return rc;
    rc = ts_mirror_db_foreach_thread(m->db, collect_id, &m->pending);
    if (rc != TS_OK)
        return rc == 1 ? TS_E_NOMEM : rc;
    if (dirty)
        fprintf(stderr,
                "threadsync: files of an unfinished render may not be on disk: "
                "rendering %zu threads\n",
                m->pending.n);
    else
        fprintf(stderr,
                "threadsync: files behind the database (rendered seq %" PRIu64 ", cursor %" PRIu64
                "): rendering %zu threads\n",
                m->rendered_seq, cursor, m->pending.n);
    return render_flush(m);
}

/* ---- the filter ------------------------------------------------------------ */

static int filter_setup(struct mirror *m)
{
    const struct ts_cli_opts *o = m->o;
    char *stored = NULL;
    int rc = ts_mirror_db_setting_get(m->db, "filter", &stored);
    if (rc != TS_OK)
        return rc;
    if (o->n_threads) {
        for (size_t i = 0; i < o->n_threads && rc == TS_OK; i++)
            rc = push_str(&m->keys, &m->n_keys, o->threads[i]);
    } else if (!o->all && stored && strncmp(stored, "keys\n", 5) == 0) {
        /* Follow what this mirror was built with. */
        for (char *p = stored + 5; *p && rc == TS_OK;) {
            size_t n = strcspn(p, "\n");
            char save = p[n];
            p[n] = '\0';
            if (n)
                rc = push_str(&m->keys, &m->n_keys, p);
            p[n] = save;
            p += n + (save != '\0');
        }
    }
    m->all = m->n_keys == 0;
    if (rc == TS_OK) {
        struct ts_buf text = TS_BUF_INIT;
        ts_buf_puts(&text, m->all ? "all" : "keys\n");
        for (size_t i = 0; i < m->n_keys; i++) {
            ts_buf_puts(&text, m->keys[i]);
            ts_buf_puts(&text, "\n");
        }
        rc = ts_buf_finish(&text, &m->filter_text, NULL);
    }
    if (rc == TS_OK) {
        m->filter_saved = stored && strcmp(stored, m->filter_text) == 0;
        /* No setting: a mirror that predates it followed every thread. */
        m->filter_covered = !stored || strcmp(stored, "all") == 0;
        for (size_t i = 0; !m->filter_covered && !m->all && i < m->n_keys; i++) {
            size_t n = strlen(m->keys[i]);
            int found = 0;
            for (const char *p = stored + 5; *p && !found;) {
                size_t klen = strcspn(p, "\n");
                found = klen == n && memcmp(p, m->keys[i], n) == 0;
                p += klen + (p[klen] != '\0');
            }
            if (!found)
                break;
            m->filter_covered = i + 1 == m->n_keys;
        }
        if (stored && strncmp(stored, "keys\n", 5) != 0 && strcmp(stored, "all") != 0)
            m->filter_covered = 0;
    }
    free(stored);
    return rc;
}

/* ---- verify --------------------------------------------------------------- */

static void verify_round_start(struct mirror *m);
static void verify_request(struct mirror *m, uint64_t after_id);

static void note_diff(struct mirror *m, const char *key, const char *field, const char *mv,
                      const char *sv)
{
    if (!m->first_diff[0])
        snprintf(m->first_diff, sizeof(m->first_diff),
                 "verify: thread %s: %s differs: mirror=%s server=%s", key, field, mv, sv);
    if (push_str(&m->suspects, &m->n_suspects, key) != TS_OK)
        local_failure(m, "out of memory", TS_E_NOMEM);
}

static void note_diff_u64(struct mirror *m, const char *key, const char *field, uint64_t mv,
                          uint64_t sv)
{
    char a[24], b[24];
    snprintf(a, sizeof(a), "%" PRIu64, mv);
    snprintf(b, sizeof(b), "%" PRIu64, sv);
    note_diff(m, key, field, a, b);
}

/* Compares one server thread with the mirror's copy. */
static int compare_thread(struct mirror *m, const struct page_entry *e)
{
    struct ts_mirror_thread *t;
    int rc = ts_mirror_db_thread_by_key(m->db, e->key, &t);
    if (rc == TS_E_NOT_FOUND) {
        note_diff(m, e->key, "presence", "missing", "present");
        return TS_OK;
    }
    if (rc != TS_OK)
        return rc;
    char hex[TS_DIGEST_HEX_LEN + 1];
    rc = ts_digest_thread(&t->thread, (const Threadsync__Comment *const *)t->comments,
                          t->n_comments, hex);
    if (rc == TS_OK) {
        if (t->thread.id != e->id)
            note_diff_u64(m, e->key, "id", t->thread.id, e->id);
        else if (t->thread.comment_count != e->comment_count)
            note_diff_u64(m, e->key, "comment_count", t->thread.comment_count, e->comment_count);
        else if (t->n_comments != e->comments)
            note_diff_u64(m, e->key, "comments", t->n_comments, e->comments);
        else if (strcmp(hex, e->digest) != 0)
            note_diff(m, e->key, "digest", hex, e->digest);
        else {
            m->v_threads++;
            m->v_comments += e->comments;
        }
    }
    ts_mirror_thread_free(t);
    return rc;
}

static int collect_unseen(void *arg, const Threadsync__Thread *t)
{
    struct mirror *m = arg;
    if (!ts_mirror_touched_has(&m->seen, t->id))
        note_diff(m, t->key, "presence", "present", "missing");
    return 0;
}

static void verify_round_end(struct mirror *m)
{
    if (m->stopping)
        return;
    if (m->round == 0 && m->round_all) {
        int rc = ts_mirror_db_foreach_thread(m->db, collect_unseen, m);
        if (rc != TS_OK) {
            local_failure(m, "cannot read the mirror", rc);
            return;
        }
    }
    if (m->n_suspects == 0) {
        if (m->round == 0)
            printf("verify: ok seq=%" PRIu64 " threads=%" PRIu64 " comments=%" PRIu64 "\n",
                   m->v_seq, m->v_threads, m->v_comments);
        else
            printf("verify: ok seq=%" PRIu64 " threads=%" PRIu64 " comments=%" PRIu64
                   " (after %d re-check%s)\n",
                   m->v_seq, m->v_threads, m->v_comments, m->round, m->round == 1 ? "" : "s");
        stop(m, TS_CLI_EXIT_OK);
        return;
    }
    if (m->round + 1 >= VERIFY_ROUNDS) {
        printf("%s\n", m->first_diff);
        stop(m, TS_CLI_EXIT_REFUSED);
        return;
    }
    /* Re-check what differed: it may have been moving under us. */
    m->round++;
    m->round_all = 0;
    free_strv(m->round_keys, m->n_round_keys);
    m->round_keys = m->suspects;
    m->n_round_keys = m->n_suspects < VERIFY_KEYS_MAX ? m->n_suspects : VERIFY_KEYS_MAX;
    for (size_t i = m->n_round_keys; i < m->n_suspects; i++)
        free(m->suspects[i]);
    m->suspects = NULL;
    m->n_suspects = 0;
    verify_round_start(m);
}

/* Compares the waiting page once the mirror holds exactly the state of its
 * seq (or later: then differences are re-checked). */
static void verify_maybe_compare(struct mirror *m)
{
    if (!m->waiting || m->stopping)
        return;
    uint64_t cursor = 0;
    int rc = ts_mirror_db_cursor(m->db, &cursor);
    if (rc != TS_OK) {
        local_failure(m, "cannot read the mirror", rc);
        return;
    }
    if (cursor < m->want_seq)
        return;
    m->waiting = 0;
    if (m->want_seq > m->v_seq)
        m->v_seq = m->want_seq;
    for (size_t i = 0; i < m->n_page && !m->stopping; i++) {
        if (m->round == 0 && m->round_all &&
            ts_mirror_touched_add(&m->seen, m->page[i].id) != TS_OK) {
            local_failure(m, "out of memory", TS_E_NOMEM);
            return;
        }
        rc = compare_thread(m, &m->page[i]);
        if (rc != TS_OK) {
            local_failure(m, "cannot read the mirror", rc);
            return;
        }
    }
    if (!m->round_all) {
        /* Keys the server left out: threads it does not have. */
        for (size_t k = 0; k < m->n_round_keys && !m->stopping; k++) {
            int found = 0;
            for (size_t i = 0; i < m->n_page && !found; i++)
                found = strcmp(m->page[i].key, m->round_keys[k]) == 0;
            if (found)
                continue;
            struct ts_mirror_thread *t;
            rc = ts_mirror_db_thread_by_key(m->db, m->round_keys[k], &t);
            if (rc == TS_OK) {
                ts_mirror_thread_free(t);
                note_diff(m, m->round_keys[k], "presence", "present", "missing");
            } else if (rc != TS_E_NOT_FOUND) {
                local_failure(m, "cannot read the mirror", rc);
                return;
            }
        }
    }
    page_clear(m);
    if (m->stopping)
        return;
    if (m->round_all && m->next_after_id)
        verify_request(m, m->next_after_id);
    else
        verify_round_end(m);
}

static void on_digest(void *arg, int err, const Threadsync__Error *detail,
                      const Threadsync__DigestResult *r)
{
    struct mirror *m = arg;
    if (m->stopping)
        return;
    if (err != TS_OK) {
        progress_end(m);
        ts_cli_print_error(stderr, err, detail, "verify");
        stop(m, ts_cli_exit_code(err));
        return;
    }
    page_clear(m);
    m->page = calloc(r->n_threads ? r->n_threads : 1, sizeof(*m->page));
    if (!m->page) {
        local_failure(m, "out of memory", TS_E_NOMEM);
        return;
    }
    for (size_t i = 0; i < r->n_threads; i++) {
        const Threadsync__ThreadDigest *td = r->threads[i];
        struct page_entry *e = &m->page[m->n_page];
        if (!(e->key = strdup(td->key ? td->key : ""))) {
            local_failure(m, "out of memory", TS_E_NOMEM);
            return;
        }
        m->n_page++;
        e->id = td->id;
        e->comments = td->comments;
        e->version = td->version;
        e->comment_count = td->comment_count;
        snprintf(e->digest, sizeof(e->digest), "%s", td->digest ? td->digest : "");
    }
    m->want_seq = r->seq;
    m->next_after_id = r->next_after_id;
    m->waiting = 1;
    verify_maybe_compare(m);
}

static void verify_request(struct mirror *m, uint64_t after_id)
{
    const char *const *keys = m->round_all ? NULL : (const char *const *)m->round_keys;
    size_t n = m->round_all ? 0 : m->n_round_keys;
    int rc = ts_client_digest(m->c, keys, n, after_id, on_digest, m);
    if (rc != TS_OK) {
        progress_end(m);
        ts_cli_print_error(stderr, rc, NULL, "verify");
        stop(m, ts_cli_exit_code(rc));
    }
}

static void verify_round_start(struct mirror *m)
{
    /* Report what still differs in the last round, not what settled. */
    m->first_diff[0] = '\0';
    verify_request(m, 0);
}

static void verify_begin(struct mirror *m)
{
    m->round = 0;
    m->round_all = m->all;
    if (!m->all) {
        for (size_t i = 0; i < m->n_keys && i < VERIFY_KEYS_MAX; i++)
            if (push_str(&m->round_keys, &m->n_round_keys, m->keys[i]) != TS_OK) {
                local_failure(m, "out of memory", TS_E_NOMEM);
                return;
            }
    }
    verify_round_start(m);
}

/* ---- the subscription ------------------------------------------------------ */

static void caught_up(struct mirror *m)
{
    if (m->caught_up)
        return;
    m->caught_up = 1;
    if (!m->filter_saved && !m->verify) {
        /* Only now: a crash during a resync for a new filter must not leave
         * the new filter recorded with the old cursor. */
        int rc = ts_mirror_db_setting_set(m->db, "filter", m->filter_text);
        if (rc != TS_OK) {
            local_failure(m, "cannot write the mirror", rc);
            return;
        }
        m->filter_saved = 1;
    }
    progress(m, 1);
    progress_end(m);
    if (m->verify)
        verify_begin(m);
    else if (m->o->once)
        stop(m, TS_CLI_EXIT_OK);
}

static void on_group_timer(uv_timer_t *t)
{
    struct mirror *m = t->data;
    uint64_t c0 = cpu_ns();
    int rc = ts_mirror_db_group_end(m->db);
    m->cpu.commit += cpu_ns() - c0;
    m->loop_busy += cpu_ns() - c0;
    if (rc != TS_OK)
        local_failure(m, "cannot write the mirror", rc);
}

/* Creates the queued threads' files until told it is done. It alone uses
 * m->prep until prep_join returns. */
static void prep_main(void *arg)
{
    struct mirror *m = arg;
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
    m->cpu.prep += cpu_ns() - c0;
    uv_mutex_unlock(&m->pq.mu);
}

/* Waits for every queued key's files and ends the thread. */
static void prep_join(struct mirror *m)
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
static void prep_threads(struct mirror *m, const Threadsync__Events *ev)
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
    m->loop_busy += cpu_ns() - c0;
}

/* Opens a group unless one is open (see the file's opening paragraph). */
static int group_open(struct mirror *m)
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
static int group_account(struct mirror *m, size_t n, int now)
{
    m->group_events += n;
    if (!ts_mirror_db_group_is_open(m->db) || !(now || m->group_events >= GROUP_MAX_EVENTS ||
                                                now_ns() - m->group_start_ns >= GROUP_MAX_NS))
        return TS_OK;
    uv_timer_stop(&m->group_timer);
    uint64_t c0 = cpu_ns();
    int rc = ts_mirror_db_group_end(m->db);
    m->cpu.commit += cpu_ns() - c0;
    return rc;
}

/* Commits every batch in the database before the callback that delivered
 * it returns, or, while catching up, within GROUP_MAX_NS of the group's
 * first batch (see the file's opening paragraph). */
static int apply_batch(struct mirror *m, const Threadsync__Events *ev)
{
    int rc = TS_OK;
    if (m->writer && !ev->caught_up) {
        uint64_t c0 = cpu_ns();
        rc = ts_mirror_writer_push(m->writer, ev);
        m->loop_busy += cpu_ns() - c0;
        if (rc != TS_OK) {
            local_failure(m, "cannot write the mirror", rc);
            return rc;
        }
        m->events += ev->n_events;
        m->pushed_seq = ev->last_seq;
        prep_threads(m, ev);
        return TS_OK;
    }
    if ((rc = writer_end(m)) != TS_OK) {
        local_failure(m, "cannot write the mirror", rc);
        return rc;
    }
    uint64_t c0 = cpu_ns();
    if (!ev->caught_up)
        rc = group_open(m);
    if (rc == TS_OK)
        rc = ts_mirror_db_apply_events(m->db, ev, &m->pending);
    m->cpu.apply += cpu_ns() - c0;
    if (rc == TS_OK)
        rc = group_account(m, ev->n_events, ev->caught_up);
    m->loop_busy += cpu_ns() - c0;
    if (rc != TS_OK) {
        local_failure(m, "cannot write the mirror", rc);
        return rc;
    }
    m->events += ev->n_events;
    return TS_OK;
}

/* See the file's opening paragraph for when files are rewritten. */
static int flush_due(const struct mirror *m, const Threadsync__Events *ev)
{
    if (ev->caught_up)
        return 1;
    if (m->from_scratch && !m->caught_up)
        return 0;
    return now_ns() - m->last_flush_ns >= m->flush_gap_ns;
}

static void on_sub_result(void *arg, uint64_t from_seq, int snapshot)
{
    struct mirror *m = arg;
    if (snapshot && !m->progress_line)
        fprintf(stderr,
                "threadsync: cursor %" PRIu64 " is older than the server keeps: "
                "taking a snapshot\n",
                from_seq < m->start_cursor ? m->start_cursor : from_seq);
}

static void on_sub_events(void *arg, const Threadsync__Events *ev)
{
    struct mirror *m = arg;
    if (m->stopping)
        return;
    uint64_t cursor = 0;
    if (m->waiting && ts_mirror_db_cursor(m->db, &cursor) == TS_OK && cursor < m->want_seq) {
        /* Split a batch that crosses the seq verify compares at. */
        size_t k = 0;
        while (k < ev->n_events && ev->events[k]->seq <= m->want_seq)
            k++;
        if (k < ev->n_events) {
            Threadsync__Events a = *ev, b = *ev;
            a.n_events = k;
            a.last_seq = m->want_seq;
            a.caught_up = 0;
            if (apply_batch(m, &a) != TS_OK)
                return;
            verify_maybe_compare(m);
            if (m->stopping)
                return;
            b.events += k;
            b.n_events -= k;
            ev = &b;
            if (apply_batch(m, &b) != TS_OK)
                return;
            goto applied;
        }
    }
    if (apply_batch(m, ev) != TS_OK)
        return;
applied:
    if (ev->caught_up && !m->caught_up)
        m->wall_caught_up = now_ns() - m->start_ns; /* stored; not yet rendered */
    if (flush_due(m, ev)) {
        int rc = render_flush(m);
        if (rc != TS_OK) {
            local_failure(m, "cannot render", rc);
            return;
        }
    }
    progress(m, 0);
    if (m->hooks->events)
        m->hooks->events(m->hooks->arg, ev);
    if (ev->caught_up)
        caught_up(m);
    verify_maybe_compare(m);
}

static void on_snap_begin(void *arg, const Threadsync__SnapshotBegin *b)
{
    struct mirror *m = arg;
    if (m->stopping)
        return;
    int rc = writer_end(m);
    if (rc == TS_OK)
        rc = ts_mirror_db_snapshot_begin(m->db, b->seq);
    if (rc != TS_OK) {
        local_failure(m, "cannot write the mirror", rc);
        return;
    }
    m->snapshots++;
    m->first_sync = 1;
    progress(m, 1);
}

static void on_snap_chunk(void *arg, const Threadsync__SnapshotChunk *chunk)
{
    struct mirror *m = arg;
    if (m->stopping)
        return;
    /* Chunks share groups as batches do: a snapshot's comments come thread
     * by thread, out of id order, so a commit per chunk rewrote pages all
     * over the table for every chunk. */
    uint64_t c0 = cpu_ns();
    int rc = group_open(m);
    if (rc == TS_OK)
        rc = ts_mirror_db_snapshot_apply_chunk(m->db, chunk, &m->pending);
    m->cpu.apply += cpu_ns() - c0;
    if (rc == TS_OK)
        rc = group_account(m, chunk->n_threads + chunk->n_comments, 0);
    m->loop_busy += cpu_ns() - c0;
    if (rc != TS_OK) {
        local_failure(m, "cannot write the mirror", rc);
        return;
    }
    m->snap_threads += chunk->n_threads;
    m->snap_comments += chunk->n_comments;
    progress(m, 0);
}

static void on_snap_end(void *arg, const Threadsync__SnapshotEnd *e)
{
    struct mirror *m = arg;
    if (m->stopping)
        return;
    /* In a bulk fill, end moves the staged comments: commit time. */
    uint64_t c0 = cpu_ns();
    int rc = ts_mirror_db_snapshot_end(m->db, e->seq, &m->pending);
    m->cpu.commit += cpu_ns() - c0;
    m->loop_busy += cpu_ns() - c0;
    if (rc == TS_OK && !(m->from_scratch && !m->caught_up))
        rc = render_flush(m);
    if (rc != TS_OK) {
        local_failure(m, "cannot write the mirror", rc);
        return;
    }
    progress(m, 1);
    if (m->hooks->reset)
        m->hooks->reset(m->hooks->arg, e->seq);
    verify_maybe_compare(m);
}

static void on_sub_error(void *arg, int err, const Threadsync__Error *detail)
{
    struct mirror *m = arg;
    if (m->stopping)
        return;
    progress_end(m);
    ts_cli_print_error(stderr, err, detail, m->verify ? "verify" : "mirror");
    stop(m, ts_cli_exit_code(err));
}

static void on_state(void *arg, const struct ts_client_state_info *info)
{
    struct mirror *m = arg;
    if (m->stopping)
        return;
    switch (info->state) {
    case TS_CLIENT_READY:
        m->ever_ready = 1;
        if (info->welcome && info->welcome->last_seq > m->head)
            m->head = info->welcome->last_seq;
        if (!m->progress_line)
            fprintf(stderr, "threadsync: connected to %s\n", info->server);
        break;
    case TS_CLIENT_DISCONNECTED:
        /* A typo in --server must not look like a quiet, empty feed. */
        if (!m->ever_ready && info->failures >= m->o->n_servers) {
            progress_end(m);
            ts_cli_print_connect_failure(stderr, info->server, info->err);
            stop(m, TS_CLI_EXIT_CONN);
            break;
        }
        progress_end(m);
        fprintf(stderr, "threadsync: disconnected from %s: %s; reconnecting\n", info->server,
                ts_err_message(info->err));
        break;
    case TS_CLIENT_FAILED:
    case TS_CLIENT_CONNECTING:
        break; /* FAILED is reported by the subscription's on_error */
    }
}

static void on_signal(uv_signal_t *s, int signum)
{
    (void)signum;
    stop(s->data, TS_CLI_EXIT_OK);
}

/* ---- the commands ------------------------------------------------------------ */

/* One line on where a run's time went: wall time, the process's CPU time,
 * and the CPU seconds of each phase: receive is the loop thread's time
 * outside the others (TLS, decoding, callbacks, copying batches for the
 * writer); apply the SQLite inserts, and during a first sync the whole
 * writer thread (its commits too); commit the loop's own group commits.
 * Phases on several threads (render) add up, so they may exceed the wall
 * time; the *_wall figures are wall time: the render and its final syncfs,
 * and the moment the sync was caught up (stored, before its render). */
static void timing_report(const struct mirror *m)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
    double sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    double loop = (double)cpu_ns() / 1e9;
    double on_loop = (double)m->loop_busy / 1e9;
    fprintf(stderr,
            "threadsync: %s timing wall=%.3fs cpu=%.3fs user=%.3f sys=%.3f receive=%.3f "
            "apply=%.3f commit=%.3f index=%.3f prep=%.3f read=%.3f build=%.3f write=%.3f "
            "render_wall=%.3f "
            "sync_wall=%.3f caught_up_wall=%.3f\n",
            m->verify ? "verify" : "mirror", (double)(now_ns() - m->start_ns) / 1e9, user + sys,
            user, sys, loop > on_loop ? loop - on_loop : 0.0, (double)m->cpu.apply / 1e9,
            (double)m->cpu.commit / 1e9, (double)m->cpu.index / 1e9, (double)m->cpu.prep / 1e9,
            (double)m->cpu.read / 1e9, (double)m->cpu.build / 1e9, (double)m->cpu.write / 1e9,
            (double)m->wall_render / 1e9, (double)m->wall_sync / 1e9,
            (double)m->wall_caught_up / 1e9);
}

static int run(const struct ts_cli_opts *o, struct ts_client_config *cfg, int verify,
               const struct ts_cli_mirror_hooks *hooks)
{
    static const struct ts_cli_mirror_hooks no_hooks = {0};
    struct mirror m = {
        .o = o, .hooks = hooks ? hooks : &no_hooks, .verify = verify, .exit_code = TS_CLI_EXIT_OK};
    m.loop = uv_default_loop();
    m.tty = isatty(STDERR_FILENO);
    m.timing = getenv("THREADSYNC_MIRROR_TIMING") != NULL;
    m.start_ns = m.last_flush_ns = now_ns();
    const char *what = verify ? "verify" : "mirror";
    if (verify) {
        char path[4096];
        struct stat st;
        snprintf(path, sizeof(path), "%s/mirror.db", o->dir);
        if (stat(path, &st) != 0) {
            fprintf(stderr, "error: verify: no mirror in %s (run threadsync mirror first)\n",
                    o->dir);
            return TS_CLI_EXIT_CONN;
        }
    }
    int rc = ts_mirror_db_open(o->dir, &m.db);
    if (rc != TS_OK) {
        fprintf(stderr, "error: %s: cannot open %s/mirror.db (%s)\n", what, o->dir,
                ts_err_name(rc));
        return TS_CLI_EXIT_CONN;
    }
    uint64_t cursor = 0;
    rc = ts_mirror_db_cursor(m.db, &cursor);
    if (rc == TS_OK)
        rc = filter_setup(&m);
    if (rc == TS_OK)
        rc = render_catch_up(&m, cursor);
    int code = TS_CLI_EXIT_CONN;
    if (rc != TS_OK) {
        fprintf(stderr, "error: %s: cannot read %s/mirror.db (%s)\n", what, o->dir,
                ts_err_name(rc));
        goto out;
    }
    uint64_t since = cursor;
    if (cursor && !m.filter_covered) {
        /* Threads the old filter left out have history before the cursor. */
        fprintf(stderr, "threadsync: the thread filter changed: syncing from the start\n");
        since = 0;
    }
    m.start_cursor = cursor;
    m.first_sync = since == 0;
    m.from_scratch = since == 0;
    m.flush_gap_ns = RENDER_EVERY_NS;
    if (m.from_scratch && (rc = ts_mirror_db_bulk_begin(m.db)) != TS_OK) {
        fprintf(stderr, "error: %s: cannot write %s/mirror.db (%s)\n", what, o->dir,
                ts_err_name(rc));
        goto out;
    }
    /* A writer that cannot start is only a slower first sync. */
    if (m.from_scratch && !verify &&
        ts_mirror_writer_start(m.db, GROUP_MAX_EVENTS, WRITER_QUEUE_BYTES, &m.writer) != TS_OK)
        m.writer = NULL;
    if (m.writer && ts_mirror_render_prep_new(o->dir, &m.prep) != TS_OK)
        m.prep = NULL;
    if (m.prep && uv_mutex_init(&m.pq.mu) == 0) {
        uv_cond_init(&m.pq.cv);
        m.pq.started = uv_thread_create(&m.pq.tid, prep_main, &m) == 0;
        if (!m.pq.started) {
            uv_cond_destroy(&m.pq.cv);
            uv_mutex_destroy(&m.pq.mu);
        }
    }

    cfg->on_state = on_state;
    cfg->state_arg = &m;
    cfg->reconnect = !verify;
    rc = ts_client_new(m.loop, cfg, &m.c);
    if (rc != TS_OK) {
        ts_cli_print_error(stderr, rc, NULL, what);
        code = ts_cli_exit_code(rc);
        goto out;
    }
    uv_timer_init(m.loop, &m.group_timer);
    m.group_timer.data = &m;
    uv_timer_init(m.loop, &m.scrub_timer);
    m.scrub_timer.data = &m;
    uv_signal_init(m.loop, &m.sigint);
    uv_signal_init(m.loop, &m.sigterm);
    m.sigint.data = m.sigterm.data = &m;
    uv_signal_start(&m.sigint, on_signal, SIGINT);
    uv_signal_start(&m.sigterm, on_signal, SIGTERM);
    static const struct ts_client_sub_cbs cbs = {
        .on_result = on_sub_result,
        .on_events = on_sub_events,
        .on_snapshot_begin = on_snap_begin,
        .on_snapshot_chunk = on_snap_chunk,
        .on_snapshot_end = on_snap_end,
        .on_error = on_sub_error,
    };
    if (m.hooks->start && m.hooks->start(m.hooks->arg, m.loop, cursor) != 0)
        stop(&m, TS_CLI_EXIT_CONN);
    else
        rc =
            ts_client_subscribe(m.c, m.all, (const char *const *)m.keys, m.n_keys, since, &cbs, &m);
    if (rc != TS_OK) {
        ts_cli_print_error(stderr, rc, NULL, what);
        stop(&m, ts_cli_exit_code(rc));
    }
    uv_run(m.loop, UV_RUN_DEFAULT);
    if (m.hooks->done)
        m.hooks->done(m.hooks->arg);
    uv_loop_close(m.loop);
    progress_end(&m);
    code = m.exit_code;
    uint64_t end = 0;
    ts_mirror_db_cursor(m.db, &end);
    struct ts_mirror_counts counts = {0};
    ts_mirror_db_counts(m.db, 0, &counts);
    fprintf(stderr,
            "threadsync: %s stopped seq=%" PRIu64 " from=%" PRIu64 " events=%" PRIu64
            " snapshots=%u rendered=%" PRIu64 " threads=%" PRIu64 " comments=%" PRIu64 "\n",
            what, end, cursor, m.events, m.snapshots, m.rendered, counts.threads, counts.comments);
    if (m.timing)
        timing_report(&m);
out:
    writer_end(&m); /* only on the early exits: stop() ended it otherwise */
    prep_end(&m);
    ts_mirror_db_close(m.db);
    for (size_t h = 0; h < RENDER_HELPERS; h++)
        ts_mirror_db_close(m.helper_db[h]);
    ts_mirror_touched_free(&m.pending);
    ts_mirror_touched_free(&m.seen);
    page_clear(&m);
    free_strv(m.keys, m.n_keys);
    free_strv(m.round_keys, m.n_round_keys);
    free_strv(m.suspects, m.n_suspects);
    free(m.filter_text);
    fflush(stdout);
    return code;
}

int ts_cli_mirror_run(const struct ts_cli_opts *o, struct ts_client_config *cfg)
{
    return run(o, cfg, 0, NULL);
}

int ts_cli_mirror_run_hooked(const struct ts_cli_opts *o, struct ts_client_config *cfg,
                             const struct ts_cli_mirror_hooks *hooks)
{
    return run(o, cfg, 0, hooks);
}

int ts_cli_verify_run(const struct ts_cli_opts *o, struct ts_client_config *cfg)
{
    return run(o, cfg, 1, NULL);
}
