/*
 * ts_config: every key from a file and from its flag, errors that name the
 * file, line and key, all-or-nothing loads, flags over the file (also on
 * reload), and --check-config's printout read back as a config.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ts_check_main.h"
#include "ts_config.h"
#include "ts_err.h"
#include "ts_frame.h"

static char dir[] = "/tmp/ts_config_test.XXXXXX";
static char path[128];

static void setup(void)
{
    strcpy(dir, "/tmp/ts_config_test.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/threadsyncd.conf", dir);
}

static void teardown(void)
{
    unlink(path);
    rmdir(dir);
}

static void write_conf(const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

/* Loads text into a new config; returns the load's result, *out the config. */
static int load(const char *text, struct ts_config **out)
{
    write_conf(text);
    *out = ts_config_new();
    ck_assert_ptr_nonnull(*out);
    return ts_config_load_file(*out, path);
}

/* Asserts that the error names "PATH:line:" and contains what. */
static void assert_error_at(const struct ts_config *c, int line, const char *what)
{
    char where[160];
    snprintf(where, sizeof(where), "%s:%d:", path, line);
    const char *e = ts_config_error(c);
    ck_assert_msg(strstr(e, where), "error '%s' lacks '%s'", e, where);
    ck_assert_msg(strstr(e, what), "error '%s' lacks '%s'", e, what);
}

/* Every key, with a value other than its default, and its flag. */
static const struct {
    const char *section, *key, *value, *flag;
} every[] = {
    {"node", "id", "7", "--node-id"},
    {"node", "data_dir", "/var/lib/ts", "--data-dir"},
    {"listen", "client", "127.0.0.1:0", "--listen"},
    {"listen", "raft", "node2.example:7521", "--raft-listen"},
    {"listen", "advertise", "ts.example:443", "--advertise"},
    {"listen", "addr_file", "/run/ts/addr", "--addr-file"},
    {"listen", "io_threads", "3", "--io-threads"},
    {"tls", "cert", "/etc/ts/server.pem", "--cert"},
    {"tls", "key", "/etc/ts/server.key", "--key"},
    {"auth", "tokens", "/etc/ts/tokens", "--tokens"},
    {"limits", "max_frame", "2097152", "--max-frame"},
    {"limits", "heartbeat_ms", "500", "--heartbeat-ms"},
    {"limits", "evlog_max_events", "1234", "--evlog-max-events"},
    {"limits", "evlog_max_bytes", "99999", "--evlog-max-bytes"},
    {"limits", "conn_output_budget", "131072", "--conn-output-budget"},
    {"limits", "node_output_budget", "8388608", "--node-output-budget"},
    {"metrics", "listen", "127.0.0.1:9100", "--metrics-listen"},
    {"raft", "snapshot_threshold", "100", "--snapshot-threshold"},
    {"raft", "snapshot_trailing", "20", "--snapshot-trailing"},
    {"log", "level", "debug", "--log-level"},
};
#define N_EVERY (sizeof(every) / sizeof(every[0]))

static void assert_every_value(const struct ts_config *c, enum ts_config_source src)
{
    const struct ts_server_config *s = ts_config_server(c);
    ck_assert_uint_eq(s->node_id, 7);
    ck_assert_str_eq(s->data_dir, "/var/lib/ts");
    ck_assert_str_eq(s->listen, "127.0.0.1:0");
    ck_assert_str_eq(s->raft_listen, "node2.example:7521");
    ck_assert_str_eq(s->advertise, "ts.example:443");
    ck_assert_str_eq(s->addr_file, "/run/ts/addr");
    ck_assert_uint_eq(s->io_threads, 3);
    ck_assert_str_eq(s->cert_file, "/etc/ts/server.pem");
    ck_assert_str_eq(s->key_file, "/etc/ts/server.key");
    ck_assert_str_eq(s->tokens_file, "/etc/ts/tokens");
    ck_assert_uint_eq(s->max_frame, 2097152);
    ck_assert_uint_eq(s->heartbeat_ms, 500);
    ck_assert_uint_eq(s->evlog_max_events, 1234);
    ck_assert_uint_eq(s->evlog_max_bytes, 99999);
    ck_assert_uint_eq(s->conn_output_budget, 131072);
    ck_assert_uint_eq(s->node_output_budget, 8388608);
    ck_assert_uint_eq(s->snapshot_threshold, 100);
    ck_assert_uint_eq(s->snapshot_trailing, 20);
    ck_assert_str_eq(s->metrics_listen, "127.0.0.1:9100");
    ck_assert_str_eq(ts_config_log_level(c), "debug");
    for (size_t i = 0; i < N_EVERY; i++) {
        enum ts_config_source got;
        const char *v = ts_config_get(c, every[i].section, every[i].key, &got);
        ck_assert_msg(v && !strcmp(v, every[i].value), "[%s] %s", every[i].section, every[i].key);
        ck_assert_int_eq(got, src);
    }
}

