import Foundation
import HeapModule
public import LicenseProtocol

/// Floating seats: which licences grant what, who holds which seats, and until when.
///
/// A pure state machine: time comes in as an argument, random ids come in with the request, and
/// every durable change is returned as a `LedgerChange` that `apply(_:)` alone performs, so
/// replaying the changes of a write-ahead log rebuilds the same ledger. Sessions and heartbeats are
/// not durable: they live in memory, and after a restart every lease gets one full TTL.
public struct SeatLedger: Sendable {
    /// Settings that are not part of any licence.
    public struct Configuration: Sendable, Equatable {
        /// TTL of leases whose licence sets none.
        public var defaultLeaseTTLMs: Int64
        /// No licence may set a TTL below this.
        public var minimumLeaseTTLMs: Int64 = 10_000
        /// Warn at check-out when the licence expires within this time.
        public var expiryWarningMs: Int64 = 14 * 86_400_000

        /// Creates a configuration.
        public init(defaultLeaseTTLMs: Int64) {
            self.defaultLeaseTTLMs = defaultLeaseTTLMs
        }
    }

    /// A check-out as the ledger sees it.
    public struct CheckOut: Sendable {
        /// The session asking.
        public var sessionID: SessionID
        /// Feature name.
        public var feature: String
        /// Client version (empty = the session's Hello version).
        public var version: String
        /// Seats wanted (0 = 1).
        public var count: UInt32
        /// Idempotency key (empty = none).
        public var checkoutKey: [UInt8]
        /// The id to give the lease if one is granted (the server draws it at random).
        public var newLeaseID: LeaseID

        /// Creates a check-out.
        public init(
            sessionID: SessionID,
            feature: String,
            version: String = "",
            count: UInt32 = 1,
            checkoutKey: [UInt8] = [],
            newLeaseID: LeaseID
        ) {
            self.sessionID = sessionID
            self.feature = feature
            self.version = version
            self.count = count
            self.checkoutKey = checkoutKey
            self.newLeaseID = newLeaseID
        }
    }

    /// A granted (or replayed) check-out.
    public struct Grant: Sendable, Equatable {
        /// The lease.
        public var lease: Lease
        /// True when the checkout_key was already granted and this is that same lease.
        public var replayed: Bool
        /// Things the user should know (grace period, expiry soon).
        public var warnings: [String]
        /// What changed (empty for a replay on the same session).
        public var changes: [LedgerChange]
    }

    /// A lease returned.
    public struct CheckIn: Sendable, Equatable {
        /// The lease.
        public var lease: Lease
        /// What changed.
        public var changes: [LedgerChange]
    }

    /// Result of a heartbeat.
    public struct Heartbeat: Sendable, Equatable {
        /// Leases renewed.
        public var renewed: Int
        /// Their new expiry (the latest of them).
        public var expiresAtMs: Int64
        /// Named leases this session does not hold (reclaimed, revoked or never its own).
        public var lost: [LeaseID]
    }

    struct PoolKey: Hashable {
        var licenseID: String
        var feature: String
    }

    struct Pool {
        var license: VerifiedLicense
        var features: [String: Licensed_V1_Feature]
        var unlimited: Bool
        var hard: Bool
        var trueUp: Bool
        var ttlMs: Int64
        /// not_after, with perpetual licences last.
        var expiryOrder: Int64
    }

    struct SessionRecord {
        var identity: ClientIdentity
        var leases: Set<LeaseID> = []
        var attached: Bool
    }

    struct Expiry: Comparable {
        var atMs: Int64
        var leaseID: LeaseID
        static func < (a: Expiry, b: Expiry) -> Bool { (a.atMs, a.leaseID) < (b.atMs, b.leaseID) }
    }

    /// The configuration.
    public private(set) var configuration: Configuration
    private(set) var pools: [String: Pool] = [:]
    /// Licence ids granting each feature, soonest expiry first.
    private(set) var poolsByFeature: [String: [String]] = [:]
    private var seatsInUse: [PoolKey: UInt32] = [:]
    private var overageInUse: [PoolKey: UInt32] = [:]
    /// Every live lease.
    public private(set) var leases = LeaseTable()
    private var sessions: [SessionID: SessionRecord] = [:]
    private var leaseByKey: [[UInt8]: LeaseID] = [:]
    private var fencing: [String: UInt64] = [:]
    private var expiries = Heap<Expiry>()

