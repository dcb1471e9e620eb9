/*
 * threadsync: the command-line client (post, get, watch, mirror, verify,
 * edit, delete, moderate, import, export, admin) over libthreadsync.
 *
 * Thin on purpose: parsing and formatting live in ts_cli.c. Reads (get,
 * the admin commands) use the blocking helpers in fail-fast mode: each
 * server tried once, moving on when one is silent or UNAVAILABLE. Writes
 * that are safe to repeat (post with its idempotency key; edit, delete,
 * moderate, which set a state) keep retrying through the whole list with
 * backoff until --timeout, so a failover in the middle of one is invisible;
 * a post that never got an answer says so and prints the key that makes a
 * retry safe. watch runs the async client with reconnects until SIGINT or
 * SIGTERM, but gives up with exit code 3 when no server of the list ever
 * answered.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "threadsync.h"
#include "ts_cli.h"
#include "ts_cli_audit.h"
#include "ts_cli_backup.h"
#include "ts_cli_cluster.h"
#include "ts_cli_export.h"
#include "ts_cli_import.h"
#include "ts_cli_mirror.h"
#include "ts_cli_web.h"
#include "ts_hex.h"
#include "ts_valid.h"

static void config_init(struct ts_client_config *cfg, const struct ts_cli_opts *o,
                        const char *token)
{
    *cfg = (struct ts_client_config)TS_CLIENT_CONFIG_INIT;
    cfg->servers = (const char *const *)o->servers;
    cfg->n_servers = o->n_servers;
    cfg->ca_file = o->ca_file;
    cfg->token = token;
    cfg->client_name = "threadsync-cli";
    cfg->request_timeout_ms = (unsigned)(o->timeout_s * 1000);
    cfg->reconnect = o->cmd == TS_CLI_CMD_WATCH || o->cmd == TS_CLI_CMD_POST ||
                     o->cmd == TS_CLI_CMD_EDIT || o->cmd == TS_CLI_CMD_DELETE ||
                     o->cmd == TS_CLI_CMD_MODERATE;
}

/* "get (a:7420,b:7420)": what a local failure message is about. */
static char context[512];
static const struct ts_cli_opts *context_opts;

static void context_init(const char *cmd, const struct ts_cli_opts *o)
{
    context_opts = o;
    ts_cli_context(context, sizeof(context), cmd, o);
}

/* A connection failure is explained per server where TCP itself failed
 * ("connection refused: is threadsyncd running on ...?"); the generic
 * line stays for failures above TCP (TLS, a dropped connection). */
static int finish(int err, const Threadsync__Error *detail)
{
    int explained = 0;
    size_t n_servers = err == TS_E_IO && context_opts ? context_opts->n_servers : 0;
    for (size_t i = 0; i < n_servers; i++) {
        char msg[384];
        if (ts_cli_explain_connect(context_opts->servers[i], 2000, msg, sizeof(msg))) {
            fprintf(stderr, "error: %s\n", msg);
            explained++;
        }
    }
    if (!explained || explained < (int)n_servers)
        ts_cli_print_error(stderr, err, detail, context);
    return ts_cli_exit_code(err);
}

/* After retrying until the deadline: did the servers decide, or might the
 * post be stored without our knowing? Refusals that depend on the cluster's
 * state of the moment (no leader, not the leader) and local failures leave
 * it open. */
static int outcome_unknown(int rc)
{
    return rc == TS_E_UNAVAILABLE || rc == TS_E_NOT_LEADER || rc < TS_E_BAD_FRAME ||
           rc > TS_E_INTERNAL;
}

/* --body, --body-file or stdin into *out (malloc'd); an exit code on
 * failure (already reported). */
