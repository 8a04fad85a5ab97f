/*
 * nettool: the guest's network tool for what Debian's busybox-static lacks (its nc has no UDP, and it
 * has no packet capture). Built static at test time by test/e2e/harness/initramfs.ts.
 *
 *   nettool udp-serve PORT              answer every datagram with "udp-echo from=IP data=DATA" and log
 *                                       it to stdout as "UDP-RX from=IP:PORT data=DATA"
 *   nettool udp-send IP PORT DATA MS    send DATA, print the first reply; exit 0 on a reply, 1 without
 *   nettool sniff IFNAME                log every IPv4 packet IFNAME receives (not those it sends), as
 *                                       "IP-RX src=IP dst=IP proto=N", before the guest's IP stack or
 *                                       any socket sees it (AF_PACKET, packet(7))
 */
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int udp_serve(int port) {
  int s = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = INADDR_ANY};
  if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) < 0) { perror("udp-serve"); return 2; }
  setvbuf(stdout, NULL, _IOLBF, 0);
  for (;;) {
    char buf[1024], reply[1200], ip[INET_ADDRSTRLEN];
    struct sockaddr_in from;
    socklen_t len = sizeof from;
    ssize_t n = recvfrom(s, buf, sizeof buf - 1, 0, (struct sockaddr *)&from, &len);
    if (n < 0) continue;
    buf[n] = 0;
    inet_ntop(AF_INET, &from.sin_addr, ip, sizeof ip);
    printf("UDP-RX from=%s:%d data=%s\n", ip, ntohs(from.sin_port), buf);
    int m = snprintf(reply, sizeof reply, "udp-echo from=%s data=%s", ip, buf);
    sendto(s, reply, (size_t)m, 0, (struct sockaddr *)&from, len);
  }
}

static int udp_send(const char *ip, int port, const char *data, int ms) {
  int s = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(port)};
  if (s < 0 || inet_pton(AF_INET, ip, &to.sin_addr) != 1) { fprintf(stderr, "udp-send: bad address\n"); return 2; }
  if (sendto(s, data, strlen(data), 0, (struct sockaddr *)&to, sizeof to) < 0) { perror("udp-send"); return 1; }
  struct pollfd p = {.fd = s, .events = POLLIN};
  if (poll(&p, 1, ms) != 1) { printf("udp-send: no reply in %d ms\n", ms); return 1; }
  char buf[1200];
  ssize_t n = recv(s, buf, sizeof buf - 1, 0);
  if (n < 0) { perror("udp-send: recv"); return 1; }
  buf[n] = 0;
  printf("%s\n", buf);
  return 0;
}

static int sniff(const char *ifname) {
  int s = socket(AF_PACKET, SOCK_DGRAM, htons(ETH_P_IP));
  struct sockaddr_ll a = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_IP), .sll_ifindex = (int)if_nametoindex(ifname)};
  if (s < 0 || a.sll_ifindex == 0 || bind(s, (struct sockaddr *)&a, sizeof a) < 0) { perror("sniff"); return 2; }
  setvbuf(stdout, NULL, _IOLBF, 0);
  for (;;) {
    unsigned char buf[2048];
    struct sockaddr_ll from;
    socklen_t len = sizeof from;
    ssize_t n = recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&from, &len);
    if (n < (ssize_t)sizeof(struct iphdr) || from.sll_pkttype == PACKET_OUTGOING) continue;
    const struct iphdr *ip = (const struct iphdr *)buf;
    char src[INET_ADDRSTRLEN], dst[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &ip->saddr, src, sizeof src);
    inet_ntop(AF_INET, &ip->daddr, dst, sizeof dst);
    printf("IP-RX src=%s dst=%s proto=%d\n", src, dst, ip->protocol);
  }
}

int main(int argc, char **argv) {
  if (argc == 3 && !strcmp(argv[1], "udp-serve")) return udp_serve(atoi(argv[2]));
  if (argc == 6 && !strcmp(argv[1], "udp-send")) return udp_send(argv[2], atoi(argv[3]), argv[4], atoi(argv[5]));
  if (argc == 3 && !strcmp(argv[1], "sniff")) return sniff(argv[2]);
  fprintf(stderr, "usage: nettool udp-serve PORT | udp-send IP PORT DATA TIMEOUT_MS | sniff IFNAME\n");
  return 2;
}
