import Foundation
public import LicenseCore
import LicenseCrypto
public import LicenseProtocol
import NIOCore
import NIOPosix

/// The requests a client sends: seats, activations, status and administration.
extension LicenseClient {
    /// Checks out `count` seats of `feature`. A random checkout key makes the request idempotent
    /// across retries and reconnects.
    /// With `waitMs`, a check-out that finds no seat waits in the feature's queue that long;
    /// with `borrowMs`, the seat is borrowed for offline use (verify its token with
    /// `BorrowTokenVerifier`); `buildDateMs` is checked against the licence's maintenance date.
    public func checkOut(
        feature: String,
        version: String = "",
        count: UInt32 = 1,
        waitMs: UInt32 = 0,
        borrowMs: UInt64 = 0,
        buildDateMs: Int64 = 0
    ) async throws -> Lease {
        var request = Licensed_V1_CheckOutRequest()
        request.feature = feature
        request.version = version
        request.count = count
        request.waitMs = waitMs
        request.borrowMs = borrowMs
        request.buildDateMs = buildDateMs
        request.checkoutKey = .init(SecureRandom.bytes(16))
        let sent = ContinuousClock.now
        let response = try await self.withConnection { connection in
            guard case .checkOut(let response) = try await connection.request(.checkOut(request)) else {
                throw LicenseClientError(code: .internal, message: "the server answered CheckOut with another message")
            }
            return response
        }
        let lease = Self.lease(from: response)
        self.held[lease.id] = Held(lease: lease, request: request)
        if !lease.borrowed { self.noteLifetime(of: lease, grantedAt: sent) }
        return lease
    }

    /// Returns a lease. Returning one the server already let go of (reclaimed) is not an error.
    @discardableResult
    public func checkIn(_ lease: Lease) async throws -> [Lease] {
        try await self.checkIn(leaseID: lease.id)
    }

    /// Returns a lease by id (this session's own, or any with an operator or admin token).
    /// Returns the add-on leases the server released with it (their base is gone).
    @discardableResult
    public func checkIn(leaseID: [UInt8]) async throws -> [Lease] {
        var request = Licensed_V1_CheckInRequest()
        request.leaseID = .init(leaseID)
        var released: [Lease] = []
        self.returning.insert(leaseID)
        defer { self.returning.remove(leaseID) }
        do {
            let reply = try await self.withConnection { connection in try await connection.request(.checkIn(request)) }
            if case .checkIn(let response) = reply {
                for id in response.releasedAddons.map({ [UInt8]($0) }) {
                    if let addOn = self.held.removeValue(forKey: id) { released.append(addOn.lease) }
                }
            }
        } catch let error as LicenseClientError where error.code == .notFound && self.held[leaseID] != nil {
            // Already gone on the server (a retried check-in whose first reply was lost).
        }
        self.held[leaseID] = nil
        return released
    }

    /// Renews every lease of the session now.
    @discardableResult
    public func heartbeat() async throws -> Licensed_V1_HeartbeatResponse {
        let sent = ContinuousClock.now
        let response = try await self.withConnection { connection in
            guard case .heartbeat(let response) = try await connection.request(.heartbeat(.init())) else {
                throw LicenseClientError(code: .internal, message: "the server answered Heartbeat with another message")
            }
            return response
        }
        self.renewed(at: sent)
        return response
    }

    func heartbeatInBackground() async {
        guard !self.held.isEmpty, self.reconnecting == nil else { return }
        guard self.connection != nil else {
            // No connection and no reconnection under way (the last one gave up on an error
            // that a call had to hear): try again, for the leases still held.
            _ = self.startReconnect()
            return
        }
        do {
            var request = Licensed_V1_HeartbeatRequest()
            request.leaseIds = self.held.keys.map { .init($0) }
            let sent = ContinuousClock.now
            let response = try await self.withConnection { connection in try await connection.request(.heartbeat(request)) }
            if case .heartbeat = response { self.renewed(at: sent) }
            if case .heartbeat(let renewed) = response, !renewed.lostLeaseIds.isEmpty {
                for id in renewed.lostLeaseIds.map({ [UInt8]($0) }) where !self.returning.contains(id) {
                    if let lost = self.held.removeValue(forKey: id) {
                        self.eventSink.yield(.leaseLost(lost.lease, reason: "the server no longer holds this lease"))
                    }
                }
            }
        } catch {
            // withConnection already started a reconnect; the next tick tries again.
        }
    }

