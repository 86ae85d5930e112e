/*
 * The gateway's native data plane (actors/gateway/data-plane.ts loads it through koffi; docs/DATAPATH.md "Native
 * data plane"): one thread, one epoll set, moving the plain text events of streams JavaScript hands over from the
 * engine's connection to the client's, rewritten from the engine's skeleton to the client's frame.
 *
 * JavaScript hands a stream over at a chunk boundary of the engine's chunked response, with nothing held for the
 * client (dp_add, the fds dup'ed here: a close by JavaScript never lets bytes reach another socket). Per engine chunk
 * (whole chunks only): every SSE event in it must be `data: <prefix><body><suffix>\n\n` (or, for continuous usage,
 * `data: <prefix><body><mid>{...}}\n\n`) with a body that JSON.stringify would write byte for byte as it is (raw
 * UTF-8 without controls; the escapes \" \\ \b \f \n \r \t and lowercase \u00xx below 0x20); each becomes
 * `<client prefix>"<body>"<client suffix>` (with the client's usage so far between them when it asked for it), the chunk's events one chunk of the client's chunked response. The first
 * chunk that is anything else (the finish, the usage, another shape, the terminating chunk) is not consumed: the
 * stream ends and JavaScript takes it back with the rest of the bytes read (dp_info, dp_copy). A stream also ends when
 * the engine's connection ends or fails, when the client's closes (EPOLLRDHUP), or when JavaScript removes it
 * (dp_remove). An end the thread decides goes to a list of ended handles JavaScript takes with dp_ended, woken by a
 * byte on the pipe dp_start returns (nonblocking: no write to it waits while the lock is held). A client that takes
 * less than what was framed for it stops the engine's reads (the bytes held: one read's events) until it takes the
 * rest; dp_stalled says since when it took nothing, for JavaScript's stall watch (which takes the stream back and cuts
 * the client).
 *
 *   cc -O2 -Wall -Wextra -Werror -shared -fPIC -pthread -o dist/native/relay.so native/relay.c
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SLOTS 65536
#define IN_MAX 65536 /* an engine chunk larger than this is left to JavaScript */

enum reason { R_LIVE = 0, R_OTHER = 1, R_ENGINE_END = 2, R_ENGINE_ERR = 3, R_CLIENT = 4, R_REMOVED = 5 };

struct buf {
  char *p;
  size_t n, cap;
};

struct stream;
struct end {
  struct stream *st;
  int client;
};
struct stream {
  uint32_t handle;
  int efd, cfd;
  struct end ends[2];
  uint32_t eev, cev;
  int reason, dead;
  int pend; /* the end to report once the client has what was framed */
  struct buf epre, esuf, emid, cpre, csuf; /* esuf unused when emid is set (continuous usage) */
  struct buf cmid;                         /* the client's continuous usage: the bytes before its total count */
  long long prompt, count;                 /* its prompt tokens, the completion tokens so far */
  struct buf in;                           /* engine bytes read, not consumed */
  struct buf out;                          /* client bytes framed, not written */
  size_t off;                              /* of out: written */
  struct buf text;                         /* the forwarded events' bodies (JSON string contents) */
  struct buf usage;                        /* the last event's usage object (continuous usage) */
  struct buf gaps;                         /* float ms between events, from the second one */
  long long events;
  double first, last;
  double drained; /* when the client last took the whole of what was framed after a wait */
  double stalled; /* while out holds bytes: when the client last took any of them, or when they began to wait */
  struct stream *next_dead;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct stream *slots[SLOTS];
static uint16_t gens[SLOTS];
static int ep = -1, done_w = -1, wake = -1;
static struct stream *dead;
static uint32_t next_slot;
static struct buf ended; /* handles (uint32_t) of streams the thread ended, not yet taken by dp_ended */
static int woken;        /* a wake byte is on the pipe, not yet followed by a dp_ended */
static int ndead;        /* streams on the dead list */
/* dead streams the thread frees after its next batch of events; past this many, dp_copy wakes it to free them */
#define DEAD_MAX 64

/*
 * Node's event loop (libuv), where the library is loaded into Node: a watcher whose reads libuv stopped stays in the
 * loop's epoll set until its next event wakes the loop, which then takes it out. dp_add takes the engine's fd out of that
 * set itself, so the engine's first event of the span wakes only the native thread (libuv adds it back when JavaScript
 * reads again). Weak: absent outside Node (test/fixtures/native/relay-reads.c), where nothing is taken out.
 */
extern void *uv_default_loop(void) __attribute__((weak));
extern int uv_backend_fd(const void *loop) __attribute__((weak));
static int loop_ep = -1;   /* the epoll set of the loop of the thread that started the library */
static pthread_t loop_thread;

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int put(struct buf *b, const void *p, size_t n) {
  if (b->n + n > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + n) cap *= 2;
    char *q = realloc(b->p, cap);
    if (!q) return -1;
    b->p = q, b->cap = cap;
  }
  if (n) memcpy(b->p + b->n, p, n);
  b->n += n;
  return 0;
}

