/*
 * Integration: moderation, authors' edits, tokens and abuse limits on real
 * threadsyncd processes, spoken to over real TLS (raw frames) and through
 * the threadsync CLI.
 *
 * What a reader may see is checked on the bytes: every frame a reader's
 * connection receives is searched for the text it must never carry.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ts_check_main.h"
#include "ts_err.h"
#include "ts_frame.h"
#include "ts_testnode.h"

static struct ts_testnode node;

static void start_node(void)
{
    ck_assert_int_eq(ts_testnode_start(&node, NULL), TS_OK);
}

static void stop_node(void)
{
    ts_testnode_stop(&node);
}

/* Replaces the fixture's node by one started with extra flags. The first
 * node's exit status is not checked: a SIGTERM that lands between its
 * address file and its signal handlers (threadsyncd installs them after
 * the start) kills it by default action, which says nothing about it. */
static void restart_with(const char *const *extra)
{
    ts_testnode_cleanup(&node);
    ck_assert_int_eq(ts_testnode_start(&node, extra), TS_OK);
}

/* 1 when the frame's encoding holds needle anywhere (any string field). */
static int frame_has(const Threadsync__Frame *f, const char *needle)
{
    uint8_t *buf;
    size_t len;
    ck_assert_int_eq(ts_frame_encode(f, &buf, &len), TS_OK);
    int found = memmem(buf, len, needle, strlen(needle)) != NULL;
    free(buf);
    return found;
}

/* Sends f (a request with request_id rid) and returns its answer, a Result
 * or an Error; pushes and Pings in between are dropped. */
static Threadsync__Frame *request(struct ts_raw *r, const Threadsync__Frame *f, uint64_t rid)
{
    ck_assert_int_eq(ts_raw_send_frame(r, f), TS_OK);
    for (;;) {
        Threadsync__Frame *in;
        ck_assert_int_eq(ts_raw_recv_nonping(r, 10000, &in), TS_OK);
        if (in->msg_case == THREADSYNC__FRAME__MSG_RESULT && in->result->request_id == rid)
            return in;
        if (in->msg_case == THREADSYNC__FRAME__MSG_ERROR &&
            (in->error->request_id == rid || in->error->request_id == 0))
            return in;
        ts_frame_free(in);
    }
}

static int error_code(const Threadsync__Frame *in)
{
    return in->msg_case == THREADSYNC__FRAME__MSG_ERROR ? (int)in->error->code : TS_OK;
}

static Threadsync__Frame *post_frame(struct ts_raw *r, uint64_t rid, const char *thread,
                                     const char *name, const char *email, const char *body)
{
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Post p = THREADSYNC__POST__INIT;
    char key[64];
    snprintf(key, sizeof(key), "mod-%d-%llu-%llu", (int)getpid(), (unsigned long long)rid,
             (unsigned long long)ts_test_now_ms());
    p.request_id = rid;
    p.idempotency_key = key;
    p.thread_key = (char *)thread;
    p.author_name = (char *)name;
    p.author_email = (char *)(email ? email : "");
    p.body = (char *)body;
    f.msg_case = THREADSYNC__FRAME__MSG_POST;
    f.post = &p;
    return request(r, &f, rid);
}

/* Posts and returns the new comment's id; its edit key into key (33 bytes)
 * and status into *status when non-NULL. */
static uint64_t post_ok(struct ts_raw *r, uint64_t rid, const char *thread, const char *name,
                        const char *email, const char *body, char *key, int *status)
{
    Threadsync__Frame *in = post_frame(r, rid, thread, name, email, body);
    ck_assert_msg(in->msg_case == THREADSYNC__FRAME__MSG_RESULT, "post refused: %s",
                  in->msg_case == THREADSYNC__FRAME__MSG_ERROR ? ts_err_name(in->error->code)
                                                               : "?");
    const Threadsync__PostResult *pr = in->result->post;
    uint64_t id = pr->comment_id;
    ck_assert_uint_eq(strlen(pr->edit_key), 32);
    if (key)
        snprintf(key, 33, "%s", pr->edit_key);
    if (status)
        *status = pr->status;
    ts_frame_free(in);
    return id;
}

static Threadsync__Frame *moderate(struct ts_raw *r, uint64_t rid, uint64_t id,
                                   Threadsync__ModerationAction action)
{
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Moderate m = THREADSYNC__MODERATE__INIT;
    m.request_id = rid;
    m.comment_id = id;
    m.action = action;
    f.msg_case = THREADSYNC__FRAME__MSG_MODERATE;
    f.moderate = &m;
    return request(r, &f, rid);
}

static Threadsync__Frame *edit(struct ts_raw *r, uint64_t rid, uint64_t id, const char *key,
                               const char *body)
{
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Edit m = THREADSYNC__EDIT__INIT;
    m.request_id = rid;
    m.comment_id = id;
    m.edit_key = (char *)(key ? key : "");
    m.body = (char *)body;
    f.msg_case = THREADSYNC__FRAME__MSG_EDIT;
    f.edit = &m;
    return request(r, &f, rid);
}

static Threadsync__Frame *delete_comment(struct ts_raw *r, uint64_t rid, uint64_t id,
                                         const char *key)
{
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Delete m = THREADSYNC__DELETE__INIT;
    m.request_id = rid;
    m.comment_id = id;
    m.edit_key = (char *)(key ? key : "");
    f.msg_case = THREADSYNC__FRAME__MSG_DELETE;
    f.delete_ = &m;
    return request(r, &f, rid);
}

static Threadsync__Frame *thread_action(struct ts_raw *r, uint64_t rid, const char *key,
                                        Threadsync__ThreadAction action)
{
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__ModerateThread m = THREADSYNC__MODERATE_THREAD__INIT;
    m.request_id = rid;
    m.thread_key = (char *)key;
    m.action = action;
    f.msg_case = THREADSYNC__FRAME__MSG_MODERATE_THREAD;
    f.moderate_thread = &m;
    return request(r, &f, rid);
}

static Threadsync__Frame *pending(struct ts_raw *r, uint64_t rid, const char *thread)
{
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__PendingQueue m = THREADSYNC__PENDING_QUEUE__INIT;
    m.request_id = rid;
    m.thread_key = (char *)(thread ? thread : "");
    f.msg_case = THREADSYNC__FRAME__MSG_PENDING_QUEUE;
    f.pending_queue = &m;
    return request(r, &f, rid);
}

static Threadsync__Frame *ban(struct ts_raw *r, uint64_t rid, const char *author,
                              uint64_t duration_ms)
{
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__BanAuthor m = THREADSYNC__BAN_AUTHOR__INIT;
    m.request_id = rid;
    m.author = (char *)author;
    m.duration_ms = duration_ms;
    f.msg_case = THREADSYNC__FRAME__MSG_BAN_AUTHOR;
    f.ban_author = &m;
    return request(r, &f, rid);
}

