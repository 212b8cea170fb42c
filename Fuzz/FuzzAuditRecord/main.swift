// libFuzzer target: the audit trail's reader, fed a file's bytes: each line through
// `AuditRecord.parse` (compact records and JSON lines) and the chain rules, as `audit verify` reads
// them.
//
// Checks: no crash; a compact record that reads is in its one spelling (its fields lay out to the
// line's own bytes, hash included) and its hash is judged alike from the line and from the fields;
// a JSON line that reads re-renders to a line that reads back to the same record.
import Foundation
import LicenseAudit
import LicenseCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzAuditRecord(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let bytes = Array(UnsafeRawBufferPointer(start: start, count: count))
    var chain = AuditTrail.ChainCheck()
    AuditTrail.forEachLine(in: bytes) { number, line in
        let parsed = AuditRecord.parse(line)
        if let parsed {
            let record = parsed.record
            if line.first == AuditCompact.marker {
                precondition(record.compactLine.map { $0[...] == line } == true, "a compact record read in another spelling")
                precondition(record.hashMatches == parsed.hashMatches, "a compact record's hash judged two ways")
            } else {
                let again = AuditRecord.parse(Array(record.line.utf8)[...], checkHash: false)
                precondition(again?.record == record, "a JSON line did not survive a re-rendering")
            }
        }
        _ = chain.check(parsed, file: "input", line: number)
        return true
    }
    return 0
}

@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>>>
) -> CInt {
    // `scripts/fuzz --seeds`: trails of both formats, written by the trail's own writer.
    if let directory = ProcessInfo.processInfo.environment["LICENSED_FUZZ_SEEDS"] {
        for format in AuditFormat.allCases {
            let scratch = NSTemporaryDirectory() + "/licensed-fuzz-audit-\(getpid())-\(format.rawValue)"
            try? FileManager.default.removeItem(atPath: scratch)
            let log = try! AuditLog.open(directory: scratch, maxFileBytes: 1 << 20, syncs: false, format: format)
            let lease = Lease(
                id: ID128(high: 0x0A1B_0000_0000_000A, low: 42),
                sessionID: ID128(high: 1, low: 2),
                feature: "cad",
                licenseID: "acme",
                count: 1,
                identity: ClientIdentity(user: "ada", host: "ws1", groups: ["/emea"]),
                grantedAtMs: 1_790_000_000_000,
                expiresAtMs: 1_790_000_060_000,
                ttlMs: 60_000,
                overage: false,
                fencingToken: 1,
                checkoutKey: []
            )
            try! log.write([
                AuditEvent(timeMs: 1_790_000_000_000, lease: AuditLeaseRecord(lease: lease, actor: nil, kind: .grant(waitedMs: 10))),
                AuditEvent(
                    timeMs: 1_790_000_000_500,
                    action: "deny",
                    actor: "bob@ws2",
                    subject: "feature:cad",
                    details: [("code", .string("NO_SEATS")), ("count", .int(-1)), ("overage", .bool(true)), ("groups", .strings(["a\nb"]))]
                ),
                AuditEvent(
                    timeMs: 1_790_000_001_000,
                    lease: AuditLeaseRecord(lease: lease, actor: nil, kind: .release(cause: .checkedIn, atMs: 1_790_000_001_000))
                ),
            ])
            log.close()
            let file = try! AuditTrail.files(in: scratch)[0].path
            FileManager.default.createFile(
                atPath: "\(directory)/audit-record/trail-\(format.rawValue)",
                contents: try! Data(contentsOf: URL(fileURLWithPath: file))
            )
            try? FileManager.default.removeItem(atPath: scratch)
        }
        exit(0)
    }
    return 0
}
