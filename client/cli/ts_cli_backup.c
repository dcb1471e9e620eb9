/*
 * ts_cli_backup: see ts_cli_backup.h.
 *
 * One request per run through libthreadsync's blocking helpers (its own
 * private loop, connection, Hello, server list and timeouts). The chunks go
 * straight to the temporary file, hashed on the way, so memory stays at one
 * frame whatever the store's size; a stream that starts over (offset 0
 * again: re-sent to the next server) truncates the file and the hash.
 */
#include "ts_cli_backup.h"

#include "threadsync.h"
#include "ts_backup_file.h"
#include "ts_cli.h"
#include "ts_err.h"
#include "ts_file.h"
#include "ts_hex.h"
#include "ts_json.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_TIMEOUT_MS 30000u

/* The chunk consumer: the file being written and the hash of its bytes. */
struct sink {
    int fd;
    EVP_MD_CTX *md;
    uint64_t received;
    uint8_t header[TS_BACKUP_FILE_HEADER];
    int rc; /* the first local failure; later chunks are dropped */
    char *err;
    size_t errlen;
};

static void sink_fail(struct sink *k, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void sink_fail(struct sink *k, int rc, const char *fmt, ...)
{
    if (k->rc != TS_OK)
        return;
    k->rc = rc;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(k->err, k->errlen, fmt, ap);
    va_end(ap);
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

static void on_chunk(void *arg, const Threadsync__BackupChunk *ch)
{
    struct sink *k = arg;
    if (k->rc != TS_OK)
        return;
    if (ch->offset == 0 && k->received > 0) {
        /* the request was re-sent to another server: its stream starts over */
        if (ftruncate(k->fd, 0) != 0 || lseek(k->fd, 0, SEEK_SET) != 0 ||
            !EVP_DigestInit_ex(k->md, EVP_sha256(), NULL)) {
            sink_fail(k, TS_E_IO, "restarting the backup: %s", strerror(errno));
            return;
        }
        k->received = 0;
    }
    if (ch->offset != k->received) {
        sink_fail(k, TS_E_INVALID_ARGUMENT, "backup stream out of order at byte %" PRIu64,
                  k->received);
        return;
    }
    for (size_t i = 0; i < ch->data.len && k->received + i < TS_BACKUP_FILE_HEADER; i++)
        k->header[k->received + i] = ch->data.data[i];
    if (write_all(k->fd, ch->data.data, ch->data.len) != 0) {
        sink_fail(k, TS_E_IO, "writing the backup: %s", strerror(errno));
        return;
    }
    EVP_DigestUpdate(k->md, ch->data.data, ch->data.len);
    k->received += ch->data.len;
}

/* The stream against the server's account of it: size, SHA-256, and a
 * header whose Raft index is at or past the result's seq. */
static int check(struct sink *k, const Threadsync__BackupResult *br, char sha[65])
{
    uint8_t md[32];
    unsigned n = 0;
    EVP_DigestFinal_ex(k->md, md, &n);
    ts_hex_encode(md, 32, sha);
    if (br->size != k->received || strcmp(br->sha256, sha) != 0) {
        sink_fail(k, TS_E_INVALID_ARGUMENT,
                  "backup failed its check: got %" PRIu64 " bytes sha256 %s, server sent %" PRIu64
                  " bytes sha256 %.64s",
                  k->received, sha, br->size, br->sha256);
        return k->rc;
    }
    uint64_t index, len;
    if (k->received < TS_BACKUP_FILE_HEADER ||
        ts_backup_file_check_header(k->header, &index, &len) != TS_OK || index < br->seq)
        sink_fail(k, TS_E_INVALID_ARGUMENT, "backup failed its check: bad header");
    return k->rc;
}

/* libthreadsync fails fast through the list (each server once, in order);
 * timeout_ms is the longest silence: the request's deadline (which each
 * chunk pushes back) and the silence after which a server is probed, then
 * (at twice that) given up on. A node taking a large snapshot says
 * nothing until it is taken. */
static void conn_config(const struct ts_client_config *in, unsigned timeout_ms,
                        struct ts_client_config *out)
{
    *out = *in;
    out->reconnect = 0;
    out->request_timeout_ms = timeout_ms ? timeout_ms : DEFAULT_TIMEOUT_MS;
    out->silence_ms = out->request_timeout_ms / 2;
}

static void say(char *err, size_t errlen, int rc, const Threadsync__Error *detail)
{
    if (rc != TS_OK && !*err)
        snprintf(err, errlen, "%s",
                 detail && detail->message && *detail->message ? detail->message
                                                               : ts_err_message(rc));
}

/* ---- the two requests ---- */

int ts_cli_backup_run(const struct ts_client_config *cfg, unsigned timeout_ms, const char *out_path,
                      struct ts_cli_backup_info *info, Threadsync__Error **detail, char *err,
                      size_t errlen)
{
    if (detail)
        *detail = NULL;
    memset(info, 0, sizeof(*info));
    err[0] = '\0';
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", out_path) >= (int)sizeof(tmp)) {
        snprintf(err, errlen, "path too long: %s", out_path);
        return TS_E_INVALID_ARGUMENT;
    }
    struct sink k = {.err = err, .errlen = errlen};
    k.fd = mkstemp(tmp); /* mode 0600: a backup holds e-mail addresses */
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
    struct ts_client_config conf;
    conn_config(cfg, timeout_ms, &conf);
    Threadsync__BackupResult *br = NULL;
    Threadsync__Error *d = NULL;
    int rc = ts_sync_backup(&conf, on_chunk, &k, &br, &d);
    char sha[65] = "";
    if (rc == TS_OK)
        rc = k.rc != TS_OK ? k.rc : check(&k, br, sha);
    say(err, errlen, rc, d);
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
    } else {
        info->seq = br->seq;
        info->size = br->size;
        info->threads = br->threads;
        info->comments = br->comments;
        snprintf(info->sha256, sizeof(info->sha256), "%s", sha);
        snprintf(info->state_digest, sizeof(info->state_digest), "%.64s", br->state_digest);
        if (ts_file_fsync_parent(out_path) != TS_OK) {
            snprintf(err, errlen, "fsync the directory of %s: %s", out_path, strerror(errno));
            rc = TS_E_IO; /* the file is complete, but its rename may not survive a crash */
        }
    }
    ts_msg_free(br);
    if (detail)
        *detail = d;
    else
        ts_msg_free(d);
    return rc;
}

