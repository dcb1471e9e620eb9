# Runs inside `cmake --install` (deploy/CMakeLists.txt): writes
# threadsyncd.service with the paths of this installation and installs it.
# The source unit names /usr/sbin/threadsyncd and /etc/threadsync/, the
# paths of a distribution install; other prefixes get theirs substituted.
foreach(v TS_SBINDIR TS_SYSCONFDIR TS_UNITDIR)
  if(NOT IS_ABSOLUTE "${${v}}")
    set(${v} "${CMAKE_INSTALL_PREFIX}/${${v}}")
  endif()
endforeach()
file(READ "${TS_UNIT_SRC}" unit)
string(REPLACE "/usr/sbin/threadsyncd" "${TS_SBINDIR}/threadsyncd" unit "${unit}")
string(REPLACE "/etc/threadsync/" "${TS_SYSCONFDIR}/threadsync/" unit "${unit}")
file(WRITE "${TS_UNIT_TMP}" "${unit}")
file(INSTALL "${TS_UNIT_TMP}" DESTINATION "${TS_UNITDIR}")
