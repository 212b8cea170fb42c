import Foundation
import LicenseFiles
import LicenseTestSupport
import Testing

@Suite("Reading whole files and their ends")
struct FileIOTests {
    @Test("readAll returns every byte, for empty, small and multi-megabyte files")
    func roundTrip() throws {
        let directory = try TemporaryDirectory()
        for size in [0, 1, 4_095, 65_537, 3 << 20 | 5] {
            let bytes = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 8) }
            let path = directory.path("file-\(size)")
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            #expect(try FileIO.readAll(path) == bytes, "size \(size)")
        }
    }

    @Test("a missing file is an error that names it")
    func missing() throws {
        let directory = try TemporaryDirectory()
        let path = directory.path("absent")
        #expect(throws: StoreError.self) { try FileIO.readAll(path) }
        do { _ = try FileIO.readAll(path) } catch let error as StoreError { #expect(error.message.contains(path)) }
    }

    @Test("readTail reads back from the end, doubling, until the bytes are enough or reach the start")
    func tail() throws {
        let directory = try TemporaryDirectory()
        // Newlines at 10 and 200,000 in a file of 300,000 bytes.
        var bytes = [UInt8](repeating: 0x61, count: 300_000)
        bytes[10] = 0x0A
        bytes[200_000] = 0x0A
        let path = directory.path("file")
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        var asked: [Int] = []
        let one = try FileIO.readTail(path) {
            asked.append($0.count); return $0.contains(0x0A)
        }
        #expect(asked == [65_536, 131_072])
        #expect(one.offset == 300_000 - 131_072)
        #expect(one.bytes == Array(bytes[one.offset...]))
        let two = try FileIO.readTail(path) { $0.filter { $0 == 0x0A }.count >= 2 }
        #expect(two.offset == 0 && two.bytes == bytes)
        let small = directory.path("small")
        try Data("ab\ncd".utf8).write(to: URL(fileURLWithPath: small))
        let whole = try FileIO.readTail(small) { _ in false }
        #expect(whole.offset == 0 && whole.bytes == Array("ab\ncd".utf8))
        #expect(throws: StoreError.self) { try FileIO.readTail(directory.path("absent")) { _ in true } }
    }

    @Test("a paced file holds exactly what was written, across its parts, after a skipped header")
    func pacedOutput() throws {
        let directory = try TemporaryDirectory()
        // Pieces of odd sizes that cross the 1 MiB parts at different points, 3.5 MiB in all.
        let pieces = [1, 4_095, PacedOutput.pace - 7, 3, PacedOutput.pace + 11, 65_536, PacedOutput.pace / 2 + 1_000]
        var expected = [UInt8](repeating: 0x48, count: 20)
        let path = directory.path("paced")
        try FileIO.writeAtomically(to: path, directory: directory.url.path) { output in
            output.skip(to: 20)
            for (index, size) in pieces.enumerated() {
                let piece = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ index) }
                expected += piece
                try piece.withUnsafeBytes { try output.write($0) }
            }
            #expect(output.offset == expected.count)
            let header = [UInt8](repeating: 0x48, count: 20)
            #expect(header.withUnsafeBytes { pwrite(output.fd, $0.baseAddress, 20, 0) } == 20)
        }
        #expect(try FileIO.readAll(path) == expected)
        #expect(!FileManager.default.fileExists(atPath: path + ".tmp"))
    }

    @Test("removeGradually removes every file named, small or of several steps, and nothing else")
    func removeGradually() throws {
        let directory = try TemporaryDirectory()
        var paths: [String] = []
        for size in [0, 1, 3 << 20 | 5] {
            let path = directory.path("file-\(size)")
            try Data(repeating: 0x5A, count: size).write(to: URL(fileURLWithPath: path))
            paths.append(path)
        }
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: directory.path("kept")))
        try FileIO.removeGradually(paths, directory: directory.url.path, step: 1 << 20)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.url.path) == ["kept"])
        #expect(throws: StoreError.self) { try FileIO.removeGradually([directory.path("absent")], directory: directory.url.path) }
    }
}
