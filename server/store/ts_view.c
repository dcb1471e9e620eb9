/*
 * ts_view: the public view of a comment. See ts_view.h.
 */
#include "ts_view.h"

void ts_view_public_comment(Threadsync__Comment *c)
{
    c->author_email = (char *)protobuf_c_empty_string;
    c->moderated_by = (char *)protobuf_c_empty_string;
    c->reader_key = (char *)protobuf_c_empty_string;
    if (c->status != THREADSYNC__STATUS__VISIBLE)
        c->author_name = c->body = (char *)protobuf_c_empty_string;
}

void ts_view_public_thread(Threadsync__Thread *t)
{
    t->moderated_by = (char *)protobuf_c_empty_string;
}
