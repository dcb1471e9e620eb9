/*
 * ts_import_xml: see ts_import_xml.h.
 */
#include "ts_import_xml.h"

#include "ts_err.h"

#include <stdlib.h>
#include <string.h>

static void on_text(void *arg, const XML_Char *s, int len)
{
    struct ts_import_xml *x = arg; /* the user data starts with it */
    if (len <= 0)
        return;
    size_t n = (size_t)len;
    if (x->len + n > TS_IMPORT_XML_TEXT_MAX) {
        x->text_cut = 1;
        n = TS_IMPORT_XML_TEXT_MAX - x->len;
        /* back to a code point boundary */
        while (n && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    }
    if (x->len + n + 1 > x->cap) {
        size_t cap = x->cap ? x->cap : 4096;
        while (cap < x->len + n + 1)
            cap *= 2;
        char *t = realloc(x->text, cap);
        if (!t) {
            ts_import_xml_stop(x, TS_E_NOMEM);
            return;
        }
        x->text = t;
        x->cap = cap;
    }
    memcpy(x->text + x->len, s, n);
    x->len += n;
    x->text[x->len] = '\0';
}

int ts_import_xml_init(struct ts_import_xml *x, void *arg, XML_StartElementHandler start,
                       XML_EndElementHandler end, char *err, size_t errlen)
{
    memset(x, 0, sizeof(*x));
    x->err = err;
    x->errlen = errlen;
    x->p = XML_ParserCreateNS("UTF-8", '|');
    x->cap = 4096;
    x->text = malloc(x->cap);
    if (!x->p || !x->text) {
        ts_import_xml_free(x);
        return TS_E_NOMEM;
    }
    x->text[0] = '\0';
    /* arg's first member is x itself (see ts_import_xml.h) */
    XML_SetUserData(x->p, arg);
    XML_SetElementHandler(x->p, start, end);
    XML_SetCharacterDataHandler(x->p, on_text);
    return TS_OK;
}

void ts_import_xml_free(struct ts_import_xml *x)
{
    if (x->p)
        XML_ParserFree(x->p);
    free(x->text);
    x->p = NULL;
    x->text = NULL;
}

void ts_import_xml_text_reset(struct ts_import_xml *x)
{
    x->len = 0;
    x->text_cut = 0;
    x->text[0] = '\0';
}

void ts_import_xml_stop(struct ts_import_xml *x, int rc)
{
    if (!x->stop_rc)
        x->stop_rc = rc;
    XML_StopParser(x->p, XML_FALSE);
}

const char *ts_import_xml_local(const char *name, const char *uri_prefix)
{
    const char *bar = strchr(name, '|');
    if (!bar)
        return uri_prefix[0] ? NULL : name;
    if (!uri_prefix[0] || strncmp(name, uri_prefix, strlen(uri_prefix)) != 0)
        return NULL;
    return bar + 1;
}

void ts_import_xml_where(const struct ts_import_xml *x, unsigned long *line, unsigned long *col)
{
    *line = (unsigned long)XML_GetCurrentLineNumber(x->p);
    *col = (unsigned long)XML_GetCurrentColumnNumber(x->p) + 1;
}

int ts_import_xml_run(struct ts_import_xml *x, FILE *in)
{
    for (;;) {
        void *buf = XML_GetBuffer(x->p, 65536);
        if (!buf)
            return TS_E_NOMEM;
        size_t n = fread(buf, 1, 65536, in);
        if (n == 0 && ferror(in)) {
            snprintf(x->err, x->errlen, "read error");
            return TS_E_IO;
        }
        int last = n == 0;
        if (XML_ParseBuffer(x->p, (int)n, last) == XML_STATUS_ERROR) {
            if (x->stop_rc)
                return x->stop_rc;
            snprintf(x->err, x->errlen, "line %lu, column %lu: %s (not well-formed XML)",
                     (unsigned long)XML_GetCurrentLineNumber(x->p),
                     (unsigned long)XML_GetCurrentColumnNumber(x->p) + 1,
                     XML_ErrorString(XML_GetErrorCode(x->p)));
            return TS_E_INVALID_ARGUMENT;
        }
        if (last)
            return x->stop_rc;
    }
}
