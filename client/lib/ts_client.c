/*
 * ts_client: libthreadsync's connection, request and subscription engine.
 *
 * One client has at most one ts_conn at a time; a new one is dialled only
 * after the old one's on_close, so every conn callback belongs to c->conn.
 * Requests live in one table from submission to their single callback; a
 * request's id is the request_id it was sent with on the current
 * connection, and every id is cleared when that connection closes, which is
 * what makes "re-send after reconnect" a plain walk over the table. Ids come
 * from one counter per client, so an answer that arrives late (after a
 * timeout removed its request) can never be taken for another request's.
 *
 * Every deadline (dial, connect timeout, heartbeat, silence, request
 * timeouts, retry-after) is served by one timer armed for the earliest of
 * them; when it fires it handles whatever is due and re-arms.
 *
 * Leaving a server: a failover must not wait for TCP to notice a stopped or
 * cut-off node (minutes), nor for a node without a leader to get one (until
 * a partition heals). So a connection is left for the next server of the
 * list when requests sent on it hear nothing for 2 x silence_ms (a Ping
 * goes out at 1 x, and any frame counts; with a single server there is
 * nowhere to go, and a busy server is waited for), when a request is answered
 * UNAVAILABLE, and when the handshake outlasts connect_timeout_ms; a server
 * left for silence is "shunned" for TS__SHUN_MS, neither dialled from the
 * list nor followed as a NOT_LEADER redirect, since followers keep naming
 * a stopped leader until they elect another. So a client
 * costs one timer however many requests it has in flight; finding the
 * earliest deadline walks the table, fine for the tens to hundreds of
 * requests a client pipelines.
 *
 * Re-entrancy: user callbacks may call ts_client_close(). Closing only
 * marks the client, closes the connection and the timer; the memory goes in
 * the last of their close callbacks. So after each user callback the code
 * checks c->closing and stops instead of touching the connection or timer.
 */
#include "ts_client_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "ts_assert.h"
#include "ts_conn.h"
#include "ts_frame.h"
#include "ts_hello.h"
#include "ts_hex.h"
#include "ts_log.h"
#include "ts_tls.h"

/* ---- servers ------------------------------------------------------------ */

int ts__server_parse(const char *text, char **host, uint16_t *port)
{
    if (!text || !*text)
        return TS_E_CONFIG;
    const char *h = text, *hend, *p = NULL;
    if (text[0] == '[') {
        const char *rb = strchr(text, ']');
        if (!rb || rb == text + 1)
            return TS_E_CONFIG;
        h = text + 1;
        hend = rb;
        if (rb[1] == ':')
            p = rb + 2;
        else if (rb[1] != '\0')
            return TS_E_CONFIG;
    } else {
        const char *colon = strrchr(text, ':');
        /* Two colons without brackets: an IPv6 address whose port cannot be
         * told apart; insist on the bracket form. */
        if (colon && strchr(text, ':') != colon)
            return TS_E_CONFIG;
        hend = colon ? colon : text + strlen(text);
        if (colon)
            p = colon + 1;
    }
    if (hend == h)
        return TS_E_CONFIG;
    unsigned long v = TS_DEFAULT_PORT;
    if (p) {
        if (!isdigit((unsigned char)*p))
            return TS_E_CONFIG;
        char *end;
        errno = 0;
        v = strtoul(p, &end, 10);
        if (errno || *end || v == 0 || v > 65535)
            return TS_E_CONFIG;
    }
    char *copy = strndup(h, (size_t)(hend - h));
    if (!copy)
        return TS_E_NOMEM;
    *host = copy;
    *port = (uint16_t)v;
    return TS_OK;
}

static void server_clear(struct ts__server *s)
{
    free(s->host);
    free(s->text);
    memset(s, 0, sizeof(*s));
}

static int server_set(struct ts__server *s, const char *text)
{
    struct ts__server n = {0};
    int rc = ts__server_parse(text, &n.host, &n.port);
    if (rc)
        return rc;
    n.text = strdup(text);
    if (!n.text) {
        free(n.host);
        return TS_E_NOMEM;
    }
    server_clear(s);
    *s = n;
    return TS_OK;
}

void ts__dial_free(struct ts__dial *d)
{
    for (size_t i = 0; i < d->n; i++)
        server_clear(&d->v[i]);
    free(d->v);
    server_clear(&d->redirect);
    server_clear(&d->redirect_used);
    memset(d, 0, sizeof(*d));
}

int ts__dial_init(struct ts__dial *d, const char *const *texts, size_t n)
{
    memset(d, 0, sizeof(*d));
    if (n == 0 || !texts)
        return TS_E_CONFIG;
    d->v = calloc(n, sizeof(*d->v));
    if (!d->v)
        return TS_E_NOMEM;
    for (size_t i = 0; i < n; i++) {
        d->n = i + 1;
        int rc = server_set(&d->v[i], texts[i]);
        if (rc) {
            ts__dial_free(d);
            return rc;
        }
    }
    return TS_OK;
}

const struct ts__server *ts__dial_pick(struct ts__dial *d)
{
    if (d->redirect.host) {
        /* Kept apart from the pending slot: the connection's messages point
         * at it while a newer redirect may already be pending. */
        server_clear(&d->redirect_used);
        d->redirect_used = d->redirect;
        memset(&d->redirect, 0, sizeof(d->redirect));
        d->on_redirect = 1;
        return &d->redirect_used;
    }
    d->on_redirect = 0;
    return &d->v[d->cur];
}

void ts__dial_failed(struct ts__dial *d)
{
    /* A leader that failed goes back to the list where we left it. */
    if (d->on_redirect)
        d->on_redirect = 0;
    else
        d->cur = (d->cur + 1) % d->n;
}

int ts__dial_redirect(struct ts__dial *d, const char *addr)
{
    return server_set(&d->redirect, addr);
}

/* ---- backoff, keys ------------------------------------------------------ */

uint64_t ts__backoff_delay(unsigned min_ms, unsigned max_ms, unsigned attempt, uint32_t rnd)
{
    if (max_ms < min_ms)
        max_ms = min_ms;
    uint64_t b = min_ms;
    for (unsigned i = 1; i < attempt && b < max_ms; i++)
        b *= 2;
    if (b > max_ms)
        b = max_ms;
    uint64_t half = b / 2;
    return half + rnd % (b - half + 1);
}

static uint32_t rand32(void)
{
    uint32_t r = 0;
    /* Jitter only spreads clients apart; a failing RNG degrades it to the
     * lower bound, it does not stop reconnecting. */
    if (RAND_bytes((unsigned char *)&r, sizeof(r)) != 1)
        r = 0;
    return r;
}

int ts__idem_key(char out[TS__IDEM_KEY_LEN + 1])
{
    return ts_hex_random(TS__IDEM_KEY_LEN / 2, out);
}

/* ---- request table ------------------------------------------------------ */

void ts__reqs_append(struct ts__reqs *t, struct ts__req *r)
{
    r->next = NULL;
    r->prev = t->tail;
    if (t->tail)
        t->tail->next = r;
    else
        t->head = r;
    t->tail = r;
    t->n++;
}

