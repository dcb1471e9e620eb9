/*
 * Integration: `threadsync mirror` and `threadsync verify` against real
 * threadsyncd nodes: from empty, from a cursor, across a server restart,
 * after falling out of the retained window (snapshot), a tampered mirror,
 * and the HTML of deep, Unicode, partly deleted threads in headless
 * Chromium (screenshots kept in the build tree's test-artifacts/).
 *
 * Also: progress on a terminal (a pty) and none off one; a server list
 * with a dead entry and both down a while (rotation, backoff, cursor kept);
 * SIGKILLs during a first sync converging on a clean mirror's bytes, and
 * an interrupted (unsynced) render rendered again on the next start.
 *
 * `ts_mirror_test --acceptance` runs the acceptance case instead: 10,000
 * comments in 100 threads, verify while posts continue, SIGKILL and resume.
 *
 * `ts_mirror_test --moderation` runs moderation as mirrors see it: hides,
 * unhides, deletes, approvals and authors' edits and deletes followed live
 * and across a restart, before a snapshot, through a moderator's token, and
 * a moderated thread from a real node in Chromium. After each step the
 * rows, JSON and HTML show exactly the public view (checked against a
 * model of the thread), the count is the server's, verify passes, and text
 * no reader may see is in no byte of the database or its WAL.
 *
 * The mirror runs with a READER token, as a mirror site would. Each case
 * starts its own node; the mirror directory lives in the node's scratch
 * directory and goes with it.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pty.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ts_check_main.h"
#include "threadsync.pb-c.h"
#include "ts_err.h"
#include "ts_frame.h"
#include "ts_mirror_render.h"
#include "ts_testnode.h"

#define CHROMIUM "/usr/bin/chromium"

static struct ts_testnode node;
static int node_up;
static char mdir[512];        /* the mirror directory */
static char reader_file[512]; /* the reader token, for the CLI */
static char mod_file[512], poster_file[512];
static const char *mirror_token = reader_file; /* what mirror and verify run as */

static void write_token(char *path, size_t size, const char *role, const char *token)
{
    snprintf(path, size, "%s/%s.token", node.dir, role);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "%s\n", token);
    fclose(f);
}

static void start(const char *const *extra)
{
    ck_assert_int_eq(ts_testnode_start(&node, extra), TS_OK);
    node_up = 1;
    snprintf(mdir, sizeof(mdir), "%s/mirror", node.dir);
    write_token(reader_file, sizeof(reader_file), "reader", node.reader_token);
    write_token(mod_file, sizeof(mod_file), "moderator", node.moderator_token);
    write_token(poster_file, sizeof(poster_file), "poster", node.poster_token);
    mirror_token = reader_file;
}

static void teardown(void)
{
    if (node_up) {
        int status = ts_testnode_cleanup(&node);
        node_up = 0;
        ck_assert_msg(status == 0, "node exit status %d", status);
    }
}

/* ---- posting ---------------------------------------------------------------- */

/* Comments posted by post_many, per thread: ids in posting order. */
struct posted {
    size_t n_threads;
    char (*keys)[64];
    uint64_t **ids;
    size_t *n_ids;
    uint64_t last_seq;
    size_t total;
};

static void posted_free(struct posted *p)
{
    for (size_t t = 0; t < p->n_threads; t++)
        free(p->ids[t]);
    free(p->ids);
    free(p->n_ids);
    free(p->keys);
    memset(p, 0, sizeof(*p));
}

static void posted_init(struct posted *p, const char *prefix, size_t n_threads)
{
    memset(p, 0, sizeof(*p));
    p->n_threads = n_threads;
    p->keys = calloc(n_threads, sizeof(*p->keys));
    p->ids = calloc(n_threads, sizeof(*p->ids));
    p->n_ids = calloc(n_threads, sizeof(*p->n_ids));
    ck_assert(p->keys && p->ids && p->n_ids);
    for (size_t t = 0; t < n_threads; t++) {
        /* Every fourth key is not ASCII: file names must encode it. */
        if (t % 4 == 3)
            snprintf(p->keys[t], sizeof(p->keys[t]), "%s/caf\xc3\xa9 %zu", prefix, t);
        else
            snprintf(p->keys[t], sizeof(p->keys[t]), "%s/thread-%zu", prefix, t);
    }
}

static const char *const bodies[] = {
    "Plain text, nothing special.",
    ("\xe2\x80\x9c" /* split so the escape ends before the C */
     "Curly quotes\xe2\x80\x9d and \xe2\x80\x98single\xe2\x80\x99 ones"),
    "Emoji \xf0\x9f\x98\x80\xf0\x9f\x8e\x89 and a flag \xf0\x9f\x87\xab\xf0\x9f\x87\xb7",
    "Combining: e\xcc\x81 a\xcc\x8a n\xcc\x83 (decomposed accents)",
    "Two lines:\nsecond line here",
    "<b>not bold</b> & not a tag",
};

/* Posts n comments round-robin over p's threads, WINDOW at a time on one
 * connection (pipelined). About a third are replies to an earlier comment
 * of the same thread. Records ids and the last seq in p. */
static void post_many(struct posted *p, size_t n, unsigned seed)
{
    enum { WINDOW = 64 };
    struct ts_raw *r;
    ck_assert_int_eq(ts_raw_connect(node.addr, node.ca, "threadsync/1", &r), TS_OK);
    int role;
    ck_assert_int_eq(ts_raw_hello(r, node.poster_token, &role), TS_OK);
    static uint64_t rid_base;
    rid_base += 1000000;
    size_t done = 0;
    while (done < n) {
        size_t k = n - done < WINDOW ? n - done : WINDOW;
        size_t thread_of[WINDOW];
        for (size_t i = 0; i < k; i++) {
            size_t idx = done + i;
            size_t t = (p->total + idx) % p->n_threads;
            thread_of[i] = t;
            char key[64], body[256], name[32];
            snprintf(key, sizeof(key), "mt-%d-%u-%" PRIu64 "-%zu", (int)getpid(), seed, rid_base,
                     idx);
            snprintf(body, sizeof(body), "%s #%zu",
                     bodies[((p->total + idx) / p->n_threads + seed) % 6], p->total + idx);
            snprintf(name, sizeof(name), idx % 5 == 0 ? "Zo\xc3\xab %zu" : "user%zu", idx % 17);
            Threadsync__Frame f = THREADSYNC__FRAME__INIT;
            Threadsync__Post post = THREADSYNC__POST__INIT;
            post.request_id = rid_base + idx + 1;
            post.idempotency_key = key;
            post.thread_key = p->keys[t];
            post.author_name = name;
            post.body = body;
            if (p->n_ids[t] && (idx * 2654435761u + seed) % 3 == 0)
                post.parent_id = p->ids[t][(idx * 40503u + seed) % p->n_ids[t]];
            f.msg_case = THREADSYNC__FRAME__MSG_POST;
            f.post = &post;
            ck_assert_int_eq(ts_raw_send_frame(r, &f), TS_OK);
        }
        for (size_t got = 0; got < k;) {
            Threadsync__Frame *in;
            ck_assert_int_eq(ts_raw_recv_nonping(r, 30000, &in), TS_OK);
            ck_assert_msg(in->msg_case == THREADSYNC__FRAME__MSG_RESULT,
                          "post refused: frame case %d code %d", (int)in->msg_case,
                          in->msg_case == THREADSYNC__FRAME__MSG_ERROR ? (int)in->error->code : 0);
            uint64_t i = in->result->request_id - rid_base - 1 - done;
            ck_assert_uint_lt(i, k);
            size_t t = thread_of[i];
            uint64_t *v = realloc(p->ids[t], (p->n_ids[t] + 1) * sizeof(*v));
            ck_assert_ptr_nonnull(v);
            p->ids[t] = v;
            v[p->n_ids[t]++] = in->result->post->comment_id;
            if (in->result->post->seq > p->last_seq)
                p->last_seq = in->result->post->seq;
            ts_frame_free(in);
            got++;
        }
        done += k;
    }
    p->total += n;
    ts_raw_close(r);
}

/* One post, sequential, returning its id (and seq). */
static uint64_t post_one(const char *thread, uint64_t parent, const char *name, const char *body,
                         uint64_t *seq)
{
    struct ts_raw *r;
    ck_assert_int_eq(ts_raw_connect(node.addr, node.ca, "threadsync/1", &r), TS_OK);
    int role;
    ck_assert_int_eq(ts_raw_hello(r, node.poster_token, &role), TS_OK);
    uint64_t id = 0;
    static uint64_t rid;
    ck_assert_int_eq(ts_raw_post(r, ++rid, thread, parent, name, body, &id, seq), TS_OK);
    ts_raw_close(r);
    return id;
}

/* ---- running the CLI -------------------------------------------------------- */

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return strdup("");
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)len + 1);
    ck_assert_ptr_nonnull(buf);
    size_t n = fread(buf, 1, (size_t)len, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Starts threadsync CMD --dir mdir [extra...] with stdout and stderr to
 * files in the node's directory (tag names them). */
static void cli_argv(const char *cmd, const char *const *extra, const char **argv)
{
    size_t a = 0;
    argv[a++] = TS_THREADSYNC_PATH;
    argv[a++] = cmd;
    argv[a++] = "--server";
    argv[a++] = node.addr;
    argv[a++] = "--ca";
    argv[a++] = node.ca;
    argv[a++] = "--token-file";
    argv[a++] = mirror_token;
    argv[a++] = "--dir";
    argv[a++] = mdir;
    for (size_t i = 0; extra && extra[i]; i++)
        argv[a++] = extra[i];
    argv[a] = NULL;
}

static pid_t cli_start(const char *cmd, const char *tag, const char *const *extra)
{
    char out[600], err[600];
    snprintf(out, sizeof(out), "%s/%s.out", node.dir, tag);
    snprintf(err, sizeof(err), "%s/%s.err", node.dir, tag);
    const char *argv[32];
    cli_argv(cmd, extra, argv);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fo = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int fe = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fo < 0 || fe < 0)
            _exit(127);
        dup2(fo, 1);
        dup2(fe, 2);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

static int cli_wait(pid_t pid, int timeout_s)
{
    uint64_t end = ts_test_now_ms() + (uint64_t)timeout_s * 1000;
    int status;
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            break;
        ck_assert_int_eq(w, 0);
        if (ts_test_now_ms() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            ck_abort_msg("threadsync did not finish within %d s", timeout_s);
        }
        usleep(20000);
    }
    ck_assert_msg(WIFEXITED(status), "threadsync died: status %d", status);
    return WEXITSTATUS(status);
}

