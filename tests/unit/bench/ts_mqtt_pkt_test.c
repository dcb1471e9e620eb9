/*
 * ts_mqtt_pkt: the MQTT 3.1.1 codec of the comparison generator. Encoders
 * are checked against packets written out byte by byte from the
 * specification, the varint at every length boundary, the splitter on every
 * truncation, and the decoder on what a broker sends and on malformed input.
 */
#include <check.h>
#include <stdint.h>
#include <string.h>

#include "ts_check_main.h"
#include "ts_err.h"
#include "ts_mqtt_pkt.h"

START_TEST(test_varint_boundaries)
{
    /* 2.2.3: the lengths where the encoding grows by a byte */
    static const struct {
        size_t n;
        uint32_t v;
        uint8_t b[4];
    } cases[] = {
        {1, 0, {0x00}},
        {1, 127, {0x7f}},
        {2, 128, {0x80, 0x01}},
        {2, 16383, {0xff, 0x7f}},
        {3, 16384, {0x80, 0x80, 0x01}},
        {3, 2097151, {0xff, 0xff, 0x7f}},
        {4, 2097152, {0x80, 0x80, 0x80, 0x01}},
        {4, 268435455, {0xff, 0xff, 0xff, 0x7f}},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t b[4];
        ck_assert_uint_eq(tsb_mqtt_varint_put(b, cases[i].v), cases[i].n);
        ck_assert_mem_eq(b, cases[i].b, cases[i].n);
        uint32_t v;
        size_t used;
        ck_assert_int_eq(tsb_mqtt_varint_get(b, cases[i].n, &v, &used), TS_OK);
        ck_assert_uint_eq(v, cases[i].v);
        ck_assert_uint_eq(used, cases[i].n);
        if (cases[i].n > 1)
            ck_assert_int_eq(tsb_mqtt_varint_get(b, cases[i].n - 1, &v, &used), TS_E_AGAIN);
    }
    uint8_t b[4];
    ck_assert_uint_eq(tsb_mqtt_varint_put(b, TSB_MQTT_VARINT_MAX + 1), 0);
    static const uint8_t five[] = {0x80, 0x80, 0x80, 0x80, 0x01};
    uint32_t v;
    size_t used;
    ck_assert_int_eq(tsb_mqtt_varint_get(five, sizeof(five), &v, &used), TS_E_BAD_FRAME);
}
END_TEST

START_TEST(test_encoders_exact_bytes)
{
    uint8_t b[64];
    static const uint8_t connect[] = {0x10, 14,   0, 4,  'M', 'Q', 'T', 'T',
                                      4,    0x00, 0, 60, 0,   2,   'c', '1'};
    ck_assert_uint_eq(tsb_mqtt_connect(b, sizeof(b), "c1", 0, 60), sizeof(connect));
    ck_assert_mem_eq(b, connect, sizeof(connect));
    ck_assert_uint_eq(tsb_mqtt_connect(b, sizeof(b), "c1", 1, 0), sizeof(connect));
    ck_assert_uint_eq(b[9], 0x02); /* clean session */
    ck_assert_uint_eq(b[11], 0);

    static const uint8_t sub[] = {0x82, 8, 0x12, 0x34, 0, 3, 'a', '/', 'b', 1};
    ck_assert_uint_eq(tsb_mqtt_subscribe(b, sizeof(b), 0x1234, "a/b", 1), sizeof(sub));
    ck_assert_mem_eq(b, sub, sizeof(sub));
    ck_assert_uint_eq(tsb_mqtt_subscribe(b, sizeof(b), 0, "a/b", 1), 0); /* pid 0 is invalid */

    static const uint8_t pub1[] = {0x32, 7, 0, 1, 't', 0, 9, 'h', 'i'};
    ck_assert_uint_eq(tsb_mqtt_publish(b, sizeof(b), "t", 1, 9, "hi", 2), sizeof(pub1));
    ck_assert_mem_eq(b, pub1, sizeof(pub1));
    static const uint8_t pub0[] = {0x30, 5, 0, 1, 't', 'h', 'i'};
    ck_assert_uint_eq(tsb_mqtt_publish(b, sizeof(b), "t", 0, 9, "hi", 2), sizeof(pub0));
    ck_assert_mem_eq(b, pub0, sizeof(pub0));

    static const uint8_t ack[] = {0x40, 2, 0xab, 0xcd};
    ck_assert_uint_eq(tsb_mqtt_puback(b, sizeof(b), 0xabcd), sizeof(ack));
    ck_assert_mem_eq(b, ack, sizeof(ack));
    ck_assert_uint_eq(tsb_mqtt_pingreq(b, sizeof(b)), 2);
    ck_assert_uint_eq(b[0], 0xc0);
    ck_assert_uint_eq(b[1], 0);
    ck_assert_uint_eq(tsb_mqtt_disconnect(b, sizeof(b)), 2);
    ck_assert_uint_eq(b[0], 0xe0);
    ck_assert_uint_eq(b[1], 0);
}
END_TEST

