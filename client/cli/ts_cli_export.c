/*
 * ts_cli_export: see ts_cli_export.h.
 *
 * Gets are answered in the order sent on one connection, but answers are
 * kept in a ring of WINDOW slots and written in order anyway, so the file
 * is in thread id order whatever the transport does: an exact import needs
 * thread ids ascending.
 */
#include "ts_cli_export.h"

#include "threadsync.h"
#include "ts_cli.h"
#include "ts_cli_conn.h"
#include "ts_err.h"
#include "ts_frame.h"
#include "ts_json.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#define WINDOW 8

static const char *status_name(int s)
{
    static const char *const names[] = {"STATUS_UNSPECIFIED", "VISIBLE", "PENDING", "HIDDEN",
                                        "DELETED"};
    return s >= 0 && s <= 4 ? names[s] : "STATUS_UNSPECIFIED";
}

void ts_cli_export_thread(FILE *out, const Threadsync__GetResult *g, int with_emails)
{
    const Threadsync__Thread *t = g->thread;
    fputs("{\"type\":\"thread\"", out);
    ts_json_kv_u64(out, "id", t->id, 0);
    ts_json_kv_str(out, "key", t->key, 0);
    ts_json_kv_str(out, "title", t->title, 0);
    ts_json_kv_str(out, "url", t->url, 0);
    ts_json_kv_i64(out, "created_at_ms", t->created_at_ms, 0);
    ts_json_kv_bool(out, "locked", t->locked, 0);
    ts_json_kv_bool(out, "premoderated", t->premoderated, 0);
    ts_json_kv_u64(out, "version", t->version, 0);
    ts_json_kv_str(out, "moderated_by", t->moderated_by, 0);
    ts_json_kv_u64(out, "comment_count", t->comment_count, 0);
    fputs("}\n", out);
    for (size_t i = 0; i < g->n_comments; i++) {
        const Threadsync__Comment *c = g->comments[i];
        fputs("{\"type\":\"comment\"", out);
        ts_json_kv_u64(out, "id", c->id, 0);
        ts_json_kv_u64(out, "thread_id", c->thread_id, 0);
        ts_json_kv_str(out, "thread_key", t->key, 0);
        ts_json_kv_u64(out, "parent_id", c->parent_id, 0);
        ts_json_kv_str(out, "author_name", c->author_name, 0);
        if (with_emails)
            ts_json_kv_str(out, "author_email", c->author_email, 0);
        ts_json_kv_str(out, "body", c->body, 0);
        ts_json_kv_i64(out, "created_at_ms", c->created_at_ms, 0);
        ts_json_kv_i64(out, "edited_at_ms", c->edited_at_ms, 0);
        ts_json_kv_str(out, "status", status_name(c->status), 0);
        ts_json_kv_u64(out, "version", c->version, 0);
        ts_json_kv_str(out, "moderated_by", c->moderated_by, 0);
        fputs("}\n", out);
    }
}

struct slot {
    struct exp *e;
    char *key;
    Threadsync__GetResult *res; /* owned copy, when answered out of turn */
    int done, err, written;     /* written: answered in turn, already out */
};

struct exp {
    uv_loop_t loop;
    struct ts_client *c;
    FILE *out;
    int with_emails, all, header, failed, missing;
    const char *const *keys; /* --thread */
    size_t n_keys;
    /* the current page's keys, in id order */
    char **page;
    size_t n_page, next_send;
    uint64_t next_after_id;
    int page_more;
    struct slot ring[WINDOW];
    size_t ring_head, in_flight; /* the oldest unwritten slot; slots in use */
    uint64_t threads, comments;
    int pending_digest;
};

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void fail(struct exp *e, int err, const Threadsync__Error *detail, const char *what)
{
    if (!e->failed)
        ts_cli_print_error(stderr, err, detail, what);
    e->failed = err;
}

/* Writes answered slots in order. */
static void drain(struct exp *e)
{
    while (e->in_flight && e->ring[e->ring_head].done) {
        struct slot *s = &e->ring[e->ring_head];
        if (s->written) {
            /* written by on_get */
        } else if (s->res) {
            ts_cli_export_thread(e->out, s->res, e->with_emails);
            e->threads++;
            e->comments += s->res->n_comments;
            ts_msg_free(s->res);
        } else if (s->err == TS_E_TOO_LARGE || s->err == TS_E_NOT_FOUND) {
            fprintf(stderr, "export: thread %s %s: not exported\n", s->key,
                    s->err == TS_E_TOO_LARGE ? "is too large for one Get" : "is gone");
            e->missing = 1;
        }
        free(s->key);
        memset(s, 0, sizeof(*s));
        e->ring_head = (e->ring_head + 1) % WINDOW;
        e->in_flight--;
    }
}

