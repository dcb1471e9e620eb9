#!/usr/bin/env bash
# bench/run.sh [--quick|--tiny] [--keep] [--versus mosquitto] [--web]: builds a
# Release threadsyncd and ts_loadgen in build-bench/, starts fresh nodes on
# loopback in a scratch directory, runs every scenario and prints a table,
# one JSON line per scenario, the server's and the generator's CPU, and the
# AES-GCM reference. --versus mosquitto then runs the same scenarios against
# a fresh mosquitto (installed if missing) with ts_mqttgen and prints the
# ratios threadsync / mosquitto. --tiny: smoke sizes (seconds, tens of
# connections) that prove the run works and measure nothing. --web runs
# only the web edge's scenarios (scenario name "web": SSE fan-out and form
# posts through `threadsync web`, with ts_webgen); TS_BENCH_WEB_N
# ("1000 10000"), TS_BENCH_WEB_RATES ("10 100") and TS_BENCH_WEB_S
# (seconds per phase) size them; TS_BENCH_WEB_FLAGS adds flags to the edge's
# command line (e.g. "--fanout-threads 0" to compare with the loop writing);
# TS_BENCH_WEB_GEN_THREADS: ts_webgen's receiving threads (2);
# TS_BENCH_WEB_RECV: how they read, uring (default: one system call per
# epoll batch) or read (one read(2) per ready watcher, as before);
# TS_BENCH_WEB_FLOOR ("K:sendmsg K:uring", K the cores, at most 8; "" for
# none): floor runs, WRITERS:IO each, ts_webgen writing to its own watchers
# without an edge at each N and the first rate (bench/README.md, "The
# floor"); TS_BENCH_WEB_FORM=0 skips the form-posts phase.
# bench/README.md explains how to read each figure.
#
# Environment: TS_BENCH_THREADS (generator subscriber loops, default 1),
# TS_BENCH_ONLY="fanout latency ..." (run only these scenarios),
# TS_BENCH_BUILD (build dir, default build-bench),
# TS_BENCH_SERVER_FLAGS (extra threadsyncd flags for every node, e.g.
# "--io-threads 0"), TS_BENCH_PIN="SERVER_CPUS:GENERATOR_CPUS" (taskset CPU
# lists, e.g. "0:1": the node or broker on CPU 0, the generator on CPU 1, so
# neither takes the other's core; with --web the web edge runs with the node
# and ts_webgen with the generator), TS_BENCH_INGEST="K:WINDOW ..." (the ingest
# runs: posting connections and posts in flight on each, the same on both
# sides; default "10:16 100:16", see bench/README.md "ingest"),
# TS_BENCH_LAT_TRACE=1 (node L traces each post's stages, summarised per
# latency run by bench/lattrace_summary.sh), TS_BENCH_LAT_RATES="RATE:SECONDS
# ..." (the latency runs on node L; default per mode, e.g. "100:5" runs only
# the target rate), TS_BENCH_RESTART_COMMENTS=N (node C's preload before its
# restart; default the mode's catch-up size: 300,000 with --quick, 1,000,000
# in full; TS_BENCH_ONLY=restart runs node C alone, without node B).
set -euo pipefail

MODE=full
KEEP=0
VERSUS=
WEB_ONLY=0
usage() {
    echo "usage: bench/run.sh [--quick|--tiny] [--keep] [--versus mosquitto] [--web]" >&2
    exit 2
}
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) MODE=quick ;;
    --tiny) MODE=tiny ;;
    --keep) KEEP=1 ;;
    --versus)
        [ $# -ge 2 ] || usage
        VERSUS=$2
        shift
        ;;
    --versus=*) VERSUS=${1#--versus=} ;;
    --web) WEB_ONLY=1 ;;
    -h | --help)
        sed -n '2,20p' "$0"
        exit 0
        ;;
    *) usage ;;
    esac
    shift
