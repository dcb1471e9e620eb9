/*
 * ts_server: wiring of one node. Owns every module's instance and the order
 * in which they start and stop:
 *
 *   start: I/O threads -> data dir -> certificates and admin token
 *          (embedded defaults) -> tokens -> TLS context -> evlog, store,
 *          hub -> client socket bound (its address goes into raft's) ->
 *          raft (replays the log into the store) -> client listener ->
 *          ticker -> join (--join, first start only)
 *   stop:  join attempt, listener and ticker -> sessions (unsubscribe now,
 *          close async) -> I/O threads (once the connections have closed)
 *          -> hub -> raft (a leader hands over leadership first); the loop
 *          ends when the last handle closed.
 *
 * Everything runs on the one loop given at start, except the client
 * connections' sockets and TLS, which run on I/O threads when io_threads
 * asks for them (ts_link); nothing here blocks except the first-start file
 * creation and the joining of those threads once they have nothing left.
 */
#include "ts_server.h"

#include "ts_addr.h"
#include "ts_auth.h"
#include "ts_backup.h"
#include "ts_certgen.h"
#include "ts_config.h"
#include "ts_err.h"
#include "ts_evlog.h"
#include "ts_file.h"
#include "ts_frame.h"
#include "ts_hub.h"
#include "ts_join.h"
#include "ts_limits.h"
#include "ts_link.h"
#include "ts_log.h"
#include "ts_memtrim.h"
#include "ts_repl.h"
#include "ts_req_write.h"
#include "ts_server_int.h"
#include "ts_session.h"
#include "ts_stats.h"
#include "ts_store.h"
#include "ts_tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TICK_MS 1000 /* at most; less with short heartbeats */
/* The client listener's accept queue. A reconnect storm (every subscriber
 * of a restarted or partitioned node at once: 5,000 in the benchmark)
 * arrives faster than one loop accepts; a connection that finds the queue
 * full has its handshake ACK dropped and waits for a retransmission, a
 * full second. Linux caps the figure at net.core.somaxconn (4096 by
 * default since 5.4), so asking for more costs nothing and takes what the
 * host allows. */
#define LISTEN_BACKLOG 65535
/* Subscribers the hub serves per loop turn when the loop writes to the
 * sockets itself (no I/O threads; ts_hub_set_turn_max says why). Pinned to
 * one core, 1,000 subscribers x 100 posts/s: delivery p99 23.6 and 25.4 ms
 * against 38.3 and 53.0 ms unbounded, ack p99 12.7 and 13.4 against 42.5
 * and 59.2 ms (bench/README.md, "Where latency goes"). */
#define HUB_TURN_MAX_INLINE 128

static char *join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static char *dup_or(const char *v, const char *dflt)
{
    return strdup(v ? v : dflt);
}

/* ---- state machine glue for ts_repl ---- */

static int fsm_apply(void *arg, uint64_t index, const uint8_t *payload, size_t len, void *result)
{
    struct ts_server *srv = arg;
    return ts_store_apply(srv->store, index, payload, len, result);
}

static int fsm_snapshot(void *arg, uint8_t **out, size_t *len)
{
    struct ts_server *srv = arg;
    return ts_store_snapshot(srv->store, out, len);
}

static int fsm_restore(void *arg, uint64_t index, uint8_t *buf, size_t len)
{
    struct ts_server *srv = arg;
    /* The image goes page by page as the state is built (ts_repl frees it
     * after): the two are never both whole in memory. */
    int rc = ts_store_restore_discard(srv->store, buf, len);
    if (rc == TS_OK) /* the log's events no longer describe the store */
        ts_evlog_reset(srv->evlog, ts_store_seq(srv->store));
    return rc;
}

/* Every open session looks its token up again; one that no longer grants
 * anything is closed now, idle or not. */
static void recheck_all_sessions(struct ts_server *srv)
{
    struct ts_session *s = srv->sessions;
    while (s) {
        struct ts_session *next = ts_session_next(s);
        ts_session_recheck_auth(s);
        s = next;
    }
}

/* A token was granted or revoked (here or, replicated, on another node):
 * sessions re-check as this node applies the change. */
