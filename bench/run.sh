#!/usr/bin/env bash
# bench/run.sh [--quick] [--keep] [--web]: builds a Release threadsyncd, ts_loadgen and ts_webgen
# in build-bench/, starts fresh nodes on loopback in a scratch directory,
# runs every scenario and prints a table, one JSON line per scenario, the
# server's and the generator's CPU, and the AES-GCM reference.
# bench/README.md explains how to read each figure.
#
# Environment: TS_BENCH_THREADS (generator subscriber loops, default 1),
# TS_BENCH_ONLY="fanout latency ..." (run only these scenarios),
# TS_BENCH_BUILD (build dir, default build-bench),
# TS_BENCH_SERVER_FLAGS (extra threadsyncd flags for every node, e.g.
# "--io-threads 0"). --web runs only the web edge's scenarios (scenario
# name "web": SSE fan-out and form posts through `threadsync web`);
# TS_BENCH_WEB_N ("1000 10000"), TS_BENCH_WEB_RATES ("10 100") and
# TS_BENCH_WEB_S (seconds per phase) size them.
set -euo pipefail

MODE=full
KEEP=0
WEB_ONLY=0
for a in "$@"; do
    case "$a" in
    --quick) MODE=quick ;;
    --keep) KEEP=1 ;;
    --web) WEB_ONLY=1 ;;
    -h | --help)
        sed -n '2,10p' "$0"
        exit 0
        ;;
    *)
        echo "usage: bench/run.sh [--quick] [--keep] [--web]" >&2
        exit 2
        ;;
    esac
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${TS_BENCH_BUILD:-$ROOT/build-bench}
THREADS=${TS_BENCH_THREADS:-1}
ONLY=${TS_BENCH_ONLY:-}
[ "$WEB_ONLY" = 1 ] && ONLY=web
read -r -a SERVER_FLAGS <<<"${TS_BENCH_SERVER_FLAGS:-}"

want() { [ -z "$ONLY" ] || [[ " $ONLY " == *" $1 "* ]]; }

# 5,000 subscribers need 5,000 descriptors on each side; 10,000 watching
# browsers 10,000 on the web edge and on ts_webgen.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt 12000 ]; then
    echo "run.sh: ulimit -n is $(ulimit -n); 5,000-subscriber scenarios may fail" >&2
fi

echo "== build (Release, $BUILD)"
mkdir -p "$BUILD"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DTS_SANITIZE=OFF -DTS_WERROR=OFF \
    -DTS_BENCH=ON -DBUILD_TESTING=OFF >"$BUILD/bench-cmake.log" 2>&1 ||
    { cat "$BUILD/bench-cmake.log"; exit 1; }
cmake --build "$BUILD" -j"$(nproc)" --target threadsyncd threadsync ts_loadgen ts_webgen >"$BUILD/bench-build.log" 2>&1 ||
    { tail -40 "$BUILD/bench-build.log"; exit 1; }
SERVERD=$BUILD/threadsyncd
LOADGEN=$BUILD/bench/ts_loadgen
WEBGEN=$BUILD/bench/ts_webgen

SCRATCH=$(mktemp -d /tmp/tsbench.XXXXXX)
RESULTS=$SCRATCH/results.txt
: >"$RESULTS"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    if [ "$KEEP" = 1 ]; then
        echo "scratch kept: $SCRATCH"
    else
        rm -rf "$SCRATCH"
    fi
}
trap cleanup EXIT

