/*
 * A native body relay for scripts/relay-floor.ts's hand-off relay, loaded through koffi: JavaScript reads a request,
 * writes it to the engine and hands the two sockets' fds over (body_relay_add); one native thread, one epoll set for
 * all streams, moves the engine's response to the client as read, follows its framing (status line, headers,
 * chunked transfer coding or a content-length) to the response's end, keeps the last SSE event that carries a
 * usage, and reports each stream's end as one line on a pipe JavaScript reads:
 *   "<id> <status> <body bytes> <last usage event's JSON, or nothing>\n"
 * status: the engine's HTTP status, or -1 (the engine's connection failed or ended first), -2 (the client's
 * connection failed or closed: the request is to be cancelled). The fds stay JavaScript's: they are taken out of the
 * epoll set before the line is written, never closed here; JavaScript must not read them until the line comes.
 *   gcc -O2 -Wall -Wextra -shared -fPIC -pthread -o body-relay.so scripts/body-relay.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF 65536
#define LINE 3072 /* an SSE line kept whole up to this size; the report line stays under PIPE_BUF (atomic) */
#define HEAD 4096

enum state { S_HEAD, S_SIZE, S_DATA, S_DATA_END, S_TRAILER, S_LENGTH, S_DONE };

struct stream;
struct end {
  struct stream *st;
  int client;
};
struct stream {
  int id, efd, cfd;
  struct end ends[2];     /* epoll's data: the engine's end, the client's */
  uint32_t eev, cev;      /* the interest registered for efd, cfd */
  size_t off, len;        /* buf[off, len): read from the engine, not yet written to the client */
  enum state state;
  size_t want;            /* chunk or content-length bytes left */
  size_t hlen, tlen;      /* header bytes kept, the trailer line's length */
  int status;
  long long body;         /* response body bytes (de-chunked) */
  size_t ll, lastlen;     /* the SSE line being read, the last usage line */
  int over;               /* the line being read is longer than LINE */
  int ended;              /* reported: freed after the batch of events (a later event in it may name it) */
  struct stream *next;    /* the batch's ended streams */
  char head[HEAD], line[LINE], last[LINE], buf[BUF];
};

static int ep = -1, done_w = -1;

/* one SSE body segment: keep the last whole "data: {...}" line that carries a usage */
static void sse(struct stream *st, const char *p, size_t n) {
  st->body += (long long)n;
  while (n) {
    const char *nl = memchr(p, '\n', n);
    size_t k = nl ? (size_t)(nl - p) : n;
    if (st->ll + k < LINE) memcpy(st->line + st->ll, p, k), st->ll += k;
    else st->over = 1;
    if (nl) {
      if (!st->over && st->ll > 7 && memcmp(st->line, "data: {", 7) == 0 && memmem(st->line, st->ll, "\"usage\":{", 9))
        memcpy(st->last, st->line + 6, st->ll - 6), st->lastlen = st->ll - 6;
      st->ll = 0, st->over = 0, k++;
    }
    p += k, n -= k;
  }
}

/* the headers are in: the status, and how the body is framed; 0 when they cannot be followed */
static int headers(struct stream *st) {
  st->head[st->hlen] = 0;
  if (sscanf(st->head, "HTTP/1.%*d %d", &st->status) != 1) return 0;
  const char *cl = strcasestr(st->head, "\ncontent-length:");
  if (strcasestr(st->head, "\ntransfer-encoding: chunked")) st->state = S_SIZE;
  else if (cl) st->want = strtoull(cl + 16, NULL, 10), st->state = st->want ? S_LENGTH : S_DONE;
  else return 0; /* a body to the connection's end: not relayed here */
  return 1;
}

/* follow the response's framing over n bytes; 0 when it cannot be followed */
static int frame(struct stream *st, const char *p, size_t n) {
  while (n && st->state != S_DONE) {
    size_t k = 1;
    char c = *p;
    switch (st->state) {
    case S_HEAD:
      if (st->hlen == HEAD - 1) return 0;
      st->head[st->hlen++] = c;
      if (st->hlen >= 4 && memcmp(st->head + st->hlen - 4, "\r\n\r\n", 4) == 0 && !headers(st)) return 0;
      break;
    case S_SIZE: /* hex digits, then extensions (ignored) to the line's end */
      if (c == '\n') st->state = st->want ? S_DATA : S_TRAILER, st->tlen = 0;
      else if (st->tlen == 0 && ((c >= '0' && c <= '9') || ((c | 32) >= 'a' && (c | 32) <= 'f')))
        st->want = st->want * 16 + (size_t)(c <= '9' ? c - '0' : (c | 32) - 'a' + 10);
      else st->tlen = 1; /* past the digits */
      break;
    case S_DATA:
    case S_LENGTH:
      k = n < st->want ? n : st->want;
      sse(st, p, k);
      st->want -= k;
      if (!st->want) st->state = st->state == S_DATA ? S_DATA_END : S_DONE;
      break;
    case S_DATA_END: /* the chunk's CRLF */
      if (c == '\n') st->state = S_SIZE, st->tlen = 0;
      break;
    case S_TRAILER: /* trailer lines, to an empty one */
      if (c == '\n') st->tlen ? (void)(st->tlen = 0) : (void)(st->state = S_DONE);
      else if (c != '\r') st->tlen++;
      break;
    case S_DONE:
      break;
    }
    p += k, n -= k;
  }
  return 1;
}