static void recheck_sessions(struct ts_server *srv)
{
    uint64_t gen = ts_store_auth_generation(srv->store);
    if (gen == srv->auth_gen)
        return;
    srv->auth_gen = gen;
    recheck_all_sessions(srv);
}

/* Raft may still apply entries after ts_server_stop: ts_repl_close waits
 * for the appends in flight, and the hub is closed (srv->hub NULL) before. */
static void notify_hub(struct ts_server *srv)
{
    if (srv->hub)
        ts_hub_notify(srv->hub);
}

static void on_applied(void *arg, uint64_t index)
{
    struct ts_server *srv = arg;
    ts_stats_applied(srv->stats);
    notify_hub(srv);
    recheck_sessions(srv);
}

static void on_restore(void *arg, uint64_t index)
{
    struct ts_server *srv = arg;
    TS_INFO("event=restore index=%llu threads=%zu comments=%zu", (unsigned long long)index,
            ts_store_thread_count(srv->store), ts_store_comment_count(srv->store));
    ts_stats_restored(srv->stats);
    /* The restore freed raft's loaded snapshot and, on a running node, the
     * whole state it replaced: give those pages back now (issue 17 item 7). */
    if (srv->memtrim)
        ts_memtrim_now(srv->memtrim, "restore");
    notify_hub(srv);
    recheck_sessions(srv);
}

/* ---- listener and ticker ---- */

static void on_connection(uv_stream_t *listener, int status)
{
    struct ts_server *srv = listener->data;
    if (status < 0) {
        TS_WARN("event=accept_failed error=%s", uv_strerror(status));
        return;
    }
    ts_stats_accepted(srv->stats);
    srv->accepted++;
    int rc = ts_session_accept(srv, listener, srv->ssl_ctx);
    if (rc != TS_OK)
        TS_WARN("event=accept_failed error=%s", ts_err_name(rc));
}

/* io_threads = auto: one per core beyond the main loop's, at most 4 (the
 * main loop's own share of each event, about a tenth of an I/O thread's,
 * bounds what more threads can take off it); 0 on one core, where a second
 * thread would only add hand-offs. */
static unsigned io_threads_auto(void)
{
    unsigned cores = uv_available_parallelism();
    return cores <= 1 ? 0 : cores - 1 < 4 ? cores - 1 : 4;
}

static int start_links(struct ts_server *srv)
{
    uint32_t n = srv->cfg.io_threads;
    n = n == 0 ? io_threads_auto() : n == TS_SERVER_IO_INLINE ? 0 : n;
    if (n > TS_LINK_THREADS_MAX) {
        TS_ERROR("event=config_error key=io_threads value=%u max=%u", n, TS_LINK_THREADS_MAX);
        return TS_E_CONFIG;
    }
    return ts_link_pool_new(srv->loop, n, &srv->links);
}

static uint64_t tick_interval(uint32_t heartbeat_ms)
{
    /* often enough to Ping on time and drop after 3 beats */
    return heartbeat_ms / 4 < TICK_MS ? heartbeat_ms / 4 : TICK_MS;
}

static void on_tick(uv_timer_t *t)
{
    struct ts_server *srv = t->data;
    uint64_t now = uv_now(srv->loop);
    struct ts_session *s = srv->sessions;
    while (s) {
        struct ts_session *next = ts_session_next(s); /* tick may start a close */
        ts_session_tick(s, now);
        s = next;
    }
    /* Every session came from an accept, so accepts plus closes (accepted -
     * n_sessions) only grows. */
    ts_memtrim_tick(srv->memtrim, 2 * srv->accepted - srv->n_sessions);
    /* keeps /healthz and the metric current, and logs a crossing of the
     * reserve even when nobody writes */
    ts_disk_check(&srv->disk, ts_store_memory(srv->store));
}

/* Binds the client socket without listening yet: its address must be known
 * before raft starts (it travels in the raft address), and no client may
 * connect before raft is there to serve it. */