done
if [ -n "$VERSUS" ] && [ "$VERSUS" != mosquitto ]; then
    echo "run.sh: --versus knows only mosquitto" >&2
    exit 2
fi

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${TS_BENCH_BUILD:-$ROOT/build-bench}
THREADS=${TS_BENCH_THREADS:-1}
ONLY=${TS_BENCH_ONLY:-}
[ "$WEB_ONLY" = 1 ] && ONLY=web
read -r -a SERVER_FLAGS <<<"${TS_BENCH_SERVER_FLAGS:-}"
SRV_PIN=()
GEN_PIN=()
if [ -n "${TS_BENCH_PIN:-}" ]; then
    case "$TS_BENCH_PIN" in
    *:*) ;;
    *)
        echo "run.sh: TS_BENCH_PIN is SERVER_CPUS:GENERATOR_CPUS, e.g. 0:1" >&2
        exit 2
        ;;
    esac
    SRV_PIN=(taskset -c "${TS_BENCH_PIN%%:*}")
    GEN_PIN=(taskset -c "${TS_BENCH_PIN#*:}")
fi

want() { [ -z "$ONLY" ] || [[ " $ONLY " == *" $1 "* ]]; }

# The comparison broker is a bench dependency only (never the test suite's):
# installed here, on demand, through the same script as everything else.
MOSQUITTO=
if [ -n "$VERSUS" ]; then
    MOSQUITTO=$(PATH=$PATH:/usr/sbin command -v mosquitto || true)
    if [ -z "$MOSQUITTO" ]; then
        echo "== installing mosquitto (--versus)"
        "$ROOT/deploy/install-deps.sh" --bench
        MOSQUITTO=$(PATH=$PATH:/usr/sbin command -v mosquitto)
    fi
fi

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
cmake --build "$BUILD" -j"$(nproc)" --target threadsyncd threadsync ts_loadgen ts_mqttgen ts_webgen >"$BUILD/bench-build.log" 2>&1 ||
    { tail -40 "$BUILD/bench-build.log"; exit 1; }
SERVERD=$BUILD/threadsyncd
LOADGEN=$BUILD/bench/ts_loadgen
MQTTGEN=$BUILD/bench/ts_mqttgen
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

# shellcheck source=bench/free_port.sh
. "$ROOT/bench/free_port.sh"

# alive_or_die WHAT LOG: exits, showing LOG, when the server being started
# (SRV_PID) has already died.
alive_or_die() {
    kill -0 "$SRV_PID" 2>/dev/null && return 0
    echo "run.sh: $1 did not start:" >&2
    cat "$2" >&2
    exit 1
}

# start_server NAME [threadsyncd flags...]: sets SRV_ADDR, SRV_PID, SRV_CA.
start_server() {
    local name=$1
    shift
    local dir=$SCRATCH/$name
    mkdir -p "$dir"
    SRV_RAFT_PORT=$(free_port)
    local trace=
    [ "${TS_BENCH_LAT_TRACE:-0}" = 1 ] && trace=$dir/lattrace.txt
    # The abuse limits are off: one generator on one address is thousands
    # of legitimate clients here, posting as fast as the node accepts.
    THREADSYNC_LATENCY_TRACE=$trace "${SRV_PIN[@]}" "$SERVERD" --data-dir "$dir/data" --listen 127.0.0.1:0 \
        --raft-listen "127.0.0.1:$SRV_RAFT_PORT" --tokens "$SCRATCH/tokens" \
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
        alive_or_die "threadsyncd $name" "$dir/server.log"
        sleep 0.05
    done
    echo "run.sh: threadsyncd $name did not listen in time" >&2
    exit 1
}

stop_server() {
    kill "$SRV_PID" 2>/dev/null || true
    wait "$SRV_PID" 2>/dev/null || true
}