static Threadsync__Frame *token_add(struct ts_raw *r, uint64_t rid, const char *name, int role)
{
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__TokenAdd m = THREADSYNC__TOKEN_ADD__INIT;
    m.request_id = rid;
    m.name = (char *)name;
    m.role = (Threadsync__Role)role;
    f.msg_case = THREADSYNC__FRAME__MSG_TOKEN_ADD;
    f.token_add = &m;
    return request(r, &f, rid);
}

static Threadsync__Frame *token_list(struct ts_raw *r, uint64_t rid)
{
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__TokenList m = THREADSYNC__TOKEN_LIST__INIT;
    m.request_id = rid;
    f.msg_case = THREADSYNC__FRAME__MSG_TOKEN_LIST;
    f.token_list = &m;
    return request(r, &f, rid);
}

static Threadsync__Frame *token_revoke(struct ts_raw *r, uint64_t rid, const char *name)
{
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__TokenRevoke m = THREADSYNC__TOKEN_REVOKE__INIT;
    m.request_id = rid;
    m.name = (char *)name;
    f.msg_case = THREADSYNC__FRAME__MSG_TOKEN_REVOKE;
    f.token_revoke = &m;
    return request(r, &f, rid);
}

static Threadsync__Frame *get_thread(struct ts_raw *r, uint64_t rid, const char *key)
{
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Get g = THREADSYNC__GET__INIT;
    g.request_id = rid;
    g.thread_key = (char *)key;
    f.msg_case = THREADSYNC__FRAME__MSG_GET;
    f.get = &g;
    return request(r, &f, rid);
}

/* Expects the answer to be an Error with code (and field when non-NULL);
 * frees it. */
static void expect_refused(Threadsync__Frame *in, int code, const char *field)
{
    ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_ERROR);
    ck_assert_str_eq(ts_err_name(in->error->code), ts_err_name(code));
    if (field)
        ck_assert_str_eq(in->error->field, field);
    ts_frame_free(in);
}

/* Expects a ChangeResult; returns the frame (caller frees). */
static Threadsync__Frame *expect_change(Threadsync__Frame *in)
{
    ck_assert_msg(in->msg_case == THREADSYNC__FRAME__MSG_RESULT, "refused: %s field=%s",
                  in->msg_case == THREADSYNC__FRAME__MSG_ERROR ? ts_err_name(in->error->code) : "?",
                  in->msg_case == THREADSYNC__FRAME__MSG_ERROR ? in->error->field : "");
    ck_assert_int_eq(in->result->body_case, THREADSYNC__RESULT__BODY_CHANGE);
    return in;
}

static void change_ok(Threadsync__Frame *in)
{
    ts_frame_free(expect_change(in));
}

/* ---- subscriptions ---- */

struct watcher {
    struct ts_raw *r;
    const char *forbidden; /* text no frame may carry, or NULL */
    int frames;
};

static void watch_start(struct watcher *w, const char *token, uint64_t since, const char *forbidden)
{
    w->r = ts_testnode_subscriber(&node, token, since, NULL);
    w->forbidden = forbidden;
    w->frames = 0;
}

/* The next pushed frame, checked against the forbidden text. */
static int watch_next(struct watcher *w, int timeout_ms, Threadsync__Frame **out)
{
    int rc = ts_raw_recv_nonping(w->r, timeout_ms, out);
    if (rc == TS_OK) {
        w->frames++;
        if (w->forbidden)
            ck_assert_msg(!frame_has(*out, w->forbidden), "a reader received \"%s\"", w->forbidden);
    }
    return rc;
}

/* Waits for the event that carries comment id at version; *ev points into
 * the returned frame (caller frees it). */
static Threadsync__Frame *watch_comment(struct watcher *w, uint64_t id, uint64_t version,
                                        Threadsync__Event **ev)
{
    uint64_t deadline = ts_test_now_ms() + 5000;
    for (;;) {
        uint64_t now = ts_test_now_ms();
        ck_assert_msg(now < deadline, "no event for comment %llu v%llu", (unsigned long long)id,
                      (unsigned long long)version);
        Threadsync__Frame *in;
        ck_assert_int_eq(watch_next(w, (int)(deadline - now), &in), TS_OK);
        if (in->msg_case == THREADSYNC__FRAME__MSG_EVENTS) {
            for (size_t i = 0; i < in->events->n_events; i++) {
                Threadsync__Event *e = in->events->events[i];
                if (e->comment && e->comment->id == id && e->comment->version == version) {
                    *ev = e;
                    return in;
                }
            }
        }
        ts_frame_free(in);
    }
}

/* Reads whatever arrives within ms (checking it), then stops. */
static void watch_drain(struct watcher *w, int ms)
{
    Threadsync__Frame *in;
    while (watch_next(w, ms, &in) == TS_OK)
        ts_frame_free(in);
}

/* ---- tests ---- */

START_TEST(test_roles_are_enforced)
{
    struct ts_raw *p = ts_testnode_connect_ok(&node, node.poster_token);
    char key[33];
    uint64_t id = post_ok(p, 1, "mod/roles", "Ann", NULL, "keep me", key, NULL);
    struct ts_raw *rd = ts_testnode_connect_ok(&node, node.reader_token);
    expect_refused(moderate(rd, 2, id, THREADSYNC__MODERATION_ACTION__HIDE), TS_E_FORBIDDEN, NULL);
    expect_refused(thread_action(rd, 3, "mod/roles", THREADSYNC__THREAD_ACTION__THREAD_LOCK),
                   TS_E_FORBIDDEN, NULL);
    expect_refused(pending(rd, 4, NULL), TS_E_FORBIDDEN, NULL);
    expect_refused(ban(rd, 5, "Ann", 60000), TS_E_FORBIDDEN, NULL);
    expect_refused(edit(rd, 6, id, NULL, "reader edit"), TS_E_FORBIDDEN, NULL);
    /* the edit key is not enough for a reader: authors' edits need POSTER */
    expect_refused(edit(rd, 7, id, key, "reader edit"), TS_E_FORBIDDEN, NULL);
    expect_refused(token_list(rd, 8), TS_E_FORBIDDEN, NULL);
    /* a poster neither moderates nor deletes without the key */
    expect_refused(moderate(p, 9, id, THREADSYNC__MODERATION_ACTION__DELETE), TS_E_FORBIDDEN, NULL);
    expect_refused(delete_comment(p, 10, id, NULL), TS_E_FORBIDDEN, NULL);
    /* a moderator does not manage tokens */
    struct ts_raw *m = ts_testnode_connect_ok(&node, node.moderator_token);
    expect_refused(token_add(m, 11, "sneaky", THREADSYNC__ROLE__ADMIN), TS_E_FORBIDDEN, NULL);
    expect_refused(token_list(m, 12), TS_E_FORBIDDEN, NULL);
    expect_refused(token_revoke(m, 13, "test-admin"), TS_E_FORBIDDEN, NULL);
    /* the connections stay open, and nothing changed */
    Threadsync__Frame *in = get_thread(rd, 14, "mod/roles");
    ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_RESULT);
    const Threadsync__GetResult *g = in->result->get;
    ck_assert(!g->thread->locked);
    ck_assert_uint_eq(g->thread->comment_count, 1);
    ck_assert_int_eq(g->comments[0]->status, THREADSYNC__STATUS__VISIBLE);
    ck_assert_str_eq(g->comments[0]->body, "keep me");
    ck_assert_uint_eq(g->comments[0]->version, 1);
    ts_frame_free(in);
    /* nonsense from an allowed role */
    expect_refused(moderate(m, 15, id, (Threadsync__ModerationAction)9), TS_E_INVALID_ARGUMENT,
                   "action");
    expect_refused(moderate(m, 16, 999999, THREADSYNC__MODERATION_ACTION__HIDE), TS_E_NOT_FOUND,
                   "comment_id");
    /* asking for the state already there changes nothing */
    in = expect_change(moderate(m, 17, id, THREADSYNC__MODERATION_ACTION__UNHIDE));
    ck_assert(!in->result->change->changed);
    ck_assert_uint_eq(in->result->change->seq, 0);
    ck_assert_uint_eq(in->result->change->comment->version, 1);
    ts_frame_free(in);
    /* a HIDDEN comment is unhidden, not approved */
    change_ok(moderate(m, 18, id, THREADSYNC__MODERATION_ACTION__HIDE));
    expect_refused(moderate(m, 19, id, THREADSYNC__MODERATION_ACTION__APPROVE),
                   TS_E_INVALID_ARGUMENT, "status");
    ts_raw_close(m);
    ts_raw_close(rd);
    ts_raw_close(p);
}
END_TEST

