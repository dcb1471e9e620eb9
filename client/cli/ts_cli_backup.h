/*
 * ts_cli_backup: the threadsync CLI's `admin backup` and `admin digest`
 * commands: the file side of a backup (a temporary file, the checks, the
 * atomic rename) over libthreadsync's ts_sync_backup / ts_sync_state_digest,
 * which own the connection, the server list and the timeouts:
 *
 *   threadsync [options] admin backup --out FILE
 *   threadsync [options] admin digest
 *
 * options: the common ones (ts_cli.h, parsed with every other command by
 * ts_cli_parse: the server list is tried in order until one answers;
 * --timeout is the longest silence, also spelt --timeout-ms MS here).
 *
 * backup: asks one node for a Backup (PROTOCOL.md), writes the chunks to a
 * temporary file beside FILE (mode 0600: a backup holds e-mail addresses),
 * checks the size and SHA-256 the server reports at the end, fsyncs, and
 * renames it over FILE (then fsyncs the directory): FILE is either the old
 * content or a complete, verified backup. Prints seq, size, sha256, counts
 * and the state digest. digest: prints the node's StateDigest.
 *
 * Exit codes as ts_cli_exit: 0 ok, 1 refused by the server, 2 usage, 3
 * connection/TLS failure, local I/O error, or a backup that failed its
 * check.
 */
#ifndef TS_CLI_BACKUP_H
#define TS_CLI_BACKUP_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "threadsync.h"
#include "ts_cli.h"

/* Run the commands (from main.c's command table) with the parsed options
 * and the client config built from them; return the exit code. */
int ts_cli_backup_cmd(const struct ts_cli_opts *o, struct ts_client_config *cfg);
int ts_cli_digest_cmd(const struct ts_cli_opts *o, struct ts_client_config *cfg);

struct ts_cli_backup_info {
    uint64_t seq, size, threads, comments;
    char sha256[65], state_digest[65];
};

/* Takes a backup into out_path as described above, through cfg's servers
 * (tried once each, in order); timeout_ms is the longest silence from the
 * server (0: 30000). TS_OK with *info; a
 * protocol code with *detail (OUT, free with ts_msg_free; may be NULL) when
 * the server refused; TS_E_IO (local file), TS_E_INVALID_ARGUMENT (the
 * stream failed its check: nothing is left at out_path), or a connection
 * error. err gets a one-line reason on failure. */
int ts_cli_backup_run(const struct ts_client_config *cfg, unsigned timeout_ms, const char *out_path,
                      struct ts_cli_backup_info *info, Threadsync__Error **detail, char *err,
                      size_t errlen);

/* Asks for the StateDigest; TS_OK with *out (free with ts_msg_free). Errors
 * as ts_cli_backup_run. */
int ts_cli_backup_digest(const struct ts_client_config *cfg, unsigned timeout_ms,
                         Threadsync__StateDigestResult **out, Threadsync__Error **detail, char *err,
                         size_t errlen);

#endif
