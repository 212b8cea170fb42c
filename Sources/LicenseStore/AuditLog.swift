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
    private var fileBytes: Int
    private var unsynced = false

    private init(directory: String, maxFileBytes: Int, syncs: Bool, fd: Int32, path: String, fileBytes: Int, last: (UInt64, String)) {
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
    public static func open(directory: String, maxFileBytes: Int, syncs: Bool) throws -> AuditLog {
        try FileIO.makeDirectory(directory)
        let files = try AuditTrail.files(in: directory)
        var last: (UInt64, String) = (0, AuditRecord.genesisHash)
        var cut: (String, Int)?
        var fileBytes = 0
        // The newest file with a record gives the chain's head; the newest file is appended to.
        for (index, file) in files.enumerated().reversed() {
            var bytes = try FileIO.readAll(file.path)
            if let newline = bytes.lastIndex(of: 0x0A), newline != bytes.count - 1 {
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
        let path = files.last?.path ?? AuditTrail.filePath(directory, firstSequence: last.0 + 1)
        let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StoreError.errno("cannot open the audit trail", path) }
        if files.isEmpty { try FileIO.syncDirectory(directory) }
        let log = AuditLog(
            directory: directory,
            maxFileBytes: maxFileBytes,
            syncs: syncs,
            fd: fd,
            path: path,
            fileBytes: fileBytes,
            last: last
        )
        log.cutTail = cut
        return log
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

    /// Closes the current file.
    public func close() {
        Glibc.close(self.fd)
        self.fd = -1
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
        self.fileBytes = 0
        try FileIO.syncDirectory(self.directory)
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
        "\(directory)/audit-\(LedgerStore.padded(firstSequence)).jsonl"
    }

    /// The trail's files in `directory`, oldest first.
    public static func files(in directory: String) throws -> [File] {
        try FileIO.list(directory).compactMap { name -> File? in
            guard name.hasPrefix("audit-"), name.hasSuffix(".jsonl"), let first = UInt64(name.dropFirst(6).dropLast(6)) else { return nil }
            return File(path: "\(directory)/\(name)", firstSequence: first)
        }.sorted { $0.firstSequence < $1.firstSequence }
    }

    /// Calls `body` with each line of `paths`, in order, with its file and line number.
    public static func forEachLine(
        of paths: [String],
        _ body: (_ path: String, _ lineNumber: Int, _ line: ArraySlice<UInt8>) throws -> Bool
    ) throws {
        for path in paths {
            var stopped = false
            try self.forEachLine(in: try FileIO.readAll(path)) { number, line in
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
    public static func verify(_ files: [File]) throws -> Verification {
        var chain = ChainCheck(firstSequence: files.first?.firstSequence ?? 1)
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

        /// Starts a check of a trail whose first record should be `firstSequence` (1 unless older files were removed).
        public init(firstSequence: UInt64 = 1) {
            self.expectedFirst = max(firstSequence, 1)
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
            if self.result.records == 0 {
                if self.expectedFirst > 1 { self.result.startsAfterRemovedFiles = true }
                guard record.sequence == self.expectedFirst else {
                    return fail(
                        record.sequence,
                        "the trail starts at record \(record.sequence), not \(self.expectedFirst): records before it are missing"
                    )
                }
                if self.expectedFirst == 1, record.previousHash != AuditRecord.genesisHash {
                    return fail(record.sequence, "the first record does not start the chain")
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
