/*
 * ts_cli_mirror: `threadsync mirror` and `threadsync verify` (see
 * ts_cli_mirror.h for what they promise).
 *
 * Invariants:
 * - The mirror's cursor is the database's. The subscription starts from it,
 *   and every batch and snapshot piece is handed to ts_mirror_sync (the sync
 *   policy: group commit, the writer thread, render scheduling; see
 *   client/mirror/ts_mirror_sync.c) inside the callback that delivered it.
 *   A batch or group that cannot be committed ends the program (exit 3)
 *   rather than let the library resume past data the database does not
 *   hold.
 * - SIGINT/SIGTERM only set the stop in motion from the loop: the batch
 *   being applied (a synchronous callback) always finishes first.
 * - verify compares at one seq: it asks for the server's Digest (state as
 *   of seq S) only once caught up, applies events up to exactly S (a batch
 *   crossing S is split there) and compares then. Threads that differ are
 *   asked again (content moving while posts continue, or a snapshot's
 *   newer-than-S content, settles); only a difference seen VERIFY_ROUNDS
 *   times in a row is reported.
 *
 * Load: see ts_mirror_sync.c for the database and the files; a first sync
 * of 10,000 comments arrives in a few dozen 256 KiB batches. With
 * THREADSYNC_MIRROR_TIMING set in the environment, the program prints where
 * the time went when it stops (timing_report).
 */
#include "ts_cli_mirror.h"

#include <inttypes.h>
#include <signal.h>
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
#include "ts_mirror_sync.h"

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
    struct ts_mirror_sync *sync; /* the database, its writer and the renders */
    struct ts_mirror_db *db;     /* sync's, for the filter and verify */
    uv_signal_t sigint, sigterm;
    int verify;

    /* the subscription's filter */
    int all;
    char **keys; /* owned, each owned */
    size_t n_keys;
    char *filter_text;  /* canonical form kept in the setting 'filter' */
    int filter_saved;   /* the setting holds filter_text */
    int filter_covered; /* the stored filter includes ours: the cursor holds */
    int timing;         /* THREADSYNC_MIRROR_TIMING */

    /* progress and summary */
    uint64_t start_cursor;
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
    uint64_t now = uv_hrtime();
    if (!force && now - m->last_progress_ns < PROGRESS_EVERY_NS)
        return;
    m->last_progress_ns = now;
    double secs = (double)(now - m->start_ns) / 1e9;
    uint64_t cursor = ts_mirror_sync_cursor(m->sync);
    const struct ts_mirror_sync_stats *st = ts_mirror_sync_stats(m->sync);
    uint64_t items = st->events + st->snap_threads + st->snap_comments;
    fprintf(stderr, "\r\033[Ksync: %" PRIu64 " events", st->events);
    if (st->snapshots)
        fprintf(stderr, ", snapshot %" PRIu64 " threads %" PRIu64 " comments", st->snap_threads,
                st->snap_comments);
    fprintf(stderr, ", %" PRIu64 " threads rendered, seq %" PRIu64, st->rendered, cursor);
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

static void stop(struct mirror *m, int exit_code)
{
    if (m->stopping)
        return;
    m->stopping = 1;
    m->exit_code = exit_code;
    int rc = ts_mirror_sync_drain(m->sync);
    if (rc != TS_OK) {
        progress_end(m);
        fprintf(stderr, "error: %s: cannot write the mirror in %s (%s)\n",
                m->verify ? "verify" : "mirror", m->o->dir, ts_err_name(rc));
        m->exit_code = TS_CLI_EXIT_CONN;
    }
    if (ts_mirror_sync_flush(m->sync) != TS_OK && m->exit_code == TS_CLI_EXIT_OK)
        m->exit_code = TS_CLI_EXIT_CONN;
    ts_client_close(m->c, NULL, NULL);
    if (m->hooks->stop)
        m->hooks->stop(m->hooks->arg);
    ts_mirror_sync_stop(m->sync);
    uv_close((uv_handle_t *)&m->sigint, NULL);
    uv_close((uv_handle_t *)&m->sigterm, NULL);
}

static void local_failure(struct mirror *m, const char *what, int err)
{
    progress_end(m);
    fprintf(stderr, "error: %s: %s in %s (%s)\n", m->verify ? "verify" : "mirror", what, m->o->dir,
            ts_err_name(err));
    stop(m, TS_CLI_EXIT_CONN);
}

/* ---- rendering ----------------------------------------------------------- */

/* Files the database is ahead of (ts_mirror_sync_recover) are rendered
 * before anything else, with a line saying why. */
