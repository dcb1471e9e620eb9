#!/usr/bin/env bash
# local-cluster.sh: a three-node threadsync cluster on loopback, in one command.
#
#   deploy/local-cluster.sh [start] [DIR]   start (or restart) the three nodes
#   deploy/local-cluster.sh stop [DIR]      stop them (SIGTERM: a leader hands
#                                           over leadership before it exits)
#   deploy/local-cluster.sh status [DIR]    which nodes run, and where
#
# DIR (default ./threadsync-cluster) holds everything: certs/ (a CA and one
# node certificate per node, made by gen-certs.sh), tokens + admin.token (one
# token table for the whole cluster), nodeN/ (data directories), nodeN.log,
# nodeN.pid. Node N listens for clients on 127.0.0.1:BASE_PORT+10*(N-1) and for
# raft (mutual TLS) on the next port. Node 1 bootstraps the cluster on first
# start; nodes 2 and 3 join it (threadsyncd --join), one after the other. Later
# starts find the membership on disk and just start. rm -rf DIR starts afresh.
#
# Environment: THREADSYNCD (the binary; default build/threadsyncd next
# to this script's source tree), BASE_PORT (default 7420).
# The flags below are the configuration (loopback, ports from BASE_PORT);
# deploy/cluster/nodeN.conf are the same three nodes as config files for
# real hosts.
set -euo pipefail
umask 077

