/*
 * ts_session: the server side of PROTOCOL.md section 3: the connection's
 * state machine (Hello, heartbeats, the per-request permission check), the
 * dispatch of requests to their handlers (ts_req_read.c for reads,
 * ts_req_write.c for writes through the log, ts_req_admin.c for tokens and
 * membership, ts_backup.c for backups) and the helpers they answer with.
 *
 * Invariants:
 *   - every request frame gets exactly one answer (Result or Error with its
 *     request_id) unless the connection closes first;
 *   - the session is freed only in on_close, the connection's last callback;
 *     in-flight writes and membership changes hold a pointer (a
 *     ts__session_wait) that on_close clears;
 *   - NOT_LEADER always carries the leader's client address; with no leader
 *     (or none whose client address is known) the answer is UNAVAILABLE;
 *   - a stale node (no leader heard from for longer than ts_repl's bound)
 *     serves no state: reads and subscriptions get UNAVAILABLE naming the
 *     last leader it knew, and subscribers are closed, so clients move to a
 *     node that is current; a node removed from the cluster refuses every
 *     request and every Hello;
 *   - permission is checked on every request: the token (kept as its
 *     SHA-256 only) is looked up again in the tokens file and the
 *     replicated table, and a revoked one closes the connection; then the
 *     role must allow the request's least action (the requests table).
 */
#include "ts_session.h"

#include "ts_backup.h"
#include "ts_err.h"
#include "ts_frame.h"
#include "ts_hub.h"
#include "ts_limits.h"
#include "ts_link.h"
#include "ts_log.h"
#include "ts_repl.h"
#include "ts_req_admin.h"
#include "ts_req_import.h"
#include "ts_req_read.h"
#include "ts_req_write.h"
#include "ts_server_int.h"
#include "ts_session_int.h"
#include "ts_stats.h"
#include "ts_store.h"
#include "ts_valid.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONN_RETRY_MS 1000

/* ---- output budgets ----
 *
 * What a client can make the node hold is its queued output (answers and
 * pushes not yet on its socket) and the answers to requests already decoded.
 * The second is never produced into memory: a session whose output is over
 * budget waits (its link paused: no request is decoded or handed to us)
 * until its output has drained, so the answers it is owed are produced
 * only as it reads them. The budgets (PROTOCOL.md section 4, "Output
 * budgets"):
 *   - its own: at conn_output_budget queued, a session waits until it
 *     drains; below it, any answer goes out, so one answer of the largest
 *     size always does, and a session holds at most the budget plus one
 *     answer;
 *   - the node's: srv->out_total sums every session's `charged` (the
 *     largest its queue was sampled at after a send since it last drained,
 *     0 once drained: an overestimate in between); at node_output_budget a session waits as soon as
 *     anything of its own is queued (those holding output stop first), so
 *     a client that reads still gets one answer at a time; at twice the
 *     budget nobody is served until the total falls, which bounds the total
 *     whatever the number of connections (at 2 x node budget plus one
 *     answer). Pushes are charged too: the hub writes a subscriber's next
 *     batch only once its previous one drained (TS_HUB_BATCH_MAX each).
 * A session that waits only because of the node (nothing of its own
 * queued) is not dropped for silence: it is not its silence.
 */

/* The peer's IP without port, the per-address limit's key. Derived from
 * the link's peer each time rather than kept (64 bytes per session): that
 * string does not change while the link lives, so opening and closing
 * count under the same key. */
static void peer_ip(const struct ts_session *s, char *out, size_t size)
{
    const char *peer = ts_link_peer(s->conn);
    size_t len = strlen(peer);
    const char *colon = strrchr(peer, ':');
    if (colon)
        len = (size_t)(colon - peer);
    if (peer[0] == '[' && len >= 2) { /* "[v6]:port" */
        peer++;
        len -= 2;
    }
    snprintf(out, size, "%.*s", (int)len, peer);
}

static size_t conn_budget(const struct ts_session *s)
{
    return s->srv->cfg.conn_output_budget;
}

