/*
 * ts_import_text: turning another system's text into threadsync's fields:
 * HTML comment bodies into plain text, dates into Unix milliseconds, a
 * permalink into a thread key, and fields cut to threadsync's limits at a
 * code point boundary (proto/ts_valid.h), reporting what was cut.
 */
#ifndef TS_IMPORT_TEXT_H
#define TS_IMPORT_TEXT_H

#include <stddef.h>
#include <stdint.h>

/* HTML to text in place: tags dropped (<br> and </p> become line breaks,
 * a link keeps its text and its href in parentheses when they differ),
 * character references decoded (&amp; &lt; &gt; &quot; &apos; &#39; &nbsp;
 * &#N; &#xH;), control characters other than tab, LF and CR dropped,
 * leading and trailing white space trimmed. s must be valid UTF-8; it stays
 * so. Returns s. */
char *ts_import_html_to_text(char *s);

/* Writes code point cp as UTF-8 at out (room for 4 bytes): U+FFFD for NUL,
 * a surrogate or a value above U+10FFFF. Returns the bytes written. */
size_t ts_import_put_utf8(char *out, unsigned long cp);

/* Single-line text in place: control characters become spaces, white space
 * trimmed. Returns s. */
char *ts_import_line(char *s);

/* "YYYY-MM-DD HH:MM:SS" or "YYYY-MM-DDTHH:MM:SS[.fff][Z|+hh:mm]" (UTC unless
 * an offset says otherwise) into Unix ms; 0 when it is not a date (or the
 * zero date WordPress writes for drafts). */
int64_t ts_import_parse_date(const char *s);

/* The path (and query) of an absolute URL, e.g. "/2020/01/hello/" of
 * "https://blog.example/2020/01/hello/"; "" when url has none. Writes at
 * most size - 1 bytes. */
void ts_import_url_path(const char *url, char *out, size_t size);

/* Cuts s in place to at most max_bytes and max_cp code points (0: no limit)
 * at a code point boundary. Returns 1 when it cut something. */
int ts_import_clip(char *s, size_t max_bytes, size_t max_cp);

#endif
