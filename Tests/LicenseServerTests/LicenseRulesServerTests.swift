import Foundation
import LicenseClient
import LicenseCore
import LicenseCrypto
import LicenseProtocol
import LicenseServer
import LicenseTestSupport
import Testing

@Suite("Licence rules through the server")
struct LicenseRulesServerTests {
    static func license(_ id: String, feature: String = "cad", count: UInt32, _ edit: (inout Licensed_V1_License) -> Void = { _ in })
        -> VerifiedLicense
    {
        var verified = FloatingSeatServerTests.license(id, feature: feature, count: count)
        edit(&verified.license)
        return verified
    }

    @Test("a queued check-out is granted at the check-in that frees a seat, in FIFO order; the last one times out")
    func queue() async throws {
        let clock = ManualClock(startMs: 1_790_000_000_000)
        try await withTestServer(licenses: [Self.license("L", count: 1)], clock: clock) { _, port in
            let a = FloatingSeatServerTests.client(port, user: "a")
            let b = FloatingSeatServerTests.client(port, user: "b")
            let c = FloatingSeatServerTests.client(port, user: "c")
            let held = try await a.checkOut(feature: "cad")
            _ = try await b.connect()
            _ = try await c.connect()
            let waitingB = Task { try await b.checkOut(feature: "cad", waitMs: 60_000) }
            try await Task.sleep(for: .milliseconds(100))
            let waitingC = Task { try await c.checkOut(feature: "cad", waitMs: 300) }
            try await Task.sleep(for: .milliseconds(100))
            #expect(try await a.status().features.first?.queued == 2)
            try await a.checkIn(held)
            let granted = try await waitingB.value
            #expect(granted.feature == "cad")
            // c's wait runs out (the server's clock is the manual one).
            clock.advance(byMs: 301)
            let timedOut = await #expect(throws: LicenseClientError.self) { try await waitingC.value }
            #expect(timedOut?.code == .deadlineExceeded)
            for client in [a, b, c] { await client.close() }
        }
    }

    @Test("a borrow carries a server-signed token that verifies offline; one changed byte anywhere and it does not")
    func borrowToken() async throws {
        let clock = ManualClock(startMs: 1_790_000_000_000)
        try await withTestServer(licenses: [Self.license("L", count: 2) { $0.lease.maxBorrowMs = 86_400_000 }], clock: clock) {
            server,
            port in
            let client = FloatingSeatServerTests.client(port, user: "ada")
            let lease = try await client.checkOut(feature: "cad", borrowMs: 3_600_000)
            let key = [UInt8](try #require(await client.session?.serverPublicKey))
            let claims = try BorrowTokenVerifier.verify(lease.borrowToken, serverPublicKey: key, at: clock.nowMs())
            #expect(claims.feature == "cad")
            #expect(claims.leaseID == .init(lease.id))
            #expect(claims.expiresAtMs == clock.nowMs() + 3_600_000)
            for index in lease.borrowToken.indices {
                var tampered = lease.borrowToken
                tampered[index] ^= 0x01
                #expect(throws: LicenseClientError.self, "byte \(index) changed") {
                    try BorrowTokenVerifier.verify(tampered, serverPublicKey: key, at: clock.nowMs())
                }
            }
            let other = try Ed25519PrivateKey.generate().publicKey.rawRepresentation
            #expect(throws: LicenseClientError.self) {
                try BorrowTokenVerifier.verify(lease.borrowToken, serverPublicKey: other, at: clock.nowMs())
            }
            let expired = #expect(throws: LicenseClientError.self) {
                try BorrowTokenVerifier.verify(lease.borrowToken, serverPublicKey: key, at: clock.nowMs() + 3_600_000)
            }
            #expect(expired?.code == .licenseExpired)
            // The borrower disconnects: the seat stays until the borrow ends, then comes back.
            await client.close()
            clock.advance(byMs: 3_599_999)
            try await server.reapNow()
            #expect(try await server.withLedger { $0.seatsInUse(of: "cad") } == 1)
            clock.advance(byMs: 1)
            try await server.reapNow()
            #expect(try await server.withLedger { $0.seatsInUse(of: "cad") } == 0)
        }
    }

    @Test("checking a base in releases its add-ons, and the reply names them")
    func addOnReleased() async throws {
        try await withTestServer(licenses: [
            Self.license("BASE", feature: "cad", count: 2),
            Self.license("RENDER", feature: "cad.render", count: 2) { $0.requires = ["BASE"] },
        ]) { _, port in
            let client = FloatingSeatServerTests.client(port, user: "ada")
            let denied = await #expect(throws: LicenseClientError.self) { try await client.checkOut(feature: "cad.render") }
            #expect(denied?.code == .baseRequired)
            let base = try await client.checkOut(feature: "cad")
            let addOn = try await client.checkOut(feature: "cad.render")
            let released = try await client.checkIn(base)
            #expect(released.map(\.id) == [addOn.id])
            #expect(await client.leases.isEmpty)
            await client.close()
        }
    }

    @Test("groups from the configuration and the peer address reach the licence's scopes")
    func scopesFromConfiguration() async throws {
        try await withTestServer(
            configure: { $0.groups = ["/eng": ["ada"], "/eng/cad": ["@cad-ws"]] },
            licenses: [
                Self.license("ENG", count: 1) {
                    $0.allowedGroups = ["/eng"]
                    $0.allowedNetworks = ["127.0.0.0/8"]
                },
                Self.license("LAN", feature: "lan", count: 1) { $0.allowedNetworks = ["10.0.0.0/8"] },
            ]
        ) { _, port in
            let ada = FloatingSeatServerTests.client(port, user: "ada")
            let granted = try await ada.checkOut(feature: "cad")
            #expect(granted.licenseID == "ENG")
            let bob = FloatingSeatServerTests.client(port, user: "bob")
            let refused = await #expect(throws: LicenseClientError.self) { try await bob.checkOut(feature: "cad") }
            #expect(refused?.code == .userNotAllowed)
            let network = await #expect(throws: LicenseClientError.self) { try await ada.checkOut(feature: "lan") }
            #expect(network?.code == .networkNotAllowed)
            for client in [ada, bob] { await client.close() }
        }
    }
}
