import Foundation
import LicenseFiles
import LicenseTestSupport
import Testing

@Suite("Reading whole files")
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
}
