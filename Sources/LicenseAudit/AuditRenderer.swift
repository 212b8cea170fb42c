import LicenseCrypto

/// Renders audit records straight into bytes, for the writer thread: the same bytes as
/// `AuditRecord.line` (the tests hold the two to each other) without building Strings, and the
/// hash computed over the buffer in place.
struct AuditRenderer {
    private var secondCache: (second: Int64, text: [UInt8]) = (.min, [])
    private static let hexDigits = Array("0123456789abcdef".utf8)

    /// Appends `event` as record `sequence` after `previousHash` (64 hex bytes) to `out`, newline
    /// included, and returns where in `out` its hash is (64 hex bytes).
    mutating func append(sequence: UInt64, event: AuditEvent, previousHash: [UInt8], to out: inout ByteWriter) -> Range<Int> {
        let event = event.resolved
        let start = out.count
        Self.ascii("{\"seq\":", &out)
        Self.decimal(Int64(sequence), &out)
        Self.ascii(",\"time\":\"", &out)
        self.time(event.timeMs, &out)
        Self.ascii("\",\"time_ms\":", &out)
        Self.decimal(event.timeMs, &out)
        Self.ascii(",\"action\":", &out)
        Self.string(event.action, &out)
        Self.ascii(",\"actor\":", &out)
        Self.string(event.actor, &out)
        Self.ascii(",\"subject\":", &out)
        Self.string(event.subject, &out)
        Self.ascii(",\"details\":{", &out)
        for (index, (key, value)) in event.details.enumerated() {
            if index > 0 { out.write(UInt8(ascii: ",")) }
            Self.string(key, &out)
            out.write(UInt8(ascii: ":"))
            switch value {
            case .string(let text): Self.string(text, &out)
            case .int(let number): Self.decimal(number, &out)
            case .bool(let flag): Self.ascii(flag ? "true" : "false", &out)
            case .strings(let list):
                out.write(UInt8(ascii: "["))
                for (i, item) in list.enumerated() {
                    if i > 0 { out.write(UInt8(ascii: ",")) }
                    Self.string(item, &out)
                }
                out.write(UInt8(ascii: "]"))
            }
        }
        Self.ascii("},\"prev\":\"", &out)
        previousHash.withUnsafeBytes { out.write($0) }
        out.write(UInt8(ascii: "\""))
        let digest = SHA256.hash(bytes: out.bytes(start..<out.count))
        Self.ascii(",\"hash\":\"", &out)
        let hex = out.count
        for byte in digest {
            out.write(Self.hexDigits[Int(byte >> 4)])
            out.write(Self.hexDigits[Int(byte & 0x0F)])
        }
        Self.ascii("\"}\n", &out)
        return hex..<hex + 64
    }

    private static func ascii(_ text: StaticString, _ out: inout ByteWriter) {
        out.write(text)
    }

    private static func decimal(_ value: Int64, _ out: inout ByteWriter) {
        // Filled from the end: 20 bytes hold any Int64 with its sign.
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)
        withUnsafeMutableBytes(of: &digits) { buffer in
            var magnitude = value.magnitude
            var first = 24
            repeat {
                first -= 1
                buffer[first] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: magnitude % 10)
                magnitude /= 10
            } while magnitude > 0
            if value < 0 {
                first -= 1
                buffer[first] = UInt8(ascii: "-")
            }
            out.write(UnsafeRawBufferPointer(rebasing: buffer[first...]))
        }
    }

    /// A JSON string with the escaping of `JSONText.appendString`.
    private static func string(_ text: String, _ out: inout ByteWriter) {
        out.write(UInt8(ascii: "\""))
        var text = text
        text.withUTF8 { bytes in
            if !Self.needsEscaping(bytes) {
                out.write(bytes)
                return
            }
            // Runs of bytes that need no escape are copied whole.
            var run = 0
            for index in bytes.indices {
                let byte = bytes[index]
                guard byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") else { continue }
                out.write(UnsafeBufferPointer(rebasing: bytes[run..<index]))
                run = index + 1
                switch byte {
                case UInt8(ascii: "\""): Self.ascii("\\\"", &out)
                case UInt8(ascii: "\\"): Self.ascii("\\\\", &out)
                case 0x0A: Self.ascii("\\n", &out)
                case 0x0D: Self.ascii("\\r", &out)
                case 0x09: Self.ascii("\\t", &out)
                default:
                    Self.ascii("\\u00", &out)
                    out.write(Self.hexDigits[Int(byte >> 4)])
                    out.write(Self.hexDigits[Int(byte & 0x0F)])
                }
            }
            out.write(UnsafeBufferPointer(rebasing: bytes[run...]))
        }
        out.write(UInt8(ascii: "\""))
    }

    /// True when `bytes` hold a control character, `"` or `\`: eight bytes at a time (the
    /// classic has-zero-byte tests on a word; exact as to whether any byte matches).
    static func needsEscaping(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        guard let base = bytes.baseAddress else { return false }
        let raw = UnsafeRawPointer(base)
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        var index = 0
        while index + 8 <= bytes.count {
            let word = raw.loadUnaligned(fromByteOffset: index, as: UInt64.self)
            let control = (word &- 0x20 &* ones) & ~word & highs
            let quote = word ^ (0x22 &* ones)
            let backslash = word ^ (0x5C &* ones)
            let matches = control | ((quote &- ones) & ~quote & highs) | ((backslash &- ones) & ~backslash & highs)
            if matches != 0 { return true }
            index += 8
        }
        while index < bytes.count {
            let byte = bytes[index]
            if byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") { return true }
            index += 1
        }
        return false
    }

    /// `YYYY-MM-DDTHH:MM:SS.mmmZ`, the seconds part cached (a batch's records share it).
    private mutating func time(_ ms: Int64, _ out: inout ByteWriter) {
        let second = ms >= 0 ? ms / 1000 : (ms - 999) / 1000
        if second != self.secondCache.second {
            let text = JSONText.iso8601(ms: second * 1000)
            self.secondCache = (second, Array(text.utf8.prefix(19)))
        }
        self.secondCache.text.withUnsafeBytes { out.write($0) }
        let millis = Int(ms - second * 1000)
        out.write(UInt8(ascii: "."))
        out.write(UInt8(ascii: "0") + UInt8(millis / 100))
        out.write(UInt8(ascii: "0") + UInt8(millis / 10 % 10))
        out.write(UInt8(ascii: "0") + UInt8(millis % 10))
        out.write(UInt8(ascii: "Z"))
    }
}
