/*
 * ts_cli_web: `threadsync web` (see ts_cli_web.h). Web options and the
 * [web] file are read here; every mirror option is handed to the mirror's
 * own parser (ts_cli_parse) unchanged, so the two commands cannot drift.
 */
#include "ts_cli_web.h"

#include <ini.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "threadsync.h"
#include "ts_addr.h"
#include "ts_cli.h"
#include "ts_cli_mirror.h"
#include "ts_err.h"
#include "ts_web.h"
#include "ts_web_addr.h"
#include "ts_web_fan.h"

#define ARGS_MAX 256
#define FANOUT_MAX 64

/* A value from the file or a flag; flags overwrite. */
struct opts {
    char *listen, *base, *post_token_file, *dir, *ca, *token_file, *servers, *mod_listen;
    char *trusted_proxies, *cert, *key;
    char *config;
    unsigned long max_body, req_timeout_ms, max_conns, max_conns_per_addr, heartbeat_ms,
        ring_events;
    int fanout_threads; /* TS_WEB_FANOUT_AUTO, or 0..FANOUT_MAX */
    int fanout_sendmsg; /* --fanout-io sendmsg */
    int gzip, check;
};

static const struct {
    const char *name; /* flag without "--"; the file key is the same with '_' for '-' */
    size_t off;       /* of the char * in struct opts, or of the unsigned long */
    int num;
} keys[] = {
    {"listen", offsetof(struct opts, listen), 0},
    {"base", offsetof(struct opts, base), 0},
    {"post-token-file", offsetof(struct opts, post_token_file), 0},
    {"dir", offsetof(struct opts, dir), 0},
    {"ca", offsetof(struct opts, ca), 0},
    {"token-file", offsetof(struct opts, token_file), 0},
    {"server", offsetof(struct opts, servers), 0},
    {"trusted-proxy", offsetof(struct opts, trusted_proxies), 0},
    {"cert", offsetof(struct opts, cert), 0},
    {"key", offsetof(struct opts, key), 0},
    {"max-body", offsetof(struct opts, max_body), 1},
    {"req-timeout-ms", offsetof(struct opts, req_timeout_ms), 1},
    {"max-conns", offsetof(struct opts, max_conns), 1},
    {"max-conns-per-addr", offsetof(struct opts, max_conns_per_addr), 1},
    {"heartbeat-ms", offsetof(struct opts, heartbeat_ms), 1},
    {"ring-events", offsetof(struct opts, ring_events), 1},
    {"mod-listen", offsetof(struct opts, mod_listen), 0},
};

/* Sets key (flag spelling) to value. 1 when key is known, -1 for a bad
 * number, 0 when unknown. */
static int set_opt(struct opts *o, const char *key, const char *value)
{
    if (strcmp(key, "gzip") == 0) {
        o->gzip = strcmp(value, "yes") == 0 || strcmp(value, "true") == 0 ||
                  strcmp(value, "1") == 0 || strcmp(value, "on") == 0;
        return 1;
    }
    if (strcmp(key, "fanout-io") == 0) {
        if (strcmp(value, "uring") != 0 && strcmp(value, "sendmsg") != 0)
            return -1;
        o->fanout_sendmsg = strcmp(value, "sendmsg") == 0;
        return 1;
    }
    if (strcmp(key, "fanout-threads") == 0) {
        char *end = NULL;
        unsigned long v = strtoul(value, &end, 10);
        if (strcmp(value, "auto") == 0)
            o->fanout_threads = TS_WEB_FANOUT_AUTO;
        else if (!value[0] || *end || v > FANOUT_MAX)
            return -1;
        else
            o->fanout_threads = (int)v;
        return 1;
    }
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        if (strcmp(keys[i].name, key) != 0)
            continue;
        char *p = (char *)o + keys[i].off;
        if (keys[i].num) {
            char *end = NULL;
            unsigned long v = strtoul(value, &end, 10);
            if (!value[0] || *end)
                return -1;
            *(unsigned long *)(void *)p = v;
            return 1;
        }
        char **s = (char **)(void *)p;
        if ((strcmp(key, "server") == 0 || strcmp(key, "trusted-proxy") == 0) &&
            *s) { /* a list: a,b or repeated */
            size_t n = strlen(*s) + strlen(value) + 2;
            char *j = malloc(n);
            if (!j)
                return -1;
            snprintf(j, n, "%s,%s", *s, value);
            free(*s);
            *s = j;
            return 1;
        }
        free(*s);
        *s = strdup(value);
        return *s ? 1 : -1;
    }
    return 0;
}

