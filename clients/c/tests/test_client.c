/*
 * Tests of liblicensed-client against a real daemon (started by tests/run):
 *   test_client HOST PORT PROXY_PORT PROXY_PID TOKEN
 * The daemon serves licence c-floating (feature cad, 2 seats) and c-nodelocked (viewer, 2
 * activations, FINGERPRINT_MATCH_ALL) and wants TOKEN as a client token. PROXY_PORT forwards to
 * PORT; SIGUSR1 to PROXY_PID cuts its connections.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "licensed_client.h"

static int failures = 0, passes = 0;

#define CHECK(condition, what)                                                     \
    do {                                                                           \
        if (condition) {                                                           \
            passes++;                                                              \
            printf("ok   - %s\n", what);                                           \
        } else {                                                                   \
            failures++;                                                            \
            printf("FAIL - %s (line %d): %s\n", what, __LINE__, #condition);      \
        }                                                                          \
    } while (0)

static const char *host;
static int port, proxy_port;
static pid_t proxy_pid;
static const char *token;

static lc_client *open_session(int to_port, const char *user, const char *with_token) {
    char reason[256];
    lc_client *c = NULL;
    if (lc_connect(&c, host, to_port, 3000, with_token, reason, sizeof reason) != LC_OK) {
        printf("FAIL - connect: %s\n", reason);
        failures++;
        return NULL;
    }
    int rc = lc_hello(c, user, "c-test-host", "c-tests", "1.0");
    if (rc != LC_OK) {
        printf("     (hello as %s: %s: %s)\n", user, lc_result_name(rc), lc_error_message(c));
    }
    return c;
}

static void floating(void) {
    lc_client *a = open_session(port, "ada", token);
    lc_client *b = open_session(port, "bob", token);
    if (!a || !b) { lc_close(a); lc_close(b); return; }
    lc_lease first, second, third;
    CHECK(lc_checkout(a, "cad", NULL, 1, 0, &first) == LC_OK, "ada checks out a seat of cad");
    CHECK(strcmp(first.license_id, "c-floating") == 0 && first.count == 1 && first.expires_at_ms > 0, "the lease names its licence, count and expiry");
    CHECK(lc_checkout(b, "cad", "1.0", 1, 0, &second) == LC_OK, "bob checks out the second seat");
    CHECK(second.fencing_token > first.fencing_token, "fencing tokens increase");
    int rc = lc_checkout(b, "cad", NULL, 1, 0, &third);
    CHECK(rc == LC_NO_SEATS, "a third check-out gets NO_SEATS");
    CHECK(lc_error_code(b) == LC_NO_SEATS && strlen(lc_error_message(b)) > 0, "... with the code and the server's message");
    CHECK(strcmp(lc_result_name(rc), "NO_SEATS") == 0, "lc_result_name names it");
    CHECK(strcmp(lc_result_name(LC_NOT_ACTIVE), "NOT_ACTIVE") == 0 && strcmp(lc_result_name(LC_STALE_RESUME), "STALE_RESUME") == 0
              && strcmp(lc_result_name(LC_ENVIRONMENT_NOT_ALLOWED), "ENVIRONMENT_NOT_ALLOWED") == 0
              && strcmp(lc_result_name(LC_CLOCK_SETBACK), "CLOCK_SETBACK") == 0
              && strcmp(lc_result_name(LC_ERR_USAGE), "LC_ERR_USAGE") == 0,
          "... and every code of the header, the cluster's too");
    rc = lc_checkout(b, "no-such-feature", NULL, 1, 0, &third);
    CHECK(rc > 0 && rc != LC_NO_SEATS, "an unknown feature is refused with a server code");
    lc_feature_status *features = NULL;
    size_t count = 0;
    CHECK(lc_status(a, "cad", &features, &count) == LC_OK && count == 1, "status of cad");
    CHECK(count == 1 && features[0].capacity == 2 && features[0].in_use == 2, "... 2 of 2 seats in use");
    lc_status_free(features);
    uint32_t lost = 99;
    CHECK(lc_heartbeat(a, &lost) == LC_OK && lost == 0, "a heartbeat renews ada's lease");
    CHECK(lc_checkin(a, &first) == LC_OK, "ada checks her seat in");
    CHECK(lc_checkin(a, &first) == LC_NOT_FOUND, "checking it in twice is NOT_FOUND");
    CHECK(lc_checkin(a, &second) != LC_OK, "ada cannot check in bob's lease");
    CHECK(lc_checkout(b, "cad", NULL, 1, 0, &third) == LC_OK, "now bob gets the freed seat");
    CHECK(lc_start_heartbeats(b) == LC_OK, "background heartbeats start");
    CHECK(lc_start_heartbeats(b) == LC_OK, "... and starting them twice is harmless");
    lc_stop_heartbeats(b);
    CHECK(lc_checkin(b, &second) == LC_OK && lc_checkin(b, &third) == LC_OK, "bob returns both seats");
    lc_close(a);
    lc_close(b);
}

static void tokens(void) {
    char reason[256];
    lc_client *c = NULL;
    CHECK(lc_connect(&c, host, port, 3000, "not-the-token", reason, sizeof reason) == LC_OK, "connect with a wrong token");
    int rc = lc_hello(c, "mallory", "h", "c-tests", "1.0");
    CHECK(rc == LC_UNAUTHENTICATED, "Hello with a wrong token is UNAUTHENTICATED");
    lc_lease lease;
    CHECK(lc_checkout(c, "cad", NULL, 1, 0, &lease) == LC_ERR_USAGE, "no request goes out without a session");
    lc_close(c);
    c = NULL;
    CHECK(lc_connect(&c, host, 1, 1000, NULL, reason, sizeof reason) == LC_ERR_IO && c == NULL, "connecting to a closed port fails");
    CHECK(strstr(reason, "cannot connect") != NULL, "... and says why");
    CHECK(lc_connect(NULL, host, port, 1000, NULL, reason, sizeof reason) == LC_ERR_USAGE, "a NULL handle pointer is a usage error");
}

static void reconnect(void) {
    lc_client *c = open_session(proxy_port, "carol", token);
    if (!c) return;
    lc_lease lease;
    CHECK(lc_checkout(c, "cad", NULL, 1, 0, &lease) == LC_OK, "carol checks out through the proxy");
    kill(proxy_pid, SIGUSR1); /* the proxy cuts the connection */
    struct timespec pause = {0, 300000000};
    nanosleep(&pause, NULL);
    uint32_t lost = 99;
    CHECK(lc_heartbeat(c, &lost) == LC_OK, "after the cut the next request reconnects and resumes");
    CHECK(lost == 0, "... and the session still holds the lease");
    lc_feature_status *features = NULL;
    size_t count = 0;
    CHECK(lc_status(c, "cad", &features, &count) == LC_OK && count == 1 && features[0].in_use == 1, "one seat in use, not two");
    lc_status_free(features);
    CHECK(lc_checkin(c, &lease) == LC_OK, "carol returns the seat on the new connection");
    lc_close(c);
}

