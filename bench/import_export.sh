#!/usr/bin/env bash
# bench/import_export.sh [--comments N] [--no-build]: the import and export
# rates of issue 15. Generates a WordPress export (WXR 1.2) of N comments
# (default 1,000,000: 10,000 posts of 100 comments, a third of them replies,
# bodies of 100 to 400 bytes with some HTML and non-ASCII), starts a fresh
# one-node threadsyncd, then times
#   threadsync import --format wordpress FILE        (comments/s)
#   threadsync export --format jsonl --all --with-emails   (comments/s)
#   threadsync import --format jsonl EXPORT into a second fresh node (exact)
# and checks the copy's state digest equals the first node's. Prints one
# JSON line. Needs a quiet machine: do not run the full size beside tests.
# Beside the rates it gives what does not depend on the machine's load:
# CPU microseconds per comment of the CLI and of the node (user + system,
# from bash's time and /proc/PID/stat), and the CLI's peak RSS for the
# import (it streams: the file's size does not matter, its ids do).
# The file's generation is not timed.
#
# Environment: TS_BENCH_BUILD (build dir, default build-bench; built in
# Release unless --no-build, which uses the binaries already there).
set -euo pipefail

N=1000000
BUILD_IT=1
while [ $# -gt 0 ]; do
    case "$1" in
    --comments) N=$2; shift ;;
    --no-build) BUILD_IT=0 ;;
    -h | --help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "usage: bench/import_export.sh [--comments N] [--no-build]" >&2; exit 2 ;;
    esac
    shift
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${TS_BENCH_BUILD:-$ROOT/build-bench}
if [ "$BUILD_IT" = 1 ]; then
    mkdir -p "$BUILD"
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DTS_SANITIZE=OFF -DTS_WERROR=OFF \
        -DBUILD_TESTING=OFF >"$BUILD/ie-cmake.log" 2>&1 || { cat "$BUILD/ie-cmake.log"; exit 1; }
    cmake --build "$BUILD" -j"$(nproc)" --target threadsyncd threadsync >"$BUILD/ie-build.log" 2>&1 ||
        { tail -40 "$BUILD/ie-build.log"; exit 1; }
fi
SERVERD=$BUILD/threadsyncd
CLI=$BUILD/threadsync

SCRATCH=$(mktemp -d /tmp/tsbench-ie.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$SCRATCH"
}
trap cleanup EXIT

# shellcheck source=bench/free_port.sh
. "$ROOT/bench/free_port.sh"

# start NAME: a fresh node with its generated admin token; sets ADDR, DATA.
start() {
    local dir=$SCRATCH/$1
    mkdir -p "$dir"
    "$SERVERD" --data-dir "$dir/data" --listen 127.0.0.1:0 --raft-listen "127.0.0.1:$(free_port)" \
        --metrics-listen "" --addr-file "$dir/addr" --log-level warn 2>"$dir/server.log" &
    PIDS+=("$!")
    for _ in $(seq 1 200); do
        if [ -s "$dir/addr" ]; then
            ADDR=$(head -1 "$dir/addr")
            DATA=$dir/data
            sleep 1.5 # the one-node cluster elects itself
            return 0
        fi
        sleep 0.05
    done
    echo "import_export.sh: threadsyncd $1 did not start" >&2
    cat "$dir/server.log" >&2
    exit 1
}

