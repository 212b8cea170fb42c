/*
 * The Redis twin of paced_client.c, for the Redis counting semaphore scripts/bench compares
 * ours with: CONNECTIONS connections, each starting a pair on a fixed schedule (RATE pairs/s in
 * all, phases spread evenly): EVALSHA of the acquire script (SHA, loaded by the caller), then, on
 * its reply, ZREM of the same member; a pair's latency runs from when it was due to the ZREM's
 * reply (paced_client.c's definition). One thread, non-blocking sockets, ppoll with nanosecond
 * timeouts; RESP written by hand (two commands, integer or error replies).
 *
 *   paced_redis PORT SHA RATE SECONDS [CONNECTIONS, default 10]
 *
 * Prints one JSON line: completed, errors, p50/p90/p99 in µs.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNECTIONS 256
#define SLOTS 65536

typedef struct {
    int fd;
    uint64_t started, sent, answered; /* pairs started; commands sent and answered (FIFO) */
    int64_t phase;
    char buffer[1 << 16];
    size_t filled;
    int64_t due[SLOTS];     /* by command number modulo SLOTS */
    uint64_t member[SLOTS]; /* the pair's member, by command number */
    char kind[SLOTS];       /* 'a' acquire, 'r' release */
} Session;

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void send_all(Session *s, const char *bytes, size_t length) {
    size_t sent = 0;
    while (sent < length) {
        ssize_t n = send(s->fd, bytes + sent, length - sent, MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (n < 0) die("send");
        sent += (size_t)n;
    }
}

static const char *sha;

static void command(Session *s, char kind, uint64_t member, int64_t due) {
    char m[32], out[512];
    snprintf(m, sizeof m, "m%llu", (unsigned long long)member);
    int length;
    if (kind == 'a') {
        length = snprintf(out, sizeof out, "*7\r\n$7\r\nEVALSHA\r\n$%zu\r\n%s\r\n$1\r\n1\r\n$3\r\nsem\r\n$7\r\n1000000\r\n$6\r\n120000\r\n$%zu\r\n%s\r\n",
                          strlen(sha), sha, strlen(m), m);
    } else {
        length = snprintf(out, sizeof out, "*3\r\n$4\r\nZREM\r\n$3\r\nsem\r\n$%zu\r\n%s\r\n", strlen(m), m);
    }
    uint64_t slot = s->sent % SLOTS;
    s->due[slot] = due;
    s->member[slot] = member;
    s->kind[slot] = kind;
    s->sent++;
    send_all(s, out, (size_t)length);
}

/* The next whole reply line (integer or error): 1 with *error set, 0 when none yet. */
static int next_reply(Session *s, int *error) {
    char *end = memchr(s->buffer, '\n', s->filled);
    if (!end) return 0;
    *error = s->buffer[0] == '-';
    size_t used = (size_t)(end - s->buffer) + 1;
    memmove(s->buffer, s->buffer + used, s->filled - used);
    s->filled -= used;
    return 1;
}

static int compare(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static double percentile(int64_t *values, size_t count, double p) {
    if (count == 0) return 0;
    size_t index = (size_t)((double)count * p / 100);
    return (double)values[index < count ? index : count - 1] / 1000.0;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: paced_redis PORT SHA RATE SECONDS [CONNECTIONS]\n");
        return 2;
    }
    int port = atoi(argv[1]);
    sha = argv[2];
    double rate = atof(argv[3]), seconds = atof(argv[4]);
    int connections = argc > 5 ? atoi(argv[5]) : 10;
    if (connections < 1 || connections > MAX_CONNECTIONS || rate <= 0 || seconds <= 0) return 2;
    int64_t interval = (int64_t)((double)connections / rate * 1e9);
    static Session sessions[MAX_CONNECTIONS];
    struct pollfd fds[MAX_CONNECTIONS];
    for (int i = 0; i < connections; i++) {
        Session *s = &sessions[i];
        s->fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(s->fd, (struct sockaddr *)&address, sizeof address) != 0) die("connect");
        int one = 1;
        setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        s->phase = interval * i / connections;
        int nonblocking = 1;
        if (ioctl(s->fd, FIONBIO, &nonblocking) != 0) die("FIONBIO");
        fds[i].fd = s->fd;
        fds[i].events = POLLIN;
    }
    size_t capacity = (size_t)(rate * seconds) + 16, done = 0;
    int64_t *latencies = calloc(capacity, sizeof *latencies);
    long errors = 0, pending = 0;
    int64_t start = now_ns() + 50000000, end = start + (int64_t)(seconds * 1e9);
    for (;;) {
        int64_t now = now_ns(), next_due = INT64_MAX;
        for (int i = 0; i < connections; i++) {
            Session *s = &sessions[i];
            for (;;) {
                int64_t due = start + s->phase + (int64_t)s->started * interval;
                if (due >= end) break;
                if (due > now) {
                    if (due < next_due) next_due = due;
                    break;
                }
                command(s, 'a', ((uint64_t)i << 40) | s->started, due);
                s->started++;
                pending++;
            }
        }
        if (next_due == INT64_MAX && pending == 0) break;
        struct timespec timeout, *wait = NULL;
        if (next_due != INT64_MAX) {
            int64_t left = next_due - now_ns();
            if (left < 0) left = 0;
            timeout.tv_sec = left / 1000000000;
            timeout.tv_nsec = left % 1000000000;
            wait = &timeout;
        }
        int ready = ppoll(fds, (nfds_t)connections, wait, NULL);
        if (ready < 0 && errno != EINTR) die("ppoll");
        for (int i = 0; ready > 0 && i < connections; i++) {
            if (!(fds[i].revents & POLLIN)) continue;
            Session *s = &sessions[i];
            ssize_t n = recv(s->fd, s->buffer + s->filled, sizeof s->buffer - s->filled, 0);
            if (n == 0) die("the server closed a connection");
            if (n < 0) continue;
            s->filled += (size_t)n;
            int error;
            while (next_reply(s, &error)) {
                uint64_t slot = s->answered % SLOTS;
                s->answered++;
                if (error) {
                    errors++;
                    pending--;
                } else if (s->kind[slot] == 'a') {
                    command(s, 'r', s->member[slot], s->due[slot]);
                } else {
                    if (done < capacity) latencies[done++] = now_ns() - s->due[slot];
                    pending--;
                }
            }
        }
    }
    qsort(latencies, done, sizeof *latencies, compare);
    printf("{\"offered_per_s\": %.0f, \"connections\": %d, \"completed\": %zu, \"errors\": %ld, \"p50_us\": %.0f, \"p90_us\": %.0f, \"p99_us\": %.0f}\n",
           rate, connections, done, errors, percentile(latencies, done, 50), percentile(latencies, done, 90), percentile(latencies, done, 99));
    return 0;
}
