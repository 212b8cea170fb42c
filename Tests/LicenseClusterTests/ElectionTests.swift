import Etcd
import Foundation
import LicenseCluster
import LicenseProtocol
import LicenseTestSupport
import Testing

/// The election against a real etcd.
@Suite(.serialized, .enabled(if: EtcdTestCluster.available, "etcd-server is not installed (the test command installs it)"))
struct ElectionTests {
    let keys = ClusterKeys(cluster: "test")

    @Test func theFirstRegisteredIsActiveAndAResignationHandsOverAtOnce() async throws {
        let cluster = try EtcdTestCluster(members: 1)
        let client = try RunningClient(cluster)
        await client.ready()
        defer { client.stop() }
        let logA = RoleLog()
        let logB = RoleLog()
        // A TTL far longer than the hand-over: only the revocation can explain a quick one.
        let a = Election(etcd: client.etcd, keys: keys, member: member("a"), ttlSeconds: 10, onChange: logA.record)
        let b = Election(etcd: client.etcd, keys: keys, member: member("b"), ttlSeconds: 10, onChange: logB.record)
        let runA = Task { await a.run() }
        #expect(await eventually { a.mayAct() })
        let runB = Task { await b.run() }
        #expect(await eventually { if case .standby = b.role { true } else { false } })
        // The standby knows who is active, and how to send clients there.
        #expect(b.role == .standby(active: member("a")))
        #expect(!b.mayAct())
        let epochA = a.epoch
        #expect(epochA > 0)
        // A clean stop revokes the lease: the standby is active well within one TTL.
        let resigned = ContinuousClock.now
        runA.cancel()
        #expect(await runA.value == .resigned)
        #expect(await eventually(.seconds(5)) { b.mayAct() })
        #expect(ContinuousClock.now - resigned < .seconds(5))
        #expect(b.epoch > epochA)
        #expect(!a.mayAct())
        runB.cancel()
        _ = await runB.value
    }

    @Test func aNodeCutOffStopsActingBeforeItsSuccessorStarts() async throws {
        let cluster = try EtcdTestCluster(members: 1)
        let clientA = try RunningClient(cluster)
        await clientA.ready()
        let clientB = try RunningClient(cluster)
        await clientB.ready()
        defer { clientB.stop() }
        let logB = RoleLog()
        let a = Election(etcd: clientA.etcd, keys: keys, member: member("a"), ttlSeconds: 2, onChange: { _ in })
        let b = Election(etcd: clientB.etcd, keys: keys, member: member("b"), ttlSeconds: 2, onChange: logB.record)
        let runA = Task { await a.run() }
        #expect(await eventually { a.mayAct() })
        let runB = Task { await b.run() }
        #expect(await eventually { if case .standby = b.role { true } else { false } })
        // A loses etcd (as a crashed or cut-off node does): no renewal, no revocation.
        let cut = ContinuousClock.now
        clientA.stop()
        #expect(await eventually { b.mayAct() })
        let takeover = try #require(logB.becameActive)
        let lastInstantAMayAct = try #require(a.validUntil)
        // A stopped acting before B could start, and B took over within about a TTL of the cut
        // (the bound allows for two cores shared with the rest of the suite; the failover drill
        // measures the real figure).
        #expect(lastInstantAMayAct < takeover)
        #expect(!a.mayAct())
        #expect(takeover - cut < .seconds(5))
        runA.cancel()
        runB.cancel()
        _ = await runA.value
        _ = await runB.value
    }

    @Test func aRestartedNodeReplacesItsOldKeyWithANewEpoch() async throws {
        let cluster = try EtcdTestCluster(members: 1)
        let clientA = try RunningClient(cluster)
        await clientA.ready()
        let a = Election(etcd: clientA.etcd, keys: keys, member: member("a"), ttlSeconds: 30, onChange: { _ in })
        let runA = Task { await a.run() }
        #expect(await eventually { a.mayAct() })
        let firstEpoch = a.epoch
        // The process dies: its key stays until the 30 s lease ends.
        clientA.stop()
        runA.cancel()
        _ = await runA.value
        let client = try RunningClient(cluster)
        await client.ready()
        defer { client.stop() }
        #expect(try await client.etcd.get(keys.member("a")) != nil)
        // Restarted, it registers at once with a new key and a later epoch, not the old one's.
        let again = Election(etcd: client.etcd, keys: keys, member: member("a"), ttlSeconds: 30, onChange: { _ in })
        let runAgain = Task { await again.run() }
        #expect(await eventually(.seconds(5)) { again.mayAct() })
        #expect(again.epoch > firstEpoch)
        runAgain.cancel()
        #expect(await runAgain.value == .resigned)
        #expect(try await client.etcd.get(keys.member("a")) == nil)
    }
}