/* Runs a command to its end; *out and *err (may be NULL) get its output. */
static int cli(const char *cmd, const char *const *extra, char **out, char **err)
{
    pid_t pid = cli_start(cmd, cmd, extra);
    int code = cli_wait(pid, 120);
    char path[600];
    snprintf(path, sizeof(path), "%s/%s.out", node.dir, cmd);
    if (out)
        *out = slurp(path);
    snprintf(path, sizeof(path), "%s/%s.err", node.dir, cmd);
    char *e = slurp(path);
    if (err)
        *err = e;
    else
        free(e);
    return code;
}

/* A number after "key=" in a summary line. */
static uint64_t field(const char *text, const char *key)
{
    const char *p = strstr(text, key);
    ck_assert_msg(p != NULL, "no %s in: %.2000s", key, text);
    return strtoull(p + strlen(key), NULL, 10);
}

static void mirror_once(char **err_out)
{
    const char *once[] = {"--once", NULL};
    char *err;
    int code = cli("mirror", once, NULL, &err);
    ck_assert_msg(code == 0, "mirror --once exit %d: %.2000s", code, err);
    ck_assert_msg(strstr(err, "mirror stopped"), "%.2000s", err);
    if (err_out)
        *err_out = err;
    else
        free(err);
}

static void verify_ok(uint64_t threads, uint64_t comments)
{
    char *out, *err;
    int code = cli("verify", NULL, &out, &err);
    ck_assert_msg(code == 0, "verify exit %d: %.500s %.1500s", code, out, err);
    ck_assert_msg(strncmp(out, "verify: ok", 10) == 0, "%.2000s", out);
    if (threads)
        ck_assert_uint_eq(field(out, "threads="), threads);
    if (comments)
        ck_assert_uint_eq(field(out, "comments="), comments);
    free(out);
    free(err);
}

/* A number in the mirror's meta table, 0 when absent (read-only, while a
 * mirror may be writing). */
static uint64_t db_meta(const char *name)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/mirror.db", mdir);
    sqlite3 *db;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return 0;
    }
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt *st;
    uint64_t v = 0;
    if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = ?1", -1, &st, NULL) ==
        SQLITE_OK) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW)
            v = (uint64_t)sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return v;
}

/* The mirror's stored cursor. */
static uint64_t db_cursor(void)
{
    return db_meta("last_seq");
}

static void wait_cursor(uint64_t seq, int timeout_s)
{
    uint64_t end = ts_test_now_ms() + (uint64_t)timeout_s * 1000;
    uint64_t c;
    while ((c = db_cursor()) < seq) {
        ck_assert_msg(ts_test_now_ms() < end,
                      "mirror cursor %" PRIu64 " did not reach %" PRIu64 " in %d s", c, seq,
                      timeout_s);
        usleep(50000);
    }
}

static void sql_exec(const char *text)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/mirror.db", mdir);
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    char *msg = NULL;
    int rc = sqlite3_exec(db, text, NULL, NULL, &msg);
    ck_assert_msg(rc == SQLITE_OK, "%s: %s", text, msg ? msg : "");
    ck_assert_int_gt(sqlite3_changes(db), 0);
    sqlite3_close(db);
}

static void thread_path(const char *key, const char *ext, char *out, size_t len)
{
    char name[TS_MIRROR_NAME_SIZE];
    ck_assert_int_eq(ts_mirror_render_file_name(key, name), TS_OK);
    snprintf(out, len, "%s/threads/%s.%s", mdir, name, ext);
}

