/*
 * Integration: the places where proto/PROTOCOL.md and a real node used to
 * disagree (issue 12, section 6), and the refusal messages the web edge
 * shows to readers. One real threadsyncd per case, spoken to over real TLS
 * with hand-built frames where the encoder could not produce the input
 * (two oneof members, a NUL inside a string).
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static struct ts_raw *connect_raw(void)
{
    struct ts_raw *r;
    ck_assert_int_eq(ts_raw_connect(node.addr, node.ca, TS_ALPN, &r), TS_OK);
    return r;
}

/* Hello as token; returns the Welcome frame (caller frees). */
static Threadsync__Frame *hello(struct ts_raw *r, const char *token)
{
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Hello h = THREADSYNC__HELLO__INIT;
    h.min_version = 1;
    h.client_name = "ts_protocol_test";
    h.token = (char *)token;
    f.msg_case = THREADSYNC__FRAME__MSG_HELLO;
    f.hello = &h;
    ck_assert_int_eq(ts_raw_send_frame(r, &f), TS_OK);
    Threadsync__Frame *in;
    ck_assert_int_eq(ts_raw_recv(r, 10000, &in), TS_OK);
    ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_WELCOME);
    return in;
}

/* Sends f (a request with rid set) and returns its answer, skipping pushes. */
static Threadsync__Frame *ask(struct ts_raw *r, const Threadsync__Frame *f)
{
    ck_assert_int_eq(ts_raw_send_frame(r, f), TS_OK);
    for (int i = 0; i < 1000; i++) {
        Threadsync__Frame *in;
        ck_assert_int_eq(ts_raw_recv_nonping(r, 10000, &in), TS_OK);
        if (in->msg_case == THREADSYNC__FRAME__MSG_RESULT ||
            in->msg_case == THREADSYNC__FRAME__MSG_ERROR)
            return in;
        ts_frame_free(in);
    }
    ck_abort_msg("no answer");
    return NULL;
}

/* Sends m (the message Frame field msg_case holds) as request rid and
 * returns its answer. */
static Threadsync__Frame *ask_msg(struct ts_raw *r, int msg_case, ProtobufCMessage *m, uint64_t rid)
{
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    ts_frame_set_request(&f, msg_case, m, rid);
    return ask(r, &f);
}

/* Expects an Error with code, field and exactly this message. */
static void expect_error_msg(Threadsync__Frame *in, int code, const char *field, const char *msg)
{
    ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_ERROR);
    ck_assert_str_eq(ts_err_name(in->error->code), ts_err_name(code));
    if (field)
        ck_assert_str_eq(in->error->field, field);
    if (msg)
        ck_assert_str_eq(in->error->message, msg);
    ts_frame_free(in);
}

static void expect_closed(struct ts_raw *r)
{
    Threadsync__Frame *in = NULL;
    ck_assert_int_eq(ts_raw_recv(r, 10000, &in), TS_E_CLOSED);
}

static Threadsync__Frame *get(struct ts_raw *r, uint64_t rid, const char *key)
{
    Threadsync__Get g = THREADSYNC__GET__INIT;
    g.thread_key = (char *)key;
    return ask_msg(r, THREADSYNC__FRAME__MSG_GET, &g.base, rid);
}

static Threadsync__Frame *subscribe(struct ts_raw *r, uint64_t rid, int all, char **keys,
                                    size_t n_keys, uint64_t since)
{
    Threadsync__Subscribe s = THREADSYNC__SUBSCRIBE__INIT;
    s.all = all;
    s.thread_keys = keys;
    s.n_thread_keys = n_keys;
    s.since_seq = since;
    return ask_msg(r, THREADSYNC__FRAME__MSG_SUBSCRIBE, &s.base, rid);
}

static Threadsync__Frame *token_add(struct ts_raw *r, uint64_t rid, const char *name)
{
    Threadsync__TokenAdd ta = THREADSYNC__TOKEN_ADD__INIT;
    ta.name = (char *)name;
    ta.role = THREADSYNC__ROLE__READER;
    return ask_msg(r, THREADSYNC__FRAME__MSG_TOKEN_ADD, &ta.base, rid);
}

