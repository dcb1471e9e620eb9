#!/usr/bin/env bash
# bench/ingest_trace.sh [--build DIR] [--duration S] [-- threadsyncd flags...]:
# one ingest run at 10 posting connections (16 posts in flight each, the
# --versus ingest) on a fresh one-node threadsyncd at default settings, with
# the node's latency trace (THREADSYNC_LATENCY_TRACE) and its snapshot log
# lines (--log-level info), to see where the ack p99 comes from
# (bench/README.md, "Where the snapshot p99 comes from", "The 30 ms segment
# switch" and "The snapshot child's memory and CPU"). Prints ts_loadgen's
# JSON figures, the node's minor page faults per post, the CPU per post of
# the node and of its snapshot children (reaped ones: utime + stime from
# /proc/PID/stat), the children's largest private memory (Private_* of
# smaps_rollup, sampled every 50 ms), and from the trace: snapshots taken,
# the share of the run inside a snapshot (fork to image written), the p99
# of commit and apply (the generator's stamp to "applied") over the run,
# for posts sent inside and outside snapshots, and the posts over 20 ms.
# DIR (default build-bench) must hold threadsyncd and bench/ts_loadgen; the
# scratch directory (TS_TRACE_DIR, default a new one under /tmp) is kept
# and named.
set -euo pipefail
BUILD=build-bench DUR=15
while [ $# -gt 0 ]; do
    case $1 in
    --build) BUILD=$2; shift 2 ;;
    --duration) DUR=$2; shift 2 ;;
    --) shift; break ;;
    *) sed -n '2,18p' "$0"; exit 2 ;;
    esac
done
[ -x "$BUILD/threadsyncd" ] && [ -x "$BUILD/bench/ts_loadgen" ] || {
    echo "ingest_trace.sh: no $BUILD/threadsyncd or $BUILD/bench/ts_loadgen (build them first)" >&2
    exit 1
}
S=${TS_TRACE_DIR:-$(mktemp -d /tmp/ts-trace.XXXXXX)}
mkdir -p "$S"
# shellcheck source=bench/bench_node.sh
. "$(dirname "$0")/bench_node.sh"
NODE_CMD=(env THREADSYNC_LATENCY_TRACE="$S/trace.txt" "$BUILD/threadsyncd")
bench_node_start "$S" info "$@"
PID=$NODE_PID
# The log's times are wall-clock, the trace's CLOCK_MONOTONIC.
OFFSET=$(python3 -c 'import time; print(time.time() - time.monotonic())')
# Fields 10, 14-15 and 16-17 of /proc/PID/stat: minor faults, the node's
# CPU and its reaped children's, in clock ticks.
node_stat() { awk '{print $10, $14 + $15, $16 + $17}' /proc/$PID/stat; }
child_mem() {
    local max=0 v c
    while kill -0 $PID 2>/dev/null; do
        for c in $(pgrep -P $PID); do
            v=$(awk '/^Private_/ {s += $2} END {print s + 0}' /proc/$c/smaps_rollup 2>/dev/null || echo 0)
            [ "${v:-0}" -gt "$max" ] && max=$v
        done
        echo "$max" >"$S/child_kb"
        sleep 0.05
    done
}
child_mem &
MEM_PID=$!
read -r f0 c0 k0 <<<"$(node_stat)"
"$BUILD/bench/ts_loadgen" --addr "$(head -1 "$S/addr")" --ca "$S/data/ca.pem" --server-pid $PID \
    --reader-token "@$S/reader.token" --poster-token "@$S/poster.token" --scenario ingest \
    --posters 10 --window 16 --duration "$DUR" --timeout 120 >"$S/run.txt"
read -r f1 c1 k1 <<<"$(node_stat)"
kill -INT $PID
wait $PID || true
wait $MEM_PID # its last sample written
trap - EXIT
acked=$(grep -o '"acked":[0-9]*' "$S/run.txt" | cut -d: -f2)
echo "$(grep -o '"acked_per_s":[0-9.]*\|"ack_p50_ms":[0-9.]*\|"ack_p99_ms":[0-9.]*' "$S/run.txt" |
    tr '\n' ' ')minor_faults_per_post=$(echo "scale=3; ($f1 - $f0) / $acked" | bc)"
tick_us=$((1000000 / $(getconf CLK_TCK)))
echo "cpu_us_per_post node=$(echo "scale=2; ($c1 - $c0) * $tick_us / $acked" | bc)" \
    "snapshot_children=$(echo "scale=2; ($k1 - $k0) * $tick_us / $acked" | bc)" \
    "child_private_max_kb=$(cat "$S/child_kb" 2>/dev/null || echo 0)"
python3 - "$S/trace.txt" "$S/server.log" "$OFFSET" <<'PY'
import datetime, re, sys
trace, log, offset = sys.argv[1], sys.argv[2], float(sys.argv[3])
windows = []  # (start, end) of each snapshot, monotonic seconds
for line in open(log):
    if 'event=repl_snapshot ' not in line:
        continue
    ts = re.search(r'ts=(\S+)Z', line).group(1)
    end = datetime.datetime.strptime(ts, '%Y-%m-%dT%H:%M:%S.%f').replace(
        tzinfo=datetime.timezone.utc).timestamp() - offset
    windows.append((end - float(re.search(r' ms=([0-9.]+)', line).group(1)) / 1e3, end))
posts = []  # (stamp s, stamp to applied ms)
for line in open(trace):
    if not line.startswith('#'):
        f = line.split()
        if int(f[5]):
            posts.append((int(f[0]) / 1e9, int(f[5]) / 1e6))
posts.sort()
posts = [p for p in posts if p[0] >= posts[0][0] + 1.0]  # as ts_loadgen: no first second
def p99(v):
    v = sorted(v)
    return v[min(len(v) - 1, int(0.99 * len(v)))] if v else 0.0
def inside(t):
    return any(a <= t <= b for a, b in windows)
first, last = posts[0][0], posts[-1][0]
share = sum(max(0.0, min(b, last) - max(a, first)) for a, b in windows) / (last - first)
print("snapshots=%d share_inside=%.2f applied_p99_ms all=%.1f inside=%.1f outside=%.1f "
      "posts_over_20ms=%d of %d" % (
          len(windows), share, p99([l for _, l in posts]),
          p99([l for t, l in posts if inside(t)]), p99([l for t, l in posts if not inside(t)]),
          sum(1 for _, l in posts if l > 20), len(posts)))
PY
echo "scratch: $S"