/* mtime of a thread's HTML file in ns; 0 when missing. */
static int64_t html_mtime(const char *key)
{
    char path[1024];
    thread_path(key, "html", path, sizeof(path));
    struct stat st;
    if (stat(path, &st) != 0)
        return 0;
    return (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
}

static void assert_files(const struct posted *p)
{
    for (size_t t = 0; t < p->n_threads; t++) {
        char path[1024];
        struct stat st;
        thread_path(p->keys[t], "json", path, sizeof(path));
        ck_assert_msg(stat(path, &st) == 0 && st.st_size > 0, "missing %s", path);
        thread_path(p->keys[t], "html", path, sizeof(path));
        ck_assert_msg(stat(path, &st) == 0 && st.st_size > 0, "missing %s", path);
    }
}

/* ---- cases ------------------------------------------------------------------- */

START_TEST(test_from_empty_then_from_cursor)
{
    start(NULL);
    struct posted p;
    posted_init(&p, "site", 6);
    post_many(&p, 300, 1);

    char *err;
    mirror_once(&err);
    ck_assert_uint_eq(field(err, "from="), 0);
    ck_assert_uint_eq(field(err, "events="), 300);
    ck_assert_uint_eq(field(err, " seq="), p.last_seq);
    ck_assert_uint_eq(field(err, "rendered="), 6);
    free(err);
    ck_assert_uint_eq(db_cursor(), p.last_seq);
    assert_files(&p);
    verify_ok(6, 300);

    /* The JSON of a thread carries its comments, Unicode intact. */
    char path[1024];
    thread_path(p.keys[1], "json", path, sizeof(path));
    char *json = slurp(path);
    ck_assert_msg(strstr(json, "\xe2\x80\x9c"
                               "Curly quotes\xe2\x80\x9d"),
                  "%.300s", json);
    free(json);

    /* From the cursor: 3 posts to one thread; only they are applied and
     * only that thread is rendered again. */
    int64_t before[6];
    for (size_t t = 0; t < 6; t++)
        before[t] = html_mtime(p.keys[t]);
    uint64_t cursor = p.last_seq, seq = 0;
    for (int i = 0; i < 3; i++)
        post_one(p.keys[2], p.ids[2][0], "Late", "a later reply", &seq);
    mirror_once(&err);
    ck_assert_uint_eq(field(err, "from="), cursor);
    ck_assert_uint_eq(field(err, "events="), 3);
    ck_assert_uint_eq(field(err, "snapshots="), 0);
    ck_assert_uint_eq(field(err, "rendered="), 1);
    free(err);
    ck_assert_uint_eq(db_cursor(), seq);
    for (size_t t = 0; t < 6; t++) {
        if (t == 2)
            ck_assert_int_gt(html_mtime(p.keys[t]), before[t]);
        else
            ck_assert_int_eq(html_mtime(p.keys[t]), before[t]);
    }
    /* Nothing new: nothing applied, nothing rendered. */
    mirror_once(&err);
    ck_assert_uint_eq(field(err, "events="), 0);
    ck_assert_uint_eq(field(err, "rendered="), 0);
    free(err);
    verify_ok(6, 303);
    posted_free(&p);
}
END_TEST

START_TEST(test_across_server_restart)
{
    start(NULL);
    struct posted p;
    posted_init(&p, "restart", 3);
    post_many(&p, 60, 2);
    pid_t m = cli_start("mirror", "live", NULL);
    wait_cursor(p.last_seq, 30);

    ck_assert_int_eq(ts_testnode_kill(&node, SIGTERM), 0);
    usleep(300000); /* the mirror notices and backs off */
    ck_assert_int_eq(ts_testnode_restart(&node, NULL), TS_OK);
    post_many(&p, 40, 3);
    wait_cursor(p.last_seq, 30);
    verify_ok(3, 100);

    kill(m, SIGINT);
    ck_assert_int_eq(cli_wait(m, 30), 0);
    char path[600];
    snprintf(path, sizeof(path), "%s/live.err", node.dir);
    char *err = slurp(path);
    ck_assert_msg(strstr(err, "reconnecting"), "%.2000s", err);
    ck_assert_uint_eq(field(err, "snapshots="), 0);
    ck_assert_uint_eq(field(err, "events="), 100);
    free(err);
    posted_free(&p);
}
END_TEST

START_TEST(test_snapshot_after_window)
{
    const char *extra[] = {"--evlog-max-events", "10", NULL};
    start(extra);
    struct posted p;
    posted_init(&p, "window", 4);
    post_many(&p, 40, 4);
    char *err;
    mirror_once(&err); /* the cursor 0 is already outside the window */
    ck_assert_uint_eq(field(err, "snapshots="), 1);
    free(err);
    verify_ok(4, 40);
    uint64_t cursor = db_cursor();

    /* Stopped while 60 more events went by: 50 fell out of the window. */
    post_many(&p, 60, 5);
    mirror_once(&err);
    ck_assert_uint_eq(field(err, "from="), cursor);
    ck_assert_uint_eq(field(err, "snapshots="), 1);
    ck_assert_msg(strstr(err, "taking a snapshot"), "%.2000s", err);
    free(err);
    ck_assert_uint_ge(db_cursor(), p.last_seq);
    verify_ok(4, 100);
    posted_free(&p);
}
END_TEST

START_TEST(test_verify_detects_difference)
{
    start(NULL);
    struct posted p;
    posted_init(&p, "tamper", 3);
    post_many(&p, 30, 6);
    mirror_once(NULL);
    verify_ok(3, 30);

    char sql[256];
    snprintf(sql, sizeof(sql), "UPDATE comments SET body = 'tampered' WHERE id = %" PRIu64,
             p.ids[1][2]);
    sql_exec(sql);
    char *out, *err;
    ck_assert_int_eq(cli("verify", NULL, &out, &err), 1);
    char want[128];
    snprintf(want, sizeof(want), "thread %s: digest differs", p.keys[1]);
    ck_assert_msg(strstr(out, want), "%.2000s", out);
    free(out);
    free(err);

    /* A missing comment is named by its count. */
    snprintf(sql, sizeof(sql), "DELETE FROM comments WHERE id = %" PRIu64, p.ids[0][3]);
    sql_exec(sql);
    ck_assert_int_eq(cli("verify", NULL, &out, &err), 1);
    snprintf(want, sizeof(want), "thread %s: comments differs", p.keys[0]);
    ck_assert_msg(strstr(out, want), "%.2000s", out);
    free(out);
    free(err);

    /* A thread the server does not have. */
    sql_exec("INSERT INTO threads VALUES(999999, 'ghost/thread', '', '', 0, 0, 0, 1)");
    ck_assert_int_eq(cli("verify", NULL, &out, &err), 1);
    ck_assert_msg(strstr(out, "ghost/thread") || strstr(out, p.keys[0]), "%.2000s", out);
    free(out);
    free(err);
    posted_free(&p);
}
END_TEST

START_TEST(test_verify_many_threads_pages)
{
    /* More threads than one Digest page holds (1,000): verify pages. */
    start(NULL);
    struct posted p;
    posted_init(&p, "pages", 1234);
    post_many(&p, 1234, 8);
    mirror_once(NULL);
    verify_ok(1234, 1234);
    /* A difference on the second page is found too. */
    char sql[256];
    snprintf(sql, sizeof(sql), "UPDATE threads SET comment_count = 7 WHERE key = '%s'",
             p.keys[1200]);
    sql_exec(sql);
    char *out, *err;
    ck_assert_int_eq(cli("verify", NULL, &out, &err), 1);
    char want[160];
    snprintf(want, sizeof(want), "thread %s: comment_count differs: mirror=7 server=1",
             p.keys[1200]);
    ck_assert_msg(strstr(out, want), "%.2000s", out);
    free(out);
    free(err);
    posted_free(&p);
}
END_TEST

/* ---- Chromium ----------------------------------------------------------------- */

static void artifact_path(const char *name, char *out, size_t len)
{
    mkdir(TS_TEST_ARTIFACTS_DIR, 0755);
    snprintf(out, len, "%s/%s", TS_TEST_ARTIFACTS_DIR, name);
}

static int run_chromium(const char *html, const char *mode_arg, const char *out_file)
{
    char profile[] = "/tmp/ts-chromium-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(profile));
    char udd[128], url[3000];
    snprintf(udd, sizeof(udd), "--user-data-dir=%s", profile);
    /* The file names hold %XX escapes themselves: escape everything but
     * the plainest bytes again. */
    size_t u = (size_t)snprintf(url, sizeof(url), "file://");
    for (const unsigned char *c = (const unsigned char *)html; *c && u + 4 < sizeof(url); c++) {
        if ((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') ||
            strchr("/-_.~", *c))
            url[u++] = (char)*c;
        else
            u += (size_t)snprintf(url + u, sizeof(url) - u, "%%%02X", *c);
    }
    url[u] = '\0';
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fo = open(out_file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int fe = open("/dev/null", O_WRONLY);
        if (fo < 0 || fe < 0)
            _exit(127);
        dup2(fo, 1);
        dup2(fe, 2);
        setenv("HOME", profile, 1);
        execl(CHROMIUM, CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
              "--no-first-run", "--disable-background-networking", "--disable-component-update",
              "--disable-sync", udd, mode_arg, "--window-size=1000,2000", url, (char *)0);
        _exit(127);
    }
    int code = cli_wait(pid, 90);
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", profile);
    ck_assert_int_eq(system(cmd), 0);
    return code;
}

/* Runs Chromium on an HTML file: a screenshot kept as an artifact, and the
 * DOM after parsing (returned). */
static char *chromium_render(const char *html, const char *png_name)
{
    ck_assert_msg(access(CHROMIUM, X_OK) == 0,
                  CHROMIUM " is missing: run deploy/install-deps.sh (Debian package chromium)");
    char png[600], shot[700], dom_file[600];
    artifact_path(png_name, png, sizeof(png));
    unlink(png);
    snprintf(shot, sizeof(shot), "--screenshot=%s", png);
    char scratch[] = "/tmp/ts-dom-XXXXXX";
    int fd = mkstemp(scratch);
    ck_assert_int_ge(fd, 0);
    close(fd);
    snprintf(dom_file, sizeof(dom_file), "%s", scratch);
    ck_assert_int_eq(run_chromium(html, shot, dom_file), 0);
    struct stat st;
    ck_assert_msg(stat(png, &st) == 0 && st.st_size > 1000, "no screenshot at %s", png);
    ck_assert_int_eq(run_chromium(html, "--dump-dom", dom_file), 0);
    char *dom = slurp(dom_file);
    unlink(dom_file);
    ck_assert_msg(strstr(dom, "</html>"), "no DOM dumped: %.500s", dom);
    return dom;
}

/* Deepest nesting of <li> elements in serialised HTML. */
static int li_depth(const char *dom)
{
    int depth = 0, max = 0;
    for (const char *p = dom; (p = strchr(p, '<')) != NULL; p++) {
        if (strncmp(p, "<li", 3) == 0 && (p[3] == ' ' || p[3] == '>')) {
            if (++depth > max)
                max = depth;
        } else if (strncmp(p, "</li>", 5) == 0) {
            depth--;
        }
    }
    return max;
}

/* The text of a body as Chromium serialises it (& < > escaped). */
static void dom_text(const char *body, char *out, size_t len)
{
    size_t n = 0;
    for (const char *p = body; *p && n + 6 < len; p++) {
        const char *rep = *p == '&' ? "&amp;" : *p == '<' ? "&lt;" : *p == '>' ? "&gt;" : NULL;
        if (rep) {
            memcpy(out + n, rep, strlen(rep));
            n += strlen(rep);
        } else {
            out[n++] = *p;
        }
    }
    out[n] = '\0';
}

START_TEST(test_chromium_built_thread)
{
    /* Built here (deleted comments cannot be made through the protocol
     * yet): a 30-deep chain under a deleted parent, Unicode bodies, and a
     * deleted leaf. */
    enum { DEPTH = 30 };
    char dir[] = "/tmp/ts-mirror-html-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    Threadsync__Thread t = THREADSYNC__THREAD__INIT;
    t.id = 1;
    t.key = "site/unicode-deep";
    t.title = "Deep \xe2\x80\x9cthread\xe2\x80\x9d";
    t.url = "https://example.org/a";
    t.version = 1;
    Threadsync__Comment cs[DEPTH + 3];
    const Threadsync__Comment *ptrs[DEPTH + 3];
    char bodies_buf[DEPTH + 3][160];
    size_t n = 0;
    /* 2: the deleted parent (tombstone) */
    threadsync__comment__init(&cs[n]);
    cs[n].id = 2;
    cs[n].thread_id = 1;
    cs[n].status = THREADSYNC__STATUS__DELETED;
    cs[n].author_name = "";
    cs[n].body = "";
    cs[n].version = 2;
    n++;
    for (int d = 0; d < DEPTH; d++, n++) {
        threadsync__comment__init(&cs[n]);
        cs[n].id = 3 + (uint64_t)d;
        cs[n].thread_id = 1;
        cs[n].parent_id = 2 + (uint64_t)d;
        cs[n].author_name = d % 2 ? "Zo\xc3\xab" : "\xe5\xb1\xb1\xe7\x94\xb0";
        snprintf(bodies_buf[n], sizeof(bodies_buf[n]), "level %d: %s", d + 1, bodies[d % 6]);
        cs[n].body = bodies_buf[n];
        cs[n].status = THREADSYNC__STATUS__VISIBLE;
        cs[n].created_at_ms = 1700000000000 + (int64_t)d * 60000;
        cs[n].version = 1;
    }
    /* a deleted leaf under level 5, and a visible reply to the root */
    threadsync__comment__init(&cs[n]);
    cs[n].id = 100;
    cs[n].thread_id = 1;
    cs[n].parent_id = 7;
    cs[n].status = THREADSYNC__STATUS__DELETED;
    cs[n].author_name = "";
    cs[n].body = "";
    cs[n].version = 2;
    n++;
    threadsync__comment__init(&cs[n]);
    cs[n].id = 101;
    cs[n].thread_id = 1;
    cs[n].author_name = "Ann";
    cs[n].body = "A second top-level comment \xf0\x9f\x91\x8d";
    cs[n].status = THREADSYNC__STATUS__VISIBLE;
    cs[n].version = 1;
    n++;
    for (size_t i = 0; i < n; i++)
        ptrs[i] = &cs[i];
    t.comment_count = DEPTH + 1;
    ck_assert_int_eq(ts_mirror_render_thread(dir, &t, ptrs, n), TS_OK);
    char name[TS_MIRROR_NAME_SIZE], html[700];
    ck_assert_int_eq(ts_mirror_render_file_name(t.key, name), TS_OK);
    snprintf(html, sizeof(html), "%s/threads/%s.html", dir, name);

    char *dom = chromium_render(html, "mirror-thread.png");
    for (size_t i = 0; i < n; i++) {
        if (cs[i].status != THREADSYNC__STATUS__VISIBLE)
            continue;
        char want[400];
        dom_text(cs[i].body, want, sizeof(want));
        ck_assert_msg(strstr(dom, want), "body missing from the DOM: %s", cs[i].body);
    }
    ck_assert_msg(strstr(dom, "Zo\xc3\xab") && strstr(dom, "\xe5\xb1\xb1\xe7\x94\xb0"),
                  "authors missing");
    /* the root's placeholder; the deleted leaf is not shown at all */
    const char *p = strstr(dom, "[deleted]");
    ck_assert_msg(p && !strstr(p + 1, "[deleted]"), "one placeholder expected");
    ck_assert_msg(strstr(dom, "id=\"c2\"") && !strstr(dom, "id=\"c100\""), "tombstones wrong");
    /* the deleted root, then 30 levels of replies beneath it */
    ck_assert_int_eq(li_depth(dom), DEPTH + 1);
    ck_assert_msg(strstr(dom, "31 comments"), "count missing");
    free(dom);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

START_TEST(test_chromium_mirrored_thread)
{
    enum { DEPTH = 30 };
    start(NULL);
    const char *key = "site/\xc3\xa9t\xc3\xa9 deep";
    uint64_t parent = 0, seq = 0;
    char bodies_buf[DEPTH][160];
    for (int d = 0; d < DEPTH; d++) {
        snprintf(bodies_buf[d], sizeof(bodies_buf[d]), "depth %d %s", d + 1, bodies[d % 6]);
        parent = post_one(key, parent, d % 2 ? "Zo\xc3\xab" : "Bob", bodies_buf[d], &seq);
    }
    post_one(key, 0, "Ann", "Another root \xf0\x9f\x8e\x89", &seq);
    mirror_once(NULL);
    verify_ok(1, DEPTH + 1);
    char html[1024];
    thread_path(key, "html", html, sizeof(html));
    char *dom = chromium_render(html, "mirror-thread-node.png");
    for (int d = 0; d < DEPTH; d++) {
        char want[400];
        dom_text(bodies_buf[d], want, sizeof(want));
        ck_assert_msg(strstr(dom, want), "body missing from the DOM: %s", bodies_buf[d]);
    }
    ck_assert_msg(strstr(dom, "Another root \xf0\x9f\x8e\x89"), "root missing");
    ck_assert_int_eq(li_depth(dom), DEPTH);
    ck_assert_msg(strstr(dom, "31 comments"), "count missing");
    free(dom);
}
END_TEST

/* ---- moderation, as a mirror sees it ----------------------------------------- */

/* Runs `threadsync ARGS` as the token in tok to its end; *out (may be NULL)
 * gets its stdout. Returns the exit code. */
static int run_as(const char *tok, char **out, const char *const *args)
{
    const char *argv[40];
    size_t n = 0;
    argv[n++] = TS_THREADSYNC_PATH;
    argv[n++] = "--server";
    argv[n++] = node.addr;
    argv[n++] = "--ca";
    argv[n++] = node.ca;
    argv[n++] = "--token-file";
    argv[n++] = tok;
    for (size_t i = 0; args[i]; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    char *o = NULL;
    int code = ts_test_run(argv, node.dir, NULL, &o);
    ck_assert_ptr_nonnull(o);
    if (out)
        *out = o;
    else
        free(o);
    return code;
}

/* The value after "key=" in text, up to a space or line end, into out. */
static void kv(const char *text, const char *key, char *out, size_t size)
{
    const char *p = strstr(text, key);
    ck_assert_msg(p != NULL, "no %s in: %s", key, text);
    p += strlen(key);
    size_t n = strcspn(p, " \n");
    ck_assert_uint_lt(n, size);
    memcpy(out, p, n);
    out[n] = '\0';
}

static const char *status_name(int st)
{
    switch (st) {
    case THREADSYNC__STATUS__VISIBLE:
        return "VISIBLE";
    case THREADSYNC__STATUS__PENDING:
        return "PENDING";
    case THREADSYNC__STATUS__HIDDEN:
        return "HIDDEN";
    case THREADSYNC__STATUS__DELETED:
        return "DELETED";
    default:
        return "?";
    }
}

/* What the server holds of one thread, as a reader may see it: the test's
 * model, kept next to every change it makes through the CLI. */
struct mc {
    uint64_t id, parent;
    int status;
    char body[160];    /* the current body */
    char gone[2][160]; /* bodies it had that nobody may see any more */
    size_t n_gone;
    char edit_key[40];
};

struct model {
    char key[128];
    struct mc c[48];
    size_t n;
    uint64_t seq;         /* the seq of the last change */
    char secrets[8][160]; /* texts that never reached a reader: in no mirror file */
    size_t n_secrets;
};

static size_t model_visible(const struct model *m)
{
    size_t v = 0;
    for (size_t i = 0; i < m->n; i++)
        v += m->c[i].status == THREADSYNC__STATUS__VISIBLE;
    return v;
}

/* Shown on the page: visible, or above something shown (a "[deleted]" or
 * "[removed]" placeholder); a removed leaf is not shown at all. */
static int model_shown(const struct model *m, size_t i)
{
    if (m->c[i].status == THREADSYNC__STATUS__VISIBLE)
        return 1;
    for (size_t j = 0; j < m->n; j++)
        if (m->c[j].parent == m->c[i].id && model_shown(m, j))
            return 1;
    return 0;
}

static void model_secret(struct model *m, const char *text)
{
    ck_assert_uint_lt(m->n_secrets, 8);
    snprintf(m->secrets[m->n_secrets++], sizeof(m->secrets[0]), "%s", text);
}

static void model_forget(struct mc *c)
{
    ck_assert_uint_lt(c->n_gone, 2);
    snprintf(c->gone[c->n_gone++], sizeof(c->gone[0]), "%s", c->body);
}

/* c is visible again (unhidden, approved): its body is no secret now. */
static void model_reveal(struct model *m, struct mc *c)
{
    size_t k = 0;
    for (size_t g = 0; g < c->n_gone; g++)
        if (strcmp(c->gone[g], c->body) != 0)
            memmove(c->gone[k++], c->gone[g], sizeof(c->gone[0]));
    c->n_gone = k;
    k = 0;
    for (size_t s = 0; s < m->n_secrets; s++)
        if (strcmp(m->secrets[s], c->body) != 0)
            memmove(m->secrets[k++], m->secrets[s], sizeof(m->secrets[0]));
    m->n_secrets = k;
}

/* Posts as the poster (parent NULL: top level); the comment's status is
 * what the server answered (PENDING under pre-moderation). */
static struct mc *model_post_as(struct model *m, const struct mc *parent, const char *name,
                                const char *email, const char *body)
{
    ck_assert_uint_lt(m->n, sizeof(m->c) / sizeof(m->c[0]));
    char pid[24];
    snprintf(pid, sizeof(pid), "%" PRIu64, parent ? parent->id : 0);
    const char *args[] = {"post",   "--thread", m->key,     "--name", name,
                          "--body", body,       "--parent", pid,      email ? "--email" : NULL,
                          email,    NULL};
    char *out;
    ck_assert_int_eq(run_as(poster_file, &out, args), 0);
    struct mc *c = &m->c[m->n++];
    memset(c, 0, sizeof(*c));
    c->id = field(out, "id=");
    m->seq = field(out, " seq=");
    c->parent = parent ? parent->id : 0;
    c->status =
        strstr(out, "status=PENDING") ? THREADSYNC__STATUS__PENDING : THREADSYNC__STATUS__VISIBLE;
    kv(out, "edit_key=", c->edit_key, sizeof(c->edit_key));
    snprintf(c->body, sizeof(c->body), "%s", body);
    if (c->status != THREADSYNC__STATUS__VISIBLE)
        model_secret(m, body);
    free(out);
    return c;
}

static struct mc *model_post(struct model *m, const struct mc *parent, const char *name,
                             const char *body)
{
    return model_post_as(m, parent, name, NULL, body);
}

/* Checks a ChangeResult line and takes its seq; the server's count must be
 * the model's. */
static void model_changed(struct model *m, const char *out, const struct mc *c)
{
    ck_assert_msg(strstr(out, "changed=1"), "%s", out);
    char want[64];
    snprintf(want, sizeof(want), "status=%s", status_name(c->status));
    ck_assert_msg(strstr(out, want), "want %s: %s", want, out);
    ck_assert_uint_eq(field(out, "count="), model_visible(m));
    m->seq = field(out, "seq=");
}

/* `threadsync moderate ACTION ID` as the moderator. */
static void model_moderate(struct model *m, struct mc *c, const char *action, int status)
{
    char id[24];
    snprintf(id, sizeof(id), "%" PRIu64, c->id);
    const char *args[] = {"moderate", action, id, NULL};
    char *out;
    ck_assert_int_eq(run_as(mod_file, &out, args), 0);
    if (status != THREADSYNC__STATUS__VISIBLE && c->status == THREADSYNC__STATUS__VISIBLE)
        model_forget(c);
    c->status = status;
    if (status == THREADSYNC__STATUS__VISIBLE)
        model_reveal(m, c);
    model_changed(m, out, c);
    free(out);
}

/* The author's edit with the key its post printed; under pre-moderation
 * the comment goes back to PENDING. */
static void model_author_edit(struct model *m, struct mc *c, const char *body, int premoderated)
{
    char id[24];
    snprintf(id, sizeof(id), "%" PRIu64, c->id);
    const char *args[] = {"edit", id, "--edit-key", c->edit_key, "--body", body, NULL};
    char *out;
    ck_assert_int_eq(run_as(poster_file, &out, args), 0);
    model_forget(c);
    snprintf(c->body, sizeof(c->body), "%s", body);
    if (premoderated) {
        c->status = THREADSYNC__STATUS__PENDING;
        model_secret(m, body);
    }
    model_changed(m, out, c);
    free(out);
}

/* The author's delete with the key. */
static void model_author_delete(struct model *m, struct mc *c)
{
    char id[24];
    snprintf(id, sizeof(id), "%" PRIu64, c->id);
    const char *args[] = {"delete", id, "--edit-key", c->edit_key, NULL};
    char *out;
    ck_assert_int_eq(run_as(poster_file, &out, args), 0);
    if (c->status == THREADSYNC__STATUS__VISIBLE)
        model_forget(c);
    c->status = THREADSYNC__STATUS__DELETED;
    model_changed(m, out, c);
    free(out);
}

/* `threadsync moderate premoderate|postmoderate --thread KEY`. */
static void model_thread(struct model *m, const char *action)
{
    const char *args[] = {"moderate", action, "--thread", m->key, NULL};
    char *out;
    ck_assert_int_eq(run_as(mod_file, &out, args), 0);
    ck_assert_msg(strstr(out, "changed=1"), "%s", out);
    m->seq = field(out, "seq=");
    free(out);
}

/* The thread as the server answers a reader's Get: its comment_count. */
static uint32_t server_count(const char *key)
{
    struct ts_raw *r;
    ck_assert_int_eq(ts_raw_connect(node.addr, node.ca, TS_ALPN, &r), TS_OK);
    int role;
    ck_assert_int_eq(ts_raw_hello(r, node.reader_token, &role), TS_OK);
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Get g = THREADSYNC__GET__INIT;
    g.request_id = 1;
    g.thread_key = (char *)key;
    f.msg_case = THREADSYNC__FRAME__MSG_GET;
    f.get = &g;
    ck_assert_int_eq(ts_raw_send_frame(r, &f), TS_OK);
    Threadsync__Frame *in;
    ck_assert_int_eq(ts_raw_recv_nonping(r, 10000, &in), TS_OK);
    ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_RESULT);
    uint32_t n = in->result->get->thread->comment_count;
    ts_frame_free(in);
    ts_raw_close(r);
    return n;
}

/* 1 when the file's bytes hold text anywhere (0 for a missing file). */
static int file_has(const char *path, const char *text)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)len + 1);
    ck_assert_ptr_nonnull(buf);
    size_t n = fread(buf, 1, (size_t)len, f);
    fclose(f);
    int found = memmem(buf, n, text, strlen(text)) != NULL;
    free(buf);
    return found;
}