# Tokens: like the integration harness, random values, only their SHA-256
# in the server's tokens file.
token() { openssl rand -hex 24; }
sha() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }
READER=$(token)
POSTER=$(token)
printf '%s\n' "$READER" >"$SCRATCH/reader.token"
printf '%s\n' "$POSTER" >"$SCRATCH/poster.token"
{
    echo "# written by bench/run.sh"
    echo "reader bench-reader $(sha "$READER")"
    echo "poster bench-poster $(sha "$POSTER") gateway"
} >"$SCRATCH/tokens"
chmod 600 "$SCRATCH"/tokens "$SCRATCH"/*.token

free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 20000))
        if ! ss -ltnH "sport = :$p" 2>/dev/null | grep -q .; then
            echo "$p"
            return
        fi
    done
}

# start_server NAME [threadsyncd flags...]: sets SRV_ADDR, SRV_PID, SRV_CA.
start_server() {
    local name=$1
    shift
    local dir=$SCRATCH/$name
    mkdir -p "$dir"
    # The abuse limits are off: one generator on one address is thousands
    # of legitimate clients here, posting as fast as the node accepts.
    "$SERVERD" --data-dir "$dir/data" --listen 127.0.0.1:0 \
        --raft-listen "127.0.0.1:$(free_port)" --tokens "$SCRATCH/tokens" \
        --rate-author off --rate-token off --max-conns-per-addr off \
        --metrics-listen "" --addr-file "$dir/addr" --log-level warn "$@" "${SERVER_FLAGS[@]}" \
        2>"$dir/server.log" &
    SRV_PID=$!
    PIDS+=("$SRV_PID")
    for _ in $(seq 1 200); do
        if [ -s "$dir/addr" ]; then
            SRV_ADDR=$(head -1 "$dir/addr")
            SRV_CA=$dir/data/ca.pem
            # wait until the one-node cluster has elected itself
            sleep 1.5
            return 0
        fi
        if ! kill -0 "$SRV_PID" 2>/dev/null; then
            echo "run.sh: threadsyncd $name did not start:" >&2
            cat "$dir/server.log" >&2
            exit 1
        fi
        sleep 0.05
    done
    echo "run.sh: threadsyncd $name did not listen in time" >&2
    exit 1
}

stop_server() {
    kill "$SRV_PID" 2>/dev/null || true
    wait "$SRV_PID" 2>/dev/null || true
}

# lg SCENARIO [loadgen flags...]: runs one scenario against the current node.
lg() {
    local scen=$1
    shift
    echo "-- $scen $*"
    "$LOADGEN" --addr "$SRV_ADDR" --ca "$SRV_CA" --server-pid "$SRV_PID" \
        --reader-token "@$SCRATCH/reader.token" --poster-token "@$SCRATCH/poster.token" \
        --threads "$THREADS" --scenario "$scen" "$@" | tee -a "$RESULTS" |
        grep -v '^{' | sed -e 's/^TABLE|/   /' -e 's/^CPU|/   cpu: /' | tr '|' ' '
}

# The catch-up "into a full threadsync mirror directory" figure: a first
# `threadsync mirror --once` of the node's whole content from cursor 0 into
# an empty directory (SQLite with its cursor, plus JSON and HTML per thread,
# all durable), timed from start to exit. Prints a table row, the mirror's
# own timing line (THREADSYNC_MIRROR_TIMING: CPU seconds per phase) and a
# JSON line like lg does.
mirror_hook() {
    local cli=$BUILD/threadsync dir=$SCRATCH/mirror comments
    rm -rf "$dir"
    local t0 t1 load
    load=$(cat /proc/loadavg)
    t0=$(date +%s.%N)
    if ! THREADSYNC_MIRROR_TIMING=1 "$cli" --server "$SRV_ADDR" --ca "$SRV_CA" \
        --token-file "$SCRATCH/reader.token" \
        mirror --dir "$dir" --once >"$SCRATCH/mirror.out" 2>"$SCRATCH/mirror.err"; then
        echo "-- mirror directory: threadsync mirror failed:" >&2
        cat "$SCRATCH/mirror.err" >&2
        return
    fi
    t1=$(date +%s.%N)
    # verify (not timed) proves the directory holds the node's state, and
    # counts it
    comments=$("$cli" --server "$SRV_ADDR" --ca "$SRV_CA" --token-file "$SCRATCH/reader.token" \
        verify --dir "$dir" 2>&1 | sed -n 's/.*verify: ok .*comments=\([0-9]*\).*/\1/p')
    if [ -z "$comments" ]; then
        echo "-- mirror directory: verify failed after the sync" >&2
        return
    fi
    local rate
    rate=$(awk -v n="$comments" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')
    local wall
    wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
    echo "-- mirror directory: $comments comments in ${wall}s"
    sed -n 's/^threadsync: mirror timing /   mirror timing: /p' "$SCRATCH/mirror.err"
    echo "TABLE|catchup-mirror-dir|comments=$comments|${rate} comments/s|wall ${wall}s" |
        tee -a "$RESULTS" | sed -e 's/^TABLE|/   /' | tr '|' ' '
    echo "{\"scenario\":\"catchup_mirror_dir\",\"loadavg\":\"$load\",\"comments\":$comments,\"wall_s\":$wall,\"comments_per_s\":$rate}" >>"$RESULTS"
}

if [ "$MODE" = quick ]; then
    FANOUT="100:20000 1000:5000 5000:1000"
    LAT_RATES="20:3 100:5 1000:3"
    INGEST="10 100"
    INGEST_S=4
    CATCHUP_M=300000
    MEM_N=5000
    STORM_N=5000
else
    FANOUT="100:60000 1000:20000 5000:4000"
    LAT_RATES="20:10 100:10 1000:10"
    INGEST="10 100"
    INGEST_S=15
    CATCHUP_M=1000000
    MEM_N=5000
    STORM_N=5000
fi

