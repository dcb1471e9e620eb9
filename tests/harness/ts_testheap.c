/*
 * ts_testheap: see ts_testheap.h.
 */
#include "ts_testheap.h"

#include <stddef.h>

static int heap_on;
static long long heap_live, heap_peak;

static void heap_add(long long n)
{
    if (!heap_on)
        return;
    heap_live += n;
    if (heap_live > heap_peak)
        heap_peak = heap_live;
}

#if defined(__SANITIZE_ADDRESS__)
#define HEAP_HOOKS 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HEAP_HOOKS 1
#endif
#endif

#ifdef HEAP_HOOKS
/* From compiler-rt's sanitizer/allocator_interface.h, which GCC does not
 * install; its libasan has them. */
int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void *, size_t),
                                              void (*free_hook)(const volatile void *));
size_t __sanitizer_get_allocated_size(const volatile void *p);

static void on_malloc(const volatile void *p, size_t n)
{
    (void)p;
    heap_add((long long)n);
}

static void on_free(const volatile void *p)
{
    if (p)
        heap_add(-(long long)__sanitizer_get_allocated_size(p));
}

/* ASan keeps a handful of hook slots per process: install once. */
static void hooks_install(void)
{
    static int installed;
    if (!installed)
        __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free);
    installed = 1;
}
#else
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>

extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t n);
extern void *__libc_memalign(size_t align, size_t n);
extern void __libc_free(void *p);

static void *counted(void *p)
{
    if (p)
        heap_add((long long)malloc_usable_size(p));
    return p;
}

/* NOLINTNEXTLINE(readability-inconsistent-declaration-parameter-name) */
void *malloc(size_t n)
{
    return counted(__libc_malloc(n));
}

/* NOLINTNEXTLINE(readability-inconsistent-declaration-parameter-name) */
void *calloc(size_t n, size_t size)
{
    return counted(__libc_calloc(n, size));
}

/* NOLINTNEXTLINE(readability-inconsistent-declaration-parameter-name) */
void *realloc(void *p, size_t n)
{
    long long old = p ? (long long)malloc_usable_size(p) : 0;
    void *q = __libc_realloc(p, n);
    if (q)
        heap_add((long long)malloc_usable_size(q) - old);
    else if (!n)
        heap_add(-old);
    return q;
}

/* NOLINTNEXTLINE(readability-inconsistent-declaration-parameter-name) */
void free(void *p)
{
    if (p)
        heap_add(-(long long)malloc_usable_size(p));
    __libc_free(p);
}

/* The aligned allocators too: a block from glibc's own memalign would be
 * counted when freed and never when allocated. */
/* NOLINTNEXTLINE(readability-inconsistent-declaration-parameter-name) */
void *memalign(size_t align, size_t n)
{
    return counted(__libc_memalign(align, n));
}

/* NOLINTNEXTLINE(readability-inconsistent-declaration-parameter-name) */
void *aligned_alloc(size_t align, size_t n)
{
    return counted(__libc_memalign(align, n));
}

/* NOLINTNEXTLINE(readability-inconsistent-declaration-parameter-name) */
int posix_memalign(void **out, size_t align, size_t n)
{
    if (align < sizeof(void *) || (align & (align - 1)))
        return EINVAL;
    void *p = counted(__libc_memalign(align, n));
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}

static void hooks_install(void)
{
}
#endif

void ts_testheap_start(void)
{
    hooks_install();
    heap_on = 0;
    heap_live = heap_peak = 0;
    heap_on = 1;
}

void ts_testheap_stop(void)
{
    heap_on = 0;
}

long long ts_testheap_live(void)
{
    return heap_live;
}

long long ts_testheap_peak(void)
{
    return heap_peak;
}
