/*
 * Integration: threadsyncd run from a config file alone (no flags but
 * --config), posting through raw TLS; SIGHUP applying a new token, new
 * limits and refusing a broken tokens file; --check-config on good and
 * typo'd files.
 *
 * The harness (ts_testnode) passes its own flags, which would win over the
 * file, so it is used only to lay out a scratch node (CA, certificate,
 * tokens); that node is stopped and threadsyncd is started again here with
 * --config only.
 */
#include <check.h>
#include <openssl/evp.h>
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
#include "ts_frame.h"
#include "ts_hello.h"
#include "ts_testnode.h"

static struct ts_testnode node;
static char conf[512], addr_file[512];

static void write_text(const char *path, const char *text, const char *mode)
{
    FILE *f = fopen(path, mode);
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
}

static void write_conf(uint32_t max_frame)
{
    char text[2048];
    snprintf(text, sizeof(text),
             "; written by ts_config_test\n"
             "[node]\nid = 1\ndata_dir = %s\n\n"
             "[listen]\nclient = 127.0.0.1:0\nraft = 127.0.0.1:%u\naddr_file = %s\n\n"
             "[auth]\ntokens = %s\n\n"
             "[limits]\nmax_frame = %u\nheartbeat_ms = 2500\n\n"
             "[log]\nlevel = %s\n",
             node.data_dir, node.raft_port, addr_file, node.tokens, max_frame,
             getenv("TS_TEST_LOG_LEVEL") ? getenv("TS_TEST_LOG_LEVEL") : "info");
    write_text(conf, text, "w");
}

/* Starts threadsyncd with --config conf only, its log to dir/node.log;
 * waits for its address. */
static void spawn_from_config(void)
{
    unlink(addr_file);
    pid_t parent = getpid();
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent || chdir(node.dir) != 0)
            _exit(127);
        ts_testnode_log_to_file(&node, 1);
        execl(TS_THREADSYNCD_PATH, TS_THREADSYNCD_PATH, "--config", conf, (char *)NULL);
        _exit(127);
    }
    node.pid = pid;
    ts_testnode_log_to_file(&node, 0);
    int status = 0;
    int rc = ts_test_await_line(pid, addr_file, node.addr, sizeof(node.addr),
                                ts_test_now_ms() + 20000, &status);
    ck_assert_msg(rc != TS_E_IO, "threadsyncd exited: %d", status);
    ck_assert_msg(rc == TS_OK, "threadsyncd did not listen within 20 s");
}

static void start_node(void)
{
    ck_assert_int_eq(ts_testnode_start(&node, NULL), TS_OK); /* CA, cert, tokens, raft dir */
    ck_assert_int_eq(ts_testnode_kill(&node, SIGTERM), 0);
    snprintf(conf, sizeof(conf), "%s/threadsyncd.conf", node.dir);
    snprintf(addr_file, sizeof(addr_file), "%s/addr-from-config", node.dir);
    node.addr[0] = '\0';
    write_conf(70000);
    spawn_from_config();
}

static void stop_node(void)
{
    ts_testnode_stop(&node);
}

/* Hello with token: TS_OK with the Welcome's limits, or the Error's code. */
static int hello(const char *token, uint32_t *max_frame, uint32_t *heartbeat_ms)
{
    struct ts_raw *r;
    ck_assert_int_eq(ts_raw_connect(node.addr, node.ca, TS_ALPN, &r), TS_OK);
    Threadsync__Frame f;
    Threadsync__Hello h;
    ts_hello_frame(&f, &h, "ts_config_test", token);
    ck_assert_int_eq(ts_raw_send_frame(r, &f), TS_OK);
    Threadsync__Frame *in;
    ck_assert_int_eq(ts_raw_recv(r, 10000, &in), TS_OK);
    int rc;
    if (in->msg_case == THREADSYNC__FRAME__MSG_WELCOME) {
        if (max_frame)
            *max_frame = in->welcome->max_frame;
        if (heartbeat_ms)
            *heartbeat_ms = in->welcome->heartbeat_ms;
        rc = TS_OK;
    } else {
        ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_ERROR);
        rc = in->error->code;
    }
    ts_frame_free(in);
    ts_raw_close(r);
    return rc;
}

static void token_line(const char *role, const char *name, const char *token, char *out,
                       size_t size)
{
    unsigned char md[32];
    unsigned int len = 0;
    char hex[65];
    EVP_Digest(token, strlen(token), md, &len, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++)
        sprintf(hex + (size_t)2 * i, "%02x", md[i]);
    snprintf(out, size, "%s %s %s\n", role, name, hex);
}

