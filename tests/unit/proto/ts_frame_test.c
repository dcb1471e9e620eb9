/*
 * ts_frame: encode/decode round trips, every split of a byte stream into
 * reads, several frames in one read, and every way a length can be wrong.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ts_check_main.h"
#include "ts_err.h"
#include "ts_frame.h"

/* Builds a Post frame with the given body; returns its wire bytes. */
static uint8_t *make_post(uint64_t request_id, const char *body, size_t *len)
{
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Post p = THREADSYNC__POST__INIT;
    p.request_id = request_id;
    p.thread_key = "site/a";
    p.author_name = "Ann";
    p.body = (char *)body;
    f.msg_case = THREADSYNC__FRAME__MSG_POST;
    f.post = &p;
    uint8_t *out;
    ck_assert_int_eq(ts_frame_encode(&f, &out, len), TS_OK);
    return out;
}

START_TEST(test_roundtrip)
{
    size_t len;
    uint8_t *wire = make_post(7, "hello", &len);
    ck_assert_uint_eq(((size_t)wire[0] << 24 | wire[1] << 16 | wire[2] << 8 | wire[3]), len - 4);
    struct ts_frame_decoder *dec = ts_frame_decoder_new(TS_FRAME_MAX_DEFAULT);
    ck_assert_uint_eq(ts_frame_decoder_last_size(dec), 0);
    ck_assert_int_eq(ts_frame_decoder_feed(dec, wire, len), TS_OK);
    Threadsync__Frame *f;
    const char *field;
    ck_assert_int_eq(ts_frame_decoder_next(dec, &f, &field), TS_OK);
    ck_assert_uint_eq(ts_frame_decoder_last_size(dec), len); /* header included */
    ck_assert_uint_eq(ts_frame_decoder_last_size(dec), ts_frame_size(f));
    ck_assert_int_eq(f->msg_case, THREADSYNC__FRAME__MSG_POST);
    ck_assert_uint_eq(f->post->request_id, 7);
    ck_assert_str_eq(f->post->body, "hello");
    ts_frame_free(f);
    ck_assert_int_eq(ts_frame_decoder_next(dec, &f, &field), TS_E_AGAIN);
    ck_assert_uint_eq(ts_frame_decoder_pending(dec), 0);
    ts_frame_decoder_free(dec);
    free(wire);
}
END_TEST

/* Three frames back to back, cut at every pair of positions (i, j): each
 * piece fed separately must yield the same three frames in order. */
START_TEST(test_every_split)
{
    size_t l1, l2, l3;
    uint8_t *a = make_post(1, "first", &l1);
    uint8_t *b = make_post(2, "second, a little longer", &l2);
    uint8_t *c = make_post(3, "x", &l3);
    size_t total = l1 + l2 + l3;
    uint8_t *stream = malloc(total);
    memcpy(stream, a, l1);
    memcpy(stream + l1, b, l2);
    memcpy(stream + l1 + l2, c, l3);
    for (size_t i = 0; i <= total; i++) {
        for (size_t j = i; j <= total; j++) {
            struct ts_frame_decoder *dec = ts_frame_decoder_new(TS_FRAME_MAX_DEFAULT);
            size_t cuts[4] = {0, i, j, total};
            uint64_t want = 1;
            for (int k = 0; k < 3; k++) {
                ck_assert_int_eq(
                    ts_frame_decoder_feed(dec, stream + cuts[k], cuts[k + 1] - cuts[k]), TS_OK);
                Threadsync__Frame *f;
                const char *field;
                int rc;
                while ((rc = ts_frame_decoder_next(dec, &f, &field)) == TS_OK) {
                    ck_assert_uint_eq(f->post->request_id, want);
                    want++;
                    ts_frame_free(f);
                }
                ck_assert_int_eq(rc, TS_E_AGAIN);
            }
            ck_assert_uint_eq(want, 4);
            ck_assert_uint_eq(ts_frame_decoder_pending(dec), 0);
            ts_frame_decoder_free(dec);
        }
    }
    free(stream);
    free(a);
    free(b);
    free(c);
}
END_TEST