static int set(struct buf *b, const char *p, int n) {
  b->n = 0;
  return n < 0 ? -1 : put(b, p, (size_t)n);
}

/* v's digits in `base` (10 or 16, lowercase) at p, as printf's %llu and %llx write them: their count */
static size_t digits(char *p, unsigned long long v, unsigned base) {
  char t[24];
  size_t n = 0;
  do t[n++] = "0123456789abcdef"[v % base], v /= base;
  while (v);
  for (size_t i = 0; i < n; i++) p[i] = t[n - 1 - i];
  return n;
}

/* the length of a JSON string body at p (to its closing quote) that JSON.stringify writes as it is; -1 if none */
static long body_len(const unsigned char *p, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned char c = p[i];
    if (c == '"') return (long)i;
    if (c < 0x20) return -1;
    if (c == '\\') {
      if (i + 1 >= n) return -1;
      unsigned char e = p[i + 1];
      if (e == '"' || e == '\\' || e == 'b' || e == 'f' || e == 'n' || e == 'r' || e == 't') i += 2;
      else if (e == 'u' && i + 5 < n && p[i + 2] == '0' && p[i + 3] == '0' && (p[i + 4] == '0' || p[i + 4] == '1') &&
               ((p[i + 5] >= '0' && p[i + 5] <= '9') || (p[i + 5] >= 'a' && p[i + 5] <= 'f'))) {
        int v = (p[i + 4] - '0') * 16 + (p[i + 5] <= '9' ? p[i + 5] - '0' : p[i + 5] - 'a' + 10);
        if (v == 8 || v == 9 || v == 10 || v == 12 || v == 13) return -1; /* JSON.stringify writes its short form */
        i += 6;
      } else return -1;
      continue;
    }
    if (c < 0x80) {
      i++;
      continue;
    }
    /* UTF-8, well formed (no overlong form, surrogate or code point past U+10FFFF): decoded as it is */
    size_t k;
    unsigned int cp;
    if (c >= 0xc2 && c <= 0xdf) k = 1, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef) k = 2, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4) k = 3, cp = c & 0x07;
    else return -1;
    if (i + k >= n) return -1;
    for (size_t j = 1; j <= k; j++) {
      if ((p[i + j] & 0xc0) != 0x80) return -1;
      cp = cp << 6 | (p[i + j] & 0x3f);
    }
    if ((k == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (k == 3 && (cp < 0x10000 || cp > 0x10ffff))) return -1;
    i += k + 1;
  }
  return -1;
}

