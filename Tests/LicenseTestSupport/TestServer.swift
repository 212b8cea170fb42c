public import LicenseCore
import LicenseCrypto
public import LicenseServer
import Logging
import NIOCore
import ServiceLifecycle

/// Runs a real `LicenseServer` on 127.0.0.1 and a free port for the duration of `body`, then shuts
/// it down gracefully through its `ServiceGroup`, as the daemon does on SIGTERM.
public func withTestServer<T: Sendable>(
    configure: (inout ServerConfiguration) -> Void = { _ in },
    licenses: [VerifiedLicense] = [],
    clock: any LicenseClock = ManualClock(startMs: 1_790_000_000_000),
    stateDirectory: String? = nil,
    reloader: (@Sendable () async throws -> LicenseLoadResult)? = nil,
    log: CommitLogSource = .local(),
    onLogFailure: (@Sendable (String) -> Void)? = nil,
    _ body: @Sendable (LicenseServer, Int) async throws -> T
) async throws -> T {
    let scratch = try TemporaryDirectory()
    var configuration = ServerConfiguration()
    configuration.listenHost = "127.0.0.1"
    configuration.port = 0
    configuration.stateDir = stateDirectory ?? scratch.path("state")
    configuration.adminSocket = "off"
    configure(&configuration)
    var logger = Logger(label: "test-server")
    logger.logLevel = .critical
    var context = try ServerContext(configuration: configuration, serverKey: try Ed25519PrivateKey.generate(), clock: clock, logger: logger)
    context.reloader = reloader
    context.onLogFailure = onLogFailure
    var loaded = LicenseLoadResult()
    loaded.accepted = licenses
    let server = try LicenseServer(context: context, licenses: loaded, log: log)
    let group = ServiceGroup(configuration: .init(services: [.init(service: server)], logger: logger))
    return try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        let port = try await server.localAddress.port!
        do {
            let result = try await body(server, port)
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            withExtendedLifetime(scratch) {}
            return result
        } catch {
            await group.triggerGracefulShutdown()
            try? await tasks.waitForAll()
            throw error
        }
    }
}
