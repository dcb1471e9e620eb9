/*
 * ts_client: the logic that needs no server (backoff bounds, address
 * parsing, server rotation and redirects, idempotency keys, the request
 * table's exactly-once callbacks), then the client on a real loop against
 * a closed port: it reports a connection failure quickly, never hangs, and
 * answers every request exactly once on close.
 */
#include <check.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "ts_check_main.h"
#include "threadsync.h"
#include "ts_client_int.h"
#include "ts_conn.h"
#include "ts_frame.h"
#include "ts_testcert.h"
#include "ts_tls.h"
#include "ts_valid.h"

/* ---- backoff -------------------------------------------------------------- */

/* Check's ck_assert marks a point through a pipe on every pass; a few
 * million of them would take seconds, so the loop collects and asserts
 * once. */
#define EXPECT(cond)                                                                               \
    do {                                                                                           \
        if (!(cond) && !bad)                                                                       \
            bad = #cond;                                                                           \
    } while (0)

START_TEST(test_backoff_bounds)
{
    static const unsigned mins[] = {1, 100, 250, 1000};
    static const unsigned maxs[] = {1, 5000, 10000, 60000};
    static const uint32_t rnds[] = {0, 1, 2, 12345, 0x7fffffff, 0xffffffff};
    const char *bad = NULL;
    for (size_t a = 0; a < 4; a++) {
        for (size_t b = 0; b < 4; b++) {
            unsigned lo = mins[a], hi = maxs[b] < lo ? lo : maxs[b];
            uint64_t nominal_prev = 0;
            for (unsigned attempt = 1; attempt < 64; attempt++) {
                /* The nominal delay doubles from min and stops at max. */
                uint64_t nominal = lo;
                for (unsigned k = 1; k < attempt && nominal < hi; k++)
                    nominal *= 2;
                if (nominal > hi)
                    nominal = hi;
                EXPECT(nominal >= nominal_prev);
                nominal_prev = nominal;
                uint64_t seen_lo = UINT64_MAX, seen_hi = 0;
                for (uint32_t r = 0; r < 2000 + sizeof(rnds) / sizeof(rnds[0]); r++) {
                    uint32_t rnd = r < 2000 ? r * 2654435761u : rnds[r - 2000];
                    uint64_t d = ts__backoff_delay(mins[a], maxs[b], attempt, rnd);
                    EXPECT(d >= nominal / 2);
                    EXPECT(d <= nominal);
                    EXPECT(d <= hi);
                    seen_lo = d < seen_lo ? d : seen_lo;
                    seen_hi = d > seen_hi ? d : seen_hi;
                }
                /* Jitter really spreads: both ends of the range are reached
                 * when the range is wide enough to tell. */
                if (nominal >= 100) {
                    EXPECT(seen_lo < nominal / 2 + nominal / 10);
                    EXPECT(seen_hi > nominal - nominal / 10);
                }
            }
        }
    }
    ck_assert_msg(bad == NULL, "violated: %s", bad);
    /* Attempt 0 is treated as the first retry. */
    ck_assert_uint_le(ts__backoff_delay(100, 1000, 0, 0xffffffff), 100);
    /* The cap holds for huge attempt numbers (no overflow). */
    ck_assert_uint_le(ts__backoff_delay(100, 1000, 4000000000u, 0xffffffff), 1000);
    ck_assert_uint_ge(ts__backoff_delay(100, 1000, 4000000000u, 0), 500);
}
END_TEST

/* ---- addresses and rotation ------------------------------------------------------ */

START_TEST(test_server_parse)
{
    static const struct {
        const char *in;
        const char *host;
        unsigned port;
    } ok[] = {
        {"127.0.0.1:7420", "127.0.0.1", 7420}, {"example.org:1", "example.org", 1},
        {"localhost", "localhost", 7420},      {"[::1]:9000", "::1", 9000},
        {"[fe80::1]", "fe80::1", 7420},        {"h:65535", "h", 65535},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        char *host = NULL;
        uint16_t port = 0;
        ck_assert_int_eq(ts__server_parse(ok[i].in, &host, &port), TS_OK);
        ck_assert_str_eq(host, ok[i].host);
        ck_assert_uint_eq(port, ok[i].port);
        free(host);
    }
    static const char *const bad[] = {"",     ":7420", "h:",     "h:0",  "h:65536", "h:12x", "::1",
                                      "[::1", "[]:1",  "[::1]x", "h:-1", "h: 1",    "[::1]:"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *host = NULL;
        uint16_t port = 0;
        ck_assert_msg(ts__server_parse(bad[i], &host, &port) == TS_E_CONFIG, "accepted '%s'",
                      bad[i]);
        ck_assert_ptr_null(host);
    }
}
END_TEST

START_TEST(test_dial_rotation)
{
    const char *list[] = {"a:1", "b:2", "c:3"};
    struct ts__dial d;
    ck_assert_int_eq(ts__dial_init(&d, list, 3), TS_OK);
    /* A working server keeps being used; each failure moves on, wrapping. */
    ck_assert_str_eq(ts__dial_pick(&d)->text, "a:1");
    ck_assert_str_eq(ts__dial_pick(&d)->text, "a:1");
    ts__dial_failed(&d);
    ck_assert_str_eq(ts__dial_pick(&d)->text, "b:2");
    ts__dial_failed(&d);
    ck_assert_str_eq(ts__dial_pick(&d)->host, "c");
    ck_assert_uint_eq(ts__dial_pick(&d)->port, 3);
    ts__dial_failed(&d);
    ck_assert_str_eq(ts__dial_pick(&d)->text, "a:1");

    /* A redirect goes first, once; its failure returns to the list where it
     * was, without skipping a server. */
    ck_assert_int_eq(ts__dial_redirect(&d, "leader:9"), TS_OK);
    const struct ts__server *s = ts__dial_pick(&d);
    ck_assert_str_eq(s->text, "leader:9");
    /* A newer redirect while connected to the old one: the old stays valid
     * (the connection's messages point at it). */
    ck_assert_int_eq(ts__dial_redirect(&d, "leader2:10"), TS_OK);
    ck_assert_str_eq(s->text, "leader:9");
    ck_assert_str_eq(ts__dial_pick(&d)->text, "leader2:10");
    ts__dial_failed(&d);
    ck_assert_str_eq(ts__dial_pick(&d)->text, "a:1");
    ts__dial_failed(&d);
    ck_assert_str_eq(ts__dial_pick(&d)->text, "b:2");

    ck_assert_int_eq(ts__dial_redirect(&d, "bad::"), TS_E_CONFIG);
    ck_assert_str_eq(ts__dial_pick(&d)->text, "b:2");
    ts__dial_free(&d);

    const char *badlist[] = {"a:1", "nope:0"};
    ck_assert_int_eq(ts__dial_init(&d, badlist, 2), TS_E_CONFIG);
    ck_assert_int_eq(ts__dial_init(&d, list, 0), TS_E_CONFIG);
}
END_TEST