/* Subscribes from 0 and follows snapshot and events until the cursor is at
 * head and the node says caught up; returns the cursor. */
static uint64_t follow_to(struct ts_raw *r, uint64_t rid, uint64_t head)
{
    Threadsync__Frame *in = subscribe(r, rid, 1, NULL, 0, 0);
    ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_RESULT);
    ts_frame_free(in);
    uint64_t cursor = 0;
    int caught_up = 0;
    for (int i = 0; i < 1000 && (cursor < head || !caught_up); i++) {
        ck_assert_int_eq(ts_raw_recv_nonping(r, 10000, &in), TS_OK);
        if (in->msg_case == THREADSYNC__FRAME__MSG_EVENTS) {
            cursor = in->events->last_seq;
            caught_up = in->events->caught_up;
        } else if (in->msg_case == THREADSYNC__FRAME__MSG_SNAPSHOT_END) {
            cursor = in->snapshot_end->seq;
        }
        ts_frame_free(in);
    }
    ck_assert(caught_up);
    return cursor;
}

/* Issue 12: Welcome.last_seq and GetResult.seq counted a TokenAdd's entry
 * while the cursor did not, so a subscriber waiting for Welcome.last_seq
 * waited forever. Now every seq a client sees is the newest event's. */
START_TEST(test_one_meaning_of_seq)
{
    struct ts_raw *a = connect_raw();
    Threadsync__Frame *w = hello(a, node.admin_token);
    ck_assert_uint_eq(w->welcome->last_seq, 0); /* a fresh node: no event yet */
    ts_frame_free(w);
    uint64_t id, post_seq;
    ck_assert_int_eq(ts_raw_post(a, 1, "seq/t", 0, "Ann", "first", &id, &post_seq), TS_OK);

    Threadsync__Frame *in = token_add(a, 2, "seq-reader");
    ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_RESULT);
    ck_assert_uint_gt(in->result->token_add->seq, post_seq); /* a log entry, not an event */
    ts_frame_free(in);

    struct ts_raw *r = connect_raw();
    w = hello(r, node.reader_token);
    uint64_t head = w->welcome->last_seq;
    ts_frame_free(w);
    ck_assert_uint_eq(head, post_seq);

    in = get(r, 3, "seq/t");
    ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_RESULT);
    ck_assert_uint_eq(in->result->get->seq, head);
    ts_frame_free(in);

    Threadsync__Digest dg = THREADSYNC__DIGEST__INIT;
    in = ask_msg(r, THREADSYNC__FRAME__MSG_DIGEST, &dg.base, 4);
    ck_assert_uint_eq(in->result->digest->seq, head);
    ts_frame_free(in);

    Threadsync__StateDigest sd = THREADSYNC__STATE_DIGEST__INIT;
    in = ask_msg(a, THREADSYNC__FRAME__MSG_STATE_DIGEST, &sd.base, 5);
    ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_RESULT);
    ck_assert_uint_eq(in->result->state_digest->seq, head);
    ts_frame_free(in);

    /* The client of the issue: subscribe from 0 and wait for the cursor to
     * reach Welcome.last_seq. It must get there, and see caught_up. */
    ck_assert_uint_eq(follow_to(r, 6, head), head);
    ts_raw_close(r);
    ts_raw_close(a);
}
END_TEST

/* A node that restarts from a snapshot taken at an entry that made no
 * event (a TokenAdd) keeps the same seq: the snapshot carries it. */
