import Foundation
import LicenseAudit
import LicenseCrypto
import LicenseFiles
import LicenseTestSupport
import Testing

/// Compression and retention of the audit trail: rotated files are gzipped and read back as they
/// were; removed files leave a signed checkpoint from which the kept part verifies.
@Suite("Audit trail: compression, retention, signed checkpoint")
struct AuditRetentionTests {
    typealias Trail = AuditTrailTests

    /// Writes `count` events through a log whose files rotate at 4 KiB, with `retention`.
    static func write(_ directory: String, count: Int, retention: AuditRetention) throws {
        try Trail.writeTrail(directory, count: count, maxFileBytes: 4096, retention: retention)
    }

    @Test("a trail rotated into many small files keeps N, compressed, and verifies from the signed checkpoint")
    func keepsN() throws {
        let scratch = try TemporaryDirectory()
        let directory = scratch.path("audit")
        let key = try Ed25519PrivateKey.generate()
        try Self.write(directory, count: 400, retention: AuditRetention(maxFiles: 5, signer: key))
        let files = try AuditTrail.files(in: directory)
        #expect(files.count == 5)
        #expect(files.dropLast().allSatisfy { $0.compressed })
        #expect(files.last?.compressed == false)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".tmp") }.isEmpty)
        let checkpoint = try #require(try AuditCheckpoint.read(directory: directory))
        #expect(checkpoint.sequence + 1 == files[0].firstSequence)
        let result = try AuditTrail.verify(files, checkpoint: checkpoint, trustedKey: try key.publicKey)
        #expect(result.failure == nil)
        #expect(result.startsAfterRemovedFiles)
        #expect(result.firstSequence == files[0].firstSequence)
        #expect(result.lastSequence == 400)
        // Compressed files read back as the lines that were written.
        let first = try #require(try Trail.lines(of: files[0].path).first)
        #expect(AuditRecord.parse(first[...])?.record.sequence == files[0].firstSequence)
        // The same trail reopened continues the chain after the last record.
        let log = try AuditLog.open(directory: directory, maxFileBytes: 4096, syncs: true)
        #expect(log.lastSequence == 400)
        log.close()
    }

