#!/usr/bin/env bash
# bench/lattrace_summary.sh TRACE_FILE: summarises a node's latency trace
# (THREADSYNC_LATENCY_TRACE, server/ops/ts_lattrace.h; run.sh writes one
# with TS_BENCH_LAT_TRACE=1) per stage at p50 and p99, in ms after the
# generator stamped the post. Posts are grouped into runs (one ts_loadgen
# scenario each) where their stamps are more than 0.3 s apart (the pacer
# posts at 20/s or more); as in ts_loadgen's latency figures, each run's
# first second is left out. Prints one table per run of at least 20 posts,
# each followed by a JSON line ("scenario":"latency_trace").
set -euo pipefail
[ $# -eq 1 ] && [ -r "$1" ] || {
    echo "usage: bench/lattrace_summary.sh TRACE_FILE" >&2
    exit 2
}
grep -v '^#' "$1" | sort -n -k1,1 | awk '
# qsort(a, lo, hi): sorts a[lo..hi]; q(a, n, p): the p-quantile of sorted a[1..n]
function qsort(a, lo, hi,    i, last, t) {
    if (lo >= hi) return
    t = a[lo]; a[lo] = a[int((lo + hi) / 2)]; a[int((lo + hi) / 2)] = t
    last = lo
    for (i = lo + 1; i <= hi; i++)
        if (a[i] < a[lo]) { last++; t = a[last]; a[last] = a[i]; a[i] = t }
    t = a[lo]; a[lo] = a[last]; a[last] = t
    qsort(a, lo, last - 1); qsort(a, last + 1, hi)
}
function q(a, n, p,    k) {
    if (n == 0) return 0
    k = int(p * n + 0.999999); if (k < 1) k = 1; if (k > n) k = n
    return a[k] / 1e6
}
function stage(name, col,    i, n, v) {
    n = 0
    for (i = 1; i <= cnt; i++) { v = row[i, col]; if (v > 0) { n++; v_[n] = v } }
    qsort(v_, 1, n)
    printf "   %-34s %6d %9.3f %9.3f\n", name, n, q(v_, n, 0.5), q(v_, n, 0.99)
    json = json sprintf(",\"%s_n\":%d,\"%s_p50_ms\":%.3f,\"%s_p99_ms\":%.3f", col_name[col], n,
                        col_name[col], q(v_, n, 0.5), col_name[col], q(v_, n, 0.99))
}
function flush(    rate) {
    if (cnt < 20) { cnt = 0; return }
    rate = (last_stamp > t_first) ? (cnt - 1) / ((last_stamp - t_first) / 1e9) : 0
    printf "-- latency trace run %d: %d posts measured at %.0f/s (the first second left out)\n", ++runs, cnt, rate
    printf "   %-34s %6s %9s %9s\n", "stage (time after the stamp)", "posts", "p50 ms", "p99 ms"
    json = sprintf("{\"scenario\":\"latency_trace\",\"run\":%d,\"posts\":%d,\"rate\":%.0f", runs, cnt, rate)
    stage("decoded on its I/O thread", 3)
    stage("queued by the main loop", 4)
    stage("proposed to raft", 5)
    stage("committed and applied", 6)
    stage("pushed to the first subscriber", 7)
    stage("pushed to the last subscriber", 8)
    print json "}"
    cnt = 0
}
BEGIN {
    col_name[3] = "decoded"; col_name[4] = "queued"; col_name[5] = "proposed"
    col_name[6] = "applied"; col_name[7] = "push_first"; col_name[8] = "push_last"
}
{
    if (NR > 1 && $1 - prev > 3e8) { flush(); start = $1 }
    if (NR == 1) start = $1
    prev = $1
    if ($1 < start + 1e9) next
    if (cnt == 0) t_first = $1
    cnt++
    last_stamp = $1
    for (c = 3; c <= 8; c++) row[cnt, c] = $c
}
END { flush() }
'
