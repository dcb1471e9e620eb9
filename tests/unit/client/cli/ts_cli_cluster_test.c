/*
 * The admin sub-commands (cluster, remove-node, backup, digest) through the
 * CLI's one parser: the command found, its options and arguments, the
 * common options resolved, its usage errors (no server needed); and the
 * text and JSON ts_cli_cluster prints for a cluster, with nodes up, down
 * and not probed.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ts_check_main.h"
#include "ts_cli.h"
#include "ts_cli_cluster.h"
#include "ts_err.h"

#define ARGV(...) ((char *[]){"threadsync", __VA_ARGS__, NULL})
#define ARGC(...) ((int)(sizeof((char *[]){"threadsync", __VA_ARGS__}) / sizeof(char *)))
static char *no_env(const char *name)
{
    (void)name;
    return NULL;
}

/* Parses with ts_cli_parse, the one CLI parser; the command it found (or
 * NONE after a usage error). */
static enum ts_cli_cmd parsed(int argc, char *const argv[], struct ts_cli_opts *o)
{
    char err[256];
    int rc = ts_cli_parse(argc, argv, no_env, o, err, sizeof(err));
    if (rc != TS_OK) {
        ck_assert_int_eq(rc, TS_E_INVALID_ARGUMENT);
        ck_assert_str_ne(err, "");
        return TS_CLI_CMD_NONE;
    }
    return o->cmd;
}
#define CMD(...) parsed(ARGC(__VA_ARGS__), ARGV(__VA_ARGS__), &o)

START_TEST(test_commands)
{
    struct ts_cli_opts o;
    ck_assert_int_eq(CMD("admin", "cluster"), TS_CLI_CMD_CLUSTER);
    ts_cli_opts_free(&o);
    ck_assert_int_eq(CMD("admin", "remove-node", "3"), TS_CLI_CMD_REMOVE_NODE);
    ck_assert_uint_eq(o.node_id, 3);
    ts_cli_opts_free(&o);
    ck_assert_int_eq(CMD("--json", "admin", "cluster"), TS_CLI_CMD_CLUSTER);
    ck_assert_int_eq(o.json, 1);
    ts_cli_opts_free(&o);
    /* option values are not words; the common options resolve once */
    ck_assert_int_eq(CMD("--server", "admin", "admin", "cluster"), TS_CLI_CMD_CLUSTER);
    ck_assert_uint_eq(o.n_servers, 1);
    ck_assert_str_eq(o.servers[0], "admin");
    ts_cli_opts_free(&o);
    ck_assert_int_eq(CMD("--ca", "x", "--token-file", "y", "admin", "--json", "cluster"),
                     TS_CLI_CMD_CLUSTER);
    ck_assert_str_eq(o.ca_file, "x");
    ck_assert_str_eq(o.token_file, "y");
    ts_cli_opts_free(&o);
    ck_assert_int_eq(CMD("--server=h:1,g:2", "admin", "remove-node", "7"), TS_CLI_CMD_REMOVE_NODE);
    ck_assert_uint_eq(o.n_servers, 2);
    ts_cli_opts_free(&o);
    ck_assert_int_eq(CMD("admin", "token", "list"), TS_CLI_CMD_ADMIN);
    ts_cli_opts_free(&o);
    ck_assert_int_eq(CMD("admin", "backup", "--out", "f", "--timeout", "5"), TS_CLI_CMD_BACKUP);
    ck_assert_str_eq(o.out, "f");
    ck_assert_uint_eq(o.timeout_s, 5);
    ts_cli_opts_free(&o);
    ck_assert_int_eq(CMD("admin", "digest", "--timeout-ms", "1500"), TS_CLI_CMD_DIGEST);
    ck_assert_uint_eq(o.timeout_ms, 1500);
    ts_cli_opts_free(&o);
    ck_assert_str_eq(ts_cli_cmd_name(TS_CLI_CMD_REMOVE_NODE), "admin remove-node");
}
END_TEST

START_TEST(test_usage_errors)
{
    struct ts_cli_opts o;
#define BAD(...)                                                                                   \
    do {                                                                                           \
        ck_assert_int_eq(CMD(__VA_ARGS__), TS_CLI_CMD_NONE);                                       \
        ts_cli_opts_free(&o);                                                                      \
    } while (0)
    BAD("admin", "cluster", "extra");
    BAD("admin", "remove-node");
    BAD("admin", "remove-node", "0");
    BAD("admin", "remove-node", "x1");
    BAD("admin", "remove-node", "1x");
    BAD("admin", "remove-node", "99999999999999999999999");
    BAD("admin", "cluster", "--thread", "t");
    BAD("admin", "cluster", "--json=1");
    BAD("admin", "cluster", "--server");
    BAD("admin", "cluster", "--out", "f");
    BAD("admin", "backup");
    BAD("admin", "backup", "--out", "f", "extra");
    BAD("admin", "digest", "--out", "f");
    BAD("admin", "digest", "--timeout-ms", "0");
    BAD("admin", "token", "list", "--out", "f");
    BAD("admin");
    BAD("cluster", "admin");
#undef BAD
    ck_assert_int_eq(CMD("admin", "cluster", "--help"), TS_CLI_CMD_CLUSTER);
    ck_assert_int_eq(o.help, 1);
    ts_cli_opts_free(&o);
}
END_TEST

