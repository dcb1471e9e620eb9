/*
 * ts_bench_wire: see ts_bench_wire.h. A field is (tag varint, value): wire
 * type 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32.
 */
#include "ts_bench_wire.h"

#include "ts_err.h"

struct rd {
    const uint8_t *p, *end;
};

static int varint(struct rd *r, uint64_t *v)
{
    uint64_t x = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end)
            return -1;
        uint8_t b = *r->p++;
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return -1;
}

/* Next field: number, wire type, and for varints the value, for
 * length-delimited fields the bytes. 1 at end, -1 on malformed input. */
static int next_field(struct rd *r, unsigned *num, unsigned *type, uint64_t *v,
                      const uint8_t **bytes, size_t *blen)
{
    if (r->p >= r->end)
        return 1;
    uint64_t tag;
    if (varint(r, &tag) != 0)
        return -1;
    *num = (unsigned)(tag >> 3);
    *type = (unsigned)(tag & 7);
    switch (*type) {
    case 0:
        return varint(r, v);
    case 1:
        if (r->end - r->p < 8)
            return -1;
        r->p += 8;
        return 0;
    case 2: {
        uint64_t n;
        if (varint(r, &n) != 0 || n > (uint64_t)(r->end - r->p))
            return -1;
        *bytes = r->p;
        *blen = (size_t)n;
        r->p += n;
        return 0;
    }
    case 5:
        if (r->end - r->p < 4)
            return -1;
        r->p += 4;
        return 0;
    default:
        return -1;
    }
}

int tsb_wire_frame(const uint8_t *body, size_t len, unsigned *field, const uint8_t **msg,
                   size_t *msg_len)
{
    struct rd r = {body, body + len};
    unsigned num, type;
    uint64_t v;
    const uint8_t *b = NULL;
    size_t bl = 0;
    int rc;
    *field = 0;
    while ((rc = next_field(&r, &num, &type, &v, &b, &bl)) == 0) {
        if (type == 2) {
            *field = num;
            *msg = b;
            *msg_len = bl;
        }
    }
    return rc < 0 || !*field ? TS_E_BAD_FRAME : TS_OK;
}

static int comment_fields(const uint8_t *msg, size_t len, struct tsb_wire_event *ev)
{
    struct rd r = {msg, msg + len};
    unsigned num, type;
    uint64_t v = 0;
    const uint8_t *b = NULL;
    size_t bl = 0;
    int rc;
    while ((rc = next_field(&r, &num, &type, &v, &b, &bl)) == 0) {
        if (num == 1 && type == 0)
            ev->comment_id = v;
        else if (num == 6 && type == 2) {
            ev->body = b;
            ev->body_len = bl;
        }
    }
    return rc < 0 ? -1 : 0;
}

static int event_fields(const uint8_t *msg, size_t len, struct tsb_wire_event *ev)
{
    struct rd r = {msg, msg + len};
    unsigned num, type;
    uint64_t v = 0;
    const uint8_t *b = NULL;
    size_t bl = 0;
    int rc;
    *ev = (struct tsb_wire_event){0};
    while ((rc = next_field(&r, &num, &type, &v, &b, &bl)) == 0) {
        if (num == 1 && type == 0)
            ev->seq = v;
        else if (num == 3 && type == 2 && comment_fields(b, bl, ev) != 0)
            return -1;
    }
    return rc < 0 ? -1 : 0;
}

int tsb_wire_events(const uint8_t *msg, size_t len,
                    int (*cb)(void *arg, const struct tsb_wire_event *ev), void *arg,
                    uint64_t *last_seq, int *caught_up)
{
    struct rd r = {msg, msg + len};
    unsigned num, type;
    uint64_t v = 0;
    const uint8_t *b = NULL;
    size_t bl = 0;
    int rc, stopped = 0;
    *last_seq = 0;
    *caught_up = 0;
    while ((rc = next_field(&r, &num, &type, &v, &b, &bl)) == 0) {
        if (num == 1 && type == 2 && !stopped) {
            struct tsb_wire_event ev;
            if (event_fields(b, bl, &ev) != 0)
                return TS_E_BAD_FRAME;
            stopped = cb(arg, &ev);
        } else if (num == 2 && type == 0) {
            *last_seq = v;
        } else if (num == 3 && type == 0) {
            *caught_up = v != 0;
        }
    }
    return rc < 0 ? TS_E_BAD_FRAME : TS_OK;
}

int tsb_wire_chunk(const uint8_t *msg, size_t len, uint64_t *threads, uint64_t *comments,
                   void (*cb)(void *arg, uint64_t comment_id), void *arg)
{
    struct rd r = {msg, msg + len};
    unsigned num, type;
    uint64_t v = 0;
    const uint8_t *b = NULL;
    size_t bl = 0;
    int rc;
    *threads = *comments = 0;
    while ((rc = next_field(&r, &num, &type, &v, &b, &bl)) == 0) {
        if (num == 1 && type == 2) {
            (*threads)++;
        } else if (num == 2 && type == 2) {
            (*comments)++;
            if (cb) {
                struct tsb_wire_event ev = {0};
                if (comment_fields(b, bl, &ev) != 0)
                    return TS_E_BAD_FRAME;
                cb(arg, ev.comment_id);
            }
        }
    }
    return rc < 0 ? TS_E_BAD_FRAME : TS_OK;
}

uint64_t tsb_wire_u64(const uint8_t *msg, size_t len, unsigned field)
{
    struct rd r = {msg, msg + len};
    unsigned num, type;
    uint64_t v = 0, out = 0;
    const uint8_t *b = NULL;
    size_t bl = 0;
    while (next_field(&r, &num, &type, &v, &b, &bl) == 0)
        if (num == field && type == 0)
            out = v;
    return out;
}
