import LicenseCore
import LicenseProtocol
import LicenseTestSupport
import Testing

/// The reference model: the rules of floating seats written as plainly as possible.
struct ReferenceModel {
    struct ModelLease: Equatable {
        var session: SessionID
        var pool: String
        var count: UInt32
        var expiresAt: Int64
        var key: [UInt8]
    }

    /// Pools in the order the ledger must prefer them (soonest expiry first).
    let pools: [(id: String, capacity: UInt32)]
    let ttl: Int64
    var leases: [LeaseID: ModelLease] = [:]
    var sessions: [SessionID: Bool] = [:]  // attached?

    func used(_ pool: String) -> UInt32 { self.leases.values.filter { $0.pool == pool }.map(\.count).reduce(0, +) }

    mutating func forgetIfIdle(_ session: SessionID) {
        if self.sessions[session] == false, !self.leases.values.contains(where: { $0.session == session }) {
            self.sessions[session] = nil
        }
    }

    enum Outcome {
        case granted(LeaseID)
        case denied(Licensed_V1_Error.Code)
    }

    mutating func checkOut(session: SessionID, count: UInt32, key: [UInt8], lease: LeaseID, now: Int64) -> Outcome {
        guard self.sessions[session] != nil else { return .denied(.invalidArgument) }
        if !key.isEmpty, let (id, existing) = self.leases.first(where: { $0.value.key == key }) {
            let old = existing.session
            self.leases[id]!.session = session
            self.leases[id]!.expiresAt = max(existing.expiresAt, now + self.ttl)
            self.forgetIfIdle(old)
            return .granted(id)
        }
        for pool in self.pools where pool.capacity - self.used(pool.id) >= count {
            self.leases[lease] = ModelLease(session: session, pool: pool.id, count: count, expiresAt: now + self.ttl, key: key)
            return .granted(lease)
        }
        return .denied(.noSeats)
    }

    mutating func checkIn(_ lease: LeaseID, by session: SessionID) -> Licensed_V1_Error.Code? {
        guard let existing = self.leases[lease] else { return .notFound }
        guard existing.session == session else { return .permissionDenied }
        self.leases[lease] = nil
        self.forgetIfIdle(session)
        return nil
    }

    mutating func heartbeat(_ session: SessionID, now: Int64) -> Int {
        var renewed = 0
        for (id, lease) in self.leases where lease.session == session {
            self.leases[id]!.expiresAt = max(lease.expiresAt, now + self.ttl)
            renewed += 1
        }
        return renewed
    }

    mutating func reap(now: Int64) -> Set<LeaseID> {
        let gone = Set(self.leases.filter { $0.value.expiresAt <= now }.keys)
        var owners = Set<SessionID>()
        for id in gone {
            owners.insert(self.leases[id]!.session)
            self.leases[id] = nil
        }
        for owner in owners { self.forgetIfIdle(owner) }
        return gone
    }

    mutating func detach(_ session: SessionID) {
        guard self.sessions[session] != nil else { return }
        self.sessions[session] = false
        self.forgetIfIdle(session)
    }
}

@Suite("Seat ledger against a reference model")
struct SeatLedgerPropertyTests {
    typealias F = LedgerFixture

