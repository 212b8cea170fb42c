import Foundation
public import LicenseCore
import LicenseProtocol
import SwiftProtobuf

/// A change as `WalRecord` bytes and back, for the log's writer, recovery's replay and the
/// cluster's replicated batches.
///
/// A grant and a release (the two records of every check-out and check-in, the bulk of any log)
/// are laid out and read here by hand, in protobuf's wire format with the fields in number order —
/// the bytes SwiftProtobuf writes for the same `WalRecord` (`WalRecordWireTests` holds the two to
/// each other on generated leases). Building the generated message first cost about 35,000
/// instructions for a grant (`scripts/bench-micro`): a copy of each nested message's storage on
/// first write, an exclusivity check on every field access and the sizes of the nested messages
/// worked out twice. Every other change is rare and goes through SwiftProtobuf, and so does any
/// record whose shape is not exactly the one written here: what `change(from:)` returns is always
/// what the generated decoder and `LedgerChange(record:)` give.
public enum WalRecordWire {
    /// The serialized `WalRecord` of `change`.
    public static func bytes(of change: LedgerChange) -> [UInt8] {
        var out: [UInt8] = []
        Self.append(change, to: &out)
        return out
    }

    /// Appends the serialized `WalRecord` of `change` to `out`, laid in place: no array of its own
    /// for the record or its nested messages (the writer frames a batch's records into one buffer).
    public static func append(_ change: LedgerChange, to out: inout [UInt8]) {
        switch change {
        case .granted(let lease):
            // WalRecord { granted (1) { lease (1) { … } } }
            StoredLeaseWire.withBytes(of: lease) { leaseBytes in
                let grantedCount = 1 + Self.varintSize(UInt64(leaseBytes.count)) + leaseBytes.count
                Self.tag(1, wireType: 2, &out)
                Self.rawVarint(UInt64(grantedCount), &out)
                Self.tag(1, wireType: 2, &out)
                Self.rawVarint(UInt64(leaseBytes.count), &out)
                out.append(contentsOf: leaseBytes)
            }
        case .released(let id, let cause, let atMs):
            // WalRecord { released (2) { lease_id (1), cause (2), at_ms (3) } }
            let causeValue = UInt64(bitPattern: Int64(cause.stored.rawValue))
            let atValue = UInt64(bitPattern: atMs)
            let count = 18 + Self.fieldSize(causeValue) + Self.fieldSize(atValue)
            Self.tag(2, wireType: 2, &out)
            Self.rawVarint(UInt64(count), &out)
            Self.identifier(1, id, &out)
            Self.varint(2, causeValue, &out)
            Self.varint(3, atValue, &out)
        default:
            // A message of known fields always serializes.
            out.append(contentsOf: try! change.record.serializedBytes() as [UInt8])
        }
    }

    /// Bytes of a varint.
    static func varintSize(_ value: UInt64) -> Int {
        max(1, (64 - value.leadingZeroBitCount + 6) / 7)
    }

    /// Bytes of a varint field of a field number below 16 (key, value), as `varint` writes it:
    /// none for 0.
    static func fieldSize(_ value: UInt64) -> Int {
        value == 0 ? 0 : 1 + Self.varintSize(value)
    }

    /// The change in a serialized `WalRecord`; nil when it does not parse or is not a change this
    /// version knows.
    public static func change(from record: [UInt8]) -> LedgerChange? {
        Self.change(from: record[...])
    }

    /// As `change(from:)`, for a record read in place from a segment's bytes.
    public static func change(from record: ArraySlice<UInt8>) -> LedgerChange? {
        let fast = record.withUnsafeBytes { bytes -> LedgerChange? in
            var reader = StoredLeaseWire.Reader(bytes: bytes)
            // Exactly one top-level field (the oneof), then at most the batch's audit lines.
            guard let key = reader.varint(), let body = reader.range() else { return nil }
            if !reader.atEnd {
                guard reader.varint() == Self.auditLinesKey, let lines = reader.range(), reader.atEnd,
                    Self.auditLinesField(UnsafeRawBufferPointer(rebasing: bytes[lines])) != nil
                else { return nil }
            }
            var inner = StoredLeaseWire.Reader(bytes: UnsafeRawBufferPointer(rebasing: bytes[body]))
            switch key {
            case 1 << 3 | 2:  // granted { lease (1) }, the lease filling it
                guard inner.varint() == 1 << 3 | 2, let lease = inner.range(), inner.atEnd else { return nil }
                return StoredLeaseWire.lease(from: UnsafeRawBufferPointer(rebasing: inner.bytes[lease])).map { .granted($0) }
            case 2 << 3 | 2:  // released { lease_id (1), cause (2), at_ms (3) }, in order, each at most once
                var id: LeaseID?
                var cause = Licensed_V1_WalRecord.ReleaseCause.unspecified
                var atMs: Int64 = 0
                var last = 0
                while !inner.atEnd {
                    guard let key = inner.varint() else { return nil }
                    switch key {
                    case 1 << 3 | 2 where last < 1:
                        guard let range = inner.range(), range.count == 16 else { return nil }
                        id = LeaseID(bytes: Data(UnsafeRawBufferPointer(rebasing: inner.bytes[range])))
                        last = 1
                    case 2 << 3 | 0 where last < 2:
                        guard let value = inner.varint(),
                            let known = Licensed_V1_WalRecord.ReleaseCause(rawValue: Int(Int32(truncatingIfNeeded: value)))
                        else { return nil }
                        cause = known
                        last = 2
                    case 3 << 3 | 0 where last < 3:
                        guard let value = inner.varint() else { return nil }
                        atMs = Int64(bitPattern: value)
                        last = 3
                    default: return nil
                    }
                }
                guard let id else { return nil }
                return .released(id, ReleaseCause(stored: cause), atMs: atMs)
            default:
                return nil
            }
        }
        if let fast { return fast }
        guard let decoded = try? Licensed_V1_WalRecord(serializedBytes: Array(record)) else { return nil }
        return LedgerChange(record: decoded)
    }

