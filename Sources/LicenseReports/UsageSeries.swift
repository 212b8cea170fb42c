import LicenseAudit

/// Seats in use over time, for a chart: the window cut into equal buckets, each with the most
/// seats held at once in it (exact, as the usage report's peak) and the seats held on average;
/// with the capacity the licences give and the window's peak. Built from the same trail as the
/// usage report, so the chart and the table cannot disagree.
public struct UsageSeries: Sendable {
    /// One bucket of the window.
    public struct Point: Sendable, Equatable {
        /// [startMs, endMs).
        public var startMs: Int64
        public var endMs: Int64
        /// Most seats held at once in the bucket.
        public var peak: Int64
        /// Seat-time in the bucket divided by its length.
        public var average: Double
    }

    public var fromMs: Int64
    public var toMs: Int64
    /// Only this feature (nil: every floating feature, summed).
    public var feature: String?
    public var points: [Point]
    /// Seats the licences in force at the window's end give (nil: none, or unlimited).
    public var capacity: Int64?
    /// The window's peak and when it was first reached.
    public var peak: Int64
    public var peakAtMs: Int64?

    /// The series of [fromMs, toMs) in `buckets` buckets (at least 1), for `feature` or for all.
    public init(trail: UsageTrail, fromMs: Int64, toMs: Int64, feature: String? = nil, buckets: Int) {
        self.fromMs = fromMs
        self.toMs = toMs
        self.feature = feature
        let count = max(1, buckets)
        let width = max(1, (toMs - fromMs + Int64(count) - 1) / Int64(count))
        var events: [(time: Int64, delta: Int64)] = []
        for span in trail.spans where feature == nil || span.feature == feature {
            let start = max(span.grantedMs, fromMs)
            let end = min(span.endMs ?? toMs, toMs)
            guard start < end else { continue }
            events.append((start, span.count))
            events.append((end, -span.count))
        }
        // Releases at an instant come before grants at that instant (as the usage report's peak).
        events.sort { $0.time != $1.time ? $0.time < $1.time : $0.delta < $1.delta }
        var points: [Point] = []
        points.reserveCapacity(count)
        var level: Int64 = 0
        var next = 0
        var peak: Int64 = 0
        var peakAt: Int64?
        for index in 0..<count {
            let start = fromMs + Int64(index) * width
            let end = min(start + width, toMs)
            guard start < end else { break }
            // What changes at the bucket's first instant counts in it, releases first.
            func apply(_ event: (time: Int64, delta: Int64)) {
                level += event.delta
                if level > peak {
                    peak = level
                    peakAt = event.time
                }
            }
            while next < events.count, events[next].time <= start {
                apply(events[next])
                next += 1
            }
            var point = Point(startMs: start, endMs: end, peak: level, average: 0)
            var seatMs: Double = 0
            var cursor = start
            while next < events.count, events[next].time < end {
                let event = events[next]
                seatMs += Double(level) * Double(event.time - cursor)
                cursor = event.time
                apply(event)
                point.peak = max(point.peak, level)
                next += 1
            }
            seatMs += Double(level) * Double(end - cursor)
            point.average = seatMs / Double(end - start)
            points.append(point)
        }
        self.points = points
        self.peak = peak
        self.peakAtMs = peakAt
        let licenses = trail.licenses(at: toMs - 1)
        if let feature {
            let (capacity, unlimited) = UsageReport.capacity(of: feature, in: licenses)
            self.capacity = unlimited ? nil : capacity
        } else {
            let features = Set(licenses.filter { $0.model != "NODE_LOCKED" }.flatMap { $0.features.map(\.name) })
            var total: Int64 = 0
            var limited = !features.isEmpty
            for name in features {
                let (capacity, unlimited) = UsageReport.capacity(of: name, in: licenses)
                if unlimited { limited = false }
                total += capacity ?? 0
            }
            self.capacity = limited ? total : nil
        }
    }

    /// The series as a table: one row per bucket.
    public var table: ReportTable {
        ReportTable(
            columns: ["from", "to", "peak", "average", "capacity"],
            rows: self.points.map { point in
                [
                    .text(JSONText.iso8601(ms: point.startMs)), .text(JSONText.iso8601(ms: point.endMs)), .int(point.peak),
                    .number(point.average, decimals: 2), self.capacity.map { .int($0) } ?? .none,
                ]
            }
        )
    }
}
