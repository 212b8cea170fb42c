import Foundation
public import LicenseCore
import LicenseProtocol

/// A lease as a `StoredLease` message (store.proto), laid out and read by hand: the write-ahead
/// log's grant records and every lease of a snapshot. The bytes are SwiftProtobuf's for the same
/// message (`WalRecordWireTests`), and the reader accepts what SwiftProtobuf's does: any field
/// order, a field repeated (the last wins), fields it does not know (skipped). Whenever it
/// returns a lease, that is the lease the generated decoder and `Lease(stored:)` give — checked
/// on generated leases and on many thousands of damaged ones (`StoredLeaseWireTests`). It refuses
/// (nil) what does not parse; it may also refuse the odd input the generated decoder takes (a
/// known field sent with another wire type, a deprecated group), which no writer of ours makes.
/// Generating the message first and decoding through it cost a snapshot of 1,000,000 leases
/// most of its time (`scripts/bench`, `licensed-store-bench`).
public enum StoredLeaseWire {
    /// Appends `lease`'s `StoredLease` fields (the message body, without tag or length).
    public static func append(_ lease: Lease, to out: inout [UInt8]) {
        Self.withBytes(of: lease) { out.append(contentsOf: $0) }
    }

    /// Calls `body` with `lease`'s `StoredLease` fields (the message body, without tag or length).
    ///
    /// Written through a pointer into temporary room for the largest the fields can be: an
    /// `Array.append` per tag, varint byte and string was about 5,000 instructions a grant's log
    /// record (`licensed-micro wal-grant`, callgrind).
    public static func withBytes<Result>(of lease: Lease, _ body: (UnsafeRawBufferPointer) -> Result) -> Result {
        let identity = lease.identity
        // Two ids (key, length, 16 bytes) and the base lease id (its key takes 2 bytes), the 10
        // varint fields, and the 9 string and bytes fields besides the groups, with their bytes.
        var room = 2 * 18 + 19 + 10 * Self.varintFieldRoom + 9 * Self.stringFieldRoom
        room += lease.feature.utf8.count + lease.licenseID.utf8.count + lease.checkoutKey.count + lease.dupIdentity.utf8.count
        room += identity.user.utf8.count + identity.host.utf8.count + identity.clientName.utf8.count
        room += identity.clientVersion.utf8.count + identity.address.utf8.count
        for group in identity.groups { room += group.utf8.count + Self.stringFieldRoom }
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: room) { buffer in
            var w = FieldWriter(at: buffer.baseAddress!)
            w.identifier(1, lease.id)
            w.identifier(2, lease.sessionID)
            w.string(3, lease.feature)
            w.string(4, lease.licenseID)
            w.varint(5, UInt64(lease.count))
            w.string(6, identity.user)
            w.string(7, identity.host)
            w.string(8, identity.clientName)
            w.string(9, identity.clientVersion)
            w.varint(10, UInt64(bitPattern: lease.grantedAtMs))
            w.varint(11, UInt64(bitPattern: lease.expiresAtMs))
            w.varint(12, UInt64(bitPattern: lease.ttlMs))
            w.varint(13, lease.overage ? 1 : 0)
            w.varint(14, lease.fencingToken)
            if !lease.checkoutKey.isEmpty { lease.checkoutKey.withUnsafeBytes { w.bytes(15, $0) } }
            w.varint(16, lease.borrowed ? 1 : 0)
            w.varint(17, lease.lingering ? 1 : 0)
            if let base = lease.baseLeaseID { w.identifier(18, base) }
            w.varint(19, UInt64(lease.sharedSeats))
            w.string(20, lease.dupIdentity)
            w.varint(21, UInt64(lease.tokenCost))
            for group in identity.groups { w.string(22, group, always: true) }
            w.string(23, identity.address)
            precondition(w.count <= room, "a stored lease outgrew the room made for it")
            return body(UnsafeRawBufferPointer(UnsafeMutableBufferPointer(rebasing: buffer[..<w.count])))
        }
    }

    /// The most a varint field of a field number below 2,048 takes: key (2) and value (10).
    static let varintFieldRoom = 12
    /// The most a string field's key (2) and length (10) take.
    static let stringFieldRoom = 12

    /// Writes protobuf fields (of field numbers below 2,048) at a pointer into room made for them.
    struct FieldWriter {
        private let base: UnsafeMutablePointer<UInt8>
        private(set) var count = 0

        init(at base: UnsafeMutablePointer<UInt8>) { self.base = base }

        @inline(__always)
        mutating func rawVarint(_ value: UInt64) {
            var value = value
            while value >= 0x80 {
                self.base[self.count] = UInt8(truncatingIfNeeded: value) | 0x80
                self.count += 1
                value >>= 7
            }
            self.base[self.count] = UInt8(value)
            self.count += 1
        }

        @inline(__always)
        mutating func key(_ field: Int, wireType: UInt64) {
            self.rawVarint(UInt64(field) << 3 | wireType)
        }

        /// A varint field; nothing for 0, as protobuf 3 writes it.
        mutating func varint(_ field: Int, _ value: UInt64) {
            guard value != 0 else { return }
            self.key(field, wireType: 0)
            self.rawVarint(value)
        }

        mutating func bytes(_ field: Int, _ bytes: UnsafeRawBufferPointer) {
            self.key(field, wireType: 2)
            self.rawVarint(UInt64(bytes.count))
            if let source = bytes.baseAddress, !bytes.isEmpty {
                (self.base + self.count).update(from: source.assumingMemoryBound(to: UInt8.self), count: bytes.count)
                self.count += bytes.count
            }
        }

        /// A string field; a repeated one's elements are written even when empty (`always`).
        mutating func string(_ field: Int, _ text: String, always: Bool = false) {
            guard always || !text.isEmpty else { return }
            var text = text
            text.withUTF8 { self.bytes(field, UnsafeRawBufferPointer($0)) }
        }

        /// A 16-byte id field, big-endian halves.
        mutating func identifier(_ field: Int, _ id: ID128) {
            self.key(field, wireType: 2)
            self.base[self.count] = 16
            self.count += 1
            let raw = UnsafeMutableRawPointer(self.base + self.count)
            raw.storeBytes(of: id.high.bigEndian, as: UInt64.self)
            raw.storeBytes(of: id.low.bigEndian, toByteOffset: 8, as: UInt64.self)
            self.count += 16
        }
    }

    /// The lease in a `StoredLease` message body; nil when it does not parse or its ids are
    /// malformed (as `Lease(stored:)`).
    public static func lease(from body: UnsafeRawBufferPointer) -> Lease? {
        var identities: [SessionID: ClientIdentity]? = nil
        return Self.lease(from: body, sharing: &identities)
    }

    /// As `lease(from:)`; with `identities`, a lease whose identity is byte for byte that of the
    /// last lease read for its session shares that lease's identity instead of making its own
    /// (a snapshot holds a session's identity once per lease: making each one cost an allocation
    /// for the identity and one per string longer than 15 bytes, and freeing the copies when the
    /// ledger shares them again).
    public static func lease(from body: UnsafeRawBufferPointer, sharing identities: inout [SessionID: ClientIdentity]?) -> Lease? {
        var reader = Reader(bytes: body)
        var id: ID128?? = nil
        var session: ID128?? = nil
        var feature = ""
        var licenseID = ""
        var count: UInt32 = 0
        // The identity's strings, as ranges of `body` until it is known whether they are needed.
        var user = 0..<0
        var host = 0..<0
        var clientName = 0..<0
        var clientVersion = 0..<0
        var grantedAtMs: Int64 = 0
        var expiresAtMs: Int64 = 0
        var ttlMs: Int64 = 0
        var overage = false
        var fencingToken: UInt64 = 0
        var checkoutKey: [UInt8] = []
        var borrowed = false
        var lingering = false
        var base: ID128?? = nil
        var sharedSeats: UInt32 = 0
        var dupIdentity = ""
        var tokenCost: UInt32 = 0
        var groups: [Range<Int>] = []
        var address = 0..<0
        while !reader.atEnd {
            guard let key = reader.varint(), key >> 3 > 0, key >> 3 <= UInt64(Int32.max) else { return nil }
            let field = Int(key >> 3)
            let wireType = key & 7
            switch (field, wireType) {
            case (1, 2): guard let v = reader.identifier() else { return nil }; id = v
            case (2, 2): guard let v = reader.identifier() else { return nil }; session = v
            case (3, 2): guard let v = reader.string() else { return nil }; feature = v
            case (4, 2): guard let v = reader.string() else { return nil }; licenseID = v
            case (5, 0): guard let v = reader.varint() else { return nil }; count = UInt32(truncatingIfNeeded: v)
            case (6, 2): guard let v = reader.text() else { return nil }; user = v
            case (7, 2): guard let v = reader.text() else { return nil }; host = v
            case (8, 2): guard let v = reader.text() else { return nil }; clientName = v
            case (9, 2): guard let v = reader.text() else { return nil }; clientVersion = v
            case (10, 0): guard let v = reader.varint() else { return nil }; grantedAtMs = Int64(bitPattern: v)
            case (11, 0): guard let v = reader.varint() else { return nil }; expiresAtMs = Int64(bitPattern: v)
            case (12, 0): guard let v = reader.varint() else { return nil }; ttlMs = Int64(bitPattern: v)
            case (13, 0): guard let v = reader.varint() else { return nil }; overage = v != 0
            case (14, 0): guard let v = reader.varint() else { return nil }; fencingToken = v
            case (15, 2): guard let v = reader.data() else { return nil }; checkoutKey = v
            case (16, 0): guard let v = reader.varint() else { return nil }; borrowed = v != 0
            case (17, 0): guard let v = reader.varint() else { return nil }; lingering = v != 0
            case (18, 2): guard let v = reader.identifier() else { return nil }; base = v
            case (19, 0): guard let v = reader.varint() else { return nil }; sharedSeats = UInt32(truncatingIfNeeded: v)
            case (20, 2): guard let v = reader.string() else { return nil }; dupIdentity = v
            case (21, 0): guard let v = reader.varint() else { return nil }; tokenCost = UInt32(truncatingIfNeeded: v)
            case (22, 2): guard let v = reader.text() else { return nil }; groups.append(v)
            case (23, 2): guard let v = reader.text() else { return nil }; address = v
            case (1...23, _): return nil  // a known field with another wire type
            default: guard reader.skip(wireType: wireType) else { return nil }
            }
        }
        guard case .some(.some(let id)) = id, case .some(.some(let session)) = session else { return nil }
        let identity: ClientIdentity
        if let shared = identities?[session],
            Self.same(shared.user, body, user), Self.same(shared.host, body, host),
            Self.same(shared.clientName, body, clientName), Self.same(shared.clientVersion, body, clientVersion),
            Self.same(shared.address, body, address), shared.groups.count == groups.count,
            zip(shared.groups, groups).allSatisfy({ Self.same($0, body, $1) }),
            shared.costCentre.isEmpty, shared.location.isEmpty
        {
            identity = shared
        } else {
            // Every range was checked for UTF-8 as it was read.
            func text(_ range: Range<Int>) -> String {
                String(decoding: UnsafeRawBufferPointer(rebasing: body[range]).assumingMemoryBound(to: UInt8.self), as: UTF8.self)
            }
            identity = ClientIdentity(
                user: text(user),
                host: text(host),
                clientName: text(clientName),
                clientVersion: text(clientVersion),
                groups: groups.map(text),
                address: text(address)
            )
            if identities != nil { identities![session] = identity }
        }
        return Lease(
            id: id,
            sessionID: session,
            feature: feature,
            licenseID: licenseID,
            count: count,
            identity: identity,
            grantedAtMs: grantedAtMs,
            expiresAtMs: expiresAtMs,
            ttlMs: ttlMs,
            overage: overage,
            fencingToken: fencingToken,
            checkoutKey: checkoutKey,
            borrowed: borrowed,
            lingering: lingering,
            baseLeaseID: base ?? nil,
            sharedSeats: sharedSeats,
            dupIdentity: dupIdentity,
            tokenCost: tokenCost
        )
    }

    /// True when `string`'s UTF-8 is `body[range]`.
    private static func same(_ string: String, _ body: UnsafeRawBufferPointer, _ range: Range<Int>) -> Bool {
        var string = string
        return string.withUTF8 { utf8 in
            utf8.count == range.count
                && (range.isEmpty || memcmp(utf8.baseAddress!, body.baseAddress! + range.lowerBound, range.count) == 0)
        }
    }

    /// Protobuf's wire format read from a buffer (shared with the protocol's request reader).
    typealias Reader = WireReader

}

extension WireReader {
    /// A bytes field holding an id: `.some(id)` for 16 bytes, `.some(nil)` for any other
    /// length (a malformed id, as `LeaseID(bytes:)` reads it), nil when it does not parse.
    mutating func identifier() -> ID128?? {
        guard let range = self.range() else { return nil }
        guard range.count == 16 else { return .some(nil) }
        let high = UInt64(bigEndian: self.bytes.loadUnaligned(fromByteOffset: range.lowerBound, as: UInt64.self))
        let low = UInt64(bigEndian: self.bytes.loadUnaligned(fromByteOffset: range.lowerBound + 8, as: UInt64.self))
        return .some(ID128(high: high, low: low))
    }
}
