/*
 * ts_testnode: see ts_testnode.h. Paths of the binaries come from the build
 * (TS_THREADSYNCD_PATH, TS_THREADSYNC_PATH).
 */
#include "ts_testnode.h"

#include "ts_addr.h"
#include "ts_err.h"
#include "ts_frame.h"
#include "ts_hello.h"

#include <check.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Lowest port of the kernel's ephemeral range (the source ports of
 * outgoing connections). */
static unsigned ephemeral_low(void)
{
    unsigned lo = 32768, hi;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f) {
        if (fscanf(f, "%u %u", &lo, &hi) != 2)
            lo = 32768;
        fclose(f);
    }
    return lo;
}

/* 0 if port on 127.0.0.1 can be bound now (and is let go at once), else
 * the errno. */
static int bind_errno(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return errno;
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int err = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 ? 0 : errno;
    close(fd);
    return err;
}

uint16_t ts_test_free_port(void)
{
    /* Below the ephemeral range: a port the kernel picked for us (bind to
     * 0) is an ephemeral one, and while a killed node is down any outgoing
     * connection on the machine may take it as its source port, so the
     * node could not come back on its address. Random, checked by a bind. */
    static unsigned seed;
    if (!seed)
        seed = (unsigned)getpid() ^ (unsigned)ts_test_now_ms();
    unsigned lo = 10000, hi = ephemeral_low();
    if (hi <= lo + 1000)
        hi = 65000, lo = 61000;
    for (int tries = 0; tries < 200; tries++) {
        uint16_t port = (uint16_t)(lo + (unsigned)rand_r(&seed) % (hi - lo));
        if (bind_errno(port) == 0)
            return port;
    }
    return 0;
}

static void random_token(char out[80])
{
    unsigned char b[24];
    RAND_bytes(b, sizeof(b));
    strcpy(out, "ts_test_");
    for (size_t i = 0; i < sizeof(b); i++)
        sprintf(out + 8 + 2 * i, "%02x", b[i]);
}

static void sha256_hex(const char *s, char out[65])
{
    unsigned char md[32];
    unsigned int len = 0;
    EVP_Digest(s, strlen(s), md, &len, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++)
        sprintf(out + (size_t)2 * i, "%02x", md[i]);
}

static int write_file(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    if (fd < 0)
        return -1;
    size_t len = strlen(text);
    int ok = write(fd, text, len) == (ssize_t)len;
    close(fd);
    return ok ? 0 : -1;
}

static int write_tokens(struct ts_testnode *n)
{
    struct {
        const char *role;
        char *tok;
    } rows[] = {{"admin", n->admin_token},
                {"moderator", n->moderator_token},
                {"poster", n->poster_token},
                {"reader", n->reader_token}};
    char text[1024] = "# written by ts_testnode\n";
    for (size_t i = 0; i < 4; i++) {
        char hex[65], line[160];
        random_token(rows[i].tok);
        sha256_hex(rows[i].tok, hex);
        snprintf(line, sizeof(line), "%s test-%s %s\n", rows[i].role, rows[i].role, hex);
        strcat(text, line);
    }
    char tok_line[100];
    snprintf(tok_line, sizeof(tok_line), "%s\n", n->admin_token);
    if (write_file(n->tokens, text, 0600) != 0 || write_file(n->token_file, tok_line, 0600) != 0)
        return -1;
    return 0;
}

