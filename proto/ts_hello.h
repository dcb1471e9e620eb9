/*
 * ts_hello: the client side of the handshake that opens every client
 * connection (PROTOCOL.md §2), written once for libthreadsync, the joining
 * server (server/repl/ts_join.c), the load generator and the test harness.
 * Each caller keeps its own transport: this module only builds the Hello
 * frame and judges the first answer.
 *
 * Every client offers exactly one protocol version, TS_PROTOCOL_VERSION, so
 * a Welcome naming another one is a server fault, not a negotiation.
 */
#ifndef TS_HELLO_H
#define TS_HELLO_H

#include "threadsync.pb-c.h"

/* Makes f the Hello frame offering TS_PROTOCOL_VERSION only; hello is its
 * storage. client_name and token are borrowed, not copied: they, f and hello
 * must live until the frame is packed (ts_frame_pack / a send). token may be
 * NULL or "" (anonymous reader, where the server allows it). */
void ts_hello_frame(Threadsync__Frame *f, Threadsync__Hello *hello, const char *client_name,
                    const char *token);

/* Judges the frame that answers a Hello. Returns TS_OK for a Welcome with the
 * version offered (*welcome, when not NULL, points into f: borrowed like f);
 * TS_E_UNSUPPORTED_VERSION for a Welcome with another version; the Error's
 * code for an Error (TS_E_INTERNAL if it carries none); TS_E_BAD_FRAME for
 * any other message. On error *welcome is NULL. */
int ts_hello_answer(const Threadsync__Frame *f, const Threadsync__Welcome **welcome);

#endif
