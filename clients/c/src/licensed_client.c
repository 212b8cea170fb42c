/* licensed_client.c — see licensed_client.h. */
#define _POSIX_C_SOURCE 200809L
#include "licensed_client.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "licensed/v1/activation.pb-c.h"
#include "licensed/v1/license.pb-c.h"
#include "licensed/v1/protocol.pb-c.h"

#define LC_MAX_FRAME (16u * 1024u * 1024u)
#define LC_ACTIVATION_DOMAIN "licensed.v1.activation"

/* One server of the list. */
typedef struct lc_endpoint {
    char host[256];
    int port;
} lc_endpoint;

struct lc_client {
    pthread_mutex_t lock; /* one request at a time; guards everything below but the state */
    int fd;
    /* The servers (one, or a cluster's), the one connected or last tried, and the one to try
       first (the last that served, or the active server a standby named). */
    lc_endpoint *servers;
    size_t n_servers;
    lc_endpoint current;
    lc_endpoint preferred;
    int have_preferred;
    char active_hint[256]; /* active_server of the last NOT_ACTIVE */
    int timeout_ms;
    char *token;
    uint64_t next_request_id;
    /* The session, for resuming after a reconnect. */
    int have_session;
    uint8_t session_id[16];
    char *user, *client_host, *client_name, *client_version;
    uint64_t resume_attempts; /* Hellos that resumed the session so far (resume_attempt) */
    int retried;              /* the last call was sent again after a reconnection */
    int64_t sent_at;          /* when the last request was sent (monotonic ms) */
    uint8_t server_key[32];
    int have_server_key;
    uint32_t heartbeat_interval_ms;
    /* The leases checked out and not in (their ids, listed in every heartbeat so that the server
       says which it no longer has). They were all renewed at renewed_at (monotonic ms) and live
       lease_ttl_ms after it. */
    uint8_t (*held_ids)[16];
    size_t held, held_capacity;
    uint32_t lease_ttl_ms;
    int64_t renewed_at;
    int64_t server_skew_ms; /* server clock - ours, from HelloResponse */
    /* The connection state, for lc_state and the callback (state_lock). */
    pthread_mutex_t state_lock;
    int state;
    int64_t leases_expire_at; /* monotonic ms when the first lease could be reclaimed (-1: none) */
    char server_name[280];
    lc_state_callback callback;
    void *callback_context;
    /* Last failure. */
    int error_code;
    char error_message[512];
    /* Background heartbeats. */
    pthread_mutex_t heartbeat_lock;
    pthread_cond_t heartbeat_wake;
    pthread_t heartbeat_thread;
    int heartbeat_running;
    int heartbeat_stop;
};

/* ---- errors ---------------------------------------------------------------------------- */

static int fail(lc_client *c, int code, const char *format, ...) {
    if (c) {
        va_list args;
        va_start(args, format);
        vsnprintf(c->error_message, sizeof c->error_message, format, args);
        va_end(args);
        c->error_code = code;
    }
    return code;
}

static int succeed(lc_client *c) {
    c->error_code = LC_OK;
    c->error_message[0] = '\0';
    return LC_OK;
}

const char *lc_result_name(int result) {
    static const char *const server[] = {
        "OK", "INVALID_ARGUMENT", "UNAUTHENTICATED", "PERMISSION_DENIED", "NOT_FOUND", "NO_SEATS", "LICENSE_EXPIRED",
        "NOT_YET_VALID", "VERSION_NOT_ALLOWED", "NETWORK_NOT_ALLOWED", "USER_NOT_ALLOWED", "ACTIVATION_LIMIT", "DEVICE_LIMIT",
        "BASE_REQUIRED", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "UNIMPLEMENTED", "UNAVAILABLE", "INTERNAL", "NOT_ACTIVE",
        "STALE_RESUME", "ENVIRONMENT_NOT_ALLOWED", "CLOCK_SETBACK",
    };
    static const char *const local[] = {
        "LC_ERR_IO", "LC_ERR_PROTOCOL", "LC_ERR_TIMEOUT", "LC_ERR_NO_MEMORY", "LC_ERR_CERTIFICATE", "LC_ERR_USAGE",
    };
    if (result >= 0 && result < (int)(sizeof server / sizeof server[0])) return server[result];
    if (result < 0 && -result <= (int)(sizeof local / sizeof local[0])) return local[-result - 1];
    return "UNKNOWN";
}

const char *lc_error_message(const lc_client *c) { return c ? c->error_message : "no handle"; }


int lc_error_code(const lc_client *c) { return c ? c->error_code : LC_ERR_USAGE; }

const uint8_t *lc_server_public_key(const lc_client *c) { return c && c->have_server_key ? c->server_key : NULL; }

uint32_t lc_heartbeat_interval_ms(const lc_client *c) { return c ? c->heartbeat_interval_ms : 0; }

static char *dup_or_empty(const char *text) { return strdup(text ? text : ""); }

static void copy_text(char *dest, size_t size, const char *text) {
    snprintf(dest, size, "%s", text ? text : "");
}

/* Makes room for one more held lease id; 0, or -1 without memory. */
static int reserve_hold(lc_client *c) {
    if (c->held < c->held_capacity) return 0;
    size_t capacity = c->held_capacity ? 2 * c->held_capacity : 8;
    uint8_t(*grown)[16] = realloc(c->held_ids, capacity * sizeof *grown);
    if (!grown) return -1;
    c->held_ids = grown;
    c->held_capacity = capacity;
    return 0;
}

/* Adds a lease id to those held (room reserved by reserve_hold). */
static void hold(lc_client *c, const uint8_t id[16]) { memcpy(c->held_ids[c->held++], id, 16); }

/* Removes a lease id from those held (no-op when it is not). */
static void release(lc_client *c, const uint8_t *id) {
    for (size_t i = 0; i < c->held; i++) {
        if (memcmp(c->held_ids[i], id, 16) == 0) {
            memmove(c->held_ids[i], c->held_ids[c->held - 1], 16);
            c->held--;
            return;
        }
    }
}

/* ---- the socket ------------------------------------------------------------------------ */

