public import LicenseProtocol

/// Seats of one feature held by one session, from one licence.
public struct Lease: Sendable, Hashable {
    /// The lease's id (128 random bits).
    public var id: LeaseID
    /// The session that owns it; only it (or an admin) may check it in.
    public var sessionID: SessionID
    /// Feature name.
    public var feature: String
    /// The licence the seats come from.
    public var licenseID: String
    /// Seats held.
    public var count: UInt32
    /// Who holds it.
    public var identity: ClientIdentity
    /// When it was granted.
    public var grantedAtMs: Int64
    /// Reclaimed at this time unless renewed.
    public var expiresAtMs: Int64
    /// How far a heartbeat pushes expiresAtMs.
    public var ttlMs: Int64
    /// Granted beyond the licence's count (TRUE_UP).
    public var overage: Bool
    /// Strictly increasing per feature across grants.
    public var fencingToken: UInt64
    /// The client's idempotency key (empty = none).
    public var checkoutKey: [UInt8]
    /// A borrow: held without heartbeats until `expiresAtMs`.
    public var borrowed = false
    /// Checked in, but the seat stays held for the same identity until `expiresAtMs` (linger).
    public var lingering = false
    /// For an add-on: the base lease of the same session it was granted under.
    public var baseLeaseID: LeaseID?
    /// Seats of the dup_group this lease shares (0 = not shared; the group holds this many seats
    /// while any member lives).
    public var sharedSeats: UInt32 = 0
    /// The dup_group identity key the lease shares under ("user", "host" or "user@host"; empty = none).
    public var dupIdentity = ""
    /// Seats of the licence's token pool one seat of this lease costs (0 = a plain feature).
    public var tokenCost: UInt32 = 0

    /// Creates a lease.
    public init(
        id: LeaseID,
        sessionID: SessionID,
        feature: String,
        licenseID: String,
        count: UInt32,
        identity: ClientIdentity,
        grantedAtMs: Int64,
        expiresAtMs: Int64,
        ttlMs: Int64,
        overage: Bool,
        fencingToken: UInt64,
        checkoutKey: [UInt8]
    ) {
        self.id = id
        self.sessionID = sessionID
        self.feature = feature
        self.licenseID = licenseID
        self.count = count
        self.identity = identity
        self.grantedAtMs = grantedAtMs
        self.expiresAtMs = expiresAtMs
        self.ttlMs = ttlMs
        self.overage = overage
        self.fencingToken = fencingToken
        self.checkoutKey = checkoutKey
    }
}

/// Why a lease ended.
public enum ReleaseCause: String, Sendable, Hashable, Codable {
    /// Its owner checked it in.
    case checkedIn = "checked_in"
    /// No heartbeat within its TTL.
    case expired
    /// An administrator revoked it.
    case revoked
    /// Its base lease was checked in (add-ons).
    case baseReleased = "base_released"
}

/// One change of ledger state: what the write-ahead log records and replay re-applies.
public enum LedgerChange: Sendable, Hashable {
    /// Seats granted.
    case granted(Lease)
    /// Seats returned or taken back.
    case released(LeaseID, ReleaseCause, atMs: Int64)
    /// A lease moved to another session (a check-out retried with its key from a new session, or a
    /// lingering seat taken up again by its identity); it is no longer lingering.
    case rebound(LeaseID, to: SessionID)
    /// Checked in with linger: the seat stays held until `untilMs`.
    case lingered(LeaseID, untilMs: Int64)
    /// A trial licence's first grant: its trial days count from here.
    case trialStarted(licenseID: String, atMs: Int64)
    /// A machine activated (or re-activated with a drifted fingerprint: the record replaces the old).
    case activated(Activation)
    /// A machine was seen (logged at most once a day per activation, for inactivity reclamation).
    case activationSeen(id: String, atMs: Int64)
    /// An activation ended: deactivated, revoked, or reclaimed for inactivity.
    case deactivated(id: String, cause: ReleaseCause, atMs: Int64)
    /// A bulk assignment run, kept for history.
    case assignmentRun(Licensed_V1_AssignmentRun)
    /// The server's wall clock at a start (a durable mark of the time it has seen).
    case clockMarked(atMs: Int64)
}
