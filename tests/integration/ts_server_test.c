/*
 * Integration: real threadsyncd processes on loopback, spoken to over real
 * TLS. Covers the handshake, roles, post/get/subscribe, and bad input of
 * every kind (which must get a clear error code and change nothing).
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
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

/* Sends a Get and returns the answer frame (Result or Error). */
static Threadsync__Frame *get_thread(struct ts_raw *r, uint64_t rid, const char *key)
{
    return ts_raw_get(r, rid, key, 10000);
}

static size_t count_comments(const char *key)
{
    struct ts_raw *r = ts_testnode_connect_ok(&node, node.admin_token);
    Threadsync__Frame *in = get_thread(r, 1, key);
    size_t n = 0;
    if (in->msg_case == THREADSYNC__FRAME__MSG_RESULT)
        n = in->result->get->n_comments;
    ts_frame_free(in);
    ts_raw_close(r);
    return n;
}

/* Expects an Error with code (and request_id 0 + close when fatal). */
static void expect_error(struct ts_raw *r, int code, const char *field)
{
    Threadsync__Frame *in;
    ck_assert_int_eq(ts_raw_recv_nonping(r, 10000, &in), TS_OK);
    ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_ERROR);
    ck_assert_str_eq(ts_err_name(in->error->code), ts_err_name(code));
    if (field)
        ck_assert_str_eq(in->error->field, field);
    ts_frame_free(in);
}

static void expect_closed(struct ts_raw *r)
{
    Threadsync__Frame *in;
    int rc = ts_raw_recv(r, 10000, &in);
    ck_assert_int_eq(rc, TS_E_CLOSED);
}

START_TEST(test_post_then_get_tree)
{
    struct ts_raw *r = ts_testnode_connect_ok(&node, node.poster_token);
    uint64_t a, b, c, seq;
    ck_assert_int_eq(ts_raw_post(r, 1, "site/t1", 0, "Ann", "top level", &a, &seq), TS_OK);
    ck_assert_uint_eq(a, seq); /* an id is the seq of the entry that created it */
    ck_assert_int_eq(ts_raw_post(r, 2, "site/t1", a, "Bob", "reply", &b, NULL), TS_OK);
    ck_assert_int_eq(ts_raw_post(r, 3, "site/t1", b, "Cy", "reply to reply", &c, NULL), TS_OK);
    ck_assert_uint_gt(b, a);
    ck_assert_uint_gt(c, b);
    Threadsync__Frame *in = get_thread(r, 4, "site/t1");
    ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_RESULT);
    ck_assert_uint_eq(in->result->request_id, 4);
    Threadsync__GetResult *g = in->result->get;
    ck_assert_str_eq(g->thread->key, "site/t1");
    ck_assert_uint_eq(g->thread->comment_count, 3);
    ck_assert_uint_eq(g->n_comments, 3);
    ck_assert_uint_eq(g->comments[0]->id, a);
    ck_assert_uint_eq(g->comments[0]->parent_id, 0);
    ck_assert_uint_eq(g->comments[1]->parent_id, a);
    ck_assert_uint_eq(g->comments[2]->parent_id, b);
    ck_assert_str_eq(g->comments[2]->body, "reply to reply");
    ck_assert_str_eq(g->comments[1]->author_name, "Bob");
    ck_assert_int_eq(g->comments[0]->status, THREADSYNC__STATUS__VISIBLE);
    ck_assert_uint_ge(g->seq, c);
    ts_frame_free(in);
    ts_raw_close(r);
}
END_TEST