static size_t node_budget(const struct ts_session *s)
{
    return s->srv->cfg.node_output_budget;
}

/* Records that s's queue holds queued bytes now. */
static void charge(struct ts_session *s, size_t queued)
{
    s->srv->out_total = s->srv->out_total - s->charged + queued;
    s->charged = queued;
}

static int may_serve(const struct ts_session *s)
{
    size_t total = s->srv->out_total;
    if (s->charged >= conn_budget(s))
        return 0;
    if (total < node_budget(s))
        return 1;
    return s->charged == 0 && total < 2 * node_budget(s);
}

static void wait_budget(struct ts_session *s)
{
    if (s->waiting || s->state == TS__SESSION_CLOSING)
        return;
    s->waiting = 1;
    s->srv->n_waiting++;
    ts_link_pause_reading(s->conn);
    TS_DEBUG(TS__SESSION_LOG_FMT "event=output_budget action=wait queued=%zu node_queued=%zu",
             TS__SESSION_LOG_ARGS(s), s->charged, s->srv->out_total);
}

static void handle_frame(struct ts_session *s, Threadsync__Frame *f, int status,
                         const char *bad_field, int checked);

static void stop_waiting(struct ts_session *s)
{
    s->waiting = 0;
    s->srv->n_waiting--;
    s->last_rx_ms = uv_now(s->srv->loop);
    ts_link_resume_reading(s->conn);
    Threadsync__Frame *f = s->stashed;
    if (f) {
        s->stashed = NULL;
        /* not flagged: a stashed Post is checked here (a rare path) */
        handle_frame(s, f, s->stashed_status, s->stashed_bad, 0);
    }
}

/* The node's total fell from `before`. Sessions waiting for the node are
 * released only where it crosses below the budget (those with output of
 * their own) or twice it (those without): the walk over every session is
 * paid per crossing, not per drain while some hostile connection waits for
 * good. A session waiting for its own budget is released by its own drain. */
static void total_fell(struct ts_server *srv, size_t before)
{
    size_t node = srv->cfg.node_output_budget, total = srv->out_total;
    if (!srv->n_waiting ||
        !((before >= node && total < node) || (before >= 2 * node && total < 2 * node)))
        return;
    for (struct ts_session *s = srv->sessions; s && srv->n_waiting; s = s->next)
        if (s->waiting && s->state != TS__SESSION_CLOSING && may_serve(s))
            stop_waiting(s);
}

/* After every send: s's queue grew. The charge only rises here (it falls
 * at drain and close, where total_fell looks for sessions to release), so
 * the total never falls unseen. */
static void sent(struct ts_session *s)
{
    size_t queued = ts_link_queued(s->conn);
    if (queued > s->charged)
        charge(s, queued);
    if (s->charged >= conn_budget(s) || s->srv->out_total >= node_budget(s))
        wait_budget(s);
}

/* ---- sending ---- */

const char *ts__session_role_name(int role)
{
    return role ? ts_auth_role_name(role) : "none";
}

int ts__session_send(struct ts_session *s, const Threadsync__Frame *f)
{
    size_t bytes;
    int rc = ts_link_send_frame(s->conn, f, &bytes);
    if (rc == TS_OK) {
        s->last_tx_ms = uv_now(s->srv->loop);
        ts_stats_frame_out(s->srv->stats, bytes);
    }
    sent(s);
    return rc;
}

static void result_frame(Threadsync__Frame *f, Threadsync__Result *r)
{
    threadsync__frame__init(f);
    f->msg_case = THREADSYNC__FRAME__MSG_RESULT;
    f->result = r;
}

void ts__session_result(struct ts_session *s, Threadsync__Result *r)
{
    Threadsync__Frame f;
    result_frame(&f, r);
    ts__session_send(s, &f);
}

int ts__session_result_fits(const Threadsync__Result *r)
{
    Threadsync__Frame f;
    result_frame(&f, (Threadsync__Result *)r);
    return ts_frame_size(&f) - TS_FRAME_HEADER <= TS__SESSION_FRAME_MAX;
}

