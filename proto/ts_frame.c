/*
 * ts_frame: length-prefixed protobuf frames.
 *
 * Decoder invariants: buf[pos..len) holds unconsumed stream bytes; pos only
 * grows until the buffer is compacted (when a frame must be completed and the
 * tail would not fit) or released (when empty). A poisoned decoder (err != 0)
 * never decodes again: after a bad length there is no way to find the next
 * frame boundary, so the connection must be closed.
 */
#include "ts_frame.h"

#include "ts_assert.h"
#include "ts_endian.h"
#include "ts_err.h"
#include "ts_valid.h"
#include "ts_varint.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* Unpacking may allocate more than the wire size (every submessage is a
 * struct, every string a copy with its NUL). A budget of 8x the body plus a
 * floor covers every legitimate frame; a frame crafted to blow up (millions of
 * empty submessages) fails with BAD_FRAME instead of exhausting memory. */
#define UNPACK_BUDGET_FACTOR 8
#define UNPACK_BUDGET_FLOOR (64u << 10)
/* The first chunk's room beyond 1.5x the wire: a small frame's structs. */
#define FRAME_FIRST_SLACK 256
#define WALK_DEPTH_MAX 8

/* A decoded frame's memory: every block protobuf-c asks for while unpacking
 * one frame is carved, bump fashion, from chunks of one malloc each, so a
 * decode costs a malloc or two instead of one per submessage and string,
 * and ts_frame_free a free per chunk instead of a walk of the message with
 * a free per block (in a mirror's first sync, the frees alone were about a
 * third of its receive CPU).
 *
 * Invariants: the Frame is the first block protobuf-c allocates (it does
 * so before anything else), so it sits at the start of the first chunk's
 * data and ts_frame_free finds that chunk from it. The first chunk heads a
 * list of the others (its next). Blocks are never freed one by one:
 * protobuf-c's frees (its scan slabs, a failed unpack) are no-ops, and a
 * failed unpack frees the chunks whole. The budget counts what protobuf-c
 * requested, as before the arena; the chunks add alignment and at most
 * the last chunk's unused room, itself no bigger than the chunks before it
 * together. */
struct frame_chunk {
    struct frame_chunk *next; /* in the first chunk: the list of the others */
    size_t cap, used;         /* bytes of data */
    _Alignas(max_align_t) unsigned char data[];
};

struct frame_arena {
    struct frame_chunk *first, *cur;
    size_t used;        /* bytes protobuf-c requested */
    size_t cap;         /* the budget */
    size_t first_chunk; /* the first chunk's size, unless a block needs more */
    size_t chunk_bytes; /* of the chunks so far: the next one's size */
};

#define FRAME_ALIGN (_Alignof(max_align_t))

static void *arena_alloc(void *data, size_t size)
{
    struct frame_arena *a = data;
    if (size > a->cap - a->used)
        return NULL;
    a->used += size;
    size_t need = (size + FRAME_ALIGN - 1) & ~(FRAME_ALIGN - 1);
    struct frame_chunk *c = a->cur;
    if (!c || need > c->cap - c->used) {
        size_t cap = a->chunk_bytes ? a->chunk_bytes : a->first_chunk;
        if (cap < need)
            cap = need;
        c = malloc(sizeof(*c) + cap);
        if (!c)
            return NULL;
        c->cap = cap;
        c->used = 0;
        c->next = NULL;
        if (!a->first) {
            a->first = c;
        } else {
            c->next = a->first->next;
            a->first->next = c;
        }
        a->cur = c;
        a->chunk_bytes += cap; /* doubling: a badly underestimated frame takes few */
    }
    void *p = c->data + c->used;
    c->used += need;
    return p;
}

static void arena_free(void *data, void *ptr)
{
    (void)data;
    (void)ptr;
}

/* The first chunk heads the list, so one walk from it frees them all. */
static void chunks_free(struct frame_chunk *first)
{
    while (first) {
        struct frame_chunk *next = first->next;
        free(first);
        first = next;
    }
}

/* Reads a varint from p[0..end); returns bytes read, 0 when malformed. */
static size_t get_varint(const uint8_t *p, const uint8_t *end, uint64_t *v)
{
    uint64_t r = 0;
    for (size_t i = 0; i < 10 && p + i < end; i++) {
        r |= (uint64_t)(p[i] & 0x7F) << (7 * i);
        if (!(p[i] & 0x80)) {
            *v = r;
            return i + 1;
        }
    }
    return 0;
}

