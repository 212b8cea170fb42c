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
        /// The request each operation starts, serialized once (check-out, heartbeat, status); nil
        /// for activations, each of a fingerprint of its own.
        var template: ClientWire.Template?
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
    /// Open loop: when the schedule started, the last wake-up, and the next one.
    private var openLoopStart: UInt64 = 0
    private var lastWake: UInt64 = 0
    private var openLoopTimer: Scheduled<Void>?
    /// Sessions: the heartbeat period (an empty Heartbeat renews every lease of the session).
    private var heartbeatNanoseconds: Int64 = 0
    /// Sessions: the seat held, returned at the end.
    private var heldLease: Data?
    /// Requests written since the last flush: one buffer, and one write, per burst.
    private var outbound = ByteBuffer()

    /// Open loop: this connection's offset in the schedule, so that connections do not all send at
    /// the same instant (connection i of n starts i/n of an interval late).
    private let phaseNanoseconds: UInt64

    init(settings: Settings, recorder: BenchRecorder, index: Int = 0, of count: Int = 1) {
        self.settings = settings
        self.recorder = recorder
        self.phaseNanoseconds = UInt64(max(settings.intervalNanoseconds, 0)) * UInt64(index) / UInt64(max(count, 1))
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
        self.flush(context)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = Self.unwrapInboundIn(data)
        // Replies are read by hand (`ClientWire`) for every operation but sessions and activations.
        if self.settings.template != nil, self.settings.operation != .sessions, let reply = frame.withUnsafeReadableBytes(ClientWire.reply),
            self.handle(context, reply)
        {
            return
        }
        guard let reply = try? frame.decodeMessage(as: Licensed_V1_ServerMessage.self) else {
            self.recorder.errors["UNDECODABLE", default: 0] += 1
            context.close(promise: nil)
            return
        }
        if reply.requestID == 0 { return }  // pushed event
        let now = NIODeadline.now().uptimeNanoseconds
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
                handler.flush(context)
            }
            // Beats are far apart: stop at the deadline, not at the first beat after it.
            context.eventLoop.scheduleTask(deadline: self.settings.deadline) {
                let (handler, context) = loopBound.value
                handler.issue(context)
            }
            return
        case .hello:
            if self.settings.intervalNanoseconds > 0 {
                // Operations are due every interval from now, on a fixed grid: each wake-up is
                // set for the next operation's due time (a repeated task with a fixed delay
                // drifts later tick by tick, and each operation then started up to an interval
                // after it was due: p50 28 ms at 200 pairs/s on 10 connections, where a paced
                // client saw 1.8 ms). A wake-up starts every operation due by then, each timed
                // from when it was due, and flushes once; wake-ups are at least 0.5 ms apart, so
                // at high rates operations go out in small batches.
                self.openLoopStart = NIODeadline.now().uptimeNanoseconds + self.phaseNanoseconds
                self.armTicker(context)
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
        self.completed(context, reply.requestID)
    }

    /// A reply of the steady state, read without building a message (`ClientWire`): a check-out's
    /// (whose lease is checked in next, for pairs), a check-in's, a heartbeat's or a status's.
    /// False, with nothing done, for any other (hello, errors, …), which `channelRead` decodes.
    private func handle(_ context: ChannelHandlerContext, _ reply: ClientWire.Reply) -> Bool {
        switch reply.body {
        case 3 where self.settings.operation == .pairs:
            guard let leaseID = reply.leaseID else { return false }
            self.answered(reply.requestID, at: NIODeadline.now().uptimeNanoseconds)
            let due = self.scheduledAt.removeValue(forKey: reply.requestID)
            let id = self.nextRequestID(timed: true)
            ClientWire.writeCheckInFrame(requestID: id, leaseID: leaseID, to: &self.outbound)
            if let due { self.scheduledAt[id] = due }
        case 3 where self.settings.operation == .checkouts:
            self.answered(reply.requestID, at: NIODeadline.now().uptimeNanoseconds)
            self.recorder.operations += 1
            self.completed(context, reply.requestID)
        case 4, 5, 9:
            let now = NIODeadline.now().uptimeNanoseconds
            self.answered(reply.requestID, at: now)
            self.recorder.operations += 1
            if let due = self.scheduledAt.removeValue(forKey: reply.requestID) {
                _ = self.recorder.operationLatency.record(now - due)
            }
            self.completed(context, reply.requestID)
        default:
            return false
        }
        return true
    }

    /// Records the latency of the request `requestID` (send to its reply, read at `now`).
    private func answered(_ requestID: UInt64, at now: UInt64) {
        guard let sent = self.sentAt.removeValue(forKey: requestID) else { return }
        _ = self.recorder.histogram.record(now - sent)
        self.recorder.requests += 1
    }

    /// An operation is over: closed loop, the next one starts.
    private func completed(_ context: ChannelHandlerContext, _ requestID: UInt64) {
        self.scheduledAt[requestID] = nil
        if self.settings.intervalNanoseconds == 0 && self.settings.operation != .sessions { self.issue(context) }
    }

    /// Open loop: wakes at the next operation's due time (at least 0.5 ms after the last wake-up),
    /// starts every operation due by then, flushes, and sets the next wake-up.
    private func armTicker(_ context: ChannelHandlerContext) {
        let interval = UInt64(self.settings.intervalNanoseconds)
        let nextDue = self.openLoopStart + UInt64(self.started + 1) * interval
        let wake = max(nextDue, self.lastWake + 500_000)
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        self.openLoopTimer = context.eventLoop.scheduleTask(deadline: .uptimeNanoseconds(wake)) {
            let (handler, context) = loopBound.value
            let now = NIODeadline.now().uptimeNanoseconds
            handler.lastWake = now
            let due = now > handler.openLoopStart ? (now - handler.openLoopStart) / interval : 0
            while UInt64(handler.started) < due, !handler.stopping {
                handler.issue(context, scheduled: handler.openLoopStart + UInt64(handler.started + 1) * interval)
            }
            handler.flush(context)
            if !handler.stopping { handler.armTicker(context) }
        }
    }

    /// Sends the second request of an operation, carrying over when the operation was due.
    private func follow(_ context: ChannelHandlerContext, _ first: UInt64, with body: Licensed_V1_ClientMessage.OneOf_Body) {
        let due = self.scheduledAt.removeValue(forKey: first)
        let id = self.send(context, body, timed: true)
        if let due { self.scheduledAt[id] = due }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.flush(context)
        if self.stopping && self.sentAt.isEmpty { context.close(promise: nil) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.ticker?.cancel()
        self.openLoopTimer?.cancel()
        context.fireChannelInactive()
    }

    private func issue(_ context: ChannelHandlerContext, scheduled: UInt64? = nil) {
        if NIODeadline.now() >= self.settings.deadline || (self.settings.quota > 0 && self.started >= self.settings.quota) {
            self.stopping = true
            self.ticker?.cancel()
            self.openLoopTimer?.cancel()
            if let lease = self.heldLease {
                // Leave no seat behind: check it in, and close on the reply.
                self.heldLease = nil
                var checkIn = Licensed_V1_CheckInRequest()
                checkIn.leaseID = lease
                self.send(context, .checkIn(checkIn), timed: true)
                self.flush(context)
                return
            }
            if self.sentAt.isEmpty { context.close(promise: nil) }
        }
        guard !self.stopping else { return }
        let id: UInt64
        self.started += 1
        if let template = self.settings.template {
            id = self.nextRequestID(timed: true)
            template.writeFrame(requestID: id, to: &self.outbound)
        } else {
            id = self.send(context, Self.body(self.settings.operation, feature: self.settings.feature), timed: true)
        }
        if let scheduled { self.scheduledAt[id] = scheduled }
    }

    /// The request that starts an `operation`, as a message (what `Settings.template` holds
    /// serialized).
    private static func body(_ operation: Bench.Operation, feature: String) -> Licensed_V1_ClientMessage.OneOf_Body {
        switch operation {
        case .pairs, .checkouts:
            var checkOut = Licensed_V1_CheckOutRequest()
            checkOut.feature = feature
            return .checkOut(checkOut)
        case .heartbeat, .sessions:
            return .heartbeat(.init())
        case .status:
            return .status(.init())
        case .activations:
            var activate = Licensed_V1_ActivateRequest()
            activate.licenseID = feature
            activate.fingerprint = [SecureRandom.bytes(16).hexString]
            activate.machineName = "bench"
            return .activate(activate)
        }
    }

    /// The `Settings.template` of `operation` with `feature`: nil for activations.
    static func template(_ operation: Bench.Operation, feature: String) throws -> ClientWire.Template? {
        guard operation != .activations else { return nil }
        var message = Licensed_V1_ClientMessage()
        message.body = Self.body(operation, feature: feature)
        return try ClientWire.Template(message)
    }

    /// The next request id, and when it was sent if `timed`.
    private func nextRequestID(timed: Bool) -> UInt64 {
        let id = self.nextID
        self.nextID += 1
        if timed { self.sentAt[id] = NIODeadline.now().uptimeNanoseconds }
        return id
    }

    @discardableResult
    private func send(_ context: ChannelHandlerContext, _ body: Licensed_V1_ClientMessage.OneOf_Body, timed: Bool) -> UInt64 {
        var message = Licensed_V1_ClientMessage()
        message.requestID = self.nextRequestID(timed: timed)
        message.body = body
        _ = try? self.outbound.writeFrame(message)
        return message.requestID
    }

    /// Writes the requests of this burst, then flushes.
    private func flush(_ context: ChannelHandlerContext) {
        if self.outbound.readableBytes > 0 {
            let capacity = self.outbound.readableBytes
            context.write(Self.wrapOutboundOut(self.outbound), promise: nil)
            self.outbound = context.channel.allocator.buffer(capacity: capacity)
        }
        context.flush()
    }
}
