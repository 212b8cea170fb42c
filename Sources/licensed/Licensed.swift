import ArgumentParser
import Foundation
import LicenseAudit
import LicenseClusterNode
import LicenseConsole
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
            variables, then flags (a flag wins). --demo runs with no configuration at all.

            OPTIONS OF THE SERVER (flag, environment variable, what it sets; the YAML key is the \
            name with underscores):
            """ + "\n" + ServerConfiguration.optionsHelp
    )

    @Option(help: "YAML configuration file.")
    var config: String?

    @Flag(help: "Run on an embedded default: a throwaway issuer key, a demo licence, state under ./demo-state.")
    var demo = false

    @Flag(help: "Print this machine's host ids (for a licence's server_hostids) and exit.")
    var printHostIds = false

    @Flag(
        help: """
            Start even when recovery cannot prove it holds every acknowledged change (damaged \
            snapshot or log): serve without the lost changes. Audited; never a default, not a config key.
            """
    )
    var acceptDataLoss = false

    @Argument(
        parsing: .allUnrecognized,
        help: ArgumentHelp("Options of the server, as --<option> VALUE: listed below.", valueName: "option")
    )
    var options: [String] = []

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
        let arguments = self.options
        try ServerConfiguration.checkFlags(arguments)
        var overrides: [String: String] = [:]
        if self.demo {
            let directory = ServerConfiguration.flagValue("state_dir", in: arguments) ?? "demo-state"
            let setup = try DemoSetup.prepare(directory: directory, at: clock.nowMs())
            demoLicense = setup
            overrides = setup.configuration
        } else if yaml == nil && ServerConfiguration.flagValue("license_paths", in: arguments) == nil
            && ProcessInfo.processInfo.environment["LICENSED_LICENSE_PATHS"] == nil && !self.printHostIds
        {
            throw ConfigurationError("no licences configured: give --config FILE (or --license-paths and --trusted-keys), or run --demo")
        }
        let configuration = try ServerConfiguration.load(
            yaml: yaml,
            environment: ProcessInfo.processInfo.environment,
            arguments: arguments,
            overrides: overrides
        )
        let hostComponents = MachineFingerprint.components(operatorSupplied: configuration.hostID, environment: [:])
        let hostEnvironment = HostEnvironment.detect()
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

        let loader = try LicenseLoader(configuration: configuration, hostComponents: hostComponents, environment: hostEnvironment.report)
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
        logger.info("running on: \(hostEnvironment)", metadata: ["kinds": "\(hostEnvironment.kinds.joined(separator: ","))"])

        let keyPath =
            configuration.serverKey.isEmpty
            ? (configuration.stateDir as NSString).appendingPathComponent("server-key.pem") : configuration.serverKey
        let serverKey = try ServerKeyStore.loadOrCreate(at: keyPath)
        var context = try ServerContext(configuration: configuration, serverKey: serverKey, clock: clock, logger: logger)
        context.notifier = SystemdNotifier(environment: ProcessInfo.processInfo.environment)
        // Reload: read the config file again (with the same environment and flags), then its
        // trusted keys and licence files. Other options take effect at the next start.
        let configPath = self.config
        let reloadOverrides = overrides
        context.reloader = {
            var yaml: String? = nil
            if let configPath { yaml = try String(contentsOfFile: configPath, encoding: .utf8) }
            let fresh = try ServerConfiguration.load(
                yaml: yaml,
                environment: ProcessInfo.processInfo.environment,
                arguments: arguments,
                overrides: reloadOverrides
            )
            let loader = try LicenseLoader(configuration: fresh, hostComponents: hostComponents, environment: hostEnvironment.report)
            return try loader.load(paths: fresh.licensePaths, at: clock.nowMs())
        }
        // A node of a cluster when etcd endpoints are configured: it opens the cluster's log.
        let cluster = configuration.clustered ? try ClusterNode(context: context) : nil
        let server = try LicenseServer(
            context: context,
            licenses: loaded,
            log: .local(acceptDataLoss: self.acceptDataLoss),
            cluster: cluster
        )
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if let metrics = try configuration.metricsAddress() {
            // Listed first: started before the protocol listener, stopped after it.
            services.append(.init(service: OperatorEndpoint(server: server, host: metrics.host, port: metrics.port, logger: logger)))
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
                    let scheme = configuration.operatorTLSCertificate.isEmpty ? "http" : "https"
                    let console = try? configuration.metricsAddress().map { "\(scheme)://\($0.host):\($0.port)/" }
                    demoLicense.printInstructions(
                        port: address.port ?? configuration.port,
                        host: configuration.listenHost,
                        console: console ?? nil
                    )
                }
            }
            // The service group ends on SIGTERM/SIGINT (graceful shutdown); then the helpers stop too.
            try await group.run()
            tasks.cancelAll()
        }
    }
}
