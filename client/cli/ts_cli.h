/*
 * ts_cli: the threadsync CLI's argument parsing and output formatting, kept
 * out of main.c so they can be unit-tested without a server.
 *
 *   threadsync [common options] COMMAND [options]
 *
 * Options may come before or after the command. One parser serves every
 * command (web parses its own listener options, then this for the rest):
 * the common options (--server/THREADSYNC_SERVER, --ca/THREADSYNC_CA,
 * --token-file/THREADSYNC_TOKEN_FILE, --json, --timeout) are resolved once,
 * here, and main builds one client config from them.
 *
 * Adding a command: a value in enum ts_cli_cmd, a row in ts_cli.c's
 * cmd_defs (its words; an admin sub-command names its second word), the
 * bits of the options it takes in opt_defs, its word checks in check_args
 * when it takes arguments, and a row in main.c's commands[] naming the
 * function that runs it with the parsed options and the client config.
 *
 * Output formats:
 *   post   text: "id=<id> seq=<seq>[ status=PENDING] edit_key=<key>"; JSON:
 *          {"id":..,"seq":..,"thread_id":..[,"status":..],"edit_key":..}
 *   get    text: a header line "<key> — "<title>" — <n> comments", then each
 *          comment at two spaces per depth: "#<id> <author> (<UTC time>)",
 *          its body lines four spaces deeper than that line, replies below;
 *          a deleted comment as "#<id> [deleted]" with its replies kept.
 *          JSON: {"thread":{..},"comments":[..],"seq":..}
 *   watch  text: one line per comment: "seq=<seq> thread=<key> comment=<id>
 *          parent=<id> author=<name> status=<STATUS> body=<first line as a
 *          JSON string>", " snapshot=1" appended for snapshot content; a
 *          change to a thread alone: "seq=<seq> thread=<key> comment=0
 *          title=<t> count=<n> locked=<0|1>". Key and author are written bare
 *          when they hold no space, quote, backslash or '=', else quoted.
 *          JSON: one object per line {"seq":..,"snapshot":bool,
 *          "thread_key":..,["thread":{..}],["comment":{..}]}.
 * Times are UTC, ISO 8601 to the second: 2024-05-01T12:00:00Z.
 */
#ifndef TS_CLI_H
#define TS_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "threadsync.pb-c.h"

#define TS_CLI_DEFAULT_SERVER "127.0.0.1:7420"
#define TS_CLI_DEFAULT_CA "./threadsync-data/ca.pem"
#define TS_CLI_DEFAULT_TOKEN_FILE "./threadsync-data/admin.token"
#define TS_CLI_DEFAULT_TIMEOUT_S 30
#define TS_CLI_IDEM_KEY_MAX 64
#define TS_CLI_IMPORT_BATCH_MAX 1000 /* comments per Import request (and the default) */
#define TS_CLI_IMPORT_SOURCE_MAX 64  /* import --source */
#define TS_CLI_EXPORT_KEYS_MAX 1024  /* export --thread keys */

enum ts_cli_exit {
    TS_CLI_EXIT_OK = 0,
    TS_CLI_EXIT_REFUSED = 1, /* the server answered with an Error */
    TS_CLI_EXIT_USAGE = 2,
    TS_CLI_EXIT_CONN = 3, /* connection, TLS or local setup failure */
};

enum ts_cli_cmd {
    TS_CLI_CMD_NONE = 0,
    TS_CLI_CMD_POST,
    TS_CLI_CMD_GET,
    TS_CLI_CMD_WATCH,
    TS_CLI_CMD_MIRROR,
    TS_CLI_CMD_VERIFY,
    TS_CLI_CMD_MODERATE,    /* ACTION [ID] */
    TS_CLI_CMD_EDIT,        /* ID */
    TS_CLI_CMD_DELETE,      /* ID */
    TS_CLI_CMD_IMPORT,      /* --format F FILE (ts_cli_import.h) */
    TS_CLI_CMD_EXPORT,      /* --format jsonl --all|--thread (ts_cli_export.h) */
    TS_CLI_CMD_ADMIN,       /* token add|list|revoke [NAME] */
    TS_CLI_CMD_BACKUP,      /* admin backup --out FILE (ts_cli_backup.h) */
    TS_CLI_CMD_DIGEST,      /* admin digest */
    TS_CLI_CMD_CLUSTER,     /* admin cluster (ts_cli_cluster.h) */
    TS_CLI_CMD_REMOVE_NODE, /* admin remove-node ID */
    TS_CLI_CMD_AUDIT,       /* admin audit (ts_cli_audit.h) */
    TS_CLI_CMD_COUNT,
};

/* moderate's first word. */
enum ts_cli_mod {
    TS_CLI_MOD_NONE = 0,
    TS_CLI_MOD_APPROVE, /* = ModerationAction values 1..4 */
    TS_CLI_MOD_HIDE,
    TS_CLI_MOD_UNHIDE,
    TS_CLI_MOD_DELETE,
    TS_CLI_MOD_LOCK, /* = ThreadAction values 1..4, plus 4 */
    TS_CLI_MOD_UNLOCK,
    TS_CLI_MOD_PREMODERATE,
    TS_CLI_MOD_POSTMODERATE,
    TS_CLI_MOD_QUEUE,
    TS_CLI_MOD_BAN,
};