void ts__session_error_retry(struct ts_session *s, uint64_t request_id, int code, const char *field,
                             const char *message, uint32_t retry_after_ms)
{
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Error e = THREADSYNC__ERROR__INIT;
    char where[384];
    if (code == TS_E_NOT_LEADER) {
        e.leader_address = (char *)ts_repl_leader_client_address(s->srv->repl);
        if (!*e.leader_address) {
            code = TS_E_UNAVAILABLE; /* nobody to send the client to: retry later */
            message = "no leader known";
        } else if (!message) {
            snprintf(where, sizeof(where),
                     ts_repl_role(s->srv->repl) == TS_REPL_STANDBY
                         ? "this node is a read replica (reads and subscriptions only); send "
                           "writes to the leader at %s"
                         : "this node is not the leader; send writes to %s",
                     e.leader_address);
            message = where;
        }
    }
    e.request_id = request_id;
    e.code = (Threadsync__ErrorCode)ts_err_wire(code);
    e.field = (char *)(field ? field : "");
    e.message = (char *)(message ? message : ts_err_message(code));
    e.retry_after_ms = code == TS_E_UNAVAILABLE && !retry_after_ms ? 100 : retry_after_ms;
    f.msg_case = THREADSYNC__FRAME__MSG_ERROR;
    f.error = &e;
    ts__session_send(s, &f);
    ts_stats_error(s->srv->stats, code);
    TS_DEBUG(TS__SESSION_LOG_FMT "event=error request=%llu code=%s field=%s",
             TS__SESSION_LOG_ARGS(s), (unsigned long long)request_id, ts_err_name(e.code), e.field);
}

void ts__session_error(struct ts_session *s, uint64_t request_id, int code, const char *field,
                       const char *message)
{
    ts__session_error_retry(s, request_id, code, field, message,
                            code == TS_E_UNAVAILABLE ? 100 : 0);
}

int ts__session_allowed(struct ts_session *s, uint64_t request_id, enum ts_auth_action action)
{
    if (ts_auth_role_allows(s->role, action))
        return 1;
    int least = THREADSYNC__ROLE__ADMIN;
    for (int r = THREADSYNC__ROLE__ADMIN; r >= THREADSYNC__ROLE__READER; r--)
        if (ts_auth_role_allows(r, action))
            least = r;
    char msg[96];
    snprintf(msg, sizeof(msg), "this request needs a %s token or higher; this token is %s",
             ts_auth_role_name(least), ts_auth_role_name(s->role));
    ts__session_error(s, request_id, TS_E_FORBIDDEN, NULL, msg);
    return 0;
}

static void fail_and_close(struct ts_session *s, int code, const char *message)
{
    if (s->state == TS__SESSION_CLOSING)
        return;
    ts__session_error(s, 0, code, NULL, message);
    ts_session_close(s, code);
}

/* A subscription's frames come ready-made from the hub, many at a time. */
static int sink_write(void *sink, const void *data, size_t len)
{
    struct ts_session *s = sink;
    if (s->state == TS__SESSION_CLOSING)
        return TS_E_CLOSED;
    int rc = ts_link_send(s->conn, data, len);
    if (rc == TS_OK) {
        s->last_tx_ms = uv_now(s->srv->loop);
        ts_stats_frames_out(s->srv->stats, data, len);
    }
    sent(s);
    return rc;
}

static size_t sink_queued(void *sink)
{
    struct ts_session *s = sink;
    return ts_link_queued(s->conn);
}

const struct ts_hub_sink_ops ts__session_hub_sink = {sink_write, sink_queued};

/* ---- answers that wait for replication ---- */

void ts__session_wait_add(struct ts_session *s, struct ts__session_wait *w, uint64_t request_id)
{
    w->s = s;
    w->request_id = request_id;
    w->prev = NULL;
    w->next = s->waits;
    if (s->waits)
        s->waits->prev = w;
    s->waits = w;
}