/* Text that may not be kept is in none of the mirror's files, down to the
 * bytes of the database and its write-ahead log. */
static void assert_nowhere(const char *text)
{
    static const char *const names[] = {"mirror.db", "mirror.db-wal"};
    for (size_t i = 0; i < 2; i++) {
        char path[700];
        snprintf(path, sizeof(path), "%s/%s", mdir, names[i]);
        ck_assert_msg(!file_has(path, text), "\"%s\" is still in %s", text, path);
    }
}

/* The <li id="cN"> elements of serialised HTML with the id of the <li>
 * each is nested in (0 at the top). Returns how many. */
static size_t li_tree(const char *html, uint64_t *ids, uint64_t *parents, size_t max)
{
    uint64_t stack[1100];
    size_t depth = 0, n = 0;
    for (const char *p = html; (p = strchr(p, '<')) != NULL; p++) {
        if (strncmp(p, "<li", 3) == 0 && (p[3] == ' ' || p[3] == '>')) {
            const char *end = strchr(p, '>');
            const char *idp = strstr(p, " id=\"c");
            uint64_t id = idp && end && idp < end ? strtoull(idp + 6, NULL, 10) : 0;
            ck_assert_uint_lt(depth, 1100);
            if (n < max) {
                ids[n] = id;
                parents[n] = depth ? stack[depth - 1] : 0;
                n++;
            }
            stack[depth++] = id;
        } else if (strncmp(p, "</li>", 5) == 0) {
            ck_assert_uint_gt(depth, 0);
            depth--;
        }
    }
    ck_assert_uint_eq(depth, 0);
    return n;
}

