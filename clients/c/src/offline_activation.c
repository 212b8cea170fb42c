/* offline_activation.c — air-gapped activation, the machine's side: install and verify the
 * certificate files an operator's `licensectl activation fulfil` writes. See licensed_client.h. */
#define _POSIX_C_SOURCE 200809L
#include "licensed_client.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "licensed/v1/activation.pb-c.h"

#define LC_BEGIN_ACTIVATION "-----BEGIN LICENSED ACTIVATION-----"
#define LC_END_ACTIVATION "-----END LICENSED ACTIVATION-----"
#define LC_MAX_ACTIVATION_FILE (1u << 20)

static int problem(char *why, size_t why_size, int rc, const char *format, const char *detail) {
    if (why && why_size) snprintf(why, why_size, format, detail ? detail : "");
    return rc;
}

/* The whole file (at most LC_MAX_ACTIVATION_FILE bytes), NUL-terminated; NULL on failure. */
static char *read_file(const char *path, size_t *length) {
    FILE *file = fopen(path, "rb");
    if (!file) return NULL;
    char *data = malloc(LC_MAX_ACTIVATION_FILE + 1);
    size_t n = data ? fread(data, 1, LC_MAX_ACTIVATION_FILE + 1, file) : 0;
    int failed = !data || ferror(file) || n > LC_MAX_ACTIVATION_FILE;
    fclose(file);
    if (failed) { free(data); return NULL; }
    data[n] = '\0';
    *length = n;
    return data;
}

/* A line without what mail adds: surrounding spaces and any number of '>' quote marks. */
static void unquote(const char **start, const char **end) {
    for (;;) {
        while (*start < *end && (**start == ' ' || **start == '\t')) (*start)++;
        while (*end > *start && ((*end)[-1] == ' ' || (*end)[-1] == '\t' || (*end)[-1] == '\r')) (*end)--;
        if (*start < *end && **start == '>') { (*start)++; continue; }
        return;
    }
}

static int is_base64(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/' || c == '=';
}

static int line_is(const char *start, const char *end, const char *marker) {
    size_t length = strlen(marker);
    return (size_t)(end - start) == length && memcmp(start, marker, length) == 0;
}

/* Decodes the one activation block of text into *bytes (malloc'd); LC_OK or LC_ERR_CERTIFICATE with why. */
static int armored_bytes(const char *text, size_t length, uint8_t **bytes, size_t *size, char *why, size_t why_size) {
    char *base64 = malloc(length + 1);
    if (!base64) return problem(why, why_size, LC_ERR_NO_MEMORY, "out of memory%s", NULL);
    size_t used = 0, line_number = 0;
    int state = 0; /* 0 before the block, 1 inside, 2 after */
    const char *line = text, *limit = text + length;
    while (line < limit && state < 2) {
        const char *newline = memchr(line, '\n', (size_t)(limit - line));
        const char *end = newline ? newline : limit, *start = line;
        line_number++;
        unquote(&start, &end);
        if (state == 0 && line_is(start, end, LC_BEGIN_ACTIVATION)) {
            state = 1;
        } else if (state == 1 && line_is(start, end, LC_END_ACTIVATION)) {
            state = 2;
        } else if (state == 1) {
            for (const char *p = start; p < end; p++) {
                if (!is_base64(*p)) {
                    char detail[64];
                    snprintf(detail, sizeof detail, "%zu", line_number);
                    free(base64);
                    return problem(why, why_size, LC_ERR_CERTIFICATE, "line %s: a character that is not base64", detail);
                }
                base64[used++] = *p;
            }
        }
        line = newline ? newline + 1 : limit;
    }
    if (state != 2) {
        free(base64);
        return problem(why, why_size, LC_ERR_CERTIFICATE, "no complete " LC_BEGIN_ACTIVATION " block%s", NULL);
    }
    if (used == 0 || used % 4 != 0) {
        free(base64);
        return problem(why, why_size, LC_ERR_CERTIFICATE, "the block's base64 has a wrong length (a line lost or cut?)%s", NULL);
    }
    size_t padding = (base64[used - 1] == '=') + (used > 1 && base64[used - 2] == '=');
    *bytes = malloc(used / 4 * 3 + 1);
    int decoded = *bytes ? EVP_DecodeBlock(*bytes, (const unsigned char *)base64, (int)used) : -1;
    free(base64);
    if (decoded < 0 || (size_t)decoded < padding) {
        free(*bytes);
        *bytes = NULL;
        return problem(why, why_size, LC_ERR_CERTIFICATE, "the block is not valid base64%s", NULL);
    }
    *size = (size_t)decoded - padding;
    return LC_OK;
}

