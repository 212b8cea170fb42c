/*
 * licensed_client.h — C client for the licensed floating-licence server.
 *
 * One handle is one session, on one server or on a cluster's active server. Every function is
 * safe to call from several threads on the same handle (requests are serialised by a mutex inside
 * the handle); there is no global state. The library speaks the length-prefixed protobuf protocol of Protos/licensed/v1
 * (4-byte big-endian length, then a ClientMessage / ServerMessage) through libprotobuf-c, and
 * verifies activation certificates with OpenSSL's Ed25519.
 *
 *     lc_client *c = NULL;
 *     if (lc_connect(&c, "lic1.example.com,lic2.example.com,lic3.example.com", 27070, 5000, NULL, NULL, 0) != LC_OK) ...
 *     lc_hello(c, "ada", "ws1", "acme-cad", "2026.2");
 *     lc_lease lease;
 *     if (lc_checkout(c, "cad.solver", NULL, 1, 0, &lease) == LC_OK) {
 *         lc_start_heartbeats(c);      // keep the lease alive in the background
 *         ... work ...
 *         lc_checkin(c, &lease);
 *     } else fprintf(stderr, "%s\n", lc_error_message(c));
 *     lc_close(c);
 *
 * Link with: pkg-config --cflags --libs licensed-client
 *
 * Failover. Given a cluster's servers, the library talks to the active one: a standby answers
 * Hello with NOT_ACTIVE and the active server's address, and the library goes there. When the
 * connection is lost, or the server says it cannot act now (UNAVAILABLE), or it has become a
 * standby, a call walks the list (the last server that served first), resumes the session on the
 * server that serves — its leases and their fencing tokens with it, no new check-out — and sends
 * the request again; between walks that find no server it backs off (jittered, 50 ms doubling to
 * 1 s) until the handle's timeout. The background heartbeat thread does the same, and after a
 * failed beat walks again every 200 ms. A cluster elects a new active server about one election
 * TTL (3 s by default) after the old one is lost, and the leases live for their TTL (at least 10 s)
 * from their last renewal: an application that keeps heartbeating sees a failover as a pause of a
 * few seconds in its calls, and loses no seat. lc_state and the state callback say when no server
 * serves and how long the leases have left; a server that comes back within that time still holds
 * them.
 */
#ifndef LICENSED_CLIENT_H
#define LICENSED_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Results. LC_OK is success. Positive values are the server's protocol error codes (the numbers
 * of licensed.v1.Error.Code); negative values are failures on this side.
 */
typedef enum lc_result {
    LC_OK = 0,
    LC_INVALID_ARGUMENT = 1,
    LC_UNAUTHENTICATED = 2,
    LC_PERMISSION_DENIED = 3,
    LC_NOT_FOUND = 4,
    LC_NO_SEATS = 5,
    LC_LICENSE_EXPIRED = 6,
    LC_NOT_YET_VALID = 7,
    LC_VERSION_NOT_ALLOWED = 8,
    LC_NETWORK_NOT_ALLOWED = 9,
    LC_USER_NOT_ALLOWED = 10,
    LC_ACTIVATION_LIMIT = 11,
    LC_DEVICE_LIMIT = 12,
    LC_BASE_REQUIRED = 13,
    LC_DEADLINE_EXCEEDED = 14,
    LC_RESOURCE_EXHAUSTED = 15,
    LC_UNIMPLEMENTED = 16,
    LC_UNAVAILABLE = 17,
    LC_INTERNAL = 18,
    LC_NOT_ACTIVE = 19,      /* a standby of a cluster: the active server is elsewhere */
    LC_STALE_RESUME = 20,    /* a resume overtaken by a newer one of the same client */
    LC_ENVIRONMENT_NOT_ALLOWED = 21, /* the licence does not allow this machine's environment (VM, container) */
    LC_CLOCK_SETBACK = 22,   /* the server's clock is set back: time-limited licences grant nothing */
    /* This side: */
    LC_ERR_IO = -1,          /* the connection failed or closed (and no server took the session over in time) */
    LC_ERR_PROTOCOL = -2,    /* the server sent something that is not a valid reply */
    LC_ERR_TIMEOUT = -3,     /* no reply within the handle's timeout */
    LC_ERR_NO_MEMORY = -4,   /* an allocation failed */
    LC_ERR_CERTIFICATE = -5, /* an activation certificate did not verify */
    LC_ERR_USAGE = -6        /* a bad argument to this library (NULL handle, no session yet, ...) */
} lc_result;

/* An opaque connection and session. */
typedef struct lc_client lc_client;

/* A granted floating lease. */
typedef struct lc_lease {
    uint8_t lease_id[16];    /* pass back to lc_checkin */
    char license_id[128];    /* the licence it was granted from */
    char feature[128];
    uint32_t count;          /* seats */
    int64_t expires_at_ms;   /* without a heartbeat, the server reclaims it then */
    int overage;             /* non-zero: granted beyond the purchased count (TRUE_UP) */
    uint64_t fencing_token;  /* strictly increasing per feature */
    char warnings[512];      /* server warnings, "; "-separated (expiry soon, ...) */
} lc_lease;

