/* peer.c — the peer address of a TCP connection (peer.h). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include "lib/peer.h"

void peer_describe(uv_tcp_t *tcp, bool local, struct peer *ret)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    memset(ret, 0, sizeof *ret);
    strcpy(ret->host, "?");
    if ((local ? uv_tcp_getsockname(tcp, (struct sockaddr *)&ss, &len)
               : uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &len)) != 0)
        return;
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        uv_ip4_name(a, ret->host, sizeof ret->host);
        ret->port = ntohs(a->sin_port);
        ret->loopback = (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        ret->port = ntohs(a->sin6_port);
        static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(a->sin6_addr.s6_addr, v4mapped, 12) == 0) {
            /* An IPv4 client of a dual-stack listener: shown as IPv4, as RabbitMQ does. */
            inet_ntop(AF_INET, a->sin6_addr.s6_addr + 12, ret->host, sizeof ret->host);
            ret->loopback = a->sin6_addr.s6_addr[12] == 127;
        } else {
            uv_ip6_name(a, ret->host, sizeof ret->host);
            ret->loopback = IN6_IS_ADDR_LOOPBACK(&a->sin6_addr);
        }
    }
}