/* one event's data (without "data: " and "\n\n") into the client's frame; 0, or -1 when it is not a plain text event */
static int event(struct stream *st, const char *d, size_t n, int *empty, const char **uo, size_t *uno) {
  const struct buf *pre = &st->epre;
  if (n < pre->n || memcmp(d, pre->p, pre->n) != 0) return -1;
  const char *b = d + pre->n;
  size_t left = n - pre->n;
  long bl = body_len((const unsigned char *)b, left);
  if (bl < 0) return -1;
  const char *after = b + bl;
  size_t an = left - (size_t)bl;
  const char *u = NULL;
  size_t un = 0;
  if (st->emid.n) {
    /* the usage so far: the event's last member, one flat object */
    if (an < st->emid.n + 3 || memcmp(after, st->emid.p, st->emid.n) != 0 || after[st->emid.n] != '{' || after[an - 1] != '}') return -1;
    u = after + st->emid.n, un = an - st->emid.n - 1;
    const char *close = memchr(u, '}', un);
    if (!close || close != u + un - 1) return -1;
  } else if (an != st->esuf.n || memcmp(after, st->esuf.p, an) != 0) return -1;
  *empty = bl == 0;
  if (bl == 0) return 0; /* nothing for the client (JavaScript's scan gives no chunk either) */
  if (put(&st->out, st->cpre.p, st->cpre.n) || put(&st->out, "\"", 1) || put(&st->out, b, (size_t)bl) || put(&st->out, "\"", 1) ||
      put(&st->text, b, (size_t)bl))
    return -1;
  st->count++;
  if (st->cmid.n) {
    /* the client's usage so far in vLLM's order (its total, then its completion count), as JSON.stringify writes
       integers; csuf holds the usage's members after the count and the event's end */
    char num[80];
    size_t k = digits(num, (unsigned long long)(st->prompt + st->count), 10);
    memcpy(num + k, ",\"completion_tokens\":", 21), k += 21;
    k += digits(num + k, (unsigned long long)st->count, 10);
    if (put(&st->out, st->cmid.p, st->cmid.n) || put(&st->out, num, k)) return -1;
  }
  if (put(&st->out, st->csuf.p, st->csuf.n)) return -1;
  if (u) *uo = u, *uno = un;
  return 0;
}

/* the whole engine chunks in st->in, each as one client chunk; stops at the first chunk that is not plain text events */
static int consume(struct stream *st) {
  size_t pos = 0;
  double t = now_ms();
  int stop = 0;
  while (!stop) {
    const char *p = st->in.p + pos;
    size_t n = st->in.n - pos;
    const char *nl = memchr(p, '\n', n);
    if (!nl) break;
    size_t size = 0, i = 0;
    for (; p + i < nl && i < 12; i++) {
      char c = p[i];
      int v = c >= '0' && c <= '9' ? c - '0' : (c | 32) >= 'a' && (c | 32) <= 'f' ? (c | 32) - 'a' + 10 : -1;
      if (v < 0) break;
      size = size * 16 + (size_t)v;
    }
    size_t head = (size_t)(nl - p) + 1;
    if (i == 0 || p + i != nl - 1 || p[i] != '\r' || size == 0) { stop = R_OTHER; break; } /* the end, or extensions */
    if (head + size + 2 > IN_MAX) { stop = R_OTHER; break; }
    if (n < head + size + 2) break; /* not whole yet */
    const char *d = p + head;
    if (d[size] != '\r' || d[size + 1] != '\n' || size < 2 || d[size - 2] != '\n' || d[size - 1] != '\n') { stop = R_OTHER; break; }
    /* the chunk's events, all or nothing */
    size_t out0 = st->out.n, text0 = st->text.n;
    long long count0 = st->count;
    const char *lu = NULL;
    size_t lun = 0;
    char frame[24];
    int fl;
    size_t at = 0, got = 0;
    int ok = 1;
    /* room for the client chunk's size line, written once the data's size is known */
    if (put(&st->out, "0000000000\r\n", 12)) ok = 0;
    size_t data0 = st->out.n;
    while (ok && at < size) {
      const char *e = d + at;
      /* the event's end: its first newline, which must be followed by another (its data is one line) */
      const char *end = memchr(e, '\n', size - at);
      int empty = 0;
      if (!end || (size_t)(end - d) + 1 >= size || end[1] != '\n' || end - e < 6 || memcmp(e, "data: ", 6) != 0 ||
          event(st, e + 6, (size_t)(end - e) - 6, &empty, &lu, &lun)) { ok = 0; break; }
      if (!empty) got++;
      at = (size_t)(end - d) + 2;
    }
    if (!ok) {
      st->out.n = out0, st->text.n = text0, st->count = count0;
      stop = R_OTHER;
      break;
    }
    size_t dn = st->out.n - data0;
    if (dn == 0) st->out.n = out0;
    else {
      fl = (int)digits(frame, dn, 16);
      frame[fl++] = '\r', frame[fl++] = '\n';
      /* the size line moved to sit right before the data */
      memmove(st->out.p + out0 + 12 - (size_t)fl, frame, (size_t)fl);
      memmove(st->out.p + out0, st->out.p + out0 + 12 - (size_t)fl, (size_t)fl + dn);
      st->out.n = out0 + (size_t)fl + dn;
      if (put(&st->out, "\r\n", 2)) { stop = R_OTHER; break; }
    }
    if (lu && set(&st->usage, lu, (int)lun)) { stop = R_OTHER; break; }
    for (size_t k = 0; k < got; k++) {
      if (st->events > 0) {
        float g = (float)(t - st->last);
        if (put(&st->gaps, &g, sizeof g)) { stop = R_OTHER; break; }
      } else st->first = t;
      st->last = t;
      st->events++;
    }
    pos += head + size + 2;
  }
  if (pos) memmove(st->in.p, st->in.p + pos, st->in.n - pos), st->in.n -= pos;
  return stop;
}