/* The page (the mirror's HTML, or Chromium's DOM of it) shows exactly what
 * a reader may see of m: each shown comment once, nested under its parent,
 * with its body or its placeholder; nothing of what is not shown. */
static void assert_page(const struct model *m, const char *html)
{
    uint64_t ids[64], parents[64];
    size_t n = li_tree(html, ids, parents, 64);
    size_t shown = 0;
    for (size_t i = 0; i < m->n; i++) {
        const struct mc *c = &m->c[i];
        size_t k = 0;
        while (k < n && ids[k] != c->id)
            k++;
        if (!model_shown(m, i)) {
            ck_assert_msg(k == n, "comment %" PRIu64 " (%s) is on the page", c->id,
                          status_name(c->status));
            continue;
        }
        shown++;
        ck_assert_msg(k < n, "comment %" PRIu64 " (%s) is not on the page", c->id,
                      status_name(c->status));
        ck_assert_msg(parents[k] == c->parent,
                      "comment %" PRIu64 " under %" PRIu64 ", not %" PRIu64, c->id, parents[k],
                      c->parent);
        char want[200];
        if (c->status == THREADSYNC__STATUS__VISIBLE) {
            dom_text(c->body, want, sizeof(want));
            ck_assert_msg(strstr(html, want), "body of %" PRIu64 " missing: %s", c->id, c->body);
        } else {
            snprintf(want, sizeof(want), "id=\"c%" PRIu64 "\"><p class=\"ts-placeholder\">%s</p>",
                     c->id, c->status == THREADSYNC__STATUS__DELETED ? "[deleted]" : "[removed]");
            ck_assert_msg(strstr(html, want), "no placeholder %s", want);
        }
    }
    ck_assert_uint_eq(n, shown);
    for (size_t i = 0; i < m->n; i++) {
        const struct mc *c = &m->c[i];
        char text[200];
        for (size_t g = 0; g < c->n_gone; g++) {
            dom_text(c->gone[g], text, sizeof(text));
            ck_assert_msg(!strstr(html, text), "gone text on the page: %s", c->gone[g]);
        }
        if (c->status != THREADSYNC__STATUS__VISIBLE) {
            dom_text(c->body, text, sizeof(text));
            ck_assert_msg(!strstr(html, text), "text of a %s comment on the page: %s",
                          status_name(c->status), c->body);
        }
    }
    for (size_t s = 0; s < m->n_secrets; s++)
        ck_assert_msg(!strstr(html, m->secrets[s]), "secret on the page: %s", m->secrets[s]);
    char count[64];
    size_t v = model_visible(m);
    snprintf(count, sizeof(count), ">%zu comment%s<", v, v == 1 ? "" : "s");
    ck_assert_msg(strstr(html, count), "no %s", count);
}

/* text as the mirror's JSON writes it. */
static void json_text(const char *text, char *out, size_t len)
{
    size_t n = 0;
    for (const char *p = text; *p && n + 8 < len; p++) {
        const char *rep = *p == '"'    ? "\\\""
                          : *p == '\\' ? "\\\\"
                          : *p == '\n' ? "\\n"
                          : *p == '<'  ? "\\u003c"
                          : *p == '>'  ? "\\u003e"
                          : *p == '&'  ? "\\u0026"
                                       : NULL;
        if (rep) {
            memcpy(out + n, rep, strlen(rep));
            n += strlen(rep);
        } else {
            out[n++] = *p;
        }
    }
    out[n] = '\0';
}

/* The JSON holds every comment with its status, and a body only for the
 * visible ones. */
static void assert_json(const struct model *m, const char *json)
{
    const char *list = strstr(json, "\"comments\":[");
    ck_assert_ptr_nonnull(list);
    for (size_t i = 0; i < m->n; i++) {
        const struct mc *c = &m->c[i];
        char head[64], want[220];
        snprintf(head, sizeof(head), "{\"id\":%" PRIu64 ",", c->id);
        const char *p = strstr(list, head);
        ck_assert_msg(p, "comment %" PRIu64 " missing from the JSON", c->id);
        size_t len = strcspn(p, "}");
        snprintf(want, sizeof(want), "\"status\":\"%s\"", status_name(c->status));
        ck_assert_msg(memmem(p, len, want, strlen(want)), "%.*s: want %s", (int)len, p, want);
        char text[200];
        json_text(c->body, text, sizeof(text));
        snprintf(want, sizeof(want), "\"body\":\"%s\"",
                 c->status == THREADSYNC__STATUS__VISIBLE ? text : "");
        ck_assert_msg(memmem(p, len, want, strlen(want)), "%.*s: want %s", (int)len, p, want);
        if (c->status != THREADSYNC__STATUS__VISIBLE)
            ck_assert_msg(!strstr(json, text), "hidden text in the JSON: %s", c->body);
        for (size_t g = 0; g < c->n_gone; g++) {
            json_text(c->gone[g], text, sizeof(text));
            ck_assert_msg(!strstr(json, text), "gone text in the JSON: %s", c->gone[g]);
        }
    }
    for (size_t s = 0; s < m->n_secrets; s++)
        ck_assert_msg(!strstr(json, m->secrets[s]), "secret in the JSON: %s", m->secrets[s]);
    char want[64];
    snprintf(want, sizeof(want), "\"count\":%zu}", model_visible(m));
    ck_assert_msg(strstr(json, want), "no %s", want);
}

