/*
 * ts_cli: argument parsing (order-free options, env defaults, repeated
 * --server, every usage error), the thread tree (a reply to a reply under a
 * deleted parent, input out of order), watch lines, JSON escaping, token
 * files, exit codes.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <netinet/in.h>
#include <sys/socket.h>

#include "ts_check_main.h"
#include "ts_cli.h"
#include "ts_err.h"
#include "ts_json.h"

/* ---- helpers ---------------------------------------------------------------- */

static const char *fake_env[8][2];

static char *fake_getenv(const char *name)
{
    for (size_t i = 0; i < 8 && fake_env[i][0]; i++)
        if (strcmp(fake_env[i][0], name) == 0)
            return (char *)fake_env[i][1];
    return NULL;
}

static void env_set(size_t i, const char *name, const char *value)
{
    fake_env[i][0] = name;
    fake_env[i][1] = value;
}

static void env_clear(void)
{
    memset(fake_env, 0, sizeof(fake_env));
}

#define PARSE(o, err, ...)                                                                         \
    ({                                                                                             \
        char *argv_[] = {"threadsync", __VA_ARGS__, NULL};                                         \
        ts_cli_parse((int)(sizeof(argv_) / sizeof(argv_[0])) - 1, argv_, fake_getenv, (o), (err),  \
                     sizeof(err));                                                                 \
    })

/* Runs fn into a memory stream and returns the text (caller frees). */
struct capture {
    FILE *f;
    char *buf;
    size_t len;
};

static FILE *cap_open(struct capture *c)
{
    c->buf = NULL;
    c->len = 0;
    c->f = open_memstream(&c->buf, &c->len);
    ck_assert_ptr_nonnull(c->f);
    return c->f;
}

static char *cap_close(struct capture *c)
{
    fclose(c->f);
    return c->buf;
}

static char *json_of(const char *s)
{
    struct capture c;
    ts_json_str(cap_open(&c), s);
    return cap_close(&c);
}

/* ---- parsing ---------------------------------------------------------------- */

START_TEST(test_parse_post_options_anywhere)
{
    env_clear();
    struct ts_cli_opts o;
    char err[256];
    int rc = PARSE(&o, err, "--json", "post", "--thread", "site/a", "--parent=7", "--name", "Ann",
                   "--email", "a@example.org", "--title", "T", "--url", "https://x/a", "--body",
                   "hello", "--server", "h1:1");
    ck_assert_msg(rc == TS_OK, "%s", err);
    ck_assert_int_eq(o.cmd, TS_CLI_CMD_POST);
    ck_assert_int_eq(o.json, 1);
    ck_assert_uint_eq(o.n_threads, 1);
    ck_assert_str_eq(o.threads[0], "site/a");
    ck_assert_uint_eq(o.parent, 7);
    ck_assert_str_eq(o.name, "Ann");
    ck_assert_str_eq(o.email, "a@example.org");
    ck_assert_str_eq(o.title, "T");
    ck_assert_str_eq(o.url, "https://x/a");
    ck_assert_str_eq(o.body, "hello");
    ck_assert_ptr_null(o.body_file);
    ck_assert_uint_eq(o.n_servers, 1);
    ck_assert_str_eq(o.servers[0], "h1:1");
    ck_assert_str_eq(o.ca_file, TS_CLI_DEFAULT_CA);
    ck_assert_str_eq(o.token_file, TS_CLI_DEFAULT_TOKEN_FILE);
    ts_cli_opts_free(&o);
}
END_TEST

START_TEST(test_parse_retry_options)
{
    env_clear();
    struct ts_cli_opts o;
    char err[256];
    ck_assert_int_eq(PARSE(&o, err, "post", "--thread", "t", "--name", "A", "--body", "b"), TS_OK);
    ck_assert_uint_eq(o.timeout_s, TS_CLI_DEFAULT_TIMEOUT_S);
    ck_assert_ptr_null(o.idempotency_key);
    ts_cli_opts_free(&o);
    ck_assert_int_eq(PARSE(&o, err, "post", "--thread", "t", "--name", "A", "--body", "b",
                           "--timeout", "5", "--idempotency-key", "run-7"),
                     TS_OK);
    ck_assert_uint_eq(o.timeout_s, 5);
    ck_assert_str_eq(o.idempotency_key, "run-7");
    ts_cli_opts_free(&o);
    ck_assert_int_eq(PARSE(&o, err, "delete", "9", "--timeout=60"), TS_OK);
    ck_assert_uint_eq(o.timeout_s, 60);
    ts_cli_opts_free(&o);
    /* refused: a key on a command without keys, bad keys, bad timeouts */
    ck_assert_int_eq(PARSE(&o, err, "delete", "9", "--idempotency-key", "k"),
                     TS_E_INVALID_ARGUMENT);
    ts_cli_opts_free(&o);
    /* --timeout is a common option: every command takes it */
    ck_assert_int_eq(PARSE(&o, err, "get", "--thread", "t", "--timeout", "5"), TS_OK);
    ck_assert_uint_eq(o.timeout_s, 5);
    ts_cli_opts_free(&o);
    const char *bad_keys[] = {"", "has space", "tab\there",
                              "01234567890123456789012345678901234567890123456789012345678901234"};
    for (size_t i = 0; i < sizeof(bad_keys) / sizeof(bad_keys[0]); i++) {
        ck_assert_int_eq(PARSE(&o, err, "post", "--thread", "t", "--name", "A", "--body", "b",
                               "--idempotency-key", (char *)bad_keys[i]),
                         TS_E_INVALID_ARGUMENT);
        ck_assert_ptr_nonnull(strstr(err, "--idempotency-key"));
        ts_cli_opts_free(&o);
    }
    const char *bad_timeouts[] = {"0", "-1", "x", "86401"};
    for (size_t i = 0; i < sizeof(bad_timeouts) / sizeof(bad_timeouts[0]); i++) {
        ck_assert_int_eq(PARSE(&o, err, "post", "--thread", "t", "--name", "A", "--body", "b",
                               "--timeout", (char *)bad_timeouts[i]),
                         TS_E_INVALID_ARGUMENT);
        ts_cli_opts_free(&o);
    }
}
END_TEST

