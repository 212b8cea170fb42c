/* offline_check — the machine's side of air-gapped activation through the C library, for the
 * end-to-end test (scripts/test-airgap):
 *
 *   offline_check install CERTIFICATE_FILE DIR [--key HEX] COMPONENT...   lc_offline_install
 *   offline_check verify FEATURE DIR [--key HEX] COMPONENT...             lc_offline_verify
 *   offline_check environment ROOT                                       lc_detect_environment
 *   offline_check activate SERVER LICENSE COMPONENT...                    lc_activate (online; reports the environment)
 *
 * COMPONENTs are the machine's fingerprint component ids (`licensectl fingerprint --json`).
 * Prints "ok <activation id> <licence id> <valid until ms>" or "refused <code name>: <why>";
 * exits 0 only on ok. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "licensed_client.h"

static int hex_key(const char *hex, uint8_t key[32]) {
    if (strlen(hex) != 64) return -1;
    for (int i = 0; i < 32; i++) {
        unsigned int byte;
        if (sscanf(hex + 2 * i, "%2x", &byte) != 1) return -1;
        key[i] = (uint8_t)byte;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "environment") == 0) {
        lc_environment environment;
        if (lc_detect_environment(argv[2], &environment) != LC_OK) return 1;
        printf("%s%s | %s\n", environment.is_virtual ? "virtual" : "physical", environment.container[0] ? " container" : "",
               environment.description);
        return 0;
    }
    if (argc >= 5 && strcmp(argv[1], "activate") == 0) {
        lc_client *client = NULL;
        char reason[256];
        if (lc_connect(&client, argv[2], 0, 5000, NULL, reason, sizeof reason) != LC_OK) {
            printf("refused connect: %s\n", reason);
            return 1;
        }
        lc_activation activation;
        int rc = lc_hello(client, "c-user", "c-host", "offline_check", "1.0");
        if (rc == LC_OK)
            rc = lc_activate(client, argv[3], NULL, (const char *const *)(argv + 4), (size_t)(argc - 4), "c-machine", &activation);
        if (rc == LC_OK) {
            printf("ok %s %s\n", activation.activation_id, activation.license_id);
            lc_activation_free(&activation);
        } else {
            printf("refused %s: %s\n", lc_result_name(rc), lc_error_message(client));
        }
        lc_close(client);
        return rc == LC_OK ? 0 : 1;
    }
    if (argc < 5 || (strcmp(argv[1], "install") != 0 && strcmp(argv[1], "verify") != 0)) {
        fprintf(stderr, "usage: offline_check install FILE DIR [--key HEX] COMPONENT... | verify FEATURE DIR [--key HEX] COMPONENT...\n");
        return 2;
    }
    int first = 4;
    uint8_t key[32];
    const uint8_t *pinned = NULL;
    if (strcmp(argv[4], "--key") == 0) {
        if (argc < 7 || hex_key(argv[5], key) != 0) { fprintf(stderr, "offline_check: --key takes 64 hex digits\n"); return 2; }
        pinned = key;
        first = 6;
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t now_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    const char *const *fingerprint = (const char *const *)(argv + first);
    size_t count = (size_t)(argc - first);
    lc_activation activation;
    char why[512] = "";
    int rc = strcmp(argv[1], "install") == 0
                 ? lc_offline_install(argv[2], argv[3], pinned, fingerprint, count, now_ms, &activation, why, sizeof why)
                 : lc_offline_verify(argv[3], argv[2], pinned, fingerprint, count, now_ms, &activation, why, sizeof why);
    if (rc != LC_OK) {
        printf("refused %s: %s\n", lc_result_name(rc), why);
        return 1;
    }
    printf("ok %s %s %lld\n", activation.activation_id, activation.license_id, (long long)activation.valid_until_ms);
    lc_activation_free(&activation);
    return 0;
}