static char *every_key_file(void)
{
    static char text[4096];
    text[0] = '\0';
    const char *section = "";
    for (size_t i = 0; i < N_EVERY; i++) {
        char line[256];
        if (strcmp(section, every[i].section) != 0) {
            section = every[i].section;
            snprintf(line, sizeof(line), "\n# comment\n[%s]\n", section);
            strcat(text, line);
        }
        snprintf(line, sizeof(line), "%s = %s\n", every[i].key, every[i].value);
        strcat(text, line);
    }
    return text;
}

START_TEST(defaults_are_unset)
{
    struct ts_config *c = ts_config_new();
    const struct ts_server_config *s = ts_config_server(c);
    ck_assert_ptr_null(s->data_dir);
    ck_assert_ptr_null(s->listen);
    ck_assert_ptr_null(s->tokens_file);
    ck_assert_uint_eq(s->node_id, 0);
    ck_assert_uint_eq(s->max_frame, 0);
    ck_assert_str_eq(ts_config_log_level(c), "info");
    ck_assert_ptr_null(ts_config_path(c));
    ts_config_free(c);
}
END_TEST

START_TEST(every_key_from_file)
{
    struct ts_config *c;
    ck_assert_int_eq(load(every_key_file(), &c), TS_OK);
    assert_every_value(c, TS_CONFIG_FILE);
    ck_assert_str_eq(ts_config_path(c), path);
    ts_config_free(c);
}
END_TEST

START_TEST(every_key_from_flag)
{
    char *argv[2 * N_EVERY + 2];
    int argc = 0;
    argv[argc++] = "threadsyncd";
    for (size_t i = 0; i < N_EVERY; i++) {
        argv[argc++] = (char *)every[i].flag;
        argv[argc++] = (char *)every[i].value;
    }
    argv[argc] = NULL;
    struct ts_config *c = ts_config_new();
    enum ts_config_action action = TS_CONFIG_HELP;
    ck_assert_int_eq(ts_config_parse_args(c, argc, argv, &action), TS_OK);
    ck_assert_int_eq(action, TS_CONFIG_RUN);
    assert_every_value(c, TS_CONFIG_FLAG);
    ts_config_free(c);
}
END_TEST

START_TEST(io_threads_auto_none_and_bounds)
{
    struct ts_config *c;
    ck_assert_int_eq(load("[listen]\nio_threads = auto\n", &c), TS_OK);
    ck_assert_uint_eq(ts_config_server(c)->io_threads, 0); /* 0: auto */
    ts_config_free(c);
    ck_assert_int_eq(load("[listen]\nio_threads = 0\n", &c), TS_OK);
    ck_assert_uint_eq(ts_config_server(c)->io_threads, TS_SERVER_IO_INLINE);
    ts_config_free(c);
    ck_assert_int_eq(load("[listen]\nio_threads = 65\n", &c), TS_E_CONFIG);
    assert_error_at(c, 2, "io_threads");
    ts_config_free(c);
    ck_assert_int_eq(load("[listen]\nio_threads = some\n", &c), TS_E_CONFIG);
    assert_error_at(c, 2, "auto");
    ts_config_free(c);
}
END_TEST

/* A [limits] file with one line, refused at line 2 naming the key. */
static void assert_limits_refused(const char *line)
{
    char text[128];
    snprintf(text, sizeof(text), "[limits]\n%s\n", line);
    struct ts_config *c;
    ck_assert_int_eq(load(text, &c), TS_E_CONFIG);
    char key[64];
    snprintf(key, sizeof(key), "%.*s", (int)strcspn(line, " ="), line);
    assert_error_at(c, 2, key);
    ts_config_free(c);
}

/* PROTOCOL.md: 0 = unlimited, as "off"; a 0 in the field would mean the
 * default (64) instead. */
