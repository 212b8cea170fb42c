import LicenseCore
import LicenseProtocol
import LicenseTestSupport
import Testing

/// The reference model with the licence rules: a FIFO wait queue, borrows, linger and a
/// reservation, written as plainly as possible. Pools: A (3 seats, 1 reserved for /eng, linger
/// 20 s, borrow up to 100 s), then B (2 seats, no linger, no borrowing).
struct RulesModel {
    struct ModelLease: Equatable {
        var session: SessionID
        var pool: String
        var count: UInt32
        var expiresAt: Int64
        var key: [UInt8]
        var borrowed: Bool
        var lingering: Bool
        var identity: ClientIdentity
    }

    struct Waiter {
        var id: UInt64
        var session: SessionID
        var count: UInt32
        var lease: LeaseID
        var deadline: Int64
    }

    enum Outcome: Equatable {
        case granted(Set<LeaseID>)  // any of these (linger reuse may pick any matching seat)
        case denied(Licensed_V1_Error.Code)
    }

    static let ttl: Int64 = 60_000
    static let linger: Int64 = 20_000
    static let maxBorrow: Int64 = 100_000
    static let maxQueue = 3
    var leases: [LeaseID: ModelLease] = [:]
    var sessions: [SessionID: (identity: ClientIdentity, attached: Bool)] = [:]
    var queue: [Waiter] = []

    func used(_ pool: String) -> UInt32 { self.leases.values.filter { $0.pool == pool }.map(\.count).reduce(0, +) }
    func engUsed(_ pool: String) -> UInt32 {
        self.leases.values.filter { $0.pool == pool && $0.identity.groups.contains("/eng") }.map(\.count).reduce(0, +)
    }
    func owned(_ session: SessionID) -> [LeaseID] { self.leases.filter { $0.value.session == session && !$0.value.lingering }.map(\.key) }

    mutating func forgetIfIdle(_ session: SessionID) {
        if let s = self.sessions[session], !s.attached, self.owned(session).isEmpty { self.sessions[session] = nil }
    }

    mutating func rebind(_ id: LeaseID, to session: SessionID, now: Int64) {
        let old = self.leases[id]!.session
        self.leases[id]!.session = session
        self.leases[id]!.lingering = false
        if !self.leases[id]!.borrowed { self.leases[id]!.expiresAt = max(self.leases[id]!.expiresAt, now + Self.ttl) }
        self.forgetIfIdle(old)
    }

    mutating func checkOut(session: SessionID, count: UInt32, key: [UInt8], borrow: Int64, lease: LeaseID, now: Int64, fromQueue: Bool)
        -> Outcome
    {
        guard let identity = self.sessions[session]?.identity else { return .denied(.invalidArgument) }
        if !key.isEmpty, let (id, _) = self.leases.first(where: { $0.value.key == key }) {
            self.rebind(id, to: session, now: now)
            return .granted([id])
        }
        if !fromQueue && !self.queue.isEmpty { return .denied(.noSeats) }
        if borrow == 0 {
            let matching = self.leases.filter {
                $0.value.lingering && $0.value.identity.user == identity.user && $0.value.identity.host == identity.host
            }
            if !matching.isEmpty {
                // The ledger takes one of them; the caller resolves which from its answer.
                return .granted(Set(matching.keys))
            }
        }
        var pools = ["A", "B"]
        if borrow > 0 {
            guard borrow <= Self.maxBorrow else { return .denied(.invalidArgument) }
            pools = ["A"]
        }
        for pool in pools {
            let capacity: UInt32 = pool == "A" ? 3 : 2
            var reserved: UInt32 = 0
            if pool == "A", !identity.groups.contains("/eng") { reserved = self.engUsed("A") >= 1 ? 0 : 1 }
            let used = self.used(pool)
            if capacity >= used + reserved, capacity - used - reserved >= count {
                self.leases[lease] = ModelLease(
                    session: session,
                    pool: pool,
                    count: count,
                    expiresAt: now + (borrow > 0 ? borrow : Self.ttl),
                    key: key,
                    borrowed: borrow > 0,
                    lingering: false,
                    identity: identity
                )
                return .granted([lease])
            }
        }
        return .denied(.noSeats)
    }

    mutating func checkIn(_ id: LeaseID, by session: SessionID, now: Int64) -> Licensed_V1_Error.Code? {
        guard let lease = self.leases[id], !lease.lingering else { return .notFound }
        guard lease.session == session else { return .permissionDenied }
        if lease.pool == "A", !lease.borrowed {
            self.leases[id]!.lingering = true
            self.leases[id]!.expiresAt = now + Self.linger
        } else {
            self.leases[id] = nil
        }
        self.forgetIfIdle(session)
        return nil
    }

