# shellcheck shell=bash
# Sourced by the bench scripts. free_port: a port below the kernel's
# ephemeral range that no socket uses, in any state. The scenarios open tens
# of thousands of client connections, and a port one of them holds as its
# local port cannot be listened on: a node of a later scenario failed so
# ("address already in use") when ports were drawn from 20000-39999.
TS_BENCH_EPHEMERAL_LOW=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
[ "$TS_BENCH_EPHEMERAL_LOW" -gt 11000 ] || TS_BENCH_EPHEMERAL_LOW=32768
free_port() {
    local p
    while :; do
        p=$((10000 + RANDOM % (TS_BENCH_EPHEMERAL_LOW - 10000)))
        if ! ss -tanH "sport = :$p" 2>/dev/null | grep -q .; then
            echo "$p"
            return
        fi
    done
}
