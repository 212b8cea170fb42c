import Foundation
import LicenseFiles
import LicenseTestSupport
import Testing

@Suite("Compression of rotated files: zstd through libzstd, gzip through libdeflate and zlib, read back by zstd(1) and gzip(1)")
struct CompressionTests {
    /// Text like the audit trail's (compressible) with a counter in it (not one repeated run).
    static func lines(_ size: Int) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(size + 200)
        var n = 0
        while bytes.count < size {
            bytes += Array("{\"seq\":\(n),\"action\":\"grant\",\"subject\":\"lease:\(String(n &* 2_654_435_761, radix: 16))\"}\n".utf8)
            n += 1
        }
        return Array(bytes.prefix(size))
    }

    /// Writes `size` bytes of lines to a file and compresses it as `format`; the path of the copy.
    static func compressed(_ format: FileCompression, size: Int, in directory: TemporaryDirectory) throws -> (path: String, bytes: [UInt8])
    {
        let source = directory.path("audit.jsonl")
        let destination = source + format.suffix
        let bytes = Self.lines(size)
        try Data(bytes).write(to: URL(fileURLWithPath: source))
        try format.compressFile(source, to: destination, directory: directory.url.path)
        return (destination, bytes)
    }

    /// What the system's own tool decompresses `path` into, and its exit status.
    static func systemTool(_ format: FileCompression, _ path: String) throws -> (status: Int32, bytes: [UInt8]) {
        let tool = Process()
        tool.executableURL = URL(fileURLWithPath: format == .zstd ? "/usr/bin/zstd" : "/bin/gzip")
        tool.arguments = ["-dc", path]
        let pipe = Pipe()
        tool.standardOutput = pipe
        tool.standardError = FileHandle.nullDevice
        try tool.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        tool.waitUntilExit()
        return (tool.terminationStatus, [UInt8](output))
    }

    @Test(
        "a file of no, one, exactly one chunk's and many chunks' bytes comes back whole, through the library and the system's tool",
        arguments: FileCompression.allCases,
        [0, 1, FileIO.chunkSize, FileIO.chunkSize + 1, 5 * FileIO.chunkSize + 12_345]
    )
    func roundTrip(format: FileCompression, size: Int) throws {
        let directory = try TemporaryDirectory()
        let (path, bytes) = try Self.compressed(format, size: size, in: directory)
        #expect(FileCompression(path: path) == format)
        #expect(try FileCompression.contents(of: path) == bytes)
        #expect(!FileManager.default.fileExists(atPath: path + ".tmp"))
        let system = try Self.systemTool(format, path)
        #expect(system.status == 0)
        #expect(system.bytes == bytes)
        if size > 100_000 {
            // Compressed as text compresses.
            let compressed = try FileIO.readAll(path).count
            #expect(compressed * 4 < size, "\(compressed) of \(size) bytes")
        }
    }

    @Test("reading stops where the reader says, and an uncompressed name is read as it is")
    func partialAndPlain() throws {
        let directory = try TemporaryDirectory()
        for format in FileCompression.allCases {
            let (path, bytes) = try Self.compressed(format, size: 3 * FileIO.chunkSize, in: directory)
            var chunks = 0
            var first: [UInt8] = []
            try FileCompression.forEachChunk(of: path) { chunk in
                chunks += 1
                first = Array(chunk)
                return false
            }
            #expect(chunks == 1)
            #expect(!first.isEmpty && bytes.starts(with: first))
        }
        let plain = directory.path("audit.jsonl")
        #expect(FileCompression(path: plain) == nil)
        #expect(try FileCompression.contents(of: plain) == Self.lines(3 * FileIO.chunkSize))
    }

    @Test(
        "a compressed file cut short, with a byte changed, emptied or not compressed at all is an error naming it, not a shorter file",
        arguments: FileCompression.allCases
    )
    func damaged(format: FileCompression) throws {
        let directory = try TemporaryDirectory()
        let (path, _) = try Self.compressed(format, size: 2 * FileIO.chunkSize + 777, in: directory)
        let whole = try FileIO.readAll(path)
        var damages: [(String, [UInt8])] = [
            ("cut in half", Array(whole.prefix(whole.count / 2))),
            ("last byte cut", Array(whole.dropLast())),
        ]
        var flipped = whole
        flipped[whole.count / 2] ^= 0x5A
        damages.append(("a byte changed", flipped))
        damages.append(("not compressed", Self.lines(1000)))
        // Even an empty input is written as a frame (a member): an empty file is no compressed file.
        damages.append(("empty", []))
        for (what, bytes) in damages {
            let copy = directory.path("copy.jsonl" + format.suffix)
            try Data(bytes).write(to: URL(fileURLWithPath: copy))
            let error = #expect(throws: StoreError.self, "\(format) \(what)") { try FileCompression.contents(of: copy) }
            #expect(error?.message.contains(copy) == true, "\(format) \(what): \(String(describing: error))")
        }
    }

    @Test("a missing source is an error naming it, and leaves no file behind", arguments: FileCompression.allCases)
    func missingSource(format: FileCompression) throws {
        let directory = try TemporaryDirectory()
        let destination = directory.path("absent.jsonl" + format.suffix)
        do {
            try format.compressFile(directory.path("absent.jsonl"), to: destination, directory: directory.url.path)
            Issue.record("compressed a missing file")
        } catch let error as StoreError {
            #expect(error.message.contains("absent.jsonl"))
        }
        #expect(!FileManager.default.fileExists(atPath: destination))
        #expect(!FileManager.default.fileExists(atPath: destination + ".tmp"))
    }
}
