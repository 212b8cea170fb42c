import LicenseCore
import LicenseProtocol
import LicenseTestSupport
import Testing

/// A feature's seats in use (what the utilisation thresholds read after every change, and what
/// Status reports) are summed over the licences that have held it, through an index kept by the
/// ledger: here against the leases themselves, over many features and licences, through a reload
/// that drops a licence still held and through holder counting turned on and off.
@Suite("Seats in use by feature")
struct SeatsInUseTests {
    typealias F = LedgerFixture

    /// A licence granting `features`, `count` seats each, overage allowed (true-up).
    static func license(_ id: String, features: [String], count: UInt32) -> VerifiedLicense {
        var verified = F.license(id, count: count, overage: .trueUp)
        verified.license.features = features.map { name in
            var feature = Licensed_V1_Feature()
            feature.name = name
            feature.count = count
            return feature
        }
        return verified
    }

    /// Seats and overage seats held of `feature`, counted from the leases.
    static func held(_ ledger: SeatLedger, _ feature: String) -> (seats: UInt32, overage: UInt32) {
        var total: (seats: UInt32, overage: UInt32) = (0, 0)
        for lease in ledger.leases.values where lease.feature == feature {
            total.seats += lease.count
            if lease.overage { total.overage += lease.count }
        }
        return total
    }

    static func expectAgree(_ ledger: SeatLedger, _ features: [String], _ context: String) {
        let status = ledger.status(includeHolders: false, at: F.t0)
        let reported = Dictionary(uniqueKeysWithValues: status.features.map { ($0.feature, ($0.inUse, $0.overage)) })
        for feature in features {
            let held = Self.held(ledger, feature)
            #expect(ledger.seatsInUse(of: feature) == held.seats, "\(context): \(feature)")
            if held.seats > 0 {
                #expect(reported[feature]?.0 == held.seats, "\(context): status in_use of \(feature)")
                #expect(reported[feature]?.1 == held.overage, "\(context): status overage of \(feature)")
            }
        }
    }

    @Test("agree with the leases held, across licences, a reload and holder counting", arguments: 0..<8)
    func agreeWithLeases(seed: Int) throws {
        var random = SeededGenerator(seed: UInt64(seed) &* 104_729 &+ 3)
        let features = (0..<40).map { "f\($0)" }
        let a = Self.license("A", features: features, count: 2)
        let b = Self.license("B", features: Array(features[..<20]), count: 1)
        var ledger = F.ledger([a, b])
        let sessions = (1...3).map { F.session(&ledger, $0, user: "u\($0)") }
        var held: [(LeaseID, SessionID)] = []
        var next: UInt64 = 1
        var overageGranted = false
        for step in 0..<600 {
            switch step {
            case 200:
                // A reload drops licence A while its seats are held: they stay in use.
                ledger.replaceLicenses([b])
            case 300:
                ledger.replaceLicenses([a, b])
            case 400:
                // A per-user maximum turns holder counting on ("*" keys appear); removing it, off.
                var rule = SeatLedger.FeatureRestriction(feature: "f3")
                rule.maxPerUser = 50
                ledger.configuration.restrictions = [rule]
            case 500:
                ledger.configuration.restrictions = []
            default:
                break
            }
            if held.isEmpty || random.next() % 3 != 0 {
                let session = sessions.randomElement(using: &random)!
                let feature = features.randomElement(using: &random)!
                let id = F.id(next)
                next += 1
                let request = SeatLedger.CheckOut(
                    sessionID: session,
                    feature: feature,
                    count: UInt32(random.next() % 2 + 1),
                    newLeaseID: id
                )
                if case .success(let grant) = ledger.checkOut(request, at: F.t0) {
                    held.append((id, session))
                    overageGranted = overageGranted || grant.lease.overage
                }
            } else {
                let (id, session) = held.remove(at: Int(random.next() % UInt64(held.count)))
                _ = try ledger.checkIn(id, by: session, at: F.t0).get()
            }
            if step % 25 == 0 { Self.expectAgree(ledger, features, "seed \(seed) step \(step)") }
        }
        Self.expectAgree(ledger, features, "seed \(seed) at the end")
        #expect(ledger.seatsInUseTotal == Int(ledger.leases.values.map(\.count).reduce(0, +)))
        // Seats past the licences' counts were granted (true-up), so overage was compared too.
        #expect(overageGranted)
    }
}
