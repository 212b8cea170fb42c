import LicenseClient
import LicenseProtocol
import LicenseServer
import LicenseTestSupport
import NIOCore
import Testing

@Suite("Protocol server over real TCP")
struct ProtocolServerTests {
    @Test("Hello round trip: session id, timings, server key, server time")
    func helloRoundTrip() async throws {
        try await withTestServer(configure: {
            $0.leaseTTLMs = 45_000; $0.heartbeatIntervalMs = 15_000
        }) { server, port in
            let connection = try await RawConnection.connect(port: port)
            let reply = try await connection.hello(requestID: 77)
            #expect(reply.requestID == 77)
            guard case .hello(let hello) = reply.body else {
                Issue.record("expected HelloResponse, got \(reply)")
                return
            }
            #expect(hello.sessionID.count == 16)
            #expect(hello.leaseTtlMs == 45_000)
            #expect(hello.heartbeatIntervalMs == 15_000)
            #expect(hello.serverPublicKey.count == 32)
            #expect(hello.serverTimeMs == 1_790_000_000_000)
            #expect(hello.serverVersion == ServerContext.serverVersion)
            await connection.close()
        }
    }

    @Test("the Swift client library opens a session")
    func clientLibraryHello() async throws {
        try await withTestServer { _, port in
            let connection = try await LicenseConnection.connect(host: "127.0.0.1", port: port)
            var hello = Licensed_V1_Hello()
            hello.protocolVersion = .protocolVersion1
            hello.user = "grace"
            let first = try await connection.hello(hello)
            #expect(first.sessionID.count == 16)
            // A second Hello on an open session is refused, and the connection stays usable.
            let error = await #expect(throws: LicenseClientError.self) { try await connection.hello(hello) }
            #expect(error?.code == .invalidArgument)
            guard case .status(let status) = try await connection.request(.status(.init())) else {
                Issue.record("expected a StatusResponse")
                return
            }
            #expect(status.serverPublicKey == first.serverPublicKey)
            var holders = Licensed_V1_StatusRequest()
            holders.includeHolders = true
            let denied = await #expect(throws: LicenseClientError.self) { try await connection.request(.status(holders)) }
            #expect(denied?.code == .permissionDenied)
            await connection.close()
        }
    }

    /// Every bad-input case: what is sent, the error code expected, and that the server closes.
    enum BadInput: String, CaseIterable, CustomTestStringConvertible {
        case garbageFrame, oversizedLength, nonHelloFirst, truncatedFrame

        var testDescription: String { self.rawValue }

        var expectedCode: Licensed_V1_Error.Code {
            switch self {
            case .garbageFrame, .nonHelloFirst, .truncatedFrame: .invalidArgument
            case .oversizedLength: .resourceExhausted
            }
        }

        func send(on connection: RawConnection) async throws {
            switch self {
            case .garbageFrame:
                // Wire type 7 does not exist: no protobuf parser accepts this.
                try await connection.send([0, 0, 0, 6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
            case .oversizedLength:
                try await connection.send([0x7f, 0xff, 0xff, 0xff, 1, 2, 3])
            case .nonHelloFirst:
                var message = Licensed_V1_ClientMessage()
                message.requestID = 5
                message.checkOut.feature = "cad.solver"
                try await connection.send(message)
            case .truncatedFrame:
                try await connection.send([0, 0, 0, 100, 1, 2, 3])
                await connection.finishSending()
            }
        }
    }

    @Test("bad input gets an Error and a close while another connection keeps working", arguments: BadInput.allCases)
    func badInput(_ input: BadInput) async throws {
        try await withTestServer { server, port in
            let good = try await RawConnection.connect(port: port)
            guard case .hello = try await good.hello(requestID: 1).body else {
                Issue.record("good connection did not get a HelloResponse")
                return
            }
            let bad = try await RawConnection.connect(port: port)
            try await input.send(on: bad)
            let (messages, closed) = try await bad.readUntilClosed()
            #expect(closed, "the server must close the connection")
            #expect(messages.count == 1)
            guard case .error(let error) = messages.first?.body else {
                Issue.record("expected an Error, got \(messages)")
                return
            }
            #expect(error.code == input.expectedCode)
            #expect(!error.message.isEmpty)
            if input == .nonHelloFirst { #expect(messages.first?.requestID == 5) }

            // The well-behaved connection is unaffected.
            var again = Licensed_V1_ClientMessage()
            again.requestID = 2
            again.hello = .init()
            try await good.send(again)
            let reply = try await good.readMessage()
            #expect(reply.requestID == 2)
            guard case .error(let stillOpen) = reply.body, stillOpen.code == .invalidArgument else {
                Issue.record("expected the open session's answer to a second Hello, got \(reply)")
                return
            }
            // And new connections are still served.
            let fresh = try await RawConnection.connect(port: port)
            guard case .hello = try await fresh.hello().body else {
                Issue.record("a new connection did not get a HelloResponse")
                return
            }
            await good.close()
            await fresh.close()
        }
    }

    @Test("a message body the server does not know gets UNIMPLEMENTED and the connection stays open")
    func unknownBody() async throws {
        try await withTestServer { _, port in
            let connection = try await RawConnection.connect(port: port)
            _ = try await connection.hello()
            // request_id 9 and field 99 (length-delimited), unknown to this server.
            try await connection.send([0, 0, 0, 5, 0x08, 0x09, 0x9a, 0x06, 0x00])
            let reply = try await connection.readMessage()
            #expect(reply.requestID == 9)
            guard case .error(let error) = reply.body else {
                Issue.record("expected Error, got \(reply)")
                return
            }
            #expect(error.code == .unimplemented)
            // Still open: a further request is answered.
            var message = Licensed_V1_ClientMessage()
            message.requestID = 10
            message.hello = .init()
            try await connection.send(message)
            #expect(try await connection.readMessage().requestID == 10)
            await connection.close()
        }
    }

    @Test("a connection that never says Hello is closed after the hello timeout")
    func helloTimeout() async throws {
        try await withTestServer(configure: { $0.helloTimeoutMs = 200 }) { _, port in
            let silent = try await RawConnection.connect(port: port)
            let (messages, closed) = try await silent.readUntilClosed(timeout: .seconds(10))
            #expect(closed)
            guard case .error(let error) = messages.first?.body else {
                Issue.record("expected an Error before the close, got \(messages)")
                return
            }
            #expect(error.code == .resourceExhausted)
        }
    }

    @Test("pipelined requests in one write are all answered in order")
    func pipelined() async throws {
        try await withTestServer { _, port in
            let connection = try await RawConnection.connect(port: port)
            var bytes = ByteBuffer()
            for id in 1...50 {
                var message = Licensed_V1_ClientMessage()
                message.requestID = UInt64(id)
                message.hello.user = "u\(id)"
                try bytes.writeFrame(message)
            }
            try await connection.send(Array(bytes.readableBytesView))
            var ids: [UInt64] = []
            for _ in 1...50 { ids.append(try await connection.readMessage().requestID) }
            #expect(ids == Array(1...50))
            await connection.close()
        }
    }

    @Test("graceful shutdown tells open sessions and closes them")
    func shutdownEvent() async throws {
        let connection = try await withTestServer { _, port in
            let connection = try await RawConnection.connect(port: port)
            _ = try await connection.hello()
            return connection
        }
        let (messages, closed) = try await connection.readUntilClosed()
        #expect(closed)
        #expect(messages.map(\.requestID) == [0])
        #expect(messages.first?.event.kind == .serverShuttingDown)
    }
}
