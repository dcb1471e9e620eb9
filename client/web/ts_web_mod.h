/*
 * ts_web_mod: the moderation console of the web edge, under {base}/mod/.
 *
 * A moderator pastes a MODERATOR or ADMIN token once (POST /mod/signin);
 * the edge opens a connection to the cluster WITH THAT TOKEN and answers
 * only once the cluster's Welcome names the role. The token then lives here,
 * in memory, for the session's life; the browser holds only a random
 * session id in a cookie (HttpOnly, SameSite=Strict, Path={base}/mod/,
 * Secure on TLS, 12 hours). Every view and action goes over the
 * moderator's own connection, so what a moderator may see and do is decided
 * by the cluster, never by the edge. A session ends at sign-out, at expiry,
 * or when the cluster refuses its token (revoked: the connection is closed
 * with UNAUTHENTICATED); its live streams end with it.
 *
 * Routes (every answer: Cache-Control private, no-store; the reader pages'
 * CSP; without a session, 403 on everything but the sign-in page):
 *   GET  /mod/signin, POST /mod/signin, POST /mod/signout
 *   GET  /mod/                      pending queue, oldest first, with parents
 *   GET  /mod/t/{key}               one thread, every comment in full
 *   GET  /mod/recent?thread=&author=&status=   newest comments seen
 *   POST /mod/act                   op=approve|hide|unhide|delete|edit|lock|
 *                                   unlock|premod|postmod|ban|unban, c=ID.VERSION
 *                                   (repeated: bulk), t=KEY, body, reason,
 *                                   author, hours; 303 back, or JSON
 *   GET  /mod/events                server-sent events of the session
 *
 * "Recent" and the conflict check read a store of comment states in memory:
 * every full comment the console has seen (queue, thread and change answers,
 * and the sessions' moderator-view subscriptions), newest version kept, the
 * 20000 newest ids; a new session first reads the cluster's last 5000
 * events into it. An action names the version its console showed; if
 * the store knows a newer one, the action is not sent and the moderator is
 * told "already moderated by X: now STATUS". The window left is the time an
 * event takes to reach the edge.
 *
 * Sign-in attempts are limited per peer address (TS_WEB_MOD_SIGNIN_PER_MIN
 * in a minute from the first): an attempt counts from when it arrives and
 * is released only when it succeeds.
 *
 * None of this is ever used by reader routes: the store, sessions and
 * tokens are reachable only from the /mod/ handler.
 */
#ifndef TS_WEB_MOD_H
#define TS_WEB_MOD_H

#include <stddef.h>
#include <stdint.h>

#include <h2o.h>
#include <uv.h>

#include "threadsync.h"
#include "ts_mirror_db.h"
#include "ts_web_form.h"

#define TS_WEB_MOD_SESSION_S (12 * 3600)
#define TS_WEB_MOD_SIGNIN_PER_MIN 10 /* sign-in attempts per address and minute */

struct ts_web_mod_config {
    const char *base;                       /* URL prefix, "" */
    const struct ts_client_config *cluster; /* servers and CA (its token is not used) */
    const uint8_t *secret;                  /* TS_WEB_SECRET_LEN bytes, the edge's */
    struct ts_mirror_db *db;                /* the mirror's, read for parents' text */
    unsigned heartbeat_ms;                  /* 0: 15000 */
};

struct ts_web_mod;

/* *out (OUT): close with ts_web_mod_close() on the loop, free with
 * ts_web_mod_free() after the loop ended. Everything in cfg is copied but
 * secret and db, which must outlive it. TS_OK or TS_E_NOMEM. */
int ts_web_mod_new(uv_loop_t *loop, const struct ts_web_mod_config *cfg, struct ts_web_mod **out);

/* Answers req, whose path (after base) path[0..plen) is /mod or under
 * /mod/. Always answers (0). */
int ts_web_mod_handle(struct ts_web_mod *m, h2o_req_t *req, const char *path, size_t plen);

/* Ends every session (their connections close, their streams end). */
void ts_web_mod_close(struct ts_web_mod *m);
void ts_web_mod_free(struct ts_web_mod *m);

#endif
