import Foundation
import LicenseCore
import LicenseFiles
import LicenseProtocol
import LicenseStore
import LicenseTestSupport
import Synchronization
import Testing

@Suite("Ledger store: recovery, snapshots, group commit")
struct LedgerStoreTests {
    static let t0: Int64 = 1_790_000_000_000

    static func licenses() -> [VerifiedLicense] {
        var license = Licensed_V1_License()
        license.id = "L"
        license.overage = .trueUp
        var f = Licensed_V1_Feature()
        f.name = "cad"
        f.count = 50
        license.features = [f]
        return [VerifiedLicense(license: license, keyID: "k", file: "t.lic", block: 1)]
    }

    static func ledger() -> SeatLedger { SeatLedger(configuration: .init(defaultLeaseTTLMs: 60_000), licenses: licenses()) }

    /// Runs a seeded mix of check-outs, check-ins and expiries, appending every change to `store`.
    static func drive(_ ledger: inout SeatLedger, _ store: LedgerStore, steps: Int, seed: UInt64, from leaseBase: UInt64) {
        var random = SeededGenerator(seed: seed)
        let sessions = (1...5).map { ID128(high: 1, low: $0) }
        for s in sessions where !ledger.isAttached(s) { ledger.openSession(s, identity: ClientIdentity(user: "u\(s.low)", host: "h")) }
        var now = t0
        for step in 0..<steps {
            let session = sessions[Int(random.next() % 5)]
            switch random.next() % 4 {
            case 0, 1:
                let grant = ledger.checkOut(
                    .init(
                        sessionID: session,
                        feature: "cad",
                        count: UInt32(random.next() % 3 + 1),
                        checkoutKey: [UInt8(step % 251)],
                        newLeaseID: ID128(high: 2, low: leaseBase + UInt64(step))
                    ),
                    at: now
                )
                if case .success(let g) = grant { store.append(g.changes) }
            case 2:
                if let lease = ledger.leases(ofSession: session).first,
                    case .success(let c) = ledger.checkIn(lease.id, by: session, at: now)
                {
                    store.append(c.changes)
                }
            default:
                now += Int64(random.next() % 20_000)
                store.append(ledger.reap(at: now).map(\.change))
            }
        }
    }

    static func open(
        _ dir: TemporaryDirectory,
        sync: LedgerStore.SyncPolicy = .always,
        writer: LedgerStore.Writer = .thread,
        acceptDataLoss: Bool = false
    ) throws -> (LedgerStore, LedgerStore.Recovery) {
        try LedgerStore.open(
            directory: dir.path("state"),
            sync: sync,
            writer: writer,
            acceptDataLoss: acceptDataLoss,
            onDurable: { _ in },
            onFatal: { message in Issue.record("fatal: \(message)") }
        )
    }

    static func recovered(_ recovery: LedgerStore.Recovery) -> SeatLedger {
        var ledger = Self.ledger()
        for change in recovery.changes { ledger.apply(change) }
        return ledger
    }

    /// Snapshots `ledger`, runs `meanwhile` while the snapshot's own thread writes it, and
    /// returns what it wrote.
    static func snapshot(
        _ ledger: SeatLedger,
        in store: LedgerStore,
        meanwhile: () -> Void = {}
    ) throws -> SnapshotResult {
        let snapshotted = Mutex<SnapshotResult?>(nil)
        #expect(store.snapshot(ledger, takenAtMs: Self.t0) { result in snapshotted.withLock { $0 = try? result.get() } })
        meanwhile()
        for _ in 0..<500 where snapshotted.withLock({ $0 == nil }) { usleep(10_000) }
        return try #require(snapshotted.withLock { $0 })
    }

    @Test("log replay alone rebuilds the ledger, whichever thread writes it", arguments: LedgerStore.Writer.allCases)
    func logReplay(writer: LedgerStore.Writer) throws {
        let dir = try TemporaryDirectory()
        var ledger = Self.ledger()
        let (store, first) = try Self.open(dir, writer: writer)
        #expect(first.changes.isEmpty)
        Self.drive(&ledger, store, steps: 300, seed: 1, from: 0)
        store.close()
        let (again, recovery) = try Self.open(dir)
        again.close()
        #expect(recovery.lastSequence == store.lastAssigned)
        #expect(recovery.tornTail == nil)
        #expect(Self.recovered(recovery).leases == ledger.leases)
    }

