/*
 * ts_auth: the tokens table, parsed whole before it replaces the old one so
 * a half-edited file never locks everybody out, and the first-start admin
 * token.
 *
 * Duplicate names and duplicate hashes are rejected at load: a name is what
 * logs and `ts_auth_add` identify a token by, and two entries with the same
 * hash would make the granted role depend on line order. Both checks sort a
 * copy of the entries, so a big file costs O(n log n), not O(n^2).
 */
#include "ts_auth.h"

#include "ts_err.h"
#include "ts_file.h"
#include "ts_hex.h"
#include "ts_log.h"
#include "ts_valid.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#define HASH_LEN 32
#define TOKEN_RAW_LEN 32
#define TOKEN_PREFIX "ts_"

static const char file_header[] =
    "# threadsync tokens: one per line, ROLE NAME SHA256HEX.\n"
    "# ROLE is reader|poster|moderator|admin; NAME is [A-Za-z0-9._-]{1,64}, unique;\n"
    "# an optional fourth field `gateway` lets the token send reader keys.\n"
    "# SHA256HEX is the SHA-256 of the token. Plain tokens are never stored here.\n";

struct entry {
    int role;
    int gateway; /* a fourth field `gateway`: may send Post.reader_key */
    size_t line;
    uint8_t hash[HASH_LEN];
    char name[TS_AUTH_NAME_MAX + 1];
};

struct table {
    size_t n, cap;
    struct entry *e;
};

struct ts_auth {
    struct table *table; /* never NULL */
};

static const char *const role_names[] = {"unspecified", "reader", "poster", "moderator", "admin"};

/* The least role each action needs; roles are ordered by privilege. */
static const int action_min_role[] = {
    [TS_AUTH_SUBSCRIBE] = THREADSYNC__ROLE__READER,
    [TS_AUTH_GET] = THREADSYNC__ROLE__READER,
    [TS_AUTH_POST] = THREADSYNC__ROLE__POSTER,
    [TS_AUTH_MODERATE] = THREADSYNC__ROLE__MODERATOR,
    [TS_AUTH_ADMIN] = THREADSYNC__ROLE__ADMIN,
};

const char *ts_auth_role_name(int role)
{
    if (role < THREADSYNC__ROLE__READER || role > THREADSYNC__ROLE__ADMIN)
        return role_names[0];
    return role_names[role];
}

int ts_auth_role_parse(const char *s)
{
    for (int r = THREADSYNC__ROLE__READER; r <= THREADSYNC__ROLE__ADMIN; r++)
        if (strcmp(s, role_names[r]) == 0)
            return r;
    return THREADSYNC__ROLE__ROLE_UNSPECIFIED;
}

int ts_auth_role_allows(int role, enum ts_auth_action action)
{
    if (role < THREADSYNC__ROLE__READER || role > THREADSYNC__ROLE__ADMIN)
        return 0;
    if ((unsigned)action >= sizeof(action_min_role) / sizeof(action_min_role[0]))
        return 0;
    return role >= action_min_role[action];
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int sha256(const char *data, size_t len, uint8_t out[HASH_LEN])
{
    unsigned int n = 0;
    if (EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) != 1 || n != HASH_LEN)
        return TS_E_INTERNAL;
    return TS_OK;
}

static void table_free(struct table *t)
{
    if (t == NULL)
        return;
    free(t->e);
    free(t);
}

static int table_push(struct table *t, const struct entry *e)
{
    if (t->n == t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 16;
        struct entry *ne = realloc(t->e, ncap * sizeof(*ne));
        if (ne == NULL)
            return TS_E_NOMEM;
        t->e = ne;
        t->cap = ncap;
    }
    t->e[t->n++] = *e;
    return TS_OK;
}

static void log_bad(const char *path, size_t line, const char *reason)
{
    char q[512];
    TS_ERROR("event=auth_bad_line file=%s line=%zu reason=%s", ts_log_quote(path, q, sizeof(q)),
             line, reason);
}

/* Splits s[0..len) at runs of spaces and tabs into at most max fields;
 * returns the field count, or max + 1 when there are more. */
static size_t split(const char *s, size_t len, const char **f, size_t *flen, size_t max)
{
    size_t n = 0, i = 0;
    while (i < len) {
        while (i < len && (s[i] == ' ' || s[i] == '\t'))
            i++;
        if (i == len)
            break;
        if (n == max)
            return max + 1;
        size_t start = i;
        while (i < len && s[i] != ' ' && s[i] != '\t')
            i++;
        f[n] = s + start;
        flen[n] = i - start;
        n++;
    }
    return n;
}

