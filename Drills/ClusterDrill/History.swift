import Foundation

/// What the drill's clients saw, and the checks over it. Independent of the daemon's code: it
/// knows only what the client library reported (acknowledged grants, check-ins sent) and what
/// the active server lists.
final class History: @unchecked Sendable {
    struct Grant {
        var client: Int
        var leaseID: [UInt8]
        var token: UInt64
        var ackedAt: ContinuousClock.Instant
        var server: String
    }

    private let lock = NSLock()
    private(set) var grants: [Grant] = []
    private var checkInsSent = Set<[UInt8]>()
    private(set) var violations: [String] = []

    func granted(_ grant: Grant) { lock.withLock { grants.append(grant) } }

    /// Recorded before the check-in is sent: from then on the lease may be gone.
    func checkInSent(_ leaseID: [UInt8]) { _ = lock.withLock { checkInsSent.insert(leaseID) } }

    func violation(_ text: String) {
        lock.withLock { violations.append(text) }
        FileHandle.standardOutput.write(Data("VIOLATION: \(text)\n".utf8))
    }

    /// Acknowledged grants with no check-in sent: leases the server must hold.
    var held: Set<[UInt8]> {
        lock.withLock { Set(grants.map(\.leaseID)).subtracting(checkInsSent) }
    }

    var grantCount: Int { lock.withLock { grants.count } }

    /// The first grant acknowledged after `instant` by another server than `excluded` (a reply
    /// the killed server sent just before its end can arrive just after).
    func firstGrant(after instant: ContinuousClock.Instant, excluding excluded: String) -> Grant? {
        lock.withLock { grants.filter { $0.ackedAt > instant && $0.server != excluded }.min { $0.ackedAt < $1.ackedAt } }
    }

    /// Every held lease is among `listed` (the active server's leases), and seats in use never
    /// exceed the capacity.
    func checkHeld(listed: Set<[UInt8]>, inUse: Int, capacity: Int, after event: String) -> Int {
        let missing = held.subtracting(listed)
        if !missing.isEmpty {
            violation("after \(event): \(missing.count) acknowledged lease(s) without a check-in are not held by the active server")
        }
        if inUse > capacity { violation("after \(event): \(inUse) seats in use, more than the licence's \(capacity)") }
        return held.count
    }

    /// Over the whole run: no lease id granted twice; each client's tokens increase; every
    /// token acknowledged after a failover exceeds every token acknowledged before it.
    func checkWholeRun(failovers: [ContinuousClock.Instant]) {
        let all = lock.withLock { grants }
        var seen = Set<[UInt8]>()
        for grant in all where !seen.insert(grant.leaseID).inserted {
            violation("lease \(grant.leaseID.map { String(format: "%02x", $0) }.joined()) was granted twice")
        }
        for client in Set(all.map(\.client)) {
            let tokens = all.filter { $0.client == client }.sorted { $0.ackedAt < $1.ackedAt }.map(\.token)
            if zip(tokens, tokens.dropFirst()).contains(where: { $0 >= $1 }) {
                violation("client \(client)'s fencing tokens did not only increase: \(tokens)")
            }
        }
        for instant in failovers {
            let before = all.filter { $0.ackedAt < instant }.map(\.token).max() ?? 0
            if let after = all.filter({ $0.ackedAt > instant }).map(\.token).min(), after <= before {
                violation("a token acknowledged after a failover (\(after)) does not exceed one acknowledged before it (\(before))")
            }
        }
    }
}
