/*
 * ts_config: see ts_config.h. One table (opts[]) describes every setting:
 * its section and key, its flag, how it is validated, its default as the
 * operator reads it, whether SIGHUP can apply it, and where it lands in
 * struct ts_server_config. The file reader, the flag parser, the printer and
 * the usage text all walk that table, so a new setting is one row.
 *
 * Values are kept as validated text (val[]) with their source; the
 * ts_server_config view is rebuilt from the text after every change, so the
 * text is the single truth and printing shows exactly what runs.
 *
 * Line numbers: inih (Debian builds it without INI_HANDLER_LINENO) does not
 * pass them to the handler, so the file is fed through our own fgets-style
 * reader, which counts physical lines and catches lines longer than inih's
 * 200-byte buffer (inih would silently parse the tail as a line of its own).
 */
#include "ts_config.h"

#include "ts_addr.h"
#include "ts_err.h"
#include "ts_frame.h"
#include "ts_link.h"
#include "ts_log.h"

#include <errno.h>
#include <getopt.h>
#include <ini.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum opt_type {
    T_PATH, /* non-empty text */
    T_BIND, /* host:port with a numeric host: something we bind */
    /* T_BIND, or "" for "off" */
    T_BIND_OFF,
    T_ADDR, /* host:port, host may be a name */
    T_UINT, /* decimal in [min, max] */
    T_LEVEL,
    T_BOOL,    /* true/false in a file; a flag without a value sets true */
    T_LIMIT,   /* decimal in [min, max], or "off"; "off" and 0 are TS_SERVER_UNLIMITED */
    T_THREADS, /* "auto" (0 in the field), or 0 (TS_SERVER_IO_INLINE) .. max */
    T_RATE,    /* "N/TIME" (TIME: ms, s or m; plain = s) or "off": fills the
                  burst field named and the uint32 window_ms field after it */
};

#define LIVE 1u   /* SIGHUP applies it */
#define SECRET 2u /* never printed or logged */
#define NO_FIELD SIZE_MAX

/* Field order follows the positional rows of opts[]; the padding is 8 bytes a row. */
/* NOLINTNEXTLINE(clang-analyzer-optin.performance.Padding) */
struct opt {
    const char *section, *key, *flag, *arg;
    enum opt_type type;
    uint64_t min, max;
    size_t off, size; /* in struct ts_server_config; NO_FIELD for log.level */
    unsigned attr;
    const char *dflt; /* as printed; NULL: no value, the help says what happens */
    const char *help;
};

#define F(field)                                                                                   \
    offsetof(struct ts_server_config, field), sizeof(((struct ts_server_config *)0)->field)