START_TEST(test_edit_key_scope_and_window)
{
    const char *extra[] = {"--edit-window-ms", "2500", NULL};
    restart_with(extra);
    struct ts_raw *p = ts_testnode_connect_ok(&node, node.poster_token);
    char ka[33], kb[33];
    uint64_t a = post_ok(p, 1, "mod/edit", "Ann", NULL, "a words", ka, NULL);
    uint64_t b = post_ok(p, 2, "mod/edit", "Bob", NULL, "b words", kb, NULL);
    uint64_t acked = ts_test_now_ms(); /* both command times are before this */
    ck_assert_str_ne(ka, kb);
    /* a key opens its own comment only */
    expect_refused(edit(p, 3, a, kb, "hijack"), TS_E_FORBIDDEN, "edit_key");
    expect_refused(delete_comment(p, 4, b, ka), TS_E_FORBIDDEN, "edit_key");
    expect_refused(edit(p, 5, a, "not-a-key", "hijack"), TS_E_FORBIDDEN, "edit_key");
    /* the right key, from any connection that may post */
    struct ts_raw *other = ts_testnode_connect_ok(&node, node.admin_token);
    Threadsync__Frame *in = expect_change(edit(other, 6, a, ka, "a words, fixed"));
    const Threadsync__Comment *c = in->result->change->comment;
    ck_assert(in->result->change->changed);
    ck_assert_str_eq(c->body, "a words, fixed");
    ck_assert_int_gt(c->edited_at_ms, 0);
    ck_assert_uint_eq(c->version, 2);
    ck_assert_uint_gt(in->result->change->thread->version, 2);
    ts_frame_free(in);
    ts_raw_close(other);
    /* after the window: letting time pass is the point (the node times the
     * window from the post's command time, at most `acked`), there is no
     * condition to poll */
    uint64_t now = ts_test_now_ms();
    if (now < acked + 2600)
        usleep((useconds_t)(acked + 2600 - now) * 1000);
    expect_refused(edit(p, 7, a, ka, "too late"), TS_E_FORBIDDEN, "edit_key");
    expect_refused(delete_comment(p, 8, b, kb), TS_E_FORBIDDEN, "edit_key");
    /* a moderator edits at any time */
    struct ts_raw *m = ts_testnode_connect_ok(&node, node.moderator_token);
    in = expect_change(edit(m, 9, b, NULL, "moderated words"));
    ck_assert_str_eq(in->result->change->comment->moderated_by, "test-moderator");
    ts_frame_free(in);
    in = get_thread(p, 10, "mod/edit");
    ck_assert_str_eq(in->result->get->comments[0]->body, "a words, fixed");
    ck_assert_str_eq(in->result->get->comments[1]->body, "moderated words");
    ck_assert_str_eq(in->result->get->comments[1]->moderated_by, ""); /* public view */
    ts_frame_free(in);
    ts_raw_close(m);
    ts_raw_close(p);
}
END_TEST

START_TEST(test_author_deletes_within_window)
{
    struct ts_raw *p = ts_testnode_connect_ok(&node, node.poster_token);
    char key[33];
    uint64_t id = post_ok(p, 1, "mod/del", "Ann", "ann@example.org", "regret", key, NULL);
    uint64_t reply = 0;
    {
        Threadsync__Frame f = THREADSYNC__FRAME__INIT;
        Threadsync__Post post = THREADSYNC__POST__INIT;
        post.request_id = 2;
        post.idempotency_key = "reply-to-regret";
        post.thread_key = "mod/del";
        post.parent_id = id;
        post.author_name = "Bob";
        post.body = "a reply";
        f.msg_case = THREADSYNC__FRAME__MSG_POST;
        f.post = &post;
        Threadsync__Frame *in = request(p, &f, 2);
        ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_RESULT);
        reply = in->result->post->comment_id;
        ts_frame_free(in);
    }
    Threadsync__Frame *in = expect_change(delete_comment(p, 3, id, key));
    ck_assert_int_eq(in->result->change->comment->status, THREADSYNC__STATUS__DELETED);
    ts_frame_free(in);
    /* a tombstone: the reply keeps its place, nobody sees the words */
    struct ts_raw *m = ts_testnode_connect_ok(&node, node.moderator_token);
    in = get_thread(m, 1, "mod/del");
    const Threadsync__GetResult *g = in->result->get;
    ck_assert_uint_eq(g->n_comments, 2);
    ck_assert_uint_eq(g->comments[0]->id, id);
    ck_assert_int_eq(g->comments[0]->status, THREADSYNC__STATUS__DELETED);
    ck_assert_str_eq(g->comments[0]->body, "");
    ck_assert_str_eq(g->comments[0]->author_email, "");
    ck_assert_uint_eq(g->comments[1]->id, reply);
    ck_assert_uint_eq(g->comments[1]->parent_id, id);
    ck_assert_uint_eq(g->thread->comment_count, 1);
    ts_frame_free(in);
    /* deleting again changes nothing */
    in = expect_change(delete_comment(p, 4, id, key));
    ck_assert(!in->result->change->changed);
    ts_frame_free(in);
    ts_raw_close(m);
    ts_raw_close(p);
}
END_TEST