struct ts_session *ts__session_wait_done(struct ts__session_wait *w)
{
    struct ts_session *s = w->s;
    if (!s)
        return NULL;
    if (w->prev)
        w->prev->next = w->next;
    else
        s->waits = w->next;
    if (w->next)
        w->next->prev = w->prev;
    return s->state == TS__SESSION_CLOSING ? NULL : s;
}

/* ---- tokens ---- */

/* The tokens file first (the bootstrap source), unless the replicated table
 * revoked that name; then the replicated tokens. */
static int resolve_token(struct ts_server *srv, const uint8_t hash[TS_AUTH_HASH_LEN], int *role,
                         const char **name)
{
    if (ts_auth_check_hash(srv->auth, hash, role, name) == TS_OK)
        return ts_store_token_state(srv->store, *name) == TS_STORE_TOKEN_REVOKED
                   ? TS_E_UNAUTHENTICATED
                   : TS_OK;
    return ts_store_token_check(srv->store, hash, role, name);
}

/* Looks the session's token up again; closes the session and returns 0
 * when it no longer grants anything (or no longer the view subscribed
 * with). */
static int reauth(struct ts_session *s)
{
    int role;
    const char *name;
    if (resolve_token(s->srv, s->token_hash, &role, &name) != TS_OK) {
        TS_INFO(TS__SESSION_LOG_FMT "token_name=%s event=token_revoked", TS__SESSION_LOG_ARGS(s),
                s->token_name);
        fail_and_close(s, TS_E_UNAUTHENTICATED, "token revoked");
        return 0;
    }
    s->role = role;
    if (s->sub && s->full_sub && !ts_auth_role_allows(role, TS_AUTH_MODERATE)) {
        fail_and_close(s, TS_E_UNAUTHENTICATED, "role changed");
        return 0;
    }
    return 1;
}

void ts_session_recheck_auth(struct ts_session *s)
{
    if (s->state == TS__SESSION_READY)
        reauth(s);
}

static int refuse_stale(struct ts_session *s, uint64_t rid, int reads);

/* ---- Hello ---- */

/* A string the decoder refused (ill-formed UTF-8 or a NUL): the error
 * names the field and says what it must be. */
static void encoding_message(char *out, size_t len, const char *field)
{
    snprintf(out, len, "%s must be well-formed UTF-8 without NUL", field);
}

static void handle_hello(struct ts_session *s, const Threadsync__Hello *h, int status,
                         const char *bad_field)
{
    uint32_t max = h->max_version ? h->max_version : h->min_version;
    if (h->min_version > TS_PROTOCOL_VERSION || max < TS_PROTOCOL_VERSION) {
        fail_and_close(s, TS_E_UNSUPPORTED_VERSION, "this server speaks version 1");
        return;
    }
    if (s->conn_refused) {
        ts__session_error_retry(s, 0, TS_E_RATE_LIMITED, NULL,
                                "too many connections from this address", CONN_RETRY_MS);
        ts_session_close(s, TS_E_RATE_LIMITED);
        return;
    }
    /* A malformed Hello string is the client's bug, not a bad token: say
     * which one, so its author can fix it. */
    struct ts_valid_err err;
    if (status != TS_OK && bad_field) {
        err.field = bad_field;
        encoding_message(err.message, sizeof(err.message), bad_field);
    }
    if ((status != TS_OK && bad_field) || ts_valid_hello(h, &err) != TS_OK) {
        ts__session_error(s, 0, TS_E_INVALID_ARGUMENT, err.field, err.message);
        ts_session_close(s, TS_E_INVALID_ARGUMENT);
        return;
    }
    if (refuse_stale(s, 0, 0))
        return;
    int role;
    const char *name;
    if (status != TS_OK || ts_auth_hash_token(h->token, s->token_hash) != TS_OK ||
        resolve_token(s->srv, s->token_hash, &role, &name) != TS_OK) {
        TS_WARN(TS__SESSION_LOG_FMT "event=auth_failed", TS__SESSION_LOG_ARGS(s));
        fail_and_close(s, TS_E_UNAUTHENTICATED, "unknown token");
        return;
    }
    s->role = role;
    ts_link_set_role(s->conn, ts__session_role_name(role));
    snprintf(s->token_name, sizeof(s->token_name), "%s", name);
    s->state = TS__SESSION_READY;
    ts_link_set_max_frame(s->conn, s->srv->cfg.max_frame);

    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Welcome w = THREADSYNC__WELCOME__INIT;
    w.version = TS_PROTOCOL_VERSION;
    w.node_id = s->srv->cfg.node_id;
    w.role = (Threadsync__Role)role;
    w.leader_address = (char *)ts_repl_leader_client_address(s->srv->repl);
    w.last_seq = ts_store_seq(s->srv->store);
    w.max_frame = s->srv->cfg.max_frame;
    w.heartbeat_ms = s->srv->cfg.heartbeat_ms;
    w.server_name = "threadsyncd/" TS_VERSION;
    f.msg_case = THREADSYNC__FRAME__MSG_WELCOME;
    f.welcome = &w;
    ts__session_send(s, &f);
    char qname[160];
    TS_INFO(TS__SESSION_LOG_FMT "token_name=%s event=hello client=%s", TS__SESSION_LOG_ARGS(s),
            s->token_name, ts_log_quote(h->client_name, qname, sizeof(qname)));
}

