import DequeModule
import Foundation
import HeapModule
public import LicenseProtocol

/// Floating seats: which licences grant what, who holds which seats, who waits, and until when.
///
/// A pure state machine: time comes in as an argument, random ids come in with the request, and
/// every durable change is returned as a `LedgerChange` that `apply(_:)` alone performs, so
/// replaying the changes of a write-ahead log rebuilds the same ledger. Sessions, heartbeats and
/// the wait queues are not durable: they live in memory, and after a restart every lease gets one
/// full TTL.
public struct SeatLedger: Sendable {
    /// Settings that are not part of any licence.
    public struct Configuration: Sendable, Equatable {
        /// TTL of leases whose licence sets none.
        public var defaultLeaseTTLMs: Int64
        /// No licence may set a TTL below this.
        public var minimumLeaseTTLMs: Int64 = 10_000
        /// Warn at check-out when the licence expires within this time.
        public var expiryWarningMs: Int64 = 14 * 86_400_000
        /// Most check-outs waiting per feature.
        public var maximumQueueLength = 1_000
        /// Server-side options: they tighten licences, never widen them (FlexLM's options file).
        public var restrictions: [FeatureRestriction] = []
        /// A wall clock further than this behind `clockReferenceMs` is a clock setback:
        /// time-limited licences grant nothing until it is right again.
        public var clockSetbackToleranceMs: Int64 = 86_400_000

        /// Creates a configuration.
        public init(defaultLeaseTTLMs: Int64) {
            self.defaultLeaseTTLMs = defaultLeaseTTLMs
        }
    }

    /// Server-side rules for one feature (or every feature, when `feature` is empty), on top of
    /// whatever the licences say: they can only refuse or reserve, never grant more.
    public struct FeatureRestriction: Sendable, Equatable {
        /// Feature name; empty = every feature.
        public var feature = ""
        /// Users, hosts and groups that may not check it out.
        public var excludedUsers: [String] = []
        public var excludedHosts: [String] = []
        public var excludedGroups: [String] = []
        /// When not empty, only these users, hosts or groups may check it out.
        public var includedUsers: [String] = []
        public var includedHosts: [String] = []
        public var includedGroups: [String] = []
        /// Most seats one user may hold (0 = no limit).
        public var maxPerUser: UInt32 = 0
        /// Seats kept for members of a group: others cannot take the last of them.
        public var reservations: [String: UInt32] = [:]

        /// Creates a restriction.
        public init(feature: String = "") { self.feature = feature }
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
        /// Borrow for this long without heartbeats (0 = a normal lease).
        public var borrowMs: Int64
        /// Build date of the client software (0 = not given), against maintenance_until.
        public var buildDateMs: Int64

        /// Creates a check-out.
        public init(
            sessionID: SessionID,
            feature: String,
            version: String = "",
            count: UInt32 = 1,
            checkoutKey: [UInt8] = [],
            newLeaseID: LeaseID,
            borrowMs: Int64 = 0,
            buildDateMs: Int64 = 0
        ) {
            self.sessionID = sessionID
            self.feature = feature
            self.version = version
            self.count = count
            self.checkoutKey = checkoutKey
            self.newLeaseID = newLeaseID
            self.borrowMs = borrowMs
            self.buildDateMs = buildDateMs
        }
    }

    /// A granted (or replayed) check-out.
    public struct Grant: Sendable, Equatable {
        /// The lease.
        public var lease: Lease
        /// True when the checkout_key was already granted and this is that same lease.
        public var replayed: Bool
        /// Things the user should know (grace period, expiry soon, overage, shared seat).
        public var warnings: [String]
        /// What changed (empty for a replay on the same session).
        public var changes: [LedgerChange]
    }

    /// A lease returned.
    public struct CheckIn: Sendable, Equatable {
        /// The lease.
        public var lease: Lease
        /// Add-on leases released with it (their base is gone).
        public var releasedAddOns: [Lease]
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

    /// A client's check-out key, as the key of `leaseByKey`: hashed as one run of bytes, where
    /// `[UInt8]`'s own hashing feeds the hasher a byte at a time (1,800 instructions for the
    /// 16 bytes of a key, in every check-out and every replayed lease). Still SipHash with the
    /// process's seed: the bytes are the client's choice.
    struct CheckoutKey: Hashable, CustomStringConvertible {
        var bytes: [UInt8]
        init(_ bytes: [UInt8]) { self.bytes = bytes }
        static func == (a: CheckoutKey, b: CheckoutKey) -> Bool { a.bytes == b.bytes }
        func hash(into hasher: inout Hasher) { self.bytes.withUnsafeBytes { hasher.combine(bytes: $0) } }
        var description: String { self.bytes.description }
    }