static void interest(struct stream *st, int client, uint32_t want) {
  uint32_t *have = client ? &st->cev : &st->eev;
  if (*have == want) return;
  struct epoll_event ev = {.events = want, .data.ptr = &st->ends[client]};
  epoll_ctl(ep, EPOLL_CTL_MOD, client ? st->cfd : st->efd, &ev);
  *have = want;
}

static void unwatch(struct stream *st) {
  epoll_ctl(ep, EPOLL_CTL_DEL, st->efd, NULL);
  epoll_ctl(ep, EPOLL_CTL_DEL, st->cfd, NULL);
}

/* the thread ends a stream: out of epoll, its handle on the ended list, a wake byte on the pipe unless one is there */
static void finish(struct stream *st, int reason) {
  unwatch(st);
  st->reason = reason;
  if (put(&ended, &st->handle, sizeof st->handle)) perror("dp: report");
  if (!woken && write(done_w, "\n", 1) == 1) woken = 1;
}

/*
 * what is framed to the client; -1 when the client's connection failed. A client that takes less than all of it is
 * backed up: `stalled` is then the time it last took bytes (dp_stalled; the clock is read only on this path).
 */
static int flush(struct stream *st) {
  size_t off = st->off;
  while (st->off < st->out.n) {
    ssize_t n = send(st->cfd, st->out.p + st->off, st->out.n - st->off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno != EAGAIN && errno != EINTR) return -1;
      if (st->off != off || st->stalled == 0) st->stalled = now_ms();
      return 0;
    }
    st->off += (size_t)n;
  }
  st->off = st->out.n = 0;
  st->stalled = 0;
  return 0;
}

/*
 * the engine's bytes to the client while nothing waits for the client; the reason the stream ends, or 0. A read shorter
 * than the buffer took all the socket held: the next bytes wake the (level-triggered) epoll set, so no read is made to
 * learn EAGAIN. Per engine event: one epoll_wait (shared by the streams ready together), one read, one send.
 */
static int pump(struct stream *st) {
  while (st->out.n == 0) {
    char tmp[16384];
    ssize_t n = read(st->efd, tmp, sizeof tmp);
    if (n < 0) return errno == EAGAIN || errno == EINTR ? 0 : R_ENGINE_ERR;
    if (n == 0) return R_ENGINE_END;
    if (put(&st->in, tmp, (size_t)n)) return R_OTHER;
    int stop = consume(st);
    if (flush(st) < 0) return R_CLIENT;
    if (stop) return st->out.n ? -stop : stop; /* negative: end once the client has what was framed */
    if ((size_t)n < sizeof tmp) break;
  }
  return 0;
}

