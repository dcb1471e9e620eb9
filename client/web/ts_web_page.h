/*
 * ts_web_page: the web edge's HTML, JSON and Atom, built from a thread as
 * the mirror stores it. No I/O; every text is escaped as the mirror's files
 * are (ts_mirror_render_text), and the tree is the mirror's own
 * (ts_mirror_render_tree), so the page and DIR/threads/<file>.html show
 * the same comments in the same places.
 *
 * Pages carry no inline script or style (the edge sends a strict
 * Content-Security-Policy): /static/threadsync.css and /static/threadsync.js
 * are linked. The script finds everything it needs in data- attributes of
 * the section: the thread key, the seq the page was rendered at, the URL of
 * the event stream.
 *
 * URLs: a thread key is written percent-encoded, every byte outside
 * [A-Za-z0-9_~-] escaped ('/' and '.' too), so "/t/{key}.json" and
 * "/t/{key}/embed" can never be mistaken for another key; base (e.g.
 * "/comments", "" by default) prefixes every link.
 */
#ifndef TS_WEB_PAGE_H
#define TS_WEB_PAGE_H

#include <stddef.h>
#include <stdint.h>

#include "threadsync.pb-c.h"
#include "ts_buf.h"

struct ts_web_page {
    const Threadsync__Thread *thread;
    const Threadsync__Comment *const *comments;
    size_t n;
    const char *base;                /* URL prefix, "" for none */
    const char *nonce, *csrf;        /* of the form this page carries */
    uint64_t seq;                    /* the mirror's cursor the page shows */
    int embed;                       /* a fragment: no <html>, <head> or <h1> */
    uint64_t parent;                 /* the form replies to this comment (0: top level) */
    uint64_t edit;                   /* the form edits this comment (own, 0: none) */
    const char *name, *email, *body; /* the form's fields, kept after a refusal */
    const char *error;               /* shown above the form, or NULL */
    /* The reader's own comments (from their edit-key cookies): a stand-in
     * with author and body for one awaiting moderation, and whether c is
     * theirs (edit and delete controls). May be NULL. */
    const Threadsync__Comment *(*own)(void *arg, const Threadsync__Comment *c);
    int (*mine)(void *arg, const Threadsync__Comment *c);
    void *own_arg;
};

/* Appends s (NULL: "") escaped for HTML text and attributes; as a quoted
 * JSON string. */
void ts_web_page_text(struct ts_buf *b, const char *s);
void ts_web_page_jstr(struct ts_buf *b, const char *s);

/* Appends key percent-encoded as above. */
void ts_web_page_key(struct ts_buf *b, const char *key);

/* The thread page or embed fragment. TS_OK or TS_E_NOMEM. */
int ts_web_page_html(struct ts_buf *b, const struct ts_web_page *p);

/* One comment's public JSON object, as in the mirror's files (author and
 * body empty unless VISIBLE). */
void ts_web_page_comment_json(struct ts_buf *b, const Threadsync__Comment *c);

/* One live event's SSE frame: "id: seq\nevent: comment\ndata: {json}\n\n",
 * json = {"key","count","locked","comment":{...}}. */
void ts_web_page_event(struct ts_buf *b, uint64_t seq, const Threadsync__Thread *t,
                       const Threadsync__Comment *c);

/* Atom feed of the newest max VISIBLE comments, newest first. self is the
 * feed's own URL (may be ""). TS_OK or TS_E_NOMEM. */
int ts_web_page_atom(struct ts_buf *b, const Threadsync__Thread *t,
                     const Threadsync__Comment *const *comments, size_t n, size_t max,
                     const char *self);

#endif
