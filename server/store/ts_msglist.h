/*
 * ts_msglist: a growable array of one protobuf message type, and the
 * pointer array a repeated message field wants (`T **field; size_t
 * n_field`).
 *
 * Request handlers collect store views into one (their strings still point
 * into the store, so the list lives within one loop turn), point a Result's
 * repeated field at ts_msglist_ptrs() and send. Load: one list per answer,
 * up to a few thousand items.
 */
#ifndef TS_MSGLIST_H
#define TS_MSGLIST_H

#include <stddef.h>

struct ts_msglist {
    void *items; /* n items of size bytes each; moves while the list grows */
    void **ptrs; /* set by ts_msglist_ptrs: n pointers into items, then NULL */
    size_t n;    /* items in use; may be lowered to drop the tail */
    size_t cap;  /* items allocated */
    size_t size; /* bytes per item */
    int failed;  /* an add ran out of memory: the list is incomplete */
};

/* A list of messages of type T, empty and owning nothing. */
#define TS_MSGLIST_INIT(T)                                                                         \
    {                                                                                              \
        .size = sizeof(T)                                                                          \
    }

/* Appends k (may be 0) zeroed items and returns the first (the end of the
 * list when k is 0); NULL (and l->failed set) when out of memory. Earlier
 * item pointers are invalid after a call. */
void *ts_msglist_add_n(struct ts_msglist *l, size_t k);

/* ts_msglist_add_n(l, 1). */
void *ts_msglist_add(struct ts_msglist *l);

/* Builds l->ptrs (owned by l, valid until the next add or the free) and
 * returns it; NULL when an add failed or out of memory. */
void **ts_msglist_ptrs(struct ts_msglist *l);

/* Frees items and ptrs; l is empty again (its size is kept). */
void ts_msglist_free(struct ts_msglist *l);

#endif