static void *loop(void *arg) {
  (void)arg;
  struct epoll_event evs[64];
  for (;;) {
    int n = epoll_wait(ep, evs, 64, -1);
    pthread_mutex_lock(&mu);
    for (int i = 0; i < n; i++) {
      if (evs[i].data.ptr == NULL) {
        uint64_t x;
        if (read(wake, &x, sizeof x) < 0) x = 0;
        continue;
      }
      struct end *e = evs[i].data.ptr;
      struct stream *st = e->st;
      if (st->dead || st->reason) continue; /* removed by JavaScript, or ended earlier in this batch */
      int r = 0;
      size_t framed = st->out.n;
      if (e->client && (evs[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))) r = R_CLIENT;
      else if (flush(st) < 0) r = R_CLIENT;
      else if (st->out.n == 0) r = st->pend ? st->pend : pump(st);
      else if (!e->client && (evs[i].events & (EPOLLHUP | EPOLLERR))) {
        /* the engine's connection failed while the client is backed up: epoll reports it whatever the interest, so
           the engine's fd leaves the set and the end waits for the client to take what was framed */
        epoll_ctl(ep, EPOLL_CTL_DEL, st->efd, NULL);
        if (!st->pend) st->pend = R_ENGINE_ERR;
      }
      if (framed && st->out.n == 0) st->drained = now_ms();
      if (r < 0) st->pend = -r, r = 0;
      if (r) {
        finish(st, r);
        continue;
      }
      interest(st, 0, st->out.n || st->pend ? 0 : EPOLLIN);
      interest(st, 1, EPOLLRDHUP | (st->out.n ? EPOLLOUT : 0));
    }
    /* streams removed before this point are out of the epoll set: no later batch names them */
    ndead = 0;
    while (dead) {
      struct stream *st = dead;
      dead = st->next_dead;
      free(st->epre.p), free(st->esuf.p), free(st->emid.p), free(st->cpre.p), free(st->csuf.p), free(st->cmid.p);
      free(st->in.p), free(st->out.p), free(st->text.p), free(st->usage.p), free(st->gaps.p);
      free(st);
    }
    pthread_mutex_unlock(&mu);
  }
  return NULL;
}

/* the stream of a handle (the lock held), or NULL */
static struct stream *of(uint32_t h) {
  struct stream *st = slots[h & 0xffff];
  return st && st->handle == h ? st : NULL;
}

/* CLOCK_MONOTONIC in ms: the clock of the events' times (Node's performance.now() counts from it) */
double dp_now(void) { return now_ms(); }

