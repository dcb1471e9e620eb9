/*
 * ts_auth: tokens file parsing (and refusal of bad lines without losing the
 * old table), hashed constant-time lookup, first-start admin token, adding
 * tokens, and the role/action matrix.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "ts_check_main.h"
#include "ts_auth.h"
#include "ts_err.h"
#include "ts_file.h"
#include "ts_testnode.h"

static char dir[64];
static char tokens[128];
static char admin_file[128];

static void setup(void)
{
    strcpy(dir, "/tmp/ts_auth_test.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(tokens, sizeof(tokens), "%s/tokens", dir);
    snprintf(admin_file, sizeof(admin_file), "%s/admin.token", dir);
}

static void teardown(void)
{
    ts_test_rmtree(dir);
}

/* The hex SHA-256 of s, computed independently of ts_auth. */
static void hash_hex(const char *s, char out[65])
{
    unsigned char h[32];
    unsigned int n;
    ck_assert_int_eq(EVP_Digest(s, strlen(s), h, &n, EVP_sha256(), NULL), 1);
    for (int i = 0; i < 32; i++)
        sprintf(out + (size_t)2 * i, "%02x", h[i]);
}

static void write_text(const char *path, const char *text)
{
    ck_assert_int_eq(ts_file_write_atomic(path, text, strlen(text), 0600), TS_OK);
}

static void write_table(const char *path)
{
    char hr[65], hp[65], hm[65], ha[65], text[1024];
    hash_hex("reader-secret", hr);
    hash_hex("poster-secret", hp);
    hash_hex("mod-secret", hm);
    hash_hex("admin-secret", ha);
    for (int i = 0; ha[i]; i++) /* uppercase hex is accepted too */
        if (ha[i] >= 'a' && ha[i] <= 'f')
            ha[i] = (char)(ha[i] - 'a' + 'A');
    snprintf(text, sizeof(text),
             "# tokens\n"
             "\n"
             "reader r.one %s\n"
             "   poster\tblog-web_2   %s  \r\n"
             "  # indented comment\n"
             "moderator mod %s\n"
             "admin root %s",
             hr, hp, hm, ha);
    write_text(path, text);
}

