/*
 * ts_mqtt_pkt: see ts_mqtt_pkt.h. Field layouts follow the MQTT 3.1.1
 * specification (OASIS, 2014), section numbers given where a byte is not
 * obvious. Every encoder first computes the remaining length, then writes
 * the fixed header and the body once; nothing is written past cap.
 */
#include "ts_mqtt_pkt.h"

#include "ts_err.h"

#include <string.h>

size_t tsb_mqtt_varint_put(uint8_t *p, uint32_t v)
{
    if (v > TSB_MQTT_VARINT_MAX)
        return 0;
    size_t n = 0;
    do {
        uint8_t b = v & 0x7f;
        v >>= 7;
        p[n++] = (uint8_t)(b | (v ? 0x80 : 0));
    } while (v);
    return n;
}

int tsb_mqtt_varint_get(const uint8_t *p, size_t avail, uint32_t *v, size_t *used)
{
    uint32_t x = 0;
    for (size_t i = 0; i < 4; i++) {
        if (i >= avail)
            return TS_E_AGAIN;
        x |= (uint32_t)(p[i] & 0x7f) << (7 * i);
        if (!(p[i] & 0x80)) {
            *v = x;
            *used = i + 1;
            return TS_OK;
        }
    }
    return TS_E_BAD_FRAME;
}

int tsb_mqtt_split(const uint8_t *p, size_t avail, size_t *hdr, size_t *body)
{
    if (avail < 2)
        return TS_E_AGAIN;
    uint32_t rem;
    size_t used;
    int rc = tsb_mqtt_varint_get(p + 1, avail - 1, &rem, &used);
    if (rc != TS_OK)
        return rc;
    size_t total = 1 + used + rem;
    if (total > TSB_MQTT_PKT_MAX)
        return TS_E_BAD_FRAME;
    if (avail < total)
        return TS_E_AGAIN;
    *hdr = 0;
    *body = total;
    return TS_OK;
}

/* Fixed header for a body of rem bytes; returns its length, 0 when the
 * whole packet does not fit in cap. */
static size_t fixed(uint8_t *buf, size_t cap, int type_flags, size_t rem)
{
    uint8_t v[4];
    if (rem > TSB_MQTT_VARINT_MAX)
        return 0;
    size_t n = tsb_mqtt_varint_put(v, (uint32_t)rem);
    if (1 + n + rem > cap)
        return 0;
    buf[0] = (uint8_t)type_flags;
    memcpy(buf + 1, v, n);
    return 1 + n;
}

static uint8_t *put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
    return p + 2;
}

static uint8_t *put_str(uint8_t *p, const char *s, size_t n)
{
    p = put16(p, (uint16_t)n);
    memcpy(p, s, n);
    return p + n;
}

size_t tsb_mqtt_connect(uint8_t *buf, size_t cap, const char *client_id, int clean,
                        uint16_t keepalive)
{
    size_t idn = strlen(client_id);
    if (idn > 65535)
        return 0;
    /* 3.1.2: "MQTT" name, level 4, flags, keepalive; 3.1.3: the client id */
    size_t rem = 6 + 1 + 1 + 2 + 2 + idn;
    size_t h = fixed(buf, cap, TSB_MQTT_CONNECT << 4, rem);
    if (!h)
        return 0;
    uint8_t *p = put_str(buf + h, "MQTT", 4);
    *p++ = 4;
    *p++ = clean ? 0x02 : 0x00;
    p = put16(p, keepalive);
    p = put_str(p, client_id, idn);
    return (size_t)(p - buf);
}

size_t tsb_mqtt_subscribe(uint8_t *buf, size_t cap, uint16_t pid, const char *topic, int qos)
{
    size_t tn = strlen(topic);
    if (pid == 0 || tn == 0 || tn > 65535 || qos < 0 || qos > 2)
        return 0;
    /* 3.8.1: the flags of SUBSCRIBE are 0010 */
    size_t h = fixed(buf, cap, TSB_MQTT_SUBSCRIBE << 4 | 0x2, 2 + 2 + tn + 1);
    if (!h)
        return 0;
    uint8_t *p = put16(buf + h, pid);
    p = put_str(p, topic, tn);
    *p++ = (uint8_t)qos;
    return (size_t)(p - buf);
}

