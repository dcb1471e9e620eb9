/*
 * ts_evlog: retained event log, encoded once, addressed by position.
 *
 * Layout, chosen for memory and for FIFO eviction:
 *   - an index ring of fixed 40-byte slots (seq, thread id, two element
 *     pointers, two lengths), indexed by pos & mask; it doubles when full,
 *     up to max_events slots, and never shrinks;
 *   - the encoded bytes (public element then full element, back to back) in
 *     a FIFO of chunks of CHUNK_SIZE bytes (or one bigger chunk for an event
 *     that does not fit). Entries and chunks are both in append order, so the
 *     oldest entry's bytes always live in the oldest chunk: each chunk counts
 *     its live entries and is freed as a whole when that count drops to zero
 *     and it is no longer the chunk being filled;
 *   - when the two encodings are the same bytes (a comment without e-mail
 *     or moderator: the only difference the public form makes), one copy,
 *     both pointers at it. Rewriting the public form of such an event
 *     (moderation, rare) moves it to an allocation of its own, which the
 *     slot owns (PUB_OWNED) and eviction frees.
 *
 * Invariants: entries [first_pos, end_pos) are retained, seq strictly
 * increasing along them; bytes == sum of the element bytes they hold (a
 * shared copy counted once); horizon
 * is the seq of the newest evicted entry. After an append there is always
 * at least one retained entry (the one just appended is never evicted).
 *
 * Load: one append per applied write (tens of thousands per second), many
 * more reads (every subscriber's cursor walks the ring).
 */
#include "ts_evlog.h"

#include "ts_err.h"
#include "ts_frame.h"

#include <stdlib.h>
#include <string.h>

#define DEFAULT_MAX_EVENTS 1000000
#define DEFAULT_MAX_BYTES (512u << 20)
#define CHUNK_SIZE (256u << 10)
#define RING_MIN 64

struct chunk {
    struct chunk *next;
    size_t cap, used;
    size_t live; /* retained entries whose bytes are in this chunk */
    uint8_t data[];
};

struct slot {
    uint64_t seq;
    uint64_t thread_id;
    const uint8_t *pub;  /* in a chunk, right before full; or == full; or owned */
    const uint8_t *full; /* in a chunk */
    uint32_t pub_len;    /* | PUB_OWNED when pub is the slot's own allocation */
    uint32_t full_len;
};

#define PUB_OWNED 0x80000000u
#define ELEMENT_MAX 0x7fffffffu

static size_t pub_len(const struct slot *s)
{
    return s->pub_len & ~PUB_OWNED;
}

/* The element bytes s holds, as log->bytes counts them. */
static size_t held(const struct slot *s)
{
    return s->full_len + (s->pub == s->full ? 0 : pub_len(s));
}

struct ts_evlog {
    size_t max_events, max_bytes;
    struct slot *ring;
    size_t ring_cap; /* power of two */
    uint64_t first_pos, end_pos;
    uint64_t last_seq, horizon;
    size_t bytes;                /* element bytes retained */
    size_t chunk_bytes;          /* chunk allocations held, headers included */
    size_t owned_bytes;          /* public elements in their own allocations */
    struct chunk *oldest, *tail; /* FIFO; tail is being filled */
};

int ts_evlog_new(const struct ts_evlog_config *cfg, struct ts_evlog **out)
{
    struct ts_evlog *log = calloc(1, sizeof(*log));
    if (!log)
        return TS_E_NOMEM;
    log->max_events = cfg && cfg->max_events ? cfg->max_events : DEFAULT_MAX_EVENTS;
    log->max_bytes = cfg && cfg->max_bytes ? cfg->max_bytes : DEFAULT_MAX_BYTES;
    *out = log;
    return TS_OK;
}

void ts_evlog_free(struct ts_evlog *log)
{
    if (!log)
        return;
    for (uint64_t p = log->first_pos; p < log->end_pos; p++)
        if (log->ring[p & (log->ring_cap - 1)].pub_len & PUB_OWNED)
            free((void *)log->ring[p & (log->ring_cap - 1)].pub);
    struct chunk *c = log->oldest;
    while (c) {
        struct chunk *next = c->next;
        free(c);
        c = next;
    }
    free(log->ring);
    free(log);
}

static struct slot *slot_at(const struct ts_evlog *log, uint64_t pos)
{
    return &log->ring[pos & (log->ring_cap - 1)];
}

static int ring_grow(struct ts_evlog *log)
{
    size_t cap = log->ring_cap ? log->ring_cap * 2 : RING_MIN;
    struct slot *ring = malloc(cap * sizeof(*ring));
    if (!ring)
        return TS_E_NOMEM;
    for (uint64_t p = log->first_pos; p < log->end_pos; p++)
        ring[p & (cap - 1)] = *slot_at(log, p);
    free(log->ring);
    log->ring = ring;
    log->ring_cap = cap;
    return TS_OK;
}

