/*
 * ts_memtrim: gives the heap's free pages back to the system after a burst
 * of connections comes or goes.
 *
 * Why: a TLS handshake allocates and frees several times what its
 * connection keeps (key shares, certificate and transcript buffers, the
 * session ticket's contexts), interleaved with the objects that stay, so a
 * burst of connects (or disconnects) leaves free holes throughout the heap.
 * glibc returns memory by itself only from the top of the heap; the holes
 * stay resident until reused. At N = 5,000 idle subscribers that is about
 * 660 bytes per connection of RSS that malloc_trim(0) releases (bench/
 * README.md, "memory").
 *
 * Policy, on the server's ticker (about once a second): connection churn
 * accumulates; once it reaches TS_MEMTRIM_CHURN, the heap is trimmed on the
 * first tick without churn (the burst is over, its handshakes are done), or
 * after TS_MEMTRIM_MAX_TICKS ticks of steady churn. Trimming walks the free
 * lists and madvises free pages (0.6 ms for the 85 MB heap of 5,000
 * subscribers): cheap, but kept off every tick of a busy node.
 *
 * Single-threaded: the owner's loop calls it. The trim itself covers every
 * malloc arena of the process (loops on other threads allocate from their
 * own arenas).
 */
#ifndef TS_MEMTRIM_H
#define TS_MEMTRIM_H

#include <stdint.h>

/* Connections come or gone since the last trim before one is worth it. */
#define TS_MEMTRIM_CHURN 32
/* Ticks of uninterrupted churn after which a trim happens anyway. */
#define TS_MEMTRIM_MAX_TICKS 10

struct ts_memtrim;

/* trim releases free memory and returns 1 if it released any; NULL means
 * malloc_trim(0) (a no-op returning 0 where the C library has none). For
 * tests. NULL on allocation failure. Free with ts_memtrim_free(). */
struct ts_memtrim *ts_memtrim_new(int (*trim)(void));
void ts_memtrim_free(struct ts_memtrim *m);

/* One tick. churn is a running total of connections accepted plus closed
 * (any monotonic count works; only differences matter). Returns 1 when
 * this tick trimmed the heap. */
int ts_memtrim_tick(struct ts_memtrim *m, uint64_t churn);

/* Trims the heap now, whatever the churn, and logs why (a short word, e.g.
 * "restore") with the time it took. For a one-off event that freed much
 * memory at once: a restore frees raft's loaded snapshot, the decode's
 * scratch and the state it replaced, and the heap keeps those holes
 * resident (huge pages included) until reused. Returns 1 if memory was
 * released. Resets the churn count: the holes connections left go too. */
int ts_memtrim_now(struct ts_memtrim *m, const char *why);

/* Trims done so far. */
uint64_t ts_memtrim_count(const struct ts_memtrim *m);

#endif
