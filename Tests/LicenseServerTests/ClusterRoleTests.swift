import Foundation
import LicenseCore
import LicenseCrypto
import LicenseProtocol
import LicenseStore
import NIOCore
import NIOEmbedded
import Synchronization
import Testing

@testable import LicenseServer

/// What a node of a cluster serves in each role, on an embedded channel: the election and the
/// replicated log are stood in for by the closures the host is given (their real behaviour is
/// tested against etcd in LicenseClusterTests and by the drill).
@Suite("Cluster roles on the serving loop")
struct ClusterRoleTests {
    final class Controls: Sendable {
        let mayAct = Mutex(true)
        let unavailable = Mutex<String?>(nil)
        let copied = Mutex<[[LedgerChange]]>([])
    }

    /// A fixture whose host is a member of a cluster, in `role`.
    static func member(_ role: ClusterMembership.Role, tokens: [TokenAuthority.Entry] = []) throws -> (
        SessionHandlerTests.Fixture, Controls
    ) {
        let fixture = try SessionHandlerTests.Fixture(tokens: tokens)
        let controls = Controls()
        var membership = ClusterMembership(
            nodeID: "n2",
            mayAct: { controls.mayAct.withLock { $0 } },
            unavailable: { controls.unavailable.withLock { $0 } },
            facts: { (0, 0, 0) },
            status: { answer in answer(.failure(LicenseError(.unavailable, "no etcd here"))) }
        )
        membership.role = role
        fixture.host.value.cluster = membership
        return (fixture, controls)
    }

    static let adminToken = "admin-token"
    static var adminEntry: TokenAuthority.Entry { TokenAuthority.Entry(hash: SHA256.hash(Array(adminToken.utf8)), role: .admin) }

    @Test("a standby answers a client's Hello with NOT_ACTIVE and the active server's address, and closes")
    func standbyRedirects() throws {
        let (fixture, _) = try Self.member(.standby(activeServer: "10.0.0.1:27070"))
        try fixture.send(1, SessionHandlerTests.Fixture.hello())
        let reply = try #require(try fixture.replies().first)
        #expect(reply.error.code == .notActive)
        #expect(reply.error.activeServer == "10.0.0.1:27070")
        #expect(reply.error.message.contains("10.0.0.1:27070"))
        #expect(!fixture.channel.isActive)

        let (alone, _) = try Self.member(.standby(activeServer: ""))
        try alone.send(1, SessionHandlerTests.Fixture.hello())
        let none = try #require(try alone.replies().first)
        #expect(none.error.code == .notActive && none.error.activeServer.isEmpty)
        #expect(none.error.message.contains("no server of its cluster is active"))
    }

    @Test("a standby serves an operator's reads from its copy and sends changes to the active")
    func standbyServesReads() throws {
        let (fixture, _) = try Self.member(.standby(activeServer: "10.0.0.1:27070"), tokens: [Self.adminEntry])
        let appended = fixture.log.appendedChanges.count
        try fixture.send(1, SessionHandlerTests.Fixture.hello(token: Self.adminToken))
        #expect(try fixture.replies().first?.hello.role == "admin")
        try fixture.send(2, .status(Licensed_V1_StatusRequest()))
        #expect(try fixture.replies().first?.status.features.first?.feature == "cad")
        try fixture.send(3, SessionHandlerTests.Fixture.checkOut())
        let refused = try #require(try fixture.replies().first)
        #expect(refused.error.code == .notActive && refused.error.activeServer == "10.0.0.1:27070")
        #expect(fixture.channel.isActive)
        #expect(fixture.log.appendedChanges.count == appended)
    }

    @Test("an active node that cannot confirm its lease, or reach etcd, acknowledges nothing and says why")
    func activeFenced() throws {
        let (fixture, controls) = try Self.member(.active(epoch: 7))
        try fixture.send(1, SessionHandlerTests.Fixture.hello())
        #expect(try fixture.replies().first?.hello.sessionID.count == 16)
        controls.mayAct.withLock { $0 = false }
        try fixture.send(2, SessionHandlerTests.Fixture.checkOut())
        try fixture.send(3, .heartbeat(Licensed_V1_HeartbeatRequest()))
        let fenced = try fixture.replies()
        #expect(fenced.map(\.error.code) == [.unavailable, .unavailable])
        #expect(fenced.first?.error.message.contains("cannot confirm with etcd") == true)
        #expect(fixture.host.value.isReady == false)

        controls.mayAct.withLock { $0 = true }
        controls.unavailable.withLock { $0 = "the cluster's etcd cannot be reached (test)" }
        try fixture.send(4, SessionHandlerTests.Fixture.checkOut())
        try fixture.send(5, .status(Licensed_V1_StatusRequest()))
        let unreachable = try fixture.replies()
        #expect(unreachable.first?.error.code == .unavailable)
        #expect(unreachable.first?.error.message.contains("etcd cannot be reached") == true)
        #expect(unreachable.last?.status.features.isEmpty == false)

        controls.unavailable.withLock { $0 = nil }
        fixture.log.makeDurable()
        try fixture.send(6, SessionHandlerTests.Fixture.checkOut())
        fixture.log.makeDurable()
        fixture.channel.embeddedEventLoop.run()
        #expect(try fixture.replies().first?.checkOut.leaseID.count == 16)
    }

    @Test("a standby applies the active node's batches to its ledger and copies them to its log")
    func standbyApplies() throws {
        let (fixture, controls) = try Self.member(.standby(activeServer: "10.0.0.1:27070"))
        let lease = Lease(
            id: ID128(high: 1, low: 1),
            sessionID: ID128(high: 2, low: 2),
            feature: "cad",
            licenseID: FloatingSeatServerTests.license(count: 1).license.id,
            count: 1,
            identity: ClientIdentity(user: "ada", host: "ws1", clientName: "t", clientVersion: "1", groups: [], address: "10.0.0.9"),
            grantedAtMs: 1_790_000_000_000,
            expiresAtMs: 1_790_000_060_000,
            ttlMs: 60_000,
            overage: false,
            fencingToken: 1,
            checkoutKey: []
        )
        let changes: [LedgerChange] = [.granted(lease)]
        try fixture.host.value.applyReplicated(changes) { controls.copied.withLock { $0.append(changes) } }
        #expect(fixture.host.value.ledger.leases.count == 1)
        #expect(controls.copied.withLock { $0 } == [changes])
        // Promoted: every lease gets a fresh TTL from now, and the node serves.
        try fixture.host.value.promote(epoch: 9) {}
        #expect(fixture.host.value.cluster?.isActive == true)
        #expect(throws: LicenseError.self) { try fixture.host.value.applyReplicated(changes) {} }
    }
}