static int render_catch_up(struct mirror *m, uint64_t cursor)
{
    enum ts_mirror_sync_stale why;
    uint64_t rendered_seq = 0;
    size_t n = 0;
    int rc = ts_mirror_sync_recover(m->sync, cursor, &why, &rendered_seq, &n);
    if (rc != TS_OK || why == TS_MIRROR_SYNC_FRESH)
        return rc;
    if (why == TS_MIRROR_SYNC_UNSYNCED)
        fprintf(stderr,
                "threadsync: files of an unfinished render may not be on disk: "
                "rendering %zu threads\n",
                n);
    else
        fprintf(stderr,
                "threadsync: files behind the database (rendered seq %" PRIu64 ", cursor %" PRIu64
                "): rendering %zu threads\n",
                rendered_seq, cursor, n);
    return ts_mirror_sync_flush(m->sync);
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

static void on_sync_failed(void *arg, int err)
{
    local_failure(arg, "cannot write the mirror", err);
}

static void on_sync_flushed(void *arg, const struct ts_mirror_touched *ids)
{
    struct mirror *m = arg;
    if (m->hooks->flushed)
        m->hooks->flushed(m->hooks->arg, ids);
}

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

/* Stores ev (ts_mirror_sync_apply); a failure stops the mirror. */
static int apply_batch(struct mirror *m, const Threadsync__Events *ev)
{
    int rc = ts_mirror_sync_apply(m->sync, ev);
    if (rc != TS_OK)
        local_failure(m, "cannot write the mirror", rc);
    return rc;
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
    /* A relay first (the web edge's browsers): its frames come from the
     * wire, and waiting for this batch's commit and render would add their
     * fsyncs and a whole thread's rendering to every event's latency. */
    if (m->hooks->events)
        m->hooks->events(m->hooks->arg, ev);
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
applied:;
    int rc = ts_mirror_sync_applied(m->sync, ev);
    if (rc != TS_OK) {
        local_failure(m, "cannot render", rc);
        return;
    }
    progress(m, 0);
    if (ev->caught_up)
        caught_up(m);
    verify_maybe_compare(m);
}

static void on_snap_begin(void *arg, const Threadsync__SnapshotBegin *b)
{
    struct mirror *m = arg;
    if (m->stopping)
        return;
    int rc = ts_mirror_sync_snapshot_begin(m->sync, b->seq);
    if (rc != TS_OK) {
        local_failure(m, "cannot write the mirror", rc);
        return;
    }
    m->first_sync = 1;
    progress(m, 1);
}

static void on_snap_chunk(void *arg, const Threadsync__SnapshotChunk *chunk)
{
    struct mirror *m = arg;
    if (m->stopping)
        return;
    int rc = ts_mirror_sync_snapshot_chunk(m->sync, chunk);
    if (rc != TS_OK) {
        local_failure(m, "cannot write the mirror", rc);
        return;
    }
    progress(m, 0);
}

static void on_snap_end(void *arg, const Threadsync__SnapshotEnd *e)
{
    struct mirror *m = arg;
    if (m->stopping)
        return;
    int rc = ts_mirror_sync_snapshot_end(m->sync, e->seq);
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
 * and the moment the sync was caught up (stored, before its render).
 * kept=1: a first sync's render built its threads from the batches the
 * writer kept (ts_mirror_fill), read then counting that build. */
static void timing_report(const struct mirror *m)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
    double sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    double loop = (double)cpu_ns() / 1e9;
    const struct ts_mirror_sync_stats *st = ts_mirror_sync_stats(m->sync);
    double on_loop = (double)st->loop_busy / 1e9;
    fprintf(stderr,
            "threadsync: %s timing wall=%.3fs cpu=%.3fs user=%.3f sys=%.3f receive=%.3f "
            "apply=%.3f commit=%.3f index=%.3f prep=%.3f read=%.3f build=%.3f write=%.3f "
            "render_wall=%.3f "
            "sync_wall=%.3f caught_up_wall=%.3f kept=%u\n",
            m->verify ? "verify" : "mirror", (double)(uv_hrtime() - m->start_ns) / 1e9, user + sys,
            user, sys, loop > on_loop ? loop - on_loop : 0.0, (double)st->cpu_apply / 1e9,
            (double)st->cpu_commit / 1e9, (double)st->cpu_index / 1e9, (double)st->cpu_prep / 1e9,
            (double)st->cpu_read / 1e9, (double)st->cpu_build / 1e9, (double)st->cpu_write / 1e9,
            (double)st->wall_render / 1e9, (double)st->wall_sync / 1e9,
            (double)st->wall_caught_up / 1e9, st->fill_built);
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
    m.start_ns = uv_hrtime();
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
    const struct ts_mirror_sync_cbs sync_cbs = {&m, on_sync_failed, on_sync_flushed};
    int rc = ts_mirror_sync_open(o->dir, &sync_cbs, &m.sync);
    if (rc != TS_OK) {
        fprintf(stderr, "error: %s: cannot open %s/mirror.db (%s)\n", what, o->dir,
                ts_err_name(rc));
        return TS_CLI_EXIT_CONN;
    }
    m.db = ts_mirror_sync_db(m.sync);
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
    if ((rc = ts_mirror_sync_begin(m.sync, since, !verify)) != TS_OK) {
        fprintf(stderr, "error: %s: cannot write %s/mirror.db (%s)\n", what, o->dir,
                ts_err_name(rc));
        goto out;
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
    ts_mirror_sync_attach(m.sync, m.loop);
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
    const struct ts_mirror_sync_stats *st = ts_mirror_sync_stats(m.sync);
    fprintf(stderr,
            "threadsync: %s stopped seq=%" PRIu64 " from=%" PRIu64 " events=%" PRIu64
            " snapshots=%u rendered=%" PRIu64 " threads=%" PRIu64 " comments=%" PRIu64 "\n",
            what, end, cursor, st->events, st->snapshots, st->rendered, counts.threads,
            counts.comments);
    if (m.timing)
        timing_report(&m);
out:
    ts_mirror_sync_free(m.sync);
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
