/*
 * Integration: `threadsync import` and `threadsync export` against a real
 * node (issue 15). The hand-written WordPress and Disqus exports in
 * tests/fixtures are imported and read back comment by comment through
 * Get (author, body, original time, status, nesting, the visible count);
 * importing again adds nothing; an import killed with SIGKILL half-way
 * completes when run again, without duplicates; export then import into a
 * fresh node gives the same state digest, and a moderated source's export
 * ends with its audit trail, which the import skips and reports; bad input (malformed XML,
 * invalid UTF-8, a missing parent, an over-long body, with and without
 * --strict) is reported with its line and column and imports nothing of
 * the broken batch; only an admin may import; and a subscriber sees the
 * imported comments as ordinary events, each with its own seq.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "threadsync.h"
#include "ts_check_main.h"
#include "ts_err.h"
#include "ts_frame.h"
#include "ts_testcluster.h"
#include "ts_testnode.h"

static struct ts_testnode node, node2;

static void start(void)
{
    ck_assert_int_eq(ts_testnode_start(&node, NULL), TS_OK);
}

static void stop(void)
{
    int status = ts_testnode_cleanup(&node);
    ck_assert_msg(status == 0, "node exit status %d", status);
    if (node2.dir[0]) {
        status = ts_testnode_cleanup(&node2);
        ck_assert_msg(status == 0, "node2 exit status %d", status);
    }
}

/* Runs `threadsync --server .. --ca .. --token-file tok ARGS 2>&1` on n;
 * *out gets stdout and stderr. Returns the exit code. */
static int cli(const struct ts_testnode *n, const char *tok, char **out, const char *const *args)
{
    char cmd[4096];
    int len = snprintf(cmd, sizeof(cmd), "exec '%s' --server %s --ca '%s' --token-file '%s'",
                       TS_THREADSYNC_PATH, n->addr, n->ca, tok ? tok : n->token_file);
    for (size_t i = 0; args[i]; i++)
        len += snprintf(cmd + len, sizeof(cmd) - (size_t)len, " '%s'", args[i]);
    snprintf(cmd + len, sizeof(cmd) - (size_t)len, " 2>&1");
    const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    char *o = NULL;
    int code = ts_test_run(argv, n->dir, NULL, &o);
    ck_assert_ptr_nonnull(o);
    if (out)
        *out = o;
    else
        free(o);
    return code;
}

static int import(const struct ts_testnode *n, const char *format, const char *file, char **out,
                  const char *extra)
{
    const char *args[] = {"import", "--format", format, file, extra, NULL};
    return cli(n, NULL, out, args);
}

static uint64_t json_u64(const char *text, const char *key)
{
    char k[64];
    snprintf(k, sizeof(k), "\"%s\":", key);
    const char *p = strstr(text, k);
    ck_assert_msg(p != NULL, "no %s in: %s", key, text);
    return strtoull(p + strlen(k), NULL, 10);
}

static struct ts_client_config config(const struct ts_testnode *n, const char **server)
{
    *server = n->addr;
    struct ts_client_config cfg = {
        .servers = server, .n_servers = 1, .ca_file = n->ca, .token = n->admin_token};
    return cfg;
}

/* The thread's Get answer (as an admin: e-mails and every status). */
static Threadsync__GetResult *get(const struct ts_testnode *n, const char *key)
{
    const char *server;
    struct ts_client_config cfg = config(n, &server);
    Threadsync__GetResult *g = NULL;
    int rc = ts_sync_get(&cfg, key, &g, NULL);
    ck_assert_msg(rc == TS_OK, "get %s: %s", key, ts_err_name(rc));
    return g;
}

static int thread_exists(const struct ts_testnode *n, const char *key)
{
    const char *server;
    struct ts_client_config cfg = config(n, &server);
    Threadsync__GetResult *g = NULL;
    int rc = ts_sync_get(&cfg, key, &g, NULL);
    ts_msg_free(g);
    ck_assert(rc == TS_OK || rc == TS_E_NOT_FOUND);
    return rc == TS_OK;
}

struct want {
    const char *name, *email, *body, *when; /* when: UTC "YYYY-MM-DD HH:MM:SS" */
    int status;
    int parent; /* index into the same table, -1 top level */
};

static int64_t utc_ms(const char *s)
{
    struct tm tm = {0};
    ck_assert_ptr_nonnull(strptime(s, "%Y-%m-%d %H:%M:%S", &tm));
    return (int64_t)timegm(&tm) * 1000;
}

/* g's comments are exactly w[0..n) in id order. */
static void check_comments(const Threadsync__GetResult *g, const struct want *w, size_t n)
{
    ck_assert_uint_eq(g->n_comments, n);
    uint32_t visible = 0;
    for (size_t i = 0; i < n; i++) {
        const Threadsync__Comment *c = g->comments[i];
        ck_assert_msg((int)c->status == w[i].status, "comment %zu status %d", i, c->status);
        ck_assert_str_eq(c->author_name, w[i].name);
        ck_assert_str_eq(c->author_email, w[i].email);
        ck_assert_str_eq(c->body, w[i].body);
        ck_assert_int_eq(c->created_at_ms, utc_ms(w[i].when));
        ck_assert_uint_eq(c->parent_id, w[i].parent < 0 ? 0 : g->comments[w[i].parent]->id);
        ck_assert_uint_eq(c->thread_id, g->thread->id);
        if (i)
            ck_assert_uint_gt(c->id, g->comments[i - 1]->id);
        visible += c->status == THREADSYNC__STATUS__VISIBLE;
    }
    ck_assert_uint_eq(g->thread->comment_count, visible);
}