static int64_t monotonic_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int64_t ms) {
    if (ms <= 0) return;
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

/* ---- the server list -------------------------------------------------------------------- */

/* Parses one server: "host:port", "[v6]:port", "port@host", or a host alone (default_port). */
static int parse_endpoint(const char *text, size_t len, int default_port, lc_endpoint *e, char *err, size_t err_len) {
    while (len && (*text == ' ' || *text == '\t')) { text++; len--; }
    while (len && (text[len - 1] == ' ' || text[len - 1] == '\t')) len--;
    const char *host = text, *port_text = NULL;
    size_t host_len = len, port_len = 0;
    const char *at = memchr(text, '@', len);
    const char *last_colon = NULL;
    size_t colons = 0;
    for (size_t i = 0; i < len; i++) if (text[i] == ':') { colons++; last_colon = text + i; }
    if (at) {
        port_text = text; port_len = (size_t)(at - text);
        host = at + 1; host_len = len - port_len - 1;
    } else if (len && text[0] == '[') {
        const char *close = memchr(text, ']', len);
        if (!close) { snprintf(err, err_len, "server \"%.*s\": no ] after [", (int)len, text); return -1; }
        host = text + 1; host_len = (size_t)(close - text - 1);
        if ((size_t)(close - text) + 1 < len) {
            if (close[1] != ':') { snprintf(err, err_len, "server \"%.*s\": expected :port after ]", (int)len, text); return -1; }
            port_text = close + 2; port_len = len - (size_t)(close - text) - 2;
        }
    } else if (colons == 1) {
        host_len = (size_t)(last_colon - text);
        port_text = last_colon + 1; port_len = len - host_len - 1;
    }
    if (host_len == 0 || host_len >= sizeof e->host) {
        snprintf(err, err_len, "server \"%.*s\": no host name, or a host name too long", (int)len, text);
        return -1;
    }
    int port = default_port;
    if (port_text) {
        char digits[8] = {0};
        if (port_len == 0 || port_len >= sizeof digits) { snprintf(err, err_len, "server \"%.*s\": bad port", (int)len, text); return -1; }
        memcpy(digits, port_text, port_len);
        char *end = NULL;
        long value = strtol(digits, &end, 10);
        if (*end || value <= 0 || value > 65535) { snprintf(err, err_len, "server \"%.*s\": bad port", (int)len, text); return -1; }
        port = (int)value;
    }
    if (port <= 0 || port > 65535) { snprintf(err, err_len, "server \"%.*s\" has no port", (int)len, text); return -1; }
    memcpy(e->host, host, host_len);
    e->host[host_len] = '\0';
    e->port = port;
    return 0;
}

/* Parses "a,b,c" into *out (malloc'd, *count entries). */
static int parse_servers(const char *text, int default_port, lc_endpoint **out, size_t *count, char *err, size_t err_len) {
    size_t n = 1;
    for (const char *p = text; *p; p++) if (*p == ',') n++;
    lc_endpoint *list = calloc(n, sizeof *list);
    if (!list) { snprintf(err, err_len, "out of memory"); return LC_ERR_NO_MEMORY; }
    size_t used = 0;
    for (const char *p = text;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        size_t blank = 0;
        while (blank < len && (p[blank] == ' ' || p[blank] == '\t')) blank++;
        if (blank < len) {
            if (parse_endpoint(p, len, default_port, &list[used], err, err_len) != 0) { free(list); return LC_ERR_USAGE; }
            used++;
        }
        if (!comma) break;
        p = comma + 1;
    }
    if (used == 0) { free(list); snprintf(err, err_len, "no licence server given"); return LC_ERR_USAGE; }
    *out = list;
    *count = used;
    return LC_OK;
}

static int same_endpoint(const lc_endpoint *a, const lc_endpoint *b) { return a->port == b->port && strcmp(a->host, b->host) == 0; }

static void endpoint_name(const lc_endpoint *e, char *out, size_t len) {
    snprintf(out, len, strchr(e->host, ':') ? "[%s]:%d" : "%s:%d", e->host, e->port);
}

/* Connects within timeout_ms; returns the socket or -1 with the reason in errbuf. */
static int open_socket(const char *host, int port, int timeout_ms, char *errbuf, size_t errbuf_len) {
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo hints = {0}, *addresses = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(host, service, &hints, &addresses);
    if (rc != 0) {
        snprintf(errbuf, errbuf_len, "cannot resolve %s: %s", host, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    int last_errno = 0;
    for (struct addrinfo *a = addresses; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) { last_errno = errno; continue; }
        int flags = fcntl(fd, F_GETFL, 0);
        fcntl(fd, F_SETFL, flags | O_NONBLOCK);
        if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
            if (errno != EINPROGRESS) { last_errno = errno; close(fd); fd = -1; continue; }
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            int ready;
            do { ready = poll(&p, 1, timeout_ms); } while (ready < 0 && errno == EINTR);
            int error = 0;
            socklen_t len = sizeof error;
            if (ready <= 0) error = ready == 0 ? ETIMEDOUT : errno;
            else getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len);
            if (error != 0) { last_errno = error; close(fd); fd = -1; continue; }
        }
        fcntl(fd, F_SETFL, flags);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    freeaddrinfo(addresses);
    if (fd < 0) snprintf(errbuf, errbuf_len, "cannot connect to %s:%d: %s", host, port, strerror(last_errno));
    return fd;
}

static int write_all(int fd, const uint8_t *bytes, size_t len) {
    while (len > 0) {
        ssize_t n = send(fd, bytes, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        bytes += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads exactly len bytes before deadline (monotonic ms). 0, or LC_ERR_IO / LC_ERR_TIMEOUT. */
static int read_all(int fd, uint8_t *bytes, size_t len, int64_t deadline) {
    while (len > 0) {
        int64_t left = deadline - monotonic_ms();
        if (left <= 0) return LC_ERR_TIMEOUT;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int ready = poll(&p, 1, (int)left);
        if (ready < 0 && errno == EINTR) continue;
        if (ready < 0) return LC_ERR_IO;
        if (ready == 0) return LC_ERR_TIMEOUT;
        ssize_t n = recv(fd, bytes, len, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return LC_ERR_IO;
        bytes += n;
        len -= (size_t)n;
    }
    return 0;
}

static int send_message(lc_client *c, const Licensed__V1__ClientMessage *message) {
    size_t size = licensed__v1__client_message__get_packed_size(message);
    uint8_t *frame = malloc(size + 4);
    if (!frame) return fail(c, LC_ERR_NO_MEMORY, "out of memory");
    frame[0] = (uint8_t)(size >> 24);
    frame[1] = (uint8_t)(size >> 16);
    frame[2] = (uint8_t)(size >> 8);
    frame[3] = (uint8_t)size;
    licensed__v1__client_message__pack(message, frame + 4);
    int rc = write_all(c->fd, frame, size + 4);
    free(frame);
    return rc == 0 ? LC_OK : fail(c, LC_ERR_IO, "cannot send to %s:%d: %s", c->current.host, c->current.port, strerror(errno));
}

/* Reads frames until the reply to request_id; pushed events (request_id 0) are skipped. */
static int receive_reply(lc_client *c, uint64_t request_id, Licensed__V1__ServerMessage **reply) {
    int64_t deadline = monotonic_ms() + c->timeout_ms;
    for (;;) {
        uint8_t header[4];
        int rc = read_all(c->fd, header, 4, deadline);
        if (rc == 0) {
            uint32_t size = (uint32_t)header[0] << 24 | (uint32_t)header[1] << 16 | (uint32_t)header[2] << 8 | header[3];
            if (size > LC_MAX_FRAME) return fail(c, LC_ERR_PROTOCOL, "the server sent a frame of %u bytes", size);
            uint8_t *body = malloc(size ? size : 1);
            if (!body) return fail(c, LC_ERR_NO_MEMORY, "out of memory");
            rc = read_all(c->fd, body, size, deadline);
            if (rc == 0) {
                Licensed__V1__ServerMessage *message = licensed__v1__server_message__unpack(NULL, size, body);
                free(body);
                if (!message) return fail(c, LC_ERR_PROTOCOL, "the server sent a frame that is not a ServerMessage");
                if (message->request_id == request_id) {
                    *reply = message;
                    return LC_OK;
                }
                /* An event (request_id 0) or a late answer to a request given up on. */
                if (message->request_id == 0 && message->body_case == LICENSED__V1__SERVER_MESSAGE__BODY_ERROR && message->error) {
                    /* The server refused the connection itself (limits, Hello timeout): it closes next. */
                    int code = (int)message->error->code;
                    fail(c, code, "%s", message->error->message ? message->error->message : "");
                    licensed__v1__server_message__free_unpacked(message, NULL);
                    return code;
                }
                licensed__v1__server_message__free_unpacked(message, NULL);
                continue;
            }
            free(body);
        }
        if (rc == LC_ERR_TIMEOUT) return fail(c, LC_ERR_TIMEOUT, "no answer from %s:%d within %d ms", c->current.host, c->current.port, c->timeout_ms);
        return fail(c, LC_ERR_IO, "the connection to %s:%d closed", c->current.host, c->current.port);
    }
}

/* One request and its reply on the current connection. A server Error becomes its code. */
static int exchange(lc_client *c, Licensed__V1__ClientMessage *message, Licensed__V1__ServerMessage **reply) {
    if (c->fd < 0) return fail(c, LC_ERR_IO, "not connected");
    message->request_id = ++c->next_request_id;
    c->sent_at = monotonic_ms();
    int rc = send_message(c, message);
    if (rc != LC_OK) return rc;
    rc = receive_reply(c, message->request_id, reply);
    if (rc != LC_OK) return rc;
    if ((*reply)->body_case == LICENSED__V1__SERVER_MESSAGE__BODY_ERROR) {
        Licensed__V1__Error *error = (*reply)->error;
        int code = error ? (int)error->code : LC_INTERNAL;
        copy_text(c->active_hint, sizeof c->active_hint, error && code == LC_NOT_ACTIVE ? error->active_server : "");
        fail(c, code ? code : LC_INTERNAL, "%s", error && error->message ? error->message : "the server refused the request");
        licensed__v1__server_message__free_unpacked(*reply, NULL);
        *reply = NULL;
        return c->error_code;
    }
    return LC_OK;
}

static void drop_connection(lc_client *c) {
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
}

/* Sends Hello (resuming the session when there is one) and keeps what the server answered. */
static int say_hello(lc_client *c) {
    Licensed__V1__Hello hello = LICENSED__V1__HELLO__INIT;
    hello.protocol_version = LICENSED__V1__PROTOCOL_VERSION__PROTOCOL_VERSION_1;
    hello.user = c->user;
    hello.host = c->client_host;
    hello.client_name = c->client_name;
    hello.client_version = c->client_version;
    hello.token = c->token;
    hello.pid = (uint32_t)getpid();
    hello.client_time_ms = wall_ms();
    if (c->have_session) {
        hello.resume_session_id.data = c->session_id;
        hello.resume_session_id.len = sizeof c->session_id;
        hello.resume_attempt = ++c->resume_attempts;
    }
    Licensed__V1__ClientMessage message = LICENSED__V1__CLIENT_MESSAGE__INIT;
    message.body_case = LICENSED__V1__CLIENT_MESSAGE__BODY_HELLO;
    message.hello = &hello;
    Licensed__V1__ServerMessage *reply = NULL;
    int rc = exchange(c, &message, &reply);
    if (rc != LC_OK) return rc;
    Licensed__V1__HelloResponse *response = reply->hello;
    if (reply->body_case != LICENSED__V1__SERVER_MESSAGE__BODY_HELLO || !response || response->session_id.len != 16) {
        licensed__v1__server_message__free_unpacked(reply, NULL);
        return fail(c, LC_ERR_PROTOCOL, "the server answered Hello with something else");
    }
    memcpy(c->session_id, response->session_id.data, 16);
    c->have_session = 1;
    if (response->server_public_key.len == 32) {
        memcpy(c->server_key, response->server_public_key.data, 32);
        c->have_server_key = 1;
    }
    c->heartbeat_interval_ms = response->heartbeat_interval_ms;
    if (!c->lease_ttl_ms || (response->lease_ttl_ms && response->lease_ttl_ms < c->lease_ttl_ms)) c->lease_ttl_ms = response->lease_ttl_ms;
    c->server_skew_ms = response->server_time_ms - wall_ms();
    if (c->have_session && !response->resumed) c->held = 0; /* the session had ended: its leases with it */
    licensed__v1__server_message__free_unpacked(reply, NULL);
    return succeed(c);
}

/* ---- failover ------------------------------------------------------------------------- */

/* Results after which another server (or the same one later) may serve: the connection failed,
   the server is a standby, or it cannot act now (a cluster's active node without etcd). */
static int try_another(int rc) {
    return rc == LC_ERR_IO || rc == LC_ERR_TIMEOUT || rc == LC_UNAVAILABLE || rc == LC_NOT_ACTIVE || rc == LC_STALE_RESUME;
}

/* Publishes when the leases could be reclaimed, for lc_state (called with `lock` held, after
   every change of the leases or their renewal). */
static void publish_leases(lc_client *c) {
    int64_t expire_at = c->held == 0 || c->lease_ttl_ms == 0 ? -1 : c->renewed_at + c->lease_ttl_ms;
    pthread_mutex_lock(&c->state_lock);
    c->leases_expire_at = expire_at;
    pthread_mutex_unlock(&c->state_lock);
}

/* What the leases have left before the server could reclaim them (-1: none held). */
static int64_t left_until(int64_t expire_at) {
    if (expire_at < 0) return -1;
    int64_t left = expire_at - monotonic_ms();
    return left > 0 ? left : 0;
}

/* Records the connection state and tells the callback: on every change, and on every walk that
   found no server (so that it sees the lease time run down). Called with `lock` held. */
static void set_state(lc_client *c, int state) {
    publish_leases(c);
    char name[sizeof c->server_name];
    endpoint_name(&c->current, name, sizeof name);
    pthread_mutex_lock(&c->state_lock);
    int64_t left = left_until(c->leases_expire_at);
    int changed = state != c->state || (state == LC_STATE_CONNECTED && strcmp(name, c->server_name) != 0);
    c->state = state;
    if (state == LC_STATE_CONNECTED) copy_text(c->server_name, sizeof c->server_name, name);
    lc_state_callback callback = c->callback;
    void *context = c->callback_context;
    pthread_mutex_unlock(&c->state_lock);
    if (callback && (changed || state == LC_STATE_NO_SERVER)) callback(c, state, left, state == LC_STATE_CONNECTED ? name : "", context);
}

void lc_set_state_callback(lc_client *c, lc_state_callback callback, void *context) {
    if (!c) return;
    pthread_mutex_lock(&c->state_lock);
    c->callback = callback;
    c->callback_context = context;
    pthread_mutex_unlock(&c->state_lock);
}

int lc_state(lc_client *c, int64_t *lease_ms_left, char *server, size_t server_len) {
    if (!c) return LC_ERR_USAGE;
    pthread_mutex_lock(&c->state_lock);
    int state = c->state;
    int64_t left = left_until(c->leases_expire_at);
    if (server && server_len) copy_text(server, server_len, state == LC_STATE_CONNECTED ? c->server_name : "");
    pthread_mutex_unlock(&c->state_lock);
    if (lease_ms_left) *lease_ms_left = left;
    return state;
}

/* Connects to the servers in turn — the preferred one first, then the list in order; a standby's
   NOT_ACTIVE puts the active server it names next — each at most once, and says Hello (resuming
   the session) when `hello` is set. LC_OK on the first that serves. */
static int walk(lc_client *c, int hello) {
    size_t n = c->n_servers, tried_n = 0;
    lc_endpoint *tried = calloc(n + 8, sizeof *tried);
    if (!tried) return fail(c, LC_ERR_NO_MEMORY, "out of memory");
    char reasons[2048] = "";
    lc_endpoint next = c->have_preferred ? c->preferred : c->servers[0];
    int have_next = 1;
    int rc = LC_UNAVAILABLE;
    for (;;) {
        if (!have_next) {
            for (size_t i = 0; i < n && !have_next; i++) {
                int seen = 0;
                for (size_t j = 0; j < tried_n; j++) seen |= same_endpoint(&tried[j], &c->servers[i]);
                if (!seen) { next = c->servers[i]; have_next = 1; }
            }
            if (!have_next) break;
        }
        have_next = 0;
        int seen = 0;
        for (size_t j = 0; j < tried_n; j++) seen |= same_endpoint(&tried[j], &next);
        if (seen || tried_n == n + 8) continue;
        tried[tried_n++] = next;
        drop_connection(c);
        c->current = next;
        char reason[800] = "";
        c->fd = open_socket(next.host, next.port, c->timeout_ms, reason, sizeof reason);
        if (c->fd < 0) {
            rc = LC_ERR_IO;
        } else if (!hello || (rc = say_hello(c)) == LC_OK) {
            c->preferred = next;
            c->have_preferred = 1;
            free(tried);
            return succeed(c);
        } else {
            snprintf(reason, sizeof reason, "%s:%d: %s", next.host, next.port, c->error_message);
            drop_connection(c);
            if (!try_another(rc)) { free(tried); return fail(c, rc, "%s", reason); }
            lc_endpoint active;
            char ignored[64];
            if (rc == LC_NOT_ACTIVE && c->active_hint[0] && parse_endpoint(c->active_hint, strlen(c->active_hint), 0, &active, ignored, sizeof ignored) == 0) {
                next = active;
                have_next = 1;
            }
        }
        size_t used = strlen(reasons);
        snprintf(reasons + used, sizeof reasons - used, "%s%s", used ? "; " : "", reason);
    }
    free(tried);
    c->have_preferred = 0;
    return fail(c, rc == LC_ERR_IO && n > 1 ? LC_UNAVAILABLE : rc, "%s%s%s", n > 1 ? "no licence server serves this session now (" : "", reasons,
                n > 1 ? ")" : "");
}

/* Walks the servers until one serves or `deadline` passes, with a jittered back-off (50 ms
   doubling to 1 s) between walks; the callback hears of each walk that found none. */
static int reconnect(lc_client *c, int64_t deadline) {
    set_state(c, LC_STATE_RECONNECTING);
    int64_t delay = 50;
    for (;;) {
        int rc = walk(c, 1);
        if (rc == LC_OK) {
            set_state(c, LC_STATE_CONNECTED);
            return rc;
        }
        if (!try_another(rc)) return rc;
        set_state(c, LC_STATE_NO_SERVER);
        int64_t left = deadline - monotonic_ms();
        if (left <= 0) return rc;
        unsigned char noise = 0;
        RAND_bytes(&noise, 1);
        int64_t pause = delay / 2 + (delay / 2) * noise / 255;
        sleep_ms(pause < left ? pause : left);
        delay = delay * 2 < 1000 ? delay * 2 : 1000;
    }
}

/* A request of an open session. On a lost connection, a standby's redirect, or a server that
   cannot act now, it walks the servers, resumes the session (its leases with it) and sends the
   request again, until it is answered or the handle's timeout has passed. Every request of this
   library is safe to send twice (a check-out carries its checkout key). */
static int call(lc_client *c, Licensed__V1__ClientMessage *message, Licensed__V1__ServerMessage **reply) {
    if (!c->have_session) return fail(c, LC_ERR_USAGE, "call lc_hello first");
    c->retried = 0;
    int64_t deadline = monotonic_ms() + c->timeout_ms;
    int rc = c->fd >= 0 ? exchange(c, message, reply) : LC_ERR_IO;
    while (try_another(rc)) {
        drop_connection(c);
        if (monotonic_ms() >= deadline) return rc;
        rc = reconnect(c, deadline);
        if (rc != LC_OK) return rc;
        c->retried = 1;
        rc = exchange(c, message, reply);
    }
    return rc;
}

/* ---- the API --------------------------------------------------------------------------- */

int lc_connect(lc_client **out, const char *servers, int port, int timeout_ms, const char *token, char *errbuf, size_t errbuf_len) {
    char scratch[256];
    if (!errbuf) { errbuf = scratch; errbuf_len = sizeof scratch; }
    if (!servers) servers = getenv("LICENSED_SERVERS");
    if (!servers || !*servers) servers = getenv("LICENSED_SERVER");
    if (!out || !servers || !*servers || port < 0 || port > 65535 || timeout_ms <= 0) {
        if (out) *out = NULL;
        snprintf(errbuf, errbuf_len, "lc_connect needs a handle pointer, servers (or LICENSED_SERVERS) and a positive timeout");
        return LC_ERR_USAGE;
    }
    *out = NULL;
    lc_client *c = calloc(1, sizeof *c);
    if (!c) { snprintf(errbuf, errbuf_len, "out of memory"); return LC_ERR_NO_MEMORY; }
    c->token = dup_or_empty(token);
    c->user = dup_or_empty(NULL);
    c->client_host = dup_or_empty(NULL);
    c->client_name = dup_or_empty(NULL);
    c->client_version = dup_or_empty(NULL);
    c->timeout_ms = timeout_ms;
    c->fd = -1;
    c->state = LC_STATE_RECONNECTING;
    c->leases_expire_at = -1;
    pthread_mutex_init(&c->lock, NULL);
    pthread_mutex_init(&c->state_lock, NULL);
    pthread_mutex_init(&c->heartbeat_lock, NULL);
    pthread_cond_init(&c->heartbeat_wake, NULL);
    if (!c->token || !c->user || !c->client_host || !c->client_name || !c->client_version) {
        lc_close(c);
        snprintf(errbuf, errbuf_len, "out of memory");
        return LC_ERR_NO_MEMORY;
    }
    int rc = parse_servers(servers, port, &c->servers, &c->n_servers, errbuf, errbuf_len);
    if (rc != LC_OK) {
        lc_close(c);
        return rc;
    }
    /* The first server that accepts a connection; lc_hello finds the one that serves. */
    rc = walk(c, 0);
    if (rc != LC_OK) {
        snprintf(errbuf, errbuf_len, "%s", c->error_message);
        lc_close(c);
        return rc;
    }
    *out = c;
    return LC_OK;
}

int lc_hello(lc_client *c, const char *user, const char *host, const char *client_name, const char *client_version) {
    if (!c) return LC_ERR_USAGE;
    pthread_mutex_lock(&c->lock);
    char *fields[4] = {dup_or_empty(user), dup_or_empty(host), dup_or_empty(client_name), dup_or_empty(client_version)};
    int rc;
    if (!fields[0] || !fields[1] || !fields[2] || !fields[3]) {
        for (int i = 0; i < 4; i++) free(fields[i]);
        rc = fail(c, LC_ERR_NO_MEMORY, "out of memory");
    } else {
        free(c->user); free(c->client_host); free(c->client_name); free(c->client_version);
        c->user = fields[0]; c->client_host = fields[1]; c->client_name = fields[2]; c->client_version = fields[3];
        c->have_session = 0;
        c->held = 0;
        rc = c->fd >= 0 ? say_hello(c) : LC_ERR_IO;
        if (try_another(rc)) {
            /* A standby (redirected to the active server it names), or a server that cannot serve
               now: the others are tried, within the handle's timeout. */
            drop_connection(c);
            rc = reconnect(c, monotonic_ms() + c->timeout_ms);
        } else if (rc == LC_OK) {
            set_state(c, LC_STATE_CONNECTED);
        }
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

int lc_checkout(lc_client *c, const char *feature, const char *version, uint32_t count, uint32_t wait_ms, lc_lease *lease) {
    if (!c) return LC_ERR_USAGE;
    if (!feature || !*feature || !lease) return fail(c, LC_ERR_USAGE, "lc_checkout needs a feature and a lease to fill");
    uint8_t key[16];
    if (RAND_bytes(key, sizeof key) != 1) return fail(c, LC_INTERNAL, "no randomness from OpenSSL");
    Licensed__V1__CheckOutRequest request = LICENSED__V1__CHECK_OUT_REQUEST__INIT;
    request.feature = (char *)feature;
    request.version = (char *)(version ? version : "");
    request.count = count;
    request.wait_ms = wait_ms;
    request.checkout_key.data = key;
    request.checkout_key.len = sizeof key;
    Licensed__V1__ClientMessage message = LICENSED__V1__CLIENT_MESSAGE__INIT;
    message.body_case = LICENSED__V1__CLIENT_MESSAGE__BODY_CHECK_OUT;
    message.check_out = &request;
    pthread_mutex_lock(&c->lock);
    if (reserve_hold(c) != 0) {
        int rc = fail(c, LC_ERR_NO_MEMORY, "out of memory");
        pthread_mutex_unlock(&c->lock);
        return rc;
    }
    Licensed__V1__ServerMessage *reply = NULL;
    /* A queued check-out is answered when a seat is granted: allow the wait on top of the timeout. */
    int saved_timeout = c->timeout_ms;
    c->timeout_ms += (int)(wait_ms > 600000 ? 600000 : wait_ms);
    int rc = call(c, &message, &reply);
    c->timeout_ms = saved_timeout;
    if (rc == LC_OK) {
        Licensed__V1__CheckOutResponse *response = reply->check_out;
        if (reply->body_case != LICENSED__V1__SERVER_MESSAGE__BODY_CHECK_OUT || !response || response->lease_id.len != 16) {
            rc = fail(c, LC_ERR_PROTOCOL, "the server answered CheckOut with something else");
        } else {
            memset(lease, 0, sizeof *lease);
            memcpy(lease->lease_id, response->lease_id.data, 16);
            copy_text(lease->license_id, sizeof lease->license_id, response->license_id);
            copy_text(lease->feature, sizeof lease->feature, response->feature);
            lease->count = response->count;
            lease->expires_at_ms = response->expires_at_ms;
            lease->overage = response->overage;
            lease->fencing_token = response->fencing_token;
            /* The first lease starts the clock of lc_state; a licence may give a shorter TTL
               than the server's default (expiry, by the server's clock, minus its time now). */
            if (c->held == 0) c->renewed_at = c->sent_at;
            hold(c, lease->lease_id);
            int64_t ttl = response->expires_at_ms - (wall_ms() + c->server_skew_ms);
            if (ttl > 0 && (uint64_t)ttl < c->lease_ttl_ms) c->lease_ttl_ms = (uint32_t)ttl;
            publish_leases(c);
            for (size_t i = 0; i < response->n_warnings; i++) {
                size_t used = strlen(lease->warnings);
                snprintf(lease->warnings + used, sizeof lease->warnings - used, "%s%s", i ? "; " : "", response->warnings[i]);
            }
            rc = succeed(c);
        }
        licensed__v1__server_message__free_unpacked(reply, NULL);
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

int lc_checkin(lc_client *c, const lc_lease *lease) {
    if (!c) return LC_ERR_USAGE;
    if (!lease) return fail(c, LC_ERR_USAGE, "lc_checkin needs a lease");
    Licensed__V1__CheckInRequest request = LICENSED__V1__CHECK_IN_REQUEST__INIT;
    request.lease_id.data = (uint8_t *)lease->lease_id;
    request.lease_id.len = 16;
    Licensed__V1__ClientMessage message = LICENSED__V1__CLIENT_MESSAGE__INIT;
    message.body_case = LICENSED__V1__CLIENT_MESSAGE__BODY_CHECK_IN;
    message.check_in = &request;
    pthread_mutex_lock(&c->lock);
    Licensed__V1__ServerMessage *reply = NULL;
    int rc = call(c, &message, &reply);
    if (rc == LC_OK) {
        rc = reply->body_case == LICENSED__V1__SERVER_MESSAGE__BODY_CHECK_IN ? succeed(c)
                                                                             : fail(c, LC_ERR_PROTOCOL, "the server answered CheckIn with something else");
        licensed__v1__server_message__free_unpacked(reply, NULL);
    } else if (rc == LC_NOT_FOUND && c->retried) {
        rc = succeed(c); /* sent again after a reconnection: the first one had returned it */
    }
    if (rc == LC_OK) release(c, lease->lease_id);
    if (rc == LC_OK) publish_leases(c);
    pthread_mutex_unlock(&c->lock);
    return rc;
}

int lc_heartbeat(lc_client *c, uint32_t *lost) {
    if (!c) return LC_ERR_USAGE;
    Licensed__V1__HeartbeatRequest request = LICENSED__V1__HEARTBEAT_REQUEST__INIT;
    Licensed__V1__ClientMessage message = LICENSED__V1__CLIENT_MESSAGE__INIT;
    message.body_case = LICENSED__V1__CLIENT_MESSAGE__BODY_HEARTBEAT;
    message.heartbeat = &request;
    pthread_mutex_lock(&c->lock);
    /* The leases this handle holds, so that the server says which it no longer has. */
    ProtobufCBinaryData *ids = calloc(c->held ? c->held : 1, sizeof *ids);
    if (!ids) {
        int rc = fail(c, LC_ERR_NO_MEMORY, "out of memory");
        pthread_mutex_unlock(&c->lock);
        return rc;
    }
    for (size_t i = 0; i < c->held; i++) ids[i] = (ProtobufCBinaryData){.len = 16, .data = c->held_ids[i]};
    request.lease_ids = ids;
    request.n_lease_ids = c->held;
    Licensed__V1__ServerMessage *reply = NULL;
    int rc = call(c, &message, &reply);
    if (rc == LC_OK) {
        if (reply->body_case != LICENSED__V1__SERVER_MESSAGE__BODY_HEARTBEAT || !reply->heartbeat) {
            rc = fail(c, LC_ERR_PROTOCOL, "the server answered Heartbeat with something else");
        } else {
            if (lost) *lost = (uint32_t)reply->heartbeat->n_lost_lease_ids;
            for (size_t i = 0; i < reply->heartbeat->n_lost_lease_ids; i++) {
                if (reply->heartbeat->lost_lease_ids[i].len == 16) release(c, reply->heartbeat->lost_lease_ids[i].data);
            }
            c->renewed_at = c->sent_at; /* every lease of the session renewed */
            publish_leases(c);
            rc = succeed(c);
        }
        licensed__v1__server_message__free_unpacked(reply, NULL);
    }
    free(ids);
    pthread_mutex_unlock(&c->lock);
    return rc;
}

static void *heartbeat_loop(void *argument) {
    lc_client *c = argument;
    int failed = 0;
    pthread_mutex_lock(&c->heartbeat_lock);
    while (!c->heartbeat_stop) {
        /* After a failed beat (no server served within the timeout), the next walk starts soon. */
        uint32_t interval = failed ? 200 : c->heartbeat_interval_ms ? c->heartbeat_interval_ms : 30000;
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += interval / 1000;
        until.tv_nsec += (long)(interval % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) { until.tv_sec += 1; until.tv_nsec -= 1000000000L; }
        int waited = 0;
        while (!c->heartbeat_stop && waited != ETIMEDOUT) waited = pthread_cond_timedwait(&c->heartbeat_wake, &c->heartbeat_lock, &until);
        if (c->heartbeat_stop) break;
        pthread_mutex_unlock(&c->heartbeat_lock);
        /* A failure is kept for lc_error_message (and told to the state callback). */
        failed = lc_heartbeat(c, NULL) != LC_OK;
        pthread_mutex_lock(&c->heartbeat_lock);
    }
    pthread_mutex_unlock(&c->heartbeat_lock);
    return NULL;
}

int lc_start_heartbeats(lc_client *c) {
    if (!c) return LC_ERR_USAGE;
    pthread_mutex_lock(&c->heartbeat_lock);
    int rc = LC_OK;
    if (!c->heartbeat_running) {
        c->heartbeat_stop = 0;
        if (pthread_create(&c->heartbeat_thread, NULL, heartbeat_loop, c) == 0) c->heartbeat_running = 1;
        else rc = LC_ERR_NO_MEMORY;
    }
    pthread_mutex_unlock(&c->heartbeat_lock);
    return rc == LC_OK ? LC_OK : fail(c, rc, "cannot start the heartbeat thread");
}

void lc_stop_heartbeats(lc_client *c) {
    if (!c) return;
    pthread_mutex_lock(&c->heartbeat_lock);
    int running = c->heartbeat_running;
    c->heartbeat_stop = 1;
    pthread_cond_broadcast(&c->heartbeat_wake);
    pthread_mutex_unlock(&c->heartbeat_lock);
    if (running) pthread_join(c->heartbeat_thread, NULL);
    pthread_mutex_lock(&c->heartbeat_lock);
    c->heartbeat_running = 0;
    pthread_mutex_unlock(&c->heartbeat_lock);
}

/* ---- activations ----------------------------------------------------------------------- */

static int fingerprint_matches(const Licensed__V1__ActivationClaims *claims, const char *const *fingerprint, size_t count) {
    size_t bound = claims->n_fingerprint, matched = 0;
    for (size_t i = 0; i < bound; i++)
        for (size_t j = 0; j < count; j++)
            if (fingerprint[j] && strcmp(claims->fingerprint[i], fingerprint[j]) == 0) { matched++; break; }
    switch (claims->fingerprint_match) {
    case LICENSED__V1__FINGERPRINT_MATCH__FINGERPRINT_MATCH_ANY: return matched >= 1;
    case LICENSED__V1__FINGERPRINT_MATCH__FINGERPRINT_MATCH_TWO: return matched >= (bound < 2 ? bound : 2);
    case LICENSED__V1__FINGERPRINT_MATCH__FINGERPRINT_MATCH_ALL: return matched == bound;
    default: return matched * 2 > bound; /* MOST, and unspecified */
    }
}

int lc_verify_certificate(const uint8_t *certificate, size_t certificate_len, const uint8_t server_public_key[32], int64_t now_ms,
                          const char *const *fingerprint, size_t fingerprint_count, lc_activation *activation) {
    if (!certificate || !server_public_key) return LC_ERR_USAGE;
    Licensed__V1__ActivationCertificate *parsed = licensed__v1__activation_certificate__unpack(NULL, certificate_len, certificate);
    if (!parsed) return LC_ERR_CERTIFICATE;
    int rc = LC_ERR_CERTIFICATE;
    size_t domain_len = sizeof LC_ACTIVATION_DOMAIN; /* includes the 0 byte that ends the domain */
    uint8_t *signed_bytes = malloc(domain_len + parsed->claims.len);
    EVP_PKEY *key = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, server_public_key, 32);
    EVP_MD_CTX *context = EVP_MD_CTX_new();
    if (signed_bytes && key && context && parsed->signature.len == 64) {
        memcpy(signed_bytes, LC_ACTIVATION_DOMAIN, domain_len);
        memcpy(signed_bytes + domain_len, parsed->claims.data, parsed->claims.len);
        if (EVP_DigestVerifyInit(context, NULL, NULL, NULL, key) == 1
            && EVP_DigestVerify(context, parsed->signature.data, parsed->signature.len, signed_bytes, domain_len + parsed->claims.len) == 1) {
            Licensed__V1__ActivationClaims *claims = licensed__v1__activation_claims__unpack(NULL, parsed->claims.len, parsed->claims.data);
            if (claims) {
                int valid = claims->valid_until_ms >= now_ms && (!fingerprint || fingerprint_matches(claims, fingerprint, fingerprint_count));
                if (valid) {
                    rc = LC_OK;
                    if (activation) {
                        copy_text(activation->activation_id, sizeof activation->activation_id, claims->activation_id);
                        copy_text(activation->license_id, sizeof activation->license_id, claims->license_id);
                        activation->valid_until_ms = claims->valid_until_ms;
                    }
                }
                licensed__v1__activation_claims__free_unpacked(claims, NULL);
            }
        }
    }
    EVP_MD_CTX_free(context);
    EVP_PKEY_free(key);
    free(signed_bytes);
    licensed__v1__activation_certificate__free_unpacked(parsed, NULL);
    return rc;
}

/* Copies and verifies the certificate of an activation reply into *activation. */
static int take_certificate(lc_client *c, const Licensed__V1__ActivationCertificate *certificate, const char *const *fingerprint,
                            size_t fingerprint_count, lc_activation *activation) {
    if (!certificate) return fail(c, LC_ERR_PROTOCOL, "the server sent no certificate");
    size_t size = licensed__v1__activation_certificate__get_packed_size(certificate);
    uint8_t *bytes = malloc(size ? size : 1);
    if (!bytes) return fail(c, LC_ERR_NO_MEMORY, "out of memory");
    licensed__v1__activation_certificate__pack(certificate, bytes);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t now_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    if (!c->have_server_key
        || lc_verify_certificate(bytes, size, c->server_key, now_ms, fingerprint_count ? fingerprint : NULL, fingerprint_count, activation) != LC_OK) {
        free(bytes);
        return fail(c, LC_ERR_CERTIFICATE, "the activation certificate does not verify against the server's key");
    }
    activation->certificate = bytes;
    activation->certificate_len = size;
    return LC_OK;
}

int lc_activate(lc_client *c, const char *license_id, const char *feature, const char *const *fingerprint, size_t fingerprint_count,
                const char *machine_name, lc_activation *activation) {
    if (!c) return LC_ERR_USAGE;
    if (!activation || (fingerprint_count && !fingerprint)) return fail(c, LC_ERR_USAGE, "lc_activate needs an activation to fill");
    memset(activation, 0, sizeof *activation);
    Licensed__V1__ActivateRequest request = LICENSED__V1__ACTIVATE_REQUEST__INIT;
    request.license_id = (char *)(license_id ? license_id : "");
    request.feature = (char *)(feature ? feature : "");
    request.fingerprint = (char **)fingerprint;
    request.n_fingerprint = fingerprint_count;
    request.machine_name = (char *)(machine_name ? machine_name : "");
    /* Where this machine runs, for licences with client_environments. */
    lc_environment environment;
    char *kinds[2] = {NULL, NULL};
    if (lc_detect_environment(NULL, &environment) == LC_OK) {
        kinds[0] = environment.is_virtual ? "virtual" : "physical";
        kinds[1] = "container";
        request.environment = kinds;
        request.n_environment = environment.container[0] ? 2 : 1;
        request.environment_description = environment.description;
    }
    Licensed__V1__ClientMessage message = LICENSED__V1__CLIENT_MESSAGE__INIT;
    message.body_case = LICENSED__V1__CLIENT_MESSAGE__BODY_ACTIVATE;
    message.activate = &request;
    pthread_mutex_lock(&c->lock);
    Licensed__V1__ServerMessage *reply = NULL;
    int rc = call(c, &message, &reply);
    if (rc == LC_OK) {
        Licensed__V1__ActivateResponse *response = reply->activate;
        if (reply->body_case != LICENSED__V1__SERVER_MESSAGE__BODY_ACTIVATE || !response) {
            rc = fail(c, LC_ERR_PROTOCOL, "the server answered Activate with something else");
        } else {
            rc = take_certificate(c, response->certificate, fingerprint, fingerprint_count, activation);
            if (rc == LC_OK) {
                activation->existing = response->existing;
                activation->overage = response->overage;
                rc = succeed(c);
            }
        }
        licensed__v1__server_message__free_unpacked(reply, NULL);
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

int lc_validate_activation(lc_client *c, const char *activation_id, const char *const *fingerprint, size_t fingerprint_count,
                           lc_activation *activation) {
    if (!c) return LC_ERR_USAGE;
    if (!activation_id || !activation) return fail(c, LC_ERR_USAGE, "lc_validate_activation needs an activation id and a result");
    memset(activation, 0, sizeof *activation);
    Licensed__V1__ValidateActivationRequest request = LICENSED__V1__VALIDATE_ACTIVATION_REQUEST__INIT;
    request.activation_id = (char *)activation_id;
    request.fingerprint = (char **)fingerprint;
    request.n_fingerprint = fingerprint_count;
    Licensed__V1__ClientMessage message = LICENSED__V1__CLIENT_MESSAGE__INIT;
    message.body_case = LICENSED__V1__CLIENT_MESSAGE__BODY_VALIDATE_ACTIVATION;
    message.validate_activation = &request;
    pthread_mutex_lock(&c->lock);
    Licensed__V1__ServerMessage *reply = NULL;
    int rc = call(c, &message, &reply);
    if (rc == LC_OK) {
        if (reply->body_case != LICENSED__V1__SERVER_MESSAGE__BODY_VALIDATE_ACTIVATION || !reply->validate_activation) {
            rc = fail(c, LC_ERR_PROTOCOL, "the server answered ValidateActivation with something else");
        } else {
            rc = take_certificate(c, reply->validate_activation->certificate, fingerprint, fingerprint_count, activation);
            if (rc == LC_OK) rc = succeed(c);
        }
        licensed__v1__server_message__free_unpacked(reply, NULL);
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

void lc_activation_free(lc_activation *activation) {
    if (!activation) return;
    free(activation->certificate);
    activation->certificate = NULL;
    activation->certificate_len = 0;
}

/* ---- status ---------------------------------------------------------------------------- */

int lc_status(lc_client *c, const char *feature, lc_feature_status **features, size_t *count) {
    if (!c) return LC_ERR_USAGE;
    if (!features || !count) return fail(c, LC_ERR_USAGE, "lc_status needs somewhere to put the features");
    *features = NULL;
    *count = 0;
    Licensed__V1__StatusRequest request = LICENSED__V1__STATUS_REQUEST__INIT;
    char *only[1] = {(char *)feature};
    if (feature) {
        request.features = only;
        request.n_features = 1;
    }
    Licensed__V1__ClientMessage message = LICENSED__V1__CLIENT_MESSAGE__INIT;
    message.body_case = LICENSED__V1__CLIENT_MESSAGE__BODY_STATUS;
    message.status = &request;
    pthread_mutex_lock(&c->lock);
    Licensed__V1__ServerMessage *reply = NULL;
    int rc = call(c, &message, &reply);
    if (rc == LC_OK) {
        Licensed__V1__StatusResponse *response = reply->status;
        if (reply->body_case != LICENSED__V1__SERVER_MESSAGE__BODY_STATUS || !response) {
            rc = fail(c, LC_ERR_PROTOCOL, "the server answered Status with something else");
        } else {
            lc_feature_status *list = calloc(response->n_features ? response->n_features : 1, sizeof *list);
            if (!list) {
                rc = fail(c, LC_ERR_NO_MEMORY, "out of memory");
            } else {
                for (size_t i = 0; i < response->n_features; i++) {
                    Licensed__V1__FeatureStatus *f = response->features[i];
                    copy_text(list[i].feature, sizeof list[i].feature, f->feature);
                    list[i].capacity = f->capacity;
                    list[i].unlimited = f->unlimited;
                    list[i].in_use = f->in_use;
                    list[i].queued = f->queued;
                }
                *features = list;
                *count = response->n_features;
                rc = succeed(c);
            }
        }
        licensed__v1__server_message__free_unpacked(reply, NULL);
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

void lc_status_free(lc_feature_status *features) { free(features); }

void lc_close(lc_client *c) {
    if (!c) return;
    lc_stop_heartbeats(c);
    pthread_mutex_lock(&c->lock);
    drop_connection(c);
    pthread_mutex_unlock(&c->lock);
    pthread_mutex_destroy(&c->lock);
    pthread_mutex_destroy(&c->state_lock);
    pthread_mutex_destroy(&c->heartbeat_lock);
    pthread_cond_destroy(&c->heartbeat_wake);
    free(c->servers);
    free(c->held_ids);
    free(c->token);
    free(c->user);
    free(c->client_host);
    free(c->client_name);
    free(c->client_version);
    free(c);
}