struct file_ctx {
    struct opts *o;
    char err[256];
};

static int on_ini(void *arg, const char *section, const char *name, const char *value)
{
    struct file_ctx *f = arg;
    if (strcmp(section, "web") != 0)
        return 1; /* other sections belong to others (the node's file) */
    char flag[64];
    snprintf(flag, sizeof(flag), "%s", name);
    for (char *p = flag; *p; p++)
        if (*p == '_')
            *p = '-';
    int r = set_opt(f->o, flag, value);
    if (r <= 0 && !f->err[0])
        snprintf(f->err, sizeof(f->err), "[web] %s: %s", name,
                 r < 0 ? "not a number" : "unknown key");
    return r > 0;
}

static void opts_free(struct opts *o)
{
    free(o->listen);
    free(o->base);
    free(o->post_token_file);
    free(o->dir);
    free(o->ca);
    free(o->token_file);
    free(o->servers);
    free(o->mod_listen);
    free(o->trusted_proxies);
    free(o->cert);
    free(o->key);
}

struct run {
    struct ts_web_config wc;
    struct ts_client_config post_cfg;
    struct ts_web *web;
    int failed;
};

static int hook_start(void *arg, uv_loop_t *loop, uint64_t cursor)
{
    struct run *r = arg;
    int rc = ts_web_new(loop, &r->wc, &r->post_cfg, cursor, &r->web);
    if (rc != TS_OK) {
        fprintf(stderr, "error: web: cannot start on %s (%s)\n", r->wc.listen, ts_err_name(rc));
        return -1;
    }
    char host[256];
    uint16_t port = 0;
    ts_addr_parse(r->wc.listen, host, sizeof(host), &port);
    fprintf(stderr, "threadsync: web edge on %s://%s%s%s:%u%s/t/<key>\n",
            r->wc.cert_file ? "https" : "http", strchr(host, ':') ? "[" : "", host,
            strchr(host, ':') ? "]" : "", ts_web_port(r->web), r->wc.base);
    unsigned fan = ts_web_fanout_threads(r->web);
    if (fan)
        fprintf(stderr,
                "threadsync: web edge writes event streams on %u delivery threads (%u batching "
                "through io_uring)\n",
                fan, ts_web_fanout_batched(r->web));
    const char *ml = r->wc.mod_listen ? r->wc.mod_listen : r->wc.listen;
    ts_addr_parse(ml, host, sizeof(host), &port);
    fprintf(stderr, "threadsync: moderation console on %s://%s%s%s:%u%s/mod/\n",
            r->wc.cert_file ? "https" : "http", strchr(host, ':') ? "[" : "", host,
            strchr(host, ':') ? "]" : "", ts_web_mod_port(r->web), r->wc.base);
    return 0;
}

static void hook_events(void *arg, const Threadsync__Events *ev)
{
    ts_web_on_events(((struct run *)arg)->web, ev);
}

static void hook_reset(void *arg, uint64_t seq)
{
    ts_web_on_reset(((struct run *)arg)->web, seq);
}

static void hook_flushed(void *arg, const struct ts_mirror_touched *ids)
{
    ts_web_on_flushed(((struct run *)arg)->web, ids);
}

static void hook_stop(void *arg)
{
    ts_web_close(((struct run *)arg)->web);
}

static void hook_done(void *arg)
{
    struct run *r = arg;
    ts_web_free(r->web);
    r->web = NULL;
}

int ts_cli_web_wants(int argc, char **argv)
{
    return argc > 1 && strcmp(argv[1], "web") == 0;
}

static int usage(FILE *out, int code)
{
    fprintf(out, "usage: threadsync web [--config FILE] [--check-config] [--listen HOST:PORT]\n"
                 "         [--base PATH] [--post-token-file FILE] [--max-body BYTES]\n"
                 "         [--req-timeout-ms MS] [--max-conns N] [--max-conns-per-addr N]\n"
                 "         [--heartbeat-ms MS] [--ring-events N] [--no-gzip]\n"
                 "         [--fanout-threads N|auto] [--fanout-io uring|sendmsg]\n"
                 "         [--mod-listen HOST:PORT]\n"
                 "         [--trusted-proxy ADDR]... [--cert FILE --key FILE]\n"
                 "         --dir DIR [--server HOST:PORT]... [--ca FILE] [--token-file FILE]\n"
                 "         [--thread KEY]... [--all]\n"
                 "  serves DIR's threads over HTTP (default 127.0.0.1:7480) while mirroring\n"
                 "  them as `threadsync mirror` does; see docs/WEB.md.\n");
    return code;
}

