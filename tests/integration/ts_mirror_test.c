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
 * Moderation as mirrors see it is ts_mirror_moderation_test, the 10,000
 * comment acceptance run ts_mirror_acceptance_test; the three share
 * tests/harness/ts_testmirror.h.
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
#include "ts_err.h"
#include "ts_frame.h"
#include "ts_mirror_render.h"
#include "ts_testmirror.h"

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
    /* the mirror notices (the drop) and backs off (a failed attempt) */
    cli_wait_err("live", "disconnected from", 2, 30);
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

    /* Both servers down until the mirror has failed five times after the
     * drop, going round the list and backing off (100 ms doubling, jittered
     * to 50-100% of each step): at least 50+100+200+400+800 ms, where a
     * fixed 100 ms would take 500. */
    char path[600], want[128];
    snprintf(path, sizeof(path), "%s/servers.err", node.dir);
    char *err = slurp(path);
    size_t before = ts_test_count(err, "disconnected from");
    free(err);
    uint64_t t0 = ts_test_now_ms();
    ck_assert_int_eq(ts_testnode_kill(&node, SIGTERM), 0);
    cli_wait_err("servers", "disconnected from", before + 6, 60);
    uint64_t down_ms = ts_test_now_ms() - t0;
    ck_assert_msg(down_ms >= 1200, "five attempts in %llu ms: no backoff?",
                  (unsigned long long)down_ms);
    ck_assert_int_eq(ts_testnode_restart(&node, NULL), TS_OK);
    post_many(&p, 20, 11);
    wait_cursor(p.last_seq, 30);
    verify_ok(2, 40);
    kill(m, SIGINT);
    ck_assert_int_eq(cli_wait(m, 30), 0);
    err = slurp(path);
    snprintf(want, sizeof(want), "disconnected from %s", dead);
    size_t to_dead = ts_test_count(err, want);
    snprintf(want, sizeof(want), "disconnected from %s", node.addr);
    size_t to_node = ts_test_count(err, want);
    ck_assert_msg(to_dead >= 1 && to_node >= 2, "not round the list: %s", err);
    ck_assert_msg(to_dead + to_node <= before + 12, "%zu attempts: no backoff? %s",
                  to_dead + to_node, err);
    snprintf(want, sizeof(want), "connected to %s", node.addr);
    ck_assert_uint_eq(ts_test_count(err, want), 2);
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
        while (db_cursor() <= cursor && waitpid(m, NULL, WNOHANG) == 0)
            ck_assert_msg(ts_test_spin(end), "the mirror made no progress");
        /* not a wait for anything: a later moment in the run each round */
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
        while (count_files(tdir) < 1 + (size_t)round && waitpid(m, NULL, WNOHANG) == 0)
            ck_assert_msg(ts_test_spin(end), "the mirror wrote no file");
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

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    Suite *s = suite_create("mirror");
    TCase *tc = tcase_create("mirror");
    tcase_add_checked_fixture(tc, NULL, teardown);
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
    suite_add_tcase(s, tc);
    return ts_check_run(s);
}
