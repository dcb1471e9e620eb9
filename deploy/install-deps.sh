#!/usr/bin/env bash
# Installs the Debian 12 packages threadsync builds and tests with, only the
# missing ones. Safe to run repeatedly; needs root (or sudo) when something
# is missing. Extra package names on the command line are added to the list.
#
# --bench (first argument) adds what only the benchmark's optional modes need,
# never the build or the tests: mosquitto, the broker bench/run.sh --versus
# mosquitto compares with (it calls this script so), and GNU time, which
# bench/import_export.sh reads CPU seconds and peak RSS with.
set -euo pipefail

bench=()
if [ "${1:-}" = --bench ]; then
  bench=(mosquitto time)
  shift
fi

# The mirror's HTML test screenshots pages in Chromium: the fonts give emoji
# and CJK glyphs instead of boxes (DejaVu covers neither; Noto Color Emoji
# is 10 MB, WenQuanYi Micro Hei 5 MB, where fonts-noto-cjk would be 90 MB).
# The web edge serves HTTP with libh2o; its browser tests drive Chromium
# through chromedriver from Debian's python3 with python3-selenium.
# Its delivery threads batch their writes through io_uring with liburing
# (optional at build time: without it they write with sendmsg).
# threadsync import parses WordPress and Disqus XML exports with expat.
# Raft snapshots are LZ4 frames the node compresses itself (liblz4).
# .ci/lint runs clang-format and clang-tidy-14's run-clang-tidy-14.
pkgs=(build-essential cmake pkg-config libuv1-dev libprotobuf-c-dev protobuf-c-compiler
      libssl-dev openssl check iproute2 libraft-dev libsqlite3-dev libinih-dev libexpat1-dev
      liblz4-dev
      chromium fonts-noto-color-emoji fonts-wqy-microhei
      libh2o-dev liburing-dev chromium-driver python3-selenium clang-format clang-tidy-14 "${bench[@]}" "$@")

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