int ts_cli_web_main(int argc, char **argv)
{
    struct opts o = {.gzip = 1, .fanout_threads = TS_WEB_FANOUT_AUTO};
    const char *pass[ARGS_MAX];
    size_t n_pass = 0;
    pass[n_pass++] = argv[0];
    pass[n_pass++] = "mirror";
    int code = TS_CLI_EXIT_USAGE;
    /* The file first, so that flags win whatever their order. argv[i] is
     * never NULL below argc; the loops test it so the analyzer sees that. */
    for (int i = 2; i + 1 < argc && argv[i] && argv[i + 1]; i++)
        if (strcmp(argv[i], "--config") == 0)
            o.config = argv[i + 1];
    if (o.config) {
        struct file_ctx f = {.o = &o};
        int r = ini_parse(o.config, on_ini, &f);
        if (r != 0 || f.err[0]) {
            if (f.err[0])
                fprintf(stderr, "threadsync web: %s: %s\n", o.config, f.err);
            else if (r < 0)
                fprintf(stderr, "threadsync web: cannot read %s\n", o.config);
            else
                fprintf(stderr, "threadsync web: %s: line %d is not valid\n", o.config, r);
            opts_free(&o);
            return TS_CLI_EXIT_USAGE;
        }
    }
    int file_servers = o.servers != NULL;
    for (int i = 2; i < argc && argv[i]; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            opts_free(&o);
            return usage(stdout, TS_CLI_EXIT_OK);
        }
        if (strcmp(a, "--check-config") == 0) {
            o.check = 1;
            continue;
        }
        if (strcmp(a, "--no-gzip") == 0) {
            o.gzip = 0;
            continue;
        }
        if (strcmp(a, "--config") == 0) {
            i++;
            continue;
        }
        if (strncmp(a, "--", 2) == 0 && i + 1 < argc && argv[i + 1]) {
            if (strcmp(a, "--server") == 0 && file_servers) {
                free(o.servers); /* flags replace the file's list */
                o.servers = NULL;
                file_servers = 0;
            }
            int r = set_opt(&o, a + 2, argv[i + 1]);
            if (r < 0) {
                fprintf(stderr, "threadsync web: %s: not a number: %s\n", a, argv[i + 1]);
                opts_free(&o);
                return usage(stderr, TS_CLI_EXIT_USAGE);
            }
            if (r > 0) {
                i++;
                continue;
            }
        }
        if (n_pass + 1 >= ARGS_MAX) {
            opts_free(&o);
            return usage(stderr, TS_CLI_EXIT_USAGE);
        }
        pass[n_pass++] = a; /* a mirror option (--thread, --all...) */
    }
    /* The mirror's own options, from the file or flags. */
    const char *mflags[][2] = {{"--dir", o.dir}, {"--ca", o.ca}, {"--token-file", o.token_file}};
    for (size_t k = 0; k < 3; k++)
        if (mflags[k][1] && n_pass + 2 < ARGS_MAX) {
            pass[n_pass++] = mflags[k][0];
            pass[n_pass++] = mflags[k][1];
        }
    if (o.servers && n_pass + 2 < ARGS_MAX) {
        pass[n_pass++] = "--server";
        pass[n_pass++] = o.servers;
    }
    pass[n_pass] = NULL;

    struct ts_cli_opts mo;
    char err[256];
    int rc = ts_cli_parse((int)n_pass, (char *const *)pass, getenv, &mo, err, sizeof(err));
    const char *listen = o.listen ? o.listen : "127.0.0.1:7480";
    char host[256];
    uint16_t port;
    if (rc == TS_OK && !mo.dir) {
        snprintf(err, sizeof(err), "--dir is required");
        rc = TS_E_CONFIG;
    }
    struct sockaddr_storage ss;
    if (rc == TS_OK && (ts_addr_parse(listen, host, sizeof(host), &port) != TS_OK ||
                        ts_addr_numeric(host, port, &ss) != TS_OK)) {
        snprintf(err, sizeof(err), "--listen %s: not HOST:PORT with a numeric host", listen);
        rc = TS_E_CONFIG;
    }
    if (rc == TS_OK && o.mod_listen &&
        (ts_addr_parse(o.mod_listen, host, sizeof(host), &port) != TS_OK ||
         ts_addr_numeric(host, port, &ss) != TS_OK)) {
        snprintf(err, sizeof(err), "--mod-listen %s: not HOST:PORT with a numeric host",
                 o.mod_listen);
        rc = TS_E_CONFIG;
    }
    const char *base = o.base ? o.base : "";
    if (rc == TS_OK && base[0] &&
        (base[0] != '/' || base[strlen(base) - 1] == '/' || strpbrk(base, "\"'<>?# "))) {
        snprintf(err, sizeof(err), "--base %s: a path like /comments (no trailing /)", base);
        rc = TS_E_CONFIG;
    }
    struct ts_web_proxies proxies;
    if (rc == TS_OK && ts_web_proxies_parse(o.trusted_proxies, &proxies) != TS_OK) {
        snprintf(err, sizeof(err), "--trusted-proxy %s: want numeric IP addresses (at most %d)",
                 o.trusted_proxies, TS_WEB_PROXIES_MAX);
        rc = TS_E_CONFIG;
    }
    if (rc == TS_OK && !o.cert != !o.key) {
        snprintf(err, sizeof(err), "--cert and --key go together");
        rc = TS_E_CONFIG;
    }
    if (rc != TS_OK) {
        fprintf(stderr, "threadsync web: %s\n", rc == TS_E_NOMEM ? "out of memory" : err);
        ts_cli_opts_free(&mo);
        opts_free(&o);
        return usage(stderr, TS_CLI_EXIT_USAGE);
    }
    if (o.check) {
        printf("config ok: listen=%s dir=%s fanout_threads=%u%s fanout_io=%s\n", listen, mo.dir,
               o.fanout_threads == TS_WEB_FANOUT_AUTO ? ts_web_fan_default_threads()
                                                      : (unsigned)o.fanout_threads,
               o.fanout_threads == TS_WEB_FANOUT_AUTO ? " (auto: one per core)" : "",
               o.fanout_sendmsg ? "sendmsg" : "uring");
        ts_cli_opts_free(&mo);
        opts_free(&o);
        return TS_CLI_EXIT_OK;
    }
    char *token = NULL, *post_token = NULL;
    if (ts_cli_read_token(mo.token_file, &token, err, sizeof(err)) != TS_OK ||
        ts_cli_read_token(o.post_token_file ? o.post_token_file : mo.token_file, &post_token, err,
                          sizeof(err)) != TS_OK) {
        fprintf(stderr, "error: %s\n", err);
        free(token);
        ts_cli_opts_free(&mo);
        opts_free(&o);
        return TS_CLI_EXIT_CONN;
    }
    struct ts_client_config cfg = {
        .struct_size = sizeof(struct ts_client_config),
        .servers = (const char *const *)mo.servers,
        .n_servers = mo.n_servers,
        .ca_file = mo.ca_file,
        .token = token,
        .client_name = "threadsync-web-mirror",
    };
    struct run r = {
        .wc = {.listen = listen,
               .dir = mo.dir,
               .base = base,
               .max_body = o.max_body,
               .req_timeout_ms = (unsigned)o.req_timeout_ms,
               .max_conns = (unsigned)o.max_conns,
               .max_conns_per_addr = (unsigned)o.max_conns_per_addr,
               .heartbeat_ms = (unsigned)o.heartbeat_ms,
               .ring_events = o.ring_events,
               .gzip = o.gzip,
               .mod_listen = o.mod_listen,
               .trusted_proxies = o.trusted_proxies,
               .cert_file = o.cert,
               .key_file = o.key,
               .fanout_threads = o.fanout_threads,
               .fanout_sendmsg = o.fanout_sendmsg},
        .post_cfg = cfg,
    };
    r.post_cfg.token = post_token;
    struct ts_cli_mirror_hooks hooks = {
        .arg = &r,
        .start = hook_start,
        .events = hook_events,
        .reset = hook_reset,
        .flushed = hook_flushed,
        .stop = hook_stop,
        .done = hook_done,
    };
    /* A browser that leaves mid-response must cost a write error, not the
     * process. */
    signal(SIGPIPE, SIG_IGN);
    code = ts_cli_mirror_run_hooked(&mo, &cfg, &hooks);
    if (r.web) /* the loop never ran (an early failure) */
        ts_web_free(r.web);
    free(token);
    free(post_token);
    ts_cli_opts_free(&mo);
    opts_free(&o);
    return code;
}