START_TEST(test_reader_cannot_post_and_sees_no_email)
{
    struct ts_raw *p = ts_testnode_connect_ok(&node, node.poster_token);
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Post post = THREADSYNC__POST__INIT;
    post.request_id = 9;
    post.idempotency_key = "email-post";
    post.thread_key = "site/email";
    post.author_name = "Ann";
    post.author_email = "ann@example.org";
    post.body = "hi";
    f.msg_case = THREADSYNC__FRAME__MSG_POST;
    f.post = &post;
    ck_assert_int_eq(ts_raw_send_frame(p, &f), TS_OK);
    Threadsync__Frame *in;
    ck_assert_int_eq(ts_raw_recv_nonping(p, 10000, &in), TS_OK);
    ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_RESULT);
    ts_frame_free(in);
    ts_raw_close(p);

    struct ts_raw *r = ts_testnode_connect_ok(&node, node.reader_token);
    uint64_t id;
    ck_assert_int_eq(ts_raw_post(r, 1, "site/email", 0, "Eve", "not allowed", &id, NULL),
                     TS_E_FORBIDDEN);
    in = get_thread(r, 2, "site/email");
    ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_RESULT);
    ck_assert_uint_eq(in->result->get->n_comments, 1); /* the reader's post changed nothing */
    ck_assert_str_eq(in->result->get->comments[0]->author_email, "");
    ts_frame_free(in);
    ts_raw_close(r);

    struct ts_raw *m = ts_testnode_connect_ok(&node, node.moderator_token);
    in = get_thread(m, 1, "site/email");
    ck_assert_str_eq(in->result->get->comments[0]->author_email, "ann@example.org");
    ts_frame_free(in);
    ts_raw_close(m);
}
END_TEST

START_TEST(test_subscribe_sees_posts_live)
{
    struct ts_raw *w = ts_testnode_subscriber(&node, node.reader_token, 0, NULL);

    struct ts_raw *p = ts_testnode_connect_ok(&node, node.poster_token);
    uint64_t last_seq = 0;
    for (int i = 0; i < 5; i++) {
        char body[32];
        snprintf(body, sizeof(body), "live %d", i);
        uint64_t id, seq;
        ck_assert_int_eq(ts_raw_post(p, (uint64_t)i + 1, "site/live", 0, "Ann", body, &id, &seq),
                         TS_OK);
        /* the watcher must see it within a second */
        int seen = 0;
        while (!seen) {
            Threadsync__Frame *in;
            ck_assert_int_eq(ts_raw_recv_nonping(w, 1000, &in), TS_OK);
            ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_EVENTS);
            for (size_t e = 0; e < in->events->n_events; e++) {
                Threadsync__Event *ev = in->events->events[e];
                ck_assert_uint_gt(ev->seq, last_seq);
                last_seq = ev->seq;
                if (ev->comment && ev->comment->id == id) {
                    ck_assert_str_eq(ev->comment->body, body);
                    ck_assert_str_eq(ev->thread->key, "site/live");
                    seen = 1;
                }
            }
            ck_assert_uint_ge(in->events->last_seq, last_seq);
            ts_frame_free(in);
        }
    }
    ts_raw_close(p);
    ts_raw_close(w);
}
END_TEST

