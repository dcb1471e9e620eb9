/*
 * ts_metrics: the registry's text exposition (exact text for each type,
 * escaping, value formatting), argument checks, the series cap, and every
 * rendered page read back by the strict format parser (ts_promparse), which
 * is itself checked against malformed pages here.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ts_check_main.h"
#include "ts_err.h"
#include "ts_metrics.h"
#include "ts_promparse.h"

static char *render(struct ts_metrics *m, size_t *len)
{
    char *text;
    ck_assert_int_eq(ts_metrics_render(m, &text, len), TS_OK);
    ck_assert_uint_eq(strlen(text), *len);
    return text;
}

/* Renders m and parses the page strictly; returns the parse. */
static struct ts_prom *render_parse(struct ts_metrics *m)
{
    size_t len;
    char *text = render(m, &len);
    struct ts_prom *p;
    char err[256];
    ck_assert_msg(ts_prom_parse(text, len, &p, err, sizeof(err)) == 0, "%s in:\n%s", err, text);
    free(text);
    return p;
}

START_TEST(empty_registry_renders_nothing)
{
    struct ts_metrics *m = ts_metrics_new();
    size_t len;
    char *text = render(m, &len);
    ck_assert_uint_eq(len, 0);
    free(text);
    ts_metrics_free(m);
}
END_TEST

START_TEST(counter_gauge_exact_text)
{
    struct ts_metrics *m = ts_metrics_new();
    struct ts_metric *c =
        ts_metrics_add(m, TS_METRIC_COUNTER, "t_requests_total", "Requests.", NULL, NULL, 0);
    struct ts_metric *g =
        ts_metrics_add(m, TS_METRIC_GAUGE, "t_conns", "Connections by role.", "role", NULL, 0);
    ck_assert_ptr_nonnull(c);
    ck_assert_ptr_nonnull(g);
    ts_metric_add(c, NULL, 2);
    ts_metric_add(c, NULL, 3);
    ts_metric_add(c, NULL, -7); /* a counter never goes down */
    ts_metric_set(g, "reader", 4);
    ts_metric_add(g, "admin", 1);
    ts_metric_add(g, "reader", -1);
    size_t len;
    char *text = render(m, &len);
    ck_assert_str_eq(text, "# HELP t_requests_total Requests.\n"
                           "# TYPE t_requests_total counter\n"
                           "t_requests_total 5\n"
                           "# HELP t_conns Connections by role.\n"
                           "# TYPE t_conns gauge\n"
                           "t_conns{role=\"reader\"} 3\n"
                           "t_conns{role=\"admin\"} 1\n");
    ck_assert(ts_metric_value(g, "reader") == 3);
    ck_assert(ts_metric_value(g, "nobody") == 0);
    free(text);
    ts_metrics_free(m);
}
END_TEST

START_TEST(histogram_buckets_are_cumulative)
{
    struct ts_metrics *m = ts_metrics_new();
    const double b[] = {0.5, 1, 2};
    struct ts_metric *h =
        ts_metrics_add(m, TS_METRIC_HISTOGRAM, "t_latency_seconds", "Latency.", NULL, b, 3);
    ck_assert_ptr_nonnull(h);
    /* a value equal to a bound counts in that bucket (le = less or equal) */
    const double obs[] = {0.25, 0.5, 0.75, 1, 3, 100, NAN};
    for (size_t i = 0; i < sizeof(obs) / sizeof(obs[0]); i++)
        ts_metric_observe(h, NULL, obs[i]);
    size_t len;
    char *text = render(m, &len);
    ck_assert_str_eq(text, "# HELP t_latency_seconds Latency.\n"
                           "# TYPE t_latency_seconds histogram\n"
                           "t_latency_seconds_bucket{le=\"0.5\"} 2\n"
                           "t_latency_seconds_bucket{le=\"1\"} 4\n"
                           "t_latency_seconds_bucket{le=\"2\"} 4\n"
                           "t_latency_seconds_bucket{le=\"+Inf\"} 6\n"
                           "t_latency_seconds_sum 105.5\n"
                           "t_latency_seconds_count 6\n");
    free(text);
    struct ts_prom *p = render_parse(m);
    double v;
    ck_assert(ts_prom_get(p, "t_latency_seconds_count", "", &v) && v == 6);
    ck_assert_str_eq(ts_prom_type(p, "t_latency_seconds"), "histogram");
    ts_prom_free(p);
    ts_metric_clear(h);
    p = render_parse(m);
    ck_assert(ts_prom_get(p, "t_latency_seconds_bucket", "le=\"+Inf\"", &v) && v == 0);
    ts_prom_free(p);
    ts_metrics_free(m);
}
END_TEST

