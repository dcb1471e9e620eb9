/*
 * ts_mqtt_pkt: the few MQTT 3.1.1 packets the comparison generator
 * (ts_mqttgen) speaks, encoded into caller buffers and decoded in place.
 *
 * A packet is a fixed header (type << 4 | flags, then the remaining length
 * as a base-128 varint of 1-4 bytes, at most 268,435,455) and a body. Only
 * what a benchmark client needs: CONNECT, SUBSCRIBE (one topic), PUBLISH at
 * QoS 0/1, PUBACK, PINGREQ, DISCONNECT out; CONNACK, SUBACK, PUBLISH, PUBACK,
 * PINGRESP in. No allocation anywhere: encoders write into buf[0..cap) and
 * return the length (0 when cap is too small or a field too long), the
 * decoder points into the packet it was given.
 */
#ifndef TS_MQTT_PKT_H
#define TS_MQTT_PKT_H

#include <stddef.h>
#include <stdint.h>

enum {
    TSB_MQTT_CONNECT = 1,
    TSB_MQTT_CONNACK = 2,
    TSB_MQTT_PUBLISH = 3,
    TSB_MQTT_PUBACK = 4,
    TSB_MQTT_SUBSCRIBE = 8,
    TSB_MQTT_SUBACK = 9,
    TSB_MQTT_PINGREQ = 12,
    TSB_MQTT_PINGRESP = 13,
    TSB_MQTT_DISCONNECT = 14,
};

#define TSB_MQTT_VARINT_MAX 268435455u
/* The generator refuses bigger packets (a broker gone wrong, not a bench). */
#define TSB_MQTT_PKT_MAX (1u << 20)

/* Writes v (<= TSB_MQTT_VARINT_MAX) to p (room for 4); returns its length,
 * 0 when v is too big. */
size_t tsb_mqtt_varint_put(uint8_t *p, uint32_t v);

/* Reads a varint from p[0..avail): TS_OK with *v and *used, TS_E_AGAIN when
 * it may continue past avail, TS_E_BAD_FRAME when it runs over 4 bytes. */
int tsb_mqtt_varint_get(const uint8_t *p, size_t avail, uint32_t *v, size_t *used);

/* A tsb_conn split callback: where the first packet in p[0..avail) ends.
 * *hdr is 0 and *body the whole packet (fixed header included), so the
 * frame handed on is what tsb_mqtt_parse() takes. TS_E_BAD_FRAME for a
 * malformed length or one over TSB_MQTT_PKT_MAX. */
int tsb_mqtt_split(const uint8_t *p, size_t avail, size_t *hdr, size_t *body);

/* CONNECT, protocol level 4, no will, no credentials. clean: the
 * clean_session flag. keepalive in seconds (0: off). */
size_t tsb_mqtt_connect(uint8_t *buf, size_t cap, const char *client_id, int clean,
                        uint16_t keepalive);
/* SUBSCRIBE to one topic filter at qos, packet id pid (non-zero). */
size_t tsb_mqtt_subscribe(uint8_t *buf, size_t cap, uint16_t pid, const char *topic, int qos);
/* PUBLISH; pid is ignored (not written) at qos 0. */
size_t tsb_mqtt_publish(uint8_t *buf, size_t cap, const char *topic, int qos, uint16_t pid,
                        const void *payload, size_t len);
size_t tsb_mqtt_puback(uint8_t *buf, size_t cap, uint16_t pid);
size_t tsb_mqtt_pingreq(uint8_t *buf, size_t cap);
size_t tsb_mqtt_disconnect(uint8_t *buf, size_t cap);

/* One decoded packet; the pointers are into the buffer given to parse. */
struct tsb_mqtt_pkt {
    int type, flags;
    int qos;             /* PUBLISH */
    uint16_t pid;        /* PUBLISH at qos > 0, PUBACK, SUBACK */
    int session_present; /* CONNACK */
    int rc;              /* CONNACK return code, SUBACK granted qos (0x80: refused) */
    const uint8_t *topic, *payload;
    size_t topic_len, payload_len;
};

/* Decodes the packet p[0..len) (exactly one, as split() delimits it).
 * TS_E_BAD_FRAME for a malformed or unexpected packet. */
int tsb_mqtt_parse(const uint8_t *p, size_t len, struct tsb_mqtt_pkt *out);

#endif
