/*
 * ts_testmirror: what the mirror's integration suites share (ts_mirror_test,
 * ts_mirror_moderation_test, ts_mirror_acceptance_test): one node per case
 * with reader, moderator and poster token files next to it, a mirror
 * directory in the node's scratch directory, posting in bulk, running the
 * threadsync CLI (mirror, verify) as a child with a deadline, reading the
 * mirror's SQLite database and files, and rendering pages in headless
 * Chromium (screenshots in the build tree's test-artifacts/).
 *
 * State is the globals below, one set per test process: Check forks each
 * case, and each case calls start() and ends in teardown() (the fixture),
 * which fails the case if the node did not exit 0. Strings returned by
 * slurp, cli and chromium_render are malloc'd; the caller frees them.
 */
#ifndef TS_TESTMIRROR_H
#define TS_TESTMIRROR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ts_testnode.h"

#define CHROMIUM "/usr/bin/chromium"

extern struct ts_testnode node;

extern int node_up;

extern char mdir[512];        /* the mirror directory */
extern char reader_file[512]; /* the reader token, for the CLI */
extern char mod_file[512], poster_file[512];

extern const char *mirror_token; /* what mirror and verify run as */

void write_token(char *path, size_t size, const char *role, const char *token);

void start(const char *const *extra);

void teardown(void);

/* Comments posted by post_many, per thread: ids in posting order. */
struct posted {
    size_t n_threads;
    char (*keys)[64];
    uint64_t **ids;
    size_t *n_ids;
    uint64_t last_seq;
    size_t total;
};

void posted_free(struct posted *p);

void posted_init(struct posted *p, const char *prefix, size_t n_threads);

/* Six comment bodies, Unicode among them. */
extern const char *const bodies[6];

/* Posts n comments round-robin over p's threads, WINDOW at a time on one
 * connection (pipelined). About a third are replies to an earlier comment
 * of the same thread. Records ids and the last seq in p. */
void post_many(struct posted *p, size_t n, unsigned seed);

/* One post, sequential, returning its id (and seq). */
uint64_t post_one(const char *thread, uint64_t parent, const char *name, const char *body,
                  uint64_t *seq);

char *slurp(const char *path);

/* Starts threadsync CMD --dir mdir [extra...] with stdout and stderr to
 * files in the node's directory (tag names them). */
void cli_argv(const char *cmd, const char *const *extra, const char **argv);

pid_t cli_start(const char *cmd, const char *tag, const char *const *extra);

int cli_wait(pid_t pid, int timeout_s);

/* Waits until the stderr of the CLI child started with tag holds needle at
 * least want times (a Check assertion fails after timeout_s). */
void cli_wait_err(const char *tag, const char *needle, size_t want, int timeout_s);

/* Runs a command to its end; *out and *err (may be NULL) get its output. */
int cli(const char *cmd, const char *const *extra, char **out, char **err);

/* A number after "key=" in a summary line. */
uint64_t field(const char *text, const char *key);

void mirror_once(char **err_out);

void verify_ok(uint64_t threads, uint64_t comments);

/* A number in the mirror's meta table, 0 when absent (read-only, while a
 * mirror may be writing). */
uint64_t db_meta(const char *name);

/* The mirror's stored cursor. */
uint64_t db_cursor(void);

void wait_cursor(uint64_t seq, int timeout_s);

void sql_exec(const char *text);

void thread_path(const char *key, const char *ext, char *out, size_t len);

/* mtime of a thread's HTML file in ns; 0 when missing. */
int64_t html_mtime(const char *key);

void artifact_path(const char *name, char *out, size_t len);

int run_chromium(const char *html, const char *mode_arg, const char *out_file);

/* Runs Chromium on an HTML file: a screenshot kept as an artifact, and the
 * DOM after parsing (returned). */
char *chromium_render(const char *html, const char *png_name);

/* Deepest nesting of <li> elements in serialised HTML. */
int li_depth(const char *dom);

/* The text of a body as Chromium serialises it (& < > escaped). */
void dom_text(const char *body, char *out, size_t len);

/* Two mirrors' files of a thread are the same bytes. */
void assert_same_files(const char *dir_a, const char *dir_b, const char *key);

#endif
