import Foundation
import LicenseAudit
import LicenseReports
import LicenseTestSupport
import Testing

/// Writes audit records as the server does (through `AuditLog`, into files) and reads them back
/// with `UsageTrail`, so the reports are tested on the real format.
struct TrailBuilder {
    var events: [AuditEvent] = []
    static let hour: Int64 = 3_600_000
    static let day: Int64 = 86_400_000

    mutating func license(
        _ id: String,
        policy: String,
        model: String = "FLOATING",
        features: [String],
        maxActivations: Int64 = 0,
        notAfterMs: Int64 = 0,
        graceMs: Int64 = 0,
        at: Int64
    ) {
        self.events.append(
            AuditEvent(
                timeMs: at,
                action: "license",
                actor: "server",
                subject: "license:\(id)",
                details: [
                    ("license", .string(id)), ("product", .string("p-\(id)")), ("licensee", .string("Example")), ("model", .string(model)),
                    ("policy", .string(policy)), ("features", .strings(features)), ("max_activations", .int(maxActivations)),
                    ("not_before_ms", .int(0)), ("not_after_ms", .int(notAfterMs)), ("grace_ms", .int(graceMs)), ("trial_days", .int(0)),
                    ("file", .string("t.lic")),
                ]
            )
        )
    }

    mutating func start(at: Int64) {
        self.events.append(AuditEvent(timeMs: at, action: "start", actor: "server"))
    }

    mutating func grant(
        _ lease: String,
        _ feature: String,
        user: String,
        host: String,
        groups: [String] = [],
        count: Int64 = 1,
        license: String = "L",
        overage: Bool = false,
        waitedMs: Int64? = nil,
        at: Int64
    ) {
        var details: [(String, AuditEvent.Value)] = [
            ("lease", .string(lease)), ("feature", .string(feature)), ("license", .string(license)), ("count", .int(count)),
            ("user", .string(user)), ("host", .string(host)), ("groups", .strings(groups)), ("granted_ms", .int(at)),
            ("expires_ms", .int(at + 120_000)), ("overage", .bool(overage)), ("borrowed", .bool(false)),
        ]
        if let waitedMs { details.append(("waited_ms", .int(waitedMs))) }
        self.events.append(AuditEvent(timeMs: at, action: "grant", actor: "\(user)@\(host)", subject: "lease:\(lease)", details: details))
    }

    mutating func release(_ lease: String, action: String = "checkin", cause: String = "checked_in", at: Int64) {
        self.events.append(
            AuditEvent(
                timeMs: at,
                action: action,
                actor: "x",
                subject: "lease:\(lease)",
                details: [("lease", .string(lease)), ("cause", .string(cause))]
            )
        )
    }

    mutating func deny(_ feature: String, user: String, host: String, groups: [String] = [], code: String, at: Int64) {
        self.events.append(
            AuditEvent(
                timeMs: at,
                action: "deny",
                actor: "\(user)@\(host)",
                subject: "feature:\(feature)",
                details: [
                    ("feature", .string(feature)), ("count", .int(1)), ("code", .string(code)), ("reason", .string("...")),
                    ("user", .string(user)), ("host", .string(host)), ("groups", .strings(groups)),
                ]
            )
        )
    }

    mutating func activation(_ id: String, license: String, ended: String? = nil, at: Int64) {
        if let ended {
            self.events.append(
                AuditEvent(
                    timeMs: at,
                    action: ended,
                    actor: "x",
                    subject: "activation:\(id)",
                    details: [("activation", .string(id)), ("cause", .string("x"))]
                )
            )
        } else {
            self.events.append(
                AuditEvent(
                    timeMs: at,
                    action: "activate",
                    actor: "x",
                    subject: "activation:\(id)",
                    details: [("activation", .string(id)), ("license", .string(license))]
                )
            )
        }
    }

    /// Writes the events (in time order) to a trail in `directory` and reads it back.
    func trail(in directory: String) throws -> UsageTrail {
        let log = try AuditLog.open(directory: directory, maxFileBytes: 1 << 20, syncs: false)
        let sorted = self.events.enumerated().sorted { ($0.element.timeMs, $0.offset) < ($1.element.timeMs, $1.offset) }.map(\.element)
        try log.write(sorted)
        try log.sync()
        log.close()
        return try UsageTrail.read(try AuditTrail.files(in: directory))
    }
}