/* Checks every string field in a serialized message of type desc: valid
 * UTF-8 without NUL; and refuses field number 0, which the protobuf spec
 * forbids but protobuf-c accepts as an unknown field (it then re-encodes
 * into bytes it refuses: found by fuzz_frame). With member non-NULL (the
 * Frame itself) it also refuses a second, different top-level field: Frame
 * is one oneof, and protobuf-c would silently keep the last member seen.
 * Other malformed wire data is left for protobuf-c to reject. */
static int walk_strings(const ProtobufCMessageDescriptor *desc, const uint8_t *p,
                        const uint8_t *end, int depth, const char **bad_field, uint64_t *member)
{
    if (depth > WALK_DEPTH_MAX)
        return TS_OK;
    while (p < end) {
        uint64_t tag, len;
        size_t n = get_varint(p, end, &tag);
        if (!n)
            return TS_OK;
        if ((tag >> 3) == 0)
            return TS_E_BAD_FRAME;
        if (member && *member && *member != (tag >> 3))
            return TS_E_BAD_FRAME;
        if (member)
            *member = tag >> 3;
        p += n;
        switch (tag & 7) {
        case 0:
            n = get_varint(p, end, &len);
            if (!n)
                return TS_OK;
            p += n;
            break;
        case 1:
            p += 8;
            break;
        case 5:
            p += 4;
            break;
        case 2: {
            n = get_varint(p, end, &len);
            if (!n || len > (uint64_t)(end - p - (ptrdiff_t)n))
                return TS_OK;
            p += n;
            const ProtobufCFieldDescriptor *fd =
                protobuf_c_message_descriptor_get_field(desc, (unsigned)(tag >> 3));
            if (fd && fd->type == PROTOBUF_C_TYPE_STRING) {
                /* the first bad string is reported; the walk goes on, since
                 * a field 0 further on still makes the frame BAD_FRAME */
                if (!*bad_field && (memchr(p, 0, len) || !ts_valid_utf8((const char *)p, len)))
                    *bad_field = fd->name;
            } else if (fd && fd->type == PROTOBUF_C_TYPE_MESSAGE) {
                if (walk_strings(fd->descriptor, p, p + len, depth + 1, bad_field, NULL) ==
                    TS_E_BAD_FRAME)
                    return TS_E_BAD_FRAME;
            }
            p += len;
            break;
        }
        default:
            return TS_OK;
        }
    }
    return *bad_field ? TS_E_INVALID_ARGUMENT : TS_OK;
}

/* The Frame field (one per oneof case) that points at msg_case's message. */
static const ProtobufCFieldDescriptor *msg_field(int msg_case)
{
    return msg_case ? protobuf_c_message_descriptor_get_field(&threadsync__frame__descriptor,
                                                              (unsigned)msg_case)
                    : NULL;
}

static const ProtobufCFieldDescriptor *request_id_field(const ProtobufCMessage *m)
{
    const ProtobufCFieldDescriptor *fd =
        protobuf_c_message_descriptor_get_field_by_name(m->descriptor, "request_id");
    return fd && fd->type == PROTOBUF_C_TYPE_UINT64 && fd->label != PROTOBUF_C_LABEL_REPEATED
               ? fd
               : NULL;
}

uint64_t ts_frame_request_id(const Threadsync__Frame *f)
{
    const ProtobufCFieldDescriptor *slot = msg_field((int)f->msg_case);
    if (!slot)
        return 0;
    const ProtobufCMessage *m = *(ProtobufCMessage *const *)((const char *)f + slot->offset);
    const ProtobufCFieldDescriptor *rid = m ? request_id_field(m) : NULL;
    return rid ? *(const uint64_t *)((const char *)m + rid->offset) : 0;
}

void ts_frame_set_request(Threadsync__Frame *f, int msg_case, ProtobufCMessage *m, uint64_t id)
{
    const ProtobufCFieldDescriptor *slot = msg_field(msg_case);
    const ProtobufCFieldDescriptor *rid = request_id_field(m);
    *(uint64_t *)((char *)m + rid->offset) = id;
    *(ProtobufCMessage **)((char *)f + slot->offset) = m;
    f->msg_case = (Threadsync__Frame__MsgCase)msg_case;
}

