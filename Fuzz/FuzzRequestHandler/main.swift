// libFuzzer target: the server's request handler (the session handler, which also frames the
// bytes) on a real ledger with a write-ahead log and audit trail, served by a real event loop;
// each input is one connection (a socketpair), written by the fuzzer and half-closed, then read
// to the end.
//
// The first input byte picks how the connection starts (bits 0-1: no token, a client token, an
// admin token or a wrong one; bit 2: the harness sends a valid Hello first, so the fuzzer spends
// its time past the handshake; bit 3: user ada or bob), bits 4-7 the size of the pieces the rest
// is written in. Every tenth input moves the clock and runs the reaper.
//
// Checks: no crash and no hang; everything the server writes is whole frames holding
// ServerMessages; seats in use of the HARD-only feature never exceed its count.
import Foundation
import LicenseCore
import LicenseCrypto
import LicenseProtocol
import LicenseStore
import Logging
import NIOCore
import NIOPosix
import SwiftProtobuf

@testable import LicenseServer

final class Harness: @unchecked Sendable {
    static let adminToken = "fuzz-admin"
    static let clientToken = "fuzz-client"

    let loop: any EventLoop
    let clock = ManualClock(startMs: 1_790_000_000_000)
    let context: ServerContext
    let host: NIOLoopBoundBox<LedgerHost>
    var inputs = 0

    init() {
        signal(SIGPIPE, SIG_IGN)
        let directory = NSTemporaryDirectory() + "licensed-fuzz-\(getpid())"
        try? FileManager.default.removeItem(atPath: directory)
        var configuration = ServerConfiguration()
        configuration.stateDir = directory
        configuration.sync = .none
        configuration.maxFrameBytes = 4096
        configuration.maxQueueLength = 8
        configuration.maxLeasesPerSession = 16
        configuration.badTokenDelayMs = 0
        configuration.snapshotEveryRecords = 5_000
        configuration.tokens = [
            .init(hash: SHA256.hash(Array(Self.adminToken.utf8)), role: .admin),
            .init(hash: SHA256.hash(Array(Self.clientToken.utf8)), role: .client),
        ]
        configuration.groups = ["/eng": ["ada", "@ws1"]]
        var logger = Logger(label: "fuzz")
        logger.logLevel = .critical
        var context = try! ServerContext(
            configuration: configuration,
            serverKey: try! Ed25519PrivateKey.generate(),
            clock: self.clock,
            logger: logger
        )
        context.onLogFailure = { message in fatalError(message) }
        self.context = context
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        self.loop = loop
        var loaded = LicenseLoadResult()
        loaded.accepted = Self.licenses()
        // The daemon's own way of opening the ledger (audit trail, recovery, log, host).
        self.host = try! LedgerHost.open(context: context, licenses: loaded, log: .local(), on: loop).host
    }

    static func licenses() -> [VerifiedLicense] {
        func license(_ id: String, _ overage: Licensed_V1_OveragePolicy, _ features: [(String, UInt32)]) -> VerifiedLicense {
            var license = Licensed_V1_License()
            license.id = id
            license.model = .floating
            license.overage = overage
            license.features = features.map { name, count in
                var feature = Licensed_V1_Feature()
                feature.name = name
                feature.count = count
                return feature
            }
            return VerifiedLicense(license: license, keyID: "k", file: "fuzz.lic", block: 1)
        }
        var nodeLocked = license("N", .hard, [("viewer", 3)])
        nodeLocked.license.model = .nodeLocked
        return [license("H", .hard, [("cad", 4), ("sim", 2)]), license("T", .trueUp, [("cad", 2), ("report", 1)]), nodeLocked]
    }

    /// The bytes a connection sends for `input`.
    static func stream(_ input: UnsafeRawBufferPointer) -> (stream: [UInt8], pieceSize: Int) {
        let mode = input.first ?? 0
        var stream: [UInt8] = []
        if mode & 4 != 0 {
            var hello = Licensed_V1_ClientMessage()
            hello.requestID = 1
            hello.hello.protocolVersion = .protocolVersion1
            hello.hello.user = mode & 8 != 0 ? "ada" : "bob"
            hello.hello.host = "ws1"
            hello.hello.token = ["", Self.clientToken, Self.adminToken, "wrong"][Int(mode & 3)]
            var buffer = ByteBufferAllocator().buffer(capacity: 64)
            _ = try! buffer.writeFrame(hello)
            stream += buffer.readableBytesView
        }
        stream += input.dropFirst()
        return (stream, Int(mode >> 4) * 16 + 1)
    }

