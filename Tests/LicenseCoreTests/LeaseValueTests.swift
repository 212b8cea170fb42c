import LicenseProtocol
import Testing

@testable import LicenseCore

/// `Lease` keeps most of its fields in a shared box: it must still behave as a plain value, and
/// the ledger must not make a new box where it only shares one.
@Suite("Lease: a value with its fields in a shared box")
struct LeaseValueTests {
    static func lease(user: String = "ann", feature: String = "cad") -> Lease {
        Lease(
            id: ID128(high: 7, low: 9),
            sessionID: ID128(high: 1, low: 2),
            feature: feature,
            licenseID: "L",
            count: 2,
            identity: ClientIdentity(user: user, host: "ws1", groups: ["/eng"]),
            grantedAtMs: 1_000,
            expiresAtMs: 31_000,
            ttlMs: 30_000,
            overage: false,
            fencingToken: 4,
            checkoutKey: [1, 2, 3],
            borrowed: false,
            lingering: false,
            baseLeaseID: ID128(high: 7, low: 8),
            sharedSeats: 1,
            dupIdentity: "ann",
            tokenCost: 3
        )
    }

    @Test("setting a field of a copy leaves the original as it was, for every field")
    func copiesAreIndependent() {
        let original = Self.lease()
        let changes: [(String, (inout Lease) -> Void)] = [
            ("id", { $0.id = ID128(high: 0, low: 1) }),
            ("expiresAtMs", { $0.expiresAtMs += 1 }),
            ("sessionID", { $0.sessionID = ID128(high: 3, low: 3) }),
            ("feature", { $0.feature = "cam" }),
            ("licenseID", { $0.licenseID = "M" }),
            ("count", { $0.count += 1 }),
            ("identity", { $0.identity.user = "bob" }),
            ("grantedAtMs", { $0.grantedAtMs += 1 }),
            ("ttlMs", { $0.ttlMs += 1 }),
            ("overage", { $0.overage.toggle() }),
            ("fencingToken", { $0.fencingToken += 1 }),
            ("checkoutKey", { $0.checkoutKey.append(4) }),
            ("borrowed", { $0.borrowed.toggle() }),
            ("lingering", { $0.lingering.toggle() }),
            ("baseLeaseID", { $0.baseLeaseID = nil }),
            ("sharedSeats", { $0.sharedSeats += 1 }),
            ("dupIdentity", { $0.dupIdentity = "bob" }),
            ("tokenCost", { $0.tokenCost += 1 }),
        ]
        for (name, change) in changes {
            var copy = original
            change(&copy)
            #expect(copy != original, "changing \(name) changes the copy")
            #expect(original == Self.lease(), "changing \(name) of a copy leaves the original")
        }
        var copy = original
        copy.identity.user = "bob"
        #expect(copy.identity.user == "bob")
        #expect(original.identity.user == "ann")
    }

    @Test("leases built apart with the same fields are equal and hash alike; one field apart, they differ")
    func equalityFollowsFields() {
        #expect(Self.lease() == Self.lease())
        #expect(Self.lease().hashValue == Self.lease().hashValue)
        #expect(Set([Self.lease(), Self.lease()]).count == 1)
        #expect(Self.lease(user: "bob") != Self.lease())
        #expect(Self.lease(feature: "cam") != Self.lease())
    }

    @Test("a granted lease is stored with the grant's own box; a replayed one takes its session's identity")
    func ledgerSharesBoxes() throws {
        var ledger = ClockStepTests.ledger(count: 10)
        let session = ID128(high: 1, low: 1)
        ledger.openSession(session, identity: ClientIdentity(user: "ann", host: "ws1"))
        let grant = try ledger.checkOut(.init(sessionID: session, feature: "cad", newLeaseID: ID128(high: 2, low: 1)), at: 1_000).get()
        let stored = try #require(ledger.leases[grant.lease.id])
        #expect(stored.box === grant.lease.box)

        // Replay: an equal identity from the log, in a box of its own, is replaced by the session's.
        var replayed = grant.lease
        replayed.id = ID128(high: 2, low: 2)
        replayed.identity = ClientIdentity(user: "ann", host: "ws1")
        #expect(!replayed.identity.isIdentical(to: stored.identity))
        ledger.apply(.granted(replayed))
        let shared = try #require(ledger.leases[replayed.id])
        #expect(shared.identity.isIdentical(to: stored.identity))
        #expect(shared == replayed)
    }
}
