import DequeModule
import Foundation
import HeapModule
import LicenseProtocol

extension SeatLedger {
    /// Returns a lease. Only its session may, unless `asAdmin`. Add-ons granted under it are
    /// released with it. With a linger time the seat stays held for the same identity a while.
    public mutating func checkIn(_ leaseID: LeaseID, by sessionID: SessionID, asAdmin: Bool = false, at nowMs: Int64) -> Result<
        CheckIn, LicenseError
    > {
        guard let lease = self.leases[leaseID], !lease.lingering else {
            return .failure(LicenseError(.notFound, "no lease \(leaseID); it was already checked in or reclaimed"))
        }
        guard lease.sessionID == sessionID || asAdmin else {
            return .failure(LicenseError(.permissionDenied, "lease \(leaseID) belongs to another session"))
        }
        let revoked = asAdmin && lease.sessionID != sessionID
        var changes: [LedgerChange] = []
        var addOns: [Lease] = []
        for other in self.addOns(of: leaseID, session: lease.sessionID) {
            addOns.append(other)
            changes.append(.released(other.id, .baseReleased, atMs: nowMs))
        }
        let linger = Int64(self.pools[lease.licenseID]?.license.lease.lingerMs ?? 0)
        if linger > 0, !revoked, !lease.borrowed {
            changes.append(.lingered(leaseID, untilMs: nowMs + linger))
        } else {
            changes.append(.released(leaseID, revoked ? .revoked : .checkedIn, atMs: nowMs))
        }
        for change in changes { self.apply(change) }
        return .success(CheckIn(lease: lease, releasedAddOns: addOns, changes: changes))
    }

    /// Renews the named leases of a session, or all of them when `leaseIDs` is empty. Borrowed
    /// leases keep their fixed expiry.
    public mutating func heartbeat(session sessionID: SessionID, leaseIDs: [LeaseID], at nowMs: Int64) -> Heartbeat {
        let owned = self.sessions[sessionID]?.leases ?? []
        let targets = leaseIDs.isEmpty ? Array(owned) : leaseIDs
        var renewed = 0
        var latest: Int64 = 0
        var lost: [LeaseID] = []
        for id in targets {
            guard owned.contains(id) else {
                lost.append(id)
                continue
            }
            self.renew(id, at: nowMs)
            renewed += 1
            latest = max(latest, self.leases[id]!.expiresAtMs)
        }
        return Heartbeat(renewed: renewed, expiresAtMs: latest, lost: lost)
    }

    /// Gives every held lease a full TTL from `nowMs` (after recovery, so a restart takes no seat
    /// from a live client). Borrows and lingering seats keep their own expiry.
    ///
    /// Renews in place and rebuilds the expiry index in one O(n) heapify (not a lookup, a copy
    /// and a heap insert per lease: at a million leases after a restart, 1 s less).
    public mutating func renewAll(at nowMs: Int64) {
        var entries: [Expiry] = []
        entries.reserveCapacity(self.leases.count)
        self.leases.updateEach { lease in
            if !lease.borrowed, !lease.lingering, nowMs + lease.ttlMs > lease.expiresAtMs { lease.expiresAtMs = nowMs + lease.ttlMs }
            entries.append(Expiry(atMs: lease.expiresAtMs, leaseID: lease.id))
        }
        self.expiries = Heap(entries)
    }

    /// Pushes a lease's expiry out. The expiry index is not touched: its entry for the lease is
    /// now early, and the reaper moves it to the new time when it surfaces — once a TTL at most,
    /// instead of one heap insert (and one entry left behind) per heartbeat.
    mutating func renew(_ id: LeaseID, at nowMs: Int64) {
        guard var lease = self.leases[id], !lease.borrowed, !lease.lingering else { return }
        let expiry = nowMs + lease.ttlMs
        guard expiry > lease.expiresAtMs else { return }
        lease.expiresAtMs = expiry
        self.leases[id] = lease
    }

