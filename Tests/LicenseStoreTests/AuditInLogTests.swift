import Foundation
import LicenseAudit
import LicenseCore
import LicenseStore
import LicenseTestSupport
import Synchronization
import Testing

/// Under `sync: always` a batch's audit records ride on its last log record, so one fdatasync
/// makes both durable; the audit file is synced later, and recovery gives it back from the log
/// what a power cut took from it.
@Suite("Ledger store: audit records in the log")
struct AuditInLogTests {
    static let t0 = LedgerStoreTests.t0

    static func openAudit(_ dir: TemporaryDirectory) throws -> sending AuditLog {
        try AuditLog.open(directory: dir.path("audit"), maxFileBytes: 20 << 10, syncs: true)
    }

    /// The last sequence number the store reported durable.
    final class Durable: Sendable {
        let last = Mutex<UInt64>(0)
        /// Waits until `sequence` is durable (a client waiting for its reply).
        func wait(for sequence: UInt64) {
            for _ in 0..<10_000 where self.last.withLock({ $0 < sequence }) { usleep(100) }
            #expect(self.last.withLock { $0 } >= sequence)
        }
    }

    static func open(_ dir: TemporaryDirectory, sync: LedgerStore.SyncPolicy = .always, durable: Durable = Durable()) throws -> (
        LedgerStore, LedgerStore.Recovery
    ) {
        try LedgerStore.open(
            directory: dir.path("state"),
            sync: sync,
            audit: try Self.openAudit(dir),
            onDurable: { sequence in durable.last.withLock { $0 = max($0, sequence) } },
            onFatal: { message in Issue.record("fatal: \(message)") }
        )
    }

    /// Check-outs and check-ins, each appended with its audit record (a lease's record, as the
    /// server writes them), and with `denials` now and then a record with no change (which rides
    /// in the log only when the writer takes it with a batch that has one, else its audit file is
    /// synced). With `durable`, each change waits for the last to be durable, as a client waits for
    /// its reply: batches stay small, well under the lines a batch may carry in the log. Returns
    /// how many audit records it appended.
    @discardableResult
    static func drive(
        _ ledger: inout SeatLedger,
        _ store: LedgerStore,
        rounds: Int,
        from base: UInt64 = 0,
        denials: Bool = true,
        waitingFor durable: Durable? = nil
    ) -> Int {
        var appended = 0
        let session = ID128(high: 1, low: 1)
        if !ledger.isAttached(session) { ledger.openSession(session, identity: ClientIdentity(user: "ada", host: "ws1")) }
        for round in 0..<rounds {
            let now = t0 + Int64(round)
            let request = SeatLedger.CheckOut(
                sessionID: session,
                feature: "cad",
                count: 1,
                checkoutKey: [],
                newLeaseID: ID128(high: 3, low: base + UInt64(round + 1))
            )
            if case .success(let grant) = ledger.checkOut(request, at: now) {
                let record = AuditLeaseRecord(lease: grant.lease, actor: "ada@ws1", kind: .grant(waitedMs: nil))
                let sequence = store.append(grant.changes, audit: [AuditEvent(timeMs: now, lease: record)])
                durable?.wait(for: sequence)
                appended += 1
            }
            if round % 3 == 0, let lease = ledger.leases(ofSession: session).first,
                case .success(let checkIn) = ledger.checkIn(lease.id, by: session, at: now)
            {
                let record = AuditLeaseRecord(lease: lease, actor: "ada@ws1", kind: .release(cause: .checkedIn, atMs: now))
                let sequence = store.append(checkIn.changes, audit: [AuditEvent(timeMs: now, lease: record)])
                durable?.wait(for: sequence)
                appended += 1
            }
            if denials, round % 7 == 0 {
                store.audit([AuditEvent(timeMs: now, action: "deny", actor: "bob@ws2", subject: "feature:cad")])
                appended += 1
            }
        }
        return appended
    }

    /// The audit lines the log's segments hold, by record sequence number.
    static func linesInLog(_ dir: TemporaryDirectory) throws -> [UInt64: [UInt8]] {
        var found: [UInt64: [UInt8]] = [:]
        let directory = dir.path("state")
        for name in try FileManager.default.contentsOfDirectory(atPath: directory) where name.hasPrefix("wal-") {
            let path = directory + "/" + name
            for record in try LogSegment.read(Array(try Data(contentsOf: URL(fileURLWithPath: path))), file: path).records {
                guard let lines = WalRecordWire.auditLines(in: record.body) else { continue }
                let split = lines.lines.split(separator: 0x0A, omittingEmptySubsequences: false).dropLast()
                #expect(split.count == Int(lines.count))
                for (offset, line) in split.enumerated() { found[lines.firstSequence + UInt64(offset)] = Array(line) }
            }
        }
        return found
    }