/* Checks an OfflineActivation: the key (if pinned), the certificate's signature, validity and
 * fingerprint, and (if feature) that it grants feature. Fills *activation (certificate copied). */
static int check_activation(const Licensed__V1__OfflineActivation *offline, const uint8_t server_public_key[32], const char *feature,
                            const char *const *fingerprint, size_t fingerprint_count, int64_t now_ms, lc_activation *activation, char *why,
                            size_t why_size) {
    if (!offline->certificate || offline->server_public_key.len != 32)
        return problem(why, why_size, LC_ERR_CERTIFICATE, "the activation has no certificate or no server key%s", NULL);
    if (server_public_key && memcmp(server_public_key, offline->server_public_key.data, 32) != 0)
        return problem(why, why_size, LC_ERR_CERTIFICATE, "the activation is signed by another server key than the one expected%s", NULL);
    size_t size = licensed__v1__activation_certificate__get_packed_size(offline->certificate);
    uint8_t *certificate = malloc(size ? size : 1);
    if (!certificate) return problem(why, why_size, LC_ERR_NO_MEMORY, "out of memory%s", NULL);
    licensed__v1__activation_certificate__pack(offline->certificate, certificate);
    lc_activation checked = {0};
    int rc = lc_verify_certificate(certificate, size, offline->server_public_key.data, now_ms, fingerprint, fingerprint_count, &checked);
    if (rc != LC_OK) {
        free(certificate);
        return problem(why, why_size, rc, "the certificate does not verify here (signature, offline validity or this machine's fingerprint)%s", NULL);
    }
    if (feature) {
        Licensed__V1__ActivationClaims *claims =
            licensed__v1__activation_claims__unpack(NULL, offline->certificate->claims.len, offline->certificate->claims.data);
        int grants = 0;
        for (size_t i = 0; claims && i < claims->n_features; i++) grants |= strcmp(claims->features[i], feature) == 0;
        if (claims) licensed__v1__activation_claims__free_unpacked(claims, NULL);
        if (!grants) {
            free(certificate);
            return problem(why, why_size, LC_ERR_CERTIFICATE, "it does not grant the feature '%s'", feature);
        }
    }
    if (activation) {
        *activation = checked;
        activation->certificate = certificate;
        activation->certificate_len = size;
    } else {
        free(certificate);
    }
    return LC_OK;
}

/* $LICENSED_ACTIVATION_DIR, else ~/.local/share/licensed/activations, into buffer. */
static const char *default_directory(const char *directory, char *buffer, size_t size) {
    if (directory) return directory;
    const char *configured = getenv("LICENSED_ACTIVATION_DIR");
    if (configured && *configured) return configured;
    const char *home = getenv("HOME");
    snprintf(buffer, size, "%s/.local/share/licensed/activations", home && *home ? home : ".");
    return buffer;
}