START_TEST(test_subscribe_since_replays_and_filters)
{
    struct ts_raw *p = ts_testnode_connect_ok(&node, node.poster_token);
    uint64_t first, seq;
    ck_assert_int_eq(ts_raw_post(p, 1, "site/a", 0, "Ann", "a1", &first, &seq), TS_OK);
    ck_assert_int_eq(ts_raw_post(p, 2, "site/b", 0, "Ann", "b1", NULL, NULL), TS_OK);
    ck_assert_int_eq(ts_raw_post(p, 3, "site/a", 0, "Ann", "a2", NULL, NULL), TS_OK);

    struct ts_raw *w = ts_testnode_connect_ok(&node, node.reader_token);
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Subscribe sub = THREADSYNC__SUBSCRIBE__INIT;
    char *keys[] = {"site/a"};
    sub.request_id = 7;
    sub.thread_keys = keys;
    sub.n_thread_keys = 1;
    sub.since_seq = first; /* a1 is already known: only a2 must come */
    f.msg_case = THREADSYNC__FRAME__MSG_SUBSCRIBE;
    f.subscribe = &sub;
    ck_assert_int_eq(ts_raw_send_frame(w, &f), TS_OK);
    Threadsync__Frame *in;
    ck_assert_int_eq(ts_raw_recv_nonping(w, 10000, &in), TS_OK);
    ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_RESULT);
    ck_assert(!in->result->subscribe->snapshot);
    ts_frame_free(in);
    ck_assert_int_eq(ts_raw_recv_nonping(w, 5000, &in), TS_OK);
    ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_EVENTS);
    ck_assert_uint_eq(in->events->n_events, 1);
    ck_assert_str_eq(in->events->events[0]->comment->body, "a2");
    ck_assert(in->events->caught_up);
    ts_frame_free(in);

    /* a second Subscribe on the same connection is refused */
    sub.request_id = 8;
    ck_assert_int_eq(ts_raw_send_frame(w, &f), TS_OK);
    expect_error(w, TS_E_INVALID_ARGUMENT, "subscribe");
    ts_raw_close(w);
    ts_raw_close(p);
}
END_TEST

START_TEST(test_snapshot_when_out_of_window)
{
    /* a window of 4 events: a subscriber from 0 after 10 posts needs a
     * snapshot, then the live events */
    ts_testnode_cleanup(&node);
    const char *extra[] = {"--evlog-max-events", "4", NULL};
    ck_assert_int_eq(ts_testnode_start(&node, extra), TS_OK);
    struct ts_raw *p = ts_testnode_connect_ok(&node, node.poster_token);
    for (int i = 0; i < 10; i++) {
        char body[32];
        snprintf(body, sizeof(body), "s%d", i);
        ck_assert_int_eq(ts_raw_post(p, (uint64_t)i + 1, i % 2 ? "snap/odd" : "snap/even", 0, "Ann",
                                     body, NULL, NULL),
                         TS_OK);
    }
    int snapshot = 0;
    struct ts_raw *w = ts_testnode_subscriber(&node, node.moderator_token, 0, &snapshot);
    ck_assert(snapshot);
    Threadsync__Frame *in;
    ck_assert_int_eq(ts_raw_recv_nonping(w, 10000, &in), TS_OK);
    ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_SNAPSHOT_BEGIN);
    uint64_t s = in->snapshot_begin->seq;
    ck_assert_uint_eq(in->snapshot_begin->comments, 10);
    ck_assert_uint_eq(in->snapshot_begin->threads, 2);
    ts_frame_free(in);
    size_t threads = 0, comments = 0;
    for (;;) {
        ck_assert_int_eq(ts_raw_recv_nonping(w, 10000, &in), TS_OK);
        if (in->msg_case == THREADSYNC__FRAME__MSG_SNAPSHOT_END) {
            ck_assert_uint_eq(in->snapshot_end->seq, s);
            ts_frame_free(in);
            break;
        }
        ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_SNAPSHOT_CHUNK);
        threads += in->snapshot_chunk->n_threads;
        comments += in->snapshot_chunk->n_comments;
        ts_frame_free(in);
    }
    ck_assert_uint_eq(threads, 2);
    ck_assert_uint_eq(comments, 10);
    /* then live */
    uint64_t id;
    ck_assert_int_eq(ts_raw_post(p, 99, "snap/odd", 0, "Ann", "after", &id, NULL), TS_OK);
    for (;;) {
        ck_assert_int_eq(ts_raw_recv_nonping(w, 5000, &in), TS_OK);
        ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_EVENTS);
        int found = 0;
        for (size_t e = 0; e < in->events->n_events; e++) {
            ck_assert_uint_gt(in->events->events[e]->seq, s);
            found |= in->events->events[e]->comment->id == id;
        }
        ts_frame_free(in);
        if (found)
            break;
    }
    ts_raw_close(w);
    ts_raw_close(p);
}
END_TEST

