import Etcd
import Foundation
import LicenseCluster
import LicenseCore
import LicenseFiles
import LicenseProtocol
public import LicenseServer
import LicenseStore
import Logging
import Synchronization

/// A node of a cluster on etcd: its etcd client, its election, its replicated log, and the work
/// that moves it between roles — a standby copies every batch the active node commits; when
/// elected it catches up to the log's head, gives every lease a fresh TTL and serves; when it is
/// no longer the active one (its lease ended, another node wrote the log) it stops acknowledging
/// and exits, so that systemd restarts it as a standby with a clean state (what Kubernetes'
/// controllers do on losing their lease).
public final class ClusterNode: ServerCluster {
    let context: ServerContext
    let etcd: EtcdClient
    let keys: ClusterKeys
    let member: Licensed_V1_ClusterMember
    let election: Election
    let roles: AsyncStream<ClusterRole>
    /// The replicated log, once `source` has opened it.
    let opened = Mutex<ReplicatedLog?>(nil)
    /// The snapshot-transfer secret, once read.
    let token = Mutex<String?>(nil)
    /// How far this node compacted the log.
    let compactedUpTo = Mutex<UInt64>(0)
    /// The log's head as last read from etcd (for a standby's lag).
    let knownHead = Mutex<UInt64>(0)

    /// A node of the cluster `context`'s configuration names (not yet running).
    public init(context: ServerContext) throws {
        let configuration = context.configuration
        self.context = context
        let endpoints = try Self.endpoints(configuration)
        let tls = Self.tls(configuration)
        // A call that etcd does not answer within a third of the TTL is retried or resolved by
        // reading, well before the node's lease is in doubt.
        let ttl = configuration.clusterElectionTTLSeconds
        do {
            self.etcd = try EtcdClient(
                EtcdConfiguration(endpoints: endpoints, tls: tls, callTimeout: .milliseconds(max(500, ttl * 1000 / 3)))
            )
        } catch {
            throw ConfigurationError("cannot set up the etcd client: \(error)")
        }
        self.keys = ClusterKeys(cluster: configuration.clusterName)
        var member = Licensed_V1_ClusterMember()
        member.nodeID = Self.nodeID(configuration)
        member.clientAddress = Self.advertisedAddress(configuration)
        if configuration.metricsListen != "off" { member.operatorURL = "http://\(configuration.metricsListen)" }
        member.startedAtMs = context.clock.nowMs()
        self.member = member
        let (roles, changed) = AsyncStream.makeStream(of: ClusterRole.self)
        self.roles = roles
        self.election = Election(etcd: etcd, keys: keys, member: member, ttlSeconds: Int64(ttl)) { role in changed.yield(role) }
    }

    static func nodeID(_ configuration: ServerConfiguration) -> String {
        configuration.clusterNodeID.isEmpty ? ProcessInfo.processInfo.hostName : configuration.clusterNodeID
    }

    static func advertisedAddress(_ configuration: ServerConfiguration) -> String {
        if !configuration.clusterAdvertiseAddress.isEmpty { return configuration.clusterAdvertiseAddress }
        let host = ["0.0.0.0", "::", ""].contains(configuration.listenHost) ? ProcessInfo.processInfo.hostName : configuration.listenHost
        return "\(host):\(configuration.port)"
    }

    /// The commit log of this node: its local write-ahead log (and audit trail) under
    /// `<state_dir>`, as a copy of the log in etcd.
    public var source: CommitLogSource {
        CommitLogSource { context in
            let configuration = context.configuration
            let directory = (configuration.stateDir as NSString).appendingPathComponent("ledger")
            func openLocal() throws -> (LedgerStore, LedgerStore.Recovery) {
                do {
                    return try LedgerStore.open(
                        directory: directory,
                        sync: configuration.sync,
                        retainedSnapshots: configuration.snapshotsRetained,
                        audit: try CommitLogSource.openAuditTrail(context)
                    )
                } catch let error as StoreError {
                    throw ConfigurationError("cannot recover the ledger from \(directory): \(error.message)")
                }
            }
            var (store, recovery) = try openLocal()
            if let snapshot = try self.snapshotNeeded(after: store.lastAssigned) {
                // Joined empty, or away while the log was compacted: a peer's snapshot replaces
                // this node's copy, and the log in etcd has everything after it.
                store.close()
                do {
                    try LedgerStore.install(snapshot: snapshot, into: directory)
                } catch {
                    throw ConfigurationError("cannot install the peer's snapshot in \(directory): \(error)")
                }
                (store, recovery) = try openLocal()
            }
            let log = ReplicatedLog(
                etcd: self.etcd,
                keys: self.keys,
                nodeID: self.member.nodeID,
                local: store,
                snapshotSequence: recovery.snapshotSequence
            )
            self.opened.withLock { $0 = log }
            return (log, recovery.replay(sync: configuration.sync))
        }
    }