/* Nothing is written past cap: every encoder refuses a buffer one short. */
START_TEST(test_encoders_respect_cap)
{
    uint8_t b[64], guard[64];
    memset(guard, 0x5a, sizeof(guard));
    size_t n = tsb_mqtt_publish(b, sizeof(b), "topic", 1, 1, "payload", 7);
    ck_assert_uint_gt(n, 0);
    memcpy(b, guard, sizeof(b));
    ck_assert_uint_eq(tsb_mqtt_publish(b, n - 1, "topic", 1, 1, "payload", 7), 0);
    ck_assert_mem_eq(b, guard, sizeof(b));
    n = tsb_mqtt_connect(b, sizeof(b), "client", 1, 0);
    ck_assert_uint_eq(tsb_mqtt_connect(b, n - 1, "client", 1, 0), 0);
    ck_assert_uint_eq(tsb_mqtt_puback(b, 3, 1), 0);
    ck_assert_uint_eq(tsb_mqtt_pingreq(b, 1), 0);
}
END_TEST

/* A 250-byte payload (the benchmark's) needs a two-byte remaining length:
 * the split must wait for every byte, then hand out the whole packet. */
START_TEST(test_split_and_parse_publish)
{
    uint8_t pay[250], b[512];
    for (size_t i = 0; i < sizeof(pay); i++)
        pay[i] = (uint8_t)i;
    size_t n = tsb_mqtt_publish(b, sizeof(b), "bench/fanout", 1, 777, pay, sizeof(pay));
    ck_assert_uint_eq(n, 1 + 2 + 2 + 12 + 2 + 250);
    size_t hdr, body;
    for (size_t avail = 0; avail < n; avail++)
        ck_assert_int_eq(tsb_mqtt_split(b, avail, &hdr, &body), TS_E_AGAIN);
    /* a second packet behind it is not part of the first */
    b[n] = 0xd0;
    b[n + 1] = 0;
    ck_assert_int_eq(tsb_mqtt_split(b, n + 2, &hdr, &body), TS_OK);
    ck_assert_uint_eq(hdr, 0);
    ck_assert_uint_eq(body, n);
    struct tsb_mqtt_pkt p;
    ck_assert_int_eq(tsb_mqtt_parse(b, n, &p), TS_OK);
    ck_assert_int_eq(p.type, TSB_MQTT_PUBLISH);
    ck_assert_int_eq(p.qos, 1);
    ck_assert_uint_eq(p.pid, 777);
    ck_assert_uint_eq(p.topic_len, 12);
    ck_assert_mem_eq(p.topic, "bench/fanout", 12);
    ck_assert_uint_eq(p.payload_len, sizeof(pay));
    ck_assert_mem_eq(p.payload, pay, sizeof(pay));
    ck_assert_int_eq(tsb_mqtt_parse(b + n, 2, &p), TS_OK);
    ck_assert_int_eq(p.type, TSB_MQTT_PINGRESP);
    /* parse takes exactly one packet */
    ck_assert_int_eq(tsb_mqtt_parse(b, n + 2, &p), TS_E_BAD_FRAME);

    n = tsb_mqtt_publish(b, sizeof(b), "t", 0, 0, "x", 1);
    ck_assert_int_eq(tsb_mqtt_parse(b, n, &p), TS_OK);
    ck_assert_int_eq(p.qos, 0);
    ck_assert_uint_eq(p.pid, 0);
    ck_assert_uint_eq(p.payload_len, 1);
}
END_TEST