    /// The audit files' lines, by record sequence number, and the files' bytes.
    static func trail(_ dir: TemporaryDirectory) throws -> (lines: [UInt64: [UInt8]], files: [String: [UInt8]]) {
        var lines: [UInt64: [UInt8]] = [:]
        var files: [String: [UInt8]] = [:]
        for file in try AuditTrail.files(in: dir.path("audit")) {
            let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: file.path)))
            files[file.path] = bytes
            for line in bytes.split(separator: 0x0A) {
                let parsed = try #require(AuditRecord.parse(line))
                lines[parsed.record.sequence] = Array(line)
            }
        }
        return (lines, files)
    }

    @Test("every audit record is in the log with its change, byte for byte the audit file's line")
    func recordsRideInTheLog() throws {
        let dir = try TemporaryDirectory()
        var ledger = LedgerStoreTests.ledger()
        let durable = Durable()
        let (store, _) = try Self.open(dir, durable: durable)
        let appended = Self.drive(&ledger, store, rounds: 300, waitingFor: durable)
        store.close()
        let trail = try Self.trail(dir)
        let logged = try Self.linesInLog(dir)
        #expect(appended > 400)
        #expect(trail.lines.count == appended)
        #expect(trail.files.count > 1)
        // Every lease's record is appended with its change, so it is in the log; a denial has no
        // change and is there only when the writer took it with a batch that has one.
        let inLog = Set(logged.keys)
        #expect(inLog.isSubset(of: Set(trail.lines.keys)))
        for (sequence, line) in trail.lines where AuditRecord.parse(line[...])?.record.action != "deny" {
            #expect(inLog.contains(sequence), "record \(sequence)")
        }
        #expect(inLog.count > appended * 3 / 4)
        for (sequence, line) in logged { #expect(trail.lines[sequence] == line, "record \(sequence)") }
    }

    @Test("a power cut takes the audit file's unsynced tail: the next start copies it back from the log, the same bytes, reported")
    func powerCutRestores() throws {
        let dir = try TemporaryDirectory()
        var ledger = LedgerStoreTests.ledger()
        do {
            let durable = Durable()
            let (store, _) = try Self.open(dir, durable: durable)
            Self.drive(&ledger, store, rounds: 200, denials: false, waitingFor: durable)
            store.close()
        }
        let before = try Self.trail(dir)
        let files = try AuditTrail.files(in: dir.path("audit"))
        // The newest file loses everything after its second line, the last one but that is
        // removed whole (as if its creation had not reached the disk either).
        #expect(files.count >= 2)
        let newest = try #require(before.files[files.last!.path])
        let second = try #require(newest.indices.filter { newest[$0] == 0x0A }.dropFirst().first)
        #expect(truncate(files.last!.path, off_t(second + 1)) == 0)
        let lastKept = try #require(AuditRecord.parse(newest[..<second].split(separator: 0x0A).last!)).record.sequence

        var (store, recovery) = try Self.open(dir)
        let total = UInt64(before.lines.count)
        #expect(recovery.auditRestored == (lastKept + 1)...total)
        #expect(recovery.auditNotRestored == nil)
        let finding = recovery.replay(sync: .always).findings.first { $0.1.contains("audit trail") }
        #expect(finding?.0 == .warning)
        #expect(finding?.1.contains("records \(lastKept + 1)–\(total)") == true)
        #expect(store.auditHead?.sequence == total)
        store.close()
        let after = try Self.trail(dir)
        #expect(after.files == before.files)
        let verified = try AuditTrail.verify(try AuditTrail.files(in: dir.path("audit")))
        #expect(verified.failure == nil && verified.records == Int(total))

        // The next start has nothing to copy; records go on from the restored ones.
        (store, recovery) = try Self.open(dir)
        #expect(recovery.auditRestored == nil)
        Self.drive(&ledger, store, rounds: 10, from: 1_000)
        store.close()
        #expect(try AuditTrail.verify(try AuditTrail.files(in: dir.path("audit"))).failure == nil)
    }

    @Test("a trail moved aside: rebuilt whole while the log holds it from record 1; not patched once the log starts later (reported)")
    func replacedTrail() throws {
        let dir = try TemporaryDirectory()
        var ledger = LedgerStoreTests.ledger()
        var appended = 0
        do {
            let durable = Durable()
            let (store, _) = try Self.open(dir, durable: durable)
            appended = Self.drive(&ledger, store, rounds: 50, denials: false, waitingFor: durable)
            store.close()
        }
        let whole = try Self.trail(dir)
        try FileManager.default.moveItem(atPath: dir.path("audit"), toPath: dir.path("audit.aside"))
        do {
            let (store, recovery) = try Self.open(dir)
            #expect(recovery.auditRestored == 1...UInt64(appended))
            store.close()
            #expect(try Self.trail(dir).lines == whole.lines)
        }

        // Two snapshots later the log's first segment is gone, and with it the trail's start.
        do {
            let (store, _) = try Self.open(dir)
            Self.drive(&ledger, store, rounds: 40, from: 1_000)
            _ = try LedgerStoreTests.snapshot(ledger, in: store)
            Self.drive(&ledger, store, rounds: 40, from: 2_000)
            _ = try LedgerStoreTests.snapshot(ledger, in: store)
            Self.drive(&ledger, store, rounds: 10, from: 3_000)
            store.close()
        }
        #expect(try Self.linesInLog(dir)[1] == nil)
        try FileManager.default.removeItem(atPath: dir.path("audit"))
        let (store, recovery) = try Self.open(dir)
        #expect(recovery.auditRestored == nil)
        #expect(recovery.auditNotRestored?.contains("are in neither") == true)
        #expect(recovery.replay(sync: .always).findings.contains { $0.0 == .error && $0.1.contains("audit trail") })
        Self.drive(&ledger, store, rounds: 5, from: 4_000)
        store.close()
        let verified = try AuditTrail.verify(try AuditTrail.files(in: dir.path("audit")))
        #expect(verified.failure == nil && verified.records > 0)
    }

    @Test("not in the log: under sync none, and a batch whose lines pass 8 KiB (its audit file is synced instead)")
    func notInTheLog() throws {
        let none = try TemporaryDirectory()
        var ledger = LedgerStoreTests.ledger()
        do {
            let (store, _) = try Self.open(none, sync: .none)
            let appended = Self.drive(&ledger, store, rounds: 30)
            store.close()
            #expect(try Self.trail(none).lines.count == appended)
        }
        #expect(try Self.linesInLog(none).isEmpty)

        let large = try TemporaryDirectory()
        ledger = LedgerStoreTests.ledger()
        let (store, _) = try Self.open(large)
        let session = ID128(high: 1, low: 1)
        ledger.openSession(session, identity: ClientIdentity(user: "ada", host: "ws1"))
        let request = SeatLedger.CheckOut(sessionID: session, feature: "cad", count: 1, checkoutKey: [], newLeaseID: ID128(high: 3, low: 1))
        guard case .success(let grant) = ledger.checkOut(request, at: Self.t0) else {
            Issue.record("no grant")
            return
        }
        let padding = String(repeating: "x", count: 600)
        let events = (0..<500).map {
            AuditEvent(timeMs: Self.t0, action: "note", actor: "admin-socket", details: [("text", .string("\($0) \(padding)"))])
        }
        store.append(grant.changes, audit: events)
        store.close()
        #expect(try Self.linesInLog(large).isEmpty)
        #expect(try Self.trail(large).lines.count == 500)
    }

    @Test(
        "a write that fails stops the log, whichever thread writes it: reported once as fatal, nothing after acknowledged, close returns",
        arguments: LedgerStore.Writer.allCases
    )
    func failedWriteStops(writer: LedgerStore.Writer) throws {
        let dir = try TemporaryDirectory()
        // The audit trail's file is /dev/full: its first write fails with ENOSPC.
        try FileManager.default.createDirectory(atPath: dir.path("audit"), withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(
            atPath: dir.path("audit/audit-00000000000000000001.rec"),
            withDestinationPath: "/dev/full"
        )
        let durable = Durable()
        let fatal = Mutex<[String]>([])
        let (store, _) = try LedgerStore.open(
            directory: dir.path("state"),
            sync: .always,
            writer: writer,
            audit: try Self.openAudit(dir),
            onDurable: { sequence in durable.last.withLock { $0 = max($0, sequence) } },
            onFatal: { message in fatal.withLock { $0.append(message) } }
        )
        let change = LedgerChange.released(ID128(high: 1, low: 1), .checkedIn, atMs: Self.t0)
        store.append([change], audit: [AuditEvent(timeMs: Self.t0, action: "checkin", actor: "ada@ws1")])
        for _ in 0..<500 where fatal.withLock({ $0.isEmpty }) { usleep(10_000) }
        #expect(fatal.withLock { $0 }.count == 1)
        #expect(fatal.withLock { $0 }.first?.contains("stopping") == true)
        store.append([change], audit: [AuditEvent(timeMs: Self.t0, action: "checkin", actor: "ada@ws1")])
        store.wakeWriter()
        store.close()
        #expect(durable.last.withLock { $0 } == 0)
        #expect(fatal.withLock { $0 }.count == 1)
    }
}
