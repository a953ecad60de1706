/*
 * TCP echo load for the proxy's bench cases (bench/_proxy_cases.ts): CONNS
 * connections to 127.0.0.1:PORT, one thread, epoll, every byte that comes
 * back checked. Cheap enough that the relay under test, not the client,
 * sets the pace (tools/load.ts on the same core as the C echo server would
 * be the bottleneck in front of a fast relay).
 *
 * MODE pingpong: each connection sends a SIZE-byte message and sends the
 * next when the whole echo is back.
 * MODE stream: each connection writes SIZE-byte chunks as fast as the
 * socket takes them, at most WINDOW bytes ahead of what came back, and
 * reads the echo as it comes.
 *
 * Usage: _tcp_load PORT CONNS SECONDS MODE SIZE
 * Prints one JSON object: messages, bytes (echoed back), seconds,
 * messagesPerSecond, megabytesPerSecond (10^6 bytes), corrupted and errors.
 * It times no round trip: tools/load.ts does that, with the histograms.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WINDOW (1 << 20) /* stream: bytes a connection may have out */
#define MAX_SIZE (1 << 20)

struct conn {
  int fd;
  uint64_t sent;     /* bytes written */
  uint64_t received; /* bytes read back */
  size_t at;         /* pingpong: bytes of this message back so far */
  int dead;
};

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/*
 * The byte at offset i of connection c's stream is base[(i + 7c) % 256]:
 * a buffer `pattern` holds base repeated, so the bytes at any offset are
 * one slice of it, written and compared (memcmp) without a loop per byte.
 */
static uint8_t *pattern;

static inline const uint8_t *at(uint64_t offset, int c) {
  return pattern + (offset + 7 * (uint64_t)c) % 256;
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: %s PORT CONNS SECONDS pingpong|stream SIZE\n",
            argv[0]);
    return 2;
  }
  int port = atoi(argv[1]), n = atoi(argv[2]);
  double seconds = atof(argv[3]);
  int stream = strcmp(argv[4], "stream") == 0;
  size_t size = (size_t)atol(argv[5]);
  if (n < 1 || size < 1 || size > MAX_SIZE || seconds <= 0) {
    fprintf(stderr, "bad arguments\n");
    return 2;
  }
  struct conn *conns = calloc(n, sizeof *conns);
  uint8_t *in = malloc(MAX_SIZE);
  pattern = malloc(MAX_SIZE + 256);
  for (size_t k = 0; k < MAX_SIZE + 256; k++) pattern[k] = (uint8_t)(k * 131);
  int ep = epoll_create1(0);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  for (int i = 0; i < n; i++) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
      fprintf(stderr, "connect: %s\n", strerror(errno));
      return 1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    conns[i].fd = fd;
    struct epoll_event ev = {.events = EPOLLIN | (stream ? EPOLLOUT : 0),
                             .data.u32 = (uint32_t)i};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  }
  uint64_t messages = 0, corrupted = 0, errors = 0;
  double start = now_ms(), end = start + seconds * 1000;
  if (!stream) {
    for (int i = 0; i < n; i++) {
      if (write(conns[i].fd, at(0, i), size) != (ssize_t)size) errors++;
      conns[i].sent = size;
    }
  }
  struct epoll_event events[256];
  double now = start;
  while (now < end) {
    int ready = epoll_wait(ep, events, 256, 100);
    now = now_ms();
    for (int e = 0; e < ready; e++) {
      int i = (int)events[e].data.u32;
      struct conn *c = &conns[i];
      if (c->dead) continue;
      if (events[e].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        ssize_t got = read(c->fd, in, stream ? MAX_SIZE : size - c->at);
        if (got <= 0) {
          if (got < 0 && errno == EAGAIN) goto writable;
          errors++;
          c->dead = 1;
          epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
          continue;
        }
        if (memcmp(in, at(stream ? c->received : c->at, i), got) != 0) {
          corrupted++;
        }
        c->received += got;
        if (!stream) {
          c->at += got;
          if (c->at == size) {
            messages++;
            c->at = 0;
            if (write(c->fd, at(0, i), size) != (ssize_t)size) errors++;
            c->sent += size;
          }
        }
      }
    writable:
      if (stream && (events[e].events & EPOLLOUT)) {
        while (c->sent - c->received < WINDOW) {
          ssize_t put = write(c->fd, at(c->sent, i), size);
          if (put <= 0) break;
          c->sent += put;
          if ((size_t)put < size) break;
        }
      }
    }
  }
  double took = (now_ms() - start) / 1000;
  uint64_t bytes = 0;
  for (int i = 0; i < n; i++) bytes += conns[i].received;
  if (stream) messages = bytes / size;
  printf("{\"messages\":%llu,\"bytes\":%llu,\"seconds\":%.3f,"
         "\"messagesPerSecond\":%.0f,\"megabytesPerSecond\":%.1f,"
         "\"corrupted\":%llu,\"errors\":%llu}\n",
         (unsigned long long)messages, (unsigned long long)bytes, took,
         messages / took, bytes / took / 1e6, (unsigned long long)corrupted,
         (unsigned long long)errors);
  return 0;
}
