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
    private let group: any EventLoopGroup
    private let bound: EventLoopPromise<SocketAddress>
    private let sessions = NIOLockedValueBox<[ObjectIdentifier: any Channel]>([:])

    /// Creates a server; nothing is bound until `run()`.
    public init(context: ServerContext, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        self.context = context
        self.group = group
        self.bound = group.next().makePromise(of: SocketAddress.self)
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
            serverChannel = try await ServerBootstrap(group: self.group)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .serverChannelOption(.backlog, value: 1024)
                .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                .childChannelOption(.allowRemoteHalfClosure, value: true)
                .bind(host: configuration.listenHost, port: configuration.port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let peer = channel.remoteAddress?.description ?? "unknown"
                        try channel.pipeline.syncOperations.addHandler(
                            ByteToMessageHandler(FrameDecoder(maximumFrameLength: configuration.maxFrameBytes))
                        )
                        try channel.pipeline.syncOperations.addHandler(SessionHandler(context: context, peer: peer))
                        return channel
                    }
                }
        } catch {
            self.bound.fail(error)
            throw ConfigurationError("cannot listen on \(configuration.listenHost):\(configuration.port): \(error)")
        }
        let address = serverChannel.channel.localAddress!
        self.bound.succeed(address)
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
            self.closeAllSessions()
        }
    }

    private func closeAllSessions() {
        var event = Licensed_V1_ServerMessage()
        event.requestID = 0
        event.event.kind = .serverShuttingDown
        event.event.message = "the licence server is shutting down; reconnect with resume_session_id"
        let channels = self.sessions.withLockedValue { Array($0.values) }
        for channel in channels {
            var buffer = channel.allocator.buffer(capacity: 96)
            _ = try? buffer.writeFrame(event)
            channel.writeAndFlush(buffer).whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
