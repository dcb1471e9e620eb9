/*
 * ts_cli_export: the threadsync CLI's `export` command (README, "Import and
 * export"), self-contained like ts_cli_import:
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

/* 1 when argv's first word that is not an option is "export". */
int ts_cli_export_wants(int argc, char *const argv[]);

/* Runs the command; returns the exit code. */
int ts_cli_export_main(int argc, char *const argv[], char *(*get_env)(const char *name));

/* Writes a thread's lines (thread, then comments) as export does. */
void ts_cli_export_thread(FILE *out, const Threadsync__GetResult *g, int with_emails);

#endif