enum { V = THREADSYNC__STATUS__VISIBLE, P = THREADSYNC__STATUS__PENDING };
enum { H = THREADSYNC__STATUS__HIDDEN, D = THREADSYNC__STATUS__DELETED };

static const struct want wp_hello[] = {
    {"Zoë Ångström", "zoe@example.org",
     "First! “Curly quotes” and a link (https://example.org/x) & bold.\n\nSecond paragraph.",
     "2021-03-02 08:15:00", V, -1},
    {"Björn", "bjorn@example.org", "Level two.", "2021-03-02 09:00:00", V, 0},
    {"Zoë Ångström", "zoe@example.org", "Level three.", "2021-03-02 10:00:00", V, 1},
    {"Björn", "bjorn@example.org", "Level four.", "2021-03-02 11:00:00", V, 2},
    {"Ĳsbrand 🐧", "ijs@example.org", "Level five 🎉 — it’s deep.", "2021-03-02 12:00:00", V, 3},
    /* spam with a reply: kept, hidden */
    {"Cheap Pills", "spam@spam.example", "Buy pills (https://spam.example)", "2021-03-03 09:00:00",
     H, -1},
    {"Carol", "carol@example.org", "Replying to the spam, sadly.", "2021-03-03 10:00:00", V, 5},
    /* trash with a reply: a tombstone */
    {"", "", "", "2021-03-04 09:00:00", D, -1},
    {"Erin", "erin@example.org", "What did Dave say?", "2021-03-04 10:00:00", V, 7},
    {"Frank", "frank@example.org", "Waiting for approval.", "2021-03-06 09:00:00", P, -1},
    /* a parent listed after its reply */
    {"Heidi", "heidi@example.org", "The parent, listed second.", "2021-03-07 09:00:00", V, -1},
    {"Grace", "grace@example.org", "A reply listed before its parent.", "2021-03-07 10:00:00", V,
     10},
};

static const struct want wp_about[] = {
    {"李小龙", "lee@example.cn", "I <3 this page & that’s all.", "2021-03-08 10:00:00", V, -1},
};

static void check_wordpress(const struct ts_testnode *n)
{
    Threadsync__GetResult *g = get(n, "/2021/03/hello-world/");
    ck_assert_str_eq(g->thread->title, "Hello & “welcome”");
    ck_assert_str_eq(g->thread->url, "https://blog.example/2021/03/hello-world/");
    ck_assert_int_eq(g->thread->created_at_ms, utc_ms("2021-03-01 10:00:00"));
    check_comments(g, wp_hello, sizeof(wp_hello) / sizeof(wp_hello[0]));
    ts_msg_free(g);
    g = get(n, "/about/");
    check_comments(g, wp_about, 1);
    ts_msg_free(g);
    ck_assert(!thread_exists(n, "/?p=3")); /* no comments, no thread */
}

START_TEST(test_wordpress)
{
    start();
    char *out;
    ck_assert_int_eq(import(&node, "wordpress", TS_FIXTURES_DIR "/wordpress.xml", &out, "--json"),
                     0);
    ck_assert_uint_eq(json_u64(out, "created"), 13);
    ck_assert_uint_eq(json_u64(out, "threads_created"), 2);
    ck_assert_uint_eq(json_u64(out, "refused"), 0);
    ck_assert_ptr_nonnull(strstr(out, "\"pingback or trackback"));
    ck_assert_ptr_nonnull(strstr(out, "\"spam or trash without replies\":1"));
    free(out);
    check_wordpress(&node);

    /* again: nothing new, the same ids */
    Threadsync__GetResult *before = get(&node, "/2021/03/hello-world/");
    ck_assert_int_eq(import(&node, "wordpress", TS_FIXTURES_DIR "/wordpress.xml", &out, "--json"),
                     0);
    ck_assert_uint_eq(json_u64(out, "created"), 0);
    ck_assert_uint_eq(json_u64(out, "existing"), 13);
    free(out);
    Threadsync__GetResult *after = get(&node, "/2021/03/hello-world/");
    ck_assert_uint_eq(after->n_comments, before->n_comments);
    for (size_t i = 0; i < after->n_comments; i++)
        ck_assert_uint_eq(after->comments[i]->id, before->comments[i]->id);
    ck_assert_uint_eq(after->thread->version, before->thread->version);
    ts_msg_free(before);
    ts_msg_free(after);
    check_wordpress(&node);

    /* --key-from slug */
    ck_assert_int_eq(
        import(&node, "wordpress", TS_FIXTURES_DIR "/wordpress.xml", &out, "--key-from=x"), 2);
    free(out);
    stop();
}
END_TEST

static const struct want dq_cafe[] = {
    {"Amélie Poulain", "amelie@example.fr", "Très bon ! J’adore ☕", "2019-07-02 09:30:00", V, -1},
    {"Bob", "bob@example.org", "Reply one\nwith a line break", "2019-07-02 10:00:00", V, 0},
    {"", "", "", "2019-07-03 10:00:00", D, -1},
    {"Carl", "carl@example.org", "Replying to the deleted one", "2019-07-03 11:00:00", V, 2},
};

static const struct want dq_second[] = {
    {"Дора", "dora@example.org", "Emoji only 👍🏽", "2019-09-02 10:00:00", V, -1},
};

