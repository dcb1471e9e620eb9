/*
 * ts_req_import: the Import request (PROTOCOL.md section 4, "Import"), an
 * admin's bulk write of comments from another system, validated here as
 * Post's fields are and proposed as one log entry (ts_req_write_propose);
 * the store's apply decides each comment (ts_store_import.c) and the answer
 * lists those outcomes.
 *
 * Called by ts_session's dispatch after the common checks (role ADMIN).
 */
#ifndef TS_REQ_IMPORT_H
#define TS_REQ_IMPORT_H

#include "threadsync.pb-c.h"

struct ts_session;

void ts_req_import(struct ts_session *s, const Threadsync__Frame *f);

#endif