START_TEST(test_idem_key)
{
    char a[TS__IDEM_KEY_LEN + 1], b[TS__IDEM_KEY_LEN + 1];
    ck_assert_int_eq(ts__idem_key(a), TS_OK);
    ck_assert_int_eq(ts__idem_key(b), TS_OK);
    ck_assert_uint_eq(strlen(a), 32);
    for (size_t i = 0; i < 32; i++)
        ck_assert_msg((a[i] >= '0' && a[i] <= '9') || (a[i] >= 'a' && a[i] <= 'f'),
                      "not lowercase hex: %s", a);
    /* 128 random bits: a collision here means the RNG is not used. */
    ck_assert_str_ne(a, b);
    /* What the server will check (PROTOCOL.md: 1..64 printable). */
    Threadsync__Post p = THREADSYNC__POST__INIT;
    p.idempotency_key = a;
    p.thread_key = "site/a";
    p.author_name = "Ann";
    p.body = "hi";
    ck_assert_int_eq(ts_valid_post(&p, NULL), TS_OK);
}
END_TEST

/* ---- request table ------------------------------------------------------------------ */

struct tally {
    int calls[64];
    int errs[64];
    struct ts__reqs *table; /* for the re-entrant case */
    int appended;
};

static struct tally T;

static void count_post(void *arg, int err, const Threadsync__Error *detail,
                       const Threadsync__PostResult *res)
{
    size_t i = (size_t)(uintptr_t)arg;
    T.calls[i]++;
    T.errs[i] = err;
    if (err == TS_OK)
        ck_assert_uint_eq(res->comment_id, 1000 + i);
    else
        ck_assert_ptr_null(res);
    (void)detail;
}

static void count_get(void *arg, int err, const Threadsync__Error *detail,
                      const Threadsync__GetResult *res)
{
    size_t i = (size_t)(uintptr_t)arg;
    T.calls[i]++;
    T.errs[i] = err;
    if (err == TS_OK)
        ck_assert_uint_eq(res->seq, 2000 + i);
    (void)detail;
}

/* The request's message as the library keeps it: packed, owned. */
static void set_packed(struct ts__req *r, const ProtobufCMessage *m)
{
    r->packed_len = protobuf_c_message_get_packed_size(m);
    r->packed = malloc(r->packed_len ? r->packed_len : 1);
    ck_assert_ptr_nonnull(r->packed);
    protobuf_c_message_pack(m, r->packed);
}

static struct ts__req *mk(size_t i)
{
    struct ts__req *r = calloc(1, sizeof(*r));
    r->arg =
        (void *)(uintptr_t)i; /* NOLINT(performance-no-int-to-ptr): a tag, never dereferenced */
    r->id = 100 + i;
    if (i % 2) {
        r->result_case = THREADSYNC__RESULT__BODY_GET;
        r->cb.get = count_get;
        Threadsync__Get g = THREADSYNC__GET__INIT;
        g.thread_key = "k";
        set_packed(r, &g.base);
    } else {
        r->result_case = THREADSYNC__RESULT__BODY_POST;
        r->cb.post = count_post;
        Threadsync__Post p = THREADSYNC__POST__INIT;
        set_packed(r, &p.base);
    }
    return r;
}

/* A callback that submits another request while the table is failed: that
 * one must be answered too, once. */
static void post_appends(void *arg, int err, const Threadsync__Error *detail,
                         const Threadsync__PostResult *res)
{
    count_post(arg, err, detail, res);
    if (!T.appended) {
        T.appended = 1;
        ts__reqs_append(T.table, mk(40));
    }
}

START_TEST(test_reqs_exactly_once)
{
    memset(&T, 0, sizeof(T));
    struct ts__reqs t = {0};
    T.table = &t;
    enum { N = 20 };
    for (size_t i = 0; i < N; i++)
        ts__reqs_append(&t, mk(i));
    t.head->cb.post = post_appends;
    ck_assert_uint_eq(t.n, N);
    ck_assert_ptr_null(ts__reqs_find(&t, 0));
    ck_assert_ptr_null(ts__reqs_find(&t, 99));

    /* Answer every third one, as the dispatcher does: find, unlink, finish. */
    Threadsync__PostResult pr = THREADSYNC__POST_RESULT__INIT;
    Threadsync__GetResult gr = THREADSYNC__GET_RESULT__INIT;
    for (size_t i = 1; i < N; i += 3) {
        struct ts__req *r = ts__reqs_find(&t, 100 + i);
        ck_assert_ptr_nonnull(r);
        Threadsync__Result res = THREADSYNC__RESULT__INIT;
        if (r->result_case == THREADSYNC__RESULT__BODY_POST) {
            pr.comment_id = 1000 + i;
            res.body_case = THREADSYNC__RESULT__BODY_POST;
            res.post = &pr;
        } else {
            gr.seq = 2000 + i;
            res.body_case = THREADSYNC__RESULT__BODY_GET;
            res.get = &gr;
        }
        ts__reqs_unlink(&t, r);
        ts__req_finish(r, TS_OK, NULL, &res);
        ck_assert_ptr_null(ts__reqs_find(&t, 100 + i));
    }
    /* Re-sending clears ids; an id-less request is never found. */
    t.tail->id = 0;
    ck_assert_ptr_null(ts__reqs_find(&t, 100 + N - 1));

    ts__reqs_fail_all(&t, TS_E_CLOSED, NULL);
    ck_assert_ptr_null(t.head);
    ck_assert_ptr_null(t.tail);
    ck_assert_uint_eq(t.n, 0);
    for (size_t i = 0; i < N; i++) {
        ck_assert_msg(T.calls[i] == 1, "request %zu answered %d times", i, T.calls[i]);
        ck_assert_int_eq(T.errs[i], (i % 3 == 1) ? TS_OK : TS_E_CLOSED);
    }
    ck_assert_int_eq(T.calls[40], 1);
    ck_assert_int_eq(T.errs[40], TS_E_CLOSED);
}
END_TEST

START_TEST(test_reqs_unlink_middle)
{
    memset(&T, 0, sizeof(T));
    struct ts__reqs t = {0};
    struct ts__req *r[3];
    for (size_t i = 0; i < 3; i++)
        ts__reqs_append(&t, r[i] = mk(i));
    ts__reqs_unlink(&t, r[1]);
    ck_assert_ptr_eq(t.head, r[0]);
    ck_assert_ptr_eq(r[0]->next, r[2]);
    ck_assert_ptr_eq(r[2]->prev, r[0]);
    ts__reqs_unlink(&t, r[2]);
    ck_assert_ptr_eq(t.tail, r[0]);
    ts__reqs_append(&t, r[1]);
    ts__reqs_append(&t, r[2]);
    ck_assert_ptr_eq(ts__reqs_find(&t, 101), r[1]);
    ts__reqs_fail_all(&t, TS_E_TIMEOUT, NULL);
    for (size_t i = 0; i < 3; i++)
        ck_assert_int_eq(T.calls[i], 1);
}
END_TEST

/* ---- on a real loop ------------------------------------------------------------ */

/* A scripted stand-in for threadsyncd: real TLS through ts_conn, just enough
 * protocol for the client's reconnect, retry and resume logic. Each fake
 * listens on 127.0.0.1 port 0. */
