#!/usr/bin/env bash
# failover_soak.sh: issue 12's fault tests (posting stays exactly-once and
# clients move on when the leader stops answering), end to end.
#
#   tests/soak/failover_soak.sh BUILD_DIR stop|cut [ROUNDS] [COUNT]
#
# Three nodes (election timeout ELECTION_MS, default 1000) take COUNT
# (default 1500) posts from ts_soak_client (libthreadsync over all three,
# every post re-posted with its idempotency key until acknowledged) while
# the leader is taken away, ROUNDS times (default 3; cut: 1):
#   stop  the leader is SIGSTOPped for a few seconds, then continued;
#   cut   node 1 (the leader it bootstrapped) runs in a network namespace of
#         its own joined to the others by a veth pair; the cut is
#         `ip link set down` on that veth, the heal `up`. The whole test runs
#         in a fresh network namespace (unshare -n): nothing leaves it. Where
#         namespaces cannot be made (not root), it says so and exits 77
#         (CTest: skipped).
# At the moment of each fault a `threadsync post` listing the lost leader
# first is started; the time from the fault to its exit 0 is printed, and
# the test fails when it is above 2 election timeouts + MARGIN_MS (default
# 4000: the client's silence detection, 2 s, plus a reconnect). Then every
# node, asked alone, must hold every acknowledged post exactly once
# (ts_soak_client check), and every probe post once.
# Prints FIGURES; files live in one temporary directory, removed at the end
# (kept with TS_SOAK_KEEP=1 or on failure).
set -euo pipefail

build=$(cd "${1:?usage: $0 BUILD_DIR stop|cut [ROUNDS] [COUNT]}" && pwd)
mode=${2:?usage: $0 BUILD_DIR stop|cut [ROUNDS] [COUNT]}
[[ $mode == stop || $mode == cut ]] || { echo "soak: mode is stop or cut" >&2; exit 2; }
rounds=${3:-$([[ $mode == cut ]] && echo 1 || echo 3)}
count=${4:-1500}
election=${ELECTION_MS:-1000}
margin=${MARGIN_MS:-4000}
src=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=tests/soak/soak_lib.sh
. "$src/tests/soak/soak_lib.sh"
threadsyncd=$build/threadsyncd
threadsync=$build/threadsync
soak=$build/tests/soak/ts_soak_client
for b in "$threadsyncd" "$threadsync" "$soak"; do
    [[ -x $b ]] || { echo "soak: $b missing: build first" >&2; exit 2; }
done

if [[ $mode == cut && -z ${TS_SOAK_IN_NETNS:-} ]]; then
    if ! unshare -n true 2>/dev/null; then
        echo "soak: SKIPPED: cannot create a network namespace here (unshare -n needs root)"
        exit 77
    fi
    exec unshare -n env TS_SOAK_IN_NETNS=1 bash "$0" "$build" "$mode" "$rounds" "$count"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/ts-fsoak.XXXXXX")