    /// What is held under one pool key: seats and overage seats (a dup group counts once; kept
    /// for a feature's key, 0 under "*"), and seats per user and per group, counting every group
    /// a holder is within ("/emea/sales" also counts for "/emea"). One entry per key, so that a
    /// charge hashes each key once, not once per counter.
    struct PoolUsage: Equatable {
        var seats: UInt32 = 0
        var overage: UInt32 = 0
        var byUser: [String: UInt32] = [:]
        var byGroup: [String: UInt32] = [:]

        /// Adds (sign 1) or removes (sign -1, never below 0) `seats` from `value`.
        @inline(__always)
        static func adjust(_ value: inout UInt32, by seats: UInt32, sign: Int) {
            value = sign > 0 ? value + seats : (value > seats ? value - seats : 0)
        }

        /// The seats (and overage) held, and with `user` the seats that user and the groups of
        /// `lineage` hold.
        mutating func adjust(seats: UInt32, overage: Bool, sign: Int, user: String? = nil, lineage: [String] = []) {
            Self.adjust(&self.seats, by: seats, sign: sign)
            if overage { Self.adjust(&self.overage, by: seats, sign: sign) }
            if let user { self.adjustHolders(seats: seats, sign: sign, user: user, lineage: lineage) }
        }

        /// The seats `user` and the groups of `lineage` hold.
        mutating func adjustHolders(seats: UInt32, sign: Int, user: String, lineage: [String]) {
            Self.adjust(&self.byUser[user, default: 0], by: seats, sign: sign)
            for group in lineage { Self.adjust(&self.byGroup[group, default: 0], by: seats, sign: sign) }
        }
    }

    struct PoolKey: Hashable {
        var licenseID: String
        var feature: String
    }

    /// One licence granting one feature, and the terms of that feature a check-out reads, taken
    /// from the generated message once at load (its getters cost ~85 instructions each). A class
    /// of constants: a check-out's candidates hold it with one retain.
    final class FeatureSource: Sendable {
        let pool: LicensePool
        /// Where the feature's seats are counted.
        let key: PoolKey
        /// Seats the licence grants (of its token pool, when `tokenCost` > 0).
        let count: UInt32
        /// Tokens one seat costs (0 = counted by its own seats).
        let tokenCost: UInt32
        /// The highest client version allowed (empty = any).
        let version: String

        init(pool: LicensePool, feature: String, terms: Licensed_V1_Feature) {
            self.pool = pool
            self.key = PoolKey(licenseID: pool.id, feature: feature)
            self.count = terms.count
            self.tokenCost = terms.tokenCost
            self.version = terms.version
        }
    }

    /// Leases sharing seats under a licence's dup_group: the same feature and identity key.
    struct DupKey: Hashable {
        var licenseID: String
        var feature: String
        var identity: String
    }

    struct DupGroup {
        var seats: UInt32
        var members: Set<LeaseID>
        var user: String
        var groups: [String]
    }

    struct SessionRecord {
        var identity: ClientIdentity
        var leases: Set<LeaseID> = []
        /// The subset of `leases` granted under a base lease (add-ons), usually empty: a check-in
        /// or reclamation looks here for what goes with a base instead of at every lease.
        var addOns: Set<LeaseID> = []
        var attached: Bool
    }

    struct Expiry: Comparable {
        var atMs: Int64
        var leaseID: LeaseID
        static func < (a: Expiry, b: Expiry) -> Bool { (a.atMs, a.leaseID) < (b.atMs, b.leaseID) }
    }

    /// A check-out waiting for a seat.
    public struct Waiter: Sendable, Equatable {
        /// The server's handle for the waiting request.
        public var id: UInt64
        /// The check-out to retry.
        public var request: CheckOut
        /// When it started waiting.
        public var sinceMs: Int64
        /// When it gives up.
        public var deadlineMs: Int64

        public static func == (a: Waiter, b: Waiter) -> Bool { a.id == b.id }
    }