START_TEST(test_parse_defaults_and_env)
{
    env_clear();
    struct ts_cli_opts o;
    char err[256];
    ck_assert_int_eq(PARSE(&o, err, "get", "--thread", "k"), TS_OK);
    ck_assert_uint_eq(o.n_servers, 1);
    ck_assert_str_eq(o.servers[0], TS_CLI_DEFAULT_SERVER);
    ck_assert_str_eq(o.ca_file, TS_CLI_DEFAULT_CA);
    ck_assert_str_eq(o.token_file, TS_CLI_DEFAULT_TOKEN_FILE);
    ts_cli_opts_free(&o);

    env_set(0, "THREADSYNC_SERVER", "a:1, b:2,,c:3");
    env_set(1, "THREADSYNC_CA", "/etc/ca.pem");
    env_set(2, "THREADSYNC_TOKEN_FILE", "/etc/tok");
    ck_assert_int_eq(PARSE(&o, err, "get", "--thread", "k"), TS_OK);
    ck_assert_uint_eq(o.n_servers, 3);
    ck_assert_str_eq(o.servers[0], "a:1");
    ck_assert_str_eq(o.servers[1], "b:2");
    ck_assert_str_eq(o.servers[2], "c:3");
    ck_assert_str_eq(o.ca_file, "/etc/ca.pem");
    ck_assert_str_eq(o.token_file, "/etc/tok");
    ts_cli_opts_free(&o);

    /* Flags beat the environment; repeated --server keeps every one, in
     * order, and none from the environment. */
    ck_assert_int_eq(PARSE(&o, err, "--server", "x:1", "watch", "--server=y:2", "--ca", "ca2",
                           "--token-file", "t2", "--server", "z:3"),
                     TS_OK);
    ck_assert_uint_eq(o.n_servers, 3);
    ck_assert_str_eq(o.servers[0], "x:1");
    ck_assert_str_eq(o.servers[1], "y:2");
    ck_assert_str_eq(o.servers[2], "z:3");
    ck_assert_str_eq(o.ca_file, "ca2");
    ck_assert_str_eq(o.token_file, "t2");
    ts_cli_opts_free(&o);

    /* --server takes a comma-separated list too, mixed with repeats. */
    ck_assert_int_eq(PARSE(&o, err, "get", "--thread", "k", "--server", "p:1,q:2,", "--server=r:3"),
                     TS_OK);
    ck_assert_uint_eq(o.n_servers, 3);
    ck_assert_str_eq(o.servers[0], "p:1");
    ck_assert_str_eq(o.servers[1], "q:2");
    ck_assert_str_eq(o.servers[2], "r:3");
    ts_cli_opts_free(&o);

    /* An empty variable is unset. */
    env_clear();
    env_set(0, "THREADSYNC_SERVER", "");
    ck_assert_int_eq(PARSE(&o, err, "get", "--thread", "k"), TS_OK);
    ck_assert_uint_eq(o.n_servers, 1);
    ck_assert_str_eq(o.servers[0], TS_CLI_DEFAULT_SERVER);
    ts_cli_opts_free(&o);
}
END_TEST

START_TEST(test_parse_watch)
{
    env_clear();
    struct ts_cli_opts o;
    char err[256];
    ck_assert_int_eq(PARSE(&o, err, "watch", "--thread", "a", "--since", "42", "--thread", "b"),
                     TS_OK);
    ck_assert_int_eq(o.cmd, TS_CLI_CMD_WATCH);
    ck_assert_uint_eq(o.n_threads, 2);
    ck_assert_str_eq(o.threads[0], "a");
    ck_assert_str_eq(o.threads[1], "b");
    ck_assert_uint_eq(o.since, 42);
    ts_cli_opts_free(&o);
    ck_assert_int_eq(PARSE(&o, err, "watch"), TS_OK);
    ck_assert_uint_eq(o.n_threads, 0);
    ck_assert_uint_eq(o.since, 0);
    ts_cli_opts_free(&o);
}
END_TEST

START_TEST(test_parse_mirror_verify)
{
    env_clear();
    struct ts_cli_opts o;
    char err[256];
    ck_assert_int_eq(
        PARSE(&o, err, "mirror", "--dir", "m", "--thread", "a", "--once", "--thread", "b"), TS_OK);
    ck_assert_int_eq(o.cmd, TS_CLI_CMD_MIRROR);
    ck_assert_str_eq(o.dir, "m");
    ck_assert_uint_eq(o.n_threads, 2);
    ck_assert_int_eq(o.once, 1);
    ck_assert_int_eq(o.all, 0);
    ts_cli_opts_free(&o);
    ck_assert_int_eq(PARSE(&o, err, "--all", "verify", "--dir=v"), TS_OK);
    ck_assert_int_eq(o.cmd, TS_CLI_CMD_VERIFY);
    ck_assert_str_eq(o.dir, "v");
    ck_assert_int_eq(o.all, 1);
    ts_cli_opts_free(&o);
    /* usage errors */
    ck_assert_int_eq(PARSE(&o, err, "mirror"), TS_E_INVALID_ARGUMENT);
    ck_assert_msg(strstr(err, "--dir"), "%s", err);
    ts_cli_opts_free(&o);
    ck_assert_int_eq(PARSE(&o, err, "mirror", "--dir", "m", "--all", "--thread", "a"),
                     TS_E_INVALID_ARGUMENT);
    ts_cli_opts_free(&o);
    ck_assert_int_eq(PARSE(&o, err, "verify", "--dir", "m", "--once"), TS_E_INVALID_ARGUMENT);
    ck_assert_msg(strstr(err, "--once"), "%s", err);
    ts_cli_opts_free(&o);
    ck_assert_int_eq(PARSE(&o, err, "watch", "--dir", "m"), TS_E_INVALID_ARGUMENT);
    ts_cli_opts_free(&o);
}
END_TEST

/* Each command line of bad (at most 8 words) is a usage error with a
 * reason. */
