import Foundation
public import LicenseProtocol

extension SeatLedger {
    /// An activation request as the ledger sees it.
    public struct Activate: Sendable {
        /// The licence to activate; empty = choose one granting `feature`.
        public var licenseID: String
        /// A feature the licence must grant (when `licenseID` is empty).
        public var feature: String
        /// The machine's fingerprint component ids.
        public var fingerprint: [String]
        /// A readable machine name.
        public var machineName: String
        /// Who activates.
        public var identity: ClientIdentity
        /// The id to give a new activation (the server draws it at random).
        public var newActivationID: String
        /// Where the machine runs, as its client reported it (no kinds: not reported).
        public var environment: EnvironmentReport

        /// Creates a request.
        public init(
            licenseID: String = "",
            feature: String = "",
            fingerprint: [String],
            machineName: String,
            identity: ClientIdentity,
            newActivationID: String,
            environment: EnvironmentReport = EnvironmentReport(kinds: [], description: "")
        ) {
            self.licenseID = licenseID
            self.feature = feature
            self.fingerprint = fingerprint
            self.machineName = machineName
            self.identity = identity
            self.newActivationID = newActivationID
            self.environment = environment
        }
    }

    /// A granted (or found) activation.
    public struct Activated: Sendable, Equatable {
        /// The activation.
        public var activation: Activation
        /// True when this machine was already activated and nothing new was consumed.
        public var existing: Bool
        /// The licence's fingerprint matching rule.
        public var rule: Licensed_V1_FingerprintMatch
        /// What changed.
        public var changes: [LedgerChange]
    }

    static let day: Int64 = 86_400_000

    /// Activates a node-locked licence on a machine, or finds its existing activation.
    public mutating func activate(_ request: Activate, at nowMs: Int64) -> Result<Activated, LicenseError> {
        guard !request.fingerprint.isEmpty else {
            return .failure(LicenseError(.invalidArgument, "Activate needs the machine's fingerprint"))
        }
        let candidates = self.nodeLocked.values.filter { pool in
            request.licenseID.isEmpty ? pool.features[request.feature] != nil : pool.id == request.licenseID
        }.sorted { ($0.expiryOrder, $0.id) < ($1.expiryOrder, $1.id) }
        guard !candidates.isEmpty else {
            let what = request.licenseID.isEmpty ? "feature '\(request.feature)'" : "licence '\(request.licenseID)'"
            return .failure(LicenseError(.notFound, "no node-locked licence for \(what)"))
        }
        // The same machine again (under the licence's matching rule): idempotent.
        for pool in candidates {
            let rule = pool.license.fingerprintMatch
            if let existing = self.activations.values.first(where: {
                $0.licenseID == pool.id && FingerprintMatch.matches(bound: $0.fingerprint, presented: request.fingerprint, rule: rule)
            }) {
                var updated = existing
                updated.fingerprint = request.fingerprint
                updated.lastSeenMs = nowMs
                var changes: [LedgerChange] = []
                if Set(existing.fingerprint) != Set(request.fingerprint) {
                    changes.append(.activated(updated))  // the drifted fingerprint is the one to match next time
                } else if nowMs - existing.lastSeenMs >= Self.day {
                    changes.append(.activationSeen(id: existing.id, atMs: nowMs))
                }
                for change in changes { self.apply(change) }
                return .success(Activated(activation: self.activations[existing.id]!, existing: true, rule: rule, changes: changes))
            }
        }
        var refusals: [LicenseError] = []
        for pool in candidates {
            let license = pool.license
            let state = self.state(of: pool, at: nowMs)
            guard Self.isUsable(state) else {
                refusals.append(self.unusableError(pool, state: state, for: "", at: nowMs))
                continue
            }
            if let refusal = pool.refusal(for: request.identity) {
                refusals.append(refusal)
                continue
            }
            if let refusal = EnvironmentRule.refusal(
                request.environment,
                allowed: license.clientEnvironments,
                role: "node-locked activation"
            ) {
                refusals.append(LicenseError(.environmentNotAllowed, "licence '\(pool.id)': \(refusal)"))
                continue
            }
            let mine = self.activations.values.filter { $0.licenseID == pool.id && $0.user == request.identity.user }.count
            if license.maxDevicesPerUser > 0, mine >= license.maxDevicesPerUser {
                refusals.append(
                    LicenseError(
                        .deviceLimit,
                        "user '\(request.identity.user)' already has \(mine) of at most \(license.maxDevicesPerUser) machines on licence '\(pool.id)'"
                    )
                )
                continue
            }
            let limit = license.maxActivations > 0 ? license.maxActivations : (license.features.map(\.count).max() ?? 0)
            let used = self.activations.values.filter { $0.licenseID == pool.id }.count
            var overage = false
            if !pool.unlimited, used >= limit {
                guard pool.trueUp else {
                    refusals.append(
                        LicenseError(
                            .activationLimit,
                            "licence '\(pool.id)' is activated on \(used) of at most \(limit) machines; deactivate one first"
                        )
                    )
                    continue
                }
                overage = true
            }
            let activation = Activation(
                id: request.newActivationID,
                licenseID: pool.id,
                features: license.features.map(\.name),
                fingerprint: request.fingerprint,
                machineName: request.machineName,
                user: request.identity.user,
                activatedAtMs: nowMs,
                lastSeenMs: nowMs,
                overage: overage
            )
            var changes: [LedgerChange] = []
            if license.trialDays > 0, self.trialStarts[pool.id] == nil { changes.append(.trialStarted(licenseID: pool.id, atMs: nowMs)) }
            changes.append(.activated(activation))
            for change in changes { self.apply(change) }
            return .success(Activated(activation: activation, existing: false, rule: license.fingerprintMatch, changes: changes))
        }
        return .failure(Self.mostTelling(refusals, feature: request.feature.isEmpty ? request.licenseID : request.feature))
    }