static int spawn(struct ts_testnode *n, const char *const *extra)
{
    char addr_file[400], raft[32];
    snprintf(addr_file, sizeof(addr_file), "%s/addr", n->dir);
    snprintf(raft, sizeof(raft), "127.0.0.1:%u", n->raft_port);
    unlink(addr_file);
    const char *argv[64];
    size_t a = 0;
    argv[a++] = TS_THREADSYNCD_PATH;
    argv[a++] = "--log-level";
    argv[a++] = getenv("TS_TEST_LOG_LEVEL") ? getenv("TS_TEST_LOG_LEVEL") : "warn";
    argv[a++] = "--addr-file";
    argv[a++] = addr_file;
    argv[a++] = "--raft-listen";
    argv[a++] = raft;
    /* Post-rate limits off: tests post in bursts. A test that wants them
     * passes --rate-author / --rate-token in extra, which come later and win. */
    argv[a++] = "--rate-author";
    argv[a++] = "off";
    argv[a++] = "--rate-token";
    argv[a++] = "off";
    argv[a++] = "--metrics-listen"; /* exercised, never on a fixed port; extra may override */
    argv[a++] = "127.0.0.1:0";
    if (!n->embedded) {
        argv[a++] = "--data-dir";
        argv[a++] = n->data_dir;
        argv[a++] = "--listen";
        argv[a++] = n->addr[0] ? n->addr : "127.0.0.1:0";
        argv[a++] = "--tokens";
        argv[a++] = n->tokens;
    } else {
        argv[a++] = "--listen";
        argv[a++] = n->addr[0] ? n->addr : "127.0.0.1:0";
    }
    char node_id[24];
    if (n->cert[0]) {
        snprintf(node_id, sizeof(node_id), "%llu", (unsigned long long)n->node_id);
        argv[a++] = "--cert";
        argv[a++] = n->cert;
        argv[a++] = "--key";
        argv[a++] = n->key;
        argv[a++] = "--ca";
        argv[a++] = n->ca;
        argv[a++] = "--node-id";
        argv[a++] = node_id;
        if (n->join[0]) {
            argv[a++] = "--join";
            argv[a++] = n->join;
            argv[a++] = "--join-token-file";
            argv[a++] = n->token_file;
        }
    }
    for (size_t i = 0; extra && extra[i] && a < 62; i++)
        argv[a++] = extra[i];
    argv[a] = NULL;

    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        return TS_E_IO;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        if (chdir(n->dir) != 0)
            _exit(127);
        /* The test ignores SIGPIPE, and an ignored signal stays ignored
         * across exec: give the node the disposition it gets in real life,
         * so a write to a closed peer that kills it shows here too. */
        signal(SIGPIPE, SIG_DFL);
        if (n->logged)
            ts_testnode_log_to_file(n, 1);
        /* A small ASan quarantine, so RSS tracks live memory in the tests
         * that measure it; leak detection stays on. */
        char asan[512];
        const char *prev = getenv("ASAN_OPTIONS");
        snprintf(asan, sizeof(asan), "%s%squarantine_size_mb=1:thread_local_quarantine_size_kb=64",
                 prev ? prev : "", prev && *prev ? ":" : "");
        setenv("ASAN_OPTIONS", asan, 1);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    n->pid = pid;
    char line[64];
    int rc = ts_test_await_line(pid, addr_file, line, sizeof(line), ts_test_now_ms() + 20000, NULL);
    if (rc == TS_OK)
        snprintf(n->addr, sizeof(n->addr), "%s", line);
    else if (rc == TS_E_IO)
        n->pid = 0;
    else
        ts_testnode_kill(n, SIGKILL);
    return rc;
}

/* A raft port and a client address of its own for n. */
static int pick_ports(struct ts_testnode *n)
{
    n->raft_port = ts_test_free_port();
    uint16_t client_port = ts_test_free_port();
    snprintf(n->addr, sizeof(n->addr), "127.0.0.1:%u", client_port);
    return n->raft_port && client_port ? TS_OK : TS_E_IO;
}

/* spawn() for a node's first start. ts_test_free_port() checks a port and
 * lets it go, so two tests running in parallel can be handed the same one
 * and the second node to bind it exits at start. That, and only that (the
 * node died at start and one of its ports is now held by someone else), is
 * retried on a wiped data directory with new ports; any other failure is
 * the test's. */
