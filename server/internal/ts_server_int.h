/*
 * ts_server's insides: struct ts_server, shared with ts_session and the
 * request handlers split out of it (ts_req_read, ts_req_write,
 * ts_req_admin), and with no other module. Observers (ts_stats, ts_backup)
 * read the server through the accessors in ts_server.h instead, so the
 * server's header graph has no cycle. PRIVATE to the server core
 * (server/internal/).
 */
#ifndef TS_SERVER_INT_H
#define TS_SERVER_INT_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <uv.h>

#include "ts_disk.h"
#include "ts_server.h"

struct ts_auth;
struct ts_evlog;
struct ts_hub;
struct ts_join;
struct ts_limits;
struct ts_link_pool;
struct ts__post_batch;
struct ts_repl;
struct ts_session;
struct ts_stats;
struct ts_store;

struct ts_server {
    uv_loop_t *loop;
    struct ts_server_config cfg; /* strings point into owned copies below */
    char *data_dir, *listen, *raft_listen, *advertise, *cert_file, *key_file, *tokens_file,
        *addr_file, *ca_file, *join_token_file, *metrics_listen, *restore_file;
    char bound[64];

    SSL_CTX *ssl_ctx;
    struct ts_auth *auth;
    struct ts_evlog *evlog;
    struct ts_store *store;
    struct ts_hub *hub;
    struct ts_repl *repl;
    struct ts_join *join;
    SSL_CTX *join_ctx;
    struct ts_limits *limits;          /* node-local rate and connection limits */
    uint64_t auth_gen;                 /* ts_store_auth_generation sessions were checked at */
    struct ts_stats *stats;            /* metrics and /healthz (ts_stats.c) */
    struct ts_disk disk;               /* free space on the raft directory's file system */
    struct ts__post_batch *post_batch; /* posts of this loop iteration (ts_req_write.c) */

    struct ts_link_pool *links; /* the loops carrying client connections */
    uv_tcp_t listener;
    uv_timer_t ticker;
    int listener_open, ticker_open;

    struct ts_memtrim *memtrim; /* heap trim after connection churn */
    uint64_t accepted;          /* connections accepted, for memtrim */

    struct ts_session *sessions; /* intrusive list, kept by ts_session.c */
    size_t n_sessions;
    size_t out_total; /* client output queued, as the sessions last counted it */
    size_t n_waiting; /* sessions waiting for an output budget */
    uint64_t next_conn_id;
    int stopping;
    int failed;         /* stopped by an error after start (ts_server_failed) */
    int pending_closes; /* handles and modules whose close callback is due */
};

#endif