void ts__reqs_unlink(struct ts__reqs *t, struct ts__req *r)
{
    /* By the ends, not by r's links: the same on a well-formed list, and
     * the analyzer then sees that the head moves past a request unlinked
     * from it (it was taking a non-null prev at the head as possible). */
    if (t->head == r)
        t->head = r->next;
    else
        r->prev->next = r->next;
    if (t->tail == r)
        t->tail = r->prev;
    else
        r->next->prev = r->prev;
    r->next = r->prev = NULL;
    t->n--;
}

struct ts__req *ts__reqs_find(const struct ts__reqs *t, uint64_t id)
{
    if (id == 0)
        return NULL;
    for (struct ts__req *r = t->head; r; r = r->next)
        if (r->id == id)
            return r;
    return NULL;
}

static void req_free(struct ts__req *r)
{
    free(r->packed);
    if (r->last_refusal)
        threadsync__error__free_unpacked(r->last_refusal, NULL);
    free(r);
}

/* Keeps e as the refusal r is retried after (see last_refusal). */
static void keep_refusal(struct ts__req *r, const Threadsync__Error *e)
{
    Threadsync__Error *copy = (Threadsync__Error *)ts_frame_msg_copy(&e->base);
    if (!copy)
        return; /* a deadline then reports TIMEOUT: still true */
    if (r->last_refusal)
        threadsync__error__free_unpacked(r->last_refusal, NULL);
    r->last_refusal = copy;
}

/* Calls r's typed callback; res NULL unless TS_OK. */
static void msg_finish(struct ts__req *r, int err, const Threadsync__Error *detail,
                       const Threadsync__Result *res)
{
    switch (r->result_case) {
    case THREADSYNC__RESULT__BODY_POST:
        r->cb.post(r->arg, err, detail, res ? res->post : NULL);
        break;
    case THREADSYNC__RESULT__BODY_GET:
        r->cb.get(r->arg, err, detail, res ? res->get : NULL);
        break;
    case THREADSYNC__RESULT__BODY_DIGEST:
        r->cb.digest(r->arg, err, detail, res ? res->digest : NULL);
        break;
    case THREADSYNC__RESULT__BODY_CHANGE:
        r->cb.change(r->arg, err, detail, res ? res->change : NULL);
        break;
    case THREADSYNC__RESULT__BODY_PENDING_QUEUE:
        r->cb.pending(r->arg, err, detail, res ? res->pending_queue : NULL);
        break;
    case THREADSYNC__RESULT__BODY_AUDIT_LIST:
        r->cb.audit_list(r->arg, err, detail, res ? res->audit_list : NULL);
        break;
    case THREADSYNC__RESULT__BODY_BAN:
        r->cb.ban(r->arg, err, detail, res ? res->ban : NULL);
        break;
    case THREADSYNC__RESULT__BODY_TOKEN_ADD:
        r->cb.token_add(r->arg, err, detail, res ? res->token_add : NULL);
        break;
    case THREADSYNC__RESULT__BODY_TOKEN_LIST:
        r->cb.token_list(r->arg, err, detail, res ? res->token_list : NULL);
        break;
    case THREADSYNC__RESULT__BODY_TOKEN_REVOKE:
        r->cb.token_revoke(r->arg, err, detail, res ? res->token_revoke : NULL);
        break;
    case THREADSYNC__RESULT__BODY_IMPORT:
        r->cb.import(r->arg, err, detail, res ? res->import : NULL);
        break;
    case THREADSYNC__RESULT__BODY_CLUSTER:
        r->cb.cluster(r->arg, err, detail, res ? res->cluster : NULL);
        break;
    case THREADSYNC__RESULT__BODY_REMOVE_NODE:
        r->cb.remove_node(r->arg, err, detail, res ? res->remove_node : NULL);
        break;
    case THREADSYNC__RESULT__BODY_BACKUP:
        r->cb.backup(r->arg, err, detail, res ? res->backup : NULL);
        break;
    case THREADSYNC__RESULT__BODY_STATE_DIGEST:
        r->cb.state_digest(r->arg, err, detail, res ? res->state_digest : NULL);
        break;
    default:
        break;
    }
}

void ts__req_finish(struct ts__req *r, int err, const Threadsync__Error *detail,
                    const Threadsync__Result *res)
{
    msg_finish(r, err, detail,
               err == TS_OK && res && (int)res->body_case == r->result_case ? res : NULL);
    req_free(r);
}

void ts__reqs_fail_all(struct ts__reqs *t, int err, const Threadsync__Error *detail)
{
    struct ts__req *r;
    while ((r = t->head) != NULL) {
        /* the head, popped where the analyzer sees it go (r->prev is NULL) */
        t->head = r->next;
        if (t->head)
            t->head->prev = NULL;
        else
            t->tail = NULL;
        r->next = r->prev = NULL;
        t->n--;
        ts__req_finish(r, err, detail, NULL);
    }
}

/* ---- client internals --------------------------------------------------- */

static void on_tick(uv_timer_t *t);
static void conn_on_open(struct ts_conn *conn);
static void conn_on_frame(struct ts_conn *conn, Threadsync__Frame *f, int status,
                          const char *bad_field);
static void conn_on_error(struct ts_conn *conn, int err);
static void conn_on_close(struct ts_conn *conn, int err);

static const struct ts_conn_cbs conn_cbs = {
    .on_open = conn_on_open,
    .on_frame = conn_on_frame,
    .on_error = conn_on_error,
    .on_drain = NULL,
    .on_close = conn_on_close,
};

static uint64_t now_ms(const struct ts_client *c)
{
    return uv_now(c->loop);
}

/* An Error's code as a ts_err code; codes this version does not know are
 * the server's problem, reported as INTERNAL. */
static int wire_code(const Threadsync__Error *e)
{
    int code = (int)e->code;
    return code >= TS_E_BAD_FRAME && code <= TS_E_WIRE_MAX ? code : TS_E_INTERNAL;
}

static void emit_state(struct ts_client *c, enum ts_client_state st, int err,
                       const Threadsync__Welcome *w, const Threadsync__Error *e)
{
    TS_ASSERT(c->state != TS_CLIENT_FAILED || st == TS_CLIENT_FAILED); /* FAILED is final */
    TS_ASSERT(st != TS_CLIENT_READY || (c->state == TS_CLIENT_CONNECTING && c->conn && c->ready));
    c->state = st;
    if (!c->on_state)
        return;
    struct ts_client_state_info info = {
        .state = st,
        .err = err,
        .server = c->server ? c->server->text : "",
        .welcome = w,
        .error = e,
        .failures = c->failures,
    };
    c->on_state(c->state_arg, &info);
}

/* Arms the tick for due unless it already fires no later. */
static void tick_arm(struct ts_client *c, uint64_t due)
{
    if (c->closing)
        return;
    if (due == 0)
        due = 1;
    if (c->tick_due && c->tick_due <= due)
        return;
    uint64_t now = now_ms(c);
    c->tick_due = due;
    uv_timer_start(&c->tick, on_tick, due > now ? due - now : 0, 0);
}

static void consider(uint64_t *best, uint64_t t)
{
    if (t && (*best == 0 || t < *best))
        *best = t;
}

