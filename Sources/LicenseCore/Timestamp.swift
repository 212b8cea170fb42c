import Foundation

/// Formatting of the protocol's epoch-millisecond times for people.
public enum Timestamp {
    /// `ms` as an ISO 8601 UTC time ("2026-11-24T22:17:43Z"); "never" for 0.
    public static func iso8601(_ ms: Int64) -> String {
        guard ms != 0 else { return "never" }
        let date = Date(timeIntervalSince1970: Double(ms) / 1000)
        return date.formatted(.iso8601)
    }
}
