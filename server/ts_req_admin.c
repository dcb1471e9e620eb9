/*
 * ts_req_admin: see ts_req_admin.h.
 *
 * Invariants:
 *   - a token name is never reused: neither one in this node's tokens file
 *     nor one the replicated table ever held;
 *   - a new token's text is made on the leader, handed back once in the
 *     answer, and only its hash enters the log;
 *   - a membership change in flight is linked into its session (a
 *     ts__session_wait) so that a closed session's answer is dropped.
 */
#include "ts_req_admin.h"

#include "ts_addr.h"
#include "ts_err.h"
#include "ts_log.h"
#include "ts_msglist.h"
#include "ts_repl.h"
#include "ts_req_write.h"
#include "ts_server_int.h"
#include "ts_session_int.h"
#include "ts_store.h"
#include "ts_valid.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- tokens ---- */

static int valid_token_name(const char *s)
{
    return s && ts_valid_token_name(s, strlen(s));
}

/* Whether name is in this node's tokens file. */
static int file_has_name(const struct ts_auth *auth, const char *name)
{
    const char *n;
    for (size_t i = 0; ts_auth_entry(auth, i, NULL, &n) == TS_OK; i++)
        if (strcmp(n, name) == 0)
            return 1;
    return 0;
}

static void answer_token_add(struct ts_session *s, const struct ts_req_write *w,
                             const struct ts_store_result *res)
{
    Threadsync__Result r = THREADSYNC__RESULT__INIT;
    Threadsync__TokenAddResult ta = THREADSYNC__TOKEN_ADD_RESULT__INIT;
    ta.name = (char *)w->name;
    ta.role = (Threadsync__Role)w->role;
    ta.token = (char *)w->token;
    ta.seq = res->seq;
    ta.gateway = w->gateway != 0;
    r.request_id = w->wait.request_id;
    r.body_case = THREADSYNC__RESULT__BODY_TOKEN_ADD;
    r.token_add = &ta;
    ts__session_result(s, &r);
}

void ts_req_admin_token_add(struct ts_session *s, const Threadsync__Frame *f)
{
    const Threadsync__TokenAdd *a = f->token_add;
    if (!valid_token_name(a->name)) {
        ts__session_error(s, a->request_id, TS_E_INVALID_ARGUMENT, "name",
                          "name must be 1 to 64 characters of A-Z a-z 0-9 . _ -");
        return;
    }
    if (a->role < THREADSYNC__ROLE__READER || a->role > THREADSYNC__ROLE__ADMIN) {
        ts__session_error(s, a->request_id, TS_E_INVALID_ARGUMENT, "role",
                          "role must be READER, POSTER, MODERATOR or ADMIN");
        return;
    }
    if (file_has_name(s->srv->auth, a->name) ||
        ts_store_token_state(s->srv->store, a->name) != TS_STORE_TOKEN_NONE) {
        ts__session_error(s, a->request_id, TS_E_INVALID_ARGUMENT, "name",
                          "a token had this name: names are never reused, pick another");
        return;
    }
    if (!ts_repl_is_leader(s->srv->repl)) {
        ts__session_error(s, a->request_id, TS_E_NOT_LEADER, NULL, NULL);
        return;
    }
    struct ts_req_write *w = calloc(1, sizeof(*w));
    uint8_t hash[TS_AUTH_HASH_LEN];
    if (!w || ts_auth_generate_token(w->token) != TS_OK ||
        ts_auth_hash_token(w->token, hash) != TS_OK) {
        free(w);
        ts__session_error(s, a->request_id, TS_E_UNAVAILABLE, NULL, "cannot make a token");
        return;
    }
    snprintf(w->name, sizeof(w->name), "%s", a->name);
    w->role = a->role;
    w->gateway = a->gateway;
    Threadsync__State__TokenGrant g = THREADSYNC__STATE__TOKEN_GRANT__INIT;
    g.name = a->name;
    g.role = a->role;
    g.gateway = a->gateway;
    g.token_hash.data = hash;
    g.token_hash.len = sizeof(hash);
    Threadsync__State__Command cmd = THREADSYNC__STATE__COMMAND__INIT;
    cmd.op_case = THREADSYNC__STATE__COMMAND__OP_TOKEN_GRANT;
    cmd.token_grant = &g;
    ts_req_write_propose(s, a->request_id, &cmd, w, answer_token_add);
}

