/*
 * Baseline for `deno task bench`: a single-threaded, level-triggered epoll
 * echo server in C, the floor every other server is compared with and the
 * server the load generator's own ceiling is measured against.
 *
 * Usage: _epoll_echo PORT   (0 picks a free port); prints
 * "listening on 127.0.0.1:PORT", stops on SIGTERM or SIGINT.
 * _epoll_echo PORT udp: the UDP echo instead, a blocking recvfrom/sendto
 * loop on one socket (one socket needs no epoll).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
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

#define BUF 16384

/* Bytes read but not yet written back, per connection; most hold none. */
struct conn {
  int fd;
  char *pending;
  size_t len;
};

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

static void drop(int ep, struct conn *c) {
  epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  free(c->pending);
  free(c);
}

/* Sends every datagram back to its sender until a signal ends recvfrom. */
static int udp_echo(int port) {
  int s = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(s, (struct sockaddr *)&a, sizeof a)) {
    perror("bind");
    return 1;
  }
  socklen_t al = sizeof a;
  getsockname(s, (struct sockaddr *)&a, &al);
  printf("listening on 127.0.0.1:%d\n", ntohs(a.sin_port));
  fflush(stdout);
  static char buf[65536];
  while (!stop) {
    struct sockaddr_storage from;
    socklen_t fl = sizeof from;
    ssize_t n = recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
    if (n < 0) continue; /* EINTR from the signal, or an ICMP error */
    sendto(s, buf, n, 0, (struct sockaddr *)&from, fl);
  }
  return 0;
}

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 0;
  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa = {0}; /* no SA_RESTART: a signal ends recvfrom */
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  if (argc > 2 && strcmp(argv[2], "udp") == 0) return udp_echo(port);
  int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  int one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 4096)) {
    perror("listen");
    return 1;
  }
  socklen_t al = sizeof a;
  getsockname(ls, (struct sockaddr *)&a, &al);
  printf("listening on 127.0.0.1:%d\n", ntohs(a.sin_port));
  fflush(stdout);
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
  epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
  static char buf[BUF];
  struct epoll_event events[256];
  while (!stop) {
    int n = epoll_wait(ep, events, 256, 200);
    for (int i = 0; i < n; i++) {
      struct conn *c = events[i].data.ptr;
      if (c == NULL) {
        for (;;) {
          int fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK);
          if (fd < 0) break;
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          struct conn *nc = calloc(1, sizeof *nc);
          nc->fd = fd;
          struct epoll_event e = {.events = EPOLLIN, .data.ptr = nc};
          epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
        }
        continue;
      }
      if (c->len > 0) { /* writable again: flush what is held */
        ssize_t w = write(c->fd, c->pending, c->len);
        if (w < 0 && errno != EAGAIN) { drop(ep, c); continue; }
        if (w > 0) {
          memmove(c->pending, c->pending + w, c->len - w);
          c->len -= w;
        }
        if (c->len == 0) {
          free(c->pending);
          c->pending = NULL;
          struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
          epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
        }
        continue;
      }
      ssize_t r = read(c->fd, buf, BUF);
      if (r == 0 || (r < 0 && errno != EAGAIN)) { drop(ep, c); continue; }
      if (r < 0) continue;
      ssize_t w = write(c->fd, buf, r);
      if (w < 0 && errno != EAGAIN) { drop(ep, c); continue; }
      if (w < 0) w = 0;
      if (w < r) { /* the peer is slow: hold the rest, stop reading */
        c->pending = malloc(r - w);
        memcpy(c->pending, buf + w, r - w);
        c->len = r - w;
        struct epoll_event e = {.events = EPOLLOUT, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
      }
    }
  }
  return 0;
}
