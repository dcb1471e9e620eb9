/*
 * Integration: the threadsync CLI against a real threadsyncd with embedded
 * defaults, run from the node's directory as the README's quick start does:
 * post, get as a tree, watch live, JSON output and exit codes.
 */
#include <check.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ts_check_main.h"
#include "ts_err.h"
#include "ts_testnode.h"

static struct ts_testnode node;

static void start_node(void)
{
    ck_assert_int_eq(ts_testnode_start_default(&node), TS_OK);
}

static void stop_node(void)
{
    ts_testnode_stop(&node);
}

/* Runs threadsync with args in the node's directory (so its defaults find
 * ./threadsync-data), --server set. Returns the exit code; *out is stdout. */
static int cli(char **out, const char *input, const char *const *args)
{
    const char *argv[32];
    size_t a = 0;
    argv[a++] = TS_THREADSYNC_PATH;
    argv[a++] = "--server";
    argv[a++] = node.addr;
    for (size_t i = 0; args[i]; i++)
        argv[a++] = args[i];
    argv[a] = NULL;
    return ts_test_run(argv, node.dir, input, out);
}

static uint64_t field_u64(const char *text, const char *key)
{
    const char *p = strstr(text, key);
    ck_assert_msg(p != NULL, "no %s in: %s", key, text);
    return strtoull(p + strlen(key), NULL, 10);
}

START_TEST(test_post_get_tree)
{
    char *out;
    const char *p1[] = {"post",    "--thread",    "demo/hello", "--name", "Ann",
                        "--title", "Hello world", "--body",     "First!", NULL};
    ck_assert_int_eq(cli(&out, NULL, p1), 0);
    uint64_t a = field_u64(out, "id=");
    ck_assert_uint_gt(field_u64(out, "seq="), 0);
    free(out);
    char parent[32];
    snprintf(parent, sizeof(parent), "%llu", (unsigned long long)a);
    const char *p2[] = {"post",   "--thread", "demo/hello", "--parent", parent,
                        "--name", "Bob",      "--body",     "Welcome",  NULL};
    ck_assert_int_eq(cli(&out, NULL, p2), 0);
    uint64_t b = field_u64(out, "id=");
    free(out);
    snprintf(parent, sizeof(parent), "%llu", (unsigned long long)b);
    /* body from stdin, two lines */
    const char *p3[] = {"post", "--thread", "demo/hello", "--parent", parent, "--name", "Cy", NULL};
    ck_assert_int_eq(cli(&out, "Thanks\nboth of you\n", p3), 0);
    free(out);

    const char *g[] = {"get", "--thread", "demo/hello", NULL};
    ck_assert_int_eq(cli(&out, NULL, g), 0);
    ck_assert_msg(strstr(out, "demo/hello") && strstr(out, "3 comments"), "%s", out);
    ck_assert_msg(strstr(out, "\"Hello world\""), "%s", out);
    /* nesting: each reply two spaces deeper than its parent */
    const char *ann = strstr(out, " Ann ");
    const char *bob = strstr(out, " Bob ");
    const char *cy = strstr(out, " Cy ");
    ck_assert(ann && bob && cy && ann < bob && bob < cy);
    const char *line_a = ann, *line_b = bob, *line_c = cy;
    while (line_a > out && line_a[-1] != '\n')
        line_a--;
    while (line_b > out && line_b[-1] != '\n')
        line_b--;
    while (line_c > out && line_c[-1] != '\n')
        line_c--;
    size_t ia = strspn(line_a, " "), ib = strspn(line_b, " "), ic = strspn(line_c, " ");
    ck_assert_uint_eq(ib, ia + 2);
    ck_assert_uint_eq(ic, ib + 2);
    ck_assert_msg(strstr(out, "both of you"), "%s", out);
    free(out);

    const char *gj[] = {"get", "--thread", "demo/hello", "--json", NULL};
    ck_assert_int_eq(cli(&out, NULL, gj), 0);
    ck_assert_msg(out[0] == '{' && strstr(out, "\"comments\"") && strstr(out, "\"Welcome\""), "%s",
                  out);
    free(out);
}
END_TEST

