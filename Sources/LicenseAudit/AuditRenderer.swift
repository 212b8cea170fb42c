import LicenseCore
import LicenseCrypto

/// Renders audit records straight into bytes, for the writer thread: the same bytes as
/// `AuditRecord.line` (JSON lines) or `AuditCompact.hashedBytes` and its hash (compact records) —
/// the tests hold them to each other — without building Strings, and the hash computed over the
/// buffer in place.
struct AuditRenderer {
    /// A SHA-256 digest, its 32 bytes in order.
    typealias Digest = (UInt64, UInt64, UInt64, UInt64)
    /// `prev` of the first record.
    static let genesis: Digest = (0, 0, 0, 0)

    private var secondCache: (second: Int64, text: [UInt8]) = (.min, [])
    private static let hexDigits = Array("0123456789abcdef".utf8)

    /// Appends `event` as record `sequence` after the record whose hash is `previous`, in
    /// `format`, to `out`, newline included, and returns its hash.
    mutating func append(format: AuditFormat, sequence: UInt64, event: AuditEvent, previous: Digest, to out: inout ByteWriter) -> Digest {
        switch format {
        case .jsonl: self.appendJSON(sequence: sequence, event: event, previous: previous, to: &out)
        case .compact: Self.appendCompact(sequence: sequence, event: event, previous: previous, to: &out)
        }
    }

    /// The record as a JSON line.
    mutating func appendJSON(sequence: UInt64, event: AuditEvent, previous: Digest, to out: inout ByteWriter) -> Digest {
        let start = out.count
        Self.ascii("{\"seq\":", &out)
        Self.decimal(Int64(sequence), &out)
        Self.ascii(",\"time\":\"", &out)
        self.time(event.timeMs, &out)
        Self.ascii("\",\"time_ms\":", &out)
        Self.decimal(event.timeMs, &out)
        Self.ascii(",\"action\":", &out)
        Self.string(event.action, &out)
        if let record = event.leaseRecord {
            Self.lease(record, &out)
        } else {
            Self.ascii(",\"actor\":", &out)
            Self.string(event.actor, &out)
            Self.ascii(",\"subject\":", &out)
            Self.string(event.subject, &out)
            Self.ascii(",\"details\":{", &out)
            Self.details(event.details, first: true, &out)
        }
        Self.ascii("},\"prev\":\"", &out)
        Self.hex(previous, &out)
        out.write(UInt8(ascii: "\""))
        var digest = Self.genesis
        withUnsafeMutableBytes(of: &digest) { SHA256.hash(bytes: out.bytes(start..<out.count), into: $0) }
        Self.ascii(",\"hash\":\"", &out)
        Self.hex(digest, &out)
        Self.ascii("\"}\n", &out)
        return digest
    }

    /// A digest's 64 lower-case hex digits.
    private static func hex(_ digest: Digest, _ out: inout ByteWriter) {
        withUnsafeBytes(of: digest) { bytes in out.write(count: 64) { Self.hex(bytes, $0) } }
    }

    /// Each of `bytes` as two lower-case hex digits at `digits`, from `hexPairs`.
    private static func hex(_ bytes: UnsafeRawBufferPointer, _ digits: UnsafeMutablePointer<UInt8>) {
        let pairs = UnsafeRawPointer(Self.hexPairs.utf8Start)
        let target = UnsafeMutableRawPointer(digits)
        for (index, byte) in bytes.enumerated() {
            target.storeBytes(
                of: pairs.loadUnaligned(fromByteOffset: 2 * Int(byte), as: UInt16.self),
                toByteOffset: 2 * index,
                as: UInt16.self
            )
        }
    }

    /// `bytes` as lower-case hex digits: hashes and ids as the trail's records read back give them.
    static func hexString(_ bytes: UnsafeRawBufferPointer) -> String {
        String(unsafeUninitializedCapacity: 2 * bytes.count) { text in
            if let digits = text.baseAddress { Self.hex(bytes, digits) }
            return 2 * bytes.count
        }
    }

    /// A digest as the trail writes hashes (the head published once a batch).
    static func hexString(_ digest: Digest) -> String {
        withUnsafeBytes(of: digest) { Self.hexString($0) }
    }

    /// A hash's 64 hex digits as its digest (the genesis digest for anything else: the hashes given
    /// were read by `AuditRecord.parse`, which checks their form).
    static func digest(hex: String) -> Digest {
        var digest = Self.genesis
        guard let bytes = [UInt8](hexString: hex), bytes.count == 32 else { return digest }
        withUnsafeMutableBytes(of: &digest) { $0.copyBytes(from: bytes) }
        return digest
    }

