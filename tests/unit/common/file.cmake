ts_add_test(ts_file_test SOURCES unit/common/ts_file_test.c LIBS ts_base)
