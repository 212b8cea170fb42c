/// Reads protobuf's wire format from a buffer; every read is bounds-checked and nil past the end.
/// The store's hand-laid records (`StoredLeaseWire`, `WalRecordWire`) and the requests of the
/// hot path (`ClientMessageWire`) read through it.
package struct WireReader {
    package let bytes: UnsafeRawBufferPointer
    package var offset = 0

    package init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    package var atEnd: Bool { self.offset >= self.bytes.count }

    package mutating func varint() -> UInt64? {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while self.offset < self.bytes.count, shift < 70 {
            let byte = self.bytes[self.offset]
            self.offset += 1
            value |= UInt64(byte & 0x7f) << shift
            if byte < 0x80 { return value }
            shift += 7
        }
        return nil
    }

    /// A length-delimited field's bytes, as a range of the buffer.
    package mutating func range() -> Range<Int>? {
        guard let length = self.varint(), length <= UInt64(self.bytes.count - self.offset) else { return nil }
        let start = self.offset
        self.offset += Int(length)
        return start..<self.offset
    }

    package mutating func data() -> [UInt8]? {
        self.range().map { [UInt8](UnsafeRawBufferPointer(rebasing: self.bytes[$0])) }
    }

    /// A string field's bytes, as a range of the buffer: nil unless they are valid UTF-8 (each
    /// occurrence checked as it is read, as the generated decoder does).
    package mutating func text() -> Range<Int>? {
        guard let range = self.range(), Self.isValidUTF8(UnsafeRawBufferPointer(rebasing: self.bytes[range])) else { return nil }
        return range
    }

    /// A string field: nil unless it is valid UTF-8 (as the generated decoder requires).
    package mutating func string() -> String? {
        guard let range = self.range() else { return nil }
        return Self.utf8String(UnsafeRawBufferPointer(rebasing: self.bytes[range]))
    }

    /// `bytes` as a string when they are valid UTF-8, else nil. `String(validating:as:)` did
    /// the same but looked up generic metadata on every call: 70% of the time of reading a
    /// snapshot's lease. Decoding repairs invalid UTF-8 (U+FFFD in place of each bad
    /// sequence), so the bytes are valid exactly when decoding gives them back unchanged;
    /// ASCII, the usual case, is valid without that comparison.
    package static func utf8String(_ bytes: UnsafeRawBufferPointer) -> String? {
        let units = bytes.assumingMemoryBound(to: UInt8.self)
        let string = String(decoding: units, as: UTF8.self)
        if Self.isASCII(units) { return string }
        var same = true
        var copy = string
        copy.withUTF8 { decoded in same = decoded.count == units.count && decoded.elementsEqual(units) }
        return same ? string : nil
    }

    /// True when `bytes` are valid UTF-8: ASCII without making a string, else as `utf8String`.
    package static func isValidUTF8(_ bytes: UnsafeRawBufferPointer) -> Bool {
        Self.isASCII(bytes.assumingMemoryBound(to: UInt8.self)) || Self.utf8String(bytes) != nil
    }

    private static func isASCII(_ units: UnsafeBufferPointer<UInt8>) -> Bool {
        var high: UInt8 = 0
        for byte in units { high |= byte }
        return high < 0x80
    }

    package mutating func skip(wireType: UInt64) -> Bool {
        switch wireType {
        case 0: return self.varint() != nil
        case 1, 5:
            let size = wireType == 1 ? 8 : 4
            guard self.bytes.count - self.offset >= size else { return false }
            self.offset += size
            return true
        case 2: return self.range() != nil
        default: return false  // groups (3, 4) and the undefined 6 and 7
        }
    }
}