/* ---- requests ---- */

typedef void request_fn(struct ts_session *s, const Threadsync__Frame *f);

/* Answers UNAVAILABLE and returns 1 when this node must not serve the
 * request: removed from the cluster (every request), or stale (requests
 * that read its state). The last leader's client address rides in
 * leader_address, a hint for clients with no server list of their own. */
static int refuse_stale(struct ts_session *s, uint64_t rid, int reads)
{
    char why[192];
    int st = ts_repl_stale(s->srv->repl, why, sizeof(why));
    if (st == 0 || (st == 1 && !reads))
        return 0;
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Error e = THREADSYNC__ERROR__INIT;
    e.request_id = rid;
    e.code = THREADSYNC__ERROR_CODE__UNAVAILABLE;
    e.field = "";
    e.message = why;
    e.leader_address = (char *)ts_repl_last_leader(s->srv->repl);
    e.retry_after_ms = 1000;
    f.msg_case = THREADSYNC__FRAME__MSG_ERROR;
    f.error = &e;
    ts__session_send(s, &f);
    ts_stats_error(s->srv->stats, TS_E_UNAVAILABLE);
    if (rid == 0)
        ts_session_close(s, TS_E_UNAVAILABLE);
    return 1;
}

/* Every request a client may send, by Frame case: the least action its
 * role must allow (handlers check more where the request says more, e.g.
 * an edit without its key needs a moderator), and its handler. */
