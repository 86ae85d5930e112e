/*
 * What one read of a small TCP segment on loopback costs the reader, with and without the ACK the read sends
 * (docs/DATAPATH.md "Native data plane: CPU per token"): a connected loopback pair, the writer (TCP_NODELAY) writes a
 * 350-byte segment, the reader takes it; the reader's CPU (CLOCK_THREAD_CPUTIME_ID) around the call, per call, over N
 * segments. Modes: `read` (as native/relay.c reads the engine: read(2); Linux ACKs a small pushed segment as it is
 * read), `recv` (recv(2), MSG_DONTWAIT), `noack` (TCP_QUICKACK 0 set before each recv, inside the timed span: the
 * read sends no ACK, the delayed-ACK timer does later).
 *
 *   cc -O2 -Wall -Wextra -Werror -o read-ack scripts/read-ack.c && ./read-ack read 50000 && ./read-ack noack 50000
 */
#define _GNU_SOURCE
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* a connected loopback TCP pair: sv[0] the accepted end (the reader), sv[1] the connecting one (the writer); 0, or -1 */
static int tcp_pair(int sv[2]) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t al = sizeof a;
  int one = 1, l = socket(AF_INET, SOCK_STREAM, 0);
  if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 1) || getsockname(l, (struct sockaddr *)&a, &al)) return -1;
  sv[1] = socket(AF_INET, SOCK_STREAM, 0);
  if (sv[1] < 0 || connect(sv[1], (struct sockaddr *)&a, sizeof a)) return -1;
  sv[0] = accept(l, NULL, NULL);
  close(l);
  return sv[0] < 0 || setsockopt(sv[1], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) ? -1 : 0;
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "read";
  int n = argc > 2 ? atoi(argv[2]) : 50000, s[2], zero = 0;
  int noack = strcmp(mode, "noack") == 0, rd = strcmp(mode, "read") == 0;
  if ((!noack && !rd && strcmp(mode, "recv") != 0) || n <= 0 || tcp_pair(s)) return 2;
  static char msg[350], buf[16384];
  memset(msg, 'a', sizeof msg);
  double ns = 0;
  for (int i = 0; i < n; i++) {
    if (write(s[1], msg, sizeof msg) != (ssize_t)sizeof msg) return 2;
    struct timespec a, b;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
    if (noack) setsockopt(s[0], IPPROTO_TCP, TCP_QUICKACK, &zero, sizeof zero);
    ssize_t r = rd ? read(s[0], buf, sizeof buf) : recv(s[0], buf, sizeof buf, MSG_DONTWAIT);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
    if (r != (ssize_t)sizeof msg) return 3;
    ns += (double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec);
  }
  printf("%s: %.0f ns per call over %d segments\n", mode, ns / n, n);
  return 0;
}
