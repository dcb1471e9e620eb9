/*
 * ts_cli_backup: see ts_cli_backup.h.
 *
 * One request per run on a private loop: connect (TLS, ALPN, verify) ->
 * Hello -> Welcome -> the request (request_id 1) -> its chunks and Result
 * -> close. A server that cannot be reached (connection or TLS failure
 * before Welcome) is skipped for the next of the list; any answer from a
 * server, refusal included, ends the run. A silence of timeout_ms ends it
 * too. The chunks go straight to the temporary file, hashed on the way, so
 * memory stays at one frame whatever the store's size.
 */
#include "ts_cli_backup.h"

#include "ts_addr.h"
#include "ts_cli.h"
#include "ts_cli_conn.h"
#include "ts_conn.h"
#include "ts_err.h"
#include "ts_frame.h"
#include "ts_hex.h"
#include "ts_json.h"
#include "ts_tls.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#define DEFAULT_TIMEOUT_MS 30000u
#define CLIENT_MAX_FRAME (TS_FRAME_MAX_DEFAULT + (64u << 10))
#define HEADER_LEN 56 /* the backup file's header (server/ts_backup.h) */

enum kind { KIND_BACKUP = 1, KIND_DIGEST };

struct call {
    uv_loop_t loop;
    uv_timer_t timer;
    SSL_CTX *ctx;
    struct ts_conn *conn;
    const struct ts_cli_backup_conn *c;
    size_t next_server;
    enum kind kind;
    unsigned timeout_ms;
    uint64_t last_rx;
    int answered; /* a server spoke: no failover after this */
    int done;     /* rc is final */
    int rc;
    char *err;
    size_t errlen;
    Threadsync__Error *detail;

    /* backup */
    int fd;
    EVP_MD_CTX *md;
    uint64_t received;
    uint8_t header[HEADER_LEN];
    struct ts_cli_backup_info *info;
    /* digest */
    Threadsync__StateDigestResult *digest;
};