    /// Reclaims every lease whose time ran out by `nowMs` (TTL lapsed, borrow over, linger over).
    /// Costs O(log n) per entry that surfaces: leases due now, leases renewed since their entry
    /// was made (moved to their new expiry), entries of leases already gone — never a walk over
    /// all leases. Add-ons of a reclaimed base go with it.
    ///
    /// The expiry index holds, for every live lease, an entry no later than its expiry.
    public mutating func reap(at nowMs: Int64) -> [(lease: Lease, change: LedgerChange)] {
        var reclaimed: [(Lease, LedgerChange)] = []
        while let next = self.expiries.min, next.atMs <= nowMs {
            self.expiries.removeMin()
            guard let lease = self.leases[next.leaseID] else { continue }
            guard lease.expiresAtMs <= nowMs else {
                // Renewed since this entry was made: it comes back at its new time.
                self.expiries.insert(Expiry(atMs: lease.expiresAtMs, leaseID: lease.id))
                continue
            }
            for other in self.addOns(of: lease.id, session: lease.sessionID) {
                let change = LedgerChange.released(other.id, .baseReleased, atMs: nowMs)
                self.apply(change)
                reclaimed.append((other, change))
            }
            let change = LedgerChange.released(lease.id, .expired, atMs: nowMs)
            self.apply(change)
            reclaimed.append((lease, change))
        }
        return reclaimed
    }

    // MARK: - Applying changes

    /// Performs one change. The only place durable state changes; replay calls it directly.
    public mutating func apply(_ change: LedgerChange) {
        switch change {
        case .granted(var lease):
            // Replayed leases each bring their own copy of the identity: share the session's.
            if let identity = self.sessions[lease.sessionID]?.identity, identity == lease.identity { lease.identity = identity }
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
            if !lease.checkoutKey.isEmpty { self.leaseByKey[lease.checkoutKey] = lease.id }
            self.fencing[lease.feature] = max(self.fencing[lease.feature] ?? 0, lease.fencingToken)
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
            if !lease.checkoutKey.isEmpty { self.leaseByKey[lease.checkoutKey] = nil }
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
            lease.lingering = false
            lease.sessionID = newSession
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
        case .activated(let activation):
            self.activations[activation.id] = activation
        case .activationSeen(let id, let atMs):
            if var activation = self.activations[id] {
                activation.lastSeenMs = max(activation.lastSeenMs, atMs)
                self.activations[id] = activation
            }
        case .deactivated(let id, _, _):
            self.activations[id] = nil
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

    /// Adds (sign 1) or removes (sign -1) `seats` of `lease`'s licence and feature from every counter.
    private mutating func charge(_ lease: Lease, seats: UInt32, user: String, groups: [String], sign: Int) {
        func adjust(_ value: inout UInt32) {
            value = sign > 0 ? value + seats : (value > seats ? value - seats : 0)
        }
        let key = PoolKey(licenseID: lease.licenseID, feature: lease.feature)
        let all = PoolKey(licenseID: lease.licenseID, feature: "*")
        adjust(&self.seatsInUse[key, default: 0])
        if self.seatsInUse[key] == 0 { self.seatsInUse[key] = nil }
        if lease.overage {
            adjust(&self.overageInUse[key, default: 0])
            if self.overageInUse[key] == 0 { self.overageInUse[key] = nil }
        }
        if lease.tokenCost > 0 {
            let tokens = seats * lease.tokenCost
            let current = self.tokensInUse[lease.licenseID] ?? 0
            self.tokensInUse[lease.licenseID] = sign > 0 ? current + tokens : (current > tokens ? current - tokens : 0)
        }
        // Every group a holder is within, once (no set built when there are no groups).
        var lineage = Set<String>()
        for group in groups { lineage.formUnion(GroupPath.lineage(group)) }
        adjust(&self.seatsByUser[key, default: [:]][user, default: 0])
        adjust(&self.seatsByUser[all, default: [:]][user, default: 0])
        for group in lineage {
            adjust(&self.seatsByGroup[key, default: [:]][group, default: 0])
            adjust(&self.seatsByGroup[all, default: [:]][group, default: 0])
        }
    }
}
