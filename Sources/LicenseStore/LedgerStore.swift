import Foundation
public import LicenseAudit
public import LicenseCore
public import LicenseFiles
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The durable side of the seat ledger on this machine: a write-ahead log written by one thread
/// with group commit, snapshots that cut it, and recovery from both. The first `CommitLog`.
///
/// The event loop calls `append(_:audit:wakeWriter:)` (cheap: a lock and an array append) and
/// learns through `CommitLogSignals.durable` when a sequence number is on disk. The writer
/// takes everything appended while its previous write and fsync ran, writes it with one `write`
/// and one `fdatasync`, and reports the last sequence number. So concurrent requests share an
/// fsync, and no request waits for more than two of them. The writer is a thread of its own or
/// the thread that wakes it (`Writer`).
///
/// Thread-safety is the compiler's: what callers and the writer share is in `queue` (a `Mutex`);
/// what the writer alone touches (the open segment, the audit trail) is in `files`, a second
/// `Mutex` that only the writer locks, so it is never contended.
public final class LedgerStore: CommitLog {
    /// When appended records reach the disk.
    public enum SyncPolicy: String, Sendable, CaseIterable {
        /// fdatasync before a change is acknowledged (the default).
        case always
        /// Never fsync: for tests and throw-away demos only; a crash loses acknowledged changes.
        case none
    }

    /// Which thread writes and syncs the log.
    public enum Writer: String, Sendable, CaseIterable {
        /// The thread that wakes the writer: the serving loop, once per pass over its ready
        /// connections, after deciding every request it read (as Redis writes its append-only
        /// file before it answers, with `appendfsync always`). No thread is woken, and none
        /// wakes the loop, per batch: `scripts/bench-ab` measured 11% less server CPU a pair at
        /// 16 requests in flight, 21% less at 200 pairs/s and 27% less at 10,000 pairs/s
        /// (medians of 5 alternating runs). The loop reads nothing while it waits for an
        /// fdatasync: what arrives meanwhile waits for the next pass, and the slowest requests
        /// wait a little longer (p99.9 at 10,000 pairs/s: 15–28 ms against 12–19 ms).
        case loop
        /// A thread of its own: the loop goes on reading and deciding requests while a batch
        /// syncs (for storage whose fsync takes long enough to matter to heartbeats and status).
        case thread
    }

    /// The directory holding `wal-*.log` segments and `snapshot-*.snap` files.
    public let directory: String
    /// The sync policy.
    public let sync: SyncPolicy
    /// Which thread writes and syncs.
    public let writer: Writer
    /// Snapshots kept (the newest ones), with the log since the oldest of them.
    public let retainedSnapshots: Int

    /// What appenders and the writer share.
    struct Queue {
        /// Changes appended and not yet taken by the writer; the last has sequence `assigned`.
        /// They are encoded on the writer thread, not on the caller's (protobuf encoding was 14%
        /// of the serving loop's time at 40k check-outs/s).
        var pending: [LedgerChange] = []
        /// For each pending change, its record when the caller had it encoded already (a node
        /// of a cluster copying the replicated log), else nil.
        var pendingRecords: [[UInt8]?] = []
        var pendingAudit: [AuditEvent] = []
        var assigned: UInt64
        var recordsSinceSnapshot = 0
        var bytesSinceSnapshot = 0
        /// A snapshot asked for: where it cuts the pending changes, its sequence, what it holds.
        var rotation: Rotation?
        var snapshotInFlight = false
        var stopping = false
        var started = false
        /// True while the writer sleeps on `wake` (only then does an append signal it).
        var writerIdle = false
        var hasAuditTrail: Bool

        var isEmpty: Bool { self.pending.isEmpty && self.pendingAudit.isEmpty && self.rotation == nil }
    }

    struct Rotation {
        var cutIndex: Int
        var sequence: UInt64
        var content: SnapshotFile.Content
        var takenAtMs: Int64
        var done: @Sendable (Result<SnapshotResult, StoreError>) -> Void
    }

    /// What only the writer thread touches.
    struct Files {
        var segment: SegmentFile
        var lastReported: UInt64
        /// The audit trail, written in the same batches as the log.
        var auditLog: AuditLog?
        /// A write or sync failed: nothing more is written.
        var failed = false
        /// Closed: nothing more is written.
        var closed = false
    }

    let queue: Mutex<Queue>
    let files: Mutex<Files>
    let writtenAuditHead: Mutex<AuditHead?>
    /// The newest durable snapshot: the one recovered from, then each one written.
    let newestSnapshot = Mutex<(sequence: UInt64, takenAtMs: Int64)?>(nil)
    /// Signalled once per transition of the writer out of idleness.
    let wake = DispatchSemaphore(value: 0)
    /// Signalled when the writer thread has closed its files.
    let finished = DispatchSemaphore(value: 0)
    /// The signals of a log written by its callers (`Writer.loop`), set once by `start(_:)`.
    let callerSignals = Mutex<CommitLogSignals?>(nil)

