/*
 * ts_cli_audit: `threadsync admin audit`, the audit trail (PROTOCOL.md,
 * "AuditList"), a row of ts_cli.c's command table:
 *
 *   threadsync [options] admin audit [--thread KEY] [--comment ID]
 *       [--after SEQ] [--json]
 *
 * Prints every entry of the answering node's trail (oldest first, from
 * --after), paging until the end: one line per entry,
 *
 *   seq=<seq> time_ms=<ms> actor=<name> action=<hide|...> [thread=<key>]
 *       [comment=<id>] [target=<name>] [until_ms=<ms>] [role=<role>]
 *       [reason="..."] [text_before="..."]
 *
 * or, with --json, one JSON object per line: the record export writes
 * (ts_cli_audit_write). Needs a moderator or admin token; exit codes as
 * ts_cli.h.
 */
#ifndef TS_CLI_AUDIT_H
#define TS_CLI_AUDIT_H

#include <stdio.h>

#include "threadsync.h"
#include "ts_cli.h"

/* Runs the command parsed into o against cfg's servers (fail-fast over the
 * list); returns the exit code. */
int ts_cli_audit_run(const struct ts_cli_opts *o, struct ts_client_config *cfg);

/* "approve", "hide", ... "token-revoke"; "unknown" otherwise. */
const char *ts_cli_audit_action_name(int action);

/* Writes e as one JSON Lines record {"type":"audit",...} (docs/IMPORT-EXPORT.md). */
void ts_cli_audit_write(FILE *out, const Threadsync__AuditEntry *e);

#endif
