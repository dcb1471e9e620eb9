/*
 * ts_view: the public view of a comment. See ts_view.h.
 */
#include "ts_view.h"

/* Empties *f; nonzero when it held something. */
static int hide(char **f)
{
    int had = *f && **f;
    *f = (char *)protobuf_c_empty_string;
    return had;
}

int ts_view_public_comment(Threadsync__Comment *c)
{
    /* | and not ||: every field is emptied */
    int hid = hide(&c->author_email) | hide(&c->moderated_by) | hide(&c->reader_key);
    if (c->status != THREADSYNC__STATUS__VISIBLE)
        hid |= hide(&c->author_name) | hide(&c->body);
    return hid;
}

int ts_view_public_thread(Threadsync__Thread *t)
{
    return hide(&t->moderated_by);
}