START_TEST(test_seq_survives_snapshot)
{
    const char *extra[] = {"--snapshot-threshold", "16", "--snapshot-trailing", "4", NULL};
    ck_assert_int_eq(ts_testnode_restart(&node, extra), TS_OK);
    struct ts_raw *a = ts_testnode_connect_ok(&node, node.admin_token);
    uint64_t id, post_seq = 0;
    for (int i = 0; i < 20; i++)
        ck_assert_int_eq(
            ts_raw_post(a, (uint64_t)i + 1, "snapseq/t", 0, "Ann", "x", &id, &post_seq), TS_OK);
    /* more entries without events than the threshold: a snapshot is taken
     * at one of them */
    for (int i = 0; i < 40; i++) {
        char name[32];
        snprintf(name, sizeof(name), "snapseq-%d", i);
        Threadsync__Frame *in = token_add(a, 100 + (uint64_t)i, name);
        ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_RESULT);
        ts_frame_free(in);
    }
    ts_raw_close(a);
    ck_assert_int_eq(ts_testnode_restart(&node, extra), TS_OK);
    struct ts_raw *r = connect_raw();
    Threadsync__Frame *w = hello(r, node.reader_token);
    ck_assert_uint_eq(w->welcome->last_seq, post_seq);
    ts_frame_free(w);
    ck_assert_uint_eq(follow_to(r, 1, post_seq), post_seq);
    ts_raw_close(r);
}
END_TEST

/* PROTOCOL.md "Events": zero events are possible, as the caught-up signal
 * of a subscriber that starts at the head. */
START_TEST(test_subscribe_at_head_gets_empty_caught_up)
{
    struct ts_raw *p = ts_testnode_connect_ok(&node, node.poster_token);
    uint64_t id, seq;
    ck_assert_int_eq(ts_raw_post(p, 1, "head/t", 0, "Ann", "x", &id, &seq), TS_OK);
    Threadsync__Frame *in = subscribe(p, 2, 1, NULL, 0, seq);
    ck_assert_uint_eq(in->result->subscribe->from_seq, seq);
    ck_assert(!in->result->subscribe->snapshot);
    ts_frame_free(in);
    ck_assert_int_eq(ts_raw_recv_nonping(p, 10000, &in), TS_OK);
    ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_EVENTS);
    ck_assert_uint_eq(in->events->n_events, 0);
    ck_assert_uint_eq(in->events->last_seq, seq);
    ck_assert(in->events->caught_up);
    ts_frame_free(in);
    ts_raw_close(p);
}
END_TEST

/* Frame is one oneof: two different members (Ping and Get) are BAD_FRAME,
 * not "the last one wins". */
START_TEST(test_two_oneof_members_are_bad_frame)
{
    struct ts_raw *r = ts_testnode_connect_ok(&node, node.reader_token);
    /* Frame{ping: Ping{nonce: 7}, get: Get{request_id: 1, thread_key: "t"}} */
    const uint8_t body[] = {0x22, 0x02, 0x08, 0x07, 0x5a, 0x05, 0x08, 0x01, 0x12, 0x01, 't'};
    uint8_t wire[4 + sizeof(body)] = {0, 0, 0, sizeof(body)};
    memcpy(wire + 4, body, sizeof(body));
    ck_assert_int_eq(ts_raw_send(r, wire, sizeof(wire)), TS_OK);
    Threadsync__Frame *in;
    ck_assert_int_eq(ts_raw_recv_nonping(r, 10000, &in), TS_OK);
    ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_ERROR);
    ck_assert_int_eq(in->error->code, THREADSYNC__ERROR_CODE__BAD_FRAME);
    ck_assert_uint_eq(in->error->request_id, 0);
    ts_frame_free(in);
    expect_closed(r);
    ts_raw_close(r);
}
END_TEST