    private init(
        directory: String,
        sync: SyncPolicy,
        writer: Writer,
        retainedSnapshots: Int,
        lastSequence: UInt64,
        files: consuming sending Files
    ) {
        self.directory = directory
        self.sync = sync
        self.writer = writer
        self.retainedSnapshots = retainedSnapshots
        let audit = files.auditLog.map { AuditHead(sequence: $0.lastSequence, hash: $0.lastHash, timeMs: $0.latestTimeMs) }
        self.writtenAuditHead = Mutex(audit)
        self.queue = Mutex(Queue(assigned: lastSequence, hasAuditTrail: audit != nil))
        self.files = Mutex(files)
    }

    // MARK: - Opening and recovery

    /// Recovers the state in `directory` (created if missing) and opens the log for appending;
    /// nothing is written until `start(_:)`.
    ///
    /// `retainedSnapshots` (at least 2) snapshots are kept with the log since the oldest of them,
    /// so that one damaged snapshot costs nothing. Recovery that cannot prove it has every
    /// acknowledged change throws a `RecoveryRefusal`, unless `acceptDataLoss`.
    public static func open(
        directory: String,
        sync: SyncPolicy,
        writer: Writer = .thread,
        retainedSnapshots: Int = 2,
        acceptDataLoss: Bool = false,
        audit: consuming sending AuditLog? = nil
    ) throws -> (LedgerStore, Recovery) {
        try FileIO.makeDirectory(directory)
        var recovery = try Self.recover(directory: directory, acceptDataLoss: acceptDataLoss, auditAfter: audit?.lastSequence)
        if let audit { try Self.restoreAudit(&recovery, into: audit) }
        // Append to the newest segment, or start one after the last sequence (always after a
        // loss: older segments may hold numbers past the gap).
        let segments = try Self.segments(in: directory)
        let path: String
        if let last = segments.last, recovery.lostHistory == nil {
            path = last.path
        } else {
            path = Self.segmentPath(directory, firstSequence: recovery.lastSequence + 1)
        }
        let segment = try SegmentFile.open(path)
        if path != segments.last?.path { try FileIO.syncDirectory(directory) }
        let store = LedgerStore(
            directory: directory,
            sync: sync,
            writer: writer,
            retainedSnapshots: max(2, retainedSnapshots),
            lastSequence: recovery.lastSequence,
            files: Files(segment: segment, lastReported: recovery.lastSequence, auditLog: audit)
        )
        store.queue.withLock { $0.recordsSinceSnapshot = recovery.replayedRecords }
        if recovery.snapshotSequence > 0 {
            store.newestSnapshot.withLock { $0 = (recovery.snapshotSequence, recovery.snapshotTakenAtMs) }
        }
        return (store, recovery)
    }

    /// Opens as `open(directory:sync:retainedSnapshots:acceptDataLoss:audit:)` does and starts
    /// the writer at once (tools and tests that need no host).
    public static func open(
        directory: String,
        sync: SyncPolicy,
        writer: Writer = .thread,
        retainedSnapshots: Int = 2,
        acceptDataLoss: Bool = false,
        audit: consuming sending AuditLog? = nil,
        onDurable: @escaping @Sendable (UInt64) -> Void,
        onFatal: @escaping @Sendable (String) -> Void,
        onSync: @escaping @Sendable (_ records: Int, _ nanoseconds: UInt64) -> Void = { _, _ in }
    ) throws -> (LedgerStore, Recovery) {
        let (store, recovery) = try Self.open(
            directory: directory,
            sync: sync,
            writer: writer,
            retainedSnapshots: retainedSnapshots,
            acceptDataLoss: acceptDataLoss,
            audit: audit
        )
        store.start(CommitLogSignals(durable: onDurable, fatal: onFatal, synced: onSync))
        return (store, recovery)
    }

    public func start(_ signals: CommitLogSignals) {
        let first = self.queue.withLock { queue in
            defer { queue.started = true }
            return !queue.started
        }
        precondition(first, "a LedgerStore is started once")
        if self.writer == .loop {
            self.callerSignals.withLock { $0 = signals }
            // What was appended before the start (and left the writer marked busy).
            self.writeQueuedHere()
            return
        }
        let thread = Thread { self.writerLoop(signals) }
        thread.name = "licensed-wal"
        thread.start()
    }

    // MARK: - Appending

    @discardableResult
    public func append(_ changes: [LedgerChange], audit events: [AuditEvent] = [], wakeWriter: Bool = true) -> UInt64 {
        self.append(changes, records: nil, audit: events, wakeWriter: wakeWriter)
    }

