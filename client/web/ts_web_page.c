/*
 * ts_web_page: the edge's documents (see ts_web_page.h). Built into a
 * ts_buf, whose failure flag is checked once at the end.
 */
#include "ts_web_page.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "ts_digest.h"
#include "ts_err.h"
#include "ts_mirror_render.h"

void ts_web_page_text(struct ts_buf *b, const char *s)
{
    ts_mirror_render_text(b, s ? s : "", 1);
}

void ts_web_page_jstr(struct ts_buf *b, const char *s)
{
    ts_buf_puts(b, "\"");
    ts_mirror_render_text(b, s ? s : "", 0);
    ts_buf_puts(b, "\"");
}

void ts_web_page_key(struct ts_buf *b, const char *key)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        unsigned char c = *p;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '_' || c == '-' || c == '~') {
            ts_buf_add(b, p, 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            ts_buf_add(b, e, 3);
        }
    }
}

/* base + "/t/" + key + suffix, HTML-escaped for an attribute. */
static void thread_url(struct ts_buf *b, const char *base, const char *key, const char *suffix)
{
    ts_web_page_text(b, base);
    ts_buf_puts(b, "/t/");
    ts_web_page_key(b, key); /* only [A-Za-z0-9_~-] and %XX: safe in HTML */
    ts_buf_puts(b, suffix);
}

struct page_ctx {
    const struct ts_web_page *p;
};

static const Threadsync__Comment *hook_own(void *arg, const Threadsync__Comment *c)
{
    const struct ts_web_page *p = ((struct page_ctx *)arg)->p;
    return p->own ? p->own(p->own_arg, c) : NULL;
}

/* Under each shown comment: Reply, and for the reader's own, Edit and a
 * Delete form (a POST, as every change is). */
static void hook_after(void *arg, struct ts_buf *b, const Threadsync__Comment *c)
{
    const struct ts_web_page *p = ((struct page_ctx *)arg)->p;
    const char *key = p->thread->key;
    ts_buf_puts(b, "<p class=\"ts-actions\"><a class=\"ts-reply-link\" href=\"");
    thread_url(b, p->base, key, "");
    ts_buf_printf(b, "?parent=%" PRIu64 "#reply\" data-parent=\"%" PRIu64 "\">Reply</a>", c->id,
                  c->id);
    if (p->mine && p->mine(p->own_arg, c)) {
        ts_buf_puts(b, " <a class=\"ts-edit-link\" href=\"");
        thread_url(b, p->base, key, "");
        ts_buf_printf(b, "?edit=%" PRIu64 "#reply\" data-edit=\"%" PRIu64 "\">Edit</a>", c->id,
                      c->id);
        ts_buf_puts(b, " <form class=\"ts-delete\" method=\"post\" action=\"");
        thread_url(b, p->base, key, "/delete");
        ts_buf_printf(b, "\"><input type=\"hidden\" name=\"comment\" value=\"%" PRIu64 "\">",
                      c->id);
        ts_buf_puts(b, "<input type=\"hidden\" name=\"nonce\" value=\"");
        ts_web_page_text(b, p->nonce);
        ts_buf_puts(b, "\"><input type=\"hidden\" name=\"csrf\" value=\"");
        ts_web_page_text(b, p->csrf);
        ts_buf_puts(b, "\"><button type=\"submit\">Delete</button></form>");
    }
    ts_buf_puts(b, "</p>");
}

