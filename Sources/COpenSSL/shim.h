#ifndef LICENSED_COPENSSL_SHIM_H
#define LICENSED_COPENSSL_SHIM_H
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

/* SHA-256 of one buffer through OpenSSL's SHA-256 functions directly: EVP_Digest fetches the
   algorithm and allocates a context on every call, which costs about as much as hashing a short
   record (the audit trail hashes every record). The low-level functions are deprecated in
   OpenSSL 3 in favour of EVP, but remain its implementation of SHA256(). */
static inline void licensed_sha256(const void *data, size_t length, unsigned char digest[32]) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    SHA256_CTX context;
    SHA256_Init(&context);
    SHA256_Update(&context, data, length);
    SHA256_Final(digest, &context);
    OPENSSL_cleanse(&context, sizeof context);
#pragma GCC diagnostic pop
}
#endif
