import LicenseCore
import LicenseProtocol
import Testing

/// Licence rules beyond counting, each with exact outcomes and codes (fake clock: times are passed in).
@Suite("Licence rules")
struct LicenseRulesTests {
    typealias F = LedgerFixture
    static let t0 = F.t0

    static func license(_ id: String, feature: String = "cad", count: UInt32, _ edit: (inout Licensed_V1_License) -> Void = { _ in })
        -> VerifiedLicense
    {
        var verified = F.license(id, feature: feature, count: count)
        edit(&verified.license)
        return verified
    }

    static func session(
        _ ledger: inout SeatLedger,
        _ n: UInt64,
        user: String = "ada",
        host: String = "h",
        groups: [String] = [],
        address: String = "10.0.0.5"
    )
        -> SessionID
    {
        let id = ID128(high: 0x5e55, low: n)
        ledger.openSession(id, identity: ClientIdentity(user: user, host: host, clientVersion: "1.0", groups: groups, address: address))
        return id
    }

    static func request(
        _ session: SessionID,
        _ lease: UInt64,
        feature: String = "cad",
        count: UInt32 = 1,
        borrowMs: Int64 = 0,
        buildDateMs: Int64 = 0
    )
        -> SeatLedger.CheckOut
    {
        .init(sessionID: session, feature: feature, count: count, newLeaseID: F.id(lease), borrowMs: borrowMs, buildDateMs: buildDateMs)
    }

    static func code(_ result: Result<SeatLedger.Grant, LicenseError>) -> Licensed_V1_Error.Code? {
        if case .failure(let error) = result { return error.code }
        return nil
    }

    static func message(_ result: Result<SeatLedger.Grant, LicenseError>) -> String {
        if case .failure(let error) = result { return error.message }
        return "granted"
    }

    // MARK: Queue

    @Test("queue: waiters are served first in, first out; nobody jumps the queue; full queue and deadlines")
    func queueFIFO() throws {
        var ledger = F.ledger([F.license("L", count: 1)])
        ledger.configuration.maximumQueueLength = 2
        let a = Self.session(&ledger, 1, user: "a")
        let b = Self.session(&ledger, 2, user: "b")
        let c = Self.session(&ledger, 3, user: "c")
        let d = Self.session(&ledger, 4, user: "d")
        _ = try ledger.checkOut(Self.request(a, 1), at: Self.t0).get()
        #expect(ledger.enqueue(Self.request(b, 2), waiterID: 20, waitMs: 30_000, at: Self.t0) == nil)
        #expect(ledger.enqueue(Self.request(c, 3), waiterID: 30, waitMs: 30_000, at: Self.t0 + 1) == nil)
        #expect(ledger.enqueue(Self.request(d, 4), waiterID: 40, waitMs: 30_000, at: Self.t0 + 2)?.code == .resourceExhausted)
        #expect(ledger.serveQueues(at: Self.t0 + 3).isEmpty)  // no seat yet
        #expect(ledger.status(includeHolders: false, at: Self.t0).features.first?.queued == 2)
        _ = try ledger.checkIn(F.id(1), by: a, at: Self.t0 + 10).get()
        // A newcomer asking without waiting does not jump ahead of b and c.
        let served = ledger.serveQueues(at: Self.t0 + 10)
        #expect(served.map(\.waiter.id) == [20])
        #expect(try served.first?.result.get().lease.sessionID == b)
        #expect(Self.code(ledger.checkOut(Self.request(d, 5), at: Self.t0 + 11)) == .noSeats)
        // c's wait runs out at its deadline, not before.
        #expect(ledger.expireWaiters(at: Self.t0 + 30_000).isEmpty)
        #expect(ledger.expireWaiters(at: Self.t0 + 30_001).map(\.id) == [30])
        #expect(ledger.nextQueueDeadline == nil)
    }

