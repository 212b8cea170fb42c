import Foundation
import HeapModule
import LicenseProtocol

/// Applying a change: the one place durable state changes. Requests produce changes through the
/// other extensions; replay of the write-ahead log and snapshots calls `apply` directly.
extension SeatLedger {
    /// Performs one change. The only place durable state changes; replay calls it directly.
    public mutating func apply(_ change: LedgerChange) {
        switch change {
        case .granted(var lease):
            // Replayed leases each bring their own copy of the identity: share the session's (a
            // lease granted here has it already, and setting it would copy the lease's box).
            if let identity = self.sessions[lease.sessionID]?.identity, !identity.isIdentical(to: lease.identity),
                identity == lease.identity
            {
                lease.identity = identity
            }
            self.leases[lease.id] = lease
            if lease.sharedSeats > 0 {
                let key = DupKey(licenseID: lease.licenseID, feature: lease.feature, identity: lease.dupIdentity)
                if self.dupGroups[key] == nil {
                    self.dupGroups[key] = DupGroup(
                        seats: lease.sharedSeats,
                        members: [],
                        user: lease.identity.user,
                        groups: lease.identity.groups
                    )
                    self.charge(lease, seats: lease.sharedSeats, user: lease.identity.user, groups: lease.identity.groups, sign: 1)
                }
                self.dupGroups[key]!.members.insert(lease.id)
            } else {
                self.charge(lease, seats: lease.count, user: lease.identity.user, groups: lease.identity.groups, sign: 1)
            }
            if !lease.checkoutKey.isEmpty { self.leaseByKey[CheckoutKey(lease.checkoutKey)] = lease.id }
            Self.raise(&self.fencing[lease.feature, default: 0], to: lease.fencingToken)
            self.clockHighWaterMs = max(self.clockHighWaterMs, lease.grantedAtMs)
            if lease.lingering {
                self.lingering.insert(lease.id)
            } else {
                if self.sessions[lease.sessionID] == nil {
                    // Replay: the session is rebuilt from its leases, waiting for its client to resume.
                    self.sessions[lease.sessionID] = SessionRecord(identity: lease.identity, attached: false)
                }
                self.sessions[lease.sessionID]!.leases.insert(lease.id)
                if lease.baseLeaseID != nil { self.sessions[lease.sessionID]!.addOns.insert(lease.id) }
            }
            self.expiries.insert(Expiry(atMs: lease.expiresAtMs, leaseID: lease.id))
        case .released(let id, _, _):
            guard let lease = self.leases.removeValue(forKey: id) else { return }
            if lease.sharedSeats > 0 {
                let key = DupKey(licenseID: lease.licenseID, feature: lease.feature, identity: lease.dupIdentity)
                if var group = self.dupGroups[key] {
                    group.members.remove(id)
                    if group.members.isEmpty {
                        self.dupGroups[key] = nil
                        self.charge(lease, seats: group.seats, user: group.user, groups: group.groups, sign: -1)
                    } else {
                        self.dupGroups[key] = group
                    }
                }
            } else {
                self.charge(lease, seats: lease.count, user: lease.identity.user, groups: lease.identity.groups, sign: -1)
            }
            if !lease.checkoutKey.isEmpty { self.leaseByKey[CheckoutKey(lease.checkoutKey)] = nil }
            self.lingering.remove(id)
            self.removeFromSession(id, lease.sessionID)
            // The lease's expiry entry stays until it surfaces (a heap cannot drop it cheaply).
            // Once such entries outnumber the live leases, the index is rebuilt from the live ones:
            // O(live) every O(live) releases, so memory follows the leases held, not the
            // check-outs served (at 45k pairs/s and a 120 s TTL the entries alone were 130 MB).
            if self.expiries.count > 2 * self.leases.count + 4_096 { self.rebuildExpiries() }
        case .rebound(let id, let newSession):
            guard var lease = self.leases[id] else { return }
            self.removeFromSession(id, lease.sessionID)
            self.lingering.remove(id)
            lease.update {
                $0.lingering = false
                $0.sessionID = newSession
            }
            self.leases[id] = lease
            if self.sessions[newSession] == nil {
                self.sessions[newSession] = SessionRecord(identity: lease.identity, attached: false)
            }
            self.sessions[newSession]!.leases.insert(id)
            if lease.baseLeaseID != nil { self.sessions[newSession]!.addOns.insert(id) }
        case .lingered(let id, let untilMs):
            guard var lease = self.leases[id] else { return }
            self.removeFromSession(id, lease.sessionID)
            lease.lingering = true
            lease.expiresAtMs = untilMs
            self.leases[id] = lease
            self.lingering.insert(id)
            self.expiries.insert(Expiry(atMs: untilMs, leaseID: id))
        case .trialStarted(let licenseID, let atMs):
            self.trialStarts[licenseID] = min(self.trialStarts[licenseID] ?? atMs, atMs)
            self.clockHighWaterMs = max(self.clockHighWaterMs, atMs)
        case .activated(let activation):
            self.activations[activation.id] = activation
            self.clockHighWaterMs = max(self.clockHighWaterMs, activation.lastSeenMs)
        case .activationSeen(let id, let atMs):
            self.clockHighWaterMs = max(self.clockHighWaterMs, atMs)
            if var activation = self.activations[id] {
                activation.lastSeenMs = max(activation.lastSeenMs, atMs)
                self.activations[id] = activation
            }
        case .deactivated(let id, _, let atMs):
            self.activations[id] = nil
            self.clockHighWaterMs = max(self.clockHighWaterMs, atMs)
        case .assignmentRun(let run):
            self.assignmentRuns.append(run)
            if self.assignmentRuns.count > 1_000 { self.assignmentRuns.removeFirst(self.assignmentRuns.count - 1_000) }
        case .clockMarked(let atMs):
            self.clockHighWaterMs = max(self.clockHighWaterMs, atMs)
        }
    }

