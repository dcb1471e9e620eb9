/*
 * ts_cli_export: the threadsync CLI's `export` command
 * (docs/IMPORT-EXPORT.md), a row of ts_cli.c's command table like
 * ts_cli_import:
 *
 *   threadsync [options] export --format jsonl (--all | --thread KEY...)
 *       [--with-emails] [--out FILE]
 *
 * Writes JSON Lines: an "export" header (format 1, the node's seq), then
 * each thread in id order as a "thread" line followed by its comments in
 * id order ("comment" lines), with every field the store keeps (ids,
 * times, statuses, versions, edit times, moderated_by; e-mails only with
 * --with-emails). Threads are read with Digest pages and Gets, a few in
 * flight on one connection; each thread is consistent as of its own Get
 * (stop writes for a copy of one instant). A thread too large for one Get
 * is reported and left out (exit code 1). With --all, the audit trail
 * follows, oldest first, as "audit" lines (ts_cli_audit_write).
 */
#ifndef TS_CLI_EXPORT_H
#define TS_CLI_EXPORT_H

#include <stdio.h>

#include "threadsync.pb-c.h"

#include "threadsync.h"
#include "ts_cli.h"

/* Runs the command with the parsed options and the client config main
 * built from them; returns the exit code. */
int ts_cli_export_run(const struct ts_cli_opts *o, struct ts_client_config *cfg);

/* Writes a thread's lines (thread, then comments) as export does. */
void ts_cli_export_thread(FILE *out, const Threadsync__GetResult *g, int with_emails);

#endif
