/// `licensectl report compliance`: per licence in force and feature, what was purchased against
/// the peak in use over the window; the shortfall (more in use than purchased) or the seats still
/// available, neither for UNLIMITED licences (as Flexera does); the true-up owed for TRUE_UP
/// licences; the status and the expiry date.
public struct ComplianceReport: Sendable {
    /// The licence's standing.
    public enum Status: String, Sendable {
        /// Within what was purchased and valid.
        case compliant = "COMPLIANT"
        /// A HARD licence with more in use than purchased (after a reload shrank it, say).
        case atRisk = "AT_RISK"
        /// Past its end date, inside the grace period.
        case expiring = "EXPIRING"
        /// Past its end date and grace period.
        case expired = "EXPIRED"
    }

    /// One licence and feature.
    public struct Row: Sendable, Equatable {
        public var license: String
        public var product: String
        /// HARD, TRUE_UP or UNLIMITED.
        public var policy: String
        public var feature: String
        /// Seats (floating) or activations (node-locked) purchased; nil for UNLIMITED.
        public var purchased: Int64?
        /// Most in use at once in the window (seats, or activations for node-locked licences).
        public var peak: Int64
        /// peak − purchased when positive (not for UNLIMITED).
        public var shortfall: Int64?
        /// purchased − peak when not negative (not for UNLIMITED).
        public var available: Int64?
        /// Seats owed at true-up: the shortfall of a TRUE_UP licence (0 when none; nil for other policies).
        public var trueUpOwed: Int64?
        public var status: Status
        /// End date (0 = none) and end of grace.
        public var notAfterMs: Int64
        public var graceEndsMs: Int64
    }

    public var fromMs: Int64
    public var toMs: Int64
    public var rows: [Row]

    /// Builds the report over [fromMs, toMs) for the licences in force at the window's end.
    public init(trail: UsageTrail, fromMs: Int64, toMs: Int64) {
        self.fromMs = fromMs
        self.toMs = toMs
        var rows: [Row] = []
        let at = toMs - 1
        for license in trail.licenses(at: at).sorted(by: { $0.id < $1.id }) {
            let nodeLocked = license.model == "NODE_LOCKED"
            let features: [(name: String, count: Int64)] =
                nodeLocked ? [(license.features.map(\.name).joined(separator: ","), license.maxActivations)] : license.features
            for entry in features {
                let peak =
                    nodeLocked
                    ? Self.activationPeak(trail, license: license.id, fromMs: fromMs, toMs: toMs)
                    : Self.seatPeak(trail, license: license.id, feature: entry.name, fromMs: fromMs, toMs: toMs)
                let unlimited = license.policy == "UNLIMITED" || (nodeLocked && entry.count == 0)
                var row = Row(
                    license: license.id,
                    product: license.product,
                    policy: license.policy,
                    feature: entry.name,
                    purchased: unlimited ? nil : entry.count,
                    peak: peak,
                    shortfall: nil,
                    available: nil,
                    trueUpOwed: nil,
                    status: .compliant,
                    notAfterMs: license.notAfterMs,
                    graceEndsMs: license.notAfterMs == 0 ? 0 : license.notAfterMs + license.graceMs
                )
                if !unlimited {
                    if peak > entry.count {
                        row.shortfall = peak - entry.count
                    } else {
                        row.available = entry.count - peak
                    }
                    if license.policy == "TRUE_UP" { row.trueUpOwed = row.shortfall ?? 0 }
                    if license.policy == "HARD", peak > entry.count { row.status = .atRisk }
                }
                if license.notAfterMs != 0, at > license.notAfterMs {
                    row.status = at > row.graceEndsMs ? .expired : .expiring
                }
                rows.append(row)
            }
        }
        self.rows = rows
    }

    /// Most seats of `feature` held at once from `license` in the window.
    static func seatPeak(_ trail: UsageTrail, license: String, feature: String, fromMs: Int64, toMs: Int64) -> Int64 {
        var events: [(Int64, Int64)] = []
        for span in trail.spans where span.license == license && span.feature == feature {
            let start = max(span.grantedMs, fromMs)
            let end = min(span.endMs ?? toMs, toMs)
            guard start < end else { continue }
            events.append((start, span.count))
            events.append((end, -span.count))
        }
        return Self.peak(events)
    }

    /// Most activations of `license` live at once in the window.
    static func activationPeak(_ trail: UsageTrail, license: String, fromMs: Int64, toMs: Int64) -> Int64 {
        var live: Int64 = 0
        var events: [(Int64, Int64)] = []
        for change in trail.activations where change.license == license {
            if change.timeMs < fromMs {
                live += Int64(change.delta)
            } else if change.timeMs < toMs {
                events.append((change.timeMs, Int64(change.delta)))
            }
        }
        events.insert((fromMs, live), at: 0)
        return Self.peak(events)
    }

    static func peak(_ events: [(Int64, Int64)]) -> Int64 {
        let sorted = events.sorted { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 < $1.1 }
        var current: Int64 = 0
        var peak: Int64 = 0
        for (_, delta) in sorted {
            current += delta
            peak = max(peak, current)
        }
        return peak
    }
}