static void assert_refused(const char *const bad[][8], size_t n)
{
    struct ts_cli_opts o;
    char err[256];
    for (size_t i = 0; i < n; i++) {
        char *argv[10] = {"threadsync"};
        int argc = 1;
        for (size_t k = 0; k < 8 && bad[i][k]; k++)
            argv[argc++] = (char *)bad[i][k];
        ck_assert_msg(ts_cli_parse(argc, argv, fake_getenv, &o, err, sizeof(err)) ==
                          TS_E_INVALID_ARGUMENT,
                      "case %zu parsed", i);
        ck_assert_msg(err[0], "case %zu: no reason", i);
        ts_cli_opts_free(&o);
    }
}

/* import and export are rows of the one table: their options and the
 * common ones (environment included) come out of ts_cli_parse, and their
 * checks are its usage errors. */
START_TEST(test_parse_import_export)
{
    env_clear();
    env_set(0, "THREADSYNC_SERVER", "a:1,b:2");
    env_set(1, "THREADSYNC_TOKEN_FILE", "/etc/admin.token");
    struct ts_cli_opts o;
    char err[256];
    ck_assert_int_eq(PARSE(&o, err, "import", "--format", "wordpress", "blog.xml", "--strict",
                           "--key-from", "slug", "--batch-size", "50", "--timeout-ms", "900",
                           "--json"),
                     TS_OK);
    ck_assert_int_eq(o.cmd, TS_CLI_CMD_IMPORT);
    ck_assert_str_eq(o.format, "wordpress");
    ck_assert_str_eq(o.file, "blog.xml");
    ck_assert_str_eq(o.key_from, "slug");
    ck_assert_uint_eq(o.batch_size, 50);
    ck_assert_uint_eq(o.timeout_ms, 900);
    ck_assert(o.strict && o.json && !o.renumber);
    ck_assert_uint_eq(o.n_servers, 2);
    ck_assert_str_eq(o.servers[1], "b:2");
    ck_assert_str_eq(o.token_file, "/etc/admin.token");
    ts_cli_opts_free(&o);
    ck_assert_int_eq(PARSE(&o, err, "import", "--format", "jsonl", "-"), TS_OK);
    ck_assert_str_eq(o.file, "-");
    ck_assert_uint_eq(o.batch_size, TS_CLI_IMPORT_BATCH_MAX);
    ts_cli_opts_free(&o);

    ck_assert_int_eq(PARSE(&o, err, "export", "--format", "jsonl", "--thread", "a", "--thread", "b",
                           "--with-emails", "--out", "site.jsonl"),
                     TS_OK);
    ck_assert_int_eq(o.cmd, TS_CLI_CMD_EXPORT);
    ck_assert_uint_eq(o.n_threads, 2);
    ck_assert(o.with_emails && !o.all);
    ck_assert_str_eq(o.out, "site.jsonl");
    ts_cli_opts_free(&o);

    const char *const bad[][8] = {
        {"import", "blog.xml"},                                        /* no --format */
        {"import", "--format", "rss", "blog.xml"},                     /* unknown format */
        {"import", "--format", "disqus"},                              /* no FILE */
        {"import", "--format", "disqus", "a", "b"},                    /* two FILEs */
        {"import", "--format", "disqus", "a", "--batch-size", "1001"}, /* over 1000 */
        {"import", "--format", "disqus", "a", "--key-from", "title"},
        {"import", "--format", "disqus", "a", "--with-emails"}, /* export's */
        {"export", "--format", "jsonl"},                        /* neither --all nor --thread */
        {"export", "--format", "jsonl", "--all", "--thread", "k"},
        {"export", "--format", "csv", "--all"},
        {"export", "--format", "jsonl", "--all", "--strict"}, /* import's */
    };
    assert_refused(bad, sizeof(bad) / sizeof(bad[0]));
    env_clear();
}
END_TEST

/* admin audit is a row of the table too: its filters parse, and what it
 * cannot take is a usage error. */
START_TEST(test_parse_admin_audit)
{
    env_clear();
    struct ts_cli_opts o;
    char err[256];
    ck_assert_int_eq(PARSE(&o, err, "admin", "audit", "--thread", "site/a", "--comment", "7",
                           "--after", "42", "--json"),
                     TS_OK);
    ck_assert_int_eq(o.cmd, TS_CLI_CMD_AUDIT);
    ck_assert_uint_eq(o.n_threads, 1);
    ck_assert_str_eq(o.threads[0], "site/a");
    ck_assert_uint_eq(o.comment_id, 7);
    ck_assert_uint_eq(o.after_seq, 42);
    ck_assert(o.json);
    ts_cli_opts_free(&o);
    ck_assert_int_eq(PARSE(&o, err, "admin", "audit"), TS_OK);
    ck_assert_uint_eq(o.after_seq, 0);
    ts_cli_opts_free(&o);

    const char *const bad[][8] = {
        {"admin", "audit", "--comment", "x"},                     /* not a number */
        {"admin", "audit", "--comment", "0"},                     /* no comment 0 */
        {"admin", "audit", "--after", "-1"},                      /* not a seq */
        {"admin", "audit", "--thread", "a", "--thread", "b"},     /* one thread */
        {"admin", "audit", "extra"},                              /* a word too many */
        {"admin", "digest", "--comment", "7"},                    /* audit's only */
        {"post", "--thread", "t", "--name", "n", "--after", "1"}, /* audit's only */
    };
    assert_refused(bad, sizeof(bad) / sizeof(bad[0]));
}
END_TEST

START_TEST(test_parse_help)
{
    env_clear();
    struct ts_cli_opts o;
    char err[256];
    ck_assert_int_eq(PARSE(&o, err, "--help"), TS_OK);
    ck_assert_int_eq(o.help, 1);
    ts_cli_opts_free(&o);
    /* --help wins over what would be usage errors. */
    ck_assert_int_eq(PARSE(&o, err, "post", "-h"), TS_OK);
    ck_assert_int_eq(o.help, 1);
    ts_cli_opts_free(&o);
}
END_TEST