static int bind_listener(struct ts_server *srv)
{
    char host[256];
    uint16_t port;
    struct sockaddr_storage ss;
    if (ts_addr_parse(srv->cfg.listen, host, sizeof(host), &port) != TS_OK ||
        ts_addr_numeric(host, port, &ss) != TS_OK) {
        TS_ERROR("event=config_error key=listen value=%s reason=\"need a numeric host:port\"",
                 srv->cfg.listen);
        return TS_E_CONFIG;
    }
    uv_tcp_init(srv->loop, &srv->listener);
    srv->listener.data = srv;
    srv->listener_open = 1;
    int r = uv_tcp_bind(&srv->listener, (struct sockaddr *)&ss, 0);
    struct sockaddr_storage bound;
    int blen = sizeof(bound);
    if (r == 0)
        r = uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&bound, &blen);
    if (r < 0) {
        TS_ERROR("event=listen_failed addr=%s error=%s", srv->cfg.listen, uv_strerror(r));
        return TS_E_IO;
    }
    ts_addr_format((struct sockaddr *)&bound, srv->bound, sizeof(srv->bound));
    return TS_OK;
}

static int start_listening(struct ts_server *srv)
{
    int r = uv_listen((uv_stream_t *)&srv->listener, LISTEN_BACKLOG, on_connection);
    if (r < 0) {
        TS_ERROR("event=listen_failed addr=%s error=%s", srv->cfg.listen, uv_strerror(r));
        return TS_E_IO;
    }
    if (srv->addr_file) {
        char line[80];
        int n = snprintf(line, sizeof(line), "%s\n", srv->bound);
        if (ts_file_write_atomic(srv->addr_file, line, (size_t)n, 0644) != TS_OK)
            TS_WARN("event=addr_file_failed path=%s", srv->addr_file);
    }
    TS_INFO("event=listen addr=%s node=%llu", srv->bound, (unsigned long long)srv->cfg.node_id);
    return TS_OK;
}

static int start_join(struct ts_server *srv);
/* ---- abuse limits ---- */

static uint32_t limit_or(uint32_t v, uint32_t dflt)
{
    return v == TS_SERVER_UNLIMITED ? 0 : v ? v : dflt;
}

static int start_limits(struct ts_server *srv)
{
    const struct ts_server_config *c = &srv->cfg;
    struct ts_limits_config lc = {
        .author_burst = limit_or(c->rate_author_burst, TS_LIMITS_AUTHOR_BURST),
        .author_window_ms = c->rate_author_window_ms,
        .token_burst = limit_or(c->rate_token_burst, TS_LIMITS_TOKEN_BURST),
        .token_window_ms = c->rate_token_window_ms,
        .conns_per_addr = limit_or(c->max_conns_per_addr, TS_LIMITS_CONNS_PER_ADDR),
    };
    srv->limits = ts_limits_new(&lc);
    if (!srv->limits)
        return TS_E_NOMEM;
    TS_INFO("event=limits author=%u/%ums token=%u/%ums conns_per_addr=%u premoderate=%d "
            "edit_window_ms=%llu conn_output_budget=%zu node_output_budget=%zu",
            lc.author_burst, lc.author_window_ms ? lc.author_window_ms : TS_LIMITS_AUTHOR_WINDOW_MS,
            lc.token_burst, lc.token_window_ms ? lc.token_window_ms : TS_LIMITS_TOKEN_WINDOW_MS,
            lc.conns_per_addr, c->premoderate, (unsigned long long)c->edit_window_ms,
            c->conn_output_budget, c->node_output_budget);
    return TS_OK;
}

/* The default address is best effort (a second node on the host, a test
 * run): without metrics the node still serves. An address asked for must
 * bind. */
static int start_metrics(struct ts_server *srv)
{
    if (srv->metrics_listen && !*srv->metrics_listen)
        return TS_OK;
    const char *addr =
        srv->metrics_listen ? srv->metrics_listen : ts_config_default("metrics", "listen");
    int rc = ts_stats_listen(srv->stats, addr);
    if (rc != TS_OK && !srv->metrics_listen) {
        TS_WARN("event=metrics_off reason=\"default address unavailable\" addr=%s", addr);
        return TS_OK;
    }
    return rc;
}

/* ---- first start: the embedded defaults ---- */

