import Foundation
import LicenseAudit
import LicenseReports
import LicenseTestSupport
import Testing

@Suite("Reports from the audit trail")
struct ReportTests {
    /// 2026-11-02T00:00:00Z.
    static let d1: Int64 = 1_793_577_600_000
    static let h = TrailBuilder.hour
    static let m: Int64 = 60_000

    /// The usage scenario, worked out by hand in the tests below. Window: [D1, D1 + 2 days).
    static func usageTrail() -> TrailBuilder {
        var b = TrailBuilder()
        let d1 = Self.d1
        let d2 = d1 + TrailBuilder.day
        b.start(at: d1 - 48 * h)
        b.license("L", policy: "HARD", features: ["cad=2"], at: d1 - 48 * h)
        b.license("T", policy: "TRUE_UP", features: ["sim=1"], at: d1 - 48 * h)
        b.grant("a0", "cad", user: "alice", host: "ws1", groups: ["/eng"], at: d1 - h)  // before the window
        b.release("a0", at: d1 + h)
        b.grant("a1", "cad", user: "bob", host: "ws2", groups: ["/eng", "/eng/cfd"], at: d1 + 30 * m)
        b.release("a1", at: d1 + 150 * m)
        b.grant("a2", "cad", user: "carol", host: "ws3", at: d1 + 2 * h)
        b.release("a2", action: "reclaim", cause: "expired", at: d2 + 2 * h)
        b.deny("cad", user: "bob", host: "ws2", groups: ["/eng", "/eng/cfd"], code: "NO_SEATS", at: d1 + 135 * m)
        b.deny("cad", user: "dave", host: "ws4", code: "DEADLINE_EXCEEDED", at: d1 + 140 * m)
        b.grant("a3", "cad", user: "alice", host: "ws1", groups: ["/eng"], waitedMs: 1_500, at: d1 + 150 * m)  // as a1 returns
        b.release("a3", at: d1 + 3 * h)
        b.grant("s1", "sim", user: "bob", host: "ws5", groups: ["/eng", "/eng/cfd"], license: "T", at: d2 + 10 * h)  // still held
        b.grant("s2", "sim", user: "carol", host: "ws3", license: "T", overage: true, waitedMs: 4_000, at: d2 + 12 * h)
        b.release("s2", at: d2 + 13 * h)
        b.grant("a4", "cad", user: "dave", host: "ws4", count: 2, at: d2 + 20 * h)
        b.release("a4", at: d2 + 25 * h)  // after the window
        b.grant("a5", "cad", user: "erin", host: "ws6", at: d2 + 29 * h)  // after the window
        b.deny("cad", user: "erin", host: "ws6", code: "NO_SEATS", at: d2 + 29 * h)  // after the window
        return b
    }

    static func report(_ grouping: UsageReport.Grouping) throws -> UsageReport {
        let scratch = try TemporaryDirectory()
        let trail = try Self.usageTrail().trail(in: scratch.path("audit"))
        return UsageReport(trail: trail, fromMs: d1, toMs: d1 + 2 * TrailBuilder.day, by: grouping)
    }

    /// A row as (key, checkouts, seat-seconds, peak, peak time, denials, waits, p50, p95, overage seat-seconds).
    typealias Expected = (String, Int, Int64, Int64, String, [String: Int], Int, Int64?, Int64?, Int64)

    static func check(_ report: UsageReport, _ expected: [Expected]) {
        #expect(report.rows.map(\.key) == expected.map(\.0))
        for (row, want) in zip(report.rows, expected) {
            #expect(row.checkouts == want.1, "\(want.0) checkouts")
            #expect(row.seatMs == want.2 * 1000, "\(want.0) seat-seconds")
            #expect(row.peak == want.3, "\(want.0) peak")
            #expect(row.peakAtMs.map { JSONText.iso8601(ms: $0) } == want.4, "\(want.0) peak time")
            #expect(row.denials == want.5, "\(want.0) denials")
            #expect(row.queueWaits == want.6, "\(want.0) queue waits")
            #expect(row.waitP50Ms == want.7, "\(want.0) p50")
            #expect(row.waitP95Ms == want.8, "\(want.0) p95")
            #expect(row.overageSeatMs == want.9 * 1000, "\(want.0) overage")
        }
    }

