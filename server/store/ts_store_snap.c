/*
 * ts_store_snap: the whole store as a StoreSnapshot (Raft snapshots and
 * backups), a new state built from one, and the state's digest (the same
 * state gives the same digest on every replica).
 *
 * Restore checks everything the layout and the invariants rely on and
 * swaps the new state in only when the whole snapshot loaded: a bad one
 * leaves the store as it was. Load: one snapshot per few thousand entries
 * applied; it costs one protobuf struct per record.
 */
#include "ts_store.h"
#include "ts_store_int.h"

#include "threadsync_state.pb-c.h"
#include "ts_buf.h"
#include "ts_err.h"
#include "ts_hex.h"
#include "ts_pbarena.h"
#include "ts_valid.h"
#include "ts_varint.h"

#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* ---- writing a snapshot ----
 *
 * Each record is packed straight into the output buffer from a view on the
 * stack: a snapshot's memory is its bytes, not a protobuf struct per record
 * besides (issue 17: in the snapshot child those were fresh pages the
 * kernel zeroed for every snapshot). */

/* m packed as it is (a part of the top-level message's fields). */
static void put_fields(struct ts_buf *b, const ProtobufCMessage *m)
{
    uint8_t *p = (uint8_t *)ts_buf_space(b, protobuf_c_message_get_packed_size(m));
    if (p)
        ts_buf_commit(b, protobuf_c_message_pack(m, p));
}

/* m as one element of the top level's repeated field `field`: the bytes
 * protobuf-c's pack of the whole message gives it. */
static void put_record(struct ts_buf *b, unsigned field, const ProtobufCMessage *m)
{
    size_t size = protobuf_c_message_get_packed_size(m);
    uint8_t *p = (uint8_t *)ts_buf_space(b, 2 * TS_VARINT_MAX + size);
    if (!p)
        return;
    size_t k = ts_varint_put(p, (uint64_t)field << 3 | 2); /* length-delimited */
    k += ts_varint_put(p + k, size);
    ts_buf_commit(b, k + protobuf_c_message_pack(m, p + k));
}

