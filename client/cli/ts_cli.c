/*
 * ts_cli: argument parsing and output formatting of the threadsync CLI (see
 * ts_cli.h for the formats).
 *
 * Parsing is table-driven and order-free: options are collected wherever
 * they appear, then checked against the command (an option the command
 * does not take is a usage error, never silently ignored). Formatting
 * writes to a FILE so tests can capture it with open_memstream. The tree
 * printer is iterative: a reply chain thousands deep must not overflow the
 * stack.
 */
#include "ts_cli.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <netinet/in.h>
#include <sys/socket.h>

#include "ts_addr.h"
#include "ts_buf.h"
#include "ts_err.h"
#include "ts_json.h"

/* ---- parsing ------------------------------------------------------------ */

enum opt_id {
    OPT_SERVER,
    OPT_CA,
    OPT_TOKEN_FILE,
    OPT_JSON,
    OPT_HELP,
    OPT_THREAD,
    OPT_PARENT,
    OPT_NAME,
    OPT_EMAIL,
    OPT_TITLE,
    OPT_URL,
    OPT_BODY,
    OPT_BODY_FILE,
    OPT_SINCE,
    OPT_DIR,
    OPT_ALL,
    OPT_ONCE,
    OPT_EDIT_KEY,
    OPT_AUTHOR,
    OPT_DURATION,
    OPT_ROLE,
    OPT_TIMEOUT,
    OPT_IDEM_KEY,
    OPT_OUT,
    OPT_TIMEOUT_MS,
    OPT_GATEWAY,
    OPT_FORMAT,
    OPT_KEY_FROM,
    OPT_SOURCE,
    OPT_BATCH_SIZE,
    OPT_WITH_PINGBACKS,
    OPT_STRICT,
    OPT_RENUMBER,
    OPT_QUIET,
    OPT_WITH_EMAILS,
    OPT_COMMENT,
    OPT_AFTER,
};

#define CMD_BIT(c) (1u << (c))
#define ALL_CMDS 0xffffffffu
#define MIRROR_CMDS (CMD_BIT(TS_CLI_CMD_MIRROR) | CMD_BIT(TS_CLI_CMD_VERIFY))
#define IMPORT CMD_BIT(TS_CLI_CMD_IMPORT)
#define EXPORT CMD_BIT(TS_CLI_CMD_EXPORT)
#define AUDIT CMD_BIT(TS_CLI_CMD_AUDIT)
/* Writes that are safe to send again, so they retry across the server list
 * until --timeout: a post carries its idempotency key, the others set a
 * state and a repeat changes nothing (changed=0). */
#define RETRY_CMDS                                                                                 \
    (CMD_BIT(TS_CLI_CMD_POST) | CMD_BIT(TS_CLI_CMD_EDIT) | CMD_BIT(TS_CLI_CMD_DELETE) |            \
     CMD_BIT(TS_CLI_CMD_MODERATE))

static const struct opt_def {
    const char *name;
    enum opt_id id;
    int has_value;
    unsigned cmds; /* commands that accept it */
} opt_defs[] = {
    {"server", OPT_SERVER, 1, ALL_CMDS},
    {"ca", OPT_CA, 1, ALL_CMDS},
    {"token-file", OPT_TOKEN_FILE, 1, ALL_CMDS},
    {"json", OPT_JSON, 0, ALL_CMDS},
    {"help", OPT_HELP, 0, ALL_CMDS},
    {"thread", OPT_THREAD, 1,
     CMD_BIT(TS_CLI_CMD_POST) | CMD_BIT(TS_CLI_CMD_GET) | CMD_BIT(TS_CLI_CMD_WATCH) |
         CMD_BIT(TS_CLI_CMD_MODERATE) | MIRROR_CMDS | EXPORT | AUDIT},
    {"parent", OPT_PARENT, 1, CMD_BIT(TS_CLI_CMD_POST)},
    {"name", OPT_NAME, 1, CMD_BIT(TS_CLI_CMD_POST) | CMD_BIT(TS_CLI_CMD_ADMIN)},
    {"email", OPT_EMAIL, 1, CMD_BIT(TS_CLI_CMD_POST)},
    {"title", OPT_TITLE, 1, CMD_BIT(TS_CLI_CMD_POST)},
    {"url", OPT_URL, 1, CMD_BIT(TS_CLI_CMD_POST)},
    {"body", OPT_BODY, 1, CMD_BIT(TS_CLI_CMD_POST) | CMD_BIT(TS_CLI_CMD_EDIT)},
    {"body-file", OPT_BODY_FILE, 1, CMD_BIT(TS_CLI_CMD_POST) | CMD_BIT(TS_CLI_CMD_EDIT)},
    {"since", OPT_SINCE, 1, CMD_BIT(TS_CLI_CMD_WATCH)},
    {"dir", OPT_DIR, 1, MIRROR_CMDS},
    {"all", OPT_ALL, 0, MIRROR_CMDS | EXPORT},
    {"once", OPT_ONCE, 0, CMD_BIT(TS_CLI_CMD_MIRROR)},
    {"edit-key", OPT_EDIT_KEY, 1, CMD_BIT(TS_CLI_CMD_EDIT) | CMD_BIT(TS_CLI_CMD_DELETE)},
    {"author", OPT_AUTHOR, 1, CMD_BIT(TS_CLI_CMD_MODERATE)},
    {"duration", OPT_DURATION, 1, CMD_BIT(TS_CLI_CMD_MODERATE)},
    {"role", OPT_ROLE, 1, CMD_BIT(TS_CLI_CMD_ADMIN)},
    {"timeout", OPT_TIMEOUT, 1, ALL_CMDS},
    {"idempotency-key", OPT_IDEM_KEY, 1, CMD_BIT(TS_CLI_CMD_POST)},
    {"out", OPT_OUT, 1, CMD_BIT(TS_CLI_CMD_BACKUP) | EXPORT},
    {"timeout-ms", OPT_TIMEOUT_MS, 1,
     CMD_BIT(TS_CLI_CMD_BACKUP) | CMD_BIT(TS_CLI_CMD_DIGEST) | IMPORT},
    {"gateway", OPT_GATEWAY, 0, CMD_BIT(TS_CLI_CMD_ADMIN)},
    {"format", OPT_FORMAT, 1, IMPORT | EXPORT},
    {"key-from", OPT_KEY_FROM, 1, IMPORT},
    {"source", OPT_SOURCE, 1, IMPORT},
    {"batch-size", OPT_BATCH_SIZE, 1, IMPORT},
    {"with-pingbacks", OPT_WITH_PINGBACKS, 0, IMPORT},
    {"strict", OPT_STRICT, 0, IMPORT},
    {"renumber", OPT_RENUMBER, 0, IMPORT},
    {"quiet", OPT_QUIET, 0, IMPORT},
    {"with-emails", OPT_WITH_EMAILS, 0, EXPORT},
    {"comment", OPT_COMMENT, 1, AUDIT},
    {"after", OPT_AFTER, 1, AUDIT},
};

/* The commands: the first word, and for the admin sub-commands that are
 * commands of their own (options and runner), the second. */
