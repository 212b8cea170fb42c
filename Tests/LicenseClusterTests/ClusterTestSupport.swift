import Etcd
import Foundation
import LicenseCluster
import LicenseCore
import LicenseProtocol
import LicenseStore
import LicenseTestSupport

/// A client of `cluster` with its connections running; `stop()` closes it.
final class RunningClient: Sendable {
    let etcd: EtcdClient
    let connections: Task<Void, any Error>

    init(_ cluster: EtcdTestCluster, callTimeout: Duration = .seconds(10)) throws {
        let endpoints = try cluster.endpoints.map { try EtcdConfiguration.Endpoint(parsing: $0) }
        let etcd = try EtcdClient(EtcdConfiguration(endpoints: endpoints, callTimeout: callTimeout))
        self.etcd = etcd
        self.connections = Task { try await etcd.run() }
    }

    /// Waits until etcd answers (the first answer can take a while on two busy cores).
    func ready() async {
        let deadline = ContinuousClock.now + .seconds(60)
        while (try? await etcd.status()) == nil && ContinuousClock.now < deadline {}
    }

    func stop() {
        etcd.close()
        connections.cancel()
    }
}

/// Role changes with the instant each was seen.
final class RoleLog: @unchecked Sendable {
    private let lock = NSLock()
    private var entries: [(ClusterRole, ContinuousClock.Instant)] = []

    func record(_ role: ClusterRole) { lock.withLock { entries.append((role, .now)) } }

    var roles: [ClusterRole] { lock.withLock { entries.map(\.0) } }

    /// When the role first became active.
    var becameActive: ContinuousClock.Instant? {
        lock.withLock {
            entries.first { if case .active = $0.0 { true } else { false } }?.1
        }
    }
}

/// Waits until `condition` holds, up to `timeout`; returns whether it did.
func eventually(_ timeout: Duration = .seconds(10), _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return try await condition()
}

func member(_ id: String) -> Licensed_V1_ClusterMember {
    var member = Licensed_V1_ClusterMember()
    member.nodeID = id
    member.clientAddress = "127.0.0.1:\(27000 + id.count)"
    return member
}

/// The `n`th test change: a grant of one seat.
func grant(_ n: Int) -> LedgerChange {
    .granted(
        Lease(
            id: ID128(high: 7, low: UInt64(n)),
            sessionID: ID128(high: 8, low: UInt64(n % 5)),
            feature: "cad",
            licenseID: "L",
            count: 1,
            identity: ClientIdentity(
                user: "user\(n)",
                host: "ws\(n % 3)",
                clientName: "acme",
                clientVersion: "1",
                groups: [],
                address: "10.0.0.1"
            ),
            grantedAtMs: Int64(n),
            expiresAtMs: Int64(n) + 60_000,
            ttlMs: 60_000,
            overage: false,
            fencingToken: UInt64(n),
            checkoutKey: []
        )
    )
}

/// What a log reported: the highest durable sequence number, and a fatal message.
final class Reported: @unchecked Sendable {
    private let lock = NSLock()
    private var durableUpTo: UInt64 = 0
    private var fatalMessage: String?

    var signals: CommitLogSignals {
        CommitLogSignals(
            durable: { sequence in self.lock.withLock { self.durableUpTo = max(self.durableUpTo, sequence) } },
            fatal: { message in self.lock.withLock { self.fatalMessage = message } }
        )
    }

    var durable: UInt64 { lock.withLock { durableUpTo } }
    var fatal: String? { lock.withLock { fatalMessage } }
}

/// A local store in `directory/name`, opened and recovered.
func openLocal(_ directory: TemporaryDirectory, _ name: String) throws -> (LedgerStore, RecoveredLedger) {
    let (store, recovery) = try LedgerStore.open(directory: directory.path(name), sync: .always)
    return (store, recovery.replay(sync: .always))
}

/// Batches delivered to a follower, in order.
final class Delivered: @unchecked Sendable {
    private let lock = NSLock()
    private var batches: [ReplicatedBatch] = []
    func append(_ batch: ReplicatedBatch) { lock.withLock { batches.append(batch) } }
    var all: [ReplicatedBatch] { lock.withLock { batches } }
    var changes: [LedgerChange] { all.flatMap(\.changes) }
}
