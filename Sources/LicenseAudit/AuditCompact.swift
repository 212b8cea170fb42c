import LicenseCrypto

/// How the audit trail's records are written: `compact` (the default) or `jsonl`.
public enum AuditFormat: String, Sendable, CaseIterable {
    /// A compact binary record a line (`audit-<seq>.rec`): about a third of a JSON line's bytes,
    /// so about a third of the hashing, writing and compressing. `licensectl audit export` reads it
    /// out as CSV or JSON lines.
    case compact
    /// One JSON line a record (`audit-<seq>.jsonl`), for sites whose log shippers read the files.
    case jsonl

    /// The suffix of the files the trail starts in this format.
    public var fileSuffix: String {
        switch self {
        case .compact: ".rec"
        case .jsonl: ".jsonl"
        }
    }
}

/// The compact record (`AuditFormat.compact`), laid out as
///
///     0xC1 · seq (varint) · time_ms (zigzag varint) · action · actor · subject (strings)
///          · details (varint count, then key (string) and value each) · prev (32 bytes) · hash (32 bytes)
///
/// A string is a varint header `h` and what it says:
/// - `h & 3 == 0`: `h >> 2` bytes of UTF-8;
/// - `h & 3 == 1`: entry `h >> 2` of `dictionary` (the trail's common keys and actions);
/// - `h & 3 == 2`: `idPrefixes[h >> 2]` followed by the 32 lower-case hex digits of the 16 bytes
///   that follow (lease and activation ids).
///
/// A value is a tag byte: 0 a string, 1 an integer (zigzag varint), 2 false, 3 true, 4 a list of
/// strings (varint count, then each). `hash` is the SHA-256 of every byte before it (`prev`
/// included). Every record has exactly one spelling: integers in the fewest bytes, a string in
/// the dictionary or of an id's form always so (reading refuses any other), so a record read back
/// from an export is laid out again to the same bytes.
///
/// In the file, each record is one line: its bytes with 0x0A written as 0x1B 0x6E and 0x1B as
/// 0x1B 0x65, then a newline. The trail's line framing (rotation, the log's audit lines, restore)
/// holds for both formats, and readers tell them by the first byte (`{` or 0xC1).
public enum AuditCompact {
    /// The first byte of a compact record (never the first byte of UTF-8 text).
    public static let marker: UInt8 = 0xC1
    static let escape: UInt8 = 0x1B
    static let escapedNewline: UInt8 = 0x6E
    static let escapedEscape: UInt8 = 0x65

    /// Strings written as a number. Fixed for the format: never changed, reordered or added to (a
    /// record's bytes, so its hash, depend on them, and an added entry would change the one
    /// spelling of records that hold its text as bytes); a new dictionary takes a new marker byte.
    static let dictionary: [String] = [
        "grant", "checkin", "reclaim", "revoke", "deny", "lease", "feature", "license", "count", "user", "host", "groups",
        "granted_ms", "expires_ms", "overage", "borrowed", "waited_ms", "held_ms", "cause", "checked_in", "expired", "revoked",
        "base_released", "reason", "code", "server", "linger", "activate", "deactivate", "admin", "role", "machine", "activation",
        "outcome", "start", "stop", "reload", "snapshot", "token_rejected", "admin-socket", "queue", "queued", "heartbeat",
    ]
    /// Prefixes of strings written as an id's 16 bytes.
    static let idPrefixes: [String] = ["", "lease:", "activation:"]

    enum Code {
        static let grant = 0
        static let checkin = 1
        static let reclaim = 2
        static let revoke = 3
        static let lease = 5
        static let feature = 6
        static let license = 7
        static let count = 8
        static let user = 9
        static let host = 10
        static let groups = 11
        static let grantedMs = 12
        static let expiresMs = 13
        static let overage = 14
        static let borrowed = 15
        static let waitedMs = 16
        static let heldMs = 17
        static let cause = 18
    }

    enum Tag {
        static let string: UInt8 = 0
        static let int: UInt8 = 1
        static let falseValue: UInt8 = 2
        static let trueValue: UInt8 = 3
        static let strings: UInt8 = 4
    }