START_TEST(max_conns_per_addr_zero_and_off_are_unlimited)
{
    const char *values[] = {"0", "off"};
    for (size_t i = 0; i < 2; i++) {
        char text[64];
        snprintf(text, sizeof(text), "[limits]\nmax_conns_per_addr = %s\n", values[i]);
        struct ts_config *c;
        ck_assert_int_eq(load(text, &c), TS_OK);
        ck_assert_uint_eq(ts_config_server(c)->max_conns_per_addr, TS_SERVER_UNLIMITED);
        ts_config_free(c);
        char *argv[] = {"threadsyncd", "--max-conns-per-addr", (char *)values[i], NULL};
        c = ts_config_new();
        enum ts_config_action action;
        ck_assert_int_eq(ts_config_parse_args(c, 3, argv, &action), TS_OK);
        ck_assert_uint_eq(ts_config_server(c)->max_conns_per_addr, TS_SERVER_UNLIMITED);
        ts_config_free(c);
    }
    struct ts_config *c;
    ck_assert_int_eq(load("[limits]\nmax_conns_per_addr = 5\n", &c), TS_OK);
    ck_assert_uint_eq(ts_config_server(c)->max_conns_per_addr, 5);
    ts_config_free(c);
    assert_limits_refused("max_conns_per_addr = -1");
}
END_TEST

START_TEST(output_budgets_bounds)
{
    assert_limits_refused("conn_output_budget = 1000");
    assert_limits_refused("conn_output_budget = 67108864");
    assert_limits_refused("node_output_budget = 65536");
}
END_TEST

START_TEST(inline_comments_and_spacing)
{
    struct ts_config *c;
    ck_assert_int_eq(load("; leading comment\n[limits]\n  heartbeat_ms=750   ; why\n"
                          "[log]\nlevel:warn\n",
                          &c),
                     TS_OK);
    ck_assert_uint_eq(ts_config_server(c)->heartbeat_ms, 750);
    ck_assert_str_eq(ts_config_log_level(c), "warn");
    ts_config_free(c);
}
END_TEST

START_TEST(unknown_key_names_line)
{
    struct ts_config *c;
    ck_assert_int_eq(load("[node]\nid = 2\n\n[limits]\nhearbeat_ms = 500\n", &c), TS_E_CONFIG);
    assert_error_at(c, 5, "hearbeat_ms");
    ck_assert_ptr_nonnull(strstr(ts_config_error(c), "did you mean 'heartbeat_ms'"));
    /* all or nothing: the good line before it did not land */
    ck_assert_uint_eq(ts_config_server(c)->node_id, 0);
    ts_config_free(c);
}
END_TEST

START_TEST(unknown_section_names_line)
{
    struct ts_config *c;
    ck_assert_int_eq(load("[node]\nid = 2\n[lmits]\n[log]\nlevel = info\n", &c), TS_E_CONFIG);
    assert_error_at(c, 3, "[lmits]");
    ts_config_free(c);
    ck_assert_int_eq(load("[node]\n[limts]\nmax_frame = 70000\n", &c), TS_E_CONFIG);
    assert_error_at(c, 2, "[limts]");
    ts_config_free(c);
    ck_assert_int_eq(load("id = 2\n", &c), TS_E_CONFIG);
    assert_error_at(c, 1, "outside a section");
    ts_config_free(c);
}
END_TEST

static const struct {
    const char *section, *key, *value;
} bad[] = {
    {"node", "id", "0"},
    {"node", "id", "-1"},
    {"node", "id", "18446744073709551616"},
    {"node", "id", "12abc"},
    {"node", "id", "0x10"},
    {"listen", "client", "localhost:7420"},
    {"listen", "client", "127.0.0.1"},
    {"listen", "client", "127.0.0.1:65536"},
    {"listen", "raft", "noport"},
    {"listen", "advertise", ":7420"},
    {"limits", "max_frame", "65535"},
    {"limits", "max_frame", "67108865"},
    {"limits", "heartbeat_ms", "49"},
    {"limits", "heartbeat_ms", "3600001"},
    {"limits", "evlog_max_events", "0"},
    {"limits", "evlog_max_bytes", "many"},
    {"raft", "snapshot_threshold", "4294967296"},
    {"raft", "snapshot_trailing", "0"},
    {"metrics", "listen", "localhost:7422"},
    {"metrics", "listen", "127.0.0.1"},
    {"log", "level", "verbose"},
    {"log", "level", "INFO"},
    {"tls", "cert", ""},
};

