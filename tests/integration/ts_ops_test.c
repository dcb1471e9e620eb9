/*
 * Integration: what an operator sees of a real threadsyncd.
 *
 *   - /metrics scraped repeatedly while a child process posts, every page
 *     read by the strict text-format parser (ts_promparse), counters never
 *     going back, and the figures matching what the test did (posts,
 *     connections and subscribers by role, errors by code, lag, raft);
 *   - /healthz 200 "ok" on a healthy node, 404 elsewhere, HEAD without body;
 *   - threadsync admin backup while posts flow, threadsyncd --restore into a
 *     new node, the same state digest (and seq) there, new ids above every
 *     restored one, the same state after a restart; refusals: a non-admin
 *     token, a damaged file, a data directory that already has raft data;
 *   - resumed TLS sessions counted, and the listener's accept queue.
 */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ts_check_main.h"
#include "ts_err.h"
#include "ts_frame.h"
#include "ts_promparse.h"
#include "ts_testnode.h"

static struct ts_testnode node, node2;
static char metrics_addr[64];

static void start_node(void)
{
    snprintf(metrics_addr, sizeof(metrics_addr), "127.0.0.1:%u", ts_test_free_port());
    const char *extra[] = {"--metrics-listen", metrics_addr, NULL};
    ck_assert_int_eq(ts_testnode_start(&node, extra), TS_OK);
}

static void stop_nodes(void)
{
    ts_testnode_stop(&node);
    if (node2.dir[0])
        ts_testnode_stop(&node2);
}

/* One HTTP exchange; returns the status, *body (malloc'd) the body, checked
 * against Content-Length. */
static int http(const char *method, const char *path, char **body)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_port = htons((uint16_t)atoi(strrchr(metrics_addr, ':') + 1));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    char req[256];
    int n = snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: %s\r\n\r\n", method, path,
                     metrics_addr);
    ck_assert_int_eq(send(fd, req, (size_t)n, MSG_NOSIGNAL), n);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (len + 1 == cap)
            buf = realloc(buf, cap *= 2);
        struct pollfd p = {fd, POLLIN, 0};
        ck_assert_msg(poll(&p, 1, 10000) == 1, "no answer");
        ssize_t r = recv(fd, buf + len, cap - len - 1, 0);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    buf[len] = '\0';
    close(fd);
    int status = 0;
    ck_assert_int_eq(sscanf(buf, "HTTP/1.1 %d ", &status), 1);
    char *sep = strstr(buf, "\r\n\r\n");
    ck_assert_ptr_nonnull(sep);
    const char *cl = strstr(buf, "\r\nContent-Length: ");
    ck_assert_msg(cl && cl < sep, "no Content-Length");
    size_t clen = strtoull(cl + 18, NULL, 10);
    size_t blen = len - (size_t)(sep + 4 - buf);
    ck_assert_uint_eq(blen, strcmp(method, "HEAD") ? clen : 0);
    *body = strdup(sep + 4);
    free(buf);
    return status;
}

static struct ts_prom *scrape(void)
{
    char *body;
    ck_assert_int_eq(http("GET", "/metrics", &body), 200);
    struct ts_prom *p;
    char err[256];
    ck_assert_msg(ts_prom_parse(body, strlen(body), &p, err, sizeof(err)) == 0, "%s", err);
    free(body);
    return p;
}

static double get(const struct ts_prom *p, const char *name, const char *labels)
{
    double v;
    ck_assert_msg(ts_prom_get(p, name, labels, &v), "no %s{%s}", name, labels ? labels : "");
    return v;
}

/* Posts n comments over threads ops/0..ops/4 as the poster. */
static void post_many(const struct ts_testnode *n, int count, uint64_t first_rid)
{
    struct ts_raw *r;
    int role;
    ck_assert_int_eq(ts_raw_connect(n->addr, n->ca, TS_ALPN, &r), TS_OK);
    ck_assert_int_eq(ts_raw_hello(r, n->poster_token, &role), TS_OK);
    for (int i = 0; i < count; i++) {
        char thread[32], body[64];
        snprintf(thread, sizeof(thread), "ops/%d", i % 5);
        snprintf(body, sizeof(body), "comment %d", i);
        uint64_t id, seq;
        ck_assert_int_eq(ts_raw_post(r, first_rid + (uint64_t)i, thread, 0, "Ann", body, &id, &seq),
                         TS_OK);
    }
    ts_raw_close(r);
}

