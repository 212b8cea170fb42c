import Foundation
public import LicenseCore
import LicenseCrypto
public import LicenseFiles

#if canImport(Glibc)
import Glibc
#endif

/// The writing end of the audit trail: `audit-<first sequence>.rec` files in one directory (or
/// `.jsonl` in the JSON lines format), one record a line, each chained to the one before by its
/// hash. When a file passes `maxFileBytes` the next record starts a new file; the chain goes on
/// across files, and across formats when the format is changed (a new file starts in the new one).
///
/// Not thread-safe: the store's writer thread owns it, so records reach the disk with the
/// write-ahead log's batches and its fsync policy: under `sync: always` the log carries each
/// batch's lines (`render(_:)`), and `restore` gives this file back any that a power cut took
/// before it was synced.
public final class AuditLog {
    /// The directory of the files.
    public let directory: String
    /// Size after which a new file is started.
    public let maxFileBytes: Int
    /// fdatasync in `sync()`.
    public let syncs: Bool
    /// How records are written.
    public let format: AuditFormat
    /// Sequence number of the last record written (0 = none yet).
    public private(set) var lastSequence: UInt64
    /// The latest record time in the trail (its last record's at opening, then the latest
    /// written): a time the server has seen, for the clock-setback check.
    public private(set) var latestTimeMs: Int64 = 0
    /// Hash of the last record written (the genesis hash when none).
    public var lastHash: String { AuditRenderer.hexString(self.lastDigest) }
    private var lastDigest: AuditRenderer.Digest
    private var renderer = AuditRenderer()
    /// What opening found at the end of the last file and cut off (a torn last write), if anything.
    public private(set) var cutTail: (file: String, droppedBytes: Int)?

    private var fd: Int32
    private var path: String
    private var fileFirstSequence: UInt64
    private var fileBytes: Int
    private var unsynced = false
    /// Where in the current file the bytes not yet synced begin.
    private var unsyncedFrom = 0
    /// Compression and removal of rotated files.
    public let retention: AuditRetention
    /// Told what each maintenance pass did, or why it failed (for the log).
    public var onMaintenance: (@Sendable (Result<AuditArchive.Report, StoreError>) -> Void)?
    /// Maintenance runs here, one pass at a time, never on the writer thread: compressing a 64 MiB
    /// file takes about a second.
    private let maintenance = DispatchQueue(label: "licensed-audit-maintenance")
    private let nowMs: @Sendable () -> Int64

    private init(
        directory: String,
        maxFileBytes: Int,
        syncs: Bool,
        format: AuditFormat,
        retention: AuditRetention,
        nowMs: @escaping @Sendable () -> Int64,
        fd: Int32,
        path: String,
        firstSequence: UInt64,
        fileBytes: Int,
        last: (UInt64, String)
    ) {
        self.retention = retention
        self.nowMs = nowMs
        self.fileFirstSequence = firstSequence
        self.directory = directory
        self.maxFileBytes = maxFileBytes
        self.syncs = syncs
        self.format = format
        self.fd = fd
        self.path = path
        self.fileBytes = fileBytes
        self.lastSequence = last.0
        self.lastDigest = AuditRenderer.digest(hex: last.1)
    }

