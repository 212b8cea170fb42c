import LicenseProtocol
import NIOCore
import NIOEmbedded
import NIOTestUtils
import Testing

@Suite("Length-prefixed frames")
struct FrameDecoderTests {
    static func frame(_ body: [UInt8]) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32(body.count), endianness: .big)
        buffer.writeBytes(body)
        return buffer
    }

    @Test("frames split at every byte boundary decode to the same bodies")
    func verifier() throws {
        let bodies: [[UInt8]] = [[], [1], Array(repeating: 7, count: 300), [0, 0, 0, 4]]
        let pairs = bodies.map { (Self.frame($0), [ByteBuffer(bytes: $0)]) }
        try ByteToMessageDecoderVerifier.verifyDecoder(
            inputOutputPairs: pairs,
            decoderFactory: { FrameDecoder(maximumFrameLength: 1024) }
        )
    }

    @Test("a length above the maximum fails before the body arrives")
    func oversized() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder(maximumFrameLength: 100)))
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32(101), endianness: .big)
        #expect(throws: FrameError.frameTooLarge(length: 101, maximum: 100)) { try channel.writeInbound(buffer) }
        _ = try? channel.finish()
    }

    @Test("a frame exactly at the maximum is accepted")
    func atMaximum() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder(maximumFrameLength: 100)))
        try channel.writeInbound(Self.frame(Array(repeating: 1, count: 100)))
        let body = try #require(try channel.readInbound(as: ByteBuffer.self))
        #expect(body.readableBytes == 100)
        #expect(try channel.finish().isClean)
    }

    @Test("a connection closed in the middle of a frame is a truncated frame")
    func truncated() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder(maximumFrameLength: 100)))
        var partial = Self.frame([1, 2, 3, 4, 5])
        partial.moveWriterIndex(to: 6)
        try channel.writeInbound(partial)
        #expect(try channel.readInbound(as: ByteBuffer.self) == nil)
        #expect(throws: FrameError.truncatedFrame(receivedBytes: 6)) { try channel.finish() }
    }

    @Test("writeFrame and decodeMessage round-trip a ClientMessage")
    func messageRoundTrip() throws {
        var message = Licensed_V1_ClientMessage()
        message.requestID = 42
        message.hello.user = "ada"
        message.hello.protocolVersion = .protocolVersion1
        var buffer = ByteBuffer()
        try buffer.writeFrame(message)
        let body = try #require(try FrameDecoder.readFrame(from: &buffer, maximumFrameLength: 1024))
        #expect(try body.decodeMessage(as: Licensed_V1_ClientMessage.self) == message)
        #expect(buffer.readableBytes == 0)
    }
}