/* A child that posts count comments; returns its pid. */
static pid_t poster_child(const struct ts_testnode *n, int count)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        post_many(n, count, 1000);
        _exit(0);
    }
    return pid;
}

static void wait_child(pid_t pid)
{
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "poster child: %d", status);
}

START_TEST(test_metrics_while_posting)
{
    /* a subscribed reader, for the role gauges and the lag histogram */
    struct ts_raw *reader = ts_testnode_subscriber(&node, node.reader_token, 0, NULL);

    const int posts = 300;
    pid_t child = poster_child(&node, posts);
    double last_frames = 0, last_commits = 0;
    int scrapes = 0;
    uint64_t deadline = ts_test_now_ms() + 120000;
    for (;;) {
        int status;
        int done = waitpid(child, &status, WNOHANG) == child;
        struct ts_prom *p = scrape();
        double frames = get(p, "threadsync_frames_received_total", NULL);
        double commits = get(p, "threadsync_post_commit_seconds_count", NULL);
        ck_assert(frames >= last_frames && commits >= last_commits);
        last_frames = frames;
        last_commits = commits;
        ts_prom_free(p);
        scrapes++;
        if (done) {
            ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d", status);
            break;
        }
        ck_assert_msg(ts_test_poll(deadline), "the poster child did not finish in 120 s");
    }
    ck_assert_int_ge(scrapes, 2);

    /* one refused request, for errors by code */
    struct ts_raw *poster = ts_testnode_connect_ok(&node, node.poster_token);
    Threadsync__Frame *in = ts_raw_get(poster, 7, "no/such/thread", 10000);
    ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_ERROR);
    ts_frame_free(in);

    struct ts_prom *p = scrape();
    ck_assert(get(p, "threadsync_post_commit_seconds_count", NULL) >= posts);
    ck_assert(get(p, "threadsync_post_commit_seconds_bucket", "le=\"+Inf\"") >= posts);
    ck_assert(get(p, "threadsync_frames_received_total", NULL) >= posts + 3);
    ck_assert(get(p, "threadsync_frames_sent_total", NULL) >= posts + 3);
    ck_assert(get(p, "threadsync_received_bytes_total", NULL) >
              get(p, "threadsync_frames_received_total", NULL) * 4);
    ck_assert(get(p, "threadsync_events_applied_total", NULL) >= posts);
    ck_assert(get(p, "threadsync_entries_applied_total", NULL) >= posts);
    ck_assert(get(p, "threadsync_store_comments", NULL) == posts);
    ck_assert(get(p, "threadsync_store_threads", NULL) == 5);
    ck_assert(get(p, "threadsync_errors_total", "code=\"NOT_FOUND\"") == 1);
    ck_assert(get(p, "threadsync_connections", "role=\"reader\"") == 1);
    ck_assert(get(p, "threadsync_connections", "role=\"poster\"") == 1);
    ck_assert(get(p, "threadsync_connections", "role=\"admin\"") == 0);
    ck_assert(get(p, "threadsync_subscribers", "role=\"reader\"") == 1);
    ck_assert(get(p, "threadsync_subscriber_lag_seqs_count", NULL) == 1);
    ck_assert(get(p, "threadsync_connections_accepted_total", NULL) >= 3);
    ck_assert(get(p, "threadsync_tls_handshakes_total", NULL) >= 3);
    ck_assert(get(p, "threadsync_tls_resumptions_total", NULL) >= 0);
    ck_assert(get(p, "threadsync_raft_leader", NULL) == 1);
    ck_assert(get(p, "threadsync_raft_has_leader", NULL) == 1);
    ck_assert(get(p, "threadsync_raft_term", NULL) >= 1);
    double commit = get(p, "threadsync_raft_commit_index", NULL);
    ck_assert(commit >= posts);
    ck_assert(get(p, "threadsync_raft_applied_index", NULL) == commit);
    ck_assert(get(p, "threadsync_raft_last_index", NULL) >= commit);
    ck_assert(get(p, "threadsync_store_last_seq", NULL) <= commit);
    ck_assert(get(p, "threadsync_healthy", NULL) == 1);
    ck_assert(get(p, "threadsync_raft_snapshots_total", NULL) >= 0);
    /* The posts' entries were carved from the pool: at least one chunk. */
    ck_assert(get(p, "threadsync_raft_entry_pool_bytes", NULL) >= 1 << 20);
    ck_assert_str_eq(ts_prom_type(p, "threadsync_subscriber_lag_seqs"), "histogram");
    ck_assert_str_eq(ts_prom_type(p, "threadsync_errors_total"), "counter");
    ck_assert_str_eq(ts_prom_type(p, "threadsync_connections"), "gauge");
    ts_prom_free(p);

    ts_raw_close(poster);
    ts_raw_close(reader);
}
END_TEST

