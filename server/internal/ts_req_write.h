/*
 * ts_req_write: the requests that change state through the replicated log
 * (PROTOCOL.md section 4): Post, a moderator's Moderate / ModerateThread /
 * BanAuthor, an author's Edit / Delete with the edit key; and the one way
 * every write is proposed and answered (ts_req_write_propose), which
 * ts_req_admin.c's token writes use too.
 *
 * Each handler is called by ts_session's dispatch after the common checks
 * (see ts_session_int.h) with f carrying its message. A write's answer is
 * sent only from the replication callback, i.e. after commit and apply;
 * its session may have closed by then, and the answer is dropped.
 *
 * Posts are batched: the posts admitted within one loop iteration are
 * packed as they arrive and proposed together from a uv_check handle, i.e.
 * right after the I/O phase that brought them: one Raft entry (a
 * PostBatch; a lone post stays a plain post entry), one log append, one
 * apply pass, one wake-up of the hub. Nothing waits for a batch to fill:
 * a lone post is proposed in the iteration it arrived in. Any other write
 * proposes the pending batch first, so the log keeps the order in which
 * the node admitted requests.
 */
#ifndef TS_REQ_WRITE_H
#define TS_REQ_WRITE_H

#include <stdint.h>

#include <uv.h>

#include "threadsync.pb-c.h"
#include "threadsync_state.pb-c.h"
#include "ts_auth.h"
#include "ts_disk.h"
#include "ts_session_int.h"

struct ts_stats;
struct ts_store_result;

struct ts_req_write;

/* Builds a write's Result once its entry applied without error (res->status
 * is TS_OK), for a session still open. */
typedef void ts_req_write_answer_fn(struct ts_session *s, const struct ts_req_write *w,
                                    const struct ts_store_result *res);

/* A write in flight: what its answer needs beyond the store's result.
 * Cleansed before it is freed (a new token's or edit key's text may be in
 * it). */
struct ts_req_write {
    struct ts__session_wait wait; /* first; wait.request_id is the request's */
    ts_req_write_answer_fn *answer;
    struct ts_stats *stats; /* Post: post-to-commit latency from t0 (ns) */
    struct ts_disk *disk;   /* counts disk_bytes as pending until the apply */
    uint64_t disk_bytes;
    uint64_t t0;
    uint64_t lat_stamp;        /* Post: the benchmark's stamp (ts_lattrace.h), or 0 */
    struct ts_server *srv;     /* Post: for the batch's outcome */
    struct ts_req_write *next; /* Post: the next one of its batch */
    int role;                  /* TokenAdd */
    int gateway;               /* TokenAdd */
    /* BanAuthor (an author, up to an e-mail; "reader:" + a key), TokenAdd, TokenRevoke */
    char name[TS_AUTHOR_EMAIL_MAX + 1];
    char token[TS_AUTH_TOKEN_LEN + 1]; /* TokenAdd: handed back once */
};

/* Proposes cmd, stamped here with the leader's clock and the session's
 * token name, for request rid. w (NULL: allocated here; else calloc'd by
 * the caller, and owned here from the call) carries what answer needs.
 * Every path answers the request now (NOT_LEADER, out of memory, the
 * proposal refused) or later: an error for a failed apply or a refused
 * command, else answer(). */
void ts_req_write_propose(struct ts_session *s, uint64_t rid, Threadsync__State__Command *cmd,
                          struct ts_req_write *w, ts_req_write_answer_fn *answer);

void ts_req_write_post(struct ts_session *s, const Threadsync__Frame *f);

/* The server's post batch: set up at start (TS_E_NOMEM); closed at stop,
 * after proposing what it holds (cb(arg) once its handles are closed and
 * it is freed). */
int ts__req_write_batch_new(struct ts_server *srv);
void ts__req_write_batch_close(struct ts_server *srv, void (*cb)(void *arg), void *arg);
void ts_req_write_moderate(struct ts_session *s, const Threadsync__Frame *f);
void ts_req_write_edit(struct ts_session *s, const Threadsync__Frame *f);
void ts_req_write_delete(struct ts_session *s, const Threadsync__Frame *f);
void ts_req_write_moderate_thread(struct ts_session *s, const Threadsync__Frame *f);
void ts_req_write_ban(struct ts_session *s, const Threadsync__Frame *f);

#endif
