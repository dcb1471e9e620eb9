/*
 * ts_repl_member: raft's configuration as the rest of the server sees it
 * (ts_repl_is_member, ts_repl_nodes) and the membership changes a leader
 * drives (ts_repl_join: probe over mutual TLS, add as spare, assign the
 * role asked for, voter or standby; ts_repl_remove). Private to ts_repl
 * (ts_repl_int.h).
 *
 * A join assigns a role once, to a spare: a member that already is a voter
 * or a standby keeps its role whatever a later Join asks (TS_E_EXISTS), so
 * a read replica is never promoted by a retried or mistaken join.
 *
 * Invariants: at most one change runs (r->mop, libraft takes one at a
 * time); each step is started from the loop (the kick timer), never from
 * inside a raft callback or a ts_repl_* call, and the change's callback
 * runs exactly once, from ts__repl_mop_finish (ts_repl.c's close ends a
 * change still running with TS_E_UNAVAILABLE).
 */
#include "ts_repl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <raft.h>

#include "ts_err.h"
#include "ts_log.h"
#include "ts_raft_tls.h"
#include "ts_repl_int.h"

int ts_repl_is_member(const struct ts_repl *r)
{
    for (unsigned i = 0; i < r->raft.configuration.n; i++)
        if (r->raft.configuration.servers[i].id == r->raft.id)
            return 1;
    return 0;
}