int ts_store_snapshot(const struct ts_store *s, uint8_t **out, size_t *len)
{
    const struct state *st = &s->st;
    struct ts_buf b = TS_BUF_INIT;
    /* Format 3 only once an Import ran, format 4 only once the trail holds
     * a record: other states stay readable by the releases before them.
     * Both carry the position. */
    uint32_t format = TS__STORE_SNAPSHOT_FORMAT;
    if (st->pos != st->last_index || st->n_imports)
        format = TS__STORE_SNAPSHOT_FORMAT_IMPORT;
    if (st->audit_n)
        format = TS__STORE_SNAPSHOT_FORMAT_AUDIT;
    /* The top level's fields in field number order, as protobuf-c packs a
     * whole StoreSnapshot (ts_store_test checks the bytes are the same):
     * 1, then the records of 2-4, then 5-6, 30-31, 32-33, 34-35. */
    Threadsync__State__StoreSnapshot part = THREADSYNC__STATE__STORE_SNAPSHOT__INIT;
    part.last_index = st->last_index;
    put_fields(&b, &part.base);

    for (size_t i = 0; i < st->n_threads; i++) {
        Threadsync__Thread v;
        ts__store_thread_view(st, st->threads[i], &v);
        put_record(&b, 2, &v.base);
    }
    for (size_t i = 0; i < st->n_threads; i++) {
        const struct thread *t = st->threads[i];
        for (uint32_t j = 0; j < t->n_comments; j++) {
            Threadsync__Comment v;
            ts__store_comment_view(st, t->comments[j], &v);
            put_record(&b, 3, &v.base);
        }
    }
    for (size_t i = 0; i < st->idem_n; i++) {
        const struct idem *e = ts__store_idem_at(st, i);
        Threadsync__State__IdempotencyEntry v = THREADSYNC__STATE__IDEMPOTENCY_ENTRY__INIT;
        v.key_digest.data = (uint8_t *)e->key_digest;
        v.key_digest.len = TS__STORE_DIGEST_LEN;
        /* Not ts__store_find_comment: a forked child has no comment_by_id. */
        const struct thread *t = st->threads[e->thread_ix];
        const struct comment *c = t->comments[ts__store_comment_slot(t, e->comment_id)];
        v.seq = e->comment_id;
        v.thread_id = t->id;
        v.comment_id = e->comment_id;
        v.status = (Threadsync__Status)e->comment_status;
        v.time_ms = c->created_at;
        if (e->has_hash) {
            v.edit_key_hash.data = (uint8_t *)e->edit_hash;
            v.edit_key_hash.len = TS_STORE_HASH_LEN;
        }
        if (e->has_content) {
            v.content_digest.data = (uint8_t *)e->content_digest;
            v.content_digest.len = TS__STORE_DIGEST_LEN;
        }
        v.derived = e->derived;
        put_record(&b, 4, &v.base);
    }

    part = (Threadsync__State__StoreSnapshot)THREADSYNC__STATE__STORE_SNAPSHOT__INIT;
    Threadsync__State__EventSeq seq = THREADSYNC__STATE__EVENT_SEQ__INIT;
    seq.value = st->seq;
    part.seq = &seq;
    part.format = format;
    put_fields(&b, &part.base);

    for (size_t i = 0; i < st->n_tokens; i++) {
        const struct token *k = &st->tokens[i];
        Threadsync__State__TokenEntry v = THREADSYNC__STATE__TOKEN_ENTRY__INIT;
        v.name = (char *)k->name;
        v.role = (Threadsync__Role)k->role;
        if (k->has_hash) {
            v.token_hash.data = (uint8_t *)k->hash;
            v.token_hash.len = TS_STORE_HASH_LEN;
        }
        v.created_at_ms = k->created_at;
        v.created_by = (char *)k->created_by;
        v.revoked = k->revoked;
        v.revoked_at_ms = k->revoked_at;
        v.gateway = k->gateway;
        put_record(&b, 30, &v.base);
    }
    for (size_t i = 0; i < st->n_bans; i++) {
        Threadsync__State__BanEntry v = THREADSYNC__STATE__BAN_ENTRY__INIT;
        v.author = st->bans[i].author;
        v.until_ms = st->bans[i].until;
        v.banned_by = st->bans[i].by;
        put_record(&b, 31, &v.base);
    }

    part = (Threadsync__State__StoreSnapshot)THREADSYNC__STATE__STORE_SNAPSHOT__INIT;
    Threadsync__State__EventSeq position = THREADSYNC__STATE__EVENT_SEQ__INIT;
    if (st->has_edit_secret) {
        part.edit_secret.data = (uint8_t *)st->edit_secret;
        part.edit_secret.len = TS_STORE_HASH_LEN;
    }
    if (format != TS__STORE_SNAPSHOT_FORMAT) {
        position.value = st->pos;
        part.position = &position;
    }
    put_fields(&b, &part.base);

    /* In the map's slot order: the same state gives the same set, and
     * restore does not depend on the order. */
    for (size_t i = 0; i < st->import_by_digest.cap; i++) {
        const struct import_ref *r = ts_map_slot(&st->import_by_digest, i);
        if (!r)
            continue;
        Threadsync__State__ImportRef v = THREADSYNC__STATE__IMPORT_REF__INIT;
        v.digest.data = (uint8_t *)r->digest;
        v.digest.len = TS__STORE_DIGEST_LEN;
        v.comment_id = r->comment_id;
        put_record(&b, 34, &v.base);
    }
    for (size_t i = 0; i < st->audit_n; i++) {
        Threadsync__AuditEntry v;
        ts__store_audit_view(st, ts__store_audit_at(st, i), &v);
        v.thread_key = (char *)protobuf_c_empty_string; /* the thread says it */
        put_record(&b, 35, &v.base);
    }
    /* An allocation failure sticks in b and is reported here, once. */
    return ts_buf_finish(&b, (char **)out, len);
}

/* ---- restore: one record at a time ----
 *
 * Why not threadsync__state__store_snapshot__unpack: it decodes the whole
 * snapshot at once, a protobuf struct and a malloc'd copy of every string
 * of every record (at a million comments about 900 MB, twice the store
 * being built from it), and freeing that afterwards left the same bytes as
 * free holes under the new records: a restarted node held 2.5 times its
 * store until the heap happened to be trimmed (issue 17, item 7). Here the
 * top level is walked by hand and each record is decoded alone into a
 * small scratch arena, loaded and dropped, so restoring holds the snapshot,
 * the new state and one record.
 *
 * Records are loaded kind by kind in the order their checks need (threads,
 * then comments, then what refers to comments), each kind in the order it
 * appears, as a whole-message decode would list them; so a snapshot is
 * walked once per kind. The other top-level fields (a few scalars) are
 * copied into a small buffer and decoded as a StoreSnapshot without
 * records. */

