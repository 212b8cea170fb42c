import LicenseCrypto

/// What a session may do, from the token its Hello presented.
public enum Role: String, Sendable, CaseIterable, Comparable {
    /// Check-out, check-in, heartbeat, activation, status without holders.
    case client
    /// Adds status with holders, audit and reports.
    case auditor
    /// Adds revoke, reload, snapshot.
    case `operator`
    /// Everything.
    case admin

    /// True when this role may see who holds seats.
    public var seesHolders: Bool { self != .client }
    /// True when this role may check in or revoke other sessions' leases.
    public var mayRevoke: Bool { self >= .operator }

    public static func < (a: Role, b: Role) -> Bool {
        Self.allCases.firstIndex(of: a)! < Self.allCases.firstIndex(of: b)!
    }
}

/// Maps presented tokens to roles. Tokens are configured as SHA-256 hashes only, and a presented
/// token's hash is compared with every configured hash in constant time, so neither the config
/// nor the timing of a refusal reveals a token.
public struct TokenAuthority: Sendable {
    /// A configured token: its SHA-256 (32 bytes) and role.
    public struct Entry: Sendable, Equatable {
        /// SHA-256 of the token.
        public var hash: [UInt8]
        /// Role it grants.
        public var role: Role
        /// Creates an entry.
        public init(hash: [UInt8], role: Role) {
            self.hash = hash
            self.role = role
        }
    }

    let entries: [Entry]

    /// Creates an authority over `entries`.
    public init(entries: [Entry]) { self.entries = entries }

    /// The role for `token`: `.client` for no token, nil for a token that matches no entry.
    public func role(for token: String) -> Role? {
        guard !token.isEmpty else { return .client }
        let presented = SHA256.hash(Array(token.utf8))
        var matched: Role? = nil
        for entry in self.entries where Self.constantTimeEqual(entry.hash, presented) {
            matched = max(matched ?? entry.role, entry.role)
        }
        return matched
    }

    /// True when `a` equals `b`, in time that depends on the lengths only (tokens, CSRF tokens).
    public static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for i in a.indices { difference |= a[i] ^ b[i] }
        return difference == 0
    }
}
