/// Utilisation thresholds of each feature: the highest configured threshold (percent) its seats
/// in use reach, and when that level changes, a crossing to report.
struct ThresholdWatch {
    /// A change of a feature's level.
    struct Crossing: Equatable {
        var feature: String
        /// The threshold crossed: the new level going up, the previous one going down.
        var threshold: UInt32
        var up: Bool
        var inUse: UInt32
        var capacity: UInt32
        /// Utilisation now, percent.
        var percent: Double

        /// For a person.
        var message: String {
            self.up
                ? "'\(self.feature)' reached \(self.threshold)% of its capacity: \(self.inUse) of \(self.capacity) seats in use"
                : "'\(self.feature)' fell back below \(self.threshold)% of its capacity: \(self.inUse) of \(self.capacity) seats in use"
        }
    }

    /// The thresholds, percent.
    let thresholds: [Int]
    /// Per feature, the highest threshold reached (absent = below all).
    private(set) var levels: [String: UInt32] = [:]

    init(thresholds: [Int]) { self.thresholds = thresholds }

    /// The highest threshold (percent) `inUse` of `capacity` reaches; 0 below all and when the
    /// capacity is unlimited (nil) or zero.
    static func level(inUse: UInt32, capacity: UInt32?, thresholds: [Int]) -> UInt32 {
        guard let capacity, capacity > 0 else { return 0 }
        var level: UInt32 = 0
        for threshold in thresholds where UInt64(inUse) * 100 >= UInt64(threshold) * UInt64(capacity) {
            level = max(level, UInt32(threshold))
        }
        return level
    }

    /// Records `feature`'s seats now and returns the crossing, if its level changed.
    mutating func observe(feature: String, inUse: UInt32, capacity: UInt32?) -> Crossing? {
        let level = Self.level(inUse: inUse, capacity: capacity, thresholds: self.thresholds)
        let previous = self.levels[feature] ?? 0
        guard level != previous else { return nil }
        self.levels[feature] = level == 0 ? nil : level
        let up = level > previous
        let percent = capacity.map { $0 == 0 ? 0 : Double(inUse) * 100 / Double($0) } ?? 0
        return Crossing(feature: feature, threshold: up ? level : previous, up: up, inUse: inUse, capacity: capacity ?? 0, percent: percent)
    }
}
