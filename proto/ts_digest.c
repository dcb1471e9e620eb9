/*
 * ts_digest: canonical SHA-256 of a thread's public content. The byte layout
 * is specified in ts_digest.h and is a contract with every other party that
 * computes it (server, mirrors, clients in other languages): change it only
 * together with the "TSDIGEST" version tag.
 */
#include "ts_digest.h"

#include "ts_err.h"
#include "ts_hex.h"

#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ts_digest {
    EVP_MD_CTX *md;
    uint64_t n_comments;
    uint64_t last_id;
    int err; /* first error; once set, every later call fails with it */
};

static const char *const status_names[] = {"UNSPECIFIED", "VISIBLE", "PENDING", "HIDDEN",
                                           "DELETED"};

const char *ts_digest_status_name(int status)
{
    if (status < 0 || (size_t)status >= sizeof(status_names) / sizeof(status_names[0]))
        return NULL;
    return status_names[status];
}

static void put(struct ts_digest *d, const void *p, size_t n)
{
    if (d->err == TS_OK && EVP_DigestUpdate(d->md, p, n) != 1)
        d->err = TS_E_INTERNAL;
}

static void put_u64(struct ts_digest *d, uint64_t v)
{
    unsigned char b[8];
    for (int i = 7; i >= 0; i--) {
        b[i] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
    put(d, b, sizeof(b));
}

static void put_str(struct ts_digest *d, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    put_u64(d, (uint64_t)n);
    if (n)
        put(d, s, n);
}

int ts_digest_begin(struct ts_digest **out, const Threadsync__Thread *t)
{
    *out = NULL;
    struct ts_digest *d = calloc(1, sizeof(*d));
    if (!d)
        return TS_E_NOMEM;
    d->md = EVP_MD_CTX_new();
    if (!d->md) {
        free(d);
        return TS_E_NOMEM;
    }
    if (EVP_DigestInit_ex(d->md, EVP_sha256(), NULL) != 1) {
        ts_digest_abort(d);
        return TS_E_INTERNAL;
    }
    put(d, "TSDIGEST1", 9);
    put(d, "T", 1);
    put_u64(d, t->id);
    put_str(d, t->key);
    put_str(d, t->title);
    put_str(d, t->url);
    put_u64(d, (uint64_t)t->created_at_ms);
    put_u64(d, t->locked ? 1 : 0);
    put_u64(d, t->comment_count);
    put_u64(d, t->version);
    if (d->err != TS_OK) {
        int err = d->err;
        ts_digest_abort(d);
        return err;
    }
    *out = d;
    return TS_OK;
}

int ts_digest_add_comment(struct ts_digest *d, const Threadsync__Comment *c)
{
    if (d->err != TS_OK)
        return d->err;
    if (d->n_comments > 0 && c->id <= d->last_id) {
        d->err = TS_E_INVALID_ARGUMENT;
        return d->err;
    }
    d->last_id = c->id;
    d->n_comments++;

    int visible = c->status == THREADSYNC__STATUS__VISIBLE;
    const char *name = ts_digest_status_name((int)c->status);
    char num[16];
    if (!name) {
        snprintf(num, sizeof(num), "%d", (int)c->status);
        name = num;
    }
    put(d, "C", 1);
    put_u64(d, c->id);
    put_u64(d, c->thread_id);
    put_u64(d, c->parent_id);
    put_str(d, name);
    put_str(d, visible ? c->author_name : "");
    put_str(d, visible ? c->body : "");
    put_u64(d, (uint64_t)c->created_at_ms);
    put_u64(d, (uint64_t)c->edited_at_ms);
    put_u64(d, c->version);
    return d->err;
}

int ts_digest_end(struct ts_digest *d, char out[TS_DIGEST_HEX_LEN + 1])
{
    out[0] = '\0';
    put(d, "E", 1);
    put_u64(d, d->n_comments);
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (d->err == TS_OK && (EVP_DigestFinal_ex(d->md, md, &mdlen) != 1 || mdlen != sizeof(md)))
        d->err = TS_E_INTERNAL;
    int err = d->err;
    if (err == TS_OK) {
        ts_hex_encode(md, sizeof(md), out);
    }
    ts_digest_abort(d);
    return err;
}

void ts_digest_abort(struct ts_digest *d)
{
    if (!d)
        return;
    EVP_MD_CTX_free(d->md);
    free(d);
}

int ts_digest_thread(const Threadsync__Thread *t, const Threadsync__Comment *const *comments,
                     size_t n, char out[TS_DIGEST_HEX_LEN + 1])
{
    out[0] = '\0';
    struct ts_digest *d;
    int err = ts_digest_begin(&d, t);
    if (err != TS_OK)
        return err;
    for (size_t i = 0; i < n; i++)
        ts_digest_add_comment(d, comments[i]); /* an error sticks in d; end reports it */
    return ts_digest_end(d, out);
}
