import ArgumentParser
import Foundation
import Histogram
import LicenseClient
import LicenseCrypto
import LicenseProtocol
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Load generator: check-out + check-in pairs, heartbeats, status or activate + deactivate pairs over N pipelined connections.",
        discussion: """
            Each connection opens a session, keeps --depth requests in flight, writes every reply's \
            follow-up in the same read burst and flushes once per burst. A pair is a check-out and \
            the check-in of the lease it granted (or an activation of a new fingerprint and its \
            deactivation, with --feature naming the node-locked licence); latency is per request, \
            send to reply. With --rate the load is open-loop: each connection starts operations \
            on a fixed schedule whatever the replies, and latency counts from the scheduled time \
            (no coordinated omission).
            """
    )

    enum Operation: String, ExpressibleByArgument, CaseIterable {
        case pairs, heartbeat, status, activations
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

    func run() async throws {
        let (host, port) = try self.options.endpoint()
        guard self.connections > 0, self.depth > 0, self.duration > 0, self.rate >= 0 else {
            throw CLIError("connections, depth and duration must be positive, and the rate not negative")
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: self.threads)
        let results = BenchResults()
        let deadline = NIODeadline.now() + .milliseconds(Int64(self.duration * 1000))
        var channels: [any Channel] = []
        let settings = BenchHandler.Settings(
            feature: self.feature,
            depth: self.depth,
            operation: self.operation,
            deadline: deadline,
            token: self.options.token ?? ProcessInfo.processInfo.environment["LICENSED_TOKEN"] ?? "",
            intervalNanoseconds: self.rate > 0 ? Int64(Double(self.connections) / self.rate * 1e9) : 0
        )
        let tls = try self.options.tlsSettings()
        let sslContext = try tls?.makeContext()
        let serverName = tls?.serverName(forHost: host)
        let started = DispatchTime.now()
        do {
            for _ in 0..<self.connections {
                let channel = try await ClientBootstrap(group: group)
                    .channelOption(.socketOption(.tcp_nodelay), value: 1)
                    .channelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture {
                            if let sslContext {
                                try channel.pipeline.syncOperations.addHandler(
                                    NIOSSLClientHandler(context: sslContext, serverHostname: serverName)
                                )
                            }
                            try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder(maximumFrameLength: 1 << 20)))
                            try channel.pipeline.syncOperations.addHandler(BenchHandler(settings: settings, results: results))
                        }
                    }
                    .connect(host: host, port: port).get()
                channels.append(channel)
            }
        } catch {
            try? await group.shutdownGracefully()
            throw CLIError("cannot connect to \(host):\(port): \(error)")
        }
        for channel in channels { try? await channel.closeFuture.get() }
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1e9
        try? await group.shutdownGracefully()
        let summary = results.summary(elapsed: elapsed)
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

/// Latencies and counts from every connection, merged.
final class BenchResults: Sendable {
    struct Summary {
        var operations: UInt64
        var requests: UInt64
        var errors: [String: UInt64]
        var elapsed: Double
        var histogram: Histogram<UInt64>

        func percentileMicros(_ p: Double) -> Double { Double(self.histogram.valueAtPercentile(p)) / 1000 }

        func json(operation: String, connections: Int, depth: Int) -> [String: Any] {
            [
                "operation": operation, "connections": connections, "depth": depth, "seconds": self.elapsed,
                "operations": self.operations, "operations_per_second": Double(self.operations) / self.elapsed,
                "requests_per_second": Double(self.requests) / self.elapsed, "errors": self.errors,
                "latency_us": [
                    "p50": self.percentileMicros(50), "p90": self.percentileMicros(90), "p99": self.percentileMicros(99),
                    "p99.9": self.percentileMicros(99.9), "max": Double(self.histogram.max) / 1000,
                ],
            ]
        }

