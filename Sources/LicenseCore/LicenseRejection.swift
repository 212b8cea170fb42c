/// Why a licence block grants nothing. Each case's description is the reason the daemon logs and
/// `licensectl status` shows.
public enum LicenseRejection: Error, Hashable, Sendable, CustomStringConvertible {
    /// The block is not base64 of a `SignedLicense` holding a `License`.
    case unparseable(String)
    /// The block names a key id the server does not trust.
    case unknownKey(String)
    /// The signature does not verify with the trusted key of that id.
    case badSignature(keyID: String)
    /// The licence's server_hostids do not include this server.
    case wrongServerHost([String])
    /// Past not_after and its grace period.
    case expired(notAfterMs: Int64, graceMs: Int64)
    /// The licence's server_environments do not allow where this server runs.
    case environmentNotAllowed(String)

    /// The short reason, one of "unparseable", "unknown key", "bad signature", "wrong server host",
    /// "environment not allowed", "expired".
    public var reason: String {
        switch self {
        case .unparseable: "unparseable"
        case .unknownKey: "unknown key"
        case .badSignature: "bad signature"
        case .wrongServerHost: "wrong server host"
        case .expired: "expired"
        case .environmentNotAllowed: "environment not allowed"
        }
    }

    public var description: String {
        switch self {
        case .unparseable(let detail):
            "unparseable: \(detail)"
        case .unknownKey(let keyID):
            "unknown key: key id '\(keyID)' is not among the trusted issuer keys"
        case .badSignature(let keyID):
            "bad signature: does not verify with trusted key '\(keyID)'"
        case .wrongServerHost(let hostIDs):
            "wrong server host: licence is bound to server host id(s) \(hostIDs.joined(separator: ", ")), not this server"
        case .environmentNotAllowed(let detail):
            "environment not allowed: \(detail)"
        case .expired(let notAfter, let grace):
            "expired: not_after \(Timestamp.iso8601(notAfter))"
                + (grace > 0 ? " plus a grace period of \(grace / 86_400_000) day(s) has passed" : " has passed")
        }
    }
}