/* The order is the order of the sample config and of --check-config. */
static const struct opt opts[] = {
    {"node", "id", "node-id", "N", T_UINT, 1, UINT64_MAX, F(node_id), 0, "1",
     "this node's id in its cluster"},
    {"node", "data_dir", "data-dir", "DIR", T_PATH, 0, 0, F(data_dir), 0, "threadsync-data",
     "data directory: identity files, tokens, raft log and snapshots"},
    {"listen", "client", "listen", "HOST:PORT", T_BIND, 0, 0, F(listen), 0, "127.0.0.1:7420",
     "client listener, numeric host; port 0 lets the kernel pick"},
    {"listen", "raft", "raft-listen", "HOST:PORT", T_ADDR, 0, 0, F(raft_listen), 0,
     "127.0.0.1:7421", "raft listener"},
    {"listen", "advertise", "advertise", "HOST:PORT", T_ADDR, 0, 0, F(advertise), 0, NULL,
     "client address told to clients (default: the bound client address)"},
    {"listen", "addr_file", "addr-file", "FILE", T_PATH, 0, 0, F(addr_file), 0, NULL,
     "write the bound client address to FILE once listening (default: none)"},
    {"listen", "io_threads", "io-threads", "N", T_THREADS, 0, TS_LINK_THREADS_MAX, F(io_threads), 0,
     "auto",
     "threads carrying client connections (sockets, TLS), each with its own loop; 0 = none, "
     "all on the main loop; auto = one per core beyond the first, at most 4"},
    {"tls", "cert", "cert", "FILE", T_PATH, 0, 0, F(cert_file), 0, NULL,
     "server certificate chain, PEM (default: DATA_DIR/server.pem, generated)"},
    {"tls", "key", "key", "FILE", T_PATH, 0, 0, F(key_file), 0, NULL,
     "server private key, PEM (default: DATA_DIR/server.key, generated)"},
    {"tls", "ca", "ca", "FILE", T_PATH, 0, 0, F(ca_file), 0, NULL,
     "cluster CA for raft's mutual TLS (default: DATA_DIR/ca.pem)"},
    {"auth", "tokens", "tokens", "FILE", T_PATH, 0, 0, F(tokens_file), LIVE, NULL,
     "tokens file, lines ROLE NAME SHA256HEX (default: DATA_DIR/tokens, admin token "
     "generated)"},
    {"limits", "max_frame", "max-frame", "BYTES", T_UINT, TS_FRAME_MAX_PREAUTH, TS_FRAME_MAX_LIMIT,
     F(max_frame), LIVE, "1048576", "largest frame a client may send after the handshake"},
    {"limits", "heartbeat_ms", "heartbeat-ms", "MS", T_UINT, 50, 3600000, F(heartbeat_ms), LIVE,
     "10000", "heartbeat interval; peers silent for 3 intervals are dropped"},
    {"limits", "evlog_max_events", "evlog-max-events", "N", T_UINT, 1, SIZE_MAX,
     F(evlog_max_events), 0, "1000000", "events retained for subscribers"},
    {"limits", "evlog_max_bytes", "evlog-max-bytes", "BYTES", T_UINT, 1, SIZE_MAX,
     F(evlog_max_bytes), 0, "536870912", "bytes of events retained for subscribers"},
    {"raft", "snapshot_threshold", "snapshot-threshold", "N", T_UINT, 1, UINT32_MAX,
     F(snapshot_threshold), 0, "8192",
     "raft entries between snapshots, at least (more as the state grows)"},
    {"raft", "snapshot_trailing", "snapshot-trailing", "N", T_UINT, 1, UINT32_MAX,
     F(snapshot_trailing), 0, "2048", "raft entries kept after a snapshot"},
    {"raft", "disk_reserve", "disk-reserve", "BYTES", T_UINT, 1, UINT64_MAX, F(disk_reserve), 0,
     "8388608",
     "free space kept on the data directory's file system beyond the next log segment (8 MiB) "
     "and snapshot; below it writes are refused with UNAVAILABLE"},
    {"raft", "election_timeout_ms", "election-timeout-ms", "MS", T_UINT, 200, 600000,
     F(election_timeout_ms), 0, "1000", "raft election timeout"},
    {"cluster", "join", "join", "HOST:PORT", T_ADDR, 0, 0, F(join), 0, NULL,
     "join the cluster of the member with this client address (later starts: check "
     "that the cluster still lists this node)"},
    {"cluster", "join_token_file", "join-token-file", "FILE", T_PATH, 0, 0, F(join_token_file), 0,
     NULL, "admin token used by --join (default: DATA_DIR/admin.token)"},
    {"cluster", "read_replica", "read-replica", NULL, T_BOOL, 0, 0, F(read_replica), 0, "false",
     "with --join: join as a read replica (replicates the log, serves reads and subscriptions, "
     "never votes or counts for quorum)"},
    {"moderation", "premoderate", "premoderate", NULL, T_BOOL, 0, 0, F(premoderate), 0, "false",
     "every new comment starts PENDING until a moderator approves it"},
    {"moderation", "edit_window_ms", "edit-window-ms", "MS", T_UINT, 1, 24ull * 3600 * 1000,
     F(edit_window_ms), 0, "900000", "authors may edit or delete their comment for this long"},
    {"limits", "rate_author", "rate-author", "N/TIME", T_RATE, 0, 0, F(rate_author_burst), 0,
     "10/10s", "posts per author (e-mail, or name) per window, or off"},
    {"limits", "rate_token", "rate-token", "N/TIME", T_RATE, 0, 0, F(rate_token_burst), 0, "100/1s",
     "posts per token per window, or off"},
    {"limits", "max_conns_per_addr", "max-conns-per-addr", "N", T_LIMIT, 0, UINT32_MAX - 1,
     F(max_conns_per_addr), 0, "64", "open connections per source address; 0 or off = unlimited"},
    {"limits", "conn_output_budget", "conn-output-budget", "BYTES", T_UINT, 64u << 10, 32u << 20,
     F(conn_output_budget), 0, "2097152",
     "output a connection may have queued before its requests wait until it drains"},
    {"limits", "node_output_budget", "node-output-budget", "BYTES", T_UINT, 1u << 20, 1ull << 40,
     F(node_output_budget), 0, "67108864",
     "output queued over all connections before those holding output wait (all at twice it)"},
    {"metrics", "listen", "metrics-listen", "HOST:PORT", T_BIND_OFF, 0, 0, F(metrics_listen), 0,
     "127.0.0.1:7422",
     "HTTP listener for /metrics and /healthz, numeric host; \"\" turns it off (the default "
     "is skipped with a warning when taken; an address given must bind)"},
    {"log", "level", "log-level", "LEVEL", T_LEVEL, 0, 0, NO_FIELD, 0, LIVE, "info",
     "error, warn, info or debug"},
};
#define N_OPT (sizeof(opts) / sizeof(opts[0]))

