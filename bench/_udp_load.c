/*
 * UDP echo load for `deno task bench`: FLOWS sockets, each connected to
 * 127.0.0.1:PORT, send SIZE-byte datagrams (flow, sequence number, send
 * time, then a payload set by the sequence number) and check every one that
 * comes back. One thread, epoll: a client cheap enough that the server, not
 * the client, sets the pace, as docs/udp.md's figures were taken.
 *
 * RATE 0 is a closed loop: each flow keeps one datagram in flight and sends
 * the next when its echo is back, or when LOSS_MS have passed without it
 * (that one is lost). tools/load.ts --udp has no such mode: it sends on a
 * schedule (or floods with --rate 0) without waiting for the echo. RATE > 0
 * is an open loop of RATE datagrams a second a flow, as tools/load.ts
 * --udp: a datagram not back intact within LOSS_MS of its sending is lost.
 * Sending stops after SECONDS or MAX datagrams a flow; then the client waits
 * at most LOSS_MS for what is still out.
 *
 * Usage: _udp_load PORT FLOWS SECONDS RATE SIZE MAX
 * Prints one JSON object: sent, received, lost, late, duplicated, corrupted,
 * messagesPerSecond (received), sentPerSecond, lostPercent, rtt (ms: p50,
 * p99, max) and cpuPercent (of one core, over the sending).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LOSS_MS 1000.0
#define HEADER 24 /* u32 flow, u32 zero, u64 sequence, f64 send time (ms) */
#define MAX_SIZE 65507
#define RING (1 << 16) /* datagrams a flow tracks: 65 per ms of LOSS_MS */
#define FINE_US 100000 /* 1 µs buckets below 100 ms, 1 ms buckets above */

struct flow {
  int fd;
  uint32_t index;
  uint64_t next;       /* sequence number of the next datagram */
  double due;          /* open loop: when the next is due (ms) */
  double sent_at;      /* closed loop: when the one in flight went out */
  int in_flight;       /* closed loop: whether one is out */
  uint64_t *tag;       /* open loop: sequence number held in each slot */
  uint8_t *back;       /* open loop: whether that one came back */
};

static uint32_t fine[FINE_US];
static uint32_t coarse[1001];
static double rtt_max;
static uint64_t samples;

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static double cpu_s(void) {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_utime.tv_usec / 1e6 + u.ru_stime.tv_sec +
         u.ru_stime.tv_usec / 1e6;
}

static void record(double ms) {
  long us = (long)(ms * 1000);
  if (us < 0) us = 0;
  if (us < FINE_US) fine[us]++;
  else coarse[ms < 1000 ? (int)ms : 1000]++;
  if (ms > rtt_max) rtt_max = ms;
  samples++;
}

static double percentile(double p) {
  if (samples == 0) return 0;
  uint64_t want = (uint64_t)(p * samples), seen = 0;
  if (want >= samples) want = samples - 1;
  for (long i = 0; i < FINE_US; i++) {
    seen += fine[i];
    if (seen > want) return i / 1000.0;
  }
  for (int i = 0; i <= 1000; i++) {
    seen += coarse[i];
    if (seen > want) return i;
  }
  return rtt_max;
}

static int size;
static char out[MAX_SIZE], in[MAX_SIZE + 1];
static uint64_t sent, received, late, duplicated, corrupted, send_errors;

static void fill(uint32_t index, uint64_t seq, double at) {
  memcpy(out, &index, 4);
  memset(out + 4, 0, 4);
  memcpy(out + 8, &seq, 8);
  memcpy(out + 16, &at, 8);
  for (int i = HEADER; i < size; i++) out[i] = (char)(seq + index + i);
}

static int send_next(struct flow *f, double at) {
  uint64_t seq = f->next;
  fill(f->index, seq, at);
  if (send(f->fd, out, size, 0) != size) {
    send_errors++;
    return 0;
  }
  f->next++;
  sent++;
  if (f->tag) {
    f->tag[seq % RING] = seq;
    f->back[seq % RING] = 0;
  } else {
    f->in_flight = 1;
    f->sent_at = at;
  }
  return 1;
}

/* Checks the datagram in `in`; returns its round trip in ms, or -1. */
static double check(struct flow *f, ssize_t n, double now, uint64_t *seq) {
  uint32_t index;
  double at;
  memcpy(&index, in, 4);
  memcpy(seq, in + 8, 8);
  memcpy(&at, in + 16, 8);
  int ok = n == size && index == f->index && *seq < f->next;
  for (int i = HEADER; ok && i < size; i++) {
    ok = in[i] == (char)(*seq + index + i);
  }
  if (!ok) {
    corrupted++;
    return -1;
  }
  return now - at;
}