static size_t put_varint(uint8_t *out, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        out[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    out[n++] = (uint8_t)v;
    return n;
}

/* A Hello frame by hand: client_name may hold any bytes. */
static void send_hello_bytes(struct ts_raw *r, const uint8_t *name, size_t name_len,
                             const char *token)
{
    size_t tok_len = strlen(token);
    uint8_t *hb = malloc(name_len + tok_len + 32);
    size_t h = 0;
    hb[h++] = 0x08; /* min_version 1 */
    hb[h++] = 0x01;
    hb[h++] = 0x1a; /* client_name */
    h += put_varint(hb + h, name_len);
    memcpy(hb + h, name, name_len);
    h += name_len;
    hb[h++] = 0x22; /* token */
    h += put_varint(hb + h, tok_len);
    memcpy(hb + h, token, tok_len);
    h += tok_len;
    uint8_t *w = malloc(h + 16);
    size_t n = 4;
    w[n++] = 0x0a; /* Frame.hello */
    n += put_varint(w + n, h);
    memcpy(w + n, hb, h);
    n += h;
    size_t body = n - 4;
    w[0] = (uint8_t)(body >> 24);
    w[1] = (uint8_t)(body >> 16);
    w[2] = (uint8_t)(body >> 8);
    w[3] = (uint8_t)body;
    ck_assert_int_eq(ts_raw_send(r, w, n), TS_OK);
    free(w);
    free(hb);
}

static void expect_hello_refused(const uint8_t *name, size_t len, const char *msg)
{
    struct ts_raw *r = connect_raw();
    send_hello_bytes(r, name, len, node.reader_token);
    Threadsync__Frame *in;
    ck_assert_int_eq(ts_raw_recv(r, 10000, &in), TS_OK);
    ck_assert_uint_eq(in->msg_case == THREADSYNC__FRAME__MSG_ERROR ? in->error->request_id : 1, 0);
    expect_error_msg(in, TS_E_INVALID_ARGUMENT, "client_name", msg);
    expect_closed(r);
    ts_raw_close(r);
}

/* client_name: at most 128 bytes of single-line text, checked before the
 * token, and refused as what it is, not as "unknown token". */
START_TEST(test_hello_strings_validated)
{
    uint8_t name[60000];
    memset(name, 'n', sizeof(name));
    struct ts_raw *r = connect_raw();
    send_hello_bytes(r, name, 128, node.reader_token);
    Threadsync__Frame *in;
    ck_assert_int_eq(ts_raw_recv(r, 10000, &in), TS_OK);
    ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_WELCOME);
    ts_frame_free(in);
    ts_raw_close(r);

    expect_hello_refused(name, 200, "client name must be at most 128 bytes, got 200");
    expect_hello_refused(name, sizeof(name), "client name must be at most 128 bytes, got 60000");
    expect_hello_refused((const uint8_t *)"a\0b", 3,
                         "client_name must be well-formed UTF-8 without NUL");
    expect_hello_refused((const uint8_t *)"a\xC3", 2,
                         "client_name must be well-formed UTF-8 without NUL");
    expect_hello_refused((const uint8_t *)"a\xC2\x85", 3,
                         "client name may not contain control characters, got U+0085 at offset 1");
}
END_TEST

/* Subscribe with both all and thread_keys is refused, not "all wins". */
START_TEST(test_subscribe_all_and_keys_refused)
{
    struct ts_raw *r = ts_testnode_connect_ok(&node, node.reader_token);
    char *keys[] = {"a"};
    expect_error_msg(subscribe(r, 1, 1, keys, 1, 0), TS_E_INVALID_ARGUMENT, "thread_keys",
                     "set either all or thread_keys, not both");
    /* the connection is open and may still subscribe */
    Threadsync__Frame *in = subscribe(r, 2, 0, keys, 1, 0);
    ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_RESULT);
    ts_frame_free(in);
    expect_error_msg(subscribe(r, 3, 0, NULL, 0, 0), TS_E_INVALID_ARGUMENT, "subscribe",
                     "already subscribed");
    ts_raw_close(r);
}
END_TEST

static Threadsync__Frame *post(struct ts_raw *r, uint64_t rid, const char *key, const char *name,
                               const char *body)
{
    Threadsync__Post p = THREADSYNC__POST__INIT;
    p.idempotency_key = "msg-key";
    p.thread_key = (char *)key;
    p.author_name = (char *)name;
    p.body = (char *)body;
    return ask_msg(r, THREADSYNC__FRAME__MSG_POST, &p.base, rid);
}

/* Issue 12 section 4: each refusal says what was wrong and what is
 * allowed (the web edge shows these to readers). */