/* Parses one non-comment line into *e; returns NULL or the reason. */
static const char *parse_line(const char *s, size_t len, struct entry *e)
{
    const char *f[4];
    size_t fl[4];
    if (memchr(s, '\0', len) != NULL)
        return "nul_byte";
    size_t n = split(s, len, f, fl, 4);
    if (n != 3 && n != 4)
        return "want_3_fields";
    e->gateway = n == 4;
    if (n == 4 && (fl[3] != strlen("gateway") || memcmp(f[3], "gateway", fl[3]) != 0))
        return "bad_flag";
    char role[16];
    if (fl[0] >= sizeof(role))
        return "bad_role";
    memcpy(role, f[0], fl[0]);
    role[fl[0]] = '\0';
    e->role = ts_auth_role_parse(role);
    if (e->role == THREADSYNC__ROLE__ROLE_UNSPECIFIED)
        return "bad_role";
    if (!ts_valid_token_name(f[1], fl[1]))
        return "bad_name";
    memcpy(e->name, f[1], fl[1]);
    e->name[fl[1]] = '\0';
    if (fl[2] != (size_t)2 * HASH_LEN)
        return "bad_hash";
    for (size_t i = 0; i < HASH_LEN; i++) {
        int hi = hexval(f[2][2 * i]), lo = hexval(f[2][2 * i + 1]);
        if (hi < 0 || lo < 0)
            return "bad_hash";
        e->hash[i] = (uint8_t)(hi << 4 | lo);
    }
    return NULL;
}

static int cmp_name(const void *a, const void *b)
{
    const struct entry *x = *(const struct entry *const *)a, *y = *(const struct entry *const *)b;
    return strcmp(x->name, y->name);
}

static int cmp_hash(const void *a, const void *b)
{
    const struct entry *x = *(const struct entry *const *)a, *y = *(const struct entry *const *)b;
    return memcmp(x->hash, y->hash, HASH_LEN);
}

/* Reports the later line of the first duplicate under cmp, if any. */
static int find_dup(const struct table *t, int (*cmp)(const void *, const void *), size_t *line)
{
    if (t->n < 2)
        return 0;
    const struct entry **v = malloc(t->n * sizeof(*v));
    if (v == NULL)
        return -1;
    for (size_t i = 0; i < t->n; i++)
        v[i] = &t->e[i];
    qsort(v, t->n, sizeof(*v), cmp);
    int dup = 0;
    for (size_t i = 1; i < t->n; i++) {
        if (cmp(&v[i - 1], &v[i]) == 0) {
            size_t l = v[i]->line > v[i - 1]->line ? v[i]->line : v[i - 1]->line;
            if (!dup || l < *line)
                *line = l;
            dup = 1;
        }
    }
    free(v);
    return dup;
}

/* Parses text[0..len) (from path, for messages) into a new table. */
static int parse_table(const char *path, const char *text, size_t len, struct table **out)
{
    *out = NULL;
    struct table *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return TS_E_NOMEM;
    size_t lineno = 0, pos = 0;
    while (pos < len) {
        const char *s = text + pos;
        const char *nl = memchr(s, '\n', len - pos);
        size_t l = nl ? (size_t)(nl - s) : len - pos;
        pos += l + (nl != NULL);
        lineno++;
        if (l > 0 && s[l - 1] == '\r')
            l--;
        size_t i = 0;
        while (i < l && (s[i] == ' ' || s[i] == '\t'))
            i++;
        if (i == l || s[i] == '#')
            continue;
        struct entry e = {.line = lineno};
        const char *why = parse_line(s, l, &e);
        if (why != NULL) {
            log_bad(path, lineno, why);
            table_free(t);
            return TS_E_CONFIG;
        }
        if (table_push(t, &e) != TS_OK) {
            table_free(t);
            return TS_E_NOMEM;
        }
    }
    size_t dup_line = 0;
    int d = find_dup(t, cmp_name, &dup_line);
    const char *why = "duplicate_name";
    if (d == 0) {
        d = find_dup(t, cmp_hash, &dup_line);
        why = "duplicate_hash";
    }
    if (d != 0) {
        if (d > 0)
            log_bad(path, dup_line, why);
        table_free(t);
        return d > 0 ? TS_E_CONFIG : TS_E_NOMEM;
    }
    *out = t;
    return TS_OK;
}

static int read_table(const char *path, struct table **out, uint8_t **text, size_t *len)
{
    int rc = ts_file_read_all(path, TS_AUTH_FILE_MAX, text, len);
    if (rc == TS_E_NOT_FOUND)
        return rc; /* the callers decide whether that is an error */
    if (rc != TS_OK) {
        char q[512];
        TS_ERROR("event=auth_read_failed file=%s err=%s", ts_log_quote(path, q, sizeof(q)),
                 ts_err_name(rc));
        return rc;
    }
    rc = parse_table(path, (const char *)*text, *len, out);
    if (rc != TS_OK) {
        free(*text);
        *text = NULL;
    }
    return rc;
}

