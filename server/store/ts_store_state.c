/*
 * ts_store_state: the store's records and their indexes (the layout is in
 * ts_store_int.h). Everything that allocates, indexes or frees a record is
 * here; nothing here knows about commands or the wire.
 *
 * Determinism: nothing here reads a clock or iterates a hash map to produce
 * output; the hash seed may differ between processes without effect.
 */
/* Before any OpenSSL header: the hashing below uses SHA256_Init/Update/
 * Final, deprecated (not removed) in OpenSSL 3.0; see "hashing". */
#define OPENSSL_SUPPRESS_DEPRECATED

#include "ts_store_int.h"

#include "ts_array.h"
#include "ts_endian.h"
#include "ts_err.h"
#include "ts_valid.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct strkey {
    const char *s;
    size_t len;
};

static uint64_t thread_hash_id(const void *e)
{
    return ts_map_hash_u64(((const struct thread *)e)->id);
}

static uint64_t thread_hash_key(const void *e)
{
    const struct thread *t = e;
    return ts_map_hash_str(t->text, t->key_len);
}

static uint64_t comment_hash_id(const void *e)
{
    return ts_map_hash_u64(((const struct comment *)e)->id);
}

/* Seeded like every client-chosen key: the digest is public (SHA-256 of
 * the key), so its bits alone could be ground to collide in the map. */
static uint64_t idem_hash(const void *e)
{
    const struct idem *i = e;
    return ts_map_hash_str((const char *)i->key_digest, TS__STORE_DIGEST_LEN);
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
    return memcmp(((const struct idem *)e)->key_digest, key, TS__STORE_DIGEST_LEN) == 0;
}

/* The index of key in v[0..n) (items of size bytes, sorted by the name
 * key_of reads), *found = 1; else where it would go, *found = 0. */
static size_t sorted_slot(const void *v, size_t n, size_t size,
                          const char *(*key_of)(const void *item), const char *key, int *found)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(key_of((const char *)v + mid * size), key);
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

static uint64_t import_hash(const void *e)
{
    const struct import_ref *r = e;
    return ts_map_hash_str((const char *)r->digest, TS__STORE_DIGEST_LEN);
}

void ts__store_state_init(struct state *st)
{
    memset(st, 0, sizeof(*st));
    st->thread_by_id.hash = thread_hash_id;
    st->thread_by_key.hash = thread_hash_key;
    /* Fork-private: the snapshot child reaches comments through their
     * threads and idempotency entries through the FIFO (ts_store_snap.c). */
    st->comment_by_id = (struct ts_map)TS_MAP_INIT_FORK_PRIVATE(comment_hash_id);
    st->idem_by_key = (struct ts_map)TS_MAP_INIT_FORK_PRIVATE(idem_hash);
    st->import_by_digest.hash = import_hash;
}

void ts__store_state_free(struct state *st)
{
    for (size_t i = 0; i < st->n_threads; i++) {
        struct thread *t = st->threads[i];
        for (uint32_t j = 0; j < t->n_comments; j++)
            free(t->comments[j]);
        free(t->comments);
        free(t);
    }
    free(st->threads);
    for (size_t i = 0; i < st->idem_nblocks; i++)
        free(st->idem_blocks[i]);
    free(st->idem_blocks);
    OPENSSL_cleanse(st->edit_secret, sizeof(st->edit_secret));
    ts_map_free(&st->thread_by_id);
    ts_map_free(&st->thread_by_key);
    ts_map_free(&st->comment_by_id);
    ts_map_free(&st->idem_by_key);
    ts__store_import_free(st);
    ts__store_audit_free(st);
    for (size_t i = 1; i < st->n_names; i++)
        free(st->names[i]);
    free(st->names);
    free(st->tokens);
    for (size_t i = 0; i < st->n_bans; i++)
        free(st->bans[i].author);
    free(st->bans);
}

