/*
 * ts_web_page: the thread page and fragment (tree as the mirror's, reply
 * links, the form with the reader's text kept and escaped, a reader's own
 * pending comment shown only to them, no inline script or style), keys in
 * URLs, the SSE frame and the Atom feed.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "ts_check_main.h"
#include "ts_err.h"
#include "ts_web_page.h"

static Threadsync__Comment mk(uint64_t id, uint64_t parent, Threadsync__Status st, const char *body)
{
    Threadsync__Comment c;
    threadsync__comment__init(&c);
    c.id = id;
    c.thread_id = 1;
    c.parent_id = parent;
    c.author_name = st == THREADSYNC__STATUS__VISIBLE ? "Ann" : "";
    c.body = (char *)(st == THREADSYNC__STATUS__VISIBLE ? body : "");
    c.created_at_ms = 1609459260000;
    c.status = st;
    c.version = 1;
    return c;
}

static Threadsync__Thread mk_thread(const char *key)
{
    Threadsync__Thread t;
    threadsync__thread__init(&t);
    t.id = 1;
    t.key = (char *)key;
    t.title = "T";
    t.url = "https://example.org/a";
    t.comment_count = 3;
    t.version = 7;
    return t;
}

static Threadsync__Comment own_c;
static const Threadsync__Comment *own_hook(void *arg, const Threadsync__Comment *c)
{
    return c->id == 6 ? &own_c : NULL;
}
static int mine_hook(void *arg, const Threadsync__Comment *c)
{
    return c->id == 2;
}

static char *render(const struct ts_web_page *p)
{
    struct ts_buf b = TS_BUF_INIT;
    ck_assert_int_eq(ts_web_page_html(&b, p), TS_OK);
    return b.p;
}

START_TEST(test_page)
{
    Threadsync__Thread t = mk_thread("site/2021/a b");
    Threadsync__Comment c[] = {
        mk(1, 0, THREADSYNC__STATUS__VISIBLE, "top"),
        mk(2, 1, THREADSYNC__STATUS__VISIBLE, "reply"),
        mk(3, 0, THREADSYNC__STATUS__DELETED, ""), /* with a reply: placeholder */
        mk(4, 3, THREADSYNC__STATUS__VISIBLE, "under deleted"),
        mk(5, 0, THREADSYNC__STATUS__DELETED, ""), /* a leaf: gone */
        mk(6, 1, THREADSYNC__STATUS__PENDING, ""), /* the reader's own */
        mk(7, 1, THREADSYNC__STATUS__PENDING, ""), /* someone else's */
    };
    const Threadsync__Comment *p[7];
    for (int i = 0; i < 7; i++)
        p[i] = &c[i];
    own_c = mk(6, 1, THREADSYNC__STATUS__VISIBLE, "my own <b>words</b>");
    own_c.author_name = "Me";
    own_c.status = THREADSYNC__STATUS__PENDING;
    struct ts_web_page pg = {.thread = &t,
                             .comments = p,
                             .n = 7,
                             .base = "/comments",
                             .nonce = "123.abc",
                             .csrf = "f00",
                             .seq = 42,
                             .parent = 4,
                             .name = "Bo\"b",
                             .email = "b@x",
                             .body = "</textarea><script>x</script>",
                             .error = "too fast & furious",
                             .own = own_hook,
                             .mine = mine_hook};
    char *h = render(&pg);
    ck_assert_ptr_nonnull(strstr(h, "<!DOCTYPE html>"));
    ck_assert_ptr_nonnull(
        strstr(h, "<h2 class=\"ts-count\"><span class=\"ts-n\">3</span> comments"));
    ck_assert_ptr_nonnull(strstr(h, "id=\"c3\"><p class=\"ts-placeholder\">[deleted]"));
    ck_assert_ptr_null(strstr(h, "id=\"c5\""));
    ck_assert_ptr_null(strstr(h, "id=\"c7\""));
    /* The reader's own pending comment, marked, text escaped. */
    ck_assert_ptr_nonnull(strstr(h, "id=\"c6\""));
    ck_assert_ptr_nonnull(strstr(h, "awaiting moderation"));
    ck_assert_ptr_nonnull(strstr(h, "my own &lt;b&gt;words&lt;/b&gt;"));
    /* Reply links, keys escaped whole; Edit/Delete only on the reader's. */
    ck_assert_ptr_nonnull(
        strstr(h, "href=\"/comments/t/site%2F2021%2Fa%20b?parent=1#reply\" data-parent=\"1\""));
    ck_assert_ptr_nonnull(strstr(h, "?edit=2#reply"));
    ck_assert_ptr_null(strstr(h, "?edit=1#reply"));
    ck_assert_ptr_nonnull(strstr(h, "action=\"/comments/t/site%2F2021%2Fa%20b/delete\""));
    /* The form: action, tokens, the kept text escaped, the error. */
    ck_assert_ptr_nonnull(strstr(h, "action=\"/comments/t/site%2F2021%2Fa%20b/post\""));
    ck_assert_ptr_nonnull(strstr(h, "name=\"nonce\" value=\"123.abc\""));
    ck_assert_ptr_nonnull(strstr(h, "name=\"csrf\" value=\"f00\""));
    ck_assert_ptr_nonnull(strstr(h, "name=\"parent\" value=\"4\""));
    ck_assert_ptr_nonnull(strstr(h, "value=\"Bo&quot;b\""));
    ck_assert_ptr_nonnull(strstr(h, "&lt;/textarea&gt;&lt;script&gt;x&lt;/script&gt;</textarea>"));
    ck_assert_ptr_nonnull(strstr(h, "role=\"alert\">too fast &amp; furious</p>"));
    ck_assert_ptr_nonnull(strstr(h, "name=\"website\"")); /* honeypot */
    /* The live feed's address and resume point; no inline script or style. */
    ck_assert_ptr_nonnull(
        strstr(h, "data-seq=\"42\" data-events=\"/comments/t/site%2F2021%2Fa%20b/events\""));
    ck_assert_ptr_nonnull(strstr(h, "<script src=\"/comments/static/threadsync.js\" defer>"));
    ck_assert_ptr_null(strstr(h, "<script>"));
    ck_assert_ptr_null(strstr(h, "<style"));
    ck_assert_ptr_null(strstr(h, " style="));
    free(h);

    /* Nobody else sees the pending comment. */
    pg.own = NULL;
    pg.mine = NULL;
    pg.embed = 1;
    pg.error = NULL;
    h = render(&pg);
    ck_assert_ptr_null(strstr(h, "id=\"c6\""));
    ck_assert_ptr_null(strstr(h, "awaiting moderation"));
    ck_assert_ptr_null(strstr(h, "<html"));
    ck_assert_ptr_null(strstr(h, "<head>"));
    ck_assert_ptr_null(strstr(h, "<h1"));
    ck_assert_ptr_nonnull(
        strstr(h, "<link rel=\"stylesheet\" href=\"/comments/static/threadsync.css\">"));
    ck_assert_ptr_nonnull(strstr(h, "role=\"alert\" hidden>"));
    free(h);
}
END_TEST

