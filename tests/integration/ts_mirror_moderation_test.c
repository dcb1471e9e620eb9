/*
 * Integration: moderation as mirrors see it. Hides, unhides, deletes,
 * approvals and authors' edits and deletes followed live and across a
 * restart, before a snapshot, through a moderator's token, and a moderated
 * thread from a real node in headless Chromium. After each step the rows,
 * JSON and HTML show exactly the public view (checked against a model of
 * the thread), the count is the server's, verify passes, and text no reader
 * may see is in no byte of the database or its WAL.
 *
 * The mirror runs with a READER token, as a mirror site would, unless a
 * case says otherwise. Each case starts its own node (tests/harness/
 * ts_testmirror.h).
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pty.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ts_check_main.h"
#include "ts_err.h"
#include "ts_frame.h"
#include "ts_mirror_render.h"
#include "ts_testmirror.h"

/* ---- moderation, as a mirror sees it ----------------------------------------- */

/* Runs `threadsync ARGS` as the token in tok to its end; *out (may be NULL)
 * gets its stdout. Returns the exit code. */
static int run_as(const char *tok, char **out, const char *const *args)
{
    const char *server[] = {node.addr};
    char *o = NULL;
    int code = ts_test_cli(server, 1, node.ca, tok, args, node.dir, &o);
    ck_assert_ptr_nonnull(o);
    if (out)
        *out = o;
    else
        free(o);
    return code;
}

/* The value after "key=" in text, up to a space or line end, into out. */
static void kv(const char *text, const char *key, char *out, size_t size)
{
    const char *p = strstr(text, key);
    ck_assert_msg(p != NULL, "no %s in: %s", key, text);
    p += strlen(key);
    size_t n = strcspn(p, " \n");
    ck_assert_uint_lt(n, size);
    memcpy(out, p, n);
    out[n] = '\0';
}

static const char *status_name(int st)
{
    switch (st) {
    case THREADSYNC__STATUS__VISIBLE:
        return "VISIBLE";
    case THREADSYNC__STATUS__PENDING:
        return "PENDING";
    case THREADSYNC__STATUS__HIDDEN:
        return "HIDDEN";
    case THREADSYNC__STATUS__DELETED:
        return "DELETED";
    default:
        return "?";
    }
}

/* What the server holds of one thread, as a reader may see it: the test's
 * model, kept next to every change it makes through the CLI. */
struct mc {
    uint64_t id, parent;
    int status;
    char body[160];    /* the current body */
    char gone[2][160]; /* bodies it had that nobody may see any more */
    size_t n_gone;
    char edit_key[40];
};

struct model {
    char key[128];
    struct mc c[48];
    size_t n;
    uint64_t seq;         /* the seq of the last change */
    char secrets[8][160]; /* texts that never reached a reader: in no mirror file */
    size_t n_secrets;
};

static size_t model_visible(const struct model *m)
{
    size_t v = 0;
    for (size_t i = 0; i < m->n; i++)
        v += m->c[i].status == THREADSYNC__STATUS__VISIBLE;
    return v;
}

/* Shown on the page: visible, or above something shown (a "[deleted]" or
 * "[removed]" placeholder); a removed leaf is not shown at all. */
static int model_shown(const struct model *m, size_t i)
{
    if (m->c[i].status == THREADSYNC__STATUS__VISIBLE)
        return 1;
    for (size_t j = 0; j < m->n; j++)
        if (m->c[j].parent == m->c[i].id && model_shown(m, j))
            return 1;
    return 0;
}

static void model_secret(struct model *m, const char *text)
{
    ck_assert_uint_lt(m->n_secrets, 8);
    snprintf(m->secrets[m->n_secrets++], sizeof(m->secrets[0]), "%s", text);
}

static void model_forget(struct mc *c)
{
    ck_assert_uint_lt(c->n_gone, 2);
    snprintf(c->gone[c->n_gone++], sizeof(c->gone[0]), "%s", c->body);
}

