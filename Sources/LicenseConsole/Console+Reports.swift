import Foundation
import HTTPTypes
import Hummingbird
import LicenseAudit
import LicenseReports
import LicenseServer

/// The reports page: usage by feature, user, group, host or day with a chart of seats in use over
/// time, compliance and forecast — the same reports as `licensectl report`, from the audit trail's
/// files on this machine (read off the serving threads), each downloadable as CSV.
extension Console {
    /// What a report request asks for: the window, the grouping, one feature or all, the forecast's months.
    struct ReportQuery {
        var fromMs: Int64
        var toMs: Int64
        var grouping: UsageReport.Grouping
        var feature: String?
        var months: Int

        init(_ request: Request, nowMs: Int64) throws {
            let parameters = request.uri.queryParameters
            func time(_ name: String) throws -> Int64? {
                guard let text = parameters.get(name).map { String($0) }, !text.isEmpty else { return nil }
                guard let ms = ReportTime.milliseconds(text) else {
                    throw HTTPError(.badRequest, message: "\(name) '\(text)' is not YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ or milliseconds")
                }
                return ms
            }
            // A date alone for `to` means the whole of that day.
            let toText = parameters.get("to").map { String($0) } ?? ""
            self.toMs = try time("to").map { toText.count == 10 ? $0 + 86_400_000 : $0 } ?? nowMs
            self.fromMs = try time("from") ?? self.toMs - 30 * 86_400_000
            guard self.fromMs < self.toMs else { throw HTTPError(.badRequest, message: "from must be before to") }
            let by = parameters.get("by").map { String($0) } ?? "feature"
            guard let grouping = UsageReport.Grouping(rawValue: by) else {
                throw HTTPError(.badRequest, message: "by must be one of feature, user, group, host, day")
            }
            self.grouping = grouping
            self.feature = parameters.get("feature").map { String($0) }.flatMap { $0.isEmpty ? nil : $0 }
            self.months = parameters.get("months").flatMap { Int($0) }.map { min(max($0, 1), 120) } ?? 12
        }

        /// Buckets of the chart: hours up to 5 days, days up to 120 days, else 120.
        var buckets: Int {
            let span = self.toMs - self.fromMs
            if span <= 5 * 86_400_000 { return Int((span + 3_599_999) / 3_600_000) }
            if span <= 120 * 86_400_000 { return Int((span + 86_399_999) / 86_400_000) }
            return 120
        }

        /// The query string of this window and selection, for links and downloads.
        var queryString: String {
            var items = [
                "from=" + Console.queryValue(String(JSONText.iso8601(ms: self.fromMs))),
                "to=" + Console.queryValue(String(JSONText.iso8601(ms: self.toMs))), "by=" + self.grouping.rawValue,
                "months=\(self.months)",
            ]
            if let feature { items.append("feature=" + Console.queryValue(feature)) }
            return items.joined(separator: "&")
        }
    }

    /// The trail up to the window's end, read on a Dispatch thread.
    func readTrail(until toMs: Int64) async throws -> UsageTrail {
        let directory = self.server.configuration.auditDirectory
        return try await Self.offThread { try UsageTrail.read(try AuditTrail.files(in: directory), untilMs: toMs) }
    }

