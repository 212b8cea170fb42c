import Etcd
import Foundation
import LicenseTestSupport
import Testing

/// The etcd client against a real etcd (Debian's etcd-server, started by each test).
@Suite(.serialized, .enabled(if: EtcdTestCluster.available, "etcd-server is not installed (the test command installs it)"))
struct EtcdClientTests {
    @Test func keysValuesAndRanges() async throws {
        let cluster = try EtcdTestCluster(members: 1)
        try await withClient(cluster) { etcd in
            try await etcd.put(Array("/t/a".utf8), Array("1".utf8))
            try await etcd.put(Array("/t/b".utf8), Array("2".utf8))
            try await etcd.put(Array("/u/c".utf8), Array("3".utf8))
            let a = try #require(try await etcd.get(Array("/t/a".utf8)))
            #expect(a.value == Data("1".utf8))
            #expect(a.createRevision > 0 && a.modRevision == a.createRevision)
            let prefix = try await etcd.range(EtcdKeyRange(prefix: Array("/t/".utf8)))
            #expect(prefix.kvs.map { String(decoding: $0.key, as: UTF8.self) } == ["/t/a", "/t/b"])
            #expect(try await etcd.get(Array("/t/none".utf8)) == nil)
            #expect(try await etcd.delete(EtcdKeyRange(prefix: Array("/t/".utf8))) == 2)
            #expect(try await etcd.range(EtcdKeyRange(prefix: Array("/t/".utf8))).kvs.isEmpty)
        }
    }

    @Test func transactionsApplyOnlyWhenTheirGuardHolds() async throws {
        let cluster = try EtcdTestCluster(members: 1)
        try await withClient(cluster) { etcd in
            let key = Array("/t/only-once".utf8)
            let first = try await etcd.txn(compare: [.created(key, at: 0)], success: [.put(key, Array("x".utf8))])
            #expect(first.succeeded)
            let second = try await etcd.txn(
                compare: [.created(key, at: 0)],
                success: [.put(key, Array("y".utf8))],
                failure: [.range(EtcdKeyRange(key: key))]
            )
            #expect(!second.succeeded)
            #expect(second.responses.first?.responseRange.kvs.first?.value == Data("x".utf8))
            let created = try #require(try await etcd.get(key)).createRevision
            let third = try await etcd.txn(
                compare: [.created(key, at: created), .value(key, equals: Array("x".utf8))],
                success: [.put(key, Array("z".utf8))]
            )
            #expect(third.succeeded)
            #expect(try await etcd.get(key)?.value == Data("z".utf8))
        }
    }

    @Test func leasesKeepKeysAliveAndTheirEndDeletesThem() async throws {
        let cluster = try EtcdTestCluster(members: 1)
        try await withClient(cluster) { etcd in
            let (id, ttl) = try await etcd.grantLease(ttlSeconds: 2)
            #expect(id != 0 && ttl == 2)
            let key = Array("/t/leased".utf8)
            try await etcd.put(key, Array("v".utf8), lease: id)
            #expect(try await etcd.get(key)?.lease == id)
            // Kept alive for 3 s, longer than its TTL: the key stays, and each renewal reports the TTL.
            let renewals = Counter()
            let keeper = Task {
                try await etcd.keepAlive(lease: id, every: .milliseconds(500)) { ttl, _ in
                    if ttl == 2 { renewals.increment() }
                }
            }
            try await Task.sleep(for: .seconds(3))
            #expect(try await etcd.get(key) != nil)
            #expect(renewals.value >= 4)
            keeper.cancel()
            _ = await keeper.result
            // Not renewed any more: etcd deletes the key once the TTL has passed.
            try await Task.sleep(for: .seconds(3))
            #expect(try await etcd.get(key) == nil)
            // Revoking ends a lease at once.
            let other = try await etcd.grantLease(ttlSeconds: 30)
            try await etcd.put(key, Array("w".utf8), lease: other.id)
            try await etcd.revokeLease(other.id)
            #expect(try await etcd.get(key) == nil)
        }
    }

    @Test func watchesDeliverEveryEventInOrderFromARevision() async throws {
        let cluster = try EtcdTestCluster(members: 1)
        try await withClient(cluster) { etcd in
            let start = try await etcd.put(Array("/w/0".utf8), Array("0".utf8)).header.revision
            for index in 1...20 { try await etcd.put(Array("/w/\(index)".utf8), Array("\(index)".utf8)) }
            try await etcd.put(Array("/elsewhere".utf8), Array("x".utf8))
            let seen = Collected()
            try await etcd.watch(EtcdKeyRange(prefix: Array("/w/".utf8)), startRevision: start) { response in
                for event in response.events { seen.append(String(decoding: event.kv.value, as: UTF8.self)) }
                return seen.values.count < 21
            }
            #expect(seen.values == (0...20).map(String.init))
            // A start revision that was compacted is reported as such, with the oldest kept.
            let last = try await etcd.put(Array("/w/last".utf8), Array("x".utf8)).header.revision
            try await etcd.compact(revision: last)
            await #expect(throws: EtcdError.compacted(last)) {
                try await etcd.watch(EtcdKeyRange(prefix: Array("/w/".utf8)), startRevision: start) { _ in true }
            }
        }
    }

    @Test func theClientMovesToAnotherMemberWhenOneDies() async throws {
        let cluster = try EtcdTestCluster(members: 3)
        try await withClient(cluster) { etcd in
            try await etcd.put(Array("/k".utf8), Array("1".utf8))
            // The channel is on the first endpoint (pick-first): kill that member.
            cluster.kill9("m1")
            let started = ContinuousClock.now
            var written = false
            while !written && ContinuousClock.now - started < .seconds(10) {
                do {
                    try await etcd.put(Array("/k".utf8), Array("2".utf8))
                    written = true
                } catch let error as EtcdError where error.outcomeUnknown {
                    continue
                }
            }
            #expect(written)
            #expect(try await etcd.get(Array("/k".utf8))?.value == Data("2".utf8))
            let status = try await etcd.status()
            #expect(status.version.hasPrefix("3."))
            #expect(status.leader != 0)
        }
    }

    /// Runs `body` with a client of `cluster`, its connections running, closed at the end.
    func withClient(_ cluster: EtcdTestCluster, _ body: (EtcdClient) async throws -> Void) async throws {
        let endpoints = try cluster.endpoints.map { try EtcdConfiguration.Endpoint(parsing: $0) }
        // Generous deadlines: these tests share two cores with the rest of the suite.
        let etcd = try EtcdClient(EtcdConfiguration(endpoints: endpoints, callTimeout: .seconds(10)))
        let connections = Task { try await etcd.run() }
        defer {
            etcd.close()
            connections.cancel()
        }
        // The first answer can take a while on two cores shared with the rest of the suite.
        let deadline = ContinuousClock.now + .seconds(60)
        while (try? await etcd.status()) == nil && ContinuousClock.now < deadline {}
        try await body(etcd)
    }
}

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func increment() { lock.withLock { count += 1 } }
    var value: Int { lock.withLock { count } }
}

final class Collected: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [String] = []
    func append(_ item: String) { lock.withLock { items.append(item) } }
    var values: [String] { lock.withLock { items } }
}
