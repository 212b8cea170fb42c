import Foundation
import LicenseCrypto
public import LicenseProtocol
import NIOCore
import NIOPosix
import Synchronization

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
        /// A request without a reply for this long (plus a check-out's own wait) fails, and the
        /// client moves to another server: a stopped or cut-off server is left behind.
        public var requestTimeout: Duration = .seconds(10)
        /// Longest pause between reconnection attempts.
        public var maximumReconnectDelay: Duration = .seconds(5)
        /// TLS settings; nil = plain TCP.
        public var tls: ClientTLS?
        /// A Unix socket to connect to instead of host:port (the server's local admin socket).
        public var unixSocketPath: String?
        /// The servers of a cluster, tried in order (FlexNet's `port@h1,port@h2,port@h3`); empty:
        /// `host`:`port` alone. A standby's answer names the active server, which is tried next.
        public var servers: [LicenseEndpoint] = []

        /// Where connections go first.
        public var endpoint: LicenseEndpoint { self.endpoints[0] }

        /// Every server to try, in order.
        public var endpoints: [LicenseEndpoint] {
            if let path = self.unixSocketPath { return [.unix(path: path)] }
            return self.servers.isEmpty ? [.tcp(host: self.host, port: self.port)] : self.servers
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
        /// Reconnected to `server` (another one than before after a failover); `resumed` tells
        /// whether the server still had the session.
        case reconnected(server: LicenseEndpoint, resumed: Bool)
        /// No server served the session on a whole walk of the list; the client keeps trying.
        /// `leasesExpireIn` is how long the leases have before a server could reclaim them (nil:
        /// none held): a server that serves again within it still holds them.
        case noServer(reason: String, leasesExpireIn: Duration?)
        /// A lease is gone (reclaimed or revoked by the server, or not re-obtainable after a
        /// reconnect); the software should stop using the feature.
        case leaseLost(Lease, reason: String)
        /// After a reconnect the server granted the feature again under a new lease.
        case leaseReplaced(old: Lease, new: Lease)
        /// A feature's use crossed a utilisation threshold, up or back down (after `subscribe()`).
        case thresholdCrossed(feature: String, message: String)
    }

    struct Held {
        var lease: Lease
        var request: Licensed_V1_CheckOutRequest
    }

    /// The configuration.
    public let configuration: Configuration
    /// Events about the session (disconnects, lost leases).
    public nonisolated let events: AsyncStream<Event>
    let eventSink: AsyncStream<Event>.Continuation
    var connection: LicenseConnection?
    private var hello: Licensed_V1_HelloResponse?
    var held: [[UInt8]: Held] = [:]
    /// When every held lease was last renewed (a heartbeat answered, or the first check-out),
    /// and the shortest lease lifetime seen: the leases live that long after it.
    var renewedAt: ContinuousClock.Instant?
    var leaseTTL: Duration?
    /// Leases with a check-in in flight: a heartbeat answered meanwhile may find them gone,
    /// which is no loss.
    var returning: Set<[UInt8]> = []
    var reconnecting: Task<Void, any Error>?
    /// The server's clock less ours, from the last Hello.
    private var serverSkewMs: Int64?
    /// The server that accepted the session last, or that a standby named as active: tried first.
    private var preferred: LicenseEndpoint?
    /// What the servers said the last time none served.
    private var lastRefusal = ""
    /// Hellos that resumed a session so far: each carries the next number, so that a server
    /// that gets one after a newer one (given up on, and overtaken) refuses it (STALE_RESUME)
    /// rather than take the session from this client's newer connection.
    private var resumeAttempts: UInt64 = 0
    private var background: [Task<Void, Never>] = []
    private var closed = false

    /// Creates a client; nothing happens until `connect()` or the first request.
    public init(configuration: Configuration) {
        self.configuration = configuration
        (self.events, self.eventSink) = AsyncStream.makeStream(of: Event.self, bufferingPolicy: .bufferingNewest(64))
    }

    /// The server's answer to the current session's Hello.
    public var session: Licensed_V1_HelloResponse? { self.hello }

    /// The server of the current session (nil before the first one).
    public var server: LicenseEndpoint? { self.preferred }

    /// Leases held now.
    public var leases: [Lease] { self.held.values.map(\.lease).sorted { $0.idHex < $1.idHex } }

    /// How long the held leases have before a server could reclaim them, counted from their last
    /// renewal (nil: none held). While no server serves, this is what the application has left.
    public var leasesExpireIn: Duration? {
        guard !self.held.isEmpty, let renewedAt = self.renewedAt, let ttl = self.leaseTTL else { return nil }
        return max(.zero, ttl - (ContinuousClock.now - renewedAt))
    }

    /// Notes that every held lease was renewed by a request sent at `sent`.
    func renewed(at sent: ContinuousClock.Instant) {
        self.renewedAt = sent
    }

    /// Notes a granted lease's lifetime: its expiry by the server's clock, less the server's time
    /// now (from the skew its Hello showed), and the server's default from Hello.
    func noteLifetime(of lease: Lease, grantedAt sent: ContinuousClock.Instant) {
        if self.held.count <= 1 { self.renewedAt = sent }
        var ttl = self.hello.map { Duration.milliseconds(Int64($0.leaseTtlMs)) } ?? .seconds(120)
        if let skewMs = self.serverSkewMs {
            let left = Duration.milliseconds(lease.expiresAtMs - (Int64(Date().timeIntervalSince1970 * 1000) + skewMs))
            if left > .zero { ttl = min(ttl, left) }
        }
        self.leaseTTL = min(self.leaseTTL ?? ttl, ttl)
    }

    // MARK: - Connection

    /// Opens the connection and session (done on demand by every request too).
    @discardableResult
    public func connect() async throws -> Licensed_V1_HelloResponse {
        if let hello = self.hello, self.connection != nil { return hello }
        try await self.establish(resume: nil)
        return self.hello!
    }

    /// Opens a session on the first server that serves one: the preferred server, then the
    /// configured list in order; a standby's NOT_ACTIVE answer puts the active server it names
    /// next. Each server is tried once per call.
    private func establish(resume: [UInt8]?) async throws {
        guard !self.closed else { throw LicenseClientError.unavailable("the client is closed") }
        if resume != nil, let current = self.connection {
            // Resuming elsewhere leaves the current connection (a reconnection that got a Hello
            // through but whose next request failed): the server tells it that the session moved
            // on, which must not read as another client having taken the session.
            self.connection = nil
            Task { await current.close() }
        }
        var candidates = self.configuration.endpoints
        if let preferred = self.preferred {
            candidates.removeAll { $0 == preferred }
            candidates.insert(preferred, at: 0)
        }
        var tried = Set<LicenseEndpoint>()
        var refusals: [String] = []
        while let endpoint = candidates.first {
            candidates.removeFirst()
            guard tried.insert(endpoint).inserted else { continue }
            do {
                try await self.establish(on: endpoint, resume: resume)
                self.preferred = endpoint
                return
            } catch let error as LicenseClientError where error.tryAnotherServer {
                refusals.append("\(endpoint): \(error.message)")
                if error.code == .notActive, let active = try? LicenseEndpoint(parsing: error.activeServer), !tried.contains(active) {
                    candidates.removeAll { $0 == active }
                    candidates.insert(active, at: 0)
                }
            }
        }
        self.preferred = nil
        self.lastRefusal = refusals.joined(separator: "; ")
        throw LicenseClientError.unavailable(
            refusals.count == 1 ? refusals[0] : "no licence server serves this session now (\(refusals.joined(separator: "; ")))"
        )
    }

    private func establish(on endpoint: LicenseEndpoint, resume: [UInt8]?) async throws {
        let connection = try await LicenseConnection.connect(
            to: endpoint,
            tls: self.configuration.tls,
            connectTimeout: Self.timeAmount(self.configuration.connectTimeout),
            requestTimeout: Self.timeAmount(self.configuration.requestTimeout)
        )
        var hello = Licensed_V1_Hello()
        hello.protocolVersion = .protocolVersion1
        hello.clientName = self.configuration.clientName
        hello.clientVersion = self.configuration.clientVersion
        hello.user = self.configuration.user
        hello.host = self.configuration.clientHost
        hello.token = self.configuration.token
        hello.pid = UInt32(getpid())
        hello.clientTimeMs = Int64(Date().timeIntervalSince1970 * 1000)
        if let resume {
            hello.resumeSessionID = .init(resume)
            self.resumeAttempts += 1
            hello.resumeAttempt = self.resumeAttempts
        }
        let response: Licensed_V1_HelloResponse
        do {
            response = try await connection.hello(hello)
        } catch {
            await connection.close()
            throw error
        }
        self.connection = connection
        self.hello = response
        self.serverSkewMs = response.serverTimeMs - Int64(Date().timeIntervalSince1970 * 1000)
        self.startBackground(for: connection, heartbeatIntervalMs: response.heartbeatIntervalMs)
    }

    private func startBackground(for connection: LicenseConnection, heartbeatIntervalMs: UInt32) {
        for task in self.background { task.cancel() }
        let interval = Duration.milliseconds(Int64(max(heartbeatIntervalMs, 100)))
        self.background = [
            Task { [weak self] in
                for await event in connection.events {
                    await self?.handle(event, on: connection)
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

    /// An event pushed on `connection`. Those about the connection itself (shutting down, the
    /// session taken over) count only on the current one: after a failover, the server tells the
    /// connection this client left behind that its own new connection resumed the session.
    private func handle(_ event: Licensed_V1_Event, on connection: LicenseConnection) {
        switch event.kind {
        case .serverShuttingDown, .sessionSuperseded:
            guard connection === self.connection else { return }
        default:
            break
        }
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
    func startReconnect() -> Task<Void, any Error> {
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
                    if let server = self.preferred { self.eventSink.yield(.reconnected(server: server, resumed: resumed)) }
                    try await self.reclaimHeldLeases()
                    return
                } catch let error as LicenseClientError where !error.tryAnotherServer {
                    self.eventSink.yield(.disconnected(reason: "reconnection refused: \(error)"))
                    throw error
                } catch {
                    // No server serves now (a failover in progress, say): wait, with jitter so
                    // that a site's clients do not all come back at the same instant.
                    self.eventSink.yield(.noServer(reason: "\(error)", leasesExpireIn: self.leasesExpireIn))
                    try await Task.sleep(for: delay * Double.random(in: 0.5...1.0))
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
        let sent = ContinuousClock.now
        guard case .heartbeat(let renewed) = try await connection.request(.heartbeat(heartbeat)) else { return }
        self.renewed(at: sent)
        for lostID in renewed.lostLeaseIds.map({ [UInt8]($0) }) where !self.returning.contains(lostID) {
            guard let lost = self.held.removeValue(forKey: lostID) else { continue }
            do {
                guard case .checkOut(let response) = try await connection.request(.checkOut(lost.request)) else { continue }
                let lease = Self.lease(from: response)
                self.held[lease.id] = Held(lease: lease, request: lost.request)
                if lease.id != lost.lease.id { self.eventSink.yield(.leaseReplaced(old: lost.lease, new: lease)) }
            } catch let error as LicenseClientError where !error.tryAnotherServer {
                self.eventSink.yield(.leaseLost(lost.lease, reason: error.description))
            }
        }
    }

    /// Runs `body` on a live connection; on a connection failure, reconnects and tries once more
    /// (every request this library sends is safe to repeat).
    func withConnection<T: Sendable>(_ body: (LicenseConnection) async throws -> T) async throws -> T {
        if self.connection == nil {
            if self.hello == nil { try await self.establish(resume: nil) } else { try await self.awaitReconnect() }
        }
        do {
            return try await body(self.connection!)
        } catch let error as LicenseClientError where error.tryAnotherServer && !self.closed {
            // The connection broke, or this server no longer serves (a standby now, or unsure it
            // is still the active one): leave it and resume the session on whichever server does.
            if let connection = self.connection {
                self.connectionEnded(connection, reason: error.message)
                await connection.close()
            }
            if error.code == .notActive, let active = try? LicenseEndpoint(parsing: error.activeServer) { self.preferred = active }
            try await self.awaitReconnect()
            guard let connection = self.connection else { throw error }
            return try await body(connection)
        }
    }

    /// Waits for the reconnection in progress (starting one if none is), for at most
    /// `requestTimeout`: a call fails UNAVAILABLE rather than wait for as long as no server
    /// serves, while the reconnection goes on in the background for the leases held.
    private func awaitReconnect() async throws {
        let reconnecting = self.startReconnect()
        let limit = self.configuration.requestTimeout
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let outcome = ResumeOnce(continuation)
            Task {
                do {
                    try await reconnecting.value
                    outcome.resume(with: .success(()))
                } catch {
                    outcome.resume(with: .failure(error))
                }
            }
            Task { [weak self] in
                try? await Task.sleep(for: limit)
                let last = await self?.lastRefusal ?? ""
                outcome.resume(
                    with: .failure(
                        LicenseClientError.unavailable(
                            "no licence server served this session within \(limit); still trying\(last.isEmpty ? "" : " (\(last))")"
                        )
                    )
                )
            }
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

    static func timeAmount(_ duration: Duration) -> TimeAmount {
        .nanoseconds(duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000)
    }

    static func lease(from response: Licensed_V1_CheckOutResponse) -> Lease {
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

/// Resumes a continuation with the first outcome given and ignores the rest.
final class ResumeOnce: Sendable {
    private let continuation: Mutex<CheckedContinuation<Void, any Error>?>

    init(_ continuation: CheckedContinuation<Void, any Error>) { self.continuation = Mutex(continuation) }

    func resume(with result: Result<Void, any Error>) {
        continuation.withLock { pending in
            pending?.resume(with: result)
            pending = nil
        }
    }
}
