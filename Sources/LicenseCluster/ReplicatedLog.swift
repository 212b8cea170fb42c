import DequeModule
import Dispatch
package import Etcd
import Foundation
package import LicenseAudit
package import LicenseCore
package import LicenseFiles
package import LicenseStore
import SwiftProtobuf
import Synchronization

/// The commit log of a cluster node: the log in etcd is the record, and this node's local
/// write-ahead log (`local`) holds a copy of every batch etcd committed, in order — never more —
/// with its snapshots, so that a restart replays locally and reads from etcd only what it missed.
///
/// On the active node, `append` queues changes and a writer sends each group-commit batch to etcd
/// as one transaction guarded by the node's epoch (its member key's create revision) and by the
/// log's head (`head` still where this node left it). Only when etcd answers is the batch copied
/// to the local log and reported durable. A transaction whose guard fails means another node has
/// taken over: the log reports `fatal` and nothing queued is ever reported durable. A transaction
/// whose outcome is unknown (etcd did not answer in time) is resolved by reading the head and the
/// member key, never by guessing; while etcd cannot be reached the writer keeps trying and
/// `unavailable` says why nothing is acknowledged.
///
/// On a standby, `applyCommitted` copies the batches the active node committed.
package final class ReplicatedLog: CommitLog {
    /// Bounds of one batch, within etcd's request limit (1.5 MiB by default).
    package struct Limits: Sendable {
        /// Most encoded bytes of changes and audit records in one batch.
        package var maxBatchBytes: Int
        /// A writer that has not reached etcd for this long reports the log unavailable.
        package var unavailableAfter: Duration

        /// Limits.
        package init(maxBatchBytes: Int = 1 << 20, unavailableAfter: Duration = .seconds(1)) {
            self.maxBatchBytes = maxBatchBytes
            self.unavailableAfter = unavailableAfter
        }
    }

    enum Item {
        case change(LedgerChange)
        case audit(AuditEvent)
    }

    struct PendingSnapshot {
        var content: SnapshotFile.Content
        var sequence: UInt64
        var takenAtMs: Int64
        var done: @Sendable (Result<SnapshotResult, StoreError>) -> Void
    }

    struct Queue {
        /// Last sequence number handed out (active) or applied (standby).
        var assigned: UInt64
        /// Last sequence number in the local log (committed in etcd).
        var committed: UInt64
        /// The log's head after the last batch committed or applied (nil: none seen yet).
        var head: LogHead?
        /// `part` of the next batch at `committed + 1`.
        var nextPart: UInt64 = 0
        /// Appended, not yet taken by the writer.
        var pending = Deque<Item>()
        /// The epoch this node writes in; nil while it is not active.
        var epoch: Int64?
        /// A snapshot waiting until the local log reaches its sequence number.
        var snapshot: PendingSnapshot?
        var signals: CommitLogSignals?
        var failed = false
        var stopping = false
        /// Last sequence number of the newest local snapshot.
        var snapshotSequence: UInt64 = 0
        /// Since when the writer has not reached etcd (nil: it has).
        var unreachableSince: ContinuousClock.Instant?
        var lastError = ""
    }

    let etcd: EtcdClient
    let keys: ClusterKeys
    let nodeID: String
    /// This node's copy of the log.
    package let local: LedgerStore
    let limits: Limits
    let queue: Mutex<Queue>
    let wake: AsyncStream<Void>.Continuation
    let wakes: AsyncStream<Void>
    let writer = Mutex<Task<Void, Never>?>(nil)

    /// A log over `local` (opened, recovered and not started), whose last change is the last
    /// one etcd committed that this node has.
    package init(
        etcd: EtcdClient,
        keys: ClusterKeys,
        nodeID: String,
        local: LedgerStore,
        snapshotSequence: UInt64 = 0,
        limits: Limits = Limits()
    ) {
        self.etcd = etcd
        self.keys = keys
        self.nodeID = nodeID
        self.local = local
        self.limits = limits
        let last = local.lastAssigned
        var queue = Queue(assigned: last, committed: last)
        queue.snapshotSequence = snapshotSequence
        self.queue = Mutex(queue)
        (self.wakes, self.wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    // MARK: - Roles

    /// Makes this node the writer of the log in `epoch`, from `head` (the head in etcd, nil when
    /// the log is empty). Every batch up to it must have been applied (`applyCommitted`) first.
    package func activate(epoch: Int64, head: LogHead?) throws(ClusterError) {
        try queue.withLock { queue throws(ClusterError) in
            guard (head?.last ?? 0) == queue.committed else {
                throw ClusterError(
                    "cannot write the log from \(head.map { "\($0.last)" } ?? "its start"): this node has \(queue.committed)"
                )
            }
            queue.head = head
            queue.nextPart = head.map { $0.position.first == $0.last + 1 ? $0.position.part + 1 : 0 } ?? 0
            queue.epoch = epoch
        }
        wake.yield()
    }

    /// The epoch this node writes in, or nil.
    package var epoch: Int64? { queue.withLock { $0.epoch } }

    /// Only the active node appends.
    package var acceptsAppends: Bool { queue.withLock { $0.epoch != nil } }

    /// Copies a batch the active node committed (on a standby). Throws when it does not follow
    /// the last one applied.
    package func applyCommitted(_ batch: ReplicatedBatch) throws(ClusterError) {
        try queue.withLock { queue throws(ClusterError) in
            guard queue.epoch == nil else { throw ClusterError("the active node does not apply batches of others") }
            guard batch.firstSequence == queue.committed + 1 else {
                throw ClusterError("log batch \(batch.position) does not follow \(queue.committed)")
            }
            // Seen already (a batch of audit records only, read again after a restart).
            if batch.part < queue.nextPart { return }
            let last = local.append(batch.changes, records: batch.records.map { [UInt8]($0) }, audit: batch.audit, wakeWriter: true)
            guard last == batch.lastSequence else {
                throw ClusterError("the local log is at \(last) after batch \(batch.position)")
            }
            queue.assigned = last
            advance(&queue, past: batch)
        }
    }

    /// Why nothing can be acknowledged now (etcd unreachable for longer than the limit), or nil.
    package var unavailable: String? {
        queue.withLock { queue in
            guard let since = queue.unreachableSince, ContinuousClock.now - since >= limits.unavailableAfter else { return nil }
            return "the cluster's etcd cannot be reached (\(queue.lastError)); nothing new is acknowledged until it can"
        }
    }

    /// Last sequence number committed in etcd and copied locally.
    package var committed: UInt64 { queue.withLock { $0.committed } }

    /// Last sequence number the newest local snapshot covers (the log in etcd may be compacted
    /// up to it).
    package var snapshotSequence: UInt64 { queue.withLock { $0.snapshotSequence } }

    // MARK: - CommitLog

    package func start(_ signals: CommitLogSignals) {
        queue.withLock { $0.signals = signals }
        local.start(CommitLogSignals(durable: { _ in }, fatal: signals.fatal))
        writer.withLock { $0 = Task { await self.write() } }
    }

    package func append(_ changes: [LedgerChange], audit events: [AuditEvent], wakeWriter: Bool) -> UInt64 {
        let last = queue.withLock { queue in
            for change in changes { queue.pending.append(.change(change)) }
            for event in events { queue.pending.append(.audit(event)) }
            queue.assigned += UInt64(changes.count)
            return queue.assigned
        }
        if wakeWriter { wake.yield() }
        return last
    }

    package func audit(_ events: [AuditEvent], wakeWriter: Bool) {
        let active = queue.withLock { queue in
            guard queue.epoch != nil else { return false }
            for event in events { queue.pending.append(.audit(event)) }
            return true
        }
        if !active {
            // A standby's own records (refused tokens, reads): in its own trail only.
            local.audit(events, wakeWriter: wakeWriter)
        } else if wakeWriter {
            wake.yield()
        }
    }

    package func wakeWriter() { wake.yield() }

    package var lastAssigned: UInt64 { queue.withLock { $0.assigned } }

    package var auditHead: AuditHead? { local.auditHead }

    package var sinceSnapshot: (records: Int, bytes: Int) { local.sinceSnapshot }

    package var lastSnapshot: (sequence: UInt64, takenAtMs: Int64)? { local.lastSnapshot }

    package func snapshot(
        _ ledger: SeatLedger,
        takenAtMs: Int64,
        done: @escaping @Sendable (Result<SnapshotResult, StoreError>) -> Void
    ) -> Bool {
        let content = SnapshotFile.Content(ledger)
        return queue.withLock { queue in
            guard queue.snapshot == nil, !queue.failed else { return false }
            // The state of every change appended so far: written once the local log has them all.
            queue.snapshot = PendingSnapshot(content: content, sequence: queue.assigned, takenAtMs: takenAtMs, done: done)
            takeSnapshotIfDue(&queue)
            return true
        }
    }

    package func close() {
        let task = writer.withLock { task in
            defer { task = nil }
            return task
        }
        queue.withLock { $0.stopping = true }
        wake.finish()
        if let task {
            // The writer sends what is queued (it gives up when etcd does not answer in time).
            let finished = DispatchSemaphore(value: 0)
            Task {
                await task.value
                finished.signal()
            }
            finished.wait()
        }
        local.close()
    }

    // MARK: - Writer

    func write() async {
        for await _ in wakes {
            while let batch = take() {
                let outcome = await commit(batch)
                switch outcome {
                case .committed:
                    committed(batch)
                case .superseded(let reason):
                    fail("this node is no longer the active one (\(reason)); it stops acknowledging")
                    return
                case .stopped:
                    return
                }
            }
            if queue.withLock({ $0.stopping && $0.pending.isEmpty }) { return }
        }
    }

    struct Batch {
        var batch: ReplicatedBatch
        var epoch: Int64
        var bytes: [UInt8]
        /// The head the transaction expects (nil: the log is empty).
        var previous: LogHead?
        var started: ContinuousClock.Instant
    }

    /// The next batch: queued items up to the byte limit, cut where a pending snapshot's
    /// sequence number falls.
    func take() -> Batch? {
        queue.withLock { queue -> Batch? in
            guard let epoch = queue.epoch, !queue.failed, !queue.pending.isEmpty else { return nil }
            let first = queue.committed + 1
            var changes: [LedgerChange] = []
            var records: [Data] = []
            var audit: [AuditEvent] = []
            var bytes = 0
            let cut = queue.snapshot.map(\.sequence)
            while let item = queue.pending.first {
                if bytes >= limits.maxBatchBytes, !(changes.isEmpty && audit.isEmpty) { break }
                if case .change = item, let cut, first + UInt64(changes.count) > cut, !changes.isEmpty { break }
                queue.pending.removeFirst()
                switch item {
                case .change(let change):
                    let record = Data(WalRecordWire.bytes(of: change))
                    changes.append(change)
                    records.append(record)
                    bytes += record.count
                case .audit(let event):
                    let resolved = event.resolved
                    audit.append(resolved)
                    bytes +=
                        64 + resolved.action.utf8.count + resolved.actor.utf8.count + resolved.subject.utf8.count
                        + resolved.details.count * 24
                }
            }
            let batch = ReplicatedBatch(
                firstSequence: first,
                part: queue.nextPart,
                epoch: epoch,
                nodeID: nodeID,
                changes: changes,
                records: records,
                audit: audit
            )
            return Batch(batch: batch, epoch: epoch, bytes: batch.encoded, previous: queue.head, started: .now)
        }
    }

    enum Outcome {
        case committed
        case superseded(String)
        case stopped
    }

    /// Writes `batch` in one guarded transaction; resolves an unknown outcome by reading.
    func commit(_ pending: Batch) async -> Outcome {
        let batch = pending.batch
        let member = keys.member(nodeID)
        let batchKey = keys.batch(batch.position)
        let head = LogHead(position: batch.position, last: batch.lastSequence)
        let ops: [Etcdserverpb_RequestOp] = [.put(batchKey, pending.bytes), .put(keys.head, head.stored)]
        let guardHead: Etcdserverpb_Compare =
            pending.previous.map { .value(keys.head, equals: $0.stored) } ?? .created(keys.head, at: 0)
        while true {
            do throws(EtcdError) {
                let response = try await etcd.txn(compare: [.created(member, at: pending.epoch), guardHead], success: ops)
                reached()
                return response.succeeded
                    ? .committed : .superseded("its write was refused: another node wrote the log, or this node's key is gone")
            } catch {
                unreachable(error)
                if error == .cancelled { return .stopped }
            }
            // The outcome is unknown: read the batch's key, the head and this node's key
            // (retrying while etcd cannot be reached) and decide from what etcd holds.
            resolving: while true {
                if queue.withLock({ $0.stopping }), ContinuousClock.now - pending.started > .seconds(5) { return .stopped }
                do throws(EtcdError) {
                    let read = try await etcd.txn(
                        compare: [],
                        success: [
                            .range(EtcdKeyRange(key: batchKey)), .range(EtcdKeyRange(key: keys.head)), .range(EtcdKeyRange(key: member)),
                        ]
                    )
                    reached()
                    let values = read.responses.map { $0.responseRange.kvs.first }
                    if let written = values[0], let stored = try? ReplicatedBatch(decoding: [UInt8](written.value)),
                        stored.epoch == pending.epoch, stored.nodeID == nodeID
                    {
                        return .committed
                    }
                    let current = values[1].flatMap { LogHead(stored: $0.value) }
                    if current == pending.previous, values[2]?.createRevision == pending.epoch {
                        break resolving  // not written: send it again
                    }
                    return .superseded("the log's head is \(current.map { "\($0.position)" } ?? "empty") after this node's write")
                } catch {
                    unreachable(error)
                    try? await Task.sleep(for: .milliseconds(100))
                }
            }
        }
    }

    /// Copies a committed batch to the local log and reports it durable.
    func committed(_ pending: Batch) {
        let batch = pending.batch
        let signals = queue.withLock { queue -> CommitLogSignals? in
            _ = local.append(batch.changes, records: batch.records.map { [UInt8]($0) }, audit: batch.audit, wakeWriter: true)
            advance(&queue, past: batch)
            return queue.signals
        }
        let elapsed = ContinuousClock.now - pending.started
        let nanoseconds = UInt64(elapsed.components.seconds) * 1_000_000_000 + UInt64(elapsed.components.attoseconds / 1_000_000_000)
        signals?.synced(batch.changes.count, nanoseconds)
        if !batch.changes.isEmpty { signals?.durable(batch.lastSequence) }
    }

    /// Moves the head past `batch`, now in the local log.
    func advance(_ queue: inout Queue, past batch: ReplicatedBatch) {
        queue.committed = batch.lastSequence
        queue.head = LogHead(position: batch.position, last: batch.lastSequence)
        queue.nextPart = batch.changes.isEmpty ? batch.part + 1 : 0
        takeSnapshotIfDue(&queue)
    }

    /// Writes the pending snapshot when the local log has reached its sequence number.
    func takeSnapshotIfDue(_ queue: inout Queue) {
        guard let snapshot = queue.snapshot, snapshot.sequence <= queue.committed else { return }
        queue.snapshot = nil
        guard snapshot.sequence == queue.committed else {
            snapshot.done(.failure(StoreError("the snapshot at \(snapshot.sequence) was passed by the log (at \(queue.committed))")))
            return
        }
        let done = snapshot.done
        let written: @Sendable (Result<SnapshotResult, StoreError>) -> Void = { [weak self] result in
            if case .success(let taken) = result {
                self?.queue.withLock { $0.snapshotSequence = max($0.snapshotSequence, taken.sequence) }
            }
            done(result)
        }
        if !local.snapshot(snapshot.content, sequence: snapshot.sequence, takenAtMs: snapshot.takenAtMs, done: written) {
            snapshot.done(.failure(StoreError("a snapshot is already being written")))
        }
    }

    func reached() {
        queue.withLock { $0.unreachableSince = nil }
    }

    func unreachable(_ error: EtcdError) {
        queue.withLock { queue in
            if queue.unreachableSince == nil { queue.unreachableSince = .now }
            queue.lastError = error.description
        }
    }

    /// Stops acknowledging: reports `fatal` once; nothing queued is ever reported durable.
    package func fail(_ message: String) {
        let signals = queue.withLock { queue -> CommitLogSignals? in
            guard !queue.failed else { return nil }
            queue.failed = true
            queue.pending.removeAll()
            if let snapshot = queue.snapshot {
                queue.snapshot = nil
                snapshot.done(.failure(StoreError(message)))
            }
            return queue.signals
        }
        signals?.fatal(message)
    }
}
