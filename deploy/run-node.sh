#!/usr/bin/env bash
# Quick start, command one: install what is missing, build, and run a
# one-node threadsyncd AND a web edge (`threadsync web`) with embedded
# defaults in the current directory:
#   - the node: data in ./threadsync-data, clients on 127.0.0.1:7420;
#   - the web edge: mirror in ./threadsync-web, HTTP on 127.0.0.1:7480, posting
#     with its own gateway poster token (./threadsync-data/web-poster.token)
#     and mirroring with a reader token (./threadsync-data/web-reader.token),
#     both made on first start;
#   - a thread `welcome` with a first comment, so the printed page has
#     something to reply to.
# It prints the page's URL: open it in two tabs, post in one, watch the other.
# Ctrl-C (or SIGTERM) stops both; if either exits, the other is stopped.
#
# Extra arguments go to threadsyncd. Environment (for tests and odd setups):
#   TS_BIN_DIR     use threadsyncd and threadsync from this directory; skips
#                  installing and building
#   TS_WEB_LISTEN  the web edge's HOST:PORT (default 127.0.0.1:7480; port 0:
#                  the kernel picks, the URL printed is the real one)
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
if [ -n "${TS_BIN_DIR:-}" ]; then
    bin=$TS_BIN_DIR
else
    "$src/deploy/install-deps.sh"
    cmake -S "$src" -B "$src/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF >/dev/null
    cmake --build "$src/build" -j"$(nproc)" --target threadsyncd threadsync >/dev/null
    bin=$src/build
fi
data=./threadsync-data
web_dir=./threadsync-web
web_listen=${TS_WEB_LISTEN:-127.0.0.1:7480}
thread=welcome

node_pid=
web_pid=
stop() {
    trap - INT TERM EXIT
    # Web edge first: it is a client of the node.
    [ -n "$web_pid" ] && kill -TERM "$web_pid" 2>/dev/null || true
    [ -n "$web_pid" ] && wait "$web_pid" 2>/dev/null || true
    [ -n "$node_pid" ] && kill -TERM "$node_pid" 2>/dev/null || true
    [ -n "$node_pid" ] && wait "$node_pid" 2>/dev/null || true
}
trap 'stop; exit 0' INT TERM
trap stop EXIT

# Waits (at most 60 s) until "$@" succeeds or the process $1 is gone.
wait_until() {
    local pid=$1
    shift
    for _ in $(seq 600); do
        "$@" && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

addr_file=$data/node.addr
rm -f "$addr_file"
# Each child in its own session: a terminal's Ctrl-C reaches this script only,
# which stops them in order (the edge, then the node).
setsid "$bin/threadsyncd" --addr-file "$addr_file" "$@" &
node_pid=$!
if ! wait_until "$node_pid" test -s "$addr_file"; then
    echo "run-node.sh: threadsyncd did not start" >&2
    exit 1
fi
addr=$(cat "$addr_file")
cli() { "$bin/threadsync" --server "$addr" "$@"; }

# First start: the web edge's own tokens, made through the node (replicated).
make_token() { # FILE ROLE NAME [--gateway]
    local file=$1 role=$2 name=$3
    shift 3
    [ -s "$file" ] && return 0
    local out
    out=$(cli admin token add --role "$role" --name "$name-$(date +%s)" "$@")
    (umask 077 && printf '%s\n' "$(sed -n 's/.* token=\([^ ]*\).*/\1/p' <<<"$out")" >"$file")
}
make_token "$data/web-poster.token" poster web-poster --gateway
make_token "$data/web-reader.token" reader web-reader
if ! cli get --thread "$thread" >/dev/null 2>&1; then
    cli post --thread "$thread" --title "Welcome to threadsync" --name threadsync \
        --body "Welcome! Reply below; a second tab of this page shows your reply live." >/dev/null
fi

mkdir -p "$web_dir"
web_log=$web_dir/web.log
: >"$web_log"
setsid "$bin/threadsync" web --server "$addr" --dir "$web_dir" --listen "$web_listen" \
    --token-file "$data/web-reader.token" --post-token-file "$data/web-poster.token" \
    --all >>"$web_log" 2>&1 &
web_pid=$!
web_url() { grep -o 'web edge on http://[^ ]*/t/' "$web_log" | head -n1 | sed 's/^web edge on //'; }
if ! wait_until "$web_pid" grep -q 'web edge on http://' "$web_log"; then
    echo "run-node.sh: the web edge did not start:" >&2
    cat "$web_log" >&2
    exit 1
fi
# The edge listens before its first sync has stored the thread, and until
# then the page is a 404: the URL is printed once the page answers 200, so
# a newcomer who opens it at once gets the page.
page_ok() { # http://HOST:PORT/t/
    local hp=${1#http://} line
    hp=${hp%%/*}
    { exec 9<>"/dev/tcp/${hp%:*}/${hp##*:}"; } 2>/dev/null || return 1
    printf 'GET /t/%s HTTP/1.0\r\nHost: %s\r\n\r\n' "$thread" "$hp" >&9
    IFS= read -r line <&9 || line=
    exec 9<&-
    [[ $line == HTTP/1.?' 200'* ]]
}
if ! wait_until "$web_pid" page_ok "$(web_url)"; then
    echo "run-node.sh: the web edge did not serve $(web_url)$thread:" >&2
    cat "$web_log" >&2
    exit 1
fi
cat <<EOF

threadsync is running: a node on $addr and a web edge (log: $web_log).
Open this page in two browser tabs, post a reply in one, watch the other:

    $(web_url)$thread

Ctrl-C stops both.
EOF
wait -n "$node_pid" "$web_pid" || true
echo "run-node.sh: a process exited; stopping" >&2
exit 1
