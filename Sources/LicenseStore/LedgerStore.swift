import Foundation
public import LicenseCore
import LicenseProtocol
import SwiftProtobuf
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The durable side of the seat ledger: a write-ahead log written by one thread with group commit,
/// snapshots that cut it, and recovery from both.
///
/// The event loop calls `append(_:)` (cheap: encode into a buffer under a lock) and learns through
/// `onDurable` when a sequence number is on disk. The writer thread takes everything appended
/// while its previous write and fsync ran, writes it with one `write` and one `fdatasync`, and
/// reports the last sequence number. So concurrent requests share an fsync, and no request waits
/// for more than two of them.
public final class LedgerStore: @unchecked Sendable {
    /// When appended records reach the disk.
    public enum SyncPolicy: String, Sendable, CaseIterable {
        /// fdatasync before a change is acknowledged (the default).
        case always
        /// Never fsync: for tests and throw-away demos only; a crash loses acknowledged changes.
        case none
    }

    /// What a snapshot wrote.
    public struct SnapshotResult: Sendable {
        /// Last sequence number it covers.
        public var sequence: UInt64
        /// Its file.
        public var file: String
        /// Its size.
        public var sizeBytes: Int
        /// Time to encode and write it, in milliseconds.
        public var durationMs: Int
        /// Leases in it.
        public var leases: Int
    }

    /// The directory holding `wal-*.log` segments and `snapshot-*.snap` files.
    public let directory: String
    /// The sync policy.
    public let sync: SyncPolicy
    /// Snapshots kept (the newest ones), with the log since the oldest of them.
    public let retainedSnapshots: Int

    private let condition = NSCondition()
    // Guarded by `condition`:
    /// Changes appended and not yet taken by the writer; the first has sequence `pendingLast - count + 1`.
    /// They are encoded on the writer thread, not on the caller's (protobuf encoding was 14% of
    /// the serving loop's time at 40k check-outs/s).
    private var pending: [LedgerChange] = []
    private var pendingAudit: [AuditEvent] = []
    private var pendingLast: UInt64 = 0
    private var assigned: UInt64
    private var recordsSinceSnapshot = 0
    private var bytesSinceSnapshot = 0
    /// A snapshot asked for: where it cuts the pending changes, its sequence, what it holds.
    private var rotation:
        (
            cutIndex: Int, sequence: UInt64, content: SnapshotFile.Content, takenAtMs: Int64,
            done: @Sendable (Result<SnapshotResult, StoreError>) -> Void
        )?
    private var snapshotInFlight = false
    private var stopping = false
    private var writerFinished = false
    /// True while the writer sleeps waiting for work (only then does an append signal it).
    private var writerIdle = false

    // Writer thread only:
    private var lastReported: UInt64 = 0
    private var segmentFD: Int32
    private var segmentPath: String
    /// The audit trail, written in the same batches as the log.
    private let auditLog: AuditLog?
    private let headLock = NSLock()
    private var writtenAuditHead: (sequence: UInt64, hash: String)

    private let onDurable: @Sendable (UInt64) -> Void
    private let onFatal: @Sendable (String) -> Void
    private let onSync: (@Sendable (_ records: Int, _ nanoseconds: UInt64) -> Void)?
    private var thread: Thread?

    private init(
        directory: String,
        sync: SyncPolicy,
        retainedSnapshots: Int,
        lastSequence: UInt64,
        segmentFD: Int32,
        segmentPath: String,
        auditLog: AuditLog?,
        onDurable: @escaping @Sendable (UInt64) -> Void,
        onFatal: @escaping @Sendable (String) -> Void,
        onSync: (@Sendable (Int, UInt64) -> Void)?
    ) {
        self.auditLog = auditLog
        self.writtenAuditHead = (auditLog?.lastSequence ?? 0, auditLog?.lastHash ?? AuditRecord.genesisHash)
        self.onSync = onSync
        self.directory = directory
        self.sync = sync
        self.retainedSnapshots = retainedSnapshots
        self.assigned = lastSequence
        self.pendingLast = lastSequence
        self.segmentFD = segmentFD
        self.segmentPath = segmentPath
        self.onDurable = onDurable
        self.onFatal = onFatal
    }

