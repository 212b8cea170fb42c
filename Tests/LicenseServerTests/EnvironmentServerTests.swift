import Foundation
import LicenseClient
import LicenseCore
import LicenseCrypto
import LicenseHost
import LicenseProtocol
import LicenseServer
import LicenseTestSupport
import Testing

/// Where the server and its node-locked clients run, against what licences allow (detection injected).
@Suite("Environments through the server")
struct EnvironmentServerTests {
    @Test("a licence allowing only physical servers is rejected at start on a host reported as a VM, like any rejected block")
    func serverEnvironment() async throws {
        let scratch = try TemporaryDirectory()
        let issuer = try Ed25519PrivateKey.generate()
        try issuer.publicKey.pemRepresentation().write(toFile: scratch.path("issuer.pub.pem"), atomically: true, encoding: .utf8)
        var physicalOnly = FloatingSeatServerTests.license("phys-only", feature: "cad", count: 5).license
        physicalOnly.serverEnvironments = ["physical"]
        let anywhere = FloatingSeatServerTests.license("anywhere", feature: "cam", count: 5).license
        let text =
            try LicenseFile.armor(LicenseIssuer.sign(physicalOnly, with: issuer, keyID: "acme"))
            + LicenseFile.armor(LicenseIssuer.sign(anywhere, with: issuer, keyID: "acme"))
        try text.write(toFile: scratch.path("site.lic"), atomically: true, encoding: .utf8)
        var configuration = ServerConfiguration()
        configuration.trustedKeys = [.init(id: "acme", publicKey: scratch.path("issuer.pub.pem"))]
        let kvm = HostEnvironment(machine: .virtual, hypervisor: "kvm")
        let loader = try LicenseLoader(configuration: configuration, hostComponents: [], environment: kvm.report)
        let loaded = try loader.load(paths: [scratch.path("site.lic")], at: FloatingSeatServerTests.start)
        #expect(loaded.effective.map(\.license.id) == ["anywhere"])
        let rejected = try #require(loaded.rejected.first)
        #expect(rejected.licenseID == "phys-only" && rejected.block == 1)
        #expect(
            rejected.description.contains("environment not allowed") && rejected.description.contains("virtual machine (kvm)"),
            "\(rejected)"
        )

        try await withTestServer(licenses: loaded.accepted) { _, port in
            let client = FloatingSeatServerTests.client(port, user: "ada")
            let denied = await #expect(throws: LicenseClientError.self) { try await client.checkOut(feature: "cad") }
            #expect(denied?.code == .notFound)
            _ = try await client.checkOut(feature: "cam")
            await client.close()
        }
        // The same file on bare metal: both licences load.
        let bare = try LicenseLoader(
            configuration: configuration,
            hostComponents: [],
            environment: HostEnvironment(machine: .physical).report
        )
        #expect(try bare.load(paths: [scratch.path("site.lic")], at: FloatingSeatServerTests.start).effective.count == 2)
    }

    @Test("an activation from a container is refused with ENVIRONMENT_NOT_ALLOWED naming what was detected; bare metal is served")
    func clientEnvironment() async throws {
        var license = ActivationServerTests.nodeLocked(count: 2)
        license.license.clientEnvironments = ["physical"]
        try await withTestServer(licenses: [license]) { _, port in
            let client = FloatingSeatServerTests.client(port, user: "ada")
            let container = HostEnvironment(machine: .physical, container: "docker")
            let refused = await #expect(throws: LicenseClientError.self) {
                try await client.activate(feature: "cad.nl", fingerprint: ActivationServerTests.machineA, environment: container.report)
            }
            #expect(refused?.code == .environmentNotAllowed)
            #expect(
                refused?.message.contains("container (docker)") == true && refused?.message.contains("only on physical") == true,
                "\(refused?.message ?? "")"
            )
            let unreported = await #expect(throws: LicenseClientError.self) {
                try await client.activate(feature: "cad.nl", fingerprint: ActivationServerTests.machineA)
            }
            #expect(unreported?.code == .environmentNotAllowed && unreported?.message.contains("not reported") == true)
            let granted = try await client.activate(
                feature: "cad.nl",
                fingerprint: ActivationServerTests.machineB,
                environment: HostEnvironment(machine: .physical).report
            )
            #expect(!granted.activationID.isEmpty)
            await client.close()
        }
    }
}