    /// An empty ledger serving `licenses`.
    public init(configuration: Configuration, licenses: [VerifiedLicense]) {
        self.configuration = configuration
        self.replaceLicenses(licenses)
    }

    // MARK: - Licences

    /// Serves `licenses` from now on (a reload). Leases stay where they are, even on a licence
    /// that shrank or disappeared; only new grants see the new set.
    public mutating func replaceLicenses(_ licenses: [VerifiedLicense]) {
        self.pools = [:]
        var byFeature: [String: [String]] = [:]
        for verified in licenses where verified.license.model != .nodeLocked {
            let license = verified.license
            var features: [String: Licensed_V1_Feature] = [:]
            for feature in license.features where features[feature.name] == nil {
                features[feature.name] = feature
                byFeature[feature.name, default: []].append(license.id)
            }
            let ttl = license.lease.heartbeatTtlMs == 0 ? self.configuration.defaultLeaseTTLMs : Int64(license.lease.heartbeatTtlMs)
            self.pools[license.id] = Pool(
                license: verified,
                features: features,
                unlimited: license.overage == .unlimited || license.model == .site,
                hard: license.overage == .hard || license.overage == .unspecified,
                trueUp: license.overage == .trueUp,
                ttlMs: max(ttl, self.configuration.minimumLeaseTTLMs),
                expiryOrder: license.notAfterMs == 0 ? Int64.max : license.notAfterMs
            )
        }
        for (feature, ids) in byFeature {
            byFeature[feature] = ids.sorted { a, b in
                let (x, y) = (self.pools[a]!, self.pools[b]!)
                return (x.expiryOrder, a) < (y.expiryOrder, b)
            }
        }
        self.poolsByFeature = byFeature
    }

    /// Capacity of `feature` at `nowMs`: the sum of the counts of every valid licence granting it
    /// (nil when an unlimited licence grants it).
    public func capacity(of feature: String, at nowMs: Int64) -> UInt32? {
        var total: UInt32 = 0
        for id in self.poolsByFeature[feature] ?? [] {
            let pool = self.pools[id]!
            guard Self.isUsable(pool.license.state(at: nowMs)) else { continue }
            if pool.unlimited { return nil }
            total += pool.features[feature]!.count
        }
        return total
    }

    /// Seats of `feature` held now.
    public func seatsInUse(of feature: String) -> UInt32 {
        var total: UInt32 = 0
        for (key, seats) in self.seatsInUse where key.feature == feature { total += seats }
        return total
    }

    private static func isUsable(_ state: Licensed_V1_LicenseStatus.State) -> Bool {
        state == .compliant || state == .expiring
    }

    // MARK: - Sessions

    /// Registers a new connected session.
    public mutating func openSession(_ id: SessionID, identity: ClientIdentity) {
        self.sessions[id] = SessionRecord(identity: identity, attached: true)
    }

    /// Re-attaches a connection to session `id` if the session still exists (it holds leases that
    /// have not lapsed). Returns its identity, or nil when there is nothing to resume.
    public mutating func resumeSession(_ id: SessionID) -> ClientIdentity? {
        guard self.sessions[id] != nil else { return nil }
        self.sessions[id]!.attached = true
        return self.sessions[id]!.identity
    }

    /// The connection of session `id` closed. Its leases stay until their TTL (the client may
    /// resume); a session without leases is forgotten.
    public mutating func detachSession(_ id: SessionID) {
        guard let session = self.sessions[id] else { return }
        if session.leases.isEmpty {
            self.sessions[id] = nil
        } else {
            self.sessions[id]!.attached = false
        }
    }

    /// True when session `id` exists and is attached to a connection.
    public func isAttached(_ id: SessionID) -> Bool { self.sessions[id]?.attached ?? false }

    /// The leases session `id` holds.
    public func leases(ofSession id: SessionID) -> [Lease] {
        (self.sessions[id]?.leases ?? []).compactMap { self.leases[$0] }.sorted { $0.grantedAtMs < $1.grantedAtMs }
    }

    /// Number of sessions (attached or waiting for resume).
    public var sessionCount: Int { self.sessions.count }

    // MARK: - Check-out

