import COpenSSL

/// An Ed25519 verification key held by OpenSSL.
///
/// PEM is SubjectPublicKeyInfo (`-----BEGIN PUBLIC KEY-----`), as `openssl pkey -pubout` writes.
public final class Ed25519PublicKey: @unchecked Sendable, Equatable {
    // Never mutated after init; OpenSSL allows concurrent verification with one EVP_PKEY.
    let pkey: OpaquePointer

    /// The 32 raw key bytes (as sent in `HelloResponse.server_public_key`).
    public let rawRepresentation: [UInt8]

    private init(owning pkey: OpaquePointer) throws {
        self.pkey = pkey
        var raw = [UInt8](repeating: 0, count: 32)
        var length = raw.count
        guard EVP_PKEY_get_raw_public_key(pkey, &raw, &length) == 1, length == 32 else {
            EVP_PKEY_free(pkey)
            throw CryptoError("cannot read the Ed25519 public key")
        }
        self.rawRepresentation = raw
    }

    deinit { EVP_PKEY_free(self.pkey) }

    /// Builds a key from its 32 raw bytes.
    public convenience init(rawRepresentation raw: [UInt8]) throws {
        guard raw.count == 32 else {
            throw CryptoError("an Ed25519 public key is 32 bytes, not \(raw.count)", drainingOpenSSLErrors: false)
        }
        guard let key = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nil, raw, raw.count) else {
            throw CryptoError("invalid Ed25519 public key")
        }
        try self.init(owning: key)
    }

    /// Reads a SubjectPublicKeyInfo PEM; fails unless it is an Ed25519 key.
    public convenience init(pem: String) throws {
        let key = try withReadBIO(Array(pem.utf8)) { bio in
            PEM_read_bio_PUBKEY(bio, nil, nil, nil)
        }
        guard let key else { throw CryptoError("not a PEM public key") }
        guard EVP_PKEY_get_id(key) == EVP_PKEY_ED25519 else {
            EVP_PKEY_free(key)
            throw CryptoError("public key is not Ed25519", drainingOpenSSLErrors: false)
        }
        try self.init(owning: key)
    }

    /// The key as SubjectPublicKeyInfo PEM.
    public func pemRepresentation() throws -> String {
        let bytes = try collectBIO { bio in PEM_write_bio_PUBKEY(bio, self.pkey) }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// True when `signature` is a valid Ed25519 signature of `message` by this key.
    public func isValidSignature(_ signature: [UInt8], for message: [UInt8]) -> Bool {
        guard signature.count == 64, let ctx = EVP_MD_CTX_new() else { return false }
        defer { EVP_MD_CTX_free(ctx) }
        guard EVP_DigestVerifyInit(ctx, nil, nil, nil, self.pkey) == 1 else {
            _ = OpenSSLErrorQueue.drain()
            return false
        }
        let result = signature.withUnsafeBufferPointer { sig in
            message.withUnsafeBufferPointer { msg in
                EVP_DigestVerify(ctx, sig.baseAddress, sig.count, msg.baseAddress, msg.count)
            }
        }
        if result != 1 { _ = OpenSSLErrorQueue.drain() }
        return result == 1
    }

    /// SHA-256 of the raw key, hex: a short identity for logs and status.
    public var fingerprint: String { SHA256.hash(self.rawRepresentation).hexString }

    public static func == (lhs: Ed25519PublicKey, rhs: Ed25519PublicKey) -> Bool {
        lhs.rawRepresentation == rhs.rawRepresentation
    }
}
