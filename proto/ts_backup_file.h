/*
 * ts_backup_file: the backup file format, written once for the server that
 * produces it (server/ts_backup.c: Backup requests, threadsyncd --restore)
 * and the clients that store it (the CLI's `admin backup`).
 *
 * A backup is one file: a 56-byte header, then the store's snapshot as of
 * one seq:
 *
 *     "TSBKUP01"            8 bytes, magic and format version
 *     seq                   u64 big-endian: the store's last applied (Raft) index
 *     length                u64 big-endian: bytes of snapshot that follow
 *     sha256(snapshot)      32 bytes
 *     snapshot              length bytes
 *
 * A client receives the file in BackupChunks and checks the whole against
 * the BackupResult (size, SHA-256 of the file) and the header against the
 * result's seq (ts_backup_file_check_header); the server checks the whole
 * file before seeding a node from it (ts_backup_file_parse).
 */
#ifndef TS_BACKUP_FILE_H
#define TS_BACKUP_FILE_H

#include <stddef.h>
#include <stdint.h>

#define TS_BACKUP_FILE_HEADER 56

/* SHA-256 of a[0..alen) followed by b[0..blen) (b may be NULL with blen 0).
 * On an OpenSSL failure out is all zeros, which matches nothing, so a
 * reader reports damage rather than trusting it. */
void ts_backup_file_sha256(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
                           uint8_t out[32]);

/* Writes the header for a snapshot of len bytes as of seq. */
void ts_backup_file_header(uint8_t out[TS_BACKUP_FILE_HEADER], uint64_t seq,
                           const uint8_t *snapshot, size_t len);

/* Checks a header alone (a client that streams the file to disk): TS_OK
 * with *seq and *snapshot_len, or TS_E_BAD_FRAME when the magic is not
 * there. */
int ts_backup_file_check_header(const uint8_t header[TS_BACKUP_FILE_HEADER], uint64_t *seq,
                                uint64_t *snapshot_len);

/* Checks a whole backup file in buf[0..len): TS_OK with *seq and the
 * snapshot's place in buf; TS_E_BAD_FRAME (not a backup: magic, truncated or
 * trailing bytes) or TS_E_INVALID_ARGUMENT (digest mismatch: damaged). */
int ts_backup_file_parse(const uint8_t *buf, size_t len, uint64_t *seq, const uint8_t **snapshot,
                         size_t *snapshot_len);

#endif