START_TEST(test_healthz_and_paths)
{
    char *body;
    ck_assert_int_eq(http("GET", "/healthz", &body), 200);
    ck_assert_str_eq(body, "ok\n");
    free(body);
    ck_assert_int_eq(http("HEAD", "/metrics", &body), 200);
    ck_assert_str_eq(body, "");
    free(body);
    ck_assert_int_eq(http("GET", "/nope", &body), 404);
    free(body);
    ck_assert_int_eq(http("DELETE", "/metrics", &body), 405);
    free(body);
}
END_TEST

/* ---- backup and restore ---- */

static int cli(const struct ts_testnode *n, const char *token_file, char **out,
               const char *const *args)
{
    const char *server[] = {n->addr};
    return ts_test_cli(server, 1, n->ca, token_file, args, n->dir, out);
}

static uint64_t field_u64(const char *text, const char *key)
{
    const char *p = strstr(text, key);
    ck_assert_msg(p != NULL, "no %s in: %s", key, text);
    return strtoull(p + strlen(key), NULL, 10);
}

static void field_str(const char *text, const char *key, char dst[65])
{
    const char *p = strstr(text, key);
    ck_assert_msg(p != NULL, "no %s in: %s", key, text);
    ck_assert_int_eq(sscanf(p + strlen(key), "%64[0-9a-f]", dst), 1);
    ck_assert_uint_eq(strlen(dst), 64);
}

/* Max comment id over threads ops/0..4 on n (0 when none). */
static uint64_t max_comment_id(const struct ts_testnode *n, uint64_t *count)
{
    struct ts_raw *r;
    int role;
    ck_assert_int_eq(ts_raw_connect(n->addr, n->ca, TS_ALPN, &r), TS_OK);
    ck_assert_int_eq(ts_raw_hello(r, n->admin_token, &role), TS_OK);
    uint64_t max = 0;
    *count = 0;
    for (int t = 0; t < 5; t++) {
        char key[16];
        snprintf(key, sizeof(key), "ops/%d", t);
        Threadsync__Frame *in = ts_raw_get(r, (uint64_t)t + 1, key, 10000);
        if (in->msg_case == THREADSYNC__FRAME__MSG_RESULT) {
            const Threadsync__GetResult *gr = in->result->get;
            for (size_t i = 0; i < gr->n_comments; i++) {
                if (gr->comments[i]->id > max)
                    max = gr->comments[i]->id;
                (*count)++;
            }
        }
        ts_frame_free(in);
    }
    ts_raw_close(r);
    return max;
}