static const struct {
    request_fn *handle;
    enum ts_auth_action least;
    int reads; /* serves this node's state: refused when it is stale */
} requests[] = {
    [THREADSYNC__FRAME__MSG_POST] = {ts_req_write_post, TS_AUTH_POST, 0},
    [THREADSYNC__FRAME__MSG_GET] = {ts_req_read_get, TS_AUTH_GET, 1},
    [THREADSYNC__FRAME__MSG_SUBSCRIBE] = {ts_req_read_subscribe, TS_AUTH_SUBSCRIBE, 1},
    [THREADSYNC__FRAME__MSG_DIGEST] = {ts_req_read_digest, TS_AUTH_GET, 1},
    [THREADSYNC__FRAME__MSG_PENDING_QUEUE] = {ts_req_read_pending_queue, TS_AUTH_MODERATE, 1},
    [THREADSYNC__FRAME__MSG_AUDIT_LIST] = {ts_req_read_audit_list, TS_AUTH_MODERATE, 1},
    [THREADSYNC__FRAME__MSG_MODERATE] = {ts_req_write_moderate, TS_AUTH_MODERATE, 0},
    [THREADSYNC__FRAME__MSG_EDIT] = {ts_req_write_edit, TS_AUTH_POST, 0},
    [THREADSYNC__FRAME__MSG_DELETE] = {ts_req_write_delete, TS_AUTH_POST, 0},
    [THREADSYNC__FRAME__MSG_MODERATE_THREAD] = {ts_req_write_moderate_thread, TS_AUTH_MODERATE, 0},
    [THREADSYNC__FRAME__MSG_BAN_AUTHOR] = {ts_req_write_ban, TS_AUTH_MODERATE, 0},
    [THREADSYNC__FRAME__MSG_JOIN] = {ts_req_admin_join, TS_AUTH_ADMIN, 0},
    [THREADSYNC__FRAME__MSG_REMOVE_NODE] = {ts_req_admin_remove_node, TS_AUTH_ADMIN, 0},
    [THREADSYNC__FRAME__MSG_CLUSTER] = {ts_req_admin_cluster, TS_AUTH_ADMIN, 0},
    [THREADSYNC__FRAME__MSG_TOKEN_ADD] = {ts_req_admin_token_add, TS_AUTH_ADMIN, 0},
    [THREADSYNC__FRAME__MSG_TOKEN_LIST] = {ts_req_admin_token_list, TS_AUTH_ADMIN, 0},
    [THREADSYNC__FRAME__MSG_TOKEN_REVOKE] = {ts_req_admin_token_revoke, TS_AUTH_ADMIN, 0},
    [THREADSYNC__FRAME__MSG_IMPORT] = {ts_req_import, TS_AUTH_ADMIN, 0},
};

static request_fn *request_handler(const Threadsync__Frame *f)
{
    size_t i = (size_t)f->msg_case;
    return i < sizeof(requests) / sizeof(requests[0]) ? requests[i].handle : NULL;
}

/* A request: the checks every one gets, then its handler. checked: a Post
 * its I/O thread found valid (ts_link_frame_valid). */
static void request(struct ts_session *s, const Threadsync__Frame *f, int status,
                    const char *bad_field, int checked)
{
    uint64_t rid = ts_frame_request_id(f);
    if (rid == 0)
        ts__session_error(s, 0, TS_E_INVALID_ARGUMENT, "request_id",
                          "request_id must be non-zero (and unique among unanswered requests)");
    else if (status != TS_OK) {
        char msg[96];
        encoding_message(msg, sizeof(msg), bad_field ? bad_field : "every string");
        ts__session_error(s, rid, status, bad_field, msg);
    } else if (reauth(s) && ts__session_allowed(s, rid, requests[f->msg_case].least) &&
               !refuse_stale(s, rid, requests[f->msg_case].reads)) {
        s->post_checked = (uint8_t)checked;
        requests[f->msg_case].handle(s, f);
        s->post_checked = 0;
    }
}

/* ---- connection callbacks ---- */

static void handle_frame(struct ts_session *s, Threadsync__Frame *f, int status,
                         const char *bad_field, int checked)
{
    if (s->state == TS__SESSION_CLOSING)
        goto out;
    if (s->state == TS__SESSION_AWAIT_HELLO) {
        if (f->msg_case != THREADSYNC__FRAME__MSG_HELLO)
            fail_and_close(s, TS_E_BAD_FRAME, "expected Hello");
        else
            handle_hello(s, f->hello, status, bad_field);
        goto out;
    }
    if (request_handler(f)) {
        if (!may_serve(s) && !s->stashed) {
            /* The node is at its ceiling: this request waits, and so does
             * everything behind it. */
            s->stashed = f;
            s->stashed_status = status;
            s->stashed_bad = bad_field;
            wait_budget(s);
            return;
        }
        request(s, f, status, bad_field, checked);
        goto out;
    }
    switch (f->msg_case) {
    case THREADSYNC__FRAME__MSG_PING: {
        Threadsync__Frame r;
        Threadsync__Pong pong;
        ts_frame_pong(&r, &pong, f->ping);
        ts__session_send(s, &r);
        break;
    }
    case THREADSYNC__FRAME__MSG_PONG:
        break;
    case THREADSYNC__FRAME__MSG_BACKUP:
    case THREADSYNC__FRAME__MSG_STATE_DIGEST:
        ts_backup_request(s->srv, s->conn, s->role, f, status, &s->backup);
        break;
    default:
        fail_and_close(s, TS_E_BAD_FRAME, "message not allowed from a client");
        break;
    }
out:
    ts_frame_free(f);
}

