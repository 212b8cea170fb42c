import Foundation
import LicenseFiles

/// The audit trail as CSV (RFC 4180): one row per record with the columns below, `details` as
/// its JSON text. Every field of a record is kept, so rows read back into the same records and
/// their hashes still verify.
public enum AuditCSV {
    /// The header row's columns.
    public static let columns = ["seq", "time", "time_ms", "action", "actor", "subject", "details", "prev", "hash"]

    /// The header line (with CRLF).
    public static var header: String { self.columns.joined(separator: ",") + "\r\n" }

    /// One record as a CSV line (with CRLF).
    public static func row(_ record: AuditRecord) -> String {
        [
            String(record.sequence), record.time, String(record.timeMs), record.action, record.actor, record.subject, record.detailsJSON,
            record.previousHash, record.hash,
        ].map(self.field).joined(separator: ",") + "\r\n"
    }

    /// `text` as one CSV field: quoted (quotes doubled) when it holds a comma, quote or line break.
    public static func field(_ text: String) -> String {
        guard text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\r" || $0 == "\n" }) else { return text }
        return "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// Parses CSV text into rows of fields (quoted fields may hold commas, quotes and line breaks).
    public static func parseRows(_ text: String) throws -> [[String]] {
        var rows: [[String]] = []
        var row: [String] = []
        var field = ""
        var inQuotes = false
        var atFieldStart = true
        var iterator = text.unicodeScalars.makeIterator()
        var pending: Unicode.Scalar? = nil
        func next() -> Unicode.Scalar? {
            if let p = pending {
                pending = nil
                return p
            }
            return iterator.next()
        }
        while let c = next() {
            if inQuotes {
                if c == "\"" {
                    if let following = next() {
                        if following == "\"" {
                            field.unicodeScalars.append("\"")
                        } else {
                            inQuotes = false
                            pending = following
                        }
                    } else {
                        inQuotes = false
                    }
                } else {
                    field.unicodeScalars.append(c)
                }
                continue
            }
            switch c {
            case "\"" where atFieldStart:
                inQuotes = true
                atFieldStart = false
            case ",":
                row.append(field)
                field = ""
                atFieldStart = true
            case "\r":
                continue
            case "\n":
                row.append(field)
                rows.append(row)
                row = []
                field = ""
                atFieldStart = true
            default:
                field.unicodeScalars.append(c)
                atFieldStart = false
            }
        }
        guard !inQuotes else { throw StoreError("CSV ends inside a quoted field") }
        if !field.isEmpty || !row.isEmpty {
            row.append(field)
            rows.append(row)
        }
        return rows
    }

    /// Reads rows written by `row(_:)` (after the header) back into records; nil for a row that is not one.
    public static func records(_ text: String) throws -> [AuditRecord?] {
        let rows = try self.parseRows(text)
        guard let header = rows.first, header == self.columns else {
            throw StoreError("not an audit export: the first row must be \(self.columns.joined(separator: ","))")
        }
        return rows.dropFirst().map { fields -> AuditRecord? in
            guard fields.count == self.columns.count, let seq = UInt64(fields[0]), let timeMs = Int64(fields[2]) else { return nil }
            return AuditRecord(
                sequence: seq,
                timeMs: timeMs,
                action: fields[3],
                actor: fields[4],
                subject: fields[5],
                detailsJSON: fields[6],
                previousHash: fields[7],
                hash: fields[8]
            )
        }
    }
}
