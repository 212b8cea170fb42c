import ArgumentParser
import Foundation
import LicenseAudit
import LicenseCore
import LicenseCrypto
import LicenseHost
import LicenseProtocol
import LicenseServer
import LicenseStore
import Logging
import NIOCore
import ServiceLifecycle
import UnixSignals

/// The licence server daemon.
@main
struct Licensed: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "licensed",
        abstract: "Floating-licence server: grants seats that signed licence files allow.",
        discussion: """
            Options come from the YAML file given by --config, then LICENSED_<OPTION> environment \
            variables, then the flags below (a flag wins). --demo runs with no configuration at all.
            """
    )

    @Option(help: "YAML configuration file.")
    var config: String?

    @Flag(help: "Run on an embedded default: a throwaway issuer key, a demo licence, state under ./demo-state.")
    var demo = false

    @Flag(help: "Print this machine's host ids (for a licence's server_hostids) and exit.")
    var printHostIds = false

    @Option(help: "Address the protocol listener binds to.") var listenHost: String?
    @Option(help: "TCP port of the protocol listener.") var port: String?
    @Option(help: "Largest frame accepted from a client, in bytes.") var maxFrameBytes: String?
    @Option(help: "Licence files or directories of *.lic files, comma-separated.") var licensePaths: String?
    @Option(help: "Trusted issuer keys as id=path.pem, comma-separated.") var trustedKeys: String?
    @Option(help: "Directory for the server key, log and snapshots.") var stateDir: String?
    @Option(help: "The server's Ed25519 key PEM (default <state-dir>/server-key.pem).") var serverKey: String?
    @Option(help: "Operator-supplied host identity component (containers, VMs).") var hostId: String?
    @Option(help: "trace, debug, info, notice, warning, error or critical.") var logLevel: String?
    @Option(help: "How often clients heartbeat, in ms.") var heartbeatIntervalMs: String?
    @Option(help: "Lease lifetime without a heartbeat, in ms (at least 10000).") var leaseTtlMs: String?
    @Option(help: "Time a connection has to say Hello, in ms.") var helloTimeoutMs: String?
    @Option(help: "How often lapsed leases are looked for, in ms.") var reaperIntervalMs: String?
    @Option(help: "host:port for /metrics, /healthz and /readyz, or off.") var metricsListen: String?
    @Option(help: "Groups as /path=member,member,@host;/path2=...") var groups: String?
    @Option(help: "Server-side options per feature, as JSON.") var restrictions: String?
    @Option(help: "Most check-outs waiting per feature.") var maxQueueLength: String?
    @Option(help: "Most open connections.") var maxConnections: String?
    @Option(help: "Most open connections from one network address.") var maxConnectionsPerAddress: String?
    @Option(help: "Most leases one session may hold.") var maxLeasesPerSession: String?
    @Option(help: "Reclaim activations not seen for this many days.") var activationInactivityDays: String?
    @Option(help: "Part for activations that name no licence or feature.") var defaultPart: String?
    @Option(help: "Part once the default part is used up (overage-allowing policy only).") var overagePart: String?
    @Option(help: "Offline validity of activation certificates, in days.") var activationValidityDays: String?
    @Option(help: "always (fsync before acknowledging) or none (tests and demos only).") var sync: String?
    @Option(help: "Snapshot after this many write-ahead log records.") var snapshotEveryRecords: String?
    @Option(help: "Snapshot after this many write-ahead log bytes.") var snapshotEveryBytes: String?
    @Option(help: "Snapshots kept with the log since the oldest of them (at least 2).") var snapshotsRetained: String?
    @Flag(
        help: """
            Start even when recovery cannot prove it holds every acknowledged change (damaged \
            snapshot or log): serve without the lost changes. Audited; never a default, not a config key.
            """
    )
    var acceptDataLoss = false
    @Option(help: "Access tokens as role:sha256hex, comma-separated (see licensectl token).") var tokens: String?
    @Option(help: "Refuse sessions that present no token (true/false).") var requireClientToken: String?
    @Option(help: "Directory of the audit trail (default <state-dir>/audit).") var auditDir: String?
    @Option(help: "Utilisation thresholds in percent, comma-separated (default 90,100).") var utilisationThresholds: String?
    @Option(help: "Start a new audit file past this size, in bytes.") var auditMaxFileBytes: String?
    @Option(help: "gzip rotated audit files (true/false, default true).") var auditCompress: String?
    @Option(help: "Most audit files kept, the current one included (0 = all).") var auditRetentionFiles: String?
    @Option(help: "Most bytes of audit files kept on disk (0 = no limit).") var auditRetentionBytes: String?
    @Option(help: "Remove audit files last written more than this many days ago (0 = keep).") var auditRetentionDays: String?
    @Option(help: "PEM certificate chain: TLS on the protocol listener (default off).") var tlsCertificate: String?
    @Option(help: "PEM private key of --tls-certificate.") var tlsPrivateKey: String?
    @Option(help: "PEM CA of client certificates; set = clients must present one (mTLS).") var tlsClientCa: String?
    @Option(help: "Local admin Unix socket (grants admin), or off.") var adminSocket: String?
    @Option(help: "Refused tokens per address per minute before answers are slowed.") var badTokenLimit: String?
    @Option(help: "Delay of a refused Hello past --bad-token-limit, in ms.") var badTokenDelayMs: String?

    private var flagValues: [String: String] {
        let pairs: [(String, String?)] = [
            ("listen_host", self.listenHost), ("port", self.port), ("max_frame_bytes", self.maxFrameBytes),
            ("license_paths", self.licensePaths), ("trusted_keys", self.trustedKeys), ("state_dir", self.stateDir),
            ("server_key", self.serverKey), ("host_id", self.hostId), ("log_level", self.logLevel),
            ("heartbeat_interval_ms", self.heartbeatIntervalMs), ("lease_ttl_ms", self.leaseTtlMs),
            ("hello_timeout_ms", self.helloTimeoutMs), ("reaper_interval_ms", self.reaperIntervalMs),
            ("metrics_listen", self.metricsListen),
            ("groups", self.groups), ("restrictions", self.restrictions), ("max_queue_length", self.maxQueueLength),
            ("max_connections", self.maxConnections), ("max_connections_per_address", self.maxConnectionsPerAddress),
            ("max_leases_per_session", self.maxLeasesPerSession),
            ("activation_inactivity_days", self.activationInactivityDays),
            ("default_part", self.defaultPart), ("overage_part", self.overagePart),
            ("activation_validity_days", self.activationValidityDays),
            ("sync", self.sync), ("snapshot_every_records", self.snapshotEveryRecords), ("snapshot_every_bytes", self.snapshotEveryBytes),
            ("snapshots_retained", self.snapshotsRetained),
            ("tokens", self.tokens), ("require_client_token", self.requireClientToken), ("audit_dir", self.auditDir),
            ("utilisation_thresholds", self.utilisationThresholds),
            ("audit_max_file_bytes", self.auditMaxFileBytes),
            ("audit_compress", self.auditCompress), ("audit_retention_files", self.auditRetentionFiles),
            ("audit_retention_bytes", self.auditRetentionBytes), ("audit_retention_days", self.auditRetentionDays),
            ("tls_certificate", self.tlsCertificate),
            ("tls_private_key", self.tlsPrivateKey), ("tls_client_ca", self.tlsClientCa), ("admin_socket", self.adminSocket),
            ("bad_token_limit", self.badTokenLimit), ("bad_token_delay_ms", self.badTokenDelayMs),
        ]
        return Dictionary(uniqueKeysWithValues: pairs.compactMap { name, value in value.map { (name, $0) } })
    }

    func run() async throws {
        do {
            try await self.serve()
        } catch let error as ConfigurationError {
            FileHandle.standardError.write(Data("licensed: \(error.message)\n".utf8))
            throw ExitCode(78)  // EX_CONFIG
        } catch let error as RecoveryRefusal {
            FileHandle.standardError.write(Data("licensed: \(error.message)\n".utf8))
            throw ExitCode(65)  // EX_DATAERR: the state on disk is damaged; nothing is served
        }
    }

    private func serve() async throws {
        var yaml: String? = nil
        if let path = self.config {
            do { yaml = try String(contentsOfFile: path, encoding: .utf8) } catch {
                throw ConfigurationError("cannot read the config file \(path): \(error.localizedDescription)")
            }
        }
        let clock = SystemClock()
        var demoLicense: DemoSetup?
        var flags = self.flagValues
        if self.demo {
            let setup = try DemoSetup.prepare(directory: self.stateDir ?? "demo-state", at: clock.nowMs())
            demoLicense = setup
            for (name, value) in setup.configuration where flags[name] == nil { flags[name] = value }
        } else if yaml == nil && flags["license_paths"] == nil && ProcessInfo.processInfo.environment["LICENSED_LICENSE_PATHS"] == nil
            && !self.printHostIds
        {
            throw ConfigurationError("no licences configured: give --config FILE (or --license-paths and --trusted-keys), or run --demo")
        }
        let configuration = try ServerConfiguration.load(yaml: yaml, environment: ProcessInfo.processInfo.environment, flags: flags)
        let hostComponents = MachineFingerprint.components(operatorSupplied: configuration.hostID, environment: [:])
        if self.printHostIds {
            for component in hostComponents { print("\(component.id)  \(component.kind)") }
            return
        }

        let level = Logger.Level(rawValue: configuration.logLevel) ?? .info
        // Under systemd (stderr is the journal) the journal stamps time and priority itself.
        let journal = ProcessInfo.processInfo.environment["JOURNAL_STREAM"] != nil
        LoggingSystem.bootstrap { label in
            if journal { return JournalLogHandler(label: label, logLevel: level) }
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "licensed")

        let loader = try LicenseLoader(configuration: configuration, hostComponents: hostComponents)
        let loaded = try loader.load(paths: configuration.licensePaths, at: clock.nowMs())
        for rejected in loaded.rejected { logger.error("\(rejected)") }
        for license in loaded.effective {
            logger.info(
                "licence loaded",
                metadata: [
                    "license": "\(license.license.id)", "file": "\(license.file)", "block": "\(license.block)",
                    "features": "\(license.license.features.map(\.name).joined(separator: ","))",
                ]
            )
        }
        logger.info("\(loaded.effective.count) licence(s) loaded, \(loaded.rejected.count) rejected")

        let keyPath =
            configuration.serverKey.isEmpty
            ? (configuration.stateDir as NSString).appendingPathComponent("server-key.pem") : configuration.serverKey
        let serverKey = try ServerKeyStore.loadOrCreate(at: keyPath)
        var context = try ServerContext(configuration: configuration, serverKey: serverKey, clock: clock, logger: logger)
        context.notifier = SystemdNotifier(environment: ProcessInfo.processInfo.environment)
        // Reload: read the config file again (with the same environment and flags), then its
        // trusted keys and licence files. Other options take effect at the next start.
        let configPath = self.config
        let reloadFlags = flags
        context.reloader = {
            var yaml: String? = nil
            if let configPath { yaml = try String(contentsOfFile: configPath, encoding: .utf8) }
            let fresh = try ServerConfiguration.load(yaml: yaml, environment: ProcessInfo.processInfo.environment, flags: reloadFlags)
            let loader = try LicenseLoader(configuration: fresh, hostComponents: hostComponents)
            return try loader.load(paths: fresh.licensePaths, at: clock.nowMs())
        }
        let server = try LicenseServer(context: context, licenses: loaded, log: .local(acceptDataLoss: self.acceptDataLoss))
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if let metrics = try configuration.metricsAddress() {
            // Listed first: started before the protocol listener, stopped after it.
            services.append(.init(service: HealthEndpoint(server: server, host: metrics.host, port: metrics.port, logger: logger)))
        }
        services.append(.init(service: server))
        let group = ServiceGroup(configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask {
                // SIGHUP (systemctl reload): reread licences without dropping a lease.
                for await _ in await UnixSignalsSequence(trapping: .sighup) {
                    do {
                        let result = try await server.reload()
                        logger.info("reload done: \(result.loaded) licence(s) loaded, \(result.rejected.count) rejected")
                    } catch {
                        logger.error("reload failed, the previous licences stay in force: \(error)")
                    }
                }
            }
            if let demoLicense {
                tasks.addTask {
                    guard let address = try? await server.localAddress else { return }
                    demoLicense.printInstructions(port: address.port ?? configuration.port, host: configuration.listenHost)
                }
            }
            // The service group ends on SIGTERM/SIGINT (graceful shutdown); then the helpers stop too.
            try await group.run()
            tasks.cancelAll()
        }
    }
}
