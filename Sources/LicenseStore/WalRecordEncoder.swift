import Foundation
public import LicenseCore
import LicenseProtocol
import SwiftProtobuf

/// The `WalRecord` bytes of a change, for the log's writer and the cluster's replicated batches.
///
/// A grant and a release (the two records of every check-out and check-in, the bulk of any log)
/// are laid out here by hand, in protobuf's wire format with the fields in number order — the
/// bytes SwiftProtobuf writes for the same `WalRecord` (`WalRecordEncoderTests` holds the two to
/// each other on generated leases), and read back by the generated decoder as before. Building the
/// generated message first costs about 35,000 instructions for a grant (`scripts/bench-micro`):
/// a copy of each nested message's storage on first write, an exclusivity check on every field
/// access and the sizes of the nested messages worked out twice. Every other change is rare and
/// goes through SwiftProtobuf.
public enum WalRecordEncoder {
    /// The serialized `WalRecord` of `change`.
    public static func bytes(of change: LedgerChange) -> [UInt8] {
        switch change {
        case .granted(let lease):
            var leaseBytes: [UInt8] = []
            leaseBytes.reserveCapacity(160)
            Self.append(lease, to: &leaseBytes)
            // WalRecord { granted (1) { lease (1) { … } } }
            var granted: [UInt8] = []
            granted.reserveCapacity(leaseBytes.count + 8)
            Self.lengthDelimited(1, leaseBytes, &granted)
            var record: [UInt8] = []
            record.reserveCapacity(granted.count + 4)
            Self.lengthDelimited(1, granted, &record)
            return record
        case .released(let id, let cause, let atMs):
            var released: [UInt8] = []
            released.reserveCapacity(32)
            Self.identifier(1, id, &released)
            Self.varint(2, UInt64(bitPattern: Int64(cause.stored.rawValue)), &released)
            Self.varint(3, UInt64(bitPattern: atMs), &released)
            var record: [UInt8] = []
            record.reserveCapacity(released.count + 2)
            Self.lengthDelimited(2, released, &record)
            return record
        default:
            // A message of known fields always serializes.
            return try! change.record.serializedBytes()
        }
    }

    /// `StoredLease`'s fields, as `Lease.stored` fills them.
    private static func append(_ lease: Lease, to out: inout [UInt8]) {
        Self.identifier(1, lease.id, &out)
        Self.identifier(2, lease.sessionID, &out)
        Self.string(3, lease.feature, &out)
        Self.string(4, lease.licenseID, &out)
        Self.varint(5, UInt64(lease.count), &out)
        Self.string(6, lease.identity.user, &out)
        Self.string(7, lease.identity.host, &out)
        Self.string(8, lease.identity.clientName, &out)
        Self.string(9, lease.identity.clientVersion, &out)
        Self.varint(10, UInt64(bitPattern: lease.grantedAtMs), &out)
        Self.varint(11, UInt64(bitPattern: lease.expiresAtMs), &out)
        Self.varint(12, UInt64(bitPattern: lease.ttlMs), &out)
        Self.varint(13, lease.overage ? 1 : 0, &out)
        Self.varint(14, lease.fencingToken, &out)
        if !lease.checkoutKey.isEmpty { Self.lengthDelimited(15, lease.checkoutKey, &out) }
        Self.varint(16, lease.borrowed ? 1 : 0, &out)
        Self.varint(17, lease.lingering ? 1 : 0, &out)
        if let base = lease.baseLeaseID { Self.identifier(18, base, &out) }
        Self.varint(19, UInt64(lease.sharedSeats), &out)
        Self.string(20, lease.dupIdentity, &out)
        Self.varint(21, UInt64(lease.tokenCost), &out)
        for group in lease.identity.groups { Self.string(22, group, &out, always: true) }
        Self.string(23, lease.identity.address, &out)
    }

    // MARK: - Wire format (proto3: fields at their default value are left out)

    private static func rawVarint(_ value: UInt64, _ out: inout [UInt8]) {
        var value = value
        while value >= 0x80 {
            out.append(UInt8(truncatingIfNeeded: value) | 0x80)
            value >>= 7
        }
        out.append(UInt8(value))
    }

    private static func tag(_ field: Int, wireType: UInt64, _ out: inout [UInt8]) {
        Self.rawVarint(UInt64(field) << 3 | wireType, &out)
    }

    private static func varint(_ field: Int, _ value: UInt64, _ out: inout [UInt8]) {
        guard value != 0 else { return }
        Self.tag(field, wireType: 0, &out)
        Self.rawVarint(value, &out)
    }

    private static func lengthDelimited(_ field: Int, _ bytes: [UInt8], _ out: inout [UInt8]) {
        Self.tag(field, wireType: 2, &out)
        Self.rawVarint(UInt64(bytes.count), &out)
        out.append(contentsOf: bytes)
    }

    private static func identifier(_ field: Int, _ id: ID128, _ out: inout [UInt8]) {
        Self.tag(field, wireType: 2, &out)
        out.append(16)
        withUnsafeBytes(of: id.high.bigEndian) { out.append(contentsOf: $0) }
        withUnsafeBytes(of: id.low.bigEndian) { out.append(contentsOf: $0) }
    }

    /// A string field; a repeated one's elements are written even when empty (`always`).
    private static func string(_ field: Int, _ text: String, _ out: inout [UInt8], always: Bool = false) {
        let utf8 = text.utf8
        guard always || !utf8.isEmpty else { return }
        Self.tag(field, wireType: 2, &out)
        Self.rawVarint(UInt64(utf8.count), &out)
        out.append(contentsOf: utf8)
    }
}
