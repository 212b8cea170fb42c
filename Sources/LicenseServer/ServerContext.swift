import Foundation
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
    /// Called (on the log's thread) when the commit log can no longer make changes durable;
    /// nil = the daemon's answer: tell systemd, log, and exit 70 (EX_SOFTWARE) so that systemd
    /// restarts it and recovery runs from what is durable. Replies still waiting are answered
    /// UNAVAILABLE and nothing more is served either way.
    public var onLogFailure: (@Sendable (String) -> Void)?

    /// Creates the context.
    public init(configuration: ServerConfiguration, serverKey: Ed25519PrivateKey, clock: any LicenseClock, logger: Logger) throws {
        self.configuration = configuration
        self.serverKey = serverKey
        self.serverPublicKey = try serverKey.publicKey.rawRepresentation
        self.clock = clock
        self.logger = logger
    }

    /// The commit log failed with `message`: `onLogFailure`, or stop the process.
    func logFailed(_ message: String) {
        if let onLogFailure = self.onLogFailure {
            onLogFailure(message)
            return
        }
        self.notifier.notify("STOPPING=1\nSTATUS=\(message)")
        self.logger.critical("\(message)")
        FileHandle.standardError.write(Data("licensed: \(message)\n".utf8))
        exit(70)
    }
}