enum fake_mode {
    FAKE_OK = 0,
    FAKE_DROP_FIRST_POST,  /* close instead of answering the first Post */
    FAKE_NOT_LEADER,       /* answer Posts NOT_LEADER -> redirect_to */
    FAKE_UNAVAILABLE_ONCE, /* first Post: UNAVAILABLE, retry after 30 ms */
    FAKE_UNAUTH,           /* refuse Hello */
    FAKE_SILENT,           /* after Welcome, never say anything again */
    FAKE_SUB_DROP,         /* first Subscribe: events to 42, then drop */
    FAKE_SNAPSHOT,         /* Subscribe: snapshot as of 77 */
};

struct fake {
    uv_tcp_t listener;
    uint16_t port;
    char addr[32];
    enum fake_mode mode;
    const char *redirect_to;
    uint32_t heartbeat_ms;
    struct ts_conn *conns[8];
    int hellos, posts, gets, subs, pings, pongs, closing;
    char keys[8][65];
    uint64_t since[8];
    uint64_t pong_nonce;
};

static struct {
    char dir[256];
    char ca[300];
    uv_loop_t loop;
    SSL_CTX *srv_ctx;
    struct fake f[2];
    struct ts_client *c;
    int closed; /* client close callbacks */
    int post_calls, post_err, get_calls, get_err, sub_errs, sub_err, sub_results;
    uint64_t post_id, get_seq, events_last;
    int detail_code;
    char detail_field[64];
    int states[8]; /* count per enum ts_client_state */
    int last_state_err;
    int stop_after_disconnects;
    int events_batches, snap_begin, snap_chunks, snap_end;
    uint64_t cursor_in_cb;
} N;

static void srv_send(struct ts_conn *conn, Threadsync__Frame *f)
{
    ck_assert_int_eq(ts_conn_send_frame(conn, f), TS_OK);
}

static void srv_error(struct ts_conn *conn, uint64_t rid, int code, const char *leader,
                      uint32_t retry)
{
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Error e = THREADSYNC__ERROR__INIT;
    e.request_id = rid;
    e.code = code;
    e.message = "scripted";
    e.field = code == TS_E_INVALID_ARGUMENT ? "body" : "";
    e.leader_address = (char *)(leader ? leader : "");
    e.retry_after_ms = retry;
    f.msg_case = THREADSYNC__FRAME__MSG_ERROR;
    f.error = &e;
    srv_send(conn, &f);
}

static void srv_result(struct ts_conn *conn, Threadsync__Result *r)
{
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    f.msg_case = THREADSYNC__FRAME__MSG_RESULT;
    f.result = r;
    srv_send(conn, &f);
}

static void srv_events(struct ts_conn *conn, uint64_t seq, uint64_t last_seq)
{
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Events ev = THREADSYNC__EVENTS__INIT;
    Threadsync__Event e = THREADSYNC__EVENT__INIT;
    Threadsync__Thread t = THREADSYNC__THREAD__INIT;
    Threadsync__Event *evs[1] = {&e};
    t.id = 1;
    t.key = "site/a";
    e.seq = seq;
    e.thread = &t;
    ev.n_events = 1;
    ev.events = evs;
    ev.last_seq = last_seq;
    f.msg_case = THREADSYNC__FRAME__MSG_EVENTS;
    f.events = &ev;
    srv_send(conn, &f);
}

static void fake_on_frame(struct ts_conn *conn, Threadsync__Frame *f, int status,
                          const char *bad_field)
{
    struct fake *k = ts_conn_data(conn);
    ck_assert_int_eq(status, TS_OK);
    (void)bad_field;
    Threadsync__Frame out = THREADSYNC__FRAME__INIT;
    Threadsync__Result res = THREADSYNC__RESULT__INIT;
    switch (f->msg_case) {
    case THREADSYNC__FRAME__MSG_HELLO: {
        k->hellos++;
        ck_assert_uint_eq(f->hello->min_version, 1);
        ck_assert_str_eq(f->hello->token, "tok");
        if (k->mode == FAKE_UNAUTH) {
            srv_error(conn, 0, TS_E_UNAUTHENTICATED, NULL, 0);
            ts_conn_close(conn, TS_OK);
            break;
        }
        Threadsync__Welcome w = THREADSYNC__WELCOME__INIT;
        w.version = 1;
        w.node_id = 1;
        w.role = THREADSYNC__ROLE__ADMIN;
        w.max_frame = 1u << 20;
        w.heartbeat_ms = k->heartbeat_ms;
        out.msg_case = THREADSYNC__FRAME__MSG_WELCOME;
        out.welcome = &w;
        srv_send(conn, &out);
        break;
    }
    case THREADSYNC__FRAME__MSG_POST: {
        ck_assert_uint_ne(f->post->request_id, 0);
        /* the first keys are kept for the tests that compare them; a
         * redirect loop may send more posts than that */
        if (k->posts < (int)(sizeof(k->keys) / sizeof(k->keys[0])))
            snprintf(k->keys[k->posts], sizeof(k->keys[0]), "%s", f->post->idempotency_key);
        int n = ++k->posts;
        if (k->mode == FAKE_SILENT)
            break;
        if (k->mode == FAKE_DROP_FIRST_POST && n == 1) {
            ts_conn_close(conn, TS_OK);
            break;
        }
        if (k->mode == FAKE_NOT_LEADER) {
            srv_error(conn, f->post->request_id, TS_E_NOT_LEADER, k->redirect_to, 0);
            break;
        }
        if (k->mode == FAKE_UNAVAILABLE_ONCE && n == 1) {
            srv_error(conn, f->post->request_id, TS_E_UNAVAILABLE, NULL, 30);
            break;
        }
        if (strcmp(f->post->body, "invalid") == 0) {
            srv_error(conn, f->post->request_id, TS_E_INVALID_ARGUMENT, NULL, 0);
            break;
        }
        Threadsync__PostResult pr = THREADSYNC__POST_RESULT__INIT;
        pr.comment_id = 500 + (uint64_t)(k - N.f);
        pr.seq = 501;
        pr.thread_id = 1;
        pr.status = THREADSYNC__STATUS__VISIBLE;
        res.request_id = f->post->request_id;
        res.body_case = THREADSYNC__RESULT__BODY_POST;
        res.post = &pr;
        srv_result(conn, &res);
        break;
    }
    case THREADSYNC__FRAME__MSG_GET: {
        k->gets++;
        Threadsync__GetResult gr = THREADSYNC__GET_RESULT__INIT;
        Threadsync__Thread t = THREADSYNC__THREAD__INIT;
        t.key = f->get->thread_key;
        gr.thread = &t;
        gr.seq = 321;
        res.request_id = f->get->request_id;
        res.body_case = THREADSYNC__RESULT__BODY_GET;
        res.get = &gr;
        srv_result(conn, &res);
        break;
    }
    case THREADSYNC__FRAME__MSG_SUBSCRIBE: {
        ck_assert_int_lt(k->subs, 8);
        k->since[k->subs] = f->subscribe->since_seq;
        int n = ++k->subs;
        Threadsync__SubscribeResult sr = THREADSYNC__SUBSCRIBE_RESULT__INIT;
        sr.from_seq = f->subscribe->since_seq;
        sr.snapshot = k->mode == FAKE_SNAPSHOT;
        res.request_id = f->subscribe->request_id;
        res.body_case = THREADSYNC__RESULT__BODY_SUBSCRIBE;
        res.subscribe = &sr;
        srv_result(conn, &res);
        if (k->mode == FAKE_SNAPSHOT) {
            Threadsync__SnapshotBegin b = THREADSYNC__SNAPSHOT_BEGIN__INIT;
            Threadsync__SnapshotChunk ch = THREADSYNC__SNAPSHOT_CHUNK__INIT;
            Threadsync__SnapshotEnd e = THREADSYNC__SNAPSHOT_END__INIT;
            b.seq = e.seq = 77;
            out.msg_case = THREADSYNC__FRAME__MSG_SNAPSHOT_BEGIN;
            out.snapshot_begin = &b;
            srv_send(conn, &out);
            out.msg_case = THREADSYNC__FRAME__MSG_SNAPSHOT_CHUNK;
            out.snapshot_chunk = &ch;
            srv_send(conn, &out);
            out.msg_case = THREADSYNC__FRAME__MSG_SNAPSHOT_END;
            out.snapshot_end = &e;
            srv_send(conn, &out);
            srv_events(conn, 80, 81);
        } else if (k->mode == FAKE_SUB_DROP && n == 1) {
            srv_events(conn, 40, 42);
            ts_conn_close(conn, TS_OK);
        } else {
            srv_events(conn, f->subscribe->since_seq + 1, f->subscribe->since_seq + 1);
        }
        break;
    }
    case THREADSYNC__FRAME__MSG_PING:
        k->pings++;
        if (k->mode != FAKE_SILENT) {
            Threadsync__Pong p = THREADSYNC__PONG__INIT;
            p.nonce = f->ping->nonce;
            out.msg_case = THREADSYNC__FRAME__MSG_PONG;
            out.pong = &p;
            srv_send(conn, &out);
        }
        break;
    case THREADSYNC__FRAME__MSG_PONG:
        k->pongs++;
        k->pong_nonce = f->pong->nonce;
        break;
    default:
        ck_abort_msg("fake server got frame %d", (int)f->msg_case);
    }
    ts_frame_free(f);
}

