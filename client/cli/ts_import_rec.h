/*
 * ts_import_rec: the record every import parser (ts_import_wxr,
 * ts_import_disqus, ts_import_jsonl) produces and the sink it hands them
 * to (ts_cli_import), so the formats share one path to the server.
 *
 * A parser calls sink->thread before the first comment of that thread and
 * sink->comment for each comment, in file order (not necessarily parents
 * first: the sink orders them). Strings are borrowed for the call only.
 * A callback's non-zero return stops the parser, which returns it.
 */
#ifndef TS_IMPORT_REC_H
#define TS_IMPORT_REC_H

#include <stddef.h>
#include <stdint.h>

struct ts_import_thread_rec {
    const char *key, *title, *url;
    int64_t created_at_ms; /* 0: unknown */
    /* a threadsync export's fields (exact imports) */
    uint64_t id, version;
    int locked, premoderated;
    const char *moderated_by;
};

struct ts_import_comment_rec {
    const char *source_id;
    const char *parent_source_id; /* "" top level */
    const char *thread_key;
    const char *author_name, *author_email, *author_url, *body;
    int64_t created_at_ms;
    int status; /* Threadsync__Status */
    /* spam or trash: imported only when some comment replies to it */
    int keep_if_replies;
    /* a threadsync export's fields (exact imports) */
    uint64_t id, version;
    int64_t edited_at_ms;
    const char *moderated_by;
    unsigned long line, column; /* where it starts in the file, for messages */
};

struct ts_import_sink {
    int (*thread)(void *arg, const struct ts_import_thread_rec *t);
    int (*comment)(void *arg, const struct ts_import_comment_rec *c);
    /* a record left out on purpose (a pingback, a post without comments):
     * counted under why (static text) */
    void (*skip)(void *arg, const char *why);
    void *arg;
};

#endif
