public import NIOCore
import SwiftProtobuf

/// The client's side of the hot path, for a load generator that sends as many requests as a
/// server answers (`licensed-bench`): requests written from bytes serialized once, and replies
/// read for their request id, their kind and a granted lease's id without building a message.
/// Through SwiftProtobuf a check-out + check-in pair cost the generator about as much CPU as it
/// cost the server, on the two cores they share. The bytes are SwiftProtobuf's
/// (`ClientWireTests` holds the two to each other); anything else goes through SwiftProtobuf.
package enum ClientWire {
    /// A request with a fixed body: its `ClientMessage` serialized without `request_id` (field
    /// 1, which SwiftProtobuf writes first and leaves out when 0), so that a frame is the
    /// length, the request id's tag and varint, then these bytes.
    package struct Template: Sendable {
        package let body: [UInt8]

        /// `message`'s body; its `requestID` is ignored.
        package init(_ message: Licensed_V1_ClientMessage) throws {
            var message = message
            message.requestID = 0
            self.body = try message.serializedBytes()
        }

        /// Appends the request numbered `requestID` as one frame.
        package func writeFrame(requestID: UInt64, to buffer: inout ByteBuffer) {
            ClientWire.writeHeader(requestID: requestID, bodySize: self.body.count, to: &buffer)
            buffer.writeBytes(self.body)
        }
    }

    /// Appends a check-in of the lease `leaseID` (16 bytes) numbered `requestID` as one frame:
    /// `check_in` (field 4) holding only `lease_id` (field 1).
    package static func writeCheckInFrame(requestID: UInt64, leaseID: (high: UInt64, low: UInt64), to buffer: inout ByteBuffer) {
        Self.writeHeader(requestID: requestID, bodySize: 20, to: &buffer)
        // Field 4, length-delimited, 18 bytes: field 1, length-delimited, 16 bytes.
        buffer.writeInteger(UInt32(0x2212_0A10), endianness: .big)
        buffer.writeInteger(leaseID.high, endianness: .big)
        buffer.writeInteger(leaseID.low, endianness: .big)
    }

    /// A frame's length (of the request id's field and a body of `bodySize` bytes, which the
    /// caller writes next) and the request id's field (none for 0).
    private static func writeHeader(requestID: UInt64, bodySize: Int, to buffer: inout ByteBuffer) {
        let idSize = requestID == 0 ? 0 : 1 + ServerMessageWire.varintLength(requestID)
        buffer.reserveCapacity(minimumWritableBytes: 4 + idSize + bodySize)
        buffer.writeInteger(UInt32(idSize + bodySize), endianness: .big)
        if requestID != 0 {
            buffer.writeInteger(UInt8(0x08))
            var value = requestID
            while value >= 0x80 {
                buffer.writeInteger(UInt8(truncatingIfNeeded: value) | 0x80)
                value >>= 7
            }
            buffer.writeInteger(UInt8(value))
        }
    }

    /// What a reply is, read from its bytes.
    package struct Reply: Sendable, Equatable {
        /// The request it answers (0: an event the server pushed).
        package var requestID: UInt64
        /// Its body's field number in `ServerMessage` (3 a check-out's, 4 a check-in's, 5 a
        /// heartbeat's, 9 a status's, 15 an error's, …): the one length-delimited field besides
        /// the request id, so a field unknown to this build is reported by its number too.
        package var body: Int
        /// A check-out's lease id when it is 16 bytes, as two big-endian words.
        package var leaseID: (high: UInt64, low: UInt64)?

        package init(requestID: UInt64, body: Int, leaseID: (high: UInt64, low: UInt64)?) {
            self.requestID = requestID
            self.body = body
            self.leaseID = leaseID
        }

        package static func == (a: Reply, b: Reply) -> Bool {
            a.requestID == b.requestID && a.body == b.body && a.leaseID?.high == b.leaseID?.high && a.leaseID?.low == b.leaseID?.low
        }
    }

    /// Reads a `ServerMessage`'s request id, its body's field number and a check-out's lease
    /// id; nil unless it is a request id and one body, each at most once, and a check-out's
    /// `lease_id` is there once. A body other than a check-out's is skipped, not read: bytes that
    /// SwiftProtobuf would refuse inside it are not noticed (a server's replies are SwiftProtobuf's
    /// or `ServerMessageWire`'s). Where SwiftProtobuf reads the message, it reads the same (tests
    /// hold them).
    package static func reply(_ bytes: UnsafeRawBufferPointer) -> Reply? {
        var reader = WireReader(bytes: bytes)
        var reply = Reply(requestID: 0, body: 0, leaseID: nil)
        var sawRequestID = false
        while !reader.atEnd {
            guard let key = reader.varint(), key >> 3 > 0, key >> 3 < 1 << 29 else { return nil }
            switch (key >> 3, key & 7) {
            case (1, 0):
                guard !sawRequestID, let value = reader.varint() else { return nil }
                reply.requestID = value
                sawRequestID = true
            case (let field, 2) where field >= 2 && reply.body == 0:
                guard let range = reader.range() else { return nil }
                reply.body = Int(field)
                if field == 3 {
                    guard let leaseID = Self.leaseID(UnsafeRawBufferPointer(rebasing: bytes[range])) else { return nil }
                    reply.leaseID = leaseID
                }
            default:
                return nil
            }
        }
        return reply.body == 0 ? nil : reply
    }

    /// A `CheckOutResponse`'s `lease_id` (field 1) when it is there once and 16 bytes long, every
    /// other field well-formed; nil otherwise.
    private static func leaseID(_ bytes: UnsafeRawBufferPointer) -> (high: UInt64, low: UInt64)? {
        var reader = WireReader(bytes: bytes)
        var leaseID: (high: UInt64, low: UInt64)?
        while !reader.atEnd {
            guard let key = reader.varint(), key >> 3 > 0, key >> 3 < 1 << 29 else { return nil }
            if key == 0x0A {
                guard leaseID == nil, let range = reader.range(), range.count == 16 else { return nil }
                leaseID = (
                    UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: range.lowerBound, as: UInt64.self)),
                    UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: range.lowerBound + 8, as: UInt64.self))
                )
            } else {
                guard reader.skip(wireType: key & 7) else { return nil }
            }
        }
        return leaseID
    }
}