    @Test("queue: a closed connection leaves the queue")
    func queueDisconnect() throws {
        var ledger = F.ledger([F.license("L", count: 1)])
        let a = Self.session(&ledger, 1)
        let b = Self.session(&ledger, 2, user: "b")
        _ = try ledger.checkOut(Self.request(a, 1), at: Self.t0).get()
        #expect(ledger.enqueue(Self.request(b, 2), waiterID: 7, waitMs: 60_000, at: Self.t0) == nil)
        #expect(ledger.detachSession(b) == [7])
        _ = try ledger.checkIn(F.id(1), by: a, at: Self.t0 + 1).get()
        #expect(ledger.serveQueues(at: Self.t0 + 1).isEmpty)
        #expect(ledger.seatsInUse(of: "cad") == 0)
    }

    // MARK: Borrow

    @Test("borrow: up to the licence maximum, no heartbeats needed, reclaimed at expiry, survives disconnect")
    func borrow() throws {
        let day = F.day
        var ledger = F.ledger([
            Self.license("L", count: 2) { $0.lease.maxBorrowMs = UInt64(7 * day) }, Self.license("N", feature: "nb", count: 1),
        ])
        let s = Self.session(&ledger, 1)
        #expect(Self.code(ledger.checkOut(Self.request(s, 1, borrowMs: 8 * day), at: Self.t0)) == .invalidArgument)
        #expect(Self.code(ledger.checkOut(Self.request(s, 2, feature: "nb", borrowMs: day), at: Self.t0)) == .permissionDenied)
        let grant = try ledger.checkOut(Self.request(s, 3, borrowMs: 3 * day), at: Self.t0).get()
        #expect(grant.lease.borrowed)
        #expect(grant.lease.expiresAtMs == Self.t0 + 3 * day)
        ledger.detachSession(s)
        _ = ledger.heartbeat(session: s, leaseIDs: [], at: Self.t0 + day)
        ledger.renewAll(at: Self.t0 + 2 * day)  // a restart does not extend a borrow either
        #expect(ledger.reap(at: Self.t0 + 3 * day - 1).isEmpty)
        #expect(ledger.reap(at: Self.t0 + 3 * day).map(\.lease.id) == [F.id(3)])
    }

    // MARK: Linger

    @Test("linger: after check-in the seat stays held; the same identity takes it up again; others wait until it ends")
    func linger() throws {
        var ledger = F.ledger([Self.license("L", count: 1) { $0.lease.lingerMs = 30_000 }])
        let s1 = Self.session(&ledger, 1, user: "ada", host: "ws1")
        let other = Self.session(&ledger, 2, user: "bob", host: "ws2")
        _ = try ledger.checkOut(Self.request(s1, 1), at: Self.t0).get()
        let checkIn = try ledger.checkIn(F.id(1), by: s1, at: Self.t0 + 1_000).get()
        #expect(checkIn.changes == [.lingered(F.id(1), untilMs: Self.t0 + 31_000)])
        #expect(ledger.seatsInUse(of: "cad") == 1)
        #expect(Self.code(ledger.checkOut(Self.request(other, 2), at: Self.t0 + 2_000)) == .noSeats)
        // Ada comes back from a new session on the same host: the same seat, no second one.
        let s3 = Self.session(&ledger, 3, user: "ada", host: "ws1")
        let again = try ledger.checkOut(Self.request(s3, 3), at: Self.t0 + 5_000).get()
        #expect(again.lease.id == F.id(1))
        #expect(again.changes == [.rebound(F.id(1), to: s3)])
        _ = try ledger.checkIn(F.id(1), by: s3, at: Self.t0 + 6_000).get()
        #expect(ledger.reap(at: Self.t0 + 35_999).isEmpty)
        #expect(ledger.reap(at: Self.t0 + 36_000).map(\.lease.id) == [F.id(1)])
        #expect(try ledger.checkOut(Self.request(other, 4), at: Self.t0 + 36_000).get().lease.id == F.id(4))
    }

    // MARK: dup_group

