/// Prefixes that separate what the same kind of Ed25519 key signs, so a signature made for one
/// purpose can never be accepted for another. Signed bytes are `prefix || 0x00 || payload`.
public enum SignatureDomain: String, Sendable, CaseIterable {
    /// Issuer signatures over a serialized `License`.
    case license = "licensed.v1.license"
    /// Server signatures over serialized `ActivationClaims`.
    case activation = "licensed.v1.activation"
    /// Server signatures over a borrow token's claims.
    case borrow = "licensed.v1.borrow"
    /// Server signatures over an audit-trail checkpoint (the last record removed by retention).
    case auditCheckpoint = "licensed.v1.audit-checkpoint"

    /// The exact bytes a signature in this domain covers.
    public func signedBytes(_ payload: [UInt8]) -> [UInt8] {
        var bytes = Array(self.rawValue.utf8)
        bytes.append(0)
        bytes.append(contentsOf: payload)
        return bytes
    }
}

extension Ed25519PrivateKey {
    /// Signs `payload` in `domain`.
    public func signature(for payload: [UInt8], in domain: SignatureDomain) throws -> [UInt8] {
        try self.signature(for: domain.signedBytes(payload))
    }
}

extension Ed25519PublicKey {
    /// True when `signature` signs `payload` in `domain` with this key.
    public func isValidSignature(_ signature: [UInt8], for payload: [UInt8], in domain: SignatureDomain) -> Bool {
        self.isValidSignature(signature, for: domain.signedBytes(payload))
    }
}
