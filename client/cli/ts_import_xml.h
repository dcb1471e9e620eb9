/*
 * ts_import_xml: what the two XML importers (ts_import_wxr,
 * ts_import_disqus) share around expat: the parser with namespace
 * processing ("URI|local" names), a text buffer for the element being
 * read (bounded: text past TS_IMPORT_XML_TEXT_MAX is dropped and flagged,
 * so a hostile file cannot make it grow without end), the feed loop over
 * a FILE, and error messages with line and column.
 */
#ifndef TS_IMPORT_XML_H
#define TS_IMPORT_XML_H

#include <expat.h>
#include <stddef.h>
#include <stdio.h>

/* 4x the largest body threadsync keeps: HTML markup shrinks on the way to
 * text. Longer text is cut (the cut is reported as a truncation). */
#define TS_IMPORT_XML_TEXT_MAX (4 * 16384 + 4096)

struct ts_import_xml {
    XML_Parser p;
    char *text; /* the current element's text, NUL-terminated */
    size_t len, cap;
    int text_cut; /* text went past the limit */
    int stop_rc;  /* a callback's failure: stops the parse */
    char *err;    /* the caller's message buffer */
    size_t errlen;
};

/* Sets up x with the handlers; their user data is arg, a struct whose
 * first member is x itself. TS_OK or TS_E_NOMEM. */
int ts_import_xml_init(struct ts_import_xml *x, void *arg, XML_StartElementHandler start,
                       XML_EndElementHandler end, char *err, size_t errlen);
void ts_import_xml_free(struct ts_import_xml *x);

/* Empties the text buffer (at each element start). */
void ts_import_xml_text_reset(struct ts_import_xml *x);

/* Stops the parse with rc (a callback's failure). */
void ts_import_xml_stop(struct ts_import_xml *x, int rc);

/* The local part of a "URI|local" name, and whether its namespace starts
 * with uri_prefix ("" for none). */
const char *ts_import_xml_local(const char *name, const char *uri_prefix);

/* Feeds all of in. TS_OK, x->stop_rc, TS_E_INVALID_ARGUMENT (not
 * well-formed: err says where), TS_E_IO. */
int ts_import_xml_run(struct ts_import_xml *x, FILE *in);

/* The position of the element being parsed, for records. */
void ts_import_xml_where(const struct ts_import_xml *x, unsigned long *line, unsigned long *col);

#endif