static int read_body(const struct ts_cli_opts *o, char **out)
{
    char *body = NULL;
    int rc = TS_OK;
    if (o->body) {
        body = strdup(o->body);
    } else {
        FILE *f = o->body_file ? fopen(o->body_file, "r") : stdin;
        if (!f) {
            fprintf(stderr, "error: cannot open %s\n", o->body_file);
            return TS_CLI_EXIT_USAGE;
        }
        rc = ts_cli_read_all(f, (size_t)TS_BODY_MAX * 4, &body, NULL);
        if (f != stdin)
            fclose(f);
    }
    if (rc || !body) {
        fprintf(stderr, "error: cannot read the body: %s\n", ts_err_message(rc ? rc : TS_E_NOMEM));
        free(body);
        return TS_CLI_EXIT_USAGE;
    }
    *out = body;
    return TS_CLI_EXIT_OK;
}

static int cmd_post(const struct ts_cli_opts *o, struct ts_client_config *cfg)
{
    char *body = NULL;
    int rc = read_body(o, &body);
    if (rc != TS_CLI_EXIT_OK)
        return rc;
    Threadsync__Post p = THREADSYNC__POST__INIT;
    p.thread_key = (char *)o->threads[0];
    p.parent_id = o->parent;
    p.author_name = (char *)o->name;
    if (o->email)
        p.author_email = (char *)o->email;
    if (o->title)
        p.title = (char *)o->title;
    if (o->url)
        p.url = (char *)o->url;
    p.body = body;
    /* Chosen here rather than by the library so that it can be printed
     * when the outcome is unknown. */
    char key[33];
    if (o->idempotency_key) {
        p.idempotency_key = (char *)o->idempotency_key;
    } else if (ts_hex_random(16, key) == TS_OK) {
        p.idempotency_key = key;
    } else {
        free(body);
        fprintf(stderr, "error: no random bytes for an idempotency key\n");
        return TS_CLI_EXIT_CONN;
    }
    Threadsync__PostResult *res;
    Threadsync__Error *detail;
    rc = ts_sync_post(cfg, &p, &res, &detail);
    free(body);
    if (rc != TS_OK && outcome_unknown(rc)) {
        /* Every retry carried the key: the post exists at most once, but
         * nobody confirmed it. The same key again settles it. */
        fprintf(stderr,
                "error: post (%s): no answer within %llu s (last: %s: %s); the post may or may "
                "not have been stored.\n"
                "Retry with --idempotency-key %s to post it at most once.\n",
                context, (unsigned long long)o->timeout_s, ts_err_name(rc),
                detail && detail->message && *detail->message ? detail->message
                                                              : ts_err_message(rc),
                p.idempotency_key);
        ts_msg_free(detail);
        return TS_CLI_EXIT_CONN;
    }
    if (rc != TS_OK) {
        int code = finish(rc, detail);
        ts_msg_free(detail);
        return code;
    }
    ts_cli_print_post(stdout, res, o->json);
    ts_msg_free(res);
    return TS_CLI_EXIT_OK;
}

static int cmd_get(const struct ts_cli_opts *o, struct ts_client_config *cfg)
{
    Threadsync__GetResult *res;
    Threadsync__Error *detail;
    int rc = ts_sync_get(cfg, o->threads[0], &res, &detail);
    if (rc != TS_OK) {
        int code = finish(rc, detail);
        ts_msg_free(detail);
        return code;
    }
    ts_cli_print_thread(stdout, res, o->json);
    ts_msg_free(res);
    return TS_CLI_EXIT_OK;
}

/* ---- edit, delete, moderate, admin ---------------------------------------- */

/* Reports a refusal or failure and frees its detail; the exit code. */
static int refused(int rc, Threadsync__Error *detail)
{
    int code = finish(rc, detail);
    ts_msg_free(detail);
    return code;
}

static int print_change(int rc, Threadsync__ChangeResult *res, Threadsync__Error *detail, int json)
{
    if (rc != TS_OK)
        return refused(rc, detail);
    ts_cli_print_change_result(stdout, res, json);
    ts_msg_free(res);
    return TS_CLI_EXIT_OK;
}