START_TEST(test_backup_while_posting_and_restore)
{
    post_many(&node, 60, 1);
    pid_t child = poster_child(&node, 400);
    char backup[512], out_digest[65], b_digest[65];
    snprintf(backup, sizeof(backup), "%s/node.backup", node.dir);
    const char *args[] = {"admin", "backup", "--out", backup, NULL};
    char *out;
    ck_assert_int_eq(cli(&node, node.token_file, &out, args), 0);
    uint64_t seq = field_u64(out, " seq=");
    uint64_t comments = field_u64(out, " comments=");
    uint64_t bytes = field_u64(out, " bytes=");
    field_str(out, " state_digest=", out_digest);
    free(out);
    wait_child(child);
    ck_assert_uint_ge(comments, 60);
    struct stat st;
    ck_assert_int_eq(stat(backup, &st), 0);
    ck_assert_uint_eq((uint64_t)st.st_size, bytes);
    ck_assert_uint_eq(st.st_mode & 0777, 0600); /* it holds e-mail addresses */

    /* a new node from the backup */
    const char *extra[] = {"--restore", backup, NULL};
    ck_assert_int_eq(ts_testnode_start(&node2, extra), TS_OK);
    const char *dargs[] = {"admin", "digest", NULL};
    ck_assert_int_eq(cli(&node2, node2.token_file, &out, dargs), 0);
    ck_assert_uint_eq(field_u64(out, "seq="), seq);
    ck_assert_uint_eq(field_u64(out, " comments="), comments);
    field_str(out, " digest=", b_digest);
    free(out);
    ck_assert_str_eq(b_digest, out_digest);
    uint64_t restored;
    uint64_t max_id = max_comment_id(&node2, &restored);
    ck_assert_uint_eq(restored, comments);
    ck_assert_uint_le(max_id, seq);

    /* new writes number after the restored ones */
    struct ts_raw *r;
    int role;
    ck_assert_int_eq(ts_raw_connect(node2.addr, node2.ca, TS_ALPN, &r), TS_OK);
    ck_assert_int_eq(ts_raw_hello(r, node2.poster_token, &role), TS_OK);
    uint64_t id, nseq;
    ck_assert_int_eq(ts_raw_post(r, 1, "ops/0", 0, "Zed", "after restore", &id, &nseq), TS_OK);
    ts_raw_close(r);
    ck_assert_uint_gt(id, seq);
    ck_assert_uint_gt(id, max_id);
    ck_assert_uint_gt(nseq, seq);

    /* the same state after a plain restart */
    ck_assert_int_eq(cli(&node2, node2.token_file, &out, dargs), 0);
    field_str(out, " digest=", b_digest);
    free(out);
    ck_assert_int_eq(ts_testnode_kill(&node2, SIGTERM), 0);
    ck_assert_int_eq(ts_testnode_restart(&node2, NULL), TS_OK);
    ck_assert_int_eq(cli(&node2, node2.token_file, &out, dargs), 0);
    char again[65];
    field_str(out, " digest=", again);
    ck_assert_uint_eq(field_u64(out, "seq="), nseq);
    free(out);
    ck_assert_str_eq(again, b_digest);

    /* --restore on a directory with raft data is refused; the data stays */
    ck_assert_int_eq(ts_testnode_kill(&node2, SIGTERM), 0);
    ck_assert_int_ne(ts_testnode_restart(&node2, extra), TS_OK);
    ck_assert_int_eq(ts_testnode_restart(&node2, NULL), TS_OK);
    ck_assert_int_eq(cli(&node2, node2.token_file, &out, dargs), 0);
    field_str(out, " digest=", again);
    free(out);
    ck_assert_str_eq(again, b_digest);
}
END_TEST

START_TEST(test_backup_refusals)
{
    post_many(&node, 5, 1);
    char backup[512], tok[512];
    snprintf(backup, sizeof(backup), "%s/x.backup", node.dir);
    snprintf(tok, sizeof(tok), "%s/poster.token", node.dir);
    FILE *f = fopen(tok, "w");
    fprintf(f, "%s\n", node.poster_token);
    fclose(f);
    const char *args[] = {"admin", "backup", "--out", backup, NULL};
    char *out;
    ck_assert_int_eq(cli(&node, tok, &out, args), 1); /* FORBIDDEN: refused */
    free(out);
    ck_assert_int_ne(access(backup, F_OK), 0); /* nothing written */
    ck_assert_int_eq(cli(&node, node.token_file, &out, args), 0);
    free(out);

    /* one flipped byte: the node refuses to start from it */
    FILE *b = fopen(backup, "r+");
    fseek(b, -3, SEEK_END);
    int c = fgetc(b);
    fseek(b, -3, SEEK_END);
    fputc(c ^ 0x40, b);
    fclose(b);
    const char *extra[] = {"--restore", backup, NULL};
    ck_assert_int_ne(ts_testnode_start(&node2, extra), TS_OK);
    char raft[512];
    snprintf(raft, sizeof(raft), "%s/raft/metadata1", node2.data_dir);
    ck_assert_int_ne(access(raft, F_OK), 0); /* nothing seeded */
}
END_TEST

