// Measures the durable side at scale: snapshot and recovery of N leases, log replay of N
// records, and the pause a snapshot's copy-on-write costs the serving loop.
// Usage: licensed-store-bench [LEASES] [DIRECTORY]     (build with -c release)
import Foundation
import LicenseCore
import LicenseProtocol
import LicenseStore

let count = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 1_000_000 : 1_000_000
let directory = CommandLine.arguments.count > 2 ? CommandLine.arguments[2] : NSTemporaryDirectory() + "licensed-store-bench-\(getpid())"
try? FileManager.default.removeItem(atPath: directory)
defer { try? FileManager.default.removeItem(atPath: directory) }

func seconds(_ body: () throws -> Void) rethrows -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    try body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}

func rssMiB() -> Double {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
        let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") })
    else { return 0 }
    return Double(line.split(separator: " ").dropFirst().first ?? "0").map { $0 / 1024 } ?? 0
}

var license = Licensed_V1_License()
license.id = "bench"
license.overage = .unlimited
var feature = Licensed_V1_Feature()
feature.name = "cad.solver"
license.features = [feature]
let licenses = [VerifiedLicense(license: license, keyID: "k", file: "bench.lic", block: 1)]
let t0: Int64 = 1_790_000_000_000
let baseRSS = rssMiB()

// 1. Grant N leases through the ledger and the write-ahead log (sync none: this measures the
//    store's own work, not the disk's fsync latency).
var ledger = SeatLedger(configuration: .init(defaultLeaseTTLMs: 120_000), licenses: licenses)
let sessions = (0..<1000).map { ID128(high: 7, low: UInt64($0)) }
for s in sessions {
    ledger.openSession(
        s,
        identity: ClientIdentity(user: "user\(s.low)", host: "host\(s.low % 100)", clientName: "bench", clientVersion: "1.0")
    )
}
let (store, _) = try LedgerStore.open(
    directory: directory,
    sync: .none,
    onDurable: { _ in },
    onFatal: { message in fatalError(message) }
)
let grantTime = seconds {
    for i in 0..<count {
        let grant = ledger.checkOut(
            .init(
                sessionID: sessions[i % sessions.count],
                feature: "cad.solver",
                checkoutKey: [],
                newLeaseID: ID128(high: 1, low: UInt64(i))
            ),
            at: t0
        )
        if case .success(let g) = grant { store.append(g.changes) }
    }
}
store.close()
let ledgerRSS = rssMiB() - baseRSS
print(
    String(
        format: "granted %d leases through ledger + WAL append: %.2f s (%.0f grants/s); RSS for the ledger ≈ %.0f MiB (%.0f bytes/lease)",
        count,
        grantTime,
        Double(count) / grantTime,
        ledgerRSS,
        ledgerRSS * 1_048_576 / Double(count)
    )
)

// 2. Recovery from the log alone (N records).
var replayTime = 0.0
var recoveredCount = 0
let logRecovery = try seconds {
    let (reopened, recovery) = try LedgerStore.open(directory: directory, sync: .none, onDurable: { _ in }, onFatal: { fatalError($0) })
    var recovered = SeatLedger(configuration: .init(defaultLeaseTTLMs: 120_000), licenses: licenses)
    replayTime = seconds { recovered.apply(contentsOf: recovery.changes) }
    recovered.renewAll(at: t0 + 1)
    recoveredCount = recovered.leases.count
    reopened.close()
}
print(
    String(format: "recovery from the log (%d records): %.2f s (apply %.2f s), %d leases", count, logRecovery, replayTime, recoveredCount)
)

// 3. Snapshot of N leases: the copy is frozen on the loop in O(1); encoding and writing run on
//    their own thread. The loop's price is the copy-on-write of the first mutation after it.
let (store2, _) = try LedgerStore.open(directory: directory, sync: .always, onDurable: { _ in }, onFatal: { fatalError($0) })
let done = DispatchSemaphore(value: 0)
nonisolated(unsafe) var result: SnapshotResult?
let snapshotCall = seconds {
    _ = store2.snapshot(ledger, takenAtMs: t0) { r in
        result = try? r.get()
        done.signal()
    }
}
var copyPause = 0.0
copyPause = seconds {
    // The first change after the snapshot pays for copying the ledger's storage.
    let grant = ledger.checkOut(.init(sessionID: sessions[0], feature: "cad.solver", newLeaseID: ID128(high: 9, low: 9)), at: t0)
    if case .success(let g) = grant { store2.append(g.changes) }
}
done.wait()
store2.close()
if let result {
    print(
        String(
            format:
                "snapshot of %d leases: %d ms to encode + write + fsync (%.1f MiB); the loop paused %.1f ms to hand it over and %.1f ms for the copy-on-write of its next change",
            result.leases,
            result.durationMs,
            Double(result.sizeBytes) / 1_048_576,
            snapshotCall * 1000,
            copyPause * 1000
        )
    )
}

// 3b. Encoding alone (in parallel chunks, one per shard), on this thread.
var encodedBytes = 0
let encodeTime = try seconds { encodedBytes = try SnapshotFile.encode(leases: ledger.leases, sequence: 1, takenAtMs: t0).count }
print(String(format: "snapshot encoding alone: %.2f s, %d bytes", encodeTime, encodedBytes))

// 4. Recovery from the snapshot (+ the one record after it).
var readTime = 0.0
var applyTime = 0.0
let snapshotRecovery = try seconds {
    var opened: (LedgerStore, LedgerStore.Recovery)?
    readTime = try seconds {
        opened = try LedgerStore.open(directory: directory, sync: .none, onDurable: { _ in }, onFatal: { fatalError($0) })
    }
    let (reopened, recovery) = opened!
    var recovered = SeatLedger(configuration: .init(defaultLeaseTTLMs: 120_000), licenses: licenses)
    applyTime = seconds {
        recovered.reserveCapacity(leases: recovery.changes.count)
        recovered.apply(contentsOf: recovery.changes)
        recovered.renewAll(at: t0 + 1)
    }
    recoveredCount = recovered.leases.count
    reopened.close()
}
print(
    String(
        format: "recovery from the snapshot: %.2f s (read + decode %.2f s, rebuild the ledger %.2f s), %d leases",
        snapshotRecovery,
        readTime,
        applyTime,
        recoveredCount
    )
)