    @Test("snapshot + log replay equals the state before, whichever thread writes the log", arguments: LedgerStore.Writer.allCases)
    func snapshotPlusLog(writer: LedgerStore.Writer) throws {
        let dir = try TemporaryDirectory()
        var ledger = Self.ledger()
        let (store, _) = try Self.open(dir, writer: writer)
        Self.drive(&ledger, store, steps: 200, seed: 2, from: 0)
        let result = try Self.snapshot(ledger, in: store) { Self.drive(&ledger, store, steps: 200, seed: 3, from: 10_000) }
        store.close()
        let (again, recovery) = try Self.open(dir)
        again.close()
        #expect(recovery.snapshotSequence == result.sequence)
        #expect(recovery.snapshotFile == result.file)
        #expect(recovery.replayedRecords == Int(store.lastAssigned - result.sequence))
        #expect(Self.recovered(recovery).leases == ledger.leases)
        // The snapshot cut the log into a new segment; the segment it covers is kept until a
        // second snapshot exists (it is the fallback should this one be damaged).
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path("state")).sorted()
        #expect(files.filter { $0.hasSuffix(".snap") }.count == 1)
        #expect(files.filter { $0.hasSuffix(".log") }.count == 2)
    }

    @Test("pruned files leave through a rename, and what a stop left of one is removed at the next open, never read")
    func prunedFilesLeaveGradually() throws {
        let dir = try TemporaryDirectory()
        var ledger = Self.ledger()
        let (store, _) = try Self.open(dir)
        var last: SnapshotResult?
        for round in 0..<3 {
            Self.drive(&ledger, store, steps: 100, seed: UInt64(10 + round), from: UInt64(round) * 10_000)
            last = try Self.snapshot(ledger, in: store)
        }
        store.close()
        // Two snapshots kept, the log since the older of them; nothing left half removed.
        var files = try FileManager.default.contentsOfDirectory(atPath: dir.path("state")).sorted()
        #expect(files.filter { $0.hasSuffix(".snap") }.count == 2)
        #expect(files.filter { $0.hasSuffix(".log") }.count == 2)
        #expect(!files.contains { $0.hasSuffix(FileIO.removingSuffix) })
        // A stop in the middle of a removal: a segment cut short and a snapshot, both renamed.
        let torn = [UInt8](repeating: 0xA5, count: 1_000)
        try Data(torn).write(to: URL(fileURLWithPath: dir.path("state/wal-00000000000000000001.log" + FileIO.removingSuffix)))
        try Data(torn).write(to: URL(fileURLWithPath: dir.path("state/snapshot-00000000000000000100.snap" + FileIO.removingSuffix)))
        let (again, recovery) = try Self.open(dir)
        again.close()
        #expect(recovery.snapshotSequence == last?.sequence)
        #expect(Self.recovered(recovery).leases == ledger.leases)
        files = try FileManager.default.contentsOfDirectory(atPath: dir.path("state"))
        #expect(!files.contains { $0.hasSuffix(FileIO.removingSuffix) })
    }

    @Test("a snapshot keeps the bulk-assignment runs: recovered from it alone, with no log record left")
    func snapshotKeepsAssignmentRuns() throws {
        let dir = try TemporaryDirectory()
        var ledger = Self.ledger()
        let (store, _) = try Self.open(dir)
        Self.drive(&ledger, store, steps: 50, seed: 4, from: 0)
        var run = Licensed_V1_AssignmentRun()
        run.runID = "run-1"
        run.part = "base"
        run.atMs = Self.t0
        run.actor = "admin"
        let change = LedgerChange.assignmentRun(run)
        ledger.apply(change)
        store.append([change])
        let result = try Self.snapshot(ledger, in: store)
        store.close()
        let (again, recovery) = try Self.open(dir)
        again.close()
        #expect(recovery.snapshotSequence == result.sequence)
        #expect(recovery.replayedRecords == 0)
        let recovered = Self.recovered(recovery)
        #expect(recovered.assignmentRuns == [run])
        #expect(recovered.leases == ledger.leases)
    }

    @Test("a torn last write is cut off and reported; what came before is kept")
    func tornTail() throws {
        let dir = try TemporaryDirectory()
        var ledger = Self.ledger()
        let (store, _) = try Self.open(dir)
        Self.drive(&ledger, store, steps: 50, seed: 4, from: 0)
        store.close()
        let segment = try #require(try FileManager.default.contentsOfDirectory(atPath: dir.path("state")).first { $0.hasSuffix(".log") })
        let path = dir.path("state/\(segment)")
        let size = try #require(try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int)
        let handle = try #require(FileHandle(forWritingAtPath: path))
        try handle.truncate(atOffset: UInt64(size - 3))
        try handle.close()
        let (again, recovery) = try Self.open(dir)
        again.close()
        #expect(recovery.tornTail?.file == path)
        #expect(recovery.lastSequence == store.lastAssigned - 1)
        // Reopening again finds a clean log: the cut was made on disk.
        let (third, clean) = try Self.open(dir)
        third.close()
        #expect(clean.tornTail == nil)
        #expect(clean.lastSequence == store.lastAssigned - 1)
    }

    @Test("the open segment is allocated ahead: a crash leaves zeros that recovery reads as the end and cuts; a clean stop leaves none")
    func allocatedAhead() throws {
        let dir = try TemporaryDirectory()
        var ledger = Self.ledger()
        let durable = Mutex<UInt64>(0)
        let (store, _) = try LedgerStore.open(
            directory: dir.path("state"),
            sync: .always,
            onDurable: { sequence in durable.withLock { $0 = max($0, sequence) } },
            onFatal: { message in Issue.record("fatal: \(message)") }
        )
        Self.drive(&ledger, store, steps: 100, seed: 6, from: 0)
        for _ in 0..<500 where durable.withLock({ $0 }) < store.lastAssigned { usleep(10_000) }
        #expect(durable.withLock { $0 } == store.lastAssigned)
        let segment = try #require(try RecoveryTests.files(dir, ".log").first)
        func size(_ path: String) throws -> Int { try #require(try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) }
        // What a kill -9 leaves: the records, then the space allocated after them.
        let crashed = try TemporaryDirectory()
        try FileManager.default.copyItem(atPath: dir.path("state"), toPath: crashed.path("state"))
        let records = try LogSegment.read(FileIO.readAll(dir.path("state/\(segment)")), file: segment).validLength
        #expect(try size(dir.path("state/\(segment)")) > records)
        let (again, recovery) = try Self.open(crashed)
        #expect(recovery.tornTail == nil)
        #expect(recovery.lastSequence == store.lastAssigned)
        #expect(Self.recovered(recovery).leases == ledger.leases)
        #expect(try size(crashed.path("state/\(segment)")) == records)
        // The recovered store appends after the records, not after the zeros.
        var more = Self.recovered(recovery)
        Self.drive(&more, again, steps: 20, seed: 7, from: 50_000)
        again.close()
        let (third, after) = try Self.open(crashed)
        third.close()
        #expect(after.tornTail == nil)
        #expect(after.lastSequence == again.lastAssigned)
        #expect(Self.recovered(after).leases == more.leases)
        // A clean stop cuts the segment to its records.
        store.close()
        #expect(try size(dir.path("state/\(segment)")) == records)
    }

    @Test("a corrupt record in the middle stops recovery, naming the file and offset")
    func corruptMiddle() throws {
        let dir = try TemporaryDirectory()
        var ledger = Self.ledger()
        let (store, _) = try Self.open(dir)
        Self.drive(&ledger, store, steps: 100, seed: 5, from: 0)
        store.close()
        let segment = try #require(try FileManager.default.contentsOfDirectory(atPath: dir.path("state")).first { $0.hasSuffix(".log") })
        let path = dir.path("state/\(segment)")
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        bytes[bytes.count / 2] ^= 0x10
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let error = #expect(throws: RecoveryRefusal.self) { try Self.open(dir) }
        #expect(error?.message.contains(path) == true)
        #expect(error?.message.contains("offset") == true)
    }

    @Test("with the loop writer, appends without a wake-up are written together by the next one: one batch, one fsync")
    func loopWriterBatchesUntilWoken() throws {
        let dir = try TemporaryDirectory()
        let reports = Mutex<[UInt64]>([])
        let (store, _) = try LedgerStore.open(
            directory: dir.path("state"),
            sync: .always,
            writer: .loop,
            onDurable: { sequence in reports.withLock { $0.append(sequence) } },
            onFatal: { Issue.record("fatal: \($0)") }
        )
        for index in 0..<100 {
            store.append([.released(ID128(high: 1, low: UInt64(index)), .checkedIn, atMs: 0)], wakeWriter: false)
        }
        #expect(reports.withLock { $0 }.isEmpty)
        // Written and synced on this thread, before the call returns.
        store.wakeWriter()
        #expect(reports.withLock { $0 } == [100])
        store.append([.released(ID128(high: 2, low: 0), .checkedIn, atMs: 0)])
        #expect(reports.withLock { $0 } == [100, 101])
        store.close()
        let (again, recovery) = try Self.open(dir)
        again.close()
        #expect(recovery.replayedRecords == 101)
    }

    @Test(
        "concurrent appends share fsyncs and every record lands in order (with the loop writer, whichever appender finds the writer idle writes)",
        arguments: LedgerStore.Writer.allCases
    )
    func groupCommit(writer: LedgerStore.Writer) throws {
        let dir = try TemporaryDirectory()
        let batches = Mutex(0)
        let durable = Mutex<UInt64>(0)
        let (store, _) = try LedgerStore.open(
            directory: dir.path("state"),
            sync: .always,
            writer: writer,
            onDurable: { seq in
                batches.withLock { $0 += 1 }
                durable.withLock { $0 = max($0, seq) }
            },
            onFatal: { Issue.record("fatal: \($0)") }
        )
        let threads = 8
        let perThread = 500
        DispatchQueue.concurrentPerform(iterations: threads) { t in
            for i in 0..<perThread {
                store.append([.released(ID128(high: UInt64(t), low: UInt64(i)), .checkedIn, atMs: 0)])
            }
        }
        store.close()
        #expect(durable.withLock { $0 } == UInt64(threads * perThread))
        if writer == .thread {
            // The writer thread takes what arrived while it synced. (Under `.loop` an appender
            // that finds the writer idle writes at once, so sharing depends on the threads'
            // timing: the test below shows the loop's batching.)
            #expect(batches.withLock { $0 } < threads * perThread)
        }
        let (again, recovery) = try Self.open(dir)
        again.close()
        #expect(recovery.replayedRecords == threads * perThread)
        #expect(recovery.lastSequence == UInt64(threads * perThread))
    }
}

