/*
 * ts_certgen: the embedded default's certificates (docs/DESIGN.md,
 * "Embedded default"): a local CA and a server certificate it signed, created in the
 * data directory on first start, plus client/node certificates from that CA
 * for cluster mTLS.
 *
 * Invariants: every key and certificate is written with ts_file_write_atomic
 * and mode 0600; a key is always written before its certificate, so a crash
 * can leave at most a key without its certificate, which the next call
 * completes by issuing a certificate for that key. Keys are EC P-256,
 * signatures ECDSA-SHA256, serials 128 random bits.
 *
 * The server certificate carries extendedKeyUsage serverAuth and clientAuth:
 * the node presents it on the client port and on both ends of the raft
 * port's mutual TLS (ts_raft_tls). One made before clientAuth was added
 * serves clients but cannot take part in a multi-node cluster; delete
 * server.pem to have it reissued.
 *
 * Load: called once at start (a few milliseconds of key generation); not on
 * any hot path, blocking file I/O.
 */
#ifndef TS_CERTGEN_H
#define TS_CERTGEN_H

#include <stddef.h>

#define TS_CERTGEN_PATH_MAX 4096
#define TS_CERTGEN_CA_DAYS 3650
#define TS_CERTGEN_LEAF_DAYS 730

struct ts_certgen_paths {
    char ca_cert[TS_CERTGEN_PATH_MAX];     /* dir/ca.pem */
    char ca_key[TS_CERTGEN_PATH_MAX];      /* dir/ca.key */
    char server_cert[TS_CERTGEN_PATH_MAX]; /* dir/server.pem */
    char server_key[TS_CERTGEN_PATH_MAX];  /* dir/server.key */
    int created;                           /* 1 when this call wrote any of the four files */
};

/* Makes sure dir holds ca.key, ca.pem, server.key and server.pem; creates dir
 * (mode 0700, one level) when missing. hosts[0..n_hosts) are the names and
 * addresses the server is reached by: numeric IPv4/IPv6 addresses become IP
 * SAN entries, anything else a DNS entry; 127.0.0.1, ::1 and localhost are
 * always included, duplicates dropped. Existing files are left as they are
 * (their SANs are not compared with hosts); the server certificate is
 * reissued only when it is missing or the CA key had to be created anew.
 * out (OUT, caller-owned) gets the four paths and whether anything was made.
 * Returns TS_OK, TS_E_INVALID_ARGUMENT (a host that is neither an address nor
 * a DNS name, or a path too long), TS_E_CONFIG (a certificate without its key,
 * or files that do not parse or do not belong together), TS_E_IO, TS_E_TLS
 * (OpenSSL failed) or TS_E_NOMEM. Details are logged. */
int ts_certgen_ensure(const char *dir, const char *const *hosts, size_t n_hosts,
                      struct ts_certgen_paths *out);

/* Issues a certificate with common name cn, signed by the CA in ca_cert /
 * ca_key (PEM files), for a client or a cluster node: extendedKeyUsage
 * clientAuth and serverAuth, plus a DNS SAN equal to cn when cn is a valid
 * DNS name (so a node's name can be checked like a host name). Writes a new
 * key to key_out, then the certificate to cert_out, both mode 0600. Refuses
 * with TS_E_EXISTS when cert_out exists (an existing key_out without its
 * certificate is the remnant of a crash and is replaced). Other returns as
 * for ts_certgen_ensure; cn must be 1..64 printable ASCII characters. */
int ts_certgen_client(const char *ca_cert, const char *ca_key, const char *cn, const char *cert_out,
                      const char *key_out);

#endif
