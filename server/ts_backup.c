/*
 * ts_backup: see ts_backup.h.
 *
 * A stream's state: the header and the store's snapshot (taken in one go on
 * the loop, so as of one seq), the offset reached, and the figures of the
 * final Result, all computed up front (the store moves on while chunks go
 * out; the digest and counts must describe the snapshot, not the live
 * state). Chunks are assembled from the header and the snapshot into a
 * scratch buffer, so the file is never held twice.
 */
#include "ts_backup.h"

#include "ts_auth.h"
#include "ts_backup_file.h"
#include "ts_link.h"
#include "ts_err.h"
#include "ts_evlog.h"
#include "ts_file.h"
#include "ts_frame.h"
#include "ts_hex.h"
#include "ts_log.h"
#include "ts_repl.h"
#include "ts_server.h"
#include "ts_stats.h"
#include "ts_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ts_backup {
    struct ts_server *srv;
    struct ts_link *conn;
    uint64_t request_id;
    uint8_t header[TS_BACKUP_FILE_HEADER];
    uint8_t *snap; /* ts_store_snapshot's buffer */
    size_t snap_len;
    uint64_t total, off;
    uint32_t chunk;
    uint8_t *scratch; /* one chunk */
    uint64_t seq;     /* clients' seq (BackupResult); the header has the Raft index */
    uint64_t threads, comments;
    char sha256[65], state_digest[65];
};

/* ---- serving ---- */

static int send_counted(struct ts_link *conn, struct ts_server *srv, const Threadsync__Frame *f)
{
    size_t bytes;
    int rc = ts_link_send_frame(conn, f, &bytes);
    if (rc == TS_OK)
        ts_stats_frame_out(ts_server_stats(srv), bytes);
    return rc;
}

static void send_error(struct ts_server *srv, struct ts_link *conn, uint64_t request_id, int code,
                       const char *field, const char *message)
{
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Error e = THREADSYNC__ERROR__INIT;
    e.request_id = request_id;
    e.code = (Threadsync__ErrorCode)ts_err_wire(code);
    e.field = (char *)(field ? field : "");
    e.message = (char *)(message ? message : ts_err_message(code));
    f.msg_case = THREADSYNC__FRAME__MSG_ERROR;
    f.error = &e;
    send_counted(conn, srv, &f);
    ts_stats_error(ts_server_stats(srv), code);
}

void ts_backup_free(struct ts_backup *b)
{
    if (!b)
        return;
    free(b->snap);
    free(b->scratch);
    free(b);
}

static void send_result(struct ts_backup *b)
{
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Result r = THREADSYNC__RESULT__INIT;
    Threadsync__BackupResult br = THREADSYNC__BACKUP_RESULT__INIT;
    br.seq = b->seq;
    br.size = b->total;
    br.sha256 = b->sha256;
    br.state_digest = b->state_digest;
    br.threads = b->threads;
    br.comments = b->comments;
    r.request_id = b->request_id;
    r.body_case = THREADSYNC__RESULT__BODY_BACKUP;
    r.backup = &br;
    f.msg_case = THREADSYNC__FRAME__MSG_RESULT;
    f.result = &r;
    send_counted(b->conn, b->srv, &f);
}

/* Sends chunks while the connection's queue is below the window. Returns 1
 * when the stream is over (finished or failed): the caller frees b. */
