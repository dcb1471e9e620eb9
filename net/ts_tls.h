/*
 * ts_tls: TLS contexts and a memory-BIO TLS engine, both sides.
 *
 * The engine never touches a socket: the owner feeds it ciphertext read from
 * the network (ts_tls_feed), pulls plaintext out (ts_tls_read), pushes
 * plaintext in (ts_tls_write) and takes the ciphertext to send
 * (ts_tls_pending / ts_tls_take). It calls no callbacks of its owner, so it
 * is re-entrant by construction and can be driven by a test with two engines
 * and a loop that moves bytes between them. Every call may produce output
 * (handshake messages, alerts, session tickets): the owner takes the
 * ciphertext out after every call, the one rule that keeps a peer from
 * waiting on bytes that sit in our memory.
 *
 * Policy lives in the contexts: TLS 1.2 minimum, ALPN "threadsync/1" required
 * on both sides (a handshake that does not agree on it fails), no
 * compression, no renegotiation, OpenSSL buffers released while idle, and
 * session resumption (stateless TLS 1.3 tickets; a server-side cache for
 * TLS 1.2; on the client, the last session per "host:port" in a small table
 * kept with the context).
 *
 * Load: one engine per connection; an idle engine holds the SSL object, its
 * session and the peer's certificate, not its I/O buffers.
 */
#ifndef TS_TLS_H
#define TS_TLS_H

#include <stddef.h>

#include <openssl/ssl.h>

/* How many "host:port" sessions a client context remembers (LRU beyond). */
#define TS_TLS_SESSION_SLOTS 16

/* A server context presenting cert_file (PEM chain, leaf first) and key_file.
 * *out is the caller's, freed with SSL_CTX_free(). TS_E_CONFIG when a file
 * cannot be read or the key does not match; TS_E_TLS when OpenSSL fails
 * otherwise. Each failure logs one TS_ERROR line naming the file and the
 * OpenSSL reason. */
int ts_tls_server_ctx(const char *cert_file, const char *key_file, SSL_CTX **out);

/* A server context for cluster traffic (the raft port): as
 * ts_tls_server_ctx(), and it also requires every peer to present a
 * certificate that verifies against the CA certificates in ca_file and is a
 * cluster node's: its leaf carries extendedKeyUsage clientAuth and
 * serverAuth (deploy/gen-certs.sh --node, ts_certgen); a client-only
 * certificate (clientAuth alone) is refused. A peer without a certificate
 * fails the handshake. Errors as ts_tls_server_ctx(). */
int ts_tls_server_ctx_mtls(const char *cert_file, const char *key_file, const char *ca_file,
                           SSL_CTX **out);

/* A client context that verifies servers against the CA certificates in
 * ca_file, and presents cert_file/key_file when cert_file is not NULL.
 * Errors as ts_tls_server_ctx(). SSL_CTX_free() also frees its session
 * table. */
int ts_tls_client_ctx(const char *ca_file, const char *cert_file, const char *key_file,
                      SSL_CTX **out);

/* A client context for a server that is not threadsync (bench/ts_mqttgen's
 * comparison broker): the verification, TLS floor and session table of
 * ts_tls_client_ctx(), but no ALPN offered and none required of the server.
 * Never for threadsync itself. */
int ts_tls_client_ctx_foreign(const char *ca_file, SSL_CTX **out);

struct ts_tls;

/* A server engine on ctx (borrowed: it must outlive the engine). */
int ts_tls_new_server(SSL_CTX *ctx, struct ts_tls **out);

/* A client engine on ctx (borrowed) that verifies the server's certificate
 * for host: an IP address (v4 or v6 literal, matched against the
 * certificate's IP SANs, no SNI sent) or a DNS name (SNI and DNS SANs).
 * session_key (copied; may be NULL) names the entry of ctx's session table to
 * resume from and to update, usually "host:port". Call ts_tls_handshake()
 * to produce the ClientHello. */
int ts_tls_new_client(SSL_CTX *ctx, const char *host, const char *session_key, struct ts_tls **out);

void ts_tls_free(struct ts_tls *t);

/* Copies len bytes of ciphertext from the peer into the engine.
 * TS_E_NOMEM on allocation failure. */
int ts_tls_feed(struct ts_tls *t, const void *data, size_t len);

/* Advances the handshake. TS_OK once it is done (the peer verified, ALPN
 * agreed), TS_E_AGAIN while it needs more input, TS_E_TLS when it failed
 * (an alert may be waiting in the output: send it before closing). */
int ts_tls_handshake(struct ts_tls *t);

/* Reads up to cap bytes of plaintext into buf, advancing the handshake
 * first. TS_OK with *n > 0; TS_E_AGAIN when more input is needed (call again
 * after ts_tls_feed()); TS_E_CLOSED once the peer sent close_notify (writing
 * is still allowed: TLS half-close); TS_E_TLS on failure. The owner calls it
 * until it returns something other than TS_OK. */
int ts_tls_read(struct ts_tls *t, void *buf, size_t cap, size_t *n);

/* Encrypts len bytes of plaintext into the output. Before the handshake is
 * done the bytes are kept (copied) and encrypted when it completes.
 * TS_E_CLOSED after ts_tls_shutdown(), TS_E_TLS after a failure. */
int ts_tls_write(struct ts_tls *t, const void *data, size_t len);

/* Queues close_notify (once; nothing before the handshake is done) and drops
 * plaintext still waiting for the handshake. A client's session stays
 * resumable only if its engine is shut down before ts_tls_free(): OpenSSL
 * marks the session of a connection that ended otherwise as not resumable. */
void ts_tls_shutdown(struct ts_tls *t);

/* Ciphertext bytes waiting to be taken. */
size_t ts_tls_pending(const struct ts_tls *t);

/* Plaintext bytes written before the handshake completed, not yet
 * encrypted. */
size_t ts_tls_pending_plain(const struct ts_tls *t);

/* Moves up to cap bytes of output into buf; returns how many. The engine's
 * output buffer is released once emptied. */
size_t ts_tls_take(struct ts_tls *t, void *buf, size_t cap);

int ts_tls_established(const struct ts_tls *t);
int ts_tls_failed(const struct ts_tls *t);
int ts_tls_peer_closed(const struct ts_tls *t);
int ts_tls_resumed(const struct ts_tls *t);

/* Why the engine failed, for a log line: the certificate verification
 * result or the OpenSSL reason. Writes into buf and returns it. */
const char *ts_tls_strerror(const struct ts_tls *t, char *buf, size_t size);

#endif