/* When a deadline that ends a connection is due: while it is being
 * confirmed (passed() below), not before the loop has polled once more. */
static uint64_t confirm_at(const struct ts_client *c, uint64_t deadline)
{
    uint64_t next = now_ms(c) + 1;
    return c->confirming && deadline < next ? next : deadline;
}

/* 1 when a request was sent on this connection and is not answered yet. */
static int awaiting(const struct ts_client *c)
{
    for (const struct ts__req *r = c->reqs.head; r; r = r->next)
        if (r->id)
            return 1;
    return 0;
}

/* Arms the tick for the earliest thing pending, from scratch. Only things
 * that can act now count: a retry waits for a READY connection, so it is
 * not a deadline while disconnected (READY re-arms). */
static void tick_rearm(struct ts_client *c)
{
    if (c->closing)
        return;
    uint64_t best = 0;
    if (!c->conn)
        consider(&best, c->reconnect_at);
    else if (!c->conn_closing && !c->ready)
        consider(&best, confirm_at(c, c->connect_deadline));
    else if (!c->conn_closing) {
        consider(&best, c->last_tx + c->heartbeat_ms);
        consider(&best, c->last_rx + 3ull * c->heartbeat_ms);
        if (!awaiting(c)) {
            c->await_since = 0;
            c->confirming = 0; /* READY: only the silence deadline confirms */
        }
        /* The Ping at 1 x; leaving at 2 x only when there is somewhere to go. */
        if (c->await_since && !c->probe_sent)
            consider(&best, c->await_since + c->silence_ms);
        else if (c->await_since && c->dial.n > 1)
            consider(&best, confirm_at(c, c->await_since + 2ull * c->silence_ms));
    }
    int can_send = c->ready && !c->conn_closing;
    for (struct ts__req *r = c->reqs.head; r; r = r->next) {
        consider(&best, r->deadline);
        if (can_send)
            consider(&best, r->retry_at);
    }
    if (c->sub && can_send)
        consider(&best, c->sub->retry_at);
    c->tick_due = 0;
    if (best)
        tick_arm(c, best);
    else
        uv_timer_stop(&c->tick);
}

static int send_frame(struct ts_client *c, const Threadsync__Frame *f)
{
    if (!c->conn || c->conn_closing)
        return TS_E_CLOSED;
    int rc = ts_conn_send_frame(c->conn, f);
    if (rc == TS_OK)
        c->last_tx = now_ms(c);
    return rc;
}

static void conn_close(struct ts_client *c, int err)
{
    if (c->conn && !c->conn_closing) {
        c->conn_closing = 1;
        ts_conn_close(c->conn, err);
    }
}

/* The server broke the protocol: say so (as the protocol asks of either
 * side) and drop the connection; the reconnect logic takes it from there. */
static void violation(struct ts_client *c, const char *what)
{
    TS_WARN("event=protocol_violation server=%s what=\"%s\"", c->server ? c->server->text : "?",
            what);
    Threadsync__Error e = THREADSYNC__ERROR__INIT;
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    e.code = THREADSYNC__ERROR_CODE__BAD_FRAME;
    e.message = (char *)what;
    f.msg_case = THREADSYNC__FRAME__MSG_ERROR;
    f.error = &e;
    send_frame(c, &f);
    conn_close(c, TS_E_BAD_FRAME);
}

static void req_sent(struct ts_client *c, struct ts__req *r, uint64_t id, int rc)
{
    /* On failure the connection is going away; its on_close leaves the
     * request unsent for the next one. */
    r->id = rc == TS_OK ? id : 0;
    if (r->id && !c->await_since) {
        c->await_since = now_ms(c);
        c->probe_sent = 0;
        tick_arm(c, c->await_since + c->silence_ms);
    }
}

/* A request kept packed (a bulk Import is most of a megabyte): framed
 * around its bytes, never unpacked and packed again. */
static void send_packed(struct ts_client *c, struct ts__req *r, uint64_t id)
{
    uint8_t *buf;
    size_t len;
    int rc = c->conn && !c->conn_closing ? TS_OK : TS_E_CLOSED;
    if (rc == TS_OK)
        rc = ts_frame_request_encode(r->frame_case, r->packed, r->packed_len, id, &buf, &len);
    if (rc == TS_OK) {
        rc = ts_conn_send(c->conn, buf, len);
        free(buf);
        if (rc == TS_OK)
            c->last_tx = now_ms(c);
    }
    req_sent(c, r, id, rc);
}

static void send_req(struct ts_client *c, struct ts__req *r)
{
    send_packed(c, r, ++c->next_id);
}

static void send_sub(struct ts_client *c)
{
    struct ts__sub *s = c->sub;
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Subscribe m = THREADSYNC__SUBSCRIBE__INIT;
    uint64_t id = ++c->next_id;
    m.request_id = id;
    m.all = s->all ? 1 : 0;
    m.n_thread_keys = s->n_keys;
    m.thread_keys = s->keys;
    m.since_seq = s->cursor;
    f.msg_case = THREADSYNC__FRAME__MSG_SUBSCRIBE;
    f.subscribe = &m;
    s->in_snapshot = 0;
    s->id = send_frame(c, &f) == TS_OK ? id : 0;
}

/* Sends everything unsent whose retry time (if any) has come. */
static void flush_unsent(struct ts_client *c, uint64_t now)
{
    if (!c->ready || c->conn_closing)
        return;
    if (c->sub && !c->sub->id && (!c->sub->retry_at || c->sub->retry_at <= now)) {
        c->sub->retry_at = 0;
        send_sub(c);
    }
    for (struct ts__req *r = c->reqs.head; r; r = r->next) {
        if (r->id || (r->retry_at && r->retry_at > now))
            continue;
        r->retry_at = 0;
        send_req(c, r);
    }
}

static void sub_free(struct ts__sub *s)
{
    for (size_t i = 0; i < s->n_keys; i++)
        free(s->keys[i]);
    free(s->keys);
    free(s);
}

/* Ends the subscription with its one on_error. */
static void sub_end(struct ts_client *c, int err, const Threadsync__Error *detail)
{
    struct ts__sub *s = c->sub;
    if (!s)
        return;
    c->sub = NULL;
    if (s->cbs.on_error)
        s->cbs.on_error(s->arg, err, detail);
    sub_free(s);
}

static void go_failed(struct ts_client *c, int err, const Threadsync__Error *detail)
{
    /* FAILED first, so requests a callback submits are refused, not
     * queued forever. */
    TS_ASSERT(c->state != TS_CLIENT_FAILED && !c->conn);
    c->state = TS_CLIENT_FAILED;
    c->reconnect_at = 0;
    /* A request that was refused on the way (UNAVAILABLE, NOT_LEADER) is
     * answered with that refusal: it says more than the last hop did. */
    struct ts__req *r;
    while ((r = c->reqs.head) != NULL) {
        ts__reqs_unlink(&c->reqs, r);
        const Threadsync__Error *last = r->last_refusal;
        ts__req_finish(r, last ? wire_code(last) : err, last ? last : detail, NULL);
    }
    sub_end(c, err, detail);
    emit_state(c, TS_CLIENT_FAILED, err, NULL, detail);
    tick_rearm(c);
}

