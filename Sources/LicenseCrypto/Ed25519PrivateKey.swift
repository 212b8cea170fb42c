import COpenSSL

/// An Ed25519 signing key held by OpenSSL.
///
/// PEM is PKCS#8 (`-----BEGIN PRIVATE KEY-----`), the form `openssl genpkey -algorithm ED25519`
/// writes, so keys move freely between `licensectl keys generate` and the openssl command line.
public final class Ed25519PrivateKey: @unchecked Sendable {
    // Never mutated after init; OpenSSL allows concurrent signing with one EVP_PKEY.
    let pkey: OpaquePointer

    private init(owning pkey: OpaquePointer) {
        self.pkey = pkey
    }

    deinit { EVP_PKEY_free(self.pkey) }

    /// Generates a new key from OpenSSL's CSPRNG.
    public static func generate() throws -> Ed25519PrivateKey {
        guard let ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nil) else {
            throw CryptoError("cannot create an Ed25519 key context")
        }
        defer { EVP_PKEY_CTX_free(ctx) }
        guard EVP_PKEY_keygen_init(ctx) == 1 else { throw CryptoError("cannot initialise Ed25519 key generation") }
        var key: OpaquePointer?
        guard EVP_PKEY_keygen(ctx, &key) == 1, let key else { throw CryptoError("Ed25519 key generation failed") }
        return Ed25519PrivateKey(owning: key)
    }

    /// Reads a PKCS#8 PEM private key; fails unless it is an Ed25519 key.
    public convenience init(pem: String) throws {
        let key = try withReadBIO(Array(pem.utf8)) { bio in
            PEM_read_bio_PrivateKey(bio, nil, nil, nil)
        }
        guard let key else { throw CryptoError("not a PEM private key") }
        guard EVP_PKEY_get_id(key) == EVP_PKEY_ED25519 else {
            EVP_PKEY_free(key)
            throw CryptoError("private key is not Ed25519", drainingOpenSSLErrors: false)
        }
        self.init(owning: key)
    }

    /// The key as PKCS#8 PEM.
    public func pemRepresentation() throws -> String {
        let bytes = try collectBIO { bio in
            PEM_write_bio_PrivateKey(bio, self.pkey, nil, nil, 0, nil, nil)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The matching public key.
    public var publicKey: Ed25519PublicKey {
        get throws {
            var raw = [UInt8](repeating: 0, count: 32)
            var length = raw.count
            guard EVP_PKEY_get_raw_public_key(self.pkey, &raw, &length) == 1, length == 32 else {
                throw CryptoError("cannot read the Ed25519 public key")
            }
            return try Ed25519PublicKey(rawRepresentation: raw)
        }
    }

    /// Signs `message` (PureEdDSA: the whole message, no pre-hash), returning 64 bytes.
    public func signature(for message: [UInt8]) throws -> [UInt8] {
        guard let ctx = EVP_MD_CTX_new() else { throw CryptoError("cannot allocate a digest context") }
        defer { EVP_MD_CTX_free(ctx) }
        // Ed25519 takes no digest: NULL here, and the one-shot EVP_DigestSign only.
        guard EVP_DigestSignInit(ctx, nil, nil, nil, self.pkey) == 1 else {
            throw CryptoError("cannot initialise Ed25519 signing")
        }
        var signature = [UInt8](repeating: 0, count: 64)
        var length = signature.count
        let ok = message.withUnsafeBufferPointer { msg in
            EVP_DigestSign(ctx, &signature, &length, msg.baseAddress, msg.count)
        }
        guard ok == 1, length == 64 else { throw CryptoError("Ed25519 signing failed") }
        return signature
    }
}