START_TEST(test_runs_from_config_file)
{
    uint32_t max_frame = 0, heartbeat_ms = 0;
    ck_assert_int_eq(hello(node.poster_token, &max_frame, &heartbeat_ms), TS_OK);
    ck_assert_uint_eq(max_frame, 70000);   /* [limits] max_frame from the file */
    ck_assert_uint_eq(heartbeat_ms, 2500); /* [limits] heartbeat_ms from the file */

    struct ts_raw *r;
    ck_assert_int_eq(ts_raw_connect(node.addr, node.ca, TS_ALPN, &r), TS_OK);
    ck_assert_int_eq(ts_raw_hello(r, node.poster_token, NULL), TS_OK);
    uint64_t id = 0, seq = 0;
    ck_assert_int_eq(ts_raw_post(r, 1, "conf/t1", 0, "Ann", "from a config file", &id, &seq),
                     TS_OK);
    ck_assert_uint_gt(id, 0);
    ck_assert_uint_gt(seq, 0);
    ts_raw_close(r);
}
END_TEST

START_TEST(test_sighup_reloads_tokens_and_limits)
{
    const char *fresh = "ts_fresh_token_added_while_running_0123456789";
    ck_assert_int_eq(hello(fresh, NULL, NULL), TS_E_UNAUTHENTICATED);

    char line[160];
    token_line("poster", "added-live", fresh, line, sizeof(line));
    write_text(node.tokens, line, "a");
    write_conf(80000);
    ck_assert_int_eq(kill(node.pid, SIGHUP), 0);

    /* the signal is handled on the node's loop: poll for the new token */
    uint64_t deadline = ts_test_now_ms() + 10000;
    int rc;
    uint32_t max_frame = 0, heartbeat_ms = 0;
    while ((rc = hello(fresh, &max_frame, &heartbeat_ms)) != TS_OK && ts_test_poll(deadline))
        ;
    ck_assert_int_eq(rc, TS_OK);
    ck_assert_uint_eq(max_frame, 80000); /* the new limit, for new connections */
    ck_assert_uint_eq(heartbeat_ms, 2500);

    struct ts_raw *r;
    ck_assert_int_eq(ts_raw_connect(node.addr, node.ca, TS_ALPN, &r), TS_OK);
    ck_assert_int_eq(ts_raw_hello(r, fresh, NULL), TS_OK);
    uint64_t id = 0;
    ck_assert_int_eq(ts_raw_post(r, 1, "conf/live", 0, "New", "with a reloaded token", &id, NULL),
                     TS_OK);
    ck_assert_uint_gt(id, 0);
    ts_raw_close(r);

    /* a broken tokens file is refused whole: the table in use stays, while
     * the limits of the same reload still apply (that is how we see it ran) */
    write_text(node.tokens, "poster broken-line not-a-hash\n", "a");
    write_conf(90000);
    ck_assert_int_eq(kill(node.pid, SIGHUP), 0);
    deadline = ts_test_now_ms() + 10000;
    while (hello(node.admin_token, &max_frame, NULL) == TS_OK && max_frame != 90000 &&
           ts_test_poll(deadline))
        ;
    ck_assert_uint_eq(max_frame, 90000);
    ck_assert_int_eq(hello(fresh, NULL, NULL), TS_OK);
    ck_assert_int_eq(hello(node.poster_token, NULL, NULL), TS_OK);

    /* a broken config file keeps the running configuration */
    write_text(conf, "[limits]\nmax_frame = tiny\n", "a");
    size_t mark = ts_testnode_log_mark(&node);
    ck_assert_int_eq(kill(node.pid, SIGHUP), 0);
    ck_assert_msg(ts_testnode_wait_log(&node, mark, "event=reload_failed", 10000),
                  "the reload of a broken config did not run");
    ck_assert_int_eq(hello(fresh, &max_frame, NULL), TS_OK);
    ck_assert_uint_eq(max_frame, 90000);
    ck_assert_int_eq(kill(node.pid, 0), 0); /* still running */
}
END_TEST

/* A token taken out of the tokens file ends its idle connections at the
 * reload, not at their next request. */
