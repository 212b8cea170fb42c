import LicenseAudit
import LicenseCore
import LicenseProtocol
import LicenseStore
import Logging

/// Utilisation thresholds (`ThresholdWatch`) as the server reports them.
extension LedgerHost {
    /// Looks at `features` after a change and reports every crossing: one log line, one audit
    /// record, a counter, and a THRESHOLD_CROSSED event to every subscribed session.
    func checkThresholds(_ features: Set<String>) {
        guard !self.thresholds.thresholds.isEmpty else { return }
        let now = self.nowMs
        for feature in features.sorted() {
            let inUse = self.ledger.seatsInUse(of: feature)
            let capacity = self.ledger.capacity(of: feature, at: now)
            guard let crossing = self.thresholds.observe(feature: feature, inUse: inUse, capacity: capacity) else { continue }
            let direction = crossing.up ? "up" : "down"
            self.logger.notice(
                "utilisation threshold \(crossing.up ? "crossed" : "cleared")",
                metadata: [
                    "feature": "\(feature)", "threshold": "\(crossing.threshold)", "in_use": "\(inUse)", "capacity": "\(crossing.capacity)",
                ]
            )
            self.audit(
                "threshold",
                actor: "server",
                subject: "feature:\(feature)",
                details: [
                    ("feature", .string(feature)), ("threshold_pct", .int(Int64(crossing.threshold))), ("direction", .string(direction)),
                    ("in_use", .int(Int64(inUse))), ("capacity", .int(Int64(crossing.capacity))),
                    ("utilisation_pct", .int(Int64(crossing.percent.rounded()))),
                ]
            )
            self.count(
                "licensed_threshold_crossings_total",
                [("feature", feature), ("threshold", "\(crossing.threshold)"), ("direction", direction)]
            )
            var event = Licensed_V1_Event()
            event.kind = .thresholdCrossed
            event.feature = feature
            event.message = crossing.message
            for session in self.subscribers { self.connections[session]?.push(event) }
        }
    }

    /// Adds the session to those told about crossings (auditor and above).
    func subscribe(session: SessionID) -> Result<Licensed_V1_SubscribeResponse, LicenseError> {
        self.subscribers.insert(session)
        var response = Licensed_V1_SubscribeResponse()
        response.thresholdsPercent = self.context.configuration.utilisationThresholds.map { UInt32($0) }
        response.levelsPercent = self.thresholds.levels
        return .success(response)
    }

    /// Features whose seats `changes` move.
    func featuresTouched(by changes: [LedgerChange], leases: EndedLeases) -> Set<String> {
        var features = Set<String>()
        for change in changes {
            switch change {
            case .granted(let lease): features.insert(lease.feature)
            case .released(let id, _, _):
                if let lease = leases[id] { features.insert(lease.feature) }
            default: break
            }
        }
        return features
    }
}
