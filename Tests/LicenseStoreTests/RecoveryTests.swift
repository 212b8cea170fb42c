import Foundation
import LicenseCore
import LicenseStore
import LicenseTestSupport
import Testing

/// Recovery when files are damaged: two snapshots are kept with the log since the older one, so
/// one damaged snapshot costs nothing; when nothing covers what was acknowledged, recovery refuses
/// and names the files, unless the operator accepts the loss.
@Suite("Ledger store: recovery from damaged snapshots")
struct RecoveryTests {
    typealias Store = LedgerStoreTests

    /// Flips one byte in the middle of `path`.
    static func damage(_ path: String) throws {
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        bytes[bytes.count / 2] ^= 0x01
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    static func files(_ dir: TemporaryDirectory, _ suffix: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: dir.path("state")).filter { $0.hasSuffix(suffix) }.sorted()
    }

    /// Two snapshots with changes before, between and (when `after`) behind them, then a clean close.
    static func history(_ dir: TemporaryDirectory, after: Bool) throws -> (
        SeatLedger, SnapshotResult, SnapshotResult
    ) {
        var ledger = Store.ledger()
        let (store, _) = try Store.open(dir)
        Store.drive(&ledger, store, steps: 150, seed: 11, from: 0)
        let older = try Store.snapshot(ledger, in: store)
        Store.drive(&ledger, store, steps: 150, seed: 12, from: 10_000)
        let newer = try Store.snapshot(ledger, in: store)
        if after { Store.drive(&ledger, store, steps: 50, seed: 13, from: 20_000) }
        store.close()
        return (ledger, older, newer)
    }

    @Test("two snapshots are kept, with the log since the older; a third removes the first")
    func retention() throws {
        let dir = try TemporaryDirectory()
        var ledger = Store.ledger()
        let (store, _) = try Store.open(dir)
        var results: [SnapshotResult] = []
        for round in 0..<3 {
            Store.drive(&ledger, store, steps: 100, seed: UInt64(20 + round), from: UInt64(round) * 10_000)
            results.append(try Store.snapshot(ledger, in: store))
        }
        store.close()
        #expect(try Self.files(dir, ".snap") == results.suffix(2).map { ($0.file as NSString).lastPathComponent })
        // Segments start after each cut: those since the older kept snapshot's cut remain.
        #expect(try Self.files(dir, ".log") == results.suffix(2).map { "wal-" + String(format: "%020llu", $0.sequence + 1) + ".log" })
    }

    @Test("clean stop, newest snapshot damaged: recovered from the older one and the log, nothing lost", arguments: [false, true])
    func newestDamaged(changesAfter: Bool) throws {
        let dir = try TemporaryDirectory()
        let (ledger, older, newer) = try Self.history(dir, after: changesAfter)
        try Self.damage(newer.file)
        let (store, recovery) = try Store.open(dir)
        store.close()
        #expect(recovery.snapshotFile == older.file)
        #expect(recovery.passedOver.count == 1)
        #expect(recovery.passedOver.first?.contains(newer.file) == true)
        #expect(recovery.passedOver.first?.contains("checksum") == true)
        #expect(recovery.lostHistory == nil)
        #expect(recovery.needsSnapshot)
        #expect(Store.recovered(recovery).leases == ledger.leases)
        // The damaged file is kept for the operator but out of recovery's way.
        #expect(recovery.setAside == [newer.file + ".damaged"])
        #expect(FileManager.default.fileExists(atPath: newer.file + ".damaged"))
        #expect(try Self.files(dir, ".snap") == [(older.file as NSString).lastPathComponent])
    }

    @Test("newest snapshot damaged and the older one gone: refuses, naming the file and the records lost")
    func nothingCovers() throws {
        let dir = try TemporaryDirectory()
        let (_, older, newer) = try Self.history(dir, after: false)
        try Self.damage(newer.file)
        try FileManager.default.removeItem(atPath: older.file)
        let refusal = #expect(throws: RecoveryRefusal.self) { try Store.open(dir) }
        let message = try #require(refusal?.message)
        #expect(message.contains(newer.file))
        #expect(message.contains("fails its checksum"))
        #expect(message.contains("would be lost"))
        #expect(message.contains("--accept-data-loss"))
        // Nothing was changed on disk by the refusal.
        #expect(FileManager.default.fileExists(atPath: newer.file))
    }

    @Test("a snapshot whose log was never cut, damaged: the message blames the snapshot, not the log")
    func onlySnapshotDamaged() throws {
        let dir = try TemporaryDirectory()
        var ledger = Store.ledger()
        let (store, _) = try Store.open(dir)
        Store.drive(&ledger, store, steps: 100, seed: 14, from: 0)
        let only = try Store.snapshot(ledger, in: store)
        Store.drive(&ledger, store, steps: 100, seed: 15, from: 10_000)
        store.close()
        // The log before the snapshot's cut is gone (as a single-snapshot retention left it).
        for segment in try Self.files(dir, ".log") where segment < "wal-" + String(format: "%020llu", only.sequence + 1) {
            try FileManager.default.removeItem(atPath: dir.path("state/\(segment)"))
        }
        try Self.damage(only.file)
        let refusal = #expect(throws: RecoveryRefusal.self) { try Store.open(dir) }
        let message = try #require(refusal?.message)
        #expect(message.contains("snapshot \(only.file) fails its checksum"))
        #expect(message.contains("the next record in the log is \(only.sequence + 1)"))
        #expect(message.contains("records 1–"))
    }

    @Test("--accept-data-loss starts from what reads, never reuses a sequence number, and the next start is clean")
    func acceptDataLoss() throws {
        let dir = try TemporaryDirectory()
        let (_, older, newer) = try Self.history(dir, after: true)
        try Self.damage(newer.file)
        try FileManager.default.removeItem(atPath: older.file)
        let (store, recovery) = try Store.open(dir, acceptDataLoss: true)
        #expect(recovery.lostHistory?.contains(newer.file) == true)
        #expect(recovery.lastSequence > newer.sequence)
        // New changes are numbered after everything on disk, and a snapshot seals the new state.
        var ledger = Store.recovered(recovery)
        Store.drive(&ledger, store, steps: 30, seed: 16, from: 30_000)
        _ = try Store.snapshot(ledger, in: store)
        store.close()
        let (again, clean) = try Store.open(dir)
        again.close()
        #expect(clean.lostHistory == nil)
        #expect(clean.passedOver.isEmpty)
        #expect(Store.recovered(clean).leases == ledger.leases)
    }

    @Test("a damaged older snapshot is reported and set aside; recovery from the newest loses nothing")
    func olderDamaged() throws {
        let dir = try TemporaryDirectory()
        let (ledger, older, newer) = try Self.history(dir, after: true)
        try Self.damage(older.file)
        let (store, recovery) = try Store.open(dir)
        store.close()
        #expect(recovery.snapshotFile == newer.file)
        #expect(recovery.damagedOlder.count == 1)
        #expect(recovery.damagedOlder.first?.contains(older.file) == true)
        #expect(recovery.needsSnapshot)
        #expect(Store.recovered(recovery).leases == ledger.leases)
    }
}
