/*
 * ts_import_wxr: see ts_import_wxr.h.
 *
 * WXR puts an item's own fields (title, link, wp:post_id, wp:post_name,
 * wp:post_date_gmt) before its comments, which is what lets the thread
 * record go out just before the item's first comment and the comments go
 * out one by one. Every WXR version names its namespace
 * http://wordpress.org/export/1.N/, so the prefix is matched.
 */
#include "ts_import_wxr.h"

#include "threadsync.pb-c.h"
#include "ts_err.h"
#include "ts_import_text.h"
#include "ts_import_xml.h"

#include <stdlib.h>
#include <string.h>

#define WP_NS "http://wordpress.org/export/"
#define CONTENT_NS "http://purl.org/rss/1.0/modules/content/"

/* The fields kept, each a malloc'd copy of its element's text. */
enum { I_TITLE, I_LINK, I_POST_ID, I_POST_NAME, I_POST_DATE, I_N };
enum {
    C_ID,
    C_AUTHOR,
    C_EMAIL,
    C_URL,
    C_DATE_GMT,
    C_DATE,
    C_CONTENT,
    C_APPROVED,
    C_TYPE,
    C_PARENT,
    C_N
};

struct wxr {
    struct ts_import_xml x; /* first: expat's user data */
    const struct ts_import_wxr_opts *o;
    const struct ts_import_sink *sink;
    int depth_item, in_comment, saw_rss, thread_sent;
    char *item[I_N];
    char *com[C_N];
    unsigned long line, col;
};

static void clear(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i]);
        v[i] = NULL;
    }
}

static const char *val(char *const *v, int i)
{
    return v[i] ? v[i] : "";
}

static void on_start(void *arg, const XML_Char *name, const XML_Char **attrs)
{
    struct wxr *w = arg;
    (void)attrs;
    ts_import_xml_text_reset(&w->x);
    const char *l = ts_import_xml_local(name, "");
    if (l && !strcmp(l, "rss"))
        w->saw_rss = 1;
    if (l && !strcmp(l, "item")) {
        w->depth_item = 1;
        w->thread_sent = 0;
        clear(w->item, I_N);
    }
    const char *wp = ts_import_xml_local(name, WP_NS);
    if (wp && !strcmp(wp, "comment") && w->depth_item) {
        w->in_comment = 1;
        clear(w->com, C_N);
        ts_import_xml_where(&w->x, &w->line, &w->col);
    }
}

static void keep(struct wxr *w, char **slot)
{
    free(*slot);
    *slot = strdup(w->x.text);
    if (!*slot)
        ts_import_xml_stop(&w->x, TS_E_NOMEM);
}

static int send_thread(struct wxr *w, char *key, size_t size)
{
    const char *link = val(w->item, I_LINK);
    switch (w->o->key_from) {
    case TS_IMPORT_KEY_ID:
        snprintf(key, size, "%s", val(w->item, I_POST_ID));
        break;
    case TS_IMPORT_KEY_SLUG:
        snprintf(key, size, "%s", val(w->item, I_POST_NAME));
        break;
    default:
        ts_import_url_path(link, key, size);
        break;
    }
    ts_import_line(key);
    if (!key[0]) /* a post without the field asked for: its id */
        snprintf(key, size, "wp-%s", val(w->item, I_POST_ID));
    if (w->thread_sent)
        return 0;
    w->thread_sent = 1;
    char *title = strdup(val(w->item, I_TITLE));
    if (!title)
        return TS_E_NOMEM;
    ts_import_line(ts_import_html_to_text(title));
    struct ts_import_thread_rec t = {
        .key = key,
        .title = title,
        .url = link,
        .created_at_ms = ts_import_parse_date(val(w->item, I_POST_DATE)),
    };
    int rc = w->sink->thread(w->sink->arg, &t);
    free(title);
    return rc;
}