START_TEST(bad_value_names_line_and_key)
{
    char text[256], key[80];
    snprintf(text, sizeof(text), "; line 1\n[%s]\n%s = %s\n", bad[_i].section, bad[_i].key,
             bad[_i].value);
    snprintf(key, sizeof(key), "[%s] %s: bad value", bad[_i].section, bad[_i].key);
    struct ts_config *c;
    ck_assert_int_eq(load(text, &c), TS_E_CONFIG);
    assert_error_at(c, 3, key);
    ck_assert_ptr_null(ts_config_get(c, bad[_i].section, bad[_i].key, NULL));
    ts_config_free(c);

    /* the same value as a flag is a usage error naming the flag */
    c = ts_config_new();
    ck_assert_int_eq(ts_config_set(c, bad[_i].section, bad[_i].key, bad[_i].value, TS_CONFIG_FLAG),
                     TS_E_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(ts_config_error(c), "bad value"));
    ts_config_free(c);
}
END_TEST

START_TEST(every_error_reported)
{
    struct ts_config *c;
    ck_assert_int_eq(load("[node]\nid = x\n[limits]\nmax_frame = 1\nbogus = 1\n", &c), TS_E_CONFIG);
    assert_error_at(c, 2, "[node] id");
    assert_error_at(c, 4, "[limits] max_frame");
    assert_error_at(c, 5, "bogus");
    ts_config_free(c);
}
END_TEST

START_TEST(duplicate_and_syntax_and_long_lines)
{
    struct ts_config *c;
    ck_assert_int_eq(load("[limits]\nheartbeat_ms = 100\nheartbeat_ms = 200\n", &c), TS_E_CONFIG);
    assert_error_at(c, 3, "first on line 2");
    ts_config_free(c);

    ck_assert_int_eq(load("[node]\nid = 3\njust some words\n", &c), TS_E_CONFIG);
    assert_error_at(c, 3, "syntax error");
    ts_config_free(c);

    char text[600] = "[tls]\ncert = /";
    memset(text + strlen(text), 'a', 300);
    strcat(text, "\n[log]\nlevel = debug\n");
    ck_assert_int_eq(load(text, &c), TS_E_CONFIG);
    assert_error_at(c, 2, "line longer");
    ck_assert_ptr_null(strstr(ts_config_error(c), ":3:")); /* the tail was not parsed as a line */
    ts_config_free(c);
}
END_TEST

START_TEST(failed_load_keeps_previous_values)
{
    struct ts_config *c;
    ck_assert_int_eq(load("[limits]\nheartbeat_ms = 300\n", &c), TS_OK);
    write_conf("[limits]\nheartbeat_ms = 900\nmax_frame = nope\n");
    ck_assert_int_eq(ts_config_load_file(c, path), TS_E_CONFIG);
    ck_assert_uint_eq(ts_config_server(c)->heartbeat_ms, 300);
    char missing[200];
    snprintf(missing, sizeof(missing), "%s/none.conf", dir);
    ck_assert_int_eq(ts_config_load_file(c, missing), TS_E_IO);
    ck_assert_ptr_nonnull(strstr(ts_config_error(c), missing));
    ck_assert_uint_eq(ts_config_server(c)->heartbeat_ms, 300);
    ts_config_free(c);
}
END_TEST

START_TEST(flags_override_file)
{
    write_conf("[limits]\nheartbeat_ms = 500\nmax_frame = 2097152\n[log]\nlevel = debug\n");
    /* flags before and after --config both win */
    char *argv[] = {"threadsyncd", "--heartbeat-ms", "777",   "--config",
                    path,          "--log-level",    "error", NULL};
    struct ts_config *c = ts_config_new();
    enum ts_config_action action;
    ck_assert_int_eq(ts_config_parse_args(c, 7, argv, &action), TS_OK);
    ck_assert_int_eq(action, TS_CONFIG_RUN);
    enum ts_config_source src;
    ck_assert_uint_eq(ts_config_server(c)->heartbeat_ms, 777);
    ts_config_get(c, "limits", "heartbeat_ms", &src);
    ck_assert_int_eq(src, TS_CONFIG_FLAG);
    ck_assert_str_eq(ts_config_log_level(c), "error");
    ck_assert_uint_eq(ts_config_server(c)->max_frame, 2097152); /* from the file */
    ts_config_get(c, "limits", "max_frame", &src);
    ck_assert_int_eq(src, TS_CONFIG_FILE);
    ts_config_free(c);
}
END_TEST

