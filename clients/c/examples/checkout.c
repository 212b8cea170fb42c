/* Takes a seat of a feature, works, returns it: checkout HOST PORT FEATURE [SECONDS] */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "licensed_client.h"

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: %s HOST PORT FEATURE [SECONDS]\n", argv[0]); return 2; }
    char reason[256];
    lc_client *client = NULL;
    if (lc_connect(&client, argv[1], atoi(argv[2]), 5000, getenv("LICENSED_TOKEN"), reason, sizeof reason) != LC_OK) {
        fprintf(stderr, "checkout: %s\n", reason);
        return 1;
    }
    lc_lease lease;
    int rc = lc_hello(client, getenv("USER"), "example-host", "checkout-example", "1.0");
    if (rc == LC_OK) rc = lc_checkout(client, argv[3], NULL, 1, 0, &lease);
    if (rc != LC_OK) {
        fprintf(stderr, "checkout: %s: %s\n", lc_result_name(rc), lc_error_message(client));
        lc_close(client);
        return 1;
    }
    printf("granted %s from licence %s; working\n", lease.feature, lease.license_id);
    lc_start_heartbeats(client); /* keeps the lease while we work */
    sleep(argc > 4 ? (unsigned)atoi(argv[4]) : 1);
    rc = lc_checkin(client, &lease);
    printf("returned: %s\n", lc_result_name(rc));
    lc_close(client);
    return rc == LC_OK ? 0 : 1;
}