static void activation(void) {
    lc_client *c = open_session(port, "dave", token);
    if (!c) return;
    const char *fingerprint[] = {"board-1234", "mac-00:11:22:33:44:55"};
    lc_activation act;
    int rc = lc_activate(c, "c-nodelocked", NULL, fingerprint, 2, "dave-ws", &act);
    CHECK(rc == LC_OK, "dave's machine activates; the certificate verifies against the server key");
    if (rc != LC_OK) { printf("     (%s: %s)\n", lc_result_name(rc), lc_error_message(c)); lc_close(c); return; }
    CHECK(strncmp(act.activation_id, "act-", 4) == 0 && strcmp(act.license_id, "c-nodelocked") == 0, "the activation names itself and its licence");
    CHECK(act.certificate && act.certificate_len > 64 && act.valid_until_ms > 0, "the certificate is kept for offline use");
    const uint8_t *key = lc_server_public_key(c);
    CHECK(key != NULL, "the server key from HelloResponse");
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t now_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    lc_activation offline;
    memset(&offline, 0, sizeof offline);
    CHECK(lc_verify_certificate(act.certificate, act.certificate_len, key, now_ms, fingerprint, 2, &offline) == LC_OK, "offline verification passes");
    CHECK(strcmp(offline.activation_id, act.activation_id) == 0, "... and reads the activation id from the claims");
    const char *other[] = {"board-9999", "mac-00:11:22:33:44:55"};
    CHECK(lc_verify_certificate(act.certificate, act.certificate_len, key, now_ms, other, 2, NULL) == LC_ERR_CERTIFICATE,
          "another machine's fingerprint fails (FINGERPRINT_MATCH_ALL)");
    CHECK(lc_verify_certificate(act.certificate, act.certificate_len, key, act.valid_until_ms + 1, NULL, 0, NULL) == LC_ERR_CERTIFICATE,
          "after valid_until the certificate fails");
    uint8_t *tampered = malloc(act.certificate_len);
    int all_rejected = 1;
    for (size_t i = 0; i < act.certificate_len; i++) {
        memcpy(tampered, act.certificate, act.certificate_len);
        tampered[i] ^= 0x01;
        if (lc_verify_certificate(tampered, act.certificate_len, key, now_ms, NULL, 0, NULL) == LC_OK) all_rejected = 0;
    }
    free(tampered);
    CHECK(all_rejected, "flipping any bit of the certificate makes it fail");
    uint8_t wrong_key[32];
    memcpy(wrong_key, key, 32);
    wrong_key[0] ^= 0x80;
    CHECK(lc_verify_certificate(act.certificate, act.certificate_len, wrong_key, now_ms, NULL, 0, NULL) == LC_ERR_CERTIFICATE,
          "another key's signature fails");
    lc_activation again;
    CHECK(lc_activate(c, "c-nodelocked", NULL, fingerprint, 2, "dave-ws", &again) == LC_OK && again.existing, "activating again is idempotent");
    lc_activation_free(&again);
    lc_activation refreshed;
    CHECK(lc_validate_activation(c, act.activation_id, fingerprint, 2, &refreshed) == LC_OK, "validation refreshes the certificate");
    lc_activation_free(&refreshed);
    const char *third_machine[] = {"board-3"};
    const char *fourth_machine[] = {"board-4"};
    lc_activation x, y;
    CHECK(lc_activate(c, "c-nodelocked", NULL, third_machine, 1, "w3", &x) == LC_OK, "a second machine activates");
    rc = lc_activate(c, "c-nodelocked", NULL, fourth_machine, 1, "w4", &y);
    CHECK(rc == LC_ACTIVATION_LIMIT, "a third machine hits ACTIVATION_LIMIT");
    lc_activation_free(&x);
    lc_activation_free(&act);
    lc_close(c);
}