static int send_comment(struct wxr *w)
{
    const char *type = val(w->com, C_TYPE);
    if ((!strcmp(type, "pingback") || !strcmp(type, "trackback")) && !w->o->with_pingbacks) {
        w->sink->skip(w->sink->arg, "pingback or trackback (--with-pingbacks imports them)");
        return 0;
    }
    const char *ap = val(w->com, C_APPROVED);
    int status = THREADSYNC__STATUS__VISIBLE, removed = 0;
    if (!strcmp(ap, "0")) {
        status = THREADSYNC__STATUS__PENDING;
    } else if (!strcmp(ap, "spam")) {
        status = THREADSYNC__STATUS__HIDDEN;
        removed = 1;
    } else if (!strcmp(ap, "trash") || !strcmp(ap, "post-trashed")) {
        status = THREADSYNC__STATUS__DELETED;
        removed = 1;
    } else if (strcmp(ap, "1") != 0 && strcmp(ap, "approve") != 0) {
        w->sink->skip(w->sink->arg, "unknown wp:comment_approved value");
        return 0;
    }
    char key[512];
    int rc = send_thread(w, key, sizeof(key));
    if (rc)
        return rc;
    int64_t when = ts_import_parse_date(val(w->com, C_DATE_GMT));
    if (!when)
        when = ts_import_parse_date(val(w->com, C_DATE));
    const char *parent = val(w->com, C_PARENT);
    struct ts_import_comment_rec c = {
        .source_id = val(w->com, C_ID),
        .parent_source_id = strcmp(parent, "0") ? parent : "",
        .thread_key = key,
        .author_name = ts_import_line(w->com[C_AUTHOR] ? w->com[C_AUTHOR] : (char *)""),
        .author_email = ts_import_line(w->com[C_EMAIL] ? w->com[C_EMAIL] : (char *)""),
        .author_url = ts_import_line(w->com[C_URL] ? w->com[C_URL] : (char *)""),
        .body = w->com[C_CONTENT] ? ts_import_html_to_text(w->com[C_CONTENT]) : "",
        .created_at_ms = when,
        .status = status,
        .keep_if_replies = removed,
        .line = w->line,
        .column = w->col,
    };
    return w->sink->comment(w->sink->arg, &c);
}

static void on_end(void *arg, const XML_Char *name)
{
    struct wxr *w = arg;
    const char *l = ts_import_xml_local(name, "");
    if (l && !strcmp(l, "item")) {
        if (!w->thread_sent)
            w->sink->skip(w->sink->arg, "post or page without comments (no thread made)");
        w->depth_item = 0;
        return;
    }
    if (!w->depth_item)
        return;
    const char *wp = ts_import_xml_local(name, WP_NS);
    if (w->in_comment) {
        static const char *const names[C_N] = {
            "comment_id",       "comment_author", "comment_author_email", "comment_author_url",
            "comment_date_gmt", "comment_date",   "comment_content",      "comment_approved",
            "comment_type",     "comment_parent"};
        if (wp && !strcmp(wp, "comment")) {
            w->in_comment = 0;
            int rc = w->com[C_ID] ? send_comment(w) : 0;
            if (rc)
                ts_import_xml_stop(&w->x, rc);
            return;
        }
        for (int i = 0; wp && i < C_N; i++)
            if (!strcmp(wp, names[i]))
                keep(w, &w->com[i]);
        return;
    }
    if (l && !strcmp(l, "title"))
        keep(w, &w->item[I_TITLE]);
    else if (l && !strcmp(l, "link"))
        keep(w, &w->item[I_LINK]);
    else if (wp && !strcmp(wp, "post_id"))
        keep(w, &w->item[I_POST_ID]);
    else if (wp && !strcmp(wp, "post_name"))
        keep(w, &w->item[I_POST_NAME]);
    else if (wp && !strcmp(wp, "post_date_gmt"))
        keep(w, &w->item[I_POST_DATE]);
}

int ts_import_wxr_parse(FILE *in, const struct ts_import_wxr_opts *o,
                        const struct ts_import_sink *sink, char *err, size_t errlen)
{
    struct wxr w = {.o = o, .sink = sink};
    if (ts_import_xml_init(&w.x, &w, on_start, on_end, err, errlen) != TS_OK)
        return TS_E_NOMEM;
    int rc = ts_import_xml_run(&w.x, in);
    if (rc == TS_OK && !w.saw_rss) {
        snprintf(err, errlen, "line 1, column 1: not a WordPress export (no <rss> element)");
        rc = TS_E_INVALID_ARGUMENT;
    }
    clear(w.item, I_N);
    clear(w.com, C_N);
    ts_import_xml_free(&w.x);
    return rc;
}