    // MARK: - Compact records

    /// The record in `AuditCompact`'s layout, escaped, as a line.
    static func appendCompact(sequence: UInt64, event: AuditEvent, previous: Digest, to out: inout ByteWriter) -> Digest {
        let start = out.count
        out.write(AuditCompact.marker)
        AuditCompact.varint(sequence, &out)
        AuditCompact.varint(AuditCompact.zigzag(event.timeMs), &out)
        if let record = event.leaseRecord {
            Self.compactLease(record, &out)
        } else {
            AuditCompact.string(event.action, &out)
            AuditCompact.string(event.actor, &out)
            AuditCompact.string(event.subject, &out)
            AuditCompact.varint(UInt64(event.details.count), &out)
            Self.compactDetails(event.details, &out)
        }
        withUnsafeBytes(of: previous) { out.write($0) }
        var digest = Self.genesis
        withUnsafeMutableBytes(of: &digest) { SHA256.hash(bytes: out.bytes(start..<out.count), into: $0) }
        withUnsafeBytes(of: digest) { out.write($0) }
        AuditCompact.escape(start..<out.count, in: &out)
        out.write(0x0A)
        return digest
    }

    /// A lease's record in the compact layout: the fields and their order of `AuditLeaseRecord.parts`.
    private static func compactLease(_ record: AuditLeaseRecord, _ out: inout ByteWriter) {
        typealias Code = AuditCompact.Code
        let action: Int
        var count = record.extra.count + (record.lease == nil ? 1 : 8)
        switch record.kind {
        case .grant(let waitedMs):
            action = Code.grant
            count += (record.lease == nil ? 0 : 3) + (waitedMs == nil ? 0 : 1)
        case .release(let cause, _):
            // `AuditLeaseRecord.action(for:)`'s words, by their codes.
            switch cause {
            case .checkedIn, .baseReleased: action = Code.checkin
            case .expired: action = Code.reclaim
            case .revoked: action = Code.revoke
            }
            count += record.lease == nil ? 1 : 2
        }
        Self.code(action, &out)
        if let actor = record.actor {
            AuditCompact.string(actor, &out)
        } else if let identity = record.lease?.identity {
            // `user@host`: never an id (no `@` in one) nor a dictionary entry (none has an `@`).
            AuditCompact.varint(UInt64(identity.user.utf8.count + 1 + identity.host.utf8.count) << 2, &out)
            Self.utf8(identity.user, &out)
            out.write(UInt8(ascii: "@"))
            Self.utf8(identity.host, &out)
        } else {
            AuditCompact.varint(0, &out)
        }
        Self.id(record.id, prefix: 1, &out)
        AuditCompact.varint(UInt64(count), &out)
        Self.code(Code.lease, &out)
        out.write(AuditCompact.Tag.string)
        Self.id(record.id, prefix: 0, &out)
        if let lease = record.lease {
            Self.code(Code.feature, &out)
            out.write(AuditCompact.Tag.string)
            AuditCompact.string(lease.feature, &out)
            Self.code(Code.license, &out)
            out.write(AuditCompact.Tag.string)
            AuditCompact.string(lease.licenseID, &out)
            Self.compactInt(Code.count, Int64(lease.count), &out)
            Self.code(Code.user, &out)
            out.write(AuditCompact.Tag.string)
            AuditCompact.string(lease.identity.user, &out)
            Self.code(Code.host, &out)
            out.write(AuditCompact.Tag.string)
            AuditCompact.string(lease.identity.host, &out)
            Self.code(Code.groups, &out)
            out.write(AuditCompact.Tag.strings)
            AuditCompact.varint(UInt64(lease.identity.groups.count), &out)
            for group in lease.identity.groups { AuditCompact.string(group, &out) }
            Self.compactInt(Code.grantedMs, lease.grantedAtMs, &out)
        }
        switch record.kind {
        case .grant(let waitedMs):
            if let lease = record.lease {
                Self.compactInt(Code.expiresMs, lease.expiresAtMs, &out)
                Self.code(Code.overage, &out)
                out.write(lease.overage ? AuditCompact.Tag.trueValue : AuditCompact.Tag.falseValue)
                Self.code(Code.borrowed, &out)
                out.write(lease.borrowed ? AuditCompact.Tag.trueValue : AuditCompact.Tag.falseValue)
            }
            if let waitedMs { Self.compactInt(Code.waitedMs, waitedMs, &out) }
        case .release(let cause, let atMs):
            if let lease = record.lease { Self.compactInt(Code.heldMs, atMs - lease.grantedAtMs, &out) }
            Self.code(Code.cause, &out)
            out.write(AuditCompact.Tag.string)
            AuditCompact.string(cause.rawValue, &out)
        }
        Self.compactDetails(record.extra, &out)
    }

