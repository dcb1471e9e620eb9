/*
 * ts_limits: this node's abuse limits (PROTOCOL.md "Rate limits"): post
 * rates per token and per author, and open connections per source address.
 *
 * Node-local on purpose: nothing here is replicated, and a write refused
 * here never reaches the log. Each node limits what it is asked to propose
 * (only the leader proposes, so in practice the leader's limits apply).
 *
 * A post rate is a token bucket of `burst` posts refilled evenly over
 * `window_ms` (e.g. 10 posts per 10 s: a burst of 10, then one per second),
 * kept as GCRA (one "theoretical arrival time" per key), so a bucket is 16
 * bytes plus its key and a full bucket carries no information: buckets that
 * refilled are dropped when the table grows, which bounds memory by the
 * keys active within one window.
 *
 * Keys come from clients (names, e-mails, addresses): the tables hash with
 * a per-process seed. Single-threaded, on the server's loop.
 */
#ifndef TS_LIMITS_H
#define TS_LIMITS_H

#include <stddef.h>
#include <stdint.h>

struct ts_limits;

struct ts_limits_config {
    uint32_t author_burst;     /* posts per author per window; 0: unlimited */
    uint32_t author_window_ms; /* 0: 10000 */
    uint32_t token_burst;      /* posts per token per window; 0: unlimited */
    uint32_t token_window_ms;  /* 0: 1000 */
    uint32_t conns_per_addr;   /* open connections per source address; 0: unlimited */
};

/* Defaults a server uses when its configuration gives none. */
#define TS_LIMITS_AUTHOR_BURST 10
#define TS_LIMITS_AUTHOR_WINDOW_MS 10000
#define TS_LIMITS_TOKEN_BURST 100
#define TS_LIMITS_TOKEN_WINDOW_MS 1000
#define TS_LIMITS_CONNS_PER_ADDR 64

/* NULL when out of memory. cfg is copied. */
struct ts_limits *ts_limits_new(const struct ts_limits_config *cfg);
void ts_limits_free(struct ts_limits *l);

/* One post by the connection holding token (its name) for author (the
 * author key: see ts_limits_author_key). Takes one unit from both buckets,
 * or from neither: TS_OK, or TS_E_RATE_LIMITED with *retry_after_ms (at
 * least 1) the wait after which the same post would pass. TS_E_NOMEM
 * (nothing taken). now_ms: any monotonic clock, the same on every call. */
int ts_limits_post(struct ts_limits *l, const char *token, const char *author, uint64_t now_ms,
                   uint32_t *retry_after_ms);

/* The author key of a post: "e:" + the e-mail lowercased when there is
 * one, else "n:" + the name as given, into out (NUL-terminated, truncated
 * to size). */
void ts_limits_author_key(const char *name, const char *email, char *out, size_t size);

/* A connection from addr (an IP address, no port) opens, and is counted
 * (call ts_limits_conn_close when it closes, whatever this returned except
 * TS_E_NOMEM): TS_OK within conns_per_addr; TS_E_RATE_LIMITED above it
 * (refuse it with an Error); TS_E_BUSY above twice it (drop it at once: a
 * flood does not get a TLS handshake each). */
int ts_limits_conn_open(struct ts_limits *l, const char *addr);

/* A connection counted by ts_limits_conn_open closes. */
void ts_limits_conn_close(struct ts_limits *l, const char *addr);

/* Open connections counted for addr. */
uint32_t ts_limits_conn_count(const struct ts_limits *l, const char *addr);

/* Entries held (buckets and addresses), for tests and metrics. */
size_t ts_limits_entries(const struct ts_limits *l);

#endif
