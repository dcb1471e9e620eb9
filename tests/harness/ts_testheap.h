/*
 * ts_testheap: exact heap accounting for tests that bound what code keeps
 * on the heap (ts_tls_test's engine overhead, ts_store_test's restore
 * peak), the same figure in every build type.
 *
 * Under ASan through its allocator's malloc/free hooks (requested sizes);
 * otherwise this module defines malloc, calloc, realloc, free and the
 * aligned allocators over glibc's __libc_* functions (an executable's
 * definitions win for every library it loads, OpenSSL and protobuf-c
 * included) and counts malloc_usable_size. Linking it is what replaces
 * the allocator: link it only into a test that uses it. glibc's own
 * figures (mallinfo2) will not do: they count chunks parked in the
 * per-thread cache as in use, so a free followed by an allocation of the
 * same size reads as zero bytes allocated.
 *
 * The counters are plain integers: count only while one thread
 * allocates.
 */
#ifndef TS_TESTHEAP_H
#define TS_TESTHEAP_H

/* Starts counting from zero: live and peak bytes are 0 now. */
void ts_testheap_start(void);

/* Stops counting; the figures stay readable. */
void ts_testheap_stop(void);

/* Bytes allocated minus bytes freed since ts_testheap_start() (frees of
 * blocks allocated before it count too, so this can go below 0). */
long long ts_testheap_live(void);

/* The highest ts_testheap_live() since ts_testheap_start(). */
long long ts_testheap_peak(void);

#endif
