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
        typealias W = WalRecordWire
        W.identifier(1, lease.id, &out)
        W.identifier(2, lease.sessionID, &out)
        W.string(3, lease.feature, &out)
        W.string(4, lease.licenseID, &out)
        W.varint(5, UInt64(lease.count), &out)
        W.string(6, lease.identity.user, &out)
        W.string(7, lease.identity.host, &out)
        W.string(8, lease.identity.clientName, &out)
        W.string(9, lease.identity.clientVersion, &out)
        W.varint(10, UInt64(bitPattern: lease.grantedAtMs), &out)
        W.varint(11, UInt64(bitPattern: lease.expiresAtMs), &out)
        W.varint(12, UInt64(bitPattern: lease.ttlMs), &out)
        W.varint(13, lease.overage ? 1 : 0, &out)
        W.varint(14, lease.fencingToken, &out)
        if !lease.checkoutKey.isEmpty { W.lengthDelimited(15, lease.checkoutKey, &out) }
        W.varint(16, lease.borrowed ? 1 : 0, &out)
        W.varint(17, lease.lingering ? 1 : 0, &out)
        if let base = lease.baseLeaseID { W.identifier(18, base, &out) }
        W.varint(19, UInt64(lease.sharedSeats), &out)
        W.string(20, lease.dupIdentity, &out)
        W.varint(21, UInt64(lease.tokenCost), &out)
        for group in lease.identity.groups { W.string(22, group, &out, always: true) }
        W.string(23, lease.identity.address, &out)
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
        var lease = Lease(
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
            checkoutKey: checkoutKey
        )
        lease.borrowed = borrowed
        lease.lingering = lingering
        lease.baseLeaseID = base ?? nil
        lease.sharedSeats = sharedSeats
        lease.dupIdentity = dupIdentity
        lease.tokenCost = tokenCost
        return lease
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
