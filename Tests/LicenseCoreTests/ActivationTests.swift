import LicenseCore
import LicenseProtocol
import Testing

@Suite("Node-locked activations")
struct ActivationTests {
    typealias F = LedgerFixture
    static let t0 = F.t0
    static let machineA = ["a-mid", "a-uuid", "a-mac1", "a-host"]
    static let machineB = ["b-mid", "b-uuid", "b-mac1", "b-host"]
    static let machineC = ["c-mid", "c-uuid", "c-mac1", "c-host"]

    static func nodeLocked(_ id: String = "NL", count: UInt32 = 2, _ edit: (inout Licensed_V1_License) -> Void = { _ in })
        -> VerifiedLicense
    {
        var verified = F.license(id, feature: "cad.nl", count: count)
        verified.license.model = .nodeLocked
        edit(&verified.license)
        return verified
    }

    static func request(_ fingerprint: [String], user: String = "ada", id: String, license: String = "") -> SeatLedger.Activate {
        .init(
            licenseID: license,
            feature: license.isEmpty ? "cad.nl" : "",
            fingerprint: fingerprint,
            machineName: "m",
            identity: ClientIdentity(user: user, host: "h"),
            newActivationID: id
        )
    }

    static func code<T>(_ result: Result<T, LicenseError>) -> Licensed_V1_Error.Code? {
        if case .failure(let error) = result { return error.code }
        return nil
    }

    @Test("the limit: HARD refuses with ACTIVATION_LIMIT, TRUE_UP grants as overage", arguments: [Licensed_V1_OveragePolicy.hard, .trueUp])
    func limit(policy: Licensed_V1_OveragePolicy) throws {
        var ledger = F.ledger([
            Self.nodeLocked {
                $0.overage = policy; $0.maxActivations = 2
            }
        ])
        _ = try ledger.activate(Self.request(Self.machineA, id: "act-a"), at: Self.t0).get()
        _ = try ledger.activate(Self.request(Self.machineB, id: "act-b"), at: Self.t0).get()
        let third = ledger.activate(Self.request(Self.machineC, id: "act-c"), at: Self.t0)
        if policy == .hard {
            #expect(Self.code(third) == .activationLimit)
            _ = try ledger.deactivate("act-a", user: "ada", at: Self.t0).get()
            #expect(try ledger.activate(Self.request(Self.machineC, id: "act-c2"), at: Self.t0).get().activation.overage == false)
        } else {
            #expect(try third.get().activation.overage)
        }
    }

    @Test("per-user device limit")
    func deviceLimit() throws {
        var ledger = F.ledger([Self.nodeLocked(count: 10) { $0.maxDevicesPerUser = 1 }])
        _ = try ledger.activate(Self.request(Self.machineA, id: "act-a"), at: Self.t0).get()
        #expect(Self.code(ledger.activate(Self.request(Self.machineB, id: "act-b"), at: Self.t0)) == .deviceLimit)
        #expect(Self.code(ledger.activate(Self.request(Self.machineB, user: "bob", id: "act-b2"), at: Self.t0)) == nil)
    }

    @Test("re-activating the same machine is idempotent; a NIC change under MOST keeps it; another machine does not match")
    func idempotentAndDrift() throws {
        var ledger = F.ledger([Self.nodeLocked(count: 1) { $0.fingerprintMatch = .most }])
        let first = try ledger.activate(Self.request(Self.machineA, id: "act-a"), at: Self.t0).get()
        #expect(!first.existing)
        let again = try ledger.activate(Self.request(Self.machineA, id: "act-x"), at: Self.t0 + 5).get()
        #expect(again.existing)
        #expect(again.activation.id == "act-a")
        #expect(again.changes.isEmpty)
        let newNIC = ["a-mid", "a-uuid", "a-mac2", "a-host"]
        let drifted = try ledger.activate(Self.request(newNIC, id: "act-y"), at: Self.t0 + 10).get()
        #expect(drifted.existing && drifted.activation.id == "act-a")
        #expect(drifted.activation.fingerprint == newNIC)
        #expect(Self.code(ledger.activate(Self.request(Self.machineB, id: "act-b"), at: Self.t0)) == .activationLimit)
        #expect(Self.code(ledger.validateActivation("act-a", fingerprint: Self.machineB, at: Self.t0)) == .permissionDenied)
        #expect(Self.code(ledger.validateActivation("act-a", fingerprint: newNIC, at: Self.t0)) == nil)
    }

    @Test(
        "fingerprint rules over changed components",
        arguments: [
            (Licensed_V1_FingerprintMatch.any, 1, true), (.any, 0, false),
            (.two, 2, true), (.two, 1, false),
            (.most, 3, true), (.most, 2, false),
            (.all, 4, true), (.all, 3, false),
        ]
    )
    func rules(rule: Licensed_V1_FingerprintMatch, common: Int, matches: Bool) {
        let bound = ["c1", "c2", "c3", "c4"]
        let presented = Array(bound.prefix(common)) + ["x1", "x2"]
        #expect(FingerprintMatch.matches(bound: bound, presented: presented, rule: rule) == matches)
    }

    @Test("inactive activations are reclaimed at the threshold and not before; validation counts as seen")
    func inactivity() throws {
        var ledger = F.ledger([Self.nodeLocked(count: 5)])
        let threshold = 90 * F.day
        _ = try ledger.activate(Self.request(Self.machineA, id: "act-a"), at: Self.t0).get()
        _ = try ledger.activate(Self.request(Self.machineB, id: "act-b"), at: Self.t0).get()
        let seen = try ledger.validateActivation("act-b", fingerprint: Self.machineB, at: Self.t0 + 30 * F.day).get()
        #expect(seen.changes == [.activationSeen(id: "act-b", atMs: Self.t0 + 30 * F.day)])
        #expect(ledger.reapInactiveActivations(inactivityMs: threshold, at: Self.t0 + threshold - 1).isEmpty)
        let reclaimed = ledger.reapInactiveActivations(inactivityMs: threshold, at: Self.t0 + threshold)
        #expect(reclaimed.map(\.activation.id) == ["act-a"])
        #expect(reclaimed.first?.change == .deactivated(id: "act-a", cause: .expired, atMs: Self.t0 + threshold))
        #expect(ledger.allActivations.map(\.id) == ["act-b"])
    }

    @Test("only the activation's user or an administrator deactivates; replaying the changes rebuilds the activations")
    func ownershipAndReplay() throws {
        var ledger = F.ledger([Self.nodeLocked(count: 5)])
        var log: [LedgerChange] = []
        log += try ledger.activate(Self.request(Self.machineA, id: "act-a"), at: Self.t0).get().changes
        log += try ledger.activate(Self.request(Self.machineB, user: "bob", id: "act-b"), at: Self.t0).get().changes
        #expect(Self.code(ledger.deactivate("act-a", user: "bob", at: Self.t0)) == .permissionDenied)
        log += try ledger.deactivate("act-a", user: "root", asAdmin: true, at: Self.t0).get()
        var replayed = F.ledger([Self.nodeLocked(count: 5)])
        for change in log { replayed.apply(change) }
        #expect(replayed.allActivations == ledger.allActivations)
        #expect(Self.code(ledger.activate(Self.request(Self.machineA, id: "z", license: "NOPE"), at: Self.t0)) == .notFound)
    }
}