/* ---- logs ---- */

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* At debug level, through hellos (good and bad), a post with an e-mail and
 * an idempotency key, a refused request, a subscription, garbage input and
 * a backup: no secret reaches the log, and every line about a connection
 * names it, its peer and its role. */
START_TEST(test_logs_name_connections_and_keep_secrets)
{
    char log[512];
    snprintf(log, sizeof(log), "%s/node.log", node.dir);
    ck_assert_int_eq(ts_testnode_kill(&node, SIGTERM), 0);
    int saved = dup(2);
    FILE *lf = fopen(log, "w");
    ck_assert_ptr_nonnull(lf);
    dup2(fileno(lf), 2); /* the node inherits it */
    const char *extra[] = {"--metrics-listen", metrics_addr, "--log-level", "debug", NULL};
    int rc = ts_testnode_restart(&node, extra);
    dup2(saved, 2);
    close(saved);
    fclose(lf);
    ck_assert_int_eq(rc, TS_OK);

    const char *wrong = "ts_wrong_token_0123456789abcdef0123456789";
    struct ts_raw *r;
    int role;
    ck_assert_int_eq(ts_raw_connect(node.addr, node.ca, TS_ALPN, &r), TS_OK);
    ck_assert_int_eq(ts_raw_hello(r, wrong, &role), TS_E_UNAUTHENTICATED);
    ts_raw_close(r);

    const char *email = "secret.person@example.org", *idem = "idem-secret-key-42";
    r = ts_testnode_connect_ok(&node, node.poster_token);
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Post p = THREADSYNC__POST__INIT;
    p.request_id = 1;
    p.idempotency_key = (char *)idem;
    p.thread_key = "logs/t";
    p.author_name = "Ann";
    p.author_email = (char *)email;
    p.body = "hello";
    f.msg_case = THREADSYNC__FRAME__MSG_POST;
    f.post = &p;
    ck_assert_int_eq(ts_raw_send_frame(r, &f), TS_OK);
    Threadsync__Frame *in;
    ck_assert_int_eq(ts_raw_recv_nonping(r, 10000, &in), TS_OK);
    ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_RESULT);
    ts_frame_free(in);
    ts_frame_free(ts_raw_get(r, 2, "logs/none", 10000));
    const uint8_t garbage[] = {0, 0, 0, 3, 0xff, 0xff, 0xff};
    ck_assert_int_eq(ts_raw_send(r, garbage, sizeof(garbage)), TS_OK);
    while (ts_raw_recv(r, 5000, &in) == TS_OK)
        ts_frame_free(in); /* the Error, then the close */
    ts_raw_close(r);

    char backup[512];
    snprintf(backup, sizeof(backup), "%s/logs.backup", node.dir);
    const char *args[] = {"admin", "backup", "--out", backup, NULL};
    char *out;
    ck_assert_int_eq(cli(&node, node.token_file, &out, args), 0);
    free(out);
    char *body;
    ck_assert_int_eq(http("GET", "/metrics", &body), 200);
    free(body);
    ck_assert_int_eq(ts_testnode_kill(&node, SIGTERM), 0);

    char *text = read_file(log);
    const char *secrets[] = {node.admin_token,
                             node.poster_token,
                             node.reader_token,
                             node.moderator_token,
                             wrong,
                             email,
                             idem};
    for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++)
        ck_assert_msg(!strstr(text, secrets[i]), "the log holds a secret: %s", secrets[i]);
    int conn_lines = 0, hellos = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (!strstr(line, " conn="))
            continue;
        conn_lines++;
        hellos += strstr(line, "event=hello") != NULL;
        ck_assert_msg(strstr(line, " peer=") && strstr(line, " role="),
                      "line without peer/role: %s", line);
    }
    ck_assert_int_ge(hellos, 2);
    ck_assert_int_ge(conn_lines, 10);
    free(text);
}
END_TEST