static const char *const sections[] = {"node",    "listen", "tls",     "auth",       "limits",
                                       "metrics", "raft",   "cluster", "moderation", "log"};

struct ts_config {
    char *path;
    char *val[N_OPT]; /* NULL: default */
    char *restore;    /* --restore FILE: a flag only, not a setting */
    enum ts_config_source src[N_OPT];
    struct ts_server_config srv;
    char err[TS_CONFIG_ERR_MAX];
};

/* ---- errors ---- */

static void add_err(struct ts_config *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void add_err(struct ts_config *c, const char *fmt, ...)
{
    size_t len = strlen(c->err);
    if (len + 2 >= sizeof(c->err))
        return;
    if (len)
        c->err[len++] = '\n';
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err + len, sizeof(c->err) - len, fmt, ap);
    va_end(ap);
}

const char *ts_config_error(const struct ts_config *c)
{
    return c->err;
}

/* ---- the table ---- */

static int find_opt(const char *section, const char *key)
{
    for (size_t i = 0; i < N_OPT; i++)
        if (!strcmp(opts[i].section, section) && !strcmp(opts[i].key, key))
            return (int)i;
    return -1;
}

const char *ts_config_default(const char *section, const char *key)
{
    int i = find_opt(section, key);
    return i < 0 ? NULL : opts[i].dflt;
}

uint64_t ts_config_default_uint(const char *section, const char *key)
{
    const char *d = ts_config_default(section, key);
    return d ? strtoull(d, NULL, 10) : 0;
}

static int section_known(const char *section)
{
    for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++)
        if (!strcmp(sections[i], section))
            return 1;
    return 0;
}

/* Levenshtein distance, capped: keys are short, this runs only on errors. */
static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 40 || lb > 40)
        return 99;
    size_t row[41];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (row[j] + 1 < best)
                best = row[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* The closest known key of section, or NULL when nothing is close. */
static const char *suggest_key(const char *section, const char *key)
{
    const char *best = NULL;
    size_t best_d = 3;
    for (size_t i = 0; i < N_OPT; i++) {
        if (strcmp(opts[i].section, section) != 0)
            continue;
        size_t d = distance(opts[i].key, key);
        if (d < best_d) {
            best_d = d;
            best = opts[i].key;
        }
    }
    return best;
}

/* ---- values ---- */

static int parse_uint(const char *s, uint64_t *out)
{
    if (*s < '0' || *s > '9')
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || errno == ERANGE)
        return -1;
    *out = v;
    return 0;
}

