import LicenseCore
import LicenseCrypto
import LicenseTestSupport
import Testing

@testable import LicenseAudit

/// The compact record's layout: one spelling for every record, lines that never hold a newline,
/// and a reader that refuses whatever the writer would not have written.
@Suite("Audit trail: compact records")
struct AuditCompactTests {
    /// A record of `details` after `previous`, as the writer writes it: its line, without the newline.
    static func line(_ event: AuditEvent, sequence: UInt64 = 1, previous: AuditRenderer.Digest = AuditRenderer.genesis) -> [UInt8] {
        var out = ByteWriter(capacity: 64)
        _ = AuditRenderer.appendCompact(sequence: sequence, event: event, previous: previous, to: &out)
        #expect(out.written.last == 0x0A)
        return Array(out.written.dropLast())
    }

    /// `hashedBytes` with the SHA-256 after it and escaped: a line as it could have been written.
    static func line(hashed: [UInt8]) -> [UInt8] {
        AuditCompact.escaped(hashed + SHA256.hash(hashed))
    }

    @Test("bytes that are newlines and escapes anywhere in a record: escaped, never a newline in the line, read back exactly")
    func escaping() throws {
        var found = (newline: 0, escape: 0)
        for index in 0..<400 {
            // Times, sequence numbers, ids and digests that hold 0x0A and 0x1B in their bytes.
            let id = ID128(high: 0x0A1B_0A1B_0000_0000 | UInt64(index), low: UInt64(index) << 8 | 0x0A)
            let event = AuditEvent(
                timeMs: 0x0A1B_0A0A + Int64(index),
                action: "act\n\u{1B}ion",
                actor: "line\none\u{1B}",
                subject: "lease:\(id)",
                details: [("n\n", .int(0x0A0A + Int64(index))), ("list", .strings(["\n", "\u{1B}", ""]))]
            )
            let previous: AuditRenderer.Digest = (0x0A0A_1B1B_0A0A_1B1B, UInt64(index), 0, .max)
            let line = Self.line(event, sequence: 10 + UInt64(index), previous: previous)
            #expect(!line.contains(0x0A))
            found.escape += line.filter { $0 == AuditCompact.escape }.count
            let unescaped = try #require(AuditCompact.unescape(line[...]))
            found.newline += unescaped.filter { $0 == 0x0A }.count
            let parsed = try #require(AuditRecord.parse(line[...]))
            #expect(parsed.hashMatches)
            #expect(parsed.record.sequence == 10 + UInt64(index))
            #expect(parsed.record.timeMs == event.timeMs)
            #expect(parsed.record.action == event.action)
            #expect(parsed.record.actor == event.actor)
            #expect(parsed.record.subject == event.subject)
            #expect(parsed.record.details?.map(\.0) == ["n\n", "list"])
            #expect(parsed.record.details?.map(\.1) == event.details.map(\.1))
            #expect(parsed.record.previousHash == withUnsafeBytes(of: previous) { Array($0) }.hexString)
            #expect(parsed.record.compactLine == line)
        }
        #expect(found.newline > 400 && found.escape > 800)
    }

    @Test("the word-at-a-time count finds every 0x0A and 0x1B at every position; escaping in place and back gives the bytes")
    func escapeScan() throws {
        for length in 0..<40 {
            for first in 0..<max(length, 1) {
                for second in [first, (first * 7 + 3) % max(length, 1)] {
                    var bytes = (0..<length).map { UInt8(truncatingIfNeeded: 0x41 + $0) }
                    if length > 0 {
                        bytes[first] = 0x0A
                        bytes[second] = second == first ? 0x0A : AuditCompact.escape
                    }
                    let expected = bytes.filter { $0 == 0x0A || $0 == AuditCompact.escape }.count
                    #expect(bytes.withUnsafeBytes { AuditCompact.escapesNeeded($0) } == expected)
                    var out = ByteWriter(capacity: 4)
                    out.write("prefix")
                    bytes.withUnsafeBytes { out.write($0) }
                    AuditCompact.escape(6..<out.count, in: &out)
                    let line = Array(out.written.dropFirst(6))
                    #expect(line.count == length + expected && !line.contains(0x0A))
                    #expect(AuditCompact.unescape(line[...]) == bytes)
                    #expect(Array(out.written.prefix(6)) == Array("prefix".utf8))
                }
            }
        }
    }

    @Test("dictionary words and ids in any field take their short spelling; near misses stay text; all read back")
    func spellings() throws {
        let id = "0123456789abcdef0123456789abcdef"
        let cases: [(String, Int)] = [
            ("grant", 1), ("checkin", 1), ("heartbeat", 2), (id, 17), ("lease:" + id, 17), ("activation:" + id, 17),
            ("0123456789ABCDEF0123456789abcdef", 34), ("lease:" + id + "0", 41), ("lease" + id, 39), ("feature:" + id, 42),
            ("grants", 7), ("", 1), ("ü", 3),
        ]
        for (text, size) in cases {
            var out = ByteWriter(capacity: 64)
            AuditCompact.string(text, &out)
            #expect(out.count == size, "\(text)")
            let event = AuditEvent(
                timeMs: 1,
                action: text,
                actor: text,
                subject: text,
                details: [(text, .string(text)), ("l", .strings([text]))]
            )
            let parsed = try #require(AuditRecord.parse(Self.line(event)[...]))
            #expect(parsed.hashMatches)
            #expect(parsed.record.action == text && parsed.record.actor == text && parsed.record.subject == text)
            #expect(parsed.record.details?.map(\.1) == [.string(text), .strings([text])])
        }
        // Every entry of the dictionary is short and distinct.
        #expect(Set(AuditCompact.dictionary).count == AuditCompact.dictionary.count)
        #expect(AuditCompact.dictionary.allSatisfy { !$0.isEmpty && $0.utf8.count < AuditCompact.entriesByLength.count })
    }

