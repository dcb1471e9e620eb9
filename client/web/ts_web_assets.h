/*
 * ts_web_assets: the edge's static files (static/threadsync.js and .css),
 * compiled in (ts_web_assets.c is generated from them by embed.cmake), so a
 * binary serves them without an install path. ETags are their SHA-256.
 */
#ifndef TS_WEB_ASSETS_H
#define TS_WEB_ASSETS_H

#include <stddef.h>

#define TS_WEB_CHARSET "; charset=utf-8"

struct ts_web_asset {
    const char *path; /* "/static/threadsync.js" */
    const char *type; /* Content-Type */
    const char *etag; /* quoted */
    const char *data;
    size_t len;
};

extern const struct ts_web_asset ts_web_assets[];
extern const size_t ts_web_assets_n;

#endif
