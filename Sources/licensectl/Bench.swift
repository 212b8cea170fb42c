import ArgumentParser
import Foundation
import Histogram
import LicenseClient
import LicenseCrypto
import LicenseProtocol
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

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
            quota: self.operations > 0 ? (self.operations + self.connections - 1) / self.connections : 0
        )
        let sources = try (self.sourceAddresses ?? "").split(separator: ",").map {
            try SocketAddress(ipAddress: String($0.trimmingCharacters(in: .whitespaces)), port: 0)
        }
        let tls = try self.options.tlsSettings()
        let sslContext = try tls?.makeContext()
        let serverName = tls?.serverName(forHost: host)
        let started = DispatchTime.now()
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
                                    try channel.pipeline.syncOperations.addHandler(BenchHandler(settings: settings, recorder: recorder))
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

/// Latencies and counts of every connection on one event loop, shared by its handlers (one
/// thread, so no lock): a connection costs no histogram of its own (two 60-second histograms per
/// connection were 440 KiB each, 8 GiB of generator at 19,000 sessions). Touched only on its
/// loop until the run is over, hence `@unchecked Sendable`.
final class BenchRecorder: @unchecked Sendable {
    var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000_000)
    /// Open loop: per operation, from when it was due to its last reply.
    var operationLatency = Histogram<UInt64>(highestTrackableValue: 60_000_000_000)
    var operations: UInt64 = 0
    var requests: UInt64 = 0
    var errors: [String: UInt64] = [:]
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
        /// Sessions: heartbeat period (nil = the server's announced interval).
        var heartbeatNanoseconds: Int64?
        /// Operations this connection starts at most (0 = no limit).
        var quota: Int
    }

    private let settings: Settings
    /// Shared with every connection on this event loop.
    private let recorder: BenchRecorder
    private var nextID: UInt64 = 1
    private var sentAt: [UInt64: UInt64] = [:]
    private var stopping = false
    /// Operations started so far (open loop: the next is due at start + (started + 1) × interval).
    private var started = 0
    /// Open loop: when each operation was due, by the request id that started it.
    private var scheduledAt: [UInt64: UInt64] = [:]
    private var ticker: RepeatedTask?
    /// Sessions: the heartbeat period (an empty Heartbeat renews every lease of the session).
    private var heartbeatNanoseconds: Int64 = 0
    /// Sessions: the seat held, returned at the end.
    private var heldLease: Data?

    init(settings: Settings, recorder: BenchRecorder) {
        self.settings = settings
        self.recorder = recorder
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
            self.recorder.errors["UNDECODABLE", default: 0] += 1
            context.close(promise: nil)
            return
        }
        if reply.requestID == 0 { return }  // pushed event
        let now = DispatchTime.now().uptimeNanoseconds
        if let sent = self.sentAt.removeValue(forKey: reply.requestID) {
            _ = self.recorder.histogram.record(now - sent)
            self.recorder.requests += 1
        }
        switch reply.body {
        case .hello(let hello) where self.settings.operation == .sessions:
            // Hold one seat, then beat at the session's interval from a random phase.
            self.heartbeatNanoseconds = self.settings.heartbeatNanoseconds ?? Int64(max(hello.heartbeatIntervalMs, 100)) * 1_000_000
            var checkOut = Licensed_V1_CheckOutRequest()
            checkOut.feature = self.settings.feature
            // Latency is the heartbeats': the check-outs all arrive at once at the start.
            self.send(context, .checkOut(checkOut), timed: false)
            return
        case .checkIn where self.settings.operation == .sessions:
            // The seat held is back: this session is done.
            context.close(promise: nil)
            return
        case .checkOut(let granted) where self.settings.operation == .sessions:
            self.heldLease = granted.leaseID
            let interval = TimeAmount.nanoseconds(self.heartbeatNanoseconds)
            let phase = TimeAmount.nanoseconds(Int64.random(in: 0..<self.heartbeatNanoseconds))
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            self.ticker = context.eventLoop.scheduleRepeatedTask(initialDelay: phase, delay: interval) { _ in
                let (handler, context) = loopBound.value
                handler.issue(context)
                context.flush()
            }
            // Beats are far apart: stop at the deadline, not at the first beat after it.
            context.eventLoop.scheduleTask(deadline: self.settings.deadline) {
                let (handler, context) = loopBound.value
                handler.issue(context)
            }
            return
        case .hello:
            if self.settings.intervalNanoseconds > 0 {
                // Operations are due every interval from now; the ticker wakes at most every
                // 0.5 ms and starts all that are due, each timed from when it was due, then
                // flushes once (one wake-up and one write per operation capped the generator near
                // 100k/s, below the rates asked of it).
                let interval = self.settings.intervalNanoseconds
                let start = DispatchTime.now().uptimeNanoseconds
                let tick = TimeAmount.nanoseconds(max(interval, 500_000))
                let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
                self.ticker = context.eventLoop.scheduleRepeatedTask(initialDelay: tick, delay: tick) { _ in
                    let (handler, context) = loopBound.value
                    let due = (DispatchTime.now().uptimeNanoseconds - start) / UInt64(interval)
                    while UInt64(handler.started) < due, !handler.stopping {
                        handler.issue(context, scheduled: start + UInt64(handler.started + 1) * UInt64(interval))
                    }
                    context.flush()
                }
            } else {
                for _ in 0..<self.settings.depth { self.issue(context) }
            }
            return
        case .checkOut where self.settings.operation == .checkouts:
            self.recorder.operations += 1
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
            self.recorder.operations += 1
            if let due = self.scheduledAt.removeValue(forKey: reply.requestID) {
                _ = self.recorder.operationLatency.record(now - due)
            }
        case .error(let error):
            self.recorder.errors["\(error.code)", default: 0] += 1
            if error.code == .invalidArgument || error.code == .unauthenticated { self.stopping = true }
        default:
            break
        }
        self.scheduledAt[reply.requestID] = nil
        if self.settings.intervalNanoseconds == 0 && self.settings.operation != .sessions { self.issue(context) }
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
        context.fireChannelInactive()
    }

    private func issue(_ context: ChannelHandlerContext, scheduled: UInt64? = nil) {
        if NIODeadline.now() >= self.settings.deadline || (self.settings.quota > 0 && self.started >= self.settings.quota) {
            self.stopping = true
            self.ticker?.cancel()
            if let lease = self.heldLease {
                // Leave no seat behind: check it in, and close on the reply.
                self.heldLease = nil
                var checkIn = Licensed_V1_CheckInRequest()
                checkIn.leaseID = lease
                self.send(context, .checkIn(checkIn), timed: true)
                context.flush()
                return
            }
            if self.sentAt.isEmpty { context.close(promise: nil) }
        }
        guard !self.stopping else { return }
        let id: UInt64
        self.started += 1
        switch self.settings.operation {
        case .pairs, .checkouts:
            var checkOut = Licensed_V1_CheckOutRequest()
            checkOut.feature = self.settings.feature
            id = self.send(context, .checkOut(checkOut), timed: true)
        case .heartbeat, .sessions:
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
        if timed { self.sentAt[message.requestID] = DispatchTime.now().uptimeNanoseconds }
        context.write(Self.wrapOutboundOut(buffer), promise: nil)
        return message.requestID
    }
}
