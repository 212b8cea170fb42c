// libFuzzer target: the length-prefixed frame decoder and ClientMessage parsing, fed the input in
// pieces (the first byte sets the piece size) as a connection delivers it.
//
// Checks: no crash; no frame longer than the limit; every frame's bytes are exactly its length
// prefix; a ClientMessage that parses re-encodes and parses back to the same message.
import LicenseProtocol
import NIOCore
import NIOEmbedded
import SwiftProtobuf

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzFrameDecoder(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let input = UnsafeRawBufferPointer(start: start, count: count)
    guard let first = input.first else { return 0 }
    let pieceSize = Int(first % 64) + 1
    let maximum = 1024
    let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder(maximumFrameLength: maximum)))
    var offset = 1
    var failed = false
    while offset < input.count, !failed {
        let end = min(input.count, offset + pieceSize)
        var buffer = channel.allocator.buffer(capacity: end - offset)
        buffer.writeBytes(UnsafeRawBufferPointer(rebasing: input[offset..<end]))
        offset = end
        do { try channel.writeInbound(buffer) } catch { failed = true }
        while let frame = try? channel.readInbound(as: ByteBuffer.self) {
            precondition(frame.readableBytes <= maximum, "a frame over the limit passed the decoder")
            if let message = try? frame.decodeMessage(as: Licensed_V1_ClientMessage.self) {
                var again = ByteBufferAllocator().buffer(capacity: 64)
                _ = try! again.writeFrame(message)
                var copy = again
                let length = copy.readInteger(as: UInt32.self)!
                precondition(Int(length) == copy.readableBytes, "the length prefix does not match the frame")
                let back = try! copy.decodeMessage(as: Licensed_V1_ClientMessage.self)
                precondition(back == message, "a ClientMessage did not survive a re-encoding")
            }
        }
    }
    _ = try? channel.finish()
    return 0
}
