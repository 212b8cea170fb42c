import Foundation
import LicenseAudit
import LicenseCrypto
import LicenseFiles
import LicenseTestSupport
import Testing

@Suite("Audit trail: hash chain, tampering, rotation, export")
struct AuditTrailTests {
    static let t0: Int64 = 1_790_000_000_000

    /// `count` varied events: strings that need escaping, numbers, booleans, lists.
    static func events(_ count: Int) -> [AuditEvent] {
        (0..<count).map { (i: Int) -> AuditEvent in
            let actor: String = i % 5 == 0 ? "o'brien \"the admin\"@ws,\(i)\u{1}\\x" : "user\(i % 3)@host\(i % 2)"
            let feature: String = i % 2 == 0 ? "cad" : "sim\ttab\nnewline ü"
            let details: [(String, AuditEvent.Value)] = [
                ("feature", .string(feature)), ("count", .int(Int64(i % 3 + 1))), ("overage", .bool(i % 7 == 0)),
                ("groups", .strings(["/emea", "/emea/sales"])),
            ]
            let actions = ["grant", "checkin", "deny", "reclaim"]
            return AuditEvent(timeMs: t0 + Int64(i) * 1500, action: actions[i % 4], actor: actor, subject: "lease:\(i)", details: details)
        }
    }