START_TEST(test_byte_at_a_time)
{
    size_t len;
    uint8_t *wire = make_post(9, "one byte at a time", &len);
    struct ts_frame_decoder *dec = ts_frame_decoder_new(TS_FRAME_MAX_DEFAULT);
    Threadsync__Frame *f;
    const char *field;
    for (size_t i = 0; i + 1 < len; i++) {
        ts_frame_decoder_feed(dec, wire + i, 1);
        ck_assert_int_eq(ts_frame_decoder_next(dec, &f, &field), TS_E_AGAIN);
        ck_assert_uint_eq(ts_frame_decoder_pending(dec), i + 1);
    }
    ts_frame_decoder_feed(dec, wire + len - 1, 1);
    ck_assert_int_eq(ts_frame_decoder_next(dec, &f, &field), TS_OK);
    ts_frame_free(f);
    ts_frame_decoder_free(dec);
    free(wire);
}
END_TEST

START_TEST(test_too_large_before_body)
{
    /* Only the header arrives: the decoder must refuse without waiting for,
     * or buffering room for, the 16 MiB it announces. */
    uint8_t hdr[4] = {0x01, 0x00, 0x00, 0x00};
    struct ts_frame_decoder *dec = ts_frame_decoder_new(TS_FRAME_MAX_DEFAULT);
    ts_frame_decoder_feed(dec, hdr, 4);
    Threadsync__Frame *f;
    const char *field;
    ck_assert_int_eq(ts_frame_decoder_next(dec, &f, &field), TS_E_TOO_LARGE);
    ck_assert_ptr_null(f);
    /* poisoned: stays an error even after valid bytes */
    size_t len;
    uint8_t *wire = make_post(1, "ok", &len);
    ts_frame_decoder_feed(dec, wire, len);
    ck_assert_int_eq(ts_frame_decoder_next(dec, &f, &field), TS_E_TOO_LARGE);
    ts_frame_decoder_free(dec);
    free(wire);
}
END_TEST

START_TEST(test_limit_is_inclusive)
{
    size_t len;
    uint8_t *wire = make_post(1, "body", &len);
    struct ts_frame_decoder *dec = ts_frame_decoder_new((uint32_t)(len - 4));
    Threadsync__Frame *f;
    const char *field;
    ts_frame_decoder_feed(dec, wire, len);
    ck_assert_int_eq(ts_frame_decoder_next(dec, &f, &field), TS_OK);
    ts_frame_free(f);
    ts_frame_decoder_set_max(dec, (uint32_t)(len - 5));
    ts_frame_decoder_feed(dec, wire, len);
    ck_assert_int_eq(ts_frame_decoder_next(dec, &f, &field), TS_E_TOO_LARGE);
    ts_frame_decoder_free(dec);
    free(wire);
}
END_TEST

START_TEST(test_zero_length)
{
    uint8_t hdr[4] = {0, 0, 0, 0};
    struct ts_frame_decoder *dec = ts_frame_decoder_new(TS_FRAME_MAX_DEFAULT);
    ts_frame_decoder_feed(dec, hdr, 4);
    Threadsync__Frame *f;
    const char *field;
    ck_assert_int_eq(ts_frame_decoder_next(dec, &f, &field), TS_E_BAD_FRAME);
    ts_frame_decoder_free(dec);
}
END_TEST

START_TEST(test_garbage_body)
{
    /* field 1, wire type 2, length 100 but only 3 bytes follow */
    uint8_t bad[] = {0, 0, 0, 5, 0x0A, 100, 1, 2, 3};
    struct ts_frame_decoder *dec = ts_frame_decoder_new(TS_FRAME_MAX_DEFAULT);
    ts_frame_decoder_feed(dec, bad, sizeof(bad));
    Threadsync__Frame *f;
    const char *field;
    ck_assert_int_eq(ts_frame_decoder_next(dec, &f, &field), TS_E_BAD_FRAME);
    ck_assert_ptr_null(f);
    ts_frame_decoder_free(dec);
}
END_TEST

START_TEST(test_truncated_pending)
{
    size_t len;
    uint8_t *wire = make_post(1, "truncated", &len);
    struct ts_frame_decoder *dec = ts_frame_decoder_new(TS_FRAME_MAX_DEFAULT);
    ts_frame_decoder_feed(dec, wire, len - 3);
    Threadsync__Frame *f;
    const char *field;
    ck_assert_int_eq(ts_frame_decoder_next(dec, &f, &field), TS_E_AGAIN);
    ck_assert_uint_eq(ts_frame_decoder_pending(dec), len - 3);
    ts_frame_decoder_free(dec);
    free(wire);
}
END_TEST

