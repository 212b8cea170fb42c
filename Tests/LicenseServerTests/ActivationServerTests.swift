import Foundation
import LicenseClient
import LicenseCore
import LicenseProtocol
import LicenseServer
import LicenseTestSupport
import SwiftProtobuf
import Testing

@Suite("Activations through the server")
struct ActivationServerTests {
    static let machineA = ["a1", "a2", "a3"]
    static let machineB = ["b1", "b2", "b3"]

    static func nodeLocked(count: UInt32) -> VerifiedLicense {
        var verified = FloatingSeatServerTests.license("NL", feature: "cad.nl", count: count)
        verified.license.model = .nodeLocked
        verified.license.fingerprintMatch = .most
        return verified
    }

    @Test("the activation certificate verifies offline on the machine; one changed byte, or another machine, and it does not")
    func certificate() async throws {
        let clock = ManualClock(startMs: 1_790_000_000_000)
        try await withTestServer(licenses: [Self.nodeLocked(count: 2)], clock: clock) { _, port in
            let client = FloatingSeatServerTests.client(port, user: "ada")
            let response = try await client.activate(feature: "cad.nl", fingerprint: Self.machineA, machineName: "ws-a")
            let key = [UInt8](try #require(await client.session?.serverPublicKey))
            let claims = try ActivationCertificateVerifier.verify(
                response.certificate,
                serverPublicKey: key,
                fingerprint: Self.machineA,
                at: clock.nowMs()
            )
            #expect(claims.activationID == response.activationID)
            #expect(claims.validUntilMs == clock.nowMs() + 30 * 86_400_000)
            // A NIC changed: still this machine under MOST.
            _ = try ActivationCertificateVerifier.verify(
                response.certificate,
                serverPublicKey: key,
                fingerprint: ["a1", "a2", "new-nic"],
                at: clock.nowMs()
            )
            let other = #expect(throws: LicenseClientError.self) {
                try ActivationCertificateVerifier.verify(
                    response.certificate,
                    serverPublicKey: key,
                    fingerprint: Self.machineB,
                    at: clock.nowMs()
                )
            }
            #expect(other?.code == .permissionDenied)
            let bytes: [UInt8] = try response.certificate.serializedBytes()
            for index in bytes.indices {
                var tampered = bytes
                tampered[index] ^= 0x01
                #expect(throws: LicenseClientError.self, "byte \(index) changed") {
                    try ActivationCertificateVerifier.verify(tampered, serverPublicKey: key, fingerprint: Self.machineA, at: clock.nowMs())
                }
            }
            let stale = #expect(throws: LicenseClientError.self) {
                try ActivationCertificateVerifier.verify(
                    response.certificate,
                    serverPublicKey: key,
                    fingerprint: Self.machineA,
                    at: claims.validUntilMs
                )
            }
            #expect(stale?.code == .licenseExpired)
            // Validation online refreshes the certificate; the wrong machine is refused.
            let refreshed = try await client.validateActivation(response.activationID, fingerprint: Self.machineA)
            #expect(!refreshed.signature.isEmpty)
            let wrong = await #expect(throws: LicenseClientError.self) {
                try await client.validateActivation(response.activationID, fingerprint: Self.machineB)
            }
            #expect(wrong?.code == .permissionDenied)
            await client.close()
        }
    }

    @Test("an activation that names nothing gets the default part, then the overage part once the default is used up")
    func defaultPart() async throws {
        var standard = Self.nodeLocked(count: 1)
        standard.license.overage = .trueUp
        var extra = Self.nodeLocked(count: 5)
        extra.license.id = "EXTRA"
        try await withTestServer(
            configure: {
                $0.defaultPart = "NL"; $0.overagePart = "EXTRA"
            },
            licenses: [standard, extra]
        ) { _, port in
            let client = FloatingSeatServerTests.client(port, user: "ada")
            let first = try await client.activate(fingerprint: Self.machineA)
            let second = try await client.activate(fingerprint: Self.machineB)
            let key = [UInt8](try #require(await client.session?.serverPublicKey))
            let now: Int64 = 1_790_000_000_000  // the test server's manual clock
            #expect(
                try ActivationCertificateVerifier.verify(first.certificate, serverPublicKey: key, fingerprint: Self.machineA, at: now)
                    .licenseID == "NL"
            )
            #expect(
                try ActivationCertificateVerifier.verify(second.certificate, serverPublicKey: key, fingerprint: Self.machineB, at: now)
                    .licenseID == "EXTRA"
            )
            await client.close()
        }
    }

    @Test("two machines on a 2-activation licence, the third refused; deactivating one lets it in; activations survive a restart")
    func limitAndRestart() async throws {
        let dir = try TemporaryDirectory()
        let licenses = [Self.nodeLocked(count: 2)]
        let kept = try await withTestServer(licenses: licenses, stateDirectory: dir.path("state")) { _, port in
            let client = FloatingSeatServerTests.client(port, user: "ada")
            let a = try await client.activate(feature: "cad.nl", fingerprint: Self.machineA)
            let b = try await client.activate(feature: "cad.nl", fingerprint: Self.machineB)
            let refused = await #expect(throws: LicenseClientError.self) {
                try await client.activate(feature: "cad.nl", fingerprint: ["c1", "c2", "c3"])
            }
            #expect(refused?.code == .activationLimit)
            #expect(try await client.activate(feature: "cad.nl", fingerprint: Self.machineA).existing)
            try await client.deactivate(a.activationID)
            let c = try await client.activate(feature: "cad.nl", fingerprint: ["c1", "c2", "c3"])
            await client.close()
            return Set([b.activationID, c.activationID])
        }
        try await withTestServer(licenses: licenses, stateDirectory: dir.path("state")) { server, _ in
            let recovered = try await server.withLedger { Set($0.allActivations.map(\.id)) }
            #expect(recovered == kept)
        }
    }
}