START_TEST(test_validation_changes_nothing)
{
    struct ts_raw *r = ts_testnode_connect_ok(&node, node.poster_token);
    uint64_t id;
    ck_assert_int_eq(ts_raw_post(r, 1, "site/v", 0, "Ann", "ok", &id, NULL), TS_OK);
    ck_assert_int_eq(ts_raw_post(r, 2, "site/v", 0, "", "no name", NULL, NULL),
                     TS_E_INVALID_ARGUMENT);
    ck_assert_int_eq(ts_raw_post(r, 3, "site/v", 0, "Ann", "", NULL, NULL), TS_E_INVALID_ARGUMENT);
    ck_assert_int_eq(ts_raw_post(r, 4, "site/v", 999999, "Ann", "orphan", NULL, NULL),
                     TS_E_NOT_FOUND);
    ck_assert_int_eq(ts_raw_post(r, 5, "site/v", 0, "Ann", "bad \xED\xA0\x80 utf8", NULL, NULL),
                     TS_E_INVALID_ARGUMENT);
    /* a parent from another thread is unknown in this one */
    uint64_t other;
    ck_assert_int_eq(ts_raw_post(r, 6, "site/other", 0, "Ann", "x", &other, NULL), TS_OK);
    ck_assert_int_eq(ts_raw_post(r, 7, "site/v", other, "Ann", "cross", NULL, NULL),
                     TS_E_NOT_FOUND);
    /* request_id 0 */
    ck_assert_int_eq(ts_raw_post(r, 0, "site/v", 0, "Ann", "zero", NULL, NULL),
                     TS_E_INVALID_ARGUMENT);
    Threadsync__Frame *in = get_thread(r, 8, "site/nope");
    ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_ERROR);
    ck_assert_int_eq(in->error->code, TS_E_NOT_FOUND);
    ck_assert_str_eq(in->error->field, "thread_key");
    ts_frame_free(in);
    ts_raw_close(r);
    ck_assert_uint_eq(count_comments("site/v"), 1);
}
END_TEST

START_TEST(test_idempotent_post)
{
    struct ts_raw *r = ts_testnode_connect_ok(&node, node.poster_token);
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Post p = THREADSYNC__POST__INIT;
    p.idempotency_key = "retry-me";
    p.thread_key = "site/idem";
    p.author_name = "Ann";
    p.body = "once";
    f.msg_case = THREADSYNC__FRAME__MSG_POST;
    f.post = &p;
    uint64_t ids[2], seqs[2];
    for (int i = 0; i < 2; i++) {
        p.request_id = (uint64_t)i + 1;
        ck_assert_int_eq(ts_raw_send_frame(r, &f), TS_OK);
        Threadsync__Frame *in;
        ck_assert_int_eq(ts_raw_recv_nonping(r, 10000, &in), TS_OK);
        ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_RESULT);
        ids[i] = in->result->post->comment_id;
        seqs[i] = in->result->post->seq;
        ts_frame_free(in);
    }
    ck_assert_uint_eq(ids[0], ids[1]);
    ck_assert_uint_eq(seqs[0], seqs[1]);
    ts_raw_close(r);
    ck_assert_uint_eq(count_comments("site/idem"), 1);
}
END_TEST

