import CDeflate
import CZlib

#if canImport(Glibc)
import Glibc
#endif

/// gzip files (the format `gzip`, `zcat` and every log tool read), written through libdeflate and
/// read through the system zlib, streamed in chunks: compressing a 64 MiB audit file holds
/// 256 KiB and its bound, not the file twice over (which glibc then kept: 260 MB of daemon RSS
/// after the first rotations).
package enum Gzip {
    /// Compresses the file at `source` into `destination` (written crash-safely: a temporary file,
    /// fsync, rename, fsync of the directory), through libdeflate at level 1, one gzip member per
    /// 256 KiB chunk (concatenated members are one gzip stream to zlib, `gzip -d` and `zcat`).
    /// On a 40 MB file of the audit trail zlib's level 1 took 0.29 s for 6.0x and libdeflate's
    /// 0.11 s for 6.9x; at the server's peak (a 64 MiB file every 3 s) zlib took an eighth of the
    /// daemon's CPU.
    package static func compressFile(_ source: String, to destination: String, directory: String) throws {
        guard let compressor = libdeflate_alloc_compressor(1) else {
            throw StoreError("cannot compress \(source): libdeflate could not allocate a compressor")
        }
        defer { libdeflate_free_compressor(compressor) }
        var compressed = [UInt8](repeating: 0, count: libdeflate_gzip_compress_bound(compressor, FileIO.chunkSize))
        try FileIO.writeAtomically(to: destination, directory: directory) { output in
            var empty = true
            func member(_ chunk: UnsafeRawBufferPointer) throws {
                let size = compressed.withUnsafeMutableBytes {
                    libdeflate_gzip_compress(compressor, chunk.baseAddress, chunk.count, $0.baseAddress, $0.count)
                }
                // The bound is the worst case of the chunk size: never 0 unless libdeflate breaks it.
                guard size > 0 else { throw StoreError("cannot compress \(source) into \(output.path): libdeflate found no room") }
                try compressed.withUnsafeBytes { try output.write(UnsafeRawBufferPointer(rebasing: $0[..<size])) }
            }
            try FileIO.forEachChunk(of: source) { chunk in
                empty = false
                try chunk.withUnsafeBytes { try member($0) }
                return true
            }
            // An empty file still becomes a gzip file (one empty member).
            if empty { try [UInt8]().withUnsafeBytes { try member($0) } }
        }
    }

    /// Calls `body` with the decompressed content of `path`, chunk by chunk, until it returns false.
    package static func forEachChunk(of path: String, _ body: (ArraySlice<UInt8>) throws -> Bool) throws {
        guard let gz = gzopen(path, "rb") else { throw StoreError.errno("cannot open", path) }
        defer { gzclose(gz) }
        var chunk = [UInt8](repeating: 0, count: FileIO.chunkSize)
        while true {
            let n = chunk.withUnsafeMutableBytes { gzread(gz, $0.baseAddress, UInt32($0.count)) }
            guard n >= 0 else { throw StoreError("\(path) is not a whole gzip file (zlib gzread failed)") }
            // zlib reads a file that is not gzip as it is ("transparent"): not a compressed file.
            guard gzdirect(gz) == 0 else { throw StoreError("\(path) is not a gzip file") }
            if n == 0 { break }
            guard try body(chunk[0..<Int(n)]) else { return }
        }
        // A file cut short reads as an early end: zlib says so only here.
        var code: Int32 = 0
        _ = gzerror(gz, &code)
        guard code == Z_OK || code == Z_STREAM_END else { throw StoreError("\(path) is not a whole gzip file (zlib error \(code))") }
    }
}
