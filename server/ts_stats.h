/*
 * ts_stats: the node's metrics (what threadsyncd exposes, on top of the
 * generic ts_metrics registry) and its HTTP endpoint (ts_httpd):
 *
 *   GET /metrics   Prometheus text format 0.0.4
 *   GET /healthz   200 "ok" when the node knows a leader and has applied
 *                  everything it knows is committed; else 503 with the
 *                  reason (no leader, applying, stopping)
 *
 * Two kinds of figures: counters fed by hooks from the hot paths (frames
 * and bytes, errors, TLS handshakes, post-to-commit latency, applies), and
 * gauges and the subscriber-lag histogram sampled from the server's state
 * (sessions, hub cursors, store, raft) when a scrape arrives. Every hook
 * takes a NULL ts_stats and then does nothing.
 *
 * The metric names and meanings are listed in docs/OPERATIONS.md ("Metrics and health").
 * Load: hooks are a few additions each (frame size computations aside); a
 * scrape walks the sessions once.
 */
#ifndef TS_STATS_H
#define TS_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "threadsync.pb-c.h"

struct ts_server;
struct ts_stats;
struct ts_metrics;

/* Creates the families for srv (borrowed; read at scrape time only). */
int ts_stats_new(struct ts_server *srv, struct ts_stats **out);

/* Starts the HTTP listener on addr (numeric host:port; port 0: kernel's
 * choice). TS_OK, TS_E_CONFIG, TS_E_IO (logged), TS_E_NOMEM. */
int ts_stats_listen(struct ts_stats *st, const char *addr);

/* The bound address, "" when not listening. */
const char *ts_stats_address(const struct ts_stats *st);

/* Closes the listener, if any (its handles close on the loop, which the
 * server runs to the end anyway). st stays valid (hooks still count) until
 * ts_stats_free. */
void ts_stats_close(struct ts_stats *st);
void ts_stats_free(struct ts_stats *st);

/* The /metrics page as of now (samples the server's state). *out is
 * malloc'd; the caller frees it. */
int ts_stats_render(struct ts_stats *st, char **out, size_t *len);

/* The /healthz verdict: 1 healthy; else 0 and a one-line reason. */
int ts_stats_healthy(const struct ts_stats *st, char *why, size_t n);

/* The registry, for tests. */
struct ts_metrics *ts_stats_registry(struct ts_stats *st);

/* ---- hooks ---- */

void ts_stats_accepted(struct ts_stats *st);
/* A client's TLS handshake completed (resumed: a session was resumed). */
void ts_stats_tls(struct ts_stats *st, int resumed);
/* A TLS handshake failed (the connection closed with TS_E_TLS before it
 * could send a frame). */
void ts_stats_tls_failed(struct ts_stats *st);
/* One frame of bytes (header included) received / sent: the size the
 * decoder read or the encoder wrote, never measured again here. */
void ts_stats_frame_in(struct ts_stats *st, size_t bytes);
void ts_stats_frame_out(struct ts_stats *st, size_t bytes);
/* len bytes of whole, already framed frames sent (the hub's batches). */
void ts_stats_frames_out(struct ts_stats *st, const void *data, size_t len);
/* An Error frame with this code sent to a client. */
void ts_stats_error(struct ts_stats *st, int code);
/* A proposal made at start_ns (uv_hrtime) got its answer with status. */
void ts_stats_post_done(struct ts_stats *st, int status, uint64_t start_ns);
/* The state machine applied an entry / was replaced by a snapshot. */
void ts_stats_applied(struct ts_stats *st);
void ts_stats_restored(struct ts_stats *st);
/* A backup of bytes was streamed to the end. */
void ts_stats_backup_done(struct ts_stats *st, uint64_t bytes);

#endif