static void set_err(struct call *k, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(struct call *k, int rc, const char *fmt, ...)
{
    if (k->done)
        return;
    k->done = 1;
    k->rc = rc;
    if (k->err && k->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(k->err, k->errlen, fmt, ap);
        va_end(ap);
    }
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* ---- the conversation ---- */

static void send_request(struct call *k)
{
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Backup b = THREADSYNC__BACKUP__INIT;
    Threadsync__StateDigest d = THREADSYNC__STATE_DIGEST__INIT;
    if (k->kind == KIND_BACKUP) {
        b.request_id = 1;
        f.msg_case = THREADSYNC__FRAME__MSG_BACKUP;
        f.backup = &b;
    } else {
        d.request_id = 1;
        f.msg_case = THREADSYNC__FRAME__MSG_STATE_DIGEST;
        f.state_digest = &d;
    }
    if (ts_conn_send_frame(k->conn, &f) != TS_OK)
        set_err(k, TS_E_CLOSED, "connection closed before the request");
}

static void on_chunk(struct call *k, const Threadsync__BackupChunk *ch)
{
    if (ch->request_id != 1 || ch->offset != k->received) {
        set_err(k, TS_E_INVALID_ARGUMENT, "backup stream out of order at byte %" PRIu64,
                k->received);
        return;
    }
    for (size_t i = 0; i < ch->data.len && k->received + i < HEADER_LEN; i++)
        k->header[k->received + i] = ch->data.data[i];
    if (write_all(k->fd, ch->data.data, ch->data.len) != 0) {
        set_err(k, TS_E_IO, "writing the backup: %s", strerror(errno));
        return;
    }
    EVP_DigestUpdate(k->md, ch->data.data, ch->data.len);
    k->received += ch->data.len;
}

static void on_backup_result(struct call *k, const Threadsync__BackupResult *br)
{
    uint8_t md[32];
    unsigned n = 0;
    char sha[65];
    EVP_DigestFinal_ex(k->md, md, &n);
    ts_hex_encode(md, 32, sha);
    if (br->size != k->received || strcmp(br->sha256, sha) != 0) {
        set_err(k, TS_E_INVALID_ARGUMENT,
                "backup failed its check: got %" PRIu64 " bytes sha256 %s, server sent %" PRIu64
                " bytes sha256 %.64s",
                k->received, sha, br->size, br->sha256);
        return;
    }
    if (k->received < HEADER_LEN || memcmp(k->header, "TSBKUP01", 8) != 0 ||
        get_be64(k->header + 8) < br->seq) { /* the Raft index, at or past the seq */
        set_err(k, TS_E_INVALID_ARGUMENT, "backup failed its check: bad header");
        return;
    }
    struct ts_cli_backup_info *in = k->info;
    in->seq = br->seq;
    in->size = br->size;
    in->threads = br->threads;
    in->comments = br->comments;
    snprintf(in->sha256, sizeof(in->sha256), "%s", sha);
    snprintf(in->state_digest, sizeof(in->state_digest), "%.64s", br->state_digest);
    k->done = 1;
    k->rc = TS_OK;
}

static void on_result(struct call *k, const Threadsync__Result *r)
{
    if (r->request_id != 1)
        return;
    if (k->kind == KIND_BACKUP && r->body_case == THREADSYNC__RESULT__BODY_BACKUP) {
        on_backup_result(k, r->backup);
    } else if (k->kind == KIND_DIGEST && r->body_case == THREADSYNC__RESULT__BODY_STATE_DIGEST) {
        k->digest = (Threadsync__StateDigestResult *)ts_frame_msg_copy(&r->state_digest->base);
        if (k->digest) {
            k->done = 1;
            k->rc = TS_OK;
        } else {
            set_err(k, TS_E_NOMEM, "out of memory");
        }
    } else {
        set_err(k, TS_E_BAD_FRAME, "unexpected answer from the server");
    }
}

static void on_open(struct ts_conn *conn)
{
    struct call *k = ts_conn_data(conn);
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Hello h = THREADSYNC__HELLO__INIT;
    h.min_version = TS_PROTOCOL_VERSION;
    h.max_version = TS_PROTOCOL_VERSION;
    h.client_name = "threadsync-cli";
    h.token = (char *)k->c->token;
    f.msg_case = THREADSYNC__FRAME__MSG_HELLO;
    f.hello = &h;
    ts_conn_send_frame(conn, &f);
}

static void on_frame(struct ts_conn *conn, Threadsync__Frame *f, int status, const char *bad)
{
    (void)status;
    (void)bad;
    struct call *k = ts_conn_data(conn);
    k->last_rx = uv_now(&k->loop);
    k->answered = 1;
    if (!k->done) {
        switch (f->msg_case) {
        case THREADSYNC__FRAME__MSG_WELCOME:
            send_request(k);
            break;
        case THREADSYNC__FRAME__MSG_ERROR:
            k->detail = (Threadsync__Error *)ts_frame_msg_copy(&f->error->base);
            set_err(k, f->error->code ? (int)f->error->code : TS_E_INTERNAL, "%s",
                    ts_err_message((int)f->error->code));
            break;
        case THREADSYNC__FRAME__MSG_PING: {
            Threadsync__Frame r;
            Threadsync__Pong pong;
            ts_frame_pong(&r, &pong, f->ping);
            ts_conn_send_frame(conn, &r);
            break;
        }
        case THREADSYNC__FRAME__MSG_BACKUP_CHUNK:
            if (k->kind == KIND_BACKUP)
                on_chunk(k, f->backup_chunk);
            break;
        case THREADSYNC__FRAME__MSG_RESULT:
            on_result(k, f->result);
            break;
        default:
            break;
        }
    }
    ts_frame_free(f);
    if (k->done)
        ts_conn_close(conn, TS_OK);
}

static void connect_next(struct call *k);

static void on_close(struct ts_conn *conn, int err)
{
    struct call *k = ts_conn_data(conn);
    k->conn = NULL;
    if (!k->done && !k->answered && k->next_server < k->c->n_servers) {
        connect_next(k);
        return;
    }
    if (!k->done)
        set_err(k, err ? err : TS_E_CLOSED, "connection to %s ended: %s",
                k->c->servers[k->next_server - 1], ts_err_message(err ? err : TS_E_CLOSED));
    uv_close((uv_handle_t *)&k->timer, NULL);
}

static const struct ts_conn_cbs cbs = {
    .on_open = on_open,
    .on_frame = on_frame,
    .on_close = on_close,
};

static void connect_next(struct call *k)
{
    while (k->next_server < k->c->n_servers) {
        const char *s = k->c->servers[k->next_server++];
        char host[256];
        uint16_t port;
        if (ts_addr_parse(s, host, sizeof(host), &port) != TS_OK) {
            set_err(k, TS_E_CONFIG, "bad server address '%s' (want HOST:PORT)", s);
            break;
        }
        k->last_rx = uv_now(&k->loop);
        if (ts_conn_connect(&k->loop, host, port, k->ctx, &cbs, k, CLIENT_MAX_FRAME, &k->conn) ==
            TS_OK)
            return;
    }
    set_err(k, TS_E_IO, "cannot connect to any server");
    uv_close((uv_handle_t *)&k->timer, NULL);
}

static void on_tick(uv_timer_t *t)
{
    struct call *k = t->data;
    if (k->conn && uv_now(&k->loop) - k->last_rx >= k->timeout_ms) {
        if (k->answered)
            set_err(k, TS_E_TIMEOUT, "the server went silent for %u ms", k->timeout_ms);
        ts_conn_close(k->conn, TS_E_TIMEOUT);
    }
}

/* Runs the request to the end; k->rc says how it went. */
static int run(struct call *k, const struct ts_cli_backup_conn *c, char *err, size_t errlen)
{
    k->c = c;
    k->err = err;
    k->errlen = errlen;
    k->timeout_ms = c->timeout_ms ? c->timeout_ms : DEFAULT_TIMEOUT_MS;
    if (err && errlen)
        err[0] = '\0';
    if (c->n_servers == 0) {
        set_err(k, TS_E_CONFIG, "no server given");
        return k->rc;
    }
    if (ts_tls_client_ctx(c->ca_file, NULL, NULL, &k->ctx) != TS_OK) {
        set_err(k, TS_E_TLS, "cannot load the CA file %s", c->ca_file);
        return k->rc;
    }
    if (uv_loop_init(&k->loop) != 0) {
        SSL_CTX_free(k->ctx);
        set_err(k, TS_E_IO, "cannot create an event loop");
        return k->rc;
    }
    uv_timer_init(&k->loop, &k->timer);
    k->timer.data = k;
    uv_timer_start(&k->timer, on_tick, 200, 200);
    connect_next(k);
    uv_run(&k->loop, UV_RUN_DEFAULT);
    uv_loop_close(&k->loop);
    SSL_CTX_free(k->ctx);
    return k->rc;
}

/* ---- the two requests ---- */

static int fsync_dir_of(const char *path)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        strcpy(dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int r = fsync(fd);
    close(fd);
    return r;
}

int ts_cli_backup_run(const struct ts_cli_backup_conn *c, const char *out_path,
                      struct ts_cli_backup_info *info, Threadsync__Error **detail, char *err,
                      size_t errlen)
{
    if (detail)
        *detail = NULL;
    memset(info, 0, sizeof(*info));
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", out_path) >= (int)sizeof(tmp)) {
        snprintf(err, errlen, "path too long: %s", out_path);
        return TS_E_INVALID_ARGUMENT;
    }
    struct call k;
    memset(&k, 0, sizeof(k));
    k.kind = KIND_BACKUP;
    k.info = info;
    k.fd = mkstemp(tmp); /* mode 0600 */
    if (k.fd < 0) {
        snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
        return TS_E_IO;
    }
    k.md = EVP_MD_CTX_new();
    if (!k.md || !EVP_DigestInit_ex(k.md, EVP_sha256(), NULL)) {
        EVP_MD_CTX_free(k.md);
        close(k.fd);
        unlink(tmp);
        snprintf(err, errlen, "cannot start SHA-256");
        return TS_E_INTERNAL;
    }
    int rc = run(&k, c, err, errlen);
    EVP_MD_CTX_free(k.md);
    if (rc == TS_OK && fsync(k.fd) != 0) {
        snprintf(err, errlen, "fsync %s: %s", tmp, strerror(errno));
        rc = TS_E_IO;
    }
    if (close(k.fd) != 0 && rc == TS_OK) {
        snprintf(err, errlen, "close %s: %s", tmp, strerror(errno));
        rc = TS_E_IO;
    }
    if (rc == TS_OK && rename(tmp, out_path) != 0) {
        snprintf(err, errlen, "rename %s to %s: %s", tmp, out_path, strerror(errno));
        rc = TS_E_IO;
    }
    if (rc != TS_OK) {
        unlink(tmp);
        memset(info, 0, sizeof(*info));
    } else if (fsync_dir_of(out_path) != 0) {
        snprintf(err, errlen, "fsync the directory of %s: %s", out_path, strerror(errno));
        rc = TS_E_IO; /* the file is complete, but its rename may not survive a crash */
    }
    if (detail)
        *detail = k.detail;
    else if (k.detail)
        protobuf_c_message_free_unpacked(&k.detail->base, NULL);
    return rc;
}

int ts_cli_backup_digest(const struct ts_cli_backup_conn *c, Threadsync__StateDigestResult **out,
                         Threadsync__Error **detail, char *err, size_t errlen)
{
    *out = NULL;
    if (detail)
        *detail = NULL;
    struct call k;
    memset(&k, 0, sizeof(k));
    k.kind = KIND_DIGEST;
    k.fd = -1;
    int rc = run(&k, c, err, errlen);
    if (rc == TS_OK)
        *out = k.digest;
    else if (k.digest)
        protobuf_c_message_free_unpacked(&k.digest->base, NULL);
    if (detail)
        *detail = k.detail;
    else if (k.detail)
        protobuf_c_message_free_unpacked(&k.detail->base, NULL);
    return rc;
}

/* ---- the command line ---- */

static const char *const value_opts[] = {"--server", "--ca", "--token-file", "--out",
                                         "--timeout-ms"};

static int takes_value(const char *a)
{
    for (size_t i = 0; i < sizeof(value_opts) / sizeof(value_opts[0]); i++)
        if (!strcmp(a, value_opts[i]))
            return 1;
    return 0;
}

/* The first two positional words of argv. */
static void words(int argc, char *const argv[], const char **w1, const char **w2)
{
    *w1 = *w2 = NULL;
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-') {
            if (takes_value(argv[i]))
                i++;
            continue;
        }
        if (!*w1)
            *w1 = argv[i];
        else if (!*w2)
            *w2 = argv[i];
    }
}

