ts_add_test(ts_config_test SOURCES unit/server/ts_config_test.c LIBS ts_server)
target_compile_definitions(ts_config_test PRIVATE
  TS_SAMPLE_CONF="${PROJECT_SOURCE_DIR}/deploy/threadsyncd.conf")
