# Operations: metrics, health, backup and restore on real nodes; the
# installed library used by an outside program.
ts_add_test(ts_ops_test SOURCES integration/ts_ops_test.c LIBS ts_testnode ts_promparse
            TIMEOUT 600 LABELS integration)
add_dependencies(ts_ops_test threadsync threadsyncd)

ts_add_test(ts_install_test SOURCES integration/ts_install_test.c LIBS ts_testnode
            TIMEOUT 600 LABELS integration)
string(REPLACE ";" " " _ts_san "${TS_SAN_FLAGS}")
target_compile_definitions(ts_install_test PRIVATE
  TS_BUILD_DIR="${CMAKE_BINARY_DIR}"
  TS_CMAKE_COMMAND="${CMAKE_COMMAND}"
  TS_C_COMPILER="${CMAKE_C_COMPILER}"
  TS_SAN_FLAGS="$<$<BOOL:${TS_SANITIZE}>:${_ts_san}>"
  TS_INSTALL_LIBDIR="${CMAKE_INSTALL_LIBDIR}"
  TS_INSTALL_INCLUDEDIR="${CMAKE_INSTALL_INCLUDEDIR}"
  TS_INSTALL_SBINDIR="${CMAKE_INSTALL_SBINDIR}"
  TS_INSTALL_SYSCONFDIR="${CMAKE_INSTALL_SYSCONFDIR}")
# everything cmake --install copies must be built first
add_dependencies(ts_install_test threadsync threadsyncd threadsync_shared threadsync_static)