static void fake_on_close(struct ts_conn *conn, int err)
{
    struct fake *k = ts_conn_data(conn);
    (void)err;
    for (int i = 0; i < 8; i++)
        if (k->conns[i] == conn)
            k->conns[i] = NULL;
}

static const struct ts_conn_cbs fake_cbs = {
    .on_frame = fake_on_frame,
    .on_close = fake_on_close,
};

static void fake_on_connection(uv_stream_t *l, int status)
{
    struct fake *k = l->data;
    ck_assert_int_eq(status, 0);
    struct ts_conn *conn;
    ck_assert_int_eq(
        ts_conn_accept(&N.loop, l, N.srv_ctx, &fake_cbs, k, TS_FRAME_MAX_PREAUTH, &conn), TS_OK);
    for (int i = 0; i < 8; i++)
        if (!k->conns[i]) {
            k->conns[i] = conn;
            return;
        }
    ck_abort_msg("too many connections");
}

static void fake_start(struct fake *k, enum fake_mode mode)
{
    k->mode = mode;
    ck_assert_int_eq(uv_tcp_init(&N.loop, &k->listener), 0);
    k->listener.data = k;
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    ck_assert_int_eq(uv_tcp_bind(&k->listener, (const struct sockaddr *)&sa, 0), 0);
    ck_assert_int_eq(uv_listen((uv_stream_t *)&k->listener, 16, fake_on_connection), 0);
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    uv_tcp_getsockname(&k->listener, (struct sockaddr *)&ss, &len);
    k->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    snprintf(k->addr, sizeof(k->addr), "127.0.0.1:%u", k->port);
}

static void fake_stop(struct fake *k)
{
    if (!k->port || k->closing)
        return;
    k->closing = 1;
    uv_close((uv_handle_t *)&k->listener, NULL);
    for (int i = 0; i < 8; i++)
        if (k->conns[i])
            ts_conn_close(k->conns[i], TS_OK);
}

/* A port nothing listens on: bound, never listened, closed. */
static void closed_port_addr(char *buf, size_t size)
{
    uv_tcp_t t;
    ck_assert_int_eq(uv_tcp_init(&N.loop, &t), 0);
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    ck_assert_int_eq(uv_tcp_bind(&t, (const struct sockaddr *)&sa, 0), 0);
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    uv_tcp_getsockname(&t, (struct sockaddr *)&ss, &len);
    snprintf(buf, size, "127.0.0.1:%u", ntohs(((struct sockaddr_in *)&ss)->sin_port));
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&N.loop, UV_RUN_NOWAIT);
}

static void world_setup(void)
{
    memset(&N, 0, sizeof(N));
    ck_assert_ptr_nonnull(ts_testcert_dir(N.dir, sizeof(N.dir)));
    snprintf(N.ca, sizeof(N.ca), "%s/ca.pem", N.dir);
    ck_assert_int_eq(uv_loop_init(&N.loop), 0);
    char cert[300], key[300];
    snprintf(cert, sizeof(cert), "%s/server.pem", N.dir);
    snprintf(key, sizeof(key), "%s/server.key", N.dir);
    ck_assert_int_eq(ts_tls_server_ctx(cert, key, &N.srv_ctx), TS_OK);
}

static void world_teardown(void)
{
    /* Every handle of the test must be closed by now: a leak of one shows
     * as UV_EBUSY here. */
    uv_run(&N.loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&N.loop), 0);
    SSL_CTX_free(N.srv_ctx);
    ts_testcert_remove(N.dir);
}

static void on_client_closed(void *arg)
{
    (void)arg;
    N.closed++;
    fake_stop(&N.f[0]);
    fake_stop(&N.f[1]);
}

static void stop(void)
{
    ts_client_close(N.c, on_client_closed, NULL);
}

static void on_state(void *arg, const struct ts_client_state_info *info)
{
    (void)arg;
    ck_assert_int_ge(info->state, 1);
    ck_assert_int_le(info->state, 4);
    ck_assert_ptr_nonnull(info->server);
    N.states[info->state]++;
    if (info->state == TS_CLIENT_READY)
        ck_assert_ptr_nonnull(info->welcome);
    if (info->state == TS_CLIENT_DISCONNECTED || info->state == TS_CLIENT_FAILED)
        N.last_state_err = info->err;
    if (info->state == TS_CLIENT_DISCONNECTED && N.stop_after_disconnects &&
        N.states[TS_CLIENT_DISCONNECTED] == N.stop_after_disconnects)
        stop();
}

static struct ts_client_config config(const char **servers, size_t n, int reconnect)
{
    struct ts_client_config cfg = {
        .servers = servers,
        .n_servers = n,
        .ca_file = N.ca,
        .token = "tok",
        .client_name = "ts_client_test",
        .connect_timeout_ms = 2000,
        .request_timeout_ms = 5000,
        .backoff_min_ms = 10,
        .backoff_max_ms = 40,
        .reconnect = reconnect,
        .on_state = on_state,
    };
    return cfg;
}

static void on_post_stop(void *arg, int err, const Threadsync__Error *detail,
                         const Threadsync__PostResult *res)
{
    N.post_calls++;
    N.post_err = err;
    if (res)
        N.post_id = res->comment_id;
    if (detail) {
        N.detail_code = (int)detail->code;
        snprintf(N.detail_field, sizeof(N.detail_field), "%s", detail->field);
    }
    if (arg)
        stop();
}