static int ensure_identity(struct ts_server *srv, int *fresh)
{
    *fresh = 0;
    if (mkdir(srv->data_dir, 0700) != 0 && errno != EEXIST) {
        TS_ERROR("event=data_dir_failed path=%s error=\"%s\"", srv->data_dir, strerror(errno));
        return TS_E_IO;
    }
    if (!srv->cfg.cert_file) {
        char host[256];
        uint16_t port;
        const char *hosts[1];
        size_t n_hosts = 0;
        if (ts_addr_parse(srv->cfg.advertise, host, sizeof(host), &port) == TS_OK)
            hosts[n_hosts++] = host;
        struct ts_certgen_paths paths;
        int rc = ts_certgen_ensure(srv->data_dir, hosts, n_hosts, &paths);
        if (rc != TS_OK)
            return rc;
        *fresh |= paths.created;
        srv->cert_file = strdup(paths.server_cert);
        srv->key_file = strdup(paths.server_key);
        if (!srv->cert_file || !srv->key_file)
            return TS_E_NOMEM;
    }
    if (!srv->cfg.tokens_file) {
        char *admin = join(srv->data_dir, "admin.token");
        int created = 0;
        int rc = admin ? ts_auth_ensure_admin(srv->tokens_file, admin, &created) : TS_E_NOMEM;
        free(admin);
        if (rc != TS_OK)
            return rc;
        *fresh |= created;
    }
    return TS_OK;
}

static void print_first_start(const struct ts_server *srv)
{
    fprintf(stderr,
            "\nthreadsyncd: new node, files in %s/\n"
            "  ca.pem        CA certificate clients verify this node with\n"
            "  server.pem    server certificate (and server.key, its key)\n"
            "  admin.token   admin token (keep secret; tokens lists token hashes)\n"
            "Post from this directory with:\n"
            "  threadsync post --thread demo/hello --name Ann --body 'First!'\n"
            "(or: build/threadsync ..., with --server %s --ca %s/ca.pem"
            " --token-file %s/admin.token from elsewhere)\n\n",
            srv->data_dir, srv->bound, srv->data_dir, srv->data_dir);
}

