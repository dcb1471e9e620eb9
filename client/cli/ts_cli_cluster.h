/*
 * ts_cli_cluster: the threadsync CLI's cluster commands (parsed with every
 * other command by ts_cli_parse, run from main.c's command table):
 *
 *   threadsync [options] admin cluster
 *   threadsync [options] admin remove-node ID
 *
 * options: the common ones (ts_cli.h): the server list is tried in order
 * until one answers. Both need an admin token.
 *
 * cluster: asks the first node that answers for the configuration, then
 * asks every node of it at its client address for its own applied seq (a
 * node that does not answer within 2 s is shown as down), so one command
 * shows who leads and how far each node lags. Text, one line per node then
 * one summary line:
 *
 *   node=<id> role=voter|standby|spare leader=<0|1> raft=<addr>
 *       client=<addr> applied_seq=<seq>|down
 *   answered_by=<id> leader_id=<id, 0: none known> applied_seq=<seq>
 *
 * JSON: {"answered_by":..,"leader_id":..,"applied_seq":..,"nodes":[{"id":..,
 * "role":"voter","is_leader":..,"raft_address":..,"client_address":..,
 * "applied_seq":..|null}]}.
 *
 * remove-node: sends RemoveNode (a write: NOT_LEADER is followed to the
 * leader); prints "removed node=<id>" (JSON {"removed":<id>}). The leader
 * cannot remove itself: stop it first (SIGTERM hands leadership over).
 *
 * Exit codes as ts_cli.h: 0 ok, 1 refused by the server, 2 usage, 3
 * connection or TLS failure.
 */
#ifndef TS_CLI_CLUSTER_H
#define TS_CLI_CLUSTER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "threadsync.h"
#include "ts_cli.h"

/* Run the commands with the parsed options and the client config built
 * from them; return the exit code. */
int ts_cli_cluster_run(const struct ts_cli_opts *o, struct ts_client_config *cfg);
int ts_cli_remove_node_run(const struct ts_cli_opts *o, struct ts_client_config *cfg);

/* Each node's own applied seq, by position in r->nodes; applied[i] is
 * valid only when up[i] is non-zero. Both may be NULL (no probe: the
 * applied_seq fields are left out). */
struct ts_cli_cluster_probe {
    const uint64_t *applied;
    const int *up;
};

/* Prints the configuration in the formats above. */
void ts_cli_print_cluster(FILE *out, const Threadsync__ClusterResult *r,
                          const struct ts_cli_cluster_probe *probe, int json);

/* "voter", "standby", "spare", or "unknown". */
const char *ts_cli_node_role_name(int role);

#endif