    @Test("another spelling of the same record, a bad escape, a short or long record, bad UTF-8: not a record")
    func refusesOtherSpellings() throws {
        let previous = [UInt8](repeating: 7, count: 32)
        func record(_ fields: [UInt8]) -> [UInt8] { [AuditCompact.marker] + fields + previous }
        // seq 1, time 2 (zigzag 4), action "a", actor "", subject "", no details.
        let good = record([0x01, 0x04, 0x04, 0x61, 0x00, 0x00, 0x00])
        #expect(AuditRecord.parse(Self.line(hashed: good)[...])?.hashMatches == true)
        let others: [(String, [UInt8])] = [
            ("a varint in more bytes than it needs", record([0x81, 0x00, 0x04, 0x04, 0x61, 0x00, 0x00, 0x00])),
            ("a dictionary word as text", record([0x01, 0x04, 0x14] + Array("grant".utf8) + [0x00, 0x00, 0x00])),
            ("an id as text", record([0x01, 0x04, 0x80, 0x01] + Array(String(repeating: "ab", count: 16).utf8) + [0x00, 0x00, 0x00])),
            ("a dictionary code past its end", record([0x01, 0x04, 0xFD, 0x01, 0x00, 0x00, 0x00])),
            ("an id prefix past its end", record([0x01, 0x04, 0x0E] + [UInt8](repeating: 1, count: 16) + [0x00, 0x00, 0x00])),
            ("a string header of kind 3", record([0x01, 0x04, 0x07, 0x00, 0x00, 0x00])),
            ("bad UTF-8", record([0x01, 0x04, 0x04, 0xFF, 0x00, 0x00, 0x00])),
            ("a value tag unknown", record([0x01, 0x04, 0x04, 0x61, 0x00, 0x00, 0x01, 0x04, 0x61, 0x09])),
            ("a string longer than the record", record([0x01, 0x04, 0xFC, 0x0F, 0x61])),
            ("a byte more", record([0x01, 0x04, 0x04, 0x61, 0x00, 0x00, 0x00, 0x00])),
            ("a detail count past the record", record([0x01, 0x04, 0x04, 0x61, 0x00, 0x00, 0x7F])),
            (
                "a varint past 64 bits",
                record([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02, 0x04, 0x04, 0x61, 0x00, 0x00, 0x00])
            ),
        ]
        for (what, hashed) in others {
            #expect(AuditRecord.parse(Self.line(hashed: hashed)[...]) == nil, "\(what)")
        }
        var badEscape = Self.line(hashed: good)
        badEscape.insert(contentsOf: [AuditCompact.escape, 0x41], at: 3)
        #expect(AuditRecord.parse(badEscape[...]) == nil)
        #expect(AuditRecord.parse((Self.line(hashed: good) + [AuditCompact.escape])[...]) == nil)
        #expect(AuditRecord.parse(Self.line(hashed: good).dropLast()) == nil)
        #expect(AuditRecord.parse([AuditCompact.marker][...]) == nil)
    }

    @Test("arbitrary bytes after the marker: never a crash; whatever reads as a record lays out again to the same bytes")
    func arbitraryBytes() throws {
        var generator = SeededGenerator(seed: 23)
        let seed = Self.line(
            AuditEvent(
                timeMs: 1_790_000_000_000,
                lease: AuditLeaseRecord(
                    lease: Lease(
                        id: ID128(high: 1, low: 2),
                        sessionID: ID128(high: 3, low: 4),
                        feature: "cad",
                        licenseID: "L",
                        count: 1,
                        identity: ClientIdentity(user: "u", host: "h", groups: ["g"]),
                        grantedAtMs: 1_790_000_000_000,
                        expiresAtMs: 1_790_000_060_000,
                        ttlMs: 60_000,
                        overage: false,
                        fencingToken: 1,
                        checkoutKey: []
                    ),
                    actor: nil,
                    kind: .grant(waitedMs: nil)
                )
            )
        )
        var parsedCount = 0
        for round in 0..<20_000 {
            var line = seed
            for _ in 0..<(1 + round % 4) {
                let position = 1 + Int(generator.next() % UInt64(line.count - 1))
                switch generator.next() % 3 {
                case 0: line[position] = UInt8(truncatingIfNeeded: generator.next())
                case 1: line.remove(at: position)
                default: line.insert(UInt8(truncatingIfNeeded: generator.next()), at: position)
                }
            }
            line.removeAll { $0 == 0x0A }
            guard let parsed = AuditRecord.parse(line[...]) else { continue }
            parsedCount += 1
            // Read in its one spelling: the fields lay out to the same bytes, hash aside.
            let unescaped = try #require(AuditCompact.unescape(line[...]))
            #expect(parsed.record.compactHashedBytes == Array(unescaped.dropLast(32)))
            #expect(parsed.hashMatches == (line == seed))
        }
        #expect(parsedCount > 100)
    }
}