int ts_server_start(uv_loop_t *loop, const struct ts_server_config *cfg, struct ts_server **out)
{
    struct ts_server *srv = calloc(1, sizeof(*srv));
    if (!srv)
        return TS_E_NOMEM;
    srv->loop = loop;
    srv->cfg = *cfg;
    srv->data_dir = dup_or(cfg->data_dir, ts_config_default("node", "data_dir"));
    srv->listen = dup_or(cfg->listen, ts_config_default("listen", "client"));
    srv->raft_listen = dup_or(cfg->raft_listen, ts_config_default("listen", "raft"));
    srv->advertise = dup_or(cfg->advertise, srv->listen ? srv->listen : "");
    srv->cert_file = cfg->cert_file ? strdup(cfg->cert_file) : NULL;
    srv->key_file = cfg->key_file ? strdup(cfg->key_file) : NULL;
    srv->tokens_file = cfg->tokens_file ? strdup(cfg->tokens_file) : join(srv->data_dir, "tokens");
    srv->addr_file = cfg->addr_file ? strdup(cfg->addr_file) : NULL;
    srv->ca_file = cfg->ca_file ? strdup(cfg->ca_file) : join(srv->data_dir, "ca.pem");
    srv->join_token_file =
        cfg->join_token_file ? strdup(cfg->join_token_file) : join(srv->data_dir, "admin.token");
    srv->metrics_listen = cfg->metrics_listen ? strdup(cfg->metrics_listen) : NULL;
    srv->restore_file = cfg->restore_file ? strdup(cfg->restore_file) : NULL;
    srv->cfg.data_dir = srv->data_dir;
    srv->cfg.listen = srv->listen;
    srv->cfg.raft_listen = srv->raft_listen;
    srv->cfg.advertise = srv->advertise;
    /* NULL stays NULL: ensure_identity reads it as "generate the default" */
    srv->cfg.cert_file = srv->cert_file;
    srv->cfg.key_file = srv->key_file;
    srv->cfg.tokens_file = cfg->tokens_file ? srv->tokens_file : NULL;
    srv->cfg.addr_file = srv->addr_file;
    srv->cfg.metrics_listen = srv->metrics_listen;
    srv->cfg.restore_file = srv->restore_file;
    if (!srv->cfg.node_id)
        srv->cfg.node_id = ts_config_default_uint("node", "id");
    if (!srv->cfg.max_frame)
        srv->cfg.max_frame = (uint32_t)ts_config_default_uint("limits", "max_frame");
    if (!srv->cfg.heartbeat_ms)
        srv->cfg.heartbeat_ms = (uint32_t)ts_config_default_uint("limits", "heartbeat_ms");
    if (!srv->cfg.handshake_ms)
        srv->cfg.handshake_ms = 5000; /* not a setting: no row in the table */
    if (!srv->cfg.edit_window_ms)
        srv->cfg.edit_window_ms = ts_config_default_uint("moderation", "edit_window_ms");
    if (!srv->cfg.conn_output_budget)
        srv->cfg.conn_output_budget = ts_config_default_uint("limits", "conn_output_budget");
    if (!srv->cfg.node_output_budget)
        srv->cfg.node_output_budget = ts_config_default_uint("limits", "node_output_budget");
    *out = NULL;

    int rc = TS_E_NOMEM;
    int fresh = 0;
    if (!srv->data_dir || !srv->listen || !srv->raft_listen || !srv->advertise ||
        !srv->tokens_file || !srv->ca_file || !srv->join_token_file ||
        (cfg->metrics_listen && !srv->metrics_listen) || (cfg->restore_file && !srv->restore_file))
        goto fail;
    if ((rc = ts_stats_new(srv, &srv->stats)) != TS_OK)
        goto fail;
    if (srv->cfg.max_frame > TS_FRAME_MAX_LIMIT || srv->cfg.max_frame < TS_FRAME_MAX_PREAUTH) {
        TS_ERROR("event=config_error key=max_frame value=%u", srv->cfg.max_frame);
        rc = TS_E_CONFIG;
        goto fail;
    }
    if (srv->cfg.edit_window_ms > (uint64_t)TS_STORE_EDIT_WINDOW_MAX_MS) {
        TS_ERROR("event=config_error key=edit_window_ms value=%llu max=%lld",
                 (unsigned long long)srv->cfg.edit_window_ms, TS_STORE_EDIT_WINDOW_MAX_MS);
        rc = TS_E_CONFIG;
        goto fail;
    }
    if ((rc = start_links(srv)) != TS_OK)
        goto fail;
    if ((rc = ensure_identity(srv, &fresh)) != TS_OK)
        goto fail;
    if ((rc = start_limits(srv)) != TS_OK)
        goto fail;
    rc = TS_E_NOMEM;
    if (!(srv->auth = ts_auth_new()) || (rc = ts_auth_load(srv->auth, srv->tokens_file)) != TS_OK)
        goto fail;
    if ((rc = ts_tls_server_ctx(srv->cert_file, srv->key_file, &srv->ssl_ctx)) != TS_OK)
        goto fail;
    if (access(srv->ca_file, R_OK) != 0) {
        TS_ERROR("event=config_error key=ca value=%s reason=\"raft's mutual TLS needs the "
                 "cluster CA (--ca)\"",
                 srv->ca_file);
        rc = TS_E_CONFIG;
        goto fail;
    }
    struct ts_evlog_config ecfg = {cfg->evlog_max_events, cfg->evlog_max_bytes};
    if ((rc = ts_evlog_new(&ecfg, &srv->evlog)) != TS_OK ||
        (rc = ts_store_new(srv->evlog, &srv->store)) != TS_OK ||
        (rc = ts_hub_new(loop, srv->evlog, srv->store, &srv->hub)) != TS_OK ||
        (rc = ts__req_write_batch_new(srv)) != TS_OK)
        goto fail;
    if (ts_link_pool_threads(srv->links) == 0)
        ts_hub_set_turn_max(srv->hub, HUB_TURN_MAX_INLINE);

    if ((rc = bind_listener(srv)) != TS_OK)
        goto fail;
    if (!cfg->advertise) { /* tell clients the port actually bound */
        char *adv = strdup(srv->bound);
        if (adv) {
            free(srv->advertise);
            srv->advertise = adv;
            srv->cfg.advertise = adv;
        }
    }

    char *raft_dir = join(srv->data_dir, "raft");
    if (!raft_dir) {
        rc = TS_E_NOMEM;
        goto fail;
    }
    ts_disk_init(&srv->disk, raft_dir, cfg->disk_reserve);
    struct ts_repl_config rcfg = {
        .data_dir = raft_dir,
        .node_id = srv->cfg.node_id,
        .raft_address = srv->raft_listen,
        .snapshot_threshold = cfg->snapshot_threshold,
        .snapshot_trailing = cfg->snapshot_trailing,
        .max_inflight = cfg->max_inflight,
        .election_timeout_ms = cfg->election_timeout_ms,
        .client_address = srv->advertise,
        .cert_file = srv->cert_file,
        .key_file = srv->key_file,
        .ca_file = srv->ca_file,
        .join = cfg->join != NULL,
    };
    struct ts_repl_fsm fsm = {fsm_apply, fsm_snapshot, fsm_restore, sizeof(struct ts_store_result),
                              srv};
    struct ts_repl_hooks hooks = {on_applied, on_restore, srv};
    rc = TS_OK;
    if (srv->restore_file && cfg->join) {
        /* a restored node starts its own cluster; others join it */
        TS_ERROR("event=config_error reason=\"--restore and --join exclude each other\"");
        rc = TS_E_CONFIG;
    } else if (cfg->read_replica && !cfg->join) {
        /* a first node bootstraps as a voter; a replica is one of a cluster */
        TS_ERROR("event=config_error reason=\"--read-replica needs --join\"");
        rc = TS_E_CONFIG;
    } else if (srv->restore_file) {
        rc = ts_backup_seed(srv->restore_file, &rcfg);
    }
    /* Before raft starts: loading its snapshot restores the store, and
     * on_restore trims what the load freed. */
    if (rc == TS_OK && !(srv->memtrim = ts_memtrim_new(NULL)))
        rc = TS_E_NOMEM;
    if (rc == TS_OK)
        rc = ts_repl_start(loop, &rcfg, &fsm, &hooks, &srv->repl);
    free(raft_dir);
    if (rc != TS_OK)
        goto fail;

    ts_disk_check(&srv->disk, ts_store_memory(srv->store));
    if ((rc = start_listening(srv)) != TS_OK)
        goto fail;
    if ((rc = start_metrics(srv)) != TS_OK)
        goto fail;
    uv_timer_init(loop, &srv->ticker);
    srv->ticker.data = srv;
    srv->ticker_open = 1;
    uint64_t tick = tick_interval(srv->cfg.heartbeat_ms);
    uv_timer_start(&srv->ticker, on_tick, tick, tick);
    if (fresh)
        print_first_start(srv);
    if (cfg->join && (rc = start_join(srv)) != TS_OK)
        goto fail;
    TS_INFO("event=started node=%llu data_dir=%s threads=%zu comments=%zu last_seq=%llu",
            (unsigned long long)srv->cfg.node_id, srv->data_dir, ts_store_thread_count(srv->store),
            ts_store_comment_count(srv->store),
            (unsigned long long)ts_store_last_index(srv->store));
    *out = srv;
    return TS_OK;

fail:
    TS_ERROR("event=start_failed error=%s", ts_err_name(rc));
    ts_server_stop(srv);
    *out = srv;
    return rc;
}

