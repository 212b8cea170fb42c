import Foundation
public import LicenseProtocol
import NIOConcurrencyHelpers
public import NIOCore
public import NIOPosix

/// One framed protocol connection to a licence server: sends `ClientMessage`s, matches each
/// `ServerMessage` to its request by request_id, and delivers pushed `Event`s on `events`.
///
/// Requests may be issued concurrently from any task; replies may arrive in any order.
public final class LicenseConnection: Sendable {
    private let channel: any Channel
    private let pending: PendingRequests
    /// Events the server pushes (request_id 0): revocations, shutdown, ...
    public let events: AsyncStream<Licensed_V1_Event>
    /// A request without a reply for this long (plus a check-out's own wait) fails UNAVAILABLE
    /// and closes the connection: the server is stuck or cut off (nil: wait as long as it takes).
    private let requestTimeout: TimeAmount?

    private init(channel: any Channel, pending: PendingRequests, events: AsyncStream<Licensed_V1_Event>, requestTimeout: TimeAmount?) {
        self.channel = channel
        self.pending = pending
        self.events = events
        self.requestTimeout = requestTimeout
    }

    /// Opens a TCP connection (no Hello yet), with TLS when `tls` is given.
    public static func connect(
        host: String,
        port: Int,
        tls: ClientTLS? = nil,
        connectTimeout: TimeAmount = .seconds(5),
        maximumFrameLength: Int = FrameDecoder.defaultMaximumFrameLength,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> LicenseConnection {
        try await self.connect(
            to: .tcp(host: host, port: port),
            tls: tls,
            connectTimeout: connectTimeout,
            maximumFrameLength: maximumFrameLength,
            group: group
        )
    }

    /// Opens a connection to `endpoint` (no Hello yet), with TLS when `tls` is given.
    public static func connect(
        to endpoint: LicenseEndpoint,
        tls: ClientTLS? = nil,
        connectTimeout: TimeAmount = .seconds(5),
        requestTimeout: TimeAmount? = nil,
        maximumFrameLength: Int = FrameDecoder.defaultMaximumFrameLength,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> LicenseConnection {
        let pending = PendingRequests()
        let (events, continuation) = AsyncStream.makeStream(of: Licensed_V1_Event.self, bufferingPolicy: .bufferingNewest(256))
        let channel: any Channel
        do {
            let sslContext = try tls?.makeContext()
            let serverName: String? =
                switch endpoint {
                case .tcp(let host, _): tls?.serverName(forHost: host)
                case .unix: tls?.serverName
                }
            let bootstrap = ClientBootstrap(group: group)
                .connectTimeout(connectTimeout)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addLicenseFraming(
                            tls: sslContext,
                            serverName: serverName,
                            maximumFrameLength: maximumFrameLength
                        )
                        try channel.pipeline.syncOperations.addHandler(ResponseHandler(pending: pending, events: continuation))
                    }
                }
            switch endpoint {
            case .tcp(let host, let port):
                channel = try await bootstrap.channelOption(.socketOption(.tcp_nodelay), value: 1).connect(host: host, port: port).get()
            case .unix(let path):
                channel = try await bootstrap.connect(unixDomainSocketPath: path).get()
            }
        } catch let error as LicenseClientError {
            continuation.finish()
            throw error
        } catch {
            continuation.finish()
            throw LicenseClientError.unavailable("cannot connect to licence server \(endpoint): \(error)")
        }
        return LicenseConnection(channel: channel, pending: pending, events: events, requestTimeout: requestTimeout)
    }

    /// Sends `body` and waits for its reply. A server `Error` is thrown as `LicenseClientError`.
    public func request(_ body: Licensed_V1_ClientMessage.OneOf_Body) async throws -> Licensed_V1_ServerMessage.OneOf_Body {
        let promise = self.channel.eventLoop.makePromise(of: Licensed_V1_ServerMessage.self)
        let requestID = self.pending.register(promise)
        var message = Licensed_V1_ClientMessage()
        message.requestID = requestID
        message.body = body
        var buffer = self.channel.allocator.buffer(capacity: 64)
        try buffer.writeFrame(message)
        self.channel.writeAndFlush(buffer).whenFailure { error in
            self.pending.fail(requestID, LicenseClientError.unavailable("cannot send to the licence server: \(error)"))
        }
        if let requestTimeout {
            var limit = requestTimeout
            if case .checkOut(let checkOut) = body { limit = limit + .milliseconds(Int64(checkOut.waitMs)) }
            let channel = self.channel
            let pending = self.pending
            let timer = channel.eventLoop.scheduleTask(in: limit) {
                pending.fail(
                    requestID,
                    LicenseClientError.unavailable("no reply from the licence server within \(limit.nanoseconds / 1_000_000) ms")
                )
                channel.close(promise: nil)
            }
            promise.futureResult.whenComplete { _ in timer.cancel() }
        }
        let reply = try await promise.futureResult.get()
        switch reply.body {
        case .error(let error): throw LicenseClientError(error)
        case .some(let body): return body
        case .none: throw LicenseClientError(code: .internal, message: "the server sent a reply without a body")
        }
    }