START_TEST(test_load_and_check)
{
    struct ts_auth *a = ts_auth_new();
    ck_assert_ptr_nonnull(a);
    ck_assert_int_eq(ts_auth_check(a, "reader-secret", NULL, NULL), TS_E_UNAUTHENTICATED);
    write_table(tokens);
    ck_assert_int_eq(ts_auth_load(a, tokens), TS_OK);
    ck_assert_uint_eq(ts_auth_count(a), 4);

    static const struct {
        const char *token, *name;
        int role;
    } want[] = {
        {"reader-secret", "r.one", THREADSYNC__ROLE__READER},
        {"poster-secret", "blog-web_2", THREADSYNC__ROLE__POSTER},
        {"mod-secret", "mod", THREADSYNC__ROLE__MODERATOR},
        {"admin-secret", "root", THREADSYNC__ROLE__ADMIN},
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        int role = -1;
        const char *name = NULL;
        ck_assert_int_eq(ts_auth_check(a, want[i].token, &role, &name), TS_OK);
        ck_assert_int_eq(role, want[i].role);
        ck_assert_str_eq(name, want[i].name);
    }
    /* Unknown tokens, near misses, the stored hash itself, empty, NULL. */
    char h[65];
    hash_hex("reader-secret", h);
    const char *bad[] = {"reader-secre", "reader-secret ", "Reader-secret", h, ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_int_eq(ts_auth_check(a, bad[i], NULL, NULL), TS_E_UNAUTHENTICATED);
    ck_assert_int_eq(ts_auth_check(a, NULL, NULL, NULL), TS_E_UNAUTHENTICATED);
    ts_auth_free(a);
}
END_TEST

/* The optional fourth field marks a gateway; files without it load as
 * before (every token not a gateway); any other word is refused. */
START_TEST(test_gateway_flag)
{
    struct ts_auth *a = ts_auth_new();
    write_table(tokens);
    ck_assert_int_eq(ts_auth_load(a, tokens), TS_OK);
    ck_assert_int_eq(ts_auth_gateway(a, "blog-web_2"), 0);
    char h[65], h2[65], text[512];
    hash_hex("edge-secret", h);
    hash_hex("plain-secret", h2);
    snprintf(text, sizeof(text), "poster edge %s gateway\nposter plain %s\n", h, h2);
    write_text(tokens, text);
    ck_assert_int_eq(ts_auth_load(a, tokens), TS_OK);
    int role = 0;
    ck_assert_int_eq(ts_auth_check(a, "edge-secret", &role, NULL), TS_OK);
    ck_assert_int_eq(role, THREADSYNC__ROLE__POSTER);
    ck_assert_int_eq(ts_auth_gateway(a, "edge"), 1);
    ck_assert_int_eq(ts_auth_gateway(a, "plain"), 0);
    ck_assert_int_eq(ts_auth_gateway(a, "nobody"), 0);
    snprintf(text, sizeof(text), "poster edge %s gatewa\n", h);
    write_text(tokens, text);
    ck_assert_int_eq(ts_auth_load(a, tokens), TS_E_CONFIG);
    ts_auth_free(a);
}
END_TEST

START_TEST(test_bad_lines_keep_old_table)
{
    char h[65], h2[65], line[256];
    hash_hex("x", h);
    hash_hex("y", h2);
    const char *bad_fmt[] = {
        "writer w %s\n",                    /* unknown role */
        "Reader w %s\n",                    /* roles are lowercase */
        "reader w\n",                       /* missing hash */
        "reader w %s extra\n",              /* too many fields */
        "reader w %s # trailing comment\n", /* comments are whole lines */
        "reader bad/name %s\n",             /* name charset */
        "reader %s\n",                      /* name only, the hash as name */
        "reader w %.63s\n",                 /* short hash */
        "reader w %.63sg\n",                /* non-hex digit */
        "reader aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa %s\n", /* 65 */
    };
    struct ts_auth *a = ts_auth_new();
    write_table(tokens);
    ck_assert_int_eq(ts_auth_load(a, tokens), TS_OK);
    for (size_t i = 0; i < sizeof(bad_fmt) / sizeof(bad_fmt[0]); i++) {
        char text[512];
        snprintf(line, sizeof(line), bad_fmt[i], h);
        snprintf(text, sizeof(text), "# ok\nreader fine %s\n%s", h2, line);
        write_text(tokens, text);
        ck_assert_msg(ts_auth_load(a, tokens) == TS_E_CONFIG, "accepted: %s", line);
        /* The previous table is still the one in use. */
        ck_assert_uint_eq(ts_auth_count(a), 4);
        ck_assert_int_eq(ts_auth_check(a, "mod-secret", NULL, NULL), TS_OK);
        ck_assert_int_eq(ts_auth_check(a, "y", NULL, NULL), TS_E_UNAUTHENTICATED);
    }
    /* Duplicate names and duplicate hashes. */
    char text[512];
    snprintf(text, sizeof(text), "reader a %s\nposter a %s\n", h, h2);
    write_text(tokens, text);
    ck_assert_int_eq(ts_auth_load(a, tokens), TS_E_CONFIG);
    snprintf(text, sizeof(text), "reader a %s\nposter b %s\n", h, h);
    write_text(tokens, text);
    ck_assert_int_eq(ts_auth_load(a, tokens), TS_E_CONFIG);
    /* A NUL inside a line. */
    snprintf(text, sizeof(text), "reader a %s\n", h);
    text[7] = '\0';
    ck_assert_int_eq(ts_file_write_atomic(tokens, text, strlen(text + 8) + 8, 0600), TS_OK);
    ck_assert_int_eq(ts_auth_load(a, tokens), TS_E_CONFIG);
    /* A missing file is a config error too, and changes nothing. */
    unlink(tokens);
    ck_assert_int_eq(ts_auth_load(a, tokens), TS_E_CONFIG);
    ck_assert_uint_eq(ts_auth_count(a), 4);
    /* And a good file does replace the table. */
    snprintf(text, sizeof(text), "reader only %s\n", h2);
    write_text(tokens, text);
    ck_assert_int_eq(ts_auth_load(a, tokens), TS_OK);
    ck_assert_uint_eq(ts_auth_count(a), 1);
    ck_assert_int_eq(ts_auth_check(a, "mod-secret", NULL, NULL), TS_E_UNAUTHENTICATED);
    ck_assert_int_eq(ts_auth_check(a, "y", NULL, NULL), TS_OK);
    ts_auth_free(a);
}
END_TEST

START_TEST(test_generate_token)
{
    char t1[TS_AUTH_TOKEN_LEN + 1], t2[TS_AUTH_TOKEN_LEN + 1];
    ck_assert_int_eq(ts_auth_generate_token(t1), TS_OK);
    ck_assert_int_eq(ts_auth_generate_token(t2), TS_OK);
    ck_assert_uint_eq(strlen(t1), TS_AUTH_TOKEN_LEN);
    ck_assert_int_eq(strncmp(t1, "ts_", 3), 0);
    ck_assert_str_ne(t1, t2);
    for (size_t i = 3; i < TS_AUTH_TOKEN_LEN; i++) {
        char c = t1[i];
        ck_assert_msg((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                          c == '-' || c == '_',
                      "char %c", c);
    }
}
END_TEST

START_TEST(test_ensure_admin)
{
    int created = -1;
    ck_assert_int_eq(ts_auth_ensure_admin(tokens, admin_file, &created), TS_OK);
    ck_assert_int_eq(created, 1);
    struct stat st;
    ck_assert_int_eq(stat(tokens, &st), 0);
    ck_assert_uint_eq(st.st_mode & 0777, 0600);
    ck_assert_int_eq(stat(admin_file, &st), 0);
    ck_assert_uint_eq(st.st_mode & 0777, 0600);

    uint8_t *tok;
    size_t len;
    ck_assert_int_eq(ts_file_read_all(admin_file, 4096, &tok, &len), TS_OK);
    ck_assert_uint_eq(len, TS_AUTH_TOKEN_LEN + 1);
    ck_assert_int_eq(tok[TS_AUTH_TOKEN_LEN], '\n');
    tok[TS_AUTH_TOKEN_LEN] = '\0';

    /* Only the hash is in the tokens file. */
    uint8_t *table;
    ck_assert_int_eq(ts_file_read_all(tokens, 1 << 20, &table, &len), TS_OK);
    ck_assert_ptr_null(strstr((char *)table, (char *)tok));
    char h[65], line[128];
    hash_hex((char *)tok, h);
    snprintf(line, sizeof(line), "admin admin %s\n", h);
    ck_assert_ptr_nonnull(strstr((char *)table, line));

    struct ts_auth *a = ts_auth_new();
    ck_assert_int_eq(ts_auth_load(a, tokens), TS_OK);
    int role;
    const char *name;
    ck_assert_int_eq(ts_auth_check(a, (char *)tok, &role, &name), TS_OK);
    ck_assert_int_eq(role, THREADSYNC__ROLE__ADMIN);
    ck_assert_str_eq(name, "admin");

    /* Second start: nothing created, nothing changed. */
    ck_assert_int_eq(ts_auth_ensure_admin(tokens, admin_file, &created), TS_OK);
    ck_assert_int_eq(created, 0);
    uint8_t *tok2, *table2;
    size_t len2;
    ck_assert_int_eq(ts_file_read_all(admin_file, 4096, &tok2, &len2), TS_OK);
    ck_assert_int_eq(strncmp((char *)tok2, (char *)tok, TS_AUTH_TOKEN_LEN), 0);
    ck_assert_int_eq(ts_file_read_all(tokens, 1 << 20, &table2, &len2), TS_OK);
    ck_assert_str_eq((char *)table2, (char *)table);
    free(tok);
    free(tok2);
    free(table);
    free(table2);
    ts_auth_free(a);
}
END_TEST

START_TEST(test_add)
{
    char t1[TS_AUTH_TOKEN_LEN + 1], t2[TS_AUTH_TOKEN_LEN + 1], t3[TS_AUTH_TOKEN_LEN + 1];
    /* Into a missing file, then into one whose last line has no newline. */
    ck_assert_int_eq(ts_auth_add(tokens, THREADSYNC__ROLE__POSTER, "blog", t1), TS_OK);
    struct stat st;
    ck_assert_int_eq(stat(tokens, &st), 0);
    ck_assert_uint_eq(st.st_mode & 0777, 0600);
    write_table(tokens);
    ck_assert_int_eq(ts_auth_add(tokens, THREADSYNC__ROLE__POSTER, "blog", t1), TS_OK);
    ck_assert_int_eq(ts_auth_add(tokens, THREADSYNC__ROLE__READER, "mirror-1", t2), TS_OK);
    ck_assert_str_ne(t1, t2);
    ck_assert_int_eq(ts_auth_add(tokens, THREADSYNC__ROLE__ADMIN, "blog", t3), TS_E_EXISTS);
    ck_assert_int_eq(ts_auth_add(tokens, THREADSYNC__ROLE__ADMIN, "root", t3), TS_E_EXISTS);
    ck_assert_int_eq(ts_auth_add(tokens, THREADSYNC__ROLE__ADMIN, "bad name", t3),
                     TS_E_INVALID_ARGUMENT);
    ck_assert_int_eq(ts_auth_add(tokens, 0, "x", t3), TS_E_INVALID_ARGUMENT);
    ck_assert_int_eq(ts_auth_add(tokens, 5, "x", t3), TS_E_INVALID_ARGUMENT);

    struct ts_auth *a = ts_auth_new();
    ck_assert_int_eq(ts_auth_load(a, tokens), TS_OK);
    ck_assert_uint_eq(ts_auth_count(a), 6);
    int role;
    const char *name;
    ck_assert_int_eq(ts_auth_check(a, t1, &role, &name), TS_OK);
    ck_assert_int_eq(role, THREADSYNC__ROLE__POSTER);
    ck_assert_str_eq(name, "blog");
    ck_assert_int_eq(ts_auth_check(a, t2, &role, &name), TS_OK);
    ck_assert_int_eq(role, THREADSYNC__ROLE__READER);
    ck_assert_int_eq(ts_auth_check(a, "admin-secret", &role, NULL), TS_OK);

    /* A broken file is left alone. */
    write_text(tokens, "nonsense\n");
    ck_assert_int_eq(ts_auth_add(tokens, THREADSYNC__ROLE__READER, "z", t3), TS_E_CONFIG);
    uint8_t *text;
    size_t len;
    ck_assert_int_eq(ts_file_read_all(tokens, 1024, &text, &len), TS_OK);
    ck_assert_str_eq((char *)text, "nonsense\n");
    free(text);
    ts_auth_free(a);
}
END_TEST

START_TEST(test_roles)
{
    static const char *names[] = {"reader", "poster", "moderator", "admin"};
    for (int r = 1; r <= 4; r++) {
        ck_assert_str_eq(ts_auth_role_name(r), names[r - 1]);
        ck_assert_int_eq(ts_auth_role_parse(names[r - 1]), r);
    }
    ck_assert_int_eq(ts_auth_role_parse("ADMIN"), 0);
    ck_assert_int_eq(ts_auth_role_parse(""), 0);
    ck_assert_int_eq(ts_auth_role_parse("unspecified"), 0);
    ck_assert_str_eq(ts_auth_role_name(0), "unspecified");
    ck_assert_str_eq(ts_auth_role_name(99), "unspecified");
    ck_assert_str_eq(ts_auth_role_name(-1), "unspecified");

    /* rows: unspecified, reader, poster, moderator, admin, out of range;
     * columns: SUBSCRIBE, GET, POST, MODERATE, ADMIN */
    static const int roles[] = {0, 1, 2, 3, 4, 5};
    static const int matrix[6][5] = {
        {0, 0, 0, 0, 0}, {1, 1, 0, 0, 0}, {1, 1, 1, 0, 0},
        {1, 1, 1, 1, 0}, {1, 1, 1, 1, 1}, {0, 0, 0, 0, 0},
    };
    static const enum ts_auth_action actions[] = {TS_AUTH_SUBSCRIBE, TS_AUTH_GET, TS_AUTH_POST,
                                                  TS_AUTH_MODERATE, TS_AUTH_ADMIN};
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < 5; j++)
            ck_assert_msg(ts_auth_role_allows(roles[i], actions[j]) == matrix[i][j],
                          "role %d action %d", roles[i], j);
    ck_assert_int_eq(ts_auth_role_allows(4, (enum ts_auth_action)42), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ts_auth");
    TCase *tc = tcase_create("auth");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, test_load_and_check);
    tcase_add_test(tc, test_bad_lines_keep_old_table);
    tcase_add_test(tc, test_gateway_flag);
    tcase_add_test(tc, test_generate_token);
    tcase_add_test(tc, test_ensure_admin);
    tcase_add_test(tc, test_add);
    tcase_add_test(tc, test_roles);
    suite_add_tcase(s, tc);
    return ts_check_run(s);
}