static void on_get(void *arg, int err, const Threadsync__Error *detail,
                   const Threadsync__GetResult *res)
{
    (void)detail;
    N.get_calls++;
    N.get_err = err;
    if (res)
        N.get_seq = res->seq;
    if (arg)
        stop();
}

static void sub_on_result(void *arg, uint64_t from, int snapshot)
{
    (void)arg;
    (void)from;
    (void)snapshot;
    N.sub_results++;
}

static void sub_on_events(void *arg, const Threadsync__Events *ev)
{
    N.events_batches++;
    N.events_last = ev->last_seq;
    N.cursor_in_cb = ts_client_cursor(N.c);
    /* Stop once the second connection's batch arrived (arg = batches). */
    if (N.events_batches == (int)(uintptr_t)arg)
        stop();
}

static void sub_on_begin(void *arg, const Threadsync__SnapshotBegin *b)
{
    (void)arg;
    ck_assert_uint_eq(b->seq, 77);
    N.snap_begin++;
}

static void sub_on_chunk(void *arg, const Threadsync__SnapshotChunk *c)
{
    (void)arg;
    (void)c;
    N.snap_chunks++;
}

static void sub_on_end(void *arg, const Threadsync__SnapshotEnd *e)
{
    (void)arg;
    (void)e;
    N.snap_end++;
    ck_assert_uint_eq(ts_client_cursor(N.c), 77);
}

static void sub_on_error(void *arg, int err, const Threadsync__Error *detail)
{
    (void)arg;
    (void)detail;
    N.sub_errs++;
    N.sub_err = err;
}

static const struct ts_client_sub_cbs sub_cbs = {
    .on_result = sub_on_result,
    .on_events = sub_on_events,
    .on_snapshot_begin = sub_on_begin,
    .on_snapshot_chunk = sub_on_chunk,
    .on_snapshot_end = sub_on_end,
    .on_error = sub_on_error,
};

static Threadsync__Post sample_post(void)
{
    Threadsync__Post p = THREADSYNC__POST__INIT;
    p.thread_key = "site/a";
    p.author_name = "Ann";
    p.body = "hello";
    return p;
}

/* Fail fast against two closed ports: each dialled once, then FAILED; the
 * post learns a local error exactly once; nothing hangs. */
START_TEST(test_closed_port_fail_fast)
{
    world_setup();
    char a[32], b[32];
    closed_port_addr(a, sizeof(a));
    closed_port_addr(b, sizeof(b));
    const char *servers[] = {a, b};
    struct ts_client_config cfg = config(servers, 2, 0);
    ck_assert_int_eq(ts_client_new(&N.loop, &cfg, &N.c), TS_OK);
    Threadsync__Post p = sample_post();
    ck_assert_int_eq(ts_client_post(N.c, &p, on_post_stop, NULL), TS_OK);
    ck_assert_int_eq(N.post_calls, 0); /* never synchronously */
    uint64_t t0 = uv_now(&N.loop);
    while (N.post_calls == 0)
        uv_run(&N.loop, UV_RUN_ONCE);
    ck_assert_uint_lt(uv_now(&N.loop) - t0, 2000);
    ck_assert_int_eq(N.post_calls, 1);
    ck_assert_int_ge(N.post_err, TS_E_AGAIN); /* local: the CLI's exit 3 */
    ck_assert_int_eq(N.states[TS_CLIENT_CONNECTING], 2);
    ck_assert_int_eq(N.states[TS_CLIENT_DISCONNECTED], 1);
    ck_assert_int_eq(N.states[TS_CLIENT_FAILED], 1);
    ck_assert_int_eq(ts_client_state(N.c), TS_CLIENT_FAILED);
    ck_assert_int_eq(ts_client_post(N.c, &p, on_post_stop, NULL), TS_E_CLOSED);
    stop();
    world_teardown();
    ck_assert_int_eq(N.closed, 1);
    ck_assert_int_eq(N.post_calls, 1);
}
END_TEST

/* Reconnecting forever to a closed port; close after three failures: every
 * request and the subscription get TS_E_CLOSED exactly once. */
START_TEST(test_closed_port_close_answers_all)
{
    world_setup();
    char a[32];
    closed_port_addr(a, sizeof(a));
    const char *servers[] = {a};
    struct ts_client_config cfg = config(servers, 1, 1);
    N.stop_after_disconnects = 3;
    ck_assert_int_eq(ts_client_new(&N.loop, &cfg, &N.c), TS_OK);
    Threadsync__Post p = sample_post();
    ck_assert_int_eq(ts_client_post(N.c, &p, on_post_stop, NULL), TS_OK);
    ck_assert_int_eq(ts_client_get(N.c, "site/a", on_get, NULL), TS_OK);
    ck_assert_int_eq(ts_client_subscribe(N.c, 1, NULL, 0, 5, &sub_cbs, NULL), TS_OK);
    ck_assert_int_eq(ts_client_subscribe(N.c, 1, NULL, 0, 5, &sub_cbs, NULL), TS_E_EXISTS);
    ck_assert_uint_eq(ts_client_cursor(N.c), 5);
    world_teardown();
    ck_assert_int_eq(N.closed, 1);
    ck_assert_int_eq(N.states[TS_CLIENT_DISCONNECTED], 3);
    ck_assert_int_eq(N.states[TS_CLIENT_FAILED], 0);
    ck_assert_int_eq(N.post_calls, 1);
    ck_assert_int_eq(N.post_err, TS_E_CLOSED);
    ck_assert_int_eq(N.get_calls, 1);
    ck_assert_int_eq(N.get_err, TS_E_CLOSED);
    ck_assert_int_eq(N.sub_errs, 1);
    ck_assert_int_eq(N.sub_err, TS_E_CLOSED);
}
END_TEST

START_TEST(test_request_timeout)
{
    world_setup();
    char a[32];
    closed_port_addr(a, sizeof(a));
    const char *servers[] = {a};
    struct ts_client_config cfg = config(servers, 1, 1);
    cfg.request_timeout_ms = 150;
    ck_assert_int_eq(ts_client_new(&N.loop, &cfg, &N.c), TS_OK);
    Threadsync__Post p = sample_post();
    ck_assert_int_eq(ts_client_post(N.c, &p, on_post_stop, (void *)1), TS_OK);
    uint64_t t0 = uv_now(&N.loop);
    world_teardown();
    ck_assert_uint_ge(uv_now(&N.loop) - t0, 140);
    ck_assert_int_eq(N.post_calls, 1);
    ck_assert_int_eq(N.post_err, TS_E_TIMEOUT);
    ck_assert_int_ge(N.states[TS_CLIENT_DISCONNECTED], 1);
}
END_TEST

START_TEST(test_sync_closed_port)
{
    world_setup();
    char a[32];
    closed_port_addr(a, sizeof(a));
    const char *servers[] = {a};
    struct ts_client_config cfg = config(servers, 1, 0);
    Threadsync__Post p = sample_post();
    Threadsync__PostResult *res = (void *)1;
    Threadsync__Error *err = (void *)1;
    int rc = ts_sync_post(&cfg, &p, &res, &err);
    ck_assert_int_ge(rc, TS_E_AGAIN);
    ck_assert_ptr_null(res);
    ck_assert_ptr_null(err);
    Threadsync__GetResult *g = (void *)1;
    rc = ts_sync_get(&cfg, "site/a", &g, &err);
    ck_assert_int_ge(rc, TS_E_AGAIN);
    ck_assert_ptr_null(g);
    world_teardown();
}
END_TEST

