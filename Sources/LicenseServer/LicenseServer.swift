import CoreMetrics
import Foundation
import LicenseAudit
public import LicenseCore
public import LicenseProtocol
public import LicenseStore
import Logging
import NIOConcurrencyHelpers
public import NIOCore
public import NIOPosix
public import NIOSSL
import Prometheus
public import ServiceLifecycle

/// The protocol listener as a `Service`: binds, accepts connections until graceful shutdown, then
/// tells every session the server is going away and closes it.
public final class LicenseServer: Service {
    private let context: ServerContext
    /// The one loop that accepts, serves every connection and owns the ledger.
    private let eventLoop: any EventLoop
    private let host: NIOLoopBoundBox<LedgerHost>
    private let bound: EventLoopPromise<SocketAddress>
    private let sessions = NIOLockedValueBox<[ObjectIdentifier: any Channel]>([:])

    /// Where the ledger's changes are made durable.
    private let log: any CommitLog
    /// The watchdog task, set and cancelled on `eventLoop`.
    private let watchdog = NIOLockedValueBox<RepeatedTask?>(nil)
    /// This node's cluster, when it is one's.
    public let cluster: (any ServerCluster)?

    /// Creates a server for `licenses`: opens the commit log of `log` (by default this machine's
    /// write-ahead log under `<state_dir>/ledger`), recovers the ledger from it and starts it.
    /// A node of a `cluster` opens the cluster's log instead, and starts as a standby. Nothing is
    /// bound until `run()`. A recovery that cannot prove it holds every acknowledged change throws
    /// `RecoveryRefusal`.
    public init(
        context: ServerContext,
        licenses: LicenseLoadResult,
        log: CommitLogSource = .local(),
        cluster: (any ServerCluster)? = nil,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) throws {
        guard context.configuration.clustered == (cluster != nil) else {
            throw ConfigurationError(
                cluster == nil
                    ? "cluster_etcd_endpoints are set, but this program runs single nodes only" : "a cluster needs cluster_etcd_endpoints"
            )
        }
        self.context = context
        let eventLoop = group.next()
        self.eventLoop = eventLoop
        (self.host, self.log) = try LedgerHost.open(context: context, licenses: licenses, log: cluster?.source ?? log, on: eventLoop)
        if let cluster {
            let host = self.host
            try eventLoop.submit { host.value.cluster = cluster.membership() }.wait()
        }
        self.cluster = cluster
        self.bound = eventLoop.makePromise(of: SocketAddress.self)
    }

    /// Rereads the licence files (SIGHUP) with the loader given at start, as `licensectl reload` does.
    public func reload() async throws -> Licensed_V1_ReloadResponse {
        let promise = self.eventLoop.makePromise(of: Licensed_V1_ReloadResponse.self)
        self.eventLoop.execute {
            self.host.value.reload(actor: "signal") { result in promise.completeWith(result.mapError { $0 as any Error }) }
        }
        return try await promise.futureResult.get()
    }

    /// The Prometheus text exposition, with the state gauges refreshed from the ledger.
    public func renderMetrics() -> EventLoopFuture<[UInt8]> {
        self.eventLoop.submit {
            self.host.value.refreshGauges()
            return self.context.metrics.registry.emitToBuffer()
        }
    }

    /// True when the serving loop answers within a second.
    public func health() -> EventLoopFuture<Bool> {
        let answered = self.eventLoop.submit { true }
        let promise = self.eventLoop.makePromise(of: Bool.self)
        let timeout = self.eventLoop.scheduleTask(in: .seconds(1)) { promise.succeed(false) }
        answered.whenSuccess { _ in
            timeout.cancel()
            promise.succeed(true)
        }
        return promise.futureResult
    }

    /// Whether the server is ready to serve, and why (not).
    public func readiness() -> EventLoopFuture<(Bool, String)> {
        self.eventLoop.submit { (self.host.value.isReady, self.host.value.readiness) }
    }

    /// Writes a snapshot now (`licensectl snapshot`, tests).
    public func snapshot() async throws -> SnapshotResult {
        let promise = self.eventLoop.makePromise(of: SnapshotResult.self)
        self.eventLoop.execute {
            self.host.value.takeSnapshot(reason: "requested") { result in
                switch result {
                case .success(let snapshot): promise.succeed(snapshot)
                case .failure(let error): promise.fail(error)
                }
            }
        }
        return try await promise.futureResult.get()
    }

    /// Runs `body` with the ledger on its loop (status, tests, administration).
    public func withLedger<T: Sendable>(_ body: @escaping @Sendable (inout SeatLedger) -> T) async throws -> T {
        try await self.eventLoop.submit { body(&self.host.value.ledger) }.get()
    }