/* c is visible again (unhidden, approved): its body is no secret now. */
static void model_reveal(struct model *m, struct mc *c)
{
    size_t k = 0;
    for (size_t g = 0; g < c->n_gone; g++)
        if (strcmp(c->gone[g], c->body) != 0)
            memmove(c->gone[k++], c->gone[g], sizeof(c->gone[0]));
    c->n_gone = k;
    k = 0;
    for (size_t s = 0; s < m->n_secrets; s++)
        if (strcmp(m->secrets[s], c->body) != 0)
            memmove(m->secrets[k++], m->secrets[s], sizeof(m->secrets[0]));
    m->n_secrets = k;
}

/* Posts as the poster (parent NULL: top level); the comment's status is
 * what the server answered (PENDING under pre-moderation). */
static struct mc *model_post_as(struct model *m, const struct mc *parent, const char *name,
                                const char *email, const char *body)
{
    ck_assert_uint_lt(m->n, sizeof(m->c) / sizeof(m->c[0]));
    char pid[24];
    snprintf(pid, sizeof(pid), "%" PRIu64, parent ? parent->id : 0);
    const char *args[] = {"post",   "--thread", m->key,     "--name", name,
                          "--body", body,       "--parent", pid,      email ? "--email" : NULL,
                          email,    NULL};
    char *out;
    ck_assert_int_eq(run_as(poster_file, &out, args), 0);
    struct mc *c = &m->c[m->n++];
    memset(c, 0, sizeof(*c));
    c->id = field(out, "id=");
    m->seq = field(out, " seq=");
    c->parent = parent ? parent->id : 0;
    c->status =
        strstr(out, "status=PENDING") ? THREADSYNC__STATUS__PENDING : THREADSYNC__STATUS__VISIBLE;
    kv(out, "edit_key=", c->edit_key, sizeof(c->edit_key));
    snprintf(c->body, sizeof(c->body), "%s", body);
    if (c->status != THREADSYNC__STATUS__VISIBLE)
        model_secret(m, body);
    free(out);
    return c;
}

static struct mc *model_post(struct model *m, const struct mc *parent, const char *name,
                             const char *body)
{
    return model_post_as(m, parent, name, NULL, body);
}

/* Checks a ChangeResult line and takes its seq; the server's count must be
 * the model's. */
static void model_changed(struct model *m, const char *out, const struct mc *c)
{
    ck_assert_msg(strstr(out, "changed=1"), "%s", out);
    char want[64];
    snprintf(want, sizeof(want), "status=%s", status_name(c->status));
    ck_assert_msg(strstr(out, want), "want %s: %s", want, out);
    ck_assert_uint_eq(field(out, "count="), model_visible(m));
    m->seq = field(out, "seq=");
}

/* `threadsync moderate ACTION ID` as the moderator. */
static void model_moderate(struct model *m, struct mc *c, const char *action, int status)
{
    char id[24];
    snprintf(id, sizeof(id), "%" PRIu64, c->id);
    const char *args[] = {"moderate", action, id, NULL};
    char *out;
    ck_assert_int_eq(run_as(mod_file, &out, args), 0);
    if (status != THREADSYNC__STATUS__VISIBLE && c->status == THREADSYNC__STATUS__VISIBLE)
        model_forget(c);
    c->status = status;
    if (status == THREADSYNC__STATUS__VISIBLE)
        model_reveal(m, c);
    model_changed(m, out, c);
    free(out);
}

/* The author's edit with the key its post printed; under pre-moderation
 * the comment goes back to PENDING. */
static void model_author_edit(struct model *m, struct mc *c, const char *body, int premoderated)
{
    char id[24];
    snprintf(id, sizeof(id), "%" PRIu64, c->id);
    const char *args[] = {"edit", id, "--edit-key", c->edit_key, "--body", body, NULL};
    char *out;
    ck_assert_int_eq(run_as(poster_file, &out, args), 0);
    model_forget(c);
    snprintf(c->body, sizeof(c->body), "%s", body);
    if (premoderated) {
        c->status = THREADSYNC__STATUS__PENDING;
        model_secret(m, body);
    }
    model_changed(m, out, c);
    free(out);
}

