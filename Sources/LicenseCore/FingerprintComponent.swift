public import LicenseCrypto

/// One hashed part of a machine's identity. The raw value (a machine-id, a MAC address) never
/// leaves the machine; only `id`, a hash bound to the component's kind, does.
public struct FingerprintComponent: Sendable, Hashable, Codable {
    /// What the component is: "machine-id", "product-uuid", "mac", "hostname" or "operator".
    public var kind: String
    /// 32 hex digits: the first 128 bits of SHA-256("licensed.v1.fingerprint\0" kind "\0" value).
    public var id: String

    /// Hashes `value` as a component of `kind`.
    public init(kind: String, value: String) {
        self.kind = kind
        let input = Array("licensed.v1.fingerprint".utf8) + [0] + Array(kind.utf8) + [0] + Array(value.utf8)
        self.id = String(SHA256.hash(input).hexString.prefix(32))
    }
}
