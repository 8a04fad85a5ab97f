/*
 * udp: the guest's UDP tool (Debian's busybox-static has no UDP in its nc). Built static at test time
 * by test/e2e/harness/initramfs.ts.
 *
 *   udp serve PORT               answer every datagram with "udp-echo from=IP data=DATA"; log each one
 *                                to stdout as "UDP-RX from=IP:PORT data=DATA"
 *   udp send IP PORT DATA MS     send DATA, print the first reply; exit 0 on a reply, 1 on timeout
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int serve(int port) {
  int s = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = INADDR_ANY};
  if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) < 0) { perror("udp serve"); return 2; }
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

static int send_one(const char *ip, int port, const char *data, int ms) {
  int s = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(port)};
  if (s < 0 || inet_pton(AF_INET, ip, &to.sin_addr) != 1) { fprintf(stderr, "udp send: bad address\n"); return 2; }
  if (sendto(s, data, strlen(data), 0, (struct sockaddr *)&to, sizeof to) < 0) { perror("udp send"); return 1; }
  struct pollfd p = {.fd = s, .events = POLLIN};
  if (poll(&p, 1, ms) != 1) { printf("udp: no reply in %d ms\n", ms); return 1; }
  char buf[1200];
  ssize_t n = recv(s, buf, sizeof buf - 1, 0);
  if (n < 0) { perror("udp recv"); return 1; }
  buf[n] = 0;
  printf("%s\n", buf);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 3 && !strcmp(argv[1], "serve")) return serve(atoi(argv[2]));
  if (argc == 6 && !strcmp(argv[1], "send")) return send_one(argv[2], atoi(argv[3]), argv[4], atoi(argv[5]));
  fprintf(stderr, "usage: udp serve PORT | udp send IP PORT DATA TIMEOUT_MS\n");
  return 2;
}
