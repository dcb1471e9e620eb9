/*
 * ts_stats without a running node: a server struct with no raft, store or
 * sessions yet (or stopping) renders a valid page and is unhealthy with a
 * reason; the hooks count what they are given (frames walked by their
 * length prefixes, errors by wire code, latency, TLS), and accept NULL.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "ts_check_main.h"
#include "ts_err.h"
#include "ts_frame.h"
#include "ts_metrics.h"
#include "ts_promparse.h"
#include "ts_server_int.h"
#include "ts_stats.h"

static struct ts_prom *page(struct ts_stats *st)
{
    char *text;
    size_t len;
    ck_assert_int_eq(ts_stats_render(st, &text, &len), TS_OK);
    struct ts_prom *p;
    char err[256];
    ck_assert_msg(ts_prom_parse(text, len, &p, err, sizeof(err)) == 0, "%s\n%s", err, text);
    free(text);
    return p;
}

static double val(const struct ts_prom *p, const char *name, const char *labels)
{
    double v;
    ck_assert_msg(ts_prom_get(p, name, labels, &v), "no %s", name);
    return v;
}

START_TEST(unhealthy_without_raft)
{
    struct ts_server srv;
    memset(&srv, 0, sizeof(srv));
    struct ts_stats *st;
    ck_assert_int_eq(ts_stats_new(&srv, &st), TS_OK);
    char why[64];
    ck_assert_int_eq(ts_stats_healthy(st, why, sizeof(why)), 0);
    ck_assert_str_eq(why, "stopping");
    struct ts_prom *p = page(st);
    ck_assert(val(p, "threadsync_healthy", NULL) == 0);
    ck_assert(val(p, "threadsync_raft_leader", NULL) == 0);
    ck_assert(val(p, "threadsync_connections", "role=\"admin\"") == 0);
    ck_assert(val(p, "threadsync_build_info", "version=\"" TS_VERSION "\"") == 1);
    ts_prom_free(p);
    ck_assert_str_eq(ts_stats_address(st), "");
    ts_stats_close(st); /* no listener: nothing to close */
    ts_stats_free(st);
}
END_TEST

START_TEST(hooks_count)
{
    struct ts_server srv;
    memset(&srv, 0, sizeof(srv));
    struct ts_stats *st;
    ck_assert_int_eq(ts_stats_new(&srv, &st), TS_OK);

    /* two whole frames of 5 and 0 payload bytes in one hub batch */
    const uint8_t batch[] = {0, 0, 0, 5, 1, 2, 3, 4, 5, 0, 0, 0, 0};
    ts_stats_frames_out(st, batch, sizeof(batch));
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Ping ping = THREADSYNC__PING__INIT;
    ping.nonce = 300;
    f.msg_case = THREADSYNC__FRAME__MSG_PING;
    f.ping = &ping;
    ts_stats_frame_out(st, ts_frame_size(&f));
    ts_stats_frame_in(st, ts_frame_size(&f));
    ts_stats_error(st, TS_E_NOT_FOUND);
    ts_stats_error(st, TS_E_NOT_FOUND);
    ts_stats_error(st, TS_E_NOMEM); /* local: counted as what the client sees */
    ts_stats_tls(st, 0);
    ts_stats_tls(st, 1);
    ts_stats_tls_failed(st);
    ts_stats_accepted(st);
    ts_stats_post_done(st, TS_OK, uv_hrtime());
    ts_stats_post_done(st, TS_E_UNAVAILABLE, uv_hrtime()); /* not a commit */
    ts_stats_backup_done(st, 1234);

    struct ts_prom *p = page(st);
    ck_assert(val(p, "threadsync_frames_sent_total", NULL) == 3);
    ck_assert(val(p, "threadsync_sent_bytes_total", NULL) ==
              sizeof(batch) + (double)ts_frame_size(&f));
    ck_assert(val(p, "threadsync_frames_received_total", NULL) == 1);
    ck_assert(val(p, "threadsync_errors_total", "code=\"NOT_FOUND\"") == 2);
    ck_assert(val(p, "threadsync_errors_total", "code=\"INTERNAL\"") == 1); /* wire name */
    ck_assert(val(p, "threadsync_tls_handshakes_total", NULL) == 2);
    ck_assert(val(p, "threadsync_tls_resumptions_total", NULL) == 1);
    ck_assert(val(p, "threadsync_tls_handshake_failures_total", NULL) == 1);
    ck_assert(val(p, "threadsync_connections_accepted_total", NULL) == 1);
    ck_assert(val(p, "threadsync_post_commit_seconds_count", NULL) == 1);
    ck_assert(val(p, "threadsync_backups_total", NULL) == 1);
    ck_assert(val(p, "threadsync_backup_bytes_total", NULL) == 1234);
    ts_prom_free(p);
    ts_stats_free(st);

    /* no metrics: every hook is a no-op */
    ts_stats_frames_out(NULL, batch, sizeof(batch));
    ts_stats_frame_in(NULL, 1);
    ts_stats_error(NULL, TS_E_NOT_FOUND);
    ts_stats_post_done(NULL, TS_OK, 0);
    ts_stats_tls(NULL, 1);
    ts_stats_free(NULL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ts_stats");
    TCase *tc = tcase_create("stats");
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, unhealthy_without_raft);
    tcase_add_test(tc, hooks_count);
    suite_add_tcase(s, tc);
    return ts_check_run(s);
}