START_TEST(test_refusals_say_what_is_wrong)
{
    struct ts_raw *r = ts_testnode_connect_ok(&node, node.poster_token);
    expect_error_msg(post(r, 1, "msg/t", "", "hello"), TS_E_INVALID_ARGUMENT, "author_name",
                     "author name must be 1 to 64 characters, got 0");
    expect_error_msg(post(r, 2, "msg/t", "Ann", ""), TS_E_INVALID_ARGUMENT, "body",
                     "body must be 1 to 16384 bytes, got 0");
    expect_error_msg(post(r, 3, "msg/t", "Ann", "bad \xC2\x9B csi"), TS_E_INVALID_ARGUMENT, "body",
                     "body may not contain control characters other than tab, newline and "
                     "carriage return, got U+009B at offset 4");
    expect_error_msg(post(r, 4, "msg/t", "Ann\x7F", "x"), TS_E_INVALID_ARGUMENT, "author_name",
                     "author name may not contain control characters, got U+007F at offset 3");
    expect_error_msg(get(r, 5, "nope"), TS_E_NOT_FOUND, "thread_key", "no thread 'nope'");
    expect_error_msg(get(r, 6, ""), TS_E_INVALID_ARGUMENT, "thread_key",
                     "thread key must be 1 to 256 bytes, got 0");
    /* a string the decoder refuses names its field too */
    const uint8_t body[] = {0x5a, 0x05, 0x08, 0x07, 0x12, 0x01, 0xC3}; /* Get{7, "\xC3"} */
    uint8_t wire[4 + sizeof(body)] = {0, 0, 0, sizeof(body)};
    memcpy(wire + 4, body, sizeof(body));
    ck_assert_int_eq(ts_raw_send(r, wire, sizeof(wire)), TS_OK);
    Threadsync__Frame *in;
    ck_assert_int_eq(ts_raw_recv_nonping(r, 10000, &in), TS_OK);
    ck_assert_uint_eq(in->msg_case == THREADSYNC__FRAME__MSG_ERROR ? in->error->request_id : 0, 7);
    expect_error_msg(in, TS_E_INVALID_ARGUMENT, "thread_key",
                     "thread_key must be well-formed UTF-8 without NUL");
    Threadsync__Post pp = THREADSYNC__POST__INIT;
    pp.idempotency_key = "orphan";
    pp.thread_key = "msg/o";
    pp.parent_id = 999999;
    pp.author_name = "Ann";
    pp.body = "orphan";
    expect_error_msg(ask_msg(r, THREADSYNC__FRAME__MSG_POST, &pp.base, 9), TS_E_NOT_FOUND,
                     "parent_id", "parent_id names no comment of this thread (0 for top level)");
    struct ts_raw *reader = ts_testnode_connect_ok(&node, node.reader_token);
    expect_error_msg(post(reader, 1, "msg/t", "Ann", "x"), TS_E_FORBIDDEN, NULL,
                     "this request needs a poster token or higher; this token is reader");
    ts_raw_close(reader);
    /* nothing above was stored */
    expect_error_msg(get(r, 8, "msg/t"), TS_E_NOT_FOUND, "thread_key", "no thread 'msg/t'");
    ts_raw_close(r);
}
END_TEST

static Suite *protocol_suite(void)
{
    Suite *s = suite_create("ts_protocol");
    TCase *tc = tcase_create("protocol");
    tcase_add_checked_fixture(tc, start_node, stop_node);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_one_meaning_of_seq);
    tcase_add_test(tc, test_seq_survives_snapshot);
    tcase_add_test(tc, test_subscribe_at_head_gets_empty_caught_up);
    tcase_add_test(tc, test_two_oneof_members_are_bad_frame);
    tcase_add_test(tc, test_hello_strings_validated);
    tcase_add_test(tc, test_subscribe_all_and_keys_refused);
    tcase_add_test(tc, test_refusals_say_what_is_wrong);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    return ts_check_run(protocol_suite());
}