    /// Opens the trail in `directory` (created if missing) for appending after its last record.
    /// A last line without its newline (a write torn by a crash) is cut off; a last whole line
    /// that is not a record stops the opening, as a damaged trail must be looked at, not extended.
    ///
    /// Rotated files are compressed and removed by `retention` in the background, after each
    /// rotation and once here; `close()` waits for a pass under way.
    public static func open(
        directory: String,
        maxFileBytes: Int,
        syncs: Bool,
        format: AuditFormat = .compact,
        retention: AuditRetention = .keepAll,
        nowMs: @escaping @Sendable () -> Int64 = { SystemClock().nowMs() }
    ) throws -> AuditLog {
        try FileIO.makeDirectory(directory)
        let files = try AuditTrail.files(in: directory)
        var last: (UInt64, String) = (0, AuditRecord.genesisHash)
        var cut: (String, Int)?
        var fileBytes = 0
        var latestTimeMs: Int64 = 0
        // The newest file with a record gives the chain's head; the newest file is appended to.
        for (index, file) in files.enumerated().reversed() {
            // All that is needed of a file is its last line and whatever follows it: read from
            // the end until the bytes hold the newline before the last one (or the file's start).
            var (bytes, offset) =
                file.compressed
                ? (try AuditTrail.contents(of: file.path), 0)
                : try FileIO.readTail(file.path) { tail in
                    guard let last = tail.lastIndex(of: 0x0A) else { return false }
                    return tail[..<last].contains(0x0A)
                }
            if file.compressed {
                // Written whole before it replaced the original: nothing torn to cut.
            } else if let newline = bytes.lastIndex(of: 0x0A), newline != bytes.count - 1 {
                let dropped = bytes.count - newline - 1
                guard truncate(file.path, off_t(offset + newline + 1)) == 0 else {
                    throw StoreError.errno("cannot cut the torn tail of", file.path)
                }
                cut = (file.path, dropped)
                bytes.removeLast(dropped)
            } else if bytes.lastIndex(of: 0x0A) == nil, !bytes.isEmpty {
                guard truncate(file.path, 0) == 0 else { throw StoreError.errno("cannot cut the torn tail of", file.path) }
                cut = (file.path, bytes.count)
                bytes = []
            }
            if index == files.count - 1 { fileBytes = offset + bytes.count }
            guard !bytes.isEmpty else { continue }
            let end = bytes.count - 1
            let start = (bytes[..<end].lastIndex(of: 0x0A).map { $0 + 1 }) ?? 0
            guard let parsed = AuditRecord.parse(bytes[start..<end]) else {
                throw StoreError(
                    "audit trail \(file.path) ends in a line that is not an audit record; run `licensectl audit verify` and move the damaged file aside"
                )
            }
            last = (parsed.record.sequence, parsed.record.hash)
            latestTimeMs = parsed.record.timeMs
            break
        }
        // Appended to: the newest file, unless it is compressed or of the other format (then a
        // new one starts; an empty one of the other format, left by a start that wrote nothing,
        // is removed first, as the new one takes its name's sequence).
        if let newest = files.last, !newest.compressed, newest.format != format, fileBytes == 0 {
            guard unlink(newest.path) == 0 else { throw StoreError.errno("cannot remove the empty audit file", newest.path) }
        }
        let current =
            files.last.flatMap { $0.compressed || $0.format != format ? nil : $0 }
            ?? AuditTrail.File(
                path: AuditTrail.filePath(directory, firstSequence: last.0 + 1, format: format),
                firstSequence: last.0 + 1
            )
        if current.path != files.last?.path { fileBytes = 0 }
        let fd = try FileIO.openForAppending(current.path, "the audit trail")
        if current.path != files.last?.path { try FileIO.syncDirectory(directory) }
        let log = AuditLog(
            directory: directory,
            maxFileBytes: maxFileBytes,
            syncs: syncs,
            format: format,
            retention: retention,
            nowMs: nowMs,
            fd: fd,
            path: current.path,
            firstSequence: current.firstSequence,
            fileBytes: fileBytes,
            last: last
        )
        log.cutTail = cut
        log.latestTimeMs = latestTimeMs
        return log
    }

    /// Runs one maintenance pass in the background (compression, retention), for the files
    /// before the current one. The daemon calls it once after start; rotations call it too.
    public func scheduleMaintenance() {
        guard self.retention.isActive else { return }
        let (directory, currentFirst, retention, nowMs) = (self.directory, self.fileFirstSequence, self.retention, self.nowMs)
        let report = self.onMaintenance
        self.maintenance.async {
            // On a thread of its own below the serving loop (`FileIO.lowerToBackground`); the
            // queue keeps the passes in order, and `waitForMaintenance` waiting for them.
            let done = DispatchSemaphore(value: 0)
            let thread = Thread {
                defer { done.signal() }
                FileIO.lowerToBackground()
                do {
                    let result = try AuditArchive.maintain(
                        directory: directory,
                        currentFirst: currentFirst,
                        retention: retention,
                        nowMs: nowMs()
                    )
                    if !result.compressed.isEmpty || !result.removed.isEmpty { report?(.success(result)) }
                } catch let error as StoreError {
                    report?(.failure(error))
                } catch {
                    report?(.failure(StoreError("audit maintenance failed: \(error)")))
                }
            }
            thread.name = "licensed-audit"
            thread.start()
            done.wait()
        }
    }

