/*
 * ts_frame: the wire framing of threadsync (PROTOCOL.md, "Framing").
 *
 * A frame is a 4-byte big-endian length N (1..max) and N bytes of one
 * threadsync.Frame message. The decoder checks N against its limit before it
 * buffers a single byte of the body, and unpacks through a capped allocator
 * so a small frame cannot make the decoder allocate without bound. It also
 * walks every string field of the message on the wire and rejects text that
 * is not UTF-8 or holds a NUL (protobuf-c would truncate it silently).
 *
 * Events are encoded once per event, not once per subscriber: a server keeps
 * each event as a ready "Events.events element" (ts_frame_event_element) and
 * wraps any run of them into a frame with ts_frame_events_wrap().
 */
#ifndef TS_FRAME_H
#define TS_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "threadsync.pb-c.h"

#define TS_PROTOCOL_VERSION 1
#define TS_ALPN "threadsync/1"
#define TS_FRAME_HEADER 4
#define TS_FRAME_MAX_DEFAULT (1u << 20)
#define TS_FRAME_MAX_PREAUTH (64u << 10)
#define TS_FRAME_MAX_LIMIT (64u << 20)

/* Bytes a frame of f takes on the wire, header included. */
size_t ts_frame_size(const Threadsync__Frame *f);

/* Writes header and message into out, which holds ts_frame_size(f) bytes.
 * Returns the number of bytes written. */
size_t ts_frame_pack(const Threadsync__Frame *f, uint8_t *out);

/* Encodes f into a new malloc'd buffer (*out, caller frees with free()).
 * TS_E_NOMEM on allocation failure, TS_E_TOO_LARGE past TS_FRAME_MAX_LIMIT. */
int ts_frame_encode(const Threadsync__Frame *f, uint8_t **out, size_t *len);

/* The request_id of the message f carries; 0 when f carries none or its
 * message type has no request_id (found through the descriptors, so every
 * request type, Result and Error alike). */
uint64_t ts_frame_request_id(const Threadsync__Frame *f);

/* Makes m, a message of the type Frame field msg_case holds, f's message,
 * with request_id set to id (m's type must have one). f borrows m. */
void ts_frame_set_request(Threadsync__Frame *f, int msg_case, ProtobufCMessage *m, uint64_t id);

/* Encodes the frame of a request whose message (of the type Frame field
 * msg_case holds) is already packed in msg[0..msg_len), with request_id set
 * to id, into a new malloc'd buffer (*out, caller frees with free()): what
 * a client that keeps a request's bytes for re-sending sends each time,
 * without unpacking and packing it again. Any request_id msg holds is
 * overridden (the id is appended; protobuf keeps a field's last value).
 * TS_E_INVALID_ARGUMENT when that type has no request_id, TS_E_TOO_LARGE
 * past TS_FRAME_MAX_LIMIT, TS_E_NOMEM. */
int ts_frame_request_encode(int msg_case, const uint8_t *msg, size_t msg_len, uint64_t id,
                            uint8_t **out, size_t *len);

/* A deep copy of m (packed and unpacked again: no pointer into m
 * survives), to free with protobuf_c_message_free_unpacked(copy, NULL);
 * NULL when out of memory. */
ProtobufCMessage *ts_frame_msg_copy(const ProtobufCMessage *m);

/* Makes f the Pong that answers ping; pong is its storage. */
void ts_frame_pong(Threadsync__Frame *f, Threadsync__Pong *pong, const Threadsync__Ping *ping);

/* Frees a frame returned by ts_frame_decoder_next() or ts_frame_unpack(),
 * and only such a frame: it and everything it points to are carved from
 * the decode's own chunks, so no part of it may be freed or kept apart
 * (copy what must outlive it, e.g. ts_frame_msg_copy). */
void ts_frame_free(Threadsync__Frame *f);

/* Unpacks one message body (no length header) of len bytes.
 * TS_OK: *out is the frame. TS_E_INVALID_ARGUMENT: *out is the frame too,
 * and *bad_field names a string field that is not valid UTF-8 or holds a NUL.
 * TS_E_BAD_FRAME: undecodable (or a field numbered 0), *out is NULL. */
int ts_frame_unpack(const uint8_t *body, size_t len, Threadsync__Frame **out,
                    const char **bad_field);

struct ts_frame_decoder;

/* A decoder that accepts frames of at most max_frame bytes (body). */
struct ts_frame_decoder *ts_frame_decoder_new(uint32_t max_frame);
void ts_frame_decoder_free(struct ts_frame_decoder *dec);

/* Raising or lowering the limit applies to the next frame header read. */
void ts_frame_decoder_set_max(struct ts_frame_decoder *dec, uint32_t max_frame);

/* Copies len bytes of stream into the decoder. TS_E_NOMEM on failure.
 * Memory held is bounded by max_frame plus one read; the buffer is released
 * whenever it is emptied, so an idle connection holds none. */
int ts_frame_decoder_feed(struct ts_frame_decoder *dec, const void *data, size_t len);

/* Takes the next complete frame.
 * TS_OK: *out is a frame the caller frees with ts_frame_free().
 * TS_E_INVALID_ARGUMENT: as ts_frame_unpack(); the stream stays usable.
 * TS_E_AGAIN: no complete frame buffered yet.
 * TS_E_TOO_LARGE (header above the limit) or TS_E_BAD_FRAME (zero length or
 * undecodable body): the stream cannot be resynchronised; every later call
 * returns the same code. */
int ts_frame_decoder_next(struct ts_frame_decoder *dec, Threadsync__Frame **out,
                          const char **bad_field);

/* The wire size (header included) of the frame the last ts_frame_decoder_next
 * returned (TS_OK or TS_E_INVALID_ARGUMENT); 0 before the first. */
size_t ts_frame_decoder_last_size(const struct ts_frame_decoder *dec);

/* Bytes buffered that do not form a complete frame: non-zero at end of
 * stream means the peer sent a truncated frame. */
size_t ts_frame_decoder_pending(const struct ts_frame_decoder *dec);

/* Upper bound of ts_frame_event_element()'s output for an event of the given
 * packed size. */
#define TS_FRAME_ELEMENT_OVERHEAD 11

/* Encodes ev as one element of Events.events (field tag, length, message)
 * into out, which holds protobuf_c_message_get_packed_size(ev) +
 * TS_FRAME_ELEMENT_OVERHEAD bytes. Returns the bytes written. */
size_t ts_frame_event_element(const Threadsync__Event *ev, uint8_t *out);
/* The same for a caller that already has protobuf_c_message_get_packed_size
 * (ev) as body: it is not computed again (a walk of the whole event). */
size_t ts_frame_event_element_sized(const Threadsync__Event *ev, size_t body, uint8_t *out);

#define TS_FRAME_EVENTS_HEAD_MAX (TS_FRAME_HEADER + 2 + 10)
#define TS_FRAME_EVENTS_TAIL_MAX (1 + 10 + 2)

/* Wraps elements_len bytes of concatenated event elements into an Events
 * frame: the frame is head, then the elements, then tail. Fills head and
 * tail and their lengths; never fails. */
void ts_frame_events_wrap(size_t elements_len, uint64_t last_seq, int caught_up,
                          uint8_t head[TS_FRAME_EVENTS_HEAD_MAX], size_t *head_len,
                          uint8_t tail[TS_FRAME_EVENTS_TAIL_MAX], size_t *tail_len);

#endif
