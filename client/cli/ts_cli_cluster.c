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
#include <stdlib.h>
#include <string.h>

#include "threadsync.h"
#include "ts_cli.h"
#include "ts_json.h"

#define PROBE_TIMEOUT_MS 2000u

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

/* ---- commands ----------------------------------------------------------- */

static int report(int rc, Threadsync__Error *detail, const struct ts_cli_opts *o, const char *what)
{
    char context[512];
    ts_cli_context(context, sizeof(context), what, o);
    ts_cli_print_error(stderr, rc, detail, context);
    ts_msg_free(detail);
    return ts_cli_exit_code(rc);
}

int ts_cli_cluster_run(const struct ts_cli_opts *o, struct ts_client_config *cfg)
{
    Threadsync__ClusterResult *res = NULL;
    Threadsync__Error *detail = NULL;
    int rc = ts_sync_cluster(cfg, &res, &detail);
    if (rc != TS_OK)
        return report(rc, detail, o, "admin cluster");
    size_t n = res->n_nodes;
    uint64_t *applied = calloc(n ? n : 1, sizeof(*applied));
    int *up = calloc(n ? n : 1, sizeof(*up));
    if (!applied || !up) {
        free(applied);
        free(up);
        ts_msg_free(res);
        return report(TS_E_NOMEM, NULL, o, "admin cluster");
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

int ts_cli_remove_node_run(const struct ts_cli_opts *o, struct ts_client_config *cfg)
{
    Threadsync__RemoveNode m = THREADSYNC__REMOVE_NODE__INIT;
    m.node_id = o->node_id;
    Threadsync__RemoveNodeResult *res = NULL;
    Threadsync__Error *detail = NULL;
    int rc = ts_sync_remove_node(cfg, &m, &res, &detail);
    if (rc != TS_OK)
        return report(rc, detail, o, "admin remove-node");
    if (o->json)
        printf("{\"removed\":%llu}\n", (unsigned long long)res->node_id);
    else
        printf("removed node=%llu\n", (unsigned long long)res->node_id);
    ts_msg_free(res);
    return TS_CLI_EXIT_OK;
}