static int cmp_node(const void *a, const void *b)
{
    const struct ts_repl_node *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

int ts_repl_nodes(const struct ts_repl *r, struct ts_repl_node **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    const struct raft_configuration *c = &r->raft.configuration;
    if (r->raft_stopping || c->n == 0)
        return TS_OK;
    struct ts_repl_node *v = calloc(c->n, sizeof(*v));
    if (!v)
        return TS_E_NOMEM;
    uint64_t leader = ts_repl_leader_id(r);
    for (unsigned i = 0; i < c->n; i++) {
        const struct raft_server *s = &c->servers[i];
        v[i].id = s->id;
        if (ts_raft_tls_split_address(s->address, v[i].raft_address, sizeof(v[i].raft_address),
                                      v[i].client_address, sizeof(v[i].client_address)) != TS_OK)
            snprintf(v[i].raft_address, sizeof(v[i].raft_address), "%s", s->address);
        if (s->id == r->raft.id && !v[i].client_address[0])
            snprintf(v[i].client_address, sizeof(v[i].client_address), "%s", r->client_address);
        v[i].role = s->role == RAFT_VOTER     ? TS_REPL_VOTER
                    : s->role == RAFT_STANDBY ? TS_REPL_STANDBY
                                              : TS_REPL_SPARE;
        v[i].is_leader = s->id == leader;
    }
    qsort(v, c->n, sizeof(*v), cmp_node);
    *out = v;
    *n = c->n;
    return TS_OK;
}

/* ---- membership ------------------------------------------------------ */

static int change_err(int rv)
{
    switch (rv) {
    case 0:
        return TS_OK;
    case RAFT_NOTLEADER:
        return TS_E_NOT_LEADER;
    case RAFT_BADID:
    case RAFT_DUPLICATEID:
    case RAFT_DUPLICATEADDRESS:
    case RAFT_BADROLE:
        return TS_E_INVALID_ARGUMENT;
    case RAFT_NOMEM:
        return TS_E_NOMEM;
    default: /* CANTCHANGE, LEADERSHIPLOST, NOCONNECTION (no catch-up), SHUTDOWN */
        return TS_E_UNAVAILABLE;
    }
}

/* Ends the change: its callback runs from the loop (kick), never from
 * inside a raft callback or a ts_repl_* call. */
void ts__repl_mop_finish(struct ts_repl *r, int status)
{
    struct repl_mop *m = r->mop;
    r->mop = NULL;
    TS_INFO("event=repl_membership_done dir=%s node=%llu result=%s", r->dir,
            (unsigned long long)m->id, ts_err_name(status));
    if (m->cb)
        m->cb(m->arg, status);
    free(m->address);
    free(m);
}

static void mop_step(struct ts_repl *r);

static void on_kick(uv_timer_t *h)
{
    struct ts_repl *r = h->data;
    if (r->mop && !r->mop->raft_pending)
        mop_step(r);
}

static void on_change(struct raft_change *req, int status)
{
    struct ts_repl *r = req->data;
    if (!r->mop || !r->mop->raft_pending)
        return;
    r->mop->raft_pending = 0;
    r->mop->status = change_err(status);
    uv_timer_start(&r->kick, on_kick, 0, 0);
}

static void on_probe(void *arg, int status)
{
    struct ts_repl *r = arg;
    if (!r->mop)
        return;
    if (status == TS_E_TLS) {
        TS_WARN("event=repl_join_refused dir=%s node=%llu addr=%s reason=\"mutual TLS failed\"",
                r->dir, (unsigned long long)r->mop->id, r->mop->address);
        status = TS_E_FORBIDDEN;
    } else if (status == TS_E_TIMEOUT) {
        status = TS_E_IO;
    }
    r->mop->status = status;
    uv_timer_start(&r->kick, on_kick, 0, 0);
}

static const struct raft_server *find_server(struct ts_repl *r, uint64_t id)
{
    for (unsigned i = 0; i < r->raft.configuration.n; i++)
        if (r->raft.configuration.servers[i].id == id)
            return &r->raft.configuration.servers[i];
    return NULL;
}

/* Runs the next step once the previous one ended with TS_OK. */
static void mop_step(struct ts_repl *r)
{
    struct repl_mop *m = r->mop;
    if (m->status != TS_OK) {
        ts__repl_mop_finish(r, m->status);
        return;
    }
    if (r->closing || r->failed || r->raft_stopping) {
        ts__repl_mop_finish(r, TS_E_UNAVAILABLE);
        return;
    }
    if (m->stage == MOP_DONE) {
        ts__repl_mop_finish(r, TS_OK);
        return;
    }
    if (raft_state(&r->raft) != RAFT_LEADER) {
        ts__repl_mop_finish(r, TS_E_NOT_LEADER);
        return;
    }
    const struct raft_server *srv = find_server(r, m->id);
    int rv = 0;
    m->change.data = r;
    if (m->stage == MOP_PROBE) {
        if (srv && srv->role == m->role) {
            ts__repl_mop_finish(r, TS_OK); /* already joined */
            return;
        }
        if (srv && srv->role != RAFT_SPARE) {
            /* it became a member with the other role while we probed */
            ts__repl_mop_finish(r, TS_E_EXISTS);
            return;
        }
        m->stage = srv ? MOP_ASSIGN : MOP_ADD;
    }
    switch (m->stage) {
    case MOP_ADD:
        TS_INFO("event=repl_add dir=%s node=%llu addr=%s role=spare", r->dir,
                (unsigned long long)m->id, m->address);
        rv = raft_add(&r->raft, &m->change, m->id, m->address, on_change);
        m->stage = MOP_ASSIGN;
        break;
    case MOP_ASSIGN:
        /* To voter: libraft replicates to the node in rounds and commits
         * the new role only once the node is caught up (or gives up:
         * NOCONNECTION). To standby: committed at once; the node then
         * copies the log like any follower. */
        TS_INFO("event=repl_assign dir=%s node=%llu role=%s", r->dir, (unsigned long long)m->id,
                m->role == RAFT_VOTER ? "voter" : "standby");
        rv = raft_assign(&r->raft, &m->change, m->id, m->role, on_change);
        m->stage = MOP_DONE;
        break;
    case MOP_REMOVE:
        if (!srv) {
            ts__repl_mop_finish(r, TS_OK);
            return;
        }
        TS_INFO("event=repl_remove dir=%s node=%llu", r->dir, (unsigned long long)m->id);
        rv = raft_remove(&r->raft, &m->change, m->id, on_change);
        m->stage = MOP_DONE;
        break;
    default:
        break;
    }
    if (rv != 0) {
        TS_WARN("event=repl_membership_failed dir=%s node=%llu err=%s msg=\"%s\"", r->dir,
                (unsigned long long)m->id, raft_strerror(rv), raft_errmsg(&r->raft));
        ts__repl_mop_finish(r, change_err(rv));
        return;
    }
    m->raft_pending = 1;
}

static int mop_begin(struct ts_repl *r, uint64_t id, ts_repl_change_cb cb, void *arg,
                     struct repl_mop **out)
{
    if (r->closing || r->failed || r->raft_stopping)
        return TS_E_UNAVAILABLE;
    if (raft_state(&r->raft) != RAFT_LEADER)
        return TS_E_NOT_LEADER;
    if (r->mop)
        return TS_E_UNAVAILABLE;
    if (id == 0)
        return TS_E_INVALID_ARGUMENT;
    struct repl_mop *m = calloc(1, sizeof(*m));
    if (!m)
        return TS_E_NOMEM;
    m->id = id;
    m->cb = cb;
    m->arg = arg;
    *out = m;
    return TS_OK;
}

int ts_repl_join(struct ts_repl *r, uint64_t id, const char *raft_address,
                 const char *client_address, int role, ts_repl_change_cb cb, void *arg)
{
    struct repl_mop *m;
    if (!raft_address || !client_address || strchr(raft_address, ',') ||
        strchr(client_address, ',') || (role != TS_REPL_VOTER && role != TS_REPL_STANDBY))
        return TS_E_INVALID_ARGUMENT;
    int raft_role = role == TS_REPL_VOTER ? RAFT_VOTER : RAFT_STANDBY;
    size_t alen = strlen(raft_address) + strlen(client_address) + 2;
    if (alen > TS_RAFT_TLS_ADDR_MAX)
        return TS_E_INVALID_ARGUMENT;
    char *address = malloc(alen);
    if (!address)
        return TS_E_NOMEM;
    size_t rlen = strlen(raft_address);
    memcpy(address, raft_address, rlen);
    address[rlen] = ',';
    memcpy(address + rlen + 1, client_address, strlen(client_address) + 1);
    if (ts_raft_tls_split_address(address, NULL, 0, NULL, 0) != TS_OK) {
        free(address);
        return TS_E_INVALID_ARGUMENT;
    }
    const struct raft_server *known = find_server(r, id);
    if (known && strcmp(known->address, address) != 0) {
        free(address);
        return TS_E_INVALID_ARGUMENT;
    }
    if (known && known->role != RAFT_SPARE && known->role != raft_role) {
        free(address);
        return TS_E_EXISTS;
    }
    for (unsigned i = 0; !known && i < r->raft.configuration.n; i++) {
        char other[TS_RAFT_TLS_ADDR_MAX + 1];
        if (ts_raft_tls_split_address(r->raft.configuration.servers[i].address, other,
                                      sizeof(other), NULL, 0) == TS_OK &&
            strcmp(other, raft_address) == 0) {
            free(address);
            return TS_E_INVALID_ARGUMENT;
        }
    }
    int rc = mop_begin(r, id, cb, arg, &m);
    if (rc != TS_OK) {
        free(address);
        return rc;
    }
    m->address = address;
    m->role = raft_role;
    m->stage = MOP_PROBE;
    r->mop = m;
    TS_INFO("event=repl_join dir=%s node=%llu addr=%s role=%s", r->dir, (unsigned long long)id,
            address, role == TS_REPL_VOTER ? "voter" : "standby");
    if (r->tls) {
        rc = ts_raft_tls_probe(&r->transport, address, on_probe, r);
        if (rc != TS_OK) {
            r->mop = NULL;
            free(m->address);
            free(m);
            return rc;
        }
    } else {
        uv_timer_start(&r->kick, on_kick, 0, 0);
    }
    return TS_OK;
}

int ts_repl_remove(struct ts_repl *r, uint64_t id, ts_repl_change_cb cb, void *arg)
{
    struct repl_mop *m;
    if (raft_state(&r->raft) == RAFT_LEADER && id == r->raft.id)
        return TS_E_INVALID_ARGUMENT;
    if (raft_state(&r->raft) == RAFT_LEADER && !find_server(r, id))
        return TS_E_NOT_FOUND;
    int rc = mop_begin(r, id, cb, arg, &m);
    if (rc != TS_OK)
        return rc;
    m->stage = MOP_REMOVE;
    r->mop = m;
    uv_timer_start(&r->kick, on_kick, 0, 0);
    return TS_OK;
}