/* A CA that does not exist: the client cannot be made, which is a local
 * failure (exit 3), not a usage error. */
START_TEST(test_bad_ca_is_exit_3)
{
    struct ts_cli_opts o;
    ck_assert_int_eq(CMD("admin", "cluster", "--ca", "/nonexistent/ca.pem", "--server",
                         "127.0.0.1:1,127.0.0.1:2"),
                     TS_CLI_CMD_CLUSTER);
    struct ts_client_config cfg = TS_CLIENT_CONFIG_INIT;
    cfg.servers = (const char *const *)o.servers;
    cfg.n_servers = o.n_servers;
    cfg.ca_file = o.ca_file;
    cfg.token = "t";
    ck_assert_int_eq(ts_cli_cluster_run(&o, &cfg), TS_CLI_EXIT_CONN);
    ts_cli_opts_free(&o);
}
END_TEST

static Threadsync__ClusterNode node(uint64_t id, int role, int leader, const char *raft,
                                    const char *client)
{
    Threadsync__ClusterNode n = THREADSYNC__CLUSTER_NODE__INIT;
    n.id = id;
    n.role = (Threadsync__NodeRole)role;
    n.is_leader = leader;
    n.raft_address = (char *)raft;
    n.client_address = (char *)client;
    return n;
}

static char *print(const Threadsync__ClusterResult *r, const struct ts_cli_cluster_probe *p,
                   int json)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ck_assert_ptr_nonnull(f);
    ts_cli_print_cluster(f, r, p, json);
    fclose(f);
    return buf;
}

START_TEST(test_print)
{
    Threadsync__ClusterNode a =
        node(1, THREADSYNC__NODE_ROLE__NODE_VOTER, 1, "10.0.0.1:7421", "10.0.0.1:7420");
    Threadsync__ClusterNode b =
        node(2, THREADSYNC__NODE_ROLE__NODE_VOTER, 0, "10.0.0.2:7421", "10.0.0.2:7420");
    Threadsync__ClusterNode c = node(7, THREADSYNC__NODE_ROLE__NODE_SPARE, 0, "h 3:7421", "");
    Threadsync__ClusterNode *v[] = {&a, &b, &c};
    Threadsync__ClusterResult r = THREADSYNC__CLUSTER_RESULT__INIT;
    r.nodes = v;
    r.n_nodes = 3;
    r.leader_id = 1;
    r.node_id = 2;
    r.applied_seq = 41;
    uint64_t applied[] = {42, 41, 0};
    int up[] = {1, 1, 0};
    struct ts_cli_cluster_probe probe = {applied, up};

    char *t = print(&r, &probe, 0);
    ck_assert_str_eq(t, "node=1 role=voter leader=1 raft=10.0.0.1:7421 client=10.0.0.1:7420 "
                        "applied_seq=42\n"
                        "node=2 role=voter leader=0 raft=10.0.0.2:7421 client=10.0.0.2:7420 "
                        "applied_seq=41\n"
                        "node=7 role=spare leader=0 raft=\"h 3:7421\" client=\"\" "
                        "applied_seq=down\n"
                        "answered_by=2 leader_id=1 applied_seq=41\n");
    free(t);

    t = print(&r, NULL, 0);
    /* not probed: no applied_seq per node */
    ck_assert_ptr_nonnull(strstr(t, "node=1 role=voter leader=1 raft=10.0.0.1:7421 "
                                    "client=10.0.0.1:7420\n"));
    ck_assert_ptr_nonnull(strstr(t, "answered_by=2 leader_id=1 applied_seq=41\n"));
    free(t);

    t = print(&r, &probe, 1);
    ck_assert_str_eq(
        t, "{\"answered_by\":2,\"leader_id\":1,\"applied_seq\":41,\"nodes\":["
           "{\"id\":1,\"role\":\"voter\",\"is_leader\":true,\"raft_address\":\"10.0.0.1:7421\","
           "\"client_address\":\"10.0.0.1:7420\",\"applied_seq\":42},"
           "{\"id\":2,\"role\":\"voter\",\"is_leader\":false,\"raft_address\":\"10.0.0.2:7421\","
           "\"client_address\":\"10.0.0.2:7420\",\"applied_seq\":41},"
           "{\"id\":7,\"role\":\"spare\",\"is_leader\":false,\"raft_address\":\"h 3:7421\","
           "\"client_address\":\"\",\"applied_seq\":null}]}\n");
    free(t);

    ck_assert_str_eq(ts_cli_node_role_name(THREADSYNC__NODE_ROLE__NODE_STANDBY), "standby");
    ck_assert_str_eq(ts_cli_node_role_name(99), "unknown");
}
END_TEST

START_TEST(test_print_empty)
{
    Threadsync__ClusterResult r = THREADSYNC__CLUSTER_RESULT__INIT;
    char *t = print(&r, NULL, 1);
    ck_assert_str_eq(t, "{\"answered_by\":0,\"leader_id\":0,\"applied_seq\":0,\"nodes\":[]}\n");
    free(t);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ts_cli_cluster");
    TCase *tc = tcase_create("cli");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_commands);
    tcase_add_test(tc, test_usage_errors);
    tcase_add_test(tc, test_bad_ca_is_exit_3);
    tcase_add_test(tc, test_print);
    tcase_add_test(tc, test_print_empty);
    suite_add_tcase(s, tc);
    return ts_check_run(s);
}