    @Test(
        "dup_group: repeated check-outs by the same identity share one seat, shown as shared",
        arguments: [
            (Licensed_V1_DupGroup.user, ("ada", "ws2"), true),
            (.host, ("bob", "ws1"), true),
            (.userHost, ("ada", "ws2"), false),
            (.none, ("ada", "ws1"), false),
        ] as [(Licensed_V1_DupGroup, (String, String), Bool)]
    )
    func dupGroup(group: Licensed_V1_DupGroup, second: (String, String), shares: Bool) throws {
        var ledger = F.ledger([Self.license("L", count: 3) { $0.dupGroup = group }])
        let s1 = Self.session(&ledger, 1, user: "ada", host: "ws1")
        let s2 = Self.session(&ledger, 2, user: second.0, host: second.1)
        _ = try ledger.checkOut(Self.request(s1, 1), at: Self.t0).get()
        _ = try ledger.checkOut(Self.request(s2, 2), at: Self.t0).get()
        #expect(ledger.seatsInUse(of: "cad") == (shares ? 1 : 2))
        let holders = ledger.status(includeHolders: true, at: Self.t0).features.first?.holders ?? []
        #expect(holders.map(\.shared) == [shares, shares])
        _ = try ledger.checkIn(F.id(1), by: s1, at: Self.t0).get()
        #expect(ledger.seatsInUse(of: "cad") == 1)  // the group keeps its seat while a member lives
        _ = try ledger.checkIn(F.id(2), by: s2, at: Self.t0).get()
        #expect(ledger.seatsInUse(of: "cad") == 0)
    }

    // MARK: Maintenance and trial

    @Test("maintenance_until refuses newer builds; trial_days count from the first grant")
    func maintenanceAndTrial() throws {
        var ledger = F.ledger([
            Self.license("M", count: 5) { $0.maintenanceUntilMs = Self.t0 },
            Self.license("T", feature: "trial", count: 5) { $0.trialDays = 10 },
        ])
        let s = Self.session(&ledger, 1)
        #expect(Self.code(ledger.checkOut(Self.request(s, 1, buildDateMs: Self.t0 + 1), at: Self.t0)) == .versionNotAllowed)
        #expect(Self.code(ledger.checkOut(Self.request(s, 2, buildDateMs: Self.t0 - F.day), at: Self.t0)) == nil)
        let first = try ledger.checkOut(Self.request(s, 3, feature: "trial"), at: Self.t0 + F.day).get()
        #expect(first.changes.first == .trialStarted(licenseID: "T", atMs: Self.t0 + F.day))
        #expect(first.warnings.contains { $0.contains("trial licence 'T' ends") })
        #expect(Self.code(ledger.checkOut(Self.request(s, 4, feature: "trial"), at: Self.t0 + 11 * F.day)) == nil)
        #expect(Self.code(ledger.checkOut(Self.request(s, 5, feature: "trial"), at: Self.t0 + 11 * F.day + 1)) == .licenseExpired)
        // The start is durable: replaying the changes keeps it.
        var replayed = F.ledger([Self.license("T", feature: "trial", count: 5) { $0.trialDays = 10 }])
        for change in first.changes { replayed.apply(change) }
        #expect(replayed.trialStarts == ["T": Self.t0 + F.day])
    }

    // MARK: Tokens

    @Test("token features draw on the licence's token pool")
    func tokens() throws {
        var ledger = F.ledger([
            Self.license("P", feature: "solver", count: 0) {
                $0.tokenPool = 10
                $0.features[0].tokenCost = 3
                var mesher = Licensed_V1_Feature()
                mesher.name = "mesher"
                mesher.tokenCost = 2
                $0.features.append(mesher)
            }
        ])
        let s = Self.session(&ledger, 1)
        for n in 1...3 { #expect(Self.code(ledger.checkOut(Self.request(s, UInt64(n), feature: "solver"), at: Self.t0)) == nil) }
        #expect(Self.code(ledger.checkOut(Self.request(s, 4, feature: "solver"), at: Self.t0)) == .noSeats)  // 9 of 10 tokens used
        #expect(Self.code(ledger.checkOut(Self.request(s, 5, feature: "mesher"), at: Self.t0)) == .noSeats)  // needs 2, 1 left
        _ = try ledger.checkIn(F.id(1), by: s, at: Self.t0).get()
        #expect(Self.code(ledger.checkOut(Self.request(s, 6, feature: "mesher"), at: Self.t0)) == nil)  // 6 + 2 = 8
        #expect(ledger.capacity(of: "solver", at: Self.t0) == 3)
    }

    // MARK: Add-ons

    @Test("an add-on needs a base lease of the session, and goes when the base is checked in")
    func addOns() throws {
        var ledger = F.ledger([
            Self.license("BASE", feature: "cad", count: 5),
            Self.license("ADDON", feature: "cad.render", count: 5) { $0.requires = ["BASE"] },
        ])
        let s = Self.session(&ledger, 1)
        #expect(Self.code(ledger.checkOut(Self.request(s, 1, feature: "cad.render"), at: Self.t0)) == .baseRequired)
        _ = try ledger.checkOut(Self.request(s, 2, feature: "cad"), at: Self.t0).get()
        let addOn = try ledger.checkOut(Self.request(s, 3, feature: "cad.render"), at: Self.t0).get()
        #expect(addOn.lease.baseLeaseID == F.id(2))
        let other = Self.session(&ledger, 2, user: "bob")
        #expect(Self.code(ledger.checkOut(Self.request(other, 4, feature: "cad.render"), at: Self.t0)) == .baseRequired)
        let checkIn = try ledger.checkIn(F.id(2), by: s, at: Self.t0 + 5).get()
        #expect(checkIn.releasedAddOns.map(\.id) == [F.id(3)])
        #expect(
            checkIn.changes == [.released(F.id(3), .baseReleased, atMs: Self.t0 + 5), .released(F.id(2), .checkedIn, atMs: Self.t0 + 5)]
        )
        #expect(ledger.seatsInUse(of: "cad.render") == 0)
    }