    /// The configuration.
    public var configuration: Configuration {
        didSet { self.updateHolderCounting() }
    }
    var pools: [String: LicensePool] = [:]
    /// The licences granting each feature, soonest expiry first, each with its terms for the
    /// feature: a check-out finds its candidates and their terms with one lookup of the feature.
    var poolsByFeature: [String: [FeatureSource]] = [:]
    /// What is held under each licence's feature, and ("*") under all of its features.
    var usage: [PoolKey: PoolUsage] = [:]
    /// The licences with a `usage` entry for each feature (not "*"): a feature's seats in use are
    /// summed over these, not over every entry. The utilisation thresholds (on by default) read
    /// them after every change, and a site with a thousand features otherwise compared a thousand
    /// feature names a check-out. Entries are only ever added (a released seat leaves its entry
    /// at 0), so the index grows when `charge` makes an entry and nowhere else.
    var usageLicensesByFeature: [String: [String]] = [:]
    /// Whether `usage` counts what each user and group holds: only while a rule reads it
    /// (`updateHolderCounting`); otherwise a grant hashes no user, group or "*" key.
    var countsHolders = false
    /// Token-pool seats held per licence.
    var tokensInUse: [String: UInt32] = [:]
    /// Each group path's lineage (itself and every group above it), worked out once: a cache,
    /// not state (nothing reads it but `charge`).
    var lineages: [String: [String]] = [:]
    static let maxKeptLineages = 65_536
    var dupGroups: [DupKey: DupGroup] = [:]
    /// Every live lease.
    public internal(set) var leases = LeaseTable()
    var sessions: [SessionID: SessionRecord] = [:]
    var leaseByKey: [CheckoutKey: LeaseID] = [:]
    var fencing: [String: UInt64] = [:]
    var expiries = Heap<Expiry>()
    /// First grant of each trial licence.
    public internal(set) var trialStarts: [String: Int64] = [:]
    /// Node-locked licences by id.
    var nodeLocked: [String: LicensePool] = [:]
    /// Activations by id.
    var activations: [String: Activation] = [:]
    /// The durable high-water mark of the wall clock: the latest time marked in the log (at each
    /// start and once a minute) or carried by a durable change (a grant, a trial start, an
    /// activation seen or freed), Unix epoch milliseconds.
    public internal(set) var clockHighWaterMs: Int64 = 0
    /// The latest issued_at of the licences served.
    public internal(set) var licensesIssuedMs: Int64 = 0
    /// The latest time the server saw outside the ledger (its audit trail's last record); set by
    /// the host.
    public var observedTimeMs: Int64 = 0
    /// Recorded bulk assignment runs, oldest first (the last 1,000).
    public internal(set) var assignmentRuns: [Licensed_V1_AssignmentRun] = []
    /// Leases checked in and lingering.
    var lingering: Set<LeaseID> = []
    /// Check-outs waiting, per feature, in arrival order.
    var queues: [String: Deque<Waiter>] = [:]

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
        self.nodeLocked = [:]
        for verified in licenses where verified.license.model == .nodeLocked {
            self.nodeLocked[verified.license.id] = LicensePool(verified, configuration: self.configuration)
        }
        for verified in licenses where verified.license.model != .nodeLocked {
            let pool = LicensePool(verified, configuration: self.configuration)
            self.pools[pool.id] = pool
        }
        var byFeature: [String: [FeatureSource]] = [:]
        for pool in self.pools.values {
            for (name, terms) in pool.features {
                byFeature[name, default: []].append(FeatureSource(pool: pool, feature: name, terms: terms))
            }
        }
        for (feature, sources) in byFeature {
            byFeature[feature] = sources.sorted { a, b in (a.pool.expiryOrder, a.pool.id) < (b.pool.expiryOrder, b.pool.id) }
        }
        self.poolsByFeature = byFeature
        self.licensesIssuedMs = licenses.map(\.license.issuedAtMs).max() ?? 0
        self.updateHolderCounting()
    }

    /// Where licence `id` stands at `nowMs`, counting a trial from its first grant.
    func state(of pool: LicensePool, at nowMs: Int64) -> Licensed_V1_LicenseStatus.State {
        if pool.isTimeLimited, self.clockSetbackMs(at: nowMs) > 0 { return .clockSetback }
        let state = pool.validity(at: nowMs)
        if pool.trialDays > 0, let started = self.trialStarts[pool.id],
            nowMs > started + Int64(pool.trialDays) * 86_400_000
        {
            return .expired
        }
        return state
    }

    static func isUsable(_ state: Licensed_V1_LicenseStatus.State) -> Bool {
        state == .compliant || state == .expiring
    }

