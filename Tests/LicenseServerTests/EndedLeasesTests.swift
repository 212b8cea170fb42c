import LicenseCore
import Testing

@testable import LicenseServer

/// The leases a batch of changes ends, found by id: the same answers through the index (many
/// leases) as by looking along them (a few), first of a repeated id included.
@Suite("Ended leases: found by id")
struct EndedLeasesTests {
    static func lease(_ low: UInt64, feature: String) -> Lease {
        Lease(
            id: ID128(high: 9, low: low),
            sessionID: ID128(high: 1, low: 1),
            feature: feature,
            licenseID: "L",
            count: 1,
            identity: ClientIdentity(user: "u", host: "h"),
            grantedAtMs: 0,
            expiresAtMs: 0,
            ttlMs: 0,
            overage: false,
            fencingToken: low,
            checkoutKey: []
        )
    }

    @Test("below, at and above the index threshold, with repeated ids and ids not among them", arguments: [0, 1, 8, 9, 50, 2_000])
    func sameAsLookingAlong(count: Int) {
        var generator = SystemRandomNumberGenerator()
        // Ids from a small range, so that some repeat (with another feature) and some are missing.
        let leases = (0..<count).map { index in
            Self.lease(UInt64.random(in: 0..<UInt64(max(2, count)), using: &generator), feature: "f\(index)")
        }
        let ended = EndedLeases(leases)
        for low in 0..<UInt64(max(2, count) + 3) {
            let id = ID128(high: 9, low: low)
            let expected = leases.first { $0.id == id }
            #expect(ended[id] == expected, "id \(low) of \(count) leases")
        }
    }
}
