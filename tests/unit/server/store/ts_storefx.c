/*
 * ts_storefx: see ts_storefx.h.
 */
#include "ts_storefx.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "ts_err.h"

void ts_storefx_init(struct ts_storefx *f)
{
    ck_assert_int_eq(ts_evlog_new(NULL, &f->log), TS_OK);
    ck_assert_int_eq(ts_store_new(f->log, &f->s), TS_OK);
}

void ts_storefx_free(struct ts_storefx *f)
{
    ts_store_free(f->s);
    ts_evlog_free(f->log);
}

struct ts_store_result ts_storefx_apply(struct ts_storefx *f, uint64_t index,
                                        Threadsync__State__Command *cmd)
{
    uint8_t *buf;
    size_t len;
    ck_assert_int_eq(ts_store_encode(cmd, &buf, &len), TS_OK);
    struct ts_store_result res;
    ck_assert_int_eq(ts_store_apply(f->s, index, buf, len, &res), TS_OK);
    free(buf);
    return res;
}

struct ts_store_result ts_storefx_thread_act(struct ts_storefx *f, uint64_t index, int64_t t,
                                             const char *key, Threadsync__ThreadAction action)
{
    Threadsync__ModerateThread m = THREADSYNC__MODERATE_THREAD__INIT;
    m.thread_key = (char *)key;
    m.action = action;
    Threadsync__State__Command cmd = THREADSYNC__STATE__COMMAND__INIT;
    cmd.time_ms = t;
    cmd.op_case = THREADSYNC__STATE__COMMAND__OP_MODERATE_THREAD;
    cmd.moderate_thread = &m;
    cmd.actor = "mod-bob";
    return ts_storefx_apply(f, index, &cmd);
}

struct ts_store_result ts_storefx_ban(struct ts_storefx *f, uint64_t index, int64_t t,
                                      const char *actor, const char *author, uint64_t duration)
{
    Threadsync__BanAuthor b = THREADSYNC__BAN_AUTHOR__INIT;
    b.author = (char *)author;
    b.duration_ms = duration;
    Threadsync__State__Command cmd = THREADSYNC__STATE__COMMAND__INIT;
    cmd.time_ms = t;
    cmd.op_case = THREADSYNC__STATE__COMMAND__OP_BAN_AUTHOR;
    cmd.ban_author = &b;
    cmd.actor = (char *)actor;
    return ts_storefx_apply(f, index, &cmd);
}

Threadsync__Event *ts_storefx_event(const uint8_t *p, size_t len)
{
    ck_assert_uint_eq(p[0], (1 << 3) | 2);
    size_t i = 1;
    uint64_t n = 0;
    for (int shift = 0;; shift += 7) {
        n |= (uint64_t)(p[i] & 0x7F) << shift;
        if (!(p[i++] & 0x80))
            break;
    }
    ck_assert_uint_eq(i + n, len);
    Threadsync__Event *ev = threadsync__event__unpack(NULL, n, p + i);
    ck_assert_ptr_nonnull(ev);
    return ev;
}

void ts_storefx_snapshot(const struct ts_storefx *f, uint8_t **snap, size_t *len)
{
    ck_assert_int_eq(ts_store_snapshot(f->s, snap, len), TS_OK);
    /* What protobuf-c packs of the whole message, byte for byte: the
     * fields in number order, each record where a whole pack puts it. */
    Threadsync__State__StoreSnapshot *m =
        threadsync__state__store_snapshot__unpack(NULL, *len, *snap);
    ck_assert_ptr_nonnull(m);
    size_t n = threadsync__state__store_snapshot__get_packed_size(m);
    ck_assert_uint_eq(n, *len);
    uint8_t *whole = malloc(n ? n : 1);
    ck_assert_uint_eq(threadsync__state__store_snapshot__pack(m, whole), n);
    ck_assert_int_eq(memcmp(whole, *snap, n), 0);
    free(whole);
    threadsync__state__store_snapshot__free_unpacked(m, NULL);
}
