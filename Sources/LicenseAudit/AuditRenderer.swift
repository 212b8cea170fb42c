import LicenseCrypto

/// Renders audit records straight into bytes, for the writer thread: the same bytes as
/// `AuditRecord.line` (the tests hold the two to each other) without building Strings, and the
/// hash computed over the buffer in place.
struct AuditRenderer {
    private var secondCache: (second: Int64, text: [UInt8]) = (.min, [])
    private static let hexDigits = Array("0123456789abcdef".utf8)

    /// Appends `event` as record `sequence` after `previousHash` (64 hex bytes) to `out`, newline
    /// included, and returns its hash (64 hex bytes).
    mutating func append(sequence: UInt64, event: AuditEvent, previousHash: [UInt8], to out: inout [UInt8]) -> [UInt8] {
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
            if index > 0 { out.append(UInt8(ascii: ",")) }
            Self.string(key, &out)
            out.append(UInt8(ascii: ":"))
            switch value {
            case .string(let text): Self.string(text, &out)
            case .int(let number): Self.decimal(number, &out)
            case .bool(let flag): Self.ascii(flag ? "true" : "false", &out)
            case .strings(let list):
                out.append(UInt8(ascii: "["))
                for (i, item) in list.enumerated() {
                    if i > 0 { out.append(UInt8(ascii: ",")) }
                    Self.string(item, &out)
                }
                out.append(UInt8(ascii: "]"))
            }
        }
        Self.ascii("},\"prev\":\"", &out)
        out.append(contentsOf: previousHash)
        out.append(UInt8(ascii: "\""))
        let digest = out.withUnsafeBytes { SHA256.hash(bytes: UnsafeRawBufferPointer(rebasing: $0[start...])) }
        var hex: [UInt8] = []
        hex.reserveCapacity(64)
        for byte in digest {
            hex.append(Self.hexDigits[Int(byte >> 4)])
            hex.append(Self.hexDigits[Int(byte & 0x0F)])
        }
        Self.ascii(",\"hash\":\"", &out)
        out.append(contentsOf: hex)
        Self.ascii("\"}\n", &out)
        return hex
    }

    private static func ascii(_ text: StaticString, _ out: inout [UInt8]) {
        text.withUTF8Buffer { out.append(contentsOf: $0) }
    }

    private static func decimal(_ value: Int64, _ out: inout [UInt8]) {
        if value == 0 {
            out.append(UInt8(ascii: "0"))
            return
        }
        var magnitude = value.magnitude
        var digits:
            (
                UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                UInt8, UInt8, UInt8
            ) =
                (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var count = 0
        withUnsafeMutableBytes(of: &digits) { buffer in
            while magnitude > 0 {
                buffer[count] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                magnitude /= 10
                count += 1
            }
            if value < 0 { out.append(UInt8(ascii: "-")) }
            for i in stride(from: count - 1, through: 0, by: -1) { out.append(buffer[i]) }
        }
    }

    /// A JSON string with the escaping of `JSONText.appendString`.
    private static func string(_ text: String, _ out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        var text = text
        text.withUTF8 { bytes in
            // Runs of bytes that need no escape are copied whole (most texts are one run).
            var run = 0
            for index in bytes.indices {
                let byte = bytes[index]
                guard byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") else { continue }
                out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[run..<index]))
                run = index + 1
                switch byte {
                case UInt8(ascii: "\""): Self.ascii("\\\"", &out)
                case UInt8(ascii: "\\"): Self.ascii("\\\\", &out)
                case 0x0A: Self.ascii("\\n", &out)
                case 0x0D: Self.ascii("\\r", &out)
                case 0x09: Self.ascii("\\t", &out)
                default:
                    Self.ascii("\\u00", &out)
                    out.append(Self.hexDigits[Int(byte >> 4)])
                    out.append(Self.hexDigits[Int(byte & 0x0F)])
                }
            }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[run...]))
        }
        out.append(UInt8(ascii: "\""))
    }

    /// `YYYY-MM-DDTHH:MM:SS.mmmZ`, the seconds part cached (a batch's records share it).
    private mutating func time(_ ms: Int64, _ out: inout [UInt8]) {
        let second = ms >= 0 ? ms / 1000 : (ms - 999) / 1000
        if second != self.secondCache.second {
            let text = JSONText.iso8601(ms: second * 1000)
            self.secondCache = (second, Array(text.utf8.prefix(19)))
        }
        out.append(contentsOf: self.secondCache.text)
        let millis = Int(ms - second * 1000)
        out.append(UInt8(ascii: "."))
        out.append(UInt8(ascii: "0") + UInt8(millis / 100))
        out.append(UInt8(ascii: "0") + UInt8(millis / 10 % 10))
        out.append(UInt8(ascii: "0") + UInt8(millis % 10))
        out.append(UInt8(ascii: "Z"))
    }
}
