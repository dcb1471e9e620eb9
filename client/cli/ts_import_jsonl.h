/*
 * ts_import_jsonl: reads the JSON Lines that `threadsync export` writes
 * (docs/IMPORT-EXPORT.md: one flat object per line; "type" says
 * which record) back into ts_import_rec records, keeping ids, versions,
 * edit times and moderated_by for an exact import.
 *
 * Only that shape is read: one object per line whose values are strings,
 * integers, booleans or null; unknown keys are ignored, so later releases
 * may add fields. The "export" header line is checked for its format.
 * Lines are read one at a time (at most TS_IMPORT_JSONL_LINE_MAX bytes).
 */
#ifndef TS_IMPORT_JSONL_H
#define TS_IMPORT_JSONL_H

#include <stdio.h>

#include "ts_import_rec.h"

#define TS_IMPORT_JSONL_LINE_MAX ((long)1024 * 1024)

/* As ts_import_wxr_parse; errors say "line L, column C: what". */
int ts_import_jsonl_parse(FILE *in, const struct ts_import_sink *sink, char *err, size_t errlen);

#endif