int ts_frame_request_encode(int msg_case, const uint8_t *msg, size_t msg_len, uint64_t id,
                            uint8_t **out, size_t *len)
{
    const ProtobufCFieldDescriptor *slot = msg_field(msg_case);
    const ProtobufCFieldDescriptor *rid =
        slot && slot->type == PROTOBUF_C_TYPE_MESSAGE
            ? protobuf_c_message_descriptor_get_field_by_name(slot->descriptor, "request_id")
            : NULL;
    if (!rid || rid->type != PROTOBUF_C_TYPE_UINT64 || rid->label == PROTOBUF_C_LABEL_REPEATED)
        return TS_E_INVALID_ARGUMENT;
    uint8_t id_field[2 * TS_VARINT_MAX];
    size_t id_len = ts_varint_put(id_field, ((uint64_t)rid->id << 3) | 0);
    id_len += ts_varint_put(id_field + id_len, id);
    uint8_t head[2 * TS_VARINT_MAX];
    size_t inner = msg_len + id_len;
    size_t head_len = ts_varint_put(head, ((uint64_t)slot->id << 3) | 2);
    head_len += ts_varint_put(head + head_len, inner);
    size_t body = head_len + inner;
    if (body > TS_FRAME_MAX_LIMIT)
        return TS_E_TOO_LARGE;
    uint8_t *buf = malloc(TS_FRAME_HEADER + body);
    if (!buf)
        return TS_E_NOMEM;
    buf[0] = (uint8_t)(body >> 24);
    buf[1] = (uint8_t)(body >> 16);
    buf[2] = (uint8_t)(body >> 8);
    buf[3] = (uint8_t)body;
    uint8_t *p = buf + TS_FRAME_HEADER;
    memcpy(p, head, head_len);
    p += head_len;
    if (msg_len)
        memcpy(p, msg, msg_len);
    memcpy(p + msg_len, id_field, id_len);
    *out = buf;
    *len = TS_FRAME_HEADER + body;
    return TS_OK;
}

ProtobufCMessage *ts_frame_msg_copy(const ProtobufCMessage *m)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return NULL;
    protobuf_c_message_pack(m, buf);
    ProtobufCMessage *copy = protobuf_c_message_unpack(m->descriptor, NULL, len, buf);
    free(buf);
    return copy;
}

void ts_frame_pong(Threadsync__Frame *f, Threadsync__Pong *pong, const Threadsync__Ping *ping)
{
    threadsync__frame__init(f);
    threadsync__pong__init(pong);
    pong->nonce = ping->nonce;
    f->msg_case = THREADSYNC__FRAME__MSG_PONG;
    f->pong = pong;
}

size_t ts_frame_size(const Threadsync__Frame *f)
{
    return TS_FRAME_HEADER + protobuf_c_message_get_packed_size(&f->base);
}

size_t ts_frame_pack(const Threadsync__Frame *f, uint8_t *out)
{
    size_t n = protobuf_c_message_pack(&f->base, out + TS_FRAME_HEADER);
    ts_store_be32(out, (uint32_t)n);
    return n + TS_FRAME_HEADER;
}

int ts_frame_encode(const Threadsync__Frame *f, uint8_t **out, size_t *len)
{
    size_t size = ts_frame_size(f);
    if (size - TS_FRAME_HEADER > TS_FRAME_MAX_LIMIT)
        return TS_E_TOO_LARGE;
    uint8_t *buf = malloc(size);
    if (!buf)
        return TS_E_NOMEM;
    *len = ts_frame_pack(f, buf);
    *out = buf;
    return TS_OK;
}

void ts_frame_free(Threadsync__Frame *f)
{
    if (f)
        chunks_free(
            (struct frame_chunk *)((unsigned char *)f - offsetof(struct frame_chunk, data)));
}

int ts_frame_unpack(const uint8_t *body, size_t len, Threadsync__Frame **out,
                    const char **bad_field)
{
    /* The first chunk: what a frame of events decodes to (structs and
     * copied strings, about 1.5 times the wire), so most frames take one. */
    struct frame_arena arena = {.cap = len * UNPACK_BUDGET_FACTOR + UNPACK_BUDGET_FLOOR,
                                .first_chunk = len + len / 2 + FRAME_FIRST_SLACK};
    ProtobufCAllocator alloc = {arena_alloc, arena_free, &arena};
    *bad_field = NULL;
    *out = threadsync__frame__unpack(&alloc, len, body);
    if (!*out) {
        chunks_free(arena.first);
        return TS_E_BAD_FRAME;
    }
    /* protobuf-c allocates the Frame first: ts_frame_free relies on it */
    TS_ASSERT((unsigned char *)*out == arena.first->data);
    uint64_t member = 0;
    int rc = walk_strings(&threadsync__frame__descriptor, body, body + len, 0, bad_field, &member);
    if (rc == TS_E_BAD_FRAME) {
        ts_frame_free(*out);
        *out = NULL;
    }
    return rc;
}

struct ts_frame_decoder {
    uint8_t *buf;
    size_t pos, len, cap;
    size_t last; /* the last frame's wire size */
    uint32_t max_frame;
    int err;
};

struct ts_frame_decoder *ts_frame_decoder_new(uint32_t max_frame)
{
    struct ts_frame_decoder *dec = calloc(1, sizeof(*dec));
    if (dec)
        dec->max_frame = max_frame;
    return dec;
}