# http_get PORT PATH: one request to 127.0.0.1:PORT (the node's metrics
# listener answers and closes); prints the response, fails when nothing
# listens.
http_get() {
    { exec 9<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
    printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&9
    cat <&9
    exec 9<&-
}

# metric TEXT NAME: a metric's value from a /metrics page.
metric() { awk -v m="$2" '$1 == m { printf "%.0f", $2 + 0 }' <<<"$1"; }

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# restart_timed NAME [threadsyncd flags...]: stops node NAME and starts it
# again on its data directory (same ports but a metrics listener), times
# how long until /healthz answers 200, and reads the node's RSS then and
# 3 s later against what the store and the event log hold
# (threadsync_store_bytes + threadsync_evlog_bytes), then once more after
# the snapshot a long replay is followed by (settled). Issue 17 item 7: the
# restore once kept a decoded copy of the snapshot resident.
restart_timed() {
    local name=$1 dir=$SCRATCH/$1
    shift
    stop_server
    local mport
    mport=$(free_port)
    rm -f "$dir/addr"
    local t0 t1
    t0=$(date +%s.%N)
    "${SRV_PIN[@]}" "$SERVERD" --data-dir "$dir/data" --listen 127.0.0.1:0 \
        --raft-listen "127.0.0.1:$SRV_RAFT_PORT" --tokens "$SCRATCH/tokens" \
        --rate-author off --rate-token off --max-conns-per-addr off \
        --metrics-listen "127.0.0.1:$mport" --addr-file "$dir/addr" --log-level warn "$@" \
        "${SERVER_FLAGS[@]}" 2>>"$dir/server.log" &
    SRV_PID=$!
    PIDS+=("$SRV_PID")
    local i
    for i in $(seq 1 12000); do
        http_get "$mport" /healthz 2>/dev/null | head -1 | grep -q ' 200 ' && break
        alive_or_die "threadsyncd $name (restart)" "$dir/server.log"
        sleep 0.05
    done
    if [ "$i" = 12000 ]; then
        echo "run.sh: threadsyncd $name not healthy 600 s after a restart" >&2
        exit 1
    fi
    t1=$(date +%s.%N)
    local rss_healthy rss page store evlog peak
    rss_healthy=$(rss_kib "$SRV_PID")
    sleep 3
    rss=$(rss_kib "$SRV_PID")
    peak=$(awk '/^VmHWM:/ { print $2 }' "/proc/$SRV_PID/status")
    page=$(http_get "$mport" /metrics)
    store=$(metric "$page" threadsync_store_bytes)
    evlog=$(metric "$page" threadsync_evlog_bytes)
    # Settled: a restart that replayed much of the log snapshots once the
    # replay is applied (raft holds the replayed entries until then), and
    # the 3 s figure may fall before, during or after that snapshot. Wait
    # for it (up to 30 s: none comes after a short replay) and read again.
    local snaps=0 rss_settled peak_settled
    for _ in $(seq 1 60); do
        snaps=$(metric "$(http_get "$mport" /metrics)" threadsync_raft_snapshots_total)
        [ "${snaps:-0}" -ge 1 ] && break
        sleep 0.5
    done
    sleep 1
    rss_settled=$(rss_kib "$SRV_PID")
    peak_settled=$(awk '/^VmHWM:/ { print $2 }' "/proc/$SRV_PID/status")
    SRV_ADDR=$(head -1 "$dir/addr")
    local wall ratio ratio_settled
    wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
    ratio=$(awk -v r="$rss" -v s="$store" -v e="$evlog" 'BEGIN { printf "%.2f", r * 1024 / (s + e) }')
    ratio_settled=$(awk -v r="$rss_settled" -v s="$store" -v e="$evlog" 'BEGIN { printf "%.2f", r * 1024 / (s + e) }')
    echo "-- restart $name: healthy in ${wall}s"
    echo "TABLE|restart|store $((store >> 20)) MiB + event log $((evlog >> 20)) MiB|/healthz in ${wall} s; RSS $((rss >> 10)) MiB 3 s later (${ratio}x store + log; $((rss_healthy >> 10)) MiB at /healthz, peak $((peak >> 10)) MiB); settled $((rss_settled >> 10)) MiB (${ratio_settled}x, ${snaps:-0} snapshot(s) since the start, peak $((peak_settled >> 10)) MiB)" |
        tee -a "$RESULTS" | sed -e 's/^TABLE|/   /' | tr '|' ' '
    echo "{\"scenario\":\"restart\",\"loadavg\":\"$(cat /proc/loadavg)\",\"healthy_s\":$wall,\"rss_healthy_kib\":$rss_healthy,\"rss_kib\":$rss,\"peak_kib\":$peak,\"rss_settled_kib\":$rss_settled,\"peak_settled_kib\":$peak_settled,\"snapshots_after_start\":${snaps:-0},\"store_bytes\":$store,\"evlog_bytes\":$evlog,\"rss_over_store_evlog\":$ratio,\"settled_over_store_evlog\":$ratio_settled}" >>"$RESULTS"
}

# lg SCENARIO [loadgen flags...]: runs one scenario against the current node.
lg() {
    local scen=$1
    shift
    gen_run "$scen $*" "$LOADGEN" --addr "$SRV_ADDR" --ca "$SRV_CA" --server-pid "$SRV_PID" \
        --reader-token "@$SCRATCH/reader.token" --poster-token "@$SCRATCH/poster.token" \
        --threads "$THREADS" --scenario "$scen" "$@"
}

# gen_run TITLE COMMAND...: runs one generator (ts_loadgen or ts_mqttgen),
# keeps every line it prints in RESULTS and shows the human ones.
gen_run() {
    echo "-- $1"
    shift
    "${GEN_PIN[@]}" "$@" | tee -a "$RESULTS" |
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

LAT_SUBS=1000
# K:WINDOW per ingest run; the window is a real client's (bench/README.md).
INGEST=${TS_BENCH_INGEST:-"10:16 100:16"}
if [ "$MODE" = tiny ]; then
    FANOUT="20:500"
    LAT_SUBS=50
    LAT_RATES="100:2"
    INGEST_S=1
    CATCHUP_M=2000
    MEM_N=50
    STORM_N=50
elif [ "$MODE" = quick ]; then
    FANOUT="100:20000 1000:5000 5000:1000"
    LAT_RATES="20:3 100:5 1000:3"
    INGEST_S=4
    CATCHUP_M=300000
    MEM_N=5000
    STORM_N=5000
else
    FANOUT="100:60000 1000:20000 5000:4000"
    LAT_RATES="20:10 100:10 1000:10"
    INGEST_S=15
    CATCHUP_M=1000000
    MEM_N=5000
    STORM_N=5000
fi
LAT_RATES=${TS_BENCH_LAT_RATES:-$LAT_RATES}
RESTART_M=${TS_BENCH_RESTART_COMMENTS:-$CATCHUP_M}

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
    "${SRV_PIN[@]}" "$cli" web --server "$SRV_ADDR" --ca "$SRV_CA" --token-file "$SCRATCH/reader.token" \
        --post-token-file "$SCRATCH/poster.token" --dir "$dir" --listen 127.0.0.1:0 \
        --max-conns 100000 --max-conns-per-addr 100000 --all ${TS_BENCH_WEB_FLAGS:-} 2>"$log" &
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
    local n r f
    for n in $WEB_N; do
        for f in $WEB_FLOOR; do
            # the floor: no edge, ts_webgen writes to its own watchers
            echo "-- web floor watchers=$n writers=${f%%:*} io=${f#*:} rate=${WEB_RATES%% *}/s"
            "${GEN_PIN[@]}" "$WEBGEN" --scenario floor --watchers "$n" --threads "$WEB_GEN_THREADS" \
                --recv "$WEB_RECV" --writers "${f%%:*}" --send "${f#*:}" --rate "${WEB_RATES%% *}" \
                --duration "$WEB_S" | tee -a "$RESULTS" | grep -v '^{' | sed -e 's/^TABLE|/   /' |
                tr '|' ' ' || true
        done
        for r in $WEB_RATES; do
            echo "-- web sse watchers=$n rate=$r/s"
            "${GEN_PIN[@]}" "$WEBGEN" --port "$port" --key bench --edge-pid "$web_pid" --scenario sse \
                --watchers "$n" --threads "$WEB_GEN_THREADS" --recv "$WEB_RECV" --rate "$r" \
                --duration "$WEB_S" |
                tee -a "$RESULTS" | grep -v '^{' | sed -e 's/^TABLE|/   /' | tr '|' ' ' || true
        done
    done
    if [ "$WEB_FORM" != 0 ]; then
        echo "-- web form posts=8"
        "${GEN_PIN[@]}" "$WEBGEN" --port "$port" --key bench --edge-pid "$web_pid" --scenario form \
            --posters 8 --duration "$WEB_S" | tee -a "$RESULTS" | grep -v '^{' |
            sed -e 's/^TABLE|/   /' | tr '|' ' ' || true
    fi
    kill "$web_pid" 2>/dev/null || true
    wait "$web_pid" 2>/dev/null || true
    stop_server
}
web_k=$(nproc)
[ "$web_k" -gt 8 ] && web_k=8
web_floor="$web_k:sendmsg $web_k:uring"
case $MODE in
tiny) web_n="20" web_rates="10" web_s=1 ;;
quick) web_n="1000 10000" web_rates="10 100" web_s=5 ;;
*) web_n="1000 10000" web_rates="10 100" web_s=15 ;;
esac
WEB_N=${TS_BENCH_WEB_N:-$web_n}
WEB_RATES=${TS_BENCH_WEB_RATES:-$web_rates}
WEB_S=${TS_BENCH_WEB_S:-$web_s}
WEB_FLOOR=${TS_BENCH_WEB_FLOOR-$web_floor}
WEB_FORM=${TS_BENCH_WEB_FORM:-1}
WEB_GEN_THREADS=${TS_BENCH_WEB_GEN_THREADS:-2}
WEB_RECV=${TS_BENCH_WEB_RECV:-uring}

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

