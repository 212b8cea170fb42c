import LicenseCore
import LicenseCrypto
import LicenseProtocol
import LicenseStore
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
        case open(sessionID: SessionID, role: Role)
        case closing
    }

    private var state = State.awaitingHello
    private let context: ServerContext
    private let host: LedgerHost
    private let authority: TokenAuthority
    private var logger: Logger
    private var helloTimeout: Scheduled<Void>?
    /// Set once the connection counted against the limits.
    private var admittedAddress: String?
    /// Set while the handler is in a pipeline, to push events outside of a read.
    private var channelContext: ChannelHandlerContext?
    /// True on the local admin socket: whoever can connect to it is an administrator.
    private let localAdmin: Bool

    init(context: ServerContext, host: LedgerHost, peer: String, localAdmin: Bool = false) {
        self.context = context
        self.host = host
        self.localAdmin = localAdmin
        self.authority = TokenAuthority(entries: context.configuration.tokens)
        self.logger = context.logger
        self.logger[metadataKey: "peer"] = "\(peer)"
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
            context.writeAndFlush(Self.wrapOutboundOut(context.channel.allocator.buffer(capacity: 0))).assumeIsolated().whenComplete { _ in
                context.close(promise: nil)
            }
        } else {
            context.flush()
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
            self.logger.debug("session detached")
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
        let timeout = TimeAmount.milliseconds(Int64(self.context.configuration.helloTimeoutMs))
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
        case .open(let session, let role):
            self.dispatch(context, message, session: session, role: role)
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
            self.endSession()
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
            self.endSession()
            self.state = .closing
            context.close(promise: nil)
        }
    }

    // MARK: - Requests

    private func openSession(_ context: ChannelHandlerContext, requestID: UInt64, hello: Licensed_V1_Hello) {
        if hello.protocolVersion.rawValue > Licensed_V1_ProtocolVersion.protocolVersion1.rawValue {
            self.logger.debug("client speaks a newer protocol version \(hello.protocolVersion.rawValue); answering as version 1")
        }
        let address = self.peerAddress(context)
        let presented = self.authority.role(for: hello.token)
        let refusal: String? =
            if self.localAdmin { nil } else if presented == nil {
                "the token is not valid for this server"
            } else if hello.token.isEmpty && self.context.configuration.requireClientToken {
                "this server requires a token; ask its administrator for one"
            } else {
                nil
            }
        if let refusal {
            self.logger.warning("rejected token", metadata: ["user": "\(hello.user)", "host": "\(hello.host)", "reason": "\(refusal)"])
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
        self.helloTimeout?.cancel()
        var sessionID: SessionID? = nil
        var resumed = false
        if let resumeID = SessionID(bytes: hello.resumeSessionID), self.host.resume(resumeID, connection: self) != nil {
            sessionID = resumeID
            resumed = true
        }
        let identity = ClientIdentity(
            user: hello.user,
            host: hello.host,
            clientName: hello.clientName,
            clientVersion: hello.clientVersion,
            groups: self.context.configuration.groups(user: hello.user, host: hello.host),
            address: address
        )
        let id = sessionID ?? self.host.open(identity, connection: self)
        self.state = .open(sessionID: id, role: role)
        self.logger[metadataKey: "session"] = "\(id.description.prefix(12))"
        self.logger.info(
            resumed ? "session resumed" : "session opened",
            metadata: [
                "user": "\(hello.user)", "host": "\(hello.host)", "client": "\(hello.clientName) \(hello.clientVersion)", "role": "\(role)",
            ]
        )
        var response = Licensed_V1_HelloResponse()
        response.serverVersion = ServerContext.serverVersion
        response.sessionID = .init(id.bytes)
        response.heartbeatIntervalMs = UInt32(self.context.configuration.heartbeatIntervalMs)
        response.leaseTtlMs = UInt32(self.context.configuration.leaseTTLMs)
        response.serverTimeMs = self.context.clock.nowMs()
        response.serverPublicKey = .init(self.context.serverPublicKey)
        response.resumed = resumed
        response.role = role.rawValue
        var reply = Licensed_V1_ServerMessage()
        reply.requestID = requestID
        reply.hello = response
        self.write(context, reply)
    }

    private func dispatch(_ context: ChannelHandlerContext, _ message: Licensed_V1_ClientMessage, session: SessionID, role: Role) {
        var reply = Licensed_V1_ServerMessage()
        reply.requestID = message.requestID
        let result: Result<Licensed_V1_ServerMessage.OneOf_Body, LicenseError>
        if self.host.failure != nil {
            result = .failure(self.host.unavailable)
        } else if let body = message.body, let refusal = RequestAccess.refusal(for: body, role: role) {
            result = .failure(refusal)
        } else {
            switch message.body {
            case .none:
                // A body this server does not know: a newer client. Answer and keep the connection.
                result = .failure(LicenseError(.unimplemented, "this server does not know that request; upgrade the server"))
            case .hello:
                result = .failure(LicenseError(.invalidArgument, "the session is already open; Hello is sent once per connection"))
            case .checkOut(let request):
                switch self.host.checkOut(request, session: session, requestID: message.requestID, handler: self) {
                case .queued:
                    return  // answered when a seat is granted, or at the deadline
                case .answer(let answer):
                    result = answer.map { .checkOut($0) }
                }
            case .checkIn(let request):
                result = self.host.checkIn(request, session: session, role: role).map { .checkIn($0) }
            case .heartbeat(let request):
                result = self.host.heartbeat(request, session: session).map { .heartbeat($0) }
            case .status(let request):
                result = self.host.status(request, role: role).map { .status($0) }
            case .activate(let request):
                result = self.host.activate(request, session: session).map { .activate($0) }
            case .validateActivation(let request):
                result = self.host.validateActivation(request).map { .validateActivation($0) }
            case .deactivate(let request):
                result = self.host.deactivate(request, session: session, role: role).map { .deactivate($0) }
            case .queue(let request):
                result = self.host.queue(request).map { .queue($0) }
            case .leases(let request):
                result = self.host.leases(request).map { .leases($0) }
            case .revoke(let request):
                result = self.host.revoke(request, session: session, role: role).map { .revoke($0) }
            case .assign(let request):
                result = self.host.assign(request, session: session, role: role).map { .assign($0) }
            case .activations:
                result = self.host.activations().map { .activations($0) }
            case .history(let request):
                result = self.host.history(request).map { .history($0) }
            case .subscribe:
                result = self.host.subscribe(session: session).map { .subscribe($0) }
            case .reload, .snapshot:
                // Slow work (file reads, snapshot writes) happens off the loop; the reply follows.
                self.host.administer(message.body!, requestID: message.requestID, actor: self.host.actor(of: session), replyTo: self)
                return
            case .some(let body):
                result = .failure(LicenseError(.unimplemented, "\(body.requestName) is not available in this server version"))
            }
        }
        self.auditAdministration(message.body, result: result, session: session, role: role)
        switch result {
        case .success(let body):
            reply.body = body
            // A grant or return is acknowledged only once it is on disk.
            switch body {
            case .checkOut, .checkIn, .activate, .deactivate, .validateActivation, .assign, .revoke:
                if self.host.replyWhenDurable(reply, to: self) { return }
            default:
                break
            }
        case .failure(let error):
            reply.error = error.protocolError
        }
        self.write(context, reply)
    }

    /// Records administrators' requests (and anyone's refused for want of a role) in the audit trail.
    private func auditAdministration(
        _ body: Licensed_V1_ClientMessage.OneOf_Body?,
        result: Result<Licensed_V1_ServerMessage.OneOf_Body, LicenseError>,
        session: SessionID,
        role: Role
    ) {
        guard let body else { return }
        var details: [(String, AuditEvent.Value)] = [("request", .string(body.requestName)), ("role", .string(role.rawValue))]
        switch body {
        case .leases(let request):
            details += [("feature", .string(request.feature)), ("user", .string(request.user)), ("host", .string(request.host))]
        case .revoke(let request):
            switch request.target {
            case .leaseID(let bytes): details.append(("lease", .string(LeaseID(bytes: bytes)?.description ?? "")))
            case .activationID(let id): details.append(("activation", .string(id)))
            case .user(let user): details.append(("user", .string(user)))
            case .host(let host): details.append(("host", .string(host)))
            case .none: break
            }
        case .queue(let request): details.append(("feature", .string(request.feature)))
        case .history(let request): details.append(("month", .string(request.month)))
        case .status(let request) where request.includeHolders: break
        case .assign, .activations, .subscribe: break
        default:
            guard case .failure(let error) = result, error.code == .permissionDenied else { return }
        }
        switch result {
        case .success(.revoke(let response)):
            details += [
                ("outcome", .string("OK")), ("leases", .int(Int64(response.leases))), ("activations", .int(Int64(response.activations))),
            ]
        case .success: details.append(("outcome", .string("OK")))
        case .failure(let error): details += [("outcome", .string(error.code.name)), ("reason", .string(error.message))]
        }
        self.host.audit("admin", actor: self.host.actor(of: session), subject: "request:\(body.requestName)", details: details)
    }

    /// True while the connection is open.
    var isConnected: Bool { self.channelContext != nil }

    /// Writes a reply that waited for durability (flushed by `flushDeferred`).
    func writeDeferred(_ reply: Licensed_V1_ServerMessage) {
        guard let context = self.channelContext else { return }
        self.write(context, reply)
    }

    /// Flushes replies written by `writeDeferred`.
    func flushDeferred() {
        self.channelContext?.flush()
    }

    // MARK: - Writing

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
        self.endSession()
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
        case .assign: "Assign"
        case .activations: "Activations"
        case .history: "History"
        case .subscribe: "Subscribe"
        }
    }
}