/* The author's delete with the key. */
static void model_author_delete(struct model *m, struct mc *c)
{
    char id[24];
    snprintf(id, sizeof(id), "%" PRIu64, c->id);
    const char *args[] = {"delete", id, "--edit-key", c->edit_key, NULL};
    char *out;
    ck_assert_int_eq(run_as(poster_file, &out, args), 0);
    if (c->status == THREADSYNC__STATUS__VISIBLE)
        model_forget(c);
    c->status = THREADSYNC__STATUS__DELETED;
    model_changed(m, out, c);
    free(out);
}

/* `threadsync moderate premoderate|postmoderate --thread KEY`. */
static void model_thread(struct model *m, const char *action)
{
    const char *args[] = {"moderate", action, "--thread", m->key, NULL};
    char *out;
    ck_assert_int_eq(run_as(mod_file, &out, args), 0);
    ck_assert_msg(strstr(out, "changed=1"), "%s", out);
    m->seq = field(out, "seq=");
    free(out);
}

/* The thread as the server answers a reader's Get: its comment_count. */
static uint32_t server_count(const char *key)
{
    struct ts_raw *r;
    ck_assert_int_eq(ts_raw_connect(node.addr, node.ca, TS_ALPN, &r), TS_OK);
    int role;
    ck_assert_int_eq(ts_raw_hello(r, node.reader_token, &role), TS_OK);
    Threadsync__Frame *in = ts_raw_get(r, 1, key, 10000);
    ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_RESULT);
    uint32_t n = in->result->get->thread->comment_count;
    ts_frame_free(in);
    ts_raw_close(r);
    return n;
}

/* 1 when the file's bytes hold text anywhere (0 for a missing file). */
static int file_has(const char *path, const char *text)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)len + 1);
    ck_assert_ptr_nonnull(buf);
    size_t n = fread(buf, 1, (size_t)len, f);
    fclose(f);
    int found = memmem(buf, n, text, strlen(text)) != NULL;
    free(buf);
    return found;
}

/* Text that may not be kept is in none of the mirror's files, down to the
 * bytes of the database and its write-ahead log. */
static void assert_nowhere(const char *text)
{
    static const char *const names[] = {"mirror.db", "mirror.db-wal"};
    for (size_t i = 0; i < 2; i++) {
        char path[700];
        snprintf(path, sizeof(path), "%s/%s", mdir, names[i]);
        ck_assert_msg(!file_has(path, text), "\"%s\" is still in %s", text, path);
    }
}

/* The <li id="cN"> elements of serialised HTML with the id of the <li>
 * each is nested in (0 at the top). Returns how many. */
static size_t li_tree(const char *html, uint64_t *ids, uint64_t *parents, size_t max)
{
    uint64_t stack[1100];
    size_t depth = 0, n = 0;
    for (const char *p = html; (p = strchr(p, '<')) != NULL; p++) {
        if (strncmp(p, "<li", 3) == 0 && (p[3] == ' ' || p[3] == '>')) {
            const char *end = strchr(p, '>');
            const char *idp = strstr(p, " id=\"c");
            uint64_t id = idp && end && idp < end ? strtoull(idp + 6, NULL, 10) : 0;
            ck_assert_uint_lt(depth, 1100);
            if (n < max) {
                ids[n] = id;
                parents[n] = depth ? stack[depth - 1] : 0;
                n++;
            }
            stack[depth++] = id;
        } else if (strncmp(p, "</li>", 5) == 0) {
            ck_assert_uint_gt(depth, 0);
            depth--;
        }
    }
    ck_assert_uint_eq(depth, 0);
    return n;
}

/* The page (the mirror's HTML, or Chromium's DOM of it) shows exactly what
 * a reader may see of m: each shown comment once, nested under its parent,
 * with its body or its placeholder; nothing of what is not shown. */
