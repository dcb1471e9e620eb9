/*
 * ts_cli_cluster: which command lines it takes over from the CLI, its
 * usage errors and exit codes (no server needed), and the text and JSON it
 * prints for a cluster, with nodes up, down and not probed.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ts_check_main.h"
#include "ts_cli.h"
#include "ts_cli_cluster.h"

#define ARGV(...) ((char *[]){"threadsync", __VA_ARGS__, NULL})
#define ARGC(...) ((int)(sizeof((char *[]){"threadsync", __VA_ARGS__}) / sizeof(char *)))
#define WANTS(...) ts_cli_cluster_wants(ARGC(__VA_ARGS__), ARGV(__VA_ARGS__))
#define MAIN(...) ts_cli_cluster_main(ARGC(__VA_ARGS__), ARGV(__VA_ARGS__), no_env)

static char *no_env(const char *name)
{
    (void)name;
    return NULL;
}

START_TEST(test_wants)
{
    ck_assert(WANTS("admin", "cluster"));
    ck_assert(WANTS("admin", "remove-node", "3"));
    ck_assert(WANTS("--json", "admin", "cluster"));
    /* option values are not words */
    ck_assert(WANTS("--server", "admin", "admin", "cluster"));
    ck_assert(WANTS("--ca", "x", "--token-file", "y", "admin", "--json", "cluster"));
    ck_assert(WANTS("--server=h:1", "admin", "remove-node"));
    ck_assert(!WANTS("admin", "token", "list"));
    ck_assert(!WANTS("admin"));
    ck_assert(!WANTS("cluster", "admin"));
    ck_assert(!WANTS("--server", "cluster", "admin", "token"));
    ck_assert(!WANTS("post", "--thread", "admin"));
}
END_TEST

START_TEST(test_usage_errors)
{
    ck_assert_int_eq(MAIN("admin", "cluster", "extra"), TS_CLI_EXIT_USAGE);
    ck_assert_int_eq(MAIN("admin", "remove-node"), TS_CLI_EXIT_USAGE);
    ck_assert_int_eq(MAIN("admin", "remove-node", "0"), TS_CLI_EXIT_USAGE);
    ck_assert_int_eq(MAIN("admin", "remove-node", "x1"), TS_CLI_EXIT_USAGE);
    ck_assert_int_eq(MAIN("admin", "remove-node", "1x"), TS_CLI_EXIT_USAGE);
    ck_assert_int_eq(MAIN("admin", "remove-node", "99999999999999999999999"), TS_CLI_EXIT_USAGE);
    ck_assert_int_eq(MAIN("admin", "cluster", "--thread", "t"), TS_CLI_EXIT_USAGE);
    ck_assert_int_eq(MAIN("admin", "cluster", "--json=1"), TS_CLI_EXIT_USAGE);
    ck_assert_int_eq(MAIN("admin", "cluster", "--server"), TS_CLI_EXIT_USAGE);
    ck_assert_int_eq(MAIN("admin", "cluster", "--help"), TS_CLI_EXIT_OK);
    /* a missing token file is a local failure, before any connection */
    ck_assert_int_eq(MAIN("admin", "cluster", "--token-file", "/nonexistent/token"),
                     TS_CLI_EXIT_CONN);
}
END_TEST

/* A token file and a CA that does not exist: the client cannot be made,
 * which is a local failure (exit 3), not a usage error. */
START_TEST(test_bad_ca_is_exit_3)
{
    char tok[] = "/tmp/tsclutokXXXXXX";
    int fd = mkstemp(tok);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "t\n", 2), 2);
    close(fd);
    int rc = MAIN("admin", "cluster", "--token-file", tok, "--ca", "/nonexistent/ca.pem",
                  "--server", "127.0.0.1:1,127.0.0.1:2");
    unlink(tok);
    ck_assert_int_eq(rc, TS_CLI_EXIT_CONN);
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
    tcase_add_test(tc, test_wants);
    tcase_add_test(tc, test_usage_errors);
    tcase_add_test(tc, test_bad_ca_is_exit_3);
    tcase_add_test(tc, test_print);
    tcase_add_test(tc, test_print_empty);
    suite_add_tcase(s, tc);
    return ts_check_run(s);
}
