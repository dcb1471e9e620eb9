/*
 * ts_memtrim: trim the heap after connection churn (see ts_memtrim.h).
 */
#include "ts_memtrim.h"

#include "ts_log.h"

#include <stdlib.h>
#include <uv.h>

#ifdef __GLIBC__
#include <malloc.h>
#endif

struct ts_memtrim {
    int (*trim)(void);
    uint64_t last;    /* churn total at the previous tick */
    uint64_t pending; /* churn since the last trim */
    unsigned busy;    /* consecutive ticks with churn */
    uint64_t count;
};

static int libc_trim(void)
{
#ifdef __GLIBC__
    return malloc_trim(0);
#else
    return 0;
#endif
}

struct ts_memtrim *ts_memtrim_new(int (*trim)(void))
{
    struct ts_memtrim *m = calloc(1, sizeof(*m));
    if (m)
        m->trim = trim ? trim : libc_trim;
    return m;
}

void ts_memtrim_free(struct ts_memtrim *m)
{
    free(m);
}

/* The trim both paths make: the heap's free pages back, the churn count
 * reset (the holes connections left go too), one more trim counted.
 * Returns 1 if memory was released; *us is what it took. */
static int trim_heap(struct ts_memtrim *m, uint64_t *us)
{
    uint64_t t0 = uv_hrtime();
    int released = m->trim();
    *us = (uv_hrtime() - t0) / 1000;
    m->pending = 0;
    m->busy = 0;
    m->count++;
    return released;
}

int ts_memtrim_tick(struct ts_memtrim *m, uint64_t churn)
{
    uint64_t d = churn - m->last;
    m->last = churn;
    m->pending += d;
    m->busy = d ? m->busy + 1 : 0;
    if (m->pending < TS_MEMTRIM_CHURN || (m->busy > 0 && m->busy < TS_MEMTRIM_MAX_TICKS))
        return 0;
    uint64_t pending = m->pending, us;
    int released = trim_heap(m, &us);
    TS_DEBUG("event=heap_trim churn=%llu released=%d us=%llu", (unsigned long long)pending,
             released, (unsigned long long)us);
    return 1;
}

int ts_memtrim_now(struct ts_memtrim *m, const char *why)
{
    uint64_t us;
    int released = trim_heap(m, &us);
    TS_INFO("event=heap_trim why=%s released=%d us=%llu", why, released, (unsigned long long)us);
    return released;
}

uint64_t ts_memtrim_count(const struct ts_memtrim *m)
{
    return m->count;
}
