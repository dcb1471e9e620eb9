/*
 * libFuzzer target: the state machine's dispatch. The input is split into
 * log entries (2-byte big-endian length, then the payload) applied in order
 * to a fresh store, as a replica would apply a corrupted or hostile log. No
 * payload may crash the apply, and the state must survive a snapshot and
 * restore unchanged (same digest).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ts_err.h"
#include "ts_evlog.h"
#include "ts_store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A broken invariant is a crash for libFuzzer to report and minimise. */
#define FUZZ_ASSERT(cond)                                                                          \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ts_evlog_config cfg = {64, 1 << 20};
    struct ts_evlog *log;
    struct ts_store *store;
    if (ts_evlog_new(&cfg, &log) != TS_OK)
        return 0;
    if (ts_store_new(log, &store) != TS_OK) {
        ts_evlog_free(log);
        return 0;
    }
    uint64_t index = 1;
    size_t off = 0;
    while (off + 2 <= size) {
        size_t len = (size_t)data[off] << 8 | data[off + 1];
        off += 2;
        if (len > size - off)
            len = size - off;
        struct ts_store_result res;
        /* only allocation failure may fail an apply */
        FUZZ_ASSERT(ts_store_apply(store, index++, data + off, len, &res) == TS_OK);
        off += len;
    }
    char before[65], after[65];
    ts_store_digest(store, before);
    uint8_t *snap;
    size_t snap_len;
    if (ts_store_snapshot(store, &snap, &snap_len) == TS_OK) {
        struct ts_evlog *log2;
        struct ts_store *copy;
        if (ts_evlog_new(&cfg, &log2) == TS_OK) {
            if (ts_store_new(log2, &copy) == TS_OK) {
                FUZZ_ASSERT(ts_store_restore(copy, snap, snap_len) == TS_OK);
                ts_store_digest(copy, after);
                FUZZ_ASSERT(strcmp(before, after) == 0);
                ts_store_free(copy);
            }
            ts_evlog_free(log2);
        }
        free(snap);
    }
    ts_store_free(store);
    ts_evlog_free(log);
    return 0;
}