    /// The dictionary's entries by length in bytes, for the renderer's lookup without hashing.
    static let entriesByLength: [[(code: Int, bytes: [UInt8])]] = {
        var table = [[(code: Int, bytes: [UInt8])]](repeating: [], count: 16)
        for (code, entry) in dictionary.enumerated() { table[entry.utf8.count].append((code, Array(entry.utf8))) }
        return table
    }()

    // MARK: - Laying out a record from its parts

    /// The record's bytes before its hash (not escaped): the bytes its hash covers.
    static func hashedBytes(
        sequence: UInt64,
        timeMs: Int64,
        action: String,
        actor: String,
        subject: String,
        details: [(String, AuditEvent.Value)],
        previousHash: [UInt8]
    ) -> [UInt8] {
        var out = ByteWriter(capacity: 256)
        out.write(Self.marker)
        Self.varint(sequence, &out)
        Self.varint(Self.zigzag(timeMs), &out)
        Self.string(action, &out)
        Self.string(actor, &out)
        Self.string(subject, &out)
        Self.varint(UInt64(details.count), &out)
        for (key, value) in details {
            Self.string(key, &out)
            Self.value(value, &out)
        }
        previousHash.withUnsafeBytes { out.write($0) }
        return Array(out.written)
    }

    static func value(_ value: AuditEvent.Value, _ out: inout ByteWriter) {
        switch value {
        case .string(let text):
            out.write(Tag.string)
            Self.string(text, &out)
        case .int(let number):
            out.write(Tag.int)
            Self.varint(Self.zigzag(number), &out)
        case .bool(let flag): out.write(flag ? Tag.trueValue : Tag.falseValue)
        case .strings(let list):
            out.write(Tag.strings)
            Self.varint(UInt64(list.count), &out)
            for item in list { Self.string(item, &out) }
        }
    }

    /// A string in its one spelling: an id's form, else the dictionary's entry, else its bytes
    /// (read in place: `withUTF8` would copy the argument first).
    static func string(_ text: String, _ out: inout ByteWriter) {
        let done = text.utf8.withContiguousStorageIfAvailable { Self.string(bytes: $0, &out) }
        if done == nil {
            var copy = text
            copy.withUTF8 { Self.string(bytes: $0, &out) }
        }
    }

    static func string(bytes: UnsafeBufferPointer<UInt8>, _ out: inout ByteWriter) {
        if let (prefix, id) = Self.idForm(bytes) {
            Self.varint(UInt64(prefix) << 2 | 2, &out)
            withUnsafeBytes(of: id) { out.write($0) }
        } else if let code = Self.code(bytes) {
            Self.varint(UInt64(code) << 2 | 1, &out)
        } else {
            Self.varint(UInt64(bytes.count) << 2, &out)
            out.write(bytes)
        }
    }

    /// The dictionary's code for `bytes`, if it is an entry.
    @inline(__always)
    static func code(_ bytes: UnsafeBufferPointer<UInt8>) -> Int? {
        guard bytes.count < Self.entriesByLength.count else { return nil }
        for entry in Self.entriesByLength[bytes.count] where entry.bytes.withUnsafeBufferPointer({ $0.elementsEqual(bytes) }) {
            return entry.code
        }
        return nil
    }

    /// The prefix's index and the id's 16 bytes (big-endian words) when `bytes` are one of
    /// `idPrefixes` and 32 lower-case hex digits.
    @inline(__always)
    static func idForm(_ bytes: UnsafeBufferPointer<UInt8>) -> (Int, (UInt64, UInt64))? {
        let prefix: Int
        switch bytes.count {
        case 32: prefix = 0
        case 38: prefix = 1
        case 43: prefix = 2
        default: return nil
        }
        let start = bytes.count - 32
        guard start == 0 || Self.idPrefixes[prefix].utf8.elementsEqual(bytes[0..<start]) else { return nil }
        guard let high = Self.hexWord(bytes, start), let low = Self.hexWord(bytes, start + 16) else { return nil }
        return (prefix, (high.bigEndian, low.bigEndian))
    }