static const struct cmd_def {
    enum ts_cli_cmd cmd;
    const char *word, *sub, *name;
} cmd_defs[] = {
    {TS_CLI_CMD_POST, "post", NULL, "post"},
    {TS_CLI_CMD_GET, "get", NULL, "get"},
    {TS_CLI_CMD_WATCH, "watch", NULL, "watch"},
    {TS_CLI_CMD_MIRROR, "mirror", NULL, "mirror"},
    {TS_CLI_CMD_VERIFY, "verify", NULL, "verify"},
    {TS_CLI_CMD_MODERATE, "moderate", NULL, "moderate"},
    {TS_CLI_CMD_EDIT, "edit", NULL, "edit"},
    {TS_CLI_CMD_DELETE, "delete", NULL, "delete"},
    {TS_CLI_CMD_IMPORT, "import", NULL, "import"},
    {TS_CLI_CMD_EXPORT, "export", NULL, "export"},
    {TS_CLI_CMD_ADMIN, "admin", NULL, "admin"},
    {TS_CLI_CMD_BACKUP, "admin", "backup", "admin backup"},
    {TS_CLI_CMD_DIGEST, "admin", "digest", "admin digest"},
    {TS_CLI_CMD_CLUSTER, "admin", "cluster", "admin cluster"},
    {TS_CLI_CMD_REMOVE_NODE, "admin", "remove-node", "admin remove-node"},
    {TS_CLI_CMD_AUDIT, "admin", "audit", "admin audit"},
};
#define N_CMD_DEFS (sizeof(cmd_defs) / sizeof(cmd_defs[0]))

/* The command named by word (and, for a sub-command, sub); NONE if none. */
static enum ts_cli_cmd find_cmd(const char *word, const char *sub)
{
    for (size_t i = 0; i < N_CMD_DEFS; i++)
        if (strcmp(cmd_defs[i].word, word) == 0 &&
            (cmd_defs[i].sub ? sub && strcmp(cmd_defs[i].sub, sub) == 0 : !sub))
            return cmd_defs[i].cmd;
    return TS_CLI_CMD_NONE;
}

void ts_cli_context(char *buf, size_t len, const char *what, const struct ts_cli_opts *o)
{
    size_t n = (size_t)snprintf(buf, len, "%s (", what);
    for (size_t i = 0; i < o->n_servers && n < len; i++)
        n += (size_t)snprintf(buf + n, len - n, "%s%s", i ? "," : "", o->servers[i]);
    if (n < len)
        snprintf(buf + n, len - n, ")");
}

const char *ts_cli_cmd_name(enum ts_cli_cmd cmd)
{
    for (size_t i = 0; i < N_CMD_DEFS; i++)
        if (cmd_defs[i].cmd == cmd)
            return cmd_defs[i].name;
    return "";
}

static const char *const mod_names[] = {"",     "approve", "hide",        "unhide",       "delete",
                                        "lock", "unlock",  "premoderate", "postmoderate", "queue",
                                        "ban"};
#define N_MODS (sizeof(mod_names) / sizeof(mod_names[0]))

static const char *const token_ops[] = {"", "add", "list", "revoke"};

static int lookup(const char *const *names, size_t n, const char *word)
{
    for (size_t i = 1; i < n; i++)
        if (strcmp(word, names[i]) == 0)
            return (int)i;
    return 0;
}

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return TS_E_INVALID_ARGUMENT;
}

