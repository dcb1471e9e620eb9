/*
 * ts_mirror_render: the comment tree (reply to a reply, a deleted parent
 * with its replies, hidden branches), escaping, Unicode passing through,
 * 1,000 and 100,000 levels of nesting without recursion, file names, and
 * atomic writes that leave no temporary files behind, one by one or in
 * batches (nothing replaced before commit, a failed commit halfway).
 */
#include <check.h>
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ts_buf.h"
#include "ts_check_main.h"
#include "ts_err.h"
#include "ts_mirror_render.h"
#include "ts_testnode.h"

static char tmpdir[64];

static void setup(void)
{
    strcpy(tmpdir, "/tmp/ts_mirror_render_test.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void)
{
    ts_test_rmtree(tmpdir);
}

static Threadsync__Thread mk_thread(const char *key)
{
    Threadsync__Thread t = THREADSYNC__THREAD__INIT;
    t.id = 1;
    t.key = (char *)key;
    t.title = "Caf\xC3\xA9 & \xE2\x80\x9C"
              "friends\xE2\x80\x9D";
    t.url = "https://example.org/a?x=1&y=2";
    t.created_at_ms = 1609459200000;
    t.version = 1;
    return t;
}

static Threadsync__Comment mk(uint64_t id, uint64_t parent, Threadsync__Status st, const char *body)
{
    Threadsync__Comment c = THREADSYNC__COMMENT__INIT;
    c.id = id;
    c.thread_id = 1;
    c.parent_id = parent;
    c.author_name = "Ann";
    c.body = (char *)body;
    c.created_at_ms = 1609459200000 + (int64_t)id * 60000;
    c.status = st;
    c.version = 1;
    return c;
}

/* a and b both found, a first. */
static void assert_before(const char *a, const char *b)
{
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert(a < b);
}

static size_t count(const char *hay, const char *needle)
{
    /* memmem, not strstr: ASan's strstr measures the whole haystack on each
     * call, which makes counting in a 100,000-level page quadratic. */
    size_t n = 0, l = strlen(needle), total = strlen(hay);
    const char *p = hay;
    while ((p = memmem(p, total - (size_t)(p - hay), needle, l))) {
        p += l;
        n++;
    }
    return n;
}

/* Depth (number of enclosing <li>) of the <li> with id="c<id>", or -1 when
 * absent; also checks every <li> is closed in order. */
static int li_depth(const char *html, uint64_t id)
{
    char want[32];
    snprintf(want, sizeof(want), "id=\"c%llu\"", (unsigned long long)id);
    int depth = 0, found = -1;
    for (const char *p = html; *p; p++) {
        if (strncmp(p, "<li ", 4) == 0 || strncmp(p, "<li>", 4) == 0) {
            const char *end = strchr(p, '>');
            ck_assert_ptr_nonnull(end);
            const char *idp = memmem(p, (size_t)(end - p), want, strlen(want));
            if (idp)
                found = depth;
            depth++;
        } else if (strncmp(p, "</li>", 5) == 0) {
            depth--;
            ck_assert_int_ge(depth, 0);
        }
    }
    ck_assert_int_eq(depth, 0);
    return found;
}

START_TEST(test_tree)
{
    Threadsync__Thread t = mk_thread("site/2021/tree");
    Threadsync__Comment c[] = {
        mk(1, 0, THREADSYNC__STATUS__VISIBLE, "top"),
        mk(2, 1, THREADSYNC__STATUS__VISIBLE, "reply"),
        mk(3, 2, THREADSYNC__STATUS__VISIBLE, "reply to reply"),
        mk(4, 0, THREADSYNC__STATUS__DELETED, ""),
        mk(5, 4, THREADSYNC__STATUS__VISIBLE, "under deleted"),
        mk(6, 5, THREADSYNC__STATUS__VISIBLE, "deeper under deleted"),
        mk(7, 0, THREADSYNC__STATUS__HIDDEN, "hidden leaf"),
        mk(8, 0, THREADSYNC__STATUS__PENDING, "pending parent"),
        mk(9, 8, THREADSYNC__STATUS__VISIBLE, "under pending"),
        mk(10, 0, THREADSYNC__STATUS__HIDDEN, "hidden"),
        mk(11, 10, THREADSYNC__STATUS__HIDDEN, "hidden under hidden"),
        mk(12, 1, THREADSYNC__STATUS__VISIBLE, "second reply to top"),
        mk(13, 999, THREADSYNC__STATUS__VISIBLE, "orphan"),
        mk(14, 0, THREADSYNC__STATUS__DELETED, ""),
        mk(15, 1, THREADSYNC__STATUS__DELETED, ""),
    };
    size_t n = sizeof(c) / sizeof(c[0]);
    /* Given in a shuffled order: the renderer sorts by id itself. */
    const Threadsync__Comment *p[sizeof(c) / sizeof(c[0])];
    for (size_t i = 0; i < n; i++)
        p[i] = &c[(i * 7) % n]; /* 7 is prime to n: a permutation */

    char *html;
    size_t len;
    ck_assert_int_eq(ts_mirror_render_html(&t, p, n, &html, &len), TS_OK);
    ck_assert_uint_eq(strlen(html), len);
    ck_assert_int_eq(li_depth(html, 1), 0);
    ck_assert_int_eq(li_depth(html, 2), 1);
    ck_assert_int_eq(li_depth(html, 3), 2);
    ck_assert_int_eq(li_depth(html, 12), 1);
    ck_assert_int_eq(li_depth(html, 4), 0);
    ck_assert_int_eq(li_depth(html, 5), 1);
    ck_assert_int_eq(li_depth(html, 6), 2);
    ck_assert_int_eq(li_depth(html, 7), -1);
    ck_assert_int_eq(li_depth(html, 8), 0);
    ck_assert_int_eq(li_depth(html, 9), 1);
    ck_assert_int_eq(li_depth(html, 10), -1);
    ck_assert_int_eq(li_depth(html, 11), -1);
    ck_assert_int_eq(li_depth(html, 13), 0);
    /* A deleted leaf is gone, at the top and as a reply. */
    ck_assert_int_eq(li_depth(html, 14), -1);
    ck_assert_int_eq(li_depth(html, 15), -1);
    /* Siblings in id order: 2 before 12, and 3 inside 2 before 12. */
    assert_before(strstr(html, "id=\"c3\""), strstr(html, "id=\"c12\""));
    ck_assert_uint_eq(count(html, "</li>"), 10);
    ck_assert_uint_eq(count(html, "[deleted]"), 1);
    ck_assert_uint_eq(count(html, "[removed]"), 1);
    ck_assert_ptr_null(strstr(html, "hidden"));
    ck_assert_ptr_null(strstr(html, "pending parent"));
    ck_assert_ptr_nonnull(strstr(html, "reply to reply"));
    /* Visible: 1,2,3,5,6,9,12,13. */
    ck_assert_ptr_nonnull(strstr(html, "<p class=\"ts-count\">8 comments</p>"));
    ck_assert_ptr_nonnull(strstr(html, "<time datetime=\"2021-01-01T00:01:00.000Z\">"
                                       "2021-01-01 00:01 UTC</time>"));
    ck_assert_ptr_nonnull(strstr(html, "<!DOCTYPE html>"));
    ck_assert_ptr_nonnull(strstr(html, "<meta charset=\"utf-8\">"));
    ck_assert_ptr_nonnull(strstr(html, "</html>\n"));
    ck_assert_ptr_null(strstr(html, "<script"));
    free(html);

    char *json;
    ck_assert_int_eq(ts_mirror_render_json(&t, p, n, &json, &len), TS_OK);
    ck_assert_uint_eq(count(json, "{\"id\":"), n + 1); /* comments + thread */
    ck_assert_ptr_nonnull(strstr(json, "\"count\":8}"));
    ck_assert_ptr_nonnull(strstr(json, "{\"id\":3,\"parent_id\":2,"));
    assert_before(strstr(json, "{\"id\":9,"), strstr(json, "{\"id\":10,"));
    assert_before(strstr(json, "{\"id\":2,"), strstr(json, "{\"id\":13,"));
    /* Tombstones listed, their text never. */
    ck_assert_ptr_nonnull(
        strstr(json, "{\"id\":7,\"parent_id\":0,\"author_name\":\"\",\"body\":\"\""));
    ck_assert_ptr_nonnull(strstr(json, "\"status\":\"PENDING\""));
    ck_assert_ptr_null(strstr(json, "hidden"));
    free(json);
}
END_TEST

START_TEST(test_escaping_and_unicode)
{
    Threadsync__Thread t = mk_thread("k");
    t.url = "javascript:alert(1)";
    const char *uni = "\xE2\x80\x9C"
                      "curly\xE2\x80\x9D \xE2\x80\x98q\xE2\x80\x99 \xF0\x9F\x98\x80 "
                      "\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x92\xBB e\xCC\x81 "
                      "\xD7\xA9\xD7\x9C\xD7\x95\xD7\x9D";
    Threadsync__Comment c[] = {
        mk(1, 0, THREADSYNC__STATUS__VISIBLE, "<script>alert(\"x\")</script> & 'q'"),
        mk(2, 1, THREADSYNC__STATUS__VISIBLE, uni),
        mk(3, 0, THREADSYNC__STATUS__VISIBLE, "line one\nline two\r\n\ttabbed"),
        mk(4, 0, THREADSYNC__STATUS__VISIBLE, "bad \xFF byte \xC3"),
    };
    c[1].author_name = "J\xC3\xBCrgen <b>";
    c[2].edited_at_ms = 1609459300000;
    const Threadsync__Comment *p[] = {&c[0], &c[1], &c[2], &c[3]};

    char *html;
    size_t len;
    ck_assert_int_eq(ts_mirror_render_html(&t, p, 4, &html, &len), TS_OK);
    ck_assert_ptr_null(strstr(html, "<script"));
    ck_assert_ptr_nonnull(
        strstr(html, "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;q&#39;"));
    ck_assert_ptr_nonnull(strstr(html, uni)); /* bytes pass through untouched */
    ck_assert_ptr_nonnull(strstr(html, "J\xC3\xBCrgen &lt;b&gt;"));
    ck_assert_ptr_nonnull(strstr(html, "line one\nline two\r\n\ttabbed"));
    ck_assert_ptr_nonnull(strstr(html, "white-space:pre-wrap"));
    ck_assert_ptr_nonnull(strstr(html, "bad \xEF\xBF\xBD byte \xEF\xBF\xBD<"));
    ck_assert_ptr_nonnull(strstr(html, "(edited <time datetime=\"2021-01-01T00:01:40.000Z\">"));
    /* Not an http(s) URL: the title is not a link. */
    ck_assert_ptr_null(strstr(html, "javascript:"));
    ck_assert_ptr_null(strstr(html, "<a "));
    ck_assert_ptr_nonnull(strstr(html, "<h1>Caf\xC3\xA9 &amp; \xE2\x80\x9C"
                                       "friends\xE2\x80\x9D</h1>"));
    free(html);

    t.url = "https://example.org/a?x=1&y=\"2\"";
    ck_assert_int_eq(ts_mirror_render_html(&t, p, 4, &html, &len), TS_OK);
    ck_assert_ptr_nonnull(
        strstr(html, "<a href=\"https://example.org/a?x=1&amp;y=&quot;2&quot;\">"));
    free(html);

    char *json;
    ck_assert_int_eq(ts_mirror_render_json(&t, p, 4, &json, &len), TS_OK);
    ck_assert_ptr_nonnull(strstr(json, "\"body\":\"\\u003cscript\\u003ealert(\\\"x\\\")"
                                       "\\u003c/script\\u003e \\u0026 'q'\""));
    ck_assert_ptr_nonnull(strstr(json, uni));
    ck_assert_ptr_nonnull(strstr(json, "line one\\nline two\\r\\n\\ttabbed"));
    ck_assert_ptr_nonnull(strstr(json, "bad \xEF\xBF\xBD byte \xEF\xBF\xBD\""));
    ck_assert_ptr_nonnull(strstr(json, "\"url\":\"https://example.org/a?x=1\\u0026y=\\\"2\\\"\""));
    ck_assert_ptr_null(strstr(json, "<"));
    free(json);
}
END_TEST

START_TEST(test_escaping_long_text)
{
    /* Long runs are checked 16 bytes at a time: every byte value, at every
     * place of a 40-byte text, escapes as it does alone (ASCII escapes and
     * a lone byte >= 0x80 depend on that byte only), in both formats. */
    for (int html = 0; html < 2; html++) {
        for (int v = 1; v < 256; v++) {
            char one[2] = {(char)v, '\0'};
            struct ts_buf alone = TS_BUF_INIT;
            ts_mirror_render_text(&alone, one, html);
            ck_assert(!alone.failed);
            for (size_t at = 0; at < 40; at++) {
                char text[41];
                memset(text, 'a', 40);
                text[40] = '\0';
                text[at] = (char)v;
                struct ts_buf got = TS_BUF_INIT, want = TS_BUF_INIT;
                ts_mirror_render_text(&got, text, html);
                ts_buf_add(&want, text, at);
                ts_buf_add(&want, alone.p, alone.len);
                ts_buf_add(&want, text + at + 1, 39 - at);
                ck_assert(!got.failed && !want.failed);
                ck_assert_msg(got.len == want.len && memcmp(got.p, want.p, got.len) == 0,
                              "byte 0x%02x at %zu (%s)", v, at, html ? "html" : "json");
                ts_buf_free(&got);
                ts_buf_free(&want);
            }
            ts_buf_free(&alone);
        }
    }
}
END_TEST

START_TEST(test_empty_and_singular)
{
    Threadsync__Thread t = mk_thread("k");
    t.title = "";
    char *html;
    size_t len;
    ck_assert_int_eq(ts_mirror_render_html(&t, NULL, 0, &html, &len), TS_OK);
    ck_assert_ptr_nonnull(strstr(html, "0 comments"));
    ck_assert_ptr_null(strstr(html, "<ol"));
    ck_assert_ptr_nonnull(strstr(html, ">k</a></h1>")); /* key stands in for a title */
    free(html);
    Threadsync__Comment c = mk(1, 0, THREADSYNC__STATUS__VISIBLE, "one");
    const Threadsync__Comment *p[] = {&c};
    ck_assert_int_eq(ts_mirror_render_html(&t, p, 1, &html, &len), TS_OK);
    ck_assert_ptr_nonnull(strstr(html, ">1 comment<"));
    free(html);
    char *json;
    ck_assert_int_eq(ts_mirror_render_json(&t, NULL, 0, &json, &len), TS_OK);
    ck_assert_ptr_nonnull(strstr(json, "\"comments\":[]"));
    ck_assert_ptr_nonnull(strstr(json, "\"count\":0}"));
    free(json);
}
END_TEST

/* A reply chain: comment i+1 replies to comment i. */
static const Threadsync__Comment **chain(size_t depth, Threadsync__Comment **store)
{
    Threadsync__Comment *c = calloc(depth, sizeof(*c));
    const Threadsync__Comment **p = calloc(depth, sizeof(*p));
    ck_assert(c && p);
    for (size_t i = 0; i < depth; i++) {
        c[i] = mk(i + 1, i, THREADSYNC__STATUS__VISIBLE, "deep");
        p[i] = &c[i];
    }
    c[depth / 2].status = THREADSYNC__STATUS__DELETED; /* a hole in the middle */
    *store = c;
    return p;
}

START_TEST(test_deep_nesting_file)
{
    enum { DEPTH = 1000 };
    Threadsync__Thread t = mk_thread("site/deep");
    Threadsync__Comment *store;
    const Threadsync__Comment **p = chain(DEPTH, &store);
    ck_assert_int_eq(ts_mirror_render_thread(tmpdir, &t, p, DEPTH), TS_OK);

    char path[256];
    snprintf(path, sizeof(path), "%s/threads/site%%2Fdeep.html", tmpdir);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    rewind(f);
    char *html = malloc((size_t)size + 1);
    ck_assert_uint_eq(fread(html, 1, (size_t)size, f), (size_t)size);
    html[size] = '\0';
    fclose(f);
    ck_assert_uint_eq(count(html, "</li>"), DEPTH);
    ck_assert_uint_eq(count(html, "<li "), DEPTH);
    ck_assert_uint_eq(count(html, "</ol>"), DEPTH); /* 999 reply lists + the top */
    ck_assert_int_eq(li_depth(html, DEPTH), DEPTH - 1);
    ck_assert_uint_eq(count(html, "[deleted]"), 1);
    char want[32];
    snprintf(want, sizeof(want), ">%d comments<", DEPTH - 1);
    ck_assert_ptr_nonnull(strstr(html, want));
    free(html);
    free(p);
    free(store);
}
END_TEST

struct deep_job {
    size_t depth;
    int err;
    size_t closes;
};

static void *deep_thread(void *arg)
{
    struct deep_job *j = arg;
    Threadsync__Thread t = mk_thread("k");
    Threadsync__Comment *store;
    const Threadsync__Comment **p = chain(j->depth, &store);
    char *html;
    size_t len;
    j->err = ts_mirror_render_html(&t, p, j->depth, &html, &len);
    if (j->err == TS_OK) {
        j->closes = count(html, "</li>");
        free(html);
    }
    free(p);
    free(store);
    return NULL;
}

START_TEST(test_deep_nesting_small_stack)
{
    /* 100,000 levels on a 256 KiB stack: any recursion per level would
     * overflow it many times over. */
    struct deep_job j = {.depth = 100000};
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    ck_assert_int_eq(pthread_attr_setstacksize(&attr, (size_t)256 * 1024), 0);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, &attr, deep_thread, &j), 0);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    pthread_attr_destroy(&attr);
    ck_assert_int_eq(j.err, TS_OK);
    ck_assert_uint_eq(j.closes, j.depth);
}
END_TEST

