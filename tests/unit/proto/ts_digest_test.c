/*
 * ts_digest: the byte layout documented in ts_digest.h (rebuilt here by hand
 * and hashed independently), sensitivity to every public field, blindness to
 * what readers never see, and the id-order rule.
 */
#include <check.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ts_check_main.h"
#include "ts_digest.h"
#include "ts_err.h"

static Threadsync__Thread th;
static Threadsync__Comment cm[2];
static const Threadsync__Comment *cp[2];

static void fixture(void)
{
    threadsync__thread__init(&th);
    th.id = 1;
    th.key = "site/k\xE2\x80\x9C";
    th.title = "T";
    th.url = "https://x";
    th.created_at_ms = -5; /* signed values go in as two's complement */
    th.locked = 1;
    th.comment_count = 1;
    th.version = 4;
    for (int i = 0; i < 2; i++) {
        threadsync__comment__init(&cm[i]);
        cm[i].thread_id = 1;
        cm[i].author_name = "Ann";
        cm[i].author_email = "ann@example.org";
        cm[i].created_at_ms = 1000 + i;
        cp[i] = &cm[i];
    }
    cm[0].id = 2;
    cm[0].body = "hi\nthere";
    cm[0].status = THREADSYNC__STATUS__VISIBLE;
    cm[0].version = 1;
    cm[1].id = 3;
    cm[1].parent_id = 2;
    cm[1].body = "secret";
    cm[1].status = THREADSYNC__STATUS__HIDDEN;
    cm[1].edited_at_ms = 77;
    cm[1].version = 2;
}

struct bytes {
    unsigned char b[1024];
    size_t n;
};

static void u64(struct bytes *o, uint64_t v)
{
    for (int i = 7; i >= 0; i--)
        o->b[o->n++] = (unsigned char)(v >> (8 * i));
}

static void str(struct bytes *o, const char *s)
{
    u64(o, strlen(s));
    memcpy(o->b + o->n, s, strlen(s));
    o->n += strlen(s);
}

static void raw(struct bytes *o, const char *s)
{
    memcpy(o->b + o->n, s, strlen(s));
    o->n += strlen(s);
}

START_TEST(test_layout)
{
    fixture();
    struct bytes o = {.n = 0};
    raw(&o, "TSDIGEST1");
    raw(&o, "T");
    u64(&o, 1);
    str(&o, th.key);
    str(&o, "T");
    str(&o, "https://x");
    u64(&o, (uint64_t)(int64_t)-5);
    u64(&o, 1);
    u64(&o, 1);
    u64(&o, 4);
    raw(&o, "C");
    u64(&o, 2);
    u64(&o, 1);
    u64(&o, 0);
    str(&o, "VISIBLE");
    str(&o, "Ann");
    str(&o, "hi\nthere");
    u64(&o, 1000);
    u64(&o, 0);
    u64(&o, 1);
    raw(&o, "C");
    u64(&o, 3);
    u64(&o, 1);
    u64(&o, 2);
    str(&o, "HIDDEN");
    str(&o, ""); /* not VISIBLE: no author, no body */
    str(&o, "");
    u64(&o, 1001);
    u64(&o, 77);
    u64(&o, 2);
    raw(&o, "E");
    u64(&o, 2);
    unsigned char md[32];
    unsigned int mdlen;
    ck_assert_int_eq(EVP_Digest(o.b, o.n, md, &mdlen, EVP_sha256(), NULL), 1);
    char want[65];
    for (int i = 0; i < 32; i++)
        snprintf(want + (size_t)2 * i, 3, "%02x", md[i]);

    char got[65];
    ck_assert_int_eq(ts_digest_thread(&th, cp, 2, got), TS_OK);
    ck_assert_str_eq(got, want);

    /* The streaming form gives the same. */
    struct ts_digest *d;
    ck_assert_int_eq(ts_digest_begin(&d, &th), TS_OK);
    ck_assert_int_eq(ts_digest_add_comment(d, &cm[0]), TS_OK);
    ck_assert_int_eq(ts_digest_add_comment(d, &cm[1]), TS_OK);
    ck_assert_int_eq(ts_digest_end(d, got), TS_OK);
    ck_assert_str_eq(got, want);
}
END_TEST

static void digest(char out[65])
{
    ck_assert_int_eq(ts_digest_thread(&th, cp, 2, out), TS_OK);
}

START_TEST(test_sensitivity)
{
    fixture();
    char base[65], d[65];
    digest(base);

    /* Not public: e-mail, and the text of a non-visible comment. */
    cm[0].author_email = "other@example.org";
    cm[1].body = "another secret";
    cm[1].author_name = "Mallory";
    digest(d);
    ck_assert_str_eq(d, base);

    /* Public: each of these changes the digest. */
#define CHANGES(stmt)                                                                              \
    do {                                                                                           \
        fixture();                                                                                 \
        stmt;                                                                                      \
        digest(d);                                                                                 \
        ck_assert_str_ne(d, base);                                                                 \
    } while (0)
    CHANGES(th.id = 9);
    CHANGES(th.key = "site/k");
    CHANGES(th.title = "T2");
    CHANGES(th.url = "https://y");
    CHANGES(th.created_at_ms = 5);
    CHANGES(th.locked = 0);
    CHANGES(th.comment_count = 2);
    CHANGES(th.version = 5);
    CHANGES(cm[0].parent_id = 1);
    CHANGES(cm[0].author_name = "Anne");
    CHANGES(cm[0].body = "hi there");
    CHANGES(cm[0].created_at_ms = 1);
    CHANGES(cm[0].edited_at_ms = 1);
    CHANGES(cm[0].version = 2);
    CHANGES(cm[1].status = THREADSYNC__STATUS__DELETED);
    CHANGES(cm[1].status = (Threadsync__Status)9);
    CHANGES(cm[1].thread_id = 2);
    /* Moving bytes between adjacent strings is caught by the lengths. */
    CHANGES(th.title = "Th"; th.url = "ttps://x");
#undef CHANGES

    fixture();
    ck_assert_int_eq(ts_digest_thread(&th, cp, 1, d), TS_OK);
    ck_assert_str_ne(d, base);
}
END_TEST

START_TEST(test_order_enforced)
{
    fixture();
    const Threadsync__Comment *rev[2] = {&cm[1], &cm[0]};
    char d[65] = "x";
    ck_assert_int_eq(ts_digest_thread(&th, rev, 2, d), TS_E_INVALID_ARGUMENT);
    ck_assert_str_eq(d, "");
    const Threadsync__Comment *dup[2] = {&cm[0], &cm[0]};
    ck_assert_int_eq(ts_digest_thread(&th, dup, 2, d), TS_E_INVALID_ARGUMENT);
    ck_assert_str_eq(ts_digest_status_name(THREADSYNC__STATUS__PENDING), "PENDING");
    ck_assert_ptr_null(ts_digest_status_name(5));
    ck_assert_ptr_null(ts_digest_status_name(-1));
    struct ts_digest *dg;
    ck_assert_int_eq(ts_digest_begin(&dg, &th), TS_OK);
    ts_digest_abort(dg); /* freed without a result: ASan would report a leak */
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ts_digest");
    TCase *tc = tcase_create("digest");
    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, test_layout);
    tcase_add_test(tc, test_sensitivity);
    tcase_add_test(tc, test_order_enforced);
    suite_add_tcase(s, tc);
    return ts_check_run(s);
}