static void on_frame(struct ts_link *c, Threadsync__Frame *f, int status, const char *bad_field)
{
    struct ts_session *s = ts_link_data(c);
    s->last_rx_ms = uv_now(s->srv->loop);
    ts_stats_frame_in(s->srv->stats, ts_link_frame_bytes(c));
    handle_frame(s, f, status, bad_field, ts_link_frame_valid(c));
}

static void on_error(struct ts_link *c, int err)
{
    struct ts_session *s = ts_link_data(c);
    TS_INFO(TS__SESSION_LOG_FMT "event=bad_input code=%s", TS__SESSION_LOG_ARGS(s),
            ts_err_name(err));
    fail_and_close(s, err, err == TS_E_TOO_LARGE ? "frame above the limit" : "bad frame");
}

static void on_drain(struct ts_link *c)
{
    struct ts_session *s = ts_link_data(c);
    size_t before = s->srv->out_total;
    charge(s, 0);
    if (s->waiting && may_serve(s))
        stop_waiting(s);
    total_fell(s->srv, before);
    if (s->sub)
        ts_hub_drained(s->sub);
    if (s->backup)
        ts_backup_drained(&s->backup);
}

static void on_close(struct ts_link *c, int err)
{
    struct ts_session *s = ts_link_data(c);
    struct ts_server *srv = s->srv;
    if (s->sub)
        ts_hub_unsubscribe(s->sub);
    ts_backup_free(s->backup);
    if (s->stashed)
        ts_frame_free(s->stashed);
    if (s->waiting)
        srv->n_waiting--;
    size_t before = srv->out_total;
    charge(s, 0);
    if (!s->tls_done && err == TS_E_TLS)
        ts_stats_tls_failed(srv->stats);
    for (struct ts__session_wait *w = s->waits; w; w = w->next)
        w->s = NULL;
    if (s->addr_counted) {
        char addr[64];
        peer_ip(s, addr, sizeof(addr));
        ts_limits_conn_close(srv->limits, addr);
    }
    if (s->prev)
        s->prev->next = s->next;
    else
        srv->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    srv->n_sessions--;
    TS_INFO(TS__SESSION_LOG_FMT "event=close reason=%s", TS__SESSION_LOG_ARGS(s), ts_err_name(err));
    free(s);
    total_fell(srv, before);
}

static void on_open(struct ts_link *c)
{
    struct ts_session *s = ts_link_data(c);
    s->tls_done = 1;
    s->since_ms = uv_now(s->srv->loop);
    ts_stats_tls(s->srv->stats, ts_link_resumed(c));
}

static const struct ts_link_cbs session_cbs = {
    .on_open = on_open,
    .on_frame = on_frame,
    .on_error = on_error,
    .on_drain = on_drain,
    .on_close = on_close,
};

/* The per-address connection limit: over it, the Hello is refused with
 * RATE_LIMITED; far over it, the connection is dropped before TLS. */
static void count_connection(struct ts_session *s)
{
    char addr[64];
    peer_ip(s, addr, sizeof(addr));
    int rc = ts_limits_conn_open(s->srv->limits, addr);
    s->addr_counted = rc != TS_E_NOMEM;
    if (rc == TS_E_RATE_LIMITED || rc == TS_E_BUSY)
        TS_WARN(TS__SESSION_LOG_FMT "event=conn_limit action=%s", TS__SESSION_LOG_ARGS(s),
                rc == TS_E_BUSY ? "drop" : "refuse");
    if (rc == TS_E_RATE_LIMITED)
        s->conn_refused = 1;
    else if (rc == TS_E_BUSY)
        ts_session_close(s, TS_E_RATE_LIMITED);
}

