import Foundation
import LicenseClient
import LicenseCore
import LicenseProtocol
import LicenseServer
import LicenseTestSupport
import Testing

/// A session resumed on a second connection moves there once: the first connection is told
/// SESSION_SUPERSEDED and does not take the session back (SERVER_SHUTTING_DOWN, which it used to be
/// told, means "reconnect and resume": two connections of one session kept evicting each other).
@Suite("Session resume across connections")
struct SessionResumeServerTests {
    typealias Floating = FloatingSeatServerTests

    @Test("two connections resuming one session do not evict each other more than once")
    func supersededOnce() async throws {
        try await withTestServer(licenses: [Floating.license(count: 1)]) { server, port in
            let first = Floating.client(port, user: "ada")
            let lease = try await first.checkOut(feature: "cad")
            let session = try #require(await first.session?.sessionID)

            let second = try await RawConnection.connect(port: port)
            let hello = try await second.hello(resume: [UInt8](session))
            #expect(hello.hello.resumed)
            // The first client is told, reports its lease gone to the other connection, and stays away.
            let events = first.events
            let lost = try await withThrowingTaskGroup(of: [UInt8]?.self) { group in
                group.addTask {
                    for await event in events { if case .leaseLost(let gone, _) = event { return gone.id } }
                    return nil
                }
                group.addTask {
                    try await Task.sleep(for: .seconds(5))
                    return nil
                }
                defer { group.cancelAll() }
                return try await group.next() ?? nil
            }
            #expect(lost == lease.id)
            try await Task.sleep(for: .milliseconds(800))
            #expect(await first.session == nil)

            // The second connection still holds the session and its lease: never evicted, no event.
            var beat = Licensed_V1_ClientMessage()
            beat.requestID = 2
            beat.heartbeat = Licensed_V1_HeartbeatRequest()
            try await second.send(beat)
            let reply = try await second.readMessage(timeout: .seconds(5))
            #expect(reply.requestID == 2)
            #expect(reply.heartbeat.renewed == 1)
            #expect(try await server.withLedger { $0.seatsInUse(of: "cad") } == 1)
            await first.close()
            await second.close()
        }
    }
}
