/*
 * Integration: the mirror's acceptance run. 10,000 comments in 100
 * threads, `threadsync verify` while posts continue, SIGKILL of the mirror
 * and resume, then a clean verify. About 7 s under ASan (tests/harness/
 * ts_testmirror.h has the node, posting and CLI helpers).
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pty.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ts_check_main.h"
#include "ts_err.h"
#include "ts_frame.h"
#include "ts_hello.h"
#include "ts_mirror_render.h"
#include "ts_testmirror.h"

/* ---- acceptance ------------------------------------------------------------------ */

/* A child that posts to the threads of p until killed. */
static pid_t poster_start(struct posted *p, unsigned seed)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        for (unsigned i = 0;; i++) {
            post_many(p, 20, seed + i);
            /* paced, not waiting for anything: a steady trickle, so the
             * mirror has posts to follow without the node being swamped */
            usleep(100000);
        }
    }
    return pid;
}

static void poster_stop(pid_t pid)
{
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
}

/* The server's last seq, as the Welcome says. */
static uint64_t server_seq(void)
{
    struct ts_raw *r;
    ck_assert_int_eq(ts_raw_connect(node.addr, node.ca, "threadsync/1", &r), TS_OK);
    Threadsync__Frame f;
    Threadsync__Hello h;
    ts_hello_frame(&f, &h, NULL, node.reader_token);
    ck_assert_int_eq(ts_raw_send_frame(r, &f), TS_OK);
    Threadsync__Frame *in;
    ck_assert_int_eq(ts_raw_recv_nonping(r, 10000, &in), TS_OK);
    ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_WELCOME);
    uint64_t seq = in->welcome->last_seq;
    ts_frame_free(in);
    ts_raw_close(r);
    return seq;
}

/* Waits until posts took the server past seq. */
static void wait_server_past(uint64_t seq, int timeout_s)
{
    uint64_t end = ts_test_now_ms() + (uint64_t)timeout_s * 1000;
    while (server_seq() <= seq)
        ck_assert_msg(ts_test_poll(end), "no post reached the server past seq %" PRIu64, seq);
}

START_TEST(test_acceptance_10k)
{
    start(NULL);
    uint64_t t0 = ts_test_now_ms();
    struct posted p;
    posted_init(&p, "soak", 100);
    post_many(&p, 10000, 7);
    uint64_t t_posted = ts_test_now_ms();
    fprintf(stderr, "acceptance: posted 10000 comments in 100 threads in %.1f s\n",
            (double)(t_posted - t0) / 1000);

    pid_t m = cli_start("mirror", "soak1", NULL);
    wait_cursor(p.last_seq, 300);
    uint64_t t_synced = ts_test_now_ms();
    fprintf(stderr, "acceptance: first sync of 10000 comments in %.1f s\n",
            (double)(t_synced - t_posted) / 1000);
    verify_ok(100, 10000);

    /* Stays equal while posts continue: checked after each of five
     * steps of new posts reaching the server. */
    pid_t poster = poster_start(&p, 1000);
    for (int i = 0; i < 5; i++) {
        wait_server_past(server_seq(), 60);
        verify_ok(100, 0);
    }
    /* Killed, and restarted while posts go on: it resumes from its cursor. */
    kill(m, SIGKILL);
    int status;
    waitpid(m, &status, 0);
    uint64_t killed_at = db_cursor();
    ck_assert_uint_ge(killed_at, p.last_seq);
    wait_server_past(killed_at, 60); /* posts went on while it was down */
    m = cli_start("mirror", "soak2", NULL);
    /* and it resumed while they go on */
    uint64_t end = ts_test_now_ms() + 60000;
    while (db_cursor() <= killed_at)
        ck_assert_msg(ts_test_poll(end), "the mirror did not resume");
    poster_stop(poster);
    uint64_t head = server_seq();
    /* Every post seen by the server is an event up to some seq <= head;
     * the mirror reaches the last event's seq. */
    end = ts_test_now_ms() + 60000;
    char out_path[600];
    snprintf(out_path, sizeof(out_path), "%s/verify.out", node.dir);
    for (;;) {
        char *out, *err;
        int code = cli("verify", NULL, &out, &err);
        free(err);
        if (code == 0) {
            free(out);
            break;
        }
        ck_assert_msg(ts_test_poll(end), "mirror not equal after posting stopped: %s", out);
        free(out);
    }
    kill(m, SIGINT);
    ck_assert_int_eq(cli_wait(m, 30), 0);
    char path[600];
    snprintf(path, sizeof(path), "%s/soak2.err", node.dir);
    char *err = slurp(path);
    ck_assert_uint_eq(field(err, "from="), killed_at);
    ck_assert_uint_eq(field(err, "snapshots="), 0);
    uint64_t events = field(err, "events=");
    ck_assert_msg(events < 2000, "resumed with %" PRIu64 " events: a resync? %s", events, err);
    fprintf(stderr,
            "acceptance: resumed from %" PRIu64 " (head %" PRIu64 "): %" PRIu64
            " events, no snapshot; total %.1f s\n",
            killed_at, head, events, (double)(ts_test_now_ms() - t0) / 1000);
    free(err);
    posted_free(&p);
}
END_TEST

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    Suite *s = suite_create("mirror");
    TCase *tc = tcase_create("acceptance");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_acceptance_10k);
    suite_add_tcase(s, tc);
    return ts_check_run(s);
}