START_TEST(test_invalid_utf8_names_field)
{
    size_t len;
    uint8_t *wire = make_post(5, "caf\xC3\xA9 \xED\xA0\x80", &len); /* a surrogate */
    struct ts_frame_decoder *dec = ts_frame_decoder_new(TS_FRAME_MAX_DEFAULT);
    ts_frame_decoder_feed(dec, wire, len);
    Threadsync__Frame *f;
    const char *field;
    ck_assert_int_eq(ts_frame_decoder_next(dec, &f, &field), TS_E_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(f->post->request_id, 5); /* so the error can answer it */
    ck_assert_str_eq(field, "body");
    ck_assert_uint_eq(ts_frame_decoder_last_size(dec), len);
    ts_frame_free(f);
    /* the stream stays usable */
    free(wire);
    wire = make_post(6, "fine", &len);
    ts_frame_decoder_feed(dec, wire, len);
    ck_assert_int_eq(ts_frame_decoder_next(dec, &f, &field), TS_OK);
    ts_frame_free(f);
    ts_frame_decoder_free(dec);
    free(wire);
}
END_TEST

START_TEST(test_embedded_nul_rejected)
{
    /* Post{author_name="A\0B"} by hand: protobuf-c would hand us "A". */
    uint8_t body[] = {0x52, 7, 0x2A, 3, 'A', 0, 'B', 0x08, 1};
    /* Frame.post is field 10 (tag 0x52); Post.author_name is field 5 (0x2A) */
    uint8_t wire[4 + sizeof(body)] = {0, 0, 0, sizeof(body)};
    memcpy(wire + 4, body, sizeof(body));
    struct ts_frame_decoder *dec = ts_frame_decoder_new(TS_FRAME_MAX_DEFAULT);
    ts_frame_decoder_feed(dec, wire, sizeof(wire));
    Threadsync__Frame *f;
    const char *field;
    ck_assert_int_eq(ts_frame_decoder_next(dec, &f, &field), TS_E_INVALID_ARGUMENT);
    ck_assert_str_eq(field, "author_name");
    ts_frame_free(f);
    ts_frame_decoder_free(dec);
}
END_TEST

START_TEST(test_alloc_budget)
{
    /* 60,000 empty Events elements: 2 bytes each on the wire, a struct each
     * when unpacked. The capped allocator must refuse rather than allocate
     * megabytes for a 120 KB frame. */
    size_t n = 60000, inner = 2 * n;
    uint8_t *wire = malloc(4 + 5 + inner);
    size_t o = 4;
    wire[o++] = 0xAA; /* Frame.events */
    wire[o++] = 0x01;
    wire[o++] = (uint8_t)(inner | 0x80); /* varint of 120000 */
    wire[o++] = (uint8_t)((inner >> 7) | 0x80);
    wire[o++] = (uint8_t)(inner >> 14);
    for (size_t i = 0; i < n; i++) {
        wire[o++] = 0x0A;
        wire[o++] = 0;
    }
    size_t body = o - 4;
    wire[0] = (uint8_t)(body >> 24);
    wire[1] = (uint8_t)(body >> 16);
    wire[2] = (uint8_t)(body >> 8);
    wire[3] = (uint8_t)body;
    struct ts_frame_decoder *dec = ts_frame_decoder_new(TS_FRAME_MAX_DEFAULT);
    ts_frame_decoder_feed(dec, wire, o);
    Threadsync__Frame *f;
    const char *field;
    ck_assert_int_eq(ts_frame_decoder_next(dec, &f, &field), TS_E_BAD_FRAME);
    ts_frame_decoder_free(dec);
    free(wire);
}
END_TEST

/* A frame whose decoded structs are many times its wire size (small
 * events, each a Thread with a short key) outgrows the decode's first chunk
 * several times over: every value must come out intact (no two blocks
 * overlap) and ts_frame_free must release every chunk (LeakSanitizer). */
START_TEST(test_decode_outgrows_first_chunk)
{
    enum { N = 400 };
    static Threadsync__Event evs[N];
    static Threadsync__Thread ths[N];
    static Threadsync__Event *pe[N];
    static char keys[N][8];
    for (size_t i = 0; i < N; i++) {
        threadsync__event__init(&evs[i]);
        threadsync__thread__init(&ths[i]);
        snprintf(keys[i], sizeof(keys[i]), "t%zu", i);
        ths[i].id = i + 1;
        ths[i].key = keys[i];
        ths[i].comment_count = (uint32_t)(3 * i);
        evs[i].seq = 1000 + i;
        evs[i].thread = &ths[i];
        pe[i] = &evs[i];
    }
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Events e = THREADSYNC__EVENTS__INIT;
    e.n_events = N;
    e.events = pe;
    e.last_seq = 1000 + N - 1;
    f.msg_case = THREADSYNC__FRAME__MSG_EVENTS;
    f.events = &e;
    uint8_t *wire;
    size_t len;
    ck_assert_int_eq(ts_frame_encode(&f, &wire, &len), TS_OK);
    /* what protobuf-c allocates is well past the first chunk (1.5x the wire) */
    ck_assert_uint_gt(N * (sizeof(Threadsync__Event) + sizeof(Threadsync__Thread)), 4 * len);
    Threadsync__Frame *out;
    const char *field;
    ck_assert_int_eq(ts_frame_unpack(wire + 4, len - 4, &out, &field), TS_OK);
    ck_assert_int_eq(out->msg_case, THREADSYNC__FRAME__MSG_EVENTS);
    ck_assert_uint_eq(out->events->n_events, N);
    for (size_t i = 0; i < N; i++) {
        const Threadsync__Event *ev = out->events->events[i];
        ck_assert_uint_eq(ev->seq, 1000 + i);
        ck_assert_uint_eq(ev->thread->id, i + 1);
        ck_assert_uint_eq(ev->thread->comment_count, 3 * i);
        ck_assert_str_eq(ev->thread->key, keys[i]);
    }
    ts_frame_free(out);
    free(wire);
}
END_TEST

/* Events built from pre-encoded elements decode like any Events frame. */
START_TEST(test_events_wrap)
{
    uint8_t elems[4096];
    size_t elen = 0;
    for (uint64_t s = 10; s < 13; s++) {
        Threadsync__Event ev = THREADSYNC__EVENT__INIT;
        Threadsync__Thread th = THREADSYNC__THREAD__INIT;
        th.id = 3;
        th.key = "k";
        ev.seq = s;
        ev.thread = &th;
        elen += ts_frame_event_element(&ev, elems + elen);
    }
    uint8_t head[TS_FRAME_EVENTS_HEAD_MAX], tail[TS_FRAME_EVENTS_TAIL_MAX];
    size_t hl, tl;
    ts_frame_events_wrap(elen, 12, 1, head, &hl, tail, &tl);
    struct ts_frame_decoder *dec = ts_frame_decoder_new(TS_FRAME_MAX_DEFAULT);
    ts_frame_decoder_feed(dec, head, hl);
    ts_frame_decoder_feed(dec, elems, elen);
    ts_frame_decoder_feed(dec, tail, tl);
    Threadsync__Frame *f;
    const char *field;
    ck_assert_int_eq(ts_frame_decoder_next(dec, &f, &field), TS_OK);
    ck_assert_int_eq(f->msg_case, THREADSYNC__FRAME__MSG_EVENTS);
    ck_assert_uint_eq(f->events->n_events, 3);
    ck_assert_uint_eq(f->events->events[2]->seq, 12);
    ck_assert_str_eq(f->events->events[0]->thread->key, "k");
    ck_assert_uint_eq(f->events->last_seq, 12);
    ck_assert(f->events->caught_up);
    ck_assert_uint_eq(ts_frame_decoder_pending(dec), 0);
    ts_frame_free(f);
    ts_frame_decoder_free(dec);
}
END_TEST

START_TEST(test_field_number_zero)
{
    /* tag varint 0x82 0x00 = field 0, wire type 2: invalid protobuf that
     * protobuf-c would accept as an unknown field (found by fuzz_frame) */
    uint8_t wire[] = {0, 0, 0, 3, 0x82, 0x00, 0x00};
    struct ts_frame_decoder *dec = ts_frame_decoder_new(TS_FRAME_MAX_DEFAULT);
    ts_frame_decoder_feed(dec, wire, sizeof(wire));
    Threadsync__Frame *f;
    const char *field;
    ck_assert_int_eq(ts_frame_decoder_next(dec, &f, &field), TS_E_BAD_FRAME);
    ck_assert_ptr_null(f);
    ts_frame_decoder_free(dec);
}
END_TEST

/* PROTOCOL.md section 2: exactly one member of the Frame oneof. protobuf-c
 * keeps the last member it sees, so the decoder looks at the raw fields. */
START_TEST(test_two_oneof_members)
{
    Threadsync__Frame *f;
    const char *field;
    /* Frame{ping: Ping{nonce: 7}, get: Get{request_id: 1, thread_key: "t"}} */
    const uint8_t two[] = {0x22, 0x02, 0x08, 0x07, 0x5a, 0x05, 0x08, 0x01, 0x12, 0x01, 't'};
    ck_assert_int_eq(ts_frame_unpack(two, sizeof(two), &f, &field), TS_E_BAD_FRAME);
    ck_assert_ptr_null(f);
    /* the same member twice is one member (protobuf merges it) */
    const uint8_t same[] = {0x22, 0x02, 0x08, 0x07, 0x22, 0x02, 0x08, 0x09};
    ck_assert_int_eq(ts_frame_unpack(same, sizeof(same), &f, &field), TS_OK);
    ck_assert_int_eq(f->msg_case, THREADSYNC__FRAME__MSG_PING);
    ck_assert_uint_eq(f->ping->nonce, 9);
    ts_frame_free(f);
    /* a nested message's fields are not the Frame's */
    const uint8_t one[] = {0x5a, 0x05, 0x08, 0x01, 0x12, 0x01, 't'};
    ck_assert_int_eq(ts_frame_unpack(one, sizeof(one), &f, &field), TS_OK);
    ts_frame_free(f);
}
END_TEST

START_TEST(test_request_id_through_descriptors)
{
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    ck_assert_uint_eq(ts_frame_request_id(&f), 0); /* no message */
    Threadsync__TokenList tl = THREADSYNC__TOKEN_LIST__INIT;
    ts_frame_set_request(&f, THREADSYNC__FRAME__MSG_TOKEN_LIST, &tl.base, 77);
    ck_assert_int_eq(f.msg_case, THREADSYNC__FRAME__MSG_TOKEN_LIST);
    ck_assert_ptr_eq(f.token_list, &tl);
    ck_assert_uint_eq(tl.request_id, 77);
    ck_assert_uint_eq(ts_frame_request_id(&f), 77);

    Threadsync__Frame g = THREADSYNC__FRAME__INIT;
    Threadsync__Digest d = THREADSYNC__DIGEST__INIT;
    d.request_id = 9;
    d.after_id = 5; /* another uint64 field must not be taken for it */
    g.msg_case = THREADSYNC__FRAME__MSG_DIGEST;
    g.digest = &d;
    ck_assert_uint_eq(ts_frame_request_id(&g), 9);

    Threadsync__Frame h = THREADSYNC__FRAME__INIT;
    Threadsync__Ping ping = THREADSYNC__PING__INIT;
    ping.nonce = 3; /* a message without request_id */
    h.msg_case = THREADSYNC__FRAME__MSG_PING;
    h.ping = &ping;
    ck_assert_uint_eq(ts_frame_request_id(&h), 0);
}
END_TEST

START_TEST(test_msg_copy_and_pong)
{
    Threadsync__Post p = THREADSYNC__POST__INIT;
    char body[] = "hello";
    p.request_id = 5;
    p.thread_key = "site/a";
    p.body = body;
    Threadsync__Post *copy = (Threadsync__Post *)ts_frame_msg_copy(&p.base);
    ck_assert_ptr_nonnull(copy);
    body[0] = 'j'; /* the copy shares nothing with the original */
    ck_assert_str_eq(copy->body, "hello");
    ck_assert_str_eq(copy->thread_key, "site/a");
    ck_assert_uint_eq(copy->request_id, 5);
    protobuf_c_message_free_unpacked(&copy->base, NULL);

    Threadsync__Ping ping = THREADSYNC__PING__INIT;
    ping.nonce = 0xfeed;
    Threadsync__Frame f;
    Threadsync__Pong pong;
    ts_frame_pong(&f, &pong, &ping);
    ck_assert_int_eq(f.msg_case, THREADSYNC__FRAME__MSG_PONG);
    ck_assert_ptr_eq(f.pong, &pong);
    ck_assert_uint_eq(pong.nonce, 0xfeed);
    uint8_t *wire;
    size_t len;
    ck_assert_int_eq(ts_frame_encode(&f, &wire, &len), TS_OK); /* a valid frame */
    free(wire);
}
END_TEST

/* A request kept packed is framed around its bytes: the frame decodes to
 * the same message with the id given, whatever request_id the bytes held;
 * a message type without request_id is refused. */
START_TEST(test_request_encode)
{
    Threadsync__ImportComment c = THREADSYNC__IMPORT_COMMENT__INIT;
    Threadsync__ImportComment *cv[] = {&c};
    c.source_id = "42";
    c.thread_key = "site/a";
    c.author_name = "Zoë";
    c.body = "hello";
    c.created_at_ms = 1577836800000;
    Threadsync__Import im = THREADSYNC__IMPORT__INIT;
    im.request_id = 5; /* stale: the frame's id must win */
    im.source = "wordpress";
    im.comments = cv;
    im.n_comments = 1;
    size_t plen = protobuf_c_message_get_packed_size(&im.base);
    uint8_t *packed = malloc(plen);
    ck_assert_ptr_nonnull(packed);
    protobuf_c_message_pack(&im.base, packed);
    for (uint64_t id = 1; id < ((uint64_t)1 << 40); id = id * 131 + 7) {
        uint8_t *wire;
        size_t len;
        ck_assert_int_eq(
            ts_frame_request_encode(THREADSYNC__FRAME__MSG_IMPORT, packed, plen, id, &wire, &len),
            TS_OK);
        ck_assert_uint_eq(((size_t)wire[0] << 24 | wire[1] << 16 | wire[2] << 8 | wire[3]),
                          len - 4);
        struct ts_frame_decoder *dec = ts_frame_decoder_new(TS_FRAME_MAX_DEFAULT);
        ck_assert_int_eq(ts_frame_decoder_feed(dec, wire, len), TS_OK);
        Threadsync__Frame *f;
        const char *field;
        ck_assert_int_eq(ts_frame_decoder_next(dec, &f, &field), TS_OK);
        ck_assert_int_eq(f->msg_case, THREADSYNC__FRAME__MSG_IMPORT);
        ck_assert_uint_eq(f->import->request_id, id);
        ck_assert_uint_eq(ts_frame_request_id(f), id);
        ck_assert_str_eq(f->import->source, "wordpress");
        ck_assert_uint_eq(f->import->n_comments, 1);
        ck_assert_str_eq(f->import->comments[0]->author_name, "Zoë");
        ck_assert_int_eq(f->import->comments[0]->created_at_ms, 1577836800000);
        ts_frame_free(f);
        ck_assert_uint_eq(ts_frame_decoder_pending(dec), 0);
        ts_frame_decoder_free(dec);
        free(wire);
    }
    uint8_t *wire = NULL;
    size_t len;
    ck_assert_int_eq(
        ts_frame_request_encode(THREADSYNC__FRAME__MSG_PING, packed, 0, 1, &wire, &len),
        TS_E_INVALID_ARGUMENT);
    ck_assert_int_eq(ts_frame_request_encode(0, packed, plen, 1, &wire, &len),
                     TS_E_INVALID_ARGUMENT);
    ck_assert_ptr_null(wire);
    free(packed);
}
END_TEST

static Suite *frame_suite(void)
{
    Suite *s = suite_create("ts_frame");
    TCase *tc = tcase_create("codec");
    tcase_add_test(tc, test_roundtrip);
    tcase_add_test(tc, test_every_split);
    tcase_add_test(tc, test_byte_at_a_time);
    tcase_add_test(tc, test_too_large_before_body);
    tcase_add_test(tc, test_limit_is_inclusive);
    tcase_add_test(tc, test_zero_length);
    tcase_add_test(tc, test_garbage_body);
    tcase_add_test(tc, test_truncated_pending);
    tcase_add_test(tc, test_invalid_utf8_names_field);
    tcase_add_test(tc, test_embedded_nul_rejected);
    tcase_add_test(tc, test_alloc_budget);
    tcase_add_test(tc, test_decode_outgrows_first_chunk);
    tcase_add_test(tc, test_events_wrap);
    tcase_add_test(tc, test_field_number_zero);
    tcase_add_test(tc, test_two_oneof_members);
    tcase_add_test(tc, test_request_id_through_descriptors);
    tcase_add_test(tc, test_msg_copy_and_pong);
    tcase_add_test(tc, test_request_encode);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ts_check_run(frame_suite());
}
