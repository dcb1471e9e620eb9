# shellcheck shell=bash
# Sourced by the single-node measurements (profile_ingest.sh,
# ingest_trace.sh): one fresh threadsyncd on loopback with its limits off.
#
#   NODE_CMD=(... /path/to/threadsyncd)   # the binary, after any wrapper (env, valgrind)
#   bench_node_start DIR LOG_LEVEL [FLAGS...]
#
# writes DIR/reader.token and DIR/poster.token (a reader's and a gateway
# poster's) and the node's DIR/tokens, starts the node with its data in
# DIR/data, its address in DIR/addr, its log in DIR/server.log and FLAGS
# last, sets NODE_PID and an EXIT trap that kills it, and returns once it
# listens and has elected itself; if it dies first, prints its log and
# exits the script.
# shellcheck source=bench/free_port.sh
. "$(dirname "${BASH_SOURCE[0]}")/free_port.sh"

bench_node_start() {
    local dir=$1 level=$2 reader poster
    shift 2
    reader=$(openssl rand -hex 24) poster=$(openssl rand -hex 24)
    printf '%s\n' "$reader" >"$dir/reader.token"
    printf '%s\n' "$poster" >"$dir/poster.token"
    printf 'reader bench-reader %s\nposter bench-poster %s gateway\n' \
        "$(printf '%s' "$reader" | sha256sum | cut -d' ' -f1)" \
        "$(printf '%s' "$poster" | sha256sum | cut -d' ' -f1)" >"$dir/tokens"
    chmod 600 "$dir"/tokens "$dir"/*.token
    "${NODE_CMD[@]}" --data-dir "$dir/data" --listen 127.0.0.1:0 \
        --raft-listen "127.0.0.1:$(free_port)" --tokens "$dir/tokens" --rate-author off \
        --rate-token off --max-conns-per-addr off --metrics-listen "" --addr-file "$dir/addr" \
        --log-level "$level" "$@" 2>"$dir/server.log" &
    NODE_PID=$!
    trap 'kill $NODE_PID 2>/dev/null || true' EXIT
    for _ in $(seq 1 600); do
        [ -s "$dir/addr" ] && break
        kill -0 $NODE_PID 2>/dev/null || {
            cat "$dir/server.log" >&2
            exit 1
        }
        sleep 0.1
    done
    sleep 2 # the one-node cluster elects itself
}
