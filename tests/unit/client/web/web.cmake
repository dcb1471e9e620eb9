# The web edge's network-free modules (client/web): forms and CSRF, the SSE
# ring, pages. Included by tests/CMakeLists.txt.
ts_add_test(ts_web_form_test SOURCES unit/client/web/ts_web_form_test.c LIBS ts_web_core)
ts_add_test(ts_web_relay_test SOURCES unit/client/web/ts_web_relay_test.c LIBS ts_web_core)
ts_add_test(ts_web_page_test SOURCES unit/client/web/ts_web_page_test.c LIBS ts_web_core)