START_TEST(test_parse_broker_answers)
{
    struct tsb_mqtt_pkt p;
    static const uint8_t connack[] = {0x20, 2, 0x01, 0x00};
    ck_assert_int_eq(tsb_mqtt_parse(connack, sizeof(connack), &p), TS_OK);
    ck_assert_int_eq(p.type, TSB_MQTT_CONNACK);
    ck_assert_int_eq(p.session_present, 1);
    ck_assert_int_eq(p.rc, 0);
    static const uint8_t refused[] = {0x20, 2, 0x00, 0x05};
    ck_assert_int_eq(tsb_mqtt_parse(refused, sizeof(refused), &p), TS_OK);
    ck_assert_int_eq(p.rc, 5);
    static const uint8_t suback[] = {0x90, 3, 0x00, 0x07, 0x80};
    ck_assert_int_eq(tsb_mqtt_parse(suback, sizeof(suback), &p), TS_OK);
    ck_assert_int_eq(p.type, TSB_MQTT_SUBACK);
    ck_assert_uint_eq(p.pid, 7);
    ck_assert_int_eq(p.rc, 0x80);
    static const uint8_t puback[] = {0x40, 2, 0x01, 0x02};
    ck_assert_int_eq(tsb_mqtt_parse(puback, sizeof(puback), &p), TS_OK);
    ck_assert_int_eq(p.type, TSB_MQTT_PUBACK);
    ck_assert_uint_eq(p.pid, 0x102);
}
END_TEST

START_TEST(test_parse_malformed)
{
    struct tsb_mqtt_pkt p;
    static const uint8_t short_connack[] = {0x20, 1, 0x00};
    ck_assert_int_eq(tsb_mqtt_parse(short_connack, sizeof(short_connack), &p), TS_E_BAD_FRAME);
    static const uint8_t flagged_puback[] = {0x42, 2, 0, 1};
    ck_assert_int_eq(tsb_mqtt_parse(flagged_puback, sizeof(flagged_puback), &p), TS_E_BAD_FRAME);
    static const uint8_t qos3[] = {0x36, 3, 0, 1, 't'};
    ck_assert_int_eq(tsb_mqtt_parse(qos3, sizeof(qos3), &p), TS_E_BAD_FRAME);
    /* topic length past the packet */
    static const uint8_t long_topic[] = {0x30, 3, 0, 9, 't'};
    ck_assert_int_eq(tsb_mqtt_parse(long_topic, sizeof(long_topic), &p), TS_E_BAD_FRAME);
    /* QoS 1 without room for its packet id */
    static const uint8_t no_pid[] = {0x32, 3, 0, 1, 't'};
    ck_assert_int_eq(tsb_mqtt_parse(no_pid, sizeof(no_pid), &p), TS_E_BAD_FRAME);
    /* a client-to-server type a broker never sends */
    static const uint8_t sub[] = {0x82, 8, 0, 1, 0, 3, 'a', '/', 'b', 0};
    ck_assert_int_eq(tsb_mqtt_parse(sub, sizeof(sub), &p), TS_E_BAD_FRAME);
    /* over the generator's packet cap: refused before waiting for it */
    uint8_t big[5] = {0x30};
    tsb_mqtt_varint_put(big + 1, TSB_MQTT_PKT_MAX);
    size_t hdr, body;
    ck_assert_int_eq(tsb_mqtt_split(big, sizeof(big), &hdr, &body), TS_E_BAD_FRAME);
    static const uint8_t five[] = {0x30, 0x80, 0x80, 0x80, 0x80, 0x01};
    ck_assert_int_eq(tsb_mqtt_split(five, sizeof(five), &hdr, &body), TS_E_BAD_FRAME);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("ts_mqtt_pkt");
    TCase *tc = tcase_create("codec");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_varint_boundaries);
    tcase_add_test(tc, test_encoders_exact_bytes);
    tcase_add_test(tc, test_encoders_respect_cap);
    tcase_add_test(tc, test_split_and_parse_publish);
    tcase_add_test(tc, test_parse_broker_answers);
    tcase_add_test(tc, test_parse_malformed);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ts_check_run(suite());
}