START_TEST(test_handshake_refusals)
{
    struct ts_raw *r;
    int role;
    /* unknown token */
    ck_assert_int_eq(ts_raw_connect(node.addr, node.ca, TS_ALPN, &r), TS_OK);
    ck_assert_int_eq(ts_raw_hello(r, "not-a-token", &role), TS_E_UNAUTHENTICATED);
    expect_closed(r);
    ts_raw_close(r);
    /* a request before Hello */
    ck_assert_int_eq(ts_raw_connect(node.addr, node.ca, TS_ALPN, &r), TS_OK);
    ck_assert_int_eq(ts_raw_post(r, 1, "site/x", 0, "Ann", "early", NULL, NULL), TS_E_BAD_FRAME);
    expect_closed(r);
    ts_raw_close(r);
    /* no common version */
    ck_assert_int_eq(ts_raw_connect(node.addr, node.ca, TS_ALPN, &r), TS_OK);
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Hello h = THREADSYNC__HELLO__INIT;
    h.min_version = 2;
    h.max_version = 5;
    h.token = node.admin_token;
    f.msg_case = THREADSYNC__FRAME__MSG_HELLO;
    f.hello = &h;
    ck_assert_int_eq(ts_raw_send_frame(r, &f), TS_OK);
    expect_error(r, TS_E_UNSUPPORTED_VERSION, NULL);
    expect_closed(r);
    ts_raw_close(r);
    /* roles are reported */
    r = ts_testnode_connect_ok(&node, node.reader_token);
    ts_raw_close(r);
    ck_assert_int_eq(ts_raw_connect(node.addr, node.ca, TS_ALPN, &r), TS_OK);
    ck_assert_int_eq(ts_raw_hello(r, node.moderator_token, &role), TS_OK);
    ck_assert_int_eq(role, THREADSYNC__ROLE__MODERATOR);
    ts_raw_close(r);
}
END_TEST

START_TEST(test_tls_refusals)
{
    struct ts_raw *r;
    /* no ALPN offered: the handshake fails */
    ck_assert_int_eq(ts_raw_connect(node.addr, node.ca, NULL, &r), TS_E_TLS);
    /* a wrong ALPN */
    ck_assert_int_eq(ts_raw_connect(node.addr, node.ca, "http/1.1", &r), TS_E_TLS);
    /* a CA that did not sign the server: the client refuses */
    char other[512];
    snprintf(other, sizeof(other), "%s/other-ca.pem", node.dir);
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
             "-keyout %s/other-ca.key -out %s -subj /CN=other -days 2 2>/dev/null",
             node.dir, other);
    ck_assert_int_eq(system(cmd), 0);
    ck_assert_int_eq(ts_raw_connect(node.addr, other, TS_ALPN, &r), TS_E_TLS);
    /* plaintext: the server closes without ever answering in plaintext */
    int fd = ts_plain_connect(node.addr);
    ck_assert_int_ge(fd, 0);
    uint8_t hello_frame[] = {0, 0, 0, 2, 0x0A, 0x00};
    ck_assert_int_eq(write(fd, hello_frame, sizeof(hello_frame)), (ssize_t)sizeof(hello_frame));
    char buf[256];
    ssize_t n;
    size_t total = 0;
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        total += (size_t)n;
    /* whatever came back (an alert at most) is no threadsync frame */
    ck_assert_uint_lt(total, 64);
    close(fd);
    /* and the node still serves */
    r = ts_testnode_connect_ok(&node, node.admin_token);
    ts_raw_close(r);
}
END_TEST

START_TEST(test_oversized_frame)
{
    struct ts_raw *r = ts_testnode_connect_ok(&node, node.poster_token);
    uint64_t id;
    ck_assert_int_eq(ts_raw_post(r, 1, "site/big", 0, "Ann", "before", &id, NULL), TS_OK);
    /* a header announcing 2 MiB: refused before the body is sent */
    uint8_t hdr[4] = {0x00, 0x20, 0x00, 0x00};
    ck_assert_int_eq(ts_raw_send(r, hdr, 4), TS_OK);
    expect_error(r, TS_E_TOO_LARGE, NULL);
    expect_closed(r);
    ts_raw_close(r);
    /* before the handshake, the limit is 64 KiB */
    ck_assert_int_eq(ts_raw_connect(node.addr, node.ca, TS_ALPN, &r), TS_OK);
    uint8_t hdr2[4] = {0x00, 0x01, 0x00, 0x01};
    ck_assert_int_eq(ts_raw_send(r, hdr2, 4), TS_OK);
    expect_error(r, TS_E_TOO_LARGE, NULL);
    ts_raw_close(r);
    ck_assert_uint_eq(count_comments("site/big"), 1);
}
END_TEST

