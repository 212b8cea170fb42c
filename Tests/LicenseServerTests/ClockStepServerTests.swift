import LicenseClient
import LicenseCore
import LicenseProtocol
import LicenseServer
import LicenseTestSupport
import NIOCore
import Testing

/// Lease deadlines run on the monotonic clock: a step of the wall clock neither reclaims a live
/// holder's seat (forward) nor pins an abandoned one (back).
@Suite("Wall-clock steps under a running server")
struct ClockStepServerTests {
    typealias Floating = FloatingSeatServerTests

    /// Checks a seat out on a raw connection and goes away without a check-in or a heartbeat.
    static func abandon(port: Int, feature: String) async throws {
        let holder = try await RawConnection.connect(port: port)
        _ = try await holder.hello(user: "gone")
        var checkOut = Licensed_V1_ClientMessage()
        checkOut.requestID = 2
        checkOut.checkOut.feature = feature
        try await holder.send(checkOut)
        guard case .checkOut = try await holder.readMessage().body else {
            Issue.record("the abandoned holder was not granted a seat")
            return
        }
        await holder.close()
    }

    static func inUse(_ server: LicenseServer, _ feature: String) async throws -> UInt32 {
        try await server.withLedger { $0.seatsInUse(of: feature) }
    }

    static func steps(_ server: LicenseServer, _ direction: String) async throws -> String? {
        let metrics = String(decoding: try await server.renderMetrics().get(), as: UTF8.self)
        return metrics.split(separator: "\n").first { $0.hasPrefix("licensed_clock_steps_total{direction=\"\(direction)\"}") }
            .map { String($0.split(separator: " ").last ?? "") }
    }

    @Test(
        "+2 h: a heartbeating holder and a holder within its TTL keep their seats; −2 days: the abandoned seat goes one TTL after its grant"
    )
    func stepsChangeNoLease() async throws {
        let clock = ManualClock(startMs: Floating.start)
        let licenses = [Floating.license("A", feature: "cad", count: 1), Floating.license("B", feature: "cam", count: 1)]
        try await withTestServer(configure: { $0.leaseTTLMs = 20_000 }, licenses: licenses, clock: clock) { server, port in
            #expect(try await Self.steps(server, "forward") == "0")
            let live = Floating.client(port, user: "live")
            _ = try await live.checkOut(feature: "cad")
            try await Self.abandon(port: port, feature: "cam")

            clock.advance(byMs: 5_000)
            _ = try await live.heartbeat()
            clock.step(byMs: 2 * 3_600_000)
            try await server.reapNow()
            #expect(try await Self.inUse(server, "cad") == 1, "a step forward reclaimed a heartbeating holder's seat")
            #expect(try await Self.inUse(server, "cam") == 1, "a step forward reclaimed a seat within its TTL")
            #expect(try await Self.steps(server, "forward") == "1")

            clock.advance(byMs: 5_000)
            _ = try await live.heartbeat()
            clock.step(byMs: -2 * 86_400_000)
            try await server.reapNow()
            #expect(try await Self.steps(server, "backward") == "1")
            // 10 s after the grant: the abandoned seat is held for 10 s more, not for two days.
            clock.advance(byMs: 9_999)
            _ = try await live.heartbeat()
            try await server.reapNow()
            #expect(try await Self.inUse(server, "cam") == 1)
            clock.advance(byMs: 1)
            try await server.reapNow()
            #expect(try await Self.inUse(server, "cam") == 0, "a step back pinned an abandoned seat")
            #expect(try await Self.inUse(server, "cad") == 1)
            // One step, one count: the readings after a step are not steps again.
            #expect(try await Self.steps(server, "forward") == "1")
            #expect(try await Self.steps(server, "backward") == "1")
            await live.close()
        }
    }
}
