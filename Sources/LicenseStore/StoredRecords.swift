import Foundation
public import LicenseCore
public import LicenseProtocol

extension Lease {
    /// The stored form.
    public var stored: Licensed_V1_StoredLease {
        var s = Licensed_V1_StoredLease()
        s.leaseID = Data(self.id.bytes)
        s.sessionID = Data(self.sessionID.bytes)
        s.feature = self.feature
        s.licenseID = self.licenseID
        s.count = self.count
        s.user = self.identity.user
        s.host = self.identity.host
        s.clientName = self.identity.clientName
        s.clientVersion = self.identity.clientVersion
        s.grantedAtMs = self.grantedAtMs
        s.expiresAtMs = self.expiresAtMs
        s.ttlMs = self.ttlMs
        s.overage = self.overage
        s.fencingToken = self.fencingToken
        s.checkoutKey = Data(self.checkoutKey)
        s.borrowed = self.borrowed
        s.lingering = self.lingering
        if let base = self.baseLeaseID { s.baseLeaseID = Data(base.bytes) }
        s.sharedSeats = self.sharedSeats
        s.dupIdentity = self.dupIdentity
        s.tokenCost = self.tokenCost
        s.groups = self.identity.groups
        s.address = self.identity.address
        return s
    }

    /// Reads the stored form; nil when its ids are malformed.
    public init?(stored s: Licensed_V1_StoredLease) {
        guard let id = LeaseID(bytes: s.leaseID), let session = SessionID(bytes: s.sessionID) else { return nil }
        self.init(
            id: id,
            sessionID: session,
            feature: s.feature,
            licenseID: s.licenseID,
            count: s.count,
            identity: ClientIdentity(
                user: s.user,
                host: s.host,
                clientName: s.clientName,
                clientVersion: s.clientVersion,
                groups: s.groups,
                address: s.address
            ),
            grantedAtMs: s.grantedAtMs,
            expiresAtMs: s.expiresAtMs,
            ttlMs: s.ttlMs,
            overage: s.overage,
            fencingToken: s.fencingToken,
            checkoutKey: [UInt8](s.checkoutKey),
            borrowed: s.borrowed,
            lingering: s.lingering,
            baseLeaseID: s.baseLeaseID.isEmpty ? nil : LeaseID(bytes: s.baseLeaseID),
            sharedSeats: s.sharedSeats,
            dupIdentity: s.dupIdentity,
            tokenCost: s.tokenCost
        )
    }
}

extension LedgerChange {
    /// The write-ahead log record.
    public var record: Licensed_V1_WalRecord {
        var record = Licensed_V1_WalRecord()
        switch self {
        case .granted(let lease):
            record.granted.lease = lease.stored
        case .released(let id, let cause, let atMs):
            record.released.leaseID = Data(id.bytes)
            record.released.cause = cause.stored
            record.released.atMs = atMs
        case .rebound(let id, let session):
            record.rebound.leaseID = Data(id.bytes)
            record.rebound.sessionID = Data(session.bytes)
        case .lingered(let id, let untilMs):
            record.lingered.leaseID = Data(id.bytes)
            record.lingered.untilMs = untilMs
        case .trialStarted(let licenseID, let atMs):
            record.trialStarted.licenseID = licenseID
            record.trialStarted.atMs = atMs
        case .activated(let activation):
            record.activated.activation = activation.stored
        case .activationSeen(let id, let atMs):
            record.activationSeen.activationID = id
            record.activationSeen.atMs = atMs
        case .deactivated(let id, let cause, let atMs):
            record.deactivated.activationID = id
            record.deactivated.cause = cause.stored
            record.deactivated.atMs = atMs
        case .assignmentRun(let run):
            record.assignmentRun = run
        case .clockMarked(let atMs):
            record.clockMark.wallMs = atMs
        }
        return record
    }

    /// Reads a record; nil when it is not a change this version knows or its ids are malformed.
    public init?(record: Licensed_V1_WalRecord) {
        switch record.change {
        case .granted(let granted):
            guard let lease = Lease(stored: granted.lease) else { return nil }
            self = .granted(lease)
        case .released(let released):
            guard let id = LeaseID(bytes: released.leaseID) else { return nil }
            self = .released(id, ReleaseCause(stored: released.cause), atMs: released.atMs)
        case .rebound(let rebound):
            guard let id = LeaseID(bytes: rebound.leaseID), let session = SessionID(bytes: rebound.sessionID) else { return nil }
            self = .rebound(id, to: session)
        case .lingered(let lingered):
            guard let id = LeaseID(bytes: lingered.leaseID) else { return nil }
            self = .lingered(id, untilMs: lingered.untilMs)
        case .trialStarted(let trial):
            self = .trialStarted(licenseID: trial.licenseID, atMs: trial.atMs)
        case .activated(let activated):
            self = .activated(Activation(stored: activated.activation))
        case .activationSeen(let seen):
            self = .activationSeen(id: seen.activationID, atMs: seen.atMs)
        case .assignmentRun(let run):
            self = .assignmentRun(run)
        case .clockMark(let mark):
            self = .clockMarked(atMs: mark.wallMs)
        case .deactivated(let deactivated):
            self = .deactivated(id: deactivated.activationID, cause: ReleaseCause(stored: deactivated.cause), atMs: deactivated.atMs)
        case .none:
            return nil
        }
    }
}

extension ReleaseCause {
    var stored: Licensed_V1_WalRecord.ReleaseCause {
        switch self {
        case .checkedIn: .checkedIn
        case .expired: .expired
        case .revoked: .revoked
        case .baseReleased: .baseReleased
        }
    }

    init(stored: Licensed_V1_WalRecord.ReleaseCause) {
        switch stored {
        case .expired: self = .expired
        case .revoked: self = .revoked
        case .baseReleased: self = .baseReleased
        default: self = .checkedIn
        }
    }
}

extension Activation {
    /// The stored form.
    public var stored: Licensed_V1_StoredActivation {
        var s = Licensed_V1_StoredActivation()
        s.activationID = self.id
        s.licenseID = self.licenseID
        s.features = self.features
        s.fingerprint = self.fingerprint
        s.machineName = self.machineName
        s.user = self.user
        s.activatedAtMs = self.activatedAtMs
        s.lastSeenMs = self.lastSeenMs
        s.overage = self.overage
        return s
    }

    /// Reads the stored form.
    public init(stored s: Licensed_V1_StoredActivation) {
        self.init(
            id: s.activationID,
            licenseID: s.licenseID,
            features: s.features,
            fingerprint: s.fingerprint,
            machineName: s.machineName,
            user: s.user,
            activatedAtMs: s.activatedAtMs,
            lastSeenMs: s.lastSeenMs,
            overage: s.overage
        )
    }
}