START_TEST(test_new_bad_config)
{
    world_setup();
    const char *servers[] = {"127.0.0.1:1"};
    struct ts_client_config cfg = config(servers, 1, 0);
    cfg.ca_file = "/nonexistent/ca.pem";
    struct ts_client *c = NULL;
    int rc = ts_client_new(&N.loop, &cfg, &c);
    ck_assert_msg(rc == TS_E_CONFIG || rc == TS_E_TLS, "rc %d", rc);
    cfg = config(servers, 0, 0);
    ck_assert_int_eq(ts_client_new(&N.loop, &cfg, &c), TS_E_CONFIG);
    const char *bad[] = {"nope:0"};
    cfg = config(bad, 1, 0);
    ck_assert_int_eq(ts_client_new(&N.loop, &cfg, &c), TS_E_CONFIG);
    world_teardown();
}
END_TEST

/* The connection drops before the answer: the post goes again on the next
 * connection with the same idempotency key and is answered once. */
START_TEST(test_post_resent_same_key)
{
    world_setup();
    fake_start(&N.f[0], FAKE_DROP_FIRST_POST);
    const char *servers[] = {N.f[0].addr};
    struct ts_client_config cfg = config(servers, 1, 1);
    ck_assert_int_eq(ts_client_new(&N.loop, &cfg, &N.c), TS_OK);
    Threadsync__Post p = sample_post();
    ck_assert_int_eq(ts_client_post(N.c, &p, on_post_stop, (void *)1), TS_OK);
    world_teardown();
    ck_assert_int_eq(N.post_calls, 1);
    ck_assert_int_eq(N.post_err, TS_OK);
    ck_assert_uint_eq(N.post_id, 500);
    ck_assert_int_eq(N.f[0].posts, 2);
    ck_assert_int_eq(N.f[0].hellos, 2);
    ck_assert_uint_eq(strlen(N.f[0].keys[0]), 32);
    ck_assert_str_eq(N.f[0].keys[0], N.f[0].keys[1]);
    ck_assert_int_eq(N.states[TS_CLIENT_READY], 2);
}
END_TEST

/* A caller's own idempotency key is kept as is. */
START_TEST(test_post_keeps_caller_key)
{
    world_setup();
    fake_start(&N.f[0], FAKE_OK);
    const char *servers[] = {N.f[0].addr};
    struct ts_client_config cfg = config(servers, 1, 0);
    ck_assert_int_eq(ts_client_new(&N.loop, &cfg, &N.c), TS_OK);
    Threadsync__Post p = sample_post();
    p.idempotency_key = "mine-1";
    ck_assert_int_eq(ts_client_post(N.c, &p, on_post_stop, (void *)1), TS_OK);
    world_teardown();
    ck_assert_int_eq(N.post_err, TS_OK);
    ck_assert_str_eq(N.f[0].keys[0], "mine-1");
}
END_TEST

/* NOT_LEADER: the client moves to leader_address and re-sends there. */
START_TEST(test_not_leader_redirect)
{
    world_setup();
    fake_start(&N.f[1], FAKE_OK);
    fake_start(&N.f[0], FAKE_NOT_LEADER);
    N.f[0].redirect_to = N.f[1].addr;
    const char *servers[] = {N.f[0].addr};
    struct ts_client_config cfg = config(servers, 1, 0);
    ck_assert_int_eq(ts_client_new(&N.loop, &cfg, &N.c), TS_OK);
    Threadsync__Post p = sample_post();
    ck_assert_int_eq(ts_client_post(N.c, &p, on_post_stop, (void *)1), TS_OK);
    world_teardown();
    ck_assert_int_eq(N.post_calls, 1);
    ck_assert_int_eq(N.post_err, TS_OK);
    ck_assert_uint_eq(N.post_id, 501);
    ck_assert_int_eq(N.f[0].posts, 1);
    ck_assert_int_eq(N.f[1].posts, 1);
    ck_assert_str_eq(N.f[0].keys[0], N.f[1].keys[0]);
}
END_TEST

/* Two nodes naming each other: the first redirects are followed at once,
 * then with backoff, and the request's deadline ends it in NOT_LEADER with
 * its detail (a count alone would fail posts during every real failover,
 * while followers still name the dead leader). */
START_TEST(test_not_leader_loop_bounded)
{
    world_setup();
    fake_start(&N.f[0], FAKE_NOT_LEADER);
    fake_start(&N.f[1], FAKE_NOT_LEADER);
    N.f[0].redirect_to = N.f[1].addr;
    N.f[1].redirect_to = N.f[0].addr;
    const char *servers[] = {N.f[0].addr};
    struct ts_client_config cfg = config(servers, 1, 1);
    cfg.request_timeout_ms = 1000;
    cfg.backoff_max_ms = 200;
    ck_assert_int_eq(ts_client_new(&N.loop, &cfg, &N.c), TS_OK);
    Threadsync__Post p = sample_post();
    ck_assert_int_eq(ts_client_post(N.c, &p, on_post_stop, (void *)1), TS_OK);
    world_teardown();
    ck_assert_int_eq(N.post_calls, 1);
    ck_assert_int_eq(N.post_err, TS_E_NOT_LEADER);
    ck_assert_int_eq(N.detail_code, TS_E_NOT_LEADER);
    int posts = N.f[0].posts + N.f[1].posts;
    /* ended by the deadline, not by a count of redirects (no elapsed-time
     * check: under load a round takes longer and the last one that fits
     * ends earlier, so a lower bound on the time failed on a busy machine) */
    ck_assert_int_gt(posts, TS__MAX_REDIRECTS + 1);
    /* slowed down: a hot loop would make hundreds in a second */
    ck_assert_int_lt(posts, 40);
}
END_TEST

START_TEST(test_unavailable_retry)
{
    world_setup();
    fake_start(&N.f[0], FAKE_UNAVAILABLE_ONCE);
    const char *servers[] = {N.f[0].addr};
    struct ts_client_config cfg = config(servers, 1, 0);
    ck_assert_int_eq(ts_client_new(&N.loop, &cfg, &N.c), TS_OK);
    Threadsync__Post p = sample_post();
    ck_assert_int_eq(ts_client_post(N.c, &p, on_post_stop, (void *)1), TS_OK);
    world_teardown();
    ck_assert_int_eq(N.post_err, TS_OK);
    ck_assert_int_eq(N.f[0].posts, 2);
    ck_assert_int_eq(N.f[0].hellos, 1); /* same connection */
    ck_assert_str_eq(N.f[0].keys[0], N.f[0].keys[1]);
}
END_TEST