static void assert_page(const struct model *m, const char *html)
{
    uint64_t ids[64], parents[64];
    size_t n = li_tree(html, ids, parents, 64);
    size_t shown = 0;
    for (size_t i = 0; i < m->n; i++) {
        const struct mc *c = &m->c[i];
        size_t k = 0;
        while (k < n && ids[k] != c->id)
            k++;
        if (!model_shown(m, i)) {
            ck_assert_msg(k == n, "comment %" PRIu64 " (%s) is on the page", c->id,
                          status_name(c->status));
            continue;
        }
        shown++;
        ck_assert_msg(k < n, "comment %" PRIu64 " (%s) is not on the page", c->id,
                      status_name(c->status));
        ck_assert_msg(parents[k] == c->parent,
                      "comment %" PRIu64 " under %" PRIu64 ", not %" PRIu64, c->id, parents[k],
                      c->parent);
        char want[200];
        if (c->status == THREADSYNC__STATUS__VISIBLE) {
            dom_text(c->body, want, sizeof(want));
            ck_assert_msg(strstr(html, want), "body of %" PRIu64 " missing: %s", c->id, c->body);
        } else {
            snprintf(want, sizeof(want), "id=\"c%" PRIu64 "\"><p class=\"ts-placeholder\">%s</p>",
                     c->id, c->status == THREADSYNC__STATUS__DELETED ? "[deleted]" : "[removed]");
            ck_assert_msg(strstr(html, want), "no placeholder %s", want);
        }
    }
    ck_assert_uint_eq(n, shown);
    for (size_t i = 0; i < m->n; i++) {
        const struct mc *c = &m->c[i];
        char text[200];
        for (size_t g = 0; g < c->n_gone; g++) {
            dom_text(c->gone[g], text, sizeof(text));
            ck_assert_msg(!strstr(html, text), "gone text on the page: %s", c->gone[g]);
        }
        if (c->status != THREADSYNC__STATUS__VISIBLE) {
            dom_text(c->body, text, sizeof(text));
            ck_assert_msg(!strstr(html, text), "text of a %s comment on the page: %s",
                          status_name(c->status), c->body);
        }
    }
    for (size_t s = 0; s < m->n_secrets; s++)
        ck_assert_msg(!strstr(html, m->secrets[s]), "secret on the page: %s", m->secrets[s]);
    char count[64];
    size_t v = model_visible(m);
    snprintf(count, sizeof(count), ">%zu comment%s<", v, v == 1 ? "" : "s");
    ck_assert_msg(strstr(html, count), "no %s", count);
}

/* text as the mirror's JSON writes it. */
static void json_text(const char *text, char *out, size_t len)
{
    size_t n = 0;
    for (const char *p = text; *p && n + 8 < len; p++) {
        const char *rep = *p == '"'    ? "\\\""
                          : *p == '\\' ? "\\\\"
                          : *p == '\n' ? "\\n"
                          : *p == '<'  ? "\\u003c"
                          : *p == '>'  ? "\\u003e"
                          : *p == '&'  ? "\\u0026"
                                       : NULL;
        if (rep) {
            memcpy(out + n, rep, strlen(rep));
            n += strlen(rep);
        } else {
            out[n++] = *p;
        }
    }
    out[n] = '\0';
}

/* The JSON holds every comment with its status, and a body only for the
 * visible ones. */
static void assert_json(const struct model *m, const char *json)
{
    const char *list = strstr(json, "\"comments\":[");
    ck_assert_ptr_nonnull(list);
    for (size_t i = 0; i < m->n; i++) {
        const struct mc *c = &m->c[i];
        char head[64], want[220];
        snprintf(head, sizeof(head), "{\"id\":%" PRIu64 ",", c->id);
        const char *p = strstr(list, head);
        ck_assert_msg(p, "comment %" PRIu64 " missing from the JSON", c->id);
        size_t len = strcspn(p, "}");
        snprintf(want, sizeof(want), "\"status\":\"%s\"", status_name(c->status));
        ck_assert_msg(memmem(p, len, want, strlen(want)), "%.*s: want %s", (int)len, p, want);
        char text[200];
        json_text(c->body, text, sizeof(text));
        snprintf(want, sizeof(want), "\"body\":\"%s\"",
                 c->status == THREADSYNC__STATUS__VISIBLE ? text : "");
        ck_assert_msg(memmem(p, len, want, strlen(want)), "%.*s: want %s", (int)len, p, want);
        if (c->status != THREADSYNC__STATUS__VISIBLE)
            ck_assert_msg(!strstr(json, text), "hidden text in the JSON: %s", c->body);
        for (size_t g = 0; g < c->n_gone; g++) {
            json_text(c->gone[g], text, sizeof(text));
            ck_assert_msg(!strstr(json, text), "gone text in the JSON: %s", c->gone[g]);
        }
    }
    for (size_t s = 0; s < m->n_secrets; s++)
        ck_assert_msg(!strstr(json, m->secrets[s]), "secret in the JSON: %s", m->secrets[s]);
    char want[64];
    snprintf(want, sizeof(want), "\"count\":%zu}", model_visible(m));
    ck_assert_msg(strstr(json, want), "no %s", want);
}

