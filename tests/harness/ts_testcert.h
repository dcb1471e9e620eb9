/*
 * ts_testcert: throw-away certificates for tests, made with OpenSSL's API at
 * test time (no openssl(1), no files in the tree that expire).
 *
 * ts_testcert_make(dir) writes into the existing directory dir:
 *   ca.pem        a self-signed EC P-256 CA ("threadsync test CA")
 *   server.pem    a leaf signed by that CA, SAN DNS:localhost and
 *                 IP:127.0.0.1, serverAuth + clientAuth, valid one day
 *   server.key    its private key (PEM, unencrypted)
 *   other-ca.pem  a second, unrelated self-signed CA: a client that trusts
 *                 only it must refuse the server
 * Returns 0 on success, -1 on failure (an OpenSSL or I/O error).
 *
 * ts_testcert_dir() makes a fresh directory with mkdtemp under $TMPDIR (or
 * /tmp) and fills it: the path is written into buf (size >= 64) and returned,
 * or NULL. ts_testcert_remove(dir) deletes the four files and the directory.
 */
#ifndef TS_TESTCERT_H
#define TS_TESTCERT_H

#include <stddef.h>

int ts_testcert_make(const char *dir);
char *ts_testcert_dir(char *buf, size_t size);
void ts_testcert_remove(const char *dir);

#endif
