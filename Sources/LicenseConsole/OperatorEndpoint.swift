import Dispatch
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
public import LicenseServer
public import Logging
public import NIOCore
import NIOPosix
import NIOSSL
public import ServiceLifecycle

/// The operator's HTTP listener (default 127.0.0.1:9270), apart from the licence protocol, on
/// Hummingbird: `/metrics` (Prometheus text), `/healthz` (the serving loop answers), `/readyz`
/// (listening with a licence that grants; the reason in the body), on a node of a cluster
/// `/cluster/snapshot` (a peer's snapshot transfer), and the web console (`Console`) when a token
/// that may sign in is configured.
public struct OperatorEndpoint: Service {
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

    /// The routes, for the application and for tests.
    func router() throws -> Router<ConsoleContext> {
        let router = Router(context: ConsoleContext.self)
        if Console.isEnabled(self.server.configuration) {
            try Console(server: self.server, secure: !self.server.configuration.operatorTLSCertificate.isEmpty).addRoutes(to: router)
        }
        let server = self.server
        router.get("metrics") { _, _ in
            Self.text(try await server.renderMetrics().get(), type: "text/plain; version=0.0.4; charset=utf-8")
        }
        router.get("healthz") { _, _ in
            let alive = (try? await server.health().get()) ?? false
            return Self.text(Array((alive ? "ok\n" : "serving loop not answering\n").utf8), status: alive ? .ok : .serviceUnavailable)
        }
        router.get("readyz") { _, _ in
            guard let (ready, reason) = try? await server.readiness().get() else {
                return Self.text(Array("serving loop not answering\n".utf8), status: .serviceUnavailable)
            }
            return Self.text(Array((reason + "\n").utf8), status: ready ? .ok : .serviceUnavailable)
        }
        router.get("cluster/snapshot") { request, _ in
            guard let cluster = server.cluster else { return Self.text(Array("not a node of a cluster\n".utf8), status: .notFound) }
            let authorization = request.headers[.authorization]
            // A file read: off the event loop.
            let (code, type, body) = await withCheckedContinuation { continuation in
                DispatchQueue.global().async { continuation.resume(returning: cluster.snapshotFile(authorization: authorization)) }
            }
            return Self.text(body, type: type, status: .init(code: code))
        }
        return router
    }

    /// HTTP/1.1, with TLS 1.2+ when `operator_tls_certificate` is set.
    static func serverBuilder(certificate: String, privateKey: String) throws -> HTTPServerBuilder {
        guard !certificate.isEmpty else { return .http1() }
        return try .tls(.http1(), tlsConfiguration: LicenseServer.serverTLS(certificate: certificate, privateKey: privateKey))
    }

    static func text(_ body: [UInt8], type: String = "text/plain", status: HTTPResponse.Status = .ok) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = type
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }

    public func run() async throws {
        let bound = self.bound
        let builder: HTTPServerBuilder
        do {
            builder = try Self.serverBuilder(
                certificate: self.server.configuration.operatorTLSCertificate,
                privateKey: self.server.configuration.operatorTLSPrivateKey
            )
        } catch {
            let message = "cannot use operator_tls_certificate / operator_tls_private_key: \(error)"
            bound.fail(ConfigurationError(message))
            throw ConfigurationError(message)
        }
        let application = Application(
            router: try self.router(),
            server: builder,
            configuration: .init(address: .hostname(self.host, port: self.port), serverName: nil),
            onServerRunning: { channel in
                if let address = channel.localAddress { bound.succeed(address) }
            },
            logger: self.logger
        )
        do {
            try await application.run()
        } catch {
            let message = "cannot listen for metrics on \(self.host):\(self.port): \(error)"
            bound.fail(ConfigurationError(message))
            throw ConfigurationError(message)
        }
        bound.fail(CancellationError())  // stopped before it listened (a no-op once bound)
    }
}