    /// Grants `request.count` seats of a feature, or says why not.
    public mutating func checkOut(_ request: CheckOut, at nowMs: Int64) -> Result<Grant, LicenseError> {
        guard let session = self.sessions[request.sessionID] else {
            return .failure(LicenseError(.invalidArgument, "unknown session; say Hello first"))
        }
        // A retry of a check-out already granted: the same lease, never a second seat.
        if !request.checkoutKey.isEmpty, let existing = self.leaseByKey[request.checkoutKey], let lease = self.leases[existing] {
            guard lease.feature == request.feature else {
                return .failure(LicenseError(.invalidArgument, "checkout_key was already used for feature '\(lease.feature)'"))
            }
            var changes: [LedgerChange] = []
            if lease.sessionID != request.sessionID {
                changes.append(.rebound(lease.id, to: request.sessionID))
            }
            for change in changes { self.apply(change) }
            self.renew(lease.id, at: nowMs)
            return .success(Grant(lease: self.leases[existing]!, replayed: true, warnings: [], changes: changes))
        }
        let count = max(request.count, 1)
        let version = request.version.isEmpty ? session.identity.clientVersion : request.version
        switch self.choosePool(feature: request.feature, version: version, count: count, at: nowMs) {
        case .failure(let error):
            return .failure(error)
        case .success(let (licenseID, overage)):
            let pool = self.pools[licenseID]!
            let fencing = (self.fencing[request.feature] ?? 0) + 1
            let lease = Lease(
                id: request.newLeaseID,
                sessionID: request.sessionID,
                feature: request.feature,
                licenseID: licenseID,
                count: count,
                identity: session.identity,
                grantedAtMs: nowMs,
                expiresAtMs: nowMs + pool.ttlMs,
                ttlMs: pool.ttlMs,
                overage: overage,
                fencingToken: fencing,
                checkoutKey: request.checkoutKey
            )
            let change = LedgerChange.granted(lease)
            self.apply(change)
            return .success(
                Grant(lease: lease, replayed: false, warnings: self.warnings(for: pool, overage: overage, at: nowMs), changes: [change])
            )
        }
    }

    /// The licence to take seats from: usable, allowing this version, soonest expiry first with
    /// free seats; else the soonest-expiring TRUE_UP licence as overage; else why not.
    private func choosePool(feature: String, version: String, count: UInt32, at nowMs: Int64) -> Result<(String, Bool), LicenseError> {
        guard let ids = self.poolsByFeature[feature], !ids.isEmpty else {
            return .failure(LicenseError(.notFound, "no licence grants feature '\(feature)'"))
        }
        var states: [Licensed_V1_LicenseStatus.State] = []
        var ceilings: [String] = []
        var candidates: [String] = []
        for id in ids {
            let pool = self.pools[id]!
            let state = pool.license.state(at: nowMs)
            states.append(state)
            guard Self.isUsable(state) else { continue }
            let ceiling = pool.features[feature]!.version
            guard Version.isAllowed(version, ceiling: ceiling) else {
                ceilings.append(ceiling)
                continue
            }
            candidates.append(id)
        }
        if candidates.isEmpty {
            if !ceilings.isEmpty {
                let highest = ceilings.max { Version.compare($0, $1) < 0 }!
                let stated = version.isEmpty ? "no version" : "version \(version)"
                return .failure(
                    LicenseError(.versionNotAllowed, "feature '\(feature)' is licensed up to version \(highest); the client sent \(stated)")
                )
            }
            if states.contains(.expired) {
                return .failure(LicenseError(.licenseExpired, "every licence for feature '\(feature)' has expired; renew the licence"))
            }
            let start = ids.map { self.pools[$0]!.license.license.notBeforeMs }.min() ?? 0
            return .failure(
                LicenseError(.notYetValid, "the licence for feature '\(feature)' is not valid before \(Timestamp.iso8601(start))")
            )
        }
        for id in candidates {
            let pool = self.pools[id]!
            if pool.unlimited { return .success((id, false)) }
            let used = self.seatsInUse[PoolKey(licenseID: id, feature: feature)] ?? 0
            let capacity = pool.features[feature]!.count
            if used < capacity, capacity - used >= count { return .success((id, false)) }
        }
        if let trueUp = candidates.first(where: { self.pools[$0]!.trueUp }) {
            return .success((trueUp, true))
        }
        let capacity = self.capacity(of: feature, at: nowMs) ?? 0
        let inUse = self.seatsInUse(of: feature)
        let asked = count == 1 ? "" : " (\(count) asked for)"
        return .failure(LicenseError(.noSeats, "all \(capacity) seats of '\(feature)' are in use (\(inUse) held)\(asked); try again later"))
    }

