import LicenseAudit
public import LicenseCore
public import LicenseProtocol
import LicenseStore
import Logging
import NIOCore

/// This node's place in its cluster, as the serving loop sees it.
public struct ClusterMembership: Sendable {
    /// What the node does.
    enum Role: Equatable {
        /// Copies the active node's changes; clients are sent to `activeServer` (empty: none).
        case standby(activeServer: String)
        /// Serves and writes the log, in `epoch`.
        case active(epoch: Int64)
    }

    /// What the node does now.
    var role: Role = .standby(activeServer: "")
    /// Since when the active node could not confirm its lease (nil: it can).
    var fencedSinceMs: Int64?
    /// The standby role is in the audit trail.
    var auditedStandby = false
    /// This node's id.
    let nodeID: String
    /// True while the election lets this node act (its etcd lease is certainly alive).
    let mayAct: @Sendable () -> Bool
    /// Why the log cannot acknowledge now (etcd unreachable), or nil.
    let unavailable: @Sendable () -> String?
    /// The election's epoch and count, and the log's head as last read from etcd (for /metrics).
    let facts: @Sendable () -> (epoch: Int64, elections: Int, head: UInt64)
    /// Reads the cluster's nodes from etcd and answers (on any thread).
    let status: @Sendable (@escaping @Sendable (Result<Licensed_V1_ClusterStatusResponse, LicenseError>) -> Void) -> Void

    /// A standby of a node `nodeID` whose election says `mayAct`, whose log says why it is
    /// `unavailable`, with its `facts` for /metrics and its cluster `status` for `ClusterStatus`.
    public init(
        nodeID: String,
        mayAct: @escaping @Sendable () -> Bool,
        unavailable: @escaping @Sendable () -> String?,
        facts: @escaping @Sendable () -> (epoch: Int64, elections: Int, head: UInt64),
        status: @escaping @Sendable (@escaping @Sendable (Result<Licensed_V1_ClusterStatusResponse, LicenseError>) -> Void) -> Void
    ) {
        self.nodeID = nodeID
        self.mayAct = mayAct
        self.unavailable = unavailable
        self.facts = facts
        self.status = status
    }

    var isActive: Bool { if case .active = role { true } else { false } }
}

/// The serving loop's side of the cluster: what a standby refuses and where it sends clients,
/// the batches it copies, and the moment it becomes the active node.
extension LedgerHost {
    /// True when this host may change state now: a single node, or the active node of its
    /// cluster while its etcd lease is certainly alive.
    var mayWrite: Bool {
        guard let cluster else { return true }
        return cluster.isActive && cluster.mayAct()
    }

    /// Why this node does not serve `body` now (nil: it does). A standby serves reads (status,
    /// leases, queues, activations, history) and its own snapshot to operators, and sends the
    /// rest to the active node; an active node that cannot confirm its lease, or reach etcd,
    /// acknowledges nothing.
    func clusterRefusal(for body: Licensed_V1_ClientMessage.OneOf_Body?) -> LicenseError? {
        guard let cluster else { return nil }
        switch cluster.role {
        case .standby(let active):
            if let body, Self.servedByStandby(body) { return nil }
            return Self.notActive(activeServer: active)
        case .active:
            if !cluster.mayAct() {
                return LicenseError(
                    .unavailable,
                    "this server cannot confirm with etcd that it is still the active one; nothing is acknowledged until it can or another server takes over: retry"
                )
            }
            if let reason = cluster.unavailable(), let body, !Self.servedByStandby(body) {
                return LicenseError(.unavailable, reason)
            }
            return nil
        }
    }

    /// The refusal of a client's Hello on a node that is not serving clients now (nil: it is).
    var clusterHelloRefusal: LicenseError? {
        guard let cluster else { return nil }
        switch cluster.role {
        case .standby(let active): return Self.notActive(activeServer: active)
        case .active: return cluster.mayAct() ? nil : self.clusterRefusal(for: nil)
        }
    }

    static func notActive(activeServer: String) -> LicenseError {
        let message =
            activeServer.isEmpty
            ? "this server is a standby and no server of its cluster is active now; try the others, or again in a few seconds"
            : "this server is a standby; the active server is \(activeServer)"
        return LicenseError(.notActive, message, activeServer: activeServer)
    }

    /// Requests a standby answers itself: reads of its (current) copy, and its own snapshot.
    static func servedByStandby(_ body: Licensed_V1_ClientMessage.OneOf_Body) -> Bool {
        switch body {
        case .status, .queue, .leases, .activations, .history, .snapshot, .clusterStatus: true
        default: false
        }
    }

    /// Answers `ClusterStatus`: the nodes as etcd holds them (a single node answers for itself).
    func clusterStatus(requestID: UInt64, replyTo handler: SessionHandler) {
        let loop = self.eventLoop
        let target = NIOLoopBound(handler, eventLoop: loop)
        let answer: @Sendable (Result<Licensed_V1_ClusterStatusResponse, LicenseError>) -> Void = { result in
            loop.execute {
                var reply = Licensed_V1_ServerMessage()
                reply.requestID = requestID
                switch result {
                case .success(let status): reply.clusterStatus = status
                case .failure(let error): reply.error = error.protocolError
                }
                target.value.writeDeferred(reply)
                target.value.flushDeferred()
            }
        }
        guard let cluster else {
            var node = Licensed_V1_ClusterNodeStatus()
            node.nodeID = "single"
            node.role = "single"
            node.appliedSequence = self.log.lastAssigned
            var status = Licensed_V1_ClusterStatusResponse()
            status.headSequence = self.log.lastAssigned
            status.nodes = [node]
            answer(.success(status))
            return
        }
        cluster.status(answer)
    }

    /// The active server is now `address` (empty: none); this node stays a standby.
    func followActive(_ address: String) {
        guard let cluster, !cluster.isActive, cluster.role != .standby(activeServer: address) || !cluster.auditedStandby else { return }
        self.cluster?.role = .standby(activeServer: address)
        self.cluster?.auditedStandby = true
        self.audit(
            "cluster_role",
            actor: "server",
            details: [("role", .string("standby")), ("active", .string(address)), ("node", .string(cluster.nodeID))]
        )
    }

    /// Applies changes the active node committed, then `copy` records them in the local log.
    func applyReplicated(_ changes: [LedgerChange], copy: () throws -> Void) throws {
        guard let cluster, !cluster.isActive else { throw LicenseError(.internal, "the active node applies no changes of others") }
        for change in changes { self.ledger.apply(change) }
        try copy()
        self.snapshotIfDue()
    }

    /// Becomes the active node in `epoch`: `activate` makes the log writable from the head this
    /// node caught up to. Every lease gets a fresh TTL (as after a restart: heartbeats are not
    /// logged, and its holders may have spent the failover reconnecting).
    func promote(epoch: Int64, activate: () throws -> Void) throws {
        guard let cluster, !cluster.isActive else { return }
        try activate()
        self.cluster?.role = .active(epoch: epoch)
        self.replies = HeldReplies(durable: self.log.lastAssigned)
        self.ledger.renewAll(at: self.nowMs)
        self.markClock()
        self.audit(
            "cluster_role",
            actor: "server",
            details: [("role", .string("active")), ("epoch", .int(epoch)), ("node", .string(cluster.nodeID))]
        )
        self.logger.notice(
            "this node is the active one",
            metadata: ["epoch": "\(epoch)", "leases": "\(self.ledger.leases.count)", "sequence": "\(self.log.lastAssigned)"]
        )
    }
}
