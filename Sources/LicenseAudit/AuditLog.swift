import Foundation
public import LicenseCore
public import LicenseCrypto
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
        // The newest file with a record gives the chain's head; the newest file is appended to.
        for (index, file) in files.enumerated().reversed() {
            var bytes = try AuditTrail.contents(of: file.path)
            if file.compressed {
                // Written whole before it replaced the original: nothing torn to cut.
            } else if let newline = bytes.lastIndex(of: 0x0A), newline != bytes.count - 1 {
                let dropped = bytes.count - newline - 1
                guard truncate(file.path, off_t(newline + 1)) == 0 else { throw StoreError.errno("cannot cut the torn tail of", file.path) }
                cut = (file.path, dropped)
                bytes.removeLast(dropped)
            } else if bytes.lastIndex(of: 0x0A) == nil, !bytes.isEmpty {
                guard truncate(file.path, 0) == 0 else { throw StoreError.errno("cannot cut the torn tail of", file.path) }
                cut = (file.path, bytes.count)
                bytes = []
            }
            if index == files.count - 1 { fileBytes = bytes.count }
            guard !bytes.isEmpty else { continue }
            let end = bytes.count - 1
            let start = (bytes[..<end].lastIndex(of: 0x0A).map { $0 + 1 }) ?? 0
            guard let parsed = AuditRecord.parse(bytes[start..<end]) else {
                throw StoreError(
                    "audit trail \(file.path) ends in a line that is not an audit record; run `licensectl audit verify` and move the damaged file aside"
                )
            }
            last = (parsed.record.sequence, parsed.record.hash)
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
        let fd = Glibc.open(current.path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StoreError.errno("cannot open the audit trail", current.path) }
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
    }

    /// Waits for the maintenance passes scheduled so far.
    public func waitForMaintenance() {
        self.maintenance.sync {}
    }

    /// Numbers, chains and writes `events` (not yet synced: see `sync()`).
    public func write(_ events: [AuditEvent]) throws {
        guard !events.isEmpty else { return }
        var buffer: [UInt8] = []
        buffer.reserveCapacity(events.count * 400)
        for event in events {
            let sequence = self.lastSequence + 1
            let before = buffer.count
            let hash = self.renderer.append(sequence: sequence, event: event, previousHash: self.lastHashBytes, to: &buffer)
            let length = buffer.count - before
            if self.fileBytes + before > 0, self.fileBytes + before + length > self.maxFileBytes {
                // The record starts the next file: write what precedes it, rotate, keep it.
                let record = Array(buffer[before...])
                buffer.removeSubrange(before...)
                try self.flush(&buffer)
                try self.rotate(firstSequence: sequence)
                buffer = record
            }
            self.lastSequence = sequence
            self.lastHashBytes = hash
        }
        try self.flush(&buffer)
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

    private func flush(_ buffer: inout [UInt8]) throws {
        guard !buffer.isEmpty else { return }
        try buffer.withUnsafeBytes { try FileIO.writeAll(self.fd, $0, path: self.path) }
        self.fileBytes += buffer.count
        self.unsynced = true
        buffer.removeAll(keepingCapacity: true)
    }

    private func rotate(firstSequence: UInt64) throws {
        try self.sync()
        if self.syncs { guard fsync(self.fd) == 0 else { throw StoreError.errno("fsync failed on", self.path) } }
        Glibc.close(self.fd)
        let path = AuditTrail.filePath(self.directory, firstSequence: firstSequence)
        let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StoreError.errno("cannot create the audit file", path) }
        self.fd = fd
        self.path = path
        self.fileFirstSequence = firstSequence
        self.fileBytes = 0
        try FileIO.syncDirectory(self.directory)
        self.scheduleMaintenance()
    }
}

/// The reading end: listing, verifying and reading the audit trail's files.
public enum AuditTrail {
    /// One file of the trail.
    public struct File: Sendable, Equatable {
        /// Its path.
        public var path: String
        /// The sequence number of its first record, from its name.
        public var firstSequence: UInt64
        /// A rotated file, gzip-compressed (`.jsonl.gz`).
        public var compressed: Bool { self.path.hasSuffix(".gz") }
    }

    /// The first record found out of place.
    public struct Failure: Sendable, Equatable, CustomStringConvertible {
        /// The file.
        public var file: String
        /// Line number in the file (1-based).
        public var line: Int
        /// The record's sequence number, when the line could be read.
        public var sequence: UInt64?
        /// What is wrong.
        public var reason: String

        /// Creates a failure report.
        public init(file: String, line: Int, sequence: UInt64?, reason: String) {
            self.file = file
            self.line = line
            self.sequence = sequence
            self.reason = reason
        }

