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