    /// Writes `count` events through an `AuditLog` in batches, as the store's writer does, and
    /// returns the lines of the files it leaves.
    @discardableResult
    static func writeTrail(
        _ directory: String,
        count: Int,
        maxFileBytes: Int = 1 << 26,
        format: AuditFormat = .compact,
        retention: AuditRetention = .keepAll
    ) throws -> [[UInt8]] {
        let log = try AuditLog.open(
            directory: directory,
            maxFileBytes: maxFileBytes,
            syncs: true,
            format: format,
            retention: retention,
            nowMs: { Self.t0 }
        )
        let failures = FailureBox()
        log.onMaintenance = { if case .failure(let error) = $0 { failures.record(error.message) } }
        defer { #expect(failures.messages.isEmpty) }
        let all = self.events(count)
        var index = 0
        while index < all.count {
            let batch = Array(all[index..<min(all.count, index + 7)])
            try log.write(batch)
            try log.sync()
            index += batch.count
        }
        log.close()
        return try AuditTrail.files(in: directory).flatMap { try Self.lines(of: $0.path) }
    }

    /// The lines of one file of the trail, without their newlines.
    static func lines(of path: String) throws -> [[UInt8]] {
        try AuditTrail.contents(of: path).split(separator: 0x0A, omittingEmptySubsequences: false).dropLast().map(Array.init)
    }

    /// `record` as `format` writes it, its hash as given.
    static func line(_ record: AuditRecord, _ format: AuditFormat) -> [UInt8] {
        switch format {
        case .jsonl: Array(record.line.utf8)
        case .compact: record.compactLine ?? []
        }
    }

    /// `record` with the hash of its content as `format` writes it.
    static func rehashed(_ record: AuditRecord, _ format: AuditFormat) -> AuditRecord {
        var record = record
        switch format {
        case .jsonl: record.hash = SHA256.hash(Array(record.hashedText.utf8)).hexString
        case .compact: record.hash = SHA256.hash(record.compactHashedBytes ?? []).hexString
        }
        return record
    }

    static func verify(_ directory: String) throws -> AuditTrail.Verification {
        try AuditTrail.verify(try AuditTrail.files(in: directory))
    }

    static func rewrite(_ directory: String, _ lines: [[UInt8]]) throws {
        let file = try AuditTrail.files(in: directory)[0].path
        try Data(lines.flatMap { $0 + [0x0A] }).write(to: URL(fileURLWithPath: file), options: .atomic)
    }

    @Test(
        "records are numbered and chained; every line parses back to its record and re-renders to the same bytes",
        arguments: AuditFormat.allCases
    )
    func chain(format: AuditFormat) throws {
        let scratch = try TemporaryDirectory()
        let lines = try Self.writeTrail(scratch.path("audit"), count: 40, format: format)
        #expect(lines.count == 40)
        #expect(lines.allSatisfy { $0.first == (format == .compact ? AuditCompact.marker : UInt8(ascii: "{")) })
        var previous = AuditRecord.genesisHash
        for (index, line) in lines.enumerated() {
            let parsed = try #require(AuditRecord.parse(line[...]))
            #expect(parsed.hashMatches)
            #expect(parsed.record.hashMatches, "laid out again from its fields")
            #expect(parsed.record.sequence == UInt64(index + 1))
            #expect(parsed.record.previousHash == previous)
            #expect(Self.line(parsed.record, format) == line)
            #expect(parsed.record.timeMs == Self.t0 + Int64(index) * 1500)
            let details = try #require(parsed.record.details)
            #expect(details.map(\.0) == ["feature", "count", "overage", "groups"])
            #expect(details[0].1 == .string(index % 2 == 0 ? "cad" : "sim\ttab\nnewline ü"))
            #expect(details[3].1 == .strings(["/emea", "/emea/sales"]))
            previous = parsed.record.hash
            // Each JSON line is valid JSON for any other tool, and so is the record's as exported.
            let json = format == .jsonl ? Data(line) : Data(parsed.record.line.utf8)
            let object = try #require(try JSONSerialization.jsonObject(with: json) as? [String: Any])
            #expect(object["seq"] as? Int == index + 1)
            // An export's JSON line of a compact record verifies by its compact layout.
            #expect(AuditRecord.parse(Array(parsed.record.line.utf8)[...])?.hashMatches == true)
        }
        let result = try Self.verify(scratch.path("audit"))
        #expect(result.failure == nil)
        #expect(result.records == 40)
        #expect(result.lastHash == previous)
        #expect(JSONText.iso8601(ms: 0) == "1970-01-01T00:00:00.000Z")
        #expect(JSONText.iso8601(ms: 1_795_569_325_541) == "2026-11-25T01:15:25.541Z")
        #expect(JSONText.iso8601(ms: -1) == "1969-12-31T23:59:59.999Z")
    }

    @Test(
        "editing any one line, deleting any one, or swapping two neighbours is reported at the first bad record",
        arguments: AuditFormat.allCases
    )
    func tampering(format: AuditFormat) throws {
        let scratch = try TemporaryDirectory()
        let directory = scratch.path("audit")
        let original = try Self.writeTrail(directory, count: 25, format: format)
        for index in original.indices {
            // An edit of one digit in the details, the hash left as it was.
            var changed = try #require(AuditRecord.parse(original[index][...])).record
            changed.detailsJSON = changed.detailsJSON.replacingOccurrences(of: "\"count\":", with: "\"count\":9")
            var edited = original
            edited[index] = Self.line(changed, format)
            try Self.rewrite(directory, edited)
            var failure = try #require(try Self.verify(directory).failure)
            #expect(failure.line == index + 1)
            #expect(failure.reason.contains("altered"))

            // Any one byte of the line changed (but never into a newline): never verified.
            for position in stride(from: index % 7, to: original[index].count, by: 7) {
                var damaged = original
                damaged[index][position] ^= damaged[index][position] == 0x0B ? 0x02 : 0x01
                try Self.rewrite(directory, damaged)
                failure = try #require(try Self.verify(directory).failure)
                #expect(failure.line == index + 1)
            }

            // An edit that recomputes the record's own hash: the next record no longer chains to it.
            if index < original.count - 1 {
                var forged = try #require(AuditRecord.parse(original[index][...])).record
                forged.actor = "someone else"
                forged = Self.rehashed(forged, format)
                #expect(forged.hashMatches)
                var chained = original
                chained[index] = Self.line(forged, format)
                try Self.rewrite(directory, chained)
                failure = try #require(try Self.verify(directory).failure)
                #expect(failure.line == index + 2)
                #expect(failure.reason.contains("chain"))
            }

            // A deletion: the record after the gap is named (for the last record, the trail is one shorter and still whole).
            var deleted = original
            deleted.remove(at: index)
            try Self.rewrite(directory, deleted)
            let afterDeletion = try Self.verify(directory)
            if index < original.count - 1 {
                failure = try #require(afterDeletion.failure)
                #expect(failure.line == index + 1)
                #expect(failure.sequence == UInt64(index + 2))
            } else {
                #expect(afterDeletion.failure == nil)
                #expect(afterDeletion.lastSequence == UInt64(original.count - 1))
            }

            // A swap with the next line.
            if index < original.count - 1 {
                var swapped = original
                swapped.swapAt(index, index + 1)
                try Self.rewrite(directory, swapped)
                failure = try #require(try Self.verify(directory).failure)
                #expect(failure.line == index + 1)
                #expect(failure.sequence == UInt64(index + 2))
            }
        }
        try Self.rewrite(directory, original)
        #expect(try Self.verify(directory).failure == nil)
    }

    @Test("rotation by size keeps one chain across files; reopening continues it; a torn last line is cut", arguments: AuditFormat.allCases)
    func rotation(format: AuditFormat) throws {
        let scratch = try TemporaryDirectory()
        let directory = scratch.path("audit")
        let lines = try Self.writeTrail(directory, count: 120, maxFileBytes: format == .compact ? 1536 : 4096, format: format)
        let files = try AuditTrail.files(in: directory)
        #expect(files.count > 5)
        #expect(files.allSatisfy { $0.format == format && $0.path.hasSuffix(format.fileSuffix) })
        for file in files {
            let size = try FileManager.default.attributesOfItem(atPath: file.path)[.size] as! Int
            #expect(size <= 4096)
            let first = try #require(try Self.lines(of: file.path).first)
            #expect(AuditRecord.parse(first[...])?.record.sequence == file.firstSequence)
        }
        #expect(lines.count == 120)
        var result = try Self.verify(directory)
        #expect(result.failure == nil)
        #expect(result.records == 120)

        // A crash in the middle of a write leaves half a line: reopening cuts it and goes on from record 120.
        let last = files.last!.path
        let handle = try #require(FileHandle(forWritingAtPath: last))
        handle.seekToEndOfFile()
        handle.write(Data("{\"seq\":121,\"time\":\"2026-".utf8))
        try handle.close()
        #expect(try Self.verify(directory).failure != nil)
        let log = try AuditLog.open(directory: directory, maxFileBytes: 4096, syncs: true, format: format)
        #expect(log.cutTail?.file == last)
        #expect(log.lastSequence == 120)
        try log.write([AuditEvent(timeMs: Self.t0, action: "reload", actor: "signal")])
        try log.sync()
        log.close()
        result = try Self.verify(directory)
        #expect(result.failure == nil)
        #expect(result.records == 121)

        // Older files removed by hand, with no signed checkpoint to vouch for them: reported.
        try FileManager.default.removeItem(atPath: files[0].path)
        result = try Self.verify(directory)
        #expect(result.failure?.reason.contains("no signed checkpoint") == true)
    }

    @Test(
        "reopening a file far longer than what is read of its end: a torn line is cut at the right place, the chain goes on",
        arguments: AuditFormat.allCases
    )
    func reopenLongFile(format: AuditFormat) throws {
        let scratch = try TemporaryDirectory()
        let directory = scratch.path("audit")
        _ = try Self.writeTrail(directory, count: format == .compact ? 3_000 : 1_000, format: format)
        let file = try #require(try AuditTrail.files(in: directory).last).path
        let size = try FileManager.default.attributesOfItem(atPath: file)[.size] as! Int
        #expect(size > 4 * 65_536)
        // Half a line longer than the first piece read from the end.
        let handle = try #require(FileHandle(forWritingAtPath: file))
        handle.seekToEndOfFile()
        let torn = Data(("{\"seq\":1001,\"details\":\"" + String(repeating: "x", count: 100_000)).utf8)
        handle.write(torn)
        try handle.close()
        let log = try AuditLog.open(directory: directory, maxFileBytes: 1 << 26, syncs: true, format: format)
        let count: UInt64 = format == .compact ? 3_000 : 1_000
        #expect(log.cutTail?.file == file)
        #expect(log.cutTail?.droppedBytes == torn.count)
        #expect(log.lastSequence == count)
        #expect(try FileManager.default.attributesOfItem(atPath: file)[.size] as! Int == size)
        try log.write([AuditEvent(timeMs: Self.t0, action: "reload", actor: "signal")])
        try log.sync()
        log.close()
        let result = try Self.verify(directory)
        #expect(result.failure == nil)
        #expect(result.records == Int(count) + 1)
    }

    @Test("a JSON line whose prev or hash is not 64 lower-case hex digits is not a record (escapes included: FuzzAuditRecord's find)")
    func hashesAreHex() throws {
        let scratch = try TemporaryDirectory()
        let line = String(decoding: try #require(try Self.writeTrail(scratch.path("audit"), count: 2, format: .jsonl).last), as: UTF8.self)
        #expect(AuditRecord.parse(Array(line.utf8)[...])?.hashMatches == true)
        let record = try #require(AuditRecord.parse(Array(line.utf8)[...])).record
        for (field, hash) in [("prev", record.previousHash), ("hash", record.hash)] {
            for bad in [
                hash.uppercased(), String(hash.dropLast(2)) + "\\b", String(hash.dropLast()) + "g", String(hash.dropLast(6)) + "\\u0041",
            ] {
                let changed = line.replacingOccurrences(of: "\"\(field)\":\"\(hash)\"", with: "\"\(field)\":\"\(bad)\"")
                #expect(changed != line)
                #expect(AuditRecord.parse(Array(changed.utf8)[...]) == nil, "\(field): \(bad)")
            }
        }
    }

    @Test("a CSV export reads back into the same records, whose chain still verifies", arguments: AuditFormat.allCases)
    func csvRoundTrip(format: AuditFormat) throws {
        let scratch = try TemporaryDirectory()
        let lines = try Self.writeTrail(scratch.path("audit"), count: 30, format: format)
        var csv = AuditCSV.header
        var records: [AuditRecord] = []
        try AuditTrail.forEachRecord(in: try AuditTrail.files(in: scratch.path("audit"))) { record in
            records.append(record)
            csv += AuditCSV.row(record)
            return true
        }
        let back = try AuditCSV.records(csv)
        #expect(back.count == 30)
        #expect(back.map { $0.map { Self.line($0, format) } } == lines)
        var chain = AuditTrail.ChainCheck()
        for (index, record) in back.enumerated() {
            let parsed = record.map { AuditRecord.Parsed(record: $0, hashMatches: $0.hashMatches) }
            let holds = chain.check(parsed, file: "export.csv", line: index + 2)
            #expect(holds)
        }
        #expect(chain.result.records == 30)
        #expect(try AuditCSV.parseRows("a,\"b,\"\"c\"\"\r\nd\",e\r\n") == [["a", "b,\"c\"\r\nd", "e"]])
    }
}

/// Records rendered and kept elsewhere (as the store's log keeps them) give a trail back the tail
/// that a power cut took from it before it was synced.
@Suite("Audit trail: restore from kept lines")
struct AuditRestoreTests {
    typealias Kept = (first: UInt64, count: Int, lines: [UInt8])

    /// Writes 60 varied records in batches of 7, rendered then written as the store's writer
    /// does, into files of at most 4 KiB (1.5 KiB of compact records); returns each batch's lines.
    static func writeKept(_ directory: String, format: AuditFormat) throws -> [Kept] {
        let log = try AuditLog.open(directory: directory, maxFileBytes: Self.maxFileBytes(format), syncs: true, format: format)
        defer { log.close() }
        let all = AuditTrailTests.events(60)
        var kept: [Kept] = []
        for start in stride(from: 0, to: all.count, by: 7) {
            let rendered = log.render(Array(all[start..<min(all.count, start + 7)]))
            kept.append((rendered.firstSequence, rendered.count, rendered.withBytes { Array($0) }))
            try log.write(rendered)
        }
        try log.sync()
        return kept
    }

    static func maxFileBytes(_ format: AuditFormat) -> Int { format == .compact ? 1536 : 4096 }

    static func contents(_ directory: String) throws -> [String: [UInt8]] {
        var contents: [String: [UInt8]] = [:]
        for file in try AuditTrail.files(in: directory) {
            contents[file.path] = Array(try Data(contentsOf: URL(fileURLWithPath: file.path)))
        }
        return contents
    }

    @Test(
        "the newest file cut at a line, inside a line or to nothing: restored to the same bytes, the chain whole; a second restore adds nothing",
        arguments: AuditFormat.allCases
    )
    func restoresCutTail(format: AuditFormat) throws {
        let scratch = try TemporaryDirectory()
        let original = scratch.path("original")
        let kept = try Self.writeKept(original, format: format)
        let written = try Self.contents(original)
        #expect(written.count > 3)
        let newest = try #require(try AuditTrail.files(in: original).last)
        let newestBytes = try #require(written[newest.path])
        let lineEnds = newestBytes.indices.filter { newestBytes[$0] == 0x0A }.map { $0 + 1 }
        #expect(lineEnds.count >= 3)
        for cut in [lineEnds[0], lineEnds[1] + 5, 0] {
            let directory = scratch.path("cut-\(cut)")
            try FileManager.default.copyItem(atPath: original, toPath: directory)
            let file = directory + "/" + URL(fileURLWithPath: newest.path).lastPathComponent
            #expect(truncate(file, off_t(cut)) == 0)
            let log = try AuditLog.open(directory: directory, maxFileBytes: Self.maxFileBytes(format), syncs: true, format: format)
            let lost = 60 - log.lastSequence
            #expect(lost > 0)
            var appended = 0
            for batch in kept { appended += try log.restore(firstSequence: batch.first, count: batch.count, lines: batch.lines[...]) }
            #expect(appended == Int(lost))
            #expect(log.lastSequence == 60)
            try log.sync()
            for batch in kept { #expect(try log.restore(firstSequence: batch.first, count: batch.count, lines: batch.lines[...]) == 0) }
            log.close()
            let restored = try Self.contents(directory)
            #expect(restored.count == written.count)
            for (path, bytes) in written {
                #expect(restored[directory + "/" + URL(fileURLWithPath: path).lastPathComponent] == bytes, "cut at \(cut): \(path)")
            }
            let result = try AuditTrailTests.verify(directory)
            #expect(result.failure == nil)
            #expect(result.records == 60)
        }
    }

    @Test(
        "lines that would leave a gap are refused whole; a changed line stops the restore just before it",
        arguments: AuditFormat.allCases
    )
    func refusesWhatBreaksTheChain(format: AuditFormat) throws {
        let scratch = try TemporaryDirectory()
        let kept = try Self.writeKept(scratch.path("original"), format: format)

        // An empty trail offered the third batch on: records 1–14 would be missing.
        let gap = try AuditLog.open(directory: scratch.path("gap"), maxFileBytes: 4096, syncs: true, format: format)
        #expect(throws: AuditLog.RestoreMismatch.self) {
            try gap.restore(firstSequence: kept[2].first, count: kept[2].count, lines: kept[2].lines[...])
        }
        #expect(gap.lastSequence == 0)
        gap.close()

        // The second batch's fourth line altered (the 13th byte, in its time): its three before it
        // are appended, it and the rest are not.
        var altered = kept[1]
        let lineStarts = [0] + altered.lines.indices.filter { altered.lines[$0] == 0x0A }.map { $0 + 1 }
        altered.lines[lineStarts[3] + 12] ^= 0x20
        let log = try AuditLog.open(directory: scratch.path("altered"), maxFileBytes: 4096, syncs: true, format: format)
        #expect(try log.restore(firstSequence: kept[0].first, count: kept[0].count, lines: kept[0].lines[...]) == 7)
        let error = #expect(throws: AuditLog.RestoreMismatch.self) {
            try log.restore(firstSequence: altered.first, count: altered.count, lines: altered.lines[...])
        }
        #expect(error?.description.contains("record 11") == true)
        #expect(log.lastSequence == 10)
        try log.sync()
        log.close()
        let result = try AuditTrailTests.verify(scratch.path("altered"))
        #expect(result.failure == nil)
        #expect(result.records == 10)
    }
}