# node_a GEN: node A's scenarios (memory, reconnect, fanout) against the
# current server through GEN: lg (threadsync) or mq (mosquitto, which has no
# reconnect scenario).
node_a() {
    local gen=$1
    if want memory; then
        $gen memory --subs "$MEM_N"
    fi
    if [ "$gen" = lg ] && want reconnect; then
        lg reconnect --subs "$STORM_N"
    fi
    if want fanout; then
        for fp in $FANOUT; do
            $gen fanout --subs "${fp%%:*}" --posts "${fp##*:}" --posters 4 --window 1024
        done
    fi
}

# node_i GEN START PREFIX: each ingest run (K:WINDOW of INGEST) on a fresh
# node or broker of its own, started by START (start_server or
# start_mosquitto) as PREFIX1, PREFIX2, ... Not on node A, nor one run on
# the last one's node: K = 100 ran on the store K = 10 had filled (and
# after A's fan-out), so its snapshots, whose cadence follows the state's
# size (ts_repl.c), fell inside its measured seconds and paused the loop
# that commits (bench/README.md, ingest).
# A threadsync node logs at info here, and the row after each run counts
# the Raft snapshots it took (warm-up included; bench/README.md "The write
# cycle": they, not the commit path, set ack p99 at K = 10).
node_i() {
    local gen=$1 start=$2 prefix=$3 i=0 snaps
    for kw in $INGEST; do
        i=$((i + 1))
        echo "== ${prefix}$i: ingest K=${kw%%:*} window=${kw##*:} (fresh, default settings)"
        if [ "$start" = start_server ]; then
            $start "${prefix}$i" --log-level info
        else
            $start "${prefix}$i"
        fi
        $gen ingest --posters "${kw%%:*}" --window "${kw##*:}" --duration "$INGEST_S"
        stop_server
        if [ "$start" = start_server ]; then
            snaps=$(grep -c 'event=repl_snapshot' "$SCRATCH/${prefix}$i/server.log" || true)
            echo "TABLE|ingest-snapshots|K=${kw%%:*} window=${kw##*:}|${snaps:-0} snapshot(s) during the run (warm-up included)" |
                tee -a "$RESULTS" | sed -e 's/^TABLE|/   /' | tr '|' ' '
            echo "{\"scenario\":\"ingest_snapshots\",\"posters\":${kw%%:*},\"window\":${kw##*:},\"snapshots\":${snaps:-0}}" >>"$RESULTS"
        fi
    done
}

