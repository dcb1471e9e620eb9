/*
 * ts_cli_import: the threadsync CLI's `import` command
 * (docs/IMPORT-EXPORT.md), a row of ts_cli.c's command table (its options
 * parsed there with the common ones) that runs a client on a private loop:
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

#include "threadsync.h"
#include "ts_cli.h"

/* Runs the command with the parsed options and the client config main
 * built from them (--timeout-ms, when given, replaces its request
 * timeout); returns the exit code. */
int ts_cli_import_run(const struct ts_cli_opts *o, struct ts_client_config *cfg);

#endif