    private static func compactDetails(_ details: [(String, AuditEvent.Value)], _ out: inout ByteWriter) {
        for index in details.indices {
            AuditCompact.string(details[index].0, &out)
            AuditCompact.value(details[index].1, &out)
        }
    }

    /// A dictionary entry's code (those below 32: one byte).
    @inline(__always)
    private static func code(_ code: Int, _ out: inout ByteWriter) {
        out.write(UInt8(truncatingIfNeeded: code << 2 | 1))
    }

    @inline(__always)
    private static func compactInt(_ key: Int, _ value: Int64, _ out: inout ByteWriter) {
        Self.code(key, &out)
        out.write(AuditCompact.Tag.int)
        AuditCompact.varint(AuditCompact.zigzag(value), &out)
    }

    /// An id in its compact form after `AuditCompact.idPrefixes[prefix]`.
    @inline(__always)
    private static func id(_ id: ID128, prefix: Int, _ out: inout ByteWriter) {
        out.write(UInt8(truncatingIfNeeded: prefix << 2 | 2))
        withUnsafeBytes(of: (id.high.bigEndian, id.low.bigEndian)) { out.write($0) }
    }

    /// `text`'s bytes, read in place.
    private static func utf8(_ text: String, _ out: inout ByteWriter) {
        let done = text.utf8.withContiguousStorageIfAvailable { out.write($0) }
        if done == nil {
            var copy = text
            copy.withUTF8 { out.write($0) }
        }
    }

    /// Actor, subject and details of a lease's record, written from the lease: the fields and
    /// their order of `AuditLeaseRecord.parts`.
    private static func lease(_ record: AuditLeaseRecord, _ out: inout ByteWriter) {
        Self.ascii(",\"actor\":", &out)
        if let actor = record.actor {
            Self.string(actor, &out)
        } else {
            // The holder: `AuditLeaseRecord.holder`, escaped as one string (escaping goes byte by byte).
            let identity = record.lease?.identity
            out.write(UInt8(ascii: "\""))
            Self.escaped(identity?.user ?? "", &out)
            if identity != nil { out.write(UInt8(ascii: "@")) }
            Self.escaped(identity?.host ?? "", &out)
            out.write(UInt8(ascii: "\""))
        }
        Self.ascii(",\"subject\":\"lease:", &out)
        Self.hex(record.id, &out)
        Self.ascii("\",\"details\":{\"lease\":\"", &out)
        Self.hex(record.id, &out)
        out.write(UInt8(ascii: "\""))
        if let lease = record.lease {
            Self.ascii(",\"feature\":", &out)
            Self.string(lease.feature, &out)
            Self.ascii(",\"license\":", &out)
            Self.string(lease.licenseID, &out)
            Self.ascii(",\"count\":", &out)
            Self.decimal(Int64(lease.count), &out)
            Self.ascii(",\"user\":", &out)
            Self.string(lease.identity.user, &out)
            Self.ascii(",\"host\":", &out)
            Self.string(lease.identity.host, &out)
            Self.ascii(",\"groups\":", &out)
            Self.strings(lease.identity.groups, &out)
            Self.ascii(",\"granted_ms\":", &out)
            Self.decimal(lease.grantedAtMs, &out)
        }
        switch record.kind {
        case .grant(let waitedMs):
            if let lease = record.lease {
                Self.ascii(",\"expires_ms\":", &out)
                Self.decimal(lease.expiresAtMs, &out)
                Self.ascii(lease.overage ? ",\"overage\":true" : ",\"overage\":false", &out)
                Self.ascii(lease.borrowed ? ",\"borrowed\":true" : ",\"borrowed\":false", &out)
            }
            if let waitedMs {
                Self.ascii(",\"waited_ms\":", &out)
                Self.decimal(waitedMs, &out)
            }
        case .release(let cause, let atMs):
            if let lease = record.lease {
                Self.ascii(",\"held_ms\":", &out)
                Self.decimal(atMs - lease.grantedAtMs, &out)
            }
            Self.ascii(",\"cause\":", &out)
            Self.string(cause.rawValue, &out)
        }
        Self.details(record.extra, first: false, &out)
    }

    /// `"key":value` for each of `details`, comma-separated (a comma first unless `first`).
    private static func details(_ details: [(String, AuditEvent.Value)], first: Bool, _ out: inout ByteWriter) {
        for (index, (key, value)) in details.enumerated() {
            if index > 0 || !first { out.write(UInt8(ascii: ",")) }
            Self.string(key, &out)
            out.write(UInt8(ascii: ":"))
            switch value {
            case .string(let text): Self.string(text, &out)
            case .int(let number): Self.decimal(number, &out)
            case .bool(let flag): Self.ascii(flag ? "true" : "false", &out)
            case .strings(let list): Self.strings(list, &out)
            }
        }
    }

