public import LicenseCore
import NIOCore

/// What makes a server a node of a cluster. The daemon gives one when its configuration names etcd
/// endpoints (`LicenseClusterNode.ClusterNode`); the server knows the cluster only through this,
/// so that a single node, its tests and its fuzzers carry no etcd client.
///
/// The server calls, in this order: `source` to open its commit log; `membership()` on the serving
/// loop before it serves a request; `run(_:)` once it listens, cancelled after the server has
/// stopped serving and closed the log.
public protocol ServerCluster: Sendable {
    /// This node's commit log.
    var source: CommitLogSource { get }
    /// The serving loop's view of the node (it starts as a standby).
    func membership() -> ClusterMembership
    /// Moves the node between roles, driving `ledger`, until the task is cancelled.
    func run(_ ledger: ClusterLedger) async
    /// The answer to the operator listener's `GET /cluster/snapshot` with this `Authorization`.
    func snapshotFile(authorization: String?) -> (status: Int, contentType: String, body: [UInt8])
}

/// The serving loop's ledger as a cluster drives it: each call runs on the loop.
public struct ClusterLedger: Sendable {
    let host: NIOLoopBoundBox<LedgerHost>
    let loop: any EventLoop

    /// This node stays a standby; clients go to `address` (empty: no node is active now).
    public func followActive(_ address: String) {
        self.loop.execute { self.host.value.followActive(address) }
    }

    /// Applies `changes` that the active node committed, then `copy` records them in this
    /// node's local log. Throws when this node is the active one, or `copy` fails.
    public func apply(_ changes: [LedgerChange], copy: @escaping @Sendable () throws -> Void) async throws {
        try await self.loop.submit { try self.host.value.applyReplicated(changes, copy: copy) }.get()
    }

    /// Becomes the active node in `epoch`: `activate` makes the log writable, then every lease
    /// gets a fresh TTL.
    public func promote(epoch: Int64, activate: @escaping @Sendable () throws -> Void) async throws {
        try await self.loop.submit { try self.host.value.promote(epoch: epoch, activate: activate) }.get()
    }
}
