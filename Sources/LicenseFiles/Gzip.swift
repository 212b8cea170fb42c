import CZlib

#if canImport(Glibc)
import Glibc
#endif

/// gzip files through the system zlib (the format `gzip`, `zcat` and every log tool read),
/// streamed in chunks: compressing a 64 MiB audit file holds 256 KiB, not the file twice over
/// (which glibc then kept: 260 MB of daemon RSS after the first rotations).
package enum Gzip {
    package static let chunkSize = 1 << 18

    /// Compresses the file at `source` into `destination` (a temporary file, fsync, rename,
    /// fsync of the directory), at zlib's level 1: on a 64 MiB file of the audit trail it took
    /// 0.57 s for 6.0× where the default level 6 took 1.09 s for 6.6×, and at the server's peak
    /// (a file every 2.5 s) level 6 took a quarter of the daemon's CPU from the serving loop.
    package static func compressFile(_ source: String, to destination: String, directory: String) throws {
        let input = open(source, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw StoreError.errno("cannot open", source) }
        defer { close(input) }
        let temporary = destination + ".tmp"
        let output = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard output >= 0 else { throw StoreError.errno("cannot create", temporary) }
        defer { close(output) }
        // gzclose closes the descriptor it is given: give it a duplicate, keep ours to fsync.
        guard let gz = gzdopen(dup(output), "wb1") else {
            unlink(temporary)
            throw StoreError("cannot compress \(source): zlib gzdopen failed")
        }
        var chunk = [UInt8](repeating: 0, count: Self.chunkSize)
        var failure: StoreError?
        while failure == nil {
            let n = chunk.withUnsafeMutableBytes { read(input, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                failure = StoreError.errno("cannot read", source)
            } else if n == 0 {
                break
            } else if chunk.withUnsafeBytes({ gzwrite(gz, $0.baseAddress, UInt32(n)) }) != Int32(n) {
                failure = StoreError("cannot compress \(source) into \(temporary): zlib gzwrite failed")
            }
        }
        if gzclose(gz) != Z_OK, failure == nil { failure = StoreError("cannot compress \(source) into \(temporary): zlib gzclose failed") }
        if failure == nil, fsync(output) != 0 { failure = StoreError.errno("fsync failed on", temporary) }
        if failure == nil, rename(temporary, destination) != 0 { failure = StoreError.errno("cannot rename into", destination) }
        if let failure {
            unlink(temporary)
            throw failure
        }
        try FileIO.syncDirectory(directory)
    }

    /// Calls `body` with the decompressed content of `path`, chunk by chunk, until it returns false.
    package static func forEachChunk(of path: String, _ body: (ArraySlice<UInt8>) throws -> Bool) throws {
        guard let gz = gzopen(path, "rb") else { throw StoreError.errno("cannot open", path) }
        defer { gzclose(gz) }
        var chunk = [UInt8](repeating: 0, count: Self.chunkSize)
        while true {
            let n = chunk.withUnsafeMutableBytes { gzread(gz, $0.baseAddress, UInt32($0.count)) }
            guard n >= 0 else { throw StoreError("\(path) is not a whole gzip file (zlib gzread failed)") }
            if n == 0 { break }
            guard try body(chunk[0..<Int(n)]) else { return }
        }
        // A file cut short reads as an early end: zlib says so only here.
        var code: Int32 = 0
        _ = gzerror(gz, &code)
        guard code == Z_OK || code == Z_STREAM_END else { throw StoreError("\(path) is not a whole gzip file (zlib error \(code))") }
    }

    /// The whole decompressed content of `path`.
    package static func decompressFile(_ path: String) throws -> [UInt8] {
        var output: [UInt8] = []
        try Self.forEachChunk(of: path) { chunk in
            output.append(contentsOf: chunk)
            return true
        }
        return output
    }
}