/* Room for need bytes at the end of the tail chunk, opening a new chunk
 * when the tail is full. The old tail's unused end is wasted (at most one
 * event's worth per chunk). */
static uint8_t *reserve(struct ts_evlog *log, size_t need)
{
    struct chunk *t = log->tail;
    if (t && t->cap - t->used >= need)
        return t->data + t->used;
    size_t cap = need > CHUNK_SIZE ? need : CHUNK_SIZE;
    struct chunk *c = malloc(sizeof(*c) + cap);
    if (!c)
        return NULL;
    c->next = NULL;
    c->cap = cap;
    c->used = 0;
    c->live = 0;
    if (t)
        t->next = c;
    else
        log->oldest = c;
    log->tail = c;
    log->chunk_bytes += sizeof(*c) + cap;
    if (t && t->live == 0) {
        /* Every entry of the old tail was evicted while it was still being
         * filled: nothing references it any more. Only possible when it
         * was the oldest chunk. */
        log->oldest = c;
        log->chunk_bytes -= sizeof(*t) + t->cap;
        free(t);
    }
    return c->data;
}

static void evict_oldest(struct ts_evlog *log)
{
    struct slot *s = slot_at(log, log->first_pos);
    log->horizon = s->seq;
    log->bytes -= held(s);
    if (s->pub_len & PUB_OWNED) {
        free((void *)s->pub);
        log->owned_bytes -= pub_len(s);
    }
    log->first_pos++;
    struct chunk *c = log->oldest;
    c->live--;
    if (c->live == 0 && c != log->tail) {
        log->oldest = c->next;
        log->chunk_bytes -= sizeof(*c) + c->cap;
        free(c);
    }
}

int ts_evlog_append(struct ts_evlog *log, uint64_t seq, uint64_t thread_id,
                    const Threadsync__Event *full, const Threadsync__Event *pub)
{
    if (seq <= log->last_seq || full->seq != seq || (pub && pub->seq != seq))
        return TS_E_INVALID_ARGUMENT;
    /* Without a distinct public view the full one is encoded once: the
     * size and pack of an event are most of what a post costs the main
     * loop after its digests (bench/README.md, ingest). */
    size_t pub_body = pub ? protobuf_c_message_get_packed_size(&pub->base) : 0;
    size_t full_body = protobuf_c_message_get_packed_size(&full->base);
    size_t pub_max = pub ? pub_body + TS_FRAME_ELEMENT_OVERHEAD : 0;
    size_t full_max = full_body + TS_FRAME_ELEMENT_OVERHEAD;
    if (pub_max > ELEMENT_MAX || full_max > ELEMENT_MAX)
        return TS_E_TOO_LARGE;
    if (log->end_pos - log->first_pos == log->ring_cap && ring_grow(log) != TS_OK)
        return TS_E_NOMEM;
    uint8_t *p = reserve(log, pub_max + full_max);
    if (!p)
        return TS_E_NOMEM;
    size_t pub_len = pub ? ts_frame_event_element_sized(pub, pub_body, p) : 0;
    size_t full_len = ts_frame_event_element_sized(full, full_body, p + pub_len);
    struct slot *s = slot_at(log, log->end_pos);
    s->seq = seq;
    s->thread_id = thread_id;
    s->pub = p;
    s->full = p + pub_len;
    s->pub_len = (uint32_t)(pub ? pub_len : full_len);
    s->full_len = (uint32_t)full_len;
    /* one copy when the two are the same bytes */
    if (!pub || (pub_len == full_len && memcmp(p, p + pub_len, pub_len) == 0))
        s->full = p;
    log->tail->used += held(s);
    log->tail->live++;
    log->end_pos++;
    log->last_seq = seq;
    log->bytes += held(s);

    while (log->end_pos - log->first_pos > 1 &&
           (log->end_pos - log->first_pos > log->max_events || log->bytes > log->max_bytes))
        evict_oldest(log);
    return TS_OK;
}

void ts_evlog_reset(struct ts_evlog *log, uint64_t seq)
{
    while (log->first_pos < log->end_pos)
        evict_oldest(log);
    /* Skip one position: every existing cursor, even one that was at the
     * end, is now below first_pos and so gets a snapshot of the new state. */
    log->first_pos = log->end_pos = log->end_pos + 1;
    if (seq > log->horizon)
        log->horizon = seq;
    if (seq > log->last_seq)
        log->last_seq = seq;
}

