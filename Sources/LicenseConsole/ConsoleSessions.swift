import Foundation
import LicenseClient
import LicenseCrypto
import LicenseServer
import Synchronization

/// One signed-in browser: its role, the token it signed in with (kept here, never in the cookie),
/// the CSRF token its forms carry, when it expires, and the protocol client it acts through — a
/// session of the daemon's own listener with that token, so that every request is checked,
/// audited and answered exactly as `licensectl`'s would be.
final class ConsoleSession: Sendable {
    let id: String
    let role: Role
    let csrf: String
    let address: String
    let expiresAtMs: Int64
    let client: LicenseClient

    init(id: String, role: Role, csrf: String, address: String, expiresAtMs: Int64, client: LicenseClient) {
        self.id = id
        self.role = role
        self.csrf = csrf
        self.address = address
        self.expiresAtMs = expiresAtMs
        self.client = client
    }

    /// The name the audit trail and the page show: the role and the browser's address.
    var actor: String { "console-\(self.role.rawValue)@\(self.address)" }

    /// True when `presented` is this session's CSRF token (compared in constant time).
    func acceptsCSRF(_ presented: String?) -> Bool {
        guard let presented else { return false }
        return TokenAuthority.constantTimeEqual(Array(presented.utf8), Array(self.csrf.utf8))
    }
}

/// The signed-in browsers, by the random id their cookie carries. Sessions end at their expiry or
/// at sign-out; an expired one is dropped when next looked up.
final class ConsoleSessions: Sendable {
    private let sessions = Mutex<[String: ConsoleSession]>([:])
    /// Most sessions kept at once; the oldest to expire goes first.
    private let capacity = 1_000

    /// A new session for `role` from `address`, valid for `lifetimeMs`.
    func create(role: Role, address: String, lifetimeMs: Int64, client: LicenseClient, nowMs: Int64) -> ConsoleSession {
        let session = ConsoleSession(
            id: SecureRandom.bytes(32).hexString,
            role: role,
            csrf: SecureRandom.bytes(32).hexString,
            address: address,
            expiresAtMs: nowMs + lifetimeMs,
            client: client
        )
        let evicted = self.sessions.withLock { sessions -> ConsoleSession? in
            var evicted: ConsoleSession? = nil
            if sessions.count >= self.capacity, let oldest = sessions.values.min(by: { $0.expiresAtMs < $1.expiresAtMs }) {
                sessions[oldest.id] = nil
                evicted = oldest
            }
            sessions[session.id] = session
            return evicted
        }
        if let evicted { Task { await evicted.client.close() } }
        return session
    }

    /// The live session of `id`, or nil (unknown, or expired: then it is removed).
    func session(_ id: String?, nowMs: Int64) -> ConsoleSession? {
        guard let id else { return nil }
        let (live, expired) = self.sessions.withLock { sessions -> (ConsoleSession?, ConsoleSession?) in
            guard let session = sessions[id] else { return (nil, nil) }
            guard session.expiresAtMs > nowMs else {
                sessions[id] = nil
                return (nil, session)
            }
            return (session, nil)
        }
        if let expired { Task { await expired.client.close() } }
        return live
    }

    /// Ends session `id` (sign-out).
    func remove(_ id: String) {
        if let session = self.sessions.withLock({ $0.removeValue(forKey: id) }) { Task { await session.client.close() } }
    }

}
