#!/usr/bin/env bash
# gen-certs.sh: a certificate authority and node/client certificates for a
# threadsync cluster, with the openssl CLI only.
#
#   deploy/gen-certs.sh DIR [--node NAME HOST]... [--client NAME]...
#
# DIR/ca.pem + DIR/ca.key    the CA (EC P-256, 10 years), created if absent
#                            and reused otherwise
# DIR/NAME.pem + NAME.key    per --node: serverAuth+clientAuth (nodes are both
#                            ends of cluster mTLS), SAN = HOST, 127.0.0.1, ::1,
#                            localhost, and NAME when NAME is a DNS name
#                            per --client: clientAuth, CN = NAME
# Leaf certificates last 2 years and get a random 128-bit serial. Keys are
# mode 0600, certificates 0644, DIR 0700. An existing NAME.pem is kept, never
# overwritten (delete it to reissue). Every file is made in a temporary
# directory inside DIR and moved into place, so an interrupted run leaves no
# half-written file under a real name.
#
# The embedded default (threadsyncd with no arguments) makes its own CA and
# server certificate; this script is for clusters and client certificates.
set -euo pipefail
umask 077

CA_DAYS=3650
LEAF_DAYS=730

usage() {
    echo "usage: $0 DIR [--node NAME HOST]... [--client NAME]..." >&2
    exit 2
}
die() {
    echo "gen-certs: $*" >&2
    exit 1
}

[[ $# -ge 1 && $1 != -* ]] || usage
dir=$1
shift

nodes=()   # "NAME HOST" pairs
clients=()
valid_name='^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'
while [[ $# -gt 0 ]]; do
    case $1 in
    --node)
        [[ $# -ge 3 ]] || usage
        [[ $2 =~ $valid_name && $2 != ca ]] || die "bad node name '$2' (want [A-Za-z0-9._-], not 'ca')"
        [[ $3 =~ ^[A-Za-z0-9.:-]+$ ]] || die "bad host '$3' (an IP address or a DNS name)"
        nodes+=("$2 $3")
        shift 3
        ;;
    --client)
        [[ $# -ge 2 ]] || usage
        [[ $2 =~ $valid_name && $2 != ca ]] || die "bad client name '$2' (want [A-Za-z0-9._-], not 'ca')"
        clients+=("$2")
        shift 2
        ;;
    -h | --help) usage ;;
    *) usage ;;
    esac
done

command -v openssl >/dev/null || die "openssl not found"
mkdir -p "$dir"
chmod 700 "$dir"
tmp=$(mktemp -d "$dir/.gen-certs.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

is_ip() { [[ $1 =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ || $1 == *:* ]]; }
is_dns() { [[ $1 =~ ^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$ ]]; }

newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# A config of our own, so the host's openssl.cnf defaults cannot add or
# duplicate extensions.
cat >"$tmp/req.cnf" <<'CNF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
CNF

# --- CA ---------------------------------------------------------------------
if [[ -e $dir/ca.pem && -e $dir/ca.key ]]; then
    echo "kept    $dir/ca.pem (existing CA)"
elif [[ -e $dir/ca.pem || -e $dir/ca.key ]]; then
    die "$dir has only one of ca.pem and ca.key; refusing to guess"
else
    # openssl 3.0's req has no -extfile: the CA's extensions go in its config.
    cp "$tmp/req.cnf" "$tmp/ca.cnf"
    cat >>"$tmp/ca.cnf" <<'EXT'
[v3]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
EXT
    newkey "$tmp/ca.key"
    openssl req -new -x509 -config "$tmp/ca.cnf" -key "$tmp/ca.key" -sha256 \
        -days "$CA_DAYS" -set_serial "0x$(openssl rand -hex 16)" \
        -subj "/O=threadsync/CN=threadsync CA $(openssl rand -hex 4)" \
        -extensions v3 -out "$tmp/ca.pem" 2>/dev/null ||
        die "creating the CA failed"
    chmod 600 "$tmp/ca.key"
    chmod 644 "$tmp/ca.pem"
    mv "$tmp/ca.key" "$dir/ca.key"  # key first: a stray key is harmless, a cert without it is not
    mv "$tmp/ca.pem" "$dir/ca.pem"
    echo "created $dir/ca.pem + ca.key (CA, $CA_DAYS days)"
fi

# issue NAME EKU SAN KIND
issue() {
    local name=$1 eku=$2 san=$3 kind=$4
    if [[ -e $dir/$name.pem ]]; then
        echo "kept    $dir/$name.pem (exists; delete it to reissue)"
        return
    fi
    {
        echo "[v3]"
        echo "basicConstraints = critical,CA:FALSE"
        echo "keyUsage = critical,digitalSignature"
        echo "extendedKeyUsage = $eku"
        echo "subjectKeyIdentifier = hash"
        echo "authorityKeyIdentifier = keyid:always"
        [[ -z $san ]] || echo "subjectAltName = $san"
    } >"$tmp/$name.ext"
    newkey "$tmp/$name.key"
    openssl req -new -config "$tmp/req.cnf" -key "$tmp/$name.key" \
        -subj "/O=threadsync/CN=$name" -out "$tmp/$name.csr" 2>/dev/null
    openssl x509 -req -in "$tmp/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
        -set_serial "0x$(openssl rand -hex 16)" -days "$LEAF_DAYS" -sha256 \
        -extfile "$tmp/$name.ext" -extensions v3 -out "$tmp/$name.pem" 2>/dev/null ||
        die "signing $name failed"
    openssl verify -CAfile "$dir/ca.pem" "$tmp/$name.pem" >/dev/null ||
        die "$name does not verify against $dir/ca.pem"
    chmod 600 "$tmp/$name.key"
    chmod 644 "$tmp/$name.pem"
    mv "$tmp/$name.key" "$dir/$name.key"
    mv "$tmp/$name.pem" "$dir/$name.pem"
    echo "created $dir/$name.pem + $name.key ($kind${san:+, SAN $san})"
}

for entry in "${nodes[@]+"${nodes[@]}"}"; do
    name=${entry%% *}
    host=${entry#* }
    sans=()
    for h in "$host" 127.0.0.1 ::1 localhost "$name"; do
        if is_ip "$h"; then
            s="IP:$h"
        elif is_dns "$h"; then
            s="DNS:${h,,}"
        elif [[ $h == "$host" ]]; then
            die "bad host '$h'"
        else
            continue  # a node name that is not a DNS name gets no SAN entry
        fi
        [[ " ${sans[*]+"${sans[*]}"} " == *" $s "* ]] || sans+=("$s")
    done
    san=$(IFS=,; echo "${sans[*]}")
    issue "$name" "serverAuth,clientAuth" "$san" "node"
done

for name in "${clients[@]+"${clients[@]}"}"; do
    issue "$name" "clientAuth" "" "client"
done