int ts_server_reload(struct ts_server *srv, const struct ts_server_config *cfg)
{
    uint32_t max_frame =
        cfg->max_frame ? cfg->max_frame : (uint32_t)ts_config_default_uint("limits", "max_frame");
    uint32_t heartbeat_ms = cfg->heartbeat_ms
                                ? cfg->heartbeat_ms
                                : (uint32_t)ts_config_default_uint("limits", "heartbeat_ms");
    if (max_frame > TS_FRAME_MAX_LIMIT || max_frame < TS_FRAME_MAX_PREAUTH || heartbeat_ms < 4) {
        TS_ERROR("event=reload_failed reason=\"limits out of range\" max_frame=%u heartbeat_ms=%u",
                 max_frame, heartbeat_ms);
        return TS_E_CONFIG;
    }
    if (heartbeat_ms != srv->cfg.heartbeat_ms) {
        srv->cfg.heartbeat_ms = heartbeat_ms;
        if (srv->ticker_open) {
            uint64_t tick = tick_interval(heartbeat_ms);
            uv_timer_start(&srv->ticker, on_tick, tick, tick);
        }
    }
    srv->cfg.max_frame = max_frame;

    char *path = cfg->tokens_file ? strdup(cfg->tokens_file) : join(srv->data_dir, "tokens");
    int rc = path ? ts_auth_load(srv->auth, path) : TS_E_NOMEM;
    if (rc == TS_OK) {
        free(srv->tokens_file);
        srv->tokens_file = path;
        srv->cfg.tokens_file = cfg->tokens_file ? path : NULL;
        TS_INFO("event=reloaded heartbeat_ms=%u max_frame=%u tokens_file=%s tokens=%zu",
                heartbeat_ms, max_frame, path, ts_auth_count(srv->auth));
        /* a token taken out of the file ends its connections now, as a
         * replicated revocation does */
        recheck_all_sessions(srv);
    } else {
        /* ts_auth_load logged the file and line; the old table is in use */
        TS_ERROR("event=reload_tokens_failed path=%s error=%s tokens=%zu", path ? path : "-",
                 ts_err_name(rc), ts_auth_count(srv->auth));
        free(path);
        TS_INFO("event=reloaded heartbeat_ms=%u max_frame=%u tokens=unchanged", heartbeat_ms,
                max_frame);
    }
    return rc;
}