static int is_shunned(const struct ts_client *c, const char *addr, uint64_t now);

static void dial(struct ts_client *c)
{
    TS_ASSERT(!c->conn && !c->closing && c->state != TS_CLIENT_FAILED); /* one conn at a time */
    c->server = ts__dial_pick(&c->dial);
    /* Past a server that just timed out, while the list has others: after
     * UNAVAILABLE from the rest (an election still running) the walk would
     * otherwise come back to a stopped node and wait out a handshake. */
    for (size_t k = 1;
         k < c->dial.n && !c->dial.on_redirect && is_shunned(c, c->server->text, now_ms(c)); k++) {
        ts__dial_failed(&c->dial);
        c->server = ts__dial_pick(&c->dial);
    }
    c->ready = 0;
    c->conn_closing = 0;
    c->redirecting = 0;
    c->moving_on = 0;
    c->await_since = 0;
    c->probe_sent = 0;
    c->confirming = 0;
    if (c->conn_error) {
        ts_frame_free(c->conn_error);
        c->conn_error = NULL;
    }
    c->connect_deadline = now_ms(c) + c->connect_timeout_ms;
    emit_state(c, TS_CLIENT_CONNECTING, TS_OK, NULL, NULL);
    if (c->closing)
        return;
    struct ts_conn *conn = NULL;
    int rc = ts_conn_connect(c->loop, c->server->host, c->server->port, c->ssl, &conn_cbs, c,
                             TS__CLIENT_MAX_FRAME, &conn);
    if (rc != TS_OK) {
        /* Same path as a connection that failed later. */
        c->failures++;
        ts__dial_failed(&c->dial);
        if (!c->reconnect && --c->pass_left == 0) {
            go_failed(c, rc, NULL);
            return;
        }
        emit_state(c, TS_CLIENT_DISCONNECTED, rc, NULL, NULL);
        if (c->closing)
            return;
        c->reconnect_at =
            now_ms(c) + (c->reconnect ? ts__backoff_delay(c->backoff_min_ms, c->backoff_max_ms,
                                                          c->failures, rand32())
                                      : 0);
        tick_rearm(c);
        return;
    }
    c->conn = conn;
    tick_rearm(c);
}

/* Remembers the current server as one that timed out (see TS__SHUN_MS). */
static void shun(struct ts_client *c, uint64_t now)
{
    char *copy = strdup(c->server->text);
    if (!copy)
        return; /* only a redirect saved is lost */
    free(c->shunned);
    c->shunned = copy;
    c->shunned_until = now + TS__SHUN_MS;
}

static int is_shunned(const struct ts_client *c, const char *addr, uint64_t now)
{
    return c->shunned && now < c->shunned_until && strcmp(c->shunned, addr) == 0;
}

static void send_ping(struct ts_client *c)
{
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Ping p = THREADSYNC__PING__INIT;
    p.nonce = ++c->ping_nonce;
    f.msg_case = THREADSYNC__FRAME__MSG_PING;
    f.ping = &p;
    send_frame(c, &f);
}

/* Whether deadline has passed, for the deadlines that end a connection.
 * Timers run before I/O in a loop iteration, so after the loop was blocked
 * (a user callback that took seconds: a mirror rendering) the frames that
 * would have met the deadline are still unread. The first time it is
 * found passed the tick comes back 1 ms later, after a poll; only if it
 * still holds then (a frame resets confirming) is it true. */
static int passed(struct ts_client *c, uint64_t now, uint64_t deadline)
{
    if (now < deadline)
        return 0;
    if (c->confirming)
        return 1;
    c->confirming = 1;
    tick_arm(c, now + 1);
    return 0;
}

static void on_tick(uv_timer_t *t)
{
    struct ts_client *c = (struct ts_client *)t->data;
    c->tick_due = 0;
    uint64_t now = now_ms(c);

    if (!c->conn && c->reconnect_at && now >= c->reconnect_at && c->state != TS_CLIENT_FAILED) {
        c->reconnect_at = 0;
        dial(c);
        if (c->closing)
            return;
    }
    if (c->conn && !c->conn_closing) {
        if (!c->ready) {
            if (passed(c, now, c->connect_deadline)) {
                shun(c, now);
                c->conn_closing = 1;
                ts_conn_abort(c->conn, TS_E_TIMEOUT);
            }
        } else if (now >= c->last_rx + 3ull * c->heartbeat_ms) {
            TS_WARN("event=heartbeat_timeout server=%s", c->server->text);
            conn_close(c, TS_E_TIMEOUT);
        } else if (c->await_since && c->dial.n > 1 &&
                   passed(c, now, c->await_since + 2ull * c->silence_ms)) {
            /* A stopped process or a cut link: TCP says nothing for
             * minutes, and the requests may be answered elsewhere. */
            TS_WARN("event=server_silent server=%s silent_ms=%llu", c->server->text,
                    (unsigned long long)(now - c->await_since));
            shun(c, now);
            c->moving_on = 1;
            c->moves++;
            c->conn_closing = 1;
            ts_conn_abort(c->conn, TS_E_TIMEOUT);
        } else if (now >= c->last_tx + c->heartbeat_ms ||
                   (c->await_since && !c->probe_sent && now >= c->await_since + c->silence_ms)) {
            if (c->await_since)
                c->probe_sent = 1;
            send_ping(c);
        }
    }
    /* Restart the walk after each callback: it may have added requests. */
    for (int again = 1; again && !c->closing;) {
        again = 0;
        for (struct ts__req *r = c->reqs.head; r; r = r->next) {
            if (r->deadline && now >= r->deadline) {
                ts__reqs_unlink(&c->reqs, r);
                const Threadsync__Error *last = r->last_refusal;
                ts__req_finish(r, last ? (int)last->code : TS_E_TIMEOUT, last, NULL);
                again = 1;
                break;
            }
        }
    }
    if (c->closing)
        return;
    flush_unsent(c, now);
    tick_rearm(c);
}

static void conn_on_open(struct ts_conn *conn)
{
    struct ts_client *c = ts_conn_data(conn);
    Threadsync__Frame f;
    Threadsync__Hello h;
    ts_hello_frame(&f, &h, c->client_name, c->token);
    c->last_rx = now_ms(c);
    send_frame(c, &f);
}

static void on_welcome(struct ts_client *c, const Threadsync__Welcome *w)
{
    c->ready = 1;
    c->failures = 0;
    /* Fail-fast mode: a READY connection that drops is the end, unless it
     * is left for the next server (moving_on): then the servers after this
     * one, untried in this pass, are still tried. */
    c->pass_after = c->pass_left - 1;
    c->pass_left = 1;
    c->heartbeat_ms = w->heartbeat_ms ? w->heartbeat_ms : TS__HEARTBEAT_MS;
    TS_DEBUG("event=ready server=%s node=%llu role=%d resumed=%d", c->server->text,
             (unsigned long long)w->node_id, (int)w->role, ts_conn_resumed(c->conn));
    emit_state(c, TS_CLIENT_READY, TS_OK, w, NULL);
    if (c->closing)
        return;
    flush_unsent(c, now_ms(c));
    tick_rearm(c);
}

