/*
 * test_cluster.c — the C client across a 3-node cluster (3 etcd members, 3 licensed nodes on
 * loopback, driven by tests/cluster/cluster.py): a client that connects to a standby first is
 * sent to the active server; a client holding 2 seats with background heartbeats keeps both
 * leases (same ids, same fencing tokens) across 3 kill -9 of the active node; with every node
 * stopped the state callback reports "no server" and the lease time running down, and when the
 * nodes come back the leases are still held.
 *
 *     test_cluster CLUSTER_PY CLUSTER_DIR
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "licensed_client.h"

static int passed, failed;

#define CHECK(condition, what)                                   \
    do {                                                         \
        if (condition) { passed++; printf("ok   - %s\n", what); } \
        else { failed++; printf("FAIL - %s\n", what); }          \
        fflush(stdout);                                          \
    } while (0)

static const char *cluster_py, *cluster_dir;

/* Runs `cluster.py COMMAND DIR [ARG]` and returns its output (malloc'd, trailing newline cut). */
static char *cluster(const char *command, const char *argument) {
    char line[4096];
    snprintf(line, sizeof line, "/usr/bin/python3 '%s' %s '%s' %s", cluster_py, command, cluster_dir, argument ? argument : "");
    FILE *pipe = popen(line, "r");
    if (!pipe) return strdup("");
    size_t size = 0, used = 0;
    char *out = NULL;
    char chunk[512];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, pipe)) > 0) {
        if (used + n + 1 > size) {
            size = (used + n + 1) * 2;
            char *grown = realloc(out, size);
            if (!grown) break;
            out = grown;
        }
        memcpy(out + used, chunk, n);
        used += n;
    }
    int status = pclose(pipe);
    if (!out) out = strdup("");
    else out[used] = '\0';
    while (used > 0 && (out[used - 1] == '\n' || out[used - 1] == ' ')) out[--used] = '\0';
    if (status != 0) printf("     (cluster.py %s exited with %d)\n", command, status);
    return out;
}

