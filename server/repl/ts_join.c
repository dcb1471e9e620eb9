/*
 * ts_join: see ts_join.h.
 *
 * Invariants: at most one connection is open; the struct lives while the
 * connection or a timer handle is open, and is freed once both are closed
 * and the attempt is over (done or cancelled); cb runs at most once, from a
 * libuv callback.
 */
#include "ts_join.h"

#include "ts_addr.h"
#include "ts_conn.h"
#include "ts_err.h"
#include "ts_frame.h"
#include "ts_hello.h"
#include "ts_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_DEADLINE_MS 120000
#define RETRY_MS 500
#define FOLLOW_MS 50

struct ts_join {
    uv_loop_t *loop;
    uv_timer_t timer;
    struct ts_conn *conn;
    char *target, *token, *raft_address, *client_address;
    uint64_t node_id;
    SSL_CTX *ctx;
    uint64_t deadline;
    ts_join_cb cb;
    void *arg;
    int over; /* done or cancelled: no more attempts */
    int timer_open;
    int retry_ms; /* delay before the next attempt after this connection */
    unsigned attempts;
    int check; /* ask Cluster{} instead of Join (ts_join.h, check mode) */
    int read_replica;
};

static void join_free(struct ts_join *j)
{
    free(j->target);
    free(j->token);
    free(j->raft_address);
    free(j->client_address);
    free(j);
}

static void maybe_free(struct ts_join *j)
{
    if (j->over && !j->conn && !j->timer_open)
        join_free(j);
}

static void on_timer_closed(uv_handle_t *h)
{
    struct ts_join *j = h->data;
    j->timer_open = 0;
    maybe_free(j);
}

static void finish(struct ts_join *j, int status)
{
    if (j->over)
        return;
    j->over = 1;
    if (j->conn)
        ts_conn_close(j->conn, TS_OK);
    if (j->timer_open && !uv_is_closing((uv_handle_t *)&j->timer))
        uv_close((uv_handle_t *)&j->timer, on_timer_closed);
    if (j->cb)
        j->cb(j->arg, status);
}

static void attempt(uv_timer_t *t);

static void schedule(struct ts_join *j, unsigned ms)
{
    if (j->over)
        return;
    if (uv_now(j->loop) + ms >= j->deadline) {
        TS_ERROR("event=join_timeout target=%s attempts=%u", j->target, j->attempts);
        finish(j, TS_E_TIMEOUT);
        return;
    }
    uv_timer_start(&j->timer, attempt, ms, 0);
}

static int join_send(struct ts_join *j, Threadsync__Frame *f)
{
    return j->conn ? ts_conn_send_frame(j->conn, f) : TS_E_CLOSED;
}

static void on_open(struct ts_conn *c)
{
    struct ts_join *j = ts_conn_data(c);
    Threadsync__Frame f;
    Threadsync__Hello h;
    ts_hello_frame(&f, &h, "threadsyncd-join", j->token);
    join_send(j, &f);
}

static void send_cluster(struct ts_join *j)
{
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Cluster r = THREADSYNC__CLUSTER__INIT;
    r.request_id = 1;
    f.msg_case = THREADSYNC__FRAME__MSG_CLUSTER;
    f.cluster = &r;
    join_send(j, &f);
}

/* The role's name in threadsync.proto ("NODE_STANDBY"), for the logs. */
static const char *role_name(Threadsync__NodeRole role)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&threadsync__node_role__descriptor, (int)role);
    return v ? v->name : "unknown";
}

/* Check mode: the member's view decides once it knows a leader (a member
 * without one may be the lagging side of a partition). */