static int parse_u64(const char *s, uint64_t *out)
{
    if (!s || !isdigit((unsigned char)*s))
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

static int push_server(struct ts_cli_opts *o, const char *s, size_t len)
{
    char **v = realloc(o->servers, (o->n_servers + 1) * sizeof(*v));
    if (!v)
        return TS_E_NOMEM;
    o->servers = v;
    if (!(v[o->n_servers] = strndup(s, len)))
        return TS_E_NOMEM;
    o->n_servers++;
    return TS_OK;
}

static int push_thread(struct ts_cli_opts *o, const char *s)
{
    const char **v = realloc(o->threads, (o->n_threads + 1) * sizeof(*v));
    if (!v)
        return TS_E_NOMEM;
    o->threads = v;
    v[o->n_threads++] = s;
    return TS_OK;
}

static const char *env_or(ts_cli_getenv_fn get_env, const char *name, const char *dflt)
{
    const char *v = get_env ? get_env(name) : NULL;
    return v && *v ? v : dflt;
}

void ts_cli_opts_free(struct ts_cli_opts *o)
{
    for (size_t i = 0; i < o->n_servers; i++)
        free(o->servers[i]);
    free(o->servers);
    free(o->threads);
    memset(o, 0, sizeof(*o));
}

static int apply(struct ts_cli_opts *o, enum opt_id id, const char *v, char *err, size_t errlen)
{
    switch (id) {
    case OPT_SERVER:
        /* "a:7420,b:7420" is a list too, as in $THREADSYNC_SERVER */
        for (const char *p = v; *p;) {
            size_t n = strcspn(p, ",");
            if (n && push_server(o, p, n))
                return TS_E_NOMEM;
            p += n;
            p += strspn(p, ",");
        }
        break;
    case OPT_CA:
        o->ca_file = v;
        break;
    case OPT_TOKEN_FILE:
        o->token_file = v;
        break;
    case OPT_GATEWAY:
        o->gateway = 1;
        break;
    case OPT_JSON:
        o->json = 1;
        break;
    case OPT_HELP:
        o->help = 1;
        break;
    case OPT_THREAD:
        return push_thread(o, v);
    case OPT_PARENT:
        if (parse_u64(v, &o->parent))
            return fail(err, errlen, "--parent wants a comment id, not '%s'", v);
        break;
    case OPT_NAME:
        o->name = v;
        break;
    case OPT_EMAIL:
        o->email = v;
        break;
    case OPT_TITLE:
        o->title = v;
        break;
    case OPT_URL:
        o->url = v;
        break;
    case OPT_BODY:
        o->body = v;
        break;
    case OPT_BODY_FILE:
        o->body_file = v;
        break;
    case OPT_SINCE:
        if (parse_u64(v, &o->since))
            return fail(err, errlen, "--since wants a sequence number, not '%s'", v);
        break;
    case OPT_DIR:
        o->dir = v;
        break;
    case OPT_ALL:
        o->all = 1;
        break;
    case OPT_ONCE:
        o->once = 1;
        break;
    case OPT_EDIT_KEY:
        o->edit_key = v;
        break;
    case OPT_AUTHOR:
        o->author = v;
        break;
    case OPT_DURATION:
        if (parse_u64(v, &o->duration_s) || o->duration_s > 10ull * 365 * 24 * 3600)
            return fail(err, errlen, "--duration wants seconds (0 lifts a ban), not '%s'", v);
        o->duration_set = 1;
        break;
    case OPT_TIMEOUT:
        if (parse_u64(v, &o->timeout_s) || o->timeout_s == 0 || o->timeout_s > 86400)
            return fail(err, errlen, "--timeout wants seconds (1 to 86400), not '%s'", v);
        break;
    case OPT_TIMEOUT_MS: {
        uint64_t ms;
        if (parse_u64(v, &ms) || ms == 0 || ms > 86400000)
            return fail(err, errlen, "--timeout-ms wants 1..86400000, not '%s'", v);
        o->timeout_ms = (unsigned)ms;
        break;
    }
    case OPT_OUT:
        o->out = v;
        break;
    case OPT_FORMAT:
        o->format = v;
        break;
    case OPT_KEY_FROM:
        if (strcmp(v, "path") != 0 && strcmp(v, "slug") != 0 && strcmp(v, "id") != 0)
            return fail(err, errlen, "--key-from wants path, slug or id");
        o->key_from = v;
        break;
    case OPT_SOURCE:
        if (!v[0] || strlen(v) > TS_CLI_IMPORT_SOURCE_MAX)
            return fail(err, errlen, "--source wants 1 to %d characters", TS_CLI_IMPORT_SOURCE_MAX);
        o->source = v;
        break;
    case OPT_BATCH_SIZE: {
        uint64_t n;
        if (parse_u64(v, &n) || n == 0 || n > TS_CLI_IMPORT_BATCH_MAX)
            return fail(err, errlen, "--batch-size wants 1..%d, not '%s'", TS_CLI_IMPORT_BATCH_MAX,
                        v);
        o->batch_size = (size_t)n;
        break;
    }
    case OPT_WITH_PINGBACKS:
        o->with_pingbacks = 1;
        break;
    case OPT_STRICT:
        o->strict = 1;
        break;
    case OPT_RENUMBER:
        o->renumber = 1;
        break;
    case OPT_QUIET:
        o->quiet = 1;
        break;
    case OPT_WITH_EMAILS:
        o->with_emails = 1;
        break;
    case OPT_COMMENT:
        if (parse_u64(v, &o->comment_id) || o->comment_id == 0)
            return fail(err, errlen, "--comment wants a comment id, not '%s'", v);
        break;
    case OPT_AFTER:
        if (parse_u64(v, &o->after_seq))
            return fail(err, errlen, "--after wants a sequence number, not '%s'", v);
        break;
    case OPT_IDEM_KEY: {
        size_t n = strlen(v);
        int ok = n >= 1 && n <= TS_CLI_IDEM_KEY_MAX;
        for (size_t k = 0; ok && k < n; k++)
            ok = (unsigned char)v[k] > 0x20 && v[k] != 0x7f;
        if (!ok)
            return fail(err, errlen,
                        "--idempotency-key wants 1 to %d characters without spaces or control "
                        "characters",
                        TS_CLI_IDEM_KEY_MAX);
        o->idempotency_key = v;
        break;
    }
    case OPT_ROLE:
        for (int r = 1; r <= 4; r++)
            if (strcmp(v, (const char *const[]){"", "reader", "poster", "moderator", "admin"}[r]) ==
                0)
                o->role = r;
        if (!o->role)
            return fail(err, errlen, "--role wants reader, poster, moderator or admin, not '%s'",
                        v);
        break;
    }
    return TS_OK;
}

/* The words after moderate, edit, delete and admin (and its sub-commands). */
static int check_args(struct ts_cli_opts *o, char *err, size_t errlen)
{
    const char *cmd = ts_cli_cmd_name(o->cmd);
    size_t want_id = 0; /* index of the ID word, when there is one */
    size_t n_words = 0;
    switch (o->cmd) {
    case TS_CLI_CMD_MODERATE:
        if (o->n_args == 0)
            return fail(err, errlen,
                        "moderate needs an action: approve, hide, unhide, delete, "
                        "lock, unlock, premoderate, postmoderate, queue or ban");
        o->mod = (enum ts_cli_mod)lookup(mod_names, N_MODS, o->args[0]);
        if (!o->mod)
            return fail(err, errlen, "unknown moderate action '%s'", o->args[0]);
        if (o->mod <= TS_CLI_MOD_DELETE) {
            want_id = 1;
            n_words = 2;
            if (o->n_threads)
                return fail(err, errlen, "moderate %s takes a comment ID, not --thread",
                            o->args[0]);
        } else {
            n_words = 1;
            if (o->mod <= TS_CLI_MOD_POSTMODERATE && o->n_threads != 1)
                return fail(err, errlen, "moderate %s needs exactly one --thread", o->args[0]);
            if (o->mod == TS_CLI_MOD_QUEUE && o->n_threads > 1)
                return fail(err, errlen, "moderate queue takes at most one --thread");
            if (o->mod == TS_CLI_MOD_BAN && o->n_threads)
                return fail(err, errlen, "moderate ban takes no --thread");
        }
        if ((o->author || o->duration_set) != (o->mod == TS_CLI_MOD_BAN) ||
            (o->mod == TS_CLI_MOD_BAN && (!o->author || !o->duration_set)))
            return fail(err, errlen,
                        o->mod == TS_CLI_MOD_BAN
                            ? "moderate ban needs --author NAME_OR_EMAIL and --duration SECONDS"
                            : "--author and --duration go with moderate ban only");
        break;
    case TS_CLI_CMD_EDIT:
    case TS_CLI_CMD_DELETE:
        want_id = 0;
        n_words = 1;
        break;
    case TS_CLI_CMD_IMPORT:
        if (!o->format || (strcmp(o->format, "wordpress") != 0 &&
                           strcmp(o->format, "disqus") != 0 && strcmp(o->format, "jsonl") != 0))
            return fail(err, errlen, "import needs --format wordpress, disqus or jsonl");
        if (o->n_args == 0)
            return fail(err, errlen, "import needs a FILE (- for standard input)");
        o->file = o->args[0];
        n_words = 1;
        break;
    case TS_CLI_CMD_EXPORT:
        if (!o->format || strcmp(o->format, "jsonl") != 0)
            return fail(err, errlen, "export needs --format jsonl");
        if (o->all == (o->n_threads > 0))
            return fail(err, errlen, "export needs --all or --thread KEY (not both)");
        if (o->n_threads > TS_CLI_EXPORT_KEYS_MAX)
            return fail(err, errlen, "at most %d --thread keys", TS_CLI_EXPORT_KEYS_MAX);
        break;
    case TS_CLI_CMD_BACKUP:
        if (!o->out || !*o->out)
            return fail(err, errlen, "admin backup needs --out FILE");
        n_words = 1;
        break;
    case TS_CLI_CMD_DIGEST:
    case TS_CLI_CMD_CLUSTER:
        n_words = 1;
        break;
    case TS_CLI_CMD_AUDIT:
        if (o->n_threads > 1)
            return fail(err, errlen, "admin audit takes at most one --thread");
        n_words = 1;
        break;
    case TS_CLI_CMD_REMOVE_NODE:
        if (o->n_args != 2 || parse_u64(o->args[1], &o->node_id) || o->node_id == 0)
            return fail(err, errlen, "admin remove-node wants a node ID (1..), not '%s'",
                        o->n_args > 1 ? o->args[1] : "");
        n_words = 2;
        break;
    case TS_CLI_CMD_ADMIN:
        if (o->n_args < 2 || strcmp(o->args[0], "token") != 0)
            return fail(err, errlen,
                        "admin needs: token add|list|revoke, backup, digest, cluster, audit "
                        "or remove-node ID");
        o->token_op = (enum ts_cli_token_op)lookup(token_ops, 4, o->args[1]);
        if (!o->token_op)
            return fail(err, errlen, "unknown admin token action '%s'", o->args[1]);
        n_words = o->token_op == TS_CLI_TOKEN_REVOKE ? 3 : 2;
        if (o->token_op == TS_CLI_TOKEN_ADD) {
            if (!o->name || !o->role)
                return fail(err, errlen, "admin token add needs --role ROLE and --name NAME");
            o->token_name = o->name;
        } else if (o->name || o->role || o->gateway) {
            return fail(err, errlen, "--role, --name and --gateway go with admin token add only");
        }
        if (o->token_op == TS_CLI_TOKEN_REVOKE && o->n_args == 3)
            o->token_name = o->args[2];
        break;
    default:
        return TS_OK;
    }
    if (o->n_args != n_words)
        return fail(err, errlen, "%s %s: %s", o->cmd >= TS_CLI_CMD_BACKUP ? "admin" : cmd,
                    o->n_args > 0 ? o->args[0] : "",
                    o->n_args < n_words ? "missing argument" : "too many arguments");
    if (n_words && (o->cmd == TS_CLI_CMD_EDIT || o->cmd == TS_CLI_CMD_DELETE || want_id)) {
        const char *w = o->args[want_id];
        if (parse_u64(w, &o->id) || o->id == 0)
            return fail(err, errlen, "%s wants a comment ID, not '%s'", cmd, w);
    }
    if (o->cmd == TS_CLI_CMD_EDIT && o->body && o->body_file)
        return fail(err, errlen, "--body and --body-file exclude each other");
    return TS_OK;
}

int ts_cli_parse(int argc, char *const argv[], ts_cli_getenv_fn get_env, struct ts_cli_opts *o,
                 char *err, size_t errlen)
{
    memset(o, 0, sizeof(*o));
    if (err && errlen)
        err[0] = '\0';
    const struct opt_def *seen[sizeof(opt_defs) / sizeof(opt_defs[0])] = {0};
    size_t n_seen = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0)
            a = "--help";
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            if (a[0] == '-' && a[1] != '\0')
                return fail(err, errlen, "unknown option '%s'", a);
            if (o->cmd >= TS_CLI_CMD_MODERATE) {
                if (o->n_args == sizeof(o->args) / sizeof(o->args[0]))
                    return fail(err, errlen, "unexpected argument '%s'", a);
                o->args[o->n_args++] = a;
                continue;
            }
            if (o->cmd != TS_CLI_CMD_NONE)
                return fail(err, errlen, "unexpected argument '%s'", a);
            o->cmd = find_cmd(a, NULL);
            if (o->cmd == TS_CLI_CMD_NONE)
                return fail(err, errlen, "unknown command '%s'", a);
            continue;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const struct opt_def *d = NULL;
        for (size_t k = 0; k < sizeof(opt_defs) / sizeof(opt_defs[0]); k++)
            if (strlen(opt_defs[k].name) == nlen && strncmp(opt_defs[k].name, name, nlen) == 0)
                d = &opt_defs[k];
        if (!d)
            return fail(err, errlen, "unknown option '%.*s'", (int)(nlen + 2), a);
        const char *v = NULL;
        if (d->has_value) {
            if (eq)
                v = eq + 1;
            else if (i + 1 < argc)
                v = argv[++i];
            else
                return fail(err, errlen, "--%s needs a value", d->name);
        } else if (eq) {
            return fail(err, errlen, "--%s takes no value", d->name);
        }
        int rc = apply(o, d->id, v, err, errlen);
        if (rc)
            return rc;
        int dup = 0;
        for (size_t k = 0; k < n_seen; k++)
            dup |= seen[k] == d;
        if (!dup)
            seen[n_seen++] = d;
    }
    if (o->cmd != TS_CLI_CMD_NONE && o->n_args > 0) { /* a sub-command of its own */
        enum ts_cli_cmd sub = find_cmd(ts_cli_cmd_name(o->cmd), o->args[0]);
        if (sub != TS_CLI_CMD_NONE)
            o->cmd = sub;
    }
    if (o->help)
        return TS_OK;
    if (o->cmd == TS_CLI_CMD_NONE)
        return fail(err, errlen, "no command given");
    for (size_t k = 0; k < n_seen; k++)
        if (!(seen[k]->cmds & CMD_BIT(o->cmd)))
            return fail(err, errlen, "%s does not take --%s", ts_cli_cmd_name(o->cmd),
                        seen[k]->name);
    if (o->cmd == TS_CLI_CMD_POST || o->cmd == TS_CLI_CMD_GET) {
        if (o->n_threads != 1)
            return fail(err, errlen, "%s needs exactly one --thread", ts_cli_cmd_name(o->cmd));
    }
    if (o->cmd == TS_CLI_CMD_POST) {
        if (!o->name)
            return fail(err, errlen, "post needs --name");
        if (o->body && o->body_file)
            return fail(err, errlen, "--body and --body-file exclude each other");
    }
    if (o->cmd == TS_CLI_CMD_MIRROR || o->cmd == TS_CLI_CMD_VERIFY) {
        if (!o->dir || !*o->dir)
            return fail(err, errlen, "%s needs --dir", ts_cli_cmd_name(o->cmd));
        if (o->all && o->n_threads)
            return fail(err, errlen, "--all and --thread exclude each other");
    }
    int rc = check_args(o, err, errlen);
    if (rc)
        return rc;

    if (o->n_servers == 0) {
        const char *env = env_or(get_env, "THREADSYNC_SERVER", TS_CLI_DEFAULT_SERVER);
        /* A list in one variable: "a:7420,b:7420". */
        for (const char *p = env; *p;) {
            size_t n = strcspn(p, ", ");
            if (n && push_server(o, p, n))
                return TS_E_NOMEM;
            p += n;
            p += strspn(p, ", ");
        }
        if (o->n_servers == 0 &&
            push_server(o, TS_CLI_DEFAULT_SERVER, strlen(TS_CLI_DEFAULT_SERVER)))
            return TS_E_NOMEM;
    }
    if (!o->timeout_s)
        o->timeout_s = TS_CLI_DEFAULT_TIMEOUT_S;
    if (!o->batch_size)
        o->batch_size = TS_CLI_IMPORT_BATCH_MAX;
    if (!o->ca_file)
        o->ca_file = env_or(get_env, "THREADSYNC_CA", TS_CLI_DEFAULT_CA);
    if (!o->token_file)
        o->token_file = env_or(get_env, "THREADSYNC_TOKEN_FILE", TS_CLI_DEFAULT_TOKEN_FILE);
    return TS_OK;
}

