/// One thing that happened, for the audit trail: who did what to what, and the particulars.
/// The store numbers it, stamps the hash chain and writes it as one JSON line.
public struct AuditEvent: Sendable, Equatable {
    /// A detail's value.
    public enum Value: Sendable, Equatable {
        case string(String)
        case int(Int64)
        case bool(Bool)
        case strings([String])
    }

    /// When, in milliseconds since 1970 (the ledger's clock).
    public var timeMs: Int64
    /// What: `grant`, `deny`, `checkin`, `reclaim`, `revoke`, `activate`, `reload`, `token_rejected`, ...
    public var action: String
    /// Who: `user@host` of the session, `admin-socket`, `server` (the reaper), or a peer address.
    public var actor: String
    /// What it was done to: `lease:<id>`, `feature:<name>`, `activation:<id>`, `license:<id>`, or empty.
    public var subject: String
    /// The particulars, in a fixed order.
    public var details: [(String, Value)]
    /// A lease's record, rendered from the lease itself (see `init(timeMs:lease:)`).
    public var leaseRecord: AuditLeaseRecord? { self.leaseBox?.record }
    private var leaseBox: LeaseBox?

    /// Actor, subject and details.
    public typealias Parts = (actor: String, subject: String, details: [(String, Value)])

    /// Creates an event.
    public init(timeMs: Int64, action: String, actor: String, subject: String = "", details: [(String, Value)] = []) {
        self.timeMs = timeMs
        self.action = action
        self.actor = actor
        self.subject = subject
        self.details = details
    }

    /// Creates a lease's record (grant, check-in, reclaim, revoke): the serving loop only captures
    /// the lease, and the writer thread renders the record from it (`AuditLeaseRecord`). Actor,
    /// subject and details are empty until `resolved`.
    public init(timeMs: Int64, lease record: AuditLeaseRecord) {
        self.timeMs = timeMs
        self.action = record.action
        self.actor = ""
        self.subject = ""
        self.details = []
        self.leaseBox = LeaseBox(record)
    }

    /// The event with a lease record's actor, subject and details filled in.
    public var resolved: AuditEvent {
        guard let record = self.leaseRecord else { return self }
        let parts = record.parts
        return AuditEvent(timeMs: self.timeMs, action: self.action, actor: parts.actor, subject: parts.subject, details: parts.details)
    }

    /// One allocation holds the lease's record, as a closure's context would: the event stays
    /// small as it moves through the log's queue.
    private final class LeaseBox: Sendable {
        let record: AuditLeaseRecord
        init(_ record: AuditLeaseRecord) { self.record = record }
    }

    public static func == (a: AuditEvent, b: AuditEvent) -> Bool {
        let a = a.resolved
        let b = b.resolved
        return a.timeMs == b.timeMs && a.action == b.action && a.actor == b.actor && a.subject == b.subject
            && a.details.map(\.0) == b.details.map(\.0) && a.details.map(\.1) == b.details.map(\.1)
    }

    /// The details as a JSON object, keys in order.
    public var detailsJSON: String { JSONText.object(self.resolved.details) }
}

/// The small part of JSON the audit trail writes: strings escaped one way only, so a line has
/// exactly one spelling and re-rendering a parsed record gives back the same bytes.
public enum JSONText {
    /// Appends `text` as a JSON string: `"` and `\` escaped, control characters as `\n`, `\r`,
    /// `\t` or `\u00XX`, everything else (UTF-8 included) as is.
    public static func appendString(_ text: String, to out: inout String) {
        out += "\""
        var plain = true
        for unit in text.utf8 where unit < 0x20 || unit == 0x22 || unit == 0x5C {
            plain = false
            break
        }
        if plain {
            out += text
        } else {
            for scalar in text.unicodeScalars {
                switch scalar {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case "\n": out += "\\n"
                case "\r": out += "\\r"
                case "\t": out += "\\t"
                case _ where scalar.value < 0x20:
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                default: out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
    }

    /// `details` as a JSON object, keys in order.
    public static func object(_ details: [(String, AuditEvent.Value)]) -> String {
        var out = "{"
        for (index, (key, value)) in details.enumerated() {
            if index > 0 { out += "," }
            Self.appendString(key, to: &out)
            out += ":"
            switch value {
            case .string(let text): Self.appendString(text, to: &out)
            case .int(let number): out += String(number)
            case .bool(let flag): out += flag ? "true" : "false"
            case .strings(let list):
                out += "["
                for (i, item) in list.enumerated() {
                    if i > 0 { out += "," }
                    Self.appendString(item, to: &out)
                }
                out += "]"
            }
        }
        return out + "}"
    }

    /// `text` as a JSON string literal.
    public static func string(_ text: String) -> String {
        var out = ""
        appendString(text, to: &out)
        return out
    }

    /// Milliseconds since 1970 as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC), without Foundation's formatters.
    public static func iso8601(ms: Int64) -> String {
        let (days, msOfDay) = ms.floorDividedBy(86_400_000)
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yoe + era * 400 + (month <= 2 ? 1 : 0)
        func pad(_ n: Int64, _ width: Int) -> String {
            let digits = String(n)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        let seconds = msOfDay / 1000
        return "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))T\(pad(seconds / 3600, 2)):\(pad(seconds / 60 % 60, 2)):"
            + "\(pad(seconds % 60, 2)).\(pad(msOfDay % 1000, 3))Z"
    }
}

extension Int64 {
    fileprivate func floorDividedBy(_ divisor: Int64) -> (Int64, Int64) {
        var quotient = self / divisor
        var remainder = self % divisor
        if remainder < 0 {
            quotient -= 1
            remainder += divisor
        }
        return (quotient, remainder)
    }
}