static int spawn_fresh(struct ts_testnode *n, const char *const *extra)
{
    for (int attempt = 1;; attempt++) {
        int rc = spawn(n, extra);
        char host[64];
        uint16_t client = 0;
        if (ts_addr_parse(n->addr, host, sizeof(host), &client) != TS_OK)
            client = 0;
        if (rc != TS_E_IO || n->pid != 0 || attempt == 5 ||
            !(bind_errno(n->raft_port) == EADDRINUSE ||
              (client && bind_errno(client) == EADDRINUSE)))
            return rc;
        fprintf(stderr,
                "ts_testnode: a port was taken by another process during start "
                "(attempt %d), starting again on new ports\n",
                attempt);
        ts_test_rmtree(n->data_dir);
        if ((rc = pick_ports(n)) != TS_OK)
            return rc;
    }
}

static int prepare(struct ts_testnode *n)
{
    memset(n, 0, sizeof(*n));
    const char *base = getenv("TS_TEST_TMPDIR");
    snprintf(n->dir, sizeof(n->dir), "%s/tsnode.XXXXXX", base ? base : "/var/tmp");
    if (!mkdtemp(n->dir))
        return TS_E_IO;
    snprintf(n->data_dir, sizeof(n->data_dir), "%s/data", n->dir);
    snprintf(n->tokens, sizeof(n->tokens), "%s/tokens", n->dir);
    snprintf(n->token_file, sizeof(n->token_file), "%s/admin.token", n->dir);
    return pick_ports(n);
}

int ts_testnode_start(struct ts_testnode *n, const char *const *extra)
{
    int rc = prepare(n);
    if (rc != TS_OK)
        return rc;
    if (write_tokens(n) != 0)
        return TS_E_IO;
    snprintf(n->ca, sizeof(n->ca), "%s/ca.pem", n->data_dir);
    return spawn_fresh(n, extra);
}

int ts_test_gen_certs(const char *dir, const char *const *names)
{
    const char *argv[64];
    size_t a = 0;
    argv[a++] = "/bin/bash";
    argv[a++] = TS_GEN_CERTS_PATH;
    argv[a++] = dir;
    for (size_t i = 0; names[i] && a < 60; i++) {
        argv[a++] = "--node";
        argv[a++] = names[i];
        argv[a++] = "127.0.0.1";
    }
    argv[a] = NULL;
    return ts_test_run(argv, NULL, NULL, NULL) == 0 ? TS_OK : TS_E_IO;
}

int ts_testnode_start_member(struct ts_testnode *n, const struct ts_testnode *first,
                             const char *cert_dir, const char *name, uint64_t node_id,
                             const char *const *extra)
{
    int rc = prepare(n);
    if (rc != TS_OK)
        return rc;
    if (first) {
        /* one token table for the whole cluster */
        char *text = NULL;
        const char *cat[] = {"/bin/cat", first->tokens, NULL};
        if (ts_test_run(cat, NULL, NULL, &text) != 0 || !text) {
            free(text);
            return TS_E_IO;
        }
        char tok_line[100];
        snprintf(tok_line, sizeof(tok_line), "%s\n", first->admin_token);
        rc = TS_OK;
        if (write_file(n->tokens, text, 0600) != 0 ||
            write_file(n->token_file, tok_line, 0600) != 0)
            rc = TS_E_IO;
        free(text);
        if (rc != TS_OK)
            return rc;
        memcpy(n->admin_token, first->admin_token, sizeof(n->admin_token));
        memcpy(n->moderator_token, first->moderator_token, sizeof(n->moderator_token));
        memcpy(n->poster_token, first->poster_token, sizeof(n->poster_token));
        memcpy(n->reader_token, first->reader_token, sizeof(n->reader_token));
        snprintf(n->join, sizeof(n->join), "%s", first->addr);
    } else if (write_tokens(n) != 0) {
        return TS_E_IO;
    }
    n->node_id = node_id;
    snprintf(n->ca, sizeof(n->ca), "%s/ca.pem", cert_dir);
    snprintf(n->cert, sizeof(n->cert), "%s/%s.pem", cert_dir, name);
    snprintf(n->key, sizeof(n->key), "%s/%s.key", cert_dir, name);
    return spawn_fresh(n, extra);
}