    private mutating func removeFromSession(_ id: LeaseID, _ sessionID: SessionID) {
        // Changed in place: a copy of the record would copy its sets too.
        guard let index = self.sessions.index(forKey: sessionID) else { return }
        self.sessions.values[index].leases.remove(id)
        self.sessions.values[index].addOns.remove(id)
        if self.sessions.values[index].leases.isEmpty && !self.sessions.values[index].attached { self.sessions.remove(at: index) }
    }

    /// Adds (sign 1) or removes (sign -1) `seats` of `lease`'s licence and feature from every counter:
    /// the seats (and overage) under the licence's feature, and — when a rule reads them
    /// (`countsHolders`) — the seats each user and group holds, under the feature and under "*".
    mutating func charge(_ lease: Lease, seats: UInt32, user: String, groups: [String], sign: Int) {
        if lease.tokenCost > 0 {
            let tokens = seats * lease.tokenCost
            let current = self.tokensInUse[lease.licenseID] ?? 0
            self.tokensInUse[lease.licenseID] = sign > 0 ? current + tokens : (current > tokens ? current - tokens : 0)
        }
        let key = PoolKey(licenseID: lease.licenseID, feature: lease.feature)
        let entries = self.usage.count
        defer { if self.usage.count > entries { self.indexUsage(key) } }
        guard self.countsHolders else {
            // No rule reads who holds seats: the seat counts alone (no user, group or "*" key hashed).
            self.usage[key, default: PoolUsage()].adjust(seats: seats, overage: lease.overage, sign: sign)
            return
        }
        let lineage = self.lineage(of: groups)
        // One lookup of the feature's key for its seats and its holders.
        self.usage[key, default: PoolUsage()].adjust(seats: seats, overage: lease.overage, sign: sign, user: user, lineage: lineage)
        self.usage[PoolKey(licenseID: lease.licenseID, feature: "*"), default: PoolUsage()].adjustHolders(
            seats: seats,
            sign: sign,
            user: user,
            lineage: lineage
        )
    }