src=$(cd "$(dirname "$0")/.." && pwd)
cmd=start
if [[ $# -ge 1 && ( $1 == start || $1 == stop || $1 == status ) ]]; then
    cmd=$1
    shift
fi
[[ $# -le 1 ]] || { echo "usage: $0 [start|stop|status] [DIR]" >&2; exit 2; }
dir=${1:-threadsync-cluster}
base=${BASE_PORT:-7420}
bin=${THREADSYNCD:-$src/build/threadsyncd}
nodes=(1 2 3)

die() {
    echo "local-cluster: $*" >&2
    exit 1
}
client_port() { echo $((base + 10 * ($1 - 1))); }
raft_port() { echo $((base + 10 * ($1 - 1) + 1)); }

# The pid in nodeN.pid, if that process is still our threadsyncd.
running_pid() {
    local f=$dir/node$1.pid pid
    [[ -f $f ]] || return 1
    pid=$(<"$f")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ -r /proc/$pid/cmdline ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "threadsyncd .*--data-dir $dir/node$1 " || return 1
    echo "$pid"
}

stop_all() {
    local n pid
    for n in 3 2 1; do
        if pid=$(running_pid "$n"); then
            kill -TERM "$pid"
            for _ in $(seq 150); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            if kill -0 "$pid" 2>/dev/null; then
                echo "node$n (pid $pid) did not stop in 15 s; sending SIGKILL"
                kill -KILL "$pid"
            fi
            echo "stopped node$n (pid $pid)"
        fi
        rm -f "$dir/node$n.pid"
    done
}

status() {
    local n pid
    for n in "${nodes[@]}"; do
        if pid=$(running_pid "$n"); then
            echo "node$n  pid $pid  clients $(cat "$dir/node$n.addr" 2>/dev/null || echo '?')"
        else
            echo "node$n  not running"
        fi
    done
}

start_node() {
    local n=$1 pid
    if pid=$(running_pid "$n"); then
        echo "node$n already running (pid $pid)"
        return
    fi
    local args=(--data-dir "$dir/node$n" --node-id "$n"
        --listen "127.0.0.1:$(client_port "$n")" --raft-listen "127.0.0.1:$(raft_port "$n")"
        --cert "$dir/certs/node$n.pem" --key "$dir/certs/node$n.key" --ca "$dir/certs/ca.pem"
        --tokens "$dir/tokens" --addr-file "$dir/node$n.addr")
    if [[ $n != 1 ]]; then
        # ignored once the node is a member (its data directory says so)
        args+=(--join "127.0.0.1:$(client_port 1)" --join-token-file "$dir/admin.token")
    fi
    rm -f "$dir/node$n.addr"
    local mark
    mark=0
    [[ ! -f $dir/node$n.log ]] || mark=$(wc -l <"$dir/node$n.log")
    nohup "$bin" "${args[@]}" </dev/null >>"$dir/node$n.log" 2>&1 &
    pid=$!
    echo "$pid" >"$dir/node$n.pid"
    for _ in $(seq 300); do
        [[ -s $dir/node$n.addr ]] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if [[ ! -s $dir/node$n.addr ]]; then
        tail -n 20 "$dir/node$n.log" >&2
        die "node$n did not start (log above)"
    fi
    if [[ $n != 1 ]]; then
        # only the lines of this run count
        local pattern="event=(cluster_joined|join_skipped)"
        for _ in $(seq 600); do
            tail -n "+$((mark + 1))" "$dir/node$n.log" | grep -Eq "$pattern" && break
            if ! kill -0 "$pid" 2>/dev/null; then
                tail -n 20 "$dir/node$n.log" >&2
                die "node$n exited before joining (log above)"
            fi
            sleep 0.1
        done
        tail -n "+$((mark + 1))" "$dir/node$n.log" | grep -Eq "$pattern" ||
            die "node$n did not join within 60 s (see $dir/node$n.log)"
    fi
    echo "started node$n (pid $pid) clients 127.0.0.1:$(client_port "$n") raft 127.0.0.1:$(raft_port "$n")"
}

case $cmd in
stop)
    [[ -d $dir ]] || die "no cluster directory $dir"
    dir=$(cd "$dir" && pwd)
    stop_all
    exit 0
    ;;
status)
    [[ -d $dir ]] || die "no cluster directory $dir"
    dir=$(cd "$dir" && pwd)
    status
    exit 0
    ;;
esac

[[ -x $bin ]] || die "no threadsyncd at $bin: build first (cmake -S . -B build && cmake --build build) or set THREADSYNCD"
command -v openssl >/dev/null || die "openssl not found"
command -v sha256sum >/dev/null || die "sha256sum not found"
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

"$src/deploy/gen-certs.sh" "$dir/certs" --node node1 127.0.0.1 --node node2 127.0.0.1 \
    --node node3 127.0.0.1 --client admin >/dev/null

if [[ ! -f $dir/tokens ]]; then
    # same shape as threadsyncd's own tokens: ts_ + 32 random bytes, base64url
    token="ts_$(openssl rand -base64 32 | tr '+/' '-_' | tr -d '=\n')"
    hash=$(printf %s "$token" | sha256sum | cut -d' ' -f1)
    printf '%s\n' "$token" >"$dir/admin.token.tmp"
    mv "$dir/admin.token.tmp" "$dir/admin.token"
    printf '# written by local-cluster.sh\nadmin admin %s\n' "$hash" >"$dir/tokens.tmp"
    mv "$dir/tokens.tmp" "$dir/tokens"
fi

for n in "${nodes[@]}"; do
    start_node "$n"
done

servers="127.0.0.1:$(client_port 1),127.0.0.1:$(client_port 2),127.0.0.1:$(client_port 3)"
cat <<EOF

threadsync cluster of three nodes is up (files in $dir):
  node1  clients 127.0.0.1:$(client_port 1)   raft 127.0.0.1:$(raft_port 1)   log $dir/node1.log
  node2  clients 127.0.0.1:$(client_port 2)   raft 127.0.0.1:$(raft_port 2)   log $dir/node2.log
  node3  clients 127.0.0.1:$(client_port 3)   raft 127.0.0.1:$(raft_port 3)   log $dir/node3.log
  CA       $dir/certs/ca.pem   (clients verify the nodes with it)
  token    $dir/admin.token    (admin; add more with threadsync admin or edit $dir/tokens)

Reach it with the CLI, e.g.:
  threadsync post --server $servers \\
      --ca $dir/certs/ca.pem --token-file $dir/admin.token \\
      --thread demo/hello --name Ann --body 'First!'
  threadsync admin cluster --server 127.0.0.1:$(client_port 1) --ca $dir/certs/ca.pem --token-file $dir/admin.token

Kill any one node (kill -9 \$(cat $dir/node2.pid)) and the others go on;
start it again with: $0 start $dir
Stop all three:      $0 stop $dir
EOF
