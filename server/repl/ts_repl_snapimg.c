/*
 * ts_repl_snapimg: the LZ4 packing of a raft snapshot's state machine image
 * (format 2, internal/ts_repl_int.h): [u64 LE raw length][one LZ4 frame].
 *
 * Why the node compresses and not raft (which did, on libuv's thread pool,
 * until issue 17 item 7): the image crosses the snapshot child's pipe into
 * the node, and raft keeps what it is given until the files are written.
 * Packed in the child, the node holds the compressed image only (at
 * 1,000,000 comments about 110 MB where it held the 300 MB image and raft's
 * compressed copy of it at once), and a restore reads the file as it is
 * and unpacks it into a mapping of its own that goes back whole when freed.
 *
 * The child streams (ts__repl_snap_stream_*: malloc, free, write and
 * liblz4's frame compression only; no locks of the parent's threads are
 * taken there but malloc's, which fork leaves consistent): its frame cannot
 * say its content size, so the image's own raw length, which the reader
 * patches in from the child's trailer, is what unpacking holds it to. A
 * node serialising on its loop (fork failed) and a seeded data directory
 * pack in one go (ts__repl_snap_pack), and that frame says its size too.
 * Either frame checksums its content, so a damaged file is refused, not
 * decoded, and unpacking reads both.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <lz4frame.h>

#include "ts_endian.h"
#include "ts_err.h"
#include "ts_file.h"
#include "ts_repl_int.h"

/* LZ4 expands nothing past this ratio: a declared raw length beyond it is
 * a damaged header, not a reason to map terabytes. */
#define SNAPIMG_MAX_RATIO 255

int ts__repl_snap_pack(const uint8_t *raw, size_t len, uint8_t **out, size_t *out_len)
{
    LZ4F_preferences_t prefs;
    memset(&prefs, 0, sizeof(prefs));
    prefs.frameInfo.contentSize = len;
    prefs.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled;
    prefs.frameInfo.blockSizeID = LZ4F_max4MB;
    size_t bound = LZ4F_compressFrameBound(len, &prefs);
    /* Only what the frame fills becomes resident: the bound is untouched
     * beyond it. */
    uint8_t *p = malloc(8 + bound);
    if (!p)
        return -1;
    size_t n = LZ4F_compressFrame(p + 8, bound, raw, len, &prefs);
    if (LZ4F_isError(n)) {
        free(p);
        return -1;
    }
    ts_store_le64(p, len);
    *out = p;
    *out_len = 8 + n;
    return 0;
}

/* The streamed frame cannot say its content size (not known when its
 * header goes out); the image's own raw length, patched in by the reader
 * (ts_repl.c), is what unpacking checks. */
static const LZ4F_preferences_t stream_prefs = {
    .frameInfo = {.blockSizeID = LZ4F_max4MB, .contentChecksumFlag = LZ4F_contentChecksumEnabled},
};

static int stream_write(struct repl_snap_stream *st, const void *p, size_t n)
{
    if (ts_file_write_full(st->fd, p, n) != 0)
        return -1;
    st->sent += n;
    return 0;
}

/* Room in st->out for what compressing len more bytes may emit. */
static int stream_room(struct repl_snap_stream *st, size_t len)
{
    size_t need = LZ4F_compressBound(len, &stream_prefs);
    if (need <= st->out_cap)
        return 0;
    uint8_t *o = realloc(st->out, need);
    if (!o)
        return -1;
    st->out = o;
    st->out_cap = need;
    return 0;
}

int ts__repl_snap_stream_begin(struct repl_snap_stream *st, int fd, int packed)
{
    memset(st, 0, sizeof(*st));
    st->fd = fd;
    st->packed = packed;
    if (!packed)
        return 0;
    LZ4F_cctx *c;
    if (LZ4F_isError(LZ4F_createCompressionContext(&c, LZ4F_VERSION)))
        return -1;
    st->cctx = c;
    static const uint8_t zero[8];
    size_t n;
    if (stream_room(st, 0) != 0 || stream_write(st, zero, sizeof(zero)) != 0 ||
        LZ4F_isError(n = LZ4F_compressBegin(c, st->out, st->out_cap, &stream_prefs)) ||
        stream_write(st, st->out, n) != 0) {
        ts__repl_snap_stream_end(st, 0);
        return -1;
    }
    return 0;
}

int ts__repl_snap_stream_put(void *arg, const void *data, size_t len)
{
    struct repl_snap_stream *st = arg;
    st->raw += len;
    if (!st->packed)
        return stream_write(st, data, len);
    if (stream_room(st, len) != 0)
        return -1;
    size_t n = LZ4F_compressUpdate(st->cctx, st->out, st->out_cap, data, len, NULL);
    if (LZ4F_isError(n))
        return -1;
    return n ? stream_write(st, st->out, n) : 0;
}

int ts__repl_snap_stream_end(struct repl_snap_stream *st, int ok)
{
    int rc = ok ? 0 : -1;
    if (ok && st->packed) {
        size_t n;
        if (stream_room(st, 0) != 0 ||
            LZ4F_isError(n = LZ4F_compressEnd(st->cctx, st->out, st->out_cap, NULL)) ||
            stream_write(st, st->out, n) != 0)
            rc = -1;
    }
    LZ4F_freeCompressionContext(st->cctx);
    st->cctx = NULL;
    free(st->out);
    st->out = NULL;
    return rc;
}

uint64_t ts__repl_snap_raw_len(const uint8_t *p, size_t n)
{
    return n >= 8 ? ts_load_le64(p) : 0;
}

int ts__repl_snap_unpack(const uint8_t *p, size_t n, uint8_t **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    if (n < 8)
        return TS_E_BAD_FRAME;
    uint64_t raw = ts_load_le64(p);
    p += 8;
    n -= 8;
    if (raw / SNAPIMG_MAX_RATIO > n || raw > SIZE_MAX / 2)
        return TS_E_BAD_FRAME;
    size_t map_len = raw ? (size_t)raw : 1;
    void *m = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return TS_E_NOMEM;
    LZ4F_dctx *dctx;
    if (LZ4F_isError(LZ4F_createDecompressionContext(&dctx, LZ4F_VERSION))) {
        munmap(m, map_len);
        return TS_E_NOMEM;
    }
    size_t got = 0, used = 0, hint = 1;
    while (hint != 0 && used < n) {
        size_t dst = (size_t)raw - got, src = n - used;
        hint = LZ4F_decompress(dctx, (uint8_t *)m + got, &dst, p + used, &src, NULL);
        if (LZ4F_isError(hint))
            break;
        got += dst;
        used += src;
        if (!dst && !src)
            break; /* no progress: the output is full and the frame is not done */
    }
    LZ4F_freeDecompressionContext(dctx);
    /* One whole frame (hint 0: its end and checksum were read), all of the
     * input, exactly the declared length. */
    if (LZ4F_isError(hint) || hint != 0 || used != n || got != raw) {
        munmap(m, map_len);
        return TS_E_BAD_FRAME;
    }
    *out = m;
    *out_len = (size_t)raw;
    return TS_OK;
}

void ts__repl_snap_unmap(uint8_t *out, size_t out_len)
{
    if (out)
        munmap(out, out_len ? out_len : 1);
}
