/*
 * ts_stats: see ts_stats.h. The families are created once, in the order
 * the page shows them; the sampled ones are recomputed from the server's
 * state at the start of each render. Counters that other modules keep
 * (raft's snapshot count) are mirrored by adding the difference since the
 * last scrape, so they stay monotonic.
 *
 * Subscriber lag is the distance in seq between the last event in the log
 * and a subscriber's cursor, for every subscribed session at the moment of
 * the scrape: a distribution of now, not a history. Its buckets are
 * therefore not monotonic over time; use histogram_quantile() on them
 * directly, not on rate().
 */
#include "ts_stats.h"

#include "ts_auth.h"
#include "ts_disk.h"
#include "ts_endian.h"
#include "ts_err.h"
#include "ts_evlog.h"
#include "ts_frame.h"
#include "ts_httpd.h"
#include "ts_log.h"
#include "ts_metrics.h"
#include "ts_repl.h"
#include "ts_repl_heap.h"
#include "ts_server.h"
#include "ts_session.h"
#include "ts_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double lag_buckets[] = {0, 1, 10, 100, 1000, 10000, 100000, 1000000};
static const double latency_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                         0.1,    0.25,  0.5,    1,     2.5,  5,     10};
static const char *const roles[] = {"none", "reader", "poster", "moderator", "admin"};
#define N_ROLES (sizeof(roles) / sizeof(roles[0]))

struct ts_stats {
    struct ts_server *srv;
    struct ts_metrics *reg;
    struct ts_httpd *http;

    struct ts_metric *build_info, *healthy;
    struct ts_metric *connections, *subscribers, *accepted;
    struct ts_metric *tls, *tls_resumed, *tls_failed;
    struct ts_metric *frames_in, *frames_out, *bytes_in, *bytes_out, *errors;
    struct ts_metric *entries, *events, *restores, *post_latency, *lag, *lag_max;
    struct ts_metric *term, *commit, *applied, *last_index, *leader, *has_leader;
    struct ts_metric *snapshots, *snapshot_bytes, *entry_pool_bytes;
    struct ts_metric *threads, *comments, *last_seq, *store_bytes, *evlog_events, *evlog_bytes;
    struct ts_metric *backups, *backup_bytes, *out_queued, *out_waiting;
    struct ts_metric *disk_free, *disk_reserve, *disk_low;

    uint64_t last_end_pos;   /* evlog end position after the last apply */
    uint64_t snapshots_seen; /* raft snapshots already added to the counter */
};

#define ADD(field, type, name, help, label)                                                        \
    (st->field = ts_metrics_add(st->reg, type, name, help, label, NULL, 0))
#define ADD_H(field, name, help, b)                                                                \
    (st->field = ts_metrics_add(st->reg, TS_METRIC_HISTOGRAM, name, help, NULL, b,                 \
                                sizeof(b) / sizeof((b)[0])))

