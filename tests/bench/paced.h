/*
 * What the paced clients share (paced_client.c for licensed, paced_redis.c for the Redis
 * semaphore): the clock, the schedule, loopback sockets and percentiles. Each operation of a
 * connection is due every `interval` from `start + phase`; the phases spread the connections
 * evenly over one interval. Include after defining _GNU_SOURCE.
 */
#ifndef PACED_H
#define PACED_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>

#define MAX_CONNECTIONS 256

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void die(const char *what) {
    perror(what);
    exit(1);
}

/* A connection to 127.0.0.1:PORT with TCP_NODELAY, blocking until `set_nonblocking`. */
static int connect_loopback(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) die("socket");
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0) die("connect");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void set_nonblocking(int fd) {
    int nonblocking = 1;
    if (ioctl(fd, FIONBIO, &nonblocking) != 0) die("FIONBIO");
}

/* Sends all of `bytes`, retrying while a non-blocking socket is full. */
static void send_all(int fd, const void *bytes, size_t length) {
    size_t sent = 0;
    while (sent < length) {
        ssize_t n = send(fd, (const char *)bytes + sent, length - sent, MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (n < 0) die("send");
        sent += (size_t)n;
    }
}

/* Reads what `fd` has into `buffer` after its `*filled` bytes: 0 when nothing was there. */
static int receive(int fd, void *buffer, size_t capacity, size_t *filled) {
    ssize_t n = recv(fd, (char *)buffer + *filled, capacity - *filled, 0);
    if (n == 0) die("the server closed a connection");
    if (n < 0) return 0;
    *filled += (size_t)n;
    return 1;
}

/* One connection's place in the schedule. */
typedef struct {
    int64_t phase;
    uint64_t started;
} Pace;

/* Starts every operation due by now on the `count` connections, in order on each:
 * begin(index, due, now, context), counting them in *begun. Returns the earliest due time still
 * ahead, INT64_MAX when no more is due before `end`. */
static int64_t start_due(Pace *paces, int count, int64_t start, int64_t interval, int64_t end,
                         void (*begin)(int index, int64_t due, int64_t now, void *context), void *context, long *begun) {
    int64_t now = now_ns(), next_due = INT64_MAX;
    for (int i = 0; i < count; i++) {
        for (;;) {
            int64_t due = start + paces[i].phase + (int64_t)paces[i].started * interval;
            if (due >= end) break;
            if (due > now) {
                if (due < next_due) next_due = due;
                break;
            }
            begin(i, due, now, context);
            paces[i].started++;
            (*begun)++;
        }
    }
    return next_due;
}

/* ppoll's timeout until `due`: NULL (no timeout) for INT64_MAX. */
static struct timespec *timeout_until(int64_t due, struct timespec *timeout) {
    if (due == INT64_MAX) return NULL;
    int64_t left = due - now_ns();
    if (left < 0) left = 0;
    timeout->tv_sec = left / 1000000000;
    timeout->tv_nsec = left % 1000000000;
    return timeout;
}

/* Runs the schedule from `start` to `end` and until every operation begun has finished: starts
 * each operation when it is due (`begin`), and hands each connection with something to read to
 * `readable(index, context)`, which returns how many operations that finished. */
static void run_schedule(Pace *paces, struct pollfd *fds, int count, int64_t start, int64_t interval, int64_t end,
                         void (*begin)(int index, int64_t due, int64_t now, void *context),
                         long (*readable)(int index, void *context), void *context) {
    long pending = 0;
    for (;;) {
        int64_t next_due = start_due(paces, count, start, interval, end, begin, context, &pending);
        if (next_due == INT64_MAX && pending == 0) return;
        struct timespec timeout;
        int ready = ppoll(fds, (nfds_t)count, timeout_until(next_due, &timeout), NULL);
        if (ready < 0 && errno != EINTR) die("ppoll");
        for (int i = 0; ready > 0 && i < count; i++) {
            if (fds[i].revents & POLLIN) pending -= readable(i, context);
        }
    }
}

static int compare_int64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The p-th percentile of the sorted `values` (ns), in µs. */
static double percentile(const int64_t *values, size_t count, double p) {
    if (count == 0) return 0;
    size_t index = (size_t)((double)count * p / 100);
    return (double)values[index < count ? index : count - 1] / 1000.0;
}

#endif
