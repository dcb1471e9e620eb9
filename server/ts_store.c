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

#include <openssl/crypto.h>
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
    uint16_t modby; /* index into state.names: who last moderated it; 0 none */
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
    uint32_t pending_count; /* PENDING ones: the moderation queue skips threads without */
    uint16_t key_len, title_len, url_len;
    uint16_t modby; /* index into state.names, as for comments */
    uint8_t locked, premoderated;
    char text[]; /* key NUL title NUL url NUL */
};

/* The idempotency entry doubles as the comment's edit-key record: an edit
 * window never outlasts the entry's retention (--edit-window-ms is capped at
 * it), so a comment's key hash lives exactly as long as it can be used, and
 * costs nothing once the day is over. */
struct idem {
    uint64_t seq, thread_id, comment_id;
    int64_t time_ms;
    uint8_t comment_status;
    uint8_t key_len;
    uint8_t has_hash;
    uint8_t edit_hash[TS_STORE_HASH_LEN];
    char key[];
};

/* Replicated tokens, and revoked names (a revoked tokens-file name has no
 * hash). Few (tens to hundreds): a sorted vector, lookups by scan. */
struct token {
    char name[TS_STORE_NAME_MAX + 1];
    char created_by[TS_STORE_NAME_MAX + 1];
    uint8_t hash[TS_STORE_HASH_LEN];
    int64_t created_at, revoked_at;
    uint8_t role, has_hash, revoked;
};

/* A ban in force; bans sorted by author. */
struct ban {
    char *author; /* one allocation: author NUL banned_by NUL */
    char *by;
    int64_t until;
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

static uint64_t idem_hash_comment(const void *e)
{
    return mix64(((const struct idem *)e)->comment_id);
}

static int idem_eq_comment(const void *e, const void *key)
{
    return ((const struct idem *)e)->comment_id == *(const uint64_t *)key;
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
    struct hmap thread_by_id, thread_by_key, comment_by_id, idem_by_key, idem_by_comment;
    struct idem **idem_ring; /* FIFO of first uses */
    size_t idem_head, idem_n, idem_cap;
    size_t record_bytes; /* alloc_cost of every thread, comment and idem record */
    uint64_t last_index;
    /* Moderators' token names, interned: a record holds a 16-bit index
     * (names[0] is unused: "nobody"). Assignment order may differ between
     * replicas (replay vs restore); only the strings are ever compared. */
    char **names;
    size_t n_names, cap_names;
    struct token *tokens; /* name order */
    size_t n_tokens, cap_tokens;
    struct ban *bans; /* author order */
    size_t n_bans, cap_bans;
    uint64_t auth_gen; /* bumped by every token change and restore */
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
    st->idem_by_comment.hash = idem_hash_comment;
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
    hm_free(&st->idem_by_comment);
    for (size_t i = 1; i < st->n_names; i++)
        free(st->names[i]);
    free(st->names);
    free(st->tokens);
    for (size_t i = 0; i < st->n_bans; i++)
        free(st->bans[i].author);
    free(st->bans);
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

static struct idem *find_idem_comment(const struct state *st, uint64_t comment_id)
{
    return hm_find(&st->idem_by_comment, mix64(comment_id), &comment_id, idem_eq_comment);
}

static size_t slen(const char *s)
{
    return s ? strlen(s) : 0;
}

static const char *name_at(const struct state *st, uint16_t i)
{
    return i && i < st->n_names ? st->names[i] : "";
}

/* The index of name in the interned table, adding it; 0 for "" or when the
 * table is full (the record then says "nobody" rather than fail). */
static int intern(struct state *st, const char *name, uint16_t *out)
{
    *out = 0;
    size_t len = slen(name);
    if (!len || len > TS_STORE_NAME_MAX)
        return TS_OK;
    for (size_t i = 1; i < st->n_names; i++)
        if (strcmp(st->names[i], name) == 0)
            return *out = (uint16_t)i, TS_OK;
    if (st->n_names >= UINT16_MAX)
        return TS_OK;
    if (st->n_names + 1 >= st->cap_names) {
        size_t cap = st->cap_names ? st->cap_names * 2 : 8;
        char **v = realloc(st->names, cap * sizeof(*v));
        if (!v)
            return TS_E_NOMEM;
        st->names = v;
        st->cap_names = cap;
    }
    if (!st->n_names)
        st->names[st->n_names++] = NULL;
    char *copy = strdup(name);
    if (!copy)
        return TS_E_NOMEM;
    st->names[st->n_names] = copy;
    *out = (uint16_t)st->n_names++;
    return TS_OK;
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
    /* A comment has at most one entry; a snapshot from elsewhere might say
     * otherwise, and then the newer entry's key is the one that counts. */
    struct idem *old = find_idem_comment(st, e->comment_id);
    if (old)
        hm_remove(&st->idem_by_comment, old);
    if (hm_insert(&st->idem_by_comment, e) != TS_OK) {
        hm_remove(&st->idem_by_key, e);
        return TS_E_NOMEM;
    }
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
        if (find_idem_comment(st, e->comment_id) == e)
            hm_remove(&st->idem_by_comment, e);
        st->record_bytes -= alloc_cost(sizeof(*e) + e->key_len + 1);
        free(e);
        st->idem_head = (st->idem_head + 1) % st->idem_cap;
        st->idem_n--;
    }
}

/* ---- views -------------------------------------------------------------- */

static void thread_view(const struct state *st, const struct thread *t, Threadsync__Thread *v)
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
    v->premoderated = t->premoderated;
    v->moderated_by = (char *)name_at(st, t->modby);
}

