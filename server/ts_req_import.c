/*
 * ts_req_import: see ts_req_import.h.
 *
 * Validation refuses the whole request on the first bad field (nothing of
 * a bad batch reaches the log), naming the field as "comments.<field>" or
 * "threads.<field>" and, in the message, the comment's position and source
 * id, so an importer can say which record of its file is at fault.
 */
#include "ts_req_import.h"

#include "ts_err.h"
#include "ts_req_write.h"
#include "ts_server_int.h"
#include "ts_session_int.h"
#include "ts_store.h"
#include "ts_valid.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t slen(const char *s)
{
    return s ? strlen(s) : 0;
}

/* A source or source id: 1..max bytes (0 allowed when empty_ok) of
 * single-line text. */
static int valid_name(const char *s, size_t max, int empty_ok)
{
    size_t n = slen(s);
    return (n || empty_ok) && n <= max && ts_valid_text(s, n, 0);
}

struct bad {
    char field[48];
    char message[320];
};

/* Refuses record i of list (its name: a key or source id) for field. */
static int bad_field(struct bad *b, const char *list, size_t i, const char *name, const char *field,
                     const struct ts_valid_err *e, const char *why)
{
    snprintf(b->field, sizeof(b->field), "%s.%s", list, e ? e->field : field);
    snprintf(b->message, sizeof(b->message), "%s %zu (%.*s): %s", list, i, 64, name,
             e ? e->message : why);
    return TS_E_INVALID_ARGUMENT;
}

static int check_thread(const Threadsync__ImportThread *t, size_t i, struct bad *b)
{
    struct ts_valid_err e;
    if (ts_valid_field(TS_VALID_THREAD_KEY, t->key, slen(t->key), &e) != TS_OK ||
        ts_valid_field(TS_VALID_TITLE, t->title, slen(t->title), &e) != TS_OK ||
        ts_valid_field(TS_VALID_URL, t->url, slen(t->url), &e) != TS_OK)
        return bad_field(b, "threads", i, t->key ? t->key : "", NULL, &e, NULL);
    if (!valid_name(t->moderated_by, TS_TOKEN_NAME_MAX, 1) || t->created_at_ms < 0)
        return bad_field(b, "threads", i, t->key ? t->key : "", "created_at_ms", NULL,
                         "moderated_by or created_at_ms out of range");
    return TS_OK;
}

static int check_comment(const Threadsync__ImportComment *c, size_t i, struct bad *b)
{
    const char *sid = c->source_id ? c->source_id : "";
    if (!valid_name(c->source_id, TS_STORE_IMPORT_SOURCE_ID_MAX, 0))
        return bad_field(b, "comments", i, "", "source_id", NULL,
                         "source_id must be 1 to 128 bytes of single-line text");
    if (!valid_name(c->parent_source_id, TS_STORE_IMPORT_SOURCE_ID_MAX, 1))
        return bad_field(b, "comments", i, sid, "parent_source_id", NULL,
                         "parent_source_id must be 0 to 128 bytes of single-line text");
    struct ts_valid_err e;
    /* A tombstone (DELETED) may come without name and body, as the store
     * keeps a deleted comment. */
    int tomb = c->status == THREADSYNC__STATUS__DELETED;
    if (ts_valid_field(TS_VALID_THREAD_KEY, c->thread_key, slen(c->thread_key), &e) != TS_OK ||
        ((!tomb || slen(c->author_name)) &&
         ts_valid_field(TS_VALID_AUTHOR_NAME, c->author_name, slen(c->author_name), &e) != TS_OK) ||
        ts_valid_field(TS_VALID_AUTHOR_EMAIL, c->author_email, slen(c->author_email), &e) !=
            TS_OK ||
        ts_valid_field(TS_VALID_URL, c->author_url, slen(c->author_url), &e) != TS_OK ||
        ((!tomb || slen(c->body)) &&
         ts_valid_field(TS_VALID_BODY, c->body, slen(c->body), &e) != TS_OK))
        return bad_field(b, "comments", i, sid, NULL, &e, NULL);
    if (c->status < THREADSYNC__STATUS__VISIBLE || c->status > THREADSYNC__STATUS__DELETED)
        return bad_field(b, "comments", i, sid, "status", NULL,
                         "status must be VISIBLE, PENDING, HIDDEN or DELETED");
    if (c->created_at_ms <= 0 || c->edited_at_ms < 0)
        return bad_field(b, "comments", i, sid, "created_at_ms", NULL,
                         "created_at_ms must be positive (edited_at_ms 0 or positive)");
    if (!valid_name(c->moderated_by, TS_TOKEN_NAME_MAX, 1))
        return bad_field(b, "comments", i, sid, "moderated_by", NULL,
                         "moderated_by is 0 to 64 bytes");
    return TS_OK;
}

