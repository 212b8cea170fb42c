import LicenseAudit

/// `licensectl report usage`: per feature, user, group, host or day over a time window —
/// check-outs, seat-hours, exact peak concurrency, denials by reason, queue waits, overage
/// seat-hours and, per feature, utilisation of the capacity in force at the window's end.
public struct UsageReport: Sendable {
    /// What rows are.
    public enum Grouping: String, Sendable, CaseIterable {
        case feature, user, group, host, day
    }

    /// How full a feature ran at its peak.
    public enum Band: String, Sendable {
        /// Peak below 90% of capacity: seats to spare.
        case underused = "<90%"
        /// 90% up to (not including) 100%.
        case efficient = "90-100%"
        /// Exactly at capacity.
        case full = "100%"
        /// Beyond capacity (TRUE_UP overage).
        case over = ">100%"

        /// One word for it.
        public var assessment: String {
            switch self {
            case .underused: "underused"
            case .efficient: "efficient"
            case .full: "full"
            case .over: "over"
            }
        }

        /// The band of `utilisation` (peak / capacity).
        public init(utilisation: Double) {
            if utilisation > 1 {
                self = .over
            } else if utilisation == 1 {
                self = .full
            } else if utilisation >= 0.9 {
                self = .efficient
            } else {
                self = .underused
            }
        }
    }

    /// One group's figures.
    public struct Row: Sendable, Equatable {
        /// The feature, user, group, host or day (YYYY-MM-DD).
        public var key: String
        /// Grants made in the window.
        public var checkouts = 0
        /// Seat-milliseconds held in the window (seats × time).
        public var seatMs: Int64 = 0
        /// Most seats held at once in the window, and when first reached.
        public var peak: Int64 = 0
        public var peakAtMs: Int64?
        /// Denials in the window by protocol code.
        public var denials: [String: Int] = [:]
        /// Grants that had waited in the queue, and their waits' median and 95th percentile (nearest rank).
        public var queueWaits = 0
        public var waitP50Ms: Int64?
        public var waitP95Ms: Int64?
        /// Seat-milliseconds of leases granted as overage.
        public var overageSeatMs: Int64 = 0
        /// Seats licensed (feature rows only; nil = unknown or unlimited).
        public var capacity: Int64?
        /// True when a licence in force grants the feature without limit.
        public var unlimited = false
        /// peak / capacity.
        public var utilisation: Double?
        /// Its band.
        public var band: Band?

        public var seatHours: Double { Double(self.seatMs) / 3_600_000 }
        public var overageSeatHours: Double { Double(self.overageSeatMs) / 3_600_000 }
        public var totalDenials: Int { self.denials.values.reduce(0, +) }
    }

    /// The window: from (inclusive) to (exclusive), ms since 1970.
    public var fromMs: Int64
    public var toMs: Int64
    public var grouping: Grouping
    /// Rows in key order.
    public var rows: [Row]