START_TEST(test_disqus)
{
    start();
    char *out;
    ck_assert_int_eq(import(&node, "disqus", TS_FIXTURES_DIR "/disqus.xml", &out, "--json"), 0);
    ck_assert_uint_eq(json_u64(out, "created"), 5);
    ck_assert_uint_eq(json_u64(out, "threads_created"), 2);
    free(out);
    Threadsync__GetResult *g = get(&node, "/2019/07/café-au-lait/");
    ck_assert_str_eq(g->thread->title, "Café au lait & “croissants”");
    check_comments(g, dq_cafe, 4);
    ts_msg_free(g);
    g = get(&node, "/2019/09/second/?utm=x");
    ck_assert_str_eq(g->thread->title, "Second & last");
    check_comments(g, dq_second, 1);
    ts_msg_free(g);
    ck_assert(!thread_exists(&node, "/2019/08/no-comments/"));
    ck_assert_int_eq(import(&node, "disqus", TS_FIXTURES_DIR "/disqus.xml", &out, "--json"), 0);
    ck_assert_uint_eq(json_u64(out, "created"), 0);
    ck_assert_uint_eq(json_u64(out, "existing"), 5);
    free(out);
    stop();
}
END_TEST

/* Writes a WXR file of n comments in one post, each (but the first of
 * every ten) a reply to the one before. */
static void write_big_wxr(const char *path, int n)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<rss version=\"2.0\" "
          "xmlns:wp=\"http://wordpress.org/export/1.2/\"><channel><item>"
          "<title>Big</title><link>https://blog.example/big/</link>"
          "<wp:post_id>1</wp:post_id>\n",
          f);
    for (int i = 1; i <= n; i++)
        fprintf(f,
                "<wp:comment><wp:comment_id>%d</wp:comment_id>"
                "<wp:comment_author>Author %d</wp:comment_author>"
                "<wp:comment_date_gmt>2020-01-01 00:00:%02d</wp:comment_date_gmt>"
                "<wp:comment_content>Comment number %d</wp:comment_content>"
                "<wp:comment_approved>1</wp:comment_approved>"
                "<wp:comment_parent>%d</wp:comment_parent></wp:comment>\n",
                i, i, i % 60, i, i % 10 == 1 ? 0 : i - 1);
    fputs("</item></channel></rss>\n", f);
    ck_assert_int_eq(fclose(f), 0);
}

START_TEST(test_interrupted_import_completes)
{
    start();
    char path[512];
    snprintf(path, sizeof(path), "%s/big.xml", node.dir);
    enum { N = 3000 };
    write_big_wxr(path, N);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execl(TS_THREADSYNC_PATH, TS_THREADSYNC_PATH, "--server", node.addr, "--ca", node.ca,
              "--token-file", node.token_file, "import", "--format", "wordpress", "--quiet",
              "--batch-size", "5", path, (char *)NULL);
        _exit(127);
    }
    /* kill it once part of the file is in */
    size_t seen = 0;
    uint64_t deadline = ts_test_now_ms() + 60000;
    do {
        if (thread_exists(&node, "/big/")) {
            Threadsync__GetResult *g = get(&node, "/big/");
            seen = g->n_comments;
            ts_msg_free(g);
        }
    } while (seen < 200 && ts_test_poll(deadline));
    kill(pid, SIGKILL);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFSIGNALED(status), "the import ended before it was killed");
    Threadsync__GetResult *g = get(&node, "/big/");
    size_t part = g->n_comments;
    ts_msg_free(g);
    ck_assert_uint_gt(part, 0);
    ck_assert_uint_lt(part, N);

    char *out;
    ck_assert_int_eq(import(&node, "wordpress", path, &out, "--json"), 0);
    ck_assert_uint_eq(json_u64(out, "created") + json_u64(out, "existing"), N);
    ck_assert_uint_ge(json_u64(out, "existing"), part);
    free(out);
    g = get(&node, "/big/");
    ck_assert_uint_eq(g->n_comments, N);
    for (size_t i = 0; i < N; i++) {
        char want[64];
        snprintf(want, sizeof(want), "Comment number %zu", i + 1);
        ck_assert_str_eq(g->comments[i]->body, want);
        ck_assert_uint_eq(g->comments[i]->parent_id, i % 10 == 0 ? 0 : g->comments[i - 1]->id);
    }
    ts_msg_free(g);
    stop();
}
END_TEST

static void digest_of(const struct ts_testnode *n, char out[65])
{
    char *o;
    const char *args[] = {"admin", "digest", NULL};
    ck_assert_int_eq(cli(n, NULL, &o, args), 0);
    const char *p = strstr(o, "digest=");
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(sscanf(p + 7, "%64[0-9a-f]", out), 1);
    free(o);
}

