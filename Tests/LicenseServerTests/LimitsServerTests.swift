import LicenseClient
import LicenseProtocol
import LicenseServer
import LicenseTestSupport
import Testing

@Suite("Server limits")
struct LimitsServerTests {
    static func refusedAtConnect(_ port: Int) async throws -> Licensed_V1_Error.Code? {
        let connection = try await RawConnection.connect(port: port)
        let (messages, closed) = try await connection.readUntilClosed()
        #expect(closed)
        if case .error(let error) = messages.first?.body { return error.code }
        return nil
    }

    @Test(
        "past max_connections or max_connections_per_address a new connection gets RESOURCE_EXHAUSTED; the others are still served",
        arguments: [(3, 1_000), (1_000, 3)]
    )
    func connections(maxConnections: Int, perAddress: Int) async throws {
        try await withTestServer(configure: {
            $0.maxConnections = maxConnections
            $0.maxConnectionsPerAddress = perAddress
        }) { _, port in
            var open: [RawConnection] = []
            for _ in 0..<3 { open.append(try await RawConnection.connect(port: port)) }
            #expect(try await Self.refusedAtConnect(port) == .resourceExhausted)
            for connection in open {
                guard case .hello = try await connection.hello().body else {
                    Issue.record("an admitted connection was not served")
                    return
                }
            }
            // A slot frees up when a connection closes.
            await open.removeFirst().close()
            try await Task.sleep(for: .milliseconds(100))
            let again = try await RawConnection.connect(port: port)
            guard case .hello = try await again.hello().body else {
                Issue.record("the freed slot was not usable")
                return
            }
            for connection in open + [again] { await connection.close() }
        }
    }

    @Test("1,000 connections that never say Hello are closed after the idle time; a well-behaved one is served meanwhile")
    func idleConnections() async throws {
        try await withTestServer(configure: { $0.helloTimeoutMs = 500 }) { _, port in
            var silent: [RawConnection] = []
            for _ in 0..<1_000 { silent.append(try await RawConnection.connect(port: port)) }
            let good = try await RawConnection.connect(port: port)
            guard case .hello = try await good.hello().body else {
                Issue.record("the well-behaved connection was not served")
                return
            }
            var closedWithError = 0
            for connection in silent {
                let (messages, closed) = try await connection.readUntilClosed(timeout: .seconds(20))
                if closed, case .error(let error) = messages.first?.body, error.code == .resourceExhausted { closedWithError += 1 }
            }
            #expect(closedWithError == 1_000)
            await good.close()
        }
    }

    @Test("past max_leases_per_session a check-out gets RESOURCE_EXHAUSTED; other sessions carry on")
    func leasesPerSession() async throws {
        try await withTestServer(configure: { $0.maxLeasesPerSession = 2 }, licenses: [FloatingSeatServerTests.license(count: 10)]) {
            _,
            port in
            let greedy = FloatingSeatServerTests.client(port, user: "greedy")
            _ = try await greedy.checkOut(feature: "cad")
            _ = try await greedy.checkOut(feature: "cad")
            let refused = await #expect(throws: LicenseClientError.self) { try await greedy.checkOut(feature: "cad") }
            #expect(refused?.code == .resourceExhausted)
            let other = FloatingSeatServerTests.client(port, user: "other")
            _ = try await other.checkOut(feature: "cad")
            for client in [greedy, other] { await client.close() }
        }
    }
}
