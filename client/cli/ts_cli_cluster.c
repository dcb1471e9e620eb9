/*
 * ts_cli_cluster: `threadsync admin cluster` and `admin remove-node` (see
 * ts_cli_cluster.h for the formats).
 *
 * Both are one blocking request over libthreadsync in fail-fast mode (each
 * server of the list tried once, NOT_LEADER followed). `cluster` then asks
 * every node it learned of for its own Cluster answer, one at a time with a
 * short connect timeout: a cluster is 3 or 5 nodes, so a few sequential
 * round trips cost less than the code to run them in parallel, and a dead
 * node costs at most the timeout (a refused connection fails at once).
 */
#include "ts_cli_cluster.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "threadsync.h"
#include "ts_cli.h"
#include "ts_json.h"

#define PROBE_TIMEOUT_MS 2000u

/* The common options that take a value (in the --opt VALUE form). */
static int takes_value(const char *a)
{
    return strcmp(a, "--server") == 0 || strcmp(a, "--ca") == 0 || strcmp(a, "--token-file") == 0;
}

int ts_cli_cluster_wants(int argc, char *const argv[])
{
    const char *words[2] = {NULL, NULL};
    int n = 0;
    for (int i = 1; i < argc && n < 2; i++) {
        const char *a = argv[i];
        if (a[0] == '-') {
            if (takes_value(a))
                i++;
            continue;
        }
        words[n++] = a;
    }
    return n == 2 && strcmp(words[0], "admin") == 0 &&
           (strcmp(words[1], "cluster") == 0 || strcmp(words[1], "remove-node") == 0);
}

/* ---- output ------------------------------------------------------------- */

const char *ts_cli_node_role_name(int role)
{
    switch (role) {
    case THREADSYNC__NODE_ROLE__NODE_VOTER:
        return "voter";
    case THREADSYNC__NODE_ROLE__NODE_STANDBY:
        return "standby";
    case THREADSYNC__NODE_ROLE__NODE_SPARE:
        return "spare";
    default:
        return "unknown";
    }
}

/* Addresses are host:port from the servers' configuration; printed bare
 * unless they hold something that would break a key=value line. */
static void print_addr(FILE *out, const char *a)
{
    int bare = a && *a;
    for (const char *p = a; bare && *p; p++)
        bare = isgraph((unsigned char)*p) && *p != '"' && *p != '=' && *p != '\\';
    if (bare)
        fputs(a, out);
    else
        ts_json_str(out, a);
}

void ts_cli_print_cluster(FILE *out, const Threadsync__ClusterResult *r,
                          const struct ts_cli_cluster_probe *probe, int json)
{
    int probed = probe && probe->applied && probe->up;
    if (json) {
        fputc('{', out);
        ts_json_kv_u64(out, "answered_by", r->node_id, 1);
        ts_json_kv_u64(out, "leader_id", r->leader_id, 0);
        ts_json_kv_u64(out, "applied_seq", r->applied_seq, 0);
        ts_json_key(out, "nodes", 0);
        fputc('[', out);
        for (size_t i = 0; i < r->n_nodes; i++) {
            const Threadsync__ClusterNode *n = r->nodes[i];
            fputs(i ? ",{" : "{", out);
            ts_json_kv_u64(out, "id", n->id, 1);
            ts_json_kv_str(out, "role", ts_cli_node_role_name(n->role), 0);
            ts_json_kv_bool(out, "is_leader", n->is_leader, 0);
            ts_json_kv_str(out, "raft_address", n->raft_address, 0);
            ts_json_kv_str(out, "client_address", n->client_address, 0);
            if (probed) {
                if (probe->up[i]) {
                    ts_json_kv_u64(out, "applied_seq", probe->applied[i], 0);
                } else {
                    ts_json_key(out, "applied_seq", 0);
                    fputs("null", out);
                }
            }
            fputc('}', out);
        }
        fputs("]}\n", out);
        return;
    }
    for (size_t i = 0; i < r->n_nodes; i++) {
        const Threadsync__ClusterNode *n = r->nodes[i];
        fprintf(out, "node=%llu role=%s leader=%d raft=", (unsigned long long)n->id,
                ts_cli_node_role_name(n->role), n->is_leader ? 1 : 0);
        print_addr(out, n->raft_address);
        fputs(" client=", out);
        print_addr(out, n->client_address);
        if (probed) {
            if (probe->up[i])
                fprintf(out, " applied_seq=%llu", (unsigned long long)probe->applied[i]);
            else
                fputs(" applied_seq=down", out);
        }
        fputc('\n', out);
    }
    fprintf(out, "answered_by=%llu leader_id=%llu applied_seq=%llu\n",
            (unsigned long long)r->node_id, (unsigned long long)r->leader_id,
            (unsigned long long)r->applied_seq);
}

