# ts_metrics, ts_httpd (server/): the registry and text format, the HTTP
# parser and server. The strict Prometheus parser lives with the integration
# tests, which scrape real nodes with it.
add_library(ts_promparse STATIC integration/ts_promparse.c)
target_include_directories(ts_promparse PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/integration)
target_link_libraries(ts_promparse PRIVATE ts_build_flags m)
ts_add_test(ts_metrics_test SOURCES unit/server/ts_metrics_test.c LIBS ts_server ts_promparse m)
ts_add_test(ts_httpd_test SOURCES unit/server/ts_httpd_test.c LIBS ts_server)
ts_add_test(ts_stats_test SOURCES unit/server/ts_stats_test.c LIBS ts_server ts_promparse)
