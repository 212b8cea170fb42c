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
#include <string.h>
#include <unistd.h>

#include "licensed/v1/protocol.pb-c.h"
#include "paced.h"

#define SLOTS 65536

typedef struct {
    int fd;
    uint64_t next_id;
    uint8_t buffer[1 << 16];
    size_t filled;
    int64_t due[SLOTS]; /* by request id modulo SLOTS */
} Session;

static void send_message(Session *s, Licensed__V1__ClientMessage *message) {
    size_t length = licensed__v1__client_message__get_packed_size(message);
    uint8_t frame[4096];
    if (length + 4 > sizeof frame) die("frame too long");
    frame[0] = (uint8_t)(length >> 24); frame[1] = (uint8_t)(length >> 16); frame[2] = (uint8_t)(length >> 8); frame[3] = (uint8_t)length;
    licensed__v1__client_message__pack(message, frame + 4);
    send_all(s->fd, frame, length + 4);
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

typedef struct {
    Session *sessions;
    const char *feature;
    int64_t *latencies, *lateness;
    size_t done, late_count, capacity;
    long errors;
} Run;

/* A pair is due: its check-out goes out now. */
static void begin_pair(int index, int64_t due, int64_t now, void *context) {
    Run *run = context;
    check_out(&run->sessions[index], run->feature, due);
    if (run->late_count < run->capacity) run->lateness[run->late_count++] = now - due;
}

/* Reads connection `index`'s replies: a check-out's is followed by the check-in of its lease,
 * a check-in's or an error ends the pair. Returns how many pairs ended. */
static long read_replies(int index, void *context) {
    Run *run = context;
    Session *s = &run->sessions[index];
    if (!receive(s->fd, s->buffer, sizeof s->buffer, &s->filled)) return 0;
    long ended = 0;
    Licensed__V1__ServerMessage *reply;
    while ((reply = next_reply(s))) {
        int64_t due = s->due[reply->request_id % SLOTS];
        if (reply->body_case == LICENSED__V1__SERVER_MESSAGE__BODY_CHECK_OUT) {
            check_in(s, reply->check_out->lease_id, due);
        } else if (reply->body_case == LICENSED__V1__SERVER_MESSAGE__BODY_CHECK_IN) {
            if (run->done < run->capacity) run->latencies[run->done++] = now_ns() - due;
            ended++;
        } else if (reply->body_case == LICENSED__V1__SERVER_MESSAGE__BODY_ERROR) {
            run->errors++;
            ended++;
        }
        licensed__v1__server_message__free_unpacked(reply, NULL);
    }
    return ended;
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
    static Pace paces[MAX_CONNECTIONS];
    struct pollfd fds[MAX_CONNECTIONS];
    for (int i = 0; i < connections; i++) {
        Session *s = &sessions[i];
        s->fd = connect_loopback(port);
        s->next_id = 1;
        paces[i].phase = interval * i / connections;
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
    for (int i = 0; i < connections; i++) set_nonblocking(sessions[i].fd);
    size_t capacity = (size_t)(rate * seconds) + 16;
    Run run = {.sessions = sessions, .feature = feature, .capacity = capacity,
               .latencies = calloc(capacity, sizeof(int64_t)), .lateness = calloc(capacity, sizeof(int64_t))};
    int64_t start = now_ns() + 50000000, end = start + (int64_t)(seconds * 1e9);
    run_schedule(paces, fds, connections, start, interval, end, begin_pair, read_replies, &run);
    qsort(run.latencies, run.done, sizeof *run.latencies, compare_int64);
    qsort(run.lateness, run.late_count, sizeof *run.lateness, compare_int64);
    printf("{\"offered_per_s\": %.0f, \"connections\": %d, \"completed\": %zu, \"errors\": %ld, \"p50_us\": %.0f, \"p90_us\": %.0f, "
           "\"p99_us\": %.0f, \"client_send_late_p50_us\": %.0f, \"client_send_late_p99_us\": %.0f}\n",
           rate, connections, run.done, run.errors, percentile(run.latencies, run.done, 50), percentile(run.latencies, run.done, 90),
           percentile(run.latencies, run.done, 99), percentile(run.lateness, run.late_count, 50), percentile(run.lateness, run.late_count, 99));
    for (int i = 0; i < connections; i++) close(sessions[i].fd);
    free(run.latencies);
    free(run.lateness);
    return 0;
}
