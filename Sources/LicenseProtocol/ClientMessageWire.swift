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
        var reader = Reader(bytes)
        var message = Licensed_V1_ClientMessage()
        var sawRequestID = false
        var sawBody = false
        while !reader.atEnd {
            guard let (field, wireType) = reader.tag() else { return nil }
            switch (field, wireType) {
            case (1, 0):
                guard !sawRequestID, let value = reader.varint() else { return nil }
                message.requestID = value
                sawRequestID = true
            case (3, 2), (4, 2), (5, 2):
                guard !sawBody, var body = reader.lengthDelimited() else { return nil }
                sawBody = true
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

    private static func checkOut(_ reader: inout Reader) -> Licensed_V1_CheckOutRequest? {
        var request = Licensed_V1_CheckOutRequest()
        var last = 0
        while !reader.atEnd {
            guard let (field, wireType) = reader.tag(), field > last else { return nil }
            last = field
            switch (field, wireType) {
            case (1, 2):
                guard let text = reader.text() else { return nil }
                request.feature = text
            case (2, 2):
                guard let text = reader.text() else { return nil }
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
                guard let bytes = reader.lengthDelimited() else { return nil }
                request.checkoutKey = bytes.data
            default:
                return nil
            }
        }
        return request
    }

    private static func checkIn(_ reader: inout Reader) -> Licensed_V1_CheckInRequest? {
        var request = Licensed_V1_CheckInRequest()
        guard !reader.atEnd else { return request }
        guard let (field, wireType) = reader.tag(), field == 1, wireType == 2, let bytes = reader.lengthDelimited(), reader.atEnd
        else { return nil }
        request.leaseID = bytes.data
        return request
    }

    private static func heartbeat(_ reader: inout Reader) -> Licensed_V1_HeartbeatRequest? {
        var request = Licensed_V1_HeartbeatRequest()
        while !reader.atEnd {
            guard let (field, wireType) = reader.tag(), field == 1, wireType == 2, let bytes = reader.lengthDelimited() else { return nil }
            request.leaseIds.append(bytes.data)
        }
        return request
    }

    /// Reads fields from a range of bytes; nil from any read past its end or malformed.
    struct Reader {
        private let bytes: UnsafeRawBufferPointer
        private var offset: Int
        private let end: Int

        init(_ bytes: UnsafeRawBufferPointer) {
            self.bytes = bytes
            self.offset = 0
            self.end = bytes.count
        }

        private init(_ bytes: UnsafeRawBufferPointer, from offset: Int, to end: Int) {
            self.bytes = bytes
            self.offset = offset
            self.end = end
        }

        var atEnd: Bool { self.offset >= self.end }

        /// A varint of at most 10 bytes whose value fits 64 bits.
        mutating func varint() -> UInt64? {
            var value: UInt64 = 0
            var shift: UInt64 = 0
            while self.offset < self.end {
                let byte = self.bytes[self.offset]
                self.offset += 1
                if shift == 63, byte > 1 { return nil }
                value |= UInt64(byte & 0x7F) << shift
                if byte < 0x80 { return value }
                shift += 7
                if shift > 63 { return nil }
            }
            return nil
        }

        /// A field's number and wire type (field numbers 1 to 2^29 - 1).
        mutating func tag() -> (Int, Int)? {
            guard let key = self.varint(), key >> 3 > 0, key >> 3 < 1 << 29 else { return nil }
            return (Int(key >> 3), Int(key & 7))
        }

        /// The bytes of a length-delimited field, as a reader of their own.
        mutating func lengthDelimited() -> Reader? {
            guard let length = self.varint(), length <= UInt64(self.end - self.offset) else { return nil }
            let start = self.offset
            self.offset += Int(length)
            return Reader(self.bytes, from: start, to: self.offset)
        }

        /// A string field's text; nil when it is not UTF-8.
        mutating func text() -> String? {
            guard let field = self.lengthDelimited() else { return nil }
            let bytes = field.remaining
            // ASCII (feature names, versions) is UTF-8 as it stands: made without the generic
            // validation, which cost about 950 instructions a string.
            if bytes.allSatisfy({ $0 < 0x80 }) { return String(decoding: bytes, as: UTF8.self) }
            return String(validating: bytes, as: UTF8.self)
        }

        private var remaining: UnsafeBufferPointer<UInt8> {
            UnsafeBufferPointer(rebasing: self.bytes.assumingMemoryBound(to: UInt8.self)[self.offset..<self.end])
        }

        /// The bytes left, as `Data`.
        var data: Data { Data(self.remaining) }
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
