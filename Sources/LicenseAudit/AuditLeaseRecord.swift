public import LicenseCore

/// The particulars of a lease's record — `grant`, `checkin`, `reclaim`, `revoke` — kept as the
/// lease itself until the writer thread renders the record, which writes the fields straight into
/// its bytes: no id strings, no details array, no closure. These are two records per check-out and
/// check-in, the audit trail's hot path.
///
/// `parts` gives the same particulars as a list, as every other record has them; the renderer's
/// bytes and `AuditRecord.line` of `parts` are held to each other by the tests.
public struct AuditLeaseRecord: Sendable {
    /// What happened to the lease.
    public enum Kind: Sendable {
        /// Granted, after waiting `waitedMs` in a queue (nil: not queued).
        case grant(waitedMs: Int64?)
        /// Ended at `atMs` for `cause`.
        case release(cause: ReleaseCause, atMs: Int64)
    }

    /// The lease's id.
    public var id: LeaseID
    /// The lease; nil for a release of a lease the server no longer knew (its record says only
    /// its id and the cause).
    public var lease: Lease?
    /// Who: `user@host`, `admin-socket`, `server`; nil for the lease's holder, whose `user@host`
    /// the writer thread writes from the lease's identity (no string is built on the serving loop
    /// for a holder's own check-out and check-in).
    public var actor: String?
    /// What happened.
    public var kind: Kind
    /// More particulars after the lease's own (a revocation's reason, ...).
    public var extra: [(String, AuditEvent.Value)]

    /// A record of `kind` for `lease`, by `actor` (nil: its holder).
    public init(lease: Lease, actor: String?, kind: Kind, extra: [(String, AuditEvent.Value)] = []) {
        self.id = lease.id
        self.lease = lease
        self.actor = actor
        self.kind = kind
        self.extra = extra
    }

    /// A record of a release of a lease known only by its id.
    public init(id: LeaseID, actor: String, cause: ReleaseCause, atMs: Int64, extra: [(String, AuditEvent.Value)] = []) {
        self.id = id
        self.lease = nil
        self.actor = actor
        self.kind = .release(cause: cause, atMs: atMs)
        self.extra = extra
    }

    /// The action it is recorded as.
    public var action: String {
        switch self.kind {
        case .grant: "grant"
        case .release(let cause, _): Self.action(for: cause)
        }
    }

    /// The action a lease's release is recorded as.
    public static func action(for cause: ReleaseCause) -> String {
        switch cause {
        case .checkedIn, .baseReleased: "checkin"
        case .expired: "reclaim"
        case .revoked: "revoke"
        }
    }

    /// Actor, subject and details, as a list.
    public var parts: AuditEvent.Parts {
        let id = self.id.description
        var details: [(String, AuditEvent.Value)]
        switch self.kind {
        case .grant(let waitedMs):
            details = self.lease.map { Self.details(of: $0, id: id, room: 5 + self.extra.count) } ?? [("lease", .string(id))]
            if let lease = self.lease {
                details.append(("granted_ms", .int(lease.grantedAtMs)))
                details.append(("expires_ms", .int(lease.expiresAtMs)))
                details.append(("overage", .bool(lease.overage)))
                details.append(("borrowed", .bool(lease.borrowed)))
            }
            if let waitedMs { details.append(("waited_ms", .int(waitedMs))) }
        case .release(let cause, let atMs):
            if let lease = self.lease {
                details = Self.details(of: lease, id: id, room: 3 + self.extra.count)
                details.append(("granted_ms", .int(lease.grantedAtMs)))
                details.append(("held_ms", .int(atMs - lease.grantedAtMs)))
            } else {
                details = [("lease", .string(id))]
            }
            details.append(("cause", .string(cause.rawValue)))
        }
        details.append(contentsOf: self.extra)
        return (self.actorName, "lease:" + id, details)
    }

    /// Who, as the record says it.
    public var actorName: String {
        if let actor = self.actor { return actor }
        guard let identity = self.lease?.identity else { return "" }
        return Self.holder(identity)
    }

    /// A holder's name in the trail: `user@host`.
    public static func holder(_ identity: ClientIdentity) -> String { "\(identity.user)@\(identity.host)" }

    /// What every record about a lease says of it: id, feature, licence, seats, whose.
    public static func details(of lease: Lease, id: String, room: Int = 0) -> [(String, AuditEvent.Value)] {
        var details: [(String, AuditEvent.Value)] = []
        details.reserveCapacity(7 + room)
        details.append(("lease", .string(id)))
        details.append(("feature", .string(lease.feature)))
        details.append(("license", .string(lease.licenseID)))
        details.append(("count", .int(Int64(lease.count))))
        details.append(("user", .string(lease.identity.user)))
        details.append(("host", .string(lease.identity.host)))
        details.append(("groups", .strings(lease.identity.groups)))
        return details
    }
}
