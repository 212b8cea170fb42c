public import LicenseCore
import LicenseProtocol
public import Logging
import NIOConcurrencyHelpers
public import NIOCore
public import NIOPosix
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

    /// Creates a server for `licenses`; nothing is bound until `run()`.
    public init(context: ServerContext, licenses: LicenseLoadResult, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        self.context = context
        self.eventLoop = group.next()
        self.host = NIOLoopBoundBox.makeBoxSendingValue(
            LedgerHost(eventLoop: self.eventLoop, context: context, licenses: licenses),
            eventLoop: self.eventLoop
        )
        self.bound = self.eventLoop.makePromise(of: SocketAddress.self)
    }

    /// Runs `body` with the ledger on its loop (status, tests, administration).
    public func withLedger<T: Sendable>(_ body: @escaping @Sendable (inout SeatLedger) -> T) async throws -> T {
        try await self.eventLoop.submit { body(&self.host.value.ledgerForInspection) }.get()
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

    public func run() async throws {
        let configuration = self.context.configuration
        let context = self.context
        let serverChannel: NIOAsyncChannel<any Channel, Never>
        do {
            serverChannel = try await ServerBootstrap(group: self.eventLoop)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .serverChannelOption(.backlog, value: 1024)
                .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                .childChannelOption(.allowRemoteHalfClosure, value: true)
                .bind(host: configuration.listenHost, port: configuration.port) { [host] channel in
                    channel.eventLoop.makeCompletedFuture {
                        let peer = channel.remoteAddress?.description ?? "unknown"
                        try channel.pipeline.syncOperations.addHandler(
                            ByteToMessageHandler(FrameDecoder(maximumFrameLength: configuration.maxFrameBytes))
                        )
                        try channel.pipeline.syncOperations.addHandler(SessionHandler(context: context, host: host.value, peer: peer))
                        return channel
                    }
                }
        } catch {
            self.bound.fail(error)
            throw ConfigurationError("cannot listen on \(configuration.listenHost):\(configuration.port): \(error)")
        }
        let address = serverChannel.channel.localAddress!
        self.bound.succeed(address)
        try await self.eventLoop.submit { self.host.value.startReaper() }.get()
        self.context.logger.info("listening", metadata: ["address": "\(address)"])

        try await withThrowingDiscardingTaskGroup { group in
            try await serverChannel.executeThenClose { inbound in
                for try await child in inbound.cancelOnGracefulShutdown() {
                    let id = ObjectIdentifier(child)
                    self.sessions.withLockedValue { $0[id] = child }
                    group.addTask {
                        try? await child.closeFuture.get()
                        self.sessions.withLockedValue { _ = $0.removeValue(forKey: id) }
                    }
                }
            }
            // No longer accepting: tell every session and close it; the group waits for them.
            self.context.logger.info("stopped accepting; closing \(self.connectionCount) session(s)")
            try? await self.eventLoop.submit {
                self.host.value.stopReaper()
                self.host.value.broadcastShutdown()
            }.get()
            self.closeRemainingConnections()
        }
    }

    /// Connections that never opened a session are closed without an event.
    private func closeRemainingConnections() {
        for channel in self.sessions.withLockedValue({ Array($0.values) }) {
            channel.close(promise: nil)
        }
    }
}
