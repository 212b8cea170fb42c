import LicenseAudit
import LicenseCore
import LicenseProtocol
import LicenseStore
import Logging

/// Utilisation thresholds (`ThresholdWatch`) as the server reports them.
extension LedgerHost {
    /// Looks at `features` after a change and reports every crossing: one log line, one audit
    /// record, a counter, and a THRESHOLD_CROSSED event to every subscribed session.
    func checkThresholds(_ features: [String]) {
        guard !self.thresholds.thresholds.isEmpty, !features.isEmpty else { return }
        let now = self.nowMs
        // Read in place: `self.ledger.seatsInUse(…)` copied the whole ledger out of the host (and
        // released it) for each call, twice a change (`licensed-micro serve-thresholds`).
        for feature in features.count > 1 ? features.sorted() : features {
            let (inUse, capacity) = self.inPlace { ($0.seatsInUse(of: feature), $0.capacity(of: feature, at: now)) }
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

    /// Features whose seats `changes` move, each once (a change or two: a list, not a set).
    func featuresTouched(by changes: [LedgerChange], leases: EndedLeases) -> [String] {
        var features: [String] = []
        func add(_ feature: String) { if !features.contains(feature) { features.append(feature) } }
        for change in changes {
            switch change {
            case .granted(let lease): add(lease.feature)
            case .released(let id, _, _):
                if let feature = leases[id]?.feature { add(feature) }
            default: break
            }
        }
        return features
    }
}
