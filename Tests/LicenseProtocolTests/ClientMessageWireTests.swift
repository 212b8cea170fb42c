import Foundation
import LicenseProtocol
import NIOCore
import SwiftProtobuf
import Testing

@Suite("Hand-read requests: what SwiftProtobuf reads")
struct ClientMessageWireTests {
    typealias Generator = ServerMessageWireTests.Generator

    static func requests(_ count: Int, seed: UInt64 = 20_261_203) -> [Licensed_V1_ClientMessage] {
        var random = Generator(state: seed)
        return (0..<count).map { index in
            var message = Licensed_V1_ClientMessage()
            message.requestID = random.number()
            switch index % 3 {
            case 0:
                var request = Licensed_V1_CheckOutRequest()
                if random.below(5) > 0 {
                    request.feature = random.text()
                    request.version = random.text()
                    request.count = UInt32(truncatingIfNeeded: random.number())
                    request.waitMs = UInt32(truncatingIfNeeded: random.number())
                    request.borrowMs = random.number()
                    request.buildDateMs = Int64(bitPattern: random.number())
                    request.checkoutKey = random.data()
                }
                message.checkOut = request
            case 1:
                var request = Licensed_V1_CheckInRequest()
                request.leaseID = random.data()
                message.checkIn = request
            default:
                var request = Licensed_V1_HeartbeatRequest()
                request.leaseIds = (0..<random.below(5)).map { _ in random.data() }
                message.heartbeat = request
            }
            return message
        }
    }

    static func fast(_ bytes: [UInt8]) -> Licensed_V1_ClientMessage? {
        bytes.withUnsafeBytes(ClientMessageWire.decode)
    }

    @Test("check-out, check-in and heartbeat requests of every shape read as SwiftProtobuf reads them")
    func sameMessages() throws {
        for message in Self.requests(3_000) {
            let bytes: [UInt8] = try message.serializedBytes()
            let read = try #require(Self.fast(bytes), "\(message)")
            #expect(read == message)
            #expect(try ByteBuffer(bytes: bytes).decodeClientMessage() == message)
        }
    }

    /// `plainCheckIn` of `bytes`, as the message SwiftProtobuf would make of it.
    static func plainCheckIn(_ bytes: [UInt8]) -> Licensed_V1_ClientMessage? {
        bytes.withUnsafeBytes(ClientMessageWire.plainCheckIn).map { read in
            var message = Licensed_V1_ClientMessage()
            message.requestID = read.requestID
            var words = (read.leaseID.high.bigEndian, read.leaseID.low.bigEndian)
            message.checkIn.leaseID = withUnsafeBytes(of: &words) { Data($0) }
            return message
        }
    }