/* Checks one record against what the layout and the invariants rely on
 * (ids ascending, keys unique, a comment after its thread and parent,
 * lengths within the limits) and adds it to st. */
typedef int (*load_fn)(struct state *st, const Threadsync__State__StoreSnapshot *snap,
                       const void *msg);
static int load_thread(struct state *st, const Threadsync__State__StoreSnapshot *snap,
                       const void *msg)
{
    const Threadsync__Thread *v = msg;
    size_t key_len = ts__store_slen(v->key), title_len = ts__store_slen(v->title),
           url_len = ts__store_slen(v->url);
    if (!key_len || key_len > TS_THREAD_KEY_MAX || title_len > TS_TITLE_MAX ||
        url_len > TS_URL_MAX || !v->id ||
        (st->n_threads && v->id <= st->threads[st->n_threads - 1]->id) ||
        ts__store_find_thread_key(st, v->key, key_len))
        return TS_E_BAD_FRAME;
    struct thread *t =
        ts__store_thread_alloc(v->key, key_len, v->title, title_len, v->url, url_len);
    if (!t)
        return TS_E_NOMEM;
    t->id = v->id;
    t->created_at = v->created_at_ms;
    t->locked = v->locked;
    t->comment_count = v->comment_count;
    t->version = v->version;
    t->premoderated = v->premoderated;
    if (ts__store_intern(st, v->moderated_by, &t->modby) != TS_OK ||
        ts__store_thread_insert(st, t) != TS_OK) {
        free(t);
        return TS_E_NOMEM;
    }
    return TS_OK;
}
static int load_comment(struct state *st, const Threadsync__State__StoreSnapshot *snap,
                        const void *msg)
{
    const Threadsync__Comment *v = msg;
    size_t name_len = ts__store_slen(v->author_name), email_len = ts__store_slen(v->author_email);
    size_t body_len = ts__store_slen(v->body);
    struct thread *t = ts__store_find_thread_id(st, v->thread_id);
    if (!t || name_len > (size_t)TS_AUTHOR_NAME_MAX_CP * 4 || email_len > TS_AUTHOR_EMAIL_MAX ||
        body_len > TS_BODY_MAX || !ts_valid_reader_key(v->reader_key) || !v->id ||
        ts__store_find_comment(st, v->id) ||
        (t->n_comments && v->id <= t->comments[t->n_comments - 1]->id) || (int)v->status < 0 ||
        (int)v->status > 255)
        return TS_E_BAD_FRAME;
    if (v->parent_id) {
        const struct comment *parent = ts__store_find_comment(st, v->parent_id);
        if (!parent || parent->thread_ix != t->ix)
            return TS_E_BAD_FRAME;
    }
    struct comment_ext x = {.edited_at = v->edited_at_ms, .version = v->version};
    if (ts__store_intern(st, v->moderated_by, &x.modby) != TS_OK)
        return TS_E_NOMEM;
    struct comment *c = ts__store_comment_alloc(v->author_name, name_len, v->author_email,
                                                email_len, v->body, body_len, v->reader_key, &x);
    if (!c)
        return TS_E_NOMEM;
    c->id = v->id;
    c->thread_ix = t->ix;
    c->parent_id = v->parent_id;
    c->created_at = v->created_at_ms;
    c->status = (uint8_t)v->status;
    if (ts__store_comment_insert(st, t, c) != TS_OK) {
        free(c);
        return TS_E_NOMEM;
    }
    if (c->status == THREADSYNC__STATUS__PENDING)
        t->pending_count++;
    return TS_OK;
}
static int load_idempotency(struct state *st, const Threadsync__State__StoreSnapshot *snap,
                            const void *msg)
{
    const Threadsync__State__IdempotencyEntry *v = msg;
    struct idem e = {.comment_id = v->comment_id};
    size_t key_len = ts__store_slen(v->key);
    if (snap->format == 0) {
        if (!key_len || key_len > TS_IDEMPOTENCY_KEY_MAX)
            return TS_E_BAD_FRAME;
        ts__store_idem_digest(v->key, key_len, e.key_digest);
    } else {
        if (key_len || v->key_digest.len != TS__STORE_DIGEST_LEN)
            return TS_E_BAD_FRAME;
        memcpy(e.key_digest, v->key_digest.data, TS__STORE_DIGEST_LEN);
    }
    /* The entry's answer must be its comment's (see struct idem): no
     * release has written one that is not. */
    const struct comment *c = ts__store_find_comment(st, v->comment_id);
    if (!c || v->seq != v->comment_id || ts__store_comment_thread(st, c)->id != v->thread_id ||
        c->created_at != v->time_ms || (int)v->status < 0 || (int)v->status > 255 ||
        (v->edit_key_hash.len && v->edit_key_hash.len != TS_STORE_HASH_LEN))
        return TS_E_BAD_FRAME;
    e.thread_ix = c->thread_ix;
    e.comment_status = (uint8_t)v->status;
    e.has_hash = v->edit_key_hash.len == TS_STORE_HASH_LEN;
    if (e.has_hash)
        memcpy(e.edit_hash, v->edit_key_hash.data, TS_STORE_HASH_LEN);
    /* Format 2's fields; older formats have none (no content check, a
     * random edit key). A derived entry needs the secret and its hash. */
    if ((snap->format < 2 && (v->content_digest.len || v->derived)) ||
        (v->content_digest.len && v->content_digest.len != TS__STORE_DIGEST_LEN) ||
        (v->derived && (!st->has_edit_secret || !e.has_hash)))
        return TS_E_BAD_FRAME;
    e.has_content = v->content_digest.len == TS__STORE_DIGEST_LEN;
    if (e.has_content)
        memcpy(e.content_digest, v->content_digest.data, TS__STORE_DIGEST_LEN);
    e.derived = v->derived;
    /* BAD_FRAME: a repeated key, or entries out of comment id order */
    int rc = ts__store_idem_append(st, &e);
    if (rc != TS_OK)
        return rc;
    return TS_OK;
}
static int load_token(struct state *st, const Threadsync__State__StoreSnapshot *snap,
                      const void *msg)
{
    const Threadsync__State__TokenEntry *v = msg;
    if (!ts__store_valid_token_name(v->name) || ts__store_slen(v->created_by) > TS_STORE_NAME_MAX ||
        (v->token_hash.len && v->token_hash.len != TS_STORE_HASH_LEN) ||
        (!v->token_hash.len && !v->revoked) || v->role < 0 || v->role > THREADSYNC__ROLE__ADMIN)
        return TS_E_BAD_FRAME;
    struct token tk;
    ts__store_token_init(&tk, v->name, v->created_by);
    tk.has_hash = v->token_hash.len == TS_STORE_HASH_LEN;
    if (tk.has_hash)
        memcpy(tk.hash, v->token_hash.data, TS_STORE_HASH_LEN);
    tk.role = (uint8_t)v->role;
    tk.created_at = v->created_at_ms;
    tk.revoked = v->revoked;
    tk.revoked_at = v->revoked_at_ms;
    tk.gateway = v->gateway;
    int rc = ts__store_token_insert(st, &tk);
    if (rc != TS_OK)
        return rc == TS_E_EXISTS ? TS_E_BAD_FRAME : rc;
    return TS_OK;
}
static int load_import(struct state *st, const Threadsync__State__StoreSnapshot *snap,
                       const void *msg)
{
    const Threadsync__State__ImportRef *v = msg;
    if (snap->format < TS__STORE_SNAPSHOT_FORMAT_IMPORT)
        return TS_E_BAD_FRAME;
    if (v->digest.len != TS__STORE_DIGEST_LEN || !ts__store_find_comment(st, v->comment_id) ||
        ts__store_find_import(st, v->digest.data))
        return TS_E_BAD_FRAME;
    if (ts__store_import_add(st, v->digest.data, v->comment_id) != TS_OK)
        return TS_E_NOMEM;
    return TS_OK;
}
static int load_ban(struct state *st, const Threadsync__State__StoreSnapshot *snap, const void *msg)
{
    const Threadsync__State__BanEntry *v = msg;
    size_t len = ts__store_slen(v->author);
    if (!len || len > TS_AUTHOR_EMAIL_MAX || ts__store_slen(v->banned_by) > TS_STORE_NAME_MAX)
        return TS_E_BAD_FRAME;
    if (ts__store_ban_put(st, v->author, v->until_ms, v->banned_by ? v->banned_by : "") != TS_OK)
        return TS_E_NOMEM;
    return TS_OK;
}
static int load_audit(struct state *st, const Threadsync__State__StoreSnapshot *snap,
                      const void *msg)
{
    if (snap->format < TS__STORE_SNAPSHOT_FORMAT_AUDIT)
        return TS_E_BAD_FRAME;
    struct audit *a = ts__store_audit_alloc(msg);
    if (!a)
        return TS_E_BAD_FRAME; /* a string over its limit (or no memory) */
    /* BAD_FRAME: out of seq order, an unknown action */
    int rc = ts__store_audit_push(st, a);
    if (rc != TS_OK)
        free(a);
    return rc;
}

