# Mirror core: SQLite copy, its writer thread and rendering (client/mirror.cmake).
ts_add_test(ts_mirror_db_test SOURCES unit/client/ts_mirror_db_test.c LIBS ts_mirror)
ts_add_test(ts_mirror_render_test SOURCES unit/client/ts_mirror_render_test.c LIBS ts_mirror)
ts_add_test(ts_mirror_writer_test SOURCES unit/client/ts_mirror_writer_test.c LIBS ts_mirror)
ts_add_test(ts_digest_test SOURCES unit/common/ts_digest_test.c LIBS ts_proto)
