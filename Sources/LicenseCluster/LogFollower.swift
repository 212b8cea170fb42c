package import Etcd
import Foundation
import Synchronization

/// Reads the replicated log from etcd for a node that copies it: everything after what the node
/// has (`catchUp`), then every new batch as the active node commits it (`follow`), in order.
package struct LogFollower: Sendable {
    let etcd: EtcdClient
    let keys: ClusterKeys
    /// Batches read per request while catching up (each at most ~1 MiB).
    let pageSize: Int64

    /// A reader of the log under `keys`.
    package init(etcd: EtcdClient, keys: ClusterKeys, pageSize: Int64 = 16) {
        self.etcd = etcd
        self.keys = keys
        self.pageSize = pageSize
    }

    /// Delivers, in order, every batch after change `committed` that the log holds now, and
    /// returns the head read (nil: the log is empty) with the revision it was read at. Throws
    /// `ClusterError` when the log no longer holds the batch after `committed` (compacted past
    /// it: the node needs a snapshot from a peer).
    package func catchUp(
        after committed: UInt64,
        deliver: @Sendable (ReplicatedBatch) async throws -> Void
    ) async throws -> (head: LogHead?, revision: Int64) {
        let headRead = try await etcd.range(EtcdKeyRange(key: keys.head))
        let revision = headRead.header.revision
        let head = headRead.kvs.first.flatMap { LogHead(stored: $0.value) }
        guard let head, head.last > committed || head.position.first > committed else { return (head, revision) }
        var expected = committed + 1
        var from = keys.batches(from: expected)
        let end = EtcdKeyRange(prefix: keys.log).end
        while true {
            let page = try await etcd.range(EtcdKeyRange(from: from, to: [UInt8](end)), revision: revision, limit: pageSize)
            for kv in page.kvs {
                let batch = try ReplicatedBatch(decoding: [UInt8](kv.value))
                guard batch.firstSequence == expected else {
                    throw ClusterError(
                        "the cluster's log no longer holds the changes after \(committed) (its oldest batch starts at \(batch.firstSequence)): this node needs a snapshot from a peer"
                    )
                }
                try await deliver(batch)
                expected = batch.lastSequence + 1
            }
            guard page.more, let last = page.kvs.last else { break }
            from = [UInt8](last.key) + [0]
        }
        guard expected > head.last else {
            throw ClusterError(
                "the cluster's log no longer holds the changes after \(committed) (the head is \(head.last)): this node needs a snapshot from a peer"
            )
        }
        return (head, revision)
    }

    /// Catches up, then delivers every batch committed after, in order, until the task is
    /// cancelled or `deliver` throws. A broken watch, or one whose revision was compacted, is
    /// replaced by catching up again. `committed()` gives the node's position at each restart.
    package func follow(
        committed: @Sendable () -> UInt64,
        deliver: @escaping @Sendable (ReplicatedBatch) async throws -> Void
    ) async throws {
        while !Task.isCancelled {
            do {
                let (_, revision) = try await catchUp(after: committed(), deliver: deliver)
                let keys = self.keys
                let expected = Expected(committed() + 1)
                try await etcd.watch(EtcdKeyRange(prefix: keys.log), startRevision: revision + 1) { response in
                    for event in response.events where event.type == .put {
                        let batch = try ReplicatedBatch(decoding: [UInt8](event.kv.value))
                        guard batch.firstSequence == expected.value else {
                            // Not the next one (a batch of audit records only already applied,
                            // or a gap): catch up from the log itself.
                            if batch.firstSequence < expected.value, batch.changes.isEmpty { continue }
                            return false
                        }
                        try await deliver(batch)
                        expected.set(batch.lastSequence + 1)
                    }
                    return true
                }
            } catch let error as EtcdError {
                if error == .cancelled || Task.isCancelled { return }
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
    }
}

/// The sequence number of the next change a watch expects.
final class Expected: Sendable {
    private let next: Mutex<UInt64>

    init(_ value: UInt64) { next = Mutex(value) }

    var value: UInt64 { next.withLock { $0 } }

    func set(_ value: UInt64) { next.withLock { $0 = value } }
}