    @Test("by feature: check-outs, seat-hours, exact peak, denials by reason, waits, overage, utilisation and band")
    func byFeature() throws {
        let report = try Self.report(.feature)
        // cad: a0 1 h in the window (granted before it, so not a check-out), a1 2 h, a2 22 h + 2 h, a3 30 min, a4 2 seats × 4 h.
        // sim: s1 14 h (still held at the end), s2 1 h of overage.
        Self.check(
            report,
            [
                (
                    "cad", 4, 3_600 + 7_200 + 86_400 + 1_800 + 28_800, 2, "2026-11-02T00:30:00.000Z",
                    ["NO_SEATS": 1, "DEADLINE_EXCEEDED": 1],
                    1, 1_500, 1_500, 0
                ),
                ("sim", 2, 50_400 + 3_600, 2, "2026-11-03T12:00:00.000Z", [:], 1, 4_000, 4_000, 3_600),
            ]
        )
        #expect(report.rows[0].seatHours == 35.5)
        #expect(report.rows[0].capacity == 2)
        #expect(report.rows[0].utilisation == 1.0)
        #expect(report.rows[0].band == .full)
        #expect(report.rows[1].capacity == 1)
        #expect(report.rows[1].utilisation == 2.0)
        #expect(report.rows[1].band == .over)
        #expect(report.rows[1].overageSeatHours == 1)
    }

    @Test("by user, host and group: a lease counts for each of its groups; no group is (none)")
    func byUserHostGroup() throws {
        Self.check(
            try Self.report(.user),
            [
                ("alice", 1, 3_600 + 1_800, 1, "2026-11-02T00:00:00.000Z", [:], 1, 1_500, 1_500, 0),
                ("bob", 2, 7_200 + 50_400, 1, "2026-11-02T00:30:00.000Z", ["NO_SEATS": 1], 0, nil, nil, 0),
                ("carol", 2, 86_400 + 3_600, 1, "2026-11-02T02:00:00.000Z", [:], 1, 4_000, 4_000, 3_600),
                ("dave", 1, 28_800, 2, "2026-11-03T20:00:00.000Z", ["DEADLINE_EXCEEDED": 1], 0, nil, nil, 0),
            ]
        )
        Self.check(
            try Self.report(.host),
            [
                ("ws1", 1, 5_400, 1, "2026-11-02T00:00:00.000Z", [:], 1, 1_500, 1_500, 0),
                ("ws2", 1, 7_200, 1, "2026-11-02T00:30:00.000Z", ["NO_SEATS": 1], 0, nil, nil, 0),
                ("ws3", 2, 90_000, 1, "2026-11-02T02:00:00.000Z", [:], 1, 4_000, 4_000, 3_600),
                ("ws4", 1, 28_800, 2, "2026-11-03T20:00:00.000Z", ["DEADLINE_EXCEEDED": 1], 0, nil, nil, 0),
                ("ws5", 1, 50_400, 1, "2026-11-03T10:00:00.000Z", [:], 0, nil, nil, 0),
            ]
        )
        Self.check(
            try Self.report(.group),
            [
                ("(none)", 3, 86_400 + 3_600 + 28_800, 2, "2026-11-03T20:00:00.000Z", ["DEADLINE_EXCEEDED": 1], 1, 4_000, 4_000, 3_600),
                ("/eng", 3, 3_600 + 7_200 + 1_800 + 50_400, 2, "2026-11-02T00:30:00.000Z", ["NO_SEATS": 1], 1, 1_500, 1_500, 0),
                ("/eng/cfd", 2, 7_200 + 50_400, 1, "2026-11-02T00:30:00.000Z", ["NO_SEATS": 1], 0, nil, nil, 0),
            ]
        )
    }