int main(int argc, char **argv) {
  if (argc != 7) {
    fprintf(stderr, "usage: _udp_load PORT FLOWS SECONDS RATE SIZE MAX\n");
    return 2;
  }
  int port = atoi(argv[1]), flows = atoi(argv[2]);
  double seconds = atof(argv[3]), rate = atof(argv[4]);
  size = atoi(argv[5]);
  uint64_t max = strtoull(argv[6], NULL, 10);
  if (flows < 1 || flows > 10000 || size < HEADER || size > MAX_SIZE ||
      !(seconds > 0 && seconds <= 600) || rate < 0 || max < 1) {
    fprintf(stderr, "_udp_load: an argument is out of range\n");
    return 2;
  }
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int ep = epoll_create1(0);
  struct flow *fs = calloc(flows, sizeof *fs);
  double interval = rate > 0 ? 1000.0 / rate : 0;
  for (int i = 0; i < flows; i++) {
    struct flow *f = &fs[i];
    f->index = i;
    f->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    /* Room for a burst of echoes: what is lost should be the server's. */
    int room = 1 << 20;
    if (f->fd >= 0) setsockopt(f->fd, SOL_SOCKET, SO_RCVBUF, &room, sizeof room);
    if (f->fd < 0 || connect(f->fd, (struct sockaddr *)&a, sizeof a)) {
      perror("_udp_load: socket");
      return 1;
    }
    if (rate > 0) {
      f->tag = malloc(RING * sizeof *f->tag);
      f->back = calloc(RING, 1);
      memset(f->tag, 0xff, RING * sizeof *f->tag);
    }
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = f};
    epoll_ctl(ep, EPOLL_CTL_ADD, f->fd, &e);
  }
  double start = now_ms(), cpu0 = cpu_s();
  double stop_at = start + seconds * 1000, stopped = 0, cpu1 = 0;
  for (int i = 0; i < flows; i++) {
    /* Spread the open loop's schedules over one interval. */
    fs[i].due = start + interval * i / flows;
    if (rate == 0) send_next(&fs[i], start);
  }
  struct epoll_event events[256];
  for (;;) {
    double now = now_ms();
    int sending = !stopped;
    if (sending && now >= stop_at) {
      stopped = now;
      cpu1 = cpu_s();
      sending = 0;
    }
    if (stopped) {
      uint64_t out_now = 0;
      for (int i = 0; i < flows && rate == 0; i++) out_now += fs[i].in_flight;
      if (rate > 0) out_now = sent - received - late;
      if (out_now == 0 || now > stopped + LOSS_MS) break;
    }
    double wait = 10;
    if (rate > 0 && sending) {
      for (int i = 0; i < flows; i++) {
        struct flow *f = &fs[i];
        while (f->due <= now && f->next < max) {
          send_next(f, now);
          f->due += interval;
        }
        if (f->next < max && f->due - now < wait) wait = f->due - now;
      }
    } else if (rate == 0) {
      for (int i = 0; i < flows; i++) {
        struct flow *f = &fs[i];
        if (f->in_flight && now - f->sent_at > LOSS_MS) {
          f->in_flight = 0; /* lost: counted at the end as sent - received */
          if (sending && f->next < max) send_next(f, now);
        } else if (!f->in_flight && sending && f->next < max) {
          send_next(f, now); /* a send that failed before */
        }
      }
    }
    int n = epoll_wait(ep, events, 256, wait >= 1 ? (int)wait : 0);
    now = now_ms();
    for (int i = 0; i < n; i++) {
      struct flow *f = events[i].data.ptr;
      for (;;) {
        ssize_t r = recv(f->fd, in, sizeof in, 0);
        if (r < 0) break; /* EAGAIN, or ECONNREFUSED: nothing listens */
        uint64_t seq;
        double rtt = check(f, r, now, &seq);
        if (rtt < 0) continue;
        if (rate == 0) {
          if (!f->in_flight || seq + 1 != f->next) {
            late++; /* back after its loss timeout: counted lost */
            continue;
          }
          f->in_flight = 0;
          received++;
          record(rtt);
          if (!stopped && f->next < max) send_next(f, now);
          continue;
        }
        uint32_t slot = seq % RING;
        if (f->tag[slot] != seq) {
          late++;
        } else if (f->back[slot]) {
          duplicated++;
        } else {
          f->back[slot] = 1;
          if (rtt > LOSS_MS) {
            late++;
          } else {
            received++;
            record(rtt);
          }
        }
      }
    }
    if (rate > 0 && !stopped) {
      int done = 1;
      for (int i = 0; i < flows && done; i++) done = fs[i].next >= max;
      if (done) stop_at = 0;
    }
    if (rate == 0 && !stopped) {
      int done = 1;
      for (int i = 0; i < flows && done; i++) {
        done = fs[i].next >= max && !fs[i].in_flight;
      }
      if (done) stop_at = 0;
    }
  }
  double secs = (stopped - start) / 1000;
  uint64_t lost = sent - received;
  printf("{\"flows\":%d,\"size\":%d,\"rate\":%g,\"seconds\":%.3f,"
         "\"sent\":%llu,\"received\":%llu,\"lost\":%llu,\"late\":%llu,"
         "\"duplicated\":%llu,\"corrupted\":%llu,\"sendErrors\":%llu,"
         "\"messagesPerSecond\":%.0f,\"sentPerSecond\":%.0f,"
         "\"lostPercent\":%.4f,\"rtt\":{\"p50\":%.3f,\"p99\":%.3f,"
         "\"max\":%.3f},\"cpuPercent\":%.0f}\n",
         flows, size, rate, secs, (unsigned long long)sent,
         (unsigned long long)received, (unsigned long long)lost,
         (unsigned long long)late, (unsigned long long)duplicated,
         (unsigned long long)corrupted, (unsigned long long)send_errors,
         received / secs, sent / secs, sent ? 100.0 * lost / sent : 0,
         percentile(0.5), percentile(0.99), rtt_max,
         secs > 0 ? 100 * (cpu1 - cpu0) / secs : 0);
  return 0;
}
