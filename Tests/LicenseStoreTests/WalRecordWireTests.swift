import Foundation
import LicenseCore
import LicenseProtocol
import LicenseStore
import SwiftProtobuf
import Testing

/// The hand-laid grant and release records must be SwiftProtobuf's bytes for the same
/// `WalRecord`, and read back as the same change.
@Suite("WAL record encoder")
struct WalRecordWireTests {
    /// A small deterministic generator (SplitMix64), so a failure names its seed.
    struct Generator {
        var state: UInt64
        mutating func next() -> UInt64 {
            self.state &+= 0x9E37_79B9_7F4A_7C15
            var z = self.state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func below(_ n: Int) -> Int { Int(self.next() % UInt64(n)) }
        mutating func flag() -> Bool { self.next() & 1 == 1 }
        mutating func text() -> String {
            let pieces = ["", "ada", "ws-0042.eng.example.com", "é", "数据", "🚀", "a\"b\\c\n", String(repeating: "x", count: 200)]
            return (0..<self.below(3)).map { _ in pieces[self.below(pieces.count)] }.joined()
        }
        mutating func int64() -> Int64 {
            switch self.below(4) {
            case 0: 0
            case 1: -Int64(self.below(1_000_000))
            case 2: Int64(bitPattern: self.next())
            default: 1_790_000_000_000 + Int64(self.below(1_000_000))
            }
        }
        mutating func uint32() -> UInt32 { self.flag() ? UInt32(self.below(3)) : UInt32(truncatingIfNeeded: self.next()) }
        mutating func id() -> ID128 { ID128(high: self.flag() ? 0 : self.next(), low: self.next()) }
        /// Flips, drops, inserts or cuts up to four bytes.
        mutating func damage(_ bytes: inout [UInt8]) {
            for _ in 0...self.below(3) {
                guard !bytes.isEmpty else { break }
                let at = self.below(bytes.count)
                switch self.below(4) {
                case 0: bytes[at] ^= UInt8(truncatingIfNeeded: 1 << self.below(8))
                case 1: bytes.remove(at: at)
                case 2: bytes.insert(UInt8(truncatingIfNeeded: self.next()), at: at)
                default: bytes.removeSubrange(at...)
                }
            }
        }
    }

    static func lease(_ g: inout Generator) -> Lease {
        var lease = Lease(
            id: g.id(),
            sessionID: g.id(),
            feature: g.text(),
            licenseID: g.text(),
            count: g.uint32(),
            identity: ClientIdentity(
                user: g.text(),
                host: g.text(),
                clientName: g.text(),
                clientVersion: g.text(),
                groups: (0..<g.below(4)).map { _ in g.text() },
                address: g.text()
            ),
            grantedAtMs: g.int64(),
            expiresAtMs: g.int64(),
            ttlMs: g.int64(),
            overage: g.flag(),
            fencingToken: g.flag() ? 0 : g.next(),
            checkoutKey: (0..<g.below(3) * 16).map { _ in UInt8(truncatingIfNeeded: g.next()) }
        )
        lease.borrowed = g.flag()
        lease.lingering = g.flag()
        lease.baseLeaseID = g.flag() ? g.id() : nil
        lease.sharedSeats = g.uint32()
        lease.dupIdentity = g.text()
        lease.tokenCost = g.uint32()
        return lease
    }

    func check(_ change: LedgerChange) throws {
        let generated: [UInt8] = try change.record.serializedBytes()
        let laid = WalRecordWire.bytes(of: change)
        #expect(laid == generated, "\(change)")
        let read = LedgerChange(record: try Licensed_V1_WalRecord(serializedBytes: laid))
        #expect(read == LedgerChange(record: try Licensed_V1_WalRecord(serializedBytes: generated)))
    }

    @Test("grants: the same bytes as SwiftProtobuf's, read back the same", arguments: [1, 2, 3, 4] as [UInt64])
    func grants(seed: UInt64) throws {
        var g = Generator(state: seed)
        for _ in 0..<500 { try self.check(.granted(Self.lease(&g))) }
    }

    @Test("grants of every length around the varint steps of the lease's and the grant's lengths, appended after other bytes")
    func grantLengths() throws {
        var g = Generator(state: 5)
        var base = Self.lease(&g)
        base.identity = ClientIdentity(user: "", host: "h")
        base.feature = "f"
        base.licenseID = "l"
        base.dupIdentity = ""
        base.checkoutKey = []
        base.baseLeaseID = nil
        let lengths = Array(0..<300) + Array(16_200..<16_500)
        var sizes: [Int] = []
        for length in lengths {
            var lease = base
            lease.identity.user = String(repeating: "u", count: length)
            let change = LedgerChange.granted(lease)
            try self.check(change)
            var buffer: [UInt8] = [1, 2, 3]
            WalRecordWire.append(change, to: &buffer)
            #expect(Array(buffer.prefix(3)) == [1, 2, 3])
            #expect(Array(buffer.dropFirst(3)) == (try change.record.serializedBytes() as [UInt8]), "user of \(length) bytes")
            sizes.append(buffer.count - 3)
        }
        // Both steps of both lengths were crossed: 1- to 2- and 2- to 3-byte varints.
        #expect(sizes.contains { $0 < 128 } && sizes.contains { $0 > 300 && $0 < 16_000 } && sizes.contains { $0 > 16_400 })
    }

