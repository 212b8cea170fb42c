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
        let linger = self.pools[lease.licenseID]?.lingerMs ?? 0
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
    ///
    /// Stops once `limit` leases are reclaimed (add-ons of the last may take it past): the rest
    /// are reclaimed by the next call, so that a host can serve requests between passes when
    /// every lease lapsed at once (after an outage of the network, or of all its clients).
    public mutating func reap(at nowMs: Int64, limit: Int = .max) -> [(lease: Lease, change: LedgerChange)] {
        var reclaimed: [(Lease, LedgerChange)] = []
        while reclaimed.count < limit, let next = self.expiries.min, next.atMs <= nowMs {
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
}
