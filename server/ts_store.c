/*
 * ts_store: threads and comments in memory, changed only by ts_store_apply.
 *
 * Layout, chosen for memory (the store holds every comment ever posted):
 *   - a comment is one allocation: fixed fields, then author_name, e-mail
 *     and body back to back, each NUL-terminated so views point straight
 *     into it;
 *   - a thread likewise holds key, title and url, plus a vector of its
 *     comments sorted by id (ids are Raft indexes and only grow, so a new
 *     comment is appended; a parent always precedes its replies);
 *   - all threads in a vector sorted by id, and open-addressing hash maps of
 *     pointers (linear probing, backward-shift deletion) by thread id,
 *     thread key, comment id and idempotency key;
 *   - idempotency entries also sit in a FIFO ring in first-use order, from
 *     whose head they expire as command time advances.
 *
 * Determinism: nothing here reads a clock or iterates a hash map to produce
 * output; the hash seed may differ between processes without effect.
 *
 * All state lives in struct state so that restore can build a complete new
 * state and swap it in, leaving the old one intact when the snapshot is bad.
 */
#include "ts_store.h"
#include "ts_view.h"

#include "threadsync_state.pb-c.h"
#include "ts_err.h"
#include "ts_evlog.h"
#include "ts_valid.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* ---- hash map ---------------------------------------------------------- */

typedef uint64_t (*hm_hash_fn)(const void *elem);
typedef int (*hm_eq_fn)(const void *elem, const void *key);

struct hmap {
    void **slots;
    size_t cap; /* power of two, or 0 */
    size_t n;
    hm_hash_fn hash;
};

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

/* Thread and idempotency keys come from clients: a per-process seed keeps
 * an outsider from precomputing colliding keys. */
static uint64_t hash_seed;

static uint64_t hash_str(const char *s, size_t len)
{
    if (!hash_seed) {
        uint64_t seed = 0;
        if (getrandom(&seed, sizeof(seed), 0) != (ssize_t)sizeof(seed))
            seed = (uint64_t)(uintptr_t)&hash_seed;
        hash_seed = seed | 1;
    }
    uint64_t h = 0xcbf29ce484222325ULL ^ hash_seed;
    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)s[i];
        h *= 0x100000001b3ULL;
    }
    return mix64(h);
}

static void *hm_find(const struct hmap *m, uint64_t h, const void *key, hm_eq_fn eq)
{
    if (!m->cap)
        return NULL;
    size_t mask = m->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        void *e = m->slots[i];
        if (!e)
            return NULL;
        if (eq(e, key))
            return e;
    }
}

static void hm_place(void **slots, size_t cap, void *elem, uint64_t h)
{
    size_t mask = cap - 1;
    size_t i = h & mask;
    while (slots[i])
        i = (i + 1) & mask;
    slots[i] = elem;
}

/* Load factor at most 3/4: linear probing degrades fast beyond it. */
static int hm_insert(struct hmap *m, void *elem)
{
    if ((m->n + 1) * 4 > m->cap * 3) {
        size_t cap = m->cap ? m->cap * 2 : 16;
        void **slots = calloc(cap, sizeof(*slots));
        if (!slots)
            return TS_E_NOMEM;
        for (size_t i = 0; i < m->cap; i++)
            if (m->slots[i])
                hm_place(slots, cap, m->slots[i], m->hash(m->slots[i]));
        free(m->slots);
        m->slots = slots;
        m->cap = cap;
    }
    hm_place(m->slots, m->cap, elem, m->hash(elem));
    m->n++;
    return TS_OK;
}

static void hm_remove(struct hmap *m, const void *elem)
{
    size_t mask = m->cap - 1;
    size_t i = m->hash(elem) & mask;
    while (m->slots[i] != elem)
        i = (i + 1) & mask;
    /* Backward shift: pull later members of the probe run into the hole
     * when their home slot is not strictly after it, so lookups never need
     * tombstones. */
    for (size_t j = (i + 1) & mask; m->slots[j]; j = (j + 1) & mask) {
        size_t home = m->hash(m->slots[j]) & mask;
        if (((j - home) & mask) >= ((j - i) & mask)) {
            m->slots[i] = m->slots[j];
            i = j;
        }
    }
    m->slots[i] = NULL;
    m->n--;
}

