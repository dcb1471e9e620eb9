/*
 * The importer's parsers and text helpers (client/cli/ts_import_*.c) on
 * their own: the hand-written WordPress and Disqus fixtures read into
 * records (fields, statuses, the removed-comment flag, what is skipped),
 * JSON Lines (escapes, surrogate pairs, errors with line and column),
 * malformed and non-UTF-8 XML with line and column, and the text helpers
 * (HTML to text, dates, URL paths, clipping at code point boundaries).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "threadsync.pb-c.h"
#include "ts_check_main.h"
#include "ts_err.h"
#include "ts_import_disqus.h"
#include "ts_import_jsonl.h"
#include "ts_import_text.h"
#include "ts_import_wxr.h"

#define MAXR 64

struct rec {
    char id[64], parent[64], key[300], name[128], email[128], body[512];
    int64_t when;
    int status, keep;
    uint64_t xid, version;
};

struct sink {
    struct rec c[MAXR];
    size_t n;
    char keys[8][300], titles[8][300];
    size_t n_threads;
    char skips[512];
};

static int on_thread(void *arg, const struct ts_import_thread_rec *t)
{
    struct sink *s = arg;
    ck_assert_uint_lt(s->n_threads, 8);
    snprintf(s->keys[s->n_threads], 300, "%s", t->key);
    snprintf(s->titles[s->n_threads], 300, "%s", t->title);
    s->n_threads++;
    return 0;
}

static int on_comment(void *arg, const struct ts_import_comment_rec *c)
{
    struct sink *s = arg;
    ck_assert_uint_lt(s->n, MAXR);
    struct rec *r = &s->c[s->n++];
    snprintf(r->id, sizeof(r->id), "%s", c->source_id);
    snprintf(r->parent, sizeof(r->parent), "%s", c->parent_source_id);
    snprintf(r->key, sizeof(r->key), "%s", c->thread_key);
    snprintf(r->name, sizeof(r->name), "%s", c->author_name);
    snprintf(r->email, sizeof(r->email), "%s", c->author_email);
    snprintf(r->body, sizeof(r->body), "%s", c->body);
    r->when = c->created_at_ms;
    r->status = c->status;
    r->keep = c->keep_if_replies;
    r->xid = c->id;
    r->version = c->version;
    return 0;
}

static void on_skip(void *arg, const char *why)
{
    struct sink *s = arg;
    strncat(s->skips, why, sizeof(s->skips) - strlen(s->skips) - 2);
    strcat(s->skips, ";");
}

static struct sink *new_sink(struct ts_import_sink *k)
{
    struct sink *s = calloc(1, sizeof(*s));
    ck_assert_ptr_nonnull(s);
    *k = (struct ts_import_sink){on_thread, on_comment, on_skip, s};
    return s;
}

static FILE *text_file(const char *text)
{
    FILE *f = fmemopen((void *)text, strlen(text), "r");
    ck_assert_ptr_nonnull(f);
    return f;
}

START_TEST(test_wxr_fixture)
{
    struct ts_import_sink k;
    struct sink *s = new_sink(&k);
    FILE *f = fopen(TS_FIXTURES_DIR "/wordpress.xml", "r");
    ck_assert_ptr_nonnull(f);
    struct ts_import_wxr_opts o = {TS_IMPORT_KEY_PATH, 0};
    char err[256] = "";
    ck_assert_int_eq(ts_import_wxr_parse(f, &o, &k, err, sizeof(err)), TS_OK);
    fclose(f);
    ck_assert_uint_eq(s->n_threads, 2);
    ck_assert_str_eq(s->keys[0], "/2021/03/hello-world/");
    ck_assert_str_eq(s->titles[0], "Hello & “welcome”");
    ck_assert_str_eq(s->keys[1], "/about/");
    /* 14 comments in item 1 less one pingback, 1 in item 2, in file order */
    ck_assert_uint_eq(s->n, 14);
    ck_assert_str_eq(s->c[0].id, "11");
    ck_assert_str_eq(s->c[0].parent, "");
    ck_assert_str_eq(s->c[0].name, "Zoë Ångström");
    ck_assert_int_eq(s->c[0].when, 1614672900000LL); /* 2021-03-02 08:15:00 UTC */
    ck_assert_str_eq(s->c[1].parent, "11");
    ck_assert_int_eq(s->c[5].status, THREADSYNC__STATUS__HIDDEN); /* spam */
    ck_assert_int_eq(s->c[5].keep, 1);
    ck_assert_int_eq(s->c[7].status, THREADSYNC__STATUS__DELETED); /* trash */
    ck_assert_int_eq(s->c[7].keep, 1);
    ck_assert_int_eq(s->c[9].status, THREADSYNC__STATUS__HIDDEN); /* spam, no reply */
    ck_assert_str_eq(s->c[10].id, "22");
    ck_assert_int_eq(s->c[10].status, THREADSYNC__STATUS__PENDING);
    ck_assert_str_eq(s->c[11].id, "24"); /* before its parent, as in the file */
    ck_assert_str_eq(s->c[11].parent, "23");
    ck_assert_str_eq(s->c[13].name, "李小龙");
    ck_assert_str_eq(s->c[13].body, "I <3 this page & that’s all.");
    ck_assert_ptr_nonnull(strstr(s->skips, "pingback"));
    ck_assert_ptr_nonnull(strstr(s->skips, "without comments"));

    /* --key-from slug / id, --with-pingbacks */
    memset(s, 0, sizeof(*s));
    f = fopen(TS_FIXTURES_DIR "/wordpress.xml", "r");
    o = (struct ts_import_wxr_opts){TS_IMPORT_KEY_SLUG, 1};
    ck_assert_int_eq(ts_import_wxr_parse(f, &o, &k, err, sizeof(err)), TS_OK);
    fclose(f);
    ck_assert_str_eq(s->keys[0], "hello-world");
    ck_assert_uint_eq(s->n, 15);
    memset(s, 0, sizeof(*s));
    f = fopen(TS_FIXTURES_DIR "/wordpress.xml", "r");
    o = (struct ts_import_wxr_opts){TS_IMPORT_KEY_ID, 0};
    ck_assert_int_eq(ts_import_wxr_parse(f, &o, &k, err, sizeof(err)), TS_OK);
    fclose(f);
    ck_assert_str_eq(s->keys[1], "2");
    free(s);
}
END_TEST

