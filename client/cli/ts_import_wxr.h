/*
 * ts_import_wxr: a streaming parser (expat) for WordPress eXtended RSS, the
 * file WordPress' Tools -> Export writes (WXR 1.0, 1.1 and 1.2), producing
 * ts_import_rec records.
 *
 * Each <item> (post, page, attachment...) is a thread candidate: its
 * <wp:comment>s become comments of the thread keyed, by default, by the
 * path of the item's <link> (the permalink), else by wp:post_name (slug) or
 * wp:post_id (id). A thread is reported only once it has a comment to
 * import. Comments: wp:comment_id (the source id), author, author_email,
 * author_url, date_gmt (comment_date when the GMT date is zero), content
 * (HTML reduced to text), approved (1 VISIBLE, 0 PENDING, spam HIDDEN and
 * trash DELETED, both only when something replies to them), parent
 * (0 top level) and type (pingback and trackback skipped unless asked for).
 *
 * Memory: one item's fields and one comment's at a time (the comments
 * themselves go to the sink as they end), whatever the file's size.
 */
#ifndef TS_IMPORT_WXR_H
#define TS_IMPORT_WXR_H

#include <stdio.h>

#include "ts_import_rec.h"

enum ts_import_key_from { TS_IMPORT_KEY_PATH, TS_IMPORT_KEY_SLUG, TS_IMPORT_KEY_ID };

struct ts_import_wxr_opts {
    enum ts_import_key_from key_from;
    int with_pingbacks;
};

/* Parses in to its end. TS_OK; TS_E_INVALID_ARGUMENT for input that is not
 * well-formed XML or not WXR (err: "line L, column C: what"); a sink
 * callback's non-zero return, passed on; TS_E_IO, TS_E_NOMEM. */
int ts_import_wxr_parse(FILE *in, const struct ts_import_wxr_opts *o,
                        const struct ts_import_sink *sink, char *err, size_t errlen);

#endif