@Suite("Stored records")
struct StoredRecordTests {
    @Test("every lease field and every change survives the log record and the snapshot")
    func roundTrip() throws {
        var lease = Lease(
            id: ID128(high: 1, low: 2),
            sessionID: ID128(high: 3, low: 4),
            feature: "cad",
            licenseID: "L",
            count: 2,
            identity: ClientIdentity(
                user: "ada",
                host: "ws1",
                clientName: "acme",
                clientVersion: "2026.2",
                groups: ["/eng"],
                address: "10.1.2.3"
            ),
            grantedAtMs: 5,
            expiresAtMs: 6,
            ttlMs: 7,
            overage: true,
            fencingToken: 8,
            checkoutKey: [9, 9]
        )
        lease.borrowed = true
        lease.lingering = true
        lease.baseLeaseID = ID128(high: 10, low: 11)
        lease.sharedSeats = 2
        lease.dupIdentity = "u:ada"
        lease.tokenCost = 3
        let changes: [LedgerChange] = [
            .granted(lease), .released(lease.id, .baseReleased, atMs: 12), .rebound(lease.id, to: ID128(high: 13, low: 14)),
            .lingered(lease.id, untilMs: 15), .trialStarted(licenseID: "T", atMs: 16), .clockMarked(atMs: 18),
        ]
        for change in changes { #expect(LedgerChange(record: change.record) == change) }
        var table = LeaseTable()
        table[lease.id] = lease
        let bytes = try SnapshotFile.encode(leases: table, trialStarts: ["T": 16], sequence: 99, takenAtMs: 17)
        let snapshot = try SnapshotFile.decode(bytes, file: "s.snap")
        #expect(snapshot.sequence == 99)
        #expect(snapshot.trialStartedMs == ["T": 16])
        #expect(snapshot.leases.map { Lease(stored: $0) } == [lease])
        // The clock's high-water mark goes through the snapshot of a ledger that saw a mark.
        var ledger = LedgerStoreTests.ledger()
        ledger.apply(.clockMarked(atMs: 19))
        ledger.apply(.clockMarked(atMs: 18))
        #expect(ledger.clockHighWaterMs == 19)
        let marked = try SnapshotFile.decode(
            try SnapshotFile.encode(SnapshotFile.Content(ledger), sequence: 100, takenAtMs: 20),
            file: "m.snap"
        )
        #expect(marked.clockHighWaterMs == 19)
    }
}