START_TEST(test_export_import_same_digest)
{
    start();
    char *out;
    ck_assert_int_eq(import(&node, "wordpress", TS_FIXTURES_DIR "/wordpress.xml", &out, NULL), 0);
    free(out);
    ck_assert_int_eq(import(&node, "disqus", TS_FIXTURES_DIR "/disqus.xml", &out, NULL), 0);
    free(out);
    /* ordinary posts and a moderator's change after the import: ids past it */
    const char *post[] = {
        "post", "--thread", "/about/", "--name", "Ivan", "--body", "posted after the import", NULL};
    ck_assert_int_eq(cli(&node, NULL, &out, post), 0);
    free(out);
    char file[512];
    snprintf(file, sizeof(file), "%s/export.jsonl", node.dir);
    const char *exp[] = {"export",        "--format", "jsonl", "--all",
                         "--with-emails", "--out",    file,    NULL};
    ck_assert_int_eq(cli(&node, NULL, &out, exp), 0);
    free(out);
    char d1[65], d2[65];
    digest_of(&node, d1);

    ck_assert_int_eq(ts_testnode_start(&node2, NULL), TS_OK);
    ck_assert_int_eq(import(&node2, "jsonl", file, &out, "--json"), 0);
    ck_assert_uint_eq(json_u64(out, "refused"), 0);
    free(out);
    digest_of(&node2, d2);
    ck_assert_str_eq(d1, d2);
    /* replaying the imports' log entries after a restart: the same state */
    ck_assert_int_eq(ts_testnode_restart(&node2, NULL), TS_OK);
    digest_of(&node2, d2);
    ck_assert_str_eq(d1, d2);
    /* the copy's next post gets an id above every imported one */
    ck_assert_int_eq(cli(&node2, NULL, &out, post), 0);
    free(out);
    Threadsync__GetResult *a = get(&node, "/about/"), *b = get(&node2, "/about/");
    ck_assert_uint_gt(b->comments[b->n_comments - 1]->id, a->comments[a->n_comments - 1]->id);
    ts_msg_free(a);
    ts_msg_free(b);
    /* a moderated source: its export ends with the audit trail, which the
     * import skips and reports (the trail is written by real actions only) */
    char hide_id[24];
    Threadsync__GetResult *g = get(&node, "/about/");
    snprintf(hide_id, sizeof(hide_id), "%llu", (unsigned long long)g->comments[0]->id);
    ts_msg_free(g);
    const char *hide[] = {"moderate", "hide", hide_id, NULL};
    ck_assert_int_eq(cli(&node, NULL, &out, hide), 0);
    free(out);
    ck_assert_int_eq(cli(&node, NULL, &out, exp), 0);
    free(out);
    FILE *f = fopen(file, "r");
    ck_assert_ptr_nonnull(f);
    char line[4096], last[4096] = "";
    while (fgets(line, sizeof(line), f))
        snprintf(last, sizeof(last), "%s", line);
    fclose(f);
    ck_assert_msg(strstr(last, "{\"type\":\"audit\"") == last, "last line: %s", last);
    ck_assert_ptr_nonnull(strstr(last, "\"action\":\"hide\""));
    ck_assert_ptr_nonnull(strstr(last, "\"actor\":\"test-admin\""));
    ck_assert_int_eq(import(&node2, "jsonl", file, &out, "--json"), 0);
    ck_assert_ptr_nonnull(strstr(out, "\"audit record (the trail is not imported)\":1"));
    free(out);
    /* without e-mails, the export says so and holds none */
    const char *exp2[] = {"export", "--format", "jsonl", "--thread", "/about/", NULL};
    ck_assert_int_eq(cli(&node, NULL, &out, exp2), 0);
    ck_assert_ptr_nonnull(strstr(out, "\"with_emails\":false"));
    ck_assert_ptr_null(strstr(out, "lee@example.cn"));
    ck_assert_ptr_nonnull(strstr(out, "\"author_name\":\"李小龙\""));
    free(out);
    stop();
}
END_TEST

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
}

#define WXR_HEAD                                                                                   \
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<rss version=\"2.0\" "                            \
    "xmlns:wp=\"http://wordpress.org/export/1.2/\"><channel>\n<item><title>T</title>"              \
    "<link>https://b.example/t/</link><wp:post_id>1</wp:post_id>\n"
#define WXR_COMMENT(id, parent, body)                                                              \
    "<wp:comment><wp:comment_id>" id "</wp:comment_id><wp:comment_author>A</wp:comment_author>"    \
    "<wp:comment_date_gmt>2020-01-01 00:00:00</wp:comment_date_gmt><wp:comment_content>" body      \
    "</wp:comment_content><wp:comment_approved>1</wp:comment_approved><wp:comment_parent>" parent  \
    "</wp:comment_parent></wp:comment>\n"
#define WXR_TAIL "</item></channel></rss>\n"

