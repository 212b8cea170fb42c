import Foundation
import LicenseAudit
import LicenseCore
import LicenseFiles
import SwiftProtobuf
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The writer thread: takes what was appended, writes it as one batch, syncs, reports.
extension LedgerStore {
    /// A batch taken from the queue.
    private struct Batch {
        var changes: [LedgerChange]
        var records: [[UInt8]?]
        var audit: [AuditEvent]
        var last: UInt64
        var rotation: Rotation?
    }

    /// Takes the queued work, or marks the writer idle (nil) or finished (`.none` with `stop`).
    private func take() -> (batch: Batch?, stop: Bool) {
        self.queue.withLock { queue in
            if queue.isEmpty {
                if queue.stopping { return (nil, true) }
                queue.writerIdle = true
                return (nil, false)
            }
            let batch = Batch(
                changes: queue.pending,
                records: queue.pendingRecords,
                audit: queue.pendingAudit,
                last: queue.assigned,
                rotation: queue.rotation
            )
            queue.pending = []
            queue.pending.reserveCapacity(batch.changes.count)
            queue.pendingRecords = []
            queue.pendingRecords.reserveCapacity(batch.changes.count)
            queue.pendingAudit = []
            queue.rotation = nil
            return (batch, false)
        }
    }

    func writerLoop(_ signals: CommitLogSignals) {
        while true {
            let (taken, stop) = self.take()
            if stop { break }
            guard let batch = taken else {
                self.wake.wait()
                continue
            }
            let outcome = self.files.withLock { self.commit(batch, &$0) }
            guard self.report(outcome, signals) else { break }
        }
        self.files.withLock { self.closeFiles(&$0) }
        self.finished.signal()
    }

    /// Writes what is queued on the calling thread (`Writer.loop`), batch after batch until the
    /// queue is empty, and reports each as the writer thread would. Holding `files` throughout
    /// keeps the batches in the order they were taken, whichever threads call.
    func writeQueuedHere() {
        guard let signals = self.callerSignals.withLock({ $0 }) else { return }
        self.files.withLock { files in
            while !files.failed, !files.closed, let batch = self.take().batch {
                let outcome = self.commit(batch, &files)
                var reporting = signals
                if outcome.error != nil {
                    // A failure is reported from a thread of its own: the host's handler waits
                    // for the serving loop, which may be the thread here.
                    reporting.fatal = { message in Thread.detachNewThread { signals.fatal(message) } }
                }
                _ = self.report(outcome, reporting)
            }
        }
    }

    /// What writing one batch came to: the sequence reported durable before it, the batch, and
    /// the error that stopped it, if any.
    private typealias Outcome = (batch: Batch, reported: UInt64, started: UInt64, error: (any Error)?)

    /// Writes `batch` and makes it durable.
    private func commit(_ batch: Batch, _ files: inout Files) -> Outcome {
        let started = DispatchTime.now().uptimeNanoseconds
        do {
            try self.write(batch, &files)
        } catch {
            files.failed = true
            return (batch, files.lastReported, started, error)
        }
        let previous = files.lastReported
        files.lastReported = batch.last
        return (batch, previous, started, nil)
    }

    /// Tells `signals` what `commit` did; false when it failed (nothing more is written).
    private func report(_ outcome: Outcome, _ signals: CommitLogSignals) -> Bool {
        if let error = outcome.error {
            // Nothing more is taken: appends are dropped, snapshots refused, close returns.
            self.queue.withLock { $0.stopping = true }
            signals.fatal("\(error); stopping: an acknowledged change may not be on disk, and a failed fsync is never retried")
            return false
        }
        if !outcome.batch.changes.isEmpty {
            signals.synced(Int(outcome.batch.last - outcome.reported), DispatchTime.now().uptimeNanoseconds - outcome.started)
            signals.durable(outcome.batch.last)
        }
        return true
    }

    /// Closes the log and the audit trail, once.
    func closeFiles(_ files: inout Files) {
        guard !files.closed else { return }
        files.closed = true
        // A clean stop cuts the segment to its records; after a failure (or with nothing ever
        // written) nothing more is written to it: what it holds past its records reads as the
        // log's end.
        if files.failed {
            files.segment.abandon()
        } else {
            try? files.segment.close(syncs: self.sync == .always)
        }
        // What the log alone held of the trail reaches its file too (on a failure as well: the
        // log has those lines anyway).
        try? files.auditLog?.sync()
        files.auditLog?.close()
    }