struct ts_auth *ts_auth_new(void)
{
    struct ts_auth *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return NULL;
    a->table = calloc(1, sizeof(*a->table));
    if (a->table == NULL) {
        free(a);
        return NULL;
    }
    return a;
}

void ts_auth_free(struct ts_auth *auth)
{
    if (auth == NULL)
        return;
    table_free(auth->table);
    free(auth);
}

int ts_auth_load(struct ts_auth *auth, const char *path)
{
    struct table *t;
    uint8_t *text;
    size_t len;
    int rc = read_table(path, &t, &text, &len);
    if (rc == TS_E_NOT_FOUND) {
        char q[512];
        TS_ERROR("event=auth_file_missing file=%s", ts_log_quote(path, q, sizeof(q)));
        return TS_E_CONFIG;
    }
    if (rc == TS_E_TOO_LARGE)
        return TS_E_CONFIG;
    if (rc != TS_OK)
        return rc;
    free(text);
    table_free(auth->table);
    auth->table = t;
    char q[512];
    TS_INFO("event=auth_loaded file=%s tokens=%zu", ts_log_quote(path, q, sizeof(q)), t->n);
    return TS_OK;
}

size_t ts_auth_count(const struct ts_auth *auth)
{
    return auth->table->n;
}

int ts_auth_hash_token(const char *token, uint8_t out[TS_AUTH_HASH_LEN])
{
    if (token == NULL)
        return TS_E_UNAUTHENTICATED;
    size_t len = strnlen(token, TS_TOKEN_MAX + 1);
    if (len == 0 || len > TS_TOKEN_MAX)
        return TS_E_UNAUTHENTICATED;
    if (sha256(token, len, out) != TS_OK)
        return TS_E_UNAUTHENTICATED;
    return TS_OK;
}

int ts_auth_entry(const struct ts_auth *auth, size_t i, int *role, const char **name)
{
    if (i >= auth->table->n)
        return TS_E_NOT_FOUND;
    if (role != NULL)
        *role = auth->table->e[i].role;
    if (name != NULL)
        *name = auth->table->e[i].name;
    return TS_OK;
}

int ts_auth_gateway(const struct ts_auth *auth, const char *name)
{
    for (size_t i = 0; i < auth->table->n; i++)
        if (strcmp(auth->table->e[i].name, name) == 0)
            return auth->table->e[i].gateway;
    return 0;
}

int ts_auth_check(const struct ts_auth *auth, const char *token, int *role, const char **name)
{
    uint8_t h[HASH_LEN];
    int rc = ts_auth_hash_token(token, h);
    if (rc == TS_OK)
        rc = ts_auth_check_hash(auth, h, role, name);
    OPENSSL_cleanse(h, sizeof(h));
    return rc;
}

int ts_auth_check_hash(const struct ts_auth *auth, const uint8_t h[TS_AUTH_HASH_LEN], int *role,
                       const char **name)
{
    const struct table *t = auth->table;
    /* No early exit and a branch-free select: the time taken depends on the
     * table's size, not on which entry (if any) matched. */
    size_t found = 0, any = 0;
    for (size_t i = 0; i < t->n; i++) {
        size_t hit = (size_t)(CRYPTO_memcmp(h, t->e[i].hash, HASH_LEN) == 0);
        size_t mask = (size_t)0 - hit;
        found = (found & ~mask) | (i & mask);
        any |= hit;
    }
    if (!any)
        return TS_E_UNAUTHENTICATED;
    if (role != NULL)
        *role = t->e[found].role;
    if (name != NULL)
        *name = t->e[found].name;
    return TS_OK;
}

int ts_auth_generate_token(char out[TS_AUTH_TOKEN_LEN + 1])
{
    static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    uint8_t raw[TOKEN_RAW_LEN];
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return TS_E_INTERNAL;
    memcpy(out, TOKEN_PREFIX, sizeof(TOKEN_PREFIX) - 1);
    char *p = out + sizeof(TOKEN_PREFIX) - 1;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < sizeof(raw); i++) {
        acc = (acc << 8) | raw[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            *p++ = b64url[(acc >> bits) & 63];
        }
    }
    if (bits > 0)
        *p++ = b64url[(acc << (6 - bits)) & 63];
    *p = '\0';
    OPENSSL_cleanse(raw, sizeof(raw));
    return TS_OK;
}