# node_l GEN: the latency scenario, on a node of its own (node L; mosquitto
# is compared at 100 posts/s only). Not on node A: after A's fan-out the
# store holds 26,000 comments (10 MB), and the snapshot cadence (1/8 of the
# last snapshot's bytes logged, ts_repl.c) then falls inside the measured
# seconds, twice at 100 posts/s. Each paused the main loop for 90-250 ms
# while snapshots were serialised on it; since they are serialised in a
# forked child the loop pauses only for the fork, but the child still takes
# CPU from the measured seconds (bench/README.md, latency).
node_l() {
    local gen=$1
    for rd in $LAT_RATES; do
        [ "$gen" = lg ] || [ "${rd%%:*}" = 100 ] || continue
        $gen latency --subs "$LAT_SUBS" --rate "${rd%%:*}" --duration "${rd##*:}" --window 1024
    done
}

if want memory || want reconnect || want fanout; then
    echo "== node A: subscribers (fresh, default settings)"
    start_server A
    node_a lg
    stop_server
fi

want ingest && node_i lg start_server I

if want latency; then
    echo "== node L: post-to-delivery latency (fresh, default settings)"
    start_server L
    node_l lg
    stop_server
    if [ "${TS_BENCH_LAT_TRACE:-0}" = 1 ] && [ -s "$SCRATCH/L/lattrace.txt" ]; then
        "$ROOT/bench/lattrace_summary.sh" "$SCRATCH/L/lattrace.txt" | tee -a "$RESULTS" |
            grep -v '^{'
    fi
