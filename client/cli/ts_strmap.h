/*
 * ts_strmap: a hash map from strings to pointers for the importer's tables
 * (source ids already sent, comments waiting for their parent, threads by
 * key). Open addressing with linear probing, capacity a power of two, load
 * at most 1/2; keys are copied, values borrowed. No removal: a value may be
 * set to NULL instead, which the importer reads as "done".
 *
 * Load: one entry per comment of an import (a 1,000,000-comment file holds
 * about 50 MB of ids), so keys live in one arena per map.
 */
#ifndef TS_STRMAP_H
#define TS_STRMAP_H

#include <stddef.h>

struct ts_strmap;

/* NULL when out of memory. */
struct ts_strmap *ts_strmap_new(void);
/* Frees the map and its keys, not the values. NULL is a no-op. */
void ts_strmap_free(struct ts_strmap *m);

/* Sets key's value (adding the key). TS_OK or TS_E_NOMEM. */
int ts_strmap_put(struct ts_strmap *m, const char *key, void *value);

/* 1 when key is in the map; *value (may be NULL) gets its value. */
int ts_strmap_get(const struct ts_strmap *m, const char *key, void **value);

size_t ts_strmap_count(const struct ts_strmap *m);

/* Calls fn for each entry (order unspecified). */
void ts_strmap_each(const struct ts_strmap *m, void (*fn)(void *arg, const char *key, void *value),
                    void *arg);

#endif
