import LicenseClient
import LicenseCore
import LicenseCrypto
import LicenseProtocol
import LicenseServer
import LicenseStore
import LicenseTestSupport
import Testing

@Suite("Durability and reload through the server")
struct DurabilityServerTests {
    static func license(count: UInt32, feature: String = "cad") -> VerifiedLicense {
        FloatingSeatServerTests.license(count: count).withFeature(feature)
    }

    @Test("leases survive a restart of the server on the same state directory, and the session resumes")
    func restartKeepsLeases() async throws {
        let dir = try TemporaryDirectory()
        let clock = ManualClock(startMs: 1_790_000_000_000)
        let licenses = [FloatingSeatServerTests.license(count: 2)]
        let (leaseID, sessionID) = try await withTestServer(licenses: licenses, clock: clock, stateDirectory: dir.path("state")) {
            _,
            port in
            let client = FloatingSeatServerTests.client(port, user: "ada")
            let lease = try await client.checkOut(feature: "cad")
            let session = try #require(await client.session?.sessionID)
            await client.close()
            return (lease.id, session)
        }
        clock.advance(byMs: 100_000)  // the restart took a while: leases still get a full TTL
        try await withTestServer(licenses: licenses, clock: clock, stateDirectory: dir.path("state")) { server, port in
            let leases = try await server.withLedger { ledger in ledger.leases.values.map { ($0.id.bytes, $0.expiresAtMs) } }
            #expect(leases.map(\.0) == [leaseID])
            #expect(leases.first?.1 == clock.nowMs() + 120_000)
            // The client comes back with its old session id and keeps its lease.
            let raw = try await RawConnection.connect(port: port)
            var hello = Licensed_V1_ClientMessage()
            hello.requestID = 1
            hello.hello.resumeSessionID = sessionID
            try await raw.send(hello)
            #expect(try await raw.readMessage().hello.resumed)
            var checkIn = Licensed_V1_ClientMessage()
            checkIn.requestID = 2
            checkIn.checkIn.leaseID = .init(leaseID)
            try await raw.send(checkIn)
            guard case .checkIn = try await raw.readMessage().body else {
                Issue.record("the resumed session could not check its lease in")
                return
            }
            await raw.close()
        }
    }

    @Test("snapshot on request, then recovery from snapshot plus log")
    func snapshotThenRecover() async throws {
        let dir = try TemporaryDirectory()
        let licenses = [FloatingSeatServerTests.license(count: 10)]
        let held = try await withTestServer(licenses: licenses, stateDirectory: dir.path("state")) { server, port in
            let client = FloatingSeatServerTests.client(port, user: "ada")
            var ids: [[UInt8]] = []
            for _ in 0..<4 { ids.append(try await client.checkOut(feature: "cad").id) }
            let snapshot = try await server.snapshot()
            #expect(snapshot.leases == 4)
            try await client.checkIn(leaseID: ids.removeFirst())
            ids.append(try await client.checkOut(feature: "cad").id)
            await client.close()
            return Set(ids)
        }
        try await withTestServer(licenses: licenses, stateDirectory: dir.path("state")) { server, _ in
            let recovered = try await server.withLedger { Set($0.leases.keys.map(\.bytes)) }
            #expect(recovered == held)
        }
    }

    @Test("reload: a licence that shrank keeps its leases and is AT_RISK; a removed feature stops granting")
    func reloadShrinks() async throws {
        let admin = "reload-admin"
        let version = ManualClock(startMs: 0)  // which licence set the reloader returns
        let reloader: @Sendable () async throws -> LicenseLoadResult = {
            var result = LicenseLoadResult()
            result.accepted =
                version.nowMs() == 0 ? [Self.license(count: 3), Self.license(count: 1, feature: "extra")] : [Self.license(count: 1)]
            return result
        }
        try await withTestServer(
            configure: { $0.tokens = [.init(hash: SHA256.hash(Array(admin.utf8)), role: .operator)] },
            licenses: [Self.license(count: 3), Self.license(count: 1, feature: "extra")],
            reloader: reloader
        ) { _, port in
            let client = FloatingSeatServerTests.client(port, user: "ada")
            for _ in 0..<3 { _ = try await client.checkOut(feature: "cad") }
            let notAllowed = await #expect(throws: LicenseClientError.self) { try await client.reload() }
            #expect(notAllowed?.code == .permissionDenied)
            version.set(ms: 1)
            let operatorClient = FloatingSeatServerTests.client(port, user: "ops", token: admin)
            let reloaded = try await operatorClient.reload()
            #expect(reloaded.loaded == 1)
            let status = try await operatorClient.status(includeHolders: true)
            #expect(status.licenses.map(\.state) == [.atRisk])
            #expect(status.features.first { $0.feature == "cad" }?.inUse == 3)
            #expect(await client.leases.count == 3)
            let gone = await #expect(throws: LicenseClientError.self) { try await client.checkOut(feature: "extra") }
            #expect(gone?.code == .notFound)
            let full = await #expect(throws: LicenseClientError.self) { try await client.checkOut(feature: "cad") }
            #expect(full?.code == .noSeats)
            let snapshot = try await operatorClient.snapshot()
            #expect(snapshot.sequence == 4, "the start's clock mark and the three grants")
            for c in [client, operatorClient] { await c.close() }
        }
    }
}

extension VerifiedLicense {
    func withFeature(_ name: String) -> VerifiedLicense {
        var copy = self
        copy.license.id = "L-\(name)"
        copy.license.features[0].name = name
        return copy
    }
}
