# ts_mirror: the network-free core of `threadsync mirror` (SQLite copy, its writer thread and
# per-thread JSON/HTML rendering). Included by client/CMakeLists.txt.
find_package(Threads REQUIRED)
add_library(ts_mirror STATIC ts_mirror_db.c ts_mirror_render.c ts_mirror_writer.c)
target_include_directories(ts_mirror PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(ts_mirror PUBLIC ts_proto ts_base PkgConfig::SQLITE PkgConfig::OPENSSL Threads::Threads
                      PRIVATE ts_build_flags)
set_target_properties(ts_mirror PROPERTIES POSITION_INDEPENDENT_CODE ON)
