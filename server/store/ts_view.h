/*
 * ts_view: who may see what of a comment (PROTOCOL.md, "What readers see").
 * The one place the public view is defined; events, snapshots and Get all
 * pass through it, so a reader can never receive what this hides.
 */
#ifndef TS_VIEW_H
#define TS_VIEW_H

#include "threadsync.pb-c.h"

/* Turns a comment view into its public form in place: no e-mail, reader
 * key or moderated_by ever, and no body or author name unless the comment
 * is VISIBLE. Strings are only re-pointed at "", never freed: works on
 * store views and copies alike. Returns nonzero when that hid something
 * (a string it emptied was not empty): 0 means the public view encodes to
 * the same bytes as the full one (proto3: "" and an unset string are the
 * same on the wire). */
int ts_view_public_comment(Threadsync__Comment *c);

/* The same for a thread: no moderated_by. */
int ts_view_public_thread(Threadsync__Thread *t);

#endif
