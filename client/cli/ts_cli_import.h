/*
 * ts_cli_import: the threadsync CLI's `import` command (README, "Import and
 * export"), self-contained like ts_cli_backup (its own option parsing and
 * client on a private loop):
 *
 *   threadsync [options] import --format wordpress|disqus|jsonl FILE
 *       [--key-from path|slug|id] [--with-pingbacks] [--strict]
 *       [--source NAME] [--renumber] [--batch-size N] [--quiet] [--json]
 *
 * The file is parsed as a stream (ts_import_wxr, ts_import_disqus,
 * ts_import_jsonl); comments are put in parent-first order (a reply whose
 * parent comes later in the file waits for it; spam and trash wait for a
 * reply, and are dropped when none comes), cut to threadsync's limits
 * (reported; refused with --strict), and sent N at a time (default 1000)
 * as Import requests, a few in flight on one connection. A parent missing
 * from the whole file makes its reply top level, with a warning (refused
 * with --strict). Malformed input stops the run with the line and column;
 * the batch being built is not sent. Running the same command again
 * completes an interrupted run: what was imported is reported existing.
 *
 * Exit codes as ts_cli_exit: 0 ok (refusals are counted and listed, not
 * failures), 1 refused by the server or bad input, 2 usage, 3 connection.
 */
#ifndef TS_CLI_IMPORT_H
#define TS_CLI_IMPORT_H

/* 1 when argv's first word that is not an option is "import". */
int ts_cli_import_wants(int argc, char *const argv[]);

/* Runs the command; returns the exit code. get_env: getenv or a stand-in. */
int ts_cli_import_main(int argc, char *const argv[], char *(*get_env)(const char *name));

#endif
