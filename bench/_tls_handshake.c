/*
 * TLS handshakes per second, for `deno task bench`: CLIENTS connections at
 * a time, each a full handshake with OpenSSL (the server's certificate
 * verified against CA and 127.0.0.1, no session offered for resumption),
 * then close_notify, a wait for the server's close, and the next connection,
 * until SECONDS pass or MAX handshakes are done. One thread, epoll: a client
 * cheap enough that the server, not the client, sets the pace (a Node TLS
 * client ran out of its core first on this machine). bench/_handshake_load.mjs
 * is the same client in Node, for where this one cannot be built.
 *
 * Usage: _tls_handshake PORT CA CLIENTS SECONDS MAX
 * Prints the same JSON object as bench/_handshake_load.mjs.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum state { IDLE, CONNECTING, HANDSHAKE, CLOSING };

/* One client: the connection it has open and where it is in its cycle. */
struct slot {
  enum state state;
  int fd;
  SSL *ssl;
  double begin; /* ms, when its connect was called */
};

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static SSL_CTX *ctx;
static double *times;
static long done;

/* The q-quantile of the sorted connect times (nearest rank). */
static double at(double q) {
  if (done == 0) return 0;
  long i = (long)(q * done + 0.999999) - 1;
  return times[i < 0 ? 0 : i >= done ? done - 1 : i];
}

static struct sockaddr_in addr;
static int ep;
static long started, failures, resumed;
static char first_failure[160];

static void fail(struct slot *s, const char *why) {
  if (s->state != CLOSING) {
    failures++;
    if (!first_failure[0]) snprintf(first_failure, sizeof first_failure, "%s", why);
  }
  epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
  if (s->ssl) SSL_free(s->ssl);
  close(s->fd);
  s->ssl = NULL;
  s->state = IDLE;
}

static void watch(struct slot *s, unsigned events, int op) {
  struct epoll_event e = {.events = events, .data.ptr = s};
  epoll_ctl(ep, op, s->fd, &e);
}

static void start(struct slot *s) {
  started++;
  s->begin = now_ms();
  s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  int one = 1;
  setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  s->ssl = NULL;
  s->state = CONNECTING;
  if (connect(s->fd, (struct sockaddr *)&addr, sizeof addr) && errno != EINPROGRESS) {
    fail(s, strerror(errno));
    return;
  }
  watch(s, EPOLLOUT, EPOLL_CTL_ADD);
}

/* Moves the handshake on; on its end, times it and starts the close. */
static void handshake(struct slot *s) {
  int r = SSL_do_handshake(s->ssl);
  if (r == 1) {
    times[done++] = now_ms() - s->begin;
    if (SSL_session_reused(s->ssl)) resumed++;
    SSL_shutdown(s->ssl); /* close_notify; the server closes in turn */
    s->state = CLOSING;
    watch(s, EPOLLIN, EPOLL_CTL_MOD);
    return;
  }
  int e = SSL_get_error(s->ssl, r);
  if (e == SSL_ERROR_WANT_READ) watch(s, EPOLLIN, EPOLL_CTL_MOD);
  else if (e == SSL_ERROR_WANT_WRITE) watch(s, EPOLLOUT, EPOLL_CTL_MOD);
  else {
    unsigned long code = ERR_get_error();
    fail(s, code ? ERR_reason_error_string(code) : "handshake failed");
    ERR_clear_error();
  }
}

static void step(struct slot *s) {
  if (s->state == CONNECTING) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
      fail(s, strerror(err));
      return;
    }
    s->ssl = SSL_new(ctx);
    SSL_set_fd(s->ssl, s->fd);
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s->ssl), "127.0.0.1");
    SSL_set_connect_state(s->ssl);
    s->state = HANDSHAKE;
    handshake(s);
  } else if (s->state == HANDSHAKE) {
    handshake(s);
  } else if (s->state == CLOSING) {
    /* The server's session tickets and close, unread: only its EOF counts. */
    char buf[4096];
    ssize_t n = read(s->fd, buf, sizeof buf);
    if (n > 0 || (n < 0 && errno == EAGAIN)) return;
    fail(s, "closed");
  }
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: _tls_handshake PORT CA CLIENTS SECONDS MAX\n");
    return 2;
  }
  int port = atoi(argv[1]), clients = atoi(argv[3]);
  double seconds = atof(argv[4]);
  long max = atol(argv[5]);
  if (port < 1 || port > 65535 || clients < 1 || clients > 1000 ||
      !(seconds > 0 && seconds <= 600) || max < 1 || max > 10000000) {
    fprintf(stderr, "error: expected PORT 1-65535, CLIENTS 1-1000, SECONDS 0-600, MAX 1-10000000\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  ctx = SSL_CTX_new(TLS_client_method());
  if (!SSL_CTX_load_verify_locations(ctx, argv[2], NULL)) {
    fprintf(stderr, "error: cannot read the CA %s\n", argv[2]);
    return 1;
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  times = calloc(max, sizeof *times);
  struct slot *slots = calloc(clients, sizeof *slots);
  ep = epoll_create1(0);
  double t0 = now_ms(), deadline = t0 + seconds * 1e3;
  for (int i = 0; i < clients; i++) start(&slots[i]);
  struct epoll_event events[1024];
  for (;;) {
    int n = epoll_wait(ep, events, 1024, 100);
    for (int i = 0; i < n; i++) step(events[i].data.ptr);
    double t = now_ms();
    int busy = 0;
    for (int i = 0; i < clients; i++) {
      struct slot *s = &slots[i];
      if (s->state != IDLE && t - s->begin > 5000) fail(s, "timed out after 5 s");
      if (s->state == IDLE && t < deadline && started < max) start(s);
      busy += s->state != IDLE;
    }
    if (!busy) break;
  }
  double elapsed = (now_ms() - t0) / 1e3;
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
               ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
  qsort(times, done, sizeof *times, cmp);
  printf("{\"handshakes\":%ld,\"clients\":%d,\"seconds\":%.3f,"
         "\"handshakesPerSecond\":%.0f,\"connect\":{\"p50\":%.3f,\"p90\":%.3f,"
         "\"p99\":%.3f,\"max\":%.3f},\"failures\":%ld,",
         done, clients, elapsed, done / elapsed, at(0.5), at(0.9), at(0.99), at(1), failures);
  if (first_failure[0]) printf("\"firstFailure\":\"%s\",", first_failure);
  printf("\"resumed\":%ld,\"cpuPercent\":%.0f}\n", resumed, cpu / elapsed * 100);
  return 0;
}