        public var description: String {
            "\(self.file)\(self.line > 0 ? ":\(self.line)" : "")\(self.sequence.map { " (record \($0))" } ?? ""): \(self.reason)"
        }
    }

    /// What `verify` found.
    public struct Verification: Sendable {
        /// Records read and found in order, before the failure if any.
        public var records = 0
        /// Sequence number of the first record (0 = none).
        public var firstSequence: UInt64 = 0
        /// Sequence number and hash of the last good record.
        public var lastSequence: UInt64 = 0
        /// Hash of the last good record.
        public var lastHash = AuditRecord.genesisHash
        /// The first record out of place; nil = the whole chain holds.
        public var failure: Failure?
        /// Set when the trail starts after record 1 (older files were removed): the chain is checked from there.
        public var startsAfterRemovedFiles = false

        /// An empty result.
        public init() {}
    }

    static func filePath(_ directory: String, firstSequence: UInt64) -> String {
        "\(directory)/audit-\(FileIO.padded(firstSequence)).jsonl"
    }

    /// The trail's files in `directory`, oldest first: `audit-<first>.jsonl`, or `.jsonl.gz` once
    /// compressed (when both are there, compression finished but had not yet removed the original:
    /// the compressed one counts).
    public static func files(in directory: String) throws -> [File] {
        var byFirst: [UInt64: File] = [:]
        for name in try FileIO.list(directory) where name.hasPrefix("audit-") {
            let stem = name.hasSuffix(".jsonl.gz") ? name.dropLast(3) : name[...]
            guard stem.hasSuffix(".jsonl"), let first = UInt64(stem.dropFirst(6).dropLast(6)) else { continue }
            let file = File(path: "\(directory)/\(name)", firstSequence: first)
            if byFirst[first]?.compressed != true { byFirst[first] = file }
        }
        return byFirst.values.sorted { $0.firstSequence < $1.firstSequence }
    }

    /// The bytes of one file of the trail, decompressed when it is compressed.
    public static func contents(of path: String) throws -> [UInt8] {
        path.hasSuffix(".gz") ? try Gzip.decompressFile(path) : try FileIO.readAll(path)
    }

    /// The first record of one file (nil when it has none yet), reading no further than its line.
    static func firstRecord(of path: String) throws -> AuditRecord? {
        var line: [UInt8] = []
        var complete = false
        let scan: (ArraySlice<UInt8>) -> Bool = { chunk in
            if let newline = chunk.firstIndex(of: 0x0A) {
                line.append(contentsOf: chunk[..<newline])
                complete = true
                return false
            }
            line.append(contentsOf: chunk)
            return true
        }
        if path.hasSuffix(".gz") { try Gzip.forEachChunk(of: path, scan) } else { try FileIO.forEachChunk(of: path, scan) }
        guard complete else { return nil }
        guard let parsed = AuditRecord.parse(line[...], checkHash: false) else { throw StoreError("\(path):1 is not an audit record") }
        return parsed.record
    }

    /// Calls `body` with each line of `paths`, in order, with its file and line number.
    public static func forEachLine(
        of paths: [String],
        _ body: (_ path: String, _ lineNumber: Int, _ line: ArraySlice<UInt8>) throws -> Bool
    ) throws {
        for path in paths {
            var stopped = false
            try self.forEachLine(in: try Self.contents(of: path)) { number, line in
                stopped = try !body(path, number, line)
                return !stopped
            }
            if stopped { return }
        }
    }

    /// Calls `body` with each newline-separated line of `bytes` and its number (1-based) until it returns false.
    public static func forEachLine(in bytes: [UInt8], _ body: (_ lineNumber: Int, _ line: ArraySlice<UInt8>) throws -> Bool) rethrows {
        var start = 0
        var number = 0
        while start < bytes.count {
            let end = bytes[start...].firstIndex(of: 0x0A) ?? bytes.count
            number += 1
            guard try body(number, bytes[start..<end]) else { return }
            start = end + 1
        }
    }

