package import Etcd
import Foundation
package import LicenseProtocol
import SwiftProtobuf

/// Each node's progress in etcd, and the compaction of the log it allows: batches are deleted
/// once every live node has a local snapshot past them, so that etcd holds only the tail the
/// nodes still need (its backend has a quota: 2 GiB by default). A node that is alive but far
/// behind does not pin the log beyond `maxRetainedChanges`: it will need a peer's snapshot.
package struct LogCompaction: Sendable {
    let etcd: EtcdClient
    let keys: ClusterKeys
    /// The most changes kept for a lagging node.
    package let maxRetainedChanges: UInt64

    /// Compaction of the log under `keys`.
    package init(etcd: EtcdClient, keys: ClusterKeys, maxRetainedChanges: UInt64 = 1_000_000) {
        self.etcd = etcd
        self.keys = keys
        self.maxRetainedChanges = maxRetainedChanges
    }

    /// Writes `progress` as this node's, attached to its etcd `lease` (it goes when the node does).
    package func report(_ progress: Licensed_V1_NodeProgress, lease: Int64) async throws(EtcdError) {
        // Serializing a message of known fields cannot fail.
        let value: [UInt8] = try! progress.serializedBytes()
        try await etcd.put(keys.progress(progress.nodeID), value, lease: lease)
    }

    /// Every live node's progress.
    package func progress() async throws(EtcdError) -> [Licensed_V1_NodeProgress] {
        try await etcd.range(EtcdKeyRange(prefix: keys.progress)).kvs.compactMap {
            try? Licensed_V1_NodeProgress(serializedBytes: [UInt8]($0.value))
        }
    }

    /// The sequence number the log may be compacted up to: the oldest snapshot among the live
    /// nodes that are within `maxRetainedChanges` of `head` (a snapshot ends a whole batch, so
    /// this is a batch boundary). Nil: nothing to compact.
    package func point(head: UInt64, nodes: [Licensed_V1_NodeProgress]) -> UInt64? {
        let floor = head > maxRetainedChanges ? head - maxRetainedChanges : 0
        let snapshots = nodes.map(\.snapshotSequence).filter { $0 >= floor }
        guard let point = snapshots.min(), point > 0 else { return nil }
        return point
    }

    /// Deletes the batches that end at or before `point`, then etcd's history before that
    /// revision. Returns how many batches were deleted.
    @discardableResult
    package func compact(upTo point: UInt64) async throws(EtcdError) -> Int64 {
        let range = EtcdKeyRange(from: keys.batches(from: 0), to: keys.batches(from: point + 1))
        let deleted = try await etcd.delete(range)
        if deleted > 0 {
            let revision = try await etcd.status().header.revision
            do {
                try await etcd.compact(revision: revision)
            } catch .compacted {
                // Already compacted past it (another node, or etcd's own auto-compaction).
            }
        }
        return deleted
    }
}