START_TEST(test_file_names)
{
    char out[TS_MIRROR_NAME_SIZE];
#define NAME(key, want)                                                                            \
    do {                                                                                           \
        ck_assert_int_eq(ts_mirror_render_file_name(key, out), TS_OK);                             \
        ck_assert_str_eq(out, want);                                                               \
    } while (0)
    NAME("site/2021/a b", "site%2F2021%2Fa%20b");
    NAME("plain-key_1.x", "plain-key_1.x");
    NAME(".htaccess", "%2Ehtaccess");
    NAME("..", "%2E.");
    NAME("100%", "100%25");
    NAME("a~b", "a%7Eb");
    NAME("caf\xC3\xA9", "caf%C3%A9");
    NAME("a\\b:c*?\"<>|", "a%5Cb%3Ac%2A%3F%22%3C%3E%7C");
#undef NAME
    ck_assert_int_eq(ts_mirror_render_file_name("", out), TS_E_INVALID_ARGUMENT);

    /* Distinct keys, distinct names, including keys that look encoded. */
    const char *keys[] = {"a/b", "a%2Fb", "a%252Fb", "A/b", "a/b/", "a b", "a+b"};
    char names[7][TS_MIRROR_NAME_SIZE];
    for (int i = 0; i < 7; i++) {
        ck_assert_int_eq(ts_mirror_render_file_name(keys[i], names[i]), TS_OK);
        for (int k = 0; k < i; k++)
            ck_assert_str_ne(names[i], names[k]);
    }

    /* Exactly 150 encoded bytes: kept whole. 151: hashed. */
    char key[300];
    memset(key, 'x', 150);
    key[150] = '\0';
    ck_assert_int_eq(ts_mirror_render_file_name(key, out), TS_OK);
    ck_assert_str_eq(out, key);
    key[150] = 'y';
    key[151] = '\0';
    ck_assert_int_eq(ts_mirror_render_file_name(key, out), TS_OK);
    ck_assert_uint_eq(strlen(out), 150 + 1 + 64);
    ck_assert_int_eq(out[150], '~');
    ck_assert_int_eq(strncmp(out, key, 150), 0);

    /* The longest key, all escapes: cut on a %XX boundary, under NAME_MAX. */
    memset(key, '/', 256);
    key[256] = '\0';
    ck_assert_int_eq(ts_mirror_render_file_name(key, out), TS_OK);
    ck_assert_uint_eq(strlen(out), 150 + 1 + 64);
    ck_assert_int_eq(strncmp(out, "%2F%2F", 6), 0);
    ck_assert_int_eq(out[147], '%');
    ck_assert_int_eq(out[150], '~');
    ck_assert_uint_lt(strlen(out) + strlen(".html"), 256);
    /* Two long keys with the same 150-byte prefix differ in the hash. */
    char other[TS_MIRROR_NAME_SIZE];
    key[255] = 'z';
    ck_assert_int_eq(ts_mirror_render_file_name(key, other), TS_OK);
    ck_assert_str_ne(out, other);
    ck_assert_int_eq(strncmp(out, other, 151), 0);
    for (const char *q = other; *q; q++)
        ck_assert(*q != '/');
}
END_TEST