static int define_families(struct ts_stats *st)
{
    const enum ts_metric_type C = TS_METRIC_COUNTER, G = TS_METRIC_GAUGE;
    return ADD(build_info, G, "threadsync_build_info", "Always 1; the version label says which.",
               "version") &&
           ADD(healthy, G, "threadsync_healthy",
               "1 when /healthz answers 200: a leader is known, all committed entries are "
               "applied and the disk has its reserve.",
               NULL) &&
           ADD(connections, G, "threadsync_connections",
               "Open client connections by role (none: before Hello).", "role") &&
           ADD(subscribers, G, "threadsync_subscribers", "Active subscriptions by role.", "role") &&
           ADD(accepted, C, "threadsync_connections_accepted_total", "Client connections accepted.",
               NULL) &&
           ADD(tls, C, "threadsync_tls_handshakes_total", "Client TLS handshakes completed.",
               NULL) &&
           ADD(tls_resumed, C, "threadsync_tls_resumptions_total",
               "Client TLS handshakes that resumed a session.", NULL) &&
           ADD(tls_failed, C, "threadsync_tls_handshake_failures_total",
               "Client connections closed by a TLS failure before their first frame.", NULL) &&
           ADD(frames_in, C, "threadsync_frames_received_total", "Frames received from clients.",
               NULL) &&
           ADD(frames_out, C, "threadsync_frames_sent_total", "Frames sent to clients.", NULL) &&
           ADD(bytes_in, C, "threadsync_received_bytes_total",
               "Frame bytes received from clients (length prefix included, before TLS).", NULL) &&
           ADD(bytes_out, C, "threadsync_sent_bytes_total",
               "Frame bytes sent to clients (length prefix included, before TLS).", NULL) &&
           ADD(errors, C, "threadsync_errors_total", "Error frames sent to clients, by code.",
               "code") &&
           ADD(entries, C, "threadsync_entries_applied_total",
               "Replicated log entries applied to the store.", NULL) &&
           ADD(events, C, "threadsync_events_applied_total",
               "Events (changes to threads and comments) produced by applied entries.", NULL) &&
           ADD(restores, C, "threadsync_store_restores_total",
               "Times the store was replaced by a raft snapshot.", NULL) &&
           ADD_H(post_latency, "threadsync_post_commit_seconds",
                 "Time from proposing a write to its commit and apply (leader only).",
                 latency_buckets) &&
           ADD_H(lag, "threadsync_subscriber_lag_seqs",
                 "Subscribers by how far (in seq) their cursor is behind the last event, sampled "
                 "at scrape time.",
                 lag_buckets) &&
           ADD(lag_max, G, "threadsync_subscriber_lag_max_seqs",
               "The largest subscriber lag (in seq) at scrape time.", NULL) &&
           ADD(disk_free, G, "threadsync_disk_free_bytes",
               "Free bytes on the data directory's file system at the last check.", NULL) &&
           ADD(disk_reserve, G, "threadsync_disk_reserve_bytes",
               "Free space writes need: --disk-reserve + one log segment + the next snapshot.",
               NULL) &&
           ADD(disk_low, G, "threadsync_disk_low",
               "1 while writes are refused for lack of disk space.", NULL) &&
           ADD(term, G, "threadsync_raft_term", "Raft's current term.", NULL) &&
           ADD(commit, G, "threadsync_raft_commit_index", "Highest raft index known committed.",
               NULL) &&
           ADD(applied, G, "threadsync_raft_applied_index", "Highest raft index applied.", NULL) &&
           ADD(last_index, G, "threadsync_raft_last_index", "Last index in the raft log.", NULL) &&
           ADD(leader, G, "threadsync_raft_leader", "1 when this node is the leader.", NULL) &&
           ADD(has_leader, G, "threadsync_raft_has_leader", "1 when a leader is known.", NULL) &&
           ADD(snapshots, C, "threadsync_raft_snapshots_total",
               "Raft snapshots taken by this process.", NULL) &&
           ADD(snapshot_bytes, G, "threadsync_raft_snapshot_bytes",
               "Size of the last raft snapshot taken (0: none yet).", NULL) &&
           ADD(entry_pool_bytes, G, "threadsync_raft_entry_pool_bytes",
               "Memory the fork-private pool of Raft entry buffers holds (its chunks).", NULL) &&
           ADD(threads, G, "threadsync_store_threads", "Threads in the store.", NULL) &&
           ADD(comments, G, "threadsync_store_comments",
               "Comments in the store (every status, tombstones included).", NULL) &&
           ADD(last_seq, G, "threadsync_store_last_seq", "Last raft index applied to the store.",
               NULL) &&
           ADD(store_bytes, G, "threadsync_store_bytes", "Memory held by the store.", NULL) &&
           ADD(evlog_events, G, "threadsync_evlog_events",
               "Events retained in memory for subscribers.", NULL) &&
           ADD(evlog_bytes, G, "threadsync_evlog_bytes", "Memory held by the retained events.",
               NULL) &&
           ADD(out_queued, G, "threadsync_client_output_queued_bytes",
               "Output queued for clients as the output budgets count it.", NULL) &&
           ADD(out_waiting, G, "threadsync_client_connections_waiting",
               "Client connections not served until their output or the node's drains.", NULL) &&
           ADD(backups, C, "threadsync_backups_total", "Backups streamed to the end.", NULL) &&
           ADD(backup_bytes, C, "threadsync_backup_bytes_total", "Bytes of backups streamed.",
               NULL);
}

