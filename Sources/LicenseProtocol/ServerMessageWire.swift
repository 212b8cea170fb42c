import Foundation
public import NIOCore
import SwiftProtobuf

/// The replies of the hot path — check-out, check-in, heartbeat — laid out by hand in protobuf's
/// wire format, straight into the connection's buffer: the bytes SwiftProtobuf writes for the
/// same message (fields in number order, proto3 defaults left out; `ServerMessageWireTests`
/// holds the two to each other on random messages), for about a fifth of the instructions of its
/// visitor (`licensed-micro request`, callgrind). Any other reply, and any message carrying
/// unknown fields, is left to SwiftProtobuf.
public enum ServerMessageWire {
    /// Appends `message` as one frame (4-byte big-endian length, then its bytes) when its body
    /// is one of the replies laid out here; false, with nothing written, otherwise.
    public static func writeFrame(_ message: Licensed_V1_ServerMessage, to buffer: inout ByteBuffer) -> Bool {
        guard message.unknownFields.data.isEmpty else { return false }
        let requestID = message.requestID
        switch message.body {
        case .checkOut(let reply)?:
            guard reply.unknownFields.data.isEmpty else { return false }
            let fields = CheckOut(reply)
            Self.write(requestID: requestID, field: 3, body: fields.size, to: &buffer) { fields.write(&$0) }
        case .checkIn(let reply)?:
            guard reply.unknownFields.data.isEmpty else { return false }
            let size = Self.bytesSize(1, reply.leaseID) + reply.releasedAddons.reduce(0) { $0 + Self.repeatedSize(1, $1.count) }
            Self.write(requestID: requestID, field: 4, body: size, to: &buffer) { out in
                out.bytes(1, reply.leaseID)
                for id in reply.releasedAddons { out.repeated(2, id) }
            }
        case .heartbeat(let reply)?:
            guard reply.unknownFields.data.isEmpty else { return false }
            let renewed = UInt64(reply.renewed)
            let expires = UInt64(bitPattern: reply.expiresAtMs)
            let size =
                Self.varintSize(1, renewed) + Self.varintSize(1, expires)
                + reply.lostLeaseIds.reduce(0) { $0 + Self.repeatedSize(1, $1.count) }
            Self.write(requestID: requestID, field: 5, body: size, to: &buffer) { out in
                out.varint(1, renewed)
                out.varint(2, expires)
                for id in reply.lostLeaseIds { out.repeated(3, id) }
            }
        default:
            return false
        }
        return true
    }

    /// A granted check-out's reply, from the lease itself: the server writes it without building
    /// a `CheckOutResponse` (no lease id copied into `Data`, no message storage), the bytes
    /// SwiftProtobuf writes for the message `message` returns. A borrow's reply carries a
    /// signed token and goes through the message.
    public struct Grant: Sendable {
        /// The request answered.
        public var requestID: UInt64
        /// The lease id's first and last 8 bytes, big-endian.
        public var leaseID: (high: UInt64, low: UInt64)
        public var licenseID: String
        public var feature: String
        public var count: UInt32
        public var expiresAtMs: Int64
        public var overage: Bool
        public var warnings: [String]
        public var fencingToken: UInt64
        public var replayed: Bool

        /// A reply with every field given.
        public init(
            requestID: UInt64,
            leaseID: (high: UInt64, low: UInt64),
            licenseID: String,
            feature: String,
            count: UInt32,
            expiresAtMs: Int64,
            overage: Bool,
            warnings: [String],
            fencingToken: UInt64,
            replayed: Bool
        ) {
            self.requestID = requestID
            self.leaseID = leaseID
            self.licenseID = licenseID
            self.feature = feature
            self.count = count
            self.expiresAtMs = expiresAtMs
            self.overage = overage
            self.warnings = warnings
            self.fencingToken = fencingToken
            self.replayed = replayed
        }

        /// The same reply as a generated message (what the tests compare with, and what a
        /// borrow's reply starts from).
        public var message: Licensed_V1_ServerMessage {
            var response = Licensed_V1_CheckOutResponse()
            withUnsafeBytes(of: (self.leaseID.high.bigEndian, self.leaseID.low.bigEndian)) { response.leaseID = Data($0) }
            response.licenseID = self.licenseID
            response.feature = self.feature
            response.count = self.count
            response.expiresAtMs = self.expiresAtMs
            response.overage = self.overage
            response.warnings = self.warnings
            response.fencingToken = self.fencingToken
            response.replayed = self.replayed
            var message = Licensed_V1_ServerMessage()
            message.requestID = self.requestID
            message.checkOut = response
            return message
        }
    }

