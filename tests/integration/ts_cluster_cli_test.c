/*
 * Integration: the cluster commands of the threadsync CLI against a real
 * three-node cluster (`admin cluster` in text and JSON, with a node down;
 * `admin remove-node`, its refusals and its effect), and the sample node
 * configurations in deploy/cluster checked by threadsyncd --check-config.
 */
#include <check.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ts_check_main.h"
#include "threadsync.h"
#include "ts_testcluster.h"
#include "ts_testnode.h"

#define N 3

static struct ts_testnode nodes[N];
static char certs[256];

static void teardown(void)
{
    ts_testcluster_stop(nodes, N, certs);
}

/* Runs the CLI with the common options for nodes order[0..n) and the given
 * token file, then args; stdout in *out (caller frees). The exit code. */
static int cli(const int *order, int n, const char *token_file, const char *const *args, char **out)
{
    const char *servers[N];
    for (int i = 0; i < n; i++)
        servers[i] = nodes[order[i]].addr;
    return ts_test_cli(servers, (size_t)n, nodes[0].ca, token_file, args, NULL, out);
}

static void start_cluster(void)
{
    ts_testcluster_certs(certs, sizeof(certs), "cli", N);
    ts_testcluster_start(nodes, N, certs, NULL);
}

/* The leader's index from `admin cluster --json`, waiting for one. */
static int leader_index(const int *order, int n)
{
    uint64_t deadline = ts_test_now_ms() + 30000;
    int l;
    do {
        char *out = NULL;
        const char *args[] = {"admin", "cluster", "--json", NULL};
        int rc = cli(order, n, nodes[0].token_file, args, &out);
        const char *p = rc == 0 && out ? strstr(out, "\"leader_id\":") : NULL;
        l = p ? atoi(p + strlen("\"leader_id\":")) - 1 : -1;
        free(out);
        if (l >= N || (l >= 0 && !nodes[l].pid))
            l = -1;
    } while (l < 0 && ts_test_poll(deadline));
    return l;
}

START_TEST(test_admin_cluster_and_remove_node)
{
    start_cluster();
    const int order[] = {1, 2, 0};
    int l = leader_index(order, N);
    ck_assert_int_ge(l, 0);
    int f = (l + 1) % N, g = (l + 2) % N;

    /* text: one line per node with its addresses, then who answered */
    char *out = NULL;
    const char *text[] = {"admin", "cluster", NULL};
    ck_assert_int_eq(cli(order, N, nodes[0].token_file, text, &out), 0);
    for (int i = 0; i < N; i++) {
        char line[256];
        snprintf(line, sizeof(line),
                 "node=%d role=voter leader=%d raft=127.0.0.1:%u client=%s "
                 "applied_seq=",
                 i + 1, i == l, nodes[i].raft_port, nodes[i].addr);
        ck_assert_msg(strstr(out, line), "no '%s' in:\n%s", line, out);
    }
    ck_assert_ptr_nonnull(strstr(out, "answered_by=2 leader_id="));
    ck_assert_uint_eq(ts_test_count(out, "applied_seq=down"), 0);
    free(out);

    /* a reader may not ask: refused, exit 1 */
    char reader_file[400];
    snprintf(reader_file, sizeof(reader_file), "%s/reader.token", nodes[0].dir);
    FILE *rf = fopen(reader_file, "w");
    ck_assert_ptr_nonnull(rf);
    fprintf(rf, "%s\n", nodes[0].reader_token);
    fclose(rf);
    ck_assert_int_eq(cli(order, N, reader_file, text, NULL), 1);

    /* one follower down: shown as down, the rest still answer */
    ck_assert(WIFSIGNALED(ts_testnode_kill(&nodes[f], SIGKILL)));
    const int order2[] = {f, g, l}; /* the dead one first: the list moves on */
    const char *json[] = {"admin", "cluster", "--json", NULL};
    ck_assert_int_eq(cli(order2, N, nodes[0].token_file, json, &out), 0);
    ck_assert_uint_eq(ts_test_count(out, "\"role\":\"voter\""), N);
    ck_assert_uint_eq(ts_test_count(out, "\"applied_seq\":null"), 1);
    ck_assert_uint_eq(ts_test_count(out, "\"is_leader\":true"), 1);
    char want[96];
    snprintf(want, sizeof(want), "\"id\":%d,\"role\":\"voter\",\"is_leader\":false", f + 1);
    ck_assert_ptr_nonnull(strstr(out, want));
    free(out);

    /* remove-node: the leader refuses to remove itself, an unknown id is
     * NOT_FOUND; both asked through a follower (NOT_LEADER followed) */
    const int via_follower[] = {g, l};
    char id[24];
    snprintf(id, sizeof(id), "%d", l + 1);
    const char *rm_leader[] = {"admin", "remove-node", id, NULL};
    ck_assert_int_eq(cli(via_follower, 2, nodes[0].token_file, rm_leader, NULL), 1);
    const char *rm_unknown[] = {"admin", "remove-node", "9", NULL};
    ck_assert_int_eq(cli(via_follower, 2, nodes[0].token_file, rm_unknown, NULL), 1);
    snprintf(id, sizeof(id), "%d", f + 1);
    const char *rm_dead[] = {"admin", "remove-node", id, NULL};
    ck_assert_int_eq(cli(via_follower, 2, nodes[0].token_file, rm_dead, &out), 0);
    char removed[48];
    snprintf(removed, sizeof(removed), "removed node=%d\n", f + 1);
    ck_assert_str_eq(out, removed);
    free(out);

    /* two voters left, and they still take writes */
    ck_assert_int_eq(cli(via_follower, 2, nodes[0].token_file, text, &out), 0);
    ck_assert_uint_eq(ts_test_count(out, "role=voter"), 2);
    snprintf(want, sizeof(want), "node=%d ", f + 1);
    ck_assert_ptr_null(strstr(out, want));
    free(out);
    const char *post[] = {"post", "--thread", "cli/after", "--name", "Ann", "--body", "hi", NULL};
    ck_assert_int_eq(cli(via_follower, 2, nodes[0].token_file, post, NULL), 0);
}
END_TEST

