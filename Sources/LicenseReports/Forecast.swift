import Foundation

/// `licensectl report forecast --months N`: how many seats or activations will be needed after
/// N months, from the last 90 days of the trail, with the arithmetic shown.
///
/// Floating features: the peak of each of the three 30-day periods before the forecast date
/// (oldest p1, middle p2, latest p3) gives a growth of (p3 − p1) / 2 seats per month; needed =
/// p3 + growth × N, rounded up, never below p3.
///
/// Node-locked licences (the MaaS360 method): enrolments per month = activations made in the 90
/// days / 3; wastage per month = activations ended (deactivated, revoked or reclaimed) in the 90
/// days / 3; needed = active now + enrolments per month × N − wastage per month × N, rounded up,
/// never below zero.
public struct Forecast: Sendable {
    /// One forecast line.
    public struct Row: Sendable, Equatable {
        /// `feature:<name>` or `license:<id>`.
        public var subject: String
        /// Seats or activations in use now (p3 or active activations).
        public var current: Int64
        /// Licensed now (nil: unknown or unlimited).
        public var licensed: Int64?
        /// Needed after N months.
        public var needed: Int64
        /// needed − licensed when positive.
        public var toBuy: Int64?
        /// The calculation, spelled out.
        public var arithmetic: String
    }

    public var atMs: Int64
    public var months: Int
    public var rows: [Row]

    static let periodMs: Int64 = 30 * 86_400_000

    /// Forecasts `months` months after `atMs` from the 90 days before it.
    public init(trail: UsageTrail, atMs: Int64, months: Int) {
        self.atMs = atMs
        self.months = months
        var rows: [Row] = []
        let licenses = trail.licenses(at: atMs - 1)
        let start = atMs - 3 * Self.periodMs
        let features = Set(trail.spans.filter { ($0.endMs ?? atMs) > start && $0.grantedMs < atMs }.map(\.feature))
            .union(licenses.filter { $0.model != "NODE_LOCKED" }.flatMap { $0.features.map(\.name) })
        for feature in features.sorted() {
            let peaks = (0..<3).map { period -> Int64 in
                let from = start + Int64(period) * Self.periodMs
                return UsageReport(trail: trail, fromMs: from, toMs: from + Self.periodMs, by: .feature, feature: feature).rows.first?.peak
                    ?? 0
            }
            let growth = Double(peaks[2] - peaks[0]) / 2
            let exact = Double(peaks[2]) + growth * Double(months)
            let needed = max(peaks[2], Int64(exact.rounded(.up)))
            let (capacity, unlimited) = UsageReport.capacity(of: feature, in: licenses)
            let licensed = unlimited ? nil : capacity
            rows.append(
                Row(
                    subject: "feature:\(feature)",
                    current: peaks[2],
                    licensed: licensed,
                    needed: needed,
                    toBuy: licensed.map { needed > $0 ? needed - $0 : 0 },
                    arithmetic:
                        "30-day peaks \(peaks[0]), \(peaks[1]), \(peaks[2]); growth (\(peaks[2]) − \(peaks[0])) / 2 = \(Self.format(growth))/month; "
                        + "needed = \(peaks[2]) + \(Self.format(growth)) × \(months) = \(Self.format(exact)) → \(needed)"
                )
            )
        }
        for license in licenses.filter({ $0.model == "NODE_LOCKED" }).sorted(by: { $0.id < $1.id }) {
            let changes = trail.activations.filter { $0.license == license.id && $0.timeMs < atMs }
            let active = changes.reduce(Int64(0)) { $0 + Int64($1.delta) }
            let recent = changes.filter { $0.timeMs >= start }
            let enrolled = recent.filter { $0.delta > 0 }.count
            let ended = recent.filter { $0.delta < 0 }.count
            let enrolmentsPerMonth = Double(enrolled) / 3
            let wastagePerMonth = Double(ended) / 3
            let exact = Double(active) + enrolmentsPerMonth * Double(months) - wastagePerMonth * Double(months)
            let needed = max(0, Int64(exact.rounded(.up)))
            let licensed: Int64? = license.policy == "UNLIMITED" || license.maxActivations == 0 ? nil : license.maxActivations
            rows.append(
                Row(
                    subject: "license:\(license.id)",
                    current: active,
                    licensed: licensed,
                    needed: needed,
                    toBuy: licensed.map { needed > $0 ? needed - $0 : 0 },
                    arithmetic:
                        "enrolments \(enrolled) / 3 = \(Self.format(enrolmentsPerMonth))/month, wastage \(ended) / 3 = \(Self.format(wastagePerMonth))/month; "
                        + "needed = \(active) + \(Self.format(enrolmentsPerMonth)) × \(months) − \(Self.format(wastagePerMonth)) × \(months) = \(Self.format(exact)) → \(needed)"
                )
            )
        }
        self.rows = rows
    }

    /// A number with at most two decimals.
    static func format(_ value: Double) -> String {
        let hundredths = (value * 100).rounded()
        if hundredths.truncatingRemainder(dividingBy: 100) == 0 { return String(Int64(hundredths / 100)) }
        let text = String(format: "%.2f", value)
        return text.hasSuffix("0") ? String(text.dropLast()) : text
    }
}