static void hm_free(struct hmap *m)
{
    free(m->slots);
    m->slots = NULL;
    m->cap = m->n = 0;
}

/* ---- records ------------------------------------------------------------ */

struct comment {
    uint64_t id;
    uint64_t thread_id;
    uint64_t parent_id;
    int64_t created_at;
    int64_t edited_at;
    uint64_t version;
    uint32_t body_len;
    uint16_t name_len, email_len;
    uint8_t status;
    char text[]; /* name NUL email NUL body NUL */
};

struct thread {
    uint64_t id;
    int64_t created_at;
    uint64_t version;
    struct comment **comments; /* id order */
    uint32_t n_comments, cap_comments;
    uint32_t comment_count; /* VISIBLE ones */
    uint16_t key_len, title_len, url_len;
    uint8_t locked;
    char text[]; /* key NUL title NUL url NUL */
};

struct idem {
    uint64_t seq, thread_id, comment_id;
    int64_t time_ms;
    uint8_t comment_status;
    uint8_t key_len;
    char key[];
};

struct strkey {
    const char *s;
    size_t len;
};

static uint64_t thread_hash_id(const void *e)
{
    return mix64(((const struct thread *)e)->id);
}

static uint64_t thread_hash_key(const void *e)
{
    const struct thread *t = e;
    return hash_str(t->text, t->key_len);
}

static uint64_t comment_hash_id(const void *e)
{
    return mix64(((const struct comment *)e)->id);
}

static uint64_t idem_hash(const void *e)
{
    const struct idem *i = e;
    return hash_str(i->key, i->key_len);
}

static int thread_eq_id(const void *e, const void *key)
{
    return ((const struct thread *)e)->id == *(const uint64_t *)key;
}

static int thread_eq_key(const void *e, const void *key)
{
    const struct thread *t = e;
    const struct strkey *k = key;
    return t->key_len == k->len && memcmp(t->text, k->s, k->len) == 0;
}

static int comment_eq_id(const void *e, const void *key)
{
    return ((const struct comment *)e)->id == *(const uint64_t *)key;
}

static int idem_eq(const void *e, const void *key)
{
    const struct idem *i = e;
    const struct strkey *k = key;
    return i->key_len == k->len && memcmp(i->key, k->s, k->len) == 0;
}

/* What glibc's malloc really takes for a request of n bytes (chunk header,
 * 16-byte alignment, 32-byte minimum), so ts_store_memory is honest. */
static size_t alloc_cost(size_t n)
{
    size_t c = (n + 8 + 15) & ~(size_t)15;
    return c < 32 ? 32 : c;
}

struct state {
    struct thread **threads; /* id order */
    size_t n_threads, cap_threads;
    size_t n_comments;
    struct hmap thread_by_id, thread_by_key, comment_by_id, idem_by_key;
    struct idem **idem_ring; /* FIFO of first uses */
    size_t idem_head, idem_n, idem_cap;
    size_t record_bytes; /* alloc_cost of every thread, comment and idem record */
    uint64_t last_index;
};

struct ts_store {
    struct ts_evlog *log;
    struct state st;
};

static void state_init(struct state *st)
{
    memset(st, 0, sizeof(*st));
    st->thread_by_id.hash = thread_hash_id;
    st->thread_by_key.hash = thread_hash_key;
    st->comment_by_id.hash = comment_hash_id;
    st->idem_by_key.hash = idem_hash;
}

static void state_free(struct state *st)
{
    for (size_t i = 0; i < st->n_threads; i++) {
        struct thread *t = st->threads[i];
        for (uint32_t j = 0; j < t->n_comments; j++)
            free(t->comments[j]);
        free(t->comments);
        free(t);
    }
    free(st->threads);
    for (size_t i = 0; i < st->idem_n; i++)
        free(st->idem_ring[(st->idem_head + i) % st->idem_cap]);
    free(st->idem_ring);
    hm_free(&st->thread_by_id);
    hm_free(&st->thread_by_key);
    hm_free(&st->comment_by_id);
    hm_free(&st->idem_by_key);
}

static struct thread *find_thread_key(const struct state *st, const char *key, size_t len)
{
    struct strkey k = {key, len};
    return hm_find(&st->thread_by_key, hash_str(key, len), &k, thread_eq_key);
}