/* ---- joining a cluster ---- */

static void on_joined(void *arg, int status)
{
    struct ts_server *srv = arg;
    srv->join = NULL;
    if (status == TS_OK) {
        TS_INFO("event=cluster_joined node=%llu", (unsigned long long)srv->cfg.node_id);
        return;
    }
    TS_ERROR("event=join_failed node=%llu error=%s msg=\"stopping: this node is not part of "
             "the cluster\"",
             (unsigned long long)srv->cfg.node_id, ts_err_name(status));
    srv->failed = 1;
    ts_server_stop(srv);
}

/* A member by its own data asked the cluster whether it still is one. */
static void on_membership(void *arg, int status)
{
    struct ts_server *srv = arg;
    srv->join = NULL;
    if (status == TS_E_NOT_FOUND)
        ts_repl_set_removed(srv->repl);
    else if (status != TS_OK)
        TS_WARN("event=membership_check_failed node=%llu error=%s",
                (unsigned long long)srv->cfg.node_id, ts_err_name(status));
}

/* --join: a node with no membership yet joins; one that is a member by its
 * data directory checks that the cluster still lists it (it may have been
 * removed while it was down, and would never hear of it otherwise). */
static int start_join(struct ts_server *srv)
{
    int check = ts_repl_is_member(srv->repl);
    if (check)
        TS_INFO("event=join_skipped node=%llu reason=\"already a member\" "
                "msg=\"checking that the cluster still lists this node\"",
                (unsigned long long)srv->cfg.node_id);
    char token[300] = "";
    FILE *f = fopen(srv->join_token_file, "r");
    if (!f || !fgets(token, sizeof(token), f)) {
        TS_ERROR("event=config_error key=join_token_file value=%s reason=\"cannot read the admin "
                 "token\"",
                 srv->join_token_file);
        if (f)
            fclose(f);
        return check ? TS_OK : TS_E_CONFIG; /* a member runs on without the check */
    }
    fclose(f);
    token[strcspn(token, "\r\n")] = '\0';
    int rc = ts_tls_client_ctx(srv->ca_file, srv->cert_file, srv->key_file, &srv->join_ctx);
    if (rc != TS_OK)
        return check ? TS_OK : rc;
    struct ts_join_config jc = {
        .target = srv->cfg.join,
        .token = token,
        .node_id = srv->cfg.node_id,
        .raft_address = srv->raft_listen,
        .client_address = srv->advertise,
        .ctx = srv->join_ctx,
        .check = check,
        .read_replica = srv->cfg.read_replica,
    };
    rc = ts_join_start(srv->loop, &jc, check ? on_membership : on_joined, srv, &srv->join);
    if (rc != TS_OK)
        TS_ERROR("event=config_error key=join value=%s", srv->cfg.join);
    return check ? TS_OK : rc;
}