static int check_import(const Threadsync__Import *im, struct bad *b)
{
    size_t n = slen(im->source);
    if (!n || n > TS_STORE_IMPORT_SOURCE_MAX || !ts_valid_text(im->source, n, 0)) {
        snprintf(b->field, sizeof(b->field), "source");
        snprintf(b->message, sizeof(b->message), "source must be 1 to 64 bytes, e.g. wordpress");
        return TS_E_INVALID_ARGUMENT;
    }
    if (!im->n_comments || im->n_comments > TS_STORE_IMPORT_COMMENTS_MAX ||
        im->n_threads > TS_STORE_IMPORT_THREADS_MAX) {
        snprintf(b->field, sizeof(b->field), "comments");
        snprintf(b->message, sizeof(b->message),
                 "an Import carries 1 to 1000 comments and at most 1000 threads");
        return TS_E_INVALID_ARGUMENT;
    }
    for (size_t i = 0; i < im->n_threads; i++)
        if (check_thread(im->threads[i], i, b) != TS_OK)
            return TS_E_INVALID_ARGUMENT;
    for (size_t i = 0; i < im->n_comments; i++)
        if (check_comment(im->comments[i], i, b) != TS_OK)
            return TS_E_INVALID_ARGUMENT;
    return TS_OK;
}

static void answer_import(struct ts_session *s, const struct ts_req_write *w,
                          const struct ts_store_result *res)
{
    const struct ts_store_import_item *items;
    size_t n;
    ts_store_import_outcome(s->srv->store, &items, &n);
    Threadsync__ImportItem *iv = calloc(n ? n : 1, sizeof(*iv));
    Threadsync__ImportItem **ip = calloc(n ? n : 1, sizeof(*ip));
    if (!iv || !ip) {
        free(iv);
        free(ip);
        ts__session_error(s, w->wait.request_id, TS_E_UNAVAILABLE, NULL,
                          "out of memory (the import was applied: send it again to see it)");
        return;
    }
    Threadsync__ImportResult ir = THREADSYNC__IMPORT_RESULT__INIT;
    for (size_t i = 0; i < n; i++) {
        threadsync__import_item__init(&iv[i]);
        iv[i].outcome = (Threadsync__ImportOutcome)items[i].outcome;
        iv[i].comment_id = items[i].comment_id;
        iv[i].seq = items[i].seq;
        iv[i].error = (Threadsync__ErrorCode)items[i].error;
        iv[i].message = (char *)(items[i].message ? items[i].message : "");
        ip[i] = &iv[i];
        if (items[i].outcome == THREADSYNC__IMPORT_OUTCOME__IMPORT_CREATED)
            ir.created++;
        else if (items[i].outcome == THREADSYNC__IMPORT_OUTCOME__IMPORT_EXISTING)
            ir.existing++;
        else
            ir.refused++;
    }
    ir.comments = ip;
    ir.n_comments = n;
    ir.seq = res->seq;
    ir.threads_created = res->threads_created;
    Threadsync__Result r = THREADSYNC__RESULT__INIT;
    r.request_id = w->wait.request_id;
    r.body_case = THREADSYNC__RESULT__BODY_IMPORT;
    r.import = &ir;
    ts__session_result(s, &r);
    free(iv);
    free(ip);
}

void ts_req_import(struct ts_session *s, const Threadsync__Frame *f)
{
    const Threadsync__Import *im = f->import;
    struct bad b;
    if (check_import(im, &b) != TS_OK) {
        ts__session_error(s, im->request_id, TS_E_INVALID_ARGUMENT, b.field, b.message);
        return;
    }
    Threadsync__Import copy = *im;
    copy.request_id = 0;
    Threadsync__State__Command cmd = THREADSYNC__STATE__COMMAND__INIT;
    cmd.op_case = THREADSYNC__STATE__COMMAND__OP_IMPORT;
    cmd.import = &copy;
    ts_req_write_propose(s, im->request_id, &cmd, NULL, answer_import);
}
