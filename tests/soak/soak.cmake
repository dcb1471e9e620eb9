# The cluster soak (issue 6's acceptance): deploy/local-cluster.sh, 5,000
# posts through libthreadsync while nodes are killed -9 and restarted, a
# mirror, then every node and the mirror checked. The client program is
# always built (so it keeps compiling under -Werror); the test runs only
# with -DTS_SOAK=ON (tests/run.sh: TS_SOAK=1), label soak. Takes minutes.
add_executable(ts_soak_client soak/ts_soak_client.c)
target_link_libraries(ts_soak_client PRIVATE ts_client ts_build_flags)
if(TS_SOAK)
  add_test(NAME ts_cluster_soak
           COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/soak/cluster_soak.sh ${CMAKE_BINARY_DIR})
  set_tests_properties(ts_cluster_soak PROPERTIES TIMEOUT 3600 LABELS soak
    ENVIRONMENT "ASAN_OPTIONS=detect_leaks=1:abort_on_error=0;UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")
endif()