static void answer_token_revoke(struct ts_session *s, const struct ts_req_write *w,
                                const struct ts_store_result *res)
{
    Threadsync__Result r = THREADSYNC__RESULT__INIT;
    Threadsync__TokenRevokeResult tr = THREADSYNC__TOKEN_REVOKE_RESULT__INIT;
    tr.name = (char *)w->name;
    tr.seq = res->seq;
    tr.changed = res->changed != 0;
    r.request_id = w->wait.request_id;
    r.body_case = THREADSYNC__RESULT__BODY_TOKEN_REVOKE;
    r.token_revoke = &tr;
    ts__session_result(s, &r);
}

void ts_req_admin_token_revoke(struct ts_session *s, const Threadsync__Frame *f)
{
    const Threadsync__TokenRevoke *rv = f->token_revoke;
    if (!valid_token_name(rv->name)) {
        ts__session_error(s, rv->request_id, TS_E_INVALID_ARGUMENT, "name",
                          "name must be 1 to 64 characters of A-Z a-z 0-9 . _ -");
        return;
    }
    if (!file_has_name(s->srv->auth, rv->name) &&
        ts_store_token_state(s->srv->store, rv->name) == TS_STORE_TOKEN_NONE) {
        ts__session_error(s, rv->request_id, TS_E_NOT_FOUND, "name", "no token has this name");
        return;
    }
    struct ts_req_write *w = calloc(1, sizeof(*w));
    if (!w) {
        ts__session_error(s, rv->request_id, TS_E_UNAVAILABLE, NULL, "out of memory");
        return;
    }
    snprintf(w->name, sizeof(w->name), "%s", rv->name);
    Threadsync__TokenRevoke copy = *rv;
    copy.request_id = 0;
    Threadsync__State__Command cmd = THREADSYNC__STATE__COMMAND__INIT;
    cmd.op_case = THREADSYNC__STATE__COMMAND__OP_TOKEN_REVOKE;
    cmd.token_revoke = &copy;
    ts_req_write_propose(s, rv->request_id, &cmd, w, answer_token_revoke);
}

static int collect_token(void *arg, const struct ts_store_token *t)
{
    struct ts_msglist *l = arg;
    if (!t->has_secret)
        return 0; /* a revoked tokens-file name: listed with the file's */
    Threadsync__TokenInfo *i = ts_msglist_add(l);
    if (!i)
        return 1;
    threadsync__token_info__init(i);
    i->name = (char *)t->name;
    i->role = (Threadsync__Role)t->role;
    i->created_at_ms = t->created_at_ms;
    i->created_by = (char *)t->created_by;
    i->revoked = t->revoked != 0;
    i->gateway = t->gateway != 0;
    return 0;
}

void ts_req_admin_token_list(struct ts_session *s, const Threadsync__Frame *f)
{
    const Threadsync__TokenList *tl = f->token_list;
    struct ts_msglist l = TS_MSGLIST_INIT(Threadsync__TokenInfo);
    int role;
    const char *name;
    for (size_t i = 0; ts_auth_entry(s->srv->auth, i, &role, &name) == TS_OK; i++) {
        Threadsync__TokenInfo *t = ts_msglist_add(&l);
        if (!t)
            break;
        threadsync__token_info__init(t);
        t->name = (char *)name;
        t->role = (Threadsync__Role)role;
        t->from_file = 1;
        t->gateway = ts_auth_gateway(s->srv->auth, name) != 0;
        t->revoked = ts_store_token_state(s->srv->store, name) == TS_STORE_TOKEN_REVOKED;
    }
    if (!l.failed)
        ts_store_foreach_token(s->srv->store, collect_token, &l);
    void **ptrs = ts_msglist_ptrs(&l);
    if (!ptrs) {
        ts_msglist_free(&l);
        ts__session_error(s, tl->request_id, TS_E_UNAVAILABLE, NULL, "out of memory");
        return;
    }
    Threadsync__Result r = THREADSYNC__RESULT__INIT;
    Threadsync__TokenListResult lr = THREADSYNC__TOKEN_LIST_RESULT__INIT;
    lr.tokens = (Threadsync__TokenInfo **)ptrs;
    lr.n_tokens = l.n;
    r.request_id = tl->request_id;
    r.body_case = THREADSYNC__RESULT__BODY_TOKEN_LIST;
    r.token_list = &lr;
    ts__session_result(s, &r);
    ts_msglist_free(&l);
}

