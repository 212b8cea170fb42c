import LicenseProtocol
import Testing

@testable import LicenseCore

/// The seats each user and group holds are counted only while a rule reads them (a licence's MAX
/// limits or reservations, the server's per-user maximum or reservations); a rule that arrives
/// later counts the seats already held.
@Suite("Holder counts follow the rules in force")
struct HolderCountTests {
    typealias F = LedgerFixture
    typealias R = LicenseRulesTests
    static let t0 = F.t0

    static func limited(_ id: String = "L", count: UInt32 = 10, perUser: UInt32, group: (String, UInt32)? = nil) -> VerifiedLicense {
        R.license(id, count: count) {
            var user = Licensed_V1_UsageLimit()
            user.kind = "user"
            user.max = perUser
            $0.limits = [user]
            if let (name, max) = group {
                var limit = Licensed_V1_UsageLimit()
                limit.kind = "group"
                limit.name = name
                limit.max = max
                $0.limits.append(limit)
            }
        }
    }

    /// `usage` without what counts nothing: a user or group back to 0 seats, a key back to none.
    static func normalized(_ usage: [SeatLedger.PoolKey: SeatLedger.PoolUsage]) -> [SeatLedger.PoolKey: SeatLedger.PoolUsage] {
        usage.compactMapValues { entry in
            var entry = entry
            entry.byUser = entry.byUser.filter { $0.value > 0 }
            entry.byGroup = entry.byGroup.filter { $0.value > 0 }
            return entry == SeatLedger.PoolUsage() ? nil : entry
        }
    }

    /// What is counted per holder: every key's users and groups with what they hold.
    static func holders(_ ledger: SeatLedger) -> [SeatLedger.PoolKey: SeatLedger.PoolUsage] {
        ledger.usage.filter { !$0.value.byUser.isEmpty || !$0.value.byGroup.isEmpty || $0.key.feature == "*" }
    }

    @Test("a reload that brings a MAX limit counts the seats already held; one that drops it stops counting")
    func reloads() throws {
        var ledger = F.ledger([R.license("L", count: 10)])
        #expect(!ledger.countsHolders)
        let ada = R.session(&ledger, 1, user: "ada", groups: ["/sales/emea"])
        let bob = R.session(&ledger, 2, user: "bob", groups: ["/sales/us"])
        let cy = R.session(&ledger, 3, user: "cy")
        for lease in 1...2 { _ = try ledger.checkOut(R.request(ada, UInt64(lease)), at: Self.t0).get() }
        _ = try ledger.checkOut(R.request(bob, 3), at: Self.t0).get()
        // No rule: the seats alone, no user, group or "*" key.
        #expect(Self.holders(ledger).isEmpty)
        #expect(ledger.seatsInUse(of: "cad") == 3)

        ledger.replaceLicenses([Self.limited(perUser: 2, group: ("/sales", 3))])
        #expect(ledger.countsHolders)
        #expect(ledger.usage[.init(licenseID: "L", feature: "cad")]?.byUser == ["ada": 2, "bob": 1])
        #expect(ledger.usage[.init(licenseID: "L", feature: "*")]?.byGroup == ["/sales": 3, "/sales/emea": 2, "/sales/us": 1])
        #expect(R.code(ledger.checkOut(R.request(ada, 4), at: Self.t0)) == .noSeats)  // ada holds 2 of at most 2
        #expect(R.code(ledger.checkOut(R.request(bob, 5), at: Self.t0)) == .noSeats)  // /sales holds 3 of at most 3
        #expect(R.code(ledger.checkOut(R.request(cy, 6), at: Self.t0)) == nil)
        _ = try ledger.checkIn(F.id(1), by: ada, at: Self.t0).get()
        #expect(R.code(ledger.checkOut(R.request(ada, 7), at: Self.t0)) == nil)

        ledger.replaceLicenses([R.license("L", count: 10)])
        #expect(!ledger.countsHolders)
        #expect(Self.holders(ledger).isEmpty)
        for lease in 8...10 { #expect(R.code(ledger.checkOut(R.request(ada, UInt64(lease)), at: Self.t0)) == nil) }
        #expect(ledger.seatsInUse(of: "cad") == 7)  // bob 1, cy 1, ada 2 then 3 more
    }

    @Test("a server rule set after the grants counts them too")
    func serverRule() throws {
        var ledger = F.ledger([R.license("L", count: 10)])
        let ada = R.session(&ledger, 1, user: "ada")
        _ = try ledger.checkOut(R.request(ada, 1), at: Self.t0).get()
        var rule = SeatLedger.FeatureRestriction(feature: "cad")
        rule.maxPerUser = 1
        ledger.configuration.restrictions = [rule]
        #expect(ledger.countsHolders)
        #expect(R.code(ledger.checkOut(R.request(ada, 2), at: Self.t0)) == .noSeats)
        ledger.configuration.restrictions = []
        #expect(R.code(ledger.checkOut(R.request(ada, 3), at: Self.t0)) == nil)
    }

    @Test("grants and returns keep the counts a fresh count finds, and the same seats as a ledger that counts no holders")
    func keptEqualsCounted() throws {
        // Limits too high to refuse anything: both ledgers grant the same.
        let licenses = [
            Self.limited("L", count: 40, perUser: 1_000, group: ("/eng", 1_000)),
            R.license("D", feature: "viewer", count: 40) { $0.dupGroup = .user },
        ]
        var counting = F.ledger(licenses)
        var plain = F.ledger(
            licenses.map { verified in
                var verified = verified
                verified.license.limits = []
                return verified
            }
        )
        #expect(counting.countsHolders && !plain.countsHolders)
        let identities: [(String, [String])] = [("ada", ["/eng/a"]), ("bob", ["/eng/b", "/ops"]), ("cy", []), ("ada", ["/eng/a"])]
        var sessions: [SessionID] = []
        for (index, (user, groups)) in identities.enumerated() {
            sessions.append(R.session(&counting, UInt64(index), user: user, groups: groups))
            _ = R.session(&plain, UInt64(index), user: user, groups: groups)
        }
        var random: UInt64 = 20_261_203
        var held: [(LeaseID, SessionID)] = []
        for step in 0..<600 {
            random = random &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            let pick = Int(random >> 33)
            if held.isEmpty || pick % 3 != 0 {
                let session = sessions[pick % sessions.count]
                let request = R.request(session, UInt64(step + 100), feature: pick % 5 == 0 ? "viewer" : "cad", count: UInt32(1 + pick % 2))
                let a = counting.checkOut(request, at: Self.t0)
                let b = plain.checkOut(request, at: Self.t0)
                #expect(R.code(a) == R.code(b))
                if case .success(let grant) = a { held.append((grant.lease.id, session)) }
            } else {
                let (id, session) = held.remove(at: pick % held.count)
                #expect((try? counting.checkIn(id, by: session, at: Self.t0).get()) != nil)
                #expect((try? plain.checkIn(id, by: session, at: Self.t0).get()) != nil)
            }
            var recounted = counting
            recounted.recountHolders()
            #expect(Self.normalized(recounted.usage) == Self.normalized(counting.usage), "step \(step)")
            #expect(Self.holders(plain).isEmpty)
            let seats = counting.usage.filter { $0.key.feature != "*" }
            #expect(plain.usage.mapValues(\.seats) == seats.mapValues(\.seats))
            #expect(plain.usage.mapValues(\.overage) == seats.mapValues(\.overage))
        }
        #expect(!held.isEmpty)
    }
}