/* Answers come in the order sent, so the answer is nearly always the
 * oldest slot's: written straight from the decoded frame, no copy. */
static void on_get(void *arg, int err, const Threadsync__Error *detail,
                   const Threadsync__GetResult *r)
{
    struct slot *s = arg;
    struct exp *e = s->e;
    (void)detail;
    s->done = 1;
    s->err = err;
    if (err != TS_OK || !r)
        return;
    if (s == &e->ring[e->ring_head]) {
        ts_cli_export_thread(e->out, r, e->with_emails);
        e->threads++;
        e->comments += r->n_comments;
        s->written = 1;
        drain(e);
    } else {
        s->res = (Threadsync__GetResult *)ts_frame_msg_copy(&r->base);
        if (!s->res)
            s->err = TS_E_NOMEM;
    }
}

static void on_digest(void *arg, int err, const Threadsync__Error *detail,
                      const Threadsync__DigestResult *r)
{
    struct exp *e = arg;
    e->pending_digest = 0;
    if (err != TS_OK) {
        fail(e, err, detail, "export");
        return;
    }
    if (!e->header) {
        e->header = 1;
        fprintf(e->out, "{\"type\":\"export\",\"format\":1");
        ts_json_kv_u64(e->out, "seq", r->seq, 0);
        ts_json_kv_i64(e->out, "exported_at_ms", wall_ms(), 0);
        ts_json_kv_bool(e->out, "with_emails", e->with_emails, 0);
        fputs("}\n", e->out);
    }
    for (size_t i = 0; i < e->n_page; i++)
        free(e->page[i]);
    free(e->page);
    e->page = calloc(r->n_threads ? r->n_threads : 1, sizeof(*e->page));
    e->n_page = e->next_send = 0;
    if (!e->page) {
        fail(e, TS_E_NOMEM, NULL, "export");
        return;
    }
    for (size_t i = 0; i < r->n_threads; i++)
        if (!(e->page[e->n_page++] = strdup(r->threads[i]->key)))
            fail(e, TS_E_NOMEM, NULL, "export");
    if (!e->all && r->n_threads < e->n_keys) {
        fprintf(stderr, "export: %zu of the --thread keys name no thread\n",
                e->n_keys - r->n_threads);
        e->missing = 1;
    }
    e->next_after_id = r->next_after_id;
    e->page_more = e->all && r->next_after_id != 0;
}

/* Sends what can be sent: Gets of the page, the next page. */
static void pump(struct exp *e)
{
    while (!e->failed && e->next_send < e->n_page && e->in_flight < WINDOW) {
        struct slot *s = &e->ring[(e->ring_head + e->in_flight) % WINDOW];
        s->e = e;
        s->key = strdup(e->page[e->next_send]);
        if (!s->key || ts_client_get(e->c, s->key, on_get, s) != TS_OK) {
            fail(e, TS_E_NOMEM, NULL, "export");
            return;
        }
        e->next_send++;
        e->in_flight++;
    }
}

static int run(struct exp *e)
{
    e->pending_digest = 1;
    int rc =
        ts_client_digest(e->c, e->all ? NULL : e->keys, e->all ? 0 : e->n_keys, 0, on_digest, e);
    if (rc != TS_OK)
        return rc;
    for (;;) {
        uv_run(&e->loop, UV_RUN_ONCE);
        for (size_t i = 0; i < WINDOW; i++) /* slots answered since: a Get failed? */
            if (e->ring[i].done && e->ring[i].err != TS_OK && e->ring[i].err != TS_E_TOO_LARGE &&
                e->ring[i].err != TS_E_NOT_FOUND)
                fail(e, e->ring[i].err, NULL, "export");
        if (e->failed)
            return e->failed;
        drain(e);
        pump(e);
        if (!e->pending_digest && e->next_send == e->n_page && !e->in_flight) {
            if (!e->page_more)
                return TS_OK;
            e->pending_digest = 1;
            e->page_more = 0;
            if ((rc = ts_client_digest(e->c, NULL, 0, e->next_after_id, on_digest, e)) != TS_OK)
                return rc;
        }
    }
}

static const char *const value_opts[] = {"--format", "--thread", "--out"};

static int takes_value(const char *a)
{
    for (size_t i = 0; i < sizeof(value_opts) / sizeof(value_opts[0]); i++)
        if (!strcmp(a, value_opts[i]))
            return 1;
    return ts_cli_conn_takes_value(a);
}

int ts_cli_export_wants(int argc, char *const argv[])
{
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-') {
            if (takes_value(argv[i]))
                i++;
            continue;
        }
        return !strcmp(argv[i], "export");
    }
    return 0;
}

static void usage(FILE *out)
{
    fputs("usage: threadsync [options] export --format jsonl (--all | --thread KEY...)\n"
          "       [--with-emails] [--out FILE]\n"
          "  writes every thread and comment (JSON Lines) to FILE or standard output\n"
          "options: --server HOST:PORT (repeatable), --ca FILE, --token-file FILE (an admin\n"
          "         token)\n",
          out);
}

