import Foundation
import LicenseAudit

/// A report as columns and typed cells, written as an aligned text table, CSV or JSON.
public struct ReportTable: Sendable, Equatable {
    /// A cell's value.
    public enum Cell: Sendable, Equatable {
        case text(String)
        case int(Int64)
        /// A number shown with `decimals` decimals.
        case number(Double, decimals: Int)
        case none

        /// The cell as text (empty for none), as in CSV.
        public var text: String {
            switch self {
            case .text(let text): text
            case .int(let value): String(value)
            case .number(let value, let decimals): String(format: "%.\(decimals)f", value)
            case .none: ""
            }
        }

        var json: String {
            switch self {
            case .text(let text): JSONText.string(text)
            case .int(let value): String(value)
            case .number(let value, let decimals): String(format: "%.\(decimals)f", value)
            case .none: "null"
            }
        }
    }

    /// Output formats.
    public enum Format: String, Sendable, CaseIterable {
        case table, csv, json
    }

    public var columns: [String]
    public var rows: [[Cell]]

    /// Creates a table.
    public init(columns: [String], rows: [[Cell]]) {
        self.columns = columns
        self.rows = rows
    }

    /// The table in `format`, ending in a newline.
    public func render(_ format: Format) -> String {
        switch format {
        case .csv:
            return ([self.columns] + self.rows.map { $0.map(\.text) }).map { $0.map(AuditCSV.field).joined(separator: ",") + "\r\n" }
                .joined()
        case .json:
            let objects = self.rows.map { row in
                "{" + zip(self.columns, row).map { JSONText.string($0) + ":" + $1.json }.joined(separator: ",") + "}"
            }
            return "[\n" + objects.map { "  " + $0 }.joined(separator: ",\n") + "\n]\n"
        case .table:
            let cells = [self.columns] + self.rows.map { $0.map { $0.text.isEmpty ? "-" : $0.text } }
            let widths = self.columns.indices.map { column in cells.map { $0[column].count }.max() ?? 0 }
            return cells.map { row in
                zip(row, widths).map { $0 + String(repeating: " ", count: $1 - $0.count) }.joined(separator: "  ")
                    .replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression) + "\n"
            }.joined()
        }
    }

}

extension UsageReport {
    /// The report's table: one row per group.
    public var table: ReportTable {
        let columns = [
            self.grouping.rawValue, "checkouts", "seat_hours", "seat_seconds", "peak", "peak_at", "denials", "denials_by_reason",
            "queue_waits",
            "wait_p50_ms", "wait_p95_ms", "overage_seat_hours", "capacity", "utilisation_pct", "band", "assessment",
        ]
        let rows = self.rows.map { row -> [ReportTable.Cell] in
            [
                .text(row.key), .int(Int64(row.checkouts)), .number(row.seatHours, decimals: 3), .int(row.seatMs / 1000), .int(row.peak),
                row.peakAtMs.map { .text(JSONText.iso8601(ms: $0)) } ?? .none, .int(Int64(row.totalDenials)),
                .text(row.denials.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ";")),
                .int(Int64(row.queueWaits)), row.waitP50Ms.map { .int($0) } ?? .none, row.waitP95Ms.map { .int($0) } ?? .none,
                .number(row.overageSeatHours, decimals: 3),
                row.unlimited ? .text("unlimited") : row.capacity.map { .int($0) } ?? .none,
                row.utilisation.map { .number($0 * 100, decimals: 1) } ?? .none, row.band.map { .text($0.rawValue) } ?? .none,
                row.band.map { .text($0.assessment) } ?? .none,
            ]
        }
        return ReportTable(columns: columns, rows: rows)
    }
}

extension ComplianceReport {
    /// The report's table: one row per licence and feature.
    public var table: ReportTable {
        let columns = [
            "license", "product", "policy", "feature", "purchased", "peak", "shortfall", "available", "true_up_owed", "status", "expires",
        ]
        let rows = self.rows.map { row -> [ReportTable.Cell] in
            [
                .text(row.license), .text(row.product), .text(row.policy), .text(row.feature),
                row.purchased.map { .int($0) } ?? .text("unlimited"), .int(row.peak), row.shortfall.map { .int($0) } ?? .none,
                row.available.map { .int($0) } ?? .none, row.trueUpOwed.map { .int($0) } ?? .none, .text(row.status.rawValue),
                row.notAfterMs == 0 ? .text("never") : .text(String(JSONText.iso8601(ms: row.notAfterMs).prefix(10))),
            ]
        }
        return ReportTable(columns: columns, rows: rows)
    }
}

extension Forecast {
    /// The forecast's table: one row per feature or node-locked licence, with its arithmetic.
    public var table: ReportTable {
        let columns = ["subject", "current", "licensed", "months", "needed", "to_buy", "arithmetic"]
        let rows = self.rows.map { row -> [ReportTable.Cell] in
            [
                .text(row.subject), .int(row.current), row.licensed.map { .int($0) } ?? .text("unlimited"), .int(Int64(self.months)),
                .int(row.needed), row.toBuy.map { .int($0) } ?? .none, .text(row.arithmetic),
            ]
        }
        return ReportTable(columns: columns, rows: rows)
    }
}