/* A reconnect storm is cheap only if it is made of resumed handshakes that
 * never wait in the kernel: clients that come back resume their TLS 1.3
 * sessions (tickets) through the I/O threads, the node counts each, and its
 * listener's accept queue is as deep as the host allows (with 1024 a storm
 * of 5,000 overflowed it, and each connection that found it full waited a
 * second for a retransmitted handshake). */
START_TEST(test_resumptions_counted_and_backlog)
{
    const char *extra[] = {"--metrics-listen", metrics_addr, "--io-threads", "2", NULL};
    ck_assert_int_eq(ts_testnode_restart(&node, extra), TS_OK);
    struct ts_raw *r;
    int role;
    ck_assert_int_eq(ts_raw_connect(node.addr, node.ca, TS_ALPN, &r), TS_OK);
    /* the Welcome comes after the tickets */
    ck_assert_int_eq(ts_raw_hello(r, node.reader_token, &role), TS_OK);
    ck_assert(!ts_raw_resumed(r));
    SSL_SESSION *sess = ts_raw_session(r);
    ck_assert(sess && SSL_SESSION_is_resumable(sess));
    /* OpenSSL drops the session of a connection freed without close_notify */
    ts_raw_shutdown_write(r);
    ts_raw_close(r);
    enum { AGAIN = 3 };
    for (int i = 0; i < AGAIN; i++) {
        ck_assert_int_eq(ts_raw_connect_session(node.addr, node.ca, TS_ALPN, sess, &r), TS_OK);
        ck_assert_int_eq(ts_raw_hello(r, node.reader_token, &role), TS_OK);
        ck_assert_msg(ts_raw_resumed(r), "reconnection %d not resumed", i);
        ts_raw_shutdown_write(r);
        ts_raw_close(r);
    }
    SSL_SESSION_free(sess);
    struct ts_prom *p = scrape();
    ck_assert(get(p, "threadsync_tls_handshakes_total", NULL) == 1 + AGAIN);
    ck_assert(get(p, "threadsync_tls_resumptions_total", NULL) == AGAIN);
    ts_prom_free(p);

    /* ss shows a listener's accept queue limit as its Send-Q */
    long somaxconn = 0;
    FILE *f = fopen("/proc/sys/net/core/somaxconn", "r");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fscanf(f, "%ld", &somaxconn), 1);
    fclose(f);
    char filter[64];
    snprintf(filter, sizeof(filter), "sport = :%s", strrchr(node.addr, ':') + 1);
    const char *argv[] = {"/usr/bin/ss", "-ltnH", filter, NULL};
    char *out = NULL;
    ck_assert_int_eq(ts_test_run(argv, NULL, NULL, &out), 0);
    long recv_q = -1, send_q = -1;
    ck_assert_msg(sscanf(out, "LISTEN %ld %ld", &recv_q, &send_q) == 2, "ss: %s", out);
    free(out);
    ck_assert_int_eq(send_q, somaxconn < 65535 ? somaxconn : 65535);
}
END_TEST

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    Suite *s = suite_create("ops");
    TCase *tc = tcase_create("ops");
    tcase_add_checked_fixture(tc, start_node, stop_nodes);
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, test_metrics_while_posting);
    tcase_add_test(tc, test_healthz_and_paths);
    tcase_add_test(tc, test_backup_while_posting_and_restore);
    tcase_add_test(tc, test_backup_refusals);
    tcase_add_test(tc, test_logs_name_connections_and_keep_secrets);
    tcase_add_test(tc, test_resumptions_counted_and_backlog);
    suite_add_tcase(s, tc);
    return ts_check_run(s);
}