    /// Features, seats and licences; holders need an auditor, operator or admin token.
    public func status(features: [String] = [], includeHolders: Bool = false, includeLicenses: Bool = false) async throws
        -> Licensed_V1_StatusResponse
    {
        var request = Licensed_V1_StatusRequest()
        request.features = features
        request.includeHolders = includeHolders
        request.includeLicenses = includeLicenses
        return try await self.withConnection { connection in
            guard case .status(let response) = try await connection.request(.status(request)) else {
                throw LicenseClientError(code: .internal, message: "the server answered Status with another message")
            }
            return response
        }
    }

    /// Activates a node-locked licence (by id, or by a feature it grants) on a machine with
    /// `fingerprint` (component ids; `MachineFingerprint` computes this machine's) and where it
    /// runs (`HostEnvironment.detect().report`; a licence with client_environments needs it).
    public func activate(
        licenseID: String = "",
        feature: String = "",
        fingerprint: [String],
        machineName: String = "",
        environment: EnvironmentReport? = nil
    ) async throws -> Licensed_V1_ActivateResponse {
        var request = Licensed_V1_ActivateRequest()
        request.licenseID = licenseID
        request.feature = feature
        request.fingerprint = fingerprint
        request.machineName = machineName
        if let environment {
            request.environment = environment.kinds
            request.environmentDescription = environment.description
        }
        return try await self.withConnection { connection in
            guard case .activate(let response) = try await connection.request(.activate(request)) else {
                throw LicenseClientError(code: .internal, message: "the server answered Activate with another message")
            }
            return response
        }
    }

    /// Refreshes an activation: a new certificate, and the server notes the machine was seen.
    public func validateActivation(_ activationID: String, fingerprint: [String]) async throws -> Licensed_V1_ActivationCertificate {
        var request = Licensed_V1_ValidateActivationRequest()
        request.activationID = activationID
        request.fingerprint = fingerprint
        return try await self.withConnection { connection in
            guard case .validateActivation(let response) = try await connection.request(.validateActivation(request)) else {
                throw LicenseClientError(code: .internal, message: "the server answered ValidateActivation with another message")
            }
            return response.certificate
        }
    }

    /// Frees an activation (to move the licence to another machine).
    public func deactivate(_ activationID: String) async throws {
        var request = Licensed_V1_DeactivateRequest()
        request.activationID = activationID
        _ = try await self.withConnection { connection in try await connection.request(.deactivate(request)) }
    }

    /// Sends an administrative request and returns its answer (token with a sufficient role).
    public func administer(_ body: Licensed_V1_ClientMessage.OneOf_Body) async throws -> Licensed_V1_ServerMessage.OneOf_Body {
        try await self.withConnection { connection in try await connection.request(body) }
    }

    /// Asks for THRESHOLD_CROSSED events on this session (auditor token or above); they arrive on
    /// `events`. Returns the thresholds and each feature's level now.
    @discardableResult
    public func subscribe() async throws -> Licensed_V1_SubscribeResponse {
        try await self.withConnection { connection in
            guard case .subscribe(let response) = try await connection.request(.subscribe(.init())) else {
                throw LicenseClientError(code: .internal, message: "the server answered Subscribe with another message")
            }
            return response
        }
    }

    /// Rereads the server's licence files (operator or admin token).
    public func reload() async throws -> Licensed_V1_ReloadResponse {
        try await self.withConnection { connection in
            guard case .reload(let response) = try await connection.request(.reload(.init())) else {
                throw LicenseClientError(code: .internal, message: "the server answered Reload with another message")
            }
            return response
        }
    }

    /// Makes the server write a snapshot now (operator or admin token).
    public func snapshot() async throws -> Licensed_V1_SnapshotResponse {
        try await self.withConnection { connection in
            guard case .snapshot(let response) = try await connection.request(.snapshot(.init())) else {
                throw LicenseClientError(code: .internal, message: "the server answered Snapshot with another message")
            }
            return response
        }
    }
}