static uint64_t retry_delay(const struct ts_client *c, const Threadsync__Error *e)
{
    return e->retry_after_ms ? e->retry_after_ms : c->backoff_min_ms;
}

static void on_result(struct ts_client *c, const Threadsync__Result *res)
{
    struct ts__sub *s = c->sub;
    if (s && s->id && res->request_id == s->id) {
        if (res->body_case != THREADSYNC__RESULT__BODY_SUBSCRIBE) {
            violation(c, "subscribe answered with another result type");
            return;
        }
        if (s->cbs.on_result)
            s->cbs.on_result(s->arg, res->subscribe->from_seq, res->subscribe->snapshot);
        return;
    }
    c->moves = 0;
    struct ts__req *r = ts__reqs_find(&c->reqs, res->request_id);
    if (!r)
        return; /* answer to a request that timed out meanwhile */
    if ((int)res->body_case != r->result_case) {
        violation(c, "result type does not match the request");
        return;
    }
    ts__reqs_unlink(&c->reqs, r);
    ts__req_finish(r, TS_OK, NULL, res);
}

/* Follows a NOT_LEADER: the connection closes and the next one dials the
 * leader, delay_ms later; everything in flight is re-sent there. */
static void begin_redirect(struct ts_client *c, uint64_t delay_ms)
{
    c->redirecting = 1;
    c->redirect_delay = delay_ms;
    conn_close(c, TS_E_NOT_LEADER);
}

/* An UNAVAILABLE answer: this node has no leader, is stale, removed,
 * overloaded or stopping. Another server of the list may well answer, so
 * the connection is left for the next one (what was in flight is re-sent
 * there, posts with the same idempotency key). With a single server there
 * is nowhere to go: 0, and the caller retries here. */
static int move_on(struct ts_client *c)
{
    if (c->dial.n < 2)
        return 0;
    TS_DEBUG("event=move_on server=%s reason=UNAVAILABLE", c->server->text);
    c->moving_on = 1;
    c->moves++;
    conn_close(c, TS_E_UNAVAILABLE);
    return 1;
}

static void on_error_frame(struct ts_client *c, Threadsync__Frame *f)
{
    const Threadsync__Error *e = f->error;
    int code = wire_code(e);
    uint64_t now = now_ms(c);
    struct ts__sub *s = c->sub;
    if (s && s->id && e->request_id == s->id) {
        if (code == TS_E_UNAVAILABLE) {
            s->id = 0;
            if (move_on(c))
                return;
            s->retry_at = now + retry_delay(c, e);
            tick_rearm(c);
            return;
        }
        sub_end(c, code, e);
        return;
    }
    struct ts__req *r = ts__reqs_find(&c->reqs, e->request_id);
    if (!r)
        return;
    if ((code == TS_E_NOT_LEADER && r->write) || code == TS_E_UNAVAILABLE)
        keep_refusal(r, e);
    if (code == TS_E_NOT_LEADER && r->write) {
        r->redirects++;
        r->id = 0;
        /* A leader that just timed out on us is most likely stopped or cut
         * off, and this follower has not noticed yet: ask it again later
         * instead of dialling into the same silence. */
        if (e->leader_address && *e->leader_address && !is_shunned(c, e->leader_address, now) &&
            ts__dial_redirect(&c->dial, e->leader_address) == TS_OK) {
            /* After a leader dies, the followers keep naming it until
             * their election timeout: the dial to it fails, the list
             * brings us back to a follower, which names it again. A cap
             * on the count would fail the posts of every failover, so
             * the request's deadline is the bound, and past
             * TS__MAX_REDIRECTS the rounds slow down with backoff instead
             * of bouncing. */
            uint64_t delay = r->redirects > TS__MAX_REDIRECTS
                                 ? ts__backoff_delay(c->backoff_min_ms, c->backoff_max_ms,
                                                     r->redirects - TS__MAX_REDIRECTS, rand32())
                                 : 0;
            if (!r->deadline || now + delay < r->deadline) {
                begin_redirect(c, delay);
                return;
            }
        }
        /* No leader known yet (an election is on): ask again later. */
        uint64_t at =
            now + ts__backoff_delay(c->backoff_min_ms, c->backoff_max_ms, r->redirects, rand32());
        if (!r->deadline || at < r->deadline) {
            r->retry_at = at;
            tick_rearm(c);
            return;
        }
    }
    if (code == TS_E_UNAVAILABLE) {
        uint64_t at = now + retry_delay(c, e);
        if (!r->deadline || at < r->deadline) {
            r->id = 0;
            if (move_on(c))
                return;
            r->retry_at = at;
            tick_rearm(c);
            return;
        }
    }
    ts__reqs_unlink(&c->reqs, r);
    ts__req_finish(r, code, e, NULL);
}

static void on_push(struct ts_client *c, const Threadsync__Frame *f)
{
    struct ts__sub *s = c->sub;
    /* Pushes without a subscription would be a server bug, but harmless. */
    if (!s || !s->id)
        return;
    switch (f->msg_case) {
    case THREADSYNC__FRAME__MSG_EVENTS: {
        const Threadsync__Events *ev = f->events;
        uint64_t cur = ev->last_seq;
        if (ev->n_events && ev->events[ev->n_events - 1]->seq > cur)
            cur = ev->events[ev->n_events - 1]->seq;
        if (cur > s->cursor)
            s->cursor = cur;
        if (s->cbs.on_events)
            s->cbs.on_events(s->arg, ev);
        break;
    }
    case THREADSYNC__FRAME__MSG_SNAPSHOT_BEGIN:
        s->in_snapshot = 1;
        if (s->cbs.on_snapshot_begin)
            s->cbs.on_snapshot_begin(s->arg, f->snapshot_begin);
        break;
    case THREADSYNC__FRAME__MSG_SNAPSHOT_CHUNK:
        if (s->cbs.on_snapshot_chunk)
            s->cbs.on_snapshot_chunk(s->arg, f->snapshot_chunk);
        break;
    case THREADSYNC__FRAME__MSG_SNAPSHOT_END:
        /* The snapshot replaces everything up to its seq, so the cursor
         * becomes exactly that, even if lower than before. */
        s->in_snapshot = 0;
        s->cursor = f->snapshot_end->seq;
        if (s->cbs.on_snapshot_end)
            s->cbs.on_snapshot_end(s->arg, f->snapshot_end);
        break;
    default:
        break;
    }
}

/* A piece of a Backup's answer: its request waits request_timeout_ms from
 * the latest piece (a large store takes longer than one deadline). */
static void on_backup_chunk(struct ts_client *c, const Threadsync__BackupChunk *ch)
{
    struct ts__req *r = ts__reqs_find(&c->reqs, ch->request_id);
    if (!r)
        return; /* a backup that timed out meanwhile, like a late Result */
    if (!r->on_chunk) {
        violation(c, "backup chunk for a request that is not a backup");
        return;
    }
    r->deadline = now_ms(c) + c->request_timeout_ms;
    r->on_chunk(r->arg, ch);
}

