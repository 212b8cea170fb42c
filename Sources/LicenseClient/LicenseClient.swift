import Foundation
import LicenseCrypto
public import LicenseProtocol
import NIOCore
import NIOPosix

/// The Swift client library: holds a session with a licence server, checks seats out and in,
/// heartbeats them in the background, and survives connection loss: it reconnects, resumes its
/// session, and re-asks for any lease the server no longer knows under its original checkout
/// key (which the server answers with the same lease while it lives, never a second seat).
///
/// ```swift
/// let client = LicenseClient(configuration: .init(host: "licence.example.com", user: "ada", clientName: "acme-cad"))
/// let lease = try await client.checkOut(feature: "cad.solver", version: "2026.2")
/// // ... work ...
/// try await client.checkIn(lease)
/// await client.close()
/// ```
public actor LicenseClient {
    /// Where to connect and who to say we are.
    public struct Configuration: Sendable {
        /// Server host.
        public var host: String
        /// Server port.
        public var port: Int
        /// Operating-system user.
        public var user: String
        /// This machine's host name.
        public var clientHost: String
        /// Client software name.
        public var clientName: String
        /// Client software version (checked against feature version ceilings).
        public var clientVersion: String
        /// Access token, if the server requires one.
        public var token: String
        /// Connect timeout per attempt.
        public var connectTimeout: Duration = .seconds(5)
        /// Longest pause between reconnection attempts.
        public var maximumReconnectDelay: Duration = .seconds(5)
        /// TLS settings; nil = plain TCP.
        public var tls: ClientTLS?
        /// A Unix socket to connect to instead of host:port (the server's local admin socket).
        public var unixSocketPath: String?

        /// Where connections go.
        public var endpoint: LicenseEndpoint {
            self.unixSocketPath.map { .unix(path: $0) } ?? .tcp(host: self.host, port: self.port)
        }

        /// Creates a configuration.
        public init(
            host: String = "127.0.0.1",
            port: Int = 27070,
            user: String,
            clientHost: String = "",
            clientName: String,
            clientVersion: String = "",
            token: String = ""
        ) {
            self.host = host
            self.port = port
            self.user = user
            self.clientHost = clientHost
            self.clientName = clientName
            self.clientVersion = clientVersion
            self.token = token
        }
    }

    /// A seat held by this client.
    public struct Lease: Sendable, Hashable {
        /// The lease id (16 bytes).
        public var id: [UInt8]
        /// The lease id in hex, as `licensectl` shows it.
        public var idHex: String { self.id.hexString }
        /// Feature name.
        public var feature: String
        /// Seats held.
        public var count: UInt32
        /// Licence the seats came from.
        public var licenseID: String
        /// Granted beyond the purchased count.
        public var overage: Bool
        /// Warnings the server attached to the grant.
        public var warnings: [String]
        /// Fencing token of the grant.
        public var fencingToken: UInt64
        /// Expiry at the last renewal (server clock).
        public var expiresAtMs: Int64
        /// For a borrow: the server-signed token to check offline (`BorrowTokenVerifier`).
        public var borrowToken: [UInt8] = []
        /// True for a borrowed seat (no heartbeats needed until it expires).
        public var borrowed: Bool { !self.borrowToken.isEmpty }
    }

    /// What happened to the client's session on its own.
    public enum Event: Sendable, Equatable {
        /// The connection was lost; reconnecting.
        case disconnected(reason: String)
        /// Reconnected; `resumed` tells whether the server still had the session.
        case reconnected(resumed: Bool)
        /// A lease is gone (reclaimed or revoked by the server, or not re-obtainable after a
        /// reconnect); the software should stop using the feature.
        case leaseLost(Lease, reason: String)
        /// After a reconnect the server granted the feature again under a new lease.
        case leaseReplaced(old: Lease, new: Lease)
        /// A feature's use crossed a utilisation threshold, up or back down (after `subscribe()`).
        case thresholdCrossed(feature: String, message: String)
    }

    private struct Held {
        var lease: Lease
        var request: Licensed_V1_CheckOutRequest
    }

    /// The configuration.
    public let configuration: Configuration
    /// Events about the session (disconnects, lost leases).
    public nonisolated let events: AsyncStream<Event>
    private let eventSink: AsyncStream<Event>.Continuation
    private var connection: LicenseConnection?
    private var hello: Licensed_V1_HelloResponse?
    private var held: [[UInt8]: Held] = [:]
    private var reconnecting: Task<Void, any Error>?
    private var background: [Task<Void, Never>] = []
    private var closed = false

    /// Creates a client; nothing happens until `connect()` or the first request.
    public init(configuration: Configuration) {
        self.configuration = configuration
        (self.events, self.eventSink) = AsyncStream.makeStream(of: Event.self, bufferingPolicy: .bufferingNewest(64))
    }

    /// The server's answer to the current session's Hello.
    public var session: Licensed_V1_HelloResponse? { self.hello }

    /// Leases held now.
    public var leases: [Lease] { self.held.values.map(\.lease).sorted { $0.idHex < $1.idHex } }

    // MARK: - Connection

    /// Opens the connection and session (done on demand by every request too).
    @discardableResult
    public func connect() async throws -> Licensed_V1_HelloResponse {
        if let hello = self.hello, self.connection != nil { return hello }
        try await self.establish(resume: nil)
        return self.hello!
    }

    private func establish(resume: [UInt8]?) async throws {
        guard !self.closed else { throw LicenseClientError.unavailable("the client is closed") }
        let connection = try await LicenseConnection.connect(
            to: self.configuration.endpoint,
            tls: self.configuration.tls,
            connectTimeout: .nanoseconds(
                self.configuration.connectTimeout.components.seconds * 1_000_000_000
                    + self.configuration.connectTimeout.components.attoseconds / 1_000_000_000
            )
        )
        var hello = Licensed_V1_Hello()
        hello.protocolVersion = .protocolVersion1
        hello.clientName = self.configuration.clientName
        hello.clientVersion = self.configuration.clientVersion
        hello.user = self.configuration.user
        hello.host = self.configuration.clientHost
        hello.token = self.configuration.token
        hello.pid = UInt32(getpid())
        if let resume { hello.resumeSessionID = .init(resume) }
        let response: Licensed_V1_HelloResponse
        do {
            response = try await connection.hello(hello)
        } catch {
            await connection.close()
            throw error
        }
        self.connection = connection
        self.hello = response
        self.startBackground(for: connection, heartbeatIntervalMs: response.heartbeatIntervalMs)
    }

    private func startBackground(for connection: LicenseConnection, heartbeatIntervalMs: UInt32) {
        for task in self.background { task.cancel() }
        let interval = Duration.milliseconds(Int64(max(heartbeatIntervalMs, 100)))
        self.background = [
            Task { [weak self] in
                for await event in connection.events {
                    await self?.handle(event)
                }
                // The event stream ends when the connection closes.
                await self?.connectionEnded(connection, reason: "the connection to the licence server closed")
            },
            Task { [weak self] in
                while !Task.isCancelled {
                    try? await Task.sleep(for: interval)
                    guard !Task.isCancelled, let self else { return }
                    await self.heartbeatInBackground()
                }
            },
        ]
    }

    private func handle(_ event: Licensed_V1_Event) {
        switch event.kind {
        case .leaseReclaimed, .leaseRevoked:
            let id = [UInt8](event.leaseID)
            if let held = self.held.removeValue(forKey: id) {
                self.eventSink.yield(.leaseLost(held.lease, reason: event.message))
            }
        case .thresholdCrossed:
            self.eventSink.yield(.thresholdCrossed(feature: event.feature, message: event.message))
        case .serverShuttingDown:
            // The server is going away (a restart): reconnect and resume.
            if let connection = self.connection {
                Task { await connection.close() }
            }
        case .sessionSuperseded:
            // Another connection resumed this session and holds its leases now. Resuming again
            // would evict it: the leases are reported lost, and a later request starts a new session.
            for (_, held) in self.held { self.eventSink.yield(.leaseLost(held.lease, reason: event.message)) }
            self.held = [:]
            self.hello = nil
            if let connection = self.connection {
                Task { await connection.close() }
            }
        default:
            break
        }
    }

    private func connectionEnded(_ connection: LicenseConnection, reason: String) {
        guard self.connection === connection, !self.closed else { return }
        self.connection = nil
        self.eventSink.yield(.disconnected(reason: reason))
        if !self.held.isEmpty { _ = self.startReconnect() }
    }

    /// Reconnects with session resume (one attempt in flight at a time), then re-establishes any
    /// lease the server no longer attributes to this session.
    private func startReconnect() -> Task<Void, any Error> {
        if let reconnecting = self.reconnecting { return reconnecting }
        let task = Task {
            defer { self.reconnecting = nil }
            var delay = Duration.milliseconds(100)
            while true {
                if self.closed { throw LicenseClientError.unavailable("the client is closed") }
                do {
                    let previous = self.hello.map { [UInt8]($0.sessionID) }
                    try await self.establish(resume: previous)
                    let resumed = self.hello?.resumed ?? false
                    self.eventSink.yield(.reconnected(resumed: resumed))
                    try await self.reclaimHeldLeases()
                    return
                } catch let error as LicenseClientError where error.code != .unavailable {
                    throw error
                } catch {
                    try await Task.sleep(for: delay)
                    delay = min(delay * 2, self.configuration.maximumReconnectDelay)
                }
            }
        }
        self.reconnecting = task
        return task
    }

    /// After a reconnect: renew every held lease; any the server no longer has for this session is
    /// asked for again with its checkout key.
    private func reclaimHeldLeases() async throws {
        guard !self.held.isEmpty, let connection = self.connection else { return }
        var heartbeat = Licensed_V1_HeartbeatRequest()
        heartbeat.leaseIds = self.held.keys.map { .init($0) }
        guard case .heartbeat(let renewed) = try await connection.request(.heartbeat(heartbeat)) else { return }
        for lostID in renewed.lostLeaseIds.map({ [UInt8]($0) }) {
            guard let lost = self.held.removeValue(forKey: lostID) else { continue }
            do {
                guard case .checkOut(let response) = try await connection.request(.checkOut(lost.request)) else { continue }
                let lease = Self.lease(from: response)
                self.held[lease.id] = Held(lease: lease, request: lost.request)
                if lease.id != lost.lease.id { self.eventSink.yield(.leaseReplaced(old: lost.lease, new: lease)) }
            } catch let error as LicenseClientError where error.code != .unavailable {
                self.eventSink.yield(.leaseLost(lost.lease, reason: error.description))
            }
        }
    }

    /// Runs `body` on a live connection; on a connection failure, reconnects and tries once more
    /// (every request this library sends is safe to repeat).
    private func withConnection<T: Sendable>(_ body: (LicenseConnection) async throws -> T) async throws -> T {
        if self.connection == nil {
            if self.hello == nil { try await self.establish(resume: nil) } else { try await self.startReconnect().value }
        }
        do {
            return try await body(self.connection!)
        } catch let error as LicenseClientError where error.code == .unavailable && !self.closed {
            if let connection = self.connection { self.connectionEnded(connection, reason: error.message) }
            try await self.startReconnect().value
            guard let connection = self.connection else { throw error }
            return try await body(connection)
        }
    }

    // MARK: - Requests

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
        let response = try await self.withConnection { connection in
            guard case .checkOut(let response) = try await connection.request(.checkOut(request)) else {
                throw LicenseClientError(code: .internal, message: "the server answered CheckOut with another message")
            }
            return response
        }
        let lease = Self.lease(from: response)
        self.held[lease.id] = Held(lease: lease, request: request)
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
        let response = try await self.withConnection { connection in
            guard case .heartbeat(let response) = try await connection.request(.heartbeat(.init())) else {
                throw LicenseClientError(code: .internal, message: "the server answered Heartbeat with another message")
            }
            return response
        }
        return response
    }

    private func heartbeatInBackground() async {
        guard !self.held.isEmpty, self.connection != nil, self.reconnecting == nil else { return }
        do {
            var request = Licensed_V1_HeartbeatRequest()
            request.leaseIds = self.held.keys.map { .init($0) }
            let response = try await self.withConnection { connection in try await connection.request(.heartbeat(request)) }
            if case .heartbeat(let renewed) = response, !renewed.lostLeaseIds.isEmpty {
                for id in renewed.lostLeaseIds.map({ [UInt8]($0) }) {
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
    public func status(features: [String] = [], includeHolders: Bool = false) async throws -> Licensed_V1_StatusResponse {
        var request = Licensed_V1_StatusRequest()
        request.features = features
        request.includeHolders = includeHolders
        return try await self.withConnection { connection in
            guard case .status(let response) = try await connection.request(.status(request)) else {
                throw LicenseClientError(code: .internal, message: "the server answered Status with another message")
            }
            return response
        }
    }

    /// Activates a node-locked licence (by id, or by a feature it grants) on a machine with
    /// `fingerprint` (component ids; `MachineFingerprint` computes this machine's).
    public func activate(
        licenseID: String = "",
        feature: String = "",
        fingerprint: [String],
        machineName: String = ""
    ) async throws -> Licensed_V1_ActivateResponse {
        var request = Licensed_V1_ActivateRequest()
        request.licenseID = licenseID
        request.feature = feature
        request.fingerprint = fingerprint
        request.machineName = machineName
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

    /// Closes the connection. Leases not checked in stay held until their TTL lapses.
    public func close() async {
        self.closed = true
        self.reconnecting?.cancel()
        for task in self.background { task.cancel() }
        self.background = []
        if let connection = self.connection { await connection.close() }
        self.connection = nil
        self.eventSink.finish()
    }

    /// Drops the connection without closing the client, as a network failure would (tests and
    /// fault drills); the client reconnects and resumes.
    public func dropConnection() async {
        if let connection = self.connection { await connection.close() }
    }

    private static func lease(from response: Licensed_V1_CheckOutResponse) -> Lease {
        Lease(
            id: [UInt8](response.leaseID),
            feature: response.feature,
            count: response.count,
            licenseID: response.licenseID,
            overage: response.overage,
            warnings: response.warnings,
            fencingToken: response.fencingToken,
            expiresAtMs: response.expiresAtMs,
            borrowToken: [UInt8](response.borrowToken)
        )
    }
}