    /// Appends `grant` as one frame.
    public static func writeFrame(_ grant: Grant, to buffer: inout ByteBuffer) {
        let fields = CheckOut(grant)
        Self.write(requestID: grant.requestID, field: 3, body: fields.size, to: &buffer) { fields.write(&$0) }
    }

    /// A check-in's reply when it released no add-ons: only the lease id, written from its words.
    public struct Return: Sendable {
        /// The request answered.
        public var requestID: UInt64
        /// The lease id's first and last 8 bytes, big-endian.
        public var leaseID: (high: UInt64, low: UInt64)

        /// A reply for the lease `leaseID`.
        public init(requestID: UInt64, leaseID: (high: UInt64, low: UInt64)) {
            self.requestID = requestID
            self.leaseID = leaseID
        }

        /// The same reply as a generated message.
        public var message: Licensed_V1_ServerMessage {
            var response = Licensed_V1_CheckInResponse()
            withUnsafeBytes(of: (self.leaseID.high.bigEndian, self.leaseID.low.bigEndian)) { response.leaseID = Data($0) }
            var message = Licensed_V1_ServerMessage()
            message.requestID = self.requestID
            message.checkIn = response
            return message
        }
    }

    /// Appends `reply` as one frame.
    public static func writeFrame(_ reply: Return, to buffer: inout ByteBuffer) {
        Self.write(requestID: reply.requestID, field: 4, body: 18, to: &buffer) { out in
            out.leaseID(1, reply.leaseID)
        }
    }

    /// A check-out reply's fields, read once from the generated message or taken from a grant:
    /// one list of them, sized and written alike for both.
    private struct CheckOut {
        /// The message's bytes, or a grant's two words (never copied into `Data`).
        enum LeaseID {
            case data(Data)
            case words(high: UInt64, low: UInt64)
        }

        var leaseID: LeaseID
        var licenseID: String
        var feature: String
        var count: UInt64
        var expiresAtMs: UInt64
        var overage: Bool
        var warnings: [String]
        var borrowToken: Data
        var fencingToken: UInt64
        var replayed: Bool

        init(_ reply: Licensed_V1_CheckOutResponse) {
            self.leaseID = .data(reply.leaseID)
            self.licenseID = reply.licenseID
            self.feature = reply.feature
            self.count = UInt64(reply.count)
            self.expiresAtMs = UInt64(bitPattern: reply.expiresAtMs)
            self.overage = reply.overage
            self.warnings = reply.warnings
            self.borrowToken = reply.borrowToken
            self.fencingToken = reply.fencingToken
            self.replayed = reply.replayed
        }

        init(_ grant: Grant) {
            self.leaseID = .words(high: grant.leaseID.high, low: grant.leaseID.low)
            self.licenseID = grant.licenseID
            self.feature = grant.feature
            self.count = UInt64(grant.count)
            self.expiresAtMs = UInt64(bitPattern: grant.expiresAtMs)
            self.overage = grant.overage
            self.warnings = grant.warnings
            self.borrowToken = Data()
            self.fencingToken = grant.fencingToken
            self.replayed = grant.replayed
        }

        var size: Int {
            let leaseID =
                switch self.leaseID {
                case .data(let data): ServerMessageWire.bytesSize(1, data)
                case .words: 18
                }
            return leaseID + ServerMessageWire.bytesSize(1, self.licenseID.utf8.count)
                + ServerMessageWire.bytesSize(1, self.feature.utf8.count) + ServerMessageWire.varintSize(1, self.count)
                + ServerMessageWire.varintSize(1, self.expiresAtMs) + (self.overage ? 2 : 0)
                + self.warnings.reduce(0) { $0 + ServerMessageWire.repeatedSize(1, $1.utf8.count) }
                + ServerMessageWire.bytesSize(1, self.borrowToken) + ServerMessageWire.varintSize(1, self.fencingToken)
                + (self.replayed ? 2 : 0)
        }

        func write(_ out: inout Writer) {
            switch self.leaseID {
            case .data(let data): out.bytes(1, data)
            case .words(let high, let low): out.leaseID(1, (high, low))
            }
            out.string(2, self.licenseID)
            out.string(3, self.feature)
            out.varint(4, self.count)
            out.varint(5, self.expiresAtMs)
            if self.overage { out.varint(6, 1) }
            for warning in self.warnings { out.repeated(7, warning) }
            out.bytes(8, self.borrowToken)
            out.varint(9, self.fencingToken)
            if self.replayed { out.varint(10, 1) }
        }
    }

