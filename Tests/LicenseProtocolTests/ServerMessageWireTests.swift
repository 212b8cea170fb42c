import Foundation
import LicenseProtocol
import NIOCore
import SwiftProtobuf
import Testing

@Suite("Hand-laid replies: the bytes SwiftProtobuf writes")
struct ServerMessageWireTests {
    /// A small deterministic generator: the same messages on every run.
    struct Generator {
        var state: UInt64
        mutating func next() -> UInt64 {
            self.state = self.state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return self.state >> 11
        }
        mutating func below(_ bound: Int) -> Int { Int(self.next() % UInt64(bound)) }
        mutating func flag() -> Bool { self.below(2) == 0 }
        /// 0, small, or any value (negative included when signed), with equal odds.
        mutating func number() -> UInt64 {
            switch self.below(3) {
            case 0: 0
            case 1: UInt64(self.below(300))
            default: self.next() << 11 | self.next() & 0x7FF
            }
        }
        mutating func data() -> Data {
            let count = [0, 16, 1, 200][self.below(4)]
            return Data((0..<count).map { _ in UInt8(truncatingIfNeeded: self.next()) })
        }
        mutating func text() -> String {
            ["", "cad", "lic-001", "ünïcödé ✓", String(repeating: "w", count: 140), "tab\tnew\nline \"q\""][self.below(6)]
        }
    }

    static func messages(_ count: Int) -> [Licensed_V1_ServerMessage] {
        var random = Generator(state: 20_261_203)
        return (0..<count).map { index in
            var message = Licensed_V1_ServerMessage()
            message.requestID = random.number()
            switch index % 3 {
            case 0:
                var reply = Licensed_V1_CheckOutResponse()
                if random.below(5) > 0 {
                    reply.leaseID = random.data()
                    reply.licenseID = random.text()
                    reply.feature = random.text()
                    reply.count = UInt32(truncatingIfNeeded: random.number())
                    reply.expiresAtMs = Int64(bitPattern: random.number())
                    reply.overage = random.flag()
                    reply.warnings = (0..<random.below(4)).map { _ in random.text() }
                    reply.borrowToken = random.data()
                    reply.fencingToken = random.number()
                    reply.replayed = random.flag()
                }
                message.checkOut = reply
            case 1:
                var reply = Licensed_V1_CheckInResponse()
                reply.leaseID = random.data()
                reply.releasedAddons = (0..<random.below(4)).map { _ in random.data() }
                message.checkIn = reply
            default:
                var reply = Licensed_V1_HeartbeatResponse()
                reply.renewed = UInt32(truncatingIfNeeded: random.number())
                reply.expiresAtMs = Int64(bitPattern: random.number())
                reply.lostLeaseIds = (0..<random.below(4)).map { _ in random.data() }
                message.heartbeat = reply
            }
            return message
        }
    }

    /// `message` as one frame, as SwiftProtobuf serializes it.
    static func expectedFrame(_ message: some SwiftProtobuf.Message) throws -> [UInt8] {
        let body: [UInt8] = try message.serializedBytes()
        return withUnsafeBytes(of: UInt32(body.count).bigEndian, Array.init) + body
    }

    @Test("check-out, check-in and heartbeat replies of every shape: the same frame, byte for byte")
    func sameBytes() throws {
        var laidOut = 0
        for message in Self.messages(3_000) {
            var direct = ByteBuffer()
            #expect(ServerMessageWire.writeFrame(message, to: &direct))
            laidOut += 1
            let expected = try Self.expectedFrame(message)
            #expect(Array(direct.readableBytesView) == expected, "\(message)")
            // And the frame decodes back to the message.
            let body = ByteBuffer(bytes: expected.dropFirst(4))
            #expect(try body.decodeMessage(as: Licensed_V1_ServerMessage.self) == message)
        }
        #expect(laidOut == 3_000)
    }

