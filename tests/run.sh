#!/usr/bin/env bash
# Quick start, command two (and what CI runs): install what is missing, build
# everything with AddressSanitizer, UndefinedBehaviorSanitizer and -Werror,
# and run the whole default suite through CTest. Exits non-zero on any
# failure. Set TS_SOAK=1 to add the long soak tests.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=${TS_BUILD_DIR:-$src/build-test}
"$src/deploy/install-deps.sh"
soak=OFF
[ "${TS_SOAK:-0}" = 1 ] && soak=ON
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Debug -DTS_SANITIZE=ON -DTS_WERROR=ON \
      -DTS_SOAK=$soak >/dev/null
cmake --build "$build" -j"$(nproc)"
cd "$build"
labels=()
[ "$soak" = ON ] || labels=(-LE soak)
ctest --output-on-failure -j"$(nproc)" "${labels[@]}"