START_TEST(test_pending_never_reaches_readers)
{
    const char *extra[] = {"--premoderate", NULL};
    restart_with(extra);
    const char *secret = "PENDING-SECRET-TEXT";
    struct watcher rw, mw;
    watch_start(&rw, node.reader_token, 0, secret);
    watch_start(&mw, node.moderator_token, 0, NULL);
    struct ts_raw *p = ts_testnode_connect_ok(&node, node.poster_token);
    int status = 0;
    uint64_t id = post_ok(p, 1, "mod/pending", "Ann", "ann@example.org", secret, NULL, &status);
    ck_assert_int_eq(status, THREADSYNC__STATUS__PENDING);

    Threadsync__Event *ev;
    Threadsync__Frame *in = watch_comment(&mw, id, 1, &ev);
    ck_assert_int_eq(ev->comment->status, THREADSYNC__STATUS__PENDING);
    ck_assert_str_eq(ev->comment->body, secret);
    ck_assert_str_eq(ev->comment->author_email, "ann@example.org");
    ck_assert_uint_eq(ev->thread->comment_count, 0);
    ts_frame_free(in);
    in = watch_comment(&rw, id, 1, &ev);
    ck_assert_int_eq(ev->comment->status, THREADSYNC__STATUS__PENDING);
    ck_assert_str_eq(ev->comment->body, "");
    ck_assert_str_eq(ev->comment->author_name, "");
    ck_assert_str_eq(ev->comment->author_email, "");
    ck_assert_uint_eq(ev->thread->comment_count, 0);
    ts_frame_free(in);

    /* the queue shows it to moderators, Get hides it from readers */
    struct ts_raw *m = ts_testnode_connect_ok(&node, node.moderator_token);
    in = pending(m, 1, NULL);
    ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_RESULT);
    const Threadsync__PendingQueueResult *q = in->result->pending_queue;
    ck_assert_uint_eq(q->n_comments, 1);
    ck_assert_uint_eq(q->comments[0]->id, id);
    ck_assert_str_eq(q->comments[0]->body, secret);
    ck_assert_uint_eq(q->n_threads, 1);
    ck_assert_str_eq(q->threads[0]->key, "mod/pending");
    ck_assert(!q->more);
    ts_frame_free(in);
    expect_refused(pending(m, 2, "mod/none"), TS_E_NOT_FOUND, "thread_key");
    struct ts_raw *rd = ts_testnode_connect_ok(&node, node.reader_token);
    in = get_thread(rd, 1, "mod/pending");
    ck_assert(!frame_has(in, secret));
    ck_assert_uint_eq(in->result->get->n_comments, 1);
    ck_assert_int_eq(in->result->get->comments[0]->status, THREADSYNC__STATUS__PENDING);
    ts_frame_free(in);
    /* a reader arriving later, replaying from 0, gets no more */
    struct watcher late;
    watch_start(&late, node.reader_token, 0, secret);
    watch_drain(&late, 500);
    ck_assert_int_ge(late.frames, 1);
    ts_raw_close(late.r);
    /* a moderator's own post is not queued */
    int mstatus = 0;
    post_ok(m, 3, "mod/pending", "Mod", NULL, "from the moderator", NULL, &mstatus);
    ck_assert_int_eq(mstatus, THREADSYNC__STATUS__VISIBLE);

    /* approved: now it is public */
    change_ok(moderate(m, 4, id, THREADSYNC__MODERATION_ACTION__APPROVE));
    rw.forbidden = NULL;
    in = watch_comment(&rw, id, 2, &ev);
    ck_assert_int_eq(ev->comment->status, THREADSYNC__STATUS__VISIBLE);
    ck_assert_str_eq(ev->comment->body, secret);
    ck_assert_str_eq(ev->comment->author_email, "");
    ck_assert_uint_eq(ev->thread->comment_count, 2);
    ts_frame_free(in);
    in = pending(m, 5, "mod/pending");
    ck_assert_uint_eq(in->result->pending_queue->n_comments, 0);
    ts_frame_free(in);
    ts_raw_close(rd);
    ts_raw_close(m);
    ts_raw_close(p);
    ts_raw_close(rw.r);
    ts_raw_close(mw.r);
}
END_TEST

/* The acceptance sequence: post -> hide -> unhide -> delete, watched by a
 * reader and by a moderator, each seeing exactly what it may; a restart
 * keeps it all. */
START_TEST(test_hide_unhide_delete_watched_and_restarted)
{
    const char *body = "CYCLE-BODY-TEXT";
    struct watcher rw, mw;
    watch_start(&rw, node.reader_token, 0, "ann@example.org");
    watch_start(&mw, node.moderator_token, 0, NULL);
    struct ts_raw *p = ts_testnode_connect_ok(&node, node.poster_token);
    uint64_t id = post_ok(p, 1, "mod/cycle", "Ann", "ann@example.org", body, NULL, NULL);
    struct ts_raw *m = ts_testnode_connect_ok(&node, node.moderator_token);
    Threadsync__ModerationAction steps[] = {THREADSYNC__MODERATION_ACTION__HIDE,
                                            THREADSYNC__MODERATION_ACTION__UNHIDE,
                                            THREADSYNC__MODERATION_ACTION__DELETE};
    int want[] = {THREADSYNC__STATUS__VISIBLE, THREADSYNC__STATUS__HIDDEN,
                  THREADSYNC__STATUS__VISIBLE, THREADSYNC__STATUS__DELETED};
    for (uint64_t v = 1; v <= 4; v++) {
        if (v > 1) {
            Threadsync__Frame *in = expect_change(moderate(m, 10 + v, id, steps[v - 2]));
            ck_assert(in->result->change->changed);
            ck_assert_uint_eq(in->result->change->comment->version, v);
            ck_assert_int_eq(in->result->change->comment->status, want[v - 1]);
            ts_frame_free(in);
        }
        int visible = want[v - 1] == THREADSYNC__STATUS__VISIBLE;
        Threadsync__Event *ev;
        /* the reader: text only while VISIBLE, never the e-mail nor who
         * moderated */
        Threadsync__Frame *in = watch_comment(&rw, id, v, &ev);
        ck_assert_int_eq(ev->comment->status, want[v - 1]);
        ck_assert_str_eq(ev->comment->body, visible ? body : "");
        ck_assert_str_eq(ev->comment->author_name, visible ? "Ann" : "");
        ck_assert_str_eq(ev->comment->moderated_by, "");
        ck_assert_uint_eq(ev->thread->comment_count, visible ? 1 : 0);
        ck_assert_uint_eq(ev->comment->id, id);
        ts_frame_free(in);
        /* the moderator: everything, except what a delete erased */
        in = watch_comment(&mw, id, v, &ev);
        ck_assert_int_eq(ev->comment->status, want[v - 1]);
        int deleted = want[v - 1] == THREADSYNC__STATUS__DELETED;
        ck_assert_str_eq(ev->comment->body, deleted ? "" : body);
        ck_assert_str_eq(ev->comment->author_email, deleted ? "" : "ann@example.org");
        ck_assert_str_eq(ev->comment->moderated_by, v == 1 ? "" : "test-moderator");
        ts_frame_free(in);
    }
    ts_raw_close(rw.r);
    ts_raw_close(mw.r);
    ts_raw_close(m);
    ts_raw_close(p);

    ck_assert_int_eq(ts_testnode_restart(&node, NULL), TS_OK);
    struct ts_raw *rd = ts_testnode_connect_ok(&node, node.reader_token);
    Threadsync__Frame *in = get_thread(rd, 1, "mod/cycle");
    const Threadsync__Comment *c = in->result->get->comments[0];
    ck_assert_int_eq(c->status, THREADSYNC__STATUS__DELETED);
    ck_assert_uint_eq(c->version, 4);
    ck_assert_uint_eq(in->result->get->thread->comment_count, 0);
    ck_assert(!frame_has(in, body));
    ts_frame_free(in);
    m = ts_testnode_connect_ok(&node, node.moderator_token);
    in = get_thread(m, 1, "mod/cycle");
    c = in->result->get->comments[0];
    ck_assert_int_eq(c->status, THREADSYNC__STATUS__DELETED);
    ck_assert_str_eq(c->moderated_by, "test-moderator");
    ts_frame_free(in);
    /* a reader replaying from 0 after the restart: the history no longer
     * holds the text, and ends in the tombstone */
    struct watcher late;
    watch_start(&late, node.reader_token, 0, body);
    Threadsync__Event *ev;
    in = watch_comment(&late, id, 4, &ev);
    ck_assert_int_eq(ev->comment->status, THREADSYNC__STATUS__DELETED);
    ts_frame_free(in);
    watch_drain(&late, 300);
    ts_raw_close(late.r);
    ts_raw_close(m);
    ts_raw_close(rd);
}
END_TEST