void ts_cli_usage(FILE *out)
{
    fputs("usage: threadsync [options] COMMAND [options]\n"
          "\n"
          "commands:\n"
          "  post  --thread KEY --name NAME [--parent ID] [--email E] [--title T] [--url U]\n"
          "        [--body TEXT | --body-file F]     (body from stdin when neither)\n"
          "        [--idempotency-key KEY]  the same KEY again never posts twice\n"
          "  get   --thread KEY                      print a thread as a tree\n"
          "  watch [--thread KEY]... [--since SEQ]   print changes as they happen\n"
          "  web --dir DIR [--listen HOST:PORT] [--config FILE] ...\n"
          "                  mirror DIR and serve its threads over HTTP (threadsync web --help)\n"
          "  mirror --dir DIR [--thread KEY]... [--all] [--once]\n"
          "                  keep DIR/mirror.db and DIR/threads/*.{json,html} up to date\n"
          "  verify --dir DIR [--thread KEY]... [--all]\n"
          "                  compare the mirror with the server (exit 1 on a difference)\n"
          "  edit ID [--edit-key K] [--body TEXT | --body-file F]\n"
          "                         replace a comment's body: with the key its post\n"
          "                         printed (within the edit window), or as a moderator\n"
          "  delete ID [--edit-key K]   delete a comment (a tombstone stays)\n"
          "  moderate approve|hide|unhide|delete ID\n"
          "  moderate lock|unlock|premoderate|postmoderate --thread KEY\n"
          "  moderate queue [--thread KEY]           list PENDING comments\n"
          "  moderate ban --author NAME_OR_EMAIL --duration SECONDS   (0 lifts it)\n"
          "  import --format wordpress|disqus|jsonl FILE   (- for standard input)\n"
          "        [--key-from path|slug|id] [--with-pingbacks] [--strict] [--source NAME]\n"
          "        [--renumber] [--batch-size N] [--quiet] [--timeout-ms MS]\n"
          "                  put another system's comments into threadsync (an admin\n"
          "                  token; running it again completes an interrupted run)\n"
          "  export --format jsonl (--all | --thread KEY...) [--with-emails] [--out FILE]\n"
          "                  every thread and comment as JSON Lines\n"
          "  admin token add --role reader|poster|moderator|admin --name NAME [--gateway]\n"
          "                         prints the new token once\n"
          "  admin token list\n"
          "  admin token revoke NAME\n"
          "  admin backup --out FILE                verified backup of the whole store\n"
          "  admin digest                           the node's seq and state digest\n"
          "  admin audit [--thread KEY] [--comment ID] [--after SEQ]  the moderation audit trail\n"
          "  admin cluster            nodes, addresses, roles, leader, applied seq of each\n"
          "  admin remove-node ID     remove a node (not the leader: stop that one first)\n"
          "\n"
          "options (also after the command):\n"
          "  --server HOST:PORT   repeatable, or a comma-separated list (failover order);\n"
          "                       env THREADSYNC_SERVER (comma-separated);\n"
          "                       default " TS_CLI_DEFAULT_SERVER "\n"
          "  --ca FILE            env THREADSYNC_CA; default " TS_CLI_DEFAULT_CA "\n"
          "  --token-file FILE    env THREADSYNC_TOKEN_FILE; default " TS_CLI_DEFAULT_TOKEN_FILE
          "\n"
          "  --timeout SECONDS    how long a request may take (post, edit, delete,\n"
          "                       moderate: keep retrying through the server list until\n"
          "                       then; admin backup: the longest silence); default 30\n"
          "  --json               machine-readable output\n"
          "  --help               this text\n"
          "\n"
          "exit status: 0 ok, 1 refused by the server (verify: a difference), 2 usage,\n"
          "             3 connection/TLS or local failure (post: outcome unknown, the\n"
          "               key to retry with is printed)\n",
          out);
}

