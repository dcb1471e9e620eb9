/*
 * ts_raft_tls: raft's network transport (struct raft_uv_transport) with
 * mutual TLS. libraft's stock TCP transport authenticates nobody; this one
 * runs every raft connection through TLS where both ends present a cluster
 * node certificate signed by the cluster CA, so a host without one can
 * neither join nor inject a message. Included only by ts_repl.
 *
 * How: raft reads and writes one end of a socketpair (a uv_pipe_t it owns
 * once handed over, allocated with raft_malloc as raft frees it); the loop
 * pumps the other end through a memory-BIO TLS engine (ts_tls) and a TCP
 * connection. Nothing reaches raft before the peer's certificate verified
 * and the peer identified itself; a plain TCP connection gets no byte back.
 *
 * Wire, inside TLS, before raft's own bytes (all integers u64 little end.):
 *   dialer  -> listener  "tsraft01" magic, kind (1 raft, 2 probe), the
 *                        dialer's raft id, address length (1..1024), address
 *   listener -> dialer   "tsraftok" once the preamble was accepted
 * then raft's byte stream both ways (kind 1), or the end (kind 2: a probe,
 * which proves that both sides accept each other's certificates).
 *
 * Addresses: a raft address is "RAFT_HOST:PORT" or
 * "RAFT_HOST:PORT,CLIENT_HOST:PORT" (the node's client address rides along
 * in raft's configuration, so every node knows every node's client address;
 * docs/DESIGN.md, "Cluster traffic"). Hosts are numeric (IPv4, or bracketed IPv6).
 *
 * The process must ignore SIGPIPE (threadsyncd's main does): raft writes
 * into its end of a socketpair whose other end may have closed.
 *
 * Load: one connection per peer and direction (raft keeps them open);
 * every byte is copied twice (socketpair, TLS), which is small next to the
 * disk writes of the same entries. Output toward a slow peer is bounded:
 * past TS_RAFT_TLS_QUEUE_HIGH bytes queued, reading from the other side
 * stops until it drains.
 */
#ifndef TS_RAFT_TLS_H
#define TS_RAFT_TLS_H

#include <stddef.h>
#include <stdint.h>

#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

#define TS_RAFT_TLS_QUEUE_HIGH (4u << 20)
#define TS_RAFT_TLS_ADDR_MAX 1024

struct ts_raft_tls_config {
    const char *cert_file; /* this node's certificate (clientAuth + serverAuth) */
    const char *key_file;  /* and its key */
    const char *ca_file;   /* the cluster CA */
    unsigned handshake_ms; /* TLS + preamble deadline, 0 = 5000 */
};

/* Fills t (caller's memory; it must stay until ts_raft_tls_close()) with a
 * transport on loop. TS_E_CONFIG when a file cannot be used (logged),
 * TS_E_NOMEM. */
int ts_raft_tls_init(struct raft_uv_transport *t, uv_loop_t *loop,
                     const struct ts_raft_tls_config *cfg);

/* Releases t's memory. Call after raft closed the transport (t->close's
 * callback ran), or when raft never started with it; a connection still
 * closing then is finished and freed by the loop. */
void ts_raft_tls_close(struct raft_uv_transport *t);

/* Called once with TS_OK when the node at address accepted a TLS connection
 * in both directions (each side verified the other's certificate), TS_E_TLS
 * when a certificate was refused, TS_E_IO / TS_E_TIMEOUT when it could not
 * be reached, TS_E_UNAVAILABLE when the transport closed first. Never
 * called synchronously. */
typedef void (*ts_raft_tls_probe_cb)(void *arg, int status);

/* Dials address (a raft address as above) and checks the handshake without
 * carrying raft traffic. TS_E_INVALID_ARGUMENT for a bad address,
 * TS_E_UNAVAILABLE while closing (cb not called then). */
int ts_raft_tls_probe(struct raft_uv_transport *t, const char *address, ts_raft_tls_probe_cb cb,
                      void *arg);

/* Splits a raft address into its raft part and client part ("" when
 * absent). TS_E_INVALID_ARGUMENT when a part is not host:port or does not
 * fit. Either output may be NULL. */
int ts_raft_tls_split_address(const char *address, char *raft, size_t raft_size, char *client,
                              size_t client_size);

#endif
