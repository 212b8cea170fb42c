import Foundation
import LicenseCore
import LicenseCrypto
import LicenseProtocol
import LicenseStore
import Logging
import NIOCore
import NIOEmbedded
import Testing

@testable import LicenseServer

/// The session handler in isolation: an `EmbeddedChannel` for the socket and an in-memory commit
/// log under the ledger host, so every step — a frame in, the log made durable, a reply out — is
/// the test's to take, with no socket, thread or timer.
@Suite("Session handler on an embedded channel")
struct SessionHandlerTests {
    /// A channel with the daemon's pipeline (the session handler, which frames the bytes) over a host
    /// opened by the daemon's own factory on the channel's loop.
    struct Fixture {
        let channel: EmbeddedChannel
        let log: InMemoryCommitLog
        let host: NIOLoopBoundBox<LedgerHost>

        init(tokens: [TokenAuthority.Entry] = []) throws {
            let loop = EmbeddedEventLoop()
            var configuration = ServerConfiguration()
            configuration.tokens = tokens
            configuration.stateDir = NSTemporaryDirectory()
            var logger = Logger(label: "session-handler-test")
            logger.logLevel = .critical
            let context = try ServerContext(
                configuration: configuration,
                serverKey: try Ed25519PrivateKey.generate(),
                clock: ManualClock(startMs: 1_790_000_000_000),
                logger: logger
            )
            var loaded = LicenseLoadResult()
            loaded.accepted = [FloatingSeatServerTests.license(count: 1)]
            let log = InMemoryCommitLog()
            let host = try LedgerHost.open(context: context, licenses: loaded, log: log.source, on: loop).host
            self.host = host
            self.channel = EmbeddedChannel(loop: loop)
            try self.channel.pipeline.syncOperations.addHandler(SessionHandler(context: context, host: host.value))
            try self.channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 9)).wait()
            self.log = log
        }

        func send(_ id: UInt64, _ body: Licensed_V1_ClientMessage.OneOf_Body) throws {
            var message = Licensed_V1_ClientMessage()
            message.requestID = id
            message.body = body
            var buffer = self.channel.allocator.buffer(capacity: 64)
            try buffer.writeFrame(message)
            try self.channel.writeInbound(buffer)
        }

        /// The session handler in the channel's pipeline.
        var handler: SessionHandler {
            get throws { try self.channel.pipeline.syncOperations.handler(type: SessionHandler.self) }
        }

        /// Every reply written so far, decoded.
        func replies() throws -> [Licensed_V1_ServerMessage] {
            var out: [Licensed_V1_ServerMessage] = []
            while var buffer = try self.channel.readOutbound(as: ByteBuffer.self) {
                while buffer.readableBytes >= 4, let length = buffer.readInteger(endianness: .big, as: UInt32.self) {
                    let slice = buffer.readSlice(length: Int(length))
                    let body = try #require(slice)
                    out.append(try body.decodeMessage())
                }
            }
            return out
        }

        static func hello(user: String = "ada", token: String = "") -> Licensed_V1_ClientMessage.OneOf_Body {
            var hello = Licensed_V1_Hello()
            hello.protocolVersion = .protocolVersion1
            hello.user = user
            hello.host = "ws1"
            hello.token = token
            return .hello(hello)
        }

        static func checkOut(_ feature: String = "cad") -> Licensed_V1_ClientMessage.OneOf_Body {
            var request = Licensed_V1_CheckOutRequest()
            request.feature = feature
            return .checkOut(request)
        }
    }

    @Test("a request before Hello is refused and the connection closed")
    func helloFirst() throws {
        let fixture = try Fixture()
        try fixture.send(5, Fixture.checkOut())
        let replies = try fixture.replies()
        #expect(replies.map(\.requestID) == [5])
        #expect(replies.first?.error.code == .invalidArgument)
        #expect(replies.first?.error.message.contains("must be Hello") == true)
        #expect(!fixture.channel.isActive)
    }

    @Test("a check-out is answered only once the log says it is durable; a heartbeat is answered at once")
    func durabilityGatedReply() throws {
        let fixture = try Fixture()
        try fixture.send(1, Fixture.hello())
        #expect(try fixture.replies().first?.hello.sessionID.count == 16)
        fixture.log.makeDurable()
        try fixture.send(2, Fixture.checkOut())
        #expect(try fixture.replies().isEmpty)
        try fixture.send(3, .heartbeat(Licensed_V1_HeartbeatRequest()))
        #expect(try fixture.replies().map(\.requestID) == [3])
        fixture.log.makeDurable()
        fixture.channel.embeddedEventLoop.run()
        let granted = try fixture.replies()
        #expect(granted.map(\.requestID) == [2])
        #expect(granted.first?.checkOut.leaseID.count == 16)
        #expect(fixture.channel.isActive)
        // The reply, written from the lease, says what the ledger holds.
        let reply = try #require(granted.first?.checkOut)
        let id = try #require(LeaseID(bytes: reply.leaseID))
        let lease = try #require(fixture.host.value.ledger.leases[id])
        #expect(reply.licenseID == lease.licenseID && reply.feature == lease.feature && reply.count == lease.count)
        #expect(reply.expiresAtMs == lease.expiresAtMs && reply.fencingToken == lease.fencingToken && reply.fencingToken > 0)
        #expect(!reply.overage && !reply.replayed && reply.warnings.isEmpty && reply.borrowToken.isEmpty)
        // Its check-in: held until durable too, then answered with the lease id.
        var checkIn = Licensed_V1_CheckInRequest()
        checkIn.leaseID = reply.leaseID
        try fixture.send(4, .checkIn(checkIn))
        #expect(try fixture.replies().isEmpty)
        fixture.log.makeDurable()
        fixture.channel.embeddedEventLoop.run()
        let returned = try fixture.replies()
        #expect(returned.map(\.requestID) == [4])
        #expect(returned.first?.checkIn.leaseID == reply.leaseID)
        #expect(fixture.host.value.ledger.leases[id] == nil)
    }

    @Test("a request the role may not make is refused and the session stays open; a garbled frame closes it")
    func refusals() throws {
        let fixture = try Fixture()
        try fixture.send(1, Fixture.hello())
        _ = try fixture.replies()
        try fixture.send(2, .leases(Licensed_V1_LeasesRequest()))
        let refused = try fixture.replies()
        #expect(refused.first?.error.code == .permissionDenied)
        #expect(fixture.channel.isActive)
        var garbage = fixture.channel.allocator.buffer(capacity: 8)
        garbage.writeInteger(UInt32(3), endianness: .big)
        garbage.writeBytes([0xff, 0xff, 0xff])
        try fixture.channel.writeInbound(garbage)
        let failed = try fixture.replies()
        #expect(failed.first?.error.code == .invalidArgument)
        #expect(!fixture.channel.isActive)
    }

    /// Hello and three heartbeats, each as the frame a client sends.
    static func helloAndHeartbeats() throws -> [[UInt8]] {
        try ([(UInt64(1), Fixture.hello())] + (2...4).map { (UInt64($0), Licensed_V1_ClientMessage.OneOf_Body.heartbeat(.init())) }).map {
            var message = Licensed_V1_ClientMessage()
            message.requestID = $0.0
            message.body = $0.1
            var frame = ByteBuffer()
            try frame.writeFrame(message)
            return Array(frame.readableBytesView)
        }
    }

    @Test("the replies to one read, and those one durable batch releases, go out gathered in one buffer each, in order")
    func gatheredReplies() throws {
        let fixture = try Fixture()
        // Hello and three heartbeats in one read: one buffer of four frames.
        try fixture.channel.writeInbound(fixture.channel.allocator.buffer(bytes: try Self.helloAndHeartbeats().flatMap { $0 }))
        var buffers = try Self.outboundBuffers(fixture.channel)
        #expect(buffers.count == 1)
        #expect(try buffers.flatMap(Self.frames).map(\.requestID) == [1, 2, 3, 4])
        fixture.log.makeDurable()
        // A check-out (held until durable), one refused at once (the only seat is taken), a heartbeat.
        let burst = try [(UInt64(5), Fixture.checkOut()), (6, Fixture.checkOut()), (7, .heartbeat(.init()))].flatMap { id, body in
            var message = Licensed_V1_ClientMessage()
            message.requestID = id
            message.body = body
            var frame = ByteBuffer()
            try frame.writeFrame(message)
            return Array(frame.readableBytesView)
        }
        try fixture.channel.writeInbound(fixture.channel.allocator.buffer(bytes: burst))
        buffers = try Self.outboundBuffers(fixture.channel)
        #expect(buffers.count == 1)
        let answered = try buffers.flatMap(Self.frames)
        #expect(answered.map(\.requestID) == [6, 7])
        #expect(answered.first?.error.code == .noSeats)
        fixture.log.makeDurable()
        fixture.channel.embeddedEventLoop.run()
        buffers = try Self.outboundBuffers(fixture.channel)
        #expect(buffers.count == 1)
        let granted = try buffers.flatMap(Self.frames)
        #expect(granted.map(\.requestID) == [5])
        #expect(granted.first?.checkOut.leaseID.count == 16)
        #expect(try fixture.handler.isConnected)
    }

    /// The buffers written to the channel since the last call, as written.
    static func outboundBuffers(_ channel: EmbeddedChannel) throws -> [ByteBuffer] {
        var buffers: [ByteBuffer] = []
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { buffers.append(buffer) }
        return buffers
    }

    /// The frames of one buffer, decoded.
    static func frames(_ buffer: ByteBuffer) throws -> [Licensed_V1_ServerMessage] {
        var buffer = buffer
        var out: [Licensed_V1_ServerMessage] = []
        while let length = buffer.readInteger(endianness: .big, as: UInt32.self) {
            let slice = buffer.readSlice(length: Int(length))
            let body = try #require(slice)
            out.append(try body.decodeMessage())
        }
        #expect(buffer.readableBytes == 0)
        return out
    }

    @Test("frames cut anywhere across reads, or several in one read, are each answered in order; between frames nothing is kept")
    func framing() throws {
        let bytes = try Self.helloAndHeartbeats().flatMap { $0 }
        // Every place for one cut, and one byte per read.
        // Two cuts close together: a read that ends one frame, holds the next whole and begins a third.
        let twoCuts: [[ArraySlice<UInt8>]] = [1, 3, 5, 17, 30].flatMap { gap in
            (0..<max(0, bytes.count - gap)).map { [bytes[..<$0], bytes[$0..<$0 + gap], bytes[($0 + gap)...]] }
        }
        let splits: [[ArraySlice<UInt8>]] =
            (0...bytes.count).map { [bytes[..<$0], bytes[$0...]] } + [bytes.indices.map { bytes[$0...$0] }] + twoCuts
        for reads in splits {
            let fixture = try Fixture()
            for read in reads where !read.isEmpty {
                try fixture.channel.writeInbound(fixture.channel.allocator.buffer(bytes: read))
            }
            let replies = try fixture.replies()
            #expect(replies.map(\.requestID) == [1, 2, 3, 4])
            #expect(replies.first?.hello.sessionID.count == 16)
            #expect(replies.dropFirst().allSatisfy { if case .heartbeat = $0.body { true } else { false } })
            #expect(try fixture.handler.partialFrame == nil)
            #expect(fixture.channel.isActive)
        }
    }

    @Test("a frame cut off by the client's half-close is refused; so is a length over the maximum, before its body arrives")
    func truncatedAndOversized() throws {
        let frames = try Self.helloAndHeartbeats()
        let truncated = try Fixture()
        try truncated.channel.writeInbound(truncated.channel.allocator.buffer(bytes: frames.flatMap { $0 }.dropLast(2)))
        #expect(try truncated.replies().map(\.requestID) == [1, 2, 3])
        #expect(try truncated.handler.partialFrame?.readableBytes == frames[3].count - 2)
        truncated.channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        let cut = try truncated.replies()
        #expect(cut.map(\.error.code) == [.invalidArgument])
        #expect(cut.first?.error.message.contains("middle of a frame") == true)
        #expect(!truncated.channel.isActive)

        // The length over the maximum arriving whole, or its four bytes cut anywhere across reads
        // after a frame that ended mid-read.
        for cut in 0...3 {
            let oversized = try Fixture()
            var announce = oversized.channel.allocator.buffer(capacity: 4)
            announce.writeInteger(UInt32(oversized.host.value.context.configuration.maxFrameBytes + 1), endianness: .big)
            let length = Array(announce.readableBytesView)
            try oversized.channel.writeInbound(oversized.channel.allocator.buffer(bytes: frames[0] + length[..<cut]))
            _ = try oversized.replies()
            if cut > 0 { #expect(try oversized.handler.partialFrame?.readableBytes == cut) }
            try oversized.channel.writeInbound(oversized.channel.allocator.buffer(bytes: length[cut...]))
            let refused = try oversized.replies()
            #expect(refused.map(\.error.code) == [.resourceExhausted], "cut after \(cut)")
            #expect(!oversized.channel.isActive)
        }
    }
}