START_TEST(test_bad_input)
{
    start();
    char path[512], *out;
    snprintf(path, sizeof(path), "%s/bad.xml", node.dir);

    /* malformed XML after two good comments of the same batch: an error
     * with line and column, nothing imported */
    write_file(path,
               WXR_HEAD WXR_COMMENT("1", "0", "one") WXR_COMMENT(
                   "2", "1", "two") "<wp:comment><wp:comment_id>3</wp:comment_idd>\n" WXR_TAIL);
    ck_assert_int_eq(import(&node, "wordpress", path, &out, NULL), 1);
    ck_assert_msg(strstr(out, "line 6, column") && strstr(out, "mismatched tag"), "%s", out);
    free(out);
    ck_assert(!thread_exists(&node, "/t/"));

    /* invalid UTF-8 */
    write_file(path, WXR_HEAD WXR_COMMENT("1", "0", "bad \xC3\x28 byte") WXR_TAIL);
    ck_assert_int_eq(import(&node, "wordpress", path, &out, NULL), 1);
    ck_assert_msg(strstr(out, "line 4, column") && strstr(out, "invalid token"), "%s", out);
    free(out);
    ck_assert(!thread_exists(&node, "/t/"));

    /* a parent missing from the file: refused with --strict (with the
     * reply to it), else top level with a warning */
    write_file(path, WXR_HEAD WXR_COMMENT("1", "0", "one") WXR_COMMENT("2", "99", "orphan")
                         WXR_COMMENT("3", "2", "orphan's reply") WXR_TAIL);
    ck_assert_int_eq(import(&node, "wordpress", path, &out, "--strict"), 0);
    ck_assert_msg(strstr(out, "comment 2 (line 5, column") && strstr(out, "--strict"), "%s", out);
    free(out);
    Threadsync__GetResult *g = get(&node, "/t/");
    ck_assert_uint_eq(g->n_comments, 1);
    ts_msg_free(g);
    ck_assert_int_eq(import(&node, "wordpress", path, &out, NULL), 0);
    ck_assert_msg(strstr(out, "imported at top level"), "%s", out);
    ck_assert_msg(strstr(out, "replies made top level (parent not in the file): 1"), "%s", out);
    free(out);
    g = get(&node, "/t/");
    ck_assert_uint_eq(g->n_comments, 3);
    ck_assert_uint_eq(g->comments[1]->parent_id, 0);
    ck_assert_uint_eq(g->comments[2]->parent_id, g->comments[1]->id);
    ts_msg_free(g);

    /* an over-long body: refused with --strict, else cut at 16384 bytes */
    size_t big = 20000;
    char *text = malloc(big + 2048);
    ck_assert_ptr_nonnull(text);
    int n = snprintf(text, 2048,
                     WXR_HEAD "<wp:comment><wp:comment_id>50</wp:comment_id>"
                              "<wp:comment_author>A</wp:comment_author>"
                              "<wp:comment_date_gmt>2020-01-01 00:00:00"
                              "</wp:comment_date_gmt><wp:comment_content>");
    memset(text + n, 'x', big);
    strcpy(text + n + big, "</wp:comment_content><wp:comment_approved>1</wp:comment_approved>"
                           "</wp:comment>" WXR_TAIL);
    write_file(path, text);
    free(text);
    ck_assert_int_eq(import(&node, "wordpress", path, &out, "--strict"), 0);
    ck_assert_msg(strstr(out, "over threadsync's limits (--strict)"), "%s", out);
    free(out);
    g = get(&node, "/t/");
    ck_assert_uint_eq(g->n_comments, 3);
    ts_msg_free(g);
    ck_assert_int_eq(import(&node, "wordpress", path, &out, NULL), 0);
    ck_assert_msg(strstr(out, "fields truncated: 1"), "%s", out);
    free(out);
    g = get(&node, "/t/");
    ck_assert_uint_eq(g->n_comments, 4);
    ck_assert_uint_eq(strlen(g->comments[3]->body), 16384);
    ts_msg_free(g);

    /* not a WXR file; a JSON line that is not JSON */
    write_file(path, "<html><body>hi</body></html>\n");
    ck_assert_int_eq(import(&node, "wordpress", path, &out, NULL), 1);
    ck_assert_msg(strstr(out, "not a WordPress export"), "%s", out);
    free(out);
    write_file(path, "{\"type\":\"export\",\"format\":1}\n{\"type\":\"thread\",\"key\":}\n");
    ck_assert_int_eq(import(&node, "jsonl", path, &out, NULL), 1);
    ck_assert_msg(strstr(out, "line 2, column 24"), "%s", out);
    free(out);
    stop();
}
END_TEST

START_TEST(test_only_admin_imports)
{
    start();
    char tok[512];
    snprintf(tok, sizeof(tok), "%s/moderator.token", node.dir);
    write_file(tok, node.moderator_token);
    const char *file = TS_FIXTURES_DIR "/wordpress.xml";
    const char *args[] = {"import", "--format", "wordpress", file, NULL};
    char *out;
    ck_assert_int_eq(cli(&node, tok, &out, args), 1);
    ck_assert_msg(strstr(out, "FORBIDDEN"), "%s", out);
    free(out);
    ck_assert(!thread_exists(&node, "/about/"));
    stop();
}
END_TEST

/* A subscriber gets one event per imported comment, each with its own
 * seq, in increasing order, with the comment's original time. */
START_TEST(test_subscriber_sees_events)
{
    start();
    char *out;
    ck_assert_int_eq(import(&node, "wordpress", TS_FIXTURES_DIR "/wordpress.xml", &out, NULL), 0);
    free(out);
    struct ts_raw *r;
    int role;
    ck_assert_int_eq(ts_raw_connect(node.addr, node.ca, TS_ALPN, &r), TS_OK);
    ck_assert_int_eq(ts_raw_hello(r, node.reader_token, &role), TS_OK);
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Subscribe sub = THREADSYNC__SUBSCRIBE__INIT;
    sub.request_id = 1;
    sub.all = 1;
    f.msg_case = THREADSYNC__FRAME__MSG_SUBSCRIBE;
    f.subscribe = &sub;
    ck_assert_int_eq(ts_raw_send_frame(r, &f), TS_OK);
    size_t events = 0, hidden_bodies = 0;
    uint64_t last = 0;
    for (int i = 0; i < 50 && events < 13; i++) {
        Threadsync__Frame *in = NULL;
        ck_assert_int_eq(ts_raw_recv_nonping(r, 5000, &in), TS_OK);
        if (in->msg_case == THREADSYNC__FRAME__MSG_EVENTS) {
            for (size_t k = 0; k < in->events->n_events; k++) {
                const Threadsync__Event *ev = in->events->events[k];
                ck_assert_uint_gt(ev->seq, last);
                last = ev->seq;
                ck_assert_ptr_nonnull(ev->comment);
                ck_assert_int_lt(ev->comment->created_at_ms, 1700000000000LL);
                ck_assert_str_eq(ev->comment->author_email, ""); /* public view */
                if (ev->comment->status != THREADSYNC__STATUS__VISIBLE)
                    hidden_bodies += ev->comment->body[0] == '\0';
                events++;
            }
        }
        ts_frame_free(in);
    }
    ck_assert_uint_eq(events, 13);
    ck_assert_uint_eq(hidden_bodies, 3); /* spam, trash, pending: no body for readers */
    ts_raw_close(r);
    stop();
}
END_TEST

