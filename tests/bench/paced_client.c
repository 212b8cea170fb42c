/*
 * An independent open-loop client, to check licensed-bench's open loop against (the C twin of
 * paced_client.py, with less overhead of its own): CONNECTIONS sessions, each starting a
 * check-out + check-in pair on a fixed schedule (RATE pairs/s in all, interval CONNECTIONS / RATE
 * per connection, phases spread evenly), the check-in sent as soon as the check-out's reply is
 * read; a pair's latency runs from when it was due to the check-in's reply (licensed-bench's
 * definition). One thread, non-blocking sockets, ppoll with nanosecond timeouts; the protocol
 * through libprotobuf-c and the code protoc-c generates (clients/c/generated).
 *
 *   paced_client PORT FEATURE RATE SECONDS [CONNECTIONS, default 10]
 *
 * Prints one JSON line: completed, errors, p50/p90/p99 in µs, and how late the client itself sent.
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

#include "licensed/v1/protocol.pb-c.h"

#define MAX_CONNECTIONS 256
#define SLOTS 65536

typedef struct {
    int fd;
    uint64_t next_id;
    uint64_t started;
    int64_t phase;
    uint8_t buffer[1 << 16];
    size_t filled;
    int64_t due[SLOTS]; /* by request id modulo SLOTS */
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

static void send_message(Session *s, Licensed__V1__ClientMessage *message) {
    size_t length = licensed__v1__client_message__get_packed_size(message);
    uint8_t frame[4096];
    if (length + 4 > sizeof frame) die("frame too long");
    frame[0] = (uint8_t)(length >> 24); frame[1] = (uint8_t)(length >> 16); frame[2] = (uint8_t)(length >> 8); frame[3] = (uint8_t)length;
    licensed__v1__client_message__pack(message, frame + 4);
    size_t sent = 0;
    while (sent < length + 4) {
        ssize_t n = send(s->fd, frame + sent, length + 4 - sent, MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (n < 0) die("send");
        sent += (size_t)n;
    }
}

static uint64_t request(Session *s, Licensed__V1__ClientMessage *message, int64_t due) {
    message->request_id = s->next_id++;
    s->due[message->request_id % SLOTS] = due;
    send_message(s, message);
    return message->request_id;
}

static void check_out(Session *s, const char *feature, int64_t due) {
    Licensed__V1__CheckOutRequest body = LICENSED__V1__CHECK_OUT_REQUEST__INIT;
    body.feature = (char *)feature;
    Licensed__V1__ClientMessage message = LICENSED__V1__CLIENT_MESSAGE__INIT;
    message.body_case = LICENSED__V1__CLIENT_MESSAGE__BODY_CHECK_OUT;
    message.check_out = &body;
    request(s, &message, due);
}

static void check_in(Session *s, ProtobufCBinaryData lease, int64_t due) {
    Licensed__V1__CheckInRequest body = LICENSED__V1__CHECK_IN_REQUEST__INIT;
    body.lease_id = lease;
    Licensed__V1__ClientMessage message = LICENSED__V1__CLIENT_MESSAGE__INIT;
    message.body_case = LICENSED__V1__CLIENT_MESSAGE__BODY_CHECK_IN;
    message.check_in = &body;
    request(s, &message, due);
}

/* The next whole frame of `s` (NULL when none yet); the caller frees it. */
static Licensed__V1__ServerMessage *next_reply(Session *s) {
    if (s->filled < 4) return NULL;
    size_t length = ((size_t)s->buffer[0] << 24) | ((size_t)s->buffer[1] << 16) | ((size_t)s->buffer[2] << 8) | s->buffer[3];
    if (s->filled < length + 4) return NULL;
    Licensed__V1__ServerMessage *message = licensed__v1__server_message__unpack(NULL, length, s->buffer + 4);
    if (!message) die("unpack");
    memmove(s->buffer, s->buffer + 4 + length, s->filled - 4 - length);
    s->filled -= 4 + length;
    return message;
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
        fprintf(stderr, "usage: paced_client PORT FEATURE RATE SECONDS [CONNECTIONS]\n");
        return 2;
    }
    int port = atoi(argv[1]);
    const char *feature = argv[2];
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
        s->next_id = 1;
        s->phase = interval * i / connections;
        char user[32];
        snprintf(user, sizeof user, "paced-c-%d", i);
        Licensed__V1__Hello hello = LICENSED__V1__HELLO__INIT;
        hello.protocol_version = LICENSED__V1__PROTOCOL_VERSION__PROTOCOL_VERSION_1;
        hello.client_name = "paced-client-c";
        hello.client_version = "1.0";
        hello.user = user;
        hello.host = "paced-host";
        Licensed__V1__ClientMessage message = LICENSED__V1__CLIENT_MESSAGE__INIT;
        message.body_case = LICENSED__V1__CLIENT_MESSAGE__BODY_HELLO;
        message.hello = &hello;
        request(s, &message, 0);
        Licensed__V1__ServerMessage *reply = NULL;
        while (!(reply = next_reply(s))) {
            ssize_t n = recv(s->fd, s->buffer + s->filled, sizeof s->buffer - s->filled, 0);
            if (n <= 0) die("hello");
            s->filled += (size_t)n;
        }
        if (reply->body_case != LICENSED__V1__SERVER_MESSAGE__BODY_HELLO) die("hello refused");
        licensed__v1__server_message__free_unpacked(reply, NULL);
        fds[i].fd = s->fd;
        fds[i].events = POLLIN;
    }
    for (int i = 0; i < connections; i++) {
        int nonblocking = 1;
        if (ioctl(sessions[i].fd, FIONBIO, &nonblocking) != 0) die("FIONBIO");
    }
    size_t capacity = (size_t)(rate * seconds) + 16, done = 0, late_count = 0;
    int64_t *latencies = calloc(capacity, sizeof *latencies), *lateness = calloc(capacity, sizeof *lateness);
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
                check_out(s, feature, due);
                if (late_count < capacity) lateness[late_count++] = now - due;
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
            Licensed__V1__ServerMessage *reply;
            while ((reply = next_reply(s))) {
                int64_t due = s->due[reply->request_id % SLOTS];
                if (reply->body_case == LICENSED__V1__SERVER_MESSAGE__BODY_CHECK_OUT) {
                    check_in(s, reply->check_out->lease_id, due);
                } else if (reply->body_case == LICENSED__V1__SERVER_MESSAGE__BODY_CHECK_IN) {
                    if (done < capacity) latencies[done++] = now_ns() - due;
                    pending--;
                } else if (reply->body_case == LICENSED__V1__SERVER_MESSAGE__BODY_ERROR) {
                    errors++;
                    pending--;
                }
                licensed__v1__server_message__free_unpacked(reply, NULL);
            }
        }
    }
    qsort(latencies, done, sizeof *latencies, compare);
    qsort(lateness, late_count, sizeof *lateness, compare);
    printf("{\"offered_per_s\": %.0f, \"connections\": %d, \"completed\": %zu, \"errors\": %ld, \"p50_us\": %.0f, \"p90_us\": %.0f, "
           "\"p99_us\": %.0f, \"client_send_late_p50_us\": %.0f, \"client_send_late_p99_us\": %.0f}\n",
           rate, connections, done, errors, percentile(latencies, done, 50), percentile(latencies, done, 90), percentile(latencies, done, 99),
           percentile(lateness, late_count, 50), percentile(lateness, late_count, 99));
    for (int i = 0; i < connections; i++) close(sessions[i].fd);
    free(latencies);
    free(lateness);
    return 0;
}