START_TEST(test_event_and_atom)
{
    Threadsync__Thread t = mk_thread("k\"<");
    Threadsync__Comment c =
        mk(9, 2, THREADSYNC__STATUS__VISIBLE, "line1\nline2 \xE2\x80\x9Cq\xE2\x80\x9D");
    struct ts_buf b = TS_BUF_INIT;
    ts_web_page_event(&b, 77, &t, &c);
    ck_assert_ptr_nonnull(strstr(b.p, "id: 77\nevent: comment\ndata: {\"key\":\"k\\\"\\u003c\""));
    ck_assert_ptr_nonnull(strstr(b.p, "\"body\":\"line1\\nline2 \xE2\x80\x9Cq\xE2\x80\x9D\""));
    ck_assert_ptr_nonnull(strstr(b.p, "\"status\":\"VISIBLE\""));
    /* One data line: a newline inside would split the event. */
    ck_assert_ptr_eq(strstr(b.p, "\n\n"), b.p + b.len - 2);
    ts_buf_free(&b);

    Threadsync__Comment d = mk(10, 0, THREADSYNC__STATUS__HIDDEN, "");
    ts_web_page_event(&b, 78, &t, &d);
    ck_assert_ptr_nonnull(strstr(b.p, "\"author_name\":\"\",\"body\":\"\""));
    ts_buf_free(&b);

    Threadsync__Comment cs[] = {mk(1, 0, THREADSYNC__STATUS__VISIBLE, "old <x>"),
                                mk(2, 0, THREADSYNC__STATUS__HIDDEN, ""),
                                mk(3, 0, THREADSYNC__STATUS__VISIBLE, "new")};
    cs[2].created_at_ms += 1000;
    const Threadsync__Comment *p[] = {&cs[0], &cs[1], &cs[2]};
    ck_assert_int_eq(ts_web_page_atom(&b, &t, p, 3, 50, "https://e/x.atom"), TS_OK);
    ck_assert_ptr_nonnull(strstr(b.p, "<feed xmlns=\"http://www.w3.org/2005/Atom\">"));
    ck_assert_ptr_nonnull(strstr(b.p, "<title>Comments on T</title>"));
    ck_assert_ptr_nonnull(strstr(b.p, "<updated>2021-01-01T00:01:01Z</updated>"));
    char *e3 = strstr(b.p, "urn:threadsync:comment:3"),
         *e1 = strstr(b.p, "urn:threadsync:comment:1");
    ck_assert_ptr_nonnull(e3);
    ck_assert_ptr_nonnull(e1);
    ck_assert(e3 < e1); /* newest first */
    ck_assert_ptr_null(strstr(b.p, "urn:threadsync:comment:2"));
    ck_assert_ptr_nonnull(strstr(b.p, "old &lt;x&gt;"));
    ck_assert_ptr_nonnull(strstr(b.p, "<link href=\"https://example.org/a#c3\"/>"));
    ts_buf_free(&b);
    ck_assert_int_eq(ts_web_page_atom(&b, &t, p, 3, 1, ""), TS_OK);
    ck_assert_ptr_null(strstr(b.p, "urn:threadsync:comment:1"));
    ts_buf_free(&b);
}
END_TEST

START_TEST(test_key_encoding)
{
    struct ts_buf b = TS_BUF_INIT;
    ts_web_page_key(&b, "a.json/embed~_-Z9 \xC3\xA9");
    ck_assert_str_eq(b.p, "a%2Ejson%2Fembed~_-Z9%20%C3%A9");
    ts_buf_free(&b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ts_web_page");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_page);
    tcase_add_test(tc, test_event_and_atom);
    tcase_add_test(tc, test_key_encoding);
    suite_add_tcase(s, tc);
    return ts_check_run(s);
}