struct thread *ts__store_find_thread_key(const struct state *st, const char *key, size_t len)
{
    struct strkey k = {key, len};
    return ts_map_find(&st->thread_by_key, ts_map_hash_str(key, len), &k, thread_eq_key);
}

struct thread *ts__store_find_thread_id(const struct state *st, uint64_t id)
{
    return ts_map_find(&st->thread_by_id, ts_map_hash_u64(id), &id, thread_eq_id);
}

struct comment *ts__store_find_comment(const struct state *st, uint64_t id)
{
    return ts_map_find(&st->comment_by_id, ts_map_hash_u64(id), &id, comment_eq_id);
}

/* ---- hashing ----
 * About a dozen SHA-256 runs of short inputs per post, all on the main
 * loop (the content digest's 8, the edit key's HMAC and its hash, the
 * idempotency digest), so their fixed cost per call is the cost.
 * OpenSSL 3's one-shot SHA256() and HMAC() fetch the algorithm on every
 * call; EVP_DigestInit_ex2 on a reused context (what this did until
 * issue 17's fourth pass) still frees and allocates the provider's context
 * on every init (3.0), dispatches each call through the provider and
 * cleanses on every Final: about 270 ns for a 31-byte input on this
 * machine's SHA-NI against 100 ns for SHA256_Init/Update/Final, which
 * call the same block function (bench/README.md, "Where a post's CPU
 * goes"). Those are deprecated in 3.0, not removed; a libcrypto built
 * without them (OPENSSL_NO_DEPRECATED_3_0) gets the EVP path, the same
 * bytes. HMAC is spelled out over this (RFC 2104; the 32-byte key is
 * shorter than the 64-byte block, so it is zero-padded): the same bytes
 * as HMAC(EVP_sha256()). No state is shared: thread-safe. */
#ifndef OPENSSL_NO_DEPRECATED_3_0
void ts__store_sha256(const void *a, size_t alen, const void *b, size_t blen,
                      uint8_t out[SHA256_DIGEST_LENGTH])
{
    SHA256_CTX c;
    /* Init, Update and Final of a stack context cannot fail. */
    SHA256_Init(&c);
    SHA256_Update(&c, a, alen);
    if (blen)
        SHA256_Update(&c, b, blen);
    SHA256_Final(out, &c);
}
#else
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;
static _Thread_local EVP_MD_CTX *sha256_ctx;

