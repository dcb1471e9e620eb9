/*
 * ts_session's insides, shared with the request handlers (ts_req_read.c,
 * ts_req_write.c, ts_req_admin.c) only.
 *
 * A handler is called for a request that passed the session's checks (a
 * request_id, valid field text, a token still valid and whose role allows
 * the request's least action) and must answer it exactly once: now, with
 * ts__session_result / ts__session_error, or later from a replication
 * callback through a ts__session_wait record.
 */
#ifndef TS_SESSION_INT_H
#define TS_SESSION_INT_H

#include <stddef.h>
#include <stdint.h>

#include "threadsync.pb-c.h"
#include "ts_auth.h"
#include "ts_link.h"
#include "ts_frame.h"
#include "ts_session.h"

struct ts_backup;
struct ts_hub_sub;
struct ts_hub_sink_ops;

/* Answers above this cannot be framed for the client (PROTOCOL.md §2). */
#define TS__SESSION_FRAME_MAX (TS_FRAME_MAX_DEFAULT + (64u << 10))

enum { TS__SESSION_AWAIT_HELLO, TS__SESSION_READY, TS__SESSION_CLOSING };

/* A request answered from a replication callback. Embedded first in the
 * handler's own record; linked into its session while in flight, so that
 * the session's on_close can detach it (s = NULL): the callback then drops
 * the answer (the client retries with its idempotency key). */
struct ts__session_wait {
    struct ts_session *s;
    struct ts__session_wait *prev, *next;
    uint64_t request_id;
};

struct ts_session {
    struct ts_server *srv;
    struct ts_link *conn;
    struct ts_session *prev, *next;
    struct ts_hub_sub *sub;
    struct ts__session_wait *waits; /* writes and membership changes in flight */
    struct ts_backup *backup;       /* a backup being streamed (ts_backup.c) */
    /* Until TLS is done: the accept; then the handshake's end. The Hello
     * is due handshake_ms after the latter (PROTOCOL.md), the handshake
     * itself 2 x handshake_ms after the former (ts_session_tick). */
    uint64_t since_ms;
    uint64_t last_rx_ms, last_tx_ms;
    uint64_t ping_nonce;
    size_t charged;             /* queued output as counted in srv->out_total */
    Threadsync__Frame *stashed; /* a request that arrived at the node's ceiling */
    const char *stashed_bad;
    int stashed_status;
    /* Bytes, ordered with the arrays after them so the struct has no
     * padding inside (an idle subscriber holds one per connection). */
    uint8_t state;        /* TS__SESSION_* */
    uint8_t role;         /* a Threadsync__Role (0..4) from the tokens table */
    uint8_t waiting;      /* over an output budget: link paused (ts_session.c) */
    uint8_t full_sub;     /* subscribed with the moderators' view */
    uint8_t conn_refused; /* over the per-address limit: refuse the Hello */
    uint8_t addr_counted; /* counted in ts_limits under the peer's IP */
    uint8_t tls_done;
    /* While a Post's handler runs: its I/O thread found it valid
     * (ts_link_frame_valid), so ts_req_write_post skips ts_valid_post. */
    uint8_t post_checked;
    uint8_t token_hash[TS_AUTH_HASH_LEN];
    char token_name[72];
};

/* Every session log line starts with these, in this order. */
#define TS__SESSION_LOG_FMT "conn=%llu peer=%s role=%s "
#define TS__SESSION_LOG_ARGS(s)                                                                    \
    (unsigned long long)ts_link_id((s)->conn), ts_link_peer((s)->conn),                            \
        ts__session_role_name((s)->role)

/* "none" before Hello, else the role's name. */
const char *ts__session_role_name(int role);

/* Sends f; a session over its output budget, or on a node over its own,
 * stops being served until its output drains (ts_session.c). */
int ts__session_send(struct ts_session *s, const Threadsync__Frame *f);

/* Sends r (its request_id and body set) as a Result frame. */
void ts__session_result(struct ts_session *s, Threadsync__Result *r);

/* Whether r fits in one frame the client accepts. */
int ts__session_result_fits(const Threadsync__Result *r);

/* Sends an Error for request_id. field and message may be NULL (message
 * then defaults to the code's); NOT_LEADER carries the leader's client
 * address, or becomes UNAVAILABLE when none is known; UNAVAILABLE carries a
 * retry hint of 100 ms. */
void ts__session_error(struct ts_session *s, uint64_t request_id, int code, const char *field,
                       const char *message);

/* The same with an explicit retry_after_ms (0: UNAVAILABLE's default). */
void ts__session_error_retry(struct ts_session *s, uint64_t request_id, int code, const char *field,
                             const char *message, uint32_t retry_after_ms);

/* 1 when the session's role allows action; else answers FORBIDDEN, 0. */
int ts__session_allowed(struct ts_session *s, uint64_t request_id, enum ts_auth_action action);

/* Links w (request request_id) into s until ts__session_wait_done. */
void ts__session_wait_add(struct ts_session *s, struct ts__session_wait *w, uint64_t request_id);

/* Unlinks w; returns the session to answer, or NULL when it closed or is
 * closing (nobody to answer). */
struct ts_session *ts__session_wait_done(struct ts__session_wait *w);

/* The sink a subscription's hub writes the session's frames to. */
extern const struct ts_hub_sink_ops ts__session_hub_sink;

#endif
