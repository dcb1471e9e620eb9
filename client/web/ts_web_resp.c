/*
 * ts_web_resp: shared answers of the web edge (see ts_web_resp.h).
 */
#include "ts_web_resp.h"

#include <string.h>

#include "ts_err.h"
#include "ts_web_http.h"

static const char csp[] = "default-src 'none'; script-src 'self'; style-src 'self'; "
                          "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
                          "base-uri 'none'; frame-ancestors 'self'";

void ts_web_resp_security(h2o_req_t *req)
{
    ts_web_http_header(req, "content-security-policy", csp);
    ts_web_http_header(req, "x-content-type-options", "nosniff");
    ts_web_http_header(req, "referrer-policy", "same-origin");
}

void ts_web_resp_text(h2o_req_t *req, int status, const char *cache, const char *msg)
{
    ts_web_resp_security(req);
    ts_web_http_header(req, "cache-control", cache);
    ts_web_http_send(req, status, "text/plain; charset=utf-8", msg, strlen(msg));
}

void ts_web_resp_buf(h2o_req_t *req, int status, const char *ctype, struct ts_buf *b)
{
    if (b->failed) {
        ts_buf_free(b);
        ts_web_resp_text(req, 503, "no-store", "out of memory\n");
        return;
    }
    ts_web_resp_security(req);
    ts_web_http_send(req, status, ctype, b->p, b->len);
    ts_buf_free(b);
}

int ts_web_resp_wants_json(h2o_req_t *req)
{
    size_t len = 0;
    const char *a = ts_web_http_req_header(req, "accept", &len);
    return a && memmem(a, len, "application/json", 16) != NULL;
}

int ts_web_resp_key(const char *seg, size_t len, struct ts_web_kv **kv, size_t *n)
{
    *kv = NULL;
    *n = 0;
    /* Decoded as a form value would be, except that '+' is itself:
     * re-escape it first. */
    struct ts_buf raw = TS_BUF_INIT;
    ts_buf_puts(&raw, "k=");
    for (size_t i = 0; i < len; i++)
        ts_buf_puts(&raw, seg[i] == '+' ? "%2B" : (char[2]){seg[i], 0});
    int rc = raw.failed ? TS_E_NOMEM : ts_web_form_parse(raw.p, raw.len, 1, kv, n);
    ts_buf_free(&raw);
    if (rc == TS_OK && (*n != 1 || !(*kv)[0].value[0]))
        rc = TS_E_INVALID_ARGUMENT;
    return rc;
}
