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
            StoredLeaseWire.append(lease, to: &leaseBytes)
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

    // MARK: - Wire format (proto3: fields at their default value are left out)

    static func rawVarint(_ value: UInt64, _ out: inout [UInt8]) {
        var value = value
        while value >= 0x80 {
            out.append(UInt8(truncatingIfNeeded: value) | 0x80)
            value >>= 7
        }
        out.append(UInt8(value))
    }

    static func tag(_ field: Int, wireType: UInt64, _ out: inout [UInt8]) {
        Self.rawVarint(UInt64(field) << 3 | wireType, &out)
    }

    static func varint(_ field: Int, _ value: UInt64, _ out: inout [UInt8]) {
        guard value != 0 else { return }
        Self.tag(field, wireType: 0, &out)
        Self.rawVarint(value, &out)
    }

    static func lengthDelimited(_ field: Int, _ bytes: [UInt8], _ out: inout [UInt8]) {
        Self.tag(field, wireType: 2, &out)
        Self.rawVarint(UInt64(bytes.count), &out)
        out.append(contentsOf: bytes)
    }

    static func identifier(_ field: Int, _ id: ID128, _ out: inout [UInt8]) {
        Self.tag(field, wireType: 2, &out)
        out.append(16)
        withUnsafeBytes(of: id.high.bigEndian) { out.append(contentsOf: $0) }
        withUnsafeBytes(of: id.low.bigEndian) { out.append(contentsOf: $0) }
    }

    /// A string field; a repeated one's elements are written even when empty (`always`).
    static func string(_ field: Int, _ text: String, _ out: inout [UInt8], always: Bool = false) {
        let utf8 = text.utf8
        guard always || !utf8.isEmpty else { return }
        Self.tag(field, wireType: 2, &out)
        Self.rawVarint(UInt64(utf8.count), &out)
        out.append(contentsOf: utf8)
    }
}