static int count_entries(const char *dir, const char *needle)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, needle))
            n++;
    closedir(d);
    return n;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    char *buf = calloc(1, 65536);
    size_t n = fread(buf, 1, 65535, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

START_TEST(test_files_atomic)
{
    char mdir[128], tdir[160], path[512];
    snprintf(mdir, sizeof(mdir), "%s/mirror", tmpdir); /* created by render */
    snprintf(tdir, sizeof(tdir), "%s/threads", mdir);
    Threadsync__Thread t = mk_thread("site/2021/\xE2\x80\x9Cq\xE2\x80\x9D");
    Threadsync__Comment c = mk(1, 0, THREADSYNC__STATUS__VISIBLE, "first version");
    const Threadsync__Comment *p[] = {&c};
    ck_assert_int_eq(ts_mirror_render_thread(mdir, &t, p, 1), TS_OK);

    const char *stem = "site%2F2021%2F%E2%80%9Cq%E2%80%9D";
    snprintf(path, sizeof(path), "%s/%s.html", tdir, stem);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0644);
    char *html = slurp(path);
    ck_assert_ptr_nonnull(strstr(html, "first version"));
    free(html);
    snprintf(path, sizeof(path), "%s/%s.json", tdir, stem);
    char *json = slurp(path);
    ck_assert_ptr_nonnull(strstr(json, "first version"));
    free(json);

    /* Rewrite: new content replaces the old; still exactly two files. */
    c.body = "second version";
    c.version = 2;
    ck_assert_int_eq(ts_mirror_render_thread(mdir, &t, p, 1), TS_OK);
    json = slurp(path);
    ck_assert_ptr_nonnull(strstr(json, "second version"));
    ck_assert_ptr_null(strstr(json, "first version"));
    free(json);
    ck_assert_int_eq(count_entries(tdir, ".tmp"), 0);
    ck_assert_int_eq(count_entries(tdir, stem), 2);

    /* A failing write (the target name is a directory) reports TS_E_IO and
     * leaves no temporary behind. */
    Threadsync__Thread t2 = mk_thread("blocked");
    snprintf(path, sizeof(path), "%s/blocked.json", tdir);
    ck_assert_int_eq(mkdir(path, 0755), 0);
    ck_assert_int_eq(ts_mirror_render_thread(mdir, &t2, p, 1), TS_E_IO);
    ck_assert_int_eq(count_entries(tdir, ".tmp"), 0);
    /* A mirror dir that cannot exist: TS_E_IO. */
    snprintf(path, sizeof(path), "%s/%s.html/x", tdir, stem);
    ck_assert_int_eq(ts_mirror_render_thread(path, &t, p, 1), TS_E_IO);
}
END_TEST

