/*
 * ts_addr: endpoint strings. See ts_addr.h.
 */
#include "ts_addr.h"

#include "ts_err.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ts_addr_parse(const char *s, char *host, size_t host_size, uint16_t *port)
{
    const char *colon, *h = s;
    size_t hlen;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return TS_E_INVALID_ARGUMENT;
        h = s + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return TS_E_INVALID_ARGUMENT;
        hlen = (size_t)(colon - s);
        if (memchr(s, ':', hlen)) /* unbracketed IPv6 is ambiguous */
            return TS_E_INVALID_ARGUMENT;
    }
    if (hlen == 0 || hlen >= host_size)
        return TS_E_INVALID_ARGUMENT;
    char *end;
    const char *p = colon + 1;
    if (*p < '0' || *p > '9')
        return TS_E_INVALID_ARGUMENT;
    unsigned long v = strtoul(p, &end, 10);
    if (*end != '\0' || v > 65535)
        return TS_E_INVALID_ARGUMENT;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (uint16_t)v;
    return TS_OK;
}

int ts_addr_numeric(const char *host, uint16_t port, struct sockaddr_storage *out)
{
    memset(out, 0, sizeof(*out));
    struct sockaddr_in *in4 = (struct sockaddr_in *)out;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)out;
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
        return TS_OK;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        return TS_OK;
    }
    return TS_E_INVALID_ARGUMENT;
}

void ts_addr_format(const struct sockaddr *sa, char *out, size_t size)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in4->sin_addr, ip, sizeof(ip));
        snprintf(out, size, "%s:%u", ip, ntohs(in4->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
        snprintf(out, size, "[%s]:%u", ip, ntohs(in6->sin6_port));
    } else {
        snprintf(out, size, "?");
    }
}