    func run(_ input: UnsafeRawBufferPointer) {
        guard let mode = input.first else { return }
        self.inputs += 1
        if self.inputs % 10 == 0 {
            self.clock.advance(byMs: Int64(mode) * 1_000)
            try! self.loop.submit { self.host.value.reap() }.wait()
        }
        var fds: [Int32] = [0, 0]
        precondition(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0, "socketpair failed")
        let context = self.context
        let host = self.host
        _ = try! ClientBootstrap(group: self.loop)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(SessionHandler(context: context, host: host.value))
                }
            }
            .withConnectedSocket(fds[0])
            .wait()
        let client = fds[1]
        let (stream, pieceSize) = Self.stream(input)
        var offset = 0
        while offset < stream.count {
            let end = min(stream.count, offset + pieceSize)
            let written = stream[offset..<end].withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if written < 0, errno == EINTR { continue }  // libFuzzer's SIGALRM (its -timeout) interrupts system calls
            if written <= 0 { break }  // the server closed the connection
            offset += written
        }
        shutdown(client, Int32(SHUT_WR))
        var replies: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        let deadline = DispatchTime.now().uptimeNanoseconds + 10_000_000_000
        while true {
            var poller = pollfd(fd: client, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, 1_000)
            if ready < 0, errno == EINTR { continue }
            if ready == 0 {
                precondition(DispatchTime.now().uptimeNanoseconds < deadline, "the server neither answered nor closed within 10 s")
                continue
            }
            precondition(ready == 1, "poll failed: errno \(errno)")
            let n = chunk.withUnsafeMutableBytes { recv(client, $0.baseAddress, $0.count, 0) }
            if n < 0, errno == EINTR { continue }
            if n <= 0 { break }
            replies += chunk[0..<n]
        }
        close(client)
        Self.checkReplies(replies)
        let inUse = try! self.loop.submit { self.host.value.ledger.seatsInUse(of: "sim") }.wait()
        precondition(inUse <= 2, "\(inUse) seats of the HARD feature 'sim' are in use; its licence has 2")
    }

    static func checkReplies(_ bytes: [UInt8]) {
        var written = ByteBufferAllocator().buffer(capacity: bytes.count)
        written.writeBytes(bytes)
        while written.readableBytes > 0 {
            guard let frame = try! FrameDecoder.readFrame(from: &written, maximumFrameLength: 1 << 24) else {
                preconditionFailure("the server wrote a partial frame")
            }
            do {
                _ = try frame.decodeMessage(as: Licensed_V1_ServerMessage.self)
            } catch {
                preconditionFailure("the server wrote a frame that is not a ServerMessage: \(error)")
            }
        }
    }
}

nonisolated(unsafe) let harness = Harness()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRequestHandler(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    harness.run(UnsafeRawBufferPointer(start: start, count: count))
    return 0
}

/// The seed corpus: a Hello-prefixed stream of each kind of request (`scripts/fuzz --seeds`
/// writes it when LICENSED_FUZZ_SEEDS names a directory).
enum Seeds {
    static func frames(_ bodies: [Licensed_V1_ClientMessage.OneOf_Body]) -> [UInt8] {
        var buffer = ByteBufferAllocator().buffer(capacity: 256)
        for (index, body) in bodies.enumerated() {
            var message = Licensed_V1_ClientMessage()
            message.requestID = UInt64(index + 2)
            message.body = body
            _ = try! buffer.writeFrame(message)
        }
        return Array(buffer.readableBytesView)
    }

    static func all() -> [String: [UInt8]] {
        func checkOut(_ feature: String, count: UInt32 = 1, waitMs: UInt32 = 0, borrowMs: UInt64 = 0)
            -> Licensed_V1_ClientMessage.OneOf_Body
        {
            var request = Licensed_V1_CheckOutRequest()
            request.feature = feature
            request.count = count
            request.waitMs = waitMs
            request.borrowMs = borrowMs
            request.checkoutKey = Data("key-\(feature)".utf8)
            return .checkOut(request)
        }
        var activate = Licensed_V1_ActivateRequest()
        activate.licenseID = "N"
        activate.fingerprint = ["a1b2c3", "d4e5f6"]
        activate.machineName = "ws1"
        var revoke = Licensed_V1_RevokeRequest()
        revoke.user = "bob"
        var status = Licensed_V1_StatusRequest()
        status.includeHolders = true
        var assign = Licensed_V1_AssignRequest()
        assign.part = "N"
        var row = Licensed_V1_DeviceRow()
        row.deviceID = "dev-1"
        row.fingerprint = ["f1"]
        assign.rows = [row]
        var checkIn = Licensed_V1_CheckInRequest()
        checkIn.leaseID = Data(repeating: 7, count: 16)
        let client: UInt8 = 0x05  // Hello with a client token, user bob
        let admin: UInt8 = 0x0E  // Hello with the admin token, user ada
        var hello = Licensed_V1_Hello()
        hello.protocolVersion = .protocolVersion1
        hello.user = "eve"
        hello.token = "wrong"
        return [
            "checkout": [client] + frames([checkOut("cad"), checkOut("sim", count: 2), .heartbeat(.init()), .checkIn(checkIn)]),
            "checkout-queue": [client] + frames([checkOut("sim", count: 2), checkOut("sim", waitMs: 5_000), .status(.init())]),
            "checkout-borrow": [client] + frames([checkOut("report", borrowMs: 86_400_000), checkOut("cad", count: 5)]),
            "activate": [client] + frames([.activate(activate), .validateActivation(.init()), .deactivate(.init())]),
            "admin": [admin] + frames([.leases(.init()), .queue(.init()), .revoke(revoke), .status(status), .activations(.init())]),
            "admin-assign": [admin] + frames([.assign(assign), .history(.init()), .reload(.init())]),
            "client-denied": [client] + frames([.leases(.init()), .revoke(revoke), .snapshot(.init())]),
            "raw-hello": [0x00] + frames([.hello(hello), checkOut("cad")]),
            "garbage": [0x06, 0, 0, 0, 3, 0xFF, 0xFF, 0xFF],
            "oversized": [0x06, 0x7F, 0xFF, 0xFF, 0xFF],
        ]
    }
}

@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>>>
) -> CInt {
    if let directory = ProcessInfo.processInfo.environment["LICENSED_FUZZ_SEEDS"] {
        for (name, bytes) in Seeds.all() {
            FileManager.default.createFile(atPath: "\(directory)/request-handler/\(name)", contents: Data(bytes))
            // The frame decoder's input: a piece-size byte, then the same stream without the mode byte.
            FileManager.default.createFile(atPath: "\(directory)/frame-decoder/\(name)", contents: Data([7] + bytes.dropFirst()))
        }
        exit(0)
    }
    return 0
}