static int pump(struct ts_backup *b)
{
    while (b->off < b->total) {
        if (ts_link_queued(b->conn) >= TS_BACKUP_WINDOW)
            return 0; /* on_drain resumes */
        size_t n = b->total - b->off < b->chunk ? (size_t)(b->total - b->off) : b->chunk;
        for (size_t i = 0; i < n;) { /* the header, then the snapshot */
            uint64_t at = b->off + i;
            size_t take;
            if (at < TS_BACKUP_FILE_HEADER) {
                take = TS_BACKUP_FILE_HEADER - (size_t)at < n - i
                           ? TS_BACKUP_FILE_HEADER - (size_t)at
                           : n - i;
                memcpy(b->scratch + i, b->header + at, take);
            } else {
                take = n - i;
                memcpy(b->scratch + i, b->snap + (at - TS_BACKUP_FILE_HEADER), take);
            }
            i += take;
        }
        Threadsync__Frame f = THREADSYNC__FRAME__INIT;
        Threadsync__BackupChunk c = THREADSYNC__BACKUP_CHUNK__INIT;
        c.request_id = b->request_id;
        c.offset = b->off;
        c.data.data = b->scratch;
        c.data.len = n;
        f.msg_case = THREADSYNC__FRAME__MSG_BACKUP_CHUNK;
        f.backup_chunk = &c;
        if (send_counted(b->conn, b->srv, &f) != TS_OK) {
            TS_INFO("conn=%llu peer=%s role=admin event=backup_aborted offset=%llu",
                    (unsigned long long)ts_link_id(b->conn), ts_link_peer(b->conn),
                    (unsigned long long)b->off);
            return 1;
        }
        b->off += n;
    }
    send_result(b);
    ts_stats_backup_done(ts_server_stats(b->srv), b->total);
    TS_INFO("conn=%llu peer=%s role=admin event=backup_done seq=%llu bytes=%llu threads=%llu "
            "comments=%llu",
            (unsigned long long)ts_link_id(b->conn), ts_link_peer(b->conn),
            (unsigned long long)b->seq, (unsigned long long)b->total,
            (unsigned long long)b->threads, (unsigned long long)b->comments);
    return 1;
}

void ts_backup_drained(struct ts_backup **slot)
{
    if (*slot && pump(*slot)) {
        ts_backup_free(*slot);
        *slot = NULL;
    }
}

static void answer_digest(struct ts_server *srv, struct ts_link *conn, uint64_t request_id)
{
    struct ts_store *store = ts_server_store(srv);
    char digest[65];
    ts_store_digest(store, digest);
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Result r = THREADSYNC__RESULT__INIT;
    Threadsync__StateDigestResult dr = THREADSYNC__STATE_DIGEST_RESULT__INIT;
    dr.seq = ts_store_seq(store);
    dr.digest = digest;
    dr.threads = ts_store_thread_count(store);
    dr.comments = ts_store_comment_count(store);
    r.request_id = request_id;
    r.body_case = THREADSYNC__RESULT__BODY_STATE_DIGEST;
    r.state_digest = &dr;
    f.msg_case = THREADSYNC__FRAME__MSG_RESULT;
    f.result = &r;
    send_counted(conn, srv, &f);
}

static void start_backup(struct ts_server *srv, struct ts_link *conn, const Threadsync__Backup *req,
                         struct ts_backup **slot)
{
    uint32_t chunk = req->chunk_size ? req->chunk_size : TS_BACKUP_CHUNK_DEFAULT;
    if (chunk > TS_BACKUP_CHUNK_MAX) {
        send_error(srv, conn, req->request_id, TS_E_INVALID_ARGUMENT, "chunk_size",
                   "chunk_size must be at most 524288 (0: 262144)");
        return;
    }
    if (*slot) {
        send_error(srv, conn, req->request_id, TS_E_UNAVAILABLE, NULL,
                   "a backup is already streaming on this connection");
        return;
    }
    struct ts_store *store = ts_server_store(srv);
    struct ts_backup *b = calloc(1, sizeof(*b));
    if (!b || !(b->scratch = malloc(chunk)) ||
        ts_store_snapshot(store, &b->snap, &b->snap_len) != TS_OK) {
        ts_backup_free(b);
        send_error(srv, conn, req->request_id, TS_E_UNAVAILABLE, NULL, "out of memory");
        return;
    }
    b->srv = srv;
    b->conn = conn;
    b->request_id = req->request_id;
    b->chunk = chunk;
    b->seq = ts_store_seq(store);
    b->threads = ts_store_thread_count(store);
    b->comments = ts_store_comment_count(store);
    ts_store_digest(store, b->state_digest);
    ts_backup_file_header(b->header, ts_store_last_index(store), b->snap, b->snap_len);
    b->total = TS_BACKUP_FILE_HEADER + (uint64_t)b->snap_len;
    uint8_t md[32];
    ts_backup_file_sha256(b->header, TS_BACKUP_FILE_HEADER, b->snap, b->snap_len, md);
    ts_hex_encode(md, 32, b->sha256);
    TS_INFO("conn=%llu peer=%s role=admin event=backup_start seq=%llu bytes=%llu",
            (unsigned long long)ts_link_id(conn), ts_link_peer(conn), (unsigned long long)b->seq,
            (unsigned long long)b->total);
    if (pump(b))
        ts_backup_free(b);
    else
        *slot = b;
}