/* "N/TIME" or "off" (see T_RATE); -1 when malformed. */
static int parse_rate(const char *s, uint32_t *burst, uint32_t *window_ms)
{
    if (strcmp(s, "off") == 0) {
        *burst = TS_SERVER_UNLIMITED;
        *window_ms = 0;
        return 0;
    }
    char *end;
    unsigned long n = strtoul(s, &end, 10);
    if (end == s || *s < '0' || *s > '9' || *end != '/' || n == 0 || n >= TS_SERVER_UNLIMITED)
        return -1;
    const char *t = end + 1;
    if (*t < '0' || *t > '9')
        return -1;
    unsigned long long w = strtoull(t, &end, 10);
    if (w == 0)
        return -1;
    if (strcmp(end, "m") == 0)
        w *= 60000;
    else if (*end == '\0' || strcmp(end, "s") == 0)
        w *= 1000;
    else if (strcmp(end, "ms") != 0)
        return -1;
    if (w > 24ull * 3600 * 1000)
        return -1;
    *burst = (uint32_t)n;
    *window_ms = (uint32_t)w;
    return 0;
}

/* 0 when value is valid for o; otherwise -1 with the reason in why. */
static int check_value(const struct opt *o, const char *value, char *why, size_t n)
{
    char host[256];
    uint16_t port;
    struct sockaddr_storage ss;
    uint64_t v;
    switch (o->type) {
    case T_PATH:
        if (!*value || strlen(value) >= 4096) {
            snprintf(why, n, "need a non-empty path");
            return -1;
        }
        return 0;
    case T_ADDR:
        if (ts_addr_parse(value, host, sizeof(host), &port) != TS_OK) {
            snprintf(why, n, "need HOST:PORT");
            return -1;
        }
        return 0;
    case T_BIND_OFF:
        if (!*value)
            return 0;
        /* fall through */
    case T_BIND:
        if (ts_addr_parse(value, host, sizeof(host), &port) != TS_OK ||
            ts_addr_numeric(host, port, &ss) != TS_OK) {
            snprintf(why, n, "need a numeric HOST:PORT (e.g. 127.0.0.1:7420, [::]:7420)");
            return -1;
        }
        return 0;
    case T_UINT:
        if (parse_uint(value, &v) != 0 || v < o->min || v > o->max) {
            snprintf(why, n, "need an integer in %llu..%llu", (unsigned long long)o->min,
                     (unsigned long long)o->max);
            return -1;
        }
        return 0;
    case T_LEVEL:
        if (strcmp(value, "error") != 0 && strcmp(value, "warn") != 0 &&
            strcmp(value, "info") != 0 && strcmp(value, "debug") != 0) {
            snprintf(why, n, "need one of error, warn, info, debug");
            return -1;
        }
        return 0;
    case T_BOOL:
        if (strcmp(value, "true") != 0 && strcmp(value, "false") != 0) {
            snprintf(why, n, "need true or false");
            return -1;
        }
        return 0;
    case T_LIMIT:
        if (strcmp(value, "off") != 0 && (parse_uint(value, &v) != 0 || v < o->min || v > o->max)) {
            snprintf(why, n, "need off or an integer in %llu..%llu", (unsigned long long)o->min,
                     (unsigned long long)o->max);
            return -1;
        }
        return 0;
    case T_THREADS:
        if (strcmp(value, "auto") != 0 &&
            (parse_uint(value, &v) != 0 || v < o->min || v > o->max)) {
            snprintf(why, n, "need auto or an integer in %llu..%llu", (unsigned long long)o->min,
                     (unsigned long long)o->max);
            return -1;
        }
        return 0;
    case T_RATE: {
        uint32_t burst, window;
        if (parse_rate(value, &burst, &window) != 0) {
            snprintf(why, n, "need N/TIME (e.g. 10/10s, 100/1s, 5/1m, 500/250ms) or off");
            return -1;
        }
        return 0;
    }
    }
    return -1;
}

static const char *shown(const struct opt *o, const char *value)
{
    return (o->attr & SECRET) ? "********" : value;
}

