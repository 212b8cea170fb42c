import Foundation
import LicenseFiles
import LicenseTestSupport
import Testing

@Suite("gzip of rotated files: libdeflate members, read back by zlib and by gzip(1)")
struct GzipTests {
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

    @Test(
        "a file of no, one, exactly one chunk's and many chunks' bytes comes back whole from zlib and from gzip -dc",
        arguments: [0, 1, FileIO.chunkSize, FileIO.chunkSize + 1, 5 * FileIO.chunkSize + 12_345]
    )
    func roundTrip(size: Int) throws {
        let directory = try TemporaryDirectory()
        let source = directory.path("audit.jsonl")
        let destination = source + ".gz"
        let bytes = Self.lines(size)
        try Data(bytes).write(to: URL(fileURLWithPath: source))
        try Gzip.compressFile(source, to: destination, directory: directory.url.path)
        #expect(try Gzip.decompressFile(destination) == bytes)
        #expect(!FileManager.default.fileExists(atPath: destination + ".tmp"))
        // The system's gzip reads the concatenated members as one file.
        let gzip = Process()
        gzip.executableURL = URL(fileURLWithPath: "/bin/gzip")
        gzip.arguments = ["-dc", destination]
        let pipe = Pipe()
        gzip.standardOutput = pipe
        try gzip.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        gzip.waitUntilExit()
        #expect(gzip.terminationStatus == 0)
        #expect([UInt8](output) == bytes)
        if size > 100_000 {
            // Compressed as text compresses (the members are independent, the ratio holds).
            let compressed = try FileIO.readAll(destination).count
            #expect(compressed * 4 < size, "\(compressed) of \(size) bytes")
        }
    }

    @Test("a missing source is an error naming it, and leaves no file behind")
    func missingSource() throws {
        let directory = try TemporaryDirectory()
        let destination = directory.path("absent.jsonl.gz")
        do {
            try Gzip.compressFile(directory.path("absent.jsonl"), to: destination, directory: directory.url.path)
            Issue.record("compressed a missing file")
        } catch let error as StoreError {
            #expect(error.message.contains("absent.jsonl"))
        }
        #expect(!FileManager.default.fileExists(atPath: destination))
        #expect(!FileManager.default.fileExists(atPath: destination + ".tmp"))
    }
}
