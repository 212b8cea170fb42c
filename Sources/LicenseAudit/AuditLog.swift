import Foundation
public import LicenseCore
import LicenseCrypto
public import LicenseFiles

#if canImport(Glibc)
import Glibc
#endif

/// The writing end of the audit trail: `audit-<first sequence>.jsonl` files in one directory,
/// one JSON line per record, each chained to the one before by its hash. When a file passes
/// `maxFileBytes` the next record starts a new file; the chain goes on across files.
///
/// Not thread-safe: the store's writer thread owns it, so records reach the disk with the
/// write-ahead log's batches and its fsync policy.
public final class AuditLog {
    /// The directory of the files.
    public let directory: String
    /// Size after which a new file is started.
    public let maxFileBytes: Int
    /// fdatasync in `sync()`.
    public let syncs: Bool
    /// Sequence number of the last record written (0 = none yet).
    public private(set) var lastSequence: UInt64
    /// The latest record time in the trail (its last record's at opening, then the latest
    /// written): a time the server has seen, for the clock-setback check.
    public private(set) var latestTimeMs: Int64 = 0
    /// Hash of the last record written (the genesis hash when none).
    public var lastHash: String { String(decoding: self.lastHashBytes, as: UTF8.self) }
    private var lastHashBytes: [UInt8]
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
        self.fd = fd
        self.path = path
        self.fileBytes = fileBytes
        self.lastSequence = last.0
        self.lastHashBytes = Array(last.1.utf8)
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
        // Appended to: the newest file, unless it is compressed (then a new one starts).
        let current =
            files.last.flatMap { $0.compressed ? nil : $0 }
            ?? AuditTrail.File(
                path: AuditTrail.filePath(directory, firstSequence: last.0 + 1),
                firstSequence: last.0 + 1
            )
        if current.path != files.last?.path { fileBytes = 0 }
        let fd = try FileIO.openForAppending(current.path, "the audit trail")
        if current.path != files.last?.path { try FileIO.syncDirectory(directory) }
        let log = AuditLog(
            directory: directory,
            maxFileBytes: maxFileBytes,
            syncs: syncs,
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
            do {
                let result = try FileIO.withLowerPriority {
                    try AuditArchive.maintain(directory: directory, currentFirst: currentFirst, retention: retention, nowMs: nowMs())
                }
                if !result.compressed.isEmpty || !result.removed.isEmpty { report?(.success(result)) }
            } catch let error as StoreError {
                report?(.failure(error))
            } catch {
                report?(.failure(StoreError("audit maintenance failed: \(error)")))
            }
        }
    }

    /// Waits for the maintenance passes scheduled so far.
    public func waitForMaintenance() {
        self.maintenance.sync {}
    }

    /// Numbers, chains and writes `events` (not yet synced: see `sync()`).
    public func write(_ events: [AuditEvent]) throws {
        guard !events.isEmpty else { return }
        var buffer = ByteWriter(capacity: events.count * 512)
        for event in events {
            let sequence = self.lastSequence + 1
            let before = buffer.count
            let hash = self.renderer.append(sequence: sequence, event: event, previousHash: self.lastHashBytes, to: &buffer)
            // The next record's `prev`, copied in place (64 bytes, no array per record).
            let hashBytes = buffer.bytes(hash)
            if self.lastHashBytes.count == hashBytes.count {
                self.lastHashBytes.withUnsafeMutableBytes { $0.copyMemory(from: hashBytes) }
            } else {
                self.lastHashBytes = Array(hashBytes)
            }
            let length = buffer.count - before
            if self.fileBytes + before > 0, self.fileBytes + before + length > self.maxFileBytes {
                // The record starts the next file: write what precedes it, rotate, keep it.
                try self.flush(buffer.bytes(0..<before))
                buffer.removeFirst(before)
                try self.rotate(firstSequence: sequence)
            }
            self.lastSequence = sequence
            self.latestTimeMs = max(self.latestTimeMs, event.timeMs)
        }
        try self.flush(buffer.written)
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
        let path = AuditTrail.filePath(self.directory, firstSequence: firstSequence)
        self.fd = try FileIO.openForAppending(path, "the audit file")
        self.path = path
        self.fileFirstSequence = firstSequence
        self.fileBytes = 0
        try FileIO.syncDirectory(self.directory)
        self.scheduleMaintenance()
    }
}