START_TEST(test_watch_sees_posts_within_a_second)
{
    /* its log says when the watcher's Subscribe is in */
    const char *info[] = {"--log-level", "info", NULL};
    ck_assert_int_eq(ts_testnode_restart_logged(&node, info), TS_OK);
    size_t mark = ts_testnode_log_mark(&node);
    int pipefd[2];
    ck_assert_int_eq(pipe(pipefd), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(pipefd[1], 1);
        close(pipefd[0]);
        if (chdir(node.dir) != 0)
            _exit(127);
        execl(TS_THREADSYNC_PATH, TS_THREADSYNC_PATH, "--server", node.addr, "watch", (char *)0);
        _exit(127);
    }
    close(pipefd[1]);
    ck_assert_msg(ts_testnode_wait_log(&node, mark, "event=subscribe", 10000),
                  "watch did not subscribe");
    char buf[8192];
    size_t len = 0;
    for (int i = 0; i < 3; i++) {
        char body[32], *out;
        snprintf(body, sizeof(body), "watched-%d", i);
        const char *p[] = {"post", "--thread", "demo/watch", "--name", "Ann", "--body", body, NULL};
        ck_assert_int_eq(cli(&out, NULL, p), 0);
        free(out);
        uint64_t posted = ts_test_now_ms();
        while (!memmem(buf, len, body, strlen(body))) {
            uint64_t now = ts_test_now_ms();
            ck_assert_msg(now - posted < 1000, "watch did not print %s within 1 s", body);
            struct pollfd pfd = {.fd = pipefd[0], .events = POLLIN};
            if (poll(&pfd, 1, (int)(1000 - (now - posted))) <= 0)
                continue;
            ssize_t n = read(pipefd[0], buf + len, sizeof(buf) - len - 1);
            ck_assert_int_gt(n, 0);
            len += (size_t)n;
        }
    }
    buf[len] = '\0';
    ck_assert_msg(strstr(buf, "thread=demo/watch") && strstr(buf, "author=Ann"), "%s", buf);
    kill(pid, SIGINT);
    int status;
    waitpid(pid, &status, 0);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 0);
    close(pipefd[0]);
}
END_TEST

START_TEST(test_exit_codes)
{
    char *out;
    /* 2: usage */
    const char *u[] = {"post", "--thread", NULL};
    ck_assert_int_eq(cli(&out, NULL, u), 2);
    free(out);
    /* 1: the server refused (unknown parent) */
    const char *nf[] = {"post",   "--thread", "demo/x", "--parent", "999999",
                        "--name", "Ann",      "--body", "orphan",   NULL};
    ck_assert_int_eq(cli(&out, NULL, nf), 1);
    free(out);
    const char *g[] = {"get", "--thread", "demo/none", NULL};
    ck_assert_int_eq(cli(&out, NULL, g), 1);
    free(out);
    /* 3: nobody listening */
    const char *argv[] = {TS_THREADSYNC_PATH, "--server", "127.0.0.1:1", "get",
                          "--thread",         "demo/x",   NULL};
    ck_assert_int_eq(ts_test_run(argv, node.dir, NULL, &out), 3);
    free(out);
    /* ... and says so, not "i/o error (IO)" */
    const char *sh[] = {"/bin/sh", "-c", "\"$0\" --server 127.0.0.1:1 get --thread demo/x 2>&1",
                        TS_THREADSYNC_PATH, NULL};
    ck_assert_int_eq(ts_test_run(sh, node.dir, NULL, &out), 3);
    ck_assert_str_eq(out, "error: connection refused: is threadsyncd running on 127.0.0.1:1?\n");
    free(out);
    /* 3: a CA that did not sign the server */
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
             "-keyout %s/o.key -out %s/o.pem -subj /CN=o -days 2 2>/dev/null",
             node.dir, node.dir);
    ck_assert_int_eq(system(cmd), 0);
    char other[512];
    snprintf(other, sizeof(other), "%s/o.pem", node.dir);
    const char *wca[] = {"--ca", other, "get", "--thread", "demo/x", NULL};
    ck_assert_int_eq(cli(&out, NULL, wca), 3);
    free(out);
    /* 1 with a --json post result otherwise fine */
    const char *pj[] = {"post", "--json", "--thread", "demo/j", "--name",
                        "Ann",  "--body", "j",        NULL};
    ck_assert_int_eq(cli(&out, NULL, pj), 0);
    ck_assert_msg(out[0] == '{' && strstr(out, "\"id\"") && strstr(out, "\"seq\""), "%s", out);
    free(out);
}
END_TEST

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    Suite *s = suite_create("cli");
    TCase *tc = tcase_create("cli");
    tcase_add_checked_fixture(tc, start_node, stop_node);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_post_get_tree);
    tcase_add_test(tc, test_watch_sees_posts_within_a_second);
    tcase_add_test(tc, test_exit_codes);
    suite_add_tcase(s, tc);
    return ts_check_run(s);
}
