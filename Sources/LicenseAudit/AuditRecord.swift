import LicenseCrypto

/// One record of the audit trail. Written as a compact record (`AuditCompact`) or as a JSON line:
///
///     {"seq":7,"time":"2026-11-25T01:06:00.123Z","time_ms":1795568760123,"action":"grant",
///      "actor":"alice@ws1","subject":"lease:…","details":{…},"prev":"<64 hex>","hash":"<64 hex>"}
///
/// (on one line). `hash` is the SHA-256 of every byte of the line before `,"hash":` (of a compact
/// record, of its bytes before its hash), which includes `prev`, the hash of the record before;
/// the first record's `prev` is 64 zeros. Exported, a record keeps its hash: a JSON export of a
/// compact record carries the compact record's hash, and is checked by laying it out compactly.
/// Changing a byte of a record breaks its own hash; removing, inserting or reordering records
/// breaks the sequence and the `prev` link of the next one.
public struct AuditRecord: Sendable, Equatable {
    /// 1, 2, 3, … over the whole trail, across rotated files.
    public var sequence: UInt64
    /// When, in milliseconds since 1970.
    public var timeMs: Int64
    /// What happened.
    public var action: String
    /// Who did it.
    public var actor: String
    /// What it was done to.
    public var subject: String
    /// The particulars, as the JSON object text written (of a compact record, rendered from them).
    public var detailsJSON: String {
        get {
            switch self.particulars {
            case .json(let text): text
            case .list(let list): JSONText.object(list)
            }
        }
        set { self.particulars = .json(newValue) }
    }
    /// The particulars as read: a JSON line's text, or a compact record's list (so that reading a
    /// compact trail renders and parses no JSON).
    private var particulars: Particulars
    private enum Particulars: Sendable {
        case json(String)
        case list([(String, AuditEvent.Value)])
    }
    /// Hash (hex) of the record before.
    public var previousHash: String
    /// This record's hash (hex).
    public var hash: String

    /// `prev` of the first record.
    public static let genesisHash = String(repeating: "0", count: 64)

    /// A record from its parts (as read back from an export); `hash` is taken as given.
    public init(
        sequence: UInt64,
        timeMs: Int64,
        action: String,
        actor: String,
        subject: String,
        detailsJSON: String,
        previousHash: String,
        hash: String
    ) {
        self.sequence = sequence
        self.timeMs = timeMs
        self.action = action
        self.actor = actor
        self.subject = subject
        self.particulars = .json(detailsJSON)
        self.previousHash = previousHash
        self.hash = hash
    }

    /// A record read from a compact record: its details as a list.
    init(
        sequence: UInt64,
        timeMs: Int64,
        action: String,
        actor: String,
        subject: String,
        details: [(String, AuditEvent.Value)],
        previousHash: String,
        hash: String
    ) {
        self.init(
            sequence: sequence,
            timeMs: timeMs,
            action: action,
            actor: actor,
            subject: subject,
            detailsJSON: "",
            previousHash: previousHash,
            hash: hash
        )
        self.particulars = .list(details)
    }

    /// Equal when every field is, the details compared as the JSON text they are written as.
    public static func == (a: AuditRecord, b: AuditRecord) -> Bool {
        a.sequence == b.sequence && a.timeMs == b.timeMs && a.action == b.action && a.actor == b.actor && a.subject == b.subject
            && a.previousHash == b.previousHash && a.hash == b.hash && a.detailsJSON == b.detailsJSON
    }

    /// The part of the line the hash covers.
    public var hashedText: String {
        var out = "{\"seq\":\(self.sequence),\"time\":\"\(JSONText.iso8601(ms: self.timeMs))\",\"time_ms\":\(self.timeMs),\"action\":"
        JSONText.appendString(self.action, to: &out)
        out += ",\"actor\":"
        JSONText.appendString(self.actor, to: &out)
        out += ",\"subject\":"
        JSONText.appendString(self.subject, to: &out)
        out += ",\"details\":" + self.detailsJSON + ",\"prev\":\"" + self.previousHash + "\""
        return out
    }

    /// The record as a JSON line, without its newline.
    public var line: String { self.hashedText + ",\"hash\":\"" + self.hash + "\"}" }

    /// True when `hash` is the SHA-256 of the record's JSON text or of its compact bytes (the
    /// record as either format writes it: an export does not say which).
    public var hashMatches: Bool { SHA256.hash(Array(self.hashedText.utf8)).hexString == self.hash || self.compactHashMatches }

