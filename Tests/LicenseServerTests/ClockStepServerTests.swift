import Foundation
import LicenseAudit
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

/// The durable high-water mark of the wall clock under a running server: a clock set back beyond
/// the tolerance stops time-limited licences, says so everywhere an operator looks, and clears
/// by itself.
@Suite("Clock setback under a running server")
struct ClockSetbackServerTests {
    typealias Floating = FloatingSeatServerTests
    static let day: Int64 = 86_400_000

    static func metric(_ server: LicenseServer, _ name: String) async throws -> String? {
        let metrics = String(decoding: try await server.renderMetrics().get(), as: UTF8.self)
        return metrics.split(separator: "\n").first { $0.hasPrefix(name + " ") }.map { String($0.split(separator: " ").last ?? "") }
    }

    @Test(
        "3 days back: the dated licence refuses with CLOCK_SETBACK, the perpetual one serves; status, /readyz, metrics and the trail say so; set right, it clears"
    )
    func setbackEpisode() async throws {
        // The server's clock starts at the real time, so that the clients' Hello times agree with it.
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let clock = ManualClock(startMs: now)
        var dated = Floating.license("dated", feature: "dated.tool", count: 2)
        dated.license.notAfterMs = now + 365 * Self.day
        let licenses = [Floating.license("perpetual", feature: "cad", count: 2), dated]
        let scratch = try TemporaryDirectory()
        try await withTestServer(licenses: licenses, clock: clock, stateDirectory: scratch.path("state")) { server, port in
            #expect(try await Self.metric(server, "licensed_clock_setback_episodes_total") == "0")
            let client = Floating.client(port, user: "ada")
            clock.step(byMs: -3 * Self.day)
            try await server.reapNow()
            let refused = await #expect(throws: LicenseClientError.self) { try await client.checkOut(feature: "dated.tool") }
            #expect(refused?.code == .clockSetback)
            #expect(refused?.message.contains("3 days behind") == true, "\(refused?.message ?? "")")
            let seat = try await client.checkOut(feature: "cad")
            let status = try await client.status()
            #expect(status.clockSetbackMs >= 3 * Self.day && status.clockSetbackMs < 3 * Self.day + 60_000)
            #expect(status.licenses.first { $0.licenseID == "dated" }?.state == .clockSetback)
            let (ready, reason) = try await server.readiness().get()
            #expect(ready, "a perpetual licence still serves")
            #expect(reason.contains("clock setback") && reason.contains("3 days"), "\(reason)")
            #expect(try await Self.metric(server, "licensed_clock_setback_episodes_total") == "1")
            // Still back a minute later: the same episode, counted once.
            clock.advance(byMs: 60_000)
            try await server.reapNow()
            #expect(try await Self.metric(server, "licensed_clock_setback_episodes_total") == "1")

            clock.step(byMs: 3 * Self.day)
            try await server.reapNow()
            _ = try await client.checkOut(feature: "dated.tool")
            #expect(try await client.status().clockSetbackMs == 0)
            #expect(try await server.readiness().get().1.hasPrefix("ready:"))
            try await client.checkIn(seat)
            await client.close()

            // A Hello from a clock two days off is counted; one from a clock that agrees is not.
            // (The client above said Hello while the server's clock was 3 days back: one already.)
            #expect(try await Self.metric(server, "licensed_client_clock_skew_total") == "1")
            let skewed = try await RawConnection.connect(port: port)
            _ = try await skewed.hello(user: "skewed", clientTimeMs: clock.nowMs() - 2 * Self.day)
            let agreeing = try await RawConnection.connect(port: port)
            _ = try await agreeing.hello(user: "agreeing", clientTimeMs: clock.nowMs() + 1_000)
            #expect(try await Self.metric(server, "licensed_client_clock_skew_total") == "2")
            await skewed.close()
            await agreeing.close()
        }
        let records = try await SecurityServerTests.auditRecords(scratch.path("state") + "/audit", atLeast: 1)
        let setback = records.first { $0.action == "clock_setback" }
        #expect(setback?.detailsJSON.contains("\"licenses\":\"dated\"") == true, "\(setback?.detailsJSON ?? "no clock_setback record")")
        #expect(records.contains { $0.action == "clock_setback_cleared" })
    }

    @Test("the state holds the mark: restarted 60 days back, a licence that expired 30 days ago stays refused")
    func markSurvivesRestart() async throws {
        let scratch = try TemporaryDirectory()
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        var expired = Floating.license("old", feature: "old.tool", count: 2)
        expired.license.notAfterMs = now - 30 * Self.day
        try await withTestServer(
            licenses: [Floating.license("perpetual", count: 1)],
            clock: ManualClock(startMs: now),
            stateDirectory: scratch.path("state")
        ) { _, _ in }
        let back = ManualClock(startMs: now - 60 * Self.day)
        try await withTestServer(licenses: [expired], clock: back, stateDirectory: scratch.path("state")) { server, port in
            let client = Floating.client(port, user: "ada")
            let refused = await #expect(throws: LicenseClientError.self) { try await client.checkOut(feature: "old.tool") }
            #expect(refused?.code == .clockSetback)
            #expect(refused?.message.contains("60 days behind") == true, "\(refused?.message ?? "")")
            let (ready, reason) = try await server.readiness().get()
            #expect(!ready, "no licence can grant: not ready")
            #expect(reason.hasPrefix("clock setback"), "\(reason)")
            await client.close()
        }
    }
}