    @Test("random check-out / check-in / heartbeat / clock / disconnect sequences agree with the model", arguments: 0..<60)
    func randomSequences(seed: Int) throws {
        var random = SeededGenerator(seed: UInt64(seed) &* 7919 &+ 1)
        let ttl: Int64 = 60_000
        var ledger = SeatLedger(
            configuration: .init(defaultLeaseTTLMs: ttl),
            licenses: [F.license("A", count: 3, notAfter: F.t0 + 10 * F.day), F.license("B", count: 2, notAfter: F.t0 + 20 * F.day)]
        )
        var model = ReferenceModel(pools: [("A", 3), ("B", 2)], ttl: ttl)
        let sessionIDs = (1...4).map { ID128(high: 0x5e55, low: UInt64($0)) }
        var now = F.t0
        var nextLease: UInt64 = 1
        var usedKeys: [[UInt8]] = []
        let context = "seed \(seed)"

        for step in 0..<400 {
            let session = sessionIDs.randomElement(using: &random)!
            switch random.next() % 8 {
            case 0, 1:  // check-out, sometimes retrying an earlier key
                let count = UInt32(random.next() % 2 + 1)
                let key: [UInt8] =
                    if !usedKeys.isEmpty && random.next() % 4 == 0 { usedKeys.randomElement(using: &random)! } else {
                        random.next() % 2 == 0 ? [] : [UInt8(truncatingIfNeeded: step), UInt8(truncatingIfNeeded: seed)]
                    }
                if !key.isEmpty { usedKeys.append(key) }
                let leaseID = ID128(high: 0x1ea5e, low: nextLease)
                nextLease += 1
                // A key's retry must ask for the same feature; the model has one feature.
                let expected = model.checkOut(session: session, count: count, key: key, lease: leaseID, now: now)
                let actual = ledger.checkOut(
                    .init(sessionID: session, feature: "cad", count: count, checkoutKey: key, newLeaseID: leaseID),
                    at: now
                )
                switch (expected, actual) {
                case (.granted(let id), .success(let grant)):
                    #expect(grant.lease.id == id, "\(context) step \(step)")
                case (.denied(let code), .failure(let error)):
                    #expect(error.code == code, "\(context) step \(step)")
                default:
                    Issue.record("\(context) step \(step): model \(expected) but ledger \(actual)")
                }
            case 2:  // check-in of a random lease by a random session
                guard let lease = (Array(model.leases.keys) + [ID128(high: 9, low: 9)]).randomElement(using: &random) else { continue }
                let expected = model.checkIn(lease, by: session)
                let actual = ledger.checkIn(lease, by: session, at: now)
                switch actual {
                case .success: #expect(expected == nil, "\(context) step \(step)")
                case .failure(let error): #expect(error.code == expected, "\(context) step \(step)")
                }
            case 3:
                let expected = model.heartbeat(session, now: now)
                #expect(ledger.heartbeat(session: session, leaseIDs: [], at: now).renewed == expected, "\(context) step \(step)")
            case 4, 5:
                now += Int64(random.next() % 40_000)
                let expected = model.reap(now: now)
                let actual = Set(ledger.reap(at: now).map(\.lease.id))
                #expect(actual == expected, "\(context) step \(step)")
            case 6:
                model.detach(session)
                ledger.detachSession(session)
            default:  // reconnect: resume if the session still exists, else open it anew
                if model.sessions[session] != nil {
                    model.sessions[session] = true
                    #expect(ledger.resumeSession(session) != nil, "\(context) step \(step)")
                } else {
                    model.sessions[session] = true
                    #expect(ledger.resumeSession(session) == nil, "\(context) step \(step)")
                    ledger.openSession(session, identity: ClientIdentity(user: "u", host: "h"))
                }
            }
            // Invariants after every step: HARD capacity holds, and every lease is accounted for.
            #expect(ledger.seatsInUse(of: "cad") <= 5, "\(context) step \(step): over capacity")
            #expect(Set(ledger.leases.keys) == Set(model.leases.keys), "\(context) step \(step): lease sets differ")
            #expect(ledger.seatsInUse(of: "cad") == ledger.leases.values.map(\.count).reduce(0, +), "\(context) step \(step)")
            #expect(ledger.sessionCount == model.sessions.count, "\(context) step \(step): session count")
            for (id, lease) in model.leases {
                #expect(ledger.leases[id]?.sessionID == lease.session, "\(context) step \(step): owner of \(id)")
                #expect(ledger.leases[id]?.expiresAtMs == lease.expiresAt, "\(context) step \(step): expiry of \(id)")
            }
        }
    }
}