int ts_stats_new(struct ts_server *srv, struct ts_stats **out)
{
    *out = NULL;
    struct ts_stats *st = calloc(1, sizeof(*st));
    if (!st)
        return TS_E_NOMEM;
    st->srv = srv;
    if (!(st->reg = ts_metrics_new()) || !define_families(st)) {
        ts_metrics_free(st->reg);
        free(st);
        return TS_E_NOMEM;
    }
    ts_metric_set(st->build_info, TS_VERSION, 1);
    for (size_t i = 0; i < N_ROLES; i++) { /* every role shows, 0 or not */
        ts_metric_set(st->connections, roles[i], 0);
        ts_metric_set(st->subscribers, roles[i], 0);
    }
    *out = st;
    return TS_OK;
}

void ts_stats_free(struct ts_stats *st)
{
    if (!st)
        return;
    ts_metrics_free(st->reg);
    free(st);
}

struct ts_metrics *ts_stats_registry(struct ts_stats *st)
{
    return st->reg;
}

/* ---- sampling ---- */

static void sample_sessions(struct ts_stats *st)
{
    struct ts_server *srv = st->srv;
    struct ts_evlog *evlog = ts_server_evlog(srv);
    double conns[N_ROLES] = {0}, subs[N_ROLES] = {0};
    uint64_t head = evlog ? ts_evlog_last_seq(evlog) : 0, max_lag = 0;
    ts_metric_clear(st->lag);
    for (struct ts_session *s = ts_server_sessions(srv); s; s = ts_session_next(s)) {
        int role = ts_session_role(s);
        size_t r = role >= 0 && (size_t)role < N_ROLES ? (size_t)role : 0;
        conns[r]++;
        uint64_t seq;
        if (ts_session_sub_seq(s, &seq)) {
            subs[r]++;
            uint64_t lag = head > seq ? head - seq : 0;
            if (lag > max_lag)
                max_lag = lag;
            ts_metric_observe(st->lag, NULL, (double)lag);
        }
    }
    for (size_t i = 0; i < N_ROLES; i++) {
        ts_metric_set(st->connections, roles[i], conns[i]);
        ts_metric_set(st->subscribers, roles[i], subs[i]);
    }
    ts_metric_set(st->lag_max, NULL, (double)max_lag);
    ts_metric_set(st->out_queued, NULL, (double)ts_server_output_queued(srv));
    ts_metric_set(st->out_waiting, NULL, (double)ts_server_output_waiting(srv));
}