    /// Audit lines of a batch above this size (about 45 compact records, 17 JSON lines) are not
    /// copied into the log: its audit file is synced after the log instead. One fdatasync instead of two shortens a
    /// small batch's cycle (at 200 pairs/s: p50 -16%, server CPU a pair -12%, scripts/bench-ab);
    /// under load it costs: the lines are written twice (log and audit file), and the shorter
    /// cycle makes the next batch smaller too, so requests share each fsync with fewer others.
    /// With every batch's JSON lines in the log, 50 connections x 16 in flight ran 8% more server
    /// CPU a pair and 12% fewer pairs/s; with batches up to 32 KiB (~70 records), still +4.7% CPU a
    /// pair, the batches settling around that size. At 8 KiB a batch that small only forms under
    /// light load (up to ~10,000 pairs/s here), and the saturated writer keeps the shared fsyncs.
    /// With compact records 3 KiB (17 records), 8 KiB and 32 KiB measured 8.8-10.2, 8.9-9.7 and
    /// 9.1-10.0 us a pair at 50 x 16, alternating: the limit stays.
    static let maximumAuditLinesInLog = 8 << 10

    /// Writes `batch` and makes it durable: its records, and its audit records either in the log
    /// (on the last record, under `sync: always`: one fdatasync for both, the audit file synced
    /// later) or in the audit file synced after the log.
    private func write(_ batch: Batch, _ files: inout Files) throws {
        var sequence = batch.last - UInt64(batch.changes.count)
        var bytes: [UInt8] = []
        if let rotation = batch.rotation {
            // The snapshot cuts the batch at its index: records before it end the old segment.
            self.frame(batch, 0..<rotation.cutIndex, from: &sequence, into: &bytes)
            let cut = bytes.count
            self.frame(batch, rotation.cutIndex..<batch.changes.count, from: &sequence, into: &bytes)
            self.countSinceSnapshot(bytes.count - cut)
            try self.writeAndSync(bytes[..<cut], &files)
            try self.startSegment(firstSequence: rotation.sequence + 1, &files)
            try self.writeAndSync(bytes[cut...], &files)
            // Synced before the snapshot starts: no log segment is ever removed while it holds
            // audit lines that the audit file lacks on disk.
            try self.writeAudit(batch.audit, &files)
            self.startSnapshot(rotation)
            return
        }
        guard let auditLog = files.auditLog, self.sync == .always, !batch.changes.isEmpty, !batch.audit.isEmpty else {
            try files.auditLog?.write(batch.audit)
            return try self.writeThenSyncAudit(batch, &files)
        }
        let rendered = auditLog.render(batch.audit)
        guard rendered.byteCount <= Self.maximumAuditLinesInLog else {
            try auditLog.write(rendered)
            return try self.writeThenSyncAudit(batch, &files)
        }
        // The audit lines ride on the batch's last record: one write and one fdatasync make the
        // changes and their audit records durable together. The audit file gets the same lines
        // after, unsynced: recovery gives it back what a power cut takes from it.
        let last = batch.changes.count - 1
        self.frame(batch, 0..<last, from: &sequence, into: &bytes)
        let header = WalRecordWire.auditLinesHeader(
            firstSequence: rendered.firstSequence,
            count: rendered.count,
            byteCount: rendered.byteCount
        )
        sequence += 1
        var changeBytes = 0
        rendered.withBytes { lines in
            LogSegment.append(sequence: sequence, into: &bytes) { out in
                Self.appendRecord(batch, last, to: &out)
                changeBytes = out.count
                out.append(contentsOf: header)
                out.append(contentsOf: lines)
            }
        }
        // The snapshot policy counts the changes' bytes: replay time is theirs.
        self.countSinceSnapshot(changeBytes)
        try self.writeAndSync(bytes[...], &files)
        try auditLog.write(rendered)
        self.publishAuditHead(auditLog)
    }

    /// Writes and syncs the batch's records, then syncs the audit file, where its audit records
    /// were written already (records with no change, `sync: none`, or lines too many to carry).
    private func writeThenSyncAudit(_ batch: Batch, _ files: inout Files) throws {
        var sequence = batch.last - UInt64(batch.changes.count)
        var bytes: [UInt8] = []
        self.frame(batch, 0..<batch.changes.count, from: &sequence, into: &bytes)
        self.countSinceSnapshot(bytes.count)
        // Both files are written before either is synced: the log's fdatasync commits the file
        // system's journal for both, so the audit file's fdatasync after it finds little left.
        files.auditLog?.startWriteback()
        try self.writeAndSync(bytes[...], &files)
        try self.writeAudit([], &files)
    }