START_TEST(test_lock_premoderate_and_ban)
{
    struct ts_raw *p = ts_testnode_connect_ok(&node, node.poster_token);
    struct ts_raw *m = ts_testnode_connect_ok(&node, node.moderator_token);
    post_ok(p, 1, "mod/lock", "Ann", NULL, "first", NULL, NULL);
    expect_refused(thread_action(m, 2, "mod/nothread", THREADSYNC__THREAD_ACTION__THREAD_LOCK),
                   TS_E_NOT_FOUND, "thread_key");
    Threadsync__Frame *in =
        expect_change(thread_action(m, 3, "mod/lock", THREADSYNC__THREAD_ACTION__THREAD_LOCK));
    ck_assert(in->result->change->thread->locked);
    ck_assert_str_eq(in->result->change->thread->moderated_by, "test-moderator");
    ck_assert_ptr_null(in->result->change->comment);
    ts_frame_free(in);
    expect_refused(post_frame(p, 4, "mod/lock", "Ann", NULL, "locked out"), TS_E_THREAD_LOCKED,
                   NULL);
    change_ok(thread_action(m, 5, "mod/lock", THREADSYNC__THREAD_ACTION__THREAD_UNLOCK));
    post_ok(p, 6, "mod/lock", "Ann", NULL, "open again", NULL, NULL);

    /* pre-moderation of one thread */
    change_ok(thread_action(m, 7, "mod/lock", THREADSYNC__THREAD_ACTION__THREAD_PREMODERATE));
    int status = 0;
    uint64_t queued = post_ok(p, 8, "mod/lock", "Ann", NULL, "wait for it", NULL, &status);
    ck_assert_int_eq(status, THREADSYNC__STATUS__PENDING);
    post_ok(p, 9, "mod/other", "Ann", NULL, "elsewhere", NULL, &status);
    ck_assert_int_eq(status, THREADSYNC__STATUS__VISIBLE);
    in = pending(m, 10, "mod/lock");
    ck_assert_uint_eq(in->result->pending_queue->n_comments, 1);
    ck_assert_uint_eq(in->result->pending_queue->comments[0]->id, queued);
    ts_frame_free(in);
    change_ok(thread_action(m, 11, "mod/lock", THREADSYNC__THREAD_ACTION__THREAD_POSTMODERATE));
    post_ok(p, 12, "mod/lock", "Ann", NULL, "straight in", NULL, &status);
    ck_assert_int_eq(status, THREADSYNC__STATUS__VISIBLE);

    /* bans, by e-mail (any case) and by name, lifted by a zero duration */
    in = ban(m, 13, "Spam@Example.ORG", 60000);
    ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_RESULT);
    ck_assert_str_eq(in->result->ban->author, "spam@example.org");
    ck_assert_int_gt(in->result->ban->until_ms, 0);
    ts_frame_free(in);
    expect_refused(post_frame(p, 14, "mod/other", "Sp", "spam@example.org", "buy"), TS_E_FORBIDDEN,
                   "author_email");
    expect_refused(post_frame(p, 15, "mod/other", "Sp", "SPAM@example.org", "buy"), TS_E_FORBIDDEN,
                   "author_email");
    ts_frame_free(ban(m, 16, "Troll", 60000));
    expect_refused(post_frame(p, 17, "mod/other", "Troll", NULL, "hi"), TS_E_FORBIDDEN,
                   "author_name");
    post_ok(p, 18, "mod/other", "troll", NULL, "another person", NULL, NULL);
    ts_frame_free(ban(m, 19, "spam@example.org", 0));
    post_ok(p, 20, "mod/other", "Sp", "spam@example.org", "reformed", NULL, NULL);
    expect_refused(ban(m, 21, "", 1000), TS_E_INVALID_ARGUMENT, "author");
    ts_raw_close(m);
    ts_raw_close(p);
}
END_TEST

