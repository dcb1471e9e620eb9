/*
 * ts_backup: backups of a running node and seeding a new node from one.
 *
 * A backup is one file: a header, then the store's snapshot
 * (ts_store_snapshot) as of one seq; the format is proto/ts_backup_file.h,
 * shared with the clients that store it.
 *
 * Serving (PROTOCOL.md "Backup"): an ADMIN's Backup request takes the
 * snapshot at once (so the copy is consistent: the loop applies nothing
 * while it is taken) and streams the whole file in BackupChunk frames under
 * backpressure (at most TS_BACKUP_WINDOW bytes queued on the connection;
 * resumed from the session's on_drain), then a Result{backup} with the
 * file's size and SHA-256 and the state digest of the same state. The
 * snapshot is held in memory until the stream ends: one copy of the store
 * per backup in flight, one backup per session at a time. StateDigest
 * answers ts_store_digest of the current state.
 *
 * Seeding (threadsyncd --restore): the file is checked (magic, length,
 * digest), its snapshot is loaded into a scratch store to prove it decodes
 * and stands for the header's seq, and ts_repl_seed_snapshot writes it as
 * raft's first snapshot, so the new node starts at that seq and numbers new
 * entries after it.
 */
#ifndef TS_BACKUP_H
#define TS_BACKUP_H

#include <stddef.h>
#include <stdint.h>

#include "threadsync.pb-c.h"

#define TS_BACKUP_CHUNK_DEFAULT (256u << 10)
#define TS_BACKUP_CHUNK_MAX (512u << 10)
#define TS_BACKUP_WINDOW (2u << 20)
/* Largest backup file --restore reads (the store must fit in memory). */
#define TS_BACKUP_FILE_MAX ((size_t)16 << 30)

struct ts_server;
struct ts_link;
struct ts_backup;
struct ts_repl_config;

/* Answers a Backup or StateDigest frame f (borrowed) from a session whose
 * role is role, on conn. status is on_frame's (a bad UTF-8 field). A
 * streaming backup is kept in *slot (which must be NULL for a new one:
 * otherwise the request is refused) until it finishes; the session passes
 * slot to ts_backup_drained from on_drain and frees it with
 * ts_backup_free in on_close. */
void ts_backup_request(struct ts_server *srv, struct ts_link *conn, int role,
                       const Threadsync__Frame *f, int status, struct ts_backup **slot);

/* The connection drained: sends the next chunks; sets *slot to NULL once
 * the stream finished (or failed) and the state is freed. */
void ts_backup_drained(struct ts_backup **slot);

/* Frees an unfinished backup (the connection closed). NULL is a no-op. */
void ts_backup_free(struct ts_backup *b);

/* --restore: seeds rcfg->data_dir (which must hold no raft data) from the
 * backup file at path, for the node rcfg describes (the config ts_repl_start
 * will get: ts_repl_seed_snapshot). Logs what it did or why not. TS_OK;
 * TS_E_IO / TS_E_NOT_FOUND (unreadable), TS_E_BAD_FRAME /
 * TS_E_INVALID_ARGUMENT (not a backup, damaged), TS_E_EXISTS (raft data
 * present), TS_E_BUSY, TS_E_NOMEM. */
int ts_backup_seed(const char *path, const struct ts_repl_config *rcfg);

#endif