    private static func strings(_ list: [String], _ out: inout ByteWriter) {
        out.write(UInt8(ascii: "["))
        for (index, item) in list.enumerated() {
            if index > 0 { out.write(UInt8(ascii: ",")) }
            Self.string(item, &out)
        }
        out.write(UInt8(ascii: "]"))
    }

    /// An id's 32 lower-case hex digits (as `ID128.description`).
    private static func hex(_ id: ID128, _ out: inout ByteWriter) {
        out.write(count: 32) { digits in
            Self.hex(id.high, digits)
            Self.hex(id.low, digits + 16)
        }
    }

    /// `word`'s 16 lower-case hex digits, most significant first, at `digits`: two a byte from
    /// `hexPairs`.
    @inline(__always)
    private static func hex(_ word: UInt64, _ digits: UnsafeMutablePointer<UInt8>) {
        let pairs = UnsafeRawPointer(Self.hexPairs.utf8Start)
        let target = UnsafeMutableRawPointer(digits)
        for index in 0..<8 {
            let byte = Int(truncatingIfNeeded: word >> (56 - 8 * UInt64(index))) & 0xFF
            target.storeBytes(of: pairs.loadUnaligned(fromByteOffset: 2 * byte, as: UInt16.self), toByteOffset: 2 * index, as: UInt16.self)
        }
    }

    /// Every byte's two hex digits, in byte order.
    private static let hexPairs: StaticString = """
        000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\
        202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f\
        404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f\
        606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f\
        808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f\
        a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf\
        c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf\
        e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff
        """

    /// Every number below 100 as two decimal digits, in order.
    private static let decimalPairs: StaticString = """
        00010203040506070809101112131415161718192021222324252627282930313233343536373839\
        40414243444546474849505152535455565758596061626364656667686970717273747576777879\
        8081828384858687888990919293949596979899
        """

    private static func ascii(_ text: StaticString, _ out: inout ByteWriter) {
        out.write(text)
    }

    /// `value` in decimal, written in place from its last digit: two digits at a time from
    /// `decimalPairs` (the times in milliseconds are 13 digits, several a record).
    private static func decimal(_ value: Int64, _ out: inout ByteWriter) {
        let magnitude = value.magnitude
        var digitCount = 1
        var power: UInt64 = 10
        while digitCount < 20, magnitude >= power {
            digitCount += 1
            power = power &* 10
        }
        let sign = value < 0 ? 1 : 0
        out.write(count: sign + digitCount) { start in
            if sign == 1 { start[0] = UInt8(ascii: "-") }
            let pairs = UnsafeRawPointer(Self.decimalPairs.utf8Start)
            var rest = magnitude
            var end = UnsafeMutableRawPointer(start + sign + digitCount)
            while rest >= 100 {
                let pair = Int(truncatingIfNeeded: rest % 100)
                rest /= 100
                end -= 2
                end.storeBytes(of: pairs.loadUnaligned(fromByteOffset: 2 * pair, as: UInt16.self), as: UInt16.self)
            }
            if rest >= 10 {
                end -= 2
                end.storeBytes(of: pairs.loadUnaligned(fromByteOffset: 2 * Int(rest), as: UInt16.self), as: UInt16.self)
            } else {
                end -= 1
                end.storeBytes(of: UInt8(ascii: "0") + UInt8(rest), as: UInt8.self)
            }
        }
    }

    /// A JSON string with the escaping of `JSONText.appendString`.
    private static func string(_ text: String, _ out: inout ByteWriter) {
        out.write(UInt8(ascii: "\""))
        Self.escaped(text, &out)
        out.write(UInt8(ascii: "\""))
    }

    /// The inside of a JSON string: `text` with the escaping of `JSONText.appendString`.
    private static func escaped(_ text: String, _ out: inout ByteWriter) {
        // Read in place (a native string always is; `withUTF8` would copy the argument first).
        let done = text.utf8.withContiguousStorageIfAvailable { bytes in
            guard Self.needsEscaping(bytes) else {
                out.write(bytes)
                return true
            }
            return false
        }
        if done == true { return }
        var text = text
        text.withUTF8 { bytes in
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
    }

    /// True when `bytes` hold a control character, `"` or `\`: eight bytes at a time (the
    /// classic has-zero-byte tests on a word; exact as to whether any byte matches).
    @inline(__always)
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