START_TEST(test_tokens_and_revocation)
{
    struct ts_raw *a = ts_testnode_connect_ok(&node, node.admin_token);
    Threadsync__Frame *in = token_add(a, 1, "sub-reader", THREADSYNC__ROLE__READER);
    ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_RESULT);
    char token[80];
    snprintf(token, sizeof(token), "%s", in->result->token_add->token);
    ck_assert_uint_eq(strlen(token), 46);
    ck_assert_int_eq(in->result->token_add->role, THREADSYNC__ROLE__READER);
    ts_frame_free(in);
    /* names are unique, across the tokens file too */
    expect_refused(token_add(a, 2, "sub-reader", THREADSYNC__ROLE__ADMIN), TS_E_INVALID_ARGUMENT,
                   "name");
    expect_refused(token_add(a, 3, "test-reader", THREADSYNC__ROLE__ADMIN), TS_E_INVALID_ARGUMENT,
                   "name");
    expect_refused(token_add(a, 4, "bad name", THREADSYNC__ROLE__READER), TS_E_INVALID_ARGUMENT,
                   "name");
    /* the list names tokens, never their secrets */
    in = token_list(a, 5);
    const Threadsync__TokenListResult *l = in->result->token_list;
    int found = 0;
    for (size_t i = 0; i < l->n_tokens; i++) {
        if (strcmp(l->tokens[i]->name, "sub-reader") == 0) {
            found = 1;
            ck_assert(!l->tokens[i]->from_file);
            ck_assert_int_eq(l->tokens[i]->role, THREADSYNC__ROLE__READER);
            ck_assert_str_eq(l->tokens[i]->created_by, "test-admin");
            ck_assert_int_gt(l->tokens[i]->created_at_ms, 0);
        }
    }
    ck_assert(found);
    ck_assert_uint_eq(l->n_tokens, 5);
    ck_assert(!frame_has(in, token));
    ck_assert(!frame_has(in, node.admin_token));
    ts_frame_free(in);

    /* the new token works: a live subscription and an idle connection */
    struct watcher w;
    watch_start(&w, token, 0, NULL);
    struct ts_raw *idle = ts_testnode_connect_ok(&node, token);
    struct ts_raw *p = ts_testnode_connect_ok(&node, node.poster_token);
    uint64_t id = post_ok(p, 1, "mod/tok", "Ann", NULL, "seen", NULL, NULL);
    Threadsync__Event *ev;
    in = watch_comment(&w, id, 1, &ev);
    ts_frame_free(in);

    /* revoked: both are closed at once, with UNAUTHENTICATED */
    in = token_revoke(a, 6, "sub-reader");
    ck_assert(in->result->token_revoke->changed);
    ts_frame_free(in);
    struct ts_raw *conns[] = {w.r, idle};
    for (int i = 0; i < 2; i++) {
        int got_error = 0;
        uint64_t t0 = ts_test_now_ms();
        for (;;) {
            int rc = ts_raw_recv_nonping(conns[i], 3000, &in);
            if (rc == TS_E_CLOSED)
                break;
            ck_assert_int_eq(rc, TS_OK);
            if (in->msg_case == THREADSYNC__FRAME__MSG_ERROR) {
                ck_assert_int_eq(in->error->code, THREADSYNC__ERROR_CODE__UNAUTHENTICATED);
                ck_assert_uint_eq(in->error->request_id, 0);
                got_error = 1;
            }
            ts_frame_free(in);
        }
        ck_assert(got_error);
        ck_assert_uint_lt(ts_test_now_ms() - t0, 2000);
    }
    ts_raw_close(idle);
    ts_raw_close(w.r);
    struct ts_raw *r;
    ck_assert_int_eq(ts_raw_connect(node.addr, node.ca, TS_ALPN, &r), TS_OK);
    ck_assert_int_eq(ts_raw_hello(r, token, NULL), TS_E_UNAUTHENTICATED);
    ts_raw_close(r);
    in = token_revoke(a, 7, "sub-reader");
    ck_assert(!in->result->token_revoke->changed);
    ts_frame_free(in);
    expect_refused(token_revoke(a, 8, "nobody"), TS_E_NOT_FOUND, "name");

    /* a tokens-file token is revoked by name too: the poster's open
     * connection closes on its next request at the latest */
    ts_frame_free(token_revoke(a, 9, "test-poster"));
    ck_assert_int_eq(ts_raw_post(p, 2, "mod/tok", 0, "Ann", "after revoke", NULL, NULL),
                     TS_E_UNAUTHENTICATED);
    ts_raw_close(p);

    /* replicated tokens survive a restart */
    in = token_add(a, 10, "keeper", THREADSYNC__ROLE__MODERATOR);
    char keeper[80];
    snprintf(keeper, sizeof(keeper), "%s", in->result->token_add->token);
    ts_frame_free(in);
    ts_raw_close(a);
    ck_assert_int_eq(ts_testnode_restart(&node, NULL), TS_OK);
    int role = 0;
    ck_assert_int_eq(ts_raw_connect(node.addr, node.ca, TS_ALPN, &r), TS_OK);
    ck_assert_int_eq(ts_raw_hello(r, keeper, &role), TS_OK);
    ck_assert_int_eq(role, THREADSYNC__ROLE__MODERATOR);
    ts_raw_close(r);
    const char *gone[] = {token, node.poster_token};
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(ts_raw_connect(node.addr, node.ca, TS_ALPN, &r), TS_OK);
        ck_assert_int_eq(ts_raw_hello(r, gone[i], NULL), TS_E_UNAUTHENTICATED);
        ts_raw_close(r);
    }
}
END_TEST

START_TEST(test_rate_limits)
{
    /* Windows long enough that a burst on a loaded machine never sees a
     * refill: 3 per 10 s refills one post every 3.3 s, 5 per 20 s one every
     * 4 s, so the refusals below do not depend on how fast the posts go. */
    const char *extra[] = {"--rate-author", "3/10s", "--rate-token", "100/1s", NULL};
    restart_with(extra);
    struct ts_raw *p = ts_testnode_connect_ok(&node, node.poster_token);
    for (int i = 0; i < 3; i++)
        post_ok(p, (uint64_t)i + 1, "mod/rate", "Ann", "ann@example.org", "burst", NULL, NULL);
    /* the fourth is refused, with how long to wait */
    Threadsync__Frame *in = post_frame(p, 10, "mod/rate", "Ann", "ANN@example.org", "too many");
    ck_assert_int_eq(error_code(in), TS_E_RATE_LIMITED);
    uint32_t retry = in->error->retry_after_ms;
    ck_assert_uint_gt(retry, 0);
    ck_assert_uint_le(retry, 3334);
    ts_frame_free(in);
    /* another author is not held back */
    post_ok(p, 11, "mod/rate", "Bob", NULL, "my turn", NULL, NULL);
    /* and after the wait, Ann may post again: the bucket refills with time
     * alone, so the test sleeps the retry_after_ms the node named */
    usleep((useconds_t)retry * 1000 + 20000);
    post_ok(p, 12, "mod/rate", "Ann", "ann@example.org", "again", NULL, NULL);
    in = post_frame(p, 13, "mod/rate", "Ann", "ann@example.org", "and again");
    ck_assert_int_eq(error_code(in), TS_E_RATE_LIMITED);
    ts_frame_free(in);
    ts_raw_close(p);

    /* per token: distinct authors, one token */
    const char *extra2[] = {"--rate-author", "off", "--rate-token", "5/20s", NULL};
    ck_assert_int_eq(ts_testnode_restart(&node, extra2), TS_OK);
    p = ts_testnode_connect_ok(&node, node.poster_token);
    for (int i = 0; i < 5; i++) {
        char name[16];
        snprintf(name, sizeof(name), "author-%d", i);
        post_ok(p, (uint64_t)i + 20, "mod/rate", name, NULL, "x", NULL, NULL);
    }
    in = post_frame(p, 30, "mod/rate", "author-9", NULL, "x");
    ck_assert_int_eq(error_code(in), TS_E_RATE_LIMITED);
    retry = in->error->retry_after_ms;
    ck_assert_uint_gt(retry, 0);
    ck_assert_uint_le(retry, 4000);
    ts_frame_free(in);
    /* another token has its own bucket */
    struct ts_raw *a = ts_testnode_connect_ok(&node, node.admin_token);
    post_ok(a, 31, "mod/rate", "author-9", NULL, "x", NULL, NULL);
    ts_raw_close(a);
    /* the token's bucket refills with time alone: sleep what the node named */
    usleep((useconds_t)retry * 1000 + 20000);
    post_ok(p, 32, "mod/rate", "author-9", NULL, "x", NULL, NULL);
    ts_raw_close(p);
}
END_TEST

