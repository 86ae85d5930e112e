/*
 * A TCP relay in C for scripts/relay-floor.ts: one thread, one epoll set for all connections, each accepted
 * connection paired with its own connection to the engine, bytes passed on both ways as read (no HTTP parse), as the
 * script's Node relays do. "copy" moves bytes through a user buffer (read, write); "splice" moves them through a pipe
 * with splice(2), never into user space. Prints its port on stdout once listening.
 *   gcc -O2 -Wall -Wextra -o relay-floor scripts/relay-floor.c && ./relay-floor <enginePort> [copy|splice]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF 65536

/* one direction's source: the bytes read from fd and not yet written to peer's fd (in buf, or in the pipe) */
struct side {
  int fd;
  struct side *peer;
  struct pair *pair;
  int pipe[2];      /* splice mode: the bytes in flight */
  size_t off, len;  /* copy mode: buf[off, len); splice mode: len bytes in the pipe */
  int eof;          /* fd read its end; peer shut down for writes once len is 0 */
  uint32_t events;  /* the interest registered for fd */
  char buf[BUF];
};
struct pair {
  struct side s[2];
  int closed;
  struct pair *next_free;
};

static int ep, use_splice;
static struct sockaddr_in engine;
static struct pair *to_free;

static void die(const char *what) {
  perror(what);
  exit(1);
}

static void close_pair(struct pair *p) {
  if (p->closed) return;
  p->closed = 1;
  for (int i = 0; i < 2; i++) {
    close(p->s[i].fd);  /* close() also takes the fd out of the epoll set */
    if (use_splice) {
      close(p->s[i].pipe[0]);
      close(p->s[i].pipe[1]);
    }
  }
  p->next_free = to_free;  /* freed after the batch of events: a later event in it may name this pair */
  to_free = p;
}

/* write what s holds to its peer's fd; -1 when the pair failed */
static int flush(struct side *s) {
  while (s->len > (use_splice ? 0 : s->off)) {
    ssize_t n = use_splice
                    ? splice(s->pipe[0], NULL, s->peer->fd, NULL, s->len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK)
                    : send(s->peer->fd, s->buf + s->off, s->len - s->off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) return errno == EAGAIN ? 0 : -1;
    if (use_splice) s->len -= (size_t)n;
    else s->off += (size_t)n;
  }
  s->off = s->len = 0;
  if (s->eof) shutdown(s->peer->fd, SHUT_WR);
  return 0;
}

/* read what s's fd has (while its last read is written out), pass it on; -1 when the pair failed */
static int pump(struct side *s) {
  while (!s->eof && s->len == 0) {
    ssize_t n = use_splice ? splice(s->fd, NULL, s->pipe[1], NULL, BUF, SPLICE_F_MOVE | SPLICE_F_NONBLOCK)
                           : read(s->fd, s->buf, BUF);
    if (n < 0) return errno == EAGAIN ? 0 : -1;
    if (n == 0) s->eof = 1;
    s->len = (size_t)n;
    if (flush(s) < 0) return -1;
  }
  return 0;
}

/* the interest each fd needs: input while its bytes are out, output while its peer's are held */
static void watch(struct side *s) {
  uint32_t want = (s->eof || s->len ? 0 : EPOLLIN) | (s->peer->len ? EPOLLOUT : 0);
  if (want == s->events) return;
  struct epoll_event ev = {.events = want, .data.ptr = s};
  if (epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev) < 0) die("epoll_ctl");
  s->events = want;
}

static void accept_all(int lfd) {
  for (;;) {
    int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c < 0) return;
    int e = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    /* a blocking connect: on loopback it completes at once */
    if (e < 0 || connect(e, (struct sockaddr *)&engine, sizeof engine) < 0) {
      if (e >= 0) close(e);
      close(c);
      continue;
    }
    fcntl(e, F_SETFL, O_NONBLOCK);
    struct pair *p = calloc(1, sizeof *p);
    if (!p) die("calloc");
    int fds[2] = {c, e};
    for (int i = 0; i < 2; i++) {
      struct side *s = &p->s[i];
      s->fd = fds[i];
      s->peer = &p->s[1 - i];
      s->pair = p;
      setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      if (use_splice && pipe2(s->pipe, O_NONBLOCK | O_CLOEXEC) < 0) die("pipe2");
      s->events = EPOLLIN;
      struct epoll_event ev = {.events = EPOLLIN, .data.ptr = s};
      if (epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev) < 0) die("epoll_ctl");
    }
  }
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s <enginePort> [copy|splice]\n", argv[0]);
    return 2;
  }
  use_splice = argc > 2 && strcmp(argv[2], "splice") == 0;
  signal(SIGPIPE, SIG_IGN);
  engine.sin_family = AF_INET;
  engine.sin_port = htons((uint16_t)atoi(argv[1]));
  engine.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t al = sizeof a;
  if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 512) < 0) die("listen");
  if (getsockname(lfd, (struct sockaddr *)&a, &al) < 0) die("getsockname");
  printf("%d\n", ntohs(a.sin_port));
  fflush(stdout);

  ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL}, evs[64];
  if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) < 0) die("epoll");
  for (;;) {
    int n = epoll_wait(ep, evs, 64, -1);
    if (n < 0 && errno != EINTR) die("epoll_wait");
    for (int i = 0; i < n; i++) {
      struct side *s = evs[i].data.ptr;
      if (!s) {
        accept_all(lfd);
        continue;
      }
      if (s->pair->closed) continue;
      /* output first (the peer's held bytes), then input; errors show as a failed read or write, a hang-up after
         the end was read as the pair's end */
      uint32_t e = evs[i].events;
      int bad = (e & EPOLLOUT && flush(s->peer) < 0) || (e & (EPOLLIN | EPOLLHUP | EPOLLERR) && pump(s) < 0) ||
                (e & (EPOLLHUP | EPOLLERR) && s->eof);
      if (bad || (s->eof && s->peer->eof && !s->len && !s->peer->len)) {
        close_pair(s->pair);
        continue;
      }
      watch(s);
      watch(s->peer);
    }
    while (to_free) {
      struct pair *p = to_free;
      to_free = p->next_free;
      free(p);
    }
  }
}