/* ---- files -------------------------------------------------------------- */

int ts_cli_read_all(FILE *in, size_t limit, char **out, size_t *len)
{
    struct ts_buf b = TS_BUF_INIT;
    for (;;) {
        size_t want = b.cap > b.len + 1 ? b.cap - b.len - 1 : 4096;
        char *p = ts_buf_space(&b, want);
        if (!p)
            return ts_buf_finish(&b, out, len);
        size_t r = fread(p, 1, want, in);
        ts_buf_commit(&b, r);
        if (b.len > limit) {
            ts_buf_free(&b);
            return TS_E_TOO_LARGE;
        }
        if (r == 0)
            break;
    }
    if (ferror(in)) {
        ts_buf_free(&b);
        return TS_E_IO;
    }
    return ts_buf_finish(&b, out, len);
}

int ts_cli_read_token(const char *path, char **out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot read token file %s: %s", path, strerror(errno));
        return TS_E_IO;
    }
    char *buf;
    int rc = ts_cli_read_all(f, 4096, &buf, NULL);
    fclose(f);
    if (rc) {
        snprintf(err, errlen, "cannot read token file %s: %s", path, ts_err_message(rc));
        return TS_E_IO;
    }
    buf[strcspn(buf, "\r\n")] = '\0';
    if (!*buf) {
        free(buf);
        snprintf(err, errlen, "token file %s is empty", path);
        return TS_E_IO;
    }
    *out = buf;
    return TS_OK;
}

/* ---- errors --------------------------------------------------------------- */

int ts_cli_exit_code(int err)
{
    if (err == TS_OK)
        return TS_CLI_EXIT_OK;
    if (err >= TS_E_BAD_FRAME && err <= TS_E_WIRE_MAX)
        return TS_CLI_EXIT_REFUSED;
    return TS_CLI_EXIT_CONN;
}

void ts_cli_print_error(FILE *out, int err, const Threadsync__Error *detail, const char *context)
{
    if (ts_cli_exit_code(err) == TS_CLI_EXIT_REFUSED) {
        fprintf(out, "error: %s", ts_err_name(err));
        if (detail && detail->field && *detail->field)
            fprintf(out, " field=%s", detail->field);
        const char *msg =
            detail && detail->message && *detail->message ? detail->message : ts_err_message(err);
        fprintf(out, ": %s\n", msg);
        return;
    }
    fprintf(out, "error: %s: %s (%s)\n", context ? context : "failed", ts_err_message(err),
            ts_err_name(err));
}

/* The errno of one TCP connect to addr within timeout_ms: 0 when it
 * connected, ETIMEDOUT when nothing answered, -1 when addr is not a
 * numeric host:port. */
static int probe_connect(const char *server, int timeout_ms)
{
    char host[256];
    uint16_t port;
    struct sockaddr_storage ss;
    if (ts_addr_parse(server, host, sizeof(host), &port) != TS_OK ||
        ts_addr_numeric(host, port, &ss) != TS_OK)
        return -1;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return errno;
    socklen_t len =
        ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    int err = 0;
    if (connect(fd, (struct sockaddr *)&ss, len) != 0) {
        err = errno;
        if (err == EINPROGRESS) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            socklen_t el = sizeof(err);
            if (poll(&p, 1, timeout_ms) != 1)
                err = ETIMEDOUT;
            else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0)
                err = errno;
        }
    }
    close(fd);
    return err;
}

int ts_cli_explain_connect(const char *server, int timeout_ms, char *msg, size_t len)
{
    int err = probe_connect(server, timeout_ms);
    if (err == ECONNREFUSED)
        snprintf(msg, len, "connection refused: is threadsyncd running on %s?", server);
    else if (err == ETIMEDOUT)
        snprintf(msg, len,
                 "no answer from %s within %d ms: is the address right, or a firewall "
                 "in the way?",
                 server, timeout_ms);
    else if (err > 0)
        snprintf(msg, len, "cannot connect to %s: %s", server, strerror(err));
    else
        return 0;
    return 1;
}

void ts_cli_print_connect_failure(FILE *out, const char *server, int err)
{
    char msg[384];
    if (err == TS_E_IO && ts_cli_explain_connect(server, 2000, msg, sizeof(msg)))
        fprintf(out, "error: %s\n", msg);
    else
        fprintf(out, "error: cannot connect to %s: %s (%s)\n", server, ts_err_message(err),
                ts_err_name(err));
}

/* ---- formatting ---------------------------------------------------------- */

void ts_cli_format_time(int64_t ms, char buf[32])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (ms < 0 || !gmtime_r(&t, &tm) || !strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(buf, 32, "%" PRId64 "ms", ms);
}

const char *ts_cli_status_name(int status)
{
    switch (status) {
    case THREADSYNC__STATUS__VISIBLE:
        return "VISIBLE";
    case THREADSYNC__STATUS__PENDING:
        return "PENDING";
    case THREADSYNC__STATUS__HIDDEN:
        return "HIDDEN";
    case THREADSYNC__STATUS__DELETED:
        return "DELETED";
    default:
        return "UNSPECIFIED";
    }
}

static const char *str_or_empty(const char *s)
{
    return s ? s : "";
}