    @Test("releases: every cause, any time")
    func releases() throws {
        var g = Generator(state: 9)
        for cause in [ReleaseCause.checkedIn, .expired, .revoked, .baseReleased] {
            for _ in 0..<50 { try self.check(.released(g.id(), cause, atMs: g.int64())) }
        }
    }

    /// A record of `change` carrying `count` made-up audit lines from `first`, as the writer lays it.
    static func withAuditLines(_ change: LedgerChange, first: UInt64, count: Int, _ g: inout Generator) -> (bytes: [UInt8], lines: [UInt8])
    {
        let lines = (0..<count).flatMap { index in Array("{\"seq\":\(first + UInt64(index)),\"actor\":\"\(g.text())\"}\n".utf8) }
        let header = WalRecordWire.auditLinesHeader(firstSequence: first, count: count, byteCount: lines.count)
        return (WalRecordWire.bytes(of: change) + header + lines, lines)
    }

    @Test("audit lines after a record: SwiftProtobuf's bytes for audit_lines, found in place; the change reads the same")
    func auditLines() throws {
        var g = Generator(state: 71)
        for round in 0..<400 {
            let change: LedgerChange =
                round % 3 == 2
                ? .lingered(g.id(), untilMs: g.int64())
                : round % 3 == 0 ? .granted(Self.lease(&g)) : .released(g.id(), .expired, atMs: g.int64())
            let first = round % 4 == 0 ? UInt64(round + 1) : g.next() >> 1 + 1
            let count = g.below(300) + 1
            let (laid, lines) = Self.withAuditLines(change, first: first, count: count, &g)
            var message = change.record
            message.auditLines.firstSequence = first
            message.auditLines.count = UInt64(count)
            message.auditLines.lines = Data(lines)
            #expect(laid == (try message.serializedBytes() as [UInt8]))
            let found = try #require(WalRecordWire.auditLines(in: laid[...]))
            #expect(found.firstSequence == first && found.count == UInt64(count) && found.lastSequence == first + UInt64(count) - 1)
            #expect(found.lines == lines[...] && found.lines.endIndex == laid.endIndex)
            #expect(WalRecordWire.change(from: laid) == change)
            #expect(WalRecordWire.auditLines(in: WalRecordWire.bytes(of: change)[...]) == nil)
        }
    }

    @Test("other changes go through SwiftProtobuf")
    func others() throws {
        try self.check(.lingered(ID128(high: 1, low: 2), untilMs: 5))
        try self.check(.clockMarked(atMs: 1_790_000_000_000))
        try self.check(.trialStarted(licenseID: "trial", atMs: 7))
    }
}

/// Reading records back: the hand-read path gives what the generated decoder gives, for every
/// record written and for damaged ones.
@Suite("WAL record reader")
struct WalRecordReaderTests {
    typealias Generator = WalRecordWireTests.Generator

    static func generated(_ bytes: [UInt8]) -> LedgerChange? {
        (try? Licensed_V1_WalRecord(serializedBytes: bytes)).flatMap { LedgerChange(record: $0) }
    }

    @Test("grants, releases and other changes read back as written")
    func roundTrip() throws {
        var g = Generator(state: 51)
        var changes: [LedgerChange] = (0..<500).map { _ in .granted(WalRecordWireTests.lease(&g)) }
        for cause in [ReleaseCause.checkedIn, .expired, .revoked, .baseReleased] {
            changes += (0..<50).map { _ in .released(g.id(), cause, atMs: g.int64()) }
        }
        changes += [.lingered(ID128(high: 1, low: 2), untilMs: 5), .clockMarked(atMs: 9), .trialStarted(licenseID: "t", atMs: 3)]
        for change in changes {
            let bytes = WalRecordWire.bytes(of: change)
            #expect(WalRecordWire.change(from: bytes) == Self.generated(bytes))
            #expect(WalRecordWire.change(from: bytes) != nil)
        }
    }

    @Test("damaged records: never a crash, always the generated decoder's answer")
    func damaged() throws {
        var g = Generator(state: 61)
        for round in 0..<20_000 {
            let change: LedgerChange =
                g.flag() ? .granted(WalRecordWireTests.lease(&g)) : .released(g.id(), g.flag() ? .checkedIn : .expired, atMs: g.int64())
            var bytes =
                round % 3 == 0
                ? WalRecordWireTests.withAuditLines(change, first: g.next() >> 1 + 1, count: g.below(5) + 1, &g).bytes
                : WalRecordWire.bytes(of: change)
            g.damage(&bytes)
            #expect(WalRecordWire.change(from: bytes) == Self.generated(bytes), "round \(round): \(bytes)")
        }
    }
}