    @Test("a grant written from the lease: the frame SwiftProtobuf writes for the same reply, after what the buffer holds")
    func grants() throws {
        var random = Generator(state: 20_261_204)
        var buffer = ByteBuffer(bytes: [7])
        var expected: [UInt8] = [7]
        for _ in 0..<3_000 {
            let grant = ServerMessageWire.Grant(
                requestID: random.number(),
                leaseID: (random.next() << 11 | random.next() & 0x7FF, random.number()),
                licenseID: random.text(),
                feature: random.text(),
                count: UInt32(truncatingIfNeeded: random.number()),
                expiresAtMs: Int64(bitPattern: random.number()),
                overage: random.flag(),
                warnings: (0..<random.below(4)).map { _ in random.text() },
                fencingToken: random.number(),
                replayed: random.flag()
            )
            var direct = ByteBuffer()
            ServerMessageWire.writeFrame(grant, to: &direct)
            let frame = try Self.expectedFrame(grant.message)
            #expect(Array(direct.readableBytesView) == frame, "\(grant.message)")
            ServerMessageWire.writeFrame(grant, to: &buffer)
            expected += frame
            // The message holds the lease id as its 16 bytes, big-endian.
            let id = grant.message.checkOut.leaseID
            #expect(id.count == 16)
            #expect(id.prefix(8).reduce(0) { $0 << 8 | UInt64($1) } == grant.leaseID.high)
            #expect(id.suffix(8).reduce(0) { $0 << 8 | UInt64($1) } == grant.leaseID.low)
        }
        #expect(Array(buffer.readableBytesView) == expected)
    }

    @Test("a check-in's reply written from the lease id: the frame SwiftProtobuf writes for the same reply")
    func returns() throws {
        var random = Generator(state: 20_261_205)
        for _ in 0..<1_000 {
            let reply = ServerMessageWire.Return(
                requestID: random.number(),
                leaseID: (random.number(), random.next() << 11 | random.next() & 0x7FF)
            )
            var direct = ByteBuffer(bytes: [1, 2])
            ServerMessageWire.writeFrame(reply, to: &direct)
            #expect(Array(direct.readableBytesView) == [1, 2] + (try Self.expectedFrame(reply.message)), "\(reply.message)")
            let id = reply.message.checkIn.leaseID
            #expect(id.count == 16 && reply.message.checkIn.releasedAddons.isEmpty)
            #expect(id.prefix(8).reduce(0) { $0 << 8 | UInt64($1) } == reply.leaseID.high)
            #expect(id.suffix(8).reduce(0) { $0 << 8 | UInt64($1) } == reply.leaseID.low)
        }
    }

    @Test("any other reply, or one with unknown fields, goes through SwiftProtobuf (the same frame all the same)")
    func leftToSwiftProtobuf() throws {
        var error = Licensed_V1_ServerMessage()
        error.requestID = 7
        error.error.code = .noSeats
        error.error.message = "none"
        var unknownOuter = Self.messages(1)[0]
        try unknownOuter.merge(serializedBytes: [0xF8, 0x06, 0x01] as [UInt8])  // field 111, varint 1
        var unknownInner = Self.messages(2)[1]
        var inner = unknownInner.checkIn
        try inner.merge(serializedBytes: [0xA8, 0x06, 0x05] as [UInt8])  // field 101, varint 5
        unknownInner.checkIn = inner
        for message in [error, unknownOuter, unknownInner] {
            var direct = ByteBuffer()
            #expect(!ServerMessageWire.writeFrame(message, to: &direct))
            #expect(direct.readableBytes == 0)
            var framed = ByteBuffer()
            let written = try framed.writeFrame(message)
            #expect(Array(framed.readableBytesView) == (try Self.expectedFrame(message)))
            #expect(written == framed.readableBytes)
        }
    }

    @Test("writeFrame of a reply appends after what the buffer holds and says how much it wrote")
    func appends() throws {
        var buffer = ByteBuffer(bytes: [9, 9])
        var expected: [UInt8] = [9, 9]
        for message in Self.messages(30) {
            let written = try buffer.writeFrame(message)
            let frame = try Self.expectedFrame(message)
            #expect(written == frame.count)
            expected += frame
        }
        #expect(Array(buffer.readableBytesView) == expected)
    }
}
