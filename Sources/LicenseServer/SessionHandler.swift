import LicenseCore
import LicenseCrypto
import LicenseProtocol
import Logging
import NIOCore

/// One client connection: decodes each frame into a `ClientMessage`, enforces Hello-first,
/// answers, and turns protocol violations into an `Error` reply and a close.
///
/// Replies are written as requests are read and flushed once per read burst
/// (`channelReadComplete`), so a client that pipelines pays one syscall per burst, not per reply.
final class SessionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum State {
        case awaitingHello
        case open(sessionID: [UInt8])
        case closing
    }

    private var state = State.awaitingHello
    private let context: ServerContext
    private var logger: Logger
    private var helloTimeout: Scheduled<Void>?

    init(context: ServerContext, peer: String) {
        self.context = context
        self.logger = context.logger
        self.logger[metadataKey: "peer"] = "\(peer)"
    }

    func channelActive(context: ChannelHandlerContext) {
        let timeout = TimeAmount.milliseconds(Int64(self.context.configuration.helloTimeoutMs))
        self.helloTimeout = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) {
            guard case .awaitingHello = self.state else { return }
            self.fail(context, requestID: 0, .resourceExhausted, "no Hello within \(timeout.nanoseconds / 1_000_000) ms; closing")
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.helloTimeout?.cancel()
        if case .open = self.state { self.logger.debug("session closed") }
        self.state = .closing
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .closing = self.state { return }
        let frame = Self.unwrapInboundIn(data)
        let message: Licensed_V1_ClientMessage
        do {
            message = try frame.decodeMessage()
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
        case .open:
            self.dispatch(context, message)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
        context.fireChannelReadComplete()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // The client finished sending (half-close): everything it asked is answered; close.
        if let event = event as? ChannelEvent, event == .inputClosed {
            if case .closing = self.state { return }
            self.state = .closing
            context.flush()
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        switch error {
        case let frameError as FrameError:
            let code: Licensed_V1_Error.Code =
                if case .frameTooLarge = frameError { .resourceExhausted } else { .invalidArgument }
            self.fail(context, requestID: 0, code, "\(frameError)")
        default:
            // Connection-level I/O failure (reset by peer, ...): nothing to answer.
            self.logger.debug("connection error: \(error)")
            self.state = .closing
            context.close(promise: nil)
        }
    }

    // MARK: - Requests

    private func openSession(_ context: ChannelHandlerContext, requestID: UInt64, hello: Licensed_V1_Hello) {
        if hello.protocolVersion.rawValue > Licensed_V1_ProtocolVersion.protocolVersion1.rawValue {
            self.logger.debug("client speaks a newer protocol version \(hello.protocolVersion.rawValue); answering as version 1")
        }
        self.helloTimeout?.cancel()
        let sessionID = SecureRandom.bytes(16)
        self.state = .open(sessionID: sessionID)
        self.logger[metadataKey: "session"] = "\(sessionID.hexString.prefix(12))"
        self.logger.info(
            "session opened",
            metadata: ["user": "\(hello.user)", "host": "\(hello.host)", "client": "\(hello.clientName) \(hello.clientVersion)"]
        )
        var response = Licensed_V1_HelloResponse()
        response.serverVersion = ServerContext.serverVersion
        response.sessionID = .init(sessionID)
        response.heartbeatIntervalMs = UInt32(self.context.configuration.heartbeatIntervalMs)
        response.leaseTtlMs = UInt32(self.context.configuration.leaseTTLMs)
        response.serverTimeMs = self.context.clock.nowMs()
        response.serverPublicKey = .init(self.context.serverPublicKey)
        response.resumed = false
        response.role = "client"
        var reply = Licensed_V1_ServerMessage()
        reply.requestID = requestID
        reply.hello = response
        self.write(context, reply)
    }

    private func dispatch(_ context: ChannelHandlerContext, _ message: Licensed_V1_ClientMessage) {
        switch message.body {
        case .none:
            // A body this server does not know: a newer client. Answer and keep the connection.
            self.reply(
                context,
                requestID: message.requestID,
                error: LicenseError(.unimplemented, "this server does not know that request; upgrade the server")
            )
        case .hello:
            self.reply(
                context,
                requestID: message.requestID,
                error: LicenseError(.invalidArgument, "the session is already open; Hello is sent once per connection")
            )
        case .some(let body):
            self.reply(
                context,
                requestID: message.requestID,
                error: LicenseError(.unimplemented, "\(body.requestName) is not available in this server version")
            )
        }
    }

    // MARK: - Writing

    private func reply(_ context: ChannelHandlerContext, requestID: UInt64, error: LicenseError) {
        var reply = Licensed_V1_ServerMessage()
        reply.requestID = requestID
        reply.error = error.protocolError
        self.write(context, reply)
    }

    private func write(_ context: ChannelHandlerContext, _ message: Licensed_V1_ServerMessage) {
        var buffer = context.channel.allocator.buffer(capacity: 64)
        do {
            try buffer.writeFrame(message)
        } catch {
            self.logger.error("cannot encode a reply: \(error)")
            return
        }
        context.write(Self.wrapOutboundOut(buffer), promise: nil)
    }

    /// Answers with `Error` and closes the connection once the reply is written.
    private func fail(_ context: ChannelHandlerContext, requestID: UInt64, _ code: Licensed_V1_Error.Code, _ message: String) {
        if case .closing = self.state { return }
        self.state = .closing
        self.helloTimeout?.cancel()
        self.logger.notice("closing connection: \(message)", metadata: ["code": "\(code)"])
        var reply = Licensed_V1_ServerMessage()
        reply.requestID = requestID
        reply.error = LicenseError(code, message).protocolError
        var buffer = context.channel.allocator.buffer(capacity: 64)
        guard (try? buffer.writeFrame(reply)) != nil else {
            context.close(promise: nil)
            return
        }
        context.writeAndFlush(Self.wrapOutboundOut(buffer)).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }
}

extension Licensed_V1_ClientMessage.OneOf_Body {
    /// The request's name for messages to people.
    var requestName: String {
        switch self {
        case .hello: "Hello"
        case .checkOut: "CheckOut"
        case .checkIn: "CheckIn"
        case .heartbeat: "Heartbeat"
        case .activate: "Activate"
        case .deactivate: "Deactivate"
        case .validateActivation: "ValidateActivation"
        case .status: "Status"
        case .leases: "Leases"
        case .revoke: "Revoke"
        case .reload: "Reload"
        case .snapshot: "Snapshot"
        case .queue: "Queue"
        }
    }
}
