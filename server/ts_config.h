/*
 * ts_config: threadsyncd's settings, from an INI file (inih) and from flags.
 *
 * Every setting is a key in a section of the file and also a flag; a flag
 * wins over the file, also on reload. The sections and keys:
 *
 *     [node]    id, data_dir
 *     [listen]  client, raft, advertise, addr_file
 *     [tls]     cert, key                  (paths; the key's contents are never read here)
 *     [auth]    tokens                     (path of the tokens file)
 *     [limits]  max_frame, heartbeat_ms, evlog_max_events, evlog_max_bytes,
 *               rate_author, rate_token, max_conns_per_addr,
 *               conn_output_budget, node_output_budget
 *     [metrics] listen                   ("" = off)
 *     [raft]    snapshot_threshold, snapshot_trailing
 *     [log]     level
 *
 * --restore FILE is a flag only (a one-time start-up step, never a setting
 * of a file): it lands in ts_server_config.restore_file.
 *
 * The flag of [sec] key is --key with '_' as '-', except where that would be
 * ambiguous or where the flag predates the file: --node-id, --listen,
 * --raft-listen, --log-level (ts_config_print_usage lists them all).
 *
 * Invariants: a value is validated when it is set, so a struct ts_config
 * holds only valid values; a file with any bad line (unknown section or key,
 * bad value, key given twice, syntax error, over-long line) is refused as a
 * whole and every bad line is reported as "FILE:LINE: reason". Unset keys keep
 * their defaults, which ts_server applies (0 / NULL in ts_server_config).
 *
 * Load: read once at start and on each SIGHUP; nothing here is on a hot path.
 * Not thread-safe; one owner.
 */
#ifndef TS_CONFIG_H
#define TS_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#include "ts_server.h"

/* What main should do after ts_config_parse_args(). */
enum ts_config_action {
    TS_CONFIG_RUN,     /* start the node */
    TS_CONFIG_CHECK,   /* --check-config FILE: print the effective config, exit 0 */
    TS_CONFIG_HELP,    /* --help */
    TS_CONFIG_VERSION, /* --version */
};

/* Where a value came from. */
enum ts_config_source { TS_CONFIG_DEFAULT = 0, TS_CONFIG_FILE, TS_CONFIG_FLAG };

/* Messages (errors, each "FILE:LINE: reason" or "--flag: reason") are
 * collected here, newline-separated, truncated to fit. */
#define TS_CONFIG_ERR_MAX 2048

struct ts_config;

/* An empty config: every key at its default, no file. NULL when out of
 * memory. Free with ts_config_free(). */
struct ts_config *ts_config_new(void);
void ts_config_free(struct ts_config *c);

/* Parses threadsyncd's command line (argv[0] is skipped) into c: records
 * every flag, then loads the file named by --config or --check-config (flags
 * keep their values). *action (OUT) says what to do. Returns TS_OK, or
 * TS_E_CONFIG with ts_config_error() saying why: TS_E_INVALID_ARGUMENT for a
 * usage error (unknown flag, bad flag value, stray argument), TS_E_CONFIG for
 * a file that does not load. Resets getopt's state, so it may be called more
 * than once per process. */
int ts_config_parse_args(struct ts_config *c, int argc, char **argv, enum ts_config_action *action);

/* Loads the INI file at path into c: keys set by a flag keep the flag's
 * value, other keys the file gives take the file's value. All or nothing:
 * on error c is unchanged. TS_OK, TS_E_CONFIG (a bad line: see
 * ts_config_error()), TS_E_IO (cannot be read), TS_E_NOMEM. c remembers path
 * for ts_config_reload(). */
int ts_config_load_file(struct ts_config *c, const char *path);

/* Sets one key as if given in a file at line 0 (src TS_CONFIG_FILE) or as a
 * flag (TS_CONFIG_FLAG). TS_OK; TS_E_NOT_FOUND for an unknown section/key;
 * TS_E_INVALID_ARGUMENT for a bad value (ts_config_error() says why). */
int ts_config_set(struct ts_config *c, const char *section, const char *key, const char *value,
                  enum ts_config_source src);

/* Rebuilds the configuration as the running node's SIGHUP sees it: a new
 * config with cur's flags, re-reading cur's file (if any). Logs one line per
 * key whose value changed, with action=apply (live: log.level,
 * limits.heartbeat_ms, limits.max_frame, auth.tokens) or
 * action=needs_restart. On TS_OK *out (OUT, caller frees) is the new config;
 * otherwise *out is NULL and cur's ts_config_error() holds the reasons. */
int ts_config_reload(struct ts_config *cur, struct ts_config **out);

/* The settings for ts_server_start(). Strings point into c: valid until
 * ts_config_free(c). Unset keys are 0 / NULL (ts_server's defaults). */
const struct ts_server_config *ts_config_server(const struct ts_config *c);

/* The built-in default of a setting (section and key as in the file), as
 * the table states it: the one place defaults are written, which
 * ts_server_start() reads for what a config leaves 0 / NULL. NULL when the
 * setting has no default value (the server derives one, e.g. from the data
 * directory) or is unknown. Static storage. */
const char *ts_config_default(const char *section, const char *key);

/* ts_config_default() of a numeric setting as a number; 0 when it has none. */
uint64_t ts_config_default_uint(const char *section, const char *key);

/* The log level name ("info" unless set). Static or owned by c. */
const char *ts_config_log_level(const struct ts_config *c);

/* The file given with --config / --check-config or loaded last; NULL if none. */
const char *ts_config_path(const struct ts_config *c);

/* The value of [section] key as text (NULL when unset) and where it came from. */
const char *ts_config_get(const struct ts_config *c, const char *section, const char *key,
                          enum ts_config_source *src);

/* The collected error messages of the last failing call ("" when none). */
const char *ts_config_error(const struct ts_config *c);

/* Writes the effective configuration as an INI file: every key, its value
 * (or its default, commented out) and where it came from. Values of secret
 * keys (inline secrets, none today) are printed as "********"; file paths
 * are printed as they are. */
void ts_config_print(const struct ts_config *c, FILE *out);

/* The usage text (every flag, with defaults). */
void ts_config_print_usage(FILE *out);

#endif