static void sample_state(struct ts_stats *st)
{
    struct ts_server *srv = st->srv;
    struct ts_store *store = ts_server_store(srv);
    struct ts_evlog *evlog = ts_server_evlog(srv);
    struct ts_repl_status rs;
    memset(&rs, 0, sizeof(rs));
    if (ts_server_repl(srv))
        ts_repl_get_status(ts_server_repl(srv), &rs);
    ts_metric_set(st->term, NULL, (double)rs.term);
    ts_metric_set(st->commit, NULL, (double)rs.commit_index);
    ts_metric_set(st->applied, NULL, (double)rs.applied_index);
    ts_metric_set(st->last_index, NULL, (double)rs.last_index);
    ts_metric_set(st->leader, NULL, rs.is_leader);
    ts_metric_set(st->has_leader, NULL, rs.leader_id != 0);
    if (rs.snapshots > st->snapshots_seen) {
        ts_metric_add(st->snapshots, NULL, (double)(rs.snapshots - st->snapshots_seen));
        st->snapshots_seen = rs.snapshots;
    }
    if (rs.snapshot_bytes)
        ts_metric_set(st->snapshot_bytes, NULL, (double)rs.snapshot_bytes);
    struct ts_repl_heap_stats hs;
    ts_repl_heap_stats(&hs);
    ts_metric_set(st->entry_pool_bytes, NULL, (double)hs.chunks * (double)TS_REPL_HEAP_CHUNK);
    if (store) {
        ts_metric_set(st->threads, NULL, (double)ts_store_thread_count(store));
        ts_metric_set(st->comments, NULL, (double)ts_store_comment_count(store));
        ts_metric_set(st->last_seq, NULL, (double)ts_store_last_index(store));
        ts_metric_set(st->store_bytes, NULL, (double)ts_store_memory(store));
    }
    if (evlog) {
        ts_metric_set(st->evlog_events, NULL,
                      (double)(ts_evlog_end_pos(evlog) - ts_evlog_first_pos(evlog)));
        ts_metric_set(st->evlog_bytes, NULL, (double)ts_evlog_memory(evlog));
    }
    const struct ts_disk *disk = ts_server_disk(srv);
    ts_metric_set(st->disk_free, NULL, (double)disk->avail);
    ts_metric_set(st->disk_reserve, NULL, (double)disk->reserve);
    ts_metric_set(st->disk_low, NULL, disk->low);
    ts_metric_set(st->healthy, NULL, ts_stats_healthy(st, NULL, 0));
}

int ts_stats_render(struct ts_stats *st, char **out, size_t *len)
{
    sample_sessions(st);
    sample_state(st);
    return ts_metrics_render(st->reg, out, len);
}

int ts_stats_healthy(const struct ts_stats *st, char *why, size_t n)
{
    const struct ts_server *srv = st->srv;
    struct ts_repl_status rs;
    if (ts_server_stopping(srv) || !ts_server_repl(srv)) {
        if (why)
            snprintf(why, n, "stopping");
        return 0;
    }
    char stale[192];
    if (ts_repl_stale(ts_server_repl(srv), stale, sizeof(stale)) == 2) {
        if (why)
            snprintf(why, n, "%s", stale);
        return 0;
    }
    ts_repl_get_status(ts_server_repl(srv), &rs);
    if (rs.leader_id == 0) {
        if (why)
            snprintf(why, n, "no leader known (term %llu)", (unsigned long long)rs.term);
        return 0;
    }
    if (rs.applied_index < rs.commit_index) {
        if (why)
            snprintf(why, n, "applying: %llu of %llu committed",
                     (unsigned long long)rs.applied_index, (unsigned long long)rs.commit_index);
        return 0;
    }
    const struct ts_disk *disk = ts_server_disk(srv);
    if (disk->low) { /* reads go on; writes wait for space (ts_disk.h) */
        if (why) {
            char d[128];
            ts_disk_describe(disk, d, sizeof(d));
            snprintf(why, n, "%s; writes refused", d);
        }
        return 0;
    }
    return 1;
}

/* ---- HTTP ---- */

static char *text(const char *s, size_t *len)
{
    *len = strlen(s);
    char *p = malloc(*len + 1);
    if (p)
        memcpy(p, s, *len + 1);
    else
        *len = 0;
    return p;
}

static void on_http(void *arg, const struct ts_http_request *req, struct ts_http_response *res)
{
    struct ts_stats *st = arg;
    if (!strcmp(req->path, "/metrics")) {
        if (ts_stats_render(st, &res->body, &res->len) != TS_OK) {
            res->status = 500;
            res->body = text("out of memory\n", &res->len);
            return;
        }
        res->content_type = "text/plain; version=0.0.4; charset=utf-8";
    } else if (!strcmp(req->path, "/healthz")) {
        char why[160], line[176];
        int ok = ts_stats_healthy(st, why, sizeof(why));
        snprintf(line, sizeof(line), "%s\n", ok ? "ok" : why);
        res->status = ok ? 200 : 503;
        res->body = text(line, &res->len);
    } else if (!strcmp(req->path, "/")) {
        res->body = text("threadsyncd: /metrics (Prometheus), /healthz\n", &res->len);
    } else {
        res->status = 404;
        res->body = text("not found: try /metrics or /healthz\n", &res->len);
    }
}

