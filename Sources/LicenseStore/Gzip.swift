import CZlib

/// gzip members through the system zlib (the format `gzip`, `zcat` and every log tool read).
enum Gzip {
    /// `bytes` as one gzip member, deflated at zlib's default level.
    static func compress(_ bytes: [UInt8], file: String) throws -> [UInt8] {
        var stream = z_stream()
        let initialised = ZLIB_VERSION.withCString {
            deflateInit2_(
                &stream,
                Z_DEFAULT_COMPRESSION,
                Z_DEFLATED,
                15 + 16,
                8,
                Z_DEFAULT_STRATEGY,
                $0,
                Int32(MemoryLayout<z_stream>.size)
            )
        }
        guard initialised == Z_OK else { throw StoreError("cannot compress \(file): zlib deflateInit2 failed (\(initialised))") }
        defer { deflateEnd(&stream) }
        // deflateBound is enough for the whole output in one call with Z_FINISH.
        var output = [UInt8](repeating: 0, count: Int(deflateBound(&stream, uLong(bytes.count))) + 32)
        var input = bytes
        let status = input.withUnsafeMutableBufferPointer { inBuffer in
            output.withUnsafeMutableBufferPointer { outBuffer in
                stream.next_in = inBuffer.baseAddress
                stream.avail_in = uInt(inBuffer.count)
                stream.next_out = outBuffer.baseAddress
                stream.avail_out = uInt(outBuffer.count)
                return deflate(&stream, Z_FINISH)
            }
        }
        guard status == Z_STREAM_END else { throw StoreError("cannot compress \(file): zlib deflate returned \(status)") }
        output.removeSubrange(Int(stream.total_out)...)
        return output
    }

    /// The content of the gzip member(s) in `bytes`; throws naming `file` when they are damaged.
    static func decompress(_ bytes: [UInt8], file: String) throws -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(bytes.count * 8)
        var chunk = [UInt8](repeating: 0, count: 1 << 18)
        var input = bytes
        var consumed = 0
        // Members one after another (a file written in several appends is still one gzip file).
        while consumed < input.count {
            var stream = z_stream()
            let initialised = ZLIB_VERSION.withCString { inflateInit2_(&stream, 15 + 32, $0, Int32(MemoryLayout<z_stream>.size)) }
            guard initialised == Z_OK else { throw StoreError("cannot read \(file): zlib inflateInit2 failed (\(initialised))") }
            defer { inflateEnd(&stream) }
            var status = Z_OK
            let start = consumed
            input.withUnsafeMutableBufferPointer { inBuffer in
                stream.next_in = inBuffer.baseAddress! + start
                stream.avail_in = uInt(inBuffer.count - start)
                while status == Z_OK {
                    chunk.withUnsafeMutableBufferPointer { outBuffer in
                        stream.next_out = outBuffer.baseAddress
                        stream.avail_out = uInt(outBuffer.count)
                        status = inflate(&stream, Z_NO_FLUSH)
                        output.append(contentsOf: outBuffer[0..<(outBuffer.count - Int(stream.avail_out))])
                    }
                    if status == Z_BUF_ERROR && stream.avail_in == 0 { break }
                }
            }
            guard status == Z_STREAM_END else {
                throw StoreError("\(file) is not a whole gzip file (zlib: \(status) at input offset \(start + Int(stream.total_in)))")
            }
            consumed = start + Int(stream.total_in)
        }
        return output
    }
}