static struct thread *find_thread_id(const struct state *st, uint64_t id)
{
    return hm_find(&st->thread_by_id, mix64(id), &id, thread_eq_id);
}

static struct comment *find_comment(const struct state *st, uint64_t id)
{
    return hm_find(&st->comment_by_id, mix64(id), &id, comment_eq_id);
}

static struct idem *find_idem(const struct state *st, const char *key, size_t len)
{
    struct strkey k = {key, len};
    return hm_find(&st->idem_by_key, hash_str(key, len), &k, idem_eq);
}

static size_t slen(const char *s)
{
    return s ? strlen(s) : 0;
}

static void put_str(char **p, const char *s, size_t len)
{
    if (len)
        memcpy(*p, s, len);
    (*p)[len] = '\0';
    *p += len + 1;
}

static struct thread *thread_alloc(const char *key, size_t key_len, const char *title,
                                   size_t title_len, const char *url, size_t url_len)
{
    size_t size = offsetof(struct thread, text) + key_len + title_len + url_len + 3;
    struct thread *t = calloc(1, size);
    if (!t)
        return NULL;
    t->key_len = (uint16_t)key_len;
    t->title_len = (uint16_t)title_len;
    t->url_len = (uint16_t)url_len;
    char *p = t->text;
    put_str(&p, key, key_len);
    put_str(&p, title, title_len);
    put_str(&p, url, url_len);
    return t;
}

static size_t thread_size(const struct thread *t)
{
    return offsetof(struct thread, text) + t->key_len + t->title_len + t->url_len + 3;
}

/* Adds t (not yet in any index) to st; t's id exceeds every thread's. */
static int thread_insert(struct state *st, struct thread *t)
{
    if (st->n_threads == st->cap_threads) {
        size_t cap = st->cap_threads ? st->cap_threads * 2 : 16;
        struct thread **v = realloc(st->threads, cap * sizeof(*v));
        if (!v)
            return TS_E_NOMEM;
        st->threads = v;
        st->cap_threads = cap;
    }
    if (hm_insert(&st->thread_by_id, t) != TS_OK)
        return TS_E_NOMEM;
    if (hm_insert(&st->thread_by_key, t) != TS_OK) {
        hm_remove(&st->thread_by_id, t);
        return TS_E_NOMEM;
    }
    st->threads[st->n_threads++] = t;
    st->record_bytes += alloc_cost(thread_size(t));
    return TS_OK;
}

static struct comment *comment_alloc(const char *name, size_t name_len, const char *email,
                                     size_t email_len, const char *body, size_t body_len)
{
    size_t size = offsetof(struct comment, text) + name_len + email_len + body_len + 3;
    struct comment *c = malloc(size);
    if (!c)
        return NULL;
    memset(c, 0, offsetof(struct comment, text));
    c->name_len = (uint16_t)name_len;
    c->email_len = (uint16_t)email_len;
    c->body_len = (uint32_t)body_len;
    char *p = c->text;
    put_str(&p, name, name_len);
    put_str(&p, email, email_len);
    put_str(&p, body, body_len);
    return c;
}

static size_t comment_size(const struct comment *c)
{
    return offsetof(struct comment, text) + c->name_len + c->email_len + c->body_len + 3;
}

/* Appends c to its thread t; c's id exceeds every comment's of t. */
static int comment_insert(struct state *st, struct thread *t, struct comment *c)
{
    if (t->n_comments == t->cap_comments) {
        /* Growth by half: most threads stay small and the slack is per
         * thread, so doubling would waste up to 8 bytes per comment. */
        uint32_t cap = t->cap_comments < 4 ? 4 : t->cap_comments + t->cap_comments / 2;
        struct comment **v = realloc(t->comments, cap * sizeof(*v));
        if (!v)
            return TS_E_NOMEM;
        st->record_bytes -= t->cap_comments ? alloc_cost(t->cap_comments * sizeof(*v)) : 0;
        st->record_bytes += alloc_cost(cap * sizeof(*v));
        t->comments = v;
        t->cap_comments = cap;
    }
    if (hm_insert(&st->comment_by_id, c) != TS_OK)
        return TS_E_NOMEM;
    t->comments[t->n_comments++] = c;
    st->n_comments++;
    st->record_bytes += alloc_cost(comment_size(c));
    return TS_OK;
}