/* Rebuilds c->srv from the validated text. */
static void rebuild(struct ts_config *c)
{
    memset(&c->srv, 0, sizeof(c->srv));
    for (size_t i = 0; i < N_OPT; i++) {
        const struct opt *o = &opts[i];
        if (o->off == NO_FIELD || !c->val[i])
            continue;
        char *field = (char *)&c->srv + o->off;
        if (o->type == T_BOOL) {
            int b = strcmp(c->val[i], "true") == 0;
            memcpy(field, &b, sizeof(b));
            continue;
        }
        if (o->type == T_RATE) {
            uint32_t burst = 0, window = 0;
            parse_rate(c->val[i], &burst, &window); /* validated when set */
            memcpy(field, &burst, sizeof(burst));
            memcpy(field + sizeof(burst), &window, sizeof(window));
            continue;
        }
        if (o->type == T_THREADS) {
            uint32_t v32 = 0; /* auto */
            if (strcmp(c->val[i], "auto") != 0) {
                uint64_t v = 0;
                parse_uint(c->val[i], &v); /* validated when set */
                v32 = v == 0 ? TS_SERVER_IO_INLINE : (uint32_t)v;
            }
            memcpy(field, &v32, sizeof(v32));
            continue;
        }
        if (o->type != T_UINT && o->type != T_LIMIT) {
            const char *s = c->val[i];
            memcpy(field, &s, sizeof(s));
            continue;
        }
        uint64_t v = TS_SERVER_UNLIMITED;
        if (strcmp(c->val[i], "off") != 0)
            parse_uint(c->val[i], &v); /* validated when set */
        if (o->type == T_LIMIT && v == 0)
            v = TS_SERVER_UNLIMITED; /* 0 in a field would mean the default */
        if (o->size == sizeof(uint64_t)) {
            memcpy(field, &v, sizeof(v));
        } else {
            uint32_t v32 = (uint32_t)v; /* max fits: the table's max for 4-byte fields */
            memcpy(field, &v32, sizeof(v32));
        }
    }
    c->srv.restore_file = c->restore;
}

static int store(struct ts_config *c, size_t i, const char *value, enum ts_config_source src)
{
    char *copy = value ? strdup(value) : NULL;
    if (value && !copy)
        return TS_E_NOMEM;
    free(c->val[i]);
    c->val[i] = copy;
    c->src[i] = value ? src : TS_CONFIG_DEFAULT;
    rebuild(c);
    return TS_OK;
}

/* ---- public: basics ---- */

struct ts_config *ts_config_new(void)
{
    return calloc(1, sizeof(struct ts_config));
}

void ts_config_free(struct ts_config *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < N_OPT; i++)
        free(c->val[i]);
    free(c->path);
    free(c->restore);
    free(c);
}

int ts_config_set(struct ts_config *c, const char *section, const char *key, const char *value,
                  enum ts_config_source src)
{
    c->err[0] = '\0';
    int i = find_opt(section, key);
    if (i < 0) {
        add_err(c, "unknown key [%s] %s", section, key);
        return TS_E_NOT_FOUND;
    }
    char why[128];
    if (check_value(&opts[i], value, why, sizeof(why)) != 0) {
        add_err(c, "[%s] %s: bad value '%s': %s", section, key, shown(&opts[i], value), why);
        return TS_E_INVALID_ARGUMENT;
    }
    return store(c, (size_t)i, value, src);
}

const struct ts_server_config *ts_config_server(const struct ts_config *c)
{
    return &c->srv;
}

const char *ts_config_log_level(const struct ts_config *c)
{
    int i = find_opt("log", "level");
    return c->val[i] ? c->val[i] : opts[i].dflt;
}

const char *ts_config_path(const struct ts_config *c)
{
    return c->path;
}

const char *ts_config_get(const struct ts_config *c, const char *section, const char *key,
                          enum ts_config_source *src)
{
    int i = find_opt(section, key);
    if (src)
        *src = i < 0 ? TS_CONFIG_DEFAULT : c->src[i];
    return i < 0 ? NULL : c->val[i];
}

/* ---- the file ---- */

struct load {
    struct ts_config *c;
    const char *path;
    FILE *f;
    unsigned line; /* physical line being parsed */
    int at_line_start;
    int errors;
    char *val[N_OPT];
    unsigned vline[N_OPT];
};