    private func warnings(for pool: Pool, overage: Bool, at nowMs: Int64) -> [String] {
        var warnings: [String] = []
        let license = pool.license.license
        if pool.license.state(at: nowMs) == .expiring {
            warnings.append(
                "licence '\(license.id)' expired on \(Timestamp.iso8601(license.notAfterMs)); "
                    + "its grace period ends \(Timestamp.iso8601(license.notAfterMs + license.gracePeriodMs))"
            )
        } else if license.notAfterMs != 0, license.notAfterMs - nowMs < self.configuration.expiryWarningMs {
            warnings.append("licence '\(license.id)' expires on \(Timestamp.iso8601(license.notAfterMs))")
        }
        if overage {
            warnings.append("granted beyond the purchased count of licence '\(license.id)' (true-up)")
        }
        return warnings
    }

    // MARK: - Check-in, heartbeat, reclamation

    /// Returns a lease. Only its session may, unless `asAdmin`.
    public mutating func checkIn(_ leaseID: LeaseID, by sessionID: SessionID, asAdmin: Bool = false, at nowMs: Int64) -> Result<
        CheckIn, LicenseError
    > {
        guard let lease = self.leases[leaseID] else {
            return .failure(LicenseError(.notFound, "no lease \(leaseID); it was already checked in or reclaimed"))
        }
        guard lease.sessionID == sessionID || asAdmin else {
            return .failure(LicenseError(.permissionDenied, "lease \(leaseID) belongs to another session"))
        }
        let change = LedgerChange.released(leaseID, asAdmin && lease.sessionID != sessionID ? .revoked : .checkedIn, atMs: nowMs)
        self.apply(change)
        return .success(CheckIn(lease: lease, changes: [change]))
    }

    /// Renews the named leases of a session, or all of them when `leaseIDs` is empty.
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

    /// Gives every lease a full TTL from `nowMs` (after recovery, so a restart takes no seat from a
    /// live client).
    public mutating func renewAll(at nowMs: Int64) {
        for id in Array(self.leases.keys) { self.renew(id, at: nowMs) }
    }

    private mutating func renew(_ id: LeaseID, at nowMs: Int64) {
        guard var lease = self.leases[id] else { return }
        let expiry = nowMs + lease.ttlMs
        guard expiry > lease.expiresAtMs else { return }
        lease.expiresAtMs = expiry
        self.leases[id] = lease
        // The old heap entry stays and is skipped when it surfaces (its time no longer matches).
        self.expiries.insert(Expiry(atMs: expiry, leaseID: id))
    }

    /// Reclaims every lease whose TTL lapsed by `nowMs`. Costs O(log n) per entry that surfaces:
    /// leases due now, plus entries superseded by heartbeats — never a walk over all leases.
    public mutating func reap(at nowMs: Int64) -> [(lease: Lease, change: LedgerChange)] {
        var reclaimed: [(Lease, LedgerChange)] = []
        while let next = self.expiries.min, next.atMs <= nowMs {
            self.expiries.removeMin()
            guard let lease = self.leases[next.leaseID], lease.expiresAtMs == next.atMs else { continue }
            let change = LedgerChange.released(lease.id, .expired, atMs: nowMs)
            self.apply(change)
            reclaimed.append((lease, change))
        }
        return reclaimed
    }

    /// Entries in the expiry index (live and superseded), to observe the reaper's bound in tests.
    public var expiryIndexCount: Int { self.expiries.count }

    // MARK: - Applying changes