static int idem_insert(struct state *st, struct idem *e)
{
    if (st->idem_n == st->idem_cap) {
        size_t cap = st->idem_cap ? st->idem_cap * 2 : 64;
        struct idem **ring = malloc(cap * sizeof(*ring));
        if (!ring)
            return TS_E_NOMEM;
        for (size_t i = 0; i < st->idem_n; i++)
            ring[i] = st->idem_ring[(st->idem_head + i) % st->idem_cap];
        free(st->idem_ring);
        st->idem_ring = ring;
        st->idem_cap = cap;
        st->idem_head = 0;
    }
    if (hm_insert(&st->idem_by_key, e) != TS_OK)
        return TS_E_NOMEM;
    st->idem_ring[(st->idem_head + st->idem_n) % st->idem_cap] = e;
    st->idem_n++;
    st->record_bytes += alloc_cost(sizeof(*e) + e->key_len + 1);
    return TS_OK;
}

/* Forgets keys first used RETENTION or more before now. The FIFO is in
 * first-use order; should the leader's clock step back, an entry behind a
 * newer head just lives a little longer, identically on every replica. */
static void idem_expire(struct state *st, int64_t now)
{
    while (st->idem_n) {
        struct idem *e = st->idem_ring[st->idem_head];
        if (now <= e->time_ms ||
            (uint64_t)now - (uint64_t)e->time_ms < (uint64_t)TS_STORE_IDEMPOTENCY_RETENTION_MS)
            break;
        hm_remove(&st->idem_by_key, e);
        st->record_bytes -= alloc_cost(sizeof(*e) + e->key_len + 1);
        free(e);
        st->idem_head = (st->idem_head + 1) % st->idem_cap;
        st->idem_n--;
    }
}

/* ---- views -------------------------------------------------------------- */

static void thread_view(const struct thread *t, Threadsync__Thread *v)
{
    *v = (Threadsync__Thread)THREADSYNC__THREAD__INIT;
    v->id = t->id;
    v->key = (char *)t->text;
    v->title = v->key + t->key_len + 1;
    v->url = v->title + t->title_len + 1;
    v->created_at_ms = t->created_at;
    v->locked = t->locked;
    v->comment_count = t->comment_count;
    v->version = t->version;
}

static void comment_view(const struct comment *c, Threadsync__Comment *v)
{
    *v = (Threadsync__Comment)THREADSYNC__COMMENT__INIT;
    v->id = c->id;
    v->thread_id = c->thread_id;
    v->parent_id = c->parent_id;
    v->author_name = (char *)c->text;
    v->author_email = v->author_name + c->name_len + 1;
    v->body = v->author_email + c->email_len + 1;
    v->created_at_ms = c->created_at;
    v->edited_at_ms = c->edited_at;
    v->status = (Threadsync__Status)c->status;
    v->version = c->version;
}

/* ---- public API ---------------------------------------------------------- */

int ts_store_new(struct ts_evlog *log, struct ts_store **out)
{
    struct ts_store *s = malloc(sizeof(*s));
    if (!s)
        return TS_E_NOMEM;
    s->log = log;
    state_init(&s->st);
    *out = s;
    return TS_OK;
}

void ts_store_free(struct ts_store *s)
{
    if (!s)
        return;
    state_free(&s->st);
    free(s);
}

int ts_store_encode_post(const Threadsync__Post *post, int64_t time_ms, uint8_t **out, size_t *len)
{
    Threadsync__Post p = *post;
    p.request_id = 0;
    Threadsync__State__Command cmd = THREADSYNC__STATE__COMMAND__INIT;
    cmd.time_ms = time_ms;
    cmd.op_case = THREADSYNC__STATE__COMMAND__OP_POST;
    cmd.post = &p;
    size_t n = threadsync__state__command__get_packed_size(&cmd);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return TS_E_NOMEM;
    *len = threadsync__state__command__pack(&cmd, buf);
    *out = buf;
    return TS_OK;
}

static void reject(struct ts_store_result *res, int status, const char *field)
{
    res->status = status;
    res->field = field;
}

