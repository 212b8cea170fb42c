public import LicenseCore
public import LicenseCrypto
public import Logging

/// What every session handler needs to know about the server; immutable and shared.
public struct ServerContext: Sendable {
    /// This software's version, sent in HelloResponse.
    public static let serverVersion = "0.1.0"

    /// The effective configuration.
    public var configuration: ServerConfiguration
    /// The server's own key (its public half goes to clients).
    public var serverKey: Ed25519PrivateKey
    /// The server's public key, 32 raw bytes.
    public var serverPublicKey: [UInt8]
    /// Where "now" comes from.
    public var clock: any LicenseClock
    /// Logger with the server's metadata.
    public var logger: Logger
    /// The server's metrics.
    public var metrics = ServerMetrics()
    /// Tells systemd about readiness, reloads, shutdown and liveness (no-op outside systemd).
    public var notifier = SystemdNotifier(environment: [:])
    /// Rereads the configuration's licence files and trusted keys (reload); nil = not possible.
    public var reloader: (@Sendable () async throws -> LicenseLoadResult)?

    /// Creates the context.
    public init(configuration: ServerConfiguration, serverKey: Ed25519PrivateKey, clock: any LicenseClock, logger: Logger) throws {
        self.configuration = configuration
        self.serverKey = serverKey
        self.serverPublicKey = try serverKey.publicKey.rawRepresentation
        self.clock = clock
        self.logger = logger
    }
}