/* The database rows: every comment, public view only. */
static void assert_rows(const struct model *m)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/mirror.db", mdir);
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt *st;
    ck_assert_int_eq(sqlite3_prepare_v2(db,
                                        "SELECT c.status, c.author_name, c.body, c.parent_id, "
                                        "t.comment_count FROM comments c JOIN threads t ON "
                                        "t.id = c.thread_id WHERE c.id = ?1 AND t.key = ?2",
                                        -1, &st, NULL),
                     SQLITE_OK);
    for (size_t i = 0; i < m->n; i++) {
        const struct mc *c = &m->c[i];
        sqlite3_bind_int64(st, 1, (sqlite3_int64)c->id);
        sqlite3_bind_text(st, 2, m->key, -1, SQLITE_STATIC);
        ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
        ck_assert_str_eq((const char *)sqlite3_column_text(st, 0), status_name(c->status));
        int vis = c->status == THREADSYNC__STATUS__VISIBLE;
        ck_assert_str_eq((const char *)sqlite3_column_text(st, 2), vis ? c->body : "");
        if (!vis)
            ck_assert_str_eq((const char *)sqlite3_column_text(st, 1), "");
        ck_assert_uint_eq((uint64_t)sqlite3_column_int64(st, 3), c->parent);
        ck_assert_uint_eq((uint64_t)sqlite3_column_int64(st, 4), model_visible(m));
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    ck_assert_int_eq(sqlite3_prepare_v2(db,
                                        "SELECT count(*) FROM comments WHERE thread_id = "
                                        "(SELECT id FROM threads WHERE key = ?1)",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, m->key, -1, SQLITE_STATIC);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    ck_assert_uint_eq((uint64_t)sqlite3_column_int64(st, 0), m->n);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* Waits until a running mirror has committed and rendered m's last change. */
static void wait_rendered(const struct model *m)
{
    uint64_t end = ts_test_now_ms() + 30000;
    while (db_meta("rendered_seq") < m->seq) {
        ck_assert_msg(ts_test_now_ms() < end,
                      "mirror did not render seq %" PRIu64 " (cursor %" PRIu64 ")", m->seq,
                      db_cursor());
        usleep(20000);
    }
}

/* Everything a reader may see of m, in the mirror's rows, JSON and HTML,
 * the count the server's, and verify passing. */
static void assert_mirror(const struct model *m)
{
    assert_rows(m);
    char path[1024];
    thread_path(m->key, "json", path, sizeof(path));
    char *json = slurp(path);
    assert_json(m, json);
    free(json);
    thread_path(m->key, "html", path, sizeof(path));
    char *html = slurp(path);
    assert_page(m, html);
    free(html);
    ck_assert_uint_eq(server_count(m->key), model_visible(m));
    for (size_t s = 0; s < m->n_secrets; s++)
        assert_nowhere(m->secrets[s]);
    for (size_t i = 0; i < m->n; i++)
        for (size_t g = 0; g < m->c[i].n_gone; g++)
            assert_nowhere(m->c[i].gone[g]);
    verify_ok(0, 0);
}

START_TEST(test_moderation_followed_live)
{
    start(NULL);
    static struct model m;
    memset(&m, 0, sizeof(m));
    snprintf(m.key, sizeof(m.key), "mod/live");
    struct mc *a = model_post(&m, NULL, "Ann", "alpha root words");
    struct mc *b = model_post(&m, a, "Bob", "bravo reply words");
    struct mc *c = model_post(&m, b, "Cy", "charlie nested words");
    struct mc *d = model_post(&m, NULL, "Dee", "delta lone words");
    struct mc *e = model_post(&m, NULL, "Eve", "echo original words");
    struct mc *f = model_post(&m, NULL, "Fay", "foxtrot doomed words");
    struct mc *h = model_post(&m, f, "Hal", "hotel reply to foxtrot");
    pid_t live = cli_start("mirror", "live1", NULL);
    wait_rendered(&m);
    assert_mirror(&m);

    /* hidden with a visible reply: "[removed]" with the reply beneath */
    model_moderate(&m, b, "hide", THREADSYNC__STATUS__HIDDEN);
    wait_rendered(&m);
    assert_mirror(&m);
    model_moderate(&m, b, "unhide", THREADSYNC__STATUS__VISIBLE);
    wait_rendered(&m);
    assert_mirror(&m);
    /* the author's edit, with the key the post printed */
    model_author_edit(&m, e, "echo edited words", 0);
    wait_rendered(&m);
    assert_mirror(&m);
    char path[1024];
    thread_path(m.key, "html", path, sizeof(path));
    char *html = slurp(path);
    ck_assert_msg(strstr(html, "ts-edited"), "no edited mark");
    free(html);
    /* deleted by a moderator: "[deleted]" with both levels beneath */
    model_moderate(&m, a, "delete", THREADSYNC__STATUS__DELETED);
    wait_rendered(&m);
    assert_mirror(&m);

    /* Stopped, while a leaf is hidden and an author deletes; restarted. */
    kill(live, SIGINT);
    ck_assert_int_eq(cli_wait(live, 30), 0);
    uint64_t stopped_at = db_cursor();
    model_moderate(&m, d, "hide", THREADSYNC__STATUS__HIDDEN);
    model_author_delete(&m, f);
    live = cli_start("mirror", "live2", NULL);
    wait_rendered(&m);
    assert_mirror(&m);

    /* Pre-moderation: a pending post never shows, nor an author's edit
     * waiting for approval, until a moderator approves them. */
    model_thread(&m, "premoderate");
    struct mc *g = model_post(&m, NULL, "Gus", "golf pending words");
    ck_assert_int_eq(g->status, THREADSYNC__STATUS__PENDING);
    wait_rendered(&m);
    assert_mirror(&m);
    model_author_edit(&m, h, "hotel edited while premoderated", 1);
    wait_rendered(&m);
    assert_mirror(&m);
    model_moderate(&m, g, "approve", THREADSYNC__STATUS__VISIBLE);
    model_moderate(&m, h, "approve", THREADSYNC__STATUS__VISIBLE);
    wait_rendered(&m);
    assert_mirror(&m);
    /* a hidden leaf under a deleted grandparent */
    model_moderate(&m, c, "hide", THREADSYNC__STATUS__HIDDEN);
    wait_rendered(&m);
    assert_mirror(&m);
    kill(live, SIGINT);
    ck_assert_int_eq(cli_wait(live, 30), 0);
    snprintf(path, sizeof(path), "%s/live2.err", node.dir);
    char *err = slurp(path);
    ck_assert_uint_eq(field(err, "from="), stopped_at);
    ck_assert_uint_eq(field(err, "snapshots="), 0);
    free(err);

    /* The whole history again (a duplicated batch, many times over):
     * nothing changes, nothing is rendered, hidden text stays away. */
    int64_t before = html_mtime(m.key);
    sql_exec("UPDATE meta SET value = 0 WHERE key = 'last_seq'");
    mirror_once(&err);
    ck_assert_uint_eq(field(err, "from="), 0);
    ck_assert_uint_ge(field(err, "events="), m.n);
    ck_assert_uint_eq(field(err, "snapshots="), 0);
    ck_assert_uint_eq(field(err, "rendered="), 0);
    free(err);
    ck_assert_int_eq(html_mtime(m.key), before);
    ck_assert_uint_eq(db_cursor(), m.seq);
    assert_mirror(&m);
}
END_TEST

/* Two mirrors' files of a thread are the same bytes. */
static void assert_same_files(const char *dir_a, const char *dir_b, const char *key)
{
    char name[TS_MIRROR_NAME_SIZE];
    ck_assert_int_eq(ts_mirror_render_file_name(key, name), TS_OK);
    static const char *const exts[] = {"json", "html"};
    for (size_t i = 0; i < 2; i++) {
        char pa[1024], pb[1024];
        snprintf(pa, sizeof(pa), "%s/threads/%s.%s", dir_a, name, exts[i]);
        snprintf(pb, sizeof(pb), "%s/threads/%s.%s", dir_b, name, exts[i]);
        char *a = slurp(pa), *b = slurp(pb);
        ck_assert_msg(*a && strcmp(a, b) == 0, "%s and %s differ", pa, pb);
        free(a);
        free(b);
    }
}

START_TEST(test_moderation_before_snapshot)
{
    const char *extra[] = {"--evlog-max-events", "4", NULL};
    start(extra);
    static struct model m;
    memset(&m, 0, sizeof(m));
    snprintf(m.key, sizeof(m.key), "mod/snapshot");
    struct mc *a = model_post(&m, NULL, "Ann", "alpha snapshot root");
    struct mc *b = model_post(&m, a, "Bob", "bravo under alpha");
    model_post(&m, b, "Cy", "charlie under bravo");
    struct mc *d = model_post(&m, NULL, "Dee", "delta alone");
    struct mc *e = model_post(&m, NULL, "Eve", "echo before the edit");
    char *err;
    mirror_once(&err);
    ck_assert_uint_eq(field(err, "snapshots="), 1);
    free(err);
    assert_mirror(&m);
    uint64_t cursor = db_cursor();

    /* While the mirror is stopped: moderation, then enough posts to push
     * every moderation event out of the retained window. */
    model_moderate(&m, b, "hide", THREADSYNC__STATUS__HIDDEN);
    model_moderate(&m, a, "delete", THREADSYNC__STATUS__DELETED);
    model_author_edit(&m, e, "echo after the edit", 0);
    model_moderate(&m, d, "hide", THREADSYNC__STATUS__HIDDEN);
    model_thread(&m, "premoderate");
    model_post(&m, NULL, "Gus", "golf never approved");
    uint64_t seq = 0;
    for (int i = 0; i < 6; i++)
        post_one("mod/filler", 0, "Fil", "filler", &seq);
    mirror_once(&err);
    ck_assert_uint_eq(field(err, "from="), cursor);
    ck_assert_uint_eq(field(err, "snapshots="), 1);
    ck_assert_msg(strstr(err, "taking a snapshot"), "%.2000s", err);
    free(err);
    ck_assert_uint_eq(db_cursor(), seq);
    assert_mirror(&m);

    /* A new mirror, from nothing, ends with the same bytes. */
    char first[512];
    snprintf(first, sizeof(first), "%s", mdir);
    snprintf(mdir, sizeof(mdir), "%s/mirror-new", node.dir);
    mirror_once(&err);
    ck_assert_uint_eq(field(err, "snapshots="), 1);
    free(err);
    assert_mirror(&m);
    assert_same_files(first, mdir, m.key);
    assert_same_files(first, mdir, "mod/filler");
}
END_TEST

/* 1 when a Get of key as token answers with text somewhere in it. */
static int server_get_has(const char *token, const char *key, const char *text)
{
    struct ts_raw *r;
    ck_assert_int_eq(ts_raw_connect(node.addr, node.ca, TS_ALPN, &r), TS_OK);
    int role;
    ck_assert_int_eq(ts_raw_hello(r, token, &role), TS_OK);
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Get g = THREADSYNC__GET__INIT;
    g.request_id = 1;
    g.thread_key = (char *)key;
    f.msg_case = THREADSYNC__FRAME__MSG_GET;
    f.get = &g;
    ck_assert_int_eq(ts_raw_send_frame(r, &f), TS_OK);
    Threadsync__Frame *in;
    ck_assert_int_eq(ts_raw_recv_nonping(r, 10000, &in), TS_OK);
    ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_RESULT);
    uint8_t *buf;
    size_t len;
    ck_assert_int_eq(ts_frame_encode(in, &buf, &len), TS_OK);
    int found = memmem(buf, len, text, strlen(text)) != NULL;
    free(buf);
    ts_frame_free(in);
    ts_raw_close(r);
    return found;
}

START_TEST(test_moderator_token_mirror_keeps_public_view)
{
    start(NULL);
    static struct model m;
    memset(&m, 0, sizeof(m));
    snprintf(m.key, sizeof(m.key), "mod/moderator-mirror");
    const char *email = "ann.private@example.org";
    struct mc *a = model_post_as(&m, NULL, "Ann", email, "alpha with an e-mail");
    model_secret(&m, email);
    struct mc *b = model_post(&m, a, "Bob", "bravo soon hidden");
    model_post(&m, b, "Cy", "charlie stays visible");
    /* The moderator's mirror, first with everything visible. */
    mirror_token = mod_file;
    mirror_once(NULL);
    assert_mirror(&m);

    model_moderate(&m, b, "hide", THREADSYNC__STATUS__HIDDEN);
    model_thread(&m, "premoderate");
    model_post(&m, NULL, "Gus", "golf pending for moderators only");
    /* The moderator's connection is sent all of it ... */
    ck_assert(server_get_has(node.moderator_token, m.key, email));
    ck_assert(server_get_has(node.moderator_token, m.key, "bravo soon hidden"));
    ck_assert(server_get_has(node.moderator_token, m.key, "golf pending for moderators only"));
    /* ... the mirror keeps only what a reader may see, and verifies. */
    mirror_once(NULL);
    assert_mirror(&m);

    /* A reader's mirror of the same node has the same files. */
    char mod_dir[512];
    snprintf(mod_dir, sizeof(mod_dir), "%s", mdir);
    snprintf(mdir, sizeof(mdir), "%s/mirror-reader", node.dir);
    mirror_token = reader_file;
    mirror_once(NULL);
    assert_mirror(&m);
    assert_same_files(mod_dir, mdir, m.key);
}
END_TEST

/* Some installed font has a glyph for code point cp (fontconfig). */
static int font_covers(unsigned cp)
{
    char pattern[64];
    snprintf(pattern, sizeof(pattern), ":charset=%x", cp);
    const char *argv[] = {"/usr/bin/fc-list", pattern, "family", NULL};
    char *out = NULL;
    int code = ts_test_run(argv, NULL, NULL, &out);
    int ok = code == 0 && out && *out;
    free(out);
    return ok;
}

START_TEST(test_chromium_moderated_thread)
{
    enum { DEPTH = 30 };
    /* Without these the screenshot shows boxes (deploy/install-deps.sh
     * installs fonts-noto-color-emoji and fonts-wqy-microhei). */
    static const unsigned cps[] = {0x1F389, 0x1F1EB, 0x1F600, 0x5C71, 0x201C};
    for (size_t i = 0; i < sizeof(cps) / sizeof(cps[0]); i++)
        ck_assert_msg(font_covers(cps[i]), "no font for U+%04X: run deploy/install-deps.sh",
                      cps[i]);
    start(NULL);
    static struct model m;
    memset(&m, 0, sizeof(m));
    snprintf(m.key, sizeof(m.key), "site/\xc3\xa9t\xc3\xa9 mod\xc3\xa9r\xc3\xa9");
    static const char *const names[] = {"\xe5\xb1\xb1\xe7\x94\xb0", "Zo\xc3\xab", "Bob"};
    struct mc *root = model_post(&m, NULL, "Ann", "root words a moderator deletes");
    struct mc *chain[DEPTH], *prev = root;
    for (int d = 0; d < DEPTH; d++) {
        char body[200];
        snprintf(body, sizeof(body), "depth %d %s", d + 1, bodies[d % 6]);
        chain[d] = prev = model_post(&m, prev, names[d % 3], body);
    }
    struct mc *leaf = model_post(&m, chain[5], "Mal", "hidden leaf words");
    model_post(&m, NULL, "Ann", "Another root \xf0\x9f\x8e\x89 \xe2\x80\x9cquoted\xe2\x80\x9d");
    model_moderate(&m, root, "delete", THREADSYNC__STATUS__DELETED);
    model_author_delete(&m, chain[9]);
    model_moderate(&m, chain[19], "hide", THREADSYNC__STATUS__HIDDEN);
    model_moderate(&m, leaf, "hide", THREADSYNC__STATUS__HIDDEN);
    mirror_once(NULL);
    assert_mirror(&m);

    char html[1024];
    thread_path(m.key, "html", html, sizeof(html));
    char *dom = chromium_render(html, "mirror-thread-moderated.png");
    /* Chromium parsed the same tree: placeholders where the deleted and
     * hidden comments stood, every reply nested beneath its parent, no
     * hidden text anywhere. */
    assert_page(&m, dom);
    ck_assert_int_eq(li_depth(dom), DEPTH + 1);
    ck_assert_msg(strstr(dom, "\xe5\xb1\xb1\xe7\x94\xb0") && strstr(dom, "Zo\xc3\xab"),
                  "authors missing");
    ck_assert_msg(strstr(dom, "e\xcc\x81 a\xcc\x8a n\xcc\x83"), "combining marks altered");
    free(dom);
}
END_TEST

/* ---- what the mirror does around the sync: terminal, servers, crashes ------ */

/* Runs `threadsync mirror --once` on a pseudo-terminal (stdout and stderr)
 * and returns what it wrote there. */
static char *mirror_once_on_tty(void)
{
    const char *once[] = {"--once", NULL};
    const char *argv[32];
    cli_argv("mirror", once, argv);
    int master;
    pid_t pid = forkpty(&master, NULL, NULL, NULL);
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    ck_assert_ptr_nonnull(buf);
    uint64_t end = ts_test_now_ms() + 120000;
    for (;;) {
        /* EIO once the child is gone and the terminal has no writer. */
        ssize_t r = read(master, buf + len, cap - len - 1);
        if (r <= 0 && !(r < 0 && errno == EINTR))
            break;
        if (r > 0)
            len += (size_t)r;
        if (cap - len < 2) {
            cap *= 2;
            buf = realloc(buf, cap);
            ck_assert_ptr_nonnull(buf);
        }
        ck_assert_msg(ts_test_now_ms() < end, "mirror on a terminal did not finish");
    }
    buf[len] = '\0';
    close(master);
    ck_assert_int_eq(cli_wait(pid, 30), 0);
    return buf;
}

START_TEST(test_progress_on_terminal)
{
    start(NULL);
    struct posted p;
    posted_init(&p, "tty", 10);
    post_many(&p, 2000, 9);
    char *out = mirror_once_on_tty();
    /* Redrawn in place, with counts, the target and a rate; the last line
     * is the whole sync, and it is ended. */
    char want[160];
    snprintf(want, sizeof(want),
             "\r\033[Ksync: 2000 events, 10 threads rendered, seq %" PRIu64 " of %" PRIu64
             " (100%%), ",
             p.last_seq, p.last_seq);
    const char *last = strstr(out, want);
    ck_assert_msg(last, "no final progress line \"%s\" in: %s", want + 4, out);
    for (const char *q; (q = strstr(last + 1, want)) != NULL;)
        last = q;
    const char *rate = last + strlen(want);
    ck_assert_msg(strtoull(rate, NULL, 10) > 0 &&
                      strstr(rate, "/s\r\n") == rate + strcspn(rate, "/"),
                  "no rate in: %.200s", last);
    free(out);
    /* Not on a terminal: no progress at all. */
    snprintf(mdir, sizeof(mdir), "%s/mirror-quiet", node.dir);
    char *err;
    mirror_once(&err);
    ck_assert_msg(!strstr(err, " events, ") && !strchr(err, '\r'), "progress off a terminal: %s",
                  err);
    free(err);
    verify_ok(10, 2000);
    posted_free(&p);
}
END_TEST

/* A loopback address nothing listens on. */
static void dead_address(char *out, size_t size)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t len = sizeof(a);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    snprintf(out, size, "127.0.0.1:%u", (unsigned)ntohs(a.sin_port));
}

