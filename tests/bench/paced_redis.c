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
#include <string.h>
#include <unistd.h>

#include "paced.h"

#define SLOTS 65536

typedef struct {
    int fd;
    uint64_t sent, answered; /* commands sent and answered (Redis answers in order) */
    char buffer[1 << 16];
    size_t filled;
    int64_t due[SLOTS];     /* by command number modulo SLOTS */
    uint64_t member[SLOTS]; /* the pair's member, by command number */
    char kind[SLOTS];       /* 'a' acquire, 'r' release */
} Session;

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
    send_all(s->fd, out, (size_t)length);
}

/* Takes the next whole reply line (an integer or an error): 1 with *error set, 0 when none yet. */
static int next_reply(Session *s, int *error) {
    char *end = memchr(s->buffer, '\n', s->filled);
    if (!end) return 0;
    *error = s->buffer[0] == '-';
    size_t used = (size_t)(end - s->buffer) + 1;
    memmove(s->buffer, s->buffer + used, s->filled - used);
    s->filled -= used;
    return 1;
}

typedef struct {
    Session *sessions;
    Pace *paces;
    int64_t *latencies;
    size_t done, capacity;
    long errors;
} Run;

/* A pair is due: its acquire goes out now, for a member of its own. */
static void begin_pair(int index, int64_t due, int64_t now, void *context) {
    (void)now;
    Run *run = context;
    command(&run->sessions[index], 'a', ((uint64_t)index << 40) | run->paces[index].started, due);
}

/* Reads connection `index`'s replies: an acquire's is followed by the release of its member, a
 * release's or an error ends the pair. Returns how many pairs ended. */
static long read_replies(int index, void *context) {
    Run *run = context;
    Session *s = &run->sessions[index];
    if (!receive(s->fd, s->buffer, sizeof s->buffer, &s->filled)) return 0;
    long ended = 0;
    int error;
    while (next_reply(s, &error)) {
        uint64_t slot = s->answered % SLOTS;
        s->answered++;
        if (error) {
            run->errors++;
            ended++;
        } else if (s->kind[slot] == 'a') {
            command(s, 'r', s->member[slot], s->due[slot]);
        } else {
            if (run->done < run->capacity) run->latencies[run->done++] = now_ns() - s->due[slot];
            ended++;
        }
    }
    return ended;
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
    static Pace paces[MAX_CONNECTIONS];
    struct pollfd fds[MAX_CONNECTIONS];
    for (int i = 0; i < connections; i++) {
        sessions[i].fd = connect_loopback(port);
        set_nonblocking(sessions[i].fd);
        paces[i].phase = interval * i / connections;
        fds[i].fd = sessions[i].fd;
        fds[i].events = POLLIN;
    }
    size_t capacity = (size_t)(rate * seconds) + 16;
    Run run = {.sessions = sessions, .paces = paces, .capacity = capacity, .latencies = calloc(capacity, sizeof(int64_t))};
    int64_t start = now_ns() + 50000000, end = start + (int64_t)(seconds * 1e9);
    run_schedule(paces, fds, connections, start, interval, end, begin_pair, read_replies, &run);
    qsort(run.latencies, run.done, sizeof *run.latencies, compare_int64);
    printf("{\"offered_per_s\": %.0f, \"connections\": %d, \"completed\": %zu, \"errors\": %ld, \"p50_us\": %.0f, \"p90_us\": %.0f, \"p99_us\": %.0f}\n",
           rate, connections, run.done, run.errors, percentile(run.latencies, run.done, 50), percentile(run.latencies, run.done, 90),
           percentile(run.latencies, run.done, 99));
    for (int i = 0; i < connections; i++) close(sessions[i].fd);
    free(run.latencies);
    return 0;
}