declare -A pid=()
holder=
poster=
ok=0
cleanup() {
    local n
    [[ -z $poster ]] || kill -TERM "$poster" 2>/dev/null || true
    for n in "${!pid[@]}"; do
        kill -CONT "${pid[$n]}" 2>/dev/null || true
        kill -TERM "${pid[$n]}" 2>/dev/null || true
    done
    for n in "${!pid[@]}"; do wait "${pid[$n]}" 2>/dev/null || true; done
    [[ -z $holder ]] || kill -TERM "$holder" 2>/dev/null || true
    soak_finish "$work" "$ok"
}
trap cleanup EXIT
log() { soak_log "$@"; }
fail() { soak_fail "$@"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# ---- where the nodes live ----
declare -A host=() cport=() rport=()
if [[ $mode == cut ]]; then
    ip link set lo up
    # node 1's namespace: held by a sleeping process; $! is that process
    # (unshare execs sleep), so nothing needs looking up by name.
    unshare -n sleep 100000 &
    holder=$!
    for _ in $(seq 100); do
        [[ $(readlink "/proc/$holder/ns/net") != $(readlink /proc/self/ns/net) ]] && break
        sleep 0.05
    done
    if ! ip link add tsv0 type veth peer name tsv1 2>"$work/veth.err"; then
        echo "soak: SKIPPED: no veth pair here: $(cat "$work/veth.err")"
        ok=1
        exit 77
    fi
    ip link set tsv1 netns "$holder"
    # Link-local addresses, inside namespaces this test made: no packet can
    # leave them.
    ip addr add 169.254.77.1/30 dev tsv0
    ip link set tsv0 up
    nsenter -t "$holder" -n sh -c \
        'ip link set lo up && ip addr add 169.254.77.2/30 dev tsv1 && ip link set tsv1 up'
    host=([1]=169.254.77.2 [2]=169.254.77.1 [3]=169.254.77.1)
    cport=([1]=7420 [2]=7430 [3]=7440)
else
    host=([1]=127.0.0.1 [2]=127.0.0.1 [3]=127.0.0.1)
    base=$(soak_pick_base)
    cport=([1]=$base [2]=$((base + 10)) [3]=$((base + 20)))
fi
for n in 1 2 3; do rport[$n]=$((cport[$n] + 1)); done
addr() { echo "${host[$1]}:${cport[$1]}"; }

"$src/deploy/gen-certs.sh" "$work/certs" --node node1 "${host[1]}" --node node2 "${host[2]}" \
    --node node3 "${host[3]}" >/dev/null
token="ts_$(openssl rand -base64 32 | tr '+/' '-_' | tr -d '=\n')"
printf '%s\n' "$token" >"$work/admin.token"
printf 'admin admin %s\n' "$(printf %s "$token" | sha256sum | cut -d' ' -f1)" >"$work/tokens"
common=(--ca "$work/certs/ca.pem" --token-file "$work/admin.token")

start_node() {
    local n=$1 run=()
    [[ $mode == cut && $n == 1 ]] && run=(nsenter -t "$holder" -n)
    local args=(--data-dir "$work/node$n" --node-id "$n" --listen "$(addr "$n")"
        --raft-listen "${host[$n]}:${rport[$n]}" --cert "$work/certs/node$n.pem"
        --key "$work/certs/node$n.key" --ca "$work/certs/ca.pem" --tokens "$work/tokens"
        --election-timeout-ms "$election" --rate-author off --rate-token off)
    [[ $n == 1 ]] || args+=(--join "$(addr 1)" --join-token-file "$work/admin.token")
    "${run[@]}" "$threadsyncd" "${args[@]}" >>"$work/node$n.log" 2>&1 &
    pid[$n]=$!
}

# The leader's id as node n alone sees it ("" when it knows none).
leader_seen_by() {
    "$threadsync" admin cluster --json --server "$(addr "$1")" "${common[@]}" 2>/dev/null |
        grep -o '"leader_id":[0-9]*' | head -n 1 | cut -d: -f2 || true
}
voters() {
    "$threadsync" admin cluster --json --server "$(addr 1)" "${common[@]}" 2>/dev/null |
        grep -o '"role":"voter"' | wc -l || true
}
# Waits until all three nodes name the same leader; prints it.
await_agreement() {
    local l1 l2 l3
    for _ in $(seq 300); do
        l1=$(leader_seen_by 1)
        l2=$(leader_seen_by 2)
        l3=$(leader_seen_by 3)
        if [[ -n $l1 && $l1 != 0 && $l1 == "$l2" && $l2 == "$l3" ]]; then
            echo "$l1"
            return 0
        fi
        sleep 0.1
    done
    return 1
}

t_start=$(now_ms)
start_node 1
for n in 2 3; do
    for _ in $(seq 300); do [[ $(voters) -ge $((n - 1)) ]] && break; sleep 0.1; done
    start_node "$n"
done
for _ in $(seq 300); do [[ $(voters) -ge 3 ]] && break; sleep 0.1; done
[[ $(voters) -ge 3 ]] || fail "the cluster did not form (see $work/node*.log)"
leader=$(await_agreement) || fail "no leader agreed"
log "cluster up: $(addr 1) $(addr 2) $(addr 3), leader node$leader, election timeout $election ms"

srv_args=(--server "$(addr 1)" --server "$(addr 2)" --server "$(addr 3)")
"$soak" post "${srv_args[@]}" "${common[@]}" --acked "$work/acked" --count "$count" \
    >"$work/post.out" 2>"$work/post.log" &
poster=$!

tag=$(date +%s)-$RANDOM
bound=$((2 * election + margin))
worst=0
times=()
for r in $(seq "$rounds"); do
    sleep 2
    leader=$(await_agreement) || fail "no leader agreed before round $r"
    if [[ $mode == cut && $leader != 1 ]]; then
        fail "node1 (the one behind the veth) does not lead; leader is node$leader"
    fi
    order=(--server "$(addr "$leader")")
    for n in 1 2 3; do [[ $n == "$leader" ]] || order+=(--server "$(addr "$n")"); done
    acked=$(($(wc -l <"$work/acked") - 1))
    if [[ $mode == stop ]]; then
        kill -STOP "${pid[$leader]}"
        what="SIGSTOP node$leader"
    else
        ip link set tsv0 down
        what="cut node$leader's link"
    fi
    t0=$(now_ms)
    set +e
    "$threadsync" post "${order[@]}" "${common[@]}" --thread "soak-probe/$tag" --name Probe \
        --body "probe $r" --idempotency-key "probe-$tag-$r" --timeout 60 \
        >"$work/probe$r.out" 2>"$work/probe$r.err"
    rc=$?
    set -e
    took=$(($(now_ms) - t0))
    times+=("$took")
    ((took > worst)) && worst=$took
    log "round $r: $what at $acked acknowledged; threadsync post (lost leader listed first) exit $rc after $took ms (bound $bound ms)"
    [[ $rc == 0 ]] || fail "probe post: $(cat "$work/probe$r.err")"
    sleep 3
    if [[ $mode == stop ]]; then
        kill -CONT "${pid[$leader]}"
    else
        ip link set tsv0 up
    fi
    log "round $r: healed at $(($(wc -l <"$work/acked") - 1)) acknowledged"
done
wait "$poster" || fail "the poster failed: $(tail -n 5 "$work/post.log")"
poster=
log "poster: $(cat "$work/post.out")"

await_agreement >/dev/null || fail "no leader agreed at the end"
"$soak" check "${srv_args[@]}" "${common[@]}" --acked "$work/acked" ||
    fail "the nodes do not hold every acknowledged comment exactly once"
for n in 1 2 3; do
    for _ in $(seq 100); do
        "$threadsync" get --json --server "$(addr "$n")" "${common[@]}" \
            --thread "soak-probe/$tag" >"$work/probes$n.json" 2>/dev/null &&
            [[ $(grep -o '"body":"probe [0-9]*"' "$work/probes$n.json" | wc -l) -ge $rounds ]] &&
            break
        sleep 0.1
    done
    for r in $(seq "$rounds"); do
        c=$(grep -o "\"body\":\"probe $r\"" "$work/probes$n.json" | wc -l)
        [[ $c == 1 ]] || fail "node$n holds probe $r $c times"
    done
done
log "every node holds every acknowledged post and every probe exactly once"

log "FIGURES mode=$mode rounds=$rounds count=$count election_ms=$election probe_ms=${times[*]} worst_ms=$worst bound_ms=$bound total_s=$((($(now_ms) - t_start) / 1000)) $(cat "$work/post.out")"
((worst <= bound)) || fail "a post took $worst ms after the fault, above $bound ms"
ok=1