    /// The frame of a `ServerMessage { request_id, <field> { body } }` whose body is `bodySize`
    /// bytes written by `fill`.
    private static func write(
        requestID: UInt64,
        field: Int,
        body bodySize: Int,
        to buffer: inout ByteBuffer,
        _ fill: (inout Writer) -> Void
    ) {
        let size = Self.varintSize(1, requestID) + Self.tagSize(field) + Self.varintLength(UInt64(bodySize)) + bodySize
        buffer.writeInteger(UInt32(size), endianness: .big)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { raw in
            var out = Writer(base: raw.baseAddress!, capacity: raw.count)
            out.varint(1, requestID)
            out.tag(field, wireType: 2)
            out.rawVarint(UInt64(bodySize))
            fill(&out)
            precondition(out.offset == size, "a hand-laid reply's size was worked out wrong")
            return size
        }
    }

    // MARK: - Sizes (0 for a proto3 default, which is not written)

    static func varintLength(_ value: UInt64) -> Int { value == 0 ? 1 : (64 - value.leadingZeroBitCount + 6) / 7 }
    static func tagSize(_ field: Int) -> Int { Self.varintLength(UInt64(field << 3)) }
    static func varintSize(_ tagLength: Int, _ value: UInt64) -> Int { value == 0 ? 0 : tagLength + Self.varintLength(value) }
    static func bytesSize(_ tagLength: Int, _ count: Int) -> Int { count == 0 ? 0 : Self.repeatedSize(tagLength, count) }
    static func bytesSize(_ tagLength: Int, _ data: Data) -> Int { Self.bytesSize(tagLength, data.count) }
    /// An element of a repeated field: written even when empty.
    static func repeatedSize(_ tagLength: Int, _ count: Int) -> Int { tagLength + Self.varintLength(UInt64(count)) + count }

    /// Writes through a pointer into room reserved for exactly the message (and checks that it
    /// stays in the room: a size worked out wrong stops the process, never writes past it).
    struct Writer {
        let base: UnsafeMutableRawPointer
        let capacity: Int
        var offset = 0

        mutating func byte(_ value: UInt8) {
            precondition(self.offset < self.capacity)
            self.base.storeBytes(of: value, toByteOffset: self.offset, as: UInt8.self)
            self.offset += 1
        }

        mutating func rawVarint(_ value: UInt64) {
            var rest = value
            while rest >= 0x80 {
                self.byte(UInt8(truncatingIfNeeded: rest) | 0x80)
                rest >>= 7
            }
            self.byte(UInt8(rest))
        }

        mutating func tag(_ field: Int, wireType: Int) { self.rawVarint(UInt64(field << 3 | wireType)) }

        mutating func varint(_ field: Int, _ value: UInt64) {
            guard value != 0 else { return }
            self.tag(field, wireType: 0)
            self.rawVarint(value)
        }

        mutating func raw(_ bytes: UnsafeRawBufferPointer) {
            guard let source = bytes.baseAddress, !bytes.isEmpty else { return }
            precondition(self.offset + bytes.count <= self.capacity)
            (self.base + self.offset).copyMemory(from: source, byteCount: bytes.count)
            self.offset += bytes.count
        }

        /// A lease id from its two words: 18 bytes (tag, length 16, the id big-endian).
        mutating func leaseID(_ field: Int, _ id: (high: UInt64, low: UInt64)) {
            self.tag(field, wireType: 2)
            self.rawVarint(16)
            withUnsafeBytes(of: (id.high.bigEndian, id.low.bigEndian)) { self.raw($0) }
        }

        mutating func bytes(_ field: Int, _ data: Data) {
            guard !data.isEmpty else { return }
            self.repeated(field, data)
        }

        mutating func repeated(_ field: Int, _ data: Data) {
            self.tag(field, wireType: 2)
            self.rawVarint(UInt64(data.count))
            data.withUnsafeBytes { self.raw($0) }
        }

        mutating func string(_ field: Int, _ text: String) {
            guard !text.isEmpty else { return }
            self.repeated(field, text)
        }

        mutating func repeated(_ field: Int, _ text: String) {
            var text = text
            text.withUTF8 { utf8 in
                self.tag(field, wireType: 2)
                self.rawVarint(UInt64(utf8.count))
                self.raw(UnsafeRawBufferPointer(utf8))
            }
        }
    }
}
