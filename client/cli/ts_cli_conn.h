/*
 * ts_cli_conn: the connection options of the self-contained commands
 * (import, export): --server HOST:PORT (repeatable), --ca FILE,
 * --token-file FILE, with THREADSYNC_SERVER (comma- or space-separated),
 * THREADSYNC_CA, THREADSYNC_TOKEN_FILE and ts_cli.h's defaults, and the
 * client configuration made from them.
 */
#ifndef TS_CLI_CONN_H
#define TS_CLI_CONN_H

#include <stddef.h>

#include "threadsync.h"

struct ts_cli_conn {
    const char **servers; /* owned array; strings argv's or env_servers' */
    size_t n_servers;
    char **env_servers;
    size_t n_env;
    const char *ca, *token_file;
    char *token; /* read by ts_cli_conn_config */
};

/* Zeroes c for argc arguments. TS_E_NOMEM. */
int ts_cli_conn_init(struct ts_cli_conn *c, int argc);

/* Takes a connection option a with value v: 1 when it was one. */
int ts_cli_conn_option(struct ts_cli_conn *c, const char *a, const char *v);

/* 1 when a is one of the options above (they take a value). */
int ts_cli_conn_takes_value(const char *a);

/* 1 when a is one of the options above or one of the command's own options
 * that take a value, own[0..n). */
int ts_cli_conn_takes_value_or(const char *a, const char *const *own, size_t n);

/* Fills what was not given from the environment and defaults. */
int ts_cli_conn_defaults(struct ts_cli_conn *c, char *(*get_env)(const char *name));

/* Reads the token and fills cfg (pointing into c). TS_OK, or TS_E_IO with
 * err. */
int ts_cli_conn_config(struct ts_cli_conn *c, struct ts_client_config *cfg, char *err,
                       size_t errlen);

void ts_cli_conn_free(struct ts_cli_conn *c);

#endif
