package import Etcd
import Foundation
package import LicenseProtocol
import SwiftProtobuf
import Synchronization

/// What a node is in its cluster, as its election sees it.
package enum ClusterRole: Sendable, Equatable {
    /// Not registered in etcd (starting, or etcd unreachable).
    case joining
    /// Registered; another node is active (`active` is its registration, nil when none is).
    case standby(active: Licensed_V1_ClusterMember?)
    /// Registered with the lowest create revision: this node is the active one, in `epoch`.
    case active(epoch: Int64)

    /// "joining", "standby" or "active".
    package var name: String {
        switch self {
        case .joining: "joining"
        case .standby: "standby"
        case .active: "active"
        }
    }
}

/// The election of the active node, on etcd: the node keeps an etcd lease alive and a key
/// `members/<node id>` attached to it; the member whose key has the lowest create revision is
/// the active node and that revision is its epoch. When the active node's lease ends (the
/// process died, the machine went away, it was cut off) etcd deletes its key and the next member
/// in create order becomes active.
///
/// A node must not act as active once a successor could: etcd ends a lease no earlier than
/// `TTL` after the newest renewal it received, and a renewal is received after it was sent, so
/// the node may act until `sent + TTL - margin` of its newest answered renewal (its own
/// monotonic clock; the margin covers the two clocks' drift and scheduling). `mayAct()` says
/// whether that instant is still ahead.
package final class Election: Sendable {
    /// What `run()` ended with.
    package enum Ending: Sendable, Equatable {
        /// etcd ended this node's lease (it was not renewed in time): its registration is gone.
        case leaseLost
        /// The task was cancelled: the lease was revoked, so a successor takes over at once.
        case resigned
    }

    struct State {
        var role: ClusterRole = .joining
        var lease: Int64 = 0
        var epoch: Int64 = 0
        var validUntil: ContinuousClock.Instant?
        var elections = 0
    }

    let etcd: EtcdClient
    let keys: ClusterKeys
    let member: Licensed_V1_ClusterMember
    /// The etcd lease's time to live, in whole seconds (etcd's unit).
    package let ttlSeconds: Int64
    /// How long before the lease could end on etcd's side this node stops acting.
    package let margin: Duration
    let onChange: @Sendable (ClusterRole) -> Void
    let state = Mutex(State())

    /// An election of `member` in the cluster of `keys`; `onChange` hears every change of role.
    package init(
        etcd: EtcdClient,
        keys: ClusterKeys,
        member: Licensed_V1_ClusterMember,
        ttlSeconds: Int64,
        onChange: @escaping @Sendable (ClusterRole) -> Void
    ) {
        self.etcd = etcd
        self.keys = keys
        self.member = member
        self.ttlSeconds = ttlSeconds
        self.margin = max(.seconds(ttlSeconds) / 5, .milliseconds(300))
        self.onChange = onChange
    }

    /// This node's role now.
    package var role: ClusterRole { state.withLock { $0.role } }
    /// This node's epoch while it is active (its member key's create revision), else 0.
    package var epoch: Int64 { state.withLock { if case .active(let epoch) = $0.role { epoch } else { 0 } } }
    /// The etcd lease of this node's registration (0: not registered).
    package var lease: Int64 { state.withLock { $0.lease } }
    /// Times this node became active.
    package var elections: Int { state.withLock { $0.elections } }

    /// True while this node is active and its lease is certainly alive on etcd's side.
    package func mayAct(at now: ContinuousClock.Instant = .now) -> Bool {
        state.withLock { state in
            guard case .active = state.role, let validUntil = state.validUntil else { return false }
            return now < validUntil
        }
    }

    /// The instant until which this node's registration is certainly alive (nil: not registered).
    package var validUntil: ContinuousClock.Instant? { state.withLock { $0.validUntil } }

    /// Registers this node and keeps it registered, following who is active, until etcd ends
    /// its lease or the task is cancelled. Waits (retrying) while etcd is unreachable.
    package func run() async -> Ending {
        defer { setRole(.joining, lease: 0, epoch: 0) }
        guard let (lease, revision) = await register() else { return .resigned }
        let ending = await withTaskGroup(of: Ending?.self) { group in
            group.addTask { await self.keepAlive(lease) }
            group.addTask {
                await self.follow(fromRevision: revision)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first ?? .resigned
        }
        if ending == .resigned {
            // A clean stop: end the lease now rather than after its TTL (in a task of its own,
            // since this one is cancelled and would cancel the call).
            let etcd = self.etcd
            await Task { try? await etcd.revokeLease(lease) }.value
        }
        return ending
    }

    /// Grants a lease and creates this node's key with it (replacing a key a previous run of
    /// the same node left behind, so that every run has an epoch of its own). Returns the lease
    /// and the key's create revision; nil when cancelled.
    func register() async -> (lease: Int64, revision: Int64)? {
        let key = keys.member(member.nodeID)
        let value: [UInt8] = (try? member.serializedBytes()) ?? []
        while !Task.isCancelled {
            do throws(EtcdError) {
                let sent = ContinuousClock.now
                let (lease, ttl) = try await etcd.grantLease(ttlSeconds: ttlSeconds)
                var created = try await etcd.txn(
                    compare: [.created(key, at: 0)],
                    success: [.put(key, value, lease: lease)],
                    failure: [.delete(EtcdKeyRange(key: key))]
                )
                if !created.succeeded {
                    created = try await etcd.txn(compare: [.created(key, at: 0)], success: [.put(key, value, lease: lease)])
                }
                guard created.succeeded else {
                    try? await etcd.revokeLease(lease)
                    continue
                }
                state.withLock { $0.validUntil = sent + .seconds(ttl) - margin }
                let revision = created.header.revision
                state.withLock {
                    $0.lease = lease
                    $0.epoch = revision
                }
                return (lease, revision)
            } catch {
                try? await Task.sleep(for: .milliseconds(200))
            }
        }
        return nil
    }

    /// Renews `lease` every third of its TTL until etcd says it has ended (`.leaseLost`) or the
    /// task is cancelled (nil). A broken stream is reopened (on another member when one died).
    func keepAlive(_ lease: Int64) async -> Ending? {
        let interval = Duration.seconds(ttlSeconds) / 3
        while !Task.isCancelled {
            do throws(EtcdError) {
                try await etcd.keepAlive(lease: lease, every: interval) { ttl, sent in
                    self.state.withLock { $0.validUntil = sent + .seconds(ttl) - self.margin }
                }
                return .leaseLost
            } catch {
                if Task.isCancelled { return nil }
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
        return nil
    }

    /// Follows the member keys from `revision` on, recomputing the role at each change.
    func follow(fromRevision revision: Int64) async {
        var next = revision
        while !Task.isCancelled {
            do throws(EtcdError) {
                next = max(next, try await refreshRole() + 1)
                let seen = Revision(next)
                try await etcd.watch(EtcdKeyRange(prefix: keys.members), startRevision: next) { response in
                    guard !response.events.isEmpty else { return true }
                    seen.advance(to: try await self.refreshRole() + 1)
                    return true
                }
                next = seen.value
            } catch {
                if Task.isCancelled { return }
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
    }

    /// Reads every member and sets the role: active when this node's key has the lowest create
    /// revision. Returns the revision read at.
    @discardableResult
    func refreshRole() async throws(EtcdError) -> Int64 {
        let response = try await etcd.range(EtcdKeyRange(prefix: keys.members))
        let members = response.kvs.sorted { $0.createRevision < $1.createRevision }
        let mine = keys.member(member.nodeID)
        let (lease, epoch) = state.withLock { ($0.lease, $0.epoch) }
        if let first = members.first, Array(first.key) == mine, first.lease == lease, first.createRevision == epoch {
            setRole(.active(epoch: epoch), lease: lease, epoch: epoch)
        } else if members.contains(where: { Array($0.key) == mine && $0.lease == lease }) {
            let active = members.first.flatMap { try? Licensed_V1_ClusterMember(serializedBytes: [UInt8]($0.value)) }
            setRole(.standby(active: active), lease: lease, epoch: epoch)
        } else {
            // Our key is gone (the lease ended): keepAlive reports it.
            setRole(.joining, lease: lease, epoch: epoch)
        }
        return response.header.revision
    }

    func setRole(_ role: ClusterRole, lease: Int64, epoch: Int64) {
        let changed = state.withLock { state -> Bool in
            guard state.role != role else { return false }
            if case .active = role { state.elections += 1 }
            state.role = role
            return true
        }
        if changed { onChange(role) }
    }
}

/// The next revision a watch resumes from, shared with its handler.
final class Revision: Sendable {
    private let next: Mutex<Int64>

    init(_ value: Int64) { next = Mutex(value) }

    var value: Int64 { next.withLock { $0 } }

    func advance(to value: Int64) { next.withLock { $0 = max($0, value) } }
}
