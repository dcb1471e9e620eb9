# soak_lib.sh: what the soak scripts share (sourced, not run).
#
#   soak_log MSG...          a timestamped line on stdout
#   soak_fail MSG...         says FAILED on stderr and exits 1
#   soak_finish DIR OK       removes DIR when OK is 1 (unless TS_SOAK_KEEP=1),
#                            else says where the files are
#   soak_pick_base           prints a base port B with B, B+1, B+10, B+11,
#                            B+20 and B+21 free now (three nodes' client and
#                            raft ports); fails the soak when none is found
soak_log() { echo "soak: $(date +%T.%N | cut -c1-12) $*"; }
soak_fail() {
    echo "soak: FAILED: $*" >&2
    exit 1
}
soak_finish() {
    if [[ $2 == 1 && ${TS_SOAK_KEEP:-0} != 1 ]]; then
        rm -rf "$1"
    else
        echo "soak: files kept in $1"
    fi
}
soak_port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# A race with other programs is possible but unlikely in this range.
soak_pick_base() {
    local b
    for _ in $(seq 50); do
        b=$((20000 + (RANDOM % 2000) * 10))
        if soak_port_free $b && soak_port_free $((b + 1)) && soak_port_free $((b + 10)) &&
            soak_port_free $((b + 11)) && soak_port_free $((b + 20)) && soak_port_free $((b + 21)); then
            echo "$b"
            return 0
        fi
    done
    soak_fail "no free block of ports"
}
