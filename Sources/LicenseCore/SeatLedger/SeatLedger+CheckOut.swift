import DequeModule
import Foundation
import HeapModule
public import LicenseProtocol

extension SeatLedger {
    /// Where a check-out's seats come from.
    struct Choice {
        /// The licence, with its terms for the feature.
        var source: FeatureSource
        var overage: Bool
        /// Seats of the dup group joined or started (0 = no sharing).
        var sharedSeats: UInt32 = 0
        var dupIdentity = ""
        var baseLeaseID: LeaseID?
        var joinsGroup = false
    }

    /// Grants `request.count` seats of a feature, or says why not.
    public mutating func checkOut(_ request: CheckOut, at nowMs: Int64) -> Result<Grant, LicenseError> {
        self.grant(request, at: nowMs, fromQueue: false)
    }

    mutating func grant(_ request: CheckOut, at nowMs: Int64, fromQueue: Bool) -> Result<Grant, LicenseError> {
        // The identity only: a copy of the session record would share its set of leases, and the
        // grant's insert into that set would then copy all of it (O(leases of the session)).
        guard let identity = self.sessions[request.sessionID]?.identity else {
            return .failure(LicenseError(.invalidArgument, "unknown session; say Hello first"))
        }
        // A retry of a check-out already granted: the same lease, never a second seat.
        if !request.checkoutKey.isEmpty, let existing = self.leaseByKey[CheckoutKey(request.checkoutKey)], let lease = self.leases[existing]
        {
            guard lease.feature == request.feature else {
                return .failure(LicenseError(.invalidArgument, "checkout_key was already used for feature '\(lease.feature)'"))
            }
            var changes: [LedgerChange] = []
            if lease.sessionID != request.sessionID || lease.lingering { changes.append(.rebound(lease.id, to: request.sessionID)) }
            for change in changes { self.apply(change) }
            self.renew(lease.id, at: nowMs)
            return .success(Grant(lease: self.leases[existing]!, replayed: true, warnings: [], changes: changes))
        }
        // Others wait for this feature: no jumping the queue.
        if !fromQueue, let waiting = self.queues[request.feature], !waiting.isEmpty {
            return .failure(
                LicenseError(
                    .noSeats,
                    "\(waiting.count) check-out(s) are waiting for '\(request.feature)'; wait with wait_ms to queue behind them"
                )
            )
        }
        // Linger: a seat this identity returned moments ago is taken up again.
        if request.borrowMs == 0, let lingering = self.lingeringLease(feature: request.feature, identity: identity) {
            let change = LedgerChange.rebound(lingering.id, to: request.sessionID)
            self.apply(change)
            self.renew(lingering.id, at: nowMs)
            return .success(
                Grant(lease: self.leases[lingering.id]!, replayed: false, warnings: ["seat reused from linger"], changes: [change])
            )
        }
        let count = max(request.count, 1)
        switch self.choose(request, identity: identity, count: count, at: nowMs) {
        case .failure(let error):
            return .failure(error)
        case .success(let choice):
            let pool = choice.source.pool
            var changes: [LedgerChange] = []
            if pool.trialDays > 0, self.trialStarts[pool.id] == nil {
                changes.append(.trialStarted(licenseID: pool.id, atMs: nowMs))
            }
            let borrowed = request.borrowMs > 0
            let lease = Lease(
                id: request.newLeaseID,
                sessionID: request.sessionID,
                feature: request.feature,
                licenseID: pool.id,
                count: count,
                identity: identity,
                grantedAtMs: nowMs,
                expiresAtMs: nowMs + (borrowed ? request.borrowMs : pool.ttlMs),
                ttlMs: borrowed ? request.borrowMs : pool.ttlMs,
                overage: choice.overage,
                fencingToken: (self.fencing[request.feature] ?? 0) + 1,
                checkoutKey: request.checkoutKey,
                borrowed: borrowed,
                baseLeaseID: choice.baseLeaseID,
                sharedSeats: choice.sharedSeats,
                dupIdentity: choice.dupIdentity,
                tokenCost: choice.source.tokenCost
            )
            changes.append(.granted(lease))
            for change in changes { self.apply(change) }
            var warnings = self.warnings(for: pool, overage: choice.overage, at: nowMs)
            if choice.joinsGroup {
                warnings.append("sharing a seat with this \(Self.dupName(pool.license.dupGroup))'s other check-out of '\(request.feature)'")
            }
            return .success(Grant(lease: lease, replayed: false, warnings: warnings, changes: changes))
        }
    }