    /// Appends `changes` (with `records`, each change's `WalRecord` already serialized, when the
    /// caller has them: a node of a cluster copying the replicated log) and the audit records
    /// written with them; returns the last sequence number.
    @discardableResult
    public func append(_ changes: [LedgerChange], records: [[UInt8]]?, audit events: [AuditEvent], wakeWriter: Bool) -> UInt64 {
        guard !changes.isEmpty else {
            self.audit(events, wakeWriter: wakeWriter)
            return self.lastAssigned
        }
        precondition(records == nil || records!.count == changes.count, "one record per change")
        let (last, signal) = self.queue.withLock { queue in
            queue.pending.append(contentsOf: changes)
            if let records {
                queue.pendingRecords.append(contentsOf: records.lazy.map { Optional($0) })
            } else {
                queue.pendingRecords.append(contentsOf: repeatElement(nil, count: changes.count))
            }
            queue.assigned += UInt64(changes.count)
            queue.recordsSinceSnapshot += changes.count
            if queue.hasAuditTrail { queue.pendingAudit.append(contentsOf: events) }
            return (queue.assigned, wakeWriter && Self.leaveIdle(&queue))
        }
        if signal { self.signalWriter() }
        return last
    }

    /// True (and the writer marked busy) when the writer sleeps and must be signalled.
    private static func leaveIdle(_ queue: inout Queue) -> Bool {
        guard queue.writerIdle else { return false }
        queue.writerIdle = false
        return true
    }

    /// Has the writer take what is queued: the writer thread is woken; under `Writer.loop` it is
    /// written here and now.
    private func signalWriter() {
        if self.writer == .loop {
            self.writeQueuedHere()
        } else {
            self.wake.signal()
        }
    }

    public func wakeWriter() {
        let signal = self.queue.withLock { queue in !queue.isEmpty && Self.leaveIdle(&queue) }
        if signal { self.signalWriter() }
    }

    public func audit(_ events: [AuditEvent], wakeWriter: Bool = true) {
        guard !events.isEmpty else { return }
        let signal = self.queue.withLock { queue -> Bool in
            guard queue.hasAuditTrail else { return false }
            queue.pendingAudit.append(contentsOf: events)
            return wakeWriter && Self.leaveIdle(&queue)
        }
        if signal { self.signalWriter() }
    }

    public var auditHead: AuditHead? { self.writtenAuditHead.withLock { $0 } }

    public var lastAssigned: UInt64 { self.queue.withLock { $0.assigned } }

    public var sinceSnapshot: (records: Int, bytes: Int) {
        self.queue.withLock { ($0.recordsSinceSnapshot, $0.bytesSinceSnapshot) }
    }

    public var lastSnapshot: (sequence: UInt64, takenAtMs: Int64)? { self.newestSnapshot.withLock { $0 } }

    /// Snapshots `ledger`'s leases, which must be the state after every change appended so far.
    /// Only the lease table is kept (copy-on-write), so the caller's next change copies that one
    /// table, not the whole ledger. The log is cut at that point: later records go to a new
    /// segment, and once the snapshot is durable the older segments and snapshots beyond
    /// `retainedSnapshots` are deleted. Encoding and writing happen off the caller's thread on
    /// the frozen copy; `done` reports the outcome. Returns false when a snapshot is already in
    /// progress.
    @discardableResult
    public func snapshot(_ ledger: SeatLedger, takenAtMs: Int64, done: @escaping @Sendable (Result<SnapshotResult, StoreError>) -> Void)
        -> Bool
    {
        snapshot(SnapshotFile.Content(ledger), sequence: nil, takenAtMs: takenAtMs, done: done)
    }

    /// Records `content`, the state after change `sequence` — which must be the last change
    /// appended (false otherwise, and when a snapshot is already being taken). For a log that
    /// appends here only what another log made durable, and froze the state earlier.
    public func snapshot(
        _ content: SnapshotFile.Content,
        sequence expected: UInt64?,
        takenAtMs: Int64,
        done: @escaping @Sendable (Result<SnapshotResult, StoreError>) -> Void
    ) -> Bool {
        let signal = self.queue.withLock { queue -> Bool? in
            guard !queue.snapshotInFlight, !queue.stopping else { return nil }
            if let expected, expected != queue.assigned { return nil }
            queue.snapshotInFlight = true
            queue.rotation = Rotation(
                cutIndex: queue.pending.count,
                sequence: queue.assigned,
                content: content,
                takenAtMs: takenAtMs,
                done: done
            )
            queue.recordsSinceSnapshot = 0
            queue.bytesSinceSnapshot = 0
            return Self.leaveIdle(&queue)
        }
        guard let signal else { return false }
        if signal { self.signalWriter() }
        return true
    }

    /// Writes everything appended so far, stops the writer and closes the log. Without `start`
    /// (a start-up that failed) it closes the files only.
    public func close() {
        let (started, signal) = self.queue.withLock { queue -> (Bool, Bool) in
            guard !queue.stopping else { return (false, false) }
            queue.stopping = true
            return (queue.started, Self.leaveIdle(&queue))
        }
        if signal { self.signalWriter() }
        if started, self.writer == .thread {
            self.finished.wait()
            return
        }
        self.files.withLock { files in
            // Never started: nothing was written, and the segment is left as it is.
            if !started { files.failed = true }
            self.closeFiles(&files)
        }
    }
}