    /// Capacity of `feature` at `nowMs`: the sum of the counts of every valid licence granting it
    /// (nil when an unlimited licence grants it).
    public func capacity(of feature: String, at nowMs: Int64) -> UInt32? {
        var total: UInt32 = 0
        for source in self.poolsByFeature[feature] ?? [] {
            let pool = source.pool
            guard Self.isUsable(self.state(of: pool, at: nowMs)) else { continue }
            if pool.unlimited { return nil }
            if source.tokenCost > 0 {
                total += pool.license.tokenPool / source.tokenCost
            } else {
                total += source.count
            }
        }
        return total
    }

    /// Seats of `feature` held now.
    public func seatsInUse(of feature: String) -> UInt32 {
        self.usage(of: feature).seats
    }

    /// Seats and overage seats of `feature` held now, under every licence that has held it. A
    /// few entries are read in a scan, which costs less than hashing the feature's name twice;
    /// more go through `usageLicensesByFeature`. Instructions a pair (`licensed-micro`, default
    /// thresholds): one feature, 73,877 always scanning, 75,959 always through the index, 74,004
    /// as here; a thousand features held (`serve-wide`), 180,952 scanning, 79,013 as here.
    func usage(of feature: String) -> (seats: UInt32, overage: UInt32) {
        var total: (seats: UInt32, overage: UInt32) = (0, 0)
        if self.usage.count <= Self.usageScannedUpTo {
            for (key, usage) in self.usage where key.feature == feature {
                total.seats += usage.seats
                total.overage += usage.overage
            }
            return total
        }
        for licenseID in self.usageLicensesByFeature[feature] ?? [] {
            guard let usage = self.usage[PoolKey(licenseID: licenseID, feature: feature)] else { continue }
            total.seats += usage.seats
            total.overage += usage.overage
        }
        return total
    }

    /// `usage` entries read by a scan at most (see `usage(of:)`).
    static let usageScannedUpTo = 16

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
    /// resume); its queued check-outs leave the queue; a session without leases is forgotten.
    /// Returns the ids of the waiters removed.
    @discardableResult
    public mutating func detachSession(_ id: SessionID) -> [UInt64] {
        let removed = self.removeWaiters(ofSession: id)
        guard let session = self.sessions[id] else { return removed }
        if session.leases.isEmpty {
            self.sessions[id] = nil
        } else {
            self.sessions[id]!.attached = false
        }
        return removed
    }

    /// True when session `id` exists and is attached to a connection.
    public func isAttached(_ id: SessionID) -> Bool { self.sessions[id]?.attached ?? false }

    /// The leases session `id` holds.
    public func leases(ofSession id: SessionID) -> [Lease] {
        (self.sessions[id]?.leases ?? []).compactMap { self.leases[$0] }.sorted { $0.grantedAtMs < $1.grantedAtMs }
    }

    /// Makes room for `leases` more leases (before replaying a snapshot: no rehashing as it loads).
    public mutating func reserveCapacity(leases: Int) {
        self.leases.reserveCapacity(self.leases.count + leases)
    }

    /// Seats held in all (a shared seat counts once), without a walk over the leases.
    public var seatsInUseTotal: Int { self.usage.values.reduce(0) { $0 + Int($1.seats) } }

    /// How many leases session `id` holds (without building them).
    public func leaseCount(ofSession id: SessionID) -> Int { self.sessions[id]?.leases.count ?? 0 }

    /// The add-ons session `sessionID` holds under base lease `baseID`, oldest first.
    func addOns(of baseID: LeaseID, session sessionID: SessionID) -> [Lease] {
        guard let ids = self.sessions[sessionID]?.addOns, !ids.isEmpty else { return [] }
        return ids.compactMap { self.leases[$0] }.filter { $0.baseLeaseID == baseID }.sorted { $0.grantedAtMs < $1.grantedAtMs }
    }

    /// Gives every session the identity `refresh` makes of it (a directory sync changed groups,
    /// cost centres or locations). Leases keep the identity they were granted with.
    public mutating func refreshIdentities(_ refresh: (ClientIdentity) -> ClientIdentity) {
        for id in Array(self.sessions.keys) { self.sessions[id]!.identity = refresh(self.sessions[id]!.identity) }
    }

    /// The identity of session `id`.
    public func identity(ofSession id: SessionID) -> ClientIdentity? { self.sessions[id]?.identity }

    /// Number of sessions (attached or waiting for resume).
    public var sessionCount: Int { self.sessions.count }

    /// Entries in the expiry index (live and superseded), to observe the reaper's bound in tests.
    public var expiryIndexCount: Int { self.expiries.count }
}
