/*
 * ts_limits: GCRA buckets and per-address connection counts in three
 * chained hash tables (authors, tokens, addresses).
 *
 * GCRA with emission interval T = window / burst and tolerance
 * tau = window - T: a request at now passes when max(tat, now) - now <= tau
 * and moves tat to max(tat, now) + T. Times are microseconds so that
 * intervals such as 1000 ms / 3 do not round to zero. A bucket whose tat is
 * not after now is full: it says nothing a missing entry would not say,
 * which is why pruning may drop it.
 */
#include "ts_limits.h"

#include "ts_err.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

struct entry {
    struct entry *next;
    uint64_t hash;
    uint64_t tat_us; /* buckets */
    uint32_t conns;  /* addresses */
    char key[];
};

struct table {
    struct entry **slots;
    size_t cap, n;
    size_t prune_at; /* sweep full buckets when n reaches it */
};

struct ts_limits {
    struct ts_limits_config cfg;
    struct table authors, tokens, addrs;
    uint64_t seed;
};

#define PRUNE_MIN 1024

static uint64_t hash_key(const struct ts_limits *l, const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ l->seed;
    for (; *s; s++) {
        h ^= (uint8_t)*s;
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 31;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 29;
    return h;
}

static struct entry *find(const struct table *t, uint64_t h, const char *key)
{
    if (!t->cap)
        return NULL;
    for (struct entry *e = t->slots[h & (t->cap - 1)]; e; e = e->next)
        if (e->hash == h && strcmp(e->key, key) == 0)
            return e;
    return NULL;
}

static int grow(struct table *t)
{
    size_t cap = t->cap ? t->cap * 2 : 64;
    struct entry **slots = calloc(cap, sizeof(*slots));
    if (!slots)
        return TS_E_NOMEM;
    for (size_t i = 0; i < t->cap; i++) {
        struct entry *e = t->slots[i];
        while (e) {
            struct entry *next = e->next;
            e->next = slots[e->hash & (cap - 1)];
            slots[e->hash & (cap - 1)] = e;
            e = next;
        }
    }
    free(t->slots);
    t->slots = slots;
    t->cap = cap;
    return TS_OK;
}

static struct entry *insert(struct table *t, uint64_t h, const char *key)
{
    if (t->n + 1 > t->cap && grow(t) != TS_OK)
        return NULL;
    size_t len = strlen(key);
    struct entry *e = calloc(1, sizeof(*e) + len + 1);
    if (!e)
        return NULL;
    e->hash = h;
    memcpy(e->key, key, len + 1);
    e->next = t->slots[h & (t->cap - 1)];
    t->slots[h & (t->cap - 1)] = e;
    t->n++;
    return e;
}

static void remove_entry(struct table *t, struct entry *e)
{
    struct entry **p = &t->slots[e->hash & (t->cap - 1)];
    while (*p != e)
        p = &(*p)->next;
    *p = e->next;
    free(e);
    t->n--;
}

static void table_free(struct table *t)
{
    for (size_t i = 0; i < t->cap; i++) {
        struct entry *e = t->slots[i];
        while (e) {
            struct entry *next = e->next;
            free(e);
            e = next;
        }
    }
    free(t->slots);
    memset(t, 0, sizeof(*t));
}

/* Drops the buckets that refilled: memory follows the keys active within
 * one window, not every key ever seen. */
static void prune(struct table *t, uint64_t now_us)
{
    for (size_t i = 0; i < t->cap; i++) {
        struct entry **p = &t->slots[i];
        while (*p) {
            struct entry *e = *p;
            if (e->tat_us <= now_us) {
                *p = e->next;
                free(e);
                t->n--;
            } else {
                p = &e->next;
            }
        }
    }
    t->prune_at = t->n * 2 > PRUNE_MIN ? t->n * 2 : PRUNE_MIN;
}

struct ts_limits *ts_limits_new(const struct ts_limits_config *cfg)
{
    struct ts_limits *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->cfg = *cfg;
    if (!l->cfg.author_window_ms)
        l->cfg.author_window_ms = TS_LIMITS_AUTHOR_WINDOW_MS;
    if (!l->cfg.token_window_ms)
        l->cfg.token_window_ms = TS_LIMITS_TOKEN_WINDOW_MS;
    l->authors.prune_at = l->tokens.prune_at = PRUNE_MIN;
    if (getrandom(&l->seed, sizeof(l->seed), 0) != (ssize_t)sizeof(l->seed))
        l->seed = (uint64_t)(uintptr_t)l;
    return l;
}

void ts_limits_free(struct ts_limits *l)
{
    if (!l)
        return;
    table_free(&l->authors);
    table_free(&l->tokens);
    table_free(&l->addrs);
    free(l);
}

struct check {
    struct table *t;
    struct entry *e; /* NULL: no entry yet (a full bucket) */
    uint64_t h;
    const char *key;
    uint64_t next_tat;
};

/* Decides one bucket at now without changing it: 0 and the new tat, or
 * the wait in microseconds. */
static uint64_t gcra(const struct ts_limits *l, struct check *c, uint32_t burst, uint32_t window_ms,
                     uint64_t now_us)
{
    uint64_t window_us = (uint64_t)window_ms * 1000;
    uint64_t interval = window_us / burst;
    if (!interval)
        interval = 1;
    uint64_t tau = window_us - interval;
    c->h = hash_key(l, c->key);
    c->e = find(c->t, c->h, c->key);
    uint64_t tat = c->e && c->e->tat_us > now_us ? c->e->tat_us : now_us;
    if (tat - now_us > tau)
        return tat - now_us - tau;
    c->next_tat = tat + interval;
    return 0;
}

static int commit(struct check *c, uint64_t now_us)
{
    if (!c->e) {
        if (c->t->n >= c->t->prune_at)
            prune(c->t, now_us);
        c->e = insert(c->t, c->h, c->key);
        if (!c->e)
            return TS_E_NOMEM;
    }
    c->e->tat_us = c->next_tat;
    return TS_OK;
}

int ts_limits_post(struct ts_limits *l, const char *token, const char *author, uint64_t now_ms,
                   uint32_t *retry_after_ms)
{
    uint64_t now_us = now_ms * 1000;
    struct check ct = {.t = &l->tokens, .key = token ? token : ""};
    struct check ca = {.t = &l->authors, .key = author ? author : ""};
    uint64_t wait = 0, w;
    int use_t = l->cfg.token_burst != 0, use_a = l->cfg.author_burst != 0;
    if (use_t && (w = gcra(l, &ct, l->cfg.token_burst, l->cfg.token_window_ms, now_us)) > wait)
        wait = w;
    if (use_a && (w = gcra(l, &ca, l->cfg.author_burst, l->cfg.author_window_ms, now_us)) > wait)
        wait = w;
    if (wait) {
        uint64_t ms = (wait + 999) / 1000;
        *retry_after_ms = ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
        return TS_E_RATE_LIMITED;
    }
    /* Both passed: take from both. A failed insert leaves the other taken,
     * which only errs on the strict side. */
    if ((use_t && commit(&ct, now_us) != TS_OK) || (use_a && commit(&ca, now_us) != TS_OK))
        return TS_E_NOMEM;
    return TS_OK;
}

void ts_limits_author_key(const char *name, const char *email, char *out, size_t size)
{
    if (!size)
        return;
    const char *src = email && *email ? email : name ? name : "";
    int lower = email && *email;
    size_t n = 0;
    if (size > 2) {
        out[n++] = lower ? 'e' : 'n';
        out[n++] = ':';
    }
    for (; *src && n + 1 < size; src++) {
        char ch = *src;
        out[n++] = lower && ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
    }
    out[n] = '\0';
}

int ts_limits_conn_open(struct ts_limits *l, const char *addr)
{
    if (!l->cfg.conns_per_addr)
        return TS_OK;
    uint64_t h = hash_key(l, addr);
    struct entry *e = find(&l->addrs, h, addr);
    if (!e && !(e = insert(&l->addrs, h, addr)))
        return TS_E_NOMEM;
    e->conns++;
    if (e->conns <= l->cfg.conns_per_addr)
        return TS_OK;
    return e->conns <= 2 * (uint64_t)l->cfg.conns_per_addr ? TS_E_RATE_LIMITED : TS_E_BUSY;
}

void ts_limits_conn_close(struct ts_limits *l, const char *addr)
{
    if (!l->cfg.conns_per_addr)
        return;
    uint64_t h = hash_key(l, addr);
    struct entry *e = find(&l->addrs, h, addr);
    if (e && --e->conns == 0)
        remove_entry(&l->addrs, e);
}

uint32_t ts_limits_conn_count(const struct ts_limits *l, const char *addr)
{
    const struct entry *e = find(&l->addrs, hash_key(l, addr), addr);
    return e ? e->conns : 0;
}

size_t ts_limits_entries(const struct ts_limits *l)
{
    return l->authors.n + l->tokens.n + l->addrs.n;
}