/* The database rows: every comment, public view only. */
static void assert_rows(const struct model *m)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/mirror.db", mdir);
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt *st;
    ck_assert_int_eq(sqlite3_prepare_v2(db,
                                        "SELECT c.status, c.author_name, c.body, c.parent_id, "
                                        "t.comment_count FROM comments c JOIN threads t ON "
                                        "t.id = c.thread_id WHERE c.id = ?1 AND t.key = ?2",
                                        -1, &st, NULL),
                     SQLITE_OK);
    for (size_t i = 0; i < m->n; i++) {
        const struct mc *c = &m->c[i];
        sqlite3_bind_int64(st, 1, (sqlite3_int64)c->id);
        sqlite3_bind_text(st, 2, m->key, -1, SQLITE_STATIC);
        ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
        ck_assert_str_eq((const char *)sqlite3_column_text(st, 0), status_name(c->status));
        int vis = c->status == THREADSYNC__STATUS__VISIBLE;
        ck_assert_str_eq((const char *)sqlite3_column_text(st, 2), vis ? c->body : "");
        if (!vis)
            ck_assert_str_eq((const char *)sqlite3_column_text(st, 1), "");
        ck_assert_uint_eq((uint64_t)sqlite3_column_int64(st, 3), c->parent);
        ck_assert_uint_eq((uint64_t)sqlite3_column_int64(st, 4), model_visible(m));
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    ck_assert_int_eq(sqlite3_prepare_v2(db,
                                        "SELECT count(*) FROM comments WHERE thread_id = "
                                        "(SELECT id FROM threads WHERE key = ?1)",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, m->key, -1, SQLITE_STATIC);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    ck_assert_uint_eq((uint64_t)sqlite3_column_int64(st, 0), m->n);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* Waits until a running mirror has committed and rendered m's last change. */
static void wait_rendered(const struct model *m)
{
    uint64_t end = ts_test_now_ms() + 30000;
    while (db_meta("rendered_seq") < m->seq)
        ck_assert_msg(ts_test_poll(end),
                      "mirror did not render seq %" PRIu64 " (cursor %" PRIu64 ")", m->seq,
                      db_cursor());
}

/* Everything a reader may see of m, in the mirror's rows, JSON and HTML,
 * the count the server's, and verify passing. */
static void assert_mirror(const struct model *m)
{
    assert_rows(m);
    char path[1024];
    thread_path(m->key, "json", path, sizeof(path));
    char *json = slurp(path);
    assert_json(m, json);
    free(json);
    thread_path(m->key, "html", path, sizeof(path));
    char *html = slurp(path);
    assert_page(m, html);
    free(html);
    ck_assert_uint_eq(server_count(m->key), model_visible(m));
    for (size_t s = 0; s < m->n_secrets; s++)
        assert_nowhere(m->secrets[s]);
    for (size_t i = 0; i < m->n; i++)
        for (size_t g = 0; g < m->c[i].n_gone; g++)
            assert_nowhere(m->c[i].gone[g]);
    verify_ok(0, 0);
}

START_TEST(test_moderation_followed_live)
{
    start(NULL);
    static struct model m;
    memset(&m, 0, sizeof(m));
    snprintf(m.key, sizeof(m.key), "mod/live");
    struct mc *a = model_post(&m, NULL, "Ann", "alpha root words");
    struct mc *b = model_post(&m, a, "Bob", "bravo reply words");
    struct mc *c = model_post(&m, b, "Cy", "charlie nested words");
    struct mc *d = model_post(&m, NULL, "Dee", "delta lone words");
    struct mc *e = model_post(&m, NULL, "Eve", "echo original words");
    struct mc *f = model_post(&m, NULL, "Fay", "foxtrot doomed words");
    struct mc *h = model_post(&m, f, "Hal", "hotel reply to foxtrot");
    pid_t live = cli_start("mirror", "live1", NULL);
    wait_rendered(&m);
    assert_mirror(&m);

    /* hidden with a visible reply: "[removed]" with the reply beneath */
    model_moderate(&m, b, "hide", THREADSYNC__STATUS__HIDDEN);
    wait_rendered(&m);
    assert_mirror(&m);
    model_moderate(&m, b, "unhide", THREADSYNC__STATUS__VISIBLE);
    wait_rendered(&m);
    assert_mirror(&m);
    /* the author's edit, with the key the post printed */
    model_author_edit(&m, e, "echo edited words", 0);
    wait_rendered(&m);
    assert_mirror(&m);
    char path[1024];
    thread_path(m.key, "html", path, sizeof(path));
    char *html = slurp(path);
    ck_assert_msg(strstr(html, "ts-edited"), "no edited mark");
    free(html);
    /* deleted by a moderator: "[deleted]" with both levels beneath */
    model_moderate(&m, a, "delete", THREADSYNC__STATUS__DELETED);
    wait_rendered(&m);
    assert_mirror(&m);

    /* Stopped, while a leaf is hidden and an author deletes; restarted. */
    kill(live, SIGINT);
    ck_assert_int_eq(cli_wait(live, 30), 0);
    uint64_t stopped_at = db_cursor();
    model_moderate(&m, d, "hide", THREADSYNC__STATUS__HIDDEN);
    model_author_delete(&m, f);
    live = cli_start("mirror", "live2", NULL);
    wait_rendered(&m);
    assert_mirror(&m);

    /* Pre-moderation: a pending post never shows, nor an author's edit
     * waiting for approval, until a moderator approves them. */
    model_thread(&m, "premoderate");
    struct mc *g = model_post(&m, NULL, "Gus", "golf pending words");
    ck_assert_int_eq(g->status, THREADSYNC__STATUS__PENDING);
    wait_rendered(&m);
    assert_mirror(&m);
    model_author_edit(&m, h, "hotel edited while premoderated", 1);
    wait_rendered(&m);
    assert_mirror(&m);
    model_moderate(&m, g, "approve", THREADSYNC__STATUS__VISIBLE);
    model_moderate(&m, h, "approve", THREADSYNC__STATUS__VISIBLE);
    wait_rendered(&m);
    assert_mirror(&m);
    /* a hidden leaf under a deleted grandparent */
    model_moderate(&m, c, "hide", THREADSYNC__STATUS__HIDDEN);
    wait_rendered(&m);
    assert_mirror(&m);
    kill(live, SIGINT);
    ck_assert_int_eq(cli_wait(live, 30), 0);
    snprintf(path, sizeof(path), "%s/live2.err", node.dir);
    char *err = slurp(path);
    ck_assert_uint_eq(field(err, "from="), stopped_at);
    ck_assert_uint_eq(field(err, "snapshots="), 0);
    free(err);

    /* The whole history again (a duplicated batch, many times over):
     * nothing changes, nothing is rendered, hidden text stays away. */
    int64_t before = html_mtime(m.key);
    sql_exec("UPDATE meta SET value = 0 WHERE key = 'last_seq'");
    mirror_once(&err);
    ck_assert_uint_eq(field(err, "from="), 0);
    ck_assert_uint_ge(field(err, "events="), m.n);
    ck_assert_uint_eq(field(err, "snapshots="), 0);
    ck_assert_uint_eq(field(err, "rendered="), 0);
    free(err);
    ck_assert_int_eq(html_mtime(m.key), before);
    ck_assert_uint_eq(db_cursor(), m.seq);
    assert_mirror(&m);
}
END_TEST

START_TEST(test_moderation_before_snapshot)
{
    const char *extra[] = {"--evlog-max-events", "4", NULL};
    start(extra);
    static struct model m;
    memset(&m, 0, sizeof(m));
    snprintf(m.key, sizeof(m.key), "mod/snapshot");
    struct mc *a = model_post(&m, NULL, "Ann", "alpha snapshot root");
    struct mc *b = model_post(&m, a, "Bob", "bravo under alpha");
    model_post(&m, b, "Cy", "charlie under bravo");
    struct mc *d = model_post(&m, NULL, "Dee", "delta alone");
    struct mc *e = model_post(&m, NULL, "Eve", "echo before the edit");
    char *err;
    mirror_once(&err);
    ck_assert_uint_eq(field(err, "snapshots="), 1);
    free(err);
    assert_mirror(&m);
    uint64_t cursor = db_cursor();

    /* While the mirror is stopped: moderation, then enough posts to push
     * every moderation event out of the retained window. */
    model_moderate(&m, b, "hide", THREADSYNC__STATUS__HIDDEN);
    model_moderate(&m, a, "delete", THREADSYNC__STATUS__DELETED);
    model_author_edit(&m, e, "echo after the edit", 0);
    model_moderate(&m, d, "hide", THREADSYNC__STATUS__HIDDEN);
    model_thread(&m, "premoderate");
    model_post(&m, NULL, "Gus", "golf never approved");
    uint64_t seq = 0;
    for (int i = 0; i < 6; i++)
        post_one("mod/filler", 0, "Fil", "filler", &seq);
    mirror_once(&err);
    ck_assert_uint_eq(field(err, "from="), cursor);
    ck_assert_uint_eq(field(err, "snapshots="), 1);
    ck_assert_msg(strstr(err, "taking a snapshot"), "%.2000s", err);
    free(err);
    ck_assert_uint_eq(db_cursor(), seq);
    assert_mirror(&m);

    /* A new mirror, from nothing, ends with the same bytes. */
    char first[512];
    snprintf(first, sizeof(first), "%s", mdir);
    snprintf(mdir, sizeof(mdir), "%s/mirror-new", node.dir);
    mirror_once(&err);
    ck_assert_uint_eq(field(err, "snapshots="), 1);
    free(err);
    assert_mirror(&m);
    assert_same_files(first, mdir, m.key);
    assert_same_files(first, mdir, "mod/filler");
}
END_TEST

/* 1 when a Get of key as token answers with text somewhere in it. */
static int server_get_has(const char *token, const char *key, const char *text)
{
    struct ts_raw *r;
    ck_assert_int_eq(ts_raw_connect(node.addr, node.ca, TS_ALPN, &r), TS_OK);
    int role;
    ck_assert_int_eq(ts_raw_hello(r, token, &role), TS_OK);
    Threadsync__Frame *in = ts_raw_get(r, 1, key, 10000);
    ck_assert_int_eq(in->msg_case, THREADSYNC__FRAME__MSG_RESULT);
    uint8_t *buf;
    size_t len;
    ck_assert_int_eq(ts_frame_encode(in, &buf, &len), TS_OK);
    int found = memmem(buf, len, text, strlen(text)) != NULL;
    free(buf);
    ts_frame_free(in);
    ts_raw_close(r);
    return found;
}

START_TEST(test_moderator_token_mirror_keeps_public_view)
{
    start(NULL);
    static struct model m;
    memset(&m, 0, sizeof(m));
    snprintf(m.key, sizeof(m.key), "mod/moderator-mirror");
    const char *email = "ann.private@example.org";
    struct mc *a = model_post_as(&m, NULL, "Ann", email, "alpha with an e-mail");
    model_secret(&m, email);
    struct mc *b = model_post(&m, a, "Bob", "bravo soon hidden");
    model_post(&m, b, "Cy", "charlie stays visible");
    /* The moderator's mirror, first with everything visible. */
    mirror_token = mod_file;
    mirror_once(NULL);
    assert_mirror(&m);

    model_moderate(&m, b, "hide", THREADSYNC__STATUS__HIDDEN);
    model_thread(&m, "premoderate");
    model_post(&m, NULL, "Gus", "golf pending for moderators only");
    /* The moderator's connection is sent all of it ... */
    ck_assert(server_get_has(node.moderator_token, m.key, email));
    ck_assert(server_get_has(node.moderator_token, m.key, "bravo soon hidden"));
    ck_assert(server_get_has(node.moderator_token, m.key, "golf pending for moderators only"));
    /* ... the mirror keeps only what a reader may see, and verifies. */
    mirror_once(NULL);
    assert_mirror(&m);

    /* A reader's mirror of the same node has the same files. */
    char mod_dir[512];
    snprintf(mod_dir, sizeof(mod_dir), "%s", mdir);
    snprintf(mdir, sizeof(mdir), "%s/mirror-reader", node.dir);
    mirror_token = reader_file;
    mirror_once(NULL);
    assert_mirror(&m);
    assert_same_files(mod_dir, mdir, m.key);
}
END_TEST

/* Some installed font has a glyph for code point cp (fontconfig). */
static int font_covers(unsigned cp)
{
    char pattern[64];
    snprintf(pattern, sizeof(pattern), ":charset=%x", cp);
    const char *argv[] = {"/usr/bin/fc-list", pattern, "family", NULL};
    char *out = NULL;
    int code = ts_test_run(argv, NULL, NULL, &out);
    int ok = code == 0 && out && *out;
    free(out);
    return ok;
}

START_TEST(test_chromium_moderated_thread)
{
    enum { DEPTH = 30 };
    /* Without these the screenshot shows boxes (deploy/install-deps.sh
     * installs fonts-noto-color-emoji and fonts-wqy-microhei). */
    static const unsigned cps[] = {0x1F389, 0x1F1EB, 0x1F600, 0x5C71, 0x201C};
    for (size_t i = 0; i < sizeof(cps) / sizeof(cps[0]); i++)
        ck_assert_msg(font_covers(cps[i]), "no font for U+%04X: run deploy/install-deps.sh",
                      cps[i]);
    start(NULL);
    static struct model m;
    memset(&m, 0, sizeof(m));
    snprintf(m.key, sizeof(m.key), "site/\xc3\xa9t\xc3\xa9 mod\xc3\xa9r\xc3\xa9");
    static const char *const names[] = {"\xe5\xb1\xb1\xe7\x94\xb0", "Zo\xc3\xab", "Bob"};
    struct mc *root = model_post(&m, NULL, "Ann", "root words a moderator deletes");
    struct mc *chain[DEPTH], *prev = root;
    for (int d = 0; d < DEPTH; d++) {
        char body[200];
        snprintf(body, sizeof(body), "depth %d %s", d + 1, bodies[d % 6]);
        chain[d] = prev = model_post(&m, prev, names[d % 3], body);
    }
    struct mc *leaf = model_post(&m, chain[5], "Mal", "hidden leaf words");
    model_post(&m, NULL, "Ann", "Another root \xf0\x9f\x8e\x89 \xe2\x80\x9cquoted\xe2\x80\x9d");
    model_moderate(&m, root, "delete", THREADSYNC__STATUS__DELETED);
    model_author_delete(&m, chain[9]);
    model_moderate(&m, chain[19], "hide", THREADSYNC__STATUS__HIDDEN);
    model_moderate(&m, leaf, "hide", THREADSYNC__STATUS__HIDDEN);
    mirror_once(NULL);
    assert_mirror(&m);

    char html[1024];
    thread_path(m.key, "html", html, sizeof(html));
    char *dom = chromium_render(html, "mirror-thread-moderated.png");
    /* Chromium parsed the same tree: placeholders where the deleted and
     * hidden comments stood, every reply nested beneath its parent, no
     * hidden text anywhere. */
    assert_page(&m, dom);
    ck_assert_int_eq(li_depth(dom), DEPTH + 1);
    ck_assert_msg(strstr(dom, "\xe5\xb1\xb1\xe7\x94\xb0") && strstr(dom, "Zo\xc3\xab"),
                  "authors missing");
    ck_assert_msg(strstr(dom, "e\xcc\x81 a\xcc\x8a n\xcc\x83"), "combining marks altered");
    free(dom);
}
END_TEST

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    Suite *s = suite_create("mirror");
    TCase *tc = tcase_create("moderation");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_moderation_followed_live);
    tcase_add_test(tc, test_moderation_before_snapshot);
    tcase_add_test(tc, test_moderator_token_mirror_keeps_public_view);
    tcase_add_test(tc, test_chromium_moderated_thread);
    suite_add_tcase(s, tc);
    return ts_check_run(s);
}
