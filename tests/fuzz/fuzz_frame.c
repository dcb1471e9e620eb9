/*
 * libFuzzer target: the frame decoder and request validation, fed the way
 * a connection feeds them (arbitrary chunking, the pre-auth limit, then the
 * normal one). Every frame that decodes must re-encode to a frame that
 * decodes again; no input may crash, leak or allocate without bound.
 *
 * Build: cmake -DCMAKE_C_COMPILER=clang -DTS_FUZZ=ON -DTS_SANITIZE=ON ..
 * Run:   ./tests/fuzz/fuzz_frame ../tests/fuzz/corpus/frame -max_total_time=60
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ts_err.h"
#include "ts_frame.h"
#include "ts_valid.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A broken invariant is a crash for libFuzzer to report and minimise. */
#define FUZZ_ASSERT(cond)                                                                          \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

static void check_frame(Threadsync__Frame *f)
{
    struct ts_valid_err err;
    const char *field;
    if (f->msg_case == THREADSYNC__FRAME__MSG_POST)
        (void)ts_valid_post(f->post, &err);
    uint8_t *wire;
    size_t len;
    if (ts_frame_encode(f, &wire, &len) != TS_OK)
        return;
    Threadsync__Frame *again = NULL;
    /* what we encode, we must decode */
    FUZZ_ASSERT(len <= TS_FRAME_HEADER ||
                ts_frame_unpack(wire + TS_FRAME_HEADER, len - TS_FRAME_HEADER, &again, &field) !=
                    TS_E_BAD_FRAME);
    ts_frame_free(again);
    free(wire);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    /* first byte: chunk size for feeding */
    size_t chunk = (size_t)data[0] + 1;
    data++;
    size--;
    struct ts_frame_decoder *dec = ts_frame_decoder_new(TS_FRAME_MAX_PREAUTH);
    int frames = 0;
    for (size_t off = 0; off < size; off += chunk) {
        size_t n = size - off < chunk ? size - off : chunk;
        ts_frame_decoder_feed(dec, data + off, n);
        for (;;) {
            Threadsync__Frame *f;
            const char *field;
            int rc = ts_frame_decoder_next(dec, &f, &field);
            if (f) {
                check_frame(f);
                ts_frame_free(f);
            }
            if (rc != TS_OK && rc != TS_E_INVALID_ARGUMENT)
                break;
            if (++frames == 1)
                ts_frame_decoder_set_max(dec, TS_FRAME_MAX_DEFAULT);
        }
    }
    ts_frame_decoder_free(dec);
    return 0;
}