static void conn_on_frame(struct ts_conn *conn, Threadsync__Frame *f, int status,
                          const char *bad_field)
{
    struct ts_client *c = ts_conn_data(conn);
    c->last_rx = now_ms(c);
    c->confirming = 0;
    if (c->await_since) {
        c->await_since = c->last_rx;
        c->probe_sent = 0;
    }
    if (c->closing || c->conn_closing) {
        ts_frame_free(f);
        return;
    }
    if (status != TS_OK) {
        (void)bad_field;
        violation(c, "string field is not valid UTF-8");
        ts_frame_free(f);
        return;
    }
    if (f->msg_case == THREADSYNC__FRAME__MSG_ERROR && f->error->request_id == 0) {
        /* About the connection; the close follows. Kept to explain it. */
        TS_DEBUG("event=server_error server=%s code=%d", c->server->text, (int)f->error->code);
        if (c->conn_error)
            ts_frame_free(c->conn_error);
        c->conn_error = f;
        return;
    }
    if (!c->ready) {
        const Threadsync__Welcome *w;
        if (ts_hello_answer(f, &w) == TS_OK)
            on_welcome(c, w);
        else if (f->msg_case == THREADSYNC__FRAME__MSG_WELCOME)
            violation(c, "welcome with a version we did not offer");
        else
            violation(c, "expected Welcome");
        ts_frame_free(f);
        return;
    }
    switch (f->msg_case) {
    case THREADSYNC__FRAME__MSG_RESULT:
        on_result(c, f->result);
        break;
    case THREADSYNC__FRAME__MSG_ERROR:
        on_error_frame(c, f);
        break;
    case THREADSYNC__FRAME__MSG_BACKUP_CHUNK:
        on_backup_chunk(c, f->backup_chunk);
        break;
    case THREADSYNC__FRAME__MSG_EVENTS:
    case THREADSYNC__FRAME__MSG_SNAPSHOT_BEGIN:
    case THREADSYNC__FRAME__MSG_SNAPSHOT_CHUNK:
    case THREADSYNC__FRAME__MSG_SNAPSHOT_END:
        on_push(c, f);
        break;
    case THREADSYNC__FRAME__MSG_PING: {
        Threadsync__Frame pf;
        Threadsync__Pong p;
        ts_frame_pong(&pf, &p, f->ping);
        send_frame(c, &pf);
        break;
    }
    case THREADSYNC__FRAME__MSG_PONG:
        break;
    default:
        violation(c, "message not allowed from a server");
        break;
    }
    ts_frame_free(f);
}

static void conn_on_error(struct ts_conn *conn, int err)
{
    struct ts_client *c = ts_conn_data(conn);
    violation(c, err == TS_E_TOO_LARGE ? "frame too large" : "bad frame");
}

static void finish_close(struct ts_client *c);

static void conn_on_close(struct ts_conn *conn, int err)
{
    struct ts_client *c = ts_conn_data(conn);
    int was_ready = c->ready;
    TS_ASSERT(conn == c->conn); /* every conn callback belongs to c->conn */
    c->conn = NULL;
    c->ready = 0;
    c->conn_closing = 0;
    if (c->closing) {
        finish_close(c);
        return;
    }
    /* Whatever was in flight is unanswered: send it again next time. */
    for (struct ts__req *r = c->reqs.head; r; r = r->next)
        r->id = 0;
    if (c->sub)
        c->sub->id = 0;

    const Threadsync__Error *detail = c->conn_error ? c->conn_error->error : NULL;
    int reason = detail ? wire_code(detail) : err != TS_OK ? err : TS_E_CLOSED;
    TS_DEBUG("event=disconnected server=%s ready=%d reason=%s", c->server->text, was_ready,
             ts_err_name(reason));

    if (c->redirecting) {
        c->redirecting = 0;
        emit_state(c, TS_CLIENT_DISCONNECTED, TS_E_NOT_LEADER, NULL, NULL);
        if (c->closing)
            return;
        c->reconnect_at = now_ms(c) + c->redirect_delay;
        tick_rearm(c);
        return;
    }
    c->failures++;
    ts__dial_failed(&c->dial);
    c->await_since = 0;
    if (c->moving_on && was_ready)
        c->pass_left = c->pass_after + 1;
    c->moving_on = 0;
    /* A server that does not know our token or version will not learn it
     * by being asked again. */
    int fatal = reason == TS_E_UNAUTHENTICATED || reason == TS_E_UNSUPPORTED_VERSION;
    if (fatal || (!c->reconnect && --c->pass_left == 0)) {
        go_failed(c, reason, detail);
        return;
    }
    emit_state(c, TS_CLIENT_DISCONNECTED, reason, NULL, detail);
    if (c->closing)
        return;
    c->reconnect_at = now_ms(c);
    /* Every node may answer UNAVAILABLE for an election's length: walking
     * the list slows down with each move, as reconnects do with failures
     * (a Welcome resets failures, only an answer resets moves), but only up
     * to TS__MOVE_BACKOFF_CAP steps, so the new leader is found soon after
     * it is elected. */
    unsigned moves = c->moves < TS__MOVE_BACKOFF_CAP ? c->moves : TS__MOVE_BACKOFF_CAP;
    if (c->reconnect)
        c->reconnect_at += ts__backoff_delay(c->backoff_min_ms, c->backoff_max_ms,
                                             c->failures > moves ? c->failures : moves, rand32());
    tick_rearm(c);
}

static void client_free(struct ts_client *c)
{
    ts__dial_free(&c->dial);
    free(c->shunned);
    free(c->token);
    free(c->client_name);
    if (c->ssl)
        SSL_CTX_free(c->ssl);
    if (c->conn_error)
        ts_frame_free(c->conn_error);
    free(c);
}

/* Runs once both the connection and the timer are closed. */
static void finish_close(struct ts_client *c)
{
    if (c->conn || !c->tick_closed)
        return;
    ts__reqs_fail_all(&c->reqs, TS_E_CLOSED, NULL);
    sub_end(c, TS_E_CLOSED, NULL);
    ts_client_close_cb cb = c->close_cb;
    void *arg = c->close_arg;
    client_free(c);
    if (cb)
        cb(arg);
}

static void on_tick_closed(uv_handle_t *h)
{
    struct ts_client *c = (struct ts_client *)h->data;
    c->tick_closed = 1;
    finish_close(c);
}

/* ---- public API --------------------------------------------------------- */

void ts__struct_copy(void *dst, size_t dst_size, const void *src, size_t first_size)
{
    size_t n = *(const size_t *)src;
    if (n == 0)
        n = first_size;
    if (n > dst_size)
        n = dst_size; /* a newer caller's fields: not known here, so ignored */
    memset(dst, 0, dst_size);
    memcpy(dst, src, n);
    *(size_t *)dst = dst_size;
}