    /// Waits for the maintenance passes scheduled so far.
    public func waitForMaintenance() {
        self.maintenance.sync {}
    }

    /// Numbers, chains and writes `events` (not yet synced: see `sync()`).
    public func write(_ events: [AuditEvent]) throws {
        try self.write(self.render(events))
    }

    /// Numbers and chains `events` as the trail's next records and renders their lines, for
    /// `write(_:)`: the trail counts them as written from here on (its last sequence and hash are
    /// theirs), so they must be written next, and before any other records are rendered.
    public func render(_ events: [AuditEvent]) -> Rendered {
        var buffer = ByteWriter(capacity: events.count * (self.format == .compact ? 192 : 512))
        let first = self.lastSequence + 1
        // By index: the array's element is read in place (a `for in` copies each event out, with
        // a retain and release of each of its strings).
        for index in events.indices {
            let sequence = self.lastSequence + 1
            self.lastDigest = self.renderer.append(
                format: self.format,
                sequence: sequence,
                event: events[index],
                previous: self.lastDigest,
                to: &buffer
            )
            self.lastSequence = sequence
            self.latestTimeMs = max(self.latestTimeMs, events[index].timeMs)
        }
        return Rendered(firstSequence: first, count: events.count, buffer: buffer)
    }

    /// Records rendered by `render(_:)`: their lines, one each with its newline.
    public struct Rendered: ~Copyable {
        /// Sequence number of the first.
        public let firstSequence: UInt64
        /// How many.
        public let count: Int
        fileprivate var buffer: ByteWriter

        /// The lines' bytes, for as long as `body` runs.
        public func withBytes<Result>(_ body: (UnsafeRawBufferPointer) throws -> Result) rethrows -> Result {
            try body(self.buffer.written)
        }

        /// Their size in bytes.
        public var byteCount: Int { self.buffer.count }
    }

    /// Writes records rendered by `render(_:)` (not yet synced: see `sync()`). A record that
    /// would take the current file past `maxFileBytes` starts the next file.
    public func write(_ rendered: borrowing Rendered) throws {
        let bytes = rendered.buffer.written
        guard !bytes.isEmpty else { return }
        guard self.fileBytes + bytes.count > self.maxFileBytes else { return try self.flush(bytes) }
        // Some record starts a new file: find which, line by line.
        try self.write(lines: bytes, firstSequence: rendered.firstSequence)
    }

    /// Writes whole `lines` (each with its newline) numbered from `firstSequence`, rotating before
    /// a line that would take the current file past `maxFileBytes`.
    private func write(lines bytes: UnsafeRawBufferPointer, firstSequence: UInt64) throws {
        var flushed = 0
        var start = 0
        var sequence = firstSequence
        while start < bytes.count {
            let end = (bytes[start...].firstIndex(of: 0x0A) ?? bytes.count - 1) + 1
            let pending = start - flushed
            if self.fileBytes + pending > 0, self.fileBytes + pending + (end - start) > self.maxFileBytes {
                try self.flush(UnsafeRawBufferPointer(rebasing: bytes[flushed..<start]))
                flushed = start
                try self.rotate(firstSequence: sequence)
            }
            start = end
            sequence += 1
        }
        try self.flush(UnsafeRawBufferPointer(rebasing: bytes[flushed...]))
    }

    /// A restore that would break the chain: the lines offered do not continue the trail.
    public struct RestoreMismatch: Error, CustomStringConvertible, Sendable {
        /// What does not fit, for a person.
        public var description: String
    }