int ts_testnode_start_default(struct ts_testnode *n)
{
    int rc = prepare(n);
    if (rc != TS_OK)
        return rc;
    n->embedded = 1;
    snprintf(n->data_dir, sizeof(n->data_dir), "%s/threadsync-data", n->dir);
    snprintf(n->ca, sizeof(n->ca), "%s/ca.pem", n->data_dir);
    snprintf(n->token_file, sizeof(n->token_file), "%s/admin.token", n->data_dir);
    rc = spawn_fresh(n, NULL);
    if (rc != TS_OK)
        return rc;
    FILE *f = fopen(n->token_file, "r");
    if (!f)
        return TS_E_IO;
    if (!fgets(n->admin_token, sizeof(n->admin_token), f))
        n->admin_token[0] = '\0';
    fclose(f);
    n->admin_token[strcspn(n->admin_token, "\n")] = '\0';
    return TS_OK;
}

int ts_testnode_restart(struct ts_testnode *n, const char *const *extra)
{
    if (n->pid)
        ts_testnode_kill(n, SIGTERM);
    /* the same client port, so clients that knew it can reconnect */
    return spawn(n, extra);
}

int ts_testnode_kill(struct ts_testnode *n, int sig)
{
    if (!n->pid)
        return -1;
    kill(n->pid, sig);
    int status = 0;
    if (!ts_test_await_exit(n->pid, ts_test_now_ms() + 10000, &status)) {
        kill(n->pid, SIGKILL);
        waitpid(n->pid, &status, 0);
    }
    n->pid = 0;
    return status;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

size_t ts_test_count(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

void ts_test_rmtree(const char *dir)
{
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static char *log_read(const struct ts_testnode *n, size_t from, size_t *len);

int ts_testnode_cleanup(struct ts_testnode *n)
{
    int status = 0;
    if (n->pid)
        status = ts_testnode_kill(n, SIGTERM);
    if (n->logged && status != 0) {
        size_t len;
        char *text = log_read(n, 0, &len);
        if (text)
            fprintf(stderr, "ts_testnode: %s/node.log:\n%s", n->dir, text);
        free(text);
    }
    if (n->dir[0] && !getenv("TS_TEST_KEEP"))
        ts_test_rmtree(n->dir);
    n->dir[0] = '\0';
    return status;
}

void ts_testnode_stop(struct ts_testnode *n)
{
    int status = ts_testnode_cleanup(n);
    ck_assert_msg(status == 0, "node exit status %d: unclean shutdown or a leak", status);
}

void ts_testnode_log_to_file(struct ts_testnode *n, int in_child)
{
    n->logged = 1;
    if (!in_child)
        return;
    char log[300];
    snprintf(log, sizeof(log), "%s/node.log", n->dir);
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0 || dup2(fd, STDERR_FILENO) < 0)
        _exit(127);
}

int ts_testnode_restart_logged(struct ts_testnode *n, const char *const *extra)
{
    n->logged = 1;
    return ts_testnode_restart(n, extra);
}

/* dir/node.log from byte from on, NUL-terminated (malloc'd), or NULL. */
static char *log_read(const struct ts_testnode *n, size_t from, size_t *len)
{
    char path[300];
    snprintf(path, sizeof(path), "%s/node.log", n->dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char *text = NULL;
    size_t cap = 0;
    *len = 0;
    if (fseek(f, (long)from, SEEK_SET) == 0) {
        for (;;) {
            if (*len + 4096 + 1 > cap) {
                char *grown = realloc(text, cap = cap * 2 + 4096 + 1);
                if (!grown)
                    break;
                text = grown;
            }
            size_t got = fread(text + *len, 1, cap - *len - 1, f);
            *len += got;
            if (got == 0)
                break;
        }
    }
    fclose(f);
    if (text)
        text[*len] = '\0';
    return text;
}

size_t ts_testnode_log_mark(const struct ts_testnode *n)
{
    char path[300];
    snprintf(path, sizeof(path), "%s/node.log", n->dir);
    struct stat st;
    return stat(path, &st) == 0 ? (size_t)st.st_size : 0;
}

int ts_testnode_wait_log(const struct ts_testnode *n, size_t mark, const char *needle,
                         int timeout_ms)
{
    uint64_t deadline = ts_test_now_ms() + (uint64_t)timeout_ms;
    int found;
    do {
        size_t len = 0;
        char *text = log_read(n, mark, &len);
        found = text && strstr(text, needle);
        free(text);
    } while (!found && ts_test_poll(deadline));
    return found;
}

int ts_test_run(const char *const *argv, const char *cwd, const char *input, char **out)
{
    int in_pipe[2], out_pipe[2];
    if (pipe(in_pipe) != 0)
        return -1;
    if (pipe(out_pipe) != 0) {
        close(in_pipe[0]);
        close(in_pipe[1]);
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(in_pipe[0], 0);
        dup2(out_pipe[1], 1);
        close(in_pipe[1]);
        close(out_pipe[0]);
        if (cwd && chdir(cwd) != 0)
            _exit(127);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(in_pipe[0]);
    close(out_pipe[1]);
    if (input) {
        size_t len = strlen(input);
        if (write(in_pipe[1], input, len) != (ssize_t)len) {
            /* the child may not read stdin at all */
        }
    }
    close(in_pipe[1]);
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    ssize_t r;
    while (buf && (r = read(out_pipe[0], buf + len, cap - len - 1)) > 0) {
        len += (size_t)r;
        if (cap - len < 2) {
            char *nb = realloc(buf, cap * 2);
            if (!nb)
                break;
            buf = nb;
            cap *= 2;
        }
    }
    close(out_pipe[0]);
    if (buf)
        buf[len] = '\0';
    int status;
    waitpid(pid, &status, 0);
    if (out)
        *out = buf;
    else
        free(buf);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int ts_test_cli(const char *const *servers, size_t n, const char *ca, const char *token_file,
                const char *const *args, const char *cwd, char **out)
{
    const char *argv[64];
    size_t a = 0;
    argv[a++] = TS_THREADSYNC_PATH;
    for (size_t i = 0; i < n && a < 40; i++) {
        argv[a++] = "--server";
        argv[a++] = servers[i];
    }
    argv[a++] = "--ca";
    argv[a++] = ca;
    argv[a++] = "--token-file";
    argv[a++] = token_file;
    for (size_t i = 0; args[i] && a < 63; i++)
        argv[a++] = args[i];
    argv[a] = NULL;
    return ts_test_run(argv, cwd, NULL, out);
}

/* ---- raw TLS client ---- */

struct ts_raw {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    struct ts_frame_decoder *dec;
    int eof;
};

int ts_plain_connect(const char *addr)
{
    char host[64];
    uint16_t port;
    struct sockaddr_storage ss;
    if (ts_addr_parse(addr, host, sizeof(host), &port) != TS_OK ||
        ts_addr_numeric(host, port, &ss) != TS_OK)
        return -1;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    socklen_t len =
        ss.ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    if (connect(fd, (struct sockaddr *)&ss, len) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int ts_raw_connect(const char *addr, const char *ca_file, const char *alpn, struct ts_raw **out)
{
    return ts_raw_connect_session(addr, ca_file, alpn, NULL, out);
}

SSL_SESSION *ts_raw_session(struct ts_raw *r)
{
    return SSL_get1_session(r->ssl);
}

int ts_raw_resumed(const struct ts_raw *r)
{
    return SSL_session_reused(r->ssl);
}

static int raw_connect(const char *addr, const char *ca_file, const char *alpn, SSL_SESSION *sess,
                       unsigned tls_delay_ms, struct ts_raw **out)
{
    struct ts_raw *r = calloc(1, sizeof(*r));
    if (!r)
        return TS_E_NOMEM;
    r->fd = ts_plain_connect(addr);
    r->dec = ts_frame_decoder_new(TS_FRAME_MAX_LIMIT);
    r->ctx = SSL_CTX_new(TLS_client_method());
    if (r->fd < 0 || !r->dec || !r->ctx)
        goto fail;
    SSL_CTX_set_verify(r->ctx, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_load_verify_locations(r->ctx, ca_file, NULL) != 1)
        goto fail;
    if (alpn) {
        unsigned char wire[64];
        size_t l = strlen(alpn);
        wire[0] = (unsigned char)l;
        memcpy(wire + 1, alpn, l);
        SSL_CTX_set_alpn_protos(r->ctx, wire, (unsigned)(l + 1));
    }
    r->ssl = SSL_new(r->ctx);
    char host[64];
    uint16_t port;
    ts_addr_parse(addr, host, sizeof(host), &port);
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(r->ssl), host);
    SSL_set_fd(r->ssl, r->fd);
    if (sess && SSL_set_session(r->ssl, sess) != 1)
        goto fail_tls;
    struct timeval tv = {10, 0};
    setsockopt(r->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (tls_delay_ms) /* time passing on purpose, not a wait on a condition */
        usleep(tls_delay_ms * 1000u);
    if (SSL_connect(r->ssl) != 1)
        goto fail_tls;
    *out = r;
    return TS_OK;
fail_tls:
    ts_raw_close(r);
    ERR_clear_error();
    return TS_E_TLS;
fail:
    ts_raw_close(r);
    return TS_E_IO;
}

int ts_raw_connect_session(const char *addr, const char *ca_file, const char *alpn,
                           SSL_SESSION *sess, struct ts_raw **out)
{
    return raw_connect(addr, ca_file, alpn, sess, 0, out);
}

int ts_raw_connect_delayed(const char *addr, const char *ca_file, const char *alpn,
                           unsigned tls_delay_ms, struct ts_raw **out)
{
    return raw_connect(addr, ca_file, alpn, NULL, tls_delay_ms, out);
}

int ts_raw_send(struct ts_raw *r, const void *data, size_t len)
{
    while (len) {
        int n = SSL_write(r->ssl, data, (int)(len > (1u << 30) ? (1u << 30) : len));
        if (n <= 0)
            return TS_E_CLOSED;
        data = (const char *)data + n;
        len -= (size_t)n;
    }
    return TS_OK;
}

int ts_raw_send_frame(struct ts_raw *r, const Threadsync__Frame *f)
{
    uint8_t *buf;
    size_t len;
    int rc = ts_frame_encode(f, &buf, &len);
    if (rc != TS_OK)
        return rc;
    rc = ts_raw_send(r, buf, len);
    free(buf);
    return rc;
}

int ts_raw_recv(struct ts_raw *r, int timeout_ms, Threadsync__Frame **out)
{
    uint64_t deadline = ts_test_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        const char *field;
        int rc = ts_frame_decoder_next(r->dec, out, &field);
        if (rc == TS_OK || rc == TS_E_INVALID_ARGUMENT)
            return TS_OK;
        if (rc != TS_E_AGAIN)
            return rc;
        if (r->eof)
            return TS_E_CLOSED;
        if (SSL_pending(r->ssl) == 0) {
            uint64_t now = ts_test_now_ms();
            if (now >= deadline)
                return TS_E_TIMEOUT;
            struct pollfd p = {.fd = r->fd, .events = POLLIN};
            int pr = poll(&p, 1, (int)(deadline - now));
            if (pr == 0)
                return TS_E_TIMEOUT;
        }
        char buf[16384];
        int n = SSL_read(r->ssl, buf, sizeof(buf));
        if (n <= 0) {
            int e = SSL_get_error(r->ssl, n);
            if (e == SSL_ERROR_WANT_READ)
                continue;
            ERR_clear_error();
            r->eof = 1;
            continue;
        }
        ts_frame_decoder_feed(r->dec, buf, (size_t)n);
    }
}

int ts_raw_recv_nonping(struct ts_raw *r, int timeout_ms, Threadsync__Frame **out)
{
    for (;;) {
        int rc = ts_raw_recv(r, timeout_ms, out);
        if (rc != TS_OK || (*out)->msg_case != THREADSYNC__FRAME__MSG_PING)
            return rc;
        Threadsync__Frame f = THREADSYNC__FRAME__INIT;
        Threadsync__Pong pong = THREADSYNC__PONG__INIT;
        pong.nonce = (*out)->ping->nonce;
        f.msg_case = THREADSYNC__FRAME__MSG_PONG;
        f.pong = &pong;
        ts_frame_free(*out);
        ts_raw_send_frame(r, &f);
    }
}

int ts_raw_hello(struct ts_raw *r, const char *token, int *role)
{
    Threadsync__Frame f;
    Threadsync__Hello h;
    ts_hello_frame(&f, &h, "ts_testnode", token);
    int rc = ts_raw_send_frame(r, &f);
    if (rc != TS_OK)
        return rc;
    Threadsync__Frame *in;
    rc = ts_raw_recv(r, 10000, &in);
    if (rc != TS_OK)
        return rc;
    const Threadsync__Welcome *w;
    rc = ts_hello_answer(in, &w);
    if (rc == TS_OK && role)
        *role = w->role;
    ts_frame_free(in);
    return rc;
}

int ts_raw_send_post(struct ts_raw *r, uint64_t request_id, const char *key, const char *thread,
                     uint64_t parent, const char *name, const char *body)
{
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Post p = THREADSYNC__POST__INIT;
    p.request_id = request_id;
    p.idempotency_key = (char *)key;
    p.thread_key = (char *)thread;
    p.parent_id = parent;
    p.author_name = (char *)name;
    p.body = (char *)body;
    f.msg_case = THREADSYNC__FRAME__MSG_POST;
    f.post = &p;
    return ts_raw_send_frame(r, &f);
}

int ts_raw_send_get(struct ts_raw *r, uint64_t request_id, const char *thread)
{
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Get g = THREADSYNC__GET__INIT;
    g.request_id = request_id;
    g.thread_key = (char *)thread;
    f.msg_case = THREADSYNC__FRAME__MSG_GET;
    f.get = &g;
    return ts_raw_send_frame(r, &f);
}

Threadsync__Frame *ts_raw_get(struct ts_raw *r, uint64_t request_id, const char *thread,
                              int timeout_ms)
{
    ck_assert_int_eq(ts_raw_send_get(r, request_id, thread), TS_OK);
    Threadsync__Frame *in;
    ck_assert_int_eq(ts_raw_recv_nonping(r, timeout_ms, &in), TS_OK);
    return in;
}

uint8_t *ts_test_get_bytes(Threadsync__GetResult *g, size_t *len)
{
    uint64_t seq = g->seq;
    g->seq = 0;
    *len = protobuf_c_message_get_packed_size(&g->base);
    uint8_t *b = malloc(*len ? *len : 1);
    ck_assert_ptr_nonnull(b);
    protobuf_c_message_pack(&g->base, b);
    g->seq = seq;
    return b;
}

int ts_raw_post(struct ts_raw *r, uint64_t request_id, const char *thread, uint64_t parent,
                const char *name, const char *body, uint64_t *id, uint64_t *seq)
{
    char key[40];
    snprintf(key, sizeof(key), "raw-%d-%llu-%ld", (int)getpid(), (unsigned long long)request_id,
             (long)ts_test_now_ms());
    int rc = ts_raw_send_post(r, request_id, key, thread, parent, name, body);
    if (rc != TS_OK)
        return rc;
    for (;;) {
        Threadsync__Frame *in;
        rc = ts_raw_recv_nonping(r, 10000, &in);
        if (rc != TS_OK)
            return rc;
        if (in->msg_case == THREADSYNC__FRAME__MSG_RESULT && in->result->request_id == request_id &&
            in->result->body_case == THREADSYNC__RESULT__BODY_POST) {
            if (id)
                *id = in->result->post->comment_id;
            if (seq)
                *seq = in->result->post->seq;
            ts_frame_free(in);
            return TS_OK;
        }
        if (in->msg_case == THREADSYNC__FRAME__MSG_ERROR &&
            (in->error->request_id == request_id || in->error->request_id == 0)) {
            rc = in->error->code;
            ts_frame_free(in);
            return rc;
        }
        ts_frame_free(in); /* pushes of a subscription on the same connection */
    }
}

void ts_raw_shutdown_write(struct ts_raw *r)
{
    SSL_shutdown(r->ssl);
}

void ts_raw_close(struct ts_raw *r)
{
    if (!r)
        return;
    if (r->ssl)
        SSL_free(r->ssl);
    if (r->ctx)
        SSL_CTX_free(r->ctx);
    if (r->fd >= 0)
        close(r->fd);
    ts_frame_decoder_free(r->dec);
    free(r);
}

int ts_testnode_connect(const struct ts_testnode *n, const char *token, struct ts_raw **out)
{
    *out = NULL;
    if (!n->pid)
        return TS_E_UNAVAILABLE;
    struct ts_raw *r;
    int rc = ts_raw_connect(n->addr, n->ca, TS_ALPN, &r);
    if (rc != TS_OK)
        return rc;
    int role = 0;
    rc = ts_raw_hello(r, token, &role);
    if (rc != TS_OK) {
        ts_raw_close(r);
        return rc;
    }
    *out = r;
    return TS_OK;
}

struct ts_raw *ts_testnode_connect_ok(const struct ts_testnode *n, const char *token)
{
    struct ts_raw *r;
    int rc = ts_testnode_connect(n, token, &r);
    ck_assert_msg(rc == TS_OK, "connect and hello to %s: %s", n->addr, ts_err_name(rc));
    return r;
}

int ts_raw_subscribe_all(struct ts_raw *r, uint64_t request_id, uint64_t since_seq)
{
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Subscribe sub = THREADSYNC__SUBSCRIBE__INIT;
    sub.request_id = request_id;
    sub.all = 1;
    sub.since_seq = since_seq;
    f.msg_case = THREADSYNC__FRAME__MSG_SUBSCRIBE;
    f.subscribe = &sub;
    return ts_raw_send_frame(r, &f);
}

struct ts_raw *ts_testnode_subscriber(const struct ts_testnode *n, const char *token,
                                      uint64_t since_seq, int *snapshot)
{
    struct ts_raw *r = ts_testnode_connect_ok(n, token);
    ck_assert_int_eq(ts_raw_subscribe_all(r, 1, since_seq), TS_OK);
    Threadsync__Frame *in;
    ck_assert_int_eq(ts_raw_recv_nonping(r, 10000, &in), TS_OK);
    ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_RESULT);
    ck_assert_int_eq(in->result->body_case, THREADSYNC__RESULT__BODY_SUBSCRIBE);
    if (snapshot)
        *snapshot = in->result->subscribe->snapshot;
    ts_frame_free(in);
    return r;
}

int ts_test_http_get(const char *addr, const char *path, int timeout_ms, char **body)
{
    *body = NULL;
    int fd = ts_plain_connect(addr);
    if (fd < 0)
        return -1;
    char req[512];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, addr);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    int status = -1;
    if (!buf || send(fd, req, (size_t)n, MSG_NOSIGNAL) != n)
        goto out;
    uint64_t deadline = ts_test_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        if (len + 1 == cap) {
            char *bigger = realloc(buf, cap *= 2);
            if (!bigger)
                goto out;
            buf = bigger;
        }
        uint64_t now = ts_test_now_ms();
        struct pollfd p = {fd, POLLIN, 0};
        if (now >= deadline || poll(&p, 1, (int)(deadline - now)) != 1)
            goto out;
        ssize_t r = recv(fd, buf + len, cap - len - 1, 0);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    buf[len] = '\0';
    char *sep = strstr(buf, "\r\n\r\n");
    if (sscanf(buf, "HTTP/1.1 %d ", &status) != 1 || !sep || !(*body = strdup(sep + 4)))
        status = -1;
out:
    free(buf);
    close(fd);
    return status;
}

long ts_test_proc_status_kb(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t flen = strlen(field);
    long kb = -1;
    while (fgets(line, sizeof(line), f))
        if (!strncmp(line, field, flen) && line[flen] == ':') {
            kb = strtol(line + flen + 1, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}