/* admin token's word. */
enum ts_cli_token_op {
    TS_CLI_TOKEN_NONE = 0,
    TS_CLI_TOKEN_ADD,
    TS_CLI_TOKEN_LIST,
    TS_CLI_TOKEN_REVOKE
};

/* Strings are borrowed from argv, the environment or static defaults unless
 * said otherwise; free with ts_cli_opts_free(). */
struct ts_cli_opts {
    enum ts_cli_cmd cmd;
    int help;
    int json;
    char **servers; /* owned, each owned: --server, else $THREADSYNC_SERVER
                     * (comma-separated), else the default */
    size_t n_servers;
    const char *ca_file;
    const char *token_file;
    const char **threads; /* owned array: every --thread, in order */
    size_t n_threads;
    uint64_t parent;
    const char *name, *email, *title, *url, *body, *body_file;
    uint64_t since;
    const char *dir; /* mirror, verify: the mirror directory */
    int all;         /* mirror, verify: every thread (the default without --thread) */
    int once;        /* mirror: stop once caught up */
    /* moderate, edit, delete, admin */
    const char *args[4]; /* words after the command, in order */
    size_t n_args;
    enum ts_cli_mod mod;
    enum ts_cli_token_op token_op;
    uint64_t id;          /* the comment ID argument */
    const char *edit_key; /* --edit-key */
    const char *author;   /* --author (ban) */
    uint64_t duration_s;  /* --duration (ban, seconds; 0 lifts) */
    int duration_set;
    int role;               /* --role (admin token add), a Threadsync__Role */
    int gateway;            /* --gateway (admin token add): may send reader keys */
    const char *token_name; /* admin token add --name / revoke NAME */
    uint64_t timeout_s;     /* --timeout, else TS_CLI_DEFAULT_TIMEOUT_S */
    unsigned timeout_ms;    /* admin backup/digest, import --timeout-ms (older spelling), or 0 */
    const char *out;        /* admin backup, export --out */
    uint64_t node_id;       /* admin remove-node ID */
    uint64_t comment_id;    /* admin audit --comment */
    uint64_t after_seq;     /* admin audit --after */
    const char *idempotency_key; /* post --idempotency-key, or NULL */
    /* import, export */
    const char *format;   /* --format: import wordpress|disqus|jsonl, export jsonl */
    const char *file;     /* import FILE ("-": standard input) */
    const char *key_from; /* import --key-from path|slug|id, or NULL (path) */
    const char *source;   /* import --source, or NULL (the format's name) */
    size_t batch_size;    /* import --batch-size, else 1000 */
    int with_pingbacks, strict, renumber, quiet; /* import's flags */
    int with_emails;                             /* export --with-emails */
};

typedef char *(*ts_cli_getenv_fn)(const char *name);

/* Parses argv[1..argc). get_env is getenv or a test's stand-in. TS_OK, or
 * TS_E_INVALID_ARGUMENT with a one-line reason in err (exit code 2), or
 * TS_E_NOMEM. With --help anywhere, TS_OK and o->help set (other checks
 * skipped). o is always left safe to pass to ts_cli_opts_free(). */
int ts_cli_parse(int argc, char *const argv[], ts_cli_getenv_fn get_env, struct ts_cli_opts *o,
                 char *err, size_t errlen);
void ts_cli_opts_free(struct ts_cli_opts *o);

void ts_cli_usage(FILE *out);

/* What a local failure message is about: "<what> (<server>,<server>...)"
 * into buf (truncated to len). */
void ts_cli_context(char *buf, size_t len, const char *what, const struct ts_cli_opts *o);

/* The command's words as typed ("post", "admin backup"). */
const char *ts_cli_cmd_name(enum ts_cli_cmd cmd);

/* Reads the token: the file's first line without its line end. *out is
 * malloc'd (caller frees). TS_E_IO (reason in err) when unreadable or
 * empty. */
int ts_cli_read_token(const char *path, char **out, char *err, size_t errlen);

/* Reads a whole stream into a malloc'd NUL-terminated buffer (caller frees).
 * TS_E_IO / TS_E_NOMEM / TS_E_TOO_LARGE (above limit bytes). */
int ts_cli_read_all(FILE *in, size_t limit, char **out, size_t *len);

/* The exit code for an error code: 0 for TS_OK, 1 for protocol codes
 * (1..12, the server refused), 3 for local ones (connection, TLS...). */
int ts_cli_exit_code(int err);

/* Prints to out (stderr) "error: <CODE_NAME>[ field=<f>]: <message>" for a
 * protocol code (message from detail, or the code's text when none), or
 * "error: <context>: <text> (<CODE_NAME>)" for a local one. */
void ts_cli_print_error(FILE *out, int err, const Threadsync__Error *detail, const char *context);