/* ---- cluster membership ---- */

/* A Join or RemoveNode waiting for the replication module. */
struct pending_change {
    struct ts__session_wait wait; /* first */
    int join;
    int role; /* join: TS_REPL_VOTER or TS_REPL_STANDBY */
    uint64_t node_id;
    char raft_address[256], client_address[256];
};

static void fill_node(Threadsync__ClusterNode *cn, const struct ts_repl_node *n)
{
    threadsync__cluster_node__init(cn);
    cn->id = n->id;
    cn->raft_address = (char *)n->raft_address;
    cn->client_address = (char *)n->client_address;
    cn->role = (Threadsync__NodeRole)n->role;
    cn->is_leader = n->is_leader;
}

/* A Join that asks for the role a member already has the other of: joins
 * never change roles (a read replica is never promoted by one). */
static void refuse_role(struct ts_session *s, uint64_t rid, uint64_t node_id)
{
    char msg[160];
    snprintf(msg, sizeof(msg),
             "node %llu is already a member with the other role; a join does not change "
             "roles (remove the node, wipe its data directory, join again)",
             (unsigned long long)node_id);
    ts__session_error(s, rid, TS_E_INVALID_ARGUMENT, "role", msg);
}

static void change_done(void *arg, int status)
{
    struct pending_change *pc = arg;
    struct ts_session *s = ts__session_wait_done(&pc->wait);
    uint64_t rid = pc->wait.request_id;
    if (s && status == TS_E_EXISTS) {
        refuse_role(s, rid, pc->node_id);
    } else if (s && status != TS_OK) {
        ts__session_error(s, rid, status, status == TS_E_INVALID_ARGUMENT ? "node_id" : NULL,
                          status == TS_E_FORBIDDEN ? "the node's raft endpoint failed mutual TLS "
                                                     "with this cluster's CA"
                                                   : NULL);
    } else if (s) {
        Threadsync__Result r = THREADSYNC__RESULT__INIT;
        Threadsync__JoinResult jr = THREADSYNC__JOIN_RESULT__INIT;
        Threadsync__RemoveNodeResult rr = THREADSYNC__REMOVE_NODE_RESULT__INIT;
        Threadsync__ClusterNode cn;
        struct ts_repl_node n = {.id = pc->node_id, .role = pc->role};
        r.request_id = rid;
        if (pc->join) {
            memcpy(n.raft_address, pc->raft_address, sizeof(n.raft_address));
            memcpy(n.client_address, pc->client_address, sizeof(n.client_address));
            fill_node(&cn, &n);
            jr.node = &cn;
            r.body_case = THREADSYNC__RESULT__BODY_JOIN;
            r.join = &jr;
        } else {
            rr.node_id = pc->node_id;
            r.body_case = THREADSYNC__RESULT__BODY_REMOVE_NODE;
            r.remove_node = &rr;
        }
        ts__session_result(s, &r);
    }
    free(pc);
}

/* Whether address is HOST:PORT with a port, and fits in cap bytes. */
static int valid_node_address(const char *address, size_t cap)
{
    char host[256];
    uint16_t port;
    return ts_addr_parse(address, host, sizeof(host), &port) == TS_OK && port != 0 &&
           strlen(address) < cap;
}