static void on_cluster(struct ts_join *j, const Threadsync__ClusterResult *cr)
{
    if (cr->leader_id == 0) {
        j->retry_ms = RETRY_MS;
        ts_conn_close(j->conn, TS_OK);
        return;
    }
    Threadsync__NodeRole want =
        j->read_replica ? THREADSYNC__NODE_ROLE__NODE_STANDBY : THREADSYNC__NODE_ROLE__NODE_VOTER;
    for (size_t i = 0; i < cr->n_nodes; i++) {
        if (cr->nodes[i]->id == j->node_id) {
            TS_INFO("event=membership_confirmed target=%s node=%llu role=%s", j->target,
                    (unsigned long long)j->node_id, role_name(cr->nodes[i]->role));
            if (cr->nodes[i]->role != want)
                TS_WARN("event=role_mismatch node=%llu role=%s asked=%s msg=\"a member keeps its "
                        "role; --read-replica only counts when a node first joins\"",
                        (unsigned long long)j->node_id, role_name(cr->nodes[i]->role),
                        role_name(want));
            finish(j, TS_OK);
            return;
        }
    }
    TS_INFO("event=membership_denied target=%s node=%llu leader=%llu", j->target,
            (unsigned long long)j->node_id, (unsigned long long)cr->leader_id);
    finish(j, TS_E_NOT_FOUND);
}

static void send_join(struct ts_join *j)
{
    if (j->check) {
        send_cluster(j);
        return;
    }
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Join r = THREADSYNC__JOIN__INIT;
    r.request_id = 1;
    r.node_id = j->node_id;
    r.raft_address = j->raft_address;
    r.client_address = j->client_address;
    r.role =
        j->read_replica ? THREADSYNC__NODE_ROLE__NODE_STANDBY : THREADSYNC__NODE_ROLE__NODE_VOTER;
    f.msg_case = THREADSYNC__FRAME__MSG_JOIN;
    f.join = &r;
    join_send(j, &f);
    TS_INFO("event=join_request target=%s node=%llu raft=%s client=%s role=%s", j->target,
            (unsigned long long)j->node_id, j->raft_address, j->client_address, role_name(r.role));
}

static void on_error_frame(struct ts_join *j, const Threadsync__Error *e)
{
    char qm[200];
    ts_log_quote(e->message, qm, sizeof(qm));
    TS_INFO("event=join_answer target=%s code=%s leader=%s message=%s", j->target,
            ts_err_name((int)e->code), e->leader_address, ts_log_quote(e->message, qm, sizeof(qm)));
    switch ((int)e->code) {
    case TS_E_NOT_LEADER:
        if (e->leader_address && *e->leader_address) {
            char *t = strdup(e->leader_address);
            if (t) {
                free(j->target);
                j->target = t;
            }
            j->retry_ms = FOLLOW_MS;
        } else {
            j->retry_ms = RETRY_MS;
        }
        break;
    case TS_E_UNAVAILABLE:
    case TS_E_INTERNAL:
    case TS_E_RATE_LIMITED:
        j->retry_ms = e->retry_after_ms > RETRY_MS ? (int)e->retry_after_ms : RETRY_MS;
        break;
    default:
        TS_ERROR("event=join_refused target=%s code=%s message=%s", j->target,
                 ts_err_name((int)e->code), qm);
        finish(j, (int)e->code);
        return;
    }
    ts_conn_close(j->conn, TS_OK);
}

