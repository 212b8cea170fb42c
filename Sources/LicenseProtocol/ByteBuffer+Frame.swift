public import NIOCore
public import SwiftProtobuf

extension ByteBuffer {
    /// Appends `message` as one frame: its 4-byte big-endian length, then its protobuf bytes.
    @discardableResult
    public mutating func writeFrame(_ message: some SwiftProtobuf.Message) throws -> Int {
        let body: [UInt8] = try message.serializedBytes()
        let written = self.writeInteger(UInt32(body.count), endianness: .big)
        return written + self.writeBytes(body)
    }

    /// Decodes the readable bytes as one protobuf message of type `M`.
    public func decodeMessage<M: SwiftProtobuf.Message>(as type: M.Type = M.self) throws -> M {
        // swift-protobuf parses from its own contiguous-bytes types; one copy of the body.
        try M(serializedBytes: self.getBytes(at: self.readerIndex, length: self.readableBytes) ?? [])
    }
}