/* ---- options ------------------------------------------------------------ */

struct opts {
    int remove; /* remove-node, else cluster */
    uint64_t node_id;
    int json, help;
    char **servers; /* owned, each owned */
    size_t n_servers;
    const char *ca_file, *token_file;
};

static void opts_free(struct opts *o)
{
    for (size_t i = 0; i < o->n_servers; i++)
        free(o->servers[i]);
    free(o->servers);
}

static int push_server(struct opts *o, const char *s, size_t len)
{
    char **v = realloc(o->servers, (o->n_servers + 1) * sizeof(*v));
    if (!v)
        return -1;
    o->servers = v;
    if (!(v[o->n_servers] = strndup(s, len)))
        return -1;
    o->n_servers++;
    return 0;
}

static const char *env_or(char *(*get_env)(const char *), const char *name, const char *dflt)
{
    const char *v = get_env ? get_env(name) : NULL;
    return v && *v ? v : dflt;
}

/* 0, or a usage error written to err. */
static int parse(int argc, char *const argv[], char *(*get_env)(const char *), struct opts *o,
                 char *err, size_t errlen)
{
    const char *words[3] = {NULL, NULL, NULL};
    int n_words = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-') {
            if (n_words == 3) {
                snprintf(err, errlen, "unexpected argument '%s'", a);
                return -1;
            }
            words[n_words++] = a;
            continue;
        }
        const char *eq = strchr(a, '=');
        size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
        const char *v = eq ? eq + 1 : NULL;
#define IS(name) (nlen == strlen(name) && strncmp(a, name, nlen) == 0)
        if (IS("--json") || IS("--help") || (IS("-h") && !eq)) {
            if (eq) {
                snprintf(err, errlen, "%.*s takes no value", (int)nlen, a);
                return -1;
            }
            if (IS("--json"))
                o->json = 1;
            else
                o->help = 1;
            continue;
        }
        if (!IS("--server") && !IS("--ca") && !IS("--token-file")) {
            snprintf(err, errlen, "admin %s does not take %.*s",
                     n_words >= 2 ? words[1] : "cluster", (int)nlen, a);
            return -1;
        }
        if (!v) {
            if (i + 1 >= argc) {
                snprintf(err, errlen, "%s needs a value", a);
                return -1;
            }
            v = argv[++i];
        }
        if (IS("--server")) {
            for (const char *p = v; *p;) { /* a comma-separated list too */
                size_t n = strcspn(p, ",");
                if (n && push_server(o, p, n))
                    return -2;
                p += n;
                p += strspn(p, ",");
            }
        } else if (IS("--ca")) {
            o->ca_file = v;
        } else {
            o->token_file = v;
        }
#undef IS
    }
    if (o->help)
        return 0;
    o->remove = n_words >= 2 && strcmp(words[1], "remove-node") == 0;
    if (o->remove) {
        char *end;
        errno = 0;
        unsigned long long id =
            n_words == 3 && isdigit((unsigned char)words[2][0]) ? strtoull(words[2], &end, 10) : 0;
        if (n_words != 3 || errno || id == 0 || *end) {
            snprintf(err, errlen, "admin remove-node wants a node ID (1..), not '%s'",
                     n_words == 3 ? words[2] : "");
            return -1;
        }
        o->node_id = id;
    } else if (n_words != 2) {
        snprintf(err, errlen, "admin cluster takes no argument ('%s')", words[2]);
        return -1;
    }
    if (o->n_servers == 0) {
        const char *env = env_or(get_env, "THREADSYNC_SERVER", TS_CLI_DEFAULT_SERVER);
        for (const char *p = env; *p;) {
            size_t n = strcspn(p, ", ");
            if (n && push_server(o, p, n))
                return -2;
            p += n;
            p += strspn(p, ", ");
        }
        if (o->n_servers == 0 &&
            push_server(o, TS_CLI_DEFAULT_SERVER, strlen(TS_CLI_DEFAULT_SERVER)))
            return -2;
    }
    if (!o->ca_file)
        o->ca_file = env_or(get_env, "THREADSYNC_CA", TS_CLI_DEFAULT_CA);
    if (!o->token_file)
        o->token_file = env_or(get_env, "THREADSYNC_TOKEN_FILE", TS_CLI_DEFAULT_TOKEN_FILE);
    return 0;
}

static void usage(FILE *out)
{
    fputs("usage: threadsync [options] admin cluster\n"
          "       threadsync [options] admin remove-node ID\n"
          "\n"
          "  cluster      nodes, addresses, roles, the leader and each node's applied seq\n"
          "  remove-node  remove node ID from the cluster (not the leader: stop it first)\n"
          "\n"
          "options: --server HOST:PORT (repeatable), --ca FILE, --token-file FILE, --json\n",
          out);
}

