import LicenseAudit
import LicenseCore
import LicenseCrypto
import LicenseProtocol
import LicenseServer
import LicenseTestSupport
import NIOCore
import Testing

@testable import LicenseClient

@Suite("Floating seats over TCP")
struct FloatingSeatServerTests {
    static let start: Int64 = 1_790_000_000_000

    static func license(_ id: String = "L", feature: String = "cad", count: UInt32, ttlMs: UInt32 = 0) -> VerifiedLicense {
        var license = Licensed_V1_License()
        license.id = id
        license.model = .floating
        license.overage = .hard
        var f = Licensed_V1_Feature()
        f.name = feature
        f.count = count
        license.features = [f]
        license.lease.heartbeatTtlMs = ttlMs
        return VerifiedLicense(license: license, keyID: "k", file: "t.lic", block: 1)
    }

    static func client(_ port: Int, user: String, token: String = "") -> LicenseClient {
        LicenseClient(
            configuration: .init(host: "127.0.0.1", port: port, user: user, clientHost: "h-\(user)", clientName: "test", token: token)
        )
    }

    @Test("two clients share a 2-seat licence, a third gets NO_SEATS; a check-in lets it in")
    func shareAndDeny() async throws {
        try await withTestServer(licenses: [Self.license(count: 2)]) { _, port in
            let a = Self.client(port, user: "a")
            let b = Self.client(port, user: "b")
            let c = Self.client(port, user: "c")
            let leaseA = try await a.checkOut(feature: "cad")
            _ = try await b.checkOut(feature: "cad")
            let denied = await #expect(throws: LicenseClientError.self) { try await c.checkOut(feature: "cad") }
            #expect(denied?.code == .noSeats)
            try await a.checkIn(leaseA)
            let leaseC = try await c.checkOut(feature: "cad")
            #expect(leaseC.fencingToken == 3)
            let status = try await c.status()
            #expect(status.features.map(\.inUse) == [2])
            #expect(status.features.map(\.capacity) == [2])
            for client in [a, b, c] { await client.close() }
        }
    }

    @Test("a background heartbeat answered while a check-in is in flight reports no lease lost")
    func heartbeatDuringCheckIn() async throws {
        try await withTestServer(licenses: [Self.license(count: 2)]) { _, port in
            let client = Self.client(port, user: "a")
            for _ in 0..<50 {
                let lease = try await client.checkOut(feature: "cad")
                // The check-in goes first on the connection, so the heartbeat that lists the
                // lease finds it gone; whichever reply the client handles first, it is no loss.
                async let returned = client.checkIn(lease)
                async let beat: Void = client.heartbeatInBackground()
                _ = try await (returned, beat)
            }
            #expect(await client.leases.isEmpty)
            await client.close()
            var lost: [String] = []
            for await event in client.events {
                if case .leaseLost(let lease, let reason) = event { lost.append("\(lease.idHex): \(reason)") }
            }
            #expect(lost == [])
        }
    }

    @Test("with no server serving, the client says so and how long its leases have left, counting down")
    func noServerReported() async throws {
        let client: LicenseClient = try await withTestServer(configure: { $0.leaseTTLMs = 20_000 }, licenses: [Self.license(count: 1)]) {
            _,
            port in
            var configuration = LicenseClient.Configuration(host: "127.0.0.1", port: port, user: "a", clientHost: "h", clientName: "test")
            configuration.maximumReconnectDelay = .milliseconds(200)
            configuration.requestTimeout = .seconds(1)
            let client = LicenseClient(configuration: configuration)
            #expect(await client.leasesExpireIn == nil)
            _ = try await client.checkOut(feature: "cad")
            let left = try #require(await client.leasesExpireIn)
            #expect(left > .seconds(19) && left <= .seconds(20))
            return client
        }
        // The server has stopped: the client walks its (one-server) list again and again.
        var reports: [Duration] = []
        for await event in client.events {
            if case .noServer(_, let left) = event, let left { reports.append(left) }
            if reports.count == 3 { break }
        }
        #expect(reports.count == 3)
        #expect(reports == reports.sorted(by: >) && reports.first! < .seconds(20) && reports.last! > .seconds(10))
        let now = try #require(await client.leasesExpireIn)
        #expect(now <= reports.last!)
        await client.close()
    }

    /// A holder checks a seat of "cad" out over a raw connection and vanishes, like kill -9: no
    /// check-in, no more heartbeats. False (an issue recorded) when it was not granted one.
    static func holdAndVanish(port: Int, user: String = "ada") async throws -> Bool {
        let holder = try await RawConnection.connect(port: port)
        _ = try await holder.hello(user: user)
        var checkOut = Licensed_V1_ClientMessage()
        checkOut.requestID = 2
        checkOut.checkOut.feature = "cad"
        try await holder.send(checkOut)
        guard case .checkOut = try await holder.readMessage().body else {
            Issue.record("holder \(user) was not granted a seat")
            return false
        }
        await holder.close()
        return true
    }

    @Test("a holder that vanishes gets its seat reclaimed at the TTL and not before")
    func reclaimAfterTTL() async throws {
        let clock = ManualClock(startMs: Self.start)
        try await withTestServer(configure: { $0.leaseTTLMs = 20_000 }, licenses: [Self.license(count: 1)], clock: clock) { server, port in
            guard try await Self.holdAndVanish(port: port) else { return }

            let other = Self.client(port, user: "other")
            clock.advance(byMs: 19_999)
            try await server.reapNow()
            let early = await #expect(throws: LicenseClientError.self) { try await other.checkOut(feature: "cad") }
            #expect(early?.code == .noSeats)
            clock.advance(byMs: 1)
            try await server.reapNow()
            let lease = try await other.checkOut(feature: "cad")
            #expect(lease.feature == "cad")
            await other.close()
        }
    }