# web_scenarios: a fresh node W and one `threadsync web` in front of it
# (limits off as for the node; connection caps above the largest N), a
# thread made through the CLI, then ts_webgen: SSE fan-out for each N and
# rate, and form posts.
web_scenarios() {
    echo "== node W and a web edge: SSE fan-out, form posts (fresh, default settings)"
    start_server W
    local cli=$BUILD/threadsync dir=$SCRATCH/W/web log=$SCRATCH/W/web.log
    "$cli" --server "$SRV_ADDR" --ca "$SRV_CA" --token-file "$SCRATCH/poster.token" post \
        --thread bench --name Bench --body "the benchmark's thread" >/dev/null
    "$cli" web --server "$SRV_ADDR" --ca "$SRV_CA" --token-file "$SCRATCH/reader.token" \
        --post-token-file "$SCRATCH/poster.token" --dir "$dir" --listen 127.0.0.1:0 \
        --max-conns 100000 --max-conns-per-addr 100000 --all 2>"$log" &
    local web_pid=$!
    PIDS+=("$web_pid")
    local port=
    for _ in $(seq 1 200); do
        port=$(sed -n 's|.*web edge on http://127\.0\.0\.1:\([0-9]*\)/.*|\1|p' "$log" | head -1)
        # listening, and the mirror holds the thread
        [ -n "$port" ] && compgen -G "$dir/threads/*.json" >/dev/null && break
        sleep 0.1
    done
    if [ -z "$port" ]; then
        echo "run.sh: the web edge did not start:" >&2
        cat "$log" >&2
        exit 1
    fi
    local n r
    for n in $WEB_N; do
        for r in $WEB_RATES; do
            echo "-- web sse watchers=$n rate=$r/s"
            "$WEBGEN" --port "$port" --key bench --edge-pid "$web_pid" --scenario sse \
                --watchers "$n" --threads 2 --rate "$r" --duration "$WEB_S" | tee -a "$RESULTS" |
                grep -v '^{' | sed -e 's/^TABLE|/   /' | tr '|' ' ' || true
        done
    done
    echo "-- web form posts=8"
    "$WEBGEN" --port "$port" --key bench --edge-pid "$web_pid" --scenario form --posters 8 \
        --duration "$WEB_S" | tee -a "$RESULTS" | grep -v '^{' | sed -e 's/^TABLE|/   /' |
        tr '|' ' ' || true
    kill "$web_pid" 2>/dev/null || true
    wait "$web_pid" 2>/dev/null || true
    stop_server
}
WEB_N=${TS_BENCH_WEB_N:-1000 10000}
WEB_RATES=${TS_BENCH_WEB_RATES:-10 100}
WEB_S=${TS_BENCH_WEB_S:-$([ "$MODE" = quick ] && echo 5 || echo 15)}

if [ "$ONLY" = web ]; then
    web_scenarios
    echo
    echo "== results (web, $(nproc) cores)"
    grep '^TABLE|' "$RESULTS" | cut -d'|' -f2- | column -t -s'|'
    echo
    echo "== JSON"
    grep '^{' "$RESULTS"
    exit 0
fi

echo "== node A: subscribers, posting (fresh, default settings)"
start_server A
want memory && lg memory --subs "$MEM_N"
want reconnect && lg reconnect --subs "$STORM_N"
if want fanout; then
    for fp in $FANOUT; do
        lg fanout --subs "${fp%%:*}" --posts "${fp##*:}" --posters 4 --window 1024
    done
fi
if want latency; then
    for rd in $LAT_RATES; do
        lg latency --subs 1000 --rate "${rd%%:*}" --duration "${rd##*:}" --window 1024
    done
fi
if want ingest; then
    for k in $INGEST; do
        lg ingest --posters "$k" --window $((k >= 100 ? 32 : 256)) --duration "$INGEST_S"
    done
fi
stop_server

if want catchup; then
    echo "== node B: catch-up through the event log (fresh, default settings)"
    start_server B
    lg catchup --posts "$CATCHUP_M" --posters 16 --window 128 --label evlog --timeout 600
    mirror_hook
    stop_server
    echo "== node C: catch-up by snapshot, store memory (fresh, --evlog-max-events 1024)"
    start_server C --evlog-max-events 1024
    lg catchup --posts "$CATCHUP_M" --posters 16 --window 128 --label store --timeout 600
    stop_server
fi

want web && web_scenarios

echo "== reference: openssl speed -evp aes-128-gcm -bytes 16384 -seconds 1"
AES=$(openssl speed -evp aes-128-gcm -bytes 16384 -seconds 1 2>/dev/null | tail -1)
echo "   $AES"
AES_KBPS=$(echo "$AES" | awk '{v=$NF; sub(/k$/,"",v); print v}')

echo
echo "== results ($MODE, generator threads: $THREADS, $(nproc) cores)"
grep '^TABLE|' "$RESULTS" | cut -d'|' -f2- | column -t -s'|'
grep '^CPU|' "$RESULTS" >/dev/null && echo && echo "cpu (cores busy over each measured phase):" &&
    paste -d' ' <(grep '^TABLE|' "$RESULTS" | grep -v 'per stored comment' | cut -d'|' -f2,3 |
        tr '|' ' ') <(grep '^CPU|' "$RESULTS" | cut -d'|' -f2) | sed 's/^/   /'
echo "   AES-128-GCM reference, one core, 16 KiB blocks: ${AES_KBPS} kB/s"
echo
echo "== JSON"
grep '^{' "$RESULTS"
printf '{"scenario":"reference","aes_128_gcm_16k_kbps":%s,"cores":%s}\n' "${AES_KBPS:-0}" "$(nproc)"
