import LicenseAudit
public import LicenseCore
import LicenseFiles
import LicenseProtocol
import SwiftProtobuf

#if canImport(Glibc)
import Glibc
#endif

/// Recovery could not prove that it holds every acknowledged change. The message names the
/// damaged file(s), the records that would be lost and what the operator can do; the daemon exits
/// EX_DATAERR rather than serve without them.
public struct RecoveryRefusal: Error, CustomStringConvertible, Sendable {
    /// For a person: what is damaged, what would be lost, what to do.
    public var message: String
    /// Creates a refusal.
    public init(_ message: String) { self.message = message }
    public var description: String { self.message }
}

extension LedgerStore {
    /// What recovery found.
    public struct Recovery: Sendable {
        /// Leases of the snapshot, then the log's changes after it, in order: apply them all.
        public var changes: [LedgerChange] = []
        /// Sequence number of the snapshot used (0 = none).
        public var snapshotSequence: UInt64 = 0
        /// The snapshot file used, if any.
        public var snapshotFile: String?
        /// When the snapshot used was taken (0 = none).
        public var snapshotTakenAtMs: Int64 = 0
        /// Log records replayed after the snapshot.
        public var replayedRecords = 0
        /// Last sequence number on disk (or, after accepted loss, the highest one ever handed out).
        public var lastSequence: UInt64 = 0
        /// A torn last write that was cut off: file, offset, bytes dropped.
        public var tornTail: (file: String, offset: Int, droppedBytes: Int)?
        /// Newer snapshots that could not be read, each with the file and reason: recovery used an
        /// older snapshot and the log instead (and lost nothing unless `lostHistory` says so).
        public var passedOver: [String] = []
        /// Older snapshots, not needed this time, that fail their checksum.
        public var damagedOlder: [String] = []
        /// Damaged snapshot files renamed to `*.damaged` (kept for the operator, out of recovery's way).
        public var setAside: [String] = []
        /// With `acceptDataLoss` only: what could not be recovered.
        public var lostHistory: String?
        /// Audit records the audit file lacked and got back from the log's copy of them (written,
        /// not yet synced, when the machine stopped), as the range of their sequence numbers.
        public var auditRestored: ClosedRange<UInt64>?
        /// Why audit lines the log holds could not be given back to the audit file, if so.
        public var auditNotRestored: String?
        /// The log's audit lines that reach past the audit file's last record, for the restore.
        var auditLines: [WalRecordWire.AuditLines] = []
        /// True when a snapshot should be taken before serving: something was damaged, so the
        /// state on disk has less redundancy than it should (or, after accepted loss, a gap).
        public var needsSnapshot: Bool { !self.passedOver.isEmpty || !self.damagedOlder.isEmpty || self.lostHistory != nil }
    }

    /// One log record and the file it was read from.
    private struct LoggedRecord {
        var record: LogSegment.Record
        var file: String
    }

