# libthreadsync as an installable library: shared (libthreadsync.so.0, only
# the public API exported, see libthreadsync.map) and static
# (libthreadsync.a, every object it needs in one archive), both OUTPUT_NAME
# threadsync; the header threadsync.h with the two headers it includes, a
# pkg-config file and a CMake package (threadsync::threadsync,
# threadsync::threadsync_static). Included from client/CMakeLists.txt.
include(CMakePackageConfigHelpers)

set(TS_LIB_HEADERS
  ${CMAKE_CURRENT_SOURCE_DIR}/threadsync.h
  ${PROJECT_SOURCE_DIR}/common/ts_err.h
  ${TS_PROTO_GEN_DIR}/threadsync.pb-c.h)
set(TS_LIB_INCLUDEDIR ${CMAKE_INSTALL_INCLUDEDIR}/threadsync)

# The shared library takes ts_client's objects whole; the rest (TLS, frames,
# errors, generated code) is pulled from the internal archives as ts_client
# needs it, so nothing server-only (the state schema) comes along.
add_library(threadsync_shared SHARED $<TARGET_OBJECTS:ts_client>)
target_link_libraries(threadsync_shared
  PUBLIC PkgConfig::LIBUV PkgConfig::PROTOBUFC
  PRIVATE ts_common ts_proto ts_proto_pb ts_base PkgConfig::OPENSSL ts_build_flags)
target_link_options(threadsync_shared PRIVATE
  "LINKER:--version-script=${CMAKE_CURRENT_SOURCE_DIR}/libthreadsync.map" "LINKER:--no-undefined")
set_target_properties(threadsync_shared PROPERTIES
  OUTPUT_NAME threadsync VERSION ${PROJECT_VERSION} SOVERSION 0
  LINK_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/libthreadsync.map
  EXPORT_NAME threadsync)
target_include_directories(threadsync_shared INTERFACE
  $<INSTALL_INTERFACE:${TS_LIB_INCLUDEDIR}>)

add_library(threadsync_static STATIC
  $<TARGET_OBJECTS:ts_client> $<TARGET_OBJECTS:ts_common> $<TARGET_OBJECTS:ts_proto>
  $<TARGET_OBJECTS:ts_proto_pb> $<TARGET_OBJECTS:ts_base>)
target_link_libraries(threadsync_static
  PUBLIC PkgConfig::LIBUV PkgConfig::PROTOBUFC PkgConfig::OPENSSL)
set_target_properties(threadsync_static PROPERTIES OUTPUT_NAME threadsync
  EXPORT_NAME threadsync_static)
target_include_directories(threadsync_static INTERFACE
  $<INSTALL_INTERFACE:${TS_LIB_INCLUDEDIR}>)
add_dependencies(threadsync_static ts_proto_gen)

install(TARGETS threadsync_shared threadsync_static EXPORT threadsyncTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES ${TS_LIB_HEADERS} DESTINATION ${TS_LIB_INCLUDEDIR})

set(TS_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/threadsync)
install(EXPORT threadsyncTargets NAMESPACE threadsync:: DESTINATION ${TS_CMAKE_DIR})
configure_package_config_file(threadsyncConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/threadsyncConfig.cmake INSTALL_DESTINATION ${TS_CMAKE_DIR})
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/threadsyncConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/threadsyncConfig.cmake
  ${CMAKE_CURRENT_BINARY_DIR}/threadsyncConfigVersion.cmake DESTINATION ${TS_CMAKE_DIR})

# The .pc names absolute directories; written at install time, when the
# prefix is final (cmake --install --prefix DIR).
install(CODE "
  set(CMAKE_INSTALL_PREFIX \"\${CMAKE_INSTALL_PREFIX}\")
  set(PROJECT_VERSION \"${PROJECT_VERSION}\")
  if(IS_ABSOLUTE \"${CMAKE_INSTALL_LIBDIR}\")
    set(TS_PC_LIBDIR \"${CMAKE_INSTALL_LIBDIR}\")
  else()
    set(TS_PC_LIBDIR \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_LIBDIR}\")
  endif()
  if(IS_ABSOLUTE \"${CMAKE_INSTALL_INCLUDEDIR}\")
    set(TS_PC_INCLUDEDIR \"${CMAKE_INSTALL_INCLUDEDIR}\")
  else()
    set(TS_PC_INCLUDEDIR \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_INCLUDEDIR}\")
  endif()
  configure_file(\"${CMAKE_CURRENT_SOURCE_DIR}/threadsync.pc.in\"
                 \"${CMAKE_CURRENT_BINARY_DIR}/threadsync.pc\" @ONLY)
  file(INSTALL \"${CMAKE_CURRENT_BINARY_DIR}/threadsync.pc\"
       DESTINATION \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_LIBDIR}/pkgconfig\")
")
