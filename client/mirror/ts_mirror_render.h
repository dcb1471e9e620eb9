/*
 * ts_mirror_render: a thread's ready-to-serve files in a mirror directory,
 * DIR/threads/<file>.json and DIR/threads/<file>.html.
 *
 * File names. <file> is the thread key made safe for any file system and
 * collision-free (two different keys never share a file):
 *   - every byte in [A-Za-z0-9_-], and '.' except as the first byte, is kept;
 *   - every other byte (including '/', '%', '~', a leading '.', and each byte
 *     of a multi-byte UTF-8 character) becomes '%' and two uppercase hex
 *     digits: "site/2021/a b" -> "site%2F2021%2Fa%20b";
 *   - when that encoding is longer than TS_MIRROR_NAME_PLAIN_MAX (150) bytes
 *     (a key may be 256 bytes, i.e. up to 768 encoded, but a file name may
 *     not exceed 255), <file> is the encoding cut at 150 bytes (never inside
 *     a %XX) followed by '~' and the 64 hex digits of SHA-256(key). Since '~'
 *     never appears in a plain encoding, long and short names cannot meet.
 * Web servers decode %XX in URLs, so a link to such a file escapes the '%'
 * itself (%252F).
 *
 * JSON (UTF-8, one object):
 *   {"thread":{"id","key","title","url","created_at_ms","locked",
 *              "comment_count","version"},
 *    "comments":[{"id","parent_id","author_name","body","created_at_ms",
 *                 "edited_at_ms","status","version"}, ...],   flat, id order
 *    "count":N}
 * Every comment is listed whatever its status (tombstones keep the tree);
 * author_name and body are "" unless status is "VISIBLE". count is the
 * number of VISIBLE comments, i.e. what the HTML page shows; it equals the
 * thread's comment_count when the mirror is consistent. Integers are
 * decimal; <, >, & are written as \u003c, \u003e, \u0026 so the JSON can be
 * inlined in a <script> block; bytes that are not UTF-8 become U+FFFD.
 *
 * HTML: a complete page, no JavaScript, inline CSS only, <meta
 * charset="utf-8">. The title links to the thread's url only when that is an
 * http(s) URL. Then "N comments" and the tree as nested <ol>/<li>, one <li
 * id="c<id>"> per comment shown:
 *   - VISIBLE: author, <time datetime="...Z"> in UTC, "edited" when it was,
 *     the body escaped (< > & " ') with line breaks kept (pre-wrap);
 *   - DELETED: not shown, unless something beneath it is shown: then
 *     "[deleted]" in its place, its replies beneath it;
 *   - HIDDEN, PENDING (or an unknown status): the same, with "[removed]".
 * A comment whose parent is not among the comments (or is not an earlier
 * id) is shown at the top level. Nesting is unbounded and rendered without
 * recursion, so 1,000 levels cost no C stack (browsers flatten very deep
 * trees on their own: Chromium's parser caps element depth at 512).
 *
 * Inputs are read during each call only. Load: linear in the thread's size
 * plus a sort of the comments by id; writes cost two fsyncs per file.
 */
#ifndef TS_MIRROR_RENDER_H
#define TS_MIRROR_RENDER_H

#include <stddef.h>
#include <stdint.h>

#include "threadsync.pb-c.h"

#include "ts_buf.h"

#define TS_MIRROR_NAME_PLAIN_MAX 150
/* Longest <file> (without extension) plus its NUL: 150 + '~' + 64 + 1. */
#define TS_MIRROR_NAME_SIZE 216

/* Writes <file> for key (rules above) and a NUL to out[TS_MIRROR_NAME_SIZE].
 * Returns TS_OK, TS_E_INVALID_ARGUMENT for an empty key, or TS_E_INTERNAL
 * when hashing fails. */
int ts_mirror_render_file_name(const char *key, char out[TS_MIRROR_NAME_SIZE]);

/* Builds the JSON, or the HTML, of a thread and its n comments (any order;
 * they are sorted by id here) into a new NUL-terminated buffer *out (OUT,
 * caller frees with free()) of *len bytes. TS_OK or TS_E_NOMEM. */
int ts_mirror_render_json(const Threadsync__Thread *t, const Threadsync__Comment *const *comments,
                          size_t n, char **out, size_t *len);
int ts_mirror_render_html(const Threadsync__Thread *t, const Threadsync__Comment *const *comments,
                          size_t n, char **out, size_t *len);

/* For pages built around the tree (the web edge, client/web): the <ol>
 * tree alone, as in the HTML file, appended to b; *visible (OUT) is the
 * number of VISIBLE comments. hooks may be NULL; with them:
 *   own: for a comment that is not VISIBLE, a stand-in to show in its place
 *        (a reader's own comment awaiting moderation: author and body set),
 *        marked "awaiting moderation"; NULL: the usual rules;
 *   after: writes more after a shown comment's article (a Reply link).
 * Both may be NULL. TS_OK or TS_E_NOMEM. */
