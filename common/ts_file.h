/*
 * ts_file: whole-file reads and crash-safe whole-file writes.
 *
 * ts_file_write_atomic() guarantees that after a crash at any point a reader
 * finds either the old content or the new content at path, never a mix or a
 * truncated file: the data goes to a temporary file in the same directory
 * (rename is only atomic within one file system), is fsync'd, renamed over
 * path, and the directory is fsync'd so the rename itself is durable. A crash
 * may leave a stray "<name>.tmp.XXXXXX" beside path; it is never read.
 *
 * Meant for small files written rarely (keys, certificates, token tables,
 * rendered mirror pages): each write costs two fsyncs.
 */
#ifndef TS_FILE_H
#define TS_FILE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Replaces path with data[0..len) and permission bits mode (exactly mode:
 * the umask does not apply). Returns TS_OK or TS_E_IO with errno saying why.
 * On an error path holds its old content (or still does not exist) and the
 * temporary is removed, except when only the final directory fsync failed:
 * then the new content is in place but may not survive a crash. Not safe
 * against two writers of the same path: the last rename wins. */
int ts_file_write_atomic(const char *path, const void *data, size_t len, mode_t mode);

/* Reads the whole of path into a new buffer *out (OUT, caller frees with
 * free()), *len bytes, followed by a NUL that *len does not count, so text
 * can be parsed in place. Returns TS_OK, TS_E_NOT_FOUND when path does not
 * exist, TS_E_TOO_LARGE when it holds more than max bytes (nothing is
 * allocated then), TS_E_NOMEM or TS_E_IO. On error *out is NULL. */
int ts_file_read_all(const char *path, size_t max, uint8_t **out, size_t *len);

/* Writes all of data[0..len) to fd, again after EINTR and short writes.
 * 0, or -1 with errno saying why. Async-signal-safe (write only): a forked
 * child may call it. */
int ts_file_write_full(int fd, const void *data, size_t len);

/* fsyncs the directory dir, which makes the renames, creations and removals
 * of entries in it durable: without this a crash can forget a rename even
 * though the file's data reached the disk. Returns TS_OK or TS_E_IO with
 * errno saying why. */
int ts_file_fsync_dir(const char *dir);

/* ts_file_fsync_dir() of the directory that holds path ("." for a bare
 * name). Same returns; TS_E_IO with ENAMETOOLONG when the directory's name
 * does not fit PATH_MAX. */
int ts_file_fsync_parent(const char *path);

#endif
