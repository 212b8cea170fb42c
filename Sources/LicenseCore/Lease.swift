public import LicenseProtocol

/// Seats of one feature held by one session, from one licence.
///
/// The id and the expiry (which heartbeats change) are held inline and the rest in one immutable
/// shared box, as `ClientIdentity` holds its fields: a copy of a lease — into a change, a grant,
/// an audit event, the lease table — is 40 bytes and one retain instead of 170 bytes and eight.
/// Setting a boxed field makes a new box; they are set when a lease is made (the initializer
/// takes them all), and later only by the rare rebind and linger, and by replay sharing an
/// identity. The box's fields are constants: reading them needs no run-time exclusivity check,
/// which a mutable class property would (this module is built with them, for its client users).
public struct Lease: Sendable, Hashable {
    @usableFromInline
    struct Fields: Sendable, Hashable {
        @usableFromInline var sessionID: SessionID
        @usableFromInline var feature: String
        @usableFromInline var licenseID: String
        @usableFromInline var count: UInt32
        @usableFromInline var identity: ClientIdentity
        @usableFromInline var grantedAtMs: Int64
        @usableFromInline var ttlMs: Int64
        @usableFromInline var overage: Bool
        @usableFromInline var fencingToken: UInt64
        @usableFromInline var checkoutKey: [UInt8]
        @usableFromInline var borrowed = false
        @usableFromInline var lingering = false
        @usableFromInline var baseLeaseID: LeaseID?
        @usableFromInline var sharedSeats: UInt32 = 0
        @usableFromInline var dupIdentity = ""
        @usableFromInline var tokenCost: UInt32 = 0
    }

    @usableFromInline
    final class Box: Sendable {
        @usableFromInline let fields: Fields
        init(_ fields: Fields) { self.fields = fields }
    }

    /// The lease's id (128 random bits).
    public var id: LeaseID
    /// Reclaimed at this time unless renewed.
    public var expiresAtMs: Int64
    @usableFromInline var box: Box

    /// The session that owns it; only it (or an admin) may check it in.
    @inlinable public var sessionID: SessionID {
        get { self.box.fields.sessionID }
        set { self.update { $0.sessionID = newValue } }
    }
    /// Feature name.
    @inlinable public var feature: String {
        get { self.box.fields.feature }
        set { self.update { $0.feature = newValue } }
    }
    /// The licence the seats come from.
    @inlinable public var licenseID: String {
        get { self.box.fields.licenseID }
        set { self.update { $0.licenseID = newValue } }
    }
    /// Seats held.
    @inlinable public var count: UInt32 {
        get { self.box.fields.count }
        set { self.update { $0.count = newValue } }
    }
    /// Who holds it.
    @inlinable public var identity: ClientIdentity {
        get { self.box.fields.identity }
        set { self.update { $0.identity = newValue } }
    }
    /// When it was granted.
    @inlinable public var grantedAtMs: Int64 {
        get { self.box.fields.grantedAtMs }
        set { self.update { $0.grantedAtMs = newValue } }
    }
    /// How far a heartbeat pushes expiresAtMs.
    @inlinable public var ttlMs: Int64 {
        get { self.box.fields.ttlMs }
        set { self.update { $0.ttlMs = newValue } }
    }
    /// Granted beyond the licence's count (TRUE_UP).
    @inlinable public var overage: Bool {
        get { self.box.fields.overage }
        set { self.update { $0.overage = newValue } }
    }
    /// Strictly increasing per feature across grants.
    @inlinable public var fencingToken: UInt64 {
        get { self.box.fields.fencingToken }
        set { self.update { $0.fencingToken = newValue } }
    }
    /// The client's idempotency key (empty = none).
    @inlinable public var checkoutKey: [UInt8] {
        get { self.box.fields.checkoutKey }
        set { self.update { $0.checkoutKey = newValue } }
    }
    /// A borrow: held without heartbeats until `expiresAtMs`.
    @inlinable public var borrowed: Bool {
        get { self.box.fields.borrowed }
        set { self.update { $0.borrowed = newValue } }
    }
    /// Checked in, but the seat stays held for the same identity until `expiresAtMs` (linger).
    @inlinable public var lingering: Bool {
        get { self.box.fields.lingering }
        set { self.update { $0.lingering = newValue } }
    }
    /// For an add-on: the base lease of the same session it was granted under.
    @inlinable public var baseLeaseID: LeaseID? {
        get { self.box.fields.baseLeaseID }
        set { self.update { $0.baseLeaseID = newValue } }
    }
    /// Seats of the dup_group this lease shares (0 = not shared; the group holds this many seats
    /// while any member lives).
    @inlinable public var sharedSeats: UInt32 {
        get { self.box.fields.sharedSeats }
        set { self.update { $0.sharedSeats = newValue } }
    }
    /// The dup_group identity key the lease shares under ("user", "host" or "user@host"; empty = none).
    @inlinable public var dupIdentity: String {
        get { self.box.fields.dupIdentity }
        set { self.update { $0.dupIdentity = newValue } }
    }
    /// Seats of the licence's token pool one seat of this lease costs (0 = a plain feature).
    @inlinable public var tokenCost: UInt32 {
        get { self.box.fields.tokenCost }
        set { self.update { $0.tokenCost = newValue } }
    }

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
        checkoutKey: [UInt8],
        borrowed: Bool = false,
        lingering: Bool = false,
        baseLeaseID: LeaseID? = nil,
        sharedSeats: UInt32 = 0,
        dupIdentity: String = "",
        tokenCost: UInt32 = 0
    ) {
        self.id = id
        self.expiresAtMs = expiresAtMs
        self.box = Box(
            Fields(
                sessionID: sessionID,
                feature: feature,
                licenseID: licenseID,
                count: count,
                identity: identity,
                grantedAtMs: grantedAtMs,
                ttlMs: ttlMs,
                overage: overage,
                fencingToken: fencingToken,
                checkoutKey: checkoutKey,
                borrowed: borrowed,
                lingering: lingering,
                baseLeaseID: baseLeaseID,
                sharedSeats: sharedSeats,
                dupIdentity: dupIdentity,
                tokenCost: tokenCost
            )
        )
    }

    /// Sets boxed fields: a new box with them changed.
    @usableFromInline
    mutating func update(_ change: (inout Fields) -> Void) {
        var fields = self.box.fields
        change(&fields)
        self.box = Box(fields)
    }

    public static func == (lhs: Lease, rhs: Lease) -> Bool {
        lhs.id == rhs.id && lhs.expiresAtMs == rhs.expiresAtMs
            && (lhs.box === rhs.box || lhs.box.fields == rhs.box.fields)
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(self.id)
        hasher.combine(self.expiresAtMs)
        hasher.combine(self.box.fields)
    }
}