    /// Recovers from the newest readable snapshot and the log after it.
    ///
    /// Every snapshot's sequence number (from its name, even when its contents are damaged), every
    /// log record and every segment's first sequence number is evidence of what was acknowledged.
    /// Recovery uses the newest snapshot it can read — falling back to an older one (two are kept)
    /// — and replays the log from it; if the result does not reach the highest acknowledged
    /// sequence number, it throws a `RecoveryRefusal` that names the damaged files and the
    /// records lost, unless `acceptDataLoss` (an operator's explicit decision) is set.
    /// A torn tail of the last segment is cut off (the file is truncated there).
    ///
    /// `auditAfter` is the audit file's last record: the log's audit lines past it are kept in
    /// `auditLines` for `restoreAudit`.
    static func recover(directory: String, acceptDataLoss: Bool = false, auditAfter: UInt64? = nil) throws -> Recovery {
        var recovery = Recovery()
        // A snapshot cut short by a crash never replaced anything: its temporary file goes, as
        // does what a stop left of a file being removed.
        for name in try FileIO.list(directory) where name.hasSuffix(".snap.tmp") || name.hasSuffix(FileIO.removingSuffix) {
            unlink("\(directory)/\(name)")
        }
        let snapshots = try Self.snapshots(in: directory)
        let segments = try Self.segments(in: directory)

        // The log, as far as it reads.
        var logged: [LoggedRecord] = []
        var logDamage: String?
        for (index, segment) in segments.enumerated() {
            let bytes = try FileIO.readAll(segment.path)
            let result: LogSegment.ReadResult
            do { result = try LogSegment.read(bytes, file: segment.path) } catch {
                logDamage =
                    "write-ahead log \(segment.path) is corrupt at offset \(error.offset) (\(error.reason)) and whole records follow it"
                break
            }
            logged.append(contentsOf: result.records.map { LoggedRecord(record: $0, file: segment.path) })
            if let auditAfter {
                for record in result.records {
                    if let lines = WalRecordWire.auditLines(in: record.body), lines.lastSequence > auditAfter {
                        recovery.auditLines.append(lines)
                    }
                }
            }
            if result.tornTail {
                guard index == segments.count - 1 else {
                    logDamage =
                        "write-ahead log \(segment.path) ends in a damaged record at offset \(result.validLength) but is not the last segment"
                    break
                }
                guard truncate(segment.path, off_t(result.validLength)) == 0 else {
                    throw StoreError.errno("cannot cut the torn tail of", segment.path)
                }
                recovery.tornTail = (segment.path, result.validLength, bytes.count - result.validLength)
            } else if result.validLength < bytes.count, index == segments.count - 1 {
                // Space the writer allocated ahead of its records: cut, as the next writer
                // appends after the records and allocates its own.
                guard truncate(segment.path, off_t(result.validLength)) == 0 else {
                    throw StoreError.errno("cannot cut the allocated tail of", segment.path)
                }
            }
        }

        // The highest sequence number known to have been acknowledged, and how it is known.
        var known: (sequence: UInt64, evidence: String) = (0, "")
        for snapshot in snapshots where snapshot.sequence > known.sequence {
            known = (snapshot.sequence, "\(snapshot.path) covers it")
        }
        if let last = logged.last, last.record.sequence > known.sequence {
            known = (last.record.sequence, "\(last.file) holds it at offset \(last.record.offset)")
        }
        for segment in segments where segment.firstSequence > 0 && segment.firstSequence - 1 > known.sequence {
            known = (segment.firstSequence - 1, "\(segment.path) starts after it")
        }

        // The newest snapshot that reads; the older ones only checked.
        var damaged: [String] = []
        for snapshot in snapshots {
            if recovery.snapshotFile != nil {
                if let problem = try SnapshotFile.checkIntegrity(path: snapshot.path) {
                    recovery.damagedOlder.append(problem)
                    damaged.append(snapshot.path)
                }
                continue
            }
            let decoded: Licensed_V1_Snapshot
            do {
                // The snapshot's leases as grants, with room for the rest and the log after it.
                let moreChanges = logged.reduce(0) { $0 + ($1.record.sequence > snapshot.sequence ? 1 : 0) }
                // Read through once (a small buffer) before it is mapped: a medium error is then
                // an error here, and the older snapshot is used, rather than a SIGBUS under the
                // mapping; the pages it leaves in the page cache are mapped next, and checksummed
                // there by the decoding.
                try FileIO.forEachChunk(of: snapshot.path) { _ in true }
                (decoded, recovery.changes) = try FileIO.withMappedFile(snapshot.path) {
                    try SnapshotFile.decodeChanges($0, file: snapshot.path, moreChanges: moreChanges)
                }
            } catch let error as StoreError {
                recovery.passedOver.append(error.message)
                damaged.append(snapshot.path)
                continue
            }
            // Grants do not depend on trial starts, activations or runs (nor they on grants): these
            // follow the leases so that the leases are decoded straight into the array of changes.
            for (licenseID, atMs) in decoded.trialStartedMs.sorted(by: { $0.key < $1.key }) {
                recovery.changes.append(.trialStarted(licenseID: licenseID, atMs: atMs))
            }
            for stored in decoded.activations { recovery.changes.append(.activated(Activation(stored: stored))) }
            for run in decoded.assignmentRuns { recovery.changes.append(.assignmentRun(run)) }
            if decoded.clockHighWaterMs > 0 { recovery.changes.append(.clockMarked(atMs: decoded.clockHighWaterMs)) }
            recovery.snapshotSequence = decoded.sequence
            recovery.snapshotFile = snapshot.path
            recovery.snapshotTakenAtMs = decoded.takenAtMs
        }

        // The log after the snapshot, while it is contiguous.
        recovery.lastSequence = recovery.snapshotSequence
        var gap: String?
        for entry in logged where entry.record.sequence > recovery.snapshotSequence {
            let record = entry.record
            let place = "\(entry.file) at offset \(record.offset)"
            guard record.sequence == recovery.lastSequence + 1 else {
                gap = "the next record in the log is \(record.sequence) (\(place))"
                break
            }
            guard let change = WalRecordWire.change(from: record.body) else {
                gap = "record \(record.sequence) (\(place)) has a valid checksum but is not a known change"
                break
            }
            recovery.changes.append(change)
            recovery.lastSequence = record.sequence
            recovery.replayedRecords += 1
        }

        let reached = recovery.lastSequence
        if reached < known.sequence || logDamage != nil || gap != nil {
            var parts = recovery.passedOver
            if let logDamage { parts.append(logDamage) }
            let from = recovery.snapshotFile.map { "snapshot \($0) (records up to \(recovery.snapshotSequence))" } ?? "no snapshot"
            parts.append("recovery from \(from) and the log reaches record \(reached)" + (gap.map { "; \($0)" } ?? ""))
            if known.sequence > reached {
                let count = known.sequence - reached
                parts.append(
                    "record \(known.sequence) was acknowledged (\(known.evidence)), so records \(reached + 1)–\(known.sequence) (\(count) change\(count == 1 ? "" : "s")) would be lost"
                )
            }
            let message = "cannot recover every acknowledged change: " + parts.joined(separator: "; ")
            guard acceptDataLoss else {
                throw RecoveryRefusal(
                    message
                        + ". Restore the damaged file(s) from a backup, or start once with --accept-data-loss to serve without the lost changes (the start is audited)"
                )
            }
            recovery.lostHistory = message
            // New records must never reuse a number that a file on disk may still hold.
            recovery.lastSequence = max(reached, known.sequence)
        }

        // Recovered: damaged snapshots are moved out of the way (kept for the operator) so that
        // they are never counted as one of the retained copies.
        for path in damaged {
            guard rename(path, path + ".damaged") == 0 else { throw StoreError.errno("cannot set aside the damaged snapshot", path) }
            recovery.setAside.append(path + ".damaged")
        }
        if !damaged.isEmpty { try FileIO.syncDirectory(directory) }
        return recovery
    }

