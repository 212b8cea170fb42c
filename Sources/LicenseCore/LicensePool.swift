public import LicenseProtocol

/// A floating licence as the ledger uses it: its terms parsed once at load. A class of constants:
/// the ledger looks a pool up several times per check-out, and a copy of a struct of this size
/// retained and released every array and string in it (about 2,500 instructions a check-out).
public final class LicensePool: Sendable {
    /// The verified licence.
    public let verified: VerifiedLicense
    /// Its features by name.
    public let features: [String: Licensed_V1_Feature]
    /// No capacity at all (UNLIMITED overage or SITE model).
    public let unlimited: Bool
    /// HARD (or unspecified) overage policy.
    public let hard: Bool
    /// TRUE_UP overage policy.
    public let trueUp: Bool
    /// TTL a heartbeat renews for.
    public let ttlMs: Int64
    /// not_after, with perpetual licences last.
    public let expiryOrder: Int64
    /// See `License.isTimeLimited`.
    public let isTimeLimited: Bool
    /// Parsed allowed_networks.
    public let networks: [NetworkRange]
    /// Networks that did not parse (the licence grants to no network then: failing closed).
    public let invalidNetworks: [String]

    /// Read from the licence once: a generated message's getter costs about 85 instructions
    /// (storage access, exclusivity check), and every check-out asked these again.
    private let notBeforeMs: Int64
    private let notAfterMs: Int64
    private let graceMs: Int64
    /// Days of a trial licence (0 = not a trial).
    let trialDays: UInt32
    /// Some list limits who may use it (networks, users, hosts, groups, cost centres,
    /// locations): without one, `refusal(for:)` has nothing to check.
    private let restricted: Bool
    /// Scoped to groups (`allowed_groups`).
    private let scoped: Bool
    /// Seats kept for groups.
    let reservations: [Licensed_V1_Reservation]
    /// Who shares a seat (`dup_group`).
    let dupGroup: Licensed_V1_DupGroup
    /// The licence's id.
    let id: String
    /// Builds newer than this may not use it (0 = no maintenance date).
    let maintenanceUntilMs: Int64
    /// Base licences an add-on needs one of (empty = a base).
    let requires: [String]
    /// Its MAX rules for users and groups.
    let limits: [Licensed_V1_UsageLimit]
    /// How long a checked-in seat stays held for its identity (0 = not at all).
    let lingerMs: Int64

    var license: Licensed_V1_License { self.verified.license }

    init(_ verified: VerifiedLicense, configuration: SeatLedger.Configuration) {
        self.verified = verified
        let license = verified.license
        var features: [String: Licensed_V1_Feature] = [:]
        for feature in license.features where features[feature.name] == nil { features[feature.name] = feature }
        self.features = features
        self.unlimited = license.overage == .unlimited || license.model == .site
        self.hard = license.overage == .hard || license.overage == .unspecified
        self.trueUp = license.overage == .trueUp
        let ttl = license.lease.heartbeatTtlMs == 0 ? configuration.defaultLeaseTTLMs : Int64(license.lease.heartbeatTtlMs)
        self.ttlMs = max(ttl, configuration.minimumLeaseTTLMs)
        self.expiryOrder = license.notAfterMs == 0 ? Int64.max : license.notAfterMs
        self.networks = license.allowedNetworks.compactMap(NetworkRange.init)
        self.invalidNetworks = license.allowedNetworks.filter { NetworkRange($0) == nil }
        self.notBeforeMs = license.notBeforeMs
        self.notAfterMs = license.notAfterMs
        self.graceMs = license.gracePeriodMs
        self.trialDays = license.trialDays
        self.reservations = license.reservations
        self.dupGroup = license.dupGroup
        self.id = license.id
        self.isTimeLimited = license.isTimeLimited
        self.maintenanceUntilMs = license.maintenanceUntilMs
        self.requires = license.requires
        self.limits = license.limits
        self.lingerMs = Int64(license.lease.lingerMs)
        self.scoped = !license.allowedGroups.isEmpty
        self.restricted =
            self.scoped || !license.allowedNetworks.isEmpty || !license.excludedUsers.isEmpty || !license.allowedUsers.isEmpty
            || !license.excludedHosts.isEmpty || !license.allowedHosts.isEmpty || !license.excludedGroups.isEmpty
            || !license.allowedCostCentres.isEmpty || !license.allowedLocations.isEmpty
    }