static void change(struct ts_session *s, uint64_t rid, int join, int role, uint64_t node_id,
                   const char *raft_address, const char *client_address)
{
    if (node_id == 0) {
        ts__session_error(s, rid, TS_E_INVALID_ARGUMENT, "node_id", "node_id must not be 0");
        return;
    }
    struct pending_change *pc = calloc(1, sizeof(*pc));
    if (!pc) {
        ts__session_error(s, rid, TS_E_UNAVAILABLE, NULL, "out of memory");
        return;
    }
    if (join) {
        const char *bad = NULL;
        if (!valid_node_address(raft_address, sizeof(pc->raft_address)))
            bad = "raft_address";
        else if (!valid_node_address(client_address, sizeof(pc->client_address)))
            bad = "client_address";
        if (bad) {
            free(pc);
            ts__session_error(s, rid, TS_E_INVALID_ARGUMENT, bad,
                              "an address must be a numeric IP:PORT (IPv6 in brackets)");
            return;
        }
        snprintf(pc->raft_address, sizeof(pc->raft_address), "%s", raft_address);
        snprintf(pc->client_address, sizeof(pc->client_address), "%s", client_address);
    }
    pc->join = join;
    pc->role = role;
    pc->node_id = node_id;
    int rc = join ? ts_repl_join(s->srv->repl, node_id, raft_address, client_address, role,
                                 change_done, pc)
                  : ts_repl_remove(s->srv->repl, node_id, change_done, pc);
    if (rc == TS_E_EXISTS) {
        free(pc);
        refuse_role(s, rid, node_id);
        return;
    }
    if (rc != TS_OK) {
        free(pc);
        ts__session_error(
            s, rid, rc, rc == TS_E_INVALID_ARGUMENT || rc == TS_E_NOT_FOUND ? "node_id" : NULL,
            rc == TS_E_UNAVAILABLE ? "another membership change is in progress, or closing" : NULL);
        return;
    }
    TS_INFO(TS__SESSION_LOG_FMT "token_name=%s event=%s node=%llu%s", TS__SESSION_LOG_ARGS(s),
            s->token_name, join ? "join" : "remove_node", (unsigned long long)node_id,
            join && role == TS_REPL_STANDBY ? " role=standby" : "");
    ts__session_wait_add(s, &pc->wait, rid);
}

void ts_req_admin_join(struct ts_session *s, const Threadsync__Frame *f)
{
    const Threadsync__Join *j = f->join;
    int role = j->role == THREADSYNC__NODE_ROLE__NODE_STANDBY ? TS_REPL_STANDBY : TS_REPL_VOTER;
    if (j->role != THREADSYNC__NODE_ROLE__NODE_ROLE_UNSPECIFIED &&
        j->role != THREADSYNC__NODE_ROLE__NODE_VOTER &&
        j->role != THREADSYNC__NODE_ROLE__NODE_STANDBY) {
        ts__session_error(s, j->request_id, TS_E_INVALID_ARGUMENT, "role",
                          "a node joins as NODE_VOTER or NODE_STANDBY");
        return;
    }
    change(s, j->request_id, 1, role, j->node_id, j->raft_address, j->client_address);
}

void ts_req_admin_remove_node(struct ts_session *s, const Threadsync__Frame *f)
{
    const Threadsync__RemoveNode *rn = f->remove_node;
    change(s, rn->request_id, 0, 0, rn->node_id, NULL, NULL);
}

void ts_req_admin_cluster(struct ts_session *s, const Threadsync__Frame *f)
{
    const Threadsync__Cluster *c = f->cluster;
    struct ts_repl_node *nodes;
    size_t n;
    if (ts_repl_nodes(s->srv->repl, &nodes, &n) != TS_OK) {
        ts__session_error(s, c->request_id, TS_E_UNAVAILABLE, NULL, "out of memory");
        return;
    }
    struct ts_msglist l = TS_MSGLIST_INIT(Threadsync__ClusterNode);
    Threadsync__ClusterNode *cn = ts_msglist_add_n(&l, n);
    void **ptrs = cn ? ts_msglist_ptrs(&l) : NULL;
    if (!ptrs) {
        ts_msglist_free(&l);
        free(nodes);
        ts__session_error(s, c->request_id, TS_E_UNAVAILABLE, NULL, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++)
        fill_node(&cn[i], &nodes[i]);
    Threadsync__Result r = THREADSYNC__RESULT__INIT;
    Threadsync__ClusterResult cr = THREADSYNC__CLUSTER_RESULT__INIT;
    cr.nodes = (Threadsync__ClusterNode **)ptrs;
    cr.n_nodes = n;
    cr.leader_id = ts_repl_leader_id(s->srv->repl);
    cr.node_id = s->srv->cfg.node_id;
    cr.applied_seq = ts_store_seq(s->srv->store);
    r.request_id = c->request_id;
    r.body_case = THREADSYNC__RESULT__BODY_CLUSTER;
    r.cluster = &cr;
    ts__session_result(s, &r);
    ts_msglist_free(&l);
    free(nodes);
}
