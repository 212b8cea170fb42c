import DequeModule
import Foundation
import LicenseAudit
import LicenseCore
import LicenseCrypto
import LicenseProtocol
import LicenseStore
import Logging
import Metrics
import NIOCore
import SwiftProtobuf

/// Floating seats: check-out (with borrowing), check-in and heartbeats.
extension LedgerHost {
    /// What became of a check-out: answered now, or waiting in the feature's queue.
    enum CheckOutOutcome {
        case answer(Result<Licensed_V1_CheckOutResponse, LicenseError>)
        /// Granted, the reply written from the lease (a borrow's goes as an answer: it carries a token).
        case granted(ServerMessageWire.Grant)
        case queued
    }

    func checkOut(_ request: Licensed_V1_CheckOutRequest, session: SessionID, requestID: UInt64, handler: SessionHandler) -> CheckOutOutcome
    {
        guard !request.feature.isEmpty else { return .answer(.failure(LicenseError(.invalidArgument, "CheckOut needs a feature name"))) }
        guard request.checkoutKey.count <= 64 else {
            return .answer(.failure(LicenseError(.invalidArgument, "checkout_key is longer than 64 bytes")))
        }
        guard request.count <= 1_000_000 else {
            return .answer(.failure(LicenseError(.invalidArgument, "count \(request.count) is not a seat count")))
        }
        let held = self.inPlace { $0.leaseCount(ofSession: session) }
        if held >= self.context.configuration.maxLeasesPerSession {
            return .answer(.failure(LicenseError(.resourceExhausted, "this session holds its maximum of \(held) leases")))
        }
        guard request.borrowMs <= UInt64(Int64.max / 2) else {
            return .answer(.failure(LicenseError(.invalidArgument, "borrow_ms \(request.borrowMs) is not a duration")))
        }
        let command = SeatLedger.CheckOut(
            sessionID: session,
            feature: request.feature,
            version: request.version,
            count: request.count,
            // Copied through its bytes: `[UInt8](data)` took Data's generic collection path
            // (about 900 instructions for a 16-byte key, `licensed-micro serve`).
            checkoutKey: request.checkoutKey.withUnsafeBytes { [UInt8]($0) },
            newLeaseID: self.newID(),
            borrowMs: Int64(request.borrowMs),
            buildDateMs: request.buildDateMs
        )
        if !self.directory.leavers.isEmpty, let user = self.inPlace({ $0.identity(ofSession: session)?.user }),
            let refusal = self.directoryRefusal(user: user)
        {
            return .answer(.failure(self.denied(refusal, command)))
        }
        let now = self.nowMs
        switch self.ledger.checkOut(command, at: now) {
        case .failure(let error) where error.code == .noSeats && request.waitMs > 0:
            let waiterID = self.queued.nextWaiterID()
            if let refused = self.ledger.enqueue(command, waiterID: waiterID, waitMs: Int64(request.waitMs), at: now) {
                return .answer(.failure(self.denied(refused, command)))
            }
            self.queued.waiters[waiterID] = (handler, requestID)
            self.logger.info("check-out queued", metadata: ["feature": "\(request.feature)", "wait_ms": "\(request.waitMs)"])
            self.scheduleQueueDeadline()
            return .queued
        case .failure(let error):
            return .answer(.failure(self.denied(error, command)))
        case .success(let grant) where grant.lease.borrowed:
            return .answer(.success(self.granted(grant, at: now)))
        case .success(let grant):
            self.record(grant, at: now)
            return .granted(Self.reply(to: grant, requestID: requestID))
        }
    }

    /// The reply to a grant, from its lease.
    static func reply(to grant: SeatLedger.Grant, requestID: UInt64) -> ServerMessageWire.Grant {
        let lease = grant.lease
        return ServerMessageWire.Grant(
            requestID: requestID,
            leaseID: (lease.id.high, lease.id.low),
            licenseID: lease.licenseID,
            feature: lease.feature,
            count: lease.count,
            expiresAtMs: lease.expiresAtMs,
            overage: lease.overage,
            warnings: grant.warnings,
            fencingToken: lease.fencingToken,
            replayed: grant.replayed
        )
    }

    func denied(_ error: LicenseError, _ command: SeatLedger.CheckOut) -> LicenseError {
        let feature = command.feature
        self.auditDenial(error, feature: feature, count: command.count, session: command.sessionID)
        self.count("licensed_denials_total", [("feature", feature), ("reason", error.code.name)])
        self.recentDenials.record(feature, at: self.nowMs)
        self.logger.info("check-out denied", metadata: ["feature": "\(feature)", "code": "\(error.code)", "reason": "\(error.message)"])
        return error
    }