int ts_client_new(uv_loop_t *loop, const struct ts_client_config *caller_cfg,
                  struct ts_client **out)
{
    if (!loop || !caller_cfg || !out)
        return TS_E_CONFIG;
    struct ts_client_config own, *cfg = &own;
    ts__struct_copy(&own, sizeof(own), caller_cfg, TS__CONFIG_FIRST_SIZE);
    struct ts_client *c = calloc(1, sizeof(*c));
    if (!c)
        return TS_E_NOMEM;
    c->loop = loop;
    int rc = ts__dial_init(&c->dial, cfg->servers, cfg->n_servers);
    if (rc) {
        free(c);
        return rc;
    }
    c->token = strdup(cfg->token ? cfg->token : "");
    c->client_name = strdup(cfg->client_name ? cfg->client_name : "libthreadsync");
    if (!c->token || !c->client_name) {
        client_free(c);
        return TS_E_NOMEM;
    }
    c->connect_timeout_ms =
        cfg->connect_timeout_ms ? cfg->connect_timeout_ms : TS__CONNECT_TIMEOUT_MS;
    c->request_timeout_ms =
        cfg->request_timeout_ms ? cfg->request_timeout_ms : TS__REQUEST_TIMEOUT_MS;
    c->backoff_min_ms = cfg->backoff_min_ms ? cfg->backoff_min_ms : TS__BACKOFF_MIN_MS;
    c->backoff_max_ms = cfg->backoff_max_ms ? cfg->backoff_max_ms : TS__BACKOFF_MAX_MS;
    c->silence_ms = cfg->silence_ms ? cfg->silence_ms : TS__SILENCE_MS;
    if (c->backoff_max_ms < c->backoff_min_ms)
        c->backoff_max_ms = c->backoff_min_ms;
    c->reconnect = cfg->reconnect;
    c->on_state = cfg->on_state;
    c->state_arg = cfg->state_arg;
    c->heartbeat_ms = TS__HEARTBEAT_MS;
    c->pass_left = (unsigned)cfg->n_servers;
    rc = ts_tls_client_ctx(cfg->ca_file, NULL, NULL, &c->ssl);
    if (rc) {
        c->ssl = NULL;
        client_free(c);
        return rc;
    }
    /* Last: from here on the client can only go away through uv_close. */
    uv_timer_init(loop, &c->tick);
    c->tick.data = c;
    c->state = TS_CLIENT_CONNECTING;
    /* The first dial happens on the loop, so no state callback runs inside
     * this call. */
    c->reconnect_at = now_ms(c);
    tick_rearm(c);
    *out = c;
    return TS_OK;
}

void ts_client_close(struct ts_client *c, ts_client_close_cb cb, void *arg)
{
    if (!c || c->closing)
        return;
    c->closing = 1;
    c->close_cb = cb;
    c->close_arg = arg;
    if (c->conn)
        conn_close(c, TS_E_CLOSED);
    uv_timer_stop(&c->tick);
    uv_close((uv_handle_t *)&c->tick, on_tick_closed);
}

static int accepting(const struct ts_client *c)
{
    return !c->closing && c->state != TS_CLIENT_FAILED;
}

static struct ts__req *req_new(struct ts_client *c, void *arg)
{
    struct ts__req *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->arg = arg;
    r->deadline = now_ms(c) + c->request_timeout_ms;
    return r;
}

static void req_submit(struct ts_client *c, struct ts__req *r)
{
    ts__reqs_append(&c->reqs, r);
    if (c->ready && !c->conn_closing)
        send_req(c, r);
    tick_arm(c, r->deadline);
}

/* The one request path: makes msg (packed; its request_id is ignored)
 * a request carried by Frame field frame_case and answered by Result body
 * result_case, and submits it; the caller then stores its typed callback
 * in (*out)->cb (none runs before the loop turns). A message the server's frame limit would refuse
 * is refused here: it would close the connection, reconnect and be re-sent forever. */
static int msg_submit(struct ts_client *c, const ProtobufCMessage *msg, int frame_case,
                      int result_case, int write, void *arg, struct ts__req **out)
{
    if (!c || !msg)
        return TS_E_INVALID_ARGUMENT;
    if (!accepting(c))
        return TS_E_CLOSED;
    size_t len = protobuf_c_message_get_packed_size(msg);
    if (len + 16 > TS_FRAME_MAX_DEFAULT)
        return TS_E_TOO_LARGE;
    /* Kept packed: framed around these bytes at each send (a bulk Import is
     * most of a megabyte), never unpacked and packed again. */
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return TS_E_NOMEM;
    protobuf_c_message_pack(msg, buf);
    struct ts__req *r = req_new(c, arg);
    if (!r) {
        free(buf);
        return TS_E_NOMEM;
    }
    r->packed = buf;
    r->packed_len = len;
    r->frame_case = frame_case;
    r->result_case = result_case;
    r->write = write;
    req_submit(c, r); /* no callback runs before the caller sets it: never synchronously */
    *out = r;
    return TS_OK;
}

int ts_client_post(struct ts_client *c, const Threadsync__Post *post, ts_client_post_cb cb,
                   void *arg)
{
    if (!c || !post || !cb)
        return TS_E_INVALID_ARGUMENT;
    if (!accepting(c))
        return TS_E_CLOSED;
    Threadsync__Post tmp = *post;
    char key[TS__IDEM_KEY_LEN + 1];
    if (!tmp.idempotency_key || !*tmp.idempotency_key) {
        int rc = ts__idem_key(key);
        if (rc)
            return rc;
        tmp.idempotency_key = key;
    }
    struct ts__req *r;
    int rc = msg_submit(c, &tmp.base, THREADSYNC__FRAME__MSG_POST, THREADSYNC__RESULT__BODY_POST, 1,
                        arg, &r);
    if (rc == TS_OK) {
        r->cb.post = cb;
    }
    return rc;
}

int ts_client_get(struct ts_client *c, const char *thread_key, ts_client_get_cb cb, void *arg)
{
    if (!c || !thread_key || !cb)
        return TS_E_INVALID_ARGUMENT;
    if (!accepting(c))
        return TS_E_CLOSED;
    if (strlen(thread_key) + 16 > TS_FRAME_MAX_PREAUTH)
        return TS_E_TOO_LARGE;
    Threadsync__Get m = THREADSYNC__GET__INIT;
    m.thread_key = (char *)thread_key;
    struct ts__req *r;
    int rc = msg_submit(c, &m.base, THREADSYNC__FRAME__MSG_GET, THREADSYNC__RESULT__BODY_GET, 0,
                        arg, &r);
    if (rc == TS_OK) {
        r->cb.get = cb;
    }
    return rc;
}

int ts_client_digest(struct ts_client *c, const char *const *keys, size_t n_keys, uint64_t after_id,
                     ts_client_digest_cb cb, void *arg)
{
    if (!c || !cb || (n_keys && !keys))
        return TS_E_INVALID_ARGUMENT;
    Threadsync__Digest m = THREADSYNC__DIGEST__INIT;
    m.thread_keys = (char **)keys;
    m.n_thread_keys = n_keys;
    m.after_id = n_keys ? 0 : after_id;
    struct ts__req *r;
    int rc = msg_submit(c, &m.base, THREADSYNC__FRAME__MSG_DIGEST, THREADSYNC__RESULT__BODY_DIGEST,
                        0, arg, &r);
    if (rc == TS_OK) {
        r->cb.digest = cb;
    }
    return rc;
}