    // MARK: Scopes

    @Test("nearest pool first: OU 1.1 uses its own pool, OU 1.2 uses OU 1's, OU 2.1 uses Global; a full pool falls back to its parent")
    func nearestPool() throws {
        var ledger = F.ledger([
            Self.license("GLOBAL", count: 5),
            Self.license("OU1", count: 2) { $0.allowedGroups = ["/ou1"] },
            Self.license("OU1.1", count: 1) { $0.allowedGroups = ["/ou1/ou1.1"] },
        ])
        let ou11 = Self.session(&ledger, 1, user: "a", groups: ["/ou1/ou1.1"])
        let ou12 = Self.session(&ledger, 2, user: "b", groups: ["/ou1/ou1.2"])
        let ou21 = Self.session(&ledger, 3, user: "c", groups: ["/ou2/ou2.1"])
        #expect(try ledger.checkOut(Self.request(ou11, 1), at: Self.t0).get().lease.licenseID == "OU1.1")
        #expect(try ledger.checkOut(Self.request(ou12, 2), at: Self.t0).get().lease.licenseID == "OU1")
        #expect(try ledger.checkOut(Self.request(ou21, 3), at: Self.t0).get().lease.licenseID == "GLOBAL")
        // OU 1.1's own pool is full: the next one comes from OU 1, then from Global.
        #expect(try ledger.checkOut(Self.request(ou11, 4), at: Self.t0).get().lease.licenseID == "OU1")
        #expect(try ledger.checkOut(Self.request(ou11, 5), at: Self.t0).get().lease.licenseID == "GLOBAL")
    }