uint64_t ts_evlog_first_pos(const struct ts_evlog *log)
{
    return log->first_pos;
}

uint64_t ts_evlog_end_pos(const struct ts_evlog *log)
{
    return log->end_pos;
}

uint64_t ts_evlog_last_seq(const struct ts_evlog *log)
{
    return log->last_seq;
}

uint64_t ts_evlog_horizon(const struct ts_evlog *log)
{
    return log->horizon;
}

uint64_t ts_evlog_pos_after(const struct ts_evlog *log, uint64_t since_seq)
{
    uint64_t lo = log->first_pos, hi = log->end_pos;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (slot_at(log, mid)->seq <= since_seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int ts_evlog_get(const struct ts_evlog *log, uint64_t pos, struct ts_evlog_entry *e)
{
    if (pos < log->first_pos || pos >= log->end_pos)
        return TS_E_NOT_FOUND;
    const struct slot *s = slot_at(log, pos);
    e->seq = s->seq;
    e->thread_id = s->thread_id;
    e->pub = s->pub;
    e->pub_len = pub_len(s);
    e->full = s->full;
    e->full_len = s->full_len;
    return TS_OK;
}

size_t ts_evlog_memory(const struct ts_evlog *log)
{
    return sizeof(*log) + log->ring_cap * sizeof(struct slot) + log->chunk_bytes + log->owned_bytes;
}

/* Puts the public element (nl bytes at b, no longer than the old one) in
 * s's place for it: over the old one in its chunk, moving the full element
 * down behind it; else (one copy shared with the full element, or already
 * apart) in an allocation of its own. */
static int replace_public(struct ts_evlog *log, struct slot *s, const uint8_t *b, size_t nl)
{
    size_t old = pub_len(s);
    if (nl == old && memcmp(s->pub, b, nl) == 0)
        return TS_OK;
    if (s->pub == s->full || (s->pub_len & PUB_OWNED)) {
        uint8_t *own = malloc(nl ? nl : 1);
        if (!own)
            return TS_E_NOMEM;
        memcpy(own, b, nl);
        log->bytes -= held(s);
        if (s->pub_len & PUB_OWNED) {
            free((void *)s->pub);
            log->owned_bytes -= old;
        }
        s->pub = own;
        s->pub_len = (uint32_t)nl | PUB_OWNED;
        log->owned_bytes += nl;
        log->bytes += held(s);
        return TS_OK;
    }
    uint8_t *p = (uint8_t *)s->pub;
    memcpy(p, b, nl);
    memmove(p + nl, s->full, s->full_len);
    s->full = p + nl;
    s->pub_len = (uint32_t)nl;
    log->bytes -= old - nl;
    return TS_OK;
}

size_t ts_evlog_rewrite_public(struct ts_evlog *log, uint64_t thread_id, uint64_t comment_id,
                               uint64_t from_seq, void (*fn)(void *arg, Threadsync__Event *ev),
                               void *arg)
{
    size_t n = 0;
    uint64_t pos = ts_evlog_pos_after(log, from_seq ? from_seq - 1 : 0);
    for (; pos < log->end_pos; pos++) {
        struct slot *s = slot_at(log, pos);
        if (s->thread_id != thread_id)
            continue;
        /* element: tag, varint length, Event */
        const uint8_t *p = s->pub;
        size_t plen = pub_len(s), i = 1, len = 0;
        for (int shift = 0; i < plen && shift < 35; shift += 7) {
            len |= (size_t)(p[i] & 0x7f) << shift;
            if (!(p[i++] & 0x80))
                break;
        }
        if (i + len != plen)
            continue;
        Threadsync__Event *ev = threadsync__event__unpack(NULL, len, p + i);
        if (!ev)
            continue;
        if (ev->comment && ev->comment->id == comment_id) {
            /* fn edits shallow copies: the decoded strings stay owned by ev
             * and are freed with it. */
            Threadsync__Event copy = *ev;
            Threadsync__Comment cc = *ev->comment;
            Threadsync__Thread tc;
            copy.comment = &cc;
            if (ev->thread) {
                tc = *ev->thread;
                copy.thread = &tc;
            }
            fn(arg, &copy);
            size_t max = protobuf_c_message_get_packed_size(&copy.base) + TS_FRAME_ELEMENT_OVERHEAD;
            uint8_t small[512];
            uint8_t *tmp = max <= sizeof(small) ? small : malloc(max);
            if (tmp) {
                size_t nl = ts_frame_event_element(&copy, tmp);
                if (nl <= plen && replace_public(log, s, tmp, nl) == TS_OK)
                    n++;
                if (tmp != small)
                    free(tmp);
            }
        }
        threadsync__event__free_unpacked(ev, NULL);
    }
    return n;
}