    /// Performs one change. The only place durable state changes; replay calls it directly.
    public mutating func apply(_ change: LedgerChange) {
        switch change {
        case .granted(let lease):
            self.leases[lease.id] = lease
            let key = PoolKey(licenseID: lease.licenseID, feature: lease.feature)
            self.seatsInUse[key, default: 0] += lease.count
            if lease.overage { self.overageInUse[key, default: 0] += lease.count }
            if !lease.checkoutKey.isEmpty { self.leaseByKey[lease.checkoutKey] = lease.id }
            self.fencing[lease.feature] = max(self.fencing[lease.feature] ?? 0, lease.fencingToken)
            if self.sessions[lease.sessionID] == nil {
                // Replay: the session is rebuilt from its leases, waiting for its client to resume.
                self.sessions[lease.sessionID] = SessionRecord(identity: lease.identity, attached: false)
            }
            self.sessions[lease.sessionID]!.leases.insert(lease.id)
            self.expiries.insert(Expiry(atMs: lease.expiresAtMs, leaseID: lease.id))
        case .released(let id, _, _):
            guard let lease = self.leases.removeValue(forKey: id) else { return }
            let key = PoolKey(licenseID: lease.licenseID, feature: lease.feature)
            self.seatsInUse[key]! -= lease.count
            if self.seatsInUse[key] == 0 { self.seatsInUse[key] = nil }
            if lease.overage {
                self.overageInUse[key]! -= lease.count
                if self.overageInUse[key] == 0 { self.overageInUse[key] = nil }
            }
            if !lease.checkoutKey.isEmpty { self.leaseByKey[lease.checkoutKey] = nil }
            if var session = self.sessions[lease.sessionID] {
                session.leases.remove(id)
                self.sessions[lease.sessionID] = session.leases.isEmpty && !session.attached ? nil : session
            }
        case .rebound(let id, let newSession):
            guard var lease = self.leases[id] else { return }
            if var old = self.sessions[lease.sessionID] {
                old.leases.remove(id)
                self.sessions[lease.sessionID] = old.leases.isEmpty && !old.attached ? nil : old
            }
            lease.sessionID = newSession
            if let session = self.sessions[newSession] { lease.identity = session.identity }
            self.leases[id] = lease
            if self.sessions[newSession] == nil {
                self.sessions[newSession] = SessionRecord(identity: lease.identity, attached: false)
            }
            self.sessions[newSession]!.leases.insert(id)
        }
    }

    // MARK: - Status

    /// Per-feature usage and per-licence state, as the protocol's StatusResponse carries them.
    public func status(features filter: [String] = [], includeHolders: Bool, at nowMs: Int64) -> Licensed_V1_StatusResponse {
        var response = Licensed_V1_StatusResponse()
        let wanted = Set(filter)
        var featureNames = Set(self.poolsByFeature.keys)
        for lease in self.leases.values { featureNames.insert(lease.feature) }
        var holdersByFeature: [String: [Licensed_V1_Holder]] = [:]
        if includeHolders {
            for lease in self.leases.values where wanted.isEmpty || wanted.contains(lease.feature) {
                holdersByFeature[lease.feature, default: []].append(Self.holder(lease))
            }
        }
        for name in featureNames.sorted() where wanted.isEmpty || wanted.contains(name) {
            var feature = Licensed_V1_FeatureStatus()
            feature.feature = name
            let capacity = self.capacity(of: name, at: nowMs)
            feature.unlimited = capacity == nil
            feature.capacity = capacity ?? 0
            feature.inUse = self.seatsInUse(of: name)
            feature.overage = self.overageInUse.filter { $0.key.feature == name }.values.reduce(0, +)
            feature.holders = (holdersByFeature[name] ?? []).sorted {
                $0.sinceMs != $1.sinceMs ? $0.sinceMs < $1.sinceMs : $0.leaseID.lexicographicallyPrecedes($1.leaseID)
            }
            response.features.append(feature)
        }
        for id in self.pools.keys.sorted() {
            let pool = self.pools[id]!
            var status = Licensed_V1_LicenseStatus()
            status.licenseID = id
            status.expiresAtMs = pool.license.license.notAfterMs
            status.features = pool.license.license.features.map(\.name)
            status.file = pool.license.file
            status.state = pool.license.state(at: nowMs)
            if status.state == .compliant, pool.hard,
                pool.features.contains(where: { (self.seatsInUse[PoolKey(licenseID: id, feature: $0.key)] ?? 0) > $0.value.count })
            {
                status.state = .atRisk
            }
            response.licenses.append(status)
        }
        response.sessions = UInt32(self.sessions.values.filter(\.attached).count)
        return response
    }

    static func holder(_ lease: Lease) -> Licensed_V1_Holder {
        var holder = Licensed_V1_Holder()
        holder.leaseID = .init(lease.id.bytes)
        holder.user = lease.identity.user
        holder.host = lease.identity.host
        holder.count = lease.count
        holder.sinceMs = lease.grantedAtMs
        holder.expiresAtMs = lease.expiresAtMs
        holder.overage = lease.overage
        holder.licenseID = lease.licenseID
        return holder
    }
}
