/*
 * ts_lattrace: per-post stage times for the latency benchmark (see
 * ts_lattrace.h).
 *
 * Records are found by stamp through an open-addressing table (stamps are
 * distinct nanosecond times) and, once applied, by seq through a ring.
 * One mutex guards the stamp table and the stamped stage times, since the
 * decoded stage comes from I/O threads; the pushed times are the main
 * loop's alone and are written without it (a record's seq is set on the
 * main loop before any push can name it). The table is sized for a
 * benchmark's latency scenarios, not for ingest runs: past TS_LATTRACE_MAX
 * posts nothing more is traced.
 */
#include "ts_lattrace.h"

#include "ts_err.h"
#include "ts_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define SLOTS ((size_t)2 * TS_LATTRACE_MAX) /* power of two, half full at most */
#define SEQ_RING 65536
/* A push naming more events than this (a catch-up, or subscribers far
 * behind at 1,000 posts/s) marks only the newest this many. */
#define PUSH_SCAN_MAX 256

enum { DECODED, QUEUED, PROPOSED, APPLIED, N_STAGES };

struct rec {
    uint64_t stamp, seq;
    uint64_t t[N_STAGES];
    uint64_t push_first, push_last, pushes;
};

int ts_lattrace_on;

static struct {
    uv_mutex_t mu;
    char *path;
    struct rec *recs;
    size_t n;
    uint32_t *slots;  /* record index + 1, 0 = empty */
    uint32_t *by_seq; /* record index + 1 at seq % SEQ_RING */
} T;

int ts_lattrace_open(void)
{
    const char *path = getenv("THREADSYNC_LATENCY_TRACE");
    if (!path || !*path || ts_lattrace_on)
        return TS_OK;
    T.path = strdup(path);
    T.recs = calloc(TS_LATTRACE_MAX, sizeof(*T.recs));
    T.slots = calloc(SLOTS, sizeof(*T.slots));
    T.by_seq = calloc(SEQ_RING, sizeof(*T.by_seq));
    if (!T.path || !T.recs || !T.slots || !T.by_seq || uv_mutex_init(&T.mu) != 0) {
        free(T.path);
        free(T.recs);
        free(T.slots);
        free(T.by_seq);
        memset(&T, 0, sizeof(T));
        return TS_E_NOMEM;
    }
    TS_WARN("event=latency_trace_on file=%s", T.path);
    ts_lattrace_on = 1;
    return TS_OK;
}

uint64_t ts_lattrace_stamp(const char *body)
{
    if (!body || strncmp(body, "tsb ", 4) != 0)
        return 0;
    uint64_t t = 0;
    for (int i = 4; i < 24; i++) {
        if (body[i] < '0' || body[i] > '9')
            return 0;
        t = t * 10 + (uint64_t)(body[i] - '0');
    }
    return t;
}

/* The record of stamp, made if new and there is room; NULL else. Under
 * T.mu. */
static struct rec *find(uint64_t stamp)
{
    uint64_t h = stamp * 0x9e3779b97f4a7c15ull;
    for (size_t i = (size_t)(h >> 40) & (SLOTS - 1);; i = (i + 1) & (SLOTS - 1)) {
        uint32_t k = T.slots[i];
        if (k && T.recs[k - 1].stamp == stamp)
            return &T.recs[k - 1];
        if (!k) {
            if (T.n == TS_LATTRACE_MAX)
                return NULL;
            struct rec *r = &T.recs[T.n++];
            r->stamp = stamp;
            T.slots[i] = (uint32_t)T.n;
            return r;
        }
    }
}

static void mark(int stage, uint64_t stamp, uint64_t seq)
{
    if (!stamp)
        return;
    uint64_t now = uv_hrtime();
    uv_mutex_lock(&T.mu);
    struct rec *r = find(stamp);
    if (r && !r->t[stage])
        r->t[stage] = now;
    if (r && stage == APPLIED) {
        r->seq = seq;
        T.by_seq[seq % SEQ_RING] = (uint32_t)(r - T.recs) + 1;
    }
    uv_mutex_unlock(&T.mu);
}

void ts_lattrace_decoded(uint64_t stamp)
{
    mark(DECODED, stamp, 0);
}

void ts_lattrace_queued(uint64_t stamp)
{
    mark(QUEUED, stamp, 0);
}

void ts_lattrace_proposed(uint64_t stamp)
{
    mark(PROPOSED, stamp, 0);
}

void ts_lattrace_applied(uint64_t stamp, uint64_t seq)
{
    mark(APPLIED, stamp, seq);
}

void ts_lattrace_pushed(uint64_t after, uint64_t upto)
{
    uint64_t now = uv_hrtime();
    for (uint64_t s = upto, n = 0; s > after && n < PUSH_SCAN_MAX; s--, n++) {
        uint32_t k = T.by_seq[s % SEQ_RING];
        if (!k || T.recs[k - 1].seq != s)
            continue;
        struct rec *r = &T.recs[k - 1];
        if (!r->push_first)
            r->push_first = now;
        r->push_last = now;
        r->pushes++;
    }
}

/* A stage's time after the stamp in ns, 0 when unset. */
static unsigned long long since(uint64_t t, uint64_t stamp)
{
    return t > stamp ? (unsigned long long)(t - stamp) : 0;
}

void ts_lattrace_close(void)
{
    if (!ts_lattrace_on)
        return;
    ts_lattrace_on = 0;
    FILE *f = fopen(T.path, "w");
    if (f) {
        fprintf(f, "# stamp seq decoded_ns queued_ns proposed_ns applied_ns push_first_ns "
                   "push_last_ns pushes (stage times after the stamp; 0: not reached)\n");
        for (size_t i = 0; i < T.n; i++) {
            const struct rec *r = &T.recs[i];
            fprintf(f, "%llu %llu %llu %llu %llu %llu %llu %llu %llu\n",
                    (unsigned long long)r->stamp, (unsigned long long)r->seq,
                    since(r->t[DECODED], r->stamp), since(r->t[QUEUED], r->stamp),
                    since(r->t[PROPOSED], r->stamp), since(r->t[APPLIED], r->stamp),
                    since(r->push_first, r->stamp), since(r->push_last, r->stamp),
                    (unsigned long long)r->pushes);
        }
        if (fclose(f) != 0)
            TS_WARN("event=latency_trace_write_failed file=%s", T.path);
    } else {
        TS_WARN("event=latency_trace_open_failed file=%s", T.path);
    }
    uv_mutex_destroy(&T.mu);
    free(T.path);
    free(T.recs);
    free(T.slots);
    free(T.by_seq);
    memset(&T, 0, sizeof(T));
}