/* A refusal is passed on with its detail; the connection stays. */
START_TEST(test_refusal_detail)
{
    world_setup();
    fake_start(&N.f[0], FAKE_OK);
    const char *servers[] = {N.f[0].addr};
    struct ts_client_config cfg = config(servers, 1, 0);
    ck_assert_int_eq(ts_client_new(&N.loop, &cfg, &N.c), TS_OK);
    Threadsync__Post p = sample_post();
    p.body = "invalid";
    ck_assert_int_eq(ts_client_post(N.c, &p, on_post_stop, NULL), TS_OK);
    ck_assert_int_eq(ts_client_get(N.c, "site/z", on_get, (void *)1), TS_OK);
    world_teardown();
    ck_assert_int_eq(N.post_err, TS_E_INVALID_ARGUMENT);
    ck_assert_int_eq(N.detail_code, TS_E_INVALID_ARGUMENT);
    ck_assert_str_eq(N.detail_field, "body");
    ck_assert_int_eq(N.get_err, TS_OK);
    ck_assert_uint_eq(N.get_seq, 321);
    ck_assert_int_eq(N.f[0].hellos, 1);
}
END_TEST

/* UNAUTHENTICATED is final even when reconnecting: FAILED, not a retry
 * loop; the post gets the code and the server's Error. */
START_TEST(test_unauthenticated_is_final)
{
    world_setup();
    fake_start(&N.f[0], FAKE_UNAUTH);
    const char *servers[] = {N.f[0].addr};
    struct ts_client_config cfg = config(servers, 1, 1);
    ck_assert_int_eq(ts_client_new(&N.loop, &cfg, &N.c), TS_OK);
    Threadsync__Post p = sample_post();
    ck_assert_int_eq(ts_client_post(N.c, &p, on_post_stop, (void *)1), TS_OK);
    world_teardown();
    ck_assert_int_eq(N.post_err, TS_E_UNAUTHENTICATED);
    ck_assert_int_eq(N.detail_code, TS_E_UNAUTHENTICATED);
    ck_assert_int_eq(N.states[TS_CLIENT_FAILED], 1);
    ck_assert_int_eq(N.f[0].hellos, 1);
}
END_TEST

/* The subscription resumes from Events.last_seq after a drop. */
START_TEST(test_subscribe_resumes_from_cursor)
{
    world_setup();
    fake_start(&N.f[0], FAKE_SUB_DROP);
    const char *servers[] = {N.f[0].addr};
    struct ts_client_config cfg = config(servers, 1, 1);
    ck_assert_int_eq(ts_client_new(&N.loop, &cfg, &N.c), TS_OK);
    const char *keys[] = {"site/a", "site/b"};
    ck_assert_int_eq(ts_client_subscribe(N.c, 0, keys, 2, 7, &sub_cbs, (void *)2), TS_OK);
    world_teardown();
    ck_assert_int_eq(N.f[0].subs, 2);
    ck_assert_uint_eq(N.f[0].since[0], 7);
    ck_assert_uint_eq(N.f[0].since[1], 42);
    ck_assert_int_eq(N.sub_results, 2);
    ck_assert_uint_eq(N.events_last, 43);
    ck_assert_uint_eq(N.cursor_in_cb, 43);
    ck_assert_int_eq(N.sub_errs, 1);
    ck_assert_int_eq(N.sub_err, TS_E_CLOSED);
}
END_TEST

START_TEST(test_subscribe_snapshot_cursor)
{
    world_setup();
    fake_start(&N.f[0], FAKE_SNAPSHOT);
    const char *servers[] = {N.f[0].addr};
    struct ts_client_config cfg = config(servers, 1, 1);
    ck_assert_int_eq(ts_client_new(&N.loop, &cfg, &N.c), TS_OK);
    ck_assert_int_eq(ts_client_subscribe(N.c, 1, NULL, 0, 0, &sub_cbs, (void *)1), TS_OK);
    ck_assert_int_eq(ts_client_subscribe(N.c, 0, NULL, 0, 0, &sub_cbs, NULL), TS_E_EXISTS);
    world_teardown();
    ck_assert_int_eq(N.snap_begin, 1);
    ck_assert_int_eq(N.snap_chunks, 1);
    ck_assert_int_eq(N.snap_end, 1);
    ck_assert_uint_eq(N.cursor_in_cb, 81);
}
END_TEST

static void hb_done(uv_timer_t *t)
{
    uv_close((uv_handle_t *)t, NULL);
    stop();
}

/* Stops the world once the fake server has seen 4 pings, or after 30 s
 * (polled: a loaded machine may take most of a second for the handshake
 * alone; the deadline only ends a broken run). */
static uint64_t hb_started;

static void hb_enough(uv_timer_t *t)
{
    if (N.f[0].pings >= 4 || uv_now(t->loop) - hb_started > 30000)
        hb_done(t);
}

/* Idle client pings every heartbeat_ms and the connection stays up while
 * the server answers. */
START_TEST(test_heartbeat_pings)
{
    world_setup();
    fake_start(&N.f[0], FAKE_OK);
    N.f[0].heartbeat_ms = 50;
    const char *servers[] = {N.f[0].addr};
    struct ts_client_config cfg = config(servers, 1, 1);
    ck_assert_int_eq(ts_client_new(&N.loop, &cfg, &N.c), TS_OK);
    uv_timer_t t;
    uv_timer_init(&N.loop, &t);
    hb_started = uv_now(&N.loop);
    uv_timer_start(&t, hb_enough, 10, 10);
    world_teardown();
    ck_assert_int_ge(N.f[0].pings, 4);
    ck_assert_int_eq(N.states[TS_CLIENT_DISCONNECTED], 0);
    ck_assert_int_eq(N.f[0].hellos, 1);
}
END_TEST

/* A server silent for 3 intervals is dropped (TS_E_TIMEOUT) and
 * reconnected. */
START_TEST(test_heartbeat_silence_drops)
{
    world_setup();
    fake_start(&N.f[0], FAKE_SILENT);
    N.f[0].heartbeat_ms = 50;
    const char *servers[] = {N.f[0].addr};
    struct ts_client_config cfg = config(servers, 1, 1);
    N.stop_after_disconnects = 1;
    ck_assert_int_eq(ts_client_new(&N.loop, &cfg, &N.c), TS_OK);
    uint64_t t0 = uv_now(&N.loop);
    world_teardown();
    ck_assert_int_eq(N.states[TS_CLIENT_DISCONNECTED], 1);
    ck_assert_int_eq(N.last_state_err, TS_E_TIMEOUT);
    ck_assert_uint_ge(uv_now(&N.loop) - t0, 150);
    ck_assert_int_ge(N.f[0].pings, 1);
}
END_TEST

/* The server's Ping is answered with a Pong carrying its nonce. */
static void send_server_ping(uv_timer_t *t)
{
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Ping p = THREADSYNC__PING__INIT;
    p.nonce = 0xabcdef;
    f.msg_case = THREADSYNC__FRAME__MSG_PING;
    f.ping = &p;
    ck_assert_ptr_nonnull(N.f[0].conns[0]);
    srv_send(N.f[0].conns[0], &f);
    uv_timer_start(t, hb_done, 200, 0);
}

static void on_ready_ping(void *arg, const struct ts_client_state_info *info)
{
    on_state(arg, info);
    if (info->state == TS_CLIENT_READY)
        uv_timer_start(arg, send_server_ping, 10, 0);
}