static const struct usage_case {
    const char *argv[10];
    const char *needle; /* expected in the reason */
} usage_cases[] = {
    {{NULL}, "no command"},
    {{"frobnicate"}, "unknown command"},
    {{"get", "--thread", "k", "--bogus"}, "unknown option '--bogus'"},
    {{"get", "-x"}, "unknown option '-x'"},
    {{"get", "--thread"}, "--thread needs a value"},
    {{"get", "--json=1", "--thread", "k"}, "--json takes no value"},
    {{"get"}, "exactly one --thread"},
    {{"get", "--thread", "a", "--thread", "b"}, "exactly one --thread"},
    {{"post", "--thread", "a", "--body", "b"}, "needs --name"},
    {{"post", "--thread", "a", "--name", "n", "--body", "b", "--body-file", "f"}, "exclude"},
    {{"post", "--thread", "a", "--name", "n", "--parent", "x1"}, "--parent"},
    {{"post", "--thread", "a", "--name", "n", "--since", "3"}, "post does not take --since"},
    {{"get", "--thread", "a", "--name", "n"}, "get does not take --name"},
    {{"watch", "--since", "-1"}, "--since"},
    {{"watch", "extra"}, "unexpected argument"},
};

START_TEST(test_parse_usage_errors)
{
    env_clear();
    const struct usage_case *uc = &usage_cases[_i];
    char *argv[12] = {"threadsync"};
    int argc = 1;
    for (int k = 0; uc->argv[k]; k++)
        argv[argc++] = (char *)uc->argv[k];
    argv[argc] = NULL;
    struct ts_cli_opts o;
    char err[256];
    ck_assert_int_eq(ts_cli_parse(argc, argv, fake_getenv, &o, err, sizeof(err)),
                     TS_E_INVALID_ARGUMENT);
    ck_assert_msg(strstr(err, uc->needle) != NULL, "case %d: '%s' lacks '%s'", _i, err, uc->needle);
    ts_cli_opts_free(&o);
}
END_TEST

/* ---- thread tree -------------------------------------------------------------- */

static Threadsync__Comment *comment(uint64_t id, uint64_t parent, const char *name,
                                    const char *body, int status, int64_t at)
{
    Threadsync__Comment *c = malloc(sizeof(*c));
    threadsync__comment__init(c);
    c->id = id;
    c->thread_id = 1;
    c->parent_id = parent;
    c->author_name = (char *)name;
    c->body = (char *)body;
    c->status = status;
    c->created_at_ms = at;
    c->version = 1;
    return c;
}

/* 1 Ann; 2 Bob replies to 1 and is deleted; 3 Cy replies to 2 (a reply to a
 * reply, under a deleted parent); 4 Dee top level, two body lines (CRLF);
 * 5 Eve replies to 1. */
static Threadsync__GetResult *sample(Threadsync__Thread *t, int reverse)
{
    threadsync__thread__init(t);
    t->id = 1;
    t->key = "site/a";
    t->title = "Title";
    t->comment_count = 4;
    Threadsync__GetResult *g = malloc(sizeof(*g));
    threadsync__get_result__init(g);
    g->thread = t;
    g->n_comments = 5;
    g->comments = malloc(5 * sizeof(*g->comments));
    Threadsync__Comment *v[5] = {
        comment(1, 0, "Ann", "first!", THREADSYNC__STATUS__VISIBLE, 1714564800000),
        comment(2, 1, "", "", THREADSYNC__STATUS__DELETED, 1714564801000),
        comment(3, 2, "Cy", "reply to a reply", THREADSYNC__STATUS__VISIBLE, 1714564802000),
        comment(4, 0, "Dee Lee", "line one\r\nline two", THREADSYNC__STATUS__VISIBLE,
                1714564861000),
        comment(5, 1, "Eve", "late", THREADSYNC__STATUS__VISIBLE, 1714564862000),
    };
    for (int i = 0; i < 5; i++)
        g->comments[i] = v[reverse ? 4 - i : i];
    g->seq = 9;
    return g;
}

static void sample_free(Threadsync__GetResult *g)
{
    for (size_t i = 0; i < g->n_comments; i++)
        free(g->comments[i]);
    free(g->comments);
    free(g);
}

static const char expected_tree[] = "site/a \xe2\x80\x94 \"Title\" \xe2\x80\x94 4 comments\n"
                                    "#1 Ann (2024-05-01T12:00:00Z)\n"
                                    "    first!\n"
                                    "  #2 [deleted]\n"
                                    "    #3 Cy (2024-05-01T12:00:02Z)\n"
                                    "        reply to a reply\n"
                                    "  #5 Eve (2024-05-01T12:01:02Z)\n"
                                    "      late\n"
                                    "#4 Dee Lee (2024-05-01T12:01:01Z)\n"
                                    "    line one\n"
                                    "    line two\n";

START_TEST(test_tree)
{
    Threadsync__Thread t;
    Threadsync__GetResult *g = sample(&t, _i);
    struct capture c;
    ts_cli_print_thread(cap_open(&c), g, 0);
    char *out = cap_close(&c);
    ck_assert_str_eq(out, expected_tree);
    free(out);
    sample_free(g);
}
END_TEST

/* A chain far deeper than any recursion would survive in a test's stack.
 * Indentation stops at depth 8 (16 spaces, as the mirror's HTML stops
 * indenting); deeper lines name their depth and parent, so the output
 * grows linearly with the thread, not with its depth squared. */
