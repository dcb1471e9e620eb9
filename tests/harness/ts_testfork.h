/*
 * ts_testfork: what a forked child inherits, for the tests of memory kept
 * out of snapshot children (MADV_DONTFORK: ts_map's fork-private maps,
 * ts_repl_heap's entry buffers).
 */
#ifndef TS_TESTFORK_H
#define TS_TESTFORK_H

/* Whether a child forked now has the page holding p mapped. The child asks
 * msync, which fails with ENOMEM on an unmapped range where a read would
 * crash; the parent reaps it. Asserts (Check) that the fork and the child
 * went as planned. */
int ts_test_mapped_in_child(const void *p);

#endif