    func lingeringLease(feature: String, identity: ClientIdentity) -> Lease? {
        // Lingering leases are few (they live for the linger time only); a scan is fine.
        // A plain loop: a lazy map's closure would capture (copy) the whole ledger on every check-out.
        for id in self.lingering {
            if let lease = self.leases[id], lease.feature == feature, lease.identity.user == identity.user,
                lease.identity.host == identity.host
            {
                return lease
            }
        }
        return nil
    }

    static func dupName(_ group: Licensed_V1_DupGroup) -> String {
        switch group {
        case .user: "user"
        case .host: "host"
        case .userHost: "user and host"
        default: "identity"
        }
    }

    static func dupIdentity(_ group: Licensed_V1_DupGroup, _ identity: ClientIdentity) -> String? {
        switch group {
        case .user: "u:" + identity.user
        case .host: "h:" + identity.host
        case .userHost: "uh:" + identity.user + "@" + identity.host
        default: nil
        }
    }

    /// The licence to take seats from. Candidates are the usable licences this client may use,
    /// nearest scope first (a pool for the client's own group before its parent group's, global
    /// pools last), then soonest expiry; the first with room wins; else the first TRUE_UP
    /// licence as overage; else why not.
    func choose(_ request: CheckOut, identity: ClientIdentity, count: UInt32, at nowMs: Int64) -> Result<Choice, LicenseError> {
        let feature = request.feature
        guard let sources = self.poolsByFeature[feature], !sources.isEmpty else {
            return .failure(LicenseError(.notFound, "no licence grants feature '\(feature)'"))
        }
        if let refusal = self.restrictionRefusal(feature: feature, identity: identity) { return .failure(refusal) }
        let version = request.version.isEmpty ? identity.clientVersion : request.version
        var refusals: [LicenseError] = []
        var candidates: [(source: FeatureSource, distance: Int, base: LeaseID?)] = []
        candidates.reserveCapacity(sources.count)
        for source in sources {
            let pool = source.pool
            let id = pool.id
            let state = self.state(of: pool, at: nowMs)
            guard Self.isUsable(state) else {
                refusals.append(self.unusableError(pool, state: state, for: "'\(feature)'", at: nowMs))
                continue
            }
            if let refusal = pool.refusal(for: identity) {
                refusals.append(refusal)
                continue
            }
            let ceiling = source.version
            guard Version.isAllowed(version, ceiling: ceiling) else {
                let stated = version.isEmpty ? "no version" : "version \(version)"
                refusals.append(
                    LicenseError(.versionNotAllowed, "feature '\(feature)' is licensed up to version \(ceiling); the client sent \(stated)")
                )
                continue
            }
            if pool.maintenanceUntilMs != 0, request.buildDateMs > pool.maintenanceUntilMs {
                refusals.append(
                    LicenseError(
                        .versionNotAllowed,
                        "this build (\(Timestamp.iso8601(request.buildDateMs))) is newer than the maintenance of licence '\(id)' (until \(Timestamp.iso8601(pool.maintenanceUntilMs)))"
                    )
                )
                continue
            }
            var base: LeaseID? = nil
            if !pool.requires.isEmpty {
                base =
                    (self.sessions[request.sessionID]?.leases ?? []).lazy.compactMap { self.leases[$0] }.first {
                        !$0.lingering && pool.requires.contains($0.licenseID)
                    }?
                    .id
                guard base != nil else {
                    refusals.append(
                        LicenseError(
                            .baseRequired,
                            "feature '\(feature)' is an add-on; check out a base part first (\(pool.requires.joined(separator: " or ")))"
                        )
                    )
                    continue
                }
            }
            if request.borrowMs > 0 {
                let maxBorrowMs = pool.license.lease.maxBorrowMs
                guard maxBorrowMs > 0 else {
                    refusals.append(LicenseError(.permissionDenied, "licence '\(id)' does not allow borrowing"))
                    continue
                }
                guard UInt64(request.borrowMs) <= maxBorrowMs else {
                    refusals.append(
                        LicenseError(.invalidArgument, "licence '\(id)' allows borrowing for at most \(maxBorrowMs) ms")
                    )
                    continue
                }
            }
            candidates.append((source, pool.scopeDistance(for: identity) ?? Int.max, base))
        }
        guard !candidates.isEmpty else { return .failure(Self.mostTelling(refusals, feature: feature)) }
        // The comparator captures no `self` (a closure over the ledger copied all of it per check-out).
        if candidates.count > 1 {
            candidates.sort { a, b in
                (a.distance, a.source.pool.expiryOrder, a.source.pool.id) < (b.distance, b.source.pool.expiryOrder, b.source.pool.id)
            }
        }
        var limitRefusal: LicenseError? = nil
        for candidate in candidates {
            let pool = candidate.source.pool
            // Seat sharing: an identity that already holds this feature shares its seat.
            if let dup = Self.dupIdentity(pool.dupGroup, identity) {
                let key = DupKey(licenseID: pool.id, feature: feature, identity: dup)
                if let group = self.dupGroups[key], group.seats >= count, request.borrowMs == 0 {
                    return .success(
                        Choice(
                            source: candidate.source,
                            overage: false,
                            sharedSeats: group.seats,
                            dupIdentity: dup,
                            baseLeaseID: candidate.base,
                            joinsGroup: true
                        )
                    )
                }
            }
            if let refusal = self.limitRefusal(pool, feature: feature, identity: identity, seats: count) {
                limitRefusal = limitRefusal ?? refusal
                continue
            }
            if self.hasRoom(candidate.source, identity: identity, seats: count) {
                return .success(
                    self.newChoice(
                        candidate.source,
                        identity: identity,
                        count: count,
                        overage: false,
                        base: candidate.base,
                        borrow: request.borrowMs
                    )
                )
            }
        }
        if let trueUp = candidates.first(where: {
            $0.source.pool.trueUp && self.limitRefusal($0.source.pool, feature: feature, identity: identity, seats: count) == nil
        }) {
            return .success(
                self.newChoice(
                    trueUp.source,
                    identity: identity,
                    count: count,
                    overage: true,
                    base: trueUp.base,
                    borrow: request.borrowMs
                )
            )
        }
        if let limitRefusal { return .failure(limitRefusal) }
        let capacity = self.capacity(of: feature, at: nowMs) ?? 0
        let asked = count == 1 ? "" : " (\(count) asked for)"
        return .failure(
            LicenseError(
                .noSeats,
                "all \(capacity) seats of '\(feature)' are in use or reserved (\(self.seatsInUse(of: feature)) held)\(asked); try again later"
            )
        )
    }

    func newChoice(
        _ source: FeatureSource,
        identity: ClientIdentity,
        count: UInt32,
        overage: Bool,
        base: LeaseID?,
        borrow: Int64
    ) -> Choice {
        var choice = Choice(source: source, overage: overage, baseLeaseID: base)
        if borrow == 0, let dup = Self.dupIdentity(source.pool.dupGroup, identity) {
            choice.sharedSeats = count
            choice.dupIdentity = dup
        }
        return choice
    }

    /// Of several reasons a client may not use any licence, the one that tells it most.
    static func mostTelling(_ refusals: [LicenseError], feature: String) -> LicenseError {
        let order: [Licensed_V1_Error.Code] = [
            .activationLimit, .deviceLimit,
            .baseRequired, .versionNotAllowed, .networkNotAllowed, .userNotAllowed, .invalidArgument, .permissionDenied,
            .environmentNotAllowed,
            .clockSetback, .licenseExpired, .notYetValid,
        ]
        for code in order { if let refusal = refusals.first(where: { $0.code == code }) { return refusal } }
        return refusals.first ?? LicenseError(.notFound, "no licence grants feature '\(feature)'")
    }
}