START_TEST(test_batch_files)
{
    char mdir[128], tdir[160], path[512];
    snprintf(mdir, sizeof(mdir), "%s/mirror", tmpdir); /* created by batch_new */
    snprintf(tdir, sizeof(tdir), "%s/threads", mdir);
    struct ts_mirror_render_batch *b;
    ck_assert_int_eq(ts_mirror_render_batch_new(mdir, 1, &b), TS_OK);
    ck_assert_int_eq(ts_mirror_render_batch_commit(b), TS_OK); /* empty: nothing */

    /* 40 threads in one batch: the same bytes as one at a time. */
    char keys[40][32];
    Threadsync__Thread ts[40];
    Threadsync__Comment c = mk(1, 0, THREADSYNC__STATUS__VISIBLE, "batched words");
    const Threadsync__Comment *p[] = {&c};
    for (int i = 0; i < 40; i++) {
        snprintf(keys[i], sizeof(keys[i]), "site/b%02d", i);
        ts[i] = mk_thread(keys[i]);
        ck_assert_int_eq(ts_mirror_render_batch_add(b, &ts[i], p, 1), TS_OK);
    }
    /* Nothing replaces a file before commit: only temporaries so far. */
    ck_assert_int_eq(count_entries(tdir, ".tmp"), 80);
    ck_assert_int_eq(count_entries(tdir, ".html.tmp"), 40);
    snprintf(path, sizeof(path), "%s/site%%2Fb07.html", tdir);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), -1);
    ck_assert_int_eq(ts_mirror_render_batch_commit(b), TS_OK);
    ck_assert_int_eq(count_entries(tdir, ".tmp"), 0);
    ck_assert_int_eq(count_entries(tdir, "site%2Fb"), 80);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0644);
    char ref[128];
    snprintf(ref, sizeof(ref), "%s/ref", tmpdir);
    for (int i = 0; i < 40; i += 13) {
        ck_assert_int_eq(ts_mirror_render_thread(ref, &ts[i], p, 1), TS_OK);
        for (int k = 0; k < 2; k++) {
            const char *ext = k ? "json" : "html";
            char a[512], r[512];
            snprintf(a, sizeof(a), "%s/site%%2Fb%02d.%s", tdir, i, ext);
            snprintf(r, sizeof(r), "%s/threads/site%%2Fb%02d.%s", ref, i, ext);
            char *x = slurp(a), *y = slurp(r);
            ck_assert_ptr_nonnull(strstr(x, "batched words"));
            ck_assert_str_eq(x, y);
            free(x);
            free(y);
        }
    }

    /* A batch freed without commit leaves the old files and no temporary. */
    c.body = "never committed";
    c.version = 2;
    ck_assert_int_eq(ts_mirror_render_batch_add(b, &ts[7], p, 1), TS_OK);
    ck_assert_int_eq(count_entries(tdir, ".tmp"), 2);
    ts_mirror_render_batch_free(b);
    ck_assert_int_eq(count_entries(tdir, ".tmp"), 0);
    char *html = slurp(path);
    ck_assert_ptr_nonnull(strstr(html, "batched words"));
    ck_assert_ptr_null(strstr(html, "never committed"));
    free(html);

    /* A rename that fails (the target is a directory): TS_E_IO, the files
     * before it are replaced, the rest keep their content, no temporary
     * stays, and the batch is empty and usable again. */
    ck_assert_int_eq(ts_mirror_render_batch_new(mdir, 1, &b), TS_OK);
    Threadsync__Thread blocked = mk_thread("blocked");
    snprintf(path, sizeof(path), "%s/blocked.json", tdir);
    ck_assert_int_eq(mkdir(path, 0755), 0);
    c.body = "third words";
    c.version = 3;
    ck_assert_int_eq(ts_mirror_render_batch_add(b, &ts[1], p, 1), TS_OK);
    ck_assert_int_eq(ts_mirror_render_batch_add(b, &blocked, p, 1), TS_OK);
    ck_assert_int_eq(ts_mirror_render_batch_add(b, &ts[2], p, 1), TS_OK);
    ck_assert_int_eq(ts_mirror_render_batch_commit(b), TS_E_IO);
    ck_assert_int_eq(count_entries(tdir, ".tmp"), 0);
    snprintf(path, sizeof(path), "%s/site%%2Fb01.json", tdir);
    char *json = slurp(path);
    ck_assert_ptr_nonnull(strstr(json, "third words"));
    free(json);
    snprintf(path, sizeof(path), "%s/site%%2Fb02.json", tdir);
    json = slurp(path);
    ck_assert_ptr_nonnull(strstr(json, "batched words"));
    free(json);
    ck_assert_int_eq(ts_mirror_render_batch_add(b, &ts[2], p, 1), TS_OK);
    ck_assert_int_eq(ts_mirror_render_batch_commit(b), TS_OK);
    json = slurp(path);
    ck_assert_ptr_nonnull(strstr(json, "third words"));
    free(json);
    ts_mirror_render_batch_free(b);
    ts_mirror_render_batch_free(NULL);
}
END_TEST

