/*
 * ts_view: who may see what of a comment (PROTOCOL.md, "What readers see").
 * The one place the public view is defined; events, snapshots and Get all
 * pass through it, so a reader can never receive what this hides.
 */
#ifndef TS_VIEW_H
#define TS_VIEW_H

#include "threadsync.pb-c.h"

/* Turns a comment view into its public form in place: no e-mail and no
 * moderated_by ever, and no body or author name unless the comment is
 * VISIBLE. Strings are only re-pointed at "", never freed: works on store
 * views and copies alike. */
void ts_view_public_comment(Threadsync__Comment *c);

/* The same for a thread: no moderated_by. */
void ts_view_public_thread(Threadsync__Thread *t);

#endif
