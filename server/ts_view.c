/*
 * ts_view: the public view of a comment. See ts_view.h.
 */
#include "ts_view.h"

void ts_view_public_comment(Threadsync__Comment *c)
{
    static char empty[] = "";
    c->author_email = empty;
    if (c->status != THREADSYNC__STATUS__VISIBLE) {
        c->body = empty;
        c->author_name = empty;
    }
}
