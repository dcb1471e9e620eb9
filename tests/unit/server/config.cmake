ts_add_test(ts_config_test SOURCES unit/server/ts_config_test.c LIBS ts_server)
