import Foundation
public import LicenseProtocol
import NIOCore
import NIOPosix
import SwiftProtobuf

/// A TCP connection that sends any bytes at all, for tests of what the server does with bad input.
public final class RawConnection: Sendable {
    private let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>

    private init(channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>, reader: AsyncThrowingStream<ByteBuffer, any Error>) {
        self.channel = channel
        self.pendingBox = PendingBox(stream: reader)
    }

    /// Connects to 127.0.0.1:`port`.
    public static func connect(port: Int) async throws -> RawConnection {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(
                        wrappingChannelSynchronously: channel,
                        configuration: .init(isOutboundHalfClosureEnabled: true)
                    )
                }
            }
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: ByteBuffer.self)
        let inbound = channel.inbound
        Task {
            do {
                for try await chunk in inbound { continuation.yield(chunk) }
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        return RawConnection(channel: channel, reader: stream)
    }

    /// Sends raw bytes.
    public func send(_ bytes: [UInt8]) async throws {
        try await self.channel.outbound.write(ByteBuffer(bytes: bytes))
    }

    /// Sends `message` as one frame.
    public func send(_ message: Licensed_V1_ClientMessage) async throws {
        var buffer = ByteBuffer()
        try buffer.writeFrame(message)
        try await self.channel.outbound.write(buffer)
    }

    /// Sends a Hello with `requestID` (resuming `resume` when given) and returns the reply.
    public func hello(requestID: UInt64 = 1, user: String = "ada", resume: [UInt8] = [], clientTimeMs: Int64 = 0) async throws
        -> Licensed_V1_ServerMessage
    {
        var message = Licensed_V1_ClientMessage()
        message.requestID = requestID
        message.hello.protocolVersion = .protocolVersion1
        message.hello.clientName = "test"
        message.hello.user = user
        message.hello.host = "test-host"
        message.hello.resumeSessionID = Data(resume)
        message.hello.clientTimeMs = clientTimeMs
        try await self.send(message)
        return try await self.readMessage()
    }

    /// Half-closes: no more bytes from this side.
    public func finishSending() async {
        self.channel.outbound.finish()
    }

    /// Reads every message until the server closes; `closed` is false when it did not close
    /// within `timeout`.
    public func readUntilClosed(timeout: Duration = .seconds(10)) async throws -> (messages: [Licensed_V1_ServerMessage], closed: Bool) {
        var messages: [Licensed_V1_ServerMessage] = []
        while true {
            do {
                messages.append(try await self.readMessage(timeout: timeout))
            } catch is PendingBox.Closed {
                return (messages, true)
            } catch is PendingBox.Timeout {
                return (messages, false)
            }
        }
    }

    private let pendingBox: PendingBox

    /// Reads the next whole frame as a ServerMessage; throws `PendingBox.Closed` when the server
    /// closed first and `PendingBox.Timeout` after `timeout`.
    public func readMessage(timeout: Duration = .seconds(10)) async throws -> Licensed_V1_ServerMessage {
        let box = self.pendingBox
        return try await withThrowingTaskGroup(of: Licensed_V1_ServerMessage?.self) { group in
            group.addTask { try await box.next() }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            guard let message = try await group.next()! else { throw PendingBox.Timeout() }
            return message
        }
    }

    deinit {
        // An NIOAsyncChannel's writer must be finished before it goes away.
        self.channel.outbound.finish()
    }

    /// Closes the connection.
    public func close() async {
        self.channel.outbound.finish()
        try? await self.channel.channel.close()
    }
}

/// Bytes received but not yet returned as a frame, with the one iterator over the stream.
public final class PendingBox: @unchecked Sendable {
    // Used by one reading task at a time (tests read sequentially).
    private var buffer = ByteBuffer()
    private var iterator: AsyncThrowingStream<ByteBuffer, any Error>.AsyncIterator

    /// No frame arrived in time.
    public struct Timeout: Error {}
    /// The server closed the connection (or reset it).
    public struct Closed: Error {}

    init(stream: AsyncThrowingStream<ByteBuffer, any Error>) {
        self.iterator = stream.makeAsyncIterator()
    }

    func next() async throws -> Licensed_V1_ServerMessage {
        while true {
            if let frame = try FrameDecoder.readFrame(from: &self.buffer, maximumFrameLength: 1 << 20) {
                return try frame.decodeMessage()
            }
            let chunk: ByteBuffer?
            do { chunk = try await self.iterator.next() } catch { throw Closed() }  // reset by peer
            guard var chunk else { throw Closed() }
            self.buffer.writeBuffer(&chunk)
        }
    }
}
