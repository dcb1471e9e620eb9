# ts_abi_check: enforces libthreadsync.abi's rule (see that file): the hash
# of proto/threadsync.proto must be the one recorded on its last line, and
# the SOVERSIONs must strictly increase. Run as
#   cmake -DABI=client/lib/libthreadsync.abi -DPROTO=proto/threadsync.proto -P ts_abi_check.cmake
file(SHA256 ${PROTO} _hash)
file(STRINGS ${ABI} _lines REGEX "^[0-9]+ [0-9a-f]+$")
list(LENGTH _lines _n)
if(_n EQUAL 0)
  message(FATAL_ERROR "${ABI}: no '<SOVERSION> <sha256>' line")
endif()
set(_prev -1)
foreach(_line IN LISTS _lines)
  string(REPLACE " " ";" _f "${_line}")
  list(GET _f 0 _so)
  list(GET _f 1 _h)
  if(NOT _so GREATER _prev)
    message(FATAL_ERROR "${ABI}: SOVERSION ${_so} does not increase on ${_prev}")
  endif()
  set(_prev ${_so})
endforeach()
if(NOT _h STREQUAL _hash)
  math(EXPR _next "${_so} + 1")
  message(FATAL_ERROR
    "${PROTO} changed (sha256 ${_hash}), but ${ABI} records ${_h} for SOVERSION ${_so}. "
    "The public API exposes the generated structs, so a .proto change breaks the ABI: "
    "append the line '${_next} ${_hash}' (the next SOVERSION) to ${ABI}.")
endif()
message(STATUS "libthreadsync ABI: SOVERSION ${_so}, threadsync.proto ${_hash}")