static void sleep_ms(long ms) {
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void hex(const uint8_t *bytes, size_t len, char *out) {
    for (size_t i = 0; i < len; i++) sprintf(out + 2 * i, "%02x", bytes[i]);
}

/* What the state callback heard. */
typedef struct heard {
    pthread_mutex_t lock;
    int connected;          /* CONNECTED reports */
    char servers[8][64];    /* the servers of the CONNECTED reports, in order */
    int no_server;          /* NO_SERVER reports */
    int64_t no_server_left[64];
} heard;

static void on_state(lc_client *c, int state, int64_t lease_ms_left, const char *server, void *context) {
    heard *h = context;
    pthread_mutex_lock(&h->lock);
    if (state == LC_STATE_CONNECTED) {
        if (h->connected < 8) snprintf(h->servers[h->connected], sizeof h->servers[0], "%s", server);
        h->connected++;
    } else if (state == LC_STATE_NO_SERVER) {
        if (h->no_server < 64) h->no_server_left[h->no_server] = lease_ms_left;
        h->no_server++;
    }
    pthread_mutex_unlock(&h->lock);
}

/* Waits up to `ms` for the client to be connected to `server` (any server when NULL). */
static int wait_connected(lc_client *c, const char *server, long ms) {
    char now[128];
    for (long waited = 0; waited <= ms; waited += 50) {
        if (lc_state(c, NULL, now, sizeof now) == LC_STATE_CONNECTED && (!server || strcmp(now, server) == 0)) return 1;
        sleep_ms(50);
    }
    return 0;
}

/* The server lists exactly the two leases, with their fencing tokens. */
static int leases_held(const lc_lease *a, const lc_lease *b) {
    char expected[2][80], first[33], second[33];
    hex(a->lease_id, 16, first);
    hex(b->lease_id, 16, second);
    snprintf(expected[0], sizeof expected[0], "%s %llu", first, (unsigned long long)a->fencing_token);
    snprintf(expected[1], sizeof expected[1], "%s %llu", second, (unsigned long long)b->fencing_token);
    char want[200];
    if (strcmp(first, second) < 0) snprintf(want, sizeof want, "%s\n%s", expected[0], expected[1]);
    else snprintf(want, sizeof want, "%s\n%s", expected[1], expected[0]);
    char *listed = cluster("leases", "cad");
    int same = strcmp(listed, want) == 0;
    if (!same) printf("     (the active node lists:\n%s\n      expected:\n%s)\n", listed, want);
    free(listed);
    return same;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: test_cluster CLUSTER_PY CLUSTER_DIR\n");
        return 2;
    }
    cluster_py = argv[1];
    cluster_dir = argv[2];
    char *servers = cluster("servers", NULL);
    char *active = cluster("active", NULL);

    /* A list that names a standby first. */
    char list[512] = "";
    char *copy = strdup(servers), *save = NULL;
    char standbys[512] = "";
    for (char *s = strtok_r(copy, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
        if (strcmp(s, active) != 0) snprintf(standbys + strlen(standbys), sizeof standbys - strlen(standbys), "%s,", s);
    }
    snprintf(list, sizeof list, "%s%s", standbys, active);
    free(copy);

    char error[256] = "";
    lc_client *c = NULL;
    int rc = lc_connect(&c, list, 0, 3000, NULL, error, sizeof error);
    CHECK(rc == LC_OK, "lc_connect takes the cluster's list (a standby first)");
    if (rc != LC_OK) {
        printf("     (%s: %s)\n", lc_result_name(rc), error);
        return 1;
    }
    heard h = {.lock = PTHREAD_MUTEX_INITIALIZER};
    lc_set_state_callback(c, on_state, &h);
    rc = lc_hello(c, "ada", "ws1", "ctest", "1.0");
    char server[128] = "";
    CHECK(rc == LC_OK && lc_state(c, NULL, server, sizeof server) == LC_STATE_CONNECTED && strcmp(server, active) == 0,
          "Hello to the standby is redirected to the active server");
    if (rc != LC_OK) printf("     (%s: %s)\n", lc_result_name(rc), lc_error_message(c));

    lc_lease first, second;
    CHECK(lc_checkout(c, "cad", NULL, 1, 0, &first) == LC_OK && lc_checkout(c, "cad", NULL, 1, 0, &second) == LC_OK,
          "two seats of cad checked out");
    CHECK(leases_held(&first, &second), "the active node lists both, with their fencing tokens");
    int64_t left = 0;
    lc_state(c, &left, NULL, 0);
    CHECK(left > 8000 && left <= 10000, "lc_state: the leases have about their 10 s TTL left");
    CHECK(lc_start_heartbeats(c) == LC_OK, "background heartbeats started");

    /* Three kill -9 of the active node; the old one rejoins as a standby each time. */
    for (int round = 1; round <= 3; round++) {
        char *successor = cluster("kill-active", NULL);
        char what[200];
        snprintf(what, sizeof what, "kill %d: the heartbeat thread follows the new active server %s", round, successor);
        CHECK(wait_connected(c, successor, 15000), what);
        sleep_ms(1500); /* a beat or more on the new active */
        snprintf(what, sizeof what, "kill %d: the same two leases, same fencing tokens, held there", round);
        CHECK(leases_held(&first, &second), what);
        uint32_t gone = 99;
        int64_t remaining = -1;
        snprintf(what, sizeof what, "kill %d: still this session's: a heartbeat renews them, none lost, the handle holds them", round);
        CHECK(lc_heartbeat(c, &gone) == LC_OK && gone == 0 && lc_state(c, &remaining, NULL, 0) == LC_STATE_CONNECTED && remaining > 8000, what);
        free(successor);
    }
    uint32_t lost = 99;
    CHECK(lc_heartbeat(c, &lost) == LC_OK && lost == 0, "a heartbeat after the failovers renews, nothing lost");
    pthread_mutex_lock(&h.lock);
    int failovers = h.connected;
    int distinct = 0;
    for (int i = 1; i < failovers && i < 8; i++) distinct += strcmp(h.servers[i], h.servers[i - 1]) != 0;
    pthread_mutex_unlock(&h.lock);
    CHECK(distinct >= 3, "the state callback told each failover and to whom");

    /* Every node stopped: "no server", the lease time running down; then they come back. */
    pthread_mutex_lock(&h.lock);
    h.no_server = 0; /* what the failovers above reported is not counted here */
    pthread_mutex_unlock(&h.lock);
    free(cluster("stop-all", NULL));
    long waited = 0;
    int reports = 0;
    int64_t earliest = -1, latest = -1;
    while (waited < 8000) {
        pthread_mutex_lock(&h.lock);
        reports = h.no_server;
        if (reports > 0) earliest = h.no_server_left[0], latest = h.no_server_left[reports < 64 ? reports - 1 : 63];
        pthread_mutex_unlock(&h.lock);
        if (reports >= 2 && earliest - latest >= 1000) break;
        sleep_ms(100);
        waited += 100;
    }
    int state = lc_state(c, &left, NULL, 0);
    CHECK(reports >= 2 && earliest > latest && latest > 0, "with every node stopped the callback reports no server, the lease time decreasing");
    printf("     (%d reports, lease time left %lld ms -> %lld ms)\n", reports, (long long)earliest, (long long)latest);
    CHECK((state == LC_STATE_NO_SERVER || state == LC_STATE_RECONNECTING) && left >= 0 && left < 10000,
          "lc_state says the same without a call");
    printf("     (lc_state: %s, %lld ms left)\n", state == LC_STATE_NO_SERVER ? "no server" : state == LC_STATE_RECONNECTING ? "reconnecting" : "connected",
           (long long)left);
    char *back = cluster("start-all", NULL);
    CHECK(wait_connected(c, back, 15000), "the nodes come back: the client is connected again");
    free(back);
    CHECK(lc_heartbeat(c, &lost) == LC_OK && lost == 0, "its heartbeat renews");
    CHECK(leases_held(&first, &second), "... and both leases are still held, same ids, same fencing tokens");
    CHECK(lc_checkin(c, &first) == LC_OK && lc_checkin(c, &second) == LC_OK, "both are checked in by this session");
    lc_state(c, &left, NULL, 0);
    CHECK(left == -1, "lc_state: no lease held");
    lc_close(c);
    free(servers);
    free(active);
    printf("c client across a cluster: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
