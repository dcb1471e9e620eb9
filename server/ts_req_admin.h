/*
 * ts_req_admin: the ADMIN role's requests: API tokens (TokenAdd,
 * TokenRevoke, TokenList; PROTOCOL.md section 4) and cluster membership
 * (Join, RemoveNode, Cluster; section 4, "Cluster"). Backups are
 * ts_backup.c's.
 *
 * Each is called by ts_session's dispatch after the common checks (see
 * ts_session_int.h) with f carrying its message. Token writes go through
 * the log (ts_req_write_propose); membership changes through the
 * replication module, answered from its callback.
 */
#ifndef TS_REQ_ADMIN_H
#define TS_REQ_ADMIN_H

#include "threadsync.pb-c.h"

struct ts_session;

void ts_req_admin_token_add(struct ts_session *s, const Threadsync__Frame *f);
void ts_req_admin_token_revoke(struct ts_session *s, const Threadsync__Frame *f);
void ts_req_admin_token_list(struct ts_session *s, const Threadsync__Frame *f);
void ts_req_admin_join(struct ts_session *s, const Threadsync__Frame *f);
void ts_req_admin_remove_node(struct ts_session *s, const Threadsync__Frame *f);
void ts_req_admin_cluster(struct ts_session *s, const Threadsync__Frame *f);

#endif
