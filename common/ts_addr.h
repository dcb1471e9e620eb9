/*
 * ts_addr: "host:port" strings, as used by every flag, config key and
 * protocol field that names an endpoint. IPv6 literals are bracketed:
 * "[::1]:7420".
 */
#ifndef TS_ADDR_H
#define TS_ADDR_H

#include <stddef.h>
#include <stdint.h>

#include <sys/socket.h>

/* Splits s into host (without brackets, NUL-terminated, at most host_size
 * bytes with the NUL) and port. TS_E_INVALID_ARGUMENT when malformed:
 * no colon, empty host, port not a number in 0..65535. */
int ts_addr_parse(const char *s, char *host, size_t host_size, uint16_t *port);

/* Resolves a numeric host and port into a sockaddr (no DNS).
 * TS_E_INVALID_ARGUMENT when host is not an IPv4 or IPv6 literal. */
int ts_addr_numeric(const char *host, uint16_t port, struct sockaddr_storage *out);

/* Formats a sockaddr as "host:port" ("[v6]:port"). */
void ts_addr_format(const struct sockaddr *sa, char *out, size_t size);

#endif