START_TEST(test_tree_deep_chain)
{
    enum { N = 10000 };
    Threadsync__Thread t = THREADSYNC__THREAD__INIT;
    t.key = "deep";
    Threadsync__GetResult g = THREADSYNC__GET_RESULT__INIT;
    g.thread = &t;
    g.n_comments = N;
    g.comments = malloc(N * sizeof(*g.comments));
    for (uint64_t i = 0; i < N; i++)
        g.comments[i] = comment(i + 1, i, "a", "b", THREADSYNC__STATUS__VISIBLE, 0);
    struct capture c;
    ts_cli_print_thread(cap_open(&c), &g, 0);
    char *out = cap_close(&c);
    char want[64];
    snprintf(want, sizeof(want), "\n                #%d (depth %d, reply to #%d) a (", N, N - 1,
             N - 1);
    ck_assert_ptr_nonnull(strstr(out, want));
    ck_assert_ptr_nonnull(strstr(out, "\n              #8 a ("));   /* depth 7: 14 spaces */
    ck_assert_ptr_nonnull(strstr(out, "\n                #9 a (")); /* depth 8: 16, the cap */
    ck_assert_ptr_nonnull(strstr(out, "\n                #10 (depth 9, reply to #9) a ("));
    ck_assert_ptr_nonnull(strstr(out, "\n                    b\n")); /* body: cap + 4 */
    /* about 70 bytes a comment, whatever the depth (it was 2 bytes per level) */
    ck_assert_uint_lt(strlen(out), (size_t)N * 100);
    free(out);
    for (size_t i = 0; i < N; i++)
        free(g.comments[i]);
    free(g.comments);
}
END_TEST

START_TEST(test_tree_json)
{
    Threadsync__Thread t;
    Threadsync__GetResult *g = sample(&t, 0);
    g->n_comments = 2;
    g->comments[1]->author_email = "";
    g->comments[0]->author_email = "ann@x";
    struct capture c;
    ts_cli_print_thread(cap_open(&c), g, 1);
    char *out = cap_close(&c);
    ck_assert_str_eq(out,
                     "{\"thread\":{\"id\":1,\"key\":\"site/a\",\"title\":\"Title\",\"url\":\"\","
                     "\"created_at_ms\":0,\"locked\":false,\"comment_count\":4,\"version\":0},"
                     "\"comments\":[{\"id\":1,\"thread_id\":1,\"parent_id\":0,"
                     "\"author_name\":\"Ann\",\"author_email\":\"ann@x\",\"body\":\"first!\","
                     "\"created_at_ms\":1714564800000,\"edited_at_ms\":0,\"status\":"
                     "\"VISIBLE\",\"version\":1},{\"id\":2,\"thread_id\":1,\"parent_id\":1,"
                     "\"author_name\":\"\",\"body\":\"\",\"created_at_ms\":1714564801000,"
                     "\"edited_at_ms\":0,\"status\":\"DELETED\",\"version\":1}],\"seq\":9}\n");
    free(out);
    g->n_comments = 5;
    sample_free(g);
}
END_TEST

/* ---- JSON ------------------------------------------------------------------- */

START_TEST(test_json_escape)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"plain", "\"plain\""},
        {"", "\"\""},
        {"say \"hi\"", "\"say \\\"hi\\\"\""},
        {"back\\slash", "\"back\\\\slash\""},
        {"a\nb\tc\rd", "\"a\\nb\\tc\\rd\""},
        {"\x01\x1f\x7f", "\"\\u0001\\u001f\\u007f\""},
        {"\b\f", "\"\\b\\f\""},
        /* Emoji (4 bytes), CJK (3), e-acute (2) pass through untouched. */
        {"\xf0\x9f\x98\x80 \xe6\x97\xa5 \xc3\xa9", "\"\xf0\x9f\x98\x80 \xe6\x97\xa5 \xc3\xa9\""},
        /* Ill-formed: a lone continuation byte, an overlong '/', a surrogate,
         * a truncated emoji at the end: each bad lead byte becomes U+FFFD. */
        {"a\x80z", "\"a\xef\xbf\xbdz\""},
        {"\xc0\xaf", "\"\xef\xbf\xbd\xef\xbf\xbd\""},
        {"\xed\xa0\x80", "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""},
        {"x\xf0\x9f\x98", "\"x\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *out = json_of(cases[i].in);
        ck_assert_msg(strcmp(out, cases[i].out) == 0, "case %zu: got %s", i, out);
        free(out);
    }
    struct capture c;
    ts_json_strn(cap_open(&c), "a\0b", 3);
    char *out = cap_close(&c);
    ck_assert_str_eq(out, "\"a\\u0000b\"");
    free(out);
}
END_TEST

/* ---- watch lines ---------------------------------------------------------------- */

START_TEST(test_watch_lines)
{
    Threadsync__Thread t = THREADSYNC__THREAD__INIT;
    t.id = 3;
    t.key = "site/b";
    t.title = "A \"quoted\" title";
    t.comment_count = 2;
    t.locked = 1;
    Threadsync__Comment *cm =
        comment(8, 5, "Ann Lee", "first \"line\"\r\nsecond", THREADSYNC__STATUS__VISIBLE, 0);
    Threadsync__Event e1 = THREADSYNC__EVENT__INIT, e2 = THREADSYNC__EVENT__INIT;
    e1.seq = 10;
    e1.thread = &t;
    e1.comment = cm;
    e2.seq = 12;
    e2.thread = &t;
    Threadsync__Event *evs[] = {&e1, &e2};
    Threadsync__Events ev = THREADSYNC__EVENTS__INIT;
    ev.n_events = 2;
    ev.events = evs;
    ev.last_seq = 13;
    struct capture c;
    ts_cli_print_events(cap_open(&c), &ev, 0);
    char *out = cap_close(&c);
    ck_assert_str_eq(out, "seq=10 thread=site/b comment=8 parent=5 author=\"Ann Lee\" "
                          "status=VISIBLE body=\"first \\\"line\\\"\"\n"
                          "seq=12 thread=site/b comment=0 title=\"A \\\"quoted\\\" title\" "
                          "count=2 locked=1\n");
    free(out);

    ts_cli_print_events(cap_open(&c), &ev, 1);
    out = cap_close(&c);
    ck_assert_ptr_nonnull(strstr(out, "{\"seq\":10,\"snapshot\":false,\"thread_key\":\"site/b\","
                                      "\"thread\":{\"id\":3,"));
    ck_assert_ptr_nonnull(strstr(out, "\"comment\":{\"id\":8,"));
    ck_assert_ptr_nonnull(strstr(out, "}}\n{\"seq\":12,"));
    ck_assert_ptr_null(strstr(strstr(out, "{\"seq\":12,"), "\"comment\""));
    free(out);

    /* Snapshot: the comment learns its key from the chunk's thread. */
    struct ts_cli_keymap *m = ts_cli_keymap_new();
    Threadsync__Thread *tp = &t;
    cm->thread_id = 3;
    Threadsync__SnapshotChunk ch = THREADSYNC__SNAPSHOT_CHUNK__INIT;
    ch.n_threads = 1;
    ch.threads = &tp;
    ch.n_comments = 1;
    ch.comments = &cm;
    ts_cli_print_chunk(cap_open(&c), m, 77, &ch, 0);
    out = cap_close(&c);
    ck_assert_str_eq(out, "seq=77 thread=site/b comment=0 title=\"A \\\"quoted\\\" title\" "
                          "count=2 locked=1 snapshot=1\n"
                          "seq=77 thread=site/b comment=8 parent=5 author=\"Ann Lee\" "
                          "status=VISIBLE body=\"first \\\"line\\\"\" snapshot=1\n");
    free(out);
    ts_cli_keymap_free(m);
    free(cm);
}
END_TEST