static void comment_view(const struct state *st, const struct comment *c, Threadsync__Comment *v)
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
    v->moderated_by = (char *)name_at(st, c->modby);
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

int ts_store_encode(const Threadsync__State__Command *cmd, uint8_t **out, size_t *len)
{
    size_t n = threadsync__state__command__get_packed_size(cmd);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return TS_E_NOMEM;
    *len = threadsync__state__command__pack(cmd, buf);
    *out = buf;
    return TS_OK;
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

static void reject_msg(struct ts_store_result *res, int status, const char *field,
                       const char *message)
{
    res->status = status;
    res->field = field;
    res->message = message;
}

/* Moves c to status ns, keeping the thread's counts. */
static void set_status(struct thread *t, struct comment *c, uint8_t ns)
{
    if (c->status == THREADSYNC__STATUS__VISIBLE)
        t->comment_count--;
    else if (c->status == THREADSYNC__STATUS__PENDING)
        t->pending_count--;
    c->status = ns;
    if (ns == THREADSYNC__STATUS__VISIBLE)
        t->comment_count++;
    else if (ns == THREADSYNC__STATUS__PENDING)
        t->pending_count++;
}

static uint32_t find_slot(const struct thread *t, uint64_t id)
{
    uint32_t lo = 0, hi = t->n_comments;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (t->comments[mid]->id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Replaces c's text (the record is one allocation, so new text is a new
 * record) in every index; c is freed. Returns the new record or NULL (out
 * of memory; c is then untouched). */
static struct comment *comment_rewrite(struct state *st, struct thread *t, struct comment *c,
                                       const char *name, size_t name_len, const char *email,
                                       size_t email_len, const char *body, size_t body_len)
{
    struct comment *n = comment_alloc(name, name_len, email, email_len, body, body_len);
    if (!n)
        return NULL;
    n->id = c->id;
    n->thread_id = c->thread_id;
    n->parent_id = c->parent_id;
    n->created_at = c->created_at;
    n->edited_at = c->edited_at;
    n->version = c->version;
    n->modby = c->modby;
    n->status = c->status;
    /* Removing first means the insert cannot need to grow the map. */
    hm_remove(&st->comment_by_id, c);
    hm_insert(&st->comment_by_id, n);
    t->comments[find_slot(t, c->id)] = n;
    st->record_bytes -= alloc_cost(comment_size(c));
    st->record_bytes += alloc_cost(comment_size(n));
    free(c);
    return n;
}

/* Lowercases an e-mail's ASCII letters into out (at least 255 bytes). */
static void lower_email(const char *s, char *out, size_t size)
{
    size_t i = 0;
    for (; s[i] && i + 1 < size; i++)
        out[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] - 'A' + 'a') : s[i];
    out[i] = '\0';
}

/* The form a ban is stored and matched under: e-mails lowercased, names as
 * given. */
static void ban_key(const char *author, char *out, size_t size)
{
    if (strchr(author, '@'))
        lower_email(author, out, size);
    else
        snprintf(out, size, "%s", author);
}

static size_t ban_slot(const struct state *st, const char *author, int *found)
{
    size_t lo = 0, hi = st->n_bans;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(st->bans[mid].author, author);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}

static const struct ban *ban_find(const struct state *st, const char *author, int64_t now)
{
    int found;
    size_t i = ban_slot(st, author, &found);
    return found && st->bans[i].until > now ? &st->bans[i] : NULL;
}

/* The ban that refuses a post by (name, email) at now, if any; *field says
 * which of the two matched. */
static const struct ban *post_ban(const struct state *st, const char *name, const char *email,
                                  int64_t now, const char **field)
{
    if (!st->n_bans)
        return NULL;
    if (email && *email) {
        char key[TS_AUTHOR_EMAIL_MAX + 1];
        lower_email(email, key, sizeof(key));
        const struct ban *b = ban_find(st, key, now);
        if (b) {
            *field = "author_email";
            return b;
        }
    }
    if (name && *name && !strchr(name, '@')) {
        const struct ban *b = ban_find(st, name, now);
        if (b) {
            *field = "author_name";
            return b;
        }
    }
    return NULL;
}

static void ban_remove_at(struct state *st, size_t i)
{
    free(st->bans[i].author);
    memmove(&st->bans[i], &st->bans[i + 1], (st->n_bans - i - 1) * sizeof(*st->bans));
    st->n_bans--;
}

/* Inserts or replaces the ban on author (a ban key). */
static int ban_put(struct state *st, const char *author, int64_t until, const char *by)
{
    size_t alen = strlen(author), blen = strlen(by);
    char *text = malloc(alen + blen + 2);
    if (!text)
        return TS_E_NOMEM;
    memcpy(text, author, alen + 1);
    memcpy(text + alen + 1, by, blen + 1);
    int found;
    size_t i = ban_slot(st, author, &found);
    if (found) {
        free(st->bans[i].author);
    } else {
        if (st->n_bans == st->cap_bans) {
            size_t cap = st->cap_bans ? st->cap_bans * 2 : 8;
            struct ban *v = realloc(st->bans, cap * sizeof(*v));
            if (!v) {
                free(text);
                return TS_E_NOMEM;
            }
            st->bans = v;
            st->cap_bans = cap;
        }
        memmove(&st->bans[i + 1], &st->bans[i], (st->n_bans - i) * sizeof(*st->bans));
        st->n_bans++;
    }
    st->bans[i].author = text;
    st->bans[i].by = text + alen + 1;
    st->bans[i].until = until;
    return TS_OK;
}

static int valid_token_name(const char *s)
{
    size_t len = slen(s);
    if (!len || len > TS_STORE_NAME_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static size_t token_slot(const struct state *st, const char *name, int *found)
{
    size_t lo = 0, hi = st->n_tokens;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(st->tokens[mid].name, name);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}

/* Inserts tk (its name not yet present) in name order. */
static int token_insert(struct state *st, const struct token *tk)
{
    int found;
    size_t i = token_slot(st, tk->name, &found);
    if (found)
        return TS_E_EXISTS;
    if (st->n_tokens == st->cap_tokens) {
        size_t cap = st->cap_tokens ? st->cap_tokens * 2 : 8;
        struct token *v = realloc(st->tokens, cap * sizeof(*v));
        if (!v)
            return TS_E_NOMEM;
        st->tokens = v;
        st->cap_tokens = cap;
    }
    memmove(&st->tokens[i + 1], &st->tokens[i], (st->n_tokens - i) * sizeof(*st->tokens));
    st->tokens[i] = *tk;
    st->n_tokens++;
    return TS_OK;
}

/* The actor as recorded: a token name, or "" when the command's is not one. */
static const char *actor_of(const Threadsync__State__Command *cmd)
{
    return valid_token_name(cmd->actor) ? cmd->actor : "";
}

/* Appends the event for a change of comment c in thread t. */
static int append_event(struct ts_store *s, uint64_t seq, const struct thread *t,
                        const struct comment *c)
{
    Threadsync__Thread tv;
    Threadsync__Comment cv, pc;
    thread_view(&s->st, t, &tv);
    Threadsync__Event full = THREADSYNC__EVENT__INIT;
    full.seq = seq;
    full.thread = &tv;
    Threadsync__Event pub = full;
    Threadsync__Thread ptv = tv;
    ts_view_public_thread(&ptv);
    pub.thread = &ptv;
    if (c) {
        comment_view(&s->st, c, &cv);
        full.comment = &cv;
        pc = cv;
        ts_view_public_comment(&pc);
        pub.comment = &pc;
    }
    return ts_evlog_append(s->log, seq, t->id, &full, &pub);
}

static int apply_post(struct ts_store *s, uint64_t index, const Threadsync__State__Command *cmd,
                      struct ts_store_result *res)
{
    struct state *st = &s->st;
    const Threadsync__Post *p = cmd->post;
    int64_t now = cmd->time_ms;
    int has_hash = cmd->edit_key_hash.len == TS_STORE_HASH_LEN;
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
        /* The first answer's edit key is lost with it (only its hash was
         * kept): the retry's new key replaces it, so the client that
         * retried holds the one that works. */
        if (has_hash) {
            memcpy(seen->edit_hash, cmd->edit_key_hash.data, TS_STORE_HASH_LEN);
            seen->has_hash = 1;
        }
        res->seq = seen->seq;
        res->thread_id = seen->thread_id;
        res->comment_id = seen->comment_id;
        res->comment_status = seen->comment_status;
        return TS_OK;
    }

    const char *ban_field = NULL;
    if (post_ban(st, p->author_name, p->author_email, now, &ban_field))
        return reject_msg(res, TS_E_FORBIDDEN, ban_field, "author banned"), TS_OK;
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
    c->status = !cmd->trusted && (cmd->premoderate || t->premoderated)
                    ? THREADSYNC__STATUS__PENDING
                    : THREADSYNC__STATUS__VISIBLE;
    c->version = 1;
    if (comment_insert(st, t, c) != TS_OK) {
        free(ie);
        free(c);
        return TS_E_NOMEM;
    }
    if (c->status == THREADSYNC__STATUS__VISIBLE)
        t->comment_count++;
    else
        t->pending_count++;
    t->version++;

    ie->seq = index;
    ie->thread_id = t->id;
    ie->comment_id = c->id;
    ie->time_ms = now;
    ie->comment_status = c->status;
    ie->has_hash = (uint8_t)has_hash;
    if (has_hash)
        memcpy(ie->edit_hash, cmd->edit_key_hash.data, TS_STORE_HASH_LEN);
    else
        memset(ie->edit_hash, 0, TS_STORE_HASH_LEN);
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
    res->changed = 1;
    return TS_OK;
}

/* Blanks a comment in an earlier public event: its body always; its name
 * too, with the comment's new status, when it is no longer VISIBLE. */
static void blank_public(void *arg, Threadsync__Event *ev)
{
    uint8_t status = *(const uint8_t *)arg;
    Threadsync__Comment *c = ev->comment;
    c->body = (char *)protobuf_c_empty_string;
    if (status != THREADSYNC__STATUS__VISIBLE) {
        c->author_name = (char *)protobuf_c_empty_string;
        c->status = (Threadsync__Status)status;
    }
}

/* An author's or a moderator's change to one comment (CommentChange). */
static int apply_comment_change(struct ts_store *s, uint64_t index,
                                const Threadsync__State__Command *cmd, struct ts_store_result *res)
{
    struct state *st = &s->st;
    const Threadsync__State__CommentChange *cc = cmd->comment_change;
    int64_t now = cmd->time_ms;
    idem_expire(st, now);
    struct comment *c = find_comment(st, cc->comment_id);
    if (!c)
        return reject(res, TS_E_NOT_FOUND, "comment_id"), TS_OK;
    struct thread *t = find_thread_id(st, c->thread_id);
    res->thread_id = t->id;
    res->comment_id = c->id;
    res->comment_status = c->status;
    int author = cc->edit_key_hash.len != 0;
    if (author) {
        if (cc->kind != THREADSYNC__STATE__CHANGE_KIND__CHANGE_EDIT &&
            cc->kind != THREADSYNC__STATE__CHANGE_KIND__CHANGE_DELETE)
            return reject(res, TS_E_INVALID_ARGUMENT, "kind"), TS_OK;
        const struct idem *e = find_idem_comment(st, c->id);
        if (cc->edit_key_hash.len != TS_STORE_HASH_LEN || !e || !e->has_hash ||
            CRYPTO_memcmp(e->edit_hash, cc->edit_key_hash.data, TS_STORE_HASH_LEN) != 0)
            return reject_msg(res, TS_E_FORBIDDEN, "edit_key",
                              "the edit key does not open this comment"),
                   TS_OK;
        if (cc->edit_window_ms < 0 || now - c->created_at > cc->edit_window_ms)
            return reject_msg(res, TS_E_FORBIDDEN, "edit_key", "the edit window has closed"), TS_OK;
    }
    uint8_t from = c->status, to = from;
    const char *bad = NULL; /* why the transition makes no sense */
    switch (cc->kind) {
    case THREADSYNC__STATE__CHANGE_KIND__CHANGE_APPROVE:
        if (from == THREADSYNC__STATUS__PENDING || from == THREADSYNC__STATUS__VISIBLE)
            to = THREADSYNC__STATUS__VISIBLE;
        else
            bad = "approve takes a PENDING comment (unhide a HIDDEN one)";
        break;
    case THREADSYNC__STATE__CHANGE_KIND__CHANGE_HIDE:
        if (from == THREADSYNC__STATUS__DELETED)
            bad = "a deleted comment cannot be hidden";
        else
            to = THREADSYNC__STATUS__HIDDEN;
        break;
    case THREADSYNC__STATE__CHANGE_KIND__CHANGE_UNHIDE:
        if (from == THREADSYNC__STATUS__HIDDEN || from == THREADSYNC__STATUS__VISIBLE)
            to = THREADSYNC__STATUS__VISIBLE;
        else
            bad = "unhide takes a HIDDEN comment (approve a PENDING one)";
        break;
    case THREADSYNC__STATE__CHANGE_KIND__CHANGE_DELETE:
        to = THREADSYNC__STATUS__DELETED;
        break;
    case THREADSYNC__STATE__CHANGE_KIND__CHANGE_EDIT:
        if (from == THREADSYNC__STATUS__DELETED)
            bad = "a deleted comment cannot be edited";
        break;
    default:
        return reject(res, TS_E_INVALID_ARGUMENT, "kind"), TS_OK;
    }
    if (bad)
        return reject_msg(res, TS_E_INVALID_ARGUMENT, "status", bad), TS_OK;

    uint16_t modby = c->modby;
    if (!author && intern(st, actor_of(cmd), &modby) != TS_OK)
        return TS_E_NOMEM;
    if (cc->kind == THREADSYNC__STATE__CHANGE_KIND__CHANGE_EDIT) {
        size_t body_len = slen(cc->body);
        if (!body_len || body_len > TS_BODY_MAX)
            return reject(res, TS_E_INVALID_ARGUMENT, "body"), TS_OK;
        if (author && t->locked)
            return reject(res, TS_E_THREAD_LOCKED, NULL), TS_OK;
        const char *old_body = c->text + c->name_len + 1 + c->email_len + 1;
        if (body_len == c->body_len && memcmp(old_body, cc->body, body_len) == 0)
            return TS_OK; /* the same text again: a retry */
        struct comment *n =
            comment_rewrite(st, t, c, c->text, c->name_len, c->text + c->name_len + 1, c->email_len,
                            cc->body, body_len);
        if (!n)
            return TS_E_NOMEM;
        c = n;
        c->edited_at = now;
        /* An approved comment edited by its author on a pre-moderated
         * thread goes back to the queue: approval was of other words. */
        if (author && !cmd->trusted && (cmd->premoderate || t->premoderated) &&
            c->status == THREADSYNC__STATUS__VISIBLE)
            set_status(t, c, THREADSYNC__STATUS__PENDING);
    } else {
        if (to == from)
            return TS_OK; /* already there: a retry changes nothing */
        if (to == THREADSYNC__STATUS__DELETED) {
            /* The tombstone keeps id, thread, parent and times only. */
            struct comment *n = comment_rewrite(st, t, c, "", 0, "", 0, "", 0);
            if (!n)
                return TS_E_NOMEM;
            c = n;
        }
        set_status(t, c, to);
    }
    c->modby = modby;
    c->version++;
    t->version++;
    /* History replays (a subscriber from an old cursor, or after a restart)
     * must not bring back what the public may no longer read. */
    if (c->status != THREADSYNC__STATUS__VISIBLE ||
        (!author && cc->kind == THREADSYNC__STATE__CHANGE_KIND__CHANGE_EDIT)) {
        uint8_t now_status = c->status;
        ts_evlog_rewrite_public(s->log, t->id, c->id, c->id, blank_public, &now_status);
    }
    int rc = append_event(s, index, t, c);
    if (rc != TS_OK)
        return rc;
    res->seq = index;
    res->comment_status = c->status;
    res->changed = 1;
    return TS_OK;
}

static int apply_moderate_thread(struct ts_store *s, uint64_t index,
                                 const Threadsync__State__Command *cmd, struct ts_store_result *res)
{
    struct state *st = &s->st;
    const Threadsync__ModerateThread *m = cmd->moderate_thread;
    size_t key_len = slen(m->thread_key);
    struct thread *t = key_len ? find_thread_key(st, m->thread_key, key_len) : NULL;
    if (!t)
        return reject(res, TS_E_NOT_FOUND, "thread_key"), TS_OK;
    res->thread_id = t->id;
    uint8_t locked = t->locked, premod = t->premoderated;
    switch (m->action) {
    case THREADSYNC__THREAD_ACTION__THREAD_LOCK:
        locked = 1;
        break;
    case THREADSYNC__THREAD_ACTION__THREAD_UNLOCK:
        locked = 0;
        break;
    case THREADSYNC__THREAD_ACTION__THREAD_PREMODERATE:
        premod = 1;
        break;
    case THREADSYNC__THREAD_ACTION__THREAD_POSTMODERATE:
        premod = 0;
        break;
    default:
        return reject(res, TS_E_INVALID_ARGUMENT, "action"), TS_OK;
    }
    if (locked == t->locked && premod == t->premoderated)
        return TS_OK;
    uint16_t modby;
    if (intern(st, actor_of(cmd), &modby) != TS_OK)
        return TS_E_NOMEM;
    t->locked = locked;
    t->premoderated = premod;
    t->modby = modby;
    t->version++;
    int rc = append_event(s, index, t, NULL);
    if (rc != TS_OK)
        return rc;
    res->seq = index;
    res->changed = 1;
    return TS_OK;
}

static int apply_ban(struct ts_store *s, uint64_t index, const Threadsync__State__Command *cmd,
                     struct ts_store_result *res)
{
    res->seq = index;
    struct state *st = &s->st;
    const Threadsync__BanAuthor *b = cmd->ban_author;
    int64_t now = cmd->time_ms;
    size_t len = slen(b->author);
    if (!len || len > TS_AUTHOR_EMAIL_MAX)
        return reject(res, TS_E_INVALID_ARGUMENT, "author"), TS_OK;
    if (b->duration_ms > TS_STORE_BAN_MAX_MS)
        return reject(res, TS_E_INVALID_ARGUMENT, "duration_ms"), TS_OK;
    /* Expired bans go as command time passes them: same moment everywhere. */
    for (size_t i = st->n_bans; i-- > 0;)
        if (st->bans[i].until <= now)
            ban_remove_at(st, i);
    char key[TS_AUTHOR_EMAIL_MAX + 1];
    ban_key(b->author, key, sizeof(key));
    int found;
    size_t i = ban_slot(st, key, &found);
    if (b->duration_ms == 0) {
        if (found)
            ban_remove_at(st, i);
        res->changed = found;
        res->until_ms = 0;
        return TS_OK;
    }
    int64_t until = now + (int64_t)b->duration_ms;
    if (ban_put(st, key, until, actor_of(cmd)) != TS_OK)
        return TS_E_NOMEM;
    res->changed = 1;
    res->until_ms = until;
    return TS_OK;
}

static int apply_token_grant(struct ts_store *s, uint64_t index,
                             const Threadsync__State__Command *cmd, struct ts_store_result *res)
{
    res->seq = index;
    struct state *st = &s->st;
    const Threadsync__State__TokenGrant *g = cmd->token_grant;
    if (!valid_token_name(g->name))
        return reject(res, TS_E_INVALID_ARGUMENT, "name"), TS_OK;
    if (g->role < THREADSYNC__ROLE__READER || g->role > THREADSYNC__ROLE__ADMIN)
        return reject(res, TS_E_INVALID_ARGUMENT, "role"), TS_OK;
    if (g->token_hash.len != TS_STORE_HASH_LEN)
        return reject(res, TS_E_INVALID_ARGUMENT, "token"), TS_OK;
    int found;
    token_slot(st, g->name, &found);
    if (found)
        return reject_msg(res, TS_E_INVALID_ARGUMENT, "name", "a token had this name"), TS_OK;
    struct token tk;
    memset(&tk, 0, sizeof(tk));
    snprintf(tk.name, sizeof(tk.name), "%s", g->name);
    snprintf(tk.created_by, sizeof(tk.created_by), "%s", actor_of(cmd));
    memcpy(tk.hash, g->token_hash.data, TS_STORE_HASH_LEN);
    tk.has_hash = 1;
    tk.role = (uint8_t)g->role;
    tk.created_at = cmd->time_ms;
    if (token_insert(st, &tk) != TS_OK)
        return TS_E_NOMEM;
    st->auth_gen++;
    res->changed = 1;
    return TS_OK;
}

static int apply_token_revoke(struct ts_store *s, uint64_t index,
                              const Threadsync__State__Command *cmd, struct ts_store_result *res)
{
    res->seq = index;
    struct state *st = &s->st;
    const Threadsync__TokenRevoke *r = cmd->token_revoke;
    if (!valid_token_name(r->name))
        return reject(res, TS_E_INVALID_ARGUMENT, "name"), TS_OK;
    int found;
    size_t i = token_slot(st, r->name, &found);
    if (found && st->tokens[i].revoked)
        return TS_OK;
    if (found) {
        st->tokens[i].revoked = 1;
        st->tokens[i].revoked_at = cmd->time_ms;
    } else {
        /* A tokens-file name (the leader checked it exists there): the
         * tombstone is what makes every node refuse it. */
        struct token tk;
        memset(&tk, 0, sizeof(tk));
        snprintf(tk.name, sizeof(tk.name), "%s", r->name);
        snprintf(tk.created_by, sizeof(tk.created_by), "%s", actor_of(cmd));
        tk.revoked = 1;
        tk.revoked_at = cmd->time_ms;
        if (token_insert(st, &tk) != TS_OK)
            return TS_E_NOMEM;
    }
    st->auth_gen++;
    res->changed = 1;
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
    int rc = TS_OK;
    res->status = TS_E_BAD_FRAME;
    if (!cmd)
        return TS_OK;
    res->status = TS_OK;
    switch (cmd->op_case) {
    case THREADSYNC__STATE__COMMAND__OP_POST:
        rc = apply_post(s, index, cmd, res);
        break;
    case THREADSYNC__STATE__COMMAND__OP_COMMENT_CHANGE:
        rc = apply_comment_change(s, index, cmd, res);
        break;
    case THREADSYNC__STATE__COMMAND__OP_MODERATE_THREAD:
        rc = apply_moderate_thread(s, index, cmd, res);
        break;
    case THREADSYNC__STATE__COMMAND__OP_BAN_AUTHOR:
        rc = apply_ban(s, index, cmd, res);
        break;
    case THREADSYNC__STATE__COMMAND__OP_TOKEN_GRANT:
        rc = apply_token_grant(s, index, cmd, res);
        break;
    case THREADSYNC__STATE__COMMAND__OP_TOKEN_REVOKE:
        rc = apply_token_revoke(s, index, cmd, res);
        break;
    default:
        res->status = TS_E_BAD_FRAME;
        break;
    }
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
    if (st->idem_by_comment.cap)
        n += alloc_cost(st->idem_by_comment.cap * sizeof(void *));
    if (st->cap_names)
        n += alloc_cost(st->cap_names * sizeof(*st->names));
    for (size_t i = 1; i < st->n_names; i++)
        n += alloc_cost(strlen(st->names[i]) + 1);
    if (st->cap_tokens)
        n += alloc_cost(st->cap_tokens * sizeof(*st->tokens));
    if (st->cap_bans)
        n += alloc_cost(st->cap_bans * sizeof(*st->bans));
    for (size_t i = 0; i < st->n_bans; i++)
        n += alloc_cost(strlen(st->bans[i].author) + strlen(st->bans[i].by) + 2);
    return n;
}

int ts_store_thread_by_key(const struct ts_store *s, const char *key, Threadsync__Thread *out)
{
    struct thread *t = find_thread_key(&s->st, key, strlen(key));
    if (!t)
        return TS_E_NOT_FOUND;
    thread_view(&s->st, t, out);
    return TS_OK;
}

int ts_store_thread_by_id(const struct ts_store *s, uint64_t id, Threadsync__Thread *out)
{
    struct thread *t = find_thread_id(&s->st, id);
    if (!t)
        return TS_E_NOT_FOUND;
    thread_view(&s->st, t, out);
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
        thread_view(st, st->threads[i], &v);
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
        comment_view(&s->st, t->comments[i], &v);
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
    comment_view(&s->st, c, out);
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
    Threadsync__State__TokenEntry *kv = calloc(st->n_tokens ? st->n_tokens : 1, sizeof(*kv));
    Threadsync__State__TokenEntry **kp = calloc(st->n_tokens ? st->n_tokens : 1, sizeof(*kp));
    Threadsync__State__BanEntry *bv = calloc(st->n_bans ? st->n_bans : 1, sizeof(*bv));
    Threadsync__State__BanEntry **bp = calloc(st->n_bans ? st->n_bans : 1, sizeof(*bp));
    int rc = TS_E_NOMEM;
    if (!tv || !tp || !cv || !cp || !iv || !ip || !kv || !kp || !bv || !bp)
        goto out;
    for (size_t i = 0; i < st->n_tokens; i++) {
        const struct token *k = &st->tokens[i];
        threadsync__state__token_entry__init(&kv[i]);
        kv[i].name = (char *)k->name;
        kv[i].role = (Threadsync__Role)k->role;
        if (k->has_hash) {
            kv[i].token_hash.data = (uint8_t *)k->hash;
            kv[i].token_hash.len = TS_STORE_HASH_LEN;
        }
        kv[i].created_at_ms = k->created_at;
        kv[i].created_by = (char *)k->created_by;
        kv[i].revoked = k->revoked;
        kv[i].revoked_at_ms = k->revoked_at;
        kp[i] = &kv[i];
    }
    for (size_t i = 0; i < st->n_bans; i++) {
        threadsync__state__ban_entry__init(&bv[i]);
        bv[i].author = st->bans[i].author;
        bv[i].until_ms = st->bans[i].until;
        bv[i].banned_by = st->bans[i].by;
        bp[i] = &bv[i];
    }
    size_t nc = 0;
    for (size_t i = 0; i < st->n_threads; i++) {
        const struct thread *t = st->threads[i];
        thread_view(st, t, &tv[i]);
        tp[i] = &tv[i];
        for (uint32_t j = 0; j < t->n_comments; j++, nc++) {
            comment_view(st, t->comments[j], &cv[nc]);
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
        if (e->has_hash) {
            iv[i].edit_key_hash.data = (uint8_t *)e->edit_hash;
            iv[i].edit_key_hash.len = TS_STORE_HASH_LEN;
        }
        ip[i] = &iv[i];
    }
    snap.n_threads = st->n_threads;
    snap.threads = tp;
    snap.n_comments = nc;
    snap.comments = cp;
    snap.n_idempotency = st->idem_n;
    snap.idempotency = ip;
    snap.n_tokens = st->n_tokens;
    snap.tokens = kp;
    snap.n_bans = st->n_bans;
    snap.bans = bp;
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
    free(kv);
    free(kp);
    free(bv);
    free(bp);
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
        t->premoderated = v->premoderated;
        if (intern(st, v->moderated_by, &t->modby) != TS_OK || thread_insert(st, t) != TS_OK) {
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
        if (intern(st, v->moderated_by, &c->modby) != TS_OK || comment_insert(st, t, c) != TS_OK) {
            free(c);
            return TS_E_NOMEM;
        }
        if (c->status == THREADSYNC__STATUS__PENDING)
            t->pending_count++;
    }
    for (size_t i = 0; i < snap->n_idempotency; i++) {
        const Threadsync__State__IdempotencyEntry *v = snap->idempotency[i];
        size_t key_len = slen(v->key);
        if (!key_len || key_len > TS_IDEMPOTENCY_KEY_MAX || find_idem(st, v->key, key_len) ||
            (int)v->status < 0 || (int)v->status > 255 ||
            (v->edit_key_hash.len && v->edit_key_hash.len != TS_STORE_HASH_LEN))
            return TS_E_BAD_FRAME;
        struct idem *e = malloc(sizeof(*e) + key_len + 1);
        if (!e)
            return TS_E_NOMEM;
        e->seq = v->seq;
        e->thread_id = v->thread_id;
        e->comment_id = v->comment_id;
        e->time_ms = v->time_ms;
        e->comment_status = (uint8_t)v->status;
        e->has_hash = v->edit_key_hash.len == TS_STORE_HASH_LEN;
        memset(e->edit_hash, 0, TS_STORE_HASH_LEN);
        if (e->has_hash)
            memcpy(e->edit_hash, v->edit_key_hash.data, TS_STORE_HASH_LEN);
        e->key_len = (uint8_t)key_len;
        memcpy(e->key, v->key, key_len + 1);
        if (idem_insert(st, e) != TS_OK) {
            free(e);
            return TS_E_NOMEM;
        }
    }
    for (size_t i = 0; i < snap->n_tokens; i++) {
        const Threadsync__State__TokenEntry *v = snap->tokens[i];
        if (!valid_token_name(v->name) || slen(v->created_by) > TS_STORE_NAME_MAX ||
            (v->token_hash.len && v->token_hash.len != TS_STORE_HASH_LEN) ||
            (!v->token_hash.len && !v->revoked) || v->role < 0 || v->role > THREADSYNC__ROLE__ADMIN)
            return TS_E_BAD_FRAME;
        struct token tk;
        memset(&tk, 0, sizeof(tk));
        snprintf(tk.name, sizeof(tk.name), "%s", v->name);
        snprintf(tk.created_by, sizeof(tk.created_by), "%s", v->created_by ? v->created_by : "");
        tk.has_hash = v->token_hash.len == TS_STORE_HASH_LEN;
        if (tk.has_hash)
            memcpy(tk.hash, v->token_hash.data, TS_STORE_HASH_LEN);
        tk.role = (uint8_t)v->role;
        tk.created_at = v->created_at_ms;
        tk.revoked = v->revoked;
        tk.revoked_at = v->revoked_at_ms;
        int rc = token_insert(st, &tk);
        if (rc != TS_OK)
            return rc == TS_E_EXISTS ? TS_E_BAD_FRAME : rc;
    }
    for (size_t i = 0; i < snap->n_bans; i++) {
        const Threadsync__State__BanEntry *v = snap->bans[i];
        size_t len = slen(v->author);
        if (!len || len > TS_AUTHOR_EMAIL_MAX || slen(v->banned_by) > TS_STORE_NAME_MAX)
            return TS_E_BAD_FRAME;
        if (ban_put(st, v->author, v->until_ms, v->banned_by ? v->banned_by : "") != TS_OK)
            return TS_E_NOMEM;
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
    st.auth_gen = s->st.auth_gen + 1; /* tokens may differ: sessions recheck */
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
        dig_u64(md, t->premoderated);
        const char *tm = name_at(st, t->modby);
        dig_str(md, tm, strlen(tm));
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
            const char *cm = name_at(st, c->modby);
            dig_str(md, cm, strlen(cm));
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
    }
    for (size_t i = 0; i < st->n_bans; i++) {
        const struct ban *b = &st->bans[i];
        EVP_DigestUpdate(md, "B", 1);
        dig_str(md, b->author, strlen(b->author));
        dig_u64(md, (uint64_t)b->until);
        dig_str(md, b->by, strlen(b->by));
    }
    EVP_DigestFinal_ex(md, h, &hlen);
    EVP_MD_CTX_free(md);
    for (unsigned i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", h[i]);
}

/* ---- moderation, bans and tokens: reads ------------------------------------ */

int ts_store_idempotency_known(const struct ts_store *s, const char *key)
{
    size_t len = slen(key);
    return len && len <= TS_IDEMPOTENCY_KEY_MAX && find_idem(&s->st, key, len) != NULL;
}

int ts_store_banned(const struct ts_store *s, const char *author_name, const char *author_email,
                    int64_t now_ms, int64_t *until_ms, const char **field)
{
    const char *f = NULL;
    const struct ban *b = post_ban(&s->st, author_name, author_email, now_ms, &f);
    if (!b)
        return 0;
    if (until_ms)
        *until_ms = b->until;
    if (field)
        *field = f;
    return 1;
}

static int cmp_comment_id(const void *a, const void *b)
{
    uint64_t x = (*(const struct comment *const *)a)->id;
    uint64_t y = (*(const struct comment *const *)b)->id;
    return x < y ? -1 : x > y;
}

int ts_store_pending(const struct ts_store *s, uint64_t thread_id, uint64_t after_id, size_t limit,
                     Threadsync__Comment *out, size_t *n, int *more)
{
    const struct state *st = &s->st;
    *n = 0;
    *more = 0;
    if (after_id == UINT64_MAX)
        return TS_OK;
    size_t total = 0;
    for (size_t i = 0; i < st->n_threads; i++)
        if (!thread_id || st->threads[i]->id == thread_id)
            total += st->threads[i]->pending_count;
    if (!total || !limit)
        return TS_OK;
    const struct comment **v = malloc(total * sizeof(*v));
    if (!v)
        return TS_E_NOMEM;
    size_t k = 0;
    for (size_t i = 0; i < st->n_threads; i++) {
        const struct thread *t = st->threads[i];
        if (!t->pending_count || (thread_id && t->id != thread_id))
            continue;
        for (uint32_t j = find_slot(t, after_id + 1); j < t->n_comments && k < total; j++)
            if (t->comments[j]->status == THREADSYNC__STATUS__PENDING)
                v[k++] = t->comments[j];
    }
    qsort(v, k, sizeof(*v), cmp_comment_id);
    for (size_t i = 0; i < k && i < limit; i++)
        comment_view(st, v[i], &out[i]);
    *n = k < limit ? k : limit;
    *more = k > limit;
    free(v);
    return TS_OK;
}

int ts_store_token_state(const struct ts_store *s, const char *name)
{
    int found;
    size_t i = token_slot(&s->st, name ? name : "", &found);
    if (!found)
        return TS_STORE_TOKEN_NONE;
    return s->st.tokens[i].revoked ? TS_STORE_TOKEN_REVOKED : TS_STORE_TOKEN_ACTIVE;
}

int ts_store_token_check(const struct ts_store *s, const uint8_t hash[TS_STORE_HASH_LEN], int *role,
                         const char **name)
{
    const struct state *st = &s->st;
    /* Every entry compared, constant-time each, as ts_auth does. */
    size_t found = 0, any = 0;
    for (size_t i = 0; i < st->n_tokens; i++) {
        const struct token *k = &st->tokens[i];
        size_t hit = (size_t)(k->has_hash && !k->revoked &&
                              CRYPTO_memcmp(k->hash, hash, TS_STORE_HASH_LEN) == 0);
        size_t mask = (size_t)0 - hit;
        found = (found & ~mask) | (i & mask);
        any |= hit;
    }
    if (!any)
        return TS_E_UNAUTHENTICATED;
    if (role)
        *role = st->tokens[found].role;
    if (name)
        *name = st->tokens[found].name;
    return TS_OK;
}

int ts_store_foreach_token(const struct ts_store *s,
                           int (*cb)(void *arg, const struct ts_store_token *t), void *arg)
{
    for (size_t i = 0; i < s->st.n_tokens; i++) {
        const struct token *k = &s->st.tokens[i];
        struct ts_store_token t = {
            .name = k->name,
            .role = k->role,
            .created_at_ms = k->created_at,
            .created_by = k->created_by,
            .revoked = k->revoked,
            .has_secret = k->has_hash,
        };
        int rc = cb(arg, &t);
        if (rc)
            return rc;
    }
    return 0;
}

uint64_t ts_store_auth_generation(const struct ts_store *s)
{
    return s->st.auth_gen;
}