    @Test("by day: a lease over midnight is split at it; check-outs count on the day of the grant")
    func byDay() throws {
        let report = try Self.report(.day)
        Self.check(
            report,
            [
                (
                    "2026-11-02", 3, 3_600 + 7_200 + 79_200 + 1_800, 2, "2026-11-02T00:30:00.000Z",
                    ["NO_SEATS": 1, "DEADLINE_EXCEEDED": 1], 1, 1_500, 1_500, 0
                ),
                ("2026-11-03", 3, 7_200 + 50_400 + 3_600 + 28_800, 3, "2026-11-03T20:00:00.000Z", [:], 1, 4_000, 4_000, 3_600),
            ]
        )
        #expect(report.rows.allSatisfy { $0.capacity == nil })
        // Limited to one feature, days get its capacity and utilisation.
        let scratch = try TemporaryDirectory()
        let trail = try Self.usageTrail().trail(in: scratch.path("audit"))
        let cad = UsageReport(trail: trail, fromMs: Self.d1, toMs: Self.d1 + 2 * TrailBuilder.day, by: .day, feature: "cad")
        #expect(cad.rows.map(\.peak) == [2, 2])
        #expect(cad.rows.map(\.seatMs) == [91_800_000, 36_000_000])
        #expect(cad.rows.map(\.band) == [.full, .full])
    }