/* The server's own checks on an Import: the first bad field refuses the
 * whole request, named as comments.<field> with the comment's position and
 * source id; nothing of it is applied. */
START_TEST(test_server_validation)
{
    start();
    const char *server;
    struct ts_client_config cfg = config(&node, &server);
    Threadsync__ImportThread th = THREADSYNC__IMPORT_THREAD__INIT;
    th.key = "/v/";
    Threadsync__ImportThread *tp[] = {&th};
    Threadsync__ImportComment c[2];
    Threadsync__ImportComment *cp[] = {&c[0], &c[1]};
    static char big[20001];
    memset(big, 'x', 20000);
    const char *bodies[] = {"fine", big};
    const char *ids[] = {"a", "b"};
    for (int i = 0; i < 2; i++) {
        threadsync__import_comment__init(&c[i]);
        c[i].source_id = (char *)ids[i];
        c[i].thread_key = "/v/";
        c[i].author_name = "N";
        c[i].body = (char *)bodies[i];
        c[i].created_at_ms = 1000;
        c[i].status = THREADSYNC__STATUS__VISIBLE;
    }
    Threadsync__Import im = THREADSYNC__IMPORT__INIT;
    im.source = "test";
    im.threads = tp;
    im.n_threads = 1;
    im.comments = cp;
    im.n_comments = 2;
    Threadsync__ImportResult *res = NULL;
    Threadsync__Error *e = NULL;
    ck_assert_int_eq(ts_sync_import(&cfg, &im, &res, &e), TS_E_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(e);
    ck_assert_str_eq(e->field, "comments.body");
    ck_assert_msg(strstr(e->message, "comments 1 (b)"), "%s", e->message);
    ts_msg_free(e);
    e = NULL;
    c[1].body = "ok";
    c[1].status = THREADSYNC__STATUS__STATUS_UNSPECIFIED;
    ck_assert_int_eq(ts_sync_import(&cfg, &im, &res, &e), TS_E_INVALID_ARGUMENT);
    ck_assert_str_eq(e->field, "comments.status");
    ts_msg_free(e);
    e = NULL;
    ck_assert(!thread_exists(&node, "/v/"));
    /* well-formed: both created, each with its own seq; again: existing */
    c[1].status = THREADSYNC__STATUS__HIDDEN;
    c[1].parent_source_id = "a";
    ck_assert_int_eq(ts_sync_import(&cfg, &im, &res, &e), TS_OK);
    ck_assert_uint_eq(res->created, 2);
    ck_assert_uint_eq(res->comments[1]->seq, res->comments[0]->seq + 1);
    ck_assert_uint_eq(res->comments[1]->comment_id, res->comments[1]->seq);
    ck_assert_uint_eq(res->seq, res->comments[1]->seq);
    uint64_t first = res->comments[0]->comment_id;
    ts_msg_free(res);
    ck_assert_int_eq(ts_sync_import(&cfg, &im, &res, &e), TS_OK);
    ck_assert_uint_eq(res->existing, 2);
    ck_assert_int_eq(res->comments[0]->outcome, THREADSYNC__IMPORT_OUTCOME__IMPORT_EXISTING);
    ck_assert_uint_eq(res->comments[0]->comment_id, first);
    ck_assert_uint_eq(res->seq, 0);
    ts_msg_free(res);
    stop();
}
END_TEST

/* The whole file, NUL-terminated; the caller frees it. */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    long size = ftell(f);
    ck_assert_int_ge(size, 0);
    rewind(f);
    char *buf = malloc((size_t)size + 1);
    ck_assert_ptr_nonnull(buf);
    size_t n = fread(buf, 1, (size_t)size, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/* An export's threads and comments: the file without its header (the
 * node's seq and the time) and without the audit trail, which an import
 * does not carry (docs/IMPORT-EXPORT.md). */
static char *export_content(const char *path)
{
    char *text = slurp(path), *w = text;
    for (const char *p = text; *p;) {
        const char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) + 1 : strlen(p);
        if (strncmp(p, "{\"type\":\"export\"", 16) != 0 &&
            strncmp(p, "{\"type\":\"audit\"", 15) != 0) {
            memmove(w, p, len);
            w += len;
        }
        p += len;
    }
    *w = '\0';
    return text;
}

/* A mirror (a reader's) of an imported site shows the same visible
 * comments, nested the same way, with their original dates and the count
 * WordPress showed; verify agrees with the server. */
START_TEST(test_mirror_pages)
{
    start();
    char *out;
    ck_assert_int_eq(import(&node, "wordpress", TS_FIXTURES_DIR "/wordpress.xml", &out, NULL), 0);
    free(out);
    char tok[512], dir[512];
    snprintf(tok, sizeof(tok), "%s/reader.token", node.dir);
    write_file(tok, node.reader_token);
    snprintf(dir, sizeof(dir), "%s/mirror", node.dir);
    const char *mirror[] = {"mirror", "--dir", dir, "--all", "--once", NULL};
    ck_assert_int_eq(cli(&node, tok, &out, mirror), 0);
    free(out);
    const char *verify[] = {"verify", "--dir", dir, "--all", NULL};
    ck_assert_int_eq(cli(&node, tok, &out, verify), 0);
    free(out);
    char path[700];
    snprintf(path, sizeof(path), "%s/threads/%%2F2021%%2F03%%2Fhello-world%%2F.json", dir);
    char *json = slurp(path);
    ck_assert_msg(strstr(json, "\"count\":9"), "%s", json);
    ck_assert_ptr_nonnull(strstr(json, "Level five 🎉 — it’s deep."));
    ck_assert_ptr_null(strstr(json, "Cheap Pills"));
    ck_assert_ptr_null(strstr(json, "zoe@example.org"));
    free(json);
    snprintf(path, sizeof(path), "%s/threads/%%2F2021%%2F03%%2Fhello-world%%2F.html", dir);
    char *html = slurp(path);
    ck_assert_ptr_nonnull(strstr(html, "9 comments"));
    ck_assert_ptr_nonnull(strstr(html, "datetime=\"2021-03-02T08:15:00.000Z\""));
    ck_assert_ptr_nonnull(strstr(html, "[removed]"));
    ck_assert_ptr_nonnull(strstr(html, "[deleted]"));
    ck_assert_ptr_null(strstr(html, "Waiting for approval."));
    /* five levels: the deepest reply sits in five nested lists */
    const char *p = strstr(html, "Level five");
    ck_assert_ptr_nonnull(p);
    int depth = 0;
    for (const char *q = html; q < p; q++) {
        if (!strncmp(q, "<ol", 3))
            depth++;
        else if (!strncmp(q, "</ol>", 5))
            depth--;
    }
    ck_assert_int_eq(depth, 5);
    free(html);
    stop();
}
END_TEST

/* A three-node cluster: an import sent to a follower goes to the leader
 * (NOT_LEADER is followed), and every node applies it to the same state. */
START_TEST(test_cluster_replicas_agree)
{
    enum { N = 3 };
    static struct ts_testnode nodes[N];
    char certs[256];
    ts_testcluster_certs(certs, sizeof(certs), "imp", N);
    ts_testcluster_start(nodes, N, certs, NULL);
    char *out;
    /* --server lists every node, the leader last: the first answers
     * NOT_LEADER or is the leader */
    int sent = 0;
    for (int i = N - 1; i >= 0 && !sent; i--)
        sent =
            import(&nodes[i], "wordpress", TS_FIXTURES_DIR "/wordpress.xml", &out, "--json") == 0;
    ck_assert_msg(sent, "%s", out);
    ck_assert_uint_eq(json_u64(out, "created"), 13);
    free(out);
    /* every node, once it applied the import, holds the same state */
    int agree = 0;
    uint64_t end = ts_test_now_ms() + 30000;
    do {
        char d[N][65];
        agree = 1;
        for (int i = 0; i < N; i++) {
            digest_of(&nodes[i], d[i]);
            agree &= strcmp(d[i], d[0]) == 0 && thread_exists(&nodes[i], "/about/");
        }
    } while (!agree && ts_test_poll(end));
    ck_assert_msg(agree, "the replicas' digests differ");
    for (int i = 0; i < N; i++)
        check_wordpress(&nodes[i]);
    ts_testcluster_stop(nodes, N, certs);
}
END_TEST

/* Batches are cut by size, thread records included: 1,000 posts with a
 * 2,000-byte permalink and a 500-byte title, one comment each, would be
 * 2.5 MB in one Import of 1,000 comments, above the frame limit. */
START_TEST(test_batches_fit_frames)
{
    start();
    char path[512];
    snprintf(path, sizeof(path), "%s/wide.xml", node.dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    char seg[2001], title[501];
    memset(seg, 'p', 2000);
    seg[2000] = '\0';
    memset(title, 't', 500);
    title[500] = '\0';
    fputs("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<rss version=\"2.0\" "
          "xmlns:wp=\"http://wordpress.org/export/1.2/\"><channel>\n",
          f);
    for (int i = 1; i <= 1000; i++)
        fprintf(f,
                "<item><title>%s</title><link>https://b.example/%.1990s%04d</link>"
                "<wp:post_id>%d</wp:post_id><wp:comment><wp:comment_id>%d</wp:comment_id>"
                "<wp:comment_author>A</wp:comment_author><wp:comment_date_gmt>2020-01-01 "
                "00:00:00</wp:comment_date_gmt><wp:comment_content>c</wp:comment_content>"
                "<wp:comment_approved>1</wp:comment_approved><wp:comment_parent>0"
                "</wp:comment_parent></wp:comment></item>\n",
                title, seg, i, i, i);
    fputs("</channel></rss>\n", f);
    ck_assert_int_eq(fclose(f), 0);
    const char *args[] = {"import", "--format", "wordpress", "--key-from",
                          "id",     "--json",   path,        NULL};
    char *out;
    ck_assert_int_eq(cli(&node, NULL, &out, args), 0);
    ck_assert_uint_eq(json_u64(out, "created"), 1000);
    ck_assert_uint_eq(json_u64(out, "threads_created"), 1000);
    free(out);
    Threadsync__GetResult *g = get(&node, "1000");
    ck_assert_uint_eq(strlen(g->thread->url), strlen("https://b.example/") + 1994);
    ts_msg_free(g);
    stop();
}
END_TEST

/* A thread larger than one Get answer (1 MiB + 64 KiB) is exported whole:
 * the CLI reads it through a Subscribe to its key, keeps the newest version
 * of each comment (one is hidden after the import), and the copy made from
 * the export has the same digest. */
START_TEST(test_export_big_thread)
{
    start();
    char path[512], file[512];
    snprintf(path, sizeof(path), "%s/huge.xml", node.dir);
    snprintf(file, sizeof(file), "%s/export.jsonl", node.dir);
    enum { N = 500, BODY = 3000 };
    static char body[BODY + 1];
    memset(body, 'w', BODY);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(WXR_HEAD, f);
    for (int i = 1; i <= N; i++)
        fprintf(f,
                "<wp:comment><wp:comment_id>%d</wp:comment_id><wp:comment_author>A</"
                "wp:comment_author><wp:comment_date_gmt>2020-01-01 00:00:00</"
                "wp:comment_date_gmt><wp:comment_content>%d %s</wp:comment_content>"
                "<wp:comment_approved>1</wp:comment_approved><wp:comment_parent>%d"
                "</wp:comment_parent></wp:comment>\n",
                i, i, body, i % 5 == 0 ? i - 1 : 0);
    fputs("</item><item><title>S</title><link>https://b.example/small/</link>"
          "<wp:post_id>2</wp:post_id>" WXR_COMMENT("9001", "0", "small one") WXR_TAIL,
          f);
    ck_assert_int_eq(fclose(f), 0);
    char *out;
    ck_assert_int_eq(import(&node, "wordpress", path, &out, "--json"), 0);
    ck_assert_uint_eq(json_u64(out, "created"), N + 1);
    free(out);
    /* the Get the export used to rely on cannot carry it */
    const char *server;
    struct ts_client_config cfg = config(&node, &server);
    Threadsync__GetResult *g = NULL;
    ck_assert_int_eq(ts_sync_get(&cfg, "/t/", &g, NULL), TS_E_TOO_LARGE);
    /* hide the 7th comment (its id from a first export): the export must
     * carry its newest version */
    uint64_t id7 = 0;
    char hide[32];
    {
        const char *exp[] = {"export",        "--format", "jsonl", "--all",
                             "--with-emails", "--out",    file,    NULL};
        ck_assert_int_eq(cli(&node, NULL, &out, exp), 0);
        free(out);
        char *text = slurp(file);
        const char *p = strstr(text, "\"body\":\"7 w");
        ck_assert_ptr_nonnull(p);
        while (p > text && strncmp(p, "{\"type\"", 7) != 0)
            p--;
        const char *idp = strstr(p, "\"id\":");
        ck_assert_ptr_nonnull(idp);
        id7 = strtoull(idp + 5, NULL, 10);
        free(text);
    }
    snprintf(hide, sizeof(hide), "%llu", (unsigned long long)id7);
    const char *mod[] = {"moderate", "hide", hide, NULL};
    ck_assert_int_eq(cli(&node, NULL, &out, mod), 0);
    free(out);
    const char *exp[] = {"export",        "--format", "jsonl", "--all",
                         "--with-emails", "--out",    file,    NULL};
    ck_assert_int_eq(cli(&node, NULL, &out, exp), 0);
    ck_assert_msg(strstr(out, "not exported") == NULL, "%s", out);
    ck_assert_ptr_nonnull(strstr(out, "2 threads, 501 comments"));
    free(out);
    char *text = slurp(file);
    /* comment lines only: the hide's audit record names the thread too */
    size_t big = 0;
    for (const char *p = text; *p;) {
        const char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (strncmp(p, "{\"type\":\"comment\"", 17) == 0 &&
            memmem(p, len, "\"thread_key\":\"/t/\"", 18))
            big++;
        p += len + (end != NULL);
    }
    ck_assert_uint_eq(big, N);
    ck_assert_ptr_nonnull(strstr(text, "\"status\":\"HIDDEN\""));
    free(text);
    ck_assert_int_eq(ts_testnode_start(&node2, NULL), TS_OK);
    ck_assert_int_eq(import(&node2, "jsonl", file, &out, "--json"), 0);
    ck_assert_uint_eq(json_u64(out, "created"), N + 1);
    ck_assert_uint_eq(json_u64(out, "refused"), 0);
    free(out);
    /* The copy exports the same threads and comments, field for field (the
     * state digests differ by the source's audit trail of the hide, which
     * an import does not carry). */
    char file2[512];
    snprintf(file2, sizeof(file2), "%s/export2.jsonl", node.dir);
    const char *exp2[] = {"export",        "--format", "jsonl", "--all",
                          "--with-emails", "--out",    file2,   NULL};
    ck_assert_int_eq(cli(&node2, NULL, &out, exp2), 0);
    free(out);
    char *c1 = export_content(file), *c2 = export_content(file2);
    ck_assert_uint_gt(strlen(c1), (size_t)N * 3000);
    ck_assert_str_eq(c1, c2);
    free(c1);
    free(c2);
    stop();
}
END_TEST

static Suite *import_suite(void)
{
    Suite *s = suite_create("ts_import");
    TCase *tc = tcase_create("import");
    tcase_add_test(tc, test_wordpress);
    tcase_add_test(tc, test_disqus);
    tcase_add_test(tc, test_interrupted_import_completes);
    tcase_add_test(tc, test_export_import_same_digest);
    tcase_add_test(tc, test_bad_input);
    tcase_add_test(tc, test_only_admin_imports);
    tcase_add_test(tc, test_subscriber_sees_events);
    tcase_add_test(tc, test_server_validation);
    tcase_add_test(tc, test_mirror_pages);
    tcase_add_test(tc, test_cluster_replicas_agree);
    tcase_add_test(tc, test_batches_fit_frames);
    tcase_add_test(tc, test_export_big_thread);
    tcase_set_timeout(tc, 240);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ts_check_run(import_suite());
}