    /// Checks every record of `files` (in order): each parses, its hash covers its text, its
    /// sequence number follows the one before and its `prev` is the hash of the one before.
    /// Stops at the first record that fails.
    ///
    /// A trail that starts after record 1 (retention removed older files) must have a
    /// `checkpoint` whose signature verifies — by `trustedKey` when given (the server's key) —
    /// and the kept records must continue it exactly.
    public static func verify(_ files: [File], checkpoint: AuditCheckpoint? = nil, trustedKey: Ed25519PublicKey? = nil) throws
        -> Verification
    {
        let first = files.first?.firstSequence ?? 1
        if first > 1 || checkpoint != nil {
            let where_ = files.first?.path ?? ""
            guard let checkpoint else {
                var result = Verification()
                result.failure = Failure(
                    file: where_,
                    line: 1,
                    sequence: first,
                    reason:
                        "the trail starts at record \(first) and no signed checkpoint (\(AuditCheckpoint.fileName)) vouches for the records before it: files were removed"
                )
                return result
            }
            if let problem = checkpoint.signatureProblem(trustedKey: trustedKey) {
                var result = Verification()
                result.failure = Failure(
                    file: AuditCheckpoint.fileName,
                    line: 0,
                    sequence: checkpoint.sequence,
                    reason: "the checkpoint is \(problem)"
                )
                return result
            }
        }
        var chain = ChainCheck(firstSequence: first, checkpoint: checkpoint)
        try self.forEachLine(of: files.map(\.path)) { path, number, line in
            chain.check(AuditRecord.parse(line), file: path, line: number)
        }
        if chain.result.failure == nil, let last = files.last, chain.result.records > 0, last.firstSequence > chain.result.lastSequence + 1
        {
            chain.result.failure = Failure(
                file: last.path,
                line: 1,
                sequence: nil,
                reason: "the file should start at record \(chain.result.lastSequence + 1), its name says \(last.firstSequence)"
            )
        }
        return chain.result
    }

    /// The chain rules, one record at a time (for files, and for records read back from an export).
    public struct ChainCheck: Sendable {
        /// What was found so far.
        public var result = Verification()
        private var expectedFirst: UInt64

        private var checkpoint: AuditCheckpoint?

        /// Starts a check of a trail whose first record should be `firstSequence` (1 unless older
        /// files were removed), continuing `checkpoint` (whose signature the caller has checked)
        /// when there is one.
        public init(firstSequence: UInt64 = 1, checkpoint: AuditCheckpoint? = nil) {
            self.expectedFirst = max(firstSequence, 1)
            self.checkpoint = checkpoint
        }

        /// Checks the next record (nil: a line that is not a record); false once the chain is broken.
        public mutating func check(_ parsed: AuditRecord.Parsed?, file: String, line: Int) -> Bool {
            guard self.result.failure == nil else { return false }
            func fail(_ sequence: UInt64?, _ reason: String) -> Bool {
                self.result.failure = Failure(file: file, line: line, sequence: sequence, reason: reason)
                return false
            }
            guard let parsed else { return fail(nil, "not an audit record (the line was altered or damaged)") }
            let record = parsed.record
            guard parsed.hashMatches else { return fail(record.sequence, "altered: its hash does not match its content") }
            if let checkpoint, record.sequence <= checkpoint.sequence {
                // A file the checkpoint already covers, not yet removed (a stop between the two).
                if record.sequence == checkpoint.sequence, record.hash != checkpoint.hash {
                    return fail(record.sequence, "its hash is not the one the checkpoint vouches for")
                }
                return true
            }
            if self.result.records == 0 {
                if let checkpoint {
                    self.result.startsAfterRemovedFiles = true
                    guard record.sequence == checkpoint.sequence + 1 else {
                        return fail(
                            record.sequence,
                            "the trail continues the checkpoint at record \(record.sequence), not \(checkpoint.sequence + 1): records \(checkpoint.sequence + 1)–\(record.sequence - 1) are missing"
                        )
                    }
                    guard record.previousHash == checkpoint.hash else {
                        return fail(
                            record.sequence,
                            "does not chain to the checkpoint (the record was replaced, or the checkpoint is not this trail's)"
                        )
                    }
                } else {
                    guard record.sequence == self.expectedFirst else {
                        return fail(
                            record.sequence,
                            "the trail starts at record \(record.sequence), not \(self.expectedFirst): records before it are missing"
                        )
                    }
                    if self.expectedFirst == 1, record.previousHash != AuditRecord.genesisHash {
                        return fail(record.sequence, "the first record does not start the chain")
                    }
                }
                self.result.firstSequence = record.sequence
            } else {
                guard record.sequence == self.result.lastSequence + 1 else {
                    return fail(
                        record.sequence,
                        "record \(record.sequence) follows record \(self.result.lastSequence): records are missing, added or out of order"
                    )
                }
                guard record.previousHash == self.result.lastHash else {
                    return fail(record.sequence, "does not chain to the record before it (that record was altered or replaced)")
                }
            }
            self.result.records += 1
            self.result.lastSequence = record.sequence
            self.result.lastHash = record.hash
            return true
        }
    }

    /// Every record of `files` in order (for exports and reports). Lines that do not parse throw.
    public static func forEachRecord(in files: [File], _ body: (AuditRecord) throws -> Bool) throws {
        try self.forEachLine(of: files.map(\.path)) { path, number, line in
            guard let parsed = AuditRecord.parse(line, checkHash: false) else {
                throw StoreError("\(path):\(number) is not an audit record; run `licensectl audit verify`")
            }
            return try body(parsed.record)
        }
    }
}
