/*
 * ts_cli_conn: see ts_cli_conn.h.
 */
#include "ts_cli_conn.h"

#include "ts_cli.h"
#include "ts_err.h"

#include <stdlib.h>
#include <string.h>

int ts_cli_conn_init(struct ts_cli_conn *c, int argc)
{
    memset(c, 0, sizeof(*c));
    c->servers = calloc((size_t)argc + 1, sizeof(*c->servers));
    return c->servers ? TS_OK : TS_E_NOMEM;
}

int ts_cli_conn_takes_value(const char *a)
{
    return !strcmp(a, "--server") || !strcmp(a, "--ca") || !strcmp(a, "--token-file");
}

int ts_cli_conn_takes_value_or(const char *a, const char *const *own, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(a, own[i]))
            return 1;
    return ts_cli_conn_takes_value(a);
}

int ts_cli_conn_option(struct ts_cli_conn *c, const char *a, const char *v)
{
    if (!strcmp(a, "--server"))
        c->servers[c->n_servers++] = v;
    else if (!strcmp(a, "--ca"))
        c->ca = v;
    else if (!strcmp(a, "--token-file"))
        c->token_file = v;
    else
        return 0;
    return 1;
}

int ts_cli_conn_defaults(struct ts_cli_conn *c, char *(*get_env)(const char *name))
{
    if (c->n_servers == 0) {
        const char *env = get_env ? get_env("THREADSYNC_SERVER") : NULL;
        for (const char *p = env && *env ? env : TS_CLI_DEFAULT_SERVER; *p;) {
            size_t n = strcspn(p, ", ");
            if (n) {
                char **v = realloc(c->env_servers, (c->n_env + 1) * sizeof(*v));
                if (!v)
                    return TS_E_NOMEM;
                c->env_servers = v;
                if (!(v[c->n_env] = strndup(p, n)))
                    return TS_E_NOMEM;
                c->n_env++;
            }
            p += n;
            p += strspn(p, ", ");
        }
        const char **v = realloc(c->servers, (c->n_env + 1) * sizeof(*v));
        if (!v)
            return TS_E_NOMEM;
        c->servers = v;
        for (size_t i = 0; i < c->n_env; i++)
            c->servers[c->n_servers++] = c->env_servers[i];
    }
    const char *env_ca = get_env ? get_env("THREADSYNC_CA") : NULL;
    const char *env_tok = get_env ? get_env("THREADSYNC_TOKEN_FILE") : NULL;
    if (!c->ca)
        c->ca = env_ca && *env_ca ? env_ca : TS_CLI_DEFAULT_CA;
    if (!c->token_file)
        c->token_file = env_tok && *env_tok ? env_tok : TS_CLI_DEFAULT_TOKEN_FILE;
    return TS_OK;
}

int ts_cli_conn_config(struct ts_cli_conn *c, struct ts_client_config *cfg, char *err,
                       size_t errlen)
{
    if (!c->token && ts_cli_read_token(c->token_file, &c->token, err, errlen) != TS_OK)
        return TS_E_IO;
    memset(cfg, 0, sizeof(*cfg));
    cfg->servers = c->servers;
    cfg->n_servers = c->n_servers;
    cfg->ca_file = c->ca;
    cfg->token = c->token;
    cfg->client_name = "threadsync-cli";
    return TS_OK;
}

void ts_cli_conn_free(struct ts_cli_conn *c)
{
    for (size_t i = 0; i < c->n_env; i++)
        free(c->env_servers[i]);
    free(c->env_servers);
    free(c->servers);
    free(c->token);
    memset(c, 0, sizeof(*c));
}
