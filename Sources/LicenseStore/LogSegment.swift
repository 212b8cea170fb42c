import Foundation

/// The byte layout of write-ahead log records and the reading of a segment file.
///
/// ```
/// +-----------------+-----------------+---------------------------+------------------+
/// | length N (u32)  | CRC-32C (u32)   | sequence number (u64)     | N bytes: record  |
/// +-----------------+-----------------+---------------------------+------------------+
/// ```
/// Big-endian. The CRC covers the sequence number and the record bytes. Zeros after the last
/// record are space the writer allocated ahead (no record is all zeros: a zero length has a
/// non-zero CRC): the segment ends there.
public enum LogSegment {
    /// Bytes before the record body.
    public static let headerLength = 16
    /// No record is larger (a sanity bound when scanning damaged files).
    public static let maximumRecordLength = 1 << 20

    /// Appends one framed record to `buffer`.
    public static func encode(sequence: UInt64, body: [UInt8], into buffer: inout [UInt8]) {
        Self.append(sequence: sequence, into: &buffer) { $0.append(contentsOf: body) }
    }

    /// Appends one framed record whose body `writeBody` appends to the buffer in place; then
    /// fills in the header's length and CRC (over the sequence number and the body, which
    /// follow each other in the frame).
    public static func append(sequence: UInt64, into buffer: inout [UInt8], writeBody: (inout [UInt8]) -> Void) {
        let start = buffer.count
        buffer.append(contentsOf: repeatElement(0, count: 8))
        withUnsafeBytes(of: sequence.bigEndian) { buffer.append(contentsOf: $0) }
        writeBody(&buffer)
        let length = buffer.count - start - Self.headerLength
        buffer.withUnsafeMutableBytes { raw in
            let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[(start + 8)...]))
            raw.storeBytes(of: UInt32(truncatingIfNeeded: length).bigEndian, toByteOffset: start, as: UInt32.self)
            raw.storeBytes(of: crc.bigEndian, toByteOffset: start + 4, as: UInt32.self)
        }
    }

    static func appendUInt32(_ value: UInt32, to buffer: inout [UInt8]) {
        buffer.append(UInt8(value >> 24))
        buffer.append(UInt8(value >> 16 & 0xff))
        buffer.append(UInt8(value >> 8 & 0xff))
        buffer.append(UInt8(value & 0xff))
    }

    /// One record read back.
    public struct Record: Equatable, Sendable {
        /// Its sequence number.
        public var sequence: UInt64
        /// Its body (a serialized WalRecord), in place in the segment's bytes: a restart reads
        /// hundreds of thousands of records, and an array each was about 30% of reading them
        /// (perf samples of a restart reading a 35 MB segment).
        public var body: ArraySlice<UInt8>
        /// Offset of its header in the file.
        public var offset: Int
    }

    /// What reading a segment found.
    public struct ReadResult: Sendable {
        /// Whole, checksummed records, in order.
        public var records: [Record]
        /// Where the valid records end; less than the file size when a torn tail follows.
        public var validLength: Int
        /// True when bytes after `validLength` are an incomplete or torn last write.
        public var tornTail: Bool
    }

    /// A damaged record with whole records after it: not a torn write but corruption.
    public struct CorruptionError: Error, CustomStringConvertible, Sendable {
        /// The file.
        public var file: String
        /// Offset of the damaged record.
        public var offset: Int
        /// What is wrong with it.
        public var reason: String
        public var description: String {
            "write-ahead log \(self.file) is corrupt at offset \(self.offset) (\(self.reason)) and whole records follow it; "
                + "refusing to start rather than lose them. Restore the state directory from a backup, or move the file away to accept the loss."
        }
    }

    /// Reads every record of `bytes`. Zeros to the end after a record end the segment (space
    /// allocated ahead, or a last write of which only zeros reached the disk). A damaged record
    /// followed by no whole record is a torn tail (the last write, cut short by a crash):
    /// reported, not an error. A damaged record followed by whole records is corruption and throws.
    public static func read(_ bytes: [UInt8], file: String) throws(CorruptionError) -> ReadResult {
        var records: [Record] = []
        var offset = 0
        while offset < bytes.count {
            switch Self.parse(bytes, at: offset, expected: records.last.map { $0.sequence + 1 }) {
            case .record(let record, let next):
                records.append(record)
                offset = next
            case .damaged(let reason):
                if Self.firstNonZero(bytes, from: offset) == nil {
                    return ReadResult(records: records, validLength: offset, tornTail: false)
                }
                // A whole record later in the file means this was not the last write.
                if let later = Self.findRecord(in: bytes, after: offset) {
                    throw CorruptionError(file: file, offset: offset, reason: "\(reason); a valid record follows at offset \(later)")
                }
                return ReadResult(records: records, validLength: offset, tornTail: true)
            }
        }
        return ReadResult(records: records, validLength: offset, tornTail: false)
    }

    enum Parsed {
        case record(Record, next: Int)
        case damaged(String)
    }

    static func parse(_ bytes: [UInt8], at offset: Int, expected: UInt64?) -> Parsed {
        guard offset + headerLength <= bytes.count else { return .damaged("incomplete record header") }
        let length = Int(Self.uint32(bytes, offset))
        let crc = Self.uint32(bytes, offset + 4)
        guard length <= maximumRecordLength else { return .damaged("record length \(length) is implausible") }
        guard offset + headerLength + length <= bytes.count else { return .damaged("record extends past the end of the file") }
        let actual = bytes.withUnsafeBytes { raw in
            CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[(offset + 8)..<(offset + headerLength + length)]))
        }
        guard actual == crc else { return .damaged("checksum mismatch") }
        var sequence: UInt64 = 0
        for i in 0..<8 { sequence = sequence << 8 | UInt64(bytes[offset + 8 + i]) }
        if let expected, sequence != expected {
            return .damaged("sequence \(sequence) where \(expected) was expected")
        }
        let body = bytes[(offset + headerLength)..<(offset + headerLength + length)]
        return .record(Record(sequence: sequence, body: body, offset: offset), next: offset + headerLength + length)
    }

    /// The index of the first byte from `offset` on that is not zero, eight bytes at a time.
    static func firstNonZero(_ bytes: [UInt8], from offset: Int) -> Int? {
        bytes.withUnsafeBytes { raw in
            var index = offset
            while index + 8 <= raw.count, raw.loadUnaligned(fromByteOffset: index, as: UInt64.self) == 0 { index += 8 }
            while index < raw.count, raw[index] == 0 { index += 1 }
            return index < raw.count ? index : nil
        }
    }

    /// The offset of the first whole, checksummed record starting after `offset`, if any.
    static func findRecord(in bytes: [UInt8], after offset: Int) -> Int? {
        var candidate = offset + 1
        while candidate + headerLength <= bytes.count {
            // A header of zeros is no record: past a run of zeros (allocated space), the next
            // header can start no earlier than 15 bytes before its first byte that is not zero.
            if bytes[candidate] == 0 {
                guard let nonZero = Self.firstNonZero(bytes, from: candidate) else { return nil }
                if nonZero - candidate >= headerLength {
                    candidate = nonZero - (headerLength - 1)
                    continue
                }
            }
            if case .record = Self.parse(bytes, at: candidate, expected: nil) { return candidate }
            candidate += 1
        }
        return nil
    }

    static func uint32(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
        UInt32(bytes[offset]) << 24 | UInt32(bytes[offset + 1]) << 16 | UInt32(bytes[offset + 2]) << 8 | UInt32(bytes[offset + 3])
    }
}
