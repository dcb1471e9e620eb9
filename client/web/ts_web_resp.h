/*
 * ts_web_resp: what every route of the web edge answers with, shared by the
 * reader pages (ts_web.c) and the moderation console (ts_web_mod.c): the
 * security headers (one Content-Security-Policy for both: no inline script
 * or style), plain-text and buffered answers, content negotiation for the
 * script's JSON, and the decoding of a thread key from a URL segment.
 */
#ifndef TS_WEB_RESP_H
#define TS_WEB_RESP_H

#include <stddef.h>

#include <h2o.h>

#include "ts_buf.h"
#include "ts_web_form.h"

/* Content-Security-Policy, X-Content-Type-Options, Referrer-Policy. */
void ts_web_resp_security(h2o_req_t *req);

/* A text/plain answer with the security headers and Cache-Control cache. */
void ts_web_resp_text(h2o_req_t *req, int status, const char *cache, const char *msg);

/* b as the body (then freed) with the security headers; a failed b (out of
 * memory while building it) is answered 503 instead. */
void ts_web_resp_buf(h2o_req_t *req, int status, const char *ctype, struct ts_buf *b);

/* 1 when the request's Accept names application/json (the script). */
int ts_web_resp_wants_json(h2o_req_t *req);

/* Decodes a thread key written by ts_web_page_key (seg[0..len), not
 * NUL-terminated): %XX escapes, '+' is itself. TS_OK: (*kv)[0].value is the
 * key (non-empty); free with ts_web_kv_free(*kv, *n) either way.
 * TS_E_INVALID_ARGUMENT, TS_E_NOMEM. */
int ts_web_resp_key(const char *seg, size_t len, struct ts_web_kv **kv, size_t *n);

#endif