    /// Logs a grant, appends its changes to the log, and builds the reply (with a signed token for a borrow).
    func granted(_ grant: SeatLedger.Grant, at now: Int64, waitedMs: Int64? = nil) -> Licensed_V1_CheckOutResponse {
        self.record(grant, waitedMs: waitedMs, at: now)
        var response = Self.reply(to: grant, requestID: 0).message.checkOut
        if grant.lease.borrowed { response.borrowToken = self.signer.borrowToken(for: grant.lease) }
        return response
    }

    /// Appends a grant's changes, made at `now`, to the log (with its audit record), counts and logs it.
    func record(_ grant: SeatLedger.Grant, waitedMs: Int64? = nil, at now: Int64) {
        let lease = grant.lease
        self.commit(grant.changes, by: .session(lease.identity), waitedMs: waitedMs, at: now)
        if !grant.replayed {
            self.counters(of: lease.feature).checkouts.increment()
            self.logger.info(
                "check-out granted",
                metadata: [
                    "lease": "\(lease.id)", "feature": "\(lease.feature)", "license": "\(lease.licenseID)", "count": "\(lease.count)",
                    "overage": "\(lease.overage)", "borrowed": "\(lease.borrowed)", "user": "\(lease.identity.user)",
                    "host": "\(lease.identity.host)",
                ]
            )
        }
    }

    /// The lease a check-in names.
    static func leaseID(of request: Licensed_V1_CheckInRequest) -> Result<LeaseID, LicenseError> {
        guard let id = LeaseID(bytes: request.leaseID) else {
            return .failure(LicenseError(.invalidArgument, "lease_id must be 16 bytes, not \(request.leaseID.count)"))
        }
        return .success(id)
    }

    static func checkInResponse(_ id: LeaseID, releasedAddOns: [Lease]) -> Licensed_V1_CheckInResponse {
        var response = Licensed_V1_CheckInResponse()
        response.leaseID = Data(id.bytes)
        response.releasedAddons = releasedAddOns.map { .init($0.id.bytes) }
        return response
    }

    /// Checks lease `id` in: its holder's own, or (a role that may revoke) anyone's — then the
    /// holder is told, by `teller`, with the reason. `actor` overrides the session's identity in
    /// the audit trail (the directory reclaiming from a leaver). Returns the add-ons released with it.
    func checkIn(
        lease id: LeaseID,
        session: SessionID,
        role: Role,
        reason: String = "",
        actor: String? = nil,
        teller: String = "an administrator"
    ) -> Result<[Lease], LicenseError> {
        let now = self.nowMs
        switch self.ledger.checkIn(id, by: session, asAdmin: role.mayRevoke, at: now) {
        case .failure(let error):
            return .failure(error)
        case .success(let checkIn):
            var details: [(String, AuditEvent.Value)] = []
            if checkIn.lease.sessionID != session, actor == nil { details.append(("role", .string(role.rawValue))) }
            if !reason.isEmpty { details.append(("reason", .string(reason))) }
            self.commit(
                checkIn.changes,
                by: actor.map { .named($0) } ?? .of(session, in: self),
                leases: checkIn.releasedAddOns.isEmpty ? [checkIn.lease] : [checkIn.lease] + checkIn.releasedAddOns,
                details: details,
                at: now
            )
            self.counters(of: checkIn.lease.feature).checkins.increment()
            let lease = checkIn.lease
            self.logger.info(
                "checked in",
                metadata: [
                    "lease": "\(lease.id)", "feature": "\(lease.feature)", "license": "\(lease.licenseID)",
                    "user": "\(lease.identity.user)",
                ]
            )
            if lease.sessionID != session {
                self.tell(
                    holderOf: lease,
                    .leaseRevoked,
                    "\(teller) checked in your lease of '\(lease.feature)'" + (reason.isEmpty ? "" : ": \(reason)")
                )
            }
            // A seat may have come free: the queue's head gets it at once.
            self.serveQueues()
            return .success(checkIn.releasedAddOns)
        }
    }

    func heartbeat(_ request: Licensed_V1_HeartbeatRequest, session: SessionID) -> Result<Licensed_V1_HeartbeatResponse, LicenseError> {
        var ids: [LeaseID] = []
        ids.reserveCapacity(request.leaseIds.count)
        for bytes in request.leaseIds {
            guard let id = LeaseID(bytes: bytes) else {
                return .failure(LicenseError(.invalidArgument, "every lease id must be 16 bytes"))
            }
            ids.append(id)
        }
        let outcome = self.ledger.heartbeat(session: session, leaseIDs: ids, at: self.nowMs)
        var response = Licensed_V1_HeartbeatResponse()
        response.renewed = UInt32(outcome.renewed)
        response.expiresAtMs = outcome.expiresAtMs
        response.lostLeaseIds = outcome.lost.map { .init($0.bytes) }
        return .success(response)
    }
}