START_TEST(test_disqus_fixture)
{
    struct ts_import_sink k;
    struct sink *s = new_sink(&k);
    FILE *f = fopen(TS_FIXTURES_DIR "/disqus.xml", "r");
    ck_assert_ptr_nonnull(f);
    struct ts_import_disqus_opts o = {TS_IMPORT_KEY_PATH};
    char err[256] = "";
    ck_assert_int_eq(ts_import_disqus_parse(f, &o, &k, err, sizeof(err)), TS_OK);
    fclose(f);
    ck_assert_uint_eq(s->n_threads, 2); /* the thread without posts is never told */
    ck_assert_str_eq(s->keys[0], "/2019/07/café-au-lait/");
    ck_assert_str_eq(s->titles[0], "Café au lait & “croissants”");
    ck_assert_uint_eq(s->n, 6);
    ck_assert_str_eq(s->c[0].id, "7001");
    ck_assert_str_eq(s->c[0].name, "Amélie Poulain");
    ck_assert_str_eq(s->c[0].email, "amelie@example.fr");
    ck_assert_str_eq(s->c[0].body, "Très bon ! J’adore ☕");
    ck_assert_int_eq(s->c[0].when, 1562059800000LL); /* 2019-07-02T09:30:00Z */
    ck_assert_str_eq(s->c[1].parent, "7001");
    ck_assert_str_eq(s->c[1].body, "Reply one\nwith a line break");
    ck_assert_int_eq(s->c[2].status, THREADSYNC__STATUS__DELETED);
    ck_assert_int_eq(s->c[4].status, THREADSYNC__STATUS__HIDDEN);
    ck_assert_str_eq(s->c[5].key, "/2019/09/second/?utm=x");
    free(s);
}
END_TEST

START_TEST(test_xml_errors_have_line_and_column)
{
    struct ts_import_sink k;
    struct sink *s = new_sink(&k);
    struct ts_import_wxr_opts o = {TS_IMPORT_KEY_PATH, 0};
    char err[256];
    FILE *f = text_file("<rss xmlns:wp=\"http://wordpress.org/export/1.2/\">\n<channel>\n"
                        "  <item><title>x</titel>\n");
    ck_assert_int_eq(ts_import_wxr_parse(f, &o, &k, err, sizeof(err)), TS_E_INVALID_ARGUMENT);
    fclose(f);
    ck_assert_msg(strstr(err, "line 3, column 19") != NULL, "%s", err);
    f = text_file("<rss>\n<x>caf\xE9</x></rss>\n");
    ck_assert_int_eq(ts_import_wxr_parse(f, &o, &k, err, sizeof(err)), TS_E_INVALID_ARGUMENT);
    fclose(f);
    ck_assert_msg(strstr(err, "line 2, column") != NULL, "%s", err);
    struct ts_import_disqus_opts d = {TS_IMPORT_KEY_PATH};
    f = text_file("<rss/>");
    ck_assert_int_eq(ts_import_disqus_parse(f, &d, &k, err, sizeof(err)), TS_E_INVALID_ARGUMENT);
    fclose(f);
    ck_assert_ptr_nonnull(strstr(err, "not a Disqus export"));
    free(s);
}
END_TEST