START_TEST(test_connection_limit)
{
    const char *extra[] = {"--max-conns-per-addr", "2", NULL};
    restart_with(extra);
    struct ts_raw *a = ts_testnode_connect_ok(&node, node.reader_token);
    struct ts_raw *b = ts_testnode_connect_ok(&node, node.reader_token);
    struct ts_raw *c;
    ck_assert_int_eq(ts_raw_connect(node.addr, node.ca, TS_ALPN, &c), TS_OK);
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Hello h = THREADSYNC__HELLO__INIT;
    h.min_version = 1;
    h.token = node.reader_token;
    f.msg_case = THREADSYNC__FRAME__MSG_HELLO;
    f.hello = &h;
    ck_assert_int_eq(ts_raw_send_frame(c, &f), TS_OK);
    Threadsync__Frame *in;
    ck_assert_int_eq(ts_raw_recv(c, 5000, &in), TS_OK);
    ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_ERROR);
    ck_assert_int_eq(in->error->code, THREADSYNC__ERROR_CODE__RATE_LIMITED);
    ck_assert_uint_gt(in->error->retry_after_ms, 0);
    ts_frame_free(in);
    ck_assert_int_eq(ts_raw_recv(c, 5000, &in), TS_E_CLOSED);
    ts_raw_close(c);
    /* the two allowed ones still work; closing one makes room */
    ts_frame_free(get_thread(a, 1, "mod/none"));
    ts_raw_close(b);
    /* the server counts b out once it has seen the close: until then a new
     * connection is still refused, and nothing else */
    struct ts_raw *d;
    uint64_t deadline = ts_test_now_ms() + 10000;
    int rc;
    while ((rc = ts_testnode_connect(&node, node.reader_token, &d)) != TS_OK) {
        ck_assert_int_eq(rc, TS_E_RATE_LIMITED);
        ck_assert_msg(ts_test_poll(deadline), "closing a connection made no room");
    }
    ts_raw_close(d);
    ts_raw_close(a);
}
END_TEST

/* ---- CLI ---- */

static int cli_as(const char *token_file, char **out, const char *const *args)
{
    const char *server[] = {node.addr};
    return ts_test_cli(server, 1, node.ca, token_file, args, node.dir, out);
}

static void write_token(const char *path, const char *token)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "%s\n", token);
    fclose(f);
}

/* The value after "key=" in text, up to a space or line end, into out. */
static void field_str(const char *text, const char *key, char *dst, size_t size)
{
    const char *p = strstr(text, key);
    ck_assert_msg(p != NULL, "no %s in: %s", key, text);
    p += strlen(key);
    size_t n = strcspn(p, " \n");
    ck_assert_uint_lt(n, size);
    memcpy(dst, p, n);
    dst[n] = '\0';
}

START_TEST(test_cli_moderation)
{
    char mod_file[512], poster_file[512], reader_file[512];
    snprintf(mod_file, sizeof(mod_file), "%s/moderator.token", node.dir);
    snprintf(poster_file, sizeof(poster_file), "%s/poster.token", node.dir);
    snprintf(reader_file, sizeof(reader_file), "%s/reader.token", node.dir);
    write_token(mod_file, node.moderator_token);
    write_token(poster_file, node.poster_token);
    char *out;
    /* post prints the edit key */
    const char *post[] = {"post", "--thread", "cli/mod", "--name", "Ann", "--body", "hello", NULL};
    ck_assert_int_eq(cli_as(poster_file, &out, post), 0);
    char id[32], key[64];
    field_str(out, "id=", id, sizeof(id));
    field_str(out, "edit_key=", key, sizeof(key));
    ck_assert_uint_eq(strlen(key), 32);
    free(out);
    const char *postj[] = {"post", "--json", "--thread", "cli/mod", "--name",
                           "Bob",  "--body", "second",   NULL};
    ck_assert_int_eq(cli_as(poster_file, &out, postj), 0);
    ck_assert_msg(strstr(out, "\"edit_key\":\""), "%s", out);
    free(out);

    /* edit with the key; a wrong key is refused (exit 1) */
    const char *ed[] = {"edit", id, "--edit-key", key, "--body", "hello, edited", NULL};
    ck_assert_int_eq(cli_as(poster_file, &out, ed), 0);
    ck_assert_msg(strstr(out, "changed=1") && strstr(out, "version=2"), "%s", out);
    free(out);
    const char *bad[] = {"delete", id, "--edit-key", "0123456789abcdef0123456789abcdef", NULL};
    ck_assert_int_eq(cli_as(poster_file, &out, bad), 1);
    free(out);

    /* moderate hide / unhide, with the moderator's token only */
    const char *hide[] = {"moderate", "hide", id, NULL};
    ck_assert_int_eq(cli_as(poster_file, &out, hide), 1);
    free(out);
    ck_assert_int_eq(cli_as(mod_file, &out, hide), 0);
    ck_assert_msg(strstr(out, "status=HIDDEN") && strstr(out, "count=1"), "%s", out);
    free(out);
    const char *unhide[] = {"moderate", "unhide", id, "--json", NULL};
    ck_assert_int_eq(cli_as(mod_file, &out, unhide), 0);
    ck_assert_msg(strstr(out, "\"status\":\"VISIBLE\"") &&
                      strstr(out, "\"moderated_by\":\"test-moderator\""),
                  "%s", out);
    free(out);

    /* lock refuses posts; the queue of a pre-moderated thread */
    const char *lock[] = {"moderate", "lock", "--thread", "cli/mod", NULL};
    ck_assert_int_eq(cli_as(mod_file, &out, lock), 0);
    ck_assert_msg(strstr(out, "locked=1"), "%s", out);
    free(out);
    ck_assert_int_eq(cli_as(poster_file, &out, post), 1);
    free(out);
    const char *unlock[] = {"moderate", "unlock", "--thread", "cli/mod", NULL};
    ck_assert_int_eq(cli_as(mod_file, &out, unlock), 0);
    free(out);
    const char *premod[] = {"moderate", "premoderate", "--thread", "cli/mod", NULL};
    ck_assert_int_eq(cli_as(mod_file, &out, premod), 0);
    free(out);
    const char *qpost[] = {"post", "--thread", "cli/mod",      "--name",
                           "Cy",   "--body",   "queued words", NULL};
    ck_assert_int_eq(cli_as(poster_file, &out, qpost), 0);
    ck_assert_msg(strstr(out, "status=PENDING"), "%s", out);
    char qid[32];
    field_str(out, "id=", qid, sizeof(qid));
    free(out);
    const char *queue[] = {"moderate", "queue", "--thread", "cli/mod", NULL};
    ck_assert_int_eq(cli_as(mod_file, &out, queue), 0);
    ck_assert_msg(strstr(out, "1 pending") && strstr(out, "queued words"), "%s", out);
    free(out);
    const char *approve[] = {"moderate", "approve", qid, NULL};
    ck_assert_int_eq(cli_as(mod_file, &out, approve), 0);
    ck_assert_msg(strstr(out, "status=VISIBLE"), "%s", out);
    free(out);
    const char *queue_all[] = {"moderate", "queue", NULL};
    ck_assert_int_eq(cli_as(mod_file, &out, queue_all), 0);
    ck_assert_msg(strstr(out, "0 pending"), "%s", out);
    free(out);

    /* ban */
    const char *ban_cmd[] = {"moderate", "ban", "--author", "Spammer", "--duration", "60", NULL};
    ck_assert_int_eq(cli_as(mod_file, &out, ban_cmd), 0);
    ck_assert_msg(strstr(out, "author=Spammer until=20"), "%s", out);
    free(out);
    const char *spam[] = {"post",    "--thread", "cli/other", "--name",
                          "Spammer", "--body",   "buy",       NULL};
    ck_assert_int_eq(cli_as(poster_file, &out, spam), 1);
    free(out);

    /* delete by a moderator, and by the author's key */
    const char *mdel[] = {"moderate", "delete", qid, NULL};
    ck_assert_int_eq(cli_as(mod_file, &out, mdel), 0);
    ck_assert_msg(strstr(out, "status=DELETED"), "%s", out);
    free(out);
    const char *adel[] = {"delete", id, "--edit-key", key, NULL};
    ck_assert_int_eq(cli_as(poster_file, &out, adel), 0);
    ck_assert_msg(strstr(out, "status=DELETED"), "%s", out);
    free(out);
    const char *get[] = {"get", "--thread", "cli/mod", NULL};
    ck_assert_int_eq(cli_as(poster_file, &out, get), 0);
    ck_assert_msg(strstr(out, "[deleted]") && !strstr(out, "hello, edited"), "%s", out);
    free(out);
}
END_TEST