    /// Bounded in time, and its end less than `windowMs` after `nowMs`.
    func expiresWithin(_ windowMs: Int64, of nowMs: Int64) -> Bool {
        self.notAfterMs != 0 && self.notAfterMs - nowMs < windowMs
    }

    /// Where the licence stands at `nowMs` (as `VerifiedLicense.state(at:)`).
    func validity(at nowMs: Int64) -> Licensed_V1_LicenseStatus.State {
        VerifiedLicense.state(at: nowMs, notBeforeMs: self.notBeforeMs, notAfterMs: self.notAfterMs, graceMs: self.graceMs)
    }

    /// Levels from the client's nearest group up to this licence's scope; nil = not in scope;
    /// Int.max = a global (unscoped) pool, chosen last.
    func scopeDistance(for identity: ClientIdentity) -> Int? {
        guard self.scoped else { return Int.max }
        let scopes = self.license.allowedGroups
        var best: Int? = nil
        for group in identity.groups {
            for scope in scopes {
                if let d = GroupPath.distance(from: group, to: scope) { best = min(best ?? d, d) }
            }
        }
        return best
    }

    /// Why `identity` may not use this licence, or nil when it may (networks, users, hosts, groups).
    func refusal(for identity: ClientIdentity) -> LicenseError? {
        guard self.restricted else { return nil }
        let license = self.license
        if !license.allowedNetworks.isEmpty, !self.networks.contains(where: { $0.contains(identity.address) }) {
            return LicenseError(
                .networkNotAllowed,
                "licence '\(self.id)' serves networks \(license.allowedNetworks.joined(separator: ", ")), not \(identity.address.isEmpty ? "this client" : identity.address)"
            )
        }
        if license.excludedUsers.contains(identity.user) || (!license.allowedUsers.isEmpty && !license.allowedUsers.contains(identity.user))
        {
            return LicenseError(.userNotAllowed, "user '\(identity.user)' may not use licence '\(self.id)'")
        }
        if license.excludedHosts.contains(identity.host) || (!license.allowedHosts.isEmpty && !license.allowedHosts.contains(identity.host))
        {
            return LicenseError(.userNotAllowed, "host '\(identity.host)' may not use licence '\(self.id)'")
        }
        if identity.groups.contains(where: { group in license.excludedGroups.contains { GroupPath.isWithin(group, $0) } }) {
            return LicenseError(.userNotAllowed, "licence '\(self.id)' excludes a group of user '\(identity.user)'")
        }
        if !license.allowedCostCentres.isEmpty, !license.allowedCostCentres.contains(identity.costCentre) {
            return LicenseError(
                .userNotAllowed,
                "licence '\(self.id)' serves cost centre \(license.allowedCostCentres.joined(separator: ", ")) only; user '\(identity.user)' is "
                    + (identity.costCentre.isEmpty ? "in no cost centre" : "in cost centre \(identity.costCentre)")
            )
        }
        if !license.allowedLocations.isEmpty, !license.allowedLocations.contains(identity.location) {
            return LicenseError(
                .userNotAllowed,
                "licence '\(self.id)' serves location \(license.allowedLocations.joined(separator: ", ")) only; user '\(identity.user)' is "
                    + (identity.location.isEmpty ? "at no known location" : "at location \(identity.location)")
            )
        }
        if self.scopeDistance(for: identity) == nil {
            return LicenseError(.userNotAllowed, "licence '\(self.id)' serves groups \(license.allowedGroups.joined(separator: ", ")) only")
        }
        return nil
    }
}