START_TEST(test_batch_unsynced)
{
    /* Not durable: each file is in place, whole, as soon as add returns
     * (renamed over the old one, no temporary left), with the same bytes
     * as a durable write; commit has nothing left to do, and
     * ts_mirror_render_sync makes them all durable at once. */
    char mdir[128], tdir[160], path[512], ref[128];
    snprintf(mdir, sizeof(mdir), "%s/mirror", tmpdir);
    snprintf(tdir, sizeof(tdir), "%s/threads", mdir);
    snprintf(ref, sizeof(ref), "%s/ref", tmpdir);
    struct ts_mirror_render_batch *b;
    ck_assert_int_eq(ts_mirror_render_batch_new(mdir, 0, &b), TS_OK);
    Threadsync__Comment c = mk(1, 0, THREADSYNC__STATUS__VISIBLE, "quick words");
    const Threadsync__Comment *p[] = {&c};
    Threadsync__Thread t = mk_thread("site/quick");
    for (int round = 0; round < 2; round++) {
        if (round == 1) {
            c.body = "replaced words";
            c.version = 2;
        }
        ck_assert_int_eq(ts_mirror_render_batch_add(b, &t, p, 1), TS_OK);
        ck_assert_int_eq(count_entries(tdir, ".tmp"), 0);
        ck_assert_int_eq(count_entries(tdir, "site%2Fquick"), 2);
        ck_assert_int_eq(ts_mirror_render_thread(ref, &t, p, 1), TS_OK);
        for (int k = 0; k < 2; k++) {
            const char *ext = k ? "json" : "html";
            char r[512];
            snprintf(path, sizeof(path), "%s/site%%2Fquick.%s", tdir, ext);
            snprintf(r, sizeof(r), "%s/threads/site%%2Fquick.%s", ref, ext);
            char *x = slurp(path), *y = slurp(r);
            ck_assert_ptr_nonnull(strstr(x, c.body));
            ck_assert_str_eq(x, y);
            free(x);
            free(y);
            struct stat st;
            ck_assert_int_eq(stat(path, &st), 0);
            ck_assert_int_eq(st.st_mode & 0777, 0644);
        }
    }
    ck_assert_int_eq(ts_mirror_render_batch_commit(b), TS_OK);
    ts_mirror_render_batch_free(b); /* nothing to remove */
    ck_assert_int_eq(count_entries(tdir, "site%2Fquick"), 2);
    ck_assert_int_eq(ts_mirror_render_sync(mdir), TS_OK);
    snprintf(path, sizeof(path), "%s/none", tmpdir);
    ck_assert_int_eq(ts_mirror_render_sync(path), TS_E_IO);
}
END_TEST

