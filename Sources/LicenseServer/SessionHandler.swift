import LicenseAudit
import LicenseCore
import LicenseCrypto
import LicenseProtocol
import LicenseStore
import Logging
package import NIOCore

/// One client connection: splits the byte stream into frames, decodes each into a
/// `ClientMessage`, enforces Hello-first, answers, and turns protocol violations into an `Error`
/// reply and a close.
///
/// Replies are gathered into one buffer as requests are read, and written and flushed once per
/// read burst (`channelReadComplete`) or per batch made durable (`flushDeferred`), so a client
/// that pipelines pays one buffer, one write and one syscall per burst, not per reply.
///
/// Framing is done here rather than by a `ByteToMessageHandler` in front: that handler, its
/// context and its queues, plus the read buffer it keeps between reads, cost about 800 bytes of
/// every idle session. Between frames this handler holds no buffer at all.
final class SessionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum State {
        case awaitingHello
        case open(sessionID: SessionID, role: Role)
        case closing
    }

    private var state = State.awaitingHello
    private let host: LedgerHost
    private let authority: TokenAuthority
    /// The server's logger, shared: this connection's peer and session go into each line's
    /// metadata (`log`), not into a copy of the logger per connection (a dictionary and a boxed
    /// handler, about 600 bytes of every idle session).
    private let logger: Logger
    private var helloTimeout: Scheduled<Void>?
    /// The start of a frame whose remaining bytes have not arrived yet (nil between frames).
    private(set) var partialFrame: ByteBuffer?
    /// The `resume_attempt` of the Hello that resumed this connection's session (0: none).
    private(set) var resumeAttempt: UInt64 = 0
    /// Set once the connection counted against the limits.
    private var admittedAddress: String?
    /// Set while the handler is in a pipeline, to push events outside of a read.
    private var channelContext: ChannelHandlerContext?
    /// True on the local admin socket: whoever can connect to it is an administrator.
    private let localAdmin: Bool
    /// Replies encoded since the last flush (nil between flushes).
    private var outgoing: ByteBuffer?

    /// Reads the server's settings through `host.context` (one copy for all connections: a copy
    /// per handler cost about 1.5 KB of every idle session).
    init(context: ServerContext, host: LedgerHost, localAdmin: Bool = false) {
        self.host = host
        self.localAdmin = localAdmin
        self.authority = TokenAuthority(entries: context.configuration.tokens)
        self.logger = context.logger
    }

    /// Logs with this connection's peer and, once open, its session. Nothing is rendered below
    /// the logger's level.
    private func log(
        _ level: Logger.Level,
        _ message: @autoclosure () -> Logger.Message,
        _ metadata: @autoclosure () -> Logger.Metadata = [:]
    ) {
        self.logger.log(level: level, message(), metadata: self.connectionMetadata.merging(metadata()) { $1 })
    }

    private var connectionMetadata: Logger.Metadata {
        let peer = self.localAdmin ? "admin-socket" : self.channelContext?.channel.remoteAddress?.description ?? "unknown"
        guard case .open(let id, _) = self.state else { return ["peer": "\(peer)"] }
        return ["peer": "\(peer)", "session": "\(id.description.prefix(12))"]
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.channelContext = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.channelContext = nil
    }

    /// Sends a server-pushed event now (request_id 0), optionally closing afterwards.
    func push(_ event: Licensed_V1_Event, thenClose: Bool = false) {
        guard let context = self.channelContext else { return }
        var message = Licensed_V1_ServerMessage()
        message.requestID = 0
        message.event = event
        self.write(context, message)
        if thenClose {
            self.endSession()
            self.state = .closing
            self.writeOutgoing(context)
            context.writeAndFlush(Self.wrapOutboundOut(context.channel.allocator.buffer(capacity: 0))).assumeIsolated().whenComplete { _ in
                context.close(promise: nil)
            }
        } else {
            self.flush(context)
        }
    }

    /// Another connection resumed this session: this one is told and closed.
    func supersede() {
        var event = Licensed_V1_Event()
        // Not SERVER_SHUTTING_DOWN ("reconnect and resume"): a client told that would take the
        // session back and evict the other connection, which would do the same, and so on.
        event.kind = .sessionSuperseded
        event.message = "this session was resumed on another connection, which holds its leases now"
        self.state = .closing
        self.push(event)
        self.channelContext?.close(promise: nil)
    }

    private func endSession() {
        if case .open(let id, _) = self.state {
            self.host.detach(id, connection: self)
            self.log(.debug, "session detached")
        }
    }

    /// The peer's address for limits and the audit trail (`local` on the admin socket).
    private func peerAddress(_ context: ChannelHandlerContext) -> String {
        self.localAdmin ? "local" : context.channel.remoteAddress?.ipAddress ?? "unknown"
    }

    func channelActive(context: ChannelHandlerContext) {
        let address = self.peerAddress(context)
        if let refused = self.host.admitConnection(from: address) {
            self.fail(context, requestID: 0, refused.code, refused.message)
            context.fireChannelActive()
            return
        }
        self.admittedAddress = address
        let timeout = TimeAmount.milliseconds(Int64(self.host.context.configuration.helloTimeoutMs))
        self.helloTimeout = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) {
            guard case .awaitingHello = self.state else { return }
            self.fail(context, requestID: 0, .resourceExhausted, "no Hello within \(timeout.nanoseconds / 1_000_000) ms; closing")
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let address = self.admittedAddress {
            self.host.releaseConnection(from: address)
            self.admittedAddress = nil
        }
        self.helloTimeout?.cancel()
        self.endSession()
        self.state = .closing
        context.fireChannelInactive()
    }

    /// Bytes from the peer: each whole frame is served in order; the start of an incomplete one is
    /// kept until the rest arrives. A frame announcing more than the maximum is refused before its
    /// body is buffered.
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .closing = self.state { return }
        var bytes = Self.unwrapInboundIn(data)
        let maximum = self.host.context.configuration.maxFrameBytes
        do {
            // A frame begun in an earlier read takes only the bytes it lacks from this one (its
            // length first, then the body it announces); the rest of the read is framed in place.
            if var partial = self.partialFrame {
                self.partialFrame = nil
                while true {
                    if let frame = try FrameDecoder.readFrame(from: &partial, maximumFrameLength: maximum) {
                        self.received(context, frame: frame)
                        if case .closing = self.state { return }
                        break
                    }
                    let needed =
                        partial.readableBytes < 4
                        ? 4 - partial.readableBytes
                        : 4 + Int(partial.getInteger(at: partial.readerIndex, endianness: .big, as: UInt32.self)!) - partial.readableBytes
                    guard var piece = bytes.readSlice(length: needed) else {
                        partial.writeBuffer(&bytes)
                        self.partialFrame = partial
                        return
                    }
                    partial.writeBuffer(&piece)
                }
            }
            while let frame = try FrameDecoder.readFrame(from: &bytes, maximumFrameLength: maximum) {
                self.received(context, frame: frame)
                if case .closing = self.state { return }
            }
        } catch {
            self.fail(context, requestID: 0, .resourceExhausted, "\(error)")
            return
        }
        if bytes.readableBytes > 0 {
            // Kept in a buffer of its own, so that the read's buffer goes back to NIO for the next
            // read instead of being held; sized for the frame when its length is known, up to
            // 4 KiB (a longer frame grows it as its body arrives, not on its announcement alone).
            let announced = bytes.getInteger(at: bytes.readerIndex, endianness: .big, as: UInt32.self).map { 4 + Int($0) } ?? 64
            var partial = context.channel.allocator.buffer(capacity: max(min(announced, 4096), bytes.readableBytes))
            partial.writeBuffer(&bytes)
            self.partialFrame = partial
        }
    }

    private func received(_ context: ChannelHandlerContext, frame: ByteBuffer) {
        if case .open(let session, let role) = self.state, let checkIn = frame.withUnsafeReadableBytes(ClientMessageWire.plainCheckIn) {
            // The hot path's check-in, without a message built and taken apart.
            let id = LeaseID(high: checkIn.leaseID.high, low: checkIn.leaseID.low)
            self.host.serve(checkIn: id, requestID: checkIn.requestID, session: session, role: role, replyTo: self)
            return
        }
        let message: Licensed_V1_ClientMessage
        do {
            message = try frame.decodeClientMessage()
        } catch {
            self.fail(context, requestID: 0, .invalidArgument, "frame of \(frame.readableBytes) bytes is not a valid ClientMessage")
            return
        }
        switch self.state {
        case .closing:
            return
        case .awaitingHello:
            guard case .hello(let hello) = message.body else {
                self.fail(context, requestID: message.requestID, .invalidArgument, "the first request on a connection must be Hello")
                return
            }
            self.openSession(context, requestID: message.requestID, hello: hello)
        case .open(let session, let role):
            self.dispatch(context, message, session: session, role: role)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.flush(context)
        context.fireChannelReadComplete()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // The client finished sending (half-close): everything it asked is answered; close.
        if let event = event as? ChannelEvent, event == .inputClosed {
            if case .closing = self.state { return }
            if let partial = self.partialFrame {
                let truncated = FrameError.truncatedFrame(receivedBytes: partial.readableBytes)
                self.fail(context, requestID: 0, .invalidArgument, "\(truncated)")
                return
            }
            self.endSession()
            self.state = .closing
            self.flush(context)
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// A connection-level I/O failure (reset by peer, ...): nothing to answer.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.log(.debug, "connection error: \(error)")
        self.endSession()
        self.state = .closing
        context.close(promise: nil)
    }

    // MARK: - Requests

    private func openSession(_ context: ChannelHandlerContext, requestID: UInt64, hello: Licensed_V1_Hello) {
        if hello.protocolVersion.rawValue > Licensed_V1_ProtocolVersion.protocolVersion1.rawValue {
            self.log(.debug, "client speaks a newer protocol version \(hello.protocolVersion.rawValue); answering as version 1")
        }
        let address = self.peerAddress(context)
        let presented = self.authority.role(for: hello.token)
        let refusal: String? =
            if self.localAdmin { nil } else if presented == nil {
                "the token is not valid for this server"
            } else if hello.token.isEmpty && self.host.context.configuration.requireClientToken {
                "this server requires a token; ask its administrator for one"
            } else {
                nil
            }
        if let refusal {
            self.log(.warning, "rejected token", ["user": "\(hello.user)", "host": "\(hello.host)", "reason": "\(refusal)"])
            let delay = self.host.refusedToken(
                from: address,
                details: [
                    ("user", .string(hello.user)), ("host", .string(hello.host)), ("client", .string(hello.clientName)),
                    ("reason", .string(refusal)),
                ]
            )
            self.helloTimeout?.cancel()
            self.state = .closing  // reads nothing more while the answer waits
            let answer = {
                self.state = .awaitingHello
                self.fail(context, requestID: requestID, .unauthenticated, refusal)
            }
            if delay > 0 {
                context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(delay)) { answer() }
            } else {
                answer()
            }
            return
        }
        let role: Role = self.localAdmin ? .admin : presented ?? .client
        if role == .client, let refusal = self.host.clusterHelloRefusal {
            // A standby of a cluster: the client is told where the active server is.
            self.fail(context, requestID: requestID, refusal)
            return
        }
        var sessionID: SessionID? = nil
        if let resumeID = SessionID(bytes: hello.resumeSessionID) {
            self.resumeAttempt = hello.resumeAttempt
            switch self.host.resume(resumeID, attempt: hello.resumeAttempt, connection: self) {
            case .resumed: sessionID = resumeID
            case .unknown: break
            case .stale:
                self.fail(
                    context,
                    requestID: requestID,
                    .staleResume,
                    "resume attempt \(hello.resumeAttempt) is not this client's newest: a newer connection holds the session and keeps it"
                )
                return
            }
        }
        self.helloTimeout?.cancel()
        self.helloTimeout = nil
        let resumed = sessionID != nil
        // Groups from the configuration and, when one is configured, units, groups, cost centre and location from the directory.
        let identity = self.host.directoryIdentity(
            ClientIdentity(
                user: hello.user,
                host: hello.host,
                clientName: hello.clientName,
                clientVersion: hello.clientVersion,
                address: address
            )
        )
        let id = sessionID ?? self.host.open(identity, connection: self)
        if !resumed { self.host.clientClock(hello.clientTimeMs, user: hello.user, host: hello.host) }
        self.state = .open(sessionID: id, role: role)
        self.log(
            .info,
            resumed ? "session resumed" : "session opened",
            [
                "user": "\(hello.user)", "host": "\(hello.host)", "client": "\(hello.clientName) \(hello.clientVersion)", "role": "\(role)",
            ]
        )
        var response = Licensed_V1_HelloResponse()
        response.serverVersion = ServerContext.serverVersion
        response.sessionID = .init(id.bytes)
        response.heartbeatIntervalMs = UInt32(self.host.context.configuration.heartbeatIntervalMs)
        response.leaseTtlMs = UInt32(self.host.context.configuration.leaseTTLMs)
        response.serverTimeMs = self.host.context.clock.nowMs()
        response.serverPublicKey = .init(self.host.context.serverPublicKey)
        response.resumed = resumed
        response.role = role.rawValue
        var reply = Licensed_V1_ServerMessage()
        reply.requestID = requestID
        reply.hello = response
        self.write(context, reply)
    }

    private func dispatch(_ context: ChannelHandlerContext, _ message: Licensed_V1_ClientMessage, session: SessionID, role: Role) {
        self.host.serve(message, session: session, role: role, replyTo: self)
    }

    /// True while the connection is open.
    var isConnected: Bool { self.channelContext != nil }

    /// Writes a reply that waited for durability (flushed by `flushDeferred`). True when it is the
    /// first reply gathered since the last flush: the caller flushes each connection it was true
    /// for, once; otherwise whoever gathered the first one flushes (every write is followed by a
    /// flush, or is made in a read, which `channelReadComplete` flushes).
    @discardableResult
    func writeDeferred(_ reply: borrowing Licensed_V1_ServerMessage) -> Bool {
        guard let context = self.channelContext else { return false }
        let first = self.outgoing == nil
        self.write(context, reply)
        return first
    }

    /// `writeDeferred` of a reply in either form.
    @discardableResult
    func writeDeferred(_ reply: borrowing OutgoingReply) -> Bool {
        switch reply {
        case .message(let message):
            return self.writeDeferred(message)
        case .grant(let grant):
            return self.writeLaidOut { ServerMessageWire.writeFrame(grant, to: &$0) }
        case .return(let reply):
            return self.writeLaidOut { ServerMessageWire.writeFrame(reply, to: &$0) }
        }
    }

    /// Appends a hand-laid reply to the gathered ones; true when it is the first since the last flush.
    private func writeLaidOut(_ write: (inout ByteBuffer) -> Void) -> Bool {
        guard let context = self.channelContext else { return false }
        let first = self.outgoing == nil
        if first { self.outgoing = context.channel.allocator.buffer(capacity: 256) }
        write(&self.outgoing!)
        return first
    }

    /// Flushes replies written by `writeDeferred`.
    func flushDeferred() {
        guard let context = self.channelContext else { return }
        self.flush(context)
    }

    // MARK: - Writing

    /// Adds a reply to the ones gathered for the next flush.
    private func write(_ context: ChannelHandlerContext, _ message: Licensed_V1_ServerMessage) {
        if self.outgoing == nil { self.outgoing = context.channel.allocator.buffer(capacity: 256) }
        do {
            // Encoded whole before its length is written: a failure leaves nothing behind.
            try self.outgoing!.writeFrame(message)
        } catch {
            self.log(.error, "cannot encode a reply: \(error)")
        }
    }

    /// Hands the gathered replies to the channel (unflushed).
    private func writeOutgoing(_ context: ChannelHandlerContext) {
        guard let outgoing = self.outgoing else { return }
        self.outgoing = nil
        context.write(Self.wrapOutboundOut(outgoing), promise: nil)
    }

    /// Writes the gathered replies and flushes.
    private func flush(_ context: ChannelHandlerContext) {
        self.writeOutgoing(context)
        context.flush()
    }

    /// Answers with `Error` and closes the connection once the reply is written.
    private func fail(_ context: ChannelHandlerContext, requestID: UInt64, _ code: Licensed_V1_Error.Code, _ message: String) {
        self.fail(context, requestID: requestID, LicenseError(code, message))
    }

    /// Answers with `error` and closes the connection once the reply is written.
    private func fail(_ context: ChannelHandlerContext, requestID: UInt64, _ error: LicenseError) {
        if case .closing = self.state { return }
        self.endSession()
        self.state = .closing
        self.helloTimeout?.cancel()
        self.helloTimeout = nil
        self.log(.notice, "closing connection: \(error.message)", ["code": "\(error.code)"])
        var reply = Licensed_V1_ServerMessage()
        reply.requestID = requestID
        reply.error = error.protocolError
        var buffer = context.channel.allocator.buffer(capacity: 64)
        guard (try? buffer.writeFrame(reply)) != nil else {
            context.close(promise: nil)
            return
        }
        // After the replies already answered, in order.
        self.writeOutgoing(context)
        context.writeAndFlush(Self.wrapOutboundOut(buffer)).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }
}

extension LedgerHost {
    /// A client session's handler over this host, for the benchmarks of the serving loop
    /// (`HotPathOperations`), which sit outside this module.
    package func sessionHandler(context: ServerContext) -> any ChannelHandler {
        SessionHandler(context: context, host: self)
    }
}
