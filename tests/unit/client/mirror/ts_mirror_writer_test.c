/*
 * ts_mirror_writer: batches applied in order on the writer thread, the
 * same rows and touched ids as applying them directly, everything
 * committed at drain, a bounded queue, the first failure stopping it, and
 * a process killed while the writer runs leaving whole batches with their
 * cursor.
 */
#include <check.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ts_check_main.h"
#include "ts_err.h"
#include "ts_mirror_db.h"
#include "ts_mirror_writer.h"
#include "ts_testnode.h"

static char tmpdir[64];
static char mdir[128];

static void setup(void)
{
    strcpy(tmpdir, "/tmp/ts_mirror_writer_test.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    snprintf(mdir, sizeof(mdir), "%s/m", tmpdir);
}

static void teardown(void)
{
    ts_test_rmtree(tmpdir);
}

/* Batch k (1-based) holds comments 10k+1 .. 10k+per of thread 1 + k % 3,
 * with seqs equal to the comment ids and last_seq 10k + per; status may
 * be forced to an invalid value (the CHECK then refuses the batch). */
#define PER INT64_C(4)
#define STEP INT64_C(10) /* seqs and ids of batch k start at STEP * k */
struct batch {
    Threadsync__Events ev;
    Threadsync__Event e[PER], *pe[PER];
    Threadsync__Thread t[PER];
    Threadsync__Comment c[PER];
    char body[PER][32];
};

static void batch_make(struct batch *b, unsigned k, int bad)
{
    threadsync__events__init(&b->ev);
    b->ev.events = b->pe;
    b->ev.n_events = PER;
    b->ev.last_seq = STEP * k + PER;
    static const char *const keys[] = {"site/a", "site/b", "site/c"};
    for (unsigned i = 0; i < PER; i++) {
        uint64_t id = STEP * k + i + 1;
        threadsync__thread__init(&b->t[i]);
        b->t[i].id = 1 + k % 3;
        b->t[i].key = (char *)keys[k % 3];
        b->t[i].title = "title";
        b->t[i].url = "https://example.org/";
        b->t[i].comment_count = (uint32_t)id;
        b->t[i].version = id;
        threadsync__comment__init(&b->c[i]);
        b->c[i].id = id;
        b->c[i].thread_id = 1 + k % 3;
        b->c[i].author_name = "Ann";
        snprintf(b->body[i], sizeof(b->body[i]), "body %u", (unsigned)id);
        b->c[i].body = b->body[i];
        b->c[i].created_at_ms = 1700000000000 + (int64_t)id;
        b->c[i].status = bad && i == PER - 1 ? (Threadsync__Status)7 : THREADSYNC__STATUS__VISIBLE;
        b->c[i].version = 1;
        threadsync__event__init(&b->e[i]);
        b->e[i].seq = id;
        b->e[i].thread = &b->t[i];
        b->e[i].comment = &b->c[i];
        b->pe[i] = &b->e[i];
    }
}

/* An integer as another connection sees the committed file. */
static int64_t committed_int(const char *sql)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/mirror.db", mdir);
    sqlite3 *s;
    ck_assert_int_eq(sqlite3_open_v2(path, &s, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st;
    ck_assert_int_eq(sqlite3_prepare_v2(s, sql, -1, &st, NULL), SQLITE_OK);
    int64_t v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_finalize(st);
    sqlite3_close(s);
    return v;
}

static void digests(struct ts_mirror_db *db, char out[3][65])
{
    for (int t = 0; t < 3; t++)
        ck_assert_int_eq(ts_mirror_db_digest(db, (uint64_t)t + 1, out[t]), TS_OK);
}

START_TEST(test_same_as_direct)
{
    /* 40 batches through the writer (groups of 6 events, a queue that
     * holds about two batches) end as 40 applied directly: rows, cursor,
     * touched. */
    char want[3][65], got[3][65];
    struct ts_mirror_touched t_direct = TS_MIRROR_TOUCHED_INIT, t_writer = TS_MIRROR_TOUCHED_INIT;
    char saved[128];
    snprintf(saved, sizeof(saved), "%s", mdir);
    snprintf(mdir, sizeof(mdir), "%s/direct", tmpdir);
    struct ts_mirror_db *db;
    ck_assert_int_eq(ts_mirror_db_open(mdir, &db), TS_OK);
    for (unsigned k = 1; k <= 40; k++) {
        struct batch b;
        batch_make(&b, k, 0);
        ck_assert_int_eq(ts_mirror_db_apply_events(db, &b.ev, &t_direct), TS_OK);
    }
    digests(db, want);
    ts_mirror_db_close(db);
    snprintf(mdir, sizeof(mdir), "%s", saved);

    ck_assert_int_eq(ts_mirror_db_open(mdir, &db), TS_OK);
    struct ts_mirror_writer *w;
    ck_assert_int_eq(ts_mirror_writer_start(db, 6, 2 * sizeof(struct batch), &w), TS_OK);
    for (unsigned k = 1; k <= 40; k++) {
        struct batch b;
        batch_make(&b, k, 0);
        ck_assert_int_eq(ts_mirror_writer_push(w, &b.ev), TS_OK);
        if (k == 20) {
            /* A drain hands the database back, all of it committed. */
            ck_assert_int_eq(ts_mirror_writer_drain(w, &t_writer), TS_OK);
            ck_assert_int_eq(committed_int("SELECT value FROM meta WHERE key = 'last_seq'"),
                             STEP * 20 + PER);
            ck_assert_int_eq(committed_int("SELECT count(*) FROM comments"), 20 * PER);
            ck_assert(!ts_mirror_db_group_is_open(db));
        }
    }
    uint64_t cpu = 0;
    ck_assert_int_eq(ts_mirror_writer_stop(w, &t_writer, &cpu), TS_OK);
    ck_assert_int_eq(committed_int("SELECT value FROM meta WHERE key = 'last_seq'"),
                     STEP * 40 + PER);
    ck_assert_int_eq(committed_int("SELECT count(*) FROM comments"), 40 * PER);
    digests(db, got);
    for (int t = 0; t < 3; t++)
        ck_assert_str_eq(got[t], want[t]);
    ck_assert_uint_eq(t_writer.n, t_direct.n);
    for (size_t i = 0; i < t_direct.n; i++)
        ck_assert_uint_eq(t_writer.ids[i], t_direct.ids[i]);
    ts_mirror_touched_free(&t_direct);
    ts_mirror_touched_free(&t_writer);
    ts_mirror_db_close(db);
    ck_assert_int_eq(ts_mirror_writer_stop(NULL, NULL, NULL), TS_OK);
}
END_TEST

START_TEST(test_failure_stops_it)
{
    /* Batch 3 is refused: the writer keeps nothing of its group, drops what
     * follows, and every later call says so. */
    struct ts_mirror_db *db;
    ck_assert_int_eq(ts_mirror_db_open(mdir, &db), TS_OK);
    struct ts_mirror_writer *w;
    ck_assert_int_eq(ts_mirror_writer_start(db, 1000, 1 << 20, &w), TS_OK);
    for (unsigned k = 1; k <= 5; k++) {
        struct batch b;
        batch_make(&b, k, k == 3);
        int rc = ts_mirror_writer_push(w, &b.ev);
        ck_assert(rc == TS_OK || rc == TS_E_IO);
    }
    ck_assert_int_eq(ts_mirror_writer_drain(w, NULL), TS_E_IO);
    struct batch b;
    batch_make(&b, 6, 0);
    ck_assert_int_eq(ts_mirror_writer_push(w, &b.ev), TS_E_IO);
    ck_assert_int_eq(ts_mirror_writer_stop(w, NULL, NULL), TS_E_IO);
    int64_t cursor = committed_int("SELECT value FROM meta WHERE key = 'last_seq'");
    ck_assert_int_lt(cursor, STEP * 3 + PER);
    ck_assert_int_eq(committed_int("SELECT count(*) FROM comments WHERE id > 30"), 0);
    ck_assert_int_eq(committed_int("SELECT count(*) FROM comments"),
                     cursor ? (cursor / STEP) * PER : 0);
    ts_mirror_db_close(db);
}
END_TEST

START_TEST(test_killed_keeps_whole_batches)
{
    /* Killed at once after pushing (groups still open, batches queued):
     * whatever committed is whole batches with the cursor of the last.
     * Each round drains at batch 30 + 5 round first, so something always
     * committed and the check below always has batches to look at. */
    for (int round = 0; round < 5; round++) {
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            struct ts_mirror_db *db;
            struct ts_mirror_writer *w;
            if (ts_mirror_db_open(mdir, &db) != TS_OK ||
                ts_mirror_writer_start(db, 3 * PER, 1 << 20, &w) != TS_OK)
                _exit(1);
            for (unsigned k = 1; k <= 60; k++) {
                struct batch b;
                batch_make(&b, k + 100 * (unsigned)round, 0);
                if (ts_mirror_writer_push(w, &b.ev) != TS_OK)
                    _exit(1);
                if (k == 30 + 5 * (unsigned)round && ts_mirror_writer_drain(w, NULL) != TS_OK)
                    _exit(1);
            }
            _exit(42); /* like kill -9: the writer thread dies mid-work */
        }
        int status;
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert(WIFEXITED(status));
        ck_assert_int_eq(WEXITSTATUS(status), 42);
        int64_t cursor = committed_int("SELECT value FROM meta WHERE key = 'last_seq'");
        int64_t base =
            INT64_C(1000) * round; /* seqs of this round's batch k: 10 (k + 100 round) + i */
        char q[160];
        snprintf(q, sizeof(q), "SELECT count(*) FROM comments WHERE id > %lld", (long long)base);
        int64_t n = committed_int(q);
        ck_assert_int_ge(cursor, base + STEP * (30 + 5 * round) + PER);
        ck_assert_int_eq((cursor - PER) % 10, 0);
        ck_assert_int_eq(n, (cursor - PER - base) / STEP * PER);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ts_mirror_writer");
    TCase *tc = tcase_create("writer");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_same_as_direct);
    tcase_add_test(tc, test_failure_stops_it);
    tcase_add_test(tc, test_killed_keeps_whole_batches);
    suite_add_tcase(s, tc);
    return ts_check_run(s);
}
