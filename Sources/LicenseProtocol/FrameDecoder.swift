public import NIOCore

/// Splits a byte stream into length-prefixed frames.
///
/// ```
/// +--------+--------+--------+--------+----------------------+
/// |          length N (big-endian)    |  N bytes of protobuf |
/// +--------+--------+--------+--------+----------------------+
/// ```
///
/// A length above `maximumFrameLength` is refused before any of the body is buffered, so a
/// hostile peer cannot make the server allocate more than one maximum frame per connection.
public struct FrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = ByteBuffer

    /// Largest body accepted; longer frames fail with ``FrameError/frameTooLarge(length:maximum:)``.
    public let maximumFrameLength: Int

    /// Creates a decoder that accepts bodies of up to `maximumFrameLength` bytes.
    public init(maximumFrameLength: Int = FrameDecoder.defaultMaximumFrameLength) {
        self.maximumFrameLength = maximumFrameLength
    }

    /// 64 KiB, the protocol's default maximum frame.
    public static let defaultMaximumFrameLength = 64 * 1024

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let frame = try Self.readFrame(from: &buffer, maximumFrameLength: self.maximumFrameLength) else {
            return .needMoreData
        }
        context.fireChannelRead(Self.wrapInboundOut(frame))
        return .continue
    }

    public mutating func decodeLast(
        context: ChannelHandlerContext,
        buffer: inout ByteBuffer,
        seenEOF: Bool
    ) throws -> DecodingState {
        while try self.decode(context: context, buffer: &buffer) == .continue {}
        if buffer.readableBytes > 0 {
            let pending = buffer.readableBytes
            buffer.moveReaderIndex(forwardBy: pending)
            throw FrameError.truncatedFrame(receivedBytes: pending)
        }
        return .needMoreData
    }

    /// Reads one whole frame body from `buffer`, or returns nil (consuming nothing) when more
    /// bytes are needed. Shared by the server pipeline and the client.
    public static func readFrame(from buffer: inout ByteBuffer, maximumFrameLength: Int) throws -> ByteBuffer? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, endianness: .big, as: UInt32.self) else {
            return nil
        }
        guard Int(length) <= maximumFrameLength else {
            throw FrameError.frameTooLarge(length: Int(length), maximum: maximumFrameLength)
        }
        guard buffer.readableBytes >= 4 + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: 4)
        return buffer.readSlice(length: Int(length))
    }
}

/// Why a byte stream could not be split into frames.
public enum FrameError: Error, Equatable, CustomStringConvertible {
    /// The length prefix announced more than the maximum.
    case frameTooLarge(length: Int, maximum: Int)
    /// The peer closed in the middle of a frame.
    case truncatedFrame(receivedBytes: Int)

    public var description: String {
        switch self {
        case .frameTooLarge(let length, let maximum):
            "frame of \(length) bytes exceeds the maximum of \(maximum) bytes"
        case .truncatedFrame(let received):
            "connection closed in the middle of a frame (\(received) bytes of it received)"
        }
    }
}
