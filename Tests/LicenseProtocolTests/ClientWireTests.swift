import Foundation
import LicenseProtocol
import NIOCore
import SwiftProtobuf
import Testing

@Suite("A load generator's requests and replies by hand: what SwiftProtobuf writes and reads")
struct ClientWireTests {
    typealias Generator = ServerMessageWireTests.Generator

    /// The frame's body (after its 4-byte length, which must be right).
    static func body(_ buffer: ByteBuffer) throws -> ByteBuffer {
        var buffer = buffer
        let length = buffer.readInteger(endianness: .big, as: UInt32.self)
        #expect(length.map(Int.init) == buffer.readableBytes)
        return buffer
    }

    @Test("a template's frame is the message SwiftProtobuf writes with that request id, for ids of every length")
    func templates() throws {
        var checkOut = Licensed_V1_CheckOutRequest()
        checkOut.feature = "ünïcödé.cad"
        checkOut.count = 3
        var bodies: [Licensed_V1_ClientMessage.OneOf_Body] = [.checkOut(checkOut), .heartbeat(.init()), .status(.init())]
        var withLeases = Licensed_V1_HeartbeatRequest()
        withLeases.leaseIds = [Data(repeating: 7, count: 16), Data()]
        bodies.append(.heartbeat(withLeases))
        var random = Generator(state: 42)
        for body in bodies {
            var message = Licensed_V1_ClientMessage()
            message.requestID = 99
            message.body = body
            let template = try ClientWire.Template(message)
            for id in [0, 1, 127, 128, 16_383, 16_384, UInt64.max] + (0..<200).map({ _ in random.number() }) {
                var buffer = ByteBuffer()
                template.writeFrame(requestID: id, to: &buffer)
                message.requestID = id
                #expect(Array(buffer.readableBytesView) == (try ServerMessageWireTests.expectedFrame(message)))
            }
        }
    }

    @Test("a check-in's frame is the message SwiftProtobuf writes, and the server reads it as a plain check-in")
    func checkIns() throws {
        var random = Generator(state: 7)
        for _ in 0..<500 {
            let id = random.number()
            let lease = (high: random.next() << 11 | random.next() & 0x7FF, low: random.next() << 11 | random.next() & 0x7FF)
            var buffer = ByteBuffer()
            ClientWire.writeCheckInFrame(requestID: id, leaseID: lease, to: &buffer)
            var message = Licensed_V1_ClientMessage()
            message.requestID = id
            var checkIn = Licensed_V1_CheckInRequest()
            checkIn.leaseID = withUnsafeBytes(of: (lease.high.bigEndian, lease.low.bigEndian)) { Data($0) }
            message.checkIn = checkIn
            #expect(Array(buffer.readableBytesView) == (try ServerMessageWireTests.expectedFrame(message)))
            let read = try Self.body(buffer).withUnsafeReadableBytes(ClientMessageWire.plainCheckIn)
            #expect(read?.requestID == id && read?.leaseID.high == lease.high && read?.leaseID.low == lease.low)
        }
    }

    /// What SwiftProtobuf reads of the bytes, in `ClientWire.Reply`'s terms: nil when it reads no
    /// message, or one without a body.
    static func decoded(_ bytes: [UInt8]) -> ClientWire.Reply? {
        guard let message = try? Licensed_V1_ServerMessage(serializedBytes: bytes), let body = message.body else { return nil }
        let field: Int
        var leaseID: (high: UInt64, low: UInt64)?
        switch body {
        case .hello: field = 2
        case .checkOut(let reply):
            field = 3
            if reply.leaseID.count == 16 {
                leaseID = reply.leaseID.withUnsafeBytes {
                    (
                        UInt64(bigEndian: $0.loadUnaligned(as: UInt64.self)),
                        UInt64(bigEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
                    )
                }
            }
        case .checkIn: field = 4
        case .heartbeat: field = 5
        case .status: field = 9
        case .error: field = 15
        default: field = -1
        }
        return ClientWire.Reply(requestID: message.requestID, body: field, leaseID: leaseID)
    }

    static func replies(_ count: Int) -> [[UInt8]] {
        var random = Generator(state: 20_261_204)
        var messages = ServerMessageWireTests.messages(count).map { message -> [UInt8] in (try? message.serializedBytes()) ?? [] }
        for index in 0..<count / 3 {
            var message = Licensed_V1_ServerMessage()
            message.requestID = random.number()
            switch index % 3 {
            case 0:
                var status = Licensed_V1_StatusResponse()
                status.serverVersion = random.text()
                message.status = status
            case 1:
                var error = Licensed_V1_Error()
                error.message = random.text()
                message.error = error
            default:
                var hello = Licensed_V1_HelloResponse()
                hello.heartbeatIntervalMs = UInt32(truncatingIfNeeded: random.number())
                message.hello = hello
            }
            messages.append((try? message.serializedBytes()) ?? [])
        }
        return messages
    }

    @Test("replies of every shape: read as SwiftProtobuf reads them, a check-out's lease id when it is 16 bytes")
    func replies() throws {
        var read = 0
        for bytes in Self.replies(3_000) {
            let reply = bytes.withUnsafeBytes(ClientWire.reply)
            guard let expected = Self.decoded(bytes) else {
                #expect(reply == nil)
                continue
            }
            if expected.body == 3 && expected.leaseID == nil {
                // A check-out without a 16-byte lease id is left to SwiftProtobuf.
                #expect(reply == nil)
            } else {
                #expect(reply == expected)
                read += 1
            }
        }
        #expect(read > 2_500)
    }

    /// The bodies other than a check-out's are only skipped (their length checked), so bytes
    /// SwiftProtobuf would refuse inside one may still be read: where it reads a message, the two
    /// agree.
    @Test("damaged replies: where SwiftProtobuf reads a message, the same request id, body and lease id")
    func damaged() throws {
        var random = Generator(state: 3)
        var read = 0
        for var bytes in Self.replies(1_500) where !bytes.isEmpty {
            switch random.below(3) {
            case 0: bytes.removeLast(1 + random.below(bytes.count))
            case 1: bytes[random.below(bytes.count)] = UInt8(truncatingIfNeeded: random.next())
            default: bytes += bytes  // request id and body twice
            }
            guard let reply = bytes.withUnsafeBytes(ClientWire.reply) else { continue }
            read += 1
            guard let expected = Self.decoded(bytes) else { continue }
            #expect(expected.requestID == reply.requestID)
            #expect(expected.body == reply.body || expected.body == -1)
            if reply.leaseID != nil {
                #expect(expected.leaseID?.high == reply.leaseID?.high && expected.leaseID?.low == reply.leaseID?.low)
            }
        }
        #expect(read > 100)
    }
}