/* deploy/cluster/nodeN.conf: each passes --check-config, with its own id
 * and addresses, the same CA and tokens, and nodes 2 and 3 joining node 1. */
START_TEST(test_sample_cluster_configs)
{
    char dir[512];
    snprintf(dir, sizeof(dir), "%s", TS_GEN_CERTS_PATH);
    *strrchr(dir, '/') = '\0'; /* .../deploy */
    char *shown[N];
    for (int i = 0; i < N; i++) {
        char path[600];
        snprintf(path, sizeof(path), "%s/cluster/node%d.conf", dir, i + 1);
        const char *argv[] = {TS_THREADSYNCD_PATH, "--check-config", path, NULL};
        ck_assert_int_eq(ts_test_run(argv, NULL, NULL, &shown[i]), 0);
        char want[128];
        snprintf(want, sizeof(want), "\nid = %d ; file\n", i + 1);
        ck_assert_msg(strstr(shown[i], want), "node%d.conf:\n%s", i + 1, shown[i]);
        snprintf(want, sizeof(want), "\nclient = 10.0.0.%d:7420 ; file\n", i + 1);
        ck_assert_ptr_nonnull(strstr(shown[i], want));
        snprintf(want, sizeof(want), "\nraft = 10.0.0.%d:7421 ; file\n", i + 1);
        ck_assert_ptr_nonnull(strstr(shown[i], want));
        snprintf(want, sizeof(want), "\ncert = /etc/threadsync/node%d.pem ; file\n", i + 1);
        ck_assert_ptr_nonnull(strstr(shown[i], want));
        ck_assert_ptr_nonnull(strstr(shown[i], "\nca = /etc/threadsync/ca.pem ; file\n"));
        ck_assert_ptr_nonnull(strstr(shown[i], "\ntokens = /etc/threadsync/tokens ; file"));
        if (i == 0)
            ck_assert_ptr_null(strstr(shown[i], "\njoin = "));
        else
            ck_assert_ptr_nonnull(strstr(shown[i], "\njoin = 10.0.0.1:7420 ; file\n"));
    }
    for (int i = 0; i < N; i++)
        free(shown[i]);
}
END_TEST

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    Suite *s = suite_create("cluster_cli");
    TCase *tc = tcase_create("cli");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_admin_cluster_and_remove_node);
    tcase_add_test(tc, test_sample_cluster_configs);
    suite_add_tcase(s, tc);
    return ts_check_run(s);
}