START_TEST(test_garbage_and_truncated_frames)
{
    struct ts_raw *r = ts_testnode_connect_ok(&node, node.poster_token);
    uint64_t id;
    ck_assert_int_eq(ts_raw_post(r, 1, "site/g", 0, "Ann", "before", &id, NULL), TS_OK);
    uint8_t garbage[] = {0, 0, 0, 6, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};
    ck_assert_int_eq(ts_raw_send(r, garbage, sizeof(garbage)), TS_OK);
    expect_error(r, TS_E_BAD_FRAME, NULL);
    expect_closed(r);
    ts_raw_close(r);

    /* zero length */
    r = ts_testnode_connect_ok(&node, node.poster_token);
    uint8_t zero[4] = {0, 0, 0, 0};
    ck_assert_int_eq(ts_raw_send(r, zero, 4), TS_OK);
    expect_error(r, TS_E_BAD_FRAME, NULL);
    ts_raw_close(r);

    /* a frame cut short, then close_notify: BAD_FRAME on the half-open side */
    r = ts_testnode_connect_ok(&node, node.poster_token);
    uint8_t partial[] = {0, 0, 0, 100, 0x52, 0x10};
    ck_assert_int_eq(ts_raw_send(r, partial, sizeof(partial)), TS_OK);
    ts_raw_shutdown_write(r);
    expect_error(r, TS_E_BAD_FRAME, NULL);
    ts_raw_close(r);

    /* an empty Frame (no oneof) and a server-only message from a client */
    r = ts_testnode_connect_ok(&node, node.poster_token);
    uint8_t with_len[] = {0, 0, 0, 3, 0xAA, 0x01, 0x00}; /* Frame{events: {}} */
    ck_assert_int_eq(ts_raw_send(r, with_len, sizeof(with_len)), TS_OK);
    expect_error(r, TS_E_BAD_FRAME, NULL);
    ts_raw_close(r);

    ck_assert_uint_eq(count_comments("site/g"), 1);
}
END_TEST

static long node_rss_kb(void)
{
    char path[64], line[256];
    long kb = 0;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)node.pid);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kb = atol(line + 6);
    fclose(f);
    return kb;
}

START_TEST(test_malformed_input_does_not_grow_memory)
{
    /* rounds of 100 connections sending assorted garbage: after a warm-up
     * round, more rounds must not leave memory behind */
    long rss[3];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 100; i++) {
            struct ts_raw *r = ts_testnode_connect_ok(&node, node.reader_token);
            uint8_t bad[] = {0, 0, 0, 9, 0x52, 7, 0x2A, 0xFF, 'A', 0, 'B', 0x08, 1};
            ts_raw_send(r, bad, sizeof(bad));
            uint8_t big[4] = {0x7F, 0, 0, 0};
            ts_raw_send(r, big, 4);
            Threadsync__Frame *in;
            while (ts_raw_recv(r, 2000, &in) == TS_OK)
                ts_frame_free(in);
            ts_raw_close(r);
        }
        rss[round] = node_rss_kb();
    }
    ck_assert_int_gt(rss[0], 0);
    /* 200 more connections may not add more than 2 MiB */
    ck_assert_msg(rss[2] - rss[0] < 2048, "rss %ld -> %ld -> %ld kB", rss[0], rss[1], rss[2]);
}
END_TEST

