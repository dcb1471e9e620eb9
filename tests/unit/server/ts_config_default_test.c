/*
 * ts_config_default: the server's defaults come from the one table in
 * ts_config.c. The values ts_server_start() falls back on are the table's;
 * where a lower module keeps a constant of its own (the frame limit in
 * proto/, the disk reserve), the table agrees with it; settings without a
 * stated default and unknown keys give NULL / 0.
 */
#include <check.h>
#include <string.h>

#include "ts_check_main.h"
#include "ts_config.h"
#include "ts_disk.h"
#include "ts_frame.h"

START_TEST(test_table_values)
{
    ck_assert_str_eq(ts_config_default("node", "data_dir"), "threadsync-data");
    ck_assert_str_eq(ts_config_default("listen", "client"), "127.0.0.1:7420");
    ck_assert_str_eq(ts_config_default("listen", "raft"), "127.0.0.1:7421");
    ck_assert_str_eq(ts_config_default("metrics", "listen"), "127.0.0.1:7422");
    ck_assert_uint_eq(ts_config_default_uint("node", "id"), 1);
    ck_assert_uint_eq(ts_config_default_uint("limits", "heartbeat_ms"), 10000);
    ck_assert_uint_eq(ts_config_default_uint("moderation", "edit_window_ms"), 15ull * 60 * 1000);
    ck_assert_uint_eq(ts_config_default_uint("limits", "conn_output_budget"), 2u << 20);
    ck_assert_uint_eq(ts_config_default_uint("limits", "node_output_budget"), 64u << 20);
    ck_assert_uint_eq(ts_config_default_uint("limits", "max_frame"), TS_FRAME_MAX_DEFAULT);
    ck_assert_uint_eq(ts_config_default_uint("raft", "disk_reserve"), TS_DISK_RESERVE_DEFAULT);
}
END_TEST

START_TEST(test_none)
{
    ck_assert_ptr_null(ts_config_default("tls", "cert"));
    ck_assert_ptr_null(ts_config_default("node", "no_such_key"));
    ck_assert_uint_eq(ts_config_default_uint("node", "no_such_key"), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ts_config_default");
    TCase *tc = tcase_create("default");
    tcase_add_test(tc, test_table_values);
    tcase_add_test(tc, test_none);
    suite_add_tcase(s, tc);
    return ts_check_run(s);
}