    /// Opens the session.
    public func hello(_ hello: Licensed_V1_Hello) async throws -> Licensed_V1_HelloResponse {
        guard case .hello(let response) = try await self.request(.hello(hello)) else {
            throw LicenseClientError(code: .internal, message: "the server answered Hello with another message")
        }
        return response
    }

    /// Closes the connection; requests still waiting fail with UNAVAILABLE.
    public func close() async {
        try? await self.channel.close()
    }
}

/// Requests waiting for their reply, by request_id.
final class PendingRequests: Sendable {
    private let state = NIOLockedValueBox<(nextID: UInt64, waiting: [UInt64: EventLoopPromise<Licensed_V1_ServerMessage>])>((1, [:]))

    func register(_ promise: EventLoopPromise<Licensed_V1_ServerMessage>) -> UInt64 {
        self.state.withLockedValue { state in
            let id = state.nextID
            state.nextID += 1
            state.waiting[id] = promise
            return id
        }
    }

    func complete(_ message: Licensed_V1_ServerMessage) -> Bool {
        guard let promise = self.state.withLockedValue({ $0.waiting.removeValue(forKey: message.requestID) }) else { return false }
        promise.succeed(message)
        return true
    }

    func fail(_ id: UInt64, _ error: any Error) {
        self.state.withLockedValue { $0.waiting.removeValue(forKey: id) }?.fail(error)
    }

    func failAll(_ error: any Error) {
        let all = self.state.withLockedValue { state in
            defer { state.waiting.removeAll() }
            return Array(state.waiting.values)
        }
        for promise in all { promise.fail(error) }
    }
}

/// Routes each decoded `ServerMessage` to its waiting request or, for request_id 0, to `events`.
final class ResponseHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let pending: PendingRequests
    private let events: AsyncStream<Licensed_V1_Event>.Continuation

    init(pending: PendingRequests, events: AsyncStream<Licensed_V1_Event>.Continuation) {
        self.pending = pending
        self.events = events
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = Self.unwrapInboundIn(data)
        guard let message = try? frame.decodeMessage(as: Licensed_V1_ServerMessage.self) else {
            self.pending.failAll(LicenseClientError(code: .internal, message: "the server sent an undecodable frame"))
            context.close(promise: nil)
            return
        }
        if message.requestID == 0 {
            switch message.body {
            case .event(let event):
                self.events.yield(event)
            case .error(let error):
                // A connection-level error (the server could not tell which request it answers).
                self.pending.failAll(LicenseClientError(error))
            default:
                break
            }
            return
        }
        _ = self.pending.complete(message)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.pending.failAll(LicenseClientError.unavailable("the connection to the licence server closed"))
        self.events.finish()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.pending.failAll(LicenseClientError.unavailable("connection error: \(error)"))
        context.close(promise: nil)
    }
}

/// Where a licence server listens: TCP, or a Unix socket (the local admin socket).
public enum LicenseEndpoint: Sendable, Hashable, CustomStringConvertible {
    /// host:port over TCP.
    case tcp(host: String, port: Int)
    /// A Unix domain socket path.
    case unix(path: String)

    public var description: String {
        switch self {
        case .tcp(let host, let port): host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        case .unix(let path): "unix:\(path)"
        }
    }
}

extension LicenseEndpoint {
    /// The default port of the protocol listener.
    public static let defaultPort = 27070

    /// Parses a list of servers: `host:port,host:port,…` — each `host:port`, `[v6 address]:port`,
    /// a bare host (port 27070), or FlexNet's `port@host`.
    public static func list(parsing text: String) throws -> [LicenseEndpoint] {
        let entries = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard !entries.isEmpty else { throw LicenseClientError.invalidArgument("no licence server in '\(text)'") }
        return try entries.map(Self.init(parsing:))
    }

    /// Parses one server (see `list(parsing:)`).
    public init(parsing text: String) throws {
        func port(_ digits: some StringProtocol) throws -> Int {
            guard let port = Int(digits), (1...65535).contains(port) else {
                throw LicenseClientError.invalidArgument("'\(text)' is not host:port")
            }
            return port
        }
        if let at = text.firstIndex(of: "@"), !text.hasPrefix("[") {
            let host = text[text.index(after: at)...]
            guard !host.isEmpty else { throw LicenseClientError.invalidArgument("'\(text)' is not port@host") }
            self = .tcp(host: String(host), port: try port(text[..<at]))
            return
        }
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            let host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            guard rest.isEmpty || rest.hasPrefix(":") else { throw LicenseClientError.invalidArgument("'\(text)' is not [address]:port") }
            self = .tcp(host: host, port: rest.isEmpty ? Self.defaultPort : try port(rest.dropFirst()))
            return
        }
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        switch parts.count {
        case 1: self = .tcp(host: text, port: Self.defaultPort)
        case 2:
            guard !parts[0].isEmpty else { throw LicenseClientError.invalidArgument("'\(text)' is not host:port") }
            self = .tcp(host: String(parts[0]), port: try port(parts[1]))
        default: throw LicenseClientError.invalidArgument("'\(text)' is not host:port (write IPv6 addresses as [address]:port)")
        }
    }
}
