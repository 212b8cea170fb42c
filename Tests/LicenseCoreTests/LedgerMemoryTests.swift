import LicenseCore
import LicenseProtocol
import Testing

/// What the ledger keeps follows the leases held, not the requests served: a daemon that runs for
/// months must not grow with every check-out or heartbeat.
@Suite("Ledger memory: proportional to live state")
struct LedgerMemoryTests {
    @Test("100,000 check-out/check-in pairs and 100,000 heartbeats beside 3 held leases leave a bounded expiry index")
    func expiryIndexFollowsLiveLeases() throws {
        let t0: Int64 = 1_790_000_000_000
        var ledger = ClockStepTests.ledger(count: 10)
        let holder = ID128(high: 1, low: 1)
        let churner = ID128(high: 1, low: 2)
        ledger.openSession(holder, identity: ClientIdentity(user: "a", host: "h"))
        ledger.openSession(churner, identity: ClientIdentity(user: "b", host: "h"))
        for low in 1...3 {
            _ = try ledger.checkOut(.init(sessionID: holder, feature: "cad", newLeaseID: ID128(high: 2, low: UInt64(low))), at: t0).get()
        }
        var now = t0
        for pair in 0..<100_000 {
            now += 1
            let grant = try ledger.checkOut(
                .init(sessionID: churner, feature: "cad", newLeaseID: ID128(high: 3, low: UInt64(pair))),
                at: now
            )
            .get()
            _ = try ledger.checkIn(grant.lease.id, by: churner, at: now).get()
            _ = ledger.heartbeat(session: holder, leaseIDs: [], at: now)
            if pair % 1_000 == 0 { #expect(ledger.expiryIndexCount <= 2 * ledger.leases.count + 4_096) }
        }
        #expect(ledger.leases.count == 3)
        // Renewed all along: nothing is reclaimed one TTL after the start, all of it one TTL after the last beat.
        #expect(ledger.reap(at: t0 + 30_000).isEmpty)
        #expect(ledger.reap(at: now + 30_000).count == 3)
        #expect(ledger.expiryIndexCount == 0)
    }

    @Test("a reaper pass with a limit reclaims that many of the lapsed leases, soonest first; the next passes the rest, each once")
    func reapInPasses() throws {
        let t0: Int64 = 1_790_000_000_000
        var ledger = ClockStepTests.ledger(count: 1_000)
        let session = ID128(high: 1, low: 1)
        ledger.openSession(session, identity: ClientIdentity(user: "a", host: "h"))
        for low in 1...1_000 {
            _ = try ledger.checkOut(
                .init(sessionID: session, feature: "cad", newLeaseID: ID128(high: 2, low: UInt64(low))),
                at: t0 + Int64(low)
            )
            .get()
        }
        let now = t0 + 1_000 + 30_000
        var passes: [[LeaseID]] = []
        while true {
            let pass = ledger.reap(at: now, limit: 300).map(\.lease.id)
            if pass.isEmpty { break }
            passes.append(pass)
        }
        #expect(passes.map(\.count) == [300, 300, 300, 100])
        // Soonest expiry first: the lease granted first goes in the first pass.
        #expect(passes[0].first == ID128(high: 2, low: 1))
        let all = passes.flatMap { $0 }
        #expect(Set(all).count == 1_000)
        #expect(ledger.leases.isEmpty)
    }
}
