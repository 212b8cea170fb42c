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

/// Node-locked activations: activate, validate, deactivate, bulk assignment and their listings.
extension LedgerHost {
    func activate(_ request: Licensed_V1_ActivateRequest, session: SessionID) -> Result<Licensed_V1_ActivateResponse, LicenseError> {
        guard let identity = self.ledger.identity(ofSession: session) else {
            return .failure(LicenseError(.invalidArgument, "unknown session"))
        }
        return self.activate(request, identity: identity, actor: Self.actor(identity))
    }

    /// Activates for `identity` (a session's, or an air-gapped machine's), audited as `actor`
    /// with `details`.
    func activate(
        _ request: Licensed_V1_ActivateRequest,
        identity: ClientIdentity,
        actor: String,
        details: [(String, AuditEvent.Value)] = []
    ) -> Result<Licensed_V1_ActivateResponse, LicenseError> {
        if let refusal = self.directoryRefusal(user: identity.user) { return .failure(refusal) }
        guard request.fingerprint.count <= 64, request.fingerprint.allSatisfy({ $0.count <= 128 }) else {
            return .failure(LicenseError(.invalidArgument, "a fingerprint has at most 64 components of at most 128 characters"))
        }
        guard request.environment.count <= 8, request.environment.allSatisfy({ $0.count <= 32 }),
            request.environmentDescription.count <= 256
        else {
            return .failure(
                LicenseError(
                    .invalidArgument,
                    "an environment has at most 8 kinds of at most 32 characters and a description of at most 256"
                )
            )
        }
        var who = identity
        if !request.user.isEmpty { who.user = request.user }
        var licenseID = request.licenseID
        if licenseID.isEmpty && request.feature.isEmpty {
            let configuration = self.context.configuration
            guard
                let part = self.ledger.partForNewActivation(defaultPart: configuration.defaultPart, overagePart: configuration.overagePart)
            else {
                return .failure(LicenseError(.invalidArgument, "Activate needs a license_id or a feature (no default part is configured)"))
            }
            licenseID = part
        }
        let command = SeatLedger.Activate(
            licenseID: licenseID,
            feature: request.feature,
            fingerprint: request.fingerprint,
            machineName: request.machineName.isEmpty ? identity.host : request.machineName,
            identity: who,
            newActivationID: "act-" + SecureRandom.bytes(12).hexString,
            environment: EnvironmentReport(kinds: request.environment, description: request.environmentDescription)
        )
        switch self.ledger.activate(command, at: self.nowMs) {
        case .failure(let error):
            self.audit(
                "deny_activation",
                actor: actor,
                subject: request.licenseID.isEmpty ? "feature:\(request.feature)" : "license:\(request.licenseID)",
                details: [
                    ("license", .string(request.licenseID)), ("feature", .string(request.feature)), ("code", .string(error.code.name)),
                    ("reason", .string(error.message)),
                ] + details
            )
            self.count("licensed_activation_denials_total", [("reason", error.code.name)])
            self.logger.info(
                "activation denied",
                metadata: ["license": "\(request.licenseID)", "feature": "\(request.feature)", "code": "\(error.code.name)"]
            )
            return .failure(error)
        case .success(let activated):
            self.commit(activated.changes, actor: actor, details: details)
            if !activated.existing {
                self.count("licensed_activations_total", [("license", activated.activation.licenseID)])
                self.logger.info(
                    "machine activated",
                    metadata: [
                        "activation": "\(activated.activation.id)", "license": "\(activated.activation.licenseID)",
                        "machine": "\(activated.activation.machineName)", "user": "\(activated.activation.user)",
                        "overage": "\(activated.activation.overage)",
                    ]
                )
            }
            var response = Licensed_V1_ActivateResponse()
            response.activationID = activated.activation.id
            response.certificate = self.signer.certificate(for: activated, at: self.nowMs)
            response.overage = activated.activation.overage
            response.existing = activated.existing
            return .success(response)
        }
    }

    func validateActivation(_ request: Licensed_V1_ValidateActivationRequest) -> Result<
        Licensed_V1_ValidateActivationResponse, LicenseError
    > {
        switch self.ledger.validateActivation(request.activationID, fingerprint: request.fingerprint, at: self.nowMs) {
        case .failure(let error):
            return .failure(error)
        case .success(let activated):
            self.commit(activated.changes, actor: activated.activation.user + "@" + activated.activation.machineName)
            var response = Licensed_V1_ValidateActivationResponse()
            response.certificate = self.signer.certificate(for: activated, at: self.nowMs)
            return .success(response)
        }
    }

    func deactivate(_ request: Licensed_V1_DeactivateRequest, session: SessionID, role: Role) -> Result<
        Licensed_V1_DeactivateResponse, LicenseError
    > {
        let user = self.ledger.identity(ofSession: session)?.user ?? ""
        switch self.ledger.deactivate(request.activationID, user: user, asAdmin: role.mayRevoke, at: self.nowMs) {
        case .failure(let error):
            return .failure(error)
        case .success(let changes):
            self.commit(changes, actor: self.actor(of: session))
            self.logger.info("machine deactivated", metadata: ["activation": "\(request.activationID)", "by": "\(user)"])
            var response = Licensed_V1_DeactivateResponse()
            response.activationID = request.activationID
            return .success(response)
        }
    }

