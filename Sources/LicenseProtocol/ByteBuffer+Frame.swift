public import NIOCore
public import SwiftProtobuf

extension ByteBuffer {
    /// Appends `message` as one frame: its 4-byte big-endian length, then its protobuf bytes.
    @discardableResult
    public mutating func writeFrame(_ message: some SwiftProtobuf.Message) throws -> Int {
        try self.writeSerializedFrame(message)
    }

    /// Appends a server's reply as one frame: the replies of the hot path laid out by hand
    /// (`ServerMessageWire`, the same bytes), any other through SwiftProtobuf.
    @discardableResult
    public mutating func writeFrame(_ message: Licensed_V1_ServerMessage) throws -> Int {
        let start = self.writerIndex
        if ServerMessageWire.writeFrame(message, to: &self) { return self.writerIndex - start }
        return try self.writeSerializedFrame(message)
    }

    private mutating func writeSerializedFrame(_ message: some SwiftProtobuf.Message) throws -> Int {
        let body: [UInt8] = try message.serializedBytes()
        let written = self.writeInteger(UInt32(body.count), endianness: .big)
        return written + self.writeBytes(body)
    }

    /// Decodes the readable bytes as one protobuf message of type `M`, in place.
    public func decodeMessage<M: SwiftProtobuf.Message>(as type: M.Type = M.self) throws -> M {
        try M(serializedBytes: ReadableBytes(self))
    }
}

/// A buffer's readable bytes as swift-protobuf's contiguous bytes: a message decodes from the
/// frame where it lies, not from a copy into an array (a malloc and a copy per request).
struct ReadableBytes: SwiftProtobufContiguousBytes {
    var buffer: ByteBuffer

    init(_ buffer: ByteBuffer) { self.buffer = buffer }
    init(repeating: UInt8, count: Int) { self.buffer = ByteBuffer(repeating: repeating, count: count) }
    init<S: Sequence>(_ sequence: S) where S.Element == UInt8 { self.buffer = ByteBuffer(bytes: sequence) }

    var count: Int { self.buffer.readableBytes }

    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try self.buffer.withUnsafeReadableBytes(body)
    }

    mutating func withUnsafeMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        try self.buffer.withUnsafeMutableReadableBytes(body)
    }
}