START_TEST(test_sighup_removed_token_closes_idle_connection)
{
    const char *leaving = "ts_token_removed_while_connected_0123456789";
    char *before = NULL;
    const char *cat[] = {"/bin/cat", node.tokens, NULL};
    ck_assert_int_eq(ts_test_run(cat, NULL, NULL, &before), 0);
    ck_assert_ptr_nonnull(before);
    char line[160];
    token_line("reader", "leaving", leaving, line, sizeof(line));
    write_text(node.tokens, line, "a");
    ck_assert_int_eq(kill(node.pid, SIGHUP), 0);
    uint64_t deadline = ts_test_now_ms() + 10000;
    while (hello(leaving, NULL, NULL) != TS_OK && ts_test_poll(deadline))
        ;

    struct ts_raw *idle, *kept;
    ck_assert_int_eq(ts_raw_connect(node.addr, node.ca, TS_ALPN, &idle), TS_OK);
    ck_assert_int_eq(ts_raw_hello(idle, leaving, NULL), TS_OK);
    ck_assert_int_eq(ts_raw_connect(node.addr, node.ca, TS_ALPN, &kept), TS_OK);
    ck_assert_int_eq(ts_raw_hello(kept, node.reader_token, NULL), TS_OK);

    write_text(node.tokens, before, "w");
    free(before);
    ck_assert_int_eq(kill(node.pid, SIGHUP), 0);

    /* the idle connection sends nothing: what it receives is the node's
     * doing (a heartbeat drop would close without this Error) */
    Threadsync__Frame *in = NULL;
    ck_assert_int_eq(ts_raw_recv_nonping(idle, 10000, &in), TS_OK);
    ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_ERROR);
    ck_assert_int_eq(in->error->code, THREADSYNC__ERROR_CODE__UNAUTHENTICATED);
    ts_frame_free(in);
    ts_raw_close(idle);

    /* the token is gone for new connections too; one still in the file
     * keeps its connection */
    ck_assert_int_eq(hello(leaving, NULL, NULL), THREADSYNC__ERROR_CODE__UNAUTHENTICATED);
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Ping p = THREADSYNC__PING__INIT;
    p.nonce = 7;
    f.msg_case = THREADSYNC__FRAME__MSG_PING;
    f.ping = &p;
    ck_assert_int_eq(ts_raw_send_frame(kept, &f), TS_OK);
    ck_assert_int_eq(ts_raw_recv_nonping(kept, 10000, &in), TS_OK);
    ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_PONG);
    ts_frame_free(in);
    ts_raw_close(kept);
}
END_TEST

static int check_config(const char *file, char **out)
{
    char cmd[1200];
    snprintf(cmd, sizeof(cmd), "'%s' --check-config '%s' 2>&1", TS_THREADSYNCD_PATH, file);
    const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    return ts_test_run(argv, NULL, NULL, out);
}

START_TEST(test_check_config)
{
    char *out = NULL;
    ck_assert_int_eq(check_config(conf, &out), 0);
    ck_assert_ptr_nonnull(out);
    ck_assert_msg(strstr(out, "\nmax_frame = 70000 ; file"), "output: %s", out);
    ck_assert_msg(strstr(out, "\nheartbeat_ms = 2500 ; file"), "output: %s", out);
    ck_assert_msg(strstr(out, node.tokens), "the tokens file's path is printed: %s", out);
    ck_assert_msg(!strstr(out, node.admin_token), "no token in the output");
    free(out);

    char typo[600];
    snprintf(typo, sizeof(typo), "%s/typo.conf", node.dir);
    write_text(typo, "[node]\nid = 1\n\n[limits]\nheartbeat_ms = 500\nmax_fram = 70000\n", "w");
    out = NULL;
    int code = check_config(typo, &out);
    ck_assert_int_ne(code, 0);
    char where[700];
    snprintf(where, sizeof(where), "%s:6:", typo);
    ck_assert_msg(out && strstr(out, where) && strstr(out, "max_fram"), "output: %s", out);
    free(out);

    write_text(typo, "[node]\nid = 1\n[limits]\nheartbeat_ms = soon\n", "w");
    out = NULL;
    ck_assert_int_ne(check_config(typo, &out), 0);
    snprintf(where, sizeof(where), "%s:4:", typo);
    ck_assert_msg(out && strstr(out, where) && strstr(out, "heartbeat_ms"), "output: %s", out);
    free(out);
    unlink(typo);
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("threadsyncd config");
    TCase *tc = tcase_create("config");
    tcase_add_checked_fixture(tc, start_node, stop_node);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_runs_from_config_file);
    tcase_add_test(tc, test_sighup_reloads_tokens_and_limits);
    tcase_add_test(tc, test_sighup_removed_token_closes_idle_connection);
    tcase_add_test(tc, test_check_config);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    return ts_check_run(config_suite());
}