struct ts_mirror_render_hooks {
    void *arg;
    const Threadsync__Comment *(*own)(void *arg, const Threadsync__Comment *c);
    void (*after)(void *arg, struct ts_buf *b, const Threadsync__Comment *c);
};
int ts_mirror_render_tree(struct ts_buf *b, const Threadsync__Comment *const *comments, size_t n,
                          const struct ts_mirror_render_hooks *hooks, uint64_t *visible);
/* s escaped for HTML text and attributes (html non-zero) or a JSON string's
 * inside, as the files are; and a comment time as the HTML shows it. */
void ts_mirror_render_text(struct ts_buf *b, const char *s, int html);
void ts_mirror_render_time(struct ts_buf *b, int64_t ms);

/* Renders both and writes DIR/threads/<file>.json then .html, each
 * atomically (temp file in the same directory, fsync, rename, fsync of the
 * directory), creating DIR/threads (0755) when missing. Files are 0644. On
 * a crash or error each file holds its old content or its new, never a mix;
 * the two may be one batch apart. TS_OK, TS_E_NOMEM, TS_E_IO (after a
 * TS_ERROR line with the path and errno) or as ts_mirror_render_file_name. */
int ts_mirror_render_thread(const char *dir, const Threadsync__Thread *t,
                            const Threadsync__Comment *const *comments, size_t n);

/* Many threads' files at once, for a big flush (a first sync writes every
 * thread). Each file is replaced atomically (temp file, rename) as by
 * ts_mirror_render_thread, so a reader never sees a partial file.
 * durable: all are durable when commit returns, but the disk is not waited
 * for file by file: add() writes each temporary and starts its writeback;
 * commit() fsyncs every temporary, renames them all, then fsyncs
 * DIR/threads once (one directory fsync per batch instead of one per
 * file). Until commit, readers see the old files; a crash leaves each file
 * old or new (the temporaries stay, named as ts_file's, never read).
 * Not durable: add() renames each file into place as soon as it is written
 * and nothing is fsync'd (commit has nothing to do). A killed process loses
 * nothing it wrote, but after a power loss a file may be old, empty or
 * missing: the caller records that such files exist (see ts_mirror_sync.c)
 * and either calls ts_mirror_render_sync() or renders them again.
 * new: creates DIR/threads (0755) when missing; *out (OUT) is freed by
 * _free(), which removes temporaries not committed. add: TS_OK, TS_E_NOMEM,
 * TS_E_IO, or as ts_mirror_render_file_name (the batch stays usable).
 * commit: TS_OK or TS_E_IO (files renamed before the failure stay; the
 * rest keep their old content); the batch is empty afterwards either way.
 * One batch belongs to one thread at a time. */
struct ts_mirror_render_batch;
int ts_mirror_render_batch_new(const char *dir, int durable, struct ts_mirror_render_batch **out);
int ts_mirror_render_batch_add(struct ts_mirror_render_batch *b, const Threadsync__Thread *t,
                               const Threadsync__Comment *const *comments, size_t n);
int ts_mirror_render_batch_commit(struct ts_mirror_render_batch *b);
void ts_mirror_render_batch_free(struct ts_mirror_render_batch *b);

/* Files created ahead of a big render. Creating a file is where a render
 * of thousands of new files spends most of its time on some file systems
 * (ext4 without a journal skips every recently freed inode, under the
 * directory's lock), and a first sync learns each thread's key long before
 * it can render it: the caller creates the two temporaries of each key as
 * it arrives (on a thread that has time then), and batches given the prep
 * write into those instead of creating their own. A temporary is empty
 * and 0644, named as batch_write's own (never read); one left over by a
 * crash stays a stray, like any temporary. new: creates DIR/threads when
 * missing; *out (OUT) is freed by _free(), which removes the temporaries
 * no batch took. add: creates key's two temporaries, once per key (a key
 * seen before, or whose creation failed, is not tried again): TS_OK,
 * TS_E_NOMEM, TS_E_IO or as ts_mirror_render_file_name. set_prep: b uses
 * p from now on; p must outlive b, and no add may run while batches use
 * it (several batches may share it: each key's files go to one batch). */
struct ts_mirror_render_prep;
int ts_mirror_render_prep_new(const char *dir, struct ts_mirror_render_prep **out);
int ts_mirror_render_prep_add(struct ts_mirror_render_prep *p, const char *key);
void ts_mirror_render_prep_free(struct ts_mirror_render_prep *p);
void ts_mirror_render_batch_set_prep(struct ts_mirror_render_batch *b,
                                     struct ts_mirror_render_prep *p);

/* CPU time (of the threads that used b) spent building text and writing
 * files (creating, writing, fsyncing and renaming them), for reports. */
struct ts_mirror_render_stats {
    uint64_t build_ns;
    uint64_t write_ns;
};
void ts_mirror_render_batch_stats(const struct ts_mirror_render_batch *b,
                                  struct ts_mirror_render_stats *out);

/* Makes every file written under path durable: syncfs() of its file
 * system, one call for all the files of unsynced batches. TS_OK or TS_E_IO. */
int ts_mirror_render_sync(const char *path);

#endif