    @Test("a plain check-in (one 16-byte lease id) is read as SwiftProtobuf reads it, and nothing else is")
    func plainCheckIns() throws {
        var plain = 0
        for message in Self.requests(3_000) + Self.requests(3_000, seed: 5) {
            let bytes: [UInt8] = try message.serializedBytes()
            let read = Self.plainCheckIn(bytes)
            if case .checkIn(let request) = message.body, request.leaseID.count == 16 {
                #expect(read == message, "\(message)")
                plain += 1
            } else {
                #expect(read == nil, "\(message)")
            }
        }
        #expect(plain > 300)
        // Damaged frames: whatever is read is what SwiftProtobuf reads.
        var random = Generator(state: 11)
        var readByHand = 0
        for message in Self.requests(900, seed: 42) where message.checkIn.leaseID.count == 16 {
            let original: [UInt8] = try message.serializedBytes()
            for _ in 0..<40 {
                var bytes = original
                switch random.below(3) {
                case 0: bytes[random.below(bytes.count)] = UInt8(truncatingIfNeeded: random.next())
                case 1: bytes.removeSubrange(random.below(bytes.count)...)
                default: bytes.insert(UInt8(truncatingIfNeeded: random.next()), at: random.below(bytes.count + 1))
                }
                guard let read = Self.plainCheckIn(bytes) else { continue }
                readByHand += 1
                #expect(read == (try Licensed_V1_ClientMessage(serializedBytes: bytes)), "\(bytes)")
                #expect(read == Self.fast(bytes), "\(bytes)")
            }
        }
        #expect(readByHand > 500)
        // Layouts at the edges: read here only when SwiftProtobuf reads a plain check-in from them.
        let id = [UInt8](repeating: 7, count: 16)
        let cases: [(String, [UInt8], Bool)] = [
            ("request_id after the body", [0x22, 0x12, 0x0A, 0x10] + id + [0x08, 0x01], true),
            ("no request_id", [0x22, 0x12, 0x0A, 0x10] + id, true),
            ("a lease id of 17 bytes", [0x22, 0x13, 0x0A, 0x11] + id + [0x00], false),
            ("no lease id", [0x22, 0x00], false),
            ("two bodies", [0x08, 0x01, 0x22, 0x12, 0x0A, 0x10] + id + [0x22, 0x12, 0x0A, 0x10] + id, false),
            ("a tag of two bytes", [0x22, 0x13, 0x8A, 0x00, 0x10] + id, false),
            ("a check-out", [0x1A, 0x12, 0x0A, 0x10] + id, false),
        ]
        for (name, bytes, plain) in cases {
            let read = Self.plainCheckIn(bytes)
            #expect((read != nil) == plain, "\(name)")
            if let read { #expect(read == (try Licensed_V1_ClientMessage(serializedBytes: bytes)), "\(name)") }
        }
    }

    @Test("every other layout is left to SwiftProtobuf")
    func leftToSwiftProtobuf() throws {
        var hello = Licensed_V1_ClientMessage()
        hello.requestID = 1
        hello.hello.clientName = "x"
        let checkOut: [UInt8] = try Self.requests(1)[0].serializedBytes()
        let cases: [(String, [UInt8])] = [
            ("another request", try hello.serializedBytes()),
            ("no body", [0x08, 0x05]),
            ("nothing", []),
            ("an unknown top-level field", checkOut + [0xF8, 0x06, 0x01]),
            ("request_id twice", [0x08, 0x01] + checkOut),
            ("two bodies", [0x22, 0x00, 0x2A, 0x00]),
            ("fields out of order", [0x1A, 0x06, 0x18, 0x01, 0x0A, 0x02, 0x61, 0x62]),
            ("a field twice", [0x1A, 0x06, 0x0A, 0x01, 0x61, 0x0A, 0x01, 0x62]),
            ("a count past 32 bits", [0x1A, 0x06, 0x18, 0x80, 0x80, 0x80, 0x80, 0x10]),
            ("text that is not UTF-8", [0x1A, 0x04, 0x0A, 0x02, 0xC3, 0x28]),
            ("a wrong wire type", [0x1A, 0x02, 0x0D, 0x00]),
            ("a truncated body", [0x1A, 0x05, 0x0A, 0x01, 0x61]),
            ("a varint of eleven bytes", [0x08] + [UInt8](repeating: 0xFF, count: 10) + [0x01, 0x22, 0x00]),
            ("lease_id twice", [0x22, 0x04, 0x0A, 0x00, 0x0A, 0x00]),
            ("a heartbeat's unknown field", [0x2A, 0x02, 0x10, 0x01]),
        ]
        for (name, bytes) in cases {
            #expect(Self.fast(bytes) == nil, "\(name)")
            // Whatever SwiftProtobuf makes of it, the server's decoding makes the same.
            let expected = try? Licensed_V1_ClientMessage(serializedBytes: bytes)
            let actual = try? ByteBuffer(bytes: bytes).decodeClientMessage()
            #expect(actual == expected, "\(name)")
        }
    }

    @Test("damaged frames: what is read by hand is always what SwiftProtobuf reads")
    func damagedFrames() throws {
        var random = Generator(state: 7)
        var readByHand = 0
        for message in Self.requests(600, seed: 99) {
            let original: [UInt8] = try message.serializedBytes()
            for _ in 0..<20 {
                var bytes = original
                switch random.below(3) {
                case 0 where !bytes.isEmpty: bytes[random.below(bytes.count)] = UInt8(truncatingIfNeeded: random.next())
                case 1 where !bytes.isEmpty: bytes.removeSubrange(random.below(bytes.count)...)
                default: bytes.insert(UInt8(truncatingIfNeeded: random.next()), at: random.below(bytes.count + 1))
                }
                guard let read = Self.fast(bytes) else { continue }
                readByHand += 1
                let expected = try Licensed_V1_ClientMessage(serializedBytes: bytes)
                #expect(read == expected, "\(bytes)")
            }
        }
        // Many damaged frames are still well-formed requests: the comparison above is not empty.
        #expect(readByHand > 1_000)
    }
}