static int cmd_edit(const struct ts_cli_opts *o, struct ts_client_config *cfg)
{
    char *body = NULL;
    int rc = read_body(o, &body);
    if (rc != TS_CLI_EXIT_OK)
        return rc;
    Threadsync__Edit m = THREADSYNC__EDIT__INIT;
    m.comment_id = o->id;
    if (o->edit_key)
        m.edit_key = (char *)o->edit_key;
    m.body = body;
    Threadsync__ChangeResult *res = NULL;
    Threadsync__Error *detail = NULL;
    rc = ts_sync_edit(cfg, &m, &res, &detail);
    free(body);
    return print_change(rc, res, detail, o->json);
}

static int cmd_delete(const struct ts_cli_opts *o, struct ts_client_config *cfg)
{
    Threadsync__Delete m = THREADSYNC__DELETE__INIT;
    m.comment_id = o->id;
    if (o->edit_key)
        m.edit_key = (char *)o->edit_key;
    Threadsync__ChangeResult *res = NULL;
    Threadsync__Error *detail = NULL;
    int rc = ts_sync_delete(cfg, &m, &res, &detail);
    return print_change(rc, res, detail, o->json);
}

static int cmd_moderate(const struct ts_cli_opts *o, struct ts_client_config *cfg)
{
    Threadsync__Error *detail = NULL;
    int rc;
    if (o->mod <= TS_CLI_MOD_DELETE) {
        Threadsync__Moderate m = THREADSYNC__MODERATE__INIT;
        m.comment_id = o->id;
        m.action = (Threadsync__ModerationAction)o->mod;
        Threadsync__ChangeResult *res = NULL;
        rc = ts_sync_moderate(cfg, &m, &res, &detail);
        return print_change(rc, res, detail, o->json);
    }
    if (o->mod <= TS_CLI_MOD_POSTMODERATE) {
        Threadsync__ModerateThread m = THREADSYNC__MODERATE_THREAD__INIT;
        m.thread_key = (char *)o->threads[0];
        m.action = (Threadsync__ThreadAction)(o->mod - TS_CLI_MOD_DELETE);
        Threadsync__ChangeResult *res = NULL;
        rc = ts_sync_moderate_thread(cfg, &m, &res, &detail);
        return print_change(rc, res, detail, o->json);
    }
    if (o->mod == TS_CLI_MOD_QUEUE) {
        Threadsync__PendingQueue m = THREADSYNC__PENDING_QUEUE__INIT;
        if (o->n_threads)
            m.thread_key = (char *)o->threads[0];
        Threadsync__PendingQueueResult *res = NULL;
        rc = ts_sync_pending(cfg, &m, &res, &detail);
        if (rc != TS_OK)
            return refused(rc, detail);
        ts_cli_print_pending(stdout, res, o->json);
        ts_msg_free(res);
        return TS_CLI_EXIT_OK;
    }
    Threadsync__BanAuthor m = THREADSYNC__BAN_AUTHOR__INIT;
    m.author = (char *)o->author;
    m.duration_ms = o->duration_s * 1000;
    Threadsync__BanResult *res = NULL;
    rc = ts_sync_ban(cfg, &m, &res, &detail);
    if (rc != TS_OK)
        return refused(rc, detail);
    ts_cli_print_ban(stdout, res, o->json);
    ts_msg_free(res);
    return TS_CLI_EXIT_OK;
}

static int cmd_admin(const struct ts_cli_opts *o, struct ts_client_config *cfg)
{
    Threadsync__Error *detail = NULL;
    int rc;
    if (o->token_op == TS_CLI_TOKEN_ADD) {
        Threadsync__TokenAdd m = THREADSYNC__TOKEN_ADD__INIT;
        m.name = (char *)o->token_name;
        m.role = (Threadsync__Role)o->role;
        m.gateway = o->gateway;
        Threadsync__TokenAddResult *res = NULL;
        rc = ts_sync_token_add(cfg, &m, &res, &detail);
        if (rc != TS_OK)
            return refused(rc, detail);
        ts_cli_print_token_add(stdout, res, o->json);
        if (!o->json)
            fprintf(stderr, "threadsync: keep this token secret; it is not shown again\n");
        ts_msg_free(res);
        return TS_CLI_EXIT_OK;
    }
    if (o->token_op == TS_CLI_TOKEN_LIST) {
        Threadsync__TokenListResult *res = NULL;
        rc = ts_sync_token_list(cfg, &res, &detail);
        if (rc != TS_OK)
            return refused(rc, detail);
        ts_cli_print_token_list(stdout, res, o->json);
        ts_msg_free(res);
        return TS_CLI_EXIT_OK;
    }
    Threadsync__TokenRevoke m = THREADSYNC__TOKEN_REVOKE__INIT;
    m.name = (char *)o->token_name;
    Threadsync__TokenRevokeResult *res = NULL;
    rc = ts_sync_token_revoke(cfg, &m, &res, &detail);
    if (rc != TS_OK)
        return refused(rc, detail);
    ts_cli_print_token_revoke(stdout, res, o->json);
    ts_msg_free(res);
    return TS_CLI_EXIT_OK;
}