/* mkdir -p. */
static int make_directories(const char *path) {
    char buffer[4096];
    if (snprintf(buffer, sizeof buffer, "%s", path) >= (int)sizeof buffer) return -1;
    for (char *p = buffer + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buffer, 0755) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    return mkdir(buffer, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

static int safe_name(const char *id) {
    if (!*id || strlen(id) > 64) return 0;
    for (const char *p = id; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_')) return 0;
    return 1;
}

int lc_offline_install(const char *certificate_file, const char *directory, const uint8_t server_public_key[32],
                       const char *const *fingerprint, size_t fingerprint_count, int64_t now_ms, lc_activation *activation, char *why,
                       size_t why_size) {
    if (!certificate_file || !fingerprint || !fingerprint_count || !activation) return problem(why, why_size, LC_ERR_USAGE, "bad arguments%s", NULL);
    memset(activation, 0, sizeof *activation);
    size_t length = 0;
    char *text = read_file(certificate_file, &length);
    if (!text) return problem(why, why_size, LC_ERR_IO, "cannot read %s", certificate_file);
    uint8_t *bytes = NULL;
    size_t size = 0;
    int rc = armored_bytes(text, length, &bytes, &size, why, why_size);
    free(text);
    if (rc != LC_OK) return rc;
    Licensed__V1__OfflineActivation *offline = licensed__v1__offline_activation__unpack(NULL, size, bytes);
    if (!offline) {
        free(bytes);
        return problem(why, why_size, LC_ERR_CERTIFICATE, "the block is not an OfflineActivation%s", NULL);
    }
    rc = check_activation(offline, server_public_key, NULL, fingerprint, fingerprint_count, now_ms, activation, why, why_size);
    if (rc == LC_OK && (!safe_name(offline->activation_id) || strcmp(offline->activation_id, activation->activation_id) != 0))
        rc = problem(why, why_size, LC_ERR_CERTIFICATE, "the file's activation id and its certificate's differ%s", NULL);
    if (rc == LC_OK) {
        char buffer[4096], path[4352], temporary[4400];
        const char *where = default_directory(directory, buffer, sizeof buffer);
        snprintf(path, sizeof path, "%s/%s.act", where, offline->activation_id);
        snprintf(temporary, sizeof temporary, "%s.tmp", path);
        int fd = make_directories(where) == 0 ? open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644) : -1;
        int written = fd >= 0 && write(fd, bytes, size) == (ssize_t)size && fsync(fd) == 0;
        if (fd >= 0) close(fd);
        if (!written || rename(temporary, path) != 0) {
            unlink(temporary);
            rc = problem(why, why_size, LC_ERR_IO, "cannot write the activation into %s", where);
        }
    }
    if (rc != LC_OK) lc_activation_free(activation);
    licensed__v1__offline_activation__free_unpacked(offline, NULL);
    free(bytes);
    return rc;
}

int lc_offline_verify(const char *directory, const char *feature, const uint8_t server_public_key[32], const char *const *fingerprint,
                      size_t fingerprint_count, int64_t now_ms, lc_activation *activation, char *why, size_t why_size) {
    if (!feature || !fingerprint || !fingerprint_count || !activation) return problem(why, why_size, LC_ERR_USAGE, "bad arguments%s", NULL);
    memset(activation, 0, sizeof *activation);
    char buffer[4096];
    const char *where = default_directory(directory, buffer, sizeof buffer);
    DIR *listing = opendir(where);
    if (!listing) return problem(why, why_size, LC_NOT_FOUND, "no activation is installed (%s cannot be read)", where);
    int rc = problem(why, why_size, LC_NOT_FOUND, "no activation installed in %s lets this machine use the feature", where);
    struct dirent *entry;
    while ((entry = readdir(listing)) != NULL) {
        size_t name_length = strlen(entry->d_name);
        if (name_length < 5 || strcmp(entry->d_name + name_length - 4, ".act") != 0) continue;
        char path[4352];
        snprintf(path, sizeof path, "%s/%s", where, entry->d_name);
        size_t size = 0;
        char *bytes = read_file(path, &size);
        if (!bytes) continue;
        Licensed__V1__OfflineActivation *offline = licensed__v1__offline_activation__unpack(NULL, size, (const uint8_t *)bytes);
        free(bytes);
        if (!offline) continue;
        char reason[256];
        int checked = check_activation(offline, server_public_key, feature, fingerprint, fingerprint_count, now_ms, activation, reason, sizeof reason);
        licensed__v1__offline_activation__free_unpacked(offline, NULL);
        if (checked == LC_OK) {
            rc = LC_OK;
            break;
        }
        if (why && why_size) snprintf(why, why_size, "%s: %s", entry->d_name, reason);
        rc = checked == LC_ERR_NO_MEMORY ? checked : LC_ERR_CERTIFICATE;
    }
    closedir(listing);
    return rc;
}
