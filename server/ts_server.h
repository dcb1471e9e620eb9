/*
 * ts_server: one threadsyncd node: the client listener, TLS context, token
 * table, store, event log, hub and replication, on one libuv loop.
 *
 * Lifecycle: ts_server_start() sets everything up (creating the embedded
 * defaults' CA, certificate and admin token when asked), ts_server_stop()
 * starts an orderly shutdown (stop accepting, close sessions, close raft),
 * and the loop returns once every handle is closed; then ts_server_free().
 */
#ifndef TS_SERVER_H
#define TS_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

struct ts_server;

/* A field left 0 / NULL takes its default: the values are written once, in
 * ts_config.c's table (ts_config_default()); the comments below only say
 * where a default is derived rather than stated there. */
struct ts_server_config {
    const char *data_dir;    /* node.data_dir */
    const char *listen;      /* client listener host:port (listen.client); port 0 = any */
    const char *raft_listen; /* raft host:port (listen.raft) */
    const char *advertise;   /* client address others are told, default = listen */
    const char *cert_file;   /* default DATA/server.pem (generated when absent) */
    const char *key_file;    /* default DATA/server.key */
    const char *tokens_file; /* default DATA/tokens (admin token generated when absent) */
    const char *addr_file;   /* when set, the bound client address is written here */
    uint64_t node_id;        /* node.id */
    uint32_t max_frame;      /* limits.max_frame */
    uint32_t heartbeat_ms;   /* limits.heartbeat_ms */
    uint32_t handshake_ms;   /* not a setting: 5000 */
    size_t evlog_max_events; /* 0 = ts_evlog default */
    size_t evlog_max_bytes;
    unsigned snapshot_threshold; /* 0 = ts_repl default */
    unsigned snapshot_trailing;
    unsigned max_inflight;
    /* Free space kept on the data directory's file system beyond the next
     * log segment and snapshot (ts_disk.h); below it writes are refused.
     * 0 = TS_DISK_RESERVE_DEFAULT (8 MiB). */
    uint64_t disk_reserve;
    /* Cluster. The raft port runs mutual TLS with the node's certificate
     * (cert_file, which must carry clientAuth and serverAuth) and ca_file. */
    const char *ca_file;          /* cluster CA, default DATA/ca.pem */
    const char *join;             /* first start: join through this member's client address */
    const char *join_token_file;  /* admin token for the join, default DATA/admin.token */
    int read_replica;             /* --join as a standby: replicates, serves reads, no vote */
    unsigned election_timeout_ms; /* 0 = ts_repl default */
    /* Moderation and abuse limits (PROTOCOL.md sections 4 and 5). For the
     * numbers 0 means the default shown; TS_SERVER_UNLIMITED turns a limit
     * off. */
    int premoderate;                /* every new comment starts PENDING */
    uint64_t edit_window_ms;        /* authors' Edit/Delete; 900000, at most 24 h */
    uint32_t rate_author_burst;     /* posts per author per window: 10 */
    uint32_t rate_author_window_ms; /* 10000 */
    uint32_t rate_token_burst;      /* posts per token per window: 100 */
    uint32_t rate_token_window_ms;  /* 1000 */
    uint32_t max_conns_per_addr;    /* open connections per source address: 64 */
    /* Output budgets (PROTOCOL.md section 5): a connection with this much
     * output queued is not served until it drains (default
     * limits.conn_output_budget); with this much queued over all
     * connections, those holding output wait, and at twice it every
     * connection (limits.node_output_budget). */
    size_t conn_output_budget;
    size_t node_output_budget;
    /* Threads carrying client connections (socket, TLS, frame decoding),
     * each with its own loop, while raft, the store, the hub and the
     * sessions stay on the main loop: 0 = auto (one per core beyond the first, at most 4),
     * TS_SERVER_IO_INLINE = none (everything on the main loop), else N. */
    uint32_t io_threads;
    /* metrics HTTP listener (/metrics, /healthz): NULL = 127.0.0.1:7422,
     * where a failure to bind is logged and the node runs without; "" = off;
     * an address given must bind or the node does not start */
    const char *metrics_listen;
    /* --restore: seed DATA/raft (which must hold no raft data) from this
     * backup file before raft starts (ts_backup_seed) */
    const char *restore_file;
};

#define TS_SERVER_UNLIMITED UINT32_MAX
#define TS_SERVER_IO_INLINE UINT32_MAX

/* Starts a node on loop. On failure a log line says why, the shutdown has
 * begun, and *out is still set: the caller runs the loop until it returns
 * (handles close) and then calls ts_server_free(), as after a stop. */
int ts_server_start(uv_loop_t *loop, const struct ts_server_config *cfg, struct ts_server **out);

/* Begins an orderly shutdown; safe to call more than once. A leader first
 * hands leadership to another voter (bounded). */
void ts_server_stop(struct ts_server *srv);

/* Frees the server once the loop has returned. */
void ts_server_free(struct ts_server *srv);

/* SIGHUP: applies the settings of cfg that may change while the node runs,
 * and logs what it applied:
 *   - heartbeat_ms: every session from the next tick; Welcome announces it;
 *   - max_frame: sessions that complete their handshake from now on;
 *   - the tokens file (cfg->tokens_file, or DATA/tokens when NULL), re-read
 *     with ts_auth_load: all or nothing, on error the old table stays.
 * Zero fields mean the defaults, as at start. The other fields are ignored:
 * they need a restart (ts_config_reload logs which ones changed). cfg need
 * only live for the call. Returns TS_OK, or the tokens load's error (the
 * limits are applied regardless); TS_E_CONFIG for an out-of-range max_frame
 * (nothing applied). */
int ts_server_reload(struct ts_server *srv, const struct ts_server_config *cfg);

/* The bound client address ("127.0.0.1:7420"). */
const char *ts_server_address(const struct ts_server *srv);

/* 1 when the node stopped because of an error after a successful start
 * (a join that was refused or timed out): the process should exit non-zero. */
int ts_server_failed(const struct ts_server *srv);

/* Read-only views for the node's observers (ts_stats, ts_backup), so they
 * need not see struct ts_server (internal/ts_server_int.h). Each returns a
 * borrowed pointer, NULL while that part is not up (before start, after
 * stop): callers check. */
uv_loop_t *ts_server_loop(const struct ts_server *srv);
struct ts_store *ts_server_store(const struct ts_server *srv);
struct ts_evlog *ts_server_evlog(const struct ts_server *srv);
struct ts_repl *ts_server_repl(const struct ts_server *srv);
struct ts_stats *ts_server_stats(const struct ts_server *srv);
/* The data directory's free-space guard (ts_disk.h); never NULL. */
const struct ts_disk *ts_server_disk(const struct ts_server *srv);
/* The first open session (ts_session_next walks on), NULL when none. */
struct ts_session *ts_server_sessions(const struct ts_server *srv);
/* 1 once ts_server_stop has begun. */
int ts_server_stopping(const struct ts_server *srv);
/* The output budgets at work (ts_session.c): client output queued as they
 * count it, and the sessions waiting for their output or the node's to
 * drain. */
size_t ts_server_output_queued(const struct ts_server *srv);
size_t ts_server_output_waiting(const struct ts_server *srv);

#endif
