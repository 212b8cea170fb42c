import Foundation
public import LicenseCrypto
public import LicenseFiles

#if canImport(Glibc)
import Glibc
#endif

/// How long the audit trail keeps its rotated files, and whether it compresses them.
public struct AuditRetention: Sendable {
    /// How each file is compressed once the trail has moved on to the next (zstd about 8:1 on
    /// audit records, gzip about 7:1); nil keeps them as written.
    public var compression: FileCompression?
    /// Most files kept, the current one included (0 = no limit).
    public var maxFiles: Int
    /// Most bytes kept on disk, all files together (0 = no limit).
    public var maxBytes: Int
    /// Rotated files last written longer ago than this are removed (0 = no limit).
    public var maxAgeMs: Int64
    /// Signs the checkpoint left in place of removed files (the server's key). Removal needs it.
    public var signer: Ed25519PrivateKey?

    /// Keeps every file as written: no compression, no removal.
    public static let keepAll = AuditRetention(compression: nil)

    /// A policy; with any limit set, `signer` is required.
    public init(
        compression: FileCompression? = .zstd,
        maxFiles: Int = 0,
        maxBytes: Int = 0,
        maxAgeMs: Int64 = 0,
        signer: Ed25519PrivateKey? = nil
    ) {
        self.compression = compression
        self.maxFiles = maxFiles
        self.maxBytes = maxBytes
        self.maxAgeMs = maxAgeMs
        self.signer = signer
    }

    /// True when the policy changes anything on disk.
    public var isActive: Bool { self.compression != nil || self.removes }
    var removes: Bool { self.maxFiles > 0 || self.maxBytes > 0 || self.maxAgeMs > 0 }
}

/// Compression and retention of the audit trail's rotated files, done off the writer thread.
public enum AuditArchive {
    /// What one pass did.
    public struct Report: Sendable, Equatable {
        /// Files compressed.
        public var compressed: [String] = []
        /// Files removed by retention.
        public var removed: [String] = []
        /// The checkpoint written for them.
        public var checkpoint: AuditCheckpoint?
    }

    /// One pass over `directory`: compresses every rotated file (those before the file starting at
    /// `currentFirst`, which is still being written and is never touched), then removes the oldest
    /// files while the policy's limits are passed — after writing the signed checkpoint of the last
    /// record removed, so that `audit verify` proves the rest.
    public static func maintain(directory: String, currentFirst: UInt64, retention: AuditRetention, nowMs: Int64) throws -> Report {
        var report = Report()
        let names = Set(try FileIO.list(directory))
        for name in names where name.hasPrefix("audit-") && name.hasSuffix(FileIO.removingSuffix) { unlink("\(directory)/\(name)") }
        for format in FileCompression.allCases {
            for name in names where name.hasPrefix("audit-") && name.hasSuffix(format.suffix + ".tmp") { unlink("\(directory)/\(name)") }
            // An original left next to its compressed copy (a stop between rename and unlink).
            for name in names
            where name.hasPrefix("audit-") && AuditTrail.format(ofName: name) != nil && names.contains(name + format.suffix) {
                unlink("\(directory)/\(name)")
            }
        }
        if let format = retention.compression {
            for file in try AuditTrail.files(in: directory) where file.firstSequence < currentFirst && !file.compressed {
                try format.compressFile(file.path, to: file.path + format.suffix, directory: directory)
                try FileIO.removeGradually([file.path], directory: directory)
                report.compressed.append(file.path + format.suffix)
            }
        }
        guard retention.removes else { return report }
        let files = try AuditTrail.files(in: directory)
        var sizes: [Int] = []
        var ages: [Int64] = []
        for file in files {
            var info = stat()
            guard stat(file.path, &info) == 0 else { throw StoreError.errno("cannot stat", file.path) }
            sizes.append(Int(info.st_size))
            ages.append(nowMs - (Int64(info.st_mtim.tv_sec) * 1000 + Int64(info.st_mtim.tv_nsec) / 1_000_000))
        }
        var count = files.count
        var bytes = sizes.reduce(0, +)
        var removing = 0
        for (index, file) in files.enumerated() where file.firstSequence < currentFirst {
            let over =
                (retention.maxFiles > 0 && count > retention.maxFiles) || (retention.maxBytes > 0 && bytes > retention.maxBytes)
                || (retention.maxAgeMs > 0 && ages[index] > retention.maxAgeMs)
            guard over else { break }
            count -= 1
            bytes -= sizes[index]
            removing += 1
        }
        guard removing > 0 else { return report }
        guard let signer = retention.signer else {
            throw StoreError("audit retention would remove \(removing) file(s) but has no key to sign their checkpoint with")
        }
        // The checkpoint: the last record removed, which the first record kept names (`prev`).
        let firstKept = files[removing]
        guard let first = try AuditTrail.firstRecord(of: firstKept.path) else {
            throw StoreError("\(firstKept.path) holds no audit record yet; nothing removed before it")
        }
        let checkpoint = try AuditCheckpoint(sequence: first.sequence - 1, hash: first.previousHash, timeMs: nowMs, signedBy: signer)
        try checkpoint.write(directory: directory)
        for file in files[..<removing] {
            guard unlink(file.path) == 0 else { throw StoreError.errno("cannot remove the audit file", file.path) }
            report.removed.append(file.path)
        }
        try FileIO.syncDirectory(directory)
        report.checkpoint = checkpoint
        return report
    }
}