START_TEST(parse_args_actions_and_usage_errors)
{
    write_conf("[node]\nid = 5\n");
    struct ts_config *c = ts_config_new();
    enum ts_config_action action;
    char *check[] = {"threadsyncd", "--check-config", path, NULL};
    ck_assert_int_eq(ts_config_parse_args(c, 3, check, &action), TS_OK);
    ck_assert_int_eq(action, TS_CONFIG_CHECK);
    ck_assert_uint_eq(ts_config_server(c)->node_id, 5);
    ts_config_free(c);

    char *help[] = {"threadsyncd", "--help", NULL};
    char *version[] = {"threadsyncd", "--version", NULL};
    c = ts_config_new();
    ck_assert_int_eq(ts_config_parse_args(c, 2, help, &action), TS_OK);
    ck_assert_int_eq(action, TS_CONFIG_HELP);
    ck_assert_int_eq(ts_config_parse_args(c, 2, version, &action), TS_OK);
    ck_assert_int_eq(action, TS_CONFIG_VERSION);
    ts_config_free(c);

    static char *const usage_errors[][5] = {
        {"threadsyncd", "--bogus", NULL},
        {"threadsyncd", "--heartbeat-ms", "fast", NULL},
        {"threadsyncd", "--node-id", NULL},
        {"threadsyncd", "stray", NULL},
        {"threadsyncd", "--config", "a", "--check-config", "b"},
    };
    static const int argcs[] = {2, 3, 2, 2, 5};
    for (size_t i = 0; i < 5; i++) {
        c = ts_config_new();
        ck_assert_int_eq(ts_config_parse_args(c, argcs[i], (char **)usage_errors[i], &action),
                         TS_E_INVALID_ARGUMENT);
        ck_assert_str_ne(ts_config_error(c), "");
        ts_config_free(c);
    }

    char *badfile[] = {"threadsyncd", "--config", path, NULL};
    write_conf("[node]\nidd = 5\n");
    c = ts_config_new();
    ck_assert_int_eq(ts_config_parse_args(c, 3, badfile, &action), TS_E_CONFIG);
    assert_error_at(c, 2, "idd");
    ts_config_free(c);
}
END_TEST

START_TEST(reload_rereads_file_and_keeps_flags)
{
    write_conf("[limits]\nheartbeat_ms = 500\nmax_frame = 2097152\n");
    char *argv[] = {"threadsyncd", "--config", path, "--max-frame", "70000", NULL};
    struct ts_config *c = ts_config_new();
    enum ts_config_action action;
    ck_assert_int_eq(ts_config_parse_args(c, 5, argv, &action), TS_OK);

    write_conf("[limits]\nheartbeat_ms = 250\nmax_frame = 4194304\n[log]\nlevel = debug\n");
    struct ts_config *next;
    ck_assert_int_eq(ts_config_reload(c, &next), TS_OK);
    ck_assert_uint_eq(ts_config_server(next)->heartbeat_ms, 250);
    ck_assert_uint_eq(ts_config_server(next)->max_frame, 70000); /* the flag still wins */
    ck_assert_str_eq(ts_config_log_level(next), "debug");
    ck_assert_str_eq(ts_config_path(next), path);

    /* a bad file: no new config, the reasons are on the current one */
    write_conf("[limits]\nheartbeat_ms = 1\n");
    struct ts_config *third = (struct ts_config *)1;
    ck_assert_int_eq(ts_config_reload(next, &third), TS_E_CONFIG);
    ck_assert_ptr_null(third);
    assert_error_at(next, 2, "heartbeat_ms");
    ck_assert_uint_eq(ts_config_server(next)->heartbeat_ms, 250);
    ts_config_free(next);
    ts_config_free(c);
}
END_TEST

