import Foundation
public import NIOCore

/// The requests of the hot path — check-out, check-in, heartbeat — read by hand from protobuf's
/// wire format, in the layout every encoder of this protocol writes (each field at most once, a
/// message's fields in number order). Anything else — another request, an unknown field, a
/// repeated or out-of-order field, a wrong wire type, a value out of its field's range, text that
/// is not UTF-8, a truncated frame — is left to SwiftProtobuf, which decides it (errors
/// included): what is read here is always what SwiftProtobuf reads from the same bytes
/// (`ClientMessageWireTests` holds the two to each other on random and on damaged frames).
public enum ClientMessageWire {
    /// The request in `bytes`, or nil when it is not one read here.
    public static func decode(_ bytes: UnsafeRawBufferPointer) -> Licensed_V1_ClientMessage? {
        var reader = WireReader(bytes: bytes)
        var message = Licensed_V1_ClientMessage()
        var sawRequestID = false
        var sawBody = false
        while !reader.atEnd {
            guard let (field, wireType) = Self.tag(&reader) else { return nil }
            switch (field, wireType) {
            case (1, 0):
                guard !sawRequestID, let value = reader.varint() else { return nil }
                message.requestID = value
                sawRequestID = true
            case (3, 2), (4, 2), (5, 2):
                guard !sawBody, let range = reader.range() else { return nil }
                sawBody = true
                var body = WireReader(bytes: UnsafeRawBufferPointer(rebasing: bytes[range]))
                switch field {
                case 3:
                    guard let request = Self.checkOut(&body) else { return nil }
                    message.checkOut = request
                case 4:
                    guard let request = Self.checkIn(&body) else { return nil }
                    message.checkIn = request
                default:
                    guard let request = Self.heartbeat(&body) else { return nil }
                    message.heartbeat = request
                }
            default:
                return nil
            }
        }
        return sawBody ? message : nil
    }

    /// A check-in of one lease and nothing else — `request_id` (if any) and a `check_in` holding
    /// only a 16-byte `lease_id`, each once — read without building the message: the request
    /// id and the lease id as two big-endian words (`ID128(bytes:)`). nil for anything else, which
    /// `decode` or SwiftProtobuf decides. What it reads is what `decode` reads (tests hold them).
    public static func plainCheckIn(_ bytes: UnsafeRawBufferPointer) -> (requestID: UInt64, leaseID: (high: UInt64, low: UInt64))? {
        var reader = WireReader(bytes: bytes)
        var requestID: UInt64 = 0
        var sawRequestID = false
        var leaseID: (high: UInt64, low: UInt64)?
        while !reader.atEnd {
            guard let (field, wireType) = Self.tag(&reader) else { return nil }
            switch (field, wireType) {
            case (1, 0):
                guard !sawRequestID, let value = reader.varint() else { return nil }
                requestID = value
                sawRequestID = true
            case (4, 2):
                // The body: lease_id's tag (field 1, length-delimited), its length 16, its bytes.
                guard leaseID == nil, let range = reader.range(), range.count == 18, bytes[range.lowerBound] == 0x0A,
                    bytes[range.lowerBound + 1] == 16
                else { return nil }
                leaseID = (
                    UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: range.lowerBound + 2, as: UInt64.self)),
                    UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: range.lowerBound + 10, as: UInt64.self))
                )
            default:
                return nil
            }
        }
        return leaseID.map { (requestID, $0) }
    }

    private static func checkOut(_ reader: inout WireReader) -> Licensed_V1_CheckOutRequest? {
        var request = Licensed_V1_CheckOutRequest()
        var last = 0
        while !reader.atEnd {
            guard let (field, wireType) = Self.tag(&reader), field > last else { return nil }
            last = field
            switch (field, wireType) {
            case (1, 2):
                guard let text = reader.string() else { return nil }
                request.feature = text
            case (2, 2):
                guard let text = reader.string() else { return nil }
                request.version = text
            case (3, 0):
                guard let value = reader.varint(), let count = UInt32(exactly: value) else { return nil }
                request.count = count
            case (4, 0):
                guard let value = reader.varint(), let waitMs = UInt32(exactly: value) else { return nil }
                request.waitMs = waitMs
            case (5, 0):
                guard let value = reader.varint() else { return nil }
                request.borrowMs = value
            case (6, 0):
                guard let value = reader.varint() else { return nil }
                request.buildDateMs = Int64(bitPattern: value)
            case (7, 2):
                guard let bytes = Self.data(&reader) else { return nil }
                request.checkoutKey = bytes
            default:
                return nil
            }
        }
        return request
    }

    private static func checkIn(_ reader: inout WireReader) -> Licensed_V1_CheckInRequest? {
        var request = Licensed_V1_CheckInRequest()
        guard !reader.atEnd else { return request }
        guard let (field, wireType) = Self.tag(&reader), field == 1, wireType == 2, let bytes = Self.data(&reader), reader.atEnd
        else { return nil }
        request.leaseID = bytes
        return request
    }

    private static func heartbeat(_ reader: inout WireReader) -> Licensed_V1_HeartbeatRequest? {
        var request = Licensed_V1_HeartbeatRequest()
        while !reader.atEnd {
            guard let (field, wireType) = Self.tag(&reader), field == 1, wireType == 2, let bytes = Self.data(&reader) else { return nil }
            request.leaseIds.append(bytes)
        }
        return request
    }

    /// A field's number and wire type (field numbers 1 to 2^29 - 1).
    private static func tag(_ reader: inout WireReader) -> (Int, Int)? {
        guard let key = reader.varint(), key >> 3 > 0, key >> 3 < 1 << 29 else { return nil }
        return (Int(key >> 3), Int(key & 7))
    }

    /// A bytes field, as `Data`.
    private static func data(_ reader: inout WireReader) -> Data? {
        // `Data(bytes:count:)`: the generic sequence initialiser cost 400 instructions a field.
        reader.range().map { range in range.isEmpty ? Data() : Data(bytes: reader.bytes.baseAddress! + range.lowerBound, count: range.count)
        }
    }
}

extension ByteBuffer {
    /// The readable bytes as a client's request: check-out, check-in and heartbeat read by hand
    /// (`ClientMessageWire`), anything else by SwiftProtobuf.
    public func decodeClientMessage() throws -> Licensed_V1_ClientMessage {
        if let message = self.withUnsafeReadableBytes(ClientMessageWire.decode) { return message }
        return try self.decodeMessage()
    }
}
