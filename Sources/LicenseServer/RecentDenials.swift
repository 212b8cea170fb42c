/// Refused check-outs per feature over the last hour, in one-minute buckets (for status and the
/// console's dashboard; `licensed_denials_total` keeps the totals). A feature costs 60 buckets;
/// recording is one array store, counting one pass over them.
struct RecentDenials {
    static let minutes = 60

    private struct Buckets {
        /// The minute (since 1970) each slot counts, and its count.
        var minute = [Int64](repeating: -1, count: RecentDenials.minutes)
        var count = [UInt32](repeating: 0, count: RecentDenials.minutes)

        mutating func add(_ count: UInt32, slot: Int, minute: Int64) {
            if self.minute[slot] != minute {
                self.minute[slot] = minute
                self.count[slot] = 0
            }
            self.count[slot] &+= count
        }
    }

    private var features: [String: Buckets] = [:]

    /// Counts `count` refusals of `feature` at `nowMs`.
    mutating func record(_ feature: String, count: UInt32 = 1, at nowMs: Int64) {
        let minute = nowMs / 60_000
        let slot = Int(minute % Int64(Self.minutes))
        self.features[feature, default: Buckets()].add(count, slot: slot, minute: minute)
    }

    /// Refusals of `feature` in the hour up to `nowMs` (the current minute and the 59 before it).
    func lastHour(_ feature: String, at nowMs: Int64) -> UInt32 {
        guard let buckets = self.features[feature] else { return 0 }
        let minute = nowMs / 60_000
        var total: UInt32 = 0
        for slot in 0..<Self.minutes where buckets.minute[slot] > minute - Int64(Self.minutes) && buckets.minute[slot] <= minute {
            total &+= buckets.count[slot]
        }
        return total
    }
}