int ts_cli_backup_wants(int argc, char *const argv[])
{
    const char *w1, *w2;
    words(argc, argv, &w1, &w2);
    return w1 && w2 && !strcmp(w1, "admin") && (!strcmp(w2, "backup") || !strcmp(w2, "digest"));
}

static void usage(FILE *out)
{
    fputs("usage: threadsync [options] admin backup --out FILE\n"
          "       threadsync [options] admin digest\n"
          "  backup   write a consistent copy of the node's whole store to FILE (verified,\n"
          "           atomic, mode 0600); threadsyncd --restore FILE seeds a new node from it\n"
          "  digest   print the node's state digest (compare nodes, or a restored node)\n"
          "options: --server HOST:PORT (repeatable), --ca FILE, --token-file FILE (an admin\n"
          "         token), --json, --timeout-ms MS (longest silence, default 30000)\n",
          out);
}

struct opts {
    struct ts_cli_conn conn; /* --server, --ca, --token-file */
    const char *out, *cmd;
    unsigned timeout_ms;
    int json, help;
};

static int parse(int argc, char *const argv[], char *(*get_env)(const char *), struct opts *o,
                 char *err, size_t errlen)
{
    memset(o, 0, sizeof(*o));
    if (ts_cli_conn_init(&o->conn, argc) != TS_OK)
        return TS_E_NOMEM;
    int n_words = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            o->help = 1;
        } else if (!strcmp(a, "--json")) {
            o->json = 1;
        } else if (takes_value(a)) {
            if (i + 1 >= argc) {
                snprintf(err, errlen, "%s needs a value", a);
                return TS_E_INVALID_ARGUMENT;
            }
            const char *v = argv[++i];
            if (ts_cli_conn_option(&o->conn, a, v))
                continue;
            if (!strcmp(a, "--out")) {
                o->out = v;
            } else {
                char *end;
                unsigned long ms = strtoul(v, &end, 10);
                if (*v < '0' || *v > '9' || *end || ms == 0 || ms > 86400000ul) {
                    snprintf(err, errlen, "--timeout-ms wants 1..86400000, not '%s'", v);
                    return TS_E_INVALID_ARGUMENT;
                }
                o->timeout_ms = (unsigned)ms;
            }
        } else if (a[0] == '-') {
            snprintf(err, errlen, "unknown option '%s' for admin backup/digest", a);
            return TS_E_INVALID_ARGUMENT;
        } else if (++n_words == 2) {
            o->cmd = a;
        } else if (n_words > 2) {
            snprintf(err, errlen, "unexpected argument '%s'", a);
            return TS_E_INVALID_ARGUMENT;
        }
    }
    if (o->help)
        return TS_OK;
    if (!o->cmd || (strcmp(o->cmd, "backup") != 0 && strcmp(o->cmd, "digest") != 0)) {
        snprintf(err, errlen, "want admin backup or admin digest");
        return TS_E_INVALID_ARGUMENT;
    }
    if (!strcmp(o->cmd, "backup") && !o->out) {
        snprintf(err, errlen, "admin backup needs --out FILE");
        return TS_E_INVALID_ARGUMENT;
    }
    if (!strcmp(o->cmd, "digest") && o->out) {
        snprintf(err, errlen, "admin digest does not take --out");
        return TS_E_INVALID_ARGUMENT;
    }
    return ts_cli_conn_defaults(&o->conn, get_env);
}