/* Appends the event for a change of comment c in thread t. */
static int append_event(struct ts_store *s, uint64_t seq, const struct thread *t,
                        const struct comment *c)
{
    Threadsync__Thread tv;
    Threadsync__Comment cv, pc;
    thread_view(t, &tv);
    Threadsync__Event full = THREADSYNC__EVENT__INIT;
    full.seq = seq;
    full.thread = &tv;
    Threadsync__Event pub = full;
    if (c) {
        comment_view(c, &cv);
        full.comment = &cv;
        pc = cv;
        ts_view_public_comment(&pc);
        pub.comment = &pc;
    }
    return ts_evlog_append(s->log, seq, t->id, &full, &pub);
}

static int apply_post(struct ts_store *s, uint64_t index, int64_t now, const Threadsync__Post *p,
                      struct ts_store_result *res)
{
    struct state *st = &s->st;
    idem_expire(st, now);

    /* The caller validated the fields before proposing; these cheap checks
     * keep a malformed entry from breaking the record layout. */
    size_t ikey_len = slen(p->idempotency_key), key_len = slen(p->thread_key);
    size_t name_len = slen(p->author_name), email_len = slen(p->author_email);
    size_t body_len = slen(p->body), title_len = slen(p->title), url_len = slen(p->url);
    if (!ikey_len || ikey_len > TS_IDEMPOTENCY_KEY_MAX)
        return reject(res, TS_E_INVALID_ARGUMENT, "idempotency_key"), TS_OK;
    if (!key_len || key_len > TS_THREAD_KEY_MAX)
        return reject(res, TS_E_INVALID_ARGUMENT, "thread_key"), TS_OK;
    if (!name_len || name_len > TS_AUTHOR_NAME_MAX_CP * 4)
        return reject(res, TS_E_INVALID_ARGUMENT, "author_name"), TS_OK;
    if (email_len > TS_AUTHOR_EMAIL_MAX)
        return reject(res, TS_E_INVALID_ARGUMENT, "author_email"), TS_OK;
    if (!body_len || body_len > TS_BODY_MAX)
        return reject(res, TS_E_INVALID_ARGUMENT, "body"), TS_OK;
    if (title_len > TS_TITLE_MAX)
        return reject(res, TS_E_INVALID_ARGUMENT, "title"), TS_OK;
    if (url_len > TS_URL_MAX)
        return reject(res, TS_E_INVALID_ARGUMENT, "url"), TS_OK;

    struct idem *seen = find_idem(st, p->idempotency_key, ikey_len);
    if (seen) {
        res->seq = seen->seq;
        res->thread_id = seen->thread_id;
        res->comment_id = seen->comment_id;
        res->comment_status = seen->comment_status;
        return TS_OK;
    }

    struct thread *t = find_thread_key(st, p->thread_key, key_len);
    if (t && t->locked)
        return reject(res, TS_E_THREAD_LOCKED, NULL), TS_OK;
    if (p->parent_id) {
        struct comment *parent = find_comment(st, p->parent_id);
        if (!t || !parent || parent->thread_id != t->id)
            return reject(res, TS_E_NOT_FOUND, "parent_id"), TS_OK;
    }

    struct idem *ie = malloc(sizeof(*ie) + ikey_len + 1);
    struct comment *c =
        comment_alloc(p->author_name, name_len, p->author_email, email_len, p->body, body_len);
    if (!ie || !c) {
        free(ie);
        free(c);
        return TS_E_NOMEM;
    }
    if (!t) {
        t = thread_alloc(p->thread_key, key_len, p->title, title_len, p->url, url_len);
        if (!t || (t->id = index, t->created_at = now, thread_insert(st, t) != TS_OK)) {
            free(t);
            free(ie);
            free(c);
            return TS_E_NOMEM;
        }
    }
    c->id = index;
    c->thread_id = t->id;
    c->parent_id = p->parent_id;
    c->created_at = now;
    c->status = THREADSYNC__STATUS__VISIBLE;
    c->version = 1;
    if (comment_insert(st, t, c) != TS_OK) {
        free(ie);
        free(c);
        return TS_E_NOMEM;
    }
    t->comment_count++;
    t->version++;