/* The record kinds, in loading order. */
static const struct record_kind {
    const char *field; /* in StoreSnapshot */
    const ProtobufCMessageDescriptor *desc;
    load_fn load;
} record_kinds[] = {
    {"threads", &threadsync__thread__descriptor, load_thread},
    {"comments", &threadsync__comment__descriptor, load_comment},
    {"idempotency", &threadsync__state__idempotency_entry__descriptor, load_idempotency},
    {"tokens", &threadsync__state__token_entry__descriptor, load_token},
    {"imported", &threadsync__state__import_ref__descriptor, load_import},
    {"audit", &threadsync__audit_entry__descriptor, load_audit},
    {"bans", &threadsync__state__ban_entry__descriptor, load_ban},
};
#define N_KINDS (sizeof(record_kinds) / sizeof(record_kinds[0]))

static uint32_t kind_field_id(size_t k)
{
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(
        &threadsync__state__store_snapshot__descriptor, record_kinds[k].field);
    return f ? f->id : 0;
}

/* One top-level field: number, wire type, and its bytes from the tag on
 * (tag) and of the value (val, len; for length-delimited fields without
 * the length prefix). */
struct wire_field {
    uint32_t num;
    unsigned wt;
    const uint8_t *tag, *val, *end;
    size_t len;
};