/* The inode number of the one entry of dir whose name contains needle. */
static ino_t entry_ino(const char *dir, const char *needle)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    ino_t ino = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strstr(e->d_name, needle)) {
            ck_assert_uint_eq(ino, 0);
            ino = e->d_ino;
        }
    closedir(d);
    ck_assert_uint_ne(ino, 0);
    return ino;
}

START_TEST(test_prepared_files)
{
    /* Temporaries created ahead (once per key) are the files a batch then
     * writes: same inodes, 0644, the same bytes as without; the ones no
     * batch took go with the prep. */
    char mdir[128], tdir[160], path[512], ref[128];
    snprintf(mdir, sizeof(mdir), "%s/mirror", tmpdir);
    snprintf(tdir, sizeof(tdir), "%s/threads", mdir);
    snprintf(ref, sizeof(ref), "%s/ref", tmpdir);
    struct ts_mirror_render_prep *prep;
    ck_assert_int_eq(ts_mirror_render_prep_new(mdir, &prep), TS_OK);
    for (int i = 0; i < 100; i++) { /* grows the table past its first size */
        char key[32];
        snprintf(key, sizeof(key), "site/p%d", i);
        ck_assert_int_eq(ts_mirror_render_prep_add(prep, key), TS_OK);
    }
    ck_assert_int_eq(ts_mirror_render_prep_add(prep, "site/p1"), TS_OK); /* again: nothing */
    ck_assert_int_eq(count_entries(tdir, ".tmp."), 200);
    ino_t json_ino = entry_ino(tdir, "site%2Fp1.json.tmp.");
    ino_t html_ino = entry_ino(tdir, "site%2Fp1.html.tmp.");

    for (int durable = 0; durable < 2; durable++) {
        struct ts_mirror_render_batch *b;
        ck_assert_int_eq(ts_mirror_render_batch_new(mdir, durable, &b), TS_OK);
        ts_mirror_render_batch_set_prep(b, prep);
        Threadsync__Comment c = mk(1, 0, THREADSYNC__STATUS__VISIBLE, "prepared words");
        const Threadsync__Comment *p[] = {&c};
        Threadsync__Thread t = mk_thread(durable ? "site/p2" : "site/p1");
        ck_assert_int_eq(ts_mirror_render_batch_add(b, &t, p, 1), TS_OK);
        ck_assert_int_eq(ts_mirror_render_batch_commit(b), TS_OK);
        ts_mirror_render_batch_free(b);
        ck_assert_int_eq(ts_mirror_render_thread(ref, &t, p, 1), TS_OK);
        for (int k = 0; k < 2; k++) {
            const char *ext = k ? "json" : "html";
            char r[512];
            snprintf(path, sizeof(path), "%s/site%%2Fp%d.%s", tdir, 1 + durable, ext);
            snprintf(r, sizeof(r), "%s/threads/site%%2Fp%d.%s", ref, 1 + durable, ext);
            char *x = slurp(path), *y = slurp(r);
            ck_assert_str_eq(x, y);
            free(x);
            free(y);
            struct stat st;
            ck_assert_int_eq(stat(path, &st), 0);
            ck_assert_int_eq(st.st_mode & 0777, 0644);
            if (!durable)
                ck_assert_uint_eq(st.st_ino, k ? json_ino : html_ino);
        }
    }
    ck_assert_int_eq(count_entries(tdir, ".tmp."), 196);
    ts_mirror_render_prep_free(prep);
    ck_assert_int_eq(count_entries(tdir, ".tmp."), 0);
    ck_assert_int_eq(count_entries(tdir, "site%2Fp"), 4);
    ts_mirror_render_prep_free(NULL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ts_mirror_render");
    TCase *tc = tcase_create("render");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_tree);
    tcase_add_test(tc, test_escaping_and_unicode);
    tcase_add_test(tc, test_escaping_long_text);
    tcase_add_test(tc, test_empty_and_singular);
    tcase_add_test(tc, test_deep_nesting_file);
    tcase_add_test(tc, test_deep_nesting_small_stack);
    tcase_add_test(tc, test_file_names);
    tcase_add_test(tc, test_files_atomic);
    tcase_add_test(tc, test_batch_files);
    tcase_add_test(tc, test_batch_unsynced);
    tcase_add_test(tc, test_prepared_files);
    suite_add_tcase(s, tc);
    return ts_check_run(s);
}