size_t tsb_mqtt_publish(uint8_t *buf, size_t cap, const char *topic, int qos, uint16_t pid,
                        const void *payload, size_t len)
{
    size_t tn = strlen(topic);
    if (tn == 0 || tn > 65535 || qos < 0 || qos > 1 || (qos && pid == 0))
        return 0;
    size_t h = fixed(buf, cap, TSB_MQTT_PUBLISH << 4 | qos << 1, 2 + tn + (qos ? 2 : 0) + len);
    if (!h)
        return 0;
    uint8_t *p = put_str(buf + h, topic, tn);
    if (qos)
        p = put16(p, pid);
    if (len)
        memcpy(p, payload, len);
    return (size_t)(p + len - buf);
}

size_t tsb_mqtt_puback(uint8_t *buf, size_t cap, uint16_t pid)
{
    size_t h = fixed(buf, cap, TSB_MQTT_PUBACK << 4, 2);
    return h ? (size_t)(put16(buf + h, pid) - buf) : 0;
}

size_t tsb_mqtt_pingreq(uint8_t *buf, size_t cap)
{
    return fixed(buf, cap, TSB_MQTT_PINGREQ << 4, 0);
}

size_t tsb_mqtt_disconnect(uint8_t *buf, size_t cap)
{
    return fixed(buf, cap, TSB_MQTT_DISCONNECT << 4, 0);
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

int tsb_mqtt_parse(const uint8_t *p, size_t len, struct tsb_mqtt_pkt *out)
{
    memset(out, 0, sizeof(*out));
    size_t hdr, total;
    if (tsb_mqtt_split(p, len, &hdr, &total) != TS_OK || total != len)
        return TS_E_BAD_FRAME;
    uint32_t rem;
    size_t used;
    if (tsb_mqtt_varint_get(p + 1, len - 1, &rem, &used) != TS_OK)
        return TS_E_BAD_FRAME; /* split read it already: cannot fail */
    const uint8_t *b = p + 1 + used;
    out->type = p[0] >> 4;
    out->flags = p[0] & 0x0f;
    switch (out->type) {
    case TSB_MQTT_CONNACK:
        if (rem != 2 || out->flags)
            return TS_E_BAD_FRAME;
        out->session_present = b[0] & 1;
        out->rc = b[1];
        return TS_OK;
    case TSB_MQTT_PUBACK:
        if (rem != 2 || out->flags)
            return TS_E_BAD_FRAME;
        out->pid = get16(b);
        return TS_OK;
    case TSB_MQTT_SUBACK:
        if (rem != 3 || out->flags) /* we subscribe to one topic at a time */
            return TS_E_BAD_FRAME;
        out->pid = get16(b);
        out->rc = b[2];
        return TS_OK;
    case TSB_MQTT_PINGRESP:
        return rem == 0 && !out->flags ? TS_OK : TS_E_BAD_FRAME;
    case TSB_MQTT_PUBLISH: {
        out->qos = (out->flags >> 1) & 3;
        if (out->qos == 3 || rem < 2)
            return TS_E_BAD_FRAME;
        size_t tn = get16(b);
        size_t need = 2 + tn + (out->qos ? 2 : 0);
        if (tn == 0 || rem < need)
            return TS_E_BAD_FRAME;
        out->topic = b + 2;
        out->topic_len = tn;
        if (out->qos)
            out->pid = get16(b + 2 + tn);
        out->payload = b + need;
        out->payload_len = rem - need;
        return TS_OK;
    }
    default:
        return TS_E_BAD_FRAME;
    }
}
