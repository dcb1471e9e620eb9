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
 * The child calls ts__repl_snap_pack: malloc, free and liblz4's one-shot
 * frame compression only (no locks of the parent's threads are taken there
 * but malloc's, which fork leaves consistent). The frame says its content
 * size and checksums its content, so a damaged file is refused, not decoded.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <lz4frame.h>

#include "ts_endian.h"
#include "ts_err.h"
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
