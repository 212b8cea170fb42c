import ArgumentParser
import Foundation
import LicenseAudit
import LicenseCommandLine
import LicenseFiles
import LicenseReports

/// `licensectl report usage|compliance|forecast`: computed from the audit trail alone.
struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Usage, compliance and forecast reports from the audit trail (read from its files on the server's machine).",
        subcommands: [Usage.self, Compliance.self, ForecastCommand.self]
    )

    /// The window and output options every report takes.
    struct Window: ParsableArguments {
        @Option(help: "From this time on (YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ or ms since 1970; default: 30 days before --to).")
        var from: String?
        @Option(help: "Before this time (same forms; default: now).")
        var to: String?
        @Option(help: "table, csv or json.") var format = "table"

        func range() throws -> (from: Int64, to: Int64) {
            let to = try self.to.map { try TimeArgument.milliseconds($0, option: "--to") } ?? Int64(Date().timeIntervalSince1970 * 1000)
            let from = try self.from.map { try TimeArgument.milliseconds($0, option: "--from") } ?? to - 30 * 86_400_000
            guard from < to else { throw CLIError("--from must be before --to") }
            return (from, to)
        }

        func outputFormat() throws -> ReportTable.Format {
            guard let format = ReportTable.Format(rawValue: self.format) else {
                throw CLIError("--format must be table, csv or json, not '\(self.format)'")
            }
            return format
        }
    }

    static func readTrail(_ location: Audit.Location, until: Int64) throws -> UsageTrail {
        do { return try UsageTrail.read(try location.files(), untilMs: until) } catch let error as StoreError {
            throw CLIError(error.message)
        }
    }

    static func write(_ text: String) {
        FileHandle.standardOutput.write(Data(text.utf8))
    }

    struct Usage: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Check-outs, seat-hours, peak concurrency, denials by reason, queue waits, overage seat-hours and utilisation bands."
        )

        @OptionGroup var location: Audit.Location
        @OptionGroup var window: Window
        @Option(help: "Rows per feature, user, group, host or day.") var by = "feature"
        @Option(help: "Only this feature.") var feature: String?

        func run() throws {
            guard let grouping = UsageReport.Grouping(rawValue: self.by) else {
                throw CLIError(
                    "--by must be one of \(UsageReport.Grouping.allCases.map(\.rawValue).joined(separator: ", ")), not '\(self.by)'"
                )
            }
            let (from, to) = try self.window.range()
            let format = try self.window.outputFormat()
            let trail = try Report.readTrail(self.location, until: to)
            let report = UsageReport(trail: trail, fromMs: from, toMs: to, by: grouping, feature: self.feature)
            Report.write(report.table.render(format))
        }
    }

    struct Compliance: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Per licence: policy, purchased, peak in use, shortfall or availability, true-up owed, status and expiry."
        )

        @OptionGroup var location: Audit.Location
        @OptionGroup var window: Window

        func run() throws {
            let (from, to) = try self.window.range()
            let format = try self.window.outputFormat()
            let trail = try Report.readTrail(self.location, until: to)
            Report.write(ComplianceReport(trail: trail, fromMs: from, toMs: to).table.render(format))
        }
    }

    struct ForecastCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "forecast",
            abstract: "Seats and activations needed after N months, from the last 90 days, with the arithmetic."
        )

        @OptionGroup var location: Audit.Location
        @Option(help: "Months ahead.") var months: Int
        @Option(help: "Forecast from this time (default: now).") var at: String?
        @Option(help: "table, csv or json.") var format = "table"

        func run() throws {
            guard self.months > 0, self.months <= 120 else { throw CLIError("--months must be between 1 and 120") }
            guard let format = ReportTable.Format(rawValue: self.format) else {
                throw CLIError("--format must be table, csv or json, not '\(self.format)'")
            }
            let at = try self.at.map { try TimeArgument.milliseconds($0, option: "--at") } ?? Int64(Date().timeIntervalSince1970 * 1000)
            let trail = try Report.readTrail(self.location, until: at)
            Report.write(Forecast(trail: trail, atMs: at, months: self.months).table.render(format))
        }
    }
}