START_TEST(labelled_histogram_and_clear)
{
    struct ts_metrics *m = ts_metrics_new();
    const double b[] = {1, 10};
    struct ts_metric *h =
        ts_metrics_add(m, TS_METRIC_HISTOGRAM, "t_size", "Sizes by kind.", "kind", b, 2);
    ts_metric_observe(h, "a", 5);
    ts_metric_observe(h, "b", 50);
    struct ts_prom *p = render_parse(m);
    double v;
    ck_assert(ts_prom_get(p, "t_size_bucket", "kind=\"a\",le=\"10\"", &v) && v == 1);
    ck_assert(ts_prom_get(p, "t_size_bucket", "kind=\"b\",le=\"10\"", &v) && v == 0);
    ck_assert(ts_prom_get(p, "t_size_sum", "kind=\"b\"", &v) && v == 50);
    ts_prom_free(p);
    ts_metric_clear(h); /* labelled: the series disappear */
    size_t len;
    char *text = render(m, &len);
    ck_assert_ptr_null(strstr(text, "t_size_bucket"));
    ck_assert_ptr_nonnull(strstr(text, "# TYPE t_size histogram\n"));
    free(text);
    ts_metrics_free(m);
}
END_TEST

START_TEST(escaping_round_trips)
{
    struct ts_metrics *m = ts_metrics_new();
    struct ts_metric *g =
        ts_metrics_add(m, TS_METRIC_GAUGE, "t_odd",
                       "Help with a \\ backslash\nand a newline \"quoted\".", "path", NULL, 0);
    const char *weird = "a\"b\\c\nd}e,f=g";
    ts_metric_set(g, weird, 1);
    size_t len;
    char *text = render(m, &len);
    ck_assert_ptr_nonnull(
        strstr(text, "# HELP t_odd Help with a \\\\ backslash\\nand a newline \"quoted\".\n"));
    ck_assert_ptr_nonnull(strstr(text, "t_odd{path=\"a\\\"b\\\\c\\nd}e,f=g\"} 1\n"));
    free(text);
    struct ts_prom *p = render_parse(m);
    char want[128];
    snprintf(want, sizeof(want), "path=\"%s\"", weird);
    double v;
    ck_assert(ts_prom_get(p, "t_odd", want, &v) && v == 1);
    ts_prom_free(p);
    ts_metrics_free(m);
}
END_TEST