START_TEST(test_jsonl)
{
    struct ts_import_sink k;
    struct sink *s = new_sink(&k);
    char err[256];
    FILE *f = text_file(
        "{\"type\":\"export\",\"format\":1,\"seq\":9}\n"
        "{\"type\":\"thread\",\"id\":2,\"key\":\"k\\/1\",\"title\":\"T \\\"q\\\"\",\"x\":[]}\n");
    ck_assert_int_eq(ts_import_jsonl_parse(f, &k, err, sizeof(err)), TS_E_INVALID_ARGUMENT);
    fclose(f);
    ck_assert_msg(strstr(err, "line 2, column 60") != NULL, "%s", err);
    memset(s, 0, sizeof(*s));
    f = text_file("{\"type\":\"export\",\"format\":1}\n"
                  "{\"type\":\"thread\",\"id\":2,\"key\":\"k\\/1\",\"title\":\"T \\\"q\\\"\"}\n"
                  "{\"type\":\"comment\",\"id\":7,\"parent_id\":5,\"thread_key\":\"k/1\","
                  "\"author_name\":\"\\u00c5sa \\ud83d\\ude00\",\"body\":\"a\\nb\","
                  "\"created_at_ms\":1000,\"status\":\"HIDDEN\",\"version\":3,\"future\":null}\n");
    ck_assert_int_eq(ts_import_jsonl_parse(f, &k, err, sizeof(err)), TS_OK);
    fclose(f);
    ck_assert_str_eq(s->keys[0], "k/1");
    ck_assert_str_eq(s->titles[0], "T \"q\"");
    ck_assert_uint_eq(s->n, 1);
    ck_assert_str_eq(s->c[0].id, "7");
    ck_assert_str_eq(s->c[0].parent, "5");
    ck_assert_str_eq(s->c[0].name, "Åsa 😀");
    ck_assert_str_eq(s->c[0].body, "a\nb");
    ck_assert_int_eq(s->c[0].status, THREADSYNC__STATUS__HIDDEN);
    ck_assert_uint_eq(s->c[0].xid, 7);
    ck_assert_uint_eq(s->c[0].version, 3);
    f = text_file("{\"type\":\"thread\"}\n");
    ck_assert_int_eq(ts_import_jsonl_parse(f, &k, err, sizeof(err)), TS_E_INVALID_ARGUMENT);
    fclose(f);
    ck_assert_ptr_nonnull(strstr(err, "no \"export\" line"));
    f = text_file("{\"type\":\"export\",\"format\":1}\n{\"a\":\"\xC3\x28\"}\n");
    ck_assert_int_eq(ts_import_jsonl_parse(f, &k, err, sizeof(err)), TS_E_INVALID_ARGUMENT);
    fclose(f);
    ck_assert_msg(strstr(err, "line 2, column 1: not valid UTF-8") != NULL, "%s", err);
    free(s);
}
END_TEST

START_TEST(test_text_helpers)
{
    char a[] = "  <p>Hi &amp; <a href=\"https://x.example/\">there</a>&#33;<br/>"
               "line&nbsp;2 &#x1F600; &bogus;</p>\n\n\n<p>next</p>  ";
    ck_assert_str_eq(ts_import_html_to_text(a), "Hi & there (https://x.example/)!\nline\xC2\xA0"
                                                "2 😀 &bogus;\n\nnext");
    char b[] = "<a href=\"https://same.example\">https://same.example</a> a < b";
    ck_assert_str_eq(ts_import_html_to_text(b), "https://same.example a < b");
    char c[] = "\tname\x01with\ncontrols ";
    ck_assert_str_eq(ts_import_line(c), "name with controls");
    ck_assert_int_eq(ts_import_parse_date("2021-03-02 08:15:00"), 1614672900000LL);
    ck_assert_int_eq(ts_import_parse_date("2019-07-02T09:30:00Z"), 1562059800000LL);
    ck_assert_int_eq(ts_import_parse_date("2019-07-02T11:30:00.250+02:00"), 1562059800250LL);
    ck_assert_int_eq(ts_import_parse_date("0000-00-00 00:00:00"), 0);
    ck_assert_int_eq(ts_import_parse_date("yesterday"), 0);
    char p[64];
    ts_import_url_path("https://blog.example/2021/03/x/?a=1#c5", p, sizeof(p));
    ck_assert_str_eq(p, "/2021/03/x/?a=1");
    ts_import_url_path("https://blog.example", p, sizeof(p));
    ck_assert_str_eq(p, "/");
    char d[] = "aé😀b";
    ck_assert_int_eq(ts_import_clip(d, 0, 3), 1);
    ck_assert_str_eq(d, "aé😀");
    char e[] = "aé😀b";
    ck_assert_int_eq(ts_import_clip(e, 5, 0), 1); /* 😀 would end at byte 7 */
    ck_assert_str_eq(e, "aé");
    char g[] = "short";
    ck_assert_int_eq(ts_import_clip(g, 64, 64), 0);
}
END_TEST

static Suite *parse_suite(void)
{
    Suite *s = suite_create("ts_import_parse");
    TCase *tc = tcase_create("parse");
    tcase_add_test(tc, test_wxr_fixture);
    tcase_add_test(tc, test_disqus_fixture);
    tcase_add_test(tc, test_xml_errors_have_line_and_column);
    tcase_add_test(tc, test_jsonl);
    tcase_add_test(tc, test_text_helpers);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ts_check_run(parse_suite());
}