    /// Frames the batch's changes at `part`, numbered on from `sequence`, onto `bytes`.
    private func frame(_ batch: Batch, _ part: Range<Int>, from sequence: inout UInt64, into bytes: inout [UInt8]) {
        for index in part {
            sequence += 1
            LogSegment.append(sequence: sequence, into: &bytes) { Self.appendRecord(batch, index, to: &$0) }
        }
    }

    /// Appends the serialized `WalRecord` of the batch's change at `index`: the caller's, or laid
    /// here in place, off the serving loop.
    private static func appendRecord(_ batch: Batch, _ index: Int, to out: inout [UInt8]) {
        if let record = batch.records[index] {
            out.append(contentsOf: record)
        } else {
            WalRecordWire.append(batch.changes[index], to: &out)
        }
    }

    private func countSinceSnapshot(_ bytes: Int) {
        if bytes > 0 { self.queue.withLock { $0.bytesSinceSnapshot += bytes } }
    }

    /// Writes `events` (those not written yet) and syncs the audit trail.
    private func writeAudit(_ events: [AuditEvent], _ files: inout Files) throws {
        guard let auditLog = files.auditLog else { return }
        try auditLog.write(events)
        try auditLog.sync()
        self.publishAuditHead(auditLog)
    }

    /// The trail's head, for `auditHead`: its records up to here are durable.
    private func publishAuditHead(_ auditLog: AuditLog) {
        let head = AuditHead(sequence: auditLog.lastSequence, hash: auditLog.lastHash, timeMs: auditLog.latestTimeMs)
        self.writtenAuditHead.withLock { $0 = head }
    }

    private func writeAndSync(_ bytes: ArraySlice<UInt8>, _ files: inout Files) throws {
        guard !bytes.isEmpty else { return }
        try bytes.withUnsafeBytes { try files.segment.append($0) }
        if self.sync == .always {
            guard fdatasync(files.segment.fd) == 0 else { throw StoreError.errno("fdatasync failed on", files.segment.path) }
        }
    }

    private func startSegment(firstSequence: UInt64, _ files: inout Files) throws {
        // The new file first: whatever fails, `files.segment` is a file still open.
        let previous = files.segment
        files.segment = try SegmentFile.open(Self.segmentPath(self.directory, firstSequence: firstSequence))
        try previous.close(syncs: self.sync == .always)
        try FileIO.syncDirectory(self.directory)
    }

    /// Encodes and writes the snapshot on a thread of its own (the log goes on being written).
    private func startSnapshot(_ rotation: Rotation) {
        let directory = self.directory
        let retained = self.retainedSnapshots
        let thread = Thread {
            // Below the serving loop, as the audit trail's maintenance is: where both want the
            // CPU, the loop gets it.
            FileIO.lowerToBackground()
            self.writeSnapshot(rotation, directory: directory, retained: retained)
        }
        thread.name = "licensed-snapshot"
        thread.start()
    }

    private func writeSnapshot(_ rotation: Rotation, directory: String, retained: Int) {
        let started = DispatchTime.now()
        let result: Result<SnapshotResult, StoreError>
        do {
            let path = Self.snapshotPath(directory, sequence: rotation.sequence)
            let size = try SnapshotFile.write(
                rotation.content,
                sequence: rotation.sequence,
                takenAtMs: rotation.takenAtMs,
                to: path,
                directory: directory
            )
            // Its time is encoding and writing it, up to durable (removing what it replaces takes
            // longer than it did: `FileIO.removeGradually`).
            let elapsed = Int((DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1_000_000)
            // The snapshot is durable: keep it and the next newest ones, and the log since the
            // oldest kept, so that recovery can fall back when one snapshot is damaged.
            try Self.prune(directory, retaining: retained)
            result = .success(
                SnapshotResult(
                    sequence: rotation.sequence,
                    file: path,
                    sizeBytes: size,
                    durationMs: elapsed,
                    leases: rotation.content.leases.count
                )
            )
        } catch let error as StoreError {
            result = .failure(error)
        } catch {
            result = .failure(StoreError("snapshot failed: \(error)"))
        }
        if case .success = result { self.newestSnapshot.withLock { $0 = (rotation.sequence, rotation.takenAtMs) } }
        self.queue.withLock { $0.snapshotInFlight = false }
        rotation.done(result)
    }
}