    @Test("Matrix42's three dimensions: unit (group), cost centre and location must each match; a refusal names the dimension")
    func costCentreAndLocation() throws {
        var ledger = F.ledger([
            Self.license("CC", count: 5) {
                $0.allowedGroups = ["/global/ou1"]
                $0.allowedCostCentres = ["CC-100"]
                $0.allowedLocations = ["Berlin", "Munich"]
            }
        ])
        func session(_ n: UInt64, _ user: String, unit: String, costCentre: String, location: String) -> SessionID {
            let id = ID128(high: 0x5e55, low: n)
            ledger.openSession(
                id,
                identity: ClientIdentity(user: user, host: "h", groups: [unit], costCentre: costCentre, location: location)
            )
            return id
        }
        let fits = session(1, "ann", unit: "/global/ou1/ou1.1", costCentre: "CC-100", location: "Munich")
        #expect(try ledger.checkOut(Self.request(fits, 1), at: Self.t0).get().lease.licenseID == "CC")
        let wrongCentre = session(2, "dan", unit: "/global/ou1", costCentre: "CC-200", location: "Berlin")
        let centre = ledger.checkOut(Self.request(wrongCentre, 2), at: Self.t0)
        #expect(Self.code(centre) == .userNotAllowed)
        #expect(Self.message(centre).contains("cost centre CC-100 only; user 'dan' is in cost centre CC-200"))
        let wrongPlace = session(3, "cat", unit: "/global/ou1", costCentre: "CC-100", location: "Paris")
        #expect(
            Self.message(ledger.checkOut(Self.request(wrongPlace, 3), at: Self.t0)).contains(
                "location Berlin, Munich only; user 'cat' is at location Paris"
            )
        )
        let unknown = session(4, "zed", unit: "/global/ou1", costCentre: "", location: "Berlin")
        #expect(Self.message(ledger.checkOut(Self.request(unknown, 4), at: Self.t0)).contains("user 'zed' is in no cost centre"))
        let otherUnit = session(5, "bob", unit: "/global/ou2", costCentre: "CC-100", location: "Berlin")
        #expect(Self.code(ledger.checkOut(Self.request(otherUnit, 5), at: Self.t0)) == .userNotAllowed)
    }

    @Test("a reservation for a group is not consumable by non-members")
    func reservation() throws {
        var ledger = F.ledger([
            Self.license("L", count: 3) {
                var r = Licensed_V1_Reservation()
                r.group = "/eng"
                r.count = 2
                $0.reservations = [r]
            }
        ])
        let outsider = Self.session(&ledger, 1, user: "sales1", groups: ["/sales"])
        let outsider2 = Self.session(&ledger, 2, user: "sales2", groups: ["/sales"])
        let engineer = Self.session(&ledger, 3, user: "eng1", groups: ["/eng/cad"])
        #expect(Self.code(ledger.checkOut(Self.request(outsider, 1), at: Self.t0)) == nil)
        #expect(Self.code(ledger.checkOut(Self.request(outsider2, 2), at: Self.t0)) == .noSeats)
        #expect(Self.code(ledger.checkOut(Self.request(engineer, 3), at: Self.t0)) == nil)
        #expect(Self.code(ledger.checkOut(Self.request(engineer, 4), at: Self.t0)) == nil)
        #expect(Self.code(ledger.checkOut(Self.request(engineer, 5), at: Self.t0)) == .noSeats)
    }

    @Test(
        "networks, users, hosts and groups: allowed and excluded",
        arguments: [
            ("in network", "ada", "ws1", ["/eng"], "10.9.8.7", Licensed_V1_Error.Code?.none),
            ("IPv4-mapped IPv6 address", "ada", "ws1", ["/eng"], "::ffff:10.1.1.1", nil),
            ("outside the network", "ada", "ws1", ["/eng"], "192.168.1.1", .networkNotAllowed),
            ("excluded user", "mallory", "ws1", ["/eng"], "10.0.0.1", .userNotAllowed),
            ("excluded host", "ada", "kiosk", ["/eng"], "10.0.0.1", .userNotAllowed),
            ("excluded sub-group", "ada", "ws1", ["/eng/contractors"], "10.0.0.1", .userNotAllowed),
            ("group outside the allowed ones", "ada", "ws1", ["/sales"], "10.0.0.1", .userNotAllowed),
        ] as [(String, String, String, [String], String, Licensed_V1_Error.Code?)]
    )
    func scopes(_ name: String, user: String, host: String, groups: [String], address: String, expected: Licensed_V1_Error.Code?) {
        var ledger = F.ledger([
            Self.license("L", count: 5) {
                $0.allowedNetworks = ["10.0.0.0/8", "fd00::/8"]
                $0.excludedUsers = ["mallory"]
                $0.excludedHosts = ["kiosk"]
                $0.allowedGroups = ["/eng"]
                $0.excludedGroups = ["/eng/contractors"]
            }
        ])
        let s = Self.session(&ledger, 1, user: user, host: host, groups: groups, address: address)
        #expect(Self.code(ledger.checkOut(Self.request(s, 1), at: Self.t0)) == expected, "\(name)")
    }

    @Test("MAX per user and per group")
    func maxLimits() throws {
        var ledger = F.ledger([
            Self.license("L", count: 10) {
                var perUser = Licensed_V1_UsageLimit()
                perUser.kind = "user"
                perUser.max = 2
                var sales = Licensed_V1_UsageLimit()
                sales.kind = "group"
                sales.name = "/sales"
                sales.max = 3
                $0.limits = [perUser, sales]
            }
        ])
        let a = Self.session(&ledger, 1, user: "a", groups: ["/sales/emea"])
        let b = Self.session(&ledger, 2, user: "b", groups: ["/sales/us"])
        #expect(Self.code(ledger.checkOut(Self.request(a, 1), at: Self.t0)) == nil)
        #expect(Self.code(ledger.checkOut(Self.request(a, 2), at: Self.t0)) == nil)
        #expect(Self.code(ledger.checkOut(Self.request(a, 3), at: Self.t0)) == .noSeats)  // user max 2
        #expect(Self.code(ledger.checkOut(Self.request(b, 4), at: Self.t0)) == nil)
        #expect(Self.code(ledger.checkOut(Self.request(b, 5), at: Self.t0)) == .noSeats)  // /sales max 3
    }

    @Test("server-side options tighten a licence but never widen it")
    func restrictions() throws {
        var ledger = F.ledger([Self.license("L", count: 3) { $0.excludedUsers = ["eve"] }])
        var rule = SeatLedger.FeatureRestriction(feature: "cad")
        rule.excludedUsers = ["bob"]
        rule.maxPerUser = 1
        rule.reservations = ["/eng": 1]
        rule.includedUsers = ["eve"]  // an include cannot let in a user the licence excludes
        var everyone = SeatLedger.FeatureRestriction()
        everyone.excludedHosts = ["kiosk"]
        ledger.configuration.restrictions = [rule, everyone]
        let ada = Self.session(&ledger, 1, user: "ada", groups: ["/eng"])
        let bob = Self.session(&ledger, 2, user: "bob")
        let eve = Self.session(&ledger, 3, user: "eve")
        #expect(Self.code(ledger.checkOut(Self.request(bob, 1), at: Self.t0)) == .userNotAllowed)
        #expect(Self.code(ledger.checkOut(Self.request(eve, 2), at: Self.t0)) == .userNotAllowed)
        #expect(Self.code(ledger.checkOut(Self.request(ada, 3), at: Self.t0)) == .userNotAllowed)  // not in the include list
        ledger.configuration.restrictions[0].includedUsers = []
        #expect(Self.code(ledger.checkOut(Self.request(ada, 4), at: Self.t0)) == nil)
        #expect(Self.code(ledger.checkOut(Self.request(ada, 5), at: Self.t0)) == .noSeats)  // max 1 per user
        let carl = Self.session(&ledger, 4, user: "carl")
        let dan = Self.session(&ledger, 5, user: "dan")
        // 3 seats: ada holds 1, the /eng reservation is met by ada; carl and dan may have the other 2.
        #expect(Self.code(ledger.checkOut(Self.request(carl, 6), at: Self.t0)) == nil)
        #expect(Self.code(ledger.checkOut(Self.request(dan, 7), at: Self.t0)) == nil)
        let kiosk = Self.session(&ledger, 6, user: "kim", host: "kiosk")
        _ = try ledger.checkIn(F.id(6), by: carl, at: Self.t0).get()
        #expect(Self.code(ledger.checkOut(Self.request(kiosk, 8), at: Self.t0)) == .userNotAllowed)
    }

    @Test("group paths and networks")
    func helpers() {
        #expect(GroupPath.isWithin("/emea/sales", "/emea"))
        #expect(!GroupPath.isWithin("/emeax", "/emea"))
        #expect(GroupPath.distance(from: "/a/b/c", to: "/a") == 2)
        #expect(GroupPath.lineage("/a/b") == ["/a/b", "/a"])
        #expect(NetworkRange("10.0.0.0/8")?.contains("10.255.1.1") == true)
        #expect(NetworkRange("10.0.0.0/8")?.contains("11.0.0.1") == false)
        #expect(NetworkRange("fd00::/8")?.contains("fd12:3456::1") == true)
        #expect(NetworkRange("fd00::/8")?.contains("fe80::1") == false)
        #expect(NetworkRange("192.168.1.7")?.contains("192.168.1.7") == true)
        #expect(NetworkRange("300.1.1.1/8") == nil)
    }
}
