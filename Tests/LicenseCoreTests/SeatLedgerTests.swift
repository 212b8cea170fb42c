import LicenseCore
import LicenseProtocol
import Testing

/// Builders for ledger tests: licences, sessions and ids without ceremony.
struct LedgerFixture {
    static let t0: Int64 = 1_790_000_000_000
    static let day: Int64 = 86_400_000
    static let ttl: Int64 = 60_000

    static func license(
        _ id: String,
        feature: String = "cad",
        count: UInt32,
        overage: Licensed_V1_OveragePolicy = .hard,
        version: String = "",
        notBefore: Int64 = 0,
        notAfter: Int64 = 0,
        grace: Int64 = 0
    ) -> VerifiedLicense {
        var license = Licensed_V1_License()
        license.id = id
        license.model = .floating
        license.overage = overage
        var f = Licensed_V1_Feature()
        f.name = feature
        f.count = count
        f.version = version
        license.features = [f]
        license.notBeforeMs = notBefore
        license.notAfterMs = notAfter
        license.gracePeriodMs = grace
        return VerifiedLicense(license: license, keyID: "k", file: "test.lic", block: 1)
    }

    static func ledger(_ licenses: [VerifiedLicense]) -> SeatLedger {
        SeatLedger(configuration: .init(defaultLeaseTTLMs: ttl), licenses: licenses)
    }

    static func id(_ n: UInt64) -> ID128 { ID128(high: 0xabc, low: n) }

    static func session(_ ledger: inout SeatLedger, _ n: UInt64, user: String = "ada", version: String = "2026.1") -> SessionID {
        let id = ID128(high: 0x5e55, low: n)
        ledger.openSession(id, identity: ClientIdentity(user: user, host: "h\(n)", clientVersion: version))
        return id
    }
}

@Suite("Seat ledger")
struct SeatLedgerTests {
    typealias F = LedgerFixture

    func checkOut(
        _ ledger: inout SeatLedger,
        _ session: SessionID,
        feature: String = "cad",
        count: UInt32 = 1,
        key: [UInt8] = [],
        version: String = "",
        lease: UInt64,
        at now: Int64 = F.t0
    ) -> Result<SeatLedger.Grant, LicenseError> {
        ledger.checkOut(
            .init(sessionID: session, feature: feature, version: version, count: count, checkoutKey: key, newLeaseID: F.id(lease)),
            at: now
        )
    }

    func code(_ result: Result<SeatLedger.Grant, LicenseError>) -> Licensed_V1_Error.Code? {
        if case .failure(let error) = result { return error.code }
        return nil
    }

