/*
 * ts_import_disqus: see ts_import_disqus.h.
 *
 * A thread is told to the sink when the first post that names it is read,
 * so threads without posts cost the sink nothing.
 */
#include "ts_import_disqus.h"

#include "threadsync.pb-c.h"
#include "ts_err.h"
#include "ts_import_text.h"
#include "ts_import_xml.h"
#include "ts_strmap.h"

#include <stdlib.h>
#include <string.h>

#define DSQ_NS "http://disqus.com|"
#define DSQ_INT "http://disqus.com/disqus-internals|id"

struct dthread {
    char *key, *title, *url;
    int64_t created;
    int sent;
};

enum { P_MESSAGE, P_CREATED, P_DELETED, P_SPAM, P_NAME, P_EMAIL, P_N };

struct dsq {
    struct ts_import_xml x; /* first: expat's user data */
    const struct ts_import_disqus_opts *o;
    const struct ts_import_sink *sink;
    struct ts_strmap *threads; /* dsq:id -> struct dthread */
    int saw_root;
    int in_thread, in_post, in_author;
    char *id; /* the current thread's or post's dsq:id */
    char *ref_thread, *ref_parent;
    char *link, *title, *created;
    char *post[P_N];
    unsigned long line, col;
};

static const char *dsq_id(const XML_Char **attrs)
{
    for (size_t i = 0; attrs[i]; i += 2)
        if (!strcmp(attrs[i], DSQ_INT))
            return attrs[i + 1];
    return NULL;
}

static void set(struct dsq *d, char **slot, const char *v)
{
    free(*slot);
    *slot = v ? strdup(v) : NULL;
    if (v && !*slot)
        ts_import_xml_stop(&d->x, TS_E_NOMEM);
}

static void on_start(void *arg, const XML_Char *name, const XML_Char **attrs)
{
    struct dsq *d = arg;
    ts_import_xml_text_reset(&d->x);
    if (strncmp(name, DSQ_NS, strlen(DSQ_NS)) != 0)
        return;
    const char *l = name + strlen(DSQ_NS);
    if (!strcmp(l, "disqus")) {
        d->saw_root = 1;
    } else if (!strcmp(l, "thread")) {
        if (d->in_post) {
            set(d, &d->ref_thread, dsq_id(attrs));
        } else {
            d->in_thread = 1;
            set(d, &d->id, dsq_id(attrs));
            set(d, &d->link, NULL);
            set(d, &d->title, NULL);
            set(d, &d->created, NULL);
        }
    } else if (!strcmp(l, "post")) {
        d->in_post = 1;
        set(d, &d->id, dsq_id(attrs));
        set(d, &d->ref_thread, NULL);
        set(d, &d->ref_parent, NULL);
        for (int i = 0; i < P_N; i++)
            set(d, &d->post[i], NULL);
        ts_import_xml_where(&d->x, &d->line, &d->col);
    } else if (!strcmp(l, "parent") && d->in_post) {
        set(d, &d->ref_parent, dsq_id(attrs));
    } else if (!strcmp(l, "author")) {
        d->in_author = 1;
    }
}

static void thread_key(const struct dsq *d, const char *id, const char *link, char *key,
                       size_t size)
{
    if (d->o->key_from == TS_IMPORT_KEY_ID) {
        snprintf(key, size, "%s", id);
        return;
    }
    ts_import_url_path(link, key, size);
    if (d->o->key_from == TS_IMPORT_KEY_SLUG) {
        size_t n = strcspn(key, "?");
        key[n] = '\0';
        while (n && key[n - 1] == '/')
            key[--n] = '\0';
        const char *slash = strrchr(key, '/');
        if (slash)
            memmove(key, slash + 1, strlen(slash + 1) + 1);
    }
    ts_import_line(key);
    if (!key[0])
        snprintf(key, size, "disqus-%s", id);
}

static int end_thread(struct dsq *d)
{
    if (!d->id)
        return 0;
    struct dthread *t = calloc(1, sizeof(*t));
    char key[512];
    thread_key(d, d->id, d->link ? d->link : "", key, sizeof(key));
    if (!t || !(t->key = strdup(key)) || !(t->title = strdup(d->title ? d->title : "")) ||
        !(t->url = strdup(d->link ? d->link : ""))) {
        if (t) {
            free(t->key);
            free(t->title);
        }
        free(t);
        return TS_E_NOMEM;
    }
    ts_import_line(ts_import_html_to_text(t->title));
    ts_import_line(t->url);
    t->created = ts_import_parse_date(d->created);
    void *old;
    if (ts_strmap_get(d->threads, d->id, &old) && old) {
        struct dthread *o = old;
        free(o->key);
        free(o->title);
        free(o->url);
        free(o);
    }
    return ts_strmap_put(d->threads, d->id, t);
}