static int get_varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return TS_OK;
        }
    }
    return TS_E_BAD_FRAME;
}

/* The field at *p, advancing *p past it. Groups (wire types 3 and 4) are
 * refused, as protobuf-c refuses them. */
static int next_field(const uint8_t **p, const uint8_t *end, struct wire_field *f)
{
    uint64_t key, v;
    f->tag = *p;
    if (get_varint(p, end, &key) != TS_OK || (key >> 3) == 0 || (key >> 3) > UINT32_MAX)
        return TS_E_BAD_FRAME;
    f->num = (uint32_t)(key >> 3);
    f->wt = (unsigned)(key & 7);
    f->val = *p;
    switch (f->wt) {
    case 0:
        if (get_varint(p, end, &v) != TS_OK)
            return TS_E_BAD_FRAME;
        break;
    case 1:
    case 5:
        if ((size_t)(end - *p) < (f->wt == 1 ? 8u : 4u))
            return TS_E_BAD_FRAME;
        *p += f->wt == 1 ? 8 : 4;
        break;
    case 2:
        if (get_varint(p, end, &v) != TS_OK || v > (uint64_t)(end - *p))
            return TS_E_BAD_FRAME;
        f->val = *p;
        *p += v;
        break;
    default:
        return TS_E_BAD_FRAME;
    }
    f->end = *p;
    f->len = (size_t)(f->end - f->val);
    return TS_OK;
}

/* One record's decode carves its blocks from a scratch buffer of this size
 * (ts_pbarena): records are small, so decoding one costs no malloc; what
 * does not fit (a record near the size limits) comes from malloc. */
#define SCRATCH_BYTES (64u << 10)

/* Whether field number num holds records. */
static int is_record_field(const uint32_t ids[N_KINDS], uint32_t num)
{
    for (size_t k = 0; k < N_KINDS; k++)
        if (ids[k] == num)
            return 1;
    return 0;
}

/* Copies the fields that are not records into out (NULL: only counts);
 * returns their bytes, or SIZE_MAX when the top level does not parse. */