static void sha256_fetch(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

void ts__store_sha256(const void *a, size_t alen, const void *b, size_t blen,
                      uint8_t out[SHA256_DIGEST_LENGTH])
{
    pthread_once(&sha256_once, sha256_fetch);
    if (!sha256_ctx)
        sha256_ctx = EVP_MD_CTX_new();
    EVP_MD_CTX *c = sha256_ctx;
    const EVP_MD *md = sha256_md ? sha256_md : EVP_sha256(); /* out of memory: slow, same bytes */
    unsigned n = 0;
    if (c && EVP_DigestInit_ex2(c, md, NULL) == 1 && EVP_DigestUpdate(c, a, alen) == 1 &&
        (!blen || EVP_DigestUpdate(c, b, blen) == 1) && EVP_DigestFinal_ex(c, out, &n) == 1)
        return;
    memset(out, 0, SHA256_DIGEST_LENGTH); /* never: only without memory for the context */
}
#endif

void ts__store_hmac_sha256(const uint8_t key[TS_STORE_HASH_LEN], const void *msg, size_t len,
                           uint8_t out[SHA256_DIGEST_LENGTH])
{
    uint8_t pad[64], inner[SHA256_DIGEST_LENGTH];
    for (size_t i = 0; i < sizeof(pad); i++)
        pad[i] = (uint8_t)((i < TS_STORE_HASH_LEN ? key[i] : 0) ^ 0x36);
    ts__store_sha256(pad, sizeof(pad), msg, len, inner);
    for (size_t i = 0; i < sizeof(pad); i++)
        pad[i] = (uint8_t)((i < TS_STORE_HASH_LEN ? key[i] : 0) ^ 0x5c);
    ts__store_sha256(pad, sizeof(pad), inner, sizeof(inner), out);
    OPENSSL_cleanse(pad, sizeof(pad));
    OPENSSL_cleanse(inner, sizeof(inner));
}

void ts__store_idem_digest(const char *key, size_t len, uint8_t out[TS__STORE_DIGEST_LEN])
{
    uint8_t h[SHA256_DIGEST_LENGTH];
    ts__store_sha256(key, len, NULL, 0, h);
    memcpy(out, h, TS__STORE_DIGEST_LEN);
}

/* The SHA-256 of each field, then of their concatenation: no allocation,
 * and field boundaries cannot shift. */
void ts__store_content_digest(const Threadsync__Post *p, uint8_t out[TS__STORE_DIGEST_LEN])
{
    const char *f[] = {p->thread_key, p->title, p->url, p->author_name, p->author_email, p->body};
    enum { N = sizeof(f) / sizeof(f[0]) };
    uint8_t all[(N + 1) * SHA256_DIGEST_LENGTH], parent[8], h[SHA256_DIGEST_LENGTH];
    for (size_t i = 0; i < N; i++)
        ts__store_sha256(f[i] ? f[i] : "", ts__store_slen(f[i]), NULL, 0,
                         all + i * SHA256_DIGEST_LENGTH);
    ts_store_be64(parent, p->parent_id);
    ts__store_sha256(parent, sizeof(parent), NULL, 0, all + (size_t)N * SHA256_DIGEST_LENGTH);
    ts__store_sha256(all, sizeof(all), NULL, 0, h);
    memcpy(out, h, TS__STORE_DIGEST_LEN);
}

void ts__store_derive_edit_key(const struct state *st, const struct idem *e,
                               char out[TS_STORE_EDIT_KEY_LEN + 1])
{
    static const char label[] = "threadsync-edit-v1";
    uint8_t msg[sizeof(label) + TS__STORE_DIGEST_LEN + 8], mac[SHA256_DIGEST_LENGTH];
    memcpy(msg, label, sizeof(label));
    memcpy(msg + sizeof(label), e->key_digest, TS__STORE_DIGEST_LEN);
    ts_store_be64(msg + sizeof(label) + TS__STORE_DIGEST_LEN, e->comment_id);
    ts__store_hmac_sha256(st->edit_secret, msg, sizeof(msg), mac);
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < TS_STORE_EDIT_KEY_LEN / 2; i++) {
        out[2 * i] = hex[mac[i] >> 4];
        out[2 * i + 1] = hex[mac[i] & 15];
    }
    out[TS_STORE_EDIT_KEY_LEN] = '\0';
    OPENSSL_cleanse(mac, sizeof(mac));
}

struct idem *ts__store_find_idem(const struct state *st, const uint8_t digest[TS__STORE_DIGEST_LEN])
{
    return ts_map_find(&st->idem_by_key,
                       ts_map_hash_str((const char *)digest, TS__STORE_DIGEST_LEN), digest,
                       idem_eq);
}

struct idem *ts__store_idem_at(const struct state *st, size_t i)
{
    uint64_t abs = st->idem_first + i;
    size_t b = (size_t)(abs / TS__STORE_IDEM_BLOCK - st->idem_first / TS__STORE_IDEM_BLOCK);
    return &st->idem_blocks[b][abs % TS__STORE_IDEM_BLOCK];
}

/* A binary search: the FIFO is in comment id order (see the layout). */
struct idem *ts__store_find_idem_comment(const struct state *st, uint64_t comment_id)
{
    size_t lo = 0, hi = st->idem_n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ts__store_idem_at(st, mid)->comment_id < comment_id)
            lo = mid + 1;
        else
            hi = mid;
    }
    struct idem *e = lo < st->idem_n ? ts__store_idem_at(st, lo) : NULL;
    return e && e->comment_id == comment_id ? e : NULL;
}