    @Test("compressed originals leave through a rename; what a stop left of one is never read and goes at the next pass")
    func removalLeftovers() throws {
        let scratch = try TemporaryDirectory()
        let directory = scratch.path("audit")
        try Self.write(directory, count: 200, retention: AuditRetention(compression: .zstd))
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(FileIO.removingSuffix) }.isEmpty)
        let files = try AuditTrail.files(in: directory)
        #expect(files.dropLast().allSatisfy { $0.compressed })
        // A stop in the middle of removing an original: a piece of it, renamed.
        let leftover = files[0].path.replacingOccurrences(of: ".zst", with: "") + FileIO.removingSuffix
        try Data("{\"seq\": 1, cut sh".utf8).write(to: URL(fileURLWithPath: leftover))
        #expect(try AuditTrail.files(in: directory).map(\.path) == files.map(\.path))
        #expect(try AuditTrail.verify(files).failure == nil)
        let log = try AuditLog.open(directory: directory, maxFileBytes: 4096, syncs: true, retention: AuditRetention(compression: .zstd))
        log.scheduleMaintenance()
        log.waitForMaintenance()
        log.close()
        #expect(!FileManager.default.fileExists(atPath: leftover))
    }

    @Test("a removed middle file, an edited checkpoint, another key's checkpoint, or none at all: each is reported")
    func tampering() throws {
        let scratch = try TemporaryDirectory()
        let directory = scratch.path("audit")
        let key = try Ed25519PrivateKey.generate()
        try Self.write(directory, count: 400, retention: AuditRetention(maxFiles: 6, signer: key))
        let files = try AuditTrail.files(in: directory)
        let checkpoint = try #require(try AuditCheckpoint.read(directory: directory))
        let trusted = try key.publicKey

        var middle = files
        middle.remove(at: 2)
        let gap = try AuditTrail.verify(middle, checkpoint: checkpoint, trustedKey: trusted)
        #expect(gap.failure?.reason.contains("missing") == true)

        var edited = checkpoint
        edited.sequence -= 1
        let altered = try AuditTrail.verify(files, checkpoint: edited, trustedKey: trusted)
        #expect(altered.failure?.reason.contains("signature does not verify") == true)

        let stranger = try AuditCheckpoint(
            sequence: checkpoint.sequence,
            hash: checkpoint.hash,
            timeMs: 1,
            signedBy: try Ed25519PrivateKey.generate()
        )
        let foreign = try AuditTrail.verify(files, checkpoint: stranger, trustedKey: trusted)
        #expect(foreign.failure?.reason.contains("not the server's key") == true)

        let none = try AuditTrail.verify(files, checkpoint: nil, trustedKey: trusted)
        #expect(none.failure?.reason.contains("no signed checkpoint") == true)

        // A compressed file cut short: an error naming it, not a shorter trail.
        let format = try #require(FileCompression(path: files[1].path))
        #expect(format == .zstd)
        let copy = scratch.path("cut.jsonl" + format.suffix)
        try FileManager.default.copyItem(atPath: files[1].path, toPath: copy)
        let handle = try #require(FileHandle(forWritingAtPath: copy))
        try handle.truncate(atOffset: UInt64(try FileManager.default.attributesOfItem(atPath: copy)[.size] as? Int ?? 0) / 2)
        try handle.close()
        let cut = #expect(throws: StoreError.self) { try AuditTrail.contents(of: copy) }
        #expect(cut?.message.contains(copy) == true)

        // The oldest kept file removed too: the kept records no longer continue the checkpoint.
        let first = try AuditTrail.verify(Array(files.dropFirst()), checkpoint: checkpoint, trustedKey: trusted)
        #expect(first.failure != nil)
    }

    @Test("a trail compressed with gzip and continued with zstd (an upgrade), or the other way, reads and verifies as one chain")
    func mixedFormats() throws {
        for (before, after) in [(FileCompression.gzip, FileCompression.zstd), (.zstd, .gzip)] {
            let scratch = try TemporaryDirectory()
            let directory = scratch.path("audit")
            let first = try Trail.writeTrail(directory, count: 150, maxFileBytes: 4096, retention: AuditRetention(compression: before))
            let second = try Trail.writeTrail(directory, count: 150, maxFileBytes: 4096, retention: AuditRetention(compression: after))
            let files = try AuditTrail.files(in: directory)
            let suffixes = files.dropLast().map { FileCompression(path: $0.path) }
            #expect(suffixes.contains(before) && suffixes.contains(after), "\(files.map(\.path))")
            #expect(suffixes.allSatisfy { $0 != nil })
            // Oldest first, every record once, in order: the second run continued the first's chain.
            #expect(second.count == 300)
            #expect(Array(second.prefix(first.count)) == first)
            #expect(second.enumerated().allSatisfy { AuditRecord.parse($1[...])?.record.sequence == UInt64($0 + 1) })
            let verification = try Trail.verify(directory)
            #expect(verification.failure == nil)
            #expect(verification.lastSequence == 300)
        }
    }

    @Test(
        "JSON lines continued compact (an upgrade), with starts in the other format that wrote nothing: one chain, each file in one format"
    )
    func mixedRecordFormats() throws {
        let scratch = try TemporaryDirectory()
        let directory = scratch.path("audit")
        var written: [[UInt8]] = []
        let runs: [AuditFormat] = [.jsonl, .jsonl, .compact, .compact]
        for (run, format) in runs.enumerated() {
            if run > 0 {
                // A start in the other format that writes nothing leaves an empty file of its own,
                // which this run's start removes (it would take the same sequence in its name).
                try AuditLog.open(directory: directory, maxFileBytes: 4096, syncs: true, format: format == .compact ? .jsonl : .compact)
                    .close()
            }
            written = try Trail.writeTrail(
                directory,
                count: 100 * (run + 1),
                maxFileBytes: 4096,
                format: format,
                retention: AuditRetention(compression: .zstd)
            )
        }
        #expect(written.count == 1_000)
        let files = try AuditTrail.files(in: directory)
        #expect(Set(files.map(\.format)) == [.jsonl, .compact])
        #expect(files.dropLast().allSatisfy { $0.compressed })
        for file in files {
            let lines = try Trail.lines(of: file.path)
            #expect(!lines.isEmpty, "\(file.path)")
            #expect(lines.allSatisfy { $0.first == (file.format == .compact ? AuditCompact.marker : UInt8(ascii: "{")) }, "\(file.path)")
        }
        #expect(written.enumerated().allSatisfy { AuditRecord.parse($1[...])?.record.sequence == UInt64($0 + 1) })
        let verification = try Trail.verify(directory)
        #expect(verification.failure == nil)
        #expect(verification.lastSequence == 1_000)
    }

    @Test("a checkpoint file that is not JSON is an error naming it")
    func damagedCheckpoint() throws {
        let scratch = try TemporaryDirectory()
        let directory = scratch.path("audit")
        try Self.write(directory, count: 50, retention: .keepAll)
        try "{\"sequence\": oops".write(toFile: directory + "/" + AuditCheckpoint.fileName, atomically: true, encoding: .utf8)
        let error = #expect(throws: StoreError.self) { try AuditCheckpoint.read(directory: directory) }
        #expect(error?.message.contains(AuditCheckpoint.fileName) == true)
    }

    @Test("retention by bytes and by age")
    func bytesAndAge() throws {
        let scratch = try TemporaryDirectory()
        let key = try Ed25519PrivateKey.generate()
        let byBytes = scratch.path("bytes")
        try Self.write(byBytes, count: 400, retention: AuditRetention(maxBytes: 8_000, signer: key))
        let kept = try AuditTrail.files(in: byBytes)
        let size = try kept.reduce(0) { $0 + (try FileManager.default.attributesOfItem(atPath: $1.path)[.size] as? Int ?? 0) }
        #expect(size <= 8_000 + 4_096)
        #expect(try AuditTrail.verify(kept, checkpoint: AuditCheckpoint.read(directory: byBytes), trustedKey: key.publicKey).failure == nil)
        // Files written "now" by the real clock are days younger than the log's clock says: all rotated ones go.
        let byAge = scratch.path("age")
        let log = try AuditLog.open(
            directory: byAge,
            maxFileBytes: 4096,
            syncs: true,
            retention: AuditRetention(maxAgeMs: 86_400_000, signer: key),
            nowMs: { SystemClockForTests.nowMs() + 2 * 86_400_000 }
        )
        try log.write(Trail.events(200))
        try log.sync()
        log.close()
        #expect(try AuditTrail.files(in: byAge).count == 1)
    }
}

/// Collects messages from another thread.
final class FailureBox: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [String] = []
    func record(_ message: String) { self.lock.withLock { self.stored.append(message) } }
    var messages: [String] { self.lock.withLock { self.stored } }
}

enum SystemClockForTests {
    static func nowMs() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }
}