static void interest(struct stream *st, int client, uint32_t want) {
  uint32_t *have = client ? &st->cev : &st->eev;
  if (*have == want) return;
  struct epoll_event ev = {.events = want, .data.ptr = &st->ends[client]};
  epoll_ctl(ep, EPOLL_CTL_MOD, client ? st->cfd : st->efd, &ev);
  *have = want;
}

static void finish(struct stream *st, int status) {
  char line[LINE + 64];
  epoll_ctl(ep, EPOLL_CTL_DEL, st->efd, NULL);
  epoll_ctl(ep, EPOLL_CTL_DEL, st->cfd, NULL);
  int n = snprintf(line, sizeof line, "%d %d %lld %.*s\n", st->id, status, st->body, (int)st->lastlen, st->last);
  if (write(done_w, line, (size_t)n) != n) perror("body-relay: report");
  st->ended = 1;
}

/* write what is held to the client; -1 when the client's connection failed */
static int flush(struct stream *st) {
  while (st->off < st->len) {
    ssize_t n = send(st->cfd, st->buf + st->off, st->len - st->off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) return errno == EAGAIN ? 0 : -1;
    st->off += (size_t)n;
  }
  st->off = st->len = 0;
  return 0;
}

/* the engine's bytes to the client; the status to report when the stream is over, or 0 */
static int pump(struct stream *st) {
  while (st->len == 0 && st->state != S_DONE) {
    ssize_t n = read(st->efd, st->buf, BUF);
    if (n < 0) return errno == EAGAIN ? 0 : -1;
    if (n == 0 || !frame(st, st->buf, (size_t)n)) return -1;
    st->len = (size_t)n;
    if (flush(st) < 0) return -2;
  }
  return st->state == S_DONE && st->len == 0 ? st->status : 0;
}

static void *loop(void *arg) {
  (void)arg;
  struct epoll_event evs[64];
  for (;;) {
    struct stream *ended = NULL;
    int n = epoll_wait(ep, evs, 64, -1);
    for (int i = 0; i < n; i++) {
      struct end *e = evs[i].data.ptr;
      struct stream *st = e->st;
      uint32_t ev = evs[i].events;
      int r = 0;
      if (st->ended) continue;
      if (e->client) {
        /* the client closed or failed (it sends nothing while its response is under way): cancel */
        if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) r = -2;
        else if (flush(st) < 0) r = -2;
        else r = pump(st);
      } else r = pump(st);
      if (r) {
        finish(st, r);
        st->next = ended, ended = st;
        continue;
      }
      interest(st, 0, st->len ? 0 : EPOLLIN);
      interest(st, 1, EPOLLRDHUP | (st->len ? EPOLLOUT : 0));
    }
    while (ended) {
      struct stream *st = ended;
      ended = st->next;
      free(st);
    }
  }
  return NULL;
}

/* start the relay's thread; returns the fd JavaScript reads the streams' ends from, or -1 */
int body_relay_start(void) {
  int p[2];
  pthread_t t;
  if (ep >= 0) return -1;
  if (pipe(p) < 0 || (ep = epoll_create1(EPOLL_CLOEXEC)) < 0) return -1;
  done_w = p[1];
  if (pthread_create(&t, NULL, loop, NULL) != 0) return -1;
  pthread_detach(t);
  return p[0];
}

/* hand a stream over: the request is written to engine_fd; its response goes to client_fd; 0, or -1 */
int body_relay_add(int id, int client_fd, int engine_fd) {
  struct stream *st = malloc(sizeof *st);
  if (!st) return -1;
  memset(st, 0, offsetof(struct stream, line));
  st->id = id, st->cfd = client_fd, st->efd = engine_fd;
  st->ends[0] = (struct end){st, 0};
  st->ends[1] = (struct end){st, 1};
  st->eev = EPOLLIN, st->cev = EPOLLRDHUP;
  struct epoll_event ee = {.events = st->eev, .data.ptr = &st->ends[0]};
  struct epoll_event ce = {.events = st->cev, .data.ptr = &st->ends[1]};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, client_fd, &ce) < 0) return free(st), -1;
  if (epoll_ctl(ep, EPOLL_CTL_ADD, engine_fd, &ee) < 0) {
    epoll_ctl(ep, EPOLL_CTL_DEL, client_fd, NULL);
    return free(st), -1;
  }
  return 0;
}
