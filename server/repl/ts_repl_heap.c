/*
 * ts_repl_heap: fork-private chunks for Raft entry buffers (see the header).
 *
 * Layout: the region is TS_REPL_HEAP_REGION bytes aligned to a chunk,
 * reserved PROT_NONE (address space, no memory) and marked MADV_DONTFORK
 * once; chunks are made writable one at a time from its start and never
 * returned. A chunk begins with struct chunk; each buffer follows a struct
 * block holding its length (realloc needs it), so a pointer's chunk is the
 * pointer rounded down to the chunk size.
 *
 * Invariants, under H.lock: H.cur is the chunk allocations bump in (or
 * NULL); a chunk on the free list is not H.cur and has live == 0; a chunk
 * that is neither has live > 0 and joins the free list when its last
 * buffer goes.
 */
#include "ts_repl_heap.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <raft.h>

#include "ts_err.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
/* Freed buffers and unused chunk space are poisoned, so AddressSanitizer
 * reports a use after free here as it would for malloc's memory. */
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define CHUNK TS_REPL_HEAP_CHUNK
#define CHUNK_HDR 64 /* sizeof(struct chunk), rounded to a cache line */
#define MAX_POOLED (CHUNK / 4)

struct chunk {
    struct chunk *next_free;
    size_t used; /* bytes bumped, CHUNK_HDR included */
    size_t live; /* buffers carved and not yet freed */
};
_Static_assert(sizeof(struct chunk) <= CHUNK_HDR, "struct chunk outgrew its header");

struct block {
    size_t len;
    size_t pad; /* keeps the buffer after it 16-byte aligned, as malloc's */
};

static struct {
    pthread_mutex_t lock;
    size_t carved; /* chunks made writable, from heap_base on */
    struct chunk *cur, *free;
    struct ts_repl_heap_stats st;
} H = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* The region's start, published once installed: ts_repl_heap_owns reads
 * it without the lock (a thread holding a pool pointer got it after the
 * store). */
static _Atomic(char *) heap_base;

static size_t block_size(size_t len)
{
    return sizeof(struct block) + ((len + 15) & ~(size_t)15);
}

static void chunk_free_push(struct chunk *c)
{
    POISON((char *)c + CHUNK_HDR, CHUNK - CHUNK_HDR);
    c->next_free = H.free;
    H.free = c;
    H.st.chunks_free++;
}

/* An empty chunk: a free one, or a new one from the region; NULL when the
 * region is used up or mprotect fails. */
static struct chunk *chunk_take(void)
{
    struct chunk *c = H.free;
    if (c) {
        H.free = c->next_free;
        H.st.chunks_free--;
    } else {
        if (H.carved == TS_REPL_HEAP_REGION / CHUNK)
            return NULL;
        char *base = atomic_load_explicit(&heap_base, memory_order_relaxed);
        c = (struct chunk *)(base + H.carved * CHUNK);
        if (mprotect(c, CHUNK, PROT_READ | PROT_WRITE) != 0)
            return NULL;
        H.carved++;
        H.st.chunks++;
        POISON((char *)c + CHUNK_HDR, CHUNK - CHUNK_HDR);
    }
    c->next_free = NULL;
    c->used = CHUNK_HDR;
    c->live = 0;
    return c;
}

static void *fallback_alloc(size_t len)
{
    pthread_mutex_lock(&H.lock);
    H.st.fallback++;
    pthread_mutex_unlock(&H.lock);
    return malloc(len ? len : 1);
}

void *ts_repl_heap_alloc(size_t len)
{
    if (!atomic_load_explicit(&heap_base, memory_order_acquire))
        return raft_malloc(len);
    if (len > MAX_POOLED)
        return fallback_alloc(len);
    size_t need = block_size(len);
    pthread_mutex_lock(&H.lock);
    struct chunk *c = H.cur;
    /* A current chunk without live buffers was started over by pool_free,
     * so one that cannot fit need still holds some: it empties later. */
    if (!c || c->used + need > CHUNK) {
        c = H.cur = chunk_take();
        if (!c) {
            pthread_mutex_unlock(&H.lock);
            return fallback_alloc(len);
        }
    }
    struct block *b = (struct block *)((char *)c + c->used);
    UNPOISON(b, need);
    c->used += need;
    c->live++;
    H.st.live++;
    pthread_mutex_unlock(&H.lock);
    b->len = len;
    return b + 1;
}