    /// The bytes a compact record of these fields has before its hash (nil when the details are
    /// not the flat object the server writes, or `prev` is not a hash).
    public var compactHashedBytes: [UInt8]? {
        guard let details = self.details, let previous = [UInt8](hexString: self.previousHash), previous.count == 32 else { return nil }
        return AuditCompact.hashedBytes(
            sequence: self.sequence,
            timeMs: self.timeMs,
            action: self.action,
            actor: self.actor,
            subject: self.subject,
            details: details,
            previousHash: previous
        )
    }

    /// The record as a compact record's line, its hash as given, without its newline.
    public var compactLine: [UInt8]? {
        guard var bytes = self.compactHashedBytes, let hash = [UInt8](hexString: self.hash), hash.count == 32 else { return nil }
        bytes += hash
        return AuditCompact.escaped(bytes)
    }

    /// True when `hash` is the SHA-256 of the record laid out compactly.
    var compactHashMatches: Bool { self.compactHashedBytes.map { SHA256.hash($0).hexString == self.hash } ?? false }

    /// The time as ISO 8601 (UTC, milliseconds).
    public var time: String { JSONText.iso8601(ms: self.timeMs) }

    /// The details as key/value pairs, in order; nil if they are not the flat object the server writes.
    public var details: [(String, AuditEvent.Value)]? {
        switch self.particulars {
        case .list(let list): return list
        case .json(let text):
            var scanner = JSONScanner(Array(text.utf8)[...])
            return scanner.flatObject()
        }
    }

    // MARK: - Reading

    /// The result of reading one line: the record and whether its hash covers exactly its text.
    public struct Parsed: Sendable {
        /// The record.
        public var record: AuditRecord
        /// True when `hash` is the SHA-256 of the line's bytes before `,"hash":` (as written, not re-rendered).
        public var hashMatches: Bool

        /// Creates a result.
        public init(record: AuditRecord, hashMatches: Bool) {
            self.record = record
            self.hashMatches = hashMatches
        }
    }

    /// Reads one line (without its newline): a compact record, or a JSON line. Only the layouts
    /// the server writes are accepted, field by field; nil for anything else.
    public static func parse(_ line: ArraySlice<UInt8>, checkHash: Bool = true) -> Parsed? {
        if line.first == AuditCompact.marker { return AuditCompact.parse(line, checkHash: checkHash) }
        var s = JSONScanner(line)
        guard s.literal("{\"seq\":"), let seq = s.integer(), seq >= 0,
            s.literal(",\"time\":"), s.string() != nil,
            s.literal(",\"time_ms\":"), let timeMs = s.integer(),
            s.literal(",\"action\":"), let action = s.string(),
            s.literal(",\"actor\":"), let actor = s.string(),
            s.literal(",\"subject\":"), let subject = s.string(),
            s.literal(",\"details\":"), let details = s.rawObject(),
            s.literal(",\"prev\":"), let prev = s.string(), Self.isHash(prev)
        else { return nil }
        let hashedEnd = s.position
        guard s.literal(",\"hash\":"), let hash = s.string(), Self.isHash(hash), s.literal("}"), s.atEnd else { return nil }
        let record = AuditRecord(
            sequence: UInt64(seq),
            timeMs: timeMs,
            action: action,
            actor: actor,
            subject: subject,
            detailsJSON: String(decoding: details, as: UTF8.self),
            previousHash: prev,
            hash: hash
        )
        // A JSON export of a compact record: its hash is the compact record's.
        let matches = checkHash ? SHA256.hash(line[line.startIndex..<hashedEnd]).hexString == hash || record.compactHashMatches : true
        return Parsed(record: record, hashMatches: matches)
    }
}

extension AuditRecord {
    /// True for a hash as the trail writes it: 64 lower-case hex digits.
    static func isHash(_ text: String) -> Bool {
        text.utf8.count == 64 && text.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }
}

/// A strict scanner for the little JSON the audit trail holds.
struct JSONScanner {
    let bytes: ArraySlice<UInt8>
    var position: Int

    init(_ bytes: ArraySlice<UInt8>) {
        self.bytes = bytes
        self.position = bytes.startIndex
    }

    var atEnd: Bool { self.position == self.bytes.endIndex }

    mutating func literal(_ text: StaticString) -> Bool {
        let count = text.utf8CodeUnitCount
        guard self.bytes.endIndex - self.position >= count else { return false }
        let pointer = text.utf8Start
        for i in 0..<count where self.bytes[self.position + i] != pointer[i] { return false }
        self.position += count
        return true
    }