int ts_stats_listen(struct ts_stats *st, const char *addr)
{
    int rc = ts_httpd_start(ts_server_loop(st->srv), addr, on_http, st, &st->http);
    if (rc == TS_OK)
        TS_INFO("event=metrics_listen addr=%s", ts_httpd_address(st->http));
    return rc;
}

const char *ts_stats_address(const struct ts_stats *st)
{
    return st && st->http ? ts_httpd_address(st->http) : "";
}

void ts_stats_close(struct ts_stats *st)
{
    if (st && st->http) {
        ts_httpd_close(st->http, NULL, NULL);
        st->http = NULL;
    }
}

/* ---- hooks ---- */

void ts_stats_accepted(struct ts_stats *st)
{
    if (st)
        ts_metric_add(st->accepted, NULL, 1);
}

void ts_stats_tls(struct ts_stats *st, int resumed)
{
    if (!st)
        return;
    ts_metric_add(st->tls, NULL, 1);
    if (resumed)
        ts_metric_add(st->tls_resumed, NULL, 1);
}

void ts_stats_tls_failed(struct ts_stats *st)
{
    if (st)
        ts_metric_add(st->tls_failed, NULL, 1);
}

void ts_stats_frame_in(struct ts_stats *st, size_t bytes)
{
    if (!st)
        return;
    ts_metric_add(st->frames_in, NULL, 1);
    ts_metric_add(st->bytes_in, NULL, (double)bytes);
}

void ts_stats_frame_out(struct ts_stats *st, size_t bytes)
{
    if (!st)
        return;
    ts_metric_add(st->frames_out, NULL, 1);
    ts_metric_add(st->bytes_out, NULL, (double)bytes);
}

void ts_stats_frames_out(struct ts_stats *st, const void *data, size_t len)
{
    if (!st)
        return;
    const uint8_t *p = data;
    size_t off = 0, n = 0;
    while (len - off >= TS_FRAME_HEADER) { /* whole frames: follow the length prefixes */
        uint32_t flen = ts_load_be32(p + off);
        off += TS_FRAME_HEADER;
        if (flen > len - off)
            break;
        off += flen;
        n++;
    }
    ts_metric_add(st->frames_out, NULL, (double)n);
    ts_metric_add(st->bytes_out, NULL, (double)len);
}

void ts_stats_error(struct ts_stats *st, int code)
{
    if (st)
        ts_metric_add(st->errors, ts_err_name(ts_err_wire(code)), 1);
}

void ts_stats_post_done(struct ts_stats *st, int status, uint64_t start_ns)
{
    if (!st || status != TS_OK)
        return;
    uint64_t now = uv_hrtime();
    ts_metric_observe(st->post_latency, NULL, now > start_ns ? (double)(now - start_ns) / 1e9 : 0);
}

void ts_stats_applied(struct ts_stats *st)
{
    if (!st)
        return;
    ts_metric_add(st->entries, NULL, 1);
    uint64_t end = ts_evlog_end_pos(ts_server_evlog(st->srv));
    if (end > st->last_end_pos)
        ts_metric_add(st->events, NULL, (double)(end - st->last_end_pos));
    st->last_end_pos = end;
}

void ts_stats_restored(struct ts_stats *st)
{
    if (!st)
        return;
    ts_metric_add(st->restores, NULL, 1);
    /* a reset skips a position: that is not an event */
    st->last_end_pos = ts_evlog_end_pos(ts_server_evlog(st->srv));
}

void ts_stats_backup_done(struct ts_stats *st, uint64_t bytes)
{
    if (!st)
        return;
    ts_metric_add(st->backups, NULL, 1);
    ts_metric_add(st->backup_bytes, NULL, (double)bytes);
}
