/*
 * ts_hello: the Hello frame and the judgement of its answer (see ts_hello.h).
 * The field rules (which versions, what an Error before Welcome means) are
 * PROTOCOL.md §2's; the server side is server/ts_session.c.
 */
#include "ts_hello.h"

#include "ts_err.h"
#include "ts_frame.h"

#include <stddef.h>

void ts_hello_frame(Threadsync__Frame *f, Threadsync__Hello *hello, const char *client_name,
                    const char *token)
{
    threadsync__frame__init(f);
    threadsync__hello__init(hello);
    hello->min_version = TS_PROTOCOL_VERSION;
    hello->max_version = TS_PROTOCOL_VERSION;
    /* protobuf-c's char * fields: packing only reads them */
    hello->client_name = (char *)client_name;
    hello->token = (char *)token;
    f->msg_case = THREADSYNC__FRAME__MSG_HELLO;
    f->hello = hello;
}

int ts_hello_answer(const Threadsync__Frame *f, const Threadsync__Welcome **welcome)
{
    if (welcome)
        *welcome = NULL;
    switch (f->msg_case) {
    case THREADSYNC__FRAME__MSG_WELCOME:
        if (f->welcome->version != TS_PROTOCOL_VERSION)
            return TS_E_UNSUPPORTED_VERSION;
        if (welcome)
            *welcome = f->welcome;
        return TS_OK;
    case THREADSYNC__FRAME__MSG_ERROR:
        return f->error->code ? (int)f->error->code : TS_E_INTERNAL;
    default:
        return TS_E_BAD_FRAME;
    }
}
