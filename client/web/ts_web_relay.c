/*
 * ts_web_relay: the ring of shared SSE frames (see ts_web_relay.h). A
 * circular array of pointers: v[(head + i) % cap] is the i-th oldest.
 */
#include "ts_web_relay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ts_err.h"

struct ts_web_ring {
    struct ts_web_event **v;
    size_t cap, head, n;
    uint64_t floor, last;
};

struct ts_web_event *ts_web_event_new(uint64_t seq, uint64_t thread_id, const char *data,
                                      size_t len)
{
    char head[24];
    int hl = snprintf(head, sizeof(head), "%zx\r\n", len);
    struct ts_web_event *e = malloc(sizeof(*e) + (size_t)hl + len + 2);
    if (!e)
        return NULL;
    e->refs = 1;
    e->seq = seq;
    e->thread_id = thread_id;
    e->prev = 0;
    memcpy(e->buf, head, (size_t)hl);
    memcpy(e->buf + hl, data, len);
    memcpy(e->buf + hl + len, "\r\n", 2);
    e->chunk = e->buf;
    e->chunk_len = (size_t)hl + len + 2;
    e->data = e->buf + hl;
    e->len = len;
    return e;
}

void ts_web_event_ref(struct ts_web_event *e)
{
    e->refs++;
}

void ts_web_event_unref(struct ts_web_event *e)
{
    if (e && --e->refs == 0)
        free(e);
}

int ts_web_ring_new(size_t cap, uint64_t floor, struct ts_web_ring **out)
{
    *out = NULL;
    struct ts_web_ring *r = calloc(1, sizeof(*r));
    if (!r || !(r->v = calloc(cap ? cap : 1, sizeof(*r->v)))) {
        free(r);
        return TS_E_NOMEM;
    }
    r->cap = cap ? cap : 1;
    r->floor = r->last = floor;
    *out = r;
    return TS_OK;
}

void ts_web_ring_reset(struct ts_web_ring *r, uint64_t seq)
{
    for (size_t i = 0; i < r->n; i++)
        ts_web_event_unref(r->v[(r->head + i) % r->cap]);
    r->n = r->head = 0;
    r->floor = seq;
    if (seq > r->last)
        r->last = seq;
}

void ts_web_ring_free(struct ts_web_ring *r)
{
    if (!r)
        return;
    ts_web_ring_reset(r, 0);
    free(r->v);
    free(r);
}

int ts_web_ring_push(struct ts_web_ring *r, struct ts_web_event *e)
{
    if (e->seq <= r->last)
        return TS_E_INVALID_ARGUMENT;
    if (r->n == r->cap) {
        struct ts_web_event *old = r->v[r->head];
        r->floor = old->seq;
        ts_web_event_unref(old);
        r->head = (r->head + 1) % r->cap;
        r->n--;
    }
    r->v[(r->head + r->n) % r->cap] = e;
    r->n++;
    r->last = e->seq;
    return TS_OK;
}

uint64_t ts_web_ring_floor(const struct ts_web_ring *r)
{
    return r->floor;
}

uint64_t ts_web_ring_last(const struct ts_web_ring *r)
{
    return r->last;
}

int ts_web_ring_next(const struct ts_web_ring *r, uint64_t thread_id, uint64_t *cursor,
                     struct ts_web_event **out)
{
    *out = NULL;
    if (*cursor < r->floor)
        return TS_E_NOT_FOUND;
    /* First index whose seq is above the cursor. */
    size_t lo = 0, hi = r->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->v[(r->head + mid) % r->cap]->seq <= *cursor)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t i = lo; i < r->n; i++) {
        struct ts_web_event *e = r->v[(r->head + i) % r->cap];
        if (e->thread_id == thread_id) {
            *out = e;
            return TS_OK;
        }
    }
    if (r->last > *cursor)
        *cursor = r->last;
    return TS_E_AGAIN;
}

struct ts_web_event *ts_web_ring_find(const struct ts_web_ring *r, uint64_t seq)
{
    size_t lo = 0, hi = r->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        struct ts_web_event *e = r->v[(r->head + mid) % r->cap];
        if (e->seq == seq)
            return e;
        if (e->seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

void ts_web_chain_init(struct ts_web_chain *c, const struct ts_web_ring *r)
{
    c->since = c->last = r->last;
}

int ts_web_chain_push(struct ts_web_chain *c, struct ts_web_ring *r, struct ts_web_event *e)
{
    e->prev = c->last;
    int rc = ts_web_ring_push(r, e);
    if (rc == TS_OK)
        c->last = e->seq;
    return rc;
}

void ts_web_chain_reset(struct ts_web_chain *c, uint64_t seq)
{
    if (seq > c->last)
        c->last = seq;
}

int ts_web_chain_next(const struct ts_web_chain *c, const struct ts_web_ring *r, uint64_t thread_id,
                      uint64_t *cursor, struct ts_web_event **out)
{
    *out = NULL;
    if (*cursor < c->since)
        return ts_web_ring_next(r, thread_id, cursor, out);
    if (*cursor >= c->last) {
        /* Every event of the thread up to the newest seq: a cursor there
         * stays above the floor for good. */
        if (r->last > *cursor)
            *cursor = r->last;
        return TS_E_AGAIN;
    }
    /* The thread's first event after the cursor: walk back from its newest.
     * An event missing on the way left the ring (or never entered it: a
     * reset), and the cursor missed it. */
    struct ts_web_event *e = ts_web_ring_find(r, c->last);
    while (e && e->prev > *cursor)
        e = ts_web_ring_find(r, e->prev);
    if (!e)
        return TS_E_NOT_FOUND;
    *out = e;
    return TS_OK;
}