START_TEST(test_heartbeat_drops_silent_peer)
{
    ts_testnode_cleanup(&node);
    const char *extra[] = {"--heartbeat-ms", "200", NULL};
    ck_assert_int_eq(ts_testnode_start(&node, extra), TS_OK);
    struct ts_raw *r = ts_testnode_connect_ok(&node, node.reader_token);
    /* never answer Pings: after 3 beats the server says so and closes */
    Threadsync__Frame *in;
    int pings = 0, dropped = 0;
    for (;;) {
        int rc = ts_raw_recv(r, 5000, &in);
        if (rc != TS_OK)
            break;
        if (in->msg_case == THREADSYNC__FRAME__MSG_PING)
            pings++;
        if (in->msg_case == THREADSYNC__FRAME__MSG_ERROR &&
            in->error->code == THREADSYNC__ERROR_CODE__UNAVAILABLE)
            dropped = 1;
        ts_frame_free(in);
    }
    ck_assert_int_ge(pings, 1);
    ck_assert(dropped);
    ts_raw_close(r);
}
END_TEST

START_TEST(test_handshake_deadline)
{
    struct ts_raw *r;
    ck_assert_int_eq(ts_raw_connect(node.addr, node.ca, TS_ALPN, &r), TS_OK);
    expect_error(r, TS_E_BAD_FRAME, NULL); /* within 5 s + the 1 s tick */
    expect_closed(r);
    ts_raw_close(r);
}
END_TEST

/* The Hello is due 5 s after the TLS handshake, not after the accept: a
 * handshake that waited 3.5 s (as one does in a busy node's queue) still
 * gets its full time for the Hello. */
START_TEST(test_hello_clock_starts_after_tls)
{
    struct ts_raw *r;
    ck_assert_int_eq(ts_raw_connect_delayed(node.addr, node.ca, TS_ALPN, 3500, &r), TS_OK);
    usleep(3000 * 1000); /* 6.5 s after the accept, 3 s after the handshake */
    int role = -1;
    ck_assert_int_eq(ts_raw_hello(r, node.reader_token, &role), TS_OK);
    ck_assert_int_eq(role, THREADSYNC__ROLE__READER);
    ts_raw_close(r);
}
END_TEST