const char *ts__store_name_at(const struct state *st, uint16_t i)
{
    return i && i < st->n_names ? st->names[i] : "";
}

/* The index of name in the interned table, adding it; 0 for "" or when the
 * table is full (the record then says "nobody" rather than fail). */
int ts__store_intern(struct state *st, const char *name, uint16_t *out)
{
    *out = 0;
    size_t len = ts__store_slen(name);
    if (!len || len > TS_STORE_NAME_MAX)
        return TS_OK;
    for (size_t i = 1; i < st->n_names; i++)
        if (strcmp(st->names[i], name) == 0)
            return *out = (uint16_t)i, TS_OK;
    if (st->n_names >= UINT16_MAX)
        return TS_OK;
    /* Room for the name and, in a new table, names[0]. */
    char **v = ts_array_grow(st->names, &st->cap_names, st->n_names + 1, sizeof(*v), 8);
    if (!v)
        return TS_E_NOMEM;
    st->names = v;
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

struct thread *ts__store_thread_alloc(const char *key, size_t key_len, const char *title,
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
int ts__store_thread_insert(struct state *st, struct thread *t)
{
    struct thread **v = ts_array_grow(st->threads, &st->cap_threads, st->n_threads, sizeof(*v), 16);
    if (!v)
        return TS_E_NOMEM;
    st->threads = v;
    if (st->n_threads >= UINT32_MAX) /* comments name their thread in 32 bits */
        return TS_E_NOMEM;
    t->ix = (uint32_t)st->n_threads;
    if (ts_map_insert(&st->thread_by_id, t) != TS_OK)
        return TS_E_NOMEM;
    if (ts_map_insert(&st->thread_by_key, t) != TS_OK) {
        ts_map_remove(&st->thread_by_id, t);
        return TS_E_NOMEM;
    }
    st->threads[st->n_threads++] = t;
    st->record_bytes += ts__store_alloc_cost(thread_size(t));
    return TS_OK;
}

static int ext_is_default(const struct comment_ext *x)
{
    return x->edited_at == 0 && x->version == 1 && x->modby == 0;
}

static void ext_put(struct comment *c, const struct comment_ext *x)
{
    memcpy(c->text, &x->edited_at, 8);
    memcpy(c->text + 8, &x->version, 8);
    memcpy(c->text + 16, &x->modby, 2);
}

void ts__store_comment_ext(const struct comment *c, struct comment_ext *out)
{
    *out = (struct comment_ext){.version = 1};
    if (!c->has_ext)
        return;
    memcpy(&out->edited_at, c->text, 8);
    memcpy(&out->version, c->text + 8, 8);
    memcpy(&out->modby, c->text + 16, 2);
}

struct comment *ts__store_comment_alloc(const char *name, size_t name_len, const char *email,
                                        size_t email_len, const char *body, size_t body_len,
                                        const char *reader_key, const struct comment_ext *ext)
{
    int has_ext = ext && !ext_is_default(ext);
    size_t rk_len = reader_key ? strlen(reader_key) : 0;
    size_t size = offsetof(struct comment, text) + (has_ext ? TS__COMMENT_EXT_LEN : 0) + name_len +
                  email_len + body_len + rk_len + 4;
    struct comment *c = malloc(size);
    if (!c)
        return NULL;
    memset(c, 0, offsetof(struct comment, text));
    c->name_len = (uint16_t)name_len;
    c->email_len = (uint16_t)email_len;
    c->body_len = (uint32_t)body_len;
    c->has_ext = (uint8_t)has_ext;
    c->rk_len = (uint8_t)rk_len;
    if (has_ext)
        ext_put(c, ext);
    char *p = (char *)ts__store_comment_text(c);
    put_str(&p, name, name_len);
    put_str(&p, email, email_len);
    put_str(&p, body, body_len);
    put_str(&p, reader_key, rk_len);
    return c;
}

static size_t comment_size(const struct comment *c)
{
    return offsetof(struct comment, text) + (c->has_ext ? TS__COMMENT_EXT_LEN : 0) + c->name_len +
           c->email_len + c->body_len + c->rk_len + 4;
}

/* Appends c to its thread t; c's id exceeds every comment's of t. */
int ts__store_comment_insert(struct state *st, struct thread *t, struct comment *c)
{
    if (t->n_comments == t->cap_comments) {
        /* Growth by half: most threads stay small and the slack is per
         * thread, so doubling would waste up to 8 bytes per comment. */
        uint32_t cap = t->cap_comments < 4 ? 4 : t->cap_comments + t->cap_comments / 2;
        struct comment **v = realloc(t->comments, cap * sizeof(*v));
        if (!v)
            return TS_E_NOMEM;
        st->record_bytes -=
            t->cap_comments ? ts__store_alloc_cost(t->cap_comments * sizeof(*v)) : 0;
        st->record_bytes += ts__store_alloc_cost(cap * sizeof(*v));
        t->comments = v;
        t->cap_comments = cap;
    }
    if (ts_map_insert(&st->comment_by_id, c) != TS_OK)
        return TS_E_NOMEM;
    t->comments[t->n_comments++] = c;
    st->n_comments++;
    st->record_bytes += ts__store_alloc_cost(comment_size(c));
    return TS_OK;
}

static const size_t idem_block_bytes = TS__STORE_IDEM_BLOCK * sizeof(struct idem);

int ts__store_idem_append(struct state *st, const struct idem *e)
{
    if (st->idem_n && e->comment_id <= ts__store_idem_at(st, st->idem_n - 1)->comment_id)
        return TS_E_BAD_FRAME;
    if (ts__store_find_idem(st, e->key_digest))
        return TS_E_BAD_FRAME;
    uint64_t end = st->idem_first + st->idem_n;
    int new_block = !st->idem_n || end % TS__STORE_IDEM_BLOCK == 0;
    if (new_block) {
        struct idem **v =
            ts_array_grow(st->idem_blocks, &st->idem_cap_blocks, st->idem_nblocks, sizeof(*v), 8);
        if (!v)
            return TS_E_NOMEM;
        st->idem_blocks = v;
        struct idem *blk = malloc(idem_block_bytes);
        if (!blk)
            return TS_E_NOMEM;
        st->idem_blocks[st->idem_nblocks++] = blk;
        if (!st->idem_n) /* an empty FIFO starts afresh at a block's start */
            st->idem_first = end =
                (end + TS__STORE_IDEM_BLOCK - 1) / TS__STORE_IDEM_BLOCK * TS__STORE_IDEM_BLOCK;
    }
    struct idem *slot = &st->idem_blocks[st->idem_nblocks - 1][end % TS__STORE_IDEM_BLOCK];
    *slot = *e;
    if (ts_map_insert(&st->idem_by_key, slot) != TS_OK) {
        if (new_block)
            free(st->idem_blocks[--st->idem_nblocks]);
        return TS_E_NOMEM;
    }
    st->idem_n++;
    if (new_block)
        st->record_bytes += ts__store_alloc_cost(idem_block_bytes);
    return TS_OK;
}

/* Forgets keys first used RETENTION or more before now. The FIFO is in
 * first-use order; should the leader's clock step back, an entry behind a
 * newer head just lives a little longer, identically on every replica. */
void ts__store_idem_expire(struct state *st, int64_t now)
{
    while (st->idem_n) {
        struct idem *e = ts__store_idem_at(st, 0);
        int64_t first_use = ts__store_find_comment(st, e->comment_id)->created_at;
        if (now <= first_use ||
            (uint64_t)now - (uint64_t)first_use < (uint64_t)TS_STORE_IDEMPOTENCY_RETENTION_MS)
            break;
        ts_map_remove(&st->idem_by_key, e);
        st->idem_first++;
        st->idem_n--;
        if (st->idem_first % TS__STORE_IDEM_BLOCK == 0 || !st->idem_n) {
            free(st->idem_blocks[0]);
            memmove(&st->idem_blocks[0], &st->idem_blocks[1],
                    (st->idem_nblocks - 1) * sizeof(*st->idem_blocks));
            st->idem_nblocks--;
            st->record_bytes -= ts__store_alloc_cost(idem_block_bytes);
        }
    }
}

void ts__store_thread_view(const struct state *st, const struct thread *t, Threadsync__Thread *v)
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
    v->moderated_by = (char *)ts__store_name_at(st, t->modby);
}

void ts__store_comment_view(const struct state *st, const struct comment *c, Threadsync__Comment *v)
{
    *v = (Threadsync__Comment)THREADSYNC__COMMENT__INIT;
    struct comment_ext x;
    ts__store_comment_ext(c, &x);
    v->id = c->id;
    v->thread_id = ts__store_comment_thread(st, c)->id;
    v->parent_id = c->parent_id;
    v->author_name = (char *)ts__store_comment_text(c);
    v->author_email = v->author_name + c->name_len + 1;
    v->body = v->author_email + c->email_len + 1;
    v->created_at_ms = c->created_at;
    v->edited_at_ms = x.edited_at;
    v->status = (Threadsync__Status)c->status;
    v->version = x.version;
    v->moderated_by = (char *)ts__store_name_at(st, x.modby);
    v->reader_key = (char *)ts__store_comment_reader_key(c);
}

size_t ts__store_thread_slot(const struct state *st, uint64_t id)
{
    size_t lo = 0, hi = st->n_threads;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (st->threads[mid]->id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

uint32_t ts__store_comment_slot(const struct thread *t, uint64_t id)
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

/* n takes c's place in every index; c is freed. */
static struct comment *comment_replace(struct state *st, struct comment *c, struct comment *n)
{
    struct thread *t = ts__store_comment_thread(st, c);
    n->id = c->id;
    n->thread_ix = c->thread_ix;
    n->parent_id = c->parent_id;
    n->created_at = c->created_at;
    n->status = c->status;
    /* Removing first means the insert cannot need to grow the map. */
    ts_map_remove(&st->comment_by_id, c);
    ts_map_insert(&st->comment_by_id, n);
    t->comments[ts__store_comment_slot(t, c->id)] = n;
    st->record_bytes -= ts__store_alloc_cost(comment_size(c));
    st->record_bytes += ts__store_alloc_cost(comment_size(n));
    free(c);
    return n;
}

struct comment *ts__store_comment_rewrite(struct state *st, struct comment *c, const char *name,
                                          size_t name_len, const char *email, size_t email_len,
                                          const char *body, size_t body_len, const char *reader_key,
                                          const struct comment_ext *x)
{
    struct comment *n =
        ts__store_comment_alloc(name, name_len, email, email_len, body, body_len, reader_key, x);
    return n ? comment_replace(st, c, n) : NULL;
}

struct comment *ts__store_comment_set_ext(struct state *st, struct comment *c,
                                          const struct comment_ext *x)
{
    if (c->has_ext) {
        ext_put(c, x);
        return c;
    }
    if (ext_is_default(x))
        return c;
    const char *name = ts__store_comment_text(c), *email = name + c->name_len + 1,
               *body = email + c->email_len + 1;
    struct comment *n = ts__store_comment_alloc(name, c->name_len, email, c->email_len, body,
                                                c->body_len, ts__store_comment_reader_key(c), x);
    return n ? comment_replace(st, c, n) : NULL;
}

static void lower_email(const char *s, char *out, size_t size)
{
    size_t i = 0;
    for (; s[i] && i + 1 < size; i++)
        out[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] - 'A' + 'a') : s[i];
    out[i] = '\0';
}

/* The form a ban is stored and matched under: e-mails lowercased, names as
 * given. */
void ts__store_ban_key(const char *author, char *out, size_t size)
{
    if (strchr(author, '@'))
        lower_email(author, out, size);
    else
        snprintf(out, size, "%s", author);
}

static const char *ban_author(const void *b)
{
    return ((const struct ban *)b)->author;
}

size_t ts__store_ban_slot(const struct state *st, const char *author, int *found)
{
    return sorted_slot(st->bans, st->n_bans, sizeof(*st->bans), ban_author, author, found);
}

static const struct ban *ban_find(const struct state *st, const char *author, int64_t now)
{
    int found;
    size_t i = ts__store_ban_slot(st, author, &found);
    return found && st->bans[i].until > now ? &st->bans[i] : NULL;
}

/* The ban that refuses a post by (name, email) at now, if any; *field says
 * which of the two matched. */
const struct ban *ts__store_post_ban(const struct state *st, const char *name, const char *email,
                                     const char *reader_key, int64_t now, const char **field)
{
    if (!st->n_bans)
        return NULL;
    if (reader_key && *reader_key) {
        char key[sizeof(TS_READER_BAN_PREFIX) + TS_READER_KEY_LEN];
        snprintf(key, sizeof(key), "%s%s", TS_READER_BAN_PREFIX, reader_key);
        const struct ban *b = ban_find(st, key, now);
        if (b) {
            *field = "reader_key";
            return b;
        }
    }
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

void ts__store_ban_remove_at(struct state *st, size_t i)
{
    free(st->bans[i].author);
    memmove(&st->bans[i], &st->bans[i + 1], (st->n_bans - i - 1) * sizeof(*st->bans));
    st->n_bans--;
}

/* Inserts or replaces the ban on author (a ban key). */
int ts__store_ban_put(struct state *st, const char *author, int64_t until, const char *by)
{
    size_t alen = strlen(author), blen = strlen(by);
    char *text = malloc(alen + blen + 2);
    if (!text)
        return TS_E_NOMEM;
    memcpy(text, author, alen + 1);
    memcpy(text + alen + 1, by, blen + 1);
    int found;
    size_t i = ts__store_ban_slot(st, author, &found);
    if (found) {
        free(st->bans[i].author);
    } else {
        struct ban *v = ts_array_grow(st->bans, &st->cap_bans, st->n_bans, sizeof(*v), 8);
        if (!v) {
            free(text);
            return TS_E_NOMEM;
        }
        st->bans = v;
        memmove(&st->bans[i + 1], &st->bans[i], (st->n_bans - i) * sizeof(*st->bans));
        st->n_bans++;
    }
    st->bans[i].author = text;
    st->bans[i].by = text + alen + 1;
    st->bans[i].until = until;
    return TS_OK;
}

int ts__store_valid_token_name(const char *s)
{
    return s && ts_valid_token_name(s, strlen(s));
}

static const char *token_name(const void *t)
{
    return ((const struct token *)t)->name;
}

size_t ts__store_token_slot(const struct state *st, const char *name, int *found)
{
    return sorted_slot(st->tokens, st->n_tokens, sizeof(*st->tokens), token_name, name, found);
}

void ts__store_token_init(struct token *tk, const char *name, const char *created_by)
{
    memset(tk, 0, sizeof(*tk));
    snprintf(tk->name, sizeof(tk->name), "%s", name);
    snprintf(tk->created_by, sizeof(tk->created_by), "%s", created_by ? created_by : "");
}

/* Inserts tk (its name not yet present) in name order. */
int ts__store_token_insert(struct state *st, const struct token *tk)
{
    int found;
    size_t i = ts__store_token_slot(st, tk->name, &found);
    if (found)
        return TS_E_EXISTS;
    struct token *v = ts_array_grow(st->tokens, &st->cap_tokens, st->n_tokens, sizeof(*v), 8);
    if (!v)
        return TS_E_NOMEM;
    st->tokens = v;
    memmove(&st->tokens[i + 1], &st->tokens[i], (st->n_tokens - i) * sizeof(*st->tokens));
    st->tokens[i] = *tk;
    st->n_tokens++;
    return TS_OK;
}