START_TEST(print_reads_back_as_the_same_config)
{
    struct ts_config *c;
    ck_assert_int_eq(load(every_key_file(), &c), TS_OK);
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    ts_config_print(c, mem);
    fclose(mem);
    for (size_t i = 0; i < N_EVERY; i++) {
        char line[256];
        snprintf(line, sizeof(line), "\n%s = %s ; file", every[i].key, every[i].value);
        ck_assert_msg(strstr(text, line), "printout lacks '%s'", line + 1);
    }
    struct ts_config *back;
    ck_assert_int_eq(load(text, &back), TS_OK);
    assert_every_value(back, TS_CONFIG_FILE);
    ts_config_free(back);
    ts_config_free(c);

    /* unset keys print their default, and the printout still loads */
    free(text);
    text = NULL;
    c = ts_config_new();
    mem = open_memstream(&text, &len);
    ts_config_print(c, mem);
    fclose(mem);
    ck_assert_ptr_nonnull(strstr(text, "\nheartbeat_ms = 10000 ; default"));
    ck_assert_ptr_nonnull(strstr(text, "\n; cert = ; unset"));
    ck_assert_int_eq(load(text, &back), TS_OK);
    ck_assert_uint_eq(ts_config_server(back)->max_frame, TS_FRAME_MAX_DEFAULT);
    ts_config_free(back);
    ts_config_free(c);
    free(text);
}
END_TEST

/* deploy/threadsyncd.conf documents every key, and the default it shows
 * (commented out, "; key = value") is the one the code uses. */
START_TEST(sample_config_documents_every_key_and_default)
{
    struct ts_config *c = ts_config_new();
    ck_assert_int_eq(ts_config_load_file(c, TS_SAMPLE_CONF), TS_OK);
    ts_config_free(c);

    char *defaults = NULL;
    size_t dlen = 0;
    FILE *mem = open_memstream(&defaults, &dlen);
    c = ts_config_new();
    ts_config_print(c, mem);
    fclose(mem);
    ts_config_free(c);

    FILE *f = fopen(TS_SAMPLE_CONF, "r");
    ck_assert_ptr_nonnull(f);
    char line[512], section[32] = "";
    int seen[N_EVERY] = {0};
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        if (sscanf(line, "[%31[^]]]", section) == 1)
            continue;
        const char *kv = strncmp(line, "; ", 2) ? line : line + 2;
        char key[64], value[256];
        if (sscanf(kv, "%63[a-z_] = %255s", key, value) != 2)
            continue;
        for (size_t i = 0; i < N_EVERY; i++) {
            if (strcmp(every[i].section, section) != 0 || strcmp(every[i].key, key) != 0)
                continue;
            seen[i] = 1;
            char dflt[320];
            snprintf(dflt, sizeof(dflt), "\n%s = ", key);
            const char *d = strstr(defaults, dflt);
            if (kv != line && d && strstr(d, " ; default")) { /* a commented default */
                char want[400];
                snprintf(want, sizeof(want), "\n%s = %s ; default", key, value);
                ck_assert_msg(strstr(defaults, want), "sample says '%s', the code another default",
                              kv);
            }
        }
    }
    fclose(f);
    for (size_t i = 0; i < N_EVERY; i++)
        ck_assert_msg(seen[i], "sample lacks [%s] %s", every[i].section, every[i].key);
    free(defaults);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("ts_config");
    TCase *tc = tcase_create("config");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, defaults_are_unset);
    tcase_add_test(tc, every_key_from_file);
    tcase_add_test(tc, every_key_from_flag);
    tcase_add_test(tc, io_threads_auto_none_and_bounds);
    tcase_add_test(tc, max_conns_per_addr_zero_and_off_are_unlimited);
    tcase_add_test(tc, output_budgets_bounds);
    tcase_add_test(tc, inline_comments_and_spacing);
    tcase_add_test(tc, unknown_key_names_line);
    tcase_add_test(tc, unknown_section_names_line);
    tcase_add_loop_test(tc, bad_value_names_line_and_key, 0, (int)(sizeof(bad) / sizeof(bad[0])));
    tcase_add_test(tc, every_error_reported);
    tcase_add_test(tc, duplicate_and_syntax_and_long_lines);
    tcase_add_test(tc, failed_load_keeps_previous_values);
    tcase_add_test(tc, flags_override_file);
    tcase_add_test(tc, parse_args_actions_and_usage_errors);
    tcase_add_test(tc, reload_rereads_file_and_keeps_flags);
    tcase_add_test(tc, print_reads_back_as_the_same_config);
    tcase_add_test(tc, sample_config_documents_every_key_and_default);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ts_check_run(suite());
}
