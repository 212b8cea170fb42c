public import LicenseProtocol

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