void ts_cli_print_post(FILE *out, const Threadsync__PostResult *r, int json)
{
    if (json) {
        fputc('{', out);
        ts_json_kv_u64(out, "id", r->comment_id, 1);
        ts_json_kv_u64(out, "seq", r->seq, 0);
        ts_json_kv_u64(out, "thread_id", r->thread_id, 0);
        if (r->status && r->status != THREADSYNC__STATUS__VISIBLE)
            ts_json_kv_str(out, "status", ts_cli_status_name(r->status), 0);
        if (r->edit_key && *r->edit_key)
            ts_json_kv_str(out, "edit_key", r->edit_key, 0);
        fputs("}\n", out);
    } else {
        fprintf(out, "id=%" PRIu64 " seq=%" PRIu64, r->comment_id, r->seq);
        if (r->status && r->status != THREADSYNC__STATUS__VISIBLE)
            fprintf(out, " status=%s", ts_cli_status_name(r->status));
        if (r->edit_key && *r->edit_key)
            fprintf(out, " edit_key=%s", r->edit_key);
        fputc('\n', out);
    }
}

void ts_cli_json_thread_fields(FILE *out, const Threadsync__Thread *t, int first, int all)
{
    ts_json_kv_u64(out, "id", t->id, first);
    ts_json_kv_str(out, "key", t->key, 0);
    ts_json_kv_str(out, "title", t->title, 0);
    ts_json_kv_str(out, "url", t->url, 0);
    ts_json_kv_i64(out, "created_at_ms", t->created_at_ms, 0);
    ts_json_kv_bool(out, "locked", t->locked, 0);
    ts_json_kv_u64(out, "comment_count", t->comment_count, 0);
    ts_json_kv_u64(out, "version", t->version, 0);
    if (all || t->premoderated)
        ts_json_kv_bool(out, "premoderated", t->premoderated, 0);
    if (all || (t->moderated_by && *t->moderated_by))
        ts_json_kv_str(out, "moderated_by", t->moderated_by, 0);
}

void ts_cli_json_thread(FILE *out, const Threadsync__Thread *t)
{
    fputc('{', out);
    ts_cli_json_thread_fields(out, t, 1, 0);
    fputc('}', out);
}

void ts_cli_json_comment_fields(FILE *out, const Threadsync__Comment *cm, int first, int all,
                                int with_emails)
{
    ts_json_kv_u64(out, "id", cm->id, first);
    ts_json_kv_u64(out, "thread_id", cm->thread_id, 0);
    ts_json_kv_u64(out, "parent_id", cm->parent_id, 0);
    ts_json_kv_str(out, "author_name", cm->author_name, 0);
    if (with_emails && (all || (cm->author_email && *cm->author_email)))
        ts_json_kv_str(out, "author_email", cm->author_email, 0);
    ts_json_kv_str(out, "body", cm->body, 0);
    ts_json_kv_i64(out, "created_at_ms", cm->created_at_ms, 0);
    ts_json_kv_i64(out, "edited_at_ms", cm->edited_at_ms, 0);
    ts_json_kv_str(out, "status", ts_cli_status_name(cm->status), 0);
    ts_json_kv_u64(out, "version", cm->version, 0);
    if (all || (cm->moderated_by && *cm->moderated_by))
        ts_json_kv_str(out, "moderated_by", cm->moderated_by, 0);
    if (!all && cm->reader_key && *cm->reader_key)
        ts_json_kv_str(out, "reader_key", cm->reader_key, 0);
}

void ts_cli_json_comment(FILE *out, const Threadsync__Comment *cm)
{
    fputc('{', out);
    ts_cli_json_comment_fields(out, cm, 1, 0, 1);
    fputc('}', out);
}

static void indent(FILE *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        fputc(' ', out);
}

/* Replies deeper than this are printed at this depth, as the mirror's HTML
 * stops indenting (its DEEP_LEVEL): output stays proportional to the thread
 * (a 10,000-deep chain once printed 200 MB for 349 KB), and the line names
 * the parent so the structure is not lost. */
#define TEXT_DEPTH_MAX 8

static void print_comment_text(FILE *out, const Threadsync__Comment *cm, size_t depth)
{
    size_t shown_depth = depth < TEXT_DEPTH_MAX ? depth : TEXT_DEPTH_MAX;
    indent(out, 2 * shown_depth);
    fprintf(out, "#%" PRIu64, cm->id);
    if (depth > TEXT_DEPTH_MAX)
        fprintf(out, " (depth %zu, reply to #%" PRIu64 ")", depth, cm->parent_id);
    const char *name = str_or_empty(cm->author_name), *body = str_or_empty(cm->body);
    if (cm->status == THREADSYNC__STATUS__DELETED) {
        fputs(" [deleted]\n", out);
        return;
    }
    if (cm->status != THREADSYNC__STATUS__VISIBLE && !*name && !*body) {
        /* The public view of a hidden or pending comment: a placeholder. */
        fprintf(out, " [%s]\n", cm->status == THREADSYNC__STATUS__PENDING ? "pending" : "hidden");
        return;
    }
    char when[32];
    ts_cli_format_time(cm->created_at_ms, when);
    fprintf(out, " %s (%s)", name, when);
    if (cm->status != THREADSYNC__STATUS__VISIBLE)
        fprintf(out, " [%s]", cm->status == THREADSYNC__STATUS__PENDING ? "pending" : "hidden");
    fputc('\n', out);
    while (*body) {
        size_t n = strcspn(body, "\n");
        size_t shown = n;
        if (shown && body[shown - 1] == '\r')
            shown--;
        indent(out, 2 * shown_depth + 4);
        fwrite(body, 1, shown, out);
        fputc('\n', out);
        body += n;
        if (*body == '\n')
            body++;
    }
}

static int cmp_comment_id(const void *a, const void *b)
{
    const Threadsync__Comment *x = *(const Threadsync__Comment *const *)a;
    const Threadsync__Comment *y = *(const Threadsync__Comment *const *)b;
    return x->id < y->id ? -1 : x->id > y->id;
}

static void print_tree(FILE *out, const Threadsync__GetResult *g)
{
    const Threadsync__Thread *t = g->thread;
    const char *key = t ? str_or_empty(t->key) : "?";
    uint32_t count = t ? t->comment_count : 0;
    fputs(key, out);
    if (t && t->title && *t->title)
        fprintf(out, " \xe2\x80\x94 \"%s\"", t->title);
    fprintf(out, " \xe2\x80\x94 %u comment%s", count, count == 1 ? "" : "s");
    if (t && t->locked)
        fputs(" \xe2\x80\x94 locked", out);
    fputc('\n', out);

    size_t n = g->n_comments;
    if (n == 0)
        return;
    /* Sorted by id (the server sends them so; not trusted), then children
     * lists as first_child / next_sibling indices, built backwards so
     * siblings come out in id order. SIZE_MAX is "none". */
    const Threadsync__Comment **v = malloc(n * sizeof(*v));
    size_t *first = malloc(n * sizeof(*first)), *next = malloc(n * sizeof(*next));
    size_t *stack = malloc(n * sizeof(*stack)), *depth = malloc(n * sizeof(*depth));
    if (!v || !first || !next || !stack || !depth)
        goto out;
    for (size_t i = 0; i < n; i++) {
        v[i] = g->comments[i];
        first[i] = next[i] = SIZE_MAX;
    }
    qsort(v, n, sizeof(*v), cmp_comment_id);
    size_t roots = SIZE_MAX;
    for (size_t i = n; i-- > 0;) {
        size_t p = SIZE_MAX;
        if (v[i]->parent_id && v[i]->parent_id < v[i]->id) {
            Threadsync__Comment key_c = THREADSYNC__COMMENT__INIT;
            const Threadsync__Comment *kp = &key_c;
            key_c.id = v[i]->parent_id;
            const Threadsync__Comment **hit = bsearch(&kp, v, i, sizeof(*v), cmp_comment_id);
            if (hit)
                p = (size_t)(hit - v);
        }
        /* A parent that is missing (or not older than its reply) cannot
         * happen on a sane server; show the comment at the top rather than
         * lose it or loop. */
        size_t *head = p == SIZE_MAX ? &roots : &first[p];
        next[i] = *head;
        *head = i;
    }
    size_t sp = 0;
    for (size_t r = roots; r != SIZE_MAX; r = next[r]) {
        stack[sp] = r;
        depth[sp++] = 0;
        while (sp) {
            sp--;
            size_t i = stack[sp], d = depth[sp];
            print_comment_text(out, v[i], d);
            /* Push children in reverse so the first is printed first. */
            size_t base = sp;
            for (size_t ch = first[i]; ch != SIZE_MAX; ch = next[ch]) {
                stack[sp] = ch;
                depth[sp++] = d + 1;
            }
            for (size_t a = base, b = sp; b > a + 1; a++, b--) {
                size_t tmp = stack[a];
                stack[a] = stack[b - 1];
                stack[b - 1] = tmp;
                tmp = depth[a];
                depth[a] = depth[b - 1];
                depth[b - 1] = tmp;
            }
        }
    }
out:
    free(v);
    free(first);
    free(next);
    free(stack);
    free(depth);
}