        func print(operation: String, connections: Int, depth: Int) {
            Swift.print(String(format: "%@: %d connections x depth %d, %.1f s", operation, connections, depth, self.elapsed))
            Swift.print(
                String(
                    format: "  %.0f %@/s (%.0f requests/s), %llu errors",
                    Double(self.operations) / self.elapsed,
                    operation == "pairs" ? "pairs" : "ops",
                    Double(self.requests) / self.elapsed,
                    self.errors.values.reduce(0, +)
                )
            )
            Swift.print(
                String(
                    format: "  latency per request: p50 %.0f µs, p90 %.0f µs, p99 %.0f µs, p99.9 %.0f µs, max %.0f µs",
                    self.percentileMicros(50),
                    self.percentileMicros(90),
                    self.percentileMicros(99),
                    self.percentileMicros(99.9),
                    Double(self.histogram.max) / 1000
                )
            )
            for (code, count) in self.errors.sorted(by: { $0.key < $1.key }) { Swift.print("  error \(code): \(count)") }
        }
    }

    private let state = NIOLockedValueBox(
        (
            operations: UInt64(0), requests: UInt64(0), errors: [String: UInt64](),
            histogram: Histogram<UInt64>(highestTrackableValue: 60_000_000_000)
        )
    )

    func add(operations: UInt64, requests: UInt64, errors: [String: UInt64], histogram: Histogram<UInt64>) {
        self.state.withLockedValue { state in
            state.operations += operations
            state.requests += requests
            state.errors.merge(errors, uniquingKeysWith: +)
            state.histogram.add(histogram)
        }
    }

    func summary(elapsed: Double) -> Summary {
        self.state.withLockedValue {
            Summary(operations: $0.operations, requests: $0.requests, errors: $0.errors, elapsed: elapsed, histogram: $0.histogram)
        }
    }
}

