/* peer.h — who is on the other end of an accepted TCP socket: address text, port, and whether
 * it is a loopback address (127.0.0.0/8, ::1, or IPv4-mapped 127.x), which decides where users
 * such as guest may log in from. Owns nothing. */
#ifndef WARREN_PEER_H
#define WARREN_PEER_H
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

struct peer {
    char host[48]; /* "127.0.0.1", "::1" (IPv4-mapped addresses as IPv4); "?" when unknown */
    int port;      /* 0 when unknown */
    bool loopback;
};

/* Describes the peer of tcp (or, when local, our own end) into *ret (host "?" when the
 * address cannot be had). */
void peer_describe(uv_tcp_t *tcp, bool local, struct peer *ret);

#endif