    /// Runs the reaper once now (tests with a manual clock).
    public func reapNow() async throws {
        try await self.eventLoop.submit { self.host.value.reap() }.get()
    }

    /// The address the listener is bound to, once it is (port 0 in the config picks a free port).
    public var localAddress: SocketAddress {
        get async throws { try await self.bound.futureResult.get() }
    }

    /// Sessions connected now.
    public var connectionCount: Int { self.sessions.withLockedValue { $0.count } }

    /// The configuration the server runs with.
    public var configuration: ServerConfiguration { self.context.configuration }

    // MARK: - For the web console

    /// A console sign-in with `token` from `address`: the token's role, or nil when it is not one
    /// of the configured tokens — then audited and counted as a refused token, and the answer is
    /// to be held for the returned delay once the address is over `bad_token_limit`, exactly as a
    /// refused Hello token. A success is audited too.
    public func signIn(token: String, address: String) async throws -> (role: Role?, delayMs: Int64) {
        let role = TokenAuthority(entries: self.context.configuration.tokens).role(for: token)
        return try await self.eventLoop.submit {
            let host = self.host.value
            guard let role else {
                return (nil, host.refusedToken(from: address, details: [("via", .string("console"))]))
            }
            host.audit(
                "console_sign_in",
                actor: "console@\(address)",
                details: [("role", .string(role.rawValue)), ("address", .string(address))]
            )
            return (role, 0)
        }.get()
    }

    /// Records a web-console event in the audit trail (sign-out, a refused form), with the
    /// signed-in role in the details.
    public func auditConsole(_ action: String, actor: String, details: [(String, String)]) async throws {
        try await self.eventLoop.submit {
            self.host.value.audit(action, actor: actor, details: details.map { ($0.0, AuditEvent.Value.string($0.1)) })
        }.get()
    }