/* Formats `ROLE NAME HASH\n` for token into line (at least 160 bytes). */
static int format_line(int role, const char *name, const char *token, char *line, size_t size)
{
    uint8_t h[HASH_LEN];
    char hex[2 * HASH_LEN + 1];
    if (sha256(token, strlen(token), h) != TS_OK)
        return TS_E_INTERNAL;
    ts_hex_encode(h, HASH_LEN, hex);
    int n = snprintf(line, size, "%s %s %s\n", ts_auth_role_name(role), name, hex);
    return n > 0 && (size_t)n < size ? TS_OK : TS_E_INTERNAL;
}

int ts_auth_ensure_admin(const char *tokens_path, const char *admin_token_path, int *created)
{
    if (created != NULL)
        *created = 0;
    struct stat st;
    if (stat(tokens_path, &st) == 0)
        return TS_OK;
    if (errno != ENOENT)
        return TS_E_IO;

    char token[TS_AUTH_TOKEN_LEN + 2];
    char body[sizeof(file_header) + 160];
    int rc = ts_auth_generate_token(token);
    if (rc == TS_OK) {
        memcpy(body, file_header, sizeof(file_header) - 1);
        rc = format_line(THREADSYNC__ROLE__ADMIN, "admin", token, body + sizeof(file_header) - 1,
                         sizeof(body) - (sizeof(file_header) - 1));
    }
    if (rc == TS_OK) {
        strncat(token, "\n", sizeof(token) - strlen(token) - 1);
        rc = ts_file_write_atomic(admin_token_path, token, strlen(token), 0600);
    }
    if (rc == TS_OK)
        rc = ts_file_write_atomic(tokens_path, body, strlen(body), 0600);
    OPENSSL_cleanse(token, sizeof(token));
    char q1[512], q2[512];
    if (rc != TS_OK) {
        TS_ERROR("event=auth_admin_failed err=%s errno=%d", ts_err_name(rc), errno);
        return rc;
    }
    TS_INFO("event=auth_admin_created tokens=%s admin_token=%s",
            ts_log_quote(tokens_path, q1, sizeof(q1)),
            ts_log_quote(admin_token_path, q2, sizeof(q2)));
    if (created != NULL)
        *created = 1;
    return TS_OK;
}

int ts_auth_add(const char *tokens_path, int role, const char *name,
                char token_out[TS_AUTH_TOKEN_LEN + 1])
{
    if (role < THREADSYNC__ROLE__READER || role > THREADSYNC__ROLE__ADMIN ||
        !ts_valid_token_name(name, strlen(name)))
        return TS_E_INVALID_ARGUMENT;
    struct table *t = NULL;
    uint8_t *text = NULL;
    size_t len = 0;
    int rc = read_table(tokens_path, &t, &text, &len);
    if (rc == TS_E_NOT_FOUND) {
        text = NULL;
        len = 0;
    } else if (rc == TS_E_TOO_LARGE) {
        return TS_E_CONFIG;
    } else if (rc != TS_OK) {
        return rc;
    }
    for (size_t i = 0; t != NULL && i < t->n; i++) {
        if (strcmp(t->e[i].name, name) == 0) {
            table_free(t);
            free(text);
            return TS_E_EXISTS;
        }
    }
    table_free(t);

    char line[160];
    rc = ts_auth_generate_token(token_out);
    if (rc == TS_OK)
        rc = format_line(role, name, token_out, line, sizeof(line));
    char *body = NULL;
    size_t blen = 0;
    if (rc == TS_OK) {
        const char *head = text ? (const char *)text : file_header;
        size_t hlen = text ? len : sizeof(file_header) - 1;
        int need_nl = hlen > 0 && head[hlen - 1] != '\n';
        blen = hlen + (size_t)need_nl + strlen(line);
        body = malloc(blen + 1);
        if (body == NULL) {
            rc = TS_E_NOMEM;
        } else {
            memcpy(body, head, hlen);
            if (need_nl)
                body[hlen] = '\n';
            memcpy(body + hlen + need_nl, line, strlen(line) + 1);
        }
    }
    if (rc == TS_OK)
        rc = ts_file_write_atomic(tokens_path, body, blen, 0600);
    free(body);
    free(text);
    if (rc != TS_OK) {
        OPENSSL_cleanse(token_out, TS_AUTH_TOKEN_LEN + 1);
        token_out[0] = '\0';
        return rc;
    }
    char q[512];
    TS_INFO("event=auth_token_added file=%s name=%s role=%s",
            ts_log_quote(tokens_path, q, sizeof(q)), name, ts_auth_role_name(role));
    return TS_OK;
}
