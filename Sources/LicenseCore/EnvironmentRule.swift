/// Where a process runs, as a licence's `server_environments` and `client_environments` name it:
/// the kinds ("physical" or "virtual", and "container" when in one) and a description for a person
/// ("virtual machine (kvm), container (docker)"). `LicenseHost.HostEnvironment` detects it.
public struct EnvironmentReport: Sendable, Equatable {
    /// The kinds every one of which a licence must allow.
    public var kinds: [String]
    /// What was detected, for messages.
    public var description: String

    /// Creates a report.
    public init(kinds: [String], description: String) {
        self.kinds = kinds
        self.description = description
    }
}

/// The rule of `server_environments` and `client_environments`: empty allows anywhere; else every
/// kind detected must be listed (so "virtual" alone refuses a container on a virtual machine).
public enum EnvironmentRule {
    /// The kinds a licence may name.
    public static let kinds: Set<String> = ["physical", "virtual", "container"]

    /// Why `report` is not allowed by `allowed` (for `role`: "licence server", "node-locked
    /// activation"), or nil when it is. A report with no kinds (a client that did not say) is
    /// refused by any list.
    public static func refusal(_ report: EnvironmentReport, allowed: [String], role: String) -> String? {
        guard !allowed.isEmpty else { return nil }
        let allowedText = allowed.joined(separator: ", ")
        guard !report.kinds.isEmpty else {
            return "the licence allows a \(role) only on \(allowedText), and the environment was not reported (a client too old to say)"
        }
        let refused = report.kinds.filter { !allowed.contains($0) }
        guard !refused.isEmpty else { return nil }
        let detected = report.description.isEmpty ? report.kinds.joined(separator: ", ") : report.description
        return "the licence allows a \(role) only on \(allowedText); detected: \(detected) (\(refused.joined(separator: ", ")) not allowed)"
    }
}
