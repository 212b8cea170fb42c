import Foundation
import LicenseAudit
import LicenseCore
import LicenseProtocol
import LicenseStore

/// Requests of an open session, dispatched to the extension of their subject.
extension LedgerHost {
    /// Answers `message` of an open session: checks the role, runs the request, records what
    /// administrators do, and replies to `handler` (once durable, when the reply acknowledges a change).
    func serve(_ message: Licensed_V1_ClientMessage, session: SessionID, role: Role, replyTo handler: SessionHandler) {
        // The body read once: each `message.body` is a copy of the request, with a retain of
        // every string and bytes field in it.
        let body = message.body
        let requestID = message.requestID
        let result: Result<Licensed_V1_ServerMessage.OneOf_Body, LicenseError>
        if self.failure != nil {
            result = .failure(self.unavailable)
        } else if let refusal = self.clusterRefusal(for: body) {
            result = .failure(refusal)
        } else if let body, let refusal = RequestAccess.refusal(for: body, role: role) {
            result = .failure(refusal)
        } else {
            switch body {
            case .none:
                // A body this server does not know: a newer client. Answer and keep the connection.
                result = .failure(LicenseError(.unimplemented, "this server does not know that request; upgrade the server"))
            case .hello:
                result = .failure(LicenseError(.invalidArgument, "the session is already open; Hello is sent once per connection"))
            case .checkOut(let request):
                guard let answer = self.serveCheckOut(request, session: session, requestID: requestID, handler: handler) else { return }
                result = answer
            case .checkIn(let request):
                guard let answer = self.serveCheckIn(request, session: session, role: role, requestID: requestID, handler: handler) else {
                    return
                }
                result = answer
            case .heartbeat(let request):
                result = self.heartbeat(request, session: session).map { .heartbeat($0) }
            case .status(let request):
                result = self.status(request, role: role).map { .status($0) }
            case .activate(let request):
                result = self.activate(request, session: session).map { .activate($0) }
            case .validateActivation(let request):
                result = self.validateActivation(request).map { .validateActivation($0) }
            case .deactivate(let request):
                result = self.deactivate(request, session: session, role: role).map { .deactivate($0) }
            case .queue(let request):
                result = self.queue(request).map { .queue($0) }
            case .leases(let request):
                result = self.leases(request).map { .leases($0) }
            case .revoke(let request):
                result = self.revoke(request, session: session, role: role).map { .revoke($0) }
            case .assign(let request):
                result = self.assign(request, session: session, role: role).map { .assign($0) }
            case .activations(let request):
                result = self.activations(request).map { .activations($0) }
            case .fulfil(let request):
                result = self.fulfil(request, session: session, role: role).map { .fulfil($0) }
            case .history(let request):
                result = self.history(request).map { .history($0) }
            case .subscribe:
                result = self.subscribe(session: session).map { .subscribe($0) }
            case .directorySync(let request):
                // Read from the directory off the loop; the reply follows.
                self.directorySync(request, requestID: requestID, session: session, role: role, replyTo: handler)
                return
            case .clusterStatus:
                // Read from etcd off the loop; the reply follows.
                self.clusterStatus(requestID: requestID, replyTo: handler)
                return
            case .reload, .snapshot:
                // Slow work (file reads, snapshot writes) happens off the loop; the reply follows.
                self.administer(body!, requestID: requestID, actor: self.actor(of: session), replyTo: handler)
                return
            case .some(let body):
                result = .failure(LicenseError(.unimplemented, "\(body.requestName) is not available in this server version"))
            }
        }
        self.answer(body, result, requestID: requestID, session: session, role: role, to: handler)
    }

    /// A check-out: nil when answered already (a grant, acknowledged once durable) or queued
    /// (answered when a seat is granted, or at the deadline); otherwise the answer.
    private func serveCheckOut(
        _ request: Licensed_V1_CheckOutRequest,
        session: SessionID,
        requestID: UInt64,
        handler: SessionHandler
    ) -> Result<Licensed_V1_ServerMessage.OneOf_Body, LicenseError>? {
        switch self.checkOut(request, session: session, requestID: requestID, handler: handler) {
        case .queued:
            return nil
        case .granted(let grant):
            // Written from the lease; not an administration to audit.
            self.acknowledge(.grant(grant), to: handler)
            return nil
        case .answer(let answer):
            return answer.map { .checkOut($0) }
        }
    }

    /// A check-in: nil when answered already (a plain return, acknowledged once durable);
    /// otherwise the answer.
    private func serveCheckIn(
        _ request: Licensed_V1_CheckInRequest,
        session: SessionID,
        role: Role,
        requestID: UInt64,
        handler: SessionHandler
    ) -> Result<Licensed_V1_ServerMessage.OneOf_Body, LicenseError>? {
        switch Self.leaseID(of: request) {
        case .success(let id): self.serveCheckIn(id, session: session, role: role, requestID: requestID, handler: handler)
        case .failure(let error): .failure(error)
        }
    }

    private func serveCheckIn(
        _ id: LeaseID,
        session: SessionID,
        role: Role,
        requestID: UInt64,
        handler: SessionHandler
    ) -> Result<Licensed_V1_ServerMessage.OneOf_Body, LicenseError>? {
        switch self.checkIn(lease: id, session: session, role: role) {
        case .success(let addOns) where addOns.isEmpty:
            // Written from the lease id; not an administration to audit.
            self.acknowledge(.return(ServerMessageWire.Return(requestID: requestID, leaseID: (id.high, id.low))), to: handler)
            return nil
        case .success(let addOns):
            return .success(.checkIn(Self.checkInResponse(id, releasedAddOns: addOns)))
        case .failure(let error):
            return .failure(error)
        }
    }