static int is_true(const char *v)
{
    return v && !strcmp(v, "true");
}

static int end_post(struct dsq *d)
{
    void *tv = NULL;
    if (!d->id || !d->ref_thread || !ts_strmap_get(d->threads, d->ref_thread, &tv) || !tv) {
        d->sink->skip(d->sink->arg, "post whose <thread dsq:id> names no thread of the file");
        return 0;
    }
    struct dthread *t = tv;
    if (!t->sent) {
        struct ts_import_thread_rec tr = {
            .key = t->key, .title = t->title, .url = t->url, .created_at_ms = t->created};
        int rc = d->sink->thread(d->sink->arg, &tr);
        if (rc)
            return rc;
        t->sent = 1;
    }
    int deleted = is_true(d->post[P_DELETED]), spam = is_true(d->post[P_SPAM]);
    char empty[1] = "";
    struct ts_import_comment_rec c = {
        .source_id = d->id,
        .parent_source_id = d->ref_parent ? d->ref_parent : "",
        .thread_key = t->key,
        .author_name = ts_import_line(d->post[P_NAME] ? d->post[P_NAME] : empty),
        .author_email = ts_import_line(d->post[P_EMAIL] ? d->post[P_EMAIL] : empty),
        .author_url = "",
        .body = d->post[P_MESSAGE] ? ts_import_html_to_text(d->post[P_MESSAGE]) : "",
        .created_at_ms = ts_import_parse_date(d->post[P_CREATED]),
        .status = deleted ? THREADSYNC__STATUS__DELETED
                  : spam  ? THREADSYNC__STATUS__HIDDEN
                          : THREADSYNC__STATUS__VISIBLE,
        .keep_if_replies = deleted || spam,
        .line = d->line,
        .column = d->col,
    };
    return d->sink->comment(d->sink->arg, &c);
}

static void on_end(void *arg, const XML_Char *name)
{
    struct dsq *d = arg;
    if (strncmp(name, DSQ_NS, strlen(DSQ_NS)) != 0)
        return;
    const char *l = name + strlen(DSQ_NS);
    const char *text = d->x.text;
    int rc = 0;
    if (!strcmp(l, "author")) {
        d->in_author = 0;
    } else if (d->in_post) {
        if (!strcmp(l, "post")) {
            d->in_post = 0;
            rc = end_post(d);
        } else if (!strcmp(l, "message")) {
            set(d, &d->post[P_MESSAGE], text);
        } else if (!strcmp(l, "createdAt")) {
            set(d, &d->post[P_CREATED], text);
        } else if (!strcmp(l, "isDeleted")) {
            set(d, &d->post[P_DELETED], text);
        } else if (!strcmp(l, "isSpam")) {
            set(d, &d->post[P_SPAM], text);
        } else if (d->in_author && !strcmp(l, "name")) {
            set(d, &d->post[P_NAME], text);
        } else if (d->in_author && !strcmp(l, "email")) {
            set(d, &d->post[P_EMAIL], text);
        }
    } else if (d->in_thread) {
        if (!strcmp(l, "thread")) {
            d->in_thread = 0;
            rc = end_thread(d);
        } else if (!strcmp(l, "link")) {
            set(d, &d->link, text);
        } else if (!strcmp(l, "title")) {
            set(d, &d->title, text);
        } else if (!strcmp(l, "createdAt") && !d->in_author) {
            set(d, &d->created, text);
        }
    }
    if (rc)
        ts_import_xml_stop(&d->x, rc);
}

static void free_thread(void *arg, const char *key, void *value)
{
    (void)arg;
    (void)key;
    struct dthread *t = value;
    if (!t)
        return;
    free(t->key);
    free(t->title);
    free(t->url);
    free(t);
}

int ts_import_disqus_parse(FILE *in, const struct ts_import_disqus_opts *o,
                           const struct ts_import_sink *sink, char *err, size_t errlen)
{
    struct dsq d = {.o = o, .sink = sink};
    d.threads = ts_strmap_new();
    if (!d.threads || ts_import_xml_init(&d.x, &d, on_start, on_end, err, errlen) != TS_OK) {
        ts_strmap_free(d.threads);
        return TS_E_NOMEM;
    }
    int rc = ts_import_xml_run(&d.x, in);
    if (rc == TS_OK && !d.saw_root) {
        snprintf(err, errlen, "line 1, column 1: not a Disqus export (no <disqus> element)");
        rc = TS_E_INVALID_ARGUMENT;
    }
    ts_strmap_each(d.threads, free_thread, NULL);
    ts_strmap_free(d.threads);
    free(d.id);
    free(d.ref_thread);
    free(d.ref_parent);
    free(d.link);
    free(d.title);
    free(d.created);
    for (int i = 0; i < P_N; i++)
        free(d.post[i]);
    ts_import_xml_free(&d.x);
    return rc;
}