static void on_frame(struct ts_conn *c, Threadsync__Frame *f, int status, const char *bad_field)
{
    struct ts_join *j = ts_conn_data(c);
    (void)status;
    (void)bad_field;
    if (j->over)
        goto out;
    switch (f->msg_case) {
    case THREADSYNC__FRAME__MSG_WELCOME:
        send_join(j);
        break;
    case THREADSYNC__FRAME__MSG_RESULT:
        if (j->check && f->result->request_id == 1 &&
            f->result->body_case == THREADSYNC__RESULT__BODY_CLUSTER) {
            on_cluster(j, f->result->cluster);
        } else if (f->result->request_id == 1 &&
                   f->result->body_case == THREADSYNC__RESULT__BODY_JOIN) {
            const Threadsync__ClusterNode *n = f->result->join->node;
            Threadsync__NodeRole role = n ? n->role : THREADSYNC__NODE_ROLE__NODE_ROLE_UNSPECIFIED;
            TS_INFO("event=joined target=%s node=%llu role=%s", j->target,
                    (unsigned long long)j->node_id, role_name(role));
            /* A leader that predates Join.role ignores it and adds a voter. */
            if (j->read_replica && role != THREADSYNC__NODE_ROLE__NODE_STANDBY)
                TS_ERROR("event=joined_as_voter node=%llu msg=\"asked to join as a read replica, "
                         "but the leader did not say standby: upgrade every voter first\"",
                         (unsigned long long)j->node_id);
            finish(j, TS_OK);
        }
        break;
    case THREADSYNC__FRAME__MSG_ERROR:
        on_error_frame(j, f->error);
        break;
    case THREADSYNC__FRAME__MSG_PING: {
        Threadsync__Frame r;
        Threadsync__Pong pong;
        ts_frame_pong(&r, &pong, f->ping);
        join_send(j, &r);
        break;
    }
    default:
        break;
    }
out:
    ts_frame_free(f);
}

static void on_close(struct ts_conn *c, int err)
{
    struct ts_join *j = ts_conn_data(c);
    j->conn = NULL;
    if (j->over) {
        maybe_free(j);
        return;
    }
    if (err != TS_OK)
        TS_INFO("event=join_conn_closed target=%s reason=%s", j->target, ts_err_name(err));
    schedule(j, (unsigned)j->retry_ms);
}

static const struct ts_conn_cbs join_cbs = {
    .on_open = on_open,
    .on_frame = on_frame,
    .on_close = on_close,
};

static void attempt(uv_timer_t *t)
{
    struct ts_join *j = t->data;
    char host[256];
    uint16_t port;
    j->attempts++;
    j->retry_ms = RETRY_MS;
    if (ts_addr_parse(j->target, host, sizeof(host), &port) != TS_OK) {
        TS_ERROR("event=join_bad_target target=%s", j->target);
        finish(j, TS_E_INVALID_ARGUMENT);
        return;
    }
    int rc =
        ts_conn_connect(j->loop, host, port, j->ctx, &join_cbs, j, TS_FRAME_MAX_DEFAULT, &j->conn);
    if (rc != TS_OK) {
        j->conn = NULL;
        schedule(j, RETRY_MS);
    }
}

int ts_join_start(uv_loop_t *loop, const struct ts_join_config *cfg, ts_join_cb cb, void *arg,
                  struct ts_join **out)
{
    char host[256];
    uint16_t port;
    *out = NULL;
    if (!cfg->target || ts_addr_parse(cfg->target, host, sizeof(host), &port) != TS_OK || port == 0)
        return TS_E_INVALID_ARGUMENT;
    struct ts_join *j = calloc(1, sizeof(*j));
    if (!j)
        return TS_E_NOMEM;
    j->loop = loop;
    j->target = strdup(cfg->target);
    j->token = strdup(cfg->token ? cfg->token : "");
    j->raft_address = strdup(cfg->raft_address);
    j->client_address = strdup(cfg->client_address);
    if (!j->target || !j->token || !j->raft_address || !j->client_address) {
        join_free(j);
        return TS_E_NOMEM;
    }
    j->node_id = cfg->node_id;
    j->check = cfg->check;
    j->read_replica = cfg->read_replica;
    j->ctx = cfg->ctx;
    j->cb = cb;
    j->arg = arg;
    j->deadline = uv_now(loop) + (cfg->deadline_ms ? cfg->deadline_ms : DEFAULT_DEADLINE_MS);
    uv_timer_init(loop, &j->timer);
    j->timer.data = j;
    j->timer_open = 1;
    uv_timer_start(&j->timer, attempt, 0, 0);
    *out = j;
    return TS_OK;
}

void ts_join_cancel(struct ts_join *j)
{
    j->cb = NULL;
    finish(j, TS_E_UNAVAILABLE);
    maybe_free(j);
}