static void add_form(struct ts_buf *b, const struct ts_web_page *p)
{
    const char *key = p->thread->key;
    ts_buf_puts(b, "<section class=\"ts-reply\" id=\"reply\">\n<h2>");
    ts_buf_puts(b, p->edit ? "Edit your comment" : "Leave a reply");
    ts_buf_puts(b, "</h2>\n<p class=\"ts-error\" role=\"alert\"");
    if (!p->error)
        ts_buf_puts(b, " hidden>");
    else {
        ts_buf_puts(b, ">");
        ts_web_page_text(b, p->error);
    }
    ts_buf_puts(b, "</p>\n");
    if (p->thread->locked) {
        ts_buf_puts(b, "<p class=\"ts-locked\">This thread is closed to new comments.</p>\n");
    }
    ts_buf_puts(b, "<form class=\"ts-form\" method=\"post\" action=\"");
    thread_url(b, p->base, key, p->edit ? "/edit" : "/post");
    ts_buf_puts(b, "\">\n<input type=\"hidden\" name=\"nonce\" value=\"");
    ts_web_page_text(b, p->nonce);
    ts_buf_puts(b, "\"><input type=\"hidden\" name=\"csrf\" value=\"");
    ts_web_page_text(b, p->csrf);
    ts_buf_printf(b, "\"><input type=\"hidden\" name=\"parent\" value=\"%" PRIu64 "\">", p->parent);
    if (p->edit)
        ts_buf_printf(b, "<input type=\"hidden\" name=\"comment\" value=\"%" PRIu64 "\">", p->edit);
    ts_buf_puts(b, "\n<p class=\"ts-replying\"");
    if (!p->parent)
        ts_buf_puts(b, " hidden");
    ts_buf_printf(
        b, ">Replying to <a href=\"#c%" PRIu64 "\">a comment</a> (<a class=\"ts-cancel\" href=\"",
        p->parent);
    thread_url(b, p->base, key, "");
    ts_buf_puts(b, "#reply\">cancel</a>)</p>\n");
    if (!p->edit) {
        ts_buf_puts(b, "<p><label>Name <input name=\"name\" required maxlength=\"64\" "
                       "autocomplete=\"name\" value=\"");
        ts_web_page_text(b, p->name);
        ts_buf_puts(b, "\"></label></p>\n<p><label>E-mail (optional, never shown) "
                       "<input name=\"email\" type=\"email\" maxlength=\"254\" "
                       "autocomplete=\"email\" value=\"");
        ts_web_page_text(b, p->email);
        ts_buf_puts(b, "\"></label></p>\n");
    }
    /* The honeypot: hidden by the stylesheet, filled only by bots. */
    ts_buf_puts(b, "<p class=\"ts-hp\" aria-hidden=\"true\"><label>Leave this empty "
                   "<input name=\"website\" tabindex=\"-1\" autocomplete=\"off\"></label></p>\n"
                   "<p><label>Comment<br><textarea name=\"body\" required rows=\"5\" "
                   "maxlength=\"16384\">");
    ts_web_page_text(b, p->body);
    ts_buf_puts(b, "</textarea></label></p>\n<p><button type=\"submit\">");
    ts_buf_puts(b, p->edit ? "Save" : "Post comment");
    ts_buf_puts(b, "</button></p>\n</form>\n</section>\n");
}

int ts_web_page_html(struct ts_buf *b, const struct ts_web_page *p)
{
    const Threadsync__Thread *t = p->thread;
    const char *title = t->title && t->title[0] ? t->title : t->key;
    if (!p->embed) {
        ts_buf_puts(b, "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n"
                       "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
                       "<title>");
        ts_web_page_text(b, title);
        ts_buf_puts(b, "</title>\n");
    }
    ts_buf_puts(b, "<link rel=\"stylesheet\" href=\"");
    ts_web_page_text(b, p->base);
    ts_buf_puts(b, "/static/threadsync.css\">\n<script src=\"");
    ts_web_page_text(b, p->base);
    ts_buf_puts(b, "/static/threadsync.js\" defer></script>\n");
    if (!p->embed) {
        ts_buf_puts(b, "</head>\n<body>\n<main>\n<h1>");
        int http = t->url && (strncasecmp(t->url, "http://", 7) == 0 ||
                              strncasecmp(t->url, "https://", 8) == 0);
        if (http) {
            ts_buf_puts(b, "<a href=\"");
            ts_web_page_text(b, t->url);
            ts_buf_puts(b, "\">");
        }
        ts_web_page_text(b, title);
        ts_buf_puts(b, http ? "</a></h1>\n" : "</h1>\n");
    }
    ts_buf_printf(b, "<section class=\"ts-thread\" id=\"t%" PRIu64 "\" data-key=\"", t->id);
    ts_web_page_text(b, t->key);
    ts_buf_printf(b, "\" data-seq=\"%" PRIu64 "\" data-events=\"", p->seq);
    thread_url(b, p->base, t->key, "/events");
    ts_buf_puts(b, "\">\n");
    struct page_ctx ctx = {p};
    struct ts_mirror_render_hooks hooks = {.arg = &ctx, .own = hook_own, .after = hook_after};
    struct ts_buf tree = TS_BUF_INIT;
    uint64_t visible = 0;
    int rc = ts_mirror_render_tree(&tree, p->comments, p->n, &hooks, &visible);
    ts_buf_printf(b,
                  "<h2 class=\"ts-count\"><span class=\"ts-n\">%" PRIu64 "</span> comment%s</h2>\n",
                  visible, visible == 1 ? "" : "s");
    if (rc == TS_OK)
        ts_buf_add(b, tree.p, tree.len);
    ts_buf_free(&tree);
    add_form(b, p);
    ts_buf_puts(b, "</section>\n");
    if (!p->embed)
        ts_buf_puts(b, "</main>\n</body>\n</html>\n");
    return rc != TS_OK || b->failed ? TS_E_NOMEM : TS_OK;
}

static const char *status_name(int status)
{
    const char *n = ts_digest_status_name(status);
    return n ? n : "UNSPECIFIED";
}