fi

if want catchup; then
    echo "== node B: catch-up through the event log (fresh, default settings)"
    start_server B
    lg catchup --posts "$CATCHUP_M" --posters 16 --window 128 --label evlog --timeout 600
    mirror_hook
    stop_server
fi
if want catchup || want restart; then
    echo "== node C: catch-up by snapshot, store memory, restart (fresh, --evlog-max-events 1024)"
    start_server C --evlog-max-events 1024
    lg catchup --posts "$RESTART_M" --posters 16 --window 128 --label store --timeout 1200
    restart_timed C --evlog-max-events 1024
    stop_server
fi

want web && web_scenarios

# ---- --versus mosquitto: the same scenarios against mosquitto ----

# start_mosquitto NAME: a fresh broker in $SCRATCH/NAME with a generated
# config: one TLS 1.3 listener on a free loopback port, a certificate from
# deploy/gen-certs.sh, anonymous clients, persistence on (so a
# clean_session=0 subscriber keeps its session and queue), and no limit on
# queued or in-flight messages (the defaults, 1,000 queued and 20 in
# flight, would drop or throttle the catch-up and fan-out; threadsync has
# no such caps to compare with). Sets SRV_ADDR, SRV_PID, SRV_CA.
start_mosquitto() {
    local dir=$SCRATCH/$1 port
    mkdir -p "$dir"
    [ -s "$SCRATCH/mqcerts/mosquitto.pem" ] ||
        "$ROOT/deploy/gen-certs.sh" "$SCRATCH/mqcerts" --node mosquitto 127.0.0.1 >/dev/null
    port=$(free_port)
    cat >"$dir/mosquitto.conf" <<EOF
# written by bench/run.sh --versus mosquitto
per_listener_settings false
allow_anonymous true
persistence true
persistence_location $dir/
max_queued_messages 0
max_queued_bytes 0
max_inflight_messages 0
log_dest stderr
log_type error
log_type warning
user $(id -un)
listener $port 127.0.0.1
certfile $SCRATCH/mqcerts/mosquitto.pem
keyfile $SCRATCH/mqcerts/mosquitto.key
cafile $SCRATCH/mqcerts/ca.pem
tls_version tlsv1.3
EOF
    "${SRV_PIN[@]}" "$MOSQUITTO" -c "$dir/mosquitto.conf" 2>"$dir/mosquitto.log" &
    SRV_PID=$!
    PIDS+=("$SRV_PID")
    SRV_ADDR=127.0.0.1:$port
    SRV_CA=$SCRATCH/mqcerts/ca.pem
    for _ in $(seq 1 100); do
        if ss -ltnH "sport = :$port" 2>/dev/null | grep -q .; then
            return 0
        fi
        alive_or_die mosquitto "$dir/mosquitto.log"
        sleep 0.05
    done
    echo "run.sh: mosquitto did not listen in time" >&2
    exit 1
}

