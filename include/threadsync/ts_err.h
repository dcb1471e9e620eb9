/*
 * ts_err: the one error enum of threadsync.
 *
 * Every function that can fail returns an int: TS_OK (0) or one of the codes
 * below. Codes 1..12 are the protocol's ErrorCode values (proto/threadsync.proto)
 * with the same numbers, so a store or session result goes on the wire as is.
 * Codes from 100 are local conditions that never appear on the wire as such;
 * ts_err_wire() maps them to the protocol code a peer should see.
 *
 * TS_E_AGAIN is the non-blocking "not yet" (a decoder that needs more bytes,
 * a TLS engine that wants to read): callers retry when more input arrives.
 */
#ifndef TS_ERR_H
#define TS_ERR_H

/* X(NAME, value, message) */
#define TS_ERR_MAP(X)                                                                              \
    X(BAD_FRAME, 1, "bad frame")                                                                   \
    X(UNSUPPORTED_VERSION, 2, "unsupported protocol version")                                      \
    X(UNAUTHENTICATED, 3, "unauthenticated")                                                       \
    X(FORBIDDEN, 4, "forbidden for this role")                                                     \
    X(NOT_LEADER, 5, "not the leader")                                                             \
    X(INVALID_ARGUMENT, 6, "invalid argument")                                                     \
    X(NOT_FOUND, 7, "not found")                                                                   \
    X(THREAD_LOCKED, 8, "thread is locked")                                                        \
    X(RATE_LIMITED, 9, "rate limited")                                                             \
    X(TOO_LARGE, 10, "too large")                                                                  \
    X(UNAVAILABLE, 11, "unavailable")                                                              \
    X(INTERNAL, 12, "internal error")                                                              \
    X(IDEMPOTENCY_KEY_REUSED, 13, "idempotency key already used for a different post")             \
    X(AGAIN, 100, "try again")                                                                     \
    X(NOMEM, 101, "out of memory")                                                                 \
    X(IO, 102, "i/o error")                                                                        \
    X(TLS, 103, "tls failure")                                                                     \
    X(CLOSED, 104, "connection closed")                                                            \
    X(TIMEOUT, 105, "timed out")                                                                   \
    X(CONFIG, 106, "bad configuration")                                                            \
    X(EXISTS, 107, "already exists")                                                               \
    X(BUSY, 108, "in use by another process")

enum ts_err {
    TS_OK = 0,
#define TS__ERR_ENUM(name, value, msg) TS_E_##name = (value),
    TS_ERR_MAP(TS__ERR_ENUM)
#undef TS__ERR_ENUM
};

/* The highest code that is also a protocol ErrorCode: 1..TS_E_WIRE_MAX go on
 * the wire as they are. */
#define TS_E_WIRE_MAX TS_E_IDEMPOTENCY_KEY_REUSED

/* A static string naming the code, e.g. "NOT_FOUND"; "UNKNOWN" otherwise. */
const char *ts_err_name(int err);

/* A static, human-readable message for the code. */
const char *ts_err_message(int err);

/* The protocol ErrorCode a peer should see for err (local codes become
 * INTERNAL, UNAVAILABLE or TOO_LARGE as fits). Returns 0 for TS_OK. */
int ts_err_wire(int err);

/* Parses a name as printed by ts_err_name(); returns 0 when unknown. */
int ts_err_from_name(const char *name);

#endif
