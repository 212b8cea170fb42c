import Etcd
import Foundation
import LicenseCluster
import LicenseProtocol
import LicenseTestSupport

/// A client of `cluster` with its connections running; `stop()` closes it.
final class RunningClient: Sendable {
    let etcd: EtcdClient
    let connections: Task<Void, any Error>

    init(_ cluster: EtcdTestCluster, callTimeout: Duration = .seconds(2)) throws {
        let endpoints = try cluster.endpoints.map { try EtcdConfiguration.Endpoint(parsing: $0) }
        let etcd = try EtcdClient(EtcdConfiguration(endpoints: endpoints, callTimeout: callTimeout))
        self.etcd = etcd
        self.connections = Task { try await etcd.run() }
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