void ts_cli_print_thread(FILE *out, const Threadsync__GetResult *g, int json)
{
    if (!json) {
        print_tree(out, g);
        return;
    }
    fputc('{', out);
    ts_json_key(out, "thread", 1);
    if (g->thread)
        ts_cli_json_thread(out, g->thread);
    else
        fputs("null", out);
    ts_json_key(out, "comments", 0);
    fputc('[', out);
    for (size_t i = 0; i < g->n_comments; i++) {
        if (i)
            fputc(',', out);
        ts_cli_json_comment(out, g->comments[i]);
    }
    fputc(']', out);
    ts_json_kv_u64(out, "seq", g->seq, 0);
    fputs("}\n", out);
}

/* A logfmt value: bare when it is a non-empty run of safe bytes, else a JSON
 * string. */
static void logfmt_value(FILE *out, const char *s)
{
    s = str_or_empty(s);
    int bare = *s != '\0';
    for (const unsigned char *p = (const unsigned char *)s; *p && bare; p++)
        bare = *p > 0x20 && *p != 0x7f && *p != '"' && *p != '\\' && *p != '=';
    if (bare)
        fputs(s, out);
    else
        ts_json_str(out, s);
}

void ts_cli_print_change(FILE *out, uint64_t seq, const char *thread_key,
                         const Threadsync__Thread *thread, const Threadsync__Comment *comment,
                         int snapshot, int json)
{
    if (!thread_key)
        thread_key = thread ? thread->key : "";
    if (json) {
        fputc('{', out);
        ts_json_kv_u64(out, "seq", seq, 1);
        ts_json_kv_bool(out, "snapshot", snapshot, 0);
        ts_json_kv_str(out, "thread_key", thread_key, 0);
        if (thread) {
            ts_json_key(out, "thread", 0);
            ts_cli_json_thread(out, thread);
        }
        if (comment) {
            ts_json_key(out, "comment", 0);
            ts_cli_json_comment(out, comment);
        }
        fputs("}\n", out);
        return;
    }
    fprintf(out, "seq=%" PRIu64 " thread=", seq);
    logfmt_value(out, thread_key);
    if (comment) {
        const char *body = str_or_empty(comment->body);
        size_t n = strcspn(body, "\n");
        if (n && body[n - 1] == '\r')
            n--;
        fprintf(out, " comment=%" PRIu64 " parent=%" PRIu64 " author=", comment->id,
                comment->parent_id);
        logfmt_value(out, comment->author_name);
        fprintf(out, " status=%s body=", ts_cli_status_name(comment->status));
        ts_json_strn(out, body, n);
    } else {
        fputs(" comment=0 title=", out);
        ts_json_str(out, thread ? thread->title : "");
        fprintf(out, " count=%u locked=%d", thread ? thread->comment_count : 0,
                thread && thread->locked ? 1 : 0);
    }
    if (snapshot)
        fputs(" snapshot=1", out);
    fputc('\n', out);
}

void ts_cli_print_events(FILE *out, const Threadsync__Events *ev, int json)
{
    for (size_t i = 0; i < ev->n_events; i++) {
        const Threadsync__Event *e = ev->events[i];
        ts_cli_print_change(out, e->seq, NULL, e->thread, e->comment, 0, json);
    }
}

/* ---- keymap: open addressing, linear probing, ids are never 0 ---------- */

struct ts_cli_keymap {
    uint64_t *ids;
    char **keys;
    size_t cap, n;
};

struct ts_cli_keymap *ts_cli_keymap_new(void)
{
    return calloc(1, sizeof(struct ts_cli_keymap));
}

void ts_cli_keymap_free(struct ts_cli_keymap *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->cap; i++)
        free(m->keys[i]);
    free(m->ids);
    free(m->keys);
    free(m);
}

static size_t slot_of(const struct ts_cli_keymap *m, uint64_t id)
{
    size_t i = (size_t)((id * 0x9e3779b97f4a7c15ull) >> 17) & (m->cap - 1);
    while (m->ids[i] && m->ids[i] != id)
        i = (i + 1) & (m->cap - 1);
    return i;
}

int ts_cli_keymap_put(struct ts_cli_keymap *m, uint64_t id, const char *key)
{
    if (id == 0)
        return TS_E_INVALID_ARGUMENT;
    if ((m->n + 1) * 2 > m->cap) {
        struct ts_cli_keymap g = {.cap = m->cap ? m->cap * 2 : 64};
        g.ids = calloc(g.cap, sizeof(*g.ids));
        g.keys = calloc(g.cap, sizeof(*g.keys));
        if (!g.ids || !g.keys) {
            free(g.ids);
            free(g.keys);
            return TS_E_NOMEM;
        }
        for (size_t i = 0; i < m->cap; i++) {
            if (!m->ids[i])
                continue;
            size_t s = slot_of(&g, m->ids[i]);
            g.ids[s] = m->ids[i];
            g.keys[s] = m->keys[i];
        }
        free(m->ids);
        free(m->keys);
        m->ids = g.ids;
        m->keys = g.keys;
        m->cap = g.cap;
    }
    char *copy = strdup(str_or_empty(key));
    if (!copy)
        return TS_E_NOMEM;
    size_t s = slot_of(m, id);
    if (m->ids[s])
        free(m->keys[s]);
    else
        m->n++;
    m->ids[s] = id;
    m->keys[s] = copy;
    return TS_OK;
}

const char *ts_cli_keymap_get(const struct ts_cli_keymap *m, uint64_t id)
{
    if (!m->cap || id == 0)
        return NULL;
    size_t s = slot_of(m, id);
    return m->ids[s] ? m->keys[s] : NULL;
}

void ts_cli_print_chunk(FILE *out, struct ts_cli_keymap *m, uint64_t seq,
                        const Threadsync__SnapshotChunk *chunk, int json)
{
    for (size_t i = 0; i < chunk->n_threads; i++) {
        const Threadsync__Thread *t = chunk->threads[i];
        ts_cli_keymap_put(m, t->id, t->key);
        ts_cli_print_change(out, seq, t->key, t, NULL, 1, json);
    }
    for (size_t i = 0; i < chunk->n_comments; i++) {
        const Threadsync__Comment *cm = chunk->comments[i];
        const char *key = ts_cli_keymap_get(m, cm->thread_id);
        ts_cli_print_change(out, seq, key ? key : "?", NULL, cm, 1, json);
    }
}