START_TEST(test_pong_answers_ping)
{
    world_setup();
    fake_start(&N.f[0], FAKE_OK);
    const char *servers[] = {N.f[0].addr};
    struct ts_client_config cfg = config(servers, 1, 1);
    uv_timer_t t;
    uv_timer_init(&N.loop, &t);
    cfg.on_state = on_ready_ping;
    cfg.state_arg = &t;
    ck_assert_int_eq(ts_client_new(&N.loop, &cfg, &N.c), TS_OK);
    world_teardown();
    ck_assert_int_eq(N.f[0].pongs, 1);
    ck_assert_uint_eq(N.f[0].pong_nonce, 0xabcdef);
}
END_TEST

/* UNAVAILABLE with another server listed: the post goes there, same key. */
START_TEST(test_unavailable_moves_on)
{
    world_setup();
    fake_start(&N.f[0], FAKE_UNAVAILABLE_ONCE);
    fake_start(&N.f[1], FAKE_OK);
    const char *servers[] = {N.f[0].addr, N.f[1].addr};
    struct ts_client_config cfg = config(servers, 2, 1);
    ck_assert_int_eq(ts_client_new(&N.loop, &cfg, &N.c), TS_OK);
    Threadsync__Post p = sample_post();
    ck_assert_int_eq(ts_client_post(N.c, &p, on_post_stop, (void *)1), TS_OK);
    world_teardown();
    ck_assert_int_eq(N.post_err, TS_OK);
    ck_assert_int_eq(N.f[0].posts, 1);
    ck_assert_int_eq(N.f[1].posts, 1);
    ck_assert_uint_eq(N.post_id, 501); /* answered by the second */
    ck_assert_str_eq(N.f[0].keys[0], N.f[1].keys[0]);
}
END_TEST

/* A server that goes silent with a post waiting (a stopped process) is
 * probed with a Ping and then left for the next one, long before the
 * heartbeat timeout (3 x 10 s) or the request timeout (5 s) would end it. */
START_TEST(test_silent_server_moves_on)
{
    world_setup();
    fake_start(&N.f[0], FAKE_SILENT);
    fake_start(&N.f[1], FAKE_OK);
    const char *servers[] = {N.f[0].addr, N.f[1].addr};
    struct ts_client_config cfg = config(servers, 2, 1);
    cfg.silence_ms = 100;
    ck_assert_int_eq(ts_client_new(&N.loop, &cfg, &N.c), TS_OK);
    Threadsync__Post p = sample_post();
    ck_assert_int_eq(ts_client_post(N.c, &p, on_post_stop, (void *)1), TS_OK);
    world_teardown();
    ck_assert_int_eq(N.post_err, TS_OK);
    ck_assert_int_eq(N.f[0].posts, 1);
    ck_assert_int_ge(N.f[0].pings, 1);
    ck_assert_int_eq(N.f[1].posts, 1);
    ck_assert_str_eq(N.f[0].keys[0], N.f[1].keys[0]);
}
END_TEST

/* Failover: the first server is dead, the second answers. */
START_TEST(test_failover_list)
{
    world_setup();
    char dead[32];
    closed_port_addr(dead, sizeof(dead));
    fake_start(&N.f[0], FAKE_OK);
    const char *servers[] = {dead, N.f[0].addr};
    struct ts_client_config cfg = config(servers, 2, 0);
    ck_assert_int_eq(ts_client_new(&N.loop, &cfg, &N.c), TS_OK);
    Threadsync__Post p = sample_post();
    ck_assert_int_eq(ts_client_post(N.c, &p, on_post_stop, (void *)1), TS_OK);
    world_teardown();
    ck_assert_int_eq(N.post_err, TS_OK);
    ck_assert_int_eq(N.states[TS_CLIENT_DISCONNECTED], 1);
    ck_assert_int_eq(N.states[TS_CLIENT_READY], 1);
}
END_TEST

/* The blocking helpers against a live server: the fake runs on its loop in
 * a thread, since ts_sync_* block this one on their own loop. */
static uv_async_t stop_async;

static void on_stop_async(uv_async_t *a)
{
    uv_close((uv_handle_t *)a, NULL);
    fake_stop(&N.f[0]);
}

static void *serve(void *arg)
{
    (void)arg;
    uv_run(&N.loop, UV_RUN_DEFAULT);
    return NULL;
}

START_TEST(test_sync_ok)
{
    world_setup();
    fake_start(&N.f[0], FAKE_OK);
    ck_assert_int_eq(uv_async_init(&N.loop, &stop_async, on_stop_async), 0);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, serve, NULL), 0);
    const char *servers[] = {N.f[0].addr};
    struct ts_client_config cfg = config(servers, 1, 0);
    cfg.on_state = NULL;
    Threadsync__Post p = sample_post();
    Threadsync__PostResult *res = NULL;
    Threadsync__Error *err = NULL;
    ck_assert_int_eq(ts_sync_post(&cfg, &p, &res, &err), TS_OK);
    ck_assert_ptr_null(err);
    ck_assert_uint_eq(res->comment_id, 500);
    ck_assert_uint_eq(res->seq, 501);
    ts_msg_free(res);
    p.body = "invalid";
    ck_assert_int_eq(ts_sync_post(&cfg, &p, &res, &err), TS_E_INVALID_ARGUMENT);
    ck_assert_ptr_null(res);
    ck_assert_ptr_nonnull(err);
    ck_assert_str_eq(err->field, "body");
    ts_msg_free(err);
    Threadsync__GetResult *g = NULL;
    ck_assert_int_eq(ts_sync_get(&cfg, "site/q", &g, NULL), TS_OK);
    ck_assert_uint_eq(g->seq, 321);
    ck_assert_str_eq(g->thread->key, "site/q");
    ts_msg_free(g);
    uv_async_send(&stop_async);
    pthread_join(th, NULL);
    world_teardown();
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("ts_client");
    TCase *tc = tcase_create("logic");
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, test_backoff_bounds);
    tcase_add_test(tc, test_server_parse);
    tcase_add_test(tc, test_dial_rotation);
    tcase_add_test(tc, test_idem_key);
    tcase_add_test(tc, test_reqs_exactly_once);
    tcase_add_test(tc, test_reqs_unlink_middle);
    suite_add_tcase(s, tc);
    tc = tcase_create("loop");
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, test_closed_port_fail_fast);
    tcase_add_test(tc, test_closed_port_close_answers_all);
    tcase_add_test(tc, test_request_timeout);
    tcase_add_test(tc, test_sync_closed_port);
    tcase_add_test(tc, test_new_bad_config);
    tcase_add_test(tc, test_post_resent_same_key);
    tcase_add_test(tc, test_post_keeps_caller_key);
    tcase_add_test(tc, test_not_leader_redirect);
    tcase_add_test(tc, test_not_leader_loop_bounded);
    tcase_add_test(tc, test_unavailable_retry);
    tcase_add_test(tc, test_refusal_detail);
    tcase_add_test(tc, test_unauthenticated_is_final);
    tcase_add_test(tc, test_subscribe_resumes_from_cursor);
    tcase_add_test(tc, test_subscribe_snapshot_cursor);
    tcase_add_test(tc, test_heartbeat_pings);
    tcase_add_test(tc, test_heartbeat_silence_drops);
    tcase_add_test(tc, test_pong_answers_ping);
    tcase_add_test(tc, test_failover_list);
    tcase_add_test(tc, test_unavailable_moves_on);
    tcase_add_test(tc, test_silent_server_moves_on);
    tcase_add_test(tc, test_sync_ok);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ts_check_run(suite());
}
