/*
 * ts_web: the web edge (`threadsync web`): HTTP pages, forms and the live
 * feed of a mirror, served from the mirror's own loop.
 *
 * It lives inside `threadsync mirror` (ts_cli_mirror_run_hooked): the
 * mirror keeps DIR current exactly as without it, and calls the edge at its
 * start, with each batch before it is applied (ts_web_on_events), after a snapshot
 * (ts_web_on_reset), after each render flush (ts_web_on_flushed: the edge
 * writes DIR/threads/<file>.atom for those threads) and when it stops.
 *
 * Routes (base is the configured URL prefix, "" by default):
 *   GET  /t/{key}            the thread page (form, script, stylesheet)
 *   GET  /t/{key}/embed      the same without <html>/<head>/<h1>
 *   GET  /t/{key}.json       the mirror's JSON; /t/{key}.atom the feed
 *   GET  /counts?t=K&t=K...  {"K": visible count, ...}; unknown keys left out
 *   GET  /t/{key}/events     server-sent events (ts_web_relay.h)
 *   POST /t/{key}/post       a new comment; /edit and /delete an own one
 *   GET  /static/threadsync.{js,css}, /static/mod.{js,css}
 *   /mod/...                 the moderation console (ts_web_mod.h)
 * Data is read from the mirror's database through the edge's own
 * connection; posts go to the cluster through the edge's own ts_client
 * (its own token, the post token), each with the reader's key
 * (ts_web_addr.h) while the token is a gateway.
 *
 * Caching: .json, .atom, /counts and static files carry an ETag (the
 * thread's version and its comments' versions) and Cache-Control; pages
 * and fragments carry a fresh form nonce each, so they are no-store.
 */
#ifndef TS_WEB_H
#define TS_WEB_H

#include <stddef.h>
#include <stdint.h>

#include "threadsync.h"
#include "ts_mirror_db.h"

struct ts_web_config {
    const char *listen;          /* "host:port" */
    const char *dir;             /* the mirror directory */
    const char *base;            /* URL prefix, "" */
    size_t max_body;             /* bytes of a form; 0: 64 KiB */
    unsigned req_timeout_ms;     /* 0: 10000 */
    unsigned max_conns;          /* 0: 10000 */
    unsigned max_conns_per_addr; /* 0: 64 */
    unsigned heartbeat_ms;       /* 0: 15000 */
    size_t ring_events;          /* events kept for resuming; 0: 4096 */
    size_t atom_entries;         /* 0: 50 */
    int gzip;
    /* The moderation console's own listener ("host:port"), e.g. on an
     * internal network: then /mod/ is served there only (404 on listen).
     * NULL: /mod/ on listen. */
    const char *mod_listen;
    /* Comma-separated numeric addresses whose X-Forwarded-For is believed
     * (ts_web_addr.h); NULL: none. */
    const char *trusted_proxies;
    /* PEM certificate chain and key: HTTPS on listen (ts_web_http.h); NULL:
     * plain HTTP. */
    const char *cert_file, *key_file;
    /* Delivery threads writing the live feed to plain-HTTP browsers
     * (ts_web_fan.h): TS_WEB_FANOUT_AUTO, one per core (at most 8); 0, the
     * HTTP loop writes them itself. */
    int fanout_threads;
    /* 1: those threads write with one sendmsg per stream even where they
     * could batch their writes through io_uring (ts_web_fan.h). */
    int fanout_sendmsg;
};
#define TS_WEB_FANOUT_AUTO (-1)

struct ts_web;

/* Starts listening on loop. client_cfg: servers, CA and the token posts are
 * made with (copied). cursor: the mirror's cursor now (the feed's floor).
 * *out (OUT): close with ts_web_close() on the loop, free with
 * ts_web_free() after the loop ended. TS_OK, TS_E_CONFIG, TS_E_IO,
 * TS_E_NOMEM; on error *out may be set (close and free it as usual). */
int ts_web_new(uv_loop_t *loop, const struct ts_web_config *cfg,
               const struct ts_client_config *client_cfg, uint64_t cursor, struct ts_web **out);
uint16_t ts_web_port(const struct ts_web *w);
/* Delivery threads running (0: the loop writes the streams). */
unsigned ts_web_fanout_threads(const struct ts_web *w);
/* Of those, the ones batching their writes through io_uring. */
unsigned ts_web_fanout_batched(const struct ts_web *w);
/* The port the moderation console is served on (mod_listen's, or listen's). */
uint16_t ts_web_mod_port(const struct ts_web *w);
void ts_web_on_events(struct ts_web *w, const Threadsync__Events *ev);
void ts_web_on_reset(struct ts_web *w, uint64_t seq);
void ts_web_on_flushed(struct ts_web *w, const struct ts_mirror_touched *ids);
void ts_web_close(struct ts_web *w);
void ts_web_free(struct ts_web *w);

#endif