/* A section header names a known section. Checked on the raw line because
 * inih tells the handler about sections only with their keys, and a
 * misspelt section with no keys must not pass silently. inih takes the name
 * as written between '[' and the first ']'; so do we. */
static void check_section_line(struct load *l, const char *line)
{
    line += strspn(line, " \t");
    const char *end = line[0] == '[' ? strchr(line, ']') : NULL;
    if (!end)
        return;
    char name[64];
    size_t n = (size_t)(end - line - 1);
    snprintf(name, sizeof(name), "%.*s", (int)(n < sizeof(name) ? n : sizeof(name) - 1), line + 1);
    if (!section_known(name)) {
        add_err(l->c, "%s:%u: unknown section [%s]", l->path, l->line, name);
        l->errors++;
    }
}

static char *read_line(char *str, int num, void *stream)
{
    struct load *l = stream;
    char *r = fgets(str, num, l->f);
    if (!r)
        return NULL;
    if (l->at_line_start) {
        l->line++;
        check_section_line(l, r);
    }
    size_t n = strlen(r);
    l->at_line_start = n > 0 && r[n - 1] == '\n';
    if (!l->at_line_start) {
        int ch = fgetc(l->f);
        if (ch == '\n' || ch == EOF) {
            l->at_line_start = 1; /* exactly fitted, or the last line without a newline */
        } else {
            add_err(l->c, "%s:%u: line longer than %d bytes", l->path, l->line, num - 2);
            l->errors++;
            while (ch != '\n' && ch != EOF)
                ch = fgetc(l->f);
            l->at_line_start = 1;
        }
    }
    return r;
}

static int on_key(void *user, const char *section, const char *key, const char *value)
{
    struct load *l = user;
    struct ts_config *c = l->c;
    int i = find_opt(section, key);
    if (i < 0) {
        l->errors++;
        if (!*section) {
            add_err(c, "%s:%u: key '%s' outside a section", l->path, l->line, key);
        } else if (!section_known(section)) {
            /* reported once, at the section's line (check_section_line) */
        } else {
            const char *near = suggest_key(section, key);
            add_err(c, "%s:%u: unknown key '%s' in [%s]%s%s%s", l->path, l->line, key, section,
                    near ? " (did you mean '" : "", near ? near : "", near ? "'?)" : "");
        }
        return 1; /* keep going: report every bad line at once */
    }
    const struct opt *o = &opts[i];
    if (l->val[i]) {
        l->errors++;
        add_err(c, "%s:%u: [%s] %s given again (first on line %u)", l->path, l->line, section, key,
                l->vline[i]);
        return 1;
    }
    char why[128];
    if (check_value(o, value, why, sizeof(why)) != 0) {
        l->errors++;
        add_err(c, "%s:%u: [%s] %s: bad value '%s': %s", l->path, l->line, section, key,
                shown(o, value), why);
        return 1;
    }
    l->val[i] = strdup(value);
    l->vline[i] = l->line;
    if (!l->val[i]) {
        l->errors++;
        add_err(c, "%s:%u: out of memory", l->path, l->line);
    }
    return 1;
}

int ts_config_load_file(struct ts_config *c, const char *path)
{
    c->err[0] = '\0';
    struct load l = {.c = c, .path = path, .at_line_start = 1};
    l.f = fopen(path, "r");
    if (!l.f) {
        add_err(c, "%s: cannot read: %s", path, strerror(errno));
        return TS_E_IO;
    }
    int r = ini_parse_stream(read_line, &l, on_key, &l);
    int read_err = ferror(l.f);
    fclose(l.f);
    int rc = TS_OK;
    if (read_err) {
        add_err(c, "%s: read error", path);
        rc = TS_E_IO;
    } else if (r > 0 || l.errors) {
        /* on_key never fails, so a positive r is inih's first syntax error */
        if (r > 0)
            add_err(c, "%s:%d: syntax error (need [section] or key = value)", path, r);
        rc = TS_E_CONFIG;
    } else if (r < 0) {
        add_err(c, "%s: cannot parse (%d)", path, r);
        rc = r == -2 ? TS_E_NOMEM : TS_E_IO;
    }
    char *p = rc == TS_OK ? strdup(path) : NULL;
    if (rc == TS_OK && !p)
        rc = TS_E_NOMEM;
    if (rc == TS_OK) {
        for (size_t i = 0; i < N_OPT; i++) {
            if (c->src[i] == TS_CONFIG_FLAG)
                continue;
            free(c->val[i]);
            c->val[i] = l.val[i];
            c->src[i] = l.val[i] ? TS_CONFIG_FILE : TS_CONFIG_DEFAULT;
            l.val[i] = NULL;
        }
        free(c->path);
        c->path = p;
        rebuild(c);
    }
    for (size_t i = 0; i < N_OPT; i++)
        free(l.val[i]);
    return rc;
}