    mutating func heartbeat(_ session: SessionID, now: Int64) -> Int {
        let ids = self.owned(session)
        for id in ids where !self.leases[id]!.borrowed {
            self.leases[id]!.expiresAt = max(self.leases[id]!.expiresAt, now + Self.ttl)
        }
        return ids.count
    }

    mutating func reap(now: Int64) -> Set<LeaseID> {
        let gone = Set(self.leases.filter { $0.value.expiresAt <= now }.keys)
        let owners = Set(gone.map { self.leases[$0]!.session })
        for id in gone { self.leases[id] = nil }
        for owner in owners { self.forgetIfIdle(owner) }
        return gone
    }

    mutating func detach(_ session: SessionID) {
        self.queue.removeAll { $0.session == session }
        guard self.sessions[session] != nil else { return }
        self.sessions[session]!.attached = false
        self.forgetIfIdle(session)
    }
}

@Suite("Licence rules against a reference model")
struct LicenseRulesPropertyTests {
    typealias F = LedgerFixture

    static func ledger() -> SeatLedger {
        var a = F.license("A", count: 3, notAfter: F.t0 + 10 * F.day)
        a.license.lease.lingerMs = UInt32(RulesModel.linger)
        a.license.lease.maxBorrowMs = UInt64(RulesModel.maxBorrow)
        var reservation = Licensed_V1_Reservation()
        reservation.group = "/eng"
        reservation.count = 1
        a.license.reservations = [reservation]
        let b = F.license("B", count: 2, notAfter: F.t0 + 20 * F.day)
        var ledger = SeatLedger(configuration: .init(defaultLeaseTTLMs: RulesModel.ttl), licenses: [a, b])
        ledger.configuration.maximumQueueLength = RulesModel.maxQueue
        return ledger
    }