/* A peer that connects and never starts TLS is closed (10 s + the tick). */
START_TEST(test_tls_handshake_deadline)
{
    int fd = ts_plain_connect(node.addr);
    ck_assert_int_ge(fd, 0);
    struct timeval tv = {30, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char b;
    ck_assert_int_eq(recv(fd, &b, 1, 0), 0); /* EOF, not the 30 s timeout */
    close(fd);
}
END_TEST

START_TEST(test_embedded_defaults)
{
    ts_testnode_cleanup(&node);
    ck_assert_int_eq(ts_testnode_start_default(&node), TS_OK);
    const char *files[] = {"ca.pem", "ca.key", "server.pem", "server.key", "admin.token", "tokens"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char path[512];
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s", node.data_dir, files[i]);
        ck_assert_msg(stat(path, &st) == 0, "missing %s", path);
        ck_assert_msg((st.st_mode & 0777) == 0600, "%s has mode %o", path, st.st_mode & 0777);
    }
    ck_assert_uint_gt(strlen(node.admin_token), 16);
    int role;
    struct ts_raw *r;
    ck_assert_int_eq(ts_raw_connect(node.addr, node.ca, TS_ALPN, &r), TS_OK);
    ck_assert_int_eq(ts_raw_hello(r, node.admin_token, &role), TS_OK);
    ck_assert_int_eq(role, THREADSYNC__ROLE__ADMIN);
    uint64_t id;
    ck_assert_int_eq(ts_raw_post(r, 1, "demo/hello", 0, "Ann", "First!", &id, NULL), TS_OK);
    ts_raw_close(r);
    /* a restart keeps the identity (same CA) and the comment */
    char ca_before[4096] = "", ca_after[4096] = "";
    FILE *f = fopen(node.ca, "r");
    ck_assert_uint_gt(fread(ca_before, 1, sizeof(ca_before) - 1, f), 0);
    fclose(f);
    ck_assert_int_eq(ts_testnode_restart(&node, NULL), TS_OK);
    f = fopen(node.ca, "r");
    ck_assert_uint_gt(fread(ca_after, 1, sizeof(ca_after) - 1, f), 0);
    fclose(f);
    ck_assert_str_eq(ca_before, ca_after);
    ck_assert_uint_eq(count_comments("demo/hello"), 1);
}
END_TEST

/* Enough idle subscribers for the server to trim its heap once they are
 * set up (ts_memtrim: 32 connections of churn, then a quiet tick): every
 * one still receives every event afterwards, through TLS engines whose
 * buffers were all given back while idle. */
START_TEST(test_idle_subscribers_after_heap_trim)
{
    enum { SUBS = 40, POSTS = 3 };
    /* the node logs each trim at debug level */
    const char *debug[] = {"--log-level", "debug", NULL};
    ck_assert_int_eq(ts_testnode_restart_logged(&node, debug), TS_OK);
    size_t mark = ts_testnode_log_mark(&node);
    struct ts_raw *w[SUBS];
    for (int i = 0; i < SUBS; i++) {
        w[i] = ts_testnode_subscriber(&node, node.reader_token, 0, NULL);
    }
    /* Idle until the server's quiet tick has trimmed the heap. */
    ck_assert_msg(ts_testnode_wait_log(&node, mark, "event=heap_trim", 30000),
                  "no heap trim after %d connections", SUBS);
    struct ts_raw *p = ts_testnode_connect_ok(&node, node.poster_token);
    uint64_t ids[POSTS];
    for (int i = 0; i < POSTS; i++) {
        uint64_t seq;
        ck_assert_int_eq(
            ts_raw_post(p, (uint64_t)i + 1, "site/idle", 0, "Ann", "after idle", &ids[i], &seq),
            TS_OK);
    }
    for (int i = 0; i < SUBS; i++) {
        int seen = 0;
        while (seen < POSTS) {
            Threadsync__Frame *in;
            ck_assert_int_eq(ts_raw_recv_nonping(w[i], 10000, &in), TS_OK);
            if (in->msg_case == THREADSYNC__FRAME__MSG_EVENTS)
                for (size_t e = 0; e < in->events->n_events; e++) {
                    const Threadsync__Event *ev = in->events->events[e];
                    if (ev->comment && seen < POSTS && ev->comment->id == ids[seen])
                        seen++;
                }
            ts_frame_free(in);
        }
        ts_raw_close(w[i]);
    }
    ts_raw_close(p);
}
END_TEST

static Suite *server_suite(void)
{
    Suite *s = suite_create("threadsyncd");
    TCase *tc = tcase_create("protocol");
    tcase_add_checked_fixture(tc, start_node, stop_node);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_post_then_get_tree);
    tcase_add_test(tc, test_reader_cannot_post_and_sees_no_email);
    tcase_add_test(tc, test_subscribe_sees_posts_live);
    tcase_add_test(tc, test_idle_subscribers_after_heap_trim);
    tcase_add_test(tc, test_subscribe_since_replays_and_filters);
    tcase_add_test(tc, test_snapshot_when_out_of_window);
    tcase_add_test(tc, test_validation_changes_nothing);
    tcase_add_test(tc, test_idempotent_post);
    tcase_add_test(tc, test_handshake_refusals);
    tcase_add_test(tc, test_tls_refusals);
    tcase_add_test(tc, test_oversized_frame);
    tcase_add_test(tc, test_garbage_and_truncated_frames);
    tcase_add_test(tc, test_malformed_input_does_not_grow_memory);
    tcase_add_test(tc, test_heartbeat_drops_silent_peer);
    tcase_add_test(tc, test_handshake_deadline);
    tcase_add_test(tc, test_hello_clock_starts_after_tls);
    tcase_add_test(tc, test_tls_handshake_deadline);
    tcase_add_test(tc, test_embedded_defaults);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    return ts_check_run(server_suite());
}
