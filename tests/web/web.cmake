# The web edge end to end (tests/web): HTTP against a real threadsyncd and
# `threadsync web`, and real-browser tests (Debian's chromium, chromedriver
# and python3-selenium, hence Debian's own python3). Included by
# tests/CMakeLists.txt.
find_program(TS_PYTHON3 python3 REQUIRED)
find_program(TS_DEBIAN_PYTHON3 python3 PATHS /usr/bin NO_DEFAULT_PATH)
set(TS_WEB_TEST_ENV
  "ASAN_OPTIONS=detect_leaks=1:abort_on_error=0;UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")
add_test(NAME ts_web_http_test
  COMMAND ${TS_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/web/web_http_test.py
          $<TARGET_FILE:threadsyncd> $<TARGET_FILE:threadsync>)
set_tests_properties(ts_web_http_test PROPERTIES TIMEOUT 300 LABELS integration
  ENVIRONMENT "${TS_WEB_TEST_ENV}")
# Screenshots: build dir/web-artifacts/*.png
add_test(NAME ts_web_browser_test
  COMMAND ${TS_DEBIAN_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/web/web_browser_test.py
          $<TARGET_FILE:threadsyncd> $<TARGET_FILE:threadsync> ${CMAKE_BINARY_DIR}/web-artifacts)
set_tests_properties(ts_web_browser_test PROPERTIES TIMEOUT 600 LABELS browser
  ENVIRONMENT "${TS_WEB_TEST_ENV}")
