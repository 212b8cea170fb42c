import Foundation
import LicenseCore
import LicenseFiles
import LicenseProtocol
import LicenseTestSupport
import SwiftProtobuf
import Testing

@testable import LicenseStore

/// The hand-written `StoredLease` reader against the generated decoder: the same lease for every
/// message SwiftProtobuf writes, and never a different one for damaged bytes.
@Suite("StoredLease wire format")
struct StoredLeaseWireTests {
    typealias Generator = WalRecordWireTests.Generator

    /// What the generated decoder and `Lease(stored:)` make of `bytes` (nil where either refuses).
    static func generated(_ bytes: [UInt8]) -> Lease? {
        (try? Licensed_V1_StoredLease(serializedBytes: bytes)).flatMap { Lease(stored: $0) }
    }

    static func laid(_ bytes: [UInt8]) -> Lease? {
        bytes.withUnsafeBytes { StoredLeaseWire.lease(from: $0) }
    }

    @Test("leases written by SwiftProtobuf and by hand read back as the generated decoder reads them", arguments: [11, 12] as [UInt64])
    func roundTrip(seed: UInt64) throws {
        var g = Generator(state: seed)
        for _ in 0..<1_000 {
            let lease = WalRecordWireTests.lease(&g)
            let generated: [UInt8] = try lease.stored.serializedBytes()
            var laid: [UInt8] = []
            StoredLeaseWire.append(lease, to: &laid)
            #expect(laid == generated)
            let expected = Self.generated(generated)
            #expect(expected != nil)
            #expect(Self.laid(generated) == expected)
        }
    }