START_TEST(test_cli_admin_tokens)
{
    char *out;
    const char *add[] = {"admin", "token", "add", "--role", "reader", "--name", "cli-reader", NULL};
    ck_assert_int_eq(cli_as(node.token_file, &out, add), 0);
    char token[80];
    field_str(out, "token=", token, sizeof(token));
    ck_assert_msg(strstr(out, "name=cli-reader role=reader"), "%s", out);
    free(out);
    char reader_file[512];
    snprintf(reader_file, sizeof(reader_file), "%s/cli-reader.token", node.dir);
    write_token(reader_file, token);
    /* the new token reads, and may not moderate */
    const char *post[] = {"post", "--thread", "cli/tok", "--name", "Ann", "--body", "hi", NULL};
    ck_assert_int_eq(cli_as(node.token_file, &out, post), 0);
    char id[32];
    field_str(out, "id=", id, sizeof(id));
    free(out);
    const char *get[] = {"get", "--thread", "cli/tok", NULL};
    ck_assert_int_eq(cli_as(reader_file, &out, get), 0);
    free(out);
    const char *hide[] = {"moderate", "hide", id, NULL};
    ck_assert_int_eq(cli_as(reader_file, &out, hide), 1);
    free(out);
    /* a moderator may not add tokens */
    char mod_file[512];
    snprintf(mod_file, sizeof(mod_file), "%s/moderator.token", node.dir);
    write_token(mod_file, node.moderator_token);
    const char *add2[] = {"admin", "token", "add", "--role", "admin", "--name", "x", NULL};
    ck_assert_int_eq(cli_as(mod_file, &out, add2), 1);
    free(out);
    /* list: names and roles, never tokens */
    const char *list[] = {"admin", "token", "list", NULL};
    ck_assert_int_eq(cli_as(node.token_file, &out, list), 0);
    ck_assert_msg(strstr(out, "cli-reader reader ") && strstr(out, " replicated by=test-admin") &&
                      strstr(out, "test-admin admin - file"),
                  "%s", out);
    ck_assert(!strstr(out, token));
    free(out);
    const char *listj[] = {"admin", "token", "list", "--json", NULL};
    ck_assert_int_eq(cli_as(node.token_file, &out, listj), 0);
    ck_assert_msg(out[0] == '[' && strstr(out, "\"name\":\"cli-reader\""), "%s", out);
    free(out);
    /* revoke: the token stops working */
    const char *rev[] = {"admin", "token", "revoke", "cli-reader", NULL};
    ck_assert_int_eq(cli_as(node.token_file, &out, rev), 0);
    ck_assert_msg(strstr(out, "revoked name=cli-reader"), "%s", out);
    free(out);
    ck_assert_int_eq(cli_as(reader_file, &out, get), 1);
    free(out);
    ck_assert_int_eq(cli_as(node.token_file, &out, list), 0);
    ck_assert_msg(strstr(out, "cli-reader reader") && strstr(out, " revoked"), "%s", out);
    free(out);
}
END_TEST

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    Suite *s = suite_create("moderation");
    TCase *tc = tcase_create("moderation");
    tcase_add_checked_fixture(tc, start_node, stop_node);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_roles_are_enforced);
    tcase_add_test(tc, test_edit_key_scope_and_window);
    tcase_add_test(tc, test_author_deletes_within_window);
    tcase_add_test(tc, test_pending_never_reaches_readers);
    tcase_add_test(tc, test_hide_unhide_delete_watched_and_restarted);
    tcase_add_test(tc, test_lock_premoderate_and_ban);
    tcase_add_test(tc, test_tokens_and_revocation);
    tcase_add_test(tc, test_rate_limits);
    tcase_add_test(tc, test_connection_limit);
    tcase_add_test(tc, test_cli_moderation);
    tcase_add_test(tc, test_cli_admin_tokens);
    suite_add_tcase(s, tc);
    return ts_check_run(s);
}