# mq SCENARIO [ts_mqttgen flags...]: like lg, against the current broker.
mq() {
    local scen=$1
    shift
    gen_run "mqtt $scen $*" "$MQTTGEN" --addr "$SRV_ADDR" --ca "$SRV_CA" --server-pid "$SRV_PID" \
        --scenario "$scen" "$@"
}

if [ -n "$VERSUS" ]; then
    if want memory || want fanout; then
        echo "== mosquitto: the same scenarios (fresh broker, as node A)"
        start_mosquitto MA
        node_a mq
        stop_server
    fi
    want ingest && node_i mq start_mosquitto MI
    if want latency; then
        echo "== mosquitto: latency (fresh broker, as node L)"
        start_mosquitto ML
        node_l mq
        stop_server
    fi
    if want catchup; then
        echo "== mosquitto: catch-up of a persistent session (fresh broker, as node B)"
        start_mosquitto MB
        mq catchup --posts "$CATCHUP_M" --posters 16 --window 128 --timeout 600
        stop_server
    fi
fi

echo "== reference: openssl speed -evp aes-128-gcm -bytes 16384 -seconds 1"
AES=$(openssl speed -evp aes-128-gcm -bytes 16384 -seconds 1 2>/dev/null | tail -1)
echo "   $AES"
AES_KBPS=$(echo "$AES" | awk '{v=$NF; sub(/k$/,"",v); print v}')

echo
PINNED="not pinned: node and generator share all $(nproc) cores"
[ -n "${TS_BENCH_PIN:-}" ] && PINNED="pinned: node/broker on CPUs ${TS_BENCH_PIN%%:*}, generator on CPUs ${TS_BENCH_PIN#*:}; the web edge with the node, ts_webgen with the generator"
echo "== results ($MODE, generator threads: $THREADS, $(nproc) cores, $PINNED)"
grep '^TABLE|' "$RESULTS" | cut -d'|' -f2- | column -t -s'|'
grep '^CPU|' "$RESULTS" >/dev/null && echo && echo "cpu (cores busy over each measured phase):" &&
    paste -d' ' <(grep '^TABLE|' "$RESULTS" | grep -v -e 'per stored comment' -e '^TABLE|catchup-mirror-dir|' -e '^TABLE|ingest-snapshots|' -e '^TABLE|restart|' -e '^TABLE|web-' | cut -d'|' -f2,3 |
        tr '|' ' ') <(grep '^CPU|' "$RESULTS" | cut -d'|' -f2) | sed 's/^/   /'