/* ---- moderation, edits, bans, tokens ---------------------------------------- */

void ts_cli_print_change_result(FILE *out, const Threadsync__ChangeResult *r, int json)
{
    const Threadsync__Thread *t = r->thread;
    const Threadsync__Comment *c = r->comment;
    if (json) {
        fputc('{', out);
        ts_json_kv_u64(out, "seq", r->seq, 1);
        ts_json_kv_bool(out, "changed", r->changed, 0);
        if (t) {
            ts_json_key(out, "thread", 0);
            ts_cli_json_thread(out, t);
        }
        if (c) {
            ts_json_key(out, "comment", 0);
            ts_cli_json_comment(out, c);
        }
        fputs("}\n", out);
        return;
    }
    fprintf(out, "seq=%" PRIu64 " changed=%d thread=", r->seq, r->changed ? 1 : 0);
    logfmt_value(out, t ? t->key : "?");
    if (c)
        fprintf(out, " comment=%" PRIu64 " status=%s version=%" PRIu64, c->id,
                ts_cli_status_name(c->status), c->version);
    else if (t)
        fprintf(out, " locked=%d premoderated=%d version=%" PRIu64, t->locked ? 1 : 0,
                t->premoderated ? 1 : 0, t->version);
    fprintf(out, " count=%u\n", t ? t->comment_count : 0);
}

static const char *thread_key_of(const Threadsync__PendingQueueResult *r, uint64_t id)
{
    for (size_t i = 0; i < r->n_threads; i++)
        if (r->threads[i]->id == id)
            return str_or_empty(r->threads[i]->key);
    return "?";
}

void ts_cli_print_pending(FILE *out, const Threadsync__PendingQueueResult *r, int json)
{
    if (json) {
        fputc('{', out);
        ts_json_key(out, "comments", 1);
        fputc('[', out);
        for (size_t i = 0; i < r->n_comments; i++) {
            if (i)
                fputc(',', out);
            ts_cli_json_comment(out, r->comments[i]);
        }
        fputc(']', out);
        ts_json_key(out, "threads", 0);
        fputc('[', out);
        for (size_t i = 0; i < r->n_threads; i++) {
            if (i)
                fputc(',', out);
            ts_cli_json_thread(out, r->threads[i]);
        }
        fputc(']', out);
        ts_json_kv_bool(out, "more", r->more, 0);
        ts_json_kv_u64(out, "seq", r->seq, 0);
        fputs("}\n", out);
        return;
    }
    fprintf(out, "%zu pending\n", r->n_comments);
    for (size_t i = 0; i < r->n_comments; i++) {
        const Threadsync__Comment *c = r->comments[i];
        char when[32];
        ts_cli_format_time(c->created_at_ms, when);
        fprintf(out, "#%" PRIu64 " ", c->id);
        logfmt_value(out, thread_key_of(r, c->thread_id));
        fprintf(out, " parent=%" PRIu64 " ", c->parent_id);
        logfmt_value(out, c->author_name);
        if (c->author_email && *c->author_email)
            fprintf(out, " <%s>", c->author_email);
        fprintf(out, " (%s)\n", when);
        const char *body = str_or_empty(c->body);
        while (*body) {
            size_t n = strcspn(body, "\n");
            fputs("    ", out);
            fwrite(body, 1, n && body[n - 1] == '\r' ? n - 1 : n, out);
            fputc('\n', out);
            body += n;
            if (*body == '\n')
                body++;
        }
    }
    if (r->more && r->n_comments)
        fprintf(out, "more after #%" PRIu64 "\n", r->comments[r->n_comments - 1]->id);
}

void ts_cli_print_ban(FILE *out, const Threadsync__BanResult *r, int json)
{
    char until[32] = "lifted";
    if (r->until_ms)
        ts_cli_format_time(r->until_ms, until);
    if (json) {
        fputc('{', out);
        ts_json_kv_str(out, "author", r->author, 1);
        ts_json_kv_i64(out, "until_ms", r->until_ms, 0);
        ts_json_kv_u64(out, "seq", r->seq, 0);
        fputs("}\n", out);
        return;
    }
    fputs("author=", out);
    logfmt_value(out, r->author);
    fprintf(out, " until=%s seq=%" PRIu64 "\n", until, r->seq);
}

static const char *role_word(int role)
{
    static const char *const names[] = {"unspecified", "reader", "poster", "moderator", "admin"};
    return role >= 0 && role <= 4 ? names[role] : names[0];
}

void ts_cli_print_token_add(FILE *out, const Threadsync__TokenAddResult *r, int json)
{
    if (json) {
        fputc('{', out);
        ts_json_kv_str(out, "name", r->name, 1);
        ts_json_kv_str(out, "role", role_word(r->role), 0);
        ts_json_kv_str(out, "token", r->token, 0);
        ts_json_kv_u64(out, "seq", r->seq, 0);
        ts_json_kv_bool(out, "gateway", r->gateway, 0);
        fputs("}\n", out);
        return;
    }
    fprintf(out, "name=%s role=%s token=%s%s\n", str_or_empty(r->name), role_word(r->role),
            str_or_empty(r->token), r->gateway ? " gateway" : "");
}

void ts_cli_print_token_list(FILE *out, const Threadsync__TokenListResult *r, int json)
{
    if (json)
        fputc('[', out);
    for (size_t i = 0; i < r->n_tokens; i++) {
        const Threadsync__TokenInfo *t = r->tokens[i];
        if (json) {
            fputs(i ? ",{" : "{", out);
            ts_json_kv_str(out, "name", t->name, 1);
            ts_json_kv_str(out, "role", role_word(t->role), 0);
            ts_json_kv_i64(out, "created_at_ms", t->created_at_ms, 0);
            ts_json_kv_str(out, "created_by", t->created_by, 0);
            ts_json_kv_bool(out, "from_file", t->from_file, 0);
            ts_json_kv_bool(out, "revoked", t->revoked, 0);
            ts_json_kv_bool(out, "gateway", t->gateway, 0);
            fputc('}', out);
            continue;
        }
        char when[32] = "-";
        if (t->created_at_ms)
            ts_cli_format_time(t->created_at_ms, when);
        fprintf(out, "%s %s %s %s", str_or_empty(t->name), role_word(t->role), when,
                t->from_file ? "file" : "replicated");
        if (t->created_by && *t->created_by)
            fprintf(out, " by=%s", t->created_by);
        if (t->gateway)
            fputs(" gateway", out);
        fputs(t->revoked ? " revoked\n" : "\n", out);
    }
    if (json)
        fputs("]\n", out);
}

void ts_cli_print_token_revoke(FILE *out, const Threadsync__TokenRevokeResult *r, int json)
{
    if (json) {
        fputc('{', out);
        ts_json_kv_str(out, "name", r->name, 1);
        ts_json_kv_bool(out, "changed", r->changed, 0);
        ts_json_kv_u64(out, "seq", r->seq, 0);
        fputs("}\n", out);
        return;
    }
    if (r->changed)
        fprintf(out, "revoked name=%s seq=%" PRIu64 "\n", str_or_empty(r->name), r->seq);
    else
        fprintf(out, "already revoked name=%s\n", str_or_empty(r->name));
}
