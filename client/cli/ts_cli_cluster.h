/*
 * ts_cli_cluster: the threadsync CLI's cluster commands, self-contained
 * (their own option parsing over the common options), so they stay apart
 * from the rest of the CLI:
 *
 *   threadsync [options] admin cluster
 *   threadsync [options] admin remove-node ID
 *
 * options: --server HOST:PORT (repeatable, or $THREADSYNC_SERVER
 * comma-separated: tried in order until one answers), --ca FILE,
 * --token-file FILE (the environment variables and defaults of ts_cli.h),
 * --json, --help. Both need an admin token.
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

#include "threadsync.pb-c.h"

/* 1 when argv (as main got it) is an `admin cluster` or `admin remove-node`
 * command line: its first two words that are neither options nor their
 * values. */
int ts_cli_cluster_wants(int argc, char *const argv[]);

/* Runs the command; returns the exit code. get_env: getenv or a stand-in. */
int ts_cli_cluster_main(int argc, char *const argv[], char *(*get_env)(const char *name));

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