    @Test("N seats give N grants, then NO_SEATS; a check-in frees one")
    func capacity() throws {
        var ledger = F.ledger([F.license("L", count: 3)])
        let s = F.session(&ledger, 1)
        for n in 1...3 { #expect(code(checkOut(&ledger, s, lease: UInt64(n))) == nil) }
        let denied = checkOut(&ledger, s, lease: 4)
        #expect(code(denied) == .noSeats)
        if case .failure(let error) = denied { #expect(error.message.contains("all 3 seats of 'cad' are in use")) }
        #expect(ledger.seatsInUse(of: "cad") == 3)
        _ = try ledger.checkIn(F.id(2), by: s, at: F.t0).get()
        #expect(code(checkOut(&ledger, s, lease: 5)) == nil)
        #expect(code(checkOut(&ledger, s, lease: 6)) == .noSeats)
    }

    /// At capacity, what each overage policy does with one more check-out.
    @Test(
        "overage policy at capacity",
        arguments: [
            (Licensed_V1_OveragePolicy.hard, Licensed_V1_Error.Code?.some(.noSeats), false),
            (.trueUp, nil, true),
            (.unlimited, nil, false),
        ] as [(Licensed_V1_OveragePolicy, Licensed_V1_Error.Code?, Bool)]
    )
    func overagePolicy(policy: Licensed_V1_OveragePolicy, expected: Licensed_V1_Error.Code?, overage: Bool) throws {
        var ledger = F.ledger([F.license("L", count: 2, overage: policy)])
        let s = F.session(&ledger, 1)
        #expect(code(checkOut(&ledger, s, lease: 1)) == nil)
        #expect(code(checkOut(&ledger, s, lease: 2)) == nil)
        let third = checkOut(&ledger, s, lease: 3)
        #expect(code(third) == expected)
        if case .success(let grant) = third {
            #expect(grant.lease.overage == overage)
            if overage { #expect(grant.warnings.contains { $0.contains("true-up") }) }
        }
        let status = ledger.status(includeHolders: false, at: F.t0)
        #expect(status.features.first?.overage == (overage ? 1 : 0))
        #expect(status.features.first?.unlimited == (policy == .unlimited))
        #expect(status.licenses.first?.state == .compliant)
    }

    @Test("two licences for one feature add up, soonest expiry first")
    func incrementsAddUp() throws {
        var ledger = F.ledger([
            F.license("late", count: 2, notAfter: F.t0 + 300 * F.day),
            F.license("soon", count: 1, notAfter: F.t0 + 30 * F.day),
        ])
        let s = F.session(&ledger, 1)
        #expect(ledger.capacity(of: "cad", at: F.t0) == 3)
        let first = try checkOut(&ledger, s, lease: 1).get()
        #expect(first.lease.licenseID == "soon")
        #expect(try checkOut(&ledger, s, lease: 2).get().lease.licenseID == "late")
        #expect(try checkOut(&ledger, s, lease: 3).get().lease.licenseID == "late")
        #expect(code(checkOut(&ledger, s, lease: 4)) == .noSeats)
    }

    @Test("a multi-seat check-out must fit in one licence")
    func multiSeat() throws {
        var ledger = F.ledger([F.license("A", count: 2), F.license("B", count: 2)])
        let s = F.session(&ledger, 1)
        #expect(try checkOut(&ledger, s, count: 2, lease: 1).get().lease.count == 2)
        #expect(code(checkOut(&ledger, s, count: 3, lease: 2)) == .noSeats)
        #expect(ledger.seatsInUse(of: "cad") == 2)
    }

    @Test("heartbeat lapse: reclaimed at the TTL and not before")
    func reclaimAtTTL() throws {
        var ledger = F.ledger([F.license("L", count: 1)])
        let s = F.session(&ledger, 1)
        _ = try checkOut(&ledger, s, lease: 1).get()
        ledger.detachSession(s)
        #expect(ledger.reap(at: F.t0 + F.ttl - 1).isEmpty)
        #expect(ledger.seatsInUse(of: "cad") == 1)
        let reclaimed = ledger.reap(at: F.t0 + F.ttl)
        #expect(reclaimed.map(\.lease.id) == [F.id(1)])
        #expect(reclaimed.first?.change == .released(F.id(1), .expired, atMs: F.t0 + F.ttl))
        #expect(ledger.seatsInUse(of: "cad") == 0)
        #expect(ledger.sessionCount == 0)
    }

    @Test("heartbeats push the expiry; the reaper skips superseded entries")
    func heartbeatRenews() throws {
        var ledger = F.ledger([F.license("L", count: 2)])
        let s = F.session(&ledger, 1)
        _ = try checkOut(&ledger, s, lease: 1).get()
        _ = try checkOut(&ledger, s, lease: 2).get()
        let beat = ledger.heartbeat(session: s, leaseIDs: [], at: F.t0 + 30_000)
        #expect(beat.renewed == 2)
        #expect(beat.expiresAtMs == F.t0 + 30_000 + F.ttl)
        #expect(ledger.reap(at: F.t0 + F.ttl).isEmpty)
        // Named heartbeat: only lease 1 is renewed; a lease of nobody is reported lost.
        let named = ledger.heartbeat(session: s, leaseIDs: [F.id(1), F.id(99)], at: F.t0 + 60_000)
        #expect(named.renewed == 1)
        #expect(named.lost == [F.id(99)])
        #expect(ledger.reap(at: F.t0 + 30_000 + F.ttl).map(\.lease.id) == [F.id(2)])
        #expect(ledger.reap(at: F.t0 + 60_000 + F.ttl).map(\.lease.id) == [F.id(1)])
        #expect(ledger.expiryIndexCount == 0)
    }

    @Test("resume within the TTL keeps the leases; another session's heartbeat does not renew them")
    func resumeKeepsLeases() throws {
        var ledger = F.ledger([F.license("L", count: 1)])
        let s = F.session(&ledger, 1)
        _ = try checkOut(&ledger, s, lease: 1).get()
        ledger.detachSession(s)
        #expect(!ledger.isAttached(s))
        #expect(ledger.resumeSession(s)?.user == "ada")
        #expect(ledger.isAttached(s))
        #expect(ledger.heartbeat(session: s, leaseIDs: [], at: F.t0 + 50_000).renewed == 1)
        #expect(ledger.reap(at: F.t0 + F.ttl + 10_000).isEmpty)
        #expect(ledger.leases(ofSession: s).map(\.id) == [F.id(1)])
        // A session without leases is forgotten on detach: nothing to resume.
        let empty = F.session(&ledger, 2)
        ledger.detachSession(empty)
        #expect(ledger.resumeSession(empty) == nil)
    }

    @Test("a retried checkout_key takes one seat, from the same or a new session")
    func idempotentCheckout() throws {
        var ledger = F.ledger([F.license("L", count: 5)])
        let s = F.session(&ledger, 1)
        let key: [UInt8] = Array(repeating: 7, count: 16)
        let first = try checkOut(&ledger, s, key: key, lease: 1).get()
        let retry = try checkOut(&ledger, s, key: key, lease: 2).get()
        #expect(retry.replayed)
        #expect(retry.lease.id == first.lease.id)
        #expect(retry.changes.isEmpty)
        #expect(ledger.seatsInUse(of: "cad") == 1)
        // After a reconnect that could not resume, the retry moves the lease to the new session.
        ledger.detachSession(s)
        let s2 = F.session(&ledger, 2)
        let moved = try checkOut(&ledger, s2, key: key, lease: 3).get()
        #expect(moved.lease.id == first.lease.id)
        #expect(moved.lease.sessionID == s2)
        #expect(moved.changes == [.rebound(first.lease.id, to: s2)])
        #expect(ledger.seatsInUse(of: "cad") == 1)
        #expect(ledger.leases(ofSession: s2).count == 1)
        #expect(ledger.sessionCount == 1)
        // The key cannot be reused for another feature.
        #expect(code(checkOut(&ledger, s2, feature: "other", key: key, lease: 4)) == .invalidArgument)
    }

    @Test("fencing tokens increase strictly per feature")
    func fencing() throws {
        var ledger = F.ledger([F.license("L", count: 5)])
        let s = F.session(&ledger, 1)
        let tokens = try (1...4).map { try checkOut(&ledger, s, lease: UInt64($0)).get().lease.fencingToken }
        #expect(tokens == [1, 2, 3, 4])
        _ = try ledger.checkIn(F.id(4), by: s, at: F.t0).get()
        #expect(try checkOut(&ledger, s, lease: 5).get().lease.fencingToken == 5)
    }

    @Test("only the owner checks a lease in, unless an admin does")
    func ownership() throws {
        var ledger = F.ledger([F.license("L", count: 2)])
        let owner = F.session(&ledger, 1)
        let other = F.session(&ledger, 2, user: "mallory")
        _ = try checkOut(&ledger, owner, lease: 1).get()
        #expect(throws: LicenseError(.permissionDenied, "lease \(F.id(1)) belongs to another session")) {
            try ledger.checkIn(F.id(1), by: other, at: F.t0).get()
        }
        #expect(ledger.seatsInUse(of: "cad") == 1)
        let revoked = try ledger.checkIn(F.id(1), by: other, asAdmin: true, at: F.t0).get()
        #expect(revoked.changes == [.released(F.id(1), .revoked, atMs: F.t0)])
        let again = #expect(throws: LicenseError.self) { try ledger.checkIn(F.id(1), by: owner, at: F.t0).get() }
        #expect(again?.code == .notFound)
    }

    @Test("grace period: granted with a warning, then LICENSE_EXPIRED")
    func graceThenExpiry() throws {
        let notAfter = F.t0 + F.day
        var ledger = F.ledger([F.license("L", count: 5, notAfter: notAfter, grace: 15 * F.day)])
        let s = F.session(&ledger, 1)
        let before = try checkOut(&ledger, s, lease: 1, at: F.t0).get()
        #expect(before.warnings.count == 1)  // expires within 14 days
        #expect(before.warnings[0].contains("expires on"))
        let inGrace = try checkOut(&ledger, s, lease: 2, at: notAfter + 2 * F.day).get()
        #expect(inGrace.warnings.first?.contains("grace period ends") == true)
        #expect(ledger.status(includeHolders: false, at: notAfter + 2 * F.day).licenses.first?.state == .expiring)
        #expect(code(checkOut(&ledger, s, lease: 3, at: notAfter + 15 * F.day + 1)) == .licenseExpired)
        #expect(ledger.status(includeHolders: false, at: notAfter + 16 * F.day).licenses.first?.state == .expired)
    }

    @Test(
        "licence validity and feature rules give their own codes",
        arguments: [
            ("unknown feature", "nope", "", Licensed_V1_Error.Code.notFound),
            ("before not_before", "early", "", .notYetValid),
            ("client above the version ceiling", "capped", "2027.1", .versionNotAllowed),
            ("client without a version on a capped feature", "capped", "", .versionNotAllowed),
        ]
    )
    func denialCodes(_ name: String, feature: String, version: String, expected: Licensed_V1_Error.Code) {
        var ledger = F.ledger([
            F.license("E", feature: "early", count: 1, notBefore: F.t0 + F.day),
            F.license("C", feature: "capped", count: 1, version: "2026.2"),
        ])
        let s = F.session(&ledger, 1, version: "")
        #expect(code(checkOut(&ledger, s, feature: feature, version: version, lease: 1)) == expected, "\(name)")
    }

    @Test("a client at or below the version ceiling is served ('2026.10' > '2026.9')")
    func versionCeiling() throws {
        var ledger = F.ledger([F.license("C", count: 3, version: "2026.10")])
        let s = F.session(&ledger, 1)
        #expect(code(checkOut(&ledger, s, version: "2026.9", lease: 1)) == nil)
        #expect(code(checkOut(&ledger, s, version: "2026.10", lease: 2)) == nil)
        #expect(code(checkOut(&ledger, s, version: "2026.11", lease: 3)) == .versionNotAllowed)
    }

    @Test("a reload that shrinks a HARD licence keeps its leases and marks it AT_RISK; a removed feature stops granting")
    func reloadShrinks() throws {
        var ledger = F.ledger([F.license("L", count: 3), F.license("X", feature: "extra", count: 1)])
        let s = F.session(&ledger, 1)
        for n in 1...3 { _ = try checkOut(&ledger, s, lease: UInt64(n)).get() }
        ledger.replaceLicenses([F.license("L", count: 1)])
        #expect(ledger.leases.count == 3)
        let status = ledger.status(includeHolders: true, at: F.t0)
        #expect(status.licenses.map(\.state) == [.atRisk])
        #expect(status.features.first { $0.feature == "cad" }?.inUse == 3)
        #expect(status.features.first { $0.feature == "cad" }?.holders.count == 3)
        #expect(code(checkOut(&ledger, s, lease: 9)) == .noSeats)
        #expect(code(checkOut(&ledger, s, feature: "extra", lease: 10)) == .notFound)
    }

    @Test("replaying the recorded changes rebuilds the same leases and counts")
    func replay() throws {
        var ledger = F.ledger([F.license("L", count: 3, overage: .trueUp)])
        var log: [LedgerChange] = []
        let s1 = F.session(&ledger, 1)
        let s2 = F.session(&ledger, 2)
        for n in 1...4 { log += try checkOut(&ledger, n % 2 == 0 ? s1 : s2, key: [UInt8(n)], lease: UInt64(n)).get().changes }
        log += try ledger.checkIn(F.id(3), by: s2, at: F.t0 + 5).get().changes
        log += ledger.reap(at: F.t0 + F.ttl).map(\.change)
        var replayed = F.ledger([F.license("L", count: 3, overage: .trueUp)])
        for change in log { replayed.apply(change) }
        #expect(replayed.leases == ledger.leases)
        // Sessions are not durable (their connections are gone): compare everything else.
        var expected = ledger.status(includeHolders: true, at: F.t0)
        expected.sessions = 0
        #expect(replayed.status(includeHolders: true, at: F.t0) == expected)
    }
}