    public func run() async throws {
        let configuration = self.context.configuration
        let context = self.context
        let serverChannel: NIOAsyncChannel<any Channel, Never>
        let tls: NIOSSLContext?
        do {
            tls = try Self.makeTLSContext(configuration)
        } catch {
            self.bound.fail(error)
            throw ConfigurationError("cannot set up TLS: \(error)")
        }
        do {
            serverChannel = try await ServerBootstrap(group: self.eventLoop)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .serverChannelOption(.backlog, value: 1024)
                .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                .childChannelOption(.allowRemoteHalfClosure, value: true)
                .childChannelOption(.recvAllocator, value: Self.receiveBuffers)
                .bind(host: configuration.listenHost, port: configuration.port) { [host] channel in
                    channel.eventLoop.makeCompletedFuture {
                        if let tls { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls)) }
                        try channel.pipeline.syncOperations.addHandler(SessionHandler(context: context, host: host.value))
                        return channel
                    }
                }
        } catch {
            self.bound.fail(error)
            throw ConfigurationError("cannot listen on \(configuration.listenHost):\(configuration.port): \(error)")
        }
        let address = serverChannel.channel.localAddress!
        let adminChannel = await self.bindAdminSocket()
        self.bound.succeed(address)
        try await self.eventLoop.submit {
            self.host.value.startReaper()
            self.host.value.startDirectorySync()
            self.host.value.listening = true
            self.startWatchdog()
        }.get()
        // Licences are loaded and the listener is bound: tell systemd.
        let status = try await self.eventLoop.submit { self.host.value.statusLine }.get()
        self.context.notifier.notify("READY=1\nSTATUS=\(status)")
        self.context.logger.info("listening", metadata: ["address": "\(address)", "tls": "\(tls != nil)"])

        let clusterTask = self.cluster.map { node in Task { await node.run(ClusterLedger(host: self.host, loop: self.eventLoop)) } }
        try await withThrowingDiscardingTaskGroup { group in
            if let adminChannel {
                group.addTask {
                    try? await adminChannel.executeThenClose { inbound in
                        for try await child in inbound.cancelOnGracefulShutdown() {
                            self.track(child)
                        }
                    }
                    unlink(configuration.adminSocket)
                }
            }
            try await serverChannel.executeThenClose { inbound in
                for try await child in inbound.cancelOnGracefulShutdown() {
                    self.track(child)
                }
            }
            // No longer accepting: tell every session and close it, then wait until each is closed.
            self.context.notifier.notify("STOPPING=1")
            self.context.logger.info("stopped accepting; closing \(self.connectionCount) session(s)")
            try? await self.eventLoop.submit {
                self.host.value.listening = false
                self.watchdog.withLockedValue { $0?.cancel() }
                self.host.value.stopReaper()
                self.host.value.stopDirectorySync()
                self.host.value.broadcastShutdown()
            }.get()
            for channel in self.closeRemainingConnections() {
                try? await channel.closeFuture.get()
            }
        }
        // Every connection is closed: snapshot the final state, then close the log.
        do {
            _ = try await self.snapshot()
        } catch {
            self.context.logger.error("final snapshot failed: \(error); the write-ahead log still holds every change")
        }
        self.log.close()
        if let clusterTask {
            // Everything acknowledged is in etcd: resign, so that a standby takes over at once.
            clusterTask.cancel()
            await clusterTask.value
        }
        self.context.logger.info("stopped")
    }

    /// A TLS 1.2+ server configuration presenting the PEM chain `certificate` with its PEM
    /// `privateKey` (the protocol listener's and the operator listener's).
    public static func serverTLS(certificate: String, privateKey: String) throws -> TLSConfiguration {
        let chain = try NIOSSLCertificate.fromPEMFile(certificate).map { NIOSSLCertificateSource.certificate($0) }
        let key = try NIOSSLPrivateKey(file: privateKey, format: .pem)
        var tls = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
        tls.minimumTLSVersion = .tlsv12
        return tls
    }

    /// The TLS context of the protocol listener, when configured: the certificate chain and key,
    /// and with `tls_client_ca` client certificates required and checked against that CA.
    /// Read buffers per connection: NIO's adaptive sizing from 256 bytes (a heartbeat or check-out
    /// frame is tens of bytes) instead of its default 2,048, growing to 64 KiB for a busy client.
    static let receiveBuffers = AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 256, maximum: 65_536)

    static func makeTLSContext(_ configuration: ServerConfiguration) throws -> NIOSSLContext? {
        guard configuration.tlsEnabled else { return nil }
        var tls = try Self.serverTLS(certificate: configuration.tlsCertificate, privateKey: configuration.tlsPrivateKey)
        if !configuration.tlsClientCA.isEmpty {
            tls.trustRoots = .file(configuration.tlsClientCA)
            tls.certificateVerification = .noHostnameVerification
        }
        return try NIOSSLContext(configuration: tls)
    }

    /// Binds the local admin socket (mode 0660: its group may administer), or returns nil with a
    /// warning when it cannot be (no runtime directory outside systemd, say): the TCP listener
    /// with tokens still works.
    private func bindAdminSocket() async -> NIOAsyncChannel<any Channel, Never>? {
        let configuration = self.context.configuration
        let context = self.context
        let path = configuration.adminSocket
        guard path != "off", !path.isEmpty else { return nil }
        do {
            let channel = try await ServerBootstrap(group: self.eventLoop)
                .childChannelOption(.allowRemoteHalfClosure, value: true)
                .bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true) { [host] channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(SessionHandler(context: context, host: host.value, localAdmin: true))
                        return channel as any Channel
                    }
                }
            guard chmod(path, 0o660) == 0 else {
                try? await channel.channel.close()
                throw ConfigurationError("cannot set the mode of \(path): \(String(cString: strerror(errno)))")
            }
            self.context.logger.info("admin socket listening", metadata: ["path": "\(path)"])
            return channel
        } catch {
            self.context.logger.warning("admin socket \(path) not available: \(error); administration needs a token over TCP")
            return nil
        }
    }

    /// Pings systemd's watchdog from the serving loop itself, so a hung loop stops the pings and
    /// systemd restarts the daemon; the status line rides along.
    private func startWatchdog() {
        guard let interval = self.context.notifier.watchdogInterval else { return }
        let nanoseconds = interval.components.seconds * 1_000_000_000 + interval.components.attoseconds / 1_000_000_000
        let notifier = self.context.notifier
        let host = self.host
        let task = self.eventLoop.scheduleRepeatedTask(initialDelay: .zero, delay: .nanoseconds(nanoseconds)) { _ in
            notifier.notify("WATCHDOG=1\nSTATUS=\(host.value.statusLine)")
        }
        self.watchdog.withLockedValue { $0 = task }
    }

    /// Keeps `child` among the open connections until it closes. A callback on its close future,
    /// not a task awaiting it: a task parked per connection cost about 1.5 KB of every idle
    /// session (its stack slab and task object).
    private func track(_ child: any Channel) {
        let id = ObjectIdentifier(child)
        self.sessions.withLockedValue { $0[id] = child }
        child.closeFuture.whenComplete { _ in self.sessions.withLockedValue { _ = $0.removeValue(forKey: id) } }
    }

    /// Closes the connections still open (those that never opened a session get no event) and
    /// returns them, to be waited for.
    private func closeRemainingConnections() -> [any Channel] {
        let channels = self.sessions.withLockedValue { Array($0.values) }
        for channel in channels {
            channel.close(promise: nil)
        }
        return channels
    }
}
