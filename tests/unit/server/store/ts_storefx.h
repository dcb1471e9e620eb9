/*
 * ts_storefx: what the server/store suites share (ts_store_test,
 * ts_store_import_test, ts_store_audit_test, ts_evlog_test): a store over
 * an in-memory event log, applying a command to it as the log applies a
 * committed entry, the moderation commands several suites build, and
 * decoding a stored event. Failures are Check assertions.
 */
#ifndef TS_STOREFX_H
#define TS_STOREFX_H

#include <stddef.h>
#include <stdint.h>

#include "threadsync_state.pb-c.h"
#include "ts_evlog.h"
#include "ts_store.h"

struct ts_storefx {
    struct ts_evlog *log;
    struct ts_store *s; /* over log */
};

void ts_storefx_init(struct ts_storefx *f);
void ts_storefx_free(struct ts_storefx *f);

/* Encodes cmd (borrowed) and applies it as entry index: the result, which
 * may be a refusal (res.status); encoding and applying must succeed. */
struct ts_store_result ts_storefx_apply(struct ts_storefx *f, uint64_t index,
                                        Threadsync__State__Command *cmd);

/* A ModerateThread by actor "mod-bob" at command time t. */
struct ts_store_result ts_storefx_thread_act(struct ts_storefx *f, uint64_t index, int64_t t,
                                             const char *key, Threadsync__ThreadAction action);

/* A BanAuthor of author for duration ms (0 lifts it) by actor at time t. */
struct ts_store_result ts_storefx_ban(struct ts_storefx *f, uint64_t index, int64_t t,
                                      const char *actor, const char *author, uint64_t duration);

#define K_APPROVE THREADSYNC__STATE__CHANGE_KIND__CHANGE_APPROVE
#define K_HIDE THREADSYNC__STATE__CHANGE_KIND__CHANGE_HIDE
#define K_UNHIDE THREADSYNC__STATE__CHANGE_KIND__CHANGE_UNHIDE
#define K_DELETE THREADSYNC__STATE__CHANGE_KIND__CHANGE_DELETE
#define K_EDIT THREADSYNC__STATE__CHANGE_KIND__CHANGE_EDIT

/* Takes f's snapshot into *snap (malloc'd, *len bytes), checking that its
 * bytes are what protobuf-c packs of the whole StoreSnapshot (the store
 * packs it a record at a time). */
void ts_storefx_snapshot(const struct ts_storefx *f, uint8_t **snap, size_t *len);

/* Decodes one stored Events.events element (tag, varint length, Event)
 * of len bytes; free with threadsync__event__free_unpacked. */
Threadsync__Event *ts_storefx_event(const uint8_t *p, size_t len);

#endif