int ts_repl_heap_owns(const void *p)
{
    uintptr_t base = (uintptr_t)atomic_load_explicit(&heap_base, memory_order_acquire);
    uintptr_t a = (uintptr_t)p;
    return base && a >= base && a - base < TS_REPL_HEAP_REGION;
}

static void pool_free(void *p)
{
    struct block *b = (struct block *)p - 1;
    struct chunk *c = (struct chunk *)((char *)p - (uintptr_t)p % CHUNK);
    size_t size = block_size(b->len);
    pthread_mutex_lock(&H.lock);
    POISON(b, size);
    H.st.live--;
    if (--c->live == 0) {
        if (c == H.cur) {
            /* Start the current chunk over: its pages are hot. */
            POISON((char *)c + CHUNK_HDR, c->used - CHUNK_HDR);
            c->used = CHUNK_HDR;
        } else {
            chunk_free_push(c);
        }
    }
    pthread_mutex_unlock(&H.lock);
}

/* ---- libraft's heap: the C library's, except for pool pointers ---- */

static void *heap_malloc(void *data, size_t size)
{
    (void)data;
    return malloc(size);
}

static void heap_free(void *data, void *ptr)
{
    (void)data;
    if (ts_repl_heap_owns(ptr))
        pool_free(ptr);
    else
        free(ptr);
}

static void *heap_calloc(void *data, size_t nmemb, size_t size)
{
    (void)data;
    return calloc(nmemb, size);
}

/* A pool buffer that is resized moves to malloc (libraft 0.15 resizes no
 * entry buffer; this only keeps the contract whole). */
static void *heap_realloc(void *data, void *ptr, size_t size)
{
    (void)data;
    if (!ts_repl_heap_owns(ptr))
        return realloc(ptr, size);
    void *q = malloc(size ? size : 1);
    if (!q)
        return NULL;
    size_t len = ((struct block *)ptr - 1)->len;
    memcpy(q, ptr, len < size ? len : size);
    pool_free(ptr);
    return q;
}

static void *heap_aligned_alloc(void *data, size_t alignment, size_t size)
{
    (void)data;
    return aligned_alloc(alignment, size);
}

static void heap_aligned_free(void *data, size_t alignment, void *ptr)
{
    (void)alignment;
    heap_free(data, ptr);
}

static struct raft_heap raft_heap = {
    .malloc = heap_malloc,
    .free = heap_free,
    .calloc = heap_calloc,
    .realloc = heap_realloc,
    .aligned_alloc = heap_aligned_alloc,
    .aligned_free = heap_aligned_free,
};

static pthread_once_t install_once = PTHREAD_ONCE_INIT;
static int install_rc = TS_E_NOMEM;

static void install(void)
{
    size_t span = TS_REPL_HEAP_REGION + CHUNK; /* room to align */
    char *m = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED)
        return;
    char *base = m + (CHUNK - (uintptr_t)m % CHUNK) % CHUNK;
    if (base > m)
        munmap(m, (size_t)(base - m));
    size_t tail = (size_t)(m + span - (base + TS_REPL_HEAP_REGION));
    if (tail)
        munmap(base + TS_REPL_HEAP_REGION, tail);
    if (madvise(base, TS_REPL_HEAP_REGION, MADV_DONTFORK) != 0) {
        munmap(base, TS_REPL_HEAP_REGION);
        return;
    }
    /* The heap first: a pool pointer exists only once heap_base is set,
     * and by then raft_free already comes here. */
    raft_heap_set(&raft_heap);
    atomic_store_explicit(&heap_base, base, memory_order_release);
    install_rc = TS_OK;
}

int ts_repl_heap_install(void)
{
    pthread_once(&install_once, install);
    return install_rc;
}

void ts_repl_heap_stats(struct ts_repl_heap_stats *out)
{
    pthread_mutex_lock(&H.lock);
    *out = H.st;
    pthread_mutex_unlock(&H.lock);
}