static size_t header_fields(const uint8_t *buf, size_t len, const uint32_t ids[N_KINDS],
                            uint8_t *out)
{
    size_t n = 0;
    const uint8_t *p = buf, *end = buf + len;
    while (p < end) {
        struct wire_field f;
        if (next_field(&p, end, &f) != TS_OK)
            return SIZE_MAX;
        if (is_record_field(ids, f.num))
            continue;
        if (out)
            memcpy(out + n, f.tag, (size_t)(f.end - f.tag));
        n += (size_t)(f.end - f.tag);
    }
    return n;
}

/* The snapshot's top level without its records, decoded: *out is freed
 * with threadsync__state__store_snapshot__free_unpacked(*out, NULL). */
static int decode_header(const uint8_t *buf, size_t len, const uint32_t ids[N_KINDS],
                         Threadsync__State__StoreSnapshot **out)
{
    size_t n = header_fields(buf, len, ids, NULL);
    if (n == SIZE_MAX)
        return TS_E_BAD_FRAME;
    uint8_t *hdr = malloc(n ? n : 1);
    if (!hdr)
        return TS_E_NOMEM;
    header_fields(buf, len, ids, hdr);
    *out = threadsync__state__store_snapshot__unpack(NULL, n, hdr);
    free(hdr);
    return *out ? TS_OK : TS_E_BAD_FRAME;
}

static int load_header(struct state *st, const Threadsync__State__StoreSnapshot *snap)
{
    if (snap->format > TS__STORE_SNAPSHOT_FORMAT_AUDIT)
        return TS_E_BAD_FRAME; /* a newer release's: what it means is unknown here */
    if (snap->format < TS__STORE_SNAPSHOT_FORMAT_IMPORT && snap->position)
        return TS_E_BAD_FRAME;
    st->last_index = snap->last_index;
    st->pos = snap->position ? snap->position->value : snap->last_index;
    if (st->pos < st->last_index)
        return TS_E_BAD_FRAME;
    /* Snapshots of earlier releases lack it: their last index is a seq no
     * event follows before the next entry, so a cursor there misses nothing. */
    st->seq = snap->seq ? snap->seq->value : snap->last_index;
    if (snap->edit_secret.len) {
        if (snap->format < 2 || snap->edit_secret.len != TS_STORE_HASH_LEN)
            return TS_E_BAD_FRAME;
        memcpy(st->edit_secret, snap->edit_secret.data, TS_STORE_HASH_LEN);
        st->has_edit_secret = 1;
    }
    return TS_OK;
}

/* Where each kind's records lie in the buffer: [first, end) spans every
 * record of the kind (other fields may sit between them); first == end
 * when there are none. Found by one scan of the top level. */
struct kind_span {
    size_t first, end;
};

static int find_spans(const uint8_t *buf, size_t len, const uint32_t ids[N_KINDS],
                      struct kind_span span[N_KINDS])
{
    memset(span, 0, sizeof(struct kind_span) * N_KINDS);
    const uint8_t *p = buf, *end = buf + len;
    while (p < end) {
        const uint8_t *at = p;
        struct wire_field f;
        if (next_field(&p, end, &f) != TS_OK)
            return TS_E_BAD_FRAME;
        for (size_t k = 0; k < N_KINDS; k++) {
            if (ids[k] != f.num)
                continue;
            if (span[k].first == span[k].end)
                span[k].first = (size_t)(at - buf);
            span[k].end = (size_t)(p - buf);
        }
    }
    return TS_OK;
}

/* Releases the whole pages of buf[from, to) (a buffer the caller gave up). */
static void release_pages(uint8_t *buf, size_t from, size_t to)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    /* Offsets from the start of buf's first page; a >= mis always. */
    size_t mis = (uintptr_t)buf & (pg - 1);
    size_t a = (from + mis + pg - 1) / pg * pg;
    size_t b = (to + mis) / pg * pg;
    if (b > a)
        (void)madvise(buf + (a - mis), b - a, MADV_DONTNEED);
}

/* Release behind the decode in steps of this many bytes: one madvise per
 * step, not per record. */
#define RELEASE_STEP (4u << 20)

/* Every record of kind k, in order, from its span. With discard set, the
 * bytes of the span that no later kind's span overlaps (free_to: the
 * first such byte) are released behind the decode. */