    var log: ReplicatedLog {
        // `source` ran before anything asks.
        opened.withLock { $0! }
    }

    /// The serving loop's view of this node.
    public func membership() -> ClusterMembership {
        let election = self.election
        let log = self.log
        return ClusterMembership(
            nodeID: member.nodeID,
            mayAct: { election.mayAct() },
            unavailable: { log.unavailable },
            facts: { (election.epoch, election.elections, self.knownHead.withLock { $0 }) },
            status: { answer in
                Task {
                    do {
                        answer(.success(try await self.status()))
                    } catch {
                        answer(.failure(LicenseError(.unavailable, "cannot read the cluster from etcd: \(error)")))
                    }
                }
            }
        )
    }

    /// Runs the node until the task is cancelled (after the server has stopped serving and
    /// closed the log): then it resigns, so that a standby takes over at once.
    public func run(_ ledger: ClusterLedger) async {
        let etcd = self.etcd
        let connections = Task { try? await etcd.run() }
        let logger = context.logger
        logger.info(
            "joining the cluster",
            metadata: [
                "cluster": "\(keys.prefix)", "node": "\(member.nodeID)", "address": "\(member.clientAddress)",
                "etcd": "\(context.configuration.clusterEtcdEndpoints.joined(separator: ","))",
            ]
        )
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                let ending = await self.election.run()
                if ending == .leaseLost {
                    self.log.fail("this node's etcd lease ended before it could renew it; it restarts as a standby")
                }
            }
            group.addTask { await self.followRoles(ledger) }
            group.addTask { await self.maintain() }
            await group.next()
            group.cancelAll()
        }
        etcd.close()
        _ = await connections.value
    }

    /// Moves the node between roles as the election reports them.
    func followRoles(_ ledger: ClusterLedger) async {
        let logger = context.logger
        var following: Task<Void, Never>? = startFollowing(ledger)
        var active = false
        for await role in roles {
            if Task.isCancelled { break }
            logger.info("cluster role", metadata: ["role": "\(role.name)"])
            switch role {
            case .joining:
                if active {
                    log.fail("this node's registration in etcd is gone; it restarts as a standby")
                    return
                }
            case .standby(let leader):
                if active {
                    log.fail("another node (\(leader?.nodeID ?? "?")) is active now; this one restarts as a standby")
                    return
                }
                let address = leader?.clientAddress ?? ""
                ledger.followActive(address)
            case .active(let epoch):
                guard !active else { continue }
                following?.cancel()
                await following?.value
                following = nil
                active = await promote(epoch: epoch, ledger)
            }
        }
        following?.cancel()
    }

    /// A standby's copying: every batch the active node commits, applied on the loop.
    func startFollowing(_ ledger: ClusterLedger) -> Task<Void, Never> {
        let follower = LogFollower(etcd: etcd, keys: keys)
        let log = self.log
        return Task {
            do {
                try await follower.follow(committed: { log.committed }) { batch in
                    try await ledger.apply(batch.changes) { try log.applyCommitted(batch) }
                }
            } catch {
                if !Task.isCancelled { log.fail("cannot copy the cluster's log: \(error)") }
            }
        }
    }

    /// Catches up to the log's head and serves; retries while this node stays elected. Returns
    /// whether it became the active node.
    func promote(epoch: Int64, _ ledger: ClusterLedger) async -> Bool {
        let follower = LogFollower(etcd: etcd, keys: keys)
        let log = self.log
        let started = ContinuousClock.now
        while election.role == .active(epoch: epoch), !Task.isCancelled {
            do {
                let (head, _) = try await follower.catchUp(after: log.committed) { batch in
                    try await ledger.apply(batch.changes) { try log.applyCommitted(batch) }
                }
                try await ledger.promote(epoch: epoch) { try log.activate(epoch: epoch, head: head) }
                let elapsed = ContinuousClock.now - started
                context.logger.notice(
                    "serving as the active node",
                    metadata: ["epoch": "\(epoch)", "head": "\(head.map { "\($0.last)" } ?? "0")", "catch_up": "\(elapsed)"]
                )
                return true
            } catch {
                context.logger.warning("cannot take over yet: \(error)")
                try? await Task.sleep(for: .milliseconds(200))
            }
        }
        return false
    }
}
