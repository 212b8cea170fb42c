import LicenseCore
import LicenseTestSupport
import Testing

@testable import LicenseAudit

@Suite("Audit renderer: the escape scan and the record buffer")
struct AuditRendererTests {
    @Test("the word-at-a-time scan finds every byte that needs escaping, at every position, and nothing else")
    func escapeScan() {
        for filler: UInt8 in [UInt8(ascii: "a"), 0x7F, 0x80, 0xC3, 0xFF, 0x21, 0x23, 0x5B, 0x5D, 0x20] {
            for length in 0...19 {
                let plain = [UInt8](repeating: filler, count: length)
                #expect(!plain.withUnsafeBufferPointer(AuditRenderer.needsEscaping), "filler \(filler) length \(length)")
                for position in 0..<length {
                    for byte in UInt8.min...UInt8.max {
                        var bytes = plain
                        bytes[position] = byte
                        let expected = byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\")
                        let found = bytes.withUnsafeBufferPointer(AuditRenderer.needsEscaping)
                        if found != expected {
                            Issue.record("byte \(byte) at \(position) of \(length) (filler \(filler)): \(found)")
                        }
                    }
                }
            }
        }
    }

    @Test("the record buffer grows keeping its bytes")
    func byteWriter() {
        var writer = ByteWriter(capacity: 1)
        var expected: [UInt8] = []
        for round in 0..<200 {
            let chunk = (0..<round % 37).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ round) }
            chunk.withUnsafeBytes { writer.write($0) }
            writer.write(UInt8(truncatingIfNeeded: round))
            writer.write("--")
            expected += chunk + [UInt8(truncatingIfNeeded: round)] + Array("--".utf8)
        }
        #expect(Array(writer.written) == expected)
        #expect(Array(writer.bytes(10..<20)) == Array(expected[10..<20]))
        #expect(writer.count == expected.count)
    }
}

@Suite("Audit renderer: lease records written from the lease")
struct AuditLeaseRecordRenderingTests {
    /// Lease records of every kind and shape: grants with and without a wait, releases of every
    /// cause with and without the lease, extra particulars, strings that need escaping, empty and
    /// long group lists, extreme ids and times.
    static func records() -> [AuditEvent] {
        let t0: Int64 = 1_790_000_000_000
        let ids = [ID128(high: 0, low: 0), ID128(high: .max, low: .max), ID128(high: 0x0123_4567_89AB_CDEF, low: 0xFEDC_BA98_7654_3210)]
        let identities = [
            ClientIdentity(user: "alice", host: "ws1", groups: []),
            ClientIdentity(user: "o'brien \"x\"\\\u{1}", host: "tab\there\nü", groups: ["/emea", "/emea/sales", "quote\"d"]),
            ClientIdentity(user: "", host: "", groups: [""]),
        ]
        let features = ["cad", "sim\ttab\nnewline ü\u{7F}", ""]
        let extras: [[(String, AuditEvent.Value)]] = [
            [], [("reason", .string("admin said \"no\"")), ("n", .int(-7)), ("flag", .bool(true)), ("list", .strings(["a", "b\\"]))],
        ]
        var events: [AuditEvent] = []
        for (i, id) in ids.enumerated() {
            for (j, identity) in identities.enumerated() {
                var lease = Lease(
                    id: id,
                    sessionID: ID128(high: 1, low: UInt64(j)),
                    feature: features[(i + j) % features.count],
                    licenseID: j == 1 ? "lic\"ence" : "bench",
                    count: j == 2 ? .max : UInt32(i + 1),
                    identity: identity,
                    grantedAtMs: i == 2 ? -1_234 : t0 + Int64(i),
                    expiresAtMs: t0 + 60_000,
                    ttlMs: 60_000,
                    overage: j == 1,
                    fencingToken: 1,
                    checkoutKey: []
                )
                lease.borrowed = i == 1
                // A named actor, and the lease's holder (nil: `user@host` written from the lease).
                for extra in extras {
                    for actor: String? in [j == 1 ? "o'brien \"the admin\"@ws\u{1}" : "\(identity.user)@\(identity.host)", nil] {
                        for waited: Int64? in [nil, 0, 12_345] {
                            events.append(
                                AuditEvent(
                                    timeMs: t0,
                                    lease: AuditLeaseRecord(lease: lease, actor: actor, kind: .grant(waitedMs: waited), extra: extra)
                                )
                            )
                        }
                        for cause in [ReleaseCause.checkedIn, .baseReleased, .expired, .revoked] {
                            let at = t0 + 999
                            events.append(
                                AuditEvent(
                                    timeMs: at,
                                    lease: AuditLeaseRecord(
                                        lease: lease,
                                        actor: actor,
                                        kind: .release(cause: cause, atMs: at),
                                        extra: extra
                                    )
                                )
                            )
                            events.append(
                                AuditEvent(
                                    timeMs: at,
                                    lease: AuditLeaseRecord(id: id, actor: actor ?? "server", cause: cause, atMs: at, extra: extra)
                                )
                            )
                        }
                    }
                }
            }
        }
        return events
    }