START_TEST(bad_arguments_are_refused)
{
    struct ts_metrics *m = ts_metrics_new();
    const double ok[] = {1, 2}, flat[] = {1, 1}, down[] = {2, 1}, nan_b[] = {NAN};
    ck_assert_ptr_null(ts_metrics_add(m, TS_METRIC_GAUGE, "1abc", "h", NULL, NULL, 0));
    ck_assert_ptr_null(ts_metrics_add(m, TS_METRIC_GAUGE, "a-b", "h", NULL, NULL, 0));
    ck_assert_ptr_null(ts_metrics_add(m, TS_METRIC_GAUGE, "", "h", NULL, NULL, 0));
    ck_assert_ptr_null(ts_metrics_add(m, TS_METRIC_GAUGE, "ok", NULL, NULL, NULL, 0));
    ck_assert_ptr_null(ts_metrics_add(m, TS_METRIC_GAUGE, "ok", "h", "__x", NULL, 0));
    ck_assert_ptr_null(ts_metrics_add(m, TS_METRIC_GAUGE, "ok", "h", "a:b", NULL, 0));
    ck_assert_ptr_null(ts_metrics_add(m, TS_METRIC_GAUGE, "ok", "h", NULL, ok, 2));
    ck_assert_ptr_null(ts_metrics_add(m, TS_METRIC_HISTOGRAM, "ok", "h", "le", ok, 2));
    ck_assert_ptr_null(ts_metrics_add(m, TS_METRIC_HISTOGRAM, "ok", "h", NULL, NULL, 0));
    ck_assert_ptr_null(ts_metrics_add(m, TS_METRIC_HISTOGRAM, "ok", "h", NULL, flat, 2));
    ck_assert_ptr_null(ts_metrics_add(m, TS_METRIC_HISTOGRAM, "ok", "h", NULL, down, 2));
    ck_assert_ptr_null(ts_metrics_add(m, TS_METRIC_HISTOGRAM, "ok", "h", NULL, nan_b, 1));
    ck_assert_ptr_null(ts_metrics_add(m, (enum ts_metric_type)9, "ok", "h", NULL, NULL, 0));
    ck_assert_ptr_nonnull(ts_metrics_add(m, TS_METRIC_GAUGE, "ok:name_1", "h", NULL, NULL, 0));
    ck_assert_ptr_null(ts_metrics_add(m, TS_METRIC_COUNTER, "ok:name_1", "h", NULL, NULL, 0));
    /* NULL families are no-ops, not crashes */
    ts_metric_add(NULL, NULL, 1);
    ts_metric_set(NULL, "x", 1);
    ts_metric_observe(NULL, NULL, 1);
    ts_metric_clear(NULL);
    ck_assert(ts_metric_value(NULL, NULL) == 0);
    ts_metrics_free(m);
}
END_TEST

START_TEST(series_are_capped)
{
    struct ts_metrics *m = ts_metrics_new();
    struct ts_metric *c =
        ts_metrics_add(m, TS_METRIC_COUNTER, "t_by_key_total", "h", "key", NULL, 0);
    for (int i = 0; i < 500; i++) {
        char key[16];
        snprintf(key, sizeof(key), "k%d", i);
        ts_metric_add(c, key, 1);
    }
    struct ts_prom *p = render_parse(m);
    ck_assert_uint_eq(ts_prom_count(p), TS_METRICS_MAX_SERIES);
    double v;
    ck_assert(ts_prom_get(p, "t_by_key_total", "key=\"other\"", &v));
    ck_assert(v == 500 - (TS_METRICS_MAX_SERIES - 1));
    ts_prom_free(p);
    ts_metrics_free(m);
}
END_TEST

START_TEST(values_read_back_exactly)
{
    char buf[32];
    ts_metrics_format_value(0.1, buf);
    ck_assert_str_eq(buf, "0.1");
    ts_metrics_format_value(12345, buf);
    ck_assert_str_eq(buf, "12345");
    ts_metrics_format_value(INFINITY, buf);
    ck_assert_str_eq(buf, "+Inf");
    ts_metrics_format_value(-INFINITY, buf);
    ck_assert_str_eq(buf, "-Inf");
    ts_metrics_format_value(NAN, buf);
    ck_assert_str_eq(buf, "NaN");
    ts_metrics_format_value(9007199254740993.0, buf); /* beyond %.15g */
    ck_assert(strtod(buf, NULL) == 9007199254740993.0);
    srand(7);
    for (int i = 0; i < 10000; i++) {
        double v = ((double)rand() / RAND_MAX - 0.5) * pow(10, rand() % 40 - 20);
        ts_metrics_format_value(v, buf);
        ck_assert_msg(strtod(buf, NULL) == v, "%.17g printed as %s", v, buf);
    }
}
END_TEST