static size_t count_of(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

START_TEST(test_server_list_and_backoff)
{
    start(NULL);
    struct posted p;
    posted_init(&p, "servers", 2);
    post_many(&p, 20, 10);
    char dead[64];
    dead_address(dead, sizeof(dead));
    const char *extra[] = {"--server", dead, NULL};
    pid_t m = cli_start("mirror", "servers", extra);
    wait_cursor(p.last_seq, 30);

    /* Both servers down for 4 s: the mirror goes round the list, backing
     * off (100 ms doubling, jittered to 50-100% of each step: 5 to 7
     * attempts; a fixed 100 ms would be 40). */
    ck_assert_int_eq(ts_testnode_kill(&node, SIGTERM), 0);
    usleep(4000000);
    ck_assert_int_eq(ts_testnode_restart(&node, NULL), TS_OK);
    post_many(&p, 20, 11);
    wait_cursor(p.last_seq, 30);
    verify_ok(2, 40);
    kill(m, SIGINT);
    ck_assert_int_eq(cli_wait(m, 30), 0);
    char path[600], want[128];
    snprintf(path, sizeof(path), "%s/servers.err", node.dir);
    char *err = slurp(path);
    snprintf(want, sizeof(want), "disconnected from %s", dead);
    size_t to_dead = count_of(err, want);
    snprintf(want, sizeof(want), "disconnected from %s", node.addr);
    size_t to_node = count_of(err, want);
    ck_assert_msg(to_dead >= 1 && to_node >= 2, "not round the list: %s", err);
    ck_assert_msg(to_dead + to_node >= 3 && to_dead + to_node <= 12,
                  "%zu attempts in 4 s: no backoff? %s", to_dead + to_node, err);
    snprintf(want, sizeof(want), "connected to %s", node.addr);
    ck_assert_uint_eq(count_of(err, want), 2);
    /* the cursor was kept: no snapshot, no event twice */
    ck_assert_uint_eq(field(err, "snapshots="), 0);
    ck_assert_uint_eq(field(err, "events="), 40);
    free(err);
    posted_free(&p);
}
END_TEST

START_TEST(test_killed_mid_sync_converges)
{
    start(NULL);
    struct posted p;
    posted_init(&p, "crash", 20);
    post_many(&p, 6000, 12);
    /* SIGKILL while the first sync runs, a little later after each commit
     * it sees: in the middle of the next transaction, between a commit and
     * its rendering, or while a file is being replaced. Every restart
     * resumes from the stored cursor. */
    uint64_t cursor = 0;
    int mid = 0;
    for (int round = 0; round < 20 && cursor < p.last_seq; round++) {
        char tag[16];
        snprintf(tag, sizeof(tag), "crash%d", round);
        pid_t m = cli_start("mirror", tag, NULL);
        uint64_t end = ts_test_now_ms() + 30000;
        while (db_cursor() <= cursor && waitpid(m, NULL, WNOHANG) == 0) {
            ck_assert_msg(ts_test_now_ms() < end, "the mirror made no progress");
            usleep(500);
        }
        usleep((useconds_t)round * 3000);
        kill(m, SIGKILL);
        int status;
        waitpid(m, &status, 0);
        uint64_t c = db_cursor();
        ck_assert_uint_ge(c, cursor);
        mid += c > cursor && c < p.last_seq;
        cursor = c;
    }
    ck_assert_msg(mid >= 1, "no kill landed inside the sync (cursor %" PRIu64 ")", cursor);
    char *err;
    mirror_once(&err);
    ck_assert_uint_eq(field(err, "from="), cursor);
    ck_assert_uint_eq(field(err, "snapshots="), 0);
    free(err);
    verify_ok(20, 6000);
    /* Files and rows as a mirror that was never killed has them. */
    char killed[512];
    snprintf(killed, sizeof(killed), "%s", mdir);
    snprintf(mdir, sizeof(mdir), "%s/mirror-clean", node.dir);
    mirror_once(&err);
    /* A first sync renders once it is caught up, each thread once, however
     * many batches and groups the sync took. */
    ck_assert_uint_eq(field(err, "events="), 6000);
    ck_assert_uint_eq(field(err, "rendered="), 20);
    free(err);
    for (size_t t = 0; t < p.n_threads; t++)
        assert_same_files(killed, mdir, p.keys[t]);
    fprintf(stderr, "killed mid-sync: %d of the kills landed inside the sync\n", mid);
    posted_free(&p);
}
END_TEST

/* Files in a directory, not counting the temporaries a kill may leave
 * (never read); 0 when it does not exist. */
static size_t count_files(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.' && !strstr(e->d_name, ".tmp.");
    closedir(d);
    return n;
}

START_TEST(test_unsynced_render_converges)
{
    /* A first sync's render writes its files without fsync under the
     * marker 'files_unsynced'. A mirror that starts with the marker set
     * (killed during that render, or a power loss before its syncfs)
     * renders every thread again: the files converge on a clean mirror's
     * bytes. */
    start(NULL);
    struct posted p;
    posted_init(&p, "unsynced", 20);
    post_many(&p, 4000, 5);
    const char *once[] = {"--once", NULL};
    char clean[512], *err;
    snprintf(mdir, sizeof(mdir), "%s/mirror-clean", node.dir);
    snprintf(clean, sizeof(clean), "%s", mdir);
    mirror_once(&err);
    ck_assert_uint_eq(field(err, "rendered="), 20);
    free(err);
    ck_assert_uint_eq(db_meta("files_unsynced"), 0);

    /* As a power loss would leave it: the marker set, the cursor and
     * rendered_seq current. Nothing new arrives, everything is rendered. */
    sql_exec("UPDATE meta SET value = '1' WHERE key = 'files_unsynced'");
    mirror_once(&err);
    ck_assert_msg(strstr(err, "may not be on disk"), "%.2000s", err);
    ck_assert_uint_eq(field(err, "rendered="), 20);
    ck_assert_uint_eq(field(err, "events="), 0);
    free(err);
    ck_assert_uint_eq(db_meta("files_unsynced"), 0);

    /* SIGKILL once the render has written its first files. */
    int landed = 0;
    for (int round = 0; round < 20 && !landed; round++) {
        snprintf(mdir, sizeof(mdir), "%s/mirror-kill%d", node.dir, round);
        char tdir[600], tag[16];
        snprintf(tdir, sizeof(tdir), "%s/threads", mdir);
        snprintf(tag, sizeof(tag), "render%d", round);
        pid_t m = cli_start("mirror", tag, once);
        uint64_t end = ts_test_now_ms() + 60000;
        while (count_files(tdir) < 1 + (size_t)round && waitpid(m, NULL, WNOHANG) == 0) {
            ck_assert_msg(ts_test_now_ms() < end, "the mirror wrote no file");
            usleep(100);
        }
        kill(m, SIGKILL);
        waitpid(m, NULL, 0);
        if (db_meta("files_unsynced") != 1)
            continue; /* it had finished */
        landed = 1;
        ck_assert_uint_lt(count_files(tdir), 40);
        mirror_once(&err);
        ck_assert_uint_eq(field(err, "rendered="), 20);
        free(err);
        ck_assert_uint_eq(db_meta("files_unsynced"), 0);
        ck_assert_uint_eq(count_files(tdir), 40);
        for (size_t t = 0; t < p.n_threads; t++)
            assert_same_files(clean, mdir, p.keys[t]);
    }
    ck_assert_msg(landed, "no kill landed inside the render");
    posted_free(&p);
}
END_TEST

/* ---- acceptance ------------------------------------------------------------------ */

/* A child that posts to the threads of p until killed. */
static pid_t poster_start(struct posted *p, unsigned seed)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        for (unsigned i = 0;; i++) {
            post_many(p, 20, seed + i);
            usleep(100000);
        }
    }
    return pid;
}