/* ---- watch ---------------------------------------------------------------- */

struct watch {
    const struct ts_cli_opts *o;
    struct ts_client *c;
    uv_signal_t sigint, sigterm;
    struct ts_cli_keymap *keys;
    uint64_t snapshot_seq;
    int ever_ready;
    int exit_code;
    int stopping;
};

static void on_closed(uv_handle_t *h)
{
    (void)h;
}

static void watch_stop(struct watch *w, int exit_code)
{
    if (w->stopping)
        return;
    w->stopping = 1;
    w->exit_code = exit_code;
    ts_client_close(w->c, NULL, NULL);
    uv_close((uv_handle_t *)&w->sigint, on_closed);
    uv_close((uv_handle_t *)&w->sigterm, on_closed);
}

static void on_signal(uv_signal_t *s, int signum)
{
    (void)signum;
    watch_stop(s->data, TS_CLI_EXIT_OK);
}

static void on_state(void *arg, const struct ts_client_state_info *info)
{
    struct watch *w = arg;
    switch (info->state) {
    case TS_CLIENT_READY:
        w->ever_ready = 1;
        fprintf(stderr, "threadsync: connected to %s\n", info->server);
        break;
    case TS_CLIENT_DISCONNECTED:
        if (w->stopping)
            break;
        /* Exit 3 when every server of the list failed before any answered:
         * a typo in --server should not look like a quiet feed. */
        if (!w->ever_ready && info->failures >= w->o->n_servers) {
            ts_cli_print_connect_failure(stderr, info->server, info->err);
            watch_stop(w, TS_CLI_EXIT_CONN);
            break;
        }
        fprintf(stderr, "threadsync: disconnected from %s: %s; reconnecting\n", info->server,
                ts_err_message(info->err));
        break;
    case TS_CLIENT_FAILED: /* the subscription's on_error reports it */
    case TS_CLIENT_CONNECTING:
        break;
    }
}

static void on_sub_events(void *arg, const Threadsync__Events *ev)
{
    struct watch *w = arg;
    ts_cli_print_events(stdout, ev, w->o->json);
    fflush(stdout);
}

static void on_snap_begin(void *arg, const Threadsync__SnapshotBegin *b)
{
    struct watch *w = arg;
    w->snapshot_seq = b->seq;
}

static void on_snap_chunk(void *arg, const Threadsync__SnapshotChunk *chunk)
{
    struct watch *w = arg;
    ts_cli_print_chunk(stdout, w->keys, w->snapshot_seq, chunk, w->o->json);
    fflush(stdout);
}

static void on_sub_error(void *arg, int err, const Threadsync__Error *detail)
{
    struct watch *w = arg;
    if (err == TS_E_CLOSED && w->stopping)
        return;
    if (!w->stopping)
        watch_stop(w, finish(err, detail));
}