static void opts_free(struct opts *o)
{
    ts_cli_conn_free(&o->conn);
}

static int fail(int rc, const Threadsync__Error *detail, const char *what, const char *err)
{
    if (rc >= TS_E_BAD_FRAME && rc <= TS_E_WIRE_MAX && detail)
        ts_cli_print_error(stderr, rc, detail, what);
    else
        fprintf(stderr, "error: %s: %s (%s)\n", what, err && *err ? err : ts_err_message(rc),
                ts_err_name(rc));
    int code = ts_cli_exit_code(rc);
    /* a stream that failed its check is the server's fault, not a refusal */
    return rc == TS_E_INVALID_ARGUMENT && !detail ? TS_CLI_EXIT_CONN : code;
}

int ts_cli_backup_main(int argc, char *const argv[], char *(*get_env)(const char *name))
{
    struct opts o;
    char err[512] = "";
    int rc = parse(argc, argv, get_env, &o, err, sizeof(err));
    if (rc != TS_OK || o.help) {
        if (rc != TS_OK)
            fprintf(stderr, "threadsync: %s\n", rc == TS_E_NOMEM ? "out of memory" : err);
        usage(rc == TS_OK ? stdout : stderr);
        opts_free(&o);
        return rc == TS_OK ? TS_CLI_EXIT_OK : TS_CLI_EXIT_USAGE;
    }
    char *token = NULL;
    if (ts_cli_read_token(o.conn.token_file, &token, err, sizeof(err)) != TS_OK) {
        fprintf(stderr, "error: %s\n", err);
        opts_free(&o);
        return TS_CLI_EXIT_CONN;
    }
    struct ts_cli_backup_conn c = {o.conn.servers, o.conn.n_servers, o.conn.ca, token,
                                   o.timeout_ms};
    Threadsync__Error *detail = NULL;
    int code = TS_CLI_EXIT_OK;
    if (!strcmp(o.cmd, "backup")) {
        struct ts_cli_backup_info in;
        rc = ts_cli_backup_run(&c, o.out, &in, &detail, err, sizeof(err));
        if (rc != TS_OK) {
            code = fail(rc, detail, "admin backup", err);
        } else if (o.json) {
            printf("{\"file\":");
            ts_json_str(stdout, o.out);
            printf(",\"seq\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"threads\":%" PRIu64
                   ",\"comments\":%" PRIu64 ",\"sha256\":\"%s\",\"state_digest\":\"%s\"}\n",
                   in.seq, in.size, in.threads, in.comments, in.sha256, in.state_digest);
        } else {
            printf("backup %s seq=%" PRIu64 " bytes=%" PRIu64 " threads=%" PRIu64
                   " comments=%" PRIu64 " sha256=%s state_digest=%s\n",
                   o.out, in.seq, in.size, in.threads, in.comments, in.sha256, in.state_digest);
        }
    } else {
        Threadsync__StateDigestResult *d = NULL;
        rc = ts_cli_backup_digest(&c, &d, &detail, err, sizeof(err));
        if (rc != TS_OK)
            code = fail(rc, detail, "admin digest", err);
        else if (o.json)
            printf("{\"seq\":%" PRIu64 ",\"threads\":%" PRIu64 ",\"comments\":%" PRIu64
                   ",\"digest\":\"%s\"}\n",
                   d->seq, d->threads, d->comments, d->digest);
        else
            printf("seq=%" PRIu64 " threads=%" PRIu64 " comments=%" PRIu64 " digest=%s\n", d->seq,
                   d->threads, d->comments, d->digest);
        if (d)
            protobuf_c_message_free_unpacked(&d->base, NULL);
    }
    if (detail)
        protobuf_c_message_free_unpacked(&detail->base, NULL);
    free(token);
    opts_free(&o);
    return code;
}
