import Foundation
import LicenseCore
public import LicenseCrypto
import LicenseFiles

#if canImport(Glibc)
import Glibc
#endif

/// The reading end: listing, verifying and reading the audit trail's files.
public enum AuditTrail {
    /// One file of the trail.
    public struct File: Sendable, Equatable {
        /// Its path.
        public var path: String
        /// The sequence number of its first record, from its name.
        public var firstSequence: UInt64
        /// A rotated file, compressed (`.rec.zst` or `.jsonl.zst`, or `.gz` when gzip was chosen).
        public var compressed: Bool { FileCompression(path: self.path) != nil }
        /// The format its name says it was started in (its records say each their own).
        public var format: AuditFormat { AuditTrail.format(ofName: self.path) ?? .compact }
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

    static func filePath(_ directory: String, firstSequence: UInt64, format: AuditFormat) -> String {
        "\(directory)/audit-\(FileIO.padded(firstSequence))\(format.fileSuffix)"
    }

    /// The format whose files end in the suffix that `name` ends in (before a compression's), if any.
    static func format(ofName name: some StringProtocol) -> AuditFormat? {
        let stem = FileCompression(path: String(name)).map { name.dropLast($0.suffix.count) } ?? name[...]
        return AuditFormat.allCases.first { stem.hasSuffix($0.fileSuffix) }
    }

    /// The trail's files in `directory`, oldest first: `audit-<first>.rec` or `.jsonl`, or with
    /// `.zst` (`.gz`) after it once compressed (when both are there, compression finished but had
    /// not yet removed the original: the compressed one counts).
    public static func files(in directory: String) throws -> [File] {
        var byFirst: [UInt64: File] = [:]
        for name in try FileIO.list(directory) where name.hasPrefix("audit-") {
            let stem = FileCompression(path: name).map { name.dropLast($0.suffix.count) } ?? name[...]
            guard let format = Self.format(ofName: stem),
                let first = UInt64(stem.dropFirst(6).dropLast(format.fileSuffix.count))
            else { continue }
            let file = File(path: "\(directory)/\(name)", firstSequence: first)
            if byFirst[first]?.compressed != true { byFirst[first] = file }
        }
        return byFirst.values.sorted { $0.firstSequence < $1.firstSequence }
    }

    /// The bytes of one file of the trail, decompressed when it is compressed.
    public static func contents(of path: String) throws -> [UInt8] {
        try FileCompression.contents(of: path)
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
        try FileCompression.forEachChunk(of: path, scan)
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

    /// The newest `limit` records of the trail in `directory` that `matches` accepts, newest
    /// first. Reads files from the newest back, and stops at the first file that completes them.
    public static func recent(in directory: String, limit: Int, matching matches: (AuditRecord) -> Bool) throws -> [AuditRecord] {
        var found: [AuditRecord] = []
        for file in try self.files(in: directory).reversed() {
            var inFile: [AuditRecord] = []
            try self.forEachRecord(in: [file]) { record in
                if matches(record) { inFile.append(record) }
                return true
            }
            found += inFile.reversed()
            if found.count >= limit { break }
        }
        return Array(found.prefix(limit))
    }
}
