import LicenseAudit
import LicenseCrypto
import LicenseReports
import LicenseTestSupport
import Testing

@Suite("Reports from a compressed, pruned audit trail")
struct CompressedTrailTests {
    @Test("report usage over the kept window: the same figures from gzipped files as from the same files uncompressed")
    func sameFigures() throws {
        let scratch = try TemporaryDirectory()
        let events = ReportTests.usageTrail().events.enumerated().sorted { ($0.element.timeMs, $0.offset) < ($1.element.timeMs, $1.offset) }
            .map(\.element)
        func write(_ directory: String, _ retention: AuditRetention) throws -> [AuditTrail.File] {
            let log = try AuditLog.open(directory: directory, maxFileBytes: 320, syncs: false, retention: retention)
            for event in events {
                try log.write([event])
                try log.sync()
            }
            log.close()
            return try AuditTrail.files(in: directory)
        }
        let pruned = try write(scratch.path("pruned"), AuditRetention(maxFiles: 4, signer: try Ed25519PrivateKey.generate()))
        let plain = try write(scratch.path("plain"), .keepAll).filter { $0.firstSequence >= pruned[0].firstSequence }
        #expect(pruned.count == 4 && pruned.dropLast().allSatisfy { $0.compressed })
        #expect(plain.count == 4 && !plain.contains { $0.compressed })
        let from = ReportTests.d1
        let to = from + 2 * TrailBuilder.day
        for grouping in [UsageReport.Grouping.feature, .user, .day] {
            let a = UsageReport(trail: try UsageTrail.read(pruned), fromMs: from, toMs: to, by: grouping)
            let b = UsageReport(trail: try UsageTrail.read(plain), fromMs: from, toMs: to, by: grouping)
            #expect(a.rows == b.rows)
            #expect(!a.rows.isEmpty)
        }
    }
}
