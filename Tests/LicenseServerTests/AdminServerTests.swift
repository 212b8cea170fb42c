import LicenseClient
import LicenseCore
import LicenseCrypto
import LicenseProtocol
import LicenseServer
import LicenseTestSupport
import SwiftProtobuf
import Testing

@Suite("Administration through the server")
struct AdminServerTests {
    @Test("a client token can neither list nor revoke; an operator lists and revokes a user's leases and the holder is told")
    func revoke() async throws {
        let operatorToken = "ops-token"
        try await withTestServer(
            configure: { $0.tokens = [.init(hash: SHA256.hash(Array(operatorToken.utf8)), role: .operator)] },
            licenses: [FloatingSeatServerTests.license(count: 5)]
        ) { server, port in
            let ada = FloatingSeatServerTests.client(port, user: "ada")
            let bob = FloatingSeatServerTests.client(port, user: "bob")
            let adaLease = try await ada.checkOut(feature: "cad")
            _ = try await ada.checkOut(feature: "cad")
            _ = try await bob.checkOut(feature: "cad")
            for body in [Licensed_V1_ClientMessage.OneOf_Body.leases(.init()), .revoke(.with { $0.user = "ada" })] {
                let denied = await #expect(throws: LicenseClientError.self) { try await bob.administer(body) }
                #expect(denied?.code == .permissionDenied)
            }
            let ops = FloatingSeatServerTests.client(port, user: "ops", token: operatorToken)
            guard case .leases(let listed) = try await ops.administer(.leases(.with { $0.user = "ada" })) else {
                Issue.record("no lease listing")
                return
            }
            #expect(listed.leases.count == 2)
            #expect(listed.leases.allSatisfy { $0.holder.user == "ada" })
            guard case .revoke(let revoked) = try await ops.administer(.revoke(.with { $0.user = "ada" })) else {
                Issue.record("no revoke answer")
                return
            }
            #expect(revoked.leases == 2)
            var lost: [LicenseClient.Event] = []
            for await event in ada.events {
                lost.append(event)
                if lost.count == 2 { break }
            }
            #expect(lost.contains(.leaseLost(adaLease, reason: "an administrator checked in your lease of 'cad'")))
            #expect(try await server.withLedger { $0.seatsInUse(of: "cad") } == 1)
            let missing = await #expect(throws: LicenseClientError.self) {
                try await ops.administer(.revoke(.with { $0.leaseID = .init(adaLease.id) }))
            }
            #expect(missing?.code == .notFound)
            for client in [ada, bob, ops] { await client.close() }
        }
    }
}