/* A node-locked activation and its verified certificate. */
typedef struct lc_activation {
    char activation_id[128];
    char license_id[128];
    int64_t valid_until_ms;  /* the certificate allows offline use until then */
    int existing;            /* non-zero: this machine was already activated */
    int overage;
    uint8_t *certificate;    /* the serialized ActivationCertificate, to store for offline checks */
    size_t certificate_len;  /* (owned by the struct: free with lc_activation_free) */
} lc_activation;

/* One feature of lc_status. */
typedef struct lc_feature_status {
    char feature[128];
    uint32_t capacity;       /* seats licensed (0 with unlimited set) */
    int unlimited;
    uint32_t in_use;
    uint32_t queued;
} lc_feature_status;

/*
 * Connects to the first of `servers` that accepts a connection, within timeout_ms (which also
 * bounds every later call, failovers included). `servers` is one server or a cluster's list:
 * "host:port,host:port,…" (also "[v6 address]:port" and "port@host"; an entry without a port
 * uses `port`, which may be 0 when every entry has one); NULL reads LICENSED_SERVERS, then
 * LICENSED_SERVER, from the environment. token is the access token the server may require (NULL
 * or "" for none). On success *out is a new handle; on failure *out is NULL and the result says why
 * (no handle means no lc_error_message: the reason is written to errbuf when it is not NULL).
 */
int lc_connect(lc_client **out, const char *servers, int port, int timeout_ms, const char *token, char *errbuf, size_t errbuf_len);

/*
 * Opens the session: user, host name, client software name and version (NULL for empty). Must
 * come before any other request. On a standby it follows the redirect to the active server. After
 * a lost connection the library resumes this session on whichever server serves (see Failover),
 * so leases survive a dropped connection and a failover.
 */
int lc_hello(lc_client *c, const char *user, const char *host, const char *client_name, const char *client_version);

/*
 * Checks out `count` seats (0 means 1) of `feature` for client software `version` (NULL: the
 * Hello's). With wait_ms > 0 and no seat free, waits in the server's queue up to that long. A
 * random checkout key is generated inside, so the retry after a reconnect can never take a second
 * seat. Fills *lease on LC_OK.
 */
int lc_checkout(lc_client *c, const char *feature, const char *version, uint32_t count, uint32_t wait_ms, lc_lease *lease);

/* Returns a lease. */
int lc_checkin(lc_client *c, const lc_lease *lease);

/*
 * Renews the leases this handle holds now (those checked out and not in). *lost (if not NULL) is
 * set to the number of them the server no longer had (reclaimed or revoked); they are no longer
 * held.
 */
int lc_heartbeat(lc_client *c, uint32_t *lost);

/*
 * Starts a background thread that heartbeats at the interval the server asked for, until
 * lc_stop_heartbeats or lc_close. Errors of background heartbeats are kept for lc_error_message.
 */
int lc_start_heartbeats(lc_client *c);

/* Stops the background heartbeat thread (no-op when none runs). */
void lc_stop_heartbeats(lc_client *c);

/*
 * Activates this machine for a node-locked licence (license_id, or feature to let the server
 * choose; either may be NULL) with its fingerprint components and a machine name (NULL: the
 * Hello's host). The certificate in the reply is verified against the server key the server
 * presented in HelloResponse before LC_OK is returned. Free *activation with lc_activation_free.
 * Where the machine runs (lc_detect_environment) goes with the request: a licence that allows only
 * some environments refuses others with LC_ENVIRONMENT_NOT_ALLOWED.
 */
int lc_activate(lc_client *c, const char *license_id, const char *feature, const char *const *fingerprint, size_t fingerprint_count,
                const char *machine_name, lc_activation *activation);

/* Refreshes an activation (last seen, new certificate; verified as in lc_activate). */
int lc_validate_activation(lc_client *c, const char *activation_id, const char *const *fingerprint, size_t fingerprint_count,
                           lc_activation *activation);

/*
 * Verifies a stored certificate offline: signature by server_public_key (32 raw bytes) over
 * "licensed.v1.activation\0" || claims, validity at now_ms, and that fingerprint (if not NULL)
 * matches the bound one exactly. Returns LC_OK or LC_ERR_CERTIFICATE; fills *activation's
 * activation_id, license_id and valid_until_ms when it is not NULL.
 */
int lc_verify_certificate(const uint8_t *certificate, size_t certificate_len, const uint8_t server_public_key[32], int64_t now_ms,
                          const char *const *fingerprint, size_t fingerprint_count, lc_activation *activation);

/* Where this process runs, as a licence's client_environments names it. */
typedef struct lc_environment {
    int is_virtual;          /* non-zero: a virtual machine ("virtual"), else "physical" */
    char hypervisor[32];     /* kvm, vmware, hyperv, xen, amazon, ... ("unknown": only the CPU flag says so) */
    char container[32];      /* docker, podman, kubernetes, lxc, ... ("" when not in a container: else "container") */
    char description[192];   /* for a person: "virtual machine (kvm), container (docker)" */
} lc_environment;