START_TEST(test_keymap)
{
    struct ts_cli_keymap *m = ts_cli_keymap_new();
    char key[32];
    for (uint64_t id = 1; id <= 1000; id++) {
        snprintf(key, sizeof(key), "k%llu", (unsigned long long)id * 7);
        ck_assert_int_eq(ts_cli_keymap_put(m, id * 7, key), TS_OK);
    }
    ck_assert_int_eq(ts_cli_keymap_put(m, 14, "renamed"), TS_OK);
    for (uint64_t id = 1; id <= 1000; id++) {
        snprintf(key, sizeof(key), "k%llu", (unsigned long long)id * 7);
        const char *got = ts_cli_keymap_get(m, id * 7);
        ck_assert_ptr_nonnull(got);
        ck_assert_str_eq(got, id == 2 ? "renamed" : key);
        ck_assert_ptr_null(ts_cli_keymap_get(m, id * 7 + 1));
    }
    ck_assert_int_eq(ts_cli_keymap_put(m, 0, "x"), TS_E_INVALID_ARGUMENT);
    ts_cli_keymap_free(m);
}
END_TEST

/* ---- misc ------------------------------------------------------------------------ */

START_TEST(test_post_output)
{
    Threadsync__PostResult r = THREADSYNC__POST_RESULT__INIT;
    r.comment_id = 17;
    r.seq = 18;
    r.thread_id = 3;
    struct capture c;
    ts_cli_print_post(cap_open(&c), &r, 0);
    char *out = cap_close(&c);
    ck_assert_str_eq(out, "id=17 seq=18\n");
    free(out);
    ts_cli_print_post(cap_open(&c), &r, 1);
    out = cap_close(&c);
    ck_assert_str_eq(out, "{\"id\":17,\"seq\":18,\"thread_id\":3}\n");
    free(out);
}
END_TEST

START_TEST(test_errors_and_exit_codes)
{
    ck_assert_int_eq(ts_cli_exit_code(TS_OK), 0);
    ck_assert_int_eq(ts_cli_exit_code(TS_E_NOT_FOUND), 1);
    ck_assert_int_eq(ts_cli_exit_code(TS_E_UNAUTHENTICATED), 1);
    ck_assert_int_eq(ts_cli_exit_code(TS_E_IO), 3);
    ck_assert_int_eq(ts_cli_exit_code(TS_E_TLS), 3);
    ck_assert_int_eq(ts_cli_exit_code(TS_E_TIMEOUT), 3);

    Threadsync__Error e = THREADSYNC__ERROR__INIT;
    e.code = THREADSYNC__ERROR_CODE__INVALID_ARGUMENT;
    e.field = "author_name";
    e.message = "too long";
    struct capture c;
    ts_cli_print_error(cap_open(&c), TS_E_INVALID_ARGUMENT, &e, "post");
    char *out = cap_close(&c);
    ck_assert_str_eq(out, "error: INVALID_ARGUMENT field=author_name: too long\n");
    free(out);
    ts_cli_print_error(cap_open(&c), TS_E_NOT_FOUND, NULL, "get");
    out = cap_close(&c);
    ck_assert_str_eq(out, "error: NOT_FOUND: not found\n");
    free(out);
    ts_cli_print_error(cap_open(&c), TS_E_IO, NULL, "get");
    out = cap_close(&c);
    ck_assert_str_eq(out, "error: get: i/o error (IO)\n");
    free(out);
}
END_TEST

/* A loopback port with a listener (listen 1) or, once closed, without. */
static int listener(char addr[32])
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(listen(fd, 1), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    snprintf(addr, 32, "127.0.0.1:%u", (unsigned)ntohs(sa.sin_port));
    return fd;
}

/* Issue 12: with nothing listening the CLI said "i/o error (IO)"; it now
 * says what is wrong and what to check. */
START_TEST(test_explain_connect)
{
    char addr[32], msg[256], want[128];
    int fd = listener(addr);
    ck_assert_int_eq(ts_cli_explain_connect(addr, 2000, msg, sizeof(msg)), 0); /* it connects */
    close(fd); /* the port is free now, nothing listens: refused */
    ck_assert_int_eq(ts_cli_explain_connect(addr, 2000, msg, sizeof(msg)), 1);
    snprintf(want, sizeof(want), "connection refused: is threadsyncd running on %s?", addr);
    ck_assert_str_eq(msg, want);
    ck_assert_int_eq(ts_cli_explain_connect("example.org:7420", 2000, msg, sizeof(msg)), 0);
    /* watch and mirror say the same */
    struct capture c;
    ts_cli_print_connect_failure(cap_open(&c), addr, TS_E_IO);
    char *out = cap_close(&c);
    snprintf(want, sizeof(want), "error: connection refused: is threadsyncd running on %s?\n",
             addr);
    ck_assert_str_eq(out, want);
    free(out);
    ts_cli_print_connect_failure(cap_open(&c), addr, TS_E_TLS);
    out = cap_close(&c);
    snprintf(want, sizeof(want), "error: cannot connect to %s: tls failure (TLS)\n", addr);
    ck_assert_str_eq(out, want);
    free(out);
}
END_TEST