/* start the thread; returns the fd whose bytes say streams ended (dp_ended), or -1 with nothing left open */
int dp_start(void) {
  int p[2] = {-1, -1};
  pthread_t t;
  if (ep >= 0) return -1;
  struct epoll_event we = {.events = EPOLLIN, .data.ptr = NULL};
  if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0 || (ep = epoll_create1(EPOLL_CLOEXEC)) < 0 || (wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0 ||
      epoll_ctl(ep, EPOLL_CTL_ADD, wake, &we) < 0)
    goto fail;
  done_w = p[1];
  if (uv_default_loop && uv_backend_fd) {
    void *l = uv_default_loop();
    loop_ep = l ? uv_backend_fd(l) : -1;
    loop_thread = pthread_self();
  }
  /* this library stays mapped while its thread lives, that is to the process's end: its loader (koffi) unloads it
   * once its last handle is collected, at the latest at the process's exit, and the thread woken after that would run
   * unmapped code. A reference of its own, marked never to be unloaded (none where it is built into a program). */
  Dl_info self;
  if (dladdr((void *)dp_start, &self) && self.dli_fname) dlopen(self.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
  if (pthread_create(&t, NULL, loop, NULL) != 0) goto fail;
  pthread_setname_np(t, "dp-relay"); /* its name in /proc/<pid>/task/<tid>/comm, perf and top: its CPU told from Node's threads */
  pthread_detach(t);
  return p[0];
fail:
  if (p[0] >= 0) close(p[0]), close(p[1]);
  if (ep >= 0) close(ep);
  if (wake >= 0) close(wake);
  ep = wake = done_w = loop_ep = -1;
  return -1;
}

/* the handles of streams the thread ended since the last call, at most `cap` of them into out: their count */
int dp_ended(uint32_t *out, int cap) {
  pthread_mutex_lock(&mu);
  size_t n = ended.n / sizeof(uint32_t);
  if (n > (size_t)cap) n = (size_t)cap;
  if (n) {
    memcpy(out, ended.p, n * sizeof(uint32_t));
    memmove(ended.p, ended.p + n * sizeof(uint32_t), ended.n - n * sizeof(uint32_t));
    ended.n -= n * sizeof(uint32_t);
  }
  if (ended.n == 0) woken = 0;
  pthread_mutex_unlock(&mu);
  return (int)n;
}

/*
 * Hand a stream over: the engine's response is read from engine_fd at a chunk boundary, the client's events go to
 * client_fd (both dup'ed here). emid (continuous usage) or esuf: the engine's skeleton around the text's body; cpre
 * and csuf: the client's frame around the text's literal; cmid (the client's continuous usage): the bytes between the
 * literal and its total count (its completion count follows the total), `prompt` its prompt tokens and `count` its
 * completion tokens so far. `unwatch`: the engine's fd is taken out of the calling thread's Node loop's epoll set
 * (where the caller is the thread that started the library, and libuv's watcher of it waits for nothing: its reads
 * stopped, no write pending). The stream's handle, or -1.
 */
int dp_add(int client_fd, int engine_fd, const char *epre, int epn, const char *esuf, int esn, const char *emid, int emn, const char *cpre, int cpn,
           const char *csuf, int csn, const char *cmid, int cmn, double prompt, double count, int unwatch) {
  struct stream *st = calloc(1, sizeof *st);
  if (!st) return -1;
  st->cfd = st->efd = -1;
  if (set(&st->epre, epre, epn) || set(&st->esuf, esuf, esn) || set(&st->emid, emid, emn) || set(&st->cpre, cpre, cpn) || set(&st->csuf, csuf, csn) ||
      set(&st->cmid, cmid, cmn) || epn <= 0 || (emn <= 0 && esn <= 0))
    goto fail;
  st->cfd = fcntl(client_fd, F_DUPFD_CLOEXEC, 0);
  st->efd = fcntl(engine_fd, F_DUPFD_CLOEXEC, 0);
  if (st->cfd < 0 || st->efd < 0) goto fail;
  st->prompt = (long long)prompt, st->count = (long long)count;
  st->ends[0] = (struct end){st, 0};
  st->ends[1] = (struct end){st, 1};
  st->eev = EPOLLIN, st->cev = EPOLLRDHUP;
  pthread_mutex_lock(&mu);
  uint32_t s = 0;
  for (uint32_t k = 0; k < SLOTS; k++) {
    s = (next_slot + k) % SLOTS;
    if (!slots[s]) break;
  }
  if (slots[s]) {
    pthread_mutex_unlock(&mu);
    goto fail;
  }
  next_slot = s + 1;
  st->handle = (uint32_t)(++gens[s] & 0x7fff) << 16 | s;
  struct epoll_event ee = {.events = st->eev, .data.ptr = &st->ends[0]};
  struct epoll_event ce = {.events = st->cev, .data.ptr = &st->ends[1]};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, st->cfd, &ce) < 0) {
    pthread_mutex_unlock(&mu);
    goto fail;
  }
  if (epoll_ctl(ep, EPOLL_CTL_ADD, st->efd, &ee) < 0) {
    epoll_ctl(ep, EPOLL_CTL_DEL, st->cfd, NULL);
    pthread_mutex_unlock(&mu);
    goto fail;
  }
  slots[s] = st;
  pthread_mutex_unlock(&mu);
  /* the engine's fd out of Node's loop's epoll set (its reads stopped): an error only says it was not there */
  if (unwatch && loop_ep >= 0 && pthread_equal(pthread_self(), loop_thread)) epoll_ctl(loop_ep, EPOLL_CTL_DEL, engine_fd, NULL);
  return (int)st->handle;