    /// Checks that activation `id` is still valid for a machine presenting `fingerprint`, and notes it was seen.
    public mutating func validateActivation(_ id: String, fingerprint: [String], at nowMs: Int64) -> Result<Activated, LicenseError> {
        guard let activation = self.activations[id] else {
            return .failure(LicenseError(.notFound, "no activation \(id); it was deactivated or reclaimed"))
        }
        let pool = self.nodeLocked[activation.licenseID]
        let rule = pool?.license.fingerprintMatch ?? .most
        guard FingerprintMatch.matches(bound: activation.fingerprint, presented: fingerprint, rule: rule) else {
            return .failure(LicenseError(.permissionDenied, "this machine's fingerprint does not match activation \(id)"))
        }
        if let pool, case let state = self.state(of: pool, at: nowMs), !Self.isUsable(state) {
            return .failure(self.unusableError(pool, state: state, for: "activation \(id)", at: nowMs))
        }
        var changes: [LedgerChange] = []
        if nowMs - activation.lastSeenMs >= Self.day { changes.append(.activationSeen(id: id, atMs: nowMs)) }
        for change in changes { self.apply(change) }
        var seen = self.activations[id]!
        seen.lastSeenMs = max(seen.lastSeenMs, nowMs)
        return .success(Activated(activation: seen, existing: true, rule: rule, changes: changes))
    }

    /// Frees an activation (moving a licence to another machine). `user` must be its user unless `asAdmin`.
    public mutating func deactivate(_ id: String, user: String, asAdmin: Bool = false, at nowMs: Int64) -> Result<
        [LedgerChange], LicenseError
    > {
        guard let activation = self.activations[id] else {
            return .failure(LicenseError(.notFound, "no activation \(id)"))
        }
        guard activation.user == user || asAdmin else {
            return .failure(LicenseError(.permissionDenied, "activation \(id) belongs to user '\(activation.user)'"))
        }
        let change = LedgerChange.deactivated(id: id, cause: asAdmin && activation.user != user ? .revoked : .checkedIn, atMs: nowMs)
        self.apply(change)
        return .success([change])
    }

    /// Frees activation `id` that its machine returned (an air-gapped machine, through an
    /// operator): the machine's `fingerprint` must match the activation's under its licence's rule.
    public mutating func returnActivation(_ id: String, fingerprint: [String], at nowMs: Int64) -> Result<
        (activation: Activation, changes: [LedgerChange]), LicenseError
    > {
        guard let activation = self.activations[id] else {
            return .failure(LicenseError(.notFound, "no activation \(id); it was deactivated or reclaimed"))
        }
        let rule = self.nodeLocked[activation.licenseID]?.license.fingerprintMatch ?? .most
        guard FingerprintMatch.matches(bound: activation.fingerprint, presented: fingerprint, rule: rule) else {
            return .failure(
                LicenseError(
                    .permissionDenied,
                    "the returning machine's fingerprint does not match activation \(id) (machine '\(activation.machineName)')"
                )
            )
        }
        let change = LedgerChange.deactivated(id: id, cause: .checkedIn, atMs: nowMs)
        self.apply(change)
        return .success((activation, [change]))
    }

    /// Reclaims activations not seen for `inactivityMs`.
    public mutating func reapInactiveActivations(inactivityMs: Int64, at nowMs: Int64) -> [(activation: Activation, change: LedgerChange)] {
        let idle = self.activations.values.filter { nowMs - $0.lastSeenMs >= inactivityMs }.sorted { $0.id < $1.id }
        return idle.map { activation in
            let change = LedgerChange.deactivated(id: activation.id, cause: .expired, atMs: nowMs)
            self.apply(change)
            return (activation, change)
        }
    }

    /// Every activation, by id.
    public var allActivations: [Activation] { self.activations.values.sorted { $0.id < $1.id } }
}
