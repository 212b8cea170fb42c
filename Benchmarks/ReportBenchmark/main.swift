// Measures the reports at scale: writes an audit trail of N records (grants, releases and
// denials of 10 features by 500 users in 50 groups over 30 days, through AuditLog as the server
// writes them), then times reading it and each report, and `audit verify`.
// Usage: licensed-report-bench [RECORDS] [DIRECTORY] [compact|jsonl]
//        (build with -c release; a DIRECTORY given is kept; the trail's format, compact by default)
import Foundation
import LicenseAudit
import LicenseReports

let count = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 1_000_000 : 1_000_000
let directory = CommandLine.arguments.count > 2 ? CommandLine.arguments[2] : NSTemporaryDirectory() + "licensed-report-bench-\(getpid())"
try? FileManager.default.removeItem(atPath: directory)
// A directory given on the command line is kept, for `licensectl report … --dir` on it.
let keep = CommandLine.arguments.count > 2
let format = CommandLine.arguments.count > 3 ? AuditFormat(rawValue: CommandLine.arguments[3]) ?? .compact : .compact
defer { if !keep { try? FileManager.default.removeItem(atPath: directory) } }

func seconds(_ body: () throws -> Void) rethrows -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    try body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}

var generator = SystemRandomNumberGenerator()
let t0: Int64 = 1_793_577_600_000
let span: Int64 = 30 * 86_400_000
let step = span / Int64(count)
let features = (0..<10).map { "feature\($0)" }
var events: [AuditEvent] = []
events.reserveCapacity(count)
events.append(AuditEvent(timeMs: t0, action: "start", actor: "server"))
for (index, feature) in features.enumerated() {
    events.append(
        AuditEvent(
            timeMs: t0,
            action: "license",
            actor: "server",
            subject: "license:L\(index)",
            details: [
                ("license", .string("L\(index)")), ("product", .string("bench")), ("licensee", .string("Example")),
                ("model", .string("FLOATING")),
                ("policy", .string(index % 3 == 0 ? "TRUE_UP" : "HARD")), ("features", .strings(["\(feature)=200"])),
                ("max_activations", .int(0)), ("not_before_ms", .int(0)), ("not_after_ms", .int(t0 + 365 * 86_400_000)),
                ("grace_ms", .int(0)), ("trial_days", .int(0)), ("file", .string("bench.lic")),
            ]
        )
    )
}
var open: [(id: String, feature: String, user: Int)] = []
var next = 0
while events.count < count {
    let now = t0 + Int64(events.count) * step
    let roll = Int.random(in: 0..<100, using: &generator)
    if roll < 10 || (roll < 55 && open.count > 1500) {
        if !open.isEmpty {
            let index = Int.random(in: 0..<open.count, using: &generator)
            let lease = open.remove(at: index)
            events.append(
                AuditEvent(
                    timeMs: now,
                    action: roll % 7 == 0 ? "reclaim" : "checkin",
                    actor: "user\(lease.user)@host\(lease.user % 80)",
                    subject: "lease:\(lease.id)",
                    details: [
                        ("lease", .string(lease.id)), ("feature", .string(lease.feature)), ("license", .string("L")), ("count", .int(1)),
                        ("user", .string("user\(lease.user)")), ("host", .string("host\(lease.user % 80)")),
                        ("groups", .strings(["/g\(lease.user % 50)"])), ("granted_ms", .int(now)), ("held_ms", .int(0)),
                        ("cause", .string(roll % 7 == 0 ? "expired" : "checked_in")),
                    ]
                )
            )
            continue
        }
    }
    let user = Int.random(in: 0..<500, using: &generator)
    let feature = features[Int.random(in: 0..<features.count, using: &generator)]
    if roll >= 90 {
        events.append(
            AuditEvent(
                timeMs: now,
                action: "deny",
                actor: "user\(user)@host\(user % 80)",
                subject: "feature:\(feature)",
                details: [
                    ("feature", .string(feature)), ("count", .int(1)), ("code", .string(roll % 2 == 0 ? "NO_SEATS" : "DEADLINE_EXCEEDED")),
                    ("reason", .string("no seat free")), ("user", .string("user\(user)")), ("host", .string("host\(user % 80)")),
                    ("groups", .strings(["/g\(user % 50)"])),
                ]
            )
        )
        continue
    }
    next += 1
    let id = String(format: "%032x", next)
    open.append((id, feature, user))
    var details: [(String, AuditEvent.Value)] = [
        ("lease", .string(id)), ("feature", .string(feature)), ("license", .string("L\(features.firstIndex(of: feature)!)")),
        ("count", .int(1)), ("user", .string("user\(user)")), ("host", .string("host\(user % 80)")),
        ("groups", .strings(["/g\(user % 50)"])), ("granted_ms", .int(now)), ("expires_ms", .int(now + 120_000)),
        ("overage", .bool(roll % 11 == 0)), ("borrowed", .bool(false)),
    ]
    if roll % 5 == 0 { details.append(("waited_ms", .int(Int64(roll) * 100))) }
    events.append(AuditEvent(timeMs: now, action: "grant", actor: "user\(user)@host\(user % 80)", subject: "lease:\(id)", details: details))
}

let writeTime = try seconds {
    let log = try AuditLog.open(directory: directory, maxFileBytes: 64 * 1024 * 1024, syncs: false, format: format)
    var index = 0
    while index < events.count {
        let end = min(events.count, index + 1000)
        try log.write(Array(events[index..<end]))
        index = end
    }
    try log.sync()
    log.close()
}
let files = try AuditTrail.files(in: directory)
let bytes = files.reduce(0) { $0 + ((try? FileManager.default.attributesOfItem(atPath: $1.path)[.size] as? Int) ?? 0) }
print(
    String(
        format: "wrote %d audit records as %@ (%d files, %.0f MiB) in %.2f s",
        events.count,
        format.rawValue,
        files.count,
        Double(bytes) / 1_048_576,
        writeTime
    )
)

var trail = UsageTrail()
let readTime = try seconds { trail = try UsageTrail.read(files) }
print(String(format: "read the trail: %.2f s (%d leases, %d denials)", readTime, trail.spans.count, trail.denials.count))
for grouping in UsageReport.Grouping.allCases {
    var rows = 0
    let time = seconds { rows = UsageReport(trail: trail, fromMs: t0, toMs: t0 + span, by: grouping).table.render(.csv).count }
    print(String(format: "usage report by %@: %.2f s (%d bytes of CSV)", grouping.rawValue, time, rows))
}
let complianceTime = seconds { _ = ComplianceReport(trail: trail, fromMs: t0, toMs: t0 + span).table.render(.table) }
print(String(format: "compliance report: %.2f s", complianceTime))
let forecastTime = seconds { _ = Forecast(trail: trail, atMs: t0 + span, months: 6).table.render(.table) }
print(String(format: "forecast: %.2f s", forecastTime))
var total = 0.0
total = try seconds {
    let fresh = try UsageTrail.read(files)
    _ = UsageReport(trail: fresh, fromMs: t0, toMs: t0 + span, by: .feature).table.render(.table)
}
print(String(format: "read + usage report by feature, end to end: %.2f s", total))
var verification = AuditTrail.Verification()
let verifyTime = try seconds { verification = try AuditTrail.verify(files) }
print(
    String(format: "audit verify: %.2f s (%d records, %@)", verifyTime, verification.records, verification.failure == nil ? "OK" : "BROKEN")
)
