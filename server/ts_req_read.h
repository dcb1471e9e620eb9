/*
 * ts_req_read: the requests that read this node's state and change nothing
 * (PROTOCOL.md sections 3 and 4): Get, Subscribe, Digest, PendingQueue
 * and AuditList.
 * Any node answers them from what it has applied.
 *
 * Each is called by ts_session's dispatch after the common checks (see
 * ts_session_int.h) with f carrying its message, and answers at once.
 */
#ifndef TS_REQ_READ_H
#define TS_REQ_READ_H

#include "threadsync.pb-c.h"

struct ts_session;

/* A thread and its comments, in the view the role may see. */
void ts_req_read_get(struct ts_session *s, const Threadsync__Frame *f);
/* Starts the session's one subscription (catch-up, then live events). */
void ts_req_read_subscribe(struct ts_session *s, const Threadsync__Frame *f);
/* A page of per-thread digests, to compare a mirror against. */
void ts_req_read_digest(struct ts_session *s, const Threadsync__Frame *f);
/* Comments awaiting moderation, oldest first, with their threads. */
void ts_req_read_pending_queue(struct ts_session *s, const Threadsync__Frame *f);
/* A page of the audit trail (MODERATOR and up), from this node's state. */
void ts_req_read_audit_list(struct ts_session *s, const Threadsync__Frame *f);

#endif