    /// A plain check-in, read without building its message (`ClientMessageWire.plainCheckIn`):
    /// served as `serve` serves a check-in.
    func serve(checkIn id: LeaseID, requestID: UInt64, session: SessionID, role: Role, replyTo handler: SessionHandler) {
        var request: Licensed_V1_ClientMessage.OneOf_Body {
            var checkIn = Licensed_V1_CheckInRequest()
            checkIn.leaseID = Data(id.bytes)
            return .checkIn(checkIn)
        }
        guard self.failure == nil, self.cluster == nil else {
            var message = Licensed_V1_ClientMessage()
            message.requestID = requestID
            message.body = request
            return self.serve(message, session: session, role: role, replyTo: handler)
        }
        if let result = self.serveCheckIn(id, session: session, role: role, requestID: requestID, handler: handler) {
            self.answer(request, result, requestID: requestID, session: session, role: role, to: handler)
        }
    }

    /// Answers a request with `result`: audited when an administration, and held until durable
    /// when it acknowledges a change.
    private func answer(
        _ body: Licensed_V1_ClientMessage.OneOf_Body?,
        _ result: Result<Licensed_V1_ServerMessage.OneOf_Body, LicenseError>,
        requestID: UInt64,
        session: SessionID,
        role: Role,
        to handler: SessionHandler
    ) {
        self.auditAdministration(body, result: result, session: session, role: role)
        var reply = Licensed_V1_ServerMessage()
        reply.requestID = requestID
        switch result {
        case .success(let body):
            reply.body = body
            // A grant or return is acknowledged only once it is on disk.
            switch body {
            case .checkOut, .checkIn, .activate, .deactivate, .validateActivation, .assign, .revoke, .fulfil:
                if self.replyWhenDurable(reply, to: handler) { return }
            default:
                break
            }
        case .failure(let error):
            reply.error = error.protocolError
        }
        handler.writeDeferred(reply)
    }

    /// Records administrators' requests (and anyone's refused for want of a role) in the audit trail.
    func auditAdministration(
        _ body: Licensed_V1_ClientMessage.OneOf_Body?,
        result: Result<Licensed_V1_ServerMessage.OneOf_Body, LicenseError>,
        session: SessionID,
        role: Role
    ) {
        guard let body else { return }
        // Decided before anything is built: most requests (heartbeats, check-outs) are not audited here.
        var specific: [(String, AuditEvent.Value)] = []
        switch body {
        case .leases(let request):
            specific = [("feature", .string(request.feature)), ("user", .string(request.user)), ("host", .string(request.host))]
        case .revoke(let request):
            switch request.target {
            case .leaseID(let bytes): specific = [("lease", .string(LeaseID(bytes: bytes)?.description ?? ""))]
            case .activationID(let id): specific = [("activation", .string(id))]
            case .user(let user): specific = [("user", .string(user))]
            case .host(let host): specific = [("host", .string(host))]
            case .none: break
            }
            if !request.reason.isEmpty { specific.append(("revoke_reason", .string(request.reason))) }
        case .queue(let request): specific = [("feature", .string(request.feature))]
        case .fulfil(let request):
            let offline = request.request
            specific = [
                ("action", .string(offline.action == .return ? "return" : "activate")), ("offline_request", .string(offline.requestID)),
                ("device_user", .string(offline.activate.user)), ("machine", .string(offline.activate.machineName)),
                ("activation", .string(offline.activationID)),
            ]
        case .history(let request): specific = [("month", .string(request.month))]
        case .directorySync(let request): specific = [("dry_run", .bool(request.dryRun))]
        case .status(let request) where request.includeHolders: break
        case .assign, .activations, .subscribe: break
        default:
            guard case .failure(let error) = result, error.code == .permissionDenied else { return }
        }
        var details: [(String, AuditEvent.Value)] = [("request", .string(body.requestName)), ("role", .string(role.rawValue))] + specific
        switch result {
        case .success(.revoke(let response)):
            details += [
                ("outcome", .string("OK")), ("leases", .int(Int64(response.leases))), ("activations", .int(Int64(response.activations))),
            ]
        case .success: details.append(("outcome", .string("OK")))
        case .failure(let error): details += [("outcome", .string(error.code.name)), ("reason", .string(error.message))]
        }
        self.audit("admin", actor: self.actor(of: session), subject: "request:\(body.requestName)", details: details)
    }
}

extension Licensed_V1_ClientMessage.OneOf_Body {
    /// The request's name for messages to people.
    var requestName: String {
        switch self {
        case .hello: "Hello"
        case .checkOut: "CheckOut"
        case .checkIn: "CheckIn"
        case .heartbeat: "Heartbeat"
        case .activate: "Activate"
        case .deactivate: "Deactivate"
        case .validateActivation: "ValidateActivation"
        case .status: "Status"
        case .leases: "Leases"
        case .revoke: "Revoke"
        case .reload: "Reload"
        case .snapshot: "Snapshot"
        case .queue: "Queue"
        case .assign: "Assign"
        case .activations: "Activations"
        case .history: "History"
        case .subscribe: "Subscribe"
        case .clusterStatus: "ClusterStatus"
        case .fulfil: "Fulfil"
        case .directorySync: "DirectorySync"
        }
    }
}