    @Test("strings: valid UTF-8 exactly when String(validating:) says so")
    func utf8() {
        var cases: [[UInt8]] = [
            [], Array("F".utf8), Array("ada.lovelace@ws-0042".utf8), Array("Zoë Ångström 数据 🎛".utf8),
            [0x80], [0xC0, 0xAF], [0xE0, 0x80, 0xAF], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xFF],
            [0xF0, 0x9F, 0x98, 0x61], [0x61, 0xE2, 0x82], [0xEF, 0xBF, 0xBD], Array("ok".utf8) + [0xC3],
        ]
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<5_000 {
            let length = Int.random(in: 0...12, using: &generator)
            cases.append(
                (0..<length).map { _ in [0x41, 0x7F, 0x80, 0xBF, 0xC2, 0xE2, 0xED, 0xF0, 0xF4, 0xFF].randomElement(using: &generator)! }
            )
        }
        for bytes in cases {
            let expected = String(validating: bytes, as: UTF8.self)
            let actual = bytes.withUnsafeBytes { StoredLeaseWire.Reader.utf8String($0) }
            #expect(actual == expected, "\(bytes)")
        }
    }

    @Test("unknown fields are skipped, a repeated field's last value wins, fields in any order")
    func tolerance() throws {
        var g = Generator(state: 21)
        let lease = WalRecordWireTests.lease(&g)
        var bytes: [UInt8] = []
        // Unknown fields of every wire type a writer may use, then the lease, then a second user.
        bytes += [0xA0, 0x06, 0x2A]  // field 100, varint 42
        bytes += [0xA9, 0x06] + [UInt8](repeating: 7, count: 8)  // field 101, fixed64
        bytes += [0xB2, 0x06, 0x02, 0x61, 0x62]  // field 102, "ab"
        bytes += [0xBD, 0x06, 1, 2, 3, 4]  // field 103, fixed32
        StoredLeaseWire.append(lease, to: &bytes)
        bytes += [0x32, 0x03] + Array("eve".utf8)  // field 6 (user) again
        let expected = Self.generated(bytes)
        #expect(expected?.identity.user == "eve")
        #expect(Self.laid(bytes) == expected)

        // An identity string that is not UTF-8 refuses the lease even when a valid one follows it
        // (the generated decoder checks every occurrence), with or without identities to share.
        for field: UInt8 in [6, 7, 8, 9, 22, 23] {
            var damaged: [UInt8] = []
            StoredLeaseWire.append(lease, to: &damaged)
            damaged += [field << 3 | 2, 0x02, 0xC3, 0x28]  // an invalid two-byte sequence
            damaged += [field << 3 | 2, 0x03] + Array("eve".utf8)
            #expect(Self.generated(damaged) == nil, "field \(field)")
            #expect(Self.laid(damaged) == nil, "field \(field)")
            var identities: [SessionID: ClientIdentity]? = [lease.sessionID: lease.identity]
            #expect(damaged.withUnsafeBytes { StoredLeaseWire.lease(from: $0, sharing: &identities) } == nil, "field \(field)")
        }
    }

    @Test("damaged messages: never a crash, never a lease the generated decoder would not give")
    func damaged() throws {
        var g = Generator(state: 31)
        var agreed = 0
        var refusedOnlyHere = 0
        for round in 0..<20_000 {
            let lease = WalRecordWireTests.lease(&g)
            var bytes: [UInt8] = try lease.stored.serializedBytes()
            g.damage(&bytes)
            let expected = Self.generated(bytes)
            let laid = Self.laid(bytes)
            if let laid {
                #expect(laid == expected, "round \(round): \(bytes)")
                agreed += 1
            } else if expected != nil {
                refusedOnlyHere += 1
            } else {
                agreed += 1
            }
        }
        // The reader may be stricter only in the rare case of a known field sent with another
        // wire type (which the generated decoder also reads into unknown fields or rejects).
        #expect(refusedOnlyHere < 200, "refused \(refusedOnlyHere) messages the generated decoder reads")
        #expect(agreed + refusedOnlyHere == 20_000)
    }

    @Test("a snapshot of generated leases reads back the same leases")
    func snapshot() throws {
        var g = Generator(state: 41)
        var table = LeaseTable()
        for _ in 0..<2_000 {
            var lease = WalRecordWireTests.lease(&g)
            lease.sharedSeats = 0
            table[lease.id] = lease
        }
        let bytes = try SnapshotFile.encode(leases: table, sequence: 9, takenAtMs: 1)
        let decoded = try SnapshotFile.decodeLeases(bytes, file: "t.snap")
        #expect(decoded.leases.count == 2_000)
        for lease in decoded.leases { #expect(Self.generated(try lease.stored.serializedBytes()) == table[lease.id]) }
    }

    @Test("leases of a session share the identity they have in common and keep their own where it differs")
    func sharedIdentities() throws {
        var g = Generator(state: 47)
        // Five sessions, 400 leases each; one lease in four differs from its session's identity
        // in one field (a string one byte longer or shorter, another group, no group).
        let sessions = (0..<5).map { _ in (id: g.id(), identity: WalRecordWireTests.lease(&g).identity) }
        var table = LeaseTable()
        for index in 0..<2_000 {
            var lease = WalRecordWireTests.lease(&g)
            let session = sessions[index % sessions.count]
            lease.sessionID = session.id
            lease.sharedSeats = 0
            lease.identity = session.identity
            switch g.below(16) {
            case 0: lease.identity.host += "x"
            case 1: lease.identity.user = String(lease.identity.user.dropLast())
            case 2: lease.identity.groups.append("/extra")
            case 3: lease.identity.groups = []
            default: break
            }
            table[lease.id] = lease
        }
        let bytes = try SnapshotFile.encode(leases: table, sequence: 9, takenAtMs: 1)
        let decoded = try SnapshotFile.decodeLeases(bytes, file: "t.snap")
        #expect(decoded.leases.count == 2_000)
        for lease in decoded.leases { #expect(lease == table[lease.id]) }

        // Read one by one with a cache: one identity per session remembered, each lease its own.
        var identities: [SessionID: ClientIdentity]? = [:]
        for lease in table.values {
            var body: [UInt8] = []
            StoredLeaseWire.append(lease, to: &body)
            let read = body.withUnsafeBytes { StoredLeaseWire.lease(from: $0, sharing: &identities) }
            #expect(read == lease)
            #expect(identities?[lease.sessionID] == lease.identity)
        }
        #expect(identities?.count == sessions.count)
    }

    @Test("a snapshot written to disk as it is encoded is the encoded snapshot, byte for byte")
    func written() throws {
        var g = Generator(state: 43)
        var table = LeaseTable()
        for index in 0..<5_000 {
            var lease = WalRecordWireTests.lease(&g)
            // Some share seats: they are written last, in grant order, by their own chunk.
            lease.sharedSeats = index % 7 == 0 ? 2 : 0
            table[lease.id] = lease
        }
        let content = SnapshotFile.Content(leases: table, trialStarts: ["T": 5])
        let directory = try TemporaryDirectory()
        let path = directory.path("snapshot.snap")
        let size = try SnapshotFile.write(content, sequence: 12, takenAtMs: 3, to: path, directory: directory.url.path)
        let expected = try SnapshotFile.encode(content, sequence: 12, takenAtMs: 3)
        let onDisk = try FileIO.readAll(path)
        #expect(size == onDisk.count)
        #expect(onDisk == expected)
        #expect(try SnapshotFile.decodeLeases(onDisk, file: path).leases.count == 5_000)
        #expect(!FileManager.default.fileExists(atPath: path + ".tmp"))
    }

    @Test("a snapshot that cannot be written throws, naming the file, and leaves nothing behind")
    func unwritable() throws {
        let directory = try TemporaryDirectory()
        let path = directory.path("missing/snapshot.snap")
        #expect(throws: StoreError.self) {
            try SnapshotFile.write(
                SnapshotFile.Content(leases: LeaseTable()),
                sequence: 1,
                takenAtMs: 1,
                to: path,
                directory: directory.path("missing")
            )
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.url.path).isEmpty)
    }
}
