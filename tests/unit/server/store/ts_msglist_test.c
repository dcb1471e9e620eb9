/*
 * ts_msglist: items are zeroed and keep their values across growth, the
 * pointer array points at each item in order and ends in NULL, k = 0
 * appends nothing yet yields a usable (empty) list, a lowered n drops the
 * tail, and a failed list yields no pointer array.
 */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>

#include "ts_check_main.h"
#include "threadsync.pb-c.h"
#include "ts_msglist.h"

START_TEST(test_grow_keeps_items)
{
    struct ts_msglist l = TS_MSGLIST_INIT(Threadsync__ClusterNode);
    for (uint64_t i = 0; i < 1000; i++) {
        Threadsync__ClusterNode *n = ts_msglist_add(&l);
        ck_assert_ptr_nonnull(n);
        ck_assert_uint_eq(n->id, 0); /* zeroed */
        ck_assert_int_eq(n->is_leader, 0);
        n->id = i + 1;
    }
    ck_assert_uint_eq(l.n, 1000);
    void **ptrs = ts_msglist_ptrs(&l);
    ck_assert_ptr_nonnull(ptrs);
    Threadsync__ClusterNode **nodes = (Threadsync__ClusterNode **)ptrs;
    for (size_t i = 0; i < 1000; i++)
        ck_assert_uint_eq(nodes[i]->id, i + 1);
    ck_assert_ptr_null(ptrs[1000]);
    ts_msglist_free(&l);
    ck_assert_uint_eq(l.n, 0);
    ck_assert_ptr_null(l.items);
    ck_assert_uint_eq(l.size, sizeof(Threadsync__ClusterNode));
}
END_TEST

START_TEST(test_add_n_and_truncate)
{
    struct ts_msglist l = TS_MSGLIST_INIT(uint64_t);
    uint64_t *none = ts_msglist_add_n(&l, 0);
    ck_assert_ptr_nonnull(none); /* an empty list is still a list */
    ck_assert_uint_eq(l.n, 0);
    void **ptrs = ts_msglist_ptrs(&l);
    ck_assert_ptr_nonnull(ptrs);
    ck_assert_ptr_null(ptrs[0]);

    uint64_t *v = ts_msglist_add_n(&l, 40);
    ck_assert_ptr_nonnull(v);
    for (size_t i = 0; i < 40; i++) {
        ck_assert_uint_eq(v[i], 0);
        v[i] = i * 3;
    }
    l.n = 10; /* keep the first ten */
    uint64_t *w = ts_msglist_add(&l);
    ck_assert_ptr_nonnull(w);
    ck_assert_uint_eq(*w, 0); /* re-used slot zeroed again */
    ptrs = ts_msglist_ptrs(&l);
    ck_assert_ptr_nonnull(ptrs);
    ck_assert_uint_eq(*(uint64_t *)ptrs[9], 27);
    ck_assert_ptr_eq(ptrs[10], w);
    ck_assert_ptr_null(ptrs[11]);
    ts_msglist_free(&l);
}
END_TEST

START_TEST(test_failed_list)
{
    struct ts_msglist l = TS_MSGLIST_INIT(uint64_t);
    ck_assert_ptr_nonnull(ts_msglist_add(&l));
    ck_assert_ptr_null(ts_msglist_add_n(&l, SIZE_MAX / 4)); /* cannot be had */
    ck_assert_int_eq(l.failed, 1);
    ck_assert_uint_eq(l.n, 1);
    ck_assert_ptr_null(ts_msglist_add(&l)); /* stays failed */
    ck_assert_ptr_null(ts_msglist_ptrs(&l));
    ts_msglist_free(&l);
    ck_assert_int_eq(l.failed, 0);
}
END_TEST

static Suite *msglist_suite(void)
{
    Suite *s = suite_create("ts_msglist");
    TCase *tc = tcase_create("msglist");
    tcase_add_test(tc, test_grow_keeps_items);
    tcase_add_test(tc, test_add_n_and_truncate);
    tcase_add_test(tc, test_failed_list);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ts_check_run(msglist_suite());
}
