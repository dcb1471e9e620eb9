#!/usr/bin/env bash
# cluster_soak.sh: issue 6's acceptance, end to end, on loopback.
#
#   tests/soak/cluster_soak.sh BUILD_DIR [COUNT]
#
# deploy/local-cluster.sh brings up three nodes. `threadsync mirror` follows
# the cluster (all three in its --server list) while ts_soak_client posts
# COUNT (default 5000) comments over libthreadsync, and this script kills
# one node at random with SIGKILL every few seconds, restarting it each time
# (local-cluster.sh start restarts what is down). Then:
#   - every node, asked alone, holds every acknowledged comment exactly once
#     and the same threads byte for byte (ts_soak_client check);
#   - `threadsync verify` finds the mirror equal to the cluster, and the
#     mirror's database holds each comment once;
#   - a node with a certificate from another CA cannot join, and a plain TCP
#     connection to a raft port gets no byte back.
# Prints the figures (time, kills, failovers) and exits 0 when all hold.
#
# Ports: local-cluster.sh needs fixed ones (BASE_PORT + 0,1,10,11,20,21); a
# free block is picked at random. Everything lives in one temporary
# directory, removed at the end (kept with TS_SOAK_KEEP=1 or on failure).
set -euo pipefail

build=$(cd "${1:?usage: $0 BUILD_DIR [COUNT]}" && pwd)
count=${2:-5000}
src=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=tests/soak/soak_lib.sh
. "$src/tests/soak/soak_lib.sh"
threadsyncd=$build/threadsyncd
threadsync=$build/threadsync
soak=$build/tests/soak/ts_soak_client
for b in "$threadsyncd" "$threadsync" "$soak"; do
    [[ -x $b ]] || { echo "soak: $b missing: build first" >&2; exit 2; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/ts-soak.XXXXXX")
cl=$work/cluster
pids=()
ok=0
cleanup() {
    local p
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    if [[ -d $cl ]]; then
        "$src/deploy/local-cluster.sh" stop "$cl" >/dev/null 2>&1 || true
    fi
    soak_finish "$work" "$ok"
}
trap cleanup EXIT
log() { soak_log "$@"; }
fail() { soak_fail "$@"; }

base=$(soak_pick_base)

t0=$(date +%s%N)
BASE_PORT=$base THREADSYNCD=$threadsyncd "$src/deploy/local-cluster.sh" start "$cl" >"$work/start.log"
servers=("127.0.0.1:$base" "127.0.0.1:$((base + 10))" "127.0.0.1:$((base + 20))")
common=(--ca "$cl/certs/ca.pem" --token-file "$cl/admin.token")
srv_args=()
for s in "${servers[@]}"; do srv_args+=(--server "$s"); done
log "cluster up on ${servers[*]}"
"$threadsync" admin cluster "${srv_args[@]}" "${common[@]}"

# the mirror starts on a follower (node 1 bootstrapped, so it leads at first)
"$threadsync" mirror --dir "$work/mirror" --all --server "${servers[1]}" --server "${servers[2]}" \
    --server "${servers[0]}" "${common[@]}" \
    >"$work/mirror.out" 2>"$work/mirror.log" &
mirror=$!
pids+=("$mirror")

"$soak" post "${srv_args[@]}" "${common[@]}" --acked "$work/acked" --count "$count" \
    >"$work/post.out" 2>"$work/post.log" &
poster=$!
pids+=("$poster")

# The killer: one node at a time, any of the three, while the poster runs.
kills=0
leader_kills=0
declare -A killed_by_node=([1]=0 [2]=0 [3]=0)
while kill -0 "$poster" 2>/dev/null; do
    sleep "$((2 + RANDOM % 3)).$((RANDOM % 10))"
    kill -0 "$poster" 2>/dev/null || break
    n=$((1 + RANDOM % 3))
    pid=$(cat "$cl/node$n.pid" 2>/dev/null || true)
    if [[ -z $pid ]] || ! kill -0 "$pid" 2>/dev/null; then
        continue
    fi
    leader=$("$threadsync" admin cluster --json "${srv_args[@]}" "${common[@]}" 2>/dev/null |
        grep -o '"leader_id":[0-9]*' | cut -d: -f2 || true)
    kill -KILL "$pid"
    kills=$((kills + 1))
    [[ $leader != "$n" ]] || leader_kills=$((leader_kills + 1))
    killed_by_node[$n]=$((killed_by_node[$n] + 1))
    acked=$(($(wc -l <"$work/acked") - 1))
    log "kill -9 node$n (pid $pid$([[ $leader == "$n" ]] && echo ', the leader')) at $acked acknowledged"
    sleep "1.$((RANDOM % 10))"
    BASE_PORT=$base THREADSYNCD=$threadsyncd "$src/deploy/local-cluster.sh" start "$cl" \
        >>"$work/start.log" 2>&1 || fail "node$n did not restart (see $cl/node$n.log)"
    log "node$n restarted at $(($(wc -l <"$work/acked") - 1)) acknowledged"
done
wait "$poster" || fail "the poster failed: $(tail -n 5 "$work/post.log")"
t_post=$(date +%s%N)
log "poster: $(cat "$work/post.out")"
kill -0 "$mirror" 2>/dev/null || fail "the mirror exited: $(tail -n 5 "$work/mirror.log")"

# All three up, then every node holds every acknowledged comment once.
BASE_PORT=$base THREADSYNCD=$threadsyncd "$src/deploy/local-cluster.sh" start "$cl" >>"$work/start.log"
"$threadsync" admin cluster "${srv_args[@]}" "${common[@]}"
"$soak" check "${srv_args[@]}" "${common[@]}" --acked "$work/acked" ||
    fail "the nodes do not hold every acknowledged comment exactly once"

# The mirror: stop it (SIGTERM: the batch in hand finishes), verify it
# against the cluster, count its rows.
kill -TERM "$mirror"
wait "$mirror" || fail "the mirror exited with $?: $(tail -n 5 "$work/mirror.log")"
"$threadsync" verify --dir "$work/mirror" --all "${srv_args[@]}" "${common[@]}" \
    >"$work/verify.out" 2>&1 || fail "verify: $(tail -n 5 "$work/verify.out")"
log "verify: $(tail -n 1 "$work/verify.out")"
tag=$(head -n 1 "$work/acked" | cut -d' ' -f3)
if command -v sqlite3 >/dev/null; then
    rows=$(sqlite3 "$work/mirror/mirror.db" "SELECT count(*), count(DISTINCT c.body) FROM comments c
        JOIN threads t ON t.id = c.thread_id WHERE t.key LIKE 'soak-$tag/%'")
    [[ $rows == "$count|$count" ]] || fail "the mirror holds $rows (rows|distinct) of $count"
    log "mirror database: $count comments, each once"
fi
mirror_reconnects=$(grep -c 'disconnected from' "$work/mirror.log" || true)

# Outsiders: a certificate from another CA cannot join; plain TCP on a raft
# port gets nothing back.
"$src/deploy/gen-certs.sh" "$work/evil" --node node4 127.0.0.1 >/dev/null
set +e
timeout 60 "$threadsyncd" --data-dir "$work/evil/data" --node-id 4 \
    --listen 127.0.0.1:0 --raft-listen "127.0.0.1:$((base + 31))" \
    --cert "$work/evil/node4.pem" --key "$work/evil/node4.key" --ca "$cl/certs/ca.pem" \
    --tokens "$cl/tokens" --join "${servers[0]}" --join-token-file "$cl/admin.token" \
    >"$work/evil.log" 2>&1
evil_rc=$?
set -e
[[ $evil_rc != 0 && $evil_rc != 124 ]] || fail "the node with another CA's certificate did not exit refused ($evil_rc)"
"$threadsync" admin cluster --json "${srv_args[@]}" "${common[@]}" >"$work/cluster.json"
grep -q '"id":4' "$work/cluster.json" && fail "node 4 is in the configuration"
got=$(timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$((base + 1)); printf 'hello raft' >&3; \
    timeout 3 cat <&3 | wc -c" 2>/dev/null || echo 0)
[[ ${got:-0} == 0 ]] || fail "the raft port sent $got bytes to a plain TCP peer"
log "outsiders: another CA's node refused (exit $evil_rc), plain TCP on the raft port got 0 bytes"

t1=$(date +%s%N)
log "FIGURES count=$count kills=$kills leader_kills=$leader_kills (node1 ${killed_by_node[1]}, node2 ${killed_by_node[2]}, node3 ${killed_by_node[3]}) post_s=$(((t_post - t0) / 1000000000)) total_s=$(((t1 - t0) / 1000000000)) mirror_reconnects=$mirror_reconnects $(cat "$work/post.out")"
ok=1