static void on_closed(void *arg)
{
    (void)arg;
}

int ts_cli_export_main(int argc, char *const argv[], char *(*get_env)(const char *name))
{
    struct ts_cli_conn conn;
    const char **keys = calloc((size_t)argc + 1, sizeof(*keys));
    size_t n_keys = 0;
    const char *format = NULL, *outfile = NULL;
    int all = 0, with_emails = 0, help = 0, words = 0;
    char err[512] = "";
    if (!keys || ts_cli_conn_init(&conn, argc) != TS_OK) {
        free(keys);
        fprintf(stderr, "threadsync: out of memory\n");
        return TS_CLI_EXIT_CONN;
    }
    for (int i = 1; i < argc && !err[0]; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h"))
            help = 1;
        else if (!strcmp(a, "--all"))
            all = 1;
        else if (!strcmp(a, "--with-emails"))
            with_emails = 1;
        else if (takes_value(a)) {
            if (i + 1 >= argc) {
                snprintf(err, sizeof(err), "%s needs a value", a);
                break;
            }
            const char *v = argv[++i];
            if (ts_cli_conn_option(&conn, a, v))
                continue;
            if (!strcmp(a, "--format"))
                format = v;
            else if (!strcmp(a, "--thread"))
                keys[n_keys++] = v;
            else
                outfile = v;
        } else if (a[0] == '-' || ++words > 1) {
            snprintf(err, sizeof(err), "unexpected argument '%s' for export", a);
        }
    }
    if (!err[0] && !help) {
        if (!format || strcmp(format, "jsonl") != 0)
            snprintf(err, sizeof(err), "export needs --format jsonl");
        else if (all == (n_keys > 0))
            snprintf(err, sizeof(err), "export needs --all or --thread KEY (not both)");
        else if (n_keys > 1024)
            snprintf(err, sizeof(err), "at most 1024 --thread keys");
    }
    if (err[0] || help) {
        if (err[0])
            fprintf(stderr, "threadsync: %s\n", err);
        usage(err[0] ? stderr : stdout);
        free(keys);
        ts_cli_conn_free(&conn);
        return err[0] ? TS_CLI_EXIT_USAGE : TS_CLI_EXIT_OK;
    }
    struct ts_client_config cfg;
    if (ts_cli_conn_defaults(&conn, get_env) != TS_OK ||
        ts_cli_conn_config(&conn, &cfg, err, sizeof(err)) != TS_OK) {
        fprintf(stderr, "error: %s\n", err[0] ? err : "out of memory");
        free(keys);
        ts_cli_conn_free(&conn);
        return TS_CLI_EXIT_CONN;
    }
    struct exp *e = calloc(1, sizeof(*e));
    FILE *out = outfile ? fopen(outfile, "w") : stdout;
    int code = TS_CLI_EXIT_OK;
    if (!e || !out || uv_loop_init(&e->loop) != 0) {
        fprintf(stderr, "error: export: cannot open %s: %m\n", outfile ? outfile : "output");
        code = TS_CLI_EXIT_CONN;
    } else {
        /* a large buffer: the file is written in big blocks */
        setvbuf(out, NULL, _IOFBF, (size_t)1 << 20);
        e->out = out;
        e->all = all;
        e->with_emails = with_emails;
        e->keys = keys;
        e->n_keys = n_keys;
        int rc = ts_client_new(&e->loop, &cfg, &e->c);
        if (rc == TS_OK) {
            rc = run(e);
            ts_client_close(e->c, on_closed, NULL);
            uv_run(&e->loop, UV_RUN_DEFAULT);
        }
        if (rc != TS_OK && !e->failed)
            fprintf(stderr, "error: export: %s (%s)\n", ts_err_message(rc), ts_err_name(rc));
        if (rc != TS_OK)
            code = ts_cli_exit_code(rc);
        else if (e->missing)
            code = TS_CLI_EXIT_REFUSED;
        if (fflush(out) != 0 || ferror(out)) {
            fprintf(stderr, "error: export: write failed: %m\n");
            code = TS_CLI_EXIT_CONN;
        }
        fprintf(stderr, "export: %" PRIu64 " threads, %" PRIu64 " comments\n", e->threads,
                e->comments);
        for (size_t i = 0; i < WINDOW; i++) {
            free(e->ring[i].key);
            ts_msg_free(e->ring[i].res);
        }
        for (size_t i = 0; i < e->n_page; i++)
            free(e->page[i]);
        free(e->page);
        uv_loop_close(&e->loop);
    }
    if (out && out != stdout)
        fclose(out);
    free(e);
    free(keys);
    ts_cli_conn_free(&conn);
    return code;
}