    @Test("the three formats carry the same figures")
    func formats() throws {
        let table = try Self.report(.feature).table
        let csv = table.render(.csv)
        let lines = csv.split(separator: "\r\n").map(String.init)
        #expect(
            lines[0]
                == "feature,checkouts,seat_hours,seat_seconds,peak,peak_at,denials,denials_by_reason,queue_waits,wait_p50_ms,wait_p95_ms,overage_seat_hours,capacity,utilisation_pct,band,assessment"
        )
        #expect(
            lines[1]
                == "cad,4,35.500,127800,2,2026-11-02T00:30:00.000Z,2,DEADLINE_EXCEEDED=1;NO_SEATS=1,1,1500,1500,0.000,2,100.0,100%,full"
        )
        #expect(lines[2] == "sim,2,15.000,54000,2,2026-11-03T12:00:00.000Z,0,,1,4000,4000,1.000,1,200.0,>100%,over")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(table.render(.json).utf8)) as? [[String: Any]])
        #expect(json.count == 2)
        #expect(json[0]["feature"] as? String == "cad")
        #expect(json[0]["seat_seconds"] as? Int == 127_800)
        #expect(json[0]["seat_hours"] as? Double == 35.5)
        #expect(json[0]["peak"] as? Int == 2)
        #expect(json[0]["denials_by_reason"] as? String == "DEADLINE_EXCEEDED=1;NO_SEATS=1")
        #expect(json[1]["utilisation_pct"] as? Double == 200)
        #expect(json[1]["band"] as? String == ">100%")
        let text = table.render(.table).split(separator: "\n").map(String.init)
        #expect(text.count == 3)
        #expect(text[1].hasPrefix("cad      4          35.500      127800        2     2026-11-02T00:30:00.000Z"))
    }

    @Test("every grouping in every format: the CSV and JSON cells are the row's figures, the table has a line per row")
    func everyGroupingAndFormat() throws {
        for grouping in UsageReport.Grouping.allCases {
            let report = try Self.report(grouping)
            let table = report.table
            let csv = try AuditCSV.parseRows(table.render(.csv))
            #expect(csv.count == report.rows.count + 1)
            #expect(csv[0].first == grouping.rawValue)
            let json = try #require(try JSONSerialization.jsonObject(with: Data(table.render(.json).utf8)) as? [[String: Any]])
            #expect(json.count == report.rows.count)
            let text = table.render(.table).split(separator: "\n")
            #expect(text.count == report.rows.count + 1)
            for (index, row) in report.rows.enumerated() {
                let cells = Dictionary(uniqueKeysWithValues: zip(csv[0], csv[index + 1]))
                let object = json[index]
                #expect(cells[grouping.rawValue] == row.key)
                #expect(object[grouping.rawValue] as? String == row.key)
                #expect(text[index + 1].hasPrefix(row.key))
                #expect(cells["checkouts"] == String(row.checkouts))
                #expect(object["checkouts"] as? Int == row.checkouts)
                #expect(cells["seat_seconds"] == String(row.seatMs / 1000))
                #expect(object["seat_seconds"] as? Int64 == row.seatMs / 1000)
                #expect(cells["seat_hours"] == String(format: "%.3f", row.seatHours))
                #expect(cells["peak"] == String(row.peak))
                #expect(object["peak"] as? Int64 == row.peak)
                #expect(cells["peak_at"] == row.peakAtMs.map { JSONText.iso8601(ms: $0) } ?? "")
                #expect(cells["denials"] == String(row.totalDenials))
                #expect(object["queue_waits"] as? Int == row.queueWaits)
                #expect(cells["wait_p95_ms"] == row.waitP95Ms.map(String.init) ?? "")
                #expect(object["wait_p50_ms"] as? Int64 == row.waitP50Ms)
                #expect(cells["overage_seat_hours"] == String(format: "%.3f", row.overageSeatHours))
            }
        }
    }

    @Test("compliance: a licence of each policy over what was purchased, an expiring, an expired and a node-locked one")
    func compliance() throws {
        let scratch = try TemporaryDirectory()
        var b = TrailBuilder()
        let t = Self.d1
        let day = TrailBuilder.day
        let (h, m) = (Self.h, Self.m)
        b.start(at: t)
        b.license("H", policy: "HARD", features: ["cad=2"], notAfterMs: t + 400 * day, at: t)
        b.license("T", policy: "TRUE_UP", features: ["sim=1"], notAfterMs: t + 400 * day, at: t)
        b.license("U", policy: "UNLIMITED", features: ["view=5"], at: t)
        b.license("E", policy: "HARD", features: ["old=4"], notAfterMs: t + 5 * day, graceMs: 10 * day, at: t)
        b.license("X", policy: "TRUE_UP", features: ["gone=4"], notAfterMs: t + 2 * day, graceMs: 1 * day, at: t)
        b.license("N", policy: "HARD", model: "NODE_LOCKED", features: ["viewer=0"], maxActivations: 2, at: t)
        for i in 0..<3 {  // three of each floating feature at once
            b.grant("h\(i)", "cad", user: "u\(i)", host: "h", license: "H", at: t + h)
            b.grant("t\(i)", "sim", user: "u\(i)", host: "h", license: "T", overage: i > 0, at: t + h)
        }
        for i in 0..<7 { b.grant("v\(i)", "view", user: "u\(i)", host: "h", license: "U", at: t + h) }
        b.grant("o1", "old", user: "u", host: "h", license: "E", at: t + h)
        for i in 0..<3 { b.activation("act\(i)", license: "N", at: t + h + Int64(i) * m) }
        b.activation("act0", license: "N", ended: "deactivate", at: t + 2 * h)
        let trail = try b.trail(in: scratch.path("audit"))
        let report = ComplianceReport(trail: trail, fromMs: t, toMs: t + 8 * day)
        let rows = Dictionary(uniqueKeysWithValues: report.rows.map { ($0.license, $0) })
        #expect(report.rows.map(\.license) == ["E", "H", "N", "T", "U", "X"])
        // HARD over its count (after a reload shrank it, say): a shortfall, AT_RISK, no true-up.
        #expect(rows["H"]!.purchased == 2)
        #expect(rows["H"]!.peak == 3)
        #expect(rows["H"]!.shortfall == 1)
        #expect(rows["H"]!.available == nil)
        #expect(rows["H"]!.trueUpOwed == nil)
        #expect(rows["H"]!.status == .atRisk)
        // TRUE_UP over its count: compliant, and the shortfall is owed at true-up.
        #expect(rows["T"]!.peak == 3)
        #expect(rows["T"]!.shortfall == 2)
        #expect(rows["T"]!.trueUpOwed == 2)
        #expect(rows["T"]!.status == .compliant)
        // UNLIMITED: neither shortfall nor availability.
        #expect(rows["U"]!.peak == 7)
        #expect(rows["U"]!.purchased == nil)
        #expect(rows["U"]!.shortfall == nil)
        #expect(rows["U"]!.available == nil)
        #expect(rows["U"]!.status == .compliant)
        // Past its end date: inside the grace period, then beyond it.
        #expect(rows["E"]!.status == .expiring)
        #expect(rows["E"]!.available == 3)
        #expect(rows["X"]!.status == .expired)
        #expect(rows["X"]!.trueUpOwed == 0)
        // Node-locked: activations against max_activations (3 at once, then one deactivated).
        #expect(rows["N"]!.purchased == 2)
        #expect(rows["N"]!.peak == 3)
        #expect(rows["N"]!.shortfall == 1)
        #expect(rows["N"]!.status == .atRisk)
        let csv = report.table.render(.csv).split(separator: "\r\n").map(String.init)
        #expect(csv[0] == "license,product,policy,feature,purchased,peak,shortfall,available,true_up_owed,status,expires")
        #expect(csv.contains("U,p-U,UNLIMITED,view,unlimited,7,,,,COMPLIANT,never"))
        #expect(csv.contains("T,p-T,TRUE_UP,sim,1,3,2,,2,COMPLIANT,2027-12-07"))
    }

    @Test("forecast: worked by hand for a floating feature and for activations (the MaaS360 method)")
    func forecast() throws {
        let scratch = try TemporaryDirectory()
        var b = TrailBuilder()
        let day = TrailBuilder.day
        let at = Self.d1 + 200 * day
        let start = at - 90 * day
        b.start(at: start - 100 * day)
        b.license("F", policy: "HARD", features: ["cad=8"], at: start - 100 * day)
        b.license("N", policy: "HARD", model: "NODE_LOCKED", features: ["viewer=0"], maxActivations: 10, at: start - 100 * day)
        // 30-day peaks of cad: 2, then 3, then 5.
        for (period, seats) in [(0, 2), (1, 3), (2, 5)] {
            for seat in 0..<seats {
                let id = "p\(period)s\(seat)"
                b.grant(id, "cad", user: "u", host: "h", license: "F", at: start + Int64(period) * 30 * day + day)
                b.release(id, at: start + Int64(period) * 30 * day + 2 * day)
            }
        }
        // Activations: 2 long before the 90 days; 9 within them, 3 of which ended within them.
        b.activation("old1", license: "N", at: start - 50 * day)
        b.activation("old2", license: "N", at: start - 40 * day)
        for i in 0..<9 { b.activation("new\(i)", license: "N", at: start + Int64(i) * 9 * day) }
        b.activation("new0", license: "N", ended: "deactivate", at: start + 20 * day)
        b.activation("old1", license: "N", ended: "reclaim_activation", at: start + 30 * day)
        b.activation("new3", license: "N", ended: "revoke_activation", at: start + 60 * day)
        let trail = try b.trail(in: scratch.path("audit"))

        let forecast = Forecast(trail: trail, atMs: at, months: 4)
        let cad = try #require(forecast.rows.first { $0.subject == "feature:cad" })
        // growth = (5 − 2) / 2 = 1.5 seats a month; needed = 5 + 1.5 × 4 = 11; 8 licensed, so 3 to buy.
        #expect(cad.current == 5)
        #expect(cad.needed == 11)
        #expect(cad.licensed == 8)
        #expect(cad.toBuy == 3)
        #expect(cad.arithmetic == "30-day peaks 2, 3, 5; growth (5 − 2) / 2 = 1.5/month; needed = 5 + 1.5 × 4 = 11 → 11")

        let six = Forecast(trail: trail, atMs: at, months: 6)
        let viewer = try #require(six.rows.first { $0.subject == "license:N" })
        // Active now 2 + 9 − 3 = 8; enrolments 9 / 3 = 3 a month; wastage 3 / 3 = 1 a month;
        // needed = 8 + 3 × 6 − 1 × 6 = 20; 10 licensed, so 10 to buy.
        #expect(viewer.current == 8)
        #expect(viewer.needed == 20)
        #expect(viewer.toBuy == 10)
        #expect(viewer.arithmetic == "enrolments 9 / 3 = 3/month, wastage 3 / 3 = 1/month; needed = 8 + 3 × 6 − 1 × 6 = 20 → 20")
    }
}

