import DequeModule
import Foundation
import HeapModule
public import LicenseProtocol

/// The limits a grant must keep: pool capacity, per-user and per-host maxima, the server's own
/// restrictions by group and network, and the warnings a grant carries.
extension SeatLedger {
    /// True when `source`'s licence has `seats` of its feature free for `identity` once seats
    /// reserved for groups the identity is not in are set aside.
    func hasRoom(_ source: FeatureSource, identity: ClientIdentity, seats: UInt32) -> Bool {
        let pool = source.pool
        if pool.unlimited { return true }
        let feature = source.key.feature
        let cost = source.tokenCost
        if cost > 0 {
            return (self.tokensInUse[pool.id] ?? 0) + seats * cost <= pool.license.tokenPool
        }
        let usage = self.usage[source.key]
        let used = usage?.seats ?? 0
        var reserved: UInt32 = 0
        for reservation in pool.reservations where reservation.feature.isEmpty || reservation.feature == feature {
            if identity.groups.contains(where: { GroupPath.isWithin($0, reservation.group) }) { continue }
            let takenByMembers = usage?.byGroup[GroupPath.normalized(reservation.group)] ?? 0
            reserved += reservation.count > takenByMembers ? reservation.count - takenByMembers : 0
        }
        let capacity = source.count
        guard capacity >= used + reserved else { return false }
        guard capacity - used - reserved >= seats else { return false }
        return self.restrictionHasRoom(feature: feature, identity: identity, seats: seats)
    }

    /// The licence's MAX rules for users and groups.
    func limitRefusal(_ pool: LicensePool, feature: String, identity: ClientIdentity, seats: UInt32) -> LicenseError? {
        for limit in pool.limits where limit.feature.isEmpty || limit.feature == feature {
            let key = PoolKey(licenseID: pool.id, feature: limit.feature.isEmpty ? "*" : feature)
            switch limit.kind {
            case "user" where limit.name.isEmpty || limit.name == identity.user:
                let held = self.usage[key]?.byUser[identity.user] ?? 0
                if held + seats > limit.max {
                    return LicenseError(
                        .noSeats,
                        "user '\(identity.user)' already holds \(held) of at most \(limit.max) seats of licence '\(pool.id)'"
                    )
                }
            case "group":
                let groups = limit.name.isEmpty ? identity.groups.map(GroupPath.normalized) : [GroupPath.normalized(limit.name)]
                for group in groups where identity.groups.contains(where: { GroupPath.isWithin($0, group) }) {
                    let held = self.usage[key]?.byGroup[group] ?? 0
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

    func restrictionRefusal(feature: String, identity: ClientIdentity) -> LicenseError? {
        for r in self.configuration.restrictions where r.feature.isEmpty || r.feature == feature {
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
                for source in self.poolsByFeature[feature] ?? [] {
                    held += self.usage[source.key]?.byUser[identity.user] ?? 0
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
        let rules = self.configuration.restrictions.filter { ($0.feature.isEmpty || $0.feature == feature) && !$0.reservations.isEmpty }
        guard !rules.isEmpty else { return true }
        var capacity: UInt32 = 0
        var used: UInt32 = 0
        let sources = self.poolsByFeature[feature] ?? []
        for source in sources {
            if source.pool.unlimited { return true }
            capacity += source.count
            used += self.usage[source.key]?.seats ?? 0
        }
        var reserved: UInt32 = 0
        for rule in rules {
            for (group, count) in rule.reservations where !identity.groups.contains(where: { GroupPath.isWithin($0, group) }) {
                var taken: UInt32 = 0
                for source in sources {
                    taken += self.usage[source.key]?.byGroup[GroupPath.normalized(group)] ?? 0
                }
                reserved += count > taken ? count - taken : 0
            }
        }
        return capacity >= used + reserved && capacity - used - reserved >= seats
    }

    func warnings(for pool: LicensePool, overage: Bool, at nowMs: Int64) -> [String] {
        var warnings: [String] = []
        // The usual grant has nothing to warn of: decided on the pool's own fields.
        let state = pool.validity(at: nowMs)
        guard state == .expiring || pool.expiresWithin(self.configuration.expiryWarningMs, of: nowMs) || pool.trialDays > 0 || overage
        else {
            return warnings
        }
        let license = pool.license
        if state == .expiring {
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