static int cmd_watch(const struct ts_cli_opts *o, struct ts_client_config *cfg)
{
    uv_loop_t *loop = uv_default_loop();
    struct watch w = {.o = o, .exit_code = TS_CLI_EXIT_OK};
    w.keys = ts_cli_keymap_new();
    if (!w.keys)
        return TS_CLI_EXIT_CONN;
    cfg->on_state = on_state;
    cfg->state_arg = &w;
    int rc = ts_client_new(loop, cfg, &w.c);
    if (rc != TS_OK) {
        ts_cli_keymap_free(w.keys);
        return finish(rc, NULL);
    }
    uv_signal_init(loop, &w.sigint);
    uv_signal_init(loop, &w.sigterm);
    w.sigint.data = w.sigterm.data = &w;
    uv_signal_start(&w.sigint, on_signal, SIGINT);
    uv_signal_start(&w.sigterm, on_signal, SIGTERM);
    static const struct ts_client_sub_cbs cbs = {
        .struct_size = sizeof(struct ts_client_sub_cbs),
        .on_events = on_sub_events,
        .on_snapshot_begin = on_snap_begin,
        .on_snapshot_chunk = on_snap_chunk,
        .on_error = on_sub_error,
    };
    rc = ts_client_subscribe(w.c, o->n_threads == 0, o->threads, o->n_threads, o->since, &cbs, &w);
    if (rc != TS_OK)
        watch_stop(&w, finish(rc, NULL));
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    ts_cli_keymap_free(w.keys);
    fflush(stdout);
    return w.exit_code;
}

/* The commands main runs, by the enum ts_cli_parse returns (the words and
 * options of each are ts_cli.c's tables). */
typedef int (*command_fn)(const struct ts_cli_opts *o, struct ts_client_config *cfg);
static const command_fn commands[TS_CLI_CMD_COUNT] = {
    [TS_CLI_CMD_POST] = cmd_post,
    [TS_CLI_CMD_GET] = cmd_get,
    [TS_CLI_CMD_WATCH] = cmd_watch,
    [TS_CLI_CMD_MIRROR] = ts_cli_mirror_run,
    [TS_CLI_CMD_VERIFY] = ts_cli_verify_run,
    [TS_CLI_CMD_MODERATE] = cmd_moderate,
    [TS_CLI_CMD_EDIT] = cmd_edit,
    [TS_CLI_CMD_DELETE] = cmd_delete,
    [TS_CLI_CMD_IMPORT] = ts_cli_import_run,
    [TS_CLI_CMD_EXPORT] = ts_cli_export_run,
    [TS_CLI_CMD_ADMIN] = cmd_admin,
    [TS_CLI_CMD_BACKUP] = ts_cli_backup_cmd,
    [TS_CLI_CMD_DIGEST] = ts_cli_digest_cmd,
    [TS_CLI_CMD_CLUSTER] = ts_cli_cluster_run,
    [TS_CLI_CMD_REMOVE_NODE] = ts_cli_remove_node_run,
    [TS_CLI_CMD_AUDIT] = ts_cli_audit_run,
};

int main(int argc, char **argv)
{
    if (ts_cli_web_wants(argc, argv)) /* web: the mirror plus an HTTP edge */
        return ts_cli_web_main(argc, argv);
    struct ts_cli_opts o;
    char err[256];
    int rc = ts_cli_parse(argc, argv, getenv, &o, err, sizeof(err));
    if (rc != TS_OK) {
        fprintf(stderr, "threadsync: %s\n", rc == TS_E_NOMEM ? "out of memory" : err);
        ts_cli_usage(stderr);
        ts_cli_opts_free(&o);
        return TS_CLI_EXIT_USAGE;
    }
    if (o.help) {
        ts_cli_usage(stdout);
        ts_cli_opts_free(&o);
        return TS_CLI_EXIT_OK;
    }
    char *token = NULL;
    if (ts_cli_read_token(o.token_file, &token, err, sizeof(err)) != TS_OK) {
        fprintf(stderr, "error: %s\n", err);
        ts_cli_opts_free(&o);
        return TS_CLI_EXIT_CONN;
    }
    struct ts_client_config cfg;
    config_init(&cfg, &o, token);
    context_init(ts_cli_cmd_name(o.cmd), &o);
    int code = commands[o.cmd] ? commands[o.cmd](&o, &cfg) : TS_CLI_EXIT_USAGE;
    free(token);
    ts_cli_opts_free(&o);
    return code;
}