START_TEST(test_token_file)
{
    char dir[] = "/tmp/ts_cli_test.XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[128], err[256];
    snprintf(path, sizeof(path), "%s/token", dir);
    static const char *const contents[] = {"s3cret\n", "s3cret\r\n", "s3cret", "s3cret\nmore\n"};
    for (size_t i = 0; i < 4; i++) {
        FILE *f = fopen(path, "w");
        fputs(contents[i], f);
        fclose(f);
        char *tok = NULL;
        ck_assert_int_eq(ts_cli_read_token(path, &tok, err, sizeof(err)), TS_OK);
        ck_assert_str_eq(tok, "s3cret");
        free(tok);
    }
    FILE *f = fopen(path, "w");
    fputs("\n", f);
    fclose(f);
    char *tok = NULL;
    ck_assert_int_eq(ts_cli_read_token(path, &tok, err, sizeof(err)), TS_E_IO);
    ck_assert_ptr_nonnull(strstr(err, "empty"));
    unlink(path);
    ck_assert_int_eq(ts_cli_read_token(path, &tok, err, sizeof(err)), TS_E_IO);
    ck_assert_ptr_nonnull(strstr(err, path));
    rmdir(dir);
}
END_TEST

START_TEST(test_read_all_limit)
{
    char *buf;
    size_t len;
    FILE *f = fmemopen("0123456789", 10, "r");
    ck_assert_int_eq(ts_cli_read_all(f, 10, &buf, &len), TS_OK);
    ck_assert_uint_eq(len, 10);
    ck_assert_str_eq(buf, "0123456789");
    free(buf);
    fclose(f);
    f = fmemopen("0123456789", 10, "r");
    ck_assert_int_eq(ts_cli_read_all(f, 9, &buf, &len), TS_E_TOO_LARGE);
    fclose(f);
}
END_TEST

/* ---- moderation, edit, delete, admin ------------------------------------------ */

START_TEST(test_parse_moderation_commands)
{
    env_clear();
    struct ts_cli_opts o;
    char err[256];
    int rc = PARSE(&o, err, "moderate", "hide", "12");
    ck_assert_msg(rc == TS_OK, "%s", err);
    ck_assert_int_eq(o.cmd, TS_CLI_CMD_MODERATE);
    ck_assert_int_eq(o.mod, TS_CLI_MOD_HIDE);
    ck_assert_uint_eq(o.id, 12);
    ts_cli_opts_free(&o);
    rc = PARSE(&o, err, "moderate", "lock", "--thread", "site/a");
    ck_assert_msg(rc == TS_OK, "%s", err);
    ck_assert_int_eq(o.mod, TS_CLI_MOD_LOCK);
    ck_assert_str_eq(o.threads[0], "site/a");
    ts_cli_opts_free(&o);
    rc = PARSE(&o, err, "moderate", "queue");
    ck_assert_msg(rc == TS_OK, "%s", err);
    ck_assert_int_eq(o.mod, TS_CLI_MOD_QUEUE);
    ck_assert_uint_eq(o.n_threads, 0);
    ts_cli_opts_free(&o);
    rc = PARSE(&o, err, "moderate", "ban", "--author", "spam@x.org", "--duration", "3600");
    ck_assert_msg(rc == TS_OK, "%s", err);
    ck_assert_int_eq(o.mod, TS_CLI_MOD_BAN);
    ck_assert_str_eq(o.author, "spam@x.org");
    ck_assert_uint_eq(o.duration_s, 3600);
    ts_cli_opts_free(&o);
    rc = PARSE(&o, err, "edit", "5", "--edit-key", "abc", "--body", "new");
    ck_assert_msg(rc == TS_OK, "%s", err);
    ck_assert_int_eq(o.cmd, TS_CLI_CMD_EDIT);
    ck_assert_uint_eq(o.id, 5);
    ck_assert_str_eq(o.edit_key, "abc");
    ck_assert_str_eq(o.body, "new");
    ts_cli_opts_free(&o);
    rc = PARSE(&o, err, "delete", "--edit-key", "abc", "9");
    ck_assert_msg(rc == TS_OK, "%s", err);
    ck_assert_int_eq(o.cmd, TS_CLI_CMD_DELETE);
    ck_assert_uint_eq(o.id, 9);
    ts_cli_opts_free(&o);
    rc = PARSE(&o, err, "admin", "token", "add", "--role", "moderator", "--name", "mod-1");
    ck_assert_msg(rc == TS_OK, "%s", err);
    ck_assert_int_eq(o.token_op, TS_CLI_TOKEN_ADD);
    ck_assert_int_eq(o.role, 3);
    ck_assert_str_eq(o.token_name, "mod-1");
    ts_cli_opts_free(&o);
    rc = PARSE(&o, err, "admin", "token", "revoke", "mod-1");
    ck_assert_msg(rc == TS_OK, "%s", err);
    ck_assert_int_eq(o.token_op, TS_CLI_TOKEN_REVOKE);
    ck_assert_str_eq(o.token_name, "mod-1");
    ts_cli_opts_free(&o);
    rc = PARSE(&o, err, "admin", "token", "list");
    ck_assert_msg(rc == TS_OK, "%s", err);
    ck_assert_int_eq(o.token_op, TS_CLI_TOKEN_LIST);
    ts_cli_opts_free(&o);
}
END_TEST