    @Test("random sequences with queueing, borrowing, linger and a reservation agree with the model", arguments: 0..<40)
    func randomSequences(seed: Int) throws {
        var random = SeededGenerator(seed: UInt64(seed) &* 104_729 &+ 7)
        var ledger = Self.ledger()
        var model = RulesModel()
        let identities = [
            ClientIdentity(user: "ada", host: "ws1", groups: ["/eng"]),
            ClientIdentity(user: "ada", host: "ws1", groups: ["/eng"]),  // the same person in a second session
            ClientIdentity(user: "bob", host: "ws2"),
            ClientIdentity(user: "carl", host: "ws3", groups: ["/eng"]),
        ]
        let sessions = (0..<4).map { ID128(high: 0x5e55, low: UInt64($0)) }
        for (i, s) in sessions.enumerated() {
            ledger.openSession(s, identity: identities[i])
            model.sessions[s] = (identities[i], true)
        }
        var now = F.t0
        var nextLease: UInt64 = 1
        var nextWaiter: UInt64 = 1
        var keys: [[UInt8]] = []
        let context = "seed \(seed)"

        func compare(_ expected: RulesModel.Outcome, _ actual: Result<SeatLedger.Grant, LicenseError>, _ step: Int) -> LeaseID? {
            switch (expected, actual) {
            case (.granted(let ids), .success(let grant)):
                #expect(ids.contains(grant.lease.id), "\(context) step \(step): granted \(grant.lease.id), model allowed \(ids)")
                return grant.lease.id
            case (.denied(let code), .failure(let error)):
                #expect(error.code == code, "\(context) step \(step): \(error)")
            default:
                Issue.record("\(context) step \(step): model \(expected) but ledger \(actual)")
            }
            return nil
        }

        /// The model could not know which lingering seat the ledger reused: follow the ledger.
        func settleLinger(_ id: LeaseID?, session: SessionID) {
            guard let id, let lease = model.leases[id], lease.lingering || lease.session != session else { return }
            model.rebind(id, to: session, now: now)
        }

        func serve(_ step: Int) {
            let served = ledger.serveQueues(at: now)
            var expectedServed: [UInt64] = []
            while let head = model.queue.first {
                let outcome = model.checkOut(
                    session: head.session,
                    count: head.count,
                    key: [],
                    borrow: 0,
                    lease: head.lease,
                    now: now,
                    fromQueue: true
                )
                if case .denied(.noSeats) = outcome { break }
                model.queue.removeFirst()
                expectedServed.append(head.id)
                if let actual = served.first(where: { $0.waiter.id == head.id }) {
                    settleLinger(compare(outcome, actual.result, step), session: head.session)
                }
            }
            #expect(served.map(\.waiter.id) == expectedServed, "\(context) step \(step): served in FIFO order")
        }

        for step in 0..<300 {
            let i = Int(random.next() % 4)
            let session = sessions[i]
            let leaseID = ID128(high: 0x1ea5e, low: nextLease)
            nextLease += 1
            switch random.next() % 10 {
            case 0, 1, 2:  // check-out; sometimes a retried key, sometimes a borrow; on NO_SEATS, maybe wait
                let count = UInt32(random.next() % 2 + 1)
                var key: [UInt8] = []
                if !keys.isEmpty && random.next() % 5 == 0 {
                    key = keys.randomElement(using: &random)!
                } else if random.next() % 2 == 0 {
                    key = [UInt8(truncatingIfNeeded: step), UInt8(truncatingIfNeeded: step >> 8), 0xee]
                    keys.append(key)
                }
                let borrow: Int64 = random.next() % 5 == 0 ? Int64(random.next() % 120_000 + 1) : 0
                let expected = model.checkOut(
                    session: session,
                    count: count,
                    key: key,
                    borrow: borrow,
                    lease: leaseID,
                    now: now,
                    fromQueue: false
                )
                let actual = ledger.checkOut(
                    .init(sessionID: session, feature: "cad", count: count, checkoutKey: key, newLeaseID: leaseID, borrowMs: borrow),
                    at: now
                )
                settleLinger(compare(expected, actual, step), session: session)
                if case .failure(let error) = actual, error.code == .noSeats, borrow == 0, key.isEmpty, random.next() % 2 == 0 {
                    let deadline = now + Int64(random.next() % 60_000 + 1)
                    let refused = ledger.enqueue(
                        .init(sessionID: session, feature: "cad", count: count, newLeaseID: leaseID),
                        waiterID: nextWaiter,
                        waitMs: deadline - now,
                        at: now
                    )
                    if model.queue.count >= RulesModel.maxQueue {
                        #expect(refused?.code == .resourceExhausted, "\(context) step \(step)")
                    } else {
                        #expect(refused == nil, "\(context) step \(step)")
                        model.queue.append(.init(id: nextWaiter, session: session, count: count, lease: leaseID, deadline: deadline))
                    }
                    nextWaiter += 1
                }
            case 3, 4:  // check-in of a random lease by a random session, then the queue is served
                guard let target = (Array(model.leases.keys) + [ID128(high: 9, low: 9)]).randomElement(using: &random) else { continue }
                let expected = model.checkIn(target, by: session, now: now)
                switch ledger.checkIn(target, by: session, at: now) {
                case .success: #expect(expected == nil, "\(context) step \(step)")
                case .failure(let error): #expect(error.code == expected, "\(context) step \(step)")
                }
                serve(step)
            case 5:
                #expect(
                    ledger.heartbeat(session: session, leaseIDs: [], at: now).renewed == model.heartbeat(session, now: now),
                    "\(context) step \(step)"
                )
            case 6, 7:  // time passes: leases lapse, borrows and lingers end, waits run out
                now += Int64(random.next() % 30_000)
                #expect(Set(ledger.reap(at: now).map(\.lease.id)) == model.reap(now: now), "\(context) step \(step)")
                let expired = ledger.expireWaiters(at: now).map(\.id)
                #expect(expired == model.queue.filter { $0.deadline <= now }.map(\.id), "\(context) step \(step)")
                model.queue.removeAll { $0.deadline <= now }
                serve(step)
            case 8:
                model.detach(session)
                ledger.detachSession(session)
            default:
                if model.sessions[session] != nil {
                    model.sessions[session]!.attached = true
                    #expect(ledger.resumeSession(session) != nil, "\(context) step \(step)")
                } else {
                    model.sessions[session] = (identities[i], true)
                    #expect(ledger.resumeSession(session) == nil, "\(context) step \(step)")
                    ledger.openSession(session, identity: identities[i])
                }
            }
            // Invariants: capacity, the reservation, every lease accounted for, the queue in order.
            let nonMembersInA = ledger.leases.values.filter { $0.licenseID == "A" && !$0.identity.groups.contains("/eng") }.map(\.count)
                .reduce(0, +)
            #expect(nonMembersInA <= 2, "\(context) step \(step): non-members took the reserved seat")
            #expect(ledger.seatsInUse(of: "cad") <= 5, "\(context) step \(step): over capacity")
            #expect(Set(ledger.leases.keys) == Set(model.leases.keys), "\(context) step \(step): lease sets differ")
            for (id, lease) in model.leases {
                let actual = ledger.leases[id]
                #expect(actual?.expiresAtMs == lease.expiresAt, "\(context) step \(step): expiry of \(id)")
                #expect(actual?.lingering == lease.lingering, "\(context) step \(step): lingering of \(id)")
                #expect(actual?.borrowed == lease.borrowed, "\(context) step \(step): borrowed \(id)")
                #expect(actual?.licenseID == lease.pool, "\(context) step \(step): pool of \(id)")
            }
            #expect(ledger.waiters().map(\.id) == model.queue.map(\.id), "\(context) step \(step): queue")
            #expect(ledger.sessionCount == model.sessions.count, "\(context) step \(step): sessions")
        }
    }
}
