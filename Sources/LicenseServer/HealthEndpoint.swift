import Dispatch
public import Logging
public import NIOCore
import NIOHTTP1
import NIOPosix
public import ServiceLifecycle

/// The operator's HTTP listener (default 127.0.0.1:9270), apart from the licence protocol:
/// `/metrics` (Prometheus text), `/healthz` (the serving loop answers) and `/readyz`
/// (listening with at least one valid licence).
public final class HealthEndpoint: Service {
    private let server: LicenseServer
    private let host: String
    private let port: Int
    private let logger: Logger
    private let bound: EventLoopPromise<SocketAddress>

    /// Creates the endpoint for `server` on `host`:`port`.
    public init(server: LicenseServer, host: String, port: Int, logger: Logger) {
        self.server = server
        self.host = host
        self.port = port
        self.logger = logger
        self.bound = MultiThreadedEventLoopGroup.singleton.next().makePromise(of: SocketAddress.self)
    }

    /// The bound address once listening.
    public var localAddress: SocketAddress {
        get async throws { try await self.bound.futureResult.get() }
    }

    public func run() async throws {
        let server = self.server
        let channel: NIOAsyncChannel<any Channel, Never>
        do {
            channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .bind(host: self.host, port: self.port) { child in
                    child.eventLoop.makeCompletedFuture {
                        try child.pipeline.syncOperations.configureHTTPServerPipeline()
                        try child.pipeline.syncOperations.addHandler(HealthHTTPHandler(server: server))
                        return child
                    }
                }
        } catch {
            self.bound.fail(error)
            throw ConfigurationError("cannot listen for metrics on \(self.host):\(self.port): \(error)")
        }
        self.bound.succeed(channel.channel.localAddress!)
        self.logger.info("metrics and health listening", metadata: ["address": "\(channel.channel.localAddress!)"])
        try await channel.executeThenClose { inbound in
            for try await _ in inbound.cancelOnGracefulShutdown() {}
        }
    }
}

/// Answers one HTTP/1.1 request at a time: GET /metrics, /healthz, /readyz.
final class HealthHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let server: LicenseServer
    private var path = ""
    private var method = HTTPMethod.GET
    private var keepAlive = true
    private var authorization: String?

    init(server: LicenseServer) { self.server = server }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch Self.unwrapInboundIn(data) {
        case .head(let head):
            self.path = String(head.uri.split(separator: "?").first ?? "")
            self.method = head.method
            self.keepAlive = head.isKeepAlive
            self.authorization = head.headers.first(name: "Authorization")
        case .body:
            break
        case .end:
            let answer: EventLoopFuture<(HTTPResponseStatus, String, [UInt8])>
            switch (self.method, self.path) {
            case (.GET, "/metrics"):
                answer = self.server.renderMetrics().map { (.ok, "text/plain; version=0.0.4; charset=utf-8", $0) }
            case (.GET, "/healthz"):
                answer = self.server.health().map { alive in
                    alive
                        ? (.ok, "text/plain", Array("ok\n".utf8))
                        : (.serviceUnavailable, "text/plain", Array("serving loop not answering\n".utf8))
                }
            case (.GET, "/readyz"):
                answer = self.server.readiness().map { ready, reason in
                    (ready ? .ok : .serviceUnavailable, "text/plain", Array((reason + "\n").utf8))
                }
            case (.GET, "/cluster/snapshot") where self.server.cluster != nil:
                // Snapshot transfer to a peer (a file read: off the loop).
                let promise = context.eventLoop.makePromise(of: (HTTPResponseStatus, String, [UInt8]).self)
                let (node, authorization) = (self.server.cluster!, self.authorization)
                DispatchQueue.global().async {
                    let (code, type, body) = node.snapshotFile(authorization: authorization)
                    promise.succeed((HTTPResponseStatus(statusCode: code), type, body))
                }
                answer = promise.futureResult
            default:
                answer = context.eventLoop.makeSucceededFuture((.notFound, "text/plain", Array("try /metrics, /healthz or /readyz\n".utf8)))
            }
            let keepAlive = self.keepAlive
            answer.hop(to: context.eventLoop).assumeIsolated().whenComplete { result in
                let (status, type, body) =
                    (try? result.get()) ?? (.serviceUnavailable, "text/plain", Array("serving loop not answering\n".utf8))
                var headers = HTTPHeaders()
                headers.add(name: "Content-Type", value: type)
                headers.add(name: "Content-Length", value: "\(body.count)")
                if !keepAlive { headers.add(name: "Connection", value: "close") }
                context.write(
                    Self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))),
                    promise: nil
                )
                context.write(Self.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: body)))), promise: nil)
                context.writeAndFlush(Self.wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
                    if !keepAlive { context.close(promise: nil) }
                }
            }
        }
    }
}
