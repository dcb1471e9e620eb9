ts_add_test(ts_auth_test SOURCES unit/server/ts_auth_test.c LIBS ts_server)
ts_add_test(ts_certgen_test SOURCES unit/server/ts_certgen_test.c LIBS ts_server)
