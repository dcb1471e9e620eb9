# ts_repl runs real one-node raft clusters. Their data directories go under
# the build tree, not /tmp: libraft's libuv backend probes the file system
# for O_DIRECT and kernel AIO, and the build tree is where a developer's disk
# (not a tmpfs) is most likely to be.
ts_add_test(ts_repl_test SOURCES unit/server/ts_repl_test.c LIBS ts_server TIMEOUT 300)
target_compile_definitions(ts_repl_test PRIVATE TS_TEST_TMPDIR="${CMAKE_CURRENT_BINARY_DIR}")