void ts_web_page_comment_json(struct ts_buf *b, const Threadsync__Comment *c)
{
    int vis = c->status == THREADSYNC__STATUS__VISIBLE;
    ts_buf_printf(b, "{\"id\":%" PRIu64 ",\"parent_id\":%" PRIu64 ",\"author_name\":", c->id,
                  c->parent_id);
    ts_web_page_jstr(b, vis ? c->author_name : "");
    ts_buf_puts(b, ",\"body\":");
    ts_web_page_jstr(b, vis ? c->body : "");
    ts_buf_printf(b,
                  ",\"created_at_ms\":%" PRId64 ",\"edited_at_ms\":%" PRId64
                  ",\"status\":\"%s\",\"version\":%" PRIu64 "}",
                  c->created_at_ms, c->edited_at_ms, status_name((int)c->status), c->version);
}

void ts_web_page_event(struct ts_buf *b, uint64_t seq, const Threadsync__Thread *t,
                       const Threadsync__Comment *c)
{
    ts_buf_printf(b, "id: %" PRIu64 "\nevent: comment\ndata: {\"key\":", seq);
    ts_web_page_jstr(b, t->key);
    ts_buf_printf(b, ",\"count\":%" PRIu32 ",\"locked\":%s,\"comment\":", t->comment_count,
                  t->locked ? "true" : "false");
    ts_web_page_comment_json(b, c);
    ts_buf_puts(b, "}\n\n");
}

static void rfc3339(struct ts_buf *b, int64_t ms)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    if (ms < 0 || !gmtime_r(&s, &tm)) {
        ts_buf_puts(b, "1970-01-01T00:00:00Z");
        return;
    }
    ts_buf_printf(b, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                  tm.tm_hour, tm.tm_min, tm.tm_sec);
}

int ts_web_page_atom(struct ts_buf *b, const Threadsync__Thread *t,
                     const Threadsync__Comment *const *comments, size_t n, size_t max,
                     const char *self)
{
    const char *title = t->title && t->title[0] ? t->title : t->key;
    int http = t->url &&
               (strncasecmp(t->url, "http://", 7) == 0 || strncasecmp(t->url, "https://", 8) == 0);
    int64_t updated = t->created_at_ms;
    for (size_t i = 0; i < n; i++)
        if (comments[i]->status == THREADSYNC__STATUS__VISIBLE) {
            int64_t u = comments[i]->edited_at_ms > comments[i]->created_at_ms
                            ? comments[i]->edited_at_ms
                            : comments[i]->created_at_ms;
            if (u > updated)
                updated = u;
        }
    ts_buf_printf(b,
                  "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
                  "<feed xmlns=\"http://www.w3.org/2005/Atom\">\n"
                  "<id>urn:threadsync:thread:%" PRIu64 "</id>\n<title>Comments on ",
                  t->id);
    ts_web_page_text(b, title);
    ts_buf_puts(b, "</title>\n<updated>");
    rfc3339(b, updated);
    ts_buf_puts(b, "</updated>\n");
    if (http) {
        ts_buf_puts(b, "<link rel=\"alternate\" href=\"");
        ts_web_page_text(b, t->url);
        ts_buf_puts(b, "\"/>\n");
    }
    if (self && self[0]) {
        ts_buf_puts(b, "<link rel=\"self\" href=\"");
        ts_web_page_text(b, self);
        ts_buf_puts(b, "\"/>\n");
    }
    size_t shown = 0;
    /* comments are in id order, i.e. creation order: newest last. */
    for (size_t i = n; i-- > 0 && shown < max;) {
        const Threadsync__Comment *c = comments[i];
        if (c->status != THREADSYNC__STATUS__VISIBLE)
            continue;
        shown++;
        ts_buf_printf(b, "<entry>\n<id>urn:threadsync:comment:%" PRIu64 "</id>\n<title>", c->id);
        ts_web_page_text(b, c->author_name);
        ts_buf_puts(b, "</title>\n<author><name>");
        ts_web_page_text(b, c->author_name);
        ts_buf_puts(b, "</name></author>\n<published>");
        rfc3339(b, c->created_at_ms);
        ts_buf_puts(b, "</published>\n<updated>");
        rfc3339(b, c->edited_at_ms ? c->edited_at_ms : c->created_at_ms);
        ts_buf_puts(b, "</updated>\n");
        if (http) {
            ts_buf_puts(b, "<link href=\"");
            ts_web_page_text(b, t->url);
            ts_buf_printf(b, "#c%" PRIu64 "\"/>\n", c->id);
        }
        ts_buf_puts(b, "<content type=\"text\">");
        ts_web_page_text(b, c->body);
        ts_buf_puts(b, "</content>\n</entry>\n");
    }
    ts_buf_puts(b, "</feed>\n");
    return b->failed ? TS_E_NOMEM : TS_OK;
}