    ie->seq = index;
    ie->thread_id = t->id;
    ie->comment_id = c->id;
    ie->time_ms = now;
    ie->comment_status = c->status;
    ie->key_len = (uint8_t)ikey_len;
    memcpy(ie->key, p->idempotency_key, ikey_len + 1);
    if (idem_insert(st, ie) != TS_OK) {
        free(ie);
        return TS_E_NOMEM;
    }

    int rc = append_event(s, index, t, c);
    if (rc != TS_OK)
        return rc;
    res->seq = index;
    res->thread_id = t->id;
    res->comment_id = c->id;
    res->comment_status = c->status;
    return TS_OK;
}

int ts_store_apply(struct ts_store *s, uint64_t index, const uint8_t *payload, size_t len,
                   struct ts_store_result *res)
{
    memset(res, 0, sizeof(*res));
    if (index <= s->st.last_index)
        return TS_E_INVALID_ARGUMENT;
    /* The index is consumed whatever the payload says: last_index follows
     * the Raft log, the content does not change. */
    s->st.last_index = index;
    Threadsync__State__Command *cmd = threadsync__state__command__unpack(NULL, len, payload);
    if (!cmd || cmd->op_case != THREADSYNC__STATE__COMMAND__OP_POST || !cmd->post) {
        if (cmd)
            threadsync__state__command__free_unpacked(cmd, NULL);
        res->status = TS_E_BAD_FRAME;
        return TS_OK;
    }
    int rc = apply_post(s, index, cmd->time_ms, cmd->post, res);
    threadsync__state__command__free_unpacked(cmd, NULL);
    return rc;
}

uint64_t ts_store_last_index(const struct ts_store *s)
{
    return s->st.last_index;
}

size_t ts_store_thread_count(const struct ts_store *s)
{
    return s->st.n_threads;
}

size_t ts_store_comment_count(const struct ts_store *s)
{
    return s->st.n_comments;
}

size_t ts_store_memory(const struct ts_store *s)
{
    const struct state *st = &s->st;
    size_t n = alloc_cost(sizeof(*s)) + st->record_bytes;
    if (st->cap_threads)
        n += alloc_cost(st->cap_threads * sizeof(*st->threads));
    if (st->idem_cap)
        n += alloc_cost(st->idem_cap * sizeof(*st->idem_ring));
    const struct hmap *maps[] = {&st->thread_by_id, &st->thread_by_key, &st->comment_by_id,
                                 &st->idem_by_key};
    for (size_t i = 0; i < sizeof(maps) / sizeof(maps[0]); i++)
        if (maps[i]->cap)
            n += alloc_cost(maps[i]->cap * sizeof(void *));
    return n;
}

int ts_store_thread_by_key(const struct ts_store *s, const char *key, Threadsync__Thread *out)
{
    struct thread *t = find_thread_key(&s->st, key, strlen(key));
    if (!t)
        return TS_E_NOT_FOUND;
    thread_view(t, out);
    return TS_OK;
}

int ts_store_thread_by_id(const struct ts_store *s, uint64_t id, Threadsync__Thread *out)
{
    struct thread *t = find_thread_id(&s->st, id);
    if (!t)
        return TS_E_NOT_FOUND;
    thread_view(t, out);
    return TS_OK;
}

int ts_store_foreach_thread(const struct ts_store *s, uint64_t after_id,
                            int (*cb)(void *arg, const Threadsync__Thread *t), void *arg)
{
    const struct state *st = &s->st;
    size_t lo = 0, hi = st->n_threads;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (st->threads[mid]->id <= after_id)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t i = lo; i < st->n_threads; i++) {
        Threadsync__Thread v;
        thread_view(st->threads[i], &v);
        int rc = cb(arg, &v);
        if (rc)
            return rc;
    }
    return 0;
}

int ts_store_foreach_comment(const struct ts_store *s, uint64_t thread_id, uint64_t after_id,
                             int (*cb)(void *arg, const Threadsync__Comment *c), void *arg)
{
    const struct thread *t = find_thread_id(&s->st, thread_id);
    if (!t)
        return 0;
    uint32_t lo = 0, hi = t->n_comments;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (t->comments[mid]->id <= after_id)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (uint32_t i = lo; i < t->n_comments; i++) {
        Threadsync__Comment v;
        comment_view(t->comments[i], &v);
        int rc = cb(arg, &v);
        if (rc)
            return rc;
    }
    return 0;
}