    /// Turns the holder counts on or off as the rules in force need them: a licence's MAX limits
    /// or reservations, or the server's per-user maximum or reservations. Turned on, they are
    /// counted afresh from the leases held (a reload that brings the first such rule); turned off,
    /// dropped.
    mutating func updateHolderCounting() {
        let needed =
            self.configuration.restrictions.contains { $0.maxPerUser > 0 || !$0.reservations.isEmpty }
            || self.pools.values.contains { !$0.limits.isEmpty || !$0.reservations.isEmpty }
        guard needed != self.countsHolders else { return }
        self.countsHolders = needed
        self.recountHolders()
    }

    /// Adds `key`'s licence to its feature's in `usageLicensesByFeature` (`charge` just made a
    /// `usage` entry; "*" keys hold no seats and are not indexed).
    private mutating func indexUsage(_ key: PoolKey) {
        guard key.feature != "*" else { return }
        if self.usageLicensesByFeature[key.feature]?.contains(key.licenseID) != true {
            self.usageLicensesByFeature[key.feature, default: []].append(key.licenseID)
        }
    }

    /// Counts the seats each user and group holds from the leases (and shared-seat groups) held.
    mutating func recountHolders() {
        // "*" keys hold nothing but holder counts.
        self.usage = self.usage.filter { $0.key.feature != "*" }
        for index in self.usage.indices {
            self.usage.values[index].byUser = [:]
            self.usage.values[index].byGroup = [:]
        }
        guard self.countsHolders else { return }
        func count(licenseID: String, feature: String, seats: UInt32, user: String, groups: [String]) {
            let lineage = self.lineage(of: groups)
            for key in [PoolKey(licenseID: licenseID, feature: feature), PoolKey(licenseID: licenseID, feature: "*")] {
                self.usage[key, default: PoolUsage()].adjustHolders(seats: seats, sign: 1, user: user, lineage: lineage)
            }
        }
        for shard in 0..<LeaseTable.shardCount {
            // Leases sharing seats are counted once, through their group.
            for lease in self.leases.leases(inShard: shard) where lease.sharedSeats == 0 {
                count(
                    licenseID: lease.licenseID,
                    feature: lease.feature,
                    seats: lease.count,
                    user: lease.identity.user,
                    groups: lease.identity.groups
                )
            }
        }
        for (key, group) in self.dupGroups {
            count(licenseID: key.licenseID, feature: key.feature, seats: group.seats, user: group.user, groups: group.groups)
        }
    }

    /// Raises a high-water mark in place (one lookup of its dictionary key, not two).
    static func raise(_ mark: inout UInt64, to value: UInt64) {
        if value > mark { mark = value }
    }

    /// Every group a holder is within, once ("/emea/sales" is within "/emea/sales" and "/emea").
    /// Each path's lineage is worked out once and kept: a check-out and its check-in would
    /// otherwise split and join the same paths every time.
    private mutating func lineage(of groups: [String]) -> [String] {
        switch groups.count {
        case 0: return []
        case 1: return self.lineage(of: groups[0])
        default:
            // A few groups (the usual case): a linear check is cheaper than hashing into a set.
            var all: [String] = []
            var seen = groups.count > 8 ? Set<String>() : nil
            for group in groups {
                for path in self.lineage(of: group) {
                    if seen == nil ? !all.contains(path) : seen!.insert(path).inserted { all.append(path) }
                }
            }
            return all
        }
    }

    private mutating func lineage(of group: String) -> [String] {
        if let known = self.lineages[group] { return known }
        let lineage = GroupPath.lineage(group)
        // Bounded: an organisation has far fewer distinct group paths; past the bound, work it out.
        if self.lineages.count < Self.maxKeptLineages { self.lineages[group] = lineage }
        return lineage
    }
}