    /// Appends those of `lines` — `count` records from `firstSequence`, each a JSON line with its
    /// newline, as `render(_:)` made them (in either format) and a store kept them — that come after the trail's last
    /// record: a trail whose unsynced tail a power cut took back gets it again from the log.
    /// Returns how many were appended (0 when the trail has them all). Throws `RestoreMismatch`
    /// when they would leave a gap or do not continue the chain (the line's `seq` or `prev` is not
    /// the next), appending nothing of that line on; other errors are the files'.
    public func restore(firstSequence: UInt64, count: Int, lines: ArraySlice<UInt8>) throws -> Int {
        let last = firstSequence + UInt64(count) - 1
        guard count > 0, last > self.lastSequence else { return 0 }
        guard firstSequence <= self.lastSequence + 1 else {
            throw RestoreMismatch(
                description:
                    "the audit trail ends at record \(self.lastSequence) and the log's audit lines resume at \(firstSequence): records \(self.lastSequence + 1)–\(firstSequence - 1) are in neither"
            )
        }
        // The lines that continue the chain are checked one by one and written together.
        var start = lines.startIndex
        var sequence = firstSequence
        var from: (index: Int, sequence: UInt64)?
        var mismatch: RestoreMismatch?
        while start < lines.endIndex, sequence <= last {
            guard let newline = lines[start...].firstIndex(of: 0x0A) else {
                mismatch = RestoreMismatch(description: "the log's audit line for record \(sequence) has no newline")
                break
            }
            if sequence > self.lastSequence {
                guard let parsed = AuditRecord.parse(lines[start..<newline]), parsed.hashMatches,
                    parsed.record.sequence == sequence, parsed.record.previousHash == self.lastHash
                else {
                    mismatch = RestoreMismatch(
                        description:
                            "the log's audit line for record \(sequence) does not continue the trail (after record \(self.lastSequence), hash \(self.lastHash))"
                    )
                    break
                }
                if from == nil { from = (start, sequence) }
                self.lastSequence = sequence
                self.lastDigest = AuditRenderer.digest(hex: parsed.record.hash)
                self.latestTimeMs = max(self.latestTimeMs, parsed.record.timeMs)
            }
            start = newline + 1
            sequence += 1
        }
        var appended = 0
        if let from {
            appended = Int(self.lastSequence - from.sequence + 1)
            try lines[from.index..<start].withUnsafeBytes { try self.write(lines: $0, firstSequence: from.sequence) }
        }
        if let mismatch { throw mismatch }
        return appended
    }

    /// Starts writing the bytes not yet synced to disk, without waiting for them. The store calls
    /// it before the write-ahead log's fdatasync: the file system allocates this file's blocks now,
    /// in the journal transaction that fdatasync commits, and `sync()` then finds the data
    /// written and nothing left to commit — without it, it wrote back and committed again.
    public func startWriteback() {
        guard self.unsynced, self.syncs else { return }
        FileIO.startWriteback(self.fd, offset: self.unsyncedFrom, count: self.fileBytes - self.unsyncedFrom)
    }

    /// Makes everything written durable (when the policy syncs).
    public func sync() throws {
        guard self.unsynced else { return }
        self.unsynced = false
        guard self.syncs else { return }
        guard fdatasync(self.fd) == 0 else { throw StoreError.errno("fdatasync failed on", self.path) }
    }

    /// Closes the current file, after any maintenance pass under way.
    public func close() {
        Glibc.close(self.fd)
        self.fd = -1
        self.waitForMaintenance()
    }

    private func flush(_ bytes: UnsafeRawBufferPointer) throws {
        guard !bytes.isEmpty else { return }
        try FileIO.writeAll(self.fd, bytes, path: self.path)
        if !self.unsynced { self.unsyncedFrom = self.fileBytes }
        self.fileBytes += bytes.count
        self.unsynced = true
    }

    private func rotate(firstSequence: UInt64) throws {
        try self.sync()
        try FileIO.closeAppended(self.fd, path: self.path, syncs: self.syncs)
        let path = AuditTrail.filePath(self.directory, firstSequence: firstSequence, format: self.format)
        self.fd = try FileIO.openForAppending(path, "the audit file")
        self.path = path
        self.fileFirstSequence = firstSequence
        self.fileBytes = 0
        try FileIO.syncDirectory(self.directory)
        self.scheduleMaintenance()
    }
}