    /// Gives `audit` the records of `recovery.auditLines` it lacks, in order, and syncs it. A
    /// line that does not continue its chain stops the restore (recorded in `auditNotRestored`):
    /// the trail then goes on from its own last record.
    static func restoreAudit(_ recovery: inout Recovery, into audit: AuditLog) throws {
        defer { recovery.auditLines = [] }
        let before = audit.lastSequence
        for lines in recovery.auditLines {
            do {
                _ = try audit.restore(firstSequence: lines.firstSequence, count: Int(lines.count), lines: lines.lines)
            } catch let mismatch as AuditLog.RestoreMismatch {
                recovery.auditNotRestored = mismatch.description
                break
            }
        }
        guard audit.lastSequence > before else { return }
        try audit.sync()
        recovery.auditRestored = (before + 1)...audit.lastSequence
    }
}

extension LedgerStore.Recovery {
    /// What this recovery means to the host, in the terms every `CommitLog` uses: the changes to
    /// replay, what was found damaged or lost, and the facts for the `start` audit record.
    public func replay(sync: LedgerStore.SyncPolicy) -> RecoveredLedger {
        var findings: [(RecoveredLedger.Severity, String)] = []
        if let torn = self.tornTail {
            findings.append(
                (
                    .warning,
                    "write-ahead log \(torn.file): cut a torn last write at offset \(torn.offset) (\(torn.droppedBytes) bytes of a write that was never acknowledged)"
                )
            )
        }
        for damaged in self.passedOver {
            findings.append((.error, "\(damaged); recovered from the older snapshot \(self.snapshotFile ?? "(none)") and the log instead"))
        }
        for damaged in self.damagedOlder { findings.append((.error, "\(damaged) (not needed this time; a fresh snapshot replaces it)")) }
        for file in self.setAside { findings.append((.warning, "damaged snapshot kept for inspection as \(file)")) }
        if let lost = self.lostHistory { findings.append((.critical, "started with --accept-data-loss: \(lost)")) }
        if let restored = self.auditRestored {
            findings.append(
                (
                    .warning,
                    "audit trail: records \(restored.lowerBound)–\(restored.upperBound) were durable in the write-ahead log but not in the audit file (the machine stopped before it was synced); copied back from the log"
                )
            )
        }
        if let problem = self.auditNotRestored {
            findings.append((.error, "audit trail: \(problem); it goes on from its own last record. Run `licensectl audit verify`"))
        }
        var details: [(String, AuditEvent.Value)] = [("snapshot", .string(self.snapshotFile ?? ""))]
        if !self.passedOver.isEmpty { details.append(("snapshots_passed_over", .strings(self.passedOver))) }
        if !self.damagedOlder.isEmpty { details.append(("snapshots_damaged", .strings(self.damagedOlder))) }
        if let lost = self.lostHistory { details.append(("data_loss_accepted", .string(lost))) }
        return RecoveredLedger(
            changes: self.changes,
            findings: findings,
            auditDetails: details,
            summary: [
                ("snapshot", self.snapshotFile ?? "none"), ("snapshot_sequence", "\(self.snapshotSequence)"),
                ("replayed_records", "\(self.replayedRecords)"), ("sync", sync.rawValue),
            ],
            needsSnapshot: self.needsSnapshot
        )
    }
}
