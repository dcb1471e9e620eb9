#!/usr/bin/env bash
# Quick start, command one: install what is missing, build, and run a
# one-node threadsyncd with embedded defaults in the current directory
# (data in ./threadsync-data, listening on 127.0.0.1:7420). Extra arguments
# go to threadsyncd.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
"$src/deploy/install-deps.sh"
cmake -S "$src" -B "$src/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF >/dev/null
cmake --build "$src/build" -j"$(nproc)" --target threadsyncd threadsync >/dev/null
exec "$src/build/threadsyncd" "$@"
