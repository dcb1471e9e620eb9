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

free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 20000))
        if ! ss -ltnH "sport = :$p" 2>/dev/null | grep -q .; then echo "$p"; return; fi
    done
}

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
t0=$(now)
cli import --format wordpress --quiet --json "$WXR" >"$SCRATCH/import.json"
t1=$(now)
cli export --format jsonl --all --with-emails --out "$SCRATCH/export.jsonl" 2>/dev/null
t2=$(now)
DIGEST_A=$(cli admin digest | sed -n 's/.*digest=\([0-9a-f]*\).*/\1/p')
start b
t3=$(now)
cli import --format jsonl --quiet --json "$SCRATCH/export.jsonl" >"$SCRATCH/import2.json"
t4=$(now)
DIGEST_B=$(cli admin digest | sed -n 's/.*digest=\([0-9a-f]*\).*/\1/p')

CREATED=$(sed -n 's/.*"created":\([0-9]*\).*/\1/p' "$SCRATCH/import.json")
awk -v n="$CREATED" -v bytes="$BYTES" -v i="$(echo "$t1 - $t0" | bc)" -v e="$(echo "$t2 - $t1" | bc)" \
    -v r="$(echo "$t4 - $t3" | bc)" -v same="$([ "$DIGEST_A" = "$DIGEST_B" ] && echo true || echo false)" \
    'BEGIN { printf "{\"scenario\":\"import_export\",\"comments\":%d,\"wxr_bytes\":%d,\"import_s\":%.2f,\"import_per_s\":%.0f,\"export_s\":%.2f,\"export_per_s\":%.0f,\"jsonl_import_s\":%.2f,\"jsonl_import_per_s\":%.0f,\"round_trip_digest_equal\":%s}\n", n, bytes, i, n / i, e, n / e, r, n / r, same }'