int ts_store_comment(const struct ts_store *s, uint64_t id, Threadsync__Comment *out)
{
    struct comment *c = find_comment(&s->st, id);
    if (!c)
        return TS_E_NOT_FOUND;
    comment_view(c, out);
    return TS_OK;
}

/* ---- snapshot and restore ------------------------------------------------ */

int ts_store_snapshot(const struct ts_store *s, uint8_t **out, size_t *len)
{
    const struct state *st = &s->st;
    Threadsync__State__StoreSnapshot snap = THREADSYNC__STATE__STORE_SNAPSHOT__INIT;
    snap.last_index = st->last_index;
    /* Views point into the store, so the transient arrays cost about one
     * protobuf struct per record, not a copy of the text. */
    Threadsync__Thread *tv = calloc(st->n_threads ? st->n_threads : 1, sizeof(*tv));
    Threadsync__Thread **tp = calloc(st->n_threads ? st->n_threads : 1, sizeof(*tp));
    Threadsync__Comment *cv = calloc(st->n_comments ? st->n_comments : 1, sizeof(*cv));
    Threadsync__Comment **cp = calloc(st->n_comments ? st->n_comments : 1, sizeof(*cp));
    Threadsync__State__IdempotencyEntry *iv = calloc(st->idem_n ? st->idem_n : 1, sizeof(*iv));
    Threadsync__State__IdempotencyEntry **ip = calloc(st->idem_n ? st->idem_n : 1, sizeof(*ip));
    int rc = TS_E_NOMEM;
    if (!tv || !tp || !cv || !cp || !iv || !ip)
        goto out;
    size_t nc = 0;
    for (size_t i = 0; i < st->n_threads; i++) {
        const struct thread *t = st->threads[i];
        thread_view(t, &tv[i]);
        tp[i] = &tv[i];
        for (uint32_t j = 0; j < t->n_comments; j++, nc++) {
            comment_view(t->comments[j], &cv[nc]);
            cp[nc] = &cv[nc];
        }
    }
    for (size_t i = 0; i < st->idem_n; i++) {
        const struct idem *e = st->idem_ring[(st->idem_head + i) % st->idem_cap];
        threadsync__state__idempotency_entry__init(&iv[i]);
        iv[i].key = (char *)e->key;
        iv[i].seq = e->seq;
        iv[i].thread_id = e->thread_id;
        iv[i].comment_id = e->comment_id;
        iv[i].status = (Threadsync__Status)e->comment_status;
        iv[i].time_ms = e->time_ms;
        ip[i] = &iv[i];
    }
    snap.n_threads = st->n_threads;
    snap.threads = tp;
    snap.n_comments = nc;
    snap.comments = cp;
    snap.n_idempotency = st->idem_n;
    snap.idempotency = ip;
    size_t n = threadsync__state__store_snapshot__get_packed_size(&snap);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        goto out;
    *len = threadsync__state__store_snapshot__pack(&snap, buf);
    *out = buf;
    rc = TS_OK;
out:
    free(tv);
    free(tp);
    free(cv);
    free(cp);
    free(iv);
    free(ip);
    return rc;
}

/* Loads a decoded snapshot into the empty st, checking what the layout and
 * the invariants rely on: ids ascending, keys unique, a comment after its
 * thread and parent, lengths within the limits. */