int ts_session_accept(struct ts_server *srv, uv_stream_t *listener, SSL_CTX *ctx)
{
    struct ts_session *s = calloc(1, sizeof(*s));
    if (!s)
        return TS_E_NOMEM;
    s->srv = srv;
    s->state = TS__SESSION_AWAIT_HELLO;
    int rc =
        ts_link_accept(srv->links, listener, ctx, &session_cbs, s, TS_FRAME_MAX_PREAUTH, &s->conn);
    if (rc != TS_OK) {
        free(s);
        return rc;
    }
    s->since_ms = s->last_rx_ms = s->last_tx_ms = uv_now(srv->loop);
    s->next = srv->sessions;
    if (srv->sessions)
        srv->sessions->prev = s;
    srv->sessions = s;
    srv->n_sessions++;
    count_connection(s);
    TS_DEBUG(TS__SESSION_LOG_FMT "event=accept", TS__SESSION_LOG_ARGS(s));
    return TS_OK;
}

void ts_session_tick(struct ts_session *s, uint64_t now_ms)
{
    const struct ts_server_config *cfg = &s->srv->cfg;
    if (s->state == TS__SESSION_AWAIT_HELLO) {
        /* The Hello's clock starts when TLS is done: in a reconnect storm
         * a handshake can wait seconds in its I/O thread's queue, and that
         * wait is the node's, not the client's. The handshake gets twice
         * the Hello's time, from the accept, against peers that never
         * finish it (no Error frame then: there is no channel for one). */
        if (s->tls_done && now_ms - s->since_ms >= cfg->handshake_ms)
            fail_and_close(s, TS_E_BAD_FRAME, "handshake timeout");
        else if (!s->tls_done && now_ms - s->since_ms >= 2ull * cfg->handshake_ms)
            ts_session_close(s, TS_E_TLS);
        return;
    }
    if (s->state != TS__SESSION_READY)
        return;
    if (s->waiting && s->charged == 0)
        s->last_rx_ms = now_ms; /* waiting for the node's budget, not silent */
    if (now_ms - s->last_rx_ms >= 3ull * cfg->heartbeat_ms) {
        fail_and_close(s, TS_E_UNAVAILABLE, "heartbeat timeout");
        return;
    }
    /* A subscriber of a stale node would wait for changes that never come
     * here: closing sends it to a current node. */
    if (s->sub && refuse_stale(s, 0, 1))
        return;
    if (now_ms - s->last_tx_ms >= cfg->heartbeat_ms) {
        Threadsync__Frame f = THREADSYNC__FRAME__INIT;
        Threadsync__Ping ping = THREADSYNC__PING__INIT;
        ping.nonce = ++s->ping_nonce;
        f.msg_case = THREADSYNC__FRAME__MSG_PING;
        f.ping = &ping;
        ts__session_send(s, &f);
    }
}

void ts_session_close(struct ts_session *s, int err)
{
    if (s->state == TS__SESSION_CLOSING)
        return;
    s->state = TS__SESSION_CLOSING;
    if (s->sub) {
        ts_hub_unsubscribe(s->sub);
        s->sub = NULL;
    }
    ts_link_close(s->conn, err);
}

struct ts_session *ts_session_next(const struct ts_session *s)
{
    return s->next;
}

int ts_session_role(const struct ts_session *s)
{
    return s->role;
}

int ts_session_sub_seq(const struct ts_session *s, uint64_t *seq)
{
    if (!s->sub)
        return 0;
    *seq = ts_hub_sub_seq(s->sub);
    return 1;
}

size_t ts_session_size(void)
{
    return sizeof(struct ts_session);
}