    func assign(_ request: Licensed_V1_AssignRequest, session: SessionID, role: Role) -> Result<Licensed_V1_AssignResponse, LicenseError> {
        guard !request.part.isEmpty else { return .failure(LicenseError(.invalidArgument, "Assign needs a part")) }
        guard request.rows.count <= 100_000 else { return .failure(LicenseError(.resourceExhausted, "at most 100000 rows per run")) }
        let identity = self.ledger.identity(ofSession: session) ?? ClientIdentity(user: "", host: "")
        let rows = request.rows.map { (row: $0.row, device: SeatLedger.Device(deviceID: $0.deviceID, fingerprint: $0.fingerprint)) }
        let (run, changes) = self.ledger.bulk(
            part: request.part,
            revoke: request.revoke,
            rows: rows,
            by: identity,
            runID: "run-" + SecureRandom.bytes(8).hexString,
            newActivationID: { "act-" + SecureRandom.bytes(12).hexString },
            at: self.nowMs
        )
        self.commit(changes, actor: Self.actor(identity), details: [("role", .string(role.rawValue)), ("run", .string(run.runID))])
        let applied = run.results.filter(\.applied).count
        self.logger.info(
            request.revoke ? "bulk revoke" : "bulk assignment",
            metadata: [
                "run": "\(run.runID)", "part": "\(run.part)", "applied": "\(applied)", "failed": "\(run.results.count - applied)",
                "actor": "\(run.actor)",
            ]
        )
        var response = Licensed_V1_AssignResponse()
        response.run = run
        return .success(response)
    }

    /// Every activation matching the request's text, or one page of them in id order.
    func activations(_ request: Licensed_V1_ActivationsRequest) -> Result<Licensed_V1_ActivationsResponse, LicenseError> {
        var response = Licensed_V1_ActivationsResponse()
        let now = self.nowMs
        let text = request.contains
        let matching = self.ledger.allActivations.filter { activation in
            text.isEmpty || activation.id.contains(text) || activation.licenseID.contains(text) || activation.machineName.contains(text)
                || activation.user.contains(text) || self.ledger.partName(activation.licenseID).contains(text)
        }
        response.matched = UInt64(matching.count)
        var page = matching[...]
        if request.limit > 0 {
            let after = request.afterActivationID
            page = page.drop { !after.isEmpty && $0.id <= after }
            response.more = page.count > Int(request.limit)
            page = page.prefix(Int(min(request.limit, 10_000)))
        }
        response.activations = page.map { activation in
            var info = Licensed_V1_ActivationInfo()
            info.activationID = activation.id
            info.licenseID = activation.licenseID
            info.partName = self.ledger.partName(activation.licenseID)
            info.features = activation.features
            info.machineName = activation.machineName
            info.user = activation.user
            info.activatedAtMs = activation.activatedAtMs
            info.lastSeenMs = activation.lastSeenMs
            info.status = self.ledger.status(of: activation, at: now)
            return info
        }
        return .success(response)
    }

    func history(_ request: Licensed_V1_HistoryRequest) -> Result<Licensed_V1_HistoryResponse, LicenseError> {
        var response = Licensed_V1_HistoryResponse()
        response.runs = self.ledger.assignmentRuns.filter { request.month.isEmpty || Timestamp.iso8601($0.atMs).hasPrefix(request.month) }
        return .success(response)
    }

    // MARK: - Air-gapped machines

    /// An operator fulfils an air-gapped machine's request: activates for the machine (its user
    /// and name, not the operator's), or frees the activation it returned. Both identities are in
    /// the audit trail: the operator as actor, the machine in the details.
    func fulfil(_ request: Licensed_V1_FulfilRequest, session: SessionID, role: Role) -> Result<Licensed_V1_FulfilResponse, LicenseError> {
        let offline = request.request
        let actor = self.actor(of: session)
        var details: [(String, AuditEvent.Value)] = [
            ("offline_request", .string(offline.requestID)), ("requested_at_ms", .int(offline.createdAtMs)),
            ("role", .string(role.rawValue)),
        ]
        switch offline.action {
        case .activate:
            let machine = offline.activate
            guard !machine.user.isEmpty, !machine.machineName.isEmpty else {
                return .failure(LicenseError(.invalidArgument, "an offline activation request names the machine's user and machine name"))
            }
            let device = self.directoryIdentity(ClientIdentity(user: machine.user, host: machine.machineName, clientName: "offline"))
            details += [("device_user", .string(device.user)), ("machine", .string(device.host))]
            return self.activate(machine, identity: device, actor: actor, details: details).map { activated in
                var response = Licensed_V1_FulfilResponse()
                response.activation.activationID = activated.activationID
                response.activation.certificate = activated.certificate
                response.activation.serverPublicKey = .init(self.context.serverPublicKey)
                return response
            }
        case .return:
            switch self.ledger.returnActivation(offline.activationID, fingerprint: offline.fingerprint, at: self.nowMs) {
            case .failure(let error):
                return .failure(error)
            case .success(let (activation, changes)):
                details += [("device_user", .string(activation.user)), ("machine", .string(activation.machineName))]
                self.commit(changes, actor: actor, details: details)
                self.logger.info(
                    "air-gapped machine returned its activation",
                    metadata: ["activation": "\(activation.id)", "machine": "\(activation.machineName)", "by": "\(actor)"]
                )
                var response = Licensed_V1_FulfilResponse()
                response.deactivatedActivationID = activation.id
                return .success(response)
            }
        default:
            return .failure(LicenseError(.invalidArgument, "an offline request's action is ACTIVATE or RETURN"))
        }
    }
}