static void poster_stop(pid_t pid)
{
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
}

/* The server's last seq, as the Welcome says. */
static uint64_t server_seq(void)
{
    struct ts_raw *r;
    ck_assert_int_eq(ts_raw_connect(node.addr, node.ca, "threadsync/1", &r), TS_OK);
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Hello h = THREADSYNC__HELLO__INIT;
    h.min_version = 1;
    h.max_version = 1;
    h.token = node.reader_token;
    f.msg_case = THREADSYNC__FRAME__MSG_HELLO;
    f.hello = &h;
    ck_assert_int_eq(ts_raw_send_frame(r, &f), TS_OK);
    Threadsync__Frame *in;
    ck_assert_int_eq(ts_raw_recv_nonping(r, 10000, &in), TS_OK);
    ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_WELCOME);
    uint64_t seq = in->welcome->last_seq;
    ts_frame_free(in);
    ts_raw_close(r);
    return seq;
}

START_TEST(test_acceptance_10k)
{
    start(NULL);
    uint64_t t0 = ts_test_now_ms();
    struct posted p;
    posted_init(&p, "soak", 100);
    post_many(&p, 10000, 7);
    uint64_t t_posted = ts_test_now_ms();
    fprintf(stderr, "acceptance: posted 10000 comments in 100 threads in %.1f s\n",
            (double)(t_posted - t0) / 1000);

    pid_t m = cli_start("mirror", "soak1", NULL);
    wait_cursor(p.last_seq, 300);
    uint64_t t_synced = ts_test_now_ms();
    fprintf(stderr, "acceptance: first sync of 10000 comments in %.1f s\n",
            (double)(t_synced - t_posted) / 1000);
    verify_ok(100, 10000);

    /* Stays equal while posts continue. */
    pid_t poster = poster_start(&p, 1000);
    for (int i = 0; i < 5; i++) {
        usleep(500000);
        verify_ok(100, 0);
    }
    /* Killed, and restarted while posts go on: it resumes from its cursor. */
    kill(m, SIGKILL);
    int status;
    waitpid(m, &status, 0);
    uint64_t killed_at = db_cursor();
    ck_assert_uint_ge(killed_at, p.last_seq);
    sleep(1);
    m = cli_start("mirror", "soak2", NULL);
    sleep(1);
    poster_stop(poster);
    uint64_t head = server_seq();
    /* Every post seen by the server is an event up to some seq <= head;
     * the mirror reaches the last event's seq. */
    uint64_t end = ts_test_now_ms() + 60000;
    char out_path[600];
    snprintf(out_path, sizeof(out_path), "%s/verify.out", node.dir);
    for (;;) {
        char *out, *err;
        int code = cli("verify", NULL, &out, &err);
        free(err);
        if (code == 0) {
            free(out);
            break;
        }
        ck_assert_msg(ts_test_now_ms() < end, "mirror not equal after posting stopped: %s", out);
        free(out);
        usleep(200000);
    }
    kill(m, SIGINT);
    ck_assert_int_eq(cli_wait(m, 30), 0);
    char path[600];
    snprintf(path, sizeof(path), "%s/soak2.err", node.dir);
    char *err = slurp(path);
    ck_assert_uint_eq(field(err, "from="), killed_at);
    ck_assert_uint_eq(field(err, "snapshots="), 0);
    uint64_t events = field(err, "events=");
    ck_assert_msg(events < 2000, "resumed with %" PRIu64 " events: a resync? %s", events, err);
    fprintf(stderr,
            "acceptance: resumed from %" PRIu64 " (head %" PRIu64 "): %" PRIu64
            " events, no snapshot; total %.1f s\n",
            killed_at, head, events, (double)(ts_test_now_ms() - t0) / 1000);
    free(err);
    posted_free(&p);
}
END_TEST

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    int acceptance = argc > 1 && strcmp(argv[1], "--acceptance") == 0;
    int moderation = argc > 1 && strcmp(argv[1], "--moderation") == 0;
    Suite *s = suite_create("mirror");
    TCase *tc = tcase_create(acceptance ? "acceptance" : moderation ? "moderation" : "mirror");
    tcase_add_checked_fixture(tc, NULL, teardown);
    if (acceptance) {
        tcase_set_timeout(tc, 600);
        tcase_add_test(tc, test_acceptance_10k);
    } else if (moderation) {
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, test_moderation_followed_live);
        tcase_add_test(tc, test_moderation_before_snapshot);
        tcase_add_test(tc, test_moderator_token_mirror_keeps_public_view);
        tcase_add_test(tc, test_chromium_moderated_thread);
    } else {
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, test_from_empty_then_from_cursor);
        tcase_add_test(tc, test_across_server_restart);
        tcase_add_test(tc, test_snapshot_after_window);
        tcase_add_test(tc, test_verify_detects_difference);
        tcase_add_test(tc, test_verify_many_threads_pages);
        tcase_add_test(tc, test_chromium_built_thread);
        tcase_add_test(tc, test_chromium_mirrored_thread);
        tcase_add_test(tc, test_progress_on_terminal);
        tcase_add_test(tc, test_server_list_and_backoff);
        tcase_add_test(tc, test_killed_mid_sync_converges);
        tcase_add_test(tc, test_unsynced_render_converges);
    }
    suite_add_tcase(s, tc);
    return ts_check_run(s);
}
