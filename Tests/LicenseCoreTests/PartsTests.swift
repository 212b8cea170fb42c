import LicenseCore
import LicenseProtocol
import Testing

@Suite("Parts: assignment to devices")
struct PartsTests {
    typealias F = LedgerFixture
    static let t0 = F.t0
    static let admin = ClientIdentity(user: "root", host: "console")

    static func part(
        _ id: String,
        features: [String],
        requires: [String] = [],
        count: UInt32 = 10,
        _ edit: (inout Licensed_V1_License) -> Void = { _ in }
    )
        -> VerifiedLicense
    {
        var verified = F.license(id, feature: features[0], count: count)
        verified.license.model = .nodeLocked
        for name in features.dropFirst() {
            var f = Licensed_V1_Feature()
            f.name = name
            f.count = count
            verified.license.features.append(f)
        }
        verified.license.requires = requires
        edit(&verified.license)
        return verified
    }

    static func ledger() -> SeatLedger {
        F.ledger([
            Self.part("ESSENTIALS", features: ["mdm"]),
            Self.part("PREMIER", features: ["mdm", "apps", "docs"]),
            Self.part("SECURE-DOCS", features: ["secure.docs"], requires: ["ESSENTIALS", "PREMIER"]),
            Self.part("OLD", features: ["legacy"]) { $0.notAfterMs = Self.t0 - F.day },
        ])
    }

    static func code<T>(_ result: Result<T, LicenseError>) -> Licensed_V1_Error.Code? {
        if case .failure(let error) = result { return error.code }
        return nil
    }

    @Test("an add-on needs a base part on the device; a suspended part is not assignable")
    func addOnAndSuspended() throws {
        var ledger = Self.ledger()
        let device = SeatLedger.Device(deviceID: "DEV-1")
        #expect(
            Self.code(ledger.assign(part: "SECURE-DOCS", to: device, by: Self.admin, newActivationID: "a1", at: Self.t0)) == .baseRequired
        )
        #expect(Self.code(ledger.assign(part: "OLD", to: device, by: Self.admin, newActivationID: "a2", at: Self.t0)) == .licenseExpired)
        _ = try ledger.assign(part: "ESSENTIALS", to: device, by: Self.admin, newActivationID: "a3", at: Self.t0).get()
        #expect(Self.code(ledger.assign(part: "SECURE-DOCS", to: device, by: Self.admin, newActivationID: "a4", at: Self.t0)) == nil)
        #expect(ledger.activations(on: device).map(\.licenseID).sorted() == ["ESSENTIALS", "SECURE-DOCS"])
    }

    @Test("a part whose features cover another's replaces it: upgrade, then downgrade")
    func upgradeDowngrade() throws {
        var ledger = Self.ledger()
        let device = SeatLedger.Device(deviceID: "DEV-1")
        _ = try ledger.assign(part: "ESSENTIALS", to: device, by: Self.admin, newActivationID: "a1", at: Self.t0).get()
        let upgrade = try ledger.assign(part: "PREMIER", to: device, by: Self.admin, newActivationID: "a2", at: Self.t0).get()
        #expect(upgrade.replaced.map(\.licenseID) == ["ESSENTIALS"])
        #expect(ledger.activations(on: device).map(\.licenseID) == ["PREMIER"])
        let downgrade = try ledger.assign(part: "ESSENTIALS", to: device, by: Self.admin, newActivationID: "a3", at: Self.t0).get()
        #expect(downgrade.replaced.map(\.licenseID) == ["PREMIER"])
        #expect(ledger.activations(on: device).map(\.licenseID) == ["ESSENTIALS"])
    }

    @Test("a device keeps at least one base part; a base its add-ons need is not revoked")
    func lastBase() throws {
        var ledger = Self.ledger()
        let device = SeatLedger.Device(deviceID: "DEV-1")
        _ = try ledger.assign(part: "ESSENTIALS", to: device, by: Self.admin, newActivationID: "a1", at: Self.t0).get()
        let last = ledger.revoke(part: "ESSENTIALS", from: device, at: Self.t0)
        #expect(Self.code(last) == .permissionDenied)
        if case .failure(let error) = last { #expect(error.message.contains("last base part")) }
        _ = try ledger.assign(part: "SECURE-DOCS", to: device, by: Self.admin, newActivationID: "a2", at: Self.t0).get()
        #expect(Self.code(ledger.revoke(part: "SECURE-DOCS", from: device, at: Self.t0)) == nil)
        #expect(Self.code(ledger.revoke(part: "PREMIER", from: device, at: Self.t0)) == .notFound)
    }

    @Test("the default part for new activations, and the overage part once it is used up (only if overage is allowed)")
    func defaultAndOverage() throws {
        for (policy, expected) in [(Licensed_V1_OveragePolicy.trueUp, "EXTRA"), (.hard, "STD")] {
            var ledger = F.ledger([
                Self.part("STD", features: ["mdm"], count: 1) { $0.overage = policy },
                Self.part("EXTRA", features: ["mdm"], count: 5),
            ])
            #expect(ledger.partForNewActivation(defaultPart: "STD", overagePart: "EXTRA") == "STD")
            _ = try ledger.assign(part: "STD", to: .init(deviceID: "D1"), by: Self.admin, newActivationID: "a1", at: Self.t0).get()
            #expect(ledger.partForNewActivation(defaultPart: "STD", overagePart: "EXTRA") == expected, "\(policy)")
        }
    }
}