    // MARK: - Opening and recovery

    /// Recovers the state in `directory` (created if missing) and opens the log for appending.
    /// `onDurable(sequence)` is called from the writer thread after each group commit;
    /// `onFatal(message)` when a write or fsync fails (the caller must stop: nothing is retried);
    /// `onSync(records, nanoseconds)` after each group commit, for metrics.
    ///
    /// `retainedSnapshots` (at least 2) snapshots are kept with the log since the oldest of them,
    /// so that one damaged snapshot costs nothing. Recovery that cannot prove it has every
    /// acknowledged change throws a `RecoveryRefusal`, unless `acceptDataLoss`.
    public static func open(
        directory: String,
        sync: SyncPolicy,
        retainedSnapshots: Int = 2,
        acceptDataLoss: Bool = false,
        audit: AuditLog? = nil,
        onDurable: @escaping @Sendable (UInt64) -> Void,
        onFatal: @escaping @Sendable (String) -> Void,
        onSync: (@Sendable (_ records: Int, _ nanoseconds: UInt64) -> Void)? = nil
    ) throws -> (LedgerStore, Recovery) {
        try FileIO.makeDirectory(directory)
        let recovery = try Self.recover(directory: directory, acceptDataLoss: acceptDataLoss)
        // Append to the newest segment, or start one after the last sequence (always after a
        // loss: older segments may hold numbers past the gap).
        let segments = try Self.segments(in: directory)
        let path: String
        if let last = segments.last, recovery.lostHistory == nil {
            path = last.path
        } else {
            path = Self.segmentPath(directory, firstSequence: recovery.lastSequence + 1)
        }
        let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StoreError.errno("cannot open the write-ahead log", path) }
        if path != segments.last?.path { try FileIO.syncDirectory(directory) }
        let store = LedgerStore(
            directory: directory,
            sync: sync,
            retainedSnapshots: max(2, retainedSnapshots),
            lastSequence: recovery.lastSequence,
            segmentFD: fd,
            segmentPath: path,
            auditLog: audit,
            onDurable: onDurable,
            onFatal: onFatal,
            onSync: onSync
        )
        store.recordsSinceSnapshot = recovery.replayedRecords
        store.lastReported = recovery.lastSequence
        let thread = Thread { store.writerLoop() }
        thread.name = "licensed-wal"
        store.thread = thread
        thread.start()
        return (store, recovery)
    }

    struct Segment {
        var path: String
        var firstSequence: UInt64
    }

    static func segmentPath(_ directory: String, firstSequence: UInt64) -> String {
        "\(directory)/wal-\(Self.padded(firstSequence)).log"
    }

    static func snapshotPath(_ directory: String, sequence: UInt64) -> String {
        "\(directory)/snapshot-\(Self.padded(sequence)).snap"
    }

    static func padded(_ n: UInt64) -> String {
        let digits = String(n)
        return String(repeating: "0", count: max(0, 20 - digits.count)) + digits
    }

    /// Deletes all but the `retaining` newest snapshots, and every log segment whose records all
    /// precede the oldest snapshot kept (segments start just after a snapshot's cut, so a segment
    /// is wholly covered when the next one starts at or before that snapshot's sequence + 1).
    static func prune(_ directory: String, retaining: Int) throws {
        let snapshots = try Self.snapshots(in: directory)
        guard snapshots.count >= retaining, let oldestKept = snapshots.prefix(retaining).last else { return }
        for old in snapshots.dropFirst(retaining) { unlink(old.path) }
        let segments = try Self.segments(in: directory)
        for (index, segment) in segments.enumerated() where index + 1 < segments.count {
            if segments[index + 1].firstSequence <= oldestKept.sequence + 1 { unlink(segment.path) }
        }
        try FileIO.syncDirectory(directory)
    }

    static func segments(in directory: String) throws -> [Segment] {
        try FileIO.list(directory).compactMap { name -> Segment? in
            guard name.hasPrefix("wal-"), name.hasSuffix(".log"), let first = UInt64(name.dropFirst(4).dropLast(4)) else { return nil }
            return Segment(path: "\(directory)/\(name)", firstSequence: first)
        }.sorted { $0.firstSequence < $1.firstSequence }
    }

    static func snapshots(in directory: String) throws -> [(path: String, sequence: UInt64)] {
        try FileIO.list(directory).compactMap { name -> (String, UInt64)? in
            guard name.hasPrefix("snapshot-"), name.hasSuffix(".snap"), let seq = UInt64(name.dropFirst(9).dropLast(5)) else { return nil }
            return ("\(directory)/\(name)", seq)
        }.sorted { $0.1 > $1.1 }
    }

    // MARK: - Appending

    /// Queues `changes` for the log and returns the sequence number of the last; it is durable
    /// when `onDurable` reports a number at least as high. Never blocks on I/O.
    @discardableResult
    ///
    /// With `wakeWriter: false` the writer is not woken (unless it has work already): the caller
    /// promises a `wakeWriter()` soon, once per batch of requests, so that a busy loop wakes the
    /// writer thread once per batch instead of once per change (a futex wake each, measured at 6%
    /// of the loop's time under `sync: none`).
    public func append(_ changes: [LedgerChange], audit events: [AuditEvent] = [], wakeWriter: Bool = true) -> UInt64 {
        guard !changes.isEmpty else {
            self.audit(events, wakeWriter: wakeWriter)
            return self.lastAssigned
        }
        self.condition.lock()
        self.pending.append(contentsOf: changes)
        self.assigned += UInt64(changes.count)
        self.recordsSinceSnapshot += changes.count
        self.pendingLast = self.assigned
        if self.auditLog != nil { self.pendingAudit.append(contentsOf: events) }
        let last = self.assigned
        if wakeWriter && self.writerIdle { self.condition.signal() }
        self.condition.unlock()
        return last
    }

    /// Wakes the writer if it sleeps with work queued (see `append(_:audit:wakeWriter:)`).
    public func wakeWriter() {
        self.condition.lock()
        if self.writerIdle && !(self.pending.isEmpty && self.pendingAudit.isEmpty) { self.condition.signal() }
        self.condition.unlock()
    }

    /// Queues `events` for the audit trail alone (things that change no state: denials, refused
    /// tokens, reads by administrators). They are written with the next batch.
    public func audit(_ events: [AuditEvent], wakeWriter: Bool = true) {
        guard self.auditLog != nil, !events.isEmpty else { return }
        self.condition.lock()
        self.pendingAudit.append(contentsOf: events)
        if wakeWriter && self.writerIdle { self.condition.signal() }
        self.condition.unlock()
    }

    /// Sequence number and hash of the last audit record written (nil without an audit trail).
    public var auditHead: (sequence: UInt64, hash: String)? {
        guard self.auditLog != nil else { return nil }
        self.headLock.lock()
        defer { self.headLock.unlock() }
        return self.writtenAuditHead
    }

    /// The last sequence number handed out.
    public var lastAssigned: UInt64 {
        self.condition.lock()
        defer { self.condition.unlock() }
        return self.assigned
    }

    /// Records and bytes logged since the last snapshot (to decide when to take one).
    public var sinceSnapshot: (records: Int, bytes: Int) {
        self.condition.lock()
        defer { self.condition.unlock() }
        return (self.recordsSinceSnapshot, self.bytesSinceSnapshot)
    }

    /// Snapshots `ledger`'s leases, which must be the state after every change appended so far.
    /// Only the lease table is kept (copy-on-write), so the caller's next change copies that one
    /// table, not the whole ledger. The log is
    /// cut at that point: later records go to a new segment, and once the snapshot is durable the
    /// older segments and snapshots are deleted. Encoding and writing happen off the caller's
    /// thread on the frozen copy; `done` reports the outcome. Returns false when a snapshot is
    /// already in progress.
    @discardableResult
    public func snapshot(_ ledger: SeatLedger, takenAtMs: Int64, done: @escaping @Sendable (Result<SnapshotResult, StoreError>) -> Void)
        -> Bool
    {
        self.condition.lock()
        defer { self.condition.unlock() }
        guard !self.snapshotInFlight, !self.stopping else { return false }
        self.snapshotInFlight = true
        self.rotation = (self.pending.count, self.assigned, SnapshotFile.Content(ledger), takenAtMs, done)
        self.recordsSinceSnapshot = 0
        self.bytesSinceSnapshot = 0
        self.condition.signal()
        return true
    }

    /// Snapshots `ledger` as `snapshot(_:takenAtMs:done:)` does and waits until it is written.
    /// For start-up (a recovery that lost redundancy writes one before serving), never the loop.
    public func snapshotAndWait(_ ledger: SeatLedger, takenAtMs: Int64) throws(StoreError) -> SnapshotResult {
        let finished = DispatchSemaphore(value: 0)
        let outcome = Mutex<Result<SnapshotResult, StoreError>?>(nil)
        let started = self.snapshot(ledger, takenAtMs: takenAtMs) { result in
            outcome.withLock { $0 = result }
            finished.signal()
        }
        guard started else { throw StoreError("a snapshot is already being written") }
        finished.wait()
        guard let result = outcome.withLock({ $0 }) else { throw StoreError("the snapshot ended without a result") }
        return try result.get()
    }

    /// Writes everything appended so far, stops the writer and closes the log.
    public func close() {
        self.condition.lock()
        self.stopping = true
        self.condition.signal()
        while !self.writerFinished { self.condition.wait() }
        self.condition.unlock()
    }

    // MARK: - The writer thread

    private func writerLoop() {
        while true {
            self.condition.lock()
            while self.pending.isEmpty && self.pendingAudit.isEmpty && self.rotation == nil && !self.stopping {
                self.writerIdle = true
                self.condition.wait()
            }
            self.writerIdle = false
            let changes = self.pending
            let auditBatch = self.pendingAudit
            self.pendingAudit = []
            let last = self.pendingLast
            let rotation = self.rotation
            let stop = self.stopping && changes.isEmpty && auditBatch.isEmpty && rotation == nil
            self.pending = []
            self.pending.reserveCapacity(changes.count)
            self.rotation = nil
            self.condition.unlock()
            if stop { break }
            let started = DispatchTime.now().uptimeNanoseconds
            // Encoded here, off the serving loop: one buffer of framed records for the batch.
            // A snapshot cuts the batch at its index: records before it end the old segment.
            var batch: [UInt8] = []
            var sequence = last - UInt64(changes.count)
            func encode(_ part: ArraySlice<LedgerChange>) {
                for change in part {
                    sequence += 1
                    // Serializing a message of known fields cannot fail.
                    let body: [UInt8] = try! change.record.serializedBytes()
                    LogSegment.encode(sequence: sequence, body: body, into: &batch)
                }
            }
            let cutIndex = rotation?.cutIndex ?? 0
            encode(changes[..<cutIndex])
            let cutOffset = batch.count
            encode(changes[cutIndex...])
            let bytesAfterCut = batch.count - cutOffset
            if bytesAfterCut > 0 {
                self.condition.lock()
                self.bytesSinceSnapshot += bytesAfterCut
                self.condition.unlock()
            }
            do {
                if let rotation {
                    try self.writeAndSync(batch[..<cutOffset])
                    try self.startSegment(firstSequence: rotation.sequence + 1)
                    try self.writeAndSync(batch[cutOffset...])
                    self.startSnapshot(rotation.content, sequence: rotation.sequence, takenAtMs: rotation.takenAtMs, done: rotation.done)
                    try self.writeAudit(auditBatch)
                } else {
                    // Both files are written before either is synced: the log's fdatasync commits
                    // the file system's journal for both, so the audit file's fdatasync after it
                    // finds little left to do.
                    try self.auditLog?.write(auditBatch)
                    try self.writeAndSync(batch[...])
                    try self.writeAudit([])
                }
            } catch {
                self.onFatal("\(error); stopping: an acknowledged change may not be on disk, and a failed fsync is never retried")
                break
            }
            if !changes.isEmpty {
                self.onSync?(Int(last - self.lastReported), DispatchTime.now().uptimeNanoseconds - started)
                self.lastReported = last
                self.onDurable(last)
            }
        }
        Glibc.close(self.segmentFD)
        self.auditLog?.close()
        self.condition.lock()
        self.writerFinished = true
        self.condition.broadcast()
        self.condition.unlock()
    }

    /// Writes `events` (those not written yet) and syncs the audit trail.
    private func writeAudit(_ events: [AuditEvent]) throws {
        guard let auditLog else { return }
        try auditLog.write(events)
        try auditLog.sync()
        self.headLock.lock()
        self.writtenAuditHead = (auditLog.lastSequence, auditLog.lastHash)
        self.headLock.unlock()
    }

    private func writeAndSync(_ bytes: ArraySlice<UInt8>) throws {
        guard !bytes.isEmpty else { return }
        try bytes.withUnsafeBytes { try FileIO.writeAll(self.segmentFD, $0, path: self.segmentPath) }
        if self.sync == .always {
            guard fdatasync(self.segmentFD) == 0 else { throw StoreError.errno("fdatasync failed on", self.segmentPath) }
        }
    }

    private func startSegment(firstSequence: UInt64) throws {
        if self.sync == .always { guard fsync(self.segmentFD) == 0 else { throw StoreError.errno("fsync failed on", self.segmentPath) } }
        Glibc.close(self.segmentFD)
        let path = Self.segmentPath(self.directory, firstSequence: firstSequence)
        let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StoreError.errno("cannot create the write-ahead log segment", path) }
        self.segmentFD = fd
        self.segmentPath = path
        try FileIO.syncDirectory(self.directory)
    }

    private func startSnapshot(
        _ content: SnapshotFile.Content,
        sequence: UInt64,
        takenAtMs: Int64,
        done: @escaping @Sendable (Result<SnapshotResult, StoreError>) -> Void
    ) {
        let directory = self.directory
        let retained = self.retainedSnapshots
        Thread.detachNewThread {
            let started = DispatchTime.now()
            let result: Result<SnapshotResult, StoreError>
            do {
                let bytes = try SnapshotFile.encode(content, sequence: sequence, takenAtMs: takenAtMs)
                let path = Self.snapshotPath(directory, sequence: sequence)
                try FileIO.writeAtomically(bytes, to: path, directory: directory)
                // The snapshot is durable: keep it and the next newest ones, and the log since the
                // oldest kept, so that recovery can fall back when one snapshot is damaged.
                try Self.prune(directory, retaining: retained)
                let elapsed = Int((DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1_000_000)
                result = .success(
                    SnapshotResult(
                        sequence: sequence,
                        file: path,
                        sizeBytes: bytes.count,
                        durationMs: elapsed,
                        leases: content.leases.count
                    )
                )
            } catch let error as StoreError {
                result = .failure(error)
            } catch {
                result = .failure(StoreError("snapshot failed: \(error)"))
            }
            self.condition.lock()
            self.snapshotInFlight = false
            self.condition.unlock()
            done(result)
        }
    }
}