cli() { "$CLI" --server "$ADDR" --ca "$DATA/ca.pem" --token-file "$DATA/admin.token" "$@"; }
now() { date +%s.%N; }
# node_cpu: CPU seconds (user + system, all threads) of the last node started.
node_cpu() { awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/${PIDS[-1]}/stat"; }
# timed FILE CMD...: runs CMD (no shell function), its user and system
# seconds and peak RSS in KiB into FILE (GNU time, Debian's "time"; without
# it bash's time, and an RSS of 0).
timed() {
    local f=$1
    shift
    local rc=0
    if [ -x /usr/bin/time ]; then
        /usr/bin/time -o "$f" -f '%U %S %M' "$@" 2>"$f.err" || rc=$?
    else
        local TIMEFORMAT='%U %S 0'
        { time "$@" 2>"$f.err" || rc=$?; } 2>"$f"
    fi
    if [ "$rc" != 0 ]; then
        cat "$f.err" >&2
        return "$rc"
    fi
}
cpu_s() { awk '{ print $1 + $2 }' "$1"; }

WXR=$SCRATCH/site.xml
awk -v n="$N" 'BEGIN {
    print "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
    print "<rss version=\"2.0\" xmlns:content=\"http://purl.org/rss/1.0/modules/content/\" xmlns:wp=\"http://wordpress.org/export/1.2/\"><channel>"
    per = 100; posts = int((n + per - 1) / per); id = 0
    for (p = 1; p <= posts; p++) {
        printf "<item><title><![CDATA[Post %d: “quoted”]]></title><link>https://blog.example/%d/post-%d/</link><wp:post_id>%d</wp:post_id><wp:post_name>post-%d</wp:post_name><wp:post_date_gmt>2020-01-01 00:00:00</wp:post_date_gmt>\n", p, 2000 + p % 20, p, p, p
        for (c = 0; c < per && id < n; c++) {
            id++
            parent = (c % 3 == 2) ? id - 1 : 0
            body = "<p>Comment " id " on post " p ": Zoë says “hello” &amp; <a href=\"https://example.org/" id "\">a link</a>.</p>"
            for (k = 0; k < id % 4; k++) body = body "<p>Another paragraph of text, to vary the length a little.</p>"
            printf "<wp:comment><wp:comment_id>%d</wp:comment_id><wp:comment_author><![CDATA[Author %d]]></wp:comment_author><wp:comment_author_email>a%d@example.org</wp:comment_author_email><wp:comment_date_gmt>2020-01-%02d %02d:%02d:%02d</wp:comment_date_gmt><wp:comment_content><![CDATA[%s]]></wp:comment_content><wp:comment_approved>1</wp:comment_approved><wp:comment_type>comment</wp:comment_type><wp:comment_parent>%d</wp:comment_parent></wp:comment>\n", id, id % 5000, id % 5000, 1 + id % 28, id % 24, id % 60, (id * 7) % 60, body, parent
        }
        print "</item>"
    }
    print "</channel></rss>"
}' >"$WXR"
BYTES=$(stat -c %s "$WXR")

start a
s0=$(node_cpu)
t0=$(now)
CLI_ARGS=(--server "$ADDR" --ca "$DATA/ca.pem" --token-file "$DATA/admin.token")
timed "$SCRATCH/import.time" "$CLI" "${CLI_ARGS[@]}" import --format wordpress --quiet --json \
    "$WXR" >"$SCRATCH/import.json"
t1=$(now)
s1=$(node_cpu)
timed "$SCRATCH/export.time" "$CLI" "${CLI_ARGS[@]}" export --format jsonl --all \
    --with-emails --out "$SCRATCH/export.jsonl"
t2=$(now)
s2=$(node_cpu)
DIGEST_A=$(cli admin digest | sed -n 's/.*digest=\([0-9a-f]*\).*/\1/p')
start b
t3=$(now)
cli import --format jsonl --quiet --json "$SCRATCH/export.jsonl" >"$SCRATCH/import2.json"
t4=$(now)
DIGEST_B=$(cli admin digest | sed -n 's/.*digest=\([0-9a-f]*\).*/\1/p')

CREATED=$(sed -n 's/.*"created":\([0-9]*\).*/\1/p' "$SCRATCH/import.json")
awk -v n="$CREATED" -v bytes="$BYTES" -v i="$(echo "$t1 - $t0" | bc)" -v e="$(echo "$t2 - $t1" | bc)" \
    -v r="$(echo "$t4 - $t3" | bc)" -v same="$([ "$DIGEST_A" = "$DIGEST_B" ] && echo true || echo false)" \
    -v ic="$(cpu_s "$SCRATCH/import.time")" -v is="$(echo "$s1 - $s0" | bc)" \
    -v ec="$(cpu_s "$SCRATCH/export.time")" -v es="$(echo "$s2 - $s1" | bc)" -v rss="$(awk '{ print $3 }' "$SCRATCH/import.time")" \
    'BEGIN { printf "{\"scenario\":\"import_export\",\"comments\":%d,\"wxr_bytes\":%d,\"import_s\":%.2f,\"import_per_s\":%.0f,\"export_s\":%.2f,\"export_per_s\":%.0f,\"jsonl_import_s\":%.2f,\"jsonl_import_per_s\":%.0f,\"round_trip_digest_equal\":%s,\"import_cli_us_per_comment\":%.2f,\"import_node_us_per_comment\":%.2f,\"export_cli_us_per_comment\":%.2f,\"export_node_us_per_comment\":%.2f,\"import_cli_peak_rss_kb\":%d}\n", n, bytes, i, n / i, e, n / e, r, n / r, same, ic * 1e6 / n, is * 1e6 / n, ec * 1e6 / n, es * 1e6 / n, rss }'