/* ---- commands ----------------------------------------------------------- */

static int report(int rc, Threadsync__Error *detail, const struct opts *o, const char *what)
{
    char context[512];
    size_t n = (size_t)snprintf(context, sizeof(context), "admin %s (", what);
    for (size_t i = 0; i < o->n_servers && n < sizeof(context); i++)
        n +=
            (size_t)snprintf(context + n, sizeof(context) - n, "%s%s", i ? "," : "", o->servers[i]);
    if (n < sizeof(context))
        snprintf(context + n, sizeof(context) - n, ")");
    ts_cli_print_error(stderr, rc, detail, context);
    ts_msg_free(detail);
    return ts_cli_exit_code(rc);
}

static int cmd_cluster(const struct opts *o, const struct ts_client_config *cfg)
{
    Threadsync__ClusterResult *res = NULL;
    Threadsync__Error *detail = NULL;
    int rc = ts_sync_cluster(cfg, &res, &detail);
    if (rc != TS_OK)
        return report(rc, detail, o, "cluster");
    size_t n = res->n_nodes;
    uint64_t *applied = calloc(n ? n : 1, sizeof(*applied));
    int *up = calloc(n ? n : 1, sizeof(*up));
    if (!applied || !up) {
        free(applied);
        free(up);
        ts_msg_free(res);
        return report(TS_E_NOMEM, NULL, o, "cluster");
    }
    for (size_t i = 0; i < n; i++) {
        const Threadsync__ClusterNode *node = res->nodes[i];
        if (node->id == res->node_id) {
            applied[i] = res->applied_seq;
            up[i] = 1;
            continue;
        }
        if (!node->client_address || !*node->client_address)
            continue;
        const char *server[] = {node->client_address};
        struct ts_client_config pc = *cfg;
        pc.servers = server;
        pc.n_servers = 1;
        pc.connect_timeout_ms = PROBE_TIMEOUT_MS;
        pc.request_timeout_ms = PROBE_TIMEOUT_MS;
        Threadsync__ClusterResult *pr = NULL;
        Threadsync__Error *pd = NULL;
        if (ts_sync_cluster(&pc, &pr, &pd) == TS_OK && pr->node_id == node->id) {
            applied[i] = pr->applied_seq;
            up[i] = 1;
        }
        ts_msg_free(pr);
        ts_msg_free(pd);
    }
    struct ts_cli_cluster_probe probe = {.applied = applied, .up = up};
    ts_cli_print_cluster(stdout, res, &probe, o->json);
    free(applied);
    free(up);
    ts_msg_free(res);
    return TS_CLI_EXIT_OK;
}

static int cmd_remove_node(const struct opts *o, const struct ts_client_config *cfg)
{
    Threadsync__RemoveNode m = THREADSYNC__REMOVE_NODE__INIT;
    m.node_id = o->node_id;
    Threadsync__RemoveNodeResult *res = NULL;
    Threadsync__Error *detail = NULL;
    int rc = ts_sync_remove_node(cfg, &m, &res, &detail);
    if (rc != TS_OK)
        return report(rc, detail, o, "remove-node");
    if (o->json)
        printf("{\"removed\":%llu}\n", (unsigned long long)res->node_id);
    else
        printf("removed node=%llu\n", (unsigned long long)res->node_id);
    ts_msg_free(res);
    return TS_CLI_EXIT_OK;
}

int ts_cli_cluster_main(int argc, char *const argv[], char *(*get_env)(const char *name))
{
    struct opts o = {0};
    char err[256] = "";
    int prc = parse(argc, argv, get_env, &o, err, sizeof(err));
    if (prc != 0) {
        fprintf(stderr, "threadsync: %s\n", prc == -2 ? "out of memory" : err);
        usage(stderr);
        opts_free(&o);
        return TS_CLI_EXIT_USAGE;
    }
    if (o.help) {
        usage(stdout);
        opts_free(&o);
        return TS_CLI_EXIT_OK;
    }
    char *token = NULL;
    if (ts_cli_read_token(o.token_file, &token, err, sizeof(err)) != TS_OK) {
        fprintf(stderr, "error: %s\n", err);
        opts_free(&o);
        return TS_CLI_EXIT_CONN;
    }
    struct ts_client_config cfg = {
        .servers = (const char *const *)o.servers,
        .n_servers = o.n_servers,
        .ca_file = o.ca_file,
        .token = token,
        .client_name = "threadsync-cli",
    };
    int code = o.remove ? cmd_remove_node(&o, &cfg) : cmd_cluster(&o, &cfg);
    free(token);
    opts_free(&o);
    return code;
}
