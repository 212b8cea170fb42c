import ArgumentParser
import Foundation
import Histogram
import LicenseClient
import LicenseCommandLine
import LicenseCrypto
import LicenseProtocol
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// The load generator of the licence server (`licensed-bench`), apart from the admin CLI.
@main
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "licensed-bench",
        abstract:
            "Load generator: check-out + check-in pairs, heartbeats, status or activate + deactivate pairs over N pipelined connections.",
        discussion: """
            Each connection opens a session, keeps --depth requests in flight, writes every reply's \
            follow-up in the same read burst and flushes once per burst. A pair is a check-out and \
            the check-in of the lease it granted (or an activation of a new fingerprint and its \
            deactivation, with --feature naming the node-locked licence); latency is per request, \
            send to reply. With --rate the load is open-loop: each connection starts operations \
            on a fixed schedule whatever the replies, and latency counts from the scheduled time \
            (no coordinated omission). With --operation sessions each connection is one client at \
            rest: it checks one seat out and holds it, heartbeating at the interval the server \
            announces (or --heartbeat-interval), its first beat at a random point of the first \
            interval; use it with many connections to see what idle sessions cost the server. \
            With --operation checkouts the leases granted are kept (nothing is checked in): with \
            --operations it fills the server with that many leases.
            """
    )

    enum Operation: String, ExpressibleByArgument, CaseIterable {
        case pairs, heartbeat, status, activations, sessions, checkouts
    }

    @OptionGroup var options: ServerOptions
    @Option(help: "Connections.") var connections = 50
    @Option(help: "Requests in flight per connection.") var depth = 1
    @Option(help: "Seconds to run.") var duration: Double = 10
    @Option(help: "Feature to check out.") var feature = "demo.cad"
    @Option(help: "pairs (check-out + check-in), heartbeat, status or activations (activate + deactivate).")
    var operation: Operation = .pairs
    @Option(help: "Event loop threads of the generator.") var threads = 1
    @Option(help: "Open loop: operations per second in all, spread over the connections (0 = closed loop with --depth).")
    var rate: Double = 0
    @Option(help: "Stop after this many operations in all (0 = run for --duration).") var operations = 0
    @Option(help: "With --operation sessions: seconds between heartbeats (default: what the server announces in its Hello reply).")
    var heartbeatInterval: Double?
    @Option(help: "Local addresses to connect from, in turn (e.g. 127.0.0.2,127.0.0.3), for more connections than one address has ports.")
    var sourceAddresses: String?

    func run() async throws {
        let (host, port) = try self.options.endpoint()
        guard self.connections > 0, self.depth > 0, self.duration > 0, self.rate >= 0 else {
            throw CLIError("connections, depth and duration must be positive, and the rate not negative")
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: self.threads)
        let results = BenchResults()
        let loops = Array(group.makeIterator())
        let recorders = Dictionary(uniqueKeysWithValues: loops.map { (ObjectIdentifier($0), BenchRecorder()) })
        let deadline = NIODeadline.now() + .milliseconds(Int64(self.duration * 1000))
        var channels: [any Channel] = []
        let settings = BenchHandler.Settings(
            feature: self.feature,
            depth: self.depth,
            operation: self.operation,
            deadline: deadline,
            token: self.options.token ?? ProcessInfo.processInfo.environment["LICENSED_TOKEN"] ?? "",
            intervalNanoseconds: self.rate > 0 ? Int64(Double(self.connections) / self.rate * 1e9) : 0,
            heartbeatNanoseconds: self.heartbeatInterval.map { Int64($0 * 1e9) },
            quota: self.operations > 0 ? (self.operations + self.connections - 1) / self.connections : 0,
            template: try BenchHandler.template(self.operation, feature: self.feature)
        )
        let sources = try (self.sourceAddresses ?? "").split(separator: ",").map {
            try SocketAddress(ipAddress: String($0.trimmingCharacters(in: .whitespaces)), port: 0)
        }
        let tls = try self.options.tlsSettings()
        let sslContext = try tls?.makeContext()
        let serverName = tls?.serverName(forHost: host)
        let started = DispatchTime.now()
        let startedCPU = processCPUSeconds()
        do {
            // Connected 256 at a time (one at a time, 19,000 connections took 30 s).
            for batchStart in stride(from: 0, to: self.connections, by: 256) {
                var pending: [EventLoopFuture<any Channel>] = []
                for index in batchStart..<min(batchStart + 256, self.connections) {
                    var bootstrap = ClientBootstrap(group: group)
                    if !sources.isEmpty { bootstrap = bootstrap.bind(to: sources[index % sources.count]) }
                    pending.append(
                        bootstrap
                            .channelOption(.socketOption(.tcp_nodelay), value: 1)
                            .channelInitializer { channel in
                                channel.eventLoop.makeCompletedFuture {
                                    try channel.pipeline.syncOperations.addLicenseFraming(
                                        tls: sslContext,
                                        serverName: serverName,
                                        maximumFrameLength: 1 << 20
                                    )
                                    let recorder = recorders[ObjectIdentifier(channel.eventLoop)]!
                                    try channel.pipeline.syncOperations.addHandler(
                                        BenchHandler(settings: settings, recorder: recorder, index: index, of: self.connections)
                                    )
                                }
                            }
                            .connect(host: host, port: port)
                    )
                }
                for future in pending { channels.append(try await future.get()) }
            }
        } catch {
            try? await group.shutdownGracefully()
            throw CLIError("cannot connect to \(host):\(port): \(error)")
        }
        for channel in channels { try? await channel.closeFuture.get() }
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1e9
        let generatorCPU = processCPUSeconds() - startedCPU
        let openLoop = self.rate > 0
        for loop in loops {
            let recorder = recorders[ObjectIdentifier(loop)]!
            try? await loop.submit {
                results.add(
                    operations: recorder.operations,
                    requests: recorder.requests,
                    errors: recorder.errors,
                    histogram: openLoop ? recorder.operationLatency : recorder.histogram
                )
            }.get()
        }
        try? await group.shutdownGracefully()
        var summary = results.summary(elapsed: elapsed)
        summary.generatorCPUSeconds = generatorCPU
        if self.options.json {
            try printJSON(summary.json(operation: self.operation.rawValue, connections: self.connections, depth: self.depth))
        } else {
            summary.print(operation: self.operation.rawValue, connections: self.connections, depth: self.depth)
        }
        if summary.operations == 0 {
            throw CLIError("no operation completed: \(summary.errors.map { "\($0.key) \($0.value)" }.joined(separator: ", "))")
        }
    }
}
