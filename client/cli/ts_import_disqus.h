/*
 * ts_import_disqus: a streaming parser (expat) for the Disqus XML export
 * (namespace http://disqus.com, internals http://disqus.com/disqus-internals),
 * producing ts_import_rec records.
 *
 * <thread dsq:id> elements (link, title, createdAt) come first in the file;
 * each becomes a thread keyed by the path of its link (--key-from id: its
 * dsq:id; slug: the link's last path segment). <post dsq:id> elements name
 * their thread and parent by dsq:id: message (HTML reduced to text),
 * createdAt, author name and email, isDeleted (DELETED) and isSpam
 * (HIDDEN), both imported only when something replies to them. A thread
 * that no post refers to makes nothing.
 *
 * Memory: the threads' keys and titles (one entry per thread of the site)
 * and one post at a time.
 */
#ifndef TS_IMPORT_DISQUS_H
#define TS_IMPORT_DISQUS_H

#include <stdio.h>

#include "ts_import_rec.h"
#include "ts_import_wxr.h"

struct ts_import_disqus_opts {
    enum ts_import_key_from key_from;
};

/* As ts_import_wxr_parse. */
int ts_import_disqus_parse(FILE *in, const struct ts_import_disqus_opts *o,
                           const struct ts_import_sink *sink, char *err, size_t errlen);

#endif
