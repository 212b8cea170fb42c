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
            let started = DispatchTime.now().uptimeNanoseconds
            // Encoded here, off the serving loop: one buffer of framed records for the batch.
            // A snapshot cuts the batch at its index: records before it end the old segment.
            var bytes: [UInt8] = []
            var sequence = batch.last - UInt64(batch.changes.count)
            func encode(_ part: Range<Int>) {
                for index in part {
                    sequence += 1
                    // Serializing a message of known fields cannot fail.
                    let body = batch.records[index] ?? WalRecordWire.bytes(of: batch.changes[index])
                    LogSegment.encode(sequence: sequence, body: body, into: &bytes)
                }
            }
            let cutIndex = batch.rotation?.cutIndex ?? 0
            encode(0..<cutIndex)
            let cutOffset = bytes.count
            encode(cutIndex..<batch.changes.count)
            let bytesAfterCut = bytes.count - cutOffset
            if bytesAfterCut > 0 { self.queue.withLock { $0.bytesSinceSnapshot += bytesAfterCut } }
            let outcome = self.files.withLock { files -> (reported: UInt64, error: (any Error)?) in
                do {
                    if let rotation = batch.rotation {
                        try self.writeAndSync(bytes[..<cutOffset], &files)
                        try self.startSegment(firstSequence: rotation.sequence + 1, &files)
                        try self.writeAndSync(bytes[cutOffset...], &files)
                        self.startSnapshot(rotation)
                        try self.writeAudit(batch.audit, &files)
                    } else {
                        // Both files are written before either is synced: the log's fdatasync
                        // commits the file system's journal for both, so the audit file's
                        // fdatasync after it finds little left to do.
                        try files.auditLog?.write(batch.audit)
                        files.auditLog?.startWriteback()
                        try self.writeAndSync(bytes[...], &files)
                        try self.writeAudit([], &files)
                    }
                } catch {
                    return (files.lastReported, error)
                }
                let previous = files.lastReported
                files.lastReported = batch.last
                return (previous, nil)
            }
            if let error = outcome.error {
                // Nothing more is taken: appends are dropped, snapshots refused, close returns.
                self.queue.withLock { $0.stopping = true }
                signals.fatal("\(error); stopping: an acknowledged change may not be on disk, and a failed fsync is never retried")
                break
            }
            if !batch.changes.isEmpty {
                signals.synced(Int(batch.last - outcome.reported), DispatchTime.now().uptimeNanoseconds - started)
                signals.durable(batch.last)
            }
        }
        self.files.withLock { files in
            Glibc.close(files.segmentFD)
            files.auditLog?.close()
        }
        self.finished.signal()
    }

    /// Writes `events` (those not written yet) and syncs the audit trail.
    private func writeAudit(_ events: [AuditEvent], _ files: inout Files) throws {
        guard let auditLog = files.auditLog else { return }
        try auditLog.write(events)
        try auditLog.sync()
        let head = AuditHead(sequence: auditLog.lastSequence, hash: auditLog.lastHash, timeMs: auditLog.latestTimeMs)
        self.writtenAuditHead.withLock { $0 = head }
    }

    private func writeAndSync(_ bytes: ArraySlice<UInt8>, _ files: inout Files) throws {
        guard !bytes.isEmpty else { return }
        let fd = files.segmentFD
        let path = files.segmentPath
        try bytes.withUnsafeBytes { try FileIO.writeAll(fd, $0, path: path) }
        if self.sync == .always {
            guard fdatasync(fd) == 0 else { throw StoreError.errno("fdatasync failed on", path) }
        }
    }

    private func startSegment(firstSequence: UInt64, _ files: inout Files) throws {
        try FileIO.closeAppended(files.segmentFD, path: files.segmentPath, syncs: self.sync == .always)
        let path = Self.segmentPath(self.directory, firstSequence: firstSequence)
        files.segmentFD = try FileIO.openForAppending(path, "the write-ahead log segment")
        files.segmentPath = path
        try FileIO.syncDirectory(self.directory)
    }

    /// Encodes and writes the snapshot on a thread of its own (the log goes on being written).
    private func startSnapshot(_ rotation: Rotation) {
        let directory = self.directory
        let retained = self.retainedSnapshots
        Thread.detachNewThread {
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
                // The snapshot is durable: keep it and the next newest ones, and the log since the
                // oldest kept, so that recovery can fall back when one snapshot is damaged.
                try Self.prune(directory, retaining: retained)
                let elapsed = Int((DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1_000_000)
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
}