static int load_records(struct state *st, const Threadsync__State__StoreSnapshot *snap,
                        const uint8_t *buf, const struct kind_span *sp, size_t k, uint32_t id,
                        struct ts_pbarena *sc, uint8_t *discard, size_t free_to)
{
    const uint8_t *p = buf + sp->first, *end = buf + sp->end;
    size_t released = sp->first;
    while (p < end) {
        struct wire_field f;
        if (next_field(&p, end, &f) != TS_OK)
            return TS_E_BAD_FRAME;
        if (f.num != id)
            continue;
        if (f.wt != 2)
            return TS_E_BAD_FRAME;
        ts_pbarena_reset(sc);
        ProtobufCMessage *m =
            protobuf_c_message_unpack(record_kinds[k].desc, &sc->alloc, f.len, f.val);
        if (!m)
            return TS_E_BAD_FRAME;
        int rc = record_kinds[k].load(st, snap, m);
        if (sc->spilled)
            protobuf_c_message_free_unpacked(m, &sc->alloc);
        if (rc != TS_OK)
            return rc;
        size_t at = (size_t)(p - buf) < free_to ? (size_t)(p - buf) : free_to;
        if (discard && at >= released + RELEASE_STEP) {
            release_pages(discard, released, at);
            released = at;
        }
    }
    if (discard && free_to > released)
        release_pages(discard, released, free_to < sp->end ? free_to : sp->end);
    return TS_OK;
}

/* The first byte at or after span k's start that a kind loaded after k
 * still needs (a later span overlapping k's), or k's end. */
static size_t free_limit(const struct kind_span span[N_KINDS], size_t k)
{
    size_t lim = span[k].end;
    for (size_t j = k + 1; j < N_KINDS; j++) {
        if (span[j].first == span[j].end || span[j].end <= span[k].first)
            continue; /* empty, or wholly before k's span */
        size_t s = span[j].first > span[k].first ? span[j].first : span[k].first;
        if (s < lim)
            lim = s;
    }
    return lim;
}

static int load_snapshot(struct state *st, const uint8_t *buf, size_t len, uint8_t *discard)
{
    uint32_t ids[N_KINDS];
    for (size_t k = 0; k < N_KINDS; k++)
        if (!(ids[k] = kind_field_id(k)))
            return TS_E_INTERNAL;
    struct kind_span span[N_KINDS];
    Threadsync__State__StoreSnapshot *snap;
    int rc = find_spans(buf, len, ids, span);
    if (rc != TS_OK)
        return rc;
    rc = decode_header(buf, len, ids, &snap); /* a copy: the buffer may go after it */
    if (rc != TS_OK)
        return rc;
    uint8_t *scratch = malloc(SCRATCH_BYTES);
    struct ts_pbarena sc;
    ts_pbarena_init(&sc, scratch, SCRATCH_BYTES);
    rc = scratch ? load_header(st, snap) : TS_E_NOMEM;
    for (size_t k = 0; k < N_KINDS && rc == TS_OK; k++)
        rc = load_records(st, snap, buf, &span[k], k, ids[k], &sc, discard,
                          discard ? free_limit(span, k) : 0);
    free(scratch);
    threadsync__state__store_snapshot__free_unpacked(snap, NULL);
    return rc;
}

static int restore(struct ts_store *s, const uint8_t *buf, size_t len, uint8_t *discard)
{
    struct state st;
    ts__store_state_init(&st);
    int rc = load_snapshot(&st, buf, len, discard);
    if (rc != TS_OK) {
        ts__store_state_free(&st);
        return rc;
    }
    st.auth_gen = s->st.auth_gen + 1; /* tokens may differ: sessions recheck */
    ts__store_state_free(&s->st);
    s->st = st;
    return TS_OK;
}

int ts_store_restore(struct ts_store *s, const uint8_t *buf, size_t len)
{
    return restore(s, buf, len, NULL);
}

int ts_store_restore_discard(struct ts_store *s, uint8_t *buf, size_t len)
{
    return restore(s, buf, len, buf);
}

static void dig_u64(EVP_MD_CTX *md, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    EVP_DigestUpdate(md, b, sizeof(b));
}

static void dig_str(EVP_MD_CTX *md, const char *s, size_t len)
{
    dig_u64(md, len);
    EVP_DigestUpdate(md, s, len);
}