static void on_handle_closed(uv_handle_t *h)
{
    (void)h;
}

static void on_hub_closed(void *arg)
{
    (void)arg;
}

static void on_repl_closed(void *arg)
{
    struct ts_server *srv = arg;
    srv->repl = NULL;
    TS_INFO("event=stopped node=%llu", (unsigned long long)srv->cfg.node_id);
}

void ts_server_stop(struct ts_server *srv)
{
    if (srv->stopping)
        return;
    srv->stopping = 1;
    if (srv->join) {
        ts_join_cancel(srv->join);
        srv->join = NULL;
    }
    if (srv->listener_open) {
        uv_close((uv_handle_t *)&srv->listener, on_handle_closed);
        srv->listener_open = 0;
    }
    if (srv->ticker_open) {
        uv_close((uv_handle_t *)&srv->ticker, on_handle_closed);
        srv->ticker_open = 0;
    }
    ts_stats_close(srv->stats);
    /* proposes the posts of this iteration while raft still runs */
    ts__req_write_batch_close(srv, NULL, NULL);
    for (struct ts_session *s = srv->sessions; s; s = ts_session_next(s))
        ts_session_close(s, TS_E_UNAVAILABLE);
    /* ends its threads once the sessions' connections have closed */
    ts_link_pool_close(srv->links);
    srv->links = NULL;
    if (srv->hub) {
        ts_hub_close(srv->hub, on_hub_closed, srv);
        srv->hub = NULL;
    }
    if (srv->repl)
        ts_repl_close(srv->repl, on_repl_closed, srv);
}

void ts_server_free(struct ts_server *srv)
{
    if (!srv)
        return;
    ts_store_free(srv->store);
    ts_evlog_free(srv->evlog);
    ts_auth_free(srv->auth);
    ts_limits_free(srv->limits);
    ts_memtrim_free(srv->memtrim);
    ts_stats_free(srv->stats);
    if (srv->ssl_ctx)
        SSL_CTX_free(srv->ssl_ctx);
    if (srv->join_ctx)
        SSL_CTX_free(srv->join_ctx);
    free(srv->ca_file);
    free(srv->join_token_file);
    free(srv->data_dir);
    free(srv->listen);
    free(srv->raft_listen);
    free(srv->advertise);
    free(srv->cert_file);
    free(srv->key_file);
    free(srv->tokens_file);
    free(srv->addr_file);
    free(srv->metrics_listen);
    free(srv->restore_file);
    free(srv);
}

const char *ts_server_address(const struct ts_server *srv)
{
    return srv->bound;
}

int ts_server_failed(const struct ts_server *srv)
{
    return srv && srv->failed;
}

uv_loop_t *ts_server_loop(const struct ts_server *srv)
{
    return srv->loop;
}

struct ts_store *ts_server_store(const struct ts_server *srv)
{
    return srv->store;
}

struct ts_evlog *ts_server_evlog(const struct ts_server *srv)
{
    return srv->evlog;
}

struct ts_repl *ts_server_repl(const struct ts_server *srv)
{
    return srv->repl;
}

const struct ts_disk *ts_server_disk(const struct ts_server *srv)
{
    return &srv->disk;
}

struct ts_stats *ts_server_stats(const struct ts_server *srv)
{
    return srv->stats;
}

struct ts_session *ts_server_sessions(const struct ts_server *srv)
{
    return srv->sessions;
}

int ts_server_stopping(const struct ts_server *srv)
{
    return srv->stopping;
}

size_t ts_server_output_queued(const struct ts_server *srv)
{
    return srv->out_total;
}

size_t ts_server_output_waiting(const struct ts_server *srv)
{
    return srv->n_waiting;
}