/* ---- flags ---- */

enum { O_CONFIG = 1000, O_CHECK, O_VERSION, O_HELP, O_RESTORE };

int ts_config_parse_args(struct ts_config *c, int argc, char **argv, enum ts_config_action *action)
{
    struct option lo[N_OPT + 6];
    for (size_t i = 0; i < N_OPT; i++)
        lo[i] = (struct option){
            opts[i].flag, opts[i].type == T_BOOL ? no_argument : required_argument, NULL, (int)i};
    lo[N_OPT + 0] = (struct option){"config", required_argument, NULL, O_CONFIG};
    lo[N_OPT + 1] = (struct option){"check-config", required_argument, NULL, O_CHECK};
    lo[N_OPT + 2] = (struct option){"version", no_argument, NULL, O_VERSION};
    lo[N_OPT + 3] = (struct option){"help", no_argument, NULL, O_HELP};
    lo[N_OPT + 4] = (struct option){"restore", required_argument, NULL, O_RESTORE};
    lo[N_OPT + 5] = (struct option){NULL, 0, NULL, 0};

    c->err[0] = '\0';
    *action = TS_CONFIG_RUN;
    const char *file = NULL;
    int n_files = 0;
    optind = 0; /* GNU: a full reset, so tests can parse many command lines */
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, ":", lo, NULL)) != -1) {
        if (opt >= 0 && (size_t)opt < N_OPT) {
            const struct opt *o = &opts[opt];
            if (o->type == T_BOOL)
                optarg = "true";
            char why[128];
            if (check_value(o, optarg, why, sizeof(why)) != 0) {
                add_err(c, "--%s: bad value '%s': %s", o->flag, shown(o, optarg), why);
                return TS_E_INVALID_ARGUMENT;
            }
            if (store(c, (size_t)opt, optarg, TS_CONFIG_FLAG) != TS_OK)
                return TS_E_NOMEM;
            continue;
        }
        switch (opt) {
        case O_CONFIG:
        case O_CHECK:
            file = optarg;
            n_files++;
            if (opt == O_CHECK)
                *action = TS_CONFIG_CHECK;
            break;
        case O_RESTORE:
            if (!*optarg) {
                add_err(c, "--restore: needs a backup file");
                return TS_E_INVALID_ARGUMENT;
            }
            free(c->restore);
            if (!(c->restore = strdup(optarg)))
                return TS_E_NOMEM;
            rebuild(c);
            break;
        case O_VERSION:
            *action = TS_CONFIG_VERSION;
            return TS_OK;
        case O_HELP:
            *action = TS_CONFIG_HELP;
            return TS_OK;
        case ':':
            add_err(c, "%s: needs a value", argv[optind - 1]);
            return TS_E_INVALID_ARGUMENT;
        default:
            add_err(c, "unknown option %s", argv[optind - 1]);
            return TS_E_INVALID_ARGUMENT;
        }
    }
    if (optind < argc) {
        add_err(c, "unexpected argument: %s", argv[optind]);
        return TS_E_INVALID_ARGUMENT;
    }
    if (n_files > 1) {
        add_err(c, "give one of --config and --check-config, once");
        return TS_E_INVALID_ARGUMENT;
    }
    return file ? ts_config_load_file(c, file) : TS_OK;
}

/* ---- reload ---- */

static int same(const char *a, const char *b)
{
    return a == b || (a && b && !strcmp(a, b));
}