    /// Builds the report from `trail` for [fromMs, toMs). Leases still held count up to `toMs`.
    /// `feature` limits it to one feature.
    public init(trail: UsageTrail, fromMs: Int64, toMs: Int64, by grouping: Grouping, feature: String? = nil) {
        self.fromMs = fromMs
        self.toMs = toMs
        self.grouping = grouping
        // Each group's share: its clipped spans and its denials, in a window of its own (a day's for days).
        struct Group {
            var windowFrom: Int64
            var windowTo: Int64
            var spans: [(span: UsageTrail.Span, start: Int64, end: Int64)] = []
            var denials: [UsageTrail.Denial] = []
        }
        var groups: [String: Group] = [:]
        func keys(user: String, host: String, feature: String, groups: [String]) -> [String] {
            switch grouping {
            case .feature: [feature]
            case .user: [user]
            case .host: [host]
            case .group: groups.isEmpty ? ["(none)"] : groups
            case .day: []
            }
        }
        for span in trail.spans where feature == nil || span.feature == feature {
            let start = max(span.grantedMs, fromMs)
            let end = min(span.endMs ?? toMs, toMs)
            guard start < end || (span.grantedMs >= fromMs && span.grantedMs < toMs) else { continue }
            if grouping == .day {
                var day = Self.dayStart(start)
                while day < max(end, start + 1) {
                    let dayEnd = day + 86_400_000
                    let key = JSONText.iso8601(ms: day).prefix(10)
                    let clippedStart = max(start, day)
                    let clippedEnd = min(end, dayEnd)
                    if clippedStart < clippedEnd || (span.grantedMs >= day && span.grantedMs < dayEnd) {
                        groups[String(key), default: Group(windowFrom: max(day, fromMs), windowTo: min(dayEnd, toMs))].spans.append(
                            (span, clippedStart, max(clippedStart, clippedEnd))
                        )
                    }
                    day = dayEnd
                }
            } else {
                for key in keys(user: span.user, host: span.host, feature: span.feature, groups: span.groups) {
                    groups[key, default: Group(windowFrom: fromMs, windowTo: toMs)].spans.append((span, start, max(start, end)))
                }
            }
        }
        for denial in trail.denials where denial.timeMs >= fromMs && denial.timeMs < toMs && (feature == nil || denial.feature == feature) {
            if grouping == .day {
                let day = Self.dayStart(denial.timeMs)
                let key = String(JSONText.iso8601(ms: day).prefix(10))
                groups[key, default: Group(windowFrom: max(day, fromMs), windowTo: min(day + 86_400_000, toMs))].denials.append(denial)
            } else {
                for key in keys(user: denial.user, host: denial.host, feature: denial.feature, groups: denial.groups) {
                    groups[key, default: Group(windowFrom: fromMs, windowTo: toMs)].denials.append(denial)
                }
            }
        }
        let licenses = trail.licenses(at: toMs - 1)
        self.rows = groups.keys.sorted().map { key in
            let group = groups[key]!
            var row = Row(key: key)
            var events: [(time: Int64, delta: Int64)] = []
            var waits: [Int64] = []
            for (span, start, end) in group.spans {
                if span.grantedMs >= group.windowFrom && span.grantedMs < group.windowTo {
                    row.checkouts += 1
                    if let waited = span.waitedMs {
                        waits.append(waited)
                    }
                }
                let held = (end - start) * span.count
                row.seatMs += held
                if span.overage { row.overageSeatMs += held }
                if start < end {
                    events.append((start, span.count))
                    events.append((end, -span.count))
                }
            }
            // Exact peak: releases at an instant come before grants at that instant.
            events.sort { $0.time != $1.time ? $0.time < $1.time : $0.delta < $1.delta }
            var current: Int64 = 0
            for event in events {
                current += event.delta
                if current > row.peak {
                    row.peak = current
                    row.peakAtMs = event.time
                }
            }
            for denial in group.denials { row.denials[denial.code, default: 0] += 1 }
            waits.sort()
            row.queueWaits = waits.count
            row.waitP50Ms = Self.percentile(waits, 0.50)
            row.waitP95Ms = Self.percentile(waits, 0.95)
            let capacityFeature: String? = grouping == .feature ? key : feature
            if let capacityFeature {
                let (capacity, unlimited) = Self.capacity(of: capacityFeature, in: licenses)
                row.unlimited = unlimited
                if !unlimited, let capacity, capacity > 0 {
                    row.capacity = capacity
                    row.utilisation = Double(row.peak) / Double(capacity)
                    row.band = Band(utilisation: row.utilisation!)
                }
            }
            return row
        }
    }

    /// Seats of `feature` the licences grant (nil when none does), and whether one grants it without limit.
    static func capacity(of feature: String, in licenses: [UsageTrail.License]) -> (Int64?, Bool) {
        var total: Int64? = nil
        var unlimited = false
        for license in licenses where license.model != "NODE_LOCKED" {
            for entry in license.features where entry.name == feature {
                if license.policy == "UNLIMITED" { unlimited = true }
                total = (total ?? 0) + entry.count
            }
        }
        return (total, unlimited)
    }

    /// Nearest-rank percentile of sorted values.
    static func percentile(_ sorted: [Int64], _ p: Double) -> Int64? {
        guard !sorted.isEmpty else { return nil }
        let rank = Int((p * Double(sorted.count)).rounded(.up))
        return sorted[max(0, min(sorted.count - 1, rank - 1))]
    }

    static func dayStart(_ ms: Int64) -> Int64 {
        let day = ms >= 0 ? ms / 86_400_000 : (ms - 86_399_999) / 86_400_000
        return day * 86_400_000
    }
}