/* The parser refuses each of these (so a passing scrape means something). */
static const char *const bad_pages[] = {
    "a 1",                                                            /* no final line feed */
    "a  1\n",                                                         /* two spaces */
    "a 0x10\n",                                                       /* hex value */
    "a inf\n",                                                        /* lowercase inf */
    "a{b=\"x\",b=\"y\"} 1\n",                                         /* label twice */
    "a{b=\"\\t\"} 1\n",                                               /* bad escape */
    "a{b=\"x} 1\n",                                                   /* unterminated */
    "a{__b=\"x\"} 1\n",                                               /* reserved label */
    "1a 1\n",                                                         /* bad name */
    "a 1\na 2\n",                                                     /* repeated sample */
    "a 1\nb 1\na{x=\"1\"} 1\n",                                       /* family not grouped */
    "# TYPE a counter\n# TYPE a counter\na 1\n",                      /* second TYPE */
    "# TYPE a gauge\n# HELP a x\\y\na 1\n",                           /* bad HELP escape */
    "a 1\n# TYPE a gauge\n",                                          /* TYPE after samples */
    "# TYPE a countr\na 1\n",                                         /* unknown type */
    "# TYPE a counter\na -1\n",                                       /* negative counter */
    "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n", /* no +Inf */
    "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
    "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 1\n", /* +Inf != count */
    "# TYPE h histogram\nh_bucket 1\nh_sum 1\nh_count 1\n",              /* bucket without le */
    "a 1 12x\n",                                                         /* bad timestamp */
    "a 1\r\n",                                                           /* CR */
};

START_TEST(parser_refuses_bad_pages)
{
    const char *page = bad_pages[_i];
    struct ts_prom *p = NULL;
    char err[256] = "";
    ck_assert_msg(ts_prom_parse(page, strlen(page), &p, err, sizeof(err)) == -1, "accepted: %s",
                  page);
    ck_assert_ptr_null(p);
    ck_assert(err[0]);
}
END_TEST

START_TEST(parser_accepts_valid_pages)
{
    const char *page = "# a comment\n"
                       "\n"
                       "# HELP a A.\n"
                       "# TYPE a gauge\n"
                       "a{x=\"1\",y=\"\\\"\"} -1.5e3 1700000000000\n"
                       "a{x=\"2\",} NaN\n"
                       "# TYPE h histogram\n"
                       "h_bucket{le=\"1\"} 1\n"
                       "h_bucket{le=\"+Inf\"} 2\n"
                       "h_sum 3\n"
                       "h_count 2\n"
                       "untyped_thing +Inf\n";
    struct ts_prom *p;
    char err[256];
    ck_assert_msg(ts_prom_parse(page, strlen(page), &p, err, sizeof(err)) == 0, "%s", err);
    double v;
    ck_assert(ts_prom_get(p, "a", "x=\"1\",y=\"\"\"", &v) && v == -1500);
    ck_assert(ts_prom_get(p, "untyped_thing", "", &v) && isinf(v));
    ck_assert_uint_eq(ts_prom_count(p), 7);
    ts_prom_free(p);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ts_metrics");
    TCase *tc = tcase_create("metrics");
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, empty_registry_renders_nothing);
    tcase_add_test(tc, counter_gauge_exact_text);
    tcase_add_test(tc, histogram_buckets_are_cumulative);
    tcase_add_test(tc, labelled_histogram_and_clear);
    tcase_add_test(tc, escaping_round_trips);
    tcase_add_test(tc, bad_arguments_are_refused);
    tcase_add_test(tc, series_are_capped);
    tcase_add_test(tc, values_read_back_exactly);
    tcase_add_loop_test(tc, parser_refuses_bad_pages, 0,
                        (int)(sizeof(bad_pages) / sizeof(bad_pages[0])));
    tcase_add_test(tc, parser_accepts_valid_pages);
    suite_add_tcase(s, tc);
    return ts_check_run(s);
}
