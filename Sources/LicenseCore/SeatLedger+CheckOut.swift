import DequeModule
import Foundation
import HeapModule
public import LicenseProtocol

extension SeatLedger {
    /// Where a check-out's seats come from.
    struct Choice {
        var licenseID: String
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
        if !request.checkoutKey.isEmpty, let existing = self.leaseByKey[request.checkoutKey], let lease = self.leases[existing] {
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
            let pool = self.pools[choice.licenseID]!
            var changes: [LedgerChange] = []
            if pool.license.trialDays > 0, self.trialStarts[pool.id] == nil {
                changes.append(.trialStarted(licenseID: pool.id, atMs: nowMs))
            }
            let borrowed = request.borrowMs > 0
            var lease = Lease(
                id: request.newLeaseID,
                sessionID: request.sessionID,
                feature: request.feature,
                licenseID: choice.licenseID,
                count: count,
                identity: identity,
                grantedAtMs: nowMs,
                expiresAtMs: nowMs + (borrowed ? request.borrowMs : pool.ttlMs),
                ttlMs: borrowed ? request.borrowMs : pool.ttlMs,
                overage: choice.overage,
                fencingToken: (self.fencing[request.feature] ?? 0) + 1,
                checkoutKey: request.checkoutKey
            )
            lease.borrowed = borrowed
            lease.baseLeaseID = choice.baseLeaseID
            lease.sharedSeats = choice.sharedSeats
            lease.dupIdentity = choice.dupIdentity
            lease.tokenCost = pool.tokenCost(request.feature)
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
        guard let ids = self.poolsByFeature[feature], !ids.isEmpty else {
            return .failure(LicenseError(.notFound, "no licence grants feature '\(feature)'"))
        }
        if let refusal = self.restrictionRefusal(feature: feature, identity: identity) { return .failure(refusal) }
        let version = request.version.isEmpty ? identity.clientVersion : request.version
        var refusals: [LicenseError] = []
        var candidates: [(id: String, distance: Int, expiry: Int64, base: LeaseID?)] = []
        for id in ids {
            let pool = self.pools[id]!
            let license = pool.license
            let state = self.state(of: pool, at: nowMs)
            guard Self.isUsable(state) else {
                refusals.append(
                    state == .notYetValid
                        ? LicenseError(
                            .notYetValid,
                            "licence '\(id)' for '\(feature)' is not valid before \(Timestamp.iso8601(license.notBeforeMs))"
                        )
                        : LicenseError(.licenseExpired, "licence '\(id)' for '\(feature)' has expired; renew the licence")
                )
                continue
            }
            if let refusal = pool.refusal(for: identity) {
                refusals.append(refusal)
                continue
            }
            let ceiling = pool.features[feature]!.version
            guard Version.isAllowed(version, ceiling: ceiling) else {
                let stated = version.isEmpty ? "no version" : "version \(version)"
                refusals.append(
                    LicenseError(.versionNotAllowed, "feature '\(feature)' is licensed up to version \(ceiling); the client sent \(stated)")
                )
                continue
            }
            if license.maintenanceUntilMs != 0, request.buildDateMs > license.maintenanceUntilMs {
                refusals.append(
                    LicenseError(
                        .versionNotAllowed,
                        "this build (\(Timestamp.iso8601(request.buildDateMs))) is newer than the maintenance of licence '\(id)' (until \(Timestamp.iso8601(license.maintenanceUntilMs)))"
                    )
                )
                continue
            }
            var base: LeaseID? = nil
            if !license.requires.isEmpty {
                base =
                    (self.sessions[request.sessionID]?.leases ?? []).lazy.compactMap { self.leases[$0] }.first {
                        !$0.lingering && license.requires.contains($0.licenseID)
                    }?
                    .id
                guard base != nil else {
                    refusals.append(
                        LicenseError(
                            .baseRequired,
                            "feature '\(feature)' is an add-on; check out a base part first (\(license.requires.joined(separator: " or ")))"
                        )
                    )
                    continue
                }
            }
            if request.borrowMs > 0 {
                guard license.lease.maxBorrowMs > 0 else {
                    refusals.append(LicenseError(.permissionDenied, "licence '\(id)' does not allow borrowing"))
                    continue
                }
                guard UInt64(request.borrowMs) <= license.lease.maxBorrowMs else {
                    refusals.append(
                        LicenseError(.invalidArgument, "licence '\(id)' allows borrowing for at most \(license.lease.maxBorrowMs) ms")
                    )
                    continue
                }
            }
            candidates.append((id, pool.scopeDistance(for: identity) ?? Int.max, pool.expiryOrder, base))
        }
        guard !candidates.isEmpty else { return .failure(Self.mostTelling(refusals, feature: feature)) }
        // The comparator captures no `self` (a closure over the ledger copied all of it per check-out).
        if candidates.count > 1 {
            candidates.sort { a, b in (a.distance, a.expiry, a.id) < (b.distance, b.expiry, b.id) }
        }
        var limitRefusal: LicenseError? = nil
        for candidate in candidates {
            let pool = self.pools[candidate.id]!
            // Seat sharing: an identity that already holds this feature shares its seat.
            if let dup = Self.dupIdentity(pool.license.dupGroup, identity) {
                let key = DupKey(licenseID: pool.id, feature: feature, identity: dup)
                if let group = self.dupGroups[key], group.seats >= count, request.borrowMs == 0 {
                    return .success(
                        Choice(
                            licenseID: pool.id,
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
            if self.hasRoom(pool, feature: feature, identity: identity, seats: count) {
                return .success(
                    self.newChoice(
                        pool,
                        feature: feature,
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
            self.pools[$0.id]!.trueUp && self.limitRefusal(self.pools[$0.id]!, feature: feature, identity: identity, seats: count) == nil
        }) {
            return .success(
                self.newChoice(
                    self.pools[trueUp.id]!,
                    feature: feature,
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
        _ pool: LicensePool,
        feature: String,
        identity: ClientIdentity,
        count: UInt32,
        overage: Bool,
        base: LeaseID?,
        borrow: Int64
    ) -> Choice {
        var choice = Choice(licenseID: pool.id, overage: overage, baseLeaseID: base)
        if borrow == 0, let dup = Self.dupIdentity(pool.license.dupGroup, identity) {
            choice.sharedSeats = count
            choice.dupIdentity = dup
        }
        return choice
    }

    /// Of several reasons a client may not use any licence, the one that tells it most.
    static func mostTelling(_ refusals: [LicenseError], feature: String) -> LicenseError {
        let order: [Licensed_V1_Error.Code] = [
            .activationLimit, .deviceLimit,
            .baseRequired, .versionNotAllowed, .networkNotAllowed, .userNotAllowed, .invalidArgument, .permissionDenied, .licenseExpired,
            .notYetValid,
        ]
        for code in order { if let refusal = refusals.first(where: { $0.code == code }) { return refusal } }
        return refusals.first ?? LicenseError(.notFound, "no licence grants feature '\(feature)'")
    }

    /// True when `pool` has `seats` free for `identity` once seats reserved for groups the
    /// identity is not in are set aside.
    func hasRoom(_ pool: LicensePool, feature: String, identity: ClientIdentity, seats: UInt32) -> Bool {
        if pool.unlimited { return true }
        let key = PoolKey(licenseID: pool.id, feature: feature)
        let cost = pool.tokenCost(feature)
        if cost > 0 {
            return (self.tokensInUse[pool.id] ?? 0) + seats * cost <= pool.license.tokenPool
        }
        let used = self.seatsInUse[key] ?? 0
        var reserved: UInt32 = 0
        for reservation in pool.license.reservations where reservation.feature.isEmpty || reservation.feature == feature {
            if identity.groups.contains(where: { GroupPath.isWithin($0, reservation.group) }) { continue }
            let takenByMembers = self.seatsByGroup[key]?[GroupPath.normalized(reservation.group)] ?? 0
            reserved += reservation.count > takenByMembers ? reservation.count - takenByMembers : 0
        }
        let capacity = pool.capacity(feature)
        guard capacity >= used + reserved else { return false }
        guard capacity - used - reserved >= seats else { return false }
        return self.restrictionHasRoom(feature: feature, identity: identity, seats: seats)
    }

    /// The licence's MAX rules for users and groups.
    func limitRefusal(_ pool: LicensePool, feature: String, identity: ClientIdentity, seats: UInt32) -> LicenseError? {
        for limit in pool.license.limits where limit.feature.isEmpty || limit.feature == feature {
            let key = PoolKey(licenseID: pool.id, feature: limit.feature.isEmpty ? "*" : feature)
            switch limit.kind {
            case "user" where limit.name.isEmpty || limit.name == identity.user:
                let held = self.seatsByUser[key]?[identity.user] ?? 0
                if held + seats > limit.max {
                    return LicenseError(
                        .noSeats,
                        "user '\(identity.user)' already holds \(held) of at most \(limit.max) seats of licence '\(pool.id)'"
                    )
                }
            case "group":
                let groups = limit.name.isEmpty ? identity.groups.map(GroupPath.normalized) : [GroupPath.normalized(limit.name)]
                for group in groups where identity.groups.contains(where: { GroupPath.isWithin($0, group) }) {
                    let held = self.seatsByGroup[key]?[group] ?? 0
                    if held + seats > limit.max {
                        return LicenseError(
                            .noSeats,
                            "group '\(group)' already holds \(held) of at most \(limit.max) seats of licence '\(pool.id)'"
                        )
                    }
                }
            default:
                continue
            }
        }
        return nil
    }

    // MARK: - Server-side restrictions

    func restrictions(for feature: String) -> [FeatureRestriction] {
        self.configuration.restrictions.filter { $0.feature.isEmpty || $0.feature == feature }
    }

    func restrictionRefusal(feature: String, identity: ClientIdentity) -> LicenseError? {
        for r in self.restrictions(for: feature) {
            let inGroup = { (groups: [String]) in identity.groups.contains { g in groups.contains { GroupPath.isWithin(g, $0) } } }
            if r.excludedUsers.contains(identity.user) || r.excludedHosts.contains(identity.host) || inGroup(r.excludedGroups) {
                return LicenseError(.userNotAllowed, "the server's options exclude \(identity.user)@\(identity.host) from '\(feature)'")
            }
            let hasInclude = !r.includedUsers.isEmpty || !r.includedHosts.isEmpty || !r.includedGroups.isEmpty
            if hasInclude,
                !(r.includedUsers.contains(identity.user) || r.includedHosts.contains(identity.host) || inGroup(r.includedGroups))
            {
                return LicenseError(
                    .userNotAllowed,
                    "the server's options do not include \(identity.user)@\(identity.host) for '\(feature)'"
                )
            }
            if r.maxPerUser > 0 {
                var held: UInt32 = 0
                for id in self.poolsByFeature[feature] ?? [] {
                    held += self.seatsByUser[PoolKey(licenseID: id, feature: feature)]?[identity.user] ?? 0
                }
                if held >= r.maxPerUser {
                    return LicenseError(
                        .noSeats,
                        "the server's options allow user '\(identity.user)' at most \(r.maxPerUser) seats of '\(feature)'"
                    )
                }
            }
        }
        return nil
    }

    /// Feature-wide reservations from the server's options.
    func restrictionHasRoom(feature: String, identity: ClientIdentity, seats: UInt32) -> Bool {
        let rules = self.restrictions(for: feature).filter { !$0.reservations.isEmpty }
        guard !rules.isEmpty else { return true }
        var capacity: UInt32 = 0
        var used: UInt32 = 0
        for id in self.poolsByFeature[feature] ?? [] {
            let pool = self.pools[id]!
            if pool.unlimited { return true }
            capacity += pool.capacity(feature)
            used += self.seatsInUse[PoolKey(licenseID: id, feature: feature)] ?? 0
        }
        var reserved: UInt32 = 0
        for rule in rules {
            for (group, count) in rule.reservations where !identity.groups.contains(where: { GroupPath.isWithin($0, group) }) {
                var taken: UInt32 = 0
                for id in self.poolsByFeature[feature] ?? [] {
                    taken += self.seatsByGroup[PoolKey(licenseID: id, feature: feature)]?[GroupPath.normalized(group)] ?? 0
                }
                reserved += count > taken ? count - taken : 0
            }
        }
        return capacity >= used + reserved && capacity - used - reserved >= seats
    }

    func warnings(for pool: LicensePool, overage: Bool, at nowMs: Int64) -> [String] {
        var warnings: [String] = []
        let license = pool.license
        if pool.verified.state(at: nowMs) == .expiring {
            warnings.append(
                "licence '\(license.id)' expired on \(Timestamp.iso8601(license.notAfterMs)); "
                    + "its grace period ends \(Timestamp.iso8601(license.notAfterMs + license.gracePeriodMs))"
            )
        } else if license.notAfterMs != 0, license.notAfterMs - nowMs < self.configuration.expiryWarningMs {
            warnings.append("licence '\(license.id)' expires on \(Timestamp.iso8601(license.notAfterMs))")
        }
        if license.trialDays > 0 {
            let start = self.trialStarts[pool.id] ?? nowMs
            warnings.append("trial licence '\(license.id)' ends \(Timestamp.iso8601(start + Int64(license.trialDays) * 86_400_000))")
        }
        if overage {
            warnings.append("granted beyond the purchased count of licence '\(license.id)' (true-up)")
        }
        return warnings
    }
}
