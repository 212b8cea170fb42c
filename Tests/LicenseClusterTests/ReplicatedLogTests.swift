import Etcd
import Foundation
import LicenseAudit
import LicenseCluster
import LicenseCore
import LicenseFiles
import LicenseProtocol
import LicenseStore
import LicenseTestSupport
import Synchronization
import Testing

/// The replicated commit log and its follower against a real etcd.
@Suite(.serialized, .enabled(if: EtcdTestCluster.available, "etcd-server is not installed (the test command installs it)"))
struct ReplicatedLogTests {
    let keys = ClusterKeys(cluster: "test")

    /// An active node "a" (elected) with its replicated log started.
    func activeNode(_ client: RunningClient, _ directory: TemporaryDirectory, limits: ReplicatedLog.Limits = .init()) async throws
        -> (Election, Task<Election.Ending, Never>, ReplicatedLog, Reported)
    {
        let election = Election(etcd: client.etcd, keys: keys, member: member("a"), ttlSeconds: 5, onChange: { _ in })
        let running = Task { await election.run() }
        #expect(await eventually { election.mayAct() })
        let (local, _) = try openLocal(directory, "a")
        let log = ReplicatedLog(etcd: client.etcd, keys: keys, nodeID: "a", local: local, limits: limits)
        let reported = Reported()
        log.start(reported.signals)
        try log.activate(epoch: election.epoch, head: nil)
        return (election, running, log, reported)
    }

    @Test func aStandbyCopiesEveryBatchInOrderAndBothLocalLogsHoldTheSame() async throws {
        let cluster = try EtcdTestCluster(members: 1)
        let client = try RunningClient(cluster)
        await client.ready()
        defer { client.stop() }
        let directory = try TemporaryDirectory()
        let (elected, election, log, reported) = try await activeNode(client, directory)
        let epoch = elected.epoch
        // A standby that follows from the start.
        let (standbyLocal, _) = try openLocal(directory, "b")
        let standby = ReplicatedLog(etcd: client.etcd, keys: keys, nodeID: "b", local: standbyLocal)
        standby.start(Reported().signals)
        let delivered = Delivered()
        let follower = LogFollower(etcd: client.etcd, keys: keys)
        let following = Task {
            try await follower.follow(committed: { standby.committed }) { batch in
                try standby.applyCommitted(batch)
                delivered.append(batch)
            }
        }
        // 400 changes in 200 appends, some with audit records, and audit records alone.
        var expected: [LedgerChange] = []
        for round in 0..<200 {
            let changes = [grant(2 * round), grant(2 * round + 1)]
            expected += changes
            let audit =
                round % 10 == 0 ? [AuditEvent(timeMs: Int64(round), action: "grant", actor: "ada@ws1", subject: "lease:\(round)")] : []
            log.append(changes, audit: audit, wakeWriter: true)
            if round % 50 == 0 {
                log.audit([AuditEvent(timeMs: 1, action: "deny", actor: "bob@ws2", details: [("n", .int(Int64(round)))])], wakeWriter: true)
            }
        }
        #expect(log.lastAssigned == 400)
        #expect(await eventually { reported.durable == 400 })
        #expect(await eventually { standby.committed == 400 })
        #expect(delivered.changes == expected)
        #expect(delivered.all.flatMap(\.audit).filter { $0.action == "deny" }.count == 4)
        #expect(delivered.all.allSatisfy { $0.epoch == epoch && $0.nodeID == "a" })
        #expect(reported.fatal == nil)
        following.cancel()
        _ = await following.result
        log.close()
        standby.close()
        // Both local copies recover the same 400 changes.
        let (a, recoveredA) = try openLocal(directory, "a")
        let (b, recoveredB) = try openLocal(directory, "b")
        #expect(recoveredA.changes == expected)
        #expect(recoveredB.changes == expected)
        a.close()
        b.close()
        election.cancel()
    }

    @Test func aNodeWhoseKeyIsGoneCanNoLongerWriteAndSaysSo() async throws {
        let cluster = try EtcdTestCluster(members: 1)
        let client = try RunningClient(cluster)
        await client.ready()
        defer { client.stop() }
        let directory = try TemporaryDirectory()
        let (_, election, log, reported) = try await activeNode(client, directory)
        log.append([grant(1)], audit: [], wakeWriter: true)
        #expect(await eventually { reported.durable == 1 })
        // Another node has taken over (the key of "a" ended): the next write is refused.
        try await client.etcd.delete(EtcdKeyRange(key: keys.member("a")))
        log.append([grant(2)], audit: [], wakeWriter: true)
        #expect(await eventually { reported.fatal != nil })
        #expect(reported.fatal?.contains("no longer the active one") == true)
        #expect(reported.durable == 1)
        let head = try #require(try await client.etcd.get(keys.head))
        #expect(LogHead(stored: head.value)?.last == 1)
        election.cancel()
        log.close()
    }

    @Test func aWriteAfterAnotherNodesWriteIsRefused() async throws {
        let cluster = try EtcdTestCluster(members: 1)
        let client = try RunningClient(cluster)
        await client.ready()
        defer { client.stop() }
        let directory = try TemporaryDirectory()
        let (_, election, log, reported) = try await activeNode(client, directory)
        log.append([grant(1)], audit: [], wakeWriter: true)
        #expect(await eventually { reported.durable == 1 })
        // Someone else moved the head (a successor that already wrote): the guard fails.
        try await client.etcd.put(keys.head, LogHead(position: BatchPosition(first: 2, part: 0), last: 2).stored)
        log.append([grant(2)], audit: [], wakeWriter: true)
        #expect(await eventually { reported.fatal != nil })
        #expect(reported.durable == 1)
        election.cancel()
        log.close()
    }