/* After a connection failure (TS_E_IO), says why for people: tries one TCP
 * connect to server ("host:port", numeric) and, when it fails, writes e.g.
 * "connection refused: is threadsyncd running on 127.0.0.1:7420?" into
 * msg and returns 1. Returns 0 when the connect succeeds (the failure was
 * above TCP) or server is not numeric. Blocks at most timeout_ms. */
int ts_cli_explain_connect(const char *server, int timeout_ms, char *msg, size_t len);

/* "error: connection refused: is threadsyncd running on HOST:PORT?" (or
 * what else TCP said) for a TS_E_IO connection failure to server, else
 * "error: cannot connect to <server>: <text> (<CODE>)". */
void ts_cli_print_connect_failure(FILE *out, const char *server, int err);

/* Writes ms since the epoch as 2024-05-01T12:00:00Z into buf. */
void ts_cli_format_time(int64_t ms, char buf[32]);

/* "VISIBLE", "DELETED"...; "UNSPECIFIED" for unknown values. */
const char *ts_cli_status_name(int status);

/* post: "id=<id> seq=<seq>[ status=PENDING][ edit_key=<key>]"; JSON adds
 * "status" and "edit_key" likewise. */
void ts_cli_print_post(FILE *out, const Threadsync__PostResult *r, int json);

/* moderate approve|hide|unhide|delete|lock|..., edit, delete:
 *   "seq=<seq> changed=<0|1> thread=<key> comment=<id> status=<STATUS>
 *    version=<v> count=<n>" (thread changes: "... thread=<key> locked=<0|1>
 *    premoderated=<0|1> version=<v> count=<n>");
 *   JSON {"seq":..,"changed":..,"thread":{..}[,"comment":{..}]}. */
void ts_cli_print_change_result(FILE *out, const Threadsync__ChangeResult *r, int json);

/* moderate queue: "<n> pending" then each comment as "#<id> <key>
 * parent=<p> <author> <email> (<time>)" with its body indented 4 spaces;
 * "more after #<id>" when there are more. JSON {"comments":[..],
 * "threads":[..],"more":..,"seq":..}. */
void ts_cli_print_pending(FILE *out, const Threadsync__PendingQueueResult *r, int json);

/* moderate ban: "author=<a> until=<UTC time>|lifted seq=<seq>". */
void ts_cli_print_ban(FILE *out, const Threadsync__BanResult *r, int json);

/* admin token add: "name=<n> role=<role> token=<token>"; list: one line per
 * token "<name> <role> <created UTC time or -> file|replicated[ by=<n>]
 * [ revoked]"; revoke: "revoked name=<n> seq=<seq>" or "already revoked
 * name=<n>". JSON objects with the same fields. */
void ts_cli_print_token_add(FILE *out, const Threadsync__TokenAddResult *r, int json);
void ts_cli_print_token_list(FILE *out, const Threadsync__TokenListResult *r, int json);
void ts_cli_print_token_revoke(FILE *out, const Threadsync__TokenRevokeResult *r, int json);
void ts_cli_print_thread(FILE *out, const Threadsync__GetResult *g, int json);

/* JSON objects for one thread / comment (no trailing newline). */
void ts_cli_json_thread(FILE *out, const Threadsync__Thread *t);
void ts_cli_json_comment(FILE *out, const Threadsync__Comment *cm);

/* Their members alone (the first one comma-prefixed unless first), for
 * objects that carry more (export's lines). all: every field, also the
 * empty ones (export's lossless form; no reader_key), else the optional
 * ones only when set; with_emails: author_email too. */
void ts_cli_json_thread_fields(FILE *out, const Threadsync__Thread *t, int first, int all);
void ts_cli_json_comment_fields(FILE *out, const Threadsync__Comment *cm, int first, int all,
                                int with_emails);

/* One watch line (see above) for a change: thread may be NULL when comment
 * is set (thread_key then names it), comment NULL for a thread-only one. */
void ts_cli_print_change(FILE *out, uint64_t seq, const char *thread_key,
                         const Threadsync__Thread *thread, const Threadsync__Comment *comment,
                         int snapshot, int json);
void ts_cli_print_events(FILE *out, const Threadsync__Events *ev, int json);

/* Thread id -> key, so snapshot comments (which carry only thread_id) can
 * be printed with their key. Keys are copied. */
struct ts_cli_keymap;
struct ts_cli_keymap *ts_cli_keymap_new(void);
void ts_cli_keymap_free(struct ts_cli_keymap *m);
int ts_cli_keymap_put(struct ts_cli_keymap *m, uint64_t id, const char *key);
/* The key, or NULL; valid until the map changes. */
const char *ts_cli_keymap_get(const struct ts_cli_keymap *m, uint64_t id);

/* Prints a snapshot chunk's threads and comments as of seq, recording its
 * threads in m. */
void ts_cli_print_chunk(FILE *out, struct ts_cli_keymap *m, uint64_t seq,
                        const Threadsync__SnapshotChunk *chunk, int json);

#endif
