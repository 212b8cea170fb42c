import LicenseCore
import LicenseProtocol
import LicenseStore
import Logging

/// Utilisation thresholds: after every change of seats, each feature touched is compared with the
/// configured thresholds; a change of level (the highest threshold reached) is one log line, one
/// audit record, a counter, and a THRESHOLD_CROSSED event to every subscribed session.
extension LedgerHost {
    /// The highest configured threshold (percent) `inUse` of `capacity` reaches; 0 below all.
    static func level(inUse: UInt32, capacity: UInt32?, thresholds: [Int]) -> UInt32 {
        guard let capacity, capacity > 0 else { return 0 }
        var level: UInt32 = 0
        for threshold in thresholds where UInt64(inUse) * 100 >= UInt64(threshold) * UInt64(capacity) {
            level = max(level, UInt32(threshold))
        }
        return level
    }

    /// Looks at `features` after a change and reports every crossing.
    func checkThresholds(_ features: Set<String>) {
        let thresholds = self.context.configuration.utilisationThresholds
        guard !thresholds.isEmpty else { return }
        let now = self.nowMs
        for feature in features.sorted() {
            let inUse = self.ledger.seatsInUse(of: feature)
            let capacity = self.ledger.capacity(of: feature, at: now)
            let level = Self.level(inUse: inUse, capacity: capacity, thresholds: thresholds)
            let previous = self.thresholdLevels[feature] ?? 0
            guard level != previous else { continue }
            self.thresholdLevels[feature] = level == 0 ? nil : level
            let up = level > previous
            let crossed = up ? level : previous
            let percent = capacity.map { $0 == 0 ? 0 : Double(inUse) * 100 / Double($0) } ?? 0
            let message =
                up
                ? "'\(feature)' reached \(crossed)% of its capacity: \(inUse) of \(capacity ?? 0) seats in use"
                : "'\(feature)' fell back below \(crossed)% of its capacity: \(inUse) of \(capacity ?? 0) seats in use"
            self.logger.notice(
                "utilisation threshold \(up ? "crossed" : "cleared")",
                metadata: [
                    "feature": "\(feature)", "threshold": "\(crossed)", "in_use": "\(inUse)", "capacity": "\(capacity ?? 0)",
                ]
            )
            self.audit(
                "threshold",
                actor: "server",
                subject: "feature:\(feature)",
                details: [
                    ("feature", .string(feature)), ("threshold_pct", .int(Int64(crossed))), ("direction", .string(up ? "up" : "down")),
                    ("in_use", .int(Int64(inUse))), ("capacity", .int(Int64(capacity ?? 0))),
                    ("utilisation_pct", .int(Int64(percent.rounded()))),
                ]
            )
            self.count(
                "licensed_threshold_crossings_total",
                [("feature", feature), ("threshold", "\(crossed)"), ("direction", up ? "up" : "down")]
            )
            var event = Licensed_V1_Event()
            event.kind = .thresholdCrossed
            event.feature = feature
            event.message = message
            for session in self.subscribers { self.connectionForEvents(session)?.push(event) }
        }
    }

    /// Adds the session to those told about crossings (auditor and above).
    func subscribe(session: SessionID) -> Result<Licensed_V1_SubscribeResponse, LicenseError> {
        self.subscribers.insert(session)
        var response = Licensed_V1_SubscribeResponse()
        response.thresholdsPercent = self.context.configuration.utilisationThresholds.map { UInt32($0) }
        response.levelsPercent = self.thresholdLevels
        return .success(response)
    }

    /// Features whose seats `changes` move.
    func featuresTouched(by changes: [LedgerChange], leases: [Lease]) -> Set<String> {
        var features = Set<String>()
        for change in changes {
            switch change {
            case .granted(let lease): features.insert(lease.feature)
            case .released(let id, _, _):
                if let lease = leases.first(where: { $0.id == id }) { features.insert(lease.feature) }
            default: break
            }
        }
        return features
    }
}