echo "   AES-128-GCM reference, one core, 16 KiB blocks: ${AES_KBPS} kB/s"
echo
echo "== JSON"
grep '^{' "$RESULTS"
printf '{"scenario":"reference","aes_128_gcm_16k_kbps":%s,"cores":%s}\n' "${AES_KBPS:-0}" "$(nproc)"

# jnum JSON_LINE KEY: a number field of one JSON line.
jnum() { sed -n "s/.*\"$2\":\([-0-9.e]*\).*/\1/p" <<<"$1"; }
# pick MATCH...: the first JSON line holding every MATCH (fixed strings).
pick() {
    local l m ok
    while IFS= read -r l; do
        ok=1
        for m in "$@"; do
            [[ $l == *"$m"* ]] || ok=0
        done
        if [ $ok = 1 ]; then
            echo "$l"
            return
        fi
    done < <(grep '^{' "$RESULTS")
}
# ratio LABEL KEY BETTER TS_LINE MQ_LINE: a row of the ratio table.
ratio() {
    local a b
    a=$(jnum "$4" "$2")
    b=$(jnum "$5" "$2")
    [ -n "$a" ] && [ -n "$b" ] || return 0
    awk -v l="$1" -v k="$2" -v bt="$3" -v a="$a" -v b="$b" 'BEGIN {
        r = b != 0 ? sprintf("%.2fx", a / b) : "-"
        printf "%s|%s|%s|%s|%s|%s\n", l, k, a, b, r, bt }'
}
if [ -n "$VERSUS" ]; then
    echo
    echo "== threadsync / mosquitto (same payload, TLS 1.3, loopback; mosquitto is not durable)"
    {
        echo "scenario|figure|threadsync|mosquitto|ratio|better"
        if want memory; then
            ratio "memory N=$MEM_N" rss_per_sub_b lower \
                "$(pick '"scenario":"memory"' "\"subs\":$MEM_N," '"threads":')" \
                "$(pick '"scenario":"memory"' '"broker":"mqtt"')"
        fi
        for fp in $FANOUT; do
            want fanout || break
            ratio "fanout N=${fp%%:*}" delivered_per_s higher \
                "$(pick '"scenario":"fanout"' "\"subs\":${fp%%:*}," '"threads":')" \
                "$(pick '"scenario":"fanout"' "\"subs\":${fp%%:*}," '"broker":"mqtt"')"
        done
        if want latency; then
            ts=$(pick '"scenario":"latency"' "\"subs\":$LAT_SUBS," '"target_rate":100,' '"threads":')
            mql=$(pick '"scenario":"latency"' '"target_rate":100,' '"broker":"mqtt"')
            ratio "latency N=$LAT_SUBS 100/s" p50_ms lower "$ts" "$mql"
            ratio "latency N=$LAT_SUBS 100/s" p99_ms lower "$ts" "$mql"
        fi
        for kw in $INGEST; do
            want ingest || break
            kws="\"posters\":${kw%%:*},\"window\":${kw##*:},"
            ts=$(pick '"scenario":"ingest"' "$kws" '"threads":')
            mqi=$(pick '"scenario":"ingest"' "$kws" '"broker":"mqtt"')
            ratio "ingest K=${kw%%:*} window=${kw##*:}" acked_per_s higher "$ts" "$mqi"
            ratio "ingest K=${kw%%:*} window=${kw##*:}" ack_p99_ms lower "$ts" "$mqi"
        done
        if want catchup; then
            ratio "catchup M=$CATCHUP_M" comments_per_s higher \
                "$(pick '"scenario":"catchup"' '"label":"evlog"')" \
                "$(pick '"scenario":"catchup"' '"broker":"mqtt"')"
        fi
    } | column -t -s'|' | sed 's/^/   /'
fi
