/*
 * ts_version: the version of threadsync (the programs and libthreadsync).
 *
 * This header is the one place the version is written: the top-level
 * CMakeLists.txt reads the three numbers from it for project(VERSION), so the
 * package files, the programs' --version and these macros cannot disagree.
 * Semantic versioning: PATCH fixes, MINOR adds (API and protocol stay
 * compatible), MAJOR breaks. The shared library's soname moves on its own
 * rule (client/lib/libthreadsync.abi, see threadsync.h "ABI").
 *
 * THREADSYNC_VERSION_* say what a program was compiled against;
 * ts_version() what it runs with.
 */
#ifndef TS_VERSION_H
#define TS_VERSION_H

#define THREADSYNC_VERSION_MAJOR 0
#define THREADSYNC_VERSION_MINOR 1
#define THREADSYNC_VERSION_PATCH 0

#define TS__VERSION_STR2(x) #x
#define TS__VERSION_STR(x) TS__VERSION_STR2(x)
/* "MAJOR.MINOR.PATCH" */
#define THREADSYNC_VERSION_STRING                                                                  \
    TS__VERSION_STR(THREADSYNC_VERSION_MAJOR)                                                      \
    "." TS__VERSION_STR(THREADSYNC_VERSION_MINOR) "." TS__VERSION_STR(THREADSYNC_VERSION_PATCH)
/* One number that compares in version order: 0x00MMmmpp. */
#define THREADSYNC_VERSION_HEX                                                                     \
    ((THREADSYNC_VERSION_MAJOR << 16) | (THREADSYNC_VERSION_MINOR << 8) | THREADSYNC_VERSION_PATCH)

/* The version of the libthreadsync in use, "MAJOR.MINOR.PATCH": static
 * storage, never freed. May differ from THREADSYNC_VERSION_STRING when a
 * program runs with a newer shared library of the same soname. */
const char *ts_version(void);

#endif