int ts_config_reload(struct ts_config *cur, struct ts_config **out)
{
    *out = NULL;
    cur->err[0] = '\0';
    struct ts_config *next = ts_config_new();
    if (!next) {
        add_err(cur, "out of memory");
        return TS_E_NOMEM;
    }
    for (size_t i = 0; i < N_OPT; i++) {
        if (cur->src[i] == TS_CONFIG_FLAG && store(next, i, cur->val[i], TS_CONFIG_FLAG) != TS_OK) {
            ts_config_free(next);
            add_err(cur, "out of memory");
            return TS_E_NOMEM;
        }
    }
    int rc = TS_OK;
    if (cur->path)
        rc = ts_config_load_file(next, cur->path);
    if (rc != TS_OK) {
        snprintf(cur->err, sizeof(cur->err), "%s", next->err);
        ts_config_free(next);
        return rc;
    }
    for (size_t i = 0; i < N_OPT; i++) {
        if (same(cur->val[i], next->val[i]))
            continue;
        const struct opt *o = &opts[i];
        char qa[160], qb[160];
        ts_log_quote(cur->val[i] ? shown(o, cur->val[i]) : "(default)", qa, sizeof(qa));
        ts_log_quote(next->val[i] ? shown(o, next->val[i]) : "(default)", qb, sizeof(qb));
        if (o->attr & LIVE)
            TS_INFO("event=config_changed key=%s.%s old=%s new=%s action=apply", o->section, o->key,
                    qa, qb);
        else
            TS_WARN("event=config_changed key=%s.%s old=%s new=%s action=needs_restart", o->section,
                    o->key, qa, qb);
    }
    *out = next;
    return TS_OK;
}

/* ---- printing ---- */

static const char *source_name(const struct ts_config *c, size_t i)
{
    switch (c->src[i]) {
    case TS_CONFIG_FLAG:
        return "flag";
    case TS_CONFIG_FILE:
        return "file";
    default:
        return "default";
    }
}

void ts_config_print(const struct ts_config *c, FILE *out)
{
    fprintf(out, "; threadsyncd effective configuration, %s%s\n", c->path ? "file " : "no file",
            c->path ? c->path : "");
    fprintf(out, "; after each value: where it came from; live = SIGHUP applies a change\n");
    const char *section = "";
    for (size_t i = 0; i < N_OPT; i++) {
        const struct opt *o = &opts[i];
        if (strcmp(section, o->section) != 0) {
            section = o->section;
            fprintf(out, "\n[%s]\n", section);
        }
        const char *live = (o->attr & LIVE) ? ", live" : "";
        if (c->val[i])
            fprintf(out, "%s = %s ; %s%s\n", o->key, shown(o, c->val[i]), source_name(c, i), live);
        else if (o->dflt)
            fprintf(out, "%s = %s ; default%s\n", o->key, o->dflt, live);
        else
            fprintf(out, "; %s = ; unset%s: %s\n", o->key, live, o->help);
    }
}

void ts_config_print_usage(FILE *out)
{
    fprintf(out, "usage: threadsyncd [--config FILE] [options]\n"
                 "       threadsyncd --check-config FILE [options]\n"
                 "  --config FILE            read settings from an INI file (flags win)\n"
                 "  --check-config FILE      validate FILE, print the effective settings, exit\n"
                 "  --restore FILE           seed a new data directory (no raft data yet) from a\n"
                 "                           backup (threadsync admin backup), then run\n");
    for (size_t i = 0; i < N_OPT; i++) {
        const struct opt *o = &opts[i];
        char lhs[64];
        snprintf(lhs, sizeof(lhs), "--%s%s%s", o->flag, o->arg ? " " : "", o->arg ? o->arg : "");
        fprintf(out, "  %-24s %s%s%s%s [%s] %s\n", lhs, o->help, o->dflt ? " (default " : "",
                o->dflt ? o->dflt : "", o->dflt ? ")" : "", o->section, o->key);
    }
    fprintf(out, "  --version, --help\n"
                 "SIGHUP reloads the file: log level, heartbeat_ms, max_frame (new connections) "
                 "and the tokens file.\n");
}