    @Test(
        "leases that lapse together are reclaimed in passes of reaper_batch that follow each other by themselves, each once, each audited"
    )
    func reclaimInPasses() async throws {
        let scratch = try TemporaryDirectory()
        let clock = ManualClock(startMs: Self.start)
        try await withTestServer(
            configure: {
                $0.leaseTTLMs = 20_000
                $0.reaperBatch = 2
            },
            licenses: [Self.license(count: 5)],
            clock: clock,
            stateDirectory: scratch.path("state")
        ) { server, port in
            for index in 0..<5 {
                guard try await Self.holdAndVanish(port: port, user: "holder\(index)") else { return }
            }
            let other = Self.client(port, user: "other")
            #expect(try await other.status().features.first?.inUse == 5)
            clock.advance(byMs: 20_000)
            // One pass of the reaper: 2 leases, then passes of 2 and 1 queued on the loop.
            try await server.reapNow()
            var inUse: UInt32 = 5
            for _ in 0..<200 where inUse > 0 {
                inUse = try await other.status().features.first?.inUse ?? 5
            }
            #expect(inUse == 0)
            for _ in 0..<5 { _ = try await other.checkOut(feature: "cad") }
            await other.close()
        }
        let records = try await SecurityServerTests.auditRecords(scratch.path("state") + "/audit", atLeast: 10)
        let reclaimed = records.filter { $0.action == "reclaim" }.map(\.subject)
        #expect(reclaimed.count == 5)
        #expect(Set(reclaimed).count == 5)
    }

    @Test("a client whose connection is cut reconnects, resumes its session and keeps its lease")
    func resumeKeepsLease() async throws {
        try await withTestServer(licenses: [Self.license(count: 1)]) { server, port in
            let client = Self.client(port, user: "ada")
            let lease = try await client.checkOut(feature: "cad")
            let firstSession = await client.session?.sessionID
            await client.dropConnection()
            // The next request reconnects with resume_session_id.
            let beat = try await client.heartbeat()
            #expect(beat.renewed == 1)
            #expect(await client.session?.resumed == true)
            #expect(await client.session?.sessionID == firstSession)
            #expect(await client.leases.map(\.id) == [lease.id])
            let inUse = try await server.withLedger { $0.seatsInUse(of: "cad") }
            #expect(inUse == 1)
            try await client.checkIn(lease)
            #expect(try await server.withLedger { $0.seatsInUse(of: "cad") } == 0)
            await client.close()
        }
    }

    @Test("a check-out retried with its key after a lost reply takes one seat")
    func retriedCheckoutKey() async throws {
        try await withTestServer(licenses: [Self.license(count: 3)]) { server, port in
            let key = SecureRandom.bytes(16)
            var request = Licensed_V1_ClientMessage()
            request.requestID = 2
            request.checkOut.feature = "cad"
            request.checkOut.checkoutKey = .init(key)
            let first = try await RawConnection.connect(port: port)
            _ = try await first.hello()
            try await first.send(request)
            let granted = try await first.readMessage()
            await first.close()  // the client never saw the reply, say
            // A new connection (the session could not be resumed: a new one) retries the same key.
            let second = try await RawConnection.connect(port: port)
            _ = try await second.hello()
            try await second.send(request)
            let retried = try await second.readMessage()
            #expect(retried.checkOut.leaseID == granted.checkOut.leaseID)
            #expect(retried.checkOut.replayed)
            #expect(try await server.withLedger { $0.seatsInUse(of: "cad") } == 1)
            await second.close()
        }
    }

    @Test("only the owner or an operator checks a lease in; the holder is told of a revoke")
    func ownership() async throws {
        let adminToken = "s3cret-admin"
        try await withTestServer(
            configure: { $0.tokens = [.init(hash: SHA256.hash(Array(adminToken.utf8)), role: .admin)] },
            licenses: [Self.license(count: 1)]
        ) { _, port in
            let owner = Self.client(port, user: "owner")
            let lease = try await owner.checkOut(feature: "cad")
            let stranger = Self.client(port, user: "stranger")
            let refused = await #expect(throws: LicenseClientError.self) { try await stranger.checkIn(leaseID: lease.id) }
            #expect(refused?.code == .permissionDenied)
            let noHolders = await #expect(throws: LicenseClientError.self) { try await stranger.status(includeHolders: true) }
            #expect(noHolders?.code == .permissionDenied)

            let admin = Self.client(port, user: "root", token: adminToken)
            let status = try await admin.status(includeHolders: true)
            #expect(status.features.first?.holders.map(\.user) == ["owner"])
            #expect(status.features.first?.holders.first?.leaseID == .init(lease.id))
            try await admin.checkIn(leaseID: lease.id)
            // The owner's library hears of it and drops the lease.
            var lost: LicenseClient.Event?
            for await event in owner.events {
                lost = event
                break
            }
            #expect(lost == .leaseLost(lease, reason: "an administrator checked in your lease of 'cad'"))
            let badToken = Self.client(port, user: "x", token: "wrong")
            let rejected = await #expect(throws: LicenseClientError.self) { try await badToken.status() }
            #expect(rejected?.code == .unauthenticated)
            for client in [owner, stranger, admin, badToken] { await client.close() }
        }
    }
}