fail:
  if (st->cfd >= 0) close(st->cfd);
  if (st->efd >= 0) close(st->efd);
  free(st->epre.p), free(st->esuf.p), free(st->emid.p), free(st->cpre.p), free(st->csuf.p), free(st->cmid.p);
  free(st);
  return -1;
}

/* JavaScript takes a stream back: out of the epoll set when this returns. 0: removed now; 1: it had ended; -1: unknown */
int dp_remove(int h) {
  pthread_mutex_lock(&mu);
  struct stream *st = of((uint32_t)h);
  int r = -1;
  if (st) {
    r = st->reason ? 1 : 0;
    if (!st->reason) unwatch(st), st->reason = R_REMOVED;
  }
  pthread_mutex_unlock(&mu);
  return r;
}

/*
 * An ended stream's figures: [reason, events, text bytes, rest bytes (engine bytes read, not consumed), pending bytes
 * (framed for the client, not written: a stream JavaScript removed), usage bytes, first event's time, last event's
 * time (dp_now's clock)]. 0, or -1 for a stream that is unknown or not ended.
 */
int dp_info(int h, double *out) {
  pthread_mutex_lock(&mu);
  struct stream *st = of((uint32_t)h);
  int r = -1;
  if (st && st->reason) {
    out[0] = st->reason, out[1] = (double)st->events, out[2] = (double)st->text.n, out[3] = (double)st->in.n;
    out[4] = (double)(st->out.n - st->off), out[5] = (double)st->usage.n, out[6] = st->first, out[7] = st->last;
    r = 0;
  }
  pthread_mutex_unlock(&mu);
  return r;
}

/* An ended stream's bytes (sizes from dp_info; gaps: events - 1 floats, ms), and its end: its dups closed, its handle free. */
int dp_copy(int h, char *text, char *rest, char *pending, char *usage, float *gaps) {
  pthread_mutex_lock(&mu);
  struct stream *st = of((uint32_t)h);
  if (!st || !st->reason) return pthread_mutex_unlock(&mu), -1;
  memcpy(text, st->text.p, st->text.n);
  memcpy(rest, st->in.p, st->in.n);
  memcpy(pending, st->out.p + st->off, st->out.n - st->off);
  memcpy(usage, st->usage.p, st->usage.n);
  memcpy(gaps, st->gaps.p, st->gaps.n);
  close(st->cfd), close(st->efd);
  slots[st->handle & 0xffff] = NULL;
  st->dead = 1;
  st->next_dead = dead, dead = st;
  /* the thread frees it after its batch (one it is in may still name it): its next one, woken here only when many wait */
  int many = ++ndead >= DEAD_MAX;
  pthread_mutex_unlock(&mu);
  uint64_t one = 1;
  if (many && write(wake, &one, sizeof one) < 0) return 0;
  return 0;
}

/*
 * A stream's engine activity for the idle deadline while native holds it (dp_now's clock): now while bytes framed for
 * the client wait (the engine is not read then), else its last event's time or when the client last caught up,
 * whichever is later; 0 before either.
 */
double dp_last(int h) {
  pthread_mutex_lock(&mu);
  struct stream *st = of((uint32_t)h);
  double t = !st ? 0 : st->out.n ? now_ms() : st->last > st->drained ? st->last : st->drained;
  pthread_mutex_unlock(&mu);
  return t;
}

/*
 * A stream's client stall (dp_now's clock; the stall watch, data-plane.ts): while bytes framed for the client wait
 * (the engine is not read then), the time the client last took any of them, or when they began to wait; 0 while
 * nothing waits for the client, or for a handle that is unknown.
 */
double dp_stalled(int h) {
  pthread_mutex_lock(&mu);
  struct stream *st = of((uint32_t)h);
  double t = st && st->out.n ? st->stalled : 0;
  pthread_mutex_unlock(&mu);
  return t;
}