void ts_frame_decoder_free(struct ts_frame_decoder *dec)
{
    if (!dec)
        return;
    free(dec->buf);
    free(dec);
}

void ts_frame_decoder_set_max(struct ts_frame_decoder *dec, uint32_t max_frame)
{
    dec->max_frame = max_frame;
}

int ts_frame_decoder_feed(struct ts_frame_decoder *dec, const void *data, size_t len)
{
    if (dec->err || len == 0)
        return TS_OK; /* a poisoned decoder drops bytes; next() reports why */
    if (dec->pos == dec->len)
        dec->pos = dec->len = 0;
    if (len > dec->cap - dec->len) {
        if (dec->pos > 0) {
            memmove(dec->buf, dec->buf + dec->pos, dec->len - dec->pos);
            dec->len -= dec->pos;
            dec->pos = 0;
        }
        if (len > dec->cap - dec->len) {
            size_t cap = dec->cap ? dec->cap : 4096;
            while (cap - dec->len < len)
                cap *= 2;
            uint8_t *nb = realloc(dec->buf, cap);
            if (!nb)
                return TS_E_NOMEM;
            dec->buf = nb;
            dec->cap = cap;
        }
    }
    memcpy(dec->buf + dec->len, data, len);
    dec->len += len;
    return TS_OK;
}

/* Drops the buffer once it is empty, so idle connections hold no memory. */
static void release_if_empty(struct ts_frame_decoder *dec)
{
    if (dec->pos == dec->len) {
        free(dec->buf);
        dec->buf = NULL;
        dec->pos = dec->len = dec->cap = 0;
    }
}

int ts_frame_decoder_next(struct ts_frame_decoder *dec, Threadsync__Frame **out,
                          const char **bad_field)
{
    *out = NULL;
    *bad_field = NULL;
    if (dec->err)
        return dec->err;
    size_t avail = dec->len - dec->pos;
    if (avail < TS_FRAME_HEADER)
        return TS_E_AGAIN;
    const uint8_t *p = dec->buf + dec->pos;
    uint32_t n = ts_load_be32(p);
    if (n == 0)
        return dec->err = TS_E_BAD_FRAME;
    if (n > dec->max_frame)
        return dec->err = TS_E_TOO_LARGE;
    if (avail - TS_FRAME_HEADER < n)
        return TS_E_AGAIN;
    int rc = ts_frame_unpack(p + TS_FRAME_HEADER, n, out, bad_field);
    if (rc == TS_E_BAD_FRAME)
        return dec->err = rc;
    dec->pos += TS_FRAME_HEADER + n;
    dec->last = TS_FRAME_HEADER + (size_t)n;
    release_if_empty(dec);
    return rc;
}

size_t ts_frame_decoder_last_size(const struct ts_frame_decoder *dec)
{
    return dec->last;
}

size_t ts_frame_decoder_pending(const struct ts_frame_decoder *dec)
{
    return dec->len - dec->pos;
}

size_t ts_frame_event_element(const Threadsync__Event *ev, uint8_t *out)
{
    return ts_frame_event_element_sized(ev, protobuf_c_message_get_packed_size(&ev->base), out);
}

size_t ts_frame_event_element_sized(const Threadsync__Event *ev, size_t body, uint8_t *out)
{
    size_t n = 0;
    out[n++] = (1 << 3) | 2; /* Events.events, length-delimited */
    n += ts_varint_put(out + n, body);
    n += protobuf_c_message_pack(&ev->base, out + n);
    return n;
}

void ts_frame_events_wrap(size_t elements_len, uint64_t last_seq, int caught_up,
                          uint8_t head[TS_FRAME_EVENTS_HEAD_MAX], size_t *head_len,
                          uint8_t tail[TS_FRAME_EVENTS_TAIL_MAX], size_t *tail_len)
{
    size_t t = 0;
    if (last_seq) {
        tail[t++] = (2 << 3) | 0; /* Events.last_seq */
        t += ts_varint_put(tail + t, last_seq);
    }
    if (caught_up) {
        tail[t++] = (3 << 3) | 0; /* Events.caught_up */
        tail[t++] = 1;
    }
    *tail_len = t;
    size_t events_len = elements_len + t;
    uint8_t inner[12];
    size_t i = 0;
    i += ts_varint_put(inner, (THREADSYNC__FRAME__MSG_EVENTS << 3) | 2); /* Frame.events */
    i += ts_varint_put(inner + i, events_len);
    size_t frame_len = i + events_len;
    ts_store_be32(head, (uint32_t)frame_len);
    memcpy(head + TS_FRAME_HEADER, inner, i);
    *head_len = TS_FRAME_HEADER + i;
}