void ts_store_digest(const struct ts_store *s, char out[65])
{
    const struct state *st = &s->st;
    uint8_t h[32];
    unsigned hlen = 0;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
        EVP_MD_CTX_free(md);
        memset(out, '0', 64); /* no digest is no match, not a crash */
        out[64] = '\0';
        return;
    }
    /* Every field, fixed width, strings length-prefixed, a tag per record
     * kind: two different states cannot serialise to the same bytes. */
    for (size_t i = 0; i < st->n_threads; i++) {
        const struct thread *t = st->threads[i];
        const char *p = t->text;
        EVP_DigestUpdate(md, "T", 1);
        dig_u64(md, t->id);
        dig_str(md, p, t->key_len);
        p += t->key_len + 1;
        dig_str(md, p, t->title_len);
        p += t->title_len + 1;
        dig_str(md, p, t->url_len);
        dig_u64(md, (uint64_t)t->created_at);
        dig_u64(md, t->locked);
        dig_u64(md, t->comment_count);
        dig_u64(md, t->version);
        dig_u64(md, t->premoderated);
        const char *tm = ts__store_name_at(st, t->modby);
        dig_str(md, tm, strlen(tm));
        for (uint32_t j = 0; j < t->n_comments; j++) {
            const struct comment *c = t->comments[j];
            const char *q = ts__store_comment_text(c);
            struct comment_ext x;
            ts__store_comment_ext(c, &x);
            EVP_DigestUpdate(md, "C", 1);
            dig_u64(md, c->id);
            dig_u64(md, t->id);
            dig_u64(md, c->parent_id);
            dig_str(md, q, c->name_len);
            q += c->name_len + 1;
            dig_str(md, q, c->email_len);
            q += c->email_len + 1;
            dig_str(md, q, c->body_len);
            dig_u64(md, (uint64_t)c->created_at);
            dig_u64(md, (uint64_t)x.edited_at);
            dig_u64(md, c->status);
            dig_u64(md, x.version);
            const char *cm = ts__store_name_at(st, x.modby);
            dig_str(md, cm, strlen(cm));
            /* Only when present, so states without reader keys keep the
             * digest older releases compute. */
            if (c->rk_len) {
                EVP_DigestUpdate(md, "R", 1);
                dig_str(md, ts__store_comment_reader_key(c), c->rk_len);
            }
        }
    }
    for (size_t i = 0; i < st->n_tokens; i++) {
        const struct token *k = &st->tokens[i];
        EVP_DigestUpdate(md, "K", 1);
        dig_str(md, k->name, strlen(k->name));
        dig_u64(md, k->role);
        dig_u64(md, k->has_hash);
        EVP_DigestUpdate(md, k->hash, sizeof(k->hash));
        dig_u64(md, (uint64_t)k->created_at);
        dig_str(md, k->created_by, strlen(k->created_by));
        dig_u64(md, k->revoked);
        dig_u64(md, (uint64_t)k->revoked_at);
        if (k->gateway)
            EVP_DigestUpdate(md, "G", 1);
    }
    for (size_t i = 0; i < st->n_bans; i++) {
        const struct ban *b = &st->bans[i];
        EVP_DigestUpdate(md, "B", 1);
        dig_str(md, b->author, strlen(b->author));
        dig_u64(md, (uint64_t)b->until);
        dig_str(md, b->by, strlen(b->by));
    }
    /* Absent when empty: a state without a trail keeps older releases'
     * digest. Every record of the trail, as every node keeps the same. */
    for (size_t i = 0; i < st->audit_n; i++) {
        Threadsync__AuditEntry v;
        ts__store_audit_view(st, ts__store_audit_at(st, i), &v);
        EVP_DigestUpdate(md, "A", 1);
        dig_u64(md, v.seq);
        dig_u64(md, (uint64_t)v.time_ms);
        dig_str(md, v.actor, strlen(v.actor));
        dig_u64(md, (uint64_t)v.action);
        dig_u64(md, v.thread_id);
        dig_u64(md, v.comment_id);
        dig_str(md, v.text_before, strlen(v.text_before));
        dig_str(md, v.reason, strlen(v.reason));
        dig_str(md, v.target, strlen(v.target));
        dig_u64(md, (uint64_t)v.until_ms);
        dig_u64(md, (uint64_t)v.role);
    }
    EVP_DigestFinal_ex(md, h, &hlen);
    EVP_MD_CTX_free(md);
    ts_hex_encode(h, sizeof(h), out);
}