@Suite("Seats in use over time (the console's chart)")
struct UsageSeriesTests {
    static let d1 = ReportTests.d1
    static let h = TrailBuilder.hour

    @Test("hourly buckets of one feature: exact peak and average per hour, releases before grants at an instant, the capacity")
    func oneFeature() throws {
        let scratch = try TemporaryDirectory()
        let trail = try ReportTests.usageTrail().trail(in: scratch.path("audit"))
        let series = UsageSeries(trail: trail, fromMs: Self.d1, toMs: Self.d1 + 48 * Self.h, feature: "cad", buckets: 48)
        #expect(series.points.count == 48)
        #expect(series.points.map(\.startMs) == (0..<48).map { Self.d1 + Int64($0) * Self.h })
        // 00:00–01:00: a0 (granted before the window) all hour, a1 from 00:30.
        #expect(series.points[0].peak == 2)
        #expect(series.points[0].average == 1.5)
        // 01:00–02:00: a0 released at 01:00 sharp, so only a1.
        #expect(series.points[1].peak == 1)
        #expect(series.points[1].average == 1)
        // 02:00–03:00: a2 and a1, then at 02:30 a1 returns as a3 takes its seat: never 3.
        #expect(series.points[2].peak == 2)
        #expect(series.points[2].average == 2)
        #expect(series.points[3].peak == 1)
        #expect(series.points[26].peak == 0)  // a2 reclaimed at 02:00 on day 2
        #expect(series.points[44].peak == 2)  // a4 holds 2 seats
        #expect(series.points[44].average == 2)
        #expect(series.peak == 2)
        #expect(series.peakAtMs == Self.d1 + 30 * ReportTests.m)
        #expect(series.capacity == 2)
        // The chart agrees with the usage report's peak.
        let report = UsageReport(trail: trail, fromMs: Self.d1, toMs: Self.d1 + 48 * Self.h, by: .feature, feature: "cad")
        #expect(report.rows.first?.peak == series.peak)
        #expect(report.rows.first?.peakAtMs == series.peakAtMs)
    }

    @Test("every feature summed, with the summed capacity; the table has a row per bucket")
    func allFeatures() throws {
        let scratch = try TemporaryDirectory()
        let trail = try ReportTests.usageTrail().trail(in: scratch.path("audit"))
        let series = UsageSeries(trail: trail, fromMs: Self.d1, toMs: Self.d1 + 48 * Self.h, buckets: 24)
        #expect(series.points.count == 24)
        #expect(series.capacity == 3)
        // 2-hour buckets; 36:00–38:00 holds s1 and, for an hour, s2.
        #expect(series.points[18].peak == 2)
        #expect(series.points[18].average == 1.5)
        let csv = series.table.render(.csv)
        #expect(csv.hasPrefix("from,to,peak,average,capacity\r\n"))
        #expect(csv.split(separator: "\r\n").count == 25)
    }
}