/* Several threads share one handle: every call gets its own reply. */
static void *hammer(void *argument) {
    lc_client *c = argument;
    long bad = 0;
    for (int i = 0; i < 25; i++) {
        lc_feature_status *features = NULL;
        size_t count = 0;
        uint32_t lost = 0;
        if (lc_status(c, "cad", &features, &count) != LC_OK || count != 1 || strcmp(features[0].feature, "cad") != 0) bad++;
        lc_status_free(features);
        if (lc_heartbeat(c, &lost) != LC_OK || lost != 0) bad++;
    }
    return (void *)bad;
}

static void threads(void) {
    lc_client *c = open_session(port, "ivan", token);
    if (!c) return;
    lc_lease lease;
    CHECK(lc_checkout(c, "cad", NULL, 1, 0, &lease) == LC_OK, "ivan checks out before sharing his handle");
    pthread_t workers[4];
    for (int i = 0; i < 4; i++) pthread_create(&workers[i], NULL, hammer, c);
    long bad = 0;
    for (int i = 0; i < 4; i++) {
        void *result = NULL;
        pthread_join(workers[i], &result);
        bad += (long)result;
    }
    CHECK(bad == 0, "4 threads x 25 status + heartbeat calls on one handle all get their own answers");
    CHECK(lc_checkin(c, &lease) == LC_OK, "ivan returns the seat");
    lc_close(c);
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s HOST PORT PROXY_PORT PROXY_PID TOKEN\n", argv[0]);
        return 2;
    }
    host = argv[1];
    port = atoi(argv[2]);
    proxy_port = atoi(argv[3]);
    proxy_pid = (pid_t)atoi(argv[4]);
    token = argv[5];
    floating();
    tokens();
    reconnect();
    threads();
    activation();
    printf("c client: %d passed, %d failed\n", passes, failures);
    return failures == 0 ? 0 : 1;
}
