/*
 * The public API's evolution rules (threadsync.h "ABI"): the version macros,
 * the library's ts_version() and the version CMake built with (TS_VERSION,
 * from project(VERSION)) are one and the same; a public struct is read only
 * as far as the caller's struct_size says (0: the first layout), the rest
 * taking its zero default, and a newer caller's larger struct is cut to what
 * the library knows.
 */
#include <check.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "threadsync.h"
#include "ts_check_main.h"
#include "ts_client_int.h"

START_TEST(test_agree)
{
    char want[32];
    snprintf(want, sizeof(want), "%d.%d.%d", THREADSYNC_VERSION_MAJOR, THREADSYNC_VERSION_MINOR,
             THREADSYNC_VERSION_PATCH);
    ck_assert_str_eq(THREADSYNC_VERSION_STRING, want);
    ck_assert_str_eq(ts_version(), THREADSYNC_VERSION_STRING);
    ck_assert_str_eq(ts_version(), TS_VERSION);
    ck_assert_int_eq(THREADSYNC_VERSION_HEX, THREADSYNC_VERSION_MAJOR * 65536 +
                                                 THREADSYNC_VERSION_MINOR * 256 +
                                                 THREADSYNC_VERSION_PATCH);
}
END_TEST

/* A caller's struct laid out in memory with poison after it: the copy must
 * not read the poison as fields. */
struct caller {
    struct ts_client_config cfg;
    unsigned char after[64];
};

START_TEST(test_config_sizes)
{
    struct caller in;
    memset(&in, 0xab, sizeof(in));
    static const char *const servers[] = {"127.0.0.1:1"};
    in.cfg.servers = servers;
    in.cfg.n_servers = 1;
    struct ts_client_config got;

    /* the macro sets the current size: every field is read */
    struct ts_client_config init = TS_CLIENT_CONFIG_INIT;
    ck_assert_uint_eq(init.struct_size, sizeof(struct ts_client_config));
    in.cfg.struct_size = sizeof(struct ts_client_config);
    ts__struct_copy(&got, sizeof(got), &in.cfg, TS__CONFIG_FIRST_SIZE);
    ck_assert_uint_eq(got.struct_size, sizeof(got));
    ck_assert_uint_eq(got.n_servers, 1);
    ck_assert_ptr_eq(got.state_arg, in.cfg.state_arg);

    /* an older caller whose struct ends before silence_ms: defaults after */
    in.cfg.struct_size = offsetof(struct ts_client_config, silence_ms);
    ts__struct_copy(&got, sizeof(got), &in.cfg, TS__CONFIG_FIRST_SIZE);
    ck_assert_uint_eq(got.n_servers, 1);
    ck_assert_uint_eq(got.backoff_max_ms, in.cfg.backoff_max_ms);
    ck_assert_uint_eq(got.silence_ms, 0);
    ck_assert_int_eq(got.reconnect, 0);
    ck_assert_ptr_null(got.on_state);

    /* 0: the first layout, all of today's fields */
    in.cfg.struct_size = 0;
    ts__struct_copy(&got, sizeof(got), &in.cfg, TS__CONFIG_FIRST_SIZE);
    ck_assert_uint_eq(got.struct_size, sizeof(got));
    ck_assert_ptr_eq(got.state_arg, in.cfg.state_arg);

    /* a newer caller's longer struct: only what this library knows */
    in.cfg.struct_size = sizeof(in);
    memset(&got, 0xcd, sizeof(got));
    ts__struct_copy(&got, sizeof(got), &in.cfg, TS__CONFIG_FIRST_SIZE);
    ck_assert_uint_eq(got.struct_size, sizeof(got));
    ck_assert_ptr_eq(got.servers, servers);

    struct ts_client_sub_cbs cbs = TS_CLIENT_SUB_CBS_INIT;
    ck_assert_uint_eq(cbs.struct_size, sizeof(cbs));
    ck_assert_uint_eq(TS__SUB_CBS_FIRST_SIZE, sizeof(cbs));
    ck_assert_uint_eq(TS__CONFIG_FIRST_SIZE, sizeof(struct ts_client_config));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ts_abi");
    TCase *tc = tcase_create("abi");
    tcase_add_test(tc, test_agree);
    tcase_add_test(tc, test_config_sizes);
    suite_add_tcase(s, tc);
    return ts_check_run(s);
}