    mutating func integer() -> Int64? {
        var negative = false
        if self.position < self.bytes.endIndex, self.bytes[self.position] == UInt8(ascii: "-") {
            negative = true
            self.position += 1
        }
        let start = self.position
        // Accumulated with the number's sign, so that Int64.min reads too.
        var value: Int64 = 0
        while self.position < self.bytes.endIndex, case let byte = self.bytes[self.position], byte >= 0x30, byte <= 0x39 {
            let digit = Int64(byte - 0x30)
            let (times, o1) = value.multipliedReportingOverflow(by: 10)
            let (sum, o2) = negative ? times.subtractingReportingOverflow(digit) : times.addingReportingOverflow(digit)
            guard !o1, !o2 else { return nil }
            value = sum
            self.position += 1
        }
        guard self.position > start else { return nil }
        return value
    }

    /// A JSON string, unescaped.
    mutating func string() -> String? {
        guard self.position < self.bytes.endIndex, self.bytes[self.position] == UInt8(ascii: "\"") else { return nil }
        self.position += 1
        let start = self.position
        var escaped = false
        while self.position < self.bytes.endIndex {
            let byte = self.bytes[self.position]
            if byte == UInt8(ascii: "\"") {
                let raw = self.bytes[start..<self.position]
                self.position += 1
                return escaped ? Self.unescape(raw) : String(decoding: raw, as: UTF8.self)
            }
            if byte == UInt8(ascii: "\\") {
                escaped = true
                self.position += 1
            } else if byte < 0x20 {
                return nil
            }
            self.position += 1
        }
        return nil
    }

    private static func unescape(_ raw: ArraySlice<UInt8>) -> String? {
        var out: [UInt8] = []
        out.reserveCapacity(raw.count)
        var i = raw.startIndex
        while i < raw.endIndex {
            let byte = raw[i]
            guard byte == UInt8(ascii: "\\") else {
                out.append(byte)
                i += 1
                continue
            }
            guard i + 1 < raw.endIndex else { return nil }
            let next = raw[i + 1]
            i += 2
            switch next {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(next)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "u"):
                guard i + 4 <= raw.endIndex, let code = UInt32(String(decoding: raw[i..<i + 4], as: UTF8.self), radix: 16),
                    let scalar = Unicode.Scalar(code)
                else { return nil }
                out.append(contentsOf: Array(String(Character(scalar)).utf8))
                i += 4
            default: return nil
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The bytes of a JSON object, braces included, without interpreting it.
    mutating func rawObject() -> ArraySlice<UInt8>? {
        guard self.position < self.bytes.endIndex, self.bytes[self.position] == UInt8(ascii: "{") else { return nil }
        let start = self.position
        var depth = 0
        var inString = false
        while self.position < self.bytes.endIndex {
            let byte = self.bytes[self.position]
            self.position += 1
            if inString {
                if byte == UInt8(ascii: "\\") {
                    self.position += 1
                } else if byte == UInt8(ascii: "\"") {
                    inString = false
                }
                continue
            }
            switch byte {
            case UInt8(ascii: "\""): inString = true
            case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                depth -= 1
                if depth == 0 { return self.bytes[start..<self.position] }
            default: break
            }
        }
        return nil
    }

    /// `{"key":value,...}` with string, integer, boolean or string-array values.
    mutating func flatObject() -> [(String, AuditEvent.Value)]? {
        guard self.literal("{") else { return nil }
        var pairs: [(String, AuditEvent.Value)] = []
        if self.literal("}") { return self.atEnd ? pairs : nil }
        repeat {
            guard let key = self.string(), self.literal(":"), let value = self.value() else { return nil }
            pairs.append((key, value))
        } while self.literal(",")
        guard self.literal("}"), self.atEnd else { return nil }
        return pairs
    }

    private mutating func value() -> AuditEvent.Value? {
        guard self.position < self.bytes.endIndex else { return nil }
        switch self.bytes[self.position] {
        case UInt8(ascii: "\""): return self.string().map { .string($0) }
        case UInt8(ascii: "t"): return self.literal("true") ? .bool(true) : nil
        case UInt8(ascii: "f"): return self.literal("false") ? .bool(false) : nil
        case UInt8(ascii: "["):
            self.position += 1
            var items: [String] = []
            if self.literal("]") { return .strings(items) }
            repeat {
                guard let item = self.string() else { return nil }
                items.append(item)
            } while self.literal(",")
            return self.literal("]") ? .strings(items) : nil
        default: return self.integer().map { .int($0) }
        }
    }
}
