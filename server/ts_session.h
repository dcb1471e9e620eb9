/*
 * ts_session: one client connection's protocol state machine (PROTOCOL.md
 * section 3): AWAIT_HELLO -> READY (-> subscribed), and the dispatch of
 * requests to the store (reads), the replication module (writes) and the
 * hub (subscriptions).
 *
 * A session lives exactly as long as its connection (ts_link): it is created on accept
 * and freed in the connection's on_close. Writes in flight when it closes
 * are detached, not cancelled: their callbacks find no session and drop the
 * answer (the client retries with its idempotency key).
 *
 * Memory per idle session: struct ts_session plus its ts_link and ts_conn; no buffers.
 */
#ifndef TS_SESSION_H
#define TS_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <uv.h>

struct ts_server;
struct ts_session;

/* Accepts one pending connection from listener into a new session that
 * registers itself with srv. */
int ts_session_accept(struct ts_server *srv, uv_stream_t *listener, SSL_CTX *ctx);

/* Periodic upkeep (called by the server about once a second): handshake
 * deadline, heartbeat Ping, dropping peers silent for 3 intervals. */
void ts_session_tick(struct ts_session *s, uint64_t now_ms);

/* Checks the session's token again (tokens file and replicated table): a
 * revoked or removed token's connection is closed (Error UNAUTHENTICATED),
 * a changed role takes effect. The server calls it on every session when
 * the token table changes; requests do it themselves. */
void ts_session_recheck_auth(struct ts_session *s);

/* Starts closing: the session is freed later, from its connection's
 * on_close. err is logged and decides the close reason. */
void ts_session_close(struct ts_session *s, int err);

/* The server's sessions form an intrusive list (for ticks and shutdown). */
struct ts_session *ts_session_next(const struct ts_session *s);

/* For metrics: the session's role (0 before Hello), and whether it is
 * subscribed (1, with its hub cursor in *seq) or not (0). */
int ts_session_role(const struct ts_session *s);
int ts_session_sub_seq(const struct ts_session *s, uint64_t *seq);

/* Bytes of struct ts_session, for the per-connection size test. */
size_t ts_session_size(void);

#endif