/* Detects where this process runs from DMI, the CPU's hypervisor flag, the paravirtual clock and
 * the container markers, read under root (NULL: "/"; tests point it at recorded files), as
 * `licensectl fingerprint --environment` does. lc_activate reports it to the server. */
int lc_detect_environment(const char *root, lc_environment *environment);

/* Releases what lc_activate / lc_validate_activation allocated in *activation. */
void lc_activation_free(lc_activation *activation);

/*
 * Air-gapped activation, the machine's side. The machine writes a request
 * (`licensectl activation request`), an operator on a connected machine fulfils it
 * (`licensectl activation fulfil`) and carries back a certificate file: an armored
 * `-----BEGIN LICENSED ACTIVATION-----` block (read as forgivingly as licence files: CRLF, quoting,
 * rewrapping, spaces) holding the certificate and the server key that signed it.
 *
 * Activations are kept in directory, or (NULL) $LICENSED_ACTIVATION_DIR, else
 * ~/.local/share/licensed/activations — the same place `licensectl activation install` uses — as
 * <activation id>.act. server_public_key (32 raw bytes) pins the key the certificate must be
 * signed by; NULL accepts the key the file names (pin it when the application knows its site's
 * server key: otherwise anyone with a key of their own could write such a file). why (optional,
 * why_size bytes) receives the reason of a failure for a person.
 */

/* Checks certificate_file against this machine (fingerprint, at now_ms) and the key, and installs
 * it. LC_OK fills *activation (free with lc_activation_free); LC_ERR_CERTIFICATE when it does not
 * verify here (another machine's, expired, another key, damaged), LC_ERR_IO when it cannot be read
 * or written. */
int lc_offline_install(const char *certificate_file, const char *directory, const uint8_t server_public_key[32],
                       const char *const *fingerprint, size_t fingerprint_count, int64_t now_ms, lc_activation *activation, char *why,
                       size_t why_size);

/* Finds an installed activation that lets this machine use feature at now_ms: LC_OK fills
 * *activation (free with lc_activation_free); LC_NOT_FOUND when none is installed, or
 * LC_ERR_CERTIFICATE when none verifies (why says which and why). */
int lc_offline_verify(const char *directory, const char *feature, const uint8_t server_public_key[32], const char *const *fingerprint,
                      size_t fingerprint_count, int64_t now_ms, lc_activation *activation, char *why, size_t why_size);

/*
 * Features, seats and queues. *features is set to an array of *count entries (free with
 * lc_status_free); feature may be NULL for all features.
 */
int lc_status(lc_client *c, const char *feature, lc_feature_status **features, size_t *count);

/* Frees an lc_status array. */
void lc_status_free(lc_feature_status *features);

/* The server's Ed25519 public key from HelloResponse (32 bytes), or NULL before lc_hello. */
const uint8_t *lc_server_public_key(const lc_client *c);

/* Heartbeat interval the server asked for, in ms (0 before lc_hello). */
uint32_t lc_heartbeat_interval_ms(const lc_client *c);

/* The last failure on this handle, for a person: the server's message or this side's reason. */
const char *lc_error_message(const lc_client *c);

/* The code of the last failure (LC_OK when the last call succeeded). */
int lc_error_code(const lc_client *c);

/* Connection states, for lc_state and the state callback. */
typedef enum lc_state {
    LC_STATE_CONNECTED = 0,    /* a server serves the session (`server` says which) */
    LC_STATE_RECONNECTING = 1, /* the connection was lost or refused: walking the servers */
    LC_STATE_NO_SERVER = 2     /* a whole walk found no server that serves; trying again */
} lc_connection_state;

/*
 * Told of every change of state, and of every walk that found no server: `lease_ms_left` is how
 * long the session's leases have before a server could reclaim them (-1: none held), `server`
 * the server now serving ("host:port"; "" unless connected). Called on the thread that noticed
 * (a caller's, or the heartbeat thread) while it holds the handle's request lock: it must not
 * call this library's request functions on the same handle (lc_state is fine) and should return
 * quickly.
 */
typedef void (*lc_state_callback)(lc_client *c, int state, int64_t lease_ms_left, const char *server, void *context);

/* Sets (or with NULL clears) the state callback. */
void lc_set_state_callback(lc_client *c, lc_state_callback callback, void *context);

/*
 * The connection state now (an lc_connection_state; LC_ERR_USAGE without a handle), without waiting for a
 * call in progress: *lease_ms_left (if not NULL) as in the callback, counted down to now; the
 * server serving (if `server` is not NULL) into server[server_len].
 */
int lc_state(lc_client *c, int64_t *lease_ms_left, char *server, size_t server_len);

/* A name for a result: "NO_SEATS", "LC_ERR_IO", ... */
const char *lc_result_name(int result);

/* Closes the connection, stops the heartbeat thread and frees the handle (NULL is fine). */
void lc_close(lc_client *c);

#ifdef __cplusplus
}
#endif

#endif /* LICENSED_CLIENT_H */