    func reportsPage(_ request: Request, _ session: ConsoleSession) async throws -> Response {
        let query: ReportQuery
        do { query = try ReportQuery(request, nowMs: Self.nowMs) } catch let error as HTTPError {
            return self.page("reports", title: "Reports", ["problem": error.body ?? "bad request"], session: session, status: .badRequest)
        }
        let trail = try await self.readTrail(until: query.toMs)
        let usage = UsageReport(trail: trail, fromMs: query.fromMs, toMs: query.toMs, by: query.grouping, feature: query.feature)
        let byFeature =
            query.grouping == .feature && query.feature == nil
            ? usage : UsageReport(trail: trail, fromMs: query.fromMs, toMs: query.toMs, by: .feature)
        let series = UsageSeries(trail: trail, fromMs: query.fromMs, toMs: query.toMs, feature: query.feature, buckets: query.buckets)
        let compliance = ComplianceReport(trail: trail, fromMs: query.fromMs, toMs: query.toMs)
        let forecast = Forecast(trail: trail, atMs: query.toMs, months: query.months)
        let subject = query.feature.map { "feature \($0)" } ?? "every floating feature"
        let window = "\(JSONText.iso8601(ms: query.fromMs).prefix(16)) to \(JSONText.iso8601(ms: query.toMs).prefix(16))"
        var values: [String: Any] = [
            "from": String(JSONText.iso8601(ms: query.fromMs).prefix(10)),
            "to": String(JSONText.iso8601(ms: query.toMs - 1).prefix(10)),
            "months": query.months, "query": query.queryString, "subject": subject, "window": window,
            "groupings": UsageReport.Grouping.allCases.map { ["name": $0.rawValue, "selected": $0 == query.grouping] as [String: Any] },
            "features": byFeature.rows.map { ["name": $0.key, "selected": $0.key == query.feature] as [String: Any] },
            "chart": ConsoleChart.svg(series, title: "Seats in use, \(subject), \(window)"),
            "peak": series.peak, "grouping": query.grouping.rawValue, "records": trail.records,
            "usage": Self.tableValues(usage.table), "compliance": Self.tableValues(compliance.table),
            "forecast": Self.tableValues(forecast.table),
        ]
        if let at = series.peakAtMs { values["peakAt"] = JSONText.iso8601(ms: at) }
        if let capacity = series.capacity { values["capacity"] = capacity }
        return self.page("reports", title: "Reports", values, session: session)
    }

    /// A report as CSV, named for what it holds.
    func reportCSV(_ request: Request, _ context: ConsoleContext, _ session: ConsoleSession) async throws -> Response {
        let query: ReportQuery
        do { query = try ReportQuery(request, nowMs: Self.nowMs) } catch let error as HTTPError {
            return Self.refusal(error.body ?? "bad request", status: .badRequest)
        }
        let trail = try await self.readTrail(until: query.toMs)
        let span = "\(JSONText.iso8601(ms: query.fromMs).prefix(10))-\(JSONText.iso8601(ms: query.toMs - 1).prefix(10))"
        let table: ReportTable
        let name: String
        switch context.parameters.get("report") ?? "" {
        case "usage":
            table = UsageReport(trail: trail, fromMs: query.fromMs, toMs: query.toMs, by: query.grouping, feature: query.feature).table
            name = "usage-by-\(query.grouping.rawValue)-\(span)"
        case "series":
            table = UsageSeries(trail: trail, fromMs: query.fromMs, toMs: query.toMs, feature: query.feature, buckets: query.buckets).table
            name = "seats-in-use-\(span)"
        case "compliance":
            table = ComplianceReport(trail: trail, fromMs: query.fromMs, toMs: query.toMs).table
            name = "compliance-\(span)"
        case "forecast":
            table = Forecast(trail: trail, atMs: query.toMs, months: query.months).table
            name = "forecast-\(query.months)-months-from-\(JSONText.iso8601(ms: query.toMs).prefix(10))"
        default:
            return Self.refusal("no such report", status: .notFound)
        }
        return Self.csv(table.render(.csv), filename: name + ".csv")
    }

    /// A table for the templates: its columns and rows of cell texts.
    static func tableValues(_ table: ReportTable) -> [String: Any] {
        var values: [String: Any] = [
            "columns": table.columns, "rows": table.rows.map { ["cells": $0.map(\.text)] as [String: Any] },
        ]
        if table.rows.isEmpty { values["empty"] = true }
        return values
    }

    static func csv(_ text: String, filename: String) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "text/csv; charset=utf-8"
        headers[.contentDisposition] = "attachment; filename=\"\(filename.filter { $0.isLetter || $0.isNumber || "-_.".contains($0) })\""
        headers[.cacheControl] = "no-store"
        headers[HTTPField.Name("X-Content-Type-Options")!] = "nosniff"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: text)))
    }
}