static int load_snapshot(struct state *st, const Threadsync__State__StoreSnapshot *snap)
{
    st->last_index = snap->last_index;
    for (size_t i = 0; i < snap->n_threads; i++) {
        const Threadsync__Thread *v = snap->threads[i];
        size_t key_len = slen(v->key), title_len = slen(v->title), url_len = slen(v->url);
        if (!key_len || key_len > TS_THREAD_KEY_MAX || title_len > TS_TITLE_MAX ||
            url_len > TS_URL_MAX || !v->id ||
            (st->n_threads && v->id <= st->threads[st->n_threads - 1]->id) ||
            find_thread_key(st, v->key, key_len))
            return TS_E_BAD_FRAME;
        struct thread *t = thread_alloc(v->key, key_len, v->title, title_len, v->url, url_len);
        if (!t)
            return TS_E_NOMEM;
        t->id = v->id;
        t->created_at = v->created_at_ms;
        t->locked = v->locked;
        t->comment_count = v->comment_count;
        t->version = v->version;
        if (thread_insert(st, t) != TS_OK) {
            free(t);
            return TS_E_NOMEM;
        }
    }
    for (size_t i = 0; i < snap->n_comments; i++) {
        const Threadsync__Comment *v = snap->comments[i];
        size_t name_len = slen(v->author_name), email_len = slen(v->author_email);
        size_t body_len = slen(v->body);
        struct thread *t = find_thread_id(st, v->thread_id);
        if (!t || name_len > TS_AUTHOR_NAME_MAX_CP * 4 || email_len > TS_AUTHOR_EMAIL_MAX ||
            body_len > TS_BODY_MAX || !v->id || find_comment(st, v->id) ||
            (t->n_comments && v->id <= t->comments[t->n_comments - 1]->id) || (int)v->status < 0 ||
            (int)v->status > 255)
            return TS_E_BAD_FRAME;
        if (v->parent_id) {
            const struct comment *parent = find_comment(st, v->parent_id);
            if (!parent || parent->thread_id != t->id)
                return TS_E_BAD_FRAME;
        }
        struct comment *c =
            comment_alloc(v->author_name, name_len, v->author_email, email_len, v->body, body_len);
        if (!c)
            return TS_E_NOMEM;
        c->id = v->id;
        c->thread_id = v->thread_id;
        c->parent_id = v->parent_id;
        c->created_at = v->created_at_ms;
        c->edited_at = v->edited_at_ms;
        c->status = (uint8_t)v->status;
        c->version = v->version;
        if (comment_insert(st, t, c) != TS_OK) {
            free(c);
            return TS_E_NOMEM;
        }
    }
    for (size_t i = 0; i < snap->n_idempotency; i++) {
        const Threadsync__State__IdempotencyEntry *v = snap->idempotency[i];
        size_t key_len = slen(v->key);
        if (!key_len || key_len > TS_IDEMPOTENCY_KEY_MAX || find_idem(st, v->key, key_len) ||
            (int)v->status < 0 || (int)v->status > 255)
            return TS_E_BAD_FRAME;
        struct idem *e = malloc(sizeof(*e) + key_len + 1);
        if (!e)
            return TS_E_NOMEM;
        e->seq = v->seq;
        e->thread_id = v->thread_id;
        e->comment_id = v->comment_id;
        e->time_ms = v->time_ms;
        e->comment_status = (uint8_t)v->status;
        e->key_len = (uint8_t)key_len;
        memcpy(e->key, v->key, key_len + 1);
        if (idem_insert(st, e) != TS_OK) {
            free(e);
            return TS_E_NOMEM;
        }
    }
    return TS_OK;
}

int ts_store_restore(struct ts_store *s, const uint8_t *buf, size_t len)
{
    Threadsync__State__StoreSnapshot *snap =
        threadsync__state__store_snapshot__unpack(NULL, len, buf);
    if (!snap)
        return TS_E_BAD_FRAME;
    struct state st;
    state_init(&st);
    int rc = load_snapshot(&st, snap);
    threadsync__state__store_snapshot__free_unpacked(snap, NULL);
    if (rc != TS_OK) {
        state_free(&st);
        return rc;
    }
    state_free(&s->st);
    s->st = st;
    return TS_OK;
}

/* ---- digest -------------------------------------------------------------- */

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
        for (uint32_t j = 0; j < t->n_comments; j++) {
            const struct comment *c = t->comments[j];
            const char *q = c->text;
            EVP_DigestUpdate(md, "C", 1);
            dig_u64(md, c->id);
            dig_u64(md, c->thread_id);
            dig_u64(md, c->parent_id);
            dig_str(md, q, c->name_len);
            q += c->name_len + 1;
            dig_str(md, q, c->email_len);
            q += c->email_len + 1;
            dig_str(md, q, c->body_len);
            dig_u64(md, (uint64_t)c->created_at);
            dig_u64(md, (uint64_t)c->edited_at);
            dig_u64(md, c->status);
            dig_u64(md, c->version);
        }
    }
    EVP_DigestFinal_ex(md, h, &hlen);
    EVP_MD_CTX_free(md);
    for (unsigned i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", h[i]);
}