    /// The lines an audit log writes for `events`.
    static func lines(_ events: [AuditEvent], in directory: TemporaryDirectory, _ name: String, format: AuditFormat) throws -> [[UInt8]] {
        let path = directory.path(name)
        let log = try AuditLog.open(directory: path, maxFileBytes: 1 << 26, syncs: false, format: format)
        try log.write(events)
        log.close()
        let files = try AuditTrail.files(in: path)
        #expect(try AuditTrail.verify(files).failure == nil)
        return try files.flatMap { try AuditTrailTests.lines(of: $0.path) }
    }

    @Test("a lease record renders to the same bytes as its particulars listed, and parses back to them", arguments: AuditFormat.allCases)
    func sameBytes(format: AuditFormat) throws {
        let events = Self.records()
        let scratch = try TemporaryDirectory()
        let direct = try Self.lines(events, in: scratch, "direct", format: format)
        let listed = try Self.lines(events.map(\.resolved), in: scratch, "listed", format: format)
        #expect(direct.count == events.count)
        #expect(direct == listed)
        for (line, event) in zip(direct, events) {
            let parsed = try #require(AuditRecord.parse(line[...]))
            #expect(parsed.hashMatches)
            #expect(parsed.record.hashMatches)
            #expect(AuditTrailTests.line(parsed.record, format) == line)
            let resolved = event.resolved
            #expect(parsed.record.action == resolved.action)
            #expect(parsed.record.actor == resolved.actor)
            #expect(parsed.record.subject == resolved.subject)
        }
    }

    @Test("a lease record's particulars: the fields of the lease, then the kind's, then the extra ones")
    func particulars() {
        let lease = Lease(
            id: ID128(high: 0xAB, low: 0xCD),
            sessionID: ID128(high: 1, low: 2),
            feature: "cad",
            licenseID: "L1",
            count: 2,
            identity: ClientIdentity(user: "u", host: "h", groups: ["g"]),
            grantedAtMs: 1_000,
            expiresAtMs: 61_000,
            ttlMs: 60_000,
            overage: false,
            fencingToken: 1,
            checkoutKey: []
        )
        let grant = AuditLeaseRecord(lease: lease, actor: "u@h", kind: .grant(waitedMs: 5), extra: [("x", .int(1))])
        #expect(grant.action == "grant")
        #expect(grant.parts.subject == "lease:00000000000000ab00000000000000cd")
        #expect(
            grant.parts.details.map(\.0) == [
                "lease", "feature", "license", "count", "user", "host", "groups", "granted_ms", "expires_ms", "overage", "borrowed",
                "waited_ms", "x",
            ]
        )
        #expect(grant.parts.actor == "u@h")
        #expect(AuditLeaseRecord(lease: lease, actor: nil, kind: .grant(waitedMs: nil)).parts.actor == "u@h", "nil: the holder")
        let release = AuditLeaseRecord(lease: lease, actor: "server", kind: .release(cause: .expired, atMs: 4_000))
        #expect(release.action == "reclaim")
        #expect(release.parts.details.last?.1 == .string("expired"))
        #expect(release.parts.details.first(where: { $0.0 == "held_ms" })?.1 == .int(3_000))
        let unknown = AuditLeaseRecord(id: lease.id, actor: "admin-socket", cause: .revoked, atMs: 4_000)
        #expect(unknown.action == "revoke")
        #expect(unknown.parts.details.map(\.0) == ["lease", "cause"])
    }
}

@Suite("Audit renderer: numbers and ids")
struct AuditNumberRenderingTests {
    /// Every decimal length, both sides of each power of ten, the extremes and negatives, and ids
    /// of every byte value: rendered by the writer's digit tables, read back by the trail's own
    /// parser (and `ID128.description` for the subjects).
    @Test("integers of every length and ids of every byte read back as written", arguments: AuditFormat.allCases)
    func numbersAndIDs(format: AuditFormat) throws {
        var values: [Int64] = [0, 1, 9, 10, 11, 99, 100, 101, .max, .min, .min + 1, -1, -9, -10, -99, -100]
        var power: Int64 = 10
        while power <= Int64.max / 10 {
            values += [power - 1, power, power + 1, -(power - 1), -power, -(power + 1)]
            power *= 10
        }
        values += [power - 1, power, power + 1, -power]
        let ids = (0..<16).map { block -> ID128 in
            let bytes = (0..<16).map { UInt64(block * 16 + $0) }
            return ID128(
                high: bytes[0..<8].reduce(0) { $0 << 8 | $1 },
                low: bytes[8..<16].reduce(0) { $0 << 8 | $1 }
            )
        }
        let events = values.enumerated().map { index, value in
            AuditEvent(
                timeMs: 1_790_000_000_000 + Int64(index),
                action: "n",
                actor: "a",
                subject: "lease:\(ids[index % ids.count])",
                details: [("v", .int(value))]
            )
        }
        let scratch = try TemporaryDirectory()
        let lines = try AuditLeaseRecordRenderingTests.lines(events, in: scratch, "numbers", format: format)
        #expect(lines.count == events.count)
        for (line, event) in zip(lines, events) {
            let parsed = try #require(AuditRecord.parse(line[...]))
            #expect(parsed.hashMatches)
            #expect(AuditTrailTests.line(parsed.record, format) == line)
            #expect(parsed.record.timeMs == event.timeMs)
            #expect(parsed.record.subject == event.subject)
            let details = try #require(parsed.record.details)
            #expect(details.count == 1 && details[0].0 == "v" && details[0].1 == event.details[0].1, "\(line)")
        }
    }
}