    // MARK: - The audit lines on a batch's last record

    /// The key of `WalRecord.audit_lines` (field 100, length-delimited).
    static let auditLinesKey: UInt64 = 100 << 3 | 2

    /// The bytes that, followed by `byteCount` bytes of `count` audit lines from `firstSequence`,
    /// make a record's `audit_lines` field: appended after the record's body, as protobuf allows
    /// a field after the others, without copying the lines into a message first.
    public static func auditLinesHeader(firstSequence: UInt64, count: Int, byteCount: Int) -> [UInt8] {
        var inner: [UInt8] = []
        inner.reserveCapacity(24)
        Self.varint(1, firstSequence, &inner)
        Self.varint(2, UInt64(count), &inner)
        Self.tag(3, wireType: 2, &inner)
        Self.rawVarint(UInt64(byteCount), &inner)
        var header: [UInt8] = []
        header.reserveCapacity(inner.count + 8)
        Self.rawVarint(Self.auditLinesKey, &header)
        Self.rawVarint(UInt64(inner.count + byteCount), &header)
        header.append(contentsOf: inner)
        return header
    }

    /// The audit lines a record carries, if any: found by stepping over its top-level fields, not
    /// by decoding its change (recovery looks at every record for them). Nil when the record has
    /// none or they do not parse.
    public static func auditLines(in record: ArraySlice<UInt8>) -> AuditLines? {
        let found = record.withUnsafeBytes { bytes -> (first: UInt64, count: UInt64, lines: Range<Int>)? in
            var reader = StoredLeaseWire.Reader(bytes: bytes)
            while !reader.atEnd {
                guard let key = reader.varint() else { return nil }
                switch key & 7 {
                case 0: guard reader.varint() != nil else { return nil }
                case 2:
                    guard let field = reader.range() else { return nil }
                    guard key == Self.auditLinesKey else { continue }
                    guard let found = Self.auditLinesField(UnsafeRawBufferPointer(rebasing: bytes[field])) else { return nil }
                    let lines = (field.lowerBound + found.lines.lowerBound)..<(field.lowerBound + found.lines.upperBound)
                    return (found.first, found.count, lines)
                default: return nil
                }
            }
            return nil
        }
        guard let found, found.first > 0, found.count > 0 else { return nil }
        let start = record.startIndex
        return AuditLines(
            firstSequence: found.first,
            count: found.count,
            lines: record[(start + found.lines.lowerBound)..<(start + found.lines.upperBound)]
        )
    }

    /// The fields of an `AuditLines` message; nil unless it holds only those, well formed (then
    /// the generated decoder reads it the same).
    private static func auditLinesField(_ bytes: UnsafeRawBufferPointer) -> (first: UInt64, count: UInt64, lines: Range<Int>)? {
        var reader = StoredLeaseWire.Reader(bytes: bytes)
        var first: UInt64 = 0
        var count: UInt64 = 0
        var lines = 0..<0
        while !reader.atEnd {
            switch reader.varint() {
            case 1 << 3 | 0: guard let value = reader.varint() else { return nil }; first = value
            case 2 << 3 | 0: guard let value = reader.varint() else { return nil }; count = value
            case 3 << 3 | 2: guard let range = reader.range() else { return nil }; lines = range
            default: return nil
            }
        }
        return (first, count, lines)
    }

    /// `WalRecord.audit_lines`, in place in the record's bytes.
    public struct AuditLines: Sendable, Equatable {
        /// Sequence number of the first line's record.
        public var firstSequence: UInt64
        /// How many lines.
        public var count: UInt64
        /// The lines, each with its newline.
        public var lines: ArraySlice<UInt8>
        /// Sequence number of the last line's record.
        public var lastSequence: UInt64 { self.firstSequence + self.count - 1 }
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

    static func identifier(_ field: Int, _ id: ID128, _ out: inout [UInt8]) {
        Self.tag(field, wireType: 2, &out)
        out.append(16)
        withUnsafeBytes(of: id.high.bigEndian) { out.append(contentsOf: $0) }
        withUnsafeBytes(of: id.low.bigEndian) { out.append(contentsOf: $0) }
    }

}