START_TEST(test_parse_moderation_errors)
{
    env_clear();
    struct ts_cli_opts o;
    char err[256];
#define REFUSED(...)                                                                               \
    do {                                                                                           \
        ck_assert_int_eq(PARSE(&o, err, __VA_ARGS__), TS_E_INVALID_ARGUMENT);                      \
        ck_assert_uint_gt(strlen(err), 0);                                                         \
        ts_cli_opts_free(&o);                                                                      \
    } while (0)
    REFUSED("moderate");
    REFUSED("moderate", "frobnicate", "1");
    REFUSED("moderate", "hide");
    REFUSED("moderate", "hide", "x");
    REFUSED("moderate", "hide", "0");
    REFUSED("moderate", "hide", "1", "2");
    REFUSED("moderate", "hide", "1", "--thread", "a");
    REFUSED("moderate", "lock");
    REFUSED("moderate", "ban", "--author", "x");
    REFUSED("moderate", "ban", "--duration", "5");
    REFUSED("moderate", "hide", "1", "--author", "x");
    REFUSED("edit", "abc", "--body", "x");
    REFUSED("edit", "--body", "x");
    REFUSED("delete", "1", "--body", "x");
    REFUSED("post", "--thread", "a", "--name", "A", "--edit-key", "k");
    REFUSED("admin", "token", "add", "--name", "x");
    REFUSED("admin", "token", "add", "--role", "boss", "--name", "x");
    REFUSED("admin", "token", "revoke");
    REFUSED("admin", "user", "list");
    REFUSED("admin", "token", "list", "--name", "x");
#undef REFUSED
}
END_TEST

START_TEST(test_moderation_output)
{
    Threadsync__PostResult p = THREADSYNC__POST_RESULT__INIT;
    p.comment_id = 4;
    p.seq = 4;
    p.status = THREADSYNC__STATUS__PENDING;
    p.edit_key = "0123abcd";
    struct capture c;
    ts_cli_print_post(cap_open(&c), &p, 0);
    char *out = cap_close(&c);
    ck_assert_str_eq(out, "id=4 seq=4 status=PENDING edit_key=0123abcd\n");
    free(out);
    ts_cli_print_post(cap_open(&c), &p, 1);
    out = cap_close(&c);
    ck_assert_str_eq(out, "{\"id\":4,\"seq\":4,\"thread_id\":0,\"status\":\"PENDING\","
                          "\"edit_key\":\"0123abcd\"}\n");
    free(out);

    Threadsync__Thread t = THREADSYNC__THREAD__INIT;
    t.key = "site/a";
    t.comment_count = 2;
    t.version = 9;
    t.locked = 1;
    Threadsync__Comment cm = THREADSYNC__COMMENT__INIT;
    cm.id = 4;
    cm.status = THREADSYNC__STATUS__HIDDEN;
    cm.version = 3;
    cm.moderated_by = "mod-1";
    Threadsync__ChangeResult r = THREADSYNC__CHANGE_RESULT__INIT;
    r.seq = 11;
    r.changed = 1;
    r.thread = &t;
    r.comment = &cm;
    ts_cli_print_change_result(cap_open(&c), &r, 0);
    out = cap_close(&c);
    ck_assert_str_eq(out, "seq=11 changed=1 thread=site/a comment=4 status=HIDDEN version=3 "
                          "count=2\n");
    free(out);
    r.comment = NULL;
    ts_cli_print_change_result(cap_open(&c), &r, 0);
    out = cap_close(&c);
    ck_assert_str_eq(out, "seq=11 changed=1 thread=site/a locked=1 premoderated=0 version=9 "
                          "count=2\n");
    free(out);
    r.comment = &cm;
    ts_cli_print_change_result(cap_open(&c), &r, 1);
    out = cap_close(&c);
    ck_assert_msg(strstr(out, "\"changed\":true") && strstr(out, "\"moderated_by\":\"mod-1\"") &&
                      strstr(out, "\"status\":\"HIDDEN\""),
                  "%s", out);
    free(out);

    Threadsync__TokenInfo a = THREADSYNC__TOKEN_INFO__INIT, b = THREADSYNC__TOKEN_INFO__INIT;
    a.name = "admin";
    a.role = THREADSYNC__ROLE__ADMIN;
    a.from_file = 1;
    b.name = "mod-1";
    b.role = THREADSYNC__ROLE__MODERATOR;
    b.created_at_ms = 1714564800000;
    b.created_by = "admin";
    b.revoked = 1;
    Threadsync__TokenInfo *v[] = {&a, &b};
    Threadsync__TokenListResult l = THREADSYNC__TOKEN_LIST_RESULT__INIT;
    l.tokens = v;
    l.n_tokens = 2;
    ts_cli_print_token_list(cap_open(&c), &l, 0);
    out = cap_close(&c);
    ck_assert_str_eq(out, "admin admin - file\n"
                          "mod-1 moderator 2024-05-01T12:00:00Z replicated by=admin revoked\n");
    free(out);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("ts_cli");
    TCase *tc = tcase_create("parse");
    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, test_parse_post_options_anywhere);
    tcase_add_test(tc, test_parse_retry_options);
    tcase_add_test(tc, test_parse_defaults_and_env);
    tcase_add_test(tc, test_parse_watch);
    tcase_add_test(tc, test_parse_mirror_verify);
    tcase_add_test(tc, test_parse_import_export);
    tcase_add_test(tc, test_parse_admin_audit);
    tcase_add_test(tc, test_parse_help);
    tcase_add_loop_test(tc, test_parse_usage_errors, 0,
                        (int)(sizeof(usage_cases) / sizeof(usage_cases[0])));
    suite_add_tcase(s, tc);
    tc = tcase_create("format");
    tcase_set_timeout(tc, 30);
    tcase_add_loop_test(tc, test_tree, 0, 2);
    tcase_add_test(tc, test_tree_deep_chain);
    tcase_add_test(tc, test_tree_json);
    tcase_add_test(tc, test_json_escape);
    tcase_add_test(tc, test_watch_lines);
    tcase_add_test(tc, test_keymap);
    tcase_add_test(tc, test_post_output);
    tcase_add_test(tc, test_errors_and_exit_codes);
    tcase_add_test(tc, test_explain_connect);
    suite_add_tcase(s, tc);
    tc = tcase_create("files");
    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, test_token_file);
    tcase_add_test(tc, test_read_all_limit);
    tcase_add_test(tc, test_parse_moderation_commands);
    tcase_add_test(tc, test_parse_moderation_errors);
    tcase_add_test(tc, test_moderation_output);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ts_check_run(suite());
}