int ts_client_subscribe(struct ts_client *c, int all, const char *const *keys, size_t n_keys,
                        uint64_t since_seq, const struct ts_client_sub_cbs *cbs, void *arg)
{
    if (!c || !cbs)
        return TS_E_INVALID_ARGUMENT;
    if (!accepting(c))
        return TS_E_CLOSED;
    if (c->sub)
        return TS_E_EXISTS;
    if (!all && (n_keys == 0 || n_keys > 1024 || !keys))
        return TS_E_INVALID_ARGUMENT;
    if (all)
        n_keys = 0;
    struct ts__sub *s = calloc(1, sizeof(*s));
    if (!s)
        return TS_E_NOMEM;
    if (n_keys) {
        s->keys = calloc(n_keys, sizeof(*s->keys));
        if (!s->keys) {
            free(s);
            return TS_E_NOMEM;
        }
        for (size_t i = 0; i < n_keys; i++) {
            s->n_keys = i + 1;
            if (!keys[i] || !(s->keys[i] = strdup(keys[i]))) {
                int rc = keys[i] ? TS_E_NOMEM : TS_E_INVALID_ARGUMENT;
                sub_free(s);
                return rc;
            }
        }
    }
    ts__struct_copy(&s->cbs, sizeof(s->cbs), cbs, TS__SUB_CBS_FIRST_SIZE);
    s->arg = arg;
    s->all = all;
    s->cursor = since_seq;
    c->sub = s;
    if (c->ready && !c->conn_closing)
        send_sub(c);
    return TS_OK;
}

uint64_t ts_client_cursor(const struct ts_client *c)
{
    return c && c->sub ? c->sub->cursor : 0;
}

enum ts_client_state ts_client_state(const struct ts_client *c)
{
    return c->state;
}

/* ---- moderation, edits, bans, tokens ------------------------------------- */

#define TS__MSG_API(fn, type, frame, result, write, cbtype, member)                                \
    int fn(struct ts_client *c, const type *m, cbtype cb, void *arg)                               \
    {                                                                                              \
        if (!cb || !m)                                                                             \
            return TS_E_INVALID_ARGUMENT;                                                          \
        struct ts__req *r;                                                                         \
        int rc = msg_submit(c, &m->base, frame, result, write, arg, &r);                           \
        if (rc == TS_OK)                                                                           \
            r->cb.member = cb;                                                                     \
        return rc;                                                                                 \
    }

TS__MSG_API(ts_client_moderate, Threadsync__Moderate, THREADSYNC__FRAME__MSG_MODERATE,
            THREADSYNC__RESULT__BODY_CHANGE, 1, ts_client_change_cb, change)
TS__MSG_API(ts_client_edit, Threadsync__Edit, THREADSYNC__FRAME__MSG_EDIT,
            THREADSYNC__RESULT__BODY_CHANGE, 1, ts_client_change_cb, change)
TS__MSG_API(ts_client_delete, Threadsync__Delete, THREADSYNC__FRAME__MSG_DELETE,
            THREADSYNC__RESULT__BODY_CHANGE, 1, ts_client_change_cb, change)
TS__MSG_API(ts_client_moderate_thread, Threadsync__ModerateThread,
            THREADSYNC__FRAME__MSG_MODERATE_THREAD, THREADSYNC__RESULT__BODY_CHANGE, 1,
            ts_client_change_cb, change)
TS__MSG_API(ts_client_pending, Threadsync__PendingQueue, THREADSYNC__FRAME__MSG_PENDING_QUEUE,
            THREADSYNC__RESULT__BODY_PENDING_QUEUE, 0, ts_client_pending_cb, pending)
TS__MSG_API(ts_client_audit_list, Threadsync__AuditList, THREADSYNC__FRAME__MSG_AUDIT_LIST,
            THREADSYNC__RESULT__BODY_AUDIT_LIST, 0, ts_client_audit_list_cb, audit_list)
TS__MSG_API(ts_client_ban, Threadsync__BanAuthor, THREADSYNC__FRAME__MSG_BAN_AUTHOR,
            THREADSYNC__RESULT__BODY_BAN, 1, ts_client_ban_cb, ban)
TS__MSG_API(ts_client_token_add, Threadsync__TokenAdd, THREADSYNC__FRAME__MSG_TOKEN_ADD,
            THREADSYNC__RESULT__BODY_TOKEN_ADD, 1, ts_client_token_add_cb, token_add)
TS__MSG_API(ts_client_token_revoke, Threadsync__TokenRevoke, THREADSYNC__FRAME__MSG_TOKEN_REVOKE,
            THREADSYNC__RESULT__BODY_TOKEN_REVOKE, 1, ts_client_token_revoke_cb, token_revoke)
TS__MSG_API(ts_client_import, Threadsync__Import, THREADSYNC__FRAME__MSG_IMPORT,
            THREADSYNC__RESULT__BODY_IMPORT, 1, ts_client_import_cb, import)

TS__MSG_API(ts_client_remove_node, Threadsync__RemoveNode, THREADSYNC__FRAME__MSG_REMOVE_NODE,
            THREADSYNC__RESULT__BODY_REMOVE_NODE, 1, ts_client_remove_node_cb, remove_node)

int ts_client_backup(struct ts_client *c, ts_client_backup_chunk_cb on_chunk,
                     ts_client_backup_cb cb, void *arg)
{
    if (!cb || !on_chunk)
        return TS_E_INVALID_ARGUMENT;
    Threadsync__Backup m = THREADSYNC__BACKUP__INIT;
    struct ts__req *r;
    int rc = msg_submit(c, &m.base, THREADSYNC__FRAME__MSG_BACKUP, THREADSYNC__RESULT__BODY_BACKUP,
                        0, arg, &r);
    if (rc == TS_OK) {
        r->cb.backup = cb;
        r->on_chunk = on_chunk;
    }
    return rc;
}

/* The requests without parameters: an empty message of their type. */
#define TS__BARE_API(fn, type, init, frame, result, cbtype, member)                                \
    int fn(struct ts_client *c, cbtype cb, void *arg)                                              \
    {                                                                                              \
        if (!cb)                                                                                   \
            return TS_E_INVALID_ARGUMENT;                                                          \
        type m = init;                                                                             \
        struct ts__req *r;                                                                         \
        int rc = msg_submit(c, &m.base, frame, result, 0, arg, &r);                                \
        if (rc == TS_OK)                                                                           \
            r->cb.member = cb;                                                                     \
        return rc;                                                                                 \
    }

TS__BARE_API(ts_client_state_digest, Threadsync__StateDigest, THREADSYNC__STATE_DIGEST__INIT,
             THREADSYNC__FRAME__MSG_STATE_DIGEST, THREADSYNC__RESULT__BODY_STATE_DIGEST,
             ts_client_state_digest_cb, state_digest)

TS__BARE_API(ts_client_cluster, Threadsync__Cluster, THREADSYNC__CLUSTER__INIT,
             THREADSYNC__FRAME__MSG_CLUSTER, THREADSYNC__RESULT__BODY_CLUSTER, ts_client_cluster_cb,
             cluster)

TS__BARE_API(ts_client_token_list, Threadsync__TokenList, THREADSYNC__TOKEN_LIST__INIT,
             THREADSYNC__FRAME__MSG_TOKEN_LIST, THREADSYNC__RESULT__BODY_TOKEN_LIST,
             ts_client_token_list_cb, token_list)