void ts_backup_request(struct ts_server *srv, struct ts_link *conn, int role,
                       const Threadsync__Frame *f, int status, struct ts_backup **slot)
{
    uint64_t rid = ts_frame_request_id(f);
    if (rid == 0) {
        send_error(srv, conn, 0, TS_E_INVALID_ARGUMENT, "request_id",
                   "request_id must be non-zero (and unique among unanswered requests)");
        return;
    }
    if (status != TS_OK) {
        send_error(srv, conn, rid, status, NULL, NULL);
        return;
    }
    if (!ts_auth_role_allows(role, TS_AUTH_ADMIN)) {
        send_error(srv, conn, rid, TS_E_FORBIDDEN, NULL, "this request needs an admin token");
        return;
    }
    if (f->msg_case == THREADSYNC__FRAME__MSG_BACKUP)
        start_backup(srv, conn, f->backup, slot);
    else
        answer_digest(srv, conn, rid);
}

/* ---- seeding ---- */

int ts_backup_seed(const char *path, const struct ts_repl_config *rcfg)
{
    uint8_t *buf;
    size_t len;
    int rc = ts_file_read_all(path, TS_BACKUP_FILE_MAX, &buf, &len);
    if (rc != TS_OK) {
        TS_ERROR("event=restore_failed path=%s error=%s reason=\"cannot read the backup\"", path,
                 ts_err_name(rc));
        return rc;
    }
    uint64_t seq;
    const uint8_t *snap;
    size_t snap_len;
    rc = ts_backup_file_parse(buf, len, &seq, &snap, &snap_len);
    if (rc != TS_OK) {
        TS_ERROR("event=restore_failed path=%s error=%s reason=\"%s\"", path, ts_err_name(rc),
                 rc == TS_E_BAD_FRAME ? "not a threadsync backup, or truncated"
                                      : "digest mismatch: the file is damaged");
        free(buf);
        return rc;
    }
    /* Decode it once here: a backup that would not restore must not become
     * the new node's only state. */
    struct ts_evlog *log = NULL;
    struct ts_store *store = NULL;
    char digest[65] = "";
    size_t threads = 0, comments = 0;
    struct ts_evlog_config ecfg = {0, 0};
    rc = ts_evlog_new(&ecfg, &log);
    if (rc == TS_OK)
        rc = ts_store_new(log, &store);
    if (rc == TS_OK)
        rc = ts_store_restore(store, snap, snap_len);
    if (rc == TS_OK && ts_store_last_index(store) != seq)
        rc = TS_E_BAD_FRAME;
    if (rc == TS_OK) {
        ts_store_digest(store, digest);
        threads = ts_store_thread_count(store);
        comments = ts_store_comment_count(store);
    } else {
        TS_ERROR("event=restore_failed path=%s error=%s reason=\"the snapshot does not decode "
                 "or does not match its seq\"",
                 path, ts_err_name(rc));
    }
    ts_store_free(store);
    ts_evlog_free(log);
    if (rc == TS_OK && seq == 0) {
        TS_ERROR("event=restore_failed path=%s reason=\"empty backup (seq 0): start the node "
                 "without --restore\"",
                 path);
        rc = TS_E_INVALID_ARGUMENT;
    }
    if (rc == TS_OK)
        rc = ts_repl_seed_snapshot(rcfg, seq, snap, snap_len);
    if (rc == TS_OK)
        TS_INFO("event=restored path=%s seq=%llu threads=%zu comments=%zu state_digest=%s", path,
                (unsigned long long)seq, threads, comments, digest);
    free(buf);
    return rc;
}
