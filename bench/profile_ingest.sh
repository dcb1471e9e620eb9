#!/bin/bash
# profile_ingest.sh: what one acknowledged post costs the server, measured
# in ways that do not depend on what else the machine runs (bench/README.md,
# "Where a post's CPU goes"). Starts a fresh one-node threadsyncd, warms it
# up with 2,000 posts, then measures exactly POSTS more from ts_loadgen
# (K posting connections, WINDOW posts in flight each, no subscriber):
#
#   bench/profile_ingest.sh [--build DIR] [--mode M] [--posts N] [--posters K] [--window W]
#
#   --mode cpu       server utime+stime per post (/proc/PID/stat; moves with load),
#                    and the main thread's alone (/proc/PID/task/PID/stat: the
#                    loop that runs raft, the store and the answers; at a fixed
#                    window its CPU per post paces the Raft write cycle)
#   --mode callgrind instructions per post (valgrind; the server runs with
#                    --io-threads 0: callgrind serialises threads and the
#                    hand-off between loops then stalls it); the annotated
#                    inclusive profile is written next to the raw output
#   --mode strace    system calls per post (strace -c -f)
#   --mode perf      a cpu-clock profile of the measured part (perf record,
#                    DWARF call graphs: the Release build keeps no frame
#                    pointers, and glibc's memmove is a leaf without a frame,
#                    so frame-pointer stacks skipped its caller)
#   --mode faults    where the page faults come from (perf record -e
#                    page-faults, every 4th fault, DWARF call graphs)
#
# Every mode also prints the server's minor page faults per post
# (/proc/PID/stat minflt, all threads): fresh memory touched per post, a
# figure that does not move with the machine's load either.
#
# DIR (default build-bench) must hold threadsyncd and bench/ts_loadgen
# (Release: cmake --build DIR --target threadsyncd ts_loadgen). Extra
# threadsyncd flags: TS_PROFILE_SERVER_FLAGS. The scratch directory (server
# log, profiles) is kept and named on the last line.
set -euo pipefail

BUILD=build-bench MODE=cpu POSTS=20000 K=10 WINDOW=256
while [ $# -gt 0 ]; do
    case $1 in
    --build) BUILD=$2 ;;
    --mode) MODE=$2 ;;
    --posts) POSTS=$2 ;;
    --posters) K=$2 ;;
    --window) WINDOW=$2 ;;
    *)
        sed -n '2,37p' "$0"
        exit 2
        ;;
    esac
    shift 2
done
SERVERD=$BUILD/threadsyncd LOADGEN=$BUILD/bench/ts_loadgen
[ -x "$SERVERD" ] && [ -x "$LOADGEN" ] || {
    echo "profile_ingest.sh: no $SERVERD or $LOADGEN (build them first)" >&2
    exit 1
}

S=$(mktemp -d /tmp/ts-profile.XXXXXX)
# shellcheck source=bench/bench_node.sh
. "$(dirname "$0")/bench_node.sh"

pre=()
flags=(${TS_PROFILE_SERVER_FLAGS:-})
if [ "$MODE" = callgrind ]; then
    # GLIBC_TUNABLES set: threadsyncd does not exec itself again for huge
    # pages (server/main.c), which would leave valgrind behind; valgrind's
    # malloc ignores the tunable anyway.
    pre=(env GLIBC_TUNABLES="${GLIBC_TUNABLES-glibc.malloc.hugetlb=1}" valgrind --tool=callgrind
        --callgrind-out-file="$S/callgrind.out" --dump-instr=no -q)
    flags+=(--io-threads 0)
fi
NODE_CMD=("${pre[@]}" "$SERVERD")
bench_node_start "$S" warn "${flags[@]}"
PID=$NODE_PID
lg() {
    "$LOADGEN" --addr "$(head -1 "$S/addr")" --ca "$S/data/ca.pem" --server-pid $PID \
        --reader-token "@$S/reader.token" --poster-token "@$S/poster.token" --threads 1 \
        --scenario fanout --subs 0 --posters "$K" --window "$WINDOW" --timeout 600 "$@"
}
lg --posts 2000 >"$S/warmup.txt"
ticks() { awk '{print $14 + $15}' /proc/$PID/stat; }
main_ticks() { awk '{print $14 + $15}' /proc/$PID/task/$PID/stat; }
case $MODE in
callgrind) callgrind_control -z $PID >/dev/null 2>&1 ;;
strace)
    strace -c -f -p $PID -o "$S/strace.txt" &
    SIDE=$!
    sleep 1
    ;;
perf)
    perf record -q -e cpu-clock -F 1000 --call-graph dwarf,16384 -p $PID -o "$S/perf.data" \
        >/dev/null 2>&1 &
    SIDE=$!
    sleep 1
    ;;
faults)
    perf record -q -e page-faults -c 4 --call-graph dwarf,16384 -p $PID -o "$S/perf.data" \
        >/dev/null 2>&1 &
    SIDE=$!
    sleep 1
    ;;
esac
minflt() { awk '{print $10}' /proc/$PID/stat; }
f0=$(minflt)
t0=$(ticks) m0=$(main_ticks)
lg --posts "$POSTS" >"$S/run.txt"
t1=$(ticks) m1=$(main_ticks)
f1=$(minflt)
acked=$(grep -o '"posts_acked":[0-9]*' "$S/run.txt" | cut -d: -f2)
case $MODE in
callgrind)
    callgrind_control -d $PID >/dev/null 2>&1
    sleep 1
    ir=$(grep -h '^summary:' "$S"/callgrind.out.* | tail -1 | awk '{print $2}')
    callgrind_annotate --inclusive=yes "$(ls "$S"/callgrind.out.* | tail -1)" \
        >"$S/callgrind.txt" 2>/dev/null
    echo "instructions_per_post=$((ir / acked)) (callgrind_annotate --inclusive=yes: $S/callgrind.txt)"
    ;;
strace)
    kill -INT $SIDE
    wait $SIDE || true
    calls=$(awk '$NF == "total" {print $4}' "$S/strace.txt")
    echo "syscalls_per_post=$(echo "scale=2; $calls / $acked" | bc) ($S/strace.txt)"
    ;;
perf | faults)
    kill -INT $SIDE
    wait $SIDE || true
    echo "perf report -i $S/perf.data --no-children"
    ;;
esac
echo "acked=$acked server_cpu_us_per_post=$(echo "scale=2; ($t1 - $t0) * 1000000 / $(getconf CLK_TCK) / $acked" | bc) main_thread_cpu_us_per_post=$(echo "scale=2; ($m1 - $m0) * 1000000 / $(getconf CLK_TCK) / $acked" | bc) minor_faults_per_post=$(echo "scale=3; ($f1 - $f0) / $acked" | bc) loadavg=$(cut -d' ' -f1-3 /proc/loadavg)"
grep '^TABLE' "$S/run.txt" | cut -d'|' -f2- | tr '|' ' '
echo "scratch: $S"
