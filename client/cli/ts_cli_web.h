/*
 * ts_cli_web: `threadsync web`, the web edge's command line and [web]
 * configuration file, over `threadsync mirror` (ts_cli_mirror_run_hooked)
 * and ts_web.
 *
 *   web [--config FILE] [--check-config] [--listen HOST:PORT] [--base PATH]
 *       [--post-token-file FILE] [--max-body BYTES] [--req-timeout-ms MS]
 *       [--max-conns N] [--max-conns-per-addr N] [--heartbeat-ms MS]
 *       [--ring-events N] [--no-gzip]
 *       --dir DIR [--server HOST:PORT]... [--ca FILE] [--token-file FILE]
 *       [--thread KEY]... [--all]
 *
 * Options given on the command line win over the file's. The mirror
 * options are `threadsync mirror`'s, with its environment defaults. Exit
 * codes are the mirror's; --check-config prints "config ok" and exits 0,
 * or the problem and 2.
 */
#ifndef TS_CLI_WEB_H
#define TS_CLI_WEB_H

/* 1 when argv names the web sub-command. */
int ts_cli_web_wants(int argc, char **argv);
/* Runs it to its end; the exit code. */
int ts_cli_web_main(int argc, char **argv);

#endif