/// One benchmark connection: Hello, then `depth` requests in flight until the deadline.
final class BenchHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    struct Settings: Sendable {
        var feature: String
        var depth: Int
        var operation: Bench.Operation
        var deadline: NIODeadline
        var token: String
        /// Open loop: one operation started per connection every this many ns (0 = closed loop).
        var intervalNanoseconds: Int64
    }

    private let settings: Settings
    private let results: BenchResults
    private var nextID: UInt64 = 1
    private var sentAt: [UInt64: UInt64] = [:]
    private var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000_000)
    /// Open loop: per operation, from when it was due to its last reply.
    private var operationLatency = Histogram<UInt64>(highestTrackableValue: 60_000_000_000)
    private var operations: UInt64 = 0
    private var requests: UInt64 = 0
    private var errors: [String: UInt64] = [:]
    private var stopping = false
    /// Open loop: when each operation was due, by the request id that started it.
    private var scheduledAt: [UInt64: UInt64] = [:]
    private var ticker: RepeatedTask?

    init(settings: Settings, results: BenchResults) {
        self.settings = settings
        self.results = results
    }

    func channelActive(context: ChannelHandlerContext) {
        var hello = Licensed_V1_ClientMessage.OneOf_Body.hello(.init())
        if case .hello(var body) = hello {
            body.protocolVersion = .protocolVersion1
            body.clientName = "licensectl-bench"
            body.user = "bench"
            body.token = self.settings.token
            hello = .hello(body)
        }
        self.send(context, hello, timed: false)
        context.flush()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = Self.unwrapInboundIn(data)
        guard let reply = try? frame.decodeMessage(as: Licensed_V1_ServerMessage.self) else {
            self.errors["UNDECODABLE", default: 0] += 1
            context.close(promise: nil)
            return
        }
        if reply.requestID == 0 { return }  // pushed event
        let now = DispatchTime.now().uptimeNanoseconds
        if let sent = self.sentAt.removeValue(forKey: reply.requestID) {
            _ = self.histogram.record(now - sent)
            self.requests += 1
        }
        switch reply.body {
        case .hello:
            if self.settings.intervalNanoseconds > 0 {
                let interval = TimeAmount.nanoseconds(self.settings.intervalNanoseconds)
                let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
                self.ticker = context.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
                    let (handler, context) = loopBound.value
                    handler.issue(context, scheduled: DispatchTime.now().uptimeNanoseconds)
                    context.flush()
                }
            } else {
                for _ in 0..<self.settings.depth { self.issue(context) }
            }
            return
        case .checkOut(let granted):
            // The second half of the pair: return the lease just granted.
            var checkIn = Licensed_V1_CheckInRequest()
            checkIn.leaseID = granted.leaseID
            self.follow(context, reply.requestID, with: .checkIn(checkIn))
            return
        case .activate(let activated):
            var deactivate = Licensed_V1_DeactivateRequest()
            deactivate.activationID = activated.activationID
            self.follow(context, reply.requestID, with: .deactivate(deactivate))
            return
        case .checkIn, .heartbeat, .status, .deactivate:
            self.operations += 1
            if let due = self.scheduledAt.removeValue(forKey: reply.requestID) {
                _ = self.operationLatency.record(now - due)
            }
        case .error(let error):
            self.errors["\(error.code)", default: 0] += 1
            if error.code == .invalidArgument || error.code == .unauthenticated { self.stopping = true }
        default:
            break
        }
        self.scheduledAt[reply.requestID] = nil
        if self.settings.intervalNanoseconds == 0 { self.issue(context) }
    }

    /// Sends the second request of an operation, carrying over when the operation was due.
    private func follow(_ context: ChannelHandlerContext, _ first: UInt64, with body: Licensed_V1_ClientMessage.OneOf_Body) {
        let due = self.scheduledAt.removeValue(forKey: first)
        let id = self.send(context, body, timed: true)
        if let due { self.scheduledAt[id] = due }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
        if self.stopping && self.sentAt.isEmpty { context.close(promise: nil) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.ticker?.cancel()
        self.results.add(
            operations: self.operations,
            requests: self.requests,
            errors: self.errors,
            histogram: self.settings.intervalNanoseconds > 0 ? self.operationLatency : self.histogram
        )
        context.fireChannelInactive()
    }

    private func issue(_ context: ChannelHandlerContext, scheduled: UInt64? = nil) {
        if NIODeadline.now() >= self.settings.deadline {
            self.stopping = true
            self.ticker?.cancel()
            if self.sentAt.isEmpty { context.close(promise: nil) }
        }
        guard !self.stopping else { return }
        let id: UInt64
        switch self.settings.operation {
        case .pairs:
            var checkOut = Licensed_V1_CheckOutRequest()
            checkOut.feature = self.settings.feature
            id = self.send(context, .checkOut(checkOut), timed: true)
        case .heartbeat:
            id = self.send(context, .heartbeat(.init()), timed: true)
        case .status:
            id = self.send(context, .status(.init()), timed: true)
        case .activations:
            var activate = Licensed_V1_ActivateRequest()
            activate.licenseID = self.settings.feature
            activate.fingerprint = [SecureRandom.bytes(16).hexString]
            activate.machineName = "bench"
            id = self.send(context, .activate(activate), timed: true)
        }
        if let scheduled { self.scheduledAt[id] = scheduled }
    }

    @discardableResult
    private func send(_ context: ChannelHandlerContext, _ body: Licensed_V1_ClientMessage.OneOf_Body, timed: Bool) -> UInt64 {
        var message = Licensed_V1_ClientMessage()
        message.requestID = self.nextID
        self.nextID += 1
        message.body = body
        var buffer = context.channel.allocator.buffer(capacity: 64)
        _ = try? buffer.writeFrame(message)
        self.sentAt[message.requestID] = DispatchTime.now().uptimeNanoseconds
        context.write(Self.wrapOutboundOut(buffer), promise: nil)
        return message.requestID
    }
}