int ts_cli_backup_digest(const struct ts_client_config *cfg, unsigned timeout_ms,
                         Threadsync__StateDigestResult **out, Threadsync__Error **detail, char *err,
                         size_t errlen)
{
    err[0] = '\0';
    struct ts_client_config conf;
    conn_config(cfg, timeout_ms, &conf);
    Threadsync__Error *d = NULL;
    int rc = ts_sync_state_digest(&conf, out, &d);
    say(err, errlen, rc, d);
    if (detail)
        *detail = d;
    else
        ts_msg_free(d);
    return rc;
}

/* ---- the commands ---- */

/* --timeout-ms (the older spelling) or --timeout: the longest silence. */
static unsigned timeout_ms(const struct ts_cli_opts *o)
{
    return o->timeout_ms ? o->timeout_ms : (unsigned)(o->timeout_s * 1000);
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

int ts_cli_backup_cmd(const struct ts_cli_opts *o, struct ts_client_config *cfg)
{
    char err[512] = "";
    struct ts_cli_backup_info in;
    Threadsync__Error *detail = NULL;
    int code = TS_CLI_EXIT_OK;
    int rc = ts_cli_backup_run(cfg, timeout_ms(o), o->out, &in, &detail, err, sizeof(err));
    if (rc != TS_OK) {
        code = fail(rc, detail, "admin backup", err);
    } else if (o->json) {
        printf("{\"file\":");
        ts_json_str(stdout, o->out);
        printf(",\"seq\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"threads\":%" PRIu64
               ",\"comments\":%" PRIu64 ",\"sha256\":\"%s\",\"state_digest\":\"%s\"}\n",
               in.seq, in.size, in.threads, in.comments, in.sha256, in.state_digest);
    } else {
        printf("backup %s seq=%" PRIu64 " bytes=%" PRIu64 " threads=%" PRIu64 " comments=%" PRIu64
               " sha256=%s state_digest=%s\n",
               o->out, in.seq, in.size, in.threads, in.comments, in.sha256, in.state_digest);
    }
    ts_msg_free(detail);
    return code;
}

int ts_cli_digest_cmd(const struct ts_cli_opts *o, struct ts_client_config *cfg)
{
    char err[512] = "";
    Threadsync__StateDigestResult *d = NULL;
    Threadsync__Error *detail = NULL;
    int code = TS_CLI_EXIT_OK;
    int rc = ts_cli_backup_digest(cfg, timeout_ms(o), &d, &detail, err, sizeof(err));
    if (rc != TS_OK)
        code = fail(rc, detail, "admin digest", err);
    else if (o->json)
        printf("{\"seq\":%" PRIu64 ",\"threads\":%" PRIu64 ",\"comments\":%" PRIu64
               ",\"digest\":\"%s\"}\n",
               d->seq, d->threads, d->comments, d->digest);
    else
        printf("seq=%" PRIu64 " threads=%" PRIu64 " comments=%" PRIu64 " digest=%s\n", d->seq,
               d->threads, d->comments, d->digest);
    ts_msg_free(d);
    ts_msg_free(detail);
    return code;
}