    private static func hexWord(_ bytes: UnsafeBufferPointer<UInt8>, _ start: Int) -> UInt64? {
        var word: UInt64 = 0
        for index in start..<start + 16 {
            let c = bytes[index]
            let digit: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = c - UInt8(ascii: "a") + 10
            default: return nil
            }
            word = word << 4 | UInt64(digit)
        }
        return word
    }

    @inline(__always)
    static func zigzag(_ value: Int64) -> UInt64 { UInt64(bitPattern: (value << 1) ^ (value >> 63)) }

    @inline(__always)
    static func unzigzag(_ value: UInt64) -> Int64 { Int64(bitPattern: value >> 1) ^ -Int64(bitPattern: value & 1) }

    @inline(__always)
    static func varint(_ value: UInt64, _ out: inout ByteWriter) {
        var length = 1
        var rest = value >> 7
        while rest != 0 {
            length += 1
            rest >>= 7
        }
        out.write(count: length) { bytes in
            var value = value
            for index in 0..<length - 1 {
                bytes[index] = UInt8(truncatingIfNeeded: value) | 0x80
                value >>= 7
            }
            bytes[length - 1] = UInt8(truncatingIfNeeded: value)
        }
    }

    // MARK: - The line

    /// Escapes the record at `range` of `out` (its last bytes) in place: the bytes after each 0x0A
    /// or 0x1B move up by one, a run at a time.
    static func escape(_ range: Range<Int>, in out: inout ByteWriter) {
        precondition(range.upperBound == out.count)
        let extra = Self.escapesNeeded(out.bytes(range))
        guard extra > 0 else { return }
        out.write(count: extra) { _ in }
        out.withMutableBytes { base in
            var end = range.upperBound
            var shift = extra
            while shift > 0 {
                var at = end - 1
                while base[at] != 0x0A && base[at] != Self.escape { at -= 1 }
                UnsafeMutableRawPointer(base + at + 1 + shift).copyMemory(from: base + at + 1, byteCount: end - at - 1)
                base[at + shift] = base[at] == 0x0A ? Self.escapedNewline : Self.escapedEscape
                base[at + shift - 1] = Self.escape
                shift -= 1
                end = at
            }
        }
    }

    /// How many of `bytes` are 0x0A or 0x1B: eight bytes at a time (the has-zero-byte test on the
    /// word xor each; a word with a match is counted byte by byte). Most records have none.
    @inline(__always)
    static func escapesNeeded(_ bytes: UnsafeRawBufferPointer) -> Int {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        var count = 0
        var index = 0
        while index + 8 <= bytes.count {
            let word = bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self)
            let newline = word ^ (0x0A &* ones)
            let escape = word ^ (UInt64(Self.escape) &* ones)
            if (((newline &- ones) & ~newline) | ((escape &- ones) & ~escape)) & highs != 0 {
                for byte in bytes[index..<index + 8] where byte == 0x0A || byte == Self.escape { count += 1 }
            }
            index += 8
        }
        for byte in bytes[index...] where byte == 0x0A || byte == Self.escape { count += 1 }
        return count
    }

    /// `bytes` escaped, as a line holds them.
    static func escaped(_ bytes: [UInt8]) -> [UInt8] {
        var out = ByteWriter(capacity: bytes.count + 8)
        bytes.withUnsafeBytes { out.write($0) }
        Self.escape(0..<out.count, in: &out)
        return Array(out.written)
    }

    /// A line's bytes unescaped; nil when an escape is not one of the two.
    static func unescape(_ line: ArraySlice<UInt8>) -> [UInt8]? {
        guard line.contains(Self.escape) else { return Array(line) }
        var out: [UInt8] = []
        out.reserveCapacity(line.count)
        var index = line.startIndex
        while index < line.endIndex {
            let byte = line[index]
            index += 1
            guard byte == Self.escape else {
                out.append(byte)
                continue
            }
            guard index < line.endIndex else { return nil }
            switch line[index] {
            case Self.escapedNewline: out.append(0x0A)
            case Self.escapedEscape: out.append(Self.escape)
            default: return nil
            }
            index += 1
        }
        return out
    }

    // MARK: - Reading

    /// Reads one line (without its newline) of a compact record; nil for anything that is not one
    /// in its one spelling.
    static func parse(_ line: ArraySlice<UInt8>, checkHash: Bool) -> AuditRecord.Parsed? {
        guard let bytes = Self.unescape(line) else { return nil }
        var reader = Reader(bytes: bytes)
        guard reader.byte() == Self.marker, let sequence = reader.varint(), let time = reader.varint(),
            let action = reader.string(), let actor = reader.string(), let subject = reader.string(),
            let count = reader.varint(), count <= UInt64(bytes.count)
        else { return nil }
        var details: [(String, AuditEvent.Value)] = []
        details.reserveCapacity(Int(count))
        for _ in 0..<count {
            guard let key = reader.string(), let value = reader.value() else { return nil }
            details.append((key, value))
        }
        guard bytes.count - reader.position == 64 else { return nil }
        let hashedEnd = reader.position + 32
        let record = AuditRecord(
            sequence: sequence,
            timeMs: Self.unzigzag(time),
            action: action,
            actor: actor,
            subject: subject,
            details: details,
            previousHash: bytes[reader.position..<hashedEnd].withUnsafeBytes { AuditRenderer.hexString($0) },
            hash: bytes[hashedEnd...].withUnsafeBytes { AuditRenderer.hexString($0) }
        )
        let matches = checkHash ? bytes[..<hashedEnd].withUnsafeBytes { SHA256.hash(bytes: $0) }[...] == bytes[hashedEnd...] : true
        return AuditRecord.Parsed(record: record, hashMatches: matches)
    }

    /// A strict reader of the record's fields.
    private struct Reader {
        let bytes: [UInt8]
        var position = 0

        mutating func byte() -> UInt8? {
            guard self.position < self.bytes.count else { return nil }
            defer { self.position += 1 }
            return self.bytes[self.position]
        }

        /// A varint in its fewest bytes.
        mutating func varint() -> UInt64? {
            var value: UInt64 = 0
            var shift: UInt64 = 0
            while let byte = self.byte() {
                guard shift < 64, shift < 63 || byte <= 1 else { return nil }
                value |= UInt64(byte & 0x7F) << shift
                if byte & 0x80 == 0 {
                    // The last byte of a longer varint is never zero.
                    guard byte != 0 || shift == 0 else { return nil }
                    return value
                }
                shift += 7
            }
            return nil
        }

        mutating func string() -> String? {
            guard let header = self.varint() else { return nil }
            let argument = header >> 2
            switch header & 3 {
            case 0:
                guard argument <= UInt64(self.bytes.count - self.position) else { return nil }
                let end = self.position + Int(argument)
                defer { self.position = end }
                // Valid UTF-8, and not a text that has a shorter spelling.
                return self.bytes[self.position..<end].withUnsafeBufferPointer { text in
                    guard AuditCompact.idForm(text) == nil, AuditCompact.code(text) == nil else { return nil }
                    return String(validating: text, as: UTF8.self)
                }
            case 1:
                guard argument < UInt64(AuditCompact.dictionary.count) else { return nil }
                return AuditCompact.dictionary[Int(argument)]
            case 2:
                guard argument < UInt64(AuditCompact.idPrefixes.count), self.bytes.count - self.position >= 16 else { return nil }
                defer { self.position += 16 }
                let id = self.bytes[self.position..<self.position + 16].withUnsafeBytes { AuditRenderer.hexString($0) }
                return AuditCompact.idPrefixes[Int(argument)] + id
            default: return nil
            }
        }

        mutating func value() -> AuditEvent.Value? {
            switch self.byte() {
            case Tag.string: return self.string().map { .string($0) }
            case Tag.int:
                return self.varint().map { .int(AuditCompact.unzigzag($0)) }
            case Tag.falseValue: return .bool(false)
            case Tag.trueValue: return .bool(true)
            case Tag.strings:
                guard let count = self.varint(), count <= UInt64(self.bytes.count - self.position) else { return nil }
                var items: [String] = []
                for _ in 0..<count {
                    guard let item = self.string() else { return nil }
                    items.append(item)
                }
                return .strings(items)
            default: return nil
            }
        }
    }
}