    @Test func batchesStayWithinTheirByteBound() async throws {
        let cluster = try EtcdTestCluster(members: 1)
        let client = try RunningClient(cluster)
        await client.ready()
        defer { client.stop() }
        let directory = try TemporaryDirectory()
        let (_, election, log, reported) = try await activeNode(client, directory, limits: .init(maxBatchBytes: 4096))
        // One append of 2,000 changes (~200 KB): many batches, none over the bound by more
        // than one record.
        log.append((0..<2000).map(grant), audit: [], wakeWriter: true)
        #expect(await eventually { reported.durable == 2000 })
        let stored = try await client.etcd.range(EtcdKeyRange(prefix: keys.log))
        #expect(stored.kvs.count > 40)
        #expect(stored.kvs.allSatisfy { $0.value.count < 4096 + 512 })
        let batches = try stored.kvs.map { try ReplicatedBatch(decoding: [UInt8]($0.value)) }
        #expect(batches.flatMap(\.changes) == (0..<2000).map(grant))
        election.cancel()
        log.close()
    }

    @Test func everyChangeIsCommittedOnceWhenTheConnectedMemberDies() async throws {
        let cluster = try EtcdTestCluster(members: 3)
        let client = try RunningClient(cluster, callTimeout: .milliseconds(700))
        await client.ready()
        defer { client.stop() }
        let directory = try TemporaryDirectory()
        let (_, election, log, reported) = try await activeNode(client, directory)
        let writer = Task {
            for n in 0..<600 {
                log.append([grant(n)], audit: [], wakeWriter: true)
                try await Task.sleep(for: .milliseconds(5))
            }
        }
        try await Task.sleep(for: .milliseconds(500))
        cluster.kill9("m1")  // the member the client is on
        try await writer.value
        #expect(await eventually(.seconds(20)) { reported.durable == 600 })
        #expect(reported.fatal == nil)
        // The log in etcd holds each change exactly once, in order.
        let stored = try await client.etcd.range(EtcdKeyRange(prefix: keys.log))
        let batches = try stored.kvs.map { try ReplicatedBatch(decoding: [UInt8]($0.value)) }
        #expect(batches.flatMap(\.changes) == (0..<600).map(grant))
        election.cancel()
        log.close()
    }

    @Test func aSnapshotOnTheActiveCoversExactlyWhatWasAppendedWhenItWasAsked() async throws {
        let cluster = try EtcdTestCluster(members: 1)
        let client = try RunningClient(cluster)
        await client.ready()
        defer { client.stop() }
        let directory = try TemporaryDirectory()
        let (_, election, log, reported) = try await activeNode(client, directory)
        var ledger = SeatLedger(configuration: .init(defaultLeaseTTLMs: 60_000), licenses: [])
        for n in 0..<100 {
            ledger.apply(grant(n))
            log.append([grant(n)], audit: [], wakeWriter: false)
        }
        let taken = Mutex<Result<SnapshotResult, StoreError>?>(nil)
        #expect(log.snapshot(ledger, takenAtMs: 1) { result in taken.withLock { $0 = result } })
        for n in 100..<150 { log.append([grant(n)], audit: [], wakeWriter: false) }
        log.wakeWriter()
        #expect(await eventually { reported.durable == 150 })
        #expect(await eventually { taken.withLock { $0 } != nil })
        let snapshot = try #require(taken.withLock { $0 }).get()
        #expect(snapshot.sequence == 100)
        #expect(snapshot.leases == 100)
        log.close()
        // Recovery: the snapshot, then the 50 changes after it.
        let (local, recovered) = try openLocal(directory, "a")
        var rebuilt = SeatLedger(configuration: .init(defaultLeaseTTLMs: 60_000), licenses: [])
        for change in recovered.changes { rebuilt.apply(change) }
        #expect(rebuilt.leases.count == 150)
        local.close()
        election.cancel()
    }

    @Test func aNodeBehindTheLogsCompactionIsToldItNeedsASnapshot() async throws {
        let cluster = try EtcdTestCluster(members: 1)
        let client = try RunningClient(cluster)
        await client.ready()
        defer { client.stop() }
        let directory = try TemporaryDirectory()
        let (_, election, log, reported) = try await activeNode(client, directory)
        for n in 0..<10 {
            log.append([grant(n)], audit: [], wakeWriter: true)
            #expect(await eventually { reported.durable == UInt64(n + 1) })
        }
        // The first five batches are compacted away.
        try await client.etcd.delete(EtcdKeyRange(from: keys.batches(from: 1), to: keys.batches(from: 6)))
        let follower = LogFollower(etcd: client.etcd, keys: keys)
        await #expect(throws: ClusterError.self) {
            _ = try await follower.catchUp(after: 0) { _ in }
        }
        // A node with the first five reads the rest.
        let delivered = Delivered()
        let (head, _) = try await follower.catchUp(after: 5) { delivered.append($0) }
        #expect(head?.last == 10)
        #expect(delivered.changes == (5..<10).map(grant))
        election.cancel()
        log.close()
    }
}
