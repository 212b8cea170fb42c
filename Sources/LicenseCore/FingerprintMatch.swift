public import LicenseProtocol

/// When is a machine the same machine: the activated fingerprint's component ids against the ones
/// presented now, under the licence's rule. A changed NIC or a new container id does not lose an
/// activation under MOST; a different machine matches nothing.
public enum FingerprintMatch {
    /// True when `presented` matches `bound` under `rule` (unspecified = MOST).
    public static func matches(bound: [String], presented: [String], rule: Licensed_V1_FingerprintMatch) -> Bool {
        let bound = Set(bound.map { $0.lowercased() })
        guard !bound.isEmpty else { return false }
        let common = bound.intersection(presented.map { $0.lowercased() }).count
        switch rule {
        case .any: return common >= 1
        case .two: return common >= min(2, bound.count)
        case .all: return common == bound.count
        default: return common * 2 > bound.count
        }
    }
}
