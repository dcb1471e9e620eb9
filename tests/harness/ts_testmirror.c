/*
 * ts_testmirror: helpers of the mirror's integration suites (see the
 * header).
 */
#include "ts_testmirror.h"

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

#include "threadsync.pb-c.h"
#include "ts_err.h"
#include "ts_frame.h"
#include "ts_mirror_render.h"
struct ts_testnode node;
int node_up;
char mdir[512];        /* the mirror directory */
char reader_file[512]; /* the reader token, for the CLI */
char mod_file[512], poster_file[512];
const char *mirror_token = reader_file; /* what mirror and verify run as */

void write_token(char *path, size_t size, const char *role, const char *token)
{
    snprintf(path, size, "%s/%s.token", node.dir, role);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "%s\n", token);
    fclose(f);
}

void start(const char *const *extra)
{
    ck_assert_int_eq(ts_testnode_start(&node, extra), TS_OK);
    node_up = 1;
    snprintf(mdir, sizeof(mdir), "%s/mirror", node.dir);
    write_token(reader_file, sizeof(reader_file), "reader", node.reader_token);
    write_token(mod_file, sizeof(mod_file), "moderator", node.moderator_token);
    write_token(poster_file, sizeof(poster_file), "poster", node.poster_token);
    mirror_token = reader_file;
}

void teardown(void)
{
    if (node_up) {
        int status = ts_testnode_cleanup(&node);
        node_up = 0;
        ck_assert_msg(status == 0, "node exit status %d", status);
    }
}

/* ---- posting ---------------------------------------------------------------- */

void posted_free(struct posted *p)
{
    for (size_t t = 0; t < p->n_threads; t++)
        free(p->ids[t]);
    free(p->ids);
    free(p->n_ids);
    free(p->keys);
    memset(p, 0, sizeof(*p));
}

void posted_init(struct posted *p, const char *prefix, size_t n_threads)
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

const char *const bodies[] = {
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
void post_many(struct posted *p, size_t n, unsigned seed)
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
uint64_t post_one(const char *thread, uint64_t parent, const char *name, const char *body,
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

char *slurp(const char *path)
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
void cli_argv(const char *cmd, const char *const *extra, const char **argv)
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

pid_t cli_start(const char *cmd, const char *tag, const char *const *extra)
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

void cli_wait_err(const char *tag, const char *needle, size_t want, int timeout_s)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/%s.err", node.dir, tag);
    uint64_t end = ts_test_now_ms() + (uint64_t)timeout_s * 1000;
    for (;;) {
        char *err = slurp(path);
        size_t n = ts_test_count(err, needle);
        if (n >= want) {
            free(err);
            return;
        }
        ck_assert_msg(ts_test_poll(end), "%zu of %zu \"%s\" from %s: %s", n, want, needle, tag,
                      err);
        free(err);
    }
}

int cli_wait(pid_t pid, int timeout_s)
{
    int status = 0;
    int exited = ts_test_await_exit(pid, ts_test_now_ms() + (uint64_t)timeout_s * 1000, &status);
    ck_assert_int_ge(exited, 0);
    if (!exited) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        ck_abort_msg("threadsync did not finish within %d s", timeout_s);
    }
    ck_assert_msg(WIFEXITED(status), "threadsync died: status %d", status);
    return WEXITSTATUS(status);
}

/* Runs a command to its end; *out and *err (may be NULL) get its output. */
int cli(const char *cmd, const char *const *extra, char **out, char **err)
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
uint64_t field(const char *text, const char *key)
{
    const char *p = strstr(text, key);
    ck_assert_msg(p != NULL, "no %s in: %.2000s", key, text);
    return strtoull(p + strlen(key), NULL, 10);
}

void mirror_once(char **err_out)
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

void verify_ok(uint64_t threads, uint64_t comments)
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
uint64_t db_meta(const char *name)
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
uint64_t db_cursor(void)
{
    return db_meta("last_seq");
}

void wait_cursor(uint64_t seq, int timeout_s)
{
    uint64_t end = ts_test_now_ms() + (uint64_t)timeout_s * 1000;
    uint64_t c;
    while ((c = db_cursor()) < seq)
        ck_assert_msg(ts_test_poll(end),
                      "mirror cursor %" PRIu64 " did not reach %" PRIu64 " in %d s", c, seq,
                      timeout_s);
}

void sql_exec(const char *text)
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

void thread_path(const char *key, const char *ext, char *out, size_t len)
{
    char name[TS_MIRROR_NAME_SIZE];
    ck_assert_int_eq(ts_mirror_render_file_name(key, name), TS_OK);
    snprintf(out, len, "%s/threads/%s.%s", mdir, name, ext);
}

/* mtime of a thread's HTML file in ns; 0 when missing. */
int64_t html_mtime(const char *key)
{
    char path[1024];
    thread_path(key, "html", path, sizeof(path));
    struct stat st;
    if (stat(path, &st) != 0)
        return 0;
    return (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
}

/* ---- Chromium ----------------------------------------------------------------- */

void artifact_path(const char *name, char *out, size_t len)
{
    mkdir(TS_TEST_ARTIFACTS_DIR, 0755);
    snprintf(out, len, "%s/%s", TS_TEST_ARTIFACTS_DIR, name);
}

int run_chromium(const char *html, const char *mode_arg, const char *out_file)
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
char *chromium_render(const char *html, const char *png_name)
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
int li_depth(const char *dom)
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
void dom_text(const char *body, char *out, size_t len)
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

/* Two mirrors' files of a thread are the same bytes. */
void assert_same_files(const char *dir_a, const char *dir_b, const char *key)
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
